"""A vfio-user server exposing VPCID instances of one data manager as devices.

Each device is one instance (a device type at a BDF of one VM) of a shared
data manager (the Cython backend's when it is built, else the model's; see
:func:`choose_manager`), served on its own UNIX socket by its own
thread, one client at a time (a second client waits in the listen backlog
until the first disconnects). Region 7 is configuration space with the data
manager's semantics (masks, RW1C, BAR sizing); regions 0-5 are the BARs'
contents as the device type's behaviour serves them; region 6 is the ROM. The
migration stream is the instance's data blob (R-BLOB-003), configuration
state included. spec/formats/vfio-user.md has the mapping and the errnos.

Robustness rules, all enforced here:

- every header field and payload length is checked before anything changes;
  a rejected message changes nothing and is answered with an error reply
  (unless its header is sound and sets No_reply, as the protocol says);
- a client that disconnects, stalls mid-message (``message_timeout``),
  or never reads its replies only loses its own connection; the device's
  state is kept and other devices never notice;
- file descriptors that arrive with a message are kept only by DMA_MAP and
  DEVICE_SET_IRQS and closed otherwise, and all of a client's are closed
  when it leaves;
- what one client can make the server hold is bounded (:class:`Limits`:
  transfer size, descriptors kept, stream length, DMA regions), migration
  streams live in a temporary file, and a device's BAR accesses hold the
  lock the other devices need for one page at most.

On the Cython backend, valid REGION_READ/REGION_WRITE messages are read,
performed and answered by its compiled ``RegionPath`` (see :class:`Connection`);
the replies are the ones the Python code gives.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import dataclasses
import errno
import hashlib
import logging
import math
import os
import resource
import select
import socket
import stat
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeAlias

from vpcid.adapters.vfio_user.protocol import (
    CONFIG_REGION,
    DEVICE_FLAGS_PCI,
    DEVICE_FLAGS_RESET,
    DMA_READ_FLAG,
    DMA_WRITE_FLAG,
    FEATURE_GET,
    FEATURE_INDEX_MASK,
    FEATURE_KNOWN_BITS,
    FEATURE_MIG_DEVICE_STATE,
    FEATURE_MIGRATION,
    FEATURE_PROBE,
    FEATURE_SET,
    HEADER_SIZE,
    INTX_IRQ,
    IRQ_INFO_AUTOMASKED,
    IRQ_INFO_EVENTFD,
    IRQ_INFO_MASKABLE,
    IRQ_INFO_NORESIZE,
    IRQ_SET_ACTION_MASK,
    IRQ_SET_ACTION_MASK_BITS,
    IRQ_SET_ACTION_TRIGGER,
    IRQ_SET_ACTION_UNMASK,
    IRQ_SET_DATA_BOOL,
    IRQ_SET_DATA_EVENTFD,
    IRQ_SET_DATA_MASK,
    IRQ_SET_DATA_NONE,
    MAX_DMA_MAPS,
    MIGRATION_STOP_COPY,
    NO_DATA_FD,
    NUM_PCI_IRQS,
    NUM_PCI_REGIONS,
    PAGE_SIZE,
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    REGION_READ_FLAG,
    REGION_WRITE_FLAG,
    SERVER_MAX_MSG_FDS,
    TYPE_REPLY,
    U64,
    WRITE_MULTI_MAX,
    Command,
    DeviceInfo,
    DmaMap,
    DmaUnmap,
    FeatureHeader,
    Header,
    IrqInfo,
    IrqSet,
    MigData,
    MigState,
    MigStateData,
    ProtocolError,
    RegionInfo,
    RegionIoFds,
    Version,
    WriteOne,
    check_command_header,
    decode_mig_data,
    decode_region_access,
    decode_write_multi,
    encode_error,
    encode_reply,
    header_is_sound,
    invalid,
    parse_capabilities,
)
from vpcid.model import Bdf, BlobError, BlobMismatch, DataManager, DeviceType, InvalidArgument, Profile
from vpcid.model.devicetype import ROM_INDEX

try:  # the Cython backend, when it is built: its manager and the compiled hot path
    from vpcid.adapters.cython._dm import Manager as CompiledManager
    from vpcid.adapters.cython._dm import RegionPath, ThreadLock
except ImportError:  # not built here: the model serves, with the Python paths
    CompiledManager = None  # type: ignore[assignment,misc]
    RegionPath = None  # type: ignore[assignment,misc]
    ThreadLock = None  # type: ignore[assignment,misc]

log = logging.getLogger("vpcid.vfio_user")

DEFAULT_MAX_DATA_XFER = 1 << 20
"""Largest ``count``/``size`` the server accepts and announces (``max_data_xfer_size``)."""
DEFAULT_MESSAGE_TIMEOUT = 10.0
"""Seconds a client may stay silent in the middle of a message before it is disconnected."""
DEFAULT_BUSY_POLL_US = 50
"""Microseconds the compiled path polls for a client's next message before its thread sleeps."""
MAX_BUSY_POLL_US = 1000
BUSY_POLL_ENV = "VPCID_SERVE_BUSY_POLL_US"
"""Environment variable giving a server's busy poll in microseconds (0 turns it off)."""
MAX_STREAM = 1 << 30
"""Default largest migration stream a RESUMING device takes (E2BIG beyond); it is spooled to a
temporary file, so it costs disk, not memory, until the commit decodes it."""
_FD_ANCILLARY = socket.CMSG_SPACE(SERVER_MAX_MSG_FDS * array.array("i").itemsize)


# --------------------------------------------------------------------------- the data manager side


class ServerManager(DataManager):
    """The data manager, plus the two accesses vfio-user needs that a guest never makes.

    A VMM reaches configuration space by BDF and BAR contents by BAR index
    and offset (it does the guest-physical routing itself), so the server
    serves region accesses with the manager's own per-dword configuration
    access (the path 0xCFC and ECAM use, R-ECAM-003) and the device type's
    behaviour (R-DT-003, R-ACC-009) directly.
    """

    def region_config(self, vm_id: int, bdf: Bdf, offset: int, length: int, payload: bytes | None) -> bytes:
        """Configuration bytes ``[offset, offset+length)``, one access per dword they touch."""
        vm = self._vm(vm_id)
        if offset % 4 + length <= 4:  # one dword: the common case, one access
            got = self._config_access(vm, bdf, offset, length, payload)
            return got if payload is None else b""
        out = bytearray()
        end = offset + length
        while offset < end:
            chunk = min(end, (offset & ~3) + 4) - offset
            part = None if payload is None else payload[len(out) : len(out) + chunk]
            got = self._config_access(vm, bdf, offset, chunk, part)
            out += got if payload is None else bytes(chunk)
            offset += chunk
        return bytes(out) if payload is None else b""

    def region_bar(
        self, vm_id: int, bdf: Bdf, index: int, offset: int, length: int, payload: bytes | None
    ) -> bytes:
        """Contents of BAR ``index`` (6 = ROM, read-only) at ``offset``, decoding or not."""
        inst = self._instance(self._vm(vm_id), bdf)
        if index == ROM_INDEX:
            rom = inst.dtype.rom
            if payload is not None or rom is None:
                return b""
            return rom.contents[offset : offset + length].ljust(length, b"\0")
        if payload is None:
            return inst.behaviour.read(inst.data, index, offset, length)
        inst.behaviour.write(inst.data, index, offset, payload)
        return b""


class RegionManager(Protocol):
    """What the server needs of a data manager: :class:`ServerManager` (the model) or the Cython
    backend's ``Manager``, which has the same two region accesses."""

    def create_vm(self, vm_id: int, *, ecam_base: int | None = ...) -> None: ...
    def plug(self, vm_id: int, bdf: Bdf, dtype: DeviceType) -> None: ...
    def device_type(self, vm_id: int, bdf: Bdf) -> DeviceType: ...
    def reset(self, vm_id: int, bdf: Bdf) -> None: ...
    def save(self, vm_id: int, bdf: Bdf) -> bytes: ...
    def restore(self, vm_id: int, bdf: Bdf, blob: bytes) -> None: ...
    def snapshot(self, vm_id: int) -> bytes: ...
    def region_config(
        self, vm_id: int, bdf: Bdf, offset: int, length: int, payload: bytes | None
    ) -> bytes: ...
    def region_bar(
        self, vm_id: int, bdf: Bdf, index: int, offset: int, length: int, payload: bytes | None
    ) -> bytes: ...


