"""The data structure: VM elements, configuration/I/O/memory tables, instances, blobs (R-DS-001..R-DS-009)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import NIC, VM, enable, program_bar
from hypothesis import given, settings
from hypothesis import strategies as st
from vpcid.model import (
    BarKind,
    BarSpec,
    Bdf,
    DataManager,
    DeviceType,
    DuplicateVm,
    InvalidArgument,
    Profile,
    RomSpec,
    TableEntry,
    UnknownDevice,
    UnknownVm,
    VpcidError,
)
from vpcid.model.catalog import A100, E1000, EDU, NVME
from vpcid.model.profile import BarMoveWhileDecoding
from vpcid.model.tables import DecodeTable, Mapping, lowest_bdf_first

ECAM = 0xB000_0000


def ecam_address(bdf: Bdf, offset: int, base: int = ECAM) -> int:
    return base + (bdf.bus << 20 | bdf.device << 15 | bdf.function << 12 | offset)


def cam_read(dm: DataManager, vm: int, bdf: Bdf, offset: int) -> int:
    """A dword read through configuration mechanism #1."""
    dm.io_write(vm, 0xCF8, 4, 0x8000_0000 | bdf.bus << 16 | bdf.device << 11 | bdf.function << 8 | offset)
    return dm.io_read(vm, 0xCFC, 4)


def fresh(*vms: int) -> DataManager:
    dm = DataManager()
    for vm in vms:
        dm.create_vm(vm)
    return dm


# ------------------------------------------------------------------ R-DS-001


@pytest.mark.req("R-DS-001")
@pytest.mark.parametrize("vm_id", [0, 1, 0x7FFF_FFFF, 0xFFFF_FFFF])
def test_vm_ids_span_32_bits(vm_id: int) -> None:
    dm = fresh(vm_id)
    assert dm.vm_ids() == (vm_id,)
    assert dm.tables(vm_id).config == ()


@pytest.mark.req("R-DS-001")
@pytest.mark.parametrize("vm_id", [-1, 0x1_0000_0000, True, 1.0, "1"])
def test_vm_ids_outside_32_bits_are_rejected(vm_id: Any) -> None:
    dm = DataManager()
    with pytest.raises(InvalidArgument):
        dm.create_vm(vm_id)
    assert dm.vm_ids() == ()


@pytest.mark.req("R-DS-001")
def test_new_vm_has_empty_tables_cf8_zero_and_its_ecam_window() -> None:
    dm = fresh()
    dm.create_vm(3, ecam_base=0xC000_0000)
    tables = dm.tables(3)
    assert (tables.config, tables.io, tables.memory) == ((), (), ())
    assert dm.cf8(3) == 0
    assert dm.io_read(3, 0xCF8, 4) == 0
    dm.plug(3, NIC, E1000)
    assert dm.mmio_read(3, ecam_address(NIC, 0, 0xC000_0000), 4) == 0x100E_8086
    assert dm.mmio_read(3, ecam_address(NIC, 0, ECAM), 4) == 0xFFFF_FFFF  # no window at the default
    dm.create_vm(4, ecam_base=None)
    dm.plug(4, NIC, E1000)
    for base in (ECAM, 0xC000_0000):
        assert dm.mmio_read(4, ecam_address(NIC, 0, base), 4) == 0xFFFF_FFFF
    dm.create_vm(5)
    dm.plug(5, NIC, E1000)
    assert dm.mmio_read(5, ecam_address(NIC, 0), 4) == 0x100E_8086


@pytest.mark.req("R-DS-001")
def test_creating_an_existing_vm_is_rejected_and_changes_nothing(programmed: DataManager) -> None:
    dm = programmed
    dm.io_write(VM, 0xCF8, 4, 0x8000_1000)
    dm.mmio_write(VM, 0xFEBC0010, 4, 0xABCD)
    before = (dm.snapshot(VM), dm.tables(VM), dm.vm_ids())
    for ecam in (ECAM, 0xC000_0000, None):
        with pytest.raises(DuplicateVm) as info:
            dm.create_vm(VM, ecam_base=ecam)
        assert info.value.kind == "duplicate-vm"
    assert (dm.snapshot(VM), dm.tables(VM), dm.vm_ids()) == before
    assert dm.mmio_read(VM, ecam_address(NIC, 0), 4) == 0x100E_8086
    assert dm.mmio_read(VM, ecam_address(NIC, 0, 0xC000_0000), 4) == 0xFFFF_FFFF
    assert dm.mmio_read(VM, 0xFEBC0010, 4) == 0xABCD


# ------------------------------------------------------------------ R-DS-002

