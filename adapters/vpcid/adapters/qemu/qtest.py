"""One QEMU process driven through qtest (the guest's view) and QMP (the machine's controls).

:class:`QemuProcess` starts ``qemu-system-x86_64`` paused (``-S``: the vCPU
never runs, so no firmware touches the devices) with a qtest socket and a QMP
monitor, both UNIX sockets this side listens on. Every process is tracked by
pid and killed by pid: by :meth:`QemuProcess.kill`, by an ``atexit`` hook, and
by the kernel (``PR_SET_PDEATHSIG``) if the Python process itself dies.

The qtest line protocol (one request line, one ``OK``/``FAIL`` reply line;
asynchronous ``IRQ`` lines may appear between replies) is spoken by
:meth:`QemuProcess.qtest`, which pipelines: it writes a whole batch of
requests before reading the replies, roughly twenty times faster than one
round trip per request. Nothing reaches QEMU before the caller validated it:
a qtest request with missing arguments can abort QEMU.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QEMU_BINARY = "qemu-system-x86_64"
STDERR_TAIL = 2000
"""Characters of QEMU's stderr quoted when it dies."""
CONNECT_TIMEOUT = 20.0
REPLY_TIMEOUT = 60.0


class QemuError(Exception):
    """Something went wrong talking to QEMU."""


class QemuUnavailable(QemuError):
    """QEMU cannot run here (binary missing, device unknown, machine refuses to start)."""


class QemuCrashed(QemuError):
    """The QEMU process died or stopped answering in the middle of an operation."""


class QmpError(QemuError):
    """A QMP command returned an error."""


def qemu_binary() -> str | None:
    """Path of ``qemu-system-x86_64``, or None when it is not installed."""
    override = os.environ.get("VPCID_QEMU")
    if override:
        return override if Path(override).exists() else None
    return shutil.which(QEMU_BINARY)


# ------------------------------------------------------------------ process tracking

_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LIVE_LOCK = threading.Lock()


def live_pids() -> tuple[int, ...]:
    """Pids of the QEMU processes this Python process started and has not reaped yet."""
    with _LIVE_LOCK:
        return tuple(_LIVE)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill one process we started, by its pid, and wait for it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    with _LIVE_LOCK:
        _LIVE.pop(proc.pid, None)


@atexit.register
def kill_all() -> None:
    """Kill every QEMU this process started (runs at interpreter exit; also usable by tests)."""
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    for proc in procs:
        _reap(proc)


def _death_signal_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL --``: the kernel kills QEMU if the Python process dies first.

    ``setpriv`` (util-linux) sets the parent-death signal and then execs QEMU,
    so the pid stays QEMU's. Without it the atexit hook is the only net.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


# ------------------------------------------------------------------ the process


