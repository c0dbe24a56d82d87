"""Blame (vpcid.conformance.blame): each minimal trace of a planted or hand-made bug is blamed on the one
rule it breaks, with a one-line reason in hex."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from vpcid.adapters.base import FixedMachine
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.blame import Blame, blame, config_field, rule_line
from vpcid.conformance.cases import _ks_blob, _payload_offset, _set_config, _snapshot
from vpcid.conformance.certify import describe
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.engine import Differential, Divergence
from vpcid.conformance.mutants import BY_NAME
from vpcid.conformance.trace import GUEST_VIEW, Observation, Op, OpKind, define_type_op
from vpcid.conformance.typefile import type_json
from vpcid.model import Bdf, BlobError, DataManager, DeviceType, Profile, Register, RegisterClass
from vpcid.model import blob as blobfmt
from vpcid.model.catalog import E1000
from vpcid.model.devicetype import layout
from vpcid.model.manager import Instance, VmElement
from vpcid.model.profile import StatusRegister

KS = Bdf(0, 3, 0)
"""kitchen-sink: I/O BAR0 (32 bytes), memory BAR1 (4 KiB), 64-bit BAR2 (1 MiB), ROM, capabilities."""
NIC = Bdf(0, 2, 0)
INIT = Op(OpKind.INIT)
RESET = Op(OpKind.RESET, vm=1, bdf=KS)
RESET_VM = Op(OpKind.RESET_VM, vm=1)
FOREIGN_VENDOR = blobfmt.encode_instance(_set_config(blobfmt.decode_instance(_ks_blob()), 0x00, b"\x37\x1b"))
"""kitchen-sink's literal blob with another vendor ID: decodes, and is rejected (R-SR-004)."""


BAR1_DECODING = [
    Op(OpKind.CONFIG_WRITE, vm=1, bdf=KS, address=0x14, width=4, value=0xE000_1000),
    Op(OpKind.CONFIG_WRITE, vm=1, bdf=KS, address=0x04, width=2, value=0x2),
]
"""kitchen-sink's 4 KiB memory BAR1 decoding at 0xE000_1000."""


def vm_with(*devices: tuple[Bdf, str], vm: int = 1) -> list[Op]:
    return [Op(OpKind.CREATE_VM, vm=vm), *(Op(OpKind.PLUG, vm=vm, bdf=b, name=t) for b, t in devices)]


def cw(offset: int, width: int, value: int, bdf: Bdf = KS, vm: int = 1) -> Op:
    return Op(OpKind.CONFIG_WRITE, vm=vm, bdf=bdf, address=offset, width=width, value=value)


def cr(offset: int, width: int = 4, bdf: Bdf = KS, vm: int = 1) -> Op:
    return Op(OpKind.CONFIG_READ, vm=vm, bdf=bdf, address=offset, width=width)


def mr(address: int, width: int = 4, vm: int = 1) -> Op:
    return Op(OpKind.MMIO_READ, vm=vm, address=address, width=width)


def mw(address: int, width: int, value: int, vm: int = 1) -> Op:
    return Op(OpKind.MMIO_WRITE, vm=vm, address=address, width=width, value=value)


def io(address: int, width: int = 4, value: int | None = None, vm: int = 1) -> Op:
    if value is None:
        return Op(OpKind.IO_READ, vm=vm, address=address, width=width)
    return Op(OpKind.IO_WRITE, vm=vm, address=address, width=width, value=value)


def blamed(impl: ModelAdapter, body: Sequence[Op], rules: Sequence[str | None] | None = None) -> Blame:
    """Blame of a trace that must diverge on its last operation."""
    trace = [INIT, *body]
    divergence = Differential(impl).replay(trace)
    assert divergence is not None, "the trace does not diverge"
    assert divergence.index == len(trace) - 1, f"diverges early, at {divergence.describe()}"
    return blame(impl, trace, divergence, rules)


def mutant(name: str) -> ModelAdapter:
    return BY_NAME[name].adapter()


def buggy(factory: type[DataManager], profile: Profile | None = None) -> ModelAdapter:
    return ModelAdapter("buggy", profile or Profile(), manager_factory=factory)


# --------------------------------------------------------------------------- configuration bytes