_VM_OPERATIONS: list[tuple[str, Callable[[DataManager, int], object]]] = [
    ("config_read", lambda dm, vm: dm.config_read(vm, NIC, 0, 4)),
    ("config_write", lambda dm, vm: dm.config_write(vm, NIC, 4, 2, 7)),
    ("io_read", lambda dm, vm: dm.io_read(vm, 0xC000, 4)),
    ("io_write", lambda dm, vm: dm.io_write(vm, 0xCF8, 4, 0x8000_0000)),
    ("mmio_read", lambda dm, vm: dm.mmio_read(vm, 0xFEBC0000, 4)),
    ("mmio_write", lambda dm, vm: dm.mmio_write(vm, 0xFEBC0000, 4, 1)),
    ("plug", lambda dm, vm: dm.plug(vm, Bdf(0, 9, 0), EDU)),
    ("unplug", lambda dm, vm: dm.unplug(vm, NIC)),
    ("reset", lambda dm, vm: dm.reset(vm, NIC)),
    ("reset_vm", lambda dm, vm: dm.reset_vm(vm)),
    ("save", lambda dm, vm: dm.save(vm, NIC)),
    ("restore", lambda dm, vm: dm.restore(vm, NIC, b"")),
    ("snapshot", lambda dm, vm: dm.snapshot(vm)),
    ("tables", lambda dm, vm: dm.tables(vm)),
    ("resolve", lambda dm, vm: dm.resolve(vm, "memory", 0xFEBC0000)),
    ("device_type", lambda dm, vm: dm.device_type(vm, NIC)),
    ("cf8", lambda dm, vm: dm.cf8(vm)),
    ("destroy_vm", lambda dm, vm: dm.destroy_vm(vm)),
]


@pytest.mark.req("R-DS-002")
@pytest.mark.parametrize("operation", [op for _, op in _VM_OPERATIONS], ids=[n for n, _ in _VM_OPERATIONS])
def test_every_operation_on_a_destroyed_vm_is_rejected_as_unknown_vm(
    programmed: DataManager, operation: Callable[[DataManager, int], object]
) -> None:
    dm = programmed
    dm.create_vm(2)
    other = dm.snapshot(2)
    dm.destroy_vm(VM)
    assert dm.vm_ids() == (2,)
    for vm_id in (VM, 99):
        with pytest.raises(UnknownVm) as info:
            operation(dm, vm_id)
        assert info.value.kind == "unknown-vm"
    assert dm.vm_ids() == (2,)
    assert dm.snapshot(2) == other


@pytest.mark.req("R-DS-002")
def test_destroying_a_vm_removes_its_tables_and_instances(programmed: DataManager) -> None:
    dm = programmed
    dm.mmio_write(VM, 0xFEBC0000, 4, 0x1234)
    assert dm.tables(VM).memory
    dm.destroy_vm(VM)
    dm.create_vm(VM)  # a new element under the same id starts empty
    tables = dm.tables(VM)
    assert (tables.config, tables.io, tables.memory) == ((), (), ())
    assert dm.config_read(VM, NIC, 0, 4) == 0xFFFF_FFFF
    assert dm.mmio_read(VM, 0xFEBC0000, 4) == 0xFFFF_FFFF
    assert dm.io_read(VM, 0xC000, 4) == 0xFFFF_FFFF
    with pytest.raises(UnknownDevice):
        dm.save(VM, NIC)


# ------------------------------------------------------------------ R-DS-003


@pytest.mark.req("R-DS-003")
@pytest.mark.parametrize(
    ("bus", "device", "function"), [(256, 0, 0), (-1, 0, 0), (0, 32, 0), (0, -1, 0), (0, 0, 8), (0, 0, -1)]
)
def test_bdf_parts_outside_their_ranges_are_rejected(bus: int, device: int, function: int) -> None:
    with pytest.raises(InvalidArgument):
        Bdf(bus, device, function)


@pytest.mark.req("R-DS-003")
@pytest.mark.parametrize("bdf", [Bdf(0, 0, 0), Bdf(255, 31, 7), Bdf(0x80, 0x10, 3), Bdf(1, 0, 0)], ids=str)
def test_every_bus_is_reachable_directly_without_bridges(bdf: Bdf) -> None:
    dm = fresh(VM)
    dm.plug(VM, bdf, E1000)
    assert dm.tables(VM).config == ((bdf, "e1000"),)
    assert dm.config_read(VM, bdf, 0, 4) == 0x100E_8086
    assert cam_read(dm, VM, bdf, 0) == 0x100E_8086
    assert dm.mmio_read(VM, ecam_address(bdf, 0), 4) == 0x100E_8086
    program_bar(dm, VM, bdf, 0, 0xFEBC0000)
    enable(dm, VM, bdf, 0x2)
    dm.mmio_write(VM, 0xFEBC0100, 4, 0xC0FFEE)
    assert dm.mmio_read(VM, 0xFEBC0100, 4) == 0xC0FFEE
    assert dm.resolve(VM, "memory", 0xFEBC0100) == (bdf, 0)


