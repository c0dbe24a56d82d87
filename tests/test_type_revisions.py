"""Restoring blobs of earlier revisions of a device type (R-MIG-001, R-MIG-002)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from vpcid.adapters import cython as backend
from vpcid.conformance.typefile import parse_type_file, type_file_json
from vpcid.model import Bdf, BlobMismatch, DataManager, DeviceType, DeviceTypeError
from vpcid.model import blob as blobfmt
from vpcid.model.catalog import E1000, EDU
from vpcid.model.devicetype import BarKind, BarSpec, RomSpec, accepting, revision_difference

VM = 1
AT = Bdf(0, 2, 0)
BAR0 = 0xE000_0000
OLD = dataclasses.replace(E1000, name="rev-nic")
NEW = accepting(dataclasses.replace(OLD, revision=0x03, subsystem_id=0x0100), OLD)


def _used(dtype: DeviceType, make: Callable[[], Any] = DataManager) -> Any:
    """A manager with ``dtype`` at :data:`AT`, BAR0 at :data:`BAR0`, decode on, a BAR dword written."""
    dm = make()
    dm.create_vm(VM)
    dm.plug(VM, AT, dtype)
    dm.config_write(VM, AT, 0x10, 4, BAR0)
    dm.config_write(VM, AT, 0x04, 2, 0x0406)
    dm.config_write(VM, AT, 0x3C, 1, 0x0B)
    dm.mmio_write(VM, BAR0 + 0x10, 4, 0xC0FF_EE00)
    return dm


def _fresh(dtype: DeviceType, make: Callable[[], Any] = DataManager) -> Any:
    dm = make()
    dm.create_vm(VM)
    dm.plug(VM, AT, dtype)
    return dm


@pytest.mark.req("R-MIG-001")
def test_accepted_revisions_are_part_of_the_fingerprint_and_of_type_files() -> None:
    plain = dataclasses.replace(NEW, accepts=())
    assert NEW.accepts == (OLD.fingerprint(),)
    assert NEW.fingerprint() != plain.fingerprint()
    again = parse_type_file(type_file_json([NEW]))[0].dtype
    assert again.accepts == NEW.accepts
    assert again.fingerprint() == NEW.fingerprint()
    assert "accepts" not in type_file_json([plain])["types"][0]


@pytest.mark.req("R-MIG-001")
@pytest.mark.parametrize(("change", "field"), [
    ({"name": "other-nic"}, "name: 'rev-nic' vs 'other-nic'"),
    ({"express": True, "capabilities": ()}, "configuration space size: 256 vs 4096 bytes"),
    ({"bars": (BarSpec(BarKind.MEM32, 256 << 10), BarSpec(BarKind.IO, 64))},
     "BAR0: mem32 0x20000 bytes vs mem32 0x40000 bytes"),
    ({"bars": (BarSpec(BarKind.MEM32, 128 << 10, prefetchable=True), BarSpec(BarKind.IO, 64))},
     "BAR0: mem32 0x20000 bytes vs mem32 prefetchable 0x20000 bytes"),
    ({"rom": RomSpec(128 << 10)}, "ROM size: 0x10000 vs 0x20000"),
    ({"rom": None}, "ROM size: 0x10000 vs 0x0"),
    ({"behaviour": EDU.behaviour}, "BAR behaviour: 'memory' vs 'edu'"),
])  # fmt: skip
def test_a_revision_must_keep_the_layout_blobs_depend_on(change: dict[str, Any], field: str) -> None:
    newer = dataclasses.replace(OLD, **change)
    assert revision_difference(OLD, newer) == field
    with pytest.raises(DeviceTypeError, match=f"cannot accept revision {OLD.fingerprint().hex()[:16]}"):
        accepting(newer, OLD)


@pytest.mark.req("R-MIG-001")
def test_what_may_differ_between_revisions() -> None:
    newer = dataclasses.replace(
        OLD, revision=0x07, device_id=0x100F, capabilities=(), rom=RomSpec(64 << 10, b"\x55")
    )
    assert revision_difference(OLD, newer) is None
    assert accepting(newer, OLD).accepts == (OLD.fingerprint(),)
    with pytest.raises(DeviceTypeError, match="32-byte fingerprints"):
        dataclasses.replace(OLD, accepts=(b"short",))
    with pytest.raises(DeviceTypeError, match="each once"):
        dataclasses.replace(OLD, accepts=(bytes(32), bytes(32)))


@pytest.mark.req("R-MIG-002")
def test_an_accepted_blob_keeps_guest_state_and_takes_this_revisions_identity() -> None:
    blob = _used(OLD).save(VM, AT)
    dm = _fresh(NEW)
    dm.restore(VM, AT, blob)
    assert dm.config_read(VM, AT, 0x08, 1) == 0x03  # read-only: this revision's
    assert dm.config_read(VM, AT, 0x2C, 4) == 0x0100_8086
    assert dm.config_read(VM, AT, 0x04, 2) == 0x0406  # writable: the blob's
    assert dm.config_read(VM, AT, 0x3C, 1) == 0x0B
    assert dm.config_read(VM, AT, 0x10, 4) == BAR0
    assert dm.mmio_read(VM, BAR0 + 0x10, 4) == 0xC0FF_EE00
    saved = blobfmt.decode_instance(dm.save(VM, AT))
    assert saved.fingerprint == NEW.fingerprint()


@pytest.mark.req("R-MIG-002")
def test_a_fingerprint_neither_the_types_nor_accepted_is_refused() -> None:
    third = dataclasses.replace(OLD, revision=0x01)
    blob = _used(third).save(VM, AT)
    dm = _fresh(NEW)
    before = dm.save(VM, AT)
    with pytest.raises(BlobMismatch, match=r"nor one of the 1 revisions it accepts: another definition"):
        dm.restore(VM, AT, blob)
    assert dm.save(VM, AT) == before


@pytest.mark.req("R-MIG-002")
def test_an_accepted_fingerprint_still_meets_every_restore_rule() -> None:
    express = dataclasses.replace(OLD, express=True)
    bigger = dataclasses.replace(OLD, bars=(BarSpec(BarKind.MEM32, 256 << 10), BarSpec(BarKind.IO, 64)))
    lenient = dataclasses.replace(NEW, accepts=(express.fingerprint(), bigger.fingerprint()))
    dm = _fresh(lenient)
    with pytest.raises(
        BlobMismatch, match="size differs from the device type's: 4096 bytes in the blob, 256"
    ):
        dm.restore(VM, AT, _used(express).save(VM, AT))
    moved = _used(bigger)
    moved.config_write(VM, AT, 0x10, 4, BAR0 + 0x40000)
    moved.mmio_write(VM, BAR0 + 0x40000 + 0x3FFF0, 4, 1)
    with pytest.raises(BlobMismatch, match="outside the device"):
        dm.restore(VM, AT, moved.save(VM, AT))


@pytest.mark.req("R-MIG-002")
def test_snapshots_restore_accepted_revisions_too() -> None:
    snapshot = _used(OLD).snapshot(VM)
    dm = DataManager()
    dm.register_type(NEW)
    dm.restore_vm(VM, snapshot)
    assert dm.device_type(VM, AT) is NEW
    assert dm.config_read(VM, AT, 0x08, 1) == 0x03
    assert dm.mmio_read(VM, BAR0 + 0x10, 4) == 0xC0FF_EE00


@pytest.mark.req("R-MIG-002")
@pytest.mark.skipif(not backend.available(), reason=backend.UNAVAILABLE_REASON or "")
def test_the_compiled_backend_restores_revisions_byte_identically() -> None:
    blob = _used(OLD).save(VM, AT)
    managers = [_fresh(NEW), _fresh(NEW, lambda: backend.Manager())]
    for dm in managers:
        dm.restore(VM, AT, blob)
    assert managers[0].save(VM, AT) == managers[1].save(VM, AT)
    reads = [[dm.config_read(VM, AT, offset, 4) for offset in range(0, 0x40, 4)] for dm in managers]
    assert reads[0] == reads[1]
    third = _used(dataclasses.replace(OLD, revision=0x01)).save(VM, AT)
    with pytest.raises(BlobMismatch):
        managers[1].restore(VM, AT, third)
    snapshot = _used(OLD).snapshot(VM)
    compiled = backend.Manager()
    compiled.register_type(NEW)
    compiled.restore_vm(VM, snapshot)
    model = DataManager()
    model.register_type(NEW)
    model.restore_vm(VM, snapshot)
    assert compiled.snapshot(VM) == model.snapshot(VM)
