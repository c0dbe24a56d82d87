"""Certification: run every check against an adapter and give a verdict per requirement.

Checks are the scenario cases (:mod:`vpcid.conformance.cases`), the fast
random engine and the stateful Hypothesis engine. Each is compared with the
model in the implementation's declared profile. A requirement fails when a
check attributed to it diverges; passes when at least one applicable check
exercised it and none failed; is not applicable otherwise. A divergence that
matches the model in another variant is reported as that variant.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from vpcid.adapters.base import Adapter, AdapterInfo
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.cases import SUITE_VM, Case, Target, default_targets, device_cases, system_cases
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.engine import INIT, Differential, Finding, minimise, model_for, run_random
from vpcid.conformance.trace import Observation, Op, OpKind, define_type_op
from vpcid.conformance.traceability import Requirement, load_requirements
from vpcid.conformance.typefile import type_json
from vpcid.model import Bdf, DeviceType, VpcidError
from vpcid.model.manager import DEFAULT_ECAM_BASE, ECAM_SIZE, cam_selection
from vpcid.model.profile import AXES, AXIS_REQUIREMENT, Profile

DEFAULT_BUDGET = 50_000
"""Operations the fast engine runs by default; the stateful engine runs budget/1000 examples."""
DEFAULT_SEED = 0
MAX_RANDOM_FINDINGS = 8
"""Distinct findings the fast engine collects before it stops exploring."""


class Verdict(StrEnum):
    """Outcome for one requirement."""

    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "n/a"
    WAIVED = "waived"


class CertifyError(VpcidError, ValueError):
    """A certification was asked for something the adapter cannot do (e.g. --types on a fixed machine)."""

    kind = "bad-certification"


class WaiverError(VpcidError, ValueError):
    """A waiver file is malformed, or names a requirement that does not exist."""

    kind = "bad-waiver"


@dataclass(frozen=True)
class Waiver:
    """A deviation a certifier accepts: the requirement and why (strict: it must still fail)."""

    requirement: str
    reason: str


WAIVER_FILE_LIMIT = 1 << 20
"""Largest waiver file read."""


def load_waivers(path: Path, known: set[str]) -> dict[str, Waiver]:
    """Parse a waiver file: ``[[waiver]]`` tables with ``requirement`` and ``reason``, nothing else.

    Read through the bounded loader and checked against ``spec/formats/waivers.schema.json``;
    every error names the file, the place in it and what to write instead.
    """
    from vpcid.conformance.inputs import read_toml_file

    document = read_toml_file(path, WAIVER_FILE_LIMIT, WaiverError, "waivers.schema.json")
    waivers: dict[str, Waiver] = {}
    for number, entry in enumerate(document.get("waiver", [])):
        rid, reason = entry["requirement"], entry["reason"]
        where = f"{path}: at waiver/{number}/requirement"
        if rid not in known:
            raise WaiverError(f"{where}: {rid!r} is not a requirement of the spec; check the ID in spec/")
        if rid in waivers:
            raise WaiverError(f"{where}: {rid} is waived twice; keep one [[waiver]] for it")
        waivers[rid] = Waiver(rid, reason.strip())
    return waivers


@dataclass
class Failure:
    """One failed check: what diverged, the minimal trace, and the variant it matches if any."""

    check: str
    description: str
    trace: list[dict[str, Any]]
    observed_variant: dict[str, str] = field(default_factory=dict)
    """Single-axis changes under which the model reproduces this check alone (``a|b``: ambiguous)."""


@dataclass
class RequirementResult:
    """Verdict and evidence for one requirement."""

    rid: str
    title: str
    verdict: Verdict = Verdict.NOT_APPLICABLE
    checks: int = 0
    failures: list[Failure] = field(default_factory=list)
    variant: str | None = None
    """For a requirement that states a variant axis: ``axis=value`` observed."""
    waiver: str | None = None


@dataclass
class CertificationReport:
    """Everything a certifier attaches to a release."""

    adapter: str
    description: str
    profile: dict[str, str]
    seed: int
    budget: int
    requirements: list[RequirementResult]
    engines: dict[str, dict[str, int]]
    duration_s: float
    errors: list[str] = field(default_factory=list)
    """Problems that make the run non-conformant beyond failed requirements (e.g. stale waivers)."""
    variants: dict[str, str] = field(default_factory=dict)
    """Variant values that explain the failures (explain_variants): what the implementation does."""
    declined_types: dict[str, str] = field(default_factory=dict)
    """``--types`` types the implementation declined (name -> the error its define_type observed)."""

    @property
    def conformant(self) -> bool:
        return not self.errors and all(r.verdict is not Verdict.FAIL for r in self.requirements)

    def counts(self) -> dict[str, int]:
        out = {v.value: 0 for v in Verdict}
        for r in self.requirements:
            out[r.verdict.value] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter,
            "description": self.description,
            "conformant": self.conformant,
            "profile": self.profile,
            "seed": self.seed,
            "budget": self.budget,
            "duration_s": round(self.duration_s, 3),
            "counts": self.counts(),
            "engines": self.engines,
            "errors": self.errors,
            "observed_variants": self.variants,
            "declined_types": self.declined_types,
            "requirements": [
                {
                    "id": r.rid,
                    "title": r.title,
                    "verdict": r.verdict.value,
                    "checks": r.checks,
                    "variant": r.variant,
                    "waiver": r.waiver,
                    "failures": [dataclasses.asdict(f) for f in r.failures],
                }
                for r in self.requirements
            ],
        }


# ----------------------------------------------------------------- attribution


@dataclass(frozen=True)
class CamState:
    """The model's configuration mechanism just before a diverging access to 0xCF8-0xCFF."""

    enabled: bool
    """Bit 31 of 0xCF8 is set: the data window reaches configuration space (R-CAM-004, R-CAM-005)."""
    data_access_since_write: bool
    """A data-window access happened since 0xCF8 was last written (what R-CAM-007 governs)."""
    bar_under_ports: bool
    """An I/O BAR decodes a port of 0xCF8-0xCFF (what R-CAM-006 governs)."""


