"""The vpcid vfio-user server against clients that misbehave, and under load.

Each test bounds what one client can make the server hold (descriptors,
memory for a migration stream, JSON depth, transfer size), or shows that
another device keeps answering while one client misbehaves: ordering, not
timing, is asserted (time only bounds how long a test may wait).
"""

from __future__ import annotations

import errno
import math
import os
import random
import socket
import struct
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner
from vpcid.adapters.vfio_user.client import VfioUserClient, VfioUserError
from vpcid.adapters.vfio_user.protocol import (
    HEADER_SIZE,
    Command,
    Header,
    MigState,
    ProtocolError,
    Version,
    json_depth,
)
from vpcid.adapters.vfio_user.server import (
    DeviceSpec,
    Endpoint,
    Limits,
    ServerManager,
    VfioUserServer,
    fd_budget,
)
from vpcid.conformance.devices import KITCHEN_SINK
from vpcid.conformance.serve import serve_group
from vpcid.model import Bdf, InvalidArgument

WAIT = 20.0
"""Longest any test waits for something that should happen at once (a bound, never a measurement)."""
PAGE = 4096


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def largest_bar(client: VfioUserClient) -> tuple[int, int]:
    """(index, size) of the device's largest writable BAR region."""
    sizes = {index: client.region_info(index).size for index in range(6)}
    index = max(sizes, key=lambda k: sizes[k])
    return index, sizes[index]


@pytest.fixture
def many(tmp_path: Path) -> Iterator[VfioUserServer]:
    """Eight kitchen-sink devices in one server, a 1 s message timeout and 16 descriptors per client."""
    specs = [DeviceSpec(tmp_path / f"d{n}.sock", KITCHEN_SINK) for n in range(8)]
    with VfioUserServer(specs, limits=Limits(message_timeout=1.0, max_fds=16)) as server:
        yield server


# --------------------------------------------------------------------------- limits


def test_limits_are_validated() -> None:
    for bad in (math.nan, math.inf, -1.0, 0.0, 1e9):
        with pytest.raises(InvalidArgument, match="message_timeout"):
            Limits(message_timeout=bad)
    with pytest.raises(InvalidArgument, match="max_data_xfer"):
        Limits(max_data_xfer=1 << 40)
    with pytest.raises(InvalidArgument, match="max_fds"):
        Limits(max_fds=-1)
    with pytest.raises(InvalidArgument, match="max_stream"):
        Limits(max_stream=10)
    assert 0 < fd_budget(30) <= fd_budget(1)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "1e9"])
