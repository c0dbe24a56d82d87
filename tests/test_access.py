"""Accesses: widths, ranges, alignment, unmapped and straddling accesses, byte order.

Requirements R-ACC-001..R-ACC-009.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import NIC, VM, Recorder, enable, program_bar
from vpcid.model import (
    BadWidth,
    BarKind,
    BarSpec,
    Bdf,
    DataManager,
    DeviceType,
    InvalidArgument,
    Misaligned,
    Profile,
    VpcidError,
)
from vpcid.model.catalog import A100, E1000, NVME
from vpcid.model.profile import Alignment, Cf8AfterAccess, Straddle, UnmappedMmioRead

CMD_IO, CMD_MEM = 0x1, 0x2
ECAM = 0xB000_0000
ONES8 = (1 << 64) - 1

A, B = Bdf(0, 1, 0), Bdf(0, 2, 0)

SPLIT = Profile()
REJECT = Profile(straddle=Straddle.REJECT)
START = Profile(straddle=Straddle.START_ADDRESS)
NATURAL = Profile(alignment=Alignment.NATURAL)
ZEROS = Profile(unmapped_mmio_read=UnmappedMmioRead.ZEROS)
STRADDLES = [SPLIT, REJECT, START]
STRADDLE_IDS = ["split", "reject", "start-address"]


def tiny(behaviour: Any = None) -> DeviceType:
    """BAR0 mem32 16 B, BAR1 I/O 4 B, BAR2 mem64 16 B, BAR4 mem32 16 B."""
    return DeviceType(
        name="tiny",
        vendor_id=0x1B36,
        device_id=0x0020,
        class_code=0xFF0000,
        bars=(
            BarSpec(BarKind.MEM32, 16),
            BarSpec(BarKind.IO, 4),
            BarSpec(BarKind.MEM64, 16),
            None,
            BarSpec(BarKind.MEM32, 16),
        ),
        behaviour=behaviour,
    )


def manager(profile: Profile = SPLIT) -> DataManager:
    dm = DataManager(profile)
    dm.create_vm(VM)
    return dm


def plug_tiny(dm: DataManager, bdf: Bdf, mem_base: int, io_base: int, behaviour: Any = None) -> None:
    dm.plug(VM, bdf, tiny(behaviour))
    program_bar(dm, VM, bdf, 0, mem_base)
    program_bar(dm, VM, bdf, 1, io_base)
    enable(dm, VM, bdf, CMD_IO | CMD_MEM)


def state(dm: DataManager, bdfs: tuple[Bdf, ...] = ()) -> tuple[object, ...]:
    """Everything a rejected operation must leave alone: tables, 0xCF8, every instance's blob."""
    return (dm.tables(VM), dm.cf8(VM), tuple(dm.save(VM, b) for b in bdfs))


def assert_inside(rec: Recorder, dtype: DeviceType) -> None:
    for _, bar, offset, length in rec.log:
        spec = dtype.bar(bar)
        assert spec is not None
        assert offset >= 0, (bar, offset, length)
        assert offset + length <= spec.size, (bar, offset, length)


# --------------------------------------------------------------------- R-ACC-001: widths and ranges


@pytest.mark.req("R-ACC-001")
@pytest.mark.parametrize("width", [0, 3, 5, 8, 16, -4])
def test_configuration_accesses_are_1_2_or_4_bytes(programmed: DataManager, width: int) -> None:
    before = state(programmed, (NIC,))
    with pytest.raises(BadWidth):
        programmed.config_read(VM, NIC, 0, width)
    with pytest.raises(BadWidth):
        programmed.config_write(VM, NIC, 0x3C, width, 0)
    assert state(programmed, (NIC,)) == before
    assert [programmed.config_read(VM, NIC, 0x3C, w) for w in (1, 2, 4)] == [0, 0x100, 0x100]


@pytest.mark.req("R-ACC-001")
@pytest.mark.parametrize("width", [0, 3, 5, 8, 16])
def test_io_accesses_are_1_2_or_4_bytes(programmed: DataManager, width: int) -> None:
    before = state(programmed, (NIC,))
    with pytest.raises(BadWidth):
        programmed.io_read(VM, 0xC000, width)
    with pytest.raises(BadWidth):
        programmed.io_write(VM, 0xC000, width, 0)
    assert state(programmed, (NIC,)) == before


@pytest.mark.req("R-ACC-001")
@pytest.mark.parametrize("width", [0, 3, 5, 6, 7, 16, 32])
def test_mmio_accesses_are_1_2_4_or_8_bytes(programmed: DataManager, width: int) -> None:
    before = state(programmed, (NIC,))
    with pytest.raises(BadWidth):
        programmed.mmio_read(VM, 0xFEBC_0000, width)
    with pytest.raises(BadWidth):
        programmed.mmio_write(VM, 0xFEBC_0000, width, 0)
    assert state(programmed, (NIC,)) == before
    programmed.mmio_write(VM, 0xFEBC_0000, 8, ONES8)
    assert programmed.mmio_read(VM, 0xFEBC_0000, 8) == ONES8


