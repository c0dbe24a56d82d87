"""Save, restore, VM snapshots and migration (R-SR-001..R-SR-009)."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Iterable

import pytest
from conftest import CATALOG_TYPES, NIC, VM, enable, program_bar
from vpcid.model import (
    BarKind,
    BarSpec,
    Bdf,
    BlobError,
    BlobMismatch,
    DataManager,
    DeviceType,
    InvalidArgument,
    Profile,
    Register,
    RegisterClass,
    UnknownDevice,
    UnknownVm,
    VpcidError,
)
from vpcid.model.blob import (
    decode_instance,
    decode_snapshot,
    encode_instance,
    encode_snapshot,
)
from vpcid.model.catalog import A100, E1000, EDU, NVME

NVME_AT = Bdf(0, 3, 0)
EDU_AT = Bdf(0, 4, 0)
A100_AT = Bdf(1, 0, 0)
E1000_BAR0, E1000_BAR1, E1000_ROM = 0xFEBC_0000, 0xC000, 0xFEB0_0000
EDU_BAR0 = 0xFE00_0000
NVME_BAR0 = 0x1_0000_0000
A100_BAR0, A100_BAR1, A100_BAR3 = 0xF000_0000, 0x10_0000_0000, 0x20_0000_0000
PLACES: tuple[tuple[Bdf, DeviceType], ...] = ((NIC, E1000), (NVME_AT, NVME), (EDU_AT, EDU), (A100_AT, A100))
DEFERRED = Profile.from_mapping({"bar_move_while_decoding": "deferred"})
IGNORED = Profile.from_mapping({"bar_move_while_decoding": "ignored"})
LAST_MAPPED = Profile.from_mapping({"overlap": "last-mapped"})
LATCHED = Profile.from_mapping({"cf8_low_bits": "latched"})
E1000_BIG = dataclasses.replace(E1000, bars=(BarSpec(BarKind.MEM32, 256 << 10), BarSpec(BarKind.IO, 64)))
"""Same name as the catalog e1000, different BAR0 size: a different fingerprint."""
WIDGET = DeviceType(name="widget", vendor_id=0x1AF4, device_id=0x1234, class_code=0xFF0000,
                    bars=(BarSpec(BarKind.MEM32, 4096),))  # fmt: skip
REGS = DeviceType(
    name="regs", vendor_id=0x1AF4, device_id=0x10FF, class_code=0xFF0000,
    bars=(BarSpec(BarKind.MEM32, 4096),),
    registers=(
        Register(0x40, 4, RegisterClass.RO, 0x1234_5678), Register(0x44, 4, RegisterClass.RW, 0),
        Register(0x48, 2, RegisterClass.RW1C, 0), Register(0x4C, 4, RegisterClass.RSVD, 0),
    ),
    command_mask=0x2, status_rw1c=0x0100,
)  # fmt: skip
"""A type with every device-specific register class and narrow command and status masks."""


# ------------------------------------------------------------------ helpers


def place_id(value: object) -> str:
    return value.name if isinstance(value, DeviceType) else str(value)


def new_dm(profile: Profile | None = None, *vms: int) -> DataManager:
    dm = DataManager(profile or Profile())
    for vm in vms or (VM,):
        dm.create_vm(vm)
    return dm


def knowing_catalog(profile: Profile | None = None) -> DataManager:
    """A manager with no VM that knows every catalog type (for restore_vm)."""
    dm = DataManager(profile or Profile())
    for dtype in CATALOG_TYPES:
        dm.register_type(dtype)
    return dm


def populate(dm: DataManager, vm: int = VM) -> None:
    """Plug every catalog type, program and enable all BARs, write data and 0xCF8."""
    for bdf, dtype in PLACES:
        dm.plug(vm, bdf, dtype)
    program_bar(dm, vm, NIC, 0, E1000_BAR0)
    program_bar(dm, vm, NIC, 1, E1000_BAR1)
    dm.config_write(vm, NIC, 0x30, 4, E1000_ROM | 1)
    dm.config_write(vm, NIC, 0x0C, 1, 0x10)
    dm.config_write(vm, NIC, 0x3C, 1, 0x0B)
    dm.config_write(vm, NIC, 0x44, 2, 0x0103)
    program_bar(dm, vm, NVME_AT, 0, NVME_BAR0)
    program_bar(dm, vm, EDU_AT, 0, EDU_BAR0)
    program_bar(dm, vm, A100_AT, 0, A100_BAR0)
    program_bar(dm, vm, A100_AT, 1, A100_BAR1)
    program_bar(dm, vm, A100_AT, 3, A100_BAR3)
    for bdf in (EDU_AT, NIC, A100_AT, NVME_AT):
        enable(dm, vm, bdf)
    dm.mmio_write(vm, E1000_BAR0, 4, 0xDEADBEEF)
    dm.mmio_write(vm, E1000_BAR0 + 0x1_0000, 8, 0x0123_4567_89AB_CDEF)
    dm.io_write(vm, E1000_BAR1 + 4, 4, 0x5A5A5A5A)
    dm.mmio_write(vm, EDU_BAR0 + 4, 4, 0x1234_5678)
    dm.mmio_write(vm, EDU_BAR0 + 0x20, 4, 0x80)
    dm.mmio_write(vm, NVME_BAR0 + 0x3000, 8, 0x1111_2222_3333_4444)
    dm.mmio_write(vm, A100_BAR1 + (63 << 30), 8, 0xA100)
    dm.mmio_write(vm, A100_BAR3 + 0x1FF_FFF8, 8, 0xFFFF)
    dm.io_write(vm, 0xCF8, 4, 0x8000_1010)


def state(dm: DataManager) -> tuple[object, ...]:
    """Everything observable about a manager's VMs, for before/after comparisons."""
    return tuple((vm, dm.snapshot(vm), dm.tables(vm), dm.cf8(vm)) for vm in dm.vm_ids())