ManagerFactory = Callable[[Profile], RegionManager]
MANAGER_ENV = "VPCID_SERVE_MANAGER"
"""Environment variable naming the data manager a server uses by default: ``model`` or ``cython``."""


def choose_manager(name: str | None = None) -> ManagerFactory:
    """The data manager a server runs on: ``"cython"`` (the compiled backend, whose accesses are
    answered by the compiled hot path), ``"model"`` (:class:`ServerManager`), or, for None,
    :data:`MANAGER_ENV` if set, else the compiled backend when it is built, else the model.
    InvalidArgument for another name, or for ``"cython"`` when the backend is not built."""
    if name is None:
        name = os.environ.get(MANAGER_ENV) or ("cython" if CompiledManager is not None else "model")
    if name == "model":
        return ServerManager
    if name == "cython":
        if CompiledManager is None:
            from vpcid.adapters.cython import UNAVAILABLE_REASON

            raise InvalidArgument(f"the cython data manager is not available: {UNAVAILABLE_REASON}")
        return CompiledManager
    raise InvalidArgument(f"data manager {name!r} is not 'model' or 'cython' (from {MANAGER_ENV}?)")


Guard: TypeAlias = "threading.Lock | ThreadLock"
"""A lock of the server: ``threading.Lock``, or the compiled ``ThreadLock`` the compiled path takes."""


def new_lock(manager: RegionManager) -> Guard:
    """A lock for the server's manager or one of its devices: one the compiled path can take when
    the manager is compiled, else a ``threading.Lock``."""
    if CompiledManager is not None and isinstance(manager, CompiledManager):
        return ThreadLock()
    return threading.Lock()


@dataclass(frozen=True, slots=True)
class Region:
    """One vfio-user region of a device: size and READ/WRITE flags (0 size: not implemented)."""

    size: int
    flags: int


def device_regions(dtype: DeviceType) -> tuple[Region, ...]:
    """Regions 0-8 of a PCI device (spec/formats/vfio-user.md)."""
    regions: list[Region] = []
    for index in range(6):
        bar = dtype.bar(index)
        regions.append(Region(bar.size, REGION_READ_FLAG | REGION_WRITE_FLAG) if bar else Region(0, 0))
    regions.append(Region(dtype.rom.size, REGION_READ_FLAG) if dtype.rom else Region(0, 0))
    regions.append(Region(dtype.config_size, REGION_READ_FLAG | REGION_WRITE_FLAG))
    regions.append(Region(0, 0))  # VGA
    return tuple(regions)


def device_irqs(dtype: DeviceType) -> tuple[tuple[int, int], ...]:
    """(flags, count) of IRQ indices INTx, MSI, MSI-X, ERR, REQ, from the type's pin and capabilities."""
    intx = (IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_AUTOMASKED, 1 if dtype.interrupt_pin else 0)
    msi_count = msix_count = 0
    image = dtype.declared.image
    for entry in dtype.chain:
        control = int.from_bytes(image[entry.offset + 2 : entry.offset + 4], "little")
        if entry.extended:
            continue
        if entry.cap_id == 0x05:
            msi_count = 1 << min(5, (control >> 1) & 0x7)
        elif entry.cap_id == 0x11:
            msix_count = (control & 0x7FF) + 1
    return (
        intx,
        (IRQ_INFO_EVENTFD | IRQ_INFO_NORESIZE, msi_count),
        (IRQ_INFO_EVENTFD | IRQ_INFO_NORESIZE, msix_count),
        (IRQ_INFO_EVENTFD, 0),
        (IRQ_INFO_EVENTFD, 0),
    )


_ARCS: dict[tuple[MigState, MigState], MigState] = {}
"""Next state on the shortest path between two supported states (saving states only at the ends)."""


def _build_arcs() -> None:
    direct = {
        MigState.RUNNING: (MigState.STOP,),
        MigState.STOP: (MigState.RUNNING, MigState.STOP_COPY, MigState.RESUMING),
        MigState.STOP_COPY: (MigState.STOP,),
        MigState.RESUMING: (MigState.STOP,),
    }
    for start in direct:
        for goal in direct:
            if start is goal:
                continue
            _ARCS[(start, goal)] = goal if goal in direct[start] else MigState.STOP


_build_arcs()
SUPPORTED_STATES = frozenset({MigState.RUNNING, MigState.STOP, MigState.STOP_COPY, MigState.RESUMING})


