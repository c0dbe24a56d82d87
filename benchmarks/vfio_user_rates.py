"""Configuration reads per second through the vpcid vfio-user server, next to a plain UNIX-socket ping-pong.

Run as ``python benchmarks/vfio_user_rates.py [--quick]``. Two server
processes are started in the same run, on sockets in a private directory:

* the vpcid vfio-user server (``python -m vpcid.conformance.serve vfio-user``)
  with one kitchen-sink device;
* a plain ping-pong server: it reads a 32-byte message and answers 36 bytes,
  exactly the sizes of a REGION_READ of 4 bytes of configuration space and
  its reply, and does nothing else. This is the floor on this machine: the
  cost of a round trip between two Python processes over a UNIX socket.

Four rates, each measured both ways:

* ``sync``: one request, wait for its reply, repeat;
* ``pipelined``: keep ``--window`` requests in flight (the protocol lets a
  client send before reading replies; the server answers in order).

Rounds are interleaved (vfio-user sync, ping-pong sync, vfio-user pipelined,
ping-pong pipelined, then again) and the median round is reported, because
the machine is shared. Ratios are printed, never judged: no thresholds.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vpcid.adapters.vfio_user.client import VfioUserClient
from vpcid.adapters.vfio_user.protocol import CONFIG_REGION, Command, RegionAccess

REQUEST, REPLY = 32, 36
"""Bytes of a 4-byte REGION_READ and of its reply: header 16 + access 16 (+ 4 data)."""

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


def start(command: list[str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if line != "ready\n":
        process.kill()
        raise SystemExit(f"server did not start: {' '.join(command)}")
    return process


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


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


def vfio_sync(client: VfioUserClient, count: int) -> None:
    for k in range(count):
        client.region_read(CONFIG_REGION, (k * 4) & 0xFC, 4)


def vfio_pipelined(client: VfioUserClient, count: int, window: int) -> None:
    requests = [
        (int(Command.REGION_READ), RegionAccess((k * 4) & 0xFC, CONFIG_REGION, 4).pack())
        for k in range(count)
    ]
    replies = client.pipeline(requests, window)
    if any(not isinstance(r, bytes) or len(r) != 20 for r in replies):
        raise SystemExit("a pipelined read failed")


def rate(run: Callable[[], None], count: int) -> float:
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer reads and rounds (a smoke run)")
    parser.add_argument("--reads", type=int, default=None, help="reads per round (default 20000, quick 2000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5, quick 2)")
    parser.add_argument("--window", type=int, default=32, help="requests in flight when pipelining")
    args = parser.parse_args()
    reads = args.reads or (2000 if args.quick else 20000)
    rounds = args.rounds or (2 if args.quick else 5)
    with tempfile.TemporaryDirectory(prefix="vpcid-bench-") as tmp:
        vfio_path, pong_path = str(Path(tmp) / "dev.sock"), str(Path(tmp) / "pong.sock")
        server = start([sys.executable, "-m", "vpcid.conformance.serve", "vfio-user", "--socket", vfio_path])
        pong = start([sys.executable, "-c", PING_PONG_SERVER, pong_path])
        try:
            client = VfioUserClient(vfio_path)
            plain = PingPong(pong_path)
            vfio_sync(client, 500)  # warm up both paths
            plain.sync(500)
            samples: dict[str, list[float]] = {
                k: [] for k in ("vfio sync", "pong sync", "vfio pipe", "pong pipe")
            }
            for _ in range(rounds):
                samples["vfio sync"].append(rate(lambda: vfio_sync(client, reads), reads))
                samples["pong sync"].append(rate(lambda: plain.sync(reads), reads))
                samples["vfio pipe"].append(rate(lambda: vfio_pipelined(client, reads, args.window), reads))
                samples["pong pipe"].append(rate(lambda: plain.pipelined(reads, args.window), reads))
            client.close()
            plain.sock.close()
        finally:
            stop(server)
            stop(pong)
    median = {k: statistics.median(v) for k, v in samples.items()}
    print(f"# vfio-user configuration reads vs UNIX-socket ping-pong ({platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, {reads} reads x {rounds} rounds, "
          f"window {args.window}, medians)")  # fmt: skip
    print(f"{'':28}{'reads/s':>12}{'us/read':>10}")
    rows = (
        ("vfio-user sync", "vfio sync"),
        ("ping-pong sync (floor)", "pong sync"),
        ("vfio-user pipelined", "vfio pipe"),
        ("ping-pong pipelined (floor)", "pong pipe"),
    )
    for label, key in rows:
        print(f"{label:28}{median[key]:12,.0f}{1e6 / median[key]:10.1f}")
    print("ratios:")
    print(f"  vfio-user sync / ping-pong sync           {median['vfio sync'] / median['pong sync']:.2f}")
    print(f"  vfio-user pipelined / ping-pong pipelined {median['vfio pipe'] / median['pong pipe']:.2f}")
    print(f"  vfio-user pipelined / vfio-user sync      {median['vfio pipe'] / median['vfio sync']:.2f}")
    print(f"  vfio-user pipelined / ping-pong sync      {median['vfio pipe'] / median['pong sync']:.2f}")


if __name__ == "__main__":
    main()
