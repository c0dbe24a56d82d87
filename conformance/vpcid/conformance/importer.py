"""Import a configuration-space dump as a device type, and a machine showing it (spec/formats/import.md).

A dump (:mod:`vpcid.conformance.dumps`) shows a function's bytes at one
moment of its life, after firmware and a driver programmed it; it shows no
masks. :func:`import_dump` turns it into a :class:`~vpcid.model.DeviceType`
declared byte by byte (R-DT-005):

* the power-on image is the dump's bytes, except what firmware and the
  operating system program - command, BAR and ROM addresses, cache line
  size, interrupt line, interrupt enables and the other fields listed in
  :data:`RESET_FIELDS` return to the value the PCI rules give them at reset -
  and RW1C bits (set by events) are zero;
* BARs and ROM come from the dump's type bits and the sizes the dump
  knows (sysfs ``resource``, ``[size=..]``) or an overlay gives;
* write and write-1-to-clear masks come from the PCI rules for the header
  and the standard capabilities (each rule cites its section); every other
  byte is read-only, and the type's notes name it;
* an overlay (:func:`read_overlay`) overrides any byte and supplies sizes,
  names and behaviours.

:func:`machine_text` writes a machine file (:mod:`vpcid.conformance.machine`)
that plugs each imported function at its BDF and programs it through
configuration writes, so that the VM shows exactly the dump's bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePath
from typing import Any, cast

import jsonschema
from vpcid.conformance.dumps import Dump, read_dumps
from vpcid.conformance.inputs import MIB, decode_text, parse_json, read_input
from vpcid.conformance.typefile import TypeEntry, bar_behaviour, config_behaviour_named
from vpcid.model.bdf import Bdf
from vpcid.model.configspace import address_limit
from vpcid.model.devicetype import (
    BAR0,
    BarKind,
    BarSpec,
    ConfigSpace,
    DeviceType,
    RomSpec,
    bar_wmask,
    rom_wmask,
)
from vpcid.model.errors import DeviceTypeError, VpcidError
from vpcid.model.header import (
    CACHE_LINE_SIZE,
    CAPABILITY_AREA,
    CMD_BUS_MASTER,
    CMD_INTX_DISABLE,
    CMD_IO,
    CMD_MEM,
    CMD_SERR,
    COMMAND,
    CONVENTIONAL_CONFIG_SIZE,
    EXPRESS_CONFIG_SIZE,
    HEADER_TYPE,
    INTERRUPT_LINE,
    INTERRUPT_PIN,
    LATENCY_TIMER,
    ROM_BAR,
    STATUS,
    STATUS_CAP_LIST,
    STATUS_ERROR_BITS,
    ChainEntry,
    extended_chain,
    standard_chain,
)

OVERLAY_KEY = "vpcid-import-overlay"
OVERLAY_VERSION = 1
OVERLAY_LIMIT = 4 * MIB
BAR_COUNT = 6
ROM_ENABLE = 0x1
ROM_ADDRESS = 0xFFFF_F800
BIST = 0x0F
STATUS_INTERRUPT = 0x0008

# Capability IDs (PCI Code and ID Assignment Specification).
CAP_PM, CAP_MSI, CAP_VENDOR, CAP_EXPRESS, CAP_MSIX = 0x01, 0x05, 0x09, 0x10, 0x11
EXT_AER = 0x0001
CAPABILITY_NAMES = {
    0x01: "Power Management", 0x02: "AGP", 0x03: "VPD", 0x04: "Slot ID", 0x05: "MSI",
    0x06: "CompactPCI hot swap", 0x07: "PCI-X", 0x08: "HyperTransport", 0x09: "Vendor Specific",
    0x0A: "Debug port", 0x0B: "CompactPCI central resource control", 0x0C: "PCI Standard Hot-Plug",
    0x0D: "Bridge subsystem vendor ID", 0x0E: "AGP 8x", 0x0F: "Secure Device", 0x10: "PCI Express",
    0x11: "MSI-X", 0x12: "SATA", 0x13: "Advanced Features", 0x14: "Enhanced Allocation",
    0x15: "Flattening Portal Bridge",
}  # fmt: skip
EXTENDED_NAMES = {
    0x0001: "Advanced Error Reporting", 0x0002: "Virtual Channel", 0x0003: "Device Serial Number",
    0x0004: "Power Budgeting", 0x000B: "Vendor-Specific Extended", 0x000D: "Access Control Services",
    0x000E: "Alternative Routing-ID", 0x000F: "Address Translation Services", 0x0010: "SR-IOV",
    0x0013: "Page Request", 0x0015: "Resizable BAR", 0x0017: "TPH Requester",
    0x0018: "Latency Tolerance Reporting", 0x0019: "Secondary PCI Express", 0x001B: "PASID",
    0x001E: "L1 PM Substates", 0x0023: "Designated Vendor-Specific", 0x0025: "Data Link Feature",
    0x0026: "Physical Layer 16.0 GT/s", 0x0027: "Lane Margining",
}  # fmt: skip

# PCI Express device/port types (PCIe Base 4.0 §7.5.3.2) a type 0 header can carry.
PORT_ENDPOINT, PORT_LEGACY_ENDPOINT, PORT_RC_ENDPOINT, PORT_RC_EVENT_COLLECTOR = 0x0, 0x1, 0x9, 0xA
PORT_TYPE_NAMES = {
    0x0: "Endpoint", 0x1: "Legacy Endpoint", 0x4: "Root Port", 0x5: "Upstream Port",
    0x6: "Downstream Port", 0x7: "PCIe to PCI bridge", 0x8: "PCI to PCIe bridge",
    0x9: "Root Complex Integrated Endpoint", 0xA: "Root Complex Event Collector",
}  # fmt: skip


class DumpImportError(VpcidError, ValueError):
    """A dump cannot become a device type as it stands; the message says what to supply (``bad-import``)."""

    kind = "bad-import"


# ------------------------------------------------------------------ overlay

_INT: dict[str, Any] = {
    "oneOf": [
        {"type": "integer", "minimum": 0, "maximum": 1 << 64},
        {"type": "string", "pattern": "^0x[0-9a-fA-F]{1,17}$"},
    ]
}
OVERLAY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "vpcid import overlay (spec/formats/import.md)",
    "type": "object",
    "required": [OVERLAY_KEY, "functions"],
    "additionalProperties": False,
    "properties": {
        OVERLAY_KEY: {"const": OVERLAY_VERSION},
        "functions": {"type": "array", "items": {"$ref": "#/$defs/function"}},
    },
    "$defs": {
        "int": _INT,
        "function": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "match": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "bdf": {
                            "type": "string",
                            "pattern": r"^([0-9a-fA-F]{4,5}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$",
                        },
                        "ids": {"type": "string", "pattern": "^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$"},
                    },
                },
                "name": {"type": "string", "minLength": 1, "maxLength": 255},
                "bar_sizes": {
                    "type": "object",
                    "propertyNames": {"pattern": "^[0-5]$"},
                    "additionalProperties": {"$ref": "#/$defs/int"},
                },
                "rom_size": {"$ref": "#/$defs/int"},
                "behaviour": {"type": "string", "minLength": 1},
                "config_behaviour": {"type": ["string", "null"], "minLength": 1},
                "bytes": {"type": "array", "items": {"$ref": "#/$defs/bytes"}},
                "notes": {"type": "array", "items": {"type": "string"}},
            },
        },
        "bytes": {
            "type": "object",
            "required": ["offset"],
            "additionalProperties": False,
            "properties": {
                "offset": {"$ref": "#/$defs/int"},
                "width": {"enum": [1, 2, 4]},
                "value": {"$ref": "#/$defs/int"},
                "wmask": {"$ref": "#/$defs/int"},
                "w1cmask": {"$ref": "#/$defs/int"},
            },
        },
    },
}
"""The overlay's JSON Schema (spec/formats/import.md)."""


