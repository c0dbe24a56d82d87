"""Certification: verdicts per requirement, planted bugs, declared profiles, variants and waivers."""

from __future__ import annotations

import functools
import itertools
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.certify import (
    CertificationReport,
    RequirementResult,
    Verdict,
    Waiver,
    WaiverError,
    certify,
    load_waivers,
)
from vpcid.conformance.cli import main
from vpcid.conformance.mutants import BY_NAME, MUTANTS
from vpcid.conformance.traceability import load_requirements
from vpcid.model import DataManager, Profile
from vpcid.model.profile import AXES, AXIS_REQUIREMENT

BUDGET = 2_000
REQUIREMENTS = load_requirements()
KNOWN = set(REQUIREMENTS)
EVERY_ALTERNATIVE = Profile.from_mapping({axis: list(enum)[1].value for axis, enum in AXES.items()})
LAST_ALTERNATIVE = Profile.from_mapping({axis: list(enum)[-1].value for axis, enum in AXES.items()})


@functools.cache
def mutant_report(name: str) -> CertificationReport:
    """The full certification of one planted bug (computed once per test session)."""
    return certify(BY_NAME[name].adapter(), budget=BUDGET)


def by_id(report: CertificationReport) -> dict[str, RequirementResult]:
    return {r.rid: r for r in report.requirements}


def failing(report: CertificationReport) -> set[str]:
    return {r.rid for r in report.requirements if r.verdict is Verdict.FAIL}


@pytest.fixture(scope="module")
def reference_report() -> CertificationReport:
    return certify(ModelAdapter(), budget=5_000)


# ------------------------------------------------------------------ the reference


@pytest.mark.req("R-VAR-002")
def test_reference_is_conformant_with_every_requirement_passing(
    reference_report: CertificationReport,
) -> None:
    report = reference_report
    assert report.conformant
    assert report.errors == []
    assert [r.rid for r in report.requirements if r.verdict is not Verdict.PASS] == []
    assert {r.rid for r in report.requirements} == KNOWN
    assert len(report.requirements) == len(KNOWN)
    assert report.counts() == {"pass": len(KNOWN), "fail": 0, "n/a": 0, "waived": 0}
    assert all(r.checks > 0 and r.failures == [] for r in report.requirements)
    assert all(r.title == REQUIREMENTS[r.rid].title for r in report.requirements)


def test_reference_report_records_the_run(reference_report: CertificationReport) -> None:
    report = reference_report
    assert (report.adapter, report.seed, report.budget) == ("reference", 0, 5_000)
    assert report.profile == Profile().to_mapping()
    assert set(report.engines) == {"cases", "random", "stateful"}
    assert report.engines["cases"]["failed"] == 0
    assert report.engines["cases"]["run"] > 100
    assert report.engines["random"]["operations"] >= 5_000
    assert report.engines["random"]["findings"] == 0
    assert report.engines["stateful"]["findings"] == 0
    assert report.duration_s > 0


@pytest.mark.req("R-VAR-001")
def test_axis_requirements_show_the_declared_variant(reference_report: CertificationReport) -> None:
    results = by_id(reference_report)
    declared = Profile().to_mapping()
    for axis, rid in AXIS_REQUIREMENT.items():
        assert f"{axis}={declared[axis]}" in results[rid].variant.split(", ")
    assert {r.rid for r in reference_report.requirements if r.variant} == set(AXIS_REQUIREMENT.values())


def test_requirements_are_in_spec_order(reference_report: CertificationReport) -> None:
    groups: list[str] = []
    for r in reference_report.requirements:
        group = r.rid.split("-")[1]
        if not groups or groups[-1] != group:
            groups.append(group)
    assert len(groups) == len(set(groups)), "each group is contiguous"
    assert groups[:3] == ["DS", "DT", "CFG"]
    numbers = [(r.rid.split("-")[1], int(r.rid.split("-")[2])) for r in reference_report.requirements]
    for (g1, n1), (g2, n2) in itertools.pairwise(numbers):
        assert g1 != g2 or n1 < n2


@pytest.mark.req("R-VAR-002", "R-VAR-001")
@pytest.mark.parametrize("profile", [EVERY_ALTERNATIVE, LAST_ALTERNATIVE], ids=["first-alternatives", "last"])
def test_reference_in_a_declared_profile_is_conformant(profile: Profile) -> None:
    """The model runs in the implementation's declared profile, so the reference conforms in any."""
    report = certify(ModelAdapter(profile=profile), budget=BUDGET)
    assert report.conformant
    assert report.counts()["fail"] == 0
    assert report.counts()["n/a"] == 0
    assert report.profile == profile.to_mapping()
    mapping = profile.to_mapping()
    for axis, rid in AXIS_REQUIREMENT.items():
        assert f"{axis}={mapping[axis]}" in by_id(report)[rid].variant.split(", ")


