"""Configuration-space dumps as people have them: ``lspci -x`` text, a sysfs folder, a ``config`` file.

:func:`read_dumps` reads one source and gives one :class:`Dump` per PCI
function in it:

* ``lspci -x``, ``-xxx`` or ``-xxxx`` text, with or without ``-v``/``-vv``
  lines, one function or many - the text pciutils' own dump reader (what
  ``lspci -F`` uses) accepts. A function starts at a line ``bb:dd.f `` or
  ``dddd:bb:dd.f `` (4 or 5 domain digits; the BDF is followed by a space,
  as lspci prints a name after it); its rows are ``xx: `` or ``xxx: ``
  followed by 16 hex bytes separated by single spaces; an empty line ends
  it. Indented lines are its ``-v`` output; BAR and ROM sizes are taken from
  their ``[size=..]``. This reader is stricter than pciutils: rows must be
  whole, in order, without gaps or repeats, and add up to 64, 256 or 4096
  bytes.
* a Linux sysfs function folder (``/sys/bus/pci/devices/0000:00:04.0``):
  ``config``, and ``resource`` for the BAR and ROM sizes; the BDF comes from
  the folder's name when it ends in one.
* a lone binary ``config`` file (64, 256 or 4096 bytes).

A file is binary when it holds a zero byte (every configuration space has
reserved zero bytes; text never does), text otherwise. Every malformed
input is a :class:`DumpError` naming the file and the line or byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vpcid.conformance.inputs import MIB, decode_text, read_input
from vpcid.model.bdf import Bdf
from vpcid.model.errors import VpcidError

CONFIG_SIZES = (64, 256, 4096)
"""What a dump can show: the header (``lspci -x``, or sysfs read without privilege), 256 bytes, 4096 bytes."""
MAX_CONFIG = 4096
ROW = 16
TEXT_LIMIT = 16 * MIB
"""Largest text dump read: a whole machine at ``lspci -vv -xxxx`` is well under 1 MiB."""
RESOURCE_LIMIT = 64 * 1024
BAR_COUNT = 6
RESOURCE_ROM_LINE = 6
IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_ROM_SHADOW = 0x2
"""Linux's flag for a ROM copied to the legacy 0xC0000 window: the range is not the ROM BAR's."""

_HEADER = re.compile(r"^(?:([0-9a-fA-F]{4,5}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-9a-fA-F]) ")
"""pciutils' function header: ``##:##.# ``, ``####:##:##.# `` or ``#####:##:##.# ``."""
_ROW_START = re.compile(r"^([0-9a-fA-F]{2,8}): ")
"""pciutils' row start: 2-8 hex digits of offset, a colon and a space."""
_ROW_BYTES = re.compile(r"^[0-9a-fA-F]{2}(?: [0-9a-fA-F]{2})* ?$")
_REGION = re.compile(
    r"^\t(?:Region (?P<index>\d): )?(?P<virtual>\[virtual\] )?(?:Memory at|I/O ports at) .*?"
    r"(?: \[size=(?P<size>\d+)(?P<unit>[KMGT]?)\])?$"
)
_ROM = re.compile(
    r"^\t(?P<virtual>\[virtual\] )?Expansion ROM at .*?(?: \[size=(?P<size>\d+)(?P<unit>[KMGT]?)\])?$"
)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_FOLDER_BDF = re.compile(
    r"(?:^|[^0-9a-fA-F])(?:([0-9a-fA-F]{4,5}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-9a-fA-F])$"
)


class DumpError(VpcidError, ValueError):
    """A dump is malformed; the message names the file and the line or byte."""

    kind = "bad-dump"


