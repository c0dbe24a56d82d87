"""A movable ECAM window (R-ECAM-005, R-ECAM-006): the platform moves or disables it with
``set_ecam_base``, on the model and on the compiled backend (skipped, with the reason, when it is not
built), and through the trace language and the adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from vpcid.adapters import cython as backend
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.cases import system_cases
from vpcid.conformance.platform_cases import SINGLE
from vpcid.conformance.trace import EXTENSIONS, FULL, Observation, Op, OpKind, TraceError
from vpcid.model import Bdf, DataManager, InvalidArgument, UnknownVm

VM = 1
FN = Bdf(0, 0x0C, 0)
DEFAULT = 0xB000_0000
MOVED = 0xC000_0000
BAR = 0xC000_0000
ONES = 0xFFFF_FFFF
IDENTITY = SINGLE.device_id << 16 | SINGLE.vendor_id
needs_backend = pytest.mark.skipif(not backend.available(), reason=backend.UNAVAILABLE_REASON or "")

Manager = Any
"""The model's DataManager or the compiled backend's Manager: the same API."""


def _cython_manager() -> Manager:
    assert backend.available(), backend.UNAVAILABLE_REASON
    return backend.Manager()


@pytest.fixture(
    params=[
        pytest.param(DataManager, id="model"),
        pytest.param(_cython_manager, id="cython", marks=needs_backend),
    ]
)
def dm(request: pytest.FixtureRequest) -> Manager:
    """VM 1 with a function whose BAR 0 decodes at 0xC0000000 and holds a word."""
    factory: Callable[[], Manager] = request.param
    manager = factory()
    manager.create_vm(VM)
    manager.plug(VM, FN, SINGLE)
    manager.config_write(VM, FN, 0x10, 4, BAR)
    manager.config_write(VM, FN, 0x04, 2, 0x2)
    manager.mmio_write(VM, BAR + 4, 4, 0xBA5E_0004)
    return manager


def _ecam(base: int, bdf: Bdf, offset: int = 0) -> int:
    return base + (bdf.packed << 12) + offset


@pytest.mark.req("R-ECAM-005")
@pytest.mark.parametrize(
    ("vm", "base", "error"),
    [
        (VM, MOVED + 0x10_0000, InvalidArgument),  # not aligned to 256 MiB
        (VM, 1 << 64, InvalidArgument),
        (VM, (1 << 64) - (128 << 20), InvalidArgument),
        (VM, -(256 << 20), InvalidArgument),
        (VM, True, InvalidArgument),
        (VM, "0xc0000000", InvalidArgument),
        (2, MOVED, UnknownVm),
        (2, MOVED + 1, UnknownVm),  # the VM first (R-ERR-002)
        (-1, MOVED, InvalidArgument),
    ],
)
def test_a_base_that_is_no_window_is_rejected_and_changes_nothing(
    dm: Manager, vm: object, base: object, error: type[Exception]
) -> None:
    before = dm.snapshot(VM)
    with pytest.raises(error):
        dm.set_ecam_base(vm, base)
    assert dm.snapshot(VM) == before
    assert dm.ecam_base(VM) == DEFAULT


@pytest.mark.req("R-ECAM-005")
def test_the_window_moves_and_is_disabled(dm: Manager) -> None:
    dm.set_ecam_base(VM, 0x1_0000_0000)
    assert dm.ecam_base(VM) == 0x1_0000_0000
    assert dm.mmio_read(VM, _ecam(0x1_0000_0000, FN), 4) == IDENTITY
    assert dm.mmio_read(VM, _ecam(DEFAULT, FN), 4) == ONES
    dm.set_ecam_base(VM, None)
    assert dm.ecam_base(VM) is None
    assert dm.mmio_read(VM, _ecam(0x1_0000_0000, FN), 4) == ONES
    dm.set_ecam_base(VM, None)  # disabling a VM without a window changes nothing
    dm.set_ecam_base(VM, 0)  # base 0 is a window
    assert dm.mmio_read(VM, _ecam(0, FN), 4) == IDENTITY
    top = (1 << 64) - (256 << 20)
    dm.set_ecam_base(VM, top)
    assert dm.mmio_read(VM, _ecam(top, FN, 0x3C), 4) == 0x0000_0000


@pytest.mark.req("R-ECAM-006")
def test_the_window_hides_a_bar_under_its_new_place_and_uncovers_it_when_it_leaves(dm: Manager) -> None:
    tables = dm.tables(VM)
    dm.set_ecam_base(VM, MOVED)
    assert dm.mmio_read(VM, BAR + 4, 4) == ONES  # configuration space of 00:00.0 (absent)
    assert dm.mmio_read(VM, _ecam(MOVED, FN), 4) == IDENTITY
    dm.mmio_write(VM, _ecam(MOVED, FN, 0x3C), 1, 0x09)
    assert dm.config_read(VM, FN, 0x3C, 1) == 0x09
    assert dm.tables(VM) == tables  # the BAR keeps its entry (R-DS-007)
    assert dm.resolve(VM, "memory", BAR + 4) == (FN, 0)
    dm.set_ecam_base(VM, DEFAULT)
    assert dm.mmio_read(VM, BAR + 4, 4) == 0xBA5E_0004  # uncovered, its data kept
    assert dm.mmio_read(VM, _ecam(DEFAULT, FN), 4) == IDENTITY


@pytest.mark.req("R-ECAM-006")
def test_the_window_travels_in_snapshots_and_survives_vm_reset(dm: Manager) -> None:
    dm.set_ecam_base(VM, MOVED)
    dm.reset_vm(VM)
    assert dm.ecam_base(VM) == MOVED
    snapshot = dm.snapshot(VM)
    dm.set_ecam_base(VM, None)
    dm.restore_vm(2, snapshot)
    assert dm.ecam_base(2) == MOVED
    dm.restore_vm(VM, snapshot)
    assert dm.mmio_read(VM, _ecam(MOVED, FN), 4) == IDENTITY


@pytest.mark.req("R-ECAM-005")
def test_set_ecam_base_is_a_trace_extension() -> None:
    assert OpKind.SET_ECAM_BASE in EXTENSIONS
    assert OpKind.SET_ECAM_BASE not in FULL
    for base in (MOVED, None):
        op = Op(OpKind.SET_ECAM_BASE, vm=VM, ecam_base=base)
        assert op.to_json() == {"op": "set_ecam_base", "vm": VM, "ecam_base": base}
        assert Op.from_json(op.to_json()) == op
    with pytest.raises(TraceError, match="ecam_base"):
        Op.from_json({"op": "set_ecam_base", "vm": VM})
    with pytest.raises(TraceError, match="ecam_base"):
        Op.from_json({"op": "set_ecam_base", "vm": VM, "ecam_base": "0xc0000000"})


ADAPTERS: list[Any] = [
    pytest.param(ModelAdapter, id="reference"),
    pytest.param(lambda: backend.CythonAdapter(), id="cython", marks=needs_backend),
]


@pytest.mark.req("R-ECAM-005")
@pytest.mark.req("R-ECAM-006")
@pytest.mark.parametrize("make", ADAPTERS)
def test_adapters_carry_the_operation(make: Callable[[], Any]) -> None:
    adapter = make()
    try:
        assert OpKind.SET_ECAM_BASE in adapter.info.operations
        ops = [Op(OpKind.INIT), Op(OpKind.CREATE_VM, vm=VM), Op(OpKind.PLUG, vm=VM, bdf=FN, name="e1000")]
        ops += [Op(OpKind.SET_ECAM_BASE, vm=VM, ecam_base=MOVED + 0x10_0000)]
        ops += [Op(OpKind.SET_ECAM_BASE, vm=VM, ecam_base=MOVED)]
        ops += [Op(OpKind.MMIO_READ, vm=VM, address=_ecam(MOVED, FN), width=2)]
        got = [adapter.execute(op) for op in ops]
        assert got[3:] == [Observation(error="invalid-argument"), Observation(), Observation(value=0x8086)]
    finally:
        adapter.close()


@pytest.mark.req("R-ECAM-006")
def test_the_platform_cases_need_the_extension_only_where_they_move_the_window() -> None:
    cases = {c.name: c for c in system_cases()}
    assert OpKind.SET_ECAM_BASE in cases["ecam-move"].needs
    assert {"R-ECAM-005", "R-ECAM-006"} <= set(cases["ecam-move"].requirements)
    for name in ("reset-sticky-bits", "reset-initiate-flr", "multifunction-function-0-last"):
        assert OpKind.SET_ECAM_BASE not in cases[name].needs
