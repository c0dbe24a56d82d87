"""The stateful engine: a Hypothesis ``RuleBasedStateMachine`` whose every choice Hypothesis draws.

:class:`DeviceMachine` runs one campaign step per rule: bring a device up as
firmware does, program or size a BAR, write the command register, read or
write configuration space (also through 0xCF8/0xCFC and ECAM), access a BAR
that decodes, reset, hot-plug, save and restore, snapshot. Which device,
BAR, offset, width and value each rule uses are drawn from the strategies of
:mod:`vpcid.conformance.strategies`, so Hypothesis shrinks them and its
example database (a directory, or Redis) replays them. Every operation runs
on the implementation and on the model (:class:`~vpcid.conformance.engine.Differential`)
and every observation is compared; a divergence is a failure.

User invariants (:class:`Invariant`) are plain callables given each
:class:`Step` (the operation, what it observed, the BAR or configuration
bytes it reached, the model's state after it, the steps before it) and are
checked after every operation. Users also subclass :class:`DeviceMachine`
with their own ``@rule``\\ s and ``@invariant``\\ s::

    from hypothesis.stateful import invariant, rule
    from vpcid.conformance.stateful import DeviceMachine, register_constant

    class NicMachine(DeviceMachine):
        target = "mynic:factory"               # any --adapter spec, a device type, or a Target
        device_invariants = (register_constant("VERSION never changes", 0x0, 4, bar=0, value=0x0102),)

        @rule()
        def kick(self) -> None:
            nic = self.devices[0]
            if self.bar_write(nic, 0, 0xC, 4, 1):
                assert self.bar_read(nic, 0, 0x8, 4) is not None

    TestNic = NicMachine.TestCase               # pytest collects it; HypoFuzz fuzzes it unchanged

:func:`run_campaign` runs a machine for a number of examples or a duration
and turns the first failure into a :class:`FuzzFinding`: a divergence,
blamed on the requirement it breaks (:func:`vpcid.conformance.blame.blame`),
a violated invariant, or a crash of the model side, each with its trace cut
down operation by operation (:func:`~vpcid.conformance.engine.shrink`) to a
minimal one that :func:`replay` (and ``vpcid replay`` for divergences)
reproduces. :func:`run_stateful` is the engine ``vpcid certify`` runs.
"""

from __future__ import annotations

import dataclasses
import time
import unittest
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Literal

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st
from hypothesis.database import ExampleDatabase
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from vpcid.adapters.base import Adapter, FixedMachine
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.engine import (
    EXTRA_DEVICE,
    INIT,
    IO_POOL,
    MEM32_POOL,
    MEM64_POOL,
    SYSTEM_LAYOUT,
    SYSTEM_VMS,
    Differential,
    Divergence,
    Finding,
    format_op,
    shrink,
)
from vpcid.conformance.strategies import ConfigAccess, bar_offsets, config_accesses
from vpcid.conformance.trace import (
    OK,
    Observation,
    Op,
    OpKind,
    TraceError,
    define_type_op,
    new_op,
)
from vpcid.conformance.typefile import type_json
from vpcid.model import Bdf, DeviceType, VpcidError
from vpcid.model.devicetype import ROM_INDEX, BarKind
from vpcid.model.header import BAR0, COMMAND, ROM_BAR, VENDOR_ID
from vpcid.model.manager import CF8, CFC, DEFAULT_ECAM_BASE, ECAM_SIZE, DataManager, VmTables, cam_selection
from vpcid.model.registers import RegisterMap

__all__ = [
    "STEPS_PER_EXAMPLE",
    "Access",
    "CampaignError",
    "CampaignResult",
    "CampaignStats",
    "Coverage",
    "Device",
    "DeviceMachine",
    "DivergenceFound",
    "FuzzFinding",
    "Invariant",
    "InvariantViolated",
    "ModelCrash",
    "Step",
    "Target",
    "device_invariant",
    "reads_after_reset",
    "register_constant",
    "replay",
    "run_campaign",
    "run_stateful",
]

STEPS_PER_EXAMPLE = 25
"""Rules per Hypothesis example (after the power-on rule)."""
BATCH_EXAMPLES = 25
"""Examples per Hypothesis run while a campaign runs for a duration or may be stopped (each run with its
own seed): the duration and the stop are looked at between runs."""
_MOSTLY = (False, *(True,) * 7)
"""Sampled for a step that usually happens and that shrinking removes (towards False)."""
ABSENT_CANDIDATES = (Bdf(0, 0x1F, 7), Bdf(0, 0x1E, 7), Bdf(2, 0x1F, 7), Bdf(0xFE, 0x1F, 7))
"""Functions the machine addresses but never plugs, the first one free of devices and platform
functions: they read as all ones (R-ACC-006)."""
_COMMANDS = (0x7, 0x407, 0x3, 0x1, 0x2)
"""Command register values firmware writes to enable decode."""
_PROBES = (0xFFFF_FFFF, 0xFFFF_FFF0, 0xFFFF_F800, 0xFFFF_FFFE)
"""What software writes to a BAR to size it (R-BAR-003)."""
_IO_WIDTHS = (4, 1, 2)
_MMIO_WIDTHS = (4, 8, 1, 2)
"""Access widths, the dword (what registers mostly are) first: Hypothesis starts from and shrinks to it."""
_VALUES = {
    width: st.one_of(
        st.sampled_from(((1 << (8 * width)) - 1, 1, 0, 1 << (8 * width - 1))),
        st.integers(0, (1 << (8 * width)) - 1),
    )
    for width in (1, 2, 4, 8)
}
"""Values of each access width: all ones (what sets, clears and triggers most), bit 0, zero, the top bit,
or anything."""
_WRITE_FIRST = st.sampled_from((True, False))
"""Whether an access writes before it reads back: writing first is the simpler (and more telling)."""
SWEEP_BYTES = 64
"""A sweep reads every dword of a BAR this small, else its first and last dwords and its registers'."""


@lru_cache(maxsize=256)
def _below(count: int) -> st.SearchStrategy[int]:
    """An index into a sequence of ``count`` (strategies are built once: Hypothesis validates each)."""
    return st.integers(0, count - 1)


@lru_cache(maxsize=256)
def _choice(items: tuple[int, ...]) -> st.SearchStrategy[int]:
    return st.sampled_from(items)


@lru_cache(maxsize=256)
def _config_access(dtype: DeviceType) -> st.SearchStrategy[ConfigAccess]:
    return config_accesses(dtype)


@lru_cache(maxsize=256)
def _declared(dtype: DeviceType) -> st.SearchStrategy[ConfigAccess] | None:
    """A write at a byte ``dtype`` declares writable or RW1C (None if there is none): the access
    holding it of 1, 2 or 4 bytes inside its dword, and a value of zeros, ones, the bytes' writable or
    RW1C mask, the inverse of their power-on value, or anything."""
    space = dtype.declared
    declared = [o for o in range(len(space.image)) if space.wmask[o] | space.w1cmask[o]]
    if not declared:
        return None

    @st.composite
    def write(draw: st.DrawFn) -> ConfigAccess:
        target = draw(st.sampled_from(declared))
        width = draw(st.sampled_from((1, 2, 4)))
        offset = target - target % width
        full = (1 << (8 * width)) - 1
        candidates = (0, full, space.word(offset, width, "wmask"), space.word(offset, width, "w1cmask"),
                      space.word(offset, width) ^ full)  # fmt: skip
        value = draw(st.one_of(st.sampled_from(candidates), st.integers(0, full)))
        return ConfigAccess(offset, width, value)

    return write()


@lru_cache(maxsize=1024)
def _register_places(dtype: DeviceType, bar: int) -> tuple[tuple[int, int], ...]:
    """``(offset, width)`` of the registers ``dtype``'s register map declares in BAR ``bar``."""
    registers = dtype.behaviour
    if not isinstance(registers, RegisterMap):
        return ()
    return tuple((r.offset, r.width) for r in registers.registers if r.bar == bar)


@lru_cache(maxsize=1024)
def _offsets(size: int, registers: tuple[tuple[int, int], ...]) -> st.SearchStrategy[int]:
    return bar_offsets(size, registers)


# --------------------------------------------------------------------------- what a campaign runs against


class CampaignError(VpcidError, ValueError):
    """A campaign was asked for something its target cannot do (``bad-campaign``)."""

    kind = "bad-campaign"


@dataclass(frozen=True)
class Device:
    """An instance the machine addresses: its VM, where it is, what it is."""

    vm: int
    bdf: Bdf
    dtype: DeviceType


