"""Scenario cases for interrupt registers: MSI, MSI-X and INTx (R-IRQ-001..R-IRQ-004), and the PCI
Express capability of the catalogue's PCI Express types (R-DT-009); and a restore of an earlier
revision's blob (R-MIG-002).

System cases (``full_api``), added by one line of
:func:`vpcid.conformance.cases.system_cases`. They run on the catalogue's
``nvme`` (MSI for 32 vectors at 0x50, MSI-X with 33 vectors at 0xb0, table
at BAR0 0x3000 and PBA at BAR0 0x2000), on ``e1000`` (INTx) and on
:data:`IRQ_SINK`, which each case defines with ``define_type``: per-vector
maskable MSI, and an MSI-X table and PBA in two different BARs.

Every case reads back after each write, so an implementation that keeps a
read-only bit, drops a table write, lets a guest set a pending bit or
forgets the reset masks shows it in an observation.
"""

from __future__ import annotations

import dataclasses

from vpcid.conformance.cases import CMD_MEM, SUITE_VM, _Body, _Fn, _Sys
from vpcid.conformance.trace import define_type_op
from vpcid.conformance.typefile import type_json
from vpcid.model import Bdf, DataManager, DeviceType
from vpcid.model import blob as blobfmt
from vpcid.model.behaviour import PAGE_SIZE, MsixTable
from vpcid.model.catalog import A100, E1000, NVME, msi64_capability, msix_capability
from vpcid.model.devicetype import BarKind, BarSpec, accepting
from vpcid.model.header import CAP_EXPRESS, EXPRESS_CAPABILITY_SIZE, MsixPlace

IRQ_BDF = Bdf(0, 0x0A, 0)
"""Where the cases plug their device."""
ONES32 = 0xFFFF_FFFF
BASE = 0xE000_0000
"""Memory BARs from here, 64 KiB apart."""

IRQ_SINK = DeviceType(
    name="irq-sink",
    vendor_id=0x1B36, device_id=0x00F3, revision=0x01, class_code=0x00FF00,
    subsystem_vendor_id=0x1AF4, subsystem_id=0x1100, interrupt_pin=2,
    bars=(BarSpec(BarKind.MEM32, 4096), BarSpec(BarKind.IO, 32), BarSpec(BarKind.MEM32, 4096)),
    capabilities=(
        msi64_capability(capable=3, maskable=True, offset=0x40),
        msix_capability(8, table=0x100 | 2, pba=0x800 | 0, offset=0x60),
    ),
    behaviour=MsixTable(),
)  # fmt: skip
"""64-bit MSI with per-vector masking for 8 vectors at 0x40; MSI-X with 8 vectors at 0x60, its table at
BAR2 0x100 and its PBA at BAR0 0x800 (R-IRQ-001..R-IRQ-003)."""


def _device(body: _Body, dtype: DeviceType, *, define: bool = False) -> _Fn:
    """``dtype`` plugged at :data:`IRQ_BDF` of a new suite VM, its memory BARs placed from :data:`BASE`."""
    if define:
        body.add(define_type_op(type_json(dtype)))
    body.setup()
    body.create_vm(SUITE_VM)
    f = body.plug(SUITE_VM, IRQ_BDF, dtype)
    for n, index in enumerate(
        i for i in dtype.implemented if (b := dtype.bar(i)) and b.kind is not BarKind.IO
    ):
        f.program(f.bar(index), BASE + 0x10000 * n)
    f.command(CMD_MEM)
    return f


def _place(dtype: DeviceType) -> MsixPlace:
    """Where ``dtype``'s MSI-X capability puts its table and PBA (the ``msix`` behaviour's binding)."""
    behaviour = dtype.behaviour
    assert isinstance(behaviour, MsixTable)
    assert behaviour.place is not None
    return behaviour.place


def _table(dtype: DeviceType) -> tuple[int, int]:
    """Guest addresses of the MSI-X table and PBA where :func:`_device` puts them."""
    place = _place(dtype)
    memory = [i for i in dtype.implemented if (b := dtype.bar(i)) and b.kind is not BarKind.IO]
    return (BASE + 0x10000 * memory.index(place.table_bar) + place.table_offset,
            BASE + 0x10000 * memory.index(place.pba_bar) + place.pba_offset)  # fmt: skip


