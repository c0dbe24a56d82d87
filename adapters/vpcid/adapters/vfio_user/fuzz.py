"""Fuzzer of the vfio-user server's message parser: malformed messages, each with the errno it must get.

Every generated message breaks exactly one rule (a header field, a payload
length, an ``argsz``, a reserved field, a range, the protocol state), so the
errno the server must answer with is known; messages whose header is sound
and that set No_reply must get no reply at all. The runners check, for
every message: the server did not crash (no EIO), the reply is an error
reply with the expected errno (or absent, for No_reply), and the device and
session state did not change (data manager snapshot bytes, migration state,
DMA and IRQ bookkeeping).

Two runners: :func:`run_in_process` hands frames straight to a
:class:`~vpcid.adapters.vfio_user.server.Session` (fast: the bulk), and
:func:`run_over_socket` sends the same kind of messages through a real UNIX
socket to a serving thread (the framing, descriptors and replies on the
wire). A longer campaign::

    python -m vpcid.adapters.vfio_user.fuzz --messages 1000000 --seed 7
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import random
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vpcid.adapters.vfio_user.client import VfioUserClient
from vpcid.adapters.vfio_user.protocol import (
    CONFIG_REGION,
    FEATURE_GET,
    FEATURE_MIG_DEVICE_STATE,
    FEATURE_MIGRATION,
    FEATURE_PROBE,
    FEATURE_SET,
    FLAG_ERROR,
    FLAG_NO_REPLY,
    HEADER_SIZE,
    IRQ_SET_ACTION_MASK,
    IRQ_SET_ACTION_TRIGGER,
    IRQ_SET_DATA_BOOL,
    IRQ_SET_DATA_EVENTFD,
    IRQ_SET_DATA_NONE,
    KNOWN_COMMANDS,
    NUM_PCI_REGIONS,
    PROTOCOL_MAJOR,
    TYPE_REPLY,
    Command,
    DeviceInfo,
    DmaMap,
    DmaUnmap,
    FeatureHeader,
    Header,
    IrqInfo,
    IrqSet,
    MigData,
    MigStateData,
    RegionAccess,
    RegionInfo,
    RegionIoFds,
    WriteOne,
    encode_write_multi,
)
from vpcid.adapters.vfio_user.server import (
    Device,
    DeviceSpec,
    DmaRegion,
    Endpoint,
    Frame,
    ServerManager,
    Session,
    VfioUserServer,
    choose_manager,
    close_fds,
)
from vpcid.conformance.devices import KITCHEN_SINK
from vpcid.model import Bdf, DeviceType

DMA_BASE, DMA_SIZE = 0x10_0000, 0x4000
"""The DMA region the fuzzed session has mapped (so overlaps and bad unmaps have something to hit)."""
U32 = 0xFFFF_FFFF


@dataclass(frozen=True)
class FuzzMessage:
    """One malformed message as the framing delivers it, and what the server must do with it."""

    header: Header
    payload: bytes | None
    expect: int | None
    """The errno of the error reply; None when the server must not reply (sound header, No_reply)."""
    label: str
    fds: int = 0
    """How many fresh file descriptors travel with it (they must all be closed by the server)."""

    def wire(self) -> bytes:
        """The bytes on the wire (a size below the header still sends the 16 header bytes)."""
        payload = self.payload or b""
        return self.header.pack() + payload


@dataclass(frozen=True)
class Context:
    """What the generator knows about the fuzzed session."""

    negotiated: bool
    regions: tuple[int, ...]
    """Region sizes 0-8."""
    max_message: int
    max_xfer: int
    irq_counts: tuple[int, ...]


@dataclass(frozen=True)
class Made:
    """A maker's message: command, payload, the errno it must get, a label, descriptors to attach."""

    command: int
    payload: bytes
    errno: int
    label: str
    fds: int = 0


Maker = Callable[[random.Random, "Context"], Made]


def _u32(rng: random.Random, low: int = 0) -> int:
    return rng.randint(low, U32)


def _argsz_short(rng: random.Random, needed: int) -> int:
    return rng.randrange(0, needed)


# --- payload-level makers: (command, payload, errno, label[, fds]) with a sound header


