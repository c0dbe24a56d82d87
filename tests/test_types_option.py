"""Device types from files in a run: the define_type operation and --types (R-DT-001, R-DT-002)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.certify import CertifyError, applicable_cases, certify
from vpcid.conformance.cli import main
from vpcid.conformance.trace import FULL, OK, Observation, Op, OpKind, TraceError, define_type_op, parse_lines
from vpcid.conformance.typefile import type_json, write_type_file
from vpcid.model import Bdf, ConfigSpace, DeviceType
from vpcid.model.catalog import E1000, EDU

BUDGET = 1_000


def moved_capability_type(name: str = "e1000-cap-at-0xdc") -> DeviceType:
    """The e1000's bytes with its power-management capability moved to 0xdc, as real e1000s have it."""
    declared = E1000.declared
    image, wmask, w1c = bytearray(declared.image), bytearray(declared.wmask), bytearray(declared.w1cmask)
    for array in (image, wmask, w1c):
        array[0xDC:0xE4] = array[0x40:0x48]
        array[0x40:0x48] = bytes(8)
    image[0x34] = 0xDC
    space = ConfigSpace(bytes(image), bytes(wmask), bytes(w1c))
    return DeviceType.from_space(name, space, E1000.bars, E1000.rom)


@pytest.mark.req("R-DT-001", "R-DT-002")
def test_define_type_round_trips_through_the_trace_language() -> None:
    t = moved_capability_type()
    op = define_type_op(type_json(t))
    line = json.dumps({**op.to_json(), "expect": {"ok": True}})
    _, steps = parse_lines([line])
    assert steps[0].op == op
    assert steps[0].op.name == t.name
    with pytest.raises(TraceError, match="device-type object"):
        parse_lines(['{"op": "define_type", "definition": "e1000"}'])


@pytest.mark.req("R-DT-001", "R-DT-002")
def test_defined_types_plug_by_name_persist_across_init_and_reject_conflicts() -> None:
    t = moved_capability_type()
    adapter = ModelAdapter()
    bdf = Bdf(0, 3, 0)
    assert adapter.execute(define_type_op(type_json(t))).same(OK)
    assert adapter.execute(define_type_op(type_json(t))).same(OK)  # the same definition again
    assert adapter.execute(Op(OpKind.INIT)).same(OK)
    assert adapter.execute(Op(OpKind.CREATE_VM, vm=1)).same(OK)
    assert adapter.execute(Op(OpKind.PLUG, vm=1, bdf=bdf, name=t.name)).same(OK)
    read = adapter.execute(Op(OpKind.CONFIG_READ, vm=1, bdf=bdf, address=0x34, width=1))
    assert read.same(Observation(value=0xDC))
    clash = {**type_json(EDU), "name": "e1000"}
    assert adapter.execute(define_type_op(clash)).same(Observation(error="bad-device-type"))
    broken = {**type_json(t), "name": "broken", "fingerprint": "00" * 32}
    assert adapter.execute(define_type_op(broken)).same(Observation(error="bad-device-type"))


@pytest.mark.req("R-DT-005", "R-DT-006")
def test_certify_exercises_types_given_with_types() -> None:
    t = moved_capability_type()
    plain = applicable_cases(ModelAdapter().info)
    more = applicable_cases(ModelAdapter().info, [t])
    extra = [label for label, _, ops in more if t.name in label]
    assert extra
    assert len(more) == len(plain) + len(extra)
    assert all(ops[1].kind is OpKind.DEFINE_TYPE for label, _, ops in more if t.name in label)
    assert any("capability-0-id-01-at-0dc" in label for label in extra)
    assert certify(ModelAdapter(), BUDGET, types=[t]).conformant


def test_certify_a_mutant_with_types_finds_it_and_the_trace_replays(tmp_path: Path) -> None:
    t = moved_capability_type()
    path = tmp_path / "types.json"
    write_type_file(path, [t])
    out = tmp_path / "cx"
    runner = CliRunner()
    args = ["certify", "--adapter", "mutant:rw1c-as-rw", "--budget", str(BUDGET), "--types", str(path)]
    result = runner.invoke(main, [*args, "--counterexamples", str(out)])
    assert result.exit_code == 1, result.output
    with_type = [p for p in sorted(out.iterdir()) if t.name in p.read_text()]
    assert with_type, "some counterexample exercises the type from the file"
    replay = runner.invoke(main, ["replay", str(with_type[0]), "--adapter", "mutant:rw1c-as-rw"])
    assert replay.exit_code == 1
    assert "DIVERGES" in replay.output
    clean = runner.invoke(main, ["replay", str(with_type[0]), "--adapter", "reference"])
    assert clean.exit_code == 0, clean.output