@pytest.mark.req("R-ACC-001", "R-ACC-004")
def test_io_ports_up_to_the_top_of_port_space() -> None:
    dm = manager()
    for port, width in ((0xFFFF, 1), (0xFFFE, 2), (0xFFFC, 4), (0, 4)):
        assert dm.io_read(VM, port, width) == (1 << (8 * width)) - 1
        dm.io_write(VM, port, width, 0)


@pytest.mark.req("R-ACC-001")
@pytest.mark.parametrize(("port", "width"), [(0xFFFF, 2), (0xFFFE, 4), (0xFFFD, 4), (0x10000, 1), (-1, 1)])
def test_io_port_plus_width_beyond_64k_is_invalid(programmed: DataManager, port: int, width: int) -> None:
    before = state(programmed, (NIC,))
    with pytest.raises(InvalidArgument):
        programmed.io_read(VM, port, width)
    with pytest.raises(InvalidArgument):
        programmed.io_write(VM, port, width, 0)
    assert state(programmed, (NIC,)) == before


@pytest.mark.req("R-ACC-001")
def test_mmio_up_to_the_top_of_address_space() -> None:
    dm = manager()
    assert dm.mmio_read(VM, (1 << 64) - 8, 8) == ONES8
    assert dm.mmio_read(VM, (1 << 64) - 1, 1) == 0xFF
    dm.mmio_write(VM, (1 << 64) - 4, 4, 0)


@pytest.mark.req("R-ACC-001")
@pytest.mark.parametrize(
    ("address", "width"), [((1 << 64) - 7, 8), ((1 << 64) - 1, 2), (1 << 64, 1), (-1, 1), (-8, 8)]
)
def test_mmio_address_plus_width_beyond_2_to_64_is_invalid(address: int, width: int) -> None:
    dm = manager()
    with pytest.raises(InvalidArgument):
        dm.mmio_read(VM, address, width)
    with pytest.raises(InvalidArgument):
        dm.mmio_write(VM, address, width, 0)


@pytest.mark.req("R-ACC-001", "R-ACC-008")
@pytest.mark.parametrize("bad", [True, False, 1.0, "0xc000", None])
def test_ports_addresses_and_offsets_must_be_plain_integers(programmed: DataManager, bad: Any) -> None:
    before = state(programmed, (NIC,))
    calls = [
        lambda: programmed.io_read(VM, bad, 1),
        lambda: programmed.io_write(VM, bad, 1, 0),
        lambda: programmed.mmio_read(VM, bad, 1),
        lambda: programmed.mmio_write(VM, bad, 1, 0),
        lambda: programmed.config_read(VM, NIC, bad, 1),
        lambda: programmed.config_write(VM, NIC, bad, 1, 0),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument):
            call()
    assert state(programmed, (NIC,)) == before


@pytest.mark.req("R-ACC-001")
@pytest.mark.parametrize("bad", [True, 4.0, "4", None])
def test_non_integer_widths_are_rejected(programmed: DataManager, bad: Any) -> None:
    """R-ACC-001 says other widths are `bad-width`; R-ERR-002 allows `invalid-argument` for a
    wrongly typed argument. Either kind is a rejection that changes nothing."""
    before = state(programmed, (NIC,))
    calls = [
        lambda: programmed.io_read(VM, 0xC000, bad),
        lambda: programmed.io_write(VM, 0xC000, bad, 1),
        lambda: programmed.mmio_read(VM, 0xFEBC_0000, bad),
        lambda: programmed.mmio_write(VM, 0xFEBC_0000, bad, 1),
        lambda: programmed.config_read(VM, NIC, 0x3C, bad),
        lambda: programmed.config_write(VM, NIC, 0x3C, bad, 1),
    ]
    for call in calls:
        with pytest.raises((BadWidth, InvalidArgument)):
            call()
    assert state(programmed, (NIC,)) == before


# ------------------------------------------------------------------------- R-ACC-002: alignment


@pytest.mark.req("R-ACC-002")
def test_any_alignment_allows_unaligned_io_and_mmio(programmed: DataManager) -> None:
    dm = programmed
    dm.mmio_write(VM, 0xFEBC_0003, 8, 0x8877_6655_4433_2211)
    assert dm.mmio_read(VM, 0xFEBC_0000, 8) == 0x5544_3322_1100_0000
    assert dm.mmio_read(VM, 0xFEBC_0008, 4) == 0x0088_7766
    assert dm.mmio_read(VM, 0xFEBC_0005, 2) == 0x4433
    assert dm.mmio_read(VM, 0xFEBC_0001, 4) == 0x2211_0000
    dm.io_write(VM, 0xC001, 4, 0xDDCC_BBAA)
    assert dm.io_read(VM, 0xC000, 4) == 0xCCBB_AA00
    assert dm.io_read(VM, 0xC003, 2) == 0xDDCC
    assert dm.io_read(VM, 0xC005, 1) == 0


MISALIGNED = [(1, 2), (3, 2), (1, 4), (2, 4), (3, 4), (4, 8), (2, 8), (7, 8)]


