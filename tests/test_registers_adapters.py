"""Register maps run unchanged wherever Python BAR behaviours run: the Cython backend, the KVM adapter
(a real vCPU performs the accesses) and the vfio-user server (a separate process, the type from a
device-type file). Each is compared with the model on a trace that exercises every class, side effect,
partial and wide access, reset and save/restore, and by the random engine aimed at the registers."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from vpcid.adapters import cython as backend
from vpcid.adapters.base import Adapter
from vpcid.adapters.kvm import kvmapi
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.engine import Differential, accepts_register_layout, run_random
from vpcid.conformance.trace import Op, OpKind, define_type_op
from vpcid.conformance.typefile import type_json, write_type_file
from vpcid.model import Bdf
from vpcid.model.catalog import REGISTER_SINK
from vpcid.model.registers import RegisterMap

FN = Bdf(0, 6, 0)
BAR0, BAR1 = 0xD000_0000, 0x8000
KVM_REASON = kvmapi.unavailable_reason()


def accesses(vm: int, bdf: Bdf) -> list[Op]:
    """Guest accesses to register-sink at ``bdf``: BARs placed and decoding, then every kind of access."""

    def cfg(offset: int, width: int, value: int) -> Op:
        return Op(OpKind.CONFIG_WRITE, vm=vm, bdf=bdf, address=offset, width=width, value=value)

    def mmio(offset: int, width: int, value: int | None = None) -> Op:
        kind = OpKind.MMIO_READ if value is None else OpKind.MMIO_WRITE
        return Op(kind, vm=vm, address=BAR0 + offset, width=width, value=value or 0)

    def io(offset: int, width: int, value: int | None = None) -> Op:
        kind = OpKind.IO_READ if value is None else OpKind.IO_WRITE
        return Op(kind, vm=vm, address=BAR1 + offset, width=width, value=value or 0)

    return [
        cfg(0x10, 4, BAR0), cfg(0x14, 4, BAR1), cfg(0x04, 2, 0x3),
        mmio(0x000, 8), mmio(0x000, 4, 0xFFFF_FFFF), mmio(0x000, 4),                     # RO, a gap
        mmio(0x010, 4, 0xFFFF_FFFD), mmio(0x014, 4), mmio(0x010, 4, 0x2), mmio(0x014, 4),  # effects
        mmio(0x014, 1, 0x20), mmio(0x014, 4),                                           # RW1C
        mmio(0x018, 8, 0x0000_0003_0000_00F0), mmio(0x018, 8),                          # RW1S, RW1C
        mmio(0x024, 2, 0x0204), mmio(0x020, 1), mmio(0x020, 4), mmio(0x020, 4),         # WO, RC
        mmio(0xFF8, 4, 0), mmio(0x020, 2), mmio(0x029, 2, 0x00FF), mmio(0x028, 4),     # partial
        mmio(0x033, 4, 0xFFFF_FFFF), mmio(0x030, 8), mmio(0xFFE, 2, 0x1234), mmio(0xFF8, 8),
        io(0x00, 4, 0xFFFF_FFFF), io(0x00, 4), io(0x10, 4, 1), io(0x02, 1), io(0x08, 4, 7), io(0x0C, 4),
        Op(OpKind.SAVE, vm=vm, bdf=bdf, name="regs"), Op(OpKind.RESET, vm=vm, bdf=bdf),
        cfg(0x10, 4, BAR0), cfg(0x04, 2, 0x2), mmio(0x028, 4), mmio(0x020, 4),          # reset values
        Op(OpKind.RESTORE, vm=vm, bdf=bdf, name="regs"), mmio(0x028, 4), mmio(0x018, 8),
    ]  # fmt: skip


def full_api_trace() -> list[Op]:
    return [
        Op(OpKind.INIT), define_type_op(type_json(REGISTER_SINK)), Op(OpKind.CREATE_VM, vm=1),
        Op(OpKind.PLUG, vm=1, bdf=FN, name=REGISTER_SINK.name), *accesses(1, FN),
    ]  # fmt: skip


def check_full_api(impl: Adapter) -> None:
    ops = full_api_trace()
    assert Differential(impl).run(ops) is None
    model = ModelAdapter()
    reads = [value for op in ops if (value := model.execute(op).value) is not None]
    assert reads[2:5] == [0xA1, 0xA0, 0x80]  # CTRL's side effects on STATUS, then RW1C
    assert reads[6:10] == [0x07, 0x200, 0, 0x100]  # ICS and DOORBELL set ICR bits, reads clear them
    assert accepts_register_layout(impl)
    executed, findings = run_random(impl, 4000, 7)
    assert executed >= 4000
    assert not findings, findings[0].divergence.describe()


@pytest.mark.req("R-REG-002", "R-REG-006", "R-REG-008", "R-REG-009", "R-REG-010", "R-REG-011")
@pytest.mark.skipif(not backend.available(), reason=backend.UNAVAILABLE_REASON or "")
def test_the_cython_backend_runs_register_maps() -> None:
    check_full_api(backend.CythonAdapter())


@pytest.mark.req("R-REG-002", "R-REG-006", "R-REG-008", "R-REG-009", "R-REG-010", "R-REG-011")
@pytest.mark.skipif(KVM_REASON is not None, reason=f"KVM unavailable: {KVM_REASON}")
def test_the_kvm_adapter_runs_register_maps() -> None:
    from vpcid.adapters.kvm import adapter

    impl = adapter(None)
    try:
        check_full_api(impl)
    finally:
        impl.close()


@pytest.fixture
def register_server(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """``vpcid serve vfio-user`` in its own process, serving register-sink read from a type file."""
    types = tmp_path / "sink.json"
    write_type_file(types, [REGISTER_SINK])
    socket = tmp_path / "sink.sock"
    command = [sys.executable, "-m", "vpcid.conformance.serve", "vfio-user", "--socket", str(socket),
               "--types", str(types), "--type", REGISTER_SINK.name]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        assert line == "ready\n", f"server did not start: {line!r}"
        yield socket, types
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)


@pytest.mark.req("R-REG-002", "R-REG-006", "R-REG-008", "R-REG-009", "R-REG-010")
def test_the_vfio_user_server_serves_register_maps(register_server: tuple[Path, Path]) -> None:
    from vpcid.adapters.vfio_user.adapter import adapter

    socket, types = register_server
    vmm = adapter(f"{socket}@{types}")
    try:
        assert vmm.info.machine is not None
        ((bdf, dtype),) = vmm.info.machine.devices
        assert isinstance(dtype.behaviour, RegisterMap)
        assert dtype.fingerprint() == REGISTER_SINK.fingerprint()
        guest = [
            Op(OpKind.INIT),
            *(op for op in accesses(vmm.info.machine.vm, bdf) if op.kind in vmm.info.operations),
        ]
        assert Differential(vmm).run(guest) is None
        executed, findings = run_random(vmm, 3000, 3)
        assert executed >= 3000
        assert not findings, findings[0].divergence.describe()
    finally:
        vmm.close()


@pytest.mark.req("R-REG-001")
def test_what_the_engine_exercises_depends_on_register_maps_in_the_run() -> None:
    from vpcid.adapters.base import FixedMachine
    from vpcid.conformance.devices import SUITE_TYPES
    from vpcid.conformance.engine import REGISTER_RULES, exercised_register_rules
    from vpcid.conformance.trace import GUEST_VIEW

    assert exercised_register_rules(ModelAdapter()) == REGISTER_RULES
    fixed = FixedMachine(1, ((FN, REGISTER_SINK),))
    guest = exercised_register_rules(ModelAdapter("fixed", machine=fixed, operations=GUEST_VIEW))
    assert guest == tuple(rid for rid in REGISTER_RULES if rid != "R-REG-011")
    plain = FixedMachine(1, ((FN, SUITE_TYPES["e1000"]),))
    assert exercised_register_rules(ModelAdapter("plain", machine=plain, operations=GUEST_VIEW)) == ()