def _wrong_length(rng: random.Random, ctx: Context) -> Made:
    sizes = {
        Command.DMA_MAP: 32, Command.DMA_UNMAP: 24, Command.DEVICE_GET_INFO: 16,
        Command.DEVICE_GET_REGION_INFO: 32, Command.DEVICE_GET_IRQ_INFO: 16, Command.REGION_READ: 16,
        Command.DEVICE_RESET: 0, Command.MIG_DATA_READ: 8, Command.DEVICE_GET_REGION_IO_FDS: 16,
    }  # fmt: skip
    command, size = rng.choice(list(sizes.items()))
    length = size
    while length == size:
        length = rng.choice((rng.randrange(0, 64), size - 1 if size else 1, size + rng.randint(1, 16)))
    return Made(command, rng.randbytes(length), errno.EINVAL, f"length-{command.name}")


def _device_info(rng: random.Random, ctx: Context) -> Made:
    argsz, flags, regions, irqs = 16, 0, 0, 0
    which = rng.randrange(4)
    if which == 0:
        argsz = _argsz_short(rng, 16)
    elif which == 1:
        flags = _u32(rng, 1)
    elif which == 2:
        regions = _u32(rng, 1)
    else:
        irqs = _u32(rng, 1)
    return Made(
        Command.DEVICE_GET_INFO, DeviceInfo(argsz, flags, regions, irqs).pack(), errno.EINVAL, "device-info"
    )


def _region_info(rng: random.Random, ctx: Context) -> Made:
    fields = [32, 0, rng.randrange(NUM_PCI_REGIONS), 0, 0, 0]
    which = rng.randrange(6)
    if which == 0:
        fields[0] = _argsz_short(rng, 32)
    elif which == 1:
        fields[1] = _u32(rng, 1)
    elif which == 2:
        fields[2] = _u32(rng, NUM_PCI_REGIONS)
    elif which == 3:
        fields[3] = _u32(rng, 1)
    else:
        fields[which] = rng.randint(1, (1 << 64) - 1)
    return Made(Command.DEVICE_GET_REGION_INFO, RegionInfo(*fields).pack(), errno.EINVAL, "region-info")


def _irq_info(rng: random.Random, ctx: Context) -> Made:
    fields = [16, 0, rng.randrange(5), 0]
    which = rng.randrange(4)
    fields[which] = _argsz_short(rng, 16) if which == 0 else _u32(rng, 5 if which == 2 else 1)
    return Made(Command.DEVICE_GET_IRQ_INFO, IrqInfo(*fields).pack(), errno.EINVAL, "irq-info")


def _io_fds(rng: random.Random, ctx: Context) -> Made:
    if rng.random() < 0.5:
        return Made(
            Command.DEVICE_GET_REGION_IO_FDS,
            RegionIoFds(16, 0, rng.randrange(9), 0).pack(),
            errno.ENOTSUP,
            "io-fds",
        )
    return Made(Command.DEVICE_GET_REGION_IO_FDS, RegionIoFds(16, 1, 0, 0).pack(), errno.EINVAL, "io-fds-bad")


def _region_read(rng: random.Random, ctx: Context) -> Made:
    region = rng.choice([r for r in range(NUM_PCI_REGIONS) if ctx.regions[r]])
    size = ctx.regions[region]
    which = rng.randrange(5)
    offset, count = 0, 4 if size >= 4 else size
    if which == 0:
        region = _u32(rng, NUM_PCI_REGIONS)
    elif which == 1:
        count = 0
    elif which == 2:
        count = rng.randint(ctx.max_xfer + 1, U32)
    elif which == 3:
        offset = rng.randint(max(0, size - count + 1), (1 << 64) - 1)
    else:
        empty = [r for r in range(NUM_PCI_REGIONS) if not ctx.regions[r]]
        region = rng.choice(empty)
    return Made(Command.REGION_READ, RegionAccess(offset, region, count).pack(), errno.EINVAL, "region-read")


