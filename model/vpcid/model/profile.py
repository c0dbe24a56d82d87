"""Declared variants: the axes on which real implementations differ (R-VAR-*).

A :class:`Profile` picks one value per axis; the model runs in that profile.
The defaults are the spec's normative behaviour. ``spec/variants.md`` is the
prose for every axis; ``spec/formats/profile.md`` the manifest format.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from vpcid.model.errors import ProfileError


class StatusRegister(StrEnum):
    """V-STATUS: how the status register's error bits behave (R-CFG-006)."""

    RW1C = "rw1c"
    READ_ONLY = "read-only"


class BarMoveWhileDecoding(StrEnum):
    """V-BAR-MOVE: a BAR written while its decode is enabled (R-DEC-005)."""

    IMMEDIATE = "immediate"
    DEFERRED = "deferred"
    IGNORED = "ignored"


class Overlap(StrEnum):
    """V-OVERLAP: which BAR decodes an address claimed by several (R-DEC-008)."""

    LOWEST_BDF = "lowest-bdf"
    LAST_MAPPED = "last-mapped"
    FIRST_MAPPED = "first-mapped"


class UnmappedMmioRead(StrEnum):
    """V-UNMAPPED-MMIO: the value an MMIO read that hits nothing returns (R-ACC-004)."""

    ONES = "ones"
    ZEROS = "zeros"


class Straddle(StrEnum):
    """V-STRADDLE: an access whose bytes are not all decoded by one BAR (R-ACC-005)."""

    SPLIT = "split"
    REJECT = "reject"
    START_ADDRESS = "start-address"


class Alignment(StrEnum):
    """V-ALIGN: unaligned I/O and MMIO accesses (R-ACC-002)."""

    ANY = "any"
    NATURAL = "natural"


class Cf8LowBits(StrEnum):
    """V-CF8-LOW: what 0xCF8 keeps of the bits it does not decode, and whether bits 1:0 select
    bytes of the data window (R-CAM-002, R-CAM-004)."""

    MASKED = "masked"
    LATCHED = "latched"
    OFFSET = "offset"


class Cf8Narrow(StrEnum):
    """V-CF8-NARROW: accesses to 0xCF8-0xCFB other than a dword at 0xCF8 (R-CAM-001, R-CAM-008)."""

    UNMAPPED = "unmapped"
    RESET_CONTROL = "reset-control"
    READ_ADDRESS = "read-address"
    ADDRESS_BYTES = "address-bytes"

    @property
    def has_reset_control(self) -> bool:
        """Whether 0xCF9 is the reset control register under this value (R-CAM-008)."""
        return self in (Cf8Narrow.RESET_CONTROL, Cf8Narrow.READ_ADDRESS)


class BarAtTop(StrEnum):
    """V-BAR-TOP: a memory BAR or ROM whose last byte is the last byte of its space (R-DEC-006)."""

    DECODES = "decodes"
    UNMAPPED = "unmapped"


class AddressZero(StrEnum):
    """V-ADDR-ZERO: a BAR programmed to address zero (R-DEC-004)."""

    UNMAPPED = "unmapped"
    DECODES = "decodes"


class UnmappedIoRead(StrEnum):
    """V-UNMAPPED-IO: the value an I/O read that hits nothing returns (R-ACC-004)."""

    ONES = "ones"
    ZEROS = "zeros"


class ConfigPastSpace(StrEnum):
    """V-CFG-PAST: reads of offsets from the end of a function's space up to 0xFFF (R-CFG-009)."""

    ONES = "ones"
    ZEROS = "zeros"


class OddWordWrite(StrEnum):
    """V-ODD-WORD: a 2-byte configuration write at an odd offset (R-ACC-003)."""

    PERFORMED = "performed"
    DROPPED = "dropped"


class BarSizing(StrEnum):
    """V-BAR-SIZING: which address bits of a BAR register a write keeps (R-BAR-003, R-BAR-005)."""

    MASK = "mask"
    PROBE_ONLY = "probe-only"


class Cf8Extended(StrEnum):
    """V-CF8-EXT: whether 0xCF8 bits 27:24 extend the register number (R-CAM-004)."""

    IGNORED = "ignored"
    EXTENDS = "extends"


class Cf8AfterAccess(StrEnum):
    """V-CF8-CLEAR: whether a data access clears 0xCF8 (R-CAM-007)."""

    KEEP = "keep"
    CLEAR = "clear"


class BridgeWindows(StrEnum):
    """V-BRIDGE-WINDOWS: whether BARs below bridges are reached only through bridge windows (R-BRG-006)."""

    ENFORCED = "enforced"
    IGNORED = "ignored"


class BridgeIsa(StrEnum):
    """V-BRIDGE-ISA: whether a bridge's ISA enable bit filters its I/O window (R-BRG-011)."""

    HONOURED = "honoured"
    IGNORED = "ignored"


AXES: dict[str, type[StrEnum]] = {
    "status": StatusRegister,
    "bar_move_while_decoding": BarMoveWhileDecoding,
    "overlap": Overlap,
    "unmapped_mmio_read": UnmappedMmioRead,
    "straddle": Straddle,
    "alignment": Alignment,
    "cf8_low_bits": Cf8LowBits,
    "cf8_extended": Cf8Extended,
    "cf8_after_access": Cf8AfterAccess,
    "bridge_windows": BridgeWindows,
    "bridge_isa": BridgeIsa,
    "cf8_narrow": Cf8Narrow,
    "bar_at_top": BarAtTop,
    "address_zero": AddressZero,
    "bar_sizing": BarSizing,
    "unmapped_io_read": UnmappedIoRead,
    "config_past_space": ConfigPastSpace,
    "odd_word_write": OddWordWrite,
}
"""Every variant axis, by its manifest key, with the enum of its values (R-VAR-001)."""

