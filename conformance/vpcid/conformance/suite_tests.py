"""The conformance suite as pytest tests; collected only through ``--vpcid-adapter`` (pytest_plugin).

A failure writes its minimal trace (spec/formats/trace.md) to the
``--vpcid-counterexamples`` folder and reports it as trace-language JSON
with the ``vpcid replay`` command that reproduces it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from vpcid.adapters.base import Adapter
from vpcid.adapters.registry import load_adapter
from vpcid.conformance.cases import Case
from vpcid.conformance.certify import applicable_cases
from vpcid.conformance.engine import Differential, Finding, minimise, run_random
from vpcid.conformance.report import replay_line
from vpcid.conformance.stateful import run_stateful
from vpcid.conformance.trace import Op, Step, TraceHeader, write_trace


def _adapter_spec(config: pytest.Config) -> str:
    spec = config.getoption("vpcid_adapter")
    assert isinstance(spec, str)
    return spec


@pytest.fixture(scope="session")
def vpcid_adapter(request: pytest.FixtureRequest) -> Iterator[Adapter]:
    adapter = load_adapter(_adapter_spec(request.config))
    yield adapter
    adapter.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vpcid_case" in metafunc.fixturenames:
        adapter = load_adapter(_adapter_spec(metafunc.config))
        try:
            cases = applicable_cases(adapter.info)
        finally:
            adapter.close()
        metafunc.parametrize(
            "vpcid_case",
            [pytest.param((case, ops), id=label, marks=pytest.mark.req(*case.requirements))
             for label, case, ops in cases],
        )  # fmt: skip


def _fail(request: pytest.FixtureRequest, adapter: Adapter, finding: Finding) -> None:
    """Write the finding's minimal trace and fail the test with it and the command that replays it."""
    config = request.config
    spec = _adapter_spec(config)
    folder = Path(str(config.getoption("vpcid_counterexamples")))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")[:150]
    path = folder / f"{name}.jsonl"
    header = TraceHeader(
        adapter.info.profile.to_mapping(),
        {"adapter": spec, "test": request.node.nodeid, "divergence": finding.divergence.describe(),
         "replay": replay_line(path, spec)},
    )  # fmt: skip
    write_trace(path, header, [Step(op) for op in finding.trace])
    trace = "\n".join(json.dumps(op.to_json(), sort_keys=True) for op in finding.trace)
    pytest.fail(
        f"{finding.divergence.describe()}\nminimal trace (written to {path}):\n{trace}\n"
        f"reproduce with: {replay_line(path, spec)}",
        pytrace=False,
    )


def test_case(
    vpcid_adapter: Adapter, vpcid_case: tuple[Case, list[Op]], request: pytest.FixtureRequest
) -> None:
    """One scenario case: every observation equals the model's in the declared profile."""
    _case, ops = vpcid_case
    divergence = Differential(vpcid_adapter).replay(ops)
    if divergence is not None:
        _fail(request, vpcid_adapter, minimise(vpcid_adapter, ops[: divergence.index + 1], "case", None))


def test_random_engine(vpcid_adapter: Adapter, request: pytest.FixtureRequest) -> None:
    """The fast seeded engine finds no divergence within the budget."""
    budget, seed = request.config.getoption("vpcid_budget"), request.config.getoption("vpcid_seed")
    _, findings = run_random(vpcid_adapter, budget, seed)
    if findings:
        _fail(request, vpcid_adapter, findings[0])


def test_stateful_engine(vpcid_adapter: Adapter, request: pytest.FixtureRequest) -> None:
    """The stateful Hypothesis engine finds no divergence."""
    examples = max(5, request.config.getoption("vpcid_budget") // 1000)
    _, findings = run_stateful(vpcid_adapter, examples, request.config.getoption("vpcid_seed"))
    if findings:
        _fail(request, vpcid_adapter, findings[0])