def implicated(
    op: Op, expected: Observation, ecam_base: int | None = DEFAULT_ECAM_BASE, cam: CamState | None = None
) -> tuple[str, ...]:
    """Requirements a divergence on ``op`` speaks against (used for engine findings).

    An MMIO access inside the ECAM window is a configuration access: it speaks
    against the configuration-space requirements of its offset and ECAM's own.
    An access to 0xCF8-0xCFF speaks against the configuration-mechanism rules
    that ``cam`` (the mechanism's state before it) says applied; without
    ``cam``, against all of them.
    """
    if expected.error is not None:
        return ("R-ERR-001", "R-ERR-002", "R-ERR-003")
    kind = op.kind
    in_ecam = ecam_base is not None and ecam_base <= op.address < ecam_base + ECAM_SIZE
    if kind in (OpKind.MMIO_READ, OpKind.MMIO_WRITE) and in_ecam:
        return (*_config_requirements(op.address & 0xFFF), "R-ECAM-002", "R-ECAM-003")
    if kind in (OpKind.CONFIG_READ, OpKind.CONFIG_WRITE):
        return _config_requirements(op.address)
    if kind in (OpKind.IO_READ, OpKind.IO_WRITE):
        if op.address + op.width - 1 >= 0xCF8 and op.address <= 0xCFF:
            return _cam_requirements(op, cam)
        return ("R-DEC-001", "R-DEC-005", "R-DEC-008", "R-DEC-010", "R-ACC-004", "R-ACC-005")
    if kind in (OpKind.MMIO_READ, OpKind.MMIO_WRITE):
        return ("R-DEC-002", "R-DEC-003", "R-DEC-005", "R-DEC-007", "R-DEC-008", "R-DEC-010", "R-ACC-004",
                "R-ACC-005", "R-ECAM-003", "R-DT-004")  # fmt: skip
    return {
        OpKind.SAVE: ("R-SR-001", "R-BLOB-003", "R-BLOB-004"),
        OpKind.SNAPSHOT: ("R-SR-006", "R-BLOB-005", "R-BLOB-006"),
        OpKind.RESTORE: ("R-SR-002", "R-SR-005", "R-SR-007"),
        OpKind.RESTORE_VM: ("R-SR-006", "R-SR-007", "R-SR-009"),
        OpKind.TABLES: ("R-DS-006", "R-DS-007", "R-DS-009"),
        OpKind.RESET: ("R-RST-001", "R-RST-002"),
        OpKind.RESET_VM: ("R-RST-003",),
        OpKind.PLUG: ("R-HP-001",),
        OpKind.UNPLUG: ("R-HP-002",),
        OpKind.CREATE_VM: ("R-DS-001",),
        OpKind.DESTROY_VM: ("R-DS-002",),
    }.get(kind, ("R-VAR-002",))


