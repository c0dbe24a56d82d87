"""The worked example of docs/fuzzing-registers.md: a NIC's registers, four planted bugs, the fixed model.

Each buggy device model is certified at the default budget and must be found
with a trace of at most 10 operations, blamed on the requirement of its kind
of bug and naming the register; the fixed model is conformant. The BAR is
4 KiB: the suite aims at the declared registers, not at random offsets.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from vpcid.conformance.certify import DEFAULT_BUDGET, DEFAULT_SEED, Verdict, certify
from vpcid.conformance.engine import Differential
from vpcid.conformance.trace import Op

EXAMPLE = Path(__file__).parents[1] / "docs" / "example" / "nic_registers.py"
MAX_TRACE = 10


@pytest.fixture(scope="module")
def nic() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("nic_registers", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nic_registers"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("nic_registers", None)


def test_the_declared_nic_has_a_4_kib_bar_and_four_registers(nic: ModuleType) -> None:
    declared = nic.DECLARED
    assert [b.size for b in declared.bars if b is not None] == [4096]
    assert [r.name for r in declared.behaviour.registers] == ["VERSION", "CONTROL", "ISR", "DOORBELL"]
    assert set(nic.BUGS) == set(nic.BLAMED)


@pytest.mark.req("R-REG-002", "R-REG-003", "R-REG-004", "R-REG-007", "R-REG-009", "R-REG-010")
def test_the_fixed_model_is_conformant(nic: ModuleType) -> None:
    report = certify(nic.factory(None), DEFAULT_BUDGET, DEFAULT_SEED)
    failing = [(r.rid, r.failures[0].description) for r in report.requirements if r.failures]
    assert report.conformant, failing
    assert report.engines["random"]["operations"] >= DEFAULT_BUDGET


@pytest.mark.parametrize("bug", ["isr-write-clears-all", "version-writable", "doorbell-sets-wrong-bit",
                                 "control-resets-to-zero"])  # fmt: skip
def test_each_planted_bug_is_found_shrunk_and_blamed_on_its_register_and_rule(
    nic: ModuleType, bug: str
) -> None:
    rid, register = nic.BLAMED[bug]
    impl = nic.factory(bug)
    report = certify(impl, DEFAULT_BUDGET, DEFAULT_SEED, stop_at_first_failure=True)
    assert not report.conformant
    failed = [r for r in report.requirements if r.verdict is Verdict.FAIL]
    assert [r.rid for r in failed] == [rid], [(r.rid, r.failures[0].description) for r in failed]
    failure = failed[0].failures[0]
    assert len(failure.trace) <= MAX_TRACE, failure.trace
    assert f"register {register!r}" in failure.description
    assert f"Breaks {rid} " in failure.description
    ops = [Op.from_json(obj) for obj in failure.trace]
    assert Differential(impl).replay(ops) is not None
    assert Differential(nic.factory(None)).replay(ops) is None


def test_an_unknown_bug_name_says_which_there_are(nic: ModuleType) -> None:
    from vpcid.adapters.base import AdapterUnavailable

    with pytest.raises(AdapterUnavailable, match="isr-write-clears-all"):
        nic.factory("no-such-bug")