def _region_write(rng: random.Random, ctx: Context) -> Made:
    region = rng.choice([r for r in range(NUM_PCI_REGIONS) if ctx.regions[r] and r != 6])
    size = ctx.regions[region]
    count = min(4, size)
    offset = rng.randrange(0, size - count + 1)
    data = rng.randbytes(count)
    which = rng.randrange(6)
    if which == 0:  # data length disagrees with count
        extra = rng.choice((-count, -1, 1, rng.randint(2, 32)))
        data = rng.randbytes(count + extra)
    elif which == 1:
        offset = rng.randint(size - count + 1, (1 << 64) - 1)
    elif which == 2:
        region = 6  # the ROM is read-only
        count, offset = 4, 0
        data = rng.randbytes(4)
    elif which == 3:
        region = _u32(rng, NUM_PCI_REGIONS)
    elif which == 4:
        count, data = 0, b""
    else:
        region = rng.choice([r for r in range(NUM_PCI_REGIONS) if not ctx.regions[r]])
    return Made(
        Command.REGION_WRITE, RegionAccess(offset, region, count).pack() + data, errno.EINVAL, "region-write"
    )


def _write_multi(rng: random.Random, ctx: Context) -> Made:
    good = [(CONFIG_REGION, 0x3C, b"\x0b"), (1, 0x20, rng.randbytes(4))]
    which = rng.randrange(6)
    if which == 0:  # wr_cnt 0 or above the limit
        payload = struct.pack("<Q", rng.choice((0, 201, rng.randint(202, (1 << 64) - 1))))
    elif which == 1:  # wr_cnt disagrees with the entries
        payload = encode_write_multi(good)[: -rng.randint(1, 24)]
    elif which == 2:  # one entry with count 0 or above 8
        bad = WriteOne(0x40, CONFIG_REGION, rng.choice((0, rng.randint(9, U32))), bytes(8))
        payload = encode_write_multi(good) + bad.pack()
        payload = struct.pack("<Q", 3) + payload[8:]
    elif which == 3:  # data beyond the count
        bad = WriteOne(0x40, CONFIG_REGION, 1, b"\x01" + rng.randbytes(6) + b"\x01")
        payload = struct.pack("<Q", 3) + encode_write_multi(good)[8:] + bad.pack()
    elif which == 4:  # one entry out of its region (the earlier ones must not be applied)
        bad = WriteOne(ctx.regions[CONFIG_REGION], CONFIG_REGION, 4, bytes(8))
        payload = struct.pack("<Q", 3) + encode_write_multi(good)[8:] + bad.pack()
    else:  # one entry to a region that does not exist
        bad = WriteOne(0, _u32(rng, NUM_PCI_REGIONS), 4, bytes(8))
        payload = struct.pack("<Q", 3) + encode_write_multi(good)[8:] + bad.pack()
    return Made(Command.REGION_WRITE_MULTI, payload, errno.EINVAL, "write-multi")


def _dma_map(rng: random.Random, ctx: Context) -> Made:
    fields = [32, 3, 0, 0x20_0000, 0x1000]
    code = errno.EINVAL
    which = rng.randrange(7)
    if which == 0:
        fields[0] = rng.choice((_argsz_short(rng, 32), rng.randint(33, U32)))
    elif which == 1:
        fields[1] = rng.choice((0, _u32(rng, 4)))
    elif which == 2:
        fields[2] = rng.randint(1, (1 << 64) - 1)  # offset without a descriptor
    elif which == 3:
        fields[3] = 0x20_0000 + rng.randint(1, 0xFFF)  # unaligned address
    elif which == 4:
        fields[4] = rng.choice((0, rng.randint(1, 0xFFF), 0x1000 + rng.randint(1, 0xFFF)))
    elif which == 5:
        fields[3], fields[4] = (1 << 64) - 0x1000, 0x2000  # wraps
    else:
        fields[3] = DMA_BASE + rng.randrange(0, DMA_SIZE, 0x1000)  # overlaps the mapped region
        code = errno.EEXIST
    return Made(Command.DMA_MAP, DmaMap(*fields).pack(), code, "dma-map")


def _dma_unmap(rng: random.Random, ctx: Context) -> Made:
    fields = [24, 0, DMA_BASE, DMA_SIZE]
    code = errno.EINVAL
    which = rng.randrange(4)
    if which == 0:
        fields[0] = _argsz_short(rng, 24)
    elif which == 1:
        fields[1] = _u32(rng, 1)
    elif which == 2:
        fields[2] = DMA_BASE + rng.choice((0x1000, -0x1000, 0x10_0000))
        code = errno.ENOENT
    else:
        fields[3] = rng.choice((DMA_SIZE - 0x1000, DMA_SIZE + 0x1000, 0))
        code = errno.ENOENT
    return Made(Command.DMA_UNMAP, DmaUnmap(*fields).pack(), code, "dma-unmap")


