"""``vpcid lspci`` on bridges against pciutils' ``lspci`` (3.9, Debian), line by line.

Two sources of bridges: tests/data/bridge-dumps/qemu-bridges.txt, a q35 machine with QEMU's PCI Express
root ports, its conventional pci-bridge and an x3130 switch, numbered and given windows the way firmware
does (tests/data/make_bridge_dumps.py); and random topologies made here, with bus numbers that nest,
overlap, run backwards or point nowhere, where pciutils' tree rules decide where each function hangs.
The tree (``-t``) is rendered through :func:`vpcid.conformance.lspci.render` with
``LspciOptions(tree=True)``; the listings go through the ``vpcid lspci`` command.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from vpcid.conformance.cli import main
from vpcid.conformance.dumps import DumpError, read_dumps
from vpcid.conformance.lspci import (
    IdFilter,
    LspciOptions,
    SlotFilter,
    dump_functions,
    machine_functions,
    render,
)
from vpcid.conformance.machine import load_machine
from vpcid.conformance.pciids import IdNames, PciIds
from vpcid.conformance.typefile import write_type_file
from vpcid.model.catalog import BRIDGES

REPO = Path(__file__).resolve().parents[1]
BRIDGE_DUMP = REPO / "tests" / "data" / "bridge-dumps" / "qemu-bridges.txt"
LSPCI = shutil.which("lspci")

pytestmark = pytest.mark.skipif(
    LSPCI is None, reason="pciutils' lspci is not installed (run .ci/install-debian.sh)"
)


def pciutils(*args: str) -> str:
    assert LSPCI is not None
    done = subprocess.run([LSPCI, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def vpcid_lspci(*args: str) -> str:
    result = CliRunner().invoke(main, ["lspci", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def tree(dump: Path, options: LspciOptions) -> str:
    """vpcid's ``-t`` drawing of a dump, names from the same pci.ids pciutils reads."""
    return render(dump_functions(dump), options, IdNames(PciIds.load(None), options.numeric))


def assert_same_lines(ours: str, theirs: str, what: str) -> None:
    for number, (mine, expected) in enumerate(zip(ours.splitlines(), theirs.splitlines(), strict=False), 1):
        assert mine == expected, f"{what}, line {number}"
    assert len(ours.splitlines()) == len(theirs.splitlines()), f"{what}: line counts"


# ------------------------------------------------------------------ QEMU's bridges, firmware-numbered


@pytest.mark.parametrize("mode", ["-vv", "-vvv -nn", "-v", "-n", "-xxxx", "-vv -s 04:"])
def test_bridge_headers_decode_as_pciutils_decodes_them(mode: str) -> None:
    """Type 1 headers: Bus (primary/secondary/subordinate/sec-latency), the three windows behind each bridge
    (open, closed, 16-bit I/O, 64-bit prefetchable), Secondary status, BridgeCtl; the ports' PCIe
    capabilities (Root Port, Upstream and Downstream Port with their slots)."""
    ours = vpcid_lspci(*mode.split(), "-F", str(BRIDGE_DUMP))
    theirs = pciutils(*mode.split(), "-F", str(BRIDGE_DUMP))
    assert_same_lines(ours, theirs, f"lspci {mode}")


def test_the_bridge_dump_shows_every_kind_of_window() -> None:
    listing = vpcid_lspci("-vv", "-F", str(BRIDGE_DUMP))
    for text in ("Bus: primary=00, secondary=03, subordinate=06, sec-latency=0",
                 "I/O behind bridge: 1000-1fff [size=4K] [16-bit]",
                 "Memory behind bridge: c0100000-c01fffff [size=1M] [32-bit]",
                 "Prefetchable memory behind bridge: [disabled] [64-bit]",
                 "BridgeCtl: Parity- SERR- NoISA- VGA- VGA16- MAbort- >Reset- FastB2B-",
                 "Express (v2) Root Port (Slot+)", "Express (v2) Upstream Port",
                 "Express (v2) Downstream Port (Slot+)"):  # fmt: skip
        assert text in listing, text