def observe(dm: DataManager, vm: int, bdfs: Iterable[Bdf] | None = None) -> list[object]:
    """Reads of configuration space, BAR contents and tables of a VM's instances."""
    tables = dm.tables(vm)
    chosen = [b for b, _ in tables.config] if bdfs is None else list(bdfs)
    out: list[object] = []
    for bdf in chosen:
        size = dm.device_type(vm, bdf).config_size
        out.append(tuple(dm.config_read(vm, bdf, o, 4) for o in range(0, size, 4)))
        out.append(tuple(dm.config_read(vm, bdf, o, 1) for o in range(0, 0x40)))
    for space, entries in (("io", tables.io), ("memory", tables.memory)):
        for e in entries:
            if e.bdf not in chosen:
                continue
            out.append(e)
            for offset in sorted({0, 4, 8, 0x20, e.size // 2, e.size - 8, e.size - 4, 0x1000 % e.size}):
                if offset + 4 > e.size:
                    continue
                address = e.base + offset
                out.append(dm.resolve(vm, space, address))
                if space == "io":
                    out.append(dm.io_read(vm, address, 4))
                else:
                    out.append(dm.mmio_read(vm, address, 4))
            if space == "memory" and e.size >= 0x1_0000:
                out.append(dm.mmio_read(vm, e.base + 0x1_0000, 8))
    return out


def observe_platform(dm: DataManager, vm: int) -> list[object]:
    """0xCF8 and a few configuration reads through the data window and ECAM."""
    out: list[object] = [dm.io_read(vm, 0xCF8, 4), dm.io_read(vm, 0xCFC, 4)]
    for bdf, _ in dm.tables(vm).config:
        ecam = 0xB000_0000 + (bdf.bus << 20) + (bdf.device << 15) + (bdf.function << 12)
        out.append(dm.mmio_read(vm, ecam, 4))
        out.append(dm.mmio_read(vm, ecam + 0x10, 8))
    return out


def resign(blob: bytes, **changes: object) -> bytes:
    """Decode an instance blob, change fields, re-encode: the digest stays valid."""
    return encode_instance(dataclasses.replace(decode_instance(blob), **changes))  # type: ignore[arg-type]


def with_config(blob: bytes, edits: dict[int, int]) -> bytes:
    config = bytearray(decode_instance(blob).config)
    for offset, value in edits.items():
        config[offset] = value
    return resign(blob, config=bytes(config))


def with_window(blob: bytes, index: int, base: int | None) -> bytes:
    windows = list(decode_instance(blob).windows)
    windows[index] = base
    return resign(blob, windows=tuple(windows))


def page(fill: dict[int, int]) -> bytes:
    content = bytearray(4096)
    for offset, value in fill.items():
        content[offset] = value
    return bytes(content)


def resign_snapshot(snap: bytes, **changes: object) -> bytes:
    return encode_snapshot(dataclasses.replace(decode_snapshot(snap), **changes))  # type: ignore[arg-type]


def assert_restore_rejected(
    dm: DataManager, vm: int, bdf: Bdf, blob: object, exc: type[VpcidError] = BlobMismatch
) -> None:
    """The restore raises ``exc`` and changes nothing: instance blob and VM snapshots (R-SR-007)."""
    saved = dm.save(vm, bdf)
    before = state(dm)
    with pytest.raises(exc) as info:
        dm.restore(vm, bdf, blob)  # type: ignore[arg-type]
    assert info.value.kind == exc.kind
    assert dm.save(vm, bdf) == saved
    assert state(dm) == before


def assert_restore_vm_rejected(
    dm: DataManager, vm: int, snap: object, exc: type[VpcidError] = BlobMismatch
) -> None:
    before = state(dm)
    with pytest.raises(exc) as info:
        dm.restore_vm(vm, snap)  # type: ignore[arg-type]
    assert info.value.kind == exc.kind
    assert state(dm) == before


def programmed_e1000(profile: Profile | None = None) -> DataManager:
    dm = new_dm(profile)
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, E1000_BAR0)
    program_bar(dm, VM, NIC, 1, E1000_BAR1)
    dm.config_write(VM, NIC, 0x30, 4, E1000_ROM | 1)
    enable(dm, VM, NIC)
    dm.mmio_write(VM, E1000_BAR0 + 8, 4, 0xABCD)
    return dm


# ---------------------------------------------------------------- R-SR-001


@pytest.mark.req("R-SR-001")
def test_save_changes_nothing(any_profile: Profile) -> None:
    dm = new_dm(any_profile)
    populate(dm)
    before = state(dm)
    observed = observe(dm, VM)
    blobs = [dm.save(VM, bdf) for bdf, _ in PLACES]
    assert state(dm) == before
    assert [dm.save(VM, bdf) for bdf, _ in PLACES] == blobs
    assert observe(dm, VM) == observed
    assert state(dm) == before


@pytest.mark.req("R-SR-001", "R-BLOB-003")
@pytest.mark.parametrize(("bdf", "dtype"), PLACES, ids=place_id)
def test_save_returns_instance_blob(bdf: Bdf, dtype: DeviceType) -> None:
    dm = new_dm()
    populate(dm)
    blob = dm.save(VM, bdf)
    assert isinstance(blob, bytes)
    assert blob[:8] == b"VPCIDBLB"
    record = decode_instance(blob)
    assert record.type_name == dtype.name
    assert record.fingerprint == dtype.fingerprint()
    size = dtype.config_size
    config = b"".join(dm.config_read(VM, bdf, o, 4).to_bytes(4, "little") for o in range(0, size, 4))
    assert record.config == config


@pytest.mark.req("R-SR-001")
def test_save_does_not_disturb_deferred_or_last_mapped_state() -> None:
    profile = Profile.from_mapping({"bar_move_while_decoding": "deferred", "overlap": "last-mapped"})
    dm = programmed_e1000(profile)
    program_bar(dm, VM, NIC, 0, 0xFEA0_0000)  # pending move
    before = state(dm)
    dm.save(VM, NIC)
    dm.snapshot(VM)
    assert state(dm) == before
    assert dm.resolve(VM, "memory", E1000_BAR0) == (NIC, 0)


@pytest.mark.req("R-SR-001")
def test_save_unknown_device_or_vm_rejected(programmed: DataManager) -> None:
    before = state(programmed)
    with pytest.raises(UnknownDevice):
        programmed.save(VM, Bdf(0, 3, 0))
    with pytest.raises(UnknownVm):
        programmed.save(2, NIC)
    with pytest.raises(InvalidArgument):
        programmed.save(VM, 0x10)  # type: ignore[arg-type]
    assert state(programmed) == before


# ---------------------------------------------------------------- R-SR-002


@pytest.mark.req("R-SR-002")
@pytest.mark.parametrize(("bdf", "dtype"), PLACES, ids=place_id)
def test_restore_into_fresh_instance_gives_identical_observations(
    any_profile: Profile, bdf: Bdf, dtype: DeviceType
) -> None:
    source = new_dm(any_profile)
    populate(source)
    blob = source.save(VM, bdf)
    target = new_dm(any_profile)
    target.plug(VM, bdf, dtype)
    target.restore(VM, bdf, blob)
    assert target.save(VM, bdf) == blob
    assert observe(target, VM, [bdf]) == observe(source, VM, [bdf])


@pytest.mark.req("R-SR-002")
def test_restore_every_instance_into_fresh_vm(any_profile: Profile) -> None:
    source = new_dm(any_profile)
    populate(source)
    target = new_dm(any_profile)
    for bdf, dtype in PLACES:
        target.plug(VM, bdf, dtype)
        target.restore(VM, bdf, source.save(VM, bdf))
    assert target.tables(VM) == source.tables(VM)
    assert observe(target, VM) == observe(source, VM)


@pytest.mark.req("R-SR-002")
def test_restore_replaces_existing_state() -> None:
    source = programmed_e1000()
    blob = source.save(VM, NIC)
    target = new_dm()
    target.plug(VM, NIC, E1000)
    program_bar(target, VM, NIC, 0, 0xE000_0000)
    program_bar(target, VM, NIC, 1, 0xD000)
    enable(target, VM, NIC)
    target.mmio_write(VM, 0xE000_0000 + 0x40, 4, 0x99)
    target.config_write(VM, NIC, 0x3C, 1, 0x44)
    target.restore(VM, NIC, blob)
    assert target.save(VM, NIC) == blob
    assert observe(target, VM) == observe(source, VM)
    assert target.resolve(VM, "memory", 0xE000_0000) is None
    assert target.resolve(VM, "io", 0xD000) is None
    assert target.mmio_read(VM, 0xE000_0040, 4) == 0xFFFF_FFFF
    assert target.mmio_read(VM, E1000_BAR0 + 0x40, 4) == 0


@pytest.mark.req("R-SR-002")
def test_restore_rebuilds_table_entries() -> None:
    source = programmed_e1000()
    blob = source.save(VM, NIC)
    target = new_dm()
    target.plug(VM, NIC, E1000)
    assert target.tables(VM).memory == ()
    target.restore(VM, NIC, blob)
    assert target.tables(VM) == source.tables(VM)
    assert target.resolve(VM, "memory", E1000_BAR0 + 0x1_FFFF) == (NIC, 0)
    assert target.resolve(VM, "memory", E1000_ROM) == (NIC, 6)
    assert target.resolve(VM, "io", E1000_BAR1 + 63) == (NIC, 1)
    assert target.mmio_read(VM, E1000_ROM, 2) == 0xAA55


@pytest.mark.req("R-SR-002")
def test_restore_of_non_decoding_blob_unmaps() -> None:
    dm = programmed_e1000()
    blank = new_dm()
    blank.plug(VM, NIC, E1000)
    dm.restore(VM, NIC, blank.save(VM, NIC))
    assert dm.tables(VM).memory == ()
    assert dm.tables(VM).io == ()
    assert dm.save(VM, NIC) == blank.save(VM, NIC)


@pytest.mark.req("R-SR-002")
def test_restored_bars_begin_decoding_in_ascending_index_order() -> None:
    """Under last-mapped, the ROM (index 6) begins decoding after BAR0 on restore."""
    dm = new_dm(LAST_MAPPED)
    dm.plug(VM, NIC, E1000)
    overlap = 0xFEB0_0000  # BAR0 (128 KiB) and ROM (64 KiB) at the same base
    dm.config_write(VM, NIC, 0x30, 4, overlap | 1)
    enable(dm, VM, NIC, 0x2)  # ROM decodes, BAR0 (address 0) does not
    program_bar(dm, VM, NIC, 0, overlap)  # BAR0 begins decoding after the ROM
    assert dm.resolve(VM, "memory", overlap) == (NIC, 0)
    blob = dm.save(VM, NIC)
    for target in (dm, new_dm(LAST_MAPPED)):
        if target is not dm:
            target.plug(VM, NIC, E1000)
        target.restore(VM, NIC, blob)
        assert target.resolve(VM, "memory", overlap) == (NIC, 6)
        assert target.resolve(VM, "memory", overlap + 0x1_0000) == (NIC, 0)
        order = decode_snapshot(target.snapshot(VM)).map_order
        assert order == ((NIC.packed, 0), (NIC.packed, 6))


@pytest.mark.req("R-SR-002")
def test_restored_bars_begin_decoding_after_existing_ones() -> None:
    """Under last-mapped, a restored instance's BARs are the most recent decodes."""
    dm = new_dm(LAST_MAPPED)
    other = Bdf(0, 9, 0)
    for bdf in (other, NIC):
        dm.plug(VM, bdf, E1000)
        program_bar(dm, VM, bdf, 0, E1000_BAR0)
        enable(dm, VM, bdf, 0x2)
    assert dm.resolve(VM, "memory", E1000_BAR0) == (NIC, 0)
    dm.restore(VM, other, dm.save(VM, other))
    assert dm.resolve(VM, "memory", E1000_BAR0) == (other, 0)


# ---------------------------------------------------------------- R-SR-003


@pytest.mark.req("R-SR-003")
@pytest.mark.parametrize("source_type", [NVME, EDU, A100], ids=lambda t: t.name)
def test_restore_rejects_other_type(source_type: DeviceType) -> None:
    source = new_dm()
    source.plug(VM, NIC, source_type)
    blob = source.save(VM, NIC)
    target = programmed_e1000()
    assert_restore_rejected(target, VM, NIC, blob)


@pytest.mark.req("R-SR-003")
def test_restore_rejects_same_name_different_fingerprint() -> None:
    assert E1000_BIG.name == E1000.name
    assert E1000_BIG.fingerprint() != E1000.fingerprint()
    other = new_dm()
    other.plug(VM, NIC, E1000_BIG)
    blob = other.save(VM, NIC)
    target = programmed_e1000()
    assert_restore_rejected(target, VM, NIC, blob)
    # And the other way round.
    assert_restore_rejected(other, VM, NIC, target.save(VM, NIC))


@pytest.mark.req("R-SR-003")
def test_restore_rejects_resigned_type_fields() -> None:
    dm = programmed_e1000()
    blob = dm.save(VM, NIC)
    fingerprint = bytearray(E1000.fingerprint())
    fingerprint[0] ^= 1
    assert_restore_rejected(dm, VM, NIC, resign(blob, fingerprint=bytes(fingerprint)))
    assert_restore_rejected(dm, VM, NIC, resign(blob, type_name="e1001"))
    assert_restore_rejected(dm, VM, NIC, resign(blob, type_name="E1000"))
    assert_restore_rejected(dm, VM, NIC, resign(blob, fingerprint=NVME.fingerprint()))


@pytest.mark.req("R-SR-003")
def test_restore_accepts_equal_definition() -> None:
    twin = dataclasses.replace(E1000)
    assert twin is not E1000
    assert twin.fingerprint() == E1000.fingerprint()
    source = programmed_e1000()
    target = new_dm()
    target.plug(VM, NIC, twin)
    target.restore(VM, NIC, source.save(VM, NIC))
    assert target.save(VM, NIC) == source.save(VM, NIC)


# ---------------------------------------------------------------- R-SR-004

IDENTITY_EDITS: dict[str, dict[int, int]] = {
    "vendor-id": {0x00: 0x87},
    "device-id": {0x03: 0x11},
    "revision": {0x08: 0x03},
    "class-code": {0x0B: 0x03},
    "header-type": {0x0E: 0x80},
    "latency-timer": {0x0D: 0x40},
    "bist": {0x0F: 0x01},
    "command-reserved": {0x05: 0x0F},
    "status-cap-list": {0x06: 0x00},
    "status-reserved-bit": {0x06: 0x11},
    "bar0-prefetch-bit": {0x10: 0x08},
    "bar0-size-bits": {0x11: 0x01},
    "bar1-io-type-bit": {0x14: 0x00},
    "bar1-size-bits": {0x14: 0x21},
    "unimplemented-bar2": {0x18: 0x10},
    "cardbus-cis": {0x28: 0x01},
    "subsystem-vendor": {0x2C: 0x00},
    "subsystem-id": {0x2F: 0x01},
    "rom-reserved-bits": {0x30: 0x02},
    "rom-size-bits": {0x31: 0x08},
    "capability-pointer": {0x34: 0x50},
    "reserved-0x35": {0x35: 0x01},
    "interrupt-pin": {0x3D: 0x02},
    "min-gnt": {0x3E: 0x01},
    "capability-id": {0x40: 0x05},
    "capability-next": {0x41: 0x50},
    "pm-capabilities": {0x42: 0x02},
    "pmcsr-read-only-bit": {0x44: 0x04},
    "pmcsr-data-select": {0x45: 0x02},
    "unclaimed-byte": {0x80: 0x01},
    "last-byte": {0xFF: 0xFF},
}


@pytest.mark.req("R-SR-004")
@pytest.mark.parametrize("edits", IDENTITY_EDITS.values(), ids=IDENTITY_EDITS.keys())
def test_restore_rejects_changed_read_only_bit(edits: dict[int, int]) -> None:
    dm = programmed_e1000()
    blob = dm.save(VM, NIC)
    config = decode_instance(blob).config
    assert any(config[o] != v for o, v in edits.items())
    assert_restore_rejected(dm, VM, NIC, with_config(blob, edits))


@pytest.mark.req("R-SR-004")
@pytest.mark.parametrize("offset", [0x00, 0x09, 0x40, 0x100, 0xFFF])
def test_restore_rejects_changed_identity_of_express_device(offset: int) -> None:
    dm = new_dm()
    dm.plug(VM, NVME_AT, NVME)
    blob = dm.save(VM, NVME_AT)
    config = decode_instance(blob).config
    assert_restore_rejected(dm, VM, NVME_AT, with_config(blob, {offset: config[offset] ^ 0x01}))


@pytest.mark.req("R-SR-004")
@pytest.mark.parametrize(
    "edits",
    [{0x0C: 0x20}, {0x3C: 0x0A}, {0x44: 0x03}, {0x45: 0x01}, {0x05: 0x05}, {0x13: 0xE0}],
    ids=["cache-line", "interrupt-line", "pm-state", "pme-enable", "command-serr-intx", "bar0-address"],
)
def test_restore_accepts_changed_writable_bits(edits: dict[int, int]) -> None:
    dm = new_dm()
    dm.plug(VM, NIC, E1000)
    blob = with_config(dm.save(VM, NIC), edits)
    dm.restore(VM, NIC, blob)
    assert dm.save(VM, NIC) == blob
    for offset, value in edits.items():
        assert dm.config_read(VM, NIC, offset, 1) == value


@pytest.mark.req("R-SR-004")
@pytest.mark.parametrize(
    ("edits", "accepted"),
    [
        ({0x40: 0x79}, False),  # read-only register
        ({0x43: 0x00}, False),
        ({0x44: 0xAB, 0x47: 0xCD}, True),  # fully writable register
        ({0x48: 0x01, 0x49: 0x80}, True),  # RW1C register bits may be set
        ({0x4C: 0x01}, False),  # reserved register
        ({0x4F: 0x80}, False),
        ({0x04: 0x02}, True),  # the only writable command bit
        ({0x04: 0x01}, False),  # I/O enable is not writable for this type
        ({0x04: 0x04}, False),
        ({0x07: 0x01}, True),  # the only RW1C status bit
        ({0x07: 0x80}, False),
        ({0x06: 0x10}, False),  # capability list: the type has none
    ],
)
def test_restore_follows_device_specific_register_classes(edits: dict[int, int], accepted: bool) -> None:
    dm = new_dm()
    dm.plug(VM, NIC, REGS)
    blob = with_config(dm.save(VM, NIC), edits)
    if not accepted:
        assert_restore_rejected(dm, VM, NIC, blob)
        return
    dm.restore(VM, NIC, blob)
    assert dm.save(VM, NIC) == blob
    for offset, value in edits.items():
        assert dm.config_read(VM, NIC, offset, 1) == value


@pytest.mark.req("R-SR-004")
def test_restore_status_error_bits_follow_status_variant() -> None:
    """Status error bits are RW1C by default (restorable) and fixed under status = read-only."""
    rw1c = new_dm()
    rw1c.plug(VM, NIC, E1000)
    blob = with_config(rw1c.save(VM, NIC), {0x07: 0xF9})
    rw1c.restore(VM, NIC, blob)
    assert rw1c.config_read(VM, NIC, 0x06, 2) == 0xF910
    rw1c.config_write(VM, NIC, 0x06, 2, 0x0100)  # RW1C clears bit 8 only
    assert rw1c.config_read(VM, NIC, 0x06, 2) == 0xF810

    read_only = new_dm(Profile.from_mapping({"status": "read-only"}))
    read_only.plug(VM, NIC, E1000)
    assert_restore_rejected(read_only, VM, NIC, with_config(read_only.save(VM, NIC), {0x07: 0xF9}))


# ---------------------------------------------------------------- R-SR-005


@pytest.mark.req("R-SR-005")
def test_restore_rejects_config_of_wrong_size() -> None:
    dm = programmed_e1000()
    blob = dm.save(VM, NIC)
    config = decode_instance(blob).config
    assert_restore_rejected(dm, VM, NIC, resign(blob, config=config + bytes(0xF00)))
    with pytest.raises(
        BlobMismatch, match="size differs from the device type's: 4096 bytes in the blob, 256 in"
    ):
        dm.restore(VM, NIC, resign(blob, config=config + bytes(0xF00)))
    express = new_dm()
    express.plug(VM, NVME_AT, NVME)
    big = express.save(VM, NVME_AT)
    assert_restore_rejected(express, VM, NVME_AT, resign(big, config=decode_instance(big).config[:0x100]))


@pytest.mark.req("R-SR-005")
@pytest.mark.parametrize("profile", [Profile(), IGNORED], ids=["immediate", "ignored"])
@pytest.mark.parametrize(
    ("index", "base"),
    [
        (0, 0xFEA0_0000),  # valid elsewhere, not where the registers say
        (0, None),  # registers decode, window absent
        (0, E1000_BAR0 + 0x1000),  # misaligned
        (1, 0xC040),
        (1, None),
        (6, 0xFEA0_0000),
        (6, None),
        (2, 0x1000_0000),  # unimplemented BAR
        (5, 0x1000_0000),
    ],
)
def test_restore_rejects_window_disagreeing_with_config(
    profile: Profile, index: int, base: int | None
) -> None:
    dm = programmed_e1000(profile)
    blob = dm.save(VM, NIC)
    assert decode_instance(blob).windows[index] != base
    assert_restore_rejected(dm, VM, NIC, with_window(blob, index, base))


@pytest.mark.req("R-SR-005")
@pytest.mark.parametrize("profile", [Profile(), IGNORED, DEFERRED], ids=["immediate", "ignored", "deferred"])
def test_restore_rejects_window_while_decode_disabled(profile: Profile) -> None:
    dm = new_dm(profile)
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, E1000_BAR0)  # programmed, command zero: nothing decodes
    blob = dm.save(VM, NIC)
    assert decode_instance(blob).windows[0] is None
    assert_restore_rejected(dm, VM, NIC, with_window(blob, 0, E1000_BAR0))
    assert_restore_rejected(dm, VM, NIC, with_window(blob, 6, 0xFEB0_0000))
    with pytest.raises(BlobMismatch) as info:
        dm.restore(VM, NIC, with_window(blob, 0, E1000_BAR0))
    assert f"BAR 0 disagrees with its configuration: the blob maps it at {E1000_BAR0:#x}, " in str(info.value)
    assert str(info.value).endswith("its registers decode it nowhere")


