"""The variant-path cases (``vpcid.conformance.variant_path_cases``): each rejects the model mutant it
was written for, under the profile that reaches it, on a step of the requirement it names; the
unmutated model passes them all in every profile.

The mutants are loaded as ``vpcid mutate`` loads them (a separate package, in a forked child), but
written out here, so these tests need neither cosmic-ray nor a session.
"""

from __future__ import annotations

from typing import Any

import pytest
from vpcid.conformance.cases import Case, system_cases
from vpcid.conformance.engine import Differential
from vpcid.conformance.mutation import (
    MirrorModelAdapter,
    declared_profiles,
    fork_judge,
    load_mirror,
    profile_label,
    project_root,
    wait_for,
)
from vpcid.conformance.trace import Observation, Op, OpKind
from vpcid.conformance.variant_path_cases import SCRIPTS
from vpcid.model import Profile

CONFIGSPACE = "model/vpcid/model/configspace.py"
MANAGER = "model/vpcid/model/manager.py"
TABLES = "model/vpcid/model/tables.py"
CATALOG = "model/vpcid/model/catalog.py"
BEHAVIOUR = "model/vpcid/model/behaviour.py"

NAMES = (
    *(script.name for script in SCRIPTS),
    "bar-write-after-a-64-bit-bar",
    "instance-latched-window-past-limit",
    "msi-clamp-keeps-message-address",
)


def variant_cases() -> dict[str, Case]:
    found = {case.name: case for case in system_cases() if case.name in NAMES}
    assert sorted(found) == sorted(NAMES)
    return found


def edited(path: str, old: str, new: str) -> dict[str, str]:
    """The source of ``path`` with ``old`` (which must occur once) replaced by ``new``."""
    source = (project_root() / path).read_text(encoding="utf-8")
    assert source.count(old) == 1, f"{old!r} does not occur exactly once in {path}"
    return {path: source.replace(old, new)}