def _set_irqs(rng: random.Random, ctx: Context) -> Made:
    flags = IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER
    index, start, count, data = 0, 0, 1, b""
    which = rng.randrange(9)
    if which == 0:
        flags = IRQ_SET_DATA_NONE | IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER  # two data bits
    elif which == 1:
        flags = IRQ_SET_DATA_NONE  # no action
    elif which == 2:
        flags |= rng.choice((0x40, 1 << rng.randint(6, 31)))
    elif which == 3:
        index = _u32(rng, 5)
    elif which == 4:
        start = rng.randint(1, 1000)  # INTx has one vector
    elif which == 5:
        flags, data = IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER, rng.choice((b"", b"\x02", b"\x01\x01"))
    elif which == 6:
        flags, index = IRQ_SET_DATA_NONE | IRQ_SET_ACTION_MASK, rng.choice((1, 2, 3, 4))  # not maskable
        count = 0 if ctx.irq_counts[index] == 0 else 1
        start = 0
        if count == 0:
            data = b"\x00"
    elif which == 7:
        count, data = 0, rng.randbytes(rng.randint(1, 4))  # count 0 carries nothing
    else:
        flags, data = IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, rng.randbytes(4)
    payload = IrqSet(20 + len(data), flags, index, start, count).pack() + data
    if rng.random() < 0.2:  # argsz lies
        payload = IrqSet(20 + len(data) + rng.choice((-1, 1, 100)), flags, index, start, count).pack() + data
    return Made(Command.DEVICE_SET_IRQS, payload, errno.EINVAL, "set-irqs")


def _feature(rng: random.Random, ctx: Context) -> Made:
    which = rng.randrange(9)
    code = errno.EINVAL
    if which == 0:
        payload = FeatureHeader(16, FEATURE_GET | FEATURE_MIGRATION | (1 << rng.randint(19, 31))).pack()
    elif which == 1:
        payload = FeatureHeader(16, FEATURE_MIGRATION).pack()  # no GET/SET/PROBE
    elif which == 2:
        payload = FeatureHeader(16, FEATURE_GET | FEATURE_SET | FEATURE_MIG_DEVICE_STATE).pack()
    elif which == 3:
        feature = rng.choice([f for f in (0, 3, 6, 7, 8, rng.randint(9, 0xFFFF)) if f not in (1, 2)])
        payload, code = FeatureHeader(16, FEATURE_GET | feature).pack(), errno.ENOTSUP
    elif which == 4:
        payload = FeatureHeader(_argsz_short(rng, 16), FEATURE_GET | FEATURE_MIGRATION).pack()
    elif which == 5:
        payload = FeatureHeader(16, FEATURE_SET | FEATURE_MIGRATION).pack() + bytes(8)
    elif which == 6:
        state = rng.choice((0, 5, 6, 7, rng.randint(8, U32)))
        payload = (
            FeatureHeader(16, FEATURE_SET | FEATURE_MIG_DEVICE_STATE).pack() + MigStateData(state, 0).pack()
        )
    elif which == 7:
        data = rng.choice((b"", bytes(4), bytes(12)))
        payload = FeatureHeader(16, FEATURE_SET | FEATURE_MIG_DEVICE_STATE).pack() + data
    else:
        payload = FeatureHeader(16, FEATURE_PROBE | FEATURE_MIGRATION).pack() + rng.randbytes(
            rng.randint(1, 8)
        )
    return Made(Command.DEVICE_FEATURE, payload, code, "feature")


def _mig_data(rng: random.Random, ctx: Context) -> Made:
    """MIG_DATA_READ/WRITE in RUNNING (the fuzzed device is running), or malformed."""
    if rng.random() < 0.5:
        size = rng.choice((0, 1, 4096, rng.randint(0, 1 << 16)))
        payload = MigData(8 + size + rng.randint(0, 8), size).pack()
        return Made(Command.MIG_DATA_READ, payload, errno.EINVAL, "mig-read")
    data = rng.randbytes(rng.randint(0, 64))
    size = len(data) if rng.random() < 0.5 else len(data) + rng.randint(1, 8)
    return Made(Command.MIG_DATA_WRITE, MigData(8 + size, size).pack() + data, errno.EINVAL, "mig-write")


