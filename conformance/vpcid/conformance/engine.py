"""The differential engine: run operations on an implementation and on the model, compare.

:class:`Differential` executes each operation on both sides and compares the
observations. :class:`RandomOps` is the fast seeded generator; it is biased
towards deep states (BARs sized then moved, decode toggled, 64-bit halves,
overlap, straddling accesses, hot-plug, reset, save/restore, cross-VM
accesses). :func:`shrink` reduces a diverging sequence to a minimal one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from vpcid.adapters.base import Adapter, AdapterInfo, ExecuteMany
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.trace import OK, Observation, Op, OpKind, TraceError, define_type_op, new_op
from vpcid.conformance.typefile import type_json
from vpcid.model import Bdf, BlobError, DeviceType
from vpcid.model import blob as blobfmt
from vpcid.model.catalog import REGISTER_SINK
from vpcid.model.devicetype import ROM_INDEX, BarKind
from vpcid.model.manager import DEFAULT_ECAM_BASE
from vpcid.model.registers import Action, BarRegister, RegisterMap

INIT = Op(OpKind.INIT)
T = TypeVar("T")


def model_for(info: AdapterInfo) -> ModelAdapter:
    """The model, configured as the implementation declares itself (R-VAR-002)."""
    return ModelAdapter(f"model({info.name})", info.profile, info.machine, operations=info.operations)


def normalise(obs: Observation, info: AdapterInfo) -> Observation:
    """Drop what an implementation is not asked to match: blob digests of non-canonical blobs."""
    if obs.digest is not None and not info.canonical_blobs:
        return OK
    return obs


@dataclass(frozen=True)
class Divergence:
    """The first operation on which implementation and model disagree."""

    index: int
    op: Op
    expected: Observation
    observed: Observation | None
    crash: str | None = None
    """Set when the implementation raised instead of observing."""

    def describe(self) -> str:
        """One line for people: the step, the operation and both observations, numbers in hex,
        blobs as digest and summary (never their bytes)."""
        got = f"raised {self.crash}" if self.crash is not None else format_observation(self.observed, self.op)
        expected = format_observation(self.expected, self.op)
        return f"step {self.index}: {format_op(self.op)}: expected {expected}, got {got}"


# --------------------------------------------------------------------------- readable output

BLOB_DIGEST_SHOWN = 16
"""Hex digits of a blob digest shown to people (the full digest stays in JSON and traces)."""


def hex_value(value: int, width: int = 0) -> str:
    """``value`` in hex, zero-padded to ``width`` bytes (the access width) when given."""
    if width <= 0 or value < 0:
        return hex(value)
    return f"{value:#0{2 + 2 * width}x}"


def format_op(op: Op) -> str:
    """An operation as a person reads it: kind, then its fields, addresses and values in hex."""
    kind = op.kind
    parts: list[str] = [kind.value]
    if kind not in (OpKind.INIT, OpKind.DEFINE_TYPE):
        parts.append(f"vm {op.vm}")
    if op.bdf is not None:
        parts.append(str(op.bdf))
    if kind in (OpKind.CONFIG_READ, OpKind.CONFIG_WRITE):
        parts.append(f"offset {hex_value(op.address)}")
    elif kind in (OpKind.IO_READ, OpKind.IO_WRITE):
        parts.append(f"port {hex_value(op.address)}")
    elif kind in (OpKind.MMIO_READ, OpKind.MMIO_WRITE):
        parts.append(f"address {hex_value(op.address)}")
    if kind in _ACCESS_KINDS:
        parts.append(f"width {op.width}")
    if kind in (OpKind.CONFIG_WRITE, OpKind.IO_WRITE, OpKind.MMIO_WRITE):
        fits = type(op.width) is int and op.width in (1, 2, 4, 8)
        parts.append(f"value {hex_value(op.value, op.width if fits else 0)}")
    if kind is OpKind.CREATE_VM:
        parts.append("no ECAM" if op.ecam_base is None else f"ECAM {hex_value(op.ecam_base)}")
    if kind in (OpKind.PLUG, OpKind.DEFINE_TYPE):
        parts.append(f"type {op.name!r}")
    if kind in (OpKind.SAVE, OpKind.SNAPSHOT) or (kind in (OpKind.RESTORE, OpKind.RESTORE_VM) and op.name):
        parts.append(f"slot {op.name!r}")
    elif kind in (OpKind.RESTORE, OpKind.RESTORE_VM):
        parts.append(blob_summary(op.data))
    return " ".join(parts)


_ACCESS_KINDS = frozenset({OpKind.CONFIG_READ, OpKind.CONFIG_WRITE, OpKind.IO_READ, OpKind.IO_WRITE,
                           OpKind.MMIO_READ, OpKind.MMIO_WRITE})  # fmt: skip


def format_observation(obs: Observation | None, op: Op | None = None) -> str:
    """An observation for people: a read value in hex of the access width, an error kind, a blob
    digest shortened, tables row by row."""
    if obs is None:
        return "nothing"
    if obs.error is not None:
        return f"error {obs.error}"
    if obs.value is not None:
        width = op.width if op is not None and type(op.width) is int and op.width in (1, 2, 4, 8) else 0
        return hex_value(obs.value, width)
    if obs.digest is not None:
        return f"blob digest {obs.digest[:BLOB_DIGEST_SHOWN]}…"
    if obs.tables is not None:
        return "tables [" + "; ".join(format_row(row) for row in obs.tables) + "]"
    if obs.topology is not None:
        return "topology [" + "; ".join(format_topology_row(row) for row in obs.topology) + "]"
    return "ok"


def format_row(row: Sequence[object]) -> str:
    """A tables row: ``config BDF type`` or ``io|memory base+size BDF BAR``, numbers in hex."""
    cells = [hex_value(c) if isinstance(c, int) and not isinstance(c, bool) and i in (1, 2) else str(c)
             for i, c in enumerate(row)]  # fmt: skip
    if len(cells) == 5:
        return f"{cells[0]} {cells[1]}+{cells[2]} {cells[3]} BAR {cells[4]}"
    return " ".join(cells)


def format_topology_row(row: Sequence[object]) -> str:
    """A topology row (R-BRG-010): ``BDF type``, where it sits, and a bridge's secondary bus number."""
    bdf, parent, root, device, function, name, secondary = row
    where = f"root bus {root}" if parent is None else f"below #{parent}"
    shown = bdf if bdf is not None else "unreachable"
    text = f"{shown} {name} (slot {device}.{function}, {where})"
    return text if secondary is None else f"{text} secondary {secondary}"


