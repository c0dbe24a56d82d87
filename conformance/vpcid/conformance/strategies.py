"""Hypothesis strategies for byte-level device types, configuration accesses and operation sequences.

Every device type these strategies draw is declared byte by byte
(:meth:`~vpcid.model.DeviceType.from_space`, R-DT-005) and keeps every rule a
declaration must keep, so it constructs; the strategies aim at the corners an
implementation that assumes builder-shaped types would get wrong: capability
chains at arbitrary dword offsets in any order, descending included
(R-DT-006), extended chains from 0x100 (R-DT-007), writable and RW1C bits in
arbitrary bytes, BARs of every kind and size (R-BAR-001), an optional
expansion ROM, and the ``msi-mme-clamp`` configuration behaviour (R-DT-008).

Shrinking moves towards small, simple types: no BARs, no ROM, no
capabilities, zero identity, read-only bytes but for the builder's command
and status masks.

Example::

    from hypothesis import given, strategies as st
    from vpcid.conformance.strategies import config_accesses, device_types
    from vpcid.model import Bdf, DataManager

    @given(st.data())
    def test_identity_reads_back(data):
        dtype = data.draw(device_types())
        dm = DataManager()
        dm.create_vm(1)
        dm.plug(1, Bdf(0, 2, 0), dtype)
        access = data.draw(config_accesses(dtype))
        dm.config_write(1, Bdf(0, 2, 0), access.offset, access.width, access.value)
        assert dm.config_read(1, Bdf(0, 2, 0), 0, 2) == dtype.vendor_id

The building blocks (:func:`bar_specs`, :func:`bar_layouts`,
:func:`rom_specs`, :func:`config_spaces`) compose into :func:`device_types`;
:func:`config_accesses`, :func:`bar_offsets`, :func:`bar_accesses` and
:func:`device_operations` draw what to do with a type once it is plugged;
:func:`traces` draws a type and a whole trace for it that any full-API
implementation (the reference among them) can run from ``init``.
:mod:`vpcid.conformance.stateful` builds its state machine's rules from
these strategies, so shrinking and the example database work on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NamedTuple

from hypothesis import strategies as st
from vpcid.conformance.engine import IO_POOL, MEM32_POOL, MEM64_POOL
from vpcid.conformance.trace import FULL, Op, OpKind, define_type_op
from vpcid.conformance.typefile import type_json
from vpcid.model import BarKind, BarSpec, Bdf, ConfigSpace, DeviceType, RomSpec
from vpcid.model.catalog import MsiMultipleMessageClamp
from vpcid.model.devicetype import ROM_INDEX
from vpcid.model.header import (
    BAR0,
    CACHE_LINE_SIZE,
    CAP_POINTER,
    CAPABILITY_AREA,
    CLASS_CODE,
    COMMAND,
    COMMAND_BITS,
    CONVENTIONAL_CONFIG_SIZE,
    DEVICE_ID,
    EXPRESS_CONFIG_SIZE,
    EXTENDED_AREA,
    HEADER_TYPE,
    IDENTITY_BYTES,
    INTERRUPT_LINE,
    INTERRUPT_PIN,
    REVISION,
    ROM_BAR,
    STATUS,
    STATUS_CAP_LIST,
    STATUS_ERROR_BITS,
    SUBSYSTEM_ID,
    SUBSYSTEM_VENDOR_ID,
    VENDOR_ID,
    standard_chain,
)
from vpcid.model.manager import CF8, CFC, DEFAULT_ECAM_BASE

__all__ = [
    "DEFAULT_TYPE_NAME",
    "BarAccess",
    "ConfigAccess",
    "bar_accesses",
    "bar_layouts",
    "bar_offsets",
    "bar_specs",
    "config_accesses",
    "config_spaces",
    "device_operations",
    "device_types",
    "rom_specs",
    "traces",
]

DEFAULT_TYPE_NAME = "drawn"
"""Name of the types :func:`device_types` draws unless told otherwise."""
MSI_ID = 0x05
COMMON_CAPABILITY_IDS = (0x01, 0x09, 0x10, 0x11, 0x12, 0x13, 0x03, 0x0D)
"""Power management, vendor-specific, PCI Express, MSI-X, SATA, advanced features, VPD, bridge subsystem."""
BUILDER_COMMAND_MASK = 0x0507
"""I/O, memory, bus master, SERR# and INTx disable writable: what the builder declares by default."""
MAX_CAPABILITY_BODY = 14
MAX_EXTENDED_BODY = 16
MAX_ROM_CONTENTS = 64
"""ROM contents drawn are at most this long (the ROM itself may be up to 16 MiB)."""
_HEADER_REGISTERS = (
    frozenset(range(COMMAND, COMMAND + 4))
    | frozenset(range(BAR0, BAR0 + 24))
    | frozenset(range(ROM_BAR, ROM_BAR + 4))
)
"""Command, status, the BARs and the ROM BAR: bytes whose declaration the rules fix."""


# ------------------------------------------------------------------ BARs and ROM


def bar_specs(kind: BarKind | None = None) -> st.SearchStrategy[BarSpec]:
    """One BAR of ``kind`` (any kind if None), of any size R-BAR-001 allows.

    I/O BARs are 4-256 bytes, 32-bit memory BARs 16 B-2 GiB, 64-bit ones
    16 B-8 EiB; memory BARs may be prefetchable. Shrinks to the smallest.

    >>> bar_specs(BarKind.IO).example().kind   # doctest: +SKIP
    <BarKind.IO: 'io'>
    """
    if kind is None:
        return st.sampled_from(BarKind).flatmap(bar_specs)
    if kind is BarKind.IO:
        return st.integers(2, 8).map(lambda log2: BarSpec(BarKind.IO, 1 << log2))
    top = 31 if kind is BarKind.MEM32 else 63
    return st.builds(
        lambda log2, prefetchable: BarSpec(kind, 1 << log2, prefetchable),
        st.integers(4, top),
        st.booleans(),
    )