@pytest.mark.req("R-ACC-002")
@pytest.mark.parametrize(("delta", "width"), MISALIGNED)
def test_natural_alignment_rejects_misaligned_mmio_and_changes_nothing(delta: int, width: int) -> None:
    dm = manager(NATURAL)
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, 0xFEBC_0000)
    enable(dm, VM, NIC, CMD_MEM)
    dm.mmio_write(VM, 0xFEBC_0000, 8, 0x0102_0304_0506_0708)
    dm.mmio_write(VM, 0xFEBC_0008, 8, 0x1112_1314_1516_1718)
    before = state(dm, (NIC,))
    with pytest.raises(Misaligned):
        dm.mmio_read(VM, 0xFEBC_0000 + delta, width)
    with pytest.raises(Misaligned):
        dm.mmio_write(VM, 0xFEBC_0000 + delta, width, 0)
    with pytest.raises(Misaligned):
        dm.mmio_write(VM, 0x1234_0000 + delta, width, 0)  # unmapped: still rejected
    assert state(dm, (NIC,)) == before
    assert dm.mmio_read(VM, 0xFEBC_0000, 8) == 0x0102_0304_0506_0708
    assert dm.mmio_read(VM, 0xFEBC_0008, 8) == 0x1112_1314_1516_1718


@pytest.mark.req("R-ACC-002")
@pytest.mark.parametrize(("delta", "width"), [d for d in MISALIGNED if d[1] < 8])
def test_natural_alignment_rejects_misaligned_io_and_changes_nothing(delta: int, width: int) -> None:
    dm = manager(NATURAL)
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 1, 0xC000)
    enable(dm, VM, NIC, CMD_IO)
    dm.io_write(VM, 0xC000, 4, 0x0A0B_0C0D)
    dm.io_write(VM, 0xC004, 4, 0x1A1B_1C1D)
    before = state(dm, (NIC,))
    with pytest.raises(Misaligned):
        dm.io_read(VM, 0xC000 + delta, width)
    with pytest.raises(Misaligned):
        dm.io_write(VM, 0xC000 + delta, width, 0)
    assert state(dm, (NIC,)) == before
    assert dm.io_read(VM, 0xC000, 4) == 0x0A0B_0C0D
    assert dm.io_read(VM, 0xC004, 4) == 0x1A1B_1C1D


@pytest.mark.req("R-ACC-002")
def test_natural_alignment_accepts_aligned_accesses() -> None:
    dm = manager(NATURAL)
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, 0xFEBC_0000)
    program_bar(dm, VM, NIC, 1, 0xC000)
    enable(dm, VM, NIC, CMD_IO | CMD_MEM)
    for width in (1, 2, 4, 8):
        address = 0xFEBC_0000 + 8 * width
        dm.mmio_write(VM, address, width, width)
        assert dm.mmio_read(VM, address, width) == width
    for width in (1, 2, 4):
        dm.io_write(VM, 0xC000 + 4 * width, width, width)
        assert dm.io_read(VM, 0xC000 + 4 * width, width) == width
    assert dm.io_read(VM, 0x8001, 1) == 0xFF  # byte accesses are always aligned


@pytest.mark.req("R-ACC-002", "R-ACC-003")
def test_natural_alignment_does_not_apply_to_direct_configuration_accesses() -> None:
    dm = manager(NATURAL)
    dm.plug(VM, NIC, E1000)
    assert dm.config_read(VM, NIC, 0x01, 2) == 0x0E80  # device ID low byte, vendor ID high byte
    assert dm.config_read(VM, NIC, 0x03, 1) == 0x10
    dm.config_write(VM, NIC, 0x05, 2, 0x0005)  # command bits 8 and 10, status low byte (read-only)
    assert dm.config_read(VM, NIC, 0x04, 4) == 0x0010_0500  # status: capability list bit


@pytest.mark.req("R-ACC-002")
def test_natural_alignment_applies_to_platform_windows_and_rejection_keeps_0xcf8() -> None:
    dm = manager(Profile(alignment=Alignment.NATURAL, cf8_after_access=Cf8AfterAccess.CLEAR))
    dm.plug(VM, NIC, E1000)
    dm.io_write(VM, 0xCF8, 4, 0x8000_1000 | 0x3C)  # 00:02.0 register 0x3C
    before = state(dm, (NIC,))
    with pytest.raises(Misaligned):
        dm.io_write(VM, 0xCFD, 2, 0xFFFF)
    with pytest.raises(Misaligned):
        dm.io_read(VM, 0xCFE, 4)
    with pytest.raises(Misaligned):
        dm.io_read(VM, 0xCF9, 4)
    with pytest.raises(Misaligned):
        dm.mmio_write(VM, ECAM + (NIC.packed << 12) + 0x3D, 2, 0xFFFF)
    with pytest.raises(Misaligned):
        dm.mmio_read(VM, ECAM + 4, 8)
    assert state(dm, (NIC,)) == before
    assert dm.cf8(VM) == 0x8000_103C


# --------------------------------------------------------------- R-ACC-003: configuration offsets


@pytest.mark.req("R-ACC-003")
@pytest.mark.parametrize(
    ("offset", "width"), [(1, 4), (2, 4), (3, 4), (3, 2), (0x3D, 4), (0xFFF, 2), (0xFFE, 4), (0xFFD, 4)]
)
def test_configuration_access_must_lie_within_one_dword(offset: int, width: int) -> None:
    dm = manager()
    dm.plug(VM, NIC, NVME)
    before = state(dm, (NIC,))
    with pytest.raises(Misaligned):
        dm.config_read(VM, NIC, offset, width)
    with pytest.raises(Misaligned):
        dm.config_write(VM, NIC, offset, width, 0)
    with pytest.raises(Misaligned):
        dm.config_read(VM, Bdf(7, 7, 7), offset, width)  # also for an absent function
    assert state(dm, (NIC,)) == before