@dataclass(frozen=True)
class Dump:
    """One PCI function's configuration bytes as a dump shows them, and the sizes it knows.

    ``bar_sizes`` has six entries when the source knows any size: a size in
    bytes, 0 for a slot the source shows no BAR in (the upper dword of a
    64-bit BAR included), None for a BAR whose size the source does not say.
    """

    source: str
    """``file`` or ``file:line`` where the function starts."""
    domain: int
    bdf: Bdf | None
    """From the dump text or the sysfs folder name; None for a lone config file."""
    config: bytes
    """64, 256 or 4096 bytes, as many as the dump shows."""
    bar_sizes: tuple[int | None, ...] | None
    rom_size: int | None
    text_lines: tuple[str, ...] = ()
    """For lspci text: the function's lines that are not hex rows (its ``-v`` output), as read,
    without the header line."""

    def __post_init__(self) -> None:
        if len(self.config) not in CONFIG_SIZES:
            raise DumpError(
                f"{self.source}: {len(self.config)} bytes of configuration space; 64, 256 or 4096"
            )
        if self.bar_sizes is not None and len(self.bar_sizes) != BAR_COUNT:
            raise DumpError(f"{self.source}: six BAR sizes, not {len(self.bar_sizes)}")

    @property
    def label(self) -> str:
        """``dddd:bb:dd.f`` when the domain is not 0, else ``bb:dd.f``; the source without a BDF."""
        if self.bdf is None:
            return self.source
        return f"{self.domain:04x}:{self.bdf}" if self.domain else str(self.bdf)


def read_dumps(path: Path) -> tuple[Dump, ...]:
    """Every function of the dump at ``path``: lspci text, a sysfs folder or a binary config file."""
    if path.is_dir():
        return (read_sysfs_function(path),)
    data = read_input(path, TEXT_LIMIT, DumpError)
    if b"\x00" in data:
        _check_size(data, str(path))
        return (Dump(str(path), 0, None, data, None, None),)
    return parse_lspci_text(decode_text(data, path, DumpError), str(path))


def _check_size(data: bytes, where: str) -> None:
    if len(data) < CONFIG_SIZES[0]:
        raise DumpError(f"{where}: truncated: {len(data)} bytes, less than the 64-byte header")
    if len(data) > MAX_CONFIG:
        raise DumpError(f"{where}: oversized: {len(data)} bytes, configuration space is at most 4096")
    if len(data) not in CONFIG_SIZES:
        raise DumpError(f"{where}: {len(data)} bytes; a configuration space dump has 64, 256 or 4096")


# ------------------------------------------------------------------ sysfs


def read_sysfs_function(folder: Path) -> Dump:
    """A sysfs function folder: ``config`` (required) and ``resource`` (BAR and ROM sizes, if present)."""
    config_path = folder / "config"
    if not config_path.exists():
        raise DumpError(f"{folder}: no 'config' file: not a sysfs PCI function folder")
    config = read_input(config_path, MAX_CONFIG, DumpError)
    _check_size(config, str(config_path))
    domain, bdf = _folder_bdf(folder)
    resource_path = folder / "resource"
    bars: tuple[int | None, ...] | None = None
    rom: int | None = None
    if resource_path.exists():
        bars, rom = parse_resource(
            decode_text(read_input(resource_path, RESOURCE_LIMIT, DumpError), resource_path, DumpError),
            str(resource_path), config,
        )  # fmt: skip
    return Dump(str(folder), domain, bdf, config, bars, rom)


def _folder_bdf(folder: Path) -> tuple[int, Bdf | None]:
    match = _FOLDER_BDF.search(folder.name)
    if match is None:
        return 0, None
    return int(match[1] or "0", 16), _bdf(match[2], match[3], match[4], f"{folder}: folder name")


