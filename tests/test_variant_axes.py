"""The variant axes added for differences observed in real VMMs (spec/variants.md), and the reset
control register at 0xCF9 (R-CAM-008): the model's behaviour under each value, the scenario cases that
tell each value from the default, and the compiled backend agreeing with the model on them."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from conftest import NIC, VM, enable, program_bar
from vpcid.adapters import cython as backend
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.cases import Case, Target, default_targets, device_cases, system_cases
from vpcid.conformance.trace import Observation, Op, OpKind
from vpcid.conformance.variant_cases import variant_system_cases
from vpcid.model import Bdf, BlobMismatch, DataManager, Profile
from vpcid.model.blob import decode_instance, encode_instance
from vpcid.model.catalog import E1000
from vpcid.model.configspace import is_sizing_probe, profile_layout
from vpcid.model.devicetype import layout

NEW_VALUES = [
    ("cf8_narrow", "reset-control"),
    ("cf8_narrow", "read-address"),
    ("cf8_narrow", "address-bytes"),
    ("cf8_low_bits", "offset"),
    ("bar_at_top", "unmapped"),
    ("address_zero", "decodes"),
    ("overlap", "first-mapped"),
    ("bar_sizing", "probe-only"),
    ("unmapped_io_read", "zeros"),
    ("config_past_space", "zeros"),
    ("odd_word_write", "dropped"),
]
"""Every axis value added for the differences of spec/variants.md."""
VARIANT_CASE_PREFIXES = (
    "narrow-address-accesses", "cf8-byte-select", "top-of-space", "overlap-first-mapped", "sizing-writes",
    "reset-control-register", "top-of-32-bit-space", "address-zero", "nothing-there",
    "odd-word-writes",
)  # fmt: skip
"""Names (or name prefixes) of the cases of vpcid.conformance.variant_cases."""
OTHER = Bdf(0, 9, 0)
RESET_CONTROL = 0xCF9


def manager(**values: str) -> DataManager:
    dm = DataManager(Profile.from_mapping(values))
    dm.create_vm(VM)
    dm.plug(VM, NIC, E1000)
    return dm


def variant_runs() -> list[tuple[Target | None, Case]]:
    runs: list[tuple[Target | None, Case]] = [
        (t, c) for t in default_targets() for c in device_cases(t) if c.name.startswith(VARIANT_CASE_PREFIXES)
    ]
    return runs + [(None, c) for c in system_cases() if c.name.startswith(VARIANT_CASE_PREFIXES)]


def full_ops(target: Target | None, case: Case) -> list[Op]:
    if target is None:
        return [Op(OpKind.INIT), *case.ops]
    return [
        Op(OpKind.INIT),
        Op(OpKind.CREATE_VM, vm=target.vm, ecam_base=target.ecam_base),
        Op(OpKind.PLUG, vm=target.vm, bdf=target.bdf, name=target.dtype.name),
        *case.ops,
    ]


def observe(adapter: object, ops: Sequence[Op]) -> list[Observation]:
    return [adapter.execute(op) for op in ops]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- R-CAM-008: the reset control register


@pytest.mark.req("R-CAM-008")
def test_reset_control_keeps_bits_1_and_3_and_bit_2_resets_the_platform() -> None:
    dm = manager(cf8_narrow="reset-control")
    assert dm.io_read(VM, RESET_CONTROL, 1) == 0
    dm.io_write(VM, RESET_CONTROL, 1, 0xFB)
    assert dm.io_read(VM, RESET_CONTROL, 1) == 0x0A
    program_bar(dm, VM, NIC, 0, 0xFEBC_0000)
    enable(dm, VM, NIC, 0x2)
    dm.config_write(VM, NIC, 0x3C, 1, 0x0B)
    dm.io_write(VM, 0xCF8, 4, 0x8000_103C)
    dm.io_write(VM, RESET_CONTROL, 1, 0x06)
    assert dm.io_read(VM, RESET_CONTROL, 1) == 0
    assert dm.cf8(VM) == 0
    assert dm.config_read(VM, NIC, 0x3C, 1) == 0
    assert dm.config_read(VM, NIC, 0x10, 4) == E1000.declared.image[0x10]
    assert dm.tables(VM).memory == ()


@pytest.mark.req("R-CAM-008", "R-RST-003")
def test_reset_control_is_cleared_by_any_platform_reset_and_not_carried_by_snapshots() -> None:
    dm = manager(cf8_narrow="reset-control")
    dm.io_write(VM, RESET_CONTROL, 1, 0x02)
    snapshot = dm.snapshot(VM)
    dm.reset_vm(VM)
    assert dm.io_read(VM, RESET_CONTROL, 1) == 0
    dm.io_write(VM, RESET_CONTROL, 1, 0x08)
    dm.restore_vm(VM, snapshot)
    assert dm.io_read(VM, RESET_CONTROL, 1) == 0


@pytest.mark.req("R-CAM-008", "R-ACC-005")
def test_an_access_covering_0xcf9_reaches_it_byte_by_byte() -> None:
    assert manager().io_read(VM, 0xCF8, 2) == 0xFFFF  # default: no reset control register
    dm = manager(cf8_narrow="reset-control")
    dm.io_write(VM, RESET_CONTROL, 1, 0x02)
    assert dm.io_read(VM, 0xCF7, 4) == 0xFF02_FFFF
    assert dm.io_read(VM, 0xCF8, 2) == 0x02FF
    dm.io_write(VM, 0xCF7, 4, 0x0008_0800)  # 0xCF9 takes 0x08: bit 3 kept, no reset
    assert dm.io_read(VM, RESET_CONTROL, 1) == 0x08
    assert manager(straddle="reject", cf8_narrow="reset-control").io_read(VM, 0xCF8, 2) == 0xFFFF


# ---------------------------------------------------------------- R-CAM-001: narrow accesses


@pytest.mark.req("R-CAM-001")
def test_read_address_answers_low_bytes_wherever_a_read_falls_and_drops_writes() -> None:
    dm = manager(cf8_narrow="read-address")
    dm.io_write(VM, 0xCF8, 4, 0x8000_1234)
    assert dm.io_read(VM, 0xCF8, 1) == 0x34
    assert dm.io_read(VM, 0xCFA, 2) == 0x1234
    assert dm.io_read(VM, 0xCFB, 1) == 0x34
    assert dm.io_read(VM, RESET_CONTROL, 1) == 0  # still the reset control register
    dm.io_write(VM, 0xCFA, 2, 0)
    dm.io_write(VM, 0xCF8, 1, 0)
    assert dm.cf8(VM) == 0x8000_1234


@pytest.mark.req("R-CAM-001", "R-CAM-002")
def test_address_bytes_read_and_replace_bytes_and_keep_what_cf8_keeps() -> None:
    dm = manager(cf8_narrow="address-bytes")
    dm.io_write(VM, 0xCF8, 4, 0x8000_1000)
    assert dm.io_read(VM, RESET_CONTROL, 1) == 0x10
    dm.io_write(VM, RESET_CONTROL, 1, 0x06)  # no reset control register: byte 1 of CONFIG_ADDRESS
    assert dm.cf8(VM) == 0x8000_0600
    dm.io_write(VM, 0xCF8, 1, 0x3F)
    assert dm.cf8(VM) == 0x8000_063C  # masked: bits 1:0 are not kept
    dm.io_write(VM, 0xCFA, 2, 0x7F12)
    assert dm.cf8(VM) == 0x0012_063C
    latched = manager(cf8_narrow="address-bytes", cf8_low_bits="latched")
    latched.io_write(VM, 0xCF8, 1, 0x3F)
    assert latched.cf8(VM) == 0x3F


# ---------------------------------------------------------------- R-CAM-004: cf8_low_bits = offset


@pytest.mark.req("R-CAM-002", "R-CAM-004")
def test_offset_ors_bits_1_0_into_the_register_and_spans_dwords() -> None:
    dm = manager(cf8_low_bits="offset")
    flat = b"".join(dm.config_read(VM, NIC, o, 4).to_bytes(4, "little") for o in range(0, 0x100, 4))
    dm.io_write(VM, 0xCF8, 4, 0x8000_1001)
    assert dm.io_read(VM, 0xCFC, 4) == int.from_bytes(flat[1:5], "little")
    assert dm.io_read(VM, 0xCFE, 2) == int.from_bytes(flat[3:5], "little")  # (1 | 2) = 3
    dm.io_write(VM, 0xCF8, 4, 0x8000_10FF)
    assert dm.io_read(VM, 0xCFC, 4) == flat[0xFF]  # 0x100-0x102 are past the block of 0xFF: zero


@pytest.mark.req("R-CAM-004", "R-DEC-005")
def test_offset_write_across_a_dword_moves_the_bar_it_reaches() -> None:
    dm = manager(cf8_low_bits="offset")
    enable(dm, VM, NIC, 0x2)
    dm.io_write(VM, 0xCF8, 4, 0x8000_100F)  # register 0x0C | 3: bytes 0x0F-0x12
    dm.io_write(VM, 0xCFC, 4, 0xBC00_0000)
    assert dm.config_read(VM, NIC, 0x10, 4) == 0x00BC_0000
    assert dm.resolve(VM, "memory", 0x00BC_0000) == (NIC, 0)


# ---------------------------------------------------------------- R-DEC-006, R-DEC-004, R-DEC-008


@pytest.mark.req("R-DEC-006")
@pytest.mark.parametrize("value", ["decodes", "unmapped"])
def test_top_of_space(value: str) -> None:
    from vpcid.conformance.devices import KITCHEN_SINK

    dm = DataManager(Profile.from_mapping({"bar_at_top": value}))
    dm.create_vm(VM)
    dm.plug(VM, NIC, KITCHEN_SINK)
    top64 = (1 << 64) - (1 << 20)
    dm.config_write(VM, NIC, 0x18, 4, top64 & 0xFFFF_FFFF)
    dm.config_write(VM, NIC, 0x1C, 4, top64 >> 32)
    dm.config_write(VM, NIC, 0x14, 4, 0xFFFF_F000)
    dm.config_write(VM, NIC, 0x24, 4, 0xFFFC)  # I/O BAR5 (4 bytes) ending at 64 KiB
    enable(dm, VM, NIC, 0x3)
    decodes = value == "decodes"
    assert dm.resolve(VM, "memory", (1 << 64) - 1) == ((NIC, 2) if decodes else None)
    assert dm.resolve(VM, "memory", 0xFFFF_F000) == ((NIC, 1) if decodes else None)
    assert dm.resolve(VM, "io", 0xFFFF) == (NIC, 5)
    dm.config_write(VM, NIC, 0x14, 4, 0xE000_0000)
    dm.config_write(VM, NIC, 0x30, 4, 0xFFFF_F801)
    assert dm.resolve(VM, "memory", 0xFFFF_FFFF) == ((NIC, 6) if decodes else None)
    dm.config_write(VM, NIC, 0x30, 4, 0xFFFF_F001)
    assert dm.resolve(VM, "memory", 0xFFFF_F000) == (NIC, 6)


@pytest.mark.req("R-DEC-004")
def test_address_zero_decodes_like_any_address() -> None:
    dm = manager(address_zero="decodes")
    enable(dm, VM, NIC, 0x3)
    assert dm.resolve(VM, "memory", 0x1_FFFF) == (NIC, 0)
    dm.mmio_write(VM, 4, 4, 0x1234_5678)
    assert dm.mmio_read(VM, 4, 4) == 0x1234_5678
    assert manager().resolve(VM, "memory", 0) is None


@pytest.mark.req("R-DEC-008")
def test_first_mapped_keeps_the_earlier_decode_until_it_leaves() -> None:
    dm = manager(overlap="first-mapped")
    dm.plug(VM, OTHER, E1000)
    for bdf in (OTHER, NIC):
        program_bar(dm, VM, bdf, 0, 0xFEBC_0000)
        enable(dm, VM, bdf, 0x2)
    assert dm.resolve(VM, "memory", 0xFEBC_0000) == (OTHER, 0)
    program_bar(dm, VM, OTHER, 0, 0xFEA0_0000)
    assert dm.resolve(VM, "memory", 0xFEBC_0000) == (NIC, 0)
    program_bar(dm, VM, OTHER, 0, 0xFEBC_0000)  # moved back: its decode begins again, later
    assert dm.resolve(VM, "memory", 0xFEBC_0000) == (NIC, 0)


# ---------------------------------------------------------------- R-BAR-003: bar_sizing = probe-only


@pytest.mark.req("R-BAR-003")
def test_probe_only_keeps_low_address_bits_except_from_a_probe() -> None:
    dm = manager(bar_sizing="probe-only")
    dm.config_write(VM, NIC, 0x10, 2, 0xFFF0)
    dm.config_write(VM, NIC, 0x12, 2, 0xFFFF)
    assert dm.config_read(VM, NIC, 0x10, 4) == 0xFFFF_FFF0  # word writes are never a probe
    dm.config_write(VM, NIC, 0x10, 4, 0xFFFF_FFF0)
    assert dm.config_read(VM, NIC, 0x10, 4) == 0xFFFE_0000
    dm.config_write(VM, NIC, 0x10, 4, 0xFEBC_1000)
    enable(dm, VM, NIC, 0x2)
    assert dm.resolve(VM, "memory", 0xFEBC_1000) is None  # misaligned: decodes nowhere
    dm.config_write(VM, NIC, 0x10, 4, 0xFEBC_0000)
    assert dm.resolve(VM, "memory", 0xFEBC_1000) == (NIC, 0)
    assert is_sizing_probe(E1000, 0x10, b"\xf0\xff\xff\xff")
    assert not is_sizing_probe(E1000, 0x10, b"\xe0\xff\xff\xff")
    assert not is_sizing_probe(E1000, 0x0C, b"\xff\xff\xff\xff")


@pytest.mark.req("R-BAR-003", "R-SR-004")
def test_probe_only_layout_makes_address_bits_restorable() -> None:
    profile = Profile.from_mapping({"bar_sizing": "probe-only"})
    wide = profile_layout(E1000, profile)
    assert wide.wmask[0x10:0x14] == b"\xf0\xff\xff\xff"
    assert profile_layout(E1000, Profile()) == layout(E1000, Profile().status)
    source = manager(bar_sizing="probe-only")
    source.config_write(VM, NIC, 0x10, 4, 0xFEBC_0AB0)
    blob = source.save(VM, NIC)
    manager(bar_sizing="probe-only").restore(VM, NIC, blob)
    record = decode_instance(blob)
    with pytest.raises(BlobMismatch):  # the low address bits are read-only under the default
        manager().restore(VM, NIC, encode_instance(record))


# ---------------------------------------------------------------- cases and the compiled backend


@pytest.mark.req("R-VAR-001", "R-VAR-002")
@pytest.mark.parametrize(("axis", "value"), NEW_VALUES, ids=[f"{a}={v}" for a, v in NEW_VALUES])
def test_a_variant_case_tells_the_value_from_the_default(axis: str, value: str) -> None:
    """A scenario case of variant_cases observes differently under the value than by default, so an
    implementation or mutant on the wrong value fails it."""
    profile = Profile.from_mapping({axis: value})
    told = [
        case.name
        for target, case in variant_runs()
        if observe(ModelAdapter(), full_ops(target, case))
        != observe(ModelAdapter(profile=profile), full_ops(target, case))
    ]
    assert told, f"no variant case tells {axis}={value} from the default"


def test_variant_system_cases_are_registered() -> None:
    names = {c.name for c in system_cases()}
    assert {"reset-control-register", "top-of-32-bit-space", "address-zero"} <= names
    assert callable(variant_system_cases)


@pytest.mark.skipif(not backend.available(), reason=backend.UNAVAILABLE_REASON or "")
@pytest.mark.req("R-VAR-001", "R-CAM-008")
@pytest.mark.parametrize(
    ("axis", "value"), [("", ""), *NEW_VALUES], ids=["default", *(f"{a}={v}" for a, v in NEW_VALUES)]
)
def test_cython_backend_observes_what_the_model_does(axis: str, value: str) -> None:
    profile = Profile.from_mapping({axis: value} if axis else {})
    for target, case in variant_runs():
        ops = full_ops(target, case)
        compiled = observe(backend.CythonAdapter(profile), ops)
        assert compiled == observe(ModelAdapter(profile=profile), ops), case.name


@pytest.mark.req("R-CAM-004")
def test_offset_performs_the_window_in_aligned_pieces() -> None:
    """``inw 0xCFD`` is two byte pieces, each ORing its own distance into 0xCF8's bits 1:0 (as QEMU's memory
    core splits it); ``inw 0xCFE`` is one piece."""
    dm = manager(cf8_low_bits="offset")
    dm.io_write(VM, 0xCF8, 4, 0x8000_1001)  # register 0x00, bits 1:0 = 1
    byte1 = dm.config_read(VM, NIC, 0x01, 1)
    byte3 = dm.config_read(VM, NIC, 0x03, 1)
    assert dm.io_read(VM, 0xCFD, 2) == byte1 | byte3 << 8  # pieces at distances 1 (0|1) and 2 (1|2 = 3)
    assert (
        dm.io_read(VM, 0xCFE, 2) == dm.config_read(VM, NIC, 0x03, 1) | dm.config_read(VM, NIC, 0x04, 1) << 8
    )


@pytest.mark.req("R-CAM-001", "R-CAM-008")
def test_read_address_decodes_an_access_from_0xcf8_by_its_first_byte() -> None:
    dm = manager(cf8_narrow="read-address")
    dm.io_write(VM, 0xCF8, 4, 0x8000_1234)
    dm.io_write(VM, RESET_CONTROL, 1, 0x02)
    assert dm.io_read(VM, 0xCF8, 2) == 0x1234  # 0xCF9 inside an access from 0xCF8: CONFIG_ADDRESS
    dm.io_write(VM, 0xCF8, 2, 0xFFFF)  # dropped, the reset control register untouched
    assert (dm.io_read(VM, RESET_CONTROL, 1), dm.cf8(VM)) == (0x02, 0x8000_1234)


@pytest.mark.req("R-CAM-004")
def test_offset_reads_zero_past_0xff_on_express_functions_too() -> None:
    from vpcid.model.catalog import NVME

    dm = DataManager(Profile.from_mapping({"cf8_low_bits": "offset"}))
    dm.create_vm(VM)
    dm.plug(VM, NIC, NVME)
    dm.config_write(VM, NIC, 0x100, 4, 0xFFFF_FFFF)
    dm.io_write(VM, 0xCF8, 4, 0x8000_10FF)
    assert dm.io_read(VM, 0xCFC, 4) == dm.config_read(VM, NIC, 0xFF, 1)


@pytest.mark.req("R-ACC-004")
def test_unmapped_io_zeros_reads_zero_from_ports_and_platform_gaps() -> None:
    dm = manager(unmapped_io_read="zeros")
    assert dm.io_read(VM, 0xC000, 4) == 0
    assert dm.io_read(VM, 0xCF8, 1) == 0  # ordinary I/O nothing decodes (R-CAM-001)
    dm.io_write(VM, 0xCF8, 4, 0x0000_1000)  # enable bit clear: the window still reads ones (R-CAM-005)
    assert dm.io_read(VM, 0xCFC, 4) == 0xFFFF_FFFF
    assert manager().io_read(VM, 0xC000, 4) == 0xFFFF_FFFF


@pytest.mark.req("R-CFG-009", "R-ACC-006")
def test_config_past_space_zeros_reads_zero_but_absent_functions_read_ones() -> None:
    dm = manager(config_past_space="zeros")
    assert dm.config_read(VM, NIC, 0x100, 4) == 0
    dm.config_write(VM, NIC, 0x100, 4, 0x1234_5678)
    assert dm.config_read(VM, NIC, 0x100, 4) == 0
    assert dm.config_read(VM, OTHER, 0x100, 4) == 0xFFFF_FFFF


@pytest.mark.req("R-ACC-003")
def test_odd_word_writes_are_dropped_everywhere_under_dropped() -> None:
    dm = manager(odd_word_write="dropped")
    dm.config_write(VM, NIC, 0x05, 2, 0x0004)
    dm.io_write(VM, 0xCF8, 4, 0x8000_1004)
    dm.io_write(VM, 0xCFD, 2, 0x0004)
    dm.mmio_write(VM, 0xB000_0000 + (NIC.device << 15) + 0x05, 2, 0x0004)
    assert dm.config_read(VM, NIC, 0x04, 2) == 0
    dm.config_write(VM, NIC, 0x05, 1, 0x04)  # a byte at an odd offset is performed
    dm.config_write(VM, NIC, 0x0C, 2, 0x0010)  # a word at an even offset too
    assert (dm.config_read(VM, NIC, 0x04, 2), dm.config_read(VM, NIC, 0x0C, 1)) == (0x0400, 0x10)
