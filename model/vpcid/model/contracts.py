"""Executable contracts on the model's pure functions, for CrossHair (PEP 316 docstrings).

Each function here is a thin wrapper that calls the model's real code
(``merge_byte``, ``layout``, ``decode_window``, ``DecodeTable``,
``encode_instance``/``decode_instance``) and states what the spec requires of
the result as ``post:`` conditions over inputs bounded by ``pre:``
conditions. The wrappers add no behaviour of their own beyond building the
inputs the way the manager does; the postconditions restate the spec, never
the code.

``tests/test_crosshair.py`` runs ``crosshair check vpcid.model.contracts``
in CI. :data:`CONTRACTS` (filled by :func:`establishes`) names the
requirements each contract checks; ``vpcid.conformance.formal.evidence``
reads it.

Checked here: R-CFG-001, R-CFG-006 (masked writes); R-BAR-002, R-BAR-003,
R-BAR-005, R-BAR-007 and R-DEC-001..R-DEC-004, R-DEC-006 (BAR registers and
decode); R-DS-006, R-DS-009, R-DEC-008 (table keys and lookup); R-BLOB-001,
R-BLOB-003, R-BLOB-004 (blob round trip and integrity).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from vpcid.model.bdf import Bdf
from vpcid.model.behaviour import PAGE_SIZE
from vpcid.model.blob import InstanceRecord, decode_instance, encode_instance
from vpcid.model.configspace import bar_register_span, decode_window, merge_byte
from vpcid.model.devicetype import (
    COMMAND,
    ROM_INDEX,
    BarKind,
    BarSpec,
    ConfigLayout,
    DeviceType,
    RomSpec,
    layout,
)
from vpcid.model.errors import BlobError
from vpcid.model.profile import StatusRegister
from vpcid.model.tables import DecodeTable, Mapping, lowest_bdf_first

F = TypeVar("F", bound=Callable[..., object])
T = TypeVar("T")

CONTRACTS: dict[str, tuple[str, ...]] = {}
"""Contract (function name) -> the requirement IDs its postconditions check."""


def establishes(*requirements: str) -> Callable[[F], F]:
    """Record that the decorated contract checks ``requirements``; returns the function unchanged."""

    def register(fn: F) -> F:
        CONTRACTS[fn.__name__] = requirements
        return fn

    return register


# ------------------------------------------------------------- masked write
@establishes("R-CFG-001", "R-CFG-006")
def masked_write(old: int, value: int, wmask: int, w1cmask: int) -> int:
    """One configuration byte written through the model's ``merge_byte``: the spec's formula, idempotent.

    pre: 0 <= old <= 0xFF and 0 <= value <= 0xFF
    pre: 0 <= wmask <= 0xFF and 0 <= w1cmask <= 0xFF
    pre: wmask & w1cmask == 0
    post: __return__ == ((old & ~wmask) | (value & wmask)) & ~(value & w1cmask)
    post: merge_byte(__return__, value, wmask, w1cmask) == __return__
    """
    return merge_byte(old, value, wmask, w1cmask)


@establishes("R-CFG-001", "R-CFG-006")
def masked_write_bit(position: int, old: bool, value: bool, writable: bool, rw1c: bool) -> int:
    """One bit of a configuration byte, at any position, through ``merge_byte``: the spec's truth table.

    CrossHair cannot keep ``&``/``|`` on symbolic ints symbolic (it picks
    concrete values), so besides :func:`masked_write` this contract states the
    rule bit by bit, a domain small enough for CrossHair to cover: a writable
    bit takes the written value, an RW1C bit is cleared by a written one and
    kept by a written zero, any other bit keeps its value; no other bit is set.

    pre: 0 <= position <= 7
    pre: not (writable and rw1c)
    post: __return__ >> position & 1 == (value if writable else (old and not value) if rw1c else old)
    post: __return__ & ~(1 << position) == 0
    """
    bit = 1 << position
    return merge_byte(bit if old else 0, bit if value else 0, bit if writable else 0, bit if rw1c else 0)


# ------------------------------------------------------------ BAR decoding
def _shape(name: str, bar: BarSpec | None = None, rom: RomSpec | None = None) -> DeviceType:
    return DeviceType(
        f"contract-{name}",
        vendor_id=0x1B36,
        device_id=0x00FE,
        class_code=0xFF0000,
        bars=(bar,) if bar is not None else (),
        rom=rom,
    )


BAR_SHAPES: tuple[tuple[DeviceType, int], ...] = (
    (_shape("io4", BarSpec(BarKind.IO, 4)), 0),
    (_shape("io256", BarSpec(BarKind.IO, 256)), 0),
    (_shape("m32-16", BarSpec(BarKind.MEM32, 16)), 0),
    (_shape("m32-1m-pf", BarSpec(BarKind.MEM32, 1 << 20, prefetchable=True)), 0),
    (_shape("m32-2g", BarSpec(BarKind.MEM32, 1 << 31)), 0),
    (_shape("m64-16", BarSpec(BarKind.MEM64, 16)), 0),
    (_shape("m64-4g-pf", BarSpec(BarKind.MEM64, 1 << 32, prefetchable=True)), 0),
    (_shape("m64-8e", BarSpec(BarKind.MEM64, 1 << 63)), 0),
    (_shape("rom2k", rom=RomSpec(2048)), ROM_INDEX),
    (_shape("rom16m", rom=RomSpec(1 << 24)), ROM_INDEX),
)
"""Device types with one BAR (or a ROM) of representative kinds and sizes, and that BAR's index."""


