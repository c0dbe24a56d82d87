"""Certification: run every check against an adapter and give a verdict per requirement.

Checks are the scenario cases (:mod:`vpcid.conformance.cases`), the fast
random engine and the stateful Hypothesis engine. Each is compared with the
model in the implementation's declared profile. A requirement fails when a
check attributed to it diverges; passes when at least one applicable check
exercised it and none failed; is not applicable otherwise. A divergence that
matches the model in another variant is reported as that variant.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from vpcid.adapters.base import Adapter, AdapterInfo
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.blame import Blame, blame, detect_variant, rule_line
from vpcid.conformance.cases import SUITE_VM, Case, Target, default_targets, device_cases, system_cases
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.engine import (
    INIT,
    Differential,
    Divergence,
    Finding,
    exercised_register_rules,
    minimise,
    run_random,
)
from vpcid.conformance.engine import observations as observations
from vpcid.conformance.trace import Observation, Op, OpKind, define_type_op
from vpcid.conformance.traceability import Requirement, load_requirements
from vpcid.conformance.typefile import type_json
from vpcid.model import Bdf, DeviceType, VpcidError
from vpcid.model.manager import DEFAULT_ECAM_BASE, ECAM_SIZE
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
    """The diverging step with numbers in hex, the blamed requirement with its one-line rule, and why."""
    trace: list[dict[str, Any]]
    observed_variant: dict[str, str] = field(default_factory=dict)
    """Single-axis changes under which the model reproduces this check alone (``a|b``: ambiguous)."""
    blame: Blame | None = field(default=None, compare=False)
    """What the failure speaks against and why (:func:`vpcid.conformance.blame.blame`)."""

    def to_json(self) -> dict[str, Any]:
        """The failure for machines: besides the text, what blame concluded (the requirements it
        speaks against, most specific first, the trace step that went wrong, why, and the rule)."""
        out: dict[str, Any] = {"check": self.check, "description": self.description, "trace": self.trace,
                               "observed_variant": self.observed_variant}  # fmt: skip
        if self.blame is not None:
            first = self.blame.requirements[0] if self.blame.requirements else ""
            out["blame"] = {
                "requirements": list(self.blame.requirements),
                "step": self.blame.step,
                "reason": self.blame.reason,
                "rule": rule_line(first) if first else "",
            }
        return out


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
    skipped_cases: dict[str, str] = field(default_factory=dict)
    """Cases left out because they need an operation the adapter does not support (label -> why)."""

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
            "skipped_cases": self.skipped_cases,
            "requirements": [
                {
                    "id": r.rid,
                    "title": r.title,
                    "verdict": r.verdict.value,
                    "checks": r.checks,
                    "variant": r.variant,
                    "waiver": r.waiver,
                    "failures": [f.to_json() for f in r.failures],
                }
                for r in self.requirements
            ],
        }


# ----------------------------------------------------------------- what the engines exercise


def implicated(op: Op, ecam_base: int | None = DEFAULT_ECAM_BASE) -> tuple[str, ...]:
    """Requirements an operation of this kind exercises (what a random engine that ran it without a
    finding counts as checked; a finding's own requirement comes from :func:`blame`).

    An MMIO access inside the ECAM window is a configuration access: it exercises the
    configuration-space requirements of its offset and ECAM's own.
    """
    kind = op.kind
    in_ecam = ecam_base is not None and ecam_base <= op.address < ecam_base + ECAM_SIZE
    if kind in (OpKind.MMIO_READ, OpKind.MMIO_WRITE) and in_ecam:
        return (*_config_requirements(op.address & 0xFFF), "R-ECAM-002", "R-ECAM-003")
    if kind in (OpKind.CONFIG_READ, OpKind.CONFIG_WRITE):
        return _config_requirements(op.address)
    if kind in (OpKind.IO_READ, OpKind.IO_WRITE):
        if op.address + op.width - 1 >= 0xCF8 and op.address <= 0xCFF:
            return ("R-CAM-001", "R-CAM-002", "R-CAM-003", "R-CAM-004", "R-CAM-005", "R-CAM-006", "R-CAM-007")
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
        OpKind.SET_ECAM_BASE: ("R-ECAM-005", "R-ECAM-006"),
        OpKind.TOPOLOGY: ("R-BRG-010",),
    }.get(kind, ("R-VAR-002",))


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
    clash = [t for t in types if t.name in SUITE_TYPES and SUITE_TYPES[t.name] != t]
    if clash:
        from vpcid.conformance.discovery import type_difference

        what = "; ".join(f"{t.name!r} ({type_difference(SUITE_TYPES[t.name], t)})" for t in clash)
        raise CertifyError(f"--types redefines suite types, the suite's first: {what}; rename them")


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


def _behaviour_definitions(ops: Sequence[Op]) -> list[Op]:
    """The ``define_type`` operations of ``ops`` whose valid definition names a behaviour other than
    plain memory: an implementation may decline those (spec/formats/device-type.md)."""
    from vpcid.conformance.typefile import parse_type_definition

    found: list[Op] = []
    for op in ops:
        if op.kind is not OpKind.DEFINE_TYPE:
            continue
        definition = json.loads(op.data)
        if not definition.get("config_behaviour") and definition.get("behaviour") in (None, "memory"):
            continue
        try:
            parse_type_definition(definition)
        except VpcidError:
            continue  # an invalid definition: every implementation must reject it
        found.append(op)
    return found


def declined_cases(
    impl: Adapter, cases: Sequence[tuple[str, Case, list[Op]]], declined: dict[str, str]
) -> set[str]:
    """Labels of the cases that define a type the implementation declines (a valid definition naming
    a behaviour it does not implement, answered with an error): left out like a declined ``--types``
    type, and the type added to ``declined``."""
    answers: dict[bytes, str | None] = {}
    skipped: set[str] = set()
    for label, _case, ops in cases:
        for op in _behaviour_definitions(ops):
            if op.data not in answers:
                impl.execute(INIT)
                answers[op.data] = impl.execute(op).error
            error = answers[op.data]
            if error is not None:
                declined.setdefault(op.name, error)
                skipped.add(label)
    return skipped


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
        runnable += [
            (f"{c.group}/{c.name}", c, [INIT, *c.ops]) for c in system_cases() if c.needs <= info.operations
        ]
    return runnable


def skipped_cases(info: AdapterInfo, types: Sequence[DeviceType] = ()) -> dict[str, str]:
    """The cases :func:`applicable_cases` leaves out because they need an operation the adapter does
    not support, by label, with the adapter's reason for the first such operation (e.g. ``topology``,
    R-BRG-010). Only system cases and device cases of the machine's targets are considered."""
    skipped: dict[str, str] = {}
    if info.machine is None:
        listed = [(f"{c.group}/{c.name}", c) for c in system_cases()]
        targets = default_targets() + extra_targets(types)
    else:
        listed, machine = [], info.machine
        targets = [
            Target(machine.vm, bdf, dtype, machine.ecam_base, machine.opaque_bars(bdf, dtype),
                   machine.reserved_functions)
            for bdf, dtype in machine.devices
        ]  # fmt: skip
    for target in targets:
        listed += [(f"{c.group}/{c.name}@{target.dtype.name}:{target.bdf}", c) for c in device_cases(target)]
    for label, case in listed:
        missing = sorted(case.needs - info.operations)
        if missing:
            skipped[label] = (
                f"needs {', '.join(k.value for k in missing)}: {info.why_unsupported(missing[0])}"
            )
    return skipped


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
    declined.update(info.declined_types)
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
        finding: Finding, check: str, context: Sequence[Op] | None = None, rules: Sequence[str | None] = ()
    ) -> Blame:
        """Blame ``finding`` and fail what it speaks against. ``context``: the whole failing case,
        which tells variants apart better than its shrunk prefix; ``rules``: the requirement each
        operation of the case checks, aligned with ``context``."""
        trace = [op.to_json() for op in finding.trace]
        evidence = context if context is not None else finding.trace
        failing_traces.append(evidence)
        steps = _step_rules(finding.trace, context, rules) if context is not None and rules else None
        found = blame(impl, finding.trace, finding.divergence, steps)
        failure = Failure(
            check, describe(finding.divergence, found), trace, detect_variant(impl, evidence), found
        )
        fail(found.requirements, failure)
        return found

    # 1. scenario cases
    cases = applicable_cases(info, types)
    left_out = declined_cases(impl, cases, declined)
    cases = [case for case in cases if case[0] not in left_out]
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
            rules = case_rules(case, len(ops))
            finding = minimise(impl, ops[: divergence.index + 1], "case", None)
            spoken = record(finding, f"case {label}", ops, rules).requirements
            passed = {rule for rule in rules[: divergence.index] if rule is not None} - set(spoken)
            for rid in passed:  # the steps before the divergence checked their rules and agreed
                if rid in results:
                    results[rid].checks += 1
        if progress is not None:
            progress("cases", done, len(cases))
        if failed_cases and stop_at_first_failure:
            break
    engines["cases"] = {"run": len(cases), "failed": failed_cases, "operations": diff.steps}
    if diff.withheld:
        engines["cases"]["withheld"] = diff.withheld
    if left_out:
        engines["cases"]["declined"] = len(left_out)
    skipped = skipped_cases(info, types)
    if skipped:
        engines["cases"]["skipped"] = len(skipped)

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
            blamed.update(record(finding, f"random engine (seed {seed})").requirements)
        engines["random"] = {"operations": executed, "findings": len(findings)}
        exercised = _exercised_by_engines(info) | set(exercised_register_rules(impl, types))
        for rid in exercised - blamed:  # exercised, and no finding speaks against it
            if rid in results:
                results[rid].checks += 1

    # 3. stateful Hypothesis engine
    if not any(r.failures for r in results.values()) or not stop_at_first_failure:
        from vpcid.conformance.stateful import run_stateful

        examples = max(5, budget // 1000)
        steps, stateful_findings = run_stateful(impl, examples, seed, types)
        for finding in stateful_findings:
            record(finding, f"stateful engine (seed {seed})")
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
        skipped_cases=skipped,
    )


