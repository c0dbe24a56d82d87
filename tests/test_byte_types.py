"""Device types as bytes: declared layouts, both capability chains, type errors that name the byte,
the configuration behaviour hook and the fingerprint's byte encoding (R-DT-001, R-DT-002, R-DT-005..R-DT-008,
R-CFG-008)."""

from __future__ import annotations

import dataclasses
import hashlib
import struct

import pytest
from conftest import VM
from hypothesis import given, settings
from hypothesis import strategies as st
from vpcid.conformance.devices import EXPRESS_SINK, SUITE_TYPES
from vpcid.model import (
    BarKind,
    BarSpec,
    Bdf,
    Capability,
    ConfigSpace,
    DataManager,
    DeviceType,
    DeviceTypeError,
    ExtendedCapability,
    RomSpec,
)
from vpcid.model.catalog import E1000, NVME
from vpcid.model.header import capability_chain

BDF = Bdf(0, 3, 0)


def space_of(dtype: DeviceType) -> tuple[bytearray, bytearray, bytearray]:
    s = dtype.declared
    return bytearray(s.image), bytearray(s.wmask), bytearray(s.w1cmask)


def raw(image: bytes, wmask: bytes, w1c: bytes, name: str = "raw", **kw: object) -> DeviceType:
    return DeviceType.from_space(name, ConfigSpace(bytes(image), bytes(wmask), bytes(w1c)), **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ R-DT-005: bytes are the type


@pytest.mark.req("R-DT-005", "R-DT-002")
@pytest.mark.parametrize("name", sorted(SUITE_TYPES))
def test_a_builder_type_and_its_bytes_are_the_same_type(name: str) -> None:
    built = SUITE_TYPES[name]
    again = DeviceType.from_space(
        built.name, built.declared, built.bars, built.rom, built.behaviour, built.config_behaviour
    )
    assert again == built
    assert again.fingerprint() == built.fingerprint()
    for field in (
        "vendor_id",
        "device_id",
        "class_code",
        "revision",
        "subsystem_vendor_id",
        "subsystem_id",
        "interrupt_pin",
        "command_mask",
        "status_rw1c",
        "express",
        "multifunction",
    ):
        assert getattr(again, field) == getattr(built, field), field


@pytest.mark.req("R-DT-005", "R-CFG-001")
def test_a_byte_declared_type_behaves_byte_by_byte() -> None:
    image, wmask, w1c = space_of(E1000)
    image[0x0D], wmask[0x0D] = 0x40, 0xF8  # latency timer: writable high bits (a real device's choice)
    image[0x80:0x84] = b"\x12\x34\x56\x78"
    wmask[0x80:0x84] = b"\xf0\x0f\x00\x00"
    w1c[0x80:0x84] = b"\x00\x00\x0f\xf0"
    t = raw(image, wmask, w1c, "byte-e1000", bars=E1000.bars, rom=E1000.rom)
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, BDF, t)
    assert dm.config_read(VM, BDF, 0x0C, 4) == 0x4000
    dm.config_write(VM, BDF, 0x0D, 1, 0xFF)
    assert dm.config_read(VM, BDF, 0x0D, 1) == 0xF8
    assert dm.config_read(VM, BDF, 0x80, 4) == 0x78563412
    dm.config_write(VM, BDF, 0x80, 4, 0xFFFF_FFFF)
    # byte 0: 0x12 -> high nibble written 1s: 0xf2; byte 1: 0x34 -> low nibble ones: 0x3f;
    # byte 2: 0x56, RW1C low nibble cleared: 0x50; byte 3: 0x78, RW1C high nibble cleared: 0x08
    assert dm.config_read(VM, BDF, 0x80, 4) == 0x08503FF2


@pytest.mark.req("R-DT-005")
def test_identity_fields_must_agree_with_declared_bytes() -> None:
    with pytest.raises(DeviceTypeError, match="vendor_id"):
        dataclasses.replace(
            DeviceType.from_space("x", E1000.declared, E1000.bars, E1000.rom), vendor_id=0x1234
        )
    with pytest.raises(DeviceTypeError, match="capabilities and registers"):
        dataclasses.replace(
            DeviceType.from_space("x", E1000.declared, E1000.bars, E1000.rom),
            capabilities=(Capability(0x09, b"\x03"),),
        )


