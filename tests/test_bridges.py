"""PCI-to-PCI bridges: the type 1 header, routing by bus number, forwarding, secondary bus reset (R-BRG-*)."""

from __future__ import annotations

import dataclasses

import pytest
from vpcid.conformance.certify import DEFAULT_BUDGET, DEFAULT_SEED, certify
from vpcid.conformance.mutants import BRIDGE_MUTANTS, Mutant, mutant_adapter
from vpcid.conformance.typefile import parse_type_file, type_file_json
from vpcid.model import (
    BRIDGES,
    DEFAULT_PROFILE,
    BarKind,
    BarSpec,
    Bdf,
    BlobError,
    BridgeRegisters,
    ConfigSpace,
    DataManager,
    DeviceType,
    DeviceTypeError,
    IoWindow,
    PrefetchWindow,
    RomSpec,
    UnknownDevice,
)
from vpcid.model.blob import VmRecord as SnapshotRecord
from vpcid.model.blob import decode_snapshot, encode_snapshot
from vpcid.model.catalog import E1000, EDU, PCI_BRIDGE
from vpcid.model.header import BRIDGE_CONTROL, COMMAND, IO_BASE, PREF_BASE, PREF_BASE_UPPER, PRIMARY_BUS
from vpcid.model.topology import Windows


def bridge_type(name: str = "bridge", **registers: object) -> DeviceType:
    """A bridge declared by fields, with the given bridge register choices."""
    return DeviceType(name=name, vendor_id=0x1B36, device_id=0x0001, class_code=0x060400,
                      bridge=BridgeRegisters(**registers))  # type: ignore[arg-type]  # fmt: skip


# ---------------------------------------------------------------- the type 1 header (R-BRG-001)


@pytest.mark.req("R-BRG-001")
def test_a_bridge_has_a_type_1_header_with_its_windows_registers() -> None:
    t = bridge_type(io=IoWindow.BITS32, prefetchable=PrefetchWindow.BITS64)
    space = t.declared
    assert space.image[0x0E] == 0x01
    assert space.wmask[PRIMARY_BUS : PRIMARY_BUS + 3] == b"\xff\xff\xff"
    assert space.image[IO_BASE] & 0xF == 1
    assert space.wmask[IO_BASE] == 0xF0
    assert space.word(0x30, 4, "wmask") == 0xFFFF_FFFF  # I/O upper 16 bits of base and limit
    assert space.word(PREF_BASE, 2) == 0x0001
    assert space.word(PREF_BASE, 2, "wmask") == 0xFFF0
    assert space.word(PREF_BASE_UPPER, 4, "wmask") == 0xFFFF_FFFF
    assert space.word(0x20, 4, "wmask") == 0xFFF0_FFF0  # memory base and limit
    assert space.word(BRIDGE_CONTROL, 2, "wmask") == 0x007F
    assert space.word(0x1E, 2, "w1cmask") == 0xF900
    assert space.word(0x1E, 2, "wmask") == 0


@pytest.mark.req("R-BRG-001")
def test_a_window_the_bridge_lacks_is_read_only_zero() -> None:
    t = bridge_type(io=IoWindow.NONE, prefetchable=PrefetchWindow.NONE)
    space = t.declared
    for offset in (IO_BASE, IO_BASE + 1, *range(PREF_BASE, PREF_BASE + 12), *range(0x30, 0x34)):
        assert (space.image[offset], space.wmask[offset]) == (0, 0), hex(offset)
    narrow = bridge_type(io=IoWindow.BITS16, prefetchable=PrefetchWindow.BITS32).declared
    assert narrow.word(0x30, 4, "wmask") == 0
    assert narrow.word(PREF_BASE_UPPER, 8, "wmask") == 0
    assert narrow.wmask[IO_BASE] == 0xF0
    assert narrow.word(PREF_BASE, 2, "wmask") == 0xFFF0


@pytest.mark.req("R-BRG-001")
def test_from_space_reads_a_bridge_off_its_bytes() -> None:
    for t in (*BRIDGES.values(), bridge_type(io=IoWindow.BITS32, prefetchable=PrefetchWindow.NONE)):
        again = DeviceType.from_space(t.name, t.declared, t.bars, t.rom)
        assert again == t
        assert again.bridge == t.bridge


