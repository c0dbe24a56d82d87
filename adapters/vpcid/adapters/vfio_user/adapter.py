"""The vfio-user client adapter: a thin VMM that shows the suite a guest's view of vfio-user devices.

vfio-user has no PCI bus, no 0xCF8 and no ECAM on the wire; a VMM provides
them. This adapter is that VMM, and only that:

- **configuration space** goes to region 7 of the device at the addressed
  BDF, byte for byte; the server implements its semantics (masks, RW1C,
  BAR sizing). The VMM's host bridge answers for what no device covers:
  absent functions and offsets past a function's configuration space read
  all ones, writes there are dropped (R-ACC-006, R-CFG-009);
- **0xCF8/0xCFC and ECAM** are the host bridge, emulated here (latch 0xCF8,
  turn data accesses into configuration accesses of the selected BDF);
- **BAR routing** is the VMM's job in vfio-user: after every configuration
  write that touches the command register, a BAR or the ROM BAR, after a
  reset and after a restore, the adapter reads those registers back from the
  device (one REGION_READ of 0x04-0x33), decides which BARs decode where,
  and sends each run of a guest I/O or MMIO access that hits a BAR as a
  REGION_READ/WRITE of that BAR's region at the offset from its base. BAR
  sizes come from DEVICE_GET_REGION_INFO, BAR kinds from the type bits;
- **reset** is DEVICE_RESET, checked: a writable or RW1C bit that is not
  at its power-on value afterwards is observed as ``reset-incomplete``
  (R-RST-001); **init** reconnects failed connections, resets, and writes
  back what a reset left, so every trace starts from a checked state;
  **save** is migration v2 (STOP_COPY, MIG_DATA_READ until a short read,
  back to RUNNING); **restore** is RESUMING, MIG_DATA_WRITE, RUNNING. With
  a migration peer (``PRIMARY+PEER``) a restore goes into the other server
  and the guest continues there: every restore is a migration between two
  server instances;
- a server's **error reply** to a guest access is observed as ``rejected``;
  a **protocol violation** or a vanished server makes the operation diverge
  (:class:`ServerFailed`) and never escapes as a traceback.

The device type of each device is discovered through the client
(:func:`vpcid.conformance.discovery.discover_type`, the suite's one
discovery: identity, BARs, ROM, every byte's masks). When a suite type is
consistent with what was discovered, that type (and its BAR behaviour) is
used; otherwise the discovered type is, with every BAR's contents opaque
(the suite checks their registers and decode, never their contents) and
its notes in the description. ``@TYPE`` names a suite type instead,
``@FILE`` takes the type from a device-type file (``@FILE#NAME`` for a file
of several types), opaque ranges included. When the migration stream is a
vpcid data blob the adapter declares canonical blobs and the suite compares
save digests.

Argument (after ``vfio-user:``), comma-separated items:
``SOCKET[+PEER][@TYPE|@FILE[#NAME]]`` for each device (guest BDFs 00:02.0,
00:03.0, ...), ``spawn[=TYPE[+TYPE...]]`` to start two vpcid servers for the
given types (default kitchen-sink) and use the second as migration peer,
``profile=MANIFEST`` for the declared variant profile, ``migration=off`` to
certify without migration: no migration message is sent, not even the probe
(for a server that cannot take one, such as libvfio-user's gpio sample, which
aborts on a MIG_DATA_READ that is not exactly its state's size), and save and
restore are not offered (``migration=auto``, the default, probes each device
and uses migration when every probe passes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vpcid.adapters.base import AdapterInfo, AdapterUnavailable, FixedMachine, OpaqueRange, load_slot
from vpcid.adapters.vfio_user.client import RegionDesc, ServerFault, VfioUserClient, VfioUserError
from vpcid.adapters.vfio_user.protocol import (
    CONFIG_REGION,
    DEVICE_FLAGS_PCI,
    DEVICE_FLAGS_RESET,
    NUM_PCI_REGIONS,
    REGION_READ_FLAG,
    REGION_WRITE_FLAG,
    ROM_REGION,
    Command,
    MigState,
    RegionAccess,
)
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.discovery import (
    ConfigAccess,
    DiscoveryError,
    bar_slots,
    consistent_with,
    describe_difference,
    discover_type,
)
from vpcid.conformance.trace import GUEST_VIEW, OK, Observation, Op, OpKind, TraceError, blob_digest
from vpcid.conformance.typefile import TypeEntry, read_type_file
from vpcid.model import (
    BadWidth,
    Bdf,
    BlobError,
    BlobMismatch,
    DeviceType,
    Misaligned,
    Profile,
    UnknownDevice,
    UnknownVm,
    VpcidError,
)
from vpcid.model import blob as blobfmt
from vpcid.model.manager import (
    DEFAULT_ECAM_BASE,
    ECAM_SIZE,
    MAX_VM_ID,
    cam_selection,
    cf8_latched,
    check_int,
    split_runs,
)
from vpcid.model.profile import (
    Alignment,
    BarMoveWhileDecoding,
    Cf8AfterAccess,
    Overlap,
    UnmappedMmioRead,
)

CF8, CFC = 0xCF8, 0xCFC
RESET_REGISTERS = ((0x04, 2), (0x0C, 1), (0x3C, 1), (0x30, 4), *((0x10 + 4 * n, 4) for n in range(6)))
"""(offset, width) of the registers whose value after a reset R-RST-001 fixes whatever the device:
command, cache line size, interrupt line, ROM BAR, BARs. Zero is written to them before discovery, so a
device whose reset leaves them behind is discovered the same way on every run."""
CMD_IO, CMD_MEM = 0x1, 0x2
ROM = 6
ROM_BAR = 0x30
ROM_WINDOW = 0xE000_0000
"""Where discovery maps a device's ROM for a moment to read it."""
REG_START, REG_END = 0x04, 0x34
"""The registers routing depends on: command (0x04), BARs (0x10-0x27), ROM BAR (0x30)."""
DECODE_FIELDS = frozenset(range(0x04, 0x06)) | frozenset(range(0x10, 0x28)) | frozenset(range(0x30, 0x34))
GUEST_VM = 1
FIRST_DEVICE = 2
"""Guest BDF 00:02.0 for the first device, 00:03.0 for the next, ..."""
SPAWN_TIMEOUT = 30.0
DEFAULT_SPAWN_TYPE = "kitchen-sink"


# --------------------------------------------------------------------------- what a server can do wrong


class AccessRejected(VpcidError):
    """The server answered a guest's access with an error reply (observed as ``rejected``).

    A VMM drops such a write or reads all ones, so the guest cannot tell;
    the suite can, and checks it against the register's requirement, which
    says what the access must do instead.
    """

    kind = "rejected"