_WRITES = (OpKind.CONFIG_WRITE, OpKind.IO_WRITE, OpKind.MMIO_WRITE)


def _read_back(model: ModelAdapter, write: Op) -> Op:
    """A read of what ``write`` addressed, as the model routes it, after ``write`` ran on ``model``.

    A write through the 0xCFC-0xCFF data window is read back with a plain
    configuration read of the register the model's 0xCF8 selects, so that a
    write the implementation sent elsewhere shows at once.
    """
    if write.kind is OpKind.CONFIG_WRITE:
        return Op(OpKind.CONFIG_READ, vm=write.vm, bdf=write.bdf, address=write.address, width=write.width)
    if write.kind is OpKind.IO_WRITE:
        cf8 = model.manager.cf8(write.vm) if write.vm in model.manager.vm_ids() else 0
        port = write.address
        selected = cam_selection(cf8, model.info.profile)
        if port >= 0xCFC and port + write.width <= 0xD00 and selected is not None:  # R-CAM-004
            bdf, register = selected
            return Op(
                OpKind.CONFIG_READ, vm=write.vm, bdf=bdf, address=register + port - 0xCFC, width=write.width
            )
        return Op(OpKind.IO_READ, vm=write.vm, address=port, width=write.width)
    return Op(OpKind.MMIO_READ, vm=write.vm, address=write.address, width=write.width)


def cause_of(impl: Adapter, trace: Sequence[Op]) -> int | None:
    """Index of the earliest write of a diverging ``trace`` whose effect already diverges when read back.

    A divergence shows on the operation that observes it, which may be far
    from the operation that went wrong: a write through 0xCFC that reached
    the wrong register shows on a later ECAM read. Each write is replayed
    with its prefix and followed by a read of what it addressed; the first
    such read that diverges names that write. None when no read-back diverges
    (the divergence is then the last operation's own).
    """
    info = impl.info
    for index, op in enumerate(trace[:-1]):
        if op.kind not in _WRITES:
            continue
        model = model_for(info)
        try:
            for earlier in trace[: index + 1]:
                model.execute(earlier)
            probe = _read_back(model, op)
        except VpcidError:
            continue
        if probe.kind not in info.operations:
            continue
        if Differential(impl).replay([*trace[: index + 1], probe]) is not None:
            return index
    return None


def _cam_requirements(op: Op, cam: CamState | None) -> tuple[str, ...]:
    """The configuration-mechanism requirements an I/O access overlapping 0xCF8-0xCFF is governed by."""
    end = op.address + op.width
    rids: list[str] = []
    if op.address < 0xCFC:  # bytes of the address register's ports
        dword = op.address == 0xCF8 and op.width == 4
        rids += ["R-CAM-001", "R-CAM-002", "R-CAM-003"] if dword else ["R-CAM-001", "R-ACC-004"]
    if end > 0xCFC:  # bytes of the data window
        if cam is None:
            rids += ["R-CAM-004", "R-CAM-005", "R-CAM-007"]
        else:
            rids.append("R-CAM-004" if cam.enabled else "R-CAM-005")
            if cam.data_access_since_write:
                rids.append("R-CAM-007")
    if any(op.address < edge < end for edge in (0xCF8, 0xCFC, 0xD00)):
        rids.append("R-ACC-005")  # the access straddles targets: other ports, register, window
    if cam is None or cam.bar_under_ports:
        rids.append("R-CAM-006")
    return tuple(dict.fromkeys(rids))


