"""``vpcid explain R-ID``: one requirement and all its evidence in one step.

For a requirement of spec/: its text, each model line that cites it (file,
line and the definition around it), the tests whose ``req`` markers cite it
(pytest node IDs, found by reading the test files, never by running pytest),
the golden vectors whose steps check it with their operations and the
model's expected observations in hex, the z3 proofs and CrossHair contracts
that establish it, and the variant axis that changes it (spec/variants.md).

Everything is read from declarations and source text, so it works on a plain
install: z3 and CrossHair are not imported, and an installed package, which
has no tests/, says so instead of listing tests (:attr:`Explanation.unavailable`).
:class:`Explainer` reads the sources once; the rendered spec (``vpcid
spec-site``) asks it about every requirement.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import click
from vpcid.adapters.base import AdapterInfo
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.certify import applicable_cases
from vpcid.conformance.engine import format_observation, format_op, observations
from vpcid.conformance.formal import declared_proofs, z3_missing
from vpcid.conformance.trace import EXTENSIONS, FULL, Observation, Op
from vpcid.conformance.traceability import (
    TESTS_UNAVAILABLE,
    CitationSite,
    Requirement,
    Sources,
    TestSite,
    expand,
    load_requirements,
    model_sites,
    test_sites,
)
from vpcid.model.errors import VpcidError
from vpcid.model.profile import AXES, AXIS_REQUIREMENT, DEFAULT_PROFILE, Profile

RID_SHAPE = re.compile(r"^(?:R-)?([A-Z]+)-?(\d{1,3})$")
"""What a user may type for an R-ID: ``R-DEC-005``, ``r-dec-005``, ``DEC-5``."""
VARIANT_ID = re.compile(r"\b(V-[A-Z0-9-]*[A-Z0-9])\b")
STEPS_SHOWN = 6
"""Steps of each vector shown by default (``--full`` shows every step of every vector)."""


class UnknownRequirement(VpcidError, LookupError):
    """An R-ID the spec does not define; the message names the closest ones."""

    kind = "unknown-requirement"


# ------------------------------------------------------------------ the evidence


@dataclass(frozen=True)
class VectorStep:
    """One operation of a vector and what the model observes for it (default profile)."""

    index: int
    """Position in the vector's trace; step 0 is ``init``."""
    op: Op
    expected: Observation | str
    """The model's observation, or the text of its crash (which would be a bug in the model)."""
    rule: str | None
    """The requirement this step checks; None for set-up (the prologue that creates VM and device)."""

    @property
    def operation(self) -> str:
        """The operation as a person reads it, numbers in hex."""
        return format_op(self.op)

    @property
    def observation(self) -> str:
        """The expected observation, numbers in hex of the access width."""
        return self.expected if isinstance(self.expected, str) else format_observation(self.expected, self.op)

    def to_json(self) -> dict[str, Any]:
        expected = {"crash": self.expected} if isinstance(self.expected, str) else self.expected.to_json()
        return {
            "step": self.index, "op": self.op.to_json(), "expect": expected, "rule": self.rule,
            "text": f"{self.operation} -> {self.observation}",
        }  # fmt: skip


@dataclass(frozen=True)
class Vector:
    """A golden vector (``vpcid vectors generate``): a scenario case with its prologue."""

    vector_id: str
    """As in the vectors' index.json: ``group/case``."""
    description: str
    requirements: tuple[str, ...]
    steps: tuple[VectorStep, ...]

    def checking(self, rid: str) -> list[VectorStep]:
        """The steps that check ``rid``."""
        return [s for s in self.steps if s.rule == rid]

    def to_json(self, rid: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.vector_id, "description": self.description,
            "requirements": list(self.requirements), "steps": [s.to_json() for s in self.steps],
        }  # fmt: skip
        if rid is not None:
            out["checking_steps"] = [s.index for s in self.checking(rid)]
        return out


@dataclass(frozen=True)
class FormalSite:
    """A z3 proof or CrossHair contract that establishes requirements."""

    kind: str
    """"z3 proof" or "CrossHair contract"."""
    name: str
    path: str
    line: int
    summary: str
    requirements: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} ({self.path}:{self.line}): {self.summary}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "name": self.name, "path": self.path, "line": self.line,
            "summary": self.summary, "requirements": list(self.requirements),
        }  # fmt: skip


