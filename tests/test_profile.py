"""Variant axes, profiles and profile manifests (R-VAR-001..R-VAR-003)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import NIC, VM, enable, program_bar
from vpcid.model import (
    AXES,
    DEFAULT_PROFILE,
    Bdf,
    BlobMismatch,
    DataManager,
    Misaligned,
    Profile,
    ProfileError,
    VpcidError,
)
from vpcid.model.blob import decode_instance, encode_instance
from vpcid.model.catalog import E1000, PCI_BRIDGE
from vpcid.model.profile import Overlap

SPEC = Path(__file__).resolve().parent.parent / "spec"
BAR0 = 0xFEBC_0000
OTHER = Bdf(0, 9, 0)
MIDDLE = Bdf(0, 5, 0)


def variants_table() -> dict[str, tuple[str, str, list[str], str]]:
    """Rows of the table in spec/variants.md: manifest key -> (id, default, alternatives, rule)."""
    rows: dict[str, tuple[str, str, list[str], str]] = {}
    for line in (SPEC / "variants.md").read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 5, line
        key, vid, default, alternatives, rule = cells
        rows[key.strip("`")] = (
            vid,
            default.strip("`"),
            re.findall(r"`([^`]+)`", alternatives),
            rule,
        )
    return rows


def manifest_example() -> str:
    """The TOML example of spec/formats/profile.md."""
    text = (SPEC / "formats" / "profile.md").read_text()
    match = re.search(r"```toml\n(.*?)```", text, re.S)
    assert match is not None
    return match.group(1)


def all_values() -> list[tuple[str, str]]:
    return [(axis, value.value) for axis, enum in AXES.items() for value in enum]


# ---------------------------------------------------------------- R-VAR-001


@pytest.mark.req("R-VAR-001")
def test_every_axis_is_in_the_spec_table_with_the_same_values() -> None:
    table = variants_table()
    assert set(table) == set(AXES)
    for axis, enum in AXES.items():
        _, default, alternatives, _ = table[axis]
        assert [default, *alternatives] == [v.value for v in enum], axis
        assert len({default, *alternatives}) == 1 + len(alternatives)


@pytest.mark.req("R-VAR-001")
def test_spec_table_rows_are_well_formed() -> None:
    for axis, (vid, _, alternatives, rule) in variants_table().items():
        assert re.fullmatch(r"V-[A-Z0-9-]+", vid), axis
        assert alternatives, axis
        assert re.fullmatch(r"R-[A-Z]+-\d{3}", rule), axis


@pytest.mark.req("R-VAR-001")
def test_profile_has_one_field_per_axis() -> None:
    fields = {f.name: f.type for f in dataclasses.fields(Profile)}
    assert list(fields) == list(AXES)
    for axis, enum in AXES.items():
        assert isinstance(getattr(DEFAULT_PROFILE, axis), enum)
    assert list(Profile().to_mapping()) == list(AXES)


@pytest.mark.req("R-VAR-001")
@pytest.mark.parametrize(("axis", "value"), all_values())
def test_every_value_builds_a_profile_and_a_manager(axis: str, value: str) -> None:
    profile = Profile.from_mapping({axis: value})
    assert getattr(profile, axis) == AXES[axis](value)
    assert profile.to_mapping()[axis] == value
    dm = DataManager(profile)
    assert dm.profile is profile
    dm.create_vm(VM)
    dm.plug(VM, NIC, E1000)
    assert dm.config_read(VM, NIC, 0, 4) == 0x100E_8086


def _restore_status_bits(dm: DataManager) -> object:
    dm.plug(VM, NIC, E1000)
    record = decode_instance(dm.save(VM, NIC))
    config = bytearray(record.config)
    config[0x07] = 0xF9
    try:
        dm.restore(VM, NIC, encode_instance(dataclasses.replace(record, config=bytes(config))))
    except BlobMismatch:
        return "rejected"
    dm.config_write(VM, NIC, 0x06, 2, 0x0800)
    return dm.config_read(VM, NIC, 0x06, 2)


def _move_while_decoding(dm: DataManager) -> object:
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, BAR0)
    enable(dm, VM, NIC, 0x2)
    program_bar(dm, VM, NIC, 0, 0xFEA0_0000)
    return (
        dm.resolve(VM, "memory", BAR0),
        dm.resolve(VM, "memory", 0xFEA0_0000),
        dm.config_read(VM, NIC, 0x10, 4),
    )


def _overlap(dm: DataManager) -> object:
    for bdf in (NIC, MIDDLE, OTHER):
        dm.plug(VM, bdf, E1000)
        program_bar(dm, VM, bdf, 0, BAR0)
    for bdf in (MIDDLE, NIC, OTHER):  # first mapped, lowest, last mapped: three different functions
        enable(dm, VM, bdf, 0x2)
    return dm.resolve(VM, "memory", BAR0)


def _unmapped_read(dm: DataManager) -> object:
    return dm.mmio_read(VM, 0x1000, 4)


def _straddle(dm: DataManager) -> object:
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, BAR0)
    enable(dm, VM, NIC, 0x2)
    dm.mmio_write(VM, BAR0, 4, 0x1111_1111)
    dm.mmio_write(VM, BAR0 + 0x1_FFFC, 4, 0x2222_2222)
    return (dm.mmio_read(VM, BAR0 + 0x1_FFFC, 8), dm.mmio_read(VM, BAR0 - 4, 8))


def _alignment(dm: DataManager) -> object:
    try:
        return dm.mmio_read(VM, 0x1001, 2)
    except Misaligned as error:
        return error.kind


def _cf8_low(dm: DataManager) -> object:
    dm.plug(VM, NIC, E1000)
    dm.io_write(VM, 0xCF8, 4, 0x8000_1003)
    return dm.cf8(VM), dm.io_read(VM, 0xCFC, 4)


def _cf8_extended(dm: DataManager) -> object:
    dm.io_write(VM, 0xCF8, 4, 0x8F00_0000)
    return dm.cf8(VM)


def _cf8_narrow(dm: DataManager) -> object:
    dm.io_write(VM, 0xCF8, 4, 0x8000_1000)
    dm.io_write(VM, 0xCF9, 1, 0x02)
    dm.io_write(VM, 0xCFA, 2, 0x0000)
    return dm.io_read(VM, 0xCF8, 2), dm.io_read(VM, 0xCF9, 1), dm.cf8(VM)


def _bar_at_top(dm: DataManager) -> object:
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, (1 << 32) - 0x2_0000)
    enable(dm, VM, NIC, 0x2)
    return dm.resolve(VM, "memory", 0xFFFF_FFFF)


def _address_zero(dm: DataManager) -> object:
    dm.plug(VM, NIC, E1000)
    enable(dm, VM, NIC, 0x2)
    return dm.resolve(VM, "memory", 0)


def _bar_sizing(dm: DataManager) -> object:
    dm.plug(VM, NIC, E1000)
    dm.config_write(VM, NIC, 0x10, 4, 0xFEBC_0ABC)
    written = dm.config_read(VM, NIC, 0x10, 4)
    dm.config_write(VM, NIC, 0x10, 4, 0xFFFF_FFF0)
    return written, dm.config_read(VM, NIC, 0x10, 4)


def _unmapped_io_read(dm: DataManager) -> object:
    return dm.io_read(VM, 0x1000, 2)


def _config_past_space(dm: DataManager) -> object:
    dm.plug(VM, NIC, E1000)
    return dm.config_read(VM, NIC, 0x100, 4)


def _odd_word_write(dm: DataManager) -> object:
    dm.plug(VM, NIC, E1000)
    dm.config_write(VM, NIC, 0x05, 2, 0x0004)  # command bit 10 (INTx disable) and status bits 7:0
    return dm.config_read(VM, NIC, 0x04, 2)


def _cf8_after_access(dm: DataManager) -> object:
    dm.plug(VM, NIC, E1000)
    dm.io_write(VM, 0xCF8, 4, 0x8000_1000)
    value = dm.io_read(VM, 0xCFC, 4)
    return (value, dm.cf8(VM))


BELOW = Bdf(1, 0, 0)


def _bridged_nic(dm: DataManager) -> None:
    """A pci-bridge at 00:01.0 giving its secondary bus number 1, an e1000 at 01:00.0."""
    dm.plug(VM, Bdf(0, 1, 0), PCI_BRIDGE)
    dm.config_write(VM, Bdf(0, 1, 0), 0x18, 4, 0x0001_0100)
    dm.plug(VM, BELOW, E1000)


def _bridge_windows(dm: DataManager) -> object:
    _bridged_nic(dm)
    program_bar(dm, VM, BELOW, 0, BAR0)
    enable(dm, VM, BELOW, 0x2)
    return dm.resolve(VM, "memory", BAR0)  # the bridge forwards no memory: its command is zero


def _bridge_isa(dm: DataManager) -> object:
    _bridged_nic(dm)
    dm.config_write(VM, Bdf(0, 1, 0), 0x1C, 2, 0x1010)  # I/O window 0x1000-0x1fff
    dm.config_write(VM, Bdf(0, 1, 0), 0x3E, 2, 0x0004)  # ISA enable
    enable(dm, VM, Bdf(0, 1, 0), 0x1)
    program_bar(dm, VM, BELOW, 1, 0x1100)
    enable(dm, VM, BELOW, 0x1)
    return dm.resolve(VM, "io", 0x1100)  # port bits 9:8 are 01: ISA enable keeps it on the primary side


SCENARIOS: dict[str, Callable[[DataManager], object]] = {
    "status": _restore_status_bits,
    "bar_move_while_decoding": _move_while_decoding,
    "overlap": _overlap,
    "unmapped_mmio_read": _unmapped_read,
    "straddle": _straddle,
    "alignment": _alignment,
    "cf8_low_bits": _cf8_low,
    "cf8_extended": _cf8_extended,
    "cf8_after_access": _cf8_after_access,
    "bridge_windows": _bridge_windows,
    "bridge_isa": _bridge_isa,
    "cf8_narrow": _cf8_narrow,
    "bar_at_top": _bar_at_top,
    "address_zero": _address_zero,
    "bar_sizing": _bar_sizing,
    "unmapped_io_read": _unmapped_io_read,
    "config_past_space": _config_past_space,
    "odd_word_write": _odd_word_write,
}
"""For each axis, operations whose observations tell every value of the axis apart."""

EXPECTED: dict[str, dict[str, object]] = {
    "status": {"rw1c": 0xF110, "read-only": "rejected"},
    "bar_move_while_decoding": {
        "immediate": (None, (NIC, 0), 0xFEA0_0000),
        "deferred": ((NIC, 0), None, 0xFEA0_0000),
        "ignored": ((NIC, 0), None, BAR0),
    },
    "overlap": {"lowest-bdf": (NIC, 0), "last-mapped": (OTHER, 0), "first-mapped": (MIDDLE, 0)},
    "unmapped_mmio_read": {"ones": 0xFFFF_FFFF, "zeros": 0},
    "straddle": {
        "split": (0xFFFF_FFFF_2222_2222, 0x1111_1111_FFFF_FFFF),
        "reject": ((1 << 64) - 1, (1 << 64) - 1),
        "start-address": (0xFFFF_FFFF_2222_2222, (1 << 64) - 1),
    },
    "alignment": {"any": 0xFFFF, "natural": "misaligned"},
    "cf8_low_bits": {
        "masked": (0x8000_1000, 0x100E_8086),
        "latched": (0x8000_1003, 0x100E_8086),
        "offset": (0x8000_1003, 0x1000_0010),
    },
    "cf8_extended": {"ignored": 0x8000_0000, "extends": 0x8F00_0000},
    "cf8_after_access": {"keep": (0x100E_8086, 0x8000_1000), "clear": (0x100E_8086, 0)},
    "bridge_windows": {"enforced": None, "ignored": (BELOW, 0)},
    "bridge_isa": {"honoured": None, "ignored": (BELOW, 1)},
    "cf8_narrow": {
        "unmapped": (0xFFFF, 0xFF, 0x8000_1000),
        "reset-control": (0x02FF, 0x02, 0x8000_1000),
        "read-address": (0x1000, 0x02, 0x8000_1000),
        "address-bytes": (0x0200, 0x02, 0x0000_0200),
    },
    "bar_at_top": {"decodes": (NIC, 0), "unmapped": None},
    "address_zero": {"unmapped": None, "decodes": (NIC, 0)},
    "bar_sizing": {"mask": (0xFEBC_0000, 0xFFFE_0000), "probe-only": (0xFEBC_0AB0, 0xFFFE_0000)},
    "unmapped_io_read": {"ones": 0xFFFF, "zeros": 0},
    "config_past_space": {"ones": 0xFFFF_FFFF, "zeros": 0},
    "odd_word_write": {"performed": 0x0400, "dropped": 0},
}


@pytest.mark.req("R-VAR-001")
@pytest.mark.parametrize("axis", AXES)
def test_every_value_of_every_axis_is_implemented(axis: str) -> None:
    assert set(SCENARIOS) == set(AXES)
    observed: dict[str, object] = {}
    for value in AXES[axis]:
        dm = DataManager(Profile.from_mapping({axis: value.value}))
        dm.create_vm(VM)
        observed[value.value] = SCENARIOS[axis](dm)
    assert observed == EXPECTED[axis]
    distinct = {repr(v) for v in observed.values()}
    assert len(distinct) == len(AXES[axis])


def _combinations() -> dict[str, dict[str, str]]:
    values = {axis: [v.value for v in enum] for axis, enum in AXES.items()}
    return {
        "all-first": {a: v[0] for a, v in values.items()},
        "all-second": {a: v[1] for a, v in values.items()},
        "all-last": {a: v[-1] for a, v in values.items()},
        "alternating": {a: v[k % len(v)] for k, (a, v) in enumerate(values.items())},
        "alternating-shifted": {a: v[(k + 1) % len(v)] for k, (a, v) in enumerate(values.items())},
    }


@pytest.mark.req("R-VAR-001")
@pytest.mark.parametrize("chosen", _combinations().values(), ids=_combinations().keys())
def test_axes_combine_freely(chosen: dict[str, str]) -> None:
    """Profiles mixing values of every axis give working managers whose snapshots travel."""
    profile = Profile.from_mapping(chosen)
    assert profile.to_mapping() == chosen
    dm = DataManager(profile)
    dm.create_vm(VM)
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, BAR0)
    enable(dm, VM, NIC, 0x2)
    dm.mmio_write(VM, BAR0 + 8, 8, 0x1234)
    assert dm.mmio_read(VM, BAR0 + 8, 8) == 0x1234
    snap = dm.snapshot(VM)
    other = DataManager(profile)
    other.register_type(E1000)
    other.restore_vm(VM, snap)
    assert other.snapshot(VM) == snap
    assert other.mmio_read(VM, BAR0 + 8, 8) == 0x1234


# ---------------------------------------------------------------- R-VAR-002


@pytest.mark.req("R-VAR-002")
def test_defaults_are_the_spec_defaults() -> None:
    table = variants_table()
    for axis in AXES:
        assert getattr(Profile(), axis).value == table[axis][1]
    assert Profile().to_mapping() == {axis: row[1] for axis, row in table.items()}


@pytest.mark.req("R-VAR-002")
def test_default_profile_is_what_managers_use() -> None:
    assert Profile() == DEFAULT_PROFILE
    assert DataManager().profile == DEFAULT_PROFILE
    assert Profile.from_mapping({}) == DEFAULT_PROFILE
    assert Profile.from_manifest("") == DEFAULT_PROFILE
    assert DEFAULT_PROFILE.deviations() == {}


@pytest.mark.req("R-VAR-002")
@pytest.mark.parametrize(("axis", "value"), all_values())
def test_deviations_name_exactly_the_non_default_axes(axis: str, value: str) -> None:
    profile = Profile.from_mapping({axis: value})
    default = variants_table()[axis][1]
    assert profile.deviations() == ({} if value == default else {axis: value})


@pytest.mark.req("R-VAR-002")
def test_default_manager_behaves_as_default_profile() -> None:
    """A manager built without a profile observes exactly what one built with the defaults does."""
    for axis, scenario in SCENARIOS.items():
        implicit, explicit = DataManager(), DataManager(Profile.from_mapping({}))
        for dm in (implicit, explicit):
            dm.create_vm(VM)
        assert scenario(implicit) == scenario(explicit) == EXPECTED[axis][variants_table()[axis][1]]


# ---------------------------------------------------------------- R-VAR-003


@pytest.mark.req("R-VAR-003")
def test_manifest_example_of_the_spec() -> None:
    profile = Profile.from_manifest(manifest_example())
    assert profile.to_mapping() == {
        "status": "rw1c",
        "bar_move_while_decoding": "deferred",
        "overlap": "last-mapped",
        "unmapped_mmio_read": "ones",
        "straddle": "split",
        "alignment": "any",
        "cf8_low_bits": "latched",
        "cf8_extended": "ignored",
        "cf8_after_access": "keep",
        "bridge_windows": "enforced",
        "bridge_isa": "honoured",
        "cf8_narrow": "unmapped",
        "bar_at_top": "decodes",
        "address_zero": "unmapped",
        "bar_sizing": "mask",
        "unmapped_io_read": "ones",
        "config_past_space": "ones",
        "odd_word_write": "performed",
    }


@pytest.mark.req("R-VAR-003")
def test_manifest_json_form() -> None:
    profile = Profile.from_manifest('{"profile": {"overlap": "last-mapped"}}')
    assert profile == dataclasses.replace(DEFAULT_PROFILE, overlap=Overlap.LAST_MAPPED)
    assert profile.deviations() == {"overlap": "last-mapped"}
    assert Profile.from_manifest('  \n {"profile": {"straddle": "reject"}}').deviations() == {
        "straddle": "reject"
    }


@pytest.mark.req("R-VAR-003")
@pytest.mark.parametrize(
    "text",
    [
        "",
        "# nothing\n",
        "[profile]\n",
        '[implementation]\nname = "x"\nversion = "1"\n',
        "{}",
        '{"profile": {}}',
        '{"implementation": {"name": "x"}}',
    ],
    ids=[
        "empty",
        "comment",
        "empty-profile",
        "implementation-only",
        "json-empty",
        "json-empty-profile",
        "json-impl",
    ],
)
def test_manifest_omitting_axes_takes_defaults(text: str) -> None:
    assert Profile.from_manifest(text) == DEFAULT_PROFILE


@pytest.mark.req("R-VAR-003")
@pytest.mark.parametrize(("axis", "value"), all_values())
def test_manifest_single_axis_toml_and_json(axis: str, value: str) -> None:
    toml = f'[implementation]\nname = "vmm"\n\n[profile]\n{axis} = "{value}"\n'
    as_json = json.dumps({"implementation": {"name": "vmm"}, "profile": {axis: value}})
    for text in (toml, as_json):
        profile = Profile.from_manifest(text)
        assert getattr(profile, axis).value == value
        others = {k: v for k, v in profile.to_mapping().items() if k != axis}
        assert others == {k: v for k, v in DEFAULT_PROFILE.to_mapping().items() if k != axis}


@pytest.mark.req("R-VAR-003")
def test_manifest_round_trips_every_profile_of_every_alternative() -> None:
    for index in range(3):
        chosen = {axis: list(enum)[min(index, len(enum) - 1)].value for axis, enum in AXES.items()}
        profile = Profile.from_mapping(chosen)
        toml = "[profile]\n" + "".join(f'{k} = "{v}"\n' for k, v in profile.to_mapping().items())
        assert Profile.from_manifest(toml) == profile
        assert Profile.from_manifest(json.dumps({"profile": profile.to_mapping()})) == profile
        assert Profile.from_mapping(profile.to_mapping()) == profile


BAD_MAPPINGS: list[Any] = [
    {"colour": "red"},
    {"overlaps": "last-mapped"},
    {"Overlap": "last-mapped"},
    {"V-OVERLAP": "last-mapped"},
    {"overlap": "last-mapped", "extra": "x"},
    {"overlap": "random"},
    {"overlap": "Last-Mapped"},
    {"overlap": "last_mapped"},
    {"overlap": " last-mapped"},
    {"status": "rw1c ", "overlap": "lowest-bdf"},
    {"status": ""},
    {"status": 1},
    {"status": True},
    {"status": None},
    {"status": ["rw1c"]},
    {"alignment": "natural", "straddle": "merge"},
    {"cf8_low_bits": "extends"},  # a value of another axis
    ["status"],
    "status = rw1c",
    None,
    42,
]


@pytest.mark.req("R-VAR-003")
@pytest.mark.parametrize("mapping", BAD_MAPPINGS, ids=lambda m: repr(m)[:48])
def test_mapping_with_unknown_axis_or_value_rejected(mapping: Any) -> None:
    with pytest.raises(ProfileError) as info:
        Profile.from_mapping(mapping)
    assert info.value.kind == "bad-profile"
    assert isinstance(info.value, VpcidError)


BAD_MANIFESTS: dict[str, str] = {
    "unknown-axis": '[profile]\ncolour = "red"\n',
    "unknown-value": '[profile]\noverlap = "random"\n',
    "value-case": '[profile]\nstatus = "RW1C"\n',
    "value-int": "[profile]\nstatus = 1\n",
    "value-bool": "[profile]\nstatus = true\n",
    "value-table": "[profile.status]\nx = 1\n",
    "profile-not-table": 'profile = "default"\n',
    "unknown-section": '[profiles]\nstatus = "rw1c"\n',
    "unknown-section-beside": '[profile]\nstatus = "rw1c"\n[extras]\nx = 1\n',
    "axis-at-top-level": 'status = "rw1c"\n',
    "bad-toml": "[profile\nstatus = rw1c\n",
    "bad-toml-value": "[profile]\nstatus = rw1c\n",
    "json-unknown-axis": '{"profile": {"colour": "red"}}',
    "json-unknown-value": '{"profile": {"alignment": "sometimes"}}',
    "json-unknown-section": '{"profile": {}, "extra": {}}',
    "json-axis-at-top": '{"overlap": "last-mapped"}',
    "json-profile-list": '{"profile": ["overlap"]}',
    "json-profile-string": '{"profile": "default"}',
    "json-value-null": '{"profile": {"overlap": null}}',
    "bad-json": '{"profile": {',
    "json-trailing": '{"profile": {}} x',
}


@pytest.mark.req("R-VAR-003")
@pytest.mark.parametrize("text", BAD_MANIFESTS.values(), ids=BAD_MANIFESTS.keys())
def test_manifest_with_unknown_axis_value_or_section_rejected(text: str) -> None:
    with pytest.raises(ProfileError) as info:
        Profile.from_manifest(text)
    assert info.value.kind == "bad-profile"


@pytest.mark.req("R-VAR-003")
def test_spec_example_with_one_unknown_key_rejected() -> None:
    example = manifest_example()
    Profile.from_manifest(example)
    with pytest.raises(ProfileError):
        Profile.from_manifest(example + 'bar_move_while_decoding_v2 = "deferred"\n')
    with pytest.raises(ProfileError):
        Profile.from_manifest(example.replace('"latched"', '"latch"'))
    with pytest.raises(ProfileError):
        Profile.from_manifest(example + "\n[vmm]\nname = 'x'\n")
