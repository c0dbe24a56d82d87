"""ECAM: the memory-mapped configuration window (R-ECAM-001..R-ECAM-004)."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import VM, Recorder, enable, program_bar
from vpcid.model import (
    BarKind,
    BarSpec,
    Bdf,
    DataManager,
    DeviceType,
    InvalidArgument,
    Profile,
    Register,
    RegisterClass,
)
from vpcid.model.catalog import A100, E1000, NVME
from vpcid.model.profile import Overlap, Straddle, UnmappedMmioRead

ECAM = 0xB000_0000
WINDOW = 256 << 20
CMD_MEM = 0x2
ONES4, ONES8 = 0xFFFF_FFFF, (1 << 64) - 1


EXPRESS = DeviceType(
    name="express-regs",
    vendor_id=0x1B36,
    device_id=0x0030,
    class_code=0xFF0000,
    registers=(
        Register(0x104, 4, RegisterClass.RW, 0xCAFE_BABE),
        Register(0xFFC, 4, RegisterClass.RO, 0x1234_5678),
    ),
    express=True,
)

TWO_BARS = DeviceType(
    name="two-bars",
    vendor_id=0x1B36,
    device_id=0x0040,
    class_code=0xFF0000,
    bars=(BarSpec(BarKind.MEM32, 16), BarSpec(BarKind.MEM32, 16)),
)


def huge(rec: Recorder | None = None, size: int = 1 << 31) -> DeviceType:
    """One 32-bit memory BAR of ``size`` (default 2 GiB)."""
    return DeviceType(
        name=f"huge-{size:#x}",
        vendor_id=0x1B36,
        device_id=0x0041,
        class_code=0xFF0000,
        bars=(BarSpec(BarKind.MEM32, size),),
        behaviour=rec,
    )


def manager(profile: Profile | None = None, ecam_base: int | None = ECAM) -> DataManager:
    dm = DataManager(profile or Profile())
    dm.create_vm(VM, ecam_base=ecam_base)
    return dm


def ecam(bdf: Bdf, offset: int, base: int = ECAM) -> int:
    return base + (bdf.bus << 20 | bdf.device << 15 | bdf.function << 12 | offset)


# ----------------------------------------------------------------------------- R-ECAM-001: the window


@pytest.mark.req("R-ECAM-001")
def test_default_window_is_256_mib_at_0xb0000000() -> None:
    dm = manager(ecam_base=ECAM)
    dm.plug(VM, Bdf(0, 0, 0), E1000)
    dm.plug(VM, Bdf(255, 31, 7), NVME)
    default = DataManager()
    default.create_vm(VM)  # no ecam_base argument
    default.plug(VM, Bdf(0, 0, 0), E1000)
    for m in (dm, default):
        assert m.mmio_read(VM, ECAM, 4) == 0x100E_8086
        assert m.mmio_read(VM, ECAM - 4, 4) == ONES4
        assert m.mmio_read(VM, ECAM + WINDOW, 4) == ONES4
    assert dm.mmio_read(VM, ECAM + WINDOW - 0x1000, 4) == 0xA808_144D  # ff:1f.7 offset 0
    assert dm.mmio_read(VM, ECAM + WINDOW - 4, 4) == 0  # ff:1f.7 offset 0xFFC (unclaimed)
    assert dm.mmio_read(VM, ECAM + WINDOW - 8, 8) == 0
    assert dm.mmio_read(VM, ECAM + WINDOW - 4, 8) == ONES8 << 32 & ONES8  # last dword, then unmapped


@pytest.mark.req("R-ECAM-001")
@pytest.mark.parametrize("base", [0xE000_0000, 0x10_0000_0000, (1 << 64) - WINDOW, 0])
def test_window_at_any_256_mib_aligned_base(base: int) -> None:
    dm = manager(ecam_base=base)
    dm.plug(VM, Bdf(2, 3, 4), E1000)
    assert dm.mmio_read(VM, ecam(Bdf(2, 3, 4), 0, base), 4) == 0x100E_8086
    dm.mmio_write(VM, ecam(Bdf(2, 3, 4), 0x3C, base), 1, 0x0E)
    assert dm.config_read(VM, Bdf(2, 3, 4), 0x3C, 1) == 0x0E
    assert dm.mmio_read(VM, base + WINDOW - 4, 4) == ONES4  # ff:1f.7 absent
    if base != ECAM:
        assert dm.mmio_read(VM, ecam(Bdf(2, 3, 4), 0), 4) == ONES4  # nothing at the default address


@pytest.mark.req("R-ECAM-001", "R-ACC-004")
@pytest.mark.parametrize(("unmapped", "fill"), [(UnmappedMmioRead.ONES, ONES8), (UnmappedMmioRead.ZEROS, 0)])
def test_vm_without_ecam_treats_the_range_as_unmapped(unmapped: UnmappedMmioRead, fill: int) -> None:
    dm = manager(Profile(unmapped_mmio_read=unmapped), ecam_base=None)
    nic = Bdf(0, 0, 0)
    dm.plug(VM, nic, E1000)
    assert dm.mmio_read(VM, ECAM, 8) == fill
    assert dm.mmio_read(VM, ecam(nic, 0x3C), 1) == fill & 0xFF
    dm.mmio_write(VM, ecam(nic, 0x3C), 1, 0x0E)
    dm.mmio_write(VM, ecam(nic, 0x04), 2, CMD_MEM)
    assert dm.config_read(VM, nic, 0x3C, 1) == 0
    assert dm.config_read(VM, nic, 0x04, 2) == 0
    # Mechanism #1 still works.
    dm.io_write(VM, 0xCF8, 4, 0x8000_0000)
    assert dm.io_read(VM, 0xCFC, 4) == 0x100E_8086


@pytest.mark.req("R-ECAM-001", "R-ECAM-004")
def test_vm_without_ecam_lets_a_bar_there_receive_accesses() -> None:
    rec = Recorder()
    dm = manager(ecam_base=None)
    dev = Bdf(0, 1, 0)
    dm.plug(VM, dev, huge(rec, 256 << 20))
    program_bar(dm, VM, dev, 0, ECAM)
    enable(dm, VM, dev, CMD_MEM)
    dm.mmio_write(VM, ECAM + 0x8000, 4, 0x1234_5678)
    assert dm.mmio_read(VM, ECAM + 0x8000, 4) == 0x1234_5678
    assert rec.log == [("w", 0, 0x8000, 4), ("r", 0, 0x8000, 4)]


@pytest.mark.req("R-ECAM-001")
@pytest.mark.parametrize(
    "base",
    [
        0xB000_1000,
        0xB800_0000,
        0x1,
        0x0800_0000,
        (1 << 64) - (128 << 20),
        1 << 64,
        -WINDOW,
        True,
        float(ECAM),
    ],
)
def test_create_vm_rejects_a_bad_ecam_base(base: object) -> None:
    dm = DataManager()
    dm.create_vm(7)
    with pytest.raises(InvalidArgument):
        dm.create_vm(VM, ecam_base=base)  # type: ignore[arg-type]
    assert dm.vm_ids() == (7,)
    dm.create_vm(VM, ecam_base=0xC000_0000)
    assert dm.vm_ids() == (VM, 7)


# -------------------------------------------------------------------------- R-ECAM-002: addressing


@pytest.mark.req("R-ECAM-002")
def test_ecam_offset_bits_select_bus_device_function_register() -> None:
    dm = manager()
    placed = {
        Bdf(0, 0, 1): E1000,
        Bdf(0, 1, 0): NVME,
        Bdf(1, 0, 0): A100,
        Bdf(0xAB, 0x15, 5): E1000,
        Bdf(0x80, 0x10, 0): EXPRESS,
    }
    for bdf, dtype in placed.items():
        dm.plug(VM, bdf, dtype)
    for bdf, dtype in placed.items():
        assert dm.mmio_read(VM, ecam(bdf, 0x00), 4) == dtype.device_id << 16 | dtype.vendor_id
        assert dm.mmio_read(VM, ecam(bdf, 0x08), 4) == dtype.class_code << 8 | dtype.revision
        assert dm.mmio_read(VM, ecam(bdf, 0x2E), 2) == dtype.subsystem_id
        for offset in range(0, 0x100, 4):
            assert dm.mmio_read(VM, ecam(bdf, offset), 4) == dm.config_read(VM, bdf, offset, 4)
    for absent in (Bdf(0, 0, 0), Bdf(0, 0, 2), Bdf(0, 2, 0), Bdf(2, 0, 0), Bdf(0xAB, 0x15, 4)):
        assert dm.mmio_read(VM, ecam(absent, 0), 4) == ONES4


@pytest.mark.req("R-ECAM-002", "R-CFG-009")
def test_ecam_reaches_the_whole_4_kib_of_a_function() -> None:
    dm = manager()
    express, conventional = Bdf(0, 4, 0), Bdf(0, 5, 0)
    dm.plug(VM, express, EXPRESS)
    dm.plug(VM, conventional, E1000)
    assert dm.mmio_read(VM, ecam(express, 0x104), 4) == 0xCAFE_BABE
    assert dm.mmio_read(VM, ecam(express, 0xFFC), 4) == 0x1234_5678
    assert dm.mmio_read(VM, ecam(express, 0xFFF), 1) == 0x12
    dm.mmio_write(VM, ecam(express, 0x106), 2, 0x0BAD)
    assert dm.config_read(VM, express, 0x104, 4) == 0x0BAD_BABE
    assert dm.mmio_read(VM, ecam(conventional, 0x100), 4) == ONES4
    assert dm.mmio_read(VM, ecam(conventional, 0xFFC), 4) == ONES4
    dm.mmio_write(VM, ecam(conventional, 0x13C), 1, 0x05)  # dropped, not aliased to 0x3C
    assert dm.config_read(VM, conventional, 0x3C, 1) == 0


@pytest.mark.req("R-ECAM-002", "R-ACC-006")
def test_ecam_absent_functions_read_ones_and_drop_writes() -> None:
    dm = manager()
    present = Bdf(0, 3, 0)
    dm.plug(VM, present, E1000)
    absent = Bdf(0, 3, 1)
    before = (dm.tables(VM), dm.save(VM, present))
    for width in (1, 2, 4, 8):
        for offset in (0, 0x3C, 0xFF8):
            assert dm.mmio_read(VM, ecam(absent, offset), width) == (1 << (8 * width)) - 1
            dm.mmio_write(VM, ecam(absent, offset), width, 0)
    assert (dm.tables(VM), dm.save(VM, present)) == before


# ----------------------------------------------------------------------- R-ECAM-003: split per dword


@pytest.mark.req("R-ECAM-003", "R-ACC-007")
def test_eight_byte_read_is_two_dwords() -> None:
    dm = manager()
    nic = Bdf(0, 2, 0)
    dm.plug(VM, nic, E1000)
    dm.config_write(VM, nic, 0x3C, 1, 0x0B)
    assert dm.mmio_read(VM, ecam(nic, 0x00), 8) == 0x0010_0000 << 32 | 0x100E_8086
    assert dm.mmio_read(VM, ecam(nic, 0x38), 8) == 0x0000_010B << 32
    # Unaligned: parts of three dwords.
    assert dm.mmio_read(VM, ecam(nic, 0x02), 8) == 0x0002_0010_0000_100E
    assert dm.mmio_read(VM, ecam(nic, 0x02), 4) == 0x0000_100E
    assert dm.mmio_read(VM, ecam(nic, 0x3B), 2) == 0x0B00


@pytest.mark.req("R-ECAM-003")
def test_eight_byte_access_across_two_functions() -> None:
    dm = manager()
    dm.plug(VM, Bdf(0, 2, 1), E1000)
    dm.plug(VM, Bdf(0, 3, 0), NVME)
    # Last dword of 00:02.0 (absent) and first of 00:02.1.
    assert dm.mmio_read(VM, ecam(Bdf(0, 2, 0), 0xFFC), 8) == 0x100E_8086 << 32 | ONES4
    # Last dword of 00:02.7 (absent) and first of 00:03.0: the device field carries.
    assert dm.mmio_read(VM, ecam(Bdf(0, 2, 7), 0xFFC), 8) == 0xA808_144D << 32 | ONES4
    # Last dword of 00:02.1 (past its 256 bytes) and first of 00:02.2 (absent).
    assert dm.mmio_read(VM, ecam(Bdf(0, 2, 1), 0xFFC), 8) == ONES8
    dm.mmio_write(VM, ecam(Bdf(0, 2, 0), 0xFFC), 8, 0)  # upper dword: vendor/device, read-only
    assert dm.config_read(VM, Bdf(0, 2, 1), 0, 4) == 0x100E_8086


@pytest.mark.req("R-ECAM-003", "R-ACC-005")
@pytest.mark.parametrize("straddle", list(Straddle), ids=lambda s: s.value)
def test_access_across_functions_is_one_target_whatever_the_straddle_variant(straddle: Straddle) -> None:
    """The whole window is one target (R-ACC-005), so crossing functions inside it never straddles."""
    dm = manager(Profile(straddle=straddle))
    dm.plug(VM, Bdf(0, 2, 0), dataclasses.replace(NVME, name="nvme-mf", multifunction=True))  # R-MF-001
    dm.plug(VM, Bdf(0, 2, 1), E1000)
    assert dm.mmio_read(VM, ecam(Bdf(0, 2, 0), 0xFFC), 8) == 0x100E_8086 << 32
    dm.mmio_write(VM, ecam(Bdf(0, 2, 1), 0x3A), 4, 0x0D0C_0000)  # 00:02.1 bytes 0x3A-0x3D
    assert dm.config_read(VM, Bdf(0, 2, 1), 0x3C, 1) == 0x0C


@pytest.mark.req("R-ECAM-003", "R-ACC-007")
def test_writes_split_at_dword_boundaries() -> None:
    dm = manager()
    nic = Bdf(0, 2, 0)
    dm.plug(VM, nic, E1000)
    dm.mmio_write(VM, ecam(nic, 0x3B), 2, 0x0A00)  # 0x3B (read-only) then 0x3C
    assert dm.config_read(VM, nic, 0x3C, 1) == 0x0A
    dm.mmio_write(VM, ecam(nic, 0x0C), 8, 0x0000_0000_0000_0020)  # cache line size; BAR0 zero
    assert dm.config_read(VM, nic, 0x0C, 1) == 0x20
    dm.mmio_write(VM, ecam(nic, 0x10), 8, 0x0000_C001_FEBC_0000)  # BAR0 and BAR1 in one access
    assert dm.config_read(VM, nic, 0x10, 4) == 0xFEBC_0000
    assert dm.config_read(VM, nic, 0x14, 4) == 0xC001
    dm.mmio_write(VM, ecam(nic, 0x04), 2, 0x3)
    assert dm.resolve(VM, "memory", 0xFEBC_0000) == (nic, 0)
    assert dm.resolve(VM, "io", 0xC000) == (nic, 1)


@pytest.mark.req("R-ECAM-003", "R-DEC-008")
@pytest.mark.parametrize("overlap", list(Overlap), ids=lambda o: o.value)
def test_eight_byte_write_is_lower_dword_first(overlap: Overlap) -> None:
    """Two 16-byte BARs written to one address by one 8-byte access: under last-mapped the BAR
    written second (BAR1, the upper dword) decodes there; under lowest-bdf BAR0 always does."""
    dm = manager(Profile(overlap=overlap))
    dev = Bdf(0, 6, 0)
    dm.plug(VM, dev, TWO_BARS)
    enable(dm, VM, dev, CMD_MEM)
    dm.mmio_write(VM, ecam(dev, 0x10), 8, 0xE000_0000 << 32 | 0xE000_0000)
    winner = 1 if overlap is Overlap.LAST_MAPPED else 0
    assert dm.resolve(VM, "memory", 0xE000_0000) == (dev, winner)
    # Control: the same BARs written upper dword first.
    dm.mmio_write(VM, ecam(dev, 0x10), 8, 0)
    dm.mmio_write(VM, ecam(dev, 0x14), 4, 0xE000_0000)
    dm.mmio_write(VM, ecam(dev, 0x10), 4, 0xE000_0000)
    assert dm.resolve(VM, "memory", 0xE000_0000) == (dev, 1 if overlap is Overlap.FIRST_MAPPED else 0)


@pytest.mark.req("R-ECAM-003", "R-DEC-007")
def test_eight_byte_write_to_a_64bit_bar() -> None:
    dm = manager()
    gpu = Bdf(0, 7, 0)
    dm.plug(VM, gpu, A100)
    enable(dm, VM, gpu, CMD_MEM)
    dm.mmio_write(VM, ecam(gpu, 0x14), 8, 0x40_0000_000C)
    assert dm.config_read(VM, gpu, 0x14, 4) == 0x0000_000C
    assert dm.config_read(VM, gpu, 0x18, 4) == 0x40
    assert {(e.bar, e.base) for e in dm.tables(VM).memory} == {(1, 0x40_0000_0000)}


# ----------------------------------------------------------------------- R-ECAM-004: ECAM comes first


@pytest.mark.req("R-ECAM-004")
def test_memory_bar_inside_the_window_never_receives_accesses() -> None:
    rec = Recorder()
    dm = manager()
    dev, nic = Bdf(0, 1, 0), Bdf(1, 0, 0)
    dm.plug(VM, dev, huge(rec, 1 << 20))
    dm.plug(VM, nic, E1000)
    program_bar(dm, VM, dev, 0, ECAM + (1 << 20))  # bus 1 of the window
    enable(dm, VM, dev, CMD_MEM)
    assert dm.resolve(VM, "memory", ECAM + (1 << 20)) == (dev, 0)  # it does decode (R-DS-009)
    assert dm.mmio_read(VM, ECAM + (1 << 20), 4) == 0x100E_8086  # but ECAM answers: 01:00.0
    dm.mmio_write(VM, ECAM + (1 << 20) + 0x3C, 4, 0x0000_00AA)
    assert dm.config_read(VM, nic, 0x3C, 1) == 0xAA
    dm.mmio_read(VM, ECAM + (1 << 20) + 0x8000, 8)  # 01:01.0 absent: ones, still not the BAR
    dm.mmio_write(VM, ECAM + (1 << 20) + 0x8000, 8, ONES8)
    assert rec.log == []
    # Moved out of the window, the BAR shows it never saw those writes.
    program_bar(dm, VM, dev, 0, 0xE000_0000)
    assert dm.mmio_read(VM, 0xE000_0000 + 0x3C, 4) == 0
    assert dm.mmio_read(VM, 0xE000_0000 + 0x8000, 8) == 0


@pytest.mark.req("R-ECAM-004", "R-ACC-005")
@pytest.mark.parametrize("straddle", list(Straddle), ids=lambda s: s.value)
def test_bar_covering_the_whole_window_is_split_around_it(straddle: Straddle) -> None:
    """A 2 GiB BAR at 0x80000000 covers the window 0xB0000000-0xBFFFFFFF and beyond on both sides."""
    rec = Recorder()
    dm = manager(Profile(straddle=straddle))
    dev, first = Bdf(0, 1, 0), Bdf(0, 0, 0)
    dm.plug(VM, dev, huge(rec))
    dm.plug(VM, first, E1000)
    program_bar(dm, VM, dev, 0, 0x8000_0000)
    enable(dm, VM, dev, CMD_MEM)
    dm.mmio_write(VM, ECAM - 4, 4, 0x4433_2211)  # BAR offset 0x2FFFFFFC
    dm.mmio_write(VM, ECAM + WINDOW, 4, 0x8877_6655)  # BAR offset 0x40000000
    rec.log.clear()
    below = dm.mmio_read(VM, ECAM - 4, 8)  # BAR, then 00:00.0 offset 0
    above = dm.mmio_read(VM, ECAM + WINDOW - 4, 8)  # ff:1f.7 offset 0xFFC (absent), then BAR
    if straddle is Straddle.SPLIT:
        assert below == 0x100E_8086 << 32 | 0x4433_2211
        assert above == 0x8877_6655 << 32 | ONES4
        assert rec.log == [("r", 0, 0x2FFF_FFFC, 4), ("r", 0, 0x4000_0000, 4)]
    elif straddle is Straddle.REJECT:
        assert below == ONES8
        assert above == ONES8
        assert rec.log == []
    else:
        assert below == ONES4 << 32 | 0x4433_2211
        assert above == ONES8
        assert rec.log == [("r", 0, 0x2FFF_FFFC, 4)]
    for address in (ECAM, ECAM + 0x1000, ECAM + WINDOW // 2, ECAM + WINDOW - 8):
        rec.log.clear()
        dm.mmio_read(VM, address, 8)
        dm.mmio_write(VM, address, 8, 0)
        assert rec.log == []
