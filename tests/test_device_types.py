"""Device types: generic fields, validation, fingerprints and BAR behaviour (R-DT-001..R-DT-004)."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest
from conftest import VM, enable, program_bar
from hypothesis import given, settings
from hypothesis import strategies as st
from vpcid.model import (
    BarKind,
    BarSpec,
    Bdf,
    Capability,
    DataManager,
    DeviceData,
    DeviceType,
    DeviceTypeError,
    Register,
    RegisterClass,
    RomSpec,
)
from vpcid.model.catalog import A100, EDU

BDF_A = Bdf(0, 3, 0)
BDF_B = Bdf(0, 4, 0)


def make_type(name: str = "test-dev", **fields: Any) -> DeviceType:
    """A minimal valid device type with the given fields overridden."""
    base: dict[str, Any] = {"name": name, "vendor_id": 0x1AF4, "device_id": 0x1234, "class_code": 0x020000}
    base.update(fields)
    return DeviceType(**base)


# ------------------------------------------------------------------ R-DT-001


@pytest.mark.req("R-DT-001")
def test_every_supplied_field_is_visible_in_configuration_space() -> None:
    cap_a = Capability(0x09, bytes([0x11, 0x22, 0x33]))
    cap_b = Capability(0x0A, bytes([0x44, 0x55]), writable=bytes([0xFF, 0x00]))
    t = make_type(
        name="full",
        vendor_id=0xABCD,
        device_id=0x1357,
        revision=0x9A,
        class_code=0x0C0330,
        subsystem_vendor_id=0x2468,
        subsystem_id=0x8642,
        interrupt_pin=2,
        bars=(
            BarSpec(BarKind.IO, 32),
            BarSpec(BarKind.MEM32, 4096, prefetchable=True),
            BarSpec(BarKind.MEM64, 1 << 20),
            None,
            None,
            BarSpec(BarKind.MEM32, 16),
        ),
        rom=RomSpec(4096, b"\x55\xaa"),
        capabilities=(cap_a, cap_b),
        registers=(
            Register(0x80, 4, RegisterClass.RW, 0xCAFEF00D),
            Register(0x200, 2, RegisterClass.RO, 0x77),
        ),
        command_mask=0x0003,
        status_rw1c=0x8000,
        express=True,
        multifunction=True,
    )
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, BDF_A, t)
    rd = dm.config_read
    assert rd(VM, BDF_A, 0x00, 2) == 0xABCD
    assert rd(VM, BDF_A, 0x02, 2) == 0x1357
    assert rd(VM, BDF_A, 0x08, 1) == 0x9A
    assert rd(VM, BDF_A, 0x09, 1) | rd(VM, BDF_A, 0x0A, 1) << 8 | rd(VM, BDF_A, 0x0B, 1) << 16 == 0x0C0330
    assert rd(VM, BDF_A, 0x0E, 1) == 0x80
    assert rd(VM, BDF_A, 0x2C, 2) == 0x2468
    assert rd(VM, BDF_A, 0x2E, 2) == 0x8642
    assert rd(VM, BDF_A, 0x3D, 1) == 2
    assert [rd(VM, BDF_A, 0x10 + 4 * i, 4) for i in range(6)] == [0x1, 0x8, 0x4, 0x0, 0x0, 0x0]
    for i in range(6):
        dm.config_write(VM, BDF_A, 0x10 + 4 * i, 4, 0xFFFFFFFF)
    assert [rd(VM, BDF_A, 0x10 + 4 * i, 4) for i in range(6)] == [
        0xFFFFFFE1,
        0xFFFFF008,
        0xFFF00004,
        0xFFFFFFFF,
        0x0,
        0xFFFFFFF0,
    ]
    dm.config_write(VM, BDF_A, 0x30, 4, 0xFFFFFFFF)
    assert rd(VM, BDF_A, 0x30, 4) == 0xFFFFF001
    assert rd(VM, BDF_A, 0x34, 1) == 0x40
    assert rd(VM, BDF_A, 0x40, 1) == 0x09
    second = rd(VM, BDF_A, 0x41, 1)
    assert rd(VM, BDF_A, second, 1) == 0x0A
    assert rd(VM, BDF_A, 0x80, 4) == 0xCAFEF00D
    assert rd(VM, BDF_A, 0x200, 2) == 0x77  # a PCI Express function has 4 KiB of config space
    dm.config_write(VM, BDF_A, 0x04, 2, 0xFFFF)
    assert rd(VM, BDF_A, 0x04, 2) == 0x0003
    assert rd(VM, BDF_A, 0x06, 2) == 0x0010


_BAD_TYPES: list[tuple[str, dict[str, Any]]] = [
    ("io-not-power-of-two", {"bars": (BarSpec(BarKind.IO, 24),)}),
    ("io-too-small", {"bars": (BarSpec(BarKind.IO, 2),)}),
    ("io-too-large", {"bars": (BarSpec(BarKind.IO, 512),)}),
    ("mem32-not-power-of-two", {"bars": (BarSpec(BarKind.MEM32, 48),)}),
    ("mem32-too-small", {"bars": (BarSpec(BarKind.MEM32, 8),)}),
    ("mem32-too-large", {"bars": (BarSpec(BarKind.MEM32, 1 << 32),)}),
    ("mem64-not-power-of-two", {"bars": (BarSpec(BarKind.MEM64, 3 << 20), None)}),
    ("mem64-too-small", {"bars": (BarSpec(BarKind.MEM64, 8), None)}),
    ("mem64-too-large", {"bars": (BarSpec(BarKind.MEM64, 1 << 64), None)}),
    ("bar-size-zero", {"bars": (BarSpec(BarKind.MEM32, 0),)}),
    ("mem64-in-slot-5", {"bars": (None, None, None, None, None, BarSpec(BarKind.MEM64, 4096))}),
    ("mem64-followed-by-used-slot", {"bars": (BarSpec(BarKind.MEM64, 4096), BarSpec(BarKind.IO, 4))}),
    ("seven-bar-slots", {"bars": (None,) * 6 + (BarSpec(BarKind.IO, 4),)}),
    ("rom-not-power-of-two", {"rom": RomSpec(3000)}),
    ("rom-contents-larger-than-rom", {"rom": RomSpec(2048, bytes(2049))}),
    (
        "overlapping-registers",
        {"registers": (Register(0x40, 4, RegisterClass.RW), Register(0x42, 2, RegisterClass.RO, 1))},
    ),
    (
        "register-overlaps-capability",
        {"capabilities": (Capability(0x01, bytes(6)),), "registers": (Register(0x44, 4, RegisterClass.RW),)},
    ),
    ("capability-does-not-fit-below-0x100", {"capabilities": (Capability(0x09, bytes(0xBF)),)}),
    (
        "capabilities-together-do-not-fit",
        {"capabilities": (Capability(0x09, bytes(100)), Capability(0x0A, bytes(100)))},
    ),
    (
        "express-capabilities-still-below-0x100",
        {"express": True, "capabilities": (Capability(0x09, bytes(0xC0)),)},
    ),
    (
        "capability-bit-writable-and-rw1c",
        {"capabilities": (Capability(0x09, b"\x00\x00", writable=b"\x00\x81", rw1c=b"\x00\x01"),)},
    ),
    ("reserved-register-nonzero", {"registers": (Register(0x40, 4, RegisterClass.RSVD, 0x100),)}),
    ("register-misaligned", {"registers": (Register(0x42, 4, RegisterClass.RW),)}),
    ("register-in-header", {"registers": (Register(0x3C, 4, RegisterClass.RW),)}),
    ("register-width-3", {"registers": (Register(0x40, 3, RegisterClass.RW),)}),
    ("register-past-conventional-space", {"registers": (Register(0x100, 4, RegisterClass.RW),)}),
    ("register-value-too-wide", {"registers": (Register(0x40, 1, RegisterClass.RO, 0x100),)}),
]


@pytest.mark.req("R-DT-001")
@pytest.mark.parametrize(("case", "fields"), _BAD_TYPES, ids=[c for c, _ in _BAD_TYPES])
def test_inconsistent_device_type_is_rejected_as_bad_device_type(case: str, fields: dict[str, Any]) -> None:
    with pytest.raises(DeviceTypeError) as info:
        make_type(name=case, **fields)
    assert info.value.kind == "bad-device-type"


_GOOD_EDGE_TYPES: list[tuple[str, dict[str, Any]]] = [
    ("io-4", {"bars": (BarSpec(BarKind.IO, 4),)}),
    ("io-256", {"bars": (BarSpec(BarKind.IO, 256),)}),
    ("mem32-16", {"bars": (BarSpec(BarKind.MEM32, 16),)}),
    ("mem32-2g", {"bars": (BarSpec(BarKind.MEM32, 1 << 31, prefetchable=True),)}),
    ("mem64-16", {"bars": (BarSpec(BarKind.MEM64, 16), None)}),
    ("mem64-2^63", {"bars": (BarSpec(BarKind.MEM64, 1 << 63), None)}),
    ("mem64-in-slot-4", {"bars": (None, None, None, None, BarSpec(BarKind.MEM64, 4096))}),
    ("six-bars", {"bars": tuple(BarSpec(BarKind.MEM32, 16) for _ in range(6))}),
    ("capability-fills-to-0x100", {"capabilities": (Capability(0x09, bytes(0xBE)),)}),
    ("express-register-high", {"express": True, "registers": (Register(0xFFC, 4, RegisterClass.RW),)}),
    ("reserved-register-zero", {"registers": (Register(0x40, 4, RegisterClass.RSVD),)}),
    (
        "capability-rw-and-rw1c-disjoint",
        {"capabilities": (Capability(0x09, b"\x00", writable=b"\xf0", rw1c=b"\x0f"),)},
    ),
]


@pytest.mark.req("R-DT-001")
@pytest.mark.parametrize(("case", "fields"), _GOOD_EDGE_TYPES, ids=[c for c, _ in _GOOD_EDGE_TYPES])
def test_consistent_edge_case_device_type_is_accepted_and_pluggable(
    case: str, fields: dict[str, Any]
) -> None:
    t = make_type(name=case, **fields)
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, BDF_A, t)
    assert dm.config_read(VM, BDF_A, 0x00, 2) == 0x1AF4


# ------------------------------------------------------------------ R-DT-002


class NamedBehaviour:
    """Memory-like behaviour with a configurable name (to test that the name enters the fingerprint)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        return data.bar_memory(bar).read(offset, length)

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        data.bar_memory(bar).write(offset, payload)

    def reset(self, data: DeviceData) -> None:
        return None

    def check(self, data: DeviceData) -> str | None:
        return None