class Spool:
    """A migration stream kept in an unlinked temporary file, so the process holds one chunk of it
    at a time, whatever its length; closed (and gone) when the session ends."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(prefix="vpcid-vfio-user-stream-")  # noqa: SIM115 - closed by close()
        self.size = 0
        self.read_pos = 0

    def append(self, data: bytes) -> None:
        self.file.seek(self.size)
        self.file.write(data)
        self.size += len(data)

    def read(self, size: int) -> bytes:
        self.file.seek(self.read_pos)
        chunk = self.file.read(min(size, self.size - self.read_pos))
        self.read_pos += len(chunk)
        return chunk

    def whole(self) -> bytes:
        """The stream in one piece (to decode it at the commit)."""
        self.file.seek(0)
        return self.file.read(self.size)

    def close(self) -> None:
        self.file.close()


class Device:
    """One served VPCID instance: its regions, IRQs and migration state machine.

    Two locks: the device's own, held by every method (one client's requests
    and the device's migration session exclude each other), and the data
    manager's, shared by all the devices of a server and held only while the
    manager itself is used (configuration accesses, reset, save, restore).
    BAR contents are the instance's own data: a BAR access holds only the
    device lock, one page at a time, so a long access to one device never
    stalls the others. (The compiled path also takes the manager lock for
    each page of a memory-like BAR, which is C code that never waits; a
    custom behaviour, which may, is called with the device lock only.)
    """

    def __init__(
        self,
        manager: RegionManager,
        lock: Guard,
        vm: int,
        bdf: Bdf,
        max_stream: int = MAX_STREAM,
        busy_poll_us: int = 0,
    ) -> None:
        self.manager = manager
        self.manager_lock = lock
        self.lock = new_lock(manager)
        self.vm = vm
        self.bdf = bdf
        self.max_stream = max_stream
        self.busy_poll_us = busy_poll_us
        """How long the compiled path polls for a client's next message before it sleeps."""
        self.dtype = manager.device_type(vm, bdf)
        self.regions = device_regions(self.dtype)
        self.config_size = self.dtype.config_size
        self.irqs = device_irqs(self.dtype)
        self.mig_state = MigState.RUNNING
        self._stream: Spool | None = None
        self._resume: Spool | None = None

    # -- regions
    def access(self, region: int, offset: int, length: int, payload: bytes | None) -> bytes:
        """A checked region access (the caller validated region, bounds and flags)."""
        if region == CONFIG_REGION:
            with self.lock, self.manager_lock:
                return self.manager.region_config(self.vm, self.bdf, offset, length, payload)
        out = bytearray()
        end = offset + length
        while offset < end:  # one behaviour call per page, the device lock only (see the class)
            piece = min(end, (offset & ~(PAGE_SIZE - 1)) + PAGE_SIZE) - offset
            part = None if payload is None else payload[len(out) : len(out) + piece]
            with self.lock:
                got = self.manager.region_bar(self.vm, self.bdf, region, offset, piece, part)
            out += got if payload is None else bytes(piece)
            offset += piece
        return bytes(out) if payload is None else b""

    def config_read(self, offset: int, width: int) -> bytes:
        """Configuration bytes inside one dword (the hot path of REGION_READ of region 7): the
        manager lock only, as configuration space is the manager's, not the migration session's."""
        with self.manager_lock:
            return self.manager.region_config(self.vm, self.bdf, offset, width, None)

    def config_write(self, offset: int, data: bytes) -> None:
        """Configuration bytes inside one dword (the hot path of REGION_WRITE of region 7)."""
        with self.manager_lock:
            self.manager.region_config(self.vm, self.bdf, offset, len(data), data)

    def compiled_path(self, stop_flag: bytearray) -> RegionPath | None:
        """The compiled hot path for this device's region accesses when the manager is the Cython
        backend's (None otherwise); it takes the locks these methods take, per dword or page, and
        stops serving once ``stop_flag[0]`` is set."""
        if CompiledManager is None or not isinstance(self.manager, CompiledManager):
            return None
        if not (isinstance(self.manager_lock, ThreadLock) and isinstance(self.lock, ThreadLock)):
            return None
        regions = [(region.size, region.flags) for region in self.regions]
        return RegionPath(
            self.manager, self.vm, self.bdf, regions, self.manager_lock, self.lock, stop_flag,
            busy_poll_ns=self.busy_poll_us * 1000,
        )  # fmt: skip

    def check_access(self, region: int, offset: int, count: int, write: bool, limit: int) -> None:
        """EINVAL unless the access names a readable/writable region and lies inside it."""
        if region >= NUM_PCI_REGIONS:
            raise invalid(f"region {region} does not exist")
        info = self.regions[region]
        if not info.flags & (REGION_WRITE_FLAG if write else REGION_READ_FLAG):
            raise invalid(f"region {region} is not {'writable' if write else 'readable'}")
        if not 1 <= count <= limit:
            raise invalid(f"count {count} is not 1-{limit}")
        if offset + count > info.size:
            raise invalid(f"{offset:#x}+{count} runs past region {region} ({info.size:#x} bytes)")

    def reset(self) -> None:
        """Function-level reset (R-RST-001, R-RST-002); ends any migration session."""
        with self.lock:
            with self.manager_lock:
                self.manager.reset(self.vm, self.bdf)
            self._end_sessions()
            self.mig_state = MigState.RUNNING

    def client_gone(self) -> None:
        """A client left: abandon its migration session, keep the device's state."""
        with self.lock:
            self._end_sessions()
            self.mig_state = MigState.RUNNING

    def _end_sessions(self) -> None:
        for spool in (self._stream, self._resume):
            if spool is not None:
                spool.close()
        self._stream = self._resume = None

    # -- migration
    def set_state(self, goal: MigState) -> None:
        """Walk the state machine to ``goal``; on a failed arc stay where the walk stopped."""
        if goal not in SUPPORTED_STATES:
            raise invalid(f"migration state {goal.name} is not supported")
        with self.lock:
            if self.mig_state is MigState.ERROR:
                raise invalid("the device is in the ERROR state; reset it")
            while self.mig_state is not goal:
                nxt = _ARCS[(self.mig_state, goal)]
                self._arc(self.mig_state, nxt)
                self.mig_state = nxt

    def _arc(self, start: MigState, end: MigState) -> None:
        if start is MigState.STOP and end is MigState.STOP_COPY:
            with self.manager_lock:
                blob = self.manager.save(self.vm, self.bdf)  # R-SR-001
            self._stream = Spool()
            self._stream.append(blob)
        elif start is MigState.STOP_COPY:
            self._end_sessions()
        elif start is MigState.STOP and end is MigState.RESUMING:
            self._resume = Spool()
        elif start is MigState.RESUMING:
            spool, self._resume = self._resume, None
            blob = b"" if spool is None else spool.whole()
            if spool is not None:
                spool.close()
            try:
                with self.manager_lock:
                    self.manager.restore(self.vm, self.bdf, blob)  # all or nothing (R-SR-007)
            except BlobMismatch as exc:
                self.mig_state = MigState.STOP
                raise ProtocolError(errno.EINVAL, f"stream does not fit this device: {exc}") from None
            except BlobError as exc:
                self.mig_state = MigState.STOP
                raise ProtocolError(errno.EBADMSG, f"stream is not a data blob: {exc}") from None

    def read_stream(self, size: int) -> bytes:
        with self.lock:
            if self.mig_state is not MigState.STOP_COPY or self._stream is None:
                raise invalid("MIG_DATA_READ outside STOP_COPY")
            return self._stream.read(size)

    def write_stream(self, data: bytes) -> None:
        with self.lock:
            if self.mig_state is not MigState.RESUMING or self._resume is None:
                raise invalid("MIG_DATA_WRITE outside RESUMING")
            if self._resume.size + len(data) > self.max_stream:
                raise ProtocolError(errno.E2BIG, f"migration stream would exceed {self.max_stream} bytes")
            self._resume.append(data)

    def state_digest(self) -> str:
        """Hash of everything a message could change on this device (for tests and the fuzzer)."""
        with self.lock, self.manager_lock:
            h = hashlib.sha256(self.manager.snapshot(self.vm))
            h.update(bytes([self.mig_state]))
            for spool in (self._stream, self._resume):
                h.update(b"-" if spool is None else repr((spool.size, spool.read_pos)).encode())
            return h.hexdigest()


# --------------------------------------------------------------------------- one connection


@dataclass
class Frame:
    """One message as the framing delivered it."""

    header: Header
    payload: bytes | None
    """``message_size - 16`` bytes; b"" for a size below the header; None when it was too large."""
    fds: list[int] = field(default_factory=list)
    fds_truncated: bool = False


@dataclass(frozen=True, slots=True)
class DmaRegion:
    addr: int
    size: int
    flags: int
    offset: int
    fd: int | None


@dataclass(frozen=True)
class Limits:
    """What one client may make the server hold (spec/formats/vfio-user.md, "Limits").

    ``max_data_xfer``: the largest region or migration transfer in one
    message (``max_data_xfer_size``), which bounds a message and a reply;
    ``message_timeout``: seconds a client may stall inside a message or
    leave its replies unread; ``max_fds``: file descriptors (DMA regions and
    IRQ eventfds) the server keeps for the client (None: the process's limit
    shared out among the devices, see :func:`fd_budget`); ``max_stream``: the
    longest migration stream it takes; ``max_dma_maps``: DMA regions mapped
    at once. Invalid values raise :class:`~vpcid.model.InvalidArgument`.
    """

    max_data_xfer: int = DEFAULT_MAX_DATA_XFER
    message_timeout: float = DEFAULT_MESSAGE_TIMEOUT
    max_fds: int | None = None
    max_stream: int = MAX_STREAM
    max_dma_maps: int = MAX_DMA_MAPS

    def __post_init__(self) -> None:
        _check_int("max_data_xfer", self.max_data_xfer, 4096, 64 << 20)
        timeout = self.message_timeout
        if type(timeout) not in (int, float) or not (math.isfinite(timeout) and 0.05 <= timeout <= 3600):
            raise InvalidArgument(f"message_timeout must be a number of seconds 0.05-3600, not {timeout!r}")
        if self.max_fds is not None:
            _check_int("max_fds", self.max_fds, 0, 1 << 20)
        _check_int("max_stream", self.max_stream, 4096, 1 << 40)
        _check_int("max_dma_maps", self.max_dma_maps, 1, MAX_DMA_MAPS)


def busy_poll_from(value: int | None = None) -> int:
    """A server's busy poll in microseconds: ``value``, else :data:`BUSY_POLL_ENV` if set, else
    :data:`DEFAULT_BUSY_POLL_US`; InvalidArgument unless an integer 0-:data:`MAX_BUSY_POLL_US`."""
    if value is None:
        text = os.environ.get(BUSY_POLL_ENV)
        if text is None:
            return DEFAULT_BUSY_POLL_US
        try:
            value = int(text)
        except ValueError:
            raise InvalidArgument(f"{BUSY_POLL_ENV}={text!r} is not an integer") from None
    _check_int("busy_poll_us", value, 0, MAX_BUSY_POLL_US)
    return value


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise InvalidArgument(f"{name} must be an integer {low}-{high}, not {value!r}")


