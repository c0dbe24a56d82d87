"""Blame: the one rule a divergence speaks against, found by replaying its minimal trace (issue 14).

A finding is a minimal trace whose last operation diverges. :func:`blame`
asks, in order:

1. Does what happened in other VMs change what this VM observes? Then VM
   isolation (R-DS-008).
2. Which operation went wrong? The first state-changing operation whose
   effect already diverges when probed right after it (read-back of a
   write, the header, 0xCF8 and the tables after a reset, restore, plug or
   unplug, 0xCF8 after any I/O access at or beside 0xCF8-0xCFF, and after
   any rejected operation); else an operation the implementation behaves as
   if it had never run (a write over overlapping BARs that reached another
   than the overlap rule's pick: R-DEC-008); else the diverging operation
   itself.
3. Which rule of that operation? A lifecycle operation is blamed on its own
   requirement (a divergence first visible after a reset is R-RST-*, after a
   restore R-SR-*, after a rejected operation R-ERR-001 or R-SR-007); a
   configuration byte on the rule of that byte in the model's layout
   (identity, command, RW1C status bits, BAR address or type bits, ROM,
   capability headers and bodies, beyond the space); a write through 0xCFC
   or ECAM that a direct write would get right on the mechanism; a routing
   decision on the rule that makes the model decode or not decode there
   (enable bits, address zero, limits, moves, 64-bit address, overlap), or
   on the tables' bookkeeping when an operation on another function took
   away the entry of a BAR that still decodes (R-DS-006); a
   wide access whose bytes read one at a time agree on byte order,
   straddling or splitting; a blob digest on what the blob fails to carry;
   an error on the argument check that applies. In a VM with bridges the
   probes add the bus tree (``topology``): a write to a bridge's bus numbers
   is routing (R-BRG-003, or R-BRG-004 when the tree is right and the
   configuration table is not), raising bridge control bit 6 the secondary
   bus reset (R-BRG-007), a command, window or bridge control write whose
   effect shows below the bridge forwarding (R-BRG-006, R-BRG-011); a
   function reset of a bridge is R-BRG-008; a BAR below bridges reached or
   not against the model is forwarding when opening the bridges' windows
   wide makes the implementation agree; a snapshot with bridges that does
   not restore or restores another tree is R-BLOB-007 or R-BLOB-008.
4. Only where step 3 fell back on an operation's own rule: does the
   implementation behave as a variant its profile does not declare? Then
   the requirement stating that axis (R-VAR-002 with R-CFG-006, R-DEC-005,
   ...). Asked last because a bug can coincide with a variant on one trace.

Every reason is one line with numbers in hex. A case step may carry the
requirement it checks (``rules``): it decides where the trace alone cannot,
e.g. which format rule a literal blob the implementation accepts breaks.
Probes never reach BAR contents a fixed machine declares opaque.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from vpcid.adapters.base import Adapter, AdapterInfo
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.engine import (
    Divergence,
    blob_diff,
    format_observation,
    format_op,
    format_topology_row,
    hex_value,
    model_for,
    observations,
    touches_opaque,
)
from vpcid.conformance.trace import Observation, Op, OpKind
from vpcid.conformance.traceability import load_requirements
from vpcid.model import Bdf, BlobError, DeviceType, VpcidError
from vpcid.model import blob as blobfmt
from vpcid.model.behaviour import PAGE_SIZE
from vpcid.model.configspace import bar_address, decode_enabled, merge_byte
from vpcid.model.devicetype import ROM_INDEX, BarKind, ConfigLayout, layout
from vpcid.model.header import IDENTITY_BYTES, ChainEntry
from vpcid.model.manager import CF8, CFC, ECAM_SIZE, Instance, cam_selection
from vpcid.model.profile import AXES, AXIS_REQUIREMENT, Profile, UnmappedMmioRead
from vpcid.model.registers import ACCESS_RULE, Access, Action, BarRegister, RegisterMap, bit_list
from vpcid.model.topology import bus_reset_raised

Seen = Observation | str
"""An observation, or the text of a crash."""


@dataclass(frozen=True)
class Blame:
    """What a finding speaks against: requirements (most specific first), the operation that went
    wrong (index in the trace) and why, in one line."""

    requirements: tuple[str, ...]
    step: int
    reason: str


# --------------------------------------------------------------------------- the rules' text


@cache
def rule_line(rid: str) -> str:
    """The first sentence of requirement ``rid`` in spec/, for a failure to show next to its
    counterexample ("" for an unknown ID)."""
    requirement = load_requirements().get(rid)
    if requirement is None:
        return ""
    lines = requirement.path.read_text(encoding="utf-8").splitlines()[requirement.line :]
    paragraph = " ".join(itertools.takewhile(lambda text: text.strip() and not text.startswith("#"), lines))
    sentence = paragraph.split(". ")[0].strip()
    return sentence if sentence.endswith(".") else sentence + "."


# --------------------------------------------------------------------------- variants


def detect_variant(impl: Adapter, ops: Sequence[Op]) -> dict[str, str]:
    """Single-axis changes of the declared profile under which the model matches ``impl`` on ``ops``.

    Returns ``{axis: value}``; when several values of one axis match (the
    operations cannot tell them apart) the value lists them, ``a|b``.
    """
    info = impl.info
    seen = [_normal(o, info) for o in observations(impl, ops)]
    declared = info.profile.to_mapping()
    found: dict[str, list[str]] = {}
    for axis, enum in AXES.items():
        for value in enum:
            if value.value == declared[axis]:
                continue
            profile = Profile.from_mapping({**declared, axis: value.value})
            model = ModelAdapter("variant", profile, info.machine, operations=info.operations)
            if [_normal(o, info) for o in observations(model, ops)] == seen:
                found.setdefault(axis, []).append(value.value)
    return {axis: "|".join(values) for axis, values in found.items()}


def _normal(obs: Seen, info: AdapterInfo) -> Seen:
    """What must match: digests only of canonical blobs; tables as a set of rows (their order is
    judged on its own, R-DS-007)."""
    if not isinstance(obs, Observation):
        return obs
    if obs.digest is not None and not info.canonical_blobs:
        return Observation()
    if obs.tables is not None:
        return Observation(tables=tuple(sorted(obs.tables, key=repr)))
    return obs


# --------------------------------------------------------------------------- configuration bytes

_IDENTITY = {
    0x00: "vendor ID", 0x01: "vendor ID", 0x02: "device ID", 0x03: "device ID", 0x08: "revision",
    0x09: "class code", 0x0A: "class code", 0x0B: "class code", 0x2C: "subsystem vendor ID",
    0x2D: "subsystem vendor ID", 0x2E: "subsystem ID", 0x2F: "subsystem ID",
    0x34: "capabilities pointer", 0x3D: "interrupt pin",
}  # fmt: skip
_FIXED_ZERO = {
    0x0D: "latency timer", 0x0F: "BIST", 0x3E: "Min_Gnt", 0x3F: "Max_Lat",
    **dict.fromkeys(range(0x28, 0x2C), "CardBus CIS pointer"),
    **dict.fromkeys(range(0x35, 0x3C), "reserved header byte"),
}  # fmt: skip


def config_field(
    dtype: DeviceType, lay: ConfigLayout, offset: int, bits: int, written: bool
) -> tuple[str, str]:
    """(requirement, what the byte is) for configuration byte ``offset`` of ``dtype`` whose ``bits``
    diverge, ``written`` when a write to it is what went wrong (else its value since power-on)."""
    builder = dtype.space is None
    if offset >= dtype.config_size:
        return "R-CFG-009", f"beyond the function's {dtype.config_size}-byte space"
    if dtype.bridge is not None:
        type1 = _bridge_field(dtype, offset, bits, written)
        if type1 is not None:
            return type1
    if offset in _IDENTITY:
        return "R-CFG-002", f"{_IDENTITY[offset]}, read-only"
    if offset == 0x0E:
        return "R-CFG-011", "header type"
    if offset in (0x04, 0x05):
        return "R-CFG-004", "command register"
    if offset in (0x06, 0x07):
        if bits & (lay.w1cmask[offset] | dtype.declared.w1cmask[offset]):
            return "R-CFG-006", "status error bits, write-1-to-clear"
        return "R-CFG-005", "status register, read-only part"
    if 0x10 <= offset < 0x28:
        return _bar_field(dtype, offset, bits, written)
    if 0x30 <= offset < 0x34:
        return "R-BAR-007", "expansion ROM BAR"
    if offset in (0x0C, 0x3C):
        name = "cache line size" if offset == 0x0C else "interrupt line"
        return ("R-CFG-007" if builder else "R-DT-005"), name
    if offset in _FIXED_ZERO:
        return ("R-CFG-003" if builder else "R-DT-005"), f"{_FIXED_ZERO[offset]}, fixed zero"
    for entry in dtype.chain:
        if offset in entry.header_bytes:
            what = "extended capability" if entry.extended else "capability"
            return "R-CFG-008", f"header of {what} {entry.cap_id:#x} at {entry.offset:#x}, read-only"
    if offset in range(0x100, 0x104) and dtype.express:
        return "R-DT-007", "extended capability list head at 0x100"
    space = dtype.declared
    declared = bool(space.image[offset] | space.wmask[offset] | space.w1cmask[offset])
    for reg in dtype.registers:
        if reg.offset <= offset < reg.offset + reg.width:
            if reg.bits:  # classes per bit range (R-REG-012)
                return "R-REG-012", f"device-specific register at {reg.offset:#x}, classes per bit"
            return "R-CFG-012", f"device-specific {reg.cls.value} register at {reg.offset:#x}"
    owner = _capability_owning(dtype, offset)
    if owner is not None and (declared or offset < owner.offset + _CAPABILITY_LENGTH.get(owner.cap_id, 0)):
        return (
            "R-CFG-001" if written else "R-DT-005"
        ), f"body of capability {owner.cap_id:#x} at {owner.offset:#x}"
    if declared:
        return ("R-CFG-001" if written else "R-DT-005"), "declared byte"
    return "R-CFG-010", "unclaimed byte, reads zero"


_TYPE1_REGISTERS = {
    0x18: "primary bus number", 0x19: "secondary bus number", 0x1A: "subordinate bus number",
    0x1B: "secondary latency timer", 0x1C: "I/O base", 0x1D: "I/O limit", 0x1E: "secondary status",
    0x1F: "secondary status", 0x20: "memory base", 0x21: "memory base", 0x22: "memory limit",
    0x23: "memory limit", 0x24: "prefetchable base", 0x25: "prefetchable base", 0x26: "prefetchable limit",
    0x27: "prefetchable limit", **dict.fromkeys(range(0x28, 0x2C), "prefetchable base upper 32 bits"),
    **dict.fromkeys(range(0x2C, 0x30), "prefetchable limit upper 32 bits"),
    0x30: "I/O base upper 16 bits", 0x31: "I/O base upper 16 bits", 0x32: "I/O limit upper 16 bits",
    0x33: "I/O limit upper 16 bits", 0x3F: "bridge control",
}  # fmt: skip
"""The registers of a type 1 header that a type 0 header does not have at the same offset (R-BRG-001)."""
_BUS_RESET_BIT = 0x40
"""Bridge control bit 6 (byte 0x3E): secondary bus reset (R-BRG-007)."""
_ISA_VGA_BITS = 0x0C
"""Bridge control bits 2 and 3 (byte 0x3E): ISA enable and VGA enable (R-BRG-011)."""
_BUS_NUMBERS = frozenset({0x19, 0x1A})
"""The bus-number bytes that route (R-BRG-003); the primary bus number at 0x18 is stored only."""
_FORWARDING_BYTES = frozenset({0x04, 0x05, 0x1C, 0x1D, *range(0x20, 0x34), 0x3E, 0x3F})
"""Bridge bytes whose value decides what it forwards: command, windows, bridge control (R-BRG-006)."""
_CAPABILITY_LENGTH = {0x01: 8, 0x05: 0x18, 0x10: 0x3C, 0x11: 12}
"""Bytes of a capability's structure by ID (power management, MSI at its longest, PCI Express with its
slot and version 2 registers, MSI-X): its registers even where the type declares them zero (R-CFG-010
covers only bytes no capability claims)."""


def _bridge_field(dtype: DeviceType, offset: int, bits: int, written: bool) -> tuple[str, str] | None:
    """(requirement, what the byte is) for a byte a type 1 header lays out otherwise than a type 0
    header (R-BRG-001); None for bytes both headers share."""
    if 0x10 <= offset < 0x18:
        return _bar_field(dtype, offset, bits, written)
    if 0x38 <= offset < 0x3C:
        return "R-BAR-007", "expansion ROM BAR of a type 1 header (at 0x38)"
    if offset == 0x3E:
        if bits & _BUS_RESET_BIT:
            return "R-BRG-007", "bridge control bit 6, secondary bus reset"
        if bits & _ISA_VGA_BITS:
            return "R-BRG-011", "bridge control bits 2-3, ISA enable and VGA enable"
        return "R-BRG-001", "bridge control"
    if offset in _TYPE1_REGISTERS:
        return "R-BRG-001", f"{_TYPE1_REGISTERS[offset]} of a type 1 header"
    return None


def _capability_owning(dtype: DeviceType, offset: int) -> ChainEntry | None:
    """The capability whose header is the last one at or below ``offset`` in the same area."""
    area_extended = offset >= 0x100
    below = [e for e in dtype.chain if e.extended == area_extended and e.offset <= offset]
    return max(below, key=lambda e: e.offset) if below else None


def _bar_field(dtype: DeviceType, offset: int, bits: int, written: bool) -> tuple[str, str]:
    slot = (offset - 0x10) // 4
    bar = dtype.bar(slot)
    previous = dtype.bar(slot - 1) if slot > 0 else None
    if bar is None and previous is not None and previous.kind is BarKind.MEM64:
        return "R-BAR-005", f"upper dword of 64-bit BAR{slot - 1}"
    if bar is None:
        return "R-BAR-004", f"BAR slot {slot}, not implemented"
    byte = offset - (0x10 + 4 * slot)
    type_bits = 0x3 if bar.kind is BarKind.IO else 0xF
    if byte == 0 and bits & type_bits:
        return "R-BAR-002", f"type bits of BAR{slot}"
    if not written:
        return "R-BAR-008", f"BAR{slot}'s power-on value"
    if bar.kind is BarKind.IO and byte >= 2:
        return "R-BAR-006", f"bits 31:16 of I/O BAR{slot}"
    return "R-BAR-003", f"address bits of BAR{slot} ({bar.size:#x} bytes)"


# --------------------------------------------------------------------------- error kinds

_OWN_RULE = {
    OpKind.CREATE_VM: "R-DS-001", OpKind.DESTROY_VM: "R-DS-002", OpKind.PLUG: "R-HP-001",
    OpKind.UNPLUG: "R-HP-002", OpKind.RESET: "R-RST-001", OpKind.RESET_VM: "R-RST-003",
    OpKind.SAVE: "R-SR-001", OpKind.RESTORE: "R-SR-002", OpKind.SNAPSHOT: "R-SR-006",
    OpKind.RESTORE_VM: "R-SR-006", OpKind.TABLES: "R-DS-007", OpKind.DEFINE_TYPE: "R-DT-002",
    OpKind.CONFIG_READ: "R-CFG-001", OpKind.CONFIG_WRITE: "R-CFG-001", OpKind.IO_READ: "R-DEC-001",
    OpKind.IO_WRITE: "R-DEC-001", OpKind.MMIO_READ: "R-DEC-002", OpKind.MMIO_WRITE: "R-DEC-002",
    OpKind.INIT: "R-VAR-002", OpKind.SET_ECAM_BASE: "R-ECAM-005",
}  # fmt: skip
"""The requirement an operation kind stands for when nothing finer applies (its own step)."""

_HIDDEN_EFFECTS = frozenset({OpKind.RESET, OpKind.RESET_VM, OpKind.RESTORE, OpKind.RESTORE_VM, OpKind.UNPLUG,
                             OpKind.IO_WRITE, OpKind.MMIO_WRITE})  # fmt: skip
"""Operations with effects the probes right after them may not show (BAR data, routing without
tables): whether the implementation ignored one is asked by leaving it out."""
_CONFIG_KINDS = (OpKind.CONFIG_READ, OpKind.CONFIG_WRITE)
_IO_KINDS = (OpKind.IO_READ, OpKind.IO_WRITE)
_MMIO_KINDS = (OpKind.MMIO_READ, OpKind.MMIO_WRITE)
_WRITES = (OpKind.CONFIG_WRITE, OpKind.IO_WRITE, OpKind.MMIO_WRITE)
_LIFECYCLE = (OpKind.RESET, OpKind.RESET_VM, OpKind.RESTORE, OpKind.RESTORE_VM, OpKind.PLUG,
              OpKind.UNPLUG, OpKind.CREATE_VM, OpKind.DESTROY_VM)  # fmt: skip
_ONE_FUNCTION = (OpKind.RESET, OpKind.RESTORE, OpKind.PLUG, OpKind.UNPLUG)
"""Lifecycle operations on one function (named by their BDF)."""
_CAM_NEIGHBOURHOOD = (CF8 - 4, CFC + 8)
"""Ports [start, stop) of the configuration mechanism and the dword on either side of it: an I/O access
touching them may change 0xCF8 (a data access clears it under ``cf8_after_access = clear``, R-CAM-007;
an off-by-one in which ports count as the window clears it beside the window), so 0xCF8 is probed
after each."""


def _fits(value: object, width: object) -> bool:
    return type(value) is int and type(width) is int and 0 <= value < 1 << (8 * width)


def error_rule(op: Op, kind: str) -> tuple[str, str]:
    """(requirement, which check) for the error ``kind`` the model reports on ``op``."""
    access = op.kind in (*_CONFIG_KINDS, *_IO_KINDS, *_MMIO_KINDS)
    if kind == "unknown-vm":
        return "R-DS-002", f"VM {op.vm} does not exist"
    if kind == "duplicate-vm":
        return "R-DS-001", f"VM {op.vm} already exists"
    if kind == "unknown-device":
        return ("R-HP-002" if op.kind is OpKind.UNPLUG else "R-DS-004"), f"no instance at {op.bdf}"
    if kind == "slot-occupied":
        return "R-HP-001", f"{op.bdf} already holds an instance"
    if kind == "bad-width":
        return "R-ACC-001", f"width {op.width!r} is not allowed"
    if kind == "misaligned":
        if op.kind in _CONFIG_KINDS:
            return "R-ACC-003", f"{hex_value(op.address)}+{op.width} crosses a dword"
        return "R-ACC-002", f"{hex_value(op.address)} is not a multiple of {op.width}"
    if kind == "invalid-argument":
        if type(op.vm) is not int or not 0 <= op.vm <= 0xFFFF_FFFF:
            return "R-DS-001", f"VM id {op.vm!r} is out of range"
        if op.kind is OpKind.CREATE_VM:
            return "R-ECAM-001", f"ECAM base {op.ecam_base!r} is not a valid window"
        if access and op.kind in _WRITES and not _fits(op.value, op.width):
            in_range = (0 <= op.address <= 0xFFF) if op.kind in _CONFIG_KINDS else True
            if in_range:
                return "R-ACC-008", f"value {op.value!r} does not fit {op.width} bytes"
        if op.kind in _CONFIG_KINDS:
            return "R-ACC-003", f"offset {op.address!r} is outside 0-0xfff"
        if access:
            return "R-ACC-001", f"{op.address!r}+{op.width} is outside the space"
        return "R-ERR-002", "an argument is out of its range"
    if kind in ("bad-blob", "blob-mismatch"):
        return ("R-SR-006" if op.kind is OpKind.RESTORE_VM else "R-SR-005"), "the blob is rejected"
    if kind == "bad-device-type":
        return ("R-DT-002" if op.kind is OpKind.PLUG else "R-DT-001"), "the device type is not accepted"
    return "R-ERR-003", f"error {kind}"


_BLOB_FORMAT = (
    ("R-BLOB-001", ("truncated", "magic", "reserved", "runs past", "trailing", "integrity", "must be bytes")),
    ("R-BLOB-002", ("format", "critical", "out of order", "lacks", "unknown flags")),
    ("R-BLOB-004", ("not canonical", "ascending", "all-zero")),
    ("R-BLOB-005", ("VM section", "ECAM", "map-order", "device section", "device entry", "device blob")),
    ("R-BLOB-003", ("wrong length", "UTF-8", "section is", "memory section", "windows")),
)
"""Which format rule a reader's complaint is about, by what it says (first match wins)."""