_FP_BASE = make_type(
    name="fp",
    bars=(BarSpec(BarKind.MEM32, 4096),),
    rom=RomSpec(2048, b"\x55"),
    capabilities=(Capability(0x05, b"\x00\x00", writable=b"\x01\x00"),),
    registers=(Register(0x80, 4, RegisterClass.RW, 1),),
)

_FP_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("name", {"name": "fp2"}),
    ("vendor_id", {"vendor_id": 0x1AF5}),
    ("device_id", {"device_id": 0x1235}),
    ("class_code", {"class_code": 0x020001}),
    ("revision", {"revision": 1}),
    ("subsystem_vendor_id", {"subsystem_vendor_id": 1}),
    ("subsystem_id", {"subsystem_id": 1}),
    ("interrupt_pin", {"interrupt_pin": 1}),
    ("bar-size", {"bars": (BarSpec(BarKind.MEM32, 8192),)}),
    ("bar-kind", {"bars": (BarSpec(BarKind.MEM64, 4096), None)}),
    ("bar-prefetchable", {"bars": (BarSpec(BarKind.MEM32, 4096, prefetchable=True),)}),
    ("rom-size", {"rom": RomSpec(4096, b"\x55")}),
    ("rom-contents", {"rom": RomSpec(2048, b"\x56")}),
    ("rom-absent", {"rom": None}),
    ("capability-id", {"capabilities": (Capability(0x06, b"\x00\x00", writable=b"\x01\x00"),)}),
    ("capability-body", {"capabilities": (Capability(0x05, b"\x00\x01", writable=b"\x01\x00"),)}),
    ("capability-writable", {"capabilities": (Capability(0x05, b"\x00\x00", writable=b"\x03\x00"),)}),
    (
        "capability-rw1c",
        {"capabilities": (Capability(0x05, b"\x00\x00", writable=b"\x01\x00", rw1c=b"\x00\x01"),)},
    ),
    ("register-offset", {"registers": (Register(0x84, 4, RegisterClass.RW, 1),)}),
    ("register-width", {"registers": (Register(0x80, 2, RegisterClass.RW, 1),)}),
    ("register-class", {"registers": (Register(0x80, 4, RegisterClass.RO, 1),)}),
    ("register-value", {"registers": (Register(0x80, 4, RegisterClass.RW, 2),)}),
    ("command_mask", {"command_mask": 0x0003}),
    ("status_rw1c", {"status_rw1c": 0x8000}),
    ("express", {"express": True}),
    ("multifunction", {"multifunction": True}),
    ("behaviour-name", {"behaviour": NamedBehaviour("other")}),
]


