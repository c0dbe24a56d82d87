"""PCI-to-PCI bridges: the type 1 header, routing by bus number, forwarding, secondary bus reset (R-BRG-*)."""

from __future__ import annotations

import pytest
from vpcid.conformance.typefile import parse_type_file, type_file_json
from vpcid.model import (
    BRIDGES,
    BarKind,
    BarSpec,
    BridgeRegisters,
    ConfigSpace,
    DeviceType,
    DeviceTypeError,
    IoWindow,
    PrefetchWindow,
    RomSpec,
)
from vpcid.model.header import BRIDGE_CONTROL, IO_BASE, PREF_BASE, PREF_BASE_UPPER, PRIMARY_BUS


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
        assert t.declared.word(BRIDGE_CONTROL, 2, "wmask") == 0x0BFF  # pci_init_mask_bridge
        assert t.declared.image[0x1E] == 0xA0  # 66 MHz and fast back-to-back capable