def format_rule(complaint: str) -> str:
    """The format requirement a blob reader's complaint (a BlobError message) is about."""
    return next(
        (rid for rid, words in _BLOB_FORMAT if any(word in complaint for word in words)), "R-BLOB-001"
    )


def instance_fit(dtype: DeviceType, rec: blobfmt.InstanceRecord, profile: Profile) -> tuple[str, str] | None:
    """(requirement, why) when a decoded instance blob does not fit ``dtype``, checked in the order
    of R-SR-003..R-SR-005; None when its type, size and read-only bytes fit (what is left is its
    decode addresses, data and device state, R-SR-005)."""
    if rec.type_name != dtype.name or rec.fingerprint != dtype.fingerprint():
        return (
            "R-SR-003",
            f"the blob is of type {rec.type_name!r} ({rec.fingerprint.hex()[:16]}…), "
            f"the instance {dtype.name!r}",
        )
    lay = layout(dtype, profile.status)
    if len(rec.config) != len(lay.image):
        return "R-SR-005", f"the blob's configuration has {len(rec.config)} bytes, the type {len(lay.image)}"
    place = lay.first_fixed_difference(rec.config)
    if place is not None:
        blob_byte, type_byte = rec.config[place], lay.image[place]
        return (
            "R-SR-004",
            f"read-only byte {place:#05x} is {blob_byte:#04x} in the blob, {type_byte:#04x} in the type",
        )
    return None


def snapshot_fit(known: dict[str, DeviceType], snapshot: bytes, profile: Profile) -> tuple[str, str]:
    """(requirement, why) a snapshot is rejected: its framing (R-BLOB-*), an instance blob inside it
    (R-BLOB-006 when only its digest is wrong), an unknown type or a device that does not fit."""
    try:
        record = blobfmt.decode_snapshot(snapshot)
    except BlobError as exc:
        return format_rule(str(exc)), str(exc)
    for packed, device in record.devices:
        bdf = Bdf.unpack(packed)
        try:
            rec = blobfmt.decode_instance(device)
        except BlobError as exc:
            rid = "R-BLOB-006" if "integrity" in str(exc) else format_rule(str(exc))
            return rid, f"the blob of {bdf} in the snapshot: {exc}"
        dtype = known.get(rec.type_name)
        if dtype is None:
            return "R-SR-006", f"the snapshot names device type {rec.type_name!r}, which is not known"
        fit = instance_fit(dtype, rec, profile)
        if fit is not None:
            return fit[0], f"{bdf}: {fit[1]}"
    return "R-SR-006", "the snapshot's ECAM window, 0xCF8 or map order do not fit"


# --------------------------------------------------------------------------- the inquiry


@dataclass(frozen=True)
class _Symptom:
    """An operation whose observation disagrees: the diverging one or a probe after ``at`` steps."""

    op: Op
    expected: Observation
    observed: Observation | None
    crash: str | None
    at: int
    """Length of the trace prefix whose model state precedes ``op``."""


def blame(
    impl: Adapter, trace: Sequence[Op], divergence: Divergence, rules: Sequence[str | None] | None = None
) -> Blame:
    """The requirement(s) the minimal ``trace`` (its last operation diverging as ``divergence`` says)
    speaks against; ``rules``, when given, holds the requirement each step of ``trace`` checks."""
    return _Inquiry(impl, list(trace), divergence, rules).run()


