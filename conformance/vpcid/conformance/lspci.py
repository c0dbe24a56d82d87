"""``vpcid lspci``: PCI functions shown the way pciutils' ``lspci`` shows them.

One renderer works from configuration bytes, as lspci does, whatever they
come from: a machine's VM (each function's space read through the data
manager's ``config_read``, region sizes taken from its device type, and the
manager's tables telling whether each region really decodes) or a dump in
``lspci -x``/``-xxx``/``-xxxx`` text (``-F``). The formats follow pciutils
3.9 (``lspci.c``, ``ls-caps.c``, ``ls-ecaps.c``, ``ls-caps-vendor.c``,
``ls-vpd.c``): the terse line, ``-v``/``-vv``/``-vvv`` detail, the hex dumps,
``-n``/``-nn`` and the ``-s``/``-d`` filters.

Where vpcid knows more than a dump tells, it says so in pciutils' own
style: ``[size=...]`` for a machine's regions, ``[not decoding]`` or
``[shadowed by BDF BAR n]`` where the manager's tables disagree with the
command register (R-DS-007), ``[not forwarded]`` for a decoding BAR whose
base no bridge above it forwards, and a ``VPCID device type`` line where
lspci names the kernel driver. ``-t`` draws the bus tree (:func:`render_tree`);
a machine's functions below bridges are at the addresses routing gives them
now, and those no bus number reaches are not listed (a guest cannot see them).
Rendering reads only: the VM is left as found.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vpcid.conformance.dumps import read_dumps
from vpcid.conformance.pciids import IdNames
from vpcid.model.bdf import Bdf
from vpcid.model.devicetype import ROM_INDEX, BarKind, BarSpec
from vpcid.model.errors import VpcidError
from vpcid.model.manager import DataManager, VmTables

# ----------------------------------------------------------- register offsets
VENDOR_ID, DEVICE_ID, COMMAND, STATUS = 0x00, 0x02, 0x04, 0x06
REVISION, PROG_IF, CLASS_DEVICE = 0x08, 0x09, 0x0A
CACHE_LINE_SIZE, LATENCY_TIMER, HEADER_TYPE, BIST = 0x0C, 0x0D, 0x0E, 0x0F
BAR0, SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID, ROM_ADDRESS = 0x10, 0x2C, 0x2E, 0x30
CAPABILITY_LIST, INTERRUPT_LINE, INTERRUPT_PIN, MIN_GNT, MAX_LAT = 0x34, 0x3C, 0x3D, 0x3E, 0x3F
BRIDGE_ROM_ADDRESS, BRIDGE_CONTROL = 0x38, 0x3E
CARDBUS_CAPABILITY_LIST = 0x14
CARDBUS_SUBSYSTEM_VENDOR_ID, CARDBUS_SUBSYSTEM_ID, CARDBUS_LEGACY_BASE = 0x40, 0x42, 0x44

HEADER_NORMAL, HEADER_BRIDGE, HEADER_CARDBUS = 0, 1, 2
CMD_IO, CMD_MEMORY, CMD_MASTER = 0x1, 0x2, 0x4
STATUS_CAP_LIST = 0x10
BAR_IO = 0x1
BAR_MEM_TYPE_MASK, BAR_MEM_TYPE_32, BAR_MEM_TYPE_1M, BAR_MEM_TYPE_64 = 0x6, 0x0, 0x2, 0x4
BAR_MEM_PREFETCH = 0x8
ROM_ENABLE = 0x1
ROM_ADDRESS_MASK = ~0x7FF
DWORD_ONES = 0xFFFF_FFFF
CLASS_PCI_BRIDGE, BASE_CLASS_BRIDGE = 0x0604, 0x06
STANDARD_HEADER = 64
"""Bytes every function shows (lspci reads these first; a CardBus bridge has 64 more)."""
CONVENTIONAL_SPACE, EXTENDED_SPACE = 256, 4096
EXTENDED_CAPABILITIES = 0x100

EXP_TYPE_ENDPOINT, EXP_TYPE_LEGACY_ENDPOINT, EXP_TYPE_ROOT_PORT = 0x0, 0x1, 0x4
EXP_TYPE_UPSTREAM, EXP_TYPE_DOWNSTREAM, EXP_TYPE_PCI_BRIDGE = 0x5, 0x6, 0x7
EXP_TYPE_PCIE_BRIDGE, EXP_TYPE_ROOT_INTEGRATED, EXP_TYPE_ROOT_EVENT_COLLECTOR = 0x8, 0x9, 0xA


class LspciError(VpcidError, ValueError):
    """A bad ``-s``/``-d`` filter or source for ``vpcid lspci``; the message says which and why."""

    kind = "bad-lspci-argument"


# ===================================================================== what is shown
@dataclass(frozen=True, order=True, slots=True)
class PciAddress:
    """Domain (segment), bus, device and function, ordered the way lspci sorts them."""

    domain: int
    bus: int
    device: int
    function: int

    def text(self, *, domain: bool) -> str:
        """``bb:dd.f``, or ``dddd:bb:dd.f`` when domains are shown."""
        slot = f"{self.bus:02x}:{self.device:02x}.{self.function}"
        return f"{self.domain:04x}:{slot}" if domain else slot


@dataclass(frozen=True, slots=True)
class PciFunction:
    """One function as lspci sees it: its configuration bytes and what the source knows beyond them.

    ``config`` holds the bytes that can be read, from offset 0: 64 from an
    ``lspci -x`` dump, 256 or 4096 from a machine or a fuller dump.
    ``region_sizes`` (six BARs, 0 where none) and ``rom_size`` are None
    when the source does not know them, as for a dump.
    """

    address: PciAddress
    config: bytes
    region_sizes: tuple[int, ...] | None = None
    rom_size: int | None = None
    region_notes: Mapping[int, str] = field(default_factory=dict)
    """vpcid's decode markers by region (6: the ROM), each with its leading space."""
    device_type: str | None = None
    """The vpcid device type of a machine's function; None for a dump."""


@dataclass(frozen=True, slots=True)
class SlotFilter:
    """``-s [[[[domain]:]bus]:][device][.[function]]``; None fields match anything."""

    domain: int | None = None
    bus: int | None = None
    device: int | None = None
    function: int | None = None

    @classmethod
    def parse(cls, text: str) -> SlotFilter:
        """pciutils' slot syntax; ``*`` or an empty field means any."""
        if len(text) >= 64:
            raise LspciError("-s: Expression too long")
        fields = text.split(":")
        if len(fields) > 3:
            raise LspciError("-s: Too many fields")
        domain = bus = None
        if len(fields) == 3:
            domain = _filter_field(fields.pop(0), 0x7FFF_FFFF, "-s: Invalid domain number")
        if len(fields) == 2:
            bus = _filter_field(fields.pop(0), 0xFF, "-s: Invalid bus number")
        device = function = None
        if _defined(fields[0]):
            parts = fields[0].split(".")
            if len(parts) > 2:
                raise LspciError("-s: Invalid slot/function number")
            device = _filter_field(parts[0], 0x1F, "-s: Invalid slot number")
            function = _filter_field(parts[1], 7, "-s: Invalid function number") if len(parts) == 2 else None
        return cls(domain, bus, device, function)

    def matches(self, address: PciAddress) -> bool:
        wanted = (self.domain, self.bus, self.device, self.function)
        have = (address.domain, address.bus, address.device, address.function)
        return all(want is None or want == got for want, got in zip(wanted, have, strict=True))


@dataclass(frozen=True, slots=True)
class IdFilter:
    """``-d [vendor]:[device][:class[:prog-if]]``; a class digit ``x`` matches any digit there."""

    vendor: int | None = None
    device: int | None = None
    device_class: int | None = None
    class_mask: int = 0xFFFF_FFFF
    prog_if: int | None = None

    @classmethod
    def parse(cls, text: str) -> IdFilter:
        if len(text) >= 64:
            raise LspciError("-d: Expression too long")
        fields = text.split(":")
        if len(fields) > 4:
            raise LspciError("-d: Too many fields")
        if len(fields) < 2:
            raise LspciError("-d: At least two fields must be given")
        fields += [""] * (4 - len(fields))
        vendor = _filter_field(fields[0], 0xFFFF, "-d: Invalid vendor ID")
        device = _filter_field(fields[1], 0xFFFF, "-d: Invalid device ID")
        device_class, mask = _class_field(fields[2])
        prog_if = _filter_field(fields[3], 0xFF, "-d: Invalid programming interface code")
        return cls(vendor, device, device_class, mask, prog_if)

    def matches(self, config: _Config) -> bool:
        if self.vendor is not None and config.word(VENDOR_ID) != self.vendor:
            return False
        if self.device is not None and config.word(DEVICE_ID) != self.device:
            return False
        if (
            self.device_class is not None
            and (self.device_class ^ config.word(CLASS_DEVICE)) & self.class_mask
        ):
            return False
        return self.prog_if is None or config.byte(PROG_IF) == self.prog_if


def _defined(text: str) -> bool:
    return text not in ("", "*")


def _filter_field(text: str, bound: int, problem: str) -> int | None:
    """A hex filter field no larger than ``bound``; None when empty or ``*``."""
    if not _defined(text):
        return None
    if any(c not in "0123456789abcdefABCDEF" for c in text) or int(text, 16) > bound:
        raise LspciError(problem)
    return int(text, 16)


def _class_field(text: str) -> tuple[int | None, int]:
    """The ``-d`` class field: hex digits, ``x`` for a digit that may be anything."""
    if not _defined(text):
        return None, 0xFFFF_FFFF
    value = bound = 0
    mask = 0xFFFF_FFFF
    for char in text:
        if char in "xX":
            value, bound, mask = value << 4, (bound << 4) | 1, (mask << 4) & 0xFFFF_FFFF
        elif char in "0123456789abcdefABCDEF":
            digit = int(char, 16)
            value, bound, mask = (value << 4) | digit, (bound << 4) | digit, ((mask << 4) | 0xF) & 0xFFFF_FFFF
        else:
            raise LspciError("-d: Invalid class code")
        if bound > 0xFFFF:
            raise LspciError("-d: Invalid class code")
    return value, mask


@dataclass(frozen=True, slots=True)
class LspciOptions:
    """What to show: the counts of ``-v``, ``-x`` and ``-n``, ``-D``, and the filters."""

    verbose: int = 0
    hex_dump: int = 0
    numeric: int = 0
    always_domains: bool = False
    slot: SlotFilter | None = None
    ids: IdFilter | None = None
    tree: bool = False
    """``-t``: the bus tree (:func:`render_tree`) instead of the listing."""


# ===================================================================== sources
def machine_functions(manager: DataManager, vm_id: int) -> list[PciFunction]:
    """Every function of a VM: configuration read through the manager, sizes from its type (R-DS-007).

    Only reads are made (``config_read``, ``tables``, ``resolve``), so the VM
    is left exactly as it was found.
    """
    tables = manager.tables(vm_id)
    decoders = _decoders(manager, vm_id, tables)
    functions = []
    for bdf, type_name in tables.config:
        dtype = manager.device_type(vm_id, bdf)
        config = b"".join(
            manager.config_read(vm_id, bdf, offset, 4).to_bytes(4, "little")
            for offset in range(0, dtype.config_size, 4)
        )
        sizes = tuple(bar.size if (bar := dtype.bar(i)) is not None else 0 for i in range(6))
        functions.append(
            PciFunction(
                address=PciAddress(0, bdf.bus, bdf.device, bdf.function),
                config=config,
                region_sizes=sizes,
                rom_size=dtype.rom.size if dtype.rom is not None else 0,
                region_notes=_decode_notes(bdf, dtype.implemented, config, dtype.bars, decoders),
                device_type=type_name,
            )
        )
    return functions


Decoders = dict[tuple[Bdf, int], tuple[Bdf, int] | None]
"""(BDF, BAR) of every decoding window -> the (BDF, BAR) that wins its base address."""


def _decoders(manager: DataManager, vm_id: int, tables: VmTables) -> Decoders:
    spaces = (("io", tables.io), ("memory", tables.memory))
    return {
        (entry.bdf, entry.bar): manager.resolve(vm_id, space, entry.base)
        for space, entries in spaces
        for entry in entries
    }


def _decode_notes(
    bdf: Bdf, implemented: Sequence[int], config: bytes, bars: Sequence[BarSpec | None], decoders: Decoders
) -> dict[int, str]:
    """Why an enabled region does not decode its base: out of its space, another window wins, or a bridge
    above it does not forward its base (R-BRG: the BAR decodes, but no access reaches it there)."""
    command = int.from_bytes(config[COMMAND : COMMAND + 2], "little")
    notes: dict[int, str] = {}
    for index in implemented:
        if index == ROM_INDEX:
            rom = int.from_bytes(config[ROM_ADDRESS : ROM_ADDRESS + 4], "little")
            enabled = bool(rom & ROM_ENABLE) and bool(command & CMD_MEMORY)
        else:
            bar = bars[index]
            is_io = bar is not None and bar.kind is BarKind.IO
            enabled = bool(command & (CMD_IO if is_io else CMD_MEMORY))
        if not enabled:
            continue
        window = (bdf, index)
        if window not in decoders:
            notes[index] = " [not decoding]"
            continue
        owner = decoders[window]
        if owner is None:
            notes[index] = " [not forwarded]"
        elif owner != window:
            other, other_index = owner
            what = "ROM" if other_index == ROM_INDEX else f"BAR {other_index}"
            notes[index] = f" [shadowed by {other} {what}]"
    return notes


def dump_functions(path: Path) -> list[PciFunction]:
    """The functions of a dump (``-F``): lspci hex text, a sysfs function folder or a config file.

    Read by :func:`vpcid.conformance.dumps.read_dumps`; region sizes are shown
    where the dump says them (``[size=...]`` lines, sysfs ``resource``). A lone
    config file has no address, so it shows as ``00:00.0``.
    """
    functions = []
    for dump in read_dumps(path):
        bdf = dump.bdf if dump.bdf is not None else Bdf(0, 0, 0)
        sizes = None if dump.bar_sizes is None else tuple(size or 0 for size in dump.bar_sizes)
        functions.append(
            PciFunction(
                address=PciAddress(dump.domain, bdf.bus, bdf.device, bdf.function),
                config=dump.config,
                region_sizes=sizes,
                rom_size=dump.rom_size,
            )
        )
    return functions


