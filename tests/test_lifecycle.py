"""Hot-plug and reset (R-HP-001..R-HP-003, R-RST-001..R-RST-003)."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import CATALOG_TYPES, NIC, VM, enable, program_bar
from vpcid.model import (
    Bdf,
    DataManager,
    DeviceType,
    InvalidArgument,
    Profile,
    SlotOccupied,
    UnknownDevice,
    UnknownVm,
    VpcidError,
    layout,
)
from vpcid.model.blob import decode_instance
from vpcid.model.catalog import A100, E1000, EDU, NVME

EDU_AT = Bdf(0, 4, 0)
NVME_AT = Bdf(0, 3, 0)
A100_AT = Bdf(1, 0, 0)
ECAM = 0xB000_0000
E1000_BAR0, E1000_BAR1, E1000_ROM = 0xFEBC_0000, 0xC000, 0xFEB0_0000
EDU_BAR0 = 0xFE00_0000
PM_CONTROL = 0x44
"""PMCSR of the e1000's power-management capability (capability at 0x40, body from 0x42)."""


def state(dm: DataManager) -> tuple[object, ...]:
    """Everything observable about a manager's VMs, for before/after comparisons."""
    return tuple((vm, dm.snapshot(vm), dm.tables(vm), dm.cf8(vm)) for vm in dm.vm_ids())


def config_bytes(dm: DataManager, vm: int, bdf: Bdf, size: int) -> bytes:
    """The configuration space of ``bdf`` read dword by dword."""
    return b"".join(dm.config_read(vm, bdf, o, 4).to_bytes(4, "little") for o in range(0, size, 4))


def ecam_address(bdf: Bdf, offset: int = 0, base: int = ECAM) -> int:
    return base + (bdf.bus << 20) + (bdf.device << 15) + (bdf.function << 12) + offset


def cf8_value(bdf: Bdf, offset: int) -> int:
    return 0x8000_0000 | bdf.bus << 16 | bdf.device << 11 | bdf.function << 8 | (offset & 0xFC)


def fresh_save(dtype: DeviceType, bdf: Bdf, profile: Profile | None = None) -> bytes:
    """The blob of a freshly plugged instance of ``dtype`` in a brand-new manager."""
    other = DataManager(profile or Profile())
    other.create_vm(VM)
    other.plug(VM, bdf, dtype)
    return other.save(VM, bdf)


def dirty_e1000(dm: DataManager, bdf: Bdf = NIC) -> None:
    """Program and dirty every writable register class of an e1000, and write BAR data."""
    program_bar(dm, VM, bdf, 0, E1000_BAR0)
    program_bar(dm, VM, bdf, 1, E1000_BAR1)
    dm.config_write(VM, bdf, 0x30, 4, E1000_ROM | 1)
    dm.config_write(VM, bdf, 0x0C, 1, 0x10)
    dm.config_write(VM, bdf, 0x3C, 1, 0x0B)
    dm.config_write(VM, bdf, PM_CONTROL, 2, 0x0103)
    enable(dm, VM, bdf, 0x0507)
    dm.mmio_write(VM, E1000_BAR0, 4, 0xDEADBEEF)
    dm.mmio_write(VM, E1000_BAR0 + 0x1_0000, 8, 0x0123_4567_89AB_CDEF)
    dm.mmio_write(VM, E1000_BAR0 + 0x1_FFFC, 4, 0xCAFEF00D)
    dm.io_write(VM, E1000_BAR1 + 4, 4, 0x5A5A5A5A)


def dirty_everything(dm: DataManager, vm: int, bdf: Bdf, size: int) -> None:
    """Write all ones to every dword of configuration space, the command register last."""
    for offset in range(0, size, 4):
        if offset != 0x04:
            dm.config_write(vm, bdf, offset, 4, 0xFFFF_FFFF)
    dm.config_write(vm, bdf, 0x04, 4, 0xFFFF_FFFF)


# ---------------------------------------------------------------- R-HP-001