@pytest.mark.req("R-ACC-003")
@pytest.mark.parametrize(
    ("offset", "width"), [(0, 4), (1, 2), (2, 2), (1, 1), (3, 1), (0xFFC, 4), (0xFFF, 1)]
)
def test_configuration_access_within_a_dword_is_accepted(offset: int, width: int) -> None:
    dm = manager()
    dm.plug(VM, NIC, NVME)
    image = b"".join(dm.config_read(VM, NIC, o, 4).to_bytes(4, "little") for o in range(0, 0x1000, 4))
    assert dm.config_read(VM, NIC, offset, width) == int.from_bytes(image[offset : offset + width], "little")
    dm.config_write(VM, NIC, offset, width, 0)


@pytest.mark.req("R-ACC-003")
@pytest.mark.parametrize("offset", [0x1000, 0x1004, 0xFFFF, -1, -4])
def test_configuration_offsets_outside_0_to_0xfff_are_rejected(offset: int) -> None:
    """R-ACC-003 names `misaligned` for any access breaking its rule while R-ACC-001/R-ERR-002 call
    out-of-range arguments `invalid-argument`; the spec does not single out which applies here."""
    dm = manager()
    dm.plug(VM, NIC, NVME)
    before = state(dm, (NIC,))
    for width in (1, 2, 4):
        with pytest.raises((InvalidArgument, Misaligned)):
            dm.config_read(VM, NIC, offset, width)
        with pytest.raises((InvalidArgument, Misaligned)):
            dm.config_write(VM, NIC, offset, width, 0)
    assert state(dm, (NIC,)) == before


# ---------------------------------------------------------------------------- R-ACC-004: unmapped


@pytest.mark.req("R-ACC-004")
@pytest.mark.parametrize("profile", [SPLIT, ZEROS], ids=["mmio-ones", "mmio-zeros"])
def test_unmapped_io_reads_all_ones(profile: Profile) -> None:
    dm = manager(profile)
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 1, 0xC000)
    enable(dm, VM, NIC, CMD_IO)
    for port in (0, 0x80, 0x3F8, 0xBFFC, 0xC040, 0xFFFC):
        assert dm.io_read(VM, port, 1) == 0xFF
        assert dm.io_read(VM, port, 2) == 0xFFFF
        assert dm.io_read(VM, port, 4) == 0xFFFF_FFFF


@pytest.mark.req("R-ACC-004")
@pytest.mark.parametrize(("profile", "fill"), [(SPLIT, 0xFF), (ZEROS, 0x00)], ids=["ones", "zeros"])
def test_unmapped_mmio_reads_per_variant(profile: Profile, fill: int) -> None:
    dm = manager(profile)
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, 0xFEBC_0000)
    enable(dm, VM, NIC, CMD_MEM)
    for address in (0, 0x1000, 0xFEBB_FFF8, 0xFEBE_0000, 0xFFFF_FFF8, 1 << 40, (1 << 64) - 8):
        for width in (1, 2, 4, 8):
            assert dm.mmio_read(VM, address, width) == int.from_bytes(bytes([fill]) * width, "little")
    # A disabled BAR's range is unmapped too.
    enable(dm, VM, NIC, 0)
    assert dm.mmio_read(VM, 0xFEBC_0000, 4) == int.from_bytes(bytes([fill]) * 4, "little")


@pytest.mark.req("R-ACC-004")
def test_unmapped_writes_are_dropped() -> None:
    dm = manager()
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, 0xFEBC_0000)
    program_bar(dm, VM, NIC, 1, 0xC000)
    before = state(dm, (NIC,))
    dm.mmio_write(VM, 0xFEBC_0000, 8, ONES8)  # the BAR does not decode yet
    dm.io_write(VM, 0xC000, 4, 0xFFFF_FFFF)
    for port in (0x80, 0x3F8, 0xFFFC):
        dm.io_write(VM, port, 4, 0x1234_5678)
    assert state(dm, (NIC,)) == before
    enable(dm, VM, NIC, CMD_IO | CMD_MEM)
    assert dm.mmio_read(VM, 0xFEBC_0000, 8) == 0
    assert dm.io_read(VM, 0xC000, 4) == 0


# ------------------------------------------------------------------------- R-ACC-005: straddling

VALUE = 0x8877_6655_4433_2211
LOW, HIGH = 0x4433_2211, 0x8877_6655


@pytest.mark.req("R-ACC-005", "R-ACC-009")
@pytest.mark.parametrize("profile", STRADDLES, ids=STRADDLE_IDS)
def test_straddle_bar_then_unmapped(profile: Profile) -> None:
    dm = manager(profile)
    rec = Recorder()
    plug_tiny(dm, A, 0xE000_0000, 0x1000, rec)
    dm.mmio_write(VM, 0xE000_000C, 8, VALUE)
    received = dm.mmio_read(VM, 0xE000_000C, 4)
    rejected = profile.straddle is Straddle.REJECT
    assert received == (0 if rejected else LOW)
    assert dm.mmio_read(VM, 0xE000_0010, 4) == 0xFFFF_FFFF  # still unmapped
    dm.mmio_write(VM, 0xE000_000C, 4, LOW)
    rec.log.clear()
    got = dm.mmio_read(VM, 0xE000_000C, 8)
    assert got == (ONES8 if rejected else (0xFFFF_FFFF << 32) | LOW)
    assert rec.log == ([] if rejected else [("r", 0, 0xC, 4)])


