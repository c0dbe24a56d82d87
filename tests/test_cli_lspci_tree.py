"""`vpcid lspci -t` on the command line draws the bus tree as pciutils' lspci -t does (R-BRG-010)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from vpcid.conformance.cli import main

DUMP = Path(__file__).resolve().parent / "data" / "bridge-dumps" / "qemu-bridges.txt"
LSPCI = shutil.which("lspci")

pytestmark = pytest.mark.skipif(
    LSPCI is None, reason="pciutils' lspci is not installed (run .ci/install-debian.sh)"
)


@pytest.mark.req("R-BRG-010")
@pytest.mark.parametrize("args", [["-t"], ["-tv"], ["-t", "-n"], ["-t", "-s", "06:"]])
def test_lspci_t_matches_pciutils_on_a_bridged_dump(args: list[str]) -> None:
    assert LSPCI is not None
    theirs = subprocess.run([LSPCI, *args, "-F", str(DUMP)], capture_output=True, text=True, check=True)
    ours = CliRunner().invoke(main, ["lspci", *args, "-F", str(DUMP)])
    assert ours.exit_code == 0, ours.output
    assert ours.stdout.splitlines() == theirs.stdout.splitlines()
    assert "+-" in ours.stdout or "\\-" in ours.stdout  # a tree was drawn, not a listing