def cam_state(info: AdapterInfo, before: Sequence[Op], vm: int) -> CamState | None:
    """The model's configuration mechanism in VM ``vm`` after ``before`` (None if the model rejects them)."""
    model = model_for(info)
    try:
        for op in before:
            model.execute(op)
        if vm not in model.manager.vm_ids():
            return None
        cf8 = model.manager.cf8(vm)
        bar = any(model.manager.resolve(vm, "io", port) is not None for port in range(0xCF8, 0xD00))
    except VpcidError:
        return None
    accessed = False
    for op in before:
        if op.kind in (OpKind.IO_READ, OpKind.IO_WRITE) and op.vm == vm:
            if op.kind is OpKind.IO_WRITE and op.address == 0xCF8 and op.width == 4:
                accessed = False
            elif op.address < 0xD00 and op.address + op.width > 0xCFC:
                accessed = True
        elif op.kind in (OpKind.INIT, OpKind.RESET_VM, OpKind.RESTORE_VM, OpKind.CREATE_VM):
            accessed = False
    return CamState(bool(cf8 & 0x8000_0000), accessed, bar)


def _config_requirements(offset: int) -> tuple[str, ...]:
    register = offset & ~3
    if register == 0x04:
        return ("R-CFG-001", "R-CFG-004", "R-CFG-005", "R-CFG-006")
    if 0x10 <= register < 0x28:
        return ("R-BAR-002", "R-BAR-003", "R-BAR-004", "R-BAR-005", "R-BAR-006", "R-BAR-008")
    if register == 0x30:
        return ("R-BAR-007",)
    if register >= 0x100:
        return ("R-CFG-009",)
    if register >= 0x40:
        return ("R-CFG-008", "R-CFG-012", "R-CFG-010")
    return ("R-CFG-001", "R-CFG-002", "R-CFG-003", "R-CFG-007", "R-CFG-011")


# ----------------------------------------------------------------- variant detection


def observations(adapter: Adapter, ops: Sequence[Op]) -> list[Observation | str]:
    """Every observation of ``ops`` on ``adapter``; a crash ends the list with its text."""
    out: list[Observation | str] = []
    for op in ops:
        try:
            out.append(adapter.execute(op))
        except Exception as exc:
            out.append(f"{type(exc).__name__}: {exc}")
            break
    return out


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


def explain_variants(impl: Adapter, traces: Sequence[Sequence[Op]]) -> dict[str, str]:
    """The variant values that explain the failing ``traces``, chosen greedily (set cover).

    Repeatedly picks the single axis value which, added to the declared profile
    and the values already chosen, makes the model match ``impl`` on the most
    still-unexplained traces. Traces no value explains stay unexplained: they
    are deviations no variant covers.
    """
    info = impl.info
    seen = [[_normal(o, info) for o in observations(impl, ops)] for ops in traces]
    declared = info.profile.to_mapping()
    chosen: dict[str, str] = {}
    remaining = list(range(len(traces)))
    while remaining:
        best: tuple[str, str] | None = None
        best_explained: list[int] = []
        for axis, enum in AXES.items():
            for value in enum:
                if axis in chosen or value.value == declared[axis]:
                    continue
                profile = Profile.from_mapping({**declared, **chosen, axis: value.value})
                model = ModelAdapter("variant", profile, info.machine, operations=info.operations)
                explained = [
                    i for i in remaining
                    if [_normal(o, info) for o in observations(model, traces[i])] == seen[i]
                ]  # fmt: skip
                if len(explained) > len(best_explained):
                    best, best_explained = (axis, value.value), explained
        if best is None:
            break
        chosen[best[0]] = best[1]
        remaining = [i for i in remaining if i not in best_explained]
    return chosen