@dataclass(frozen=True)
class ByteOverride:
    """``width`` bytes at ``offset``: power-on value and masks to use instead of the rules' (None: keep)."""

    offset: int
    width: int = 1
    value: int | None = None
    wmask: int | None = None
    w1cmask: int | None = None


@dataclass(frozen=True)
class FunctionOverlay:
    """What an overlay says about the functions it matches (all of them when ``bdf`` and ``ids`` are None)."""

    where: str
    bdf: tuple[int, Bdf] | None = None
    ids: tuple[int, int] | None = None
    name: str | None = None
    bar_sizes: tuple[tuple[int, int], ...] = ()
    rom_size: int | None = None
    behaviour: str | None = None
    config_behaviour: str | None = None
    clears_config_behaviour: bool = False
    bytes: tuple[ByteOverride, ...] = ()
    notes: tuple[str, ...] = ()

    def matches(self, dump: Dump) -> bool:
        if self.bdf is not None and (dump.bdf is None or (dump.domain, dump.bdf) != self.bdf):
            return False
        return self.ids is None or self.ids == (_word(dump.config, 0, 2), _word(dump.config, 2, 2))


@dataclass(frozen=True)
class Overlay:
    """An overlay file: per-function corrections to what the PCI rules and the dump say."""

    functions: tuple[FunctionOverlay, ...] = ()
    source: str = ""


@cache
def _overlay_validator() -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(OVERLAY_SCHEMA)
    cls.check_schema(OVERLAY_SCHEMA)
    return cls(OVERLAY_SCHEMA)


def read_overlay(path: Path) -> Overlay:
    """The overlay file at ``path``; :class:`DumpImportError` names the file and the field at fault."""
    text = decode_text(read_input(path, OVERLAY_LIMIT, DumpImportError), path, DumpImportError)
    return parse_overlay(parse_json(text, path, DumpImportError), str(path))


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def parse_overlay(document: object, where: str = "<overlay>") -> Overlay:
    """An overlay from its parsed JSON value."""
    error = jsonschema.exceptions.best_match(_overlay_validator().iter_errors(cast(Any, document)))
    if error is not None:
        place = "/".join(str(p) for p in error.absolute_path) or "top level"
        message = error.message if len(error.message) <= 300 else error.message[:300] + "..."
        raise DumpImportError(f"{where}: at {place}: {message}")
    assert isinstance(document, dict)
    functions: list[FunctionOverlay] = []
    for index, obj in enumerate(document["functions"]):
        place = f"{where}: functions/{index}"
        match = obj.get("match", {})
        bdf = None
        if "bdf" in match:
            text, domain = match["bdf"], 0
            if text.count(":") == 2:
                head, text = text.split(":", 1)
                domain = int(head, 16)
            bdf = (domain, Bdf.parse(text))
        ids = None
        if "ids" in match:
            vendor, device = match["ids"].split(":")
            ids = (int(vendor, 16), int(device, 16))
        overrides = []
        for k, item in enumerate(obj.get("bytes", [])):
            override = ByteOverride(
                _int(item["offset"]), item.get("width", 1),
                *(None if item.get(f) is None else _int(item[f]) for f in ("value", "wmask", "w1cmask")),
            )  # fmt: skip
            top = 1 << 8 * override.width
            if override.offset % override.width:
                raise DumpImportError(
                    f"{place}/bytes/{k}: offset {override.offset:#x} is not aligned to its width"
                )
            if any(v is not None and v >= top for v in (override.value, override.wmask, override.w1cmask)):
                raise DumpImportError(f"{place}/bytes/{k}: a value wider than {override.width} byte(s)")
            overrides.append(override)
        has_config_behaviour = "config_behaviour" in obj
        functions.append(FunctionOverlay(
            where=place, bdf=bdf, ids=ids, name=obj.get("name"),
            bar_sizes=tuple((int(k), _int(v)) for k, v in obj.get("bar_sizes", {}).items()),
            rom_size=None if "rom_size" not in obj else _int(obj["rom_size"]),
            behaviour=obj.get("behaviour"), config_behaviour=obj.get("config_behaviour"),
            clears_config_behaviour=has_config_behaviour and obj["config_behaviour"] is None,
            bytes=tuple(overrides), notes=tuple(obj.get("notes", ())),
        ))  # fmt: skip
    return Overlay(tuple(functions), where)


# ------------------------------------------------------------------ the rules


def _word(data: bytes | bytearray, offset: int, width: int) -> int:
    return int.from_bytes(data[offset : offset + width], "little")


@dataclass(frozen=True)
class ResetField:
    """A writable field firmware or the operating system programs, with the value the PCI rules give it
    at reset; the imported type's power-on image holds that value, not the dump's."""

    name: str
    offset: int
    width: int
    bits: int
    value: int = 0


