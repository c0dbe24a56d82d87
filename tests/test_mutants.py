"""Planted bugs: the default certification rejects every one (CONTRIBUTING.md, "Plant a bug")."""

from __future__ import annotations

import pytest
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.certify import DEFAULT_BUDGET, DEFAULT_SEED, Verdict, certify
from vpcid.conformance.engine import Differential
from vpcid.conformance.mutants import BY_NAME, MUTANTS, Mutant
from vpcid.conformance.trace import Op
from vpcid.conformance.traceability import load_requirements
from vpcid.model import DataManager, Profile


def test_enough_distinct_planted_bugs() -> None:
    assert len(MUTANTS) >= 25
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))
    assert {m.name: m for m in MUTANTS} == BY_NAME


def test_mutants_are_described_and_name_real_requirements() -> None:
    known = set(load_requirements())
    for mutant in MUTANTS:
        assert mutant.description
        assert mutant.requirements
        assert set(mutant.requirements) <= known, mutant.name


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_is_a_data_manager_claiming_the_default_profile(mutant: Mutant) -> None:
    adapter = mutant.adapter()
    assert isinstance(adapter, ModelAdapter)
    assert adapter.info.name == f"mutant:{mutant.name}"
    assert adapter.info.profile == Profile()
    assert isinstance(mutant.build(Profile()), DataManager)


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_default_certification_kills_the_mutant(mutant: Mutant) -> None:
    report = certify(mutant.adapter(), DEFAULT_BUDGET, DEFAULT_SEED, stop_at_first_failure=True)
    assert not report.conformant, f"planted bug {mutant.name} ({mutant.description}) survives"
    failed = [r for r in report.requirements if r.verdict is Verdict.FAIL]
    assert failed
    failure = failed[0].failures[0]
    assert failure.trace[0] == {"op": "init"}
    # the evidence reproduces: the minimal trace diverges on the mutant and not on the reference
    ops = [Op.from_json(obj) for obj in failure.trace]
    assert Differential(mutant.adapter()).replay(ops) is not None
    assert Differential(ModelAdapter()).replay(ops) is None


REGISTER_MUTANTS = [m for m in MUTANTS if all(rid.startswith("R-REG-") for rid in m.requirements)]


def test_there_is_a_planted_register_bug_per_kind() -> None:
    """RW1C clearing every bit, a reset value, a side effect, read-to-clear, RW1S (issue 17)."""
    assert {rid for m in REGISTER_MUTANTS for rid in m.requirements} == {
        "R-REG-004", "R-REG-010", "R-REG-009", "R-REG-006", "R-REG-005",
    }  # fmt: skip


@pytest.mark.parametrize(
    "mutant", [pytest.param(m, id=m.name, marks=pytest.mark.req(*m.requirements)) for m in REGISTER_MUTANTS]
)
def test_register_bugs_are_blamed_first_on_their_rule_naming_the_register(mutant: Mutant) -> None:
    report = certify(mutant.adapter(), DEFAULT_BUDGET, DEFAULT_SEED, stop_at_first_failure=True)
    failed = [r for r in report.requirements if r.verdict is Verdict.FAIL]
    assert [r.rid for r in failed] == list(mutant.requirements), [f.failures[0].description for f in failed]
    failure = failed[0].failures[0]
    assert "register '" in failure.description
    assert len(failure.trace) <= 10
