"""A vfio-user client: what a VMM sends to a device server, over a UNIX socket.

Synchronous calls (:meth:`VfioUserClient.call`) and pipelining
(:meth:`VfioUserClient.pipeline`): the protocol lets a client send several
commands before reading the replies, which the server answers in order.
The client trusts nothing: every reply is checked against the request
(message ID, command, type, sizes) and a server that breaks the protocol
raises :class:`ServerViolation`; an error reply raises
:class:`VfioUserError` with its errno.
"""

from __future__ import annotations

import array
import contextlib
import errno
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from vpcid.adapters.vfio_user.protocol import (
    CONFIG_REGION,
    DEFAULT_MAX_DATA_XFER,
    DEVICE_FLAGS_RESET,
    FEATURE_GET,
    FEATURE_MIG_DEVICE_STATE,
    FEATURE_MIGRATION,
    FEATURE_SET,
    FLAG_ERROR,
    FLAG_NO_REPLY,
    HEADER_SIZE,
    KNOWN_FLAGS,
    MIGRATION_STOP_COPY,
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    SERVER_MAX_MSG_FDS,
    TYPE_COMMAND,
    TYPE_REPLY,
    U64,
    Capabilities,
    Command,
    DeviceInfo,
    DmaMap,
    DmaUnmap,
    FeatureHeader,
    Fixed,
    Header,
    IrqInfo,
    IrqSet,
    MigData,
    MigState,
    MigStateData,
    ProtocolError,
    RegionAccess,
    RegionInfo,
    Version,
    encode_message,
    encode_write_multi,
    errno_name,
)

DEFAULT_TIMEOUT = 10.0
MAX_REPLY = 64 << 20
"""Largest reply the client accepts before declaring the server broken."""


class VfioUserError(OSError):
    """The server answered a command with an error reply."""

    def __init__(self, code: int, command: int) -> None:
        name = Command(command).name if command in Command._value2member_map_ else str(command)
        super().__init__(code, f"{name} failed: {errno_name(code)}")
        self.command = command


class ServerViolation(Exception):
    """The server broke the protocol (wrong reply, bad sizes, garbage); the connection is unusable."""


@dataclass(frozen=True, slots=True)
class RegionDesc:
    """What DEVICE_GET_REGION_INFO says about one region."""

    index: int
    flags: int
    size: int
    offset: int


