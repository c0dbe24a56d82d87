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
import math
import socket
import struct
import time
from collections import deque
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
    encode_error,
    encode_message,
    encode_write_multi,
    errno_name,
)

DEFAULT_TIMEOUT = 10.0
"""Seconds a reply may take, from the request to its last byte."""
SMALL_REPLY = 4096
"""Largest payload accepted in reply to a command whose reply has a fixed size (padding included)."""
VERSION_REPLY = 64 << 10
"""Largest VERSION reply payload accepted."""
REGION_INFO_ROOM = 64 << 10
"""Most room a DEVICE_GET_REGION_INFO reply may ask for (its capability chain)."""
MAX_STREAM = 1 << 30
"""Longest migration stream :meth:`VfioUserClient.save_stream` reads before declaring it endless."""
SERVER_COMMAND_PAYLOAD = (1 << 20) + 32
"""Largest payload of a command the server sends us (DMA_READ/DMA_WRITE) that is skipped and refused."""


class VfioUserError(OSError):
    """The server answered a command with an error reply (any payload it carried is ignored)."""

    def __init__(self, code: int, command: int) -> None:
        name = Command(command).name if command in Command._value2member_map_ else str(command)
        super().__init__(code, f"{name} failed: {errno_name(code)}")
        self.command = command


class ServerFault(Exception):
    """The connection cannot go on: the server broke the protocol, closed it, or went silent.

    Never an :class:`OSError`, so a broken socket is not taken for a broken
    standard output. After the first fault the client refuses every call.
    """


class ServerViolation(ServerFault):
    """The server broke the protocol (wrong reply, impossible sizes, garbage)."""


class ServerGone(ServerFault):
    """The server closed the connection, reset it, or sent no reply in time."""


@dataclass(frozen=True, slots=True)
class RegionDesc:
    """What DEVICE_GET_REGION_INFO says about one region."""

    index: int
    flags: int
    size: int
    offset: int