@pytest.mark.req("R-ACC-005", "R-ACC-009")
@pytest.mark.parametrize("profile", STRADDLES, ids=STRADDLE_IDS)
def test_straddle_unmapped_then_bar(profile: Profile) -> None:
    dm = manager(profile)
    rec = Recorder()
    plug_tiny(dm, A, 0xE000_0000, 0x1000, rec)
    dm.mmio_write(VM, 0xDFFF_FFFC, 8, VALUE)
    split = profile.straddle is Straddle.SPLIT
    assert rec.log == ([("w", 0, 0, 4)] if split else [])  # start-address: the first run is unmapped
    assert dm.mmio_read(VM, 0xE000_0000, 4) == (HIGH if split else 0)
    dm.mmio_write(VM, 0xE000_0000, 4, HIGH)
    rec.log.clear()
    got = dm.mmio_read(VM, 0xDFFF_FFFC, 8)
    assert got == ((HIGH << 32) | 0xFFFF_FFFF if split else ONES8)
    assert rec.log == ([("r", 0, 0, 4)] if split else [])


@pytest.mark.req("R-ACC-005", "R-ACC-004")
@pytest.mark.parametrize("profile", STRADDLES, ids=STRADDLE_IDS)
def test_straddle_unmapped_part_reads_zeros_under_zeros_variant(profile: Profile) -> None:
    dm = manager(Profile(straddle=profile.straddle, unmapped_mmio_read=UnmappedMmioRead.ZEROS))
    plug_tiny(dm, A, 0xE000_0000, 0x1000)
    dm.mmio_write(VM, 0xE000_0008, 8, VALUE)
    # [0xE000000C, 0xE0000014): BAR bytes 0xC-0xF then four unmapped bytes.
    got = dm.mmio_read(VM, 0xE000_000C, 8)
    assert got == (0 if profile.straddle is Straddle.REJECT else HIGH)


@pytest.mark.req("R-ACC-005", "R-ACC-009")
@pytest.mark.parametrize("profile", STRADDLES, ids=STRADDLE_IDS)
def test_straddle_two_adjacent_bars_of_different_devices(profile: Profile) -> None:
    dm = manager(profile)
    rec_a, rec_b = Recorder(), Recorder()
    plug_tiny(dm, A, 0xE000_0000, 0x1000, rec_a)
    dm.plug(VM, B, tiny(rec_b))  # same type definition, its own behaviour object
    program_bar(dm, VM, B, 0, 0xE000_0010)
    enable(dm, VM, B, CMD_MEM)
    dm.mmio_write(VM, 0xE000_000C, 8, VALUE)
    a_part = dm.mmio_read(VM, 0xE000_000C, 4)
    b_part = dm.mmio_read(VM, 0xE000_0010, 4)
    expected = {
        Straddle.SPLIT: (LOW, HIGH),
        Straddle.REJECT: (0, 0),
        Straddle.START_ADDRESS: (LOW, 0),
    }[profile.straddle]
    assert (a_part, b_part) == expected
    # The neighbouring bytes of both BARs are untouched.
    assert dm.mmio_read(VM, 0xE000_0008, 4) == 0
    assert dm.mmio_read(VM, 0xE000_0014, 4) == 0
    dm.mmio_write(VM, 0xE000_000C, 4, LOW)
    dm.mmio_write(VM, 0xE000_0010, 4, HIGH)
    rec_a.log.clear()
    rec_b.log.clear()
    got = dm.mmio_read(VM, 0xE000_000C, 8)
    assert (
        got
        == {
            Straddle.SPLIT: VALUE,
            Straddle.REJECT: ONES8,
            Straddle.START_ADDRESS: (0xFFFF_FFFF << 32) | LOW,
        }[profile.straddle]
    )
    assert rec_a.log == ([] if profile.straddle is Straddle.REJECT else [("r", 0, 0xC, 4)])
    assert rec_b.log == ([("r", 0, 0, 4)] if profile.straddle is Straddle.SPLIT else [])


@pytest.mark.req("R-ACC-005", "R-ACC-009")
@pytest.mark.parametrize("profile", STRADDLES, ids=STRADDLE_IDS)
def test_straddle_two_bars_of_one_device_in_ascending_order(profile: Profile) -> None:
    dm = manager(profile)
    rec = Recorder()
    plug_tiny(dm, A, 0xE000_0000, 0x1000, rec)
    program_bar(dm, VM, A, 4, 0xE000_0010)
    enable(dm, VM, A, CMD_MEM)
    rec.log.clear()
    dm.mmio_write(VM, 0xE000_000E, 4, 0xDDCC_BBAA)
    assert (
        rec.log
        == {
            Straddle.SPLIT: [("w", 0, 0xE, 2), ("w", 4, 0, 2)],
            Straddle.REJECT: [],
            Straddle.START_ADDRESS: [("w", 0, 0xE, 2)],
        }[profile.straddle]
    )
    assert dm.mmio_read(VM, 0xE000_000C, 4) == (0 if profile.straddle is Straddle.REJECT else 0xBBAA_0000)
    assert dm.mmio_read(VM, 0xE000_0010, 4) == (0xDDCC if profile.straddle is Straddle.SPLIT else 0)