def assert_e1000_data_is_fresh(dm: DataManager) -> None:
    """Map the e1000 at NIC again and check its BARs read zero, as never-written data does."""
    program_bar(dm, VM, NIC, 0, E1000_BAR0)
    program_bar(dm, VM, NIC, 1, E1000_BAR1)
    enable(dm, VM, NIC)
    assert dm.mmio_read(VM, E1000_BAR0, 4) == 0
    assert dm.mmio_read(VM, E1000_BAR0 + 0x1_0000, 8) == 0
    assert dm.mmio_read(VM, E1000_BAR0 + 0x1_FFFC, 4) == 0
    assert dm.io_read(VM, E1000_BAR1 + 4, 4) == 0


@pytest.mark.req("R-HP-001")
@pytest.mark.parametrize("dtype", CATALOG_TYPES, ids=lambda t: t.name)
def test_plug_gives_power_on_image(any_profile: Profile, dtype: DeviceType) -> None:
    dm = DataManager(any_profile)
    dm.create_vm(VM)
    bdf = Bdf(3, 7, 2)
    dm.plug(VM, bdf, dtype)
    image = layout(dtype, any_profile.status).image
    assert len(image) == dtype.config_size
    assert config_bytes(dm, VM, bdf, dtype.config_size) == image
    tables = dm.tables(VM)
    assert tables.config == ((bdf, dtype.name),)
    assert tables.io == ()
    assert tables.memory == ()
    assert dm.device_type(VM, bdf) is dtype


@pytest.mark.req("R-HP-001")
@pytest.mark.parametrize("dtype", CATALOG_TYPES, ids=lambda t: t.name)
def test_plug_starts_with_empty_data(dtype: DeviceType) -> None:
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, NIC, dtype)
    record = decode_instance(dm.save(VM, NIC))
    entry = bytes(12) + b"\x01" + bytes(3)  # MSI-X Vector Control: masked at power-on (R-IRQ-003)
    table = ((0, 3, entry * 33 + bytes(4096 - 16 * 33)),)
    assert record.pages == (table if dtype is NVME else ())
    assert record.windows == (None,) * 7
    expected_extra = bytes(8) if dtype is EDU else b""
    assert record.extra == expected_extra


@pytest.mark.req("R-HP-001")
def test_plugged_memory_bar_reads_zero_once_mapped(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, E1000_BAR0)
    program_bar(dm, VM, NIC, 1, E1000_BAR1)
    enable(dm, VM, NIC)
    for offset in (0, 4, 0x1000, 0x1_FFF8):
        assert dm.mmio_read(VM, E1000_BAR0 + offset, 8) == 0
    assert dm.io_read(VM, E1000_BAR1, 4) == 0
    assert dm.io_read(VM, E1000_BAR1 + 60, 4) == 0


@pytest.mark.req("R-HP-001")
def test_plugged_edu_starts_in_initial_state(dm: DataManager) -> None:
    dm.plug(VM, EDU_AT, EDU)
    program_bar(dm, VM, EDU_AT, 0, EDU_BAR0)
    enable(dm, VM, EDU_AT)
    assert dm.mmio_read(VM, EDU_BAR0, 4) == 0x010000ED
    assert dm.mmio_read(VM, EDU_BAR0 + 4, 4) == 0  # the liveness register reads zero at power-on
    assert dm.mmio_read(VM, EDU_BAR0 + 0x20, 4) == 0