def _deferred_pending() -> tuple[DataManager, bytes]:
    """A deferred-profile e1000 decoding BAR0 at E1000_BAR0 with 0xFEA00000 pending."""
    dm = programmed_e1000(DEFERRED)
    program_bar(dm, VM, NIC, 0, 0xFEA0_0000)
    assert dm.resolve(VM, "memory", E1000_BAR0) == (NIC, 0)
    blob = dm.save(VM, NIC)
    assert decode_instance(blob).windows[0] == E1000_BAR0
    assert dm.config_read(VM, NIC, 0x10, 4) == 0xFEA0_0000
    return dm, blob


@pytest.mark.req("R-SR-005")
@pytest.mark.parametrize(
    ("index", "base"),
    [(0, 0xFEA0_0000), (0, 0x8000_0000), (0, 0xFFFE_0000), (0, None), (1, 0xFFC0), (1, 0x40), (1, None),
     (6, 0xFFFF_0000), (6, None)],
)  # fmt: skip
def test_restore_deferred_accepts_valid_pending_window(index: int, base: int | None) -> None:
    _, blob = _deferred_pending()
    crafted = with_window(blob, index, base)
    target = new_dm(DEFERRED)
    target.plug(VM, NIC, E1000)
    target.restore(VM, NIC, crafted)
    assert target.save(VM, NIC) == crafted
    if base is not None:
        assert target.resolve(VM, "io" if index == 1 else "memory", base) == (NIC, index)