def _normal(obs: Observation | str, info: AdapterInfo) -> Observation | str:
    if isinstance(obs, Observation) and obs.digest is not None and not info.canonical_blobs:
        return Observation()
    return obs


# ----------------------------------------------------------------- running


EXTRA_TYPE_DEVICE = 0x10
"""Device number of the first ``--types`` type in the suite VM (the suite's own use 0x02-0x07)."""


def extra_targets(types: Sequence[DeviceType]) -> list[Target]:
    """Where the device cases put ``--types`` types: the suite VM, bus 0, from device 0x10."""
    if len(types) > 32 - EXTRA_TYPE_DEVICE:
        raise CertifyError(f"at most {32 - EXTRA_TYPE_DEVICE} extra device types per run")
    return [
        Target(SUITE_VM, Bdf(0, EXTRA_TYPE_DEVICE + k, 0), t, DEFAULT_ECAM_BASE) for k, t in enumerate(types)
    ]


def check_types(info: AdapterInfo, types: Sequence[DeviceType]) -> None:
    """Extra types need a full-API adapter that accepts ``define_type`` (spec/formats/trace.md)."""
    if not types:
        return
    if info.machine is not None:
        raise CertifyError(
            f"adapter {info.name!r} presents a fixed machine with its own devices; --types applies to "
            "full-API adapters (a vfio-user server's type is given as vfio-user:SOCKET@FILE)"
        )
    if OpKind.DEFINE_TYPE not in info.operations:
        raise CertifyError(f"adapter {info.name!r} does not declare define_type, so it cannot take --types")
    clash = sorted(t.name for t in types if t.name in SUITE_TYPES and SUITE_TYPES[t.name] != t)
    if clash:
        raise CertifyError(f"--types redefines suite types {', '.join(clash)}; rename them")


def declined_types(impl: Adapter, types: Sequence[DeviceType]) -> dict[str, str]:
    """The ``--types`` types the implementation declines (``define_type`` answers an error), by name,
    with what it answered: an implementation need not implement every behaviour a type names
    (spec/formats/device-type.md), so such a type is left out of the run and reported, not failed."""
    declined: dict[str, str] = {}
    for dtype in types:
        impl.execute(INIT)
        answer = impl.execute(define_type_op(type_json(dtype)))
        if answer.error is not None:
            declined[dtype.name] = answer.error
    return declined


def applicable_cases(info: AdapterInfo, types: Sequence[DeviceType] = ()) -> list[tuple[str, Case, list[Op]]]:
    """Cases this adapter can run: (label, case, operations with prologue), in a stable order.

    ``types``: device types beyond the suite's (``--types``), defined by a ``define_type`` operation
    and exercised by the device cases like the suite's own.
    """
    check_types(info, types)
    if info.machine is None:
        targets = default_targets() + extra_targets(types)
    else:
        machine = info.machine
        targets = [
            Target(machine.vm, bdf, dtype, machine.ecam_base, machine.opaque_bars(bdf, dtype),
                   machine.reserved_functions)
            for bdf, dtype in machine.devices
        ]  # fmt: skip
    runnable: list[tuple[str, Case, list[Op]]] = []
    for target in targets:
        prologue = [INIT]
        if info.machine is None and target.dtype.name not in SUITE_TYPES:
            prologue.append(define_type_op(type_json(target.dtype)))
        if info.machine is None:
            prologue += [
                Op(OpKind.CREATE_VM, vm=target.vm, ecam_base=target.ecam_base),
                Op(OpKind.PLUG, vm=target.vm, bdf=target.bdf, name=target.dtype.name),
            ]
        for case in device_cases(target):
            if case.needs <= info.operations:
                label = f"{case.group}/{case.name}@{target.dtype.name}:{target.bdf}"
                runnable.append((label, case, prologue + list(case.ops)))
    if info.machine is None:
        runnable += [(f"{c.group}/{c.name}", c, [INIT, *c.ops]) for c in system_cases()]
    return runnable


