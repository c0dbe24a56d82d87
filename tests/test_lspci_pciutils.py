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


def test_every_intended_difference_is_needed_by_some_dump(scratch: Path) -> None:
    needed = set().union(*(compare(dump, "-vv", scratch).applied for dump in shipped_dumps()))
    unused = {difference.name for difference in INTENDED_DIFFERENCES} - needed
    assert not unused, f"intended differences no shipped dump needs (remove them): {sorted(unused)}"