class _Inquiry:
    """One finding being explained: replays of its trace, probes, and the model's state at each step."""

    def __init__(
        self, impl: Adapter, trace: list[Op], divergence: Divergence, rules: Sequence[str | None] | None
    ) -> None:
        self.impl = impl
        self.info = impl.info
        self.trace = trace
        self.last = len(trace) - 1
        self.rules = list(rules) if rules is not None and len(rules) == len(trace) else None
        final = trace[-1]
        self.final = _Symptom(final, divergence.expected, divergence.observed, divergence.crash, self.last)
        self._models: dict[int, ModelAdapter] = {}
        self._model_seen: list[Seen] | None = None
        self._history: list[dict[int, frozenset[tuple[object, ...]]]] | None = None
        self._register_found: dict[tuple[int, int, Bdf, str], tuple[int, int, int, int] | None] = {}
        self.weak = False
        """Set when the diagnosis fell back to an operation's own rule: an undeclared variant that
        explains the trace then decides (R-VAR-002)."""

    # ------------------------------------------------------------------ replays
    def model_at(self, steps: int) -> ModelAdapter:
        """The model after the first ``steps`` operations of the trace."""
        model = self._models.get(steps)
        if model is None:
            model = model_for(self.info)
            for op in self.trace[:steps]:
                model.execute(op)
            self._models[steps] = model
        return model

    def model_seen(self) -> list[Seen]:
        if self._model_seen is None:
            self._model_seen = observations(model_for(self.info), self.trace)
        return self._model_seen

    def allowed(self, steps: int, probes: Sequence[Op]) -> list[Op]:
        """``probes`` the implementation may be sent after ``steps`` operations: of kinds it offers, and
        on a fixed machine none that reaches BAR contents it declares opaque (decided as the engine
        does, on the model's state before each probe)."""
        probes = [p for p in probes if p.kind in self.info.operations]
        machine = self.info.machine
        if machine is None or not machine.opaque:
            return probes
        model = model_for(self.info)
        for op in self.trace[:steps]:
            model.execute(op)
        kept: list[Op] = []
        for probe in probes:
            if not touches_opaque(model, probe):
                model.execute(probe)
                kept.append(probe)
        return kept

    def safe(self, ops: Sequence[Op]) -> bool:
        """Whether a whole sequence may be replayed on the implementation: no operation of it reaches
        opaque BAR contents on the model."""
        return self.allowed(0, ops) == [op for op in ops if op.kind in self.info.operations]

    def disagreement(self, steps: int, probes: Sequence[Op], skip: int = 0) -> _Symptom | None:
        """The first of ``probes``, run after ``steps`` operations, whose observation disagrees (the
        first ``skip`` probes are set-up: their observations are not compared)."""
        probes = self.allowed(steps, probes)
        if len(probes) <= skip:
            return None
        ops = [*self.trace[:steps], *probes]
        seen = observations(self.impl, ops)
        expected = observations(model_for(self.info), ops)
        for k, probe in enumerate(probes[skip:], start=steps + skip):
            want = expected[k] if k < len(expected) else "model crashed"
            got = seen[k] if k < len(seen) else "no observation"
            if isinstance(want, str):
                return None  # a probe the model cannot answer says nothing
            if _normal(want, self.info) != _normal(got, self.info):
                observed = got if isinstance(got, Observation) else None
                crash = got if isinstance(got, str) else None
                return _Symptom(probe, want, observed, crash, steps)
        return None

    def probe_values(self, steps: int, probes: Sequence[Op]) -> tuple[list[Seen], list[Seen]] | None:
        """(implementation, model) observations of ``probes`` after ``steps`` operations (None when one
        of them may not be sent)."""
        if self.allowed(steps, probes) != list(probes):
            return None
        ops = [*self.trace[:steps], *probes]
        seen = observations(self.impl, ops)[steps:]
        expected = observations(model_for(self.info), ops)[steps:]
        if len(seen) != len(probes) or len(expected) != len(probes):
            return None
        return seen, expected

    def history(self) -> list[dict[int, frozenset[tuple[object, ...]]]]:
        """The model's I/O and memory table rows per VM after each prefix of the trace."""
        if self._history is None:
            model = model_for(self.info)
            self._history = []
            for op in self.trace:
                model.execute(op)
                self._history.append({vm: _rows(model, vm) for vm in model.manager.vm_ids()})
        return self._history

    # ------------------------------------------------------------------ the steps
    def run(self) -> Blame:
        found = self.diagnose()
        if self.weak:
            variant = detect_variant(self.impl, self.trace)
            if variant:
                rids = tuple(dict.fromkeys(AXIS_REQUIREMENT[axis] for axis in variant))
                said = ", ".join(f"{axis}={value}" for axis, value in variant.items())
                return Blame(rids, self.last, f"behaves as {said}, which its declared profile does not say")
        return found

    def diagnose(self) -> Blame:
        """Steps 2 to 4 of the module docstring; sets ``weak`` when only a fallback rule applied."""
        isolation = self.isolation()
        if isolation is not None:
            return isolation
        for index in self.changes():
            symptom = self.disagreement(index + 1, self.probes(index))
            if symptom is not None:
                return self.explain(index, symptom, ignored=False)
        for index in reversed(self.changes()):
            if self.trace[index].kind in _HIDDEN_EFFECTS and self.ignored(index):
                return self.explain(index, self.final, ignored=True)
        return self.explain(self.last, self.final, ignored=False)

    def isolation(self) -> Blame | None:
        """R-DS-008: once every operation of other VMs is left out, the implementation observes what
        the model observes, and the model observes what it did with them. Not asked when this VM
        restores a blob or snapshot another VM saved (a legitimate transfer)."""
        vm = self.trace[-1].vm
        restored = {
            op.name for op in self.trace if op.vm == vm and op.kind in (OpKind.RESTORE, OpKind.RESTORE_VM)
        }
        if any(
            op.vm != vm and op.kind in (OpKind.SAVE, OpKind.SNAPSHOT) and op.name in restored
            for op in self.trace
        ):
            return None
        others = [
            i
            for i, op in enumerate(self.trace)
            if op.kind not in (OpKind.INIT, OpKind.DEFINE_TYPE) and op.vm != vm
        ]
        if not others:
            return None
        alone = [op for i, op in enumerate(self.trace) if i not in set(others)]
        if not self.safe(alone):
            return None
        seen = observations(self.impl, alone)
        expected = observations(model_for(self.info), alone)
        if len(seen) != len(alone) or len(expected) != len(alone):
            return None
        same = _normal(expected[-1], self.info) == _normal(self.final.expected, self.info)
        if same and _normal(seen[-1], self.info) == _normal(expected[-1], self.info):
            first = others[0]
            other = self.trace[first].vm
            alone_seen = _shown(expected[-1], self.trace[-1])
            why = f"what VM {vm} observes changes with operations in VM {other}"
            return Blame(
                ("R-DS-008",), first, f"{why}: without them it observes {alone_seen} as the model does"
            )
        return None

    def changes(self) -> list[int]:
        """Indices of the operations before the last that change state, or must not (rejected ones)."""
        seen = self.model_seen()
        out: list[int] = []
        for index, op in enumerate(self.trace[: self.last]):
            own = seen[index]
            rejected = isinstance(own, Observation) and own.error is not None
            window = op.kind in _IO_KINDS and _touches(op, *_CAM_NEIGHBOURHOOD)
            if op.kind in _WRITES or op.kind in _LIFECYCLE or rejected or window:
                out.append(index)
        return out

    def ignored(self, index: int) -> bool:
        """Whether the model, without operation ``index``, observes what the implementation does."""
        reduced = self.trace[:index] + self.trace[index + 1 :]
        if not self.safe(reduced):
            return False
        expected = observations(model_for(self.info), reduced)
        seen = observations(self.impl, self.trace)
        if len(expected) != len(reduced) or len(seen) != len(self.trace):
            return False
        kept = seen[:index] + seen[index + 1 :]
        return all(
            _normal(a, self.info) == _normal(b, self.info) for a, b in zip(expected, kept, strict=True)
        )

    # ------------------------------------------------------------------ probes
    def probes(self, index: int) -> list[Op]:
        """Reads that show what operation ``index`` changed (or must not have changed)."""
        op = self.trace[index]
        before, after = self.model_at(index), self.model_at(index + 1)
        vm = op.vm
        out: list[Op] = []
        tables = Op(OpKind.TABLES, vm=vm)
        cf8 = Op(OpKind.IO_READ, vm=vm, address=CF8, width=4)
        if op.kind in _WRITES:
            parts = config_parts(before, op)
            for bdf, offset, _length, _skip in parts:
                out.append(Op(OpKind.CONFIG_READ, vm=vm, bdf=bdf, address=offset & ~3, width=4))
            for bdf in dict.fromkeys(part[0] for part in parts):
                out += self.function_probes(vm, bdf)  # a write may change nothing else (R-CFG-001)
            if parts:
                out.append(tables)
            elif op.kind is OpKind.IO_WRITE and _touches(op, CF8, CFC):
                out.append(cf8)
            elif op.kind in (OpKind.IO_WRITE, OpKind.MMIO_WRITE) and _fits(op.value, op.width):
                read = OpKind.IO_READ if op.kind is OpKind.IO_WRITE else OpKind.MMIO_READ
                out.append(Op(read, vm=vm, address=op.address, width=op.width))
        if op.kind in _IO_KINDS and _touches(op, *_CAM_NEIGHBOURHOOD):
            out.append(cf8)  # a data access may clear it (R-CAM-007), one beside the window must not
        if op.kind in (OpKind.RESET, OpKind.RESTORE, OpKind.PLUG, OpKind.UNPLUG) and op.bdf is not None:
            out += self.function_probes(vm, op.bdf)
            out.append(tables)
        if op.kind in (OpKind.RESET_VM, OpKind.RESTORE_VM, OpKind.CREATE_VM, OpKind.DESTROY_VM):
            out.append(cf8)
            for model in (before, after):
                if vm in model.manager.vm_ids():
                    for bdf, _name in model.manager.tables(vm).config:
                        out += self.function_probes(vm, bdf)
            out.append(tables)
        if tables in out and (self.bridges_in(index, vm) or self.bridges_in(index + 1, vm)):
            out.append(Op(OpKind.TOPOLOGY, vm=vm))  # where each instance sits, which numbers reach it
        out = list(dict.fromkeys(out))
        if op.kind is OpKind.RESET and self.is_bridge(index, vm, op.bdf):
            assert op.bdf is not None
            out += self.below_probes(index, vm, op.bdf)
        return out

    def function_probes(self, vm: int, bdf: Bdf) -> list[Op]:
        """Dword reads of a function's header and of every dword the trace touches in it."""
        dwords = set(range(0, 0x40, 4))
        for op in self.trace:
            if (
                op.kind in _CONFIG_KINDS
                and op.bdf == bdf
                and type(op.address) is int
                and 0 <= op.address < 0x1000
            ):
                dwords.add(op.address & ~3)
        return [Op(OpKind.CONFIG_READ, vm=vm, bdf=bdf, address=d, width=4) for d in sorted(dwords)]

    # ------------------------------------------------------------------ explanations
    def explain(self, index: int, symptom: _Symptom, *, ignored: bool) -> Blame:
        """The rule broken by operation ``index``, shown by ``symptom``."""
        op = self.trace[index]
        shown = _symptom_text(symptom)
        if index < self.last:
            own = self.model_seen()[index]
            if isinstance(own, Observation) and own.error is not None:
                rid = "R-SR-007" if op.kind in (OpKind.RESTORE, OpKind.RESTORE_VM) else "R-ERR-001"
                return Blame(
                    (rid,), index, f"step {index} was rejected ({own.error}) yet changed state: {shown}"
                )
            lifecycle = self.lifecycle(index, symptom, ignored)
            if lifecycle is not None:
                return lifecycle
            mechanism = self.mechanism_fault(index, symptom)
            if mechanism is not None:
                return Blame((mechanism[0],), index, mechanism[1])
            bridged = self.bridge_write(index, symptom)
            if bridged is not None:
                return Blame((bridged[0],), index, bridged[1])
            misrouted = self.overlap_misroute(index) if ignored else None
            if misrouted is not None:
                return Blame(("R-DEC-008",), index, misrouted)
        rids, why = self.symptom_rule(symptom, index if op.kind in _WRITES else None)
        if not rids:
            rule = self.rules[index] if self.rules is not None else None
            rids = (rule or _OWN_RULE[op.kind],)
            self.weak = True
        shown_as = f"the implementation observes as if step {index} had not run; "
        registers = any(rid.startswith("R-REG-") for rid in rids)  # those name their own step
        prefix = shown_as if ignored and index < self.last and not registers else ""
        return Blame(rids, index, prefix + why)

    def mechanism_fault(self, index: int, symptom: _Symptom) -> tuple[str, str] | None:
        """For a write through 0xCFC-0xCFF or ECAM: whether the same bytes written directly would have
        given what the model shows; then the mechanism routed the write wrong (R-CAM-*, R-ECAM-*)."""
        op = self.trace[index]
        window = op.kind is OpKind.IO_WRITE and _touches(op, CFC, CFC + 4)
        ecam = op.kind is OpKind.MMIO_WRITE
        parts = config_parts(self.model_at(index), op) if window or ecam else []
        if not parts:
            return None
        direct: list[Op] = []
        for bdf, start, length, skip in parts:
            value = (op.value >> 8 * skip) & ((1 << 8 * length) - 1)
            pieces = [(start, length)] if length != 3 else [(start, 1), (start + 1, 2)]
            for offset, width in pieces:
                part = (value >> 8 * (offset - start)) & ((1 << 8 * width) - 1)
                direct.append(
                    Op(OpKind.CONFIG_WRITE, vm=op.vm, bdf=bdf, address=offset, width=width, value=part)
                )
        # the steps between the write and the symptom stay: they may be what the symptom depends on
        # (a 0xCF8 write before a 0xCFC read), and only the write itself is what this asks about
        replay = [*self.trace[:index], *direct, *self.trace[index + 1 : symptom.at]]
        if not self.safe([*replay, symptom.op]):
            return None
        seen = observations(self.impl, [*replay, symptom.op])
        expected = observations(model_for(self.info), [*replay, symptom.op])
        if len(seen) != len(replay) + 1 or _normal(seen[-1], self.info) != _normal(expected[-1], self.info):
            return None
        shown = _symptom_text(symptom)
        bdf = parts[0][0]
        if ecam:
            rid = "R-ECAM-003" if len(parts) > 1 else "R-ECAM-002"
            return (
                rid,
                f"the ECAM write at step {index} did not reach {bdf} as written directly it does: {shown}",
            )
        cf8 = Op(OpKind.IO_READ, vm=op.vm, address=CF8, width=4)
        if symptom.op == cf8:  # what the write did to 0xCF8 itself, not where its bytes went
            rids, why = self.cf8_rule(symptom, index)
            return rids[0], why
        both = self.probe_values(index, [cf8])
        if both is not None and _normal(both[0][0], self.info) != _normal(both[1][0], self.info):
            got, want = both[0][0], both[1][0]
            if isinstance(got, Observation) and isinstance(want, Observation):
                return self.cf8_rule(_Symptom(cf8, want, got, None, index), None)[0][0], shown
        return (
            "R-CAM-004",
            f"the write through 0xCFC at step {index} missed {bdf}, which a direct write reaches: {shown}",
        )

    def overlap_misroute(self, index: int) -> str | None:
        """For an I/O or memory write the implementation behaves as if it had never run although
        reading its address right after it agreed: whether, of the BARs overlapping there, it reached
        another than the one the overlap rule picks (R-DEC-008). Asked by turning the pick's decode
        off after the write and reading the address again: the model then reads the next BAR's old
        bytes, an implementation that wrote that BAR reads what was written."""
        op = self.trace[index]
        if op.kind not in (OpKind.IO_WRITE, OpKind.MMIO_WRITE) or type(op.address) is not int:
            return None
        io = op.kind is OpKind.IO_WRITE
        model = self.model_at(index)
        covering = sorted((r for r in _rows(model, op.vm) if _covers(r, io, op.address)), key=repr)
        pick = self.target(model, op.vm, io, op.address)
        if len(covering) < 2 or not isinstance(pick, tuple):
            return None
        bdf, bar = pick
        command = self.model_at(index + 1).manager.config_read(op.vm, bdf, 0x04, 2)
        off = Op(OpKind.CONFIG_WRITE, vm=op.vm, bdf=bdf, address=0x04, width=2,
                 value=command & ~(0x1 if io else 0x2))  # fmt: skip
        read = Op(OpKind.IO_READ if io else OpKind.MMIO_READ, vm=op.vm, address=op.address, width=op.width)
        seen = self.probe_values(index + 1, [off, read])
        if seen is None or _normal(seen[0][1], self.info) == _normal(seen[1][1], self.info):
            return None
        names = ", ".join(f"{r[3]} BAR {r[4]}" for r in covering)
        place = f"{'port' if io else 'address'} {hex_value(op.address)}"
        return (
            f"step {index} wrote {place}, which {names} decode; the overlap rule sends it to {bdf} BAR "
            f"{bar}, yet with that BAR's decode off the implementation reads "
            f"{_shown(seen[0][1], read)} there and the model {_shown(seen[1][1], read)}: the write "
            f"reached another of them"
        )

    def restores_revision(self, index: int) -> bool:
        """Whether operation ``index`` restores a literal blob of an earlier revision its device's type
        accepts (R-MIG-001): then what the restore makes of it is R-MIG-002's."""
        op = self.trace[index]
        if not op.data or op.bdf is None:
            return False
        try:
            fingerprint = blobfmt.decode_instance(op.data).fingerprint
            dtype = self.model_at(index).manager.device_type(op.vm, op.bdf)
        except VpcidError:
            return False
        return fingerprint != dtype.fingerprint() and fingerprint in dtype.accepts

    def lifecycle(self, index: int, symptom: _Symptom, ignored: bool) -> Blame | None:
        """A reset, restore, plug, unplug, VM creation or destruction is blamed on its own rule."""
        op = self.trace[index]
        data = symptom.op.kind in (*_IO_KINDS, *_MMIO_KINDS) and not _platform(
            symptom.op, self.model_at(symptom.at)
        )
        shown = _symptom_text(symptom)
        after = "is as if it had not run" if ignored else "diverges right after it"
        rid: str | None = None
        bridge = op.kind in _ONE_FUNCTION and self.is_bridge(index, op.vm, op.bdf)
        if op.kind is OpKind.RESET and bridge:
            rid = "R-BRG-008"
        elif op.kind is OpKind.RESET:
            rid = "R-RST-002" if data else "R-RST-001"
        elif op.kind is OpKind.RESET_VM:
            cf8 = symptom.op.kind is OpKind.IO_READ and symptom.op.address == CF8
            rid = "R-RST-003" if cf8 else "R-RST-002" if data else "R-RST-001"
        elif op.kind is OpKind.RESTORE:
            rid = "R-MIG-002" if self.restores_revision(index) else "R-SR-002"
        elif op.kind is OpKind.RESTORE_VM:
            cf8 = symptom.op.kind is OpKind.IO_READ and symptom.op.address == CF8
            rid = "R-SR-009" if cf8 else "R-SR-006"
        elif op.kind is OpKind.UNPLUG:
            rid = "R-BRG-002" if bridge else "R-HP-002"
        elif op.kind is OpKind.PLUG:
            replug = any(
                o.kind is OpKind.UNPLUG and o.vm == op.vm and o.bdf == op.bdf for o in self.trace[:index]
            )
            if replug:
                rid = "R-HP-003"
            elif symptom.op.kind is OpKind.TOPOLOGY:
                rid = "R-BRG-002"
            elif symptom.op.kind is not OpKind.CONFIG_READ:
                rid = "R-HP-001"
        elif op.kind is OpKind.CREATE_VM:
            rid = "R-DS-001"
        elif op.kind is OpKind.DESTROY_VM:
            rid = "R-DS-002"
        if rid is None:
            return None
        return Blame((rid,), index, f"step {index} ({op.kind.value}) {after}: {shown}")

    def symptom_rule(self, symptom: _Symptom, write: int | None) -> tuple[tuple[str, ...], str]:
        """(requirements, why) from what disagrees; ``write`` is the index of a write that caused it."""
        op, expected, observed = symptom.op, symptom.expected, symptom.observed
        if observed is None:
            return (), f"{_symptom_text(symptom)}"
        if expected.error is not None or observed.error is not None:
            return self.error_symptom(symptom)
        if op.kind is OpKind.CONFIG_READ and expected.value is not None and observed.value is not None:
            assert op.bdf is not None
            return self.config_rule(symptom.at, op.vm, op.bdf, op.address, op.width,
                                    expected.value, observed.value, write)  # fmt: skip
        if (
            op.kind in (OpKind.IO_READ, OpKind.MMIO_READ)
            and expected.value is not None
            and observed.value is not None
        ):
            return self.space_rule(symptom, write)
        if op.kind is OpKind.TABLES and expected.tables is not None and observed.tables is not None:
            return self.tables_rule(symptom, expected.tables, observed.tables)
        if op.kind in (OpKind.SAVE, OpKind.SNAPSHOT) and expected.digest is not None:
            return self.digest_rule(symptom)
        if op.kind is OpKind.TOPOLOGY and expected.topology is not None and observed.topology is not None:
            return topology_rule(expected.topology, observed.topology)
        self.weak = True
        return ("R-ERR-003",), f"{_symptom_text(symptom)}: not the kind of observation the operation gives"

    def error_symptom(self, symptom: _Symptom) -> tuple[tuple[str, ...], str]:
        """An error where none belongs, none where one does, or another error than the model's."""
        op, expected, observed = symptom.op, symptom.expected, symptom.observed
        assert observed is not None
        index = self.last if symptom is self.final else None
        rule = self.rules[index] if self.rules is not None and index is not None else None
        literal = op.kind in (OpKind.RESTORE, OpKind.RESTORE_VM) and not op.name
        shown = _symptom_text(symptom) + (self.literal_diff(op, symptom.at) if literal else "")
        if expected.error is not None and observed.error is not None:
            self.weak = True
            if literal and rule:
                return (rule,), shown
            return ("R-ERR-002",), f"{shown}: when several errors apply the spec's order decides"
        if expected.error is not None:
            if literal and rule:
                self.weak = True  # what the step checks, unless the blob is valid in an undeclared variant
                return (rule,), shown
            if op.kind is OpKind.DEFINE_TYPE and rule:
                return (rule,), f"{shown}: the definition breaks a rule of {rule}"
            if op.kind in (OpKind.RESTORE, OpKind.RESTORE_VM) and expected.error in (
                "bad-blob",
                "blob-mismatch",
            ):
                rid, why = self.restore_fit(symptom)
            else:
                rid, why = error_rule(op, expected.error)
            return (rid,), f"{shown}: {why}"
        assert observed.error is not None
        if op.kind is OpKind.DEFINE_TYPE and rule and rule.startswith("R-DT-"):
            return (rule,), f"{shown}: the definition keeps every rule of {rule}"
        self.weak = True
        rid = self.wrongly_rejected(symptom)
        return (rid,), f"{shown}: the operation is valid here"

    def blob_of(self, op: Op, at: int) -> bytes | None:
        """The blob a restore or snapshot restore takes: its literal, or what the model saved in its
        slot by then."""
        if not op.name:
            return op.data
        for index in range(at - 1, -1, -1):
            saved = self.trace[index]
            if saved.kind in (OpKind.SAVE, OpKind.SNAPSHOT) and saved.name == op.name:
                manager = self.model_at(index).manager
                try:
                    if saved.kind is OpKind.SAVE:
                        assert saved.bdf is not None
                        return manager.save(saved.vm, saved.bdf)
                    return manager.snapshot(saved.vm)
                except VpcidError:
                    return None
        return None

    def restore_fit(self, symptom: _Symptom) -> tuple[str, str]:
        """Why the model rejects a restore's blob: which rule of R-BLOB-* or R-SR-003..R-SR-006."""
        op, at = symptom.op, symptom.at
        blob = self.blob_of(op, at)
        if blob is None:
            return ("R-SR-006" if op.kind is OpKind.RESTORE_VM else "R-SR-002"), "the blob is not known"
        manager = self.model_at(at).manager
        if op.kind is OpKind.RESTORE_VM:
            known = dict(manager._types)
            return snapshot_fit(known, blob, self.info.profile)
        try:
            rec = blobfmt.decode_instance(blob)
        except BlobError as exc:
            return format_rule(str(exc)), str(exc)
        assert op.bdf is not None
        fit = instance_fit(manager.device_type(op.vm, op.bdf), rec, self.info.profile)
        if fit is not None:
            return fit
        return "R-SR-005", "its decode addresses, data or device state disagree with its configuration"

    def literal_diff(self, op: Op, at: int) -> str:
        """How a literal blob or snapshot differs from what the model would save there now."""
        manager = self.model_at(at).manager
        try:
            if op.kind is OpKind.RESTORE:
                assert op.bdf is not None
                reference = manager.save(op.vm, op.bdf)
            else:
                reference = manager.snapshot(op.vm)
        except VpcidError:
            return ""
        return f" (against the model's own {'blob' if op.kind is OpKind.RESTORE else 'snapshot'}: " \
               f"{blob_diff(op.data, reference)})"  # fmt: skip

    def wrongly_rejected(self, symptom: _Symptom) -> str:
        """The rule of an operation the implementation rejects although the model performs it."""
        op, observed = symptom.op, symptom.observed
        assert observed is not None
        assert observed.error is not None
        error = observed.error
        if op.kind in _CONFIG_KINDS:
            if error in ("misaligned", "invalid-argument"):
                return "R-ACC-003"
            if op.kind is OpKind.CONFIG_WRITE and op.address < 0x100:  # read-only bits: kept, not refused
                return _refused_write_rule(range(op.address, op.address + op.width))
            return "R-ACC-001"
        if op.kind in (*_IO_KINDS, *_MMIO_KINDS):
            if error == "misaligned":
                return "R-ACC-002"
            parts = config_parts(self.model_at(symptom.at), op) if op.kind in _WRITES else []
            if parts:  # a configuration write through 0xCFC-0xCFF or ECAM, refused
                return _refused_write_rule(start + k for _, start, length, _ in parts for k in range(length))
            return "R-ACC-001"
        if op.kind is OpKind.CREATE_VM and error == "invalid-argument" and op.ecam_base is not None:
            return "R-ECAM-001"
        if op.kind is OpKind.PLUG:
            replug = any(o.kind is OpKind.UNPLUG and o.vm == op.vm and o.bdf == op.bdf for o in self.trace)
            return "R-HP-003" if replug else ("R-DT-002" if error == "bad-device-type" else "R-HP-001")
        if op.kind is OpKind.RESTORE:
            saved = next((o for o in self.trace if o.kind is OpKind.SAVE and o.name == op.name), None)
            elsewhere = saved is not None and (saved.vm, saved.bdf) != (op.vm, op.bdf)
            return "R-SR-003" if elsewhere and error == "blob-mismatch" else "R-SR-002"
        return _OWN_RULE[op.kind]

    # ---------------------------------------------------------------- configuration space
    def config_rule(
        self,
        at: int,
        vm: int,
        bdf: Bdf,
        offset: int,
        width: int,
        expected: int,
        observed: int,
        write: int | None,
    ) -> tuple[tuple[str, ...], str]:
        """Blame the first diverging byte of a configuration read by what the byte is."""
        model = self.model_at(at)
        diffs = [(offset + k, (expected >> 8 * k) & 0xFF, (observed >> 8 * k) & 0xFF) for k in range(width)]
        diffs = [d for d in diffs if d[1] != d[2]]
        if not diffs:
            return (), "no byte differs"
        try:
            dtype = model.manager.device_type(vm, bdf)
        except VpcidError:
            values = f"expected {hex_value(expected, width)}, got {hex_value(observed, width)}"
            return (
                "R-ACC-006",
            ), f"{bdf} holds no function, so configuration reads return all ones: {values}"
        place, want, got = diffs[0]
        bits = want ^ got
        lay = layout(dtype, self.info.profile.status)
        where = f"configuration byte {place:#05x} of {bdf}"
        values = f"expected {want:#04x}, got {got:#04x}"
        beyond = got == 0xFF and all(d[2] == 0xFF for d in diffs) and dtype.express and place >= 0x100
        if beyond and (write is None or self.extended_space_missing(at, vm, bdf)):
            return (
                "R-CFG-009",
            ), f"{where} reads as beyond the function's space ({values}); it has 4096 bytes"
        if write is not None:
            targets = [p for p in config_parts(self.model_at(write), self.trace[write]) if p[0] == bdf]
            covered = any(start <= place < start + length for _, start, length, _ in targets)
            if targets and not covered:
                rid = "R-DT-008" if dtype.config_behaviour is not None else "R-CFG-001"
                return (
                    rid,
                ), f"{where} changed although the write at step {write} does not cover it ({values})"
            if (
                targets
                and dtype.config_behaviour is not None
                and bits & self.behaviour_bits(write, vm, bdf, place)
            ):
                name = dtype.config_behaviour.name
                return ("R-DT-008",), f"{where}, set by configuration behaviour {name!r}: {values}"
        rid, what = config_field(dtype, lay, place, bits, write is not None)
        return (rid,), f"{where} ({what}): {values}"

    def extended_space_missing(self, at: int, vm: int, bdf: Bdf) -> bool:
        """Whether the implementation reads all ones at a dword from 0x100 where the model holds
        something else: it treats the function as having 256 bytes (R-CFG-009)."""
        manager = self.model_at(at).manager
        for dword in range(0x100, 0x1000, 4):
            if manager.config_read(vm, bdf, dword, 4) != 0xFFFF_FFFF:
                values = _values(
                    self.probe_values(at, [Op(OpKind.CONFIG_READ, vm=vm, bdf=bdf, address=dword, width=4)])
                )
                return values is not None and values[0] == 0xFFFF_FFFF
        return False

    def behaviour_bits(self, write: int, vm: int, bdf: Bdf, place: int) -> int:
        """Bits of byte ``place`` the type's configuration behaviour set in the model at step ``write``
        (what the masked write alone would not give)."""
        before = self.model_at(write).manager.config_read(vm, bdf, place & ~3, 4)
        after = self.model_at(write + 1).manager.config_read(vm, bdf, place & ~3, 4)
        dtype = self.model_at(write).manager.device_type(vm, bdf)
        lay = layout(dtype, self.info.profile.status)
        old = (before >> 8 * (place & 3)) & 0xFF
        merged = old
        for part_bdf, start, length, skip in config_parts(self.model_at(write), self.trace[write]):
            if part_bdf == bdf and start <= place < start + length:
                value = self.trace[write].value >> 8 * (skip + place - start)
                merged = merge_byte(old, value & 0xFF, lay.wmask[place], lay.w1cmask[place])
        return merged ^ ((after >> 8 * (place & 3)) & 0xFF)

    # ---------------------------------------------------------------- I/O and memory space
    def space_rule(self, symptom: _Symptom, write: int | None) -> tuple[tuple[str, ...], str]:
        """Blame a read in I/O or memory space: byte order or straddling when its bytes read one at a
        time agree, else the routing or the data of the first byte that differs."""
        op = symptom.op
        assert symptom.expected.value is not None
        assert symptom.observed is not None
        assert symptom.observed.value is not None
        expected, observed = symptom.expected.value, symptom.observed.value
        width, at = op.width, symptom.at
        model = self.model_at(at)
        io = op.kind is OpKind.IO_READ
        if io and op.address == CF8 and width == 4:
            return self.cf8_rule(symptom, write)
        single = OpKind.IO_READ if io else OpKind.MMIO_READ
        targets = [self.target(model, op.vm, io, op.address + k) for k in range(width)]
        if width > 1:
            bytes_seen = self.probe_values(at, [Op(single, vm=op.vm, address=op.address + k, width=1)
                                                 for k in range(width)])  # fmt: skip
            if bytes_seen is not None:
                got, want = bytes_seen
                differ = [
                    k for k in range(width) if _normal(got[k], self.info) != _normal(want[k], self.info)
                ]
                if not differ:
                    direct = self.direct_config_read(at, op)
                    if direct is not None and direct[0].width != width:  # its dword reads wrong itself
                        read, got_value, want_value = direct
                        assert read.bdf is not None
                        return self.config_rule(
                            at, op.vm, read.bdf, read.address, read.width, want_value, got_value, None
                        )
                    if direct is not None:  # the function reads these bytes together wrong itself
                        targets = ["direct"]
                    return self.whole_access_rule(op, targets, expected, observed)
                k = differ[0]
            else:
                k = next(k for k in range(width) if (expected ^ observed) >> 8 * k & 0xFF)
        else:
            k = 0
        address = op.address + k
        target = targets[k]
        want_byte, got_byte = (expected >> 8 * k) & 0xFF, (observed >> 8 * k) & 0xFF
        place = f"{'port' if io else 'address'} {hex_value(address)}"
        values = f"expected {want_byte:#04x}, got {got_byte:#04x}"
        if target == "cam-register":
            return ("R-CAM-001",), f"{place} is a byte of 0xCF8 reached by a non-dword access ({values})"
        if target == "cam-window":
            return self.window_rule(symptom, address, values)
        if target == "ecam":
            return self.ecam_rule(symptom, address, values)
        unmapped = 0xFF if io or self.info.profile.unmapped_mmio_read is UnmappedMmioRead.ONES else 0x00
        if target is None:
            reason = self.why_not_decoding(at, op.vm, io, address)
            if reason is not None:
                return (reason[0],), f"{place}: {reason[1]} ({values})"
            return ("R-ACC-004",), f"nothing decodes {place}, so it reads {unmapped:#04x} ({values})"
        assert isinstance(target, tuple)
        bdf, bar = target
        if bar != ROM_INDEX:  # a register the implementation holds otherwise, wherever the BAR is
            offset = address - self.base_of(model, op.vm, bdf, bar)
            held = self.register_rule(at, op.vm, bdf, bar, offset, values, strict=True)
            if held is not None:
                return held
        if got_byte == unmapped and want_byte != unmapped:
            forwarded = self.forwarding_stops(at, op.vm, io, address, bdf, bar)
            if forwarded is None and not io:
                forwarded = self.high_forwarding_stops(at, op.vm, address, bdf, bar)
            if forwarded is not None:
                return ("R-BRG-006",), f"{place}: {forwarded} ({values})"
            rid, why = self.why_decoding(at, op.vm, io, address, bdf, bar)
            return (rid,), f"{place}: {why}, but the implementation reads it as unmapped ({values})"
        rows = (
            [r for r in self.history()[at - 1].get(op.vm, frozenset()) if _covers(r, io, address)]
            if at
            else []
        )
        if len(rows) > 1:
            names = ", ".join(f"{r[3]} BAR {r[4]}" for r in sorted(rows, key=repr))
            return (
                "R-DEC-008",
            ), f"{place} is decoded by {names}; the overlap rule picks {bdf} BAR {bar} ({values})"
        dtype = model.manager.device_type(op.vm, bdf)
        if bar == ROM_INDEX:
            return (
                ("R-BAR-007",),
                f"{place} is byte {address - self.base_of(model, op.vm, bdf, bar):#x} of {bdf}'s ROM "
                f"({values})",
            )
        offset = address - self.base_of(model, op.vm, bdf, bar)
        registers = self.register_rule(at, op.vm, bdf, bar, offset, values)  # a gap, or how it is read
        if registers is not None:
            return registers
        rid = "R-DT-003" if dtype.behaviour is not None else "R-DT-004"
        return (rid,), f"{place} is byte {offset:#x} of {bdf} BAR {bar}, whose contents differ ({values})"

    def direct_config_read(self, at: int, op: Op) -> tuple[Op, int, int] | None:
        """For a read through 0xCFC-0xCFF or ECAM whose bytes read right one by one: a direct
        configuration read that diverges too - of the same bytes, else of the dword holding them (a
        window may be served by reading that dword) - with the implementation's and the model's
        values; then the function, not the mechanism, reads them wrong."""
        parts = config_parts(self.model_at(at), op)
        if len(parts) != 1 or parts[0][2] != op.width or op.kind not in (OpKind.IO_READ, OpKind.MMIO_READ):
            return None
        bdf, start, length, _ = parts[0]
        for offset, width in ((start, length), (start & ~3, 4)):
            direct = Op(OpKind.CONFIG_READ, vm=op.vm, bdf=bdf, address=offset, width=width)
            values = _values(self.probe_values(at, [direct]))
            if values is not None and values[0] != values[1]:
                return direct, values[0], values[1]
        return None

    def whole_access_rule(
        self, op: Op, targets: Sequence[object], expected: int, observed: int
    ) -> tuple[tuple[str, ...], str]:
        """Every byte reads right alone, the whole access does not."""
        width = op.width
        values = f"expected {hex_value(expected, width)}, got {hex_value(observed, width)}"
        where = f"{op.kind.value} {hex_value(op.address)}+{width}"
        want = expected.to_bytes(width, "little")
        got = observed.to_bytes(width, "little")
        if want == got[::-1]:
            return (
                "R-ACC-007",
            ), f"{where} has its bytes in reverse order ({values}): values are little-endian"
        if targets == ["direct"]:
            return ("R-ACC-007",), (
                f"{where} reads configuration bytes that read right one by one, but wrong together, "
                f"read directly too: the function composes them wrong ({values})"
            )
        if len({repr(t) for t in targets}) > 1:
            return ("R-ACC-005",), f"{where} straddles targets; each byte alone reads right ({values})"
        if "cam-window" in targets:
            return ("R-CAM-004",), f"{where} lies in the data window; each byte alone reads right ({values})"
        if "ecam" in targets and op.address % 4 + width > 4:
            return (
                "R-ECAM-003",
            ), f"{where} spans configuration dwords; each byte alone reads right ({values})"
        if sorted(want) == sorted(got):
            return ("R-ACC-007",), f"{where} has the right bytes in the wrong order ({values})"
        if op.address % width:
            return ("R-ACC-002",), f"{where} is unaligned; each byte alone reads right ({values})"
        return ("R-ACC-007",), f"{where}: each byte alone reads right, the whole access does not ({values})"

    def target(self, model: ModelAdapter, vm: int, io: bool, address: int) -> object:
        """What decodes one byte in the model: a (BDF, BAR) pair, a platform window, or None."""
        manager = model.manager
        if vm not in manager.vm_ids():
            return None
        if io:
            if CF8 <= address < CFC:
                return "cam-register"
            if CFC <= address < CFC + 4:
                return "cam-window"
        else:
            ecam = manager._vm(vm).ecam_base
            if ecam is not None and ecam <= address < ecam + ECAM_SIZE:
                return "ecam"
        if not 0 <= address < (1 << 16 if io else 1 << 64):
            return None
        return manager.resolve(vm, "io" if io else "memory", address)

    def base_of(self, model: ModelAdapter, vm: int, bdf: Bdf, bar: int) -> int:
        for row in _rows(model, vm):
            if row[3] == str(bdf) and row[4] == bar:
                return int(str(row[1]))
        return 0

    def why_not_decoding(
        self, at: int, vm: int, io: bool, address: int, only: tuple[str, int] | None = None
    ) -> tuple[str, str] | None:
        """Why no BAR decodes ``address`` in the model although the implementation routes it: the
        operation that stopped a BAR decoding there, or a BAR whose registers cover it and what stops
        it (``only``: that BAR alone)."""
        model = self.model_at(at)
        manager = model.manager
        if vm not in manager.vm_ids():
            return None
        unreached = not_forwarded(model, vm, io, address, only)
        if unreached is not None:
            return "R-BRG-006", unreached
        stopped = self.stopped_here(at, vm, io, address, only)
        if stopped is not None:
            return stopped
        profile = self.info.profile
        for bdf, _name in manager.tables(vm).config:
            dtype = manager.device_type(vm, bdf)
            config = b"".join(
                manager.config_read(vm, bdf, o, 4).to_bytes(4, "little") for o in range(0, 0x40, 4)
            )
            for index in dtype.implemented:
                bar = dtype.bar(index) if index != ROM_INDEX else None
                if (bar is not None and bar.kind is BarKind.IO) != io or only not in (
                    None,
                    (str(bdf), index),
                ):
                    continue
                size = bar.size if bar is not None else (dtype.rom.size if dtype.rom is not None else 0)
                if bar is None:
                    base = int.from_bytes(config[0x30:0x34], "little") & 0xFFFF_F800
                else:
                    base = bar_address(config, index, bar.kind)
                name = f"{bdf} {'ROM' if bar is None else f'BAR{index}'}"
                reason = _stopped(dtype, config, index, base, size, address, name, profile)
                if reason is not None:
                    return reason
        for other in manager.vm_ids():
            if other != vm and manager_decodes(model, other, io, address):
                return "R-DS-008", f"only VM {other} decodes it"
        ecam = manager._vm(vm).ecam_base
        if not io and ecam is not None and ecam <= address < ecam + ECAM_SIZE:
            return "R-ECAM-004", "it lies in the ECAM window"
        return None

    def stopped_here(
        self, at: int, vm: int, io: bool, address: int, only: tuple[str, int] | None = None
    ) -> tuple[str, str] | None:
        """The operation after which a BAR that decoded ``address`` earlier in the trace stopped."""
        history = self.history()

        def here(rows: frozenset[tuple[object, ...]]) -> set[tuple[object, ...]]:
            return {r for r in rows if _covers(r, io, address) and only in (None, (r[3], r[4]))}

        for index in range(min(at, len(history)) - 1, 0, -1):
            now, before = (
                here(history[index].get(vm, frozenset())),
                here(history[index - 1].get(vm, frozenset())),
            )
            if before and not now:
                gone = sorted(before, key=repr)[0]
                op = self.trace[index]
                rid = _stop_rule(op, gone, self.model_at(index))
                return rid, f"{gone[3]} BAR {gone[4]} stopped decoding it at step {index} ({op.kind.value})"
        return None

    def why_decoding(self, at: int, vm: int, io: bool, address: int, bdf: Bdf, bar: int) -> tuple[str, str]:
        """Why the model decodes ``address`` with (``bdf``, ``bar``) where the implementation does not.
        If decode turned off and on again makes it decode, what went wrong is how the operation that
        made it begin decoding there moved it (R-DEC-005, R-DEC-007, a restore); else, for a BAR above
        4 GiB that decodes once moved below, its 64-bit address (R-BAR-005); else its enable bit."""
        model = self.model_at(at)
        dtype = model.manager.device_type(vm, bdf)
        spec = dtype.bar(bar) if bar != ROM_INDEX else None
        base = self.base_of(model, vm, bdf, bar)
        name = f"{bdf} {'ROM' if bar == ROM_INDEX else f'BAR{bar}'} decodes it at {hex_value(base)}"
        started = self.decode_start(at, vm, bdf, bar, dtype)
        if started is not None and self.decodes_after_enable(at, vm, io, address, bdf, bar):
            rid, index = started
            return rid, f"{name} since step {index} ({self.trace[index].kind.value})"
        high = spec is not None and spec.kind is BarKind.MEM64 and base >= 1 << 32
        if high and spec is not None and self.decodes_below_4g(at, vm, bdf, bar, spec.size, address - base):
            return "R-BAR-005", f"{name}, above 4 GiB (moved below 4 GiB, the implementation decodes it)"
        return _enable_rule(dtype, bar), f"{name} (even decode enabled afresh does not make it decode)"

    def decode_start(self, at: int, vm: int, bdf: Bdf, bar: int, dtype: DeviceType) -> tuple[str, int] | None:
        """(rule, step) of the operation after which the model's BAR began decoding where it does."""
        history = self.history()
        key = (str(bdf), bar)
        for index in range(min(at, len(history)) - 1, -1, -1):
            now = {r for r in history[index].get(vm, frozenset()) if (r[3], r[4]) == key}
            before = (
                set()
                if index == 0
                else {r for r in history[index - 1].get(vm, frozenset()) if (r[3], r[4]) == key}
            )
            if now != before:
                return _start_rule(self.trace[index], dtype, bar, bool(before), self.model_at(index)), index
        return None

    def decodes_after_enable(self, at: int, vm: int, io: bool, address: int, bdf: Bdf, bar: int) -> bool:
        """Whether the implementation reads ``address`` as the model does once the BAR's decode is
        turned off and on again: then what it got wrong was how a write moved the decoding BAR
        (R-DEC-005, R-DEC-007), not the enable."""
        model = self.model_at(at)
        command = model.manager.config_read(vm, bdf, 0x04, 2)
        bit = 0x1 if io else 0x2

        def write(value: int) -> Op:
            return Op(OpKind.CONFIG_WRITE, vm=vm, bdf=bdf, address=0x04, width=2, value=value)

        read = Op(OpKind.IO_READ if io else OpKind.MMIO_READ, vm=vm, address=address, width=1)
        return self.probes_agree(at, [write(command & ~bit), write(command), read]) is not False

    def decodes_below_4g(self, at: int, vm: int, bdf: Bdf, index: int, size: int, offset: int) -> bool:
        """Whether the implementation decodes a 64-bit BAR as the model does once it is moved to a free
        address below 4 GiB (decode off while it moves): then what it gets wrong is the address made
        of both dwords (R-BAR-005)."""
        model = self.model_at(at)
        low = _free_below_4g(model, vm, size)
        if low is None:
            return False
        command = model.manager.config_read(vm, bdf, 0x04, 2)
        return self.probes_agree(at, _moved_bar_read(vm, bdf, index, low, command, low + offset)) is True

    def probes_agree(self, at: int, probes: Sequence[Op]) -> bool | None:
        """Whether the implementation observes every one of ``probes`` after ``at`` operations as the
        model does; None when one of them may not be sent."""
        values = self.probe_values(at, probes)
        if values is None:
            return None
        seen, expected = values
        return all(
            _normal(a, self.info) == _normal(b, self.info) for a, b in zip(seen, expected, strict=True)
        )

    # ---------------------------------------------------------------- platform registers
    def cf8_rule(self, symptom: _Symptom, write: int | None) -> tuple[tuple[str, ...], str]:
        """A dword read of 0xCF8 that disagrees."""
        op = symptom.op
        shown = _symptom_text(symptom)
        if write is not None:
            cause = self.trace[write]
            dword = cause.address == CF8 and cause.width == 4
            if cause.kind is OpKind.IO_WRITE and _touches(cause, CF8, CFC) and not dword:
                return ("R-CAM-001",), f"{shown}: a non-dword access at step {write} reached 0xCF8"
        last_write: int | None = None
        accessed = False
        beside: int | None = None
        for index, earlier in enumerate(self.trace[: symptom.at]):
            if earlier.vm != op.vm:
                continue
            if earlier.kind in (OpKind.CREATE_VM, OpKind.RESET_VM, OpKind.RESTORE_VM):
                last_write, accessed, beside = None, False, None
            elif earlier.kind is OpKind.IO_WRITE and earlier.address == CF8 and earlier.width == 4:
                last_write, accessed, beside = index, False, None
            elif earlier.kind in _IO_KINDS and _touches(earlier, CFC, CFC + 4):
                accessed = True
            elif earlier.kind in _IO_KINDS and _touches(earlier, *_CAM_NEIGHBOURHOOD):
                beside = index
        observed = symptom.observed
        if last_write is None:
            return ("R-CAM-003",), f"{shown}: 0xCF8 reads zero after VM creation or reset"
        if accessed and observed is not None and observed.value == 0:
            return ("R-CAM-007",), f"{shown}: 0xCF8 keeps its value across data accesses"
        if beside is not None and observed is not None and observed.value == 0:
            access = self.trace[beside]
            ports = f"{hex_value(access.address)}+{access.width}"
            return ("R-CAM-007",), (
                f"{shown}: only an access whose bytes include a port of the data window 0xCFC-0xCFF "
                f"clears 0xCF8, and step {beside} ({access.kind.value} {ports}) includes none"
            )
        return ("R-CAM-002",), f"{shown}: 0xCF8 keeps bit 31 and bits 23:2 of what step {last_write} wrote"

    def window_rule(self, symptom: _Symptom, port: int, values: str) -> tuple[tuple[str, ...], str]:
        """A byte of the 0xCFC-0xCFF data window that disagrees: the selection, the enable bit, a BAR
        under the ports, or the configuration byte it reaches."""
        op, at = symptom.op, symptom.at
        model = self.model_at(at)
        cf8 = Op(OpKind.IO_READ, vm=op.vm, address=CF8, width=4)
        both = self.probe_values(at, [cf8])
        if both is not None and _normal(both[0][0], self.info) != _normal(both[1][0], self.info):
            got, want = both[0][0], both[1][0]
            if isinstance(got, Observation) and isinstance(want, Observation):
                return self.cf8_rule(_Symptom(cf8, want, got, None, at), None)
        selected = cam_selection(model.manager.cf8(op.vm), self.info.profile)
        place = f"port {hex_value(port)}"
        if selected is None:
            return (
                "R-CAM-005",
            ), f"{place}: 0xCF8's enable bit is clear, so the window reads all ones ({values})"
        bdf, register = selected
        offset = register + port - CFC
        direct = Op(OpKind.CONFIG_READ, vm=op.vm, bdf=bdf, address=offset, width=1)
        seen = self.probe_values(at, [direct])
        if seen is not None and _normal(seen[0][0], self.info) == _normal(seen[1][0], self.info):
            if any(manager_decodes(model, op.vm, True, p) for p in range(CF8, CFC + 4)):
                return (
                    "R-CAM-006",
                ), f"{place}: an I/O BAR covers 0xCF8-0xCFF but the ports stay the host bridge's ({values})"
            why = f"{place} selects byte {offset:#05x} of {bdf}, which reads right directly ({values})"
            return ("R-CAM-004",), why
        byte = _values(seen)
        if byte is not None:
            return self.config_rule(at, op.vm, bdf, offset, 1, byte[1], byte[0], None)
        return ("R-CAM-004",), f"{place} selects byte {offset:#05x} of {bdf} ({values})"

    def ecam_rule(self, symptom: _Symptom, address: int, values: str) -> tuple[tuple[str, ...], str]:
        """A byte in the ECAM window that disagrees: ECAM addressing, a BAR under the window, or the
        configuration byte it reaches."""
        op, at = symptom.op, symptom.at
        model = self.model_at(at)
        ecam = model.manager._vm(op.vm).ecam_base
        assert ecam is not None
        rel = address - ecam
        bdf = Bdf(rel >> 20, (rel >> 15) & 0x1F, (rel >> 12) & 0x7)
        offset = rel & 0xFFF
        direct = Op(OpKind.CONFIG_READ, vm=op.vm, bdf=bdf, address=offset, width=1)
        seen = self.probe_values(at, [direct])
        place = f"address {hex_value(address)}"
        if seen is not None and _normal(seen[0][0], self.info) == _normal(seen[1][0], self.info):
            if manager_decodes(model, op.vm, False, address):
                return ("R-ECAM-004",), f"{place} is in the ECAM window over a decoding BAR ({values})"
            why = (
                f"{place} is byte {offset:#05x} of {bdf} through ECAM, which reads right directly ({values})"
            )
            return ("R-ECAM-002",), why
        byte = _values(seen)
        if byte is not None:
            return self.config_rule(at, op.vm, bdf, offset, 1, byte[1], byte[0], None)
        return ("R-ECAM-002",), f"{place} is byte {offset:#05x} of {bdf} through ECAM ({values})"

    # ---------------------------------------------------------------- tables and blobs
    def tables_rule(
        self, symptom: _Symptom, expected: Sequence[Sequence[object]], observed: Sequence[Sequence[object]]
    ) -> tuple[tuple[str, ...], str]:
        """Tables that disagree: the same rows in another order, or rows the model does not have."""
        want, got = [tuple(r) for r in expected], [tuple(r) for r in observed]
        if sorted(want, key=repr) == sorted(got, key=repr):
            return ("R-DS-007",), "the tables hold the model's rows in another order; the order is specified"
        missing = [r for r in want if r not in got]
        extra = [r for r in got if r not in want]
        config_rows = [r for r in missing + extra if r[0] == "config"]
        at, vm = symptom.at, symptom.op.vm
        if config_rows and self.bridges_in(at, vm):
            return (self.routing_rule(at, vm),), f"configuration table rows differ: {config_rows[0]}"
        if config_rows:
            return ("R-DS-003",), f"configuration table rows differ: {config_rows[0]}"
        for row in missing:
            io, base = row[0] == "io", int(str(row[1]))
            bdf, bar = Bdf.parse(str(row[3])), int(str(row[4]))
            moved = [r for r in extra if (r[3], r[4]) == (row[3], row[4])]
            if moved:
                elsewhere = int(str(moved[0][1]))
                if elsewhere == base & 0xFFFF_FFFF:
                    return (
                        ("R-BAR-005",),
                        f"{bdf} BAR {bar} decodes at {hex_value(elsewhere)}, "
                        f"the lower dword of {hex_value(base)}",
                    )
                earlier = any(any((r[3], r[4], r[1]) == (row[3], row[4], elsewhere) for r in rows.get(vm, ()))
                              for rows in self.history()[:at])  # fmt: skip
                rid = "R-DEC-005" if earlier else "R-BAR-003"
                return (
                    rid,
                ), f"{bdf} BAR {bar} decodes at {hex_value(elsewhere)}, the model at {hex_value(base)}"
            lost = self.lost_entry(at, vm, row)
            if lost is not None:
                return ("R-DS-006",), lost
            rid, why = self.why_decoding(at, vm, io, base, bdf, bar)
            return (rid,), f"{why}, but the implementation's tables lack it"
        for row in extra:
            io, base = row[0] == "io", int(str(row[1]))
            reason = self.why_not_decoding(at, vm, io, base, (str(row[3]), int(str(row[4]))))
            if reason is not None:
                return (
                    reason[0],
                ), f"the implementation lists {row[3]} BAR {row[4]} at {hex_value(base)}: {reason[1]}"
        return ("R-DS-009",), "the tables list other entries than the decoding BARs"

    def lost_entry(self, at: int, vm: int, row: tuple[object, ...]) -> str | None:
        """For a table row the implementation lacks after ``at`` operations: whether operation
        ``at - 1`` changed other functions only, the row's BAR decoding where it does in the model
        before and after it, and the implementation listed the row before it. Then that operation
        took away the entry of a BAR that still decodes: the table's bookkeeping (R-DS-006), not the
        BAR's decode."""
        if at < 1:
            return None
        cause = self.trace[at - 1]
        if cause.vm != vm:
            return None
        if cause.kind in _WRITES:
            changed = {part[0] for part in config_parts(self.model_at(at - 1), cause)}
        elif cause.kind in _ONE_FUNCTION and cause.bdf is not None:
            changed = {cause.bdf}
        else:
            return None
        bdf = Bdf.parse(str(row[3]))
        if bdf in changed or vm not in self.model_at(at - 1).manager.vm_ids():
            return None
        if row not in _rows(self.model_at(at - 1), vm) or row not in _rows(self.model_at(at), vm):
            return None
        before = self.probe_values(at - 1, [Op(OpKind.TABLES, vm=vm)])
        listed = before[0][0] if before is not None else None
        if not isinstance(listed, Observation) or listed.tables is None:
            return None
        if row not in {tuple(r) for r in listed.tables}:
            return None
        others = ", ".join(str(b) for b in sorted(changed, key=str)) or "no function's configuration"
        return (
            f"{bdf} BAR {row[4]} decodes at {hex_value(int(str(row[1])))} before and after step {at - 1} "
            f"({cause.kind.value}, which changes {others}), yet the implementation's tables lose its "
            f"entry there: a table holds an entry while its BAR decodes"
        )

    def digest_rule(self, symptom: _Symptom) -> tuple[tuple[str, ...], str]:
        """A saved blob or snapshot with another digest. First the live state: if the data the blob
        would carry already reads otherwise (each BAR moved to a free address and read), the
        operation that last changed it in the model decides (a reset or restore the implementation
        did not apply in full). Else the blob restored on the implementation: if it does not bring
        the state back, its content is wrong (R-BLOB-003, R-SR-006, R-SR-009); if it does, its
        encoding is not canonical (R-BLOB-004, R-BLOB-005)."""
        op, at = symptom.op, symptom.at
        shown = _symptom_text(symptom)
        model = self.model_at(at)
        instances = (
            [op.bdf]
            if op.kind is OpKind.SAVE and op.bdf is not None
            else [bdf for bdf, _name in model.manager.tables(op.vm).config]
        )
        registers = self.register_state_rule(at, op.vm, instances)
        if registers is not None:
            rids, why = registers
            return rids, f"{shown}; live, {why}"
        revealed: dict[Op, Bdf] = {}
        live = self.disagreement(at, self.reveal_probes(at, op.vm, op.vm, instances, revealed))
        if live is not None and live.op in revealed:
            owner = revealed[live.op]
            changed = self.last_change(at, op.vm, owner)
            if changed is not None and self.trace[changed].kind in _LIFECYCLE:
                cause = self.lifecycle(changed, live, False)
                if cause is not None:
                    kind = self.trace[changed].kind.value
                    last = f"the model last changed {owner}'s data at step {changed} ({kind})"
                    return cause.requirements, f"{shown}; live, {_symptom_text(live)}: {last}"
        slot = "vpcid-blame"
        if op.kind is OpKind.SAVE:
            assert op.bdf is not None
            target = op.vm
            probes = [
                Op(OpKind.SAVE, vm=op.vm, bdf=op.bdf, name=slot),
                Op(OpKind.RESTORE, vm=op.vm, bdf=op.bdf, name=slot),
            ]
        else:
            target = max(model.manager.vm_ids(), default=0) + 1
            probes = [Op(OpKind.SNAPSHOT, vm=op.vm, name=slot), Op(OpKind.RESTORE_VM, vm=target, name=slot),
                      Op(OpKind.IO_READ, vm=target, address=CF8, width=4)]  # fmt: skip
        bridges = op.kind is OpKind.SNAPSHOT and self.bridges_in(at, op.vm)
        if bridges:  # the tree first: an instance elsewhere makes every probe of it differ
            probes.append(Op(OpKind.TOPOLOGY, vm=target))
        for bdf in instances:
            probes += self.function_probes(target, bdf)
        probes += [*self.data_probes(op.vm, target), Op(OpKind.TABLES, vm=target)]
        probes += self.reveal_probes(at, op.vm, target, instances, {})
        if bridges:
            refused = self.own_snapshot_refused(at, probes[:2])
            if refused is not None:
                return ("R-BLOB-007",), (
                    f"{shown}; the implementation refuses to restore its own snapshot ({refused}), which the "
                    f"model restores: its devices section (tree order, bus byte 0 below a bridge) or the "
                    f"topology section matching it breaks the format"
                )
        found = self.disagreement(at, probes, skip=2)
        what = "blob" if op.kind is OpKind.SAVE else "snapshot"
        if found is None and bridges:
            return ("R-BLOB-007",), (
                f"{shown}; it restores to the same tree and state, so its devices section (tree order, "
                f"bus byte 0 below a bridge) is not the canonical one"
            )
        if found is not None and found.op.kind is OpKind.TOPOLOGY:
            return ("R-BLOB-008",), (
                f"{shown}; restoring the implementation's snapshot rebuilds another tree: "
                f"{_symptom_text(found)}"
            )
        if found is None:
            rid = "R-BLOB-004" if op.kind is OpKind.SAVE else "R-BLOB-005"
            return (rid,), f"{shown}; it restores to the same state, so its encoding is not canonical"
        restored = f"{shown}; restoring the implementation's {what}: {_symptom_text(found)}"
        if found.op.kind is OpKind.IO_READ and found.op.address == CF8 and found.op.width == 4:
            return ("R-SR-009",), restored
        if found.op.kind is OpKind.TABLES and op.kind is OpKind.SNAPSHOT:
            return ("R-SR-006",), restored
        return ("R-BLOB-003",), restored

    # ---------------------------------------------------------------- bridges (R-BRG-*)
    def bridges_in(self, steps: int, vm: int) -> bool:
        """Whether the model's VM ``vm`` holds a bridge after ``steps`` operations."""
        manager = self.model_at(steps).manager
        return vm in manager.vm_ids() and manager._vm(vm).bridge_count > 0

    def is_bridge(self, steps: int, vm: int, bdf: Bdf | None) -> bool:
        """Whether ``bdf`` names a bridge in the model after ``steps`` operations."""
        manager = self.model_at(steps).manager
        if bdf is None or vm not in manager.vm_ids():
            return False
        inst = manager._vm(vm).config_table.get(bdf)
        return inst is not None and inst.dtype.bridge is not None

    def bridge_write(self, index: int, symptom: _Symptom) -> tuple[str, str] | None:
        """For a configuration write to a bridge whose effect shows elsewhere than in the bytes it
        wrote: the bridge rule that effect follows - secondary bus reset (R-BRG-007), routing by the
        bus numbers (R-BRG-003, R-BRG-004), forwarding by the command, window and bridge control
        bytes (R-BRG-006, R-BRG-011)."""
        op = self.trace[index]
        if op.kind not in _WRITES:
            return None
        before_model, after_model = self.model_at(index), self.model_at(index + 1)
        if op.vm not in after_model.manager.vm_ids():
            return None
        shown = _symptom_text(symptom)
        for bdf, start, length, _skip in config_parts(before_model, op):
            old_inst = before_model.manager._vm(op.vm).config_table.get(bdf)
            if old_inst is None or old_inst.dtype.bridge is None:
                continue
            if symptom.op.kind is OpKind.CONFIG_READ and symptom.op.bdf == bdf:
                continue  # the bridge's own bytes: the rule of the byte (config_field)
            before = bytes(old_inst.config)
            after = self.bridge_config_after(index, op.vm, old_inst)
            if after is None:
                continue
            if bus_reset_raised(before[start : start + length], after, start):
                return "R-BRG-007", (
                    f"step {index} set secondary bus reset (bridge control bit 6) of {bdf}, which resets "
                    f"every instance below it: {shown}"
                )
            changed = {o for o in range(start, start + length) if before[o] != after[o]}
            if changed & _BUS_NUMBERS:
                rid = self.routing_rule(index + 1, op.vm)
                return rid, (
                    f"step {index} changed the bus numbers of {bdf} (secondary {before[0x19]:#04x} -> "
                    f"{after[0x19]:#04x}, subordinate {before[0x1A]:#04x} -> {after[0x1A]:#04x}): {shown}"
                )
            if changed & _FORWARDING_BYTES and _below_concerned(old_inst, bdf, symptom):
                flipped = (before[0x3E] ^ after[0x3E]) & _ISA_VGA_BITS
                isa_vga = bool(flipped) and symptom.op.kind not in _CONFIG_KINDS
                what = "ISA/VGA enable" if isa_vga else "what it forwards (command, windows, bridge control)"
                return ("R-BRG-011" if isa_vga else "R-BRG-006"), (
                    f"step {index} changed {what} of bridge {bdf}: {shown}"
                )
        return None

    def bridge_config_after(self, index: int, vm: int, bridge: Instance) -> bytes | None:
        """The configuration bytes of ``bridge`` (an instance of the model before step ``index``) in
        the model after that step, found by its place in the tree."""
        before = list(self.model_at(index).manager._vm(vm).tree())
        after = list(self.model_at(index + 1).manager._vm(vm).tree())
        position = next((k for k, inst in enumerate(before) if inst is bridge), None)
        if position is None or len(after) != len(before):
            return None
        return bytes(after[position].config)

    def routing_rule(self, steps: int, vm: int) -> str:
        """R-BRG-004 when the implementation's bus tree after ``steps`` operations is the model's (the
        numbers route right, the configuration table did not follow them), else R-BRG-003."""
        values = self.probe_values(steps, [Op(OpKind.TOPOLOGY, vm=vm)])
        if values is None:
            return "R-BRG-003"
        got, want = values[0][0], values[1][0]
        same = isinstance(got, Observation) and _normal(got, self.info) == _normal(want, self.info)
        return "R-BRG-004" if same else "R-BRG-003"

    def forwarding_stops(self, at: int, vm: int, io: bool, address: int, bdf: Bdf, bar: int) -> str | None:
        """For a BAR of an instance below bridges that the model reaches at ``address`` and the
        implementation does not: whether the implementation reads it as the model does once every
        bridge above forwards everything of that space. Then the BAR decodes there and the bridges'
        forwarding is what stops it (R-BRG-006); None when it does not (the BAR's own rules)."""
        model = self.model_at(at)
        inst = model.manager._vm(vm).config_table.get(bdf)
        if inst is None or inst.parent is None:
            return None
        path: list[Instance] = []
        above: Instance | None = inst.parent
        while above is not None:
            if above.bdf is None:
                return None
            path.append(above)
            above = above.parent
        probes = [probe for bridge in path for probe in _forward_everything(vm, bridge, io)]
        read = Op(OpKind.IO_READ if io else OpKind.MMIO_READ, vm=vm, address=address, width=1)
        values = self.probe_values(at, [*probes, read])
        if values is None:
            return None
        seen, expected = values
        if _normal(seen[-1], self.info) != _normal(expected[-1], self.info):
            return None
        names = ", ".join(str(b.bdf) for b in path)
        return (
            f"{bdf} {'ROM' if bar == ROM_INDEX else f'BAR{bar}'} decodes it and bridge(s) {names} above it "
            f"forward it; with their windows opened to the whole space the implementation reaches it, so "
            f"its bridges' forwarding stops it"
        )

    def high_forwarding_stops(self, at: int, vm: int, address: int, bdf: Bdf, bar: int) -> str | None:
        """For a 64-bit BAR above 4 GiB below bridges that the implementation does not reach even with
        the bridges' windows opened (a bridge that drops a window's upper half opens it only to 4 GiB):
        a fresh function of the same type plugged on a free root bus, its BAR at an address above 4 GiB
        beside it, decoded alike by implementation and model shows that the type's 64-bit decode works,
        so the bridges above stop it (R-BRG-006); None when that does not hold or cannot be asked."""
        model = self.model_at(at)
        manager = model.manager
        inst = manager._vm(vm).config_table.get(bdf)
        spec = inst.dtype.bar(bar) if inst is not None and bar != ROM_INDEX else None
        if inst is None or inst.parent is None or spec is None or spec.kind is not BarKind.MEM64:
            return None
        base = self.base_of(model, vm, bdf, bar)
        if base < 1 << 32:
            return None
        taken = {b.bus for b in manager._vm(vm).config_table} | set(manager._vm(vm).bus_owner)
        free = next((n for n in range(255, 0, -1) if n not in taken), None)
        twin_base = base + (1 << 33) if base + (1 << 33) + spec.size <= 1 << 64 else base - (1 << 33)
        if free is None or twin_base < 1 << 32 or spec.size > 1 << 33:
            return None
        twin = Bdf(free, 0, 0)
        probes = [Op(OpKind.PLUG, vm=vm, bdf=twin, name=inst.dtype.name),
                  *_moved_bar_read(vm, twin, bar, twin_base, 0x2, twin_base + (address - base))]  # fmt: skip
        if self.probes_agree(at, probes) is not True:
            return None
        return (
            f"{bdf} BAR{bar} decodes it at {hex_value(base)} above 4 GiB; a fresh {inst.dtype.name} "
            f"plugged at {twin} on a root bus decodes {hex_value(twin_base)} as the model does, so the "
            f"type's 64-bit decode works and the bridges above {bdf} stop it"
        )

    def own_snapshot_refused(self, at: int, snapshot_and_restore: list[Op]) -> str | None:
        """The error the implementation gives restoring the snapshot it takes after ``at`` operations,
        when the model restores its own."""
        values = self.probe_values(at, snapshot_and_restore)
        if values is None:
            return None
        got, want = values[0][-1], values[1][-1]
        if isinstance(got, Observation) and got.error is not None and isinstance(want, Observation):
            return got.error if want.error is None else None
        return None

    def below_probes(self, index: int, vm: int, bridge: Bdf) -> list[Op]:
        """After a function reset of ``bridge`` (operation ``index``), which leaves what is below it
        unreachable: its bus numbers written back as they were, then the header of every instance
        below and the tables, so that what the reset did below shows (R-BRG-008)."""
        inst = self.model_at(index).manager._vm(vm).config_table.get(bridge)
        if inst is None or inst.dtype.bridge is None:
            return []
        numbers = int.from_bytes(inst.config[0x18:0x1C], "little")
        below = [lower.bdf for lower in inst.below() if lower.bdf is not None]
        if not below:
            return []
        out = [Op(OpKind.CONFIG_WRITE, vm=vm, bdf=bridge, address=0x18, width=4, value=numbers)]
        for bdf in below:
            out += self.function_probes(vm, bdf)
        return [*out, Op(OpKind.TABLES, vm=vm)]

    # ---------------------------------------------------------------- registers (R-REG-*)
    def register_rule(
        self, at: int, vm: int, bdf: Bdf, bar: int, offset: int, values: str, strict: bool = False
    ) -> tuple[tuple[str, ...], str] | None:
        """For a byte of a BAR that declares registers: the register, the bits and the R-REG rule.

        The register is read, byte by byte with its BAR moved to a free address, after each prefix
        of the trace; the operation after which the implementation first reads it otherwise is what
        went wrong, and the class of the bits that differ, or what that operation is, names the rule
        (:meth:`register_cause`). None for a BAR without registers; with ``strict``, also None unless
        such an operation is found (the register reads right once its BAR decodes afresh, so the
        routing is what to ask about)."""
        model = self.model_at(at)
        dtype = model.manager.device_type(vm, bdf)
        regmap = dtype.behaviour
        if not isinstance(regmap, RegisterMap) or bar not in regmap.bars:
            return None
        reg = regmap.at(bar, offset)
        if reg is None:
            return None if strict else (("R-REG-008",), (
                f"byte {offset:#x} of {bdf} BAR{bar} lies in no register of {dtype.name!r}: it reads zero "
                f"and writes to it are dropped ({values})"
            ))  # fmt: skip
        found = self.register_divergence(at, vm, bdf, reg)
        if found is None and strict:
            return None
        if found is None:
            lane = offset - reg.offset
            return ("R-REG-008",), (
                f"{self.bits_text(reg, 0xFF << 8 * lane)} read alone agree after every step, the access "
                f"that reads it here does not: each register an access covers gives the bytes it covers "
                f"({values})"
            )
        step, bits, want, got = found
        rid, why = self.register_cause(step, vm, bdf, regmap, reg, bits)
        shown = f"{self.bits_text(reg, bits)} read {got:#x} where the model reads {want:#x}"
        return (rid,), f"after step {step} ({self.trace[step].kind.value}), {shown}: {why}"

    @staticmethod
    def bits_text(reg: BarRegister, bits: int) -> str:
        """``register 'ISR' (BAR0+0x8) bit 3 (rw1c)``: the register and the classes of ``bits``."""
        classes = ", ".join(
            dict.fromkeys(reg.access_at(b).value for b in range(8 * reg.width) if bits >> b & 1)
        )
        return f"register {reg.name!r} ({reg.where()}) bit {bit_list(bits)} ({classes})"

    def register_probes(self, steps: int, vm: int, bdf: Bdf, reg: BarRegister) -> tuple[list[Op], int] | None:
        """Probes that read ``reg`` byte by byte after ``steps`` operations: its BAR moved to a free
        address with decode on; with the number of set-up probes. None when the function is absent
        then or no address is free."""
        model = self.model_at(steps)
        manager = model.manager
        if vm not in manager.vm_ids() or bdf not in manager._vm(vm).config_table:
            return None
        spec = manager.device_type(vm, bdf).bar(reg.bar)
        if spec is None:
            return None
        io = spec.kind is BarKind.IO
        free = _free_range(model, vm, io, spec.size, [])
        if free is None:
            return None
        register = 0x10 + 4 * reg.bar

        def write(offset: int, value: int, width: int = 4) -> Op:
            return Op(OpKind.CONFIG_WRITE, vm=vm, bdf=bdf, address=offset, width=width, value=value)

        setup = [write(0x04, 0, 2), write(register, free)]
        if spec.kind is BarKind.MEM64:
            setup.append(write(register + 4, 0))
        setup.append(write(0x04, 0x1 if io else 0x2, 2))
        read = OpKind.IO_READ if io else OpKind.MMIO_READ
        reads = [Op(read, vm=vm, address=free + reg.offset + k, width=1) for k in range(reg.width)]
        return setup + reads, len(setup)

    def register_divergence(
        self, at: int, vm: int, bdf: Bdf, reg: BarRegister
    ) -> tuple[int, int, int, int] | None:
        """(step, differing bits, model's value, implementation's value) of ``reg`` after the first
        prefix of the trace (up to ``at`` operations) whose end leaves them reading it differently."""
        key = (at, vm, bdf, reg.name)
        if key not in self._register_found:
            self._register_found[key] = self._register_divergence(at, vm, bdf, reg)
        return self._register_found[key]

    def _register_divergence(
        self, at: int, vm: int, bdf: Bdf, reg: BarRegister
    ) -> tuple[int, int, int, int] | None:
        for steps in range(1, at + 1):
            probes = self.register_probes(steps, vm, bdf, reg)
            if probes is None:
                continue
            ops, setup = probes
            both = self.probe_values(steps, ops)
            if both is None:
                continue
            seen, expected = _little(both[0][setup:]), _little(both[1][setup:])
            if seen is not None and expected is not None and seen != expected:
                return steps - 1, seen ^ expected, expected, seen
        return None

    def register_cause(
        self, step: int, vm: int, bdf: Bdf, regmap: RegisterMap, reg: BarRegister, bits: int
    ) -> tuple[str, str]:
        """(rule, why) for the operation at ``step`` after which ``bits`` of ``reg`` differ."""
        op = self.trace[step]
        classes = {reg.access_at(b) for b in range(8 * reg.width) if bits >> b & 1}
        first = reg.access_at((bits & -bits).bit_length() - 1)
        if op.kind in (OpKind.INIT, OpKind.PLUG, OpKind.RESET, OpKind.RESET_VM, OpKind.CREATE_VM):
            return "R-REG-010", f"registers take their reset values, {reg.name} {reg.reset:#x}"
        if op.kind in (OpKind.RESTORE, OpKind.RESTORE_VM):
            return "R-REG-011", "a restore brings back the registers the blob's pages hold"
        if op.kind not in (*_IO_KINDS, *_MMIO_KINDS):
            return "R-DT-003", f"a {op.kind.value} changed them, and only accesses to its BARs may"
        covered = self.register_coverage(step, vm, bdf, regmap, reg.bar)
        lanes = covered[reg.name][0] if reg.name in covered else 0
        if op.kind in (OpKind.IO_READ, OpKind.MMIO_READ):
            if bits & lanes and classes <= {Access.RC}:
                return "R-REG-006", "a read clears the rc bits it returns, and only those"
            return "R-REG-008", "a read changes no bit but the rc bits of the bytes it returns"
        determined = 0  # bits of reg the model's side effects set or cleared: they act last
        sources: list[str] = []
        for name, (_lanes, written) in covered.items():
            for effect in regmap.register(name).on_write:
                if effect.target != reg.name:
                    continue
                sources.append(name)
                if effect.action in (Action.SET, Action.CLEAR):
                    determined |= effect.mask if effect.acts(written) else 0
                else:
                    determined |= effect.mask & written
        if bits & ~determined & lanes and not bits & determined:
            return ACCESS_RULE[first], f"what a write does to {first.value} bits"
        if sources:
            names = ", ".join(dict.fromkeys(sources))
            return "R-REG-009", f"the side effects of the write to {names} on {reg.name}"
        return "R-REG-008", f"the write does not cover {reg.name} and no side effect of it acts there"

    def register_coverage(
        self, step: int, vm: int, bdf: Bdf, regmap: RegisterMap, bar: int
    ) -> dict[str, tuple[int, int]]:
        """Register name -> (bits the access at ``step`` covers, the value it writes there, zero
        elsewhere), as the model routes it."""
        op = self.trace[step]
        model = self.model_at(step)
        io = op.kind in _IO_KINDS
        covered: dict[str, tuple[int, int]] = {}
        if type(op.width) is not int or type(op.address) is not int:
            return covered
        value = op.value if op.kind in _WRITES and _fits(op.value, op.width) else 0
        base = self.base_of(model, vm, bdf, bar)
        for k in range(op.width):
            if self.target(model, vm, io, op.address + k) != (bdf, bar):
                continue
            offset = op.address + k - base
            reg = regmap.at(bar, offset)
            if reg is not None:
                lane = 8 * (offset - reg.offset)
                mask, written = covered.get(reg.name, (0, 0))
                covered[reg.name] = (mask | 0xFF << lane, written | (value >> 8 * k & 0xFF) << lane)
        return covered

    def register_state_rule(
        self, at: int, vm: int, instances: Sequence[Bdf]
    ) -> tuple[tuple[str, ...], str] | None:
        """The first register of ``instances`` the implementation holds otherwise than the model after
        ``at`` steps, blamed as :meth:`register_rule` does; None when all agree (or none has any)."""
        manager = self.model_at(at).manager
        for bdf in instances:
            if vm not in manager.vm_ids() or bdf not in manager._vm(vm).config_table:
                continue
            regmap = manager.device_type(vm, bdf).behaviour
            if not isinstance(regmap, RegisterMap):
                continue
            for reg in regmap.registers:
                probes = self.register_probes(at, vm, bdf, reg)
                if probes is None:
                    continue
                both = self.probe_values(at, probes[0])
                if both is not None and both[0][probes[1] :] != both[1][probes[1] :]:
                    return self.register_rule(at, vm, bdf, reg.bar, reg.offset, "read alone")
        return None

    def reveal_probes(
        self, at: int, vm: int, target: int, instances: Sequence[Bdf], revealed: dict[Op, Bdf]
    ) -> list[Op]:
        """Reads, in VM ``target``, of BAR data of ``instances`` of ``vm``: where the trace wrote (as
        the model routed each write) and the first bytes of every page the model holds, each BAR
        moved to a free address with decode on, so that data a blob carries shows even where nothing
        decodes any more. ``revealed`` receives each read's function."""
        model = self.model_at(at)
        written: dict[tuple[Bdf, int], set[tuple[int, int]]] = {}
        for bdf in instances:
            inst = model.manager._vm(vm).config_table.get(bdf)
            for bar, store in inst.data.memory.items() if inst is not None else ():
                for page, content in store.nonzero_pages():
                    first = next(k for k, byte in enumerate(content) if byte) & ~3
                    written.setdefault((bdf, bar), set()).add((page * PAGE_SIZE + first, 4))
        for index, op in enumerate(self.trace[:at]):
            if (
                op.vm != vm
                or op.kind not in (OpKind.IO_WRITE, OpKind.MMIO_WRITE)
                or not _fits(op.value, op.width)
            ):
                continue
            before = self.model_at(index)
            found = self.target(before, vm, op.kind is OpKind.IO_WRITE, op.address)
            if isinstance(found, tuple) and found[0] in instances and found[1] != ROM_INDEX:
                offset = op.address - self.base_of(before, vm, found[0], found[1])
                written.setdefault(found, set()).add((offset, op.width))
        out: list[Op] = []
        taken: list[range] = []
        for (bdf, bar), places in sorted(written.items(), key=repr):
            spec = model.manager.device_type(vm, bdf).bar(bar)
            if spec is None:
                continue
            io = spec.kind is BarKind.IO
            free = _free_range(model, vm, io, spec.size, taken)
            if free is None:
                continue
            taken.append(range(free, free + spec.size))
            register = 0x10 + 4 * bar

            def write(offset: int, value: int, width: int = 4, bdf: Bdf = bdf) -> Op:
                return Op(OpKind.CONFIG_WRITE, vm=target, bdf=bdf, address=offset, width=width, value=value)

            out += [write(0x04, 0, 2), write(register, free)]
            if spec.kind is BarKind.MEM64:
                out.append(write(register + 4, 0))
            out.append(write(0x04, 0x1 if io else 0x2, 2))
            read = OpKind.IO_READ if io else OpKind.MMIO_READ
            inside = sorted(
                {o for offset, width in places for o in range(offset, offset + width) if 0 <= o < spec.size}
            )
            for offset in inside:
                probe = Op(read, vm=target, address=free + offset, width=1)
                revealed[probe] = bdf
                out.append(probe)
            out.append(write(0x04, 0, 2))
        return out

    def owner(self, at: int, vm: int, read: Op) -> Bdf | None:
        """The function whose BAR a read's first byte reaches in the model of ``vm`` after ``at`` steps."""
        target = self.target(self.model_at(at), vm, read.kind is OpKind.IO_READ, read.address)
        return target[0] if isinstance(target, tuple) else None

    def last_change(self, at: int, vm: int, bdf: Bdf) -> int | None:
        """The last step before ``at`` that changed the model's configuration or data of ``bdf``."""

        def state(steps: int) -> object:
            manager = self.model_at(steps).manager
            if vm not in manager.vm_ids():
                return None
            inst = manager._vm(vm).config_table.get(bdf)
            if inst is None:
                return None
            pages = sorted((bar, tuple(store.nonzero_pages())) for bar, store in inst.data.memory.items())
            return bytes(inst.config), pages, bytes(inst.data.extra)

        for index in range(at - 1, 0, -1):
            if state(index + 1) != state(index):
                return index
        return None

    def data_probes(self, vm: int, target: int) -> list[Op]:
        """Reads, in VM ``target``, of every I/O and memory range the trace accesses in ``vm``."""
        out: list[Op] = []
        for op in self.trace:
            if op.vm == vm and op.kind in (*_IO_KINDS, *_MMIO_KINDS) and op.width in (1, 2, 4, 8):
                kind = OpKind.IO_READ if op.kind in _IO_KINDS else OpKind.MMIO_READ
                if kind is OpKind.IO_READ and op.width == 8:
                    continue
                out.append(Op(kind, vm=target, address=op.address, width=op.width))
        return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- helpers