def blob_summary(blob: bytes) -> str:
    """A literal blob or snapshot as its digest and what it holds (R-BLOB-003, R-BLOB-005), or why
    it does not decode: never its bytes."""
    digest = bytes(blob[-32:]).hex()[:BLOB_DIGEST_SHOWN] if len(blob) >= 32 else "-"
    head = f"blob {digest}… ({len(blob):,} bytes"
    try:
        if blob[:8] == blobfmt.SNAPSHOT_MAGIC:
            snap = blobfmt.decode_snapshot(blob)
            ecam = "no ECAM" if snap.ecam_base is None else f"ECAM {hex_value(snap.ecam_base)}"
            names = ", ".join(f"{Bdf.unpack(p)} {_blob_type(b)}" for p, b in snap.devices)
            return f"{head}, snapshot: {ecam}, 0xCF8 {hex_value(snap.cf8, 4)}, instances [{names}], " \
                   f"{len(snap.map_order)} BARs in map order)"  # fmt: skip
        rec = blobfmt.decode_instance(blob)
    except BlobError as exc:
        return f"{head}, does not decode: {exc})"
    windows = " ".join(f"BAR{i}@{hex_value(b)}" for i, b in enumerate(rec.windows) if b is not None)
    holds = f"windows [{windows}], {len(rec.pages)} data pages, {len(rec.extra)} bytes of device state"
    return f"{head}, instance of {rec.type_name!r}: {len(rec.config)}-byte configuration, {holds})"


BLOB_DIFF_ITEMS = 4
"""How many differences a blob diff names before it says how many more there are."""


def blob_diff(blob: bytes, reference: bytes) -> str:
    """What ``blob`` holds that ``reference`` does not, decoded: type, configuration byte ranges,
    windows, data pages and device state of an instance blob; ECAM, 0xCF8, instances and map order
    of a snapshot. Short: at most :data:`BLOB_DIFF_ITEMS` items."""
    snapshot = blob[:8] == blobfmt.SNAPSHOT_MAGIC
    try:
        if snapshot:
            items = _snapshot_diff(blobfmt.decode_snapshot(blob), blobfmt.decode_snapshot(reference))
        else:
            items = _instance_diff(blobfmt.decode_instance(blob), blobfmt.decode_instance(reference))
    except BlobError as exc:
        return f"does not decode: {exc}"
    if not items:
        return "the same content"
    more = f" and {len(items) - BLOB_DIFF_ITEMS} more" if len(items) > BLOB_DIFF_ITEMS else ""
    return "; ".join(items[:BLOB_DIFF_ITEMS]) + more


def _instance_diff(a: blobfmt.InstanceRecord, b: blobfmt.InstanceRecord) -> list[str]:
    items: list[str] = []
    if (a.type_name, a.fingerprint) != (b.type_name, b.fingerprint):
        ours, theirs = a.fingerprint.hex()[:16], b.fingerprint.hex()[:16]
        items.append(f"type {a.type_name!r} {ours}… (not {b.type_name!r} {theirs}…)")
    if len(a.config) != len(b.config):
        items.append(f"{len(a.config)}-byte configuration (not {len(b.config)})")
    else:
        differ = [k for k in range(len(a.config)) if a.config[k] != b.config[k]]
        for start, stop in _runs(differ):
            where = f"{start:#05x}" if stop - start == 1 else f"{start:#05x}-{stop - 1:#05x}"
            items.append(f"configuration {where}: {a.config[start:stop].hex(' ')} "
                         f"(not {b.config[start:stop].hex(' ')})")  # fmt: skip
    for index, (x, y) in enumerate(zip(a.windows, b.windows, strict=False)):
        if x != y:
            shown = ["none" if w is None else hex_value(w) for w in (x, y)]
            items.append(f"BAR{index} window {shown[0]} (not {shown[1]})")
    pages_a, pages_b = {p[:2]: p[2] for p in a.pages}, {p[:2]: p[2] for p in b.pages}
    for bar, page in sorted(set(pages_a) | set(pages_b)):
        if pages_a.get((bar, page)) != pages_b.get((bar, page)):
            state = (
                "absent"
                if (bar, page) not in pages_a
                else "other bytes"
                if (bar, page) in pages_b
                else "extra"
            )
            items.append(f"BAR{bar} data page {page}: {state}")
    if a.extra != b.extra:
        items.append(f"{len(a.extra)} bytes of device state (not {len(b.extra)})")
    return items


def _snapshot_diff(a: blobfmt.VmRecord, b: blobfmt.VmRecord) -> list[str]:
    items: list[str] = []
    if a.ecam_base != b.ecam_base:
        items.append(f"ECAM {a.ecam_base if a.ecam_base is None else hex_value(a.ecam_base)}")
    if a.cf8 != b.cf8:
        items.append(f"0xCF8 {hex_value(a.cf8, 4)} (not {hex_value(b.cf8, 4)})")
    devices_a, devices_b = dict(a.devices), dict(b.devices)
    for packed in sorted(set(devices_a) | set(devices_b)):
        where = Bdf.unpack(packed)
        if packed not in devices_b or packed not in devices_a:
            items.append(f"{where}: {'extra' if packed in devices_a else 'absent'}")
        elif devices_a[packed] != devices_b[packed]:
            items.append(f"{where}: {blob_diff(devices_a[packed], devices_b[packed])}")
    if a.map_order != b.map_order:
        items.append("another map order")
    return items


