"""Golden vectors: cases written out with the model's expected observations (spec/formats/vectors.md).

``DIR/index.json`` lists every case with the SHA-256 of its files;
``DIR/<group>/<case>/manifest.json`` describes one case and its outcomes
(the observations expected under each combination of the variant axes the
case is sensitive to); ``trace.jsonl`` holds its operations with the default
profile's expectations. A runner in any language can use them; ours ends
with an audit line accounting for every vector.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from vpcid.adapters.base import Adapter, AdapterInfo, FixedMachine
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.certify import applicable_cases, observations
from vpcid.conformance.engine import format_observation, format_op
from vpcid.conformance.inputs import (
    MIB,
    confined,
    decode_text,
    parse_json,
    read_input,
    read_json_file,
    validate,
)
from vpcid.conformance.trace import (
    EXTENSIONS,
    FULL,
    Observation,
    Op,
    OpKind,
    Step,
    TraceError,
    TraceHeader,
    dump_lines,
)
from vpcid.conformance.trace import parse_lines as parse_trace_lines
from vpcid.model import DeviceType
from vpcid.model.profile import AXES, Profile

FORMAT = 1


def _sensitive_axes(ops: Sequence[Op], machine: FixedMachine | None = None) -> list[str]:
    """Axes whose value changes the observations of ``ops``, closed over interactions.

    An axis joins when changing it alters the observations in some combination
    of the axes already found (starting from the default profile), until no
    more join. Two axes that matter only together, and neither alone nor with
    an axis already found, are not detected; no case in the library has such a
    pair (tests/test_vectors.py checks every case under every profile value).
    """
    sensitive: list[str] = []
    grew = True
    while grew:
        grew = False
        values = [[v.value for v in AXES[a]] for a in sensitive]
        contexts = [dict(zip(sensitive, combo, strict=True)) for combo in itertools.product(*values)]
        for axis, enum in AXES.items():
            if axis in sensitive:
                continue
            if any(_differs(ops, context, axis, [v.value for v in enum], machine) for context in contexts):
                sensitive.append(axis)
                grew = True
    return sensitive


def _differs(ops: Sequence[Op], context: dict[str, str], axis: str, values: list[str],
             machine: FixedMachine | None = None) -> bool:  # fmt: skip
    seen = []
    for value in values:
        model = ModelAdapter(profile=Profile.from_mapping({**context, axis: value}), machine=machine)
        seen.append(observations(model, ops))
    return any(s != seen[0] for s in seen[1:])


def _outcomes(
    ops: Sequence[Op], machine: FixedMachine | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """The axes ``ops`` are sensitive to, and the observations under each combination of them."""
    sensitive = _sensitive_axes(ops, machine)
    outcomes = []
    for combo in itertools.product(*(list(AXES[a]) for a in sensitive)):
        when = {a: v.value for a, v in zip(sensitive, combo, strict=True)}
        seen = observations(ModelAdapter(profile=Profile.from_mapping(when), machine=machine), ops)
        outcomes.append({"when": when, "observations": [_obs_json(o) for o in seen]})
    return sensitive, outcomes


def machine_description(machine: FixedMachine) -> dict[str, Any]:
    """Everything a fixed machine's vectors assume about it, as JSON (compared for equality by runners).

    The VM, the ECAM window, each device's BDF, type name and fingerprint,
    the platform's own functions and ranges, and the opaque BAR ranges the
    cases were generated to avoid.
    """

    def ranges(rs: Sequence[range]) -> list[list[int]]:
        return [[r.start, r.stop] for r in rs]

    return {
        "vm": machine.vm,
        "ecam_base": machine.ecam_base,
        "devices": [[str(bdf), dtype.name, dtype.fingerprint().hex()] for bdf, dtype in machine.devices],
        "reserved_functions": [str(b) for b in machine.reserved_functions],
        "reserved_io": ranges(machine.reserved_io),
        "reserved_memory": ranges(machine.reserved_memory),
        "opaque": [[str(o.bdf), o.bar, o.offsets.start, o.offsets.stop] for o in machine.opaque],
    }


def vector_name(label: str) -> str:
    """The folder name of the case labelled ``group/case@type:bdf`` (its vector ID without the group)."""
    return label.split("/", 1)[1].replace("@", "--").replace(":", "-").replace(".", "-")


def _chosen(label: str, vector_id: str, patterns: Sequence[str]) -> bool:
    return not patterns or any(fnmatchcase(label, p) or fnmatchcase(vector_id, p) for p in patterns)


def _obs_json(obs: Observation | str) -> dict[str, Any]:
    if isinstance(obs, str):
        raise TraceError(f"the model crashed while generating vectors: {obs}")
    return obs.to_json()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate(
    directory: Path,
    machine: FixedMachine | None = None,
    types: Sequence[DeviceType] = (),
    patterns: Sequence[str] = (),
) -> int:
    """Write every case (with ``patterns``, those whose label or vector ID one of the shell patterns
    matches); return the number written.

    Without ``machine``: the full-API cases (default targets and system
    cases), plus the device cases of ``types`` (``--types``), whose traces
    define them first (``define_type``). With it: the guest-view cases of
    that fixed machine's devices, each manifest describing the machine
    (:func:`machine_description`).
    """
    operations = FULL | EXTENSIONS if machine is None else FULL
    info = AdapterInfo("vectors", Profile(), operations=operations, machine=machine)
    described = machine_description(machine) if machine is not None else None
    index: list[dict[str, Any]] = []
    chosen = [
        (label, case, ops, name)
        for label, case, ops in applicable_cases(info, types)
        if _chosen(label, f"{case.group}/{(name := vector_name(label))}", patterns)
    ]
    if patterns and not chosen:
        raise TraceError(f"no case matches {', '.join(patterns)} (patterns match case labels or vector IDs)")
    for label, case, ops, name in chosen:
        folder = directory / case.group / name
        folder.mkdir(parents=True, exist_ok=True)
        axes, outcomes = _outcomes(ops, machine)
        default = next(
            o for o in outcomes if all(AXES[a](v) is next(iter(AXES[a])) for a, v in o["when"].items())
        )
        steps = [
            Step(op, Observation.from_json(obs)) for op, obs in zip(ops, default["observations"], strict=True)
        ]
        (folder / "trace.jsonl").write_text(
            "\n".join(dump_lines(TraceHeader(notes={"case": label}), steps)) + "\n", encoding="utf-8"
        )
        manifest = {
            "format": FORMAT,
            "id": f"{case.group}/{name}",
            "group": case.group,
            "requirements": list(case.requirements),
            "description": case.description,
            "needs": sorted({op.kind.value for op in ops}),
            "full_api": machine is None,
            "axes": axes,
            "outcomes": outcomes,
        }
        if described is not None:
            manifest["machine"] = described
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        index.append({
            "id": manifest["id"],
            "path": f"{case.group}/{name}",
            "files": {f: _digest(folder / f) for f in ("manifest.json", "trace.jsonl")},
        })  # fmt: skip
    (directory / "index.json").write_text(
        json.dumps({"format": FORMAT, "cases": index}, indent=1) + "\n", encoding="utf-8"
    )
    return len(index)


INDEX_LIMIT = 64 * MIB
"""Largest index.json read."""
CASE_FILE_LIMIT = 256 * MIB
"""Largest manifest.json or trace.jsonl read."""


@dataclass
class VectorResult:
    """Outcome of running a vector directory against one adapter."""

    listed: int = 0
    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    requirements: dict[str, list[str]] = field(default_factory=dict)
    """Case id -> requirements it checks."""

    @property
    def ran(self) -> int:
        """Vectors run (passed or failed)."""
        return len(self.passed) + len(self.failed)

    def audit_line(self) -> str:
        return (
            f"Ran {self.ran} of {self.listed} vectors ({len(self.excluded)} intentionally excluded): "
            f"{len(self.passed)} passed, {len(self.failed)} failed"
        )

    @property
    def complete(self) -> bool:
        """Every listed vector was run or excluded with a reason."""
        return self.ran + len(self.excluded) == self.listed

    @property
    def succeeded(self) -> bool:
        """Every vector accounted for, at least one ran, and none failed: what exit status 0 means."""
        return self.complete and self.ran > 0 and not self.failed


def _load_index(directory: Path) -> list[dict[str, Any]]:
    """The cases ``index.json`` lists, validated, every path inside ``directory``, every folder listed."""
    where = directory / "index.json"
    index = read_json_file(where, INDEX_LIMIT, TraceError, "vectors-index.schema.json")
    cases: list[dict[str, Any]] = index["cases"]
    seen: set[str] = set()
    ids: set[str] = set()
    for number, entry in enumerate(cases):
        place = f"{where}: at cases/{number}"
        if entry["path"] in seen or entry["id"] in ids:
            raise TraceError(f"{place}: case {entry['id']!r} at {entry['path']!r} is listed twice")
        seen.add(entry["path"])
        ids.add(entry["id"])
        confined(directory, entry["path"], place, TraceError)
    on_disk = {str(p.parent.relative_to(directory)) for p in directory.glob("*/*/manifest.json")}
    if on_disk - seen:
        raise TraceError(
            f"{where}: vector folders not in index.json: {', '.join(sorted(on_disk - seen))}; "
            "regenerate the index or remove them"
        )
    return cases


def _case_file(folder: Path, name: str, digest: str, case_id: str) -> bytes:
    """A case file's bytes, read within the limits and checked against its digest in the index."""
    path = confined(folder, name, f"vector {case_id}", TraceError)
    try:
        data = read_input(path, CASE_FILE_LIMIT, TraceError)
    except TraceError as exc:
        raise TraceError(f"vector {case_id}: {name} is missing or unreadable ({exc}); regenerate") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise TraceError(f"vector {case_id}: {name} does not match its SHA-256 in index.json; regenerate")
    return data


