"""The KVM adapter: every guest-visible operation is executed by guest instructions on a real vCPU.

Host-side operations (``init``, VMs, hot-plug, reset, save/restore,
snapshots, tables) go straight to the data manager. Guest-visible
operations (configuration, I/O and MMIO reads and writes) are posted as a
routine to the vCPU of the KVM VM bound to the operation's VM id; the
vCPU's I/O and MMIO exits are decoded from ``kvm_run`` and dispatched into
the data manager, the reply goes back into the exit, and the value the
guest stores is the observation.

=================  ===========================================================
operation          guest instructions
=================  ===========================================================
``io_read/write``  ``in``/``out`` of the op's width at the op's port
``mmio_*``         ``mov`` of the op's width at the guest-physical address
``config_*``       mechanism #1: ``in`` 0xCF8 (save), ``out`` 0xCF8 (select),
                   ``in``/``out`` on lane 0xCFC + offset % 4, ``out`` 0xCF8
                   (restore); registers mechanism #1 cannot select (offset
                   >= 0x100 unless ``cf8_extended = "extends"``, or a lane
                   that is not width-aligned under ``alignment = "natural"``)
                   through ``mov`` in the adapter's configuration window
=================  ===========================================================

Two guest-physical ranges are the adapter's own (guest.py): its private
block (code, tables, doorbell, configuration window) and everything paging
cannot reach (at or above ``Layout.reach``). An MMIO operation that touches
either is performed by the same ``mov`` on the *aperture*: two pages of the
private block that stand in, for that one operation, for the operation's
pages; the exit's address is translated back before dispatch.

KVM splits an access that crosses a page into one exit per page; the
adapter reassembles them into the one access the instruction made (a read
is served from one data-manager read, a write is dispatched when all its
bytes are in), so byte lanes, alignment and straddling are judged on the
instruction's access, as the specification defines them.

Argument checks that no instruction can express (width 3, a port or
address out of range, a value wider than the access, an unknown VM) are
made before any guest code runs, in the model's order, with the model's
error kinds. Errors the data manager raises while serving an exit (e.g.
``misaligned`` under ``alignment = "natural"``) become the operation's
observation; the instruction is completed with all-ones.

Bridges (R-BRG-*) need nothing of the guest beyond this: the configuration
writes that number buses, open windows and set command and bridge control
bits are guest ``out`` instructions through 0xCF8/0xCFC (or ``mov`` in the
configuration window) like any other, so the guest enumerates as firmware
does, and a function below bridges is selected by the bus number they route
to it; the data manager behind the exits routes and forwards.

One KVM VM per VPCID VM: bound when the VM first runs guest code, returned
to a pool of parked guests when the VM is destroyed or on ``init`` (a
parked guest holds no state: all state is the data manager's).
"""

from __future__ import annotations

import errno
import importlib
import mmap
import os
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

from vpcid.adapters.base import AdapterInfo, AdapterUnavailable
from vpcid.adapters.kvm import guest as g
from vpcid.adapters.kvm.kvmapi import KVM_RUN, ExitReason, KvmError, get_errno, raw_ioctl, unavailable_reason
from vpcid.adapters.kvm.machine import Guest, GuestError, Platform
from vpcid.adapters.reference import ManagerFactory, ModelAdapter
from vpcid.conformance.trace import EXTENSIONS, FULL, INTROSPECTION, OK, Observation, Op, OpKind, TraceError
from vpcid.model import Bdf, DataManager, Profile, VpcidError
from vpcid.model.manager import MAX_VM_ID
from vpcid.model.profile import Alignment, Cf8Extended

POOL_LIMIT = 8
"""Parked guests kept for reuse; more are closed."""
_U32 = struct.Struct("<I")
_IO = struct.Struct("<BBHIQ")
_MMIO = struct.Struct("<Q8sIB")
_EXIT_IO, _EXIT_MMIO, _EXIT_HLT, _EXIT_INTR = ExitReason.IO, ExitReason.MMIO, ExitReason.HLT, ExitReason.INTR
_READS = frozenset({OpKind.CONFIG_READ, OpKind.IO_READ, OpKind.MMIO_READ})
GUEST_OPS = frozenset(
    {
        OpKind.CONFIG_READ,
        OpKind.CONFIG_WRITE,
        OpKind.IO_READ,
        OpKind.IO_WRITE,
        OpKind.MMIO_READ,
        OpKind.MMIO_WRITE,
    }
)