def _layout(shape: int) -> ConfigLayout:
    return layout(BAR_SHAPES[shape][0], StatusRegister.RW1C)


def _write(config: bytearray, lay: ConfigLayout, offset: int, payload: bytes) -> None:
    """A configuration write, byte by byte, as ``DataManager._config_store`` does it."""
    for k, byte in enumerate(payload):
        o = offset + k
        config[o] = merge_byte(config[o], byte, lay.wmask[o], lay.w1cmask[o])


def register_bytes(shape: int) -> int:
    """Width in bytes of the BAR register of ``BAR_SHAPES[shape]`` (8 for a 64-bit BAR)."""
    dtype, index = BAR_SHAPES[shape]
    return len(bar_register_span(dtype, index))


def shape_size(shape: int) -> int:
    """Size in bytes of the BAR (or ROM) of ``BAR_SHAPES[shape]``, as declared."""
    dtype, index = BAR_SHAPES[shape]
    if index == ROM_INDEX:
        assert dtype.rom is not None
        return dtype.rom.size
    bar = dtype.bar(index)
    assert bar is not None
    return bar.size


def spec_decode(shape: int, command: int, value: int) -> int | None:
    """Where the spec says the BAR decodes after these writes (R-BAR-003, R-DEC-001..R-DEC-004, R-DEC-006)."""
    dtype, index = BAR_SHAPES[shape]
    if index == ROM_INDEX:
        assert dtype.rom is not None
        size, limit = dtype.rom.size, 1 << 32
        address = value & ~(size - 1) & 0xFFFF_F800
        enabled = bool(command & 0x2) and bool(value & 1)
    else:
        bar = dtype.bar(index)
        assert bar is not None
        size = bar.size
        io = bar.kind is BarKind.IO
        limit = 1 << 16 if io else 1 << 32 if bar.kind is BarKind.MEM32 else 1 << 64
        address = value & ~(size - 1) & ~(0x3 if io else 0xF)
        enabled = bool(command & (0x1 if io else 0x2))
    return address if enabled and address != 0 and address + size <= limit else None


@establishes(
    "R-BAR-002",
    "R-BAR-003",
    "R-BAR-005",
    "R-BAR-007",
    "R-DEC-001",
    "R-DEC-002",
    "R-DEC-003",
    "R-DEC-004",
    "R-DEC-006",
)
def bar_decode(shape: int, command: int, value: int) -> int | None:
    """Write ``value`` to the BAR of ``BAR_SHAPES[shape]`` and ``command``, then run ``decode_window``.

    pre: 0 <= shape < len(BAR_SHAPES)
    pre: 0 <= command <= 0xFFFF
    pre: 0 <= value < 1 << (8 * register_bytes(shape))
    post: __return__ == spec_decode(shape, command, value)
    post: __return__ is None or __return__ % shape_size(shape) == 0
    """
    dtype, index = BAR_SHAPES[shape]
    lay = _layout(shape)
    config = bytearray(lay.image)
    _write(config, lay, COMMAND, command.to_bytes(2, "little"))
    span = bar_register_span(dtype, index)
    _write(config, lay, span.start, value.to_bytes(len(span), "little"))
    return decode_window(config, dtype, index)


