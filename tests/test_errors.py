"""Typed errors, argument checks and the absence of partial effects (R-ERR-001..R-ERR-003)."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import NIC, VM, enable, program_bar
from vpcid.model import (
    BadWidth,
    BarKind,
    BarSpec,
    Bdf,
    BlobError,
    BlobMismatch,
    DataManager,
    DeviceTypeError,
    DuplicateVm,
    InvalidArgument,
    Misaligned,
    Profile,
    ProfileError,
    SlotOccupied,
    UnknownDevice,
    UnknownVm,
    VpcidError,
)
from vpcid.model import errors as errors_module
from vpcid.model.catalog import E1000, EDU, NVME

SPEC = Path(__file__).resolve().parent.parent / "spec"
EDU_AT, NVME_AT, EMPTY = Bdf(0, 4, 0), Bdf(0, 3, 0), Bdf(0, 9, 0)
BAR0, BAR1, EDU_BAR0 = 0xFEBC_0000, 0xC000, 0xFE00_0000
E1000_BIG = dataclasses.replace(E1000, bars=(BarSpec(BarKind.MEM32, 256 << 10), BarSpec(BarKind.IO, 64)))
NATURAL = Profile.from_mapping({"alignment": "natural"})

EXPECTED_KINDS: dict[type[VpcidError], str] = {
    InvalidArgument: "invalid-argument",
    UnknownVm: "unknown-vm",
    DuplicateVm: "duplicate-vm",
    UnknownDevice: "unknown-device",
    SlotOccupied: "slot-occupied",
    BadWidth: "bad-width",
    Misaligned: "misaligned",
    DeviceTypeError: "bad-device-type",
    ProfileError: "bad-profile",
    BlobError: "bad-blob",
    BlobMismatch: "blob-mismatch",
}


def spec_kinds() -> list[str]:
    """The kinds listed in R-ERR-003, parsed from spec/requirements/06-errors.md."""
    text = (SPEC / "requirements" / "06-errors.md").read_text()
    section = text.split("### R-ERR-003", 1)[1].split("\n### ", 1)[0]
    listing = section.split("Traces and reports", 1)[0]
    return re.findall(r"`([a-z-]+)`", listing)


def state(dm: DataManager) -> tuple[object, ...]:
    """Everything observable about a manager: VM ids, every VM's snapshot, tables and 0xCF8."""
    return (dm.vm_ids(), tuple((vm, dm.snapshot(vm), dm.tables(vm), dm.cf8(vm)) for vm in dm.vm_ids()))


def populated(profile: Profile | None = None) -> DataManager:
    """VM 1: e1000 (decoding, data), EDU and NVMe; VM 2: an NVMe; 0xCF8 set in both."""
    dm = DataManager(profile or Profile())
    dm.create_vm(VM)
    dm.create_vm(2, ecam_base=None)
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, BAR0)
    program_bar(dm, VM, NIC, 1, BAR1)
    enable(dm, VM, NIC)
    dm.plug(VM, EDU_AT, EDU)
    program_bar(dm, VM, EDU_AT, 0, EDU_BAR0)
    enable(dm, VM, EDU_AT)
    dm.plug(VM, NVME_AT, NVME)
    dm.plug(2, NVME_AT, NVME)
    dm.mmio_write(VM, BAR0 + 0x10, 4, 0x1234)
    dm.mmio_write(VM, EDU_BAR0 + 4, 4, 0x99)
    dm.io_write(VM, 0xCF8, 4, 0x8000_1000)
    dm.io_write(2, 0xCF8, 4, 0x8000_1800)
    return dm


Call = Callable[[DataManager], object]


def short(value: object) -> str:
    """A short, stable test-id fragment for an argument value."""
    text = repr(value)
    if len(text) <= 24:
        return text
    size = f"[{len(value)}]" if isinstance(value, (bytes, tuple, list)) else ""
    return f"{type(value).__name__}{size}"