def bar_device(name: str, bar: BarSpec) -> DeviceType:
    """A plain function with one BAR."""
    return DeviceType(name=name, vendor_id=0x1234, device_id=0x5678, class_code=0x030000, bars=(bar,))


def _patched(space: ConfigSpace, array: str, offset: int, value: int) -> ConfigSpace:
    arrays = {
        "image": bytearray(space.image),
        "wmask": bytearray(space.wmask),
        "w1cmask": bytearray(space.w1cmask),
    }
    arrays[array][offset] = value
    return ConfigSpace(bytes(arrays["image"]), bytes(arrays["wmask"]), bytes(arrays["w1cmask"]))


@pytest.mark.req("R-BRG-001")
@pytest.mark.parametrize(
    ("array", "offset", "value", "byte"),
    [
        ("wmask", 0x19, 0x00, "0x019"),  # secondary bus number not writable
        ("image", 0x1A, 0x05, "0x01a"),  # subordinate bus number not zero at power-on
        ("image", 0x1D, 0x01, "0x01d"),  # I/O limit says 32-bit, base says 16-bit
        ("wmask", 0x30, 0xFF, "0x030"),  # I/O upper half writable under a 16-bit window
        ("image", 0x26, 0x00, "0x026"),  # prefetchable limit says 32-bit, base 64-bit
        ("image", 0x1C, 0x02, "0x01c"),  # I/O window type 2 is reserved
        ("wmask", 0x3F, 0x10, "0x03f"),  # bridge control bit 12 is reserved
        ("w1cmask", 0x20, 0x10, "0x020"),  # memory base bits are not RW1C
    ],
)
def test_bridge_bytes_that_contradict_the_windows_are_rejected_naming_the_byte(
    array: str, offset: int, value: int, byte: str
) -> None:
    space = _patched(bridge_type().declared, array, offset, value)
    with pytest.raises(DeviceTypeError, match=f"config byte {byte}"):
        DeviceType.from_space("bad", space)


@pytest.mark.req("R-BRG-001")
def test_a_bridge_has_two_bar_slots_no_subsystem_ids_and_its_rom_at_0x38() -> None:
    with pytest.raises(DeviceTypeError, match="two"):
        DeviceType(name="b", vendor_id=1, device_id=2, class_code=0x060400, bridge=BridgeRegisters(),
                   bars=(None, None, BarSpec(BarKind.MEM32, 4096)))  # fmt: skip
    with pytest.raises(DeviceTypeError, match="subsystem"):
        DeviceType(name="b", vendor_id=1, device_id=2, class_code=0x060400, bridge=BridgeRegisters(),
                   subsystem_vendor_id=5)  # fmt: skip
    with pytest.raises(DeviceTypeError, match="64-bit BAR needs slot 2"):
        DeviceType(name="b", vendor_id=1, device_id=2, class_code=0x060400, bridge=BridgeRegisters(),
                   bars=(None, BarSpec(BarKind.MEM64, 4096)))  # fmt: skip
    t = DeviceType(name="b", vendor_id=1, device_id=2, class_code=0x060400, bridge=BridgeRegisters(),
                   rom=RomSpec(2048))  # fmt: skip
    assert t.rom_offset == 0x38
    assert t.declared.word(0x38, 4, "wmask") == 0xFFFFF801
    assert t.declared.word(0x30, 4, "wmask") == 0  # 0x30 is the I/O upper half here


@pytest.mark.req("R-BRG-001")
@pytest.mark.parametrize(
    "registers",
    [{"control_mask": 0x1000}, {"control_mask": 0x40, "control_rw1c": 0x40}, {"secondary_status_rw1c": 0x1}],
)
def test_bridge_register_declarations_outside_the_defined_bits_are_rejected(
    registers: dict[str, int],
) -> None:
    with pytest.raises(DeviceTypeError):
        BridgeRegisters(**registers)  # type: ignore[arg-type]


@pytest.mark.req("R-BRG-001")
def test_the_type_file_carries_bridges_in_both_forms() -> None:
    doc = type_file_json(BRIDGES.values())
    assert [e.dtype for e in parse_type_file(doc)] == list(BRIDGES.values())
    fields = {"name": "b", "vendor_id": 0x1B36, "device_id": 1, "class_code": 0x060400,
              "bridge": {"io": "32-bit", "prefetchable": "none", "control_mask": 0x4F}}  # fmt: skip
    (entry,) = parse_type_file({**doc, "types": [fields]})
    assert entry.dtype.bridge == BridgeRegisters(IoWindow.BITS32, PrefetchWindow.NONE, control_mask=0x4F)
    assert entry.dtype == bridge_type(
        "b", io=IoWindow.BITS32, prefetchable=PrefetchWindow.NONE, control_mask=0x4F
    )


