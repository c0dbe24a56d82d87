"""Requirement traceability: from each R-ID in spec/ to the code and the checks that cite it.

Citations are found as text: the model cites an ID in a docstring or comment;
a test cites it in ``@pytest.mark.req("R-...")``. A range ``R-X-001..R-X-004``
cites every ID in it. The tool fails the build (see tests/test_traceability.py)
when a requirement is uncited or a citation names an ID the spec lacks.

The sources are a checkout's spec/, model/ and tests/, or, in an installed
package, the shipped spec and the installed model (:class:`Sources`); tests
are not installed, so what they show is then reported as unavailable.
:func:`model_sites` and :func:`test_sites` give each citation's file, line
and enclosing definition (``vpcid explain``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import vpcid.model

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


@dataclass(frozen=True)
class Sources:
    """Where the spec, the model and the tests are read from."""

    spec: Path
    model: Path
    """A folder whose ``*.py`` files (searched recursively) are the model."""
    tests: Path | None
    """None in an installed package: test citations cannot be shown."""
    base: Path
    """Paths are shown relative to this folder (the checkout, or the installed ``vpcid`` package's parent)."""

    @classmethod
    def checkout(cls, root: Path) -> Sources:
        """A source checkout's spec/, model/ and tests/."""
        return cls(root / "spec", root / "model", root / "tests", root)

    @classmethod
    def locate(cls) -> Sources:
        """The checkout this package runs from, else the installed package (spec shipped, no tests)."""
        root = repository_root()
        if root is not None:
            return cls.checkout(root)
        model = Path(vpcid.model.__file__).resolve().parent
        return cls(spec_dir(), model, None, model.parent.parent)

    def relative(self, path: Path) -> str:
        """``path`` as shown to people: relative to :attr:`base`, with forward slashes."""
        try:
            return path.resolve().relative_to(self.base.resolve()).as_posix()
        except ValueError:
            return path.as_posix()


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


@dataclass(frozen=True, slots=True)
class CitationSite:
    """One line of the model that cites a requirement, and the definition around it."""

    path: str
    """Relative to :attr:`Sources.base`, e.g. ``model/vpcid/model/manager.py``."""
    line: int
    symbol: str
    """Qualified name of the innermost function or class containing the line; "" at module level."""
    start: int
    end: int
    """Lines worth showing around the citation (the definition, or a window of a long one)."""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" + (f" {self.symbol}" if self.symbol else "")


@dataclass(frozen=True, slots=True)
class TestSite:
    """A test (function or class) whose ``req`` marker cites a requirement."""

    node_id: str
    """The pytest node ID, e.g. ``tests/test_decode.py::test_enable``."""
    path: str
    line: int
    end: int
    """First line (its decorators included) and last line of the definition."""
    kind: str
    """"unit" or "property" (Hypothesis)."""

    __test__ = False  # not a pytest test class

    def __str__(self) -> str:
        return f"{self.node_id} ({self.path}:{self.line})"


SNIPPET_LINES = 60
"""A definition longer than this is shown as a window around the citation."""
WINDOW = 6
"""Lines either side of a citation in a long definition or at module level."""


def _definitions(tree: ast.Module) -> list[tuple[int, int, str]]:
    """(first line with decorators, last line, qualified name) of every function and class, and of
    every module-level assignment to a name (a table such as ``AXIS_REQUIREMENT``)."""
    found: list[tuple[int, int, str]] = []
    for statement in tree.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if names:
            found.append((statement.lineno, statement.end_lineno or statement.lineno, names[0]))

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                found.append((first, child.end_lineno or child.lineno, name))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _site(path: str, line: int, definitions: Sequence[tuple[int, int, str]], last: int) -> CitationSite:
    around = [d for d in definitions if d[0] <= line <= d[1]]
    if not around:
        return CitationSite(path, line, "", max(1, line - WINDOW), min(last, line + WINDOW))
    first, end, name = min(around, key=lambda d: d[1] - d[0])
    if end - first + 1 > SNIPPET_LINES:
        first, end = max(first, line - WINDOW), min(end, line + WINDOW)
    return CitationSite(path, line, name, first, end)


def model_sites(sources: Sources) -> dict[str, list[CitationSite]]:
    """R-ID -> every model line citing it, in file and line order."""
    sites: dict[str, list[CitationSite]] = {}
    for path in sorted(sources.model.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        definitions = _definitions(ast.parse(text, filename=str(path)))
        shown = sources.relative(path)
        for number, line in enumerate(lines, start=1):
            for rid in sorted(expand(line)):
                sites.setdefault(rid, []).append(_site(shown, number, definitions, len(lines)))
    return sites


def test_sites(sources: Sources) -> dict[str, list[TestSite]]:
    """R-ID -> the tests whose ``req`` markers cite it, with pytest node IDs; {} without tests."""
    if sources.tests is None:
        return {}
    sites: dict[str, list[TestSite]] = {}
    for path in sorted(sources.tests.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        shown = sources.relative(path)

        def visit(node: ast.AST, prefix: str, shown: str = shown) -> None:
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    continue
                node_id = f"{prefix}::{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                kind = "property" if _uses_hypothesis(child) else "unit"
                site = TestSite(node_id, shown, first, child.end_lineno or child.lineno, kind)
                rids = {rid for d in child.decorator_list for text in _marker_ids(d) for rid in expand(text)}
                for rid in sorted(rids):
                    sites.setdefault(rid, []).append(site)
                if isinstance(child, ast.ClassDef):
                    visit(child, node_id)

        visit(tree, shown)
    return sites


test_sites.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


@dataclass(frozen=True)
class TraceReport:
    """The traceability matrix and what is wrong with it."""

    requirements: dict[str, Requirement]
    evidence: dict[str, Evidence]
    unknown_citations: dict[str, set[str]]
    """Cited IDs the spec does not define -> where they are cited."""
    unavailable: tuple[str, ...] = ()
    """What could not be read here, and why (no tests/ in an installed package)."""

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


TESTS_UNAVAILABLE = "tests: an installed package has no tests/; test citations need a source checkout"


def trace(root: Path | None = None, *, suite: bool = False, sources: Sources | None = None) -> TraceReport:
    """Build the matrix from a source checkout (spec/, model/, tests/), or from ``sources``.

    Without either, the checkout this package runs from, else the installed
    package (:meth:`Sources.locate`). With ``suite``, also count scenario
    cases (kind "vector") and the formal layer's proofs and contracts (kinds
    "z3", "crosshair"), read from their declarations: no z3 needed.
    """
    if sources is None:
        sources = Sources.checkout(root) if root is not None else Sources.locate()
    requirements = load_requirements(sources.spec)
    evidence = {rid: Evidence() for rid in requirements}
    unknown: dict[str, set[str]] = {}
    unavailable = () if sources.tests is not None else (TESTS_UNAVAILABLE,)
    for rid, files in model_citations(sources.model).items():
        if rid in evidence:
            evidence[rid].model |= files
        else:
            unknown.setdefault(rid, set()).update(files)
    tests = test_citations(sources.tests) if sources.tests is not None else {}
    for rid, entry in tests.items():
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
    return TraceReport(requirements, evidence, unknown, unavailable)
