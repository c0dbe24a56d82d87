"""vfio-user wire format: header, structures, VERSION JSON, strict decoders with typed errors."""

from __future__ import annotations

import errno
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vpcid.adapters.vfio_user.protocol import (
    FLAG_ERROR,
    FLAG_NO_REPLY,
    HEADER_SIZE,
    TYPE_REPLY,
    Command,
    DmaMap,
    Header,
    MigData,
    ProtocolError,
    RegionAccess,
    RegionInfo,
    Version,
    check_command_header,
    decode_mig_data,
    decode_region_access,
    decode_write_multi,
    encode_error,
    encode_message,
    encode_reply,
    encode_write_multi,
    errno_name,
)

MAX = 4096


def rejected(call: object, code: int) -> ProtocolError:
    assert callable(call)
    with pytest.raises(ProtocolError) as info:
        call()
    assert info.value.errno == code, info.value
    return info.value


def test_command_ids_and_header_layout() -> None:
    """Command numbers and the 16-byte header follow the protocol document."""
    assert [int(c) for c in Command] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18]
    raw = encode_message(0x1234, Command.REGION_READ, b"abcd", FLAG_NO_REPLY)
    assert raw[:HEADER_SIZE] == struct.pack("<HHIII", 0x1234, 9, 20, 0x10, 0)
    header = Header.unpack(raw[:HEADER_SIZE])
    assert (header.msg_id, header.command, header.size, header.no_reply, header.kind) == (
        0x1234,
        9,
        20,
        True,
        0,
    )


def test_replies_echo_the_request() -> None:
    request = Header(7, Command.DEVICE_RESET, 16, 0)
    assert Header.unpack(encode_reply(request, b"xy")[:16]) == Header(7, 13, 18, TYPE_REPLY)
    assert encode_error(request, errno.EINVAL) == Header(7, 13, 16, TYPE_REPLY | FLAG_ERROR, 22).pack()


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (Header(1, 4, 15, 0), errno.EINVAL),  # size below the header
        (Header(1, 4, 32, TYPE_REPLY), errno.EINVAL),  # a reply where a command belongs
        (Header(1, 4, 32, 0x7), errno.EINVAL),  # unknown type
        (Header(1, 4, 32, FLAG_ERROR), errno.EINVAL),  # error bit on a command
        (Header(1, 4, 32, 0x40), errno.EINVAL),  # undefined flag bit
        (Header(1, 4, 32, 0, 5), errno.EINVAL),  # error field must be zero
        (Header(1, 4, MAX + 1, 0), errno.E2BIG),
        (Header(1, 14, 32, 0), errno.ENOSYS),  # DIRTY_PAGES was removed
        (Header(1, 0, 32, 0), errno.ENOSYS),
        (Header(1, 999, 32, 0), errno.ENOSYS),
    ],
)
def test_header_checks_and_their_errnos(header: Header, code: int) -> None:
    rejected(lambda: check_command_header(header, MAX), code)


def test_sound_headers_pass() -> None:
    for command in Command:
        check_command_header(Header(9, command, 16, 0), MAX)
        check_command_header(Header(9, command, MAX, FLAG_NO_REPLY), MAX)


def test_fixed_structures_are_exact() -> None:
    payload = DmaMap(32, 3, 0, 0x1000, 0x2000).pack()
    assert len(payload) == 32
    assert DmaMap.unpack_exact(payload) == DmaMap(32, 3, 0, 0x1000, 0x2000)
    rejected(lambda: DmaMap.unpack_exact(payload + b"\0"), errno.EINVAL)
    rejected(lambda: RegionInfo.unpack_exact(payload[:31]), errno.EINVAL)
    assert RegionInfo.unpack_head(RegionInfo(64, 3, 7, 32, 256, 0).pack() + b"caps").size == 256


def test_region_access_decoding() -> None:
    head = RegionAccess(0x10, 7, 4).pack()
    assert decode_region_access(head, write=False) == (RegionAccess(0x10, 7, 4), b"")
    assert decode_region_access(head + b"abcd", write=True) == (RegionAccess(0x10, 7, 4), b"abcd")
    rejected(lambda: decode_region_access(head + b"abc", write=True), errno.EINVAL)  # count lies
    rejected(lambda: decode_region_access(head + b"x", write=False), errno.EINVAL)


