"""The QEMU adapter: one of QEMU's own PCI device models, certified through qtest.

``--adapter qemu:DEVICE[,option=value...]`` (for example ``qemu:edu``,
``qemu:e1000``, ``qemu:pci-testdev,membar=1M``) discovers the device's
layout (:mod:`vpcid.adapters.qemu.discover`), then presents the suite a
fixed machine: VM 1 with the device at 00:04.0 of a q35 machine whose ECAM
window is at 0xB0000000. Every ``init`` starts a fresh QEMU (paused, so no
firmware runs; the next one is already starting while the current one
works). Operations become qtest requests:

- ``config_read``/``config_write``: an ECAM ``read``/``write`` of the
  function's configuration space (0xCF8 is never disturbed);
- ``io_*``: ``in``/``out``; ``mmio_*``: ``readb``..``readq``/``writeb``..``writeq``;
- ``reset_vm``: QMP ``system_reset``, then the firmware's one step (open
  ECAM), keeping whatever 0xCF8 QEMU kept;
- ``save``/``restore`` (only for devices with migration state): QMP
  ``migrate`` of the paused machine to a file, and a new QEMU loading it
  with ``-incoming defer``; 0xCF8, a platform register outside the
  instance's blob, carries over from the machine being restored into.

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
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from vpcid.adapters.base import AdapterInfo, AdapterUnavailable, FixedMachine
from vpcid.adapters.qemu.discover import (
    ECAM_BASE,
    DeviceSpec,
    Discovery,
    discover,
    migrate_in,
    migrate_out,
    prepare,
    rom_signature,
)
from vpcid.adapters.qemu.qtest import Guest, QemuCrashed, QemuError, QemuProcess, QemuUnavailable
from vpcid.conformance.trace import GUEST_VIEW, OK, Observation, Op, OpKind, TraceError
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
        "cf8_low_bits": "latched",
        "cf8_extended": "ignored",
        "cf8_after_access": "keep",
    }
)
"""QEMU 7.2's variants, as certification observes them (docs/qemu.md explains each)."""

GUEST_RESETS_INERT = ["-action", "reboot=shutdown,shutdown=pause"]
"""A guest write to a reset register (0xCF9, port 0x92, the keyboard controller) only pauses the
machine, which is paused already: platform ports the suite must not use cannot wipe its state."""


@dataclass(frozen=True)
class OpaqueRange:
    """Bytes of a BAR whose contents no declared behaviour describes: the suite must not access them."""

    bdf: Bdf
    bar: int
    offsets: range


@dataclass(frozen=True)
class _MachineWithOpaque(FixedMachine):
    """``FixedMachine`` plus ``opaque``, for suites that predate ``FixedMachine.opaque``."""

    opaque: tuple[Any, ...] = ()


