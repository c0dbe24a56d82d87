"""Bridges under KVM: a real vCPU numbers the buses, opens the windows and reaches the functions below
bridges through 0xCF8/0xCFC, ECAM, I/O and MMIO, compared with the model (R-BRG-*).

The KVM adapter performs every configuration, I/O and MMIO operation with
guest instructions, so the configuration writes that program bus numbers,
windows, command bits and bridge control are made by the guest, as firmware
makes them; the data manager behind it (the model, or the Cython backend for
``kvm+cython``) routes what the guest's exits carry. The suite's bridge cases
and random trees of bridges run on both, against the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cython_bridges import LEAF, TYPES, firmware_tree, operations, tree_operations
from vpcid.adapters.base import AdapterUnavailable
from vpcid.adapters.kvm import KvmAdapter, adapter, adapter_cython, kvmapi
from vpcid.conformance.certify import applicable_cases
from vpcid.conformance.engine import Differential
from vpcid.conformance.trace import Op, OpKind, define_type_op
from vpcid.conformance.typefile import type_json
from vpcid.model import Bdf, DataManager, Profile

REASON = kvmapi.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"KVM unavailable: {REASON}")

VM = 1


@pytest.fixture(params=["kvm", "kvm+cython"])
def kvm(request: pytest.FixtureRequest) -> Iterator[KvmAdapter]:
    """The KVM adapter over the model's data manager, then over the Cython backend's."""
    try:
        impl = adapter(None) if request.param == "kvm" else adapter_cython(None)
    except AdapterUnavailable as exc:
        pytest.skip(f"{request.param} unavailable: {exc}")
    try:
        yield impl
    finally:
        impl.close()


def trace(ops: list[tuple[Any, ...]]) -> list[Op]:
    """The trace of :mod:`test_cython_bridges` operations: the types defined, a VM, the operations (a
    ``tables`` observation after each that changes state), with save/restore through named slots."""
    out = [Op(OpKind.INIT)]
    out += [define_type_op(type_json(dtype)) for dtype in dict.fromkeys(TYPES) if dtype.name != "edu"]
    out.append(Op(OpKind.CREATE_VM, VM))
    for kind, *args in ops:
        if kind == "plug":
            out.append(Op(OpKind.PLUG, VM, args[0], name=TYPES[args[1]].name))
        elif kind in ("unplug", "reset"):
            out.append(Op(OpKind(kind), VM, args[0]))
        elif kind in ("config_read", "config_write"):
            out.append(Op(OpKind(kind), VM, args[0], *args[1:]))
        elif kind in ("io_read", "io_write", "mmio_read", "mmio_write"):
            out.append(Op(OpKind(kind), VM, None, *args))
        elif kind == "reset_vm":
            out.append(Op(OpKind.RESET_VM, VM))
        elif kind == "save_restore":
            out += [Op(OpKind.SAVE, VM, args[0], name="s"), Op(OpKind.RESTORE, VM, args[1], name="s")]
        elif kind == "snapshot_restore":
            out += [Op(OpKind.SNAPSHOT, VM, name="v"), Op(OpKind.RESTORE_VM, VM, name="v")]
        if kind not in ("config_read", "io_read", "mmio_read", "resolve"):
            out.append(Op(OpKind.TABLES, VM))
    return out


def test_the_suites_bridge_cases_run_alike_under_kvm(kvm: KvmAdapter) -> None:
    """Every case of the ``bridges`` group gives the model's observations, its accesses made by the
    guest (R-BRG-001..R-BRG-010)."""
    cases = [case for case in applicable_cases(kvm.info) if case[1].group == "bridges"]
    assert any(label.startswith("bridges/bridge-topology") for label, _, _ in cases)  # R-BRG-010 answered
    for label, _, ops in cases:
        divergence = Differential(kvm).run(ops)
        assert divergence is None, f"{label}: {divergence}"
    assert kvm.stats["guests created"] >= 1  # a guest ran them


def test_a_tree_enumerated_by_the_guest_routes_and_forwards(kvm: KvmAdapter) -> None:
    """The guest numbers a root port, a switch and a pci-bridge three levels deep and opens their
    windows; then reaches the two functions below them by 0xCF8/0xCFC, I/O and MMIO (R-BRG-003,
    R-BRG-006), resets the downstream port's bus (R-BRG-007) and narrows the switch's range."""
    probes: list[tuple[Any, ...]] = [
        ("config_read", Bdf(3, 0, 0), 0, 4), ("config_read", Bdf(4, 2, 0), 0, 4),
        ("mmio_write", 0xC000_0010, 4, 0xAB), ("mmio_read", 0xC000_0010, 4), ("mmio_read", 0xC020_0000, 8),
        ("io_write", 0x1004, 1, 0x5A), ("io_read", 0x1004, 1), ("io_read", 0x2000, 4),
        ("config_write", Bdf(2, 0, 0), 0x3E, 2, 0x40), ("config_read", Bdf(3, 0, 0), 0x14, 4),
        ("config_write", Bdf(1, 0, 0), 0x1A, 1, 2), ("config_read", Bdf(4, 2, 0), 0, 4),
        ("snapshot_restore",), ("reset", Bdf(0, 1, 0)), ("config_read", Bdf(1, 0, 0), 0, 4),
    ]  # fmt: skip
    ops = trace(firmware_tree() + probes)
    assert Differential(kvm).run(ops) is None
    config_writes = sum(1 for op in ops if op.kind is OpKind.CONFIG_WRITE)
    assert config_writes >= 20  # bus numbers, windows and command bits, all by guest instructions


class PortLog(DataManager):
    """The model, logging the port writes the guest's exits dispatch into it."""

    def __init__(self, profile: Profile = Profile()) -> None:  # noqa: B008 - immutable
        super().__init__(profile)
        self.writes: list[tuple[int, int, int]] = []

    def io_write(self, vm_id: int, port: int, width: int, value: int) -> None:
        self.writes.append((port, width, value))
        super().io_write(vm_id, port, width, value)