def _little(reads: Sequence[Seen]) -> int | None:
    """The value of one-byte reads taken in ascending address order, or None if one is not a value."""
    value = 0
    for k, obs in enumerate(reads):
        if not isinstance(obs, Observation) or obs.value is None:
            return None
        value |= obs.value << 8 * k
    return value


def _touches(op: Op, start: int, stop: int) -> bool:
    """Whether an access's bytes overlap ``[start, stop)``."""
    width = op.width if type(op.width) is int else 0
    return type(op.address) is int and op.address < stop and op.address + width > start


Part = tuple[Bdf, int, int, int]
"""Configuration bytes an access reaches: (BDF, offset, length, index of its first byte in the access)."""


def _refused_write_rule(offsets: Iterable[int]) -> str:
    """The rule a refused configuration write of bytes ``offsets`` breaks: writes of read-only bits are
    performed and keep them (R-CFG-001), identity bytes included (R-CFG-002)."""
    return "R-CFG-002" if set(offsets) & set(IDENTITY_BYTES) else "R-CFG-001"


def config_parts(model: ModelAdapter, op: Op) -> list[Part]:
    """The configuration bytes an access reaches, as the model routes it before it runs: direct,
    through the 0xCFC window, or through ECAM (split per dword)."""
    manager = model.manager
    if type(op.width) is not int or type(op.address) is not int or op.width <= 0:
        return []
    if op.kind in _CONFIG_KINDS:
        valid = (
            op.bdf is not None
            and op.width in (1, 2, 4)
            and op.address >= 0
            and op.address % 4 + op.width <= 4
        )
        return [(op.bdf, op.address, op.width, 0)] if valid and op.address <= 0xFFF and op.bdf else []
    if op.vm not in manager.vm_ids() or not (op.kind in _IO_KINDS or op.kind in _MMIO_KINDS):
        return []
    if op.kind in _IO_KINDS:
        if (
            op.width not in (1, 2, 4)
            or not _touches(op, CFC, CFC + 4)
            or (op.address == CF8 and op.width == 4)
        ):
            return []
        selected = cam_selection(manager.cf8(op.vm), model.info.profile)
        if selected is None:
            return []
        bdf, register = selected
        start, stop = max(op.address, CFC), min(op.address + op.width, CFC + 4)
        return [(bdf, register + start - CFC, stop - start, start - op.address)]
    ecam = manager._vm(op.vm).ecam_base
    if ecam is None or op.width not in (1, 2, 4, 8):
        return []
    parts: list[Part] = []
    address, end = max(op.address, ecam), min(op.address + op.width, ecam + ECAM_SIZE)
    while address < end:
        chunk = min(end, (address & ~3) + 4) - address
        rel = address - ecam
        parts.append(
            (Bdf(rel >> 20, (rel >> 15) & 0x1F, (rel >> 12) & 0x7), rel & 0xFFF, chunk, address - op.address)
        )
        address += chunk
    return parts