BREAKS: list[tuple[str, int, str]] = [
    ("both-masks", 0x0C, "both writable and RW1C"),
    ("vendor-writable", 0x01, "read-only"),
    ("class-rw1c", 0x0A, "read-only"),
    ("pointer-writable", 0x34, "read-only"),
    ("pin-writable", 0x3D, "read-only"),
    ("vendor-ffff", 0x00, "0xffff"),
    ("header-type-2", 0x0E, "header type 2"),
    ("pin-5", 0x3D, "interrupt pin"),
    ("command-nonzero", 0x04, "command register"),
    ("command-reserved-writable", 0x04, "command register"),
    ("status-writable", 0x06, "status"),
    ("status-rw1c-outside-error-bits", 0x06, "status"),
    ("bar-mask-wrong", 0x12, "BAR and ROM registers"),
    ("unimplemented-bar-writable", 0x18, "BAR and ROM registers"),
    ("rom-enable-read-only", 0x30, "BAR and ROM registers"),
    ("cap-pointer-misaligned", 0x34, "not a dword"),
    ("cap-pointer-in-header", 0x34, "not a dword"),
    ("cap-next-cycle", 0x41, "cycle"),
    ("cap-id-writable", 0x40, "ID and next"),
    ("cap-next-rw1c", 0x41, "ID and next"),
    ("cap-bit-without-pointer", 0x34, "pointer is zero"),
]


def _apply(case: str, image: bytearray, wmask: bytearray, w1c: bytearray) -> None:
    edits = {
        "both-masks": lambda: w1c.__setitem__(0x0C, 0x01),
        "vendor-writable": lambda: wmask.__setitem__(0x01, 0x01),
        "class-rw1c": lambda: w1c.__setitem__(0x0A, 0x80),
        "pointer-writable": lambda: wmask.__setitem__(0x34, 0xFC),
        "pin-writable": lambda: wmask.__setitem__(0x3D, 0x07),
        "vendor-ffff": lambda: image.__setitem__(slice(0, 2), b"\xff\xff"),
        "header-type-2": lambda: image.__setitem__(0x0E, 0x02),
        "pin-5": lambda: image.__setitem__(0x3D, 5),
        "command-nonzero": lambda: image.__setitem__(0x04, 0x02),
        "command-reserved-writable": lambda: wmask.__setitem__(0x05, 0x0F),
        "status-writable": lambda: wmask.__setitem__(0x06, 0x08),
        "status-rw1c-outside-error-bits": lambda: w1c.__setitem__(0x06, 0x08),
        "bar-mask-wrong": lambda: wmask.__setitem__(0x12, 0xFF),
        "unimplemented-bar-writable": lambda: wmask.__setitem__(0x18, 0xF0),
        "rom-enable-read-only": lambda: wmask.__setitem__(0x30, 0x00),
        "cap-pointer-misaligned": lambda: image.__setitem__(0x34, 0x42),
        "cap-pointer-in-header": lambda: image.__setitem__(0x34, 0x3C),
        "cap-next-cycle": lambda: image.__setitem__(0x41, 0x40),
        "cap-id-writable": lambda: wmask.__setitem__(0x40, 0xFF),
        "cap-next-rw1c": lambda: w1c.__setitem__(0x41, 0x04),
        "cap-bit-without-pointer": lambda: image.__setitem__(0x34, 0x00),
    }
    edits[case]()


@pytest.mark.req("R-DT-001", "R-DT-005", "R-DT-006")
@pytest.mark.parametrize(("case", "offset", "words"), BREAKS, ids=[b[0] for b in BREAKS])
def test_a_declaration_breaking_a_rule_is_rejected_naming_the_byte(
    case: str, offset: int, words: str
) -> None:
    image, wmask, w1c = space_of(E1000)
    _apply(case, image, wmask, w1c)
    with pytest.raises(DeviceTypeError) as info:
        raw(image, wmask, w1c, bars=E1000.bars, rom=E1000.rom)
    assert f"config byte {offset:#05x}" in str(info.value)
    assert words in str(info.value)
    assert info.value.kind == "bad-device-type"


EXT_BREAKS: list[tuple[str, int, str]] = [
    ("ext-header-writable", 0x102, "read-only"),
    ("ext-first-dword-writable-when-empty", 0x100, "0x100 holds"),
    ("ext-next-misaligned", 0x102, "not a dword"),
    ("ext-next-below-0x100", 0x102, "not a dword"),
    ("ext-cycle", 0x402, "cycle"),
]