def _fixed_machine(opaque: tuple[tuple[Bdf, int, range], ...], **fields: Any) -> FixedMachine:
    """The machine, with its opaque BAR contents in the suite's own types when it has them."""
    if "opaque" in FixedMachine.__dataclass_fields__:
        from vpcid.adapters import base

        fields["opaque"] = tuple(base.OpaqueRange(*r) for r in opaque)  # type: ignore[attr-defined,unused-ignore]
        return FixedMachine(**fields)
    return _MachineWithOpaque(opaque=tuple(OpaqueRange(*r) for r in opaque), **fields)


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
    """Guest-view adapter for one QEMU PCI device model."""

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.discovery = found = _discovery(DeviceSpec(spec.model, spec.options, spec.bdf))
        operations = set(GUEST_VIEW)
        if spec.reset:
            operations.add(OpKind.RESET_VM)
        if found.migratable:
            operations |= {OpKind.SAVE, OpKind.RESTORE}
        self.machine = _fixed_machine(
            tuple((spec.bdf, bar, offsets) for bar, offsets in found.opaque),
            vm=VM_ID,
            devices=((spec.bdf, found.dtype),),
            ecam_base=ECAM_BASE,
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
        )
        self._workdir = Path(tempfile.mkdtemp(prefix="vpcid-qemu-slots-"))
        self._slots: dict[str, Path] = {}
        self._current: QemuProcess | None = None
        self._guest: Guest | None = None
        self._next: QemuProcess | None = None
        self.starts = 0
        self._saves = 0

    # ------------------------------------------------------------ protocol

    @property
    def info(self) -> AdapterInfo:
        return self._info

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
        return QemuProcess.spawn([*self.spec.machine_args(), *GUEST_RESETS_INERT], incoming=incoming)

    def _clear_slots(self) -> None:
        for path in self._slots.values():
            path.unlink(missing_ok=True)
        self._slots.clear()

    def _restart(self) -> None:
        """A fresh machine at power-on: the pre-started QEMU, with the next one starting behind it."""
        self._drop_current()
        self._clear_slots()
        qemu = self._next if self._next is not None and self._next.alive() else self._spawn()
        self._next = None
        try:
            guest = prepare(qemu)
        except QemuError:
            qemu.kill()
            qemu = self._spawn()
            guest = prepare(qemu)
        self._current, self._guest = qemu, guest
        self._next = self._spawn()

    def _drop_current(self) -> None:
        if self._current is not None:
            self._current.kill()
        self._current = self._guest = None

    def _require_guest(self) -> Guest:
        if self._guest is None:
            raise QemuCrashed("no QEMU is running (it died earlier; the next init starts one)")
        return self._guest

    # ------------------------------------------------------------ checks

    def _check(self, op: Op) -> str | None:
        """The model's argument checks, in R-ERR-002's order; the error kind or None."""
        if op.kind is OpKind.RESTORE and op.name and op.name not in self._slots:
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

    def _perform(self, guest: Guest, op: Op) -> Observation:
        kind = op.kind
        if kind is OpKind.CONFIG_READ:
            assert op.bdf is not None
            return Observation(value=guest.config_read(op.bdf.packed, op.address, op.width))
        if kind is OpKind.CONFIG_WRITE:
            assert op.bdf is not None
            guest.config_write(op.bdf.packed, op.address, op.width, op.value)
        elif kind is OpKind.IO_READ:
            return Observation(value=guest.io_read(op.address, op.width))
        elif kind is OpKind.IO_WRITE:
            guest.io_write(op.address, op.width, op.value)
            self._settle(guest, "io", op.address, op.width)
        elif kind is OpKind.MMIO_READ:
            return Observation(value=guest.mmio_read(op.address, op.width))
        elif kind is OpKind.MMIO_WRITE:
            guest.mmio_write(op.address, op.width, op.value)
            self._settle(guest, "memory", op.address, op.width)
        elif kind is OpKind.RESET_VM:
            self._reset_vm(guest)
        elif kind is OpKind.SAVE:
            return self._save(guest, op.name)
        elif kind is OpKind.RESTORE:
            if not op.name:
                raise TraceError("the QEMU adapter restores only from slots it saved (no literal blobs)")
            self._restore(guest, self._slots[op.name])
        return OK

    def _settle(self, guest: Guest, space: str, address: int, width: int) -> None:
        """Wait for work a device does on its own thread after a write (edu's factorial)."""
        if self.spec.model != "edu" or space != "memory":
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
        """Migrate the paused machine to a file; continue in a QEMU loaded from it.

        QEMU refuses a second migration from a machine paused by the first, so
        the source is replaced by its own restored copy (0xCF8 carried over).
        """
        self._saves += 1
        path = self._workdir / f"save-{self._saves}.mig"
        migrate_out(guest.qemu, path)
        old = self._slots.get(slot)
        self._slots[slot] = path
        if old is not None:
            old.unlink(missing_ok=True)
        self._restore(guest, path)
        return Observation(digest=hashlib.sha256(path.read_bytes()).hexdigest())

    def _restore(self, guest: Guest, path: Path) -> None:
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
        caps = ", ".join(f"{c.cap_id:#04x}" for c in dtype.capabilities) or "none"
        opaque = "; ".join(
            f"BAR{o.bar} [{o.offsets.start:#x}, {o.offsets.stop:#x})" for o in opaque_of(self.machine)
        )
        honoured = "opaque" in FixedMachine.__dataclass_fields__
        parts = [
            f"QEMU {found.version} device model {self.spec.label} at {self.spec.bdf} of a paused q35 "
            f"machine, {dtype.vendor_id:04x}:{dtype.device_id:04x} class {dtype.class_code:06x}"
            + (", PCI Express" if dtype.express else ""),
            f"BARs: {bars or 'none'}; ROM: {rom_signature(dtype.rom)}; capabilities: {caps}",
            f"migration: {'yes (save/restore through QMP migrate)' if found.migratable else 'no state'}",
            f"opaque BAR contents (not accessed): {opaque or 'none'}"
            + ("" if honoured or not opaque else " - this suite does not honour FixedMachine.opaque yet"),
            "QEMU's variants and deviations: docs/qemu.md",
        ]
        parts += [f"discovery: {note}" for note in found.notes]
        return ". ".join(parts)


def adapter(argument: str | None) -> QemuAdapter:
    """Factory for ``--adapter qemu:DEVICE[,option=value...]``."""
    try:
        spec = DeviceSpec.parse(argument)
        return QemuAdapter(spec)
    except QemuUnavailable as exc:
        raise AdapterUnavailable(str(exc)) from None