def describe(divergence: Divergence, found: Blame) -> str:
    """What a failure shows: the diverging step (hex numbers, blobs as digest and summary), the
    requirement it breaks with that rule's first sentence, and why."""
    rid = found.requirements[0]
    requirement = load_requirements().get(rid)
    title = f" ({requirement.title})" if requirement is not None else ""
    also = f" (also {', '.join(found.requirements[1:])})" if len(found.requirements) > 1 else ""
    return f"{divergence.describe()}. Breaks {rid}{title}{also}: {rule_line(rid)} Why: {found.reason}."


def case_rules(case: Case, length: int) -> list[str | None]:
    """The requirement each operation of a case run checks, aligned with its ``length`` operations
    (the prologue the runner adds first checks its own steps' rules)."""
    body: list[str | None] = list(case.rules) if len(case.rules) == len(case.ops) else [None] * len(case.ops)
    return [None] * (length - len(body)) + body


def _step_rules(minimal: Sequence[Op], ops: Sequence[Op], rules: Sequence[str | None]) -> list[str | None]:
    """The case rules of the operations a shrunk trace kept (it is a subsequence of ``ops``)."""
    out: list[str | None] = []
    position = 0
    for op in minimal:
        while position < len(ops) and ops[position] != op:
            position += 1
        out.append(rules[position] if position < len(ops) else None)
        position += 1
    return out


