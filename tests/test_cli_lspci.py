"""``vpcid lspci``: what it prints for the demo machine, its errors, and that listing changes nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from vpcid.conformance.cli import VpcidGroup, main
from vpcid.conformance.lspci import BarProbe, format_size, probe_bars, render_lspci
from vpcid.conformance.machine import Machine, demo_machine_file, load_machine, parse_machine
from vpcid.model import Bdf, DataManager, Profile, VpcidError
from vpcid.model.catalog import E1000, NVME

REPO = Path(__file__).resolve().parents[1]
NIC, NVME_SLOT, EDU_SLOT, GPU = Bdf(0, 2, 0), Bdf(0, 3, 0), Bdf(0, 4, 0), Bdf(0, 5, 0)
ROM = 6

DEMO_TERSE = [
    "00:02.0 Ethernet controller [0200]: Intel Corporation Device [8086:100e] (rev 02)",
    "00:03.0 Non-Volatile memory controller [0108]: Samsung Electronics Co Ltd Device [144d:a808]",
    "00:04.0 Unclassified device [00ff]: Device [1234:11e8] (rev 10)",
    "00:05.0 3D controller [0302]: NVIDIA Corporation Device [10de:20f1] (rev a1)",
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


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args))


def device_blocks(listing: str) -> dict[str, list[str]]:
    """Verbose output split per function: BDF -> its lines (title first)."""
    blocks: dict[str, list[str]] = {}
    for block in listing.strip("\n").split("\n\n"):
        lines = block.splitlines()
        blocks[lines[0].split()[0]] = lines
    return blocks


def region_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith(("\tRegion", "\tExpansion ROM"))]


def demo() -> Machine:
    return load_machine(demo_machine_file())


# ------------------------------------------------------------------ output
@pytest.mark.req("R-DS-007")
def test_lspci_lists_every_demo_function_with_its_ids() -> None:
    result = invoke("lspci")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == DEMO_TERSE
    assert result.stderr == ""


@pytest.mark.req("R-DS-007", "R-BAR-003")
def test_verbose_lspci_shows_regions_sizes_and_decode() -> None:
    result = invoke("lspci", "-v")
    assert result.exit_code == 0, result.output
    blocks = device_blocks(result.stdout)
    assert list(blocks) == ["00:02.0", "00:03.0", "00:04.0", "00:05.0"]
    for bdf, lines in blocks.items():
        assert region_lines(lines) == DEMO_REGIONS[bdf]
        assert "\tInterrupt: pin A" in lines
    assert blocks["00:03.0"][0].endswith("[144d:a808] (prog-if 02 [NVM Express])")
    assert "\tSubsystem: Intel Corporation Device [8086:001e]" in blocks["00:02.0"]
    assert "\tSubsystem: Red Hat, Inc. Device [1af4:1100]" in blocks["00:04.0"]
    assert "\tVPCID device type: a100" in blocks["00:05.0"]


def test_verbose_lspci_decodes_command_and_status() -> None:
    blocks = device_blocks(invoke("lspci", "--verbose").stdout)
    assert blocks["00:02.0"][2].startswith("\tControl: I/O+ Mem+ BusMaster+ SpecCycle-")
    assert blocks["00:03.0"][2].startswith("\tControl: I/O- Mem+ BusMaster+ SpecCycle-")
    assert blocks["00:04.0"][2].startswith("\tControl: I/O- Mem+ BusMaster- SpecCycle-")
    assert blocks["00:04.0"][3].startswith("\tStatus: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast")
    assert "\tLatency: 0" in blocks["00:02.0"]
    assert not any(line.startswith("\tLatency") for line in blocks["00:04.0"])


def test_verbose_lspci_walks_the_capability_lists() -> None:
    blocks = device_blocks(invoke("lspci", "-v").stdout)

    def capabilities(bdf: str) -> list[str]:
        return [line for line in blocks[bdf] if line.startswith("\tCapabilities:")]

    assert capabilities("00:02.0") == ["\tCapabilities: [40] Power Management version 3"]
    assert capabilities("00:03.0") == [
        "\tCapabilities: [40] Power Management version 3",
        "\tCapabilities: [48] MSI: Enable- Count=1/1 Maskable- 64bit+",
        "\tCapabilities: [58] Express (v2) Endpoint, MSI 00",
        "\tCapabilities: [6c] MSI-X: Enable- Count=33 Masked-",
    ]
    assert capabilities("00:04.0") == ["\tCapabilities: [40] MSI: Enable- Count=1/1 Maskable- 64bit+"]
    nvme = blocks["00:03.0"]
    assert "\t\tStatus: D0 NoSoftRst- PME-Enable- DSel=0 DScale=0 PME-" in nvme
    assert "\t\tLnkCap:\tPort #0, Speed 8GT/s, Width x4" in nvme
    assert "\t\tVector table: BAR=0 offset=00002000" in nvme


def test_capability_state_written_by_the_guest_is_shown() -> None:
    machine = demo()
    dm, vm = machine.manager, machine.vm_id
    dm.config_write(vm, NVME_SLOT, 0x48 + 2, 2, 0x0001)  # MSI enable
    dm.config_write(vm, NVME_SLOT, 0x48 + 4, 4, 0xFEE0_0000)
    dm.config_write(vm, NVME_SLOT, 0x48 + 0xC, 2, 0x0041)
    dm.config_write(vm, NVME_SLOT, 0x6C + 2, 2, 0x8000)  # MSI-X enable
    blocks = device_blocks(render_lspci(dm, vm, verbose=True))
    assert "\tCapabilities: [48] MSI: Enable+ Count=1/1 Maskable- 64bit+" in blocks["00:03.0"]
    assert "\t\tAddress: 00000000fee00000  Data: 0041" in blocks["00:03.0"]
    assert "\tCapabilities: [6c] MSI-X: Enable+ Count=33 Masked-" in blocks["00:03.0"]


def test_decode_markers_follow_the_command_register(tmp_path: Path) -> None:
    machine_file = tmp_path / "markers.toml"
    machine_file.write_text(
        '[vm]\nid = 2\n[[device]]\nbdf = "00:02.0"\ntype = "e1000"\n'
        "bars = { 0 = 0xfebc0000, 1 = 0xc000 }\nrom = 0xfeb80000\ncommand = 0x2\n"
        '[[device]]\nbdf = "00:03.0"\ntype = "e1000"\nbars = { 0 = 0xfe000000, 1 = 0xc040 }\n'
    )
    result = invoke("lspci", "-v", "--machine", str(machine_file))
    assert result.exit_code == 0, result.output
    blocks = device_blocks(result.stdout)
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
    lines = render_lspci(machine.manager, 1, verbose=True).splitlines()
    assert "\tExpansion ROM at feb80000 [disabled by cmd] [size=64K]" in lines
    assert "\tRegion 0: Memory at <unassigned> (32-bit, non-prefetchable) [disabled] [size=128K]" in lines


def test_overlapping_bars_show_which_one_decodes() -> None:
    machine = parse_machine(
        '[vm]\nid = 1\n[[device]]\nbdf = "00:04.0"\ntype = "edu"\nbars = { 0 = 0xfea00000 }\ncommand = 0x2\n'
        '[[device]]\nbdf = "00:05.0"\ntype = "edu"\nbars = { 0 = 0xfea00000 }\ncommand = 0x2\n'
    )
    blocks = device_blocks(render_lspci(machine.manager, 1, verbose=True))
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
    lines = render_lspci(dm, 1, verbose=True).splitlines()
    assert "\tRegion 1: I/O ports at 10000 [not decoding] [size=64]" in lines


def test_empty_vm_lists_nothing() -> None:
    machine = parse_machine("[vm]\nid = 1\n")
    assert render_lspci(machine.manager, 1) == ""
    assert render_lspci(machine.manager, 1, verbose=True) == ""


@pytest.mark.parametrize(
    ("size", "text"), [(64, "64"), (16 << 10, "16K"), (1 << 20, "1M"), (64 << 30, "64G")]
)
def test_sizes_are_printed_like_lspci(size: int, text: str) -> None:
    assert format_size(size) == text


# ------------------------------------------------------------ sizing probe
@pytest.mark.req("R-BAR-003")
def test_sizing_probe_reads_back_inverted_size_with_type_bits() -> None:
    machine = demo()
    dm, vm = machine.manager, machine.vm_id
    found: dict[tuple[Bdf, int], BarProbe] = {}
    for bdf, _ in dm.tables(vm).config:
        found.update(((bdf, p.index), p) for p in probe_bars(dm, vm, bdf))
    expected = {(NIC, 0), (NIC, 1), (NIC, ROM), (NVME_SLOT, 0), (EDU_SLOT, 0), (GPU, 0), (GPU, 1), (GPU, 3)}
    assert set(found) == expected
    for (bdf, index), probe in found.items():
        dtype = dm.device_type(vm, bdf)
        if index == ROM:
            assert dtype.rom is not None
            assert probe.size == dtype.rom.size
            assert probe.readback == (~(dtype.rom.size - 1) & 0xFFFF_F800) | 0x1  # enable bit kept
            continue
        bar = dtype.bar(index)
        assert bar is not None
        width_mask = (1 << (64 if bar.kind.value == "mem64" else 32)) - 1
        assert probe.size == bar.size
        assert probe.readback == (~(bar.size - 1) & width_mask) | bar.type_bits()


@pytest.mark.req("R-SR-001", "R-DS-007")
def test_sizing_probe_restores_every_register_and_mapping() -> None:
    machine = demo()
    dm, vm = machine.manager, machine.vm_id
    before = dm.snapshot(vm)
    tables = dm.tables(vm)
    for bdf, _ in tables.config:
        probe_bars(dm, vm, bdf)
    assert dm.tables(vm) == tables
    assert dm.snapshot(vm) == before


@pytest.mark.req("R-SR-001")
@pytest.mark.parametrize("verbose", [False, True])
def test_rendering_does_not_change_the_vm(verbose: bool) -> None:
    machine = demo()
    dm, vm = machine.manager, machine.vm_id
    dm.io_write(vm, 0xCF8, 4, 0x8000_1000)  # a guest left 0xCF8 pointing somewhere
    dm.mmio_write(vm, 0xFEBF_0000, 4, 0x1234_5678)  # and device data behind a BAR
    before = dm.snapshot(vm)
    first = render_lspci(dm, vm, verbose=verbose)
    assert dm.snapshot(vm) == before
    assert render_lspci(dm, vm, verbose=verbose) == first


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
    listing = render_lspci(dm, 1, verbose=True)
    assert dm.snapshot(1) == before
    assert dm.resolve(1, "memory", 0xFEBC_0000) == (NIC, 0)
    assert "[shadowed by 00:02.0 BAR 0] [size=16K]" in listing


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


def test_help_lists_lspci() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "lspci" in result.stdout


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