def _wrong_direction(rng: random.Random, ctx: Context) -> Made:
    command = rng.choice((Command.DMA_READ, Command.DMA_WRITE))
    return Made(
        command, struct.pack("<QQ", 0x1000, 4) + rng.randbytes(rng.choice((0, 4))), errno.EINVAL, "dma-rw"
    )


def _version(rng: random.Random, ctx: Context) -> Made:
    """A second VERSION (negotiated sessions) or a broken first one."""
    caps: dict[str, object] = {"max_msg_fds": 8, "max_data_xfer_size": 1 << 20}
    major, code = PROTOCOL_MAJOR, errno.EINVAL
    which = rng.randrange(9)
    text = json.dumps({"capabilities": caps}).encode() + b"\0"
    if which == 0:
        major, code = rng.randint(1, 0xFFFF), errno.ENOTSUP
    elif which == 1:
        text = text[:-1]  # no NUL
    elif which == 2:
        text = text[:5] + b"\0" + text[5:]  # embedded NUL
    elif which == 3:
        text = b"\xff\xfe{}\0"
    elif which == 4:
        text = rng.choice((b"[]\0", b"3\0", b'"x"\0', b"{\0", b"nul\0"))
    elif which == 5:
        text = json.dumps({"capabilities": rng.choice(([], 1, "x", None))}).encode() + b"\0"
    elif which == 6:
        key, value = rng.choice([("max_msg_fds", -1), ("max_msg_fds", "8"), ("max_data_xfer_size", 0),
                                 ("max_data_xfer_size", 1.5), ("write_multiple", 1), ("max_msg_fds", True),
                                 ("migration", []), ("twin_socket", 3), ("pgsizes", 1 << 64)])  # fmt: skip
        text = json.dumps({"capabilities": {key: value}}).encode() + b"\0"
    elif which == 7:
        text, code = json.dumps({"capabilities": {"pgsizes": 8192}}).encode() + b"\0", errno.ENOTSUP
    else:
        return Made(Command.VERSION, rng.randbytes(rng.randint(0, 3)), errno.EINVAL, "version-short")
    if ctx.negotiated:
        code = errno.EINVAL  # already negotiated, whatever it says
    return Made(Command.VERSION, struct.pack("<HH", major, rng.randint(0, 0xFFFF)) + text, code, "version")


def _reset_with_payload(rng: random.Random, ctx: Context) -> Made:
    return Made(Command.DEVICE_RESET, rng.randbytes(rng.randint(1, 32)), errno.EINVAL, "reset-payload")


def _unexpected_fds(rng: random.Random, ctx: Context) -> Made:
    """A valid-looking read carrying descriptors it has no use for."""
    payload = RegionAccess(0, CONFIG_REGION, 4).pack()
    return Made(Command.REGION_READ, payload, errno.EINVAL, "unexpected-fds", rng.randint(1, 3))


PAYLOAD_MAKERS: list[tuple[Maker, int]] = [
    (_wrong_length, 6), (_device_info, 3), (_region_info, 3), (_irq_info, 2), (_io_fds, 1),
    (_region_read, 5), (_region_write, 6), (_write_multi, 3), (_dma_map, 3), (_dma_unmap, 2),
    (_set_irqs, 4), (_feature, 5), (_mig_data, 3), (_wrong_direction, 1), (_version, 3),
    (_reset_with_payload, 1),
]  # fmt: skip