@st.composite
def bar_layouts(draw: st.DrawFn) -> tuple[BarSpec | None, ...]:
    """The six BAR slots of a type 0 header: each unused, I/O, 32-bit or 64-bit memory (R-BAR-001).

    A 64-bit BAR takes the next slot as its upper half, so it never sits in
    slot 5. Trailing unused slots are left out. Shrinks to no BARs.

    >>> bar_layouts().example()   # doctest: +SKIP
    (None, BarSpec(kind=<BarKind.MEM64: 'mem64'>, size=65536, prefetchable=True), None)
    """
    slots: list[BarSpec | None] = []
    while len(slots) < 6:
        kinds: list[BarKind | None] = [None, BarKind.IO, BarKind.MEM32]
        if len(slots) < 5:
            kinds.append(BarKind.MEM64)
        kind = draw(st.sampled_from(kinds))
        if kind is None:
            slots.append(None)
            continue
        slots.append(draw(bar_specs(kind)))
        if kind is BarKind.MEM64:
            slots.append(None)
    while slots and slots[-1] is None:
        slots.pop()
    return tuple(slots)


def rom_specs() -> st.SearchStrategy[RomSpec]:
    """An expansion ROM of 2 KiB-16 MiB holding up to 64 drawn bytes (R-BAR-007).

    >>> rom_specs().example().size >= 2048   # doctest: +SKIP
    True
    """
    return st.integers(11, 24).flatmap(
        lambda log2: st.binary(max_size=min(1 << log2, MAX_ROM_CONTENTS)).map(
            lambda contents: RomSpec(1 << log2, contents)
        )
    )


def _bar_registers(bars: Sequence[BarSpec | None], rom: RomSpec | None) -> list[tuple[int, int, int]]:
    """(offset, value, writable mask) of each BAR and ROM BAR dword, as R-BAR-002..R-BAR-008 define them."""
    registers: list[tuple[int, int, int]] = []
    upper_of: BarSpec | None = None
    for slot in range(6):
        offset = BAR0 + 4 * slot
        bar = bars[slot] if slot < len(bars) else None
        if upper_of is not None:
            registers.append((offset, 0, (~(upper_of.size - 1) >> 32) & 0xFFFF_FFFF))
            upper_of = None
        elif bar is None:
            registers.append((offset, 0, 0))
        else:
            low_bits = 0x3 if bar.kind is BarKind.IO else 0xF
            registers.append((offset, bar.type_bits(), ~(bar.size - 1) & 0xFFFF_FFFF & ~low_bits))
            upper_of = bar if bar.kind is BarKind.MEM64 else None
    rom_mask = (~(rom.size - 1) & 0xFFFF_F800) | 0x1 if rom is not None else 0
    registers.append((ROM_BAR, 0, rom_mask))
    return registers


# ------------------------------------------------------------------ configuration space


class _Space:
    """The three per-byte arrays of a configuration space being drawn (RW1C never where writable)."""

    def __init__(self, size: int) -> None:
        self.image, self.wmask, self.w1c = bytearray(size), bytearray(size), bytearray(size)

    def put(self, offset: int, width: int, value: int, writable: int = 0, rw1c: int = 0) -> None:
        for k in range(width):
            shift = 8 * k
            self.image[offset + k] = (value >> shift) & 0xFF
            self.wmask[offset + k] = (writable >> shift) & 0xFF
            self.w1c[offset + k] = (rw1c >> shift) & 0xFF & ~self.wmask[offset + k]

    def put_bytes(self, offset: int, image: bytes, writable: bytes, rw1c: bytes) -> None:
        for k, (value, wm, cm) in enumerate(zip(image, writable, rw1c, strict=True)):
            self.put(offset + k, 1, value, wm, cm)

    def space(self) -> ConfigSpace:
        return ConfigSpace(bytes(self.image), bytes(self.wmask), bytes(self.w1c))


def _masked_bytes(length: int) -> st.SearchStrategy[tuple[bytes, bytes, bytes]]:
    """Power-on bytes, writable mask and RW1C mask of ``length`` bytes (RW1C loses where both are drawn)."""
    one = st.binary(min_size=length, max_size=length)
    return st.tuples(one, one, one)


def _msi_capability(draw: st.DrawFn) -> tuple[int, bytes, bytes, bytes]:
    """An MSI capability's body as the PCI specification lays it out: (size with header, body, masks).

    Control: enable (bit 0) and Multiple Message Enable (6:4) writable;
    Multiple Message Capable (3:1), 64-bit (7) and per-vector masking (8)
    read-only and drawn. Then the message address (writable from bit 2),
    upper address for 64-bit, data, and with per-vector masking the mask
    (writable) and pending (read-only) bits.
    """
    capable = draw(st.integers(0, 7))
    wide, per_vector = draw(st.booleans()), draw(st.booleans())
    enabled = draw(st.integers(0, 7))
    control = capable << 1 | enabled << 4 | wide << 7 | per_vector << 8 | draw(st.integers(0, 1))
    body = bytearray(control.to_bytes(2, "little"))
    writable = bytearray(b"\x71\x00")
    body += draw(st.binary(min_size=4, max_size=4))
    writable += b"\xfc\xff\xff\xff"
    if wide:
        body += draw(st.binary(min_size=4, max_size=4))
        writable += b"\xff\xff\xff\xff"
    body += draw(st.binary(min_size=2, max_size=2))
    writable += b"\xff\xff"
    if per_vector:
        body += bytes(2) + draw(st.binary(min_size=8, max_size=8))
        writable += bytes(2) + b"\xff\xff\xff\xff" + bytes(4)
    return 2 + len(body), bytes(body), bytes(writable), bytes(len(body))


