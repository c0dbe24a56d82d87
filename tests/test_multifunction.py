"""Multi-function rules at plug (R-MF-001, R-MF-002), in VM snapshots (R-MF-002), and what a guest sees
of functions above 0 (R-MF-003), on the model and on the compiled backend (skipped, with the reason,
when it is not built)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from vpcid.adapters import cython as backend
from vpcid.conformance.platform_cases import MULTIFUNCTION, SINGLE
from vpcid.model import Bdf, BlobMismatch, DataManager, InvalidArgument, SlotOccupied
from vpcid.model import blob as blobfmt

VM = 1
DEVICE = 0x0B
FN = [Bdf(0, DEVICE, f) for f in range(8)]
ECAM = 0xB000_0000
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
    factory: Callable[[], Manager] = request.param
    manager = factory()
    manager.create_vm(VM)
    return manager


def _functions(dm: Manager) -> list[tuple[Bdf, str]]:
    return list(dm.tables(VM).config)


@pytest.mark.req("R-MF-001")
def test_a_single_function_function_0_refuses_other_functions(dm: Manager) -> None:
    dm.plug(VM, FN[0], SINGLE)
    before = dm.snapshot(VM)
    for f in (1, 7):
        for dtype in (SINGLE, MULTIFUNCTION):
            with pytest.raises(SlotOccupied):
                dm.plug(VM, FN[f], dtype)
    assert dm.snapshot(VM) == before  # nothing changed (R-ERR-001)
    assert dm.config_read(VM, FN[1], 0, 4) == 0xFFFF_FFFF
    dm.plug(VM, Bdf(0, DEVICE + 1, 1), SINGLE)  # another device's functions are not concerned


@pytest.mark.req("R-MF-001")
def test_a_multi_function_function_0_takes_any_function(dm: Manager) -> None:
    dm.plug(VM, FN[0], MULTIFUNCTION)
    dm.plug(VM, FN[1], SINGLE)  # bit 7 of functions above 0 is not looked at
    dm.plug(VM, FN[7], MULTIFUNCTION)
    assert _functions(dm) == [(FN[0], MULTIFUNCTION.name), (FN[1], SINGLE.name), (FN[7], MULTIFUNCTION.name)]


@pytest.mark.req("R-MF-002")
def test_a_single_function_type_at_function_0_needs_its_device_empty(dm: Manager) -> None:
    dm.plug(VM, FN[3], SINGLE)
    with pytest.raises(SlotOccupied):
        dm.plug(VM, FN[0], SINGLE)
    assert _functions(dm) == [(FN[3], SINGLE.name)]
    dm.plug(VM, FN[0], MULTIFUNCTION)
    dm.unplug(VM, FN[0])
    dm.unplug(VM, FN[3])
    dm.plug(VM, FN[0], SINGLE)  # the device is empty again


@pytest.mark.req("R-MF-001")
@pytest.mark.req("R-ERR-002")
def test_a_plug_checks_the_bdf_then_the_device_then_the_type(dm: Manager) -> None:
    dm.plug(VM, FN[0], SINGLE)
    with pytest.raises(SlotOccupied):
        dm.plug(VM, FN[0], MULTIFUNCTION)  # the BDF itself first
    with pytest.raises(InvalidArgument):
        dm.plug(VM, FN[1], "not a device type")  # no header type to look at: the type's own error


@pytest.mark.req("R-MF-003")
def test_functions_above_0_answer_without_function_0(dm: Manager) -> None:
    dm.plug(VM, FN[5], SINGLE)
    identity = SINGLE.device_id << 16 | SINGLE.vendor_id
    assert dm.config_read(VM, FN[0], 0, 4) == 0xFFFF_FFFF
    assert dm.config_read(VM, FN[5], 0, 4) == identity
    assert dm.mmio_read(VM, ECAM + (FN[5].packed << 12), 4) == identity
    dm.io_write(VM, 0xCF8, 4, 0x8000_0000 | FN[5].packed << 8)
    assert dm.io_read(VM, 0xCFC, 4) == identity
    dm.plug(VM, FN[0], MULTIFUNCTION)
    dm.unplug(VM, FN[0])  # function 0 leaves; function 5 stays and answers
    assert dm.config_read(VM, FN[5], 0, 4) == identity


@pytest.mark.req("R-MF-002")
def test_a_snapshot_no_plugs_can_build_is_rejected(dm: Manager) -> None:
    """A VM snapshot with a single-function function 0 beside function 1: each blob is valid alone."""
    one, two = DataManager(), DataManager()
    for manager, bdf in ((one, FN[0]), (two, FN[1])):
        manager.create_vm(VM)
        manager.plug(VM, bdf, SINGLE)
    devices = ((FN[0].packed, one.save(VM, FN[0])), (FN[1].packed, two.save(VM, FN[1])))
    snapshot = blobfmt.encode_snapshot(blobfmt.VmRecord(ECAM, 0, devices, ()))
    dm.register_type(SINGLE)
    dm.plug(VM, Bdf(0, 1, 0), SINGLE)
    before = dm.snapshot(VM)
    with pytest.raises(BlobMismatch):
        dm.restore_vm(VM, snapshot)
    assert dm.snapshot(VM) == before
    fine = blobfmt.encode_snapshot(blobfmt.VmRecord(ECAM, 0, devices[1:], ()))
    dm.restore_vm(VM, fine)
    assert _functions(dm) == [(FN[1], SINGLE.name)]