def generate(seed: int, ctx: Context, *, with_fds: bool = False) -> Iterator[FuzzMessage]:
    """An endless seeded stream of malformed messages for a session described by ``ctx``."""
    rng = random.Random(seed)
    makers = [m for m, _ in PAYLOAD_MAKERS]
    weights = [w for _, w in PAYLOAD_MAKERS]
    if with_fds:
        makers.append(_unexpected_fds)
        weights.append(1)
    while True:
        msg_id = rng.randrange(1 << 16)
        roll = rng.random()
        if roll < 0.22:
            yield _header_mutation(rng, ctx, msg_id)
            continue
        if not ctx.negotiated and roll < 0.35:  # anything but VERSION first
            command = rng.choice([c for c in Command if c is not Command.VERSION])
            payload = rng.randbytes(rng.randint(0, 48))
            yield FuzzMessage(Header(msg_id, command, HEADER_SIZE + len(payload), 0), payload,
                              errno.EINVAL, "before-version")  # fmt: skip
            continue
        (maker,) = rng.choices(makers, weights)
        made = maker(rng, ctx)
        code = made.errno
        if not ctx.negotiated and made.command != Command.VERSION:
            code = errno.EINVAL  # rejected before its payload is looked at
        no_reply = rng.random() < 0.1
        header = Header(
            msg_id, made.command, HEADER_SIZE + len(made.payload), FLAG_NO_REPLY if no_reply else 0
        )
        yield FuzzMessage(header, made.payload, None if no_reply else code, made.label, made.fds)


def _header_mutation(rng: random.Random, ctx: Context, msg_id: int) -> FuzzMessage:
    """A header that breaks one rule; such a message is always answered, No_reply or not."""
    command = rng.choice(sorted(KNOWN_COMMANDS))
    payload = rng.randbytes(rng.randint(0, 24))
    size = HEADER_SIZE + len(payload)
    no_reply = FLAG_NO_REPLY if rng.random() < 0.3 else 0
    which = rng.randrange(6)
    if which == 0:
        return FuzzMessage(Header(msg_id, command, rng.randrange(HEADER_SIZE), no_reply), b"", errno.EINVAL,
                           "size-below-header")  # fmt: skip
    if which == 1:
        kind = rng.randint(1, 15)
        return FuzzMessage(Header(msg_id, command, size, kind | no_reply), payload, errno.EINVAL, "type")
    if which == 2:
        bits = rng.choice((FLAG_ERROR, 1 << rng.randint(6, 31), rng.randint(0x40, U32) & ~0x3F))
        return FuzzMessage(Header(msg_id, command, size, bits | no_reply), payload, errno.EINVAL, "flags")
    if which == 3:
        return FuzzMessage(Header(msg_id, command, size, no_reply, _u32(rng, 1)), payload, errno.EINVAL,
                           "error-field")  # fmt: skip
    if which == 4:
        big = rng.randint(ctx.max_message + 1, U32)
        return FuzzMessage(Header(msg_id, command, big, no_reply), None, errno.E2BIG, "oversize")
    unknown = rng.choice((0, 14, rng.randint(19, 0xFFFF)))
    return FuzzMessage(Header(msg_id, unknown, size, no_reply), payload, errno.ENOSYS, "unknown-command")


# --------------------------------------------------------------------------- runners


@dataclass
class FuzzReport:
    """What a run did and everything that went wrong (empty ``failures``: the server held)."""

    messages: int = 0
    replies: int = 0
    silent: int = 0
    by_errno: Counter[str] = field(default_factory=Counter)
    by_label: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, message: FuzzMessage, why: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(
                f"{message.label} {message.header} {(message.payload or b'')[:48].hex()}: {why}"
            )

    def merge(self, other: FuzzReport) -> None:
        self.messages += other.messages
        self.replies += other.replies
        self.silent += other.silent
        self.by_errno.update(other.by_errno)
        self.by_label.update(other.by_label)
        self.failures += other.failures
        self.seconds += other.seconds


def fuzz_device(dtype: DeviceType = KITCHEN_SINK) -> tuple[ServerManager, threading.Lock]:
    """A data manager with one programmed, decoding device holding BAR data (so there is state to keep)."""
    manager = ServerManager()
    manager.create_vm(1)
    bdf = Bdf(0, 2, 0)
    manager.plug(1, bdf, dtype)
    for offset, value in ((0x10, 0xC041), (0x14, 0xE000_0000), (0x18, 0xC), (0x1C, 0x10), (0x30, 0xE010_0001),
                          (0x3C, 0x0B), (0x04, 0x0107)):  # fmt: skip
        manager.config_write(1, bdf, offset, 4 if offset != 0x04 else 2, value)
    for bar, offset, data in (
        (1, 0x10, b"vpcid-fuzz"),
        (2, 0x8_0000, b"\x5a" * 64),
        (0, 4, b"\x01\x02\x03\x04"),
    ):
        manager.region_bar(1, bdf, bar, offset, len(data), data)
    return manager, threading.Lock()