class _Rejected(Exception):
    """An argument no instruction can express; carries the model's error kind."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(slots=True)
class _Access:
    """The one MMIO access the posted routine makes, for translating and reassembling its exits."""

    address: int
    width: int
    write: bool
    aperture_page: int | None
    """Guest-physical page the aperture stands for, or None when the access is direct."""
    done: int = 0
    buffer: bytes = b""


class KvmAdapter:
    """Executes trace operations with guest instructions on KVM vCPUs, dispatching exits to a data manager."""

    def __init__(
        self,
        name: str = "kvm",
        profile: Profile | None = None,
        manager_factory: ManagerFactory = DataManager,
        cpl: int = 0,
        description: str = "",
    ) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise AdapterUnavailable(reason)
        try:
            self._platform = Platform(cpl)
        except (OSError, KvmError) as exc:
            raise AdapterUnavailable(f"KVM cannot run the guest: {exc}") from None
        self.layout = self._platform.layout
        try:
            self._host = ModelAdapter(name, profile, manager_factory=manager_factory)
        except BaseException:
            self._platform.close()
            raise
        self._info = AdapterInfo(
            name,
            self._host.info.profile,
            FULL | EXTENSIONS | INTROSPECTION,
            None,
            description=description or f"real vCPUs execute every guest access (KVM, CPL{cpl})",
        )
        self._guests: dict[int, Guest] = {}
        self._pool: list[Guest] = []
        self.stats: Counter[str] = Counter()
        """Exits by kind, aperture and configuration-window uses, guest faults, guests created."""
        self._pending_error: VpcidError | None = None
        self._access: _Access | None = None
        profile_ = self._info.profile
        self._natural = profile_.alignment is Alignment.NATURAL
        self._cf8_reach = 0x1000 if profile_.cf8_extended is Cf8Extended.EXTENDS else 0x100
        lay = self.layout
        self._doorbell = lay.base + g.DOORBELL
        self._private = lay.base
        self._reach = lay.reach
        self._routines = {
            (kind, write, width): g.routine(lay, routine, width)
            for kind, write, routine, widths in (
                ("io", False, g.Routine.IO_READ, (1, 2, 4)),
                ("io", True, g.Routine.IO_WRITE, (1, 2, 4)),
                ("mem", False, g.Routine.MEM_READ, (1, 2, 4, 8)),
                ("mem", True, g.Routine.MEM_WRITE, (1, 2, 4, 8)),
                ("cf8", False, g.Routine.CF8_READ, (1, 2, 4)),
                ("cf8", True, g.Routine.CF8_WRITE, (1, 2, 4)),
            )
            for width in widths
        }

    # ------------------------------------------------------------ protocol
    @property
    def info(self) -> AdapterInfo:
        return self._info

    @property
    def manager(self) -> DataManager:
        """The data manager the exits are dispatched into."""
        return self._host.manager

    def execute(self, op: Op) -> Observation:
        kind = op.kind
        if kind not in GUEST_OPS:
            observation = self._host.execute(op)
            if kind is OpKind.INIT:
                for vm in list(self._guests):
                    self._release(vm)
            elif kind is OpKind.DESTROY_VM and observation.error is None:
                self._release(op.vm)
            return observation
        try:
            return self._guest_op(op)
        except _Rejected as rejected:
            return Observation(error=rejected.kind)

    def close(self) -> None:
        for guest in [*self._guests.values(), *self._pool]:
            guest.close()
        self._guests.clear()
        self._pool.clear()
        self._platform.close()
        self._host.close()

    # ------------------------------------------------------------ guests
    def guest(self, vm: int) -> Guest:
        """The KVM guest bound to VM ``vm`` (bound now if it has none)."""
        guest = self._guests.get(vm)
        if guest is None:
            if self._pool:
                guest = self._pool.pop()
            else:
                guest = self._platform.guest()
                self.stats["guests created"] += 1
            self._guests[vm] = guest
        return guest

    def _release(self, vm: int) -> None:
        guest = self._guests.pop(vm, None)
        if guest is not None:
            if len(self._pool) < POOL_LIMIT:
                self._pool.append(guest)
            else:
                guest.close()

    def _discard(self, vm: int) -> None:
        """Close the guest of ``vm`` (triple fault, unexpected exit); the next op gets a new one."""
        guest = self._guests.pop(vm, None)
        if guest is not None:
            guest.close()

    # ------------------------------------------------------------ validation
    def _check_vm(self, vm: int) -> None:
        if type(vm) is not int or not 0 <= vm <= MAX_VM_ID:
            raise _Rejected("invalid-argument")
        if vm not in self._host.manager.vm_ids():
            raise _Rejected("unknown-vm")

    def _check_value(self, op: Op, space_aligned: bool) -> None:
        """A written value must fit the width; the model checks alignment first (R-ACC-002, R-ACC-008)."""
        value = op.value
        if type(value) is not int or not 0 <= value < 1 << (8 * op.width):
            raise _Rejected("invalid-argument" if space_aligned else "misaligned")

    def _check_space(self, op: Op, widths: tuple[int, ...], limit: int) -> None:
        width, address = op.width, op.address
        if type(width) is not int or width not in widths:
            raise _Rejected("bad-width")
        if type(address) is not int or not 0 <= address <= limit - width:
            raise _Rejected("invalid-argument")
        if op.kind in (OpKind.IO_WRITE, OpKind.MMIO_WRITE):
            self._check_value(op, not (self._natural and address % width))

    # ------------------------------------------------------------ guest operations
    def _guest_op(self, op: Op) -> Observation:
        kind, vm, width = op.kind, op.vm, op.width
        self._check_vm(vm)
        write = kind not in _READS
        access: _Access | None = None
        if kind is OpKind.CONFIG_READ or kind is OpKind.CONFIG_WRITE:
            bdf = op.bdf
            if bdf is None:
                raise TraceError(f"{kind.value} needs a bdf")
            offset = op.address
            if type(width) is not int or width not in (1, 2, 4):
                raise _Rejected("bad-width")
            if type(offset) is not int or not 0 <= offset <= 0xFFF:
                raise _Rejected("invalid-argument")
            if offset % 4 + width > 4:
                raise _Rejected("misaligned")
            if write:
                self._check_value(op, True)
            lane = offset % 4
            if offset < self._cf8_reach and not (self._natural and lane % width):
                cf8 = 0x8000_0000 | bdf.packed << 8 | (offset & 0xFC) | (offset >> 8) << 24
                template = self._routines[("cf8", write, width)]
                code = template.patched(cf8=cf8, lane=0xFC + lane, **({"value": op.value} if write else {}))
            else:  # the adapter's configuration window: ECAM layout, decoded as a direct access
                self.stats["configuration window"] += 1
                target = self.layout.va(g.CONFIG_WINDOW + (bdf.packed << 12) + offset)
                template = self._routines[("mem", write, width)]
                code = template.patched(address=target, **({"value": op.value} if write else {}))
        elif kind is OpKind.IO_READ or kind is OpKind.IO_WRITE:
            self._check_space(op, (1, 2, 4), 1 << 16)
            template = self._routines[("io", write, width)]
            code = template.patched(address=op.address, **({"value": op.value} if write else {}))
        else:
            self._check_space(op, (1, 2, 4, 8), 1 << 64)
            address = op.address
            end = address + width
            if end <= self._reach and not (self._private < end and address < self._private + g.PRIVATE_SIZE):
                access = _Access(address, width, write, None)
                target = g.canonical(address)
            else:  # private or unreachable: the aperture stands in for the op's page(s)
                self.stats["aperture"] += 1
                access = _Access(address, width, write, address & ~0xFFF)
                target = self.layout.va(g.APERTURE + (address & 0xFFF))
            template = self._routines[("mem", write, width)]
            code = template.patched(address=target, **({"value": op.value} if write else {}))
        guest = self.guest(vm)
        guest.post(code)
        try:
            self._run(guest, vm, access)
        except GuestError:
            raise
        except BaseException:  # a failure while serving an exit: the vCPU is mid-instruction
            self._pending_error = None
            self._discard(vm)
            raise
        error = self._pending_error
        if error is not None:
            self._pending_error = None
            return Observation(error=error.kind)
        return Observation(value=guest.result(width)) if not write else OK

    def run_code(self, vm: int, code: bytes) -> None:
        """Run raw guest code from the op slot's body until it returns to the doorbell (``jmp slot``).

        Every exit is dispatched into the data manager as it comes, without
        reassembly. For tests and diagnostics: faults raise :class:`GuestError`.
        """
        self._check_vm(vm)
        guest = self.guest(vm)
        guest.post(code)
        self._run(guest, vm, None)
        self._pending_error = None

    def serve(self, vm: int, routine: g.Routine, address: int, exits: int, width: int = 4) -> None:
        """Post an endless access loop (benchmark) and serve ``exits`` of its exits; then reset the guest."""
        self._check_vm(vm)
        guest = self.guest(vm)
        guest.post(g.routine(self.layout, routine, width).patched(address=g.canonical(address)))
        try:
            self._run(guest, vm, None, exits)
        finally:
            self._pending_error = None
            guest.reset()

    # ------------------------------------------------------------ the exit loop
    def _run(self, guest: Guest, vm: int, access: _Access | None, limit: int = 0) -> None:
        """Resume the vCPU and serve its exits until the doorbell (or ``limit`` exits, if set)."""
        manager = self._host.manager
        fd = guest.vcpu.fd
        run = guest.vcpu.run_map
        ioctl = raw_ioctl
        u32, io_exit, mmio_exit = _U32.unpack_from, _IO.unpack_from, _MMIO.unpack_from
        doorbell, private = self._doorbell, self._private
        self._access = access
        served = 0
        while True:
            if ioctl(fd, KVM_RUN, 0) < 0:
                code = get_errno()
                if code == errno.EINTR:
                    continue
                self._fail(vm, guest, f"KVM_RUN failed: {os.strerror(code)}", discard=True)
            reason = u32(run, 8)[0]
            if reason == _EXIT_IO:
                direction, size, port, count, offset = io_exit(run, 32)
                if count != 1:
                    self._fail(vm, guest, guest.describe_exit(reason), discard=True)
                if direction:
                    value = int.from_bytes(run[offset : offset + size], "little")
                    self._write(manager.io_write, vm, port, size, value)
                else:
                    run[offset : offset + size] = self._read(size, manager.io_read, vm, port, size)
            elif reason == _EXIT_MMIO:
                phys, data, length, is_write = mmio_exit(run, 32)
                if phys == doorbell:
                    if limit:
                        self._fail(vm, guest, "the guest loop reached its doorbell", discard=False)
                    return
                if private <= phys < private + g.PRIVATE_SIZE:
                    self._private_exit(vm, guest, phys - private, length, is_write, data, run)
                elif access is not None:
                    self._mmio_access(vm, guest, phys, length, is_write, data, run)
                elif is_write:
                    self._write(manager.mmio_write, vm, phys, length, int.from_bytes(data[:length], "little"))
                else:
                    run[40 : 40 + length] = self._read(length, manager.mmio_read, vm, phys, length)
            elif reason == _EXIT_INTR:
                continue
            elif reason == _EXIT_HLT:
                self.stats["guest faults"] += 1
                self._fail(vm, guest, guest.describe_fault(), discard=False)
            else:
                self._fail(vm, guest, guest.describe_exit(reason), discard=True)
            if limit:
                served += 1
                if served >= limit:
                    return

    def _fail(self, vm: int, guest: Guest, what: str, discard: bool) -> NoReturn:
        """End the operation with a GuestError; leave a usable guest for the next one."""
        self._pending_error = None
        self._access = None
        if discard:
            self._discard(vm)
            raise GuestError(f"VM {vm}: {what}; the KVM VM was replaced")
        try:
            guest.reset()
        except (GuestError, KvmError):
            self._discard(vm)
        raise GuestError(f"VM {vm}: {what}")

    def _private_exit(
        self, vm: int, guest: Guest, offset: int, length: int, is_write: int, data: bytes, run: mmap.mmap
    ) -> None:
        """An exit in the private block: the aperture or the configuration window."""
        manager = self._host.manager
        access = self._access
        if g.APERTURE <= offset < g.APERTURE + g.APERTURE_SIZE and access is not None:
            assert access.aperture_page is not None
            self._mmio_access(
                vm, guest, access.aperture_page + offset - g.APERTURE, length, is_write, data, run
            )
        elif g.CONFIG_WINDOW <= offset < g.CONFIG_WINDOW + g.CONFIG_WINDOW_SIZE:
            rel = offset - g.CONFIG_WINDOW
            bdf = Bdf.unpack(rel >> 12)
            if is_write:
                value = int.from_bytes(data[:length], "little")
                self._write(manager.config_write, vm, bdf, rel & 0xFFF, length, value)
            else:
                run[40 : 40 + length] = self._read(length, manager.config_read, vm, bdf, rel & 0xFFF, length)
        else:
            kind = "write" if is_write else "read"
            self._fail(
                vm, guest, f"unexpected MMIO {kind} in the adapter's private block at +{offset:#x}", True
            )

    def _write(self, call: Callable[..., None], *args: Any) -> None:
        """A write an exit asks of the model; its error is kept for the operation (the first one wins)."""
        try:
            call(*args)
        except VpcidError as exc:
            self._pending_error = self._pending_error or exc

    def _read(self, width: int, call: Callable[..., int], *args: Any) -> bytes:
        """A read an exit asks of the model, as ``width`` bytes; on an error (kept as by ``_write``), ones."""
        try:
            return call(*args).to_bytes(width, "little")
        except VpcidError as exc:
            self._pending_error = self._pending_error or exc
            return b"\xff" * width

    def _mmio_access(
        self, vm: int, guest: Guest, address: int, length: int, is_write: int, data: bytes, run: mmap.mmap
    ) -> None:
        """One exit of the posted MMIO access: dispatch it whole, or reassemble the pieces KVM made of it."""
        access = self._access
        assert access is not None
        manager = self._host.manager
        if address != access.address + access.done or access.done + length > access.width:
            what = f"{'write' if is_write else 'read'} {address:#x}+{length}"
            expected = f"{access.address + access.done:#x}+{access.width - access.done}"
            self._fail(vm, guest, f"MMIO exit {what} does not continue the access {expected}", True)
        if is_write:
            access.buffer += data[:length]
            access.done += length
            if access.done == access.width:
                value = int.from_bytes(access.buffer, "little")
                self._write(manager.mmio_write, vm, access.address, access.width, value)
            return
        if access.done == 0:
            access.buffer = self._read(access.width, manager.mmio_read, vm, access.address, access.width)
        if length != access.width:
            self.stats["split accesses"] += access.done == 0
        run[40 : 40 + length] = access.buffer[access.done : access.done + length]
        access.done += length


# ------------------------------------------------------------------ factories
def _cython_manager() -> ManagerFactory:
    """The Cython backend's data manager (``vpcid.adapters.cython.Manager``); AdapterUnavailable if none."""
    try:
        module = importlib.import_module("vpcid.adapters.cython")
    except ImportError as exc:
        raise AdapterUnavailable(f"the Cython backend is not importable: {exc}") from None
    reason = getattr(module, "UNAVAILABLE_REASON", None)
    if reason:
        raise AdapterUnavailable(f"the Cython backend is unavailable: {reason}")
    factory = getattr(module, "Manager", None)
    if not callable(factory):
        raise AdapterUnavailable("vpcid.adapters.cython has no Manager (the data-manager API)")
    return cast(ManagerFactory, factory)


