"""The vfio-user server: negotiation, regions, reset, DMA/IRQ bookkeeping, migration v2, robustness."""

from __future__ import annotations

import errno
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vpcid.adapters import cython as cython_backend
from vpcid.adapters.vfio_user.client import ServerViolation, VfioUserClient, VfioUserError
from vpcid.adapters.vfio_user.protocol import (
    CONFIG_REGION,
    DEVICE_FLAGS_PCI,
    DEVICE_FLAGS_RESET,
    FLAG_ERROR,
    FLAG_NO_REPLY,
    IRQ_SET_ACTION_TRIGGER,
    IRQ_SET_DATA_EVENTFD,
    IRQ_SET_DATA_NONE,
    REGION_READ_FLAG,
    REGION_WRITE_FLAG,
    TYPE_REPLY,
    Command,
    DeviceInfo,
    Header,
    MigState,
    RegionAccess,
    encode_message,
)
from vpcid.adapters.vfio_user.server import (
    BUSY_POLL_ENV,
    DEFAULT_BUSY_POLL_US,
    MANAGER_ENV,
    DeviceSpec,
    ServerManager,
    VfioUserServer,
    busy_poll_from,
    choose_manager,
)
from vpcid.conformance.devices import EXPRESS_SINK, KITCHEN_SINK
from vpcid.model import Bdf, DataManager, DeviceType, InvalidArgument
from vpcid.model.catalog import E1000, EDU

KS, NIC = Bdf(0, 2, 0), Bdf(0, 3, 0)
"""Where the server puts its first and second device."""


def sock(directory: Path, name: str) -> Path:
    path = directory / name
    assert len(str(path)) < 100, "UNIX socket paths must stay short"
    return path


COMPILED = pytest.mark.skipif(not cython_backend.available(), reason="the Cython backend is not built")
SERVERS = [
    pytest.param(("model", 0), id="model"),
    pytest.param(("cython", DEFAULT_BUSY_POLL_US), id="cython", marks=COMPILED),
    pytest.param(("cython", 0), id="cython-no-poll", marks=COMPILED),
]
"""How a server runs: on the model (Python paths), or on the Cython backend (the compiled path), with
its default busy poll or none."""


@pytest.fixture(params=SERVERS)
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[VfioUserServer]:
    """kitchen-sink at ks.sock, e1000 at nic.sock, stalled clients dropped after 0.5 s; each way a
    server runs."""
    specs = [
        DeviceSpec(sock(tmp_path, "ks.sock"), KITCHEN_SINK),
        DeviceSpec(sock(tmp_path, "nic.sock"), E1000),
    ]
    manager, busy_poll = request.param
    with VfioUserServer(
        specs, timeout=0.5, manager_factory=choose_manager(manager), busy_poll_us=busy_poll
    ) as running:
        yield running


@pytest.fixture
def client(server: VfioUserServer) -> Iterator[VfioUserClient]:
    with VfioUserClient(str(server.endpoints[0].path), timeout=5) as connected:
        yield connected


def snapshot(server: VfioUserServer) -> bytes:
    """The data manager's VM snapshot: every byte of every device's state and data."""
    with server.lock:
        return server.manager.snapshot(server.vm)


def expect_errno(code: int, call: object) -> None:
    assert callable(call)
    with pytest.raises(VfioUserError) as info:
        call()
    assert info.value.errno == code, info.value


def raw_reply(client: VfioUserClient, data: bytes) -> Header:
    client.send_raw(data)
    header, payload = client.read_message()
    assert not payload or not header.flags & FLAG_ERROR
    return header


# --------------------------------------------------------------------------- negotiation and info