@pytest.mark.req("R-ACC-005")
@pytest.mark.parametrize("profile", STRADDLES, ids=STRADDLE_IDS)
def test_straddle_io_bars(profile: Profile) -> None:
    dm = manager(profile)
    plug_tiny(dm, A, 0xE000_0000, 0x1000)
    plug_tiny(dm, B, 0xE000_0100, 0x1004)
    dm.io_write(VM, 0x1002, 4, 0xDDCC_BBAA)
    a_part, b_part = dm.io_read(VM, 0x1000, 4), dm.io_read(VM, 0x1004, 4)
    assert (a_part, b_part) == {
        Straddle.SPLIT: (0xBBAA_0000, 0xDDCC),
        Straddle.REJECT: (0, 0),
        Straddle.START_ADDRESS: (0xBBAA_0000, 0),
    }[profile.straddle]
    dm.io_write(VM, 0x1000, 4, 0x4433_2211)
    dm.io_write(VM, 0x1004, 4, 0x8877_6655)
    assert (
        dm.io_read(VM, 0x1002, 4)
        == {
            Straddle.SPLIT: 0x6655_4433,
            Straddle.REJECT: 0xFFFF_FFFF,
            Straddle.START_ADDRESS: 0xFFFF_4433,
        }[profile.straddle]
    )
    # Half in an I/O BAR, half unmapped: the unmapped half reads ones in every variant.
    assert (
        dm.io_read(VM, 0x1006, 4)
        == {
            Straddle.SPLIT: 0xFFFF_8877,
            Straddle.REJECT: 0xFFFF_FFFF,
            Straddle.START_ADDRESS: 0xFFFF_8877,
        }[profile.straddle]
    )


@pytest.mark.req("R-ACC-005", "R-ACC-009")
@pytest.mark.parametrize("profile", STRADDLES, ids=STRADDLE_IDS)
def test_straddle_at_the_edge_of_a_small_bar_inside_a_big_one(profile: Profile) -> None:
    """The winner changes mid-access: bytes 0xC-0xF belong to the big BAR, 0x10-0x13 to the small one."""
    dm = manager(profile)
    rec = Recorder()
    dm.plug(VM, B, A100)  # big: 16 MiB at 0xE0000000, higher BDF
    program_bar(dm, VM, B, 0, 0xE000_0000)
    enable(dm, VM, B, CMD_MEM)
    plug_tiny(dm, A, 0xE000_0010, 0x1000, rec)  # small: lower BDF wins where it decodes
    dm.mmio_write(VM, 0xE000_000C, 8, VALUE)
    small = dm.mmio_read(VM, 0xE000_0010, 4)
    enable(dm, VM, A, 0)
    big_low, big_high = dm.mmio_read(VM, 0xE000_000C, 4), dm.mmio_read(VM, 0xE000_0010, 4)
    assert (big_low, small, big_high) == {
        Straddle.SPLIT: (LOW, HIGH, 0),
        Straddle.REJECT: (0, 0, 0),
        Straddle.START_ADDRESS: (LOW, 0, 0),
    }[profile.straddle]


# ------------------------------------------------------------------------- R-ACC-006: absent functions


@pytest.mark.req("R-ACC-006")
def test_absent_function_reads_all_ones_through_all_three_paths() -> None:
    dm = manager()
    dm.plug(VM, Bdf(0, 3, 0), E1000)  # a neighbour, to show only the absent BDF reads ones
    for bdf in (Bdf(0, 3, 1), Bdf(0, 0, 0), Bdf(255, 31, 7), Bdf(1, 3, 0)):
        for offset in (0, 0x3C, 0xFC, 0x100, 0xFFC):
            for width in (1, 2, 4):
                ones = (1 << (8 * width)) - 1
                assert dm.config_read(VM, bdf, offset, width) == ones
                dm.io_write(VM, 0xCF8, 4, 0x8000_0000 | (bdf.packed << 8) | (offset & 0xFC))
                assert dm.io_read(VM, 0xCFC, width) == ones
                assert dm.mmio_read(VM, ECAM + (bdf.packed << 12) + offset, width) == ones
    assert dm.config_read(VM, Bdf(0, 3, 0), 0, 2) == 0x8086


@pytest.mark.req("R-ACC-006")
def test_absent_function_writes_are_dropped_through_all_three_paths() -> None:
    dm = manager()
    dm.plug(VM, Bdf(0, 3, 0), E1000)
    before = state(dm, (Bdf(0, 3, 0),))
    absent = Bdf(0, 3, 1)
    dm.config_write(VM, absent, 0x04, 2, 0x7)
    dm.config_write(VM, absent, 0x10, 4, 0xFEBC_0000)
    dm.io_write(VM, 0xCF8, 4, 0x8000_0000 | (absent.packed << 8) | 0x3C)
    dm.io_write(VM, 0xCFC, 4, 0xFFFF_FFFF)
    dm.mmio_write(VM, ECAM + (absent.packed << 12) + 0x04, 2, 0x7)
    dm.mmio_write(VM, ECAM + (absent.packed << 12) + 0x10, 8, ONES8)
    dm.io_write(VM, 0xCF8, 4, 0)
    assert state(dm, (Bdf(0, 3, 0),)) == before
    assert dm.tables(VM).config == ((Bdf(0, 3, 0), "e1000"),)
    assert dm.config_read(VM, absent, 0, 4) == 0xFFFF_FFFF


