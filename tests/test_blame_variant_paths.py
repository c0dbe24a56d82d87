"""Blame of the variant-path cases' mutants (issue 14): certifying each mutant of the model, under the
profile that reaches it, names first the requirement of the case step it breaks, and blames the
operation that went wrong.

The mutants are planted as ``vpcid mutate`` plants them (the model's source edited, loaded as a
separate package in a forked child), so neither cosmic-ray nor a session is needed.
"""

from __future__ import annotations

from typing import Any

import pytest
from vpcid.conformance.certify import certify
from vpcid.conformance.mutation import (
    MirrorModelAdapter,
    fork_judge,
    load_mirror,
    project_root,
    wait_for,
)
from vpcid.conformance.variant_path_cases import SCRIPTS
from vpcid.model import Profile

MANAGER = "model/vpcid/model/manager.py"
TABLES = "model/vpcid/model/tables.py"
CF8_CASE = "cf8-after-accesses-beside-the-window"
OVERLAP_CASE = "overlap-ties-and-removal"


def edited(path: str, old: str, new: str) -> dict[str, str]:
    """The source of ``path`` with ``old`` (which must occur once) replaced by ``new``."""
    source = (project_root() / path).read_text(encoding="utf-8")
    assert source.count(old) == 1, f"{old!r} does not occur exactly once in {path}"
    return {path: source.replace(old, new)}


def certified_failures(sources: dict[str, str], axes: dict[str, str]) -> list[dict[str, Any]]:
    """Certify the model with ``sources`` declaring the default profile changed by ``axes``, stopping
    at the first failure, in a forked child: each failure's check, blame and trace."""

    def work() -> dict[str, Any]:
        profile = Profile.from_mapping({**Profile().to_mapping(), **axes})
        adapter = MirrorModelAdapter(load_mirror(sources), profile)
        report = certify(adapter, stop_at_first_failure=True)
        found = [
            {"rid": r.rid, "check": f.check, "trace": f.trace, "blame": f.to_json()["blame"]}
            for r in report.requirements
            for f in r.failures
        ]
        return {"result": found}

    _, answer, ended = wait_for(fork_judge(work, 120.0))
    assert ended == "done", ended
    assert answer is not None
    result: list[dict[str, Any]] = answer["result"]
    return result


def case_step_rules(name: str) -> set[str]:
    """The requirements the checked steps of variant-path case ``name`` carry."""
    script = next(s for s in SCRIPTS if s.name == name)
    return {row[0] for row in script.rows if row[0] is not None}


def _mutant(
    case: str, path: str, old: str, new: str, axes: dict[str, str], rule: str, guilty: dict[str, Any], id: str
) -> Any:
    """A test parameter: the case, the mutant (``old`` -> ``new`` in ``path``), the profile's axes that
    reach it, the requirement it breaks and fields of the operation that went wrong."""
    return pytest.param(case, path, old, new, axes, rule, guilty, id=id, marks=pytest.mark.req(rule))


MUTANTS = [
    # an access starting right after the data window (0xD00) clears 0xCF8 as a data access would
    _mutant(CF8_CASE, MANAGER, "touched_window = port < CFC + 4", "touched_window = port <= CFC + 4",
            {"cf8_after_access": "clear"}, "R-CAM-007", {"op": "io_read", "port": 0xD00},
            id="cf8-clear-after"),
    # an access ending right before it (0xCFB) does too
    _mutant(CF8_CASE, MANAGER, "and port + width > CFC", "and port + width >= CFC",
            {"cf8_after_access": "clear"}, "R-CAM-007", {"op": "io_read", "port": 0xCFB},
            id="cf8-clear-before"),
    # two BARs of one size at one base (one hash bucket): the write goes to the highest BDF
    _mutant(OVERLAP_CASE, TABLES, "found = bucket[0]", "found = bucket[-1]", {}, "R-DEC-008",
            {"op": "mmio_write"}, id="tie-in-bucket"),
    # a BAR leaving its size class drops the class although another bucket of it still decodes
    _mutant(OVERLAP_CASE, TABLES, "if not slots:", "if slots:", {}, "R-DS-006",
            {"op": "config_write", "bdf": "00:06.0", "offset": 4}, id="size-class-removal"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "path", "old", "new", "axes", "rule", "guilty"), MUTANTS)
def test_certifying_a_variant_path_mutant_names_the_rule_of_the_step_it_breaks_first(
    case: str, path: str, old: str, new: str, axes: dict[str, str], rule: str, guilty: dict[str, Any]
) -> None:
    assert rule in case_step_rules(case)
    failures = certified_failures(edited(path, old, new), axes)
    assert failures, "certification accepts the mutant"
    first = failures[0]
    assert first["blame"]["requirements"][0] == rule, (first["check"], first["blame"])
    assert {f["rid"] for f in failures} == {rule}, [f["blame"] for f in failures]
    group = next(s.group for s in SCRIPTS if s.name == case)
    if first["check"] == f"case {group}/{case}":  # other cases, added later, may reject it first
        step = first["blame"]["step"]
        blamed_op = first["trace"][step]
        assert {key: blamed_op.get(key) for key in guilty} == guilty, (step, blamed_op, first["blame"])


def _every_variant_path_mutant() -> list[Any]:
    """The mutants tests/test_variant_path_cases.py plants, each case with the profile that reaches it."""
    from test_variant_path_cases import MUTANTS as CASE_MUTANTS

    return [
        pytest.param(*param.values, id=param.id, marks=pytest.mark.req(param.values[5]))
        for param in CASE_MUTANTS
    ]


@pytest.mark.parametrize(("case", "path", "old", "new", "axes", "rule"), _every_variant_path_mutant())
def test_certifying_any_variant_path_mutant_names_its_rule_first(
    case: str, path: str, old: str, new: str, axes: dict[str, str], rule: str
) -> None:
    failures = certified_failures(edited(path, old, new), axes)
    assert failures, "certification accepts the mutant"
    assert failures[0]["blame"]["requirements"][0] == rule, (failures[0]["check"], failures[0]["blame"])