@pytest.mark.req("R-DS-003")
def test_functions_of_one_device_are_independent() -> None:
    dm = fresh(VM)
    f0, f3, f5 = Bdf(0, 4, 0), Bdf(0, 4, 3), Bdf(0, 4, 5)
    dm.plug(VM, f5, E1000)  # a function can exist without function 0
    assert dm.config_read(VM, f5, 0, 4) == 0x100E_8086
    assert dm.config_read(VM, f0, 0, 4) == 0xFFFF_FFFF
    dm.plug(VM, f0, dataclasses.replace(E1000, name="e1000-mf", multifunction=True))  # R-MF-002
    dm.plug(VM, f3, NVME)
    program_bar(dm, VM, f5, 0, 0xFE000000)
    enable(dm, VM, f5, 0x2)
    dm.config_write(VM, f5, 0x3C, 1, 0x0B)
    for bdf in (f0, f3):
        assert dm.config_read(VM, bdf, 0x04, 2) == 0
        assert dm.config_read(VM, bdf, 0x3C, 1) == 0
    assert dm.config_read(VM, f0, 0x10, 4) == 0
    assert dm.config_read(VM, f3, 0x00, 4) == 0xA808_144D
    dm.unplug(VM, f0)
    assert dm.config_read(VM, f5, 0x10, 4) == 0xFE000000
    assert dm.config_read(VM, f3, 0x00, 4) == 0xA808_144D
    assert dm.tables(VM).config == ((f3, "nvme"), (f5, "e1000"))


# ------------------------------------------------------------------ R-DS-004


@pytest.mark.req("R-DS-004")
@pytest.mark.parametrize(
    "operation",
    [
        lambda dm, b: dm.unplug(VM, b),
        lambda dm, b: dm.reset(VM, b),
        lambda dm, b: dm.save(VM, b),
        lambda dm, b: dm.restore(VM, b, dm.save(VM, NIC)),
        lambda dm, b: dm.device_type(VM, b),
    ],
    ids=["unplug", "reset", "save", "restore", "device_type"],
)
def test_operations_on_an_empty_bdf_are_rejected_as_unknown_device(
    programmed: DataManager, operation: Callable[[DataManager, Bdf], object]
) -> None:
    dm = programmed
    before = dm.snapshot(VM)
    with pytest.raises(UnknownDevice) as info:
        operation(dm, Bdf(0, 3, 0))
    assert info.value.kind == "unknown-device"
    assert dm.snapshot(VM) == before


@pytest.mark.req("R-DS-004")
def test_configuration_accesses_to_an_empty_bdf_are_not_rejected(programmed: DataManager) -> None:
    dm = programmed
    before = dm.snapshot(VM)
    empty = Bdf(0, 3, 0)
    assert dm.config_read(VM, empty, 0, 4) == 0xFFFF_FFFF
    assert dm.config_read(VM, empty, 0x3C, 1) == 0xFF
    dm.config_write(VM, empty, 0x04, 2, 0x7)
    assert dm.snapshot(VM) == before


@pytest.mark.req("R-DS-004")
def test_an_instance_belongs_to_one_vm_and_bdf_only() -> None:
    dm = fresh(1, 2)
    a, b = Bdf(0, 2, 0), Bdf(0, 3, 0)
    dm.plug(1, a, E1000)
    with pytest.raises(UnknownDevice):
        dm.device_type(2, a)
    with pytest.raises(UnknownDevice):
        dm.device_type(1, b)
    assert dm.device_type(1, a) is E1000
    program_bar(dm, 1, a, 0, 0xFEBC0000)
    enable(dm, 1, a, 0x2)
    blob = dm.save(1, a)
    dm.plug(1, b, E1000)
    program_bar(dm, 1, b, 0, 0xFE000000)
    dm.restore(1, b, blob)  # b takes a's state but stays at b
    assert dm.tables(1).config == ((a, "e1000"), (b, "e1000"))
    assert {(e.bdf, e.bar) for e in dm.tables(1).memory} == {(a, 0), (b, 0)}
    assert all(e.base == 0xFEBC0000 for e in dm.tables(1).memory)
    assert dm.resolve(1, "memory", 0xFEBC0000) == (a, 0)  # both decode; a is lower
    dm.unplug(1, a)
    assert dm.resolve(1, "memory", 0xFEBC0000) == (b, 0)


# ------------------------------------------------------------------ R-DS-005


@pytest.mark.req("R-DS-005")
def test_blob_carries_configuration_decode_addresses_and_bar_contents(programmed: DataManager) -> None:
    dm = programmed
    dm.config_write(VM, NIC, 0x3C, 1, 0x0A)
    dm.config_write(VM, NIC, 0x30, 4, 0xFEB00001)
    dm.mmio_write(VM, 0xFEBC0000 + 0x1F000, 8, 0x1122334455667788)
    dm.io_write(VM, 0xC000 + 8, 4, 0xDEADBEEF)
    blob = dm.save(VM, NIC)
    other = fresh(7)
    other.plug(7, NIC, E1000)
    assert other.tables(7).memory == ()
    other.restore(7, NIC, blob)
    assert other.save(7, NIC) == blob
    for offset in range(0, 0x100, 4):
        assert other.config_read(7, NIC, offset, 4) == dm.config_read(VM, NIC, offset, 4)
    assert other.tables(7).memory == dm.tables(VM).memory
    assert other.tables(7).io == dm.tables(VM).io
    assert other.mmio_read(7, 0xFEBC0000 + 0x1F000, 8) == 0x1122334455667788
    assert other.io_read(7, 0xC000 + 8, 4) == 0xDEADBEEF
    assert other.mmio_read(7, 0xFEB00000, 2) == 0xAA55