@establishes("R-BAR-002", "R-BAR-003", "R-BAR-005", "R-BAR-007")
def bar_read_back(shape: int, value: int) -> int:
    """The BAR register of ``BAR_SHAPES[shape]`` read back after writing ``value`` (sizing).

    pre: 0 <= shape < len(BAR_SHAPES)
    pre: 0 <= value < 1 << (8 * register_bytes(shape))
    post: __return__ == spec_read_back(shape, value)
    """
    dtype, index = BAR_SHAPES[shape]
    lay = _layout(shape)
    config = bytearray(lay.image)
    span = bar_register_span(dtype, index)
    _write(config, lay, span.start, value.to_bytes(len(span), "little"))
    return int.from_bytes(config[span.start : span.stop], "little")


def spec_read_back(shape: int, value: int) -> int:
    """What the spec says a BAR register reads after writing ``value`` (R-BAR-002, R-BAR-003, R-BAR-007)."""
    dtype, index = BAR_SHAPES[shape]
    if index == ROM_INDEX:
        assert dtype.rom is not None
        return (value & ~(dtype.rom.size - 1) & 0xFFFF_F800) | (value & 1)
    bar = dtype.bar(index)
    assert bar is not None
    if bar.kind is BarKind.IO:
        return (value & ~(bar.size - 1) & 0xFFFF_FFFC) | 0x1
    width = 0xFFFF_FFFF_FFFF_FFFF if bar.kind is BarKind.MEM64 else 0xFFFF_FFFF
    type_bits = (0x4 if bar.kind is BarKind.MEM64 else 0x0) | (0x8 if bar.prefetchable else 0x0)
    return (value & ~(bar.size - 1) & width & ~0xF) | type_bits


# ------------------------------------------------------------------ tables
def inside(address: int, size_log2: int, base: int) -> bool:
    """Whether a BAR of size ``2**size_log2`` at ``base`` decodes ``address``."""
    return base <= address < base + (1 << size_log2)


@establishes("R-DS-006", "R-DS-009")
def table_lookup(size_log2: int, base: int, address: int) -> bool:
    """Insert one BAR in a real ``DecodeTable`` and look ``address`` up.

    pre: 0 <= size_log2 <= 63
    pre: 0 <= base and base % (1 << size_log2) == 0 and base + (1 << size_log2) <= 1 << 64
    pre: 0 <= address < 1 << 64
    post: __return__ == inside(address, size_log2, base)
    """
    table = DecodeTable(lowest_bdf_first)
    m = Mapping(Bdf(0, 1, 0), 0, base, size_log2, 1)
    table.insert(m)
    assert len(table) == 1, "a BAR is one table entry (R-DS-006)"
    assert table.size_classes() == 1
    return table.lookup(address) is m


@establishes("R-DS-006", "R-DS-009", "R-DEC-008")
def table_resolve(kx: int, bx: int, ky: int, by: int, address: int) -> str | None:
    """Two BARs, X at the lower BDF, in a real ``DecodeTable``: which one ``address`` resolves to.

    pre: 0 <= kx <= 63 and 0 <= bx and bx % (1 << kx) == 0 and bx + (1 << kx) <= 1 << 64
    pre: 0 <= ky <= 63 and 0 <= by and by % (1 << ky) == 0 and by + (1 << ky) <= 1 << 64
    pre: 0 <= address < 1 << 64
    post: __return__ == ("X" if inside(address, kx, bx) else "Y" if inside(address, ky, by) else None)
    """
    table = DecodeTable(lowest_bdf_first)
    x = Mapping(Bdf(0, 1, 0), 0, bx, kx, 1)
    y = Mapping(Bdf(0, 2, 0), 0, by, ky, 2)
    table.insert(x)
    table.insert(y)
    found = table.lookup(address)
    return "X" if found is x else "Y" if found is y else None


