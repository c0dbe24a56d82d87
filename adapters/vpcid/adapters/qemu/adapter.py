"""The QEMU adapter: one of QEMU's own PCI device models, certified through qtest.

``--adapter qemu:DEVICE[,option=value...]`` (for example ``qemu:edu``,
``qemu:e1000``, ``qemu:pci-testdev,membar=1M``, ``qemu:nvme,serial=x``)
discovers the device's type (:mod:`vpcid.adapters.qemu.discover`), then
presents the suite a fixed machine: VM 1 with the device at 00:04.0 of a q35
machine whose ECAM window is at 0xB0000000, or of a pc machine
(``vpcid-machine=pc``), which has no ECAM. With ``vpcid-behind=BRIDGES`` the
device sits below QEMU's bridges instead, at 01:00.0 below a
``pcie-root-port`` or a ``pci-bridge`` at 00:04.0, or at 03:00.0 below an
x3130 switch (``x3130``: root port 00:04.0, upstream port 01:00.0, downstream
port 02:00.0); the bridges are devices of the machine too, certified with
it, and every ``init`` programs them as firmware would (bus numbers, open
windows, command register: :attr:`DeviceSpec.firmware`, declared in
``FixedMachine.firmware`` for the model to do the same). ``addr=`` places
the device on the last bridge's bus then. The machine's platform waivers
(``waivers/MACHINE.toml``) are declared in :attr:`AdapterInfo.waivers`
unless ``vpcid-waivers=off``. QEMU runs paused, so no firmware runs.
Operations become qtest requests:

- ``config_read``/``config_write``: an ECAM ``read``/``write`` of the
  function's configuration space (0xCF8 is never disturbed); on pc a
  0xCF8/0xCFC access with 0xCF8 put back afterwards;
- ``io_*``: ``in``/``out``; ``mmio_*``: ``readb``..``readq``/``writeb``..``writeq``;
- ``reset_vm``: QMP ``system_reset``, then the firmware's one step (open
  ECAM), keeping whatever 0xCF8 QEMU kept.

Machines come in two ways. For a device whose state migrates (discovery
checks it) they are QEMU snapshots inside one long-lived process: the first
``init`` starts QEMU and saves its power-on state (``savevm``); every
``init`` loads it (``loadvm``: reset, then the saved state); ``save`` is
``savevm`` into a snapshot of the slot, after which the machine continues in
the state loaded back from it; ``restore`` is ``loadvm`` of the slot. For any
other device every ``init`` starts a fresh QEMU (the next one is already
starting while the current one works); there is nothing to save. Either way
0xCF8, a platform register outside the instance's blob, carries over from the
machine being restored into, and ECAM is opened again after every load.
``snapshots=False`` gives a migrating device the process way as well:
``save`` migrates the machine to a file through QMP ``migrate`` and a new
QEMU started with ``-incoming defer`` loads it.

:meth:`QemuAdapter.execute_many` performs a stretch of operations with the
qtest requests of its accesses in flight together, for the engines
(:class:`~vpcid.conformance.engine.Differential`); a QEMU error or crash is
still reported on the operation whose request caused it.

Arguments are checked here exactly as the model checks them (R-ERR-002
order) before anything reaches QEMU. A QEMU that dies or stops answering
raises :class:`~vpcid.adapters.qemu.qtest.QemuCrashed`, which the engines
report as a finding with its minimal trace.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from vpcid.adapters.base import AdapterInfo, AdapterUnavailable, FixedMachine
from vpcid.adapters.base import OpaqueRange as BaseOpaqueRange
from vpcid.adapters.qemu.discover import (
    RAM,
    DeviceSpec,
    Discovery,
    apply_firmware,
    discover,
    migrate_in,
    migrate_out,
    prepare,
    rom_signature,
)
from vpcid.adapters.qemu.qtest import (
    Guest,
    QemuCrashed,
    QemuError,
    QemuProcess,
    QemuUnavailable,
    read_request,
    reply_value,
    write_request,
)
from vpcid.conformance.trace import GUEST_VIEW, OK, Observation, Op, OpKind, TraceError, value_observation
from vpcid.model import Bdf, Profile
from vpcid.model.manager import CONFIG_WIDTHS, IO_WIDTHS, MAX_VM_ID, MMIO_WIDTHS

VM_ID = 1
SETTLE_TIMEOUT = 60.0
"""Longest wait for device work on its own thread (edu's factorial of 2^32-1 takes a few seconds)."""

QEMU_PROFILE = Profile.from_mapping(
    {
        "bar_move_while_decoding": "immediate",
        "overlap": "last-mapped",
        "unmapped_mmio_read": "zeros",
        "straddle": "split",
        "alignment": "any",
        "cf8_low_bits": "offset",
        "cf8_extended": "ignored",
        "cf8_after_access": "keep",
        "cf8_narrow": "read-address",
        "bar_at_top": "unmapped",
        "address_zero": "unmapped",
        "bar_sizing": "mask",
        "bridge_windows": "enforced",
        "bridge_isa": "ignored",
    }
)
"""QEMU 7.2's variants on pc and q35, as certification observes them (docs/qemu.md explains each):
``cf8_low_bits = "offset"`` and ``cf8_narrow = "read-address"`` are hw/pci/pci_host.c's
``pci_host_data_read``/``_write`` and ``pci_host_config_read``/``_write`` (R-CAM-001, R-CAM-004), with
0xCF9 the PIIX3/ICH9 reset control register (R-CAM-008); ``bar_at_top = "unmapped"`` and
``address_zero = "unmapped"`` are ``pci_bar_address`` on machines without ``pci_allow_0_address``
(R-DEC-004, R-DEC-006). Bridges: a BAR below a bridge is reached only through its windows, and the ISA
Enable bit filters nothing (pci_bridge_update_mappings maps each window whole; tests/test_qemu_bridges.py
pins both; R-BRG-006, R-BRG-011)."""

GUEST_RESETS_INERT = ["-action", "reboot=shutdown,shutdown=pause"]
"""A guest write to a reset register (0xCF9, port 0x92, the keyboard controller) only pauses the
machine, which is paused already: platform ports the suite must not use cannot wipe its state."""

POWER_ON = "vpcid-power-on"
"""The snapshot of a machine as QEMU started it, which every ``init`` loads (snapshot machines)."""
_SPACES = {
    OpKind.CONFIG_READ: "memory", OpKind.CONFIG_WRITE: "memory", OpKind.IO_READ: "io",
    OpKind.IO_WRITE: "io", OpKind.MMIO_READ: "memory", OpKind.MMIO_WRITE: "memory",
}  # fmt: skip
"""The accesses a stretch pipelines, and the qtest address space each goes to (configuration: ECAM)."""
_READS = frozenset({OpKind.CONFIG_READ, OpKind.IO_READ, OpKind.MMIO_READ})
_CONFIG = frozenset({OpKind.CONFIG_READ, OpKind.CONFIG_WRITE})


@dataclass(frozen=True)
class OpaqueRange:
    """Bytes of a BAR whose contents no declared behaviour describes: the suite must not access them."""

    bdf: Bdf
    bar: int
    offsets: range


def _fixed_machine(
    opaque: tuple[tuple[Bdf, int, range], ...], firmware: tuple[tuple[Bdf, int, int, int], ...], **fields: Any
) -> FixedMachine:
    """The machine, with its opaque BAR contents and the firmware writes the model makes too."""
    return FixedMachine(opaque=tuple(BaseOpaqueRange(*r) for r in opaque), firmware=firmware, **fields)


NO_TOPOLOGY = "not implemented: QMP query-pci lists QEMU's buses, but the adapter does not translate it yet"
"""Why the QEMU adapter does not support ``topology`` (R-BRG-010)."""


def opaque_of(machine: FixedMachine | None) -> tuple[OpaqueRange, ...]:
    """The opaque BAR contents a machine declares (``FixedMachine.opaque``), or none."""
    return tuple(getattr(machine, "opaque", ()))


@cache
def _discovery(spec: DeviceSpec) -> Discovery:
    return discover(spec)


def _profile(choice: str) -> Profile:
    """``vpcid-profile=``: QEMU's declared variants, the spec's defaults, or a manifest file."""
    if choice == "qemu":
        return QEMU_PROFILE
    if choice == "default":
        return Profile()
    try:
        return Profile.from_manifest(Path(choice).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise QemuUnavailable(f"vpcid-profile={choice}: {exc}") from None


class QemuAdapter:
    """Guest-view adapter for one QEMU PCI device model.

    ``snapshots``: whether machines are QEMU snapshots in one process (None:
    when the device's state migrates, which snapshots need).
    """

    def __init__(self, spec: DeviceSpec, *, snapshots: bool | None = None) -> None:
        self.spec = spec
        self.discovery = found = _discovery(spec.device)
        if snapshots and not found.migratable:
            raise QemuUnavailable(f"{spec.label} has no migration state: its machines cannot be snapshots")
        self.snapshots = found.migratable if snapshots is None else snapshots
        operations = set(GUEST_VIEW)
        if spec.reset:
            operations.add(OpKind.RESET_VM)
        if found.migratable and not spec.bridges:
            operations |= {OpKind.SAVE, OpKind.RESTORE}  # a save is the whole machine: one device only
        opaque = tuple((bdf, bar, offsets) for bdf, _, parts in found.bridges for bar, offsets in parts)
        self.machine = _fixed_machine(
            (*opaque, *((spec.bdf, bar, offsets) for bar, offsets in found.opaque)),
            spec.firmware,
            vm=VM_ID,
            devices=(*((bdf, dtype) for bdf, dtype, _ in found.bridges), (spec.bdf, found.dtype)),
            ecam_base=found.ecam_base,
            reserved_functions=found.reserved_functions,
            reserved_io=found.reserved_io,
            reserved_memory=found.reserved_memory,
        )
        self._info = AdapterInfo(
            name=f"qemu:{spec.label}",
            profile=_profile(spec.profile),
            operations=frozenset(operations),
            machine=self.machine,
            canonical_blobs=False,
            description=self._describe(),
            waivers=spec.waiver_file(),
            unsupported_reasons=((OpKind.TOPOLOGY, NO_TOPOLOGY),),
        )
        self._workdir = Path(tempfile.mkdtemp(prefix="vpcid-qemu-slots-"))
        self._slots: dict[str, Path] = {}
        """Slot -> migration file (process machines)."""
        self._tags: dict[str, str] = {}
        """Slot -> snapshot tag in the current QEMU (snapshot machines)."""
        self._ecam = found.ecam_base
        """The machine's ECAM window; None on pc, whose configuration accesses are not one request."""
        self._settles = spec.model == "edu"
        """Whether memory writes may start work on the device's own thread (see :meth:`_settle`)."""
        self._current: QemuProcess | None = None
        self._guest: Guest | None = None
        self._next: QemuProcess | None = None
        self.starts = 0
        self._saves = 0

    # ------------------------------------------------------------ protocol

    @property
    def info(self) -> AdapterInfo:
        return self._info

    @property
    def qemu(self) -> QemuProcess | None:
        """The QEMU process of the current machine (None before the first init and after a crash)."""
        return self._current

    def execute(self, op: Op) -> Observation:
        if op.kind not in self._info.operations:
            raise self._info.unsupported(op)
        if op.kind is OpKind.INIT:
            self._restart()
            return OK
        error = self._check(op)
        if error is not None:
            return Observation(error=error)
        guest = self._require_guest()
        try:
            return self._perform(guest, op)
        except QemuCrashed:
            self._drop_current()
            raise
        except QemuError as exc:
            self._drop_current()
            raise QemuCrashed(f"QEMU refused {op.to_json()}: {exc}") from None

    def execute_many(self, ops: Sequence[Op]) -> tuple[list[Observation], Exception | None]:
        """Perform ``ops`` in order, as :meth:`execute` would one by one, with their accesses pipelined.

        Configuration, I/O and memory accesses go to QEMU as one stream of
        qtest requests, up to the next operation that needs QEMU's answers
        first (``init``, ``save``, ``restore``, ``reset_vm``, an edu memory
        write the adapter must wait on); a write's ``OK`` and a read's value
        are collected there. QEMU performs requests in order and answers each,
        so ordering and every value are as one at a time.

        Returns the observations of the operations performed and the
        exception the first failing one raised (None if none failed), which is
        the last operation performed: a QEMU error or crash is reported on the
        operation whose request QEMU failed or died on, and the operations
        after it count as not performed. An operation of an undeclared kind
        raises :class:`TraceError`, as :meth:`execute` does. A subclass that
        overrides :meth:`_perform` (to inject faults, say) gets its hook called
        for every operation with nothing sent ahead of it.
        """
        observations: list[Observation] = []
        if type(self)._perform is not QemuAdapter._perform:
            for op in ops:
                failure = self._execute_into(op, observations)
                if failure is not None:
                    return observations, failure
            return observations, None
        requests: list[str] = []
        pending: list[tuple[int, Op]] = []
        """Per request: where its operation's observation goes, and the operation."""
        check, request, settles = self._check, self.access_request, self._settles
        one_request = frozenset(_SPACES) if self._ecam is not None else frozenset(_SPACES) - _CONFIG
        for op in ops:
            kind = op.kind
            if (
                kind in one_request
                and self._guest is not None
                and not (settles and kind is OpKind.MMIO_WRITE)
            ):
                error = check(op)
                if error is not None:
                    observations.append(Observation(error=error))
                    continue
                requests.append(request(op))
                pending.append((len(observations), op))
                observations.append(OK)
                continue
            failure = self._collect(requests, pending, observations) or self._execute_into(op, observations)
            if failure is not None:
                return observations, failure
        return observations, self._collect(requests, pending, observations)

    def _execute_into(self, op: Op, observations: list[Observation]) -> Exception | None:
        """:meth:`execute` ``op`` and append its observation; or return what it raised (not a TraceError)."""
        try:
            observations.append(self.execute(op))
        except TraceError:
            raise
        except Exception as exc:
            return exc
        return None

    def _collect(
        self, requests: list[str], pending: list[tuple[int, Op]], observations: list[Observation]
    ) -> QemuCrashed | None:
        """Send the pipelined ``requests``, put their reads' values into ``observations``; empty both lists.

        On a failure the observations from the failing request's operation on
        are removed, the machine is dropped, and the error is returned as
        :meth:`execute` would raise it for that operation.
        """
        if not requests:
            return None
        guest = self._guest
        assert guest is not None
        replies, failure = guest.qemu.qtest_stream(requests)
        for reply, (position, op) in zip(replies, pending, strict=False):
            if op.kind in _READS:
                observations[position] = value_observation(reply_value(reply))
        failed = pending[len(replies)] if failure is not None else None
        requests.clear()
        pending.clear()
        if failed is None:
            return None
        position, op = failed
        del observations[position:]
        self._drop_current()
        if isinstance(failure, QemuCrashed):
            return failure
        return QemuCrashed(f"QEMU refused {op.to_json()}: {failure}")

    def close(self) -> None:
        """Kill every QEMU this adapter started (by pid) and remove saved machine states."""
        self._drop_current()
        if self._next is not None:
            self._next.kill()
            self._next = None
        self._clear_slots()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # ------------------------------------------------------------ machines

    def _spawn(self, *, incoming: bool = False) -> QemuProcess:
        self.starts += 1
        return QemuProcess.spawn(
            [*self.spec.machine_args(), *GUEST_RESETS_INERT],
            incoming=incoming,
            ram=RAM if self.snapshots else None,
        )

    def _clear_slots(self) -> None:
        for path in self._slots.values():
            path.unlink(missing_ok=True)
        self._slots.clear()
        self._tags.clear()  # their snapshots stay in the image; the tags are reused (savevm replaces)

    def _restart(self) -> None:
        """A fresh machine at power-on."""
        self._clear_slots()
        if self.snapshots:
            self._restart_snapshot()
        else:
            self._restart_process()

    def _restart_process(self) -> None:
        """The pre-started QEMU, with the next one starting behind it."""
        self._drop_current()
        qemu = self._next if self._next is not None and self._next.alive() else self._spawn()
        self._next = None
        try:
            guest = prepare(qemu)
        except QemuError:
            qemu.kill()
            qemu = self._spawn()
            guest = prepare(qemu)
        apply_firmware(guest, self.spec.firmware)
        self._current, self._guest = qemu, guest
        self._next = self._spawn()

    def _restart_snapshot(self) -> None:
        """``loadvm`` of the power-on snapshot; a new QEMU (and its power-on snapshot) when there is none."""
        qemu = self._current
        if qemu is not None and qemu.alive():
            try:
                qemu.load_snapshot(POWER_ON)
                self._guest = prepare(qemu)
                apply_firmware(self._guest, self.spec.firmware)
                return
            except QemuError:
                pass  # a new QEMU, below
        self._drop_current()
        qemu = self._spawn()
        try:
            qemu.connect()
            qemu.enable_snapshots()
            qemu.save_snapshot(POWER_ON)
            qemu.load_snapshot(POWER_ON)  # every init, this first one too, is a load of the power-on state
            self._current, self._guest = qemu, prepare(qemu)
            apply_firmware(self._guest, self.spec.firmware)
        except QemuError:
            qemu.kill()
            raise

    def _drop_current(self) -> None:
        if self._current is not None:
            self._current.kill()
        self._current = self._guest = None
        self._tags.clear()

    def _require_guest(self) -> Guest:
        if self._guest is None:
            raise QemuCrashed("no QEMU is running (it died earlier; the next init starts one)")
        return self._guest

    # ------------------------------------------------------------ checks

    def _check(self, op: Op) -> str | None:
        """The model's argument checks, in R-ERR-002's order; the error kind or None."""
        if op.kind is OpKind.RESTORE and op.name and op.name not in self._slots and op.name not in self._tags:
            return "empty-slot"  # the reference adapter loads the slot before the model checks anything
        if type(op.vm) is not int or not 0 <= op.vm <= MAX_VM_ID:
            return "invalid-argument"
        if op.vm != VM_ID:
            return "unknown-vm"
        kind = op.kind
        if kind in (OpKind.CONFIG_READ, OpKind.CONFIG_WRITE):
            if type(op.width) is not int or op.width not in CONFIG_WIDTHS:
                return "bad-width"
            if type(op.address) is not int or not 0 <= op.address <= 0xFFF:
                return "invalid-argument"
            if op.address % 4 + op.width > 4:
                return "misaligned"
        elif kind in (OpKind.IO_READ, OpKind.IO_WRITE, OpKind.MMIO_READ, OpKind.MMIO_WRITE):
            io = kind in (OpKind.IO_READ, OpKind.IO_WRITE)
            widths, limit = (IO_WIDTHS, 1 << 16) if io else (MMIO_WIDTHS, 1 << 64)
            if type(op.width) is not int or op.width not in widths:
                return "bad-width"
            if type(op.address) is not int or not 0 <= op.address <= limit - op.width:
                return "invalid-argument"
            if self._info.profile.alignment.value == "natural" and op.address % op.width:
                return "misaligned"
        elif kind in (OpKind.SAVE, OpKind.RESTORE) and op.bdf != self.spec.bdf:
            return "unknown-device"
        if kind in (OpKind.CONFIG_WRITE, OpKind.IO_WRITE, OpKind.MMIO_WRITE) and (
            type(op.value) is not int or not 0 <= op.value < 1 << (8 * op.width)
        ):
            return "invalid-argument"
        return None

    # ------------------------------------------------------------ operations

    def access_request(self, op: Op) -> str:
        """The qtest request a configuration (ECAM), I/O or memory access with checked arguments becomes."""
        kind, address = op.kind, op.address
        if kind in _CONFIG:
            assert op.bdf is not None
            assert self._ecam is not None
            address += self._ecam + (op.bdf.packed << 12)
        if kind in _READS:
            return read_request(_SPACES[kind], address, op.width)
        return write_request(_SPACES[kind], address, op.width, op.value)

    def _perform(self, guest: Guest, op: Op) -> Observation:
        kind = op.kind
        if kind in _CONFIG and self._ecam is None:  # pc: 0xCF8/0xCFC, 0xCF8 put back
            assert op.bdf is not None
            if kind is OpKind.CONFIG_READ:
                return value_observation(guest.config_read(op.bdf.packed, op.address, op.width))
            guest.config_write(op.bdf.packed, op.address, op.width, op.value)
        elif kind in _SPACES:
            reply = guest.qemu.qtest([self.access_request(op)])[0]
            if kind in _READS:
                return value_observation(reply_value(reply))
            self._settle(guest, _SPACES[kind], op.address, op.width)
        elif kind is OpKind.RESET_VM:
            self._reset_vm(guest)
        elif kind is OpKind.SAVE:
            return self._save(guest, op.name)
        elif kind is OpKind.RESTORE:
            if not op.name:
                raise TraceError("the QEMU adapter restores only from slots it saved (no literal blobs)")
            self._restore(guest, op.name)
        return OK

    def _settle(self, guest: Guest, space: str, address: int, width: int) -> None:
        """Wait for work a device does on its own thread after a write (edu's factorial)."""
        if not self._settles or space != "memory":
            return
        packed = self.spec.bdf.packed
        command, bar0 = guest.config_batch(packed, [(0x04, 2, None), (0x10, 4, None)])
        base = bar0 & 0xFFFF_FFF0
        if not command & 0x2 or not base or not (address < base + 0x0C and base + 0x08 < address + width):
            return
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while guest.mmio_read(base + 0x20, 4) & 0x1:
            if time.monotonic() > deadline:
                raise QemuCrashed(f"edu's factorial thread did not finish within {SETTLE_TIMEOUT:.0f} s")

    def _reset_vm(self, guest: Guest) -> None:
        """QMP system_reset (guest-initiated resets are made inert, so allow this one), then open ECAM."""
        qemu = guest.qemu
        qemu.qmp("set-action", reboot="reset")
        qemu.qmp("system_reset")
        qemu.wait_event("RESET")
        qemu.qmp("set-action", reboot="shutdown")
        cf8 = guest.io_read(0xCF8, 4)
        prepare(qemu)
        guest.io_write(0xCF8, 4, cf8)

    def _save(self, guest: Guest, slot: str) -> Observation:
        """Save the paused machine into ``slot``; continue in the state loaded back from it.

        Snapshot machines: ``savevm`` into the slot's snapshot, then ``loadvm``
        of it; a snapshot has no blob, so the save observes no digest.
        Process machines: QMP ``migrate`` to a file, continued in a new QEMU
        that loads the file (QEMU refuses a second migration from a machine
        paused by the first); the digest is the file's SHA-256.
        """
        if self.snapshots:
            tag = self._tags.get(slot) or f"vpcid-slot-{len(self._tags)}"
            guest.qemu.save_snapshot(tag)
            self._tags[slot] = tag
            self._load(guest, tag)
            return OK
        self._saves += 1
        path = self._workdir / f"save-{self._saves}.mig"
        migrate_out(guest.qemu, path)
        old = self._slots.get(slot)
        self._slots[slot] = path
        if old is not None:
            old.unlink(missing_ok=True)
        self._restore_file(guest, path)
        return Observation(digest=hashlib.sha256(path.read_bytes()).hexdigest())

    def _restore(self, guest: Guest, slot: str) -> None:
        if self.snapshots:
            self._load(guest, self._tags[slot])
        else:
            self._restore_file(guest, self._slots[slot])

    def _load(self, guest: Guest, tag: str) -> None:
        """``loadvm`` of a slot's snapshot into the running QEMU; ECAM opened, 0xCF8 kept."""
        cf8 = guest.io_read(0xCF8, 4)
        try:
            guest.qemu.load_snapshot(tag)
            restored = prepare(guest.qemu)
            restored.io_write(0xCF8, 4, cf8)
        except QemuError as exc:
            raise QemuCrashed(f"restoring snapshot {tag}: {exc}") from None
        self._guest = restored

    def _restore_file(self, guest: Guest, path: Path) -> None:
        cf8 = guest.io_read(0xCF8, 4)
        target = self._spawn(incoming=True)
        try:
            target.connect()
            migrate_in(target, path)
            restored = prepare(target)
            restored.io_write(0xCF8, 4, cf8)
        except QemuError as exc:
            target.kill()
            raise QemuCrashed(f"restoring {path.name}: {exc}") from None
        self._drop_current()
        self._current, self._guest = target, restored

    # ------------------------------------------------------------ description

    def _describe(self) -> str:
        found = self.discovery
        dtype = found.dtype
        bars = ", ".join(
            f"BAR{i} {bar.kind.value} {bar.size:#x}{' prefetchable' if bar.prefetchable else ''}"
            for i, bar in enumerate(dtype.bars)
            if bar is not None
        )
        caps = ", ".join(
            f"{e.cap_id:#x}{' (extended)' if e.extended else ''} at {e.offset:#x}" for e in dtype.chain
        )
        opaque = "; ".join(
            f"BAR{o.bar} [{o.offsets.start:#x}, {o.offsets.stop:#x})" for o in opaque_of(self.machine)
        )
        honoured = "opaque" in FixedMachine.__dataclass_fields__
        parts = [
            f"QEMU {found.version} device model {self.spec.label} at {self.spec.bdf} of a paused "
            f"{self.spec.machine} machine, {dtype.vendor_id:04x}:{dtype.device_id:04x} "
            f"class {dtype.class_code:06x}" + (", PCI Express" if dtype.express else ""),
            f"BARs: {bars or 'none'}; ROM: {rom_signature(dtype.rom)}; capabilities: {caps or 'none'}",
            f"migration: {'yes (save/restore through QMP migrate)' if found.migratable else 'no state'}",
            f"opaque BAR contents (not accessed): {opaque or 'none'}"
            + ("" if honoured or not opaque else " - this suite does not honour FixedMachine.opaque yet"),
            "QEMU's variants and deviations: docs/qemu.md",
        ]
        if found.bridges:
            chain = " -> ".join(f"{dtype.name} at {bdf}" for bdf, dtype, _ in found.bridges)
            parts.insert(
                1,
                f"below {chain}, numbered and with windows opened at every init as firmware would "
                "(FixedMachine.firmware); no save/restore (a QEMU save is the whole machine)",
            )
        parts += [f"discovery: {note}" for note in found.notes]
        return ". ".join(parts)


def adapter(argument: str | None) -> QemuAdapter:
    """Factory for ``--adapter qemu:DEVICE[,option=value...]``."""
    try:
        spec = DeviceSpec.parse(argument)
        return QemuAdapter(spec)
    except QemuUnavailable as exc:
        raise AdapterUnavailable(str(exc)) from None
