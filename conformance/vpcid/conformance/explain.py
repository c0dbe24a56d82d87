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

import ast
import difflib
import importlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
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
    repository_root,
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
    from vpcid.conformance.vectors import vector_name

    return f"{group}/{vector_name(label)}"


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


# ------------------------------------------------------------------ the rendered spec


class SiteError(VpcidError, RuntimeError):
    """The rendered spec cannot be built here (no checkout, no docs extra, or Sphinx failed)."""

    kind = "spec-site"


EVIDENCE = "evidence"
"""Folder of the generated evidence pages inside the site."""
EXAMPLES = 2
"""Worked examples shown under each requirement (from different cases)."""
EXAMPLE_LINES = 30
"""Longest worked example, in steps; a longer one shows the steps around each checking step."""
CONTEXT_STEPS = 2
"""Steps shown before each checking step when a worked example is cut."""
LINK_TARGET = re.compile(r"\]\(([^)\s#:]+)(#[^)\s]*)?\)")
"""A relative Markdown link target (no scheme): ``](path#fragment)``."""
LANGUAGES = {".py": "python", ".md": "markdown", ".json": "json", ".toml": "toml", ".pyx": "cython"}


def slug(text: str) -> str:
    """An HTML id made of lowercase letters, digits and hyphens (what Sphinx keeps of a label)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def requirement_anchor(rid: str) -> str:
    """The id of a requirement's section in the rendered spec: ``r-dec-005``."""
    return slug(rid)


