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
