"""The vfio-user wire format: message header, payload structures, typed decode errors.

Written from QEMU's ``docs/interop/vfio-user.rst`` (protocol 0.x); the mapping
of VPCIDs onto it is ``spec/formats/vfio-user.md``. Everything is
little-endian (the host order of every machine this runs on) over a UNIX
stream socket; file descriptors travel as ``SCM_RIGHTS``.

Decoders are strict: a payload of the wrong length, a reserved field that is
not zero or a value out of range raises :class:`ProtocolError` carrying the
errno a server answers with. Nothing here touches a socket.
"""

from __future__ import annotations

import errno
import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, TypeVar

HEADER = struct.Struct("<HHIII")
"""msg_id u16, command u16, message_size u32 (header included), flags u32, error u32."""
HEADER_SIZE = HEADER.size

PROTOCOL_MAJOR = 0
PROTOCOL_MINOR = 2
"""The version this implementation speaks; QEMU's client proposes 0.0, libvfio-user speaks 0.2."""

DEFAULT_MAX_DATA_XFER = 1 << 20
"""``max_data_xfer_size`` a peer assumes when the other side does not state one."""
DEFAULT_MAX_MSG_FDS = 1
"""``max_msg_fds`` a peer assumes when the other side does not state one."""
SERVER_MAX_MSG_FDS = 8
"""File descriptors this implementation accepts in one message."""
PAGE_SIZE = 4096
"""The one DMA page size supported (``pgsizes``)."""
MAX_DMA_MAPS = 65535
MAX_JSON_DEPTH = 8
"""Deepest nesting of objects and arrays a VERSION JSON document may have (the protocol's is 3)."""
MAX_VERSION_JSON = 4096
"""Largest VERSION JSON text accepted (the protocol's documents are a few hundred bytes)."""

# Header flags.
TYPE_MASK = 0xF
TYPE_COMMAND = 0x0
TYPE_REPLY = 0x1
FLAG_NO_REPLY = 0x10
FLAG_ERROR = 0x20
KNOWN_FLAGS = TYPE_MASK | FLAG_NO_REPLY | FLAG_ERROR


class Command(IntEnum):
    """Message command IDs (the Commands table of the protocol document)."""

    VERSION = 1
    DMA_MAP = 2
    DMA_UNMAP = 3
    DEVICE_GET_INFO = 4
    DEVICE_GET_REGION_INFO = 5
    DEVICE_GET_REGION_IO_FDS = 6
    DEVICE_GET_IRQ_INFO = 7
    DEVICE_SET_IRQS = 8
    REGION_READ = 9
    REGION_WRITE = 10
    DMA_READ = 11
    DMA_WRITE = 12
    DEVICE_RESET = 13
    REGION_WRITE_MULTI = 15
    DEVICE_FEATURE = 16
    MIG_DATA_READ = 17
    MIG_DATA_WRITE = 18


KNOWN_COMMANDS = frozenset(int(c) for c in Command)

# DEVICE_GET_INFO flags.
DEVICE_FLAGS_RESET = 0x1
DEVICE_FLAGS_PCI = 0x2

# PCI region indices.
BAR0_REGION = 0
ROM_REGION = 6
CONFIG_REGION = 7
VGA_REGION = 8
NUM_PCI_REGIONS = 9

# DEVICE_GET_REGION_INFO flags.
REGION_READ_FLAG = 0x1
REGION_WRITE_FLAG = 0x2
REGION_MMAP_FLAG = 0x4
REGION_CAPS_FLAG = 0x8

# IRQ indices and info flags.
INTX_IRQ, MSI_IRQ, MSIX_IRQ, ERR_IRQ, REQ_IRQ = 0, 1, 2, 3, 4
NUM_PCI_IRQS = 5
IRQ_INFO_EVENTFD, IRQ_INFO_MASKABLE, IRQ_INFO_AUTOMASKED, IRQ_INFO_NORESIZE = 0x1, 0x2, 0x4, 0x8

# DEVICE_SET_IRQS flags: exactly one data bit and one action bit.
IRQ_SET_DATA_NONE, IRQ_SET_DATA_BOOL, IRQ_SET_DATA_EVENTFD = 0x1, 0x2, 0x4
IRQ_SET_ACTION_MASK, IRQ_SET_ACTION_UNMASK, IRQ_SET_ACTION_TRIGGER = 0x8, 0x10, 0x20
IRQ_SET_DATA_MASK = 0x7
IRQ_SET_ACTION_MASK_BITS = 0x38