# ===================================================================== rendering
def render(functions: Iterable[PciFunction], options: LspciOptions, names: IdNames) -> str:
    """The lspci listing of ``functions`` (sorted by address), filtered and detailed per ``options``."""
    if options.tree:
        return render_tree(functions, options, names)
    chosen = sorted(functions, key=lambda function: function.address)
    domains = options.always_domains or any(function.address.domain for function in chosen)
    out: list[str] = []
    for function in chosen:
        config = _Config(function.config)
        if options.slot is not None and not options.slot.matches(function.address):
            continue
        if options.ids is not None and not options.ids.matches(config):
            continue
        _Device(function, config, options, names, domains, out).show()
    return "".join(out)


def render_lspci(
    manager: DataManager, vm_id: int, options: LspciOptions | None = None, names: IdNames | None = None
) -> str:
    """A VM's functions as lspci lists them (:func:`machine_functions`); numbers only without ``names``."""
    return render(machine_functions(manager, vm_id), options or LspciOptions(), names or IdNames(None))


def format_size(size: int) -> str:
    """lspci's ``show_size`` text: the size in the largest whole unit of K, M, G, T."""
    step = 0
    while step < 4 and size % 1024 == 0:
        size //= 1024
        step += 1
    return f"{size & DWORD_ONES}{('', 'K', 'M', 'G', 'T')[step]}"


# ===================================================================== the bus tree (-t)
TREE_LINE_LIMIT = 1023
"""pciutils draws each line into a 1024-byte buffer: a longer line is cut there and ends in "..."."""
HOST_BUSES = 0xFFFF_FFFF
"""The host bridge's primary and subordinate bus: pciutils' ``~0``. Every bus number falls in its range,
and as its span (subordinate minus primary) is 0 and it is tried first, every bridge hangs off it."""


@dataclass(eq=False, slots=True)
class _TreeBus:
    """A bus of the drawn tree: its number and the functions found on it, in address order."""

    domain: int
    number: int
    functions: list[PciFunction] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _TreeBridge:
    """The host bridge (``function`` None) or a bridge function: the bus numbers its header names.

    ``children`` are the bridges whose primary bus is in this one's range;
    ``buses`` the buses drawn below it (its secondary bus first).
    """

    domain: int
    primary: int
    secondary: int
    subordinate: int
    function: PciFunction | None = None
    children: list[_TreeBridge] = field(default_factory=list)
    buses: list[_TreeBus] = field(default_factory=list)

    def bus(self, domain: int, number: int) -> _TreeBus | None:
        return next((bus for bus in self.buses if bus.domain == domain and bus.number == number), None)

    def new_bus(self, domain: int, number: int) -> _TreeBus:
        bus = _TreeBus(domain, number)
        self.buses.append(bus)
        return bus


def render_tree(functions: Iterable[PciFunction], options: LspciOptions, names: IdNames) -> str:
    """``lspci -t``: the functions as a tree of buses, bridges and devices, as pciutils 3.9 draws it.

    Like lspci on a dump, the tree comes from the bytes alone: a bridge
    function (base class 06, header type 1 or 2) owns the bus numbers between
    its secondary and subordinate registers, and each function sits on the bus
    its address names, below the bridge whose range holds it. A machine's
    functions are at the addresses routing gives them now (R-BRG), so the tree
    is the one a guest's lspci draws; functions no bus number reaches are not
    listed, as a guest cannot see them. ``-v`` adds each function's name,
    ``-s``/``-d`` keep the branches that lead to a matching function.
    """
    chosen = sorted(functions, key=lambda function: function.address)
    host = _grow_tree(chosen)
    wanted = None if options.slot is None and options.ids is None else options
    drawing = _TreeDrawing(host, wanted, names if options.verbose else None)
    drawing.bridge(host, [], 0, 0)
    return "".join(drawing.out)


def _is_bridge(function: PciFunction) -> bool:
    config = _Config(function.config)
    header_type = config.byte(HEADER_TYPE) & 0x7F
    return config.word(CLASS_DEVICE) >> 8 == BASE_CLASS_BRIDGE and header_type in (
        HEADER_BRIDGE,
        HEADER_CARDBUS,
    )


def _grow_tree(functions: Sequence[PciFunction]) -> _TreeBridge:
    """pciutils' ``grow_tree``: bridges from the headers, each under the bridge with the narrowest range
    that holds its primary bus, then every function on its bus (a bus no bridge claims hangs off the host).
    """
    host = _TreeBridge(0, HOST_BUSES, 0, HOST_BUSES)
    bridges = [host]
    for function in functions:
        if _is_bridge(function):
            config = _Config(function.config)  # type 1 and CardBus keep the three bus numbers at 0x18
            bridges.append(
                _TreeBridge(
                    function.address.domain, config.byte(0x18), config.byte(0x19), config.byte(0x1A), function
                )
            )
    for bridge in bridges:
        best: _TreeBridge | None = None
        for candidate in bridges:
            if candidate is bridge or not (candidate is host or candidate.domain == bridge.domain):
                continue
            if not candidate.secondary <= bridge.primary <= candidate.subordinate:
                continue
            if best is None or _span(best) > _span(candidate):
                best = candidate
        if best is not None:
            best.children.insert(0, bridge)  # pciutils pushes each child onto the front of the list
    for bridge in bridges:
        if bridge.bus(bridge.domain, bridge.secondary) is None:
            bridge.new_bus(bridge.domain, bridge.secondary)
    for function in functions:
        _insert(function, host, set())
    return host


def _span(bridge: _TreeBridge) -> int:
    """Subordinate minus primary as pciutils computes it, in unsigned 32-bit arithmetic."""
    return (bridge.subordinate - bridge.primary) & 0xFFFF_FFFF


def _insert(function: PciFunction, bridge: _TreeBridge, visiting: set[int]) -> None:
    """pciutils' ``insert_dev``: onto ``bridge``'s bus of that number, else down into the child whose range
    holds it, else onto a new bus of ``bridge``. A bridge reached twice (bus numbers that make the tree a
    cycle, where pciutils would recurse without end) takes the function on a new bus of its own."""
    address = function.address
    bus = bridge.bus(address.domain, address.bus)
    if bus is None:
        visiting.add(id(bridge))
        for child in bridge.children:
            if (
                child.domain == address.domain
                and child.secondary <= address.bus <= child.subordinate
                and id(child) not in visiting
            ):
                _insert(function, child, visiting)
                return
        bus = bridge.new_bus(address.domain, address.bus)
    bus.functions.append(function)


class _TreeDrawing:
    """pciutils' ``show_tree_*``: one line buffer, written left to right and reused below each branch."""

    def __init__(self, host: _TreeBridge, wanted: LspciOptions | None, names: IdNames | None) -> None:
        self.host = host
        self.wanted = wanted
        self.names = names
        self.bridges: dict[int, _TreeBridge] = {}
        self._collect(host, set())
        self.out: list[str] = []

    def _collect(self, bridge: _TreeBridge, seen: set[int]) -> None:
        if id(bridge) in seen:
            return
        seen.add(id(bridge))
        if bridge.function is not None:
            self.bridges.setdefault(id(bridge.function), bridge)
        for child in bridge.children:
            self._collect(child, seen)

    @staticmethod
    def put(line: list[str], at: int, text: str) -> int:
        """``tree_printf``: ``text`` written at ``at``; where the next write goes.

        Text that does not fit the buffer is cut and ended with a NUL there, as
        C's ``vsnprintf`` ends it; :meth:`emit` stops at that NUL.
        """
        room = TREE_LINE_LIMIT - at
        if room <= 0:
            return at
        del line[at:]
        if len(text) < room:
            line.extend(text)
            return at + len(text)
        line.extend(text[: room - 1] + "\0")
        return at + room

    def emit(self, line: list[str], at: int) -> None:
        """``print_it``: the line up to ``at``; then branches (``+``, ``|``) become ``|``, the rest blanks."""
        del line[at:]
        text = "".join(line).split("\0")[0]
        self.out.append(text + ("..." if at >= TREE_LINE_LIMIT else "") + "\n")
        line[: len(text)] = ["|" if char in "+|" else " " for char in text]

    def matches(self, function: PciFunction) -> bool:
        wanted = self.wanted
        assert wanted is not None
        if wanted.slot is not None and not wanted.slot.matches(function.address):
            return False
        return wanted.ids is None or wanted.ids.matches(_Config(function.config))

    def shows_function(self, function: PciFunction, depth: int = 0) -> bool:
        """``check_dev_filter``: it matches, or a bus below it (a bridge) holds one that does."""
        if self.wanted is None or self.matches(function):
            return True
        bridge = self.bridges.get(id(function))
        return (
            bridge is not None and depth < 256 and any(self.shows_bus(bus, depth + 1) for bus in bridge.buses)
        )

    def shows_bus(self, bus: _TreeBus, depth: int = 0) -> bool:
        return self.wanted is None or any(self.shows_function(function, depth) for function in bus.functions)

    def function(self, function: PciFunction, line: list[str], at: int, depth: int) -> None:
        address = function.address
        at = self.put(line, at, f"{address.device:02x}.{address.function:x}")
        bridge = self.bridges.get(id(function))
        if bridge is not None and depth < 256:
            if bridge.secondary == 0:
                at = self.put(line, at, "-")
            elif bridge.secondary == bridge.subordinate:
                at = self.put(line, at, f"-[{bridge.secondary:02x}]-")
            else:
                at = self.put(line, at, f"-[{bridge.secondary:02x}-{bridge.subordinate:02x}]-")
            self.bridge(bridge, line, at, depth + 1)
            return
        if self.names is not None:
            config = _Config(function.config)
            name = self.names.vendor_device(config.word(VENDOR_ID), config.word(DEVICE_ID))
            at = self.put(line, at, f"  {name}")
        self.emit(line, at)

    def bus(self, bus: _TreeBus, line: list[str], at: int, depth: int) -> None:
        functions = bus.functions
        if not functions:
            self.emit(line, at)
        elif len(functions) == 1:
            if self.shows_function(functions[0]):
                self.function(functions[0], line, self.put(line, at, "--"), depth)
            else:
                self.emit(line, at)
        else:
            empty = True
            for function in functions[:-1]:
                if self.shows_function(function):
                    self.function(function, line, self.put(line, at, "+-"), depth)
                    empty = False
            if self.shows_function(functions[-1]):
                self.function(functions[-1], line, self.put(line, at, "\\-"), depth)
                empty = False
            if empty:
                self.emit(line, at)

    def bridge(self, bridge: _TreeBridge, line: list[str], at: int, depth: int) -> None:
        at = self.put(line, at, "-")
        buses = bridge.buses
        if len(buses) == 1:
            if self.shows_bus(buses[0]):
                if bridge is self.host:
                    at = self.put(line, at, f"[{bridge.domain:04x}:{buses[0].number:02x}]-")
                self.bus(buses[0], line, at, depth)
            else:
                self.emit(line, at)
            return
        empty = True
        for index, bus in enumerate(buses):
            if self.shows_bus(bus):
                corner = "\\-" if index == len(buses) - 1 else "+-"
                self.bus(
                    bus, line, self.put(line, at, f"{corner}[{bus.domain:04x}:{bus.number:02x}]-"), depth
                )
                empty = False
        if empty:
            self.emit(line, at)


