"""``vpcid replay``: a counterexample from a certification report reproduces on its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from vpcid.conformance.certify import CertificationReport, Verdict, certify
from vpcid.conformance.cli import main
from vpcid.conformance.mutants import BY_NAME
from vpcid.conformance.trace import Op, Step, TraceHeader, read_trace, write_trace

MUTANT = "cam-ignores-enable"


def replay(path: Path, adapter: str) -> Result:
    return CliRunner().invoke(main, ["replay", str(path), "--adapter", adapter])


@pytest.fixture(scope="module")
def report() -> CertificationReport:
    return certify(BY_NAME[MUTANT].adapter(), budget=2_000)


@pytest.fixture
def counterexample(report: CertificationReport, tmp_path: Path) -> Path:
    """The minimal trace of the mutant's failure on its declared requirement, as a trace file."""
    result = next(r for r in report.requirements if r.rid == "R-CAM-005")
    assert result.verdict is Verdict.FAIL
    trace = result.failures[0].trace
    path = tmp_path / "counterexample.jsonl"
    header = TraceHeader(
        profile=report.profile, notes={"adapter": report.adapter, "check": result.failures[0].check}
    )
    write_trace(path, header, [Step(Op.from_json(obj)) for obj in trace])
    return path


@pytest.mark.req("R-VAR-002", "R-CAM-005")
def test_counterexample_reproduces_on_the_mutant(counterexample: Path) -> None:
    result = replay(counterexample, f"mutant:{MUTANT}")
    assert result.exit_code == 1, result.output
    assert "DIVERGES" in result.output
    _, steps = read_trace(counterexample)
    # the minimal trace diverges at its last operation, named by its line in the file
    assert result.output.startswith(f"DIVERGES at line {steps[-1].line}: step {len(steps) - 1}: ")


@pytest.mark.req("R-VAR-002")
def test_counterexample_matches_on_the_reference(counterexample: Path) -> None:
    result = replay(counterexample, "reference")
    assert result.exit_code == 0, result.output
    _, steps = read_trace(counterexample)
    assert result.output == f"no divergence: {len(steps)} operations matched the model\n"


def test_every_reported_trace_replays(report: CertificationReport, tmp_path: Path) -> None:
    traces = {json.dumps(f.trace) for r in report.requirements for f in r.failures}
    assert traces
    for number, text in enumerate(sorted(traces)):
        path = tmp_path / f"t{number}.jsonl"
        write_trace(path, TraceHeader(), [Step(Op.from_json(obj)) for obj in json.loads(text)])
        assert replay(path, f"mutant:{MUTANT}").exit_code == 1
        assert replay(path, "reference").exit_code == 0


def test_trace_not_starting_with_init_is_rejected(counterexample: Path, tmp_path: Path) -> None:
    lines = counterexample.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[1]) == {"op": "init"}
    headless = tmp_path / "headless.jsonl"
    headless.write_text("\n".join([lines[0], *lines[2:]]) + "\n", encoding="utf-8")
    result = replay(headless, "reference")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f'vpcid: error: {headless}: a replayable trace starts with an init operation; add {{"op": "init"}}'
    ]


def test_empty_trace_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("# nothing to replay\n", encoding="utf-8")
    result = replay(path, "reference")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1


def test_malformed_trace_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"op": "init"}\n{"op": "io_read", "vm": 1, "port": "cf8", "width": 4}\n', encoding="utf-8"
    )
    result = replay(path, "reference")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"vpcid: error: {path}: line 2: io_read: port is an integer, got 'cf8'"
    ]


def test_replay_on_an_unavailable_adapter_exits_3(counterexample: Path) -> None:
    result = replay(counterexample, "mutant:no-such-bug")
    assert result.exit_code == 3
    assert "unavailable" in result.stderr
