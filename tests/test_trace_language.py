"""The trace language (spec/formats/trace.md): strict parsing of operations, observations and files."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.engine import Differential
from vpcid.conformance.trace import (
    EXTENSIONS,
    FULL,
    GUEST_VIEW,
    INTROSPECTION,
    OK,
    Observation,
    Op,
    OpKind,
    Step,
    TraceError,
    TraceHeader,
    blob_digest,
    define_type_op,
    dump_lines,
    new_op,
    parse_lines,
    read_trace,
    value_observation,
    write_trace,
)
from vpcid.model import Bdf
from vpcid.model.manager import DEFAULT_ECAM_BASE

REPO = Path(__file__).resolve().parents[1]
NIC = Bdf(0, 2, 0)
FAR = Bdf(0x1F, 0x1F, 7)

SAMPLES: dict[OpKind, list[Op]] = {
    OpKind.INIT: [Op(OpKind.INIT)],
    OpKind.CREATE_VM: [
        Op(OpKind.CREATE_VM, vm=3),
        Op(OpKind.CREATE_VM, vm=4, ecam_base=None),
        Op(OpKind.CREATE_VM, vm=5, ecam_base=0xE000_0000),
    ],
    OpKind.DESTROY_VM: [Op(OpKind.DESTROY_VM, vm=7)],
    OpKind.PLUG: [Op(OpKind.PLUG, vm=1, bdf=NIC, name="e1000")],
    OpKind.UNPLUG: [Op(OpKind.UNPLUG, vm=1, bdf=FAR)],
    OpKind.CONFIG_READ: [Op(OpKind.CONFIG_READ, vm=1, bdf=NIC, address=0x10, width=4)],
    OpKind.CONFIG_WRITE: [Op(OpKind.CONFIG_WRITE, vm=1, bdf=FAR, address=0x3C, width=1, value=0xAB)],
    OpKind.IO_READ: [Op(OpKind.IO_READ, vm=2, address=0xCFC, width=2)],
    OpKind.IO_WRITE: [Op(OpKind.IO_WRITE, vm=2, address=0xCF8, width=4, value=0x8000_1000)],
    OpKind.MMIO_READ: [Op(OpKind.MMIO_READ, vm=1, address=(1 << 64) - 8, width=8)],
    OpKind.MMIO_WRITE: [Op(OpKind.MMIO_WRITE, vm=1, address=0xFEBC_0000, width=8, value=(1 << 64) - 1)],
    OpKind.RESET: [Op(OpKind.RESET, vm=1, bdf=NIC)],
    OpKind.RESET_VM: [Op(OpKind.RESET_VM, vm=1)],
    OpKind.SAVE: [Op(OpKind.SAVE, vm=1, bdf=NIC, name="slot-a")],
    OpKind.RESTORE: [
        Op(OpKind.RESTORE, vm=1, bdf=NIC, name="slot-a"),
        Op(OpKind.RESTORE, vm=1, bdf=NIC, data=bytes.fromhex("00ff10ab")),
    ],
    OpKind.SNAPSHOT: [Op(OpKind.SNAPSHOT, vm=1, name="v")],
    OpKind.RESTORE_VM: [
        Op(OpKind.RESTORE_VM, vm=2, name="v"),
        Op(OpKind.RESTORE_VM, vm=2, data=b"\x01\x02"),
    ],
    OpKind.TABLES: [Op(OpKind.TABLES, vm=1)],
    OpKind.SET_ECAM_BASE: [
        Op(OpKind.SET_ECAM_BASE, vm=1, ecam_base=0xC000_0000),
        Op(OpKind.SET_ECAM_BASE, vm=1, ecam_base=None),
    ],
    OpKind.TOPOLOGY: [
        Op(OpKind.TOPOLOGY, vm=1),
    ],
    OpKind.DEFINE_TYPE: [
        define_type_op({"name": "tiny", "vendor_id": "0x1af4", "device_id": 1, "class_code": 0})
    ],
}

VALID_PREFIX = '{"op": "init"}'


def sample_ops() -> list[Op]:
    return [op for ops in SAMPLES.values() for op in ops]


def parse_one(line: str) -> list[Step]:
    """Parse ``line`` as the second line of a trace (after a valid ``init``)."""
    _, steps = parse_lines([VALID_PREFIX, line])
    return steps


# ------------------------------------------------------------------ operations


def test_samples_cover_every_kind() -> None:
    assert set(SAMPLES) == set(OpKind)
    assert frozenset(OpKind) == FULL | EXTENSIONS | INTROSPECTION
    assert GUEST_VIEW <= FULL
    assert OpKind.INIT in GUEST_VIEW


@pytest.mark.parametrize("op", sample_ops(), ids=lambda op: f"{op.kind.value}")
def test_every_op_round_trips_through_json(op: Op) -> None:
    obj = op.to_json()
    assert obj["op"] == op.kind.value
    # through real JSON text, as a trace file carries it
    again = Op.from_json(json.loads(json.dumps(obj)))
    assert again == op
    assert again.to_json() == obj


def test_op_json_uses_the_spec_field_names() -> None:
    assert Op(OpKind.CONFIG_READ, vm=1, bdf=NIC, address=0x10, width=4).to_json() == {
        "op": "config_read", "vm": 1, "bdf": "00:02.0", "offset": 16, "width": 4,
    }  # fmt: skip
    assert Op(OpKind.IO_WRITE, vm=2, address=0xCF8, width=4, value=5).to_json() == {
        "op": "io_write", "vm": 2, "port": 0xCF8, "width": 4, "value": 5,
    }  # fmt: skip
    assert Op(OpKind.MMIO_READ, vm=1, address=0x1000, width=2).to_json() == {
        "op": "mmio_read", "vm": 1, "address": 0x1000, "width": 2,
    }  # fmt: skip
    assert Op(OpKind.PLUG, vm=1, bdf=FAR, name="edu").to_json() == {
        "op": "plug", "vm": 1, "bdf": "1f:1f.7", "type": "edu",
    }  # fmt: skip
    assert Op(OpKind.RESTORE, vm=1, bdf=NIC, data=b"\xab\x01").to_json() == {
        "op": "restore", "vm": 1, "bdf": "00:02.0", "blob": "ab01",
    }  # fmt: skip
    assert Op(OpKind.SNAPSHOT, vm=1, name="v").to_json() == {"op": "snapshot", "vm": 1, "slot": "v"}
    assert Op(OpKind.INIT).to_json() == {"op": "init"}


def test_create_vm_ecam_base_is_optional_and_nullable() -> None:
    assert Op.from_json({"op": "create_vm", "vm": 1}).ecam_base == DEFAULT_ECAM_BASE
    assert Op.from_json({"op": "create_vm", "vm": 1, "ecam_base": None}).ecam_base is None
    assert Op.from_json({"op": "create_vm", "vm": 1, "ecam_base": 0xE000_0000}).ecam_base == 0xE000_0000


def test_out_of_range_integers_are_valid_fields() -> None:
    """Any integer is a valid field value: out-of-range values are how error handling is tested."""
    op = Op.from_json({"op": "mmio_write", "vm": -1, "address": 1 << 70, "width": 3, "value": -5})
    assert (op.vm, op.address, op.width, op.value) == (-1, 1 << 70, 3, -5)


MALFORMED: list[tuple[str, dict[str, Any] | str, str]] = [
    ("unknown-op", {"op": "frobnicate", "vm": 1}, "unknown operation 'frobnicate'"),
    ("op-not-string", {"op": 3}, "'op' string"),
    ("no-op", {"vm": 1}, "'op' string"),
    ("not-an-object", "[1, 2]", "'op' string"),
    ("missing-width", {"op": "config_read", "vm": 1, "bdf": "00:02.0", "offset": 0}, "width"),
    ("missing-vm", {"op": "tables"}, "vm"),
    ("missing-value", {"op": "io_write", "vm": 1, "port": 0x80, "width": 1}, "value"),
    ("extra-field", {"op": "init", "vm": 1}, "unexpected field(s) vm"),
    ("extra-field-on-read", {"op": "io_read", "vm": 1, "port": 1, "width": 1, "value": 0}, "value"),
    ("misspelled-field", {"op": "io_read", "vm": 1, "prot": 1, "width": 1}, "prot"),
    ("string-for-int", {"op": "io_read", "vm": 1, "port": "0xcf8", "width": 4}, "integer"),
    ("string-vm", {"op": "reset_vm", "vm": "1"}, "integer"),
    ("bool-for-int", {"op": "io_read", "vm": 1, "port": 0xCF8, "width": True}, "integer"),
    ("float-for-int", {"op": "mmio_read", "vm": 1, "address": 4096.0, "width": 4}, "integer"),
    ("null-for-int", {"op": "mmio_read", "vm": 1, "address": None, "width": 4}, "integer"),
    ("string-ecam-base", {"op": "create_vm", "vm": 1, "ecam_base": "0xb0000000"}, "ecam_base"),
    ("bad-bdf-device", {"op": "reset", "vm": 1, "bdf": "00:20.0"}, "device"),
    ("bad-bdf-text", {"op": "reset", "vm": 1, "bdf": "zz:00.0"}, "BDF"),
    ("bad-bdf-function", {"op": "unplug", "vm": 1, "bdf": "00:02.8"}, "BDF"),
    ("int-bdf", {"op": "reset", "vm": 1, "bdf": 16}, "bdf is a string"),
    ("empty-type", {"op": "plug", "vm": 1, "bdf": "00:02.0", "type": ""}, "type is a non-empty string"),
    ("int-slot", {"op": "save", "vm": 1, "bdf": "00:02.0", "slot": 1}, "slot is a non-empty string"),
    ("bad-hex-blob", {"op": "restore", "vm": 1, "bdf": "00:02.0", "blob": "xyz0"}, "hexadecimal"),
    ("odd-hex-blob", {"op": "restore_vm", "vm": 1, "blob": "abc"}, "hexadecimal"),
    ("int-blob", {"op": "restore_vm", "vm": 1, "blob": 12}, "hexadecimal"),
    ("slot-and-blob", {"op": "restore", "vm": 1, "bdf": "00:02.0", "slot": "s", "blob": "00"}, "one of"),
    ("neither-slot-nor-blob", {"op": "restore_vm", "vm": 1}, "one of slot, blob"),
    ("bad-expect", {"op": "init", "expect": {"ok": False}}, "not an observation"),
    ("expect-two-fields", {"op": "init", "expect": {"ok": True, "value": 1}}, "exactly one field"),
    ("non-json", '{"op": "init"', "not JSON"),
    ("non-json-text", "init vm=1", "not JSON"),
    ("header-after-op", {"vpcid-trace": 1, "profile": {}, "notes": {}}, "bad header"),
]


@pytest.mark.parametrize(("line", "message"), [pytest.param(text, m, id=i) for i, text, m in MALFORMED])
def test_malformed_line_raises_trace_error_naming_the_line(line: dict[str, Any] | str, message: str) -> None:
    text = line if isinstance(line, str) else json.dumps(line)
    with pytest.raises(TraceError) as caught:
        parse_one(text)
    assert str(caught.value).startswith("line 2: ")
    assert message in str(caught.value)
    assert caught.value.kind == "bad-trace"


def test_line_numbers_count_blank_and_comment_lines() -> None:
    lines = ["# a comment", "", VALID_PREFIX, "   ", "# another", '{"op": "nope"}']
    with pytest.raises(TraceError, match=r"^line 6: unknown operation 'nope'"):
        parse_lines(lines)


@pytest.mark.parametrize(
    "header",
    [
        {"vpcid-trace": 2},
        {"vpcid-trace": "1"},
        {"vpcid-trace": 1, "extra": True},
        {"vpcid-trace": 1, "profile": []},
        {"vpcid-trace": 1, "notes": "free text"},
    ],
    ids=["version-2", "version-string", "unknown-key", "profile-not-object", "notes-not-object"],
)
def test_bad_header_raises_trace_error_naming_the_line(header: dict[str, Any]) -> None:
    with pytest.raises(TraceError, match=r"^line 3: .*header"):
        parse_lines(["# header follows", "", json.dumps(header), VALID_PREFIX])


def test_header_is_optional_and_parsed() -> None:
    header, steps = parse_lines([VALID_PREFIX])
    assert header == TraceHeader()
    assert [s.op for s in steps] == [Op(OpKind.INIT)]
    header, steps = parse_lines(
        [json.dumps({"vpcid-trace": 1, "profile": {"straddle": "reject"}, "notes": {"n": [1]}}), VALID_PREFIX]
    )
    assert header.profile == {"straddle": "reject"}
    assert header.notes == {"n": [1]}
    assert steps[0].line == 2


def test_steps_carry_their_line_and_expectation() -> None:
    _, steps = parse_lines(
        [
            VALID_PREFIX,
            "",
            '{"op": "create_vm", "vm": 1, "expect": {"ok": true}}',
            '{"op": "io_read", "vm": 1, "port": 3320, "width": 4, "expect": {"value": 0}}',
        ]
    )
    assert [s.line for s in steps] == [1, 3, 4]
    assert [s.expect for s in steps] == [None, OK, Observation(value=0)]


# ------------------------------------------------------------------ observations

VALID_OBSERVATIONS: list[dict[str, Any]] = [
    {"ok": True},
    {"value": 0},
    {"value": (1 << 64) - 1},
    {"error": "bad-width"},
    {"error": "empty-slot"},
    {"digest": "5e" * 32},
    {"tables": []},
    {"tables": [["config", "00:02.0", "e1000"], ["memory", 4096, 4096, "00:02.0", 0]]},
]


@pytest.mark.parametrize("obj", VALID_OBSERVATIONS, ids=lambda o: next(iter(o)))
def test_observations_round_trip(obj: dict[str, Any]) -> None:
    obs = Observation.from_json(obj)
    assert obs.to_json() == obj
    assert Observation.from_json(json.loads(str(obs))) == obs


@pytest.mark.req("R-ERR-003")
@pytest.mark.parametrize(
    "kind",
    ["invalid-argument", "unknown-vm", "duplicate-vm", "unknown-device", "slot-occupied", "bad-width",
     "misaligned", "bad-device-type", "bad-profile", "bad-blob", "blob-mismatch"],
)  # fmt: skip
def test_error_kinds_are_observations(kind: str) -> None:
    """Traces name errors by their stable kind (R-ERR-003)."""
    obs = Observation.from_json({"error": kind})
    assert obs.error == kind
    assert obs.to_json() == {"error": kind}
    assert obs != OK


@pytest.mark.req("R-BLOB-004", "R-BLOB-006")
def test_digest_observation_is_the_blobs_digest_field() -> None:
    adapter = ModelAdapter()
    ops = [Op.from_json(o) for o in (
        {"op": "create_vm", "vm": 1},
        {"op": "plug", "vm": 1, "bdf": "00:02.0", "type": "e1000"},
        {"op": "save", "vm": 1, "bdf": "00:02.0", "slot": "nic"},
        {"op": "snapshot", "vm": 1, "slot": "vm"},
    )]  # fmt: skip
    observed = [adapter.execute(op) for op in ops]
    blob, snapshot = adapter.manager.save(1, Bdf(0, 2, 0)), adapter.manager.snapshot(1)
    assert observed[2] == Observation(digest=blob[-32:].hex())
    assert observed[2].digest == hashlib.sha256(blob[:-32]).hexdigest()
    assert observed[3] == Observation(digest=snapshot[-32:].hex())
    assert observed[3].digest != hashlib.sha256(snapshot[:-32]).hexdigest()  # a hash tree (R-BLOB-006)
    digest = blob_digest(bytes(range(40)))
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == bytes(range(8, 40)).hex()
    assert Observation.from_json({"digest": digest}) == Observation(digest=digest)


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"ok": False},
        {"ok": 1},
        {"ok": True, "value": 1},
        {"value": -1},
        {"value": "1"},
        {"value": True},
        {"value": 1.0},
        {"value": None},
        {"error": ""},
        {"error": 3},
        {"digest": ""},
        {"digest": 5},
        {"tables": [1, 2]},
        {"tables": "rows"},
        {"crash": "RuntimeError"},
        [{"ok": True}],
        "ok",
        None,
    ],
    ids=repr,
)
def test_observations_parse_strictly(obj: object) -> None:
    with pytest.raises(TraceError):
        Observation.from_json(obj)


def test_observation_precedence_and_default() -> None:
    assert Observation().to_json() == {"ok": True}
    assert Observation(value=5, error="bad-width").to_json() == {"error": "bad-width"}
    assert str(Observation(value=5)) == '{"value": 5}'


# ------------------------------------------------------------------ files


def test_write_and_read_trace_round_trip(tmp_path: Path) -> None:
    header = TraceHeader(profile={"overlap": "last-mapped"}, notes={"case": "demo", "seed": 7})
    steps = [
        Step(op, expect)
        for op, expect in zip(
            sample_ops(),
            [OK, None, Observation(value=3), Observation(error="unknown-vm"),
             Observation(digest="ab" * 32), Observation(tables=(("config", "00:02.0", "e1000"),))] * 10,
            strict=False,
        )
    ]  # fmt: skip
    path = tmp_path / "nested" / "t.jsonl"
    write_trace(path, header, steps)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert json.loads(text.splitlines()[0]) == {
        "vpcid-trace": 1,
        "profile": header.profile,
        "notes": header.notes,
    }
    got_header, got = read_trace(path)
    assert got_header == header
    assert [(s.op, s.expect) for s in got] == [(s.op, s.expect) for s in steps]
    assert [s.line for s in got] == list(range(2, len(steps) + 2))
    assert list(dump_lines(got_header, got)) == text.splitlines()


def test_spec_example_parses_and_matches_the_model() -> None:
    """The example in spec/formats/trace.md is a valid trace whose expectations the model meets."""
    spec = (REPO / "spec" / "formats" / "trace.md").read_text(encoding="utf-8")
    block = spec.split("## Example", 1)[1].split("```")[1]
    header, steps = parse_lines(block.splitlines())
    assert header == TraceHeader()
    assert steps[0].op.kind is OpKind.INIT
    model = ModelAdapter()
    for step in steps:
        assert step.expect is not None
        assert model.execute(step.op) == step.expect
    assert Differential(ModelAdapter()).replay([s.op for s in steps]) is None


def test_fast_constructors_build_the_same_tuples_as_the_named_tuples() -> None:
    """new_op and value_observation bypass the named tuples' argument handling; the fields must line up."""
    bdf = Bdf(0, 3, 0)
    fast = new_op(OpKind.CONFIG_WRITE, 2, bdf, 0x10, 4, 0xE000_0000)
    slow = Op(OpKind.CONFIG_WRITE, vm=2, bdf=bdf, address=0x10, width=4, value=0xE000_0000)
    assert fast == slow
    assert type(fast) is Op
    assert fast.to_json() == slow.to_json()
    assert new_op(OpKind.TABLES, 5) == Op(OpKind.TABLES, vm=5)
    assert value_observation(7) == Observation(7)
    assert type(value_observation(7)) is Observation
