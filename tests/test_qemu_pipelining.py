"""Pipelined qtest and snapshot machines observe exactly what one request at a time and fresh QEMUs do.

The QEMU adapter keeps qtest requests in flight (``QemuProcess.qtest_stream``,
``QemuAdapter.execute_many``, which ``Differential.run`` uses) and, for a
device whose state migrates, makes machines QEMU snapshots in one process.
These tests would fail if either changed an observation: a reply tied to the
wrong request, a failure or crash reported on another operation, a read
overtaking a write, a killed QEMU going unnoticed, a snapshot machine
differing from a fresh or migrated QEMU. The engine's side is checked
without QEMU too. Without QEMU the QEMU tests skip.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator, Sequence

import pytest
from vpcid.adapters.base import AdapterInfo, FixedMachine, OpaqueRange
from vpcid.adapters.qemu import QemuAdapter
from vpcid.adapters.qemu.discover import RAM, DeviceSpec, parse_mtree
from vpcid.adapters.qemu.qtest import (
    PIPELINE_DEPTH,
    QemuCrashed,
    QemuError,
    QemuProcess,
    qemu_binary,
)
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.engine import Differential, RandomOps, minimise, normalise
from vpcid.conformance.mutants import BY_NAME, mutant_adapter
from vpcid.conformance.trace import OK, Observation, Op, OpKind, TraceError
from vpcid.model import Bdf, DataManager, Profile

needs_qemu = pytest.mark.skipif(qemu_binary() is None, reason="qemu-system-x86_64 is not installed")

DEV = Bdf(0, 4, 0)
INIT = Op(OpKind.INIT)
ECAM = 0xB000_0000 + (DEV.packed << 12)
PORTS = 0xC000
E1000 = "e1000"


def cw(offset: int, width: int, value: int) -> Op:
    return Op(OpKind.CONFIG_WRITE, vm=1, bdf=DEV, address=offset, width=width, value=value)


def cr(offset: int, width: int = 4) -> Op:
    return Op(OpKind.CONFIG_READ, vm=1, bdf=DEV, address=offset, width=width)


def iow(port: int, width: int, value: int) -> Op:
    return Op(OpKind.IO_WRITE, vm=1, address=port, width=width, value=value)


def ior(port: int, width: int = 4) -> Op:
    return Op(OpKind.IO_READ, vm=1, address=port, width=width)


def mr(address: int, width: int = 4) -> Op:
    return Op(OpKind.MMIO_READ, vm=1, address=address, width=width)


SAVE, RESTORE = Op(OpKind.SAVE, vm=1, bdf=DEV, name="s"), Op(OpKind.RESTORE, vm=1, bdf=DEV, name="s")


pytestmark = pytest.mark.usefixtures("no_leftover_qemu")


@pytest.fixture
def opened() -> Iterator[list[QemuAdapter]]:
    adapters: list[QemuAdapter] = []
    yield adapters
    for a in adapters:
        a.close()


def _adapter(opened: list[QemuAdapter], device: str = E1000, *, snapshots: bool | None = None) -> QemuAdapter:
    a = QemuAdapter(DeviceSpec.parse(device), snapshots=snapshots)
    opened.append(a)
    return a


def one_at_a_time(a: QemuAdapter, ops: Sequence[Op]) -> tuple[list[Observation], Exception | None]:
    """What ``execute_many`` must equal: ``execute`` per operation, stopping at the first exception."""
    out: list[Observation] = []
    for op in ops:
        try:
            out.append(a.execute(op))
        except QemuError as exc:
            return out, exc
    return out, None


def in_flight_stretch(count: int, seed: int) -> list[Op]:
    """Writes and reads of registers that keep what is written, with distinct values: a reply matched to
    the wrong request, or a read answered before the write ahead of it, shows as a wrong value."""
    rng = random.Random(seed)
    ops: list[Op] = []
    for i in range(count):
        pick = rng.randrange(6)
        if pick == 0:
            ops += [cw(0x3C, 1, i & 0xFF), cr(0x3C, 1)]  # interrupt line: read back what was just written
        elif pick == 1:
            ops += [cw(0x3C, 1, (i * 7) & 0xFF), cw(0x3C, 1, (i * 13) & 0xFF), cr(0x3C, 1)]  # last write wins
        elif pick == 2:
            ops += [iow(0xCF8, 4, 0x8000_0000 | DEV.packed << 8 | (i % 16) * 4), ior(0xCF8), ior(0xCFC)]
        elif pick == 3:
            ops += [
                cw(0x3C, 1, (i * 3) & 0xFF),
                mr(ECAM + 0x3C, 1),
            ]  # written through config, read through ECAM
        elif pick == 4:
            ops += [
                cw(0x0C, 1, i & 0xFF),
                cr(0x0C),
            ]  # cache line size: written in flight, read in the same dword
        else:
            ops += [cr(0x3C, 5), ior(0xCF8, 3), cr(0x00)]  # rejected arguments interleaved with accesses
    return ops


# ------------------------------------------------------------------ the engine, without QEMU


class Batched:
    """A model-backed adapter that also offers ``execute_many`` by looping over ``execute``."""

    def __init__(self, inner: ModelAdapter) -> None:
        self.inner = inner

    @property
    def info(self) -> AdapterInfo:
        return self.inner.info

    def execute(self, op: Op) -> Observation:
        return self.inner.execute(op)

    def execute_many(self, ops: Sequence[Op]) -> tuple[list[Observation], Exception | None]:
        out: list[Observation] = []
        for op in ops:
            try:
                out.append(self.inner.execute(op))
            except TraceError:
                raise
            except Exception as exc:
                return out, exc
        return out, None

    def close(self) -> None:
        self.inner.close()


class CrashesOnRestore(ModelAdapter):
    """Raises on every restore, as an implementation that dies there would."""

    def execute(self, op: Op) -> Observation:
        if op.kind is OpKind.RESTORE:
            raise RuntimeError("died restoring")
        return super().execute(op)


def _mutants_on_a_machine(name: str) -> tuple[ModelAdapter, ModelAdapter]:
    """A planted bug twice (one to wrap): with the full API (``full:``), or on a fixed machine whose
    e1000 register file is opaque, so the engine withholds the accesses that reach it (``none``: the
    model itself on that machine)."""
    if name.startswith("full:"):
        return mutant_adapter(name[5:]), mutant_adapter(name[5:])
    machine = FixedMachine(
        vm=1,
        devices=((DEV, SUITE_TYPES["e1000"]),),
        opaque=(OpaqueRange(DEV, 0, range(0, 0x20000)),),
    )
    build = DataManager if name == "none" else BY_NAME[name].build
    first, second = (ModelAdapter(name, Profile(), machine, manager_factory=build) for _ in range(2))
    return first, second


@pytest.mark.parametrize(
    "mutant",
    ["full:rw1c-as-rw", "full:bar-size-off-by-one", "full:blob-drops-memory", "decode-ignores-command",
     "cf8-latches-low-bits", "rom-ignores-enable", "none"],
)  # fmt: skip
def test_stretches_find_what_one_at_a_time_finds(mutant: str) -> None:
    """Differential.run through execute_many: the same first divergence, steps, withheld accesses
    and shrunk trace as one operation at a time."""
    plain, wrapped = _mutants_on_a_machine(mutant)
    batched = Batched(wrapped)
    found = withheld = 0
    for seed in range(4):
        for ops in RandomOps(plain.info, seed).episodes(1200):
            one, many = Differential(plain), Differential(batched)
            divergence = one.run(ops)
            assert divergence == many.run(ops)
            assert (one.steps, one.withheld, one.withheld_at) == (many.steps, many.withheld, many.withheld_at)
            withheld += one.withheld
            if divergence is not None:
                found += 1
                cut = ops[: divergence.index + 1]
                assert minimise(plain, cut, "random", seed) == minimise(batched, cut, "random", seed)
    assert (found == 0) == (mutant == "none")
    if mutant == "none":
        assert withheld


def test_a_stretch_failure_is_reported_on_its_operation() -> None:
    """An exception execute_many returns is the divergence of the operation it belongs to."""
    impl = CrashesOnRestore("crashes", operations=frozenset(OpKind) - {OpKind.DEFINE_TYPE})
    ops = [op for episode in RandomOps(impl.info, 3).episodes(2000) for op in episode]
    first = next(i for i, op in enumerate(ops) if op.kind is OpKind.RESTORE)
    one, many = Differential(impl).run(ops), Differential(Batched(impl)).run(ops)
    assert one is not None
    assert one == many
    assert (many.index, many.crash) == (first, "RuntimeError: died restoring")


def test_a_stretch_answering_too_few_operations_is_an_error() -> None:
    class Short(Batched):
        def execute_many(self, ops: Sequence[Op]) -> tuple[list[Observation], Exception | None]:
            return super().execute_many(ops)[0][:-1], None

    with pytest.raises(ValueError, match="observations"):
        Differential(Short(ModelAdapter("model"))).run([INIT, Op(OpKind.CREATE_VM, vm=1)])


# ------------------------------------------------------------------ the qtest stream


@needs_qemu
def test_stream_ties_a_fail_reply_to_its_request_and_stays_in_step() -> None:
    qemu = QemuProcess.spawn(["-machine", "q35", "-m", "16M"])
    try:
        replies, failure = qemu.qtest_stream(
            ["outl 0xcf8 0x80000010", "inl 0xcf8", "no-such-command", "inl 0xcf8"]
        )
        assert replies == ["OK", "OK 0x80000010"]
        assert isinstance(failure, QemuError)
        assert not isinstance(failure, QemuCrashed)
        assert "'no-such-command' failed: FAIL" in str(failure)
        assert qemu.qtest(["outl 0xcf8 0x80000020", "inl 0xcf8"]) == ["OK", "OK 0x80000020"]  # in step
    finally:
        qemu.kill()


@needs_qemu
def test_stream_deeper_than_the_pipeline_keeps_every_reply_in_order() -> None:
    qemu = QemuProcess.spawn(["-machine", "q35", "-m", "16M"])
    try:
        count = 3 * PIPELINE_DEPTH + 7
        requests = [r for i in range(count) for r in (f"outl 0xcf8 {0x8000_0000 | i * 4:#x}", "inl 0xcf8")]
        replies = qemu.qtest(requests)
        assert [int(r.split()[1], 16) for r in replies[1::2]] == [0x8000_0000 | i * 4 for i in range(count)]
    finally:
        qemu.kill()


@needs_qemu
def test_stream_names_the_request_qemu_died_on() -> None:
    """``outl`` without a value aborts QEMU: the requests before it are answered, it is blamed."""
    qemu = QemuProcess.spawn(["-machine", "q35", "-m", "16M"])
    try:
        requests = (
            [f"outl 0xcf8 {0x8000_0000 | i * 4:#x}" for i in range(40)] + ["outl 0xcf8"] + ["inl 0xcf8"] * 40
        )
        replies, failure = qemu.qtest_stream(requests)
        assert len(replies) == 40
        assert isinstance(failure, QemuCrashed)
        assert "'outl 0xcf8'" in str(failure)
        assert "SIGABRT" in str(failure)
    finally:
        qemu.kill()


# ------------------------------------------------------------------ the adapter's stretches


@needs_qemu
@pytest.mark.req("R-CFG-001", "R-CAM-002", "R-ERR-002")
@pytest.mark.parametrize("device", [E1000, "pci-testdev"])
def test_reads_see_the_writes_in_flight_before_them(opened: list[QemuAdapter], device: str) -> None:
    """A long stretch of writes and reads of the same registers, and rejected arguments between them:
    execute_many observes what execute observes one at a time, and what the model predicts."""
    a = _adapter(opened, device)
    ops = [INIT, *in_flight_stretch(2 * PIPELINE_DEPTH, seed=len(device))]
    many = a.execute_many(ops)
    assert many == one_at_a_time(a, ops)
    assert many[1] is None
    assert len(many[0]) == len(ops)
    divergence = Differential(a).run(ops)
    assert divergence is None, divergence.describe()


@needs_qemu
@pytest.mark.parametrize("fault", ["no-such-command", "outl 0xcf8"])
def test_a_failing_request_is_reported_on_its_operation(
    opened: list[QemuAdapter], monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """A FAIL reply, or a QEMU that aborts, on one access in the middle of a stretch: the observations
    stop right before it, the error belongs to it (as one at a time), the next init recovers."""
    a = _adapter(opened)
    ops = [INIT, *in_flight_stretch(60, seed=2)]
    culprit = next(i for i, op in enumerate(ops) if i > 90 and op.kind is OpKind.CONFIG_WRITE)
    real = a.access_request
    monkeypatch.setattr(a, "access_request", lambda op: fault if op is ops[culprit] else real(op))
    observed, failure = a.execute_many(ops)
    expected, raised = one_at_a_time(a, ops)
    assert observed == expected
    assert len(observed) == culprit
    assert isinstance(failure, QemuCrashed)
    assert type(raised) is type(failure)
    if fault == "no-such-command":
        assert str(failure) == str(raised)
        assert str(ops[culprit].to_json()) in str(failure)
    else:
        assert "SIGABRT" in str(failure)
        assert "SIGABRT" in str(raised)
    divergence = Differential(a).run(ops)
    assert divergence is not None
    assert divergence.index == culprit
    finding = minimise(a, ops[: culprit + 1], "case", None)
    assert finding.trace[-1] is ops[culprit]
    monkeypatch.undo()
    assert a.execute_many([INIT, cr(0x00)]) == ([OK, Observation(value=0x100E_8086)], None)


@needs_qemu
def test_a_killed_qemu_is_detected_on_the_next_access(opened: list[QemuAdapter]) -> None:
    """QEMU killed between stretches: a rejected argument is still answered by the checks, the first
    access reports the death; with the engine, that access is the divergence."""
    a = _adapter(opened)
    assert a.execute_many([INIT, cw(0x3C, 1, 7)]) == ([OK, OK], None)
    qemu = a.qemu
    assert qemu is not None
    os.kill(qemu.pid, signal.SIGKILL)
    qemu.proc.wait()
    observed, failure = a.execute_many([cr(0x3C, 3), cr(0x3C, 1), cw(0x3C, 1, 8), cr(0x3C, 1)])
    assert observed == [Observation(error="bad-width")]
    assert isinstance(failure, QemuCrashed)
    assert "SIGKILL" in str(failure)
    assert a.qemu is None
    ops = [INIT, cw(0x3C, 1, 9), cr(0x3C, 1)]
    assert Differential(a).run(ops) is None
    qemu = a.qemu
    assert qemu is not None
    os.kill(qemu.pid, signal.SIGKILL)
    qemu.proc.wait()
    divergence = Differential(a).run([cr(0x3D, 4), cr(0x3C, 1)])
    assert divergence is not None
    assert divergence.index == 1
    assert divergence.crash is not None
    assert "QemuCrashed" in divergence.crash


# ------------------------------------------------------------------ snapshot machines


@needs_qemu
@pytest.mark.req("R-SR-001", "R-SR-002", "R-SR-008")
def test_snapshot_machines_observe_what_process_machines_observe(opened: list[QemuAdapter]) -> None:
    """e1000 under the random engine's episodes (saves, restores, inits): QEMU snapshots in one process
    and a QEMU per machine (migration through files) give the same observation for every operation."""
    snapshots = _adapter(opened, snapshots=True)
    processes = _adapter(opened, snapshots=False)
    assert snapshots.snapshots
    assert not processes.snapshots
    model = Differential(snapshots).model
    info = snapshots.info
    for ops in RandomOps(info, 5).episodes(1500):
        sent = [op for op in ops if not _withheld(model, op)]
        fast, slow = snapshots.execute_many(sent), one_at_a_time(processes, sent)
        assert fast[1] is None
        assert slow[1] is None
        assert [normalise(o, info) for o in fast[0]] == [normalise(o, info) for o in slow[0]]
    assert processes.starts > snapshots.starts == 1


def _withheld(model: ModelAdapter, op: Op) -> bool:
    from vpcid.conformance.engine import touches_opaque

    withheld = touches_opaque(model, op)
    if not withheld:
        model.execute(op)
    return withheld


@needs_qemu
@pytest.mark.req("R-SR-001", "R-SR-002")
def test_save_and_restore_in_the_middle_of_stretches(opened: list[QemuAdapter]) -> None:
    """Writes in flight before a save are in the saved machine; 0xCF8 carries over a restore."""
    a = _adapter(opened)
    ops = [
        INIT, cw(0x3C, 1, 0x0B), cw(0x14, 4, PORTS), iow(0xCF8, 4, 0x8000_2010), SAVE,
        cw(0x3C, 1, 0x0C), cw(0x14, 4, PORTS + 0x40), iow(0xCF8, 4, 0x8000_2014), cr(0x3C, 1), RESTORE,
        cr(0x3C, 1), cr(0x14), ior(0xCF8), ior(0xCFC), RESTORE, INIT, cr(0x3C, 1), RESTORE,
    ]  # fmt: skip
    observed, failure = a.execute_many(ops)
    assert failure is None
    assert [o.value for o in observed[10:14]] == [0x0B, PORTS | 1, 0x8000_2014, PORTS | 1]
    assert observed[-2:] == [Observation(value=0), Observation(error="empty-slot")]
    assert Differential(a).run(ops) is None


@needs_qemu
def test_snapshot_machine_has_the_discovered_layout() -> None:
    """RAM in a shared file is still RAM at the same guest-physical addresses: the flat memory map
    gives the platform the same ranges as the machine discovery read."""
    spec = DeviceSpec.parse(E1000)
    maps = []
    for ram in (None, RAM):
        qemu = QemuProcess.spawn(spec.machine_args(), ram=ram)
        try:
            qemu.connect()
            maps.append(parse_mtree(qemu.hmp("info mtree -f")))
        finally:
            qemu.kill()
    assert maps[0] == maps[1]


@needs_qemu
def test_ram_is_kept_by_this_side_exactly() -> None:
    """Snapshots leave RAM out; RAM written before a save comes back with its snapshot, and a snapshot
    saved while RAM was never written brings back zeros (the file's blocks are freed)."""
    qemu = QemuProcess.spawn(["-machine", "q35", "-m", "16M"], ram="16M")
    try:
        qemu.connect()
        qemu.enable_snapshots()
        assert qemu.ram_outside_snapshots
        assert not qemu.ram_written()
        qemu.save_snapshot("clean")
        qemu.qtest(["writel 0x1000 0x12345678", "writeq 0x7ff000 0x1122334455667788"])
        assert qemu.ram_written()
        qemu.save_snapshot("written")
        qemu.qtest(["writel 0x1000 0xdeadbeef", "writel 0x200000 0x1"])
        qemu.load_snapshot("written")
        assert qemu.qtest(["readl 0x1000", "readq 0x7ff000", "readl 0x200000"]) == [
            "OK 0x0000000012345678", "OK 0x1122334455667788", "OK 0x0000000000000000",
        ]  # fmt: skip
        qemu.load_snapshot("clean")
        assert not qemu.ram_written()
        assert qemu.qtest(["readl 0x1000", "readq 0x7ff000"]) == ["OK 0x0000000000000000"] * 2
        with pytest.raises(QemuError, match="no such snapshot"):
            qemu.load_snapshot("never")
        with pytest.raises(QemuError, match="not a snapshot tag"):
            qemu.save_snapshot("bad tag")
    finally:
        qemu.kill()


@needs_qemu
def test_a_device_without_migration_state_gets_process_machines(opened: list[QemuAdapter]) -> None:
    from vpcid.adapters.qemu.qtest import QemuUnavailable

    a = _adapter(opened, "pci-testdev")
    assert not a.snapshots
    assert a.execute_many([INIT, cw(0x3C, 1, 5), INIT, cr(0x3C, 1)]) == (
        [OK, OK, OK, Observation(value=0)],
        None,
    )
    assert a.starts >= 2
    with pytest.raises(QemuUnavailable, match="no migration state"):
        QemuAdapter(DeviceSpec.parse("pci-testdev"), snapshots=True)