def test_version_negotiation(server: VfioUserServer) -> None:
    with VfioUserClient(str(server.endpoints[0].path), negotiate=False) as c:
        header = raw_reply(c, encode_message(1, Command.DEVICE_GET_INFO, DeviceInfo(16, 0, 0, 0).pack()))
        assert (header.flags, header.error) == (TYPE_REPLY | FLAG_ERROR, errno.EINVAL)  # VERSION first
        bad_major = struct.pack("<HH", 1, 0) + b'{"capabilities":{}}\0'
        header = raw_reply(c, encode_message(2, Command.VERSION, bad_major))
        assert header.error == errno.ENOTSUP
        reply = c.negotiate()
        assert (reply.major, reply.minor) == (0, 2)
        caps = reply.capabilities
        assert (caps.max_msg_fds, caps.max_data_xfer_size, caps.pgsizes, caps.write_multiple) == (
            8, 1 << 20, 4096, True)  # fmt: skip
        expect_errno(errno.EINVAL, c.negotiate)  # once per connection


def test_device_region_and_irq_info(client: VfioUserClient) -> None:
    info = client.device_info()
    assert info.flags == DEVICE_FLAGS_RESET | DEVICE_FLAGS_PCI
    assert (info.num_regions, info.num_irqs) == (9, 5)
    rw = REGION_READ_FLAG | REGION_WRITE_FLAG
    regions = [client.region_info(i) for i in range(9)]
    assert [(r.size, r.flags) for r in regions] == [
        (32, rw), (4096, rw), (1 << 20, rw), (0, 0), (16, rw), (4, rw),  # BARs; BAR3 is BAR2's upper half
        (2048, REGION_READ_FLAG), (256, rw), (0, 0),  # ROM, configuration space, no VGA
    ]  # fmt: skip
    assert client.irq_info(0).count == 1  # interrupt pin B
    assert [client.irq_info(i).count for i in range(1, 5)] == [4, 0, 0, 0]  # MSI: 4 vectors capable
    expect_errno(errno.EINVAL, lambda: client.region_info(9))
    expect_errno(errno.EINVAL, lambda: client.irq_info(5))


# --------------------------------------------------------------------------- regions


@pytest.mark.req("R-CFG-001", "R-BAR-003", "R-BAR-005")
def test_config_region_has_data_manager_semantics(client: VfioUserClient) -> None:
    """Region 7 behaves byte for byte like the model's configuration space."""
    model = DataManager()
    model.create_vm(1)
    model.plug(1, KS, KITCHEN_SINK)
    writes = [(0x10, 0xFFFF_FFFF), (0x14, 0xFFFF_FFFF), (0x18, 0xFFFF_FFFF), (0x1C, 0xFFFF_FFFF),
              (0x04, 0xFFFF_FFFF), (0x30, 0xFFFF_FFFF), (0x60, 0xFFFF_FFFF), (0x3C, 0x1234_5678)]  # fmt: skip
    for offset, value in writes:
        client.config_write(offset, value.to_bytes(4, "little"))
        model.config_write(1, KS, offset, 4, value)
    expected = b"".join(model.config_read(1, KS, o, 4).to_bytes(4, "little") for o in range(0, 256, 4))
    assert client.config_read(0, 256) == expected  # one read across 64 dwords
    assert client.config_read(0x11, 3) == expected[0x11:0x14]
    client.config_write(0x3C, b"\x01\x02\x03\x04\x05")  # a write across dwords is split per dword
    assert (
        client.config_read(0x3C, 8)
        == b"\x01" + expected[0x3D:0x40] + expected[0x40:0x41] + expected[0x41:0x44]
    )
    expect_errno(errno.EINVAL, lambda: client.config_read(0xFD, 4))  # past a 256-byte space
    expect_errno(errno.EINVAL, lambda: client.config_read(0, 0))


@pytest.mark.req("R-DT-004", "R-BAR-007")
def test_bar_and_rom_regions(client: VfioUserClient) -> None:
    client.region_write(2, 0xF_FFF8, b"lastword")  # the last bytes of a 1 MiB BAR, not decoding
    assert client.region_read(2, 0xF_FFF8, 8) == b"lastword"
    assert client.region_read(2, 0, 4) == bytes(4)
    assert client.region_read(6, 0, 4) == bytes(range(4))  # ROM contents
    expect_errno(errno.EINVAL, lambda: client.region_write(6, 0, b"x"))  # read-only region
    expect_errno(errno.EINVAL, lambda: client.region_read(2, 1 << 20, 1))
    expect_errno(errno.EINVAL, lambda: client.region_read(3, 0, 1))  # empty region
    assert client.write_multi([(7, 0x3C, b"\x0b"), (1, 8, b"multi")]) == 2
    assert client.region_read(1, 8, 5) == b"multi"