@pytest.mark.req("R-VAR-002")
def test_other_variant_declared_as_default_is_not_conformant() -> None:
    """Behaving like a variant is a failure unless the profile declares it."""
    impl = ModelAdapter("undeclared", Profile(), manager_factory=lambda _p: DataManager(EVERY_ALTERNATIVE))
    report = certify(impl, budget=BUDGET, stop_at_first_failure=True)
    assert not report.conformant
    assert failing(report)


# ------------------------------------------------------------------ planted bugs


@pytest.mark.req("R-VAR-002")
@pytest.mark.parametrize(
    "name", [pytest.param(m.name, id=m.name, marks=pytest.mark.req(*m.requirements)) for m in MUTANTS]
)
def test_mutant_is_blamed_on_what_it_breaks(name: str) -> None:
    """The requirement with the most failures is one the planted bug breaks; every failure names its
    step, the requirement it blames with that rule's first sentence, and why."""
    mutant = BY_NAME[name]
    report = mutant_report(name)
    assert not report.conformant
    ranked = sorted((r for r in report.requirements if r.failures), key=lambda r: -len(r.failures))
    assert ranked[0].rid in mutant.requirements, f"{name}: blamed {[r.rid for r in ranked]}"
    for result in ranked:
        for failure in result.failures:
            assert failure.trace[0] == {"op": "init"}
            assert failure.check.startswith(("case ", "random engine", "stateful engine"))
            assert failure.description.startswith("step ")
            assert f"Breaks {failure.blame.requirements[0]} " in failure.description  # type: ignore[union-attr]
            assert result.rid in failure.blame.requirements  # type: ignore[union-attr]
            assert "Why: " in failure.description


VARIANT_MUTANTS = [
    ("unmapped-mmio-zero", "unmapped_mmio_read", "zeros"),
    ("cf8-latches-low-bits", "cf8_low_bits", "latched"),
    ("overlap-last-mapped", "overlap", "last-mapped"),
    ("bar-move-deferred", "bar_move_while_decoding", "deferred"),
]


@pytest.mark.req("R-VAR-002", "R-VAR-001")
@pytest.mark.parametrize(
    ("name", "axis", "value"),
    [pytest.param(*v, id=v[0]) for v in VARIANT_MUTANTS]
    + [
        pytest.param(
            "straddle-start-address",
            "straddle",
            "start-address",
            id="straddle-start-address",
        )
    ],
)
def test_variant_mutant_is_reported_as_the_variant_it_implements(name: str, axis: str, value: str) -> None:
    report = mutant_report(name)
    assert not report.conformant
    rid = AXIS_REQUIREMENT[axis]
    result = by_id(report)[rid]
    assert result.verdict is Verdict.FAIL
    assert result.failures
    # Each failure alone may be ambiguous (a|b); every one must at least admit the real value, and the
    # explanation over all failures must be exactly it.
    assert all(value in f.observed_variant.get(axis, "").split("|") for f in result.failures), [
        f.observed_variant for f in result.failures
    ]
    assert report.variants == {axis: value}
    default = Profile().to_mapping()[axis]
    assert f"observed {axis}={value} (declared {axis}={default})" in result.variant.split(", ")


def test_variant_column_names_only_the_requirements_own_axis() -> None:
    bad = []
    for name, _, _ in VARIANT_MUTANTS:
        for axis, rid in AXIS_REQUIREMENT.items():
            variant = by_id(mutant_report(name))[rid].variant or ""
            own = {a for a, r in AXIS_REQUIREMENT.items() if r == rid}  # R-ACC-004 states two axes
            parts = variant.split(", ")
            named = {
                m.group(1)
                for part in parts
                if (
                    m := re.fullmatch(
                        r"(?:observed )?([a-z0-9_]+)=[a-z0-9|-]+(?: \(declared \1=[a-z0-9-]+\))?", part
                    )
                )
            }
            if len(named) != len(parts) or not named <= own or axis not in named:
                bad.append(f"{name}: {rid} {variant}")
    assert bad == []