@pytest.mark.req("R-BRG-001")
def test_the_bundled_bridges_are_as_qemu_declares_them() -> None:
    ids = {name: (t.vendor_id, t.device_id, t.express) for name, t in BRIDGES.items()}
    assert ids == {
        "pci-bridge": (0x1B36, 0x0001, False),
        "pcie-root-port": (0x1B36, 0x000C, True),
        "x3130-upstream": (0x104C, 0x8232, True),
        "xio3130-downstream": (0x104C, 0x8233, True),
    }
    for t in BRIDGES.values():
        assert t.class_code == 0x060400
        assert t.bridge is not None
        express = t.name != "pci-bridge"  # QEMU's PCI Express ports: no bits 5 and 7-11, status 0
        assert t.declared.word(BRIDGE_CONTROL, 2, "wmask") == (0x005F if express else 0x0BFF)
        assert t.declared.image[0x1E] == (0x00 if express else 0xA0)  # 66 MHz, fast back-to-back


# ---------------------------------------------------------------- routing, forwarding, reset


VM = 1
PORT = Bdf(0, 1, 0)
NIC_BAR = 0xE000_0000


def chain(dm: DataManager, depth: int, *, windows: bool = True) -> list[Bdf]:
    """``depth`` pci-bridges one below the other from 00:01.0, bus n+1 below the n-th, each forwarding
    memory 0xE0000000-0xE00FFFFF when ``windows``; returns their BDFs."""
    bdfs: list[Bdf] = []
    for level in range(depth):
        bdf = Bdf(level, 1 if level == 0 else 0, 0)
        dm.plug(VM, bdf, PCI_BRIDGE)
        dm.config_write(VM, bdf, 0x18, 4, level | (level + 1) << 8 | depth << 16)
        if windows:
            dm.config_write(VM, bdf, 0x20, 4, 0xE000_E000)
            dm.config_write(VM, bdf, COMMAND, 2, 0x3)
        bdfs.append(bdf)
    return bdfs


def nic_at(dm: DataManager, bdf: Bdf) -> None:
    dm.plug(VM, bdf, E1000)
    dm.config_write(VM, bdf, 0x10, 4, NIC_BAR)
    dm.config_write(VM, bdf, COMMAND, 2, 0x2)


@pytest.fixture
def vm() -> DataManager:
    dm = DataManager()
    dm.create_vm(VM)
    return dm


@pytest.mark.req("R-BRG-002", "R-BRG-003")
def test_a_device_below_a_bridge_is_reached_by_the_bridges_secondary_bus_number(vm: DataManager) -> None:
    chain(vm, 1)
    vm.plug(VM, Bdf(1, 3, 0), E1000)
    assert vm.config_read(VM, Bdf(1, 3, 0), 0, 4) == 0x100E_8086
    assert vm.topology(VM)[1].parent == 0
    vm.config_write(VM, PORT, 0x19, 1, 0)  # secondary 0: bus 0 is the root's, so the bus below has no number
    assert vm.config_read(VM, Bdf(1, 3, 0), 0, 4) == 0xFFFF_FFFF
    assert vm.topology(VM)[1].bdf is None
    with pytest.raises(UnknownDevice):
        vm.save(VM, Bdf(1, 3, 0))
    vm.config_write(VM, PORT, 0x19, 1, 5)  # secondary 5 above subordinate 1: 5 is still its secondary number
    assert vm.config_read(VM, Bdf(5, 3, 0), 0, 4) == 0x100E_8086
    assert vm.config_read(VM, Bdf(1, 3, 0), 0, 4) == 0xFFFF_FFFF
    vm.config_write(VM, PORT, 0x1A, 1, 7)  # now 5-7: the bus is still 5
    assert vm.config_read(VM, Bdf(5, 3, 0), 0, 4) == 0x100E_8086
    vm.io_write(VM, 0xCF8, 4, 0x8005_1800)  # 0xCFC and ECAM route alike
    assert vm.io_read(VM, 0xCFC, 4) == 0x100E_8086
    assert vm.mmio_read(VM, 0xB000_0000 + (5 << 20 | 3 << 15), 4) == 0x100E_8086