class ResetIncomplete(VpcidError):
    """After DEVICE_RESET configuration space is not the type's power-on image (R-RST-001), observed as
    ``reset-incomplete``: the reset operation itself diverges, so the finding names the reset requirements."""

    kind = "reset-incomplete"


class ServerFailed(Exception):
    """The server broke the protocol or went away during an operation: that operation diverges (the
    engine records the message), and ``init`` reconnects before the next trace."""


# --------------------------------------------------------------------------- the guest's devices


@dataclass
class Bar:
    """One implemented BAR (0-5) or the ROM (6), as the VMM learns it from the device."""

    index: int
    io: bool
    mem64: bool
    size: int
    readable: bool
    writable: bool

    @property
    def limit(self) -> int:
        if self.index == ROM:
            return 1 << 32
        if self.io:
            return 1 << 16
        return 1 << 64 if self.mem64 else 1 << 32


@dataclass(eq=False)
class Window:
    """A BAR decoding in the guest's address space (the VMM's routing table entry)."""

    function: Function
    bar: int
    base: int
    end: int
    stamp: int


@dataclass(eq=False)
class Function:
    """One vfio-user device at a guest BDF, with its migration peer if any."""

    bdf: Bdf
    dtype: DeviceType
    primary: VfioUserClient
    peer: VfioUserClient | None
    config_size: int
    bars: dict[int, Bar]
    opaque: tuple[tuple[int, range], ...] = ()
    """(BAR index, offsets) whose contents the type does not describe: the suite never accesses them."""
    notes: tuple[str, ...] = ()
    """What discovery could not know or express about the device."""
    live: VfioUserClient = field(init=False)
    gone: str | None = None
    """Why the server can no longer be reached (a reconnection failed), or None."""
    regs: bytes = b""
    windows: dict[int, Window] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.live = self.primary

    def links(self) -> tuple[VfioUserClient, ...]:
        """The primary and, if any, the peer."""
        return (self.primary,) if self.peer is None else (self.primary, self.peer)

    def replace(self, old: VfioUserClient, new: VfioUserClient) -> None:
        """Use ``new`` wherever ``old`` was (after a reconnection)."""
        if self.primary is old:
            self.primary = new
        if self.peer is old:
            self.peer = new
        if self.live is old:
            self.live = new

    @property
    def standby(self) -> VfioUserClient:
        """Where a restore goes: the peer not in use, or the live device when there is no peer."""
        if self.peer is None:
            return self.live
        return self.peer if self.live is self.primary else self.primary

    def reg(self, regs: bytes, offset: int, width: int) -> int:
        return int.from_bytes(regs[offset - REG_START : offset - REG_START + width], "little")

    def enabled(self, index: int, regs: bytes) -> bool:
        """Whether the BAR's enable bits are set, whatever its address (R-DEC-001..R-DEC-003)."""
        command = self.reg(regs, 0x04, 2)
        if index == ROM:
            return bool(command & CMD_MEM) and bool(self.reg(regs, 0x30, 1) & 1)
        return bool(command & (CMD_IO if self.bars[index].io else CMD_MEM))

    def decode(self, index: int, regs: bytes) -> int | None:
        """Where the BAR decodes given its registers (R-DEC-001..R-DEC-006), as the VMM computes it."""
        bar = self.bars[index]
        if index == ROM:
            base = self.reg(regs, 0x30, 4) & 0xFFFF_F800
        else:
            low = self.reg(regs, 0x10 + 4 * index, 4)
            base = low & ~0x3 if bar.io else low & ~0xF
            if bar.mem64:
                base |= self.reg(regs, 0x14 + 4 * index, 4) << 32
        if not self.enabled(index, regs) or base == 0 or base + bar.size > bar.limit:
            return None
        return base


class _Platform:
    """Routing target of the host bridge's configuration windows (0xCFC-0xCFF, ECAM)."""


_WINDOW = _Platform()
Target = Window | _Platform | None


# --------------------------------------------------------------------------- the adapter