@pytest.mark.req("R-DT-007")
@pytest.mark.parametrize(("case", "offset", "words"), EXT_BREAKS, ids=[b[0] for b in EXT_BREAKS])
def test_a_broken_extended_chain_is_rejected_naming_the_byte(case: str, offset: int, words: str) -> None:
    image, wmask, w1c = space_of(EXPRESS_SINK)
    first = int.from_bytes(image[0x100:0x104], "little")
    if case == "ext-header-writable":
        wmask[0x102] = 0x01
    elif case == "ext-first-dword-writable-when-empty":
        image[0x100:0x104] = bytes(4)
        image[0x400:0x404] = bytes(4)
        wmask[0x100] = 0xFF
    elif case == "ext-next-misaligned":
        image[0x100:0x104] = ((first & 0xFFFFF) | 0x402 << 20).to_bytes(4, "little")
    elif case == "ext-next-below-0x100":
        image[0x100:0x104] = ((first & 0xFFFFF) | 0x0F0 << 20).to_bytes(4, "little")
    else:
        second = int.from_bytes(image[0x400:0x404], "little")
        image[0x400:0x404] = ((second & 0xFFFFF) | 0x100 << 20).to_bytes(4, "little")
    with pytest.raises(DeviceTypeError) as info:
        raw(image, wmask, w1c, bars=EXPRESS_SINK.bars)
    assert f"config byte {offset:#05x}" in str(info.value)
    assert words in str(info.value)


@pytest.mark.req("R-DT-005")
def test_space_arrays_must_be_bytes_of_a_valid_size() -> None:
    with pytest.raises(DeviceTypeError, match="256 or 4096"):
        ConfigSpace(bytes(300), bytes(300), bytes(300))
    with pytest.raises(DeviceTypeError, match="same length, not 256, 4096 and 256 bytes"):
        ConfigSpace(bytes(256), bytes(4096), bytes(256))
    with pytest.raises(DeviceTypeError, match="must be bytes"):
        ConfigSpace(bytearray(256), bytes(256), bytes(256))  # type: ignore[arg-type]
    with pytest.raises(DeviceTypeError, match="4096 bytes"):
        DeviceType(
            name="x",
            vendor_id=1,
            device_id=2,
            class_code=3,
            express=True,
            space=ConfigSpace(bytes(256), bytes(256), bytes(256)),
        )


# ------------------------------------------------------------------ R-CFG-008 / R-DT-006: declared offsets


@pytest.mark.req("R-CFG-008", "R-DT-006")
def test_capabilities_sit_at_declared_offsets_in_declared_order() -> None:
    """A chain like virtio-net-pci's: the first capability high up, the list running downwards."""
    caps = (
        Capability(0x11, bytes(10), writable=bytes([0, 0xC0]) + bytes(8), offset=0x98),
        Capability(0x09, bytes([0x10, 1]) + bytes(12), offset=0x70),
        Capability(0x09, bytes([0x0C, 2]) + bytes(8)),  # packed after the previous one: 0x70 + 16 = 0x80
        Capability(0x01, bytes(6), offset=0x40),
    )
    t = DeviceType(
        name="descending", vendor_id=0x1AF4, device_id=0x1041, class_code=0x020000, capabilities=caps
    )
    assert [(e.offset, e.cap_id) for e in t.chain] == [(0x98, 0x11), (0x70, 0x09), (0x80, 0x09), (0x40, 0x01)]
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, BDF, t)
    assert dm.config_read(VM, BDF, 0x34, 1) == 0x98
    assert dm.config_read(VM, BDF, 0x98, 2) == 0x7011
    assert dm.config_read(VM, BDF, 0x70, 2) == 0x8009
    assert dm.config_read(VM, BDF, 0x80, 2) == 0x4009
    assert dm.config_read(VM, BDF, 0x40, 2) == 0x0001
    dm.config_write(VM, BDF, 0x98, 4, 0xFFFF_FFFF)
    assert dm.config_read(VM, BDF, 0x98, 4) == 0xC000_7011  # ID and next stay; MSI-X enable/mask written
    dm.config_write(VM, BDF, 0x34, 1, 0)
    assert dm.config_read(VM, BDF, 0x34, 1) == 0x98


@pytest.mark.req("R-DT-001", "R-CFG-008")
@pytest.mark.parametrize(
    ("caps", "words"),
    [
        ((Capability(0x01, bytes(6), offset=0x42),), "dword aligned"),
        ((Capability(0x01, bytes(6), offset=0x3C),), "dword aligned"),
        ((Capability(0x01, bytes(6), offset=0xFC),), "dword aligned"),
        ((Capability(0x01, bytes(6), offset=0x40), Capability(0x05, bytes(6), offset=0x44)), "claimed twice"),
    ],
    ids=["misaligned", "in-header", "past-0xff", "overlap"],
)
def test_builder_rejects_capabilities_that_do_not_fit(caps: tuple[Capability, ...], words: str) -> None:
    with pytest.raises(DeviceTypeError, match=words):
        DeviceType(name="bad", vendor_id=1, device_id=2, class_code=3, capabilities=caps)


