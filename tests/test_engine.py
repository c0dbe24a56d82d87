"""The differential engine: divergence detection, shrinking, seeded generation, crashes, digests."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vpcid.adapters.base import Adapter, AdapterInfo, FixedMachine
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.certify import certify
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.engine import (
    INIT,
    SYSTEM_LAYOUT,
    SYSTEM_VMS,
    Differential,
    RandomOps,
    model_for,
    normalise,
    run_random,
    shrink,
)
from vpcid.conformance.mutants import BY_NAME
from vpcid.conformance.trace import GUEST_VIEW, OK, Observation, Op, OpKind, TraceError
from vpcid.model import Bdf, DataManager, Profile
from vpcid.model.profile import Straddle

NIC = Bdf(0, 2, 0)
BAR0 = 0xE000_0000
"""Where the traces below put the e1000's 128 KiB BAR0."""

PROLOGUE = [INIT, Op(OpKind.CREATE_VM, vm=1), Op(OpKind.PLUG, vm=1, bdf=NIC, name="e1000")]

CAM_TRACE = [
    *PROLOGUE,
    Op(OpKind.IO_WRITE, vm=1, address=0xCF8, width=4, value=0x8000_1000),  # enabled: 00:02.0 register 0
    Op(OpKind.IO_READ, vm=1, address=0xCFC, width=4),
    Op(OpKind.IO_WRITE, vm=1, address=0xCF8, width=4, value=0x0000_1000),  # enable bit clear
    Op(OpKind.IO_READ, vm=1, address=0xCFC, width=4),  # index 6: must read as nothing (R-CAM-005)
    Op(OpKind.TABLES, vm=1),
]
MMIO_TRACE = [
    *PROLOGUE,
    Op(OpKind.CONFIG_WRITE, vm=1, bdf=NIC, address=0x10, width=4, value=BAR0),
    Op(OpKind.CONFIG_WRITE, vm=1, bdf=NIC, address=0x04, width=2, value=0x2),
    Op(OpKind.MMIO_WRITE, vm=1, address=BAR0, width=4, value=0x1122_3344),
    Op(OpKind.MMIO_READ, vm=1, address=BAR0, width=4),  # index 6: little-endian (R-ACC-007)
    Op(OpKind.SAVE, vm=1, bdf=NIC, name="s"),
]
STRADDLE_TRACE = [
    *MMIO_TRACE[:5],
    Op(OpKind.MMIO_READ, vm=1, address=BAR0 + 0x2_0000 - 2, width=4),  # index 5: last 2 bytes + 2 beyond
]
SAVE_TRACE = [
    *MMIO_TRACE,
    Op(OpKind.MMIO_WRITE, vm=1, address=BAR0, width=4, value=0),
    Op(OpKind.RESTORE, vm=1, bdf=NIC, name="s"),
    Op(OpKind.MMIO_READ, vm=1, address=BAR0, width=4),
    Op(OpKind.SNAPSHOT, vm=1, name="v"),
    Op(OpKind.RESTORE_VM, vm=1, name="v"),
    Op(OpKind.MMIO_READ, vm=1, address=BAR0, width=4),
]


class Wrapper:
    """An implementation built on the model, to misbehave in one controlled way."""

    def __init__(self, inner: ModelAdapter | None = None, **changes: object) -> None:
        self.inner = inner or ModelAdapter("wrapped")
        self._info = dataclasses.replace(self.inner.info, **changes)  # type: ignore[arg-type]
        self.calls = 0

    @property
    def info(self) -> AdapterInfo:
        return self._info

    def execute(self, op: Op) -> Observation:
        self.calls += 1
        return self.inner.execute(op)

    def close(self) -> None:
        self.inner.close()


class Crashes(Wrapper):
    """Raises RuntimeError on every operation of one kind, as a crashing implementation would."""

    def __init__(self, kind: OpKind, error: type[Exception] = RuntimeError) -> None:
        super().__init__(name=f"crashes-on-{kind.value}")
        self.kind, self.error = kind, error

    def execute(self, op: Op) -> Observation:
        if op.kind is self.kind:
            raise self.error(f"boom on {op.kind.value}")
        return super().execute(op)