@pytest.mark.req("R-RST-001", "R-RST-002")
def test_reset(client: VfioUserClient) -> None:
    power_on = client.config_read(0, 256)
    client.config_write(0x10, b"\x40\xc0\x00\x00")
    client.config_write(0x04, b"\x07\x01")
    client.region_write(1, 0, b"data")
    client.reset()
    assert client.config_read(0, 256) == power_on
    assert client.region_read(1, 0, 4) == bytes(4)


def test_devices_are_independent(server: VfioUserServer, client: VfioUserClient) -> None:
    with VfioUserClient(str(server.endpoints[1].path)) as nic:
        assert nic.config_read(0, 4) == bytes.fromhex("86800e10")
        nic.config_write(0x3C, b"\x0a")
        client.config_write(0x3C, b"\x0b")
        assert (nic.config_read(0x3C, 1), client.config_read(0x3C, 1)) == (b"\x0a", b"\x0b")


# --------------------------------------------------------------------------- DMA and IRQ bookkeeping


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_dma_map_unmap_and_descriptors(server: VfioUserServer) -> None:
    before = open_fds()
    with VfioUserClient(str(server.endpoints[0].path)) as c:
        memory = os.memfd_create("guest-ram")
        os.ftruncate(memory, 0x10000)
        c.dma_map(0x10_0000, 0x10000, fd=memory, offset=0)
        c.dma_map(0x20_0000, 0x1000)  # no descriptor: accessed by message
        expect_errno(errno.EEXIST, lambda: c.dma_map(0x10_8000, 0x1000))
        expect_errno(errno.EINVAL, lambda: c.dma_map(0x30_0001, 0x1000))
        expect_errno(errno.ENOENT, lambda: c.dma_unmap(0x10_0000, 0x1000))  # must match exactly
        session = server.endpoints[0].current
        assert session is not None
        assert sorted(session.dma) == [0x10_0000, 0x20_0000]
        c.dma_unmap(0x20_0000, 0x1000)
        assert sorted(session.dma) == [0x10_0000]
        efd = os.eventfd(0)
        c.set_irqs(0, IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, 0, 1, fds=[efd])
        c.set_irqs(0, IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER, 0, 1)
        assert list(session.irq_fds) == [(0, 0, IRQ_SET_ACTION_TRIGGER)]
        os.close(memory)
        os.close(efd)
        assert open_fds() == before + 4  # both ends of the connection, the server's guest RAM and eventfd
    deadline = time.monotonic() + 5
    while open_fds() > before and time.monotonic() < deadline:  # the server closes them when we leave
        time.sleep(0.01)
    assert open_fds() == before


# --------------------------------------------------------------------------- migration v2


@pytest.mark.req("R-SR-001", "R-SR-002", "R-DS-005")
def test_migration_stream_is_the_blob(server: VfioUserServer, client: VfioUserClient) -> None:
    assert client.migration_flags() == 1  # STOP_COPY
    client.config_write(0x14, b"\x00\x00\x00\xe0")
    client.config_write(0x04, b"\x02\x00")
    client.region_write(1, 0x100, b"payload")
    with server.lock:
        blob = server.manager.save(server.vm, KS)
    assert client.save_stream(chunk=1000) == blob  # several reads, the last one short
    assert client.mig_state() is MigState.RUNNING
    client.reset()
    client.restore_stream(blob, chunk=999)
    assert client.config_read(0x14, 4) == b"\x00\x00\x00\xe0"
    assert client.region_read(1, 0x100, 7) == b"payload"
    assert client.save_stream() == blob