@pytest.mark.req("R-SR-005")
@pytest.mark.parametrize(
    ("index", "base"),
    [
        (0, E1000_BAR0 + 0x1_0000),  # not aligned to 128 KiB
        (0, 0x10),
        (0, 0),  # decodes at zero
        (0, 0xFFFF_0000),  # crosses 4 GiB
        (0, 0x1_0000_0000),  # above the 32-bit limit
        (1, 0xC020),  # not aligned to 64
        (1, 0x1_0000),  # above the I/O limit
        (1, 0),
        (6, 0xFEB0_0800),  # ROM: not aligned to 64 KiB
        (6, 0x1_0000_0000),
        (3, 0x1000_0000),  # unimplemented BAR
    ],
)
def test_restore_deferred_rejects_invalid_pending_window(index: int, base: int) -> None:
    dm, blob = _deferred_pending()
    assert_restore_rejected(dm, VM, NIC, with_window(blob, index, base))
    if index != 3:  # an implemented BAR: the complaint names the rule the window breaks
        with pytest.raises(BlobMismatch) as info:
            dm.restore(VM, NIC, with_window(blob, index, base))
        assert f"the blob maps it at {base:#x}, not a nonzero multiple of its size" in str(info.value)


@pytest.mark.req("R-SR-005")
def test_restore_deferred_pending_window_moves_on_reenable() -> None:
    _, blob = _deferred_pending()
    target = new_dm(DEFERRED)
    target.plug(VM, NIC, E1000)
    target.restore(VM, NIC, blob)
    assert target.resolve(VM, "memory", E1000_BAR0) == (NIC, 0)
    assert target.resolve(VM, "memory", 0xFEA0_0000) is None
    enable(target, VM, NIC, 0x0)
    enable(target, VM, NIC, 0x7)
    assert target.resolve(VM, "memory", 0xFEA0_0000) == (NIC, 0)
    assert target.resolve(VM, "memory", E1000_BAR0) is None