FD_RESERVE = 64
"""Descriptors a server keeps for itself (standard streams, logging, temporary files)."""
FD_PER_DEVICE = 8
"""Descriptors each device needs beside its client's: listener, connection, stop pipe, stream spools."""
MAX_CLIENT_FDS = 4096
"""Most descriptors one client may make the server keep, however high the process limit is."""


def fd_budget(devices: int) -> int:
    """Descriptors each device's client may make the server keep: what the process's soft
    RLIMIT_NOFILE leaves after the server's own, shared equally, so that no client can take the
    descriptors another device needs (at most :data:`MAX_CLIENT_FDS`)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CLIENT_FDS
    spare = soft - FD_RESERVE - FD_PER_DEVICE * devices - SERVER_MAX_MSG_FDS * devices
    return max(0, min(MAX_CLIENT_FDS, spare // max(1, devices)))


def close_fds(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class Session:
    """Protocol state of one client connection to one :class:`Device`.

    :meth:`handle` takes a :class:`Frame` and returns the reply bytes (or
    None). It validates everything before changing anything; handlers
    raise :class:`ProtocolError` to reject.
    """

    def __init__(
        self, device: Device, max_data_xfer: int = DEFAULT_MAX_DATA_XFER, limits: Limits | None = None
    ) -> None:
        self.device = device
        self.limits = limits or Limits(max_data_xfer=max_data_xfer)
        self.max_fds = fd_budget(1) if self.limits.max_fds is None else self.limits.max_fds
        self.max_data_xfer = max_data_xfer = self.limits.max_data_xfer
        self.max_message = HEADER_SIZE + max(16 + max_data_xfer, 8 + WRITE_MULTI_MAX * WriteOne.STRUCT.size)
        """The largest message a command needs: a full REGION_WRITE, or a full REGION_WRITE_MULTI."""
        self.negotiated = False
        self.client_max_xfer = DEFAULT_MAX_DATA_XFER
        self.client_max_fds = 1
        self.write_multiple = False
        self.dma: dict[int, DmaRegion] = {}
        self._dma_starts: list[int] = []
        """The mapped regions' addresses, sorted: overlap and lookup are two bisections."""
        self.irq_fds: dict[tuple[int, int, int], int] = {}
        self.irq_masked: set[int] = set()
        self.rejected = 0
        self.handled = 0
        self._handlers: dict[int, Callable[[Frame, bytes], bytes]] = {
            Command.VERSION: self._version,
            Command.DMA_MAP: self._dma_map,
            Command.DMA_UNMAP: self._dma_unmap,
            Command.DEVICE_GET_INFO: self._device_info,
            Command.DEVICE_GET_REGION_INFO: self._region_info,
            Command.DEVICE_GET_REGION_IO_FDS: self._region_io_fds,
            Command.DEVICE_GET_IRQ_INFO: self._irq_info,
            Command.DEVICE_SET_IRQS: self._set_irqs,
            Command.REGION_READ: self._region_read,
            Command.REGION_WRITE: self._region_write,
            Command.DMA_READ: self._wrong_direction,
            Command.DMA_WRITE: self._wrong_direction,
            Command.DEVICE_RESET: self._reset,
            Command.REGION_WRITE_MULTI: self._write_multi,
            Command.DEVICE_FEATURE: self._feature,
            Command.MIG_DATA_READ: self._mig_read,
            Command.MIG_DATA_WRITE: self._mig_write,
        }

    def handle(self, frame: Frame) -> bytes | None:
        """Process one message; every rejection is an error reply and changes nothing."""
        header = frame.header
        self.handled += 1
        try:
            check_command_header(header, self.max_message)
            if frame.payload is None:  # oversized: the framing drained it
                raise ProtocolError(errno.E2BIG, "message too large")
            if frame.fds_truncated:
                raise invalid(f"more than {SERVER_MAX_MSG_FDS} file descriptors in one message")
            if header.command != Command.VERSION and not self.negotiated:
                raise invalid("the first message must be VERSION")
            if frame.fds and header.command not in (Command.DMA_MAP, Command.DEVICE_SET_IRQS):
                raise invalid(f"{Command(header.command).name} carries no file descriptors")
            payload = self._handlers[header.command](frame, frame.payload)
        except ProtocolError as exc:
            self.rejected += 1
            close_fds(frame.fds)
            frame.fds.clear()
            log.debug("msg %#x cmd %d rejected: %s", header.msg_id, header.command, exc)
            if header.no_reply and header_is_sound(header, self.max_message):
                return None
            return encode_error(header, exc.errno)
        except Exception:  # a bug: answer EIO rather than take the server down
            self.rejected += 1
            close_fds(frame.fds)
            frame.fds.clear()
            log.exception("internal error on msg %#x cmd %d", header.msg_id, header.command)
            return None if header.no_reply else encode_error(header, errno.EIO)
        close_fds(frame.fds)  # handlers take the descriptors they keep
        frame.fds.clear()
        return None if header.no_reply else encode_reply(header, payload)

    @classmethod
    def direct_config(cls) -> bool:
        """Whether the connection may answer dword configuration accesses itself (see
        :class:`Connection`): only when this class handles them as :class:`Session` does."""
        return (
            cls.handle is Session.handle
            and cls._region_read is Session._region_read
            and cls._region_write is Session._region_write
        )

    def close(self) -> None:
        """The client left: release its DMA and IRQ file descriptors (device state is kept)."""
        close_fds([r.fd for r in self.dma.values() if r.fd is not None])
        close_fds(list(self.irq_fds.values()))
        self.dma.clear()
        self._dma_starts.clear()
        self.irq_fds.clear()

    @property
    def fds_held(self) -> int:
        """Descriptors the server keeps for this client (DMA regions and IRQ eventfds)."""
        return sum(r.fd is not None for r in self.dma.values()) + len(self.irq_fds)

    def _room_for_fds(self, keeping: int, releasing: int = 0) -> None:
        """ENOSPC unless the client may make the server keep ``keeping`` more descriptors."""
        if keeping and self.fds_held - releasing + keeping > self.max_fds:
            raise ProtocolError(
                errno.ENOSPC, f"the server keeps at most {self.max_fds} file descriptors for one client"
            )

    def state_digest(self) -> str:
        """Hash of the session's bookkeeping (negotiation, DMA, IRQs) for no-change checks."""
        dma = sorted((r.addr, r.size, r.flags, r.offset, r.fd is not None) for r in self.dma.values())
        irqs = sorted(self.irq_fds)
        state = (self.negotiated, self.client_max_xfer, self.client_max_fds, self.write_multiple, dma, irqs,
                 sorted(self.irq_masked))  # fmt: skip
        return hashlib.sha256(repr(state).encode()).hexdigest()

    # -- negotiation
    def _version(self, frame: Frame, payload: bytes) -> bytes:
        if self.negotiated:
            raise invalid("VERSION was already negotiated")
        request = Version.unpack(payload)
        if request.major != PROTOCOL_MAJOR:
            raise ProtocolError(errno.ENOTSUP, f"protocol major {request.major} (this server speaks 0)")
        caps = request.capabilities
        if caps.pgsizes & PAGE_SIZE == 0:
            raise ProtocolError(errno.ENOTSUP, "client supports no 4 KiB DMA pages")
        reply_caps: dict[str, object] = {
            "max_msg_fds": SERVER_MAX_MSG_FDS,
            "max_data_xfer_size": self.max_data_xfer,
            "max_dma_maps": self.limits.max_dma_maps,
            "pgsizes": PAGE_SIZE,
        }
        proposed = (request.raw or {}).get("capabilities", {})
        if caps.write_multiple:
            reply_caps["write_multiple"] = True
        if "twin_socket" in proposed:
            reply_caps["twin_socket"] = {"supported": False}
        document = {"capabilities": reply_caps}
        reply = Version(
            PROTOCOL_MAJOR, min(request.minor, PROTOCOL_MINOR), parse_capabilities(document), document
        )
        self.negotiated = True
        self.client_max_xfer = caps.max_data_xfer_size
        self.client_max_fds = caps.max_msg_fds
        self.write_multiple = caps.write_multiple
        return reply.pack()

    # -- DMA bookkeeping
    def _dma_map(self, frame: Frame, payload: bytes) -> bytes:
        req = DmaMap.unpack_exact(payload)
        if req.argsz != DmaMap.STRUCT.size:
            raise invalid(f"DMA_MAP argsz {req.argsz} is not {DmaMap.STRUCT.size}")
        if req.flags & ~(DMA_READ_FLAG | DMA_WRITE_FLAG) or not req.flags:
            raise invalid(f"DMA_MAP flags {req.flags:#x}: readable and/or writable, nothing else")
        if req.size == 0 or req.size % PAGE_SIZE or req.addr % PAGE_SIZE or req.offset % PAGE_SIZE:
            raise invalid("DMA_MAP address, size and offset must be whole 4 KiB pages, size non-zero")
        if req.addr + req.size > 1 << 64:
            raise invalid("DMA_MAP region wraps past 2^64")
        if len(frame.fds) > 1:
            raise invalid("DMA_MAP carries at most one file descriptor")
        if not frame.fds and req.offset:
            raise invalid("DMA_MAP without a file descriptor must have offset 0")
        at = bisect.bisect_right(self._dma_starts, req.addr)
        if at:
            before = self.dma[self._dma_starts[at - 1]]
            if before.addr + before.size > req.addr:
                raise ProtocolError(errno.EEXIST, f"DMA region {req.addr:#x} overlaps {before.addr:#x}")
        if at < len(self._dma_starts) and self._dma_starts[at] < req.addr + req.size:
            raise ProtocolError(errno.EEXIST, f"DMA region {req.addr:#x} overlaps {self._dma_starts[at]:#x}")
        if len(self.dma) >= self.limits.max_dma_maps:
            raise ProtocolError(errno.ENOSPC, f"{self.limits.max_dma_maps} DMA regions are mapped already")
        self._room_for_fds(len(frame.fds))
        fd = frame.fds.pop() if frame.fds else None
        self.keep_dma(DmaRegion(req.addr, req.size, req.flags, req.offset, fd))
        return b""

    def keep_dma(self, region: DmaRegion) -> None:
        """Record a mapped DMA region (checked by the caller: no overlap, room left)."""
        self.dma[region.addr] = region
        bisect.insort(self._dma_starts, region.addr)

    def _dma_unmap(self, frame: Frame, payload: bytes) -> bytes:
        req = DmaUnmap.unpack_exact(payload)
        if req.argsz < DmaUnmap.STRUCT.size:
            raise invalid(f"DMA_UNMAP argsz {req.argsz} is below {DmaUnmap.STRUCT.size}")
        if req.flags:
            raise invalid(f"DMA_UNMAP flags {req.flags:#x} are not supported")
        region = self.dma.get(req.addr)
        if region is None or region.size != req.size:
            raise ProtocolError(
                errno.ENOENT, f"no DMA region is mapped at exactly {req.addr:#x}+{req.size:#x}"
            )
        del self.dma[req.addr]
        del self._dma_starts[bisect.bisect_left(self._dma_starts, req.addr)]
        if region.fd is not None:
            close_fds([region.fd])
        return payload  # "the original DMA entry in the request"

    # -- device information
    def _device_info(self, frame: Frame, payload: bytes) -> bytes:
        req = DeviceInfo.unpack_exact(payload)
        if req.argsz < DeviceInfo.STRUCT.size:
            raise invalid(f"DEVICE_GET_INFO argsz {req.argsz} is below {DeviceInfo.STRUCT.size}")
        if req.flags or req.num_regions or req.num_irqs:
            raise invalid("DEVICE_GET_INFO fields other than argsz must be zero")
        size = DeviceInfo.STRUCT.size
        return DeviceInfo(size, DEVICE_FLAGS_RESET | DEVICE_FLAGS_PCI, NUM_PCI_REGIONS, NUM_PCI_IRQS).pack()

    def _region_info(self, frame: Frame, payload: bytes) -> bytes:
        req = RegionInfo.unpack_exact(payload)
        if req.argsz < RegionInfo.STRUCT.size:
            raise invalid(f"DEVICE_GET_REGION_INFO argsz {req.argsz} is below {RegionInfo.STRUCT.size}")
        if req.flags or req.cap_offset or req.size or req.offset:
            raise invalid("DEVICE_GET_REGION_INFO fields other than argsz and index must be zero")
        if req.index >= NUM_PCI_REGIONS:
            raise invalid(f"region {req.index} does not exist")
        region = self.device.regions[req.index]
        return RegionInfo(RegionInfo.STRUCT.size, region.flags, req.index, 0, region.size, 0).pack()

    def _region_io_fds(self, frame: Frame, payload: bytes) -> bytes:
        req = RegionIoFds.unpack_exact(payload)
        if req.argsz < RegionIoFds.STRUCT.size or req.flags or req.count or req.index >= NUM_PCI_REGIONS:
            raise invalid("malformed DEVICE_GET_REGION_IO_FDS")
        raise ProtocolError(errno.ENOTSUP, "no region has I/O file descriptors")

    def _irq_info(self, frame: Frame, payload: bytes) -> bytes:
        req = IrqInfo.unpack_exact(payload)
        if req.argsz < IrqInfo.STRUCT.size:
            raise invalid(f"DEVICE_GET_IRQ_INFO argsz {req.argsz} is below {IrqInfo.STRUCT.size}")
        if req.flags or req.count:
            raise invalid("DEVICE_GET_IRQ_INFO fields other than argsz and index must be zero")
        if req.index >= NUM_PCI_IRQS:
            raise invalid(f"IRQ index {req.index} does not exist")
        flags, count = self.device.irqs[req.index]
        return IrqInfo(IrqInfo.STRUCT.size, flags, req.index, count).pack()

    def _set_irqs(self, frame: Frame, payload: bytes) -> bytes:
        req = IrqSet.unpack_head(payload)
        data = payload[IrqSet.STRUCT.size :]
        if req.argsz != len(payload):
            raise invalid(f"DEVICE_SET_IRQS argsz {req.argsz} is not the payload size {len(payload)}")
        kind, action = req.flags & IRQ_SET_DATA_MASK, req.flags & IRQ_SET_ACTION_MASK_BITS
        if req.flags & ~(IRQ_SET_DATA_MASK | IRQ_SET_ACTION_MASK_BITS):
            raise invalid(f"DEVICE_SET_IRQS flags {req.flags:#x} has unknown bits")
        if kind not in (IRQ_SET_DATA_NONE, IRQ_SET_DATA_BOOL, IRQ_SET_DATA_EVENTFD):
            raise invalid("DEVICE_SET_IRQS needs exactly one DATA flag")
        if action not in (IRQ_SET_ACTION_MASK, IRQ_SET_ACTION_UNMASK, IRQ_SET_ACTION_TRIGGER):
            raise invalid("DEVICE_SET_IRQS needs exactly one ACTION flag")
        if req.index >= NUM_PCI_IRQS:
            raise invalid(f"IRQ index {req.index} does not exist")
        flags, available = self.device.irqs[req.index]
        if action != IRQ_SET_ACTION_TRIGGER and not flags & IRQ_INFO_MASKABLE:
            raise invalid(f"IRQ index {req.index} is not maskable")
        if kind != IRQ_SET_DATA_EVENTFD and frame.fds:
            raise invalid("file descriptors sent without DATA_EVENTFD")
        if req.count == 0:
            if kind != IRQ_SET_DATA_NONE or req.start or data:
                raise invalid("count 0 only disables the index: DATA_NONE, start 0, no data")
            for key in [k for k in self.irq_fds if k[0] == req.index and k[2] == action]:
                close_fds([self.irq_fds.pop(key)])
            return b""
        if req.start + req.count > available:
            raise invalid(f"IRQs {req.start}+{req.count} exceed the {available} of index {req.index}")
        if kind == IRQ_SET_DATA_NONE and data:
            raise invalid("DATA_NONE carries no data")
        if kind == IRQ_SET_DATA_BOOL and (len(data) != req.count or any(b > 1 for b in data)):
            raise invalid("DATA_BOOL carries one 0/1 byte per IRQ")
        if kind == IRQ_SET_DATA_EVENTFD and (data or len(frame.fds) not in (0, req.count)):
            raise invalid("DATA_EVENTFD carries one descriptor per IRQ (or none to unassign), no data")
        if kind == IRQ_SET_DATA_EVENTFD:
            replaced = sum((req.index, req.start + k, action) in self.irq_fds for k in range(req.count))
            self._room_for_fds(len(frame.fds), replaced)
            fds = list(frame.fds)
            frame.fds.clear()
            for k in range(req.count):
                old = self.irq_fds.pop((req.index, req.start + k, action), None)
                if old is not None:
                    close_fds([old])
                if fds:
                    self.irq_fds[(req.index, req.start + k, action)] = fds[k]
        elif req.index == INTX_IRQ and action in (IRQ_SET_ACTION_MASK, IRQ_SET_ACTION_UNMASK):
            chosen = kind == IRQ_SET_DATA_NONE or bool(data[0])
            if chosen:
                (self.irq_masked.add if action == IRQ_SET_ACTION_MASK else self.irq_masked.discard)(0)
        return b""

    # -- region accesses
    def _region_read(self, frame: Frame, payload: bytes) -> bytes:
        head, _ = decode_region_access(payload, write=False)
        limit = min(self.max_data_xfer, self.client_max_xfer)
        self.device.check_access(head.region, head.offset, head.count, False, limit)
        data = self.device.access(head.region, head.offset, head.count, None)
        return payload + data

    def _region_write(self, frame: Frame, payload: bytes) -> bytes:
        head, data = decode_region_access(payload, write=True)
        self.device.check_access(head.region, head.offset, head.count, True, self.max_data_xfer)
        self.device.access(head.region, head.offset, head.count, data)
        return payload[:16]

    def _write_multi(self, frame: Frame, payload: bytes) -> bytes:
        if not self.write_multiple:
            raise ProtocolError(errno.ENOTSUP, "write_multiple was not negotiated")
        entries = decode_write_multi(payload)
        for e in entries:  # all checked before any is applied
            self.device.check_access(e.region, e.offset, e.count, True, self.max_data_xfer)
        for e in entries:
            self.device.access(e.region, e.offset, e.count, e.data[: e.count])
        return U64.pack(len(entries))

    def _wrong_direction(self, frame: Frame, payload: bytes) -> bytes:
        raise invalid(f"{Command(frame.header.command).name} goes from server to client")

    def _reset(self, frame: Frame, payload: bytes) -> bytes:
        if payload:
            raise invalid("DEVICE_RESET carries no payload")
        self.device.reset()
        return b""

    # -- migration
    def _feature(self, frame: Frame, payload: bytes) -> bytes:
        head = FeatureHeader.unpack_head(payload)
        data = payload[FeatureHeader.STRUCT.size :]
        flags = head.flags
        if flags & ~FEATURE_KNOWN_BITS:
            raise invalid(f"DEVICE_FEATURE flags {flags:#x} has unknown bits")
        get, set_, probe = bool(flags & FEATURE_GET), bool(flags & FEATURE_SET), bool(flags & FEATURE_PROBE)
        if not (get or set_ or probe) or (get and set_ and not probe):
            raise invalid("DEVICE_FEATURE needs GET, SET or PROBE (GET and SET only with PROBE)")
        feature = flags & FEATURE_INDEX_MASK
        if feature not in (FEATURE_MIGRATION, FEATURE_MIG_DEVICE_STATE):
            raise ProtocolError(errno.ENOTSUP, f"device feature {feature} is not supported")
        if feature == FEATURE_MIGRATION and set_:
            raise invalid("the MIGRATION feature cannot be set")
        needed = 16 if not probe else FeatureHeader.STRUCT.size
        if head.argsz < needed:
            raise invalid(f"DEVICE_FEATURE argsz {head.argsz} is below {needed}")
        if probe:
            if data:
                raise invalid("a PROBE carries no data")
            return payload
        if feature == FEATURE_MIGRATION:
            if data:
                raise invalid("GET MIGRATION carries no data")
            return FeatureHeader(16, flags).pack() + U64.pack(MIGRATION_STOP_COPY)
        if get:
            if len(data) not in (0, MigStateData.STRUCT.size):
                raise invalid("GET MIG_DEVICE_STATE carries no data or an 8-byte placeholder")
            state = MigStateData(self.device.mig_state, NO_DATA_FD)
            return FeatureHeader(16, flags).pack() + state.pack()
        req = MigStateData.unpack_exact(data)
        try:
            goal = MigState(req.device_state)
        except ValueError:
            raise invalid(f"device state {req.device_state} does not exist") from None
        self.device.set_state(goal)
        return payload

    def _mig_read(self, frame: Frame, payload: bytes) -> bytes:
        req, _ = decode_mig_data(payload, write=False)
        if req.size > self.client_max_xfer:
            raise invalid(f"MIG_DATA_READ size {req.size} exceeds the client's {self.client_max_xfer}")
        if req.argsz < MigData.STRUCT.size + req.size:
            raise invalid(f"MIG_DATA_READ argsz {req.argsz} cannot hold {req.size} bytes")
        chunk = self.device.read_stream(req.size)
        return MigData(MigData.STRUCT.size + len(chunk), len(chunk)).pack() + chunk

    def _mig_write(self, frame: Frame, payload: bytes) -> bytes:
        req, data = decode_mig_data(payload, write=True)
        if req.size > self.max_data_xfer:
            raise invalid(f"MIG_DATA_WRITE size {req.size} exceeds {self.max_data_xfer}")
        if req.argsz < MigData.STRUCT.size + req.size:  # as libvfio-user: argsz covers the data
            raise invalid(f"MIG_DATA_WRITE argsz {req.argsz} is below {MigData.STRUCT.size + req.size}")
        self.device.write_stream(data)
        return b""