class VfioUserAdapter:
    """Guest view of vfio-user devices through a thin VMM (see the module docstring)."""

    def __init__(
        self,
        functions: Sequence[Function],
        profile: Profile,
        *,
        migration: bool,
        canonical: bool,
        description: str,
        on_close: Callable[[], None] | None = None,
        declined: Mapping[str, str] | None = None,
    ) -> None:
        self.functions = list(functions)
        self.by_bdf = {f.bdf: f for f in self.functions}
        self.migration = migration
        """Whether migration is used; when it is not, no migration message is sent, not even by init."""
        operations = GUEST_VIEW | {OpKind.RESET, OpKind.RESET_VM}
        if migration:
            operations |= {OpKind.SAVE, OpKind.RESTORE}
        machine = FixedMachine(
            vm=GUEST_VM,
            devices=tuple((f.bdf, f.dtype) for f in self.functions),
            ecam_base=DEFAULT_ECAM_BASE,
            opaque=tuple(
                OpaqueRange(f.bdf, bar, offsets) for f in self.functions for bar, offsets in f.opaque
            ),
        )
        self._info = AdapterInfo(
            name="vfio-user",
            profile=profile,
            operations=frozenset(operations),
            machine=machine,
            canonical_blobs=canonical,
            description=description,
            declined_types=tuple((declined or {}).items()),
            unsupported_reasons=((OpKind.TOPOLOGY, NO_TOPOLOGY),),
        )
        self.profile = profile
        self.cf8 = 0
        self.slots: dict[str, bytes] = {}
        self.stamp = 1
        self.server_errors: list[str] = []
        """Error replies and failures the server gave, newest last (at most 100)."""
        self._on_close = on_close
        self._closed = False
        self._init()

    @property
    def info(self) -> AdapterInfo:
        return self._info

    # ------------------------------------------------------------------ protocol
    def execute(self, op: Op) -> Observation:
        if op.kind not in self._info.operations:
            raise self._info.unsupported(op)
        try:
            return self._perform(op)
        except VpcidError as exc:
            if isinstance(exc, TraceError):
                raise
            return Observation(error=exc.kind)
        except VfioUserError as exc:  # the server refused a reset, a save, ...: the operation is rejected
            self.server_errors.append(f"{op.kind.value}: {exc}")
            del self.server_errors[:-100]
            return Observation(error=AccessRejected.kind)
        except ServerFault as exc:
            self.server_errors.append(f"{op.kind.value}: {exc}")
            del self.server_errors[:-100]
            raise ServerFailed(str(exc)) from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for f in self.functions:
            f.primary.close()
            if f.peer is not None:
                f.peer.close()
        if self._on_close is not None:
            self._on_close()

    def _perform(self, op: Op) -> Observation:
        kind = op.kind
        if kind is OpKind.INIT:
            self._init()
        elif kind is OpKind.CONFIG_READ:
            bdf = self._bdf(op)
            self._vm(op.vm)
            self._check_config(op.address, op.width)
            return Observation(value=int.from_bytes(self._config(bdf, op.address, op.width, None), "little"))
        elif kind is OpKind.CONFIG_WRITE:
            bdf = self._bdf(op)
            self._vm(op.vm)
            self._check_config(op.address, op.width)
            check_int("value", op.value, (1 << (8 * op.width)) - 1)
            self._config(bdf, op.address, op.width, op.value.to_bytes(op.width, "little"))
        elif kind in (OpKind.IO_READ, OpKind.MMIO_READ):
            self._vm(op.vm)
            io = kind is OpKind.IO_READ
            self._check_space(op.address, op.width, io)
            got = self._io(op.address, op.width, None) if io else self._memory(op.address, op.width, None)
            return Observation(value=int.from_bytes(got, "little"))
        elif kind in (OpKind.IO_WRITE, OpKind.MMIO_WRITE):
            self._vm(op.vm)
            io = kind is OpKind.IO_WRITE
            self._check_space(op.address, op.width, io)
            check_int("value", op.value, (1 << (8 * op.width)) - 1)
            payload = op.value.to_bytes(op.width, "little")
            if io:
                self._io(op.address, op.width, payload)
            else:
                self._memory(op.address, op.width, payload)
        elif kind is OpKind.RESET:
            bdf = self._bdf(op)
            self._vm(op.vm)
            self._reset(self._function(bdf))
        elif kind is OpKind.RESET_VM:
            self._vm(op.vm)
            for f in sorted(self.functions, key=lambda f: f.bdf):
                self._reset(f)
            self.cf8 = 0
        elif kind is OpKind.SAVE:
            bdf = self._bdf(op)
            self._vm(op.vm)
            stream = self._function(bdf).live.save_stream()
            self.slots[op.name] = stream
            return Observation(digest=blob_digest(stream))
        elif kind is OpKind.RESTORE:
            bdf = self._bdf(op)
            blob = self._load(op)
            self._vm(op.vm)
            self._restore(self._function(bdf), blob)
        else:  # pragma: no cover - execute() filters by declared operations
            raise TraceError(f"{kind.value} is not supported")
        return OK

    # ------------------------------------------------------------------ argument checks (R-ERR-002)
    @staticmethod
    def _bdf(op: Op) -> Bdf:
        if op.bdf is None:
            raise TraceError(f"{op.kind.value} needs a bdf")
        return op.bdf

    def _vm(self, vm: int) -> None:
        check_int("vm_id", vm, MAX_VM_ID)
        if vm != GUEST_VM:
            raise UnknownVm(f"no VM {vm}")

    def _function(self, bdf: Bdf) -> Function:
        f = self.by_bdf.get(bdf)
        if f is None:
            raise UnknownDevice(f"no device at {bdf}")
        return f

    def _load(self, op: Op) -> bytes:
        return load_slot(self.slots, op)

    @staticmethod
    def _check_config(offset: int, width: int) -> None:
        check_int("offset", offset, 0xFFF)
        if type(width) is not int or width not in (1, 2, 4):
            raise BadWidth(f"configuration accesses are 1, 2 or 4 bytes, not {width!r}")
        if offset % 4 + width > 4:
            raise Misaligned(f"configuration access {offset:#x}+{width} crosses a dword")

    def _check_space(self, address: int, width: int, io: bool) -> None:
        widths = (1, 2, 4) if io else (1, 2, 4, 8)
        if type(width) is not int or width not in widths:
            raise BadWidth(f"{'I/O' if io else 'MMIO'} accesses are {'/'.join(map(str, widths))} bytes")
        check_int("address", address, (1 << (16 if io else 64)) - width)
        if self.profile.alignment is Alignment.NATURAL and address % width:
            raise Misaligned(f"access {address:#x}+{width} is not naturally aligned")

    # ------------------------------------------------------------------ region traffic
    def _read(self, f: Function, region: int, offset: int, length: int) -> bytes:
        try:
            return f.live.region_read(region, offset, length)
        except VfioUserError as exc:
            what = f"read region {region} {offset:#x}+{length}: {exc}"
            self._server_error(f, what)
            raise AccessRejected(what) from None

    def _write(self, f: Function, region: int, offset: int, data: bytes) -> None:
        try:
            f.live.region_write(region, offset, data)
        except VfioUserError as exc:
            what = f"write region {region} {offset:#x}+{len(data)}: {exc}"
            self._server_error(f, what)
            raise AccessRejected(what) from None

    def _server_error(self, f: Function, what: str) -> None:
        self.server_errors.append(f"{f.bdf}: {what}")
        del self.server_errors[:-100]

    # ------------------------------------------------------------------ configuration space
    def _config(self, bdf: Bdf, offset: int, length: int, payload: bytes | None) -> bytes:
        """One configuration access inside a dword: region 7 of the device, or the bridge's ones."""
        f = self.by_bdf.get(bdf)
        if f is None or offset >= f.config_size:
            return b"\xff" * length if payload is None else b""  # R-ACC-006, R-CFG-009
        if payload is None:
            return self._read(f, CONFIG_REGION, offset, length)
        try:
            self._write(f, CONFIG_REGION, offset, payload)
        finally:
            if not DECODE_FIELDS.isdisjoint(range(offset, offset + length)):
                self._rederive(f)
        return b""

    # ------------------------------------------------------------------ routing (the VMM's job)
    def _read_regs(self, f: Function) -> bytes:
        try:
            return f.live.region_read(CONFIG_REGION, REG_START, REG_END - REG_START)
        except VfioUserError as exc:
            self._server_error(f, f"read of the routing registers: {exc}")
            return bytes(REG_END - REG_START)

    def _rederive(self, f: Function) -> None:
        """After a write to a decode field: re-read the registers and move the BARs that moved."""
        before, after = f.regs, self._read_regs(f)
        f.regs = after
        deferred = self.profile.bar_move_while_decoding is BarMoveWhileDecoding.DEFERRED
        for index in sorted(f.bars):
            if deferred and f.enabled(index, before) and f.enabled(index, after):
                continue  # the window moves when decode is next enabled (R-DEC-005 deferred)
            want = f.decode(index, after)
            current = f.windows.get(index)
            if (current.base if current else None) != want:
                f.windows.pop(index, None)
                if want is not None:
                    self._map(f, index, want)

    def _remap_all(self, f: Function, windows: Sequence[int | None] | None = None) -> None:
        """After reset or restore: every window of the function from scratch, ascending BAR index."""
        f.windows.clear()
        f.regs = self._read_regs(f)
        for index in sorted(f.bars):
            want = windows[index] if windows is not None else f.decode(index, f.regs)
            if want is not None:
                self._map(f, index, want)

    def _map(self, f: Function, index: int, base: int) -> None:
        f.windows[index] = Window(f, index, base, base + f.bars[index].size, self.stamp)
        self.stamp += 1

    def _lookup(self, address: int, io: bool) -> Window | None:
        best: Window | None = None
        last_mapped = self.profile.overlap is Overlap.LAST_MAPPED
        for f in self.functions:
            for w in f.windows.values():
                if f.bars[w.bar].io != io or not w.base <= address < w.end:
                    continue
                if best is None:
                    best = w
                elif last_mapped:
                    best = w if w.stamp > best.stamp else best
                elif (f.bdf.packed, w.bar) < (best.function.bdf.packed, best.bar):
                    best = w
        return best

    def _route(
        self,
        resolve: Callable[[int], Target],
        address: int,
        width: int,
        payload: bytes | None,
        unmapped: bytes,
        platform: Callable[[int, bytes | None, int], bytes],
    ) -> bytes:
        """Split an access into runs with one target each (R-ACC-004, R-ACC-005) and perform them."""
        out = bytearray()
        for target, start, length in split_runs(resolve, address, width, self.profile.straddle):
            part = None if payload is None else payload[start - address : start - address + length]
            if target is None:
                got = unmapped * length
            elif isinstance(target, _Platform):
                got = platform(start, part, length)
            else:
                got = self._bar_access(target, start - target.base, part, length)
            if payload is None:
                out += got
        return bytes(out)

    def _bar_access(self, w: Window, offset: int, payload: bytes | None, length: int) -> bytes:
        """A run of bytes inside one BAR: REGION_READ/WRITE of its region (R-ACC-009)."""
        bar = w.function.bars[w.bar]
        if payload is None:
            return self._read(w.function, w.bar, offset, length) if bar.readable else b"\xff" * length
        if bar.writable:  # a read-only region (the ROM) ignores writes, as R-BAR-007 says
            self._write(w.function, w.bar, offset, payload)
        return b""

    # ------------------------------------------------------------------ I/O space and 0xCF8/0xCFC
    def _io(self, port: int, width: int, payload: bytes | None) -> bytes:
        if port == CF8 and width == 4:
            return self._cf8_access(payload)

        def resolve(p: int) -> Target:
            if CF8 <= p < CFC:
                return None  # R-CAM-001
            if CFC <= p < CFC + 4:
                return _WINDOW  # R-CAM-004, R-CAM-006
            return self._lookup(p, io=True)

        touched = port < CFC + 4 and port + width > CFC
        result = self._route(resolve, port, width, payload, b"\xff", self._cam_data)
        if touched and self.profile.cf8_after_access is Cf8AfterAccess.CLEAR:
            self.cf8 = 0  # R-CAM-007
        return result

    def _cf8_access(self, payload: bytes | None) -> bytes:
        if payload is None:
            return self.cf8.to_bytes(4, "little")
        self.cf8 = cf8_latched(int.from_bytes(payload, "little"), self.profile)  # R-CAM-002
        return b""

    def _cam_data(self, port: int, payload: bytes | None, length: int) -> bytes:
        selected = cam_selection(self.cf8, self.profile)
        if selected is None:
            return b"\xff" * length if payload is None else b""  # R-CAM-005
        bdf, register = selected
        return self._config(bdf, register + (port - CFC), length, payload)

    # ------------------------------------------------------------------ memory space and ECAM
    def _memory(self, address: int, width: int, payload: bytes | None) -> bytes:
        def resolve(a: int) -> Target:
            if DEFAULT_ECAM_BASE <= a < DEFAULT_ECAM_BASE + ECAM_SIZE:
                return _WINDOW  # R-ECAM-004
            return self._lookup(a, io=False)

        ones = self.profile.unmapped_mmio_read is UnmappedMmioRead.ONES
        return self._route(resolve, address, width, payload, b"\xff" if ones else b"\x00", self._ecam_data)

    def _ecam_data(self, address: int, payload: bytes | None, length: int) -> bytes:
        """ECAM bytes, one configuration access per dword they touch (R-ECAM-002, R-ECAM-003)."""
        out = bytearray()
        end = address + length
        while address < end:
            chunk = min(end, (address & ~3) + 4) - address
            rel = address - DEFAULT_ECAM_BASE
            bdf = Bdf(rel >> 20, (rel >> 15) & 0x1F, (rel >> 12) & 0x7)
            part = None if payload is None else payload[len(out) : len(out) + chunk]
            got = self._config(bdf, rel & 0xFFF, chunk, part)
            out += got if payload is None else bytes(chunk)
            address += chunk
        return bytes(out) if payload is None else b""

    # ------------------------------------------------------------------ lifecycle
    def _init(self) -> None:
        """Power-on: every device (and peer) connected, reset, running and checked to be at its
        power-on image (written back where a reset left state behind), the primary live, 0xCF8 zero."""
        self.cf8 = 0
        self.slots.clear()
        self.stamp = 1
        for f in self.functions:
            if f.gone is not None:
                raise ServerFailed(f.gone)
            for link in f.links():
                if link.broken is not None:
                    try:
                        f.replace(link, _reconnect(link))
                    except ServerFailed as exc:
                        f.gone = str(exc)  # every later init fails at once, with this reason
                        raise
            for link in f.links():
                _reset_running(link, migration=self.migration)
                _to_power_on(link, f.dtype, f.config_size)
            f.live = f.primary
            self._remap_all(f)

    def _reset(self, f: Function) -> None:
        """Function-level reset (R-RST-001, R-RST-002): DEVICE_RESET, routing from scratch, then the
        check that configuration space is the power-on image (``reset-incomplete`` otherwise)."""
        f.live.reset()
        self._remap_all(f)
        left = _left_behind(f.live, f.dtype, f.config_size)
        if left:
            raise ResetIncomplete(f"after DEVICE_RESET configuration bytes differ from power-on: {left}")

    def _restore(self, f: Function, blob: bytes) -> None:
        """Restore = migrate the stream into the standby server (or the device itself) and go on there."""
        target = f.standby
        try:
            target.restore_stream(blob)
        except VfioUserError as exc:
            _reset_running(target, reset=False)
            if exc.errno in (errno.EBADMSG, errno.E2BIG):
                raise BlobError(f"the device rejected the stream as malformed: {exc}") from None
            raise BlobMismatch(f"the device rejected the stream: {exc}") from None
        f.live = target
        windows: Sequence[int | None] | None = None
        if self.profile.bar_move_while_decoding is BarMoveWhileDecoding.DEFERRED:
            try:  # latched decode addresses travel in a vpcid blob (R-SR-009)
                windows = blobfmt.decode_instance(blob).windows
            except BlobError:
                windows = None
        self._remap_all(f, windows)