class _Space:
    """The bytes being declared: the dump's values, the masks the rules add, and what they noted."""

    def __init__(self, config: bytes) -> None:
        self.dump = bytes(config)
        self.image = bytearray(config)
        self.wmask = bytearray(len(config))
        self.w1c = bytearray(len(config))
        self.notes: list[str] = []
        self.reset: list[str] = []
        self.claimed: list[range] = []
        self.vendor: list[int] = []

    @property
    def size(self) -> int:
        return len(self.image)

    def value(self, offset: int, width: int) -> int:
        """The dump's value of ``width`` bytes at ``offset``."""
        return _word(self.dump, offset, width)

    def _set(self, array: bytearray, offset: int, width: int, bits: int, on: bool) -> None:
        for k in range(width):
            byte = (bits >> 8 * k) & 0xFF
            array[offset + k] = array[offset + k] | byte if on else array[offset + k] & ~byte

    def rw(self, offset: int, width: int, bits: int) -> None:
        """Make ``bits`` writable; their power-on value stays the dump's unless a reset field says."""
        self._set(self.wmask, offset, width, bits, True)
        self._set(self.w1c, offset, width, bits, False)

    def rw1c(self, offset: int, width: int, bits: int, what: str) -> None:
        """Make ``bits`` write-1-to-clear; set by events, they are zero at power-on."""
        self._set(self.w1c, offset, width, bits, True)
        self._set(self.wmask, offset, width, bits, False)
        self.zero(offset, width, bits, what)

    def zero(self, offset: int, width: int, bits: int, what: str) -> None:
        """Power-on zero for ``bits`` that report an event or live state in the dump."""
        live = self.value(offset, width) & bits
        if live:
            self.notes.append(
                f"{what} bits {live:#x} at {offset:#05x} are set in the dump (an event or live state); "
                "power-on zero"
            )
        self._set(self.image, offset, width, bits, False)

    def proven(self, offset: int, width: int, bits: int) -> int:
        """The bits of ``bits`` the dump shows set: their reset value is zero, so something wrote them."""
        return self.value(offset, width) & bits

    def reset_field(self, reset: ResetField) -> None:
        """Writable ``reset.bits`` with the power-on value the PCI rules give them."""
        self.rw(reset.offset, reset.width, reset.bits)
        dumped = self.value(reset.offset, reset.width) & reset.bits
        wanted = reset.value & reset.bits
        if dumped != wanted:
            self.reset.append(f"{reset.name} {dumped:#x}")
        current = _word(self.image, reset.offset, reset.width) & ~reset.bits
        self.image[reset.offset : reset.offset + reset.width] = (current | wanted).to_bytes(
            reset.width, "little"
        )

    def claim(self, offset: int, length: int) -> None:
        self.claimed.append(range(offset, min(offset + length, self.size)))

    def space(self) -> ConfigSpace:
        return ConfigSpace(bytes(self.image), bytes(self.wmask), bytes(self.w1c))


# Command register bits besides those of vpcid.model.header (PCI Local Bus 3.0 §6.2.2).
CMD_SPECIAL, CMD_MWI, CMD_VGA_SNOOP, CMD_PARITY, CMD_STEPPING, CMD_FAST_B2B = (
    0x8,
    0x10,
    0x20,
    0x40,
    0x80,
    0x200,
)
CONVENTIONAL_ONLY_COMMAND = CMD_SPECIAL | CMD_MWI | CMD_VGA_SNOOP | CMD_STEPPING | CMD_FAST_B2B
"""Optional features of conventional PCI; PCI Express hardwires them to zero (PCIe Base 4.0 §7.5.1.1.3)."""


def _header(space: _Space, bars: Sequence[BarSpec | None], rom: RomSpec | None, express: bool) -> None:
    """Masks of the type 0 header's own registers; BARs and ROM are laid out by :func:`_bars`.

    ``express``: the function has a PCI Express capability.
    """
    command = space.value(COMMAND, 2)
    if command & ~0x07FF:
        raise DeviceTypeError(
            f"config byte {COMMAND + 1:#05x}: command bits {command & ~0x07FF:#06x} are reserved (PCI Local "
            "Bus 3.0 §6.2.2) yet set in the dump"
        )
    # PCI Local Bus 3.0 §6.2.2, PCIe Base 4.0 §7.5.1.1.3: I/O and memory space enables exist when there
    # is something to decode; parity error response and SERR# enable are RW; bus master enable is RW for
    # a function that issues requests (a dump cannot show whether it does: taken RW); interrupt disable
    # is RW for a function with an interrupt pin; the conventional-only features are RW when set.
    kinds = {bar.kind for bar in bars if bar is not None}
    writable = CMD_BUS_MASTER | CMD_PARITY | CMD_SERR
    if BarKind.IO in kinds:
        writable |= CMD_IO
    if kinds - {BarKind.IO} or rom is not None:
        writable |= CMD_MEM
    if space.value(INTERRUPT_PIN, 1):
        writable |= CMD_INTX_DISABLE
    writable |= command & ~CONVENTIONAL_ONLY_COMMAND  # a set bit was written: it is writable
    if not express:
        writable |= command & CONVENTIONAL_ONLY_COMMAND
    elif command & CONVENTIONAL_ONLY_COMMAND:
        raise DeviceTypeError(
            f"config byte {COMMAND:#05x}: command bits {command & CONVENTIONAL_ONLY_COMMAND:#x} are "
            "hardwired to zero in PCI Express (PCIe Base 4.0 §7.5.1.1.3) yet set in the dump"
        )
    space.notes.append(
        f"command register writable bits {writable:#06x} from the PCI rules; bus master enable is taken "
        "writable (a dump cannot show whether the function issues requests)"
    )
    space.reset_field(ResetField("command", COMMAND, 2, writable))
    # Status (PCI Local Bus 3.0 §6.2.3, PCIe Base 4.0 §7.5.1.1.4): the error bits are RW1C; interrupt
    # status (bit 3) is live state.
    space.rw1c(STATUS, 2, STATUS_ERROR_BITS, "status error")
    space.zero(STATUS, 2, STATUS_INTERRUPT, "status interrupt")
    # Cache line size is RW (PCI Local Bus 3.0 §6.2.4; PCIe Base 4.0 §7.5.1.1.7), zero at reset.
    space.reset_field(ResetField("cache line size", CACHE_LINE_SIZE, 1, 0xFF))
    # Latency timer: RW for conventional bus masters that burst (PCI Local Bus 3.0 §6.2.4), hardwired
    # to zero in PCI Express (§7.5.1.1.8). A zero in the dump cannot show which: taken read-only zero.
    if not express and space.value(LATENCY_TIMER, 1):
        space.reset_field(ResetField("latency timer", LATENCY_TIMER, 1, 0xFF))
    # Interrupt line is RW scratch for the operating system (PCI Local Bus 3.0 §6.2.4; §7.5.1.1.12).
    space.reset_field(ResetField("interrupt line", INTERRUPT_LINE, 1, 0xFF))
    if space.value(BIST, 1):
        space.notes.append(
            f"BIST byte {space.value(BIST, 1):#04x} is taken read-only (starting BIST is an action)"
        )


