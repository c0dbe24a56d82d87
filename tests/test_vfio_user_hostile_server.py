"""The vfio-user client and adapter against servers that misbehave: faults injected into our own server.

Each fault is a :class:`Session` or :class:`ServerManager` subclass that does
what a real server has been seen to do (pad replies, refuse large chunks,
answer errors with a payload, reset without resetting) or what a hostile
one could (deep JSON, endless replies, impossible region sizes, wrong
replies, vanishing). The client never raises a traceback: each ends as a
typed error, "unavailable", or a finding that names the requirement the
server breaks, with a trace that replays.
"""

from __future__ import annotations

import errno
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from vpcid.adapters.base import AdapterUnavailable
from vpcid.adapters.vfio_user.adapter import ServerFailed, VfioUserAdapter, adapter
from vpcid.adapters.vfio_user.client import ServerGone, ServerViolation, VfioUserClient, VfioUserError
from vpcid.adapters.vfio_user.protocol import (
    CONFIG_REGION,
    HEADER_SIZE,
    TYPE_REPLY,
    Command,
    Header,
    MigData,
    ProtocolError,
    RegionInfo,
    decode_mig_data,
    decode_region_access,
    invalid,
)
from vpcid.adapters.vfio_user.server import (
    DeviceSpec,
    Frame,
    Limits,
    ServerManager,
    Session,
    SessionFactory,
    VfioUserServer,
)
from vpcid.conformance.certify import CertificationReport, certify
from vpcid.conformance.devices import KITCHEN_SINK
from vpcid.conformance.engine import Differential
from vpcid.conformance.trace import Observation, Op, OpKind
from vpcid.model import Bdf

DEV = Bdf(0, 2, 0)


def serve(
    tmp_path: Path,
    session: SessionFactory | None = None,
    manager: type[ServerManager] = ServerManager,
    limits: Limits | None = None,
) -> tuple[VfioUserServer, str]:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "dev.sock"
    server = VfioUserServer([DeviceSpec(path, KITCHEN_SINK)], manager_factory=manager, limits=limits,
                            session_factory=session)  # fmt: skip
    return server.start(), str(path)


@pytest.fixture
def stop_servers() -> Iterator[list[VfioUserServer]]:
    started: list[VfioUserServer] = []
    yield started
    for server in started:
        server.close()


def summary(report: CertificationReport) -> dict[str, list[str]]:
    return {r.rid: [f.description for f in r.failures] for r in report.requirements if r.failures}


# --------------------------------------------------------------------------- faults seen in real servers


class PadsMigrationReads(Session):
    """libvfio-user's reply to MIG_DATA_READ is as long as the size asked for, whatever it holds."""

    def _mig_read(self, frame: Frame, payload: bytes) -> bytes:
        request, _ = decode_mig_data(payload, write=False)
        reply = super()._mig_read(frame, payload)
        return reply.ljust(MigData.STRUCT.size + request.size, b"\xee")


class SmallChunksOnly(Session):
    """Refuses migration chunks above the max_data_xfer_size it announced (4096 here)."""

    def _mig_read(self, frame: Frame, payload: bytes) -> bytes:
        request, _ = decode_mig_data(payload, write=False)
        if request.size > self.max_data_xfer:
            raise ProtocolError(errno.E2BIG, "chunk larger than announced")
        return super()._mig_read(frame, payload)


def test_padded_migration_replies_are_read_to_their_size(
    tmp_path: Path, stop_servers: list[VfioUserServer]
) -> None:
    """The reply's ``size`` field says how much is data; the padding is ignored (protocol text)."""
    padded, padded_path = serve(tmp_path / "a", PadsMigrationReads)
    plain, plain_path = serve(tmp_path / "b")
    stop_servers += [padded, plain]
    with VfioUserClient(padded_path) as a, VfioUserClient(plain_path) as b:
        assert a.save_stream() == b.save_stream()
    vmm = adapter(padded_path)
    try:
        assert {OpKind.SAVE, OpKind.RESTORE} <= vmm.info.operations
        assert vmm.info.canonical_blobs
    finally:
        vmm.close()