def _left_behind(link: VfioUserClient, dtype: DeviceType, config_size: int, command: bool = True) -> str:
    """The bytes whose state bits (:func:`_state_bits`) are not the type's power-on image, as
    ``0xOFF=VALUE (power-on VALUE)`` (at most 8 named), or "" when none. Other read-only bits are
    left out: they are what the device always shows, which the certification checks by reading
    them, not a reset's doing."""
    try:
        current = link.config_read(0, config_size)
    except VfioUserError as exc:
        return f"configuration space unreadable ({exc})"
    declared = dtype.declared
    image = declared.image
    wrong = [n for n in range(config_size) if (current[n] ^ image[n]) & _state_bits(dtype, n, command)]
    shown = ", ".join(f"{n:#x}={current[n]:#04x} (power-on {image[n]:#04x})" for n in wrong[:8])
    return shown + (f" and {len(wrong) - 8} more" if len(wrong) > 8 else "")


COMMAND_BYTES = (0x04, 0x05)
"""The command register: zero at power-on whatever a type lets be written (R-DT-005), so any bit set
there after a reset is state left behind - a server may set bits of a write it rejects."""


def _state_bits(dtype: DeviceType, n: int, command: bool = True) -> int:
    """The bits of configuration byte ``n`` that hold state a reset must clear: writable, RW1C, and
    (with ``command``) every command bit."""
    declared = dtype.declared
    return declared.wmask[n] | declared.w1cmask[n] | (0xFF if command and n in COMMAND_BYTES else 0)