def _parse(argument: str | None) -> tuple[Profile | None, str, int]:
    """``[PROFILE-MANIFEST][,manager=reference|cython][,cpl=0|3]`` (comma-separated, any order)."""
    profile: Profile | None = None
    manager, cpl = "reference", 0
    for item in filter(None, (argument or "").split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            profile = Profile.from_manifest(Path(item).read_text(encoding="utf-8"))
        elif key == "profile":
            profile = Profile.from_manifest(Path(value).read_text(encoding="utf-8"))
        elif key == "manager" and value in ("reference", "cython"):
            manager = value
        elif key == "cpl" and value in ("0", "3"):
            cpl = int(value)
        else:
            raise AdapterUnavailable(f"kvm adapter: unknown argument {item!r} (profile path, manager=, cpl=)")
    return profile, manager, cpl


def adapter(argument: str | None) -> KvmAdapter:
    """Factory for ``--adapter kvm[:ARG]``; ARG as in :func:`_parse`."""
    profile, manager, cpl = _parse(argument)
    if manager == "cython":
        return KvmAdapter("kvm+cython", profile, _cython_manager(), cpl)
    return KvmAdapter("kvm", profile, DataManager, cpl)


def adapter_cython(argument: str | None) -> KvmAdapter:
    """Factory for ``--adapter kvm+cython[:ARG]``: the Cython backend behind the vCPU."""
    profile, _, cpl = _parse(argument)
    return KvmAdapter("kvm+cython", profile, _cython_manager(), cpl)