def test_stop_at_first_failure_stops_after_the_first_failing_case() -> None:
    report = certify(BY_NAME["cam-ignores-enable"].adapter(), budget=BUDGET, stop_at_first_failure=True)
    assert not report.conformant
    assert report.engines["cases"]["failed"] == 1
    assert "random" not in report.engines
    assert "stateful" not in report.engines
    checks = {f.check for r in report.requirements for f in r.failures}
    assert len(checks) == 1


# ------------------------------------------------------------------ waivers


def write_waivers(path: Path, rids: list[str], reason: str = "known deviation, ticket 42") -> Path:
    path.write_text(
        "".join(f'[[waiver]]\nrequirement = "{rid}"\nreason = "{reason}"\n\n' for rid in rids),
        encoding="utf-8",
    )
    return path


def test_waived_failures_are_conformant(tmp_path: Path) -> None:
    name = "cam-ignores-enable"
    failed = sorted(failing(mutant_report(name)))
    assert failed
    waivers = load_waivers(write_waivers(tmp_path / "w.toml", failed), KNOWN)
    report = certify(BY_NAME[name].adapter(), budget=BUDGET, waivers=waivers)
    assert report.conformant
    assert report.errors == []
    results = by_id(report)
    for rid in failed:
        assert results[rid].verdict is Verdict.WAIVED
        assert results[rid].waiver == "known deviation, ticket 42"
        assert results[rid].failures, "the evidence stays in the report"
    assert report.counts()["waived"] == len(failed)
    assert report.counts()["fail"] == 0


def test_partial_waiver_is_still_not_conformant() -> None:
    name = "decode-ignores-command"
    failed = sorted(failing(mutant_report(name)))
    assert len(failed) >= 2
    waivers = {failed[0]: Waiver(failed[0], "accepted")}
    report = certify(BY_NAME[name].adapter(), budget=BUDGET, waivers=waivers)
    assert not report.conformant
    assert by_id(report)[failed[0]].verdict is Verdict.WAIVED
    assert by_id(report)[failed[1]].verdict is Verdict.FAIL


def test_waiver_for_a_passing_requirement_is_an_error() -> None:
    report = certify(ModelAdapter(), budget=BUDGET, waivers={"R-DS-001": Waiver("R-DS-001", "stale")})
    assert not report.conformant
    assert len(report.errors) == 1
    assert "R-DS-001" in report.errors[0]
    assert "did not fail" in report.errors[0]
    result = by_id(report)["R-DS-001"]
    assert result.verdict is Verdict.PASS
    assert result.waiver == "stale"


def test_waiver_file_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text(
        '[[waiver]]\nrequirement = "R-CAM-005"\nreason = "  legacy firmware  "\n\n'
        '[[waiver]]\nrequirement = "R-DS-001"\nreason = "x"\n',
        encoding="utf-8",
    )
    assert load_waivers(path, KNOWN) == {
        "R-CAM-005": Waiver("R-CAM-005", "legacy firmware"),
        "R-DS-001": Waiver("R-DS-001", "x"),
    }
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    assert load_waivers(empty, KNOWN) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[waiver]]\nrequirement = "R-DS-001"\nreason = "r"\nexpires = "2030"\n', "exactly"),
        ('title = "mine"\n[[waiver]]\nrequirement = "R-DS-001"\nreason = "r"\n', "only"),
        ('[[waivers]]\nrequirement = "R-DS-001"\nreason = "r"\n', "only"),
        ('waiver = "R-DS-001"\n', "only"),
        ('[[waiver]]\nrequirement = "R-XX-999"\nreason = "r"\n', "at waiver/0/requirement: 'R-XX-999' is no"),
        ('[[waiver]]\nrequirement = "R-DS-1"\nreason = "r"\n', "at waiver/0/requirement: .*requirement ID"),
        ('[[waiver]]\nrequirement = ["R-DS-001"]\nreason = "r"\n', "not of type 'string'; expected one"),
        ('[[waiver]]\nrequirement = "R-DS-001"\n', "exactly"),
        ('[[waiver]]\nreason = "r"\n', "exactly"),
        ('[[waiver]]\nrequirement = "R-DS-001"\nreason = "   "\n', "at waiver/0/reason: .*non-empty string"),
        ('[[waiver]]\nrequirement = "R-DS-001"\nreason = 3\n', "at waiver/0/reason: .*non-empty string"),
        (2 * '[[waiver]]\nrequirement = "R-DS-001"\nreason = "r"\n', "twice"),
        ("[[waiver]\nrequirement = R-DS-001\n", "not valid TOML"),
    ],
    ids=["unknown-key", "unknown-top-level", "misspelled-table", "not-a-table", "unknown-id", "malformed-id",
         "requirement-a-list", "missing-reason", "missing-requirement", "blank-reason", "reason-not-text",
         "duplicate", "not-toml"],
)  # fmt: skip
def test_malformed_waiver_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "w.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(WaiverError, match=message) as caught:
        load_waivers(path, KNOWN)
    assert caught.value.kind == "bad-waiver"
    assert str(caught.value).startswith(f"{path}: ")