@pytest.mark.req("R-SR-001")
def test_migration_chunks_follow_the_servers_announcement(
    tmp_path: Path, stop_servers: list[VfioUserServer]
) -> None:
    """A server announcing max_data_xfer_size 4096 gets 4096-byte chunks, never 64 KiB ones."""
    server, path = serve(tmp_path, SmallChunksOnly, limits=Limits(max_data_xfer=4096))
    stop_servers.append(server)
    with VfioUserClient(path) as client:
        assert client.migration_chunk == 4096
        bar = max(range(6), key=lambda index: client.region_info(index).size)
        for page in range(3):  # 12 KiB of BAR contents in the stream
            client.region_write(bar, page * 4096, bytes(range(256)) * 16)
        stream = client.save_stream()
        assert len(stream) > 4096  # several chunks
        client.restore_stream(stream)
    vmm = adapter(path)
    try:
        save = Op(OpKind.SAVE, vm=1, bdf=DEV, name="s")
        restore = Op(OpKind.RESTORE, vm=1, bdf=DEV, name="s")
        assert vmm.execute(save).digest is not None
        assert vmm.execute(restore) == Observation()
    finally:
        vmm.close()


class RejectsIdentityWrites(Session):
    """Answers writes to the vendor and device IDs with EINVAL and, like libvfio-user, a payload."""

    def _region_write(self, frame: Frame, payload: bytes) -> bytes:
        head, _ = decode_region_access(payload, write=True)
        if head.region == CONFIG_REGION and head.offset < 4:
            raise invalid("vendor and device IDs are read-only")
        return super()._region_write(frame, payload)

    def handle(self, frame: Frame) -> bytes | None:
        reply = super().handle(frame)
        if reply is not None and Header.unpack(reply[:HEADER_SIZE]).flags & 0x20:
            return struct.pack("<HHIII", frame.header.msg_id, frame.header.command, HEADER_SIZE + 16,
                               TYPE_REPLY | 0x20, errno.EINVAL) + (frame.payload or b"")[:16]  # fmt: skip
        return reply


def test_an_error_reply_with_a_payload_is_a_rejection(
    tmp_path: Path, stop_servers: list[VfioUserServer]
) -> None:
    """A rejected write is observed as ``rejected`` (not a crash), and certification names the
    requirement the write breaks, with a trace that replays."""
    server, path = serve(tmp_path, RejectsIdentityWrites)
    stop_servers.append(server)
    with VfioUserClient(path) as client:
        with pytest.raises(VfioUserError) as caught:
            client.config_write(0, b"\0\0")
        assert caught.value.errno == errno.EINVAL
        assert client.config_read(0, 2) == KITCHEN_SINK.declared.image[:2]  # the connection goes on
    vmm = adapter(path)
    try:
        write = Op(OpKind.CONFIG_WRITE, vm=1, bdf=DEV, address=0, width=2, value=0)
        assert vmm.execute(Op(OpKind.INIT)) == Observation()
        assert vmm.execute(write) == Observation(error="rejected")
        report = certify(vmm, budget=2000, seed=3)
        failing = summary(report)
        assert failing
        assert all("rejected" in d for ds in failing.values() for d in ds)
        trace = next(r.failures[0].trace for r in report.requirements if r.failures)
        assert trace is not None
        assert Differential(vmm).replay([Op.from_json(step) for step in trace]) is not None
    finally:
        vmm.close()


class ResetKeepsInterruptLine(ServerManager):
    """A reset that leaves the interrupt line (0x3C) as the guest wrote it."""

    def reset(self, vm_id: int, bdf: Bdf) -> None:
        kept = self.region_config(vm_id, bdf, 0x3C, 1, None)
        super().reset(vm_id, bdf)
        self.region_config(vm_id, bdf, 0x3C, 1, kept)


@pytest.mark.req("R-RST-001")
def test_a_reset_that_does_not_reset_is_a_reset_finding(
    tmp_path: Path, stop_servers: list[VfioUserServer]
) -> None:
    """The finding names R-RST-001 (not the registers read later), and two runs against the same
    server (the second starting from what the first left) give the same report."""
    server, path = serve(tmp_path, manager=ResetKeepsInterruptLine)
    stop_servers.append(server)
    reports = []
    for _ in range(2):
        vmm = adapter(path)
        try:
            reports.append(certify(vmm, budget=2000, seed=5))
        finally:
            vmm.close()
        with VfioUserClient(path) as client:
            client.config_write(0x3C, b"\x0b")  # what a guest left behind: a reset keeps it
            client.reset()
    first, second = (summary(r) for r in reports)
    assert first == second
    assert "R-RST-001" in first
    assert all(rid.startswith("R-RST-") for rid in first), first
    assert "reset-incomplete" in first["R-RST-001"][0]