def parse_resource(text: str, where: str, config: bytes) -> tuple[tuple[int | None, ...], int | None]:
    """BAR sizes (six) and ROM size from a sysfs ``resource`` file: line i is ``start end flags``.

    A line's size is ``end - start + 1`` when start or end is non-zero, else 0.
    A range the kernel gives a BAR slot whose register disagrees in kind (I/O
    against memory: a legacy IDE range, lspci's ``[virtual]``) and a ROM
    shadowed at 0xC0000 are not the device's BARs: size unknown (None).
    """
    lines = text.splitlines()
    if len(lines) < RESOURCE_ROM_LINE + 1:
        raise DumpError(
            f"{where}: {len(lines)} lines; a resource file has a line per BAR and one for the ROM"
        )
    sizes: list[int | None] = []
    for number, line in enumerate(lines[: RESOURCE_ROM_LINE + 1], start=1):
        fields = line.split()
        if len(fields) != 3 or not all(re.fullmatch(r"0x[0-9a-fA-F]{1,16}", f) for f in fields):
            raise DumpError(f"{where} line {number}: expected 'start end flags' in 0x hex, got {line!r}")
        start, end, flags = (int(f, 16) for f in fields)
        if not start and not end:
            sizes.append(0)
            continue
        size = end - start + 1
        if end < start or size & (size - 1):
            raise DumpError(f"{where} line {number}: range {start:#x}-{end:#x} is not a power-of-two size")
        index = number - 1
        if index < BAR_COUNT and len(config) >= 0x28:
            register = int.from_bytes(config[0x10 + 4 * index : 0x14 + 4 * index], "little")
            is_io = bool(register & 0x1)
            if (flags & IORESOURCE_IO and not is_io) or (flags & IORESOURCE_MEM and is_io):
                sizes.append(None)
                continue
        if index == RESOURCE_ROM_LINE and flags & IORESOURCE_ROM_SHADOW:
            sizes.append(None)
            continue
        sizes.append(size)
    return tuple(sizes[:BAR_COUNT]), sizes[RESOURCE_ROM_LINE]


# ------------------------------------------------------------------ lspci text


@dataclass
class _Function:
    """A function being read: where it starts, its bytes so far, its text lines."""

    line: int
    domain: int
    bdf: Bdf
    data: bytearray
    text: list[str]


def parse_lspci_text(text: str, where: str) -> tuple[Dump, ...]:
    """The functions of ``lspci -x``/``-xxx``/``-xxxx`` text (optionally with ``-v``/``-vv`` lines)."""
    functions: list[_Function] = []
    seen: dict[tuple[int, Bdf], int] = {}
    current: _Function | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        place = f"{where} line {number}"
        header = _HEADER.match(line)
        if header is not None:
            _finish(current, where)
            domain = int(header[1] or "0", 16)
            bdf = _bdf(header[2], header[3], header[4], place)
            if (domain, bdf) in seen:
                raise DumpError(f"{place}: function {bdf} appears twice (first at line {seen[domain, bdf]})")
            seen[domain, bdf] = number
            current = _Function(number, domain, bdf, bytearray(), [])
            functions.append(current)
        elif not line:
            _finish(current, where)
            current = None
        elif (row := _ROW_START.match(line)) is not None:
            if current is None:
                raise DumpError(f"{place}: a hex row outside a function (no 'bb:dd.f ...' line before it)")
            _row(current, int(row[1], 16), line[row.end() :], place)
        elif current is not None:
            current.text.append(line)
    _finish(current, where)
    if not functions:
        raise DumpError(
            f"{where}: no function found: neither lspci -x text (a 'bb:dd.f ...' line, then hex rows) "
            "nor a binary configuration space (which has zero bytes)"
        )
    return tuple(_dump(f, where) for f in functions)


def _bdf(bus: str, device: str, function: str, place: str) -> Bdf:
    try:
        return Bdf(int(bus, 16), int(device, 16), int(function, 16))
    except VpcidError as exc:
        raise DumpError(f"{place}: {bus}:{device}.{function} is not a BDF: {exc}") from None


def _row(function: _Function, offset: int, rest: str, place: str) -> None:
    if not _ROW_BYTES.match(rest):
        raise DumpError(f"{place}: a row is 16 hex bytes separated by single spaces, got {rest!r}")
    values = bytes.fromhex(rest)
    if len(values) != ROW:
        raise DumpError(f"{place}: short row: {len(values)} bytes, a row has 16")
    if offset >= MAX_CONFIG:
        raise DumpError(f"{place}: row {offset:#x} lies past 0xfff, the end of configuration space")
    expected = len(function.data)
    if offset != expected:
        if offset < expected:
            raise DumpError(f"{place}: row {offset:#x} repeats or goes back (the next row is {expected:#x})")
        raise DumpError(f"{place}: row {offset:#x} leaves a gap (the next row is {expected:#x})")
    function.data += values


