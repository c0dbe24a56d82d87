"""Fuzzing a device model: the Hypothesis-drawn state machine, user invariants, ``vpcid fuzz``, the fixture.

A small NIC written as a Python BAR behaviour (a read-only VERSION register,
a read-write CTRL, a write-1-to-clear ISR, a TRIGGER that raises ISR bit 0)
is fuzzed on the model with invariants; its planted bugs are found, shrunk
to 10 operations or fewer and reproduced, and its fixed version passes.
Planted bugs of the data manager (``mutant:NAME``) are found behind the
adapter protocol and blamed on the requirement they break.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import invariant, rule
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.cli import main
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.engine import Differential
from vpcid.conformance.fuzz import exercised_rows, open_target, type_target
from vpcid.conformance.mutants import BY_NAME
from vpcid.conformance.stateful import (
    Coverage,
    DeviceMachine,
    Invariant,
    Step,
    Target,
    device_invariant,
    replay,
    run_campaign,
    run_stateful,
)
from vpcid.conformance.trace import OpKind, read_trace
from vpcid.conformance.typefile import write_type_file

pytest_plugins = ["pytester"]

sys.path.insert(0, str(Path(__file__).parents[1] / "docs" / "example"))
from nic_invariants import (  # noqa: E402 - the worked example in docs/example
    ISR,
    NIC_INVARIANTS,
    TRIGGER,
    VERSION,
    VERSION_VALUE,
    nic,
)

MAX_TRACE = 10
"""A finding's trace is shrunk to this many operations or fewer."""
EXAMPLES = 1000
"""Examples a campaign may take to find a planted bug (it stops at the first finding): 200 found them
alone, but with the KVM tests collected in the same session a search of 200 missed one (the search
depends on state Hypothesis keeps across tests, not on the bug)."""


def assert_short(trace: tuple[object, ...]) -> None:
    assert 0 < len(trace) <= MAX_TRACE, f"{len(trace)} operations: {trace}"


# ------------------------------------------------------------------ invariants on a Python device model


@pytest.mark.parametrize(
    ("bug", "broken"),
    [("trigger-bumps-version", "VERSION never changes"), ("isr-set-after-reset", "after reset ISR reads 0")],
)
def test_a_violated_invariant_is_a_short_finding_that_names_it(bug: str, broken: str) -> None:
    target = type_target([nic(bug)])
    # One campaign with Hypothesis's shrinking, one cut down operation by operation only: both end short.
    result = run_campaign(
        target, examples=EXAMPLES, invariants=NIC_INVARIANTS, shrink=bug == "trigger-bumps-version"
    )
    finding = result.finding
    assert finding is not None, f"{bug} was not found in {result.stats.operations} operations"
    assert finding.kind == "invariant"
    assert finding.rules == (broken,)
    assert broken in finding.description
    assert_short(finding.trace)
    assert finding.trace[0].kind is OpKind.INIT
    outcome = replay(type_target([nic(bug)]), finding.trace, NIC_INVARIANTS)
    assert outcome is not None
    assert (outcome.kind, outcome.name) == ("invariant", broken)
    assert outcome.index == len(finding.trace) - 1


def test_the_fixed_device_keeps_every_invariant() -> None:
    result = run_campaign(type_target([nic()]), examples=200, invariants=NIC_INVARIANTS)
    assert result.finding is None
    assert result.stats.operations > 2_000
    bar = {row["region"]: row for row in exercised_rows(result.coverage, type_target([nic()]).devices)}[
        "BAR0"
    ]
    assert bar["edges"]
    assert bar["bytes_read"] == 16
    assert bar["bytes_written"] == 16


def test_a_behaviour_that_raises_is_a_crash_finding() -> None:
    result = run_campaign(type_target([nic("crash")]), examples=300, shrink=False)
    finding = result.finding
    assert finding is not None
    assert finding.kind == "crash"
    assert "ZeroDivisionError: planted crash" in finding.description
    assert_short(finding.trace)
    assert finding.trace[-1].kind is OpKind.MMIO_WRITE


def test_invariants_are_plain_functions_of_each_step() -> None:
    seen: list[Step] = []

    @device_invariant()
    def records(step: Step) -> bool:
        """every step is seen once, in order"""
        seen.append(step)
        return (
            step.index == len(step.history) + sum(1 for s in step.history if s.op.kind is OpKind.INIT) - 1
            or True
        )

    assert records.name == "every step is seen once, in order"
    result = run_campaign(type_target([nic()]), examples=5, invariants=[records])
    assert result.finding is None
    assert len(seen) == result.stats.operations
    reads = [s for s in seen if s.access is not None and s.access.space == "bar" and not s.access.write]
    assert reads
    assert all(s.access is not None and s.access.value is not None for s in reads)
    never = Invariant("never holds", lambda step: step.op.kind is not OpKind.CREATE_VM or "a VM was created")
    finding = run_campaign(type_target([nic()]), examples=5, invariants=[never]).finding
    assert finding is not None
    assert finding.rules == ("never holds",)
    assert "a VM was created" in finding.description
    assert [op.kind for op in finding.trace] == [OpKind.INIT, OpKind.CREATE_VM]