@pytest.mark.req("R-BRG-003")
def test_root_buses_take_their_numbers_before_bridges(vm: DataManager) -> None:
    chain(vm, 1)
    vm.config_write(VM, PORT, 0x1A, 1, 4)  # range 1-4
    vm.plug(VM, Bdf(1, 0, 0), EDU)  # goes below the bridge: bus 1 names its secondary bus
    vm.plug(VM, Bdf(3, 0, 0), E1000)  # bus 3 is in the range but not the secondary: nothing below
    assert [n.parent for n in vm.topology(VM)] == [None, 0, None]
    assert vm.topology(VM)[2].root_bus == 3
    vm.config_write(VM, PORT, 0x19, 1, 3)  # secondary 3: root bus 3 keeps number 3
    assert vm.topology(VM)[0].secondary is None
    assert vm.tables(VM).config == ((PORT, "pci-bridge"), (Bdf(3, 0, 0), "e1000"))
    vm.config_write(VM, PORT, 0x18, 1, 9)  # the primary bus number routes nothing
    assert vm.config_read(VM, Bdf(3, 0, 0), 0, 2) == 0x8086


@pytest.mark.req("R-BRG-003", "R-BRG-002")
def test_routing_goes_down_several_levels(vm: DataManager) -> None:
    bridges = chain(vm, 4)
    nic_at(vm, Bdf(4, 2, 0))
    assert [n.secondary for n in vm.topology(VM)[:4]] == [1, 2, 3, 4]
    assert vm.topology(VM)[4].bdf == Bdf(4, 2, 0)
    vm.config_write(VM, bridges[2], 0x1A, 1, 2)  # the third bridge takes only its secondary number, 3
    assert vm.topology(VM)[4].bdf is None  # bus 4, below the fourth bridge, is no longer reached
    assert vm.topology(VM)[3].bdf == Bdf(3, 0, 0)  # the fourth bridge sits on bus 3, still reached
    vm.config_write(VM, bridges[1], 0x1A, 1, 1)  # the second bridge's subordinate 1, below its secondary 2
    assert vm.topology(VM)[3].bdf is None  # number 3 is no longer passed down to bus 2
    assert vm.topology(VM)[2].bdf == Bdf(2, 0, 0)


@pytest.mark.req("R-BRG-002")
def test_unplugging_a_bridge_removes_everything_below(vm: DataManager) -> None:
    chain(vm, 2)
    nic_at(vm, Bdf(2, 0, 0))
    assert vm.resolve(VM, "memory", NIC_BAR) == (Bdf(2, 0, 0), 0)
    vm.unplug(VM, PORT)
    assert vm.topology(VM) == ()
    assert vm.resolve(VM, "memory", NIC_BAR) is None
    assert vm.tables(VM).memory == ()
    vm.plug(VM, Bdf(1, 0, 0), E1000)  # bus 1 is a root bus again
    assert vm.topology(VM)[0].root_bus == 1


@pytest.mark.req("R-BRG-005")
def test_windows_decode_as_the_bridge_specification_says(vm: DataManager) -> None:
    vm.plug(VM, PORT, bridge_type(io=IoWindow.BITS32, prefetchable=PrefetchWindow.BITS64))
    vm.config_write(VM, PORT, 0x1C, 2, 0x2111)  # I/O base 0x1000, limit 0x2fff, 32-bit
    vm.config_write(VM, PORT, 0x30, 4, 0x0002_0001)  # upper halves: base 0x1_1000, limit 0x2_2fff
    vm.config_write(VM, PORT, 0x20, 4, 0xE010_E000)  # memory 0xe0000000-0xe01fffff
    vm.config_write(VM, PORT, 0x24, 4, 0xFFF1_0001)  # prefetchable base 0, limit 0xffffffff (+ upper)
    vm.config_write(VM, PORT, 0x28, 4, 0x4)  # base upper 4
    vm.config_write(VM, PORT, 0x2C, 4, 0x4)
    (node,) = vm.topology(VM)
    assert node.windows == Windows(
        (0x1_1000, 0x2_2FFF), (0xE000_0000, 0xE01F_FFFF), (0x4_0000_0000, 0x4_FFFF_FFFF)
    )
    vm.config_write(VM, PORT, 0x20, 4, 0xE000_E010)  # base above limit: closed
    assert vm.topology(VM)[0].windows == Windows((0x1_1000, 0x2_2FFF), None, (0x4_0000_0000, 0x4_FFFF_FFFF))