@pytest.mark.req("R-SR-005")
@pytest.mark.parametrize(
    ("bar", "page_index", "fill"),
    [
        (0, 32, {0: 1}),  # BAR0 is 128 KiB: pages 0-31
        (0, 1 << 40, {0: 1}),
        (0, (1 << 64) - 1, {0: 1}),
        (1, 1, {0: 1}),  # BAR1 is a 64-byte I/O BAR
        (2, 0, {0: 1}),  # unimplemented
        (5, 0, {0: 1}),
        (6, 0, {0: 1}),  # the ROM holds no data
        (7, 0, {0: 1}),
        (255, 0, {0: 1}),
    ],
)
def test_restore_rejects_data_outside_the_device(bar: int, page_index: int, fill: dict[int, int]) -> None:
    dm = programmed_e1000()
    blob = dm.save(VM, NIC)
    assert_restore_rejected(dm, VM, NIC, resign(blob, pages=((bar, page_index, page(fill)),)))


@pytest.mark.req("R-SR-005")
@pytest.mark.parametrize("offset", [64, 100, 4095])
def test_restore_rejects_data_beyond_small_bar_in_first_page(offset: int) -> None:
    dm = programmed_e1000()
    blob = dm.save(VM, NIC)
    assert_restore_rejected(dm, VM, NIC, resign(blob, pages=((1, 0, page({offset: 1})),)))


@pytest.mark.req("R-SR-005")
def test_restore_accepts_data_inside_the_bars() -> None:
    dm = programmed_e1000()
    pages = ((0, 0, page({0: 1})), (0, 31, page({4095: 2})), (1, 0, page({63: 3})))
    crafted = resign(dm.save(VM, NIC), pages=pages)
    dm.restore(VM, NIC, crafted)
    assert dm.save(VM, NIC) == crafted
    assert dm.mmio_read(VM, E1000_BAR0, 1) == 1
    assert dm.mmio_read(VM, E1000_BAR0 + 0x1_FFFF, 1) == 2
    assert dm.io_read(VM, E1000_BAR1 + 63, 1) == 3


@pytest.mark.req("R-SR-005")
def test_restore_rejects_data_of_64bit_bar_upper_half() -> None:
    dm = new_dm()
    dm.plug(VM, NVME_AT, NVME)
    blob = dm.save(VM, NVME_AT)
    assert_restore_rejected(dm, VM, NVME_AT, resign(blob, pages=((1, 0, page({0: 1})),)))
    assert_restore_rejected(dm, VM, NVME_AT, resign(blob, pages=((0, 4, page({0: 1})),)))
    ok = resign(blob, pages=((0, 3, page({0: 1})),))
    dm.restore(VM, NVME_AT, ok)
    assert dm.save(VM, NVME_AT) == ok


def _edu() -> tuple[DataManager, bytes]:
    dm = new_dm()
    dm.plug(VM, EDU_AT, EDU)
    program_bar(dm, VM, EDU_AT, 0, EDU_BAR0)
    enable(dm, VM, EDU_AT)
    dm.mmio_write(VM, EDU_BAR0 + 4, 4, 0x1234_5678)
    return dm, dm.save(VM, EDU_AT)