@pytest.mark.parametrize(
    ("options", "args"),
    [
        (LspciOptions(tree=True), ["-t"]),
        (LspciOptions(tree=True, verbose=1), ["-tv"]),
        (LspciOptions(tree=True, verbose=1, numeric=1), ["-tv", "-n"]),
        (LspciOptions(tree=True, verbose=1, numeric=2), ["-tv", "-nn"]),
        (LspciOptions(tree=True, slot=SlotFilter.parse("06:")), ["-t", "-s", "06:"]),
        (LspciOptions(tree=True, ids=IdFilter.parse("104c:")), ["-t", "-d", "104c:"]),
        (LspciOptions(tree=True, slot=SlotFilter.parse("7:")), ["-t", "-s", "7:"]),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_bus_tree_is_drawn_as_pciutils_draws_it(options: LspciOptions, args: list[str]) -> None:
    """Root ports, the PCI-to-PCI bridge and the switch nest as their bus numbers say; a filter keeps the
    branches leading to a match (the switch's ports for the edu at 06:00.0 behind them)."""
    assert_same_lines(tree(BRIDGE_DUMP, options), pciutils(*args, "-F", str(BRIDGE_DUMP)), " ".join(args))


def test_bus_tree_of_the_qemu_machine() -> None:
    assert tree(BRIDGE_DUMP, LspciOptions(tree=True)).splitlines() == [
        "-[0000:00]-+-00.0",
        "           +-04.0-[01]----00.0",
        "           +-05.0-[02]--+-03.0",
        "           |            \\-04.0",
        "           +-06.0-[03-06]----00.0-[04-06]--+-00.0-[05]--",
        "           |                               \\-01.0-[06]----00.0",
        "           +-1f.0",
        "           +-1f.2",
        "           \\-1f.3",
    ]


# ------------------------------------------------------------------ random topologies

BUS_CHOICES = (0, 0, 1, 2, 3, 4, 5, 0x10)


def random_function(rng: random.Random, bridge: bool) -> bytearray:
    """A 256-byte function: an endpoint, or a type 1 (or CardBus) bridge with bus numbers mostly small."""
    space = bytearray(256)
    space[0:4] = (0x1B36 | rng.choice((0x0001, 0x000C, 0x0010)) << 16).to_bytes(4, "little")
    if bridge:
        space[0x0A:0x0C] = bytes((rng.choice((0x04, 0x07)), 0x06))
        space[0x0E] = rng.choice((1, 1, 1, 2))
        space[0x18] = rng.choice((0, 1, 2, 3, rng.randrange(256)))
        space[0x19] = rng.choice((0, 1, 2, 3, 4, 5, rng.randrange(256)))
        space[0x1A] = rng.choice((0, 1, 2, 3, 4, 5, 6, rng.randrange(256)))
    else:
        space[0x0A:0x0C] = bytes((0x00, rng.choice((0x02, 0x01))))
    return space


def random_topology(seed: int) -> str:
    """lspci -xxx text of up to twelve functions on a handful of buses, half of them bridges."""
    rng = random.Random(seed)
    count = rng.randint(1, 12)
    addresses: set[tuple[int, int, int]] = set()
    while len(addresses) < count:
        addresses.add((rng.choice(BUS_CHOICES), rng.randrange(4), rng.randrange(2)))
    text = []
    for bus, device, function in sorted(addresses):
        space = random_function(rng, rng.random() < 0.5)
        text.append(f"{bus:02x}:{device:02x}.{function} Random function\n")
        text += [f"{row:02x}: " + " ".join(f"{b:02x}" for b in space[row : row + 16]) + "\n" for row in
                 range(0, 256, 16)]  # fmt: skip
        text.append("\n")
    return "".join(text)


TREE_MODES = (
    (LspciOptions(tree=True), ["-t"]),
    (LspciOptions(tree=True, verbose=1, numeric=1), ["-tv", "-n"]),
    (LspciOptions(tree=True, slot=SlotFilter.parse("1:")), ["-t", "-s", "1:"]),
    (LspciOptions(tree=True, ids=IdFilter.parse(":c")), ["-t", "-d", ":c"]),
)


@pytest.mark.parametrize("seed", range(40))
def test_random_topologies_are_drawn_as_pciutils_draws_them(seed: int, tmp_path: Path) -> None:
    """Nested, overlapping, backwards (secondary above subordinate) and unreachable ranges, CardBus bridges,
    buses no bridge claims: every function hangs where pciutils hangs it, every line drawn alike."""
    dump = tmp_path / f"topology-{seed}.txt"
    dump.write_text(random_topology(seed))
    for options, args in TREE_MODES:
        assert_same_lines(tree(dump, options), pciutils(*args, "-F", str(dump)), f"seed {seed} {args}")


def test_a_bridge_below_a_bridge_nests_in_the_drawing(tmp_path: Path) -> None:
    """Three levels: 00:01.0 [01-03] -> 01:00.0 [02-03] -> 02:00.0 [03] -> an endpoint at 03:00.0."""
    text = []
    for bus, secondary, subordinate in ((0, 1, 3), (1, 2, 3), (2, 3, 3)):
        space = bytearray(256)
        space[0:4], space[0x0A:0x0C], space[0x0E] = bytes.fromhex("361b0100"), b"\x04\x06", 1
        space[0x18:0x1B] = bytes((bus, secondary, subordinate))
        text.append((bus, 1 if bus == 0 else 0, space))
    endpoint = bytearray(256)
    endpoint[0:4] = bytes.fromhex("3412e811")
    text.append((3, 0, endpoint))
    dump = tmp_path / "nested.txt"
    rows = []
    for bus, device, space in text:
        rows.append(f"{bus:02x}:{device:02x}.0 f\n")
        rows += [f"{row:02x}: " + " ".join(f"{b:02x}" for b in space[row : row + 16]) + "\n" for row in
                 range(0, 256, 16)]  # fmt: skip
        rows.append("\n")
    dump.write_text("".join(rows))
    drawn = tree(dump, LspciOptions(tree=True))
    assert drawn == "-[0000:00]---01.0-[01-03]----00.0-[02-03]----00.0-[03]----00.0\n"
    assert drawn == pciutils("-t", "-F", str(dump))


# ------------------------------------------------------------------ a machine with bridges

MACHINE_WITH_BRIDGES = """\
types = ["bridges.json"]

[vm]
id = 1

[[device]]
bdf = "00:04.0"
type = "pcie-root-port"
writes = [[0x18, 4, 0x00020100], [0x20, 4, 0xfeb0c000]]
command = 0x7

[[device]]
bdf = "00:05.0"
type = "pci-bridge"
writes = [[0x18, 4, 0x00030300]]

[[device]]
bdf = "01:00.0"
type = "x3130-upstream"
writes = [[0x18, 4, 0x00020201], [0x20, 4, 0xc000c000]]
command = 0x2

[[device]]
bdf = "02:00.0"
type = "e1000"
bars = { 0 = 0xc0000000 }
command = 0x2

[[device]]
bdf = "03:01.0"
type = "edu"
bars = { 0 = 0xd0000000 }
command = 0x2
"""
"""A root port (buses 1-2) with a switch upstream port below it (bus 2) and an e1000 below that, whose
BAR the windows forward; a pci-bridge (bus 3) with edu below it, whose BAR its closed-at-zero window
does not forward. Plugged in BDF order, each bridge numbered before what is below it is plugged."""


@pytest.fixture
def bridged_machine(tmp_path: Path) -> Path:
    write_type_file(tmp_path / "bridges.json", BRIDGES.values())
    path = tmp_path / "machine.toml"
    path.write_text(MACHINE_WITH_BRIDGES)
    return path


@pytest.mark.req("R-BRG-003", "R-BRG-010")
def test_a_machine_with_bridges_is_drawn_from_its_routing(bridged_machine: Path, tmp_path: Path) -> None:
    """vpcid lspci -t of a machine: the tree the model's routing makes (DataManager.topology), drawn as
    pciutils draws the hex dump vpcid lists for the same machine."""
    machine = load_machine(bridged_machine)
    functions = machine_functions(machine.manager, machine.vm_id)
    drawn = render(functions, LspciOptions(tree=True), IdNames(None))
    assert drawn.splitlines() == [
        "-[0000:00]-+-04.0-[01-02]----00.0-[02]----00.0",
        "           \\-05.0-[03]----01.0",
    ]
    nodes = machine.manager.topology(machine.vm_id)
    below = {str(n.bdf): nodes[n.parent].type_name for n in nodes if n.parent is not None and n.bdf}
    assert below == {"01:00.0": "pcie-root-port", "02:00.0": "x3130-upstream", "03:01.0": "pci-bridge"}
    dump = tmp_path / "machine.txt"
    dump.write_text(vpcid_lspci("-xxx", "--machine", str(bridged_machine)))
    assert drawn == pciutils("-t", "-F", str(dump))


@pytest.mark.req("R-BRG-006")
def test_a_decoding_bar_no_bridge_forwards_is_marked(bridged_machine: Path) -> None:
    """The e1000's BAR sits in both windows on its path; edu's BAR decodes by its own registers, but the
    pci-bridge's memory window (0-0xfffff, as it powers on) does not hold it: [not forwarded]."""
    listing = vpcid_lspci("-v", "--machine", str(bridged_machine))
    e1000 = listing[listing.index("02:00.0") :]
    edu = listing[listing.index("03:01.0") :]
    assert "Memory at c0000000 (32-bit, non-prefetchable) [size=128K]" in e1000.splitlines()[3]
    assert "Memory at d0000000 (32-bit, non-prefetchable) [not forwarded] [size=1M]" in edu


@pytest.mark.req("R-BRG-001")
def test_a_bridge_dump_in_lspci_v_form_gives_its_two_bars_their_sizes(tmp_path: Path) -> None:
    """In ``lspci -v`` text regions carry no index: they are the non-zero BAR slots in order, and a
    bridge has two, its bus numbers and windows following (not BARs to count)."""
    (rows,) = [dump for dump in read_dumps(BRIDGE_DUMP) if str(dump.bdf) == "00:04.0"]
    text = "00:04.0 PCI bridge: Red Hat, Inc. QEMU PCIe Root port\n"
    text += "\tMemory at c0000000 (32-bit, non-prefetchable) [size=4K]\n"
    text += "".join(
        f"{row:02x}: " + " ".join(f"{b:02x}" for b in rows.config[row : row + 16]) + "\n"
        for row in range(0, 256, 16)
    )
    path = tmp_path / "bridge-v.txt"
    path.write_text(text + "\n")
    (dump,) = read_dumps(path)
    assert dump.bar_sizes == (4096, 0, 0, 0, 0, 0)
    assert dump.rom_size == 0
    bad = tmp_path / "bridge-region-2.txt"
    bad.write_text(text.replace("\tMemory at", "\tRegion 2: Memory at") + "\n")
    with pytest.raises(DumpError, match="a bridge's 0-1"):
        read_dumps(bad)