def test_missing_waiver_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(WaiverError, match="cannot read"):
        load_waivers(tmp_path / "absent.toml", KNOWN)


def test_cli_certify_with_waivers(tmp_path: Path) -> None:
    name = "cam-ignores-enable"
    path = write_waivers(tmp_path / "w.toml", sorted(failing(mutant_report(name))))
    args = ["certify", "--adapter", f"mutant:{name}", "--budget", str(BUDGET), "--failures-only"]
    result = CliRunner().invoke(main, [*args, "--waivers", str(path)])
    assert result.exit_code == 0, result.output
    assert "CONFORMANT" in result.output
    assert "NOT CONFORMANT" not in result.output


def test_cli_certify_rejects_a_malformed_waiver_file(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text('[[waiver]]\nrequirement = "R-NOPE-001"\nreason = "r"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["certify", "--adapter", "reference", "--waivers", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"vpcid: error: {path}: at waiver/0/requirement: 'R-NOPE-001' is not a requirement of the spec; "
        "check the ID in spec/"
    ]


def test_an_ecam_access_exercises_configuration_requirements_of_its_offset() -> None:
    from vpcid.conformance.certify import implicated
    from vpcid.conformance.trace import Op, OpKind

    capability = Op(OpKind.MMIO_WRITE, vm=1, address=0xB002_0040, width=8, value=0)
    rids = implicated(capability, 0xB000_0000)
    assert "R-CFG-008" in rids
    assert "R-ECAM-003" in rids
    assert not any(r.startswith("R-DEC") for r in rids)
    bar = Op(OpKind.MMIO_READ, vm=1, address=0xE000_0000, width=4)
    assert "R-DEC-002" in implicated(bar, 0xB000_0000)


@pytest.mark.req("R-VAR-002")
def test_a_failures_description_is_readable_and_its_json_replayable() -> None:
    """Hex numbers, blobs as digest and summary, the blamed requirement with its rule; the JSON keeps
    the replayable trace (blob bytes included) and numbers as numbers."""
    report = mutant_report("restore-accepts-identity")
    failure = next(f for r in report.requirements for f in r.failures if "restore" in f.description)
    text = failure.description
    assert re.search(r"blob [0-9a-f]{16}… \([\d,]+ bytes, instance of 'kitchen-sink'", text), text
    assert "R-SR-004 (Restore cannot change identity)" in text
    assert "A blob in which any configuration bit that is neither writable nor RW1C differs" in text
    assert len(text) < 1_000, "a blob is never printed whole"
    data = report.to_json()
    entry = next(f for r in data["requirements"] for f in r["failures"] if f["description"] == text)
    assert set(entry) == {"check", "description", "trace", "observed_variant", "blame"}
    assert any("blob" in step for step in entry["trace"])
    assert all(isinstance(step.get("vm", 0), int) for step in entry["trace"])


# ------------------------------------------------------------------ platform waivers an adapter declares


def test_an_adapters_platform_waivers_apply_unless_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses
    import io

    from rich.console import Console
    from vpcid.conformance import commands

    name = "rw1c-as-rw"
    failed = [r.rid for r in certify(BY_NAME[name].adapter(), budget=BUDGET).requirements if r.failures]
    path = write_waivers(tmp_path / "platform.toml", failed, "the platform's host bridge")

    def factory(_spec: str) -> ModelAdapter:
        adapter = BY_NAME[name].adapter()
        adapter._info = dataclasses.replace(adapter.info, waivers=path)
        return adapter

    monkeypatch.setattr(commands, "load_adapter", factory)
    console = Console(file=io.StringIO())
    waived = commands.run_certification("platform", BUDGET, 0, None, console)
    assert waived.conformant
    assert {r.rid for r in waived.requirements if r.waiver} == set(failed)
    strict = commands.run_certification("platform", BUDGET, 0, None, console, platform_waivers=False)
    assert not strict.conformant