class SessionFactory(Protocol):
    """Makes the :class:`Session` of a new connection."""

    def __call__(self, device: Device, *, limits: Limits) -> Session: ...


# --------------------------------------------------------------------------- framing on a socket


class Stopper:
    """A stop flag that also wakes threads blocked in ``poll`` (through a pipe); :attr:`flag` is the
    same flag as one byte compiled code reads."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.flag = bytearray(1)
        self.fd, self._write = os.pipe()

    def set(self) -> None:
        if not self._event.is_set():
            self.flag[0] = 1
            self._event.set()
            with contextlib.suppress(OSError):
                os.write(self._write, b"x")

    def is_set(self) -> bool:
        return self._event.is_set()

    def close(self) -> None:
        close_fds([self.fd, self._write])


class Disconnect(Exception):
    """The connection ended (EOF, stall, stop request or a socket error)."""


RECEIVE_CHUNK = 256 << 10
"""Most bytes one read takes from a client's socket."""
REPLY_FLUSH = 1 << 20
"""Replies of one batch are sent once they reach this many bytes (so a pipelining client that sends
many large reads costs the server at most this much beside the message being handled)."""
_REPLY = struct.Struct("<HHIII")
_DONTWAIT = int(socket.MSG_DONTWAIT)
_CTRUNC = int(socket.MSG_CTRUNC)
"""Flags as plain integers: the socket module's are enum members, whose ``&`` costs microseconds."""
_ACCESS_MESSAGE = struct.Struct("<HHIIIQII")
"""A header followed by a region access (offset, region, count): REGION_READ and REGION_WRITE."""