@pytest.mark.req("R-BRG-006")
def test_memory_reaches_a_bar_only_through_every_window_on_its_path(vm: DataManager) -> None:
    bridges = chain(vm, 3)
    nic_at(vm, Bdf(3, 0, 0))
    assert vm.resolve(VM, "memory", NIC_BAR) == (Bdf(3, 0, 0), 0)
    vm.mmio_write(VM, NIC_BAR + 0x100, 4, 0x1234_5678)
    assert vm.mmio_read(VM, NIC_BAR + 0x100, 4) == 0x1234_5678
    vm.config_write(VM, bridges[1], COMMAND, 2, 0x1)  # the middle bridge stops forwarding memory
    assert vm.resolve(VM, "memory", NIC_BAR) is None
    assert vm.mmio_read(VM, NIC_BAR + 0x100, 4) == 0xFFFF_FFFF
    assert vm.tables(VM).memory[0].bdf == Bdf(3, 0, 0)  # the BAR still decodes (R-DEC-*)
    vm.config_write(VM, bridges[1], COMMAND, 2, 0x2)
    vm.config_write(VM, bridges[2], 0x20, 4, 0xE000_E000 + 0x0010_0010)  # the last window moves up
    assert vm.resolve(VM, "memory", NIC_BAR) is None
    vm.config_write(VM, bridges[2], 0x24, 4, 0xE000_E000)  # the prefetchable window covers it
    assert vm.resolve(VM, "memory", NIC_BAR) == (Bdf(3, 0, 0), 0)


@pytest.mark.req("R-BRG-006")
def test_an_access_straddling_a_window_edge_is_split_there(vm: DataManager) -> None:
    chain(vm, 1)
    vm.plug(VM, Bdf(1, 0, 0), bar_device("big", BarSpec(BarKind.MEM32, 2 << 20)))
    vm.config_write(VM, Bdf(1, 0, 0), 0x10, 4, NIC_BAR)
    vm.config_write(VM, Bdf(1, 0, 0), COMMAND, 2, 0x2)  # BAR 0xe0000000-0xe01fffff, window 1 MiB
    edge = NIC_BAR + (1 << 20)
    vm.mmio_write(VM, edge - 4, 4, 0xAABB_CCDD)
    assert vm.mmio_read(VM, edge - 4, 8) == 0xFFFF_FFFF_AABB_CCDD
    assert vm.resolve(VM, "memory", edge) is None


@pytest.mark.req("R-BRG-011")
def test_isa_and_vga_enable(vm: DataManager) -> None:
    chain(vm, 1, windows=False)
    vm.config_write(VM, PORT, 0x1C, 2, 0x1010)  # I/O 0x1000-0x1fff
    vm.config_write(VM, PORT, 0x20, 4, 0x0000_FFF0)  # memory window closed (power-on is 0-0xfffff)
    vm.config_write(VM, PORT, 0x24, 4, 0x0001_FFF1)  # prefetchable window closed
    vm.config_write(VM, PORT, COMMAND, 2, 0x3)
    vm.plug(VM, Bdf(1, 0, 0), E1000)
    vm.config_write(VM, Bdf(1, 0, 0), 0x14, 4, 0x1100)
    vm.config_write(VM, Bdf(1, 0, 0), COMMAND, 2, 0x1)
    assert vm.resolve(VM, "io", 0x1100) == (Bdf(1, 0, 0), 1)
    vm.config_write(VM, PORT, BRIDGE_CONTROL, 2, 0x4)  # ISA enable: 0x1100-0x13ff stays upstream
    assert vm.resolve(VM, "io", 0x1100) is None
    vm.config_write(VM, Bdf(1, 0, 0), 0x14, 4, 0x1400)
    assert vm.resolve(VM, "io", 0x1400) == (Bdf(1, 0, 0), 1)
    vm.plug(VM, Bdf(1, 1, 0), bar_device("vga", BarSpec(BarKind.MEM32, 128 << 10)))
    vm.config_write(VM, Bdf(1, 1, 0), 0x10, 4, 0xA0000)
    vm.config_write(VM, Bdf(1, 1, 0), COMMAND, 2, 0x2)
    assert vm.resolve(VM, "memory", 0xA0000) is None  # outside the memory window
    vm.config_write(VM, PORT, BRIDGE_CONTROL, 2, 0x8)  # VGA enable
    assert vm.resolve(VM, "memory", 0xA0000) == (Bdf(1, 1, 0), 0)


