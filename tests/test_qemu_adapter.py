"""The QEMU adapter's machinery: discovery, behaviours, argument checks, migration, crashes, cleanup.

Every test here starts real QEMU processes (qemu-system-x86_64, paused, under
qtest) and proves they are gone afterwards. Without QEMU the module skips.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vpcid.adapters.qemu import QemuAdapter, adapter, opaque_of
from vpcid.adapters.qemu.discover import DeviceSpec, parse_mtree
from vpcid.adapters.qemu.qtest import Guest, QemuProcess, QemuUnavailable, live_pids, qemu_binary
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.engine import Differential, minimise
from vpcid.conformance.trace import Observation, Op, OpKind
from vpcid.model import Bdf
from vpcid.model.devicetype import BarKind

if qemu_binary() is None:
    pytest.skip("qemu-system-x86_64 is not installed (run .ci/install-debian.sh)", allow_module_level=True)

DEV = Bdf(0, 4, 0)
INIT = Op(OpKind.INIT)
MEM, PORTS = 0xE000_0000, 0xC000


def cw(offset: int, width: int, value: int) -> Op:
    return Op(OpKind.CONFIG_WRITE, vm=1, bdf=DEV, address=offset, width=width, value=value)


def cr(offset: int, width: int = 4, bdf: Bdf = DEV) -> Op:
    return Op(OpKind.CONFIG_READ, vm=1, bdf=bdf, address=offset, width=width)


def mr(address: int, width: int = 4) -> Op:
    return Op(OpKind.MMIO_READ, vm=1, address=address, width=width)


def mw(address: int, width: int, value: int) -> Op:
    return Op(OpKind.MMIO_WRITE, vm=1, address=address, width=width, value=value)


def ior(port: int, width: int = 4) -> Op:
    return Op(OpKind.IO_READ, vm=1, address=port, width=width)


def iow(port: int, width: int, value: int) -> Op:
    return Op(OpKind.IO_WRITE, vm=1, address=port, width=width, value=value)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # a zombie not yet reaped by its parent


pytestmark = pytest.mark.usefixtures("no_leftover_qemu")


@pytest.fixture
def open_adapter() -> Iterator[list[QemuAdapter]]:
    """Adapters a test opens; closed (and checked dead) whatever the test does."""
    opened: list[QemuAdapter] = []
    yield opened
    pids = [p.pid for a in opened for p in (a._current, a._next) if p is not None]
    for a in opened:
        a.close()
    assert all(_gone(pid) for pid in pids)


def _open(opened: list[QemuAdapter], spec: str) -> QemuAdapter:
    a = adapter(spec)
    opened.append(a)
    return a


def _agree(a: QemuAdapter, ops: list[Op]) -> None:
    divergence = Differential(a).run(ops)
    assert divergence is None, divergence.describe()


# ------------------------------------------------------------------ options and discovery


def test_device_spec_parsing() -> None:
    spec = DeviceSpec.parse("pci-testdev,membar=1M,addr=05.0,vpcid-reset=on,vpcid-profile=default")
    assert (spec.model, spec.options, spec.bdf, spec.reset, spec.profile) == (
        "pci-testdev", ("membar=1M",), Bdf(0, 5, 0), True, "default",
    )  # fmt: skip
    assert spec.machine_args()[-1] == "pci-testdev,addr=05.0,membar=1M"
    assert (spec.machine, spec.waivers, spec.ecam_base) == ("q35", True, 0xB000_0000)
    assert spec.waiver_file() is not None
    assert spec.waiver_file().name == "q35.toml"  # type: ignore[union-attr]
    pc = DeviceSpec.parse("nvme,serial=x,vpcid-machine=pc,vpcid-waivers=off")
    assert (pc.options, pc.machine, pc.waivers) == (("serial=x",), "pc", False)
    assert (pc.ecam_base, pc.waiver_file()) == (None, None)
    assert pc.machine_args()[:2] == ["-machine", "pc"]
    assert pc.device == DeviceSpec("nvme", ("serial=x",), machine="pc")
    bad_specs = (None, "", "bad name", "edu,bus=pcie.0", "edu,vpcid-what=1", "edu,addr=zz",
                 "edu,vpcid-machine=virt", "edu,vpcid-waivers=maybe", "edu,=x", "edu,a b=1")  # fmt: skip
    for bad in bad_specs:
        with pytest.raises(QemuUnavailable, match=r"."):
            DeviceSpec.parse(bad)


def test_unknown_device_model_is_unavailable_with_a_reason() -> None:
    from vpcid.adapters.base import AdapterUnavailable

    with pytest.raises(AdapterUnavailable, match="no-such-device"):
        adapter("no-such-device")


def test_edu_layout_is_discovered(open_adapter: list[QemuAdapter]) -> None:
    a = _open(open_adapter, "edu")
    t = a.discovery.dtype
    assert (t.vendor_id, t.device_id, t.revision, t.class_code) == (0x1234, 0x11E8, 0x10, 0x00FF00)
    assert (t.subsystem_vendor_id, t.subsystem_id, t.interrupt_pin) == (0x1AF4, 0x1100, 1)
    assert len(t.bars) == 1
    assert t.bars[0] is not None
    assert (t.bars[0].kind, t.bars[0].size) == (BarKind.MEM32, 1 << 20)
    assert t.rom is None
    assert not t.express
    assert t.command_mask == 0x0507
    space = t.declared
    assert [(e.offset, e.cap_id) for e in t.chain] == [(0x40, 0x05)]
    # 64-bit MSI: enable and Multiple Message Enable writable, MME clamped while enabled (msi-mme-clamp)
    assert space.wmask[0x42:0x44] == b"\x71\x00"
    assert space.wmask[0x44:0x4E] == b"\xfc" + b"\xff" * 9
    assert t.config_behaviour is not None
    assert t.config_behaviour.name == "msi-mme-clamp"
    # QEMU's PCI core leaves every byte no capability claims writable (0x4e-0xff): declared so
    assert space.wmask[0x4E:0x100] == b"\xff" * (0x100 - 0x4E)
    assert space.w1cmask[0x06:0x08] == b"\x00\xf9"
    assert not any(space.w1cmask[0x08:])
    assert not a.discovery.migratable
    assert OpKind.SAVE not in a.info.operations
    assert a.machine.reserved_functions[0] == Bdf(0, 0, 0)
    assert Bdf(0, 0x1F, 0) in a.machine.reserved_functions
    assert a.machine.is_reserved("io", 0xCF9)
    assert not a.machine.is_reserved("io", 0xCFC, 4)
    assert a.machine.is_reserved("memory", 0xFEE0_0000)
    assert not a.machine.is_reserved("memory", MEM, 1 << 20)
    assert not a.machine.is_reserved("io", PORTS, 0x1000)


def test_e1000_and_pci_testdev_layouts(open_adapter: list[QemuAdapter]) -> None:
    nic = _open(open_adapter, "e1000")
    t = nic.discovery.dtype
    assert (t.vendor_id, t.device_id, t.class_code) == (0x8086, 0x100E, 0x020000)
    assert [(b.kind, b.size) for b in t.bars if b is not None] == [
        (BarKind.MEM32, 128 << 10),
        (BarKind.IO, 64),
    ]
    assert t.rom is not None
    assert t.rom.size == 256 << 10
    assert t.rom.contents[:2] == b"\x55\xaa"
    assert nic.discovery.migratable
    assert {OpKind.SAVE, OpKind.RESTORE} <= nic.info.operations
    assert [(o.bar, o.offsets) for o in opaque_of(nic.machine)] == [(0, range(0, 128 << 10))]
    testdev = _open(open_adapter, "pci-testdev,membar=1M")
    bars = testdev.discovery.dtype.bars
    assert [(b.kind, b.size, b.prefetchable) for b in bars if b is not None] == [
        (BarKind.MEM32, 4096, False), (BarKind.IO, 256, False), (BarKind.MEM64, 1 << 20, True),
    ]  # fmt: skip
    assert opaque_of(testdev.machine) == ()
    assert not testdev.discovery.migratable


def test_mtree_parsing_keeps_platform_ranges_only() -> None:
    text = textwrap.dedent("""\
        FlatView #1
         AS "memory", root: system
         Root memory region: system
          0000000000000000-0000000007ffffff (prio 0, ram): pc.ram
          00000000b0000000-00000000bfffffff (prio 0, i/o): pcie-mmcfg-mmio
          00000000fec00000-00000000fec00fff (prio 0, i/o): ioapic
        FlatView #3
         AS "I/O", root: io
         Root memory region: io
          0000000000000000-0000000000000007 (prio 0, i/o): dma-chan
          0000000000000008-000000000000000f (prio 0, i/o): io @0000000000000008
          0000000000000cf8-0000000000000cf8 (prio 0, i/o): pci-conf-idx
          0000000000000cfc-0000000000000cff (prio 0, i/o): pci-conf-data
        """)
    io, memory = parse_mtree(text)
    assert io == (range(0, 8), range(0xCF9, 0xCFA))
    assert memory == (range(0, 0x800_0000), range(0xFEC0_0000, 0xFEC0_1000))


# ------------------------------------------------------------------ behaviours and checks


def test_edu_behaviour_matches_qemu(open_adapter: list[QemuAdapter]) -> None:
    """Identification, liveness, factorial (the adapter waits for the worker thread), DMA registers,
    and the memory core's rules: 1/2-byte and unaligned pieces never reach edu and read zero."""
    a = _open(open_adapter, "edu")
    ops = [INIT, cw(0x10, 4, MEM), cw(0x04, 2, 0x2)]
    for offset in (0x00, 0x01, 0x02, 0x04, 0x06, 0x08, 0x20, 0x24, 0x80, 0x84, 0x98, 0x100, 0xFFFF8):
        ops += [mr(MEM + offset, w) for w in (1, 2, 4, 8)]
    ops += [
        mw(MEM + 0x04, 4, 0x1234_5678), mr(MEM + 0x04), mw(MEM + 0x08, 4, 12), mr(MEM + 0x08), mr(MEM + 0x20),
        mw(MEM + 0x08, 4, 40), mr(MEM + 0x08), mw(MEM + 0x04, 8, 0x7_0000_0005), mr(MEM + 0x04, 8),
        mw(MEM + 0x80, 8, 0x1122_3344_5566_7788), mr(MEM + 0x80, 8), mw(MEM + 0x84, 4, 5), mr(MEM + 0x84),
        mw(MEM + 0x98, 8, 0x5), mw(MEM + 0x80, 4, 9), mr(MEM + 0x80, 8), mr(MEM + 0x98, 8),
        mw(MEM + 0x03, 4, 0xFFFF_FFFF), mw(MEM + 0x06, 2, 0xABCD), mr(MEM + 0x04), mr(MEM + 0xFFFFE, 4),
    ]  # fmt: skip
    _agree(a, ops)


