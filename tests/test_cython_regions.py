"""The Cython backend's region accesses (a VMM's view: configuration space by BDF, a BAR by index and
offset), its thread lock, and its compiled vfio-user hot path (``RegionPath``), against the model."""

from __future__ import annotations

import random
import struct
import threading
from collections.abc import Callable

import pytest
from vpcid.adapters import cython as cython_backend
from vpcid.adapters.vfio_user.protocol import CONFIG_REGION, TYPE_REPLY, Command
from vpcid.adapters.vfio_user.server import ServerManager, device_regions
from vpcid.conformance.devices import KITCHEN_SINK, SUITE_TYPES
from vpcid.model import Bdf, DeviceType, InvalidArgument, Profile, UnknownDevice, UnknownVm
from vpcid.model.catalog import EDU
from vpcid.model.devicetype import ROM_INDEX

pytestmark = pytest.mark.skipif(not cython_backend.available(), reason="the Cython backend is not built")

VM, BDF, ABSENT = 1, Bdf(0, 2, 0), Bdf(0, 3, 0)
PAGE = 4096
ACCESS = struct.Struct("<HHIIIQII")
"""A REGION_READ or REGION_WRITE message's header and access (offset, region, count)."""


def managers(dtype: DeviceType) -> tuple[ServerManager, cython_backend.Manager]:
    """The model's server manager and the compiled one, each with ``dtype`` plugged at ``BDF``."""
    model, compiled = ServerManager(Profile()), cython_backend.Manager(Profile())
    for manager in (model, compiled):
        manager.create_vm(VM)
        manager.plug(VM, BDF, dtype)
    return model, compiled


def windows(dtype: DeviceType) -> list[tuple[int, int]]:
    """(index, size) of each BAR the type implements, and of its ROM (index 6)."""
    found = [(index, bar.size) for index in range(6) if (bar := dtype.bar(index)) is not None]
    return found + ([(ROM_INDEX, dtype.rom.size)] if dtype.rom is not None else [])


def random_range(rng: random.Random, size: int) -> tuple[int, int]:
    """An (offset, length) inside ``size`` bytes: short or page-crossing, at the start, the end or
    anywhere."""
    length = min(size, rng.choice([1, 2, 3, 4, 8, rng.randint(1, 64), rng.randint(PAGE - 8, 2 * PAGE + 8)]))
    offset = rng.choice([0, size - length, rng.randint(0, size - length)])
    return offset, length


@pytest.mark.req("R-ECAM-003")
@pytest.mark.req("R-DT-003")
@pytest.mark.req("R-DT-004")
@pytest.mark.req("R-ACC-006")
@pytest.mark.parametrize("name", sorted(SUITE_TYPES))
def test_region_accesses_match_the_model(name: str) -> None:
    """Random configuration and BAR reads and writes by region, and resets, give the compiled
    manager the model's results and, at the end, the model's blob."""
    dtype = SUITE_TYPES[name]
    model, compiled = managers(dtype)
    rng = random.Random(f"regions-{name}")
    bars = windows(dtype)
    for step in range(400):
        choice = rng.random()
        if choice < 0.02:
            model.reset(VM, BDF)
            compiled.reset(VM, BDF)
            continue
        write = rng.random() < 0.4
        if choice < 0.5 or not bars:
            bdf = ABSENT if rng.random() < 0.05 else BDF
            offset, length = random_range(rng, dtype.config_size)
            length = min(length, 16)
            payload = rng.randbytes(length) if write else None
            got = [m.region_config(VM, bdf, offset, length, payload) for m in (model, compiled)]
        else:
            index, size = rng.choice(bars)
            offset, length = random_range(rng, size)
            payload = (bytes(length) if rng.random() < 0.2 else rng.randbytes(length)) if write else None
            got = [m.region_bar(VM, BDF, index, offset, length, payload) for m in (model, compiled)]
        assert got[0] == got[1], f"step {step}: {'write' if write else 'read'} differs"
    assert compiled.save(VM, BDF) == model.save(VM, BDF)