Progress = Callable[[str, int, int], None]
"""Callback: (phase, done, total)."""


def certify(
    impl: Adapter,
    budget: int = DEFAULT_BUDGET,
    seed: int = DEFAULT_SEED,
    waivers: dict[str, Waiver] | None = None,
    progress: Progress | None = None,
    stop_at_first_failure: bool = False,
    types: Sequence[DeviceType] = (),
) -> CertificationReport:
    """Run cases, the random engine and the stateful engine; return the verdict per requirement.

    ``types``: device types beyond the suite's (``--types`` files) that the cases also exercise.
    """
    started = time.perf_counter()
    info = impl.info
    check_types(info, types)
    declined = declined_types(impl, types)
    types = [t for t in types if t.name not in declined]
    requirements: dict[str, Requirement] = load_requirements()
    results = {rid: RequirementResult(rid, req.title) for rid, req in requirements.items()}
    engines: dict[str, dict[str, int]] = {}
    if declined:
        engines["types"] = {"defined": len(types), "declined": len(declined)}

    def fail(rids: Sequence[str], failure: Failure) -> None:
        for rid in rids:
            if rid in results:
                results[rid].checks += 1
                results[rid].failures.append(failure)

    failing_traces: list[Sequence[Op]] = []

    def record(
        finding: Finding, check: str, rids: Sequence[str], context: Sequence[Op] | None = None
    ) -> None:
        """``context``: the whole failing case, which tells variants apart better than its shrunk prefix."""
        trace = [op.to_json() for op in finding.trace]
        evidence = context if context is not None else finding.trace
        failing_traces.append(evidence)
        fail(rids, Failure(check, finding.divergence.describe(), trace, detect_variant(impl, evidence)))

    ecam = info.machine.ecam_base if info.machine is not None else DEFAULT_ECAM_BASE
    # 1. scenario cases
    cases = applicable_cases(info, types)
    diff = Differential(impl)
    failed_cases = 0
    for done, (label, case, ops) in enumerate(cases, start=1):
        divergence = diff.run(ops)
        if divergence is None:
            for rid in case.requirements:
                if rid in results:
                    results[rid].checks += 1
        else:
            failed_cases += 1
            finding = minimise(impl, ops[: divergence.index + 1], "case", None)
            record(finding, f"case {label}", case.requirements, ops)
        if progress is not None:
            progress("cases", done, len(cases))
        if failed_cases and stop_at_first_failure:
            break
    engines["cases"] = {"run": len(cases), "failed": failed_cases, "operations": diff.steps}
    if diff.withheld:
        engines["cases"]["withheld"] = diff.withheld

    # 2. fast random engine
    if not (failed_cases and stop_at_first_failure):
        executed, findings = run_random(
            impl,
            budget,
            seed,
            None if progress is None else lambda n: progress("random", n, budget),
            max_findings=1 if stop_at_first_failure else MAX_RANDOM_FINDINGS,
            types=types,
        )
        blamed: set[str] = set()
        for finding in findings:
            rids = attributed(impl, finding, ecam)
            blamed.update(rids)
            record(finding, f"random engine (seed {seed})", rids)
        engines["random"] = {"operations": executed, "findings": len(findings)}
        for rid in _exercised_by_engines(info) - blamed:  # exercised, and no finding speaks against it
            if rid in results:
                results[rid].checks += 1

    # 3. stateful Hypothesis engine
    if not any(r.failures for r in results.values()) or not stop_at_first_failure:
        from vpcid.conformance.stateful import run_stateful

        examples = max(5, budget // 1000)
        steps, stateful_findings = run_stateful(impl, examples, seed, types)
        for finding in stateful_findings:
            record(
                finding,
                f"stateful engine (seed {seed})",
                attributed(impl, finding, ecam),
            )
        engines["stateful"] = {"examples": examples, "operations": steps, "findings": len(stateful_findings)}

    explained = explain_variants(impl, failing_traces) if failing_traces else {}
    errors = _verdicts(results, info, waivers or {}, explained)
    return CertificationReport(
        adapter=info.name,
        description=info.description,
        profile=info.profile.to_mapping(),
        seed=seed,
        budget=budget,
        requirements=[results[rid] for rid in sorted(results, key=_requirement_order)],
        engines=engines,
        duration_s=time.perf_counter() - started,
        errors=errors,
        variants=explained,
        declined_types=declined,
    )


def attributed(impl: Adapter, finding: Finding, ecam: int | None) -> tuple[str, ...]:
    """Requirements an engine finding speaks against: those of the write that caused it, if one did.

    For an access to 0xCF8-0xCFF, the model's configuration-mechanism state
    just before it decides which of those rules applied.
    """
    trace = finding.trace
    cause = cause_of(impl, trace)
    index = len(trace) - 1 if cause is None else cause
    op = trace[index]
    expected = finding.divergence.expected if cause is None else Observation()
    cam = None
    if op.kind in (OpKind.IO_READ, OpKind.IO_WRITE) and op.address <= 0xCFF and op.address + op.width > 0xCF8:
        cam = cam_state(impl.info, trace[:index], op.vm)
        if cam is not None and cam.data_access_since_write and _cf8_kept(impl, trace[:index], op.vm):
            cam = dataclasses.replace(cam, data_access_since_write=False)  # 0xCF8 as the model has it
    return implicated(op, expected, ecam, cam)


def _cf8_kept(impl: Adapter, before: Sequence[Op], vm: int) -> bool:
    """Whether the implementation's 0xCF8 reads as the model's after ``before``: then what happened to
    0xCF8 after a data access (R-CAM-007) cannot be what diverged."""
    read = Op(OpKind.IO_READ, vm=vm, address=0xCF8, width=4)
    seen = observations(impl, [*before, read])
    expected = observations(model_for(impl.info), [*before, read])
    return len(seen) == len(expected) and seen[-1] == expected[-1]


def _exercised_by_engines(info: AdapterInfo) -> set[str]:
    """Requirements the random engine's operation mix exercises, for this adapter's operations."""
    rids: set[str] = set()
    sample = [Op(k) for k in info.operations]
    for op in sample:
        rids.update(implicated(op, Observation()))
    return rids


def _verdicts(
    results: dict[str, RequirementResult],
    info: AdapterInfo,
    waivers: dict[str, Waiver],
    explained: dict[str, str],
) -> list[str]:
    errors: list[str] = []
    declared = info.profile.to_mapping()
    for axis, rid in AXIS_REQUIREMENT.items():
        results[rid].variant = f"{axis}={declared[axis]}"
        if axis in explained:
            results[rid].variant = f"observed {axis}={explained[axis]} (declared {axis}={declared[axis]})"
    for rid, result in results.items():
        if result.failures:
            result.verdict = Verdict.FAIL
        elif result.checks:
            result.verdict = Verdict.PASS
        waiver = waivers.get(rid)
        if waiver is not None:
            result.waiver = waiver.reason
            if result.verdict is Verdict.FAIL:
                result.verdict = Verdict.WAIVED
            else:
                errors.append(f"{rid} is waived but did not fail ({result.verdict.value}): remove the waiver")
    return errors


def _requirement_order(rid: str) -> tuple[int, int]:
    order = ["DS", "DT", "CFG", "BAR", "DEC", "ACC", "CAM", "ECAM", "HP", "RST", "SR", "BLOB", "ERR", "VAR"]
    group, number = rid.split("-")[1], int(rid.split("-")[2])
    return (order.index(group) if group in order else len(order), number)