@pytest.mark.req("R-SR-003", "R-SR-007", "R-ERR-001")
def test_rejected_streams_change_nothing(server: VfioUserServer, client: VfioUserClient) -> None:
    client.region_write(1, 0, b"keep")
    before = snapshot(server)
    with VfioUserClient(str(server.endpoints[1].path)) as nic:
        foreign = nic.save_stream()  # an e1000 blob
    expect_errno(errno.EBADMSG, lambda: client.restore_stream(b"not a blob"))
    assert client.mig_state() is MigState.STOP  # the walk stopped at the failed arc
    client.set_mig_state(MigState.RUNNING)
    expect_errno(errno.EINVAL, lambda: client.restore_stream(foreign))
    client.set_mig_state(MigState.RUNNING)
    assert snapshot(server) == before


def test_migration_state_machine(client: VfioUserClient) -> None:
    expect_errno(errno.EINVAL, lambda: client.mig_read(16))  # only in STOP_COPY
    expect_errno(errno.EINVAL, lambda: client.mig_write(b"x"))  # only in RESUMING
    expect_errno(errno.EINVAL, lambda: client.set_mig_state(MigState.PRE_COPY))
    expect_errno(errno.EINVAL, lambda: client.set_mig_state(MigState.ERROR))
    client.set_mig_state(MigState.STOP_COPY)  # RUNNING -> STOP -> STOP_COPY
    assert client.mig_state() is MigState.STOP_COPY
    client.set_mig_state(MigState.RESUMING)  # via STOP, which ends the saving session
    expect_errno(errno.EINVAL, lambda: client.mig_read(16))
    client.mig_write(b"partial")
    client.reset()  # DEVICE_RESET ends any session: RUNNING again
    assert client.mig_state() is MigState.RUNNING


# --------------------------------------------------------------------------- rejection and robustness


@pytest.mark.req("R-ERR-001")
def test_malformed_messages_change_nothing(server: VfioUserServer, client: VfioUserClient) -> None:
    client.region_write(1, 0, b"state")
    before = snapshot(server)
    cases = [
        (encode_message(5, Command.REGION_WRITE, RegionAccess(0, 1, 8).pack() + b"short"), errno.EINVAL),
        (encode_message(6, Command.REGION_WRITE, RegionAccess(4094, 1, 4).pack() + b"over"), errno.EINVAL),
        (encode_message(7, Command.DEVICE_RESET, b"x"), errno.EINVAL),
        (encode_message(8, 99, b""), errno.ENOSYS),
        (Header(9, Command.DEVICE_RESET, 12, 0).pack(), errno.EINVAL),  # size below the header
        (encode_message(10, Command.DEVICE_RESET, b"", 0x1), errno.EINVAL),  # a reply, not a command
    ]
    for data, code in cases:
        header = raw_reply(client, data)
        assert (header.flags, header.error) == (TYPE_REPLY | FLAG_ERROR, code), data.hex()
    assert snapshot(server) == before
    assert client.region_read(1, 0, 5) == b"state"  # the connection is still in sync


def test_no_reply_is_honoured(server: VfioUserServer, client: VfioUserClient) -> None:
    """A sound header with No_reply gets no reply, even when the payload is rejected."""
    client.send(Command.REGION_WRITE, RegionAccess(0, 1, 2).pack() + b"ok", no_reply=True)
    client.send(Command.REGION_WRITE, RegionAccess(1 << 40, 1, 2).pack() + b"no", no_reply=True)
    assert client.region_read(1, 0, 2) == b"ok"  # the next reply is this read's


def test_oversized_message_is_drained(client: VfioUserClient) -> None:
    big = 16 + 16 + (1 << 20) + 1
    client.send_raw(Header(3, Command.REGION_WRITE, big, 0).pack() + bytes(big - 16))
    header, _ = client.read_message()
    assert (header.msg_id, header.error) == (3, errno.E2BIG)
    assert client.config_read(0, 4) == bytes.fromhex("361bf000")