@pytest.mark.req("R-DS-005")
def test_blob_carries_the_decode_address_even_when_it_differs_from_the_registers() -> None:
    profile = Profile(bar_move_while_decoding=BarMoveWhileDecoding.DEFERRED)
    dm = DataManager(profile)
    dm.create_vm(VM)
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, 0xFEBC0000)
    enable(dm, VM, NIC, 0x2)
    program_bar(dm, VM, NIC, 0, 0xFE000000)  # deferred: still decodes at the old address
    assert dm.resolve(VM, "memory", 0xFEBC0000) == (NIC, 0)
    other = DataManager(profile)
    other.create_vm(2)
    other.plug(2, NIC, E1000)
    other.restore(2, NIC, dm.save(VM, NIC))
    assert other.config_read(2, NIC, 0x10, 4) == 0xFE000000
    assert other.resolve(2, "memory", 0xFEBC0000) == (NIC, 0)
    assert other.resolve(2, "memory", 0xFE000000) is None


# ------------------------------------------------------------------ R-DS-006


@pytest.mark.req("R-DS-006")
def test_table_entries_are_keyed_by_size_class_and_aligned_base(programmed: DataManager) -> None:
    dm = programmed
    dm.plug(VM, Bdf(0, 3, 0), A100)
    program_bar(dm, VM, Bdf(0, 3, 0), 0, 0xFD000000)
    program_bar(dm, VM, Bdf(0, 3, 0), 1, 0x40_0000_0000)
    program_bar(dm, VM, Bdf(0, 3, 0), 3, 0x2_0000_0000)
    enable(dm, VM, Bdf(0, 3, 0), 0x2)
    tables = dm.tables(VM)
    for entry in (*tables.io, *tables.memory):
        assert entry.size == 1 << entry.size_class
        assert entry.base % entry.size == 0
    keys = [(e.size_class, e.base >> e.size_class) for e in tables.memory]
    assert len(set(keys)) == len(keys)
    assert set(tables.memory) == {
        TableEntry(17, 0xFEBC0000, 128 << 10, NIC, 0),
        TableEntry(24, 0xFD000000, 16 << 20, Bdf(0, 3, 0), 0),
        TableEntry(36, 0x40_0000_0000, 64 << 30, Bdf(0, 3, 0), 1),
        TableEntry(25, 0x2_0000_0000, 32 << 20, Bdf(0, 3, 0), 3),
    }


@pytest.mark.req("R-DS-006")
def test_a_64gib_bar_is_exactly_one_memory_table_entry() -> None:
    dm = fresh(VM)
    gpu = Bdf(0x41, 0, 0)
    dm.plug(VM, gpu, A100)
    program_bar(dm, VM, gpu, 1, 0x80_0000_0000)
    enable(dm, VM, gpu, 0x2)
    assert dm.tables(VM).memory == (TableEntry(36, 0x80_0000_0000, 64 << 30, gpu, 1),)
    for address in (0x80_0000_0000, 0x80_0000_0000 + (37 << 30) + 5, 0x8F_FFFF_FFFF):
        assert dm.resolve(VM, "memory", address) == (gpu, 1)
    assert dm.resolve(VM, "memory", 0x90_0000_0000) is None
    assert dm.resolve(VM, "memory", 0x7F_FFFF_FFFF) is None


@pytest.mark.req("R-DS-006")
def test_a_2_pow_63_bar_is_one_entry_too() -> None:
    huge = DeviceType("huge", 0x1AF4, 0x1, 0x0, bars=(BarSpec(BarKind.MEM64, 1 << 63), None))
    dm = fresh(VM)
    dm.plug(VM, NIC, huge)
    program_bar(dm, VM, NIC, 0, 1 << 63)
    enable(dm, VM, NIC, 0x2)
    assert dm.tables(VM).memory == (TableEntry(63, 1 << 63, 1 << 63, NIC, 0),)
    assert dm.resolve(VM, "memory", (1 << 64) - 1) == (NIC, 0)
    assert dm.resolve(VM, "memory", (1 << 63) - 1) is None


@pytest.mark.req("R-DS-006")
def test_table_holds_an_entry_exactly_while_the_bar_decodes(programmed: DataManager) -> None:
    dm = programmed
    mem = TableEntry(17, 0xFEBC0000, 128 << 10, NIC, 0)
    io = TableEntry(6, 0xC000, 64, NIC, 1)
    assert (dm.tables(VM).memory, dm.tables(VM).io) == ((mem,), (io,))
    enable(dm, VM, NIC, 0x1)
    assert (dm.tables(VM).memory, dm.tables(VM).io) == ((), (io,))
    enable(dm, VM, NIC, 0x2)
    assert (dm.tables(VM).memory, dm.tables(VM).io) == ((mem,), ())
    program_bar(dm, VM, NIC, 0, 0)  # address zero does not decode
    assert dm.tables(VM).memory == ()
    program_bar(dm, VM, NIC, 0, 0xE0000000)  # moves: the old entry is gone
    assert dm.tables(VM).memory == (TableEntry(17, 0xE0000000, 128 << 10, NIC, 0),)
    assert dm.resolve(VM, "memory", 0xFEBC0000) is None
    dm.reset(VM, NIC)
    assert (dm.tables(VM).memory, dm.tables(VM).io) == ((), ())


