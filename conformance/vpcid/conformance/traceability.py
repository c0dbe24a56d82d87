"""Requirement traceability: from each R-ID in spec/ to the code and the checks that cite it.

Citations are found as text: the model cites an ID in a docstring or comment;
a test cites it in ``@pytest.mark.req("R-...")``. A range ``R-X-001..R-X-004``
cites every ID in it. The tool fails the build (see tests/test_traceability.py)
when a requirement is uncited or a citation names an ID the spec lacks.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

REQUIREMENT_HEADING = re.compile(r"^### (R-[A-Z]+-\d{3}) — (.+)$")
CITATION = re.compile(r"\b(R-[A-Z]+-)(\d{3})(?:\.\.(R-[A-Z]+-)(\d{3}))?\b")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One numbered requirement of the spec."""

    rid: str
    title: str
    path: Path
    line: int


@dataclass
class Evidence:
    """Where one requirement is implemented and checked."""

    model: set[str] = field(default_factory=set)
    tests: set[str] = field(default_factory=set)
    vectors: set[str] = field(default_factory=set)
    kinds: set[str] = field(default_factory=set)
    """Kinds of checks: unit, property (Hypothesis), vector (scenario case), z3, crosshair."""


def repository_root() -> Path | None:
    """The source checkout this package runs from, if it runs from one (editable install)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "spec" / "README.md").is_file() and (parent / "pyproject.toml").is_file():
            return parent
    return None


def spec_dir() -> Path:
    """The spec folder: the checkout's, else the copy shipped inside the wheel."""
    root = repository_root()
    if root is not None:
        return root / "spec"
    shipped = Path(str(resources.files("vpcid.conformance") / "spec"))
    if shipped.is_dir():
        return shipped
    raise FileNotFoundError("the vpcid spec is neither in a checkout nor in the installed package")


def load_requirements(spec: Path | None = None) -> dict[str, Requirement]:
    """Every requirement heading under ``spec``, by ID; a duplicated ID is an error."""
    spec = spec or spec_dir()
    found: dict[str, Requirement] = {}
    for path in sorted(spec.rglob("*.md")):
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = REQUIREMENT_HEADING.match(text)
            if match is None:
                continue
            rid = match[1]
            if rid in found:
                raise ValueError(f"{rid} is defined twice: {found[rid].path} and {path}")
            found[rid] = Requirement(rid, match[2].strip(), path, number)
    return found


def expand(text: str) -> set[str]:
    """Every R-ID cited in ``text``, ranges expanded."""
    ids: set[str] = set()
    for prefix, first, prefix2, last in CITATION.findall(text):
        if not prefix2:
            ids.add(f"{prefix}{first}")
            continue
        if prefix2 != prefix or int(last) < int(first):
            raise ValueError(f"bad requirement range {prefix}{first}..{prefix2}{last}")
        ids.update(f"{prefix}{n:03d}" for n in range(int(first), int(last) + 1))
    return ids


def model_citations(model_dir: Path) -> dict[str, set[str]]:
    """R-ID -> model files (relative) citing it anywhere in their text."""
    cited: dict[str, set[str]] = {}
    for path in sorted(model_dir.rglob("*.py")):
        for rid in expand(path.read_text(encoding="utf-8")):
            cited.setdefault(rid, set()).add(path.name)
    return cited


def _marker_ids(decorator: ast.expr) -> Iterable[str]:
    """IDs of a ``pytest.mark.req("R-...", ...)`` decorator (or ``mark.req``)."""
    if not isinstance(decorator, ast.Call):
        return ()
    func = decorator.func
    if not (isinstance(func, ast.Attribute) and func.attr == "req"):
        return ()
    return (
        arg.value for arg in decorator.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
    )


def _uses_hypothesis(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", "")
        if name == "given":
            return True
    return isinstance(node, ast.ClassDef) and any(
        isinstance(b, ast.Name) and b.id == "RuleBasedStateMachine" for b in node.bases
    )


def test_citations(tests_dir: Path) -> dict[str, dict[str, set[str]]]:
    """R-ID -> {"tests": test names, "kinds": {"unit"|"property"}} from ``req`` markers."""
    cited: dict[str, dict[str, set[str]]] = {}
    for path in sorted(tests_dir.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            kind = "property" if _uses_hypothesis(node) else "unit"
            for decorator in node.decorator_list:
                for text in _marker_ids(decorator):
                    for rid in expand(text):
                        entry = cited.setdefault(rid, {"tests": set(), "kinds": set()})
                        entry["tests"].add(f"{path.name}::{node.name}")
                        entry["kinds"].add(kind)
    return cited


test_citations.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


@dataclass(frozen=True)
class TraceReport:
    """The traceability matrix and what is wrong with it."""

    requirements: dict[str, Requirement]
    evidence: dict[str, Evidence]
    unknown_citations: dict[str, set[str]]
    """Cited IDs the spec does not define -> where they are cited."""

    def untraced(self, where: str) -> list[str]:
        """IDs lacking a citation in ``where`` ("model" or "tests")."""
        return sorted(r for r, e in self.evidence.items() if not getattr(e, where))


def vector_citations() -> dict[str, set[str]]:
    """R-ID -> scenario cases (golden vectors) that check it."""
    from vpcid.conformance.cases import all_cases, default_targets

    cited: dict[str, set[str]] = {}
    for case in all_cases(default_targets()):
        for rid in case.requirements:
            cited.setdefault(rid, set()).add(f"{case.group}/{case.name}")
    return cited


def formal_citations() -> dict[str, set[str]]:
    """R-ID -> {"z3", "crosshair"}: what the formal layer establishes."""
    from vpcid.conformance.formal import evidence

    return {rid: set(kinds) for rid, kinds in evidence().items()}


def trace(root: Path | None = None, *, suite: bool = False) -> TraceReport:
    """Build the matrix from a source checkout (spec/, model/, tests/).

    With ``suite``, also count scenario cases (kind "vector") and the formal
    layer's proofs and contracts (kinds "z3", "crosshair").
    """
    root = root or repository_root()
    if root is None:
        raise FileNotFoundError("traceability needs a source checkout with spec/, model/ and tests/")
    requirements = load_requirements(root / "spec")
    evidence = {rid: Evidence() for rid in requirements}
    unknown: dict[str, set[str]] = {}
    for rid, files in model_citations(root / "model").items():
        if rid in evidence:
            evidence[rid].model |= files
        else:
            unknown.setdefault(rid, set()).update(files)
    for rid, entry in test_citations(root / "tests").items():
        if rid in evidence:
            evidence[rid].tests |= entry["tests"]
            evidence[rid].kinds |= entry["kinds"]
        else:
            unknown.setdefault(rid, set()).update(entry["tests"])
    if suite:
        for source, kinds in ((vector_citations(), None), (formal_citations(), "formal")):
            for rid, names in source.items():
                if rid not in evidence:
                    unknown.setdefault(rid, set()).update(names)
                elif kinds is None:
                    evidence[rid].kinds.add("vector")
                    evidence[rid].vectors |= names
                else:
                    evidence[rid].kinds |= names
    return TraceReport(requirements, evidence, unknown)