@pytest.mark.req("R-HP-001")
def test_plug_nothing_decodes(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    assert dm.resolve(VM, "memory", 0) is None
    assert dm.resolve(VM, "io", 0) is None
    assert dm.mmio_read(VM, 0x1000, 4) == 0xFFFF_FFFF
    assert dm.io_read(VM, 0x1000, 4) == 0xFFFF_FFFF


@pytest.mark.req("R-HP-001")
@pytest.mark.parametrize("second", CATALOG_TYPES, ids=lambda t: t.name)
def test_plug_at_occupied_bdf_rejected(programmed: DataManager, second: DeviceType) -> None:
    programmed.mmio_write(VM, E1000_BAR0, 4, 0x1234)
    before = state(programmed)
    with pytest.raises(SlotOccupied) as info:
        programmed.plug(VM, NIC, second)
    assert info.value.kind == "slot-occupied"
    assert state(programmed) == before


@pytest.mark.req("R-HP-001")
def test_plug_same_bdf_in_other_vm_is_free(dm: DataManager) -> None:
    dm.create_vm(2)
    dm.plug(VM, NIC, E1000)
    dm.plug(2, NIC, EDU)
    assert dm.device_type(VM, NIC) is E1000
    assert dm.device_type(2, NIC) is EDU


@pytest.mark.req("R-HP-001")
def test_plug_into_unknown_vm_rejected(dm: DataManager) -> None:
    before = state(dm)
    with pytest.raises(UnknownVm):
        dm.plug(7, NIC, E1000)
    assert state(dm) == before


@pytest.mark.req("R-HP-001")
def test_plug_every_function_of_a_device_independently(dm: DataManager) -> None:
    for function in range(8):
        dtype = CATALOG_TYPES[function % len(CATALOG_TYPES)]
        if function == 0:  # function 0 says multi-function (R-MF-001)
            dtype = dataclasses.replace(dtype, name=f"{dtype.name}-mf", multifunction=True)
        dm.plug(VM, Bdf(0, 5, function), dtype)
    assert [b for b, _ in dm.tables(VM).config] == [Bdf(0, 5, f) for f in range(8)]


# ---------------------------------------------------------------- R-HP-002


@pytest.mark.req("R-HP-002")
def test_unplug_removes_table_entries(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    dirty_e1000(dm)
    tables = dm.tables(VM)
    assert {(e.bdf, e.bar) for e in tables.memory} == {(NIC, 0), (NIC, 6)}
    assert {(e.bdf, e.bar) for e in tables.io} == {(NIC, 1)}
    dm.unplug(VM, NIC)
    tables = dm.tables(VM)
    assert tables.config == ()
    assert tables.io == ()
    assert tables.memory == ()
    for space, address in (("memory", E1000_BAR0), ("memory", E1000_ROM), ("io", E1000_BAR1)):
        assert dm.resolve(VM, space, address) is None


@pytest.mark.req("R-HP-002")
def test_unplug_former_addresses_unmapped(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    dirty_e1000(dm)
    dm.unplug(VM, NIC)
    assert dm.mmio_read(VM, E1000_BAR0, 4) == 0xFFFF_FFFF
    assert dm.mmio_read(VM, E1000_BAR0 + 0x1_0000, 8) == (1 << 64) - 1
    assert dm.mmio_read(VM, E1000_ROM, 2) == 0xFFFF
    assert dm.io_read(VM, E1000_BAR1 + 4, 4) == 0xFFFF_FFFF
    dm.mmio_write(VM, E1000_BAR0, 4, 0)  # dropped: nothing decodes
    assert dm.tables(VM).memory == ()


@pytest.mark.req("R-HP-002")
def test_unplugged_bdf_reads_all_ones_everywhere(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    dirty_e1000(dm)
    dm.unplug(VM, NIC)
    for offset in (0x00, 0x04, 0x10, 0x3C, 0x44, 0xFC):
        assert dm.config_read(VM, NIC, offset, 4) == 0xFFFF_FFFF
        assert dm.config_read(VM, NIC, offset, 2) == 0xFFFF
        assert dm.config_read(VM, NIC, offset, 1) == 0xFF
        assert dm.mmio_read(VM, ecam_address(NIC, offset), 4) == 0xFFFF_FFFF
        dm.io_write(VM, 0xCF8, 4, cf8_value(NIC, offset))
        assert dm.io_read(VM, 0xCFC, 4) == 0xFFFF_FFFF
    dm.config_write(VM, NIC, 0x04, 2, 0x7)  # dropped
    assert dm.config_read(VM, NIC, 0x04, 2) == 0xFFFF


@pytest.mark.req("R-HP-002")
def test_unplug_leaves_overlapping_device_decoding(dm: DataManager) -> None:
    other = Bdf(0, 9, 0)
    for bdf in (NIC, other):
        dm.plug(VM, bdf, E1000)
        program_bar(dm, VM, bdf, 0, E1000_BAR0)
        enable(dm, VM, bdf, 0x2)
    dm.mmio_write(VM, E1000_BAR0, 4, 0x1111_1111)  # reaches NIC (lowest BDF)
    assert dm.resolve(VM, "memory", E1000_BAR0) == (NIC, 0)
    dm.unplug(VM, NIC)
    assert dm.resolve(VM, "memory", E1000_BAR0) == (other, 0)
    assert dm.mmio_read(VM, E1000_BAR0, 4) == 0
    assert [(e.bdf, e.bar) for e in dm.tables(VM).memory] == [(other, 0)]


@pytest.mark.req("R-HP-002")
def test_unplug_empty_bdf_rejected(programmed: DataManager) -> None:
    before = state(programmed)
    with pytest.raises(UnknownDevice) as info:
        programmed.unplug(VM, Bdf(0, 3, 0))
    assert info.value.kind == "unknown-device"
    assert state(programmed) == before


@pytest.mark.req("R-HP-002")
def test_unplug_twice_rejected(programmed: DataManager) -> None:
    programmed.unplug(VM, NIC)
    before = state(programmed)
    with pytest.raises(UnknownDevice):
        programmed.unplug(VM, NIC)
    assert state(programmed) == before


@pytest.mark.req("R-HP-002")
def test_unplug_same_bdf_in_other_vm_untouched(dm: DataManager) -> None:
    dm.create_vm(2)
    for vm in (VM, 2):
        dm.plug(vm, NIC, E1000)
        program_bar(dm, vm, NIC, 0, E1000_BAR0)
        enable(dm, vm, NIC)
    dm.mmio_write(2, E1000_BAR0, 4, 0x77)
    snap2 = dm.snapshot(2)
    dm.unplug(VM, NIC)
    assert dm.snapshot(2) == snap2
    assert dm.mmio_read(2, E1000_BAR0, 4) == 0x77


@pytest.mark.req("R-HP-002")
def test_unplug_bad_arguments_rejected(programmed: DataManager) -> None:
    before = state(programmed)
    for vm, bdf, exc in (
        (99, NIC, UnknownVm),
        (VM, "00:02.0", InvalidArgument),
        (True, NIC, InvalidArgument),
    ):
        with pytest.raises(exc):
            programmed.unplug(vm, bdf)  # type: ignore[arg-type]
    assert state(programmed) == before


# ---------------------------------------------------------------- R-HP-003


@pytest.mark.req("R-HP-003")
def test_replug_same_type_starts_fresh(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    dirty_e1000(dm)
    dm.unplug(VM, NIC)
    dm.plug(VM, NIC, E1000)
    assert dm.save(VM, NIC) == fresh_save(E1000, NIC)
    assert config_bytes(dm, VM, NIC, 0x100) == layout(E1000, Profile().status).image
    assert dm.tables(VM).memory == ()
    assert dm.tables(VM).io == ()
    assert_e1000_data_is_fresh(dm)


@pytest.mark.req("R-HP-003")
def test_replug_edu_forgets_behaviour_state(dm: DataManager) -> None:
    dm.plug(VM, EDU_AT, EDU)
    program_bar(dm, VM, EDU_AT, 0, EDU_BAR0)
    enable(dm, VM, EDU_AT)
    dm.mmio_write(VM, EDU_BAR0 + 4, 4, 0x1234_5678)
    dm.mmio_write(VM, EDU_BAR0 + 0x20, 4, 0x80)
    assert dm.mmio_read(VM, EDU_BAR0 + 4, 4) == 0xEDCB_A987
    dm.unplug(VM, EDU_AT)
    dm.plug(VM, EDU_AT, EDU)
    assert dm.save(VM, EDU_AT) == fresh_save(EDU, EDU_AT)
    program_bar(dm, VM, EDU_AT, 0, EDU_BAR0)
    enable(dm, VM, EDU_AT)
    assert dm.mmio_read(VM, EDU_BAR0 + 4, 4) == 0  # the liveness register reads zero at power-on
    assert dm.mmio_read(VM, EDU_BAR0 + 0x20, 4) == 0


@pytest.mark.req("R-HP-003")
@pytest.mark.parametrize("new_type", CATALOG_TYPES, ids=lambda t: t.name)
def test_replug_other_type_starts_fresh(any_profile: Profile, new_type: DeviceType) -> None:
    dm = DataManager(any_profile)
    dm.create_vm(VM)
    dm.plug(VM, NIC, E1000)
    dirty_e1000(dm)
    dm.unplug(VM, NIC)
    dm.plug(VM, NIC, new_type)
    assert dm.save(VM, NIC) == fresh_save(new_type, NIC, any_profile)
    assert config_bytes(dm, VM, NIC, new_type.config_size) == layout(new_type, any_profile.status).image
    assert dm.tables(VM).memory == ()
    assert dm.tables(VM).io == ()


@pytest.mark.req("R-HP-003")
def test_replug_vm_snapshot_equals_fresh_vm(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    dirty_e1000(dm)
    dm.unplug(VM, NIC)
    dm.plug(VM, NIC, E1000)
    fresh = DataManager()
    fresh.create_vm(VM)
    fresh.plug(VM, NIC, E1000)
    assert dm.snapshot(VM) == fresh.snapshot(VM)


# ---------------------------------------------------------------- R-RST-001


@pytest.mark.req("R-RST-001")
def test_reset_restores_every_listed_register(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    dirty_e1000(dm)
    # Everything is dirty first.
    assert dm.config_read(VM, NIC, 0x04, 2) == 0x0507
    assert dm.config_read(VM, NIC, 0x0C, 1) == 0x10
    assert dm.config_read(VM, NIC, 0x3C, 1) == 0x0B
    assert dm.config_read(VM, NIC, 0x10, 4) == E1000_BAR0
    assert dm.config_read(VM, NIC, 0x14, 4) == E1000_BAR1 | 1
    assert dm.config_read(VM, NIC, 0x30, 4) == E1000_ROM | 1
    assert dm.config_read(VM, NIC, PM_CONTROL, 2) == 0x0103
    dm.reset(VM, NIC)
    assert dm.config_read(VM, NIC, 0x04, 2) == 0  # command
    assert dm.config_read(VM, NIC, 0x06, 2) == 0x0010  # status: power-on (capability list)
    assert dm.config_read(VM, NIC, 0x0C, 1) == 0  # cache line size
    assert dm.config_read(VM, NIC, 0x3C, 1) == 0  # interrupt line
    assert dm.config_read(VM, NIC, 0x10, 4) == 0x0  # BAR0: 32-bit memory type bits
    assert dm.config_read(VM, NIC, 0x14, 4) == 0x1  # BAR1: I/O type bit
    for offset in (0x18, 0x1C, 0x20, 0x24):
        assert dm.config_read(VM, NIC, offset, 4) == 0
    assert dm.config_read(VM, NIC, 0x30, 4) == 0  # ROM BAR
    assert dm.config_read(VM, NIC, PM_CONTROL, 2) == 0  # capability register
    # Identity untouched.
    assert dm.config_read(VM, NIC, 0x00, 4) == 0x100E_8086
    assert dm.config_read(VM, NIC, 0x3D, 1) == 1
    assert config_bytes(dm, VM, NIC, 0x100) == layout(E1000, Profile().status).image


@pytest.mark.req("R-RST-001")
@pytest.mark.parametrize(
    ("dtype", "bar_bits"),
    [
        (NVME, {0x10: 0x4, 0x14: 0}),
        (A100, {0x10: 0x0, 0x14: 0xC, 0x18: 0, 0x1C: 0xC, 0x20: 0}),
        (EDU, {0x10: 0x0}),
    ],
    ids=lambda v: v.name if isinstance(v, DeviceType) else "",
)
def test_reset_bars_return_to_type_bits(dm: DataManager, dtype: DeviceType, bar_bits: dict[int, int]) -> None:
    dm.plug(VM, NIC, dtype)
    dirty_everything(dm, VM, NIC, dtype.config_size)
    assert any(dm.config_read(VM, NIC, o, 4) != v for o, v in bar_bits.items())
    dm.reset(VM, NIC)
    for offset, value in bar_bits.items():
        assert dm.config_read(VM, NIC, offset, 4) == value


@pytest.mark.req("R-RST-001")
@pytest.mark.parametrize("dtype", CATALOG_TYPES, ids=lambda t: t.name)
def test_reset_after_writing_all_ones_everywhere(any_profile: Profile, dtype: DeviceType) -> None:
    dm = DataManager(any_profile)
    dm.create_vm(VM)
    dm.plug(VM, NIC, dtype)
    image = layout(dtype, any_profile.status).image
    dirty_everything(dm, VM, NIC, dtype.config_size)
    dirty = config_bytes(dm, VM, NIC, dtype.config_size)
    assert dirty != image
    assert dirty[0x04] != 0
    assert dirty[0x0C] == 0xFF
    assert dirty[0x3C] == 0xFF
    # all-ones BARs end at the top of their space, where bar_at_top = unmapped maps nothing (R-DEC-006)
    assert (dm.tables(VM).memory != ()) is (any_profile.bar_at_top.value == "decodes")
    dm.reset(VM, NIC)
    assert config_bytes(dm, VM, NIC, dtype.config_size) == image
    assert dm.tables(VM).memory == ()
    assert dm.tables(VM).io == ()
    assert dm.save(VM, NIC) == fresh_save(dtype, NIC, any_profile)


@pytest.mark.req("R-RST-001")
def test_reset_removes_table_entries(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    dirty_e1000(dm)
    dm.reset(VM, NIC)
    tables = dm.tables(VM)
    assert tables.config == ((NIC, "e1000"),)
    assert tables.io == ()
    assert tables.memory == ()
    assert dm.resolve(VM, "memory", E1000_BAR0) is None
    assert dm.resolve(VM, "memory", E1000_ROM) is None
    assert dm.resolve(VM, "io", E1000_BAR1) is None
    assert dm.mmio_read(VM, E1000_BAR0, 4) == 0xFFFF_FFFF
    assert dm.io_read(VM, E1000_BAR1, 4) == 0xFFFF_FFFF


@pytest.mark.req("R-RST-001")
def test_reset_only_touches_its_instance(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    dirty_e1000(dm)
    dm.plug(VM, EDU_AT, EDU)
    program_bar(dm, VM, EDU_AT, 0, EDU_BAR0)
    enable(dm, VM, EDU_AT)
    dm.mmio_write(VM, EDU_BAR0 + 4, 4, 5)
    edu_blob = dm.save(VM, EDU_AT)
    dm.reset(VM, NIC)
    assert dm.save(VM, EDU_AT) == edu_blob
    assert dm.resolve(VM, "memory", EDU_BAR0) == (EDU_AT, 0)


@pytest.mark.req("R-RST-001")
def test_reset_unknown_device_rejected(programmed: DataManager) -> None:
    before = state(programmed)
    with pytest.raises(UnknownDevice):
        programmed.reset(VM, Bdf(0, 3, 0))
    with pytest.raises(UnknownVm):
        programmed.reset(5, NIC)
    with pytest.raises(InvalidArgument):
        programmed.reset(VM, (0, 2, 0))  # type: ignore[arg-type]
    assert state(programmed) == before


# ---------------------------------------------------------------- R-RST-002


@pytest.mark.req("R-RST-002")
def test_reset_clears_memory_like_bar_data(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    dirty_e1000(dm)
    assert decode_instance(dm.save(VM, NIC)).pages != ()
    dm.reset(VM, NIC)
    assert decode_instance(dm.save(VM, NIC)).pages == ()
    assert_e1000_data_is_fresh(dm)


@pytest.mark.req("R-RST-002")
def test_reset_runs_edu_behaviour_reset(dm: DataManager) -> None:
    dm.plug(VM, EDU_AT, EDU)
    program_bar(dm, VM, EDU_AT, 0, EDU_BAR0)
    enable(dm, VM, EDU_AT)
    dm.mmio_write(VM, EDU_BAR0 + 4, 4, 0x1234_5678)
    dm.mmio_write(VM, EDU_BAR0 + 0x20, 4, 0xFF)
    assert dm.mmio_read(VM, EDU_BAR0 + 4, 4) == 0xEDCB_A987
    assert dm.mmio_read(VM, EDU_BAR0 + 0x20, 4) == 0x80
    dm.reset(VM, EDU_AT)
    assert decode_instance(dm.save(VM, EDU_AT)).extra == bytes(8)
    program_bar(dm, VM, EDU_AT, 0, EDU_BAR0)
    enable(dm, VM, EDU_AT)
    assert dm.mmio_read(VM, EDU_BAR0, 4) == 0x010000ED
    assert dm.mmio_read(VM, EDU_BAR0 + 4, 4) == 0  # the liveness register reads zero at power-on
    assert dm.mmio_read(VM, EDU_BAR0 + 0x20, 4) == 0


@pytest.mark.req("R-RST-002")
def test_reset_clears_data_of_large_64bit_bar(dm: DataManager) -> None:
    dm.plug(VM, A100_AT, A100)
    program_bar(dm, VM, A100_AT, 1, 0x10_0000_0000)
    enable(dm, VM, A100_AT)
    far = 0x10_0000_0000 + (63 << 30)
    dm.mmio_write(VM, far, 8, 0xFFFF_FFFF_FFFF_FFFF)
    dm.reset(VM, A100_AT)
    program_bar(dm, VM, A100_AT, 1, 0x10_0000_0000)
    enable(dm, VM, A100_AT)
    assert dm.mmio_read(VM, far, 8) == 0
    assert decode_instance(dm.save(VM, A100_AT)).pages == ()


# ---------------------------------------------------------------- R-RST-003


def _populated_vm(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    dirty_e1000(dm)
    dm.plug(VM, EDU_AT, EDU)
    program_bar(dm, VM, EDU_AT, 0, EDU_BAR0)
    enable(dm, VM, EDU_AT)
    dm.mmio_write(VM, EDU_BAR0 + 4, 4, 0xAAAA_5555)
    dm.plug(VM, NVME_AT, NVME)
    program_bar(dm, VM, NVME_AT, 0, 0x2_0000_0000)
    enable(dm, VM, NVME_AT)
    dm.mmio_write(VM, 0x2_0000_0000 + 0x100, 4, 0xFEED)
    dm.io_write(VM, 0xCF8, 4, cf8_value(NIC, 0x10))


@pytest.mark.req("R-RST-003")
def test_reset_vm_resets_every_instance_and_cf8(dm: DataManager) -> None:
    _populated_vm(dm)
    assert dm.cf8(VM) == cf8_value(NIC, 0x10)
    dm.reset_vm(VM)
    assert dm.cf8(VM) == 0
    assert dm.io_read(VM, 0xCF8, 4) == 0
    tables = dm.tables(VM)
    assert tables.config == ((NIC, "e1000"), (NVME_AT, "nvme"), (EDU_AT, "edu"))
    assert tables.io == ()
    assert tables.memory == ()
    for bdf, dtype in ((NIC, E1000), (EDU_AT, EDU), (NVME_AT, NVME)):
        assert dm.save(VM, bdf) == fresh_save(dtype, bdf)


@pytest.mark.req("R-RST-003")
def test_reset_vm_snapshot_equals_fresh_vm(dm: DataManager) -> None:
    _populated_vm(dm)
    dm.reset_vm(VM)
    fresh = DataManager()
    fresh.create_vm(VM)
    for bdf, dtype in ((NIC, E1000), (EDU_AT, EDU), (NVME_AT, NVME)):
        fresh.plug(VM, bdf, dtype)
    assert dm.snapshot(VM) == fresh.snapshot(VM)


@pytest.mark.req("R-RST-003")
def test_reset_vm_keeps_ecam_window(dm: DataManager) -> None:
    _populated_vm(dm)
    dm.reset_vm(VM)
    assert dm.mmio_read(VM, ecam_address(NIC), 4) == 0x100E_8086
    dm.io_write(VM, 0xCF8, 4, cf8_value(NIC, 0))
    assert dm.io_read(VM, 0xCFC, 4) == 0x100E_8086


@pytest.mark.req("R-RST-003")
@pytest.mark.parametrize("ecam_base", [None, 0xC000_0000, 0x10_0000_0000])
def test_reset_vm_keeps_chosen_ecam(ecam_base: int | None) -> None:
    dm = DataManager()
    dm.create_vm(3, ecam_base=ecam_base)
    dm.plug(3, NIC, E1000)
    dm.io_write(3, 0xCF8, 4, 0x8000_0000)
    dm.reset_vm(3)
    assert dm.cf8(3) == 0
    if ecam_base is None:
        assert dm.mmio_read(3, ecam_address(NIC), 4) == 0xFFFF_FFFF
    else:
        assert dm.mmio_read(3, ecam_address(NIC, base=ecam_base), 4) == 0x100E_8086
        assert dm.mmio_read(3, ecam_address(NIC), 4) == 0xFFFF_FFFF


@pytest.mark.req("R-RST-003")
def test_reset_vm_clears_latched_cf8() -> None:
    dm = DataManager(Profile.from_mapping({"cf8_low_bits": "latched"}))
    dm.create_vm(VM)
    dm.io_write(VM, 0xCF8, 4, 0x8000_1003)
    assert dm.cf8(VM) == 0x8000_1003
    dm.reset_vm(VM)
    assert dm.cf8(VM) == 0
    assert dm.io_read(VM, 0xCF8, 4) == 0


@pytest.mark.req("R-RST-003")
def test_reset_vm_empty_vm(dm: DataManager) -> None:
    dm.io_write(VM, 0xCF8, 4, 0x8000_0000)
    dm.reset_vm(VM)
    assert dm.cf8(VM) == 0
    assert dm.tables(VM).config == ()


@pytest.mark.req("R-RST-003")
def test_reset_vm_leaves_other_vms_alone(dm: DataManager) -> None:
    _populated_vm(dm)
    dm.create_vm(2)
    dm.plug(2, NIC, E1000)
    program_bar(dm, 2, NIC, 0, E1000_BAR0)
    enable(dm, 2, NIC)
    dm.mmio_write(2, E1000_BAR0, 4, 0x42)
    dm.io_write(2, 0xCF8, 4, 0x8000_0010)
    snap2 = dm.snapshot(2)
    dm.reset_vm(VM)
    assert dm.snapshot(2) == snap2
    assert dm.cf8(2) == 0x8000_0010


@pytest.mark.req("R-RST-003")
def test_reset_vm_unknown_vm_rejected(dm: DataManager) -> None:
    _populated_vm(dm)
    before = state(dm)
    for bad, exc in ((2, UnknownVm), (-1, InvalidArgument), (True, InvalidArgument), ("1", InvalidArgument)):
        with pytest.raises(exc) as info:
            dm.reset_vm(bad)  # type: ignore[arg-type]
        assert isinstance(info.value, VpcidError)
    assert state(dm) == before