def _platform(op: Op, model: ModelAdapter) -> bool:
    """Whether an access reaches 0xCF8-0xCFF or the ECAM window rather than BARs."""
    if op.kind in _IO_KINDS:
        return _touches(op, CF8, CFC + 4)
    return bool(config_parts(model, op))


def _rows(model: ModelAdapter, vm: int) -> frozenset[tuple[object, ...]]:
    """The model's I/O and memory rows of ``vm``: (space, base, size, BDF, BAR)."""
    tables = model.manager.tables(vm)
    rows = [("io", e.base, e.size, str(e.bdf), e.bar) for e in tables.io]
    rows += [("memory", e.base, e.size, str(e.bdf), e.bar) for e in tables.memory]
    return frozenset(rows)


def _covers(row: tuple[object, ...], io: bool, address: int) -> bool:
    base, size = int(str(row[1])), int(str(row[2]))
    return (row[0] == "io") == io and base <= address < base + size


def _free_below_4g(model: ModelAdapter, vm: int, size: int) -> int | None:
    """A size-aligned memory range below 4 GiB that nothing decodes and ECAM does not cover."""
    return _free_range(model, vm, False, size, [])


_FREE_CANDIDATES = {
    True: (0x1000, 0x2000, 0x4000, 0x6000, 0x8000, 0xA000),
    False: (0xE000_0000, 0xE800_0000, 0xC000_0000, 0x8000_0000, 0x4000_0000, 0x2000_0000),
}
"""Where a probe may move a BAR: I/O ports and memory below 4 GiB that platforms rarely claim."""