def _to_power_on(link: VfioUserClient, dtype: DeviceType, config_size: int) -> None:
    """Write the power-on image back into the writable and RW1C bits a reset left behind, then check
    them; :class:`ServerFailed` if they do not take it.

    Each dword that needs it is written whole (its read-only bytes with what they read, which a
    device ignores), as registers such as BARs take only whole writes on some servers; where a
    server rejects that, the bytes that differ are written one by one.
    """
    current = link.config_read(0, config_size)
    declared = dtype.declared
    image = declared.image

    def wanted(n: int) -> int:
        rw1c = declared.w1cmask[n]
        writable = _state_bits(dtype, n) & ~rw1c  # the masks are disjoint: writable and command bits
        return (current[n] & ~(writable | rw1c)) | (image[n] & writable) | (current[n] & ~image[n] & rw1c)

    for dword in range(0, config_size, 4):
        stale = [n for n in range(dword, dword + 4) if (current[n] ^ image[n]) & _state_bits(dtype, n)]
        if not stale:
            continue
        try:
            link.config_write(dword, bytes(wanted(n) for n in range(dword, dword + 4)))
        except VfioUserError:
            for n in stale:
                with contextlib.suppress(VfioUserError):  # the check below tells if it mattered
                    link.config_write(n, bytes([wanted(n)]))
    left = _left_behind(link, dtype, config_size, command=False)  # read-only command bits: findings
    if left:
        raise ServerFailed(
            f"{link.path}: after a reset, and the power-on values written, the writable bits of "
            f"configuration space are not those of type {dtype.name!r}: {left}"
        )


def read_only_differences(config: bytes, dtype: DeviceType) -> str:
    """The read-only bytes where ``config`` is not ``dtype``'s power-on image ("" when none)."""
    declared = dtype.declared
    wrong = [
        n
        for n in range(min(len(config), dtype.config_size))
        if (config[n] ^ declared.image[n]) & ~(declared.wmask[n] | declared.w1cmask[n])
    ]
    shown = ", ".join(f"{n:#x}={config[n]:#04x} (type {declared.image[n]:#04x})" for n in wrong[:8])
    return shown + (f" and {len(wrong) - 8} more" if len(wrong) > 8 else "")


def _reconnect(link: VfioUserClient) -> VfioUserClient:
    """A new connection to the server behind a failed one (the server keeps the device's state)."""
    link.close()
    try:
        return VfioUserClient(link.path, connect_timeout=0.5)
    except (OSError, ServerFault) as exc:
        raise ServerFailed(f"{link.path}: cannot reconnect after '{link.broken}': {exc}") from None


def _reset_running(link: VfioUserClient, reset: bool = True, migration: bool = True) -> None:
    """Bring a device back to RUNNING (after a DEVICE_RESET unless ``reset`` is off); without
    ``migration`` (not used with this device) only the reset, no migration message."""
    if reset:
        link.reset()
    if not migration:
        return
    try:
        if link.mig_state() is not MigState.RUNNING:
            link.set_mig_state(MigState.RUNNING)
    except VfioUserError:
        pass  # a device without migration is always running


# --------------------------------------------------------------------------- building it


@dataclass(frozen=True)
class DeviceArgument:
    """One ``SOCKET[+PEER][@TYPE|@FILE[#NAME]]`` item; without ``@`` the type is discovered."""

    primary: str
    peer: str | None = None
    type_name: str | None = None
    """A suite type name, or a device-type file (``FILE`` or ``FILE#NAME``)."""


@dataclass(frozen=True)
class AdapterArgument:
    devices: tuple[DeviceArgument, ...] = ()
    spawn: tuple[str, ...] = ()
    profile_path: str | None = None
    migration: bool = True
    """Whether to probe migration and use it where it works (``migration=auto``); False: ``migration=off``."""


MIGRATION_CHOICES = {"auto": True, "off": False}
"""Values of the ``migration=`` item."""


DECLINED_BRIDGE = (
    "the vfio-user adapter declines type 1 (bridge) types: a server is one function, so nothing can "
    "sit on the bridge's secondary bus (R-BRG-001)"
)
"""Why a server presenting a type 1 header is left out of the machine."""
NO_TOPOLOGY = "a vfio-user server is one function on the adapter's bus 0: there is no bus tree to list"
"""Why the adapter does not support ``topology`` (R-BRG-010)."""