def _case(name: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> Call:
    def call(dm: DataManager) -> object:
        return getattr(dm, name)(*args, **(kwargs or {}))

    return call


# A blob and a snapshot that restore fine into the populated manager, for cases that break other arguments.
_REFERENCE = populated()
GOOD_BLOB = _REFERENCE.save(VM, NIC)
GOOD_SNAPSHOT = _REFERENCE.snapshot(VM)
NVME_BLOB = _REFERENCE.save(VM, NVME_AT)

BAD_VM_IDS: list[tuple[object, type[VpcidError]]] = [
    (True, InvalidArgument),
    (False, InvalidArgument),
    (-1, InvalidArgument),
    (1 << 32, InvalidArgument),
    (1.0, InvalidArgument),
    ("1", InvalidArgument),
    (None, InvalidArgument),
    (99, UnknownVm),
]

VM_METHODS: dict[str, tuple[Any, ...]] = {
    "destroy_vm": (),
    "unplug": (NIC,),
    "plug": (EMPTY, E1000),
    "config_read": (NIC, 0, 4),
    "config_write": (NIC, 0x3C, 1, 5),
    "io_read": (BAR1, 4),
    "io_write": (BAR1, 4, 1),
    "mmio_read": (BAR0, 4),
    "mmio_write": (BAR0, 4, 1),
    "reset": (NIC,),
    "reset_vm": (),
    "save": (NIC,),
    "restore": (NIC, GOOD_BLOB),
    "snapshot": (),
    "restore_vm": (GOOD_SNAPSHOT,),
    "tables": (),
    "resolve": ("memory", BAR0),
    "device_type": (NIC,),
    "cf8": (),
    "set_ecam_base": (0xC000_0000,),
    "ecam_base": (),
    "topology": (),
}
"""Every method that names an existing VM, with otherwise valid arguments."""

BDF_METHODS: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = {
    "unplug": ((), ()),
    "plug": ((), (E1000,)),
    "config_read": ((), (0, 4)),
    "config_write": ((), (0x3C, 1, 5)),
    "reset": ((), ()),
    "save": ((), ()),
    "restore": ((), (GOOD_BLOB,)),
    "device_type": ((), ()),
}
BAD_BDFS: list[object] = ["00:02.0", (0, 2, 0), NIC.packed, None, [0, 2, 0], {"bus": 0}]


def _cases() -> list[tuple[str, Call, type[VpcidError], Profile | None]]:
    cases: list[tuple[str, Call, type[VpcidError], Profile | None]] = []

    def add(cid: str, call: Call, exc: type[VpcidError], profile: Profile | None = None) -> None:
        cases.append((cid, call, exc, profile))

    # VM ids, for every method that names one.
    for name, rest in VM_METHODS.items():
        for bad, exc in BAD_VM_IDS:
            if name == "restore_vm" and exc is UnknownVm:
                continue  # restoring a snapshot into an unknown VM creates it (R-SR-006)
            add(f"{name}-vm-{short(bad)}", _case(name, (bad, *rest)), exc)
    for bad, exc in BAD_VM_IDS[:-1]:
        add(f"create_vm-vm-{short(bad)}", _case("create_vm", (bad,)), exc)
    add("create_vm-duplicate", _case("create_vm", (VM,)), DuplicateVm)
    add("create_vm-duplicate-other-ecam", _case("create_vm", (2,), {"ecam_base": 0xC000_0000}), DuplicateVm)
    for bad in (0xB000_0001, 0x0800_0000, -1, 1 << 64, (1 << 64) - (1 << 27), True, 1.5, "0xB0000000"):
        add(f"create_vm-ecam-{short(bad)}", _case("create_vm", (7,), {"ecam_base": bad}), InvalidArgument)

    # BDFs.
    for name, (before, after) in BDF_METHODS.items():
        for bad in BAD_BDFS:
            add(f"{name}-bdf-{short(bad)}", _case(name, (VM, *before, bad, *after)), InvalidArgument)
    for name in ("unplug", "reset", "save", "device_type"):
        add(f"{name}-empty-bdf", _case(name, (VM, EMPTY)), UnknownDevice)
    add("restore-empty-bdf", _case("restore", (VM, EMPTY, GOOD_BLOB)), UnknownDevice)
    add("plug-occupied", _case("plug", (VM, NIC, EDU)), SlotOccupied)
    add("plug-occupied-same-type", _case("plug", (VM, NIC, E1000)), SlotOccupied)

    # Device types.
    for bad in ("e1000", None, {"name": "e1000"}, E1000.bars):
        add(f"plug-type-{short(bad)}", _case("plug", (VM, EMPTY, bad)), InvalidArgument)
        add(f"register_type-{short(bad)}", _case("register_type", (bad,)), InvalidArgument)
    add("plug-conflicting-type", _case("plug", (VM, EMPTY, E1000_BIG)), DeviceTypeError)
    add("plug-conflicting-type-vm2", _case("plug", (2, EMPTY, E1000_BIG)), DeviceTypeError)
    add("register_type-conflicting", _case("register_type", (E1000_BIG,)), DeviceTypeError)

    # Configuration accesses.
    for name, rest in (("config_read", ()), ("config_write", (0,))):
        for bad in (-1, 0x1000, 1 << 40, True, 1.0, "0", None):
            add(f"{name}-offset-{short(bad)}", _case(name, (VM, NIC, bad, 1, *rest)), InvalidArgument)
        for bad in (0, 3, 8, -1, True, 4.0, "4", None):
            add(f"{name}-width-{short(bad)}", _case(name, (VM, NIC, 0, bad, *rest)), BadWidth)
        for offset, width in ((1, 4), (2, 4), (3, 2), (0x3F, 2), (0xFFE, 4), (0xFFF, 2)):
            call = _case(name, (VM, NIC, offset, width, *rest))
            add(f"{name}-misaligned-{offset:#x}+{width}", call, Misaligned)
    bad_values = ((1, -1), (1, 0x100), (2, 0x1_0000), (4, 1 << 32), (4, True), (4, 1.0), (4, "1"), (1, None))
    for width, bad in bad_values:
        call = _case("config_write", (VM, NIC, 0x3C, width, bad))
        add(f"config_write-value-{width}-{short(bad)}", call, InvalidArgument)
    add("config_write-value-absent-bdf", _case("config_write", (VM, EMPTY, 0, 1, 0x100)), InvalidArgument)

    # I/O and MMIO accesses.
    for name, rest in (("io_read", ()), ("io_write", (0,))):
        for port, width in ((-1, 1), (0x1_0000, 1), (0xFFFF, 2), (0xFFFD, 4), (True, 1), (1.0, 1), (None, 1)):
            add(f"{name}-port-{port!r}+{width}", _case(name, (VM, port, width, *rest)), InvalidArgument)
        for bad in (0, 3, 8, -1, True, 2.0, "1"):
            add(f"{name}-width-{short(bad)}", _case(name, (VM, BAR1, bad, *rest)), BadWidth)
        for port, width in ((BAR1 + 1, 2), (BAR1 + 2, 4), (0xCF9, 4), (0xCFD, 2)):
            call = _case(name, (VM, port, width, *rest))
            add(f"{name}-natural-{port:#x}+{width}", call, Misaligned, NATURAL)
    bad_addresses = ((-1, 1), (1 << 64, 1), ((1 << 64) - 1, 2), ((1 << 64) - 4, 8), (True, 1), (1.0, 4))
    for name, rest in (("mmio_read", ()), ("mmio_write", (0,))):
        for address, width in bad_addresses:
            call = _case(name, (VM, address, width, *rest))
            add(f"{name}-address-{address!r}+{width}", call, InvalidArgument)
        for bad in (0, 3, 5, 16, -1, True, 8.0, None):
            add(f"{name}-width-{short(bad)}", _case(name, (VM, BAR0, bad, *rest)), BadWidth)
        for address, width in ((BAR0 + 1, 2), (BAR0 + 2, 4), (BAR0 + 4, 8), (0xB000_0001, 2)):
            call = _case(name, (VM, address, width, *rest))
            add(f"{name}-natural-{address:#x}+{width}", call, Misaligned, NATURAL)
    for name, address in (("io_write", BAR1), ("mmio_write", BAR0)):
        for width, bad in ((1, -1), (1, 0x100), (2, 0x1_0000), (4, 1 << 32), (4, True), (4, 1.5), (4, None)):
            add(f"{name}-value-{width}-{short(bad)}", _case(name, (VM, address, width, bad)), InvalidArgument)
    add("mmio_write-value-8", _case("mmio_write", (VM, BAR0, 8, 1 << 64)), InvalidArgument)
    add("io_write-cf8-value", _case("io_write", (VM, 0xCF8, 4, 1 << 32)), InvalidArgument)

    # Introspection.
    for bad in ("mmio", "IO", None, 0, "config"):
        add(f"resolve-space-{short(bad)}", _case("resolve", (VM, bad, 0)), InvalidArgument)
    for space, bad in (("io", -1), ("io", 0x1_0000), ("memory", -1), ("memory", 1 << 64), ("io", True)):
        add(f"resolve-{space}-{short(bad)}", _case("resolve", (VM, space, bad)), InvalidArgument)
    add("resolve-memory-float", _case("resolve", (VM, "memory", 1.0)), InvalidArgument)

    # Blobs and snapshots.
    junk: tuple[object, ...] = (None, "blob", 0, [1, 2], b"", b"VPCIDBLB" + bytes(40))
    for bad in (*junk, GOOD_SNAPSHOT, GOOD_BLOB[:-1], GOOD_BLOB + b"\x00"):
        add(f"restore-blob-{short(bad)}", _case("restore", (VM, NIC, bad)), BlobError)
    for bad in (*junk, GOOD_BLOB, GOOD_SNAPSHOT[:-1], GOOD_SNAPSHOT + b"\x00"):
        add(f"restore_vm-snapshot-{short(bad)}", _case("restore_vm", (VM, bad)), BlobError)
        add(f"restore_vm-new-snapshot-{short(bad)}", _case("restore_vm", (3, bad)), BlobError)
    add("restore-other-type", _case("restore", (VM, NIC, NVME_BLOB)), BlobMismatch)
    add("restore-other-type-edu", _case("restore", (VM, EDU_AT, GOOD_BLOB)), BlobMismatch)
    return cases


CASES = _cases()


@pytest.mark.req("R-ERR-001", "R-ERR-002")
@pytest.mark.parametrize(("call", "exc", "profile"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rejected_call_raises_typed_error_and_changes_nothing(
    call: Call, exc: type[VpcidError], profile: Profile | None
) -> None:
    dm = populated(profile)
    before = state(dm)
    with pytest.raises(VpcidError) as info:
        call(dm)
    assert type(info.value) is exc
    assert info.value.kind == EXPECTED_KINDS[exc]
    assert info.value.kind in spec_kinds()
    assert state(dm) == before


@pytest.mark.req("R-ERR-001", "R-ERR-002")
def test_every_public_method_is_covered() -> None:
    public = {
        name for name, _ in inspect.getmembers(DataManager, inspect.isfunction) if not name.startswith("_")
    }
    covered = set(VM_METHODS) | {"create_vm", "register_type"}
    assert public - {"vm_ids"} <= covered, public - covered
    assert populated().vm_ids() == (VM, 2)  # vm_ids takes no argument: nothing to reject


@pytest.mark.req("R-ERR-001")
def test_rejected_calls_leave_manager_fully_usable() -> None:
    """After a burst of rejected calls, the manager behaves exactly like an untouched twin."""
    dm, twin = populated(), populated()
    for _, call, _, profile in CASES:
        if profile is None:
            with pytest.raises(VpcidError):
                call(dm)
    assert state(dm) == state(twin)
    for manager in (dm, twin):
        manager.plug(VM, EMPTY, E1000)  # the conflicting type was never registered
        manager.mmio_write(VM, BAR0 + 0x20, 8, 0x55)
        manager.restore(VM, NIC, GOOD_BLOB)
        manager.restore_vm(5, GOOD_SNAPSHOT)
    assert state(dm) == state(twin)


@pytest.mark.req("R-ERR-001")
def test_failed_conflicting_plug_registers_nothing() -> None:
    dm = DataManager()
    dm.create_vm(VM)
    with pytest.raises(InvalidArgument):
        dm.plug(VM, "00:02.0", E1000_BIG)  # type: ignore[arg-type]
    with pytest.raises(UnknownVm):
        dm.plug(5, NIC, E1000_BIG)
    dm.plug(VM, NIC, E1000)  # E1000_BIG did not claim the name
    assert dm.device_type(VM, NIC) is E1000


@pytest.mark.req("R-ERR-002", "R-ACC-006")
def test_configuration_access_to_absent_bdf_is_not_an_error() -> None:
    dm = populated()
    before = state(dm)
    assert dm.config_read(VM, EMPTY, 0, 4) == 0xFFFF_FFFF
    dm.config_write(VM, EMPTY, 0x04, 2, 0x7)
    assert state(dm) == before


@pytest.mark.req("R-ERR-002")
@pytest.mark.parametrize(
    "args",
    [
        (256, 0, 0),
        (0, 32, 0),
        (0, 0, 8),
        (-1, 0, 0),
        (True, 0, 0),
        (0, False, 0),
        (0, 0, 1.0),
        (0, -1, 0),
        (0, 0, -1),
        ("0", 0, 0),
        (None, 0, 0),
    ],
    ids=repr,
)
def test_bdf_parts_checked(args: tuple[Any, Any, Any]) -> None:
    with pytest.raises(InvalidArgument) as info:
        Bdf(*args)
    assert info.value.kind == "invalid-argument"


@pytest.mark.req("R-ERR-002")
@pytest.mark.parametrize(
    "text", ["", "0:0", "100:00.0", "00:20.0", "00:00.8", "zz:00.0", 0x10, None], ids=repr
)
def test_bdf_parse_checked(text: Any) -> None:
    with pytest.raises(InvalidArgument):
        Bdf.parse(text)


@pytest.mark.req("R-ERR-002")
@pytest.mark.parametrize("packed", [-1, 0x1_0000, True, 1.0, "0"], ids=repr)
def test_bdf_unpack_checked(packed: Any) -> None:
    with pytest.raises(InvalidArgument):
        Bdf.unpack(packed)


@pytest.mark.req("R-ERR-002")
@pytest.mark.parametrize("profile", ["default", None, {}, 1, Profile], ids=repr)
def test_manager_profile_checked(profile: Any) -> None:
    with pytest.raises(InvalidArgument):
        DataManager(profile)


@pytest.mark.req("R-ERR-002")
@pytest.mark.parametrize(
    "changes",
    [
        {"bars": (BarSpec(BarKind.MEM32, 3000),)},
        {"bars": (BarSpec(BarKind.IO, 512),)},
        {"bars": (None, None, None, None, None, BarSpec(BarKind.MEM64, 4096))},
        {"vendor_id": 0xFFFF},
        {"vendor_id": 1 << 16},
        {"interrupt_pin": 5},
        {"name": ""},
    ],
    ids=["mem-size", "io-size", "mem64-slot5", "vendor-ffff", "vendor-wide", "pin", "name"],
)
def test_device_type_checked(changes: dict[str, Any]) -> None:
    with pytest.raises(DeviceTypeError) as info:
        dataclasses.replace(E1000, **changes)
    assert info.value.kind == "bad-device-type"


@pytest.mark.req("R-ERR-002")
@pytest.mark.parametrize(
    "mapping",
    [{"overlap": "random"}, {"colour": "red"}, {"status": 1}, {"status": None}, ["status"]],
    ids=repr,
)
def test_profile_values_checked(mapping: Any) -> None:
    with pytest.raises(ProfileError) as info:
        Profile.from_mapping(mapping)
    assert info.value.kind == "bad-profile"


# ---------------------------------------------------------------- R-ERR-003


@pytest.mark.req("R-ERR-003")
@pytest.mark.parametrize(("cls", "kind"), EXPECTED_KINDS.items(), ids=EXPECTED_KINDS.values())
def test_error_class_has_stable_kind(cls: type[VpcidError], kind: str) -> None:
    assert issubclass(cls, VpcidError)
    assert issubclass(cls, Exception)
    assert cls.kind == kind
    error = cls("message")
    assert error.kind == kind
    assert str(error) == "message"


@pytest.mark.req("R-ERR-003")
def test_error_kinds_match_spec_list() -> None:
    listed = spec_kinds()
    assert len(listed) == 11
    assert len(set(listed)) == len(listed)
    assert sorted(EXPECTED_KINDS.values()) == sorted(listed)


@pytest.mark.req("R-ERR-003")
def test_every_error_class_in_the_model_has_a_listed_kind() -> None:
    classes = [
        obj
        for obj in vars(errors_module).values()
        if isinstance(obj, type) and issubclass(obj, VpcidError) and obj is not VpcidError
    ]
    assert set(classes) == set(EXPECTED_KINDS)
    kinds = [c.kind for c in classes]
    assert len(set(kinds)) == len(kinds)
    assert set(kinds) == set(spec_kinds())


@pytest.mark.req("R-ERR-003")
def test_every_kind_the_spec_cites_is_listed() -> None:
    listed = set(spec_kinds())
    cited: set[str] = set()
    data_manager_spec = [*(SPEC / "requirements").glob("*.md"), SPEC / "variants.md"]
    data_manager_spec += [SPEC / "formats" / "blob.md", SPEC / "formats" / "profile.md"]
    for path in data_manager_spec:
        cited |= set(re.findall(r"\(`([a-z]+(?:-[a-z]+)+|misaligned)`", path.read_text()))
    assert cited
    from vpcid.model.profile import AXES
    from vpcid.model.registers import Action

    # variant values and register actions share the (`name`) notation; they are not error kinds
    cited -= {value.value for axis in AXES.values() for value in axis} | {action.value for action in Action}
    assert cited <= listed, cited - listed


@pytest.mark.req("R-ERR-003")
def test_blob_mismatch_is_a_blob_error_with_its_own_kind() -> None:
    assert issubclass(BlobMismatch, BlobError)
    assert BlobMismatch.kind != BlobError.kind
