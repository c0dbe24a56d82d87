"""Register maps inside BARs: declarations, the access classes, side effects, reset and the blob
(spec/requirements/07-registers.md)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vpcid.conformance.typefile import TypeFileError, parse_type_definition, read_type_file, type_json
from vpcid.model import (
    BarKind,
    BarSpec,
    Bdf,
    BlobMismatch,
    DataManager,
    DeviceType,
    DeviceTypeError,
    Register,
    RegisterClass,
)
from vpcid.model import blob as blobfmt
from vpcid.model.catalog import REGISTER_SINK
from vpcid.model.devicetype import fingerprint_input
from vpcid.model.registers import Access, Action, BarRegister, Bits, Effect, RegisterMap

VM = 1
FN = Bdf(0, 5, 0)
BAR0, BAR1, BAR2 = 0xE000_0000, 0xC000, 0xE010_0000


def register_map(dtype: DeviceType) -> RegisterMap:
    behaviour = dtype.behaviour
    assert isinstance(behaviour, RegisterMap)
    return behaviour


SINK = register_map(REGISTER_SINK)


def nic_type(*registers: BarRegister, size: int = 4096, name: str = "nic") -> DeviceType:
    return DeviceType(name=name, vendor_id=0x1234, device_id=0x5678, class_code=0x020000,
                      bars=(BarSpec(BarKind.MEM32, size),), behaviour=RegisterMap(registers))  # fmt: skip


class Device:
    """A data manager with one instance, its BARs programmed and decoding; accesses by BAR offset."""

    def __init__(self, dtype: DeviceType = REGISTER_SINK) -> None:
        self.dm = DataManager()
        self.dm.create_vm(VM)
        self.dm.plug(VM, FN, dtype)
        self.enable()

    def enable(self) -> None:
        bases = (BAR0, BAR1, BAR2)
        dtype = self.dm.device_type(VM, FN)
        for index, bar in enumerate(dtype.bars):
            if bar is not None:
                self.dm.config_write(VM, FN, 0x10 + 4 * index, 4, bases[index])
        self.dm.config_write(VM, FN, 0x04, 2, 0x3)

    def read(self, offset: int, width: int = 4) -> int:
        return self.dm.mmio_read(VM, BAR0 + offset, width)

    def write(self, offset: int, value: int, width: int = 4) -> None:
        self.dm.mmio_write(VM, BAR0 + offset, width, value)

    def io_read(self, offset: int, width: int = 4) -> int:
        return self.dm.io_read(VM, BAR1 + offset, width)

    def io_write(self, offset: int, value: int, width: int = 4) -> None:
        self.dm.io_write(VM, BAR1 + offset, width, value)


# ------------------------------------------------------------------ R-REG-001: declarations


def reg(name: str = "R", offset: int = 0, width: int = 4, **kw: object) -> BarRegister:
    return BarRegister(name, 0, offset, width, **kw)  # type: ignore[arg-type]


BAD_DECLARATIONS: list[tuple[str, Callable[[], object], str]] = [
    ("overlap", lambda: nic_type(reg("A", 0, 8), reg("B", 4)), r"'A' and 'B' share byte 0x4 of BAR0"),
    ("past-end", lambda: nic_type(reg("A", 0x10, 8), size=16), r"'A' \(BAR0\+0x10, 8 bytes\) runs past"),
    ("misaligned", lambda: reg("A", 2, 4), r"'A': the offset must be a multiple of its width 4"),
    ("width", lambda: reg("A", 0, 3), r"'A': the width is 1, 2, 4 or 8"),
    ("unknown-class", lambda: reg("A", access="rw2"), r"'A': the class must be an Access"),
    ("reset-rsvd", lambda: reg("A", bits=(Bits(7, 4, Access.RSVD),), reset=0x30),
     r"'A': bit 5:4 is wo or rsvd .* \(reset value 0x30\)"),
    ("reset-wo", lambda: reg("A", access=Access.WO, reset=1), r"'A': bit 0 is wo or rsvd"),
    ("reset-wide", lambda: reg("A", width=2, reset=0x10000), r"'A': the reset value 65536 does not fit"),
    ("unknown-target", lambda: RegisterMap((reg("A", on_write=(Effect("B", Action.SET, 1),)),)),
     r"'A': its side effect names 'B', which the map does not hold"),
    ("effect-on-wo", lambda: RegisterMap((reg("A", on_write=(Effect("B", Action.SET, 0x2),)),
                                          reg("B", 4, access=Access.WO))),
     r"'A': its side effect changes bit 1 of 'B', which is wo or rsvd"),
    ("effect-wide", lambda: RegisterMap((reg("A", on_write=(Effect("B", Action.SET, 0x100),)),
                                         reg("B", 4, width=1))), r"'A': side effect mask 0x100 is wider"),
    ("trigger-on-written", lambda: Effect("B", Action.SET_WRITTEN, 1, when=1), r"only set and clear take"),
    ("zero-mask", lambda: Effect("B", Action.SET, 0), r"the mask is a non-zero 64-bit integer"),
    ("name-twice", lambda: RegisterMap((reg("A"), reg("A", 4))), r"register name 'A' is used twice"),
    ("name-space", lambda: reg("A B"), r"without spaces"),
    ("bits-outside", lambda: reg("A", width=1, bits=(Bits(8, 0, Access.RO),)), r"'A': bits 8:0 lie outside"),
    ("bits-twice", lambda: reg("A", bits=(Bits(7, 0, Access.RO), Bits(3, 3, Access.RC))),
     r"'A': bit 3 is given two classes"),
    ("empty", lambda: RegisterMap(()), r"1-4096 registers"),
    ("no-such-bar", lambda: DeviceType(name="t", vendor_id=1, device_id=1, class_code=0,
                                       bars=(BarSpec(BarKind.MEM64, 4096), None),
                                       behaviour=RegisterMap((BarRegister("A", 1, 0, 4),))),
     r"'A' lies in BAR1, which the type does not implement"),
]  # fmt: skip


@pytest.mark.req("R-REG-001")
@pytest.mark.parametrize(
    ("build", "message"), [b[1:] for b in BAD_DECLARATIONS], ids=[b[0] for b in BAD_DECLARATIONS]
)
def test_inconsistent_declarations_are_type_errors_naming_register_and_bit(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(DeviceTypeError, match=message):
        build()


@pytest.mark.req("R-REG-001")
def test_the_name_registers_belongs_to_the_register_map() -> None:
    class Impostor:
        name = "registers"

    with pytest.raises(DeviceTypeError, match="is the register map's"):
        DeviceType(name="t", vendor_id=1, device_id=1, class_code=0, bars=(BarSpec(BarKind.MEM32, 16),),
                   behaviour=Impostor())  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.req("R-REG-001", "R-DT-002")
def test_the_fingerprint_covers_every_part_of_the_map_and_not_how_bits_are_written() -> None:
    base = nic_type(reg("A", reset=1, on_write=(Effect("B", Action.SET, 1, when=2),)), reg("B", 4))
    variants = [
        nic_type(reg("A", reset=1, on_write=(Effect("B", Action.SET, 1, when=2),)), reg("B", 8)),
        nic_type(reg("A", reset=2, on_write=(Effect("B", Action.SET, 1, when=2),)), reg("B", 4)),
        nic_type(reg("A", reset=1, on_write=(Effect("B", Action.CLEAR, 1, when=2),)), reg("B", 4)),
        nic_type(reg("A", reset=1, on_write=(Effect("B", Action.SET, 1, when=1),)), reg("B", 4)),
        nic_type(
            reg("A", reset=1, on_write=(Effect("B", Action.SET, 1, when=2),)), reg("B", 4, access=Access.RC)
        ),
        nic_type(reg("A2", reset=1, on_write=(Effect("B", Action.SET, 1, when=2),)), reg("B", 4)),
        nic_type(reg("A", reset=1, on_write=(Effect("B", Action.SET, 1, when=2),)), reg("B", 4, width=2)),
    ]  # fmt: skip
    prints = {t.fingerprint() for t in [base, *variants]}
    assert len(prints) == len(variants) + 1
    memory = dataclasses.replace(base, behaviour=None)
    assert memory.fingerprint() != base.fingerprint()
    one = nic_type(reg("A", access=Access.RW, bits=(Bits(31, 8, Access.RSVD),)))
    other = nic_type(reg("A", access=Access.RSVD, bits=(Bits(7, 0, Access.RW),)))
    assert one.fingerprint() == other.fingerprint()


@pytest.mark.req("R-REG-001", "R-DT-002")
def test_the_fingerprint_encodes_the_map_as_the_spec_writes_it() -> None:
    """spec/formats/device-type.md: after the configuration behaviour's name, the register count, then
    each register in (BAR, offset) order: name, BAR, offset, width, reset, one class code per bit,
    side effects."""
    t = nic_type(
        reg("B", 8, width=1, access=Access.RC),
        reg("A", 4, width=2, access=Access.RW1C, reset=0x0002, bits=(Bits(15, 8, Access.RSVD),),
            on_write=(Effect("B", Action.SET, 0x1, when=0x2),)),
    )  # fmt: skip
    a = (b"\x01A" + b"\x00" + (4).to_bytes(8, "little") + b"\x02" + (2).to_bytes(8, "little")
         + bytes([2] * 8 + [6] * 8) + b"\x01" + b"\x01B" + b"\x00" + (1).to_bytes(8, "little")
         + (2).to_bytes(8, "little"))  # fmt: skip
    b = b"\x01B" + b"\x00" + (8).to_bytes(8, "little") + b"\x01" + bytes(8) + bytes([4] * 8) + b"\x00"
    encoded = fingerprint_input(t)
    assert encoded.endswith(b"\x09registers" + b"\x00" + b"\x02\x00" + a + b)
    assert t.fingerprint() == hashlib.sha256(encoded).digest()


# ------------------------------------------------------------------ R-REG-002..R-REG-007: the classes


@pytest.mark.req("R-REG-002")
def test_read_only_bits_ignore_writes_and_reserved_bits_read_zero() -> None:
    d = Device()
    d.write(0x000, 0xFFFF_FFFF)
    assert d.read(0x000) == 0x1B36_0100
    d.write(0x010, 0xFFFF_FFFC)  # CTRL: bits 31:16 reserved
    assert d.read(0x010) == 0x0000_FFFC
    d.write(0x030, (1 << 64) - 1, 8)  # QWORD: bits 63:60 reserved
    assert d.read(0x030, 8) == 0x0FFF_FFFF_FFFF_FFFF


@pytest.mark.req("R-REG-003")
def test_read_write_bits_read_what_was_last_written() -> None:
    d = Device()
    assert d.read(0x028, 2) == 0xBEEF
    d.write(0x028, 0x1234, 2)
    assert d.read(0x028, 2) == 0x1234
    d.io_write(0x00, 0xABCD, 2)
    assert d.io_read(0x00, 2) == 0xABCD


@pytest.mark.req("R-REG-004")
def test_write_one_to_clear_bits_clear_exactly_the_ones_written() -> None:
    d = Device()
    assert d.read(0x014) & 0xF0 == 0xA0  # STATUS bits 7:4 are RW1C, 7 and 5 set at power-on
    d.write(0x014, 0x20)
    assert d.read(0x014) & 0xF0 == 0x80
    d.write(0x014, 0x00)
    assert d.read(0x014) & 0xF0 == 0x80
    value = d.io_read(0x02, 1)  # IOSTAT: writing back what was read clears those bits and no others
    d.io_write(0x02, value & 0x41, 1)
    assert d.io_read(0x02, 1) == value & ~0x41


@pytest.mark.req("R-REG-005")
def test_write_one_to_set_bits_are_set_by_ones_and_kept_by_zeros() -> None:
    d = Device()
    d.write(0x02A, 0x80, 1)
    assert d.read(0x02A, 1) == 0x81
    d.write(0x02A, 0x00, 1)
    assert d.read(0x02A, 1) == 0x81


@pytest.mark.req("R-REG-006")
def test_read_to_clear_bits_read_once_and_only_the_bytes_read() -> None:
    d = Device()
    d.write(0x024, 0x0302)  # ICS sets ICR bits 9, 8 and 1; ICR resets to 0x3
    assert d.read(0x020, 1) == 0x03
    assert d.read(0x020, 1) == 0x00
    assert d.read(0x020) == 0x0300  # byte 1 was not read before
    assert d.read(0x020) == 0
    d.write(0x020, 0xFFFF)  # writes leave rc bits
    assert d.read(0x020) == 0


@pytest.mark.req("R-REG-007")
def test_write_only_bits_read_zero_and_act_only_through_side_effects() -> None:
    d = Device()
    d.write(0x024, 0x0010)
    assert d.read(0x024) == 0
    assert d.read(0x020) == 0x13
    d.write(0xFF8, 0xFFFF_FFFF)
    assert d.read(0xFF8) == 0


# ------------------------------------------------------------------ R-REG-008: how accesses cover registers


@pytest.mark.req("R-REG-008")
def test_partial_accesses_touch_only_the_bytes_they_cover() -> None:
    d = Device()
    d.write(0x031, 0x00, 1)  # byte 1 of QWORD
    assert d.read(0x030, 8) == 0x0123_4567_89AB_00EF
    assert d.read(0x034, 2) == 0x4567
    d.write(0x033, 0xFFFF, 2)  # bytes 3 and 4 of QWORD
    assert d.read(0x030, 8) == 0x0123_45FF_FFAB_00EF


@pytest.mark.req("R-REG-008")
def test_an_access_may_cover_several_registers_and_gaps() -> None:
    d = Device()
    assert d.read(0x028, 4) == 0x5A01_BEEF  # SCRATCH, FLAGS, REV in one dword
    d.write(0x028, 0xFFFF_0000)  # SCRATCH rw, FLAGS rw1s, REV ro
    assert d.read(0x028, 4) == 0x5AFF_0000
    assert d.read(0x004) == 0  # a gap
    d.write(0x004, 0xFFFF_FFFF)
    assert d.read(0x004) == 0
    assert d.read(0x002, 8) == 0x2345_0000_0000_1B36  # ID's upper half, a gap, CAPS' first bytes


@pytest.mark.req("R-REG-008", "R-DT-004")
def test_a_bar_without_registers_is_memory_like() -> None:
    d = Device()
    d.dm.mmio_write(VM, BAR2 + 0x10, 4, 0x1234_5678)
    assert d.dm.mmio_read(VM, BAR2 + 0x10, 4) == 0x1234_5678


@pytest.mark.req("R-REG-008", "R-REG-009")
def test_class_rules_of_every_covered_register_act_before_side_effects() -> None:
    d = Device()
    d.write(0x018, 0x0F)  # IMS = IMC = 0x0f
    # one 8-byte write: IMS sets 0x30 (and IMC through its effect), IMC clears 0x03 (and IMS likewise)
    d.write(0x018, 0x0000_0003_0000_0030, 8)
    assert d.read(0x018) == 0x3C
    assert d.read(0x01C) == 0x3C


# ------------------------------------------------------------------ R-REG-009: side effects


@pytest.mark.req("R-REG-009")
def test_set_and_clear_effects_act_only_on_their_trigger() -> None:
    d = Device()
    d.write(0x010, 0x4)  # neither trigger bit
    assert d.read(0x014) & 1 == 0
    d.write(0x010, 0x1)
    assert d.read(0x014) & 1 == 1  # STATUS bit 0 is read-only: only the effect set it
    d.write(0x010, 0x0)
    assert d.read(0x014) & 1 == 1
    d.write(0x010, 0x2)
    assert d.read(0x014) & 1 == 0


@pytest.mark.req("R-REG-009")
def test_written_effects_map_the_ones_written_bit_for_bit() -> None:
    d = Device()
    d.write(0x018, 0x8001)
    assert (d.read(0x018), d.read(0x01C)) == (0x8001, 0x8001)
    d.write(0x01C, 0x0001)
    assert (d.read(0x018), d.read(0x01C)) == (0x8000, 0x8000)
    d.write(0x019, 0x80, 1)  # the written value is zero in the bytes the access does not cover
    assert d.read(0x01C) == 0x8000


@pytest.mark.req("R-REG-009")
def test_effects_do_not_trigger_further_effects() -> None:
    chain = nic_type(
        reg("A", 0, on_write=(Effect("B", Action.SET, 1),)),
        reg("B", 4, on_write=(Effect("C", Action.SET, 1),)),
        reg("C", 8),
    )
    d = Device(chain)
    d.write(0x0, 0)
    assert (d.read(0x4), d.read(0x8)) == (1, 0)


@pytest.mark.req("R-REG-009")
def test_an_io_doorbell_sets_its_status_bit() -> None:
    d = Device()
    d.io_write(0x02, 0xFF, 1)
    d.io_write(0x10, 0)
    assert d.io_read(0x02, 1) == 0x04


# ------------------------------------------------------------------ R-REG-010, R-REG-011: reset and the blob


@pytest.mark.req("R-REG-010")
def test_plug_and_reset_give_every_register_its_reset_value() -> None:
    d = Device()
    for r in SINK.registers:
        if r.bar == 0:
            assert d.read(r.offset, r.width) == r.reset & ~(r.mask_of(Access.WO) | r.mask_of(Access.RSVD))
    d.write(0x028, 0, 2)
    d.write(0x024, 0xFFFF)
    d.write(0x100, 0xFFFF_FFFF)  # a gap
    d.dm.reset(VM, FN)
    d.enable()
    assert (d.read(0x028, 2), d.read(0x020), d.read(0x100)) == (0xBEEF, 0x3, 0)
    d.write(0x028, 0, 2)
    d.dm.reset_vm(VM)
    d.enable()
    assert d.read(0x028, 2) == 0xBEEF


@pytest.mark.req("R-REG-011", "R-SR-002")
def test_registers_travel_in_the_blob_memory_pages() -> None:
    d = Device()
    d.write(0x028, 0x1234, 2)
    d.write(0xFF8, 1)  # DOORBELL sets ICR bit 8
    blob = d.dm.save(VM, FN)
    record = blobfmt.decode_instance(blob)
    assert record.extra == b""
    page = {(bar, index): content for bar, index, content in record.pages}[(0, 0)]
    assert page[0x28:0x2A] == bytes.fromhex("3412")
    other = Device()
    other.dm.restore(VM, FN, blob)
    assert (other.read(0x028, 2), other.read(0x020)) == (0x1234, 0x103)


def blob_with(blob: bytes, bar: int, offset: int, data: bytes, extra: bytes = b"") -> bytes:
    record = blobfmt.decode_instance(blob)
    pages = {(b, i): bytearray(c) for b, i, c in record.pages}
    page = pages.setdefault((bar, offset // 4096), bytearray(4096))
    page[offset % 4096 : offset % 4096 + len(data)] = data
    kept = tuple((b, i, bytes(c)) for (b, i), c in sorted(pages.items()))
    changed = dataclasses.replace(record, pages=kept, extra=extra)
    return blobfmt.encode_instance(changed)


@pytest.mark.req("R-REG-011", "R-SR-005")
@pytest.mark.parametrize(
    ("offset", "data", "extra", "message"),
    [
        (0x100, b"\x01", b"", r"BAR0 byte 0x100 lies in no register but holds 0x01"),
        (0x012, b"\x01", b"", r"register 'CTRL' has wo or rsvd bit 16 set"),
        (0x000, b"\x01", b"", r"register 'ID' read-only bit 0 differs from its reset value"),
        (0x028, b"\x00", b"\x01", r"no extra device state"),
    ],
)
def test_restore_rejects_register_state_no_device_can_hold(
    offset: int, data: bytes, extra: bytes, message: str
) -> None:
    d = Device()
    blob = d.dm.save(VM, FN)
    before = d.dm.save(VM, FN)
    with pytest.raises(BlobMismatch, match=message):
        d.dm.restore(VM, FN, blob_with(blob, 0, offset, data, extra))
    assert d.dm.save(VM, FN) == before
    d.dm.restore(VM, FN, blob_with(blob, 0, 0x014, b"\xa1"))  # STATUS bit 0: an effect sets it


# ------------------------------------------------------------------ R-REG-012: configuration-space registers


@pytest.mark.req("R-REG-012", "R-CFG-012")
def test_configuration_registers_refine_their_class_bit_by_bit_into_the_masks() -> None:
    bits = (Bits(31, 16, Access.RSVD), Bits(7, 7, Access.RW1C), Bits(0, 0, Access.RO))
    register = Register(0x40, 4, RegisterClass.RW, 0x0000_0081, bits=bits)
    t = DeviceType(name="cfg", vendor_id=1, device_id=2, class_code=0, registers=(register,))
    space = t.declared
    assert space.word(0x40, 4, "wmask") == 0x0000_FF7E
    assert space.word(0x40, 4, "w1cmask") == 0x0000_0080
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, FN, t)
    dm.config_write(VM, FN, 0x40, 4, 0xFFFF_FF80)
    assert dm.config_read(VM, FN, 0x40, 4) == 0x0000_FF01


@pytest.mark.req("R-REG-012")
@pytest.mark.parametrize("access", [Access.RW1S, Access.RC, Access.WO])
def test_configuration_registers_refuse_what_the_masks_cannot_hold(access: Access) -> None:
    with pytest.raises(DeviceTypeError, match=rf"bits 3:0 are {access.value}; .*R-REG-012"):
        Register(0x40, 4, RegisterClass.RW, bits=(Bits(3, 0, access),))


@pytest.mark.req("R-REG-012")
def test_configuration_register_reserved_bits_reset_to_zero() -> None:
    reserved = Register(0x40, 4, RegisterClass.RW, 1 << 31, bits=(Bits(31, 24, Access.RSVD),))
    with pytest.raises(DeviceTypeError, match="reserved bit 31 reads as zero"):
        DeviceType(name="cfg", vendor_id=1, device_id=2, class_code=0, registers=(reserved,))


# ------------------------------------------------------------------ type files


@pytest.mark.req("R-REG-001", "R-DT-002")
def test_type_files_carry_register_maps_and_their_fingerprint() -> None:
    obj = json.loads(json.dumps(type_json(REGISTER_SINK)))
    assert obj["behaviour"] == "registers"
    assert obj["bar_registers"][2]["on_write"][0] == {"target": "STATUS", "action": "set", "mask": "0x1",
                                                      "when": "0x1"}  # fmt: skip
    again = parse_type_definition(obj)
    assert again == REGISTER_SINK
    assert again.fingerprint().hex() == obj["fingerprint"]


@pytest.mark.req("R-REG-001")
def test_register_map_in_a_fields_form_file(tmp_path: Path) -> None:
    path = tmp_path / "nic.json"
    path.write_text(json.dumps({"vpcid-device-types": 1, "types": [{
        "name": "nic", "vendor_id": "0x1234", "device_id": "0x5678", "class_code": "0x020000",
        "bars": [{"kind": "mem32", "size": 4096}],
        "registers": [{"offset": "0x40", "width": 4, "class": "rw", "bits": {"31:8": "rsvd"}}],
        "bar_registers": [
            {"name": "ISR", "bar": 0, "offset": "0x8", "width": 4, "access": "rw1c"},
            {"name": "DOORBELL", "bar": 0, "offset": "0xc", "width": 4, "access": "wo",
             "on_write": [{"target": "ISR", "action": "set", "mask": "0x1"}]},
        ],
    }]}))  # fmt: skip
    (entry,) = read_type_file(path)
    assert isinstance(entry.dtype.behaviour, RegisterMap)
    assert entry.dtype.behaviour.register("DOORBELL").on_write == (Effect("ISR", Action.SET, 1),)
    assert entry.dtype.declared.word(0x40, 4, "wmask") == 0xFF


@pytest.mark.req("R-REG-001")
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"behaviour": "edu"}, r"has the register map as its BAR behaviour, not 'edu'"),
        ({"bar_registers": [{"name": "A", "bar": 0, "offset": 2, "width": 4}]},
         r"bar_registers/0: register 'A': the offset must be a multiple"),
        ({"bar_registers": [{"name": "A", "bar": 0, "offset": 0, "width": 4, "bits": {"9:3:1": "ro"}}]},
         r"at types/0/bar_registers/0/bits"),
        ({"bar_registers": [{"name": "A", "bar": 0, "offset": 0, "width": 4, "access": "rw2"}]},
         r"at types/0/bar_registers/0/access"),
    ],
)  # fmt: skip
def test_bad_register_declarations_in_files_name_the_place(change: dict[str, object], message: str) -> None:
    obj = {**type_json(REGISTER_SINK), **change}
    obj.pop("fingerprint")
    with pytest.raises(TypeFileError, match=message):
        parse_type_definition(obj)


def test_behaviour_registers_without_registers_is_an_error() -> None:
    obj = {**type_json(REGISTER_SINK), "behaviour": "registers"}
    obj.pop("bar_registers")
    obj.pop("fingerprint")
    with pytest.raises(TypeFileError, match="declare bar_registers"):
        parse_type_definition(obj)


# ------------------------------------------------------------------ an independent bit-by-bit reference


class BitOracle:
    """The classes of spec/requirements/07-registers.md applied one bit at a time, for comparison."""

    def __init__(self, registers: tuple[BarRegister, ...]) -> None:
        self.regs = registers
        self.bits = {r.name: [r.reset >> k & 1 for k in range(8 * r.width)] for r in registers}

    def owner(self, bar: int, at: int) -> BarRegister | None:
        return next((r for r in self.regs if r.bar == bar and r.offset <= at < r.end), None)

    def read(self, bar: int, offset: int, width: int) -> int:
        value, clears = 0, []
        for k in range(width):
            r = self.owner(bar, offset + k)
            if r is None:
                continue
            lane = offset + k - r.offset
            for b in range(8):
                bit = 8 * lane + b
                cls = r.access_at(bit)
                if cls not in (Access.WO, Access.RSVD):
                    value |= self.bits[r.name][bit] << (8 * k + b)
                if cls is Access.RC:
                    clears.append((r.name, bit))
        for name, bit in clears:
            self.bits[name][bit] = 0
        return value

    def write(self, bar: int, offset: int, width: int, value: int) -> None:
        written: dict[str, int] = {}
        for k in range(width):
            r = self.owner(bar, offset + k)
            if r is None:
                continue
            lane = offset + k - r.offset
            byte = value >> (8 * k) & 0xFF
            written[r.name] = written.get(r.name, 0) | byte << (8 * lane)
            for b in range(8):
                bit, v = 8 * lane + b, byte >> b & 1
                cls, old = r.access_at(bit), self.bits[r.name][bit]
                new = {Access.RW: v, Access.RW1C: old & (1 - v), Access.RW1S: old | v}.get(cls, old)
                self.bits[r.name][bit] = 0 if cls in (Access.WO, Access.RSVD) else new
        for r in self.regs:
            if r.name not in written:
                continue
            w = written[r.name]
            for e in r.on_write:
                target = self.bits[e.target]
                for bit in range(len(target)):
                    if not e.mask >> bit & 1:
                        continue
                    fired = e.when == 0 or bool(w & e.when)
                    wrote = bool(w >> bit & 1)
                    acts = {Action.SET: fired, Action.CLEAR: fired, Action.SET_WRITTEN: wrote,
                            Action.CLEAR_WRITTEN: wrote}[e.action]  # fmt: skip
                    if acts:
                        target[bit] = 1 if e.action in (Action.SET, Action.SET_WRITTEN) else 0


ACCESS = st.tuples(
    st.booleans(), st.sampled_from((0, 1)), st.integers(0, 0x3F), st.sampled_from((1, 2, 4, 8)),
    st.integers(0, (1 << 64) - 1), st.booleans(),
)  # fmt: skip


@pytest.mark.req("R-REG-002", "R-REG-003", "R-REG-004", "R-REG-005", "R-REG-006", "R-REG-007", "R-REG-008")
@settings(max_examples=150, deadline=None)
@given(st.lists(ACCESS, max_size=40))
def test_the_register_map_agrees_with_a_bit_by_bit_reference(
    accesses: list[tuple[bool, int, int, int, int, bool]],
) -> None:
    d = Device()
    oracle = BitOracle(SINK.registers)
    for write, bar, offset, width, value, at_end in accesses:
        size = 4096 if bar == 0 else 32
        width = min(width, 4) if bar == 1 else width
        offset = (size - 0x40 + offset if at_end and bar == 0 else offset) % (size - width + 1)
        value &= (1 << (8 * width)) - 1
        if write:
            oracle.write(bar, offset, width, value)
            (d.write if bar == 0 else d.io_write)(offset, value, width)
        else:
            got = (d.read if bar == 0 else d.io_read)(offset, width)
            assert got == oracle.read(bar, offset, width), (bar, hex(offset), width)


# ------------------------------------------------------------------ vpcid types


@pytest.mark.req("R-REG-001")
def test_vpcid_types_shows_register_maps(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from vpcid.conformance.cli import main
    from vpcid.conformance.typefile import write_type_file

    path = tmp_path / "sink.json"
    write_type_file(path, [REGISTER_SINK])
    runner = CliRunner()
    shown = runner.invoke(main, ["types", "registers", "register-sink", "--types", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "31:8 rsvd, 7:4 rw1c, 3:0 ro" in shown.output
    assert "set STATUS 0x1 when 0x1; clear STATUS 0x1 when 0x2" in shown.output
    checked = runner.invoke(main, ["types", "check", str(path)])
    assert "registers 18: BAR0 14, BAR1 4" in checked.output
    listed = runner.invoke(main, ["types", "--types", str(path)])
    assert "18: BAR0 14, BAR1 4" in listed.output
    unknown = runner.invoke(main, ["types", "registers", "no-such-type"])
    assert unknown.exit_code == 2
    assert "no device type 'no-such-type'" in unknown.output
