"""Device types: what a device supplies to the data manager (R-DT-*).

A :class:`DeviceType` is its configuration space as data, per byte
(:class:`~vpcid.model.header.ConfigSpace`), plus what the manager acts on:
BARs, expansion ROM and behaviours. It is declared either byte by byte
(:meth:`DeviceType.from_space`, what imports and discovery produce) or from
fields - identity, capabilities at declared or packed offsets, extended
capabilities, device-specific registers - that the builder turns into bytes.
Either way the bytes are checked against the rules every layout keeps
(R-DT-005..R-DT-007), and :func:`layout` gives the per-byte image and masks
the manager runs on (R-CFG-001).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from vpcid.model.behaviour import MsixTable
from vpcid.model.errors import DeviceTypeError
from vpcid.model.header import (
    BAR0,
    BRIDGE_BAR_COUNT,
    BRIDGE_ROM_BAR,
    CACHE_LINE_SIZE,
    CAP_POINTER,
    CAPABILITY_AREA,
    CLASS_CODE,
    CMD_BUS_MASTER,
    CMD_INTX_DISABLE,
    CMD_IO,
    CMD_MEM,
    CMD_SERR,
    COMMAND,
    COMMAND_BITS,
    CONVENTIONAL_CONFIG_SIZE,
    DEVICE_ID,
    EXPRESS_CONFIG_SIZE,
    EXTENDED_AREA,
    HEADER_TYPE,
    INTERRUPT_LINE,
    INTERRUPT_PIN,
    LATENCY_TIMER,
    REVISION,
    ROM_BAR,
    STATUS,
    STATUS_CAP_LIST,
    STATUS_ERROR_BITS,
    SUBSYSTEM_ID,
    SUBSYSTEM_VENDOR_ID,
    VENDOR_ID,
    BridgeRegisters,
    ChainEntry,
    ConfigSpace,
    IoWindow,
    MsixPlace,
    PrefetchWindow,
    bridge_registers,
    check_pci_rules,
    check_space,
    flr_control,
    msix_place,
)
from vpcid.model.profile import StatusRegister
from vpcid.model.registers import CONFIG_ACCESS, REGISTER_MAP_NAME, Access, Bits, RegisterMap, bit_list

if TYPE_CHECKING:
    from vpcid.model.behaviour import BarBehaviour, ConfigBehaviour

__all__ = [
    "BAR0",
    "CACHE_LINE_SIZE",
    "CAPABILITY_AREA",
    "CAP_POINTER",
    "CLASS_CODE",
    "CMD_BUS_MASTER",
    "CMD_INTX_DISABLE",
    "CMD_IO",
    "CMD_MEM",
    "CMD_SERR",
    "COMMAND",
    "CONVENTIONAL_CONFIG_SIZE",
    "DEVICE_ID",
    "EXPRESS_CONFIG_SIZE",
    "HEADER_TYPE",
    "INTERRUPT_LINE",
    "INTERRUPT_PIN",
    "LATENCY_TIMER",
    "REVISION",
    "ROM_BAR",
    "STATUS",
    "STATUS_CAP_LIST",
    "STATUS_ERROR_BITS",
    "SUBSYSTEM_ID",
    "SUBSYSTEM_VENDOR_ID",
    "VENDOR_ID",
    "BarKind",
    "BarSpec",
    "BridgeRegisters",
    "Capability",
    "ConfigLayout",
    "ConfigSpace",
    "DeviceType",
    "ExtendedCapability",
    "IoWindow",
    "PrefetchWindow",
    "Register",
    "RegisterClass",
    "RomSpec",
    "layout",
]  # fmt: skip

BAR_COUNT = 6
ROM_INDEX = 6
"""BAR index under which the expansion ROM is mapped in the routing tables (R-BAR-007)."""
FINGERPRINT_MAGIC = b"VPCIDTYP"
STICKY_TAG = b"STICKY"
"""Fingerprint input: what precedes the sticky mask of a type that declares sticky bits (R-RST-004)."""
FINGERPRINT_VERSION = 1


class BarKind(StrEnum):
    """What a BAR decodes (R-BAR-001)."""

    IO = "io"
    MEM32 = "mem32"
    MEM64 = "mem64"


class RegisterClass(StrEnum):
    """How the bits of a device-specific register behave on a write (R-CFG-012)."""

    RO = "ro"
    RW = "rw"
    RW1C = "rw1c"
    RSVD = "rsvd"


def _check_field(owner: str, name: str, value: object, kind: type) -> None:
    if type(value) is not kind:
        raise DeviceTypeError(f"{owner}: {name} must be {kind.__name__}, got {value!r}")


@dataclass(frozen=True, slots=True)
class BarSpec:
    """One BAR: its kind, its size (a power of two) and prefetchability (R-BAR-001)."""

    kind: BarKind
    size: int
    prefetchable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.kind, BarKind):
            raise DeviceTypeError(f"BAR kind must be a BarKind (io, mem32, mem64), got {self.kind!r}")
        _check_field("BAR", "size", self.size, int)
        _check_field("BAR", "prefetchable", self.prefetchable, bool)

    def type_bits(self) -> int:
        """The read-only low bits of the BAR's (lower) dword (R-BAR-002)."""
        if self.kind is BarKind.IO:
            return 0x1
        bits = 0x4 if self.kind is BarKind.MEM64 else 0x0
        return bits | (0x8 if self.prefetchable else 0)