def test_pci_testdev_behaviour_matches_qemu(open_adapter: list[QemuAdapter]) -> None:
    """Test selection, header bytes, hit counts, and ioeventfds swallowing exact one-byte writes."""
    a = _open(open_adapter, "pci-testdev")
    ops = [INIT, cw(0x10, 4, MEM), cw(0x14, 4, PORTS), cw(0x04, 2, 0x3)]
    for test in range(3):
        ops += [mw(MEM, 1, test), *(mr(MEM + k, 1) for k in range(0, 40, 3)), mr(MEM + 8, 8)]
        ops += [
            mw(MEM + 2048 + test, 1, 0xFA),
            mw(MEM + 2048 + test, 1, 0xCE),
            mw(MEM + 2048, 4, 0xFAFA_FAFA),
        ]
        ops += [mr(MEM + 12), iow(PORTS, 1, test), *(ior(PORTS + k, 1) for k in range(0, 44, 5))]
        ops += [
            iow(PORTS + 131 + test, 1, 0xFA),
            iow(PORTS + 128, 4, 0xFAFA_FAFA),
            ior(PORTS + 12),
            mr(MEM + 12),
        ]
    ops += [mw(MEM, 4, 0x100), mr(MEM), mw(MEM, 1, 7), mr(MEM + 12), ior(PORTS, 4)]
    _agree(a, ops)