@pytest.mark.req("R-DT-002")
def test_fingerprint_is_a_sha256_digest_equal_for_equal_definitions() -> None:
    twin = dataclasses.replace(_FP_BASE)
    assert twin is not _FP_BASE
    assert len(_FP_BASE.fingerprint()) == 32
    assert twin.fingerprint() == _FP_BASE.fingerprint()


@pytest.mark.req("R-DT-002")
@pytest.mark.parametrize(("field", "change"), _FP_CHANGES, ids=[c for c, _ in _FP_CHANGES])
def test_fingerprint_covers_every_field_and_behaviour_name(field: str, change: dict[str, Any]) -> None:
    changed = dataclasses.replace(_FP_BASE, **change)
    assert changed.fingerprint() != _FP_BASE.fingerprint(), field


@pytest.mark.req("R-DT-002")
def test_plugging_a_different_definition_under_a_known_name_is_rejected() -> None:
    dm = DataManager()
    dm.create_vm(VM)
    dm.create_vm(2)
    original = make_type(name="clash", bars=(BarSpec(BarKind.MEM32, 4096),))
    impostor = make_type(name="clash", vendor_id=0x8086, bars=(BarSpec(BarKind.MEM32, 4096),))
    dm.plug(VM, BDF_A, original)
    before = (dm.snapshot(VM), dm.snapshot(2), dm.tables(VM), dm.tables(2))
    for vm in (VM, 2):
        with pytest.raises(DeviceTypeError) as info:
            dm.plug(vm, BDF_B, impostor)
        assert info.value.kind == "bad-device-type"
    assert (dm.snapshot(VM), dm.snapshot(2), dm.tables(VM), dm.tables(2)) == before
    assert dm.config_read(VM, BDF_B, 0x00, 4) == 0xFFFFFFFF
    # The message tells the two definitions apart: both fingerprints, then the first differing byte.
    shown = [t.fingerprint().hex()[:16] for t in (original, impostor)]
    with pytest.raises(DeviceTypeError) as info:
        dm.register_type(impostor)
    assert f"{shown[0]}... vs {shown[1]}..., differing in image byte 0x0 0xf4 vs 0x86" in str(info.value)


