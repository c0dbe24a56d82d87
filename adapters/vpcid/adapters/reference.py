"""The reference adapter: the model itself behind the adapter protocol.

The engines also use it as the model side of every comparison, in the
implementation's declared profile and, for guest-view adapters, with the
implementation's fixed machine.
"""

from __future__ import annotations

from collections.abc import Callable

from vpcid.adapters.base import AdapterInfo, FixedMachine, define_type, load_slot
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.trace import (
    EXTENSIONS,
    FULL,
    INTROSPECTION,
    OK,
    Observation,
    Op,
    OpKind,
    TraceError,
    blob_digest,
    topology_rows,
    value_observation,
)
from vpcid.model import Bdf, DataManager, DeviceType, Profile, VpcidError

ManagerFactory = Callable[[Profile], DataManager]


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
        default_ops = (FULL | EXTENSIONS if machine is None else FULL) | INTROSPECTION
        self._info = AdapterInfo(name, profile, operations=operations or default_ops, machine=machine)
        self._operations = self._info.operations
        self._factory = manager_factory
        self._types = dict(types or SUITE_TYPES)
        self._slots: dict[str, bytes] = {}
        self.manager = self._fresh()
        self._handlers = self._handler_table()
        self._parse_definition: Callable[[object], DeviceType] | None = None
        """Reads a ``define_type`` definition; None: the type-file reader."""

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
                for target, offset, width, value in machine.firmware:
                    if target == bdf:
                        manager.config_write(machine.vm, bdf, offset, width, value)
        return manager

    def execute(self, op: Op) -> Observation:
        """Perform ``op``; model errors become error observations (R-ERR-003)."""
        if op.kind not in self._operations:
            raise self._info.unsupported(op)
        try:
            return self._handlers[op.kind](op)
        except TraceError:
            raise
        except VpcidError as exc:
            return Observation(error=exc.kind)

    def _handler_table(self) -> dict[OpKind, Callable[[Op], Observation]]:
        """One small method per operation kind (a dict lookup, not a chain of comparisons)."""
        return {
            OpKind.CONFIG_READ: self._config_read, OpKind.CONFIG_WRITE: self._config_write,
            OpKind.MMIO_READ: self._mmio_read, OpKind.MMIO_WRITE: self._mmio_write,
            OpKind.IO_READ: self._io_read, OpKind.IO_WRITE: self._io_write,
            OpKind.INIT: self._init, OpKind.CREATE_VM: self._create_vm, OpKind.DESTROY_VM: self._destroy_vm,
            OpKind.PLUG: self._plug, OpKind.UNPLUG: self._unplug, OpKind.RESET: self._reset,
            OpKind.RESET_VM: self._reset_vm, OpKind.SAVE: self._save, OpKind.RESTORE: self._restore,
            OpKind.SNAPSHOT: self._snapshot, OpKind.RESTORE_VM: self._restore_vm, OpKind.TABLES: self._tables,
            OpKind.DEFINE_TYPE: self._define_type, OpKind.SET_ECAM_BASE: self._set_ecam_base,
            OpKind.TOPOLOGY: self._topology,
        }  # fmt: skip

    def _config_read(self, op: Op) -> Observation:
        bdf = op.bdf if op.bdf is not None else self._bdf(op)
        return value_observation(self.manager.config_read(op.vm, bdf, op.address, op.width))

    def _config_write(self, op: Op) -> Observation:
        bdf = op.bdf if op.bdf is not None else self._bdf(op)
        self.manager.config_write(op.vm, bdf, op.address, op.width, op.value)
        return OK

    def _mmio_read(self, op: Op) -> Observation:
        return value_observation(self.manager.mmio_read(op.vm, op.address, op.width))

    def _mmio_write(self, op: Op) -> Observation:
        self.manager.mmio_write(op.vm, op.address, op.width, op.value)
        return OK

    def _io_read(self, op: Op) -> Observation:
        return value_observation(self.manager.io_read(op.vm, op.address, op.width))

    def _io_write(self, op: Op) -> Observation:
        self.manager.io_write(op.vm, op.address, op.width, op.value)
        return OK

    def _init(self, op: Op) -> Observation:
        self._slots.clear()
        self.manager = self._fresh()
        return OK

    def _define_type(self, op: Op) -> Observation:
        """Make a type from a definition pluggable by name; like the manager's registry of type names,
        which is not VM state, defined types survive ``init`` (R-DT-001, R-DT-002, R-DS-008)."""
        dtype = define_type(self._types, op, self._parse_definition)
        self.manager.register_type(dtype)
        self._types[dtype.name] = dtype
        return OK

    def _create_vm(self, op: Op) -> Observation:
        self.manager.create_vm(op.vm, ecam_base=op.ecam_base)
        return OK

    def _set_ecam_base(self, op: Op) -> Observation:
        """The platform moves or disables the VM's ECAM window (R-ECAM-005)."""
        self.manager.set_ecam_base(op.vm, op.ecam_base)
        return OK

    def _destroy_vm(self, op: Op) -> Observation:
        self.manager.destroy_vm(op.vm)
        return OK

    def _plug(self, op: Op) -> Observation:
        dtype = self._types.get(op.name)
        if dtype is None:
            raise TraceError(f"plug: unknown device type {op.name!r}")
        self.manager.plug(op.vm, self._bdf(op), dtype)
        return OK

    def _unplug(self, op: Op) -> Observation:
        self.manager.unplug(op.vm, self._bdf(op))
        return OK

    def _reset(self, op: Op) -> Observation:
        self.manager.reset(op.vm, self._bdf(op))
        return OK

    def _reset_vm(self, op: Op) -> Observation:
        self.manager.reset_vm(op.vm)
        return OK

    def _save(self, op: Op) -> Observation:
        return self._store(op, self.manager.save(op.vm, self._bdf(op)))

    def _restore(self, op: Op) -> Observation:
        self.manager.restore(op.vm, self._bdf(op), self._load(op))
        return OK

    def _snapshot(self, op: Op) -> Observation:
        return self._store(op, self.manager.snapshot(op.vm))

    def _restore_vm(self, op: Op) -> Observation:
        self.manager.restore_vm(op.vm, self._load(op))
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
        return load_slot(self._slots, op)

    def _tables(self, op: Op) -> Observation:
        tables = self.manager.tables(op.vm)
        rows: list[tuple[object, ...]] = [("config", str(bdf), name) for bdf, name in tables.config]
        for space, entries in (("io", tables.io), ("memory", tables.memory)):
            rows += [(space, e.base, e.size, str(e.bdf), e.bar) for e in entries]
        return Observation(tables=tuple(rows))

    def _topology(self, op: Op) -> Observation:
        """The VM's bus tree as ``topology`` rows, in the manager's tree order (R-BRG-010)."""
        return Observation(topology=topology_rows(self.manager.topology(op.vm)))


def reference(argument: str | None) -> ModelAdapter:
    """Factory for ``--adapter reference[:PROFILE-MANIFEST]``; a manifest that cannot be read or
    parsed is a :class:`~vpcid.model.ProfileError` naming the file (R-VAR-003)."""
    if argument:
        from pathlib import Path

        from vpcid.conformance.inputs import read_profile

        return ModelAdapter(profile=read_profile(Path(argument)))
    return ModelAdapter()