@pytest.mark.req("R-SR-005")
@pytest.mark.parametrize(
    "changes",
    [
        {"extra": struct.pack("<II", 0, 0x100)},  # status bit other than 0x80
        {"extra": struct.pack("<II", 0, 0x81)},
        {"extra": bytes(7)},
        {"extra": bytes(9)},
        {"extra": b""},
        {"pages": ((0, 0, page({0: 1})),)},  # edu keeps no BAR memory
    ],
    ids=["status-0x100", "status-0x81", "short", "long", "empty", "memory"],
)
def test_restore_rejects_bad_edu_state(changes: dict[str, object]) -> None:
    dm, blob = _edu()
    assert_restore_rejected(dm, VM, EDU_AT, resign(blob, **changes))


@pytest.mark.req("R-SR-005")
def test_restore_accepts_valid_edu_state() -> None:
    dm, blob = _edu()
    crafted = resign(blob, extra=struct.pack("<II", 0xCAFE_F00D, 0x80))
    dm.restore(VM, EDU_AT, crafted)
    assert dm.mmio_read(VM, EDU_BAR0 + 4, 4) == 0xCAFE_F00D  # extra holds the register as read
    assert dm.mmio_read(VM, EDU_BAR0 + 0x20, 4) == 0x80


@pytest.mark.req("R-SR-005")
def test_restore_rejects_extra_state_for_memory_behaviour() -> None:
    dm = programmed_e1000()
    assert_restore_rejected(dm, VM, NIC, resign(dm.save(VM, NIC), extra=b"\x00"))


# ---------------------------------------------------------------- R-SR-006


@pytest.mark.req("R-SR-006")
def test_restore_vm_creates_vm(any_profile: Profile) -> None:
    source = new_dm(any_profile)
    populate(source)
    snap = source.snapshot(VM)
    target = knowing_catalog(any_profile)
    target.restore_vm(5, snap)
    assert target.vm_ids() == (5,)
    assert target.snapshot(5) == snap
    assert target.tables(5) == source.tables(VM)
    assert observe(target, 5) == observe(source, VM)
    assert observe_platform(target, 5) == observe_platform(source, VM)


@pytest.mark.req("R-SR-006")
def test_restore_vm_into_same_manager_new_id() -> None:
    dm = new_dm()
    populate(dm)
    dm.restore_vm(2, dm.snapshot(VM))
    assert dm.vm_ids() == (VM, 2)
    assert dm.snapshot(2) == dm.snapshot(VM)
    assert observe(dm, 2) == observe(dm, VM)
    dm.mmio_write(2, E1000_BAR0, 4, 0x1)  # the copies are independent
    assert dm.mmio_read(VM, E1000_BAR0, 4) == 0xDEADBEEF


@pytest.mark.req("R-SR-006")
def test_restore_vm_replaces_existing_vm_entirely() -> None:
    source = new_dm()
    populate(source)
    snap = source.snapshot(VM)
    target = knowing_catalog()
    target.create_vm(5)
    target.create_vm(6)
    target.plug(5, Bdf(2, 0, 0), WIDGET)
    target.plug(5, NIC, E1000)
    program_bar(target, 5, NIC, 0, 0xE000_0000)
    enable(target, 5, NIC)
    target.io_write(5, 0xCF8, 4, 0x8000_0000)
    other_vm = target.snapshot(6)
    target.restore_vm(5, snap)
    assert target.vm_ids() == (5, 6)
    assert target.snapshot(5) == snap
    assert target.tables(5) == source.tables(VM)
    assert target.resolve(5, "memory", 0xE000_0000) is None
    assert target.config_read(5, Bdf(2, 0, 0), 0, 4) == 0xFFFF_FFFF
    assert target.cf8(5) == source.cf8(VM)
    assert target.snapshot(6) == other_vm


@pytest.mark.req("R-SR-006")
@pytest.mark.parametrize("ecam_base", [None, 0xB000_0000, 0xC000_0000, 0xF0_0000_0000])
def test_snapshot_carries_ecam_window(ecam_base: int | None) -> None:
    source = DataManager()
    source.create_vm(VM, ecam_base=ecam_base)
    source.plug(VM, NIC, E1000)
    snap = source.snapshot(VM)
    assert decode_snapshot(snap).ecam_base == ecam_base
    target = knowing_catalog()
    target.create_vm(4)  # VM 4 has the default ECAM window
    target.restore_vm(4, snap)
    for base in (0xB000_0000, 0xC000_0000, 0xF0_0000_0000):
        want = 0x100E_8086 if base == ecam_base else 0xFFFF_FFFF
        assert target.mmio_read(4, base + (NIC.device << 15), 4) == want


@pytest.mark.req("R-SR-006", "R-BLOB-005")
def test_snapshot_holds_window_cf8_blobs_and_order() -> None:
    dm = new_dm()
    populate(dm)
    record = decode_snapshot(dm.snapshot(VM))
    assert record.ecam_base == 0xB000_0000
    assert record.cf8 == 0x8000_1010
    assert record.devices == tuple(sorted((b.packed, dm.save(VM, b)) for b, _ in PLACES))
    order = [
        (EDU_AT, 0),
        (NIC, 0),
        (NIC, 1),
        (NIC, 6),
        (A100_AT, 0),
        (A100_AT, 1),
        (A100_AT, 3),
        (NVME_AT, 0),
    ]
    assert record.map_order == tuple((b.packed, i) for b, i in order)


@pytest.mark.req("R-SR-006")
def test_restore_vm_rejects_unknown_type_name() -> None:
    source = new_dm()
    source.plug(VM, NIC, E1000)
    source.plug(VM, Bdf(0, 8, 0), WIDGET)
    snap = source.snapshot(VM)
    target = knowing_catalog()
    target.create_vm(VM)
    target.plug(VM, NVME_AT, NVME)
    assert_restore_vm_rejected(target, VM, snap)
    assert_restore_vm_rejected(target, 9, snap)
    assert target.vm_ids() == (VM,)


@pytest.mark.req("R-SR-006")
def test_restore_vm_rejects_known_name_different_fingerprint() -> None:
    source = programmed_e1000()
    target = DataManager()
    target.register_type(E1000_BIG)
    assert_restore_vm_rejected(target, VM, source.snapshot(VM))
    assert target.vm_ids() == ()


@pytest.mark.req("R-SR-006")
def test_restore_vm_accepts_types_known_by_registration_only() -> None:
    source = new_dm()
    source.plug(VM, Bdf(0, 8, 0), WIDGET)
    target = DataManager()
    target.register_type(WIDGET)
    target.restore_vm(VM, source.snapshot(VM))
    assert target.tables(VM).config == ((Bdf(0, 8, 0), "widget"),)


@pytest.mark.req("R-SR-006")
def test_restore_vm_of_empty_vm() -> None:
    source = DataManager()
    source.create_vm(3, ecam_base=None)
    source.io_write(3, 0xCF8, 4, 0x8000_0004)
    target = new_dm()
    populate(target)
    target.restore_vm(VM, source.snapshot(3))
    assert target.snapshot(VM) == source.snapshot(3)
    assert target.tables(VM).config == ()
    assert target.cf8(VM) == 0x8000_0004