def test_disconnect_and_garbage_keep_the_device(server: VfioUserServer) -> None:
    path = str(server.endpoints[0].path)
    with VfioUserClient(path) as c:
        c.region_write(1, 0, b"kept")
    for junk in (b"\x01\x00\x05", os.urandom(4096), Header(1, 10, 1000, 0).pack() + b"partial"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(junk)
        s.close()
    with VfioUserClient(path) as c:
        assert c.region_read(1, 0, 4) == b"kept"


def test_stalled_client_is_dropped_and_others_keep_working(server: VfioUserServer) -> None:
    ks, nic = (str(e.path) for e in server.endpoints)
    staller = VfioUserClient(ks)
    staller.send_raw(Header(1, Command.REGION_READ, 32, 0).pack())  # half a message, then silence
    with VfioUserClient(nic) as other:
        for _ in range(20):  # the other device answers during the stall
            assert other.config_read(0, 2) == b"\x86\x80"
        assert server.endpoints[0].current is not None  # while the stalled client is still connected
    staller.sock.settimeout(3)
    assert staller.sock.recv(1) == b""  # dropped after the 0.5 s message timeout
    staller.close()
    with VfioUserClient(ks) as c:
        assert c.config_read(0, 2) == b"\x36\x1b"


def test_a_client_that_never_reads_its_replies_is_dropped(server: VfioUserServer) -> None:
    """Reads whose replies fill the socket, never read: the client is dropped after the message
    timeout, the other device answers meanwhile, and the device serves the next client."""
    ks, nic = (str(e.path) for e in server.endpoints)
    flooder = VfioUserClient(ks)
    index = max(range(6), key=lambda n: flooder.region_info(n).size)
    read_all = RegionAccess(0, index, 1 << 20).pack()
    for msg_id in range(32):  # 32 MiB of replies, far more than a socket holds
        flooder.send_raw(Header(msg_id, Command.REGION_READ, 32, 0).pack() + read_all)
    with VfioUserClient(nic) as other:
        for _ in range(20):
            assert other.config_read(0, 2) == b"\x86\x80"
    dropped = threading.Event()
    for _ in range(1000):
        if server.endpoints[0].current is None:
            dropped.set()
            break
        dropped.wait(0.01)
    assert dropped.is_set()
    flooder.close()
    with VfioUserClient(ks) as again:
        assert again.config_read(0, 2) == b"\x36\x1b"


def test_second_client_waits_for_the_first(server: VfioUserServer) -> None:
    path = str(server.endpoints[0].path)
    first = VfioUserClient(path)
    result: list[bytes] = []

    def second() -> None:
        with VfioUserClient(path) as c:
            result.append(c.config_read(0, 2))

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.2)
    assert not result  # still queued behind the first client
    first.close()
    thread.join(timeout=5)
    assert result == [b"\x36\x1b"]