def test_serve_refuses_timeouts_that_would_break_a_client(tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(
        serve_group, ["vfio-user", "--socket", str(tmp_path / "x.sock"), "--message-timeout", value]
    )
    assert result.exit_code == 2
    assert "--message-timeout" in result.output
    assert not (tmp_path / "x.sock").exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_client_cannot_make_the_server_keep_more_descriptors_than_its_budget(many: VfioUserServer) -> None:
    """DMA_MAP and SET_IRQS descriptors past the client's budget are refused (ENOSPC) and closed; the
    other devices still get answers, and everything is released when the client leaves."""
    before = open_fds()
    hog = VfioUserClient(str(many.endpoints[0].path))
    try:
        for n in range(16):
            memory = os.memfd_create("ram")
            hog.dma_map(0x100_0000 + n * PAGE, PAGE, fd=memory)
            os.close(memory)
        memory = os.memfd_create("ram")
        with pytest.raises(VfioUserError) as refused:
            hog.dma_map(0x200_0000, PAGE, fd=memory)
        os.close(memory)
        assert refused.value.errno == errno.ENOSPC
        hog.dma_map(0x300_0000, PAGE)  # without a descriptor: nothing to keep, accepted
        session = many.endpoints[0].current
        assert session is not None
        assert session.fds_held == 16
        with VfioUserClient(str(many.endpoints[1].path)) as other:
            assert other.config_read(0, 2) == KITCHEN_SINK.declared.image[:2]
    finally:
        hog.close()
    wait_for(lambda: open_fds() <= before, "the server closes a departed client's descriptors")


def test_deep_json_in_version_is_einval_not_an_internal_error(many: VfioUserServer) -> None:
    deep = struct.pack("<HH", 0, 2) + b"[" * 100_000 + b"]" * 100_000 + b"\0"
    with pytest.raises(ProtocolError, match="more than 4096"):
        Version.unpack(deep)
    nested = struct.pack("<HH", 0, 2) + b'{"a":' * 500 + b"1" + b"}" * 500 + b"\0"
    with pytest.raises(ProtocolError, match="deeper than 8"):
        Version.unpack(nested)
    assert json_depth(b'{"a": "[[[[[[[[[[[[", "b": [1, {"c": 2}]}') == 3  # brackets in strings do not count
    client = VfioUserClient(str(many.endpoints[0].path), negotiate=False)
    try:
        with pytest.raises(VfioUserError) as refused:
            client.call(Command.VERSION, nested)
        assert refused.value.errno == errno.EINVAL
        client.negotiate()  # the connection goes on
        assert client.config_read(0, 2) == KITCHEN_SINK.declared.image[:2]
    finally:
        client.close()


def test_a_long_migration_stream_is_spooled_not_held_in_memory(tmp_path: Path) -> None:
    """32 MiB written into a RESUMING device costs the process about one chunk, not the stream."""
    spec = DeviceSpec(tmp_path / "m.sock", KITCHEN_SINK)
    with VfioUserServer([spec]), VfioUserClient(str(spec.path)) as client:
        client.set_mig_state(MigState.RESUMING)
        chunk = os.urandom(1 << 20)
        client.mig_write(chunk)  # buffers of the first message are allocated before measuring
        tracemalloc.start()
        try:
            for _ in range(31):
                client.mig_write(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8 << 20, f"{peak} bytes for a 32 MiB stream"
        with pytest.raises(VfioUserError) as refused:
            client.set_mig_state(MigState.RUNNING)  # not a data blob: refused at the commit
        assert refused.value.errno == errno.EBADMSG


def test_a_stream_longer_than_the_limit_is_refused(tmp_path: Path) -> None:
    spec = DeviceSpec(tmp_path / "m.sock", KITCHEN_SINK)
    with VfioUserServer([spec], limits=Limits(max_stream=3 * PAGE)), VfioUserClient(str(spec.path)) as client:
        client.set_mig_state(MigState.RESUMING)
        client.mig_write(bytes(3 * PAGE))
        with pytest.raises(VfioUserError) as refused:
            client.mig_write(b"x")
        assert refused.value.errno == errno.E2BIG


def test_dma_map_index_agrees_with_a_brute_force_overlap_check(tmp_path: Path) -> None:
    """Random maps and unmaps: the sorted index accepts and refuses exactly what comparing against
    every mapped region would."""
    spec = DeviceSpec(tmp_path / "dma.sock", KITCHEN_SINK)
    with VfioUserServer([spec]), VfioUserClient(str(spec.path)) as client:
        rng = random.Random(11)
        mapped: dict[int, int] = {}
        for _ in range(1500):
            addr, size = rng.randrange(0, 256) * PAGE, rng.randrange(1, 9) * PAGE
            if mapped and rng.random() < 0.3:
                addr = rng.choice(list(mapped))
                size = mapped[addr] if rng.random() < 0.8 else size
                expected = errno.ENOENT if mapped[addr] != size else 0
                outcome = _errno_of(partial(client.dma_unmap, addr, size))
                if not expected:
                    del mapped[addr]
            else:
                overlaps = any(a < addr + size and addr < a + s for a, s in mapped.items())
                expected = errno.EEXIST if overlaps else 0
                outcome = _errno_of(partial(client.dma_map, addr, size))
                if not expected:
                    mapped[addr] = size
            assert outcome == expected


def _errno_of(call: Callable[[], None]) -> int:
    try:
        call()
    except VfioUserError as exc:
        return exc.errno or -1
    return 0


# --------------------------------------------------------------------------- no device stalls another


class BlockingBar(ServerManager):
    """BAR reads of the first device wait until ``release`` is set (a slow device model)."""

    release = threading.Event()
    entered = threading.Event()
    pages = 0

    def region_bar(
        self, vm_id: int, bdf: Bdf, index: int, offset: int, length: int, payload: bytes | None
    ) -> bytes:
        if bdf == Bdf(0, 2, 0) and payload is None:
            BlockingBar.pages += 1
            BlockingBar.entered.set()
            assert BlockingBar.release.wait(WAIT)
        return super().region_bar(vm_id, bdf, index, offset, length, payload)


def test_a_slow_bar_access_on_one_device_does_not_stall_another(tmp_path: Path) -> None:
    """While a 1 MiB BAR read of one device is inside the device model, the other device answers
    configuration reads; the read goes to the model one page at a time."""
    specs = [DeviceSpec(tmp_path / f"d{n}.sock", KITCHEN_SINK) for n in range(2)]
    BlockingBar.release.clear()
    BlockingBar.entered.clear()
    BlockingBar.pages = 0
    with VfioUserServer(specs, manager_factory=BlockingBar):
        slow = VfioUserClient(str(specs[0].path), timeout=WAIT)
        index, size = largest_bar(slow)
        length = min(size, 1 << 20)
        result: list[bytes] = []
        reader = threading.Thread(target=lambda: result.append(slow.region_read(index, 0, length)))
        reader.start()
        try:
            assert BlockingBar.entered.wait(WAIT)
            with VfioUserClient(str(specs[1].path)) as other:
                for _ in range(50):
                    assert other.config_read(0, 2) == KITCHEN_SINK.declared.image[:2]
            assert not result  # all of that happened while the slow read was still in the model
        finally:
            BlockingBar.release.set()
            reader.join(WAIT)
            slow.close()
        assert result == [bytes(length)]
        assert BlockingBar.pages == length // PAGE


def wait_for(condition: Callable[[], bool], what: str) -> None:
    event = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        event.wait(0.01)
    pytest.fail(f"timed out waiting: {what}")


def _idle(endpoint: Endpoint) -> bool:
    return endpoint.current is None


class Misbehaving:
    """One client per misbehaviour, each on its own device of the server."""

    def __init__(self, server: VfioUserServer) -> None:
        paths = [str(e.path) for e in server.endpoints]
        self.sockets: list[socket.socket] = []
        self.clients: list[VfioUserClient] = []
        # A stall: half a message, then silence.
        staller = VfioUserClient(paths[0])
        staller.send_raw(Header(1, Command.REGION_READ, 32, 0).pack())
        self.clients.append(staller)
        # A flood: 1 MiB writes it never reads the replies of, until its socket is full (the last one
        # cut short, so it also stalls mid-message).
        flooder = VfioUserClient(paths[1])
        index, size = largest_bar(flooder)
        data = bytes(min(size, 1 << 20))
        head = struct.pack("<QII", 0, index, len(data))
        flooder.sock.setblocking(False)
        for n in range(64):
            message = Header(n, Command.REGION_WRITE, HEADER_SIZE + 16 + len(data), 0).pack() + head + data
            try:
                flooder.sock.send(message)
            except BlockingIOError:
                break
        self.clients.append(flooder)
        # Garbage: random bytes with a huge message size in front.
        garbage = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        garbage.connect(paths[2])
        garbage.sendall(Header(9, Command.REGION_WRITE, 0xFFFF_FFFF, 0).pack() + os.urandom(8192))
        self.sockets.append(garbage)
        # A hoarder: descriptors up to its budget.
        hoarder = VfioUserClient(paths[3])
        for n in range(16):
            memory = os.memfd_create("ram")
            hoarder.dma_map(0x100_0000 + n * PAGE, PAGE, fd=memory)
            os.close(memory)
        self.clients.append(hoarder)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for sock in self.sockets:
            sock.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_load_other_devices_keep_answering_while_clients_misbehave(many: VfioUserServer) -> None:
    """Four devices have misbehaving clients (stalled, flooding, sending garbage, hoarding
    descriptors); the four others each serve a client that makes 300 configuration reads and
    writes, all answered correctly while the misbehaving clients are still connected."""
    bad = Misbehaving(many)
    try:
        errors: list[str] = []

        def worker(path: str, seed: int) -> None:
            try:
                with VfioUserClient(path, timeout=WAIT) as client:
                    for k in range(300):
                        value = bytes([(seed + k) & 0xFF])
                        client.config_write(0x3C, value)
                        if client.config_read(0x3C, 1) != value:
                            errors.append(f"{path}: read back a wrong interrupt line")
                            return
            except Exception as exc:  # reported below, with the device
                errors.append(f"{path}: {exc!r}")

        workers = [
            threading.Thread(target=worker, args=(str(e.path), n)) for n, e in enumerate(many.endpoints[4:])
        ]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(WAIT * 2)
        assert not errors
        assert not any(thread.is_alive() for thread in workers)
        hoarder = many.endpoints[3].current
        assert hoarder is not None  # the misbehaving clients were connected throughout
        assert hoarder.fds_held == 16
    finally:
        bad.close()
    for endpoint in many.endpoints[:4]:  # each misbehaving client was dropped or left
        wait_for(partial(_idle, endpoint), f"{endpoint.path} lets its client go")
    with VfioUserClient(str(many.endpoints[0].path)) as again:  # and its device serves the next one
        assert again.config_read(0, 2) == KITCHEN_SINK.declared.image[:2]


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd_create")
def test_descriptors_belong_to_their_message_in_a_pipelined_batch(tmp_path: Path) -> None:
    """Reads, a DMA_MAP with a descriptor, more reads, all sent before any reply is read: the
    descriptor is the DMA_MAP's, whatever the batches the server reads them in."""
    spec = DeviceSpec(tmp_path / "b.sock", KITCHEN_SINK)
    with VfioUserServer([spec]) as server, VfioUserClient(str(spec.path)) as client:
        read = struct.pack("<QII", 0, 7, 4)
        sent = [client.send(Command.REGION_READ, read) for _ in range(3)]
        memory = os.memfd_create("ram")
        mapping = struct.pack("<IIQQQ", 32, 3, 0, 0x40_0000, PAGE)
        map_id = client.send(Command.DMA_MAP, mapping, fds=[memory])
        os.close(memory)
        after = [client.send(Command.REGION_READ, read) for _ in range(3)]
        for msg_id in sent:
            assert client.receive(msg_id, Command.REGION_READ, 20)[16:] == KITCHEN_SINK.declared.image[:4]
        assert client.receive(map_id, Command.DMA_MAP) == b""
        for msg_id in after:
            assert client.receive(msg_id, Command.REGION_READ, 20)[16:] == KITCHEN_SINK.declared.image[:4]
        session = server.endpoints[0].current
        assert session is not None
        assert session.dma[0x40_0000].fd is not None
        assert session.fds_held == 1