def _manifest(data: bytes, path: Path) -> dict[str, Any]:
    """A case manifest, validated; its kinds and axes are ones this suite knows."""
    manifest: dict[str, Any] = parse_json(decode_text(data, path, TraceError), path, TraceError)
    validate(manifest, "vectors-manifest.schema.json", path, TraceError)
    kinds = {k.value for k in OpKind}
    unknown = sorted(set(manifest["needs"]) - kinds) + sorted(set(manifest["axes"]) - set(AXES))
    if unknown:
        raise TraceError(f"{path}: at needs/axes: unknown {', '.join(map(repr, unknown))}; "
                         "regenerate the vectors with this version of vpcid")  # fmt: skip
    return manifest


def run(directory: Path, impl: Adapter, exclude: dict[str, str] | None = None) -> VectorResult:
    """Run every vector against ``impl``; a vector the adapter cannot run is excluded with the reason.

    Every path comes from ``index.json`` and stays inside ``directory``; every
    file is read within limits and must match its digest.
    """
    info = impl.info
    result = VectorResult()
    entries = _load_index(directory)
    result.listed = len(entries)
    declared = info.profile.to_mapping()
    for entry in entries:
        case_id = entry["id"]
        folder = confined(directory, entry["path"], f"vector {case_id}", TraceError)
        files = {name: _case_file(folder, name, digest, case_id) for name, digest in entry["files"].items()}
        manifest = _manifest(files["manifest.json"], folder / "manifest.json")
        if manifest["id"] != case_id:
            raise TraceError(f"{folder / 'manifest.json'}: at id: {manifest['id']!r} is not the id "
                             f"index.json gives, {case_id!r}; regenerate the vectors")  # fmt: skip
        result.requirements[case_id] = list(manifest["requirements"])
        reason = _exclusion(manifest, info, (exclude or {}).get(case_id))
        if reason is not None:
            result.excluded.append((case_id, reason))
            continue
        trace_text = decode_text(files["trace.jsonl"], folder / "trace.jsonl", TraceError)
        try:
            _, steps = parse_trace_lines(trace_text.splitlines())
        except TraceError as exc:
            raise TraceError(f"{folder / 'trace.jsonl'}: {exc}") from None
        ops = [s.op for s in steps]
        seen = [o.to_json() if isinstance(o, Observation) else {"crash": o} for o in observations(impl, ops)]
        if not info.canonical_blobs:
            seen = [{"ok": True} if "digest" in o else o for o in seen]
        wanted = {a: declared[a] for a in manifest["axes"]}
        outcome = next((o for o in manifest["outcomes"] if o["when"] == wanted), None)
        expected = outcome["observations"] if outcome else []
        if not info.canonical_blobs:
            expected = [{"ok": True} if "digest" in o else o for o in expected]
        if seen == expected:
            result.passed.append(case_id)
            continue
        other = next((o["when"] for o in manifest["outcomes"] if o["observations"] == seen), None)
        index = next((i for i, (a, b) in enumerate(zip(seen, expected, strict=False)) if a != b), len(seen))
        op = ops[index] if index < len(ops) else None
        detail = f"step {index}" + (f" ({format_op(op)})" if op is not None else "")
        detail += f": expected {_shown(expected, index, op)}, got {_shown(seen, index, op)}"
        if other is not None:
            detail += f" (matches variant {other}, declared {wanted})"
        result.failed.append((case_id, detail))
    return result


def _shown(observed: Sequence[dict[str, Any]], index: int, op: Op | None) -> str:
    """One side of a failing step for people: the observation with numbers in hex, or why there is none."""
    if index >= len(observed):
        return "the end of the trace"
    obs = observed[index]
    if "crash" in obs:
        return f"a crash ({obs['crash']})"
    try:
        return format_observation(Observation.from_json(obs), op)
    except TraceError:
        return json.dumps(obs, sort_keys=True)


def _exclusion(manifest: dict[str, Any], info: AdapterInfo, waived: str | None) -> str | None:
    if waived is not None:
        return f"excluded by the user: {waived}"
    if manifest["full_api"] and info.machine is not None:
        return "needs the full data-manager API; the adapter presents a fixed machine"
    wanted = manifest.get("machine")
    if wanted is not None:
        if info.machine is None:
            return "generated for a fixed machine; the adapter offers the full API"
        if machine_description(info.machine) != wanted:
            return "generated for another fixed machine (devices, ECAM window or platform ranges differ)"
    missing = {k for k in manifest["needs"] if OpKind(k) not in info.operations}
    if missing:
        return f"adapter does not support {', '.join(sorted(missing))}"
    return None