def test_write_multi_decoding() -> None:
    payload = encode_write_multi([(7, 0x3C, b"\x0b"), (1, 0, b"12345678")])
    entries = decode_write_multi(payload)
    assert [(e.region, e.offset, e.data[: e.count]) for e in entries] == [
        (7, 0x3C, b"\x0b"),
        (1, 0, b"12345678"),
    ]
    rejected(lambda: decode_write_multi(payload[:-1]), errno.EINVAL)
    rejected(lambda: decode_write_multi(struct.pack("<Q", 0)), errno.EINVAL)
    rejected(lambda: decode_write_multi(struct.pack("<Q", 201) + bytes(201 * 24)), errno.EINVAL)
    dirty = bytearray(payload)
    dirty[8 + 16 + 1] = 0xAA  # a data byte past the first entry's count of 1
    rejected(lambda: decode_write_multi(bytes(dirty)), errno.EINVAL)


def test_migration_data_decoding() -> None:
    assert decode_mig_data(MigData(8 + 64, 64).pack(), write=False)[0].size == 64
    assert decode_mig_data(MigData(12, 4).pack() + b"blob", write=True)[1] == b"blob"
    rejected(lambda: decode_mig_data(MigData(12, 5).pack() + b"blob", write=True), errno.EINVAL)


def version(text: bytes, major: int = 0, minor: int = 0) -> bytes:
    return struct.pack("<HH", major, minor) + text


def test_version_json_is_parsed_strictly() -> None:
    doc = {"capabilities": {"max_msg_fds": 8, "max_data_xfer_size": 65536, "write_multiple": True,
                            "migration": {"pgsize": 4096}, "unknown": {"ignored": 1}}}  # fmt: skip
    parsed = Version.unpack(version(json.dumps(doc).encode() + b"\0", 0, 2))
    caps = parsed.capabilities
    assert (parsed.major, parsed.minor) == (0, 2)
    assert (caps.max_msg_fds, caps.max_data_xfer_size, caps.write_multiple, caps.migration_pgsize) == (
        8, 65536, True, 4096)  # fmt: skip
    assert Version.unpack(version(b"")).capabilities.max_data_xfer_size == 1 << 20  # defaults
    assert Version.unpack(parsed.pack()).capabilities == caps
    bad_documents = (
        b'{"capabilities":{}}',  # no NUL
        b"{}\0{}\0",  # NUL inside
        b"\xff\0",  # not UTF-8
        b"[1]\0",  # not an object
        b'{"capabilities":[]}\0',
        b'{"capabilities":{"max_msg_fds":-1}}\0',
        b'{"capabilities":{"max_msg_fds":true}}\0',
        b'{"capabilities":{"max_data_xfer_size":0}}\0',
        b'{"capabilities":{"write_multiple":1}}\0',
    )
    for bad in bad_documents:
        rejected(lambda bad=bad: Version.unpack(version(bad)), errno.EINVAL)
    rejected(lambda: Version.unpack(b"\0\0\0"), errno.EINVAL)


def test_errno_names() -> None:
    assert errno_name(errno.ENOTSUP) == "ENOTSUP"
    assert errno_name(errno.EBADMSG) == "EBADMSG"
    assert errno_name(12345) == "12345"


@given(
    msg_id=st.integers(0, 0xFFFF),
    command=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0xFFFF_FFFF),
    error=st.integers(0, 0xFFFF_FFFF),
    payload=st.binary(max_size=64),
)
def test_header_round_trip_and_check_never_crashes(
    msg_id: int, command: int, flags: int, error: int, payload: bytes
) -> None:
    """Any header decodes back to itself, and the check either passes or raises a typed error."""
    header = Header(msg_id, command, HEADER_SIZE + len(payload), flags, error)
    assert Header.unpack(header.pack()) == header
    codes = set()
    try:
        check_command_header(header, MAX)
    except ProtocolError as exc:
        codes.add(exc.errno)
    assert codes <= {errno.EINVAL, errno.E2BIG, errno.ENOSYS}
