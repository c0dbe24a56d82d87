"""Pure functions over configuration-space bytes: masked writes and BAR decode (R-CFG-*, R-BAR-*).

Kept free of manager state so proofs and symbolic checks can reason about
them directly.
"""

from __future__ import annotations

from vpcid.model.devicetype import (
    BAR0,
    CMD_IO,
    CMD_MEM,
    COMMAND,
    ROM_INDEX,
    BarKind,
    DeviceType,
)

IO_SPACE_END = 0x1_0000
"""x86 port space is 64 KiB: an I/O BAR decodes only below this (R-DEC-006)."""


def merge_byte(old: int, value: int, wmask: int, w1cmask: int) -> int:
    """One byte of a configuration write (R-CFG-001).

    Writable bits take the written value; a written one clears an RW1C bit;
    every other bit keeps its old value.
    """
    merged = (old & ~wmask) | (value & wmask)
    return merged & ~(value & w1cmask) & 0xFF


def read_le(buf: bytes | bytearray, offset: int, width: int) -> int:
    """Little-endian unsigned integer of ``width`` bytes at ``offset``."""
    return int.from_bytes(buf[offset : offset + width], "little")


def bar_address(config: bytes | bytearray, index: int, kind: BarKind) -> int:
    """The address programmed in BAR ``index``, type bits removed (R-BAR-003, R-BAR-005)."""
    low = read_le(config, BAR0 + 4 * index, 4)
    if kind is BarKind.IO:
        return low & ~0x3
    address = low & ~0xF
    if kind is BarKind.MEM64:
        address |= read_le(config, BAR0 + 4 * index + 4, 4) << 32
    return address


_ADDRESS_LIMITS = {BarKind.IO: IO_SPACE_END, BarKind.MEM32: 1 << 32, BarKind.MEM64: 1 << 64}


def address_limit(kind: BarKind) -> int:
    """One past the highest address a BAR of this kind may decode (R-DEC-006)."""
    return _ADDRESS_LIMITS[kind]


def decode_window(config: bytes | bytearray, dtype: DeviceType, index: int) -> int | None:
    """Base address at which BAR ``index`` (6 = ROM) decodes now, or None (R-DEC-001..R-DEC-006).

    A BAR decodes when its enable bits are set, its address is not zero and
    its whole range lies below its address limit.
    """
    command = read_le(config, COMMAND, 2)
    if index == ROM_INDEX:
        if dtype.rom is None or not command & CMD_MEM:
            return None
        rom = read_le(config, dtype.rom_offset, 4)
        if not rom & 1:
            return None
        base, size, limit = rom & 0xFFFFF800, dtype.rom.size, 1 << 32
    else:
        bar = dtype.bar(index)
        if bar is None or not command & (CMD_IO if bar.kind is BarKind.IO else CMD_MEM):
            return None
        base, size, limit = bar_address(config, index, bar.kind), bar.size, address_limit(bar.kind)
    if base == 0 or base + size > limit:
        return None
    return base


def decode_enabled(config: bytes | bytearray, dtype: DeviceType, index: int) -> bool:
    """Whether BAR ``index``'s enable bits are set, whatever its address (R-DEC-001, R-DEC-002)."""
    command = read_le(config, COMMAND, 2)
    if index == ROM_INDEX:
        return dtype.rom is not None and bool(command & CMD_MEM) and bool(config[dtype.rom_offset] & 1)
    bar = dtype.bar(index)
    if bar is None:
        return False
    return bool(command & (CMD_IO if bar.kind is BarKind.IO else CMD_MEM))


def bar_register_span(dtype: DeviceType, index: int) -> range:
    """Configuration offsets holding BAR ``index``'s address (both dwords of a 64-bit BAR)."""
    if index == ROM_INDEX:
        return range(dtype.rom_offset, dtype.rom_offset + 4)
    bar = dtype.bar(index)
    width = 8 if bar is not None and bar.kind is BarKind.MEM64 else 4
    return range(BAR0 + 4 * index, BAR0 + 4 * index + width)


def bar_size(dtype: DeviceType, index: int) -> int:
    """Size in bytes of BAR ``index`` (6 = ROM); 0 when not implemented."""
    if index == ROM_INDEX:
        return dtype.rom.size if dtype.rom is not None else 0
    bar = dtype.bar(index)
    return bar.size if bar is not None else 0


def implemented_bars(dtype: DeviceType) -> tuple[int, ...]:
    """Indices of the implemented BARs, ROM (6) last."""
    return dtype.implemented
