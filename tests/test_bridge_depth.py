"""A snapshot whose bus tree is deeper than any sequence of operations builds is rejected, by the model and
the Cython backend alike, with a typed error and nothing changed (R-BLOB-008)."""

from __future__ import annotations

import dataclasses

import pytest
from vpcid.model import Bdf, BlobError, DataManager, VpcidError
from vpcid.model.blob import MAX_BRIDGE_DEPTH, decode_snapshot, encode_snapshot
from vpcid.model.catalog import EDU, PCI_BRIDGE

VM = 1


def chained_snapshot(depth: int) -> bytes:
    """A snapshot of ``depth`` pci-bridges one below the other and an edu below the last, made from the
    entries of a one-bridge snapshot (device 0, function 0 at every level)."""
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, Bdf(0, 0, 0), PCI_BRIDGE)
    dm.config_write(VM, Bdf(0, 0, 0), 0x18, 4, 0x0001_0100)
    dm.plug(VM, Bdf(1, 0, 0), EDU)
    record = decode_snapshot(dm.snapshot(VM))
    bridge, edu = record.devices
    devices = (bridge, *[(0, bridge[1])] * (depth - 1), edu)
    parents = (None, *range(depth))
    return encode_snapshot(dataclasses.replace(record, devices=devices, parents=parents, map_order=()))


def managers() -> list[object]:
    found: list[object] = [DataManager()]
    try:
        from vpcid.adapters import cython as backend

        found.append(backend.Manager())
    except ImportError:  # the compiled backend is optional; test_cython_backend says why it is missing
        pass
    return found


@pytest.mark.req("R-BLOB-008")
@pytest.mark.parametrize("manager", managers(), ids=lambda m: type(m).__module__)
def test_a_tree_deeper_than_255_bridges_is_rejected_and_255_is_not(manager: DataManager) -> None:
    manager.register_type(PCI_BRIDGE)
    manager.register_type(EDU)
    manager.restore_vm(2, chained_snapshot(MAX_BRIDGE_DEPTH))
    assert len(manager.topology(2)) == MAX_BRIDGE_DEPTH + 1
    deep = chained_snapshot(MAX_BRIDGE_DEPTH + 1)
    with pytest.raises(VpcidError) as raised:
        manager.restore_vm(3, deep)
    assert raised.value.kind == BlobError("").kind
    assert manager.vm_ids() == (2,)


@pytest.mark.req("R-BLOB-008")
def test_a_hostile_chain_of_thousands_of_bridges_is_a_typed_error_not_a_crash() -> None:
    manager = DataManager()
    manager.register_type(PCI_BRIDGE)
    manager.register_type(EDU)
    with pytest.raises(BlobError, match="more than 255 bridges"):
        manager.restore_vm(2, chained_snapshot(3000))
    assert manager.vm_ids() == ()