# ------------------------------------------------------------------------------ R-ACC-007: byte order


@pytest.mark.req("R-ACC-007")
def test_configuration_values_are_little_endian() -> None:
    dm = manager()
    dm.plug(VM, NIC, E1000)
    assert dm.config_read(VM, NIC, 0x00, 4) == 0x100E_8086
    assert dm.config_read(VM, NIC, 0x00, 2) == 0x8086
    assert dm.config_read(VM, NIC, 0x02, 2) == 0x100E
    assert [dm.config_read(VM, NIC, k, 1) for k in range(4)] == [0x86, 0x80, 0x0E, 0x10]
    assert dm.config_read(VM, NIC, 0x01, 2) == 0x0E80
    dm.config_write(VM, NIC, 0x3C, 4, 0xFFFF_FF5A)  # byte 0x3C: interrupt line; the rest read-only
    assert dm.config_read(VM, NIC, 0x3C, 1) == 0x5A
    assert dm.config_read(VM, NIC, 0x3C, 4) == 0x0000_015A  # interrupt pin 1 at 0x3D
    dm.config_write(VM, NIC, 0x0C, 2, 0x3412)  # cache line size 0x12; latency timer read-only
    assert dm.config_read(VM, NIC, 0x0C, 1) == 0x12
    assert dm.config_read(VM, NIC, 0x0D, 1) == 0


@pytest.mark.req("R-ACC-007")
def test_mmio_and_io_values_are_little_endian(programmed: DataManager) -> None:
    dm = programmed
    dm.mmio_write(VM, 0xFEBC_0100, 8, 0x0807_0605_0403_0201)
    assert [dm.mmio_read(VM, 0xFEBC_0100 + k, 1) for k in range(8)] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert dm.mmio_read(VM, 0xFEBC_0102, 2) == 0x0403
    assert dm.mmio_read(VM, 0xFEBC_0104, 4) == 0x0807_0605
    dm.mmio_write(VM, 0xFEBC_0103, 2, 0xBBAA)
    assert dm.mmio_read(VM, 0xFEBC_0100, 8) == 0x0807_06BB_AA03_0201
    dm.io_write(VM, 0xC010, 4, 0xD4C3_B2A1)
    assert [dm.io_read(VM, 0xC010 + k, 1) for k in range(4)] == [0xA1, 0xB2, 0xC3, 0xD4]
    dm.io_write(VM, 0xC011, 2, 0xEEFF)
    assert dm.io_read(VM, 0xC010, 4) == 0xD4EE_FFA1
    # An access assembled from two runs keeps the byte order (split straddle).
    dm.mmio_write(VM, 0xFEBD_FFFC, 4, 0x4433_2211)
    assert dm.mmio_read(VM, 0xFEBD_FFFE, 4) == 0xFFFF_4433


# ------------------------------------------------------------------------- R-ACC-008: written values


@pytest.mark.req("R-ACC-008")
@pytest.mark.parametrize("width", [1, 2, 4])
def test_values_too_wide_or_not_integers_are_invalid(programmed: DataManager, width: int) -> None:
    dm = programmed
    dm.io_write(VM, 0xC000, 4, 0x1122_3344)
    dm.mmio_write(VM, 0xFEBC_0000, 8, 0x1122_3344_5566_7788)
    before = state(dm, (NIC,))
    top = (1 << (8 * width)) - 1
    for bad in (top + 1, -1, 1 << 64, True, False, 1.0, "1", None):
        with pytest.raises(InvalidArgument):
            dm.config_write(VM, NIC, 0x3C, width, bad)
        with pytest.raises(InvalidArgument):
            dm.io_write(VM, 0xC000, width, bad)
        with pytest.raises(InvalidArgument):
            dm.mmio_write(VM, 0xFEBC_0000, width, bad)
        with pytest.raises(InvalidArgument):
            dm.io_write(VM, 0xCFC, width, bad)
        with pytest.raises(InvalidArgument):
            dm.mmio_write(VM, ECAM + 0x3C, width, bad)
    assert state(dm, (NIC,)) == before
    dm.config_write(VM, NIC, 0x3C, width, top)
    dm.io_write(VM, 0xC000, width, top)
    dm.mmio_write(VM, 0xFEBC_0000, width, top)
    assert dm.config_read(VM, NIC, 0x3C, 1) == 0xFF
    assert dm.io_read(VM, 0xC000, width) == top
    assert dm.mmio_read(VM, 0xFEBC_0000, width) == top


@pytest.mark.req("R-ACC-008")
def test_eight_byte_values_fit_in_64_bits(programmed: DataManager) -> None:
    dm = programmed
    before = state(dm, (NIC,))
    for bad in (1 << 64, -1, True):
        with pytest.raises(InvalidArgument):
            dm.mmio_write(VM, 0xFEBC_0000, 8, bad)
    assert state(dm, (NIC,)) == before
    dm.mmio_write(VM, 0xFEBC_0000, 8, ONES8)
    assert dm.mmio_read(VM, 0xFEBC_0000, 8) == ONES8