class Connection:
    """Serves one client: reads messages in batches, handles them in order, answers a batch at once.

    A read takes whatever the client has sent (up to :data:`RECEIVE_CHUNK`),
    every complete message in it is handled, and their replies go out in
    one send before the next read, so a pipelining client costs two system
    calls per batch rather than per message. Region accesses that
    :meth:`Session.handle` would accept take a faster path that makes exactly
    its checks and gives its replies: on the Cython backend the compiled
    :attr:`path`, which between messages also does the reading and sending
    itself; on the model a direct path for configuration accesses of at most
    a dword. Everything else goes through :meth:`Session.handle`.

    File descriptors belong to the message that holds the last byte of the
    read that delivered them: the kernel ends a read with the data the
    descriptors were sent with, which a client sends in the same
    ``sendmsg`` as its message (as every client does).

    Waiting for the first byte of a message is unbounded (a quiet VMM is
    fine; closing the endpoint shuts the socket down, which ends the wait);
    once a message has begun, ``timeout`` seconds without a byte, or without
    the client reading its replies, disconnect it.
    """

    def __init__(self, sock: socket.socket, session: Session, stop: Stopper, timeout: float) -> None:
        self.sock = sock
        self.session = session
        self.stop = stop
        self.timeout = timeout
        self.max_payload = session.max_message - HEADER_SIZE
        self.rx = bytearray()
        self.chunk = memoryview(bytearray(RECEIVE_CHUNK))
        """Where each read lands (one buffer for the connection: a read allocates nothing)."""
        self.base = 0
        """Stream position of ``rx[0]``."""
        self.skip = 0
        """Bytes of an oversized message still to be drained."""
        self.fd_groups: deque[tuple[int, list[int], bool]] = deque()
        """(stream position of the last byte of the read that brought them, descriptors, truncated)."""
        self.out: list[bytes] = []
        self.out_size = 0
        self.direct_config = session.direct_config()
        self.path = session.device.compiled_path(stop.flag) if self.direct_config else None
        """The compiled hot path (a Cython-backed device whose session handles accesses as
        :class:`Session` does), or None: then the Python direct path."""
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
        self.poller.register(stop.fd, select.POLLIN)
        self.out_poller = select.poll()
        self.out_poller.register(sock, select.POLLOUT | select.POLLHUP | select.POLLERR)
        self.out_poller.register(stop.fd, select.POLLIN)

    def serve(self) -> None:
        """Until the client leaves; never raises for anything the client does.

        Between messages, with the compiled path, :meth:`_serve_compiled` lets it read and answer
        until a read brings something else; without it, a read that brings exactly one 32-byte
        message and nothing else (what a client waiting for each reply sends) is answered by
        :meth:`_single` without the batch machinery. Anything else goes through :meth:`_read` and
        :meth:`_process`.
        """
        receive = self.sock.recvmsg_into
        buffers = (self.chunk,)
        try:
            while True:
                if self.rx or self.skip:
                    self._read()
                elif self.path is not None and self.session.negotiated and not self.fd_groups:
                    if self._serve_compiled():
                        continue
                else:  # between messages: block until the client sends or the endpoint shuts down
                    length, ancdata, flags, _ = receive(buffers, _FD_ANCILLARY)
                    if self.stop.is_set():
                        raise Disconnect("server stopping")
                    if length == 32 and not ancdata and not flags and self._single():
                        continue
                    self._take(length, ancdata, flags, idle=True)
                self._process()
        except Disconnect as exc:
            log.debug("connection ended: %s", exc)
        except OSError as exc:  # reset by peer, ...
            log.debug("connection dropped: %s", exc)
        finally:
            for _, fds, _ in self.fd_groups:
                close_fds(fds)
            self.fd_groups.clear()

    # -- reading
    def _wait(self, poller: select.poll, what: str) -> None:
        """Until the socket is ready; a stop request or ``timeout`` seconds of nothing disconnect."""
        events = poller.poll(self.timeout * 1000)
        if self.stop.is_set():
            raise Disconnect("server stopping")
        if not events:
            raise Disconnect(what)

    def _read(self) -> None:
        """Read more of a message that has begun (``timeout`` seconds of silence disconnect)."""
        while True:
            try:
                length, ancdata, msg_flags, _ = self.sock.recvmsg_into(
                    (self.chunk,), _FD_ANCILLARY, _DONTWAIT
                )
            except BlockingIOError:
                self._wait(self.poller, "client stalled in the middle of a message")
                continue
            break
        self._take(length, ancdata, msg_flags, idle=False)

    def _serve_compiled(self) -> bool:
        """Let the compiled path serve until a read brings what it does not answer whole; True when
        nothing is left to process (only replies to send, which are sent here)."""
        assert self.path is not None
        session = self.session
        read_limit = min(session.max_data_xfer, session.client_max_xfer)
        length, consumed, handled, ancdata, flags, pending = self.path.serve(
            self.sock.fileno(), self.chunk, _FD_ANCILLARY, read_limit, session.max_data_xfer, REPLY_FLUSH
        )
        session.handled += handled
        self.base += consumed
        if pending:
            self.out.append(pending)
            self.out_size += len(pending)
        if self.stop.is_set():
            raise Disconnect("server stopping")
        if length and consumed == length:  # every message answered; the socket took part of the replies
            self._flush()
            return True
        self._take(length, ancdata, flags, idle=True, start=consumed)
        return False

    def _take(
        self,
        length: int,
        ancdata: list[tuple[int, int, bytes]],
        msg_flags: int,
        *,
        idle: bool,
        start: int = 0,
    ) -> None:
        """Append what a read brought (from ``start`` on) to the receive buffer, and its descriptors
        as a group."""
        fds: list[int] = []
        for level, kind, cdata in ancdata or ():
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(cdata[: len(cdata) - len(cdata) % received.itemsize])
                fds.extend(received)
        if not length:
            close_fds(fds)
            raise Disconnect("client closed the connection" + (" mid-message" if not idle else ""))
        self.rx += self.chunk[start:length]
        if fds or msg_flags & _CTRUNC:
            self.fd_groups.append((self.base + len(self.rx) - 1, fds, bool(msg_flags & _CTRUNC)))

    def _fds_for(self, start: int, end: int) -> tuple[list[int], bool]:
        """Descriptors of the message at stream positions [start, end]; earlier ones are closed."""
        fds: list[int] = []
        truncated = False
        while self.fd_groups and self.fd_groups[0][0] <= end:
            position, group, cut = self.fd_groups.popleft()
            if position < start:  # brought by a message already answered (an oversized one)
                close_fds(group)
                continue
            fds += group
            truncated = truncated or cut
        return fds, truncated

    # -- handling
    def _process(self) -> None:
        """Handle every complete message received, in order; send their replies."""
        rx = self.rx
        end = len(rx)
        pos = 0
        session = self.session
        device = session.device
        out = self.out
        # The direct path (see the class) needs a negotiated session and no descriptors in flight.
        direct = self.direct_config and session.negotiated and not self.fd_groups
        config_size = device.config_size
        client_max = session.client_max_xfer
        path = self.path
        while True:
            if self.skip:
                drop = min(self.skip, end - pos)
                pos += drop
                self.skip -= drop
                if self.skip:
                    break
            if end - pos < HEADER_SIZE:
                break
            if direct and path is not None:
                took, handled, replies = path.answer(
                    rx, pos, end, min(session.max_data_xfer, client_max), session.max_data_xfer,
                    max(1, REPLY_FLUSH - self.out_size),
                )  # fmt: skip
                if took:
                    session.handled += handled
                    pos += took
                    out.append(replies)
                    self.out_size += len(replies)
                    if self.out_size >= REPLY_FLUSH:
                        self._flush()
                    continue
            elif direct and end - pos >= _ACCESS_MESSAGE.size:
                msg_id, command, size, flags, error, offset, region, count = _ACCESS_MESSAGE.unpack_from(
                    rx, pos
                )
                if (
                    region == CONFIG_REGION
                    and flags == 0
                    and error == 0
                    and (count == 4 or count == 2 or count == 1)
                    and offset % 4 + count <= 4
                    and offset + count <= config_size
                    and count <= client_max
                    and (
                        (command == Command.REGION_READ and size == 32)
                        or (command == Command.REGION_WRITE and size == 32 + count)
                    )
                ):
                    if end - pos < size:
                        break
                    try:
                        if command == Command.REGION_READ:
                            data = device.config_read(offset, count)
                        else:
                            device.config_write(offset, bytes(rx[pos + 32 : pos + size]))
                            data = b""
                    except Exception:  # refused before changing anything: the general path answers
                        pass
                    else:
                        session.handled += 1
                        out.append(
                            _ACCESS_MESSAGE.pack(
                                msg_id, command, 32 + len(data), TYPE_REPLY, 0, offset, region, count
                            )
                            + data
                        )
                        pos += size
                        continue
            msg_id, command, size, flags, error = _REPLY.unpack_from(rx, pos)
            start = self.base + pos
            if size < HEADER_SIZE:
                consumed, body = HEADER_SIZE, b""
            elif size - HEADER_SIZE > self.max_payload:
                consumed, body = HEADER_SIZE, None
                self.skip = size - HEADER_SIZE  # drained as it comes; answered E2BIG now
            elif end - pos < size:
                break
            else:
                consumed, body = size, bytes(rx[pos + HEADER_SIZE : pos + size])
            fds, truncated = self._fds_for(start, start + consumed - 1) if self.fd_groups else ([], False)
            reply = session.handle(Frame(Header(msg_id, command, size, flags, error), body, fds, truncated))
            if reply is not None:
                out.append(reply)
                self.out_size += len(reply)
                if self.out_size >= REPLY_FLUSH:
                    self._flush()
            pos += consumed
            direct = self.direct_config and session.negotiated and not self.fd_groups
            client_max = session.client_max_xfer
        del rx[:pos]
        self.base += pos
        self._flush()

    def _single(self) -> bool:
        """Answer the one message in :attr:`chunk` if the direct path takes it (see the class):
        a REGION_READ of at most a dword of region 7; False leaves it to the general path."""
        session = self.session
        if not (self.direct_config and session.negotiated) or self.fd_groups or self.out or self.path:
            return False
        msg_id, command, size, flags, error, offset, region, count = _ACCESS_MESSAGE.unpack_from(self.chunk)
        device = session.device
        if not (
            command == Command.REGION_READ
            and size == 32
            and region == CONFIG_REGION
            and flags == 0
            and error == 0
            and (count == 4 or count == 2 or count == 1)
            and offset % 4 + count <= 4
            and offset + count <= device.config_size
            and count <= session.client_max_xfer
        ):
            return False
        try:
            data = device.config_read(offset, count)
        except Exception:  # refused before changing anything: the general path answers
            return False
        session.handled += 1
        self.base += 32
        self.out.append(
            _ACCESS_MESSAGE.pack(msg_id, command, 32 + count, TYPE_REPLY, 0, offset, region, count) + data
        )
        self._flush()
        return True

    def _flush(self) -> None:
        """Send the replies collected; a client that reads nothing for ``timeout`` seconds is dropped."""
        if not self.out:
            return
        data = self.out[0] if len(self.out) == 1 else b"".join(self.out)
        self.out.clear()
        self.out_size = 0
        try:
            sent = self.sock.send(data, _DONTWAIT)
        except BlockingIOError:
            sent = 0
        if sent == len(data):  # the common case: the whole batch fits the socket buffer
            return
        view = memoryview(data)[sent:]
        while view:
            try:
                view = view[self.sock.send(view, _DONTWAIT) :]
            except BlockingIOError:
                self._wait(self.out_poller, "client does not read its replies")