def _bars(
    space: _Space, sizes: dict[int, int | None], rom_size: int | None
) -> tuple[tuple[BarSpec | None, ...], RomSpec | None]:
    """BARs from the dump's type bits and the known sizes; registers laid out as the model implies
    (PCI Local Bus 3.0 §6.2.5.1, §6.2.5.2; R-BAR-002..R-BAR-008)."""
    bars: list[BarSpec | None] = []
    unknown: list[int] = []
    slot = 0
    while slot < BAR_COUNT:
        offset = BAR0 + 4 * slot
        register = space.value(offset, 4)
        size = sizes.get(slot)
        if register == 0xFFFF_FFFF:
            raise DeviceTypeError(f"config byte {offset:#05x}: BAR{slot} reads 0xffffffff")
        if register == 0 and not size:
            if size is None:
                unknown.append(slot)
            bars.append(None)
            slot += 1
            continue
        if register & 0x1:
            kind, prefetchable = BarKind.IO, False
        elif register & 0x6 == 0x4:
            kind, prefetchable = BarKind.MEM64, bool(register & 0x8)
        elif register & 0x6 == 0x0:
            kind, prefetchable = BarKind.MEM32, bool(register & 0x8)
        elif register & 0x6 == 0x2:
            kind, prefetchable = BarKind.MEM32, bool(register & 0x8)
            space.notes.append(f"BAR{slot} has the legacy 'below 1 MiB' type: taken as a 32-bit memory BAR")
        else:
            raise DeviceTypeError(f"config byte {offset:#05x}: BAR{slot} has the reserved memory type 3")
        if kind is BarKind.MEM64 and slot == BAR_COUNT - 1:
            raise DeviceTypeError(f"config byte {offset:#05x}: a 64-bit BAR in slot 5 has no upper dword")
        if not size:
            raise DumpImportError(
                f"BAR{slot} ({kind.value}, register {register:#010x}) is implemented but its size is "
                f"{'not known' if size is None else 'given as 0'}: read a sysfs folder (resource), lspci "
                f'-vv text with [size=..], or give it in an overlay: "bar_sizes": {{"{slot}": SIZE}}'
            )
        address = register & (~0x3 if kind is BarKind.IO else ~0xF) & 0xFFFF_FFFF
        if kind is BarKind.MEM64:
            address |= space.value(offset + 4, 4) << 32
        if address % size:
            raise DumpImportError(
                f"BAR{slot} address {address:#x} is not a multiple of its size {size:#x}: the size is wrong"
            )
        bar = BarSpec(kind, size, prefetchable)
        bars.append(bar)
        mask = bar_wmask(bar)
        space.image[offset : offset + 4] = bar.type_bits().to_bytes(4, "little")
        space.wmask[offset : offset + 4] = (mask & 0xFFFF_FFFF).to_bytes(4, "little")
        if kind is BarKind.MEM64:
            space.image[offset + 4 : offset + 8] = bytes(4)
            space.wmask[offset + 4 : offset + 8] = (mask >> 32).to_bytes(4, "little")
            bars.append(None)
            slot += 1
        slot += 1
    while bars and bars[-1] is None:
        bars.pop()
    if unknown:
        which = f"BARs {', '.join(map(str, unknown))} read" if len(unknown) > 1 else f"BAR{unknown[0]} reads"
        space.notes.append(
            f"{which} 0 and the dump does not say a size: taken as unimplemented (a 32-bit memory BAR "
            'firmware left unassigned reads 0 too: give its size with an overlay "bar_sizes")'
        )
    register = space.value(ROM_BAR, 4)
    rom = None
    if rom_size:
        if (register & ROM_ADDRESS) % rom_size:
            raise DumpImportError(f"ROM address {register & ROM_ADDRESS:#x} is not a multiple of its size")
        rom = RomSpec(rom_size)
        space.notes.append(f"expansion ROM of {rom_size:#x} bytes: a dump does not show its contents (empty)")
    elif register:
        raise DumpImportError(
            f"the expansion ROM BAR holds {register:#010x} but the ROM's size is "
            f"{'not known' if rom_size is None else 'given as 0'}: read a sysfs folder (resource), "
            'lspci -vv text with [size=..], or give it in an overlay: "rom_size": SIZE'
        )
    elif rom_size is None:
        space.notes.append(
            "the expansion ROM BAR reads 0 and the ROM's size is unknown: taken as no ROM (an overlay "
            '"rom_size" declares one)'
        )
    space.image[ROM_BAR : ROM_BAR + 4] = bytes(4)
    space.wmask[ROM_BAR : ROM_BAR + 4] = (rom_wmask(rom) if rom is not None else 0).to_bytes(4, "little")
    return tuple(bars), rom


# ------------------------------------------------------------------ capabilities


def _power_management(space: _Space, at: int) -> None:
    """PCI Bus Power Management Interface 1.2 §3.2.3-§3.2.4: PMC read-only; PMCSR PowerState RW
    (reset D0), PME_En RW and PME_Status RW1C when PME# is supported, Data_Select RW when a Data
    register is implemented (shown by a non-zero select in the dump); 8 bytes."""
    space.claim(at, 8)
    pme_support = space.value(at + 2, 2) >> 11
    space.reset_field(ResetField("PM power state", at + 4, 2, 0x0003))
    if pme_support:
        space.reset_field(ResetField("PM PME enable", at + 4, 2, 0x0100))
        space.rw1c(at + 4, 2, 0x8000, "PM PME status")
    if space.proven(at + 4, 2, 0x1E00):
        space.rw(at + 4, 2, 0x1E00)


def msi_length(control: int) -> int:
    """Bytes of an MSI capability: 10, +4 for 64-bit addresses, +10 for per-vector masking."""
    return 10 + (4 if control & 0x80 else 0) + (10 if control & 0x100 else 0)


