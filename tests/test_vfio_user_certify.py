"""Certify the vpcid vfio-user server through the vfio-user client adapter, and migrate between processes.

The servers run as separate processes (``python -m vpcid.conformance.serve``)
with sockets under the test's temporary directory; every test stops them.
"""

from __future__ import annotations

import select
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from vpcid.adapters.base import AdapterUnavailable
from vpcid.adapters.registry import load_adapter
from vpcid.adapters.vfio_user.adapter import VfioUserAdapter, adapter, parse_argument
from vpcid.adapters.vfio_user.client import VfioUserClient
from vpcid.adapters.vfio_user.protocol import CONFIG_REGION
from vpcid.adapters.vfio_user.server import DeviceSpec, ServerManager, VfioUserServer
from vpcid.conformance.certify import Verdict, certify
from vpcid.conformance.devices import KITCHEN_SINK
from vpcid.conformance.discovery import consistent_with
from vpcid.conformance.engine import Differential
from vpcid.conformance.trace import Observation, Op, OpKind
from vpcid.conformance.typefile import write_type_file
from vpcid.model import (
    BarKind,
    BarSpec,
    Bdf,
    Capability,
    DeviceType,
    Profile,
    Register,
    RegisterClass,
    RomSpec,
)

BUDGET = 20_000
"""Random-engine operations per certification (the stateful engine runs 5 examples)."""
KS_TYPES = ("kitchen-sink", "e1000", "express-sink", "edu")
DEV = Bdf(0, 2, 0)
"""Where the adapter shows the first device to the guest."""