# DMA_MAP flags.
DMA_READ_FLAG, DMA_WRITE_FLAG = 0x1, 0x2

# DEVICE_FEATURE.
FEATURE_INDEX_MASK = 0xFFFF
FEATURE_GET = 1 << 16
FEATURE_SET = 1 << 17
FEATURE_PROBE = 1 << 18
FEATURE_KNOWN_BITS = FEATURE_INDEX_MASK | FEATURE_GET | FEATURE_SET | FEATURE_PROBE
FEATURE_MIGRATION = 1
FEATURE_MIG_DEVICE_STATE = 2
MIGRATION_STOP_COPY, MIGRATION_P2P, MIGRATION_PRE_COPY = 0x1, 0x2, 0x4
NO_DATA_FD = 0xFFFF_FFFF
"""``data_fd`` is unused in vfio-user; replies carry -1."""


class MigState(IntEnum):
    """Device states of the VFIO migration v2 state machine."""

    ERROR = 0
    STOP = 1
    RUNNING = 2
    STOP_COPY = 3
    RESUMING = 4
    RUNNING_P2P = 5
    PRE_COPY = 6
    PRE_COPY_P2P = 7


WRITE_MULTI_MAX = 200
"""Most writes one REGION_WRITE_MULTI may carry (QEMU's limit)."""
WRITE_MULTI_DATA = 8

ERRNO_NAMES = {
    errno.EINVAL: "EINVAL",
    errno.ENOSYS: "ENOSYS",
    errno.ENOTSUP: "ENOTSUP",
    errno.E2BIG: "E2BIG",
    errno.EEXIST: "EEXIST",
    errno.ENOENT: "ENOENT",
    errno.ENOSPC: "ENOSPC",
    errno.EBADMSG: "EBADMSG",
    errno.EIO: "EIO",
}
"""Every errno the vpcid server answers with (spec/formats/vfio-user.md)."""
SERVER_ERRNOS = frozenset(ERRNO_NAMES)


def errno_name(code: int) -> str:
    """``EINVAL`` for 22, and so on; unknown codes print as their number."""
    return ERRNO_NAMES.get(code) or errno.errorcode.get(code, str(code))