def test_types_need_a_full_api_adapter_that_defines_types() -> None:
    t = moved_capability_type()
    with pytest.raises(CertifyError, match="does not declare define_type"):
        certify(ModelAdapter(operations=FULL), BUDGET, types=[t])
    with pytest.raises(CertifyError, match="redefines suite types"):
        certify(ModelAdapter(), BUDGET, types=[moved_capability_type("e1000")])


def test_cli_certify_with_types(tmp_path: Path) -> None:
    path = tmp_path / "types.json"
    write_type_file(path, [moved_capability_type()])
    args = ["certify", "--adapter", "cython", "--budget", "500", "--types", str(path)]
    result = CliRunner().invoke(main, args)
    if "unavailable" in result.output:
        pytest.skip("the Cython backend is not built here")
    assert result.exit_code == 0, result.output


def test_vectors_generated_with_types_define_them_and_run(tmp_path: Path) -> None:
    from vpcid.conformance import vectors

    t = moved_capability_type()
    path = tmp_path / "types.json"
    write_type_file(path, [t])
    out = tmp_path / "vectors"
    # the type's cases, and the ECAM group's cases on the suite's own types (no define_type): whole
    # generation takes minutes, and the rule checked here holds case by case
    only = ["--case", f"*@{t.name}:*", "--case", "ecam/*"]
    result = CliRunner().invoke(main, ["vectors", "generate", str(out), "--types", str(path), *only])
    assert result.exit_code == 0, result.output
    index = json.loads((out / "index.json").read_text())
    mine = [c for c in index["cases"] if t.name in c["id"]]
    assert mine
    others = [c for c in index["cases"] if t.name not in c["id"]]
    assert others
    assert all(c["id"].startswith("ecam/") for c in others)
    manifest = json.loads((out / mine[0]["path"] / "manifest.json").read_text())
    assert "define_type" in manifest["needs"]
    ran = vectors.run(out, ModelAdapter())
    assert ran.complete
    assert not ran.failed
    without = vectors.run(out, ModelAdapter(operations=FULL))
    excluded = {case for case, _ in without.excluded}
    assert {c["id"] for c in mine} <= excluded
    needs = {
        c["id"]: json.loads((out / c["path"] / "manifest.json").read_text())["needs"] for c in index["cases"]
    }
    assert excluded == {case for case, kinds in needs.items() if "define_type" in kinds}


def test_random_and_stateful_engines_plug_types_from_files() -> None:
    from vpcid.conformance.engine import RandomOps, run_random
    from vpcid.conformance.stateful import run_stateful

    t = moved_capability_type()
    episode = next(iter(RandomOps(ModelAdapter().info, 3, types=[t]).episodes(200)))
    assert episode[1].kind is OpKind.DEFINE_TYPE
    assert any(op.kind is OpKind.PLUG and op.name == t.name for op in episode)
    touched = [op for op in episode if op.kind is OpKind.CONFIG_WRITE and op.bdf == Bdf(0, 0x10, 0)]
    assert touched, "the random engine also aims at the type from the file"
    executed, findings = run_random(ModelAdapter(), 2_000, 5, types=[t])
    assert executed >= 2_000
    assert not findings
    steps, stateful = run_stateful(ModelAdapter(), 5, 5, [t])
    assert steps
    assert not stateful


class WithoutConfigBehaviours(ModelAdapter):
    """An implementation that implements no configuration behaviour: it declines such types."""

    def execute(self, op: Op) -> Observation:
        if op.kind is OpKind.DEFINE_TYPE and json.loads(op.data).get("config_behaviour"):
            return Observation(error="bad-device-type")
        return super().execute(op)


@pytest.mark.req("R-DT-008")
def test_a_declined_type_is_left_out_and_reported_not_failed() -> None:
    from vpcid.conformance.devices import KITCHEN_SINK

    clamped = DeviceType.from_space(
        "clamped-sink", KITCHEN_SINK.declared, KITCHEN_SINK.bars, KITCHEN_SINK.rom,
        config_behaviour=KITCHEN_SINK.config_behaviour,
    )  # fmt: skip
    plain = moved_capability_type()
    report = certify(WithoutConfigBehaviours(), BUDGET, types=[clamped, plain])
    assert report.conformant
    # the cases' MSI layouts, and the variant-path case's type whose clamp behaviour re-derives every BAR
    layouts = {"msi-32", "msi-32-mask", "msi-64-mask", "msi-late-mmc3", "io-after-mem64"}
    assert report.declined_types == {"clamped-sink": "bad-device-type"} | dict.fromkeys(
        layouts, "bad-device-type"
    )
    assert report.to_json()["declined_types"] == report.declined_types
    assert report.engines["types"] == {"defined": 1, "declined": 1}
    assert report.engines["cases"]["declined"] == len(layouts)