def serve_connection(
    conn: socket.socket,
    session: Session,
    stop: Stopper,
    timeout: float = DEFAULT_MESSAGE_TIMEOUT,
) -> None:
    """Serve one client until it leaves; never raises for anything the client does."""
    conn.setblocking(True)
    Connection(conn, session, stop, timeout).serve()


# --------------------------------------------------------------------------- listening


class Endpoint:
    """One device's socket and its serving thread."""

    def __init__(
        self, device: Device, path: Path, limits: Limits, session_factory: SessionFactory | None = None
    ) -> None:
        self.device = device
        self.session_factory = session_factory or Session
        self.path = path
        self.limits = limits
        self.timeout = limits.message_timeout
        self.stop = Stopper()
        self.listener = _listen(path)
        self.sessions_served = 0
        self.current: Session | None = None
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, name=f"vfio-user {path.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        poller.register(self.stop.fd, select.POLLIN)
        while not self.stop.is_set():
            try:
                poller.poll()
                if self.stop.is_set():
                    return
                conn, _ = self.listener.accept()
            except OSError as exc:  # EMFILE and the like: wait a little rather than spin
                if self.stop.is_set():
                    return
                log.warning("accept on %s failed: %s", self.path, exc)
                time.sleep(0.05)
                continue
            session = self.session_factory(self.device, limits=self.limits)
            self.current, self.conn = session, conn
            if self.stop.is_set():
                _shutdown(conn)
            try:
                serve_connection(conn, session, self.stop, self.timeout)
            except Exception:
                log.exception("unexpected error serving %s", self.path)
            finally:
                self.current, self.conn = None, None
                session.close()
                self.device.client_gone()
                self.sessions_served += 1
                conn.close()

    def close(self) -> None:
        self.stop.set()
        conn = self.conn
        if conn is not None:
            _shutdown(conn)  # ends a blocking wait for the next message
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
        self.listener.close()
        self.stop.close()
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                self.path.unlink()
        except OSError:
            pass


