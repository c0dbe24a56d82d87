"""The KVM adapter on a real /dev/kvm: instructions, exits, dispatch, errors, faults, file descriptors."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from vpcid.adapters.base import AdapterUnavailable
from vpcid.adapters.kvm import GuestError, KvmAdapter, adapter, adapter_cython, kvmapi
from vpcid.adapters.kvm import guest as g
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.engine import Differential
from vpcid.conformance.trace import OK, Observation, Op, OpKind
from vpcid.model import Bdf, DataManager, Profile

adapter_module = importlib.import_module("vpcid.adapters.kvm.adapter")
REASON = kvmapi.unavailable_reason()
needs_kvm = pytest.mark.skipif(REASON is not None, reason=f"KVM unavailable: {REASON}")

NIC, SINK = Bdf(0, 2, 0), Bdf(0, 3, 0)
BAR0, IO_BAR = 0xFEBC_0000, 0xC000


class Recording(DataManager):
    """The model, logging every access the exits dispatch into it."""

    log: list[tuple[Any, ...]]

    def __init__(self, profile: Profile = Profile()) -> None:  # noqa: B008 - immutable
        super().__init__(profile)
        self.log = []

    def io_read(self, vm_id: int, port: int, width: int) -> int:
        self.log.append(("io_read", port, width))
        return super().io_read(vm_id, port, width)

    def io_write(self, vm_id: int, port: int, width: int, value: int) -> None:
        self.log.append(("io_write", port, width, value))
        super().io_write(vm_id, port, width, value)

    def mmio_read(self, vm_id: int, address: int, width: int) -> int:
        self.log.append(("mmio_read", address, width))
        return super().mmio_read(vm_id, address, width)

    def mmio_write(self, vm_id: int, address: int, width: int, value: int) -> None:
        self.log.append(("mmio_write", address, width, value))
        super().mmio_write(vm_id, address, width, value)

    def config_read(self, vm_id: int, bdf: Bdf, offset: int, width: int) -> int:
        self.log.append(("config_read", str(bdf), offset, width))
        return super().config_read(vm_id, bdf, offset, width)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def setup_ops(vm: int = 1) -> list[Op]:
    """A VM with an e1000 (BAR0 at 0xfebc0000, I/O BAR at 0xc000) and a kitchen-sink, decoding."""
    return [
        Op(OpKind.INIT),
        Op(OpKind.CREATE_VM, vm=vm),
        Op(OpKind.PLUG, vm=vm, bdf=NIC, name="e1000"),
        Op(OpKind.PLUG, vm=vm, bdf=SINK, name="kitchen-sink"),
        Op(OpKind.CONFIG_WRITE, vm=vm, bdf=NIC, address=0x10, width=4, value=BAR0),
        Op(OpKind.CONFIG_WRITE, vm=vm, bdf=NIC, address=0x14, width=4, value=IO_BAR),
        Op(OpKind.CONFIG_WRITE, vm=vm, bdf=NIC, address=0x04, width=2, value=0x3),
    ]


@pytest.fixture
def kvm() -> Iterator[KvmAdapter]:
    instance = adapter(None)
    yield instance
    instance.close()


@pytest.fixture
def recording() -> Iterator[tuple[KvmAdapter, list[tuple[Any, ...]]]]:
    """The KVM adapter over a recording model after ``setup_ops()``, and the model's log, emptied."""
    managers: list[Recording] = []

    def factory(profile: Profile) -> DataManager:
        managers.append(Recording(profile))
        return managers[-1]

    instance = KvmAdapter("kvm-recording", None, factory)
    run(instance, setup_ops())
    log = managers[-1].log
    log.clear()
    yield instance, log
    instance.close()


def run(impl: KvmAdapter, ops: list[Op]) -> list[Observation]:
    return [impl.execute(op) for op in ops]


def agree(impl: KvmAdapter, ops: list[Op]) -> None:
    """Every observation equals the model's (in the adapter's profile)."""
    divergence = Differential(impl).run(ops)
    assert divergence is None, divergence.describe()


# ------------------------------------------------------------------ availability
def test_unavailable_reason_names_a_missing_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kvmapi, "KVM_PATH", "/nonexistent/kvm")
    reason = kvmapi.unavailable_reason()
    assert reason is not None
    assert "/nonexistent/kvm" in reason
    assert "\n" not in reason


def test_without_kvm_the_factory_reports_unavailable_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adapter_module, "unavailable_reason", lambda: "/dev/kvm does not exist (no KVM here)")
    with pytest.raises(AdapterUnavailable, match="no KVM here"):
        adapter(None)


def test_kvm_plus_cython_reports_unavailable_when_the_backend_does_not_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "vpcid.adapters.cython", None)  # import fails
    with pytest.raises(AdapterUnavailable, match="Cython backend is not importable"):
        adapter_cython(None)