def _msi(space: _Space, at: int) -> None:
    """PCI Local Bus 3.0 §6.8.1 (PCIe Base 4.0 §7.7.1): enable and Multiple Message Enable RW (reset 0),
    capable fields read-only; address bits 31:2 (and the upper dword when 64-bit) and data RW; mask
    bits RW for the implemented vectors; pending bits read-only, live state."""
    control = space.value(at + 2, 2)
    is64, masking = bool(control & 0x80), bool(control & 0x100)
    space.claim(at, msi_length(control))
    space.reset_field(ResetField("MSI enable and multiple message enable", at + 2, 2, 0x0071))
    if control & 0x200:  # Extended Message Data Capable (PCIe Base 5.0 §7.7.1.2): its enable is RW
        space.reset_field(ResetField("MSI extended message data enable", at + 2, 2, 0x0400))
    space.reset_field(ResetField("MSI address", at + 4, 4, 0xFFFF_FFFC))
    data = at + 8
    if is64:
        space.reset_field(ResetField("MSI upper address", at + 8, 4, 0xFFFF_FFFF))
        data = at + 12
    space.reset_field(ResetField("MSI data", data, 2, 0xFFFF))
    if control & 0x200:
        space.reset_field(ResetField("MSI extended data", data + 2, 2, 0xFFFF))
    if masking:
        vectors = 1 << min((control >> 1) & 0x7, 5)
        space.reset_field(ResetField("MSI mask bits", data + 4, 4, (1 << vectors) - 1))
        space.zero(data + 8, 4, 0xFFFF_FFFF, "MSI pending")


def _msix(space: _Space, at: int) -> None:
    """PCI Local Bus 3.0 §6.8.2 (PCIe Base 4.0 §7.7.2): MSI-X Enable and Function Mask RW (reset 0);
    table size, table and PBA offsets read-only; 12 bytes."""
    space.claim(at, 12)
    space.reset_field(ResetField("MSI-X enable and function mask", at + 2, 2, 0xC000))


def _vendor(space: _Space, at: int) -> None:
    """Vendor-specific (ID 9): its length byte says how long; its registers are the vendor's: read-only."""
    space.claim(at, max(3, space.value(at + 2, 1)))
    space.vendor.append(at)


@dataclass(frozen=True)
class _Express:
    """What the PCI Express capability says about the function (PCIe Base 4.0 §7.5.3.2)."""

    at: int
    version: int
    port_type: int
    function: int | None

    @property
    def has_link(self) -> bool:
        """Endpoints have a link; integrated endpoints and event collectors do not (§7.5.3)."""
        return self.port_type in (PORT_ENDPOINT, PORT_LEGACY_ENDPOINT)

    @property
    def length(self) -> int:
        if self.version >= 2:
            return 0x3C
        if self.port_type == PORT_RC_EVENT_COLLECTOR:
            return 0x24
        return 0x14 if self.has_link else 0x0C


def _express(space: _Space, at: int, function: int | None) -> _Express:
    """PCIe Base 4.0 §7.5.3: the bits of the Device, Link, Root and their second registers that the
    specification makes RW or RW1C for this device/port type and version; capability registers are
    read-only. A bit the specification lets a function hardwire to zero, with no capability bit saying
    whether it did, is read-only unless the dump shows it set."""
    flags = space.value(at + 2, 2)
    cap = _Express(at, flags & 0xF, (flags >> 4) & 0xF, function)
    space.claim(at, cap.length)
    if cap.port_type not in (PORT_ENDPOINT, PORT_LEGACY_ENDPOINT, PORT_RC_ENDPOINT, PORT_RC_EVENT_COLLECTOR):
        name = PORT_TYPE_NAMES.get(cap.port_type, f"type {cap.port_type:#x}")
        space.notes.append(f"PCI Express capability at {at:#04x}: a {name} belongs to a type 1 header; "
                           "its registers are taken read-only")  # fmt: skip
        return cap
    devcap = space.value(at + 0x04, 4)
    # Device Control (§7.5.3.4): error reporting enables, Max_Payload_Size and Max_Read_Request_Size
    # are RW with reset values 0, 000b and 010b; Relaxed Ordering and No Snoop enables RW; Extended Tag
    # Field Enable RW when supported (Device Capabilities bit 5), Phantom Functions Enable RW when
    # supported (bits 4:3); Aux Power PM Enable RW when the function uses aux power (seen set). Initiate
    # Function Level Reset starts an action and always reads 0: read-only here.
    space.reset_field(ResetField("PCIe device control error reporting", at + 0x08, 2, 0x000F))
    space.reset_field(ResetField("PCIe max payload size", at + 0x08, 2, 0x00E0))
    space.reset_field(ResetField("PCIe max read request size", at + 0x08, 2, 0x7000, 0x2000))
    space.rw(at + 0x08, 2, 0x0810)
    if devcap & 0x20:
        space.rw(at + 0x08, 2, 0x0100)
    if devcap & 0x18:
        space.rw(at + 0x08, 2, 0x0200)
    space.rw(at + 0x08, 2, space.proven(at + 0x08, 2, 0x0400))
    if devcap & 0x1000_0000:
        space.notes.append(f"PCIe device control bit 15 at {at + 0x09:#05x} (initiate function level reset) "
                           "is an action: read-only zero")  # fmt: skip
    # Device Status (§7.5.3.5): the four error-detected bits are RW1C.
    space.rw1c(at + 0x0A, 2, 0x000F, "PCIe device status")
    if cap.has_link:
        linkcap = space.value(at + 0x0C, 4)
        # Link Control (§7.5.3.7) of an endpoint: ASPM Control, Common Clock Configuration and Extended
        # Synch RW (reset 0), Read Completion Boundary RW, Enable Clock Power Management RW when Link
        # Capabilities bit 18 says so, Hardware Autonomous Width Disable RW; the rest belong to ports.
        space.reset_field(ResetField("PCIe ASPM control", at + 0x10, 2, 0x0003))
        space.reset_field(ResetField("PCIe common clock and extended synch", at + 0x10, 2, 0x00C0))
        space.rw(at + 0x10, 2, 0x0208)
        if linkcap & 0x4_0000:
            space.reset_field(ResetField("PCIe clock power management", at + 0x10, 2, 0x0100))
        # Link Status (§7.5.3.8) of an endpoint is read-only (its RW1C bits belong to downstream ports).
    if cap.port_type == PORT_RC_EVENT_COLLECTOR and cap.length >= 0x24:
        # Root Control (§7.5.3.12): system error and PME interrupt enables RW (reset 0); CRS Software
        # Visibility Enable RW when Root Capabilities bit 0 says so. Root Status (§7.5.3.14): PME Status
        # is RW1C.
        space.reset_field(ResetField("PCIe root control", at + 0x1C, 2, 0x000F))
        if space.value(at + 0x1E, 2) & 0x1:
            space.reset_field(ResetField("PCIe CRS software visibility", at + 0x1C, 2, 0x0010))
        space.rw1c(at + 0x20, 4, 0x1_0000, "PCIe root PME status")
    if cap.version >= 2:
        _express2(space, cap)
    return cap


