"""Bridges: bus-number routing and forwarding windows as pure functions (R-BRG-002..R-BRG-006).

The manager keeps the tree (which instance sits on which bus); this module
answers, from bridge registers alone, which bus a bus number names
(:func:`route_numbers`), which addresses a bridge forwards
(:func:`forwarded_ranges`) and which bytes of a BAR every bridge on its path
forwards (:func:`intersect`). Address sets are :data:`Ranges`: sorted,
disjoint, half-open ``(start, stop)`` pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from vpcid.model.header import (
    BRIDGE_CONTROL,
    CMD_IO,
    CMD_MEM,
    COMMAND,
    CTL_BUS_RESET,
    CTL_ISA,
    CTL_VGA,
    IO_BASE,
    IO_BASE_UPPER,
    IO_LIMIT,
    IO_LIMIT_UPPER,
    MEMORY_BASE,
    MEMORY_LIMIT,
    PREF_BASE,
    PREF_BASE_UPPER,
    PREF_LIMIT,
    PREF_LIMIT_UPPER,
    SECONDARY_BUS,
    SUBORDINATE_BUS,
    BridgeRegisters,
    IoWindow,
    PrefetchWindow,
)

Ranges = tuple[tuple[int, int], ...]
"""Sorted, disjoint, half-open address ranges."""
VGA_MEMORY: Ranges = ((0xA0000, 0xC0000),)
VGA_PORTS: Ranges = ((0x3B0, 0x3BC), (0x3C0, 0x3E0))
"""What VGA enable forwards: the legacy frame buffer and the VGA register ports (R-BRG-011)."""
IO_SPACE_END = 0x1_0000


def _le(config: bytes | bytearray, offset: int, width: int) -> int:
    return int.from_bytes(config[offset : offset + width], "little")


def bus_range(config: bytes | bytearray) -> tuple[int, int]:
    """A bridge's secondary and subordinate bus numbers (0x19, 0x1A) (R-BRG-003)."""
    return config[SECONDARY_BUS], config[SUBORDINATE_BUS]


def claims(config: bytes | bytearray, number: int) -> bool:
    """Whether the bridge takes ``number``: its secondary bus number, or above it up to the subordinate
    bus number (R-BRG-003). The secondary number is taken whatever the subordinate says, as a bridge
    turns a request for its secondary bus into a type 0 one before looking at the range."""
    secondary = config[SECONDARY_BUS]
    return secondary <= number <= max(secondary, config[SUBORDINATE_BUS])


@dataclass(frozen=True, slots=True)
class Windows:
    """A bridge's forwarding windows as its registers decode them; None: closed or absent (R-BRG-005).

    Each window is ``(base, limit)``, both inclusive.
    """

    io: tuple[int, int] | None
    memory: tuple[int, int] | None
    prefetchable: tuple[int, int] | None


def _open(base: int, limit: int) -> tuple[int, int] | None:
    return (base, limit) if base <= limit else None


def windows(config: bytes | bytearray, bridge: BridgeRegisters) -> Windows:
    """Decode the I/O, memory and prefetchable windows (R-BRG-005).

    I/O: bits 7:4 of base and limit are address bits 15:12 (and the upper 16
    bits 31:16 for a 32-bit window), the limit's low 12 bits all ones. Memory:
    bits 15:4 are address bits 31:20, the limit's low 20 bits all ones; the
    prefetchable window likewise with the upper 32 bits for a 64-bit one.
    """
    io = None
    if bridge.io is not IoWindow.NONE:
        base, limit = (config[IO_BASE] & 0xF0) << 8, (config[IO_LIMIT] & 0xF0) << 8 | 0xFFF
        if bridge.io is IoWindow.BITS32:
            base |= _le(config, IO_BASE_UPPER, 2) << 16
            limit |= _le(config, IO_LIMIT_UPPER, 2) << 16
        io = _open(base, limit)
    memory = _open(
        (_le(config, MEMORY_BASE, 2) & 0xFFF0) << 16, (_le(config, MEMORY_LIMIT, 2) & 0xFFF0) << 16 | 0xFFFFF
    )
    prefetchable = None
    if bridge.prefetchable is not PrefetchWindow.NONE:
        base = (_le(config, PREF_BASE, 2) & 0xFFF0) << 16
        limit = (_le(config, PREF_LIMIT, 2) & 0xFFF0) << 16 | 0xFFFFF
        if bridge.prefetchable is PrefetchWindow.BITS64:
            base |= _le(config, PREF_BASE_UPPER, 4) << 32
            limit |= _le(config, PREF_LIMIT_UPPER, 4) << 32
        prefetchable = _open(base, limit)
    return Windows(io, memory, prefetchable)