@pytest.mark.req("R-DT-002")
def test_plugging_under_a_known_name_with_another_behaviour_is_rejected() -> None:
    dm = DataManager()
    dm.create_vm(VM)
    bars = (BarSpec(BarKind.MEM32, 4096),)
    dm.plug(VM, BDF_A, make_type(name="beh", bars=bars, behaviour=NamedBehaviour("one")))
    with pytest.raises(DeviceTypeError, match="differing in behaviour one vs two"):
        dm.plug(VM, BDF_B, make_type(name="beh", bars=bars, behaviour=NamedBehaviour("two")))
    assert dm.tables(VM).config == ((BDF_A, "beh"),)


@pytest.mark.req("R-DT-002")
def test_an_equal_definition_constructed_again_is_accepted_under_its_name() -> None:
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, BDF_A, make_type(name="same", bars=(BarSpec(BarKind.IO, 16),)))
    dm.plug(VM, BDF_B, make_type(name="same", bars=(BarSpec(BarKind.IO, 16),)))
    assert dm.tables(VM).config == ((BDF_A, "same"), (BDF_B, "same"))


@pytest.mark.req("R-DT-002")
def test_name_uniqueness_is_per_data_manager() -> None:
    first, second = DataManager(), DataManager()
    for dm in (first, second):
        dm.create_vm(VM)
    first.plug(VM, BDF_A, make_type(name="shared", device_id=1))
    second.plug(VM, BDF_A, make_type(name="shared", device_id=2))
    assert first.config_read(VM, BDF_A, 0x02, 2) == 1
    assert second.config_read(VM, BDF_A, 0x02, 2) == 2


