"""The conformance suite as pytest tests; collected only through ``--vpcid-adapter`` (pytest_plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vpcid.adapters.base import Adapter
from vpcid.adapters.registry import load_adapter
from vpcid.conformance.cases import Case
from vpcid.conformance.certify import applicable_cases
from vpcid.conformance.engine import Differential, minimise, run_random
from vpcid.conformance.stateful import run_stateful
from vpcid.conformance.trace import Op


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


def test_case(vpcid_adapter: Adapter, vpcid_case: tuple[Case, list[Op]]) -> None:
    """One scenario case: every observation equals the model's in the declared profile."""
    _case, ops = vpcid_case
    divergence = Differential(vpcid_adapter).replay(ops)
    if divergence is not None:
        finding = minimise(vpcid_adapter, ops[: divergence.index + 1], "case", None)
        trace = "\n".join(str(op.to_json()) for op in finding.trace)
        pytest.fail(f"{finding.divergence.describe()}\nminimal trace:\n{trace}", pytrace=False)


def test_random_engine(vpcid_adapter: Adapter, request: pytest.FixtureRequest) -> None:
    """The fast seeded engine finds no divergence within the budget."""
    budget, seed = request.config.getoption("vpcid_budget"), request.config.getoption("vpcid_seed")
    _, findings = run_random(vpcid_adapter, budget, seed)
    for finding in findings:
        trace = "\n".join(str(op.to_json()) for op in finding.trace)
        pytest.fail(f"{finding.divergence.describe()}\nminimal trace:\n{trace}", pytrace=False)


def test_stateful_engine(vpcid_adapter: Adapter, request: pytest.FixtureRequest) -> None:
    """The stateful Hypothesis engine finds no divergence."""
    examples = max(5, request.config.getoption("vpcid_budget") // 1000)
    _, findings = run_stateful(vpcid_adapter, examples, request.config.getoption("vpcid_seed"))
    for finding in findings:
        trace = "\n".join(str(op.to_json()) for op in finding.trace)
        pytest.fail(f"{finding.divergence.describe()}\nminimal trace:\n{trace}", pytrace=False)