class Servers:
    """Server processes started for one test, stopped (SIGTERM, then SIGKILL) at its end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, name: str, types: tuple[str, ...], *extra: str) -> list[str]:
        paths = [str(self.directory / f"{name}{n}.sock") for n in range(len(types))]
        assert all(len(p) < 100 for p in paths)
        command = [sys.executable, "-m", "vpcid.conformance.serve", "vfio-user", *extra]
        for path, kind in zip(paths, types, strict=True):
            command += ["--socket", path, "--type", kind]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.processes.append(process)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        assert line == "ready\n", f"server did not start: {line!r}"
        return paths

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate(timeout=10)
            assert process.returncode in (0, -signal.SIGKILL), process.returncode


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    running = Servers(tmp_path)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def two_processes(servers: Servers) -> Iterator[VfioUserAdapter]:
    """Four device types served by process A, the same four by process B as migration peers."""
    a = servers.start("a", KS_TYPES)
    b = servers.start("b", KS_TYPES)
    built = adapter(",".join(f"{p}+{q}" for p, q in zip(a, b, strict=True)))
    try:
        yield built
    finally:
        built.close()


@pytest.mark.req("R-SR-008", "R-VAR-002")
def test_certify_vpcid_server_through_vfio_user(two_processes: VfioUserAdapter) -> None:
    """Our server, through our client, in two processes: every requirement a guest can observe passes."""
    info = two_processes.info
    assert info.canonical_blobs
    assert {OpKind.SAVE, OpKind.RESTORE, OpKind.RESET, OpKind.RESET_VM} <= info.operations
    assert info.machine is not None
    assert [t.name for _, t in info.machine.devices] == list(KS_TYPES)
    report = certify(two_processes, budget=BUDGET, seed=1)
    failing = {r.rid: r.failures[0].description for r in report.requirements if r.failures}
    assert report.conformant, failing
    assert report.counts()["pass"] >= 70
    verdicts = {r.rid: r.verdict for r in report.requirements}
    for rid in ("R-CFG-001", "R-BAR-003", "R-DEC-005", "R-CAM-004", "R-ECAM-003", "R-RST-001", "R-SR-002"):
        assert verdicts[rid] is Verdict.PASS, rid
    assert report.engines["random"]["operations"] >= BUDGET
    assert not two_processes.server_errors


@pytest.mark.req("R-SR-008", "R-SR-002", "R-DEC-005")
def test_migration_between_processes_keeps_observations(servers: Servers) -> None:
    """A device with BAR contents and a BAR moved while decoding, migrated from process A to B."""
    (a,) = servers.start("a", ("kitchen-sink",))
    (b,) = servers.start("b", ("kitchen-sink",))
    with VfioUserClient(a) as source, VfioUserClient(b) as target:
        source.config_write(0x14, (0xE000_0000).to_bytes(4, "little"))  # BAR1, 4 KiB
        source.config_write(0x18, (0xE010_000C).to_bytes(4, "little"))  # BAR2, 64-bit 1 MiB
        source.config_write(0x1C, (0x10).to_bytes(4, "little"))
        source.config_write(0x04, (0x0007).to_bytes(2, "little"))
        for bar, offset, data in (
            (1, 0x40, b"bar one"),
            (2, 0xF_FFF0, b"end of bar two"),
            (4, 0, b"sixteen"),
        ):
            source.region_write(bar, offset, data)
        source.config_write(0x14, (0xE800_0000).to_bytes(4, "little"))  # move BAR1 while it decodes
        stream = source.save_stream()
        target.restore_stream(stream)

        def observe(c: VfioUserClient) -> list[bytes]:
            seen = [c.config_read(0, 256)]
            seen += [
                c.region_read(bar, off, n) for bar, off, n in ((1, 0x40, 8), (2, 0xF_FFF0, 16), (4, 0, 16))
            ]
            seen += [c.region_read(6, 0, 2048), c.save_stream()]
            return seen

        assert observe(target) == observe(source)
        for c in (source, target):  # and they stay equal under the same operations afterwards
            c.config_write(0x14, (0xE900_0000).to_bytes(4, "little"))
            c.region_write(1, 0x41, b"X")
            c.config_write(0x04, (0x0000).to_bytes(2, "little"))
        assert observe(target) == observe(source)
        assert target.config_read(0x14, 4) == (0xE900_0000).to_bytes(4, "little")


@pytest.mark.req("R-SR-008")
def test_guest_view_migration_through_the_adapter(servers: Servers) -> None:
    """Guest operations through the adapter: after a restore the guest runs on process B, unchanged."""
    (a,) = servers.start("a", ("kitchen-sink",))
    (b,) = servers.start("b", ("kitchen-sink",))
    vmm = adapter(f"{a}+{b}")
    try:

        def cfg_write(offset: int, width: int, value: int) -> Op:
            return Op(OpKind.CONFIG_WRITE, vm=1, bdf=DEV, address=offset, width=width, value=value)

        setup = [
            Op(OpKind.INIT),
            cfg_write(0x14, 4, 0xE000_0000),
            cfg_write(0x04, 2, 0x3),
            Op(OpKind.MMIO_WRITE, vm=1, address=0xE000_0040, width=8, value=0x0123_4567_89AB_CDEF),
            cfg_write(0x14, 4, 0xE000_2000),  # moved while decoding
            Op(OpKind.IO_WRITE, vm=1, address=0xCF8, width=4, value=0x8000_1014),
        ]
        reads = [
            Op(OpKind.MMIO_READ, vm=1, address=0xE000_2040, width=8),
            Op(OpKind.MMIO_READ, vm=1, address=0xE000_0040, width=8),  # the old address: unmapped
            Op(OpKind.IO_READ, vm=1, address=0xCFC, width=4),  # BAR1 through 0xCF8/0xCFC
            Op(OpKind.MMIO_READ, vm=1, address=0xB001_0014, width=4),  # BAR1 through ECAM
        ]
        diff = Differential(vmm)
        assert diff.run(setup) is None
        before = [vmm.execute(op) for op in reads]
        assert before[0] == Observation(value=0x0123_4567_89AB_CDEF)
        assert before[1] == Observation(value=(1 << 64) - 1)
        migrate = [Op(OpKind.SAVE, vm=1, bdf=DEV, name="m"), Op(OpKind.RESTORE, vm=1, bdf=DEV, name="m")]
        assert diff.run(migrate + reads) is None  # the model agrees
        function = vmm.functions[0]
        assert function.live is function.peer  # the guest now runs on process B
        assert [vmm.execute(op) for op in reads] == before
    finally:
        vmm.close()


@pytest.mark.req("R-DEC-005", "R-VAR-002")
def test_report_names_the_variant_a_server_shows(servers: Servers, tmp_path: Path) -> None:
    """A server in bar_move_while_decoding=ignored, declared default: not conformant, and the report
    names the variant observed on R-DEC-005 (which requirement the failure is blamed on is blame's)."""
    manifest = tmp_path / "ignored.toml"
    manifest.write_text('[profile]\nbar_move_while_decoding = "ignored"\n')
    (a,) = servers.start("a", ("kitchen-sink",), "--profile", str(manifest))
    vmm = adapter(a)
    try:
        report = certify(vmm, budget=500, stop_at_first_failure=True)
    finally:
        vmm.close()
    assert not report.conformant
    assert report.variants == {"bar_move_while_decoding": "ignored"}
    (dec005,) = (r for r in report.requirements if r.rid == "R-DEC-005")
    assert "observed bar_move_while_decoding=ignored" in (dec005.variant or "")


class ForgetsInterruptLine(ServerManager):
    """A planted bug: configuration writes to the interrupt line are dropped."""

    def region_config(self, vm_id: int, bdf: Bdf, offset: int, length: int, payload: bytes | None) -> bytes:
        if payload is not None and offset <= 0x3C < offset + length:
            k = 0x3C - offset
            payload = payload[:k] + bytes([self.config_read(vm_id, bdf, 0x3C, 1)]) + payload[k + 1 :]
        return super().region_config(vm_id, bdf, offset, length, payload)


@pytest.mark.req("R-CFG-007")
def test_a_broken_server_is_caught(tmp_path: Path) -> None:
    """The adapter forwards configuration space to the server, so a server bug shows by R-ID."""
    spec = DeviceSpec(tmp_path / "bug.sock", KITCHEN_SINK)
    with VfioUserServer([spec], manager_factory=ForgetsInterruptLine):
        vmm = adapter(str(spec.path))
        try:
            report = certify(vmm, budget=500, stop_at_first_failure=True)
        finally:
            vmm.close()
    failing = {r.rid for r in report.requirements if r.verdict is Verdict.FAIL}
    assert "R-CFG-007" in failing


def test_spawn_and_module_path_forms(servers: Servers) -> None:
    (a,) = servers.start("a", ("e1000",))
    vmm = load_adapter(f"vpcid.adapters.vfio_user:adapter:{a}")
    try:
        assert isinstance(vmm, VfioUserAdapter)
        assert vmm.info.machine is not None
        assert vmm.info.machine.devices == ((DEV, vmm.functions[0].dtype),)
        assert vmm.functions[0].dtype.name == "e1000"
        assert vmm.execute(Op(OpKind.CONFIG_READ, vm=1, bdf=DEV, address=0, width=4)).value == 0x100E_8086
        assert vmm.execute(Op(OpKind.CONFIG_READ, vm=2, bdf=DEV, address=0, width=4)).error == "unknown-vm"
        assert vmm.execute(Op(OpKind.RESTORE, vm=1, bdf=DEV, name="none")).error == "empty-slot"
    finally:
        vmm.close()
    spawned = adapter("spawn=edu")
    try:
        assert spawned.functions[0].peer is not None
        assert spawned.functions[0].live.region_info(CONFIG_REGION).size == 256
        directory = Path(spawned.functions[0].primary.path).parent
    finally:
        spawned.close()
    assert not directory.exists()


@pytest.mark.parametrize(
    ("argument", "reason"),
    [
        (None, "SOCKET"),
        ("", "SOCKET"),
        ("spawn=no-such-type", "unknown device type"),
        ("/nonexistent/dev.sock", "cannot open"),
        ("spawn,/x.sock", "not both"),
        ("profile=/x.toml", "no device"),
    ],
)
def test_unusable_arguments_are_unavailable(argument: str | None, reason: str) -> None:
    with pytest.raises(AdapterUnavailable, match=reason):
        adapter(argument)


def test_argument_grammar() -> None:
    parsed = parse_argument("/a.sock+/b.sock@e1000,/c.sock,profile=/p.toml")
    assert [(d.primary, d.peer, d.type_name) for d in parsed.devices] == [
        ("/a.sock", "/b.sock", "e1000"),
        ("/c.sock", None, None),
    ]
    assert parsed.profile_path == "/p.toml"
    assert parse_argument("spawn").spawn == ("kitchen-sink",)
    assert parse_argument("spawn=edu+a100").spawn == ("edu", "a100")


def test_declared_profile_reaches_the_adapter(servers: Servers, tmp_path: Path) -> None:
    manifest = tmp_path / "p.toml"
    manifest.write_text('[profile]\noverlap = "last-mapped"\nunmapped_mmio_read = "zeros"\n')
    (a,) = servers.start("a", ("kitchen-sink",))
    vmm = adapter(f"{a},profile={manifest}")
    try:
        assert vmm.info.profile == Profile.from_manifest(manifest.read_text())
        assert vmm.execute(Op(OpKind.MMIO_READ, vm=1, address=0xE000_0000, width=4)).value == 0
        report = certify(vmm, budget=500)
        assert report.conformant, [r.rid for r in report.requirements if r.failures]
    finally:
        vmm.close()


# ------------------------------------------------------------------ discovered types and type files

CUSTOM = DeviceType(
    name="custom",
    vendor_id=0x1B36, device_id=0x0F0F, class_code=0x058000, interrupt_pin=1,
    bars=(BarSpec(BarKind.MEM32, 4096), BarSpec(BarKind.IO, 16)),
    rom=RomSpec(2048, b"\x55\xaa" + bytes(range(64))),
    capabilities=(
        Capability(0x01, struct.pack("<HHBB", 0x0003, 0, 0, 0), writable=bytes([0, 0, 0x03, 0x01, 0, 0]),
                   offset=0x80),
        Capability(0x09, bytes([0x06, 0xAA, 0x55, 0x0F]), writable=bytes([0, 0xFF, 0, 0]),
                   rw1c=bytes([0, 0, 0, 0x0F]), offset=0x48),
    ),
    registers=(Register(0xC0, 4, RegisterClass.RW, 0x1234_5678),),
)  # fmt: skip
"""A type no suite type resembles: capabilities away from 0x40, a ROM, RW and RW1C bytes."""


@pytest.mark.req("R-DT-005", "R-DT-006")
def test_socket_alone_discovers_an_unknown_type(tmp_path: Path) -> None:
    """`vfio-user:SOCKET` discovers a type the suite does not know: its bytes exactly (zero RW1C bits
    aside), every BAR's contents opaque, the notes in the description; certification passes."""
    spec = DeviceSpec(tmp_path / "custom.sock", CUSTOM)
    with VfioUserServer([spec]):
        vmm = adapter(str(spec.path))
        try:
            function = vmm.functions[0]
            assert consistent_with(function.dtype, CUSTOM)
            assert function.dtype.declared.w1cmask[0x4D] == 0x0F
            assert [bar for bar, _ in function.opaque] == [0, 1]
            assert "every BAR's contents are opaque" in vmm.info.description
            report = certify(vmm, budget=2000, seed=3)
        finally:
            vmm.close()
    assert report.conformant, [r.rid for r in report.requirements if r.failures]


@pytest.mark.req("R-DT-001", "R-DT-004")
def test_socket_at_file_takes_the_type_from_a_device_type_file(tmp_path: Path) -> None:
    """`SOCKET@FILE` reads the type with the suite's reader (one type), `@FILE#NAME` picks one of several;
    BAR contents are then checked (memory behaviour). `@TYPE` still names a suite type."""
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    write_type_file(one, [CUSTOM])
    write_type_file(two, [KITCHEN_SINK, CUSTOM])
    spec = DeviceSpec(tmp_path / "custom.sock", CUSTOM)
    with VfioUserServer([spec]):
        for argument in (f"{spec.path}@{one}", f"{spec.path}@{two}#custom"):
            vmm = adapter(argument)
            try:
                assert vmm.functions[0].dtype.fingerprint() == CUSTOM.fingerprint()
                assert not vmm.functions[0].opaque
                report = certify(vmm, budget=2000, seed=4)
            finally:
                vmm.close()
            passed = {r.rid for r in report.requirements if r.verdict is Verdict.PASS}
            assert report.conformant, [r.rid for r in report.requirements if r.failures]
            assert "R-DT-004" in passed
        refused = ((f"{spec.path}@{two}", "holds 2 types"), (f"{spec.path}@{two}#nope", "no type"),
                   (f"{spec.path}@no-such-type", "neither a suite type"))  # fmt: skip
        for argument, reason in refused:
            with pytest.raises(AdapterUnavailable, match=reason):
                adapter(argument)
        # A suite type the device is not: its writable bytes cannot be brought to that type's
        # power-on values, so no certification can start from a state it has checked.
        with pytest.raises(AdapterUnavailable, match=r"writable bits .* not those of type 'kitchen-sink'"):
            adapter(f"{spec.path}@kitchen-sink")


def test_socket_alone_recognises_a_suite_type(servers: Servers) -> None:
    (a,) = servers.start("a", ("kitchen-sink",))
    vmm = adapter(a)
    try:
        assert vmm.functions[0].dtype is KITCHEN_SINK
        assert not vmm.functions[0].opaque
        assert "consistent with the suite type 'kitchen-sink'" in vmm.info.description
        assert "msi-mme-clamp" in vmm.info.description
    finally:
        vmm.close()