@dataclass
class Target:
    """What a campaign runs against: the implementation, the instances it holds after the
    ``prologue`` (run after ``init``), and what the model side needs to know.

    ``types``: device types the model side must know by name because no
    ``define_type`` in the prologue carries them (a Python behaviour that no
    type file can name). ``replay``: the ``--adapter`` spec ``vpcid replay``
    reproduces a divergence with. ``key``: what tells this target's entries
    in the example database apart from other targets'.
    """

    adapter: Adapter
    label: str
    devices: tuple[Device, ...]
    prologue: tuple[Op, ...] = ()
    types: Mapping[str, DeviceType] = field(default_factory=dict)
    replay: str | None = None
    key: str = ""

    @property
    def machine(self) -> FixedMachine | None:
        """The implementation's fixed machine, if it presents one."""
        return self.adapter.info.machine

    @property
    def operations(self) -> frozenset[OpKind]:
        return self.adapter.info.operations

    @property
    def vms(self) -> tuple[int, ...]:
        """The VMs the instances live in, ascending."""
        return tuple(sorted({d.vm for d in self.devices}))

    @property
    def ecam_base(self) -> int | None:
        machine = self.machine
        return machine.ecam_base if machine is not None else DEFAULT_ECAM_BASE

    def model(self) -> RecordingModel:
        """A fresh model side, in the implementation's declared profile and machine."""
        info = self.adapter.info
        return RecordingModel(
            f"model({info.name})",
            info.profile,
            info.machine,
            operations=info.operations,
            types={**SUITE_TYPES, **self.types},
        )

    def absent_function(self) -> Bdf | None:
        """A function no device and no platform function occupies (None if every candidate is taken)."""
        machine = self.machine
        taken = {d.bdf for d in self.devices} | set(machine.reserved_functions if machine else ())
        return next((bdf for bdf in ABSENT_CANDIDATES if bdf not in taken), None)

    def reserved(self, io: bool, start: int, length: int) -> bool:
        """Whether ``[start, start+length)`` touches a platform range, or the ECAM window."""
        machine = self.machine
        if machine is not None and machine.is_reserved("io" if io else "memory", start, length):
            return True
        ecam = self.ecam_base
        if io:
            return start < CFC + 4 and start + length > CF8
        return ecam is not None and start < ecam + ECAM_SIZE and ecam < start + length

    @classmethod
    def for_adapter(
        cls, adapter: Adapter, spec: str | None = None, types: Sequence[DeviceType] = ()
    ) -> Target:
        """The instances an adapter holds: its fixed machine's devices, or for a full-API adapter the
        suite's layout (and ``types``, defined by ``define_type``, at 00:10.0, 00:11.0, ...) in two VMs."""
        info = adapter.info
        label = spec or info.name
        key = "|".join([label, *sorted(t.fingerprint().hex() for t in types)])
        if info.machine is not None:
            if types:
                raise CampaignError(f"{label} presents a fixed machine: it cannot plug other device types")
            devices = tuple(Device(info.machine.vm, bdf, dtype) for bdf, dtype in info.machine.devices)
            return cls(adapter, label, devices, replay=spec, key=key)
        if types and OpKind.DEFINE_TYPE not in info.operations:
            raise CampaignError(f"{label} does not offer define_type: it cannot plug device types from files")
        extra = tuple((Bdf(0, EXTRA_DEVICE + k, 0), t) for k, t in enumerate(types))
        layout = (*((bdf, SUITE_TYPES[name]) for bdf, name in SYSTEM_LAYOUT), *extra)
        prologue: list[Op] = [define_type_op(type_json(t)) for _, t in extra]
        for vm in SYSTEM_VMS:
            prologue.append(new_op(OpKind.CREATE_VM, vm))
            prologue += [Op(OpKind.PLUG, vm=vm, bdf=bdf, name=t.name) for bdf, t in layout]
        devices = tuple(Device(vm, bdf, t) for vm in SYSTEM_VMS for bdf, t in layout)
        return cls(adapter, label, devices, tuple(prologue), replay=spec, key=key)


# --------------------------------------------------------------------------- steps and invariants


@dataclass(frozen=True)
class Access:
    """The bytes an operation reached: ``width`` bytes at ``offset`` of a function's configuration space
    (``space`` "config", through any mechanism) or of one of its BARs (``space`` "bar", ``bar`` 0-5 or 6
    for the ROM), resolved on the model's state before the operation. ``value``: what was written, or
    what the read returned (None for a read that was rejected)."""

    space: Literal["config", "bar"]
    vm: int
    bdf: Bdf
    bar: int | None
    offset: int
    width: int
    write: bool
    value: int | None

    def covers(self, offset: int, width: int) -> bool:
        """Whether the access reached every byte of ``[offset, offset+width)``."""
        return self.offset <= offset and offset + width <= self.offset + self.width

    def part(self, offset: int, width: int) -> int | None:
        """The value of bytes ``[offset, offset+width)`` within this access (None if not all covered)."""
        if self.value is None or not self.covers(offset, width):
            return None
        return (self.value >> (8 * (offset - self.offset))) & ((1 << (8 * width)) - 1)


@dataclass(frozen=True)
class Step:
    """One operation of a campaign, as invariants see it after it ran.

    ``observation`` is the implementation's (equal to the model's: a step
    that diverged is a finding before any invariant runs); ``model`` is the
    model side after the operation (``model.manager`` is the
    :class:`~vpcid.model.DataManager`, whose instances hold the device
    state); ``history`` the steps since the last ``init``, oldest first.
    """

    index: int
    op: Op
    observation: Observation
    access: Access | None
    model: ModelAdapter
    history: Sequence[Step]

    def read_of(
        self, offset: int, width: int, *, bar: int | None = None, bdf: Bdf | None = None
    ) -> int | None:
        """The value this step read from ``[offset, offset+width)`` of BAR ``bar`` (configuration space
        when ``bar`` is None) of ``bdf`` (any instance when None); None if it did not read all of it."""
        access = self.access
        if access is None or access.write or (bdf is not None and access.bdf != bdf):
            return None
        if (access.space == "bar") != (bar is not None) or access.bar != bar:
            return None
        return access.part(offset, width)

    def wrote(self, offset: int, width: int, *, bar: int | None = None, bdf: Bdf | None = None) -> bool:
        """Whether this step wrote any byte of ``[offset, offset+width)`` of BAR ``bar`` (configuration
        space when None) of ``bdf`` (any instance when None)."""
        access = self.access
        if access is None or not access.write or (bdf is not None and access.bdf != bdf):
            return False
        if (access.space == "bar") != (bar is not None) or access.bar != bar:
            return False
        return access.offset < offset + width and offset < access.offset + access.width

    def resets(self, bdf: Bdf, vm: int) -> bool:
        """Whether this step put the function at ``bdf`` of VM ``vm`` into its power-on state (init,
        function or VM reset, plug); a restore brings back saved state, not the power-on one."""
        kind = self.op.kind
        if kind is OpKind.INIT:
            return True
        if self.op.vm != vm:
            return False
        return kind is OpKind.RESET_VM or (kind in (OpKind.RESET, OpKind.PLUG) and self.op.bdf == bdf)


InvariantCheck = Callable[[Step], "bool | str | None"]
"""An invariant's test: True or None when it holds after the step, False or a message when it does not
(raising AssertionError says the same)."""


@dataclass(frozen=True)
class Invariant:
    """A property of one's device checked after every operation of a campaign (``name`` says it).

    A violation is a finding, with the trace shrunk to the fewest operations
    that still violate the invariant."""

    name: str
    check: InvariantCheck

    def violation(self, step: Step) -> str | None:
        """Why the invariant does not hold after ``step``, or None when it does."""
        try:
            verdict = self.check(step)
        except AssertionError as exc:
            return str(exc) or "assertion failed"
        except Exception as exc:
            return f"the invariant raised {type(exc).__name__}: {exc}"
        if verdict is None or verdict is True:
            return None
        return verdict if isinstance(verdict, str) and verdict else "does not hold"


def device_invariant(name: str | None = None) -> Callable[[InvariantCheck], Invariant]:
    """Decorator: the function (given each :class:`Step`) as an :class:`Invariant` named ``name``
    (default: the function's docstring's first line, else its name)."""

    def make(check: InvariantCheck) -> Invariant:
        doc = (check.__doc__ or "").strip().splitlines()
        fallback = doc[0] if doc else str(getattr(check, "__name__", "invariant"))
        return Invariant(name or fallback, check)

    return make