# ------------------------------------------------------------------ R-DT-003


class RecordingBehaviour:
    """Logs what it sees; memory-like contents; counts writes in the instance's data (4 bytes of extra).

    A 4-byte read of BAR 1 at offset 0 returns the write counter instead of memory.
    """

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int, bytes]] = []

    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        self.calls.append(("read", bar, offset, length, b""))
        if bar == 1 and offset == 0 and length == 4:
            return bytes(data.extra)
        return data.bar_memory(bar).read(offset, length)

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        self.calls.append(("write", bar, offset, len(payload), bytes(payload)))
        (count,) = struct.unpack("<I", data.extra)
        data.extra[:] = struct.pack("<I", count + 1)
        data.bar_memory(bar).write(offset, payload)

    def reset(self, data: DeviceData) -> None:
        data.extra[:] = bytes(4)

    def check(self, data: DeviceData) -> str | None:
        return None if len(data.extra) == 4 else "recording state is 4 bytes"


def recording_type(behaviour: RecordingBehaviour) -> DeviceType:
    return make_type(
        name="recorder",
        bars=(BarSpec(BarKind.MEM32, 4096), BarSpec(BarKind.IO, 16), BarSpec(BarKind.MEM32, 4096)),
        rom=RomSpec(2048, b"\x55\xaa\x01"),
        behaviour=behaviour,
    )


MEM0, PORT1, MEM2, ROM_BASE = 0xE0000000, 0xD000, 0xE0001000, 0xE0100000


def plug_recorder(dm: DataManager, vm: int, bdf: Bdf, behaviour: RecordingBehaviour) -> None:
    dm.plug(vm, bdf, recording_type(behaviour))
    program_bar(dm, vm, bdf, 0, MEM0)
    program_bar(dm, vm, bdf, 1, PORT1)
    program_bar(dm, vm, bdf, 2, MEM2)
    dm.config_write(vm, bdf, 0x30, 4, ROM_BASE | 1)
    enable(dm, vm, bdf, 0x3)


@pytest.mark.req("R-DT-003")
def test_behaviour_sees_bar_index_offset_length_and_bytes() -> None:
    rec = RecordingBehaviour()
    dm = DataManager()
    dm.create_vm(VM)
    plug_recorder(dm, VM, BDF_A, rec)
    rec.calls.clear()
    dm.mmio_write(VM, MEM0 + 0x10, 4, 0x44332211)
    dm.mmio_read(VM, MEM0 + 0x20, 8)
    dm.io_write(VM, PORT1 + 2, 2, 0xBEEF)
    dm.io_read(VM, PORT1 + 4, 1)
    dm.mmio_write(VM, MEM2 + 0xFF8, 8, 0x0807060504030201)
    assert rec.calls == [
        ("write", 0, 0x10, 4, b"\x11\x22\x33\x44"),
        ("read", 0, 0x20, 8, b""),
        ("write", 1, 2, 2, b"\xef\xbe"),
        ("read", 1, 4, 1, b""),
        ("write", 2, 0xFF8, 8, bytes(range(1, 9))),
    ]


@pytest.mark.req("R-DT-003")
def test_behaviour_sees_only_runs_inside_its_bar_for_straddling_accesses() -> None:
    rec = RecordingBehaviour()
    dm = DataManager()
    dm.create_vm(VM)
    plug_recorder(dm, VM, BDF_A, rec)
    rec.calls.clear()
    # BAR0 (0xE0000000-0xE0000FFF) is followed by BAR2 (0xE0001000-...): one access, two runs.
    dm.mmio_write(VM, MEM0 + 0xFFC, 8, 0x8877665544332211)
    assert rec.calls == [("write", 0, 0xFFC, 4, b"\x11\x22\x33\x44"), ("write", 2, 0, 4, b"\x55\x66\x77\x88")]
    rec.calls.clear()
    # The end of BAR2 is followed by unmapped space: only the bytes inside BAR2 reach it.
    dm.mmio_read(VM, MEM2 + 0xFFE, 4)
    assert rec.calls == [("read", 2, 0xFFE, 2, b"")]