@dataclass(frozen=True)
class VariantAxis:
    """A declared variant axis (spec/variants.md, :data:`vpcid.model.profile.AXES`)."""

    key: str
    """The manifest key, e.g. ``bar_move_while_decoding``."""
    variant_id: str
    """E.g. ``V-BAR-MOVE``; "" if neither the table nor the model names one."""
    default: str
    alternatives: tuple[str, ...]
    requirements: tuple[str, ...]

    def __str__(self) -> str:
        name = f"{self.variant_id} ({self.key})" if self.variant_id else self.key
        return f"{name}: default {self.default}; alternatives {', '.join(self.alternatives)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "id": self.variant_id, "default": self.default,
            "alternatives": list(self.alternatives), "requirements": list(self.requirements),
        }  # fmt: skip


@dataclass(frozen=True)
class Explanation:
    """Everything known about one requirement."""

    requirement: Requirement
    spec_path: str
    text: str
    """The requirement's text below its heading, as written in spec/."""
    model: tuple[CitationSite, ...]
    tests: tuple[TestSite, ...]
    vectors: tuple[Vector, ...]
    formal: tuple[FormalSite, ...]
    variants: tuple[VariantAxis, ...]
    unavailable: tuple[str, ...] = ()
    """What could not be shown here, and why."""

    @property
    def rid(self) -> str:
        return self.requirement.rid

    def to_json(self) -> dict[str, Any]:
        """The explanation as JSON (``vpcid explain --json``)."""
        return {
            "requirement": self.rid,
            "title": self.requirement.title,
            "spec": {"path": self.spec_path, "line": self.requirement.line},
            "text": self.text,
            "model": [{"path": s.path, "line": s.line, "symbol": s.symbol} for s in self.model],
            "tests": [{"id": t.node_id, "path": t.path, "line": t.line, "kind": t.kind} for t in self.tests],
            "vectors": [v.to_json(self.rid) for v in self.vectors],
            "formal": [f.to_json() for f in self.formal],
            "variants": [v.to_json() for v in self.variants],
            "unavailable": list(self.unavailable),
        }

    def render(self, full: bool = False) -> str:
        """The explanation for a terminal: text, then evidence, numbers in hex.

        Each vector shows the steps that check this requirement (at most
        :data:`STEPS_SHOWN`); with ``full``, every step of every vector.
        """
        req = self.requirement
        out = [f"{self.rid} — {req.title}", f"{self.spec_path}:{req.line}", ""]
        out += [f"  {line}" if line else "" for line in self.text.splitlines()]
        out.append("")
        if self.variants:
            out += ["Variant axes:", *(f"  {v}" for v in self.variants), ""]
        out.append(f"Model ({_count(self.model, 'place')}):")
        out += [f"  {s.path}:{s.line}  {s.symbol or '(module docstring or comment)'}" for s in self.model]
        out += ["", f"Tests ({_count(self.tests, 'test')}):"]
        out += [f"  {t.node_id}  (line {t.line}, {t.kind})" for t in self.tests]
        out += ["", f"Vectors ({_count(self.vectors, 'vector')}; steps numbered from 0, init):"]
        for vector in self.vectors:
            out.append(f"  {vector.vector_id} — {vector.description}")
            steps = list(vector.steps) if full else vector.checking(self.rid)
            for step in steps if full else steps[:STEPS_SHOWN]:
                mark = "*" if step.rule == self.rid else " "
                out.append(f"   {mark}{step.index:>3}  {step.operation} -> {step.observation}")
            if not full and len(steps) > STEPS_SHOWN:
                out.append(f"        ... {len(steps) - STEPS_SHOWN} more steps check {self.rid} (--full)")
        out += ["", f"Proofs and contracts ({_count(self.formal, 'item')}):"]
        out += [f"  {f}" for f in self.formal]
        if self.unavailable:
            out += ["", "Not shown here:", *(f"  {why}" for why in self.unavailable)]
        return "\n".join(out) + "\n"


def _count(items: Sequence[object], noun: str) -> str:
    return "none" if not items else f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


# ------------------------------------------------------------------ reading the sources


def requirement_text(req: Requirement) -> str:
    """The lines below a requirement's heading up to the next heading, stripped."""
    body: list[str] = []
    for line in req.path.read_text(encoding="utf-8").splitlines()[req.line :]:
        if line.startswith("#"):
            break
        body.append(line)
    return "\n".join(body).strip()


def _table_rows(markdown: str) -> list[dict[str, str]]:
    """The rows of the first Markdown table whose header names ``axis`` and ``default``, by column."""
    lines = [line.strip() for line in markdown.splitlines()]
    for number, line in enumerate(lines):
        cells = [c.strip().lower() for c in line.strip("|").split("|")]
        if line.startswith("|") and any(c.startswith("axis") for c in cells) and "default" in cells:
            header = ["axis" if c.startswith("axis") else c for c in cells]
            rows = []
            for row in lines[number + 2 :]:
                if not row.startswith("|"):
                    break
                values = [c.strip() for c in row.strip("|").split("|")]
                rows.append(dict(zip(header, values, strict=False)))
            return rows
    return []