def declined_reason(dtype: DeviceType) -> str | None:
    """Why the adapter declines a device of type ``dtype`` (a bridge: :data:`DECLINED_BRIDGE`), or None."""
    return DECLINED_BRIDGE if dtype.bridge is not None else None


def parse_argument(argument: str | None) -> AdapterArgument:
    """Parse the text after ``vfio-user:`` (see the module docstring)."""
    if not argument:
        raise AdapterUnavailable("vfio-user needs SOCKET[+PEER][@TYPE], or 'spawn' to start vpcid servers")
    devices: list[DeviceArgument] = []
    spawn: tuple[str, ...] = ()
    profile: str | None = None
    migration = True
    for item in (part.strip() for part in argument.split(",")):
        if not item:
            continue
        if item == "spawn" or item.startswith("spawn="):
            names = item.partition("=")[2]
            spawn = tuple(n for n in names.split("+") if n) or (DEFAULT_SPAWN_TYPE,)
            unknown = [n for n in spawn if n not in SUITE_TYPES]
            if unknown:
                raise AdapterUnavailable(f"unknown device type(s) {', '.join(unknown)}; see 'vpcid types'")
        elif item.startswith("profile="):
            profile = item.partition("=")[2]
        elif item.startswith("migration="):
            choice = item.partition("=")[2]
            if choice not in MIGRATION_CHOICES:
                raise AdapterUnavailable(
                    f"migration={choice!r}: the choices are {', '.join(MIGRATION_CHOICES)}"
                )
            migration = MIGRATION_CHOICES[choice]
        else:
            sockets, _, type_name = item.partition("@")
            primary, _, peer = sockets.partition("+")
            if not primary:
                raise AdapterUnavailable(f"empty socket path in {item!r}")
            devices.append(DeviceArgument(primary, peer or None, type_name or None))
    if spawn and devices:
        raise AdapterUnavailable("give either socket paths or 'spawn', not both")
    if not spawn and not devices:
        raise AdapterUnavailable("no device given")
    return AdapterArgument(tuple(devices), spawn, profile, migration)


class ClientPort:
    """A vfio-user device as discovery probes it: region 7 is its configuration space, and a VMM that
    maps nothing but the ROM (region 6) where the device's ROM BAR and command register say."""

    def __init__(self, client: VfioUserClient, config_size: int, rom_size: int) -> None:
        self.client = client
        self.config_size = config_size
        self.rom_size = rom_size
        self.rejected_writes: set[int] = set()
        """Offsets of the writes the server rejected: a VMM drops them, so discovery sees no effect."""

    @property
    def label(self) -> str:
        return f"vfio-user:{self.client.path}"

    def config_batch(self, accesses: Sequence[ConfigAccess]) -> list[int]:
        """Pipelined REGION_READ/WRITE of region 7; offsets past it read all ones, writes there vanish."""
        requests: list[tuple[int, bytes]] = []
        for offset, width, value in accesses:
            if offset + width > self.config_size:
                continue
            head = RegionAccess(offset, CONFIG_REGION, width).pack()
            if value is None:
                requests.append((Command.REGION_READ, head))
            else:
                requests.append((Command.REGION_WRITE, head + value.to_bytes(width, "little")))
        try:
            replies = iter(self.client.pipeline(requests))
        except ServerFault as exc:
            raise DiscoveryError(f"{self.label}: {exc}") from None
        values: list[int] = []
        for offset, width, value in accesses:
            inside = offset + width <= self.config_size
            reply = next(replies) if inside else b""
            if isinstance(reply, VfioUserError) and value is not None:
                self.rejected_writes.add(offset)
                continue
            if isinstance(reply, VfioUserError):
                raise DiscoveryError(f"{self.label}: configuration read {offset:#x}+{width}: {reply}")
            if value is None:
                data = reply[RegionAccess.STRUCT.size :] if inside else b"\xff" * width
                if len(data) != width:
                    raise DiscoveryError(
                        f"{self.label}: REGION_READ {offset:#x}+{width} returned {len(data)} bytes"
                    )
                values.append(int.from_bytes(data, "little"))
        return values

    def rom_window(self, size: int) -> int | None:
        return ROM_WINDOW if self.rom_size else None

    def read_memory(self, address: int, length: int) -> bytes:
        """Guest memory as this VMM maps it: the ROM where it decodes, zeros elsewhere (R-BAR-007)."""
        regs = self.client.config_read(0x04, 2) + self.client.config_read(ROM_BAR, 4)
        command, rom = int.from_bytes(regs[:2], "little"), int.from_bytes(regs[2:], "little")
        base = rom & 0xFFFF_F800
        if (
            not command & CMD_MEM
            or not rom & 1
            or not base <= address
            or address + length > base + self.rom_size
        ):
            return bytes(length)
        out = bytearray()
        chunk = max(4, min(self.client.max_transfer, 1 << 16))
        try:
            for at in range(address - base, address - base + length, chunk):
                out += self.client.region_read(ROM_REGION, at, min(chunk, address - base + length - at))
        except (VfioUserError, ServerFault) as exc:
            raise DiscoveryError(f"{self.label}: ROM read: {exc}") from None
        return bytes(out)


def _type_from_file(text: str) -> TypeEntry:
    """``FILE`` (one type) or ``FILE#NAME`` (one of several), read with the suite's one reader."""
    path, _, name = text.partition("#")
    try:
        entries = read_type_file(Path(path))
    except VpcidError as exc:
        raise AdapterUnavailable(str(exc)) from None
    if name:
        chosen = [e for e in entries if e.dtype.name == name]
        if not chosen:
            names = ", ".join(e.dtype.name for e in entries)
            raise AdapterUnavailable(f"{path} has no type {name!r} (it has: {names})")
        return chosen[0]
    if len(entries) != 1:
        names = ", ".join(e.dtype.name for e in entries)
        raise AdapterUnavailable(f"{path} holds {len(entries)} types ({names}): name one, @FILE#NAME")
    return entries[0]


def _named_type(text: str) -> TypeEntry:
    """``@TYPE`` (a suite type) or ``@FILE[#NAME]`` (a device-type file)."""
    dtype = SUITE_TYPES.get(text)
    if dtype is not None:
        return TypeEntry(dtype, source="suite type")
    if "#" in text or Path(text).exists():
        return _type_from_file(text)
    raise AdapterUnavailable(f"{text!r} is neither a suite type (see 'vpcid types') nor a device-type file")


