"""Machine descriptions: valid files build the expected VM; every kind of mistake is a MachineError."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

import pytest
from vpcid.conformance.machine import Machine, MachineError, demo_machine_file, load_machine, parse_machine
from vpcid.model import Bdf, TableEntry, VpcidError
from vpcid.model.profile import Overlap, Straddle

NIC, NVME_SLOT, EDU_SLOT, GPU = Bdf(0, 2, 0), Bdf(0, 3, 0), Bdf(0, 4, 0), Bdf(0, 5, 0)
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
ROM = 6

DEMO_MEMORY = {
    (NIC, 0): (0xFEBC0000, 128 * KIB),
    (NIC, ROM): (0xFEB80000, 64 * KIB),
    (NVME_SLOT, 0): (0xFEBF0000, 16 * KIB),
    (EDU_SLOT, 0): (0xFEA00000, 1 * MIB),
    (GPU, 0): (0xFD000000, 16 * MIB),
    (GPU, 1): (0x40_0000_0000, 64 * GIB),
    (GPU, 3): (0x30_0000_0000, 32 * MIB),
}

ONE_NIC = """
[vm]
id = 7

[[device]]
bdf = "00:02.0"
type = "e1000"
"""


def windows(entries: tuple[TableEntry, ...]) -> dict[tuple[Bdf, int], tuple[int, int]]:
    return {(e.bdf, e.bar): (e.base, e.size) for e in entries}


def machine_with_device(**fields: str) -> str:
    """A one-device machine description whose [[device]] has ``fields`` (TOML values) added."""
    extra = "".join(f"{key} = {value}\n" for key, value in fields.items())
    return ONE_NIC + extra


def expect_error(text: str, *fragments: str) -> MachineError:
    with pytest.raises(MachineError) as caught:
        parse_machine(text, origin="test.toml")
    error = caught.value
    assert error.kind == "bad-machine"
    assert isinstance(error, VpcidError)
    message = str(error)
    assert message.startswith("test.toml: ")
    for fragment in fragments:
        assert fragment in message, message
    return error


# ------------------------------------------------------------------ valid files
@pytest.mark.req("R-DS-007")
def test_demo_machine_builds_the_documented_tables() -> None:
    machine = load_machine(demo_machine_file())
    tables = machine.manager.tables(machine.vm_id)
    assert machine.vm_id == 1
    assert tables.config == ((NIC, "e1000"), (NVME_SLOT, "nvme"), (EDU_SLOT, "edu"), (GPU, "a100"))
    assert windows(tables.memory) == DEMO_MEMORY
    assert windows(tables.io) == {(NIC, 1): (0xC000, 64)}


def test_demo_machine_windows_do_not_overlap() -> None:
    machine = load_machine(demo_machine_file())
    tables = machine.manager.tables(machine.vm_id)
    for entries in (tables.memory, tables.io):
        spans = sorted((e.base, e.base + e.size) for e in entries)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start
    ecam = range(0xB000_0000, 0xC000_0000)
    assert all(e.base + e.size <= ecam.start or e.base >= ecam.stop for e in tables.memory)


def test_demo_machine_ships_inside_the_package() -> None:
    resource = demo_machine_file()
    assert resource.is_file()
    assert "vm" in tomllib.loads(resource.read_text(encoding="utf-8"))


def test_firmware_programming_is_visible_in_configuration_space() -> None:
    machine = load_machine(demo_machine_file())
    dm, vm = machine.manager, machine.vm_id
    assert dm.config_read(vm, GPU, 0x14, 4) == 0x0000_000C  # BAR1 low dword: 64-bit prefetchable type bits
    assert dm.config_read(vm, GPU, 0x18, 4) == 0x40  # BAR1 upper dword: both dwords are written
    assert dm.config_read(vm, NIC, 0x30, 4) == 0xFEB80001  # ROM address with the enable bit
    assert dm.config_read(vm, NIC, 0x04, 2) == 0x7
    assert dm.config_read(vm, EDU_SLOT, 0x04, 2) == 0x2
    assert dm.mmio_read(vm, 0xB000_0000 + (2 << 15), 4) == 0x100E_8086  # ECAM at the default base


def test_text_path_and_resource_sources_build_the_same_vm(tmp_path: Path) -> None:
    text = demo_machine_file().read_text(encoding="utf-8")
    path = tmp_path / "machine.toml"
    path.write_text(text, encoding="utf-8")
    machines = [load_machine(text), load_machine(path), load_machine(demo_machine_file())]
    assert len({m.manager.snapshot(m.vm_id) for m in machines}) == 1


def test_profile_axes_and_ecam_base_are_applied() -> None:
    machine = parse_machine(
        '[vm]\nid = 3\necam_base = 0xe0000000\n[vm.profile]\noverlap = "last-mapped"\nstraddle = "reject"\n'
        '[[device]]\nbdf = "01:1f.7"\ntype = "edu"\nbars = { 0 = 0xc0000000 }\ncommand = 0x2\n'
    )
    assert isinstance(machine, Machine)
    dm = machine.manager
    assert dm.profile.overlap is Overlap.LAST_MAPPED
    assert dm.profile.straddle is Straddle.REJECT
    assert dm.mmio_read(3, 0xE000_0000 + (1 << 20) + (0x1F << 15) + (7 << 12), 4) == 0x11E8_1234
    assert dm.resolve(3, "memory", 0xC000_0000) == (Bdf(1, 0x1F, 7), 0)


def test_ecam_false_means_no_ecam_window() -> None:
    machine = parse_machine(ONE_NIC.replace("id = 7", "id = 7\necam_base = false"))
    assert machine.manager.mmio_read(7, 0xB000_0000 + (2 << 15), 4) == 0xFFFF_FFFF


def test_device_without_optional_keys_is_plugged_in_power_on_state() -> None:
    machine = parse_machine(ONE_NIC)
    tables = machine.manager.tables(7)
    assert tables.config == ((NIC, "e1000"),)
    assert tables.memory == ()
    assert tables.io == ()
    assert machine.manager.config_read(7, NIC, 0x04, 2) == 0


def test_unassigned_command_leaves_programmed_bars_not_decoding() -> None:
    machine = parse_machine(machine_with_device(bars="{ 0 = 0xfebc0000 }", rom="0xfeb80000"))
    assert machine.manager.tables(7).memory == ()
    assert machine.manager.config_read(7, NIC, 0x10, 4) == 0xFEBC0000


def test_a_vm_without_devices_is_valid() -> None:
    machine = parse_machine("[vm]\nid = 0\n")
    assert machine.manager.tables(0).config == ()


# ------------------------------------------------------------------ bad input
def test_toml_syntax_error_names_the_position() -> None:
    expect_error("[vm]\nid = = 1\n", "not valid TOML", "line 2", "fix the syntax")


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[vm]\nid = 1\n[vmm]\nx = 1\n", ("top level", "unknown key 'vmm'", "did you mean 'vm'")),
        (
            "[vm]\nid = 1\nname = 'x'\n",
            ("[vm]", "unknown key 'name'", "allowed: id, ecam_base, profile"),
        ),
        (ONE_NIC + "bar = { 0 = 0xfebc0000 }\n", ("unknown key 'bar'", "did you mean 'bars'")),
        (ONE_NIC + "irq = 11\n", ("(00:02.0)", "unknown key 'irq'")),
    ],
)
def test_unknown_keys_are_rejected(text: str, fragments: tuple[str, ...]) -> None:
    expect_error(text, *fragments)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[[device]]\nbdf = '00:02.0'\ntype = 'e1000'\n", ("top level", "missing required key 'vm'")),
        ("[vm]\necam_base = 0xb0000000\n", ("[vm]", "missing required key 'id'")),
        ("[vm]\nid = 1\n[[device]]\ntype = 'e1000'\n", ("[[device]] #1", "missing required key 'bdf'")),
        ("[vm]\nid = 1\n[[device]]\nbdf = '00:02.0'\n", ("[[device]] #1", "missing required key 'type'")),
        ("vm = 1\n", ("[vm]", "expected a table")),
        ("[vm]\nid = 1\n[device]\nbdf = '00:02.0'\n", ("array of tables", "[[device]]")),
    ],
)
def test_missing_or_misshapen_sections_are_rejected(text: str, fragments: tuple[str, ...]) -> None:
    expect_error(text, *fragments)


def test_unknown_device_type_lists_the_known_types() -> None:
    expect_error(
        ONE_NIC.replace('"e1000"', '"e1001"'),
        "unknown device type 'e1001'",
        "a100, e1000, edu, express-sink, kitchen-sink, nvme",
    )


def test_machine_plugs_types_of_type_files_and_applies_writes(tmp_path: Path) -> None:
    from vpcid.conformance.typefile import write_type_file
    from vpcid.model import ConfigSpace, DeviceType
    from vpcid.model.catalog import E1000

    image = bytearray(E1000.declared.image)
    image[0x02:0x04] = b"\x34\x12"
    space = ConfigSpace(bytes(image), E1000.declared.wmask, E1000.declared.w1cmask)
    mine = DeviceType.from_space("my-nic", space, E1000.bars, E1000.rom)
    (tmp_path / "types").mkdir()
    write_type_file(tmp_path / "types" / "mine.json", [mine])
    text = (
        'types = ["types/mine.json"]\n[vm]\nid = 1\n[[device]]\nbdf = "00:03.0"\ntype = "my-nic"\n'
        "bars = { 0 = 0xfebc0000 }\nwrites = [[0x3c, 1, 0x0b], [0x0c, 1, 0x10]]\ncommand = 0x2\n"
    )
    (tmp_path / "m.toml").write_text(text)
    machine = load_machine(tmp_path / "m.toml")
    bdf = Bdf(0, 3, 0)
    dm = machine.manager
    assert dm.config_read(1, bdf, 0x00, 4) == 0x1234_8086
    assert dm.config_read(1, bdf, 0x3C, 1) == 0x0B
    assert dm.config_read(1, bdf, 0x0C, 1) == 0x10
    assert dm.resolve(1, "memory", 0xFEBC_0000) == (bdf, 0)
    again = load_machine(text.replace('types = ["types/mine.json"]\n', ""), types={"my-nic": mine})
    assert again.manager.config_read(1, bdf, 0x00, 4) == 0x1234_8086
    expect_error(ONE_NIC + "writes = [[0x3e, 4, 0]]\n", "crosses a dword")
    expect_error(ONE_NIC + "writes = [[0x40, 3, 0]]\n", "width is 1, 2 or 4")
    expect_error(ONE_NIC + "writes = [0x40]\n", "[offset, width, value]")
    expect_error('types = "x.json"\n' + ONE_NIC, "array of device-type file paths")


@pytest.mark.parametrize("bdf", ["00:20.0", "0:2", "00:02.8", "100:00.0", "zz:00.0", ""])
def test_bad_bdf_is_rejected(bdf: str) -> None:
    expect_error(ONE_NIC.replace("00:02.0", bdf), "[[device]] #1", "bus:device.function")


def test_bdf_must_be_a_string() -> None:
    expect_error(ONE_NIC.replace('"00:02.0"', "2"), 'must be a string like "00:02.0"')


def test_duplicate_bdf_is_rejected() -> None:
    twice = ONE_NIC + '[[device]]\nbdf = "00:02.0"\ntype = "edu"\n'
    expect_error(twice, "[[device]] #2", "BDF 00:02.0 is used twice")


@pytest.mark.parametrize(
    ("bars", "fragments"),
    [
        ("{ 2 = 0xfe000000 }", ("e1000 does not implement BAR 2", "it has BARs 0, 1")),
        ("{ 6 = 0xfe000000 }", ("'6' is not a BAR index 0-5",)),
        ("{ x = 0xfe000000 }", ("'x' is not a BAR index 0-5",)),
        ("0xfebc0000", ("bars: expected a table",)),
    ],
)
def test_bars_the_type_does_not_implement_are_rejected(bars: str, fragments: tuple[str, ...]) -> None:
    expect_error(machine_with_device(bars=bars), *fragments)


def test_upper_half_of_a_64_bit_bar_is_not_a_bar() -> None:
    text = '[vm]\nid = 1\n[[device]]\nbdf = "00:05.0"\ntype = "a100"\nbars = { 2 = 0x40 }\n'
    expect_error(text, "BAR 2 of a100 is the upper half of 64-bit BAR 1", "under key 1")


@pytest.mark.parametrize(
    ("fields", "fragments"),
    [
        ({"bars": '{ 0 = "0xfebc0000" }'}, ("BAR 0", "expected an integer", "'0xfebc0000' (a string)")),
        ({"bars": "{ 0 = 4.5 }"}, ("BAR 0", "4.5 (a float)")),
        ({"rom": "true"}, ("rom", "true (a boolean)")),
        ({"command": '"7"'}, ("command", "'7' (a string)")),
        ({"command": "[7]"}, ("command", "an array")),
        ({"command": "0x10000"}, ("command", "out of range", "0-0xffff")),
    ],
)
def test_non_integer_or_out_of_range_values_are_rejected(
    fields: dict[str, str], fragments: tuple[str, ...]
) -> None:
    expect_error(machine_with_device(**fields), *fragments)


@pytest.mark.parametrize(
    ("vm_table", "fragments"),
    [
        ("id = -1", ("[vm] id", "out of range")),
        ("id = 0x100000000", ("[vm] id", "out of range")),
        ("id = 'one'", ("[vm] id", "expected an integer")),
        ("id = 1\necam_base = 0xb0001000", ("[vm]", "aligned to the 256 MiB window")),
        ("id = 1\necam_base = true", ("ecam_base", "or false for no ECAM")),
    ],
)
def test_bad_vm_values_are_rejected(vm_table: str, fragments: tuple[str, ...]) -> None:
    expect_error(f"[vm]\n{vm_table}\n", *fragments)


@pytest.mark.parametrize(
    ("profile", "fragments"),
    [
        ('colour = "blue"', ("[vm.profile]", "unknown variant axis 'colour'")),
        ('overlap = "random"', ("[vm.profile]", "no value 'random'", "lowest-bdf, last-mapped")),
    ],
)
def test_bad_profile_is_rejected(profile: str, fragments: tuple[str, ...]) -> None:
    expect_error(f"[vm]\nid = 1\n[vm.profile]\n{profile}\n", *fragments)


@pytest.mark.parametrize(
    ("fields", "fragments"),
    [
        ({"bars": "{ 0 = 0xfebc1000 }"}, ("not a multiple of the size 128K", "use e.g. 0xfebc0000")),
        ({"bars": "{ 0 = 0 }"}, ("address 0 means unassigned",)),
        ({"bars": "{ 0 = 0x100000000 }"}, ("BAR 0", "out of range")),
        ({"bars": "{ 1 = 0xffc8 }"}, ("BAR 1", "not a multiple of the size 64")),
        ({"bars": "{ 1 = 0x10000 }"}, ("BAR 1", "out of range", "0-0xffff")),
        ({"rom": "0xfeb88000"}, ("rom", "not a multiple of the size 64K")),
        ({"command": "0x8"}, ("command", "bits 0x8 are not implemented by e1000")),
    ],
)
def test_values_the_device_cannot_take_are_rejected(
    fields: dict[str, str], fragments: tuple[str, ...]
) -> None:
    expect_error(machine_with_device(**fields), *fragments)


def test_rom_on_a_type_without_rom_is_rejected() -> None:
    text = '[vm]\nid = 1\n[[device]]\nbdf = "00:04.0"\ntype = "edu"\nrom = 0xfeb00000\n'
    expect_error(text, "edu has no expansion ROM", "remove the rom key")


def test_64_bit_bar_alignment_is_checked_against_its_size() -> None:
    text = '[vm]\nid = 1\n[[device]]\nbdf = "00:05.0"\ntype = "a100"\nbars = { 1 = 0x2800000000 }\n'
    expect_error(text, "BAR 1", "not a multiple of the size 64G", "use e.g. 0x2000000000")


def test_unreadable_file_is_a_machine_error(tmp_path: Path) -> None:
    with pytest.raises(MachineError, match=r"cannot read machine file .*missing\.toml: no such file"):
        load_machine(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[vm]")
    with pytest.raises(MachineError, match="not UTF-8"):
        load_machine(binary)