@dataclass(frozen=True, slots=True)
class RomSpec:
    """Expansion ROM: size (power of two, 2 KiB to 16 MiB) and contents (R-BAR-007)."""

    size: int
    contents: bytes = b""

    def __post_init__(self) -> None:
        _check_field("ROM", "size", self.size, int)
        _check_field("ROM", "contents", self.contents, bytes)


@dataclass(frozen=True, slots=True)
class Capability:
    """A capability structure: ID and body (after the ID/next bytes), per-byte masks (R-CFG-008).

    ``writable`` and ``rw1c`` are the same length as ``body`` or empty (no
    such bits). ``offset`` places it; None packs it after the previous one
    (the first at 0x40).
    """

    cap_id: int
    body: bytes
    writable: bytes = b""
    rw1c: bytes = b""
    offset: int | None = None

    def __post_init__(self) -> None:
        _check_capability("capability", self.cap_id, 0xFF, self.body, self.writable, self.rw1c, self.offset)


def _check_capability(
    what: str, cap_id: object, top: int, body: object, writable: object, rw1c: object, offset: object
) -> None:
    """Field types and the ID's range of a capability; where it fits is the builder's check (R-DT-006)."""
    if type(cap_id) is not int or not 0 <= cap_id <= top:
        raise DeviceTypeError(f"{what}: the ID must be an integer 0-{top:#x}, got {cap_id!r}")
    for name, value in (("body", body), ("writable", writable), ("rw1c", rw1c)):
        _check_field(what, name, value, bytes)
    if offset is not None:
        _check_field(what, "offset", offset, int)


@dataclass(frozen=True, slots=True)
class ExtendedCapability:
    """A PCI Express extended capability: 16-bit ID, 4-bit version, body after the 4-byte header
    (R-DT-007). ``offset`` None packs it after the previous one (the first at 0x100)."""

    cap_id: int
    version: int
    body: bytes
    writable: bytes = b""
    rw1c: bytes = b""
    offset: int | None = None

    def __post_init__(self) -> None:
        what = "extended capability"
        _check_capability(what, self.cap_id, 0xFFFF, self.body, self.writable, self.rw1c, self.offset)
        if type(self.version) is not int or not 0 <= self.version <= 0xF:
            raise DeviceTypeError(f"{what}: the version must be an integer 0-15, got {self.version!r}")


@dataclass(frozen=True, slots=True)
class Register:
    """A device-specific register outside the header and capabilities (R-CFG-012).

    ``bits`` gives ranges of its bits their own class among ``ro``, ``rw``,
    ``rw1c`` and ``rsvd``, the classes the per-byte masks hold (R-REG-012).
    """

    offset: int
    width: int
    cls: RegisterClass
    value: int = 0
    bits: tuple[Bits, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.cls, RegisterClass):
            allowed = ", ".join(c.value for c in RegisterClass)
            raise DeviceTypeError(f"register class must be a RegisterClass ({allowed}), got {self.cls!r}")
        for name in ("offset", "width", "value"):
            _check_field("register", name, getattr(self, name), int)
        if type(self.bits) is not tuple or not all(isinstance(b, Bits) for b in self.bits):
            raise DeviceTypeError(f"register at {self.offset:#x}: bits is a tuple of Bits")
        taken = 0
        for bits in self.bits:
            if bits.high >= 8 * self.width:
                raise DeviceTypeError(f"register at {self.offset:#x}: bits {bits.label} lie outside its bits")
            if taken & bits.mask:
                raise DeviceTypeError(f"register at {self.offset:#x}: bit {bit_list(taken & bits.mask)} is "
                                      "given two classes")  # fmt: skip
            taken |= bits.mask
            if bits.access not in CONFIG_ACCESS:
                raise DeviceTypeError(
                    f"register at {self.offset:#x}: bits {bits.label} are {bits.access}; configuration "
                    "registers hold ro, rw, rw1c and rsvd bits only, since configuration reads change "
                    "nothing and the masks hold no more (R-REG-012): use a BAR register or a "
                    "configuration behaviour"
                )

    def masks(self) -> tuple[int, int, int]:
        """(writable, RW1C, reserved) bits of the register, its class refined by ``bits``."""
        full = (1 << (8 * self.width)) - 1
        per_class = dict.fromkeys(CONFIG_ACCESS, 0)
        rest = full
        for bits in self.bits:
            per_class[bits.access] |= bits.mask & full
            rest &= ~bits.mask
        per_class[Access(self.cls.value)] |= rest
        return per_class[Access.RW], per_class[Access.RW1C], per_class[Access.RSVD]