def test_bad_factory_arguments_are_reported() -> None:
    with pytest.raises(AdapterUnavailable, match="unknown argument"):
        adapter("cpl=1")


def test_struct_layouts_and_ioctl_numbers_match_the_kernel_abi() -> None:
    import ctypes

    assert ctypes.sizeof(kvmapi.KvmRegs) == 144
    assert ctypes.sizeof(kvmapi.KvmSregs) == 312
    assert ctypes.sizeof(kvmapi.KvmUserspaceMemoryRegion) == 32
    assert ctypes.sizeof(kvmapi.KvmCpuidEntry2) == 40
    assert ctypes.sizeof(kvmapi.KvmVcpuEvents) == 64
    assert kvmapi.KVM_RUN == 0xAE80
    assert kvmapi.KVM_SET_USER_MEMORY_REGION == 0x4020AE46
    assert kvmapi.KVM_GET_SREGS == 0x8138AE83
    assert kvmapi.KVM_SET_REGS == 0x4090AE82
    assert kvmapi.KVM_SET_CPUID2 == 0x4008AE90
    assert kvmapi.KVM_GET_SUPPORTED_CPUID == 0xC008AE05


# ------------------------------------------------------------------ instructions and dispatch
@needs_kvm
def test_every_guest_operation_matches_the_model(kvm: KvmAdapter) -> None:
    ops = setup_ops()
    for width in (1, 2, 4, 8):
        for offset in (0, 1, 3, 6, 0xFFE, 0x1FFFC):
            address = BAR0 + offset
            value = (0x1122334455667788 >> (64 - 8 * width)) if width < 8 else 0x1122334455667788
            ops += [
                Op(OpKind.MMIO_WRITE, vm=1, address=address, width=width, value=value),
                Op(OpKind.MMIO_READ, vm=1, address=address, width=width),
            ]
    for width in (1, 2, 4):
        for port in (IO_BAR, IO_BAR + 1, IO_BAR + 0x3E, 0xCF8, 0xCFB, 0xCFD, 0xFFFF + 1 - width):
            ops += [
                Op(OpKind.IO_WRITE, vm=1, address=port, width=width, value=0xA5),
                Op(OpKind.IO_READ, vm=1, address=port, width=width),
            ]
        for offset in (0, 2, 3, 0x3C, 0x40, 0xFE, 0x100, 0x102, 0xFFC):
            if offset % 4 + width <= 4:
                ops += [
                    Op(OpKind.CONFIG_READ, vm=1, bdf=SINK, address=offset, width=width),
                    Op(OpKind.CONFIG_WRITE, vm=1, bdf=SINK, address=offset, width=width, value=0x5A),
                    Op(OpKind.CONFIG_READ, vm=1, bdf=Bdf(9, 9, 1), address=offset, width=width),
                ]
    agree(kvm, ops)


@needs_kvm
def test_a_configuration_read_is_four_port_accesses_through_0xcf8(
    recording: tuple[KvmAdapter, list[tuple[Any, ...]]],
) -> None:
    impl, log = recording
    assert impl.execute(Op(OpKind.CONFIG_READ, vm=1, bdf=NIC, address=0x02, width=2)) == Observation(
        value=0x100E
    )
    assert log == [
        ("io_read", 0xCF8, 4),
        ("io_write", 0xCF8, 4, 0x8000_1000),
        ("io_read", 0xCFE, 2),
        ("io_write", 0xCF8, 4, 0),
    ]
    log.clear()
    impl.execute(Op(OpKind.CONFIG_READ, vm=1, bdf=NIC, address=0x104, width=1))
    assert log == [("config_read", "00:02.0", 0x104, 1)]  # the configuration window
    assert impl.stats["configuration window"] == 1


@needs_kvm
def test_mmio_accesses_are_single_instructions_of_the_op_width(
    recording: tuple[KvmAdapter, list[tuple[Any, ...]]],
) -> None:
    impl, log = recording
    impl.execute(Op(OpKind.MMIO_WRITE, vm=1, address=BAR0 + 0x11, width=8, value=0x0807060504030201))
    assert impl.execute(Op(OpKind.MMIO_READ, vm=1, address=BAR0 + 0x13, width=2)) == Observation(value=0x0403)
    assert impl.execute(Op(OpKind.IO_READ, vm=1, address=0x80, width=1)) == Observation(value=0xFF)
    assert log == [
        ("mmio_write", BAR0 + 0x11, 8, 0x0807060504030201),
        ("mmio_read", BAR0 + 0x13, 2),
        ("io_read", 0x80, 1),
    ]