def test_argument_checks_match_the_model_in_order(open_adapter: list[QemuAdapter]) -> None:
    """R-ERR-002: the adapter rejects what the model rejects, with the same kind, before QEMU sees it."""
    a = _open(open_adapter, "e1000")
    bad = [
        cr(0x3C, 3), cr(0x3E, 4), cr(0x1000, 1), cr(-4, 4), cw(0x3C, 1, 0x100), cw(0x3C, 2, -1),
        Op(OpKind.CONFIG_READ, vm=2, bdf=DEV, address=0, width=3), Op(OpKind.CONFIG_READ, vm=-1, bdf=DEV),
        ior(0xFFFF, 2), ior(0xC000, 8), ior(0x1_0000, 1), iow(0xCF8, 4, 1 << 32), mr(MEM, 16),
        mr((1 << 64) - 2, 4), mr(-8, 8), mw(MEM, 1, 0x100), mw(MEM, 8, 1 << 64), mr((1 << 64) - 8, 8),
        Op(OpKind.SAVE, vm=1, bdf=Bdf(0, 5, 0), name="s"), Op(OpKind.RESTORE, vm=1, bdf=DEV, name="never"),
        Op(OpKind.RESTORE, vm=9, bdf=Bdf(0, 5, 0), name="never"), Op(OpKind.SAVE, vm=9, bdf=DEV, name="s"),
    ]  # fmt: skip
    model = ModelAdapter("model", a.info.profile, a.info.machine, operations=a.info.operations)
    for op in [INIT, *bad]:
        assert a.execute(op) == model.execute(op), op.to_json()
    assert a.execute(Op(OpKind.MMIO_READ, vm=1, address=MEM, width=4)) == Observation(value=0)


