"""Decode and routing: which BAR decodes where, and when the tables change (R-DEC-001..R-DEC-010)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import NIC, VM, enable, program_bar
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vpcid.model import BarKind, BarSpec, Bdf, DataManager, DeviceType, Profile, RomSpec, TableEntry
from vpcid.model.catalog import A100, E1000
from vpcid.model.profile import BarMoveWhileDecoding, Overlap

CMD_IO, CMD_MEM, CMD_BUS_MASTER = 0x1, 0x2, 0x4
ROM = 6

IMMEDIATE = Profile()
DEFERRED = Profile(bar_move_while_decoding=BarMoveWhileDecoding.DEFERRED)
IGNORED = Profile(bar_move_while_decoding=BarMoveWhileDecoding.IGNORED)
LAST_MAPPED = Profile(overlap=Overlap.LAST_MAPPED)

MULTI = DeviceType(
    name="multi",
    vendor_id=0x1B36,
    device_id=0x0010,
    class_code=0xFF0000,
    bars=(
        BarSpec(BarKind.MEM32, 16),
        BarSpec(BarKind.IO, 4),
        BarSpec(BarKind.MEM64, 16),
        None,
        BarSpec(BarKind.MEM32, 16),
    ),
    rom=RomSpec(2048, b"\x55\xaa\x01"),
)
"""One BAR of every kind, all tiny, plus a 2 KiB ROM: BAR0 mem32, BAR1 io, BAR2 mem64, BAR4 mem32."""

BIG_IO = DeviceType(
    name="big-io",
    vendor_id=0x1B36,
    device_id=0x0011,
    class_code=0xFF0000,
    bars=(BarSpec(BarKind.IO, 256), BarSpec(BarKind.MEM64, 1 << 32), None),
)
"""A 256-byte I/O BAR and a 4 GiB 64-bit BAR (upper dword partly masked)."""

A, B, C = Bdf(0, 1, 0), Bdf(0, 2, 0), Bdf(0, 3, 0)


def manager(profile: Profile = IMMEDIATE) -> DataManager:
    dm = DataManager(profile)
    dm.create_vm(VM)
    return dm


def mem(dm: DataManager, address: int) -> tuple[Bdf, int] | None:
    return dm.resolve(VM, "memory", address)


def io(dm: DataManager, port: int) -> tuple[Bdf, int] | None:
    return dm.resolve(VM, "io", port)


def rom_bar(dm: DataManager, bdf: Bdf, value: int) -> None:
    dm.config_write(VM, bdf, 0x30, 4, value)


def decoding(dm: DataManager) -> set[tuple[str, Bdf, int, int]]:
    """Every table entry as (space, bdf, bar, base)."""
    t = dm.tables(VM)
    return {("io", e.bdf, e.bar, e.base) for e in t.io} | {("mem", e.bdf, e.bar, e.base) for e in t.memory}


def multi_programmed(dm: DataManager, bdf: Bdf = A, command: int = 0) -> None:
    """MULTI at ``bdf``: BAR0 0xE0000000, BAR1 port 0x1000, BAR2 0x1_0000_0000, BAR4 0xE0000100,
    ROM 0xE0001000 (enabled); command as given."""
    dm.plug(VM, bdf, MULTI)
    program_bar(dm, VM, bdf, 0, 0xE000_0000)
    program_bar(dm, VM, bdf, 1, 0x1000)
    program_bar(dm, VM, bdf, 2, 0x1_0000_0000)
    program_bar(dm, VM, bdf, 4, 0xE000_0100)
    rom_bar(dm, bdf, 0xE000_1000 | 1)
    if command:
        enable(dm, VM, bdf, command)


# ----------------------------------------------------------------- R-DEC-001..R-DEC-003: enable bits


@pytest.mark.req("R-DEC-001", "R-DEC-002", "R-DEC-003")
@pytest.mark.parametrize("command", [0, CMD_IO, CMD_MEM, CMD_IO | CMD_MEM, CMD_BUS_MASTER, 0x507])
@pytest.mark.parametrize("rom_enable", [0, 1])
def test_each_bar_kind_decodes_only_with_its_enable_bit(command: int, rom_enable: int) -> None:
    dm = manager()
    multi_programmed(dm, A)
    rom_bar(dm, A, 0xE000_1000 | rom_enable)
    enable(dm, VM, A, command)
    expected: set[tuple[str, Bdf, int, int]] = set()
    if command & CMD_IO:
        expected.add(("io", A, 1, 0x1000))
    if command & CMD_MEM:
        expected |= {("mem", A, 0, 0xE000_0000), ("mem", A, 2, 0x1_0000_0000), ("mem", A, 4, 0xE000_0100)}
        if rom_enable:
            expected.add(("mem", A, ROM, 0xE000_1000))
    assert decoding(dm) == expected
    assert io(dm, 0x1003) == ((A, 1) if command & CMD_IO else None)
    assert mem(dm, 0xE000_000F) == ((A, 0) if command & CMD_MEM else None)
    assert mem(dm, 0xE000_17FF) == ((A, ROM) if command & CMD_MEM and rom_enable else None)


@pytest.mark.req("R-DEC-001")
def test_io_bar_accesses_reach_it_only_while_io_space_enabled(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 1, 0xC000)
    enable(dm, VM, NIC, CMD_MEM | CMD_BUS_MASTER)
    dm.io_write(VM, 0xC000, 4, 0x12345678)  # dropped: nothing decodes
    assert dm.io_read(VM, 0xC000, 4) == 0xFFFF_FFFF
    enable(dm, VM, NIC, CMD_IO)
    assert dm.tables(VM).io == (TableEntry(6, 0xC000, 64, NIC, 1),)
    assert dm.io_read(VM, 0xC000, 4) == 0  # the earlier write never reached the BAR
    dm.io_write(VM, 0xC03C, 4, 0xA5A5_5A5A)
    assert dm.io_read(VM, 0xC03C, 4) == 0xA5A5_5A5A
    enable(dm, VM, NIC, 0)
    assert dm.tables(VM).io == ()
    assert dm.io_read(VM, 0xC03C, 4) == 0xFFFF_FFFF
    enable(dm, VM, NIC, CMD_IO)
    assert dm.io_read(VM, 0xC03C, 4) == 0xA5A5_5A5A


@pytest.mark.req("R-DEC-002")
@pytest.mark.parametrize("dtype", [E1000, A100], ids=["mem32", "mem64"])
def test_memory_bars_need_memory_space(dtype: DeviceType) -> None:
    dm = manager()
    dm.plug(VM, A, dtype)
    index = 0 if dtype is E1000 else 1  # A100 BAR1 is the 64 GiB 64-bit BAR
    base = 0xFEBC_0000 if dtype is E1000 else 0x40_0000_0000
    program_bar(dm, VM, A, index, base)
    enable(dm, VM, A, CMD_IO | CMD_BUS_MASTER)
    assert mem(dm, base) is None
    assert dm.mmio_read(VM, base, 4) == 0xFFFF_FFFF
    enable(dm, VM, A, CMD_MEM)
    assert mem(dm, base) == (A, index)
    dm.mmio_write(VM, base + 8, 8, 0x0102_0304_0506_0708)
    assert dm.mmio_read(VM, base + 8, 8) == 0x0102_0304_0506_0708
    enable(dm, VM, A, CMD_IO)
    assert mem(dm, base) is None
    assert dm.tables(VM).memory == ()


@pytest.mark.req("R-DEC-003")
@pytest.mark.parametrize(
    ("command", "rom_value", "decodes"),
    [
        (0, 0xFEB0_0000, False),
        (CMD_MEM, 0xFEB0_0000, False),
        (0, 0xFEB0_0001, False),
        (CMD_IO | CMD_BUS_MASTER, 0xFEB0_0001, False),
        (CMD_MEM, 0xFEB0_0001, True),
    ],
)
def test_rom_needs_memory_space_and_its_enable_bit(command: int, rom_value: int, decodes: bool) -> None:
    dm = manager()
    dm.plug(VM, NIC, E1000)
    rom_bar(dm, NIC, rom_value)
    enable(dm, VM, NIC, command)
    assert dm.config_read(VM, NIC, 0x30, 4) == rom_value
    if decodes:
        assert mem(dm, 0xFEB0_0000) == (NIC, ROM)
        assert dm.tables(VM).memory == (TableEntry(16, 0xFEB0_0000, 64 << 10, NIC, ROM),)
        assert dm.mmio_read(VM, 0xFEB0_0000, 2) == 0xAA55
    else:
        assert mem(dm, 0xFEB0_0000) is None
        assert dm.tables(VM).memory == ()
        assert dm.mmio_read(VM, 0xFEB0_0000, 2) == 0xFFFF


@pytest.mark.req("R-DEC-003")
def test_rom_stops_decoding_when_either_bit_clears(dm: DataManager) -> None:
    dm.plug(VM, NIC, E1000)
    rom_bar(dm, NIC, 0xFEB0_0001)
    enable(dm, VM, NIC, CMD_MEM)
    assert mem(dm, 0xFEB0_0000) == (NIC, ROM)
    rom_bar(dm, NIC, 0xFEB0_0000)
    assert mem(dm, 0xFEB0_0000) is None
    rom_bar(dm, NIC, 0xFEB0_0001)
    assert mem(dm, 0xFEB0_0000) == (NIC, ROM)
    enable(dm, VM, NIC, CMD_IO)
    assert mem(dm, 0xFEB0_0000) is None


# ----------------------------------------------------------------------- R-DEC-004: address zero


@pytest.mark.req("R-DEC-004")
def test_bars_at_address_zero_never_decode() -> None:
    dm = manager()
    dm.plug(VM, A, MULTI)
    rom_bar(dm, A, 0x1)  # ROM enabled at address 0
    enable(dm, VM, A, CMD_IO | CMD_MEM)
    assert dm.config_read(VM, A, 0x30, 4) == 0x1
    assert decoding(dm) == set()
    assert io(dm, 0) is None
    assert mem(dm, 0) is None
    assert dm.io_read(VM, 0, 4) == 0xFFFF_FFFF
    assert dm.mmio_read(VM, 0, 8) == (1 << 64) - 1


@pytest.mark.req("R-DEC-004")
def test_moving_a_bar_to_zero_stops_decode_and_64bit_zero_needs_both_halves() -> None:
    dm = manager()
    multi_programmed(dm, A, CMD_IO | CMD_MEM)
    program_bar(dm, VM, A, 0, 0)
    program_bar(dm, VM, A, 1, 0)
    rom_bar(dm, A, 0x1)
    assert decoding(dm) == {("mem", A, 2, 0x1_0000_0000), ("mem", A, 4, 0xE000_0100)}
    # 64-bit BAR: lower dword zero but upper dword non-zero is a non-zero address.
    dm.config_write(VM, A, 0x18, 4, 0)
    assert mem(dm, 0x1_0000_0000) == (A, 2)
    dm.config_write(VM, A, 0x1C, 4, 0)
    assert mem(dm, 0) is None
    assert decoding(dm) == {("mem", A, 4, 0xE000_0100)}


# ------------------------------------------------------------- R-DEC-005: writing a decoding BAR


@pytest.mark.req("R-DEC-005")
def test_immediate_bars_move_at_once() -> None:
    dm = manager(IMMEDIATE)
    multi_programmed(dm, A, CMD_IO | CMD_MEM)
    dm.mmio_write(VM, 0xE000_0000, 4, 0xDEADBEEF)
    program_bar(dm, VM, A, 0, 0xE000_0200)
    program_bar(dm, VM, A, 1, 0x2000)
    dm.config_write(VM, A, 0x18, 4, 0x2000_0000)  # lower dword of the 64-bit BAR only
    rom_bar(dm, A, 0xE000_2000 | 1)
    assert decoding(dm) == {
        ("mem", A, 0, 0xE000_0200),
        ("io", A, 1, 0x2000),
        ("mem", A, 2, 0x1_2000_0000),
        ("mem", A, 4, 0xE000_0100),
        ("mem", A, ROM, 0xE000_2000),
    }
    assert mem(dm, 0xE000_0000) is None
    assert io(dm, 0x1000) is None
    assert mem(dm, 0x1_0000_0000) is None
    assert mem(dm, 0xE000_1000) is None
    assert dm.mmio_read(VM, 0xE000_0200, 4) == 0xDEADBEEF  # the BAR's contents moved with it
    assert dm.mmio_read(VM, 0xE000_0000, 4) == 0xFFFF_FFFF


@pytest.mark.req("R-DEC-005")
def test_deferred_memory_bar_keeps_decoding_until_re_enabled() -> None:
    dm = manager(DEFERRED)
    multi_programmed(dm, A, CMD_IO | CMD_MEM)
    program_bar(dm, VM, A, 0, 0xE000_0200)
    assert dm.config_read(VM, A, 0x10, 4) == 0xE000_0200
    assert mem(dm, 0xE000_0000) == (A, 0)
    assert mem(dm, 0xE000_0200) is None
    dm.mmio_write(VM, 0xE000_0004, 4, 0x11223344)  # reaches the BAR at its old address
    # Toggling I/O space does not re-enable memory decode: the BAR stays.
    enable(dm, VM, A, CMD_MEM)
    enable(dm, VM, A, CMD_MEM | CMD_IO)
    assert mem(dm, 0xE000_0000) == (A, 0)
    enable(dm, VM, A, CMD_IO)
    assert mem(dm, 0xE000_0000) is None
    assert mem(dm, 0xE000_0200) is None
    enable(dm, VM, A, CMD_IO | CMD_MEM)
    assert mem(dm, 0xE000_0200) == (A, 0)
    assert mem(dm, 0xE000_0000) is None
    assert dm.mmio_read(VM, 0xE000_0204, 4) == 0x11223344


@pytest.mark.req("R-DEC-005")
def test_deferred_io_bar_moves_only_when_io_decode_is_re_enabled() -> None:
    dm = manager(DEFERRED)
    multi_programmed(dm, A, CMD_IO | CMD_MEM)
    program_bar(dm, VM, A, 1, 0x2000)
    assert io(dm, 0x1000) == (A, 1)
    enable(dm, VM, A, CMD_IO)  # memory off: I/O decode stays enabled
    enable(dm, VM, A, CMD_IO | CMD_MEM)
    assert io(dm, 0x1000) == (A, 1)
    assert io(dm, 0x2000) is None
    enable(dm, VM, A, CMD_MEM)
    enable(dm, VM, A, CMD_MEM | CMD_IO)
    assert io(dm, 0x2000) == (A, 1)
    assert io(dm, 0x1000) is None


@pytest.mark.req("R-DEC-005")
def test_deferred_64bit_bar_and_rom() -> None:
    dm = manager(DEFERRED)
    multi_programmed(dm, A, CMD_MEM)
    program_bar(dm, VM, A, 2, 0x2_3000_0000)  # both dwords
    rom_bar(dm, A, 0xE000_3000 | 1)  # address changes, enable bit stays set
    assert dm.config_read(VM, A, 0x18, 4) == 0x3000_0004
    assert dm.config_read(VM, A, 0x1C, 4) == 0x2
    assert mem(dm, 0x1_0000_0000) == (A, 2)
    assert mem(dm, 0xE000_1000) == (A, ROM)
    assert mem(dm, 0x2_3000_0000) is None
    assert mem(dm, 0xE000_3000) is None
    # ROM: clearing its enable bit ends its decode; setting it again decodes at the new address.
    rom_bar(dm, A, 0xE000_3000)
    assert mem(dm, 0xE000_1000) is None
    rom_bar(dm, A, 0xE000_3000 | 1)
    assert mem(dm, 0xE000_3000) == (A, ROM)
    assert mem(dm, 0x1_0000_0000) == (A, 2)  # the 64-bit BAR still waits for memory decode
    enable(dm, VM, A, 0)
    enable(dm, VM, A, CMD_MEM)
    assert mem(dm, 0x2_3000_0000) == (A, 2)
    assert mem(dm, 0x1_0000_0000) is None


@pytest.mark.req("R-DEC-005")
def test_deferred_enabled_bar_that_did_not_decode_keeps_not_decoding() -> None:
    dm = manager(DEFERRED)
    dm.plug(VM, A, MULTI)
    enable(dm, VM, A, CMD_MEM)  # BAR0 at zero: enabled but not decoding
    program_bar(dm, VM, A, 0, 0xE000_0000)
    assert mem(dm, 0xE000_0000) is None
    enable(dm, VM, A, 0)
    enable(dm, VM, A, CMD_MEM)
    assert mem(dm, 0xE000_0000) == (A, 0)


@pytest.mark.req("R-DEC-005")
def test_deferred_write_with_decode_disabled_takes_effect_on_enable() -> None:
    dm = manager(DEFERRED)
    multi_programmed(dm, A)
    assert decoding(dm) == set()
    enable(dm, VM, A, CMD_IO | CMD_MEM)
    assert decoding(dm) == {
        ("mem", A, 0, 0xE000_0000),
        ("io", A, 1, 0x1000),
        ("mem", A, 2, 0x1_0000_0000),
        ("mem", A, 4, 0xE000_0100),
        ("mem", A, ROM, 0xE000_1000),
    }


@pytest.mark.req("R-DEC-005")
def test_ignored_drops_writes_to_a_decoding_32bit_and_io_bar() -> None:
    dm = manager(IGNORED)
    multi_programmed(dm, A, CMD_IO | CMD_MEM)
    before = decoding(dm)
    program_bar(dm, VM, A, 0, 0xE000_0200)
    dm.config_write(VM, A, 0x13, 1, 0xC0)  # a byte of BAR0
    dm.config_write(VM, A, 0x10, 4, 0xFFFF_FFFF)  # sizing
    program_bar(dm, VM, A, 1, 0x2000)
    assert dm.config_read(VM, A, 0x10, 4) == 0xE000_0000
    assert dm.config_read(VM, A, 0x14, 4) == 0x1001
    assert decoding(dm) == before
    # With its decode disabled the write takes effect.
    enable(dm, VM, A, CMD_IO)
    program_bar(dm, VM, A, 0, 0xE000_0200)
    assert dm.config_read(VM, A, 0x10, 4) == 0xE000_0200
    enable(dm, VM, A, CMD_IO | CMD_MEM)
    assert mem(dm, 0xE000_0200) == (A, 0)


@pytest.mark.req("R-DEC-005")
def test_ignored_drops_both_dwords_of_a_decoding_64bit_bar() -> None:
    dm = manager(IGNORED)
    multi_programmed(dm, A, CMD_MEM)
    dm.config_write(VM, A, 0x18, 4, 0x2000_0000)  # lower dword
    dm.config_write(VM, A, 0x1C, 4, 0x5)  # upper dword
    dm.config_write(VM, A, 0x1E, 2, 0x1234)  # part of the upper dword
    dm.config_write(VM, A, 0x18, 1, 0xF0)  # a byte of the lower dword
    assert dm.config_read(VM, A, 0x18, 4) == 0x0000_0004
    assert dm.config_read(VM, A, 0x1C, 4) == 0x1
    assert mem(dm, 0x1_0000_0000) == (A, 2)
    enable(dm, VM, A, 0)
    program_bar(dm, VM, A, 2, 0x5_2000_0000)
    assert dm.config_read(VM, A, 0x1C, 4) == 0x5
    enable(dm, VM, A, CMD_MEM)
    assert mem(dm, 0x5_2000_0000) == (A, 2)


@pytest.mark.req("R-DEC-005")
def test_ignored_drops_the_whole_rom_bar_while_the_rom_decodes() -> None:
    dm = manager(IGNORED)
    multi_programmed(dm, A, CMD_MEM)
    rom_bar(dm, A, 0xE000_3000 | 1)  # new address
    rom_bar(dm, A, 0)  # clearing the enable bit through the ROM BAR is dropped too
    dm.config_write(VM, A, 0x30, 1, 0x00)
    assert dm.config_read(VM, A, 0x30, 4) == 0xE000_1001
    assert mem(dm, 0xE000_1000) == (A, ROM)
    # Memory space off: the ROM's decode is disabled, so the ROM BAR takes writes.
    enable(dm, VM, A, 0)
    rom_bar(dm, A, 0xE000_3000)
    assert dm.config_read(VM, A, 0x30, 4) == 0xE000_3000
    enable(dm, VM, A, CMD_MEM)
    # Enable bit clear: the ROM does not decode, so its BAR takes writes, including the enable bit.
    rom_bar(dm, A, 0xE000_4000 | 1)
    assert dm.config_read(VM, A, 0x30, 4) == 0xE000_4001
    assert mem(dm, 0xE000_4000) == (A, ROM)


@pytest.mark.req("R-DEC-005")
def test_ignored_only_drops_writes_to_bars_whose_own_decode_is_enabled() -> None:
    dm = manager(IGNORED)
    multi_programmed(dm, A, CMD_MEM)  # I/O decode disabled: BAR1 takes writes
    program_bar(dm, VM, A, 1, 0x2000)
    assert dm.config_read(VM, A, 0x14, 4) == 0x2001
    enable(dm, VM, A, CMD_IO)  # memory decode disabled: memory BARs take writes, I/O BAR does not
    program_bar(dm, VM, A, 0, 0xE000_0400)
    program_bar(dm, VM, A, 1, 0x3000)
    assert dm.config_read(VM, A, 0x10, 4) == 0xE000_0400
    assert dm.config_read(VM, A, 0x14, 4) == 0x2001
    assert decoding(dm) == {("io", A, 1, 0x2000)}


# ------------------------------------------------------------------------ R-DEC-006: address limits


@pytest.mark.req("R-DEC-006")
def test_io_bar_ending_at_64k_decodes() -> None:
    dm = manager()
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 1, 0xFFC0)
    enable(dm, VM, NIC, CMD_IO)
    assert dm.tables(VM).io == (TableEntry(6, 0xFFC0, 64, NIC, 1),)
    dm.io_write(VM, 0xFFFC, 4, 0xCAFEF00D)
    assert dm.io_read(VM, 0xFFFC, 4) == 0xCAFEF00D
    assert io(dm, 0xFFFF) == (NIC, 1)


@pytest.mark.req("R-DEC-006")
@pytest.mark.parametrize("address", [0xFFFF_FFC0, 0x1_0000, 0x1_C000, 0xFFFF_0000])
def test_io_bar_above_64k_does_not_decode(address: int) -> None:
    dm = manager()
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 1, address)
    enable(dm, VM, NIC, CMD_IO)
    assert dm.config_read(VM, NIC, 0x14, 4) == address | 1  # the register holds all 32 bits (R-BAR-006)
    assert dm.tables(VM).io == ()
    low = address & 0xFFFF  # no aliasing into the 64 KiB port space
    assert io(dm, low) is None
    assert dm.io_read(VM, low, 4) == 0xFFFF_FFFF


@pytest.mark.req("R-DEC-006")
def test_32bit_bar_and_rom_end_at_4g_at_most() -> None:
    dm = manager()
    dm.plug(VM, A, MULTI)
    dm.plug(VM, B, E1000)
    program_bar(dm, VM, A, 0, 0xFFFF_FFF0)  # the highest 16-byte slot below 4 GiB
    program_bar(dm, VM, B, 0, 0xFFFF_FFFF)  # sizing value: 0xFFFE0000, the top 128 KiB
    rom_bar(dm, B, 0xFFFF_FFFF)  # ROM sizing value with enable: 0xFFFF0001
    enable(dm, VM, A, CMD_MEM)
    enable(dm, VM, B, CMD_MEM)
    assert dm.config_read(VM, B, 0x30, 4) == 0xFFFF_0001
    assert decoding(dm) == {
        ("mem", A, 0, 0xFFFF_FFF0),
        ("mem", B, 0, 0xFFFE_0000),
        ("mem", B, ROM, 0xFFFF_0000),
    }
    for bdf, index in ((A, 0), (B, 0), (B, ROM)):
        entry = next(e for e in dm.tables(VM).memory if (e.bdf, e.bar) == (bdf, index))
        assert entry.base + entry.size <= 1 << 32
    assert mem(dm, 0xFFFF_FFFF) == (A, 0)
    assert mem(dm, 1 << 32) is None
    dm.mmio_write(VM, 0xFFFF_FFF8, 8, 0x0123_4567_89AB_CDEF)
    assert dm.mmio_read(VM, 0xFFFF_FFF8, 8) == 0x0123_4567_89AB_CDEF
    assert dm.mmio_read(VM, 1 << 32, 8) == (1 << 64) - 1


@pytest.mark.req("R-DEC-006")
def test_64bit_bar_may_reach_but_not_wrap_past_2_to_64() -> None:
    """Address bits below the size are read-only, so no programmable 64-bit BAR can wrap:
    the nearest attempt (all ones) decodes at ``2^64 - size`` and ends exactly at the limit."""
    dm = manager()
    dm.plug(VM, A, MULTI)
    dm.plug(VM, B, BIG_IO)
    program_bar(dm, VM, A, 2, 0xFFFF_FFFF_FFFF_FFFF)
    program_bar(dm, VM, B, 1, 0xFFFF_FFFF_FFFF_FFF0)
    enable(dm, VM, A, CMD_MEM)
    enable(dm, VM, B, CMD_MEM)
    assert dm.config_read(VM, A, 0x18, 4) == 0xFFFF_FFF4
    assert dm.config_read(VM, A, 0x1C, 4) == 0xFFFF_FFFF
    assert dm.config_read(VM, B, 0x14, 4) == 0x0000_0004  # a 4 GiB BAR: address bits 31:0 read-only
    assert dm.config_read(VM, B, 0x18, 4) == 0xFFFF_FFFF
    assert decoding(dm) == {("mem", A, 2, (1 << 64) - 16), ("mem", B, 1, (1 << 64) - (1 << 32))}
    # The small BAR (lower BDF) wins over the 4 GiB one it lies in (R-DEC-008).
    assert mem(dm, (1 << 64) - 1) == (A, 2)
    assert mem(dm, (1 << 64) - 17) == (B, 1)
    dm.mmio_write(VM, (1 << 64) - 8, 8, 0xFEED_FACE_CAFE_BEEF)
    assert dm.mmio_read(VM, (1 << 64) - 8, 8) == 0xFEED_FACE_CAFE_BEEF
    assert mem(dm, 0) is None  # nothing wrapped around to address zero
    assert mem(dm, 15) is None
    assert dm.mmio_read(VM, 0, 8) == (1 << 64) - 1


@pytest.mark.req("R-DEC-006")
def test_64bit_bar_above_4g_decodes() -> None:
    dm = manager()
    dm.plug(VM, A, A100)
    program_bar(dm, VM, A, 1, 0x40_0000_0000)
    program_bar(dm, VM, A, 3, 0x7F_FE00_0000)
    enable(dm, VM, A, CMD_MEM)
    assert mem(dm, 0x40_0000_0000 + (64 << 30) - 1) == (A, 1)
    assert mem(dm, 0x40_0000_0000 + (64 << 30)) is None
    assert mem(dm, 0x7F_FFFF_FFFF) == (A, 3)


# ---------------------------------------------------------------------- R-DEC-007: 64-bit halves


@pytest.mark.req("R-DEC-007", "R-DEC-005")
def test_64bit_bar_decodes_at_half_updated_address_between_writes() -> None:
    dm = manager(IMMEDIATE)
    dm.plug(VM, A, MULTI)
    program_bar(dm, VM, A, 2, 0x2_0000_0000)
    enable(dm, VM, A, CMD_MEM)
    assert mem(dm, 0x2_0000_0000) == (A, 2)
    dm.config_write(VM, A, 0x18, 4, 0xC000_0000)  # lower dword first
    assert decoding(dm) == {("mem", A, 2, 0x2_C000_0000)}
    dm.config_write(VM, A, 0x1C, 4, 0x3)  # then the upper dword
    assert decoding(dm) == {("mem", A, 2, 0x3_C000_0000)}
    dm.config_write(VM, A, 0x18, 4, 0x0)  # half-updated address 0x3_0000_0000 is valid
    assert decoding(dm) == {("mem", A, 2, 0x3_0000_0000)}
    dm.config_write(VM, A, 0x1C, 4, 0x0)  # address zero: no decode
    assert decoding(dm) == set()
    dm.config_write(VM, A, 0x18, 4, 0xD000_0000)
    assert decoding(dm) == {("mem", A, 2, 0xD000_0000)}


@pytest.mark.req("R-DEC-007")
def test_64bit_bar_halves_written_bytewise_follow_every_write() -> None:
    dm = manager(IMMEDIATE)
    dm.plug(VM, A, MULTI)
    enable(dm, VM, A, CMD_MEM)
    target = 0x0123_4567_89AB_CDE0
    for k in range(8):
        dm.config_write(VM, A, 0x18 + k, 1, (target >> (8 * k)) & 0xFF)
        # After each byte the BAR decodes at the address its bytes so far make: 0xE0, 0xCDE0, ...
        assert decoding(dm) == {("mem", A, 2, target & ((1 << (8 * (k + 1))) - 1))}
    assert decoding(dm) == {("mem", A, 2, target)}


# ----------------------------------------------------------------------- R-DEC-008: overlap


def two_tiny_at_same_address(dm: DataManager, first: Bdf, second: Bdf) -> None:
    """Plug MULTI at both BDFs, BAR0 at 0xE0000000; ``first`` starts decoding before ``second``."""
    for bdf in (first, second):
        dm.plug(VM, bdf, MULTI)
        program_bar(dm, VM, bdf, 0, 0xE000_0000)
    enable(dm, VM, first, CMD_MEM)
    enable(dm, VM, second, CMD_MEM)


@pytest.mark.req("R-DEC-008")
@pytest.mark.parametrize("order", ["low-first", "high-first"])
def test_lowest_bdf_wins_whatever_the_mapping_order(order: str) -> None:
    dm = manager()
    first, second = (A, C) if order == "low-first" else (C, A)
    two_tiny_at_same_address(dm, first, second)
    assert mem(dm, 0xE000_0000) == (A, 0)
    dm.mmio_write(VM, 0xE000_0000, 4, 0x1234_5678)
    # Only A received the write: move A away and look at C's contents.
    program_bar(dm, VM, A, 0, 0xE000_0200)
    assert mem(dm, 0xE000_0000) == (C, 0)
    assert dm.mmio_read(VM, 0xE000_0000, 4) == 0
    assert dm.mmio_read(VM, 0xE000_0200, 4) == 0x1234_5678


@pytest.mark.req("R-DEC-008")
def test_lowest_bdf_orders_bus_then_device_then_function_then_bar() -> None:
    dm = manager()
    bdfs = [Bdf(1, 0, 0), Bdf(0, 31, 7), Bdf(0, 31, 6), Bdf(0, 4, 0)]
    for bdf in bdfs:
        dm.plug(VM, bdf, MULTI)
        program_bar(dm, VM, bdf, 0, 0xE000_0000)
        program_bar(dm, VM, bdf, 4, 0xE000_0000)
        enable(dm, VM, bdf, CMD_MEM)
    expected = sorted(bdfs)
    for winner in expected:
        assert mem(dm, 0xE000_0000) == (winner, 0)  # BAR0 before BAR4 of the same function
        program_bar(dm, VM, winner, 0, 0)
        assert mem(dm, 0xE000_0000) == (winner, 4)
        enable(dm, VM, winner, 0)
    assert mem(dm, 0xE000_0000) is None


@pytest.mark.req("R-DEC-008")
def test_rom_loses_to_a_bar_of_its_own_function() -> None:
    dm = manager()
    dm.plug(VM, A, MULTI)
    program_bar(dm, VM, A, 0, 0xE000_0000)
    rom_bar(dm, A, 0xE000_0000 | 1)
    enable(dm, VM, A, CMD_MEM)
    assert mem(dm, 0xE000_0000) == (A, 0)
    assert mem(dm, 0xE000_0010) == (A, ROM)  # past the 16-byte BAR0, inside the 2 KiB ROM
    assert dm.mmio_read(VM, 0xE000_0000, 2) == 0  # BAR0 memory, not the ROM's 0xAA55


@pytest.mark.req("R-DEC-008")
def test_rom_ordered_as_bar_index_6_across_functions() -> None:
    """Reading "lowest (bus, device, function, BAR index), ROM last" with the ROM as index 6."""
    dm = manager()
    dm.plug(VM, A, MULTI)
    dm.plug(VM, B, MULTI)
    rom_bar(dm, A, 0xE000_0000 | 1)
    program_bar(dm, VM, B, 0, 0xE000_0000)
    enable(dm, VM, B, CMD_MEM)
    enable(dm, VM, A, CMD_MEM)
    assert mem(dm, 0xE000_0000) == (A, ROM)


@pytest.mark.req("R-DEC-008")
@pytest.mark.parametrize("big_first", [True, False])
def test_lowest_bdf_big_bar_covering_small_bar(big_first: bool) -> None:
    """A100 BAR0 (16 MiB) at 0xE0000000 covers the e1000 BAR0 (128 KiB) at 0xE0100000."""
    dm = manager()
    big, small = (A, B) if big_first else (B, A)
    dm.plug(VM, big, A100)
    dm.plug(VM, small, E1000)
    program_bar(dm, VM, big, 0, 0xE000_0000)
    program_bar(dm, VM, small, 0, 0xE010_0000)
    enable(dm, VM, small, CMD_MEM)
    enable(dm, VM, big, CMD_MEM)
    inside = 0xE010_0000 + 0x100
    assert mem(dm, inside) == (A, 0)  # whichever of the two has the lower BDF
    assert mem(dm, 0xE000_0000) == (big, 0)
    assert mem(dm, 0xE012_0000) == (big, 0)  # just past the small BAR
    dm.mmio_write(VM, inside, 4, 0xAABBCCDD)
    # Both entries exist: overlap is never rejected.
    assert {(e.bdf, e.bar) for e in dm.tables(VM).memory} == {(big, 0), (small, 0)}
    # The write reached only the winner.
    program_bar(dm, VM, A, 0, 0xD000_0000 if big_first else 0xD010_0000)
    moved = 0xD000_0000 + (inside - 0xE000_0000) if big_first else 0xD010_0100
    assert dm.mmio_read(VM, moved, 4) == 0xAABBCCDD
    assert dm.mmio_read(VM, inside, 4) == 0


@pytest.mark.req("R-DEC-008")
def test_last_mapped_most_recent_decode_wins() -> None:
    dm = manager(LAST_MAPPED)
    two_tiny_at_same_address(dm, C, A)
    assert mem(dm, 0xE000_0000) == (A, 0)
    enable(dm, VM, C, 0)
    enable(dm, VM, C, CMD_MEM)  # C's decode begins again, now most recently
    assert mem(dm, 0xE000_0000) == (C, 0)
    # Rewriting A's BAR with the same value does not begin a new decode.
    program_bar(dm, VM, A, 0, 0xE000_0000)
    assert mem(dm, 0xE000_0000) == (C, 0)
    # Moving A away and back does.
    program_bar(dm, VM, A, 0, 0xE000_0200)
    program_bar(dm, VM, A, 0, 0xE000_0000)
    assert mem(dm, 0xE000_0000) == (A, 0)
    dm.mmio_write(VM, 0xE000_0008, 8, 0x0807_0605_0403_0201)
    enable(dm, VM, A, 0)
    assert mem(dm, 0xE000_0000) == (C, 0)
    assert dm.mmio_read(VM, 0xE000_0008, 8) == 0  # C never saw the write


@pytest.mark.req("R-DEC-008")
@pytest.mark.parametrize("small_last", [True, False])
def test_last_mapped_big_bar_covering_small_bar(small_last: bool) -> None:
    dm = manager(LAST_MAPPED)
    dm.plug(VM, A, A100)
    dm.plug(VM, B, E1000)
    program_bar(dm, VM, A, 0, 0xE000_0000)
    program_bar(dm, VM, B, 0, 0xE010_0000)
    first, last = (A, B) if small_last else (B, A)
    enable(dm, VM, first, CMD_MEM)
    enable(dm, VM, last, CMD_MEM)
    assert mem(dm, 0xE010_0004) == (last, 0)
    assert mem(dm, 0xE000_0004) == (A, 0)


@pytest.mark.req("R-DEC-008")
@pytest.mark.parametrize("profile", [IMMEDIATE, LAST_MAPPED], ids=["lowest-bdf", "last-mapped"])
def test_overlap_never_changes_configuration_space(profile: Profile) -> None:
    dm = manager(profile)
    for bdf in (A, B):
        dm.plug(VM, bdf, MULTI)
    before = {bdf: [dm.config_read(VM, bdf, o, 4) for o in range(0, 0x40, 4)] for bdf in (A, B)}
    for bdf in (A, B):
        program_bar(dm, VM, bdf, 0, 0xE000_0000)
        program_bar(dm, VM, bdf, 1, 0x1000)
        enable(dm, VM, bdf, CMD_IO | CMD_MEM)
    after = {bdf: [dm.config_read(VM, bdf, o, 4) for o in range(0, 0x40, 4)] for bdf in (A, B)}
    for bdf in (A, B):
        changed = {o * 4 for o, (x, y) in enumerate(zip(before[bdf], after[bdf], strict=True)) if x != y}
        assert changed == {0x04, 0x10, 0x14}
        assert after[bdf][0x10 // 4] == 0xE000_0000
        assert after[bdf][0x14 // 4] == 0x1001
    assert len(dm.tables(VM).memory) == 2
    assert len(dm.tables(VM).io) == 2


# ------------------------------------------------------------------- R-DEC-009: what changes routing


@pytest.mark.req("R-DEC-009")
@pytest.mark.parametrize(
    "profile", [IMMEDIATE, DEFERRED, IGNORED], ids=lambda p: p.bar_move_while_decoding.value
)
def test_accesses_and_other_registers_never_change_routing(profile: Profile) -> None:
    dm = manager(profile)
    multi_programmed(dm, A, CMD_IO | CMD_MEM)
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, 0xFEBC_0000)
    program_bar(dm, VM, NIC, 1, 0xC000)
    enable(dm, VM, NIC, CMD_IO | CMD_MEM)
    before = dm.tables(VM)
    # BAR contents, reads and writes of every width.
    for width in (1, 2, 4, 8):
        dm.mmio_write(VM, 0xE000_0000, width, (1 << (8 * width)) - 1)
        dm.mmio_read(VM, 0xE000_0000, width)
        dm.mmio_write(VM, 0xFEBC_0000, width, 0x5A)
        dm.mmio_write(VM, 0xE000_1000, width, 0)  # the ROM: dropped
    for width in (1, 2, 4):
        dm.io_write(VM, 0x1000, width, 0x10)
        dm.io_read(VM, 0xC000, width)
        dm.io_write(VM, 0x8000, width, 0)  # unmapped
    dm.mmio_write(VM, 0x1234_0000, 8, 0)  # unmapped
    # Configuration writes to registers other than command, BARs and ROM BAR.
    for bdf in (A, NIC):
        dm.config_write(VM, bdf, 0x0C, 1, 0x10)  # cache line size
        dm.config_write(VM, bdf, 0x3C, 1, 0x0B)  # interrupt line
        dm.config_write(VM, bdf, 0x06, 2, 0xFFFF)  # status (RW1C)
        dm.config_write(VM, bdf, 0x00, 4, 0xFFFF_FFFF)  # identity (read-only)
        dm.config_write(VM, bdf, 0x28, 4, 0xFFFF_FFFF)  # CardBus CIS
        dm.config_write(VM, bdf, 0x2C, 4, 0xFFFF_FFFF)  # subsystem IDs
        dm.config_write(VM, bdf, 0x34, 4, 0xFFFF_FFFF)
        dm.config_write(VM, bdf, 0x38, 4, 0xFFFF_FFFF)
        dm.config_write(VM, bdf, 0x40, 4, 0xFFFF_FFFF)
        dm.config_write(VM, bdf, 0xFC, 4, 0xFFFF_FFFF)
        dm.config_read(VM, bdf, 0x10, 4)
    dm.config_write(VM, A, 0x24, 4, 0xFFFF_FFFF)  # BAR5: not implemented
    dm.config_write(VM, Bdf(9, 9, 1), 0x04, 2, 0x7)  # absent function: dropped
    dm.io_write(VM, 0xCF8, 4, 0x8000_0000 | (A.packed << 8) | 0x3C)
    dm.io_write(VM, 0xCFC, 1, 0x05)
    dm.mmio_write(VM, 0xB000_0000 + (A.packed << 12) + 0x0C, 1, 0x08)
    dm.save(VM, A)
    dm.snapshot(VM)
    assert dm.tables(VM) == before
    for address, want in ((0xE000_0000, (A, 0)), (0xFEBC_0000, (NIC, 0)), (0xE000_1000, (A, ROM))):
        assert mem(dm, address) == want
    assert io(dm, 0x1000) == (A, 1)
    assert io(dm, 0xC000) == (NIC, 1)


@pytest.mark.req("R-DEC-009")
@pytest.mark.parametrize("path", ["direct", "cf8", "ecam"])
def test_command_bar_and_rom_writes_through_every_path_change_routing(path: str) -> None:
    dm = manager()
    dm.plug(VM, A, MULTI)

    def write(offset: int, width: int, value: int) -> None:
        if path == "direct":
            dm.config_write(VM, A, offset, width, value)
        elif path == "cf8":
            dm.io_write(VM, 0xCF8, 4, 0x8000_0000 | (A.packed << 8) | (offset & 0xFC))
            dm.io_write(VM, 0xCFC + (offset & 3), width, value)
        else:
            dm.mmio_write(VM, 0xB000_0000 + (A.packed << 12) + offset, width, value)

    write(0x10, 4, 0xE000_0000)
    write(0x30, 4, 0xE000_1001)
    assert decoding(dm) == set()
    write(0x04, 2, CMD_MEM)
    assert decoding(dm) == {("mem", A, 0, 0xE000_0000), ("mem", A, ROM, 0xE000_1000)}
    write(0x12, 2, 0xE100)
    assert decoding(dm) == {("mem", A, 0, 0xE100_0000), ("mem", A, ROM, 0xE000_1000)}
    write(0x30, 1, 0x00)
    assert decoding(dm) == {("mem", A, 0, 0xE100_0000)}


@pytest.mark.req("R-DEC-009")
def test_reset_restore_plug_and_unplug_change_routing() -> None:
    dm = manager()
    multi_programmed(dm, A, CMD_IO | CMD_MEM)
    saved = dm.save(VM, A)
    full = decoding(dm)
    dm.reset(VM, A)
    assert decoding(dm) == set()
    dm.restore(VM, A, saved)
    assert decoding(dm) == full
    dm.reset_vm(VM)
    assert decoding(dm) == set()
    dm.restore(VM, A, saved)
    dm.plug(VM, B, MULTI)  # a plugged instance starts with nothing decoding
    assert decoding(dm) == full
    dm.unplug(VM, A)
    assert decoding(dm) == set()
    assert dm.mmio_read(VM, 0xE000_0000, 4) == 0xFFFF_FFFF
    snapshot = dm.snapshot(VM)
    dm.plug(VM, A, MULTI)
    dm.restore(VM, A, saved)
    assert decoding(dm) == full
    dm.restore_vm(VM, snapshot)
    assert decoding(dm) == set()


# -------------------------------------------------------------------- R-DEC-010: routing follows state

DEVICES: tuple[tuple[Bdf, DeviceType], ...] = ((A, MULTI), (B, E1000), (Bdf(2, 0, 0), A100))
ADDRESSES = (
    0, 0xFFFF_FFFF, 0xFFFF_FFF0, 0xE000_0000, 0xE000_0010, 0xE010_0000, 0xE000_1001, 0xE000_0001,
    0x1001, 0xC001, 0xFFC1, 0xCC1, 0x1_0001, 0xFEBC_0000, 0xFEBE_0001, 0x1, 0x40, 0xFFFF_FFC1,
)  # fmt: skip
"""Dword values for BAR registers: valid bases that collide often, sizing values, out-of-range ports."""
COMMANDS = (0, CMD_IO, CMD_MEM, CMD_IO | CMD_MEM, 0x7, 0x507, 0xFFFF)
BAR_REGISTERS = (0x10, 0x14, 0x18, 0x1C, 0x20, 0x24)


def expected_windows(dm: DataManager, bdf: Bdf, dtype: DeviceType) -> dict[int, int]:
    """Where each BAR decodes, from the registers alone (R-DEC-001..R-DEC-006), computed here."""
    command = dm.config_read(VM, bdf, 0x04, 2)
    out: dict[int, int] = {}
    for index, bar in enumerate(dtype.bars):
        if bar is None:
            continue
        low = dm.config_read(VM, bdf, 0x10 + 4 * index, 4)
        if bar.kind is BarKind.IO:
            base, on, limit = low & 0xFFFF_FFFC, command & CMD_IO, 1 << 16
        elif bar.kind is BarKind.MEM32:
            base, on, limit = low & 0xFFFF_FFF0, command & CMD_MEM, 1 << 32
        else:
            high = dm.config_read(VM, bdf, 0x14 + 4 * index, 4)
            base, on, limit = (high << 32) | (low & 0xFFFF_FFF0), command & CMD_MEM, 1 << 64
        if on and base and base + bar.size <= limit:
            out[index] = base
    if dtype.rom is not None:
        rom = dm.config_read(VM, bdf, 0x30, 4)
        base = rom & 0xFFFF_F800
        if command & CMD_MEM and rom & 1 and base and base + dtype.rom.size <= 1 << 32:
            out[ROM] = base
    return out


def enabled_bars(dm: DataManager, bdf: Bdf, dtype: DeviceType) -> set[int]:
    command = dm.config_read(VM, bdf, 0x04, 2)
    out = {
        i
        for i, bar in enumerate(dtype.bars)
        if bar is not None and command & (CMD_IO if bar.kind is BarKind.IO else CMD_MEM)
    }
    if dtype.rom is not None and command & CMD_MEM and dm.config_read(VM, bdf, 0x30, 1) & 1:
        out.add(ROM)
    return out


def table_rows(windows: dict[Bdf, dict[int, int]]) -> tuple[tuple[TableEntry, ...], tuple[TableEntry, ...]]:
    types = dict(DEVICES)
    io_rows, mem_rows = [], []
    for bdf, bars in windows.items():
        for index, base in bars.items():
            bar = types[bdf].bar(index) if index != ROM else None
            rom = types[bdf].rom
            size = bar.size if bar is not None else rom.size if rom is not None else 0
            entry = TableEntry(size.bit_length() - 1, base, size, bdf, index)
            (io_rows if bar is not None and bar.kind is BarKind.IO else mem_rows).append(entry)
    return tuple(sorted(io_rows)), tuple(sorted(mem_rows))


@st.composite
def config_write_op(draw: st.DrawFn) -> tuple[Any, ...]:
    """A configuration write inside one dword of the command, a BAR or the ROM BAR register."""
    device = draw(st.integers(0, len(DEVICES) - 1))
    kind = draw(st.sampled_from(("command", "bar", "bar", "rom")))
    register = 0x04 if kind == "command" else 0x30 if kind == "rom" else draw(st.sampled_from(BAR_REGISTERS))
    width = draw(st.sampled_from((4, 4, 2, 1)))
    lane = draw(st.integers(0, 4 - width))
    pool = COMMANDS if kind == "command" else ADDRESSES
    dword = draw(st.one_of(st.sampled_from(pool), st.integers(0, 0xFFFF_FFFF)))
    value = (dword >> (8 * lane)) & ((1 << (8 * width)) - 1)
    path = draw(st.sampled_from(("direct", "direct", "cf8", "ecam")))
    return ("config", device, register + lane, width, value, path)


OP_KINDS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "config": config_write_op(),
    "reset": st.one_of(
        st.tuples(st.just("reset"), st.integers(0, len(DEVICES) - 1)), st.tuples(st.just("reset_vm"))
    ),
    "mmio": st.tuples(st.just("mmio"), st.sampled_from(ADDRESSES), st.sampled_from((1, 2, 4, 8))),
    "io": st.tuples(st.just("io"), st.integers(0, 0xFFFC), st.sampled_from((1, 2, 4))),
}
OPS = st.sampled_from(("config",) * 8 + ("reset", "mmio", "io")).flatmap(OP_KINDS.__getitem__)
"""Mostly configuration writes; now and then a reset or an access to BAR contents."""


@pytest.mark.req("R-DEC-010", "R-DEC-005", "R-DEC-008", "R-DEC-009")
@pytest.mark.parametrize(
    "profile", [IMMEDIATE, DEFERRED, IGNORED], ids=lambda p: p.bar_move_while_decoding.value
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start_programmed=st.sampled_from((True, True, True, False)), ops=st.lists(OPS, min_size=5, max_size=40)
)
def test_tables_always_equal_those_derived_from_configuration(
    profile: Profile, start_programmed: bool, ops: list[Any]
) -> None:
    dm = manager(profile)
    for bdf, dtype in DEVICES:
        dm.plug(VM, bdf, dtype)
    if start_programmed:  # every BAR decoding, several of them overlapping
        for bdf, base in ((A, 0xE000_0000), (B, 0xE000_0000), (DEVICES[2][0], 0xE000_0000)):
            program_bar(dm, VM, bdf, 0, base)
            rom_bar(dm, bdf, 0xE000_0001)
        program_bar(dm, VM, A, 1, 0xC000)
        program_bar(dm, VM, A, 2, 0xE000_0010)
        program_bar(dm, VM, A, 4, 0xE000_0100)
        program_bar(dm, VM, B, 1, 0xC000)
        program_bar(dm, VM, DEVICES[2][0], 1, 0x10_0000_0000)
        program_bar(dm, VM, DEVICES[2][0], 3, 0xE200_0000)
        for bdf, _ in DEVICES:
            enable(dm, VM, bdf, CMD_IO | CMD_MEM)
    deferred = profile.bar_move_while_decoding is BarMoveWhileDecoding.DEFERRED
    windows = {bdf: expected_windows(dm, bdf, dtype) for bdf, dtype in DEVICES}
    assert (dm.tables(VM).io, dm.tables(VM).memory) == table_rows(windows)
    for op in ops:
        before = {bdf: enabled_bars(dm, bdf, t) for bdf, t in DEVICES}
        if op[0] == "config":
            _, device, offset, width, value, path = op
            bdf = DEVICES[device][0]
            if path == "direct":
                dm.config_write(VM, bdf, offset, width, value)
            elif path == "cf8":
                dm.io_write(VM, 0xCF8, 4, 0x8000_0000 | (bdf.packed << 8) | (offset & 0xFC))
                dm.io_write(VM, 0xCFC + (offset & 3), width, value)
            else:
                dm.mmio_write(VM, 0xB000_0000 + (bdf.packed << 12) + offset, width, value)
        elif op[0] == "reset":
            dm.reset(VM, DEVICES[op[1]][0])
        elif op[0] == "reset_vm":
            dm.reset_vm(VM)
        elif op[0] == "mmio":
            dm.mmio_write(VM, op[1], op[2], 0xA5 % (1 << (8 * op[2])))
            dm.mmio_read(VM, op[1], op[2])
        else:
            dm.io_write(VM, op[1], op[2], 0x5A)
            dm.io_read(VM, op[1], op[2])
        for bdf, dtype in DEVICES:
            derived = expected_windows(dm, bdf, dtype)
            if not deferred:
                windows[bdf] = derived
                continue
            after = enabled_bars(dm, bdf, dtype)
            kept = {i: b for i, b in windows[bdf].items() if i in before[bdf] and i in after}
            fresh = {i: b for i, b in derived.items() if not (i in before[bdf] and i in after)}
            windows[bdf] = kept | fresh
        tables = dm.tables(VM)
        assert (tables.io, tables.memory) == table_rows(windows), op
        # Resolving each base gives the lowest-BDF decoder among the entries that cover it (R-DEC-008).
        for space, rows in (("io", tables.io), ("memory", tables.memory)):
            for entry in rows:
                covering = [e for e in rows if e.base <= entry.base < e.base + e.size]
                best = min(covering, key=lambda e: (e.bdf, e.bar))
                assert dm.resolve(VM, space, entry.base) == (best.bdf, best.bar)