def test_the_guest_programs_the_bridges_through_0xcf8() -> None:
    """Bus numbers and windows are written by guest ``out`` instructions through 0xCF8/0xCFC, and a
    function below the bridges is selected by the bus number they route to it (R-BRG-003)."""
    managers: list[PortLog] = []

    def factory(profile: Profile) -> DataManager:
        managers.append(PortLog(profile))
        return managers[-1]

    impl = KvmAdapter("kvm-port-log", None, factory)
    try:
        assert Differential(impl).run(trace(firmware_tree())) is None
        writes = managers[-1].writes
        assert (0xCF8, 4, 0x8000_0818) in writes  # 00:01.0 register 0x18: its bus numbers
        assert (0xCFC, 4, 0x040100) in writes
        assert (0xCF8, 4, 0x8001_0018) in writes  # 01:00.0, reached by the number just routed
        assert (0xCF8, 4, 0x8003_0014) in writes  # 03:00.0, three bridges down: its BAR1
        read = Op(OpKind.CONFIG_READ, VM, Bdf(4, 2, 0), 0, 4)
        assert impl.execute(read).value == LEAF.vendor_id | LEAF.device_id << 16
        assert writes[-2] == (0xCF8, 4, 0x8004_1000)
    finally:
        impl.close()


KVM_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


@pytest.mark.req("R-BRG-003")
@pytest.mark.req("R-BRG-006")
@KVM_SETTINGS
@given(ops=st.lists(tree_operations, min_size=10, max_size=50), flat=st.lists(operations, max_size=20))
def test_random_bridge_traces_under_kvm_match_the_model(
    ops: list[tuple[Any, ...]], flat: list[tuple[Any, ...]]
) -> None:
    """Random operations on a tree the guest enumerated, then on trees grown at random (bridges plugged
    below bridges, numbered and windowed by random writes), under both data managers."""
    for make in (adapter, adapter_cython):
        try:
            impl = make(None)
        except AdapterUnavailable:
            continue
        try:
            divergence = Differential(impl).run(trace(firmware_tree() + ops + flat))
            assert divergence is None, str(divergence)
        finally:
            impl.close()


@pytest.mark.req("R-BRG-006")
@pytest.mark.req("R-BRG-011")
def test_isa_and_windows_variants_under_kvm() -> None:
    """The V-BRIDGE-ISA and V-BRIDGE-WINDOWS alternatives give the model's observations in that profile."""
    isa = [("config_write", Bdf(2, 0, 0), 0x1C, 2, 0x1010), ("config_write", Bdf(3, 0, 0), 0x10, 4, 0x1400),
           ("io_write", 0x1400, 1, 7), ("config_write", Bdf(2, 0, 0), 0x3E, 2, 0x04), ("io_read", 0x1400, 1),
           ("config_write", Bdf(2, 0, 0), 0x20, 4, 0), ("mmio_read", 0xC000_0010, 4)]  # fmt: skip
    for mapping in ({"bridge_isa": "ignored"}, {"bridge_windows": "ignored"}, {}):
        impl = KvmAdapter("kvm", Profile.from_mapping(mapping))
        try:
            assert Differential(impl).run(trace(firmware_tree() + isa)) is None, mapping
        finally:
            impl.close()