def _free_range(model: ModelAdapter, vm: int, io: bool, size: int, taken: Sequence[range]) -> int | None:
    """A size-aligned range that no BAR of ``vm`` decodes, clear of ECAM, 0xCF8-0xCFF and ``taken``."""
    if size > 1 << 31:
        return None
    ecam = model.manager._vm(vm).ecam_base
    busy = [
        range(int(str(r[1])), int(str(r[1])) + int(str(r[2])))
        for r in _rows(model, vm)
        if (r[0] == "io") == io
    ]
    busy += list(taken)
    if io:
        busy.append(range(CF8, CFC + 4))
    elif ecam is not None:
        busy.append(range(ecam, ecam + ECAM_SIZE))
    for candidate in _FREE_CANDIDATES[io]:
        start = candidate - candidate % size
        if start and not any(start < r.stop and r.start < start + size for r in busy):
            return start
    return None


def manager_decodes(model: ModelAdapter, vm: int, io: bool, address: int) -> bool:
    """Whether any BAR of ``vm`` decodes ``address`` in the model (overlap aside)."""
    return vm in model.manager.vm_ids() and any(_covers(r, io, address) for r in _rows(model, vm))


def _enable_rule(dtype: DeviceType, bar: int) -> str:
    if bar == ROM_INDEX:
        return "R-DEC-003"
    spec = dtype.bar(bar)
    return "R-DEC-001" if spec is not None and spec.kind is BarKind.IO else "R-DEC-002"