# --------------------------------------------------------------------------- hostile servers


class DeepVersion(Session):
    """Answers VERSION with JSON nested 1000 deep (Python's parser would recurse past its limit)."""

    def _version(self, frame: Frame, payload: bytes) -> bytes:
        super()._version(frame, payload)
        return struct.pack("<HH", 0, 0) + b"[" * 1000 + b"]" * 1000 + b"\0"


class EndlessReply(Session):
    """Answers REGION_READ with a header that announces 1 GiB, then a few bytes, then nothing."""

    def handle(self, frame: Frame) -> bytes | None:
        if frame.header.command == Command.REGION_READ:
            return Header(frame.header.msg_id, Command.REGION_READ, 1 << 30, TYPE_REPLY).pack() + bytes(64)
        return super().handle(frame)


class HugeRegion(Session):
    """Says region 0 is 2^64-1 bytes."""

    def _region_info(self, frame: Frame, payload: bytes) -> bytes:
        reply = RegionInfo.unpack_exact(super()._region_info(frame, payload))
        if reply.index == 0:
            return RegionInfo(reply.argsz, 3, 0, 0, (1 << 64) - 1, 0).pack()
        return reply.pack()


class WrongReplyToInterruptLine(Session):
    """Answers every one-byte read of the interrupt line (0x3C) under another message's ID."""

    def handle(self, frame: Frame) -> bytes | None:
        reply = super().handle(frame)
        if reply is None or frame.header.command != Command.REGION_READ or frame.payload is None:
            return reply
        head, _ = decode_region_access(frame.payload, write=False)
        if (head.region, head.offset, head.count) != (CONFIG_REGION, 0x3C, 1):
            return reply
        wrong = Header(frame.header.msg_id ^ 0x5A5A, frame.header.command, len(reply), TYPE_REPLY)
        return wrong.pack() + reply[HEADER_SIZE:]


def test_deep_json_in_the_version_reply(tmp_path: Path, stop_servers: list[VfioUserServer]) -> None:
    server, path = serve(tmp_path, DeepVersion)
    stop_servers.append(server)
    with pytest.raises(ServerViolation, match="VERSION"):
        VfioUserClient(path)
    with pytest.raises(AdapterUnavailable, match="VERSION"):
        adapter(path)


def test_a_reply_that_never_ends_is_refused_before_it_is_read(
    tmp_path: Path, stop_servers: list[VfioUserServer]
) -> None:
    server, path = serve(tmp_path, EndlessReply)
    stop_servers.append(server)
    client = VfioUserClient(path, timeout=5.0)
    try:
        with pytest.raises(ServerViolation, match="a message of 1073741808 payload bytes where at most"):
            client.config_read(0, 4)
        assert len(client._rx) < 1 << 20  # nothing like the announced GiB was buffered
        with pytest.raises(ServerGone, match="failed earlier"):
            client.config_read(0, 4)  # the connection is not used again
    finally:
        client.close()


def test_an_impossible_region_size_is_unavailable(tmp_path: Path, stop_servers: list[VfioUserServer]) -> None:
    server, path = serve(tmp_path, HugeRegion)
    stop_servers.append(server)
    with pytest.raises(AdapterUnavailable, match=r"region 0 .* has 0xffffffffffffffff bytes"):
        adapter(path)