def _room(offset: int, starts: Sequence[int], end: int) -> int:
    """Bytes from ``offset`` to the next capability header in ``starts`` (or ``end``)."""
    return min([s for s in starts if s > offset] + [end]) - offset


def _standard_chain(draw: st.DrawFn, space: _Space, msi: bool | None) -> list[int]:
    """Draw the capability list (R-DT-006) into ``space``; return the header offsets, in chain order."""
    with_msi = draw(st.booleans()) if msi is None else msi
    others = draw(st.integers(0, 6))
    dwords = range(CAPABILITY_AREA // 4, CONVENTIONAL_CONFIG_SIZE // 4)
    msi_at: int | None = None
    msi_parts: tuple[int, bytes, bytes, bytes] | None = None
    if with_msi:
        msi_parts = _msi_capability(draw)
        msi_at = 4 * draw(st.integers(dwords.start, (CONVENTIONAL_CONFIG_SIZE - msi_parts[0]) // 4))
    taken = range(msi_at, msi_at + msi_parts[0]) if msi_at is not None and msi_parts is not None else range(0)
    free_dwords = [4 * d for d in dwords if 4 * d not in taken]
    offsets: list[int] = draw(
        st.lists(st.sampled_from(free_dwords), unique=True, max_size=others) if others else st.just([])
    )
    starts = sorted(offsets + ([msi_at] if msi_at is not None else []))
    for offset in offsets:
        cap_id = draw(st.one_of(st.sampled_from(COMMON_CAPABILITY_IDS), st.integers(0, 0xFF)).filter(
            lambda i: i != MSI_ID
        ))  # fmt: skip
        room = _room(offset, starts, CONVENTIONAL_CONFIG_SIZE) - 2
        length = draw(st.integers(0, min(room, MAX_CAPABILITY_BODY)))
        space.put_bytes(offset + 2, *draw(_masked_bytes(length)))
        space.image[offset] = cap_id
    chain = list(offsets)
    if msi_at is not None and msi_parts is not None:
        _, body, writable, rw1c = msi_parts
        space.put_bytes(msi_at + 2, body, writable, rw1c)
        space.image[msi_at] = MSI_ID
        chain.insert(draw(st.integers(0, len(chain))), msi_at)
    return chain


def _extended_chain(draw: st.DrawFn, space: _Space) -> list[int]:
    """Draw the PCI Express extended capability list (R-DT-007); return the header offsets, in order."""
    count = draw(st.integers(0, 4))
    if not count:
        return []
    later: list[int] = draw(
        st.lists(st.integers(EXTENDED_AREA // 4 + 1, EXPRESS_CONFIG_SIZE // 4 - 1), unique=True,
                 min_size=count - 1, max_size=count - 1)
    )  # fmt: skip
    chain = [EXTENDED_AREA] + [4 * d for d in later]
    starts = sorted(chain)
    for offset in chain:
        cap_id, version = draw(st.integers(0, 0xFFFF)), draw(st.integers(1, 0xF))
        space.image[offset : offset + 2] = cap_id.to_bytes(2, "little")
        space.image[offset + 2] = version
        room = _room(offset, starts, EXPRESS_CONFIG_SIZE) - 4
        length = draw(st.integers(0, min(room, MAX_EXTENDED_BODY)))
        space.put_bytes(offset + 4, *draw(_masked_bytes(length)))
    return chain


def _device_specific(draw: st.DrawFn, space: _Space) -> None:
    """Sparse device-specific registers anywhere outside the header's fixed registers (R-DT-005)."""
    size = len(space.image)
    header_free = [
        o for o in range(CAPABILITY_AREA) if o not in IDENTITY_BYTES and o not in _HEADER_REGISTERS
    ]
    if draw(st.booleans()):  # the usual writable cache line size and interrupt line (R-CFG-007)
        space.put(CACHE_LINE_SIZE, 1, 0, 0xFF)
        space.put(INTERRUPT_LINE, 1, 0, 0xFF)
    places = st.one_of(st.integers(CAPABILITY_AREA, size - 1), st.sampled_from(header_free))
    for start in draw(st.lists(places, max_size=8)):
        width = draw(st.sampled_from((1, 2, 4)))
        start -= start % width
        image, writable, rw1c = draw(_masked_bytes(width))
        for k in range(width):
            if start + k < CAPABILITY_AREA and start + k not in header_free:
                continue
            space.put(start + k, 1, image[k], writable[k], rw1c[k])


@st.composite
def config_spaces(
    draw: st.DrawFn,
    *,
    bars: tuple[BarSpec | None, ...] = (),
    rom: RomSpec | None = None,
    express: bool | None = None,
    msi: bool | None = None,
) -> ConfigSpace:
    """A configuration space declared byte by byte for ``bars`` and ``rom`` (R-DT-005..R-DT-007).

    256 bytes, or 4096 for PCI Express (``express`` None: either). Identity
    bytes drawn (vendor never 0xFFFF, pin 0-4, type 0 header, multi-function
    or not); command register zero with writable bits among 0x07FF; status
    with drawn read-only bits and RW1C bits among the error bits; BAR and ROM
    registers exactly as ``bars`` and ``rom`` imply; a capability list at
    drawn dword offsets chained in drawn order (descending included), with
    drawn bodies and masks; an MSI capability when ``msi`` is True (never
    when False, either way when None); for PCI Express an extended chain from
    0x100; sparse device-specific bytes elsewhere. No bit is both writable
    and RW1C, and no chain header byte has either.

    >>> space = config_spaces(express=True).example()   # doctest: +SKIP
    >>> len(space.image)
    4096
    """
    is_express = draw(st.booleans()) if express is None else express
    space = _Space(EXPRESS_CONFIG_SIZE if is_express else CONVENTIONAL_CONFIG_SIZE)
    _device_specific(draw, space)
    chain = _standard_chain(draw, space, msi)
    extended = _extended_chain(draw, space) if is_express else []

    # Chain headers: ID (already in place) and next pointer, read-only.
    for position, offset in enumerate(chain):
        following = chain[position + 1] if position + 1 < len(chain) else 0
        space.put(offset, 2, space.image[offset] | following << 8)
    for position, offset in enumerate(extended):
        following = extended[position + 1] if position + 1 < len(extended) else 0
        id_and_version = int.from_bytes(space.image[offset : offset + 3], "little") & 0xF_FFFF
        space.put(offset, 4, id_and_version | following << 20)
    if is_express and not extended:
        space.put(EXTENDED_AREA, 4, 0)
    stray_pointer = draw(st.one_of(st.just(0), st.integers(0, 0xFF)))  # ignored without status bit 4
    space.put(CAP_POINTER, 1, chain[0] if chain else stray_pointer)

    # The header's identity and registers, whose declarations the rules fix.
    space.put(VENDOR_ID, 2, draw(st.integers(0, 0xFFFE)))
    space.put(DEVICE_ID, 2, draw(st.integers(0, 0xFFFF)))
    space.put(REVISION, 1, draw(st.integers(0, 0xFF)))
    space.put(CLASS_CODE, 3, draw(st.integers(0, 0xFF_FFFF)))
    space.put(HEADER_TYPE, 1, 0x80 if draw(st.booleans()) else 0x00)
    space.put(SUBSYSTEM_VENDOR_ID, 2, draw(st.integers(0, 0xFFFF)))
    space.put(SUBSYSTEM_ID, 2, draw(st.integers(0, 0xFFFF)))
    space.put(INTERRUPT_PIN, 1, draw(st.integers(0, 4)))
    command_mask = draw(st.one_of(st.just(BUILDER_COMMAND_MASK), st.integers(0, COMMAND_BITS)))
    space.put(COMMAND, 2, 0, writable=command_mask)
    status = draw(st.integers(0, 0xFFFF)) & ~STATUS_CAP_LIST | (STATUS_CAP_LIST if chain else 0)
    status_rw1c = draw(st.one_of(st.just(STATUS_ERROR_BITS), st.integers(0, 0xFFFF))) & STATUS_ERROR_BITS
    space.put(STATUS, 2, status, rw1c=status_rw1c)
    for offset, value, writable in _bar_registers(bars, rom):
        space.put(offset, 4, value, writable)
    return space.space()


# ------------------------------------------------------------------ device types


@st.composite
def device_types(
    draw: st.DrawFn,
    *,
    name: str = DEFAULT_TYPE_NAME,
    express: bool | None = None,
    config_behaviour: bool | None = None,
) -> DeviceType:
    """A device type declared byte by byte (R-DT-001, R-DT-005): drawn BARs, optional ROM, and a
    :func:`config_spaces` that matches them.

    When the drawn space has an MSI capability, the type may name the
    ``msi-mme-clamp`` configuration behaviour (R-DT-008): ``config_behaviour``
    True asks for an MSI capability and the behaviour, False for neither,
    None lets both be drawn. Memory-like BARs (R-DT-004).

    >>> dtype = device_types(config_behaviour=True).example()   # doctest: +SKIP
    >>> dtype.config_behaviour.name
    'msi-mme-clamp'
    """
    bars = draw(bar_layouts())
    rom = draw(st.none() | rom_specs())
    space = draw(config_spaces(bars=bars, rom=rom, express=express, msi=config_behaviour))
    has_msi = any(entry.cap_id == MSI_ID for entry in standard_chain(space.image))
    hook = None
    if has_msi and (config_behaviour if config_behaviour is not None else draw(st.booleans())):
        hook = MsiMultipleMessageClamp()
    return DeviceType.from_space(name, space, bars, rom, None, hook)


# ------------------------------------------------------------------ configuration accesses


class ConfigAccess(NamedTuple):
    """One configuration access: ``width`` bytes at ``offset`` (inside one dword) and a value to write."""

    offset: int
    width: int
    value: int


_BOUNDARIES = (0x00, 0x3C, 0x3F, 0x40, 0xFC, 0xFF, 0x100, 0x103, 0xFFC, 0xFFF)
"""Ends of the header, the capability area, conventional and extended space."""


@lru_cache(maxsize=64)
def _access_targets(dtype: DeviceType) -> st.SearchStrategy[int]:
    """The byte an access should touch, the declared and structural ones first (built once per type)."""
    space = dtype.declared
    declared = [o for o in range(len(space.image)) if space.wmask[o] | space.w1cmask[o]]
    headers = [CAP_POINTER, *(o for entry in dtype.chain for o in entry.header_bytes)]
    targets = [
        st.integers(0, CAPABILITY_AREA - 1),
        st.sampled_from(IDENTITY_BYTES),
        st.sampled_from(headers),
        st.sampled_from(_BOUNDARIES),
        st.integers(0, 0xFFF),
    ]
    if declared:
        targets.insert(0, st.sampled_from(declared))
    return st.one_of(targets)


@st.composite
def config_accesses(draw: st.DrawFn, dtype: DeviceType) -> ConfigAccess:
    """A valid configuration access for ``dtype``: 1, 2 or 4 bytes inside one dword (R-ACC-003).

    The byte it touches is biased towards the type's writable and RW1C
    bytes, the header (identity, command, status, BAR and ROM registers),
    its capability headers and pointer, and the boundaries of the header
    and of both spaces (a conventional type's bytes past 0xFF read as all
    ones, R-CFG-009); the value towards all ones, zero, the bytes' masks and
    the inverted image.

    >>> access = config_accesses(dtype).example()   # doctest: +SKIP
    >>> access.offset % 4 + access.width <= 4
    True
    """
    target = draw(_access_targets(dtype))
    width = draw(st.sampled_from((1, 2, 4)))
    dword = target & ~3
    offset = draw(st.integers(max(target - width + 1, dword), min(target, dword + 4 - width)))
    full = (1 << (8 * width)) - 1
    space = dtype.declared
    candidates = [full, 0]
    if offset < len(space.image):
        candidates += [
            space.word(offset, width, "wmask"),
            space.word(offset, width, "w1cmask"),
            space.word(offset, width) ^ full,
        ]
    value = draw(st.one_of(st.sampled_from(candidates), st.integers(0, full)))
    return ConfigAccess(offset, width, value)


# ------------------------------------------------------------------ BAR accesses


class BarAccess(NamedTuple):
    """One access inside a BAR: ``width`` bytes at ``offset`` from its base; a write of ``value`` when
    ``write``, else a read (``value`` is then 0)."""

    bar: int
    offset: int
    width: int
    write: bool
    value: int


def bar_offsets(size: int, registers: Sequence[tuple[int, int]] = ()) -> st.SearchStrategy[int]:
    """An offset inside a BAR of ``size`` bytes, aimed at what implementations get wrong.

    Biased towards the first and last bytes, the last aligned words, the
    middle, and the start, end and last byte of each ``(offset, width)`` in
    ``registers`` (the registers a device declares inside the BAR); any
    offset otherwise. Shrinks towards 0.

    >>> bar_offsets(16, registers=[(4, 4)]).example() < 16   # doctest: +SKIP
    True
    """
    if size <= 0:
        raise ValueError(f"a BAR has a positive size, not {size}")
    edges = {0, size - 1, max(size - 2, 0), max(size - 4, 0), max(size - 8, 0), size // 2}
    for offset, width in registers:
        edges.update(o for o in (offset, offset + width - 1, offset + width) if 0 <= o < size)
    return st.one_of(st.sampled_from(sorted(edges)), st.integers(0, size - 1))


def _value(width: int) -> st.SearchStrategy[int]:
    """A value of ``width`` bytes: all ones, one bit, zero or anything."""
    full = (1 << (8 * width)) - 1
    return st.one_of(st.sampled_from((0, full, 1, 1 << (8 * width - 1))), st.integers(0, full))


@st.composite
def bar_accesses(
    draw: st.DrawFn, dtype: DeviceType, bar: int | None = None, registers: Sequence[tuple[int, int]] = ()
) -> BarAccess:
    """An access inside one of ``dtype``'s BARs (``bar``, or any implemented one, the ROM included).

    Offsets come from :func:`bar_offsets` (``registers``: ``(offset, width)``
    of registers declared inside the BAR); widths are 1, 2 and 4 bytes for
    I/O BARs and also 8 for memory BARs, and an access never runs past the
    BAR's end; ROM accesses are reads (R-BAR-007). Raises ``ValueError`` for
    a type without BARs or a ``bar`` it does not implement.

    >>> access = bar_accesses(SUITE_TYPES["e1000"]).example()   # doctest: +SKIP
    >>> access.offset + access.width <= 0x20000
    True
    """
    implemented = dtype.implemented
    if not implemented or (bar is not None and bar not in implemented):
        raise ValueError(f"device type {dtype.name!r} implements no BAR {'' if bar is None else bar}".strip())
    index = draw(st.sampled_from(implemented)) if bar is None else bar
    spec = dtype.bar(index) if index != ROM_INDEX else None
    size = spec.size if spec is not None else dtype.rom.size if dtype.rom is not None else 0
    io = spec is not None and spec.kind is BarKind.IO
    widths = [w for w in ((1, 2, 4) if io else (1, 2, 4, 8)) if w <= size]
    width = draw(st.sampled_from(widths))
    offset = min(draw(bar_offsets(size, registers)), size - width)
    write = spec is not None and draw(st.booleans())
    return BarAccess(index, offset, width, write, draw(_value(width)) if write else 0)


# ------------------------------------------------------------------ operation sequences

_MOSTLY = (False, *(True,) * 7)
"""Sampled for a step that usually happens and that shrinking removes (towards False)."""
ABSENT_FUNCTION = Bdf(0, 0x1F, 7)
"""A function the sequences address but never plug: it reads as all ones (R-ACC-006)."""
SAVE_SLOTS = ("a", "b")
SNAPSHOT_SLOT = "v"


class _Moves:
    """Draws the operations of one move; remembers where the sequence programmed BARs."""

    def __init__(
        self, draw: st.DrawFn, dtype: DeviceType, vm: int, bdfs: tuple[Bdf, ...], name: str, ecam: int | None
    ) -> None:
        self.draw, self.dtype, self.vm, self.bdfs, self.name, self.ecam = draw, dtype, vm, bdfs, name, ecam
        self.windows: list[tuple[bool, int, int]] = []
        """(I/O?, base, size) of every BAR address the sequence wrote: targets for accesses."""

    def _bdf(self, absent: bool = False) -> Bdf:
        choices = self.bdfs + ((ABSENT_FUNCTION,) if absent and ABSENT_FUNCTION not in self.bdfs else ())
        return self.draw(st.sampled_from(choices))

    def _cfg(self, kind: OpKind, bdf: Bdf, offset: int, width: int, value: int = 0) -> Op:
        return Op(kind, vm=self.vm, bdf=bdf, address=offset, width=width, value=value)

    def config_read(self) -> list[Op]:
        """A configuration read (:func:`config_accesses`), sometimes of the absent function."""
        access = self.draw(config_accesses(self.dtype))
        return [self._cfg(OpKind.CONFIG_READ, self._bdf(absent=True), access.offset, access.width)]

    def config_write(self) -> list[Op]:
        """A configuration write, then a read of its dword (R-CFG-001)."""
        bdf, access = self._bdf(absent=True), self.draw(config_accesses(self.dtype))
        return [
            self._cfg(OpKind.CONFIG_WRITE, bdf, access.offset, access.width, access.value),
            self._cfg(OpKind.CONFIG_READ, bdf, access.offset & ~3, 4),
        ]

    def _register(self, index: int) -> int:
        return ROM_BAR if index == ROM_INDEX else BAR0 + 4 * index

    def program_bar(self) -> list[Op]:
        """Program one BAR of one instance."""
        return self.program(self._bdf(), self.draw(st.sampled_from(self.dtype.implemented)))

    def program(self, bdf: Bdf, index: int) -> list[Op]:
        """Write an address into BAR ``index`` (6: the ROM BAR, enable bit drawn) of ``bdf``, read it back."""
        draw, dtype = self.draw, self.dtype
        bar = dtype.bar(index) if index != ROM_INDEX else None
        size = bar.size if bar is not None else dtype.rom.size if dtype.rom is not None else 0
        io = bar is not None and bar.kind is BarKind.IO
        wide = bar is not None and bar.kind is BarKind.MEM64
        pool = IO_POOL if io else MEM64_POOL + MEM32_POOL if wide else MEM32_POOL
        top = (1 << (64 if wide else 32)) - 1
        # Mostly addresses that can decode; sometimes zero (R-DEC-004) or, for an I/O BAR, past 64 KiB
        # (R-DEC-006).
        raw = draw(
            st.one_of(st.sampled_from((*pool, 0)), st.integers(0, 0xFFFF if io else top), st.integers(0, top))
        )
        base = raw & ~(size - 1)
        if raw and not base:  # a BAR too large for the drawn address: its lowest aligned one instead
            base = size
        register = self._register(index)
        low = base & 0xFFFF_FFFF
        if index == ROM_INDEX:
            low = low & 0xFFFF_F800 | draw(st.sampled_from((1, 0)))
        ops = [self._cfg(OpKind.CONFIG_WRITE, bdf, register, 4, low)]
        if wide:
            upper = self._cfg(OpKind.CONFIG_WRITE, bdf, register + 4, 4, base >> 32)
            ops = [upper, *ops] if draw(st.booleans()) else [*ops, upper]  # either half first (R-DEC-007)
        self.windows.append((io, base, size))
        return [*ops, self._cfg(OpKind.CONFIG_READ, bdf, register, 4)]

    def bring_up(self, bdf: Bdf | None = None) -> list[Op]:
        """What firmware does: program the BARs of ``bdf`` (drawn if None), then enable decode.

        Each BAR is programmed with probability 7/8, so shrinking can drop
        the ones a failure does not need.
        """
        bdf = self._bdf() if bdf is None else bdf
        ops: list[Op] = []
        for index in self.dtype.implemented:
            if self.draw(st.sampled_from(_MOSTLY)):
                ops += self.program(bdf, index)
        command = self.draw(st.sampled_from((0x7, 0x407, 0x3, 0x1, 0x2)))
        return [*ops, self._cfg(OpKind.CONFIG_WRITE, bdf, COMMAND, 2, command)]

    def size_bar(self) -> list[Op]:
        """Size a BAR as software does: write a probe, read both dwords back (R-BAR-003)."""
        bdf, index = self._bdf(), self.draw(st.sampled_from(self.dtype.implemented))
        register = self._register(index)
        probe = self.draw(st.sampled_from((0xFFFF_FFFF, 0xFFFF_FFF0, 0xFFFF_F800, 0xFFFF_FFFE)))
        return [
            self._cfg(OpKind.CONFIG_WRITE, bdf, register, 4, probe),
            self._cfg(OpKind.CONFIG_READ, bdf, register, 4),
            self._cfg(OpKind.CONFIG_READ, bdf, register + 4, 4),
        ]

    def command(self) -> list[Op]:
        """Write the command register, read command and status (R-CFG-004, R-DEC-001..R-DEC-003)."""
        bdf = self._bdf()
        value = self.draw(
            st.one_of(st.sampled_from((0x7, 0x3, 0x2, 0x1, 0x0, 0x507, 0xFFFF)), st.integers(0, 0xFFFF))
        )
        return [
            self._cfg(OpKind.CONFIG_WRITE, bdf, COMMAND, 2, value),
            self._cfg(OpKind.CONFIG_READ, bdf, COMMAND, 4),
        ]

    def bar_access(self) -> list[Op]:
        """An I/O or MMIO read, maybe after a write, at or around a programmed BAR address (or anywhere)."""
        draw = self.draw
        aimed = draw(st.integers(0, 9)) > 0  # one access in ten goes anywhere
        if aimed and self.windows:
            io, base, size = draw(st.sampled_from(self.windows))
            offset = draw(st.one_of(st.sampled_from((0, size - 1, size - 2, size - 4, size - 8, size)),
                                    st.integers(0, size - 1)))  # fmt: skip
            address = base + offset
        else:
            io = draw(st.booleans())
            address = draw(st.integers(0, 0xFFFF if io else (1 << 64) - 1))
        width = draw(st.sampled_from((1, 2, 4) if io else (1, 2, 4, 8)))
        address = min(max(address, 0), (1 << (16 if io else 64)) - width)
        read, write = (OpKind.IO_READ, OpKind.IO_WRITE) if io else (OpKind.MMIO_READ, OpKind.MMIO_WRITE)
        ops = [Op(read, vm=self.vm, address=address, width=width)]
        if draw(st.booleans()):
            value = draw(st.integers(0, (1 << (8 * width)) - 1))
            ops.insert(0, Op(write, vm=self.vm, address=address, width=width, value=value))
        return ops

    def cam(self) -> list[Op]:
        """A mechanism #1 access: select with 0xCF8, then the data window (R-CAM-*)."""
        draw, vm = self.draw, self.vm
        bdf, access = self._bdf(absent=True), draw(config_accesses(self.dtype))
        address = 0x8000_0000 | bdf.packed << 8 | (access.offset & 0xFC) | (access.offset >> 8) << 24
        # Half the time: enable clear (R-CAM-005), low bits or bits 27:24 set (R-CAM-002).
        address ^= draw(st.sampled_from((0, 0, 0, 0x8000_0000, 0x3, 0x0F00_0000)))
        port = CFC + access.offset % 4
        ops = [Op(OpKind.IO_WRITE, vm=vm, address=CF8, width=4, value=address)]
        if draw(st.booleans()):
            ops.append(Op(OpKind.IO_WRITE, vm=vm, address=port, width=access.width, value=access.value))
        return [*ops, Op(OpKind.IO_READ, vm=vm, address=port, width=access.width),
                Op(OpKind.IO_READ, vm=vm, address=CF8, width=4)]  # fmt: skip

    def ecam_access(self) -> list[Op]:
        """An ECAM read, maybe after a write, of an instance or the absent function (R-ECAM-*)."""
        assert self.ecam is not None
        bdf, access = self._bdf(absent=True), self.draw(config_accesses(self.dtype))
        address = self.ecam + (bdf.packed << 12) + access.offset
        ops = [Op(OpKind.MMIO_READ, vm=self.vm, address=address, width=access.width)]
        if self.draw(st.booleans()):
            ops.insert(
                0, Op(OpKind.MMIO_WRITE, vm=self.vm, address=address, width=access.width, value=access.value)
            )
        return ops

    def reset(self) -> list[Op]:
        """Function-level reset, then read the command register (R-RST-001)."""
        bdf = self._bdf()
        return [Op(OpKind.RESET, vm=self.vm, bdf=bdf), self._cfg(OpKind.CONFIG_READ, bdf, COMMAND, 4)]

    def reset_vm(self) -> list[Op]:
        """VM reset, then read 0xCF8 (R-RST-003)."""
        return [Op(OpKind.RESET_VM, vm=self.vm), Op(OpKind.IO_READ, vm=self.vm, address=CF8, width=4)]

    def save_restore(self) -> list[Op]:
        """Save an instance into a slot; maybe restore an instance from a slot, filled or not (R-SR-*)."""
        draw = self.draw
        ops = [Op(OpKind.SAVE, vm=self.vm, bdf=self._bdf(), name=draw(st.sampled_from(SAVE_SLOTS)))]
        if draw(st.booleans()):
            ops.append(
                Op(OpKind.RESTORE, vm=self.vm, bdf=self._bdf(), name=draw(st.sampled_from(SAVE_SLOTS)))
            )
        return ops

    def snapshot(self) -> list[Op]:
        """Snapshot the VM; maybe restore it into the VM or a new one, then read its tables (R-SR-006)."""
        ops = [Op(OpKind.SNAPSHOT, vm=self.vm, name=SNAPSHOT_SLOT)]
        if self.draw(st.booleans()):
            target = self.draw(st.sampled_from((self.vm, self.vm + 1)))
            ops += [Op(OpKind.RESTORE_VM, vm=target, name=SNAPSHOT_SLOT), Op(OpKind.TABLES, vm=target)]
        return ops

    def tables(self) -> list[Op]:
        """Read the VM's tables (R-DS-007)."""
        return [Op(OpKind.TABLES, vm=self.vm)]

    def hotplug(self) -> list[Op]:
        """Unplug an instance, read where it was; maybe plug it again (R-HP-*)."""
        bdf = self._bdf()
        ops = [Op(OpKind.UNPLUG, vm=self.vm, bdf=bdf), self._cfg(OpKind.CONFIG_READ, bdf, VENDOR_ID, 4)]
        if self.draw(st.booleans()):
            ops.append(Op(OpKind.PLUG, vm=self.vm, bdf=bdf, name=self.name))
        return ops


_GUEST: frozenset[OpKind] = frozenset()
_MOVES: tuple[tuple[Callable[[_Moves], list[Op]], int, frozenset[OpKind]], ...] = (
    (_Moves.config_read, 2, _GUEST), (_Moves.config_write, 3, _GUEST), (_Moves.bar_access, 6, _GUEST),
    (_Moves.command, 1, _GUEST), (_Moves.program_bar, 2, _GUEST), (_Moves.bring_up, 1, _GUEST),
    (_Moves.size_bar, 1, _GUEST), (_Moves.cam, 2, _GUEST), (_Moves.ecam_access, 1, _GUEST),
    (_Moves.reset, 1, frozenset({OpKind.RESET})), (_Moves.reset_vm, 1, frozenset({OpKind.RESET_VM})),
    (_Moves.save_restore, 2, frozenset({OpKind.SAVE, OpKind.RESTORE})),
    (_Moves.snapshot, 1, frozenset({OpKind.SNAPSHOT, OpKind.RESTORE_VM, OpKind.TABLES})),
    (_Moves.tables, 1, frozenset({OpKind.TABLES})),
    (_Moves.hotplug, 1, frozenset({OpKind.UNPLUG, OpKind.PLUG})),
)  # fmt: skip
"""Each move, in the order shrinking prefers: its weight, and the operation kinds it needs besides the
guest's."""
_BAR_MOVES = frozenset({_Moves.program_bar, _Moves.bring_up, _Moves.size_bar})


@st.composite
def device_operations(
    draw: st.DrawFn,
    dtype: DeviceType,
    *,
    name: str | None = None,
    vm: int = 1,
    bdfs: tuple[Bdf, ...] = (Bdf(0, 2, 0),),
    operations: frozenset[OpKind] = FULL,
    ecam_base: int | None = DEFAULT_ECAM_BASE,
    max_moves: int = 30,
) -> list[Op]:
    """A trace (spec/formats/trace.md) that exercises instances of ``dtype`` at ``bdfs`` of VM ``vm``.

    It starts with ``init`` and, when ``operations`` include them,
    ``create_vm`` and a ``plug`` of ``name`` (default ``dtype.name``) at each
    BDF; a fixed machine (no ``plug``) is expected to hold the instances
    already. Most instances are then brought up as firmware does it (BARs
    programmed, then decode enabled). Then up to
    ``max_moves`` moves, each a few operations:
    configuration reads and writes (:func:`config_accesses`, also to an absent
    function), BAR programming (either half of a 64-bit BAR first) and
    sizing, command writes, I/O and MMIO accesses at and around the
    addresses the sequence programmed, mechanism #1 and ECAM accesses, and,
    where ``operations`` allow, function and VM reset, save and restore
    between two slots, snapshot and restore into the VM or a new one,
    tables, and unplug/replug. Shrinks towards fewer, simpler moves.

    >>> ops = device_operations(dtype, operations=GUEST_VIEW | {OpKind.RESET}).example()  # doctest: +SKIP
    >>> ops[0].kind
    <OpKind.INIT: 'init'>
    """
    type_name = dtype.name if name is None else name
    ops = [Op(OpKind.INIT)]
    if {OpKind.CREATE_VM, OpKind.PLUG} <= operations:
        ops.append(Op(OpKind.CREATE_VM, vm=vm, ecam_base=ecam_base))
        ops += [Op(OpKind.PLUG, vm=vm, bdf=bdf, name=type_name) for bdf in bdfs]
    moves = _Moves(draw, dtype, vm, bdfs, type_name, ecam_base)
    for bdf in bdfs:
        if dtype.implemented and draw(st.sampled_from(_MOSTLY)):
            ops += moves.bring_up(bdf)
    skipped = set(_BAR_MOVES) if not dtype.implemented else set()
    if ecam_base is None:
        skipped.add(_Moves.ecam_access)
    available = [move for move, weight, needs in _MOVES if needs <= operations and move not in skipped
                 for _ in range(weight)]  # fmt: skip
    # A drawn count, not st.lists: lists average six elements, and deep states need more moves.
    for _ in range(draw(st.integers(1, max_moves))):
        ops += draw(st.sampled_from(available))(moves)
    return ops


@st.composite
def traces(
    draw: st.DrawFn,
    dtype: DeviceType | None = None,
    *,
    operations: frozenset[OpKind] = FULL,
    devices: int = 1,
    max_moves: int = 30,
) -> list[Op]:
    """A whole trace any full-API implementation runs from ``init``: it defines its device type first.

    ``dtype`` (drawn by :func:`device_types` when None) is defined with a
    ``define_type`` operation (spec/formats/device-type.md), then VM 1 is
    created and ``devices`` instances of the type are plugged at 00:02.0,
    00:03.0, ...; the moves are :func:`device_operations`. Valid for the
    model: the reference adapter runs it without a trace error.

    >>> ops = traces().example()   # doctest: +SKIP
    >>> [op.kind.value for op in ops[:3]]
    ['init', 'define_type', 'create_vm']
    """
    chosen = draw(device_types()) if dtype is None else dtype
    bdfs = tuple(Bdf(0, 2 + k, 0) for k in range(devices))
    ops = draw(device_operations(chosen, bdfs=bdfs, operations=operations, max_moves=max_moves))
    return [ops[0], define_type_op(type_json(chosen)), *ops[1:]]