@pytest.mark.req("R-BRG-006")
def test_a_bar_not_reached_lets_the_next_one_take_the_address(vm: DataManager) -> None:
    chain(vm, 1, windows=False)
    nic_at(vm, Bdf(1, 0, 0))  # reached through nothing: the bridge forwards no memory
    nic_at(vm, Bdf(2, 0, 0))  # on root bus 2, the same address
    assert vm.resolve(VM, "memory", NIC_BAR) == (Bdf(2, 0, 0), 0)


@pytest.mark.req("R-BRG-007")
def test_secondary_bus_reset_resets_everything_below_but_not_the_bridge(vm: DataManager) -> None:
    bridges = chain(vm, 2)
    nic_at(vm, Bdf(2, 0, 0))
    vm.mmio_write(VM, NIC_BAR, 4, 0x55)
    vm.config_write(VM, PORT, BRIDGE_CONTROL, 2, 0x40)
    assert vm.config_read(VM, PORT, BRIDGE_CONTROL, 2) == 0x40
    assert vm.config_read(VM, PORT, 0x18, 4) == 0x0002_0100  # the bridge keeps its bus numbers
    nodes = vm.topology(VM)
    assert nodes[1].secondary is None  # the second bridge's bus numbers went to zero
    assert nodes[2].bdf is None
    vm.config_write(VM, bridges[1], 0x18, 4, 0x0002_0201)  # number it again: the NIC is at power-on
    assert vm.config_read(VM, Bdf(2, 0, 0), COMMAND, 2) == 0
    assert vm.config_read(VM, Bdf(2, 0, 0), 0x10, 4) == 0
    vm.config_write(VM, PORT, BRIDGE_CONTROL, 2, 0x40)  # bit 6 stays set: no new reset
    vm.config_write(VM, Bdf(2, 0, 0), 0x3C, 1, 0x0B)
    vm.config_write(VM, PORT, BRIDGE_CONTROL, 2, 0x0)
    assert vm.config_read(VM, Bdf(2, 0, 0), 0x3C, 1) == 0x0B


@pytest.mark.req("R-BRG-008")
def test_resetting_a_bridge_resets_its_function_only(vm: DataManager) -> None:
    chain(vm, 1)
    nic_at(vm, Bdf(1, 0, 0))
    vm.reset(VM, PORT)
    assert vm.topology(VM)[1].bdf is None
    assert vm.resolve(VM, "memory", NIC_BAR) is None
    vm.config_write(VM, PORT, 0x18, 4, 0x0001_0100)
    assert vm.config_read(VM, Bdf(1, 0, 0), COMMAND, 2) == 0x2  # the NIC kept its state
    vm.config_write(VM, PORT, 0x19, 1, 0)
    vm.reset_vm(VM)  # the VM reset reaches the unreachable NIC too
    vm.config_write(VM, PORT, 0x18, 4, 0x0001_0100)
    assert vm.config_read(VM, Bdf(1, 0, 0), COMMAND, 2) == 0


@pytest.mark.req("R-BRG-009", "R-BLOB-007", "R-BLOB-008")
def test_snapshots_of_bridged_vms_restore_the_tree(vm: DataManager) -> None:
    chain(vm, 3)
    nic_at(vm, Bdf(3, 0, 0))
    vm.plug(VM, Bdf(0, 4, 0), EDU)
    vm.mmio_write(VM, NIC_BAR + 8, 4, 0xCAFE)
    snap = vm.snapshot(VM)
    record = decode_snapshot(snap)
    assert record.parents == (None, 0, 1, 2, None)
    assert [packed >> 8 for packed, _ in record.devices] == [0, 0, 0, 0, 0]
    assert record.map_order == ((3, 0),)
    vm.restore_vm(2, snap)
    assert vm.snapshot(2) == snap
    assert vm.topology(2) == vm.topology(VM)
    assert vm.mmio_read(2, NIC_BAR + 8, 4) == 0xCAFE