def _prepared_session(device: Device, negotiated: bool) -> Session:
    """A session as after VERSION (with write_multiple) and one DMA_MAP, or a fresh one."""
    session = Session(device)
    if negotiated:
        session.negotiated = True
        session.write_multiple = True
        session.keep_dma(DmaRegion(DMA_BASE, DMA_SIZE, 3, 0, None))
    return session


def context_for(session: Session) -> Context:
    regions = tuple(r.size for r in session.device.regions)
    counts = tuple(c for _, c in session.device.irqs)
    return Context(session.negotiated, regions, session.max_message,
                   min(session.max_data_xfer, session.client_max_xfer), counts)  # fmt: skip


def check_reply(report: FuzzReport, message: FuzzMessage, reply: bytes | None) -> None:
    """The reply must be exactly the expected error reply, or absent for No_reply."""
    if message.expect is None:
        if reply is not None:
            report.fail(message, "replied to a No_reply command")
        else:
            report.silent += 1
        return
    if reply is None:
        report.fail(message, "no reply")
        return
    report.replies += 1
    header = Header.unpack(reply[:HEADER_SIZE]) if len(reply) >= HEADER_SIZE else None
    if header is None or len(reply) != HEADER_SIZE:
        report.fail(message, f"reply is {len(reply)} bytes, an error reply is the header alone")
        return
    if header.flags != TYPE_REPLY | FLAG_ERROR:
        report.fail(message, f"reply flags {header.flags:#x} are not reply+error")
    if header.error != message.expect:
        report.fail(message, f"errno {header.error}, expected {message.expect}")
    if (header.msg_id, header.command, header.size) != (message.header.msg_id, message.header.command, 16):
        report.fail(message, f"reply header {header} does not answer the request")
    report.by_errno[errno.errorcode.get(header.error, str(header.error))] += 1


def run_in_process(count: int, seed: int = 0, negotiated_share: float = 0.85) -> FuzzReport:
    """``count`` malformed messages straight into sessions' dispatchers; state checked after each."""
    report = FuzzReport()
    started = time.perf_counter()
    manager, lock = fuzz_device()
    device = Device(manager, lock, 1, Bdf(0, 2, 0))
    negotiated_count = int(count * negotiated_share)
    for negotiated, n, sub_seed in (
        (True, negotiated_count, seed),
        (False, count - negotiated_count, seed + 1),
    ):
        session = _prepared_session(device, negotiated)
        ctx = context_for(session)
        stream = generate(sub_seed, ctx, with_fds=True)
        device_before, session_before = device.state_digest(), session.state_digest()
        for _ in range(n):
            message = next(stream)
            fds = _fresh_fds(message.fds)
            frame = Frame(message.header, message.payload, list(fds))
            try:
                reply = session.handle(frame)
            except Exception as exc:  # the dispatcher must never raise
                report.fail(message, f"raised {type(exc).__name__}: {exc}")
                continue
            report.messages += 1
            report.by_label[message.label] += 1
            check_reply(report, message, reply)
            if any(_is_open(fd) for fd in fds):
                report.fail(message, "a received file descriptor was left open")
                close_fds(fds)
            device_after, session_after = device.state_digest(), session.state_digest()
            if (device_after, session_after) != (device_before, session_before):
                report.fail(message, "state changed")
                device_before, session_before = device_after, session_after
    report.seconds = time.perf_counter() - started
    return report


