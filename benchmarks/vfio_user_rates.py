"""Configuration reads per second through vfio-user servers, with one Python client, side by side.

Run as ``python benchmarks/vfio_user_rates.py [--quick] [--libvfio-user SRC]``.
Server processes are started in the same run, on sockets in a private
directory, and the same client (:class:`~vpcid.adapters.vfio_user.client.VfioUserClient`)
reads 4 bytes of configuration space from each:

* the vpcid vfio-user server (``python -m vpcid.conformance.serve vfio-user``)
  with one kitchen-sink device, as it runs by default: on the Cython backend's
  data manager, its REGION_READ/REGION_WRITE messages read, performed and
  answered by the compiled hot path (``RegionPath``) without Python code per
  message, which polls for the next message for 50 us before its thread
  sleeps (when the backend is not built, the run says so and this row is the
  model's);
* the same server without the busy poll (``VPCID_SERVE_BUSY_POLL_US=0``: the
  thread sleeps as soon as the socket is empty), and on the model's data
  manager (``VPCID_SERVE_MANAGER=model``: the Python paths), to show what
  each part changes;
* libvfio-user's gpio sample (``samples/gpio-pci-idio-16.c``), the C
  library's own device server, built here from its source tree: ``SRC`` is a
  checkout of https://github.com/nutanix/libvfio-user (``--libvfio-user`` or
  ``VPCID_LIBVFIO_USER``). The build is one ``cc`` command into a temporary
  directory (no meson needed); it needs a C compiler and json-c's headers
  (Debian: ``libjson-c-dev``). Without them, or without ``SRC``, the run says
  why and the vpcid server is compared with the floor alone;
* a plain ping-pong server: it reads a 32-byte message and answers 36 bytes,
  exactly the sizes of a REGION_READ of 4 bytes of configuration space and
  its reply, and does nothing else. This is the floor on this machine for a
  Python server: the cost of a round trip between two Python processes over
  a UNIX socket.

Beside each rate, ``server us`` is the server process's CPU time per read (from
``/proc/PID/task/*/schedstat``, kernel time and context switches included):
what the server itself costs, which other work on a shared machine does not
change as much as it changes the rates.

Each rate is measured two ways: ``sync`` (one request, wait for its reply,
repeat) and ``pipelined`` (``--window`` requests in flight; the protocol
lets a client send before reading replies and the server answers in order).
Rounds are interleaved (every server sync, then every server pipelined, then
again) and the median round is reported, because the machine is shared.
Each is measured twice: with the client and the servers pinned to one CPU
(every round trip is a context switch there) and to two CPUs (every round
trip wakes the other one); a scheduler picks either on its own, which
changes the figures more than anything the servers do. Ratios are printed,
never judged: no thresholds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from vpcid.adapters import cython as cython_backend
from vpcid.adapters.vfio_user.client import VfioUserClient
from vpcid.adapters.vfio_user.protocol import CONFIG_REGION, Command, RegionAccess
from vpcid.adapters.vfio_user.server import BUSY_POLL_ENV, DEFAULT_BUSY_POLL_US, MANAGER_ENV

REQUEST, REPLY = 32, 36
"""Bytes of a 4-byte REGION_READ and of its reply: header 16 + access 16 (+ 4 data)."""
LIBVFIO_USER_SOURCES = (
    "btree.c", "dma.c", "fd_cache.c", "irq.c", "libvfio-user.c", "migration.c", "pci.c", "pci_caps.c",
    "tran.c", "tran_sock.c",
)  # fmt: skip
"""The library's sources (lib/meson.build without the optional pipe transport)."""
GPIO_SAMPLE = "samples/gpio-pci-idio-16.c"
OURS, OURS_NO_POLL, OURS_MODEL = "vpcid server", "vpcid (no busy poll)", "vpcid server (model)"

PING_PONG_SERVER = f"""
import socket, sys
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1]); listener.listen(1)
print("ready", flush=True)
conn, _ = listener.accept()
buf = bytearray({REQUEST}); view = memoryview(buf); reply = bytes({REPLY})
while True:
    got = 0
    while got < {REQUEST}:
        n = conn.recv_into(view[got:], {REQUEST} - got)
        if n == 0:
            sys.exit(0)
        got += n
    conn.sendall(reply)
"""