class _Config:
    """Configuration bytes read the way lspci reads them; bytes past the end read as 0xff."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def fetch(self, offset: int, length: int) -> bool:
        """Whether ``length`` bytes at ``offset`` are known (pciutils' ``config_fetch``)."""
        return offset + length <= len(self.data)

    def byte(self, offset: int) -> int:
        return self.data[offset] if 0 <= offset < len(self.data) else 0xFF

    def word(self, offset: int) -> int:
        return self.byte(offset) | self.byte(offset + 1) << 8

    def long(self, offset: int) -> int:
        return self.word(offset) | self.word(offset + 2) << 16


def _flag(value: int, bit: int) -> str:
    return "+" if value & bit else "-"


def _bits(value: int, at: int, width: int) -> int:
    return (value >> at) & ((1 << width) - 1)


def _table(names: Sequence[str], index: int) -> str:
    return names[index] if index < len(names) else f"??{index}"


def _devsel(status: int) -> str:
    return ("fast", "medium", "slow", "??")[(status >> 9) & 0x3]


def _size_suffix(size: int) -> str:
    return f" [size={format_size(size)}]" if size else ""


class _Device:
    """One function's lspci text, written piece by piece as pciutils prints it."""

    def __init__(
        self,
        function: PciFunction,
        config: _Config,
        options: LspciOptions,
        names: IdNames,
        domains: bool,
        out: list[str],
    ) -> None:
        self.function = function
        self.conf = config
        self.verbose = options.verbose
        self.hex_dump = options.hex_dump
        self.names = names
        self.domains = domains
        self.out = out
        self.header_type = config.byte(HEADER_TYPE) & 0x7F
        self.bases = self._base_addresses()

    def p(self, text: str) -> None:
        self.out.append(text)

    # ------------------------------------------------------------ top level
    def show(self) -> None:
        if self.verbose:
            self.show_verbose()
            if self.function.device_type is not None:
                self.p(f"\tVPCID device type: {self.function.device_type}\n")
        else:
            self.show_terse()
        if self.hex_dump:
            self.show_hex_dump()
        if self.verbose or self.hex_dump:
            self.p("\n")

    def show_terse(self) -> None:
        conf, names = self.conf, self.names
        device_class = conf.word(CLASS_DEVICE)
        self.p(
            f"{self.function.address.text(domain=self.domains)} {names.device_class(device_class)}: "
            f"{names.vendor_device(conf.word(VENDOR_ID), conf.word(DEVICE_ID))}"
        )
        if conf.byte(REVISION):
            self.p(f" (rev {conf.byte(REVISION):02x})")
        if self.verbose:
            prog_if = conf.byte(PROG_IF)
            name = names.prog_if(device_class, prog_if)
            if prog_if or name is not None:
                self.p(f" (prog-if {prog_if:02x}" + (f" [{name}]" if name is not None else "") + ")")
        self.p("\n")
        if self.verbose:
            subsystem = self.subsystem_ids()
            if subsystem is not None and subsystem[0] not in (0, 0xFFFF):
                text = names.subsystem(conf.word(VENDOR_ID), conf.word(DEVICE_ID), *subsystem)
                self.p(f"\tSubsystem: {text}\n")

    def subsystem_ids(self) -> tuple[int, int] | None:
        """Subsystem vendor and ID where the header keeps them (a bridge: its SSVID capability)."""
        conf = self.conf
        if self.header_type == HEADER_NORMAL:
            return conf.word(SUBSYSTEM_VENDOR_ID), conf.word(SUBSYSTEM_ID)
        if self.header_type == HEADER_CARDBUS:
            return conf.word(CARDBUS_SUBSYSTEM_VENDOR_ID), conf.word(CARDBUS_SUBSYSTEM_ID)
        if self.header_type == HEADER_BRIDGE:
            where = self.find_capability(0x0D)
            return None if where is None else (conf.word(where + 4), conf.word(where + 6))
        return None

    def find_capability(self, wanted: int) -> int | None:
        conf = self.conf
        if not conf.word(STATUS) & STATUS_CAP_LIST:
            return None
        seen: set[int] = set()
        where = conf.byte(CAPABILITY_LIST) & ~3
        while where and where not in seen:
            seen.add(where)
            cap_id = conf.byte(where)
            if cap_id == 0xFF:
                return None
            if cap_id == wanted:
                return where
            where = conf.byte(where + 1) & ~3
        return None

    def show_verbose(self) -> None:
        conf = self.conf
        device_class = conf.word(CLASS_DEVICE)
        self.show_terse()
        unknown = False
        bist = max_lat = min_gnt = 0
        if self.header_type == HEADER_NORMAL:
            if device_class == CLASS_PCI_BRIDGE:
                self.p(f"\t!!! Invalid class {device_class:04x} for header type {self.header_type:02x}\n")
            bist, max_lat, min_gnt = conf.byte(BIST), conf.byte(MAX_LAT), conf.byte(MIN_GNT)
        elif self.header_type in (HEADER_BRIDGE, HEADER_CARDBUS):
            if device_class >> 8 != BASE_CLASS_BRIDGE:
                self.p(f"\t!!! Invalid class {device_class:04x} for header type {self.header_type:02x}\n")
            bist = conf.byte(BIST)
        else:
            self.p(f"\t!!! Unknown header type {self.header_type:02x}\n")
            unknown = True
        command, status = conf.word(COMMAND), conf.word(STATUS)
        irq = conf.byte(INTERRUPT_LINE)
        if not unknown and self.verbose > 1:
            self.control_and_status(command, status, min_gnt, max_lat)
        if self.verbose > 1:
            pin = 0 if unknown else conf.byte(INTERRUPT_PIN)
            if pin or irq:
                letter = chr((ord("A") + pin - 1) & 0xFF) if pin else "?"
                self.p(f"\tInterrupt: pin {letter} routed to IRQ {irq}\n")
        if not unknown and self.verbose <= 1:
            self.flags_line(command, status, irq)
        if bist & 0x80:
            self.p("\tBIST is running\n" if bist & 0x40 else f"\tBIST result: {bist & 0x0F:02x}\n")
        if self.header_type == HEADER_NORMAL:
            self.show_bases(6)
            self.show_rom(ROM_ADDRESS)
            self.show_caps(CAPABILITY_LIST)
        elif self.header_type == HEADER_BRIDGE:
            self.show_bridge()
        elif self.header_type == HEADER_CARDBUS:
            self.show_cardbus()

    def control_and_status(self, command: int, status: int, min_gnt: int, max_lat: int) -> None:
        c, s = command, status
        self.p(
            f"\tControl: I/O{_flag(c, 0x1)} Mem{_flag(c, 0x2)} BusMaster{_flag(c, 0x4)} "
            f"SpecCycle{_flag(c, 0x8)} MemWINV{_flag(c, 0x10)} VGASnoop{_flag(c, 0x20)} "
            f"ParErr{_flag(c, 0x40)} Stepping{_flag(c, 0x80)} SERR{_flag(c, 0x100)} "
            f"FastB2B{_flag(c, 0x200)} DisINTx{_flag(c, 0x400)}\n"
        )
        self.p(
            f"\tStatus: Cap{_flag(s, 0x10)} 66MHz{_flag(s, 0x20)} UDF{_flag(s, 0x40)} "
            f"FastB2B{_flag(s, 0x80)} ParErr{_flag(s, 0x100)} DEVSEL={_devsel(s)} "
            f">TAbort{_flag(s, 0x800)} <TAbort{_flag(s, 0x1000)} <MAbort{_flag(s, 0x2000)} "
            f">SERR{_flag(s, 0x4000)} <PERR{_flag(s, 0x8000)} INTx{_flag(s, 0x8)}\n"
        )
        if command & CMD_MASTER:
            self.p(f"\tLatency: {self.conf.byte(LATENCY_TIMER)}")
            if min_gnt or max_lat:
                parts = ([f"{min_gnt * 250}ns min"] if min_gnt else []) + (
                    [f"{max_lat * 250}ns max"] if max_lat else []
                )
                self.p(f" ({', '.join(parts)})")
            cache_line = self.conf.byte(CACHE_LINE_SIZE)
            if cache_line:
                self.p(f", Cache Line Size: {cache_line * 4} bytes")
            self.p("\n")

    def flags_line(self, command: int, status: int, irq: int) -> None:
        flags = [
            text
            for bit, value, text in (
                (CMD_MASTER, command, "bus master"),
                (0x20, command, "VGA palette snoop"),
                (0x80, command, "stepping"),
                (0x200, command, "fast Back2Back"),
                (0x20, status, "66MHz"),
                (0x40, status, "user-definable features"),
            )
            if value & bit
        ]
        line = "".join(f"{flag}, " for flag in flags) + f"{_devsel(status)} devsel"
        if command & CMD_MASTER:
            line += f", latency {self.conf.byte(LATENCY_TIMER)}"
        if irq:
            line += f", IRQ {irq}"
        self.p(f"\tFlags: {line}\n")

    # --------------------------------------------------------------- regions
    def _base_addresses(self) -> dict[int, int]:
        """pciutils' generic BAR read: index -> raw value (64-bit pairs joined, upper halves absent)."""
        count = {HEADER_NORMAL: 6, HEADER_BRIDGE: 2, HEADER_CARDBUS: 1}.get(self.header_type, 0)
        bases: dict[int, int] = {}
        index = 0
        while index < count:
            value = self.conf.long(BAR0 + 4 * index)
            if value in (0, DWORD_ONES):
                bases[index] = 0
            elif value & BAR_IO or value & BAR_MEM_TYPE_MASK != BAR_MEM_TYPE_64:
                bases[index] = value
            elif index >= count - 1:
                bases[index] = 0  # pciutils warns "Invalid 64-bit address seen" and shows none
            else:
                bases[index] = value | self.conf.long(BAR0 + 4 * (index + 1)) << 32
                index += 1  # the upper half is part of this BAR, not a region of its own
            index += 1
        return bases

    def region_size(self, index: int) -> int:
        sizes = self.function.region_sizes
        return sizes[index] if sizes is not None and index < len(sizes) else 0

    def show_bases(self, count: int) -> None:
        command = self.conf.word(COMMAND)
        for index in range(count):
            if index not in self.bases:
                continue
            position = self.bases[index]
            length = self.region_size(index)
            flags = self.conf.long(BAR0 + 4 * index)
            if flags == DWORD_ONES:
                flags = 0
            if not position and not flags and not length:
                continue
            self.p(f"\tRegion {index}: " if self.verbose > 1 else "\t")
            if flags & BAR_IO:
                address = position & ~0x3
                where = f"{address:04x}" if address or command & CMD_IO else "<unassigned>"
                self.p(f"I/O ports at {where}" + ("" if command & CMD_IO else " [disabled]"))
            else:
                kind = flags & BAR_MEM_TYPE_MASK
                address = position & ~0xF
                width = {BAR_MEM_TYPE_32: "32-bit", BAR_MEM_TYPE_64: "64-bit", BAR_MEM_TYPE_1M: "low-1M"}
                prefetch = "" if flags & BAR_MEM_PREFETCH else "non-"
                where = f"{address:08x}" if address else "<unassigned>"
                self.p(f"Memory at {where} ({width.get(kind, 'type 3')}, {prefetch}prefetchable)")
                if not command & CMD_MEMORY:
                    self.p(" [disabled]")
            self.p(self.function.region_notes.get(index, "") + _size_suffix(length) + "\n")

    def show_rom(self, register: int) -> None:
        raw = self.conf.long(register)
        rom = 0 if raw == DWORD_ONES else raw
        length = self.function.rom_size or 0
        command = self.conf.word(COMMAND)
        if not rom and not raw and not length:
            return
        if rom & ROM_ADDRESS_MASK:
            where = f"{rom & ROM_ADDRESS_MASK:08x}"
        elif raw & ROM_ADDRESS_MASK:
            where = "<ignored>"
        else:
            where = "<unassigned>"
        self.p(f"\tExpansion ROM at {where}")
        if not raw & ROM_ENABLE:
            self.p(" [disabled]")
        elif not command & CMD_MEMORY:
            self.p(" [disabled by cmd]")
        self.p(self.function.region_notes.get(ROM_INDEX, "") + _size_suffix(length) + "\n")

    def show_range(self, prefix: str, base: int, limit: int, bits: int) -> None:
        digits = (bits + 3) // 4
        self.p(f"{prefix}:")
        if base <= limit or self.verbose > 2:
            self.p(f" {base:0{digits}x}-{limit:0{digits}x}")
        self.p(_size_suffix(limit - base + 1) if base <= limit else " [disabled]")
        if bits:
            self.p(f" [{bits}-bit]")
        self.p("\n")

    def show_bridge(self) -> None:
        conf = self.conf
        self.show_bases(2)
        self.p(
            f"\tBus: primary={conf.byte(0x18):02x}, secondary={conf.byte(0x19):02x}, "
            f"subordinate={conf.byte(0x1A):02x}, sec-latency={conf.byte(0x1B)}\n"
        )
        io_base, io_limit = conf.byte(0x1C), conf.byte(0x1D)
        io_type = io_base & 0xF
        if io_type != io_limit & 0xF or io_type not in (0, 1):
            self.p(f"\t!!! Unknown I/O range types {io_base:x}/{io_limit:x}\n")
        else:
            base, limit = (io_base & ~0xF) << 8, (io_limit & ~0xF) << 8
            if io_type == 1:
                base |= conf.word(0x30) << 16
                limit |= conf.word(0x32) << 16
            self.show_range("\tI/O behind bridge", base, limit + 0xFFF, 32 if io_type == 1 else 16)
        mem_base, mem_limit = conf.word(0x20), conf.word(0x22)
        if mem_base & 0xF != mem_limit & 0xF or mem_base & 0xF:
            self.p(f"\t!!! Unknown memory range types {mem_base:x}/{mem_limit:x}\n")
        else:
            base, limit = (mem_base & ~0xF) << 16, (mem_limit & ~0xF) << 16
            self.show_range("\tMemory behind bridge", base, limit + 0xFFFFF, 32)
        pref_base, pref_limit = conf.word(0x24), conf.word(0x26)
        pref_type = pref_base & 0xF
        if pref_type != pref_limit & 0xF or pref_type not in (0, 1):
            self.p(f"\t!!! Unknown prefetchable memory range types {pref_base:x}/{pref_limit:x}\n")
        else:
            base, limit = (pref_base & ~0xF) << 16, (pref_limit & ~0xF) << 16
            if pref_type == 1:
                base |= conf.long(0x28) << 32
                limit |= conf.long(0x2C) << 32
            self.show_range(
                "\tPrefetchable memory behind bridge", base, limit + 0xFFFFF, 64 if pref_type else 32
            )
        if self.verbose > 1:
            s = conf.word(0x1E)
            self.p(
                f"\tSecondary status: 66MHz{_flag(s, 0x20)} FastB2B{_flag(s, 0x80)} ParErr{_flag(s, 0x100)} "
                f"DEVSEL={_devsel(s)} >TAbort{_flag(s, 0x800)} <TAbort{_flag(s, 0x1000)} "
                f"<MAbort{_flag(s, 0x2000)} <SERR{_flag(s, 0x4000)} <PERR{_flag(s, 0x8000)}\n"
            )
        self.show_rom(BRIDGE_ROM_ADDRESS)
        if self.verbose > 1:
            b = conf.word(BRIDGE_CONTROL)
            self.p(
                f"\tBridgeCtl: Parity{_flag(b, 0x1)} SERR{_flag(b, 0x2)} NoISA{_flag(b, 0x4)} "
                f"VGA{_flag(b, 0x8)} VGA16{_flag(b, 0x10)} MAbort{_flag(b, 0x20)} >Reset{_flag(b, 0x40)} "
                f"FastB2B{_flag(b, 0x80)}\n"
                f"\t\tPriDiscTmr{_flag(b, 0x100)} SecDiscTmr{_flag(b, 0x200)} "
                f"DiscTmrStat{_flag(b, 0x400)} DiscTmrSERREn{_flag(b, 0x800)}\n"
            )
        self.show_caps(CAPABILITY_LIST)

    def show_cardbus(self) -> None:
        conf = self.conf
        command, control = conf.word(COMMAND), conf.word(BRIDGE_CONTROL)
        every = self.verbose > 2
        self.show_bases(1)
        self.p(
            f"\tBus: primary={conf.byte(0x18):02x}, secondary={conf.byte(0x19):02x}, "
            f"subordinate={conf.byte(0x1A):02x}, sec-latency={conf.byte(0x1B)}\n"
        )
        for window in range(2):
            base = conf.long(0x1C + 8 * window)
            limit = (conf.long(0x20 + 8 * window) + 0xFFF) & DWORD_ONES
            if base <= limit or every:
                disabled = "" if command & CMD_MEMORY else " [disabled]"
                prefetch = " (prefetchable)" if control & (0x100 << window) else ""
                self.p(f"\tMemory window {window}: {base:08x}-{limit:08x}{disabled}{prefetch}\n")
        for window in range(2):
            base = conf.long(0x2C + 8 * window)
            limit = conf.long(0x30 + 8 * window)
            if not base & 1:
                base &= 0xFFFF
                limit &= 0xFFFF
            base &= ~0x3
            limit = ((limit & ~0x3) + 3) & DWORD_ONES
            if base <= limit or every:
                disabled = "" if command & CMD_IO else " [disabled]"
                self.p(f"\tI/O window {window}: {base:08x}-{limit:08x}{disabled}\n")
        if conf.word(0x16) & 0x4000:
            self.p("\tSecondary status: SERR\n")
        if self.verbose > 1:
            b = control
            self.p(
                f"\tBridgeCtl: Parity{_flag(b, 0x1)} SERR{_flag(b, 0x2)} ISA{_flag(b, 0x4)} "
                f"VGA{_flag(b, 0x8)} MAbort{_flag(b, 0x20)} >Reset{_flag(b, 0x40)} "
                f"16bInt{_flag(b, 0x80)} PostWrite{_flag(b, 0x400)}\n"
            )
        if not conf.fetch(STANDARD_HEADER, STANDARD_HEADER):
            self.p("\t<access denied to the rest>\n")
            return
        legacy = conf.word(CARDBUS_LEGACY_BASE)
        if legacy:
            self.p(f"\t16-bit legacy interface ports at {legacy:04x}\n")
        self.show_caps(CARDBUS_CAPABILITY_LIST)

    # -------------------------------------------------------------- hex dump
    def show_hex_dump(self) -> None:
        conf = self.conf
        count = 2 * STANDARD_HEADER if self.header_type == HEADER_CARDBUS else STANDARD_HEADER
        if self.hex_dump >= 3 and conf.fetch(0, CONVENTIONAL_SPACE):
            count = CONVENTIONAL_SPACE
            if self.hex_dump >= 4 and conf.fetch(0, EXTENDED_SPACE):
                count = EXTENDED_SPACE
        count = min(count, len(conf.data))
        for row in range(0, count, 16):
            chunk = conf.data[row : min(row + 16, count)]
            line = f"{row:02x}:" + "".join(f" {value:02x}" for value in chunk)
            self.p(line + ("\n" if len(chunk) == 16 else ""))

    # ---------------------------------------------------------- capabilities
    def show_caps(self, pointer: int) -> None:
        conf = self.conf
        express_type = -1
        may_extend = False
        if conf.word(STATUS) & STATUS_CAP_LIST:
            seen: set[int] = set()
            where = conf.byte(pointer) & ~3
            while where:
                self.p("\tCapabilities: ")
                if not conf.fetch(where, 4):
                    self.p("<access denied>\n")
                    break
                cap_id, following, cap = conf.byte(where), conf.byte(where + 1) & ~3, conf.word(where + 2)
                self.p(f"[{where:02x}] ")
                if where in seen:
                    self.p("<chain looped>\n")
                    break
                seen.add(where)
                if cap_id == 0xFF:
                    self.p("<chain broken>\n")
                    break
                if cap_id == 0x10:
                    express_type = self.cap_express(where, cap)
                    may_extend = True
                elif cap_id == 0x07:
                    self.cap_pcix(where)
                    may_extend = True
                else:
                    show = _STANDARD_CAPS.get(cap_id)
                    if show is None:
                        self.p(f"Capability ID {cap_id:#x} [{cap:04x}]\n")
                    else:
                        show(self, where, cap)
                where = following
        if may_extend:
            self.show_ext_caps(express_type)

    def cap_pm(self, where: int, cap: int) -> None:
        self.p(f"Power Management version {cap & 0x7}\n")
        if self.verbose < 2:
            return
        aux_current = (0, 55, 100, 160, 220, 270, 320, 375)[(cap & 0x1C0) >> 6]
        self.p(
            f"\t\tFlags: PMEClk{_flag(cap, 0x8)} DSI{_flag(cap, 0x20)} D1{_flag(cap, 0x200)} "
            f"D2{_flag(cap, 0x400)} AuxCurrent={aux_current}mA PME(D0{_flag(cap, 0x800)},"
            f"D1{_flag(cap, 0x1000)},D2{_flag(cap, 0x2000)},D3hot{_flag(cap, 0x4000)},"
            f"D3cold{_flag(cap, 0x8000)})\n"
        )
        if not self.conf.fetch(where + 4, 4):
            return
        t = self.conf.word(where + 4)
        self.p(
            f"\t\tStatus: D{t & 0x3} NoSoftRst{_flag(t, 0x8)} PME-Enable{_flag(t, 0x100)} "
            f"DSel={(t & 0x1E00) >> 9} DScale={(t & 0x6000) >> 13} PME{_flag(t, 0x8000)}\n"
        )
        bridge = self.conf.byte(where + 6)
        if bridge:
            self.p(f"\t\tBridge: PM{_flag(bridge, 0x80)} B3{_flag(~bridge, 0x40)}\n")

    def cap_agp(self, where: int, cap: int) -> None:
        version, revision = (cap >> 4) & 0xF, cap & 0xF
        self.p(f"AGP version {version:x}.{revision:x}\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 8):
            return
        t = self.conf.long(where + 4)
        agp3 = version >= 3 and bool(t & 0x8)

        def rate(bits: int) -> str:
            rates = [f"x{1 << (i + 2 * agp3)}" for i in range(3) if bits & (1 << i)]
            return ",".join(rates) if rates else "<none>"

        self.p(
            f"\t\tStatus: RQ={((t & 0xFF000000) >> 24) + 1} Iso{_flag(t, 0x10000)} "
            f"ArqSz={(t & 0xE000) >> 13} Cal={(t & 0x1C00) >> 10} SBA{_flag(t, 0x200)} "
            f"ITACoh{_flag(t, 0x100)} GART64{_flag(t, 0x80)} HTrans{_flag(t, 0x40)} 64bit{_flag(t, 0x20)} "
            f"FW{_flag(t, 0x10)} AGP3{_flag(t, 0x8)} Rate={rate(t & 7)}\n"
        )
        t = self.conf.long(where + 8)
        self.p(
            f"\t\tCommand: RQ={((t & 0xFF000000) >> 24) + 1} ArqSz={(t & 0xE000) >> 13} "
            f"Cal={(t & 0x1C00) >> 10} SBA{_flag(t, 0x200)} AGP{_flag(t, 0x100)} GART64{_flag(t, 0x80)} "
            f"64bit{_flag(t, 0x20)} FW{_flag(t, 0x10)} Rate={rate(t & 7)}\n"
        )

    def cap_vpd(self, where: int, cap: int) -> None:
        self.p("Vital Product Data\n")
        if self.verbose >= 2:
            # VPD is read through the address/data registers, never part of a space's bytes.
            self.p("\t\tNot readable\n")

    def cap_slot_id(self, where: int, cap: int) -> None:
        slots, chassis = cap & 0xFF, cap >> 8
        self.p(f"Slot ID: {slots & 0x1F} slots, First{_flag(slots, 0x20)}, chassis {chassis:02x}\n")

    def cap_msi(self, where: int, cap: int) -> None:
        self.p(
            f"MSI: Enable{_flag(cap, 0x1)} Count={1 << ((cap & 0x70) >> 4)}/{1 << ((cap & 0xE) >> 1)} "
            f"Maskable{_flag(cap, 0x100)} 64bit{_flag(cap, 0x80)}\n"
        )
        if self.verbose < 2:
            return
        is64 = bool(cap & 0x80)
        if not self.conf.fetch(where + 4, (12 if is64 else 8) + 2 - 4):
            return
        self.p("\t\tAddress: ")
        if is64:
            self.p(f"{self.conf.long(where + 8):08x}")
        data = self.conf.word(where + (12 if is64 else 8))
        self.p(f"{self.conf.long(where + 4):08x}  Data: {data:04x}\n")
        if cap & 0x100:
            mask_at = where + (16 if is64 else 12)
            if not self.conf.fetch(mask_at, 8):
                return
            self.p(
                f"\t\tMasking: {self.conf.long(mask_at):08x}  Pending: {self.conf.long(mask_at + 4):08x}\n"
            )

    def cap_pcix(self, where: int) -> None:
        if self.header_type == HEADER_NORMAL:
            self.cap_pcix_device(where)
        elif self.header_type == HEADER_BRIDGE:
            self.cap_pcix_bridge(where)

    def cap_pcix_device(self, where: int) -> None:
        outstanding = (1, 2, 3, 4, 8, 12, 16, 32)
        self.p("PCI-X non-bridge device\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 4):
            return
        c, s = self.conf.word(where + 2), self.conf.long(where + 4)
        self.p(
            f"\t\tCommand: DPERE{_flag(c, 0x1)} ERO{_flag(c, 0x2)} RBC={1 << (9 + ((c & 0xC) >> 2))} "
            f"OST={outstanding[(c & 0x70) >> 4]}\n"
        )
        self.p(
            f"\t\tStatus: Dev={(s & 0xFF00) >> 8:02x}:{(s & 0xF8) >> 3:02x}.{s & 0x7} "
            f"64bit{_flag(s, 0x10000)} 133MHz{_flag(s, 0x20000)} SCD{_flag(s, 0x40000)} "
            f"USC{_flag(s, 0x80000)} DC={'bridge' if s & 0x100000 else 'simple'} "
            f"DMMRBC={1 << (9 + ((s & 0x600000) >> 21))} DMOST={outstanding[(s & 0x3800000) >> 23]} "
            f"DMCRS={1 << (3 + ((s & 0x1C000000) >> 26))} RSCEM{_flag(s, 0x20000000)} "
            f"266MHz{_flag(s, 0x40000000)} 533MHz{_flag(s, 0x80000000)}\n"
        )

    def cap_pcix_bridge(self, where: int) -> None:
        frequencies = ("conv", "66MHz", "100MHz", "133MHz", "?4", "?5", "?6", "?7")
        self.p("PCI-X bridge device\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 12):
            return
        sec = self.conf.word(where + 2)
        self.p(
            f"\t\tSecondary Status: 64bit{_flag(sec, 0x1)} 133MHz{_flag(sec, 0x2)} SCD{_flag(sec, 0x4)} "
            f"USC{_flag(sec, 0x8)} SCO{_flag(sec, 0x10)} SRD{_flag(sec, 0x20)} "
            f"Freq={frequencies[(sec & 0x1C0) >> 6]}\n"
        )
        s = self.conf.long(where + 4)
        self.p(
            f"\t\tStatus: Dev={(s & 0xFF00) >> 8:02x}:{(s & 0xF8) >> 3:02x}.{s & 0x7} "
            f"64bit{_flag(s, 0x10000)} 133MHz{_flag(s, 0x20000)} SCD{_flag(s, 0x40000)} "
            f"USC{_flag(s, 0x80000)} SCO{_flag(s, 0x100000)} SRD{_flag(s, 0x200000)}\n"
        )
        for name, offset in (("Upstream", 8), ("Downstream", 12)):
            control = self.conf.long(where + offset)
            self.p(f"\t\t{name}: Capacity={control & 0xFFFF} CommitmentLimit={(control >> 16) & 0xFFFF}\n")

    def cap_ht(self, where: int, cap: int) -> None:
        high = cap & 0xE000
        if high in (0x0000, 0x2000):
            kind = "Slave or Primary Interface" if high == 0 else "Host or Secondary Interface"
            # The -vv link registers of these two are not decoded (no shipped dump carries them).
            self.p(f"HyperTransport: {kind}\n")
            return
        kind_code = cap & 0xF800
        names = {
            0x4000: "Switch", 0x8000: "Interrupt Discovery and Configuration", 0x9000: "UnitID Clumping",
            0x9800: "Extended Configuration Space Access", 0xA000: "Address Mapping",
            0xB000: "DirectRoute", 0xB800: "VCSet", 0xC000: "Retry Mode", 0xC800: "X86 (reserved)",
        }  # fmt: skip
        if kind_code == 0x8800:
            self.p(f"HyperTransport: Revision ID: {(cap & 0xE0) >> 5}.{cap & 0x1F:02d}\n")
        elif kind_code == 0xA800:
            self.p(f"HyperTransport: MSI Mapping Enable{_flag(cap, 0x1)} Fixed{_flag(cap, 0x2)}\n")
            if self.verbose >= 2 and not cap & 0x2 and self.conf.fetch(where + 4, 8):
                low, high_part = self.conf.long(where + 4), self.conf.long(where + 8)
                self.p(f"\t\tMapping Address Base: {high_part << 32 | (low & ~0xFFFFF):016x}\n")
        elif kind_code in names:
            self.p(f"HyperTransport: {names[kind_code]}\n")
        else:
            self.p(f"HyperTransport: #{kind_code >> 11:02x}\n")

    def cap_vendor(self, where: int, cap: int) -> None:
        self.p("Vendor Specific Information: ")
        vendor, device = self.conf.word(VENDOR_ID), self.conf.word(DEVICE_ID)
        if vendor == 0x1AF4 and 0x1000 <= device <= 0x107F and self.cap_virtio(where, cap):
            return
        self.p(f"Len={cap & 0xFF:02x} <?>\n")

    def cap_virtio(self, where: int, cap: int) -> bool:
        length, kind = cap & 0xFF, (cap >> 8) & 0xFF
        if length < 16 or not self.conf.fetch(where, length):
            return False
        name = {1: "CommonCfg", 2: "Notify", 3: "ISR", 4: "DeviceCfg"}.get(kind, "<unknown>")
        self.p(f"VirtIO: {name}\n")
        if self.verbose < 2:
            return True
        conf = self.conf
        self.p(
            f"\t\tBAR={conf.byte(where + 4)} offset={conf.long(where + 8):08x} "
            f"size={conf.long(where + 12):08x}"
        )
        if kind == 2 and length >= 20:
            self.p(f" multiplier={conf.long(where + 16):08x}")
        self.p("\n")
        return True

    def cap_debug_port(self, where: int, cap: int) -> None:
        self.p(f"Debug port: BAR={cap >> 13} offset={cap & 0x1FFF:04x}\n")

    def cap_ssvid(self, where: int, cap: int) -> None:
        if not self.conf.fetch(where, 8):
            return
        vendor, device = self.conf.word(VENDOR_ID), self.conf.word(DEVICE_ID)
        text = self.names.subsystem(vendor, device, self.conf.word(where + 4), self.conf.word(where + 6))
        self.p(f"Subsystem: {text}\n")

    def cap_msix(self, where: int, cap: int) -> None:
        self.p(f"MSI-X: Enable{_flag(cap, 0x8000)} Count={(cap & 0x7FF) + 1} Masked{_flag(cap, 0x4000)}\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 8):
            return
        table, pba = self.conf.long(where + 4), self.conf.long(where + 8)
        self.p(f"\t\tVector table: BAR={table & 0x7} offset={table & ~0x7 & DWORD_ONES:08x}\n")
        self.p(f"\t\tPBA: BAR={pba & 0x7} offset={pba & ~0x7 & DWORD_ONES:08x}\n")

    def cap_sata(self, where: int, cap: int) -> None:
        self.p(f"SATA HBA v{_bits(cap, 4, 4)}.{_bits(cap, 0, 4)}")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 4):
            self.p("\n")
            return
        bars = self.conf.long(where + 4)
        bar = _bits(bars, 0, 4)
        if 4 <= bar <= 9:
            self.p(f" BAR{bar - 4} Offset={_bits(bars, 4, 20):08x}\n")
        elif bar == 15:
            self.p(" InCfgSpace\n")
        else:
            self.p(f" BAR??{bar}\n")

    def cap_af(self, where: int, cap: int) -> None:
        self.p("PCI Advanced Features\n")
        if self.verbose < 2 or not self.conf.fetch(where + 3, 3):
            return
        capability, control, status = (self.conf.byte(where + k) for k in (3, 4, 5))
        self.p(f"\t\tAFCap: TP{_flag(capability, 0x1)} FLR{_flag(capability, 0x2)}\n")
        self.p(f"\t\tAFCtrl: FLR{_flag(control, 0x1)}\n")
        self.p(f"\t\tAFStatus: TP{_flag(status, 0x1)}\n")

    def cap_ea(self, where: int, cap: int) -> None:
        entries = _bits(cap, 0, 6)
        entry_at = where + 4
        self.p(f"Enhanced Allocation (EA): NumEntries={entries}")
        if self.header_type == HEADER_BRIDGE:
            entry_at += 4
            if not self.conf.fetch(where + 4, 2):
                self.p("\n")
                return
            self.p(f", secondary={self.conf.byte(where + 4)}, subordinate={self.conf.byte(where + 5)}")
        self.p("\n")
        if self.verbose < 2:
            return
        for entry in range(entries):
            if not self.conf.fetch(entry_at, 4):
                return
            header = self.conf.long(entry_at)
            size, bei, primary, secondary = (_bits(header, 0, 3), _bits(header, 4, 4),
                                             _bits(header, 8, 8), _bits(header, 16, 8))  # fmt: skip
            if not self.conf.fetch(entry_at + 4, size * 4):
                return
            self.p(
                f"\t\tEntry {entry}: Enable{_flag(header, 0x80000000)} Writable{_flag(header, 0x40000000)} "
                f"EntrySize={size}\n"
            )
            self.p(f"\t\t\t BAR Equivalent Indicator: {_ea_bei(bei)}\n")
            self.p(f"\t\t\t PrimaryProperties: {_ea_property(primary, secondary=False)}\n")
            self.p(f"\t\t\t SecondaryProperties: {_ea_property(secondary, secondary=True)}\n")
            base, max_offset = self.conf.long(entry_at + 4), self.conf.long(entry_at + 8)
            max_offset_high_at = entry_at + 12
            self.p("\t\t\t Base: ")
            if base & 2:
                self.p(f"{self.conf.long(entry_at + 12):x}")
                max_offset_high_at += 4
            self.p(f"{base & ~3 & DWORD_ONES:08x}\n")
            self.p("\t\t\t MaxOffset: ")
            if max_offset & 2:
                self.p(f"{self.conf.long(max_offset_high_at):x}")
            self.p(f"{max_offset | 3:08x}\n")
            entry_at += 4 + 4 * size

    # ------------------------------------------------------------ PCI Express
    def cap_express(self, where: int, cap: int) -> int:
        kind = (cap & 0xF0) >> 4
        slot = False
        link = True
        self.p("Express ")
        if self.verbose >= 2:
            self.p(f"(v{cap & 0xF}) ")
        has_slot = _flag(cap, 0x100)
        if kind == EXP_TYPE_ENDPOINT:
            self.p("Endpoint")
        elif kind == EXP_TYPE_LEGACY_ENDPOINT:
            self.p("Legacy Endpoint")
        elif kind == EXP_TYPE_ROOT_PORT:
            slot = bool(cap & 0x100)
            self.p(f"Root Port (Slot{has_slot})")
        elif kind == EXP_TYPE_UPSTREAM:
            self.p("Upstream Port")
        elif kind == EXP_TYPE_DOWNSTREAM:
            slot = bool(cap & 0x100)
            self.p(f"Downstream Port (Slot{has_slot})")
        elif kind == EXP_TYPE_PCI_BRIDGE:
            self.p("PCI-Express to PCI/PCI-X Bridge")
        elif kind == EXP_TYPE_PCIE_BRIDGE:
            slot = bool(cap & 0x100)
            self.p(f"PCI/PCI-X to PCI-Express Bridge (Slot{has_slot})")
        elif kind == EXP_TYPE_ROOT_INTEGRATED:
            link = False
            self.p("Root Complex Integrated Endpoint")
        elif kind == EXP_TYPE_ROOT_EVENT_COLLECTOR:
            link = False
            self.p("Root Complex Event Collector")
        else:
            self.p(f"Unknown type {kind}")
        self.p(f", MSI {(cap & 0x3E00) >> 9:02x}\n")
        if self.verbose < 2:
            return kind
        root = kind in (EXP_TYPE_ROOT_PORT, EXP_TYPE_ROOT_EVENT_COLLECTOR)
        size = 32 if root else 24 if slot else 16
        if not self.conf.fetch(where + 4, size):
            return kind
        self.express_device(where, kind)
        if link:
            self.express_link(where, kind)
        if slot:
            self.express_slot(where)
        if root:
            self.express_root(where)
        if cap & 0xF < 2:
            return kind
        if not self.conf.fetch(where + 0x24, 24 if slot else 16):
            return kind
        self.express_device2(where, kind)
        if link:
            self.express_link2(where, kind)
        return kind

    def express_device(self, where: int, kind: int) -> None:
        t = self.conf.long(where + 4)
        endpoint = kind in (EXP_TYPE_ENDPOINT, EXP_TYPE_LEGACY_ENDPOINT)
        self.p(f"\t\tDevCap:\tMaxPayload {128 << (t & 0x7)} bytes, PhantFunc {(1 << ((t & 0x18) >> 3)) - 1}")
        if endpoint:
            self.p(f", Latency L0s {_L0S[(t & 0x1C0) >> 6]}, L1 {_L1[(t & 0xE00) >> 9]}")
        self.p("\n")
        self.p(f"\t\t\tExtTag{_flag(t, 0x20)}")
        if endpoint or kind in (EXP_TYPE_UPSTREAM, EXP_TYPE_PCI_BRIDGE):
            self.p(f" AttnBtn{_flag(t, 0x1000)} AttnInd{_flag(t, 0x2000)} PwrInd{_flag(t, 0x4000)}")
        self.p(f" RBE{_flag(t, 0x8000)}")
        flr_capable = endpoint or kind == EXP_TYPE_ROOT_INTEGRATED
        if flr_capable:
            self.p(f" FLReset{_flag(t, 0x10000000)}")
        if kind in (EXP_TYPE_ENDPOINT, EXP_TYPE_UPSTREAM, EXP_TYPE_PCI_BRIDGE):
            self.p(f" SlotPowerLimit {_power_limit((t & 0x3FC0000) >> 18, (t & 0xC000000) >> 26)}")
        self.p("\n")
        w = self.conf.word(where + 8)
        self.p(
            f"\t\tDevCtl:\tCorrErr{_flag(w, 0x1)} NonFatalErr{_flag(w, 0x2)} FatalErr{_flag(w, 0x4)} "
            f"UnsupReq{_flag(w, 0x8)}\n"
        )
        self.p(
            f"\t\t\tRlxdOrd{_flag(w, 0x10)} ExtTag{_flag(w, 0x100)} PhantFunc{_flag(w, 0x200)} "
            f"AuxPwr{_flag(w, 0x400)} NoSnoop{_flag(w, 0x800)}"
        )
        if kind == EXP_TYPE_PCI_BRIDGE:
            self.p(f" BrConfRtry{_flag(w, 0x8000)}")
        if flr_capable and t & 0x10000000:
            self.p(f" FLReset{_flag(w, 0x8000)}")
        self.p(
            f"\n\t\t\tMaxPayload {128 << ((w & 0xE0) >> 5)} bytes, "
            f"MaxReadReq {128 << ((w & 0x7000) >> 12)} bytes\n"
        )
        w = self.conf.word(where + 0xA)
        self.p(
            f"\t\tDevSta:\tCorrErr{_flag(w, 0x1)} NonFatalErr{_flag(w, 0x2)} FatalErr{_flag(w, 0x4)} "
            f"UnsupReq{_flag(w, 0x8)} AuxPwr{_flag(w, 0x10)} TransPend{_flag(w, 0x20)}\n"
        )

    def express_link(self, where: int, kind: int) -> None:
        t = self.conf.long(where + 0xC)
        aspm = (t & 0xC00) >> 10
        cap_speed, cap_width = t & 0xF, (t & 0x3F0) >> 4
        support = ("not supported", "L0s", "L1", "L0s L1")[aspm]
        self.p(
            f"\t\tLnkCap:\tPort #{t >> 24}, Speed {_link_speed(cap_speed)}, "
            f"Width x{cap_width}, ASPM {support}"
        )
        if aspm:
            self.p(", Exit Latency ")
            if aspm & 1:
                self.p(f"L0s {_L0S[(t & 0x7000) >> 12]}")
            if aspm & 2:
                self.p(f"{', ' if aspm & 1 else ''}L1 {_L1[(t & 0x38000) >> 15]}")
        self.p("\n")
        self.p(
            f"\t\t\tClockPM{_flag(t, 0x40000)} Surprise{_flag(t, 0x80000)} LLActRep{_flag(t, 0x100000)} "
            f"BwNot{_flag(t, 0x200000)} ASPMOptComp{_flag(t, 0x400000)}\n"
        )
        w = self.conf.word(where + 0x10)
        enabled = ("Disabled", "L0s Enabled", "L1 Enabled", "L0s L1 Enabled")[w & 0x3]
        self.p(f"\t\tLnkCtl:\tASPM {enabled};")
        if kind in (EXP_TYPE_ROOT_PORT, EXP_TYPE_ENDPOINT, EXP_TYPE_LEGACY_ENDPOINT, EXP_TYPE_PCI_BRIDGE):
            self.p(f" RCB {128 if w & 0x8 else 64} bytes,")
        self.p(
            f" Disabled{_flag(w, 0x10)} CommClk{_flag(w, 0x40)}\n\t\t\tExtSynch{_flag(w, 0x80)} "
            f"ClockPM{_flag(w, 0x100)} AutWidDis{_flag(w, 0x200)} BWInt{_flag(w, 0x400)} "
            f"AutBWInt{_flag(w, 0x800)}\n"
        )
        w = self.conf.word(where + 0x12)
        speed, width = w & 0xF, (w & 0x3F0) >> 4
        self.p(
            f"\t\tLnkSta:\tSpeed {_link_speed(speed)}{_link_compare(kind, speed, cap_speed)}, "
            f"Width x{width}{_link_compare(kind, width, cap_width)}\n"
        )
        self.p(
            f"\t\t\tTrErr{_flag(w, 0x400)} Train{_flag(w, 0x800)} SlotClk{_flag(w, 0x1000)} "
            f"DLActive{_flag(w, 0x2000)} BWMgmt{_flag(w, 0x4000)} ABWMgmt{_flag(w, 0x8000)}\n"
        )

    def express_slot(self, where: int) -> None:
        t = self.conf.long(where + 0x14)
        self.p(
            f"\t\tSltCap:\tAttnBtn{_flag(t, 0x1)} PwrCtrl{_flag(t, 0x2)} MRL{_flag(t, 0x4)} "
            f"AttnInd{_flag(t, 0x8)} PwrInd{_flag(t, 0x10)} HotPlug{_flag(t, 0x40)} "
            f"Surprise{_flag(t, 0x20)}\n"
        )
        self.p(
            f"\t\t\tSlot #{(t & 0xFFF80000) >> 19}, PowerLimit "
            f"{_power_limit((t & 0x7F80) >> 7, (t & 0x18000) >> 15)}; "
            f"Interlock{_flag(t, 0x20000)} NoCompl{_flag(t, 0x40000)}\n"
        )
        w = self.conf.word(where + 0x18)
        indicators = ("Unknown", "On", "Blink", "Off")
        self.p(
            f"\t\tSltCtl:\tEnable: AttnBtn{_flag(w, 0x1)} PwrFlt{_flag(w, 0x2)} MRL{_flag(w, 0x4)} "
            f"PresDet{_flag(w, 0x8)} CmdCplt{_flag(w, 0x10)} HPIrq{_flag(w, 0x20)} "
            f"LinkChg{_flag(w, 0x1000)}\n"
        )
        self.p(
            f"\t\t\tControl: AttnInd {indicators[(w & 0xC0) >> 6]}, PwrInd {indicators[(w & 0x300) >> 8]}, "
            f"Power{_flag(w, 0x400)} Interlock{_flag(w, 0x800)}\n"
        )
        w = self.conf.word(where + 0x1A)
        self.p(
            f"\t\tSltSta:\tStatus: AttnBtn{_flag(w, 0x1)} PowerFlt{_flag(w, 0x2)} MRL{_flag(w, 0x20)} "
            f"CmdCplt{_flag(w, 0x10)} PresDet{_flag(w, 0x40)} Interlock{_flag(w, 0x80)}\n"
        )
        self.p(f"\t\t\tChanged: MRL{_flag(w, 0x4)} PresDet{_flag(w, 0x8)} LinkState{_flag(w, 0x100)}\n")

    def express_root(self, where: int) -> None:
        w = self.conf.word(where + 0x1E)
        self.p(f"\t\tRootCap: CRSVisible{_flag(w, 0x1)}\n")
        w = self.conf.word(where + 0x1C)
        self.p(
            f"\t\tRootCtl: ErrCorrectable{_flag(w, 0x1)} ErrNon-Fatal{_flag(w, 0x2)} ErrFatal{_flag(w, 0x4)} "
            f"PMEIntEna{_flag(w, 0x8)} CRSVisible{_flag(w, 0x10)}\n"
        )
        t = self.conf.long(where + 0x20)
        self.p(
            f"\t\tRootSta: PME ReqID {t & 0xFFFF:04x}, PMEStatus{_flag(t, 0x10000)} "
            f"PMEPending{_flag(t, 0x20000)}\n"
        )

    def has_memory_bar(self) -> bool:
        """pciutils' ``device_has_memory_space_bar``: a BAR with an address or size that is not I/O."""
        for index in range(6):
            base = self.bases.get(index, 0)
            if (base or self.region_size(index)) and not base & BAR_IO:
                return True
        return False

    def express_device2(self, where: int, kind: int) -> None:
        t = self.conf.long(where + 0x24)
        memory_bar = self.has_memory_bar()
        self.p(
            f"\t\tDevCap2: Completion Timeout: {_TIMEOUT_RANGES.get(t & 0xF, 'Unknown')}, "
            f"TimeoutDis{_flag(t, 0x10)} NROPrPrP{_flag(t, 0x400)} LTR{_flag(t, 0x800)}"
        )
        self.p(
            f"\n\t\t\t 10BitTagComp{_flag(t, 0x10000)} 10BitTagReq{_flag(t, 0x20000)} "
            f"OBFF {_OBFF_SUPPORT[(t >> 18) & 3]}, ExtFmt{_flag(t, 0x100000)} EETLPPrefix{_flag(t, 0x200000)}"
        )
        if t & 0x200000:
            self.p(f", MaxEETLPPrefixes {((t >> 22) & 3) or 4}")
        self.p(
            f"\n\t\t\t EmergencyPowerReduction {_EPR[(t >> 24) & 3]}, "
            f"EmergencyPowerReductionInit{_flag(t, 0x4000000)}"
        )
        self.p(f"\n\t\t\t FRS{_flag(t, 0x80000000)}")
        if kind == EXP_TYPE_ROOT_PORT:
            self.p(f" LN System CLS {_LN_CLS[(t >> 14) & 3]},")
        if kind in (EXP_TYPE_ROOT_PORT, EXP_TYPE_ENDPOINT):
            self.p(f" {_TPH_COMPLETER[(t >> 12) & 3]}")
        if kind in (EXP_TYPE_ROOT_PORT, EXP_TYPE_DOWNSTREAM):
            self.p(f" ARIFwd{_flag(t, 0x20)}\n")
        else:
            self.p("\n")
        switch_port = kind in (EXP_TYPE_ROOT_PORT, EXP_TYPE_UPSTREAM, EXP_TYPE_DOWNSTREAM)
        if switch_port or memory_bar:
            self.p("\t\t\t AtomicOpsCap:")
            if switch_port:
                self.p(f" Routing{_flag(t, 0x40)}")
            if kind == EXP_TYPE_ROOT_PORT or memory_bar:
                self.p(f" 32bit{_flag(t, 0x80)} 64bit{_flag(t, 0x100)} 128bitCAS{_flag(t, 0x200)}")
            self.p("\n")
        w = self.conf.word(where + 0x28)
        self.p(
            f"\t\tDevCtl2: Completion Timeout: {_TIMEOUT_VALUES.get(w & 0xF, 'Unknown')}, "
            f"TimeoutDis{_flag(w, 0x10)} LTR{_flag(w, 0x400)} 10BitTagReq{_flag(w, 0x1000)} "
            f"OBFF {_OBFF_CONTROL[(w >> 13) & 3]},"
        )
        if kind in (EXP_TYPE_ROOT_PORT, EXP_TYPE_DOWNSTREAM):
            self.p(f" ARIFwd{_flag(w, 0x20)}\n")
        else:
            self.p("\n")
        requester = kind in (EXP_TYPE_ROOT_PORT, EXP_TYPE_ENDPOINT, EXP_TYPE_ROOT_INTEGRATED,
                             EXP_TYPE_LEGACY_ENDPOINT)  # fmt: skip
        if switch_port or requester:
            self.p("\t\t\t AtomicOpsCtl:")
            if requester:
                self.p(f" ReqEn{_flag(w, 0x40)}")
            if switch_port:
                self.p(f" EgressBlck{_flag(w, 0x80)}")
            self.p("\n")

    def express_link2(self, where: int, kind: int) -> None:
        capabilities = 0
        address = self.function.address
        endpoint = kind in (EXP_TYPE_ENDPOINT, EXP_TYPE_LEGACY_ENDPOINT)
        if not (endpoint and (address.device != 0 or address.function != 0)):
            capabilities = self.conf.long(where + 0x2C)
            if capabilities:
                c = capabilities
                self.p(
                    f"\t\tLnkCap2: Supported Link Speeds: {_speed_vector((c >> 1) & 0x7F)}, "
                    f"Crosslink{_flag(c, 0x100)} Retimer{_flag(c, 0x800000)} 2Retimers{_flag(c, 0x1000000)} "
                    f"DRS{_flag(c, 0x80000000)}\n"
                )
            w = self.conf.word(where + 0x30)
            self.p(
                f"\t\tLnkCtl2: Target Link Speed: {_target_speed(w & 0xF)}, EnterCompliance{_flag(w, 0x10)} "
                f"SpeedDis{_flag(w, 0x20)}"
            )
            if kind == EXP_TYPE_DOWNSTREAM:
                self.p(f", Selectable De-emphasis: {_DEEMPHASIS[(w >> 6) & 1]}")
            self.p(
                f"\n\t\t\t Transmit Margin: {_TRANSMIT_MARGIN.get((w >> 7) & 7, 'Unknown')}, "
                f"EnterModifiedCompliance{_flag(w, 0x400)} ComplianceSOS{_flag(w, 0x800)}\n"
                f"\t\t\t Compliance Preset/De-emphasis: {_table_or(_COMPLIANCE_PRESET, (w >> 12) & 0xF)}\n"
            )
        w = self.conf.word(where + 0x32)
        crosslink = ("unsupported", "Upstream Port", "Downstream Port", "incomplete")[(w >> 8) & 3]
        self.p(
            f"\t\tLnkSta2: Current De-emphasis Level: {_DEEMPHASIS[w & 1]}, "
            f"EqualizationComplete{_flag(w, 0x2)} "
            f"EqualizationPhase1{_flag(w, 0x4)}\n"
            f"\t\t\t EqualizationPhase2{_flag(w, 0x8)} EqualizationPhase3{_flag(w, 0x10)} "
            f"LinkEqualizationRequest{_flag(w, 0x20)}\n"
            f"\t\t\t Retimer{_flag(w, 0x40)} 2Retimers{_flag(w, 0x80)} CrosslinkRes: {crosslink}"
        )
        downstream = kind in (EXP_TYPE_ROOT_PORT, EXP_TYPE_DOWNSTREAM, EXP_TYPE_PCIE_BRIDGE)
        if downstream and capabilities & 0x80000000:
            self.p(
                f", DRS{_flag(w, 0x8000)}\n\t\t\t DownstreamComp: "
                f"{_DOWNSTREAM_COMPONENT.get((w >> 12) & 7, 'Reserved')}\n"
            )
        else:
            self.p("\n")

    # --------------------------------------------------- extended capabilities
    def show_ext_caps(self, express_type: int) -> None:
        conf = self.conf
        where = EXTENDED_CAPABILITIES
        seen: set[int] = set()
        while True:
            if not conf.fetch(where, 4):
                break
            header = conf.long(where)
            if header in (0, DWORD_ONES):
                break
            cap_id, version = header & 0xFFFF, (header >> 16) & 0xF
            self.p(f"\tCapabilities: [{where:03x}" + (f" v{version}" if self.verbose > 1 else "") + "] ")
            if where in seen:
                self.p("<chain looped>\n")
                break
            seen.add(where)
            show = _EXTENDED_CAPS.get(cap_id)
            if isinstance(show, str):
                self.p(show + "\n")
            elif show is None:
                self.p(f"Extended Capability ID {cap_id:#x}\n")
            else:
                show(self, where, express_type)
            where = (header >> 20) & ~3
            if not where:
                break

    def ecap_tph(self, where: int, express_type: int) -> None:
        self.p("Transaction Processing Hints\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 4):
            return
        t = self.conf.long(where + 4)
        if t & 0x2:
            self.p("\t\tInterrupt vector mode supported\n")
        if t & 0x4:
            self.p("\t\tDevice specific mode supported\n")
        if t & 0x100:
            self.p("\t\tExtended requester support\n")
        location = (t >> 9) & 3
        self.p(
            "\t\t"
            + (
                "No steering table available",
                "Steering table in TPH capability structure",
                "Steering table in MSI-X table",
                "Reserved steering table location",
            )[location]
            + "\n"
        )

    def ecap_ltr(self, where: int, express_type: int) -> None:
        self.p("Latency Tolerance Reporting\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 4):
            return
        for name, offset in (("Max snoop latency", 4), ("Max no snoop latency", 6)):
            value = self.conf.word(where + offset)
            self.p(f"\t\t{name}: {(value & 0x3FF) * _ltr_scale((value >> 10) & 7)}ns\n")

    def ecap_secondary(self, where: int, express_type: int) -> None:
        self.p("Secondary PCI Express\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 12):
            return
        control = self.conf.word(where + 4)
        self.p(f"\t\tLnkCtl3: LnkEquIntrruptEn{_flag(control, 0x2)} PerformEqu{_flag(control, 0x1)}\n")
        errors = self.conf.word(where + 8)
        lanes = " ".join(str(lane) for lane in range(16) if errors >> lane & 1)
        self.p(f"\t\tLaneErrStat: {'LaneErr at lane: ' + lanes if errors else '0'}\n")

    def ecap_dsn(self, where: int, express_type: int) -> None:
        if not self.conf.fetch(where + 4, 8):
            return
        serial = self.conf.long(where + 8) << 32 | self.conf.long(where + 4)
        text = "-".join(f"{serial >> shift & 0xFF:02x}" for shift in range(56, -8, -8))
        self.p(f"Device Serial Number {text}\n")

    def ecap_aer(self, where: int, express_type: int) -> None:
        self.p("Advanced Error Reporting\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 40):
            return
        conf = self.conf
        for name, offset in (("UESta", 4), ("UEMsk", 8), ("UESvrt", 12)):
            t = conf.long(where + offset)
            self.p(
                f"\t\t{name}:\tDLP{_flag(t, 0x10)} SDES{_flag(t, 0x20)} TLP{_flag(t, 0x1000)} "
                f"FCP{_flag(t, 0x2000)} "
                f"CmpltTO{_flag(t, 0x4000)} CmpltAbrt{_flag(t, 0x8000)} UnxCmplt{_flag(t, 0x10000)} "
                f"RxOF{_flag(t, 0x20000)} MalfTLP{_flag(t, 0x40000)} ECRC{_flag(t, 0x80000)} "
                f"UnsupReq{_flag(t, 0x100000)} ACSViol{_flag(t, 0x200000)}\n"
            )
        for name, offset in (("CESta", 16), ("CEMsk", 20)):
            t = conf.long(where + offset)
            self.p(
                f"\t\t{name}:\tRxErr{_flag(t, 0x1)} BadTLP{_flag(t, 0x40)} BadDLLP{_flag(t, 0x80)} "
                f"Rollover{_flag(t, 0x100)} Timeout{_flag(t, 0x1000)} AdvNonFatalErr{_flag(t, 0x2000)}\n"
            )
        t = conf.long(where + 24)
        self.p(
            f"\t\tAERCap:\tFirst Error Pointer: {t & 31:02x}, ECRCGenCap{_flag(t, 0x20)} "
            f"ECRCGenEn{_flag(t, 0x40)} "
            f"ECRCChkCap{_flag(t, 0x80)} ECRCChkEn{_flag(t, 0x100)}\n"
            f"\t\t\tMultHdrRecCap{_flag(t, 0x200)} MultHdrRecEn{_flag(t, 0x400)} TLPPfxPres{_flag(t, 0x800)} "
            f"HdrLogCap{_flag(t, 0x1000)}\n"
        )
        log = " ".join(f"{conf.long(where + 28 + 4 * k):08x}" for k in range(4))
        self.p(f"\t\tHeaderLog: {log}\n")
        if express_type not in (EXP_TYPE_ROOT_PORT, EXP_TYPE_ROOT_EVENT_COLLECTOR):
            return
        if not conf.fetch(where + 44, 12):
            return
        t = conf.long(where + 44)
        self.p(f"\t\tRootCmd: CERptEn{_flag(t, 0x1)} NFERptEn{_flag(t, 0x2)} FERptEn{_flag(t, 0x4)}\n")
        t = conf.long(where + 48)
        self.p(
            f"\t\tRootSta: CERcvd{_flag(t, 0x1)} MultCERcvd{_flag(t, 0x2)} UERcvd{_flag(t, 0x4)} "
            f"MultUERcvd{_flag(t, 0x8)}\n"
            f"\t\t\t FirstFatal{_flag(t, 0x10)} NonFatalMsg{_flag(t, 0x20)} FatalMsg{_flag(t, 0x40)} "
            f"IntMsg {(t >> 27) & 0x1F}\n"
        )
        self.p(
            f"\t\tErrorSrc: ERR_COR: {conf.word(where + 52):04x} "
            f"ERR_FATAL/NONFATAL: {conf.word(where + 54):04x}\n"
        )

    def ecap_dpc(self, where: int, express_type: int) -> None:
        self.p("Downstream Port Containment\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 8):
            return
        c = self.conf.word(where + 4)
        self.p(
            f"\t\tDpcCap:\tINT Msg #{c & 0x1F}, RPExt{_flag(c, 0x20)} PoisonedTLP{_flag(c, 0x40)} "
            f"SwTrigger{_flag(c, 0x80)} RP PIO Log {(c >> 8) & 0xF}, DL_ActiveErr{_flag(c, 0x1000)}\n"
        )
        c = self.conf.word(where + 6)
        self.p(
            f"\t\tDpcCtl:\tTrigger:{c & 0x3:x} Cmpl{_flag(c, 0x4)} INT{_flag(c, 0x8)} ErrCor{_flag(c, 0x10)} "
            f"PoisonedTLP{_flag(c, 0x20)} SwTrigger{_flag(c, 0x40)} DL_ActiveErr{_flag(c, 0x80)}\n"
        )
        c = self.conf.word(where + 8)
        self.p(
            f"\t\tDpcSta:\tTrigger{_flag(c, 0x1)} Reason:{(c >> 1) & 0x3:02x} INT{_flag(c, 0x8)} "
            f"RPBusy{_flag(c, 0x10)} TriggerExt:{(c >> 5) & 0x3:02x} RP PIO ErrPtr:{(c >> 8) & 0x1F:02x}\n"
        )
        self.p(f"\t\tSource:\t{self.conf.word(where + 10):04x}\n")

    def ecap_acs(self, where: int, express_type: int) -> None:
        self.p("Access Control Services\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 4):
            return
        for name, offset in (("ACSCap", 4), ("ACSCtl", 6)):
            w = self.conf.word(where + offset)
            self.p(
                f"\t\t{name}:\tSrcValid{_flag(w, 0x1)} TransBlk{_flag(w, 0x2)} ReqRedir{_flag(w, 0x4)} "
                f"CmpltRedir{_flag(w, 0x8)} UpstreamFwd{_flag(w, 0x10)} EgressCtrl{_flag(w, 0x20)} "
                f"DirectTrans{_flag(w, 0x40)}\n"
            )

    def ecap_ari(self, where: int, express_type: int) -> None:
        self.p("Alternative Routing-ID Interpretation (ARI)\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 4):
            return
        w = self.conf.word(where + 4)
        self.p(f"\t\tARICap:\tMFVC{_flag(w, 0x1)} ACS{_flag(w, 0x2)}, Next Function: {(w >> 8) & 0xFF}\n")
        w = self.conf.word(where + 6)
        self.p(f"\t\tARICtl:\tMFVC{_flag(w, 0x1)} ACS{_flag(w, 0x2)}, Function Group: {(w >> 4) & 7}\n")

    def ecap_ats(self, where: int, express_type: int) -> None:
        self.p("Address Translation Service (ATS)\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 4):
            return
        self.p(f"\t\tATSCap:\tInvalidate Queue Depth: {self.conf.word(where + 4) & 0x1F:02x}\n")
        w = self.conf.word(where + 6)
        self.p(f"\t\tATSCtl:\tEnable{_flag(w, 0x8000)}, Smallest Translation Unit: {w & 0x1F:02x}\n")

    def ecap_pri(self, where: int, express_type: int) -> None:
        self.p("Page Request Interface (PRI)\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 0xC):
            return
        w = self.conf.word(where + 4)
        self.p(f"\t\tPRICtl: Enable{_flag(w, 0x1)} Reset{_flag(w, 0x2)}\n")
        w = self.conf.word(where + 6)
        self.p(f"\t\tPRISta: RF{_flag(w, 0x1)} UPRGI{_flag(w, 0x2)} Stopped{_flag(w, 0x100)}\n")
        self.p(
            f"\t\tPage Request Capacity: {self.conf.long(where + 8):08x}, "
            f"Page Request Allocation: {self.conf.long(where + 0xC):08x}\n"
        )

    def ecap_pasid(self, where: int, express_type: int) -> None:
        self.p("Process Address Space ID (PASID)\n")
        if self.verbose < 2 or not self.conf.fetch(where + 4, 4):
            return
        w = self.conf.word(where + 4)
        self.p(
            f"\t\tPASIDCap: Exec{_flag(w, 0x2)} Priv{_flag(w, 0x4)}, Max PASID Width: {(w >> 8) & 0x1F:02x}\n"
        )
        w = self.conf.word(where + 6)
        self.p(f"\t\tPASIDCtl: Enable{_flag(w, 0x1)} Exec{_flag(w, 0x2)} Priv{_flag(w, 0x4)}\n")

    def ecap_sriov(self, where: int, express_type: int) -> None:
        conf = self.conf
        self.p("Single Root I/O Virtualization (SR-IOV)\n")
        if self.verbose < 2 or not conf.fetch(where + 4, 0x3C):
            return
        t = conf.long(where + 4)
        self.p(
            f"\t\tIOVCap:\tMigration{_flag(t, 0x1)} 10BitTagReq{_flag(t, 0x4)} "
            f"Interrupt Message Number: {t >> 21:03x}\n"
        )
        w = conf.word(where + 8)
        self.p(
            f"\t\tIOVCtl:\tEnable{_flag(w, 0x1)} Migration{_flag(w, 0x2)} Interrupt{_flag(w, 0x4)} "
            f"MSE{_flag(w, 0x8)} ARIHierarchy{_flag(w, 0x10)} 10BitTagReq{_flag(w, 0x20)}\n"
        )
        self.p(f"\t\tIOVSta:\tMigration{_flag(conf.word(where + 0xA), 0x1)}\n")
        self.p(
            f"\t\tInitial VFs: {conf.word(where + 0xC)}, Total VFs: {conf.word(where + 0xE)}, "
            f"Number of VFs: {conf.word(where + 0x10)}, "
            f"Function Dependency Link: {conf.byte(where + 0x12):02x}\n"
        )
        self.p(
            f"\t\tVF offset: {conf.word(where + 0x14)}, stride: {conf.word(where + 0x16)}, "
            f"Device ID: {conf.word(where + 0x1A):04x}\n"
        )
        self.p(
            f"\t\tSupported Page Size: {conf.long(where + 0x1C):08x}, "
            f"System Page Size: {conf.long(where + 0x20):08x}\n"
        )
        index = 0
        while index < 6:
            value = conf.long(where + 0x24 + 4 * index)
            if value in (0, DWORD_ONES):
                index += 1
                continue
            self.p(f"\t\tRegion {index}: Memory at ")
            kind = value & BAR_MEM_TYPE_MASK
            if kind == BAR_MEM_TYPE_64:
                index += 1
                self.p(f"{conf.long(where + 0x24 + 4 * index):08x}")
            prefetch = "" if value & BAR_MEM_PREFETCH else "non-"
            width = "32" if kind == BAR_MEM_TYPE_32 else "64"
            self.p(f"{value & ~0xF & DWORD_ONES:08x} ({width}-bit, {prefetch}prefetchable)\n")
            index += 1
        t = conf.long(where + 0x3C)
        self.p(f"\t\tVF Migration: offset: {t & 0xFFFFFFF8:08x}, BIR: {t & 7:x}\n")

    def ecap_multicast(self, where: int, express_type: int) -> None:
        conf = self.conf
        self.p("Multicast\n")
        if self.verbose < 2 or not conf.fetch(where + 4, 0x30):
            return
        w = conf.word(where + 4)
        self.p(f"\t\tMcastCap: MaxGroups {(w & 0x3F) + 1}")
        endpoint = express_type in (EXP_TYPE_ENDPOINT, EXP_TYPE_ROOT_INTEGRATED)
        if endpoint:
            window = (w >> 8) & 0x3F
            self.p(f", WindowSz {window} ({_c_shift(window)} bytes)")
        if express_type in (EXP_TYPE_ROOT_PORT, EXP_TYPE_UPSTREAM, EXP_TYPE_DOWNSTREAM):
            self.p(f", ECRCRegen{_flag(w, 0x8000)}\n")
        w = conf.word(where + 6)
        self.p(f"\t\tMcastCtl: NumGroups {(w & 0x3F) + 1}, Enable{_flag(w, 0x8000)}\n")

        def quad(offset: int) -> int:
            return conf.long(where + offset) | conf.long(where + offset + 4) << 32

        base = quad(8)
        self.p(f"\t\tMcastBAR: IndexPos {base & 0x3F}, BaseAddr {base & ~0xFFF:016x}\n")
        self.p(f"\t\tMcastReceiveVec:      {quad(0x10):016x}\n")
        self.p(f"\t\tMcastBlockAllVec:     {quad(0x18):016x}\n")
        self.p(f"\t\tMcastBlockUntransVec: {quad(0x20):016x}\n")
        if endpoint:
            return
        overlay = quad(0x28)
        size = overlay & 0x3F
        self.p(f"\t\tMcastOverlayBAR: OverlaySize {size} ")
        self.p(f"({_c_shift(size)} bytes)" if size >= 6 else "(disabled)")
        self.p(f", BaseAddr {overlay & ~0x3F:016x}\n")

    def ecap_vc(self, where: int, express_type: int) -> None:
        conf = self.conf
        self.p("Virtual Channel\n")
        if self.verbose < 2 or not conf.fetch(where + 4, 0x1C - 4):
            return
        reg1, reg2 = conf.long(where + 4), conf.long(where + 8)
        control, status = conf.word(where + 12), conf.word(where + 14)
        extended_count = _bits(reg1, 0, 3)
        self.p(
            f"\t\tCaps:\tLPEVC={_bits(reg1, 4, 3)} RefClk={_table(('100ns',), _bits(reg1, 8, 2))} "
            f"PATEntryBits={1 << _bits(reg1, 10, 2)}\n"
        )
        self.p("\t\tArb:")
        for i, name in enumerate(_ARB_SELECTS):
            if not name.startswith("?") or reg2 & (1 << i):
                self.p(f"{' ' if i else chr(9)}{name}{_flag(reg2, 1 << i)}")
        table_at = _bits(reg2, 24, 8)
        self.p(f"\n\t\tCtrl:\tArbSelect={_table(_ARB_SELECTS, _bits(control, 1, 3))}\n")
        self.p(f"\t\tStatus:\tInProgress{_flag(status, 1)}\n")
        if table_at:
            self.p(f"\t\tPort Arbitration Table [{where + 16 * table_at:x}] <?>\n")
        for vc in range(extended_count + 1):
            at = where + 16 + 12 * vc
            self.p(f"\t\tVC{vc}:\t")
            if not conf.fetch(at, 12):
                self.p("<unreadable>\n")
                continue
            rcap, rctrl, rstatus = conf.long(at), conf.long(at + 4), conf.word(at + 10)
            self.p(
                f"Caps:\tPATOffset={_bits(rcap, 24, 8):02x} MaxTimeSlots={_bits(rcap, 16, 7) + 1} "
                f"RejSnoopTrans{_flag(rcap, 1 << 15)}\n"
            )
            self.p("\t\t\tArb:")
            for i, name in enumerate(_VC_ARB_SELECTS):
                if not name.startswith("?") or rcap & (1 << i):
                    self.p(f"{' ' if i else chr(9)}{name}{_flag(rcap, 1 << i)}")
            self.p(
                f"\n\t\t\tCtrl:\tEnable{_flag(rctrl, 1 << 31)} ID={_bits(rctrl, 24, 3)} "
                f"ArbSelect={_table(_VC_ARB_SELECTS, _bits(rctrl, 17, 3))} TC/VC={_bits(rctrl, 0, 8):02x}\n"
            )
            self.p(f"\t\t\tStatus:\tNegoPending{_flag(rstatus, 2)} InProgress{_flag(rstatus, 1)}\n")
            if _bits(rcap, 24, 8):
                self.p("\t\t\tPort Arbitration Table <?>\n")

    def ecap_rclink(self, where: int, express_type: int) -> None:
        conf = self.conf
        self.p("Root Complex Link\n")
        if self.verbose < 2 or not conf.fetch(where + 4, 16 - 4):
            return
        description = conf.long(where + 4)
        links = _bits(description, 8, 8)
        self.p(
            f"\t\tDesc:\tPortNumber={_bits(description, 24, 8):02x} "
            f"ComponentID={_bits(description, 16, 8):02x} "
            f"EltType={_table(('Config', 'Egress', 'Internal'), _bits(description, 0, 8))}\n"
        )
        for link in range(links):
            at = where + 16 + 16 * link
            self.p(f"\t\tLink{link}:\t")
            if not conf.fetch(at, 16):
                self.p("<unreadable>\n")
                return
            desc, low, high = conf.long(at), conf.long(at + 8), conf.long(at + 12)
            self.p(
                f"Desc:\tTargetPort={_bits(desc, 24, 8):02x} TargetComponent={_bits(desc, 16, 8):02x} "
                f"AssocRCRB{_flag(desc, 4)} LinkType={'Config' if desc & 2 else 'MemMapped'} "
                f"LinkValid{_flag(desc, 1)}\n"
            )
            if desc & 2:
                bus_bits = (low & 7) or 8
                self.p(
                    f"\t\t\tAddr:\t{_bits(low, 20, bus_bits):02x}:{_bits(low, 15, 5):02x}."
                    f"{_bits(low, 12, 3)}  "
                    f"CfgSpace={high:08x}{low:08x}\n"
                )
            else:
                self.p(f"\t\t\tAddr:\t{high:08x}{low:08x}\n")

    def ecap_rcec(self, where: int, express_type: int) -> None:
        conf = self.conf
        self.p("Root Complex Event Collector Endpoint Association\n")
        if self.verbose < 2 or not conf.fetch(where, 12):
            return
        version = (conf.long(where) >> 16) & 0xF
        bitmap = conf.long(where + 4)
        self.p("\t\tRCiEPBitmap: ")
        if bitmap:
            self.p("RCiEP at Device(s):" + _device_ranges(bitmap))
        else:
            self.p("00000000 [none]" if self.verbose > 2 else "[none]")
        self.p("\n")
        if version < 2:
            return
        numbers = conf.long(where + 8)
        last, following = _bits(numbers, 16, 8), _bits(numbers, 8, 8)
        if last == 0 and following == 0xFF:
            self.p(f"\t\tAssociatedBusNumbers: {'ff-00 [none]' if self.verbose > 2 else '[none]'}\n")
        else:
            self.p(f"\t\tAssociatedBusNumbers: {following:02x}-{last:02x}\n")

    def ecap_vendor(self, where: int, express_type: int) -> None:
        self.p("Vendor Specific Information: ")
        if not self.conf.fetch(where + 4, 4):
            self.p("<unreadable>\n")
            return
        header = self.conf.long(where + 4)
        self.p(
            f"ID={_bits(header, 0, 16):04x} Rev={_bits(header, 16, 4)} Len={_bits(header, 20, 12):03x} <?>\n"
        )

    def ecap_dvsec(self, where: int, express_type: int) -> None:
        self.p("Designated Vendor-Specific: ")
        if not self.conf.fetch(where + 4, 8):
            self.p("<unreadable>\n")
            return
        header = self.conf.long(where + 4)
        vendor, revision, length = _bits(header, 0, 16), _bits(header, 16, 4), _bits(header, 20, 12)
        dvsec_id = self.conf.word(where + 8)
        self.p(f"Vendor={vendor:04x} ID={dvsec_id:04x} Rev={revision} Len={length}")
        if vendor == 0x1E98 and length >= 16:
            # CXL's register blocks are named but not decoded (no shipped dump carries them).
            self.p(": CXL\n")
        else:
            self.p(" <?>\n")

    def ecap_l1pm(self, where: int, express_type: int) -> None:
        conf = self.conf
        self.p("L1 PM Substates\n")
        if self.verbose < 2:
            return
        if not conf.fetch(where + 4, 12):
            self.p("\t\t<unreadable>\n")
            return
        c = conf.long(where + 4)
        self.p(
            f"\t\tL1SubCap: PCI-PM_L1.2{_flag(c, 0x1)} PCI-PM_L1.1{_flag(c, 0x2)} ASPM_L1.2{_flag(c, 0x4)} "
            f"ASPM_L1.1{_flag(c, 0x8)} L1_PM_Substates{_flag(c, 0x10)}\n"
        )
        l12 = bool(c & 0x1 or c & 0x4)
        if l12:
            self.p(
                f"\t\t\t  PortCommonModeRestoreTime={_bits(c, 8, 8)}us "
                f"PortTPowerOnTime={_power_on(_bits(c, 16, 2), _bits(c, 19, 5))}\n"
            )
        v = conf.long(where + 8)
        self.p(
            f"\t\tL1SubCtl1: PCI-PM_L1.2{_flag(v, 0x1)} PCI-PM_L1.1{_flag(v, 0x2)} ASPM_L1.2{_flag(v, 0x4)} "
            f"ASPM_L1.1{_flag(v, 0x8)}\n"
        )
        if l12:
            self.p(f"\t\t\t   T_CommonMode={_bits(v, 8, 8)}us")
            if c & 0x4:
                scale = _bits(v, 29, 3)
                threshold = "<error>" if scale > 5 else f"{_bits(v, 16, 10) * _ltr_scale(scale)}ns"
                self.p(f" LTR1.2_Threshold={threshold}")
            self.p("\n")
        v = conf.long(where + 12)
        self.p("\t\tL1SubCtl2:")
        if l12:
            self.p(f" T_PwrOn={_power_on(_bits(v, 0, 2), _bits(v, 3, 5))}")
        self.p("\n")

    def ecap_ptm(self, where: int, express_type: int) -> None:
        self.p("Precision Time Measurement\n")
        if self.verbose < 2:
            return
        if not self.conf.fetch(where + 4, 8):
            self.p("\t\t<unreadable>\n")
            return
        c = self.conf.long(where + 4)
        self.p(f"\t\tPTMCap: Requester:{_flag(c, 0x1)} Responder:{_flag(c, 0x2)} Root:{_flag(c, 0x4)}\n")
        self.p(f"\t\tPTMClockGranularity: {_granularity(_bits(c, 8, 8), 'Unimplemented')}\n")
        c = self.conf.long(where + 8)
        self.p(f"\t\tPTMControl: Enabled:{_flag(c, 0x1)} RootSelected:{_flag(c, 0x2)}\n")
        self.p(f"\t\tPTMEffectiveGranularity: {_granularity(_bits(c, 8, 8), 'Unknown')}\n")

    def ecap_rebar(self, where: int, express_type: int, *, virtual: bool = False) -> None:
        self.p(f"{'Virtual' if virtual else 'Physical'} Resizable BAR\n")
        if self.verbose < 2:
            return
        count = 1
        entry = 0
        while entry < count:
            where += 4
            if not self.conf.fetch(where, 8):
                self.p("\t\t<unreadable>\n")
                return
            sizes = self.conf.long(where) >> 4
            where += 4
            control = self.conf.long(where)
            if entry == 0:
                count = _bits(control, 5, 3)
                if count < 1 or count > 6:
                    self.p(f"\t\t<error in resizable BAR: num_bars={count} is out of specification>\n")
                    break
            self.p(f"\t\tBAR {_bits(control, 0, 3)}: current size:{_rebar_size(_bits(control, 8, 6))}")
            extended = _bits(control, 16, 16)
            if sizes or extended:
                self.p(", supported:")
                self.p("".join(_rebar_size(i) for i in range(28) if sizes & (1 << i)))
                self.p("".join(_rebar_size(i + 28) for i in range(16) if extended & (1 << i)))
            self.p("\n")
            entry += 1

    def ecap_vf_rebar(self, where: int, express_type: int) -> None:
        self.ecap_rebar(where, express_type, virtual=True)

    def ecap_doe(self, where: int, express_type: int) -> None:
        self.p("Data Object Exchange\n")
        if self.verbose < 2:
            return
        if not self.conf.fetch(where + 4, 0x14):
            self.p("\t\t<unreadable>\n")
            return
        c = self.conf.long(where + 4)
        self.p(f"\t\tDOECap: IntSup{_flag(c, 0x1)}\n")
        if c & 0x1:
            self.p(f"\t\t\tInterrupt Message Number {(c >> 1) & 0x7FF:03x}\n")
        self.p(f"\t\tDOECtl: IntEn{_flag(self.conf.long(where + 8), 0x2)}\n")
        s = self.conf.long(where + 12)
        self.p(
            f"\t\tDOESta: Busy{_flag(s, 0x1)} IntSta{_flag(s, 0x2)} Error{_flag(s, 0x3)} "
            f"ObjectReady{_flag(s, 0x80000000)}\n"
        )


def _fixed(text: str) -> Callable[[_Device, int, int], None]:
    """A capability lspci names without decoding its registers."""

    def show(device: _Device, where: int, cap: int) -> None:
        device.p(text + "\n")

    return show


_STANDARD_CAPS: dict[int, Callable[[_Device, int, int], None]] = {
    0x00: _fixed("Null"),
    0x01: _Device.cap_pm,
    0x02: _Device.cap_agp,
    0x03: _Device.cap_vpd,
    0x04: _Device.cap_slot_id,
    0x05: _Device.cap_msi,
    0x06: _fixed("CompactPCI hot-swap <?>"),
    0x08: _Device.cap_ht,
    0x09: _Device.cap_vendor,
    0x0A: _Device.cap_debug_port,
    0x0B: _fixed("CompactPCI central resource control <?>"),
    0x0C: _fixed("Hot-plug capable"),
    0x0D: _Device.cap_ssvid,
    0x0E: _fixed("AGP3 <?>"),
    0x0F: _fixed("Secure device <?>"),
    0x11: _Device.cap_msix,
    0x12: _Device.cap_sata,
    0x13: _Device.cap_af,
    0x14: _Device.cap_ea,
}
"""Conventional capability ID -> how lspci shows it (PCI Express 0x10 and PCI-X 0x07 are walked apart)."""

_EXTENDED_CAPS: dict[int, str | Callable[[_Device, int, int], None]] = {
    0x00: "Null",
    0x01: _Device.ecap_aer,
    0x02: _Device.ecap_vc,
    0x03: _Device.ecap_dsn,
    0x04: "Power Budgeting <?>",
    0x05: _Device.ecap_rclink,
    0x06: "Root Complex Internal Link <?>",
    0x07: _Device.ecap_rcec,
    0x08: "Multi-Function Virtual Channel <?>",
    0x09: _Device.ecap_vc,
    0x0A: "Root Complex Register Block <?>",
    0x0B: _Device.ecap_vendor,
    0x0D: _Device.ecap_acs,
    0x0E: _Device.ecap_ari,
    0x0F: _Device.ecap_ats,
    0x10: _Device.ecap_sriov,
    0x11: "Multi-Root I/O Virtualization <?>",
    0x12: _Device.ecap_multicast,
    0x13: _Device.ecap_pri,
    0x15: _Device.ecap_rebar,
    0x16: "Dynamic Power Allocation <?>",
    0x17: _Device.ecap_tph,
    0x18: _Device.ecap_ltr,
    0x19: _Device.ecap_secondary,
    0x1A: "Protocol Multiplexing <?>",
    0x1B: _Device.ecap_pasid,
    0x1C: "LN Requester <?>",
    0x1D: _Device.ecap_dpc,
    0x1E: _Device.ecap_l1pm,
    0x1F: _Device.ecap_ptm,
    0x20: "PCI Express over M_PHY <?>",
    0x21: "FRS Queueing <?>",
    0x22: "Readiness Time Reporting <?>",
    0x23: _Device.ecap_dvsec,
    0x24: _Device.ecap_vf_rebar,
    0x25: "Data Link Feature <?>",
    0x26: "Physical Layer 16.0 GT/s <?>",
    0x27: "Lane Margining at the Receiver <?>",
    0x28: "Hierarchy ID <?>",
    0x29: "Native PCIe Enclosure Management <?>",
    0x2E: _Device.ecap_doe,
}
"""Extended capability ID -> how lspci shows it: a fixed name, or a decoder."""

# ------------------------------------------------------------ decode tables
_L0S = ("<64ns", "<128ns", "<256ns", "<512ns", "<1us", "<2us", "<4us", "unlimited")
_L1 = ("<1us", "<2us", "<4us", "<8us", "<16us", "<32us", "<64us", "unlimited")
_TIMEOUT_RANGES = {0: "Not Supported", 1: "Range A", 2: "Range B", 3: "Range AB", 6: "Range BC",
                   7: "Range ABC", 14: "Range BCD", 15: "Range ABCD"}  # fmt: skip
_TIMEOUT_VALUES = {0: "50us to 50ms", 1: "50us to 100us", 2: "1ms to 10ms", 5: "16ms to 55ms",
                   6: "65ms to 210ms", 9: "260ms to 900ms", 10: "1s to 3.5s", 13: "4s to 13s",
                   14: "17s to 64s"}  # fmt: skip
_OBFF_SUPPORT = ("Not Supported", "Via message", "Via WAKE#", "Via message/WAKE#")
_OBFF_CONTROL = ("Disabled", "Via message A", "Via message B", "Via WAKE#")
_EPR = ("Not Supported", "Dev Specific", "Form Factor Dev Specific", "Reserved")
_LN_CLS = ("Not Supported", "64byte cachelines", "128byte cachelines", "Reserved")
_TPH_COMPLETER = ("TPHComp- ExtTPHComp-", "TPHComp+ ExtTPHComp-", "", "TPHComp+ ExtTPHComp+")
_DEEMPHASIS = ("-6dB", "-3.5dB")
_TRANSMIT_MARGIN = {0: "Normal Operating Range", 1: "800-1200mV(full-swing)/400-700mV(half-swing)",
                    **dict.fromkeys(range(2, 6), "200-400mV(full-swing)/100-200mV(half-swing)")}  # fmt: skip
_COMPLIANCE_PRESET = (
    "-6dB de-emphasis, 0dB preshoot", "-3.5dB de-emphasis, 0dB preshoot", "-4.4dB de-emphasis, 0dB preshoot",
    "-2.5dB de-emphasis, 0dB preshoot", "0dB de-emphasis, 0dB preshoot", "0dB de-emphasis, 1.9dB preshoot",
    "0dB de-emphasis, 2.5dB preshoot", "-6.0dB de-emphasis, 3.5dB preshoot",
    "-3.5dB de-emphasis, 3.5dB preshoot", "0dB de-emphasis, 3.5dB preshoot",
)  # fmt: skip
_DOWNSTREAM_COMPONENT = {0: "Link Down - Not Determined", 1: "Link Down - Not Present",
                         2: "Link Down - Present", 4: "Link Up - Present",
                         5: "Link Up - Present and DRS Received"}  # fmt: skip
_ARB_SELECTS = ("Fixed", "WRR32", "WRR64", "WRR128", "??4", "??5", "??6", "??7")
_VC_ARB_SELECTS = ("Fixed", "WRR32", "WRR64", "WRR128", "TWRR128", "WRR256", "??6", "??7")
_POWER_SCALES = (1.0, 0.1, 0.01, 0.001)


def _table_or(names: Sequence[str], index: int) -> str:
    return names[index] if index < len(names) else "Unknown"


def _link_speed(code: int) -> str:
    return {1: "2.5GT/s", 2: "5GT/s", 3: "8GT/s", 4: "16GT/s", 5: "32GT/s", 6: "64GT/s"}.get(code, "unknown")


def _target_speed(code: int) -> str:
    return "2.5GT/s" if code == 0 else {1: "2.5GT/s", 2: "5GT/s", 3: "8GT/s", 4: "16GT/s", 5: "32GT/s",
                                        6: "64GT/s"}.get(code, "Unknown")  # fmt: skip


def _speed_vector(vector: int) -> str:
    """Supported Link Speeds: every rate up to the highest set bit (PCIe r5.0 sec 8.2.1)."""
    if vector & 0x60:
        return "RsvdP"
    for bit, text in ((0x10, "2.5-32GT/s"), (0x08, "2.5-16GT/s"), (0x04, "2.5-8GT/s"), (0x02, "2.5-5GT/s"),
                      (0x01, "2.5GT/s")):  # fmt: skip
        if vector & bit:
            return text
    return "Unknown"


def _link_compare(kind: int, status: int, capability: int) -> str:
    if status > capability:
        return " (overdriven)"
    if status == capability or kind in (EXP_TYPE_ROOT_PORT, EXP_TYPE_DOWNSTREAM, EXP_TYPE_PCIE_BRIDGE):
        return ""
    return " (downgraded)"


def _float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _power_limit(value: int, scale: int) -> str:
    """Slot power in watts, computed in single precision and printed with %g, as lspci does."""
    if scale == 0 and value == 0xFF:
        return ">600W"
    if scale == 0 and 0xF0 <= value <= 0xFE:
        value = 250 + 25 * (value - 0xF0)
    return f"{_float32(value * _float32(_POWER_SCALES[scale])):g}W"


def _ltr_scale(scale: int) -> int:
    """1 << (5 * scale), with the shift count taken modulo 32 as the C shift on x86 does."""
    return 1 << ((scale * 5) & 31)


def _power_on(scale: int, value: int) -> str:
    factor = {0: 2, 1: 10, 2: 100}.get(scale)
    return "<error>" if factor is None else f"{factor * value}us"


def _granularity(clock: int, zero: str) -> str:
    return zero if clock == 0 else "Greater than 254ns" if clock == 0xFF else f"{clock}ns"


def _rebar_size(log2_megabytes: int) -> str:
    for floor, unit in ((40, "EB"), (30, "PB"), (20, "TB"), (10, "GB"), (0, "MB")):
        if floor <= log2_megabytes < floor + 10 and log2_megabytes < 44:
            return f" {1 << (log2_megabytes - floor)}{unit}"
    return " <unknown>"


def _device_ranges(bitmap: int) -> str:
    """RCiEP device numbers; a run of two or more reads ``first-last`` (unless it reaches 31), as in lspci."""
    text, run, previous, matched = "", 0, 0, False
    for device in range(32):
        if bitmap >> device & 1:
            if not run:
                text += f"{',' if matched else ''} {device}"
            run, previous, matched = run + 1, device, True
        else:
            if run > 1:
                text += f"-{previous}"
            run = 0
    return text


def _c_shift(count: int) -> int:
    """C's ``1 << count`` on a 32-bit ``int`` as x86 computes it: the count modulo 32, bit 31 negative."""
    value = 1 << (count & 31)
    return value - (1 << 32) if value & 0x8000_0000 else value


def _ea_bei(bei: int) -> str:
    if bei <= 5:
        return f"BAR {bei}"
    names = {6: "resource behind function", 7: "not indicated", 8: "expansion ROM"}
    if bei in names:
        return names[bei]
    return f"VF-BAR {bei - 9}" if 9 <= bei <= 14 else "reserved"


def _ea_property(value: int, *, secondary: bool) -> str:
    names = {
        0x00: "memory space, non-prefetchable", 0x01: "memory space, prefetchable", 0x02: "I/O space",
        0x03: "VF memory space, prefetchable", 0x04: "VF memory space, non-prefetchable",
        0x05: "allocation behind bridge, non-prefetchable memory",
        0x06: "allocation behind bridge, prefetchable memory", 0x07: "allocation behind bridge, I/O space",
        0xFD: "memory space resource unavailable for use", 0xFE: "I/O space resource unavailable for use",
        0xFF: "entry unavailable for use, PrimaryProperties should be used" if secondary
        else "entry unavailable for use",
    }  # fmt: skip
    return names.get(value, f"[{value:02x}]")
