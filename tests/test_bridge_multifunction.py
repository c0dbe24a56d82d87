"""Bridged snapshots keep the multi-function rules per bus: functions below a bridge are judged beside
their siblings only, by the model and the Cython backend alike (R-MF-001, R-MF-002, R-BLOB-008)."""

from __future__ import annotations

import dataclasses

import pytest
from vpcid.model import Bdf, BlobMismatch, DataManager, VpcidError
from vpcid.model.blob import decode_snapshot, encode_snapshot
from vpcid.model.catalog import E1000, EDU, PCI_BRIDGE

VM = 1


def managers() -> list[object]:
    found: list[object] = [DataManager()]
    try:
        from vpcid.adapters import cython as backend

        found.append(backend.Manager())
    except ImportError:  # the compiled backend is optional; test_cython_backend says why it is missing
        pass
    return found


def bridged(manager: DataManager) -> None:
    """A single-function e1000 at 00:01.0 and, below the bridge at 00:02.0 (bus 1), edu at 01:01.1."""
    manager.create_vm(VM)
    manager.plug(VM, Bdf(0, 1, 0), E1000)
    manager.plug(VM, Bdf(0, 2, 0), PCI_BRIDGE)
    manager.config_write(VM, Bdf(0, 2, 0), 0x18, 4, 0x0001_0100)
    manager.plug(VM, Bdf(1, 1, 1), EDU)


@pytest.mark.req("R-MF-002", "R-BLOB-008")
@pytest.mark.parametrize("manager", managers(), ids=lambda m: type(m).__module__)
def test_a_function_below_a_bridge_is_not_judged_beside_the_root_bus(manager: DataManager) -> None:
    bridged(manager)  # 01:01.1 is stored with bus byte 0, beside 00:01.0's single-function e1000
    manager.restore_vm(2, manager.snapshot(VM))
    assert manager.config_read(2, Bdf(1, 1, 1), 0, 2) == 0x1234


@pytest.mark.req("R-MF-001", "R-BLOB-008")
@pytest.mark.parametrize("manager", managers(), ids=lambda m: type(m).__module__)
def test_a_bus_below_a_bridge_no_plugs_can_build_is_refused(manager: DataManager) -> None:
    bridged(manager)
    record = decode_snapshot(manager.snapshot(VM))
    devices = list(record.devices)
    below = devices[2]  # the edu at 01:01.1 (bus byte 0 in the snapshot)
    single = (
        0x08,
        devices[0][1],
    )  # the single-function e1000's blob at device 1, function 0 below the bridge
    forged = (*devices[:2], single, below)
    with pytest.raises(VpcidError) as raised:
        manager.restore_vm(
            2, encode_snapshot(dataclasses.replace(record, devices=forged, parents=(None, None, 1, 1)))
        )
    assert raised.value.kind == BlobMismatch("").kind
    assert manager.vm_ids() == (VM,)