def _stopped(
    dtype: DeviceType,
    config: bytes,
    index: int,
    base: int,
    size: int,
    address: int,
    name: str,
    profile: Profile,
) -> tuple[str, str] | None:
    """Why a BAR whose registers cover ``address`` (or would, but for its limit or upper dword) does
    not decode it in the model; None when its registers do not point there."""
    bar = dtype.bar(index) if index != ROM_INDEX else None
    io = bar is not None and bar.kind is BarKind.IO
    limit = 1 << 16 if io else (1 << 64 if bar is not None and bar.kind is BarKind.MEM64 else 1 << 32)
    covers = base <= address < base + size
    wrapped = base + size > limit and (base % limit) <= address < (base % limit) + size
    truncated = (
        bar is not None
        and bar.kind is BarKind.MEM64
        and base >= 1 << 32
        and ((base & 0xFFFF_FFFF) <= address < (base & 0xFFFF_FFFF) + size)
    )
    if not (covers or wrapped or truncated):
        return None
    at = f"{name} is programmed at {hex_value(base)}"
    if truncated and not covers:
        return "R-BAR-005", f"{at}, a 64-bit address whose upper dword counts"
    if not decode_enabled(config, dtype, index):
        if index == ROM_INDEX:
            return "R-DEC-003", f"{at} but the ROM's enable bit or command bit 1 is clear"
        bit = 0 if io else 1
        return _enable_rule(dtype, index), f"{at} but command bit {bit} is clear"
    if base == 0:
        return "R-DEC-004", f"{at}: address zero does not decode"
    if base + size > limit or wrapped:
        return "R-DEC-006", f"{at}, which does not fit below {hex_value(limit)}"
    return "R-DEC-005", f"{at} but decodes elsewhere (it was written while decoding)"