@pytest.mark.req("R-CFG-002", "R-CFG-007", "R-BAR-003", "R-CFG-006")
@pytest.mark.parametrize(
    ("name", "body", "rid"),
    [
        ("subsystem-writable", [cw(0x2C, 4, 0xFFFF_FFFF), cr(0x2C)], "R-CFG-002"),
        ("cache-line-read-only", [cw(0x0C, 1, 0x10), cr(0x0C)], "R-CFG-007"),
        ("bar-size-off-by-one", [cw(0x14, 4, 0xFFFF_FFFF), cr(0x14)], "R-BAR-003"),
        ("rw1c-as-rw", [cw(0x06, 2, 0xFFFF), cr(0x04)], "R-CFG-006"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_configuration_write_is_blamed_on_the_rule_of_the_byte_it_got_wrong(
    name: str, body: list[Op], rid: str
) -> None:
    found = blamed(mutant(name), [*vm_with((KS, "kitchen-sink")), *body])
    assert found.requirements == (rid,)
    assert found.step == 3, "the write, not the read that showed it"
    assert "configuration byte 0x0" in found.reason


class CacheLineAlsoInterruptLine(DataManager):
    """A write to the cache line size also lands in the interrupt line."""

    def _config_store(self, vm: VmElement, inst: Instance, offset: int, payload: bytes) -> None:
        super()._config_store(vm, inst, offset, payload)
        if offset == 0x0C:
            super()._config_store(vm, inst, 0x3C, payload[:1])


@pytest.mark.req("R-CFG-001")
def test_a_write_that_changes_bytes_it_does_not_cover_breaks_the_masked_write() -> None:
    body = [*vm_with((NIC, "e1000")), cw(0x0C, 1, 0x10, NIC), cr(0x3C, 1, NIC)]
    found = blamed(buggy(CacheLineAlsoInterruptLine), body)
    assert found.requirements == ("R-CFG-001",)
    assert "does not cover it" in found.reason


@pytest.mark.req("R-CFG-002", "R-CFG-004", "R-CFG-005", "R-CFG-006", "R-BAR-002", "R-BAR-004", "R-BAR-005")
@pytest.mark.req("R-BAR-006", "R-BAR-007", "R-CFG-003", "R-CFG-008", "R-CFG-009", "R-CFG-011", "R-CFG-012")
def test_every_byte_of_the_header_has_its_rule() -> None:
    ks = SUITE_TYPES["kitchen-sink"]
    lay = layout(ks, StatusRegister.RW1C)
    expected = {
        0x00: "R-CFG-002", 0x04: "R-CFG-004", 0x06: "R-CFG-005", 0x0E: "R-CFG-011", 0x0D: "R-CFG-003",
        0x10: "R-BAR-006", 0x2C: "R-CFG-002", 0x30: "R-BAR-007", 0x34: "R-CFG-002", 0x3C: "R-CFG-007",
        0x40: "R-CFG-008", 0x100: "R-CFG-009",
    }  # fmt: skip
    for offset, rid in expected.items():
        byte = offset + 2 if offset == 0x10 else offset  # bits 23:16 of I/O BAR0
        assert config_field(ks, lay, byte, 0x01, True)[0] == rid, hex(offset)
    assert config_field(ks, lay, 0x07, 0x80, True)[0] == "R-CFG-006"
    assert config_field(ks, lay, 0x10, 0x01, True)[0] == "R-BAR-002"
    assert config_field(ks, lay, 0x14, 0x00, False)[0] == "R-BAR-008"
    assert config_field(ks, lay, 0x1C, 0x01, True)[0] == "R-BAR-005"
    nic = layout(E1000, StatusRegister.RW1C)
    assert config_field(E1000, nic, 0x24, 0x01, True)[0] == "R-BAR-004"
    registers = [r for r in ks.registers if r.offset >= 0x40]
    assert config_field(ks, lay, registers[0].offset, 0x01, True)[0] == "R-CFG-012"


@pytest.mark.req("R-CFG-009")
def test_extended_space_read_as_missing_is_the_size_rule() -> None:
    exp = Bdf(0, 4, 0)
    found = blamed(mutant("express-extended-ones"), [*vm_with((exp, "express-sink")), cr(0x104, 4, exp)])
    assert found.requirements == ("R-CFG-009",)


# --------------------------------------------------------------------------- lifecycle operations


@pytest.mark.req("R-RST-001", "R-RST-002", "R-RST-003", "R-HP-002", "R-SR-007")
@pytest.mark.parametrize(
    ("name", "body", "rid", "step"),
    [
        ("reset-forgets-command", [cw(0x04, 2, 0x3), RESET, cr(0x04)], "R-RST-001", 4),
        ("reset-vm-keeps-cf8", [io(0xCF8, 4, 0x8000_1800), RESET_VM, io(0xCF8)], "R-RST-003", 4),
        (
            "reset-keeps-data",
            [cw(0x14, 4, 0xE000_1000), cw(0x04, 2, 0x2), mw(0xE000_1004, 4, 0x1234_5678),
             Op(OpKind.RESET, vm=1, bdf=KS), cw(0x14, 4, 0xE000_1000), cw(0x04, 2, 0x2), mr(0xE000_1004)],
            "R-RST-002", 6,
        ),
        (
            "unplug-leaves-routes",
            [cw(0x14, 4, 0xE000_1000), cw(0x04, 2, 0x2), Op(OpKind.UNPLUG, vm=1, bdf=KS), mr(0xE000_1000)],
            "R-HP-002", 5,
        ),
        (
            "restore-half-applies",
            [cw(0x3C, 1, 0x0C), Op(OpKind.RESTORE, vm=1, bdf=KS, data=FOREIGN_VENDOR), cr(0x3C, 1)],
            "R-SR-007", 4,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)  # fmt: skip
def test_a_divergence_first_seen_after_a_lifecycle_operation_is_blamed_on_it(
    name: str, body: list[Op], rid: str, step: int
) -> None:
    found = blamed(mutant(name), [*vm_with((KS, "kitchen-sink")), *body])
    assert found.requirements == (rid,)
    assert found.step == step


# --------------------------------------------------------------------------- routing


@pytest.mark.req("R-DEC-001", "R-DEC-002", "R-DEC-003", "R-DEC-004", "R-DEC-006", "R-BAR-005", "R-DS-008")
@pytest.mark.parametrize(
    ("name", "body", "rid"),
    [
        ("decode-ignores-command", [cw(0x14, 4, 0xE000_1000), mr(0xE000_1000)], "R-DEC-002"),
        ("io-decode-uses-memory-bit", [cw(0x10, 4, 0xC040), cw(0x04, 2, 0x1), io(0xC040)], "R-DEC-001"),
        ("rom-ignores-enable", [cw(0x30, 4, 0xE000_3000), cw(0x04, 2, 0x2), mr(0xE000_3000)], "R-DEC-003"),
        ("address-zero-decodes", [cw(0x04, 2, 0x2), mw(0x4, 4, 0x55), mr(0x4)], "R-DEC-004"),
        ("io-limit-unchecked", [cw(0x10, 4, 0x1_C040), cw(0x04, 2, 0x1), io(0xC040)], "R-DEC-006"),
        (
            "upper-half-ignored",
            [cw(0x18, 4, 0x0010_0000), cw(0x1C, 4, 0x10), cw(0x04, 2, 0x2), mr(0x10_0010_0004)],
            "R-BAR-005",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_routing_divergence_is_blamed_on_what_makes_the_model_decode_or_not(
    name: str, body: list[Op], rid: str
) -> None:
    """The same, on a full-API adapter (whose tables the probes compare) and on a fixed machine that a
    guest sees (reads only)."""
    found = blamed(mutant(name), [*vm_with((KS, "kitchen-sink")), *body])
    assert found.requirements == (rid,), found
    machine = FixedMachine(1, ((KS, SUITE_TYPES["kitchen-sink"]),))
    guest = ModelAdapter(
        "guest", Profile(), machine, manager_factory=BY_NAME[name].build, operations=GUEST_VIEW
    )
    found = blamed(guest, body)
    assert found.requirements == (rid,), found


@pytest.mark.req("R-DS-008")
def test_what_other_vms_did_is_isolation() -> None:
    body = [*vm_with((KS, "kitchen-sink")), *vm_with((KS, "kitchen-sink"), vm=2), cw(0x14, 4, 0xE000_1000),
            cw(0x04, 2, 0x2), mw(0xE000_1004, 4, 0x77), mr(0xE000_1004, vm=2)]  # fmt: skip
    found = blamed(mutant("isolation-leak"), body)
    assert found.requirements == ("R-DS-008",)
    assert "VM 2" in found.reason


# --------------------------------------------------------------------------- accesses


@pytest.mark.req("R-ACC-007", "R-ACC-005", "R-ACC-004", "R-ACC-008", "R-ACC-003")
@pytest.mark.parametrize(
    ("name", "body", "rid"),
    [
        ("big-endian-mmio", [cw(0x14, 4, 0xE000_1000), cw(0x04, 2, 0x2), mw(0xE000_1000, 4, 0x4433_2211),
                             mr(0xE000_1000)], "R-ACC-007"),
        ("straddle-start-address", [*BAR1_DECODING, mr(0xE000_0FFE)], "R-ACC-005"),
        ("unmapped-mmio-zero", [mr(0xE000_1000)], "R-ACC-004"),
        ("wide-values-masked", [mw(0xE000_1000, 2, 0x1_0000)], "R-ACC-008"),
        ("misaligned-config-accepted", [cr(0x3E, 4)], "R-ACC-003"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)  # fmt: skip
def test_an_access_is_blamed_on_its_own_rule(name: str, body: list[Op], rid: str) -> None:
    found = blamed(mutant(name), [*vm_with((KS, "kitchen-sink")), *body])
    assert found.requirements == (rid,)


# --------------------------------------------------------------------------- configuration mechanisms


class LowBitsInOffset(DataManager):
    """QEMU's host bridge: 0xCF8's bits 1:0 are added to the register offset (CF8-OFFSET)."""

    def _cam_data(self, vm: VmElement, port: int, payload: bytes | None, length: int) -> bytes:
        return super()._cam_data(vm, port + (vm.cf8 & 3), payload, length)


class ClearsCf8AfterAccess(DataManager):
    """Clears 0xCF8 after a data-window access while declaring that it keeps it (R-CAM-007)."""

    def _cam_data(self, vm: VmElement, port: int, payload: bytes | None, length: int) -> bytes:
        out = super()._cam_data(vm, port, payload, length)
        vm.cf8 = 0
        return out


class ClearsCf8BesideWindow(DataManager):
    """Clears 0xCF8 after an I/O access that starts at 0xD00, right after the data window (R-CAM-007)."""

    def _io_access(self, vm: VmElement, port: int, width: int, payload: bytes | None) -> bytes:
        out = super()._io_access(vm, port, width, payload)
        if port == 0xD00:
            vm.cf8 = 0
        return out


class Cf8ByteWrites(DataManager):
    """A 1-byte write to 0xCF8-0xCFB replaces that byte of 0xCF8 (cloud-hypervisor's set_config_address)."""

    def _io_access(self, vm: VmElement, port: int, width: int, payload: bytes | None) -> bytes:
        if payload is not None and width == 1 and 0xCF8 <= port < 0xCFC:
            shift = 8 * (port - 0xCF8)
            vm.cf8 = vm.cf8 & ~(0xFF << shift) | payload[0] << shift
            return b""
        return super()._io_access(vm, port, width, payload)


@pytest.mark.req("R-CAM-007")
def test_0xcf8_cleared_by_an_access_beside_the_data_window_is_blamed_on_that_access() -> None:
    """Under ``keep``, 0xCF8 read right after each access near the ports shows which one cleared it; an
    access that includes no data-window port must not (R-CAM-007), whatever 0xCF8 was written."""
    body = [*vm_with((KS, "e1000")), io(0xCF8, 4, 0x8000_1800), io(0xD00, 1), io(0xCF8)]
    found = blamed(buggy(ClearsCf8BesideWindow), body)
    assert found.requirements == ("R-CAM-007",), found
    assert found.step == 4, "the read at 0xD00, not the 0xCF8 write before it"
    assert "includes none" in found.reason


@pytest.mark.req("R-CAM-007", "R-CAM-001")
def test_a_data_window_write_that_clears_0xcf8_is_not_a_write_to_0xcf8() -> None:
    """A write through 0xCFC that clears 0xCF8 breaks what a data access leaves (R-CAM-007); a byte
    write to 0xCF9 that changes 0xCF8 is an access other than a dword at 0xCF8 reaching it (R-CAM-001)."""
    body = [*vm_with((KS, "e1000")), io(0xCF8, 4, 0x8000_1800), io(0xCFC, 4, 0), io(0xCF8)]
    found = blamed(buggy(ClearsCf8AfterAccess), body)
    assert found.requirements == ("R-CAM-007",), found
    body = [*vm_with((KS, "e1000")), io(0xCF8, 4, 0x8000_1800), io(0xCF9, 1, 0x20), io(0xCF8)]
    found = blamed(buggy(Cf8ByteWrites), body)
    assert found.requirements == ("R-CAM-001",), found
    assert found.step == 4


@pytest.mark.req("R-CAM-004", "R-CAM-005", "R-CAM-007", "R-ECAM-002")
def test_configuration_mechanism_findings_name_the_rule_that_applied() -> None:
    function4 = Bdf(0, 3, 4)  # function bit 2: cam-function-bit loses it
    select = 0x8000_0000 | function4.packed << 8
    setup = vm_with((function4, "e1000"))
    assert blamed(
        mutant("cam-function-bit"),
        [
            *setup,
            io(0xCF8, 4, select | 0x3C),
            io(0xCFC, 1, 0x5A),
            mr(0xB000_0000 + (function4.packed << 12) + 0x3C, 1),
        ],
    ).requirements == ("R-CAM-004",)
    assert blamed(mutant("cam-ignores-enable"), [*setup, io(0xCF8, 4, function4.packed << 8), io(0xCFC)]
                  ).requirements == ("R-CAM-005",)  # fmt: skip
    latched = ModelAdapter("low-bits", Profile.from_mapping({"cf8_low_bits": "latched"}),
                           manager_factory=LowBitsInOffset)  # fmt: skip
    found = blamed(latched, [*vm_with((KS, "e1000")), io(0xCF8, 4, select & ~0x700 | KS.packed << 8 | 0x3D),
                             io(0xCFC, 1)])  # fmt: skip
    assert found.requirements == ("R-CAM-004",), found
    clearing = buggy(ClearsCf8AfterAccess)
    found = blamed(clearing, [*vm_with((KS, "e1000")), io(0xCF8, 4, 0x8000_1800), io(0xCFC), io(0xCF8)])
    assert found.requirements == ("R-CAM-007",)
    bus1 = Bdf(1, 0, 0)
    found = blamed(
        mutant("ecam-bus-shift"), [*vm_with((bus1, "e1000")), mr(0xB000_0000 + (bus1.packed << 12))]
    )
    assert found.requirements == ("R-ECAM-002",)


# --------------------------------------------------------------------------- errors, blobs, tables


@pytest.mark.req("R-DS-001", "R-SR-004", "R-BLOB-006")
def test_errors_and_blobs_are_blamed_on_the_check_that_applies() -> None:
    found = blamed(mutant("duplicate-vm-replaces"), [Op(OpKind.CREATE_VM, vm=1), Op(OpKind.CREATE_VM, vm=1)])
    assert found.requirements == ("R-DS-001",)
    rec = blobfmt.decode_instance(_ks_blob())
    config = bytearray(rec.config)
    config[0] ^= 1
    renamed = blobfmt.encode_instance(dataclasses.replace(rec, config=bytes(config)))
    restore = Op(OpKind.RESTORE, vm=1, bdf=KS, data=renamed)
    found = blamed(mutant("restore-accepts-identity"), [*vm_with((KS, "kitchen-sink")), restore])
    assert found.requirements == ("R-SR-004",)
    assert "read-only byte 0x000" in found.reason
    snap = blobfmt.decode_snapshot(_snapshot())
    device = bytearray(snap.devices[0][1])
    device[_payload_offset(snap.devices[0][1], 2) + 0x3C] ^= 1  # the interrupt line; its digest stays
    altered = dataclasses.replace(snap, devices=((snap.devices[0][0], bytes(device)), *snap.devices[1:]))
    body = [Op(OpKind.RESTORE_VM, vm=1, data=blobfmt.encode_snapshot(altered))]
    assert blamed(mutant("snapshot-trusts-instances"), body).requirements == ("R-BLOB-006",)


@pytest.mark.req("R-BLOB-003", "R-RST-002")
def test_a_blob_digest_is_blamed_on_what_it_fails_to_carry() -> None:
    data = [cw(0x14, 4, 0xE000_1000), cw(0x04, 2, 0x2), mw(0xE000_1004, 4, 0x1234_5678)]
    save = Op(OpKind.SAVE, vm=1, bdf=KS, name="s")
    found = blamed(mutant("blob-drops-memory"), [*vm_with((KS, "kitchen-sink")), *data, save])
    assert found.requirements == ("R-BLOB-003",)
    assert "restoring the implementation's blob" in found.reason
    found = blamed(
        mutant("reset-keeps-data"), [*vm_with((KS, "kitchen-sink")), *data, Op(OpKind.RESET_VM, vm=1), save]
    )
    assert found.requirements == ("R-RST-002",), "the data a reset kept shows through the blob"


class ReversedTables(ModelAdapter):
    """Lists the tables' rows in reverse order (R-DS-007 specifies the order)."""

    def execute(self, op: Op) -> Observation:
        seen = super().execute(op)
        if seen.tables is not None:
            return Observation(tables=tuple(reversed(seen.tables)))
        return seen


@pytest.mark.req("R-DS-007")
def test_tables_in_another_order_are_one_finding_about_the_order() -> None:
    impl = ReversedTables("reversed")
    body = [*vm_with((KS, "kitchen-sink"), (NIC, "e1000")), Op(OpKind.TABLES, vm=1)]
    found = blamed(impl, body)
    assert found.requirements == ("R-DS-007",)
    body = [*vm_with((KS, "kitchen-sink"), (NIC, "e1000")), cw(0x14, 4, 0xE000_1000), cw(0x04, 2, 0x2),
            mr(0xE000_1000)]  # fmt: skip
    assert Differential(impl).replay([INIT, *body]) is None, "probes compare rows, not their order"


# --------------------------------------------------------------------------- variants and case steps


@pytest.mark.req("R-VAR-002", "R-CFG-006")
def test_an_undeclared_variant_decides_where_the_diagnosis_falls_back() -> None:
    status_bits = bytearray(blobfmt.decode_instance(_ks_blob()).config)
    rec = blobfmt.decode_instance(_ks_blob())
    status_bits[0x06:0x08] = bytes([0x10, 0xF9])
    blob = blobfmt.encode_instance(dataclasses.replace(rec, config=bytes(status_bits)))
    read_only = ModelAdapter("read-only", Profile(), manager_factory=lambda _p: DataManager(
        Profile.from_mapping({"status": "read-only"})))  # fmt: skip
    found = blamed(read_only, [*vm_with((KS, "kitchen-sink")), Op(OpKind.RESTORE, vm=1, bdf=KS, data=blob)])
    # address_zero = decodes also rejects this blob (its BARs at zero would decode), so it is named second
    assert found.requirements[0] == "R-CFG-006"
    assert "status=read-only" in found.reason


@pytest.mark.req("R-BLOB-002")
def test_a_literal_blob_is_blamed_on_the_rule_its_case_step_checks() -> None:
    """A literal the implementation accepts and the model rejects breaks what its case step checks;
    without the case, what the reader's complaint is about."""
    truncated = Op(OpKind.RESTORE, vm=1, bdf=KS, data=_ks_blob()[:40])
    body = [*vm_with((KS, "kitchen-sink")), truncated]
    impl = buggy(type("AcceptsAll", (DataManager,), {"restore": _accept}))
    assert blamed(impl, body, [None, None, None, "R-BLOB-002"]).requirements == ("R-BLOB-002",)
    assert blamed(impl, body).requirements == ("R-BLOB-001",)
    rejecting = buggy(type("RejectsAll", (DataManager,), {"restore": _reject}))
    valid = [*vm_with((KS, "kitchen-sink")), Op(OpKind.RESTORE, vm=1, bdf=KS, data=_ks_blob())]
    assert blamed(rejecting, valid, [None, None, None, "R-BLOB-003"]).requirements == ("R-SR-002",)


def _accept(self: DataManager, vm_id: int, bdf: Bdf, blob: bytes) -> None:
    """Restores nothing and complains about nothing."""


def _reject(self: DataManager, vm_id: int, bdf: Bdf, blob: bytes) -> None:
    raise BlobError("refused")


# --------------------------------------------------------------------------- readable output


def test_rule_line_is_the_requirements_first_sentence() -> None:
    assert rule_line("R-DEC-004") == "A BAR whose address is zero does not decode."
    assert rule_line("R-CFG-001").startswith("A configuration write changes each written byte as")
    assert rule_line("R-NOPE-001") == ""


def test_describe_shows_hex_the_rule_and_why() -> None:
    op = Op(OpKind.MMIO_READ, vm=1, address=0xE000_1004, width=4)
    divergence = Divergence(5, op, Observation(value=0xFFFF_FFFF), Observation(value=0x77))
    text = describe(divergence, Blame(("R-DEC-002",), 3, "00:03.0 BAR1 is programmed at 0xe0001000"))
    assert text.startswith(
        "step 5: mmio_read vm 1 address 0xe0001004 width 4: expected 0xffffffff, got 0x00000077."
    )
    assert "Breaks R-DEC-002 (Memory decode enable): A memory BAR decodes only while command bit 1" in text
    assert text.endswith("Why: 00:03.0 BAR1 is programmed at 0xe0001000.")


def test_probes_never_reach_opaque_bar_contents() -> None:
    """On a fixed machine whose BAR1 contents are opaque (device registers), a probe there is never sent."""
    from vpcid.adapters.base import OpaqueRange
    from vpcid.conformance.blame import _Inquiry

    machine = FixedMachine(
        1, ((KS, SUITE_TYPES["kitchen-sink"]),), opaque=(OpaqueRange(KS, 1, range(0, 4096)),)
    )
    guest = ModelAdapter("guest", Profile(), machine, operations=GUEST_VIEW)
    trace = [INIT, *BAR1_DECODING, cr(0x00)]
    divergence = Divergence(3, trace[3], Observation(value=0), Observation(value=1))
    inquiry = _Inquiry(guest, trace, divergence, None)
    opaque, elsewhere = mr(0xE000_1004), mr(0xE000_3004)
    assert inquiry.allowed(3, [opaque, elsewhere, cr(0x04)]) == [elsewhere, cr(0x04)]
    assert inquiry.probe_values(3, [opaque]) is None
    assert not inquiry.safe([*trace, opaque])


class Cf8LowBitsInOffset(DataManager):
    """QEMU's host bridge: 0xCF8's bits 1:0 are added to the register offset of 0xCFC accesses, and an
    access that then runs past the function's space reads zero (hw/pci/pci_host.c)."""

    def _cam_data(self, vm, port, payload, length):  # type: ignore[no-untyped-def]
        low = vm.cf8 & 3
        inst = vm.config_table.get(Bdf((vm.cf8 >> 16) & 0xFF, (vm.cf8 >> 11) & 0x1F, (vm.cf8 >> 8) & 7))
        if low and inst is not None and (vm.cf8 & 0xFC) + (port - 0xCFC) + low + length > len(inst.config):
            return bytes(length) if payload is None else b""
        return super()._cam_data(vm, port + low, payload, length)


@pytest.mark.req("R-CAM-004", "R-ECAM-002")
def test_an_ecam_write_is_not_blamed_when_what_follows_it_is_at_fault() -> None:
    """Replaying the ECAM write directly keeps the steps between it and the symptom (the 0xCF8
    write): the divergence is 0xCF8's low bits in the offset (R-CAM-004), not ECAM addressing. The
    trace QEMU's piix3-ide gave: a byte written at 0xfc through ECAM, 0xCF8 selecting 0xfc with its
    low bits set, a dword read of 0xCFC that runs past the end of the space."""
    top = DeviceType(name="top-register", vendor_id=0x1234, device_id=1, class_code=0xFF0000,
                     registers=(Register(0xFC, 4, RegisterClass.RW),))  # fmt: skip
    profile = Profile.from_mapping({"cf8_low_bits": "latched"})
    impl = ModelAdapter("buggy", profile, manager_factory=Cf8LowBitsInOffset)
    ecam_fc = 0xB000_0000 + (KS.packed << 12) + 0xFC
    body = [define_type_op(type_json(top)), *vm_with((KS, top.name)), mw(ecam_fc, 1, 0xEF),
            io(0xCF8, 4, 0x8000_0000 | KS.packed << 8 | 0xFC | 3), io(0xCFC, 4)]  # fmt: skip
    found = blamed(impl, body)
    assert found.requirements[0] == "R-CAM-004"
    assert "R-ECAM-002" not in found.requirements


class ComposesUnalignedReadsWrong(ModelAdapter):
    """A function that answers a 2-byte configuration read at an odd offset with its bytes mixed up,
    read directly or through 0xCFC-0xCFF alike (libvfio-user's gpio sample does so)."""

    def execute(self, op: Op) -> Observation:
        seen = super().execute(op)
        odd_config = op.kind is OpKind.CONFIG_READ and op.width == 2 and op.address % 2
        odd_window = op.kind is OpKind.IO_READ and op.width == 2 and op.address in (0xCFD,)
        if (odd_config or odd_window) and seen.value is not None:
            return Observation(value=seen.value ^ 0x0500)
        return seen


@pytest.mark.req("R-ACC-007")
def test_a_window_read_the_function_gets_wrong_directly_too_is_not_blamed_on_the_window() -> None:
    bdf = Bdf(0, 3, 0)
    body = [
        Op(OpKind.CREATE_VM, vm=1),
        Op(OpKind.PLUG, vm=1, bdf=bdf, name="kitchen-sink"),
        Op(OpKind.IO_WRITE, vm=1, address=0xCF8, width=4, value=0x8000_1800),
        Op(OpKind.IO_READ, vm=1, address=0xCFD, width=2),
    ]
    found = blamed(ComposesUnalignedReadsWrong(), body)
    assert found.requirements == ("R-ACC-007",), found
    assert "read directly too" in found.reason


class CommandDwordReadsWrong(ModelAdapter):
    """A function whose command register reads 0x0500 in a dword read but zero byte by byte, serving
    the data window by reading the dword (what libvfio-user's gpio sample shows through our adapter)."""

    def execute(self, op: Op) -> Observation:
        seen = super().execute(op)
        if seen.value is None:
            return seen
        if op.kind is OpKind.CONFIG_READ and op.address == 4 and op.width == 4:
            return Observation(value=seen.value | 0x0500)
        if op.kind is OpKind.IO_READ and op.address == 0xCFD and op.width == 2:
            return Observation(value=seen.value | 0x0005)
        return seen


@pytest.mark.req("R-CFG-004")
def test_a_window_read_served_from_a_dword_the_function_reads_wrong_is_blamed_on_that_register() -> None:
    bdf = Bdf(0, 3, 0)
    body = [
        Op(OpKind.CREATE_VM, vm=1),
        Op(OpKind.PLUG, vm=1, bdf=bdf, name="kitchen-sink"),
        Op(OpKind.IO_WRITE, vm=1, address=0xCF8, width=4, value=0x8000_1804),
        Op(OpKind.IO_READ, vm=1, address=0xCFD, width=2),
    ]
    found = blamed(CommandDwordReadsWrong(), body)
    assert found.requirements == ("R-CFG-004",), found


class RefusesWindowWrites(ModelAdapter):
    """Refuses every write through 0xCFC-0xCFF (libvfio-user refuses byte writes to some registers)."""

    def execute(self, op: Op) -> Observation:
        if op.kind is OpKind.IO_WRITE and 0xCFC <= op.address < 0xD00:
            return Observation(error="rejected")
        return super().execute(op)


@pytest.mark.req("R-CFG-001")
def test_a_refused_write_through_the_data_window_is_blamed_on_the_masked_write() -> None:
    bdf = Bdf(0, 3, 0)
    setup = [
        Op(OpKind.CREATE_VM, vm=1),
        Op(OpKind.PLUG, vm=1, bdf=bdf, name="kitchen-sink"),
        Op(OpKind.IO_WRITE, vm=1, address=0xCF8, width=4, value=0x8000_1804),
    ]
    status = blamed(
        RefusesWindowWrites(), [*setup, Op(OpKind.IO_WRITE, vm=1, address=0xCFE, width=1, value=0xFF)]
    )
    assert status.requirements == ("R-CFG-001",), status
    identity = [*setup[:2], Op(OpKind.IO_WRITE, vm=1, address=0xCF8, width=4, value=0x8000_1800)]
    vendor = blamed(
        RefusesWindowWrites(), [*identity, Op(OpKind.IO_WRITE, vm=1, address=0xCFC, width=2, value=0)]
    )
    assert vendor.requirements == ("R-CFG-002",), vendor
