"""The reference adapter: the model itself behind the adapter protocol.

The engines also use it as the model side of every comparison, in the
implementation's declared profile and, for guest-view adapters, with the
implementation's fixed machine.
"""

from __future__ import annotations

from collections.abc import Callable

from vpcid.adapters.base import AdapterInfo, FixedMachine
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.trace import FULL, OK, Observation, Op, OpKind, TraceError, blob_digest
from vpcid.model import Bdf, DataManager, DeviceType, Profile, VpcidError

ManagerFactory = Callable[[Profile], DataManager]


class EmptySlot(VpcidError):
    """A restore names a slot no successful save or snapshot filled (observed as ``empty-slot``)."""

    kind = "empty-slot"


class ModelAdapter:
    """Executes trace operations on a :class:`DataManager`.

    ``manager_factory`` builds the manager on every ``init``; a planted-bug
    mutant passes a subclass here.
    """

    def __init__(
        self,
        name: str = "reference",
        profile: Profile | None = None,
        machine: FixedMachine | None = None,
        manager_factory: ManagerFactory = DataManager,
        types: dict[str, DeviceType] | None = None,
        operations: frozenset[OpKind] | None = None,
    ) -> None:
        profile = profile or Profile()
        self._info = AdapterInfo(name, profile, operations=operations or FULL, machine=machine)
        self._factory = manager_factory
        self._types = types or SUITE_TYPES
        self._slots: dict[str, bytes] = {}
        self.manager = self._fresh()

    @property
    def info(self) -> AdapterInfo:
        return self._info

    def _fresh(self) -> DataManager:
        manager = self._factory(self._info.profile)
        for dtype in self._types.values():
            manager.register_type(dtype)
        machine = self._info.machine
        if machine is not None:
            manager.create_vm(machine.vm, ecam_base=machine.ecam_base)
            for bdf, dtype in machine.devices:
                manager.plug(machine.vm, bdf, dtype)
        return manager

    def execute(self, op: Op) -> Observation:
        """Perform ``op``; model errors become error observations (R-ERR-003)."""
        if op.kind not in self._info.operations:
            raise TraceError(f"adapter {self._info.name!r} does not support {op.kind.value}")
        try:
            return self._perform(op)
        except TraceError:
            raise
        except VpcidError as exc:
            return Observation(error=exc.kind)

    def _perform(self, op: Op) -> Observation:
        m = self.manager
        match op.kind:
            case OpKind.CONFIG_READ:
                return Observation(value=m.config_read(op.vm, self._bdf(op), op.address, op.width))
            case OpKind.MMIO_READ:
                return Observation(value=m.mmio_read(op.vm, op.address, op.width))
            case OpKind.IO_READ:
                return Observation(value=m.io_read(op.vm, op.address, op.width))
            case OpKind.CONFIG_WRITE:
                m.config_write(op.vm, self._bdf(op), op.address, op.width, op.value)
            case OpKind.MMIO_WRITE:
                m.mmio_write(op.vm, op.address, op.width, op.value)
            case OpKind.IO_WRITE:
                m.io_write(op.vm, op.address, op.width, op.value)
            case OpKind.INIT:
                self._slots.clear()
                self.manager = self._fresh()
            case OpKind.CREATE_VM:
                m.create_vm(op.vm, ecam_base=op.ecam_base)
            case OpKind.DESTROY_VM:
                m.destroy_vm(op.vm)
            case OpKind.PLUG:
                dtype = self._types.get(op.name)
                if dtype is None:
                    raise TraceError(f"plug: unknown device type {op.name!r}")
                m.plug(op.vm, self._bdf(op), dtype)
            case OpKind.UNPLUG:
                m.unplug(op.vm, self._bdf(op))
            case OpKind.RESET:
                m.reset(op.vm, self._bdf(op))
            case OpKind.RESET_VM:
                m.reset_vm(op.vm)
            case OpKind.SAVE:
                return self._store(op, m.save(op.vm, self._bdf(op)))
            case OpKind.RESTORE:
                m.restore(op.vm, self._bdf(op), self._load(op))
            case OpKind.SNAPSHOT:
                return self._store(op, m.snapshot(op.vm))
            case OpKind.RESTORE_VM:
                m.restore_vm(op.vm, self._load(op))
            case OpKind.TABLES:
                return self._tables(op)
        return OK

    def close(self) -> None:
        self._slots.clear()

    @staticmethod
    def _bdf(op: Op) -> Bdf:
        if op.bdf is None:
            raise TraceError(f"{op.kind.value} needs a bdf")
        return op.bdf

    def _store(self, op: Op, blob: bytes) -> Observation:
        self._slots[op.name] = blob
        return Observation(digest=blob_digest(blob))

    def _load(self, op: Op) -> bytes:
        if not op.name:
            return op.data
        blob = self._slots.get(op.name)
        if blob is None:
            raise EmptySlot(f"{op.kind.value}: nothing saved in slot {op.name!r}")
        return blob

    def _tables(self, op: Op) -> Observation:
        tables = self.manager.tables(op.vm)
        rows: list[tuple[object, ...]] = [("config", str(bdf), name) for bdf, name in tables.config]
        for space, entries in (("io", tables.io), ("memory", tables.memory)):
            rows += [(space, e.base, e.size, str(e.bdf), e.bar) for e in entries]
        return Observation(tables=tuple(rows))


def reference(argument: str | None) -> ModelAdapter:
    """Factory for ``--adapter reference[:PROFILE-MANIFEST]``."""
    if argument:
        from pathlib import Path

        return ModelAdapter(profile=Profile.from_manifest(Path(argument).read_text(encoding="utf-8")))
    return ModelAdapter()