def _msix_table_case(s: _Sys, dtype: DeviceType) -> None:
    """R-IRQ-003 on one type: masks at power-on, entry writes by dword and qword, Vector Control's
    reserved bits, accesses of other widths, the read-only PBA, memory next to them."""
    body = _Body()
    f = _device(body, dtype, define=dtype is not NVME)
    table, pba = _table(dtype)
    last = _place(dtype).vectors - 1
    f.check("R-IRQ-003")
    for vector in (0, 1, last):
        f.mr(table + 16 * vector + 12)
    f.mr(table, 8)
    f.mr(pba, 8)
    f.mw(table, 8, 0x0000_0001_FEE0_100C)
    f.mw(table + 8, 4, 0x4041)
    f.mr(table, 8)
    f.mr(table + 8, 8)
    f.mw(table + 12, 4, 0xFFFF_FFFE)  # reserved bits set, mask clear
    f.mr(table + 12)
    f.mr(table + 16, 8)  # the next entry is untouched
    f.mw(table + 16 * last + 8, 8, 0xFFFF_FFFF_0000_0042)  # data and Vector Control in one qword
    f.mr(table + 16 * last + 8, 8)
    f.mr(table + 16 * (last + 1), 8)  # past the table
    for offset, width in ((0, 1), (12, 1), (2, 2), (2, 4), (4, 8)):
        f.mw(table + offset, width, (1 << 8 * width) - 2)
        f.mr(table + offset, width)
    f.mr(table, 8)
    f.mw(pba, 8, 0xFFFF_FFFF_FFFF_FFFF)
    f.mw(pba, 4, ONES32)
    f.mr(pba, 8)
    f.mr(pba, 4)
    for address in (table - 4, table + 16 * (last + 1), pba + 8):
        f.mw(address, 4, 0x5A5A_A5A5)
        f.mr(address)
    s.add(f"msix-table-{dtype.name}", "device-types",
          f"{dtype.name}'s MSI-X table: every vector masked at power-on, entries written by dword and "
          "qword, Vector Control keeping bit 0 only, other widths reading zero and writing nothing, a "
          "read-only PBA, memory-like bytes next to them", body)  # fmt: skip


