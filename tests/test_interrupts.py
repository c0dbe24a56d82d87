"""Interrupt registers: the PCI rules of declared structures, MSI, MSI-X and INTx (R-DT-009, R-IRQ-*)."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Any

import pytest
from vpcid.adapters import cython as backend
from vpcid.conformance.typefile import parse_type_file, type_file_json
from vpcid.model import Bdf, BlobMismatch, DataManager, DeviceType, DeviceTypeError
from vpcid.model import blob as blobfmt
from vpcid.model.behaviour import MsixTable
from vpcid.model.catalog import (
    A100,
    BRIDGES,
    CATALOG,
    E1000,
    EDU,
    NVME,
    REGISTER_SINK,
    msi64_capability,
    msix_capability,
)
from vpcid.model.devicetype import BarKind, BarSpec, Capability
from vpcid.model.header import ConfigSpace, MsixPlace, check_pci_rules

VM = 1
AT = Bdf(0, 4, 0)
BAR0 = 0xE000_0000
TABLE, PBA = BAR0 + 0x3000, BAR0 + 0x2000
MSIX_CAP, MSI_CAP = 0xB0, 0x50


def _manager(dtype: DeviceType = NVME, make: Callable[[], Any] = DataManager) -> Any:
    """A manager with ``dtype`` plugged at :data:`AT`, its BAR0 at :data:`BAR0` and memory decode on."""
    dm = make()
    dm.create_vm(VM)
    dm.plug(VM, AT, dtype)
    dm.config_write(VM, AT, 0x10, 4, BAR0)
    dm.config_write(VM, AT, 0x14, 4, 0)
    dm.config_write(VM, AT, 0x04, 2, 0x2)
    return dm


def _space(dtype: DeviceType) -> tuple[bytearray, bytearray, bytearray]:
    d = dtype.declared
    return bytearray(d.image), bytearray(d.wmask), bytearray(d.w1cmask)


def _rejected(image: bytearray, wmask: bytearray, w1c: bytearray, match: str) -> None:
    with pytest.raises(DeviceTypeError, match=match):
        check_pci_rules(ConfigSpace(bytes(image), bytes(wmask), bytes(w1c)))


# ------------------------------------------------------------------ R-DT-009


@pytest.mark.req("R-DT-009")
@pytest.mark.parametrize("dtype", [*CATALOG.values(), *BRIDGES.values(), REGISTER_SINK], ids=lambda t: t.name)
def test_the_catalogue_follows_the_pci_rules(dtype: DeviceType) -> None:
    dtype.check_pci()


@pytest.mark.req("R-DT-009")
def test_an_express_function_without_a_pci_express_capability_is_rejected() -> None:
    bare = DeviceType(name="bare-express", vendor_id=0x1B36, device_id=0x1, class_code=0xFF0000, express=True)
    with pytest.raises(DeviceTypeError, match=r"config byte 0x034: .*PCI Express capability"):
        bare.check_pci()


@pytest.mark.req("R-DT-009")
def test_a_short_pci_express_capability_is_rejected_naming_its_header() -> None:
    short = dataclasses.replace(
        A100, name="short-express",
        capabilities=(Capability(0x10, struct.pack("<H", 2) + bytes(0x10)), Capability(0x01, bytes(6))),
    )  # fmt: skip
    with pytest.raises(
        DeviceTypeError, match=r"config byte 0x040: a version 2 .* takes 0x3c bytes, 0x14 are free"
    ):
        short.check_pci()
    version1 = dataclasses.replace(
        short, capabilities=(Capability(0x10, struct.pack("<H", 1) + bytes(0x10)), Capability(0x01, bytes(6)))
    )
    version1.check_pci()


@pytest.mark.req("R-DT-009")
def test_the_capability_may_end_at_the_end_of_the_standard_area_but_not_past_it() -> None:
    image, wmask, w1c = _space(A100)
    at = next(e.offset for e in A100.chain if e.cap_id == 0x10)
    express = bytes(image[at : at + 0x3C])
    for start, fits in ((0xC4, True), (0xC8, False)):
        moved = bytearray(image)
        moved[at : at + 0x3C] = bytes(0x3C)
        moved[start:0x100] = express[: 0x100 - start]
        previous = next(e.offset for e in A100.chain if e.cap_id == 0x05)
        moved[previous + 1] = start
        space = ConfigSpace(bytes(moved), bytes(wmask), bytes(w1c))
        if fits:
            check_pci_rules(space)
        else:
            with pytest.raises(DeviceTypeError, match=r"config byte 0x0c8: .*0x38 are free"):
                check_pci_rules(space)


@pytest.mark.req("R-DT-009")
def test_a_pci_express_capability_of_an_unknown_version_is_rejected() -> None:
    image, wmask, w1c = _space(NVME)
    image[0x72] = 3
    _rejected(image, wmask, w1c, r"config byte 0x072: PCI Express capability version 3")


# ------------------------------------------------------------------ R-IRQ-001


@pytest.mark.req("R-IRQ-001")
@pytest.mark.parametrize(("offset", "byte", "match"), [
    (MSI_CAP + 2, 0x7F, r"config byte 0x052: MSI Message Control"),  # Multiple Message Capable writable
    (MSI_CAP + 4, 0xFF, r"config byte 0x054: MSI Message Address"),  # address bits 1:0 writable
    (MSI_CAP + 0xC, 0x00, r"config byte 0x05c: MSI Message Data"),  # data read-only
])  # fmt: skip
def test_msi_registers_have_the_pci_classes(offset: int, byte: int, match: str) -> None:
    image, wmask, w1c = _space(NVME)
    wmask[offset] = byte
    _rejected(image, wmask, w1c, match)


@pytest.mark.req("R-IRQ-001")
def test_msi_mask_bits_are_writable_for_the_usable_vectors_and_pending_bits_read_only() -> None:
    capability = msi64_capability(capable=2, maskable=True)
    maskable = dataclasses.replace(EDU, name="edu-maskable", capabilities=(capability,))
    maskable.check_pci()
    image, wmask, w1c = _space(maskable)
    mask, pending = 0x40 + 0x10, 0x40 + 0x14
    assert wmask[mask : mask + 4] == b"\x0f\x00\x00\x00"
    for offset, byte, match in ((mask, 0x1F, "MSI Mask Bits"), (pending, 0x01, "MSI Pending Bits")):
        changed = bytearray(wmask)
        changed[offset] = byte
        _rejected(image, changed, w1c, f"config byte {offset:#05x}: {match}")
    dm = _manager(maskable)
    dm.config_write(VM, AT, 0x42, 2, 0xFFFF)
    dm.config_write(VM, AT, mask, 4, 0xFFFF_FFFF)
    dm.config_write(VM, AT, pending, 4, 0xFFFF_FFFF)
    assert dm.config_read(VM, AT, 0x42, 2) == 0x0100 | 0x80 | 2 << 1 | 0x71  # capable bits kept
    assert dm.config_read(VM, AT, mask, 4) == 0xF
    assert dm.config_read(VM, AT, pending, 4) == 0


@pytest.mark.req("R-IRQ-001")
def test_an_msi_capability_overlapped_by_the_next_one_is_rejected() -> None:
    maskable = dataclasses.replace(EDU, name="edu-maskable", capabilities=(msi64_capability(maskable=True),))
    image, wmask, w1c = _space(maskable)
    image[0x41] = 0x54  # a capability where the pending bits are: 0x14 bytes after MSI, which takes 0x18
    image[0x54] = 0x01
    _rejected(image, wmask, w1c, r"config byte 0x040: this MSI capability takes 0x18 bytes")


# ------------------------------------------------------------------ R-IRQ-002


@pytest.mark.req("R-IRQ-002")
def test_msix_control_keeps_enable_and_function_mask_only() -> None:
    dm = _manager()
    dm.config_write(VM, AT, MSIX_CAP + 2, 2, 0xFFFF)
    assert dm.config_read(VM, AT, MSIX_CAP + 2, 2) == 0xC000 | 32
    dm.config_write(VM, AT, MSIX_CAP + 4, 4, 0xFFFF_FFFF)
    assert dm.config_read(VM, AT, MSIX_CAP + 4, 4) == 0x3000
    image, wmask, w1c = _space(NVME)
    wmask[MSIX_CAP + 2] = 0x01
    _rejected(image, wmask, w1c, r"config byte 0x0b2: MSI-X Message Control")
    wmask[MSIX_CAP + 2] = 0
    wmask[MSIX_CAP + 8] = 0xF8
    _rejected(image, wmask, w1c, r"config byte 0x0b8: MSI-X Table and PBA offsets")


# ------------------------------------------------------------------ R-IRQ-003


def _control(dm: Any, vector: int) -> int:
    return int(dm.mmio_read(VM, TABLE + 16 * vector + 12, 4))


@pytest.mark.req("R-IRQ-003")
def test_every_vector_is_masked_at_power_on_and_after_reset() -> None:
    dm = _manager()
    assert [_control(dm, v) for v in range(33)] == [1] * 33
    assert dm.mmio_read(VM, TABLE + 16 * 33 + 12, 4) == 0  # past the table: memory
    dm.mmio_write(VM, TABLE + 12, 4, 0)
    assert _control(dm, 0) == 0
    dm.reset(VM, AT)
    dm.config_write(VM, AT, 0x10, 4, BAR0)
    dm.config_write(VM, AT, 0x04, 2, 0x2)
    assert _control(dm, 0) == 1


@pytest.mark.req("R-IRQ-003")
def test_table_entries_take_dword_and_qword_writes_and_vector_control_keeps_bit_0() -> None:
    dm = _manager()
    dm.mmio_write(VM, TABLE + 16, 8, 0x0000_0001_FEE0_100C)
    dm.mmio_write(VM, TABLE + 24, 4, 0x4041)
    dm.mmio_write(VM, TABLE + 28, 4, 0xFFFF_FFFE)
    assert dm.mmio_read(VM, TABLE + 16, 8) == 0x0000_0001_FEE0_100C
    assert dm.mmio_read(VM, TABLE + 24, 8) == 0x4041
    dm.mmio_write(VM, TABLE + 24, 8, 0xFFFF_FFFF_0000_0042)
    assert dm.mmio_read(VM, TABLE + 28, 4) == 1


@pytest.mark.req("R-IRQ-003")
@pytest.mark.parametrize(("offset", "width"), [(0, 1), (12, 1), (2, 2), (12, 2), (2, 4), (4, 8)])
def test_other_table_accesses_read_zero_and_write_nothing(offset: int, width: int) -> None:
    dm = _manager()
    dm.mmio_write(VM, TABLE, 8, 0x1122_3344_5566_7788)
    dm.mmio_write(VM, TABLE + offset, width, (1 << 8 * width) - 1 - 1)
    assert dm.mmio_read(VM, TABLE + offset, width) == 0
    assert dm.mmio_read(VM, TABLE, 8) == 0x1122_3344_5566_7788
    assert _control(dm, 0) == 1


@pytest.mark.req("R-IRQ-003")
def test_the_pba_is_read_only_and_the_rest_of_the_bar_is_memory() -> None:
    dm = _manager()
    dm.mmio_write(VM, PBA, 8, 0xFFFF_FFFF_FFFF_FFFF)
    dm.mmio_write(VM, PBA, 4, 0xFFFF_FFFF)
    assert dm.mmio_read(VM, PBA, 8) == 0
    assert dm.mmio_read(VM, PBA + 1, 1) == 0
    for address in (BAR0, BAR0 + 0x1FFF, PBA + 8, TABLE - 1, TABLE + 33 * 16, BAR0 + 0x3FFF):
        dm.mmio_write(VM, address, 1, 0x5A)
        assert dm.mmio_read(VM, address, 1) == 0x5A


@pytest.mark.req("R-IRQ-003")
def test_table_and_pba_travel_in_the_blob_and_bad_state_is_refused() -> None:
    dm = _manager()
    dm.mmio_write(VM, TABLE + 32 * 16, 8, 0xFEE0_0000)
    dm.mmio_write(VM, TABLE + 32 * 16 + 12, 4, 0)
    blob = dm.save(VM, AT)
    dm.reset(VM, AT)
    dm.restore(VM, AT, blob)
    assert dm.mmio_read(VM, TABLE + 32 * 16, 8) == 0xFEE0_0000
    assert _control(dm, 32) == 0
    record = blobfmt.decode_instance(blob)
    bar, page, content = record.pages[-1]
    for where, value, match in ((0x00C, 3, "vector 0: reserved Vector Control"),):
        bad = bytearray(content)
        bad[where] = value
        forged = dataclasses.replace(record, pages=((bar, page, bytes(bad)),))
        with pytest.raises(BlobMismatch, match=match):
            dm.restore(VM, AT, blobfmt.encode_instance(forged))
    pba_page = bytearray(4096)
    pba_page[4] = 0x02  # pending bit 33: the capability has 33 vectors, 0-32
    forged = dataclasses.replace(record, pages=((0, 2, bytes(pba_page)), *record.pages))
    with pytest.raises(BlobMismatch, match="pending bit 33 names no vector"):
        dm.restore(VM, AT, blobfmt.encode_instance(forged))
    with pytest.raises(BlobMismatch, match="keeps no extra state"):
        dm.restore(VM, AT, blobfmt.encode_instance(dataclasses.replace(record, extra=b"\x01")))
    assert dm.save(VM, AT) == blob


@pytest.mark.req("R-IRQ-003")
@pytest.mark.skipif(not backend.available(), reason=backend.UNAVAILABLE_REASON or "")
def test_the_compiled_backend_keeps_the_same_table_and_blobs() -> None:
    managers = [_manager(), _manager(make=lambda: backend.Manager())]
    for dm in managers:
        dm.mmio_write(VM, TABLE + 16, 8, 0x0000_0001_FEE0_100C)
        dm.mmio_write(VM, TABLE + 28, 4, 0xFFFF_FFFE)
        dm.mmio_write(VM, TABLE + 2, 2, 0xFFFF)
        dm.mmio_write(VM, PBA, 4, 0xFFFF_FFFF)
    reads = [[dm.mmio_read(VM, TABLE + k, 4) for k in range(0, 48, 4)] for dm in managers]
    assert reads[0] == reads[1]
    assert managers[0].save(VM, AT) == managers[1].save(VM, AT)


@pytest.mark.req("R-IRQ-003")
def test_a_type_naming_msix_gets_the_place_its_capability_names() -> None:
    assert isinstance(NVME.behaviour, MsixTable)
    assert NVME.behaviour.place == MsixPlace(33, 0, 0x3000, 0, 0x2000)
    assert NVME.behaviour.place.table == range(0x3000, 0x3000 + 33 * 16)
    assert NVME.behaviour.place.pba == range(0x2000, 0x2008)
    again = parse_type_file(type_file_json([NVME]))[0].dtype
    assert again.fingerprint() == NVME.fingerprint()
    assert isinstance(again.behaviour, MsixTable)
    assert again.behaviour.place == NVME.behaviour.place


@pytest.mark.req("R-IRQ-003")
@pytest.mark.parametrize(("change", "match"), [
    ({"capabilities": ()}, "the type has none"),
    ({"capabilities": (msix_capability(33, 0x3E00, 0x2000),)},
     r"MSI-X table \(0x3e00-0x400f of BAR0\) lies inside"),
    ({"capabilities": (msix_capability(33, 0x3000, 0x2001),)}, r"MSI-X PBA \(0x2000-0x2007 of BAR1\)"),
    ({"capabilities": (msix_capability(33, 0x2000, 0x2100),)}, "overlap"),
    ({"bars": (BarSpec(BarKind.IO, 256), BarSpec(BarKind.MEM32, 16 << 10)),
      "capabilities": (msix_capability(4, 0x0, 0x1001),)}, "BAR0"),
])  # fmt: skip
def test_msix_needs_a_table_and_pba_inside_memory_bars(change: dict[str, Any], match: str) -> None:
    fields = {"bars": (BarSpec(BarKind.MEM32, 16 << 10),), "behaviour": MsixTable()} | change
    with pytest.raises(DeviceTypeError, match=match):
        DeviceType(name="msix-bad", vendor_id=0x1B36, device_id=0x2, class_code=0xFF0000, **fields)
    capability = msix_capability(4, 0, 0x1000)
    moved = DeviceType(name="msix-moved", vendor_id=0x1B36, device_id=0x2, class_code=0xFF0000,
                       bars=(BarSpec(BarKind.MEM32, 16 << 10),), capabilities=(capability,),
                       behaviour=MsixTable(MsixPlace(5, 0, 0, 0, 0x2000)))  # fmt: skip
    assert isinstance(moved.behaviour, MsixTable)
    assert moved.behaviour.place == MsixPlace(4, 0, 0, 0, 0x1000)  # the capability's, not the one given


# ------------------------------------------------------------------ R-IRQ-004


@pytest.mark.req("R-IRQ-004")
def test_interrupt_disable_is_writable_and_interrupt_status_stays_clear() -> None:
    dm = _manager(E1000)
    dm.config_write(VM, AT, 0x04, 2, 0x0402)
    assert dm.config_read(VM, AT, 0x04, 4) == 0x0402 | 0x0010 << 16
    dm.config_write(VM, AT, 0x06, 2, 0x0008)
    dm.config_write(VM, AT, 0x04, 2, 0x0002)
    assert dm.config_read(VM, AT, 0x04, 4) == 0x0002 | 0x0010 << 16
    assert dm.resolve(VM, "memory", BAR0) == (AT, 0)  # decode unaffected by bit 10
    dm.config_write(VM, AT, 0x04, 2, 0x0400)
    dm.reset(VM, AT)
    assert dm.config_read(VM, AT, 0x04, 4) == 0x0010 << 16


@pytest.mark.req("R-IRQ-004")
def test_a_pin_without_interrupt_disable_or_a_set_interrupt_status_is_rejected() -> None:
    image, wmask, w1c = _space(E1000)
    wmask[0x05] &= ~0x04
    _rejected(image, wmask, w1c, r"config byte 0x005: a function with an interrupt pin")
    image[0x3D] = 0
    check_pci_rules(ConfigSpace(bytes(image), bytes(wmask), bytes(w1c)))
    image, wmask, w1c = _space(E1000)
    image[0x06] |= 0x08
    _rejected(image, wmask, w1c, r"config byte 0x006: Interrupt Status")