# ------------------------------------------------------------------ planted bugs behind an adapter


@pytest.mark.req("R-ACC-004")
def test_a_planted_bug_behind_an_adapter_is_blamed_and_replays() -> None:
    target = Target.for_adapter(BY_NAME["unmapped-mmio-zero"].adapter(), "mutant:unmapped-mmio-zero")
    finding = run_campaign(target, examples=200, shrink=False).finding
    assert finding is not None
    assert finding.kind == "divergence"
    assert finding.rules[0] == "R-ACC-004"
    assert "Breaks R-ACC-004" in finding.description
    assert_short(finding.trace)
    assert Differential(BY_NAME["unmapped-mmio-zero"].adapter()).replay(list(finding.trace)) is not None
    assert Differential(ModelAdapter()).replay(list(finding.trace)) is None


@pytest.mark.req("R-DEC-001")
def test_certify_s_stateful_engine_finds_a_planted_bug() -> None:
    operations, findings = run_stateful(BY_NAME["decode-ignores-command"].adapter(), 100, 0)
    assert operations > 0
    assert len(findings) == 1
    assert findings[0].engine == "stateful"
    assert findings[0].divergence.index == len(findings[0].trace) - 1
    assert_short(findings[0].trace)


def test_the_reference_has_no_finding_and_every_kind_of_operation_ran() -> None:
    result = run_campaign(Target.for_adapter(ModelAdapter(), "reference"), examples=150)
    assert result.finding is None
    ran = set(result.coverage.operations)
    assert {kind.value for kind in OpKind} - {"define_type", "destroy_vm", "set_ecam_base", "topology"} <= ran
    regions = {region for _, region in result.coverage.accesses}
    assert {"config", "BAR0", "BAR1", "BAR6"} <= regions


# ------------------------------------------------------------------ the example database


def test_the_example_database_replays_a_finding(tmp_path: Path) -> None:
    database = DirectoryBasedExampleDatabase(str(tmp_path / "db"))
    first = run_campaign(
        type_target([nic("trigger-bumps-version")]),
        examples=EXAMPLES,
        invariants=NIC_INVARIANTS,
        database=database,
        shrink=False,
    )
    assert first.finding is not None
    again = run_campaign(
        type_target([nic("trigger-bumps-version")]),
        invariants=NIC_INVARIANTS,
        database=database,
        replay_only=True,
    )
    assert again.finding is not None
    assert again.finding.rules == first.finding.rules
    assert again.stats.examples < first.stats.examples
    other = run_campaign(type_target([nic()]), invariants=NIC_INVARIANTS, database=database, replay_only=True)
    assert other.finding is None  # another target keeps its own examples


# ------------------------------------------------------------------ users' own machines


class NicMachine(DeviceMachine):
    """A user's machine: a rule of its own, a Hypothesis invariant, and device invariants."""

    target = nic()
    device_invariants = NIC_INVARIANTS

    @rule()
    def kick(self) -> None:
        device = self.devices[0]
        if self.window(device, 0) is None:
            self.bring_up(device)
        if self.bar_write(device, 0, TRIGGER, 1, 1):  # False where the BAR is hidden (ECAM, an overlap)
            isr = self.bar_read(device, 0, ISR, 4)
            assert isr is not None
            assert isr & 1

    @invariant()
    def version_reads_back(self) -> None:
        device = self.devices[0]
        assert self.bar_read(device, 0, VERSION, 4) in (None, VERSION_VALUE)


TestNicMachine = NicMachine.TestCase


class BrokenNicMachine(NicMachine):
    target = nic("trigger-bumps-version")
    device_invariants = ()


def test_a_user_machine_s_hypothesis_invariant_is_a_finding() -> None:
    finding = run_campaign(
        type_target([nic("trigger-bumps-version")]), machine=BrokenNicMachine, examples=200, shrink=False
    ).finding
    assert finding is not None
    assert finding.kind in ("machine", "invariant")
    assert any(op.kind is OpKind.MMIO_WRITE and op.value == 1 for op in finding.trace)


def test_a_user_machine_runs_as_a_unittest_case() -> None:
    import unittest

    outcome = unittest.TextTestRunner(stream=open("/dev/null", "w"), verbosity=0).run(  # noqa: SIM115
        unittest.defaultTestLoader.loadTestsFromTestCase(BrokenNicMachine.TestCase)
    )
    assert len(outcome.failures) == 1


def test_coverage_travels_as_json() -> None:
    result = run_campaign(type_target([nic()]), examples=10)
    back = Coverage.from_json(json.loads(json.dumps(result.coverage.to_json())))
    assert back == result.coverage
    merged = Coverage()
    merged.merge(back)
    merged.merge(back)
    assert merged.operations == {k: 2 * v for k, v in result.coverage.operations.items()}