def _runs(offsets: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal runs ``[start, stop)`` of consecutive offsets."""
    runs: list[tuple[int, int]] = []
    for offset in offsets:
        if runs and runs[-1][1] == offset:
            runs[-1] = (runs[-1][0], offset + 1)
        else:
            runs.append((offset, offset + 1))
    return runs


def _blob_type(blob: bytes) -> str:
    try:
        return repr(blobfmt.decode_instance(blob).type_name)
    except BlobError:
        return "(undecodable)"


def observations(adapter: Adapter, ops: Sequence[Op]) -> list[Observation | str]:
    """Every observation of ``ops`` on ``adapter``; a crash ends the list with its text."""
    out: list[Observation | str] = []
    for op in ops:
        try:
            out.append(adapter.execute(op))
        except Exception as exc:
            out.append(f"{type(exc).__name__}: {exc}")
            break
    return out


_ACCESSES = {
    OpKind.IO_READ: "io", OpKind.IO_WRITE: "io", OpKind.MMIO_READ: "memory", OpKind.MMIO_WRITE: "memory",
}  # fmt: skip


def touches_opaque(model: ModelAdapter, op: Op) -> bool:
    """Whether ``op`` would reach BAR bytes the model's fixed machine declares opaque.

    Decided on the model's state before ``op``, in the declared profile: any
    decoding BAR that overlaps the access counts, whichever the overlap rule
    picks, so the decision errs on the side of not touching.
    """
    machine = model.info.machine
    space = _ACCESSES.get(op.kind)
    if machine is None or not machine.opaque or space is None:
        return False
    limit = 1 << 16 if space == "io" else 1 << 64
    if type(op.width) is not int or op.width not in (1, 2, 4, 8) or not 0 <= op.address <= limit - op.width:
        return False
    if op.vm not in model.manager.vm_ids():
        return False
    tables = model.manager.tables(op.vm)
    end = op.address + op.width
    for entry in tables.io if space == "io" else tables.memory:
        if entry.base < end and op.address < entry.base + entry.size:
            start = max(op.address, entry.base) - entry.base
            stop = min(end, entry.base + entry.size) - entry.base
            if machine.touches_opaque(entry.bdf, entry.bar, start, stop):
                return True
    return False


class Differential:
    """Runs operations on an implementation and the model side by side.

    An access that would reach opaque BAR contents (``FixedMachine.opaque``)
    is withheld from both sides and counted in ``withheld``; ``withheld_at``
    holds the indices of the operations the last ``run`` withheld.
    """

    def __init__(self, impl: Adapter, model: ModelAdapter | None = None) -> None:
        self.impl = impl
        self.info = impl.info
        self.model = model or model_for(impl.info)
        self.steps = 0
        self.withheld = 0
        self.withheld_at: set[int] = set()

    def run(self, ops: Sequence[Op], start: int = 0) -> Divergence | None:
        """Execute ``ops``; return the first divergence, or None.

        An implementation that offers ``execute_many`` (:data:`ExecuteMany`)
        is handed every operation the model does not withhold in one call,
        after the model has run them all, so it can keep them in flight
        together; the observations are compared in order, as one at a time.
        """
        many: ExecuteMany | None = getattr(self.impl, "execute_many", None)
        if many is not None:
            return self._run_many(many, ops, start)
        model, info = self.model, self.info
        expect, observe = model.execute, self.impl.execute
        canonical = info.canonical_blobs
        opaque = info.machine is not None and bool(info.machine.opaque)
        self.withheld_at = set()
        for index, op in enumerate(ops, start):
            if opaque and touches_opaque(model, op):
                self.withheld += 1
                self.withheld_at.add(index)
                continue
            expected = expect(op)
            if expected.digest is not None and not canonical:
                expected = OK
            try:
                observed = observe(op)
            except TraceError:
                raise
            except Exception as exc:
                self.steps += index - start + 1
                return Divergence(index, op, expected, None, f"{type(exc).__name__}: {exc}")
            if observed != expected and normalise(observed, info) != expected:
                self.steps += index - start + 1
                return Divergence(index, op, expected, observed)
        self.steps += len(ops)
        return None

    def _run_many(self, many: ExecuteMany, ops: Sequence[Op], start: int) -> Divergence | None:
        """:meth:`run` for an implementation that performs a whole stretch in one call."""
        model, info = self.model, self.info
        canonical = info.canonical_blobs
        opaque = info.machine is not None and bool(info.machine.opaque)
        withheld: list[int] = []
        sent: list[Op] = []
        where: list[int] = []
        expected: list[Observation] = []
        for index, op in enumerate(ops, start):
            if opaque and touches_opaque(model, op):
                withheld.append(index)
                continue
            wanted = model.execute(op)
            sent.append(op)
            where.append(index)
            expected.append(OK if wanted.digest is not None and not canonical else wanted)
        observed, failure = many(sent)
        if len(observed) > len(sent) or (failure is None) != (len(observed) == len(sent)):
            raise ValueError(f"execute_many gave {len(observed)} observations for {len(sent)} operations")
        divergence = None
        for position, got in enumerate(observed):
            if got != expected[position] and normalise(got, info) != expected[position]:
                divergence = Divergence(where[position], sent[position], expected[position], got)
                break
        else:
            if failure is not None:
                position = len(observed)
                crash = f"{type(failure).__name__}: {failure}"
                divergence = Divergence(where[position], sent[position], expected[position], None, crash)
        last = start + len(ops) - 1 if divergence is None else divergence.index
        self.withheld_at = {index for index in withheld if index <= last}
        self.withheld += len(self.withheld_at)
        self.steps += last - start + 1
        return divergence

    def replay(self, ops: Sequence[Op]) -> Divergence | None:
        """Run ``ops`` from a fresh state on both sides (``ops`` should start with ``init``)."""
        return self.run(ops)


def shrink(ops: list[Op], diverges: Callable[[list[Op]], bool]) -> list[Op]:
    """Smallest sublist (1-minimal) for which ``diverges`` holds, by delta debugging.

    The first operation (``init``) is always kept, and so is every
    ``define_type``, moved right after it (defined types persist and only
    ``plug`` names them, so this keeps every candidate a valid trace).
    Hand-written rather than Hypothesis's shrinker because it works on any
    recorded sequence, also one found by the fast engine, and needs no
    replayable strategy.
    """
    defines = [op for op in ops[1:] if op.kind is OpKind.DEFINE_TYPE]
    head = ops[:1] + defines
    body = [op for op in ops[1:] if op.kind is not OpKind.DEFINE_TYPE] if defines else ops[1:]
    granularity = 2
    while len(body) >= 2:
        chunk = max(1, len(body) // granularity)
        reduced = False
        for start in range(0, len(body), chunk):
            candidate = body[:start] + body[start + chunk :]
            if diverges(head + candidate):
                body, granularity, reduced = candidate, max(granularity - 1, 2), True
                break
        if not reduced:
            if chunk == 1:
                break
            granularity = min(len(body), granularity * 2)
    if len(body) == 1 and diverges(head):
        body = []
    return head + body


# --------------------------------------------------------------------------- generation

MEM32_POOL = (0xE000_0000, 0xE000_1000, 0xE010_0000, 0xE800_0000, 0xFEBC_0000, 0xFFF0_0000, 0x8000_0000)
MEM64_POOL = (0x10_0000_0000, 0x40_0000_0000, 0xFFFF_FFFF_0000_0000, 0x1_0000_0000, 0xE000_0000)
IO_POOL = (0xC000, 0xC040, 0xC100, 0xCF0, 0xFF00, 0x1000)
ECAM_MOVES = (0xE000_0000, 0x10_0000_0000, 0, None, 0xE010_0000)
"""Where ``set_ecam_base`` moves the window: over the BAR pools, to 0, away (None), and a base that is not
aligned to 256 MiB (rejected) (R-ECAM-005, R-ECAM-006)."""
SYSTEM_VMS = (1, 2)
"""The full-API engine builds two VMs with the same layout, for isolation (R-DS-008)."""
SYSTEM_LAYOUT = (
    (Bdf(0, 2, 0), "kitchen-sink"),
    (Bdf(0, 3, 0), "e1000"),
    (Bdf(0, 4, 0), "express-sink"),
    (Bdf(1, 0, 0), "a100"),
)
EXTRA_DEVICE = 0x10
"""Device number on bus 0 of the first ``--types`` type in the full-API engine's layout."""
REGISTER_LAYOUT = ((Bdf(0, 6, 0), REGISTER_SINK),)
"""Types with register maps the full-API engine defines and plugs after the system layout, when the
implementation takes ``define_type`` and accepts them (R-REG-001..R-REG-011)."""
REGISTER_MEMORY_BASE = 0xD000_0000
REGISTER_IO_BASE = 0x8000
"""Where the register maker places register BARs: away from the other makers' pools, so that what a
register access reaches is that register."""


@dataclass(frozen=True)
class Slot:
    """A device the generator may address: where it is and what it is."""

    vm: int
    bdf: Bdf
    dtype: DeviceType


class RandomOps:
    """Seeded generator of operation episodes for one adapter's capabilities."""

    def __init__(
        self,
        info: AdapterInfo,
        seed: int,
        episode: int = 120,
        types: Sequence[DeviceType] = (),
        registers: bool = True,
    ) -> None:
        """``types``: device types beyond the suite's (``--types``), defined and plugged in every
        episode of a full-API adapter next to the suite's layout. ``registers``: for a full-API
        adapter that takes ``define_type``, also define and plug :data:`REGISTER_LAYOUT`."""
        self.info = info
        self.rng = random.Random(seed)
        self.episode = episode
        self.full = info.machine is None
        self.machine = info.machine
        self.register_layout: tuple[tuple[Bdf, DeviceType], ...] = ()
        if info.machine is not None:
            self.slots = [Slot(info.machine.vm, b, t) for b, t in info.machine.devices]
            self.vms: tuple[int, ...] = (info.machine.vm,)
            self.ecam = info.machine.ecam_base
        else:
            extra = tuple((Bdf(0, EXTRA_DEVICE + k, 0), t) for k, t in enumerate(types))
            self.layout: tuple[tuple[Bdf, DeviceType], ...] = (
                *((b, SUITE_TYPES[t]) for b, t in SYSTEM_LAYOUT),
                *extra,
            )
            self.defines = [define_type_op(type_json(t)) for _, t in extra]
            if registers and OpKind.DEFINE_TYPE in info.operations:
                self.register_layout = REGISTER_LAYOUT
            self.register_defines = [define_type_op(type_json(t)) for _, t in self.register_layout]
            self.slots = [
                Slot(vm, b, t) for vm in SYSTEM_VMS for b, t in (*self.layout, *self.register_layout)
            ]
            self.vms = SYSTEM_VMS
            self.ecam = DEFAULT_ECAM_BASE
        self.register_targets = [
            (slot, reg)
            for slot in self.slots
            if isinstance(slot.dtype.behaviour, RegisterMap)
            for reg in slot.dtype.behaviour.registers
            if self.machine is None or reg.bar not in self.machine.opaque_bars(slot.bdf, slot.dtype)
        ]
        """(slot, register) of every declared register: what :meth:`_register_access` aims at."""
        self.ops = info.operations
        self._random = self.rng.random
        self.windows: dict[tuple[int, int, int], tuple[int, int]] = {}
        """(vm, packed BDF, BAR) -> (base, size) last programmed by this generator: access targets."""
        self._targets: dict[bool, list[tuple[int, int, int]]] = {}
        """Per space (True: I/O) the (vm, base, size) of ``windows``; rebuilt after ``windows`` changes."""
        choices: list[tuple[Callable[[], list[Op]], int]] = [
            (self._program_bar, 14), (self._size_bar, 5), (self._command, 8), (self._config_write, 8),
            (self._config_read, 10), (self._bar_access, 24), (self._io_access, 6), (self._cam, 6),
            (self._ecam, 4), (self._invalid, 3),
        ]  # fmt: skip
        optional: list[tuple[OpKind, Callable[[], list[Op]], int]] = [
            (OpKind.RESET, self._reset, 2), (OpKind.RESET_VM, self._reset_vm, 1),
            (OpKind.PLUG, self._hotplug, 2), (OpKind.SAVE, self._save_restore, 3),
            (OpKind.SNAPSHOT, self._snapshot, 1), (OpKind.TABLES, self._tables, 2),
            (OpKind.SET_ECAM_BASE, self._move_ecam, 1),
        ]  # fmt: skip
        choices += [(f, w) for kind, f, w in optional if kind in self.ops]
        if self.register_targets:  # R-REG-*: registers, their bits and edges, and the gaps between them
            choices.append((self._register_access, 14 if self.full else 24))
        self._makers = [f for f, _ in choices]
        self._weighted = [f for f, w in choices for _ in range(w)]
        """Each maker repeated by its weight: one uniform draw picks a move (cheaper than choices())."""

    def episodes(self, budget: int) -> Iterator[list[Op]]:
        """Episodes of about ``self.episode`` operations, each from ``init``; ``budget`` ops in all."""
        produced = 0
        while produced < budget:
            ops = self.prologue()
            weighted, draw, episode = self._weighted, self._random, self.episode
            while len(ops) < episode:
                ops += weighted[int(draw() * len(weighted))]()
            produced += len(ops)
            yield ops

    def prologue(self) -> list[Op]:
        """``init`` and, for the full API, the two-VM layout."""
        self.windows.clear()
        self._targets.clear()
        ops = [INIT]
        if self.full:
            ops += self.defines
            for vm in self.vms:
                ops.append(new_op(OpKind.CREATE_VM, vm))
                ops += [Op(OpKind.PLUG, vm=vm, bdf=b, name=t.name) for b, t in self.layout]
            if self.register_layout:
                ops += self.register_defines
                for vm in self.vms:
                    ops += [Op(OpKind.PLUG, vm=vm, bdf=b, name=t.name) for b, t in self.register_layout]
        return ops

    # -- helpers
    def _pick(self, seq: Sequence[T]) -> T:
        """A uniform element of ``seq`` from one float draw.

        ``Random.choice`` spends most of its time in a rejection loop over
        ``getrandbits``; one 53-bit float is as uniform for sequences this short
        and several times cheaper, which matters at 100,000 operations a second.
        """
        return seq[int(self._random() * len(seq))]

    def _below(self, n: int) -> int:
        """A uniform integer in ``0..n-1`` (``n`` at most 2**16 here), as :meth:`_pick` draws."""
        return int(self._random() * n)

    def _slot(self) -> Slot:
        return self._pick(self.slots)

    def _vm(self) -> int:
        return self._pick(self.vms)

    def _bar(self, slot: Slot) -> int | None:
        bars = slot.dtype.implemented
        return self._pick(bars) if bars else None

    def _size(self, slot: Slot, index: int) -> int:
        if index == ROM_INDEX:
            assert slot.dtype.rom is not None
            return slot.dtype.rom.size
        bar = slot.dtype.bar(index)
        assert bar is not None
        return bar.size

    def _base_for(self, slot: Slot, index: int) -> int:
        rng, size = self.rng, self._size(slot, index)
        bar = slot.dtype.bar(index) if index != ROM_INDEX else None
        if bar is not None and bar.kind is BarKind.IO:
            pool: tuple[int, ...] = IO_POOL
        elif bar is not None and bar.kind is BarKind.MEM64:
            pool = MEM64_POOL + MEM32_POOL
        else:
            pool = MEM32_POOL
        space = "io" if bar is not None and bar.kind is BarKind.IO else "memory"
        for _ in range(8):
            base = self._pick(pool) if self._random() < 0.8 else rng.getrandbits(32)
            if self._random() < 0.1:
                base = 0
            base &= ~(size - 1)
            if self.machine is None or not self.machine.is_reserved(space, base, size):
                return base
        return 0

    def _cfg(self, kind: OpKind, slot: Slot, offset: int, width: int, value: int = 0) -> Op:
        return new_op(kind, slot.vm, slot.bdf, offset, width, value)

    # -- makers
    def _program_bar(self) -> list[Op]:
        slot = self._slot()
        index = self._bar(slot)
        if index is None:
            return self._config_read()
        base = self._base_for(slot, index)
        if index == ROM_INDEX:
            value = base | self._pick((0, 1, 1))
            ops = [self._cfg(OpKind.CONFIG_WRITE, slot, 0x30, 4, value & 0xFFFFFFFF)]
        else:
            reg = 0x10 + 4 * index
            ops = [self._cfg(OpKind.CONFIG_WRITE, slot, reg, 4, base & 0xFFFFFFFF)]
            bar = slot.dtype.bar(index)
            if bar is not None and bar.kind is BarKind.MEM64:
                upper = self._cfg(OpKind.CONFIG_WRITE, slot, reg + 4, 4, base >> 32)
                ops = [upper, *ops] if self._random() < 0.3 else [*ops, upper]  # R-DEC-007 halves
        if self.machine is None or index not in self.machine.opaque_bars(slot.bdf, slot.dtype):
            self.windows[(slot.vm, slot.bdf.packed, index)] = (base, self._size(slot, index))
            self._targets.clear()
        ops.append(self._cfg(OpKind.CONFIG_READ, slot, 0x30 if index == ROM_INDEX else 0x10 + 4 * index, 4))
        return ops

    def _size_bar(self) -> list[Op]:
        slot = self._slot()
        index = self._bar(slot)
        if index is None:
            return self._config_read()
        reg = 0x30 if index == ROM_INDEX else 0x10 + 4 * index
        probe = self._pick((0xFFFFFFFF, 0xFFFFFFF0, 0xFFFFF800, 0xFFFFFFFE))
        return [
            self._cfg(OpKind.CONFIG_READ, slot, reg, 4),
            self._cfg(OpKind.CONFIG_WRITE, slot, reg, 4, probe),
            self._cfg(OpKind.CONFIG_READ, slot, reg, 4),
            self._cfg(OpKind.CONFIG_READ, slot, reg + 4, 4),
        ]

    def _command(self) -> list[Op]:
        slot = self._slot()
        value = self._pick((0x0, 0x1, 0x2, 0x3, 0x7, 0x6, 0x507, 0xFFFF))
        return [
            self._cfg(OpKind.CONFIG_WRITE, slot, 0x04, 2, value),
            self._cfg(OpKind.CONFIG_READ, slot, 0x04, 4),
        ]

    def _config_write(self) -> list[Op]:
        slot, rng = self._slot(), self.rng
        width = self._pick((1, 2, 4))
        low, high = self._pick(((0, 0x40), (0x40, 0x100), (0, 0x1000)))
        offset = low + self._below(high - low)
        offset -= offset % width
        value = self._pick((0, (1 << (8 * width)) - 1, rng.getrandbits(8 * width)))
        return [
            self._cfg(OpKind.CONFIG_WRITE, slot, offset, width, value),
            self._cfg(OpKind.CONFIG_READ, slot, offset & ~3, 4),
        ]

    def _config_read(self) -> list[Op]:
        slot = self._slot()
        width = self._pick((1, 2, 4))
        offset = self._below(0x100 if self._random() < 0.8 else 0x1000)
        offset -= offset % width
        if self._random() < 0.1:
            other = Bdf(self._below(256), self._below(32), self._below(8))
            if self.machine is None or other not in self.machine.reserved_functions:
                slot = Slot(slot.vm, other, slot.dtype)
        return [self._cfg(OpKind.CONFIG_READ, slot, offset, width)]

    def _target_address(self, want_io: bool) -> tuple[int, int]:
        """(vm, address) near a window the generator programmed, or a random one; never a platform range."""
        for _ in range(8):
            vm, address = self._candidate_address(want_io)
            if self.machine is None or not self.machine.is_reserved(
                "io" if want_io else "memory", address, 8
            ):
                return vm, address
        return self._vm(), 0xC000 if want_io else 0xE000_0000

    def _candidate_address(self, want_io: bool) -> tuple[int, int]:
        candidates = self._targets.get(want_io)
        if candidates is None:
            candidates = self._targets[want_io] = [
                (key[0], base, size)
                for key, (base, size) in self.windows.items()
                if (size <= 256 and base < 0x10000) == want_io
            ]
        if not candidates or self._random() < 0.1:
            return self._vm(), self.rng.getrandbits(16 if want_io else 32)
        vm, base, size = self._pick(candidates)
        if self._random() < 0.2:
            vm = self._vm()
        offset = self._pick((0, size - 4, size - 2, size - 1, size, self._below(size), -2))
        return vm, (base + offset) % (1 << (16 if want_io else 64))

    def _bar_access(self) -> list[Op]:
        rng = self.rng
        vm, address = self._target_address(False)
        width = self._pick((1, 2, 4, 8))
        address = min(address, (1 << 64) - width)
        if self._random() < 0.5:
            return [
                new_op(OpKind.MMIO_WRITE, vm, None, address, width, rng.getrandbits(8 * width)),
                new_op(OpKind.MMIO_READ, vm, None, address, width),
            ]
        return [new_op(OpKind.MMIO_READ, vm, None, address, width)]

    def _io_access(self) -> list[Op]:
        rng = self.rng
        vm, port = self._target_address(True)
        width = self._pick((1, 2, 4))
        port = min(port, 0x10000 - width)
        ops = [new_op(OpKind.IO_READ, vm, None, port, width)]
        if self._random() < 0.5:
            ops.insert(0, new_op(OpKind.IO_WRITE, vm, None, port, width, rng.getrandbits(8 * width)))
        return ops

    def _cam(self) -> list[Op]:
        rng = self.rng
        slot = self._slot()
        register = self._pick((0x00, 0x04, 0x10, 0x14, 0x30, 0x3C, 0x40, 0x60, 0xFC))
        address = 0x8000_0000 | slot.bdf.packed << 8 | register
        if self._random() < 0.15:
            address ^= self._pick((0x8000_0000, 0x3, 0x0100_0000, 0x7F00_0000))
        vm = slot.vm
        port = 0xCFC + self._below(4)
        width = self._pick([w for w in (1, 2, 4) if port - 0xCFC + w <= 4] or [1])
        ops = [new_op(OpKind.IO_WRITE, vm, None, 0xCF8, 4, address)]
        if self._random() < 0.3:
            ops.append(new_op(OpKind.IO_WRITE, vm, None, port, width, rng.getrandbits(8 * width)))
        ops += [
            new_op(OpKind.IO_READ, vm, None, port, width),
            new_op(OpKind.IO_READ, vm, None, 0xCF8, 4),
        ]
        if self._random() < 0.1:
            stray = 0xCF8 + self._below(4)
            if self.machine is None or not self.machine.is_reserved("io", stray):  # 0xCF9: reset control
                ops.append(new_op(OpKind.IO_WRITE, vm, None, stray, 1, 0xFF))
        return ops

    def _ecam(self) -> list[Op]:
        rng = self.rng
        slot = self._slot()
        base = self.ecam if self.ecam is not None else DEFAULT_ECAM_BASE
        offset = self._pick((0, 4, 0x10, 0x30, 0x40, 0xFC, 0x100, 0xFFC, self._below(0x1000)))
        address = base + (slot.bdf.packed << 12) + offset
        width = self._pick((1, 2, 4, 8))
        address = min(address, (1 << 64) - width)
        ops = [new_op(OpKind.MMIO_READ, slot.vm, None, address, width)]
        if self._random() < 0.4:
            value = rng.getrandbits(8 * width)
            ops.insert(0, new_op(OpKind.MMIO_WRITE, slot.vm, None, address, width, value))
        return ops

    def _invalid(self) -> list[Op]:
        slot = self._slot()
        return [self._pick([
            new_op(OpKind.CONFIG_READ, slot.vm, slot.bdf, self._below(0x1000), 3),
            new_op(OpKind.CONFIG_READ, slot.vm, slot.bdf, 0x1002, 2),
            new_op(OpKind.CONFIG_WRITE, slot.vm, slot.bdf, 0x3, 2, 0),
            new_op(OpKind.MMIO_WRITE, slot.vm, None, 0xE000_1000, 2, 0x1_0000),
            new_op(OpKind.MMIO_READ, slot.vm, None, (1 << 64) - 2, 4),
            new_op(OpKind.IO_READ, slot.vm, None, 0xFFFF, 2),
            new_op(OpKind.IO_READ, slot.vm, None, 0xC000, 8),
            new_op(OpKind.MMIO_READ, slot.vm + 7, None, 0xE000_1000, 4),
            new_op(OpKind.MMIO_READ, slot.vm, None, 0xE000_0001, 4),
        ])]  # fmt: skip

    def _reset(self) -> list[Op]:
        slot = self._slot()
        self.windows = {k: v for k, v in self.windows.items() if k[:2] != (slot.vm, slot.bdf.packed)}
        self._targets.clear()
        return [new_op(OpKind.RESET, slot.vm, slot.bdf), self._cfg(OpKind.CONFIG_READ, slot, 0x04, 4)]

    def _reset_vm(self) -> list[Op]:
        vm = self._vm()
        return [new_op(OpKind.RESET_VM, vm), new_op(OpKind.IO_READ, vm, None, 0xCF8, 4)]

    def _hotplug(self) -> list[Op]:
        slot = self._slot()
        ops = [new_op(OpKind.UNPLUG, slot.vm, slot.bdf), self._cfg(OpKind.CONFIG_READ, slot, 0, 4)]
        if self._random() < 0.8:
            ops.append(Op(OpKind.PLUG, vm=slot.vm, bdf=slot.bdf, name=slot.dtype.name))
        return ops

    def _save_restore(self) -> list[Op]:
        source, target = self._slot(), self._slot()
        ops = [Op(OpKind.SAVE, vm=source.vm, bdf=source.bdf, name="s")]
        if self._random() < 0.6:
            ops.append(Op(OpKind.RESTORE, vm=target.vm, bdf=target.bdf, name="s"))
        return ops

    def _snapshot(self) -> list[Op]:
        vm = self._vm()
        ops = [Op(OpKind.SNAPSHOT, vm=vm, name="v")]
        if self._random() < 0.6:
            ops.append(Op(OpKind.RESTORE_VM, vm=self._pick((*self.vms, 3)), name="v"))
        return ops

    def _tables(self) -> list[Op]:
        return [new_op(OpKind.TABLES, self._vm())]

    def _move_ecam(self) -> list[Op]:
        """The platform moves the window (R-ECAM-005), a function and a BAR address are read through its new
        place and at its old one (R-ECAM-006), and it goes back where the other moves expect it."""
        slot = self._slot()
        home = self.ecam  # the machine's window (None: it has none), the default one for the full API
        moved = self._pick(ECAM_MOVES)
        offset = self._pick((0, 0x3C, 0x10))
        ops = [Op(OpKind.SET_ECAM_BASE, vm=slot.vm, ecam_base=moved)]
        for base in (moved, home):
            if base is not None:
                ops.append(
                    new_op(OpKind.MMIO_READ, slot.vm, None, base + (slot.bdf.packed << 12) + offset, 4)
                )
        ops.append(new_op(OpKind.MMIO_READ, slot.vm, None, self._pick(MEM32_POOL) + 4, 4))
        ops.append(Op(OpKind.SET_ECAM_BASE, vm=slot.vm, ecam_base=home))
        return ops

    # -- registers (R-REG-*)
    def _register_access(self) -> list[Op]:
        """Accesses aimed at a declared register: its whole width, each bit set and clear, both
        edges, partial widths, a run into the next register or gap, and the gaps; before them,
        sometimes, writes to the registers whose side effects act on it (so that RW1C, RC and RW1S
        bits hold ones to lose), and after them read-backs of it and of what its writes act on.
        The BAR is placed and decode enabled first, so that the accesses reach it."""
        slot, target = self._pick(self.register_targets)
        index = target.bar
        regmap = slot.dtype.behaviour
        assert isinstance(regmap, RegisterMap)
        bar = slot.dtype.bar(index)
        assert bar is not None
        io = bar.kind is BarKind.IO
        key = (slot.vm, slot.bdf.packed, index)
        ops: list[Op] = []
        window = self.windows.get(key)
        if window is None or self._random() < 0.1:
            base = self._register_base(slot, index)
            reg = 0x10 + 4 * index
            ops.append(self._cfg(OpKind.CONFIG_WRITE, slot, reg, 4, base & 0xFFFF_FFFF))
            if bar.kind is BarKind.MEM64:
                ops.append(self._cfg(OpKind.CONFIG_WRITE, slot, reg + 4, 4, base >> 32))
            window = self.windows[key] = (base, bar.size)
            self._targets.clear()
        ops.append(self._cfg(OpKind.CONFIG_WRITE, slot, 0x04, 2, self._pick((0x3, 0x7, 0x507))))
        base = window[0]
        access = _Accessor(slot.vm, base, io, bar.size)
        if self._random() < 0.5:
            for source, effect in regmap.sources(target):  # prime: give the target ones to lose
                value = effect.when or self._pattern(source, effect.mask)
                if effect.action in (Action.CLEAR, Action.CLEAR_WRITTEN) and self._random() < 0.7:
                    continue
                ops += access.whole(source, value)
        ops += self._poke(access, regmap, target)
        if self._random() < 0.5:
            ops += access.whole(target, None)  # a second read: read-to-clear bits read zero now
        for goal in dict.fromkeys(regmap.register(e.target) for e in target.on_write):
            ops += access.whole(goal, None)
        return ops

    def _register_base(self, slot: Slot, index: int) -> int:
        """A base for a register BAR, apart from the other makers' addresses; one per (slot, BAR)."""
        size = self._size(slot, index)
        bar = slot.dtype.bar(index)
        io = bar is not None and bar.kind is BarKind.IO
        k = self.slots.index(slot) * 6 + index
        start, step = (REGISTER_IO_BASE, 0x100) if io else (REGISTER_MEMORY_BASE, 0x1_0000)
        base = start + k * max(step, size)
        base = (base + size - 1) & ~(size - 1)
        limit = 0x1_0000 if io else 1 << 32
        if base + size <= limit and (self.machine is None or not self.machine.is_reserved(
            "io" if io else "memory", base, size
        )):  # fmt: skip
            return base
        return self._base_for(slot, index)

    def _pattern(self, reg: BarRegister, within: int | None = None) -> int:
        """A value for a register: zero, all ones, one bit set or clear, random, or exactly the
        trigger of one of its side effects; inside ``within``."""
        full = reg.full if within is None else reg.full & within
        bit = 1 << self._below(8 * reg.width)
        triggers = [e.when for e in reg.on_write if e.when]
        kind = self._below(7 if triggers else 6)
        if kind == 6:
            return self._pick(triggers) & full
        value = (0, full, bit, full & ~bit, self.rng.getrandbits(8 * reg.width), bit)[kind]
        return value & full

    def _poke(self, access: _Accessor, regmap: RegisterMap, reg: BarRegister) -> list[Op]:
        """One access at or next to ``reg`` (see :meth:`_register_access`), then a read of ``reg``."""
        move = self._below(9)
        if move == 0:  # the register read whole
            return access.whole(reg, None)
        if move <= 2:  # the register written whole with a bit pattern, then read back
            return access.whole(reg, self._pattern(reg)) + access.whole(reg, None)
        if move <= 4:  # the classic walk: the reset value's complement, all ones, zero, each read back
            ops: list[Op] = []
            for value in (~reg.reset & reg.full, reg.full, 0):
                ops += access.whole(reg, value) + access.whole(reg, None)
            return ops
        if move <= 6:  # a partial width inside the register (unaligned too), written or read
            width = self._pick([w for w in (1, 2, 4) if w < reg.width] or [1])
            offset = reg.offset + self._below(reg.width - width + 1)
            part = self.rng.getrandbits(8 * width) if self._random() < 0.6 else None
            return [access.op(offset, width, part), *access.whole(reg, None)]
        if move == 7:  # a run from the register's last bytes into what follows (a register or a gap)
            width = access.widths[-1]
            offset = max(0, min(reg.end - 1 - self._below(min(width - 1, reg.width)), access.size - width))
            value = self._pick((self.rng.getrandbits(8 * width), (1 << (8 * width)) - 1))
            return [access.op(offset, width, value), access.op(offset, width, None), *access.whole(reg, None)]
        gap = self._gap(regmap, reg, access.size)  # bytes no register holds: read zero, writes dropped
        width = self._pick(access.widths)
        offset = min(gap, access.size - width)
        return [access.op(offset, width, (1 << (8 * width)) - 1), access.op(offset, width, None)]

    def _gap(self, regmap: RegisterMap, reg: BarRegister, size: int) -> int:
        """An offset next to ``reg`` or anywhere in its BAR that no register holds (or ``reg``'s end)."""
        for candidate in (reg.end, reg.offset - 1, self._below(size), self._below(size)):
            if 0 <= candidate < size and regmap.at(reg.bar, candidate) is None:
                return candidate
        return min(reg.end, size - 1)


@dataclass(frozen=True)
class _Accessor:
    """Accesses by offset into one BAR at ``base`` (I/O or memory), in the widths its space allows."""

    vm: int
    base: int
    io: bool
    size: int

    @property
    def widths(self) -> tuple[int, ...]:
        return (1, 2, 4) if self.io else (1, 2, 4, 8)

    def op(self, offset: int, width: int, value: int | None) -> Op:
        """A read (``value`` None) or write of ``width`` bytes at ``offset``."""
        if value is None:
            return new_op(
                OpKind.IO_READ if self.io else OpKind.MMIO_READ, self.vm, None, self.base + offset, width
            )
        kind = OpKind.IO_WRITE if self.io else OpKind.MMIO_WRITE
        return new_op(kind, self.vm, None, self.base + offset, width, value)

    def whole(self, reg: BarRegister, value: int | None) -> list[Op]:
        """``reg`` read or written whole: one access, or two dword accesses for an 8-byte register in
        I/O space."""
        if reg.width <= self.widths[-1]:
            return [self.op(reg.offset, reg.width, value)]
        halves = (None, None) if value is None else (value & 0xFFFF_FFFF, value >> 32)
        return [self.op(reg.offset + 4 * k, 4, halves[k]) for k in (0, 1)]


@dataclass(frozen=True)
class Finding:
    """A divergence found by an engine, with the minimal trace that reproduces it."""

    engine: str
    divergence: Divergence
    trace: tuple[Op, ...]
    """Minimal operation sequence, from ``init``, whose last operation diverges."""
    seed: int | None = None


def run_random(
    impl: Adapter,
    budget: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    max_findings: int = 1,
    types: Sequence[DeviceType] = (),
) -> tuple[int, list[Finding]]:
    """The fast engine: ``budget`` operations in episodes; each divergence shrunk into a finding.

    An episode ends at its first divergence and the engine goes on with the
    next one, until ``max_findings`` distinct findings (by their minimal
    trace's last operation kind and expected observation) or the budget. A
    deviation an implementation keeps making (a waived one, say) then does not
    end the exploration. Returns the operations executed and the findings.
    """
    diff = Differential(impl)
    generator = RandomOps(impl.info, seed, types=types, registers=accepts_register_layout(impl))
    executed = 0
    findings: list[Finding] = []
    seen: set[tuple[OpKind, Observation]] = set()
    for ops in generator.episodes(budget):
        divergence = diff.run(ops)
        executed += len(ops) if divergence is None else divergence.index + 1
        if progress is not None:
            progress(executed)
        if divergence is None:
            continue
        finding = minimise(impl, ops[: divergence.index + 1], "random", seed)
        key = (finding.trace[-1].kind, finding.divergence.expected)
        if key not in seen:
            seen.add(key)
            findings.append(finding)
            if len(findings) >= max_findings:
                break
    return executed, findings


def accepts_register_layout(impl: Adapter) -> bool:
    """Whether a full-API ``impl`` takes ``define_type`` and accepts every type of
    :data:`REGISTER_LAYOUT` (an implementation need not serve register maps, R-DT-001): only then
    does the engine plug them. Leaves ``impl`` after an ``init``."""
    info = impl.info
    if info.machine is not None or OpKind.DEFINE_TYPE not in info.operations:
        return False
    impl.execute(INIT)
    accepted = all(impl.execute(define_type_op(type_json(t))).error is None for _, t in REGISTER_LAYOUT)
    impl.execute(INIT)
    return accepted


REGISTER_RULES = tuple(f"R-REG-{n:03d}" for n in range(1, 12))
"""What aiming at a register map exercises: the declaration, every class, partial accesses and gaps,
side effects, reset values and the blob (R-REG-001..R-REG-011)."""


def exercised_register_rules(impl: Adapter, types: Sequence[DeviceType] = ()) -> tuple[str, ...]:
    """The R-REG requirements :func:`run_random` exercises on ``impl``: those of :data:`REGISTER_RULES`
    its operations reach (R-REG-011 needs save and restore) when its layout holds a declared register,
    none otherwise. What certification counts as checked when no finding speaks against them."""
    generator = RandomOps(impl.info, 0, types=types, registers=accepts_register_layout(impl))
    if not generator.register_targets:
        return ()
    blob = {OpKind.SAVE, OpKind.RESTORE} <= impl.info.operations
    return tuple(rid for rid in REGISTER_RULES if blob or rid != "R-REG-011")


FLAKY = "nothing: the divergence did not happen again when this trace was replayed (a flaky implementation)"
"""What a finding says it observed when its trace no longer reproduces it."""


def _expected_at(impl: Adapter, ops: Sequence[Op]) -> Observation:
    """The model's observation of the last of ``ops``, run from the start."""
    model = model_for(impl.info)
    for op in ops[:-1]:
        model.execute(op)
    return model.execute(ops[-1])


def minimise(impl: Adapter, ops: list[Op], engine: str, seed: int | None) -> Finding:
    """Shrink a diverging sequence and record the divergence the minimal trace produces."""

    def diverges(candidate: list[Op]) -> bool:
        return Differential(impl).replay(candidate) is not None

    minimal = shrink(ops, diverges)
    diff = Differential(impl)
    final = diff.replay(minimal)
    if final is None:  # flaky implementation: keep the unshrunk sequence
        minimal = ops
        final = diff.replay(minimal)
    if final is None:  # it does not diverge again at all: say so, with the sequence that did once
        last = ops[-1]
        final = Divergence(len(ops) - 1, last, _expected_at(impl, ops), None, crash=FLAKY)
    trace = tuple(op for i, op in enumerate(minimal[: final.index + 1]) if i not in diff.withheld_at)
    return Finding(engine, final, trace, seed)