def _express2(space: _Space, cap: _Express) -> None:
    """Device Control 2 (§7.5.3.16) and Link Control 2 (§7.5.3.19) of a version 2 capability."""
    at = cap.at
    devcap2 = space.value(at + 0x24, 4)
    control2 = at + 0x28
    # Completion Timeout Value RW when ranges are supported (bits 3:0), Completion Timeout Disable RW when
    # supported (bit 4), LTR Mechanism Enable (bit 11), 10-Bit Tag Requester Enable (bit 17), OBFF Enable
    # (bits 19:18) and Emergency Power Reduction Request (bits 25:24) likewise; all reset to 0. IDO and
    # AtomicOp requester enables have no capability bit: read-only unless seen set.
    gated = ((0xF, 0x000F), (0x10, 0x0010), (0x800, 0x0400), (0x2_0000, 0x1000), (0xC_0000, 0x6000),
             (0x300_0000, 0x0800))  # fmt: skip
    for capable, bits in gated:
        if devcap2 & capable:
            space.reset_field(ResetField(f"PCIe device control 2 bits {bits:#06x}", control2, 2, bits))
    space.rw(control2, 2, space.proven(control2, 2, 0x0340))
    if cap.has_link and cap.function in (0, None):
        # Link Control 2 of an upstream port's function 0: Target Link Speed, Enter Compliance, Hardware
        # Autonomous Speed Disable, Transmit Margin, Enter Modified Compliance, Compliance SOS and
        # Compliance Preset/De-emphasis are RW (sticky; their values stay the dump's). Selectable
        # De-emphasis (bit 6) belongs to downstream ports. Other functions' fields are reserved.
        space.rw(at + 0x30, 2, 0xFFBF)


def _aer(space: _Space, at: int, event_collector: bool) -> None:
    """Advanced Error Reporting (PCIe Base 4.0 §7.8.4): error status registers RW1C, masks and severity
    RW, ECRC and multiple-header enables RW when capable; root error command RW and status RW1C for
    a Root Complex Event Collector; header and prefix logs read-only."""
    uncorrectable, correctable = 0x07FF_F030, 0x0000_F1C1
    space.claim(at, 0x48 if event_collector else 0x2C)
    space.rw1c(at + 0x04, 4, uncorrectable, "AER uncorrectable error status")
    space.rw(at + 0x08, 4, uncorrectable)
    space.rw(at + 0x0C, 4, uncorrectable)
    space.rw1c(at + 0x10, 4, correctable, "AER correctable error status")
    space.rw(at + 0x14, 4, correctable)
    control = space.value(at + 0x18, 4)
    for capable, enable in ((0x20, 0x40), (0x80, 0x100), (0x200, 0x400)):
        if control & capable:
            space.reset_field(ResetField(f"AER control bit {enable:#x}", at + 0x18, 4, enable))
    if event_collector:
        space.reset_field(ResetField("AER root error command", at + 0x2C, 4, 0x7))
        space.rw1c(at + 0x30, 4, 0x7F, "AER root error status")


KNOWN_LENGTHS = {(True, 0x0003): 12}
"""(extended, ID) -> bytes, for capabilities whose length is fixed (Device Serial Number: PCIe §7.9.3)."""


def _unknown(space: _Space, entry: ChainEntry, next_offset: int) -> None:
    """A capability without rules: its body is read-only, up to the next capability (the last one: up to
    its last non-zero dword), and a note names the bytes."""
    header = 4 if entry.extended else 2
    known = KNOWN_LENGTHS.get((entry.extended, entry.cap_id))
    if known is not None:
        next_offset = min(next_offset, entry.offset + known)
    else:
        while next_offset > entry.offset + 4 and not any(space.dump[next_offset - 4 : next_offset]):
            next_offset -= 4
    if entry.extended:
        name = EXTENDED_NAMES.get(entry.cap_id, f"ID {entry.cap_id:#06x}")
        what = f"extended capability {name} (v{entry.version}) at {entry.offset:#05x}"
    else:
        name = CAPABILITY_NAMES.get(entry.cap_id, f"ID {entry.cap_id:#04x}")
        what = f"capability {name} at {entry.offset:#04x}"
    space.claim(entry.offset, next_offset - entry.offset)
    space.notes.append(
        f"{what}: body {entry.offset + header:#05x}-{next_offset - 1:#05x} read-only (a dump cannot show "
        "its writable bits; an overlay can)"
    )


CAPABILITY_RULES: dict[int, Callable[[_Space, int], None]] = {
    CAP_PM: _power_management, CAP_MSI: _msi, CAP_MSIX: _msix, CAP_VENDOR: _vendor,
}  # fmt: skip
"""Standard capabilities whose masks the PCI rules give, by ID (PCI Express and AER have their own)."""


def _capabilities(space: _Space, chain: tuple[ChainEntry, ...], function: int | None) -> None:
    standard = [e for e in chain if not e.extended]
    extended = [e for e in chain if e.extended]
    event_collector = False
    for entries, end in ((standard, CONVENTIONAL_CONFIG_SIZE), (extended, space.size)):
        starts = sorted(e.offset for e in entries)
        for entry in entries:
            next_offset = min((s for s in starts if s > entry.offset), default=end)
            if entry.extended:
                if entry.cap_id == EXT_AER:
                    _aer(space, entry.offset, event_collector)
                else:
                    _unknown(space, entry, next_offset)
            elif entry.cap_id == CAP_EXPRESS:
                express = _express(space, entry.offset, function)
                event_collector |= express.port_type == PORT_RC_EVENT_COLLECTOR
            elif entry.cap_id in CAPABILITY_RULES:
                CAPABILITY_RULES[entry.cap_id](space, entry.offset)
            else:
                _unknown(space, entry, next_offset)
    if space.vendor:
        offsets = ", ".join(f"{at:#04x}" for at in space.vendor)
        space.notes.append(f"vendor-specific capabilities at {offsets}: read-only (their registers are the "
                           "vendor's; an overlay can make bytes writable)")  # fmt: skip


def _unclaimed(space: _Space) -> None:
    """Name the non-zero bytes past the header that no capability claims: read-only."""
    claimed = set(range(0, CAPABILITY_AREA))
    for r in space.claimed:
        claimed.update(r)
    runs: list[list[int]] = []
    for offset in range(CAPABILITY_AREA, space.size):
        if offset in claimed or not space.dump[offset]:
            continue
        if runs and runs[-1][1] == offset - 1:
            runs[-1][1] = offset
        else:
            runs.append([offset, offset])
    if runs:
        text = ", ".join(f"{a:#05x}-{b:#05x}" if a != b else f"{a:#05x}" for a, b in runs)
        space.notes.append(f"device-specific bytes {text} (no capability claims them): read-only")


# ------------------------------------------------------------------ import