def normalise(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sort and merge half-open ranges, dropping empty ones."""
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(r for r in ranges if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return tuple(merged)


def intersect(a: Ranges, b: Ranges) -> Ranges:
    """The addresses in both ``a`` and ``b`` (R-BRG-006: a path forwards what each bridge on it does)."""
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, stop = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < stop:
            out.append((start, stop))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _isa_filtered(window: tuple[int, int]) -> list[tuple[int, int]]:
    """The ports of an I/O window ISA enable leaves forwarded: in every 1 KiB block of the first 64 KiB,
    only the first 256 ports (address bits 9:8 zero); above 64 KiB everything (R-BRG-011)."""
    start, stop = window[0], window[1] + 1
    kept: list[tuple[int, int]] = []
    block = start & ~0x3FF
    while block < min(stop, IO_SPACE_END):
        kept.append((max(start, block), min(stop, block + 0x100)))
        block += 0x400
    if stop > IO_SPACE_END:
        kept.append((max(start, IO_SPACE_END), stop))
    return kept


def forwarded_ranges(
    config: bytes | bytearray, bridge: BridgeRegisters, honour_isa: bool
) -> tuple[Ranges, Ranges]:
    """The I/O ports and memory addresses a bridge forwards to its secondary bus now (R-BRG-006,
    R-BRG-011).

    I/O: with command bit 0 set, its I/O window (less, with ISA enable
    honoured, the ports whose bits 9:8 are not 00) and with VGA enable the
    VGA ports. Memory: with command bit 1 set, its memory and prefetchable
    windows and with VGA enable the VGA frame buffer.
    """
    command, control = _le(config, COMMAND, 2), _le(config, BRIDGE_CONTROL, 2)
    decoded = windows(config, bridge)
    io: list[tuple[int, int]] = []
    memory: list[tuple[int, int]] = []
    if command & CMD_IO:
        if decoded.io is not None:
            if honour_isa and control & CTL_ISA:
                io += _isa_filtered(decoded.io)
            else:
                io.append((decoded.io[0], decoded.io[1] + 1))
        if control & CTL_VGA:
            io += VGA_PORTS
    if command & CMD_MEM:
        for window in (decoded.memory, decoded.prefetchable):
            if window is not None:
                memory.append((window[0], window[1] + 1))
        if control & CTL_VGA:
            memory += VGA_MEMORY
    return normalise(io), normalise(memory)


def bus_reset_raised(before: bytes, after: bytes | bytearray, offset: int) -> bool:
    """Whether a write at ``offset`` (``before``: the bytes it replaced) set bridge control bit 6 from 0
    (R-BRG-007)."""
    at = BRIDGE_CONTROL - offset
    if not 0 <= at < len(before):
        return False
    return not before[at] & CTL_BUS_RESET and bool(after[BRIDGE_CONTROL] & CTL_BUS_RESET)


class Bus(Protocol):
    """What routing needs of a bridge: its registers and the bridges on its secondary bus, in (device,
    function) order."""

    @property
    def config(self) -> bytearray: ...

    @property
    def sub_bridges(self) -> Sequence[Bus]: ...


def route_numbers(root_bridges: Iterable[Bus], claimed: Iterable[int]) -> dict[int, Bus]:
    """Which bridge's secondary bus each bus number names (R-BRG-003).

    ``claimed``: the numbers root buses take (0 and every non-empty root bus).
    ``root_bridges``: the bridges on root buses in (root bus, device, function)
    order. A number no root bus claims goes to the first root bridge whose
    range holds it; there it names the secondary bus if it equals the
    secondary bus number, else goes on to the first bridge on that bus whose
    range holds it, and so on; where no bridge takes it, it names nothing.
    """
    roots = list(root_bridges)
    taken = set(claimed)
    found: dict[int, Bus] = {}
    if not roots:
        return found
    for number in range(256):
        if number in taken:
            continue
        level: Sequence[Bus] = roots
        while True:
            bridge = next((b for b in level if claims(b.config, number)), None)
            if bridge is None:
                break
            if bridge.config[SECONDARY_BUS] == number:
                found[number] = bridge
                break
            level = bridge.sub_bridges
    return found


def by_bus(found: Mapping[int, Bus]) -> dict[int, int]:
    """Bridge identity -> the number its secondary bus is reached by (inverse of :func:`route_numbers`)."""
    return {id(bridge): number for number, bridge in found.items()}