def reply_limit(command: int, payload: bytes) -> int:
    """The largest reply payload the client accepts for a request: what the protocol lets the
    server send, including the padding real servers add (libvfio-user pads MIG_DATA_READ replies
    to the requested size)."""
    if command == Command.REGION_READ and len(payload) >= RegionAccess.STRUCT.size:
        return RegionAccess.STRUCT.size + RegionAccess.unpack_head(payload).count
    if command == Command.MIG_DATA_READ and len(payload) >= MigData.STRUCT.size:
        return MigData.STRUCT.size + MigData.unpack_head(payload).size
    if command == Command.VERSION:
        return VERSION_REPLY
    if command == Command.DEVICE_GET_REGION_INFO:
        return REGION_INFO_ROOM
    return max(SMALL_REPLY, len(payload))


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
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
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
        self._deadline = 0.0
        self.max_data_xfer = max_data_xfer
        self.server: Capabilities = Capabilities()
        self.server_version = (0, 0)
        self.broken: str | None = None
        """Why the connection cannot be used any more (the first fault), or None."""
        self.server_commands = 0
        """Commands the server sent us (DMA_READ/DMA_WRITE), each refused with EINVAL."""
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

    def _fault(self, exc: ServerFault) -> ServerFault:
        """Record the first fault and close the socket: replies can no longer be matched to requests."""
        if self.broken is None:
            self.broken = str(exc)
        self.close()
        return exc

    def _usable(self) -> None:
        if self.broken is not None:
            raise ServerGone(f"{self.path}: the connection failed earlier: {self.broken}")

    def send(
        self, command: int, payload: bytes = b"", fds: Sequence[int] = (), no_reply: bool = False
    ) -> int:
        """Send one command; return its message ID."""
        self._usable()
        msg_id = self._msg_id()
        data = encode_message(msg_id, command, payload, TYPE_COMMAND | (FLAG_NO_REPLY if no_reply else 0))
        try:
            if fds:
                ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
                sent = self.sock.sendmsg([data], ancillary)
                if sent < len(data):
                    self.sock.sendall(data[sent:])
            else:
                self.sock.sendall(data)
        except BlockingIOError:
            raise self._fault(ServerGone(f"{self.path}: the server reads nothing")) from None
        except OSError as exc:
            raise self._fault(ServerGone(f"{self.path}: cannot send: {exc.strerror or exc}")) from None
        return msg_id

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (tests and the fuzzer use this to send malformed messages)."""
        self.sock.sendall(data)

    def _fill(self) -> None:
        """Read what the server has sent (at least one byte) into the receive buffer, before the deadline."""
        if time.monotonic() > self._deadline:
            raise self._fault(ServerGone(f"{self.path}: no complete reply within {self.timeout} s"))
        try:
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            raise self._fault(ServerGone(f"{self.path}: no reply within {self.timeout} s")) from None
        except OSError as exc:
            raise self._fault(ServerGone(f"{self.path}: {exc.strerror or exc}")) from None
        if not data:
            raise self._fault(ServerGone(f"{self.path}: the server closed the connection"))
        self._rx += data

    def read_message(self, limit: int = SMALL_REPLY) -> tuple[Header, bytes]:
        """Read one message of at most ``limit`` payload bytes from the server, checking its framing."""
        self._usable()
        self._deadline = time.monotonic() + self.timeout
        while len(self._rx) < HEADER_SIZE:
            self._fill()
        header = Header.unpack(self._rx[:HEADER_SIZE])
        if header.size < HEADER_SIZE:
            raise self._fault(ServerViolation(f"{self.path}: message_size {header.size} is below the header"))
        if header.size - HEADER_SIZE > limit:
            raise self._fault(
                ServerViolation(
                    f"{self.path}: a message of {header.size - HEADER_SIZE} payload bytes where at most "
                    f"{limit} can come (command {header.command})"
                )
            )
        while len(self._rx) < header.size:
            self._fill()
        payload = bytes(self._rx[HEADER_SIZE : header.size])
        del self._rx[: header.size]
        return header, payload

    def receive(self, msg_id: int, command: int, limit: int = SMALL_REPLY) -> bytes:
        """The reply to message ``msg_id``; raises :class:`VfioUserError` on an error reply.

        Commands the server sends in between (DMA_READ, DMA_WRITE: the
        protocol allows them) are answered with EINVAL, as no DMA region was
        mapped with access through the socket.
        """
        while True:
            header, payload = self.read_message(max(limit, SERVER_COMMAND_PAYLOAD))
            if header.kind == TYPE_COMMAND and not header.flags & (FLAG_ERROR | ~KNOWN_FLAGS):
                self.server_commands += 1
                if not header.no_reply:
                    self.send_raw_reply(header)
                continue
            break
        if header.kind != TYPE_REPLY or header.flags & ~KNOWN_FLAGS or header.flags & FLAG_NO_REPLY:
            raise self._fault(ServerViolation(f"{self.path}: expected a reply, got flags {header.flags:#x}"))
        if header.msg_id != msg_id or header.command != command:
            raise self._fault(
                ServerViolation(
                    f"{self.path}: reply to msg {header.msg_id:#x} cmd {header.command}, "
                    f"expected {msg_id:#x} cmd {command}"
                )
            )
        if len(payload) > limit:
            raise self._fault(
                ServerViolation(
                    f"{self.path}: a reply of {len(payload)} bytes where at most {limit} can come"
                )
            )
        if header.flags & FLAG_ERROR:
            raise VfioUserError(header.error or errno.EIO, command)
        return payload

    def send_raw_reply(self, request: Header) -> None:
        """Refuse a command the server sent (EINVAL), as a reply on the same socket."""
        try:
            self.sock.sendall(encode_error(request, errno.EINVAL))
        except OSError as exc:
            raise self._fault(ServerGone(f"{self.path}: cannot send: {exc.strerror or exc}")) from None

    def call(self, command: int, payload: bytes = b"", fds: Sequence[int] = ()) -> bytes:
        """Send a command and wait for its reply."""
        return self.receive(self.send(command, payload, fds), command, reply_limit(command, payload))

    def pipeline(
        self, requests: Sequence[tuple[int, bytes]], window: int = 64
    ) -> list[bytes | VfioUserError]:
        """Send ``requests`` keeping up to ``window`` in flight; replies (or errors) in order."""
        results: list[bytes | VfioUserError] = []
        pending: deque[tuple[int, int, int]] = deque()
        for command, payload in requests:
            if len(pending) >= window:
                results.append(self._settle(*pending.popleft()))
            pending.append((self.send(command, payload), command, reply_limit(command, payload)))
        while pending:
            results.append(self._settle(*pending.popleft()))
        return results

    def _settle(self, msg_id: int, command: int, limit: int) -> bytes | VfioUserError:
        try:
            return self.receive(msg_id, command, limit)
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
            raise self._fault(ServerViolation(f"{self.path}: VERSION reply: {exc}")) from None
        if reply.major != PROTOCOL_MAJOR or reply.minor > PROTOCOL_MINOR:
            raise self._fault(
                ServerViolation(f"{self.path}: server answered version {reply.major}.{reply.minor}")
            )
        self.server = reply.capabilities
        self.server_version = (reply.major, reply.minor)
        return reply

    @property
    def max_transfer(self) -> int:
        """The largest ``count`` this connection may use in either direction."""
        return min(self.max_data_xfer, self.server.max_data_xfer_size)

    def device_info(self) -> DeviceInfo:
        reply = self.call(Command.DEVICE_GET_INFO, DeviceInfo(DeviceInfo.STRUCT.size, 0, 0, 0).pack())
        return self._decode(DeviceInfo, reply)

    def region_info(self, index: int) -> RegionDesc:
        """Region ``index``; asks again with more room when the server needs it (capabilities)."""
        argsz = RegionInfo.STRUCT.size
        for _ in range(3):
            request = RegionInfo(argsz, 0, index, 0, 0, 0).pack()
            reply = self.call(Command.DEVICE_GET_REGION_INFO, request)
            info = self._decode(RegionInfo, reply[: RegionInfo.STRUCT.size])
            if info.argsz > argsz:
                if info.argsz > REGION_INFO_ROOM:
                    raise self._fault(
                        ServerViolation(f"{self.path}: region {index} info needs {info.argsz} bytes")
                    )
                argsz = info.argsz
                continue
            if info.index != index:
                raise self._fault(
                    ServerViolation(f"{self.path}: region info for {info.index}, asked for {index}")
                )
            return RegionDesc(index, info.flags, info.size, info.offset)
        raise self._fault(ServerViolation(f"{self.path}: region info keeps asking for more room"))

    def irq_info(self, index: int) -> IrqInfo:
        reply = self.call(Command.DEVICE_GET_IRQ_INFO, IrqInfo(IrqInfo.STRUCT.size, 0, index, 0).pack())
        return self._decode(IrqInfo, reply)

    def supports_reset(self) -> bool:
        return bool(self.device_info().flags & DEVICE_FLAGS_RESET)

    # -- regions
    def region_read(self, region: int, offset: int, count: int) -> bytes:
        reply = self.call(Command.REGION_READ, RegionAccess(offset, region, count).pack())
        return self.read_reply(reply, region, offset, count)

    def read_reply(self, reply: bytes, region: int, offset: int, count: int) -> bytes:
        """The data of a REGION_READ reply, checked against its request."""
        head = self._decode(RegionAccess, reply[:16])
        data = reply[16:]
        if (head.offset, head.region, head.count) != (offset, region, count) or len(data) != count:
            raise self._fault(
                ServerViolation(
                    f"{self.path}: REGION_READ reply for region {head.region} {head.offset:#x}+{head.count} "
                    f"with {len(data)} bytes, asked for region {region} {offset:#x}+{count}"
                )
            )
        return data

    def region_write(self, region: int, offset: int, data: bytes) -> None:
        reply = self.call(Command.REGION_WRITE, RegionAccess(offset, region, len(data)).pack() + data)
        self.write_reply(reply, region, offset, len(data))

    def write_reply(self, reply: bytes, region: int, offset: int, count: int) -> None:
        """Check a REGION_WRITE reply: the access echoed (data the server may add is ignored)."""
        head = self._decode(RegionAccess, reply[:16])
        if (head.offset, head.region, head.count) != (offset, region, count):
            raise self._fault(ServerViolation(f"{self.path}: REGION_WRITE reply does not echo the access"))

    def write_multi(self, writes: list[tuple[int, int, bytes]]) -> int:
        reply = self.call(Command.REGION_WRITE_MULTI, encode_write_multi(writes))
        if len(reply) != 8:
            raise self._fault(ServerViolation(f"{self.path}: REGION_WRITE_MULTI reply is not wr_cnt"))
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
        got = self._decode(DmaUnmap, reply[: DmaUnmap.STRUCT.size])
        if (got.addr, got.size) != (addr, size):
            raise self._fault(ServerViolation(f"{self.path}: DMA_UNMAP reply is not the unmapped region"))

    def set_irqs(
        self, index: int, flags: int, start: int, count: int, data: bytes = b"", fds: Sequence[int] = ()
    ) -> None:
        payload = IrqSet(IrqSet.STRUCT.size + len(data), flags, index, start, count).pack() + data
        self.call(Command.DEVICE_SET_IRQS, payload, fds)

    # -- migration v2
    def migration_flags(self) -> int:
        """The MIGRATION feature's flags; raises :class:`VfioUserError` if migration is unsupported."""
        reply = self.call(Command.DEVICE_FEATURE, FeatureHeader(16, FEATURE_GET | FEATURE_MIGRATION).pack())
        if len(reply) < 16:
            raise self._fault(
                ServerViolation(f"{self.path}: GET MIGRATION reply is {len(reply)} bytes, not 16")
            )
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
        if len(reply) < 16:
            raise self._fault(
                ServerViolation(f"{self.path}: GET MIG_DEVICE_STATE reply is {len(reply)} bytes")
            )
        state = MigStateData.unpack_head(reply[8:]).device_state
        try:
            return MigState(state)
        except ValueError:
            raise self._fault(ServerViolation(f"{self.path}: device state {state} does not exist")) from None

    def set_mig_state(self, state: MigState) -> None:
        flags = FEATURE_SET | FEATURE_MIG_DEVICE_STATE
        self.call(
            Command.DEVICE_FEATURE, FeatureHeader(16, flags).pack() + MigStateData(state, 0xFFFF_FFFF).pack()
        )

    def mig_read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the stream; fewer mean the end.

        The reply's ``size`` says how many bytes are data; a server may pad
        the reply up to the size asked for (libvfio-user does), and the
        padding is ignored.
        """
        reply = self.call(Command.MIG_DATA_READ, MigData(8 + size, size).pack())
        head = self._decode(MigData, reply[:8])
        if head.size > size or head.size > len(reply) - 8:
            raise self._fault(
                ServerViolation(
                    f"{self.path}: MIG_DATA_READ reply says {head.size} bytes, carries {len(reply) - 8}, "
                    f"asked for {size}"
                )
            )
        return reply[8 : 8 + head.size]

    def mig_write(self, data: bytes) -> None:
        self.call(Command.MIG_DATA_WRITE, MigData(8 + len(data), len(data)).pack() + data)

    @property
    def migration_chunk(self) -> int:
        """Bytes per MIG_DATA_READ/WRITE: the most both sides announced (``max_data_xfer_size``)."""
        return self.max_transfer

    def save_stream(self, *, resume: bool = True, chunk: int | None = None, limit: int = MAX_STREAM) -> bytes:
        """STOP_COPY, read the stream until a short read, then back to RUNNING (unless ``resume`` is off)."""
        size = chunk or self.migration_chunk
        self.set_mig_state(MigState.STOP_COPY)
        out = bytearray()
        try:
            while True:
                data = self.mig_read(size)
                out += data
                if len(data) < size:
                    break
                if len(out) > limit:
                    raise self._fault(
                        ServerViolation(f"{self.path}: migration stream longer than {limit} bytes")
                    )
        finally:
            if resume and self.broken is None:
                self.set_mig_state(MigState.RUNNING)
        return bytes(out)

    def restore_stream(self, blob: bytes, *, chunk: int | None = None) -> None:
        """RESUMING, write the stream, then RUNNING (which commits it); errors leave the device stopped."""
        size = chunk or self.migration_chunk
        self.set_mig_state(MigState.RESUMING)
        for start in range(0, len(blob), size):
            self.mig_write(blob[start : start + size])
        self.set_mig_state(MigState.RUNNING)

    def _decode(self, cls: type[F], data: bytes) -> F:
        """A fixed reply structure; a wrong size is the server's fault."""
        try:
            return cls.unpack_exact(data)
        except ProtocolError as exc:
            raise self._fault(ServerViolation(f"{self.path}: {cls.NAME} reply: {exc.message}")) from None


F = TypeVar("F", bound=Fixed)


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