def variant_axes(spec: Path) -> list[VariantAxis]:
    """Every axis of the model's profile, with its ID and rules from spec/variants.md where given.

    The model (:data:`AXES`, :data:`AXIS_REQUIREMENT`) is the authority on
    which axes and values exist; the table adds the ``V-`` ID and any other
    requirement its rule column names.
    """
    path = spec / "variants.md"
    rows = _table_rows(path.read_text(encoding="utf-8")) if path.is_file() else []
    by_key = {row.get("axis", "").strip("` "): row for row in rows}
    defaults = DEFAULT_PROFILE.to_mapping()
    axes = []
    for key, enum in AXES.items():
        row = by_key.get(key, {})
        named = VARIANT_ID.search(row.get("id", "")) or VARIANT_ID.search(enum.__doc__ or "")
        rids = set(expand(row.get("rule", "")))
        if key in AXIS_REQUIREMENT:
            rids.add(AXIS_REQUIREMENT[key])
        values = [v.value for v in enum]
        default = defaults[key]
        axes.append(VariantAxis(key, named[1] if named else "", default,
                                tuple(v for v in values if v != default), tuple(sorted(rids))))  # fmt: skip
    return axes


def formal_sites(sources: Sources) -> list[FormalSite]:
    """The z3 proofs (from their source: no z3 needed) and the CrossHair contracts (from their registry)."""
    sites = [
        FormalSite("z3 proof", p.name, sources.relative(p.path), p.line, p.summary, p.requirements)
        for p in declared_proofs().values()
    ]
    contracts = importlib.import_module("vpcid.model.contracts")
    for name, rids in dict(contracts.CONTRACTS).items():
        function = getattr(contracts, name)
        where = Path(inspect.getsourcefile(function) or contracts.__file__ or "")
        doc = (inspect.getdoc(function) or name).splitlines()[0]
        line = inspect.getsourcelines(function)[1]
        sites.append(FormalSite("CrossHair contract", name, sources.relative(where), line, doc, tuple(rids)))
    return sites


def vector_id(label: str, group: str) -> str:
    """The ID ``vpcid vectors generate`` gives the case labelled ``label`` (``group/case@type:bdf``)."""
    name = label.split("/", 1)[1].replace("@", "--").replace(":", "-").replace(".", "-")
    return f"{group}/{name}"


def _vector(label: str, description: str, requirements: tuple[str, ...], rules: Sequence[str | None],
            ops: Sequence[Op], group: str) -> Vector:  # fmt: skip
    seen = observations(ModelAdapter(), ops)
    prologue = len(ops) - len(rules)
    steps = tuple(
        VectorStep(i, op, seen[i] if i < len(seen) else "not run: the model crashed before it",
                   rules[i - prologue] if i >= prologue else None)
        for i, op in enumerate(ops)
    )  # fmt: skip
    return Vector(vector_id(label, group), description, requirements, steps)


# ------------------------------------------------------------------ the explainer