@pytest.mark.req("R-BRG-009")
def test_restoring_a_bridge_blob_reroutes(vm: DataManager) -> None:
    chain(vm, 1)
    nic_at(vm, Bdf(1, 0, 0))
    blob = vm.save(VM, PORT)
    vm.reset(VM, PORT)
    assert vm.resolve(VM, "memory", NIC_BAR) is None
    vm.restore(VM, PORT, blob)
    assert vm.resolve(VM, "memory", NIC_BAR) == (Bdf(1, 0, 0), 0)


@pytest.mark.req("R-BLOB-008")
@pytest.mark.parametrize(
    ("parents", "words"),
    [
        ((None, 0, 2), "not an entry above"),
        ((None, 0), "topology lists 2"),
        ((None, 0, 1), "no bridge"),
    ],
)
def test_a_bad_topology_section_is_rejected(
    vm: DataManager, parents: tuple[int | None, ...], words: str
) -> None:
    chain(vm, 1)
    nic_at(vm, Bdf(1, 0, 0))
    vm.plug(VM, Bdf(1, 2, 0), EDU)
    record = decode_snapshot(vm.snapshot(VM))
    bad = encode_snapshot(dataclasses.replace(record, parents=parents))
    with pytest.raises(BlobError, match=words):
        vm.restore_vm(2, bad)
    assert 2 not in vm.vm_ids()


@pytest.mark.req("R-BLOB-008")
def test_a_topology_section_without_a_bridge_and_a_bridge_without_one_are_rejected(vm: DataManager) -> None:
    vm.plug(VM, Bdf(0, 2, 0), E1000)
    record = decode_snapshot(vm.snapshot(VM))
    with pytest.raises(BlobError, match="no bridge"):
        vm.restore_vm(2, encode_snapshot(dataclasses.replace(record, parents=(None,))))
    vm.plug(VM, PORT, PCI_BRIDGE)
    flat = decode_snapshot(vm.snapshot(VM))
    with pytest.raises(BlobError, match="no topology section"):
        vm.restore_vm(2, encode_snapshot(dataclasses.replace(flat, parents=None)))


@pytest.mark.req("R-BRG-010")
def test_topology_lists_the_tree_in_order(vm: DataManager) -> None:
    chain(vm, 2)
    vm.plug(VM, Bdf(2, 5, 1), EDU)
    vm.plug(VM, Bdf(1, 7, 0), E1000)
    vm.plug(VM, Bdf(0, 9, 0), E1000)
    nodes = vm.topology(VM)
    assert [(n.bdf, n.parent, n.type_name) for n in nodes] == [
        (PORT, None, "pci-bridge"),
        (Bdf(1, 0, 0), 0, "pci-bridge"),
        (Bdf(2, 5, 1), 1, "edu"),
        (Bdf(1, 7, 0), 0, "e1000"),
        (Bdf(0, 9, 0), None, "e1000"),
    ]
    assert (nodes[0].root_bus, nodes[0].secondary, nodes[1].secondary, nodes[2].root_bus) == (0, 1, 2, None)


@pytest.mark.req("R-BRG-004")
def test_the_configuration_table_keys_reachable_instances_by_their_bdf_now(vm: DataManager) -> None:
    chain(vm, 2)
    vm.plug(VM, Bdf(2, 3, 0), EDU)
    assert [bdf for bdf, _ in vm.tables(VM).config] == [PORT, Bdf(1, 0, 0), Bdf(2, 3, 0)]
    vm.config_write(VM, Bdf(1, 0, 0), 0x19, 1, 9)  # second bridge: secondary 9, outside 2-2
    assert [bdf for bdf, _ in vm.tables(VM).config] == [PORT, Bdf(1, 0, 0)]
    vm.config_write(VM, PORT, 0x1A, 1, 9)  # widen both ranges to reach 9
    vm.config_write(VM, Bdf(1, 0, 0), 0x1A, 1, 9)
    assert [bdf for bdf, _ in vm.tables(VM).config] == [PORT, Bdf(1, 0, 0), Bdf(9, 3, 0)]
    assert vm.config_read(VM, Bdf(9, 3, 0), 0, 2) == 0x1234


def _tree_snapshot(vm: DataManager) -> SnapshotRecord:
    """A bridge at 00:01.0 with an e1000 and an edu below it, and an edu at 00:04.0."""
    chain(vm, 1)
    nic_at(vm, Bdf(1, 0, 0))
    vm.plug(VM, Bdf(1, 2, 0), EDU)
    vm.plug(VM, Bdf(0, 4, 0), EDU)
    return decode_snapshot(vm.snapshot(VM))