class VfioUserClient:
    """One connection to one vfio-user device."""

    def __init__(
        self,
        path: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = 5.0,
        max_data_xfer: int = DEFAULT_MAX_DATA_XFER,
        write_multiple: bool = True,
        negotiate: bool = True,
    ) -> None:
        self.path = path
        self.sock = _connect(path, connect_timeout)
        self.timeout = timeout
        # Kernel timeouts rather than socket.settimeout: CPython polls before every call on a socket
        # with a timeout, which doubles the system calls of a round trip.
        seconds, micro = int(timeout), int((timeout - int(timeout)) * 1e6)
        timeval = struct.pack("ll", seconds, micro)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self._next_id = 0
        self._rx = bytearray()
        self.max_data_xfer = max_data_xfer
        self.server: Capabilities = Capabilities()
        self.server_version = (0, 0)
        if negotiate:
            try:
                self.negotiate(write_multiple=write_multiple)
            except BaseException:
                self.close()
                raise

    # -- transport
    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> VfioUserClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _msg_id(self) -> int:
        self._next_id = (self._next_id + 1) & 0xFFFF
        return self._next_id

    def send(
        self, command: int, payload: bytes = b"", fds: Sequence[int] = (), no_reply: bool = False
    ) -> int:
        """Send one command; return its message ID."""
        msg_id = self._msg_id()
        data = encode_message(msg_id, command, payload, TYPE_COMMAND | (FLAG_NO_REPLY if no_reply else 0))
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
            sent = self.sock.sendmsg([data], ancillary)
            if sent < len(data):
                self.sock.sendall(data[sent:])
        else:
            self.sock.sendall(data)
        return msg_id

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (tests and the fuzzer use this to send malformed messages)."""
        self.sock.sendall(data)

    def _fill(self) -> None:
        """Read what the server has sent (at least one byte) into the receive buffer."""
        try:
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            raise TimeoutError(f"no reply from {self.path} within {self.timeout} s") from None
        if not data:
            raise ConnectionResetError("the server closed the connection")
        self._rx += data

    def read_message(self) -> tuple[Header, bytes]:
        """Read one message from the server, checking its framing."""
        while len(self._rx) < HEADER_SIZE:
            self._fill()
        header = Header.unpack(self._rx[:HEADER_SIZE])
        if header.size < HEADER_SIZE or header.size > MAX_REPLY:
            raise ServerViolation(f"reply message_size {header.size} is impossible")
        while len(self._rx) < header.size:
            self._fill()
        payload = bytes(self._rx[HEADER_SIZE : header.size])
        del self._rx[: header.size]
        return header, payload

    def receive(self, msg_id: int, command: int) -> bytes:
        """The reply to message ``msg_id``; raises :class:`VfioUserError` on an error reply."""
        header, payload = self.read_message()
        if header.kind != TYPE_REPLY or header.flags & ~KNOWN_FLAGS or header.flags & FLAG_NO_REPLY:
            raise ServerViolation(f"expected a reply, got flags {header.flags:#x}")
        if header.msg_id != msg_id or header.command != command:
            raise ServerViolation(
                f"reply to msg {header.msg_id:#x} cmd {header.command}, expected {msg_id:#x} cmd {command}"
            )
        if header.flags & FLAG_ERROR:
            if payload:
                raise ServerViolation("an error reply carries a payload")
            raise VfioUserError(header.error or errno.EIO, command)
        return payload

    def call(self, command: int, payload: bytes = b"", fds: Sequence[int] = ()) -> bytes:
        """Send a command and wait for its reply."""
        return self.receive(self.send(command, payload, fds), command)

    def pipeline(
        self, requests: Sequence[tuple[int, bytes]], window: int = 64
    ) -> list[bytes | VfioUserError]:
        """Send ``requests`` keeping up to ``window`` in flight; replies (or errors) in order."""
        results: list[bytes | VfioUserError] = []
        pending: list[tuple[int, int]] = []
        for command, payload in requests:
            if len(pending) >= window:
                results.append(self._settle(*pending.pop(0)))
            pending.append((self.send(command, payload), command))
        for msg_id, command in pending:
            results.append(self._settle(msg_id, command))
        return results

    def _settle(self, msg_id: int, command: int) -> bytes | VfioUserError:
        try:
            return self.receive(msg_id, command)
        except VfioUserError as exc:
            return exc

    # -- negotiation and information
    def negotiate(self, *, write_multiple: bool = True) -> Version:
        caps: dict[str, object] = {
            "max_msg_fds": SERVER_MAX_MSG_FDS,
            "max_data_xfer_size": self.max_data_xfer,
            "pgsizes": 4096,
        }
        if write_multiple:
            caps["write_multiple"] = True
        request = Version(PROTOCOL_MAJOR, PROTOCOL_MINOR, Capabilities(), {"capabilities": caps})
        try:
            reply = Version.unpack(self.call(Command.VERSION, request.pack()))
        except ProtocolError as exc:
            raise ServerViolation(f"VERSION reply: {exc}") from None
        if reply.major != PROTOCOL_MAJOR or reply.minor > PROTOCOL_MINOR:
            raise ServerViolation(f"server answered version {reply.major}.{reply.minor}")
        self.server = reply.capabilities
        self.server_version = (reply.major, reply.minor)
        return reply

    @property
    def max_transfer(self) -> int:
        """The largest ``count`` this connection may use in either direction."""
        return min(self.max_data_xfer, self.server.max_data_xfer_size)

    def device_info(self) -> DeviceInfo:
        reply = self.call(Command.DEVICE_GET_INFO, DeviceInfo(DeviceInfo.STRUCT.size, 0, 0, 0).pack())
        return _decode(DeviceInfo, reply)

    def region_info(self, index: int) -> RegionDesc:
        """Region ``index``; asks again with more room when the server needs it (capabilities)."""
        argsz = RegionInfo.STRUCT.size
        for _ in range(3):
            request = RegionInfo(argsz, 0, index, 0, 0, 0).pack()
            reply = self.call(Command.DEVICE_GET_REGION_INFO, request)
            info = _decode(RegionInfo, reply[: RegionInfo.STRUCT.size])
            if info.argsz > argsz:
                argsz = info.argsz
                continue
            if info.index != index:
                raise ServerViolation(f"region info for {info.index}, asked for {index}")
            return RegionDesc(index, info.flags, info.size, info.offset)
        raise ServerViolation("region info keeps asking for more room")

    def irq_info(self, index: int) -> IrqInfo:
        reply = self.call(Command.DEVICE_GET_IRQ_INFO, IrqInfo(IrqInfo.STRUCT.size, 0, index, 0).pack())
        return _decode(IrqInfo, reply)

    def supports_reset(self) -> bool:
        return bool(self.device_info().flags & DEVICE_FLAGS_RESET)

    # -- regions
    def region_read(self, region: int, offset: int, count: int) -> bytes:
        reply = self.call(Command.REGION_READ, RegionAccess(offset, region, count).pack())
        head = _decode(RegionAccess, reply[:16])
        data = reply[16:]
        if (head.offset, head.region, head.count) != (offset, region, count) or len(data) != count:
            raise ServerViolation(f"REGION_READ reply {head} with {len(data)} bytes for {offset:#x}+{count}")
        return data

    def region_write(self, region: int, offset: int, data: bytes) -> None:
        reply = self.call(Command.REGION_WRITE, RegionAccess(offset, region, len(data)).pack() + data)
        if len(reply) != 16 or RegionAccess.unpack_exact(reply).count != len(data):
            raise ServerViolation("REGION_WRITE reply does not echo the access")

    def write_multi(self, writes: list[tuple[int, int, bytes]]) -> int:
        reply = self.call(Command.REGION_WRITE_MULTI, encode_write_multi(writes))
        if len(reply) != 8:
            raise ServerViolation("REGION_WRITE_MULTI reply is not wr_cnt")
        count: int = U64.unpack(reply)[0]
        return count

    def config_read(self, offset: int, count: int) -> bytes:
        return self.region_read(CONFIG_REGION, offset, count)

    def config_write(self, offset: int, data: bytes) -> None:
        self.region_write(CONFIG_REGION, offset, data)

    def reset(self) -> None:
        self.call(Command.DEVICE_RESET)

    # -- DMA and IRQ bookkeeping
    def dma_map(self, addr: int, size: int, flags: int = 3, offset: int = 0, fd: int | None = None) -> None:
        self.call(Command.DMA_MAP, DmaMap(32, flags, offset, addr, size).pack(), () if fd is None else (fd,))

    def dma_unmap(self, addr: int, size: int) -> None:
        reply = self.call(Command.DMA_UNMAP, DmaUnmap(24, 0, addr, size).pack())
        got = _decode(DmaUnmap, reply)
        if (got.addr, got.size) != (addr, size):
            raise ServerViolation("DMA_UNMAP reply is not the unmapped region")

    def set_irqs(
        self, index: int, flags: int, start: int, count: int, data: bytes = b"", fds: Sequence[int] = ()
    ) -> None:
        payload = IrqSet(IrqSet.STRUCT.size + len(data), flags, index, start, count).pack() + data
        self.call(Command.DEVICE_SET_IRQS, payload, fds)

    # -- migration v2
    def migration_flags(self) -> int:
        """The MIGRATION feature's flags; raises :class:`VfioUserError` if migration is unsupported."""
        reply = self.call(Command.DEVICE_FEATURE, FeatureHeader(16, FEATURE_GET | FEATURE_MIGRATION).pack())
        if len(reply) != 16:
            raise ServerViolation("GET MIGRATION reply is not 16 bytes")
        flags: int = U64.unpack_from(reply, 8)[0]
        return flags

    def supports_migration(self) -> bool:
        try:
            return bool(self.migration_flags() & MIGRATION_STOP_COPY)
        except VfioUserError:
            return False

    def mig_state(self) -> MigState:
        reply = self.call(
            Command.DEVICE_FEATURE, FeatureHeader(16, FEATURE_GET | FEATURE_MIG_DEVICE_STATE).pack()
        )
        if len(reply) != 16:
            raise ServerViolation("GET MIG_DEVICE_STATE reply is not 16 bytes")
        state = MigStateData.unpack_exact(reply[8:]).device_state
        try:
            return MigState(state)
        except ValueError:
            raise ServerViolation(f"device state {state} does not exist") from None

    def set_mig_state(self, state: MigState) -> None:
        flags = FEATURE_SET | FEATURE_MIG_DEVICE_STATE
        self.call(
            Command.DEVICE_FEATURE, FeatureHeader(16, flags).pack() + MigStateData(state, 0xFFFF_FFFF).pack()
        )

    def mig_read(self, size: int) -> bytes:
        reply = self.call(Command.MIG_DATA_READ, MigData(8 + size, size).pack())
        head = _decode(MigData, reply[:8])
        data = reply[8:]
        if head.size != len(data) or head.size > size or head.argsz != 8 + len(data):
            raise ServerViolation("MIG_DATA_READ reply sizes disagree")
        return data

    def mig_write(self, data: bytes) -> None:
        self.call(Command.MIG_DATA_WRITE, MigData(8 + len(data), len(data)).pack() + data)

    def save_stream(self, *, resume: bool = True, chunk: int | None = None) -> bytes:
        """STOP_COPY, read the stream until a short read, then back to RUNNING (unless ``resume`` is off)."""
        size = chunk or min(self.max_transfer, 1 << 16)
        self.set_mig_state(MigState.STOP_COPY)
        out = bytearray()
        try:
            while True:
                data = self.mig_read(size)
                out += data
                if len(data) < size:
                    break
                if len(out) > MAX_REPLY * 16:
                    raise ServerViolation("migration stream does not end")
        finally:
            if resume:
                self.set_mig_state(MigState.RUNNING)
        return bytes(out)

    def restore_stream(self, blob: bytes, *, chunk: int | None = None) -> None:
        """RESUMING, write the stream, then RUNNING (which commits it); errors leave the device stopped."""
        size = chunk or min(self.max_transfer, 1 << 16)
        self.set_mig_state(MigState.RESUMING)
        for start in range(0, len(blob), size):
            self.mig_write(blob[start : start + size])
        self.set_mig_state(MigState.RUNNING)


F = TypeVar("F", bound=Fixed)


def _decode(cls: type[F], data: bytes) -> F:
    """A fixed reply structure; a wrong size is the server's fault."""
    try:
        return cls.unpack_exact(data)
    except ProtocolError as exc:
        raise ServerViolation(f"{cls.NAME} reply: {exc.message}") from None


def _connect(path: str, timeout: float) -> socket.socket:
    """Connect to a UNIX socket, retrying while the server is still starting."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
        except BaseException:
            sock.close()
            raise