@dataclass
class Explainer:
    """Reads spec, model, tests, proofs and vectors once and explains any requirement.

    Vectors are computed on demand (the model runs each vector's operations)
    and kept, so explaining every requirement runs each vector once.
    """

    sources: Sources = field(default_factory=Sources.locate)
    _vectors: dict[str, Vector] = field(default_factory=dict, init=False, repr=False)

    @cached_property
    def requirements(self) -> dict[str, Requirement]:
        return load_requirements(self.sources.spec)

    @cached_property
    def model(self) -> dict[str, list[CitationSite]]:
        return model_sites(self.sources)

    @cached_property
    def tests(self) -> dict[str, list[TestSite]]:
        return test_sites(self.sources)

    @cached_property
    def formal(self) -> list[FormalSite]:
        return formal_sites(self.sources)

    @cached_property
    def variants(self) -> list[VariantAxis]:
        return variant_axes(self.sources.spec)

    @cached_property
    def cases(self) -> list[tuple[str, str, str, tuple[str, ...], tuple[str | None, ...], list[Op]]]:
        """(label, group, description, requirements, rules, operations) of every full-API vector."""
        info = AdapterInfo("vectors", Profile(), operations=FULL | EXTENSIONS)
        return [(label, case.group, case.description, case.requirements, case.rules, ops)
                for label, case, ops in applicable_cases(info)]  # fmt: skip

    def vectors_of(self, rid: str) -> list[Vector]:
        """The vectors with a step that checks ``rid``, in the vectors' order."""
        found = []
        for label, group, description, requirements, rules, ops in self.cases:
            if rid not in requirements:
                continue
            if label not in self._vectors:
                self._vectors[label] = _vector(label, description, requirements, rules, ops, group)
            found.append(self._vectors[label])
        return found

    def all_vectors(self) -> list[Vector]:
        """Every vector, computed once."""
        for rid in {r for case in self.cases for r in case[3]}:
            self.vectors_of(rid)
        return [self._vectors[label] for label, *_ in self.cases if label in self._vectors]

    def resolve(self, query: str) -> str:
        """The R-ID ``query`` names (``r-dec-5`` is R-DEC-005); :class:`UnknownRequirement` otherwise."""
        wanted = query.strip().upper()
        shape = RID_SHAPE.match(wanted)
        if shape is not None:
            wanted = f"R-{shape[1]}-{int(shape[2]):03d}"
        if wanted in self.requirements:
            return wanted
        close = difflib.get_close_matches(wanted, list(self.requirements), n=5, cutoff=0.6)
        group = wanted.split("-")[1] if wanted.count("-") >= 2 else ""
        same_group = [r for r in self.requirements if group and r.split("-")[1] == group][:5]
        hints = close or same_group
        hint = f"; did you mean {', '.join(hints)}?" if hints else "; vpcid trace lists every requirement"
        raise UnknownRequirement(f"{query!r} is not a requirement of the spec ({len(self.requirements)} "
                                 f"R-IDs in {self.sources.relative(self.sources.spec)}){hint}")  # fmt: skip

    def unavailable(self) -> tuple[str, ...]:
        """What this installation cannot show, and why."""
        missing = [] if self.sources.tests is not None else [TESTS_UNAVAILABLE]
        why_not = z3_missing()
        if why_not is not None:
            missing.append(f"z3 proofs are listed from their declarations but cannot be run here: {why_not}")
        return tuple(missing)

    def explain(self, query: str) -> Explanation:
        """Everything about the requirement ``query`` names."""
        rid = self.resolve(query)
        req = self.requirements[rid]
        return Explanation(
            requirement=req,
            spec_path=self.sources.relative(req.path),
            text=requirement_text(req),
            model=tuple(self.model.get(rid, ())),
            tests=tuple(self.tests.get(rid, ())),
            vectors=tuple(self.vectors_of(rid)),
            formal=tuple(f for f in self.formal if rid in f.requirements),
            variants=tuple(v for v in self.variants if rid in v.requirements),
            unavailable=self.unavailable(),
        )


# ------------------------------------------------------------------ the command


EXPLAIN_EXIT_STATUS = (
    "\b\nExit status:\n  0  explained\n"
    "  2  bad input: an R-ID the spec does not define (the closest are named)"
)


@click.command("explain", epilog=EXPLAIN_EXIT_STATUS)
@click.argument("requirement_ids", nargs=-1, required=True, metavar="R-ID...")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON (a list, one per R-ID).")
@click.option(
    "--full", is_flag=True, help="Show every step of every vector, not only the ones checking R-ID."
)
def explain_command(requirement_ids: tuple[str, ...], as_json: bool, full: bool) -> None:
    """A requirement and its evidence: text, model file:line, tests, vectors in hex, proofs, variants.

    Tests are found by their @pytest.mark.req markers (read, not run);
    vectors are the golden vectors of vpcid vectors generate, each step with
    the model's expected observation in the default profile (steps marked *
    check the requirement). Works without the dev extras: z3 proofs are
    listed from their declarations.

    \b
    Examples:
      vpcid explain R-DEC-005
      vpcid explain r-cfg-6 --full
      vpcid explain R-BAR-002 R-BAR-003 --json
    """
    explainer = Explainer()
    explanations = [explainer.explain(query) for query in requirement_ids]
    if as_json:
        click.echo(json.dumps([e.to_json() for e in explanations], indent=1))
        return
    click.echo("\n".join(e.render(full) for e in explanations), nl=False)


EXPLAIN_COMMANDS = (explain_command,)
"""The commands this module adds to ``vpcid`` (cli.py registers them)."""

__all__ = [
    "EXPLAIN_COMMANDS",
    "Explainer",
    "Explanation",
    "FormalSite",
    "UnknownRequirement",
    "VariantAxis",
    "Vector",
    "VectorStep",
    "formal_sites",
    "requirement_text",
    "variant_axes",
    "vector_id",
]
