"""The data manager: VM elements, their three hash tables, and VPCID instances (R-DS-*).

Structure, as in the seed claims: a :class:`DataManager` holds one
:class:`VmElement` per unique VM id; each element holds a configuration
table (BDF -> :class:`Instance`), an I/O table and a memory table
(:class:`~vpcid.model.tables.DecodeTable`, address -> instance and BAR);
each instance owns the state and data its blob carries.

Every public method validates all of its arguments before it changes
anything, so a rejected call leaves the manager as it was (R-ERR-001).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar, cast

from vpcid.model import blob as blobfmt
from vpcid.model.bdf import Bdf
from vpcid.model.behaviour import MEMORY, PAGE_SIZE, BarBehaviour, ConfigBehaviour, DeviceData
from vpcid.model.configspace import (
    IO_SPACE_END,
    address_limit,
    bar_register_span,
    bar_size,
    decode_enabled,
    decode_window,
    implemented_bars,
    is_sizing_probe,
    merge_byte,
    profile_layout,
)
from vpcid.model.devicetype import (
    HEADER_TYPE,
    ROM_INDEX,
    BarKind,
    BarSpec,
    ConfigLayout,
    DeviceType,
    layout,
)
from vpcid.model.errors import (
    BadWidth,
    BlobError,
    BlobMismatch,
    DeviceTypeError,
    DuplicateVm,
    InvalidArgument,
    Misaligned,
    SlotOccupied,
    UnknownDevice,
    UnknownVm,
)
from vpcid.model.header import DEVCTL_INITIATE_FLR, HEADER_TYPE_MULTIFUNCTION
from vpcid.model.profile import (
    DEFAULT_PROFILE,
    AddressZero,
    Alignment,
    BarAtTop,
    BarMoveWhileDecoding,
    BarSizing,
    BridgeIsa,
    BridgeWindows,
    Cf8AfterAccess,
    Cf8Extended,
    Cf8LowBits,
    Cf8Narrow,
    ConfigPastSpace,
    OddWordWrite,
    Overlap,
    Profile,
    Straddle,
    UnmappedIoRead,
    UnmappedMmioRead,
)
from vpcid.model.tables import DecodeTable, Mapping, last_mapped_first, lowest_bdf_first
from vpcid.model.topology import (
    Ranges,
    Windows,
    bus_reset_raised,
    forwarded_ranges,
    intersect,
    route_numbers,
    windows,
)

CONFIG_WIDTHS = (1, 2, 4)
IO_WIDTHS = (1, 2, 4)
MMIO_WIDTHS = (1, 2, 4, 8)
CF8, CFC = 0xCF8, 0xCFC
"""Configuration mechanism #1: address register and data window (R-CAM-001)."""
RESET_CONTROL = 0xCF9
"""The platform's reset control register, a byte port inside 0xCF8-0xCFB (R-CAM-008)."""
RESET_CONTROL_KEPT = 0x0A
"""Bits of the reset control register a write keeps: 1 (system reset) and 3 (full reset) (R-CAM-008)."""
RESET_CONTROL_RESET = 0x04
"""Bit 2 of the reset control register: a write with it set resets the platform (R-CAM-008)."""
ECAM_SIZE = 256 << 20
"""ECAM window: 4 KiB per function, 256 buses (R-ECAM-001)."""
DEFAULT_ECAM_BASE = 0xB000_0000
MAX_VM_ID = 0xFFFF_FFFF


@dataclass
class Instance:
    """A VPCID instance: a device type placed at a BDF, with its blob's state and data (R-DS-004)."""

    bdf: Bdf | None
    """Its BDF now; None while the bridges above give its bus no number (R-BRG-003)."""
    dtype: DeviceType
    layout: ConfigLayout
    config: bytearray
    data: DeviceData
    mappings: dict[int, Mapping] = field(default_factory=dict)
    """BAR index (6 = ROM) -> where it decodes now; absent when it does not decode."""
    parent: Instance | None = None
    """The bridge on whose secondary bus it sits; None on a root bus (R-BRG-002)."""
    root_bus: int = 0
    """The root bus it sits on when ``parent`` is None."""
    slot: tuple[int, int] = (0, 0)
    """Device and function on its bus, fixed at plug."""
    children: dict[tuple[int, int], Instance] = field(default_factory=dict)
    """A bridge's secondary bus: (device, function) -> instance."""

    @property
    def behaviour(self) -> BarBehaviour:
        return self.dtype.behaviour if self.dtype.behaviour is not None else MEMORY

    @property
    def sub_bridges(self) -> list[Instance]:
        """The bridges on this bridge's secondary bus, by (device, function) (R-BRG-003)."""
        return [self.children[k] for k in sorted(self.children) if self.children[k].dtype.bridge is not None]

    def below(self) -> Iterator[Instance]:
        """Every instance below this bridge, in tree pre-order (R-BRG-002)."""
        for key in sorted(self.children):
            child = self.children[key]
            yield child
            yield from child.below()


class _PlatformWindow:
    """Routing target: a configuration window of the platform (0xCFC-0xCFF or ECAM)."""


_WINDOW = _PlatformWindow()
_ADDRESS_BYTES = _PlatformWindow()
"""Routing target: bytes of 0xCF8-0xCFB that reach CONFIG_ADDRESS (V-CF8-NARROW, R-CAM-001)."""
_RESET_CONTROL = _PlatformWindow()
"""Routing target: the reset control register at 0xCF9 (R-CAM-008)."""
Target = Mapping | _PlatformWindow | None


@dataclass
class VmElement:
    """One VM: its configuration, I/O and memory hash tables and platform registers (R-DS-001)."""

    vm_id: int
    io_table: DecodeTable
    memory_table: DecodeTable
    ecam_base: int | None
    config_table: dict[Bdf, Instance] = field(default_factory=dict)
    cf8: int = 0
    next_stamp: int = 1
    roots: dict[int, dict[tuple[int, int], Instance]] = field(default_factory=dict)
    """Root bus number -> (device, function) -> instance: the top of the tree (R-BRG-002)."""
    bridge_count: int = 0
    bus_owner: dict[int, Instance] = field(default_factory=dict)
    """Bus number -> the bridge whose secondary bus it names now (R-BRG-003)."""
    reset_control: int = 0
    """The reset control register at 0xCF9: bits 1 and 3 as last written (R-CAM-008)."""

    def tree(self) -> Iterator[Instance]:
        """Every instance in tree pre-order: root buses ascending, each bus by (device, function), a
        bridge followed by what is below it (R-BRG-002)."""
        for number in sorted(self.roots):
            bus = self.roots[number]
            for key in sorted(bus):
                yield bus[key]
                yield from bus[key].below()


@dataclass(frozen=True, slots=True)
class TopologyNode:
    """One instance in :meth:`DataManager.topology` (R-BRG-010).

    ``bdf``: its BDF now or None; ``parent``: the index of its bridge in the
    listing, None on a root bus; ``root_bus``: the root bus it sits on (None
    below a bridge); ``secondary``: for a bridge, the number its secondary bus
    is reached by, or None; ``windows``: for a bridge, its decoded windows.
    """

    bdf: Bdf | None
    parent: int | None
    root_bus: int | None
    device: int
    function: int
    type_name: str
    secondary: int | None = None
    windows: Windows | None = None


@dataclass(frozen=True, slots=True, order=True)
class TableEntry:
    """Introspection row of an I/O or memory table (R-DS-007)."""

    size_class: int
    base: int
    size: int
    bdf: Bdf
    bar: int


@dataclass(frozen=True, slots=True)
class VmTables:
    """Introspection of one VM's three hash tables, sorted for stable comparison (R-DS-007)."""

    config: tuple[tuple[Bdf, str], ...]
    io: tuple[TableEntry, ...]
    memory: tuple[TableEntry, ...]


T = TypeVar("T")