def test_a_protocol_violation_mid_certification_is_a_finding(
    tmp_path: Path, stop_servers: list[VfioUserServer]
) -> None:
    """The operation the server broke diverges (with the server's fault in the finding); the next
    trace reconnects, and certification finishes."""
    server, path = serve(tmp_path, WrongReplyToInterruptLine)
    stop_servers.append(server)
    vmm: VfioUserAdapter = adapter(f"{path}@kitchen-sink")  # discovery reads 0x3C too
    try:
        report = certify(vmm, budget=2000, seed=2)
    finally:
        vmm.close()
    failing = summary(report)
    described = [d for ds in failing.values() for d in ds]
    assert any("ServerFailed" in d and "reply to msg" in d for d in described), described
    assert any("reply to msg" in e for e in vmm.server_errors)
    assert all("reply to msg" in d for d in described), described  # that fault, and no other finding
    trace = next(r.failures[0].trace for r in report.requirements if r.failures)
    assert trace is not None
    replayer = adapter(f"{path}@kitchen-sink")
    try:
        assert Differential(replayer).replay([Op.from_json(step) for step in trace]) is not None
    finally:
        replayer.close()


def test_a_server_that_goes_away_fails_fast(tmp_path: Path, stop_servers: list[VfioUserServer]) -> None:
    """Once the server is gone and a reconnection failed, every later trace fails at once with why."""
    server, path = serve(tmp_path)
    vmm = adapter(path)
    try:
        server.close()
        read = Op(OpKind.CONFIG_READ, vm=1, bdf=DEV, address=0, width=4)
        with pytest.raises(ServerFailed, match=r"closed the connection|Broken pipe|reset"):
            vmm.execute(read)
        for _ in range(2):
            with pytest.raises(ServerFailed, match="cannot reconnect"):
                vmm.execute(Op(OpKind.INIT))
    finally:
        vmm.close()


def test_server_commands_in_between_are_refused(tmp_path: Path, stop_servers: list[VfioUserServer]) -> None:
    """A DMA_READ the server sends before its reply is answered with EINVAL; the reply still arrives."""

    class AsksForDma(Session):
        def handle(self, frame: Frame) -> bytes | None:
            reply = super().handle(frame)
            if frame.header.command == Command.REGION_READ and reply is not None:
                ask = Header(7, Command.DMA_READ, HEADER_SIZE + 16, 0).pack() + struct.pack("<QQ", 0x1000, 8)
                return ask + reply
            return reply

    server, path = serve(tmp_path, AsksForDma)
    stop_servers.append(server)
    with VfioUserClient(path) as client:
        assert client.config_read(0, 2) == KITCHEN_SINK.declared.image[:2]
        assert client.server_commands == 1


def write_until_it_fails(client: VfioUserClient) -> None:
    for _ in range(100):  # the first sends may still land in the socket buffer
        client.config_write(0x3C, b"\x01")


def test_a_broken_pipe_is_the_servers_fault_not_stdouts(tmp_path: Path) -> None:
    """Writing to a server that closed the socket raises ServerGone, never BrokenPipeError (which
    click and Python take for a broken standard output, ending certify with no output)."""
    server, path = serve(tmp_path)
    client = VfioUserClient(path)
    try:
        server.close()
        with pytest.raises(ServerGone) as caught:
            write_until_it_fails(client)
        assert not isinstance(caught.value, OSError)
    finally:
        client.close()


class VanishesAfter3000(Session):
    """The whole server closes after 3000 messages (discovery included), as a crashed server would."""

    seen = 0
    server: VfioUserServer | None = None

    def handle(self, frame: Frame) -> bytes | None:
        VanishesAfter3000.seen += 1
        if VanishesAfter3000.seen == 3000 and VanishesAfter3000.server is not None:
            threading.Thread(target=VanishesAfter3000.server.close).start()
        return super().handle(frame)


def test_certify_reports_a_server_that_vanishes_mid_run(tmp_path: Path) -> None:
    """``vpcid certify`` against a server that disappears prints its report and exits 1: no
    traceback, no silent exit (a broken socket is not taken for a broken stdout)."""
    vpcid = Path(sys.executable).with_name("vpcid")
    if not vpcid.exists():
        pytest.skip("the vpcid console script is not installed next to this Python")
    server, path = serve(tmp_path, VanishesAfter3000)
    VanishesAfter3000.seen, VanishesAfter3000.server = 0, server
    try:
        done = subprocess.run(
            [str(vpcid), "certify", "--adapter", f"vfio-user:{path}", "--budget", "2000"],
            capture_output=True, text=True, cwd=tmp_path, timeout=300,
        )  # fmt: skip
    finally:
        server.close()
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "NOT CONFORMANT" in done.stdout
    assert "cannot reconnect" in done.stdout