@dataclass(frozen=True)
class ImportedFunction:
    """A dump as a device type, and how a machine file reproduces the dump's bytes with it."""

    dump: Dump
    entry: TypeEntry
    bars: tuple[tuple[int, int], ...]
    """(BAR index, address) for the dump's assigned BARs."""
    rom: int | None
    """The ROM's address when the dump has it enabled (the machine file's ``rom`` enables it)."""
    writes: tuple[tuple[int, int, int], ...]
    """(offset, width, value) configuration writes that bring the writable bytes to the dump's."""
    command: int
    unreproducible: tuple[tuple[int, int], ...] = field(default=())
    """(offset, bits): bits of the dump no configuration write can set (RW1C and live state)."""

    @property
    def dtype(self) -> DeviceType:
        return self.entry.dtype


def default_name(dump: Dump) -> str:
    """``vvvv:dddd@bb:dd.f`` (with the domain when not 0), or ``vvvv:dddd@FILE`` without a BDF."""
    ids = f"{_word(dump.config, 0, 2):04x}:{_word(dump.config, 2, 2):04x}"
    if dump.bdf is not None:
        return f"{ids}@{dump.label}"
    return f"{ids}@{PurePath(dump.source).name}"


def _overlays(dump: Dump, overlay: Overlay | None) -> list[FunctionOverlay]:
    return [] if overlay is None else [f for f in overlay.functions if f.matches(dump)]


def _prepare(dump: Dump, notes: list[str]) -> bytes:
    """The dump's bytes at a size the model takes: 256 for a header-only dump, 4096 for PCI Express."""
    config = dump.config
    if len(config) == 64:
        if _word(config, STATUS, 2) & STATUS_CAP_LIST:
            raise DumpImportError(
                f"the dump shows only the 64-byte header, but status bit 4 announces capabilities "
                f"(from {config[0x34]:#04x}): dump 256 bytes (lspci -xxx, or sysfs config read as root)"
            )
        notes.append("the dump shows only the 64-byte header: bytes 0x40-0xff taken as zero")
        config = config + bytes(CONVENTIONAL_CONFIG_SIZE - len(config))
    if len(config) == CONVENTIONAL_CONFIG_SIZE:
        chain = standard_chain(config)
        if any(e.cap_id == CAP_EXPRESS for e in chain):
            notes.append(
                "a PCI Express function dumped with 256 bytes: extended configuration space (0x100-0xfff) "
                "taken as empty (dump it with lspci -xxxx to import its extended capabilities)"
            )
            config = config + bytes(EXPRESS_CONFIG_SIZE - len(config))
    return config


def import_dump(dump: Dump, *, name: str | None = None, overlay: Overlay | None = None) -> ImportedFunction:
    """The device type ``dump`` shows, and how to reproduce the dump with it (R-DT-005..R-DT-007).

    ``name`` overrides the overlay's and the default name. Raises
    :class:`DumpImportError` naming the dump's source and what to supply.
    """
    try:
        return _import(dump, name, _overlays(dump, overlay))
    except DumpImportError as exc:
        raise DumpImportError(f"{dump.source} ({dump.label}): {exc}") from None
    except DeviceTypeError as exc:
        raise DumpImportError(
            f'{dump.source} ({dump.label}): {exc} (an overlay\'s "bytes" can correct a byte)'
        ) from None


def _import(dump: Dump, name: str | None, overlays: list[FunctionOverlay]) -> ImportedFunction:
    notes: list[str] = []
    config = _prepare(dump, notes)
    if config[HEADER_TYPE] & 0x7F:
        raise DumpImportError(
            f"header type {config[HEADER_TYPE] & 0x7F}: only type 0 functions are imported (bridges are not)"
        )
    chain = standard_chain(config) + extended_chain(config)
    express = any(e.cap_id == CAP_EXPRESS and not e.extended for e in chain)
    space = _Space(config)
    space.notes = notes
    sizes: dict[int, int | None] = dict(enumerate(dump.bar_sizes)) if dump.bar_sizes is not None else {}
    rom_size = dump.rom_size
    for item in overlays:
        sizes.update(item.bar_sizes)
        if item.rom_size is not None:
            rom_size = item.rom_size
    bars, rom = _bars(space, sizes, rom_size)
    _header(space, bars, rom, express)
    _capabilities(space, chain, dump.bdf.function if dump.bdf is not None else None)
    _unclaimed(space)
    if space.reset:
        space.notes.append(
            "power-on values from the PCI rules where firmware or the OS programs the field (the dump "
            f"showed): {', '.join(space.reset)}; BAR and ROM addresses are zero at power-on"
        )
    behaviour, config_behaviour = None, None
    for item in overlays:
        _apply_bytes(space, item)
        space.notes += [f"overlay: {note}" for note in item.notes]
        if item.behaviour is not None:
            behaviour = bar_behaviour(item.behaviour)
        if item.config_behaviour is not None:
            config_behaviour = config_behaviour_named(item.config_behaviour)
        elif item.clears_config_behaviour:
            config_behaviour = None
        if item.name is not None and name is None:
            name = item.name
    type_name = name if name is not None else default_name(dump)
    dtype = DeviceType.from_space(type_name, space.space(), bars, rom, behaviour, config_behaviour)
    entry = TypeEntry(dtype, (), f"imported from {dump.source}", tuple(space.notes))
    return _reproduction(dump, entry, config)


def _apply_bytes(space: _Space, item: FunctionOverlay) -> None:
    for override in item.bytes:
        if override.offset + override.width > space.size:
            raise DumpImportError(
                f"{item.where}: bytes at {override.offset:#x}+{override.width} lie outside the function's "
                f"{space.size} bytes"
            )
        end = override.offset + override.width
        for array, value in ((space.image, override.value), (space.wmask, override.wmask),
                             (space.w1c, override.w1cmask)):  # fmt: skip
            if value is not None:
                array[override.offset : end] = value.to_bytes(override.width, "little")