# -------------------------------------------------------------------- blob
def untraced(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on concrete copies of ``args``, with CrossHair's tracing off.

    The blob code packs with ``struct`` and hashes with ``hashlib``, which
    CrossHair cannot run on symbolic values. The blob contracts therefore
    call it through here: CrossHair chooses inputs that meet the
    preconditions, makes them concrete, and checks the postconditions on
    what the real code returns (a bounded, solver-guided search, not symbolic
    execution of the codec). Outside CrossHair this is a plain call.
    """
    try:
        from crosshair import NoTracing, deep_realize
    except ImportError:  # pragma: no cover - CrossHair is a dev dependency
        return fn(*args)
    concrete_args = deep_realize(args)
    with NoTracing():  # type: ignore[no-untyped-call]
        return fn(*concrete_args)


def build_record(
    name: str,
    fingerprint: bytes,
    config_head: bytes,
    express: bool,
    window_mask: int,
    window_base: int,
    page_count: int,
    page_bar: int,
    page_index: int,
    page_byte: int,
    extra: bytes,
) -> InstanceRecord:
    """An instance record from a few scalars: config and pages are zero-padded to their sizes,
    windows ``window_mask`` bit i decodes at ``window_base``, pages are consecutive."""
    size = 0x1000 if express else 0x100
    windows = tuple(window_base if window_mask >> i & 1 else None for i in range(7))
    pages = tuple(
        (page_bar, page_index + i, bytes([page_byte]).ljust(PAGE_SIZE, b"\x00")) for i in range(page_count)
    )
    return InstanceRecord(name, fingerprint, config_head.ljust(size, b"\x00"), windows, pages, extra)


def _encode(record: InstanceRecord) -> tuple[bytes, InstanceRecord]:
    return encode_instance(record), record


def _reencode(blob: bytes) -> bytes:
    return encode_instance(decode_instance(blob))


@establishes("R-BLOB-003", "R-BLOB-004")
def blob_round_trip(
    name: str,
    fingerprint: bytes,
    config_head: bytes,
    express: bool,
    window_mask: int,
    window_base: int,
    page_count: int,
    page_bar: int,
    page_index: int,
    page_byte: int,
    extra: bytes,
) -> tuple[bytes, InstanceRecord]:
    """Encode a small instance record; decoding gives it back, and re-encoding the same bytes.

    Returns the blob and the record it encodes.

    pre: 1 <= len(name) <= 4 and all(ord(c) < 0xD800 or 0xE000 <= ord(c) for c in name)
    pre: len(fingerprint) == 32 and len(config_head) <= 8 and len(extra) <= 8
    pre: 0 <= window_mask <= 0x7F and 0 <= window_base < 1 << 64
    pre: 0 <= page_count <= 2 and 0 <= page_bar <= 0xFF and 0 <= page_index < (1 << 64) - 1
    pre: 1 <= page_byte <= 0xFF
    post: untraced(decode_instance, __return__[0]) == __return__[1]
    post: untraced(_reencode, __return__[0]) == __return__[0]
    """
    record = untraced(
        build_record,
        name,
        fingerprint,
        config_head,
        express,
        window_mask,
        window_base,
        page_count,
        page_bar,
        page_index,
        page_byte,
        extra,
    )
    return untraced(_encode, record)


SAMPLE_BLOB = encode_instance(
    build_record("sample", bytes(range(32)), b"\x86\x80\x0e\x10", False, 0b1, 0xFEBC0000, 1, 0, 1, 0x5A, b"x")
)
"""A valid instance blob to corrupt."""


@establishes("R-BLOB-001")
def corrupted_blob_is_rejected(position: int, flip: int) -> bool:
    """Flip bits of one byte of a valid blob: the reader rejects it (digest, framing).

    pre: 0 <= position < len(SAMPLE_BLOB)
    pre: 1 <= flip <= 0xFF
    post: __return__
    """
    return untraced(_rejects_flip, position, flip)


def _rejects_flip(position: int, flip: int) -> bool:
    data = bytearray(SAMPLE_BLOB)
    data[position] ^= flip
    try:
        decode_instance(bytes(data))
    except BlobError:
        return True
    return False