@needs_kvm
def test_page_crossing_accesses_are_reassembled_into_one_access(
    recording: tuple[KvmAdapter, list[tuple[Any, ...]]],
) -> None:
    impl, log = recording
    address = BAR0 + 0xFFD
    impl.execute(Op(OpKind.MMIO_WRITE, vm=1, address=address, width=8, value=0x1122334455667788))
    assert impl.execute(Op(OpKind.MMIO_READ, vm=1, address=address, width=8)) == Observation(
        value=0x1122334455667788
    )
    assert log == [("mmio_write", address, 8, 0x1122334455667788), ("mmio_read", address, 8)]
    assert impl.stats["split accesses"] >= 1


@needs_kvm
def test_unreachable_and_private_addresses_go_through_the_aperture(kvm: KvmAdapter) -> None:
    private = kvm.layout.base
    ops = [
        *setup_ops(),
        Op(OpKind.CREATE_VM, vm=2, ecam_base=(1 << 64) - (256 << 20)),
        Op(OpKind.PLUG, vm=2, bdf=Bdf(0xFF, 0x1F, 7), name="nvme"),
    ]
    for address in (
        (1 << 64) - 8,
        (1 << 64) - 3,
        kvm.layout.reach - 4,
        private,
        private + g.DOORBELL,
        private + g.CONFIG_WINDOW + 0x2000,
        (1 << 64) - (256 << 20) + 0x0FFF_F000 - 2,
    ):
        for vm in (1, 2):
            ops += [
                Op(OpKind.MMIO_WRITE, vm=vm, address=address, width=2, value=0x1234),
                Op(OpKind.MMIO_READ, vm=vm, address=address, width=2),
            ]
    agree(kvm, ops)
    assert kvm.stats["aperture"] == 24  # all but reach - 4, which paging reaches


@pytest.mark.parametrize(
    "manifest",
    [
        {"alignment": "natural", "straddle": "reject"},
        {"cf8_extended": "extends", "cf8_after_access": "clear", "cf8_low_bits": "latched"},
        {"straddle": "start-address", "unmapped_mmio_read": "zeros"},
    ],
    ids=["natural-reject", "cf8-variants", "start-address"],
)
@needs_kvm
def test_profiles_reach_the_data_manager_and_errors_of_exits_become_observations(
    manifest: dict[str, str],
) -> None:
    impl = KvmAdapter("kvm", Profile.from_mapping(manifest))
    try:
        ops = setup_ops()
        for address in (BAR0 + 1, BAR0 + 0x1FFFE, BAR0 + 0xFFC, BAR0 - 2):
            for width in (2, 4, 8):
                ops += [
                    Op(OpKind.MMIO_WRITE, vm=1, address=address, width=width, value=3),
                    Op(OpKind.MMIO_READ, vm=1, address=address, width=width),
                ]
        for port in (IO_BAR + 1, 0xCFD, 0xCF9):
            ops += [Op(OpKind.IO_READ, vm=1, address=port, width=2)]
        for offset in (0x101, 0x3D, 0x2):
            ops += [
                Op(OpKind.CONFIG_READ, vm=1, bdf=NIC, address=offset, width=2),
                Op(OpKind.IO_READ, vm=1, address=0xCF8, width=4),
            ]
        agree(impl, ops)
        if manifest.get("alignment") == "natural":
            assert impl.execute(Op(OpKind.IO_READ, vm=1, address=IO_BAR + 1, width=2)) == Observation(
                error="misaligned"
            )
    finally:
        impl.close()


@needs_kvm
def test_arguments_no_instruction_can_express_get_the_models_error_kinds(kvm: KvmAdapter) -> None:
    ops = setup_ops()
    for kind in (OpKind.MMIO_READ, OpKind.MMIO_WRITE, OpKind.IO_READ, OpKind.IO_WRITE):
        for vm in (1, 7, -1, 1 << 32):
            for width in (0, 1, 3, 4, 8, 16):
                for address in (-1, 0, 0xFFFF, 0x10000, (1 << 64) - 2, 1 << 64):
                    for value in (0, -1, 1 << 32):
                        ops.append(Op(kind, vm=vm, address=address, width=width, value=value))
    for kind in (OpKind.CONFIG_READ, OpKind.CONFIG_WRITE):
        for width in (0, 1, 2, 3, 4):
            for offset in (-1, 3, 0xFFE, 0x1000):
                ops.append(Op(kind, vm=1, bdf=NIC, address=offset, width=width, value=1 << 16))
    agree(kvm, ops)
    natural = KvmAdapter("kvm", Profile.from_mapping({"alignment": "natural"}))
    try:
        agree(natural, ops)
    finally:
        natural.close()


