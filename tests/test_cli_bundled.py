"""`vpcid certify-bundled` (the README's main job) and `vpcid trace`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from vpcid.adapters.registry import probe, registered
from vpcid.conformance.cli import main
from vpcid.conformance.commands import bundled_report_stem


def test_certify_bundled_certifies_every_available_adapter_and_writes_reports(tmp_path: Path) -> None:
    # Budget 5000: QEMU's strict waivers need the random engine to reach 0xCF8 with bits 1:0 set.
    result = CliRunner().invoke(main, ["certify-bundled", "--reports", str(tmp_path), "--budget", "5000"])
    assert result.exit_code == 0, result.output
    available = [e for e in registered().values() if e.name != "mutant" and probe(e)[0]]
    assert any(e.name == "reference" for e in available)
    for entry in available:
        for spec in entry.bundled or (entry.example or entry.name,):
            stem = bundled_report_stem(spec)
            report = json.loads((tmp_path / f"{stem}.json").read_text())
            assert report["conformant"] is True or entry.third_party, spec
            assert (tmp_path / f"{stem}.xml").is_file()
            assert (tmp_path / f"{stem}.html").is_file()
    assert "CONFORMANT" in result.output


def test_trace_command_prints_evidence_for_every_requirement() -> None:
    result = CliRunner().invoke(main, ["trace"])
    assert result.exit_code == 0, result.output
    from vpcid.conformance.traceability import load_requirements

    total = len(load_requirements())
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"{total} requirements; unit: {total},")
    assert f"vector: {total}" in last


def test_certify_writes_each_failure_as_a_replayable_minimal_trace(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cx"
    args = [
        "certify",
        "--adapter",
        "mutant:ecam-bus-shift",
        "--budget",
        "1000",
        "--counterexamples",
        str(out),
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 1, result.output
    traces = sorted(out.glob("*.jsonl"))
    assert traces, result.output
    for trace in traces:
        replayed = runner.invoke(main, ["replay", str(trace), "--adapter", "mutant:ecam-bus-shift"])
        assert replayed.exit_code == 1, replayed.output
        assert "DIVERGES" in replayed.output
        assert runner.invoke(main, ["replay", str(trace), "--adapter", "reference"]).exit_code == 0


def test_conformant_certify_writes_no_counterexample(tmp_path: Path) -> None:
    out = tmp_path / "cx"
    result = CliRunner().invoke(
        main, ["certify", "--adapter", "reference", "--budget", "500", "--counterexamples", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.req("R-DT-002")
def test_types_exports_every_suite_type_as_a_type_file(tmp_path: Path) -> None:
    from vpcid.conformance.devices import SUITE_TYPES
    from vpcid.conformance.typefile import read_type_file

    result = CliRunner().invoke(main, ["types", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    exported = {t["name"]: t for t in document["types"]}
    assert set(exported) == set(SUITE_TYPES)
    for name, dtype in SUITE_TYPES.items():
        assert exported[name]["fingerprint"] == dtype.fingerprint().hex()
    path = tmp_path / "suite.json"
    path.write_text(result.output)
    assert {e.dtype.name: e.dtype for e in read_type_file(path)} == SUITE_TYPES
    listing = CliRunner().invoke(main, ["types", "--types", str(path)])
    assert listing.exit_code == 0, listing.output
    assert "kitchen-sink" in listing.output
    checked = CliRunner().invoke(main, ["types", "check", str(path)])
    assert checked.exit_code == 0, checked.output
    assert f"e1000: {SUITE_TYPES['e1000'].fingerprint().hex()}" in checked.output


def test_certify_bundled_writes_replayable_traces_and_marks_third_party_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing bundled implementation fails the run; a third-party one is reported as such; both get
    traces under REPORTS/NAME-counterexamples/ and the command that replays one."""
    from vpcid.adapters.registry import AdapterEntry
    from vpcid.conformance import commands

    entries = {
        "ours": AdapterEntry("ours", "vpcid.conformance.mutants:mutant_adapter", "a planted bug",
                             "mutant:cam-ignores-enable"),
        "theirs": AdapterEntry("theirs", "vpcid.conformance.mutants:mutant_adapter", "someone else's",
                               "mutant:rw1c-as-rw", third_party=True),
    }  # fmt: skip
    monkeypatch.setattr(commands, "registered", lambda: entries)
    runner = CliRunner()
    result = runner.invoke(main, ["certify-bundled", "--reports", str(tmp_path), "--budget", "1000"],
                           terminal_width=250)  # fmt: skip
    assert result.exit_code == 1, result.output
    third = "NOT CONFORMANT (third-party target: findings reported, not a failure of this run)"
    assert third in result.output
    assert "findings[/]" not in result.output
    for spec in ("mutant:cam-ignores-enable", "mutant:rw1c-as-rw"):
        stem = bundled_report_stem(spec)
        traces = sorted((tmp_path / f"{stem}-counterexamples").glob("*.jsonl"))
        assert traces, result.output
        assert f"vpcid replay {tmp_path / f'{stem}-counterexamples'}/" in result.output
        replayed = runner.invoke(main, ["replay", str(traces[0]), "--adapter", spec])
        assert replayed.exit_code == 1, replayed.output
    html_page = (tmp_path / f"{bundled_report_stem('mutant:rw1c-as-rw')}.html").read_text(encoding="utf-8")
    assert third in html_page
    own = json.loads((tmp_path / f"{bundled_report_stem('mutant:cam-ignores-enable')}.json").read_text())
    assert own["verdict"] == "NOT CONFORMANT"
    assert own["run"]["third_party"] is False