@dataclass(frozen=True, eq=False)
class DeviceType:
    """Everything a device supplies; the data manager does the rest (R-DT-001).

    ``bars`` has one entry per BAR slot used, ``None`` for an unimplemented
    slot; a 64-bit BAR uses its slot and the next, which must be ``None``.
    With ``space`` the configuration space is declared byte by byte and the
    identity fields must agree with it (use :meth:`from_space`); without it
    the builder lays out the fields (R-DT-005). ``bridge`` makes it a
    PCI-to-PCI bridge: a type 1 header with those windows, two BAR slots, the
    ROM BAR at 0x38 and no subsystem ID registers (R-BRG-001).
    """

    name: str
    vendor_id: int
    device_id: int
    class_code: int
    revision: int = 0
    subsystem_vendor_id: int = 0
    subsystem_id: int = 0
    interrupt_pin: int = 0
    bars: tuple[BarSpec | None, ...] = ()
    rom: RomSpec | None = None
    capabilities: tuple[Capability, ...] = ()
    registers: tuple[Register, ...] = ()
    command_mask: int = CMD_IO | CMD_MEM | CMD_BUS_MASTER | CMD_SERR | CMD_INTX_DISABLE
    status_rw1c: int = STATUS_ERROR_BITS
    express: bool = False
    multifunction: bool = False
    behaviour: BarBehaviour | None = None
    extended_capabilities: tuple[ExtendedCapability, ...] = ()
    space: ConfigSpace | None = None
    config_behaviour: ConfigBehaviour | None = None
    bridge: BridgeRegisters | None = None
    sticky: bytes = b""
    """Per-byte mask of the bits a function-level reset keeps and a power-on reset clears, the
    configuration space's size, or empty for none (R-RST-004)."""
    accepts: tuple[bytes, ...] = ()
    """Fingerprints of earlier revisions of this type whose blobs a restore accepts (R-MIG-001)."""

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_space(
        cls,
        name: str,
        space: ConfigSpace,
        bars: tuple[BarSpec | None, ...] = (),
        rom: RomSpec | None = None,
        behaviour: BarBehaviour | None = None,
        config_behaviour: ConfigBehaviour | None = None,
    ) -> DeviceType:
        """A type declared byte by byte; identity, command and status masks are read off the bytes."""
        if not isinstance(space, ConfigSpace):
            raise DeviceTypeError(f"space must be a ConfigSpace, got {type(space).__name__}")
        return cls(name=name, bars=bars, rom=rom, behaviour=behaviour, space=space,
                   config_behaviour=config_behaviour, **_space_fields(space))  # fmt: skip

    @cached_property
    def sticky_bits(self) -> int:
        """The sticky mask of the declared bytes as one little-endian integer, 0 for none (R-RST-004)."""
        return int.from_bytes(self.declared.sticky, "little")

    @cached_property
    def flr_control(self) -> int | None:
        """Offset of Device Control when the function can do a function-level reset (R-RST-005)."""
        return flr_control(self.declared.image, self.chain)

    @property
    def config_size(self) -> int:
        """Bytes of configuration space: 256, or 4096 for PCI Express (R-CFG-009)."""
        return EXPRESS_CONFIG_SIZE if self.express else CONVENTIONAL_CONFIG_SIZE

    def bar(self, index: int) -> BarSpec | None:
        """The BAR implemented at ``index`` (0-5), or None."""
        return self.bars[index] if index < len(self.bars) else None

    @property
    def rom_offset(self) -> int:
        """Where the expansion ROM BAR is: 0x30 in a type 0 header, 0x38 in a bridge's (R-BRG-001)."""
        return BRIDGE_ROM_BAR if self.bridge is not None else ROM_BAR

    @property
    def bar_slots(self) -> int:
        """BAR slots of the header: six, or two in a bridge's (R-BRG-001)."""
        return BRIDGE_BAR_COUNT if self.bridge is not None else BAR_COUNT

    @cached_property
    def declared(self) -> ConfigSpace:
        """The per-byte declaration: ``space`` itself, or what the builder lays out (R-DT-005)."""
        return self.space if self.space is not None else _build(self)

    def check_pci(self) -> None:
        """Reject a type whose declared structures break the PCI rules: the PCI Express capability,
        MSI, MSI-X and INTx registers (R-DT-009, R-IRQ-001, R-IRQ-002, R-IRQ-004)."""
        check_pci_rules(self.declared)

    @cached_property
    def chain(self) -> tuple[ChainEntry, ...]:
        """The capabilities found by walking both chains of the declared bytes (R-DT-006, R-DT-007)."""
        return check_space(self.declared, self.express)

    @cached_property
    def _fingerprint(self) -> bytes:
        return hashlib.sha256(fingerprint_input(self)).digest()

    def fingerprint(self) -> bytes:
        """SHA-256 of :func:`fingerprint_input` (R-DT-002, R-BLOB-004)."""
        return self._fingerprint

    def __eq__(self, other: object) -> bool:
        # Two types are the same type when everything the fingerprint covers is equal.
        return isinstance(other, DeviceType) and self._fingerprint == other._fingerprint

    def __hash__(self) -> int:
        # Computed once: types key the layout cache on every plug and restore.
        return hash(self._fingerprint)

    @cached_property
    def decode_dwords(self) -> dict[int, tuple[int, ...]]:
        """Configuration dword index -> the BARs whose decode a write there can change (R-DEC-009).

        The command register's dword affects every BAR; a BAR's dword (both
        dwords of a 64-bit BAR) affects that BAR; the ROM BAR's dword the ROM.
        """
        table: dict[int, tuple[int, ...]] = {COMMAND // 4: self.implemented}
        for index in self.implemented:
            if index == ROM_INDEX:
                table[self.rom_offset // 4] = (ROM_INDEX,)
                continue
            bar = self.bars[index]
            assert bar is not None
            for dword in range(2 if bar.kind is BarKind.MEM64 else 1):
                table[BAR0 // 4 + index + dword] = (index,)
        return table

    @cached_property
    def implemented(self) -> tuple[int, ...]:
        """Indices of the implemented BARs, ROM (6) last."""
        bars = tuple(i for i in range(BAR_COUNT) if self.bar(i) is not None)
        return bars + ((ROM_INDEX,) if self.rom is not None else ())


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


_FIELD_BITS = (("vendor_id", 16), ("device_id", 16), ("class_code", 24), ("revision", 8),
               ("subsystem_vendor_id", 16), ("subsystem_id", 16), ("interrupt_pin", 8),
               ("command_mask", 16), ("status_rw1c", 16))  # fmt: skip


def _validate(t: DeviceType) -> None:
    """Reject inconsistent device types before they reach a VM (R-DT-001, R-DT-005..R-DT-008)."""
    if type(t.name) is not str or not t.name or not t.name.isprintable() or len(t.name.encode()) > 255:
        raise DeviceTypeError("a device type needs a printable name of 1-255 bytes")
    if t.space is not None:
        if not isinstance(t.space, ConfigSpace):
            raise DeviceTypeError(f"space must be a ConfigSpace, got {type(t.space).__name__}")
        t.chain  # noqa: B018 - the bytes' own rules first, so errors name the byte
    for name, bits in _FIELD_BITS:
        value = getattr(t, name)
        if type(value) is not int or not 0 <= value < (1 << bits):
            raise DeviceTypeError(f"{name} must be an integer of {bits} bits, got {value!r}")
    for name in ("express", "multifunction"):
        _check_field("device type", name, getattr(t, name), bool)
    _check_field("device type", "sticky", t.sticky, bytes)
    for name, kind in (("bars", tuple), ("capabilities", tuple), ("registers", tuple),
                       ("extended_capabilities", tuple)):  # fmt: skip
        _check_field("device type", name, getattr(t, name), kind)
    if t.vendor_id == 0xFFFF:
        raise DeviceTypeError("vendor ID 0xffff is reserved for 'no device'")
    if t.interrupt_pin > 4:
        raise DeviceTypeError("interrupt_pin is 0 (none) or 1-4 (INTA#-INTD#)")
    if t.command_mask & ~COMMAND_BITS or t.status_rw1c & ~STATUS_ERROR_BITS:
        raise DeviceTypeError("command_mask/status_rw1c name bits the header does not define")
    for name in ("behaviour", "config_behaviour"):
        hook = getattr(t, name)
        if hook is not None and (type(getattr(hook, "name", None)) is not str or not hook.name):
            raise DeviceTypeError(f"{name} must have a non-empty string name")
    if t.bridge is not None:
        if not isinstance(t.bridge, BridgeRegisters):
            raise DeviceTypeError(f"bridge must be BridgeRegisters or None, got {t.bridge!r}")
        if t.subsystem_vendor_id or t.subsystem_id:
            raise DeviceTypeError("a bridge's type 1 header has no subsystem ID registers (R-BRG-001)")
    _validate_bars(t)
    if isinstance(t.behaviour, RegisterMap):  # R-REG-001: registers inside implemented BARs
        t.behaviour.fit({i: bar.size for i, bar in enumerate(t.bars) if bar is not None})
    elif t.behaviour is not None and t.behaviour.name == REGISTER_MAP_NAME:
        raise DeviceTypeError(
            f"the BAR behaviour name {REGISTER_MAP_NAME!r} is the register map's (R-REG-001)"
        )
    if t.space is not None:
        if t.capabilities or t.registers or t.extended_capabilities:
            raise DeviceTypeError("a type declared byte by byte carries its capabilities and registers "
                                  "in its bytes")  # fmt: skip
        for name, value in _space_fields(t.space).items():
            if getattr(t, name) != value:
                raise DeviceTypeError(f"{name} {getattr(t, name)!r} disagrees with the declared bytes")
    t.chain  # noqa: B018 - builds the bytes and checks them (raises DeviceTypeError)
    _check_header_registers(t)
    if type(t.accepts) is not tuple or not all(type(f) is bytes and len(f) == 32 for f in t.accepts):
        raise DeviceTypeError("accepts is a tuple of 32-byte fingerprints (R-MIG-001)")
    if len(set(t.accepts)) != len(t.accepts) or len(t.accepts) > 255:
        raise DeviceTypeError("accepts names at most 255 fingerprints, each once")
    if isinstance(t.behaviour, MsixTable):  # bound to this type's capability, whatever it served before
        object.__setattr__(t, "behaviour", t.behaviour.bound(_msix_place(t)))


def _msix_place(t: DeviceType) -> MsixPlace:
    """Where the type's MSI-X capability puts its table and PBA: inside memory BARs it implements,
    apart from each other (R-IRQ-003)."""
    place = msix_place(t.declared.image)
    if place is None:
        raise DeviceTypeError("BAR behaviour 'msix' serves an MSI-X capability (ID 0x11); the type has none")
    for what, index, span in (("table", place.table_bar, place.table), ("PBA", place.pba_bar, place.pba)):
        bar = t.bar(index)
        if bar is None or bar.kind is BarKind.IO or span.stop > bar.size:
            raise DeviceTypeError(
                f"the MSI-X {what} ({span.start:#x}-{span.stop - 1:#x} of BAR{index}) lies inside an "
                "implemented memory BAR"
            )
    if (
        place.table_bar == place.pba_bar
        and place.table.start < place.pba.stop
        and place.pba.start < place.table.stop
    ):
        raise DeviceTypeError("the MSI-X table and PBA overlap")
    return place


def _space_fields(space: ConfigSpace) -> dict[str, Any]:
    """Identity, command, status and bridge fields as the declared bytes hold them (R-DT-005, R-BRG-001)."""
    bridge = bridge_registers(space)
    subsystem = {"subsystem_vendor_id": 0, "subsystem_id": 0} if bridge is not None else {
        "subsystem_vendor_id": space.word(SUBSYSTEM_VENDOR_ID, 2), "subsystem_id": space.word(SUBSYSTEM_ID, 2)
    }  # fmt: skip
    return {
        "vendor_id": space.word(VENDOR_ID, 2), "device_id": space.word(DEVICE_ID, 2),
        "class_code": space.word(CLASS_CODE, 3), "revision": space.image[REVISION],
        "interrupt_pin": space.image[INTERRUPT_PIN],
        "command_mask": space.word(COMMAND, 2, "wmask"), "status_rw1c": space.word(STATUS, 2, "w1cmask"),
        "express": len(space.image) == EXPRESS_CONFIG_SIZE,
        "multifunction": bool(space.image[HEADER_TYPE] & 0x80), "sticky": space.sticky,
        "bridge": bridge, **subsystem,
    }  # fmt: skip


def _validate_bars(t: DeviceType) -> None:
    if len(t.bars) > t.bar_slots:
        raise DeviceTypeError("a type 0 header has six BAR slots, a bridge's type 1 header two")
    for i, bar in enumerate(t.bars):
        if bar is None:
            continue
        if not isinstance(bar, BarSpec):
            raise DeviceTypeError(f"BAR{i} must be a BarSpec or None, got {bar!r}")
        if bar.kind is BarKind.IO:
            if not (_is_pow2(bar.size) and 4 <= bar.size <= 256) or bar.prefetchable:
                raise DeviceTypeError(f"BAR{i}: I/O BARs are 4-256 bytes, power of two, not prefetchable")
        elif bar.kind is BarKind.MEM32:
            if not (_is_pow2(bar.size) and 16 <= bar.size <= 1 << 31):
                raise DeviceTypeError(f"BAR{i}: 32-bit memory BARs are 16 B-2 GiB, power of two")
        else:
            if not (_is_pow2(bar.size) and 16 <= bar.size <= 1 << 63):
                raise DeviceTypeError(f"BAR{i}: 64-bit memory BARs are 16 B-8 EiB, power of two")
            if i == t.bar_slots - 1 or t.bar(i + 1) is not None:
                raise DeviceTypeError(f"BAR{i}: a 64-bit BAR needs slot {i + 1} left empty")
        if i > 0 and (prev := t.bars[i - 1]) is not None and prev.kind is BarKind.MEM64:
            raise DeviceTypeError(f"BAR{i} is the upper half of 64-bit BAR{i - 1}")
    if t.rom is not None and (not isinstance(t.rom, RomSpec) or not (
        _is_pow2(t.rom.size) and 2048 <= t.rom.size <= 1 << 24 and len(t.rom.contents) <= t.rom.size
    )):  # fmt: skip
        raise DeviceTypeError("ROM size is a power of two of 2 KiB-16 MiB holding its contents")


def bar_wmask(bar: BarSpec) -> int:
    """Writable bits of the BAR's address value: at and above its size (R-BAR-003, R-BAR-005).

    An I/O BAR register is 32 bits wide; bits 31:16 are writable too (R-BAR-006).
    """
    width = 64 if bar.kind is BarKind.MEM64 else 32
    low_bits = 0x3 if bar.kind is BarKind.IO else 0xF
    return ~(bar.size - 1) & ((1 << width) - 1) & ~low_bits


def rom_wmask(rom: RomSpec) -> int:
    """Writable bits of the ROM BAR: address bits at and above its size, plus enable (R-BAR-007)."""
    return (~(rom.size - 1) & 0xFFFFF800) | 0x1


def _header_registers(t: DeviceType) -> list[tuple[int, int, int, int]]:
    """(offset, width, value, wmask) of the BAR and ROM registers the BARs imply (R-BAR-002..R-BAR-008).

    Unimplemented slots and an absent ROM read zero and ignore writes (R-BAR-004).
    """
    regs: list[tuple[int, int, int, int]] = []
    slot = 0
    while slot < t.bar_slots:
        bar = t.bar(slot)
        if bar is None:
            regs.append((BAR0 + 4 * slot, 4, 0, 0))
            slot += 1
            continue
        mask = bar_wmask(bar)
        regs.append((BAR0 + 4 * slot, 4, bar.type_bits(), mask & 0xFFFFFFFF))  # R-BAR-008: address zero
        if bar.kind is BarKind.MEM64:
            regs.append((BAR0 + 4 * slot + 4, 4, 0, mask >> 32))
            slot += 1
        slot += 1
    regs.append((t.rom_offset, 4, 0, rom_wmask(t.rom) if t.rom is not None else 0))
    return regs


def _check_header_registers(t: DeviceType) -> None:
    """The BAR and ROM registers of the declared bytes are exactly those the BARs imply (R-DT-005)."""
    space = t.declared
    for offset, width, value, wmask in _header_registers(t):
        for k in range(width):
            o, shift = offset + k, 8 * k
            want = ((value >> shift) & 0xFF, (wmask >> shift) & 0xFF, 0)
            if (space.image[o], space.wmask[o], space.w1cmask[o]) != want:
                raise DeviceTypeError(
                    f"config byte {o:#05x}: the BAR and ROM registers must be those the declared BARs "
                    f"imply (value {want[0]:#04x}, writable {want[1]:#04x}, no RW1C bits)"
                )


# ------------------------------------------------------------------ the builder


class _Image:
    """Configuration bytes being laid out from fields; a byte is claimed at most once above 0x40."""

    def __init__(self, size: int) -> None:
        self.image, self.wmask, self.w1c = bytearray(size), bytearray(size), bytearray(size)
        self.used = bytearray(size)

    def put(self, offset: int, width: int, value: int, wm: int = 0, cm: int = 0) -> None:
        if offset + width > len(self.image):
            raise DeviceTypeError(f"config bytes {offset:#x}+{width} lie outside configuration space")
        if offset + width > CAPABILITY_AREA and any(self.used[offset : offset + width]):
            raise DeviceTypeError(f"config bytes {offset:#x}+{width} are claimed twice")
        for k in range(width):
            sh = 8 * k
            self.image[offset + k] = (value >> sh) & 0xFF
            self.wmask[offset + k] = (wm >> sh) & 0xFF
            self.w1c[offset + k] = (cm >> sh) & 0xFF
            self.used[offset + k] = 1

    def put_body(self, what: str, offset: int, body: bytes, writable: bytes, rw1c: bytes) -> None:
        for name, data in (("body", body), ("writable", writable), ("rw1c", rw1c)):
            if type(data) is not bytes:
                raise DeviceTypeError(f"{what}: {name} must be bytes")
        for cap_mask in (writable, rw1c):
            if cap_mask and len(cap_mask) != len(body):
                raise DeviceTypeError(f"{what}: masks must match the body's length")
        for k, byte in enumerate(body):
            wm = writable[k] if writable else 0
            cm = rw1c[k] if rw1c else 0
            if wm & cm:
                raise DeviceTypeError(f"{what} byte {k}: a bit is both RW and RW1C")
            self.put(offset + k, 1, byte, wm=wm, cm=cm)

    def space(self) -> ConfigSpace:
        return ConfigSpace(bytes(self.image), bytes(self.wmask), bytes(self.w1c))


def _place(what: str, offset: int | None, cursor: int, length: int, area: range) -> int:
    """Where a capability goes: its declared offset, or the first dword at or after ``cursor``."""
    at = (cursor + 3) & ~3 if offset is None else offset
    if type(at) is not int or at % 4 or at not in area or at + length > area.stop:
        raise DeviceTypeError(
            f"{what} at {at!r} (+{length} bytes) must be dword aligned inside "
            f"{area.start:#x}-{area.stop - 1:#x}"
        )
    return at


def _build(t: DeviceType) -> ConfigSpace:
    """Lay out a type declared by fields (R-CFG-002..R-CFG-012 are this builder's defaults)."""
    img = _Image(t.config_size)
    # Bytes no field claims stay zero and read-only (R-CFG-010): that covers the
    # latency timer, BIST, CardBus CIS, 0x35-0x3B, Min_Gnt, Max_Lat (R-CFG-003)
    # and unimplemented BAR slots (R-BAR-004).
    img.put(VENDOR_ID, 2, t.vendor_id)
    img.put(DEVICE_ID, 2, t.device_id)
    img.put(COMMAND, 2, 0, wm=t.command_mask)  # R-CFG-004
    img.put(STATUS, 2, STATUS_CAP_LIST if t.capabilities else 0, cm=t.status_rw1c)  # R-CFG-005, R-CFG-006
    img.put(REVISION, 1, t.revision)
    img.put(CLASS_CODE, 3, t.class_code)
    img.put(CACHE_LINE_SIZE, 1, 0, wm=0xFF)  # R-CFG-007
    img.put(
        HEADER_TYPE, 1, (0x80 if t.multifunction else 0x00) | (1 if t.bridge is not None else 0)
    )  # R-CFG-011
    for offset, width, value, wmask in _header_registers(t):
        img.put(offset, width, value, wm=wmask)
    if t.bridge is None:
        img.put(SUBSYSTEM_VENDOR_ID, 2, t.subsystem_vendor_id)
        img.put(SUBSYSTEM_ID, 2, t.subsystem_id)
    else:
        for offset, width, value, wmask, w1cmask in t.bridge.registers():  # R-BRG-001
            img.put(offset, width, value, wm=wmask, cm=w1cmask)
    img.put(INTERRUPT_LINE, 1, 0, wm=0xFF)  # R-CFG-007
    img.put(INTERRUPT_PIN, 1, t.interrupt_pin)

    # R-CFG-008: the chain in the declared order, each at its offset or packed from 0x40.
    placed: list[int] = []
    cursor = CAPABILITY_AREA
    for i, cap in enumerate(t.capabilities):
        if not isinstance(cap, Capability) or type(cap.cap_id) is not int or not 0 <= cap.cap_id <= 0xFF:
            raise DeviceTypeError(f"capability {i}: a Capability with a one-byte ID")
        at = _place(f"capability {i}", cap.offset, cursor, 2 + len(cap.body), range(0x40, 0x100))
        placed.append(at)
        img.put_body(f"capability {i}", at + 2, cap.body, cap.writable, cap.rw1c)
        cursor = at + 2 + len(cap.body)
    for i, at in enumerate(placed):
        img.put(at, 2, t.capabilities[i].cap_id | (placed[i + 1] if i + 1 < len(placed) else 0) << 8)
    img.put(CAP_POINTER, 1, placed[0] if placed else 0)

    # R-DT-007: extended capabilities from 0x100, the first at 0x100.
    if t.extended_capabilities and not t.express:
        raise DeviceTypeError("extended capabilities need a PCI Express function (4096 bytes)")
    ext: list[int] = []
    cursor = EXTENDED_AREA
    for i, xcap in enumerate(t.extended_capabilities):
        if not isinstance(xcap, ExtendedCapability) or not all(
            type(v) is int for v in (xcap.cap_id, xcap.version)
        ) or not (0 <= xcap.cap_id <= 0xFFFF and 0 <= xcap.version <= 0xF):  # fmt: skip
            raise DeviceTypeError(f"extended capability {i}: a 16-bit ID and a 4-bit version")
        at = _place(f"extended capability {i}", xcap.offset, cursor, 4 + len(xcap.body), range(0x100, 0x1000))
        if i == 0 and at != EXTENDED_AREA:
            raise DeviceTypeError("the first extended capability sits at 0x100")
        ext.append(at)
        img.put_body(f"extended capability {i}", at + 4, xcap.body, xcap.writable, xcap.rw1c)
        cursor = at + 4 + len(xcap.body)
    for i, at in enumerate(ext):
        xcap = t.extended_capabilities[i]
        nxt = ext[i + 1] if i + 1 < len(ext) else 0
        img.put(at, 4, xcap.cap_id | xcap.version << 16 | nxt << 20)

    for reg in t.registers:  # R-CFG-012
        if not isinstance(reg, Register) or not isinstance(reg.cls, RegisterClass):
            raise DeviceTypeError(f"registers hold Register values with a RegisterClass, got {reg!r}")
        if type(reg.width) is not int or type(reg.offset) is not int or type(reg.value) is not int:
            raise DeviceTypeError(f"register {reg!r}: offset, width and value are integers")
        if reg.width not in (1, 2, 4) or reg.offset % reg.width or reg.offset < CAPABILITY_AREA:
            raise DeviceTypeError(f"register at {reg.offset:#x}: aligned width 1/2/4 at or above 0x40")
        if reg.offset + reg.width > t.config_size or not 0 <= reg.value < 1 << (8 * reg.width):
            raise DeviceTypeError(f"register at {reg.offset:#x}: outside config space or value too wide")
        writable, rw1c, reserved = reg.masks()  # R-REG-012: ranges of bits refine the class
        if reg.value & reserved:
            raise DeviceTypeError(
                f"register at {reg.offset:#x}: reserved bit {bit_list(reg.value & reserved)} reads as zero"
            )
        img.put(reg.offset, reg.width, reg.value, wm=writable, cm=rw1c)
    space = img.space()
    if t.sticky:  # R-RST-004: checked with the other rules by check_space
        space = ConfigSpace(space.image, space.wmask, space.w1cmask, t.sticky)
    return space


# ------------------------------------------------------------------ fingerprint

_BAR_CODES = {None: 0, BarKind.IO: 1, BarKind.MEM32: 2, BarKind.MEM64: 3}
UPPER_HALF = 4
"""Fingerprint code of the slot after a 64-bit BAR (its upper dword)."""


def _short(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<B", len(data)) + data


def fingerprint_input(t: DeviceType) -> bytes:
    """The bytes a type's fingerprint hashes (R-DT-002; spec/formats/device-type.md).

    Magic ``VPCIDTYP``, u16 version 1, the name (u8 length, UTF-8), u16 size
    of configuration space, then image, wmask and w1cmask of the declared
    bytes (status RW1C, as the default profile has it), six BAR slots
    (u8 kind: 0 none, 1 I/O, 2 32-bit, 3 64-bit, 4 upper dword; u8
    prefetchable; u64 size, 0 for kinds 0 and 4), the ROM (u32 size, 0 for
    none; u32 contents length; contents), and the BAR and configuration
    behaviour names (u8 length each; ``memory`` and empty by default); for
    a register map, its encoding (:meth:`RegisterMap.encoding`); for a type
    with sticky bits, ``STICKY`` and the sticky mask (R-RST-004); when the
    type accepts earlier revisions, their count (u8) and fingerprints in
    ascending order.
    """
    space = t.declared
    out = [FINGERPRINT_MAGIC, struct.pack("<H", FINGERPRINT_VERSION), _short(t.name),
           struct.pack("<H", len(space.image)), space.image, space.wmask, space.w1cmask]  # fmt: skip
    upper = False
    for index in range(BAR_COUNT):
        bar = t.bar(index)
        if upper:
            out.append(struct.pack("<BBQ", UPPER_HALF, 0, 0))
        elif bar is None:
            out.append(struct.pack("<BBQ", 0, 0, 0))
        else:
            out.append(struct.pack("<BBQ", _BAR_CODES[bar.kind], int(bar.prefetchable), bar.size))
        upper = bar is not None and bar.kind is BarKind.MEM64
    rom = t.rom
    out.append(struct.pack("<II", rom.size, len(rom.contents)) + rom.contents if rom else bytes(8))
    out.append(_short(t.behaviour.name if t.behaviour is not None else "memory"))
    out.append(_short(t.config_behaviour.name if t.config_behaviour is not None else ""))
    if isinstance(t.behaviour, RegisterMap):
        out.append(t.behaviour.encoding())  # R-REG-001: the register map is part of the type
    if space.sticky:
        out.append(STICKY_TAG + space.sticky)  # R-RST-004: only types that declare sticky bits
    if t.accepts:  # R-MIG-001: the revisions a restore accepts are part of the type
        out.append(struct.pack("<B", len(t.accepts)) + b"".join(sorted(t.accepts)))
    return b"".join(out)


# ------------------------------------------------------------------ revisions


def revision_difference(older: DeviceType, newer: DeviceType) -> str | None:
    """The first field that must match for ``newer`` to take ``older``'s blobs, or None (R-MIG-001).

    Name, configuration space size, every BAR slot (kind, prefetchable,
    size), the ROM's size and the BAR behaviour name must be equal;
    configuration bytes, masks, ROM contents and the configuration
    behaviour may differ.
    """
    if older.name != newer.name:
        return f"name: {older.name!r} vs {newer.name!r}"
    if older.config_size != newer.config_size:
        return f"configuration space size: {older.config_size} vs {newer.config_size} bytes"
    for index in range(BAR_COUNT):
        was, now = older.bar(index), newer.bar(index)
        if was != now:
            return f"BAR{index}: {_bar_text(was)} vs {_bar_text(now)}"
    sizes = [t.rom.size if t.rom is not None else 0 for t in (older, newer)]
    if sizes[0] != sizes[1]:
        return f"ROM size: {sizes[0]:#x} vs {sizes[1]:#x}"
    names = [t.behaviour.name if t.behaviour is not None else "memory" for t in (older, newer)]
    if names[0] != names[1]:
        return f"BAR behaviour: {names[0]!r} vs {names[1]!r}"
    return None


def _bar_text(bar: BarSpec | None) -> str:
    if bar is None:
        return "none"
    return f"{bar.kind.value}{' prefetchable' if bar.prefetchable else ''} {bar.size:#x} bytes"


def accepting(newer: DeviceType, *older: DeviceType) -> DeviceType:
    """``newer`` declared to accept the blobs of the ``older`` revisions (R-MIG-001).

    Raises :class:`DeviceTypeError` naming the first field of an older
    revision that differs where revisions must agree.
    """
    for revision in older:
        if not isinstance(revision, DeviceType):
            raise DeviceTypeError(f"a revision is a DeviceType, got {type(revision).__name__}")
        difference = revision_difference(revision, newer)
        if difference is not None:
            fingerprint = revision.fingerprint().hex()[:16]
            raise DeviceTypeError(f"{newer.name!r} cannot accept revision {fingerprint}...: {difference}")
    fingerprints = {*newer.accepts, *(revision.fingerprint() for revision in older)}
    return replace(newer, accepts=tuple(sorted(fingerprints)))


# ------------------------------------------------------------------ layout


@dataclass(frozen=True, slots=True)
class ConfigLayout:
    """Per-byte power-on image and masks the manager runs a type on, in one profile (R-CFG-001).

    ``wmask``: bits a write sets from the written value; ``w1cmask``: bits a
    written one clears. A bit is in at most one mask; every other bit is
    read-only.
    """

    image: bytes
    wmask: bytes
    w1cmask: bytes
    fixed: bytes = field(default=b"", compare=False)
    """Bits neither writable nor RW1C: restore must find them equal to ``image`` (R-SR-004)."""

    def __post_init__(self) -> None:
        fixed = bytes(~(w | c) & 0xFF for w, c in zip(self.wmask, self.w1cmask, strict=True))
        object.__setattr__(self, "fixed", fixed)

    def first_fixed_difference(self, config: bytes) -> int | None:
        """Offset of the first byte of ``config`` whose fixed bits differ from the image, or None."""
        if len(config) != len(self.image):
            return 0
        diff = int.from_bytes(config, "little") ^ int.from_bytes(self.image, "little")
        diff &= int.from_bytes(self.fixed, "little")
        return None if diff == 0 else ((diff & -diff).bit_length() - 1) // 8


LAYOUT_FIELDS = tuple(f.name for f in fields(ConfigLayout) if f.name != "fixed")


@lru_cache(maxsize=512)
def layout(t: DeviceType, status: StatusRegister) -> ConfigLayout:
    """The declared bytes of ``t`` under the status variant (R-CFG-001, R-CFG-006).

    Under ``status = "read-only"`` the status register has no RW1C bits.
    """
    space = t.declared
    w1c = space.w1cmask
    if status is StatusRegister.READ_ONLY:
        w1c = w1c[:STATUS] + b"\x00\x00" + w1c[STATUS + 2 :]
    return ConfigLayout(space.image, space.wmask, w1c)
