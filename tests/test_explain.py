"""``vpcid explain``: one requirement's text and evidence, each item pointing at something real."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from vpcid.conformance.cli import main
from vpcid.conformance.explain import Explainer, UnknownRequirement
from vpcid.conformance.traceability import Sources, expand, repository_root

ROOT = repository_root()
HEX_STEP = re.compile(r"^ {3}\*\s*\d+  \S.* -> (0x[0-9a-f]+|ok|error \S+|blob digest .+|tables .*)$")

WITHOUT_DEV_EXTRAS = """
import sys
for name in ("z3", "crosshair", "capstone", "pytest", "_pytest", "mypy", "cosmic_ray", "Cython"):
    sys.modules[name] = None  # importing any of them now raises ModuleNotFoundError
from vpcid.conformance.cli import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    assert ROOT is not None, "tests run from a source checkout"
    return Explainer(Sources.checkout(ROOT))


def test_explain_prints_text_model_lines_tests_and_vectors_in_hex() -> None:
    result = CliRunner().invoke(main, ["explain", "R-DEC-005"])
    assert result.exit_code == 0, result.output
    out = result.output
    title, where = out.splitlines()[:2]
    assert title == "R-DEC-005 — Writing a BAR that decodes"
    assert where.startswith("spec/requirements/03-decode-and-routing.md:")
    assert "Variant axis `V-BAR-MOVE`" in out, "the requirement's own text"
    assert re.search(r"^  model/vpcid/model/manager\.py:\d+  DataManager\.\w+$", out, re.MULTILINE)
    assert "  tests/test_decode.py::test_immediate_bars_move_at_once  (line " in out
    assert "  decode/move-while-decoding-bar0--e1000-00-02-0 — " in out
    assert any(HEX_STEP.match(line) for line in out.splitlines()), out
    assert "V-BAR-MOVE (bar_move_while_decoding): default immediate; alternatives deferred, ignored" in out
    assert "Proofs and contracts (none):" in out


def test_explain_names_the_proofs_and_contracts_of_a_proved_requirement() -> None:
    result = CliRunner().invoke(main, ["explain", "R-CFG-001"])
    assert result.exit_code == 0, result.output
    proof = r"z3 proof masked_write \(conformance/vpcid/conformance/proofs/masked_write\.py:\d+\)"
    contract = r"CrossHair contract masked_write \(model/vpcid/model/contracts\.py:\d+\)"
    assert re.search(proof, result.output)
    assert re.search(contract, result.output)


def test_every_place_explain_points_at_cites_the_requirement(explainer: Explainer) -> None:
    assert ROOT is not None
    for query in ("R-DEC-005", "R-CFG-006", "R-SR-003", "R-CAM-004"):
        found = explainer.explain(query)
        assert found.model, query
        assert found.tests, query
        assert found.vectors, query
        for site in found.model:
            line = (ROOT / site.path).read_text(encoding="utf-8").splitlines()[site.line - 1]
            assert query in expand(line), f"{site} does not cite {query}"
            assert site.start <= site.line <= site.end
        for test in found.tests:
            path, _, name = test.node_id.partition("::")
            source = (ROOT / path).read_text(encoding="utf-8").splitlines()
            defined = source[test.line - 1 : test.end]
            header = re.compile(rf"\s*(async )?(def|class) {name.split('::')[-1]}\b")
            at = next(i for i, ln in enumerate(defined) if header.match(ln))
            assert query in expand(" ".join(defined[:at])), f"{test}: its decorators do not cite {query}"
        for proof in found.formal:
            text = (ROOT / proof.path).read_text(encoding="utf-8").splitlines()
            assert f"def {proof.name}(" in "\n".join(text[proof.line - 1 : proof.line + 2])
        for vector in found.vectors:
            assert query in vector.requirements
            assert vector.checking(query), f"{vector.vector_id} has no step checking {query}"


