"""The trace language: operations in, observations out, one JSON object per line.

``spec/formats/trace.md`` is the one-page description. A trace file is a
sequence of lines, each an operation with, optionally, the observation it
must produce (``expect``). Parsing is strict: a malformed line raises
:class:`TraceError` naming the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from vpcid.conformance.inputs import MIB, parse_json, read_text, validate
from vpcid.model import Bdf, ProfileError, VpcidError
from vpcid.model.manager import DEFAULT_ECAM_BASE, TopologyNode
from vpcid.model.profile import Profile

TRACE_LIMIT = 256 * MIB
"""Largest trace file read: blobs of large BARs travel as hex."""
HEADER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["vpcid-trace"],
    "properties": {
        "vpcid-trace": {"type": "integer", "const": 1, "description": "format version 1"},
        "profile": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "an object of variant axis: value strings (spec/variants.md)",
        },
        "notes": {"type": "object", "description": "an object of free-form notes"},
    },
    "additionalProperties": False,
    "description": 'a header {"vpcid-trace": 1, "profile": {...}, "notes": {...}}',
}
"""The header line of a trace (spec/formats/trace.md)."""


class TraceError(VpcidError, ValueError):
    """A trace line, vector or observation does not follow the trace language."""

    kind = "bad-trace"


class OpKind(StrEnum):
    """Every operation of the trace language."""

    INIT = "init"
    CREATE_VM = "create_vm"
    DESTROY_VM = "destroy_vm"
    PLUG = "plug"
    UNPLUG = "unplug"
    CONFIG_READ = "config_read"
    CONFIG_WRITE = "config_write"
    IO_READ = "io_read"
    IO_WRITE = "io_write"
    MMIO_READ = "mmio_read"
    MMIO_WRITE = "mmio_write"
    RESET = "reset"
    RESET_VM = "reset_vm"
    SAVE = "save"
    RESTORE = "restore"
    SNAPSHOT = "snapshot"
    RESTORE_VM = "restore_vm"
    TABLES = "tables"
    DEFINE_TYPE = "define_type"
    SET_ECAM_BASE = "set_ecam_base"
    TOPOLOGY = "topology"


GUEST_VIEW = frozenset(
    {OpKind.INIT, OpKind.CONFIG_READ, OpKind.CONFIG_WRITE, OpKind.IO_READ, OpKind.IO_WRITE,
     OpKind.MMIO_READ, OpKind.MMIO_WRITE}
)  # fmt: skip
"""What a guest can do to a fixed machine: the least an adapter supports."""
FULL = frozenset(OpKind) - {OpKind.DEFINE_TYPE, OpKind.SET_ECAM_BASE, OpKind.TOPOLOGY}
"""The whole data-manager API."""
EXTENSIONS = frozenset({OpKind.DEFINE_TYPE, OpKind.SET_ECAM_BASE})
"""Operations an adapter may add to what it supports: ``define_type`` (device types from files) and
``set_ecam_base`` (the platform moves the ECAM window, R-ECAM-005)."""
INTROSPECTION = frozenset({OpKind.TOPOLOGY})
"""Introspection an adapter may add, full-API or guest-view: ``topology``, the bus tree (R-BRG-010).
Apart from :data:`EXTENSIONS` so that an adapter declaring ``FULL | EXTENSIONS`` claims no more."""

_FIELDS: dict[OpKind, tuple[str, ...]] = {
    OpKind.INIT: (),
    OpKind.CREATE_VM: ("vm", "ecam_base"),
    OpKind.DESTROY_VM: ("vm",),
    OpKind.PLUG: ("vm", "bdf", "type"),
    OpKind.UNPLUG: ("vm", "bdf"),
    OpKind.CONFIG_READ: ("vm", "bdf", "offset", "width"),
    OpKind.CONFIG_WRITE: ("vm", "bdf", "offset", "width", "value"),
    OpKind.IO_READ: ("vm", "port", "width"),
    OpKind.IO_WRITE: ("vm", "port", "width", "value"),
    OpKind.MMIO_READ: ("vm", "address", "width"),
    OpKind.MMIO_WRITE: ("vm", "address", "width", "value"),
    OpKind.RESET: ("vm", "bdf"),
    OpKind.RESET_VM: ("vm",),
    OpKind.SAVE: ("vm", "bdf", "slot"),
    OpKind.RESTORE: ("vm", "bdf", "slot|blob"),
    OpKind.SNAPSHOT: ("vm", "slot"),
    OpKind.RESTORE_VM: ("vm", "slot|blob"),
    OpKind.TABLES: ("vm",),
    OpKind.DEFINE_TYPE: ("definition",),
    OpKind.SET_ECAM_BASE: ("vm", "ecam_base"),
    OpKind.TOPOLOGY: ("vm",),
}
"""Required fields per kind; ``a|b`` means exactly one of them."""
_OPTIONAL = {OpKind.CREATE_VM: {"ecam_base"}}


class Op(NamedTuple):
    """One operation. ``address`` is the offset, port or address of an access.

    A named tuple rather than a frozen dataclass: the engines build hundreds of
    thousands per second, and tuple construction is three times cheaper.
    """

    kind: OpKind
    vm: int = 0
    bdf: Bdf | None = None
    address: int = 0
    width: int = 0
    value: int = 0
    name: str = ""
    """Device type name (plug, define_type) or slot name (save, restore, snapshot, restore_vm)."""
    data: bytes = b""
    """Literal blob or snapshot for restore/restore_vm when no slot is named; for define_type the
    definition as canonical JSON (spec/formats/device-type.md)."""
    ecam_base: int | None = DEFAULT_ECAM_BASE

    def to_json(self) -> dict[str, Any]:
        """The operation as a JSON object of the trace language."""
        out: dict[str, Any] = {"op": self.kind.value}
        for name in _FIELDS[self.kind]:
            if name == "slot|blob":
                if self.name:
                    out["slot"] = self.name
                else:
                    out["blob"] = self.data.hex()
            elif name == "bdf":
                out["bdf"] = str(self.bdf)
            elif name == "definition":
                out["definition"] = json.loads(self.data)
            elif name in ("type", "slot"):
                out[name] = self.name
            elif name in ("offset", "port", "address"):
                out[name] = self.address
            else:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_json(cls, obj: object) -> Op:
        """Parse one operation object strictly."""
        if not isinstance(obj, Mapping) or not isinstance(obj.get("op"), str):
            raise TraceError("an operation is an object with an 'op' string")
        try:
            kind = OpKind(obj["op"])
        except ValueError:
            raise TraceError(f"unknown operation {obj['op']!r}") from None
        required = _FIELDS[kind]
        allowed = {"op", "expect"} | {n for r in required for n in r.split("|")}
        extra = set(obj) - allowed
        if extra:
            raise TraceError(f"{kind.value}: unexpected field(s) {', '.join(sorted(extra))}")
        args: dict[str, Any] = {"kind": kind}
        for spec in required:
            present = [n for n in spec.split("|") if n in obj]
            if len(present) != 1:
                if spec in _OPTIONAL.get(kind, set()):
                    continue
                raise TraceError(f"{kind.value}: needs exactly one of {spec.replace('|', ', ')}")
            key = present[0]
            raw = obj[key]
            if key == "bdf":
                if not isinstance(raw, str):
                    raise TraceError(f"{kind.value}: bdf is a string bb:dd.f")
                try:
                    args["bdf"] = Bdf.parse(raw)
                except VpcidError as exc:
                    raise TraceError(f"{kind.value}: {exc}") from None
            elif key in ("type", "slot"):
                if not isinstance(raw, str) or not raw:
                    raise TraceError(f"{kind.value}: {key} is a non-empty string")
                args["name"] = raw
            elif key == "blob":
                try:
                    args["data"] = bytes.fromhex(raw) if isinstance(raw, str) else None
                except ValueError:
                    args["data"] = None
                if args["data"] is None:
                    raise TraceError(f"{kind.value}: blob is a hexadecimal string")
            elif key == "definition":
                if not isinstance(raw, Mapping):
                    raise TraceError(f"{kind.value}: definition is a device-type object")
                args["data"] = canonical_json(raw)
                args["name"] = raw["name"] if isinstance(raw.get("name"), str) else ""
            elif key == "ecam_base":
                if raw is not None and (type(raw) is not int):
                    raise TraceError(f"{kind.value}: ecam_base is an integer or null")
                args["ecam_base"] = raw
            else:
                if type(raw) is not int:
                    raise TraceError(f"{kind.value}: {key} is an integer, got {raw!r}")
                args["address" if key in ("offset", "port", "address") else key] = raw
        return cls(**args)


_new_tuple = tuple.__new__


def canonical_json(value: object) -> bytes:
    """One spelling of a JSON value: sorted keys, no spaces (define_type's ``data``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def define_type_op(definition: Mapping[str, Any]) -> Op:
    """The ``define_type`` operation for a device-type object (typefile.type_json)."""
    return Op(OpKind.DEFINE_TYPE, name=str(definition.get("name", "")), data=canonical_json(definition))


def new_op(
    kind: OpKind, vm: int = 0, bdf: Bdf | None = None, address: int = 0, width: int = 0, value: int = 0
) -> Op:
    """``Op(kind, vm, bdf, address, width, value)``, built as a plain tuple.

    Skips the named tuple's argument handling, which costs more than the
    tuple itself; the engines' generators build one operation per step.
    """
    return _new_tuple(Op, (kind, vm, bdf, address, width, value, "", b"", DEFAULT_ECAM_BASE))


TopologyRow = tuple[str | None, int | None, int | None, int, int, str, int | None]
"""One instance in a ``topology`` observation (R-BRG-010): its BDF now (``bb:dd.f``) or None, the
index of its bridge in the listing or None, its root bus or None, device, function, type name, and
for a bridge the number its secondary bus is reached by, else None."""


class Observation(NamedTuple):
    """What an operation produced: a read value, an error kind, a blob digest, tables or the bus tree
    (a named tuple)."""

    value: int | None = None
    error: str | None = None
    digest: str | None = None
    tables: tuple[tuple[Any, ...], ...] | None = None
    topology: tuple[TopologyRow, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        if self.value is not None:
            return {"value": self.value}
        if self.digest is not None:
            return {"digest": self.digest}
        if self.tables is not None:
            return {"tables": [list(row) for row in self.tables]}
        if self.topology is not None:
            return {"topology": [list(row) for row in self.topology]}
        return {"ok": True}

    @classmethod
    def from_json(cls, obj: object) -> Observation:
        """Parse one observation object strictly."""
        if not isinstance(obj, Mapping) or len(obj) != 1:
            raise TraceError("an observation is an object with exactly one field")
        ((key, raw),) = obj.items()
        if key == "ok" and raw is True:
            return cls()
        if key == "value" and type(raw) is int and raw >= 0:
            return cls(value=raw)
        if key == "error" and isinstance(raw, str) and raw:
            return cls(error=raw)
        if key == "digest" and isinstance(raw, str) and raw:
            return cls(digest=raw)
        if key == "tables" and isinstance(raw, list) and all(isinstance(r, list) for r in raw):
            return cls(tables=tuple(tuple(r) for r in raw))
        if key == "topology" and isinstance(raw, list):
            return cls(topology=tuple(_topology_row(r) for r in raw))
        raise TraceError(f"not an observation: {dict(obj)!r}")

    def __str__(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    def same(self, other: object) -> bool:
        """Equality as observations (a named tuple would also equal a plain tuple)."""
        return type(other) is Observation and tuple.__eq__(self, other) is True


OK = Observation()


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def topology_rows(nodes: Iterable[TopologyNode]) -> tuple[TopologyRow, ...]:
    """A data manager's bus tree (``topology()``, in its tree order) as ``topology`` rows (R-BRG-010)."""
    return tuple(
        (None if n.bdf is None else str(n.bdf), n.parent, n.root_bus, n.device, n.function, n.type_name,
         n.secondary)
        for n in nodes
    )  # fmt: skip


def _topology_row(raw: object) -> TopologyRow:
    """One row of a ``topology`` observation, checked field by field (spec/formats/trace.md)."""
    if not isinstance(raw, list) or len(raw) != 7:
        raise TraceError(f"a topology row is a list of 7 fields, got {raw!r}")
    bdf, parent, root, device, function, name, secondary = raw
    if not (
        (bdf is None or isinstance(bdf, str))
        and (parent is None or _is_count(parent))
        and (root is None or _is_count(root))
        and _is_count(device)
        and _is_count(function)
        and isinstance(name, str)
        and (secondary is None or _is_count(secondary))
    ):
        raise TraceError(
            f"not a topology row: {raw!r} (bdf or null, parent or null, root bus or null, device, "
            "function, type, secondary or null)"
        )
    return (bdf, parent, root, device, function, name, secondary)


def value_observation(value: int) -> Observation:
    """``Observation(value)``, built as a plain tuple (see :func:`new_op`)."""
    return _new_tuple(Observation, (value, None, None, None, None))


def blob_digest(blob: bytes) -> str:
    """How a saved blob or snapshot is observed: its digest field, the last 32 bytes, in hex.

    Blobs are canonical (R-BLOB-004) and their digests cover every byte
    (R-BLOB-001, R-BLOB-006), so equal digests mean equal blobs.
    """
    return bytes(blob[-32:]).hex()


@dataclass(frozen=True, slots=True)
class Step:
    """A trace line: an operation and, optionally, what it must produce."""

    op: Op
    expect: Observation | None = None
    line: int = 0

    def to_json(self) -> dict[str, Any]:
        out = self.op.to_json()
        if self.expect is not None:
            out["expect"] = self.expect.to_json()
        return out


@dataclass(frozen=True)
class TraceHeader:
    """First line of a trace file: format version, profile, free-form notes."""

    profile: dict[str, str] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"vpcid-trace": 1, "profile": self.profile, "notes": self.notes}


def parse_lines(lines: Iterable[str]) -> tuple[TraceHeader, list[Step]]:
    """Parse a trace; the header line is optional; blank lines and ``#`` lines are skipped.

    Each line goes through the bounded JSON reader (depth and integer limits);
    the header is checked against :data:`HEADER_SCHEMA` and its profile names
    only known axes and values (R-VAR-003).
    """
    header = TraceHeader()
    steps: list[Step] = []
    for number, text in enumerate(lines, start=1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        where = f"line {number}"
        obj = parse_json(text, where, TraceError, lines=False)
        if isinstance(obj, dict) and "vpcid-trace" in obj:
            if steps:
                raise TraceError(
                    f"{where}: bad header: it must come before any operation; move it to the top"
                )
            header = _header(obj, where)
            continue
        try:
            op = Op.from_json(obj)
            expect = Observation.from_json(obj["expect"]) if "expect" in obj else None
        except TraceError as exc:
            raise TraceError(f"{where}: {exc}") from None
        steps.append(Step(op, expect, number))
    return header, steps


def _header(obj: dict[str, Any], where: str) -> TraceHeader:
    validate(obj, HEADER_SCHEMA, f"{where}: bad header", TraceError)
    profile: dict[str, str] = obj.get("profile", {})
    try:
        Profile.from_mapping(profile)
    except ProfileError as exc:
        raise TraceError(f"{where}: bad header: at profile: {exc}") from None
    return TraceHeader(dict(profile), dict(obj.get("notes", {})))


def read_trace(path: Path) -> tuple[TraceHeader, list[Step]]:
    """Read a trace file through the bounded reader; errors name the file and the line."""
    text = read_text(path, TRACE_LIMIT, TraceError)
    try:
        return parse_lines(text.splitlines())
    except TraceError as exc:
        raise TraceError(f"{path}: {exc}") from None


def dump_lines(header: TraceHeader, steps: Iterable[Step]) -> Iterator[str]:
    """Serialise a trace, one JSON object per line."""
    yield json.dumps(header.to_json(), sort_keys=True)
    for step in steps:
        yield json.dumps(step.to_json(), sort_keys=True)


def write_trace(path: Path, header: TraceHeader, steps: Iterable[Step]) -> None:
    """Write a trace file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(dump_lines(header, steps)) + "\n", encoding="utf-8")
