"""Every requirement in spec/ is implemented by the model and checked by a test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from vpcid.conformance.traceability import (
    TESTS_UNAVAILABLE,
    Sources,
    TraceReport,
    expand,
    load_requirements,
    model_citations,
    model_sites,
    repository_root,
    test_citations,
    test_sites,
    trace,
)

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


def test_proofs_read_from_their_source_are_the_registered_ones() -> None:
    """evidence() reads the proofs' declarations without z3; they must be what importing registers."""
    pytest.importorskip("z3", reason="z3-solver (dev extra) is needed to import the proofs")
    from vpcid.conformance.formal import all_proofs, declared_proofs

    declared = declared_proofs()
    registered = all_proofs()
    assert sorted(declared) == sorted(registered)
    for name, proof in registered.items():
        assert declared[name].requirements == proof.requirements, name
        assert declared[name].summary == proof.summary, name


def test_the_formal_layer_imports_without_z3_and_says_why_proofs_cannot_run() -> None:
    script = (
        "import sys; sys.modules['z3'] = None\n"
        "from vpcid.conformance import formal\n"
        "assert formal.evidence()['R-CFG-001'] == {'z3', 'crosshair'}\n"
        "print(formal.z3_missing())\n"
        "try:\n    formal.Prover('p', ('R-CFG-001',))\n"
        "except ModuleNotFoundError as exc:\n    print(exc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert run.returncode == 0, run.stderr
    why, error = run.stdout.splitlines()
    hint = "the z3 proofs need z3-solver, in the dev extra: pip install 'vpcid[dev]'"
    assert why.startswith("z3 is not installed")
    assert why.endswith(hint)
    assert error == f"z3 is not installed: {hint}"


def test_an_installed_package_traces_without_tests_and_says_so(report: TraceReport) -> None:
    assert ROOT is not None
    checkout = Sources.checkout(ROOT)
    installed = trace(sources=Sources(checkout.spec, checkout.model, None, checkout.base))
    assert installed.unavailable == (TESTS_UNAVAILABLE,)
    assert report.unavailable == ()
    assert all(not e.tests for e in installed.evidence.values())
    model = {r: e.model for r, e in report.evidence.items()}
    assert {r: e.model for r, e in installed.evidence.items()} == model


def test_citation_sites_name_the_line_and_the_definition_around_it() -> None:
    assert ROOT is not None
    sources = Sources.checkout(ROOT)
    sites = model_sites(sources)
    assert set(sites) == {rid for rid, files in model_citations(ROOT / "model").items()}
    for rid, found in sites.items():
        for site in found:
            text = (ROOT / site.path).read_text(encoding="utf-8").splitlines()
            assert rid in expand(text[site.line - 1]), site
            assert site.start <= site.line <= site.end
            if site.symbol:
                name = site.symbol.rsplit(".", 1)[-1]
                assert any(name in line for line in text[: site.end]), f"{site}: {name} is not around it"
    tests = test_sites(sources)
    by_file_and_name = {
        rid: {f"{t.path.rsplit('/', 1)[-1]}::{t.node_id.rsplit('::', 1)[-1]}" for t in found}
        for rid, found in tests.items()
    }
    assert by_file_and_name == {rid: entry["tests"] for rid, entry in test_citations(ROOT / "tests").items()}
