"""The pytest plugin: ``pytest --vpcid-adapter X`` runs the conformance suite as ordinary tests."""

from __future__ import annotations

import re
from importlib.metadata import entry_points

import pytest
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.certify import applicable_cases
from vpcid.conformance.engine import Differential
from vpcid.conformance.mutants import BY_NAME
from vpcid.conformance.trace import read_trace

pytest_plugins = ["pytester"]

ARGS = ("--vpcid-budget", "2000", "-q", "-p", "no:cacheprovider")


@pytest.fixture
def isolated(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose subprocess loads plugins from entry points, as an implementer's CI does."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("PYTEST_PLUGINS", raising=False)
    return pytester


def outcome_counts(result: pytest.RunResult) -> dict[str, int]:
    counts = result.parseoutcomes()
    return {k: counts.get(k, 0) for k in ("passed", "failed", "errors", "warnings")}


def test_plugin_is_registered_under_pytest11() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("vpcid") == "vpcid.conformance.pytest_plugin"


@pytest.mark.req("R-VAR-002")
def test_plugin_certifies_the_reference(isolated: pytest.Pytester) -> None:
    result = isolated.runpytest_subprocess("--vpcid-adapter", "reference", *ARGS)
    expected = len(applicable_cases(ModelAdapter().info)) + 2  # one per case, the random and stateful engines
    counts = outcome_counts(result)
    assert result.ret == 0, result.stdout.str()
    assert counts["passed"] == expected > 100
    assert counts["failed"] == counts["errors"] == 0


@pytest.mark.req("R-VAR-002", "R-CAM-005")
def test_plugin_fails_a_mutant(isolated: pytest.Pytester) -> None:
    result = isolated.runpytest_subprocess("--vpcid-adapter", "mutant:cam-ignores-enable", *ARGS)
    counts = outcome_counts(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert counts["failed"] > 0
    assert counts["passed"] > 100
    text = result.stdout.str()
    assert re.search(r"FAILED \S*test_case\[config-mechanism/\S+@e1000:00:02\.0\]", text), text
    assert "minimal trace (written to vpcid-counterexamples/" in text
    written = sorted((isolated.path / "vpcid-counterexamples").glob("*.jsonl"))
    assert len(written) == counts["failed"]
    for path in written:
        header, steps = read_trace(path)
        assert header.notes["adapter"] == "mutant:cam-ignores-enable"
        assert f"vpcid replay vpcid-counterexamples/{path.name} --adapter mutant:cam-ignores-enable" in text
        assert Differential(BY_NAME["cam-ignores-enable"].adapter()).replay([s.op for s in steps]) is not None


def test_plugin_does_nothing_without_the_option(isolated: pytest.Pytester) -> None:
    isolated.makepyfile("def test_alone():\n    pass\n")
    result = isolated.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    assert result.ret == 0
    assert outcome_counts(result)["passed"] == 1


def test_plugin_works_with_strict_markers(isolated: pytest.Pytester) -> None:
    result = isolated.runpytest_subprocess("--vpcid-adapter", "reference", "--strict-markers", *ARGS)
    assert result.ret == 0, result.stdout.str()
    assert outcome_counts(result)["warnings"] == 0