@pytest.mark.req("R-DT-003")
def test_rom_accesses_never_reach_the_behaviour() -> None:
    rec = RecordingBehaviour()
    dm = DataManager()
    dm.create_vm(VM)
    plug_recorder(dm, VM, BDF_A, rec)
    rec.calls.clear()
    assert dm.mmio_read(VM, ROM_BASE, 4) == 0x0001AA55
    dm.mmio_write(VM, ROM_BASE, 4, 0xFFFFFFFF)
    assert dm.mmio_read(VM, ROM_BASE, 4) == 0x0001AA55
    assert rec.calls == []


@pytest.mark.req("R-DT-003")
def test_behaviour_state_lives_in_instance_data_and_travels_in_the_blob() -> None:
    rec = RecordingBehaviour()
    dm = DataManager()
    for vm in (1, 2):
        dm.create_vm(vm)
        plug_recorder(dm, vm, BDF_A, rec)
    for k in range(5):
        dm.mmio_write(1, MEM0 + 4 * k, 4, k + 1)
    # Same behaviour object, separate instances: each counts its own writes.
    assert dm.io_read(1, PORT1, 4) == 5
    assert dm.io_read(2, PORT1, 4) == 0
    blob = dm.save(1, BDF_A)
    dm.restore(2, BDF_A, blob)
    assert dm.io_read(2, PORT1, 4) == 5
    assert dm.mmio_read(2, MEM0 + 8, 4) == 3
    # A different manager with its own behaviour object of the same name restores the same state.
    other = DataManager()
    other.create_vm(7)
    plug_recorder(other, 7, BDF_B, RecordingBehaviour())
    other.restore(7, BDF_B, blob)
    assert other.io_read(7, PORT1, 4) == 5
    dm.mmio_write(1, MEM0, 4, 0)
    assert dm.io_read(1, PORT1, 4) == 6
    assert dm.io_read(2, PORT1, 4) == 5


@pytest.mark.req("R-DT-003")
def test_edu_behaviour_state_travels_in_the_blob() -> None:
    dm = DataManager()
    for vm in (1, 2):
        dm.create_vm(vm)
        dm.plug(vm, BDF_A, EDU)
        program_bar(dm, vm, BDF_A, 0, 0xFE000000)
        enable(dm, vm, BDF_A, 0x2)
    dm.mmio_write(1, 0xFE000004, 4, 0x12345678)
    assert dm.mmio_read(1, 0xFE000004, 4) == 0xEDCBA987
    assert dm.mmio_read(2, 0xFE000004, 4) == 0  # power-on liveness register
    dm.restore(2, BDF_A, dm.save(1, BDF_A))
    assert dm.mmio_read(2, 0xFE000004, 4) == 0xEDCBA987
    assert dm.mmio_read(2, 0xFE000000, 4) == 0x010000ED


# ------------------------------------------------------------------ R-DT-004

PLAIN = make_type(name="plain", bars=(BarSpec(BarKind.MEM32, 1 << 16), BarSpec(BarKind.IO, 32)))
PLAIN_MEM, PLAIN_IO = 0xE0000000, 0xC100


def plain_dm() -> DataManager:
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, BDF_A, PLAIN)
    program_bar(dm, VM, BDF_A, 0, PLAIN_MEM)
    program_bar(dm, VM, BDF_A, 1, PLAIN_IO)
    enable(dm, VM, BDF_A, 0x3)
    return dm


@pytest.mark.req("R-DT-004")
def test_default_behaviour_reads_zero_before_any_write() -> None:
    dm = plain_dm()
    for offset in (0, 1, 0xFFF, 0x1000, 0xFFF8):
        assert dm.mmio_read(VM, PLAIN_MEM + offset, 8) == 0
    for port in range(PLAIN_IO, PLAIN_IO + 32, 4):
        assert dm.io_read(VM, port, 4) == 0