class _Counting:
    """An adapter that remembers how many operations it was given (to place an escaping exception)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.info = inner.info
        self.count = 0

    def execute(self, op: Op) -> Observation:
        self.count += 1
        result: Observation = self.inner.execute(op)
        return result

    def close(self) -> None:
        self.inner.close()


def first_divergence(case: Case, sources: dict[str, str], profile: Profile) -> tuple[int, str] | None:
    """Run ``case`` on the mirror with ``sources`` declaring ``profile``, beside the pristine model:
    the index in the case of the first step that diverges (or raises) and how, or None."""
    mirror = load_mirror(sources)
    adapter = _Counting(MirrorModelAdapter(mirror, profile))
    try:
        divergence = Differential(adapter).run([Op(OpKind.INIT), *case.ops])
    except Exception as exc:  # an exception escaping the implementation rejects it too
        return adapter.count - 2, type(exc).__name__
    if divergence is None:
        return None
    return divergence.index - 1, "diverged"


def in_child(work: Any) -> Any:
    """``work()["result"]``, computed in a forked child (where the mirror stays installed)."""
    _, answer, ended = wait_for(fork_judge(work, 120.0))
    assert ended == "done", ended
    assert answer is not None
    return answer["result"]


def _mutant(name: str, path: str, old: str, new: str, axes: dict[str, str], rule: str, id: str) -> Any:
    """A test parameter: the case, the mutant (``old`` -> ``new`` in ``path``), the profile's axes that
    reach it and the requirement it breaks."""
    return pytest.param(name, path, old, new, axes, rule, id=id, marks=pytest.mark.req(rule))


MUTANTS = [
    _mutant("io-bar-address-limit", CONFIGSPACE, "if base + size > limit or (base == 0 and profile",
            "if base - size > limit or (base == 0 and profile", {}, "R-DEC-006", id="io-limit"),
    _mutant("rom-enable-without-memory-decode", CONFIGSPACE,
            "bool(command & CMD_MEM) and bool(config[dtype.rom_offset]",
            "bool(command // CMD_MEM) and bool(config[dtype.rom_offset]",
            {"bar_move_while_decoding": "ignored"},
            "R-BAR-007", id="rom-enable-ignored"),
    _mutant("rom-enable-without-memory-decode", CONFIGSPACE,
            "bool(command & CMD_MEM) and bool(config[dtype.rom_offset]",
            "bool(command // CMD_MEM) and bool(config[dtype.rom_offset]",
            {"bar_move_while_decoding": "deferred"},
            "R-DEC-003", id="rom-enable-deferred"),
    _mutant("bar-writes-beside-a-decoding-bar", CONFIGSPACE, "BarKind.MEM64 else 4",
            "BarKind.MEM64 else 5", {"bar_move_while_decoding": "ignored"}, "R-BAR-003",
            id="span-too-long"),
    _mutant("bar-write-after-a-64-bit-bar", CONFIGSPACE, "width = 8 if bar is not None",
            "width = 9 if bar is not None", {"bar_move_while_decoding": "ignored"}, "R-BAR-003",
            id="span-64-too-long"),
    _mutant("cf8-low-bits-without-enable", MANAGER, "if not cf8 & 0x8000_0000:",
            "if not cf8 & 0x8000_0001:", {"cf8_low_bits": "latched"}, "R-CAM-005", id="cf8-enable"),
    _mutant("cf8-after-accesses-beside-the-window", MANAGER, "touched_window = port < CFC + 4",
            "touched_window = port <= CFC + 4", {"cf8_after_access": "clear"}, "R-CAM-007",
            id="cf8-clear-after"),
    _mutant("cf8-after-accesses-beside-the-window", MANAGER, "and port + width > CFC",
            "and port + width >= CFC", {"cf8_after_access": "clear"}, "R-CAM-007",
            id="cf8-clear-before"),
    _mutant("instance-latched-window-past-limit", MANAGER,
            "if base + size > limit or (base == 0 and self.profile",
            "if base ^ size > limit or (base == 0 and self.profile", {"bar_move_while_decoding": "deferred"},
            "R-SR-005", id="latched-limit"),
    _mutant("overlap-ties-and-removal", TABLES, "found = bucket[0]", "found = bucket[-1]", {},
            "R-DEC-008", id="tie-in-bucket"),
    _mutant("overlap-ties-and-removal", TABLES,
            "best is None or self._priority(found) < self._priority(best)",
            "best is None or self._priority(found) > self._priority(best)", {}, "R-DEC-008",
            id="tie-across-classes"),
    _mutant("overlap-ties-and-removal", TABLES, "if not slots:", "if slots:", {}, "R-DS-006",
            id="size-class-removal"),
    _mutant("bar-data-across-a-page", BEHAVIOUR, "self.write(offset + k, bytes((byte,)))",
            "self.write(offset, bytes((byte,)))", {}, "R-DT-004", id="page-crossing-write"),
    _mutant("msi-clamp-keeps-message-address", CATALOG, "(config[entry.offset + 2 : entry.offset + 4], ",
            "(config[entry.offset + 2 : entry.offset + 5], ", {}, "R-DT-008", id="msi-control-width"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "path", "old", "new", "axes", "rule"), MUTANTS)
def test_a_variant_path_case_rejects_its_mutant_on_its_rule(
    name: str, path: str, old: str, new: str, axes: dict[str, str], rule: str
) -> None:
    case = variant_cases()[name]
    sources = edited(path, old, new)
    profile = Profile.from_mapping({**Profile().to_mapping(), **axes})
    found = in_child(lambda: {"result": first_divergence(case, sources, profile)})
    assert found is not None, f"{name} does not tell the mutant apart under {profile_label(profile)}"
    step, _ = found
    assert case.rules[step] == rule, (step, case.rules[step], case.ops[step])


@pytest.mark.req("R-VAR-001")
def test_the_unmutated_model_passes_every_variant_path_case_in_every_profile() -> None:
    cases = variant_cases()

    def work() -> dict[str, Any]:
        failing = [
            (name, profile_label(profile), found)
            for profile in declared_profiles()
            for name, case in cases.items()
            if (found := first_divergence(case, {}, profile)) is not None
        ]
        return {"result": failing}

    assert in_child(work) == []


def test_each_variant_path_case_checks_a_requirement_at_every_step_after_its_setup() -> None:
    for case in variant_cases().values():
        assert case.full_api
        assert case.requirements
        assert all(rule is None or rule.startswith("R-") for rule in case.rules)
        assert len(case.rules) == len(case.ops)