# ------------------------------------------------------------------ faults and exits
@needs_kvm
def test_a_guest_fault_ends_the_operation_clearly_and_the_vm_goes_on(kvm: KvmAdapter) -> None:
    run(kvm, setup_ops())
    ud2 = b"\x0f\x0b"
    with pytest.raises(GuestError, match=r"#UD \(vector 6"):
        kvm.run_code(1, ud2)
    unmapped = 0x7000_0000_0000 if kvm.layout.reach <= 0x7000_0000_0000 else None
    if unmapped is not None:
        code = g.assemble([g.load(4, unmapped)], g.body_va(kvm.layout))
        with pytest.raises(GuestError, match=r"#PF \(vector 14.*address 0x700000000000"):
            kvm.run_code(1, code)
    with pytest.raises(GuestError, match="executed hlt"):
        kvm.run_code(1, b"\xf4")
    assert kvm.execute(Op(OpKind.MMIO_READ, vm=1, address=BAR0, width=4)) == Observation(value=0)
    assert kvm.stats["guest faults"] >= 1
    assert kvm.stats["guests created"] == 1  # the same KVM VM, reset


@needs_kvm
def test_a_triple_fault_replaces_the_kvm_vm_and_leaks_nothing(kvm: KvmAdapter) -> None:
    run(kvm, setup_ops())
    before = open_fds()
    vcpu = kvm.guest(1).vcpu
    sregs = vcpu.get_sregs()
    sregs.idt.limit = 0  # no IDT: #UD -> #GP -> #DF -> shutdown
    vcpu.set_sregs(sregs)
    with pytest.raises(GuestError, match=r"KVM_EXIT_SHUTDOWN.*replaced"):
        kvm.run_code(1, b"\x0f\x0b")
    assert kvm.execute(Op(OpKind.IO_READ, vm=1, address=IO_BAR, width=4)) == Observation(value=0)
    assert kvm.stats["guests created"] == 2
    assert open_fds() == before


@needs_kvm
def test_an_unexpected_exit_ends_the_operation_and_the_next_one_runs(kvm: KvmAdapter) -> None:
    run(kvm, setup_ops())
    # rep insb with rcx = 2: a string I/O exit (count 2) no operation makes
    code = (
        bytes.fromhex("48c7c102000000")
        + bytes.fromhex("ba00c00000")
        + bytes.fromhex("48bf")
        + (kvm.layout.va(g.STACK_TOP - 0x100)).to_bytes(8, "little")
        + bytes.fromhex("f36c")
    )
    with pytest.raises(GuestError, match=r"KVM_EXIT_IO .*count 2"):
        kvm.run_code(1, code)
    assert kvm.execute(Op(OpKind.CONFIG_READ, vm=1, bdf=NIC, address=0, width=4)) == Observation(
        value=0x100E8086
    )


@needs_kvm
def test_the_manager_sees_no_partial_effect_of_a_rejected_operation(kvm: KvmAdapter) -> None:
    model = ModelAdapter()
    ops = [
        *setup_ops(),
        Op(OpKind.MMIO_WRITE, vm=1, address=BAR0, width=4, value=1 << 32),
        Op(OpKind.MMIO_READ, vm=1, address=BAR0, width=4),
    ]
    assert [kvm.execute(op) for op in ops] == [model.execute(op) for op in ops]


# ------------------------------------------------------------------ lifecycle and resources
@needs_kvm
def test_one_kvm_vm_per_vpcid_vm_recycled_through_the_pool(kvm: KvmAdapter) -> None:
    run(kvm, [*setup_ops(1), Op(OpKind.CREATE_VM, vm=2)])
    kvm.execute(Op(OpKind.IO_READ, vm=1, address=0xCF8, width=4))
    kvm.execute(Op(OpKind.IO_READ, vm=2, address=0xCF8, width=4))
    assert kvm.guest(1) is not kvm.guest(2)
    assert kvm.execute(Op(OpKind.DESTROY_VM, vm=2)) == OK
    assert kvm.execute(Op(OpKind.IO_READ, vm=2, address=0xCF8, width=4)) == Observation(error="unknown-vm")
    for _ in range(3):
        run(
            kvm, [*setup_ops(1), Op(OpKind.CREATE_VM, vm=2), Op(OpKind.IO_READ, vm=2, address=0xCF8, width=4)]
        )
    assert kvm.stats["guests created"] == 2


@needs_kvm
def test_creating_using_and_closing_adapters_leaks_no_file_descriptor() -> None:
    before = open_fds()
    for cpl in ("cpl=0", "cpl=3"):
        impl = adapter(cpl)
        run(
            impl,
            [*setup_ops(1), Op(OpKind.CREATE_VM, vm=2), Op(OpKind.MMIO_READ, vm=2, address=BAR0, width=4)],
        )
        with pytest.raises(GuestError):
            impl.run_code(1, b"\x0f\x0b")
        impl.close()
    assert open_fds() == before
