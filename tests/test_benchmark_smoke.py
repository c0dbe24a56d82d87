"""Benchmarks run in their quick modes and print every table and ratio (no timing is judged)."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from vpcid.adapters import cython as backend

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@contextmanager
def benchmark(name: str) -> Iterator[ModuleType]:
    """``benchmarks/NAME.py`` loaded as a module, registered while it runs (its dataclasses look
    their module up)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.mark.skipif(
    not backend.available(), reason=f"Cython backend unavailable: {backend.UNAVAILABLE_REASON}"
)
def test_cython_speed_quick_prints_every_case_and_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    with benchmark("cython_speed") as module:
        module.main(["--quick"])
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


@pytest.mark.skipif(
    importlib.util.find_spec("xdist") is None, reason="pytest-xdist (the dev extra) is not installed"
)
def test_fuzz_rates_quick_prints_both_rows_and_the_speedup(capsys: pytest.CaptureFixture[str]) -> None:
    """One round of one-second campaigns on the model, one worker and two (no finding is allowed)."""
    with benchmark("fuzz_rates") as module:
        module.main(["--quick", "--workers", "2", "--seconds", "1"])
    out = capsys.readouterr().out
    assert "target: reference; 1 interleaved rounds of 1 s per campaign" in out
    for workers in (1, 2):
        row = rf"^\s+{workers}\s+[\d,]+\s+[\d,]+\s+[\d,]+\s+[\d.]+$"
        assert len(re.findall(row, out, re.M)) == 1, workers
    match = re.search(r"^speedup 2 workers / 1 worker: ([\d.]+)$", out, re.M)
    assert match is not None
    assert float(match.group(1)) > 0
