"""Certification reports: the JSON record, JUnit XML, HTML page, console table, and the CLI writing them."""

from __future__ import annotations

import copy
import dataclasses
import html
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.certify import CertificationReport, Verdict, certify
from vpcid.conformance.cli import main
from vpcid.conformance.engine import Differential
from vpcid.conformance.mutants import BY_NAME
from vpcid.conformance.report import (
    RunContext,
    print_table,
    render_html,
    requirement_texts,
    verdict_text,
    vpcid_version,
    write_html,
    write_json,
    write_junit,
)
from vpcid.conformance.trace import Op, OpKind
from vpcid.conformance.traceability import load_requirements
from vpcid.model import Profile

BUDGET = 2_000
MUTANT = "cam-ignores-enable"
KNOWN = set(load_requirements())
VERDICTS = {v.value for v in Verdict}


@pytest.fixture(scope="module")
def reference_report() -> CertificationReport:
    return certify(ModelAdapter(), budget=BUDGET, seed=3)


@pytest.fixture(scope="module")
def mutant_report() -> CertificationReport:
    return certify(BY_NAME[MUTANT].adapter(), budget=BUDGET)


def as_json(report: CertificationReport, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "report.json"
    write_json(report, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def as_junit(report: CertificationReport, tmp_path: Path) -> ET.Element:
    path = tmp_path / "report.xml"
    write_junit(report, path)
    assert path.read_bytes().startswith(b"<?xml")
    return ET.parse(path).getroot()


def with_waiver_and_error(report: CertificationReport) -> CertificationReport:
    """A copy of ``report`` with its first failing requirement waived and one certification error."""
    changed = copy.deepcopy(report)
    first = next(r for r in changed.requirements if r.verdict is Verdict.FAIL)
    first.verdict, first.waiver = Verdict.WAIVED, "accepted <for now> & tracked"
    return dataclasses.replace(
        changed, errors=["R-DS-001 is waived but did not fail (pass): remove the waiver"]
    )


# ------------------------------------------------------------------ JSON


@pytest.mark.req("R-VAR-002")
def test_json_has_every_requirement_and_the_run(
    reference_report: CertificationReport, tmp_path: Path
) -> None:
    data = as_json(reference_report, tmp_path)
    assert data["adapter"] == "reference"
    assert data["conformant"] is True
    assert data["profile"] == Profile().to_mapping()
    assert (data["seed"], data["budget"]) == (3, BUDGET)
    assert data["errors"] == []
    assert set(data["engines"]) == {"cases", "random", "stateful"}
    assert isinstance(data["duration_s"], float)
    ids = [r["id"] for r in data["requirements"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == KNOWN
    for entry in data["requirements"]:
        assert set(entry) == {"id", "title", "verdict", "checks", "variant", "waiver", "failures"}
        assert entry["verdict"] == "pass"
    assert data["counts"] == {"pass": len(KNOWN), "fail": 0, "n/a": 0, "waived": 0}


@pytest.mark.req("R-VAR-002")
def test_json_failures_carry_the_minimal_trace(mutant_report: CertificationReport, tmp_path: Path) -> None:
    data = as_json(mutant_report, tmp_path)
    assert data["conformant"] is False
    assert data["adapter"] == f"mutant:{MUTANT}"
    tally = dict.fromkeys(VERDICTS, 0)
    for entry in data["requirements"]:
        assert entry["verdict"] in VERDICTS
        tally[entry["verdict"]] += 1
        assert (entry["verdict"] == "fail") == bool(entry["failures"])
    assert data["counts"] == tally
    assert sum(data["counts"].values()) == len(KNOWN)
    assert tally["fail"] > 0
    failed = [e for e in data["requirements"] if e["verdict"] == "fail"]
    assert "R-CAM-005" in {e["id"] for e in failed}
    for entry in failed:
        for failure in entry["failures"]:
            assert set(failure) == {"check", "description", "trace", "observed_variant", "blame"}
            ops = [Op.from_json(obj) for obj in failure["trace"]]
            blamed = failure["blame"]
            assert entry["id"] in blamed["requirements"]
            assert 0 <= blamed["step"] < len(ops)
            assert blamed["reason"]
            assert blamed["rule"].endswith(".")
            assert ops[0].kind is OpKind.INIT
            divergence = Differential(BY_NAME[MUTANT].adapter()).replay(ops)
            assert divergence is not None
            assert divergence.index == len(ops) - 1, "the trace ends at the divergence"


# ------------------------------------------------------------------ JUnit


def test_junit_has_one_testcase_per_requirement(
    reference_report: CertificationReport, tmp_path: Path
) -> None:
    suite = as_junit(reference_report, tmp_path)
    assert suite.tag == "testsuite"
    assert suite.get("tests") == str(len(KNOWN))
    assert (suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("0", "0", "0")
    cases = suite.findall("testcase")
    assert len(cases) == len(KNOWN)
    assert {c.get("name", "").split(" ")[0] for c in cases} == KNOWN
    assert all(list(c) == [] for c in cases), "passing requirements have no child elements"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    run = {"verdict", "date", "vpcid_version", "spec_version", "host", "command_line"}
    assert set(properties) == set(Profile().to_mapping()) | run | {"seed", "budget"}
    assert {k: properties[k] for k in Profile().to_mapping()} == Profile().to_mapping()
    assert (properties["seed"], properties["budget"], properties["verdict"]) == (
        "3",
        str(BUDGET),
        "CONFORMANT",
    )


def test_junit_failures(mutant_report: CertificationReport, tmp_path: Path) -> None:
    suite = as_junit(mutant_report, tmp_path)
    counts = mutant_report.counts()
    assert suite.get("failures") == str(counts["fail"])
    cases = suite.findall("testcase")
    assert len(cases) == len(KNOWN)
    failed = {
        c.get("name", "").split(" ")[0]: c.find("failure") for c in cases if c.find("failure") is not None
    }
    assert set(failed) == {r.rid for r in mutant_report.requirements if r.verdict is Verdict.FAIL}
    assert len(suite.findall("testcase/failure")) == counts["fail"]
    for result in mutant_report.requirements:
        element = failed.get(result.rid)
        if element is None:
            continue
        first = result.failures[0]
        assert element.get("message") == f"{first.check}: {first.description}"
        assert [json.loads(line) for line in (element.text or "").splitlines()] == first.trace


def test_junit_skips_waived_and_reports_errors(mutant_report: CertificationReport, tmp_path: Path) -> None:
    report = with_waiver_and_error(mutant_report)
    suite = as_junit(report, tmp_path)
    assert suite.get("errors") == "1"
    assert suite.get("skipped") == str(report.counts()["waived"] + report.counts()["n/a"])
    skipped = [s.get("message") for s in suite.iter("skipped")]
    assert "waived: accepted <for now> & tracked" in skipped
    errors = suite.findall("testcase/error")
    assert [e.get("message") for e in errors] == report.errors
    assert len(suite.findall("testcase")) == len(KNOWN) + 1


# ------------------------------------------------------------------ HTML


def rows(page: str) -> dict[str, str]:
    """R-ID -> the table row that shows it."""
    found = {}
    for chunk in page.split("<tr class='")[1:]:
        row = chunk.split("</tr>", 1)[0]
        rid = row.split("<td>", 1)[1].split("</td>", 1)[0]
        found[rid] = row
    return found


def test_html_has_a_row_per_requirement_and_the_status(
    reference_report: CertificationReport, tmp_path: Path
) -> None:
    path = tmp_path / "r.html"
    write_html(reference_report, path)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert ">CONFORMANT</span>" in page
    assert "NOT CONFORMANT" not in page
    table = rows(page)
    assert set(table) == KNOWN
    assert all(row.startswith("pass'") and "<td class='verdict'>pass</td>" in row for row in table.values())


def test_html_shows_failures_escaped(mutant_report: CertificationReport) -> None:
    report = with_waiver_and_error(mutant_report)
    page = render_html(report)
    assert ">NOT CONFORMANT</span>" in page
    table = rows(page)
    assert set(table) == KNOWN
    for result in report.requirements:
        if result.verdict is Verdict.FAIL:
            row = table[result.rid]
            assert row.startswith("fail'")
            assert html.escape(result.failures[0].description) in row
            assert html.escape(json.dumps(result.failures[0].trace[0])) in row
    waived = next(r for r in report.requirements if r.verdict is Verdict.WAIVED)
    assert table[waived.rid].startswith("waived'")
    assert "waived: accepted &lt;for now&gt; &amp; tracked" in table[waived.rid]
    assert "certification error: R-DS-001 is waived but did not fail" in page
    assert "<for now>" not in page


def test_console_table(mutant_report: CertificationReport) -> None:
    console = Console(record=True, width=200)
    print_table(mutant_report, console, show_all=False)
    text = console.export_text()
    assert "NOT CONFORMANT" in text
    assert "R-CAM-005" in text
    assert "R-DS-001 " not in text, "only failing requirements with show_all=False"
    assert f"budget {BUDGET}" in text


# ------------------------------------------------------------------ CLI


def test_cli_certify_reference_writes_every_report(tmp_path: Path) -> None:
    paths = {
        kind: tmp_path / f"out.{ext}" for kind, ext in (("json", "json"), ("junit", "xml"), ("html", "html"))
    }
    args = ["certify", "--adapter", "reference", "--budget", str(BUDGET)]
    for kind, path in paths.items():
        args += [f"--{kind}", str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "CONFORMANT" in result.output
    assert "NOT CONFORMANT" not in result.output
    for path in paths.values():
        assert path.is_file()
        assert f"wrote {path}" in result.output.replace("\n", "")
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["conformant"] is True
    assert ET.parse(paths["junit"]).getroot().get("failures") == "0"
    assert ">CONFORMANT</span>" in paths["html"].read_text(encoding="utf-8")


def test_cli_certify_mutant_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    result = CliRunner().invoke(
        main, ["certify", "--adapter", f"mutant:{MUTANT}", "--budget", str(BUDGET), "--json", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert "NOT CONFORMANT" in result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["conformant"] is False
    assert data["counts"]["fail"] > 0


def test_cli_certify_rejects_a_tiny_budget() -> None:
    result = CliRunner().invoke(main, ["certify", "--adapter", "reference", "--budget", "10"])
    assert result.exit_code == 2


# ------------------------------------------------------------------ the run, the verdict, the terminal


CONTEXT = RunContext(
    date="2031-02-03T04:05:06+00:00", vpcid_version="9.9.9", spec_version="0.1 (sha256 abc)",
    host="bench <1> (Linux)", command_line="vpcid certify --adapter 'x [red]y'", adapter_spec="mine:factory",
)  # fmt: skip


def test_every_form_carries_the_run(mutant_report: CertificationReport, tmp_path: Path) -> None:
    write_json(mutant_report, tmp_path / "r.json", CONTEXT)
    run = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["run"]
    assert run == {"date": CONTEXT.date, "vpcid_version": "9.9.9", "spec_version": "0.1 (sha256 abc)",
                   "host": CONTEXT.host, "command_line": CONTEXT.command_line, "seed": 0, "budget": BUDGET,
                   "third_party": False}  # fmt: skip
    write_junit(mutant_report, tmp_path / "r.xml", CONTEXT)
    suite = ET.parse(tmp_path / "r.xml").getroot()
    assert (suite.get("timestamp"), suite.get("hostname")) == (CONTEXT.date, CONTEXT.host)
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["command_line"] == CONTEXT.command_line
    assert properties["spec_version"] == CONTEXT.spec_version
    page = render_html(mutant_report, CONTEXT)
    for value in (CONTEXT.date, "9.9.9", "0.1 (sha256 abc)", html.escape(CONTEXT.host),
                  html.escape(CONTEXT.command_line)):  # fmt: skip
        assert value in page
    console = Console(record=True, width=300)
    print_table(mutant_report, console, context=CONTEXT)
    assert f"vpcid 9.9.9, spec 0.1 (sha256 abc), {CONTEXT.date}, bench <1> (Linux)" in console.export_text()


def test_the_current_context_names_this_vpcid_and_spec() -> None:
    context = RunContext.current("reference")
    assert context.vpcid_version == vpcid_version() != "unknown"
    assert re.fullmatch(r"0\.1 \(sha256 [0-9a-f]{12}\)", context.spec_version)
    assert context.date.endswith("+00:00")
    assert context.command_line


def test_html_puts_the_failures_on_top_and_links_every_requirement_to_its_text(
    mutant_report: CertificationReport,
) -> None:
    page = render_html(mutant_report, CONTEXT)
    summary = page.index("<h2>Failures</h2>")
    assert summary < page.index("<h2>Run</h2>") < page.index("<h2>Requirements</h2>")
    failed = [r for r in mutant_report.requirements if r.verdict is Verdict.FAIL]
    for r in failed:
        assert page.index(f'<a href="#row-{r.rid}">{r.rid}</a>') < page.index("<h2>Run</h2>")
    texts = requirement_texts()
    for r in mutant_report.requirements:
        assert f'<a href="#text-{r.rid}">' in page
        assert f'<dt id="text-{r.rid}">' in page
    assert "every byte of a device type" not in texts["R-CFG-001"][1]
    assert "new = (old &amp; ~wmask) | (value &amp; wmask)" in page


def test_third_party_findings_are_marked_alike_in_terminal_and_html(
    mutant_report: CertificationReport,
) -> None:
    third = dataclasses.replace(CONTEXT, third_party=True)
    wanted = "NOT CONFORMANT (third-party target: findings reported, not a failure of this run)"
    assert verdict_text(mutant_report, third) == wanted
    assert f'<span class="third">{wanted}</span>' in render_html(mutant_report, third)
    console = Console(record=True, width=300)
    print_table(mutant_report, console, show_all=False, context=third)
    assert f"{wanted}: " in console.export_text()
    assert verdict_text(mutant_report, CONTEXT) == "NOT CONFORMANT"


def test_failures_only_shows_neither_waived_findings_nor_an_empty_table(
    mutant_report: CertificationReport, reference_report: CertificationReport
) -> None:
    waived = copy.deepcopy(mutant_report)
    for r in waived.requirements:
        if r.verdict is Verdict.FAIL:
            r.verdict, r.waiver = Verdict.WAIVED, "accepted"
    console = Console(record=True, width=300)
    print_table(waived, console, show_all=False, context=CONTEXT)
    text = console.export_text()
    assert "no requirement failed" in text
    assert "┏" not in text, "no empty table"
    assert "waived" not in text.split("CONFORMANT")[0]
    everything = Console(record=True, width=300)
    print_table(waived, everything, show_all=True, context=CONTEXT)
    assert "R-CAM-005 waived (accepted)" in everything.export_text()
    clean = Console(record=True, width=300)
    print_table(reference_report, clean, show_all=False, context=CONTEXT)
    assert "┏" not in clean.export_text()


def test_user_text_is_printed_as_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``:factory:`` in an adapter argument and ``[red]`` in a folder print as typed: no emoji, no markup."""
    (tmp_path / "bugs.py").write_text(
        "from vpcid.conformance.mutants import BY_NAME\n\n\n"
        "def factory(argument):\n    return BY_NAME[argument].adapter()\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    spec = f"bugs:factory:{MUTANT}"
    result = CliRunner().invoke(
        main, ["certify", "--adapter", spec, "--budget", str(BUDGET), "--counterexamples", "[red]cx"]
    )
    assert result.exit_code == 1, result.output
    assert f"--adapter {spec}" in result.output
    assert "\N{FACTORY}" not in result.output
    assert "vpcid replay '[red]cx/" in result.output
    assert any(Path("[red]cx").glob("*.jsonl"))