@dataclass
class QemuProcess:
    """A paused QEMU machine with a qtest and a QMP connection.

    Construct with :meth:`spawn`; then :meth:`connect` (``spawn`` returns
    before QEMU finished starting, so a caller can overlap QEMU's start-up
    with other work).
    """

    argv: list[str]
    workdir: Path
    proc: subprocess.Popen[bytes]
    _qtest_listener: socket.socket
    _qmp_listener: socket.socket
    _qtest: socket.socket | None = None
    _qmp: socket.socket | None = None
    _qtest_buffer: bytearray = field(default_factory=bytearray)
    _qmp_buffer: bytearray = field(default_factory=bytearray)
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0

    @classmethod
    def spawn(cls, machine_args: Sequence[str], *, incoming: bool = False) -> QemuProcess:
        """Start QEMU with ``machine_args`` (``-machine ...``, ``-device ...``); connect later."""
        binary = qemu_binary()
        if binary is None:
            raise QemuUnavailable(f"{QEMU_BINARY} is not installed (run .ci/install-qemu.sh)")
        workdir = Path(tempfile.mkdtemp(prefix="vpcid-qemu-"))
        qtest_path, qmp_path = workdir / "qtest.sock", workdir / "qmp.sock"
        listeners = []
        for path in (qtest_path, qmp_path):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(path))
            sock.listen(1)
            sock.settimeout(CONNECT_TIMEOUT)
            listeners.append(sock)
        argv = [
            binary, "-accel", "tcg", "-S", "-display", "none", "-nodefaults", "-no-user-config",
            "-qtest", f"unix:{qtest_path}", "-qtest-log", "/dev/null",
            "-chardev", f"socket,path={qmp_path},id=qmp0", "-mon", "chardev=qmp0,mode=control",
            *machine_args,
        ]  # fmt: skip
        if incoming:
            argv += ["-incoming", "defer"]
        stderr = (workdir / "stderr").open("wb")
        try:
            proc = subprocess.Popen(
                _death_signal_prefix() + argv,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                cwd=workdir,
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we kill QEMU
            )
        except OSError as exc:
            for sock in listeners:
                sock.close()
            shutil.rmtree(workdir, ignore_errors=True)
            raise QemuUnavailable(f"cannot start {binary}: {exc}") from None
        finally:
            stderr.close()
        with _LIVE_LOCK:
            _LIVE[proc.pid] = proc
        return cls(argv, workdir, proc, listeners[0], listeners[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self) -> str:
        try:
            text = (self.workdir / "stderr").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text[-STDERR_TAIL:].strip()

    def death(self, doing: str) -> QemuCrashed:
        """The exception describing why QEMU stopped answering while ``doing``."""
        status = self.proc.poll()
        if status is None:
            how = "stopped answering"
        elif status < 0:
            how = f"was killed by signal {signal.Signals(-status).name}"
        else:
            how = f"exited with status {status}"
        tail = self.stderr_tail()
        message = f"QEMU {how} during {doing}"
        if tail:
            message += f"; stderr: {' | '.join(tail.splitlines()[-6:])}"
        return QemuCrashed(message)

    def connect(self) -> None:
        """Accept QEMU's qtest and QMP connections; negotiate QMP capabilities."""
        if self._qtest is not None:
            return
        try:
            qmp, _ = self._accept(self._qmp_listener)
            self._qmp = qmp
            qtest, _ = self._accept(self._qtest_listener)
            self._qtest = qtest
        finally:
            self._qtest_listener.close()
            self._qmp_listener.close()
        greeting = self._qmp_message()
        if "QMP" not in greeting:
            raise QemuUnavailable(f"unexpected QMP greeting: {greeting}")
        self.qmp("qmp_capabilities")

    def _accept(self, listener: socket.socket) -> tuple[socket.socket, Any]:
        deadline = time.monotonic() + CONNECT_TIMEOUT
        listener.settimeout(0.05)
        while True:
            try:
                conn, addr = listener.accept()
            except TimeoutError:
                if not self.alive():
                    raise QemuUnavailable(self.death("start-up").args[0]) from None
                if time.monotonic() > deadline:
                    raise QemuUnavailable("QEMU did not connect to its sockets in time") from None
                continue
            conn.settimeout(REPLY_TIMEOUT)
            return conn, addr

    # -------------------------------------------------------------- qtest

    def qtest(self, requests: Sequence[str]) -> list[str]:
        """Send ``requests`` in one batch; return one reply line per request (``OK ...``).

        A ``FAIL`` reply raises :class:`QemuError`; a dead or silent QEMU
        raises :class:`QemuCrashed`.
        """
        if self._qtest is None:
            self.connect()
        assert self._qtest is not None
        self.requests += len(requests)
        try:
            self._qtest.sendall(("\n".join(requests) + "\n").encode("ascii"))
        except OSError:
            raise self.death(f"qtest {requests[0]!r}") from None
        replies: list[str] = []
        while len(replies) < len(requests):
            line = self._qtest_line(requests[len(replies)])
            if line.startswith("IRQ"):
                continue
            if not line.startswith("OK"):
                raise QemuError(f"qtest {requests[len(replies)]!r} failed: {line}")
            replies.append(line)
        return replies

    def _qtest_line(self, doing: str) -> str:
        line = self._line(self._qtest, self._qtest_buffer, f"qtest {doing!r}")
        return line.decode("ascii", errors="replace").strip()

    def _line(self, sock: socket.socket | None, buffer: bytearray, doing: str) -> bytes:
        """The next line from ``sock``; ``buffer`` keeps what came after it (qtest, QMP: one per line)."""
        assert sock is not None
        while b"\n" not in buffer:
            try:
                chunk = sock.recv(1 << 16)
            except (TimeoutError, OSError):
                chunk = b""
            if not chunk:
                raise self.death(doing)
            buffer += chunk
        end = buffer.index(b"\n")
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        return line

    # -------------------------------------------------------------- QMP

    def qmp(self, command: str, **arguments: Any) -> Any:
        """Execute one QMP command; return its ``return`` value."""
        if self._qmp is None:
            self.connect()
        assert self._qmp is not None
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        try:
            self._qmp.sendall(json.dumps(request).encode() + b"\n")
        except OSError:
            raise self.death(f"QMP {command}") from None
        while True:
            reply = self._qmp_message(command)
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise QmpError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")
            return reply.get("return")

    def _qmp_message(self, doing: str = "QMP greeting") -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self._line(self._qmp, self._qmp_buffer, f"QMP {doing}"))
        return message

    def wait_event(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the QMP event ``name`` (already received or still to come)."""
        assert self._qmp is not None
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("event") == name:
                    self.events.remove(event)
                    return event
            if time.monotonic() > deadline:
                raise self.death(f"waiting for QMP event {name}")
            self._qmp.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self._qmp_message(f"waiting for {name}")
            finally:
                self._qmp.settimeout(REPLY_TIMEOUT)
            self.events.append(message)

    # -------------------------------------------------------------- end

    def kill(self) -> None:
        """Kill the process by pid, close the sockets, remove the working directory."""
        for sock in (self._qtest, self._qmp, self._qtest_listener, self._qmp_listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        _reap(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


# ------------------------------------------------------------------ guest accesses

_SUFFIX = {1: "b", 2: "w", 4: "l", 8: "q"}


def _value(reply: str) -> int:
    return int(reply.split()[1], 16)


class Guest:
    """Guest-view accesses to one QEMU machine, as qtest requests.

    Every method takes already validated arguments (widths 1/2/4, and 8 for
    memory; addresses in range): QEMU aborts on some malformed requests.
    """

    def __init__(self, qemu: QemuProcess, ecam_base: int) -> None:
        self.qemu = qemu
        self.ecam_base = ecam_base

    # raw accesses
    def io_read(self, port: int, width: int) -> int:
        return _value(self.qemu.qtest([f"in{_SUFFIX[width]} {port:#x}"])[0])

    def io_write(self, port: int, width: int, value: int) -> None:
        self.qemu.qtest([f"out{_SUFFIX[width]} {port:#x} {value:#x}"])

    def mmio_read(self, address: int, width: int) -> int:
        return _value(self.qemu.qtest([f"read{_SUFFIX[width]} {address:#x}"])[0])

    def mmio_write(self, address: int, width: int, value: int) -> None:
        self.qemu.qtest([f"write{_SUFFIX[width]} {address:#x} {value:#x}"])

    def read_block(self, address: int, length: int) -> bytes:
        """``length`` bytes of guest memory in one request (used for ROM contents)."""
        out = bytearray()
        while length:
            chunk = min(length, 1 << 16)
            reply = self.qemu.qtest([f"read {address:#x} {chunk:#x}"])[0]
            out += bytes.fromhex(reply.split()[1][2:])
            address, length = address + chunk, length - chunk
        return bytes(out)

    # configuration space through ECAM (no guest-visible register changes)
    def ecam_address(self, packed_bdf: int, offset: int) -> int:
        return self.ecam_base + (packed_bdf << 12) + offset

    def config_read(self, packed_bdf: int, offset: int, width: int) -> int:
        return self.mmio_read(self.ecam_address(packed_bdf, offset), width)

    def config_write(self, packed_bdf: int, offset: int, width: int, value: int) -> None:
        self.mmio_write(self.ecam_address(packed_bdf, offset), width, value)

    def config_batch(self, packed_bdf: int, accesses: Sequence[tuple[int, int, int | None]]) -> list[int]:
        """Pipelined configuration accesses ``(offset, width, value or None)``; read values in order."""
        requests = []
        for offset, width, value in accesses:
            address = self.ecam_address(packed_bdf, offset)
            if value is None:
                requests.append(f"read{_SUFFIX[width]} {address:#x}")
            else:
                requests.append(f"write{_SUFFIX[width]} {address:#x} {value:#x}")
        replies = self.qemu.qtest(requests)
        return [_value(r) for r, (_, _, v) in zip(replies, accesses, strict=True) if v is None]