def register_constant(
    name: str,
    offset: int,
    width: int,
    *,
    bar: int | None = None,
    value: int | None = None,
    bdf: Bdf | None = None,
) -> Invariant:
    """Every read of ``[offset, offset+width)`` of BAR ``bar`` (configuration space when None) returns
    ``value``, or when ``value`` is None the value the first such read since ``init`` returned
    ("VERSION never changes")."""

    def check(step: Step) -> str | None:
        got = step.read_of(offset, width, bar=bar, bdf=bdf)
        if got is None:
            return None
        wanted = value
        if wanted is None:
            assert step.access is not None
            who = step.access.bdf
            earlier = (s.read_of(offset, width, bar=bar, bdf=who) for s in step.history)
            wanted = next((v for v in earlier if v is not None), got)
        if got != wanted:
            return f"{_where(bar, offset)} read {got:#x}, earlier {wanted:#x}"
        return None

    return Invariant(name, check)


def reads_after_reset(
    name: str, offset: int, width: int, value: int, *, bar: int | None = None, bdf: Bdf | None = None
) -> Invariant:
    """The first read of ``[offset, offset+width)`` of BAR ``bar`` (configuration space when None)
    after a function's power-on, reset or restore, before any write to that BAR (or configuration
    space), returns ``value`` ("after reset ISR reads 0"); a write anywhere in the BAR may have side
    effects, so it ends the check until the next reset."""

    def check(step: Step) -> str | None:
        got = step.read_of(offset, width, bar=bar, bdf=bdf)
        if got is None or got == value:
            return None
        assert step.access is not None
        who = step.access.bdf
        for earlier in reversed(step.history):
            if earlier.read_of(offset, width, bar=bar, bdf=who) is not None:
                return None  # not the first read since the reset
            if earlier.wrote(0, 1 << 64, bar=bar, bdf=who):
                return None
            if earlier.resets(who, step.access.vm):
                return (
                    f"{_where(bar, offset)} read {got:#x} first after {earlier.op.kind.value}, not {value:#x}"
                )
        return None

    return Invariant(name, check)


def _where(bar: int | None, offset: int) -> str:
    return f"configuration offset {offset:#x}" if bar is None else f"BAR{bar} offset {offset:#x}"


# --------------------------------------------------------------------------- coverage