def discovered_entry(primary: VfioUserClient, config_size: int, rom_size: int) -> TypeEntry:
    """The device's type, from discovery.

    A suite type consistent with what discovery found is used, with its BAR
    behaviour. Failing that, a suite type with the same power-on bytes, BARs
    and ROM is the type the device claims to be: it is used, and the ways
    the device differs from it become findings. Otherwise the discovered
    bytes are the type, with every BAR's contents opaque. Each choice is noted.
    """
    port = ClientPort(primary, config_size, rom_size)
    try:
        found = discover_type(port, f"vfio-user:{Path(primary.path).name}")
    except DiscoveryError as exc:
        hint = "; to certify it anyway, give its type: SOCKET@FILE with a device-type file"
        raise AdapterUnavailable(f"{exc}{hint}") from None
    finally:
        if primary.broken is None:
            primary.reset()  # probing cleared RW1C bits: back to power-on
    if port.rejected_writes:
        shown = ", ".join(f"{offset:#x}" for offset in sorted(port.rejected_writes)[:12])
        more = len(port.rejected_writes) - 12
        note = (
            f"the server rejects configuration writes at {shown}{f' and {more} more' if more > 0 else ''}: "
            "discovery takes them as dropped (as a VMM does); certification reports them as 'rejected'"
        )
        found = dataclasses.replace(found, notes=(*found.notes, note))
    for dtype in SUITE_TYPES.values():
        if consistent_with(found.dtype, dtype):
            note = f"consistent with the suite type {dtype.name!r}: that type and its BAR behaviour are used"
            return TypeEntry(dtype, source="discovered", notes=(*found.notes, note))
    for dtype in SUITE_TYPES.values():
        if claims(found.dtype, dtype):
            note = (
                f"shows the power-on bytes, BARs and ROM of the suite type {dtype.name!r}, but differs "
                f"from it ({describe_difference(dtype, found.dtype)}): certified as {dtype.name!r}"
            )
            return TypeEntry(dtype, source="discovered", notes=(*found.notes, note))
    opaque = tuple((i, range(0, bar.size)) for i, bar in enumerate(found.dtype.bars) if bar is not None)
    if not opaque:
        return found.entry("discovered")
    note = "no suite type is consistent with it: every BAR's contents are opaque (not accessed)"
    return TypeEntry(found.dtype, opaque, "discovered", (*found.notes, note))


def claims(found: DeviceType, dtype: DeviceType) -> bool:
    """Whether a discovered type shows ``dtype``'s power-on bytes, BAR kinds and sizes, and ROM size."""
    rom_sizes = (found.rom.size if found.rom else 0, dtype.rom.size if dtype.rom else 0)
    return (
        found.declared.image == dtype.declared.image
        and bar_slots(found) == bar_slots(dtype)
        and rom_sizes[0] == rom_sizes[1]
    )


MIGRATION_OFF = "migration not used: turned off (migration=off); no migration message was sent"


def _discover(bdf: Bdf, arg: DeviceArgument, probe_migration: bool = True) -> tuple[Function, bool]:
    """Connect to a device (and its peer), reset it and learn its regions; (function, migratable).
    Unless ``probe_migration``, no migration message is sent and the device is not migratable."""
    links: list[VfioUserClient] = []
    try:
        for path in (arg.primary, arg.peer):
            if path is not None:
                links.append(_open(path))
        primary = links[0]
        for link in links:
            info = link.device_info()
            if not info.flags & DEVICE_FLAGS_PCI or info.num_regions < NUM_PCI_REGIONS:
                raise AdapterUnavailable(f"{link.path} is not a PCI device (flags {info.flags:#x})")
            if not info.flags & DEVICE_FLAGS_RESET:
                raise AdapterUnavailable(f"{link.path} cannot be reset; the suite's init needs a reset")
            link.reset()
        regions = [primary.region_info(i) for i in range(NUM_PCI_REGIONS)]
        _check_regions(primary.path, regions)
        config_size = regions[CONFIG_REGION].size
        for link in links:
            _zero_reset_registers(link)
        config = primary.region_read(CONFIG_REGION, 0, config_size)
        if arg.type_name is not None:
            entry = _named_type(arg.type_name)
            differ = read_only_differences(config, entry.dtype)
            if differ:
                note = f"read-only bytes differ from type {entry.dtype.name!r} ({differ}): reads show them"
                entry = dataclasses.replace(entry, notes=(*entry.notes, note))
        else:
            entry = discovered_entry(primary, config_size, regions[ROM_REGION].size)
        bars: dict[int, Bar] = {}
        for index in range(7):
            region = regions[index]
            if region.size == 0:
                continue
            low = int.from_bytes(config[0x10 + 4 * index : 0x14 + 4 * index], "little") if index < 6 else 0
            io = index < 6 and bool(low & 1)
            mem64 = not io and index < 6 and (low >> 1) & 3 == 2
            readable, writable = bool(region.flags & REGION_READ_FLAG), bool(region.flags & REGION_WRITE_FLAG)
            bars[index] = Bar(index, io, mem64, region.size, readable, writable)
        notes = entry.notes
        migratable = probe_migration
        if not probe_migration:
            notes = (*notes, MIGRATION_OFF)
        for n, link in enumerate(links if probe_migration else ()):
            usable, link, why = _probe_migration(link)
            links[n] = link
            if not usable:
                migratable = False
                notes = (*notes, f"migration not used: {why}")
                break
        primary, peer = links[0], (links[1] if len(links) > 1 else None)
        function = Function(bdf, entry.dtype, primary, peer, config_size, bars, entry.opaque, notes)
        return function, migratable
    except (ServerFault, VfioUserError) as exc:  # a fault, or an error reply to a setup command
        for link in links:
            link.close()
        raise AdapterUnavailable(f"{arg.primary}: {exc}") from None
    except BaseException:
        for link in links:
            link.close()
        raise


def _check_regions(path: str, regions: Sequence[RegionDesc]) -> None:
    """Region sizes a PCI device can have: configuration 256 or 4096 bytes, BARs powers of two (I/O
    BARs from 4 bytes, memory from 16), 64-bit at most; the ROM a power of two from 2 KiB to 2 GiB."""
    config_size = regions[CONFIG_REGION].size
    if config_size not in (0x100, 0x1000):
        raise AdapterUnavailable(f"{path}: configuration region is {config_size} bytes, not 256 or 4096")
    for region in regions[:ROM_REGION]:
        size = region.size
        if size and (size & (size - 1) or size < 4 or size > 1 << 63):
            raise AdapterUnavailable(
                f"{path}: region {region.index} (BAR{region.index}) has {size:#x} bytes, "
                "which no BAR can decode (a power of two, 4 bytes to 2^63)"
            )
    rom = regions[ROM_REGION].size
    if rom and (rom & (rom - 1) or not 0x800 <= rom <= 1 << 31):
        raise AdapterUnavailable(f"{path}: region 6 (ROM) has {rom:#x} bytes, not a power of two 2 KiB-2 GiB")