def start(command: list[str], settings: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A server that prints ``ready`` once it listens (with these environment ``settings``)."""
    env = {**os.environ, **settings} if settings else None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    if line != "ready\n":
        process.kill()
        raise SystemExit(f"server did not start: {' '.join(command)}")
    return process


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it does not end; reaped either way."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def build_gpio(source: Path | None, directory: Path) -> tuple[Path | None, str]:
    """libvfio-user's gpio sample compiled from ``source`` into ``directory``: (binary, how), or
    (None, why not)."""
    if source is None:
        return None, "no libvfio-user source tree given (--libvfio-user SRC or VPCID_LIBVFIO_USER)"
    needed = (GPIO_SAMPLE, *(f"lib/{name}" for name in LIBVFIO_USER_SOURCES))
    missing = [name for name in needed if not (source / name).is_file()]
    if missing:
        return None, f"{source} is not a libvfio-user tree (no {missing[0]})"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, "no C compiler (cc) on PATH"
    try:
        flags = subprocess.run(
            ["pkg-config", "--cflags", "--libs", "json-c"], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None, "json-c's development files are missing (pkg-config json-c; Debian: libjson-c-dev)"
    binary = directory / "gpio-pci-idio-16"
    command = [
        compiler, "-O2", "-D_GNU_SOURCE", "-DNDEBUG", f"-I{source / 'include'}", f"-I{source / 'lib'}",
        *(str(source / "lib" / name) for name in LIBVFIO_USER_SOURCES), str(source / GPIO_SAMPLE),
        "-o", str(binary), *flags, "-lpthread", "-ldl",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        return None, f"building the gpio sample failed: {' / '.join(tail)}"
    revision = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return binary, f"{shlex.quote(str(source))}{f' at {revision}' if revision else ''}, cc -O2 -DNDEBUG"


class PingPong:
    """Client of the plain ping-pong server: the same message sizes, no protocol."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.request = bytes(REQUEST)
        self.buf = bytearray(REPLY)

    def _reply(self) -> None:
        view, got = memoryview(self.buf), 0
        while got < REPLY:
            n = self.sock.recv_into(view[got:], REPLY - got)
            if n == 0:
                raise ConnectionError("ping-pong server closed")
            got += n

    def sync(self, count: int) -> None:
        for _ in range(count):
            self.sock.sendall(self.request)
            self._reply()

    def pipelined(self, count: int, window: int) -> None:
        in_flight = 0
        for _ in range(count):
            if in_flight == window:
                self._reply()
                in_flight -= 1
            self.sock.sendall(self.request)
            in_flight += 1
        for _ in range(in_flight):
            self._reply()

    def close(self) -> None:
        self.sock.close()


class VfioTarget:
    """The benchmark's client on one vfio-user server."""

    def __init__(self, path: str) -> None:
        self.client = VfioUserClient(path, connect_timeout=10.0)

    def sync(self, count: int) -> None:
        client = self.client
        for k in range(count):
            client.region_read(CONFIG_REGION, (k * 4) & 0x3C, 4)

    def pipelined(self, count: int, window: int) -> None:
        requests = [
            (int(Command.REGION_READ), RegionAccess((k * 4) & 0x3C, CONFIG_REGION, 4).pack())
            for k in range(count)
        ]
        replies = self.client.pipeline(requests, window)
        if any(not isinstance(r, bytes) or len(r) != 20 for r in replies):
            raise SystemExit("a pipelined read failed")

    def close(self) -> None:
        self.client.close()


@dataclass
class Server:
    label: str
    target: VfioTarget | PingPong
    process: subprocess.Popen[str]
    sync: dict[str, list[float]] = field(default_factory=dict)
    pipelined: dict[str, list[float]] = field(default_factory=dict)
    sync_cpu: dict[str, list[float]] = field(default_factory=dict)
    """Server CPU time per read (microseconds) of each sync round, by placement."""
    pipelined_cpu: dict[str, list[float]] = field(default_factory=dict)

    def measure(self, placement: str, pipelined: bool, reads: int, window: int) -> None:
        """One round: its rate and the server's CPU time per read."""
        run = partial(self.target.pipelined, window=window) if pipelined else self.target.sync
        before = cpu_ns(self.process.pid)
        rates = rate(run, reads)
        cpu = (cpu_ns(self.process.pid) - before) / reads / 1e3
        (self.pipelined if pipelined else self.sync).setdefault(placement, []).append(rates)
        (self.pipelined_cpu if pipelined else self.sync_cpu).setdefault(placement, []).append(cpu)


def rate(run: Callable[[int], None], count: int) -> float:
    """Reads per second of ``run(count)``."""
    started = time.perf_counter()
    run(count)
    return count / (time.perf_counter() - started)


def cpu_ns(pid: int) -> int:
    """Nanoseconds process ``pid`` has run on a CPU, all its threads (``/proc/PID/task/*/schedstat``):
    what the server itself costs, whatever else the shared machine runs meanwhile."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
    return total


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process ``pid`` onto ``cpus``."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), cpus)


def placements() -> dict[str, tuple[set[int], set[int]] | None]:
    """Where the client and the servers run: one CPU for all (every round trip is a context switch
    on that CPU) and, given two CPUs, one each (every round trip wakes the other CPU). On a shared
    machine the scheduler picks either at random, so the two are measured apart."""
    cpus = sorted(os.sched_getaffinity(0))
    split = ({cpus[0]}, {cpus[1]}) if len(cpus) > 1 else None
    return {"one CPU": ({cpus[0]}, {cpus[0]}), "two CPUs": split}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer reads and rounds (a smoke run)")
    parser.add_argument("--reads", type=int, default=None, help="reads per round (default 20000, quick 2000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5, quick 2)")
    parser.add_argument("--window", type=int, default=32, help="requests in flight when pipelining")
    source = os.environ.get("VPCID_LIBVFIO_USER") or None
    parser.add_argument("--libvfio-user", type=Path, default=source, metavar="SRC",
                        help="libvfio-user source tree to build its gpio sample from")  # fmt: skip
    args = parser.parse_args()
    reads = args.reads or (2000 if args.quick else 20000)
    rounds = args.rounds or (2 if args.quick else 5)
    servers: list[Server] = []
    processes: list[subprocess.Popen[str]] = []
    where = placements()
    everywhere = os.sched_getaffinity(0)
    with tempfile.TemporaryDirectory(prefix="vpcid-bench-") as tmp:
        directory = Path(tmp)
        gpio, how = build_gpio(args.libvfio_user, directory)
        try:
            default = "cython" if cython_backend.available() else "model"
            variants = (
                (OURS, {MANAGER_ENV: default, BUSY_POLL_ENV: str(DEFAULT_BUSY_POLL_US)}),
                (OURS_NO_POLL, {MANAGER_ENV: default, BUSY_POLL_ENV: "0"}),
                (OURS_MODEL, {MANAGER_ENV: "model"}),
            )
            for n, (label, settings) in enumerate(variants):
                path = str(directory / f"vpcid-{n}.sock")
                serve = [sys.executable, "-m", "vpcid.conformance.serve", "vfio-user", "--socket", path]
                process = start(serve, settings)
                processes.append(process)
                servers.append(Server(label, VfioTarget(path), process))
            if gpio is not None:
                gpio_path = str(directory / "gpio.sock")
                quiet = subprocess.DEVNULL
                theirs = subprocess.Popen([str(gpio), gpio_path], stdout=quiet, stderr=quiet, text=True)
                processes.append(theirs)
                servers.append(Server("libvfio-user gpio (C)", VfioTarget(gpio_path), theirs))
            pong_path = str(directory / "pong.sock")
            pong = start([sys.executable, "-c", PING_PONG_SERVER, pong_path])
            processes.append(pong)
            servers.append(Server("ping-pong (floor)", PingPong(pong_path), pong))
            for server in servers:  # warm up every path
                server.target.sync(500)
            for name, cpus in where.items():
                if cpus is None:
                    continue
                client_cpus, server_cpus = cpus
                pin(os.getpid(), client_cpus)
                for server in servers:
                    pin(server.process.pid, server_cpus)
                for _ in range(rounds):
                    for server in servers:
                        server.measure(name, False, reads, args.window)
                    for server in servers:
                        server.measure(name, True, reads, args.window)
            pin(os.getpid(), everywhere)
            for server in servers:
                server.target.close()
        finally:
            for process in processes:
                stop(process)
    print(f"# vfio-user configuration reads, one Python client ({platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, {reads} reads x {rounds} rounds, "
          f"window {args.window}, medians)")  # fmt: skip
    print(f"# libvfio-user: {how}")
    compiled = (
        "compiled hot path"
        if cython_backend.available()
        else f"NOT compiled: {cython_backend.UNAVAILABLE_REASON}"
    )
    print(f"# vpcid server: the default data manager ({compiled}), busy poll {DEFAULT_BUSY_POLL_US} us; "
          f"(no busy poll): {BUSY_POLL_ENV}=0; (model): {MANAGER_ENV}=model")  # fmt: skip
    ours_label, floor, c_server = OURS, "ping-pong (floor)", "libvfio-user gpio (C)"
    for name, cpus in where.items():
        if cpus is None:
            print(f"\n## {name}: not measured (this process may use one CPU only)")
            continue
        sync = {s.label: statistics.median(s.sync[name]) for s in servers}
        pipe = {s.label: statistics.median(s.pipelined[name]) for s in servers}
        sync_cpu = {s.label: statistics.median(s.sync_cpu[name]) for s in servers}
        pipe_cpu = {s.label: statistics.median(s.pipelined_cpu[name]) for s in servers}
        print(f"\n## client and servers on {name}")
        print(f"{'':26}{'sync/s':>10}{'us/read':>9}{'server us':>10}"
              f"{'pipelined/s':>13}{'us/read':>9}{'server us':>10}")  # fmt: skip
        for server in servers:
            label = server.label
            print(f"{label:26}{sync[label]:10,.0f}{1e6 / sync[label]:9.1f}{sync_cpu[label]:10.2f}"
                  f"{pipe[label]:13,.0f}{1e6 / pipe[label]:9.1f}{pipe_cpu[label]:10.2f}")  # fmt: skip
        print("ratios (vpcid server / other, same run):")
        if c_server in sync:
            print(f"  / libvfio-user gpio   sync {sync[ours_label] / sync[c_server]:.2f}   "
                  f"pipelined {pipe[ours_label] / pipe[c_server]:.2f}   "
                  f"(server CPU per read, gpio / vpcid: "
                  f"sync {sync_cpu[c_server] / sync_cpu[ours_label]:.2f}, "
                  f"pipelined {pipe_cpu[c_server] / pipe_cpu[ours_label]:.2f})")  # fmt: skip
        else:
            print(f"  / libvfio-user gpio   not measured: {how}")
        print(f"  / ping-pong floor     sync {sync[ours_label] / sync[floor]:.2f}   "
              f"pipelined {pipe[ours_label] / pipe[floor]:.2f}")  # fmt: skip
        print(f"  / vpcid no busy poll  sync {sync[ours_label] / sync[OURS_NO_POLL]:.2f}   "
              f"pipelined {pipe[ours_label] / pipe[OURS_NO_POLL]:.2f}")  # fmt: skip
        print(f"  / vpcid (model)       sync {sync[ours_label] / sync[OURS_MODEL]:.2f}   "
              f"pipelined {pipe[ours_label] / pipe[OURS_MODEL]:.2f}")  # fmt: skip
        if c_server in sync:
            print(f"vpcid without busy poll / libvfio-user gpio: "
                  f"sync {sync[OURS_NO_POLL] / sync[c_server]:.2f}   "
                  f"pipelined {pipe[OURS_NO_POLL] / pipe[c_server]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