def split_runs(
    resolve: Callable[[int], T], address: int, width: int, straddle: Straddle, *, scan: bool = False
) -> list[tuple[T | None, int, int]]:
    """The runs ``(target, start, length)`` an access is performed as (R-ACC-004, R-ACC-005).

    ``resolve`` names the target of one byte (None: nothing decodes it). BARs
    are at least 4 bytes (I/O) or 16 bytes (memory) and naturally aligned, so
    no BAR lies strictly inside an access: if the first and last byte resolve
    to the same target, every byte does. ``scan``: resolve every byte anyway
    (an access covering 0xCF9, a one-byte target inside 0xCF8-0xCFB, R-CAM-008).
    """
    first = resolve(address)
    last = first if width == 1 else resolve(address + width - 1)
    if first is last and not scan:
        return [(first, address, width)]
    runs: list[tuple[T | None, int, int]] = []
    for a in range(address, address + width):
        t = first if a == address else last if a == address + width - 1 else resolve(a)
        if runs and runs[-1][0] is t:
            runs[-1] = (t, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((t, a, 1))
    if len(runs) == 1:
        return runs
    if straddle is Straddle.REJECT:
        return [(None, address, width)]
    if straddle is Straddle.START_ADDRESS:
        return [runs[0], (None, runs[1][1], address + width - runs[1][1])]
    return runs


def cf8_latched(value: int, profile: Profile) -> int:
    """What 0xCF8 keeps of a written ``value``: all of it, or under ``masked`` the enable,
    bus/device/function and register bits (bits 27:24 too where they extend the register) (R-CAM-002)."""
    if profile.cf8_low_bits is not Cf8LowBits.MASKED:
        return value
    return value & (0x8FFF_FFFC if profile.cf8_extended is Cf8Extended.EXTENDS else 0x80FF_FFFC)


def cam_selection(cf8: int, profile: Profile) -> tuple[Bdf, int] | None:
    """The function and register offset 0xCF8 selects for the data window (R-CAM-004), or None
    while its enable bit is clear (R-CAM-005)."""
    if not cf8 & 0x8000_0000:
        return None
    register = cf8 & 0xFC
    if profile.cf8_extended is Cf8Extended.EXTENDS:
        register |= ((cf8 >> 24) & 0xF) << 8
    return Bdf((cf8 >> 16) & 0xFF, (cf8 >> 11) & 0x1F, (cf8 >> 8) & 0x7), register


def first_mapped_first(m: Mapping) -> tuple[int, ...]:
    """Overlap rule ``first-mapped``: the BAR that has decoded longest wins (R-DEC-008)."""
    return (m.stamp,)


_OVERLAP_RULES = {Overlap.LOWEST_BDF: lowest_bdf_first, Overlap.LAST_MAPPED: last_mapped_first,
                  Overlap.FIRST_MAPPED: first_mapped_first}  # fmt: skip


def check_int(name: str, value: object, top: int) -> int:
    """Reject non-integers (bools included) and values outside ``0..top`` (R-ERR-002)."""
    if type(value) is not int or not 0 <= value <= top:
        raise InvalidArgument(f"{name} must be an integer 0-{top:#x}, got {value!r}")
    return value


def type_difference(known: DeviceType, other: DeviceType) -> str:
    """Both fingerprints and what differs between two definitions of one name, for a message (R-DT-002).

    Names the configuration size, or the first differing byte of image,
    wmask and w1cmask; the first differing BAR slot; the ROM; the behaviour
    names; else the register map (the rest of the fingerprint input).
    """
    a, b = known.declared, other.declared
    found: list[str] = []
    if len(a.image) != len(b.image):
        found.append(f"configuration space {len(a.image)} vs {len(b.image)} bytes")
    else:
        for array, left, right in (("image", a.image, b.image), ("wmask", a.wmask, b.wmask),
                                   ("w1cmask", a.w1cmask, b.w1cmask)):  # fmt: skip
            o = next((o for o in range(len(left)) if left[o] != right[o]), None)
            if o is not None:
                found.append(f"{array} byte {o:#x} {left[o]:#04x} vs {right[o]:#04x}")
    slot = next((i for i in range(6) if known.bar(i) != other.bar(i)), None)
    if slot is not None:
        found.append(f"BAR {slot} {_bar_text(known.bar(slot))} vs {_bar_text(other.bar(slot))}")
    if known.rom != other.rom:
        sizes = [f"{t.rom.size:#x} bytes" if t.rom is not None else "none" for t in (known, other)]
        found.append(f"ROM {sizes[0]} vs {sizes[1]}" if sizes[0] != sizes[1] else "ROM contents")
    for what in ("behaviour", "config_behaviour"):
        names = [hook.name if (hook := getattr(t, what)) is not None else "none" for t in (known, other)]
        if names[0] != names[1]:
            found.append(f"{what} {names[0]} vs {names[1]}")
    if set(known.accepts) != set(other.accepts):
        found.append(f"accepted revisions ({len(known.accepts)} vs {len(other.accepts)})")  # R-MIG-001
    shown = [t.fingerprint().hex()[:16] for t in (known, other)]
    differs = "; ".join(found) or "register map"
    return f"fingerprint {shown[0]}... vs {shown[1]}..., differing in {differs}"


def revised_config(config: bytes, lay: ConfigLayout) -> bytes:
    """An earlier revision's configuration bytes under this revision: read-only bits from this
    revision's power-on image, writable and RW1C bits as the blob holds them (R-MIG-002)."""
    fixed = int.from_bytes(lay.fixed, "little")
    merged = int.from_bytes(config, "little") & ~fixed | int.from_bytes(lay.image, "little") & fixed
    return merged.to_bytes(len(config), "little")


def _bar_text(bar: BarSpec | None) -> str:
    if bar is None:
        return "none"
    return f"{bar.kind.name.lower()} {bar.size:#x}{' prefetchable' if bar.prefetchable else ''}"


def _where(base: int | None) -> str:
    return "nowhere" if base is None else f"at {base:#x}"


def _map_order_difference(listed: tuple[tuple[int, int], ...], expected: list[tuple[int, int]]) -> str:
    """The decoding BARs a snapshot's map order leaves out (missing), the entries that are no decoding
    BAR (extra) and those listed more than once (repeated) (R-SR-006); at most four of each, so a
    hostile snapshot makes no long message."""
    counts, wanted = Counter(listed), set(expected)
    groups = (("missing", sorted(wanted - set(counts))), ("extra", sorted(set(counts) - wanted)),
              ("repeated", sorted(k for k, n in counts.items() if n > 1)))  # fmt: skip
    parts = []
    for what, entries in groups:
        if entries:
            shown = ", ".join(f"{Bdf.unpack(packed)} BAR {index}" for packed, index in entries[:4])
            parts.append(f"{len(entries)} {what}: {shown}{', ...' if len(entries) > 4 else ''}")
    return "; ".join(parts)


def _check_ecam_base(base: object) -> None:
    """An ECAM base is None (no window) or a 256 MiB aligned integer whose window ends at most at 2^64
    (R-ECAM-001, R-ECAM-005)."""
    if base is not None:
        check_int("ecam_base", base, (1 << 64) - ECAM_SIZE)
        assert isinstance(base, int)
        if base % ECAM_SIZE:
            raise InvalidArgument("ecam_base must be aligned to the 256 MiB window")


def multifunction_conflict(functions: dict[Bdf, Instance], bdf: Bdf, dtype: DeviceType) -> str | None:
    """Why ``dtype`` at ``bdf`` cannot sit beside the other ``functions`` of its device, or None
    (R-MF-001, R-MF-002). Nothing else is refused: a function above 0 plugs
    and answers while function 0 is absent (R-MF-003).

    A function above 0 needs function 0, if present, to say multi-function
    (header type bit 7); a single-function type at function 0 needs every
    other function of its device empty. Bit 7 of functions above 0 is not
    looked at, as guests do not look at it.
    """
    if bdf.function:
        first = functions.get(Bdf(bdf.bus, bdf.device, 0))
        if first is not None and not first.layout.image[HEADER_TYPE] & HEADER_TYPE_MULTIFUNCTION:
            return "function 0 of the device is single-function (header type bit 7 clear)"
        return None
    if dtype.declared.image[HEADER_TYPE] & HEADER_TYPE_MULTIFUNCTION:
        return None
    others = [f for f in range(1, 8) if Bdf(bdf.bus, bdf.device, f) in functions]
    if others:
        return f"a single-function type at function 0, but function {others[0]} of the device is present"
    return None


def _check_bdf(bdf: object) -> Bdf:
    if not isinstance(bdf, Bdf):
        raise InvalidArgument(f"expected a Bdf, got {type(bdf).__name__}")
    return bdf


class DataManager:
    """The VPCID data manager (R-DS-001): VM elements keyed by unique VM id.

    Each VM element owns its tables and instances; every operation names one
    VM and touches only that element (R-DS-008).
    """

    def __init__(self, profile: Profile = DEFAULT_PROFILE) -> None:
        if not isinstance(profile, Profile):
            raise InvalidArgument("profile must be a vpcid.model.Profile")
        self.profile = profile
        self._vms: dict[int, VmElement] = {}
        self._types: dict[str, DeviceType] = {}
        self._priority = _OVERLAP_RULES[profile.overlap]

    # ----------------------------------------------------------------- VMs
    def create_vm(self, vm_id: int, *, ecam_base: int | None = DEFAULT_ECAM_BASE) -> None:
        """Add a VM element with empty tables (R-DS-001, R-ECAM-001)."""
        check_int("vm_id", vm_id, MAX_VM_ID)
        _check_ecam_base(ecam_base)
        if vm_id in self._vms:
            raise DuplicateVm(f"VM {vm_id} already exists")
        self._vms[vm_id] = self._new_vm(vm_id, ecam_base)

    def _new_vm(self, vm_id: int, ecam_base: int | None) -> VmElement:
        return VmElement(vm_id, DecodeTable(self._priority), DecodeTable(self._priority), ecam_base)

    def set_ecam_base(self, vm_id: int, base: int | None) -> None:
        """Move the VM's ECAM window to ``base``, or disable it with None, as a platform register such as
        q35's PCIEXBAR does (R-ECAM-005). The window hides the BARs under its new place and uncovers
        those under its old one; tables and configuration spaces are unchanged (R-ECAM-006)."""
        vm = self._vm(vm_id)
        _check_ecam_base(base)
        vm.ecam_base = base

    def ecam_base(self, vm_id: int) -> int | None:
        """Where the VM's ECAM window is, or None (R-ECAM-001, R-ECAM-005)."""
        return self._vm(vm_id).ecam_base

    def destroy_vm(self, vm_id: int) -> None:
        """Remove a VM element and everything it holds (R-DS-002)."""
        self._vm(vm_id)
        del self._vms[vm_id]

    def vm_ids(self) -> tuple[int, ...]:
        """The ids of all VM elements, ascending."""
        return tuple(sorted(self._vms))

    def _vm(self, vm_id: int) -> VmElement:
        if type(vm_id) is int and (found := self._vms.get(vm_id)) is not None:
            return found  # every stored id is in range
        check_int("vm_id", vm_id, MAX_VM_ID)
        vm = self._vms.get(vm_id)
        if vm is None:
            raise UnknownVm(f"no VM {vm_id}")
        return vm

    def _instance(self, vm: VmElement, bdf: Bdf) -> Instance:
        inst = vm.config_table.get(_check_bdf(bdf))
        if inst is None:
            raise UnknownDevice(f"no device at {bdf} in VM {vm.vm_id}")
        return inst

    # ------------------------------------------------------------ hot-plug
    def register_type(self, dtype: DeviceType) -> None:
        """Make ``dtype`` known by name, for restores (R-DT-002: names are unique per manager)."""
        if not isinstance(dtype, DeviceType):
            raise InvalidArgument(f"expected a DeviceType, got {type(dtype).__name__}")
        known = self._types.get(dtype.name)
        if known is dtype:
            return
        if known is not None and known.fingerprint() != dtype.fingerprint():
            difference = type_difference(known, dtype)
            raise DeviceTypeError(
                f"another device type is already registered as {dtype.name!r}: {difference}"
            )
        self._types[dtype.name] = dtype

    def plug(self, vm_id: int, bdf: Bdf, dtype: DeviceType) -> None:
        """Hot-plug a new instance of ``dtype`` at ``bdf`` in power-on state (R-HP-001, R-HP-003).

        It goes onto the bus that ``bdf``'s bus number names: a bridge's
        secondary bus, else root bus ``bdf.bus`` (R-BRG-002).
        """
        vm = self._vm(vm_id)
        _check_bdf(bdf)
        if bdf in vm.config_table:
            raise SlotOccupied(f"{bdf} in VM {vm_id} already holds a device")
        if isinstance(dtype, DeviceType):  # else register_type rejects it
            problem = multifunction_conflict(vm.config_table, bdf, dtype)
            if problem is not None:
                raise SlotOccupied(f"{bdf} in VM {vm_id}: {problem}")
        self.register_type(dtype)
        lay = self._layout(dtype)
        parent = vm.bus_owner.get(bdf.bus)
        slot = (bdf.device, bdf.function)
        inst = Instance(bdf, dtype, lay, bytearray(lay.image), DeviceData(), parent=parent, root_bus=bdf.bus,
                        slot=slot)  # fmt: skip
        inst.behaviour.reset(inst.data)
        bus = parent.children if parent is not None else vm.roots.setdefault(bdf.bus, {})
        claims_number = parent is None and not bus and bdf.bus != 0
        bus[slot] = inst
        vm.config_table[bdf] = inst
        if dtype.bridge is not None:
            vm.bridge_count += 1
        if vm.bridge_count and claims_number:
            self._reroute(vm)  # R-BRG-003: a root bus that was empty now takes its number

    def unplug(self, vm_id: int, bdf: Bdf) -> None:
        """Remove an instance and every table entry that routes to it (R-HP-002); a bridge goes with
        everything below it (R-BRG-002)."""
        vm = self._vm(vm_id)
        inst = self._instance(vm, bdf)
        removed = [inst, *inst.below()]
        for gone in removed:
            for index in list(gone.mappings):
                self._unmap(vm, gone, index)
            if gone.bdf is not None:
                del vm.config_table[gone.bdf]
        bus = inst.parent.children if inst.parent is not None else vm.roots[inst.root_bus]
        del bus[inst.slot]
        freed = inst.parent is None and not bus
        if freed:
            del vm.roots[inst.root_bus]
        bridges = sum(1 for gone in removed if gone.dtype.bridge is not None)
        vm.bridge_count -= bridges
        if bridges or (vm.bridge_count and freed):
            self._reroute(vm)

    # -------------------------------------------------------- config space
    def config_read(self, vm_id: int, bdf: Bdf, offset: int, width: int) -> int:
        """Read configuration space of the function at ``bdf`` (R-ACC-003, R-ACC-006)."""
        vm = self._vm(vm_id)
        self._check_config_access(_check_bdf(bdf), offset, width)
        return int.from_bytes(self._config_access(vm, bdf, offset, width, None), "little")

    def config_write(self, vm_id: int, bdf: Bdf, offset: int, width: int, value: int) -> None:
        """Write configuration space of the function at ``bdf`` (R-CFG-001, R-ACC-006)."""
        vm = self._vm(vm_id)
        self._check_config_access(_check_bdf(bdf), offset, width)
        check_int("value", value, (1 << (8 * width)) - 1)
        self._config_access(vm, bdf, offset, width, value.to_bytes(width, "little"))

    @staticmethod
    def _check_config_access(bdf: Bdf, offset: int, width: int) -> None:
        if type(width) is not int or width not in CONFIG_WIDTHS:
            raise BadWidth(f"configuration accesses are 1, 2 or 4 bytes, not {width!r}")
        check_int("offset", offset, 0xFFF)
        if offset % 4 + width > 4:
            raise Misaligned(f"configuration access {offset:#x}+{width} crosses a dword")

    def _config_access(
        self, vm: VmElement, bdf: Bdf, offset: int, length: int, payload: bytes | None
    ) -> bytes:
        """One configuration access of ``length`` bytes inside a dword (R-ACC-006, R-CFG-009)."""
        inst = vm.config_table.get(bdf)
        if inst is None:
            return b"\xff" * length
        if offset >= len(inst.config):
            return (b"\x00" if self.profile.config_past_space is ConfigPastSpace.ZEROS else b"\xff") * length
        if payload is None:
            return bytes(inst.config[offset : offset + length])
        if length == 2 and offset % 2 and self.profile.odd_word_write is OddWordWrite.DROPPED:
            return b""  # R-ACC-003 odd_word_write = dropped
        if inst.dtype.bridge is None:
            self._config_store(vm, inst, offset, payload)
        else:
            self._bridge_config_store(vm, inst, offset, payload)
        control = inst.dtype.flr_control
        if (
            control is not None
            and offset <= control + 1 < offset + length
            and payload[control + 1 - offset] & inst.config[control + 1] & (DEVCTL_INITIATE_FLR >> 8)
        ):
            self._reset_instance(vm, inst, keep_sticky=True)  # R-RST-005: Initiate FLR written and set
        return b""

    def _bridge_config_store(self, vm: VmElement, bridge: Instance, offset: int, payload: bytes) -> None:
        """A write to a bridge: as any function's, then re-route when a bus number changed (R-BRG-003),
        re-forward below when a window, command or bridge control byte changed (R-BRG-006), and reset
        the secondary bus when bridge control bit 6 went from 0 to 1 (R-BRG-007)."""
        before = bytes(bridge.config)
        self._config_store(vm, bridge, offset, payload)
        after = bridge.config
        if before == after:
            return
        if before[0x19:0x1B] != after[0x19:0x1B]:
            self._reroute(vm)
        if before[0x04:0x06] != after[0x04:0x06] or before[0x1C:0x1E] != after[0x1C:0x1E] or (
            before[0x20:0x34] != after[0x20:0x34] or before[0x3E:0x40] != after[0x3E:0x40]
        ):  # fmt: skip
            self._reforward(vm, bridge)
        if bus_reset_raised(before[offset : offset + len(payload)], after, offset):
            self._secondary_bus_reset(vm, bridge)

    # ------------------------------------------------------------ bridges
    def _reroute(self, vm: VmElement) -> None:
        """Give every instance the BDF the bridges' bus numbers route to it now and rebuild the
        configuration table (R-BRG-003, R-BRG-004). Cost: one walk of the tree plus, per bus number no
        root bus takes, one descent through the bridges whose ranges hold it."""
        claimed = {0} | {number for number, bus in vm.roots.items() if bus}
        root_bridges = [bus[k] for n in sorted(vm.roots) for bus in (vm.roots[n],) for k in sorted(bus)
                        if bus[k].dtype.bridge is not None]  # fmt: skip
        owners = self._route_numbers(root_bridges, claimed)
        vm.bus_owner = owners
        number_of = {id(b): n for n, b in owners.items()}
        table: dict[Bdf, Instance] = {}
        moved: list[Instance] = []

        def place(inst: Instance, number: int | None) -> None:
            bdf = None if number is None else Bdf(number, *inst.slot)
            if bdf != inst.bdf:
                inst.bdf = bdf
                moved.append(inst)
            if bdf is not None:
                table[bdf] = inst
            for key in sorted(inst.children):
                place(inst.children[key], number_of.get(id(inst)))

        for number in sorted(vm.roots):
            for key in sorted(vm.roots[number]):
                place(vm.roots[number][key], number)
        vm.config_table.clear()
        vm.config_table.update(table)
        for inst in moved:  # the overlap rule orders BARs by BDF: re-file them under the new one
            for index, m in list(inst.mappings.items()):
                self._refile(vm, inst, index, replace(m, bdf=inst.bdf))

    @staticmethod
    def _route_numbers(root_bridges: list[Instance], claimed: set[int]) -> dict[int, Instance]:
        """Bus number -> the bridge whose secondary bus it names (R-BRG-003)."""
        return {n: cast(Instance, b) for n, b in route_numbers(root_bridges, claimed).items()}

    def _forwarding(self, bridge: Instance) -> tuple[Ranges, Ranges]:
        """The ports and memory addresses ``bridge`` forwards now (R-BRG-005, R-BRG-006)."""
        assert bridge.dtype.bridge is not None
        honour_isa = self.profile.bridge_isa is BridgeIsa.HONOURED
        return forwarded_ranges(bridge.config, bridge.dtype.bridge, honour_isa)

    def _refile(self, vm: VmElement, inst: Instance, index: int, new: Mapping) -> None:
        table = self._table(vm, inst, index)
        table.remove(inst.mappings[index])
        table.insert(new)
        inst.mappings[index] = new

    def _reforward(self, vm: VmElement, bridge: Instance) -> None:
        """Recompute the forwarded pieces of every BAR below ``bridge`` (R-BRG-006). Cost: the decoding
        BARs below it, each times its depth."""
        for inst in bridge.below():
            for index, m in list(inst.mappings.items()):
                pieces = self._pieces(inst, index, m.base, m.size)
                if pieces != m.pieces:
                    self._refile(vm, inst, index, replace(m, pieces=pieces))

    def _pieces(self, inst: Instance, index: int, base: int, size: int) -> Ranges | None:
        """The bytes of a BAR every bridge above forwards (R-BRG-006); None on a root bus, or when the
        profile's bridges ignore their windows (V-BRIDGE-WINDOWS)."""
        if inst.parent is None or self.profile.bridge_windows is BridgeWindows.IGNORED:
            return None
        io = self._table_is_io(inst, index)
        reached: Ranges = ((base, base + size),)
        bridge: Instance | None = inst.parent
        while bridge is not None:
            ports, memory = self._forwarding(bridge)
            reached = intersect(reached, ports if io else memory)
            bridge = bridge.parent
        return reached

    @staticmethod
    def _table_is_io(inst: Instance, index: int) -> bool:
        bar = inst.dtype.bar(index) if index != ROM_INDEX else None
        return bar is not None and bar.kind is BarKind.IO

    def _secondary_bus_reset(self, vm: VmElement, bridge: Instance) -> None:
        """Reset every instance below ``bridge`` as a function reset does (R-BRG-007, R-RST-001)."""
        for inst in list(bridge.below()):
            self._reset_instance(vm, inst, keep_sticky=True)  # a hot reset keeps sticky bits (R-RST-004)
        self._reroute(vm)

    def topology(self, vm_id: int) -> tuple[TopologyNode, ...]:
        """The VM's bus tree in pre-order, with each bridge's secondary bus number and windows (R-BRG-010)."""
        vm = self._vm(vm_id)
        index_of: dict[int, int] = {}
        nodes: list[TopologyNode] = []
        number_of = {id(b): n for n, b in vm.bus_owner.items()}
        for position, inst in enumerate(vm.tree()):
            index_of[id(inst)] = position
            bridge = inst.dtype.bridge
            nodes.append(TopologyNode(
                inst.bdf, None if inst.parent is None else index_of[id(inst.parent)],
                inst.root_bus if inst.parent is None else None, inst.slot[0], inst.slot[1], inst.dtype.name,
                number_of.get(id(inst)), None if bridge is None else windows(inst.config, bridge),
            ))  # fmt: skip
        return tuple(nodes)

    def _config_store(self, vm: VmElement, inst: Instance, offset: int, payload: bytes) -> None:
        """Apply masked write bytes, then re-derive the BAR windows (R-CFG-001, R-DEC-005, R-DT-008).

        A write that leaves every byte as it was moves no window, whatever the
        variant, so the windows are re-derived only when a byte changed. A
        type's configuration behaviour runs after the masked write and may
        change any writable or RW1C bit, so then every window is re-derived.
        """
        cfg, lay, rule = inst.config, inst.layout, self.profile.bar_move_while_decoding
        end = offset + len(payload)  # always inside one dword
        hook = inst.dtype.config_behaviour
        affected = inst.dtype.decode_dwords.get(offset >> 2, ()) if hook is None else inst.dtype.implemented
        was_enabled: dict[int, bool] = {}
        skip: set[int] = set()
        if affected and rule is not BarMoveWhileDecoding.IMMEDIATE:
            was_enabled = {i: decode_enabled(cfg, inst.dtype, i) for i in affected}
        if rule is BarMoveWhileDecoding.IGNORED:
            for index, enabled in was_enabled.items():
                reg = bar_register_span(inst.dtype, index)
                if enabled and reg.start < end and offset < reg.stop:
                    skip.update(reg)  # R-DEC-005 ignored: no BAR write while it decodes
        before = bytes(cfg[offset:end])
        if self.profile.bar_sizing is BarSizing.PROBE_ONLY and is_sizing_probe(inst.dtype, offset, payload):
            # R-BAR-003 probe-only: the sizing probe writes only the bits at and above the size
            declared = layout(inst.dtype, self.profile.status).wmask
            payload = bytes(v & declared[offset + k] for k, v in enumerate(payload))
        for k, value in enumerate(payload):
            o = offset + k
            if o not in skip:
                cfg[o] = merge_byte(cfg[o], value, lay.wmask[o], lay.w1cmask[o])
        if hook is not None:
            self._run_config_behaviour(hook, inst, offset, before)
        elif cfg[offset:end] == before:
            return
        if affected:
            self._rederive_windows(vm, inst, affected, was_enabled)

    @staticmethod
    def _run_config_behaviour(hook: ConfigBehaviour, inst: Instance, offset: int, before: bytes) -> None:
        """Let the type's configuration behaviour adjust the space; keep its changes to writable and
        RW1C bits only, so read-only bits keep their declared values (R-DT-008)."""
        merged = bytes(inst.config)
        scratch = bytearray(merged)
        hook.config_write(scratch, offset, before)
        if len(scratch) != len(merged):
            inst.config[offset : offset + len(before)] = before
            raise DeviceTypeError(f"configuration behaviour {hook.name!r} changed the size of the space")
        fixed = int.from_bytes(inst.layout.fixed, "little")
        kept = int.from_bytes(scratch, "little") & ~fixed | int.from_bytes(merged, "little") & fixed
        inst.config[:] = kept.to_bytes(len(merged), "little")

    def _rederive_windows(
        self, vm: VmElement, inst: Instance, affected: tuple[int, ...], was_enabled: dict[int, bool]
    ) -> None:
        """Bring the tables in line with the configuration space (R-DEC-001..R-DEC-007, R-DEC-010).

        ``was_enabled`` holds the BARs' enable state before the write (the
        deferred variant needs it).
        """
        deferred = self.profile.bar_move_while_decoding is BarMoveWhileDecoding.DEFERRED
        for index in affected:
            if deferred and was_enabled[index] and decode_enabled(inst.config, inst.dtype, index):
                continue  # R-DEC-005 deferred: the window moves when decode is next enabled
            want = self._window(inst.config, inst.dtype, index)
            current = inst.mappings.get(index)
            if (current.base if current else None) != want:
                self._unmap(vm, inst, index)
                if want is not None:
                    self._map(vm, inst, index, want)

    def _layout(self, dtype: DeviceType) -> ConfigLayout:
        """The per-byte image and masks of ``dtype`` in this profile (R-CFG-001, R-CFG-006, R-BAR-003)."""
        return profile_layout(dtype, self.profile)

    def _window(self, config: bytes | bytearray, dtype: DeviceType, index: int) -> int | None:
        """Where BAR ``index`` decodes given its registers (R-DEC-001..R-DEC-006)."""
        return decode_window(config, dtype, index, self.profile)

    def _may_decode_at(self, base: int, size: int, limit: int) -> bool:
        """Whether a BAR of ``size`` may decode at aligned ``base`` below ``limit`` in this profile
        (R-DEC-004, R-DEC-006, V-ADDR-ZERO, V-BAR-TOP)."""
        if base + size > limit or (base == 0 and self.profile.address_zero is AddressZero.UNMAPPED):
            return False
        top_unmapped = self.profile.bar_at_top is BarAtTop.UNMAPPED and limit != IO_SPACE_END
        return not (top_unmapped and base + size == limit)

    def _table(self, vm: VmElement, inst: Instance, index: int) -> DecodeTable:
        bar = inst.dtype.bar(index) if index != ROM_INDEX else None
        return vm.io_table if bar is not None and bar.kind is BarKind.IO else vm.memory_table

    def _map(self, vm: VmElement, inst: Instance, index: int, base: int) -> None:
        size = bar_size(inst.dtype, index)
        pieces = None if inst.parent is None else self._pieces(inst, index, base, size)
        mapping = Mapping(inst.bdf, index, base, size.bit_length() - 1, vm.next_stamp, pieces, inst)
        vm.next_stamp += 1
        self._table(vm, inst, index).insert(mapping)
        inst.mappings[index] = mapping

    def _unmap(self, vm: VmElement, inst: Instance, index: int) -> None:
        mapping = inst.mappings.pop(index, None)
        if mapping is not None:
            self._table(vm, inst, index).remove(mapping)

    # --------------------------------------------------------- I/O and MMIO
    def io_read(self, vm_id: int, port: int, width: int) -> int:
        """Guest ``in`` of ``width`` bytes at ``port``; the value is little-endian (R-ACC-007)."""
        vm = self._vm(vm_id)
        self._check_space_access(port, width, IO_WIDTHS, 1 << 16, "I/O")
        return int.from_bytes(self._io_access(vm, port, width, None), "little")

    def io_write(self, vm_id: int, port: int, width: int, value: int) -> None:
        """Guest ``out`` of ``width`` bytes at ``port`` (R-ACC-*, R-CAM-*)."""
        vm = self._vm(vm_id)
        self._check_space_access(port, width, IO_WIDTHS, 1 << 16, "I/O")
        check_int("value", value, (1 << (8 * width)) - 1)  # R-ACC-008
        self._io_access(vm, port, width, value.to_bytes(width, "little"))

    def mmio_read(self, vm_id: int, address: int, width: int) -> int:
        """Guest load of ``width`` bytes at guest-physical ``address`` (R-ACC-*, R-ECAM-*)."""
        vm = self._vm(vm_id)
        self._check_space_access(address, width, MMIO_WIDTHS, 1 << 64, "MMIO")
        return int.from_bytes(self._memory_access(vm, address, width, None), "little")

    def mmio_write(self, vm_id: int, address: int, width: int, value: int) -> None:
        """Guest store of ``width`` bytes at guest-physical ``address`` (R-ACC-*, R-ECAM-*)."""
        vm = self._vm(vm_id)
        self._check_space_access(address, width, MMIO_WIDTHS, 1 << 64, "MMIO")
        check_int("value", value, (1 << (8 * width)) - 1)
        self._memory_access(vm, address, width, value.to_bytes(width, "little"))

    def _check_space_access(
        self, address: int, width: int, widths: tuple[int, ...], limit: int, space: str
    ) -> None:
        """Validate width, range and alignment of an I/O or MMIO access (R-ACC-001, R-ACC-002)."""
        if type(width) is not int or width not in widths:
            raise BadWidth(f"{space} accesses are {'/'.join(map(str, widths))} bytes, not {width!r}")
        check_int("address", address, limit - width)
        if self.profile.alignment is Alignment.NATURAL and address % width:
            raise Misaligned(f"{space} access {address:#x}+{width} is not naturally aligned")

    def _io_access(self, vm: VmElement, port: int, width: int, payload: bytes | None) -> bytes:
        """Route an I/O access: 0xCF8 register, 0xCFC window, then I/O BARs (R-CAM-*, R-DEC-*)."""
        if port == CF8 and width == 4:
            return self._cf8_access(vm, payload)
        narrow = self.profile.cf8_narrow
        read_from_cf8 = narrow is Cf8Narrow.READ_ADDRESS and port == CF8  # decoded by the first byte

        def resolve(p: int) -> Target:
            if CF8 <= p < CFC:
                # R-CAM-001, R-CAM-006: only a dword access at 0xCF8 reaches the address register; other
                # accesses are ordinary I/O nothing decodes, 0xCF9 the reset control register in some
                # variants (R-CAM-008), or reach the register's bytes
                if p == RESET_CONTROL and narrow.has_reset_control and not read_from_cf8:
                    return _RESET_CONTROL
                return None if narrow in (Cf8Narrow.UNMAPPED, Cf8Narrow.RESET_CONTROL) else _ADDRESS_BYTES
            if CFC <= p < CFC + 4:
                return _WINDOW  # R-CAM-004: the data window
            return vm.io_table.lookup(p)

        touched_window = port < CFC + 4 and port + width > CFC
        scan = narrow.has_reset_control and port <= RESET_CONTROL < port + width
        unmapped = b"\x00" if self.profile.unmapped_io_read is UnmappedIoRead.ZEROS else b"\xff"
        result = self._route(vm, resolve, port, width, payload, unmapped, self._io_platform, scan=scan)
        if touched_window and self.profile.cf8_after_access is Cf8AfterAccess.CLEAR:
            vm.cf8 = 0  # R-CAM-007
        return result

    def _cf8_access(self, vm: VmElement, payload: bytes | None) -> bytes:
        """Read or write the configuration address register (R-CAM-002, R-CAM-003)."""
        if payload is None:
            return vm.cf8.to_bytes(4, "little")
        vm.cf8 = cf8_latched(int.from_bytes(payload, "little"), self.profile)
        return b""

    def _io_platform(self, vm: VmElement, port: int, payload: bytes | None, length: int) -> bytes:
        """A run of platform ports: the data window, the reset control register or bytes of
        CONFIG_ADDRESS (R-CAM-001, R-CAM-004, R-CAM-008)."""
        if port >= CFC:
            return self._cam_data(vm, port, payload, length)
        if port == RESET_CONTROL and self.profile.cf8_narrow.has_reset_control:
            return self._reset_control(vm, payload)
        if self.profile.cf8_narrow is Cf8Narrow.READ_ADDRESS:
            # read-address: a read returns CONFIG_ADDRESS's low bytes wherever it falls; writes dropped
            return (vm.cf8 & ((1 << (8 * length)) - 1)).to_bytes(length, "little") if payload is None else b""
        shift = 8 * (port - CF8)  # address-bytes: the bytes of CONFIG_ADDRESS at the port's offset
        if payload is None:
            return ((vm.cf8 >> shift) & ((1 << (8 * length)) - 1)).to_bytes(length, "little")
        mask = ((1 << (8 * length)) - 1) << shift
        merged = (vm.cf8 & ~mask) | (int.from_bytes(payload, "little") << shift)
        vm.cf8 = cf8_latched(merged, self.profile)
        return b""

    def _reset_control(self, vm: VmElement, payload: bytes | None) -> bytes:
        """The reset control register at 0xCF9 (R-CAM-008): reads return bits 1 and 3 as last written;
        a write keeps those bits and, with bit 2 set, resets the platform (R-RST-003) instead."""
        if payload is None:
            return bytes([vm.reset_control])
        if payload[0] & RESET_CONTROL_RESET:
            self.reset_vm(vm.vm_id)
        else:
            vm.reset_control = payload[0] & RESET_CONTROL_KEPT
        return b""

    def _cam_data(self, vm: VmElement, port: int, payload: bytes | None, length: int) -> bytes:
        """Bytes of the 0xCFC-0xCFF window: the selected dword's bytes (R-CAM-004..R-CAM-006)."""
        selected = cam_selection(vm.cf8, self.profile)
        if selected is None:
            return b"\xff" * length if payload is None else b""  # R-CAM-005
        bdf, register = selected
        if self.profile.cf8_low_bits is Cf8LowBits.OFFSET:
            return self._cam_offset_pieces(vm, bdf, register, port, payload, length)
        return self._config_access(vm, bdf, register + (port - CFC), length, payload)

    def _cam_offset_pieces(
        self, vm: VmElement, bdf: Bdf, register: int, port: int, payload: bytes | None, length: int
    ) -> bytes:
        """``cf8_low_bits = "offset"``: the run is performed in naturally aligned pieces of the window
        (at most its distance's alignment, 4 at 0xCFC), each from ``register`` with 0xCF8 bits 1:0 ORed
        with the piece's distance from 0xCFC (R-CAM-004)."""
        out = b""
        done = 0
        while done < length:
            distance = port - CFC + done
            piece = 4 if distance == 0 else distance & -distance
            while piece > length - done:
                piece //= 2
            part = None if payload is None else payload[done : done + piece]
            got = self._cam_offset_data(vm, bdf, register | ((vm.cf8 | distance) & 3), part, piece)
            if payload is None:
                out += got
            done += piece
        return out

    def _cam_offset_data(
        self, vm: VmElement, bdf: Bdf, register: int, payload: bytes | None, length: int
    ) -> bytes:
        """``cf8_low_bits = "offset"``: one access of ``length`` bytes from ``register`` (0xCF8 bits 1:0
        ORed with the port's), performed dword by dword; bytes past the 256-byte block ``register`` lies
        in read zero and take no write (R-CAM-002, R-CAM-004)."""
        inst = vm.config_table.get(bdf)
        if inst is None:
            return b"\xff" * length if payload is None else b""  # R-ACC-006
        out = b""
        done = 0
        while done < length:
            at = register + done
            chunk = min(length - done, 4 - at % 4)
            part = None if payload is None else payload[done : done + chunk]
            past_block = at >= (register & ~0xFF) + 0x100
            got = bytes(chunk) if past_block else self._config_access(vm, bdf, at, chunk, part)
            if payload is None:
                out += got
            done += chunk
        return out

    def _memory_access(self, vm: VmElement, address: int, width: int, payload: bytes | None) -> bytes:
        """Route an MMIO access: the ECAM window first, then memory BARs (R-ECAM-*, R-DEC-*)."""
        ecam = vm.ecam_base
        table = vm.memory_table

        def resolve(a: int) -> Target:
            if ecam is not None and ecam <= a < ecam + ECAM_SIZE:
                return _WINDOW  # R-ECAM-004: the window hides any BAR under it
            return table.lookup(a)

        unmapped = b"\xff" if self.profile.unmapped_mmio_read is UnmappedMmioRead.ONES else b"\x00"
        return self._route(vm, resolve, address, width, payload, unmapped, self._ecam_data)

    def _ecam_data(self, vm: VmElement, address: int, payload: bytes | None, length: int) -> bytes:
        """ECAM bytes, one configuration access per dword they touch (R-ECAM-002, R-ECAM-003)."""
        assert vm.ecam_base is not None
        out = bytearray()
        end = address + length
        while address < end:
            chunk = min(end, (address & ~3) + 4) - address
            rel = address - vm.ecam_base
            bdf = Bdf(rel >> 20, (rel >> 15) & 0x1F, (rel >> 12) & 0x7)
            part = None if payload is None else payload[len(out) : len(out) + chunk]
            got = self._config_access(vm, bdf, rel & 0xFFF, chunk, part)
            out += got if payload is None else bytes(chunk)
            address += chunk
        return bytes(out) if payload is None else b""

    def _route(
        self,
        vm: VmElement,
        resolve: Callable[[int], Target],
        address: int,
        width: int,
        payload: bytes | None,
        unmapped: bytes,
        platform: Callable[[VmElement, int, bytes | None, int], bytes],
        *,
        scan: bool = False,
    ) -> bytes:
        """Perform an access as the runs :func:`split_runs` gives (R-ACC-004, R-ACC-005)."""
        out = b""  # most accesses are one run: concatenating onto empty bytes copies nothing
        for target, start, length in split_runs(resolve, address, width, self.profile.straddle, scan=scan):
            part = None if payload is None else payload[start - address : start - address + length]
            if target is None:
                got = unmapped * length
            elif isinstance(target, Mapping):
                got = self._bar_access(vm, target, start - target.base, part, length)
            else:
                got = platform(vm, start, part, length)
            if payload is None:
                out += got
        return out

    def _bar_access(
        self, vm: VmElement, m: Mapping, offset: int, payload: bytes | None, length: int
    ) -> bytes:
        """Serve a run of bytes inside one BAR, offset from its base (R-ACC-009, R-DT-003, R-BAR-007)."""
        inst: Instance = m.owner  # type: ignore[assignment]  # _map stores the instance
        if m.bar == ROM_INDEX:
            if payload is not None:
                return b""
            assert inst.dtype.rom is not None
            return inst.dtype.rom.contents[offset : offset + length].ljust(length, b"\x00")
        if payload is None:
            return inst.behaviour.read(inst.data, m.bar, offset, length)
        inst.behaviour.write(inst.data, m.bar, offset, payload)
        return b""

    # --------------------------------------------------------------- reset
    def reset(self, vm_id: int, bdf: Bdf) -> None:
        """Function-level reset: power-on configuration except sticky bits, fresh data, no decode
        (R-RST-001, R-RST-002, R-RST-004)."""
        vm = self._vm(vm_id)
        inst = self._instance(vm, bdf)
        self._reset_instance(vm, inst, keep_sticky=True)
        if inst.dtype.bridge is not None:  # R-BRG-008: its bus numbers and windows go to power-on
            self._reroute(vm)
            self._reforward(vm, inst)

    def reset_vm(self, vm_id: int) -> None:
        """Platform (power-on) reset: every instance reset, reachable or not, sticky bits cleared, 0xCF8
        and the reset control register cleared (R-RST-003, R-RST-004, R-BRG-008, R-CAM-008)."""
        vm = self._vm(vm_id)
        for inst in list(vm.tree()):
            self._reset_instance(vm, inst, keep_sticky=False)
        if vm.bridge_count:
            self._reroute(vm)
        vm.cf8 = 0
        vm.reset_control = 0

    def _reset_instance(self, vm: VmElement, inst: Instance, keep_sticky: bool) -> None:
        """Reset one instance: its windows removed, its configuration space the power-on image (its
        sticky bits kept when ``keep_sticky``), its data re-initialised (R-RST-001, R-RST-002, R-RST-004).

        Sticky bits lie at or above 0x40 (R-RST-004), so nothing decodes afterwards either way.
        """
        for index in list(inst.mappings):
            self._unmap(vm, inst, index)
        sticky = inst.dtype.sticky_bits if keep_sticky else 0
        if sticky:
            image = int.from_bytes(inst.layout.image, "little")
            kept = image & ~sticky | int.from_bytes(inst.config, "little") & sticky
            inst.config[:] = kept.to_bytes(len(inst.config), "little")
        else:
            inst.config[:] = inst.layout.image
        inst.data = DeviceData()
        inst.behaviour.reset(inst.data)

    # ------------------------------------------------------ save / restore
    def save(self, vm_id: int, bdf: Bdf) -> bytes:
        """The instance's data blob: state and data, canonical (R-SR-001, R-BLOB-003, R-SR-008)."""
        vm = self._vm(vm_id)
        return blobfmt.encode_instance(self._record(self._instance(vm, bdf)))

    @staticmethod
    def _record(inst: Instance) -> blobfmt.InstanceRecord:
        windows = tuple(
            m.base if (m := inst.mappings.get(i)) is not None else None for i in range(blobfmt.WINDOW_SLOTS)
        )
        pages = tuple(
            (bar, page, content)
            for bar in sorted(inst.data.memory)
            for page, content in inst.data.memory[bar].nonzero_pages()
        )
        return blobfmt.InstanceRecord(
            inst.dtype.name, inst.dtype.fingerprint(), bytes(inst.config), windows, pages,
            bytes(inst.data.extra),
        )  # fmt: skip

    def restore(self, vm_id: int, bdf: Bdf, blob: bytes) -> None:
        """Replace an instance's state and data with a blob's, all or nothing (R-SR-002..R-SR-005)."""
        vm = self._vm(vm_id)
        inst = self._instance(vm, bdf)
        record = blobfmt.decode_instance(blob)
        new = self._instance_from(record, bdf, inst.dtype)
        for index in list(inst.mappings):
            self._unmap(vm, inst, index)
        vm.config_table[bdf] = new
        self._take_place(vm, inst, new)
        self._map_restored(
            vm,
            new,
            record.windows,
            sorted(i for i, w in enumerate(record.windows) if w is not None),
        )
        if new.dtype.bridge is not None:  # R-BRG-009: restoring a bridge re-routes and re-forwards
            self._reroute(vm)
            self._reforward(vm, new)

    @staticmethod
    def _take_place(vm: VmElement, old: Instance, new: Instance) -> None:
        """Put ``new`` where ``old`` sits in the tree, over ``old``'s children (R-BRG-002)."""
        new.parent, new.root_bus, new.slot, new.children = old.parent, old.root_bus, old.slot, old.children
        bus = old.parent.children if old.parent is not None else vm.roots[old.root_bus]
        bus[old.slot] = new
        for child in new.children.values():
            child.parent = new

    def _map_restored(
        self, vm: VmElement, inst: Instance, windows: tuple[int | None, ...], order: list[int]
    ) -> None:
        for index in order:
            base = windows[index]
            assert base is not None
            self._map(vm, inst, index, base)

    def _instance_from(self, rec: blobfmt.InstanceRecord, bdf: Bdf, dtype: DeviceType) -> Instance:
        """Check a decoded blob against ``dtype``; build the instance it describes (R-SR-003..R-SR-005)."""
        if rec.type_name != dtype.name:
            raise BlobMismatch(f"blob is of device type {rec.type_name!r}, the slot holds {dtype.name!r}")
        if rec.fingerprint != dtype.fingerprint() and rec.fingerprint not in dtype.accepts:
            accepted = f" nor one of the {len(dtype.accepts)} revisions it accepts" if dtype.accepts else ""
            raise BlobMismatch(
                f"blob's device type {rec.type_name!r} has fingerprint {rec.fingerprint.hex()[:16]}..., "
                f"the slot's type of that name {dtype.fingerprint().hex()[:16]}...{accepted}: "
                "another definition"
            )
        lay = self._layout(dtype)
        if len(rec.config) != len(lay.image):
            raise BlobMismatch(
                f"blob configuration space size differs from the device type's: {len(rec.config)} bytes in "
                f"the blob, {len(lay.image)} in the type"
            )
        if rec.fingerprint != dtype.fingerprint():
            rec = replace(rec, config=revised_config(rec.config, lay))  # R-MIG-002
        o = lay.first_fixed_difference(rec.config)
        if o is not None:
            got, want = rec.config[o], lay.image[o]
            raise BlobMismatch(f"read-only configuration byte {o:#x} is {got:#04x}, type says {want:#04x}")
        deferred = self.profile.bar_move_while_decoding is BarMoveWhileDecoding.DEFERRED
        implemented = implemented_bars(dtype)
        for index, base in enumerate(rec.windows):
            if index not in implemented:
                if base is not None:
                    raise BlobMismatch(f"blob maps BAR {index}, which the device type does not implement")
                continue
            if deferred and decode_enabled(rec.config, dtype, index):
                size = bar_size(dtype, index)
                bar = dtype.bar(index)
                limit = 1 << 32 if bar is None else address_limit(bar.kind)
                ok = base is None or (base % size == 0 and self._may_decode_at(base, size, limit))
                nonzero = "" if self.profile.address_zero is AddressZero.DECODES else "nonzero "
                why = "" if ok else f"not a {nonzero}multiple of its size {size:#x} below {limit:#x}"
            else:
                window = self._window(rec.config, dtype, index)
                ok = base == window
                why = "" if ok else f"its registers decode it {_where(window)}"
            if not ok:
                raise BlobMismatch(
                    f"blob window of BAR {index} disagrees with its configuration: the blob maps it "
                    f"{_where(base)}, {why}"
                )
        data = DeviceData(extra=bytearray(rec.extra))
        for bar_index, page, content in rec.pages:
            bar_spec = dtype.bar(bar_index) if bar_index < 6 else None
            past_end = content[max(0, bar_spec.size - page * PAGE_SIZE) :] if bar_spec is not None else b""
            if bar_spec is None or page * PAGE_SIZE >= bar_spec.size or any(past_end):
                raise BlobMismatch(f"blob holds data for BAR {bar_index} page {page}, outside the device")
            data.bar_memory(bar_index).pages[page] = bytearray(content)
        behaviour = dtype.behaviour if dtype.behaviour is not None else MEMORY
        problem = behaviour.check(data)
        if problem is not None:
            raise BlobMismatch(f"blob device state rejected by {behaviour.name!r}: {problem}")
        return Instance(bdf, dtype, lay, bytearray(rec.config), data)

    def snapshot(self, vm_id: int) -> bytes:
        """Canonical snapshot of a VM: 0xCF8, ECAM, instances, decode order (R-SR-006, R-SR-009)."""
        vm = self._vm(vm_id)
        if vm.bridge_count:
            return self._snapshot_tree(vm)
        devices = tuple(
            (bdf.packed, blobfmt.encode_instance(self._record(vm.config_table[bdf])))
            for bdf in sorted(vm.config_table)
        )
        mappings = sorted((m for inst in vm.config_table.values() for m in inst.mappings.values()),
                          key=lambda m: m.stamp)  # fmt: skip
        order = tuple((cast(Bdf, m.bdf).packed, m.bar) for m in mappings)  # no bridge: every BDF is set
        return blobfmt.encode_snapshot(blobfmt.VmRecord(vm.ecam_base, vm.cf8, devices, order))

    def _snapshot_tree(self, vm: VmElement) -> bytes:
        """A VM with bridges: devices in tree pre-order with a topology section; the BDF of an instance
        below a bridge has bus byte 0, and the map order names devices by index (R-BLOB-007, R-BLOB-008)."""
        listed = list(vm.tree())
        index_of = {id(inst): k for k, inst in enumerate(listed)}
        devices = tuple(
            ((inst.root_bus << 8 if inst.parent is None else 0) | inst.slot[0] << 3 | inst.slot[1],
             blobfmt.encode_instance(self._record(inst)))
            for inst in listed
        )  # fmt: skip
        parents = tuple(None if inst.parent is None else index_of[id(inst.parent)] for inst in listed)
        mappings = sorted((m for inst in listed for m in inst.mappings.values()), key=lambda m: m.stamp)
        order = tuple((index_of[id(m.owner)], m.bar) for m in mappings)
        return blobfmt.encode_snapshot(blobfmt.VmRecord(vm.ecam_base, vm.cf8, devices, order, parents))

    def restore_vm(self, vm_id: int, snapshot: bytes) -> None:
        """Create or replace VM ``vm_id`` from a snapshot, all or nothing (R-SR-006, R-SR-007)."""
        check_int("vm_id", vm_id, MAX_VM_ID)
        rec = blobfmt.decode_snapshot(snapshot)
        if rec.ecam_base is not None and (rec.ecam_base % ECAM_SIZE or rec.ecam_base > (1 << 64) - ECAM_SIZE):
            raise BlobError("VM snapshot ECAM base is not a valid window")
        if cf8_latched(rec.cf8, self.profile) != rec.cf8:
            raise BlobMismatch("VM snapshot 0xCF8 value has bits this profile never latches")
        vm = self._new_vm(vm_id, rec.ecam_base)
        vm.cf8 = rec.cf8
        if rec.parents is not None:
            self._restore_tree(vm, rec)
            self._vms[vm_id] = vm
            return
        windows: dict[Bdf, tuple[int | None, ...]] = {}
        for packed, device_blob in rec.devices:
            record = blobfmt.decode_instance(device_blob)
            dtype = self._types.get(record.type_name)
            if dtype is None:
                raise BlobMismatch(f"snapshot holds unknown device type {record.type_name!r}")
            bdf = Bdf.unpack(packed)
            if dtype.bridge is not None:
                raise BlobError("VM snapshot holds a bridge but no topology section (R-BLOB-008)")
            inst = vm.config_table[bdf] = self._instance_from(record, bdf, dtype)
            inst.root_bus, inst.slot = bdf.bus, (bdf.device, bdf.function)
            vm.roots.setdefault(bdf.bus, {})[inst.slot] = inst
            windows[bdf] = record.windows
        expected = sorted((b.packed, i) for b, w in windows.items() for i, x in enumerate(w) if x is not None)
        if sorted(rec.map_order) != expected:
            raise BlobMismatch(
                "snapshot map order does not list exactly the decoding BARs: "
                + _map_order_difference(rec.map_order, expected)
            )
        for bdf, inst in vm.config_table.items():
            problem = multifunction_conflict(vm.config_table, bdf, inst.dtype)
            if problem is not None:
                raise BlobMismatch(f"snapshot holds {bdf}, which no sequence of plugs can: {problem}")
        for packed, index in rec.map_order:
            bdf = Bdf.unpack(packed)
            self._map_restored(vm, vm.config_table[bdf], windows[bdf], [index])
        self._vms[vm_id] = vm

    def _restore_tree(self, vm: VmElement, rec: blobfmt.VmRecord) -> None:
        """Rebuild a VM with bridges from a snapshot's devices in tree pre-order and their parents, then
        route, then map in the recorded order (R-BLOB-007, R-BLOB-008, R-SR-006)."""
        assert rec.parents is not None
        placed: list[Instance] = []
        windows: list[tuple[int | None, ...]] = []
        for (packed, device_blob), parent_index in zip(rec.devices, rec.parents, strict=True):
            record = blobfmt.decode_instance(device_blob)
            dtype = self._types.get(record.type_name)
            if dtype is None:
                raise BlobMismatch(f"snapshot holds unknown device type {record.type_name!r}")
            bdf = Bdf.unpack(packed)
            inst = self._instance_from(record, bdf, dtype)
            inst.slot, inst.root_bus = (bdf.device, bdf.function), bdf.bus
            if parent_index is None:
                bus = vm.roots.setdefault(bdf.bus, {})
            else:
                parent = placed[parent_index]
                if parent.dtype.bridge is None:
                    raise BlobError(
                        f"VM snapshot topology entry {len(placed)}: parent {parent_index} is no bridge"
                    )
                inst.parent, inst.root_bus = parent, 0
                bus = parent.children
            first = bus.get((bdf.device, 0))  # siblings come in ascending order: function 0 is placed
            if (
                bdf.function
                and first is not None
                and not first.layout.image[HEADER_TYPE] & HEADER_TYPE_MULTIFUNCTION
            ):
                raise BlobMismatch(  # R-MF-001, R-MF-002: no sequence of plugs builds this bus
                    f"snapshot entry {len(placed)}: function {bdf.function} beside single-function function 0"
                )
            bus[inst.slot] = inst
            vm.bridge_count += dtype.bridge is not None
            placed.append(inst)
            windows.append(record.windows)
        if not vm.bridge_count:
            raise BlobError("VM snapshot has a topology section but no bridge (R-BLOB-008)")
        self._reroute(vm)
        expected = sorted((k, i) for k, w in enumerate(windows) for i, x in enumerate(w) if x is not None)
        if sorted(rec.map_order) != expected:
            raise BlobMismatch("snapshot map order does not list exactly the decoding BARs (by device index)")
        for position, index in rec.map_order:
            self._map_restored(vm, placed[position], windows[position], [index])

    # -------------------------------------------------------- introspection
    def tables(self, vm_id: int) -> VmTables:
        """The VM's three hash tables, for reviewers and invariant checks (R-DS-007)."""
        vm = self._vm(vm_id)

        def rows(table: DecodeTable) -> tuple[TableEntry, ...]:
            # R-BRG-003: an unreachable instance has no BDF to list its BARs under; topology() shows it
            return tuple(sorted(TableEntry(m.size_log2, m.base, m.size, m.bdf, m.bar) for m in table
                                if m.bdf is not None))  # fmt: skip

        config = tuple((bdf, vm.config_table[bdf].dtype.name) for bdf in sorted(vm.config_table))
        return VmTables(config, rows(vm.io_table), rows(vm.memory_table))

    def resolve(self, vm_id: int, space: str, address: int) -> tuple[Bdf, int] | None:
        """Which instance and BAR decode one I/O port or memory address (R-DEC-008)."""
        vm = self._vm(vm_id)
        if space not in ("io", "memory"):
            raise InvalidArgument("space is 'io' or 'memory'")
        check_int("address", address, 0xFFFF if space == "io" else (1 << 64) - 1)
        m = (vm.io_table if space == "io" else vm.memory_table).lookup(address)
        return None if m is None or m.bdf is None else (m.bdf, m.bar)

    def device_type(self, vm_id: int, bdf: Bdf) -> DeviceType:
        """The device type of the instance at ``bdf``."""
        return self._instance(self._vm(vm_id), bdf).dtype

    def cf8(self, vm_id: int) -> int:
        """The configuration address register's current value (R-CAM-002)."""
        return self._vm(vm_id).cf8