class ProtocolError(Exception):
    """A message breaks the protocol; ``errno`` is what the peer is answered with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{errno_name(code)}: {message}")
        self.errno = code
        self.message = message


def invalid(message: str) -> ProtocolError:
    """The common case: ``EINVAL`` with a reason."""
    return ProtocolError(errno.EINVAL, message)


# --------------------------------------------------------------------------- header


@dataclass(frozen=True, slots=True)
class Header:
    """The 16-byte header of every message."""

    msg_id: int
    command: int
    size: int
    flags: int
    error: int = 0

    def pack(self) -> bytes:
        return HEADER.pack(self.msg_id, self.command, self.size, self.flags, self.error)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> Header:
        """Decode exactly 16 bytes (any field values; see :func:`check_command_header`)."""
        if len(data) != HEADER_SIZE:
            raise invalid(f"a header is {HEADER_SIZE} bytes, not {len(data)}")
        return cls(*HEADER.unpack(data))

    @property
    def kind(self) -> int:
        return self.flags & TYPE_MASK

    @property
    def no_reply(self) -> bool:
        return bool(self.flags & FLAG_NO_REPLY)


def check_command_header(header: Header, max_message: int) -> None:
    """Validate a header a server receives; raise :class:`ProtocolError` with the errno to answer.

    Checked in this order: size below the header (EINVAL), type not a
    command (EINVAL), unknown flag bits or the error bit (EINVAL), a non-zero
    error field (EINVAL), size above ``max_message`` (E2BIG), a command ID
    the protocol does not define (ENOSYS).
    """
    if header.size < HEADER_SIZE:
        raise invalid(f"message_size {header.size} is smaller than the header")
    if header.kind != TYPE_COMMAND:
        raise invalid(f"message type {header.kind} is not a command")
    if header.flags & ~(TYPE_MASK | FLAG_NO_REPLY):
        raise invalid(f"flags {header.flags:#x} set bits a command may not carry")
    if header.error:
        raise invalid("the error field of a command must be zero")
    if header.size > max_message:
        raise ProtocolError(errno.E2BIG, f"message_size {header.size} exceeds {max_message}")
    if header.command not in KNOWN_COMMANDS:
        raise ProtocolError(errno.ENOSYS, f"command {header.command} is not defined")


def header_is_sound(header: Header, max_message: int) -> bool:
    """Whether a server would accept the header itself (so ``No_reply`` is honoured)."""
    try:
        check_command_header(header, max_message)
    except ProtocolError:
        return False
    return True


def encode_message(msg_id: int, command: int, payload: bytes = b"", flags: int = TYPE_COMMAND) -> bytes:
    """Header and payload of one message."""
    return Header(msg_id, command, HEADER_SIZE + len(payload), flags).pack() + payload


def encode_reply(request: Header, payload: bytes = b"") -> bytes:
    """A successful reply to ``request``."""
    return Header(request.msg_id, request.command, HEADER_SIZE + len(payload), TYPE_REPLY).pack() + payload


def encode_error(request: Header, code: int) -> bytes:
    """An error reply: the header alone, with the error bit and ``code``."""
    return Header(request.msg_id, request.command, HEADER_SIZE, TYPE_REPLY | FLAG_ERROR, code).pack()


# --------------------------------------------------------------------------- fixed structures

S = TypeVar("S", bound="Fixed")


class Fixed:
    """A fixed-size little-endian structure; subclasses are frozen dataclasses."""

    STRUCT: ClassVar[struct.Struct]
    NAME: ClassVar[str]

    def pack(self) -> bytes:
        return self.STRUCT.pack(*(getattr(self, f) for f in self.__dataclass_fields__))  # type: ignore[attr-defined]

    @classmethod
    def unpack_exact(cls: type[S], payload: bytes | bytearray | memoryview) -> S:
        """Decode a payload that must be exactly this structure."""
        if len(payload) != cls.STRUCT.size:
            raise invalid(f"{cls.NAME} payload is {len(payload)} bytes, expected {cls.STRUCT.size}")
        return cls(*cls.STRUCT.unpack(payload))

    @classmethod
    def unpack_head(cls: type[S], payload: bytes | bytearray | memoryview) -> S:
        """Decode the structure at the start of a longer payload."""
        if len(payload) < cls.STRUCT.size:
            raise invalid(f"{cls.NAME} payload is {len(payload)} bytes, needs at least {cls.STRUCT.size}")
        return cls(*cls.STRUCT.unpack_from(payload))


@dataclass(frozen=True, slots=True)
class DmaMap(Fixed):
    STRUCT = struct.Struct("<IIQQQ")
    NAME = "DMA_MAP"
    argsz: int
    flags: int
    offset: int
    addr: int
    size: int


@dataclass(frozen=True, slots=True)
class DmaUnmap(Fixed):
    STRUCT = struct.Struct("<IIQQ")
    NAME = "DMA_UNMAP"
    argsz: int
    flags: int
    addr: int
    size: int


@dataclass(frozen=True, slots=True)
class DeviceInfo(Fixed):
    STRUCT = struct.Struct("<IIII")
    NAME = "DEVICE_GET_INFO"
    argsz: int
    flags: int
    num_regions: int
    num_irqs: int


@dataclass(frozen=True, slots=True)
class RegionInfo(Fixed):
    STRUCT = struct.Struct("<IIIIQQ")
    NAME = "DEVICE_GET_REGION_INFO"
    argsz: int
    flags: int
    index: int
    cap_offset: int
    size: int
    offset: int


@dataclass(frozen=True, slots=True)
class RegionIoFds(Fixed):
    STRUCT = struct.Struct("<IIII")
    NAME = "DEVICE_GET_REGION_IO_FDS"
    argsz: int
    flags: int
    index: int
    count: int


@dataclass(frozen=True, slots=True)
class IrqInfo(Fixed):
    STRUCT = struct.Struct("<IIII")
    NAME = "DEVICE_GET_IRQ_INFO"
    argsz: int
    flags: int
    index: int
    count: int


@dataclass(frozen=True, slots=True)
class IrqSet(Fixed):
    STRUCT = struct.Struct("<IIIII")
    NAME = "DEVICE_SET_IRQS"
    argsz: int
    flags: int
    index: int
    start: int
    count: int


@dataclass(frozen=True, slots=True)
class RegionAccess(Fixed):
    STRUCT = struct.Struct("<QII")
    NAME = "REGION_READ/WRITE"
    offset: int
    region: int
    count: int


@dataclass(frozen=True, slots=True)
class WriteOne(Fixed):
    STRUCT = struct.Struct("<QII8s")
    NAME = "REGION_WRITE_MULTI entry"
    offset: int
    region: int
    count: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FeatureHeader(Fixed):
    STRUCT = struct.Struct("<II")
    NAME = "DEVICE_FEATURE"
    argsz: int
    flags: int


@dataclass(frozen=True, slots=True)
class MigStateData(Fixed):
    STRUCT = struct.Struct("<II")
    NAME = "MIG_DEVICE_STATE data"
    device_state: int
    data_fd: int


@dataclass(frozen=True, slots=True)
class MigData(Fixed):
    STRUCT = struct.Struct("<II")
    NAME = "MIG_DATA_READ/WRITE"
    argsz: int
    size: int


U64 = struct.Struct("<Q")


# --------------------------------------------------------------------------- VERSION


@dataclass(frozen=True)
class Capabilities:
    """The capabilities a VERSION message states (absent ones take the protocol defaults)."""

    max_msg_fds: int = DEFAULT_MAX_MSG_FDS
    max_data_xfer_size: int = DEFAULT_MAX_DATA_XFER
    max_dma_maps: int = MAX_DMA_MAPS
    pgsizes: int = PAGE_SIZE
    write_multiple: bool = False
    twin_socket: bool = False
    migration_pgsize: int | None = None
    """The old ``migration: {pgsize}`` object QEMU's client still sends; accepted, not needed."""