def _map_order_cases() -> dict[str, Callable[[tuple[tuple[int, int], ...]], tuple[tuple[int, int], ...]]]:
    return {
        "missing-entry": lambda o: o[:-1],
        "empty": lambda o: (),
        "duplicate-entry": lambda o: (*o, o[0]),
        "non-decoding-bar": lambda o: (*o, (NIC.packed, 2)),
        "absent-bdf": lambda o: (*o, (Bdf(0, 30, 0).packed, 0)),
        "replaced-entry": lambda o: ((NIC.packed, 5), *o[1:]),
    }


@pytest.mark.req("R-SR-006")
@pytest.mark.parametrize("mutate", _map_order_cases().values(), ids=_map_order_cases().keys())
def test_restore_vm_rejects_map_order_mismatch(
    mutate: Callable[[tuple[tuple[int, int], ...]], tuple[tuple[int, int], ...]],
) -> None:
    dm = new_dm()
    populate(dm)
    snap = dm.snapshot(VM)
    crafted = resign_snapshot(snap, map_order=mutate(decode_snapshot(snap).map_order))
    with pytest.raises(BlobError):
        dm.restore_vm(VM, crafted)
    assert dm.snapshot(VM) == snap
    with pytest.raises(BlobError):
        dm.restore_vm(2, crafted)
    assert dm.vm_ids() == (VM,)


@pytest.mark.req("R-SR-006")
def test_restore_vm_accepts_any_permutation_of_map_order() -> None:
    dm = new_dm()
    populate(dm)
    snap = dm.snapshot(VM)
    reordered = tuple(reversed(decode_snapshot(snap).map_order))
    crafted = resign_snapshot(snap, map_order=reordered)
    dm.restore_vm(2, crafted)
    assert dm.snapshot(2) == crafted
    assert decode_snapshot(dm.snapshot(2)).map_order == reordered


# ---------------------------------------------------------------- R-SR-007


@pytest.mark.req("R-SR-007")
def test_rejected_snapshot_restore_with_one_bad_device_changes_nothing() -> None:
    source = new_dm()
    populate(source)
    snap = decode_snapshot(source.snapshot(VM))
    devices = list(snap.devices)
    bad_bdf, bad_blob = devices[-1]  # the last device by BDF: the others would restore fine
    devices[-1] = (bad_bdf, with_config(bad_blob, {0x00: 0x00}))
    crafted = encode_snapshot(dataclasses.replace(snap, devices=tuple(devices)))
    target = knowing_catalog()
    target.create_vm(VM)
    target.plug(VM, NIC, E1000)
    target.mmio_write(VM, 0, 4, 0)
    assert_restore_vm_rejected(target, VM, crafted)
    assert_restore_vm_rejected(target, 2, crafted)
    assert target.vm_ids() == (VM,)


@pytest.mark.req("R-SR-007")
def test_rejected_snapshot_restore_keeps_existing_vm_usable() -> None:
    dm = new_dm()
    populate(dm)
    before_obs = observe(dm, VM)
    garbage = dm.snapshot(VM)[:-1] + bytes([dm.snapshot(VM)[-1] ^ 1])
    assert_restore_vm_rejected(dm, VM, garbage, BlobError)
    assert observe(dm, VM) == before_obs


@pytest.mark.req("R-SR-007")
def test_successful_restore_applies_completely() -> None:
    source = new_dm()
    populate(source)
    target = knowing_catalog()
    target.create_vm(VM)
    for bdf, dtype in PLACES:
        target.plug(VM, bdf, dtype)
    for bdf, _ in PLACES:
        target.restore(VM, bdf, source.save(VM, bdf))
        assert target.save(VM, bdf) == source.save(VM, bdf)
    assert observe(target, VM) == observe(source, VM)


# ---------------------------------------------------------------- R-SR-008


@pytest.mark.req("R-SR-008")
@pytest.mark.parametrize(("bdf", "dtype"), PLACES, ids=place_id)
def test_save_restore_save_same_bytes(any_profile: Profile, bdf: Bdf, dtype: DeviceType) -> None:
    dm = new_dm(any_profile)
    populate(dm)
    blob = dm.save(VM, bdf)
    dm.restore(VM, bdf, blob)
    assert dm.save(VM, bdf) == blob
    other = new_dm(any_profile)
    other.plug(VM, bdf, dtype)
    other.restore(VM, bdf, blob)
    assert other.save(VM, bdf) == blob


@pytest.mark.req("R-SR-008")
def test_snapshot_restore_snapshot_same_bytes(any_profile: Profile) -> None:
    dm = new_dm(any_profile)
    populate(dm)
    snap = dm.snapshot(VM)
    dm.restore_vm(VM, snap)
    assert dm.snapshot(VM) == snap
    other = knowing_catalog(any_profile)
    other.restore_vm(3, snap)
    assert other.snapshot(3) == snap


def _workload(dm: DataManager, vm: int) -> list[object]:
    """A fixed sequence of operations; returns every read's value."""
    out: list[object] = []
    out.append(dm.mmio_read(vm, E1000_BAR0, 4))
    dm.mmio_write(vm, E1000_BAR0 + 0x2000, 8, 0x55AA_55AA_55AA_55AA)
    program_bar(dm, vm, NIC, 0, 0xFEA0_0000)  # move while decoding
    out.append(dm.resolve(vm, "memory", 0xFEA0_0000))
    out.append(dm.mmio_read(vm, 0xFEA0_2000, 8))
    out.append(dm.mmio_read(vm, E1000_BAR0 + 0x2000, 8))
    enable(dm, vm, NIC, 0)
    enable(dm, vm, NIC, 7)
    out.append(dm.mmio_read(vm, 0xFEA0_2000, 8))
    out.append(dm.io_read(vm, 0xCFC, 4))
    dm.io_write(vm, 0xCF8, 4, 0x8000_1804)
    out.append(dm.io_read(vm, 0xCFC, 2))
    out.append(dm.mmio_read(vm, EDU_BAR0 + 4, 4))
    dm.mmio_write(vm, EDU_BAR0 + 4, 4, 7)
    out.append(dm.mmio_read(vm, EDU_BAR0 + 4, 4))
    program_bar(dm, vm, EDU_AT, 0, 0xFEA0_0000)  # overlap with the e1000
    out.append(dm.resolve(vm, "memory", 0xFEA0_0000))
    out.append(dm.mmio_read(vm, 0xFEA0_0000, 4))
    dm.reset(vm, NVME_AT)
    out.append(dm.mmio_read(vm, NVME_BAR0 + 0x3000, 8))
    out.append(dm.mmio_read(vm, A100_BAR1 + (63 << 30), 8))
    dm.unplug(vm, A100_AT)
    out.append(dm.mmio_read(vm, A100_BAR1 + (63 << 30), 8))
    dm.plug(vm, A100_AT, A100)
    out.append(dm.tables(vm))
    out.append(dm.cf8(vm))
    return out