class OwnBlobs(Wrapper):
    """Saves and snapshots observe a digest of its own (a non-canonical blob format)."""

    def execute(self, op: Op) -> Observation:
        obs = super().execute(op)
        if obs.digest is not None:
            return Observation(digest="0" * 64)
        return obs


def test_wrappers_are_adapters() -> None:
    assert isinstance(Wrapper(), Adapter)
    assert isinstance(Crashes(OpKind.SAVE), Adapter)


# ------------------------------------------------------------------ Differential


@pytest.mark.req("R-VAR-002")
def test_reference_matches_the_model() -> None:
    for ops in (CAM_TRACE, MMIO_TRACE, STRADDLE_TRACE, SAVE_TRACE):
        assert Differential(ModelAdapter()).run(ops) is None


@pytest.mark.req("R-VAR-002", "R-CAM-005")
def test_divergence_at_the_exact_step_cam_mutant() -> None:
    diff = Differential(BY_NAME["cam-ignores-enable"].adapter())
    divergence = diff.run(CAM_TRACE)
    assert divergence is not None
    assert divergence.index == 6
    assert divergence.op == CAM_TRACE[6]
    assert divergence.expected == Observation(value=0xFFFF_FFFF)
    assert divergence.observed is not None
    assert divergence.observed.value == 0x100E_8086
    assert divergence.crash is None
    shown = "step 6: io_read vm 1 port 0xcfc width 4: expected 0xffffffff, got 0x100e8086"
    assert divergence.describe() == shown
    assert Differential(BY_NAME["cam-ignores-enable"].adapter()).run(CAM_TRACE[:6]) is None


@pytest.mark.req("R-VAR-002", "R-ACC-007")
def test_divergence_at_the_exact_step_endianness_mutant() -> None:
    divergence = Differential(BY_NAME["big-endian-mmio"].adapter()).run(MMIO_TRACE)
    assert divergence is not None
    assert (divergence.index, divergence.op) == (6, MMIO_TRACE[6])
    assert divergence.expected == Observation(value=0x1122_3344)
    assert divergence.observed == Observation(value=0x4433_2211)


def test_run_numbers_steps_from_start_and_counts_them() -> None:
    diff = Differential(BY_NAME["big-endian-mmio"].adapter())
    assert diff.run(MMIO_TRACE[:6]) is None
    assert diff.steps == 6
    divergence = diff.run(MMIO_TRACE[6:], start=6)
    assert divergence is not None
    assert divergence.index == 6
    assert diff.steps == 7


@pytest.mark.req("R-VAR-002")
def test_model_runs_in_the_declared_profile() -> None:
    reject = Profile(straddle=Straddle.REJECT)
    assert model_for(ModelAdapter(profile=reject).info).info.profile == reject
    rejecting = Wrapper(ModelAdapter("rejects", reject))
    # declaring what it does: conformant
    assert Differential(rejecting).run(STRADDLE_TRACE) is None
    # doing the same while declaring the default: diverges at the straddling read
    liar = Wrapper(ModelAdapter("rejects", reject), profile=Profile())
    divergence = Differential(liar).run(STRADDLE_TRACE)
    assert divergence is not None
    assert divergence.index == 5


@pytest.mark.req("R-VAR-002")
def test_model_uses_the_declared_fixed_machine() -> None:
    machine = FixedMachine(4, ((Bdf(0, 3, 0), SUITE_TYPES["edu"]),), ecam_base=None)
    impl = ModelAdapter("fixed", machine=machine, operations=GUEST_VIEW)
    ops = [INIT, Op(OpKind.CONFIG_READ, vm=4, bdf=Bdf(0, 3, 0), address=0, width=4)]
    assert Differential(impl).run(ops) is None
    assert model_for(impl.info).execute(ops[1]) == impl.execute(ops[1]) != Observation(value=0xFFFF_FFFF)