@pytest.mark.req("R-BLOB-008")
@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"parents": (None, 0, 1, None)}, "no bridge"),  # the edu's parent is the e1000
        ({"map_order": ((7, 0),)}, "past the devices section"),
        ({"parents": (0, 0, 0, None)}, "not an entry above"),
    ],
)
def test_a_snapshot_topology_that_breaks_the_tree_order_is_rejected(
    vm: DataManager, change: dict[str, object], words: str
) -> None:
    record = _tree_snapshot(vm)
    with pytest.raises(BlobError, match=words):
        vm.restore_vm(2, encode_snapshot(dataclasses.replace(record, **change)))  # type: ignore[arg-type]
    assert vm.vm_ids() == (VM,)


@pytest.mark.req("R-BLOB-008")
def test_repeated_or_unordered_siblings_are_rejected(vm: DataManager) -> None:
    record = _tree_snapshot(vm)
    devices = list(record.devices)
    swapped = (devices[0], devices[2], devices[1], devices[3])  # the bridge's children out of order
    with pytest.raises(BlobError, match="siblings"):
        vm.restore_vm(2, encode_snapshot(dataclasses.replace(record, devices=swapped)))
    repeated = (devices[0], devices[1], devices[1], devices[3])
    with pytest.raises(BlobError, match="siblings"):
        vm.restore_vm(2, encode_snapshot(dataclasses.replace(record, devices=repeated)))
    numbered = (devices[0], (0x0100 | devices[1][0], devices[1][1]), devices[2], devices[3])
    with pytest.raises(BlobError, match="bus number"):
        vm.restore_vm(2, encode_snapshot(dataclasses.replace(record, devices=numbered)))
    assert vm.vm_ids() == (VM,)


@pytest.mark.req("R-BRG-003", "R-BRG-005", "R-BRG-007")
@pytest.mark.parametrize("mutant", BRIDGE_MUTANTS, ids=lambda m: m.name)
def test_the_bridge_cases_kill_every_planted_bridge_bug(mutant: Mutant) -> None:
    assert isinstance(mutant.build(DEFAULT_PROFILE), DataManager)
    assert mutant.requirements[0].startswith("R-BRG-")
    report = certify(mutant.adapter(), DEFAULT_BUDGET, DEFAULT_SEED, stop_at_first_failure=True)
    assert not report.conformant, f"planted bug {mutant.name} survives"
    failures = [f for r in report.requirements for f in r.failures]
    assert any(f.check.startswith("case bridges/") for f in failures), [f.check for f in failures]
    assert mutant_adapter(mutant.name).info.name == f"mutant:{mutant.name}"


@pytest.mark.req("R-BRG-003")
def test_secondary_zero_never_routes_and_the_command_register_does_not_matter(vm: DataManager) -> None:
    chain(vm, 1, windows=False)
    vm.plug(VM, Bdf(1, 0, 0), EDU)
    vm.config_write(VM, PORT, COMMAND, 2, 0)  # routing ignores the bridge's command register
    assert vm.config_read(VM, Bdf(1, 0, 0), 0, 2) == 0x1234
    vm.config_write(VM, PORT, 0x18, 4, 0x0005_0000)  # secondary 0, subordinate 5
    assert vm.topology(VM)[0].secondary is None
    assert vm.config_read(VM, Bdf(0, 0, 0), 0, 4) == 0xFFFF_FFFF  # bus 0 is the root bus
    assert vm.topology(VM)[1].bdf is None


@pytest.mark.req("R-BRG-003")
def test_of_two_bridges_with_overlapping_ranges_the_first_takes_the_number(vm: DataManager) -> None:
    for device in (1, 2):
        vm.plug(VM, Bdf(0, device, 0), PCI_BRIDGE)
        vm.config_write(VM, Bdf(0, device, 0), 0x18, 4, 0x0003_0300)  # both: secondary 3, 3-3
    vm.plug(VM, Bdf(3, 0, 0), EDU)  # below 00:01.0, the first in (device, function) order
    assert vm.topology(VM)[1].parent == 0
    vm.config_write(VM, Bdf(0, 1, 0), 0x19, 1, 4)  # the first one's range empties: 00:02.0 takes 3
    assert vm.config_read(VM, Bdf(3, 0, 0), 0, 4) == 0xFFFF_FFFF
    assert vm.topology(VM)[2].secondary == 3
