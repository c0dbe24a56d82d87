"""A snapshot whose bus tree is deeper than any sequence of operations builds is rejected, by the model and
the Cython backend alike, with a typed error and nothing changed (R-BLOB-008)."""

from __future__ import annotations

import pytest
from vpcid.conformance.bridge_cases import chained_snapshot
from vpcid.model import BlobError, DataManager, VpcidError
from vpcid.model.blob import MAX_BRIDGE_DEPTH
from vpcid.model.catalog import EDU, PCI_BRIDGE


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