def _fresh_fds(n: int) -> list[int]:
    fds: list[int] = []
    for _ in range(n):
        read, write = os.pipe()
        os.close(write)
        fds.append(read)
    return fds


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def run_over_socket(
    count: int, seed: int = 0, directory: Path | None = None, manager: str | None = None
) -> FuzzReport:
    """``count`` malformed messages through a real socket to a serving thread; state checked at the end.

    No_reply messages are followed by a DEVICE_GET_INFO probe whose reply must come next, which
    proves nothing was answered in between. Descriptors the messages carry must not stay open in
    the server (this process). ``manager`` is the server's data manager (:func:`choose_manager`;
    on the Cython backend every message passes the compiled path first, which must leave each to
    the Python code that rejects it).
    """
    report = FuzzReport()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = Path(tmp) / "fuzz.sock"
        server = VfioUserServer(
            [DeviceSpec(path, KITCHEN_SINK)], timeout=2.0, manager_factory=choose_manager(manager)
        )
        device = server.devices[0]
        with server.lock:
            _program(server)
        server.start()
        try:
            client = VfioUserClient(str(path))
            client.dma_map(DMA_BASE, DMA_SIZE)
            endpoint = server.endpoints[0]
            session = _wait_session(endpoint)
            ctx = context_for(session)
            device_before, session_before = device.state_digest(), session.state_digest()
            fds_before = _open_fd_count()
            stream = generate(seed, ctx, with_fds=True)
            probe = DeviceInfo(16, 0, 0, 0).pack()
            for _ in range(count):
                message = next(stream)
                if message.payload is None:  # oversize: send what the header claims, the server drains it
                    size = session.max_message + 1 + message.header.msg_id % 4096
                    message = dataclasses.replace(
                        message,
                        header=dataclasses.replace(message.header, size=size),
                        payload=bytes(size - 16),
                    )
                fds = _fresh_fds(message.fds)
                if fds:
                    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _fd_bytes(fds))]
                    client.sock.sendmsg([message.wire()], ancillary)
                    close_fds(fds)  # our copies; the server's copies must be closed by the server
                else:
                    client.send_raw(message.wire())
                report.messages += 1
                report.by_label[message.label] += 1
                if message.expect is None:
                    msg_id = client.send(Command.DEVICE_GET_INFO, probe)
                    header, payload = client.read_message()
                    if header.msg_id != msg_id or header.flags != TYPE_REPLY:
                        report.fail(message, f"a reply came for a No_reply command: {header}")
                    else:
                        report.silent += 1
                    continue
                header, payload = client.read_message()
                check_reply(report, message, header.pack() + payload)
            if session.state_digest() != session_before:  # every reply is in: nothing is pending
                report.failures.append("session state changed over the socket run")
            client.close()
            _wait_idle(endpoint)
            if device.state_digest() != device_before:
                report.failures.append("device state changed over the socket run")
            if _open_fd_count() > fds_before:
                report.failures.append(f"descriptors leaked: {fds_before} -> {_open_fd_count()}")
        finally:
            server.close()
    report.seconds = time.perf_counter() - started
    return report


def _program(server: VfioUserServer) -> None:
    manager, _ = fuzz_device()
    server.manager.restore(server.vm, server.devices[0].bdf, manager.save(1, Bdf(0, 2, 0)))


def _wait_session(endpoint: Endpoint, timeout: float = 5.0) -> Session:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = endpoint.current
        if current is not None and current.negotiated:
            return current
        time.sleep(0.005)
    raise TimeoutError("the server did not start a session")


def _wait_idle(endpoint: Endpoint, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while endpoint.current is not None and time.monotonic() < deadline:
        time.sleep(0.005)


def _open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def _fd_bytes(fds: list[int]) -> bytes:
    return struct.pack(f"{len(fds)}i", *fds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vpcid.adapters.vfio_user.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--messages", type=int, default=100_000, help="in-process messages (default 100000)")
    parser.add_argument(
        "--socket-messages", type=int, default=None, help="messages over a real socket (default messages/10)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--manager", choices=("model", "cython"), default=None,
                        help="the socket run's data manager (default: the server's default)")  # fmt: skip
    args = parser.parse_args(argv)
    socket_count = args.socket_messages if args.socket_messages is not None else args.messages // 10
    total = run_in_process(args.messages, args.seed)
    print(f"in process: {total.messages} messages in {total.seconds:.1f} s, {len(total.failures)} failures")
    over = run_over_socket(socket_count, args.seed + 7, manager=args.manager)
    print(f"over a socket: {over.messages} messages in {over.seconds:.1f} s, {len(over.failures)} failures")
    total.merge(over)
    print(f"errnos: {dict(sorted(total.by_errno.items()))}; no-reply (silent): {total.silent}")
    print(f"mutations: {dict(sorted(total.by_label.items()))}")
    for failure in total.failures:
        print(f"FAIL {failure}")
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