def _zero_reset_registers(link: VfioUserClient) -> None:
    """Write the post-reset values of :data:`RESET_REGISTERS` (zero); rejected writes are ignored."""
    for offset, width in RESET_REGISTERS:
        with contextlib.suppress(VfioUserError):
            link.config_write(offset, bytes(width))


def _probe_migration(link: VfioUserClient) -> tuple[bool, VfioUserClient, str]:
    """Whether migration v2 works on ``link``: the feature, and one save read back to RUNNING.

    A server that fails the probe is used without migration, and the reason
    is noted; one that dropped the connection is reconnected ((usable, the
    link to use from now on, why not)).
    """
    try:
        if not link.supports_migration():
            return False, link, "the server does not offer migration v2 (STOP_COPY)"
        link.save_stream()
        link.reset()
        return True, link, ""
    except VfioUserError as exc:
        with contextlib.suppress(VfioUserError, ServerFault):
            _reset_running(link)
        return False, link, f"a save failed: {exc}"
    except ServerFault as exc:
        why = f"the server failed a save in chunks of {link.migration_chunk} bytes ({exc})"
        try:
            return False, _reconnect(link), why
        except ServerFailed as gone:
            raise AdapterUnavailable(f"{why}; {gone}") from None


def _open(path: str) -> VfioUserClient:
    if not Path(path).exists():
        raise AdapterUnavailable(f"cannot open vfio-user device {path}: no such socket")
    try:
        return VfioUserClient(path, connect_timeout=2.0)
    except (OSError, ServerFault) as exc:
        raise AdapterUnavailable(f"cannot open vfio-user device {path}: {exc}") from None


def _canonical(functions: Sequence[Function]) -> bool:
    """Whether every device's migration stream is a vpcid data blob of its type (so digests compare)."""
    for f in functions:
        for link in (f.primary, f.peer):
            if link is None:
                continue
            try:
                record = blobfmt.decode_instance(link.save_stream())
            except (BlobError, VfioUserError, ServerFault):
                return False
            if record.type_name != f.dtype.name or record.fingerprint != f.dtype.fingerprint():
                return False
    return True


class Spawned:
    """Two vpcid vfio-user server processes (primary and migration peer) in a private directory."""

    def __init__(self, types: Sequence[str], profile_path: str | None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="vpcid-vfio-user-"))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.sockets: list[list[str]] = []
        try:
            for side in ("a", "b"):
                paths = [str(self.directory / f"dev{n}-{side}.sock") for n in range(len(types))]
                command = [sys.executable, "-m", "vpcid.conformance.serve", "vfio-user"]
                for path, name in zip(paths, types, strict=True):
                    command += ["--socket", path, "--type", name]
                if profile_path is not None:
                    command += ["--profile", profile_path]
                process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                self.processes.append(process)
                self.sockets.append(paths)
            for process in self.processes:
                _await_ready(process)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for process in self.processes:
            stop_process(process)
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


def _await_ready(process: subprocess.Popen[bytes], timeout: float = SPAWN_TIMEOUT) -> None:
    """Wait for the server's ``ready`` line on stdout."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    deadline = time.monotonic() + timeout
    buffered = b""
    while b"ready\n" not in buffered:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AdapterUnavailable("vpcid vfio-user server did not become ready")
        if not poller.poll(left * 1000):
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            process.wait(timeout=5)
            raise AdapterUnavailable(f"vpcid vfio-user server exited with status {process.returncode}")
        buffered += chunk


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM, wait, SIGKILL if needed; the process is reaped."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    if process.stdout is not None:
        process.stdout.close()


def build(arg: AdapterArgument) -> VfioUserAdapter:
    """Connect to (or start) the servers and build the adapter."""
    profile = Profile()
    if arg.profile_path is not None:
        try:
            profile = Profile.from_manifest(Path(arg.profile_path).read_text(encoding="utf-8"))
        except (OSError, VpcidError) as exc:
            raise AdapterUnavailable(f"profile {arg.profile_path}: {exc}") from None
    spawned: Spawned | None = None
    devices = list(arg.devices)
    if arg.spawn:
        spawned = Spawned(arg.spawn, arg.profile_path)
        primary, peer = spawned.sockets
        devices = [DeviceArgument(a, b, t) for a, b, t in zip(primary, peer, arg.spawn, strict=True)]
    functions: list[Function] = []
    try:
        migratable = True
        declined: dict[str, str] = {}
        for n, device in enumerate(devices):
            function, can_migrate = _discover(Bdf(0, FIRST_DEVICE + n, 0), device, arg.migration)
            why = declined_reason(function.dtype)
            if why is not None:
                declined[function.dtype.name] = why
                for link in function.links():
                    link.close()
                continue
            functions.append(function)
            migratable = migratable and can_migrate
        if not functions:
            raise AdapterUnavailable("; ".join(f"{name}: {why}" for name, why in declined.items()))
        canonical = migratable and _canonical(functions)
        where = ", ".join(
            f"{f.bdf}={f.dtype.name} at {f.primary.path}" + (f" (peer {f.peer.path})" if f.peer else "")
            for f in functions
        )
        notes = "".join(
            f". {f.bdf} discovery: {note}" for f in functions for note in f.notes if note != MIGRATION_OFF
        )
        notes += "".join(f". declined {name}: {why}" for name, why in declined.items())
        how = "v2, vpcid blob stream" if canonical else "v2" if migratable else "unsupported"
        if not arg.migration:
            how = "off (migration=off: not probed, save and restore not offered)"
        description = (
            f"vfio-user {'servers started here' if spawned else 'devices'}: {where}; migration {how}" + notes
        )
        return VfioUserAdapter(
            functions,
            profile,
            migration=migratable,
            canonical=canonical,
            description=description,
            on_close=spawned.close if spawned is not None else None,
            declined=declined,
        )
    except (ServerFailed, ServerFault, VfioUserError) as exc:
        for f in functions:
            for link in f.links():
                link.close()
        if spawned is not None:
            spawned.close()
        raise AdapterUnavailable(str(exc)) from None
    except BaseException:
        for f in functions:
            f.primary.close()
            if f.peer is not None:
                f.peer.close()
        if spawned is not None:
            spawned.close()
        raise


def adapter(argument: str | None) -> VfioUserAdapter:
    """Factory for ``--adapter vfio-user:ARG`` (see the module docstring for ARG)."""
    return build(parse_argument(argument))
