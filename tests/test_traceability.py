"""Every requirement in spec/ is implemented by the model and checked by a test."""

from __future__ import annotations

from pathlib import Path

import pytest
from vpcid.conformance.traceability import TraceReport, expand, load_requirements, repository_root, trace

ROOT = repository_root()
CLAIMS = 21


@pytest.fixture(scope="module")
def report() -> TraceReport:
    assert ROOT is not None, "tests run from a source checkout"
    return trace(ROOT)


def test_spec_has_at_least_60_requirements(report: TraceReport) -> None:
    assert len(report.requirements) >= 60


def test_every_requirement_is_cited_by_the_model(report: TraceReport) -> None:
    assert report.untraced("model") == []


def test_every_requirement_is_checked_by_a_test(report: TraceReport) -> None:
    assert report.untraced("tests") == []


def test_no_citation_names_an_undefined_requirement(report: TraceReport) -> None:
    assert report.unknown_citations == {}


def test_claims_map_covers_all_claims_with_defined_requirements() -> None:
    assert ROOT is not None
    requirements = load_requirements(ROOT / "spec")
    rows = [line for line in (ROOT / "spec" / "claims.md").read_text().splitlines() if line.startswith("| ")]
    mapped: dict[int, set[str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if cells[0].isdigit():
            mapped[int(cells[0])] = expand(cells[2])
    assert sorted(mapped) == list(range(1, CLAIMS + 1))
    for claim, ids in mapped.items():
        assert ids, f"claim {claim} names no requirement"
        assert ids <= set(requirements), f"claim {claim} names undefined {ids - set(requirements)}"


def test_ranges_expand_and_bad_ranges_are_errors() -> None:
    assert expand("see R-SR-002..R-SR-004 and R-DS-001") == {"R-SR-002", "R-SR-003", "R-SR-004", "R-DS-001"}
    with pytest.raises(ValueError, match="bad requirement range"):
        expand("R-SR-004..R-SR-002")


def test_duplicate_requirement_ids_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("### R-XX-001 — one\n")
    (tmp_path / "b.md").write_text("### R-XX-001 — again\n")
    with pytest.raises(ValueError, match="defined twice"):
        load_requirements(tmp_path)