def test_config_access_is_ecam_and_leaves_0xcf8_alone(open_adapter: list[QemuAdapter]) -> None:
    a = _open(open_adapter, "edu")
    _agree(a, [INIT, iow(0xCF8, 4, 0x8000_2010), cr(0x00), cw(0x3C, 1, 0x5A), cr(0x3C, 1), ior(0xCF8),
               cr(0x00, 4, Bdf(0xFE, 0x1F, 7)), mr(0xB000_0000 + (DEV.packed << 12) + 0x3C, 1)])  # fmt: skip


def test_e1000_save_and_restore_through_migration(open_adapter: list[QemuAdapter]) -> None:
    """R-SR-001/R-SR-002: QMP migrate out, a new QEMU migrates in; 0xCF8 is the machine's, not the blob's.

    Process machines (``snapshots=False``): every save and restore goes through a migration file and a
    QEMU of its own (snapshot machines are tests/test_qemu_pipelining.py's)."""
    a = QemuAdapter(DeviceSpec.parse("e1000"), snapshots=False)
    open_adapter.append(a)
    save, restore = Op(OpKind.SAVE, vm=1, bdf=DEV, name="a"), Op(OpKind.RESTORE, vm=1, bdf=DEV, name="a")
    ops = [
        INIT, cw(0x14, 4, PORTS), cw(0x30, 4, MEM | 1), cw(0x04, 2, 0x3), cw(0x3C, 1, 0x0B), save, save,
        cw(0x3C, 1, 0x0C), cw(0x04, 2, 0), cw(0x14, 4, PORTS + 0x40), iow(0xCF8, 4, 0x8000_2004), restore,
        cr(0x3C, 1), cr(0x04), cr(0x14), ior(0xCF8), ior(0xCFC, 2), ior(PORTS), mr(MEM, 4), mr(MEM + 0x40, 8),
        restore, Op(OpKind.SAVE, vm=1, bdf=DEV, name="b"), cr(0x30),
    ]  # fmt: skip
    _agree(a, ops)
    assert a.starts >= 4  # init, the copy after each save, and each restore ran a QEMU of their own