@pytest.mark.req("R-ACC-008", "R-ERR-001")
def test_rejected_write_value_to_0xcf8_keeps_it() -> None:
    dm = manager()
    dm.io_write(VM, 0xCF8, 4, 0x8000_0800)
    for bad in (1 << 32, -1, True):
        with pytest.raises(InvalidArgument):
            dm.io_write(VM, 0xCF8, 4, bad)
    assert dm.cf8(VM) == 0x8000_0800


# -------------------------------------------------------------------------- R-ACC-009: what a BAR sees


@pytest.mark.req("R-ACC-009")
def test_behaviour_sees_offsets_from_its_base_for_every_bar_kind() -> None:
    dm = manager()
    rec = Recorder()
    dtype = tiny(rec)
    dm.plug(VM, A, dtype)
    program_bar(dm, VM, A, 0, 0xE000_0000)
    program_bar(dm, VM, A, 1, 0x1000)
    program_bar(dm, VM, A, 2, 0x7_0000_0040)
    program_bar(dm, VM, A, 4, 0xE000_0020)
    enable(dm, VM, A, CMD_IO | CMD_MEM)
    dm.mmio_write(VM, 0xE000_0004, 4, 1)
    dm.io_read(VM, 0x1002, 2)
    dm.mmio_read(VM, 0x7_0000_0048, 8)
    dm.mmio_write(VM, 0xE000_002F, 1, 2)
    dm.mmio_read(VM, 0xE000_0020, 8)
    assert rec.log == [("w", 0, 4, 4), ("r", 1, 2, 2), ("r", 2, 8, 8), ("w", 4, 0xF, 1), ("r", 4, 0, 8)]
    assert_inside(rec, dtype)


@pytest.mark.req("R-ACC-009", "R-ACC-005")
@pytest.mark.parametrize("profile", STRADDLES, ids=STRADDLE_IDS)
def test_behaviour_never_sees_bytes_outside_its_bar(profile: Profile) -> None:
    dm = manager(profile)
    rec = Recorder()
    dtype = tiny(rec)
    dm.plug(VM, A, dtype)
    program_bar(dm, VM, A, 0, 0xE000_0000)
    program_bar(dm, VM, A, 1, 0x1000)
    program_bar(dm, VM, A, 2, 0xE000_0040)
    program_bar(dm, VM, A, 4, 0xE000_0010)
    enable(dm, VM, A, CMD_IO | CMD_MEM)
    for address in range(0xDFFF_FFF8, 0xE000_0058):
        for width in (1, 2, 4, 8):
            dm.mmio_read(VM, address, width)
            dm.mmio_write(VM, address, width, 0)
    for port in range(0xFF8, 0x1008):
        for width in (1, 2, 4):
            dm.io_read(VM, port, width)
            dm.io_write(VM, port, width, 0)
    assert rec.log
    assert_inside(rec, dtype)


@pytest.mark.req("R-ACC-009")
def test_behaviour_is_not_called_for_rom_unmapped_or_losing_bars() -> None:
    dm = manager()
    rec_a, rec_b = Recorder(), Recorder()
    dm.plug(VM, A, E1000)
    program_bar(dm, VM, A, 0, 0xE000_0000)
    dm.config_write(VM, A, 0x30, 4, 0xE004_0001)  # ROM
    enable(dm, VM, A, CMD_MEM)
    plug_tiny(dm, Bdf(0, 9, 0), 0xE000_0000, 0x1000, rec_a)  # overlapped by A (lower BDF)
    dm.plug(VM, Bdf(0, 10, 0), tiny(rec_b))
    program_bar(dm, VM, Bdf(0, 10, 0), 0, 0x2000_0000)
    dm.mmio_read(VM, 0xE000_0000, 8)
    dm.mmio_write(VM, 0xE000_0008, 8, 0)
    assert dm.mmio_read(VM, 0xE004_0000, 2) == 0xAA55
    dm.mmio_write(VM, 0xE004_0000, 2, 0)
    dm.mmio_read(VM, 0x2000_0000, 8)  # BAR0 of tiny-loser does not decode (command zero)
    assert rec_a.log == []
    assert rec_b.log == []
    assert dm.io_read(VM, 0x1000, 4) == 0
    assert rec_a.log == [("r", 1, 0, 4)]


@pytest.mark.req("R-ACC-009", "R-ACC-001")
def test_errors_reach_no_behaviour() -> None:
    dm = manager(NATURAL)
    rec = Recorder()
    plug_tiny(dm, A, 0xE000_0000, 0x1000, rec)
    calls = [
        lambda: dm.mmio_read(VM, 0xE000_0001, 2),
        lambda: dm.mmio_write(VM, 0xE000_0000, 3, 0),
        lambda: dm.mmio_write(VM, 0xE000_0000, 4, 1 << 32),
        lambda: dm.io_write(VM, 0x1002, 4, 0),
        lambda: dm.io_read(VM, 0x1000, 8),
    ]
    for call in calls:
        with pytest.raises(VpcidError):
            call()
    assert rec.log == []