def test_region_accesses_reject_bad_arguments() -> None:
    """Unknown VMs and devices, missing BARs, ranges past a region and payloads of the wrong size are
    refused with typed errors, and change nothing."""
    _, compiled = managers(KITCHEN_SINK)
    compiled.region_bar(VM, BDF, 1, 0, 4, b"\x01\x02\x03\x04")
    before = compiled.save(VM, BDF)
    refused: list[tuple[type[Exception], Callable[[], bytes]]] = [
        (UnknownVm, lambda: compiled.region_config(2, BDF, 0, 4, None)),
        (InvalidArgument, lambda: compiled.region_config(VM, BDF, 0xFFE, 4, None)),
        (InvalidArgument, lambda: compiled.region_config(VM, BDF, -1, 4, None)),
        (InvalidArgument, lambda: compiled.region_config(VM, BDF, 0, 4, b"\x00")),
        (InvalidArgument, lambda: compiled.region_config(VM, "00:02.0", 0, 4, None)),  # type: ignore[arg-type]
        (UnknownDevice, lambda: compiled.region_bar(VM, ABSENT, 1, 0, 4, None)),
        (InvalidArgument, lambda: compiled.region_bar(VM, BDF, 3, 0, 4, None)),  # kitchen-sink has no BAR3
        (InvalidArgument, lambda: compiled.region_bar(VM, BDF, 7, 0, 4, None)),
        (InvalidArgument, lambda: compiled.region_bar(VM, BDF, 1, 0xFFE, 4, None)),
        (InvalidArgument, lambda: compiled.region_bar(VM, BDF, 1, 0, 4, b"\x00" * 5)),
        (InvalidArgument, lambda: compiled.region_bar(VM, BDF, True, 0, 4, None)),  # a bool is not an index
    ]
    for error, call in refused:
        with pytest.raises(error):
            call()
    assert compiled.save(VM, BDF) == before
    assert compiled.region_bar(VM, BDF, ROM_INDEX, 0, 4, b"\xff" * 4) == b""  # the ROM ignores writes
    assert compiled.save(VM, BDF) == before


# --------------------------------------------------------------------------- ThreadLock


def test_thread_lock_is_a_lock() -> None:
    """acquire, release, locked and ``with`` as on ``threading.Lock``; a blocked acquire waits for the
    holder's release."""
    lock = cython_backend.ThreadLock()
    assert not lock.locked()
    assert lock.acquire()
    assert lock.locked()
    assert not lock.acquire(blocking=False)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    with lock:
        assert lock.locked()
    assert not lock.locked()

    order: list[str] = []
    waiting = threading.Event()

    def contender() -> None:
        waiting.set()
        with lock:
            order.append("contender")

    with lock:
        thread = threading.Thread(target=contender)
        thread.start()
        assert waiting.wait(10)
        order.append("holder")
    thread.join(10)
    assert order == ["holder", "contender"]


# --------------------------------------------------------------------------- RegionPath.answer


class Served:
    """A compiled manager serving one device through a :class:`RegionPath`."""

    def __init__(self, dtype: DeviceType = KITCHEN_SINK, read_limit: int = 1 << 20) -> None:
        self.manager = cython_backend.Manager(Profile())
        self.manager.create_vm(VM)
        self.manager.plug(VM, BDF, dtype)
        regions = [(region.size, region.flags) for region in device_regions(dtype)]
        self.stop = bytearray(1)
        self.path = cython_backend.RegionPath(
            self.manager,
            VM,
            BDF,
            regions,
            cython_backend.ThreadLock(),
            cython_backend.ThreadLock(),
            self.stop,
        )
        self.read_limit = read_limit

    def answer(self, stream: bytes, flush: int = 1 << 20) -> tuple[int, int, bytes]:
        return self.path.answer(stream, 0, len(stream), self.read_limit, 1 << 20, flush)


def read(region: int, offset: int, count: int, msg_id: int = 1, *, size: int = 32, flags: int = 0) -> bytes:
    return ACCESS.pack(msg_id, Command.REGION_READ, size, flags, 0, offset, region, count)


def write(region: int, offset: int, data: bytes, msg_id: int = 1) -> bytes:
    return ACCESS.pack(msg_id, Command.REGION_WRITE, 32 + len(data), 0, 0, offset, region, len(data)) + data


def reply(request: bytes, data: bytes = b"") -> bytes:
    """The reply the server's Python code gives a valid access: the header made a reply, the access
    echoed, then the data read."""
    msg_id, command = struct.unpack_from("<HH", request)
    return struct.pack("<HHIII", msg_id, command, 32 + len(data), TYPE_REPLY, 0) + request[16:32] + data