class _CountingSlots(dict[int, list[Mapping]]):
    """A size class's slot dictionary that counts probes."""

    def __init__(self, items: dict[int, list[Mapping]], counter: list[int]) -> None:
        super().__init__(items)
        self.counter = counter

    def get(self, key: int, default: Any = None) -> Any:  # type: ignore[override]
        self.counter[0] += 1
        return super().get(key, default)


def _count_probes(table: DecodeTable) -> list[int]:
    counter = [0]
    table._classes = {k: _CountingSlots(v, counter) for k, v in table._classes.items()}
    return counter


@pytest.mark.req("R-DS-006")
def test_probes_per_lookup_equal_size_classes_whatever_the_number_of_bars() -> None:
    table = DecodeTable(lowest_bdf_first)
    sizes = (12, 16, 20)
    n = 0
    for bus in range(32):
        for device in range(32):
            log2 = sizes[n % 3]
            table.insert(Mapping(Bdf(bus, device, 0), 0, (n + 1) << 32, log2, n))
            n += 1
    assert len(table) == 1024
    assert table.size_classes() == 3
    counter = _count_probes(table)
    for k, address in enumerate((5 << 32, (500 << 32) + 0x123, 0, (1 << 64) - 1, 0x1234_5678_9ABC)):
        hit = table.lookup(address)
        assert counter[0] == 3 * (k + 1)
        if address == 5 << 32:
            assert hit is not None
            assert hit.base == 5 << 32


@pytest.mark.req("R-DS-006")
def test_at_most_64_size_classes_and_one_probe_each() -> None:
    table = DecodeTable(lowest_bdf_first)
    for stamp, log2 in enumerate(range(2, 64)):  # every I/O and memory size class
        table.insert(Mapping(Bdf(0, 1, 0), 0, 1 << log2, log2, stamp))
    assert table.size_classes() == 62 <= 64
    counter = _count_probes(table)
    hit = table.lookup(1 << 40)
    assert counter[0] == 62
    assert hit is not None
    assert hit.size_log2 == 40


# ------------------------------------------------------------------ R-DS-007


@pytest.mark.req("R-DS-007")
def test_introspection_lists_config_io_and_memory_tables(programmed: DataManager) -> None:
    dm = programmed
    dm.plug(VM, Bdf(0, 1, 0), EDU)
    dm.config_write(VM, NIC, 0x30, 4, 0xFEB00001)
    tables = dm.tables(VM)
    assert tables.config == ((Bdf(0, 1, 0), "edu"), (NIC, "e1000"))
    assert tables.io == (TableEntry(6, 0xC000, 64, NIC, 1),)
    assert tables.memory == (
        TableEntry(16, 0xFEB00000, 64 << 10, NIC, 6),
        TableEntry(17, 0xFEBC0000, 128 << 10, NIC, 0),
    )
    entry = tables.memory[0]
    assert (entry.size_class, entry.base, entry.size, entry.bdf, entry.bar) == (16, 0xFEB00000, 65536, NIC, 6)
    assert dm.tables(VM) == tables


def _build(order: list[int]) -> DataManager:
    """The same three devices and BARs, set up in different operation orders."""
    dm = fresh(VM)
    steps: list[Callable[[], None]] = [
        lambda: (dm.plug(VM, Bdf(0, 9, 0), E1000), program_bar(dm, VM, Bdf(0, 9, 0), 0, 0xE0000000),
                 program_bar(dm, VM, Bdf(0, 9, 0), 1, 0xD000), enable(dm, VM, Bdf(0, 9, 0))),
        lambda: (dm.plug(VM, Bdf(0, 2, 0), E1000), program_bar(dm, VM, Bdf(0, 2, 0), 0, 0xE0000000),
                 dm.config_write(VM, Bdf(0, 2, 0), 0x30, 4, 0xE0100001), enable(dm, VM, Bdf(0, 2, 0))),
        lambda: (dm.plug(VM, Bdf(2, 0, 0), NVME), program_bar(dm, VM, Bdf(2, 0, 0), 0, 0x3_0000_0000),
                 enable(dm, VM, Bdf(2, 0, 0))),
    ]  # fmt: skip
    for k in order:
        steps[k]()
    return dm


@pytest.mark.req("R-DS-007")
def test_introspection_order_is_stable_whatever_the_operation_order() -> None:
    reference = _build([0, 1, 2]).tables(VM)
    assert reference.memory == tuple(sorted(reference.memory))
    assert [b for b, _ in reference.config] == sorted(b for b, _ in reference.config)
    assert len(reference.memory) == 4
    for order in ([2, 1, 0], [1, 0, 2], [2, 0, 1]):
        assert _build(order).tables(VM) == reference


# ------------------------------------------------------------------ R-DS-008

ISO_DEVICES: tuple[tuple[Bdf, DeviceType], ...] = ((NIC, E1000), (Bdf(0, 3, 0), NVME), (Bdf(1, 0, 0), EDU))