def test_crash_is_a_divergence_not_a_suite_crash() -> None:
    impl = Crashes(OpKind.MMIO_READ)
    divergence = Differential(impl).run(MMIO_TRACE)
    assert divergence is not None
    assert divergence.index == 6
    assert divergence.observed is None
    assert divergence.crash == "RuntimeError: boom on mmio_read"
    assert divergence.expected == Observation(value=0x1122_3344)
    assert "got raised RuntimeError: boom on mmio_read" in divergence.describe()


def test_crash_found_by_the_random_engine_is_a_finding() -> None:
    impl = Crashes(OpKind.MMIO_WRITE)
    executed, findings = run_random(impl, 2_000, seed=0)
    assert len(findings) == 1
    finding = findings[0]
    assert finding.engine == "random"
    assert finding.divergence.crash is not None
    assert finding.divergence.crash.startswith("RuntimeError")
    assert finding.trace[0] == INIT
    assert finding.trace[-1].kind is OpKind.MMIO_WRITE
    assert executed < 2_000


def test_crashing_implementation_is_certified_not_conformant() -> None:
    report = certify(Crashes(OpKind.IO_READ), budget=1_000, stop_at_first_failure=True)
    assert not report.conformant
    failures = [f for r in report.requirements for f in r.failures]
    assert failures
    assert all("RuntimeError: boom on io_read" in f.description for f in failures)
    assert all(f.trace[-1]["op"] == "io_read" for f in failures)


def test_trace_error_from_an_adapter_is_the_suites_error() -> None:
    with pytest.raises(TraceError):
        Differential(Crashes(OpKind.SAVE, TraceError)).run(MMIO_TRACE)


@pytest.mark.req("R-BLOB-004")
def test_canonical_adapter_digests_are_compared() -> None:
    divergence = Differential(OwnBlobs(canonical_blobs=True)).run(SAVE_TRACE)
    assert divergence is not None
    assert divergence.op.kind is OpKind.SAVE
    assert divergence.observed == Observation(digest="0" * 64)
    assert divergence.expected.digest is not None
    assert divergence.expected.digest != "0" * 64


@pytest.mark.req("R-BLOB-004")
def test_non_canonical_adapter_digests_are_ignored() -> None:
    impl = OwnBlobs(canonical_blobs=False)
    assert Differential(impl).run(SAVE_TRACE) is None
    assert normalise(Observation(digest="ab"), impl.info) == OK
    assert normalise(Observation(value=1), impl.info) == Observation(value=1)
    assert normalise(Observation(digest="ab"), ModelAdapter().info) == Observation(digest="ab")
    # digests are ignored, everything else still is compared
    broken = OwnBlobs(
        ModelAdapter("x", manager_factory=BY_NAME["blob-drops-memory"].build), canonical_blobs=False
    )
    divergence = Differential(broken).run(SAVE_TRACE)
    assert divergence is not None
    assert divergence.op.kind is OpKind.MMIO_READ


@pytest.mark.req("R-BLOB-004")
def test_non_canonical_reference_certifies() -> None:
    report = certify(OwnBlobs(canonical_blobs=False), budget=1_000)
    assert report.conformant, [f.description for r in report.requirements for f in r.failures][:3]


# ------------------------------------------------------------------ shrink

SYNTHETIC = [INIT] + [Op(OpKind.CONFIG_READ, vm=1, bdf=NIC, address=i, width=1) for i in range(1, 41)]


def addresses(ops: list[Op]) -> list[int]:
    return [op.address for op in ops[1:]]


def assert_one_minimal(result: list[Op], original: list[Op], predicate: object) -> None:
    assert callable(predicate)
    assert result[0] == original[0]
    assert predicate(result)
    remaining = iter(original)
    assert all(op in remaining for op in result), "the result is a subsequence of the input"
    for i in range(1, len(result)):
        assert not predicate(result[:i] + result[i + 1 :]), f"removing {result[i]} keeps the predicate"