def _exercised_by_engines(info: AdapterInfo) -> set[str]:
    """Requirements the random engine's operation mix exercises, for this adapter's operations."""
    rids: set[str] = set()
    for kind in info.operations:
        rids.update(implicated(Op(kind)))
    return rids


def _verdicts(
    results: dict[str, RequirementResult],
    info: AdapterInfo,
    waivers: dict[str, Waiver],
    explained: dict[str, str],
) -> list[str]:
    errors: list[str] = []
    declared = info.profile.to_mapping()
    shown: dict[str, list[str]] = {}
    for axis, rid in AXIS_REQUIREMENT.items():  # a requirement may state several axes (R-ACC-004: two)
        text = f"{axis}={declared[axis]}"
        if axis in explained:
            text = f"observed {axis}={explained[axis]} (declared {axis}={declared[axis]})"
        shown.setdefault(rid, []).append(text)
    for rid, texts in shown.items():
        results[rid].variant = ", ".join(texts)
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
    order = [
        *("DS", "DT", "CFG", "BAR", "DEC", "ACC", "CAM", "ECAM", "HP", "RST", "MF", "SR", "BLOB", "MIG"),
        *("ERR", "VAR", "REG", "BRG", "IRQ"),
    ]
    group, number = rid.split("-")[1], int(rid.split("-")[2])
    return (order.index(group) if group in order else len(order), number)