# ------------------------------------------------------------------ crashes and cleanup


class _CrashingEdu(QemuAdapter):
    """edu whose QEMU 'crashes' (SIGSEGV) on one write, as a device model bug would."""

    TRIGGER = MEM + 0x40

    def _perform(self, guest: Guest, op: Op) -> Observation:
        if op.kind is OpKind.MMIO_WRITE and op.address == self.TRIGGER:
            os.kill(guest.qemu.pid, signal.SIGSEGV)
            guest.qemu.proc.wait()
        return super()._perform(guest, op)


def test_qemu_crash_is_a_finding_with_a_minimal_trace(open_adapter: list[QemuAdapter]) -> None:
    a = _CrashingEdu(DeviceSpec.parse("edu"))
    open_adapter.append(a)
    ops = [INIT, cw(0x10, 4, MEM), cr(0x10), cw(0x04, 2, 0x2), mr(MEM), cw(0x3C, 1, 3),
           mw(_CrashingEdu.TRIGGER, 4, 1), cr(0x00)]  # fmt: skip
    divergence = Differential(a).run(ops)
    assert divergence is not None
    assert divergence.index == 6
    assert divergence.crash is not None
    assert "SIGSEGV" in divergence.crash
    finding = minimise(a, ops[: divergence.index + 1], "case", None)
    assert [op.kind for op in finding.trace] == [OpKind.INIT, OpKind.MMIO_WRITE]
    assert a.execute(INIT) == Observation()
    assert a.execute(cr(0x00)) == Observation(value=0x11E8_1234)


def test_processes_die_with_the_python_process(tmp_path: Path) -> None:
    """Killed by pid at exit (atexit), and by the kernel when Python is SIGKILLed (parent-death signal)."""
    script = textwrap.dedent("""
        import os, signal, sys
        from vpcid.adapters.qemu import adapter
        from vpcid.conformance.trace import Op, OpKind
        a = adapter("edu")
        a.execute(Op(OpKind.INIT))
        print(a._current.pid, a._next.pid, flush=True)
        if sys.argv[1] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        sys.exit(0)  # no close(): the atexit hook must do it
    """)
    (tmp_path / "child.py").write_text(script)
    for how in ("exit", "kill"):
        child = subprocess.run([sys.executable, str(tmp_path / "child.py"), how], capture_output=True,
                               text=True, timeout=60, check=False)  # fmt: skip
        pids = [int(p) for p in child.stdout.split()]
        assert len(pids) == 2, child.stderr
        deadline = time.monotonic() + 10
        while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(p) for p in pids), (how, pids)