@pytest.mark.req("R-DT-007", "R-CFG-008")
def test_extended_capabilities_from_0x100_with_id_version_and_next() -> None:
    t = EXPRESS_SINK
    assert [(e.offset, e.cap_id, e.version) for e in t.chain if e.extended] == [
        (0x100, 0x000B, 1),
        (0x400, 1, 2),
    ]
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, BDF, t)
    assert dm.config_read(VM, BDF, 0x100, 4) == 0x000B | 1 << 16 | 0x400 << 20
    assert dm.config_read(VM, BDF, 0x400, 4) == 0x0001 | 2 << 16
    dm.config_write(VM, BDF, 0x100, 4, 0)
    assert dm.config_read(VM, BDF, 0x100, 4) == 0x000B | 1 << 16 | 0x400 << 20
    dm.config_write(VM, BDF, 0x108, 4, 0xFFFF_FFFF)
    assert dm.config_read(VM, BDF, 0x108, 4) == 0xFFFF_FFFF
    dm.config_write(VM, BDF, 0x10C, 1, 0xFF)
    assert dm.config_read(VM, BDF, 0x10C, 1) == 0  # RW1C: the initial zero bits stay zero
    with pytest.raises(DeviceTypeError, match="first extended capability sits at 0x100"):
        dataclasses.replace(
            t, name="late", extended_capabilities=(ExtendedCapability(1, 1, bytes(4), offset=0x200),)
        )
    with pytest.raises(DeviceTypeError, match="PCI Express"):
        DeviceType(
            name="conv-ext",
            vendor_id=1,
            device_id=2,
            class_code=3,
            extended_capabilities=(ExtendedCapability(1, 1, bytes(4)),),
        )


@pytest.mark.req("R-DT-006", "R-CFG-005")
def test_pointer_without_status_bit_is_not_a_list() -> None:
    """Like QEMU's rtl8139: 0x34 holds a value while status bit 4 is clear."""
    image, wmask, w1c = space_of(E1000)
    image[0x06] &= ~0x10
    t = raw(image, wmask, w1c, "no-list", bars=E1000.bars, rom=E1000.rom)
    assert t.chain == ()
    assert t.declared.image[0x34] == 0x40


# ------------------------------------------------------------------ R-DT-008: configuration behaviour


class ClampMultipleMessage:
    """MSI Multiple Message Enable may not exceed Multiple Message Capable (as QEMU clamps it)."""

    name = "test-msi-clamp"

    def __init__(self, cap: int) -> None:
        self.cap = cap

    def config_write(self, config: bytearray, offset: int, before: bytes) -> None:
        control = int.from_bytes(config[self.cap + 2 : self.cap + 4], "little")
        capable, enabled = (control >> 1) & 7, (control >> 4) & 7
        if enabled > capable:
            control = control & ~0x70 | capable << 4
        config[self.cap + 2 : self.cap + 4] = control.to_bytes(2, "little")
        config[0x00] = 0x00  # a read-only byte: the manager discards this change
        config[0x3C] = 0x77  # interrupt line is writable: kept


@pytest.mark.req("R-DT-008")
def test_configuration_behaviour_adjusts_writable_bits_only() -> None:
    msi = next(e.offset for e in NVME.chain if e.cap_id == 0x05)
    image, wmask, w1c = space_of(NVME)
    image[msi + 2] = image[msi + 2] & ~0x0E | 0x04  # Multiple Message Capable = 2 (4 vectors)
    hooked = raw(
        image, wmask, w1c, "nvme-clamped", bars=NVME.bars, config_behaviour=ClampMultipleMessage(msi)
    )
    plain = raw(image, wmask, w1c, "nvme-clamped", bars=NVME.bars)
    assert hooked.fingerprint() != plain.fingerprint()
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, BDF, hooked)
    dm.config_write(VM, BDF, msi + 2, 2, 0x0070)  # ask for 32 vectors
    assert (dm.config_read(VM, BDF, msi + 2, 2) >> 4) & 7 == 2
    assert dm.config_read(VM, BDF, 0x00, 2) == NVME.vendor_id
    assert dm.config_read(VM, BDF, 0x3C, 1) == 0x77
    blob = dm.save(VM, BDF)
    dm.reset(VM, BDF)
    assert (dm.config_read(VM, BDF, msi + 2, 2) >> 4) & 7 == 0
    dm.restore(VM, BDF, blob)
    assert (dm.config_read(VM, BDF, msi + 2, 2) >> 4) & 7 == 2


