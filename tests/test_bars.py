"""BARs and the expansion ROM: kinds, type bits, sizing, 64-bit halves, ROM (R-BAR-001..R-BAR-008)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CATALOG_TYPES, VM, enable, program_bar
from hypothesis import given, settings
from hypothesis import strategies as st
from vpcid.model import (
    BarKind,
    BarSpec,
    Bdf,
    DataManager,
    DeviceType,
    DeviceTypeError,
    Profile,
    RomSpec,
    TableEntry,
)
from vpcid.model.catalog import A100, E1000, EDU, NVME

BDF = Bdf(0, 6, 0)


def make_type(name: str, **fields: Any) -> DeviceType:
    base: dict[str, Any] = {"name": name, "vendor_id": 0x1D0F, "device_id": 0x0001, "class_code": 0x058000}
    base.update(fields)
    return DeviceType(**base)


def manager_with(dtype: DeviceType, profile: Profile | None = None) -> DataManager:
    dm = DataManager(profile or Profile())
    dm.create_vm(VM)
    dm.plug(VM, BDF, dtype)
    return dm


def single_bar(kind: BarKind, size: int, prefetchable: bool = False) -> DeviceType:
    bars: tuple[BarSpec | None, ...] = (BarSpec(kind, size, prefetchable),)
    if kind is BarKind.MEM64:
        bars += (None,)
    return make_type(f"{kind.value}-{size:#x}-{int(prefetchable)}", bars=bars)


def type_bits(kind: BarKind, prefetchable: bool) -> int:
    """Independent statement of R-BAR-002."""
    if kind is BarKind.IO:
        return 0b01
    return (0b100 if kind is BarKind.MEM64 else 0b000) | (0b1000 if prefetchable else 0)


def bar_read(dm: DataManager, index: int, bdf: Bdf = BDF) -> int:
    return dm.config_read(VM, bdf, 0x10 + 4 * index, 4)


def bar_write(dm: DataManager, index: int, value: int, bdf: Bdf = BDF) -> None:
    dm.config_write(VM, bdf, 0x10 + 4 * index, 4, value)


SIZES: list[tuple[BarKind, int, bool]] = [
    (BarKind.IO, 4, False),
    (BarKind.IO, 64, False),
    (BarKind.IO, 256, False),
    (BarKind.MEM32, 16, False),
    (BarKind.MEM32, 16, True),
    (BarKind.MEM32, 4096, False),
    (BarKind.MEM32, 1 << 20, True),
    (BarKind.MEM32, 1 << 31, False),
    (BarKind.MEM64, 16, False),
    (BarKind.MEM64, 1 << 20, True),
    (BarKind.MEM64, 1 << 31, False),
    (BarKind.MEM64, 1 << 32, True),
    (BarKind.MEM64, 64 << 30, True),
    (BarKind.MEM64, 1 << 63, False),
]
SIZE_IDS = [f"{k.value}-{s:#x}{'-pf' if p else ''}" for k, s, p in SIZES]


# ------------------------------------------------------------------ R-BAR-001


@pytest.mark.req("R-BAR-001", "R-DT-001")
@pytest.mark.parametrize(
    ("kind", "size", "ok"),
    [
        (BarKind.IO, 2, False),
        (BarKind.IO, 4, True),
        (BarKind.IO, 256, True),
        (BarKind.IO, 512, False),
        (BarKind.IO, 12, False),
        (BarKind.MEM32, 8, False),
        (BarKind.MEM32, 16, True),
        (BarKind.MEM32, 1 << 31, True),
        (BarKind.MEM32, 1 << 32, False),
        (BarKind.MEM32, 0x3000, False),
        (BarKind.MEM64, 8, False),
        (BarKind.MEM64, 16, True),
        (BarKind.MEM64, 1 << 63, True),
        (BarKind.MEM64, 1 << 64, False),
        (BarKind.MEM64, (1 << 40) + (1 << 39), False),
    ],
)
def test_bar_sizes_are_powers_of_two_within_kind_range(kind: BarKind, size: int, ok: bool) -> None:
    if ok:
        single_bar(kind, size)
    else:
        with pytest.raises(DeviceTypeError):
            single_bar(kind, size)


@pytest.mark.req("R-BAR-001", "R-BAR-005")
@pytest.mark.parametrize("slot", [0, 1, 2, 3, 4])
def test_64bit_bar_in_slot_i_uses_registers_i_and_i_plus_1(slot: int) -> None:
    bars: list[BarSpec | None] = [None] * 6
    bars[slot] = BarSpec(BarKind.MEM64, 1 << 20)
    dm = manager_with(make_type(f"slot{slot}", bars=tuple(bars)))
    for i in range(6):
        bar_write(dm, i, 0xFFFFFFFF)
    expected = [0] * 6
    expected[slot], expected[slot + 1] = 0xFFF00004, 0xFFFFFFFF
    assert [bar_read(dm, i) for i in range(6)] == expected
    bar_write(dm, slot, 0x80000000)
    bar_write(dm, slot + 1, 0x00000012)
    enable(dm, VM, BDF, 0x2)
    assert dm.tables(VM).memory == (TableEntry(20, 0x12_8000_0000, 1 << 20, BDF, slot),)


# ------------------------------------------------------------------ R-BAR-002


@pytest.mark.req("R-BAR-002")
@pytest.mark.parametrize(("kind", "size", "pf"), SIZES, ids=SIZE_IDS)
def test_bar_type_bits_are_read_only(kind: BarKind, size: int, pf: bool) -> None:
    dm = manager_with(single_bar(kind, size, pf))
    bits = type_bits(kind, pf)
    low_mask = 0x3 if kind is BarKind.IO else 0xF
    assert bar_read(dm, 0) & low_mask == bits
    for value in (0x0, 0xFFFFFFFF, 0x5, 0xA, 0xF0000003, 0xFFFFFFF0, low_mask ^ bits):
        bar_write(dm, 0, value)
        assert bar_read(dm, 0) & low_mask == bits
        for width, offset in ((1, 0), (2, 0)):
            dm.config_write(VM, BDF, 0x10 + offset, width, value & ((1 << (8 * width)) - 1))
            assert bar_read(dm, 0) & low_mask == bits


# ------------------------------------------------------------------ R-BAR-003


@pytest.mark.req("R-BAR-003", "R-BAR-005", "R-BAR-006")
@pytest.mark.parametrize(("kind", "size", "pf"), SIZES, ids=SIZE_IDS)
def test_writing_all_ones_reads_back_the_size_mask(
    kind: BarKind, size: int, pf: bool, any_profile: Profile
) -> None:
    dm = manager_with(single_bar(kind, size, pf), any_profile)
    bar_write(dm, 0, 0xFFFFFFFF)
    mask = ~(size - 1) & ((1 << 64) - 1)
    assert bar_read(dm, 0) == (mask & 0xFFFFFFFF) | type_bits(kind, pf)
    if kind is BarKind.MEM64:
        assert bar_read(dm, 1) == 0  # upper dword untouched so far
        bar_write(dm, 1, 0xFFFFFFFF)
        assert bar_read(dm, 1) == mask >> 32
        assert bar_read(dm, 0) == (mask & 0xFFFFFFFF) | type_bits(kind, pf)


@pytest.mark.req("R-BAR-003", "R-BAR-005")
def test_64gib_bar_lower_dword_has_no_writable_address_bits() -> None:
    dm = manager_with(A100)
    bar_write(dm, 1, 0xFFFFFFFF)
    bar_write(dm, 2, 0xFFFFFFFF)
    assert bar_read(dm, 1) == 0x0000000C
    assert bar_read(dm, 2) == 0xFFFFFFF0
    bar_write(dm, 1, 0x12345670)
    assert bar_read(dm, 1) == 0x0000000C
    bar_write(dm, 2, 0x0000001F)
    assert bar_read(dm, 2) == 0x00000010


@pytest.mark.req("R-BAR-003")
def test_low_address_bits_below_size_are_dropped() -> None:
    dm = manager_with(single_bar(BarKind.MEM32, 1 << 20))
    bar_write(dm, 0, 0xFE000ABC)
    assert bar_read(dm, 0) == 0xFE000000
    bar_write(dm, 0, 0xFE0FFFFF)
    assert bar_read(dm, 0) == 0xFE000000
    bar_write(dm, 0, 0xFE100000)
    assert bar_read(dm, 0) == 0xFE100000


@pytest.mark.req("R-BAR-003", "R-BAR-005", "R-BAR-006")
@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SIZES), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))
def test_bar_keeps_address_bits_at_and_above_its_size(
    spec: tuple[BarKind, int, bool], low: int, high: int
) -> None:
    kind, size, pf = spec
    dm = manager_with(single_bar(kind, size, pf))
    low_bits = 0x3 if kind is BarKind.IO else 0xF
    bar_write(dm, 0, low)
    assert bar_read(dm, 0) == (low & ~(size - 1) & ~low_bits & 0xFFFFFFFF) | type_bits(kind, pf)
    if kind is BarKind.MEM64:
        bar_write(dm, 1, high)
        assert bar_read(dm, 1) == high & (~(size - 1) >> 32) & 0xFFFFFFFF
    # Any value whose address bits are all ones sizes the BAR.
    bar_write(dm, 0, (~(size - 1) | (low & (size - 1))) & 0xFFFFFFFF)
    assert bar_read(dm, 0) == (~(size - 1) & ~low_bits & 0xFFFFFFFF) | type_bits(kind, pf)


# ------------------------------------------------------------------ R-BAR-004


@pytest.mark.req("R-BAR-004")
@pytest.mark.parametrize("dtype", CATALOG_TYPES, ids=[t.name for t in CATALOG_TYPES])
def test_unimplemented_bar_slots_read_zero_and_ignore_writes(dtype: DeviceType) -> None:
    dm = manager_with(dtype)
    upper_halves = {i + 1 for i in range(6) if (b := dtype.bar(i)) is not None and b.kind is BarKind.MEM64}
    unimplemented = [i for i in range(6) if dtype.bar(i) is None and i not in upper_halves]
    assert unimplemented
    for i in unimplemented:
        assert bar_read(dm, i) == 0
        for value in (0xFFFFFFFF, 0x12345678):
            bar_write(dm, i, value)
            dm.config_write(VM, BDF, 0x10 + 4 * i + 2, 2, 0xFFFF)
            assert bar_read(dm, i) == 0
    for i in upper_halves:  # the slot after a 64-bit BAR is its upper dword, writable
        bar_write(dm, i, 0xFFFFFFFF)
        assert bar_read(dm, i) != 0


@pytest.mark.req("R-BAR-004")
def test_unimplemented_slot_between_implemented_bars_reads_zero() -> None:
    dm = manager_with(
        make_type("gap", bars=(None, BarSpec(BarKind.IO, 16), None, BarSpec(BarKind.MEM32, 256)))
    )
    bar_write(dm, 0, 0xFFFFFFFF)
    bar_write(dm, 2, 0xFFFFFFFF)
    assert [bar_read(dm, i) for i in range(6)] == [0, 0x1, 0, 0x0, 0, 0]
    for i in range(6):
        bar_write(dm, i, 0xFFFFFFFF)
    assert [bar_read(dm, i) for i in range(6)] == [0, 0xFFFFFFF1, 0, 0xFFFFFF00, 0, 0]


# ------------------------------------------------------------------ R-BAR-005


@pytest.mark.req("R-BAR-005")
def test_64bit_bar_address_is_both_dwords_together() -> None:
    dm = manager_with(A100)
    program_bar(dm, VM, BDF, 1, 0x40_0000_0000)
    program_bar(dm, VM, BDF, 3, 0x1_2000_0000)
    assert (bar_read(dm, 1), bar_read(dm, 2)) == (0x0000000C, 0x00000040)
    assert (bar_read(dm, 3), bar_read(dm, 4)) == (0x2000000C, 0x00000001)
    enable(dm, VM, BDF, 0x2)
    entries = {e.bar: e for e in dm.tables(VM).memory}
    assert entries[1] == TableEntry(36, 0x40_0000_0000, 64 << 30, BDF, 1)
    assert entries[3] == TableEntry(25, 0x1_2000_0000, 32 << 20, BDF, 3)
    dm.mmio_write(VM, 0x40_0000_0000 + (5 << 30), 8, 0x0123456789ABCDEF)
    assert dm.mmio_read(VM, 0x40_0000_0000 + (5 << 30), 8) == 0x0123456789ABCDEF
    assert dm.resolve(VM, "memory", 0x4F_FFFF_FFFF) == (BDF, 1)
    assert dm.resolve(VM, "memory", 0x50_0000_0000) is None
    assert dm.resolve(VM, "memory", 0x1_2000_0000) == (BDF, 3)
    assert dm.resolve(VM, "memory", 0x2000_0000) is None  # lower dword alone is not the address


@pytest.mark.req("R-BAR-005")
@pytest.mark.parametrize(
    ("size", "upper_mask"),
    [
        (16, 0xFFFFFFFF),
        (1 << 32, 0xFFFFFFFF),
        (1 << 33, 0xFFFFFFFE),
        (64 << 30, 0xFFFFFFF0),
        (1 << 63, 0x80000000),
    ],
)
def test_upper_dword_writable_bits_follow_the_size(size: int, upper_mask: int) -> None:
    dm = manager_with(single_bar(BarKind.MEM64, size))
    bar_write(dm, 1, 0xFFFFFFFF)
    assert bar_read(dm, 1) == upper_mask
    bar_write(dm, 1, 0)
    assert bar_read(dm, 1) == 0


# ------------------------------------------------------------------ R-BAR-006


@pytest.mark.req("R-BAR-006")
def test_io_bar_is_32_bits_wide_but_decodes_only_below_64k() -> None:
    dm = manager_with(E1000)
    bar_write(dm, 1, 0xFFFFFFFF)
    assert bar_read(dm, 1) == 0xFFFFFFC1
    bar_write(dm, 1, 0x0001C000)
    assert bar_read(dm, 1) == 0x0001C001
    enable(dm, VM, BDF, 0x1)
    assert dm.tables(VM).io == ()
    assert dm.resolve(VM, "io", 0xC000) is None
    assert dm.io_read(VM, 0xC000, 4) == 0xFFFFFFFF
    bar_write(dm, 1, 0x12340000 | 0xC040)
    assert bar_read(dm, 1) == 0x1234C041
    assert dm.tables(VM).io == ()
    bar_write(dm, 1, 0x0000C040)
    assert dm.tables(VM).io == (TableEntry(6, 0xC040, 64, BDF, 1),)
    assert dm.resolve(VM, "io", 0xC07F) == (BDF, 1)
    bar_write(dm, 1, 0x0000FFC0)  # last 64 bytes below 64 KiB: still decodes
    assert dm.tables(VM).io == (TableEntry(6, 0xFFC0, 64, BDF, 1),)


# ------------------------------------------------------------------ R-BAR-007

ROM_TYPE = make_type("rom2k", bars=(BarSpec(BarKind.MEM32, 4096),), rom=RomSpec(2048, b"\x55\xaa\x04"))


@pytest.mark.req("R-BAR-007")
@pytest.mark.parametrize(
    ("dtype", "sizing"), [(E1000, 0xFFFF0001), (ROM_TYPE, 0xFFFFF801)], ids=["64k", "2k"]
)
def test_rom_bar_sizing_enable_bit_and_zero_bits(dtype: DeviceType, sizing: int) -> None:
    dm = manager_with(dtype)
    assert dm.config_read(VM, BDF, 0x30, 4) == 0
    dm.config_write(VM, BDF, 0x30, 4, 0xFFFFFFFF)
    assert dm.config_read(VM, BDF, 0x30, 4) == sizing
    dm.config_write(VM, BDF, 0x30, 4, 0xFFFFFFFE)
    assert dm.config_read(VM, BDF, 0x30, 4) == sizing & ~1
    dm.config_write(VM, BDF, 0x30, 4, 0x000007FE)  # bits 10:1 read as zero
    assert dm.config_read(VM, BDF, 0x30, 4) == 0
    dm.config_write(VM, BDF, 0x30, 4, 0xFEB00001)
    assert dm.config_read(VM, BDF, 0x30, 4) == 0xFEB00001


@pytest.mark.req("R-BAR-007")
def test_rom_decodes_only_with_memory_space_and_enable_bit() -> None:
    dm = manager_with(E1000)
    rom_base = 0xFEB00000
    dm.config_write(VM, BDF, 0x30, 4, rom_base | 1)
    assert dm.tables(VM).memory == ()
    enable(dm, VM, BDF, 0x2)
    assert dm.tables(VM).memory == (TableEntry(16, rom_base, 64 << 10, BDF, 6),)
    assert dm.resolve(VM, "memory", rom_base + 0xFFFF) == (BDF, 6)
    dm.config_write(VM, BDF, 0x30, 4, rom_base)  # enable bit clear
    assert dm.tables(VM).memory == ()
    assert dm.mmio_read(VM, rom_base, 4) == 0xFFFFFFFF
    dm.config_write(VM, BDF, 0x30, 1, 0x01)
    assert dm.tables(VM).memory == (TableEntry(16, rom_base, 64 << 10, BDF, 6),)
    enable(dm, VM, BDF, 0x1)  # I/O space only
    assert dm.tables(VM).memory == ()


@pytest.mark.req("R-BAR-007")
def test_rom_reads_contents_then_zero_and_ignores_writes() -> None:
    dm = manager_with(E1000)
    rom_base = 0xFEB00000
    dm.config_write(VM, BDF, 0x30, 4, rom_base | 1)
    enable(dm, VM, BDF, 0x2)
    contents = E1000.rom.contents if E1000.rom is not None else b""
    assert dm.mmio_read(VM, rom_base, 2) == 0xAA55
    assert dm.mmio_read(VM, rom_base, 8) == int.from_bytes(contents[:8], "little")
    assert dm.mmio_read(VM, rom_base + len(contents) - 4, 8) == int.from_bytes(contents[-4:], "little")
    assert dm.mmio_read(VM, rom_base + 0x100, 8) == 0
    assert dm.mmio_read(VM, rom_base + 0xFFF8, 8) == 0
    before = dm.save(VM, BDF)
    dm.mmio_write(VM, rom_base, 4, 0x12345678)
    dm.mmio_write(VM, rom_base + 0x200, 8, (1 << 64) - 1)
    assert dm.mmio_read(VM, rom_base, 2) == 0xAA55
    assert dm.mmio_read(VM, rom_base + 0x200, 8) == 0
    assert dm.save(VM, BDF) == before


@pytest.mark.req("R-BAR-007")
@pytest.mark.parametrize("dtype", [NVME, EDU, A100], ids=["nvme", "edu", "a100"])
def test_rom_bar_without_rom_reads_zero_and_ignores_writes(dtype: DeviceType) -> None:
    dm = manager_with(dtype)
    for value in (0xFFFFFFFF, 0xFEB00001, 0x1):
        dm.config_write(VM, BDF, 0x30, 4, value)
        assert dm.config_read(VM, BDF, 0x30, 4) == 0
    enable(dm, VM, BDF, 0x2)
    assert all(e.bar != 6 for e in dm.tables(VM).memory)


# ------------------------------------------------------------------ R-BAR-008


def power_on_bars(dtype: DeviceType) -> list[int]:
    values = [0] * 6
    for i in range(6):
        bar = dtype.bar(i)
        if bar is not None:
            values[i] = type_bits(bar.kind, bar.prefetchable)
    return values


@pytest.mark.req("R-BAR-008")
@pytest.mark.parametrize("dtype", CATALOG_TYPES, ids=[t.name for t in CATALOG_TYPES])
def test_bars_read_type_bits_only_at_power_on_and_after_reset(
    dtype: DeviceType, any_profile: Profile
) -> None:
    dm = manager_with(dtype, any_profile)
    assert [bar_read(dm, i) for i in range(6)] == power_on_bars(dtype)
    assert dm.config_read(VM, BDF, 0x30, 4) == 0
    for i in range(6):
        bar_write(dm, i, 0xFEC00000 + i * 0x100000)
    dm.config_write(VM, BDF, 0x30, 4, 0xFE800001)
    enable(dm, VM, BDF, 0x3)
    assert [bar_read(dm, i) for i in range(6)] != power_on_bars(dtype)
    dm.reset(VM, BDF)
    assert [bar_read(dm, i) for i in range(6)] == power_on_bars(dtype)
    assert dm.config_read(VM, BDF, 0x30, 4) == 0
    for i in range(6):
        bar_write(dm, i, 0xFFFFFFFF)
    dm.reset_vm(VM)
    assert [bar_read(dm, i) for i in range(6)] == power_on_bars(dtype)


@pytest.mark.req("R-BAR-008")
def test_replugged_instance_starts_with_power_on_bars() -> None:
    dm = manager_with(E1000)
    program_bar(dm, VM, BDF, 0, 0xFEBC0000)
    dm.config_write(VM, BDF, 0x30, 4, 0xFFFFFFFF)
    dm.unplug(VM, BDF)
    dm.plug(VM, BDF, E1000)
    assert [bar_read(dm, i) for i in range(6)] == [0x0, 0x1, 0, 0, 0, 0]
    assert dm.config_read(VM, BDF, 0x30, 4) == 0
