"""The Cython speed benchmark runs and prints every table and ratio (no timing is judged)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from vpcid.adapters import cython as backend

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.skipif(
    not backend.available(), reason=f"Cython backend unavailable: {backend.UNAVAILABLE_REASON}"
)
def test_cython_speed_quick_prints_every_case_and_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("cython_speed", BENCHMARKS / "cython_speed.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        module.main(["--quick"])
    finally:
        del sys.modules[spec.name]
    out = capsys.readouterr().out
    for trace in ("random episodes", "access-heavy"):
        assert (
            len(
                re.findall(
                    rf"^{trace}\s+\d+\s+[\d,]+\s+[\d,]+ \(\s*[\d.]+x\)\s+[\d,]+ \(\s*[\d.]+x\)$", out, re.M
                )
            )
            == 2
        )
    for case in ("1 device, 4 KiB BAR", "1024 devices, 4 KiB BAR", "4096 devices, 4 KiB BAR, 1 touched"):
        assert len(re.findall(rf"^{case}\s+\d+\s+\d+\s+\d+$", out, re.M)) == 2, case
    ratio = r"reference [\d.]+  cython [\d.]+  batch [\d.]+$"
    for label in (
        "4096 devices / 1 device, targets on one device",
        "4096 devices / 1024 devices, targets on 1024 devices",
        "64 GiB BAR / 4 KiB BAR",
        "1024 devices touched / 1 device touched",
    ):
        assert len(re.findall(rf"^  {re.escape(label)}: {ratio}", out, re.M)) == 2, label