def _setup_vm(dm: DataManager, vm: int) -> None:
    dm.create_vm(vm)
    for bdf, dtype in ISO_DEVICES:
        dm.plug(vm, bdf, dtype)
    program_bar(dm, vm, NIC, 0, 0xFEBC0000)
    program_bar(dm, vm, NIC, 1, 0xC000)
    dm.config_write(vm, NIC, 0x30, 4, 0xFEB00001)
    program_bar(dm, vm, Bdf(0, 3, 0), 0, 0xFE000000)
    program_bar(dm, vm, Bdf(1, 0, 0), 0, 0xFD000000)
    for bdf, _ in ISO_DEVICES:
        enable(dm, vm, bdf)
    dm.mmio_write(vm, 0xFEBC0040, 8, 0x0102030405060708)
    dm.io_write(vm, 0xCF8, 4, 0x8000_1000)


def _observe(dm: DataManager, vm: int) -> tuple[object, ...]:
    """Everything observable about a VM (reads here do not change memory-like or edu state)."""
    reads = tuple(
        dm.mmio_read(vm, a, 8) for a in (0xFEBC0040, 0xFEB00000, 0xFE000000, 0xFD000000, ECAM + 0x10)
    )
    ports = tuple(dm.io_read(vm, p, 4) for p in (0xC000, 0xC03C, 0xCF8))
    config = tuple(dm.config_read(vm, b, o, 4) for b, _ in ISO_DEVICES for o in range(0, 0x40, 4))
    return dm.snapshot(vm), dm.tables(vm), dm.cf8(vm), reads, ports, config


_ISO_BDFS = [b for b, _ in ISO_DEVICES]
_iso_ops = st.one_of(
    st.tuples(
        st.just("config"),
        st.sampled_from(_ISO_BDFS),
        st.sampled_from([0x04, 0x0C, 0x10, 0x14, 0x18, 0x30, 0x3C, 0x44, 0x48]),
        st.integers(0, 0xFFFFFFFF),
    ),
    st.tuples(
        st.just("mmio"),
        st.sampled_from(
            [0xFEBC0040, 0xFEB00000, 0xFE000000, 0xFD000004, ECAM + 0x10010, ECAM + 0x10004, ECAM + 0x18010]
        ),
        st.integers(0, (1 << 64) - 1),
    ),
    st.tuples(st.just("io"), st.sampled_from([0xC000, 0xC03C, 0xCF8, 0xCFC]), st.integers(0, 0xFFFFFFFF)),
    st.tuples(st.just("reset"), st.sampled_from(_ISO_BDFS)),
    st.tuples(st.just("reset_vm")),
    st.tuples(st.just("replug"), st.sampled_from(_ISO_BDFS)),
    st.tuples(st.just("restore_other"), st.sampled_from(_ISO_BDFS)),
    st.tuples(st.just("restore_vm")),
    st.tuples(st.just("recreate")),
)