def _hostile_msix_blobs() -> list[bytes]:
    """NVMe blobs whose MSI-X state no guest can make: a reserved Vector Control bit set on the last
    vector (in its low and its high byte); a pending bit one past the last vector; and, accepted,
    pending bits of real vectors, and a table with every vector unmasked (its page left out)."""
    dm = DataManager()
    dm.create_vm(SUITE_VM)
    bdf = Bdf(0, 4, 0)
    dm.plug(SUITE_VM, bdf, NVME)
    record = blobfmt.decode_instance(dm.save(SUITE_VM, bdf))
    place = _place(NVME)
    page_size = PAGE_SIZE

    def with_byte(bar: int, offset: int, value: int) -> bytes:
        pages = {(b, n): bytearray(c) for b, n, c in record.pages}
        page = pages.setdefault((bar, offset // page_size), bytearray(page_size))
        page[offset % page_size] |= value
        ordered = tuple((b, n, bytes(c)) for (b, n), c in sorted(pages.items()))
        return blobfmt.encode_instance(dataclasses.replace(record, pages=ordered))

    last = place.vectors - 1
    past = place.pba_offset + place.vectors // 8
    table_page = (place.table_bar, place.table_offset // page_size)
    unmasked = tuple(page for page in record.pages if page[:2] != table_page)  # every vector unmasked
    return [
        with_byte(place.table_bar, place.table_offset + 16 * last + 12, 0x02),
        with_byte(place.table_bar, place.table_offset + 16 * last + 15, 0x80),
        with_byte(place.pba_bar, past, 1 << (place.vectors % 8)),
        with_byte(place.pba_bar, place.pba_offset, 0x01),
        blobfmt.encode_instance(dataclasses.replace(record, pages=unmasked)),
    ]


def _msix_lifecycle_case(s: _Sys) -> None:
    """R-IRQ-003: reset masks every vector again and clears the table; save and restore carry it."""
    body = _Body()
    f = _device(body, NVME)
    table, _ = _table(NVME)
    f.check("R-IRQ-003")
    f.mw(table + 16 * 5, 8, 0xFEE0_2004)  # entry 5's first byte, right after entry 4's Vector Control
    f.mw(table + 16 * 5 + 12, 4, 0)
    f.save("irq")
    f.reset()
    f.setup()
    f.program(f.bar(0), BASE)
    f.command(CMD_MEM)
    f.check("R-IRQ-003")
    f.mr(table + 16 * 5, 8)
    f.mr(table + 16 * 5 + 12)
    f.restore("irq")
    f.mr(table + 16 * 5, 8)
    f.mr(table + 16 * 5 + 12)
    f.mr(table + 16 * 6 + 12)
    f.save("after")
    f.check("R-SR-003")
    for blob in _hostile_msix_blobs():  # reserved Vector Control bits, a pending bit past the vectors
        f.restore(data=blob)
    f.mr(table + 16 * 5, 8)
    s.add("msix-table-reset-restore", "save-restore",
          "reset clears the MSI-X table and masks every vector again; save and restore carry the table as "
          "BAR data", body)  # fmt: skip


def _msix_capability_case(s: _Sys) -> None:
    """R-IRQ-002: MSI-X Message Control keeps Enable and Function Mask; size, table and PBA are fixed."""
    body = _Body()
    f = _device(body, NVME)
    f.check("R-IRQ-002")
    for value in (0xFFFF, 0x4000, 0x0000, 0x07FF):
        f.cw(0xB2, 2, value)
        f.cr(0xB0)
    for offset in (0xB4, 0xB8):
        f.cw(offset, 4, ONES32)
        f.cr(offset)
    f.cw(0xB0, 4, ONES32)
    f.cr(0xB0)
    s.add("msix-capability-control", "configuration-space",
          "MSI-X Message Control: Enable and Function Mask writable, Table Size and the table and PBA "
          "locations read-only", body)  # fmt: skip


def _msi_case(s: _Sys) -> None:
    """R-IRQ-001 on nvme (MSI, 64-bit, 32 vectors) and irq-sink (per-vector masking, 8 vectors)."""
    body = _Body()
    body.add(define_type_op(type_json(IRQ_SINK)))
    body.setup()
    body.create_vm(SUITE_VM)
    for bdf, dtype, at in ((IRQ_BDF, NVME, 0x50), (Bdf(0, 0x0B, 0), IRQ_SINK, 0x40)):
        f = body.plug(SUITE_VM, bdf, dtype)
        f.check("R-IRQ-001")
        for offset, width, value in ((at + 2, 2, 0xFFFF), (at + 4, 4, ONES32), (at + 8, 4, ONES32),
                                     (at + 12, 4, ONES32)):  # fmt: skip
            f.cw(offset, width, value)
            f.cr(offset & ~3)
        f.cw(at + 2, 2, 0x0000)
        f.cr(at)
        if dtype is IRQ_SINK:
            for value in (ONES32, 0x0000_00A5):
                f.cw(at + 0x10, 4, value)
                f.cr(at + 0x10)
            f.cw(at + 0x14, 4, ONES32)
            f.cr(at + 0x14)
    s.add("msi-registers", "configuration-space",
          "MSI: enable and Multiple Message Enable writable, Multiple Message Capable and the other control "
          "bits read-only, address dword aligned, data 16 bits; mask bits writable for the vectors the "
          "function can use, pending bits read-only", body)  # fmt: skip


def _intx_case(s: _Sys) -> None:
    """R-IRQ-004: Interrupt Disable writable without effect on decode; Interrupt Status stays clear."""
    body = _Body()
    f = _device(body, E1000)
    f.check("R-IRQ-004")
    f.cr(0x04)
    f.cw(0x04, 2, 0x0402)
    f.cr(0x04)
    f.mr(BASE)
    f.cw(0x06, 2, 0x0008)
    f.cw(0x04, 4, 0x0008_0402)
    f.cr(0x04)
    f.cw(0x04, 2, 0x0002)
    f.cr(0x04)
    f.cw(0x04, 2, 0x0400)
    f.reset()
    f.cr(0x04)
    f.cr(0x3C)
    s.add("intx-bits", "configuration-space",
          "INTx: command bit 10 (Interrupt Disable) writable and cleared by reset, status bit 3 "
          "(Interrupt Status) read-only and clear since the manager raises no interrupt; decode "
          "unaffected", body)  # fmt: skip


def _express_capability_case(s: _Sys) -> None:
    """R-DT-009: the catalogue's PCI Express functions show a whole version-2 PCI Express capability."""
    body = _Body()
    body.setup()
    body.create_vm(SUITE_VM)
    for bdf, dtype in ((IRQ_BDF, NVME), (Bdf(0, 0x0B, 0), A100)):
        f = body.plug(SUITE_VM, bdf, dtype)
        at = next(e.offset for e in dtype.chain if e.cap_id == CAP_EXPRESS)
        f.check("R-DT-009")
        f.cr(0x34, 1)
        for offset in range(at, at + EXPRESS_CAPABILITY_SIZE[2], 4):
            f.cr(offset)
    s.add("pci-express-capability", "device-types",
          "nvme and a100 are PCI Express functions: each carries a version 2 PCI Express capability of "
          "all its 0x3c bytes", body)  # fmt: skip


REVISED_NIC = DeviceType(
    name="revised-nic",
    vendor_id=0x8086, device_id=0x100E, revision=0x02, class_code=0x020000,
    subsystem_vendor_id=0x8086, subsystem_id=0x001E, interrupt_pin=1,
    bars=(BarSpec(BarKind.MEM32, 128 << 10), BarSpec(BarKind.IO, 64)),
)  # fmt: skip
"""Revision 2 of a NIC; :data:`REVISED_NIC_3` (revision 3, another subsystem ID) accepts its blobs."""
REVISED_NIC_3 = accepting(dataclasses.replace(REVISED_NIC, revision=0x03, subsystem_id=0x0100), REVISED_NIC)


def _revision_blob(dtype: DeviceType) -> bytes:
    """A blob of ``dtype`` at :data:`IRQ_BDF`: BAR0 at :data:`BASE`, memory decode on, a dword written."""
    dm = DataManager()
    dm.create_vm(SUITE_VM)
    dm.plug(SUITE_VM, IRQ_BDF, dtype)
    dm.config_write(SUITE_VM, IRQ_BDF, 0x10, 4, BASE)
    dm.config_write(SUITE_VM, IRQ_BDF, 0x04, 2, CMD_MEM | 0x0400)
    dm.config_write(SUITE_VM, IRQ_BDF, 0x3C, 1, 0x0B)
    dm.mmio_write(SUITE_VM, BASE + 0x10, 4, 0xC0FF_EE00)
    return dm.save(SUITE_VM, IRQ_BDF)


def _revision_case(s: _Sys) -> None:
    """R-MIG-001, R-MIG-002: revision 3 declares it accepts revision 2 (a list naming it twice is refused),
    still refuses a blob of its own fingerprint holding revision 2's ID, restores revision 2's blob and
    refuses an unaccepted revision's."""
    body = _Body()
    body.check("R-MIG-001")
    twice = type_json(REVISED_NIC_3)
    twice["accepts"] = twice["accepts"] * 2
    body.add(define_type_op(twice))  # a fingerprint listed twice: refused
    body.add(define_type_op(type_json(REVISED_NIC_3)))
    body.setup()
    body.create_vm(SUITE_VM)
    f = body.plug(SUITE_VM, IRQ_BDF, REVISED_NIC_3)
    f.check("R-MIG-002")
    own = blobfmt.decode_instance(_revision_blob(REVISED_NIC_3))
    forged = own.config[:0x08] + bytes((0x02,)) + own.config[0x09:]  # revision 2's ID in its own blob
    f.restore(data=blobfmt.encode_instance(dataclasses.replace(own, config=forged)))
    f.restore(data=_revision_blob(REVISED_NIC))
    for offset in (0x04, 0x08, 0x10, 0x2C, 0x3C):
        f.cr(offset)
    f.mr(BASE + 0x10)
    f.save("revised")
    f.restore(data=_revision_blob(dataclasses.replace(REVISED_NIC, revision=0x01)))
    f.restore(data=_revision_blob(dataclasses.replace(REVISED_NIC, subsystem_id=0x0200)))
    f.cr(0x2C)
    f.mr(BASE + 0x10)
    s.add("type-revision-restore", "save-restore",
          "a type that accepts an earlier revision restores its blob: writable bits and BAR data from the "
          "blob, read-only bits (revision, subsystem) from the type, saved again under the type's own "
          "fingerprint; a blob of its own fingerprint with another revision ID and blobs of revisions it "
          "does not accept are refused", body)  # fmt: skip


REBADGED_NIC = dataclasses.replace(
    REVISED_NIC, name="rebadged-nic", vendor_id=0x8087, subsystem_vendor_id=0x8087
)
"""The NIC sold under another vendor ID (bit 0 set where :data:`REVISED_NIC`'s is clear)."""
REBADGED_NIC_3 = accepting(dataclasses.replace(REBADGED_NIC, vendor_id=0x8086, revision=0x03), REBADGED_NIC)
"""Revision 3 under the first vendor ID, accepting the other vendor's blobs (R-MIG-001)."""


def _revision_identity_case(s: _Sys) -> None:
    """R-MIG-002: identity bytes come from the restoring type, whichever bits the accepted revision set."""
    body = _Body()
    body.add(define_type_op(type_json(REBADGED_NIC_3)))
    body.setup()
    body.create_vm(SUITE_VM)
    f = body.plug(SUITE_VM, IRQ_BDF, REBADGED_NIC_3)
    f.check("R-MIG-002")
    f.restore(data=_revision_blob(REBADGED_NIC))
    for offset in (0x00, 0x08, 0x2C):
        f.cr(offset)
    f.save("rebadged")
    s.add("type-revision-identity", "save-restore",
          "a blob of an accepted revision with another vendor ID restores with the restoring type's "
          "vendor ID, revision and subsystem: read-only bits never come from the blob", body)  # fmt: skip


def irq_cases(s: _Sys) -> None:
    """Add every interrupt case to ``s`` (one line of :func:`vpcid.conformance.cases.system_cases`)."""
    _msix_table_case(s, NVME)
    _msix_table_case(s, IRQ_SINK)
    _msix_lifecycle_case(s)
    _msix_capability_case(s)
    _msi_case(s)
    _intx_case(s)
    _express_capability_case(s)
    _revision_case(s)
    _revision_identity_case(s)
