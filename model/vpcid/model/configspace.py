"""Pure functions over configuration-space bytes: masked writes and BAR decode (R-CFG-*, R-BAR-*).

Kept free of manager state so proofs and symbolic checks can reason about
them directly.
"""

from __future__ import annotations

from functools import lru_cache

from vpcid.model.devicetype import (
    BAR0,
    CMD_IO,
    CMD_MEM,
    COMMAND,
    ROM_BAR,
    ROM_INDEX,
    BarKind,
    ConfigLayout,
    DeviceType,
    layout,
)
from vpcid.model.profile import DEFAULT_PROFILE, AddressZero, BarAtTop, BarSizing, Profile

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


def decode_window(
    config: bytes | bytearray, dtype: DeviceType, index: int, profile: Profile = DEFAULT_PROFILE
) -> int | None:
    """Base address at which BAR ``index`` (6 = ROM) decodes now, or None (R-DEC-001..R-DEC-006).

    A BAR decodes when its enable bits are set, its address is not zero and
    its whole range lies below its address limit. The profile may let address
    zero decode (V-ADDR-ZERO, R-DEC-004), keep a memory range ending at the
    last byte of its space from decoding (V-BAR-TOP, R-DEC-006), and under
    ``bar_sizing = "probe-only"`` an address that is not a multiple of the
    size does not decode (V-BAR-SIZING, R-BAR-003).
    """
    command = read_le(config, COMMAND, 2)
    if index == ROM_INDEX:
        if dtype.rom is None or not command & CMD_MEM:
            return None
        rom = read_le(config, ROM_BAR, 4)
        if not rom & 1:
            return None
        base, size, limit = rom & 0xFFFFF800, dtype.rom.size, 1 << 32
    else:
        bar = dtype.bar(index)
        if bar is None or not command & (CMD_IO if bar.kind is BarKind.IO else CMD_MEM):
            return None
        base, size, limit = bar_address(config, index, bar.kind), bar.size, address_limit(bar.kind)
    if base + size > limit or (base == 0 and profile.address_zero is AddressZero.UNMAPPED):
        return None
    if profile.bar_at_top is BarAtTop.UNMAPPED and limit != IO_SPACE_END and base + size == limit:
        return None
    if profile.bar_sizing is BarSizing.PROBE_ONLY and base % size:
        return None
    return base


def decode_enabled(config: bytes | bytearray, dtype: DeviceType, index: int) -> bool:
    """Whether BAR ``index``'s enable bits are set, whatever its address (R-DEC-001, R-DEC-002)."""
    command = read_le(config, COMMAND, 2)
    if index == ROM_INDEX:
        return dtype.rom is not None and bool(command & CMD_MEM) and bool(read_le(config, ROM_BAR, 1) & 1)
    bar = dtype.bar(index)
    if bar is None:
        return False
    return bool(command & (CMD_IO if bar.kind is BarKind.IO else CMD_MEM))


def bar_register_span(dtype: DeviceType, index: int) -> range:
    """Configuration offsets holding BAR ``index``'s address (both dwords of a 64-bit BAR)."""
    if index == ROM_INDEX:
        return range(ROM_BAR, ROM_BAR + 4)
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


BAR_DWORDS = range(BAR0, BAR0 + 24)
"""Configuration offsets of the six BAR registers (R-BAR-003)."""


def bar_address_bits(dtype: DeviceType) -> bytes:
    """Per byte of 0x10-0x27: the address bits of the implemented BARs' registers, every type bit
    excluded (the bits a write keeps under ``bar_sizing = "probe-only"``, R-BAR-003, R-BAR-005)."""
    bits = bytearray(len(BAR_DWORDS))
    for index in range(6):
        bar = dtype.bar(index)
        if bar is None:
            continue
        low = 0xFFFF_FFFC if bar.kind is BarKind.IO else 0xFFFF_FFF0
        bits[4 * index : 4 * index + 4] = low.to_bytes(4, "little")
        if bar.kind is BarKind.MEM64:
            bits[4 * index + 4 : 4 * index + 8] = b"\xff" * 4
    return bytes(bits)


def is_sizing_probe(dtype: DeviceType, offset: int, payload: bytes | bytearray) -> bool:
    """Whether a configuration write is a sizing probe as ``bar_sizing = "probe-only"`` has it: a 4-byte
    write to a BAR register whose address bits are all ones (R-BAR-003)."""
    if len(payload) != 4 or offset not in BAR_DWORDS:
        return False
    bits = int.from_bytes(bar_address_bits(dtype)[offset - BAR0 : offset - BAR0 + 4], "little")
    return int.from_bytes(payload, "little") & bits == bits


@lru_cache(maxsize=512)
def profile_layout(dtype: DeviceType, profile: Profile) -> ConfigLayout:
    """The per-byte image and masks the manager runs ``dtype`` on in ``profile`` (R-CFG-001, R-CFG-006,
    R-BAR-003).

    Under ``bar_sizing = "probe-only"`` every address bit of an implemented BAR's register is
    writable (the sizing mask then applies only to the probe :func:`is_sizing_probe` names).
    """
    declared = layout(dtype, profile.status)
    if profile.bar_sizing is BarSizing.MASK:
        return declared
    wmask = bytearray(declared.wmask)
    for k, bits in enumerate(bar_address_bits(dtype)):
        wmask[BAR0 + k] |= bits & ~declared.w1cmask[BAR0 + k]
    return ConfigLayout(declared.image, bytes(wmask), declared.w1cmask)