def test_interrupted_certification_kills_qemu(tmp_path: Path) -> None:
    """Ctrl-C in the middle of `vpcid certify`: the command's finally closes the adapter."""
    vpcid = Path(sys.executable).with_name("vpcid")
    proc = subprocess.Popen(
        [str(vpcid), "certify", "--adapter", "vpcid.adapters.qemu:adapter:edu", "--budget", "100000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    children: set[int] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(children) < 2:
        children |= _children(proc.pid)
        time.sleep(0.05)
    assert children, "certify started no QEMU"
    time.sleep(0.5)
    children |= _children(proc.pid)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(p) for p in children)


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    return out


def test_spawned_process_is_killed_by_pid() -> None:
    qemu = QemuProcess.spawn(["-machine", "q35", "-m", "16M"])
    try:
        assert qemu.pid in live_pids()
        qemu.connect()
        assert int(qemu.qtest(["inl 0xcf8"])[0].split()[1], 16) == 0
    finally:
        qemu.kill()
    assert qemu.pid not in live_pids()
    assert _gone(qemu.pid)


# ------------------------------------------------------------------ QEMU deviations, pinned


def _first_divergence(a: QemuAdapter, ops: list[Op]) -> Op | None:
    divergence = Differential(a).run(ops)
    return None if divergence is None else divergence.op


def test_variant_32bit_bar_ending_at_4gib_does_not_decode(open_adapter: list[QemuAdapter]) -> None:
    """R-DEC-006 (bar_at_top = unmapped, declared by QEMU's profile): pci_bar_address refuses a 32-bit
    BAR whose last byte is 0xffffffff.

    edu's 1 MiB BAR decodes at 0xffe00000 but not at 0xfff00000, whose range
    still lies below 4 GiB: the model in QEMU's profile observes the same.
    """
    a = _open(open_adapter, "edu")
    assert a.info.profile.bar_at_top.value == "unmapped"
    common = [INIT, cw(0x10, 4, 0xFFE0_0000), cw(0x04, 2, 0x2), mw(0xFFE0_0004, 4, 0x1234), mr(0xFFE0_0004)]
    assert _first_divergence(a, common) is None
    moved = [*common, cw(0x04, 2, 0), cw(0x10, 4, 0xFFF0_0000), cw(0x04, 2, 0x2), mr(0xFFF0_0004)]
    assert _first_divergence(a, moved) is None
    assert a.execute(mr(0xFFF0_0004)) == Observation(value=0)  # unmapped reads zero on QEMU


def _raw_msi_control(model: str, cap: int, writes: list[int]) -> list[int]:
    """Raw qtest, no model: write each value to MSI message control at ``cap + 2`` of ``model`` at
    00:04.0 of a q35 machine (ECAM), reading the control word back after each."""
    qemu = QemuProcess.spawn(["-machine", "q35", "-m", "16M", "-device", f"{model},addr=04.0"])
    try:
        qemu.connect()
        qemu.qtest(["outl 0xcf8 0x80000060", "outl 0xcfc 0xb0000001", "outl 0xcf8 0x0"])
        control = 0xB000_0000 + (DEV.packed << 12) + cap + 2
        replies = qemu.qtest([r for value in writes for r in (f"writew {control:#x} {value:#x}",
                                                               f"readw {control:#x}")])  # fmt: skip
        return [int(line.split()[1], 16) for line in replies[1::2]]
    finally:
        qemu.kill()


@pytest.mark.req("R-DT-008")
def test_qemu_clamps_msi_multiple_message_enable_while_enabled() -> None:
    """QEMU's msi_write_config: Multiple Message Enable (control bits 6:4) is writable, and a write that
    touches the capability while MSI is enabled clamps it to Multiple Message Capable (bits 3:1).

    edu (one vector, capable 0) and nec-usb-xhci (16 vectors, capable 4), through raw qtest.
    """
    # edu, MSI at 0x40: MME 6 kept while disabled (0x60), clamped to 0 once enabled (0x01)
    assert _raw_msi_control("edu", 0x40, [0x0060, 0x0061, 0x0060, 0x0070, 0x0001]) == [
        0x0080 | 0x60, 0x0080 | 0x01, 0x0080 | 0x60, 0x0080 | 0x70, 0x0080 | 0x01,
    ]  # fmt: skip
    # nec-usb-xhci, MSI at 0x70 (capable 4 = 16 vectors): MME 7 clamped to 4, MME 3 kept, enabled or not
    assert _raw_msi_control("nec-usb-xhci", 0x70, [0x0071, 0x0031, 0x0070, 0x0000]) == [
        0x0088 | 0x41, 0x0088 | 0x31, 0x0088 | 0x70, 0x0088,
    ]  # fmt: skip


@pytest.mark.req("R-DT-008", "R-CFG-008")
def test_edu_msi_control_follows_the_discovered_clamp(open_adapter: list[QemuAdapter]) -> None:
    """The discovered type declares MME writable with msi-mme-clamp, so the model predicts QEMU on every
    sequence of the raw test above (the former R-CFG-008 finding on edu's MSI control bits 6:4 is gone)."""
    a = _open(open_adapter, "edu")
    assert a.discovery.dtype.config_behaviour is not None
    for values in ([0x0061], [0x0060], [0x0060, 0x0061], [0x0070, 0x0001, 0x0000], [0x0071, 0x0060]):
        ops = [INIT]
        for value in values:
            ops += [cw(0x42, 2, value), cr(0x40), cr(0x42, 1)]
        assert _first_divergence(a, ops) is None, values


def test_deviation_system_reset_keeps_cf8_and_edu_registers(open_adapter: list[QemuAdapter]) -> None:
    """R-RST-003 (with vpcid-reset=on): QMP system_reset leaves 0xCF8 as it was, and edu, which has
    no reset handler, keeps its registers; configuration space is reset as specified."""
    a = _open(open_adapter, "edu,vpcid-reset=on")
    reset = Op(OpKind.RESET_VM, vm=1)
    setup = [INIT, cw(0x10, 4, MEM), cw(0x04, 2, 0x2), mw(MEM + 4, 4, 0x1234)]
    assert _first_divergence(a, [*setup, iow(0xCF8, 4, 0x8000_2010), reset, cr(0x04), cr(0x10)]) is None
    assert _first_divergence(a, [*setup, iow(0xCF8, 4, 0x8000_2010), reset, ior(0xCF8)]) == ior(0xCF8)
    edu_after_reset = [*setup, reset, cw(0x10, 4, MEM), cw(0x04, 2, 0x2), mr(MEM + 4)]
    assert _first_divergence(a, edu_after_reset) == mr(MEM + 4)


def test_variant_cf8_low_bits_select_bytes(open_adapter: list[QemuAdapter]) -> None:
    """R-CAM-004 (cf8_low_bits = offset, declared by QEMU's profile): bits 1:0 of 0xCF8 are ORed into
    the register offset, as the model in that profile does."""
    a = _open(open_adapter, "pci-testdev")
    assert a.info.profile.cf8_low_bits.value == "offset"
    assert _first_divergence(a, [INIT, iow(0xCF8, 4, 0x8000_2000), ior(0xCFC), ior(0xCFE, 2)]) is None
    assert _first_divergence(a, [INIT, iow(0xCF8, 4, 0x8000_2001), ior(0xCFC), ior(0xCFE, 2)]) is None
    assert a.execute(ior(0xCFC)) == Observation(value=0x0000_051B)  # bytes 1-4: 1b 05 00 00


def test_variant_sub_dword_reads_of_cf8(open_adapter: list[QemuAdapter]) -> None:
    """R-CAM-001 (cf8_narrow = read-address, declared by QEMU's profile): 1- and 2-byte reads of 0xCF8,
    0xCFA and 0xCFB return CONFIG_ADDRESS's low bytes; 0xCF9 is the reset control register (R-CAM-008)."""
    a = _open(open_adapter, "pci-testdev")
    assert a.execute(INIT) == Observation()
    assert a.execute(iow(0xCF8, 4, 0x8000_2034)) == Observation()
    assert [a.execute(ior(0xCF8 + k, 1)).value for k in (0, 2, 3)] == [0x34, 0x34, 0x34]
    assert a.execute(ior(0xCFA, 2)) == Observation(value=0x2034)
    assert a.execute(ior(0xCF9, 1)) == Observation(value=0)
    narrow = [INIT, iow(0xCF8, 4, 0x8000_2034), ior(0xCF8, 1), ior(0xCF8, 2), ior(0xCFB, 1), ior(0xCF9, 1)]
    assert (
        _first_divergence(a, [*narrow, iow(0xCF9, 1, 0x02), ior(0xCF9, 1), iow(0xCFA, 2, 0), ior(0xCF8)])
        is None
    )