def _finish(function: _Function | None, where: str) -> None:
    if function is None:
        return
    size = len(function.data)
    if size == 0:
        raise DumpError(f"{where} line {function.line}: function {function.bdf} has no hex rows")
    if size not in CONFIG_SIZES:
        raise DumpError(
            f"{where} line {function.line}: function {function.bdf} has {size:#x} bytes of rows; "
            "a dump has 64, 256 or 4096 (0x40, 0x100, 0x1000)"
        )


def _dump(function: _Function, where: str) -> Dump:
    bars, rom = _verbose_sizes(function, where)
    return Dump(f"{where}:{function.line}", function.domain, function.bdf, bytes(function.data), bars, rom,
                tuple(function.text))  # fmt: skip


def _size(match: re.Match[str], place: str) -> int | None:
    if match["size"] is None:
        return None
    size = int(match["size"]) * _UNITS[match["unit"]]
    if size & (size - 1) or not size:
        raise DumpError(f"{place}: [size={match['size']}{match['unit']}] is not a power of two")
    return size


def _verbose_sizes(function: _Function, where: str) -> tuple[tuple[int | None, ...] | None, int | None]:
    """BAR and ROM sizes from the ``-v`` lines: ``Region N: ... [size=..]`` and ``Expansion ROM ...``.

    With ``-vv`` each region names its BAR; with ``-v`` the regions are the
    slots whose register is non-zero, in order (a 64-bit BAR counts once),
    and when their count differs the sizes are unknown. A slot no region
    names has size 0 when any line of the function carries a size (lspci
    then knew every BAR), else unknown. ``[virtual]`` regions are the
    operating system's, not the device's.
    """
    regions: list[tuple[int | None, int | None]] = []
    rom: int | None = None
    rom_seen = any_size = False
    slot_count = _bar_slots(bytes(function.data))
    for k, line in enumerate(function.text, start=1):
        place = f"{where} line {function.line + k}"
        if (match := _REGION.match(line)) is not None:
            size = _size(match, place)
            any_size |= size is not None
            if not match["virtual"]:
                index = None if match["index"] is None else int(match["index"])
                if index is not None and index >= slot_count:
                    raise DumpError(
                        f"{place}: region {index}: a type 0 header has BARs 0-5, a bridge's 0-1, a CardBus "
                        "bridge's 0"
                    )
                regions.append((index, size))
        elif (match := _ROM.match(line)) is not None:
            size = _size(match, place)
            any_size |= size is not None
            if not match["virtual"]:
                rom, rom_seen = size, True
    if not regions and not rom_seen and not any_size:
        return None, None
    if any_size and not rom_seen:
        rom = 0
    sizes: list[int | None] = [0 if any_size else None] * BAR_COUNT
    if all(index is not None for index, _ in regions):
        for index, size in regions:
            assert index is not None
            sizes[index] = size
        return tuple(sizes), rom
    slots = _shown_slots(bytes(function.data))
    if len(slots) != len(regions):
        return (None,) * BAR_COUNT, rom
    for slot, (_, size) in zip(slots, regions, strict=True):
        sizes[slot] = size
    return tuple(sizes), rom


def _bar_slots(config: bytes) -> int:
    """BAR slots of the header: six (type 0), two (a type 1 bridge, R-BRG-001), one (a CardBus bridge)."""
    header = config[0x0E] & 0x7F if len(config) > 0x0E else 0
    return {1: 2, 2: 1}.get(header, BAR_COUNT)


def _shown_slots(config: bytes) -> list[int]:
    """BAR slots whose register is non-zero, a 64-bit BAR once: what ``lspci -v`` lists from a dump
    (a bridge's two slots only: its bus numbers and windows follow them)."""
    slots: list[int] = []
    slot = 0
    count = _bar_slots(config)
    while slot < count and len(config) >= 0x28:
        register = int.from_bytes(config[0x10 + 4 * slot : 0x14 + 4 * slot], "little")
        if register in (0, 0xFFFF_FFFF):
            slot += 1
            continue
        slots.append(slot)
        slot += 2 if not register & 0x1 and register & 0x6 == 0x4 else 1
    return slots