def test_client_rejects_a_lying_server(tmp_path: Path) -> None:
    """The client checks replies: a reply to another message is a ServerViolation."""
    path = sock(tmp_path, "liar.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def liar() -> None:
        conn, _ = listener.accept()
        header = Header.unpack(conn.recv(16))
        conn.recv(65536)
        conn.sendall(Header(header.msg_id + 1, header.command, 16, TYPE_REPLY).pack())
        conn.close()

    thread = threading.Thread(target=liar)
    thread.start()
    with pytest.raises(ServerViolation):
        VfioUserClient(str(path))
    thread.join(timeout=5)
    listener.close()


# --------------------------------------------------------------------------- the command


def start_serve(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "vpcid.conformance.serve", "vfio-user", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline() if ready else ""
    if line != "ready\n":
        process.kill()
        _, err = process.communicate(timeout=10)
        pytest.fail(f"server did not start: {line!r} {err}")
    return process


def test_serve_command_runs_until_sigterm(tmp_path: Path) -> None:
    a, b = sock(tmp_path, "a.sock"), sock(tmp_path, "b.sock")
    process = start_serve(tmp_path, "--socket", str(a), "--socket", str(b), "--type", "express-sink",
                          "--type", "edu")  # fmt: skip
    try:
        with VfioUserClient(str(a)) as c:
            assert c.region_info(CONFIG_REGION).size == EXPRESS_SINK.config_size
        with VfioUserClient(str(b)) as c:
            assert c.config_read(0, 4) == bytes.fromhex("3412e811")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert "edu (00:03.0 of VM 1)" in err
    assert not a.exists()
    assert not b.exists()


def test_serve_command_rejects_bad_arguments(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "vpcid.conformance.serve", "vfio-user", "--socket", str(tmp_path / "x"),
               "--type", "no-such-type"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "no-such-type" in done.stderr


def test_busy_socket_path_is_refused(server: VfioUserServer) -> None:
    with pytest.raises(OSError, match="in use"):
        VfioUserServer([DeviceSpec(server.endpoints[0].path, KITCHEN_SINK)])


def test_flags_in_error_replies(client: VfioUserClient) -> None:
    """An error reply is the header alone, reply type with the error bit, echoing ID and command."""
    header = raw_reply(client, encode_message(0xBEEF, Command.DMA_READ, bytes(16), FLAG_NO_REPLY | 0x40))
    assert header == Header(0xBEEF, Command.DMA_READ, 16, TYPE_REPLY | FLAG_ERROR, errno.EINVAL)


# --------------------------------------------------------------------------- the two data managers


def test_choose_manager() -> None:
    assert choose_manager("model") is ServerManager
    with pytest.raises(InvalidArgument, match="'model' or 'cython'"):
        choose_manager("fast")
    if cython_backend.available():
        assert choose_manager("cython") is cython_backend.Manager
        assert choose_manager() is cython_backend.Manager  # the default where it is built


def test_manager_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MANAGER_ENV, "model")
    assert choose_manager() is ServerManager
    monkeypatch.setenv(MANAGER_ENV, "nonsense")
    with pytest.raises(InvalidArgument, match=MANAGER_ENV):
        choose_manager()


def test_busy_poll_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The server's busy poll: the argument, else the environment, else the default; validated."""
    monkeypatch.delenv(BUSY_POLL_ENV, raising=False)
    assert busy_poll_from() == DEFAULT_BUSY_POLL_US
    assert busy_poll_from(0) == 0
    monkeypatch.setenv(BUSY_POLL_ENV, "200")
    assert busy_poll_from() == 200
    assert busy_poll_from(7) == 7
    for bad in ("fast", "1.5"):
        monkeypatch.setenv(BUSY_POLL_ENV, bad)
        with pytest.raises(InvalidArgument, match=BUSY_POLL_ENV):
            busy_poll_from()
    for bad in ("-1", "1001"):
        monkeypatch.setenv(BUSY_POLL_ENV, bad)
        with pytest.raises(InvalidArgument, match="busy_poll_us"):
            busy_poll_from()
    monkeypatch.delenv(BUSY_POLL_ENV)
    for value in (-1, 1001, True, 2.0):
        with pytest.raises(InvalidArgument, match="busy_poll_us"):
            VfioUserServer([DeviceSpec(sock(tmp_path, "x.sock"), KITCHEN_SINK)], busy_poll_us=value)  # type: ignore[arg-type]
    assert not (tmp_path / "x.sock").exists()  # refused before anything listens


def mixed_stream(rng: random.Random, dtype: DeviceType, count: int) -> list[bytes]:
    """``count`` messages for one device: mostly region reads and writes the server accepts
    (configuration space, BARs across pages, the ROM), some it rejects, some with No_reply, resets
    and region information requests between them."""
    regions = [(index, bar.size) for index in range(6) if (bar := dtype.bar(index)) is not None]
    regions += [(CONFIG_REGION, dtype.config_size)] * len(regions)
    if dtype.rom is not None:
        regions.append((6, dtype.rom.size))
    messages = []
    for msg_id in range(1, count + 1):
        roll = rng.random()
        region, size = rng.choice(regions)
        length = min(size, rng.choice([1, 2, 4, 4, 4, 8, rng.randint(1, 300), rng.randint(4000, 9000)]))
        offset = rng.choice([0, size - length, rng.randint(0, size - length)]) & ~(rng.choice([0, 3]))
        if roll < 0.03:
            messages.append(encode_message(msg_id, Command.DEVICE_RESET))
        elif roll < 0.06:
            messages.append(
                encode_message(
                    msg_id, Command.DEVICE_GET_REGION_INFO, struct.pack("<IIIIQQ", 32, 0, region, 0, 0, 0)
                )
            )
        elif roll < 0.12:  # rejected: past the region, count 0, no such region
            bad = rng.choice(
                [RegionAccess(size - 2, region, 4), RegionAccess(0, region, 0), RegionAccess(0, 9, 4)]
            )
            messages.append(encode_message(msg_id, Command.REGION_READ, bad.pack()))
        elif roll < 0.16:  # rejected: the error bit or field, a payload longer or shorter than the access
            access = RegionAccess(offset, region, length).pack()
            messages.append(
                rng.choice(
                    [
                        encode_message(msg_id, Command.REGION_READ, access, FLAG_ERROR),
                        Header(msg_id, Command.REGION_READ, 32, 0, errno.EIO).pack() + access,
                        encode_message(msg_id, Command.REGION_READ, access + b"\0\0\0\0"),
                        encode_message(msg_id, Command.REGION_WRITE, access + bytes(length + 1)),
                        encode_message(msg_id, Command.REGION_WRITE, access[:12]),
                    ]
                )
            )
        elif roll < 0.55 and region != 6:
            data = rng.randbytes(length) if rng.random() < 0.8 else bytes(length)
            flags = FLAG_NO_REPLY if rng.random() < 0.05 else 0
            access = RegionAccess(offset, region, length).pack()
            messages.append(encode_message(msg_id, Command.REGION_WRITE, access + data, flags))
        else:
            messages.append(
                encode_message(msg_id, Command.REGION_READ, RegionAccess(offset, region, length).pack())
            )
    return messages


def replies_to(path: str, messages: list[bytes], rng: random.Random) -> list[tuple[Header, bytes]]:
    """Send ``messages`` in pieces of random sizes (so messages straddle reads) while reading the
    replies, up to the reply to a last configuration read."""
    sentinel = encode_message(0xFFFF, Command.REGION_READ, RegionAccess(0, CONFIG_REGION, 4).pack())
    stream = b"".join(messages) + sentinel
    with VfioUserClient(path, timeout=20) as client:
        pieces, at = [], 0
        while at < len(stream):
            step = rng.choice([1, 7, 32, 33, 100, 4096, 70000])
            pieces.append(stream[at : at + step])
            at += step

        def send() -> None:
            for piece in pieces:
                client.sock.sendall(piece)

        sender = threading.Thread(target=send)
        sender.start()
        got: list[tuple[Header, bytes]] = []
        while not got or got[-1][0].msg_id != 0xFFFF:
            got.append(client.read_message(1 << 21))
        sender.join(20)
    return got


@pytest.mark.skipif(not cython_backend.available(), reason="the Cython backend is not built")
@pytest.mark.parametrize("seed", range(3))
def test_compiled_path_answers_as_the_python_paths(tmp_path: Path, seed: int) -> None:
    """The same message streams, cut into the same random pieces, get byte-identical replies from a
    server on the model and one on the Cython backend, which end in the same state."""
    types = [KITCHEN_SINK, EDU, E1000]
    results: dict[str, tuple[list[list[tuple[Header, bytes]]], bytes]] = {}
    for name in ("model", "cython"):
        specs = [DeviceSpec(sock(tmp_path, f"{name}{n}.sock"), dtype) for n, dtype in enumerate(types)]
        with VfioUserServer(specs, manager_factory=choose_manager(name)) as running:
            rng = random.Random(seed)
            replies = [replies_to(str(spec.path), mixed_stream(rng, spec.dtype, 400), rng) for spec in specs]
            results[name] = replies, snapshot(running)
    (model_replies, model_state), (compiled_replies, compiled_state) = results["model"], results["cython"]
    for dtype, expected, got in zip(types, model_replies, compiled_replies, strict=True):
        assert len(got) == len(expected), dtype.name
        for (want_header, want), (header, payload) in zip(expected, got, strict=True):
            assert (header, payload) == (want_header, want), f"{dtype.name}: message {want_header.msg_id}"
    assert compiled_state == model_state