AXIS_REQUIREMENT: dict[str, str] = {
    "status": "R-CFG-006",
    "bar_move_while_decoding": "R-DEC-005",
    "overlap": "R-DEC-008",
    "unmapped_mmio_read": "R-ACC-004",
    "straddle": "R-ACC-005",
    "alignment": "R-ACC-002",
    "cf8_low_bits": "R-CAM-002",
    "cf8_extended": "R-CAM-004",
    "cf8_after_access": "R-CAM-007",
    "bridge_windows": "R-BRG-006",
    "bridge_isa": "R-BRG-011",
    "cf8_narrow": "R-CAM-001",
    "bar_at_top": "R-DEC-006",
    "address_zero": "R-DEC-004",
    "bar_sizing": "R-BAR-003",
    "unmapped_io_read": "R-ACC-004",
    "config_past_space": "R-CFG-009",
    "odd_word_write": "R-ACC-003",
}
"""The requirement that states each axis's rule (spec/variants.md)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One value per variant axis; the defaults are normative (R-VAR-001, R-VAR-002)."""

    status: StatusRegister = StatusRegister.RW1C
    bar_move_while_decoding: BarMoveWhileDecoding = BarMoveWhileDecoding.IMMEDIATE
    overlap: Overlap = Overlap.LOWEST_BDF
    unmapped_mmio_read: UnmappedMmioRead = UnmappedMmioRead.ONES
    straddle: Straddle = Straddle.SPLIT
    alignment: Alignment = Alignment.ANY
    cf8_low_bits: Cf8LowBits = Cf8LowBits.MASKED
    cf8_extended: Cf8Extended = Cf8Extended.IGNORED
    cf8_after_access: Cf8AfterAccess = Cf8AfterAccess.KEEP
    bridge_windows: BridgeWindows = BridgeWindows.ENFORCED
    bridge_isa: BridgeIsa = BridgeIsa.HONOURED
    cf8_narrow: Cf8Narrow = Cf8Narrow.UNMAPPED
    bar_at_top: BarAtTop = BarAtTop.DECODES
    address_zero: AddressZero = AddressZero.UNMAPPED
    bar_sizing: BarSizing = BarSizing.MASK
    unmapped_io_read: UnmappedIoRead = UnmappedIoRead.ONES
    config_past_space: ConfigPastSpace = ConfigPastSpace.ONES
    odd_word_write: OddWordWrite = OddWordWrite.PERFORMED

    def __post_init__(self) -> None:
        for axis, enum in AXES.items():
            if not isinstance(getattr(self, axis), enum):
                raise ProfileError(
                    f"{axis} must be a {enum.__name__} ({', '.join(v.value for v in enum)}), "
                    f"got {getattr(self, axis)!r}; Profile.from_mapping takes strings"
                )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Profile:
        """Build a profile from ``{axis: value}``; absent axes take the default (R-VAR-003).

        Axes are strings naming an axis of :data:`AXES`; values are that axis's
        strings (or its enum members). Anything else is a :class:`ProfileError`.
        """
        if not isinstance(values, Mapping):
            raise ProfileError(f"a profile is a table of axis = value pairs, got {type(values).__name__}")
        chosen: dict[str, StrEnum] = {}
        for axis, raw in values.items():
            enum = AXES.get(axis) if isinstance(axis, str) else None
            if enum is None:
                raise ProfileError(f"unknown variant axis {axis!r}; known axes: {', '.join(AXES)}")
            if isinstance(raw, enum):
                chosen[axis] = raw
                continue
            allowed = ", ".join(v.value for v in enum)
            if not isinstance(raw, str) or raw not in enum._value2member_map_:
                shown = repr(raw) if len(repr(raw)) <= 60 else repr(raw)[:60] + "..."
                raise ProfileError(f"axis {axis!r} has no value {shown}; allowed: {allowed}")
            chosen[axis] = enum(raw)
        return cls(**chosen)  # type: ignore[arg-type]

    @classmethod
    def from_manifest(cls, text: str) -> Profile:
        """Parse a manifest (TOML, or JSON when it starts with ``{``) with a ``[profile]`` table.

        Implements R-VAR-003: unknown sections, axes and values are errors, not
        ignored; so is text that does not parse, however it fails.
        """
        if not isinstance(text, str):
            raise ProfileError(f"a profile manifest is text, got {type(text).__name__}")
        try:
            doc: Any = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ProfileError(f"profile manifest does not parse: {exc}") from None
        except RecursionError:
            raise ProfileError("profile manifest is nested too deeply") from None
        if not isinstance(doc, dict):
            raise ProfileError("a profile manifest is a table with a [profile] table")
        extra = set(doc) - {"profile", "implementation"}
        if extra:
            raise ProfileError(f"unknown manifest sections: {', '.join(sorted(map(str, extra)))}")
        if not isinstance(doc.get("implementation", {}), dict):
            raise ProfileError("[implementation] is a table of free-form values")
        return cls.from_mapping(doc.get("profile", {}))

    def to_mapping(self) -> dict[str, str]:
        """The profile as ``{axis: value}``, every axis present, in declaration order."""
        return {f.name: str(getattr(self, f.name).value) for f in dataclasses.fields(self)}

    def deviations(self) -> dict[str, str]:
        """The axes on which this profile differs from the normative default."""
        default = DEFAULT_PROFILE.to_mapping()
        return {k: v for k, v in self.to_mapping().items() if default[k] != v}


DEFAULT_PROFILE = Profile()