def test_shrink_keeps_exactly_the_needed_operations() -> None:
    needed = {3, 17, 18, 40}
    calls: list[list[Op]] = []

    def predicate(ops: list[Op]) -> bool:
        calls.append(ops)
        return needed <= set(addresses(ops))

    result = shrink(list(SYNTHETIC), predicate)
    assert addresses(result) == [3, 17, 18, 40]
    assert_one_minimal(result, SYNTHETIC, predicate)
    assert all(c[0] == INIT for c in calls), "init is always kept"


def test_shrink_orders_and_counts() -> None:
    def predicate(ops: list[Op]) -> bool:
        seen = addresses(ops)
        return (
            30 in seen and 5 in seen and seen.index(5) < seen.index(30) and sum(a % 7 == 0 for a in seen) >= 2
        )

    result = shrink(list(SYNTHETIC), predicate)
    assert_one_minimal(result, SYNTHETIC, predicate)
    assert len(result) == 1 + 4


def test_shrink_to_init_alone_and_single_op() -> None:
    assert shrink(list(SYNTHETIC), lambda ops: True) == [INIT]
    assert shrink([INIT, SYNTHETIC[5]], lambda ops: len(ops) == 2) == [INIT, SYNTHETIC[5]]
    assert shrink([INIT], lambda ops: True) == [INIT]


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 30),
    data=st.data(),
)
def test_shrink_is_one_minimal(size: int, data: st.DataObject) -> None:
    ops = SYNTHETIC[: size + 1]
    pool = list(range(1, size + 1))
    needed = data.draw(st.sets(st.sampled_from(pool), max_size=size))
    at_least = data.draw(st.integers(0, 3))

    def predicate(candidate: list[Op]) -> bool:
        seen = addresses(candidate)
        return needed <= set(seen) and sum(a % 2 == 0 for a in seen) >= min(at_least, size // 2)

    result = shrink(list(ops), predicate)
    assert_one_minimal(result, ops, predicate)


# ------------------------------------------------------------------ RandomOps


def episodes(info: AdapterInfo, seed: int, budget: int = 1_500) -> list[list[Op]]:
    return list(RandomOps(info, seed).episodes(budget))


def test_random_ops_is_deterministic_per_seed() -> None:
    info = ModelAdapter().info
    first = episodes(info, 11)
    assert first == episodes(info, 11)
    assert first != episodes(info, 12)
    assert sum(map(len, first)) >= 1_500
    assert all(len(e) >= RandomOps(info, 11).episode for e in first)


def test_random_ops_episodes_start_from_init_with_the_system_layout() -> None:
    for episode in episodes(ModelAdapter().info, 3):
        assert episode[0] == INIT
        plugs = [
            (op.vm, op.bdf, op.name) for op in episode[1 : 1 + len(SYSTEM_VMS) * (1 + len(SYSTEM_LAYOUT))]
        ]
        expected = []
        for vm in SYSTEM_VMS:
            expected += [(vm, None, "")] + [(vm, b, t) for b, t in SYSTEM_LAYOUT]
        assert plugs == expected


def test_random_ops_respect_the_adapter_operations() -> None:
    machine = FixedMachine(2, ((NIC, SUITE_TYPES["e1000"]), (Bdf(0, 5, 0), SUITE_TYPES["kitchen-sink"])))
    info = ModelAdapter("fixed", machine=machine, operations=GUEST_VIEW).info
    produced = episodes(info, 5)
    assert produced == episodes(info, 5)
    kinds = {op.kind for episode in produced for op in episode}
    assert kinds <= GUEST_VIEW
    assert {OpKind.CONFIG_WRITE, OpKind.IO_READ, OpKind.MMIO_READ} <= kinds
    assert all(episode[0] == INIT and episode[1].kind is not OpKind.CREATE_VM for episode in produced)


@pytest.mark.req("R-VAR-002")
def test_run_random_finds_nothing_on_the_reference_in_any_profile() -> None:
    alternative = Profile(straddle=Straddle.START_ADDRESS)
    for impl in (ModelAdapter(), ModelAdapter(profile=alternative)):
        executed, findings = run_random(impl, 1_500, seed=4)
        assert findings == []
        assert executed >= 1_500


@pytest.mark.req("R-VAR-002")
def test_run_random_finds_and_shrinks_a_planted_bug() -> None:
    impl = ModelAdapter(
        "x", manager_factory=lambda p: DataManager(dataclasses.replace(p, straddle=Straddle.REJECT))
    )
    _, findings = run_random(impl, 20_000, seed=0)
    assert len(findings) == 1
    finding = findings[0]
    assert finding.trace[0] == INIT
    assert Differential(impl).replay(list(finding.trace)) == finding.divergence
    assert finding.divergence.index == len(finding.trace) - 1


class FlakyOnce(ModelAdapter):
    """Answers its very first configuration read wrongly, every later one right."""

    def __init__(self) -> None:
        super().__init__("flaky")
        self.fooled = False

    def execute(self, op: Op) -> Observation:
        seen = super().execute(op)
        if op.kind is OpKind.CONFIG_READ and not self.fooled:
            self.fooled = True
            return Observation(value=(seen.value or 0) ^ 1)
        return seen


def test_a_divergence_that_does_not_replay_is_recorded_not_asserted() -> None:
    """A flaky implementation's finding keeps its whole trace and says it did not happen again."""
    from vpcid.conformance.engine import FLAKY, minimise
    from vpcid.model import Bdf

    bdf = Bdf(0, 3, 0)
    ops = [Op(OpKind.INIT), Op(OpKind.CREATE_VM, vm=1), Op(OpKind.PLUG, vm=1, bdf=bdf, name="e1000"),
           Op(OpKind.CONFIG_READ, vm=1, bdf=bdf, address=0, width=4)]  # fmt: skip
    impl = FlakyOnce()
    assert Differential(impl).replay(ops) is not None  # the first read is wrong ...
    finding = minimise(impl, ops, "random", 0)  # ... and never again
    assert finding.trace == tuple(ops)
    assert finding.divergence.crash == FLAKY
    assert "did not happen again" in finding.divergence.describe()


# --------------------------------------------------------------------------- readable output


def test_operations_and_observations_read_in_hex_and_blobs_as_digest_and_summary() -> None:
    import dataclasses

    from vpcid.conformance.cases import _ks_blob, _set_config, _snapshot
    from vpcid.conformance.engine import blob_diff, blob_summary, format_observation, format_op
    from vpcid.model import blob as blobfmt

    write = Op(OpKind.CONFIG_WRITE, vm=1, bdf=Bdf(0, 3, 0), address=0x3C, width=1, value=0x5A)
    assert format_op(write) == "config_write vm 1 00:03.0 offset 0x3c width 1 value 0x5a"
    assert format_observation(Observation(value=0x1234), Op(OpKind.MMIO_READ, width=4)) == "0x00001234"
    assert format_observation(Observation(error="misaligned")) == "error misaligned"
    blob = _ks_blob()
    restore = format_op(Op(OpKind.RESTORE, vm=1, bdf=Bdf(0, 3, 0), data=blob))
    assert blob.hex()[:64] not in restore, "never the blob's bytes"
    assert f"blob {blob[-32:].hex()[:16]}… ({len(blob):,} bytes, instance of 'kitchen-sink'" in restore
    assert "BAR1@0xe0001000" in restore
    assert "snapshot: ECAM 0xb0000000, 0xCF8 0x80001808" in blob_summary(_snapshot())
    assert "does not decode: instance blob is truncated" in blob_summary(blob[:40])
    rec = blobfmt.decode_instance(blob)
    other = blobfmt.encode_instance(
        dataclasses.replace(_set_config(rec, 0x3C, b"\x0c"), windows=(None, *rec.windows[1:]))
    )
    assert blob_diff(other, blob) == "configuration 0x03c: 0c (not 0b); BAR0 window none (not 0xc040)"
    assert blob_diff(blob, blob) == "the same content"
