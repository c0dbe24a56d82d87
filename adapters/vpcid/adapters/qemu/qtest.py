"""One QEMU process driven through qtest (the guest's view) and QMP (the machine's controls).

:class:`QemuProcess` starts ``qemu-system-x86_64`` paused (``-S``: the vCPU
never runs, so no firmware touches the devices) with a qtest socket and a QMP
monitor, both UNIX sockets this side listens on. Every process is tracked by
pid and killed by pid: by :meth:`QemuProcess.kill`, by an ``atexit`` hook, and
by the kernel (``PR_SET_PDEATHSIG``) if the Python process itself dies.

The qtest line protocol (one request line, one ``OK``/``FAIL`` reply line;
asynchronous ``IRQ`` lines may appear between replies) is spoken by
:meth:`QemuProcess.qtest_stream`, which pipelines: it keeps up to
:data:`PIPELINE_DEPTH` requests in flight and reads their replies as they
come, tens of times faster than one round trip per request. QEMU answers in
request order, so every reply, ``FAIL`` or silence still belongs to exactly
one request. Nothing reaches QEMU before the caller validated it: a qtest
request with missing arguments can abort QEMU.

:meth:`QemuProcess.enable_snapshots` gives a machine a scratch qcow2 image
for QEMU's internal snapshots (``savevm``/``loadvm``): a whole machine saved
and loaded inside the one process, without starting another QEMU. A machine
spawned with ``ram=`` has its RAM in a shared file this side holds open;
its snapshots then leave RAM out (QEMU's ``x-ignore-shared``), which makes
them several times cheaper, and this side keeps RAM itself: nothing when RAM
was never written (the file has no blocks), a copy of the written parts
otherwise.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

QEMU_BINARY = "qemu-system-x86_64"
STDERR_TAIL = 2000
"""Characters of QEMU's stderr quoted when it dies."""
CONNECT_TIMEOUT = 20.0
REPLY_TIMEOUT = 60.0
EXIT_WAIT = 2.0
"""Seconds a QEMU that stopped answering gets to exit before it is reported as hung."""
PIPELINE_DEPTH = 256
"""Most qtest requests in flight at once. The requests are short lines (a block ``write`` would go
alone), so all of them fit in QEMU's socket buffer: sending never blocks, even while QEMU waits
for this side to read replies, and the pipeline cannot deadlock."""
SNAPSHOT_IMAGE_SIZE = 1 << 20
"""Virtual size of the scratch qcow2 image that holds snapshots (QEMU stores machine state past it)."""
_SNAPSHOT_TAG = re.compile(r"[A-Za-z0-9_-]{1,64}")
RAM_FOLDER = Path("/dev/shm")
"""Where a shared RAM file is made (memory, not disk); the working directory when it is missing."""


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
    _qtest_partial: bytes = b""
    """Received qtest bytes after the last complete line."""
    _qtest_lines: deque[str] = field(default_factory=deque)
    """Complete qtest lines received and not consumed yet."""
    _qmp_buffer: bytearray = field(default_factory=bytearray)
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    snapshots: bool = False
    """Whether :meth:`enable_snapshots` gave the machine its snapshot image."""
    ram_fd: int | None = None
    """The machine's RAM file, open (``spawn(ram=...)``); its name is removed once QEMU has it."""
    ram_outside_snapshots: bool = False
    """Whether snapshots leave RAM to this side (``x-ignore-shared`` set by :meth:`enable_snapshots`)."""
    _ram_path: Path | None = None
    _ram_images: dict[str, Path | None] = field(default_factory=dict)
    """Snapshot tag -> the written parts of RAM when it was saved (None: RAM was never written)."""
    _jobs: int = 0

    @classmethod
    def spawn(
        cls, machine_args: Sequence[str], *, incoming: bool = False, ram: str | None = None
    ) -> QemuProcess:
        """Start QEMU with ``machine_args`` (``-machine ...``, ``-device ...``); connect later.

        ``ram``: the machine's RAM size (as ``-m`` gives it); its RAM is then a
        shared file this side keeps open (:attr:`ram_fd`), at the same
        guest-physical addresses.
        """
        binary = qemu_binary()
        if binary is None:
            raise QemuUnavailable(f"{QEMU_BINARY} is not installed (run .ci/install-debian.sh)")
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
        ram_fd, ram_path = None, None
        if ram is not None:
            folder = RAM_FOLDER if RAM_FOLDER.is_dir() and os.access(RAM_FOLDER, os.W_OK) else workdir
            ram_fd, name = tempfile.mkstemp(prefix="vpcid-qemu-ram-", dir=folder)
            ram_path = Path(name)
            if "," in name:
                os.close(ram_fd)
                ram_path.unlink()
                raise QemuUnavailable(f"a RAM file path with a comma cannot be given to QEMU: {name}")
            argv += [
                "-object", f"memory-backend-file,id=vpcid-ram,size={ram},share=on,mem-path={name}",
                "-machine", "memory-backend=vpcid-ram",
            ]  # fmt: skip
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
            if ram_fd is not None and ram_path is not None:
                os.close(ram_fd)
                ram_path.unlink(missing_ok=True)
            raise QemuUnavailable(f"cannot start {binary}: {exc}") from None
        finally:
            stderr.close()
        with _LIVE_LOCK:
            _LIVE[proc.pid] = proc
        return cls(argv, workdir, proc, listeners[0], listeners[1], ram_fd=ram_fd, _ram_path=ram_path)

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
        """The exception describing why QEMU stopped answering while ``doing``.

        A QEMU that closed its socket is dying: it gets :data:`EXIT_WAIT` seconds
        to finish, so the report says how it ended (signal, status) whatever the
        timing; one still running then is reported as no longer answering.
        """
        status = self.proc.poll()
        if status is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                status = self.proc.wait(timeout=EXIT_WAIT)
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
        if self._ram_path is not None:  # QEMU is past machine creation: it has mapped its RAM file
            self._ram_path.unlink(missing_ok=True)
            self._ram_path = None

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
        """Send ``requests`` pipelined; return one reply line per request (``OK ...``).

        A ``FAIL`` reply raises :class:`QemuError`; a dead or silent QEMU
        raises :class:`QemuCrashed`; either names the request it belongs to.
        """
        replies, failure = self.qtest_stream(requests)
        if failure is not None:
            raise failure
        return replies

    def qtest_stream(self, requests: Sequence[str]) -> tuple[list[str], QemuError | None]:
        """Send ``requests`` with up to :data:`PIPELINE_DEPTH` in flight; collect their replies in order.

        Returns ``(replies, failure)``. ``failure`` is None when every request
        was answered ``OK``. Otherwise ``replies`` holds the replies of the
        requests before the first one that failed, and ``failure`` names that
        request: its ``FAIL`` reply (:class:`QemuError`), or QEMU dying or
        falling silent before answering it (:class:`QemuCrashed`). No request
        is sent after a failure is seen; those already in flight are answered
        and their replies dropped, so the stream stays in step.
        """
        if self._qtest is None:
            self.connect()
        sock = self._qtest
        assert sock is not None
        total = len(requests)
        replies: list[str] = []
        answered = sent = 0
        can_send = True
        lines = self._qtest_lines
        while answered < total:
            if can_send and sent < total and sent - answered <= PIPELINE_DEPTH // 2:
                end = min(total, answered + PIPELINE_DEPTH)
                try:
                    sock.sendall(("\n".join(requests[sent:end]) + "\n").encode("ascii"))
                except OSError:  # QEMU is gone: collect what it answered, then blame the next request
                    can_send = False
                else:
                    self.requests += end - sent
                    sent = end
            if answered == sent:
                return replies, self.death(f"qtest {requests[answered]!r}")
            if not lines:
                try:
                    self._receive_qtest()
                except QemuCrashed:
                    return replies, self.death(f"qtest {requests[answered]!r}")
                continue
            line = lines.popleft()
            if line.startswith("OK"):
                replies.append(line)
                answered += 1
            elif not line.startswith("IRQ"):
                failure = QemuError(f"qtest {requests[answered]!r} failed: {line}")
                self._drop_replies(sent - answered - 1)
                return replies, failure
        return replies, None

    def _receive_qtest(self) -> None:
        """Receive what QEMU sent on the qtest socket; queue its complete lines."""
        assert self._qtest is not None
        try:
            chunk = self._qtest.recv(1 << 16)
        except (TimeoutError, OSError):
            chunk = b""
        if not chunk:
            raise QemuCrashed("qtest connection closed")
        *complete, self._qtest_partial = (self._qtest_partial + chunk).split(b"\n")
        self._qtest_lines.extend(line.decode("ascii", errors="replace").strip() for line in complete)

    def _drop_replies(self, count: int) -> None:
        """Read and drop the replies of ``count`` requests in flight (after a failure)."""
        lines = self._qtest_lines
        with contextlib.suppress(QemuCrashed):
            while count > 0:
                if not lines:
                    self._receive_qtest()
                    continue
                if not lines.popleft().startswith("IRQ"):
                    count -= 1

    def _line(self, sock: socket.socket | None, buffer: bytearray, doing: str) -> bytes:
        """The next line from ``sock`` (QMP: one message per line); ``buffer`` keeps what came after it."""
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

    # -------------------------------------------------------------- snapshots

    def hmp(self, command_line: str) -> str:
        """Run one human-monitor command (through QMP ``human-monitor-command``); what it printed."""
        return str(self.qmp("human-monitor-command", **{"command-line": command_line}))

    def enable_snapshots(self) -> None:
        """Attach a scratch qcow2 image for internal snapshots, created through QMP.

        The image lives in the machine's working directory and is not a guest
        disk. Its flushes are no-ops: it is scratch space, gone with the process.
        """
        if self.snapshots:
            return
        image = str(self.workdir / "snapshots.qcow2")
        no_flush = {"no-flush": True}
        self._job("blockdev-create", {"driver": "file", "filename": image, "size": 0})
        self.qmp("blockdev-add", driver="file", filename=image, cache=no_flush, **{"node-name": "vpcid-file"})
        self._job("blockdev-create", {"driver": "qcow2", "file": "vpcid-file", "size": SNAPSHOT_IMAGE_SIZE})
        self.qmp(
            "blockdev-add",
            driver="qcow2",
            file="vpcid-file",
            cache=no_flush,
            **{"node-name": "vpcid-snapshots"},
        )
        if self.ram_fd is not None:
            with contextlib.suppress(QmpError):  # a QEMU without the capability keeps RAM in its snapshots
                ignore_shared = {"capability": "x-ignore-shared", "state": True}
                self.qmp("migrate-set-capabilities", capabilities=[ignore_shared])
                self.ram_outside_snapshots = True
        self.snapshots = True

    def save_snapshot(self, tag: str) -> None:
        """``savevm TAG``: the whole machine into the snapshot image (a snapshot of that tag is replaced)."""
        self._snapshot_command("savevm", tag)
        if self.ram_outside_snapshots:
            self._keep_ram(tag)

    def load_snapshot(self, tag: str) -> None:
        """``loadvm TAG``: reset the machine, then load the state ``savevm TAG`` saved (RAM first)."""
        if self.ram_outside_snapshots:
            if tag not in self._ram_images:
                raise QemuError(f"loadvm {tag}: no such snapshot")
            self._put_ram(self._ram_images[tag])
        self._snapshot_command("loadvm", tag)

    def ram_written(self) -> bool:
        """Whether anything was ever written to the machine's RAM file since it was last zeroed."""
        assert self.ram_fd is not None
        return os.fstat(self.ram_fd).st_blocks > 0

    def _keep_ram(self, tag: str) -> None:
        """Remember RAM for snapshot ``tag``: nothing if never written, else a copy of its written parts."""
        assert self.ram_fd is not None
        old = self._ram_images.pop(tag, None)
        if old is not None:
            old.unlink(missing_ok=True)
        image = None
        if self.ram_written():
            image = self.workdir / f"ram-{tag}"
            target = os.open(image, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(target, os.fstat(self.ram_fd).st_size)
                _copy_written(self.ram_fd, target)
            finally:
                os.close(target)
        self._ram_images[tag] = image

    def _put_ram(self, image: Path | None) -> None:
        """Make RAM what ``image`` holds (zeros where it has no data; all zeros for None)."""
        assert self.ram_fd is not None
        if image is None and not self.ram_written():
            return
        _punch(self.ram_fd, os.fstat(self.ram_fd).st_size)
        if image is not None:
            source = os.open(image, os.O_RDONLY)
            try:
                _copy_written(source, self.ram_fd)
            finally:
                os.close(source)

    def _snapshot_command(self, command: str, tag: str) -> None:
        if not self.snapshots:
            raise QemuError(f"{command} {tag}: the machine has no snapshot image (enable_snapshots)")
        if not _SNAPSHOT_TAG.fullmatch(tag):
            raise QemuError(f"{command}: {tag!r} is not a snapshot tag (letters, digits, - and _)")
        printed = self.hmp(f"{command} {tag}").strip()
        if printed:  # savevm and loadvm print nothing when they succeed
            raise QemuError(f"{command} {tag}: {' | '.join(printed.splitlines())}")

    def _job(self, command: str, options: dict[str, Any]) -> None:
        """Run a QMP job command to its end; raise :class:`QemuError` if the job failed."""
        self._jobs += 1
        job = f"vpcid-job-{self._jobs}"
        self.qmp(command, **{"job-id": job, "options": options})
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            entry = next((j for j in self.qmp("query-jobs") if j.get("id") == job), None)
            if entry is not None and entry.get("status") == "concluded":
                self.qmp("job-dismiss", id=job)
                self.events = [e for e in self.events if e.get("data", {}).get("id") != job]
                if "error" in entry:
                    raise QemuError(f"QMP {command}: {entry['error']}")
                return
            if time.monotonic() > deadline:
                raise self.death(f"QMP {command} (job {job})")
            time.sleep(0.001)

    # -------------------------------------------------------------- end

    def kill(self) -> None:
        """Kill the process by pid, close the sockets and RAM file, remove the working directory."""
        for sock in (self._qtest, self._qmp, self._qtest_listener, self._qmp_listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        _reap(self.proc)
        if self.ram_fd is not None:
            os.close(self.ram_fd)
            self.ram_fd = None
        if self._ram_path is not None:
            self._ram_path.unlink(missing_ok=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


# ------------------------------------------------------------------ RAM files

_FALLOC_PUNCH_HOLE_KEEP_SIZE = 0x02 | 0x01
"""``FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`` (linux/falloc.h)."""
_COPY_CHUNK = 1 << 20


@cache
def _fallocate() -> Any:
    """libc's ``fallocate(fd, mode, offset, length)``."""
    function = ctypes.CDLL(None, use_errno=True).fallocate
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return function


def _punch(fd: int, length: int) -> None:
    """Free every block of the file: it reads as zeros, its size kept (and QEMU's mapping stays valid)."""
    if _fallocate()(fd, _FALLOC_PUNCH_HOLE_KEEP_SIZE, 0, length) != 0:
        code = ctypes.get_errno()
        raise QemuError(f"cannot zero the RAM file: {os.strerror(code)}")


def _written_extents(fd: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each run of the file that holds data (``SEEK_DATA``/``SEEK_HOLE``)."""
    size, offset = os.fstat(fd).st_size, 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after offset
                return
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        offset = end


def _copy_written(source: int, target: int) -> None:
    """Copy the data runs of ``source`` to the same offsets of ``target``."""
    for start, end in _written_extents(source):
        for offset in range(start, end, _COPY_CHUNK):
            chunk = os.pread(source, min(_COPY_CHUNK, end - offset), offset)
            os.pwrite(target, chunk, offset)


# ------------------------------------------------------------------ guest accesses

_SUFFIX = {1: "b", 2: "w", 4: "l", 8: "q"}


def reply_value(reply: str) -> int:
    """The value in a read's reply, ``OK 0x...``."""
    return int(reply.split()[1], 16)


def read_request(space: str, address: int, width: int) -> str:
    """The qtest request reading ``width`` bytes at ``address`` of ``space`` (``io`` or ``memory``)."""
    return f"{'in' if space == 'io' else 'read'}{_SUFFIX[width]} {address:#x}"


def write_request(space: str, address: int, width: int, value: int) -> str:
    """The qtest request writing ``value`` (``width`` bytes) at ``address`` of ``space``; answered ``OK``."""
    return f"{'out' if space == 'io' else 'write'}{_SUFFIX[width]} {address:#x} {value:#x}"


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
        return reply_value(self.qemu.qtest([read_request("io", port, width)])[0])

    def io_write(self, port: int, width: int, value: int) -> None:
        self.qemu.qtest([write_request("io", port, width, value)])

    def mmio_read(self, address: int, width: int) -> int:
        return reply_value(self.qemu.qtest([read_request("memory", address, width)])[0])

    def mmio_write(self, address: int, width: int, value: int) -> None:
        self.qemu.qtest([write_request("memory", address, width, value)])

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
                requests.append(read_request("memory", address, width))
            else:
                requests.append(write_request("memory", address, width, value))
        replies = self.qemu.qtest(requests)
        return [reply_value(r) for r, (_, _, v) in zip(replies, accesses, strict=True) if v is None]
