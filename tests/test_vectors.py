"""Golden vectors (spec/formats/vectors.md): generation, the index, the runner and its audit line."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from vpcid.adapters.base import AdapterInfo, FixedMachine
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance import vectors
from vpcid.conformance.cli import main
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.mutants import BY_NAME
from vpcid.conformance.trace import GUEST_VIEW, Observation, Op, OpKind, TraceError, read_trace
from vpcid.conformance.traceability import load_requirements
from vpcid.model import Bdf, Profile
from vpcid.model.profile import AXES

KNOWN = set(load_requirements())
MANIFEST_KEYS = {
    "format",
    "id",
    "group",
    "requirements",
    "description",
    "needs",
    "full_api",
    "axes",
    "outcomes",
}
AUDIT = re.compile(
    r"^Ran (\d+) of (\d+) vectors \((\d+) intentionally excluded\): (\d+) passed, (\d+) failed$"
)


@dataclasses.dataclass(frozen=True)
class Generated:
    directory: Path
    count: int
    index: list[dict[str, Any]]


@pytest.fixture(scope="module")
def generated(full_vectors: tuple[Path, str]) -> Generated:
    """The vectors ``vpcid vectors generate`` wrote (once per test session, see conftest.py)."""
    directory, output = full_vectors
    match = re.fullmatch(rf"wrote (\d+) vectors to {re.escape(str(directory))}\n", output)
    assert match, output
    index = json.loads((directory / "index.json").read_text(encoding="utf-8"))
    assert index["format"] == vectors.FORMAT
    return Generated(directory, int(match[1]), index["cases"])


@pytest.fixture
def copied(generated: Generated, tmp_path: Path) -> Path:
    """A private copy of the vectors, to tamper with."""
    target = tmp_path / "vectors"
    shutil.copytree(generated.directory, target)
    return target


def manifests(generated: Generated) -> dict[str, dict[str, Any]]:
    return {
        entry["id"]: json.loads(
            (generated.directory / entry["path"] / "manifest.json").read_text(encoding="utf-8")
        )
        for entry in generated.index
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def audit(result: vectors.VectorResult) -> tuple[int, ...]:
    match = AUDIT.fullmatch(result.audit_line())
    assert match, result.audit_line()
    return tuple(int(g) for g in match.groups())


# ------------------------------------------------------------------ generation


def test_every_case_folder_is_listed_with_both_files(generated: Generated) -> None:
    assert generated.count == len(generated.index) > 200
    ids = [e["id"] for e in generated.index]
    assert len(ids) == len(set(ids))
    folders = {str(p.relative_to(generated.directory)) for p in generated.directory.glob("*/*") if p.is_dir()}
    assert folders == {e["path"] for e in generated.index}
    for entry in generated.index:
        assert entry["path"] == entry["id"]
        folder = generated.directory / entry["path"]
        assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "trace.jsonl"]
        assert set(entry["files"]) == {"manifest.json", "trace.jsonl"}


def test_index_digests_match_the_files(generated: Generated) -> None:
    for entry in generated.index:
        for name, digest in entry["files"].items():
            assert sha256(generated.directory / entry["path"] / name) == digest, f"{entry['id']}/{name}"


def test_manifests_describe_their_case(generated: Generated) -> None:
    covered: set[str] = set()
    for case_id, manifest in manifests(generated).items():
        assert set(manifest) == MANIFEST_KEYS
        assert manifest["id"] == case_id
        assert case_id.startswith(f"{manifest['group']}/")
        assert manifest["format"] == vectors.FORMAT
        assert manifest["requirements"]
        assert set(manifest["requirements"]) <= KNOWN
        covered |= set(manifest["requirements"])
        assert manifest["description"]
        assert "init" in manifest["needs"]
        assert {OpKind(k) for k in manifest["needs"]}
        assert manifest["full_api"] is True
        assert set(manifest["axes"]) <= set(AXES)
        combos = list(itertools.product(*(AXES[a] for a in manifest["axes"])))
        assert len(manifest["outcomes"]) == len(combos)
        whens = [o["when"] for o in manifest["outcomes"]]
        assert whens == [{a: v.value for a, v in zip(manifest["axes"], c, strict=True)} for c in combos]
    assert covered == KNOWN, "the vectors check every requirement"


@pytest.mark.req("R-VAR-001")
def test_sensitive_axes_really_change_the_observations(generated: Generated) -> None:
    for case_id, manifest in manifests(generated).items():
        observed = [json.dumps(o["observations"]) for o in manifest["outcomes"]]
        if manifest["axes"]:
            assert len(set(observed)) > 1, case_id
        else:
            assert len(observed) == 1


def test_traces_carry_the_default_profiles_expectations(generated: Generated) -> None:
    default = Profile().to_mapping()
    all_manifests = manifests(generated)
    for entry in generated.index:
        manifest = all_manifests[entry["id"]]
        header, steps = read_trace(generated.directory / entry["path"] / "trace.jsonl")
        assert header.notes["case"]
        assert steps[0].op == Op(OpKind.INIT)
        wanted = {a: default[a] for a in manifest["axes"]}
        (outcome,) = [o for o in manifest["outcomes"] if o["when"] == wanted]
        assert [s.expect for s in steps] == [Observation.from_json(o) for o in outcome["observations"]]


def test_needs_lists_every_operation_kind_the_trace_uses(generated: Generated) -> None:
    all_manifests = manifests(generated)
    missing = {}
    for entry in generated.index:
        _, steps = read_trace(generated.directory / entry["path"] / "trace.jsonl")
        extra = {s.op.kind.value for s in steps} - set(all_manifests[entry["id"]]["needs"])
        if extra:
            missing[entry["id"]] = sorted(extra)
    assert missing == {}


# ------------------------------------------------------------------ running


@pytest.mark.req("R-VAR-002")
def test_reference_passes_every_vector(generated: Generated) -> None:
    result = vectors.run(generated.directory, ModelAdapter())
    n = generated.count
    assert result.audit_line() == f"Ran {n} of {n} vectors (0 intentionally excluded): {n} passed, 0 failed"
    assert result.failed == []
    assert result.excluded == []
    assert result.complete
    assert set(result.requirements) == {e["id"] for e in generated.index}


FIRST_ALTERNATIVES = Profile.from_mapping({axis: list(enum)[1].value for axis, enum in AXES.items()})
LAST_ALTERNATIVES = Profile.from_mapping({axis: list(enum)[-1].value for axis, enum in AXES.items()})


@pytest.mark.req("R-VAR-002", "R-VAR-001")
@pytest.mark.parametrize(
    "profile",
    [
        pytest.param(FIRST_ALTERNATIVES, id="first-alternatives"),
        pytest.param(LAST_ALTERNATIVES, id="last-alternatives"),
    ],
)
def test_reference_in_another_profile_passes_every_vector(generated: Generated, profile: Profile) -> None:
    """The runner picks the outcome of the declared profile."""
    result = vectors.run(generated.directory, ModelAdapter(profile=profile))
    assert result.failed == []
    assert audit(result) == (generated.count, generated.count, 0, generated.count, 0)


def test_cli_vectors_run(generated: Generated) -> None:
    result = CliRunner().invoke(main, ["vectors", "run", str(generated.directory), "--adapter", "reference"])
    assert result.exit_code == 0, result.output
    n = generated.count
    assert (
        result.output.splitlines()[-1]
        == f"Ran {n} of {n} vectors (0 intentionally excluded): {n} passed, 0 failed"
    )


def test_cli_vectors_run_fails_a_mutant(generated: Generated) -> None:
    args = ["vectors", "run", str(generated.directory), "--adapter", "mutant:cam-ignores-enable"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    fails = [line for line in lines if line.startswith("FAIL ")]
    assert fails
    ran, listed, excluded, passed, failed = (int(g) for g in AUDIT.fullmatch(lines[-1]).groups())  # type: ignore[union-attr]
    assert (ran, listed, excluded, failed) == (generated.count, generated.count, 0, len(fails))
    assert passed == ran - failed


VARIANTS = [
    ("straddle-start-address", "straddle", "start-address"),
    ("unmapped-mmio-zero", "unmapped_mmio_read", "zeros"),
    ("cf8-latches-low-bits", "cf8_low_bits", "latched"),
    ("overlap-last-mapped", "overlap", "last-mapped"),
    ("bar-move-deferred", "bar_move_while_decoding", "deferred"),
]


@pytest.mark.req("R-VAR-002", "R-VAR-001")
@pytest.mark.parametrize(("name", "axis", "value"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_variant_mutant_fails_vectors_naming_its_variant(
    generated: Generated, name: str, axis: str, value: str
) -> None:
    result = vectors.run(generated.directory, BY_NAME[name].adapter())
    assert result.failed
    assert result.complete
    all_manifests = manifests(generated)
    declared = Profile().to_mapping()
    named_exactly = []
    for case_id, detail in result.failed:
        found = re.search(r"\(matches variant (\{.*?\}), declared (\{.*?\})\)$", detail)
        assert found is not None, f"{case_id}: the failure names no variant: {detail}"
        named, wanted = ast.literal_eval(found[1]), ast.literal_eval(found[2])
        manifest = all_manifests[case_id]
        assert axis in manifest["axes"]
        assert wanted == {a: declared[a] for a in manifest["axes"]}
        outcomes = {json.dumps(o["when"], sort_keys=True): o["observations"] for o in manifest["outcomes"]}
        really = {**wanted, axis: value}
        # the named variant is the one implemented, or one observably identical on this vector
        assert outcomes[json.dumps(named, sort_keys=True)] == outcomes[json.dumps(really, sort_keys=True)]
        if named == really:
            named_exactly.append(case_id)
    assert len(named_exactly) >= len(result.failed) // 2
    assert audit(result)[4] == len(result.failed)


@pytest.mark.req("R-BLOB-004")
def test_digests_are_compared_only_for_canonical_blobs(generated: Generated) -> None:
    class OwnDigests(ModelAdapter):
        def __init__(self, canonical: bool) -> None:
            super().__init__("own-digests")
            self._info = dataclasses.replace(self._info, canonical_blobs=canonical)

        def execute(self, op: Op) -> Observation:
            obs = super().execute(op)
            return Observation(digest="f" * 64) if obs.digest is not None else obs

    lenient = vectors.run(generated.directory, OwnDigests(canonical=False))
    assert lenient.failed == []
    strict = vectors.run(generated.directory, OwnDigests(canonical=True))
    assert strict.failed
    assert all("digest" in detail for _, detail in strict.failed)
    assert len(strict.passed) + len(strict.failed) == generated.count


def test_fixed_machine_adapter_excludes_full_api_vectors(generated: Generated) -> None:
    machine = FixedMachine(1, ((Bdf(0, 2, 0), SUITE_TYPES["e1000"]),))
    adapter = ModelAdapter("guest", machine=machine, operations=GUEST_VIEW)
    assert adapter.info == AdapterInfo("guest", operations=GUEST_VIEW, machine=machine)
    result = vectors.run(generated.directory, adapter)
    n = generated.count
    assert result.audit_line() == f"Ran 0 of {n} vectors ({n} intentionally excluded): 0 passed, 0 failed"
    assert result.complete
    assert len(result.excluded) == n
    assert {case_id for case_id, _ in result.excluded} == {e["id"] for e in generated.index}
    assert {reason for _, reason in result.excluded} == {
        "needs the full data-manager API; the adapter presents a fixed machine"
    }


def test_fixed_machine_adapter_rejects_undeclared_operations_as_trace_errors() -> None:
    adapter = ModelAdapter("guest", machine=FixedMachine(1, ()), operations=GUEST_VIEW)
    with pytest.raises(TraceError, match="adapter 'guest' does not support save"):
        adapter.execute(Op(OpKind.SAVE, vm=1, bdf=Bdf(0, 2, 0), name="s"))


def test_user_exclusions_are_accounted_for(generated: Generated) -> None:
    skipped = generated.index[0]["id"]
    result = vectors.run(generated.directory, ModelAdapter(), exclude={skipped: "known flaky hardware"})
    assert result.excluded == [(skipped, "excluded by the user: known flaky hardware")]
    n = generated.count
    assert (
        result.audit_line()
        == f"Ran {n - 1} of {n} vectors (1 intentionally excluded): {n - 1} passed, 0 failed"
    )
    assert result.complete


def test_unsupported_operation_kinds_are_excluded(copied: Path) -> None:
    """A guest-view vector needing an operation the adapter lacks is excluded with the reason."""
    index_path = copied / "index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    entry = index["cases"][0]
    manifest_path = copied / entry["path"] / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["full_api"] = False
    manifest["needs"] = sorted({*manifest["needs"], "save"})
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    entry["files"]["manifest.json"] = sha256(manifest_path)
    index_path.write_text(json.dumps(index), encoding="utf-8")
    guest = ModelAdapter("guest", machine=FixedMachine(1, ()), operations=GUEST_VIEW)
    result = vectors.run(copied, guest)
    assert result.excluded[0] == (entry["id"], "adapter does not support create_vm, plug, save")
    assert result.complete
    n = len(index["cases"])
    assert result.audit_line() == f"Ran 0 of {n} vectors ({n} intentionally excluded): 0 passed, 0 failed"


# ------------------------------------------------------------------ integrity


def first_entry(directory: Path) -> dict[str, Any]:
    entry = json.loads((directory / "index.json").read_text(encoding="utf-8"))["cases"][0]
    assert isinstance(entry, dict)
    return entry


def test_tampered_trace_is_rejected(copied: Path) -> None:
    entry = first_entry(copied)
    trace = copied / entry["path"] / "trace.jsonl"
    trace.write_text(
        trace.read_text(encoding="utf-8").replace('"value": ', '"value": 1', 1), encoding="utf-8"
    )
    with pytest.raises(TraceError, match=rf"vector {re.escape(entry['id'])}: trace.jsonl .*index.json"):
        vectors.run(copied, ModelAdapter())


def test_tampered_manifest_is_rejected(copied: Path) -> None:
    entry = first_entry(copied)
    manifest = copied / entry["path"] / "manifest.json"
    manifest.write_text(manifest.read_text(encoding="utf-8") + " ", encoding="utf-8")
    with pytest.raises(TraceError, match=r"manifest\.json does not match its SHA-256 in index\.json"):
        vectors.run(copied, ModelAdapter())


def test_missing_file_is_rejected(copied: Path) -> None:
    entry = first_entry(copied)
    (copied / entry["path"] / "trace.jsonl").unlink()
    with pytest.raises(TraceError, match=r"trace\.jsonl is missing"):
        vectors.run(copied, ModelAdapter())


def test_unlisted_case_folder_is_rejected(copied: Path) -> None:
    entry = first_entry(copied)
    stray = copied / entry["path"].split("/")[0] / "stray-case"
    shutil.copytree(copied / entry["path"], stray)
    with pytest.raises(TraceError, match=r"not in index.json: .*stray-case"):
        vectors.run(copied, ModelAdapter())


@pytest.mark.parametrize(
    "index",
    ['{"format": 2, "cases": []}', '{"format": 1}', "[]", "not json"],
    ids=["format-2", "no-cases", "not-an-object", "not-json"],
)
def test_bad_index_is_rejected(copied: Path, index: str) -> None:
    (copied / "index.json").write_text(index, encoding="utf-8")
    with pytest.raises(TraceError, match=r"index\.json"):
        vectors.run(copied, ModelAdapter())


def test_missing_index_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"index\.json"):
        vectors.run(tmp_path, ModelAdapter())


def test_cli_reports_tampering_as_one_error_line(copied: Path) -> None:
    entry = first_entry(copied)
    (copied / entry["path"] / "trace.jsonl").write_text("{}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["vectors", "run", str(copied), "--adapter", "reference"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"vpcid: error: vector {entry['id']}: trace.jsonl")


GUEST_MACHINE = FixedMachine(
    1, ((Bdf(0, 2, 0), SUITE_TYPES["e1000"]), (Bdf(0, 5, 0), SUITE_TYPES["kitchen-sink"])),
    reserved_functions=(Bdf(0, 0, 0),),
)  # fmt: skip


@pytest.fixture(scope="module")
def machine_vectors(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """Vectors for a guest-view machine: e1000 and kitchen-sink, a platform function at 00:00.0."""
    directory = tmp_path_factory.mktemp("machine-vectors") / "out"
    count = vectors.generate(directory, GUEST_MACHINE)
    index = json.loads((directory / "index.json").read_text(encoding="utf-8"))["cases"]
    return Generated(directory, count, index)


def _guest(machine: FixedMachine = GUEST_MACHINE, name: str = "guest") -> ModelAdapter:
    return ModelAdapter(name, machine=machine, operations=GUEST_VIEW | {OpKind.RESET})


def test_machine_vectors_describe_their_machine(machine_vectors: Generated) -> None:
    described = vectors.machine_description(GUEST_MACHINE)
    assert described["devices"] == [
        ["00:02.0", "e1000", SUITE_TYPES["e1000"].fingerprint().hex()],
        ["00:05.0", "kitchen-sink", SUITE_TYPES["kitchen-sink"].fingerprint().hex()],
    ]
    assert described["reserved_functions"] == ["00:00.0"]
    ids = set()
    for entry in machine_vectors.index:
        manifest = json.loads((machine_vectors.directory / entry["path"] / "manifest.json").read_text())
        assert set(manifest) == MANIFEST_KEYS | {"machine"}
        assert manifest["full_api"] is False
        assert manifest["machine"] == described
        assert not {"create_vm", "plug"} & set(manifest["needs"])
        ids.add(manifest["id"])
    assert any("--e1000-00-02-0" in i for i in ids)
    assert any("--kitchen-sink-00-05-0" in i for i in ids)


def test_machine_vectors_pass_on_that_machine_and_fail_a_mutant(machine_vectors: Generated) -> None:
    result = vectors.run(machine_vectors.directory, _guest())
    assert result.complete
    assert result.failed == []
    assert len(result.passed) + len(result.excluded) == machine_vectors.count
    assert all(reason.startswith("adapter does not support ") for _, reason in result.excluded)
    assert len(result.passed) > 40
    mutant = ModelAdapter("mutant", machine=GUEST_MACHINE, operations=GUEST_VIEW | {OpKind.RESET},
                          manager_factory=BY_NAME["rw1c-as-rw"].build)  # fmt: skip
    assert vectors.run(machine_vectors.directory, mutant).failed


def test_machine_vectors_are_excluded_elsewhere(machine_vectors: Generated) -> None:
    n = machine_vectors.count
    moved = dataclasses.replace(GUEST_MACHINE, ecam_base=0xC000_0000)
    for adapter, reason in (
        (ModelAdapter(), "generated for a fixed machine; the adapter offers the full API"),
        (
            _guest(moved),
            "generated for another fixed machine (devices, ECAM window or platform ranges differ)",
        ),
    ):
        result = vectors.run(machine_vectors.directory, adapter)
        assert result.audit_line() == f"Ran 0 of {n} vectors ({n} intentionally excluded): 0 passed, 0 failed"
        assert {r for _, r in result.excluded} == {reason}


def test_cli_generates_vectors_for_an_adapters_machine_only(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["vectors", "generate", str(tmp_path / "v"), "--machine-of", "reference"]
    )
    assert result.exit_code == 2
    assert "offers the full API, not a fixed machine" in result.output


def test_generate_case_patterns_pick_cases_by_label_or_vector_id(tmp_path: Path) -> None:
    """``--case`` keeps the cases a shell pattern matches, by label or by vector ID; a pattern that
    matches nothing is bad input, and nothing is written."""
    runner = CliRunner()
    by_id = runner.invoke(main, ["vectors", "generate", str(tmp_path / "a"), "--case", "bridges/*"])
    assert by_id.exit_code == 0, by_id.output
    ids = [c["id"] for c in json.loads((tmp_path / "a" / "index.json").read_text())["cases"]]
    assert ids
    assert all(i.startswith("bridges/") for i in ids)
    label = runner.invoke(main, ["vectors", "generate", str(tmp_path / "b"), "--case", "*@edu:*"])
    assert label.exit_code == 0, label.output
    ids = [c["id"] for c in json.loads((tmp_path / "b" / "index.json").read_text())["cases"]]
    assert ids
    assert all("--edu-" in i for i in ids)
    none = runner.invoke(main, ["vectors", "generate", str(tmp_path / "c"), "--case", "no-such-*"])
    assert none.exit_code == 2
    assert "vpcid: error: no case matches no-such-*" in none.output
    assert not (tmp_path / "c").exists()
