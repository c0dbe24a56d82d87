"""Smoke run of benchmarks/bridge_cost.py: every row and ratio printed, no timing judged (R-BRG-004)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "bridge_cost.py"


@pytest.mark.req("R-BRG-004", "R-BRG-006")
def test_bridge_cost_quick_prints_every_row_and_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bridge_cost", BENCHMARK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        module.main(["--quick"])
        implementations = list(module.implementations())
    finally:
        del sys.modules[spec.name]
    out = capsys.readouterr().out
    for impl in implementations:
        for shape in ("flat", "four deep", "no bridges", "256 bridges"):
            for access in ("mmio_read", "config_read"):
                assert re.search(rf"^{impl}\s+{shape}\s+{access}\s+\d+$", out, re.M), (impl, shape, access)
        for access in ("mmio_read", "config_read"):
            for ratio in ("four deep / flat", "256 bridges / no bridges"):
                assert re.search(rf"^  {impl} {access}: {ratio} = [\d.]+$", out, re.M), (impl, ratio)