@dataclass
class Coverage:
    """Which bytes of which configuration spaces and BARs a campaign read and wrote.

    Keyed by the function (its BDF) and region (``config`` or ``BAR<n>``; the
    VM is left out: every VM of a campaign holds the same layout). For a BAR
    with a register map (R-REG-001), ``registers`` holds per register
    ``[reads, writes, bits written as 1, bits written as 0]``."""

    read: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    written: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    accesses: dict[tuple[str, str], int] = field(default_factory=dict)
    operations: dict[str, int] = field(default_factory=dict)
    registers: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def record(self, op: Op, access: Access | None, register_map: RegisterMap | None = None) -> None:
        """Count ``op``; add the bytes ``access`` reached (and the registers, bit by bit, of
        ``register_map``, the map of the BAR it reached)."""
        self.operations[op.kind.value] = self.operations.get(op.kind.value, 0) + 1
        if access is None:
            return
        key = (str(access.bdf), "config" if access.bar is None else f"BAR{access.bar}")
        self.accesses[key] = self.accesses.get(key, 0) + 1
        touched = (self.written if access.write else self.read).setdefault(key, set())
        touched.update(range(access.offset, access.offset + access.width))
        if register_map is not None and access.bar is not None:
            self._registers(access, access.bar, register_map)

    def _registers(self, access: Access, bar: int, register_map: RegisterMap) -> None:
        seen: dict[str, list[int]] = {}
        value = access.value or 0
        for k in range(access.width):
            register = register_map.at(bar, access.offset + k)
            if register is None:
                continue
            lane = 8 * (access.offset + k - register.offset)
            byte = (value >> (8 * k)) & 0xFF
            bits = seen.setdefault(register.name, [0, 0])
            bits[0] |= byte << lane
            bits[1] |= (~byte & 0xFF) << lane
        for name, (ones, zeros) in seen.items():
            entry = self.registers.setdefault((str(access.bdf), name), [0, 0, 0, 0])
            if access.write:
                entry[1] += 1
                entry[2] |= ones
                entry[3] |= zeros
            else:
                entry[0] += 1

    def merge(self, other: Coverage) -> None:
        """Add ``other``'s counts and bytes to these."""
        for mine, theirs in ((self.read, other.read), (self.written, other.written)):
            for key, offsets in theirs.items():
                mine.setdefault(key, set()).update(offsets)
        for key, count in other.accesses.items():
            self.accesses[key] = self.accesses.get(key, 0) + count
        for kind, count in other.operations.items():
            self.operations[kind] = self.operations.get(kind, 0) + count
        for name, (reads, writes, ones, zeros) in other.registers.items():
            entry = self.registers.setdefault(name, [0, 0, 0, 0])
            entry[0] += reads
            entry[1] += writes
            entry[2] |= ones
            entry[3] |= zeros

    def to_json(self) -> dict[str, Any]:
        """Byte sets as ``[start, stop)`` runs, for worker processes to hand back."""

        def runs(offsets: set[int]) -> list[list[int]]:
            out: list[list[int]] = []
            for offset in sorted(offsets):
                if out and out[-1][1] == offset:
                    out[-1][1] = offset + 1
                else:
                    out.append([offset, offset + 1])
            return out

        def table(found: dict[tuple[str, str], set[int]]) -> list[Any]:
            return [[bdf, region, runs(offsets)] for (bdf, region), offsets in sorted(found.items())]

        return {
            "read": table(self.read),
            "written": table(self.written),
            "accesses": [[b, r, n] for (b, r), n in sorted(self.accesses.items())],
            "operations": dict(sorted(self.operations.items())),
            "registers": [[b, n, *counts] for (b, n), counts in sorted(self.registers.items())],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Coverage:
        """The inverse of :meth:`to_json`."""

        def table(rows: Iterable[Any]) -> dict[tuple[str, str], set[int]]:
            return {
                (str(b), str(r)): {o for start, stop in runs for o in range(int(start), int(stop))}
                for b, r, runs in rows
            }

        return cls(
            table(obj.get("read", [])),
            table(obj.get("written", [])),
            {(str(b), str(r)): int(n) for b, r, n in obj.get("accesses", [])},
            {str(k): int(v) for k, v in dict(obj.get("operations", {})).items()},
            {(str(row[0]), str(row[1])): [int(v) for v in row[2:6]] for row in obj.get("registers", [])},
        )


# --------------------------------------------------------------------------- the model side


def _bar_base(
    manager: DataManager, vm: int, io: bool, address: int, bdf: Bdf, bar: int, cache: dict[int, VmTables]
) -> int | None:
    tables = cache.get(vm)
    if tables is None:
        tables = cache[vm] = manager.tables(vm)
    for entry in tables.io if io else tables.memory:
        if entry.bdf == bdf and entry.bar == bar and entry.base <= address < entry.base + entry.size:
            return entry.base
    return None


def resolve_access(
    model: ModelAdapter,
    op: Op,
    ecam_bases: Mapping[int, int | None],
    tables: dict[int, VmTables] | None = None,
) -> Access | None:
    """The bytes ``op`` reaches on the model's current state (see :class:`Access`); None for an
    operation that is no access, one the model would reject, or one that reaches no function.
    ``tables``: the VMs' tables as of now, filled as they are needed (a cache the caller empties
    whenever an operation may change them)."""
    kind, manager = op.kind, model.manager
    write = kind in (OpKind.CONFIG_WRITE, OpKind.IO_WRITE, OpKind.MMIO_WRITE)
    value = op.value if write else None
    if kind in (OpKind.CONFIG_READ, OpKind.CONFIG_WRITE):
        if op.bdf is None or op.vm not in manager.vm_ids():
            return None
        return Access("config", op.vm, op.bdf, None, op.address, op.width, write, value)
    if kind not in (OpKind.IO_READ, OpKind.IO_WRITE, OpKind.MMIO_READ, OpKind.MMIO_WRITE):
        return None
    io = kind in (OpKind.IO_READ, OpKind.IO_WRITE)
    if op.vm not in manager.vm_ids() or type(op.width) is not int or op.width not in (1, 2, 4, 8):
        return None
    address = op.address
    if io and CFC <= address < CFC + 4:
        selected = cam_selection(manager.cf8(op.vm), manager.profile)
        if selected is None:
            return None
        bdf, register = selected
        return Access("config", op.vm, bdf, None, register + address - CFC, op.width, write, value)
    ecam = None if io else ecam_bases.get(op.vm, DEFAULT_ECAM_BASE)
    if ecam is not None and ecam <= address < ecam + ECAM_SIZE:
        rel = address - ecam
        bdf = Bdf(rel >> 20, (rel >> 15) & 0x1F, (rel >> 12) & 0x7)
        return Access("config", op.vm, bdf, None, rel & 0xFFF, op.width, write, value)
    if not 0 <= address <= (0xFFFF if io else (1 << 64) - 1):
        return None
    found = manager.resolve(op.vm, "io" if io else "memory", address)
    if found is None:
        return None
    bdf, bar = found
    base = _bar_base(manager, op.vm, io, address, bdf, bar, {} if tables is None else tables)
    if base is None:
        return None
    return Access("bar", op.vm, bdf, bar, address - base, op.width, write, value)


class RecordingModel(ModelAdapter):
    """The model side of a campaign: records each operation as a :class:`Step` (with the bytes it
    reached), the coverage, and the first violation of an invariant.

    ``expect(ops, start)`` tells it the trace positions of the operations the
    engine is about to run, so a step knows its index even when the engine
    withholds some operations (opaque BAR contents)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invariants: tuple[Invariant, ...] = ()
        self.coverage: Coverage | None = None
        self.history: list[Step] = []
        """The steps since the last ``init`` (kept while there are invariants to give them to)."""
        self.observed: list[Observation] = []
        """Observations of the operations run since the last :meth:`expect`."""
        self.violation: tuple[int, Invariant, str] | None = None
        self.position = -1
        """Trace position of the operation being run (or run last)."""
        machine = self.info.machine
        self.ecam_bases: dict[int, int | None] = {machine.vm: machine.ecam_base} if machine else {}
        self._table_cache: dict[int, VmTables] = {}
        """The VMs' tables, kept while only reads run."""
        self._pending: Sequence[Op] = ()
        self._start = 0
        self._cursor = 0

    def expect(self, ops: Sequence[Op], start: int) -> None:
        """The next operations, at trace positions ``start``, ``start+1``, ..."""
        self._pending, self._start, self._cursor = ops, start, 0
        self.observed = []

    def _position(self, op: Op) -> int:
        pending = self._pending
        while self._cursor < len(pending) and pending[self._cursor] is not op:
            self._cursor += 1
        position = self._start + self._cursor
        self._cursor += 1
        return position

    def execute(self, op: Op) -> Observation:
        self.position = self._position(op)
        access = (
            resolve_access(self, op, self.ecam_bases, self._table_cache)
            if op.kind not in _NO_ACCESS
            else None
        )
        if op.kind not in _KEEPS_TABLES:
            self._table_cache.clear()
        observation = super().execute(op)
        self.observed.append(observation)
        if op.kind is OpKind.INIT:
            self.history = []
        elif op.kind is OpKind.CREATE_VM and observation.error is None:
            self.ecam_bases[op.vm] = op.ecam_base
        if access is not None and not access.write:
            access = dataclasses.replace(access, value=observation.value)
        if access is not None and observation.error is not None:
            access = None  # a rejected access reached nothing (R-ERR-001)
        if self.coverage is not None:
            behaviour = None
            if access is not None and access.space == "bar":
                behaviour = self.manager.device_type(access.vm, access.bdf).behaviour
            self.coverage.record(op, access, behaviour if isinstance(behaviour, RegisterMap) else None)
        if self.invariants:
            step = Step(self.position, op, observation, access, self, tuple(self.history))
            if self.violation is None:
                for invariant in self.invariants:
                    why = invariant.violation(step)
                    if why is not None:
                        self.violation = (step.index, invariant, why)
                        break
            self.history.append(step)
        return observation


_KEEPS_TABLES = frozenset(
    {OpKind.CONFIG_READ, OpKind.IO_READ, OpKind.MMIO_READ, OpKind.TABLES, OpKind.SAVE, OpKind.SNAPSHOT}
)
"""Operations that never change a VM's tables."""
_NO_ACCESS = frozenset(OpKind) - {
    OpKind.CONFIG_READ,
    OpKind.CONFIG_WRITE,
    OpKind.IO_READ,
    OpKind.IO_WRITE,
    OpKind.MMIO_READ,
    OpKind.MMIO_WRITE,
}


# --------------------------------------------------------------------------- failures


class DivergenceFound(AssertionError):
    """Raised inside the machine when the implementation and the model disagree (Hypothesis shrinks)."""


class InvariantViolated(AssertionError):
    """Raised inside the machine when a user invariant does not hold after an operation."""


class ModelCrash(AssertionError):
    """Raised inside the machine when the model side raised something other than a rejection: a device
    type's Python behaviour failed."""


# --------------------------------------------------------------------------- campaign state


@dataclass
class CampaignStats:
    """How far a campaign got: operations run, examples started, when it started."""

    operations: int = 0
    examples: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Operations per second so far."""
        return self.operations / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class _Campaign:
    """What every machine of one campaign shares: the target, invariants, coverage, counters, and the
    machine Hypothesis ran last (its trace is the failing example's)."""

    target: Target
    invariants: tuple[Invariant, ...]
    coverage: Coverage = field(default_factory=Coverage)
    stats: CampaignStats = field(default_factory=CampaignStats)
    progress: Callable[[CampaignStats], None] | None = None
    last: DeviceMachine | None = None
    strays: dict[tuple[bool, int], st.SearchStrategy[int]] = field(default_factory=dict)
    """Addresses no platform owns, per (I/O?, width): built once per campaign."""
    _reported: float = 0.0

    def count(self, operations: int) -> None:
        self.stats.operations += operations
        if self.progress is not None and time.monotonic() - self._reported >= 0.2:
            self._reported = time.monotonic()
            self.progress(self.stats)


_OPENED: dict[type, _Campaign] = {}
"""Campaigns of machine classes that name their target by spec, opened on first use (closed at exit)."""


def _open_target(spec: object) -> Target:
    """The target a machine class names: a :class:`Target`, an adapter, a device type, or a spec."""
    if isinstance(spec, Target):
        return spec
    if isinstance(spec, DeviceType):
        from vpcid.conformance.fuzz import type_target

        return type_target([spec])
    if isinstance(spec, str):
        from vpcid.conformance.fuzz import open_target

        return open_target(spec)
    if isinstance(spec, Adapter):
        return Target.for_adapter(spec)
    raise TypeError(f"DeviceMachine.target is a spec, a DeviceType, an Adapter or a Target, not {spec!r}")


def _campaign_of(machine_class: type) -> _Campaign:
    found = _OPENED.get(machine_class)
    if found is None:
        spec = getattr(machine_class, "target", None)
        if spec is None:
            raise TypeError(f"{machine_class.__name__} names no target: set its class attribute 'target'")
        found = _OPENED[machine_class] = _Campaign(
            _open_target(spec), tuple(getattr(machine_class, "device_invariants", ()))
        )
        import atexit

        atexit.register(found.target.adapter.close)
    return found


# --------------------------------------------------------------------------- the machine


class DeviceMachine(RuleBasedStateMachine):
    """Rules that drive one target's instances; every observation is compared with the model.

    Subclass it and set ``target`` (an ``--adapter`` spec such as
    ``"mymodule:factory"`` or ``"qemu:edu"``, a :class:`~vpcid.model.DeviceType`
    run on the model, an :class:`~vpcid.adapters.base.Adapter`, or a
    :class:`Target`) and optionally ``device_invariants``; add ``@rule``\\ s that use
    :meth:`play`, :meth:`bar_read`, :meth:`bar_write`, :meth:`config_read`,
    :meth:`config_write` and :meth:`bring_up`, and ``@invariant``\\ s. A
    Hypothesis ``@invariant`` that reads the device through these methods
    adds its reads to the trace, so the trace stays replayable.
    """

    target: ClassVar[object] = None
    """What the machine runs against (see the class docstring)."""
    device_invariants: ClassVar[Sequence[Invariant]] = ()
    """:class:`Invariant`\\ s checked after every operation (``invariants`` is Hypothesis's own name)."""

    def __init__(self) -> None:
        super().__init__()
        campaign = self._campaign = _campaign_of(type(self))
        campaign.last = self
        campaign.stats.examples += 1
        target = self.subject = campaign.target
        """The target, resolved (``target`` may name it by spec)."""
        self.devices: tuple[Device, ...] = target.devices
        """The instances after the power-on rule, in the order rules draw them (the first is shrunk to)."""
        self.model = target.model()
        self.model.invariants = campaign.invariants
        self.model.coverage = campaign.coverage
        self.diff = Differential(target.adapter, self.model)
        self.ops: list[Op] = []
        """Every operation run so far, from ``init``: the example's trace."""
        self.failed_at: int | None = None
        """Trace position of the operation that diverged, violated an invariant or crashed."""
        self.failure: Divergence | tuple[Invariant, str] | str | None = None
        absent = target.absent_function()
        self._functions = tuple(d.bdf for d in self.devices) + ((absent,) if absent is not None else ())
        self._bars = [(k, index) for k, d in enumerate(self.devices) for index in d.dtype.implemented]
        self._homes = _homes(target)
        self._windows_cache: list[tuple[int, bool, int, int, Bdf, int]] | None = None
        self._stray = campaign.strays

    # ------------------------------------------------------------------ running operations
    def play(self, ops: Sequence[Op]) -> list[Observation]:
        """Run ``ops`` on the implementation and the model; return their observations.

        Raises :class:`DivergenceFound` when the implementation observes
        something else, :class:`InvariantViolated` when an invariant fails
        after one of them, :class:`ModelCrash` when the model side raises.
        """
        start = len(self.ops)
        self.ops.extend(ops)
        self._windows_cache = None
        self.model.expect(ops, start)
        try:
            divergence = self.diff.run(ops, start)
        except TraceError:
            raise
        except Exception as exc:  # the model side failed: a device type's behaviour raised
            self.failed_at = self.model.position
            self.failure = f"{type(exc).__name__}: {exc}"
            self._campaign.count(self.failed_at - start + 1)
            raise ModelCrash(f"step {self.failed_at}: the model raised {self.failure}") from exc
        violation = self.model.violation
        if divergence is not None and (violation is None or divergence.index <= violation[0]):
            self.failed_at, self.failure = divergence.index, divergence
            self._campaign.count(divergence.index - start + 1)
            raise DivergenceFound(divergence.describe())
        self._campaign.count(len(ops))
        if violation is not None:
            index, invariant, why = violation
            self.failed_at, self.failure = index, (invariant, why)
            raise InvariantViolated(f"step {index}: {invariant.name}: {why}")
        return list(self.model.observed)

    def window(self, device: Device, bar: int) -> int | None:
        """Where BAR ``bar`` of ``device`` decodes now (the model's tables), or None."""
        for vm, _io, base, _size, bdf, index in self._windows():
            if (vm, bdf, index) == (device.vm, device.bdf, bar):
                return base
        return None

    def bar_read(self, device: Device, bar: int, offset: int, width: int) -> int | None:
        """Read ``width`` bytes at ``offset`` of a decoding BAR (None when it does not decode)."""
        op = self._bar_op(device, bar, offset, width, None)
        if op is None:
            return None
        return self._single(op).value

    def bar_write(self, device: Device, bar: int, offset: int, width: int, value: int) -> bool:
        """Write a decoding BAR; False (and nothing run) when it does not decode."""
        op = self._bar_op(device, bar, offset, width, value)
        if op is None:
            return False
        self._single(op)
        return True

    def config_read(self, device: Device, offset: int, width: int) -> int | None:
        """Read ``device``'s configuration space (None when the read is rejected)."""
        return self._single(self._cfg(OpKind.CONFIG_READ, device.vm, device.bdf, offset, width)).value

    def config_write(self, device: Device, offset: int, width: int, value: int) -> None:
        """Write ``device``'s configuration space."""
        self._single(self._cfg(OpKind.CONFIG_WRITE, device.vm, device.bdf, offset, width, value))

    def bring_up(self, device: Device, command: int = 0x7) -> None:
        """Program every BAR of ``device`` at an address of its own and write ``command``."""
        self.play(self._firmware(device, command))

    def _single(self, op: Op) -> Observation:
        observed = self.play([op])
        return observed[-1] if observed else OK

    def _bar_op(self, device: Device, bar: int, offset: int, width: int, value: int | None) -> Op | None:
        """The access to ``offset`` of BAR ``bar``, if the model routes it there (not when the BAR does
        not decode, another BAR wins an overlap, or the ECAM window or 0xCF8-0xCFF hide it)."""
        base = self.window(device, bar)
        if base is None:
            return None
        spec = device.dtype.bar(bar) if bar != ROM_INDEX else None
        io = spec is not None and spec.kind is BarKind.IO
        address = base + offset
        if self.subject.reserved(io, address, width) or any(
            self.model.manager.resolve(device.vm, "io" if io else "memory", a) != (device.bdf, bar)
            for a in (address, address + width - 1)
        ):
            return None
        if value is None:
            return new_op(OpKind.IO_READ if io else OpKind.MMIO_READ, device.vm, None, base + offset, width)
        return new_op(
            OpKind.IO_WRITE if io else OpKind.MMIO_WRITE, device.vm, None, base + offset, width, value
        )

    @staticmethod
    def _cfg(kind: OpKind, vm: int, bdf: Bdf, offset: int, width: int, value: int = 0) -> Op:
        return new_op(kind, vm, bdf, offset, width, value)

    def _windows(self) -> list[tuple[int, bool, int, int, Bdf, int]]:
        """(vm, I/O?, base, size, BDF, BAR) of every BAR that decodes now, per the model, but those that
        overlap a range the platform owns (a size probe can leave a BAR over the firmware): what the
        platform does there is no device's doing."""
        if self._windows_cache is None:
            found: list[tuple[int, bool, int, int, Bdf, int]] = []
            manager = self.model.manager
            machine = self.subject.machine
            for vm in manager.vm_ids():
                tables = manager.tables(vm)
                found += [(vm, True, e.base, e.size, e.bdf, e.bar) for e in tables.io]
                found += [(vm, False, e.base, e.size, e.bdf, e.bar) for e in tables.memory]
            if machine is not None:
                found = [w for w in found if not machine.is_reserved("io" if w[1] else "memory", w[2], w[3])]
            self._windows_cache = found
        return self._windows_cache

    def _has_windows(self) -> bool:
        return bool(self._windows())

    def _offers(self, *kinds: OpKind) -> bool:
        return set(kinds) <= self.subject.operations

    def _device(self, data: st.DataObject) -> Device:
        return self.devices[data.draw(_below(len(self.devices)), label="device")]

    def _function(self, data: st.DataObject) -> tuple[int, Bdf, DeviceType]:
        """A device, or now and then the absent function (addressed with the first device's layout)."""
        device = self._device(data)
        if len(self._functions) > len(self.devices) and data.draw(st.sampled_from(_MOSTLY), label="present"):
            return device.vm, device.bdf, device.dtype
        if len(self._functions) > len(self.devices):
            return device.vm, self._functions[-1], device.dtype
        return device.vm, device.bdf, device.dtype

    def _program(self, device: Device, index: int, base: int, upper_first: bool, enable: int) -> list[Op]:
        """Write ``base`` into BAR ``index`` (the ROM's enable bit ``enable``), then read it back."""
        vm, bdf = device.vm, device.bdf
        bar = device.dtype.bar(index) if index != ROM_INDEX else None
        register = ROM_BAR if index == ROM_INDEX else BAR0 + 4 * index
        low = base & 0xFFFF_FFFF
        if index == ROM_INDEX:
            low = low & 0xFFFF_F800 | enable
        ops = [self._cfg(OpKind.CONFIG_WRITE, vm, bdf, register, 4, low)]
        if bar is not None and bar.kind is BarKind.MEM64:
            upper = self._cfg(OpKind.CONFIG_WRITE, vm, bdf, register + 4, 4, base >> 32)
            ops = [upper, *ops] if upper_first else [*ops, upper]  # either half first (R-DEC-007)
        return [*ops, self._cfg(OpKind.CONFIG_READ, vm, bdf, register, 4)]

    # ------------------------------------------------------------------ rules
    @initialize(data=st.data())
    def power_on(self, data: st.DataObject) -> None:
        """``init``, what the target needs to hold its instances (VMs, plugs), then what firmware does:
        most instances get their BARs programmed at addresses of their own and decode enabled."""
        ops = [INIT, *self.subject.prologue]
        for device in self.devices:
            if device.dtype.implemented and data.draw(
                st.sampled_from(_MOSTLY), label=f"bring up {device.bdf}"
            ):
                ops += self._firmware(device, 0x7)
        self.play(ops)

    def _firmware(self, device: Device, command: int) -> list[Op]:
        """Program every BAR of ``device`` at its own address (the ROM enabled), then write ``command``."""
        ops: list[Op] = []
        for index in device.dtype.implemented:
            ops += self._program(device, index, self._homes[(device.vm, device.bdf, index)], False, 1)
        return [*ops, self._cfg(OpKind.CONFIG_WRITE, device.vm, device.bdf, COMMAND, 2, command)]

    @rule(data=st.data())
    def firmware_bring_up(self, data: st.DataObject) -> None:
        """Program a device's BARs at addresses of their own (mostly all), then enable decode."""
        device = self._device(data)
        ops: list[Op] = []
        for index in device.dtype.implemented:
            if data.draw(st.sampled_from(_MOSTLY), label=f"program BAR {index}"):
                enable = data.draw(st.sampled_from((1, 0)), label="ROM enable") if index == ROM_INDEX else 0
                ops += self._program(
                    device, index, self._homes[(device.vm, device.bdf, index)], False, enable
                )
        command = data.draw(st.sampled_from(_COMMANDS), label="command")
        self.play([*ops, self._cfg(OpKind.CONFIG_WRITE, device.vm, device.bdf, COMMAND, 2, command)])

    @precondition(lambda self: bool(self._bars))
    @rule(data=st.data())
    def program_bar(self, data: st.DataObject) -> None:
        """Write an address into one BAR: its own, a typical one, zero, or any (R-BAR-*, R-DEC-*)."""
        which, index = self._bars[data.draw(_below(len(self._bars)), label="BAR")]
        device = self.devices[which]
        bar = device.dtype.bar(index) if index != ROM_INDEX else None
        size = bar.size if bar is not None else device.dtype.rom.size if device.dtype.rom is not None else 0
        io = bar is not None and bar.kind is BarKind.IO
        wide = bar is not None and bar.kind is BarKind.MEM64
        pool = IO_POOL if io else MEM64_POOL + MEM32_POOL if wide else MEM32_POOL
        top = (1 << (64 if wide else 32)) - 1
        home = self._homes[(device.vm, device.bdf, index)]
        raw = data.draw(
            st.one_of(
                st.just(home),
                st.sampled_from((*pool, 0)),
                st.integers(0, 0xFFFF if io else top),
                st.integers(0, top),
            ),
            label="address",
        )
        base = raw & ~(size - 1)
        if raw and not base and size <= top:
            base = size  # a BAR too large for the drawn address: its lowest aligned one instead
        if base and self.subject.reserved(io, base, size):
            base = home
        upper_first = wide and data.draw(st.booleans(), label="upper half first")
        enable = data.draw(st.sampled_from((1, 0)), label="ROM enable") if index == ROM_INDEX else 0
        self.play(self._program(device, index, base, upper_first, enable))

    @precondition(lambda self: bool(self._bars))
    @rule(data=st.data())
    def size_bar(self, data: st.DataObject) -> None:
        """Size a BAR as software does: read it, write a probe, read both dwords (R-BAR-003)."""
        which, index = self._bars[data.draw(_below(len(self._bars)), label="BAR")]
        device = self.devices[which]
        register = ROM_BAR if index == ROM_INDEX else BAR0 + 4 * index
        probe = data.draw(st.sampled_from(_PROBES), label="probe")
        vm, bdf = device.vm, device.bdf
        self.play(
            [
                self._cfg(OpKind.CONFIG_READ, vm, bdf, register, 4),
                self._cfg(OpKind.CONFIG_WRITE, vm, bdf, register, 4, probe),
                self._cfg(OpKind.CONFIG_READ, vm, bdf, register, 4),
                self._cfg(OpKind.CONFIG_READ, vm, bdf, register + 4, 4),
            ]
        )

    @rule(data=st.data())
    def command(self, data: st.DataObject) -> None:
        """Write the command register, read command and status (R-CFG-004, R-DEC-001..R-DEC-003)."""
        device = self._device(data)
        value = data.draw(
            st.one_of(st.sampled_from((0x7, 0x3, 0x2, 0x1, 0x0, 0x6, 0x507, 0xFFFF)), st.integers(0, 0xFFFF)),
            label="command",
        )
        self.play(
            [
                self._cfg(OpKind.CONFIG_WRITE, device.vm, device.bdf, COMMAND, 2, value),
                self._cfg(OpKind.CONFIG_READ, device.vm, device.bdf, COMMAND, 4),
            ]
        )

    @rule(data=st.data())
    def write_configuration(self, data: st.DataObject) -> None:
        """Write configuration space where the type declares something, read the dword back (R-CFG-*)."""
        vm, bdf, dtype = self._function(data)
        access = data.draw(_config_access(dtype), label="access")
        self.play(
            [
                self._cfg(OpKind.CONFIG_WRITE, vm, bdf, access.offset, access.width, access.value),
                self._cfg(OpKind.CONFIG_READ, vm, bdf, access.offset & ~3, 4),
            ]
        )

    @rule(data=st.data())
    def write_declared_bits(self, data: st.DataObject) -> None:
        """Write a byte the type declares writable or write-1-to-clear with zeros, ones, its masks or the
        inverse of what it holds, twice, reading the dword back after each (R-CFG-001, R-CFG-006)."""
        device = self._device(data)
        places = _declared(device.dtype)
        if places is None:
            return
        vm, bdf = device.vm, device.bdf
        ops: list[Op] = []
        for _ in range(2):
            access = data.draw(places, label="access")
            ops += [
                self._cfg(OpKind.CONFIG_WRITE, vm, bdf, access.offset, access.width, access.value),
                self._cfg(OpKind.CONFIG_READ, vm, bdf, access.offset & ~3, 4),
            ]
        self.play(ops)

    @rule(data=st.data())
    def read_configuration(self, data: st.DataObject) -> None:
        """Read configuration space (R-CFG-*, R-ACC-003, R-ACC-006)."""
        vm, bdf, dtype = self._function(data)
        access = data.draw(_config_access(dtype), label="access")
        self.play([self._cfg(OpKind.CONFIG_READ, vm, bdf, access.offset, access.width)])

    @precondition(lambda self: self._has_windows())
    @rule(data=st.data())
    def bar_access(self, data: st.DataObject) -> None:
        """One to four reads, or writes then reads, inside a BAR that decodes: at its edges, its registers
        or anywhere (R-ACC-*, R-DT-003, R-DT-004)."""
        windows = self._windows()
        vm, io, base, size, bdf, index = windows[data.draw(_below(len(windows)), label="window")]
        offsets = _offsets(size, tuple(self.registers(vm, bdf, index)))
        read, write = (OpKind.IO_READ, OpKind.IO_WRITE) if io else (OpKind.MMIO_READ, OpKind.MMIO_WRITE)
        limit = 1 << (16 if io else 64)
        ops: list[Op] = []
        for _ in range(data.draw(st.integers(1, 6), label="accesses")):
            offset = data.draw(offsets, label="offset")
            width = data.draw(st.sampled_from(_IO_WIDTHS if io else _MMIO_WIDTHS), label="width")
            address = min(base + offset, limit - width)
            if data.draw(_WRITE_FIRST, label="write first"):
                value = data.draw(_VALUES[width], label="value")
                ops.append(new_op(write, vm, None, address, width, value))
            ops.append(new_op(read, vm, None, address, width))
        self.play(ops)

    @precondition(lambda self: self._has_windows())
    @rule(data=st.data())
    def bar_sweep(self, data: st.DataObject) -> None:
        """Read back a decoding BAR's registers: every dword of a small BAR, else its first and last dwords
        and its declared registers, so a side effect anywhere shows (R-DT-003, R-DT-004)."""
        windows = self._windows()
        vm, io, base, size, bdf, index = windows[data.draw(_below(len(windows)), label="window")]
        width = min(4, size)
        places = set(range(0, size, width)) if size <= SWEEP_BYTES else {0, size - width}
        places.update(
            offset - offset % width for offset, _ in self.registers(vm, bdf, index) if offset < size
        )
        read = OpKind.IO_READ if io else OpKind.MMIO_READ
        self.play([new_op(read, vm, None, base + offset, width) for offset in sorted(places)])

    def registers(self, vm: int, bdf: Bdf, bar: int) -> tuple[tuple[int, int], ...]:
        """``(offset, width)`` of the registers inside BAR ``bar`` of the instance at ``bdf``: the offsets
        :meth:`bar_access` and :meth:`bar_sweep` aim at first (the type's register map, R-REG-001; a
        subclass may name others)."""
        for device in self.devices:
            if device.vm == vm and device.bdf == bdf:
                return _register_places(device.dtype, bar)
        return ()

    @rule(data=st.data())
    def stray_access(self, data: st.DataObject) -> None:
        """An I/O or MMIO access anywhere no platform owns, maybe in another VM (R-ACC-004, R-DS-008)."""
        vm = data.draw(_choice(self.subject.vms), label="vm")
        io = data.draw(st.booleans(), label="I/O")
        top = 0xFFFF if io else (1 << 64) - 1
        width = data.draw(st.sampled_from((1, 2, 4) if io else (1, 2, 4, 8)), label="width")
        places = self._stray.get((io, width))
        if places is None:
            target = self.subject
            places = self._stray[(io, width)] = st.integers(0, top - width + 1).filter(
                lambda a: not target.reserved(io, a, width)
            )
        address = data.draw(places, label="address")
        read, write = (OpKind.IO_READ, OpKind.IO_WRITE) if io else (OpKind.MMIO_READ, OpKind.MMIO_WRITE)
        ops = [new_op(read, vm, None, address, width)]
        if data.draw(_WRITE_FIRST, label="write first"):
            ops.insert(0, new_op(write, vm, None, address, width, data.draw(_VALUES[width], label="value")))
        self.play(ops)

    @rule(data=st.data())
    def configuration_mechanism(self, data: st.DataObject) -> None:
        """Select with 0xCF8, maybe write the data window, read it and 0xCF8 back (R-CAM-*)."""
        vm, bdf, dtype = self._function(data)
        access = data.draw(_config_access(dtype), label="access")
        address = 0x8000_0000 | bdf.packed << 8 | (access.offset & 0xFC) | (access.offset >> 8) << 24
        address ^= data.draw(st.sampled_from((0, 0, 0, 0x8000_0000, 0x3, 0x0F00_0000)), label="flip")
        port = CFC + access.offset % 4
        ops = [new_op(OpKind.IO_WRITE, vm, None, CF8, 4, address)]
        if data.draw(st.booleans(), label="write"):
            ops.append(new_op(OpKind.IO_WRITE, vm, None, port, access.width, access.value))
        ops += [
            new_op(OpKind.IO_READ, vm, None, port, access.width),
            new_op(OpKind.IO_READ, vm, None, CF8, 4),
        ]
        self.play(ops)

    @precondition(lambda self: self.subject.ecam_base is not None)
    @rule(data=st.data())
    def ecam_access(self, data: st.DataObject) -> None:
        """An ECAM read, maybe after a write (R-ECAM-*)."""
        vm, bdf, dtype = self._function(data)
        access = data.draw(_config_access(dtype), label="access")
        ecam = self.subject.ecam_base
        assert ecam is not None
        address = ecam + (bdf.packed << 12) + access.offset
        ops = [new_op(OpKind.MMIO_READ, vm, None, address, access.width)]
        if data.draw(st.booleans(), label="write first"):
            ops.insert(0, new_op(OpKind.MMIO_WRITE, vm, None, address, access.width, access.value))
        self.play(ops)

    @rule(data=st.data())
    def rejected_access(self, data: st.DataObject) -> None:
        """An access the spec rejects: bad width, offset past the space, value too wide (R-ERR-*, R-ACC-*)."""
        device = self._device(data)
        vm, bdf = device.vm, device.bdf
        choices = [
            new_op(OpKind.CONFIG_READ, vm, bdf, 0x40, 3),
            new_op(OpKind.CONFIG_READ, vm, bdf, 0x1002, 2),
            new_op(OpKind.CONFIG_WRITE, vm, bdf, 0x3, 2, 0),
            new_op(OpKind.MMIO_READ, vm, None, (1 << 64) - 2, 4),
            new_op(OpKind.IO_READ, vm, None, 0xFFFF, 2),
            new_op(OpKind.IO_READ, vm, None, 0xC000, 8),
            new_op(OpKind.MMIO_READ, vm + 7, None, 0xE000_1000, 4),
        ]
        self.play([data.draw(st.sampled_from(choices), label="operation")])

    @precondition(lambda self: self._offers(OpKind.RESET))
    @rule(data=st.data())
    def reset(self, data: st.DataObject) -> None:
        """Function-level reset, then read the command register (R-RST-001, R-RST-002)."""
        device = self._device(data)
        self.play(
            [
                new_op(OpKind.RESET, device.vm, device.bdf),
                self._cfg(OpKind.CONFIG_READ, device.vm, device.bdf, COMMAND, 4),
            ]
        )

    @precondition(lambda self: self._offers(OpKind.RESET_VM))
    @rule(data=st.data())
    def reset_vm(self, data: st.DataObject) -> None:
        """VM reset, then read 0xCF8 (R-RST-003)."""
        vm = data.draw(_choice(self.subject.vms), label="vm")
        self.play([new_op(OpKind.RESET_VM, vm), new_op(OpKind.IO_READ, vm, None, CF8, 4)])

    @precondition(lambda self: self._offers(OpKind.PLUG, OpKind.UNPLUG))
    @rule(data=st.data())
    def hotplug(self, data: st.DataObject) -> None:
        """Unplug an instance, read where it was, maybe plug it again (R-HP-*)."""
        device = self._device(data)
        ops = [
            new_op(OpKind.UNPLUG, device.vm, device.bdf),
            self._cfg(OpKind.CONFIG_READ, device.vm, device.bdf, VENDOR_ID, 4),
        ]
        if data.draw(st.sampled_from(_MOSTLY), label="plug again"):
            ops.append(Op(OpKind.PLUG, vm=device.vm, bdf=device.bdf, name=device.dtype.name))
        self.play(ops)

    @precondition(lambda self: self._offers(OpKind.SAVE, OpKind.RESTORE))
    @rule(data=st.data())
    def save_restore(self, data: st.DataObject) -> None:
        """Save an instance; maybe restore that blob into an instance (R-SR-*, R-BLOB-*)."""
        source, target = self._device(data), self._device(data)
        ops = [Op(OpKind.SAVE, vm=source.vm, bdf=source.bdf, name="s")]
        if data.draw(st.sampled_from(_MOSTLY), label="restore"):
            ops.append(Op(OpKind.RESTORE, vm=target.vm, bdf=target.bdf, name="s"))
        self.play(ops)

    @precondition(lambda self: self._offers(OpKind.SNAPSHOT, OpKind.RESTORE_VM))
    @rule(data=st.data())
    def snapshot(self, data: st.DataObject) -> None:
        """Snapshot a VM; maybe restore it into a VM, a new one included (R-SR-006)."""
        vms = self.subject.vms
        vm = data.draw(st.sampled_from(vms), label="vm")
        ops = [Op(OpKind.SNAPSHOT, vm=vm, name="v")]
        if data.draw(st.booleans(), label="restore"):
            into = data.draw(st.sampled_from((*vms, max(vms) + 1)), label="into")
            ops += [Op(OpKind.RESTORE_VM, vm=into, name="v"), new_op(OpKind.TABLES, into)]
        self.play(ops)

    @precondition(lambda self: self._offers(OpKind.TABLES))
    @rule(data=st.data())
    def tables(self, data: st.DataObject) -> None:
        """Read a VM's tables (R-DS-007)."""
        self.play([new_op(OpKind.TABLES, data.draw(_choice(self.subject.vms), label="vm"))])


def _homes(target: Target) -> dict[tuple[int, Bdf, int], int]:
    """An address of its own for every BAR of every instance (per VM; no overlap, no platform range),
    where :meth:`DeviceMachine.bring_up` puts it."""
    homes: dict[tuple[int, Bdf, int], int] = {}
    for vm in target.vms:
        cursors = {"io": 0x1000, "mem32": 0x8000_0000, "mem64": 0x40_0000_0000}
        for device in (d for d in target.devices if d.vm == vm):
            dtype = device.dtype
            for index in dtype.implemented:
                bar = dtype.bar(index) if index != ROM_INDEX else None
                size = bar.size if bar is not None else dtype.rom.size if dtype.rom is not None else 0
                kind = "io" if bar is not None and bar.kind is BarKind.IO else "mem32"
                if bar is not None and bar.kind is BarKind.MEM64:
                    kind = "mem64"
                base = -(-cursors[kind] // size) * size
                while target.reserved(kind == "io", base, size):
                    base += size
                homes[(vm, device.bdf, index)] = base
                cursors[kind] = base + size
    return homes


# --------------------------------------------------------------------------- campaigns


@dataclass(frozen=True)
class FuzzFinding:
    """A campaign's failure: what kind, the minimal trace (from ``init``) whose last operation shows
    it, a one-line description, and the rule it breaks (requirement IDs, or the invariant's name)."""

    kind: Literal["divergence", "invariant", "crash", "machine"]
    trace: tuple[Op, ...]
    description: str
    rules: tuple[str, ...]
    divergence: Divergence | None = None
    reason: str = ""
    """Why blame names those rules (for a divergence), one line."""
    shrunk_from: int = 0
    """Operations of Hypothesis's minimal example, before the trace was cut down."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "rules": list(self.rules),
            "reason": self.reason,
            "shrunk_from": self.shrunk_from,
            "trace": [op.to_json() for op in self.trace],
        }


@dataclass
class CampaignResult:
    """What a campaign did: its counters, what it exercised, and its finding, if any."""

    target: str
    stats: CampaignStats
    coverage: Coverage
    finding: FuzzFinding | None = None


@dataclass(frozen=True)
class Outcome:
    """How a replayed trace fails: ``kind`` "divergence", "invariant" or "crash", at trace position
    ``index``; ``name`` is the invariant's name or the exception's type; ``detail`` says more."""

    kind: Literal["divergence", "invariant", "crash"]
    index: int
    name: str = ""
    detail: str = ""


def replay(target: Target, ops: Sequence[Op], invariants: Sequence[Invariant] = ()) -> Outcome | None:
    """Run ``ops`` (from ``init``) on the target and a fresh model, checking ``invariants`` after each
    operation; the first failure, or None."""
    model = target.model()
    model.invariants = tuple(invariants)
    model.expect(ops, 0)
    diff = Differential(target.adapter, model)
    try:
        divergence = diff.run(ops)
    except TraceError:
        raise
    except Exception as exc:  # the model side raised: a device type's behaviour failed
        return Outcome("crash", model.position, type(exc).__name__, f"{type(exc).__name__}: {exc}")
    violation = model.violation
    if divergence is not None and (violation is None or divergence.index <= violation[0]):
        return Outcome("divergence", divergence.index, "", divergence.describe())
    if violation is not None:
        return Outcome("invariant", violation[0], violation[1].name, violation[2])
    return None


def _cut(target: Target, ops: list[Op], invariants: Sequence[Invariant], failing: Outcome) -> list[Op]:
    """The fewest operations of ``ops`` that still fail as ``failing`` does (delta debugging), up to
    the failing one."""

    def still_fails(candidate: list[Op]) -> bool:
        found = replay(target, candidate, invariants)
        return found is not None and found.kind == failing.kind and found.name == failing.name

    minimal = shrink(ops, still_fails)
    found = replay(target, minimal, invariants)
    if found is None:  # a flaky implementation: keep what Hypothesis found
        return ops
    return minimal[: found.index + 1]


def _finding(campaign: _Campaign, error: BaseException) -> FuzzFinding:
    """The finding the failing example Hypothesis ended with shows, cut down and explained."""
    machine = campaign.last
    target, invariants = campaign.target, campaign.invariants
    text = " ".join(f"{type(error).__name__}: {error}".split())[:500]
    if machine is None or not machine.ops:
        return FuzzFinding("machine", (), text, ())
    end = machine.failed_at if machine.failed_at is not None else len(machine.ops) - 1
    ops = list(machine.ops[: end + 1])
    if machine.failure is None:  # a user's @rule or @invariant failed: Hypothesis's minimal example
        return FuzzFinding("machine", tuple(ops), text, (), shrunk_from=len(ops))
    first = replay(target, ops, invariants)
    if first is None:
        flaky = f"{text} (it did not happen again when replayed: a flaky implementation)"
        return FuzzFinding("divergence", tuple(ops), flaky, (), shrunk_from=len(ops))
    minimal = _cut(target, ops, invariants, first)
    final = replay(target, minimal, invariants) or first
    at = (
        f"step {final.index}: {format_op(minimal[final.index])}"
        if final.index < len(minimal)
        else "the trace"
    )
    if final.kind == "invariant":
        text = f"{at}: invariant {final.name!r} violated: {final.detail}"
        return FuzzFinding("invariant", tuple(minimal), text, (final.name,), shrunk_from=len(ops))
    if final.kind == "crash":
        return FuzzFinding(
            "crash",
            tuple(minimal),
            f"{at}: the model side raised {final.detail}",
            ("model-crash",),
            shrunk_from=len(ops),
        )
    return _divergence_finding(target, minimal, len(ops))


def _divergence_finding(target: Target, ops: list[Op], shrunk_from: int) -> FuzzFinding:
    """A divergence of ``ops``'s last operation, blamed on the requirement it breaks."""
    from vpcid.conformance.blame import blame
    from vpcid.conformance.certify import describe

    diff = Differential(target.adapter, target.model())
    divergence = diff.replay(ops)
    if divergence is None:
        return FuzzFinding(
            "divergence",
            tuple(ops),
            "the divergence did not happen again (a flaky implementation)",
            (),
            shrunk_from=shrunk_from,
        )
    trace = tuple(op for i, op in enumerate(ops[: divergence.index + 1]) if i not in diff.withheld_at)
    divergence = Divergence(
        len(trace) - 1, divergence.op, divergence.expected, divergence.observed, divergence.crash
    )
    try:
        found = blame(target.adapter, trace, divergence)
    except VpcidError:  # the model blame builds does not know a type only this target's model has
        return FuzzFinding(
            "divergence", trace, divergence.describe(), (), divergence, shrunk_from=shrunk_from
        )
    return FuzzFinding(
        "divergence",
        trace,
        describe(divergence, found),
        found.requirements,
        divergence,
        found.reason,
        shrunk_from,
    )


def _machine_class(base: type[DeviceMachine], campaign: _Campaign) -> type[DeviceMachine]:
    """``base`` bound to ``campaign``; its name carries the target's key, so each target keeps its own
    examples in the database."""
    import hashlib

    names = [campaign.target.key or campaign.target.label, *(i.name for i in campaign.invariants)]
    digest = hashlib.sha256("|".join(names).encode()).hexdigest()[:16]
    bound = type(f"{base.__name__}_{digest}", (base,), {"__module__": base.__module__})
    _OPENED[bound] = campaign
    return bound


def run_campaign(
    target: Target,
    *,
    examples: int | None = 100,
    duration: float | None = None,
    seed: int = 0,
    invariants: Sequence[Invariant] = (),
    database: ExampleDatabase | None = None,
    machine: type[DeviceMachine] = DeviceMachine,
    replay_only: bool = False,
    steps: int = STEPS_PER_EXAMPLE,
    progress: Callable[[CampaignStats], None] | None = None,
    stop: Callable[[], bool] | None = None,
    shrink: bool = True,
) -> CampaignResult:
    """Run ``machine`` against ``target`` until its first failure, ``examples`` examples, or
    ``duration`` seconds (whichever comes first; None: no such bound, but one of them is needed).

    ``database`` keeps the failing examples Hypothesis finds and replays
    them first (a directory, Redis, ...); ``replay_only``: only replay them,
    generate nothing. ``progress`` is called about five times a second;
    ``stop`` is asked between runs of :data:`BATCH_EXAMPLES` examples
    whether to end (another worker found something). ``shrink`` False skips
    Hypothesis's shrinking (the slow part of a finding): the failing example
    is then only cut down operation by operation, to the same kind of
    minimal trace.
    """
    if examples is None and duration is None and not replay_only:
        raise ValueError("a campaign needs a number of examples or a duration")
    campaign = _Campaign(target, tuple(invariants) + tuple(machine.device_invariants), progress=progress)
    bound = _machine_class(machine, campaign)
    deadline = None if duration is None else time.monotonic() + duration
    phases: tuple[Phase, ...] = (
        (Phase.reuse,) if replay_only else (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)
    )
    if shrink:
        phases += (Phase.shrink,)
    run = 0
    try:
        while True:
            left = None if examples is None else examples - campaign.stats.examples
            batch = BATCH_EXAMPLES if deadline is not None or stop is not None else (left or 0)
            if left is not None:
                batch = min(batch, left)
            if batch <= 0 and not replay_only:
                break
            test_settings = settings(
                max_examples=max(batch, 1),
                stateful_step_count=steps,
                deadline=None,
                derandomize=False,  # the seed makes it reproducible; Hypothesis's CI profile would
                database=database,  # otherwise search the same examples every batch, without a database
                suppress_health_check=list(HealthCheck),
                print_blob=False,
                verbosity=Verbosity.quiet,
                phases=phases,
                report_multiple_bugs=False,
            )
            try:
                run_state_machine_as_test(fixed_seed(seed * 7919 + run)(bound), settings=test_settings)
            except unittest.SkipTest:  # nothing to run: replay-only, and the database holds no example
                pass
            except TraceError:
                raise
            except Exception as exc:
                return CampaignResult(
                    target.label, campaign.stats, campaign.coverage, _finding(campaign, exc)
                )
            run += 1
            if replay_only or (deadline is not None and time.monotonic() >= deadline):
                break
            if stop is not None and stop():
                break
    finally:
        _OPENED.pop(bound, None)
        if progress is not None:
            progress(campaign.stats)
    return CampaignResult(target.label, campaign.stats, campaign.coverage)


def run_stateful(
    impl: Adapter, examples: int, seed: int, types: Sequence[DeviceType] = ()
) -> tuple[int, list[Finding]]:
    """The stateful engine of ``vpcid certify``: ``examples`` examples of :class:`DeviceMachine`
    against ``impl`` (with ``types`` from ``--types`` files plugged too); operations run and findings.

    No example database: a certification is a function of its seed. The
    failing example is cut down operation by operation, without Hypothesis's
    own (slower) shrinking."""
    target = Target.for_adapter(impl, types=types)
    result = run_campaign(target, examples=examples, seed=seed, shrink=False)
    found = result.finding
    if found is None or found.kind != "divergence" or found.divergence is None:
        return result.stats.operations, []
    return result.stats.operations, [Finding("stateful", found.divergence, found.trace, seed)]
