"""Configuration space registers and masks (R-CFG-001..R-CFG-012)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from conftest import CATALOG_TYPES, VM
from hypothesis import given, settings
from hypothesis import strategies as st
from vpcid.model import (
    BarKind,
    BarSpec,
    Bdf,
    BlobMismatch,
    Capability,
    DataManager,
    DeviceType,
    Profile,
    Register,
    RegisterClass,
    VpcidError,
    layout,
)
from vpcid.model import blob as blobfmt
from vpcid.model.catalog import E1000
from vpcid.model.configspace import merge_byte
from vpcid.model.profile import StatusRegister

BDF = Bdf(0, 5, 0)
IDENTITY_BYTES = (0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B, 0x0E, 0x2C, 0x2D, 0x2E, 0x2F, 0x34, 0x3D)
FIXED_ZERO_BYTES = (0x0D, 0x0F, 0x28, 0x29, 0x2A, 0x2B, *range(0x35, 0x3C), 0x3E, 0x3F)
ERROR_BITS = 0xF900


def make_type(name: str = "cfg-dev", **fields: Any) -> DeviceType:
    base: dict[str, Any] = {"name": name, "vendor_id": 0x1B36, "device_id": 0x0011, "class_code": 0xFF0000}
    base.update(fields)
    return DeviceType(**base)


def manager_with(dtype: DeviceType, profile: Profile | None = None) -> DataManager:
    dm = DataManager(profile or Profile())
    dm.create_vm(VM)
    dm.plug(VM, BDF, dtype)
    return dm


def read_bytes(dm: DataManager, start: int, stop: int) -> bytes:
    return bytes(dm.config_read(VM, BDF, o, 1) for o in range(start, stop))


def type_ids(types: tuple[DeviceType, ...]) -> list[str]:
    return [t.name for t in types]


def with_config(blob: bytes, patch: dict[int, int]) -> bytes:
    """The instance blob with configuration bytes replaced (re-framed, valid digest)."""
    record = blobfmt.decode_instance(blob)
    config = bytearray(record.config)
    for offset, value in patch.items():
        config[offset] = value
    return blobfmt.encode_instance(dataclasses.replace(record, config=bytes(config)))


# ------------------------------------------------------------------ R-CFG-001


@pytest.mark.req("R-CFG-001")
@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
def test_merge_byte_follows_each_bit_class(old: int, value: int, wmask: int, w1c: int) -> None:
    w1c &= ~wmask  # no bit is in both masks
    new = merge_byte(old, value, wmask, w1c)
    for bit in range(8):
        m = 1 << bit
        if wmask & m:
            assert new & m == value & m
        elif w1c & m:
            assert new & m == (0 if value & m else old & m)
        else:
            assert new & m == old & m


MASKED_CAP = Capability(
    0x09,
    body=bytes([0xAA, 0xFF, 0x0F, 0x5A, 0x00]),
    writable=bytes([0xF0, 0x00, 0x00, 0xFF, 0x3C]),
    rw1c=bytes([0x0F, 0xFF, 0x0F, 0x00, 0x00]),
)
MASKED_REGS = (
    Register(0x48, 4, RegisterClass.RW, 0x12345678),
    Register(0x4C, 4, RegisterClass.RW1C, 0xF0F0A5A5),
    Register(0x50, 2, RegisterClass.RO, 0xBEEF),
    Register(0x52, 2, RegisterClass.RSVD, 0),
    Register(0x54, 1, RegisterClass.RW, 0x11),
    Register(0x55, 1, RegisterClass.RW1C, 0xFF),
    Register(0x56, 2, RegisterClass.RW, 0),
    Register(0x58, 4, RegisterClass.RO, 0x01020304),
)
MASKED = make_type(name="masked", capabilities=(MASKED_CAP,), registers=MASKED_REGS)


def expected_masks() -> tuple[bytearray, bytearray, bytearray]:
    """Initial image, write mask and RW1C mask of 0x40..0x5F, computed from the definition above."""
    image, wmask, w1c = bytearray(0x20), bytearray(0x20), bytearray(0x20)
    image[0:2] = bytes([MASKED_CAP.cap_id, 0x00])  # single capability: next is zero
    for k, byte in enumerate(MASKED_CAP.body):
        image[2 + k], wmask[2 + k], w1c[2 + k] = byte, MASKED_CAP.writable[k], MASKED_CAP.rw1c[k]
    for reg in MASKED_REGS:
        at = reg.offset - 0x40
        image[at : at + reg.width] = reg.value.to_bytes(reg.width, "little")
        full = b"\xff" * reg.width
        if reg.cls is RegisterClass.RW:
            wmask[at : at + reg.width] = full
        elif reg.cls is RegisterClass.RW1C:
            w1c[at : at + reg.width] = full
    return image, wmask, w1c


@st.composite
def config_writes(draw: st.DrawFn) -> tuple[int, int, int]:
    width = draw(st.sampled_from([1, 2, 4]))
    offset = draw(st.integers(0x40 // width, 0x5F // width)) * width
    return offset, width, draw(st.integers(0, (1 << (8 * width)) - 1))


@pytest.mark.req("R-CFG-001", "R-CFG-012", "R-CFG-008")
@settings(max_examples=150, deadline=None)
@given(st.lists(config_writes(), max_size=30))
def test_config_writes_follow_the_masked_write_rule(writes: list[tuple[int, int, int]]) -> None:
    dm = manager_with(MASKED)
    shadow, wmask, w1c = expected_masks()
    assert read_bytes(dm, 0x40, 0x60) == bytes(shadow)
    for offset, width, value in writes:
        dm.config_write(VM, BDF, offset, width, value)
        for k in range(width):
            at, v = offset - 0x40 + k, (value >> (8 * k)) & 0xFF
            new = (shadow[at] & ~wmask[at]) | (v & wmask[at])
            shadow[at] = new & ~(v & w1c[at]) & 0xFF
        assert read_bytes(dm, 0x40, 0x60) == bytes(shadow)


@pytest.mark.req("R-CFG-001")
def test_only_the_bytes_an_access_covers_are_written() -> None:
    dm = manager_with(MASKED)
    dm.config_write(VM, BDF, 0x49, 1, 0x00)
    assert dm.config_read(VM, BDF, 0x48, 4) == 0x12340078
    dm.config_write(VM, BDF, 0x4A, 2, 0xABCD)
    assert dm.config_read(VM, BDF, 0x48, 4) == 0xABCD0078
    dm.config_write(VM, BDF, 0x4D, 1, 0xFF)  # RW1C byte 1 of 0xF0F0A5A5 only
    assert dm.config_read(VM, BDF, 0x4C, 4) == 0xF0F000A5
    dm.config_write(VM, BDF, 0x0C, 1, 0x10)  # cache line size only, not latency/header/BIST
    assert dm.config_read(VM, BDF, 0x0C, 4) == 0x00000010


@pytest.mark.req("R-CFG-001", "R-CFG-012")
def test_reserved_bits_read_zero_and_ignore_writes() -> None:
    dm = manager_with(MASKED)
    for value in (0xFFFF, 0x1234, 0x0001):
        dm.config_write(VM, BDF, 0x52, 2, value)
        assert dm.config_read(VM, BDF, 0x52, 2) == 0
    dm.config_write(VM, BDF, 0x50, 4, 0xFFFFFFFF)
    assert dm.config_read(VM, BDF, 0x50, 4) == 0x0000BEEF


# ------------------------------------------------------------------ R-CFG-002


def _identity(t: DeviceType) -> dict[int, int]:
    expected = {
        0x00: t.vendor_id & 0xFF,
        0x01: t.vendor_id >> 8,
        0x02: t.device_id & 0xFF,
        0x03: t.device_id >> 8,
        0x08: t.revision,
        0x09: t.class_code & 0xFF,
        0x0A: (t.class_code >> 8) & 0xFF,
        0x0B: t.class_code >> 16,
        0x0E: 0x80 if t.multifunction else 0x00,
        0x2C: t.subsystem_vendor_id & 0xFF,
        0x2D: t.subsystem_vendor_id >> 8,
        0x2E: t.subsystem_id & 0xFF,
        0x2F: t.subsystem_id >> 8,
        0x34: 0x40 if t.capabilities else 0x00,
        0x3D: t.interrupt_pin,
    }
    assert set(expected) == set(IDENTITY_BYTES)
    return expected


MULTI = make_type(
    name="multi",
    revision=0x7F,
    subsystem_vendor_id=0xFEDC,
    subsystem_id=0xBA98,
    interrupt_pin=4,
    multifunction=True,
    capabilities=(Capability(0x01, bytes(6)),),
)
IDENTITY_TYPES = (*CATALOG_TYPES, MULTI)


@pytest.mark.req("R-CFG-002")
@pytest.mark.parametrize("dtype", IDENTITY_TYPES, ids=type_ids(IDENTITY_TYPES))
def test_identity_registers_read_type_values_and_survive_writes(
    dtype: DeviceType, any_profile: Profile
) -> None:
    dm = manager_with(dtype, any_profile)
    expected = _identity(dtype)
    assert {o: dm.config_read(VM, BDF, o, 1) for o in IDENTITY_BYTES} == expected
    for fill in (0xFF, 0x00, 0xA5):
        for offset in range(0x40):
            dm.config_write(VM, BDF, offset, 1, fill)
        assert {o: dm.config_read(VM, BDF, o, 1) for o in IDENTITY_BYTES} == expected
        for offset in range(0, 0x40, 4):
            dm.config_write(VM, BDF, offset, 4, fill * 0x01010101)
        for offset in range(0, 0x40, 2):
            dm.config_write(VM, BDF, offset, 2, fill * 0x0101)
        assert {o: dm.config_read(VM, BDF, o, 1) for o in IDENTITY_BYTES} == expected
    assert dm.config_read(VM, BDF, 0x00, 4) == dtype.vendor_id | dtype.device_id << 16


# ------------------------------------------------------------------ R-CFG-003


@pytest.mark.req("R-CFG-003")
@pytest.mark.parametrize("dtype", IDENTITY_TYPES, ids=type_ids(IDENTITY_TYPES))
def test_fixed_zero_header_fields_read_zero_and_ignore_writes(
    dtype: DeviceType, any_profile: Profile
) -> None:
    dm = manager_with(dtype, any_profile)
    assert [dm.config_read(VM, BDF, o, 1) for o in FIXED_ZERO_BYTES] == [0] * len(FIXED_ZERO_BYTES)
    for offset in FIXED_ZERO_BYTES:
        dm.config_write(VM, BDF, offset, 1, 0xFF)
    for offset in (0x0C, 0x28, 0x34, 0x38, 0x3C):
        dm.config_write(VM, BDF, offset, 4, 0xFFFFFFFF)
    dm.config_write(VM, BDF, 0x0E, 2, 0xFFFF)
    assert [dm.config_read(VM, BDF, o, 1) for o in FIXED_ZERO_BYTES] == [0] * len(FIXED_ZERO_BYTES)
    assert dm.config_read(VM, BDF, 0x28, 4) == 0


# ------------------------------------------------------------------ R-CFG-004


@pytest.mark.req("R-CFG-004")
@pytest.mark.parametrize(
    ("mask", "expected"),
    [(None, 0x0507), (0x0003, 0x0003), (0x0000, 0x0000), (0x07FF, 0x07FF), (0x0400, 0x0400)],
)
def test_exactly_the_writable_command_bits_can_be_set(mask: int | None, expected: int) -> None:
    fields = {} if mask is None else {"command_mask": mask}
    dm = manager_with(make_type(name=f"cmd-{mask}", **fields))
    assert dm.config_read(VM, BDF, 0x04, 2) == 0
    dm.config_write(VM, BDF, 0x04, 2, 0xFFFF)
    assert dm.config_read(VM, BDF, 0x04, 2) == expected
    for bit in range(16):
        dm.config_write(VM, BDF, 0x04, 2, 1 << bit)
        assert dm.config_read(VM, BDF, 0x04, 2) == (1 << bit) & expected
    dm.config_write(VM, BDF, 0x04, 2, 0)
    assert dm.config_read(VM, BDF, 0x04, 2) == 0


@pytest.mark.req("R-CFG-004")
def test_command_register_byte_writes_touch_one_byte() -> None:
    dm = manager_with(make_type(name="cmd-bytes"))
    dm.config_write(VM, BDF, 0x05, 1, 0xFF)
    assert dm.config_read(VM, BDF, 0x04, 2) == 0x0500
    dm.config_write(VM, BDF, 0x04, 1, 0xFF)
    assert dm.config_read(VM, BDF, 0x04, 2) == 0x0507
    dm.config_write(VM, BDF, 0x05, 1, 0x00)
    assert dm.config_read(VM, BDF, 0x04, 2) == 0x0007


@pytest.mark.req("R-CFG-004")
def test_command_register_is_zero_at_power_on_for_catalog_types() -> None:
    for dtype in CATALOG_TYPES:
        dm = manager_with(dtype)
        assert dm.config_read(VM, BDF, 0x04, 2) == 0, dtype.name


# ------------------------------------------------------------------ R-CFG-005


@pytest.mark.req("R-CFG-005")
@pytest.mark.parametrize("status", list(StatusRegister))
@pytest.mark.parametrize(
    "dtype", [*CATALOG_TYPES, make_type(name="nocaps")], ids=[*type_ids(CATALOG_TYPES), "nocaps"]
)
def test_capability_list_bit_reflects_capabilities_and_is_read_only(
    dtype: DeviceType, status: StatusRegister
) -> None:
    dm = manager_with(dtype, Profile(status=status))
    expected = 0x10 if dtype.capabilities else 0x00
    assert dm.config_read(VM, BDF, 0x06, 2) == expected
    for value in (0xFFFF, 0x0000, 0x0010, 0xFFEF, ~ERROR_BITS & 0xFFFF):
        dm.config_write(VM, BDF, 0x06, 2, value)
        assert dm.config_read(VM, BDF, 0x06, 2) == expected
    dm.config_write(VM, BDF, 0x04, 4, 0xFFFF0000)
    assert dm.config_read(VM, BDF, 0x06, 2) == expected


@pytest.mark.req("R-CFG-005")
def test_non_error_status_bits_are_read_only_even_if_a_blob_sets_them() -> None:
    dm = manager_with(E1000)
    blob = dm.save(VM, BDF)
    # Bit 5 (66 MHz capable) is neither writable nor RW1C: a blob cannot set it (R-SR-004).
    with pytest.raises(BlobMismatch):
        dm.restore(VM, BDF, with_config(blob, {0x06: 0x30}))
    with pytest.raises(BlobMismatch):
        dm.restore(VM, BDF, with_config(blob, {0x06: 0x00}))  # nor clear the capability-list bit
    assert dm.config_read(VM, BDF, 0x06, 2) == 0x10


# ------------------------------------------------------------------ R-CFG-006


def _status_set(dm: DataManager, bits: int) -> None:
    """Put status error bits into a state where they are set (through a restored blob)."""
    status = dm.config_read(VM, BDF, 0x06, 2) | bits
    dm.restore(VM, BDF, with_config(dm.save(VM, BDF), {0x06: status & 0xFF, 0x07: status >> 8}))
    assert dm.config_read(VM, BDF, 0x06, 2) == status


@pytest.mark.req("R-CFG-006")
def test_status_error_bits_cannot_be_set_by_writing() -> None:
    dm = manager_with(E1000)
    dm.config_write(VM, BDF, 0x06, 2, ERROR_BITS)
    dm.config_write(VM, BDF, 0x04, 4, 0xFFFFFFFF)
    assert dm.config_read(VM, BDF, 0x06, 2) == 0x0010


@pytest.mark.req("R-CFG-006")
@pytest.mark.parametrize("bit", [8, 11, 12, 13, 14, 15])
def test_each_status_error_bit_is_cleared_by_writing_one_and_kept_by_writing_zero(bit: int) -> None:
    dm = manager_with(E1000)
    _status_set(dm, ERROR_BITS)
    dm.config_write(VM, BDF, 0x06, 2, 0x0000)
    assert dm.config_read(VM, BDF, 0x06, 2) == 0x10 | ERROR_BITS
    dm.config_write(VM, BDF, 0x06, 2, 1 << bit)
    assert dm.config_read(VM, BDF, 0x06, 2) == 0x10 | (ERROR_BITS & ~(1 << bit))
    dm.config_write(VM, BDF, 0x06, 2, 0xFFFF)
    assert dm.config_read(VM, BDF, 0x06, 2) == 0x10


@pytest.mark.req("R-CFG-006")
def test_status_error_bits_cleared_by_byte_and_dword_writes() -> None:
    dm = manager_with(E1000)
    _status_set(dm, ERROR_BITS)
    dm.config_write(VM, BDF, 0x07, 1, 0x01)  # bit 8 only
    assert dm.config_read(VM, BDF, 0x06, 2) == 0x10 | 0xF800
    dm.config_write(VM, BDF, 0x04, 4, 0x8000_0000)  # bit 15 through a dword write at 0x04
    assert dm.config_read(VM, BDF, 0x06, 2) == 0x10 | 0x7800
    dm.config_write(VM, BDF, 0x06, 1, 0xFF)  # low byte has no error bits
    assert dm.config_read(VM, BDF, 0x06, 2) == 0x10 | 0x7800


@pytest.mark.req("R-CFG-006")
def test_custom_status_rw1c_bits_are_the_only_clearable_ones() -> None:
    t = make_type(name="rw1c-subset", status_rw1c=0x8100)
    dm = manager_with(t)
    _status_set(dm, 0x8100)
    dm.config_write(VM, BDF, 0x06, 2, 0x0100)
    assert dm.config_read(VM, BDF, 0x06, 2) == 0x8000
    dm.config_write(VM, BDF, 0x06, 2, 0xFFFF)
    assert dm.config_read(VM, BDF, 0x06, 2) == 0x0000
    with pytest.raises(BlobMismatch):  # bit 14 is not RW1C for this type: it is fixed at zero
        _status_set(dm, 0x4000)


@pytest.mark.req("R-CFG-006")
def test_read_only_status_variant_makes_the_whole_register_read_only() -> None:
    assert layout(E1000, StatusRegister.RW1C).w1cmask[6:8] == ERROR_BITS.to_bytes(2, "little")
    read_only = layout(E1000, StatusRegister.READ_ONLY)
    assert read_only.w1cmask[6:8] == b"\x00\x00"
    assert read_only.wmask[6:8] == b"\x00\x00"
    dm = manager_with(E1000, Profile(status=StatusRegister.READ_ONLY))
    for value in (0xFFFF, ERROR_BITS, 0x0000):
        dm.config_write(VM, BDF, 0x06, 2, value)
        assert dm.config_read(VM, BDF, 0x06, 2) == 0x10
    # The error bits are fixed: no state with them set can even be restored.
    rw1c_dm = manager_with(E1000)
    _status_set(rw1c_dm, 0x8000)
    with pytest.raises(BlobMismatch):
        dm.restore(VM, BDF, rw1c_dm.save(VM, BDF))
    assert dm.config_read(VM, BDF, 0x06, 2) == 0x10


# ------------------------------------------------------------------ R-CFG-007


@pytest.mark.req("R-CFG-007")
@pytest.mark.parametrize("offset", [0x0C, 0x3C])
def test_cache_line_size_and_interrupt_line_are_fully_writable_from_zero(offset: int) -> None:
    dm = manager_with(E1000)
    assert dm.config_read(VM, BDF, offset, 1) == 0
    dword = offset & ~3
    around = dm.config_read(VM, BDF, dword, 4) & ~(0xFF << (8 * (offset - dword)))
    for value in range(256):
        dm.config_write(VM, BDF, offset, 1, value)
        assert dm.config_read(VM, BDF, offset, 1) == value
    assert dm.config_read(VM, BDF, dword, 4) & ~(0xFF << (8 * (offset - dword))) == around
    dm.config_write(VM, BDF, dword, 4, 0xFFFFFFFF)
    assert dm.config_read(VM, BDF, offset, 1) == 0xFF


# ------------------------------------------------------------------ R-CFG-008


def walk_capabilities(dm: DataManager, vm: int = VM, bdf: Bdf = BDF) -> list[tuple[int, int]]:
    """(offset, id) for every capability reached from the capabilities pointer."""
    found: list[tuple[int, int]] = []
    pointer = dm.config_read(vm, bdf, 0x34, 1)
    while pointer:
        assert len(found) < 48, "capability list does not terminate"
        found.append((pointer, dm.config_read(vm, bdf, pointer, 1)))
        pointer = dm.config_read(vm, bdf, pointer + 1, 1)
    return found


ODD = make_type(
    name="odd-caps",
    capabilities=(
        Capability(0x01, b"\x01"),
        Capability(0x05, bytes(range(1, 8))),
        Capability(0x09, b""),
        Capability(0x10, bytes(range(0x20, 0x2D))),
        Capability(0x11, b"\x77\x66"),
    ),
)
CAP_TYPES = (*CATALOG_TYPES, ODD)


@pytest.mark.req("R-CFG-008", "R-CFG-005")
@pytest.mark.parametrize("dtype", CAP_TYPES, ids=type_ids(CAP_TYPES))
def test_capability_chain_lists_the_type_capabilities_in_order(dtype: DeviceType) -> None:
    dm = manager_with(dtype)
    chain = walk_capabilities(dm)
    assert [cap_id for _, cap_id in chain] == [c.cap_id for c in dtype.capabilities]
    assert dm.config_read(VM, BDF, 0x34, 1) == (0x40 if dtype.capabilities else 0)
    assert bool(dm.config_read(VM, BDF, 0x06, 2) & 0x10) == bool(dtype.capabilities)
    previous_end = 0x40
    for (offset, _), cap in zip(chain, dtype.capabilities, strict=True):
        assert offset % 4 == 0
        assert offset >= previous_end
        assert offset + 2 + len(cap.body) <= 0x100
        assert read_bytes(dm, offset + 2, offset + 2 + len(cap.body)) == cap.body
        previous_end = offset + 2 + len(cap.body)
    if chain:
        assert chain[0][0] == 0x40
        last = chain[-1][0]
        assert dm.config_read(VM, BDF, last + 1, 1) == 0


@pytest.mark.req("R-CFG-008")
@pytest.mark.parametrize("dtype", CAP_TYPES, ids=type_ids(CAP_TYPES))
def test_capability_id_and_next_bytes_are_read_only_and_body_follows_masks(dtype: DeviceType) -> None:
    dm = manager_with(dtype)
    chain = walk_capabilities(dm)
    headers = {o: dm.config_read(VM, BDF, o, 2) for o, _ in chain}
    for fill in (0xFF, 0x00):
        for offset, _ in chain:
            dm.config_write(VM, BDF, offset, 2, fill * 0x0101)
            dm.config_write(VM, BDF, offset, 1, fill)
            dm.config_write(VM, BDF, offset + 1, 1, fill)
        assert {o: dm.config_read(VM, BDF, o, 2) for o, _ in chain} == headers
        assert dm.config_read(VM, BDF, 0x34, 1) == (0x40 if chain else 0)
    for (offset, _), cap in zip(chain, dtype.capabilities, strict=True):
        n = len(cap.body)
        wm = cap.writable or bytes(n)
        cm = cap.rw1c or bytes(n)
        for k in range(n):
            dm.config_write(VM, BDF, offset + 2 + k, 1, 0xFF)
        after_ones = bytes((cap.body[k] | wm[k]) & ~cm[k] & 0xFF for k in range(n))
        assert read_bytes(dm, offset + 2, offset + 2 + n) == after_ones
        for k in range(n):
            dm.config_write(VM, BDF, offset + 2 + k, 1, 0x00)
        after_zeros = bytes(after_ones[k] & ~wm[k] & 0xFF for k in range(n))
        assert read_bytes(dm, offset + 2, offset + 2 + n) == after_zeros


@pytest.mark.req("R-CFG-008", "R-CFG-001")
def test_capability_rw1c_body_bits_clear_on_one_and_keep_on_zero() -> None:
    cap = Capability(0x01, bytes([0x00, 0x00, 0x03, 0x81]), writable=bytes([0, 0, 0x03, 0x01]),
                     rw1c=bytes([0, 0, 0, 0x80]))  # fmt: skip
    dm = manager_with(make_type(name="pm-set", capabilities=(cap,)))
    assert dm.config_read(VM, BDF, 0x45, 1) == 0x81
    dm.config_write(VM, BDF, 0x45, 1, 0x00)  # zero: PME status kept, PME_En cleared
    assert dm.config_read(VM, BDF, 0x45, 1) == 0x80
    dm.config_write(VM, BDF, 0x45, 1, 0x01)  # one to PME_En only
    assert dm.config_read(VM, BDF, 0x45, 1) == 0x81
    dm.config_write(VM, BDF, 0x44, 2, 0x8100)  # one to PME status and PME_En: status clears, En stays
    assert dm.config_read(VM, BDF, 0x45, 1) == 0x01
    dm.config_write(VM, BDF, 0x45, 1, 0x80)
    assert dm.config_read(VM, BDF, 0x45, 1) == 0x00


# ------------------------------------------------------------------ R-CFG-009

CONVENTIONAL = make_type(name="conv", bars=(BarSpec(BarKind.MEM32, 4096),))
EXPRESS = make_type(name="pcie", express=True, registers=(Register(0x104, 4, RegisterClass.RW, 0x11),))


@pytest.mark.req("R-CFG-009")
def test_conventional_function_reads_all_ones_above_0xff_and_ignores_writes() -> None:
    dm = manager_with(CONVENTIONAL)
    for width in (1, 2, 4):
        for offset in range(0x100, 0x1000, 4):
            for sub in range(0, 4, width):
                assert dm.config_read(VM, BDF, offset + sub, width) == (1 << (8 * width)) - 1
    before = dm.save(VM, BDF)
    for offset in range(0x100, 0x1000, 4):
        dm.config_write(VM, BDF, offset, 4, 0)
    assert dm.save(VM, BDF) == before
    assert dm.config_read(VM, BDF, 0x100, 4) == 0xFFFFFFFF
    assert dm.config_read(VM, BDF, 0xFFF, 1) == 0xFF
    assert dm.config_read(VM, BDF, 0xFC, 4) == 0  # the last dword of the 256 bytes is real
    ecam_function = 0xB000_0000 + (BDF.packed << 12)
    assert dm.mmio_read(VM, ecam_function + 0x100, 4) == 0xFFFFFFFF
    assert dm.mmio_read(VM, ecam_function + 0xFFE, 2) == 0xFFFF


@pytest.mark.req("R-CFG-009", "R-CFG-010")
def test_express_function_has_4096_bytes_reading_zero_where_unclaimed() -> None:
    dm = manager_with(EXPRESS)
    assert dm.config_read(VM, BDF, 0x104, 4) == 0x11
    for offset in (0x100, *range(0x108, 0x1000, 4)):
        dm.config_write(VM, BDF, offset, 4, 0xFFFFFFFF)
    for offset in (0x100, *range(0x108, 0x1000, 4)):
        assert dm.config_read(VM, BDF, offset, 4) == 0
    assert dm.config_read(VM, BDF, 0xFFF, 1) == 0
    dm.config_write(VM, BDF, 0x104, 4, 0xCAFEBABE)
    assert dm.config_read(VM, BDF, 0x104, 4) == 0xCAFEBABE


@pytest.mark.req("R-CFG-009")
@pytest.mark.parametrize("dtype", [CONVENTIONAL, EXPRESS], ids=["conventional", "express"])
def test_configuration_offsets_above_0xfff_do_not_exist(dtype: DeviceType) -> None:
    dm = manager_with(dtype)
    before = dm.save(VM, BDF)
    for offset in (0x1000, 0x1FFC, 0xFFFF):
        with pytest.raises(VpcidError):
            dm.config_read(VM, BDF, offset, 4)
        with pytest.raises(VpcidError):
            dm.config_write(VM, BDF, offset, 4, 0)
    assert dm.save(VM, BDF) == before


# ------------------------------------------------------------------ R-CFG-010

BARE = make_type(name="bare", vendor_id=0x1234, device_id=0x5678, class_code=0x010203, revision=0x04)


@pytest.mark.req("R-CFG-010", "R-CFG-003", "R-BAR-004", "R-BAR-007")
def test_every_unclaimed_byte_of_a_bare_function_reads_zero_after_writing_ones(any_profile: Profile) -> None:
    dm = manager_with(BARE, any_profile)
    for offset in range(0x100):
        dm.config_write(VM, BDF, offset, 1, 0xFF)
    expected = bytearray(0x100)
    expected[0x00:0x04] = bytes([0x34, 0x12, 0x78, 0x56])
    expected[0x04:0x06] = (0x0507).to_bytes(2, "little")
    expected[0x08:0x0C] = bytes([0x04, 0x03, 0x02, 0x01])
    expected[0x0C] = 0xFF  # cache line size
    expected[0x3C] = 0xFF  # interrupt line
    assert read_bytes(dm, 0, 0x100) == bytes(expected)


@pytest.mark.req("R-CFG-010")
def test_padding_and_gaps_between_capabilities_and_registers_read_zero() -> None:
    t = make_type(
        name="gaps",
        capabilities=(Capability(0x01, b"\xff", writable=b"\xff"), Capability(0x05, b"\xff")),
        registers=(
            Register(0x80, 4, RegisterClass.RW, 0xFFFFFFFF),
            Register(0xF0, 2, RegisterClass.RO, 0xFFFF),
        ),
    )
    dm = manager_with(t)
    claimed: set[int] = set()
    for offset, _ in walk_capabilities(dm):
        claimed.update(range(offset, offset + 3))
    claimed.update(range(0x80, 0x84))
    claimed.update(range(0xF0, 0xF2))
    free = [o for o in range(0x40, 0x100) if o not in claimed]
    assert len(free) == 0xC0 - 6 - 6
    for offset in free:
        dm.config_write(VM, BDF, offset, 1, 0xFF)
    for offset in range(0x40, 0x100, 4):
        dm.config_write(VM, BDF, offset, 4, 0xFFFFFFFF)
    assert all(dm.config_read(VM, BDF, o, 1) == 0 for o in free)


# ------------------------------------------------------------------ R-CFG-011


@pytest.mark.req("R-CFG-011")
@pytest.mark.parametrize(("multifunction", "expected"), [(False, 0x00), (True, 0x80)])
def test_header_type_is_zero_with_bit_7_for_multifunction(multifunction: bool, expected: int) -> None:
    dm = manager_with(make_type(name=f"mf-{multifunction}", multifunction=multifunction))
    assert dm.config_read(VM, BDF, 0x0E, 1) == expected
    for value in (0xFF, 0x00, 0x80, 0x7F):
        dm.config_write(VM, BDF, 0x0E, 1, value)
        assert dm.config_read(VM, BDF, 0x0E, 1) == expected
    for dtype in CATALOG_TYPES:
        assert manager_with(dtype).config_read(VM, BDF, 0x0E, 1) == 0x00


# ------------------------------------------------------------------ R-CFG-012


@pytest.mark.req("R-CFG-012")
@pytest.mark.parametrize("width", [1, 2, 4])
def test_device_specific_register_classes_at_each_width(width: int, any_profile: Profile) -> None:
    full = (1 << (8 * width)) - 1
    init = 0xA5C3F00F & full
    regs = (
        Register(0x40, width, RegisterClass.RO, init),
        Register(0x44, width, RegisterClass.RW, init),
        Register(0x48, width, RegisterClass.RW1C, init),
        Register(0x4C, width, RegisterClass.RSVD, 0),
    )
    dm = manager_with(make_type(name=f"regs-{width}", registers=regs), any_profile)
    assert [dm.config_read(VM, BDF, r.offset, width) for r in regs] == [init, init, init, 0]
    pattern = 0x5A5A5A5A & full
    for reg in regs:
        dm.config_write(VM, BDF, reg.offset, width, pattern)
    clear_some = init & pattern  # RW1C: ones in the pattern clear set bits, zeros keep them
    assert [dm.config_read(VM, BDF, r.offset, width) for r in regs] == [init, pattern, init & ~clear_some, 0]
    for reg in regs:
        dm.config_write(VM, BDF, reg.offset, width, 0)
    assert [dm.config_read(VM, BDF, r.offset, width) for r in regs] == [init, 0, init & ~clear_some, 0]
    for reg in regs:
        dm.config_write(VM, BDF, reg.offset, width, full)
    assert [dm.config_read(VM, BDF, r.offset, width) for r in regs] == [init, full, 0, 0]


@pytest.mark.req("R-CFG-012")
def test_device_specific_registers_in_express_extended_space() -> None:
    regs = (Register(0x104, 4, RegisterClass.RW1C, 0xFF), Register(0xFFE, 2, RegisterClass.RW, 0x1234))
    dm = manager_with(make_type(name="ext-regs", express=True, registers=regs))
    assert dm.config_read(VM, BDF, 0x104, 4) == 0xFF
    assert dm.config_read(VM, BDF, 0xFFE, 2) == 0x1234
    dm.config_write(VM, BDF, 0x104, 4, 0x0F)
    dm.config_write(VM, BDF, 0xFFC, 4, 0xABCD0000)
    assert dm.config_read(VM, BDF, 0x104, 4) == 0xF0
    assert dm.config_read(VM, BDF, 0xFFC, 4) == 0xABCD0000


@pytest.mark.req("R-CFG-012", "R-DT-001")
@pytest.mark.parametrize(
    "register",
    [
        Register(0x3C, 4, RegisterClass.RW),
        Register(0x41, 2, RegisterClass.RW),
        Register(0x42, 4, RegisterClass.RW),
        Register(0x40, 8, RegisterClass.RW),
        Register(0x44, 4, RegisterClass.RSVD, 1),
    ],
    ids=["below-0x40", "misaligned-2", "misaligned-4", "width-8", "reserved-nonzero"],
)
def test_device_specific_register_placement_rules(register: Register) -> None:
    with pytest.raises(VpcidError) as info:
        make_type(name="bad-reg", registers=(register,))
    assert info.value.kind == "bad-device-type"