def _start_rule(op: Op, dtype: DeviceType, bar: int, moved: bool, before: ModelAdapter) -> str:
    """The rule by which operation ``op`` made a BAR begin (or move) decoding."""
    if op.kind is OpKind.RESTORE:
        return "R-SR-002"
    if op.kind is OpKind.RESTORE_VM:
        return "R-SR-006"
    parts = config_parts(before, op) if op.kind in _WRITES else []
    touched = {o for _, start, length, _ in parts for o in range(start, start + length)}
    if touched & {0x04, 0x05}:
        return _enable_rule(dtype, bar)
    if bar == ROM_INDEX:
        return "R-DEC-005" if moved else "R-DEC-003"
    spec = dtype.bar(bar)
    register = range(
        0x10 + 4 * bar, 0x10 + 4 * bar + (8 if spec is not None and spec.kind is BarKind.MEM64 else 4)
    )
    if spec is not None and spec.kind is BarKind.MEM64 and touched and not set(register) <= touched:
        return "R-DEC-007"
    return "R-DEC-005"


_STOP_RULE = {
    OpKind.RESET: "R-RST-001", OpKind.RESET_VM: "R-RST-003", OpKind.UNPLUG: "R-HP-002",
    OpKind.RESTORE: "R-SR-002", OpKind.RESTORE_VM: "R-SR-006", OpKind.DESTROY_VM: "R-DS-002",
}  # fmt: skip
"""Lifecycle operations that stop a BAR decoding, and the rule by which they do."""


def topology_rule(
    expected: Sequence[Sequence[object]], observed: Sequence[Sequence[object]]
) -> tuple[tuple[str, ...], str]:
    """Bus trees that disagree: where an instance sits - its bridge or root bus, device, function,
    type - is the tree (R-BRG-002); the numbers its bus and a bridge's secondary bus are reached by
    are routing (R-BRG-003)."""

    def place(row: Sequence[object]) -> tuple[object, ...]:
        return tuple(row[1:6])

    for k, (want, got) in enumerate(itertools.zip_longest(expected, observed)):
        if want is None or got is None or place(want) != place(got):
            shown = f"expected {format_topology_row(want) if want else 'none'}, got " \
                    f"{format_topology_row(got) if got else 'none'}"  # fmt: skip
            return ("R-BRG-002",), f"entry {k} of the bus tree sits elsewhere: {shown}"
    for k, (want, got) in enumerate(zip(expected, observed, strict=True)):
        if tuple(want) != tuple(got):
            shown = f"expected {format_topology_row(want)}, got {format_topology_row(got)}"
            return ("R-BRG-003",), f"entry {k} of the bus tree is reached by other bus numbers: {shown}"
    return ("R-BRG-010",), "the bus trees differ in nothing the rows compare"


def _below_concerned(bridge: Instance, bdf: Bdf, symptom: _Symptom) -> bool:
    """Whether ``symptom`` may show what ``bridge`` (at ``bdf``) forwards: something below it has a
    decoding BAR, and when tables disagree, not only in rows of the bridge's own BARs (those decode on
    its primary side by the rules of R-DEC-*)."""
    if not any(lower.mappings for lower in bridge.below()):
        return False
    if (
        symptom.op.kind is OpKind.TABLES
        and symptom.observed is not None
        and symptom.observed.tables is not None
    ):
        expected = {tuple(row) for row in symptom.expected.tables or ()}
        observed = {tuple(row) for row in symptom.observed.tables}
        return any(row[0] == "config" or row[3] != str(bdf) for row in expected ^ observed)
    return True


def not_forwarded(
    model: ModelAdapter, vm: int, io: bool, address: int, only: tuple[str, int] | None = None
) -> str | None:
    """Why no BAR is reached at ``address`` in the model although one decodes it: a bridge above
    that BAR does not forward the address (R-BRG-006). ``only``: that (BDF, BAR) alone."""
    manager = model.manager
    for inst in manager._vm(vm).tree():
        if inst.parent is None:
            continue
        for index, mapping in sorted(inst.mappings.items()):
            spec = inst.dtype.bar(index) if index != ROM_INDEX else None
            is_io = spec is not None and spec.kind is BarKind.IO
            if is_io != io or only not in (None, (str(inst.bdf), index)):
                continue
            if not mapping.base <= address < mapping.base + mapping.size or mapping.forwards(address):
                continue
            bridge: Instance | None = inst.parent
            while bridge is not None and address in _Ranges(manager._forwarding(bridge)[0 if io else 1]):
                bridge = bridge.parent
            name = f"{inst.bdf if inst.bdf is not None else 'unreachable ' + inst.dtype.name} " \
                   f"{'ROM' if index == ROM_INDEX else f'BAR{index}'}"  # fmt: skip
            stop = "a bridge above it" if bridge is None else f"bridge {bridge.bdf or bridge.dtype.name}"
            return f"{name} decodes it at {hex_value(mapping.base)}, but {stop} does not forward it"
    return None


class _Ranges:
    """Membership in half-open ranges."""

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        self.ranges = tuple(ranges)

    def __contains__(self, value: object) -> bool:
        return type(value) is int and any(start <= value < stop for start, stop in self.ranges)


def _moved_bar_read(vm: int, bdf: Bdf, index: int, base: int, command: int, read_at: int) -> list[Op]:
    """Probes that move memory BAR ``index`` of ``bdf`` to ``base`` (both dwords, memory decode off
    while it moves, then ``command``) and read the byte at ``read_at``."""

    def write(offset: int, width: int, value: int) -> Op:
        return Op(OpKind.CONFIG_WRITE, vm=vm, bdf=bdf, address=offset, width=width, value=value)

    register = 0x10 + 4 * index
    return [write(0x04, 2, command & ~0x2), write(register, 4, base & 0xFFFF_FFFF),
            write(register + 4, 4, base >> 32), write(0x04, 2, command),
            Op(OpKind.MMIO_READ, vm=vm, address=read_at, width=1)]  # fmt: skip


def _forward_everything(vm: int, bridge: Instance, io: bool) -> list[Op]:
    """Configuration writes that make ``bridge`` forward the whole I/O or memory space: its window
    opened from 0 to the top (upper halves included), the space's command bit set, and for I/O ISA
    enable cleared (R-BRG-005, R-BRG-006, R-BRG-011)."""
    assert bridge.bdf is not None
    bdf = bridge.bdf

    def write(offset: int, width: int, value: int) -> Op:
        return Op(OpKind.CONFIG_WRITE, vm=vm, bdf=bdf, address=offset, width=width, value=value)

    command = int.from_bytes(bridge.config[0x04:0x06], "little")
    if io:
        control = int.from_bytes(bridge.config[0x3E:0x40], "little")
        return [write(0x1C, 1, 0x00), write(0x1D, 1, 0xF0), write(0x30, 4, 0xFFFF_0000),
                write(0x3E, 2, control & ~0x4), write(0x04, 2, command | 0x1)]  # fmt: skip
    return [write(0x20, 4, 0xFFF0_0000), write(0x24, 4, 0xFFF0_0000), write(0x28, 4, 0),
            write(0x2C, 4, 0xFFFF_FFFF), write(0x04, 2, command | 0x2)]  # fmt: skip


def _bridge_write_rule(op: Op, row: tuple[object, ...], before: ModelAdapter) -> str | None:
    """The bridge rule by which configuration write ``op`` to a bridge above the BAR of ``row``
    changed whether it is reached: secondary bus reset (R-BRG-007), bus numbers (R-BRG-003), or
    forwarding (R-BRG-006); None when it writes no bridge."""
    if op.kind not in _WRITES or op.vm not in before.manager.vm_ids():
        return None
    for bdf, start, length, skip in config_parts(before, op):
        inst = before.manager._vm(op.vm).config_table.get(bdf)
        if inst is None or inst.dtype.bridge is None or str(bdf) == row[3]:
            continue
        touched = set(range(start, start + length))
        if 0x3E in touched and type(op.value) is int:
            written = op.value >> 8 * (skip + 0x3E - start) & 0xFF
            if written & _BUS_RESET_BIT and not inst.config[0x3E] & _BUS_RESET_BIT:
                return "R-BRG-007"
        if touched & _BUS_NUMBERS:
            return "R-BRG-003"
        if touched & _FORWARDING_BYTES:
            return "R-BRG-006"
    return None


def _stop_rule(op: Op, row: tuple[object, ...], before: ModelAdapter) -> str:
    """The rule by which operation ``op`` made the BAR of ``row`` stop decoding where it did."""
    rule = _STOP_RULE.get(op.kind)
    if rule is not None:
        return rule
    bridged = _bridge_write_rule(op, row, before)
    if bridged is not None:
        return bridged
    parts = config_parts(before, op) if op.kind in _WRITES else []
    touched = {o for _, start, length, _ in parts for o in range(start, start + length)}
    bar = int(str(row[4]))
    if touched & {0x04, 0x05} or (bar == ROM_INDEX and 0x30 in touched):
        return "R-DEC-003" if bar == ROM_INDEX else ("R-DEC-001" if row[0] == "io" else "R-DEC-002")
    return "R-DEC-005"


def _values(seen: tuple[list[Seen], list[Seen]] | None) -> tuple[int, int] | None:
    """(implementation, model) values of a single read probe, when both are values."""
    if seen is None:
        return None
    got, want = seen[0][0], seen[1][0]
    if not isinstance(got, Observation) or not isinstance(want, Observation):
        return None
    if got.value is None or want.value is None:
        return None
    return got.value, want.value


def _shown(obs: Seen, op: Op) -> str:
    return obs if isinstance(obs, str) else format_observation(obs, op)


def _symptom_text(symptom: _Symptom) -> str:
    """``OPERATION: expected X, got Y`` with numbers in hex."""
    got = (
        f"raised {symptom.crash}"
        if symptom.observed is None
        else format_observation(symptom.observed, symptom.op)
    )
    return f"{format_op(symptom.op)} expected {format_observation(symptom.expected, symptom.op)}, got {got}"