@pytest.mark.req("R-DT-004")
def test_default_behaviour_reads_last_written_bytes_memory_and_io() -> None:
    dm = plain_dm()
    dm.mmio_write(VM, PLAIN_MEM + 0x100, 8, 0x1122334455667788)
    dm.mmio_write(VM, PLAIN_MEM + 0x102, 2, 0xAAAA)
    assert dm.mmio_read(VM, PLAIN_MEM + 0x100, 8) == 0x11223344AAAA7788
    assert dm.mmio_read(VM, PLAIN_MEM + 0x103, 1) == 0xAA
    dm.mmio_write(VM, PLAIN_MEM + 0xFFE, 4, 0xDDCCBBAA)  # crosses a 4 KiB page inside the BAR
    assert dm.mmio_read(VM, PLAIN_MEM + 0xFFC, 8) == 0x0000DDCCBBAA0000
    dm.io_write(VM, PLAIN_IO + 1, 2, 0x5A5A)
    assert dm.io_read(VM, PLAIN_IO, 4) == 0x005A5A00
    assert dm.mmio_read(VM, PLAIN_MEM + 1, 2) == 0  # BAR contents are per BAR


@pytest.mark.req("R-DT-004")
@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, (1 << 16) - 8),
            st.sampled_from([1, 2, 4, 8]),
            st.integers(0, (1 << 64) - 1),
        ),
        max_size=25,
    ),
    st.lists(
        st.tuples(st.integers(0, (1 << 16) - 8), st.sampled_from([1, 2, 4, 8])), min_size=1, max_size=10
    ),
)
def test_default_behaviour_matches_a_byte_array_shadow(
    writes: list[tuple[int, int, int]], reads: list[tuple[int, int]]
) -> None:
    dm = plain_dm()
    shadow = bytearray(1 << 16)
    for offset, width, value in writes:
        value &= (1 << (8 * width)) - 1
        dm.mmio_write(VM, PLAIN_MEM + offset, width, value)
        shadow[offset : offset + width] = value.to_bytes(width, "little")
    for offset, width in reads:
        expected = int.from_bytes(shadow[offset : offset + width], "little")
        assert dm.mmio_read(VM, PLAIN_MEM + offset, width) == expected


@pytest.mark.req("R-DT-004")
def test_bar_contents_are_sparse_untouched_bytes_cost_nothing() -> None:
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, BDF_A, A100)
    base = 0x40_0000_0000
    program_bar(dm, VM, BDF_A, 1, base)  # 64 GiB prefetchable BAR
    enable(dm, VM, BDF_A, 0x2)
    empty = len(dm.save(VM, BDF_A))
    for offset in (0, 1 << 20, 60 << 30, (64 << 30) - 8):
        assert dm.mmio_read(VM, base + offset, 8) == 0
    dm.mmio_write(VM, base + (32 << 30), 8, 0)  # zeros over untouched bytes
    assert len(dm.save(VM, BDF_A)) == empty
    dm.mmio_write(VM, base + (60 << 30), 1, 0x5A)
    one_page = len(dm.save(VM, BDF_A)) - empty
    assert 0 < one_page <= 4096 + 64
    dm.mmio_write(VM, base + (60 << 30) + 100, 1, 0x5B)  # same page
    assert len(dm.save(VM, BDF_A)) - empty == one_page
    dm.mmio_write(VM, base + (64 << 30) - 1, 1, 0x5C)  # another page, far away
    assert len(dm.save(VM, BDF_A)) - empty == 2 * one_page
    assert dm.mmio_read(VM, base + (60 << 30), 1) == 0x5A
    assert dm.mmio_read(VM, base + (64 << 30) - 1, 1) == 0x5C


@pytest.mark.req("R-DT-004")
def test_default_behaviour_is_per_instance() -> None:
    dm = plain_dm()
    dm.plug(VM, BDF_B, PLAIN)
    program_bar(dm, VM, BDF_B, 0, PLAIN_MEM + (1 << 16))
    enable(dm, VM, BDF_B, 0x2)
    dm.mmio_write(VM, PLAIN_MEM + 0x10, 4, 0xFEEDFACE)
    assert dm.mmio_read(VM, PLAIN_MEM + (1 << 16) + 0x10, 4) == 0
