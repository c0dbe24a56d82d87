"""``vpcid lspci``: the pciutils options on the demo machine, dumps, names, filters, errors, and that listing
changes nothing. The comparison with pciutils itself is tests/test_lspci_pciutils.py."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from vpcid.conformance.cli import VpcidGroup, main
from vpcid.conformance.lspci import (
    IdFilter,
    LspciError,
    LspciOptions,
    PciAddress,
    PciFunction,
    SlotFilter,
    format_size,
    machine_functions,
    render,
    render_lspci,
)
from vpcid.conformance.machine import Machine, demo_machine_file, load_machine, parse_machine
from vpcid.conformance.pciids import IdNames, PciIds, PciIdsError
from vpcid.conformance.typefile import write_type_file
from vpcid.model import Bdf, DataManager, Profile, VpcidError
from vpcid.model.catalog import E1000, EDU, NVME

REPO = Path(__file__).resolve().parents[1]
NIC, NVME_SLOT, EDU_SLOT, GPU = Bdf(0, 2, 0), Bdf(0, 3, 0), Bdf(0, 4, 0), Bdf(0, 5, 0)

SMALL_PCI_IDS = """\
# A few entries in the pci.ids format, enough to name the demo machine.
8086  Intel Corporation
\t100e  82540EM Gigabit Ethernet Controller
\t\t8086 001e  PRO/1000 MT Desktop Adapter
144d  Samsung Electronics Co Ltd
\ta808  NVMe SSD Controller SM981/PM981/PM983
1af4  Red Hat, Inc.
10de  NVIDIA Corporation
\t20f1  GA100 [A100 PCIe 40GB]
C 00  Unclassified device
C 01  Mass storage controller
\t08  Non-Volatile memory controller
\t\t02  NVM Express
C 02  Network controller
\t00  Ethernet controller
C 03  Display controller
\t02  3D controller
"""

DEMO_NAMES = [
    "00:02.0 Ethernet controller: Intel Corporation 82540EM Gigabit Ethernet Controller (rev 02)",
    "00:03.0 Non-Volatile memory controller: Samsung Electronics Co Ltd "
    "NVMe SSD Controller SM981/PM981/PM983",
    "00:04.0 Unclassified device [00ff]: Device 1234:11e8 (rev 10)",
    "00:05.0 3D controller: NVIDIA Corporation GA100 [A100 PCIe 40GB] (rev a1)",
]
DEMO_NUMBERS = [
    "00:02.0 0200: 8086:100e (rev 02)",
    "00:03.0 0108: 144d:a808",
    "00:04.0 00ff: 1234:11e8 (rev 10)",
    "00:05.0 0302: 10de:20f1 (rev a1)",
]
DEMO_BOTH = [
    "00:02.0 Ethernet controller [0200]: Intel Corporation "
    "82540EM Gigabit Ethernet Controller [8086:100e] (rev 02)",
    "00:03.0 Non-Volatile memory controller [0108]: Samsung Electronics Co Ltd "
    "NVMe SSD Controller SM981/PM981/PM983 [144d:a808]",
    "00:04.0 Unclassified device [00ff]: Device [1234:11e8] (rev 10)",
    "00:05.0 3D controller [0302]: NVIDIA Corporation GA100 [A100 PCIe 40GB] [10de:20f1] (rev a1)",
]

DEMO_REGIONS = {
    "00:02.0": [
        "\tRegion 0: Memory at febc0000 (32-bit, non-prefetchable) [size=128K]",
        "\tRegion 1: I/O ports at c000 [size=64]",
        "\tExpansion ROM at feb80000 [size=64K]",
    ],
    "00:03.0": ["\tRegion 0: Memory at febf0000 (64-bit, non-prefetchable) [size=16K]"],
    "00:04.0": ["\tRegion 0: Memory at fea00000 (32-bit, non-prefetchable) [size=1M]"],
    "00:05.0": [
        "\tRegion 0: Memory at fd000000 (32-bit, non-prefetchable) [size=16M]",
        "\tRegion 1: Memory at 4000000000 (64-bit, prefetchable) [size=64G]",
        "\tRegion 3: Memory at 3000000000 (64-bit, prefetchable) [size=32M]",
    ],
}


@pytest.fixture(scope="module")
def pci_ids(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ids") / "pci.ids"
    path.write_text(SMALL_PCI_IDS)
    return path


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args))


def lspci(pci_ids: Path, *args: str) -> click.testing.Result:
    """``vpcid lspci ARGS`` naming from the small database; a non-zero exit fails the test."""
    result = invoke("lspci", "-i", str(pci_ids), *args)
    assert result.exit_code == 0, result.output
    return result


def device_blocks(listing: str) -> dict[str, list[str]]:
    """Verbose output split per function: BDF -> its lines (title first)."""
    blocks: dict[str, list[str]] = {}
    for block in listing.strip("\n").split("\n\n"):
        lines = block.splitlines()
        blocks[lines[0].split()[0]] = lines
    return blocks


def region_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith(("\tRegion", "\tExpansion ROM"))]


def capability_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("\tCapabilities:")]


def verbose(machine: Machine, level: int = 2) -> dict[str, list[str]]:
    return device_blocks(render_lspci(machine.manager, machine.vm_id, LspciOptions(verbose=level)))


def demo() -> Machine:
    return load_machine(demo_machine_file())


# ------------------------------------------------------------ one line each
@pytest.mark.req("R-DS-007")
def test_lspci_lists_every_demo_function_by_name(pci_ids: Path) -> None:
    result = lspci(pci_ids)
    assert result.stdout.splitlines() == DEMO_NAMES
    assert result.stderr == ""


@pytest.mark.parametrize(("flag", "expected"), [("-n", DEMO_NUMBERS), ("-nn", DEMO_BOTH)])
def test_numeric_ids_as_with_lspci_n_and_nn(pci_ids: Path, flag: str, expected: list[str]) -> None:
    assert lspci(pci_ids, flag).stdout.splitlines() == expected


def test_without_an_id_database_numbers_are_shown_and_a_note_says_so_once(tmp_path: Path) -> None:
    absent = tmp_path / "no-pci.ids"
    result = invoke("lspci", "-i", str(absent), "-vv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "00:02.0 Class 0200: Device 8086:100e (rev 02)"
    assert (
        result.stderr == f"vpcid: note: no PCI ID database at {absent}; showing numbers (install pci.ids)\n"
    )
    numeric = invoke("lspci", "-i", str(absent), "-n")
    assert numeric.stdout.splitlines() == DEMO_NUMBERS
    assert numeric.stderr == ""


def test_the_system_database_names_the_demo_machine() -> None:
    if PciIds.load(None) is None:
        pytest.skip("no /usr/share/misc/pci.ids (run .ci/install-debian.sh)")
    result = invoke("lspci")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == DEMO_NAMES[0]
    assert result.stderr == ""


# ---------------------------------------------------------------- -v, -vv
@pytest.mark.req("R-DS-007", "R-BAR-003")
def test_vv_shows_regions_with_sizes_from_the_device_types(pci_ids: Path) -> None:
    blocks = device_blocks(lspci(pci_ids, "-vv").stdout)
    assert list(blocks) == ["00:02.0", "00:03.0", "00:04.0", "00:05.0"]
    for bdf, lines in blocks.items():
        assert region_lines(lines) == DEMO_REGIONS[bdf]
        assert "\tInterrupt: pin A routed to IRQ 0" in lines
    assert blocks["00:03.0"][0].endswith("PM981/PM983 (prog-if 02 [NVM Express])")
    assert "\tSubsystem: Intel Corporation PRO/1000 MT Desktop Adapter" in blocks["00:02.0"]
    assert "\tSubsystem: Red Hat, Inc. Device 1100" in blocks["00:04.0"]
    assert blocks["00:05.0"][-1] == "\tVPCID device type: a100"


def test_v_shows_flags_and_regions_without_their_numbers(pci_ids: Path) -> None:
    blocks = device_blocks(lspci(pci_ids, "-v").stdout)
    nic = blocks["00:02.0"]
    assert nic[2] == "\tFlags: bus master, fast devsel, latency 0"
    assert not any(line.startswith("\tRegion") for line in nic)
    assert nic[3:6] == [
        "\tMemory at febc0000 (32-bit, non-prefetchable) [size=128K]",
        "\tI/O ports at c000 [size=64]",
        "\tExpansion ROM at feb80000 [size=64K]",
    ]
    assert capability_lines(blocks["00:03.0"]) == [
        "\tCapabilities: [40] Power Management version 3",
        "\tCapabilities: [50] MSI: Enable- Count=1/32 Maskable- 64bit+",
        "\tCapabilities: [70] Express Endpoint, MSI 00",
        "\tCapabilities: [b0] MSI-X: Enable- Count=33 Masked-",
    ]
    assert blocks["00:04.0"][2] == "\tFlags: fast devsel"


def test_vv_decodes_command_and_status() -> None:
    blocks = verbose(demo())
    assert blocks["00:02.0"][2].startswith("\tControl: I/O+ Mem+ BusMaster+ SpecCycle-")
    assert blocks["00:03.0"][2].startswith("\tControl: I/O- Mem+ BusMaster+ SpecCycle-")
    assert blocks["00:04.0"][2].startswith("\tControl: I/O- Mem+ BusMaster- SpecCycle-")
    assert blocks["00:04.0"][3].startswith("\tStatus: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast")
    assert "\tLatency: 0" in blocks["00:02.0"]
    assert not any(line.startswith("\tLatency") for line in blocks["00:04.0"])


def test_vv_walks_and_decodes_the_capability_lists() -> None:
    blocks = verbose(demo())
    assert capability_lines(blocks["00:02.0"]) == ["\tCapabilities: [40] Power Management version 3"]
    assert capability_lines(blocks["00:03.0"]) == [
        "\tCapabilities: [40] Power Management version 3",
        "\tCapabilities: [50] MSI: Enable- Count=1/32 Maskable- 64bit+",
        "\tCapabilities: [70] Express (v2) Endpoint, MSI 00",
        "\tCapabilities: [b0] MSI-X: Enable- Count=33 Masked-",
    ]
    nvme = blocks["00:03.0"]
    assert "\t\tStatus: D0 NoSoftRst- PME-Enable- DSel=0 DScale=0 PME-" in nvme
    assert "\t\tLnkCap:\tPort #0, Speed 8GT/s, Width x4, ASPM L0s, Exit Latency L0s <512ns" in nvme
    assert "\t\tLnkSta:\tSpeed 8GT/s, Width x4" in nvme
    assert (
        "\t\tDevCtl2: Completion Timeout: 50us to 50ms, TimeoutDis- LTR- 10BitTagReq- OBFF Disabled," in nvme
    )
    assert "\t\tVector table: BAR=0 offset=00003000" in nvme
    assert "\t\tPBA: BAR=0 offset=00002000" in nvme


def test_capability_state_written_by_the_guest_is_shown() -> None:
    machine = demo()
    dm, vm = machine.manager, machine.vm_id
    dm.config_write(vm, NVME_SLOT, 0x50 + 2, 2, 0x0001)  # MSI enable
    dm.config_write(vm, NVME_SLOT, 0x50 + 4, 4, 0xFEE0_0000)
    dm.config_write(vm, NVME_SLOT, 0x50 + 0xC, 2, 0x0041)
    dm.config_write(vm, NVME_SLOT, 0xB0 + 2, 2, 0x8000)  # MSI-X enable
    nvme = verbose(machine)["00:03.0"]
    assert "\tCapabilities: [50] MSI: Enable+ Count=1/32 Maskable- 64bit+" in nvme
    assert "\t\tAddress: 00000000fee00000  Data: 0041" in nvme
    assert "\tCapabilities: [b0] MSI-X: Enable+ Count=33 Masked-" in nvme


# ------------------------------------------------------------ decode notes
def test_decode_markers_follow_the_command_register(tmp_path: Path, pci_ids: Path) -> None:
    machine_file = tmp_path / "markers.toml"
    machine_file.write_text(
        '[vm]\nid = 2\n[[device]]\nbdf = "00:02.0"\ntype = "e1000"\n'
        "bars = { 0 = 0xfebc0000, 1 = 0xc000 }\nrom = 0xfeb80000\ncommand = 0x2\n"
        '[[device]]\nbdf = "00:03.0"\ntype = "e1000"\nbars = { 0 = 0xfe000000, 1 = 0xc040 }\n'
    )
    blocks = device_blocks(lspci(pci_ids, "-vv", "--machine", str(machine_file)).stdout)
    assert region_lines(blocks["00:02.0"]) == [
        "\tRegion 0: Memory at febc0000 (32-bit, non-prefetchable) [size=128K]",
        "\tRegion 1: I/O ports at c000 [disabled] [size=64]",
        "\tExpansion ROM at feb80000 [size=64K]",
    ]
    assert region_lines(blocks["00:03.0"]) == [
        "\tRegion 0: Memory at fe000000 (32-bit, non-prefetchable) [disabled] [size=128K]",
        "\tRegion 1: I/O ports at c040 [disabled] [size=64]",
        "\tExpansion ROM at <unassigned> [disabled] [size=64K]",
    ]


def test_rom_enabled_without_memory_decode_is_disabled_by_cmd() -> None:
    machine = parse_machine('[vm]\nid = 1\n[[device]]\nbdf = "00:02.0"\ntype = "e1000"\nrom = 0xfeb80000\n')
    lines = verbose(machine)["00:02.0"]
    assert "\tExpansion ROM at feb80000 [disabled by cmd] [size=64K]" in lines
    assert "\tRegion 0: Memory at <unassigned> (32-bit, non-prefetchable) [disabled] [size=128K]" in lines


@pytest.mark.req("R-DS-007")
def test_overlapping_bars_show_which_one_decodes() -> None:
    machine = parse_machine(
        '[vm]\nid = 1\n[[device]]\nbdf = "00:04.0"\ntype = "edu"\nbars = { 0 = 0xfea00000 }\ncommand = 0x2\n'
        '[[device]]\nbdf = "00:05.0"\ntype = "edu"\nbars = { 0 = 0xfea00000 }\ncommand = 0x2\n'
    )
    blocks = verbose(machine)
    assert region_lines(blocks["00:04.0"]) == [
        "\tRegion 0: Memory at fea00000 (32-bit, non-prefetchable) [size=1M]"
    ]
    assert region_lines(blocks["00:05.0"]) == [
        "\tRegion 0: Memory at fea00000 (32-bit, non-prefetchable) [shadowed by 00:04.0 BAR 0] [size=1M]"
    ]


def test_enabled_bar_outside_its_address_space_is_not_decoding() -> None:
    dm = DataManager()
    dm.create_vm(1)
    dm.plug(1, NIC, E1000)
    dm.config_write(1, NIC, 0x14, 4, 0x1_0000)  # an I/O BAR above the 64 KiB port space
    dm.config_write(1, NIC, 0x04, 2, 0x1)
    lines = render_lspci(dm, 1, LspciOptions(verbose=2)).splitlines()
    assert "\tRegion 1: I/O ports at 10000 [not decoding] [size=64]" in lines


def test_empty_vm_lists_nothing() -> None:
    machine = parse_machine("[vm]\nid = 1\n")
    assert render_lspci(machine.manager, 1) == ""
    assert render_lspci(machine.manager, 1, LspciOptions(verbose=2, hex_dump=4)) == ""


@pytest.mark.parametrize(
    ("size", "text"), [(64, "64"), (16 << 10, "16K"), (1 << 20, "1M"), (64 << 30, "64G"), (3 << 40, "3T")]
)
def test_sizes_are_printed_like_lspci(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.req("R-BAR-003")
def test_machine_functions_carry_the_device_types_sizes_and_bytes() -> None:
    machine = demo()
    dm, vm = machine.manager, machine.vm_id
    for function in machine_functions(dm, vm):
        address = function.address
        bdf = Bdf(address.bus, address.device, address.function)
        dtype = dm.device_type(vm, bdf)
        assert len(function.config) == dtype.config_size
        assert function.config[:4] == dm.config_read(vm, bdf, 0, 4).to_bytes(4, "little")
        assert function.region_sizes == tuple(
            bar.size if bar else 0 for bar in (dtype.bar(i) for i in range(6))
        )
        assert function.rom_size == (dtype.rom.size if dtype.rom else 0)
        assert function.device_type == dtype.name


# ---------------------------------------------------------------- hex dumps
@pytest.mark.parametrize(("flag", "rows"), [("-x", 4), ("-xx", 4), ("-xxx", 16), ("-xxxx", 256)])
def test_hex_dumps_show_as_much_as_the_function_has(pci_ids: Path, flag: str, rows: int) -> None:
    blocks = device_blocks(lspci(pci_ids, flag).stdout)
    nvme, edu = blocks["00:03.0"], blocks["00:04.0"]  # PCI Express (4096 bytes) and conventional (256)
    assert len(nvme) == 1 + rows
    assert len(edu) == 1 + min(rows, 16)
    assert edu[1] == "00: 34 12 e8 11 02 00 10 00 10 00 ff 00 00 00 00 00"
    assert all(re.fullmatch(r"[0-9a-f]{2,3}:( [0-9a-f]{2}){16}", line) for line in nvme[1:])
    assert nvme[-1].startswith(f"{(rows - 1) * 16:02x}: ")


def test_hex_dump_follows_the_verbose_text(pci_ids: Path) -> None:
    edu = device_blocks(lspci(pci_ids, "-v", "-x", "-s", "04.0").stdout)["00:04.0"]
    assert edu[-5] == "\tVPCID device type: edu"
    assert edu[-4].startswith("00: 34 12 e8 11")


# ------------------------------------------------------------------ filters
@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (("-s", "03.0"), ["00:03.0"]),
        (("-s", "0:0:5"), ["00:05.0"]),
        (("-s", "00:.0"), ["00:02.0", "00:03.0", "00:04.0", "00:05.0"]),
        (("-s", "1:"), []),
        (("-s", "*:*.1"), []),
        (("-d", "8086:"), ["00:02.0"]),
        (("-d", ":a808"), ["00:03.0"]),
        (("-d", "::0302"), ["00:05.0"]),
        (("-d", "::01xx"), ["00:03.0"]),
        (("-d", "::0108:02"), ["00:03.0"]),
        (("-d", "10de:20f1", "-s", "02.0"), []),
    ],
)
def test_selection_by_slot_and_id(pci_ids: Path, selection: tuple[str, ...], expected: list[str]) -> None:
    listing = lspci(pci_ids, *selection).stdout
    assert [line.split()[0] for line in listing.splitlines()] == expected


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("-s", "100:00.0", "-s: Invalid bus number"),
        ("-s", "00:20.0", "-s: Invalid slot number"),
        ("-s", "00:02.8", "-s: Invalid function number"),
        ("-s", "1:2:3:4", "-s: Too many fields"),
        ("-s", "00:02.0.1", "-s: Invalid slot/function number"),
        ("-d", "8086", "-d: At least two fields must be given"),
        ("-d", "g086:", "-d: Invalid vendor ID"),
        ("-d", "::10000", "-d: Invalid class code"),
        ("-d", "::0108:100", "-d: Invalid programming interface code"),
    ],
)
def test_bad_filters_are_one_error_line(option: str, value: str, message: str) -> None:
    result = invoke("lspci", option, value)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"vpcid: error: {message}\n"


def test_filters_parse_as_pciutils_does() -> None:
    assert SlotFilter.parse("0001:02:1f.7") == SlotFilter(1, 2, 0x1F, 7)
    assert SlotFilter.parse("3") == SlotFilter(None, None, 3, None)
    assert SlotFilter.parse(".2") == SlotFilter(None, None, None, 2)
    assert IdFilter.parse("*:1234:0cx3") == IdFilter(None, 0x1234, 0x0C03, 0xFFFF_FF0F, None)
    with pytest.raises(LspciError):
        SlotFilter.parse("0" * 64)


def test_domains_show_when_any_function_has_one() -> None:
    def function(domain: int) -> PciFunction:
        return PciFunction(PciAddress(domain, 0, 1, 0), bytes(64))

    names = IdNames(None, numeric=1)
    assert render([function(0)], LspciOptions(), names) == "00:01.0 0000: 0000:0000\n"
    assert render([function(0)], LspciOptions(always_domains=True), names) == "0000:00:01.0 0000: 0000:0000\n"
    both = render([function(1), function(0)], LspciOptions(), names).splitlines()
    assert both == ["0000:00:01.0 0000: 0000:0000", "0001:00:01.0 0000: 0000:0000"]


# -------------------------------------------------------------------- -F
def test_a_machine_dumped_and_read_back_lists_the_same_without_sizes(tmp_path: Path, pci_ids: Path) -> None:
    dump = tmp_path / "demo.txt"
    dump.write_text(lspci(pci_ids, "-xxxx").stdout)
    from_dump = device_blocks(lspci(pci_ids, "-vv", "-F", str(dump)).stdout)
    from_machine = device_blocks(lspci(pci_ids, "-vv").stdout)
    assert list(from_dump) == list(from_machine)
    for bdf, lines in from_machine.items():
        expected = [re.sub(r" \[size=\w+\]$", "", line) for line in lines if "VPCID device type" not in line]
        assert from_dump[bdf] == expected


def test_a_sysfs_folder_is_a_dump_too(tmp_path: Path, pci_ids: Path) -> None:
    folder = tmp_path / "0000:00:04.0"
    folder.mkdir()
    (folder / "config").write_bytes(
        b"".join(machine_functions(demo().manager, 1)[2].config[i : i + 1] for i in range(256))
    )
    listing = lspci(pci_ids, "-F", str(folder)).stdout
    assert listing == "00:04.0 Unclassified device [00ff]: Device 1234:11e8 (rev 10)\n"


def test_dump_and_machine_are_exclusive(tmp_path: Path) -> None:
    result = invoke("lspci", "-F", str(tmp_path / "x.txt"), "--machine", str(demo_machine_file()))
    assert result.exit_code == 2
    assert "-F shows a dump" in result.stderr


def test_a_malformed_dump_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("00:02.0 Ethernet controller\n00: 86 80 zz\n")
    result = invoke("lspci", "-F", str(bad))
    assert result.exit_code == 2
    assert result.stderr.startswith("vpcid: error: ")
    assert str(bad) in result.stderr
    assert "Traceback" not in result.output


# ----------------------------------------------------------------- --types
def test_types_files_name_the_types_a_machine_uses(tmp_path: Path, pci_ids: Path) -> None:
    types = tmp_path / "types.json"
    write_type_file(types, [dataclasses.replace(EDU, name="my-edu", device_id=0x11E9)])
    machine_file = tmp_path / "m.toml"
    machine_file.write_text('[vm]\nid = 1\n[[device]]\nbdf = "00:07.0"\ntype = "my-edu"\n')
    result = lspci(pci_ids, "-v", "-nn", "--machine", str(machine_file), "--types", str(types))
    lines = result.stdout.splitlines()
    assert lines[0] == "00:07.0 Unclassified device [00ff]: Device [1234:11e9] (rev 10)"
    assert "\tVPCID device type: my-edu" in lines
    missing = invoke("lspci", "-i", str(pci_ids), "--machine", str(machine_file))
    assert missing.exit_code == 2
    assert "my-edu" in missing.stderr


# ---------------------------------------------------------- VM unchanged
@pytest.mark.req("R-SR-001")
@pytest.mark.parametrize("options", [LspciOptions(), LspciOptions(verbose=3, hex_dump=4)])
def test_rendering_does_not_change_the_vm(options: LspciOptions) -> None:
    machine = demo()
    dm, vm = machine.manager, machine.vm_id
    dm.io_write(vm, 0xCF8, 4, 0x8000_1000)  # a guest left 0xCF8 pointing somewhere
    dm.mmio_write(vm, 0xFEBF_0000, 4, 0x1234_5678)  # and device data behind a BAR
    before = dm.snapshot(vm)
    first = render_lspci(dm, vm, options)
    assert dm.snapshot(vm) == before
    assert render_lspci(dm, vm, options) == first


@pytest.mark.req("R-SR-001")
def test_rendering_keeps_the_mapping_order_under_last_mapped_overlap() -> None:
    dm = DataManager(Profile.from_mapping({"overlap": "last-mapped"}))
    dm.create_vm(1)
    for bdf in (NIC, NVME_SLOT):
        dm.plug(1, bdf, E1000 if bdf == NIC else NVME)
    dm.config_write(1, NVME_SLOT, 0x10, 4, 0xFEBC_0000)  # nvme enabled first, at the e1000's address
    dm.config_write(1, NVME_SLOT, 0x04, 2, 0x2)
    dm.config_write(1, NIC, 0x10, 4, 0xFEBC_0000)
    dm.config_write(1, NIC, 0x04, 2, 0x2)
    assert dm.resolve(1, "memory", 0xFEBC_0000) == (NIC, 0)  # mapped last, so it wins
    before = dm.snapshot(1)
    listing = render_lspci(dm, 1, LspciOptions(verbose=2))
    assert dm.snapshot(1) == before
    assert dm.resolve(1, "memory", 0xFEBC_0000) == (NIC, 0)
    assert "[shadowed by 00:02.0 BAR 0] [size=16K]" in listing


# ------------------------------------------------------------- pci.ids
def test_id_database_lookups_and_fallbacks() -> None:
    db = PciIds.parse(SMALL_PCI_IDS + "S 1af4\n\t1100  QEMU Virtual Machine\n", source="test.ids")
    names, both = IdNames(db), IdNames(db, numeric=2)
    assert names.subsystem(0x1234, 0x11E8, 0x1AF4, 0x1100) == "Red Hat, Inc. QEMU Virtual Machine"
    assert names.subsystem(0x10DE, 0x20F1, 0x10DE, 0x20F1) == "NVIDIA Corporation GA100 [A100 PCIe 40GB]"
    assert names.subsystem(0x8086, 0x100E, 0x9999, 0x0001) == "Device 9999:0001"
    assert both.subsystem(0x8086, 0x100E, 0x8086, 0x0002) == "Intel Corporation Device [8086:0002]"
    assert names.vendor_device(0x8086, 0x0002) == "Intel Corporation Device 0002"
    assert names.device_class(0x0280) == "Network controller [0280]"
    assert both.device_class(0x0280) == "Network controller [0280]"
    assert names.device_class(0xFF00) == "Class ff00"
    assert both.device_class(0xFF00) == "Class [ff00]"
    assert names.prog_if(0x0108, 0x02) == "NVM Express"
    assert IdNames(db, numeric=1).prog_if(0x0108, 0x02) == "NVM Express"  # lspci -n -v still names it
    assert names.prog_if(0x0101, 0x8A) == "Master SecP PriP"
    assert names.prog_if(0x0108, 0x03) is None


def test_over_long_names_end_in_dots_as_in_lspci() -> None:
    db = PciIds.parse("abcd  " + "V" * 100 + "\n\t0001  " + "D" * 100 + "\n")
    text = IdNames(db).vendor_device(0xABCD, 0x0001)
    assert len(text.encode()) == 127
    assert text == "V" * 100 + " " + "D" * 23 + "..."


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("8086Intel\n", "Parse error at bad.ids, line 1"),
        ("8086  Intel\n\tzz00  x\n", "Parse error at bad.ids, line 2"),
        ("8086  Intel\n8086  Again\n", "Duplicate entry at bad.ids, line 2"),
        ("S 1af4\n", "Vendor does not exist at bad.ids, line 1"),
        ("8086  Intel\n\t\t\tdeep\n", "Parse error at bad.ids, line 2"),
        ("C 0g  Bad class\n", "Parse error at bad.ids, line 1"),
        ("8086  " + "x" * 1100 + "\n", "Line too long at bad.ids, line 1"),
    ],
)
def test_a_malformed_id_database_names_file_and_line(text: str, problem: str) -> None:
    with pytest.raises(PciIdsError) as raised:
        PciIds.parse(text, source="bad.ids")
    assert str(raised.value) == problem


def test_comments_blank_lines_and_unknown_blocks_are_skipped() -> None:
    db = PciIds.parse("# comment\n\n8086  Intel \nX 12  reserved block\n\t34  skipped\n")
    assert db.vendors == {0x8086: "Intel"}


def test_a_malformed_id_database_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ids"
    bad.write_text("8086  Intel\n\tnonsense\n")
    result = invoke("lspci", "-i", str(bad))
    assert result.exit_code == 2
    assert result.stderr == f"vpcid: error: Parse error at {bad}, line 2\n"


# ------------------------------------------------------------------ errors
def test_malformed_machine_file_is_one_error_line_and_status_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[vm]\nid = 1\n[[device]]\nbdf = "00:02.0"\ntype = "e1000"\nbars = { 3 = 0x1000 }\n')
    result = invoke("lspci", "--machine", str(bad))
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("vpcid: error: ")
    assert "e1000 does not implement BAR 3" in lines[0]
    assert "Traceback" not in result.output


def test_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "syntax.toml"
    bad.write_text("[vm\nid = 1\n")
    result = invoke("lspci", "--machine", str(bad))
    assert result.exit_code == 2
    assert re.fullmatch(r"vpcid: error: .*not valid TOML.*\n", result.stderr)


def test_missing_machine_file_is_one_error_line(tmp_path: Path) -> None:
    result = invoke("lspci", "--machine", str(tmp_path / "absent.toml"))
    assert result.exit_code == 2
    assert re.fullmatch(r"vpcid: error: cannot read machine file .*absent\.toml.*\n", result.stderr)


def test_commands_added_to_a_vpcid_group_report_errors_the_same_way() -> None:
    @click.command("fails")
    def fails() -> None:
        raise VpcidError("first line\nsecond line")

    group = VpcidGroup("vpcid")
    group.add_command(fails)
    result = CliRunner().invoke(group, ["fails"])
    assert result.exit_code == 2
    assert result.stderr == "vpcid: error: first line second line\n"
    assert isinstance(main, VpcidGroup)
    assert "lspci" in main.commands


def test_help_lists_lspci_and_its_examples() -> None:
    assert "lspci" in invoke("--help").stdout
    help_text = invoke("lspci", "--help").stdout
    for option in ("-v", "-x", "-n", "-s", "-d", "-F", "-i", "--machine", "--types", "Examples:"):
        assert option in help_text


# --------------------------------------------------------------- benchmark
@pytest.mark.req("R-DS-006")
def test_access_cost_benchmark_quick_run_prints_ratios() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "access_cost.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert re.search(r"^ratio 1024 devices / 1 device: \d+\.\d\d$", completed.stdout, re.MULTILINE)
    assert re.search(r"^ratio 64 GiB BAR / 4 KiB BAR: \d+\.\d\d$", completed.stdout, re.MULTILINE)
    for kind in ("config read", "CAM 0xCF8/0xCFC", "I/O BAR read", "MMIO read", "MMIO write"):
        assert kind in completed.stdout