# ------------------------------------------------------------------ vpcid fuzz


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.req("R-DEC-001")
def test_vpcid_fuzz_writes_a_finding_vpcid_replay_reproduces(tmp_path: Path) -> None:
    out = tmp_path / "found"
    code, text = run_cli(
        "fuzz",
        "mutant:decode-ignores-command",
        "--examples",
        "200",
        "--database",
        "none",
        "--no-shrink",
        "--counterexamples",
        str(out),
        "--json",
        str(tmp_path / "r.json"),
    )
    assert code == 1, text
    assert "FINDING (divergence)" in text
    # the planted bug breaks decode enable for I/O, memory and the ROM alike; which of the three the
    # finding names first has been seen to depend on what ran earlier in the process (left open)
    broken = ("R-DEC-001", "R-DEC-002", "R-DEC-003")
    assert any(f"breaks: {rid}" in text for rid in broken), text
    written = sorted(out.glob("*.jsonl"))
    assert len(written) == 1
    header, steps = read_trace(written[0])
    assert header.notes["rules"][0] in broken
    assert len(steps) <= MAX_TRACE
    assert f"vpcid replay {written[0]} --adapter mutant:decode-ignores-command" in text
    code, text = run_cli("replay", str(written[0]), "--adapter", "mutant:decode-ignores-command")
    assert code == 1
    assert "DIVERGES" in text
    assert run_cli("replay", str(written[0]), "--adapter", "reference")[0] == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["finding"]["rules"][0] == header.notes["rules"][0]
    assert report["operations"] > 0


def test_vpcid_fuzz_a_bundled_type_and_a_type_file(tmp_path: Path) -> None:
    code, text = run_cli("fuzz", "e1000", "--examples", "20", "--database", "none")
    assert code == 0, text
    assert "fuzzed the model with e1000" in text
    assert "no finding" in text
    assert "BAR0" in text
    types = tmp_path / "types.json"
    write_type_file(types, [SUITE_TYPES["kitchen-sink"]])
    code, text = run_cli("fuzz", str(types), "--examples", "20", "--database", str(tmp_path / "db"))
    assert code == 0, text
    assert "kitchen-sink" in text


def test_vpcid_fuzz_checks_invariants_from_a_module_and_replays_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "nicchecks.py").write_text(
        "from vpcid.conformance.stateful import Invariant\n"
        "def no_second_vm(step):\n"
        "    '''only VM 1 is ever created'''\n"
        "    return step.op.kind.value != 'create_vm' or step.op.vm == 1\n"
        "invariants = [no_second_vm, Invariant('tables stay small', lambda s: True)]\n"
    )
    monkeypatch.chdir(tmp_path)
    code, text = run_cli(
        "fuzz", "reference", "--examples", "20", "--database", "none", "--invariants", "nicchecks:invariants"
    )
    assert code == 1, text
    assert "invariant 'only VM 1 is ever created' violated" in text
    written = sorted((tmp_path / "counterexamples").glob("*.jsonl"))
    assert len(written) == 1
    assert (
        f"vpcid fuzz reference --replay {written[0].relative_to(tmp_path)} --invariants nicchecks:invariants"
        in text
    )
    code, text = run_cli(
        "fuzz", "reference", "--replay", str(written[0]), "--invariants", "nicchecks:invariants"
    )
    assert code == 1
    assert "FAILS at line" in text
    assert "only VM 1" in text
    code, text = run_cli("fuzz", "reference", "--replay", str(written[0]))
    assert code == 0
    assert "no failure" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuchadapter"], "no adapter named 'nosuchadapter'"),
        (["reference", "--invariants", "nosuchmodule:x"], "importing nosuchmodule failed"),
        (["reference", "--invariants", "justaname"], "give MODULE:NAME"),
        (["reference", "--database", "redis://127.0.0.1:1"], "no Redis server answers"),
        (["qemu:edu", "--types", "missing.json"], "missing.json"),
    ],
)
def test_vpcid_fuzz_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, text = run_cli("fuzz", *args, "--examples", "1")
    assert code == 2, text
    assert message in text
    assert "Traceback" not in text


# ------------------------------------------------------------------ the pytest fixture


def test_the_fixture_fails_a_test_with_the_shrunk_trace(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pytester.makepyfile(
        test_mine="""
        def test_reference(vpcid_fuzz):
            result = vpcid_fuzz("reference", examples=10)
            assert result.stats.operations > 0

        def test_planted(vpcid_fuzz):
            vpcid_fuzz("mutant:unmapped-mmio-zero", examples=200, shrink=False)
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    assert "breaks: R-ACC-004" in text
    assert "minimal trace (" in text
    assert "reproduce with: vpcid replay" in text
    written = list((pytester.path / "vpcid-counterexamples" / "test_planted").glob("*.jsonl"))
    assert len(written) == 1
    _, steps = read_trace(written[0])
    assert len(steps) <= MAX_TRACE


def test_open_target_names_what_it_resolved() -> None:
    assert open_target("edu").label == "the model with edu"
    reference = open_target("reference")
    assert reference.replay == "reference"
    assert reference.prologue[0].kind is OpKind.CREATE_VM
    assert (
        type_target([nic()]).replay is None
    )  # a Python behaviour no type file names: only the fixture replays
    assert type_target([SUITE_TYPES["kitchen-sink"]]).replay == "reference"