@pytest.mark.req("R-ECAM-003")
def test_answer_serves_valid_accesses_as_the_server_does() -> None:
    """Configuration, BAR and ROM accesses in one stream: each answered with the server's reply, the
    writes applied as the model applies them."""
    served = Served()
    model, _ = managers(KITCHEN_SINK)
    requests = [
        read(CONFIG_REGION, 0, 4, 1),
        write(CONFIG_REGION, 4, b"\x07\x00", 2),
        read(CONFIG_REGION, 0, 64, 3),
        write(2, PAGE - 2, b"abcdef", 4),
        read(2, PAGE - 4, 12, 5),
        read(ROM_INDEX, 0x7FC, 4, 6),
    ]
    took, handled, replies = served.answer(b"".join(requests))
    assert (took, handled) == (sum(map(len, requests)), len(requests))
    model.region_config(VM, BDF, 4, 2, b"\x07\x00")
    model.region_bar(VM, BDF, 2, PAGE - 2, 6, b"abcdef")
    assert replies == b"".join(
        [
            reply(requests[0], model.region_config(VM, BDF, 0, 4, None)),
            reply(requests[1]),
            reply(requests[2], model.region_config(VM, BDF, 0, 64, None)),
            reply(requests[3]),
            reply(requests[4], model.region_bar(VM, BDF, 2, PAGE - 4, 12, None)),
            reply(requests[5], model.region_bar(VM, BDF, ROM_INDEX, 0x7FC, 4, None)),
        ]
    )
    assert served.manager.save(VM, BDF) == model.save(VM, BDF)


def test_answer_leaves_everything_else_to_the_server() -> None:
    """A message the server would reject, or that is not complete, or whose BAR is Python code, is
    not answered (nor is anything after it), and nothing changes."""
    served = Served(read_limit=64)
    before = served.manager.save(VM, BDF)
    others = {
        "another command": struct.pack("<HHIII", 1, Command.DEVICE_RESET, 16, 0, 0) + bytes(16),
        "no reply wanted": read(CONFIG_REGION, 0, 4, flags=0x10),
        "a reply": read(CONFIG_REGION, 0, 4, flags=TYPE_REPLY),
        "size not the access's": read(CONFIG_REGION, 0, 4, size=36) + bytes(4),
        "write size not count": ACCESS.pack(1, Command.REGION_WRITE, 35, 0, 0, 4, CONFIG_REGION, 2)
        + bytes(3),
        "count 0": read(CONFIG_REGION, 0, 0),
        "count over the read limit": read(CONFIG_REGION, 0, 128),
        "past the region": read(CONFIG_REGION, 0xFC, 8),
        "offset past the region": read(1, 1 << 63, 4),
        "no such region": read(9, 0, 4),
        "unimplemented BAR": read(3, 0, 4),
        "VGA": read(8, 0, 4),
        "write to the ROM": write(ROM_INDEX, 0, b"\x00\x00"),
    }
    for what, message in others.items():
        assert served.answer(message + read(CONFIG_REGION, 0, 4)) == (0, 0, b""), what
    for incomplete in (write(1, 0, b"\x01\x02\x03\x04")[:-1], read(CONFIG_REGION, 0, 4)[:20]):
        assert served.answer(incomplete) == (0, 0, b"")
    assert served.manager.save(VM, BDF) == before
    edu = Served(EDU)
    assert edu.answer(read(0, 0, 4)) == (0, 0, b"")  # a custom behaviour: the server calls it
    assert edu.answer(read(CONFIG_REGION, 0, 4))[:2] == (32, 1)


def test_answer_stops_at_the_flush_size_and_at_the_first_other_message() -> None:
    served = Served()
    first, second = read(CONFIG_REGION, 0, 4, 1), read(CONFIG_REGION, 4, 4, 2)
    assert served.answer(first + second, flush=1)[:2] == (32, 1)
    reset = struct.pack("<HHIII", 3, Command.DEVICE_RESET, 16, 0, 0)
    assert served.answer(first + reset + second)[:2] == (32, 1)
    with pytest.raises(InvalidArgument):
        served.path.answer(first, 0, 64, 64, 64, 1 << 20)


def test_region_path_refuses_bad_arguments() -> None:
    manager = cython_backend.Manager(Profile())
    regions = [(region.size, region.flags) for region in device_regions(KITCHEN_SINK)]
    locks = (cython_backend.ThreadLock(), cython_backend.ThreadLock())
    path = cython_backend.RegionPath(manager, VM, BDF, regions, *locks, bytearray(1), busy_poll_ns=50_000)
    assert path.busy_poll_ns == 50_000
    refused: list[Callable[[], object]] = [
        lambda: cython_backend.RegionPath(manager, VM, BDF, regions, *locks, bytearray(1), busy_poll_ns=-1),
        lambda: cython_backend.RegionPath(
            manager, VM, BDF, regions, *locks, bytearray(1), busy_poll_ns=2 * 10**9
        ),
        lambda: cython_backend.RegionPath(manager, VM, BDF, regions, *locks, bytearray(2)),
        lambda: cython_backend.RegionPath(manager, VM, BDF, regions[:8], *locks, bytearray(1)),
        lambda: cython_backend.RegionPath(manager, 1 << 32, BDF, regions, *locks, bytearray(1)),
    ]
    for call in refused:
        with pytest.raises(InvalidArgument):
            call()