class EnableMemoryOnBarWrite:
    """A hook that sets command memory-enable whenever BAR0 is written (to check window upkeep)."""

    name = "test-enable-on-bar"

    def config_write(self, config: bytearray, offset: int, before: bytes) -> None:
        if 0x10 <= offset < 0x14:
            config[0x04] |= 0x02


@pytest.mark.req("R-DT-008", "R-DEC-010")
def test_windows_follow_bits_a_configuration_behaviour_changes() -> None:
    t = DeviceType(
        name="self-enabling",
        vendor_id=1,
        device_id=2,
        class_code=3,
        bars=(BarSpec(BarKind.MEM32, 4096),),
        config_behaviour=EnableMemoryOnBarWrite(),
    )
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, BDF, t)
    dm.config_write(VM, BDF, 0x10, 4, 0xE000_0000)
    assert dm.config_read(VM, BDF, 0x04, 2) == 0x0002
    assert dm.resolve(VM, "memory", 0xE000_0010) == (BDF, 0)


# ------------------------------------------------------------------ R-DT-002: the fingerprint's bytes


def spec_fingerprint(t: DeviceType) -> bytes:
    """The fingerprint computed from spec/formats/device-type.md alone (not the model's function)."""
    space = t.declared

    def short(text: str) -> bytes:
        return bytes([len(text.encode())]) + text.encode()

    out = b"VPCIDTYP" + struct.pack("<H", 1) + short(t.name) + struct.pack("<H", len(space.image))
    out += space.image + space.wmask + space.w1cmask
    bars = list(t.bars) + [None] * (6 - len(t.bars))
    codes = {BarKind.IO: 1, BarKind.MEM32: 2, BarKind.MEM64: 3}
    for i, bar in enumerate(bars):
        prev = bars[i - 1] if i else None
        if prev is not None and prev.kind is BarKind.MEM64:
            out += struct.pack("<BBQ", 4, 0, 0)
        elif bar is None:
            out += bytes(10)
        else:
            out += struct.pack("<BBQ", codes[bar.kind], bar.prefetchable, bar.size)
    out += struct.pack("<II", t.rom.size, len(t.rom.contents)) + t.rom.contents if t.rom else bytes(8)
    out += short(t.behaviour.name if t.behaviour else "memory")
    out += short(t.config_behaviour.name if t.config_behaviour else "")
    return hashlib.sha256(out).digest()


@pytest.mark.req("R-DT-002", "R-BLOB-004")
@pytest.mark.parametrize("name", sorted(SUITE_TYPES))
def test_fingerprint_is_the_specified_encoding(name: str) -> None:
    assert SUITE_TYPES[name].fingerprint() == spec_fingerprint(SUITE_TYPES[name])


@pytest.mark.req("R-DT-002")
@settings(max_examples=40, deadline=None)
@given(
    rom_size=st.sampled_from([None, 2048, 1 << 16]),
    io=st.booleans(),
    prefetch=st.booleans(),
    body=st.binary(min_size=1, max_size=12),
)
def test_fingerprint_covers_every_input(rom_size: int | None, io: bool, prefetch: bool, body: bytes) -> None:
    bars = (BarSpec(BarKind.IO, 16) if io else BarSpec(BarKind.MEM64, 1 << 20, prefetch), None)
    t = DeviceType(
        name="fp",
        vendor_id=1,
        device_id=2,
        class_code=3,
        bars=bars,
        rom=RomSpec(rom_size) if rom_size else None,
        capabilities=(Capability(9, body),),
    )
    assert t.fingerprint() == spec_fingerprint(t)
    changed = dataclasses.replace(t, capabilities=(Capability(9, body + b"\x01"),))
    assert changed.fingerprint() != t.fingerprint()
    assert dataclasses.replace(t, name="fp2").fingerprint() != t.fingerprint()


@pytest.mark.req("R-DT-006", "R-DT-007")
def test_chain_walk_finds_both_chains_in_order() -> None:
    entries = capability_chain(EXPRESS_SINK.declared.image)
    assert [(e.offset, e.extended) for e in entries] == [(0x40, False), (0x100, True), (0x400, True)]
    assert [e.offset for e in capability_chain(NVME.declared.image)] == [0x40, 0x50, 0x70, 0xB0]