class RefusesResetOnceArmed(Session):
    """Answers DEVICE_RESET with EINVAL once ``armed`` (after the adapter has started)."""

    armed = False

    def _reset(self, frame: Frame, payload: bytes) -> bytes:
        if RefusesResetOnceArmed.armed:
            raise invalid("resets are refused")
        return super()._reset(frame, payload)


def test_a_refused_reset_is_a_rejected_reset(tmp_path: Path, stop_servers: list[VfioUserServer]) -> None:
    server, path = serve(tmp_path, RefusesResetOnceArmed)
    stop_servers.append(server)
    RefusesResetOnceArmed.armed = False
    vmm = adapter(path)
    try:
        RefusesResetOnceArmed.armed = True
        assert vmm.execute(Op(OpKind.RESET, vm=1, bdf=DEV)) == Observation(error="rejected")
        assert any("DEVICE_RESET failed: EINVAL" in e for e in vmm.server_errors)
    finally:
        RefusesResetOnceArmed.armed = False
        vmm.close()


class RefusesMigration(Session):
    """Records every migration message and refuses it (libvfio-user's gpio sample aborts on a
    MIG_DATA_READ that is not exactly its state's size; a certifier must be able to send none)."""

    seen: ClassVar[list[int]] = []

    def _feature(self, frame: Frame, payload: bytes) -> bytes:
        RefusesMigration.seen.append(frame.header.command)
        raise ProtocolError(errno.EIO, "migration would end this server")

    def _mig_read(self, frame: Frame, payload: bytes) -> bytes:
        RefusesMigration.seen.append(frame.header.command)
        raise ProtocolError(errno.EIO, "migration would end this server")


def test_migration_off_sends_no_migration_message(tmp_path: Path, stop_servers: list[VfioUserServer]) -> None:
    """``migration=off``: no probe, no save or restore offered, the description says so, and a
    certification runs without one migration message; the default probes (and notes the refusal)."""
    server, path = serve(tmp_path, RefusesMigration)
    stop_servers.append(server)
    RefusesMigration.seen.clear()
    vmm = adapter(f"{path},migration=off")
    try:
        assert not {OpKind.SAVE, OpKind.RESTORE} & vmm.info.operations
        assert not vmm.info.canonical_blobs
        assert "migration off (migration=off" in vmm.info.description
        report = certify(vmm, budget=300, seed=4)
    finally:
        vmm.close()
    assert RefusesMigration.seen == []
    assert report.conformant, summary(report)
    assert "migration off" in report.description
    probed = adapter(path)
    try:
        assert "migration not used: the server does not offer migration v2" in probed.info.description
        assert not {OpKind.SAVE, OpKind.RESTORE} & probed.info.operations
    finally:
        probed.close()
    assert RefusesMigration.seen == [Command.DEVICE_FEATURE]  # the probe's first step, refused
    with pytest.raises(AdapterUnavailable, match=r"migration='sometimes'.*auto, off"):
        adapter(f"{path},migration=sometimes")


class RejectsLikeLibvfioUser(Session):
    """libvfio-user's header writes (spec/formats/vfio-user.md, "Rejecting instead of ignoring"):
    the vendor ID rejected, the revision ID and class code ignored (by the model's masks), and a
    command write with a bit it does not implement rejected after the bits it does are written."""

    IMPLEMENTED_COMMAND = 0x0557

    def _region_write(self, frame: Frame, payload: bytes) -> bytes:
        head, data = decode_region_access(payload, write=True)
        if head.region == CONFIG_REGION and head.offset < 2:
            raise invalid("vendor ID is read-only")
        if head.region == CONFIG_REGION and head.offset == 4 and head.count >= 2:
            command = int.from_bytes(data[:2], "little")
            if command & ~self.IMPLEMENTED_COMMAND:
                kept = (command & self.IMPLEMENTED_COMMAND).to_bytes(2, "little")
                self.device.access(CONFIG_REGION, 4, 2, kept)
                raise invalid(f"unconsumed command flags {command & ~self.IMPLEMENTED_COMMAND:#x}")
        return super()._region_write(frame, payload)