def test_vectors_are_those_vectors_generate_writes_with_the_same_steps(
    full_vectors: tuple[Path, str],
) -> None:
    assert ROOT is not None
    directory = full_vectors[0]
    index = json.loads((directory / "index.json").read_text())
    explained = Explainer(Sources.checkout(ROOT)).all_vectors()
    assert [v.vector_id for v in explained] == [case["id"] for case in index["cases"]]
    for vector in explained:
        manifest = json.loads((directory / vector.vector_id / "manifest.json").read_text())
        assert list(vector.requirements) == manifest["requirements"], vector.vector_id
        lines = (directory / vector.vector_id / "trace.jsonl").read_text().splitlines()[1:]
        steps = [json.loads(line) for line in lines]
        mine = [s.to_json() for s in vector.steps]
        assert [{**m["op"], "expect": m["expect"]} for m in mine] == steps, vector.vector_id


def test_json_carries_every_step_and_marks_those_checking_the_requirement() -> None:
    result = CliRunner().invoke(main, ["explain", "r-cfg-6", "R-DS-001", "--json"])
    assert result.exit_code == 0, result.output
    first, second = json.loads(result.output)
    assert (first["requirement"], second["requirement"]) == ("R-CFG-006", "R-DS-001")
    assert first["variants"][0]["id"] == "V-STATUS"
    assert second["variants"] == []
    for vector in first["vectors"]:
        checking = vector["checking_steps"]
        assert checking
        assert all(vector["steps"][i]["rule"] == "R-CFG-006" for i in checking)
        assert vector["steps"][0]["op"] == {"op": "init"}
        assert all(" -> " in step["text"] for step in vector["steps"])
    assert first["text"].startswith("The device type's RW1C status bits")


def test_full_shows_set_up_steps_too() -> None:
    short = CliRunner().invoke(main, ["explain", "R-DEC-004"]).output
    full = CliRunner().invoke(main, ["explain", "R-DEC-004", "--full"]).output
    assert "  0  init -> ok" not in short
    assert "    0  init -> ok" in full
    assert len(full) > len(short)


@pytest.mark.parametrize(
    ("query", "hint"),
    [("R-DEC-099", "R-DEC-009"), ("R-CFG-0x1", "R-CFG-001"), ("nonsense", "vpcid trace lists")],
)
def test_an_unknown_requirement_is_bad_input_naming_the_closest(query: str, hint: str) -> None:
    result = CliRunner().invoke(main, ["explain", query])
    assert result.exit_code == 2
    assert f"vpcid: error: {query!r} is not a requirement of the spec" in result.output
    assert hint in result.output
    assert "Traceback" not in result.output


def test_short_and_lowercase_forms_name_the_requirement(explainer: Explainer) -> None:
    assert explainer.resolve("r-dec-5") == explainer.resolve("DEC-005") == "R-DEC-005"
    with pytest.raises(UnknownRequirement, match="did you mean"):
        explainer.resolve("R-DEC-5000")


def test_an_installed_package_says_it_cannot_list_tests(explainer: Explainer) -> None:
    sources = explainer.sources
    without_tests = Explainer(Sources(sources.spec, sources.model, None, sources.base))
    found = without_tests.explain("R-DEC-005")
    assert found.tests == ()
    assert found.model
    assert found.vectors
    assert any("tests" in why and "source checkout" in why for why in found.unavailable)
    assert "Not shown here:" in found.render()


def test_explain_and_trace_run_without_the_dev_extras() -> None:
    """A plain install has no z3, CrossHair or pytest: the proofs are listed from their declarations."""
    for args in (["explain", "R-CFG-001"], ["trace", "R-CFG-001"]):
        run = subprocess.run([sys.executable, "-c", WITHOUT_DEV_EXTRAS, *args],
                             capture_output=True, text=True, check=False, timeout=300)  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr
        assert "z3 proof masked_write" in run.stdout or "formal z3 proof masked_write" in run.stdout
        assert "z3 is not installed" in run.stdout + run.stderr


def test_spec_site_without_the_docs_extra_says_how_to_install_it(tmp_path: Path) -> None:
    script = WITHOUT_DEV_EXTRAS.replace('"Cython")', '"Cython", "sphinx", "myst_parser")')
    run = subprocess.run([sys.executable, "-c", script, "spec-site", str(tmp_path / "site")],
                         capture_output=True, text=True, check=False, timeout=300)  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == (
        "vpcid: error: the rendered spec needs sphinx and myst_parser, in the docs extra: "
        "pip install 'vpcid[docs]'"
    )
    assert not (tmp_path / "site").exists()