def _reproduction(dump: Dump, entry: TypeEntry, config: bytes) -> ImportedFunction:
    """BAR addresses, ROM, writes and command that bring the type's power-on bytes to the dump's."""
    dtype = entry.dtype
    space = dtype.declared
    bars: list[tuple[int, int]] = []
    handled = set(range(COMMAND, COMMAND + 2)) | set(range(ROM_BAR, ROM_BAR + 4))
    writes: list[tuple[int, int, int]] = []
    for index in range(BAR_COUNT):
        bar = dtype.bar(index)
        if bar is None:
            continue
        offset = BAR0 + 4 * index
        width = 8 if bar.kind is BarKind.MEM64 else 4
        value = _word(config, offset, width)
        address = value & ~(0x3 if bar.kind is BarKind.IO else 0xF)
        handled.update(range(offset, offset + width))
        if not address:
            continue
        if address + bar.size <= address_limit(bar.kind):
            bars.append((index, address))
        else:  # an I/O BAR with address bits above the 64 KiB x86 port space: written as it is
            writes.append((offset, 4, value))
    rom = None
    rom_register = _word(config, ROM_BAR, 4)
    if rom_register & ROM_ENABLE and rom_register & ROM_ADDRESS:
        rom = rom_register & ROM_ADDRESS
    elif rom_register:
        writes.append((ROM_BAR, 4, rom_register))
    unreproducible: list[tuple[int, int]] = []
    for dword in range(0, len(config), 4):
        changed = 0
        for k in range(4):
            offset = dword + k
            diff = config[offset] ^ space.image[offset]
            if diff & ~space.wmask[offset]:
                unreproducible.append((offset, diff & ~space.wmask[offset]))
            if offset not in handled and diff & space.wmask[offset]:
                changed |= 1 << k
        if changed:
            writes.append(_narrowest(config, dword, changed))
    return ImportedFunction(dump, entry, tuple(bars), rom, tuple(writes), _word(config, COMMAND, 2),
                            tuple(unreproducible))  # fmt: skip


def _narrowest(config: bytes, dword: int, changed: int) -> tuple[int, int, int]:
    """The narrowest aligned access of the dword that covers the changed bytes (bit k: byte k)."""
    for width in (1, 2):
        for start in range(0, 4, width):
            span = ((1 << width) - 1) << start
            if changed & ~span == 0:
                return (dword + start, width, _word(config, dword + start, width))
    return (dword, 4, _word(config, dword, 4))


def import_dumps(
    dumps: Sequence[Dump], *, name: str | None = None, overlay: Overlay | None = None
) -> tuple[ImportedFunction, ...]:
    """Import every dump; ``name`` only for a single function. Every overlay entry must match one."""
    if name is not None and len(dumps) != 1:
        raise DumpImportError(f"a name was given for {len(dumps)} functions; it names one function")
    imported = tuple(import_dump(d, name=name, overlay=overlay) for d in dumps)
    if overlay is not None:
        for item in overlay.functions:
            matched = [d for d in dumps if item.matches(d)]
            if not matched:
                raise DumpImportError(f"{item.where}: matches none of the imported functions")
            if item.name is not None and len(matched) > 1:
                raise DumpImportError(f"{item.where}: names one type but matches {len(matched)} functions")
    seen: dict[str, str] = {}
    for function in imported:
        type_name = function.dtype.name
        if type_name in seen:
            raise DumpImportError(
                f"{function.dump.source} and {seen[type_name]} would both be named {type_name!r}: name them "
                "in an overlay"
            )
        seen[type_name] = function.dump.source
    return imported


def import_sources(
    paths: Iterable[Path], *, name: str | None = None, overlay: Overlay | None = None
) -> tuple[ImportedFunction, ...]:
    """Read every dump at ``paths`` (:func:`~vpcid.conformance.dumps.read_dumps`) and import them."""
    dumps: list[Dump] = []
    for path in paths:
        dumps += read_dumps(path)
    return import_dumps(dumps, name=name, overlay=overlay)


# ------------------------------------------------------------------ machine file


def _toml_string(text: str) -> str:
    return json.dumps(text)


def _placed(functions: Sequence[ImportedFunction]) -> list[tuple[Bdf, ImportedFunction, str]]:
    """Each function at its dump's BDF; one without a BDF, or whose BDF is taken, at the next free slot."""
    taken = {f.dump.bdf for f in functions if f.dump.bdf is not None}
    used: set[Bdf] = set()
    placed: list[tuple[Bdf, ImportedFunction, str]] = []
    free = (Bdf(0, device, 0) for device in range(1, 32))
    for function in functions:
        bdf = function.dump.bdf
        why = ""
        if bdf is None or bdf in used:
            target = next((b for b in free if b not in taken and b not in used), None)
            if target is None:
                raise DumpImportError("more functions than free device numbers on bus 0 for the machine file")
            why = "the dump has no BDF" if bdf is None else f"its dump BDF {bdf} is taken"
            bdf = target
        elif function.dump.domain:
            why = f"PCI domain {function.dump.domain:04x} is not modelled; bus 0 of the one VM"
        used.add(bdf)
        placed.append((bdf, function, why))
    return placed


def machine_text(functions: Sequence[ImportedFunction], type_file: str, vm_id: int = 1) -> str:
    """A machine file (TOML) that plugs every function and programs it to show its dump's bytes.

    ``type_file`` is the device-type file's path relative to the machine file.
    """
    lines = [
        "# Made by `vpcid types import`: building this machine shows each dump's bytes at every offset,",
        "# but for bits no configuration write can set (listed per device).",
        f"types = [{_toml_string(type_file)}]",
        "",
        "[vm]",
        f"id = {vm_id}",
    ]
    for bdf, function, why in _placed(functions):
        lines += ["", f"# {function.dump.source}"]
        if why:
            lines.append(f"# placed at {bdf}: {why}")
        for offset, bits in function.unreproducible:
            lines.append(f"# not reproduced: config byte {offset:#05x} bits {bits:#04x} (RW1C or live state)")
        lines += ["[[device]]", f'bdf = "{bdf}"', f"type = {_toml_string(function.dtype.name)}"]
        if function.bars:
            lines.append("bars = { " + ", ".join(f"{i} = {a:#x}" for i, a in function.bars) + " }")
        if function.rom is not None:
            lines.append(f"rom = {function.rom:#x}")
        if function.writes:
            items = ", ".join(f"[{o:#x}, {w}, {v:#x}]" for o, w, v in function.writes)
            lines.append(f"writes = [{items}]")
        if function.command:
            lines.append(f"command = {function.command:#x}")
    return "\n".join(lines) + "\n"


def relative_reference(target: Path, machine: Path) -> str:
    """``target``'s path as a machine file at ``machine`` names it: relative to the machine's folder."""
    return os.path.relpath(target.resolve(), machine.resolve().parent)


__all__ = [
    "OVERLAY_SCHEMA",
    "ByteOverride",
    "DumpImportError",
    "FunctionOverlay",
    "ImportedFunction",
    "Overlay",
    "ResetField",
    "default_name",
    "import_dump",
    "import_dumps",
    "import_sources",
    "machine_text",
    "msi_length",
    "parse_overlay",
    "read_overlay",
    "relative_reference",
]