def _apply_isolation_op(dm: DataManager, vm: int, other: int, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "config":
        dm.config_write(vm, op[1], op[2], 4, op[3])
    elif kind == "mmio":
        dm.mmio_write(vm, op[1], 8, op[2])
    elif kind == "io":
        dm.io_write(vm, op[1], 4, op[2])
    elif kind == "reset":
        dm.reset(vm, op[1])
    elif kind == "reset_vm":
        dm.reset_vm(vm)
    elif kind == "replug":
        dtype = dm.device_type(vm, op[1])
        dm.unplug(vm, op[1])
        dm.plug(vm, op[1], dtype)
    elif kind == "restore_other":
        dm.restore(vm, op[1], dm.save(other, op[1]))  # reads the other VM, writes this one
    elif kind == "restore_vm":
        dm.restore_vm(vm, dm.snapshot(other))
    else:
        dm.destroy_vm(vm)
        _setup_vm(dm, vm)


@pytest.mark.req("R-DS-008")
@settings(max_examples=100, deadline=None)
@given(st.lists(_iso_ops, min_size=1, max_size=12))
def test_operations_in_one_vm_never_change_observations_in_another(ops: list[tuple[Any, ...]]) -> None:
    dm = DataManager()
    _setup_vm(dm, 1)
    _setup_vm(dm, 2)
    baseline = _observe(dm, 2)
    for op in ops:
        _apply_isolation_op(dm, 1, 2, op)
        assert _observe(dm, 2) == baseline


@pytest.mark.req("R-DS-008")
def test_equal_addresses_in_two_vms_reach_different_instances() -> None:
    dm = DataManager()
    _setup_vm(dm, 1)
    _setup_vm(dm, 2)
    dm.mmio_write(1, 0xFEBC0100, 4, 0x11111111)
    dm.mmio_write(2, 0xFEBC0100, 4, 0x22222222)
    dm.io_write(1, 0xC010, 2, 0x3333)
    dm.config_write(1, NIC, 0x3C, 1, 0x05)
    assert dm.mmio_read(1, 0xFEBC0100, 4) == 0x11111111
    assert dm.mmio_read(2, 0xFEBC0100, 4) == 0x22222222
    assert dm.io_read(2, 0xC010, 2) == 0
    assert dm.config_read(2, NIC, 0x3C, 1) == 0
    dm.destroy_vm(1)
    assert dm.mmio_read(2, 0xFEBC0100, 4) == 0x22222222
    assert dm.resolve(2, "memory", 0xFEBC0100) == (NIC, 0)


# ------------------------------------------------------------------ R-DS-009

ALPHA = DeviceType(
    "alpha",
    0x1AF4,
    0x0A,
    0x0,
    bars=(
        BarSpec(BarKind.IO, 16),
        BarSpec(BarKind.MEM32, 4096),
        BarSpec(BarKind.MEM64, 1 << 16),
        None,
        BarSpec(BarKind.MEM32, 16, prefetchable=True),
    ),
    rom=RomSpec(2048),
)
BETA = DeviceType(
    "beta",
    0x1AF4,
    0x0B,
    0x0,
    bars=(
        BarSpec(BarKind.MEM64, 64 << 30, prefetchable=True),
        None,
        BarSpec(BarKind.IO, 4),
        BarSpec(BarKind.MEM32, 1 << 20),
    ),
    rom=RomSpec(1 << 16),
)
SLOTS: tuple[tuple[Bdf, DeviceType], ...] = (
    (Bdf(0, 1, 0), ALPHA),
    (Bdf(0, 4, 0), BETA),
    (Bdf(0, 2, 0), E1000),
    (Bdf(3, 0, 0), ALPHA),
)


@dataclass(frozen=True)
class Window:
    bdf: Bdf
    bar: int
    base: int
    size: int


def brute_force_windows(dm: DataManager, vm: int, present: set[Bdf]) -> tuple[list[Window], list[Window]]:
    """(I/O, memory) windows computed from configuration reads alone, by R-BAR-*, R-DEC-001..006."""
    io: list[Window] = []
    mem: list[Window] = []
    for bdf, dtype in SLOTS:
        if bdf not in present:
            continue
        command = dm.config_read(vm, bdf, 0x04, 2)
        for index in range(6):
            bar = dtype.bar(index)
            if bar is None:
                continue
            low = dm.config_read(vm, bdf, 0x10 + 4 * index, 4)
            if bar.kind is BarKind.IO:
                base, on, limit, into = low & ~0x3, command & 0x1, 1 << 16, io
            else:
                base, on, into = low & ~0xF, command & 0x2, mem
                limit = 1 << 32
                if bar.kind is BarKind.MEM64:
                    base |= dm.config_read(vm, bdf, 0x14 + 4 * index, 4) << 32
                    limit = 1 << 64
            if on and base != 0 and base + bar.size <= limit:
                into.append(Window(bdf, index, base, bar.size))
        if dtype.rom is not None:
            reg = dm.config_read(vm, bdf, 0x30, 4)
            base = reg & 0xFFFFF800
            if command & 0x2 and reg & 0x1 and base != 0 and base + dtype.rom.size <= 1 << 32:
                mem.append(Window(bdf, 6, base, dtype.rom.size))
    return io, mem


def brute_force_resolve(windows: list[Window], address: int) -> tuple[Bdf, int] | None:
    hits = [w for w in windows if w.base <= address < w.base + w.size]
    if not hits:
        return None
    best = min(hits, key=lambda w: (w.bdf.packed, w.bar))
    return best.bdf, best.bar


def check_tables_exact(dm: DataManager, vm: int, present: set[Bdf], extra: list[int]) -> None:
    io, mem = brute_force_windows(dm, vm, present)
    tables = dm.tables(vm)
    for windows, entries in ((io, tables.io), (mem, tables.memory)):
        expected = {TableEntry(w.size.bit_length() - 1, w.base, w.size, w.bdf, w.bar) for w in windows}
        assert set(entries) == expected
        assert len(entries) == len(expected)
    for space, windows, top in (("io", io, 0xFFFF), ("memory", mem, (1 << 64) - 1)):
        probes = {a & top for a in extra}
        for w in windows:
            probes.update(
                a
                for a in (w.base - 1, w.base, w.base + w.size // 2, w.base + w.size - 1, w.base + w.size)
                if 0 <= a <= top
            )
        for address in probes:
            assert dm.resolve(vm, space, address) == brute_force_resolve(windows, address), (
                space,
                hex(address),
            )


_POOL = [0, 0xC000, 0xC010, 0xC100, 0xFFF0, 0x1C000, 0xE0000000, 0xE0000800, 0xE0001000, 0xE0010000,
         0xE0100000, 0xFFFFF000]  # fmt: skip
"""Few, aligned, overlapping addresses, so that decode and overlap happen often."""
_LOW_VALUES = st.one_of(st.sampled_from(_POOL), st.sampled_from(_POOL), st.integers(0, 0xFFFFFFFF))
_HIGH_VALUES = st.sampled_from([0, 0, 0x10, 0x10, 0x40, 0xFFFFFFFF])
_COMMANDS = st.sampled_from([0, 1, 2, 3, 3, 7, 7, 7])
_ROM_VALUES = st.sampled_from([0, 0x00000001, 0xE0000001, 0xE0000000, 0xE0010001, 0xE0000801, 0xFFFFFFFF])
_slot = st.integers(0, len(SLOTS) - 1)
_setup = st.lists(
    st.tuples(_COMMANDS, st.lists(_LOW_VALUES, min_size=6, max_size=6), _HIGH_VALUES, _ROM_VALUES),
    min_size=len(SLOTS),
    max_size=len(SLOTS),
)
_ds9_ops = st.one_of(
    st.tuples(st.just("bar"), _slot, st.integers(0, 5), _LOW_VALUES),
    st.tuples(st.just("high"), _slot, st.integers(0, 4), _HIGH_VALUES),
    st.tuples(st.just("command"), _slot, _COMMANDS),
    st.tuples(st.just("rom"), _slot, _ROM_VALUES),
    st.tuples(st.just("reset"), _slot),
    st.tuples(st.just("unplug"), _slot),
    st.tuples(st.just("plug"), _slot),
)


@pytest.mark.req("R-DS-009", "R-DS-006")
@settings(max_examples=150, deadline=None)
@given(
    _setup,
    st.lists(_ds9_ops, max_size=12),
    st.lists(
        st.one_of(
            st.integers(0, (1 << 64) - 1), st.integers(0xE0000000, 0xE0200000), st.integers(0xC000, 0xC200)
        ),
        max_size=8,
    ),
)
def test_resolve_equals_brute_force_over_decoding_bars(
    setup: list[tuple[int, list[int], int, int]], ops: list[tuple[Any, ...]], extra: list[int]
) -> None:
    dm = fresh(VM)
    present: set[Bdf] = set()
    for (bdf, dtype), (command, lows, high, rom) in zip(SLOTS, setup, strict=True):
        dm.plug(VM, bdf, dtype)
        present.add(bdf)
        dm.config_write(VM, bdf, 0x04, 2, command)
        for index, low in enumerate(lows):
            dm.config_write(VM, bdf, 0x10 + 4 * index, 4, low)
        for index in range(5):
            bar = dtype.bar(index)
            if bar is not None and bar.kind is BarKind.MEM64:
                dm.config_write(VM, bdf, 0x14 + 4 * index, 4, high)
        dm.config_write(VM, bdf, 0x30, 4, rom)
        check_tables_exact(dm, VM, present, extra)
    for op in ops:
        bdf, dtype = SLOTS[op[1]]
        kind = op[0]
        if kind == "plug":
            if bdf not in present:
                dm.plug(VM, bdf, dtype)
                present.add(bdf)
        elif bdf not in present:
            continue
        elif kind == "bar":
            dm.config_write(VM, bdf, 0x10 + 4 * op[2], 4, op[3])
        elif kind == "high":
            dm.config_write(VM, bdf, 0x14 + 4 * op[2], 4, op[3])
        elif kind == "command":
            dm.config_write(VM, bdf, 0x04, 2, op[2])
        elif kind == "rom":
            dm.config_write(VM, bdf, 0x30, 4, op[2])
        elif kind == "reset":
            dm.reset(VM, bdf)
        else:
            dm.unplug(VM, bdf)
            present.discard(bdf)
        check_tables_exact(dm, VM, present, extra)


@pytest.mark.req("R-DS-009")
def test_overlapping_bars_resolve_to_lowest_bdf_then_bar_index_rom_last() -> None:
    dm = fresh(VM)
    low, high = Bdf(0, 1, 0), Bdf(0, 2, 0)
    for bdf in (high, low):
        dm.plug(VM, bdf, E1000)
    program_bar(dm, VM, high, 0, 0xFEBC0000)
    enable(dm, VM, high, 0x2)
    assert dm.resolve(VM, "memory", 0xFEBC1000) == (high, 0)
    program_bar(dm, VM, low, 0, 0xFEBC0000)
    enable(dm, VM, low, 0x2)
    assert dm.resolve(VM, "memory", 0xFEBC1000) == (low, 0)
    dm.config_write(VM, high, 0x30, 4, 0xFEBC0001)  # the ROM of the higher BDF loses to its BAR0 too
    assert dm.resolve(VM, "memory", 0xFEBC1000) == (low, 0)
    enable(dm, VM, low, 0x0)
    assert dm.resolve(VM, "memory", 0xFEBC1000) == (high, 0)
    dm.config_write(VM, low, 0x30, 4, 0xFEBC0001)
    enable(dm, VM, low, 0x2)
    program_bar(dm, VM, low, 0, 0)
    assert dm.resolve(VM, "memory", 0xFEBC1000) == (low, 6)  # lower BDF wins even with its ROM
    assert dm.resolve(VM, "memory", 0xFEBD0000) == (high, 0)  # beyond the 64 KiB ROM
    assert dm.resolve(VM, "memory", 0xFEBE0000) is None
    dm.unplug(VM, low)
    assert dm.resolve(VM, "memory", 0xFEBC1000) == (high, 0)
    dm.unplug(VM, high)
    assert dm.resolve(VM, "memory", 0xFEBC1000) is None


@pytest.mark.req("R-DS-009")
def test_resolving_an_undecoded_address_gives_nothing(programmed: DataManager) -> None:
    dm = programmed
    for address in (0, 0xFEBBFFFF, 0xFEBE0000, ECAM, (1 << 64) - 1):
        assert dm.resolve(VM, "memory", address) is None
    for port in (0, 0xBFFF, 0xC040, 0xCF8, 0xFFFF):
        assert dm.resolve(VM, "io", port) is None
    with pytest.raises(VpcidError):
        dm.resolve(VM, "io", 0x10000)