def _fenced(body: str, directive: str, options: Sequence[str] = ()) -> str:
    """A MyST fenced directive (``directive`` is its name and argument, e.g. ``code-block python``)
    whose fence is longer than any run of backticks in ``body``."""
    runs = [len(run) for run in re.findall(r"`+", body)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    name, _, argument = directive.partition(" ")
    head = [f"{fence}{{{name}}} {argument}".rstrip(), *options]
    return "\n".join([*head, "", body.rstrip("\n"), fence]) + "\n"


def _rubric(text: str) -> str:
    """A MyST rubric: a heading that stays out of the table of contents."""
    return f"```{{rubric}} {text}\n```"


def _code(path: Path, first: int, last: int, marked: Sequence[int]) -> str:
    """Lines ``first..last`` of a source file as a numbered code block, ``marked`` lines emphasised."""
    lines = path.read_text(encoding="utf-8").splitlines()[first - 1 : last]
    options = [f":lineno-start: {first}"]
    emphasised = sorted({m - first + 1 for m in marked if first <= m <= last})
    if emphasised:
        options.append(f":emphasize-lines: {','.join(map(str, emphasised))}")
    language = LANGUAGES.get(path.suffix, "text")
    return _fenced("\n".join(lines) or " ", f"code-block {language}", options)


def _step_line(step: VectorStep, rid: str | None) -> str:
    mark = "*" if rid is not None and step.rule == rid else " "
    rule = f"   [{step.rule}]" if rid is None and step.rule else ""
    return f"{mark}{step.index:>4}  {step.operation} -> {step.observation}{rule}"


def _excerpt(vector: Vector, rid: str) -> list[str]:
    """The steps up to the last one checking ``rid``; when too long, those around each checking step."""
    checking = [s.index for s in vector.checking(rid)]
    steps = vector.steps[: checking[-1] + 1] if checking else vector.steps
    if len(steps) <= EXAMPLE_LINES:
        return [_step_line(s, rid) for s in steps]
    keep = {i for c in checking for i in range(max(0, c - CONTEXT_STEPS), c + 1)}
    lines: list[str] = []
    for step in steps:
        if step.index in keep:
            lines.append(_step_line(step, rid))
        elif not lines or lines[-1] != "     ...":
            lines.append("     ...")
    return lines


def _definition_span(path: Path, line: int) -> tuple[int, int]:
    """First line (decorators included) and last line of the definition starting at ``line``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if line in (first, node.lineno):
                return first, node.end_lineno or node.lineno
    return line, line


@dataclass
class SiteSources:
    """Writes the Markdown sources of the rendered spec (Sphinx with MyST builds them).

    The spec's own files are copied unchanged but for three additions: a
    label before each requirement heading (its anchor, :func:`requirement_anchor`),
    an evidence block after each requirement's text (worked examples from its
    vectors in hex, links to its model code, tests, vectors, proofs and
    variant axis, all from :class:`Explainer`), and links that leave spec/
    pointed at a generated page showing the file. The evidence pages
    (model code, tests, proofs and contracts, vectors by group) are generated
    from the same data. docs/site/vpcid_site.py turns every R-ID mention into
    a link to its requirement.
    """

    explainer: Explainer
    destination: Path
    outside: dict[str, Path] = field(default_factory=dict)
    """Link targets outside spec/ (repository-relative path -> file or folder) to show on the files page."""

    @property
    def sources(self) -> Sources:
        return self.explainer.sources

    def link(self, from_doc: str, to_doc: str, anchor: str, text: str) -> str:
        """A Markdown link from document ``from_doc`` to ``anchor`` in ``to_doc`` (both without suffix)."""
        target = os.path.relpath(f"{to_doc}.md", os.path.dirname(from_doc) or ".")
        return f"[`{text}`]({Path(target).as_posix()}#{anchor})"

    def write(self) -> list[str]:
        """Write every page; return the document names (without ``.md``), the index first."""
        spec = self.sources.spec
        documents: list[str] = []
        by_file: dict[Path, list[Requirement]] = {}
        for req in self.explainer.requirements.values():
            by_file.setdefault(req.path, []).append(req)
        for path in sorted(spec.rglob("*")):
            if path.is_dir():
                continue
            relative = path.relative_to(spec)
            target = self.destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix != ".md":
                target.write_bytes(path.read_bytes())
                continue
            document = relative.with_suffix("").as_posix()
            text = self._with_evidence(path, document, by_file.get(path, []))
            target.write_text(self._outside_links(text, path, document), encoding="utf-8")
            documents.append(document)
        evidence = self._evidence_pages()
        self._write("index", self._index(documents))
        return ["index", *documents, *evidence]

    def _write(self, document: str, text: str) -> None:
        path = self.destination / f"{document}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    # -- spec pages

    def _with_evidence(self, path: Path, document: str, requirements: Sequence[Requirement]) -> str:
        lines = path.read_text(encoding="utf-8").splitlines()
        starts = {req.line: req for req in requirements}
        out: list[str] = []
        current: Requirement | None = None
        for number, line in enumerate(lines, start=1):
            if line.startswith("#") and current is not None:
                out += ["", self._evidence_block(current, document), ""]
                current = None
            if number in starts:
                current = starts[number]
                out += ["", f"({requirement_anchor(current.rid)})="]
            out.append(line)
        if current is not None:
            out += ["", self._evidence_block(current, document)]
        return "\n".join(out) + "\n"

    def _outside_links(self, text: str, path: Path, document: str) -> str:
        """Point links that leave spec/ at the generated files page; others stay as written."""
        spec = self.sources.spec.resolve()

        def replace(match: re.Match[str]) -> str:
            target = (path.parent / match[1]).resolve()
            if target.is_relative_to(spec) or not target.exists():
                return match[0]
            shown = self.sources.relative(target)
            self.outside[shown] = target
            relative = os.path.relpath(f"{EVIDENCE}/files.md", os.path.dirname(document) or ".")
            return f"]({Path(relative).as_posix()}#{slug('file-' + shown)})"

        return LINK_TARGET.sub(replace, text)

    def _evidence_block(self, req: Requirement, document: str) -> str:
        found = self.explainer.explain(req.rid)
        parts: list[str] = []
        for axis in found.variants:
            alternatives = ", ".join(f"`{v}`" for v in axis.alternatives)
            parts.append(f"**Variant axis** {axis.variant_id} (`{axis.key}`): default `{axis.default}`; "
                         f"alternatives {alternatives} ([declared variants](" +
                         Path(os.path.relpath("variants.md", os.path.dirname(document) or ".")).as_posix()
                         + ")).")  # fmt: skip
        examples: list[Vector] = []
        for vector in sorted(found.vectors, key=lambda v: _example_rank(v, req.rid)):
            if len(examples) < EXAMPLES and all(_case(vector) != _case(e) for e in examples):
                examples.append(vector)
        for vector in examples:
            link = self._vector_link(document, vector)
            parts.append(
                f"**Worked example**, vector {link}: {vector.description.rstrip('.')}. Steps marked `*` "
                f"check {req.rid}; each line is an operation and the observation the model expects "
                "(default profile), numbers in hex."
            )
            parts.append(_fenced("\n".join(_excerpt(vector, req.rid)), "code-block text").rstrip("\n"))
        items = [
            ("Model", [self._model_link(document, site) for site in found.model]),
            ("Tests", [self._test_link(document, test) for test in found.tests]),
            ("Vectors", [self._vector_link(document, vector) for vector in found.vectors]),
            ("Proofs and contracts", [self._formal_link(document, item) for item in found.formal]),
        ]
        for name, links in items:
            parts.append(f"**{name}** ({len(links)}): " + (", ".join(links) if links else "none."))
        for why in found.unavailable:
            parts.append(f"*Not shown:* {why}")
        return _fenced("\n\n".join(parts), "admonition Evidence", [":class: vpcid-evidence"]).rstrip("\n")

    # -- evidence pages

    @staticmethod
    def _code_anchor(site: CitationSite) -> str:
        return slug(f"code-{site.path}-{site.start}-{site.end}")

    @staticmethod
    def _formal_anchor(item: FormalSite) -> str:
        return slug(f"{'proof' if item.kind == 'z3 proof' else 'contract'}-{item.name}")

    @staticmethod
    def _vector_page(vector: Vector) -> str:
        return f"{EVIDENCE}/vectors/{vector.vector_id.split('/', 1)[0]}"

    def _model_link(self, document: str, site: CitationSite) -> str:
        text = f"{Path(site.path).name}:{site.line} {site.symbol}".strip()
        return self.link(document, f"{EVIDENCE}/model", self._code_anchor(site), text)

    def _test_link(self, document: str, test: TestSite) -> str:
        text = test.node_id.removeprefix("tests/")
        return self.link(document, f"{EVIDENCE}/tests", slug(f"test-{test.node_id}"), text)

    def _formal_link(self, document: str, item: FormalSite) -> str:
        return self.link(
            document, f"{EVIDENCE}/formal", self._formal_anchor(item), f"{item.kind} {item.name}"
        )

    def _vector_link(self, document: str, vector: Vector) -> str:
        return self.link(
            document, self._vector_page(vector), slug(f"vector-{vector.vector_id}"), vector.vector_id
        )

    def _evidence_pages(self) -> list[str]:
        base = self.sources.base
        model: dict[tuple[str, int, int], list[CitationSite]] = {}
        for sites in self.explainer.model.values():
            for site in sites:
                model.setdefault((site.path, site.start, site.end), []).append(site)
        pages = {f"{EVIDENCE}/model": self._model_page(model)}
        tests: dict[str, tuple[TestSite, list[str]]] = {}
        for rid, found in self.explainer.tests.items():
            for test in found:
                tests.setdefault(test.node_id, (test, []))[1].append(rid)
        pages[f"{EVIDENCE}/tests"] = self._tests_page(tests)
        pages[f"{EVIDENCE}/formal"] = self._formal_page(self.explainer.formal, base)
        groups: dict[str, list[Vector]] = {}
        for vector in self.explainer.all_vectors():
            groups.setdefault(self._vector_page(vector), []).append(vector)
        for document, vectors in groups.items():
            pages[document] = self._vectors_page(document.rsplit("/", 1)[1], vectors)
        pages[f"{EVIDENCE}/files"] = self._files_page()
        children = [d.removeprefix(f"{EVIDENCE}/") for d in pages]
        index = (
            "# Evidence\n\nGenerated by `vpcid spec-site` from the data `vpcid explain` shows: the model's "
            "code that cites each requirement, the tests whose `req` markers cite it, the z3 proofs and "
            "CrossHair contracts, and every golden vector with the model's expected observations in hex.\n\n"
            + _fenced("\n".join(children), "toctree", [":maxdepth: 1"])
        )
        pages[f"{EVIDENCE}/index"] = index
        for document, text in pages.items():
            self._write(document, text)
        return list(pages)

    def _model_page(self, snippets: dict[tuple[str, int, int], list[CitationSite]]) -> str:
        out = ["# Model code citing requirements", "",
               "Each block is the definition around lines of the model that cite a requirement "
               "(highlighted), or a window of it when the definition is long.", ""]  # fmt: skip
        current = ""
        for (path, start, end), sites in sorted(snippets.items()):
            if path != current:
                out += [f"## {path}", ""]
                current = path
            cites = ", ".join(f"{rid} (line {line})" for rid, line in sorted(
                {(rid, s.line) for rid, found in self.explainer.model.items() for s in found
                 if (s.path, s.start, s.end) == (path, start, end)}, key=lambda p: (p[1], p[0])))  # fmt: skip
            symbol = sites[0].symbol or "module docstring or comment"
            out += [f"({self._code_anchor(sites[0])})=",
                    _rubric(f"{path}:{start}-{end} · {symbol}"), "",
                    f"Cites {cites}.", "",
                    _code(self.sources.base / path, start, end, [s.line for s in sites])]  # fmt: skip
        return "\n".join(out)

    def _tests_page(self, tests: dict[str, tuple[TestSite, list[str]]]) -> str:
        out = ["# Tests citing requirements", "",
               "Each test's `@pytest.mark.req` markers name the requirements it checks; "
               "property tests use Hypothesis.", ""]  # fmt: skip
        current = ""
        for node_id, (test, rids) in sorted(tests.items(), key=lambda t: (t[1][0].path, t[1][0].line)):
            if test.path != current:
                out += [f"## {test.path}", ""]
                current = test.path
            out += [f"({slug('test-' + node_id)})=", _rubric(node_id), "",
                    f"Checks {', '.join(sorted(set(rids)))} ({test.kind} test, line {test.line}).", "",
                    _code(self.sources.base / test.path, test.line, test.end, [])]  # fmt: skip
        return "\n".join(out)

    def _formal_page(self, items: Sequence[FormalSite], base: Path) -> str:
        out = ["# Proofs and contracts", "",
               "z3 proofs run the model's own functions on symbolic values (spec/proofs/README.md); "
               "CrossHair checks the contracts' post-conditions. Both run in CI "
               "(tests/test_proofs.py, tests/test_crosshair.py).", ""]  # fmt: skip
        for item in items:
            first, last = _definition_span(base / item.path, item.line)
            out += [f"({self._formal_anchor(item)})=", _rubric(f"{item.kind} {item.name}"),
                    "", f"{item.summary} Establishes {', '.join(item.requirements)}.", "",
                    _code(base / item.path, first, last, [])]  # fmt: skip
        return "\n".join(out)

    def _vectors_page(self, group: str, vectors: Sequence[Vector]) -> str:
        out = [f"# Vectors: {group}", "",
               "Each vector is a golden vector of `vpcid vectors generate`: its operations and the "
               "observations the model expects in the default profile, numbers in hex, steps numbered "
               "from 0 (`init`); each step checks the requirement in brackets (none: set-up).",
               ""]  # fmt: skip
        for vector in vectors:
            steps = "\n".join(_step_line(s, None) for s in vector.steps)
            out += [f"({slug('vector-' + vector.vector_id)})=", _rubric(vector.vector_id), "",
                    f"{vector.description.rstrip('.')}. Checks {', '.join(vector.requirements)}.", "",
                    _fenced(steps, "code-block text")]  # fmt: skip
        return "\n".join(out)

    def _files_page(self) -> str:
        out = ["# Repository files the spec links to", ""]
        if not self.outside:
            out.append("The spec links to no file outside spec/.")
        for shown, target in sorted(self.outside.items()):
            out += [f"({slug('file-' + shown)})=", f"## {shown}", ""]
            files = (
                sorted(p for p in target.rglob("*") if p.suffix in LANGUAGES) if target.is_dir() else [target]
            )
            for path in files:
                if target.is_dir():
                    out += [_rubric(self.sources.relative(path)), ""]
                last = len(path.read_text(encoding="utf-8").splitlines())
                out.append(_code(path, 1, max(last, 1), []))
        return "\n".join(out)

    def _index(self, documents: Sequence[str]) -> str:
        def order(document: str) -> tuple[int, str]:
            for rank, prefix in enumerate(
                ("README", "requirements/", "variants", "claims", "formats/", "proofs/")
            ):
                if document.startswith(prefix):
                    return rank, document
            return 6, document

        listed = [*sorted(documents, key=order), f"{EVIDENCE}/index"]
        return (
            "# vpcid specification\n\nThe normative text of spec/, rendered by `vpcid spec-site`. Every "
            "requirement ID is an anchor (`#r-dec-005`) and every mention of one a link; under each "
            "requirement, worked examples from its golden vectors in hex and links to the model code, "
            "tests, vectors, proofs and variant axis that bear on it.\n\n"
            + _fenced("\n".join(listed), "toctree", [":maxdepth: 1"])
        )


def _example_rank(vector: Vector, rid: str) -> tuple[bool, int, str]:
    """Worked examples first: a vector where a checked step reads a value, then the shortest."""
    checking = vector.checking(rid)
    reads = any(isinstance(s.expected, Observation) and s.expected.value is not None for s in checking)
    return not reads, checking[-1].index if checking else len(vector.steps), vector.vector_id


def _case(vector: Vector) -> str:
    """The scenario a vector plays, without the device it plays it on."""
    return vector.vector_id.split("--", 1)[0]


def _importable(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that is not a package, or a module blocked in sys.modules
        return False


def site_configuration() -> Path:
    """docs/site of the checkout: the Sphinx configuration and the R-ID link extension."""
    root = repository_root()
    folder = root / "docs" / "site" if root is not None else None
    if folder is None or not (folder / "conf.py").is_file():
        raise SiteError(
            "vpcid spec-site builds from a source checkout: its Sphinx configuration is docs/site"
        )
    return folder


def build_site(output: Path, explainer: Explainer | None = None) -> list[str]:
    """Build the rendered spec into ``output`` (``index.html`` at its top); return its documents.

    Sphinx runs with warnings as errors, so a link to a missing page or
    anchor, or an R-ID the spec does not define, fails the build
    (:class:`SiteError` with Sphinx's messages).
    """
    missing = [name for name in ("sphinx", "myst_parser") if not _importable(name)]
    if missing:
        raise SiteError(f"the rendered spec needs {' and '.join(missing)}, in the docs extra: "
                        "pip install 'vpcid[docs]'")  # fmt: skip
    configuration = site_configuration()
    explainer = explainer or Explainer()
    with tempfile.TemporaryDirectory(prefix="vpcid-site-") as scratch:
        source = Path(scratch) / "source"
        documents = SiteSources(explainer, source).write()
        command = [
            sys.executable,
            "-m",
            "sphinx",
            "-b",
            "html",
            "-W",
            "--keep-going",
            "-q",
            "-E",
            "-c",
            str(configuration),
            "-d",
            str(Path(scratch) / "doctrees"),
            str(source),
            str(output),
        ]
        run = subprocess.run(command, capture_output=True, text=True, check=False)  # fmt: skip
    if run.returncode != 0:
        messages = "\n".join((run.stderr or run.stdout).strip().splitlines()[-20:])
        raise SiteError(f"Sphinx could not build the spec site (exit {run.returncode}):\n{messages}")
    return documents


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


DEFAULT_SITE = Path("build") / "spec-site"
"""Where ``vpcid spec-site`` writes by default, under the checkout (reports link there by default)."""


@click.command(
    "spec-site",
    epilog="\b\nExit status:\n  0  built\n  2  bad input: no OUTPUT outside a checkout, or the site cannot"
    " be built here (the docs extra is missing, a broken link or R-ID); the reason is printed",
)
@click.argument("output", type=click.Path(file_okay=False, path_type=Path), required=False)
def spec_site_command(output: Path | None) -> None:
    """Build the rendered spec: a static HTML site of spec/ (Sphinx and MyST, the docs extra).

    Every requirement ID is an anchor (requirements/03-decode-and-routing.html#r-dec-005)
    and every mention of one a link; each requirement shows worked examples
    from its golden vectors in hex and links to its model code, tests,
    vectors and proofs. OUTPUT defaults to build/spec-site in the checkout,
    where certification reports link (set VPCID_SPEC_SITE to link elsewhere).

    \b
    Examples:
      vpcid spec-site                 # build/spec-site/index.html
      vpcid spec-site /tmp/spec-html
    """
    if output is None:
        root = repository_root()
        if root is None:
            raise SiteError("give an OUTPUT folder: there is no checkout to put build/spec-site in")
        output = root / DEFAULT_SITE
    documents = build_site(output)
    click.echo(f"wrote the spec site ({len(documents)} pages) to {output / 'index.html'}")


EXPLAIN_COMMANDS = (explain_command, spec_site_command)
"""The commands this module adds to ``vpcid`` (cli.py registers them)."""

__all__ = [
    "DEFAULT_SITE",
    "EXPLAIN_COMMANDS",
    "Explainer",
    "Explanation",
    "FormalSite",
    "SiteError",
    "SiteSources",
    "UnknownRequirement",
    "VariantAxis",
    "Vector",
    "VectorStep",
    "build_site",
    "formal_sites",
    "requirement_anchor",
    "requirement_text",
    "variant_axes",
    "vector_id",
]