def _shutdown(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


def _listen(path: Path) -> socket.socket:
    """Bind a listening UNIX socket at ``path``; a stale socket file there is replaced."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody listens there: stale
        else:
            raise OSError(errno.EADDRINUSE, f"{path} is in use by another server")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(8)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class DeviceSpec:
    """A device to serve: its socket path and device type (BDF assigned in order from 00:02.0)."""

    path: Path
    dtype: DeviceType


class VfioUserServer:
    """Serves several VPCID instances of one data manager, one socket and thread each.

    ``limits`` (default: ``timeout`` and ``max_data_xfer`` with the other
    defaults) apply to each client; unless they set ``max_fds``, each
    client's descriptor budget is :func:`fd_budget` of the device count.
    ``session_factory`` makes each connection's :class:`Session` (tests
    inject faults with a subclass). ``manager_factory`` makes the data
    manager (default: :func:`choose_manager`). ``busy_poll_us``: how long
    the compiled path polls for a client's next message before the device's
    thread sleeps (default: :func:`busy_poll_from`; 0 sleeps at once).
    """

    def __init__(
        self,
        devices: Sequence[DeviceSpec],
        profile: Profile | None = None,
        vm: int = 1,
        timeout: float = DEFAULT_MESSAGE_TIMEOUT,
        max_data_xfer: int = DEFAULT_MAX_DATA_XFER,
        manager_factory: ManagerFactory | None = None,
        limits: Limits | None = None,
        session_factory: SessionFactory | None = None,
        busy_poll_us: int | None = None,
    ) -> None:
        busy_poll = busy_poll_from(busy_poll_us)
        if not devices:
            raise InvalidArgument("a server needs at least one device")
        if len(devices) > 30:
            raise InvalidArgument("at most 30 devices per server (BDFs 00:02.0-00:1f.0)")
        limits = limits or Limits(max_data_xfer=max_data_xfer, message_timeout=timeout)
        if limits.max_fds is None:
            limits = dataclasses.replace(limits, max_fds=fd_budget(len(devices)))
        self.limits = limits
        self.manager = (manager_factory or choose_manager())(profile or Profile())
        self.lock = new_lock(self.manager)
        self.vm = vm
        self.manager.create_vm(vm)
        self.devices: list[Device] = []
        self.endpoints: list[Endpoint] = []
        try:
            for n, spec in enumerate(devices):
                bdf = Bdf(0, 2 + n, 0)
                self.manager.plug(vm, bdf, spec.dtype)
                device = Device(self.manager, self.lock, vm, bdf, limits.max_stream, busy_poll)
                self.devices.append(device)
                self.endpoints.append(Endpoint(device, spec.path, limits, session_factory))
        except BaseException:
            self.close()
            raise

    def start(self) -> VfioUserServer:
        for endpoint in self.endpoints:
            endpoint.start()
        return self

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()

    def __enter__(self) -> VfioUserServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
