"""Shared fixtures: a data manager with one VM, and helpers to program devices like firmware."""

from __future__ import annotations

import hashlib
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from vpcid.model import MEMORY, Bdf, DataManager, DeviceData, DeviceType, Profile
from vpcid.model.catalog import A100, E1000, EDU, NVME

VM = 1
NIC = Bdf(0, 2, 0)
"""Where the ``programmed`` fixture puts the e1000."""


def program_bar(dm: DataManager, vm: int, bdf: Bdf, index: int, address: int) -> None:
    """Write a BAR the way firmware does: lower dword, then upper dword for a 64-bit BAR."""
    dtype = dm.device_type(vm, bdf)
    bar = dtype.bar(index)
    assert bar is not None
    dm.config_write(vm, bdf, 0x10 + 4 * index, 4, address & 0xFFFFFFFF)
    if bar.kind.value == "mem64":
        dm.config_write(vm, bdf, 0x14 + 4 * index, 4, address >> 32)


def enable(dm: DataManager, vm: int, bdf: Bdf, command: int = 0x7) -> None:
    """Set the command register."""
    dm.config_write(vm, bdf, 0x04, 2, command)


@pytest.fixture
def dm() -> DataManager:
    """A data manager in the default profile with VM 1 (ECAM at 0xB0000000)."""
    manager = DataManager()
    manager.create_vm(VM)
    return manager


@pytest.fixture
def programmed(dm: DataManager) -> DataManager:
    """VM 1 with an e1000 at 00:02.0: BAR0 0xfebc0000 (128 KiB), BAR1 port 0xc000 (64), decoding."""
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, 0xFEBC0000)
    program_bar(dm, VM, NIC, 1, 0xC000)
    enable(dm, VM, NIC)
    return dm


@pytest.fixture(params=["default", "every-alternative"])
def any_profile(request: pytest.FixtureRequest) -> Iterator[Profile]:
    """The default profile and one that takes the first alternative value on every axis."""
    if request.param == "default":
        yield Profile()
        return
    from vpcid.model.profile import AXES

    yield Profile.from_mapping({axis: list(enum)[1].value for axis, enum in AXES.items()})


CATALOG_TYPES: tuple[DeviceType, ...] = (E1000, NVME, EDU, A100)


class Recorder:
    """A memory-like BAR behaviour that logs every piece of access it is given (R-DT-003)."""

    name = "recorder"

    def __init__(self) -> None:
        self.log: list[tuple[str, int, int, int]] = []
        """("r" or "w", BAR index, offset from the BAR's base, length)."""

    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        self.log.append(("r", bar, offset, length))
        return MEMORY.read(data, bar, offset, length)

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        self.log.append(("w", bar, offset, len(payload)))
        MEMORY.write(data, bar, offset, payload)

    def reset(self, data: DeviceData) -> None:
        return None

    def check(self, data: DeviceData) -> str | None:
        return None


# ---------------------------------------------------------------- blob digests, apart from the model


def _u16(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 2], "little")


def instance_digests(devices: bytes) -> bytes | None:
    """A snapshot's devices section with each instance blob cut to its last 32 bytes (R-BLOB-006).

    None when the section does not parse (the snapshot is rejected whatever its digest).
    """
    if len(devices) < 4:
        return None
    out, pos = bytearray(devices[:4]), 4
    for _ in range(int.from_bytes(devices[:4], "little")):
        if pos + 6 > len(devices):
            return None
        length = int.from_bytes(devices[pos + 2 : pos + 6], "little")
        blob = devices[pos + 6 : pos + 6 + length]
        if len(blob) != length:
            return None
        out += devices[pos : pos + 6] + blob[-32:]
        pos += 6 + length
    return bytes(out) if pos == len(devices) else None


def expected_digest(body: bytes) -> bytes:
    """The digest field per spec/formats/blob.md, computed apart from the model."""
    if body[:8] == b"VPCIDVMS":
        pos = 16
        for _ in range(_u16(body, 12)):
            if pos + 8 > len(body):
                break
            tag, length = _u16(body, pos), int.from_bytes(body[pos + 4 : pos + 8], "little")
            pos += 8
            hashed = instance_digests(body[pos : pos + length]) if tag == 2 else None
            if hashed is not None:
                return hashlib.sha256(body[:pos] + hashed + body[pos + length :]).digest()
            pos += length
    return hashlib.sha256(body).digest()


@pytest.fixture
def no_leftover_qemu() -> Iterator[None]:
    """The test leaves no QEMU behind: every adapter's close() killed its processes by pid
    (the QEMU test modules use it for every test)."""
    from vpcid.adapters.qemu.qtest import kill_all, live_pids

    before = set(live_pids())
    yield
    leftover = set(live_pids()) - before
    kill_all()
    assert not leftover, f"QEMU processes left running: {sorted(leftover)}"


class ServerProcess:
    """``vpcid serve vfio-user`` in a process of its own; ``stderr`` holds its log once stopped."""

    def __init__(self, *arguments: str) -> None:
        command = [sys.executable, "-m", "vpcid.conformance.serve", "vfio-user", *arguments]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr = ""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        assert ready, "the server did not start within 30 s"
        assert self.process.stdout.readline() == "ready\n"

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        _, self.stderr = self.process.communicate(timeout=10)


@pytest.fixture(scope="session")
def full_vectors(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The full-API golden vectors, written once per test session by ``vpcid vectors generate`` (it
    runs every case under every axis value it touches: minutes), and what the command printed.
    Read only: a test that tampers with them copies them first."""
    from click.testing import CliRunner
    from vpcid.conformance.cli import main

    directory = tmp_path_factory.mktemp("vectors") / "out"
    result = CliRunner().invoke(main, ["vectors", "generate", str(directory)])
    assert result.exit_code == 0, result.output
    return directory, result.output