def test_rejecting_some_read_only_writes_is_a_finding_not_a_variant(
    tmp_path: Path, stop_servers: list[VfioUserServer]
) -> None:
    """A server that rejects some writes to read-only bits, ignores others and half-applies a
    rejected command write fails the requirements of the registers written, and no declared variant
    explains it."""
    server, path = serve(tmp_path, RejectsLikeLibvfioUser)
    stop_servers.append(server)
    vmm = adapter(f"{path}@kitchen-sink")
    try:
        revision = Op(OpKind.CONFIG_WRITE, vm=1, bdf=DEV, address=8, width=1, value=0xFF)
        vendor = Op(OpKind.CONFIG_WRITE, vm=1, bdf=DEV, address=0, width=2, value=0)
        assert vmm.execute(Op(OpKind.INIT)) == Observation()
        assert vmm.execute(revision) == Observation()  # ignored, as PCI says
        assert vmm.execute(vendor) == Observation(error="rejected")
        report = certify(vmm, budget=2000, seed=3)
    finally:
        vmm.close()
    failing = summary(report)
    assert failing
    assert any("rejected" in d for ds in failing.values() for d in ds)
    assert report.variants == {}
    identity = [d for d in failing.get("R-CFG-002", []) if "got error rejected" in d]
    assert identity, "a refused write of identity bytes breaks R-CFG-002, not R-ACC-001"
    assert not any("got error rejected" in d and "config_write" in d for d in failing.get("R-ACC-001", []))


class HalfAppliedCommand:
    """Configuration space of a device that set command bits 8 and 10 its type calls read-only (a
    rejected write half-applied, as libvfio-user's gpio sample does), writes taken as given."""

    path = "half-applied"

    def __init__(self) -> None:
        self.config = bytearray(KITCHEN_SINK.declared.image)
        self.config[0x04:0x06] = b"\x07\x05"

    def config_read(self, offset: int, length: int) -> bytes:
        return bytes(self.config[offset : offset + length])

    def config_write(self, offset: int, data: bytes) -> None:
        self.config[offset : offset + len(data)] = data


@pytest.mark.req("R-RST-001")
def test_init_writes_the_command_register_back_to_zero_even_its_read_only_bits() -> None:
    """The command register is zero at power-on whatever the type lets be written (R-DT-005): init
    writes all of it back, so a device that set bits its type calls read-only starts clean and the
    traces that follow replay on a fresh device."""
    from vpcid.adapters.vfio_user.adapter import _to_power_on
    from vpcid.model import ConfigSpace, DeviceType

    declared = KITCHEN_SINK.declared
    wmask = bytearray(declared.wmask)
    wmask[0x05] = 0  # bits 8 and 10 read-only, as discovery may see them
    narrow = DeviceType.from_space(
        "narrow-command", ConfigSpace(declared.image, bytes(wmask), declared.w1cmask),
        KITCHEN_SINK.bars, KITCHEN_SINK.rom, KITCHEN_SINK.behaviour, KITCHEN_SINK.config_behaviour,
    )  # fmt: skip
    device = HalfAppliedCommand()
    _to_power_on(device, narrow, 256)  # type: ignore[arg-type]  # the two calls it makes
    assert device.config[0x04:0x06] == b"\x00\x00"


class WholeCommandWritesOnly(Session):
    """libvfio-user's command register: a byte write at 0x05 is refused; whole-register writes work."""

    def _region_write(self, frame: Frame, payload: bytes) -> bytes:
        head, _ = decode_region_access(payload, write=True)
        if head.region == CONFIG_REGION and head.offset == 5:
            raise invalid("command writes are whole")
        return super()._region_write(frame, payload)


def test_discovery_finds_command_bits_that_only_whole_register_writes_reach(
    tmp_path: Path, stop_servers: list[VfioUserServer]
) -> None:
    server, path = serve(tmp_path, WholeCommandWritesOnly)
    stop_servers.append(server)
    vmm = adapter(path)
    try:
        machine = vmm.info.machine
        assert machine is not None
        (_, dtype), *_ = machine.devices
        assert dtype.declared.wmask[0x05] == KITCHEN_SINK.declared.wmask[0x05] != 0
        assert "written whole" in vmm.info.description
    finally:
        vmm.close()