_U32_TOP = 0xFFFF_FFFF
_U64_TOP = (1 << 64) - 1


def _uint(value: object, name: str, low: int, top: int) -> int:
    if type(value) is not int or not low <= value <= top:
        raise invalid(f"capability {name} must be an integer {low}-{top}, got {value!r}")
    return value


def _flag(value: object, name: str) -> bool:
    if type(value) is not bool:
        raise invalid(f"capability {name} must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class Version:
    """A VERSION request or reply: major, minor and the capabilities object."""

    major: int
    minor: int
    capabilities: Capabilities
    raw: dict[str, Any] | None = None
    """The JSON object as sent (None when the message carried none)."""

    def pack(self) -> bytes:
        body = struct.pack("<HH", self.major, self.minor)
        if self.raw is None:
            return body
        return body + json.dumps(self.raw, separators=(",", ":")).encode() + b"\0"

    @classmethod
    def unpack(cls, payload: bytes | bytearray | memoryview) -> Version:
        """Decode strictly: NUL-terminated UTF-8 JSON object, typed capability values."""
        data = bytes(payload)
        if len(data) < 4:
            raise invalid(f"VERSION payload is {len(data)} bytes, needs at least 4")
        major, minor = struct.unpack_from("<HH", data)
        text = data[4:]
        if not text:
            return cls(major, minor, Capabilities(), None)
        if text[-1] != 0 or 0 in text[:-1]:
            raise invalid("VERSION data must be one NUL-terminated string")
        if len(text) - 1 > MAX_VERSION_JSON:
            raise invalid(f"VERSION data is {len(text) - 1} bytes, more than {MAX_VERSION_JSON}")
        if json_depth(text[:-1]) > MAX_JSON_DEPTH:
            raise invalid(f"VERSION data nests objects or arrays deeper than {MAX_JSON_DEPTH}")
        try:
            doc = json.loads(text[:-1].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise invalid("VERSION data is not UTF-8 JSON") from None
        if not isinstance(doc, dict):
            raise invalid("VERSION data must be a JSON object")
        return cls(major, minor, parse_capabilities(doc), doc)


def json_depth(text: bytes) -> int:
    """Deepest nesting of ``{``/``[`` in JSON ``text``, brackets inside strings not counted.

    Checked before parsing, so a document nested a million deep costs one
    linear scan instead of the parser's recursion (RecursionError).
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x7D, 0x5D):  # } ]
            depth -= 1
    return deepest


def parse_capabilities(doc: dict[str, Any]) -> Capabilities:
    """Typed capabilities of a VERSION JSON object; unknown names are ignored (forward compatible)."""
    caps = doc.get("capabilities", {})
    if not isinstance(caps, dict):
        raise invalid("'capabilities' must be a JSON object")
    out: dict[str, Any] = {}
    if "max_msg_fds" in caps:
        out["max_msg_fds"] = _uint(caps["max_msg_fds"], "max_msg_fds", 0, _U32_TOP)
    if "max_data_xfer_size" in caps:
        out["max_data_xfer_size"] = _uint(caps["max_data_xfer_size"], "max_data_xfer_size", 1, _U32_TOP)
    if "max_dma_maps" in caps:
        out["max_dma_maps"] = _uint(caps["max_dma_maps"], "max_dma_maps", 1, _U32_TOP)
    if "pgsizes" in caps:
        out["pgsizes"] = _uint(caps["pgsizes"], "pgsizes", 1, _U64_TOP)
    if "write_multiple" in caps:
        out["write_multiple"] = _flag(caps["write_multiple"], "write_multiple")
    if "twin_socket" in caps:
        twin = caps["twin_socket"]
        if not isinstance(twin, dict):
            raise invalid("capability twin_socket must be an object")
        out["twin_socket"] = _flag(twin.get("supported", False), "twin_socket.supported")
    if "migration" in caps:
        mig = caps["migration"]
        if not isinstance(mig, dict):
            raise invalid("capability migration must be an object")
        if "pgsize" in mig:
            out["migration_pgsize"] = _uint(mig["pgsize"], "migration.pgsize", 1, _U64_TOP)
    return Capabilities(**out)


# --------------------------------------------------------------------------- typed requests


def decode_region_access(payload: bytes | bytearray | memoryview, write: bool) -> tuple[RegionAccess, bytes]:
    """REGION_READ (exactly 16 bytes) or REGION_WRITE (16 bytes then exactly ``count`` bytes)."""
    if not write:
        return RegionAccess.unpack_exact(payload), b""
    head = RegionAccess.unpack_head(payload)
    data = bytes(payload[RegionAccess.STRUCT.size :])
    if len(data) != head.count:
        raise invalid(f"REGION_WRITE carries {len(data)} data bytes, count says {head.count}")
    return head, data


def decode_write_multi(payload: bytes | bytearray | memoryview) -> list[WriteOne]:
    """REGION_WRITE_MULTI: ``wr_cnt`` then exactly that many 24-byte entries, each count 1-8."""
    if len(payload) < U64.size:
        raise invalid("REGION_WRITE_MULTI payload lacks wr_cnt")
    (count,) = U64.unpack_from(payload)
    if not 1 <= count <= WRITE_MULTI_MAX:
        raise invalid(f"REGION_WRITE_MULTI wr_cnt {count} is not 1-{WRITE_MULTI_MAX}")
    size = WriteOne.STRUCT.size
    if len(payload) != U64.size + count * size:
        raise invalid(f"REGION_WRITE_MULTI payload is {len(payload)} bytes for {count} writes")
    entries = [WriteOne(*WriteOne.STRUCT.unpack_from(payload, U64.size + k * size)) for k in range(count)]
    for entry in entries:
        if not 1 <= entry.count <= WRITE_MULTI_DATA:
            raise invalid(f"REGION_WRITE_MULTI entry count {entry.count} is not 1-{WRITE_MULTI_DATA}")
        if any(entry.data[entry.count :]):
            raise invalid("REGION_WRITE_MULTI entry has data bytes beyond its count")
    return entries


def encode_write_multi(writes: list[tuple[int, int, bytes]]) -> bytes:
    """Payload of REGION_WRITE_MULTI for ``(region, offset, data)`` writes of 1-8 bytes."""
    out = bytearray(U64.pack(len(writes)))
    for region, offset, data in writes:
        out += WriteOne(offset, region, len(data), data.ljust(WRITE_MULTI_DATA, b"\0")).pack()
    return bytes(out)


def decode_mig_data(payload: bytes | bytearray | memoryview, write: bool) -> tuple[MigData, bytes]:
    """MIG_DATA_READ (exactly 8 bytes) or MIG_DATA_WRITE (8 bytes then exactly ``size`` bytes)."""
    if not write:
        return MigData.unpack_exact(payload), b""
    head = MigData.unpack_head(payload)
    data = bytes(payload[MigData.STRUCT.size :])
    if len(data) != head.size:
        raise invalid(f"MIG_DATA_WRITE carries {len(data)} bytes, size says {head.size}")
    return head, data