@pytest.mark.req("R-SR-008")
def test_migration_gives_same_observations(any_profile: Profile) -> None:
    source = new_dm(any_profile)
    populate(source)
    target = knowing_catalog(any_profile)
    target.restore_vm(VM, source.snapshot(VM))
    assert _workload(target, VM) == _workload(source, VM)
    assert target.snapshot(VM) == source.snapshot(VM)
    assert observe(target, VM) == observe(source, VM)
    assert observe_platform(target, VM) == observe_platform(source, VM)


@pytest.mark.req("R-SR-008")
def test_migration_chain_is_stable() -> None:
    dm = new_dm()
    populate(dm)
    snap = dm.snapshot(VM)
    hops = [knowing_catalog() for _ in range(3)]
    for hop in hops:
        hop.restore_vm(VM, snap)
        snap = hop.snapshot(VM)
    assert snap == dm.snapshot(VM)
    assert _workload(hops[-1], VM) == _workload(dm, VM)


# ---------------------------------------------------------------- R-SR-009


def _last_mapped_overlap() -> DataManager:
    """Two e1000s claim one BAR0 range; the higher BDF began decoding first, so the lower wins."""
    dm = new_dm(LAST_MAPPED)
    low, high = NIC, Bdf(0, 9, 0)
    for bdf in (low, high):
        dm.plug(VM, bdf, E1000)
        program_bar(dm, VM, bdf, 0, E1000_BAR0)
    enable(dm, VM, high, 0x2)
    enable(dm, VM, low, 0x2)
    dm.mmio_write(VM, E1000_BAR0, 4, 0x10)  # reaches low
    assert dm.resolve(VM, "memory", E1000_BAR0) == (low, 0)
    return dm


@pytest.mark.req("R-SR-009")
def test_last_mapped_order_travels_in_snapshot() -> None:
    source = _last_mapped_overlap()
    snap = source.snapshot(VM)
    assert decode_snapshot(snap).map_order == ((Bdf(0, 9, 0).packed, 0), (NIC.packed, 0))
    target = knowing_catalog(LAST_MAPPED)
    target.restore_vm(VM, snap)
    assert target.snapshot(VM) == snap
    assert target.resolve(VM, "memory", E1000_BAR0) == (NIC, 0)
    assert target.mmio_read(VM, E1000_BAR0, 4) == 0x10
    # Future observations agree too: the low BDF stops decoding, the high one takes over.
    for dm in (source, target):
        enable(dm, VM, NIC, 0)
    assert target.resolve(VM, "memory", E1000_BAR0) == source.resolve(VM, "memory", E1000_BAR0)
    assert target.resolve(VM, "memory", E1000_BAR0) == (Bdf(0, 9, 0), 0)
    for dm in (source, target):
        enable(dm, VM, NIC, 2)
    assert target.resolve(VM, "memory", E1000_BAR0) == source.resolve(VM, "memory", E1000_BAR0) == (NIC, 0)


@pytest.mark.req("R-SR-009")
def test_last_mapped_order_travels_when_restored_in_place() -> None:
    dm = _last_mapped_overlap()
    snap = dm.snapshot(VM)
    enable(dm, VM, Bdf(0, 9, 0), 0)
    enable(dm, VM, Bdf(0, 9, 0), 2)  # now the high BDF is the most recent
    assert dm.resolve(VM, "memory", E1000_BAR0) == (Bdf(0, 9, 0), 0)
    dm.restore_vm(VM, snap)
    assert dm.resolve(VM, "memory", E1000_BAR0) == (NIC, 0)


@pytest.mark.req("R-SR-009")
def test_deferred_pending_window_travels_in_blob() -> None:
    source, blob = _deferred_pending()
    target = new_dm(DEFERRED)
    target.plug(VM, NIC, E1000)
    target.restore(VM, NIC, blob)
    for dm in (source, target):
        assert dm.resolve(VM, "memory", E1000_BAR0) == (NIC, 0)
        assert dm.resolve(VM, "memory", 0xFEA0_0000) is None
        assert dm.config_read(VM, NIC, 0x10, 4) == 0xFEA0_0000
        assert dm.mmio_read(VM, E1000_BAR0 + 8, 4) == 0xABCD
        enable(dm, VM, NIC, 0)
        enable(dm, VM, NIC, 7)
        assert dm.resolve(VM, "memory", 0xFEA0_0000) == (NIC, 0)
        assert dm.mmio_read(VM, 0xFEA0_0008, 4) == 0xABCD
    assert target.save(VM, NIC) == source.save(VM, NIC)


@pytest.mark.req("R-SR-009")
def test_deferred_pending_window_travels_in_snapshot() -> None:
    source, _ = _deferred_pending()
    target = knowing_catalog(DEFERRED)
    target.restore_vm(VM, source.snapshot(VM))
    assert target.resolve(VM, "memory", E1000_BAR0) == (NIC, 0)
    assert target.config_read(VM, NIC, 0x10, 4) == 0xFEA0_0000
    enable(target, VM, NIC, 0)
    enable(target, VM, NIC, 7)
    assert target.resolve(VM, "memory", 0xFEA0_0000) == (NIC, 0)


@pytest.mark.req("R-SR-009")
@pytest.mark.parametrize(
    ("profile", "cf8"),
    [
        (Profile(), 0x8000_1010),
        (Profile(), 0x80FF_FFFC),
        (LATCHED, 0x8000_1013),
        (LATCHED, 0xFFFF_FFFF),
        (Profile.from_mapping({"cf8_extended": "extends"}), 0x8F00_1010),
    ],
)
def test_cf8_travels_in_snapshot(profile: Profile, cf8: int) -> None:
    source = new_dm(profile)
    source.plug(VM, NIC, E1000)
    source.io_write(VM, 0xCF8, 4, cf8)
    assert source.cf8(VM) == cf8
    snap = source.snapshot(VM)
    assert decode_snapshot(snap).cf8 == cf8
    target = knowing_catalog(profile)
    target.restore_vm(VM, snap)
    assert target.cf8(VM) == cf8
    assert target.io_read(VM, 0xCF8, 4) == cf8
    assert target.io_read(VM, 0xCFC, 4) == source.io_read(VM, 0xCFC, 4)


@pytest.mark.req("R-SR-009", "R-SR-006")
@pytest.mark.parametrize(
    "cf8", [0x8000_0001, 0x8000_0003, 0x8000_1012, 0x8100_0000, 0x8F00_0000, 0x7000_0000]
)
def test_masked_cf8_rejects_snapshot_with_bits_it_never_keeps(cf8: int) -> None:
    latched = new_dm(LATCHED)
    latched.io_write(VM, 0xCF8, 4, cf8)
    snap = latched.snapshot(VM)
    target = new_dm()
    populate(target)
    before = state(target)
    for vm in (VM, 2):
        with pytest.raises(BlobError):
            target.restore_vm(vm, snap)
        assert state(target) == before


@pytest.mark.req("R-SR-009")
def test_masked_extends_accepts_bits_27_24() -> None:
    latched = new_dm(LATCHED)
    latched.io_write(VM, 0xCF8, 4, 0x8F00_1010)
    target = DataManager(Profile.from_mapping({"cf8_extended": "extends"}))
    target.restore_vm(VM, latched.snapshot(VM))
    assert target.cf8(VM) == 0x8F00_1010
