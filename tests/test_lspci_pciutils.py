"""``vpcid lspci -F DUMP`` against pciutils' ``lspci -F DUMP``, line by line, on every shipped dump.

The dumps under tests/data/dumps/ are QEMU device models' spaces and this
machine's sysfs functions. pciutils (Debian's ``pciutils``, installed by
.ci/install-debian.sh) reads the hex text; a dump that is not hex text (a
sysfs folder, a binary ``config``) is given to it as the ``-xxxx`` text
vpcid prints, which the ``-xxxx`` comparison shows to be pciutils' own.

Every line must be equal except where an :class:`IntendedDifference` below
says why not; each of them must be needed by some dump, as a waiver must.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner
from vpcid.conformance.cli import main
from vpcid.conformance.dumps import Dump, read_dumps

REPO = Path(__file__).resolve().parents[1]
DUMP_FOLDER = REPO / "tests" / "data" / "dumps"
LSPCI = shutil.which("lspci")
MODES = ("-vv", "-v -nn", "-n", "-xxxx")
"""The option sets compared: full detail, the -v summary with numbers, numbers only, the hex dump."""

pytestmark = pytest.mark.skipif(
    LSPCI is None, reason="pciutils' lspci is not installed (run .ci/install-debian.sh)"
)

Lines = list[str]


@dataclass(frozen=True)
class IntendedDifference:
    """A way vpcid's lines differ from pciutils' on purpose, with the reason, and how to line them up."""

    name: str
    reason: str
    align: Callable[[Lines, Lines, tuple[Dump, ...]], tuple[Lines, Lines]]
    """(pciutils' lines, vpcid's lines, the dump's functions) -> both with this difference taken out."""


_UPPER_HALF = re.compile(r"^\t(?:Region \d: )?Memory at <unassigned> \(32-bit, non-prefetchable\)$")
_REGION_64 = re.compile(r"^\t(?:Region \d: )?Memory at \S+ \(64-bit, ")
_SIZE = re.compile(r" \[size=\d+[KMGT]?\]$")


def _drop_upper_halves(pciutils: Lines, vpcid: Lines, dumps: tuple[Dump, ...]) -> tuple[Lines, Lines]:
    kept = [
        line
        for index, line in enumerate(pciutils)
        if not (_UPPER_HALF.match(line) and index and _REGION_64.match(pciutils[index - 1]))
    ]
    return kept, vpcid


def _drop_sizes(pciutils: Lines, vpcid: Lines, dumps: tuple[Dump, ...]) -> tuple[Lines, Lines]:
    if not any(dump.bar_sizes is not None or dump.rom_size is not None for dump in dumps):
        return pciutils, vpcid
    return pciutils, [_SIZE.sub("", line) for line in vpcid]


INTENDED_DIFFERENCES = (
    IntendedDifference(
        "64-bit BAR upper halves",
        "pciutils reads a dump without the kernel's resource flags, so the upper dword of a 64-bit BAR "
        "placed above 4 GiB shows as a region of its own ('Region N: Memory at <unassigned> (32-bit, "
        "non-prefetchable)'); vpcid knows it is part of BAR N-1 and shows that BAR once, as lspci does "
        "on a live system",
        _drop_upper_halves,
    ),
    IntendedDifference(
        "region sizes the dump states",
        "a dump may state its regions' sizes ([size=...] in its lspci -v text, a sysfs resource file); "
        "vpcid shows them, as lspci does on a live system, while pciutils' -F reads only the hex rows",
        _drop_sizes,
    ),
)


def shipped_dumps() -> list[Path]:
    if not DUMP_FOLDER.is_dir():
        return []
    return sorted(path for path in DUMP_FOLDER.iterdir() if path.suffix == ".txt" or path.is_dir())


def vpcid_lspci(*args: str) -> str:
    result = CliRunner().invoke(main, ["lspci", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def _is_hex_text(path: Path) -> bool:
    return path.is_file() and b"\x00" not in path.read_bytes()


@cache
def pciutils_input(dump: Path, scratch: Path) -> Path:
    """The dump as hex text pciutils reads: the file itself, or vpcid's -xxxx of it."""
    if _is_hex_text(dump):
        return dump
    text = scratch / f"{dump.name}.txt"
    text.write_text(vpcid_lspci("-xxxx", "-F", str(dump)))
    return text


def pciutils_lspci(mode: str, dump: Path) -> str:
    assert LSPCI is not None
    completed = subprocess.run(
        [LSPCI, *mode.split(), "-F", str(dump)], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


@dataclass(frozen=True)
class Comparison:
    pciutils: Lines
    vpcid: Lines
    applied: frozenset[str]


@cache
def compare(dump: Path, mode: str, scratch: Path) -> Comparison:
    """Both listings, with every intended difference taken out; which ones changed anything."""
    pciutils = pciutils_lspci(mode, pciutils_input(dump, scratch)).splitlines()
    vpcid = vpcid_lspci(*mode.split(), "-F", str(dump)).splitlines()
    functions = read_dumps(dump)
    applied = set()
    for difference in INTENDED_DIFFERENCES:
        aligned = difference.align(pciutils, vpcid, functions)
        if aligned != (pciutils, vpcid):
            applied.add(difference.name)
        pciutils, vpcid = aligned
    return Comparison(pciutils, vpcid, frozenset(applied))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pciutils-input")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dump", shipped_dumps(), ids=lambda path: path.name)
def test_vpcid_lspci_prints_what_pciutils_prints(dump: Path, mode: str, scratch: Path) -> None:
    comparison = compare(dump, mode, scratch)
    assert comparison.vpcid, f"vpcid lspci {mode} -F {dump.name} printed nothing"
    for number, (theirs, ours) in enumerate(zip(comparison.pciutils, comparison.vpcid, strict=False), 1):
        assert ours == theirs, f"{dump.name} lspci {mode}, line {number}"
    assert len(comparison.vpcid) == len(comparison.pciutils), f"{dump.name} lspci {mode}: line counts"


def test_the_dumps_cover_standard_and_extended_capabilities() -> None:
    dumps = shipped_dumps()
    assert len(dumps) >= 10, "tests/data/dumps/ should hold the QEMU models' and this machine's dumps"
    listing = "".join(vpcid_lspci("-vv", "-F", str(dump)) for dump in dumps)
    heads = set(re.findall(r"^\tCapabilities: \[[0-9a-f]+(?: v\d+)?\] (.*)$", listing, re.MULTILINE))
    for kind in ("Power Management", "MSI:", "MSI-X:", "Express", "Vendor Specific Information: VirtIO",
                 "SATA HBA", "Advanced Error Reporting", "Device Serial Number"):  # fmt: skip
        assert any(head.startswith(kind) for head in heads), kind


STANDARD_IDS = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
                0x11, 0x12, 0x13, 0x00, 0x15, 0x20)  # fmt: skip
"""Conventional capability IDs placed at random, two unknown ones too (PCI Express is always there).
Enhanced Allocation (0x14) is left out: pciutils stops on a malformed random entry ("Internal bug")."""
HYPERTRANSPORT_KINDS = (0x40, 0x80, 0x88, 0x90, 0x98, 0xA0, 0xA8, 0xB0, 0xB8, 0xC0, 0xC8, 0xF8)
"""HyperTransport capability types whose lines vpcid decodes (not the link registers of 0x00/0x20)."""
EXTENDED_IDS = (*range(0x01, 0x2A), 0x2E, 0x2F)


def synthetic_space(rng: random.Random, header_type: int, vendor: int) -> bytearray:
    """4096 random bytes made into a function: sane BARs, a capability chain, an extended chain."""
    space = bytearray(rng.getrandbits(8) for _ in range(4096))
    space[0:4] = (vendor | 0x1041 << 16).to_bytes(4, "little")
    space[0x06] |= 0x10  # capability list
    space[0x0A:0x0C] = bytes(
        (rng.choice((0x00, 0x04, 0x07, 0x80)), rng.choice((0x01, 0x02, 0x06, 0x0C, 0xFF)))
    )
    space[0x0E] = header_type | rng.getrandbits(1) << 7
    space[0x3D] = rng.randint(0, 4)  # a pin past D prints a byte that is not text
    for index in range(6):  # 64-bit BARs are the shipped dumps' business (an intended difference)
        kind = rng.choice(("none", "io", "memory"))
        value = {"none": 0, "io": rng.getrandbits(16) & ~3 | 1,
                 "memory": rng.getrandbits(32) & ~0xF | rng.choice((0, 8))}[kind]  # fmt: skip
        space[0x10 + 4 * index : 0x14 + 4 * index] = value.to_bytes(4, "little")
    where = 0x80 if header_type == 2 else 0x40
    space[0x14 if header_type == 2 else 0x34] = where
    chain = [*rng.sample(STANDARD_IDS, 5), 0x10]
    rng.shuffle(chain)
    for position, cap_id in enumerate(chain):
        following = where + 0x1C if position + 1 < len(chain) and where + 0x38 <= 0x100 else 0
        space[where : where + 2] = bytes((cap_id, following))
        if cap_id == 0x10:  # a version 2 PCI Express capability of a random port type
            space[where + 2] = rng.choice((0, 1, 4, 5, 6, 7, 8, 9, 10)) << 4 | 2
        elif cap_id == 0x08:
            space[where + 3] = rng.choice(HYPERTRANSPORT_KINDS)
        if not following:
            break
        where = following
    chosen = rng.sample(EXTENDED_IDS, 12)
    for position, cap_id in enumerate(chosen):
        where = 0x100 + 0x40 * position
        following = where + 0x40 if position + 1 < len(chosen) else 0
        header = cap_id | rng.getrandbits(4) << 16 | following << 20
        space[where : where + 4] = header.to_bytes(4, "little")
        if cap_id in (0x15, 0x24):  # resizable BAR: one or two entries, not a random count
            space[where + 8] = space[where + 8] & 0x1F | rng.randint(1, 2) << 5
    return space


def synthetic_dump(seed: int) -> str:
    """lspci -xxxx text of four random functions: an endpoint, a bridge, a CardBus bridge, a virtio device."""
    rng = random.Random(seed)
    text = []
    for device, (header_type, vendor) in enumerate(((0, 0x8086), (1, 0x8086), (2, 0x8086), (0, 0x1AF4)), 1):
        space = synthetic_space(rng, header_type, vendor)
        text.append(f"00:{device:02x}.0 Synthetic function\n")
        text += [f"{row:02x}: " + " ".join(f"{b:02x}" for b in space[row : row + 16]) + "\n" for row in
                 range(0, 4096, 16)]  # fmt: skip
        text.append("\n")
    return "".join(text)


@pytest.mark.parametrize("mode", ["-vv", "-vvv -nn", "-v"])
@pytest.mark.parametrize("seed", range(8))
def test_random_capability_contents_decode_as_pciutils_decodes_them(
    seed: int, mode: str, tmp_path: Path
) -> None:
    """Every decoder, bridges and CardBus included, on register values no shipped dump has."""
    dump = tmp_path / f"synthetic-{seed}.txt"
    dump.write_text(synthetic_dump(seed))
    comparison = compare(dump, mode, tmp_path)
    assert comparison.applied == frozenset()
    for number, (theirs, ours) in enumerate(zip(comparison.pciutils, comparison.vpcid, strict=False), 1):
        assert ours == theirs, f"seed {seed} lspci {mode}, line {number}"
    assert len(comparison.vpcid) == len(comparison.pciutils)


def enhanced_allocation_dump() -> str:
    """A device and a bridge whose only capability is Enhanced Allocation, with 32- and 64-bit entries."""
    text = []
    for device, header_type in ((1, 0), (2, 1)):
        space = bytearray(256)
        space[0:4] = (0x8086 | 0x1234 << 16).to_bytes(4, "little")
        space[0x06], space[0x0A:0x0C], space[0x0E] = (
            0x10,
            bytes((0x00, 0x06 if header_type else 0x02)),
            header_type,
        )
        space[0x34] = 0x40
        where = 0x40 + (8 if header_type else 4)
        space[0x40:0x44] = bytes((0x14, 0, 3, 0))  # three entries
        space[0x44:0x46] = bytes((1, 4))  # a bridge's fixed secondary and subordinate bus
        entries = (
            (0x8000_0002, (0xFE00_0000, 0x000F_FFFC)),  # BAR 0, 32-bit
            (0xC000_0103 | 1 << 4, (0x0000_0002, 0x0003_FFFC, 0x80)),  # BAR 1, 64-bit base
            (0x0000_FF04 | 8 << 4, (0x0000_0002, 0x0000_0FFE, 0x1, 0x2)),  # ROM, 64-bit base and offset
        )
        for header, words in entries:
            space[where : where + 4] = (header & ~7 | len(words)).to_bytes(4, "little")
            for k, word in enumerate(words):
                space[where + 4 + 4 * k : where + 8 + 4 * k] = word.to_bytes(4, "little")
            where += 4 + 4 * len(words)
        text.append(f"00:{device:02x}.0 Enhanced Allocation\n")
        text += [f"{row:02x}: " + " ".join(f"{b:02x}" for b in space[row : row + 16]) + "\n" for row in
                 range(0, 256, 16)]  # fmt: skip
        text.append("\n")
    return "".join(text)


@pytest.mark.parametrize("mode", ["-vv", "-v"])
def test_enhanced_allocation_decodes_as_pciutils_decodes_it(mode: str, tmp_path: Path) -> None:
    dump = tmp_path / "enhanced-allocation.txt"
    dump.write_text(enhanced_allocation_dump())
    comparison = compare(dump, mode, tmp_path)
    assert any("Enhanced Allocation (EA): NumEntries=3" in line for line in comparison.vpcid)
    assert comparison.vpcid == comparison.pciutils


def test_every_intended_difference_is_needed_by_some_dump(scratch: Path) -> None:
    needed = set().union(*(compare(dump, "-vv", scratch).applied for dump in shipped_dumps()))
    unused = {difference.name for difference in INTENDED_DIFFERENCES} - needed
    assert not unused, f"intended differences no shipped dump needs (remove them): {sorted(unused)}"
