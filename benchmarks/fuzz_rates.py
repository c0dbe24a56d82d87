"""Fuzzing throughput with one worker and with N, side by side in one run, and the speedup.

Each round runs ``vpcid fuzz``'s campaign for the same duration in one
process and then on N pytest-xdist workers (the example database off, so
every worker generates), and records operations per second while fuzzing:
each worker's operations over its own campaign time, added up (process and
pytest start-up left out; the wall time of each run is printed too). The
medians of interleaved rounds and their ratio are printed. No thresholds:
the machine is shared and noisy, and N cores give at most N times.

    python benchmarks/fuzz_rates.py [--quick] [--workers N] [--seconds S] [--target TYPE_OR_ADAPTER]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from vpcid.conformance.fuzz import FuzzReport, RunOptions, run_fuzz


def campaign(target: str, workers: int, seconds: float, seed: int) -> tuple[FuzzReport, float]:
    """One campaign; its report and its wall time (start-up included)."""
    options = RunOptions(target, examples=None, duration=seconds, seed=seed, database=None)
    started = time.perf_counter()
    report = run_fuzz(options, workers)
    assert report.finding is None, f"{target} must not diverge from the model: {report.finding}"
    return report, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one short round (smoke test)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="N (default: the cores)")
    parser.add_argument("--seconds", type=float, default=None, help="fuzzing time per campaign")
    parser.add_argument("--target", default="reference", help="TYPE_OR_ADAPTER, as vpcid fuzz takes it")
    args = parser.parse_args(argv)
    rounds, seconds = (1, 3.0) if args.quick else (3, 20.0)
    if args.seconds is not None:
        seconds = args.seconds
    load = os.getloadavg()[0]
    one: list[float] = []
    many: list[float] = []
    walls: dict[int, list[float]] = {1: [], args.workers: []}
    for round_index in range(rounds):
        for workers, rates in ((1, one), (args.workers, many)):
            report, wall = campaign(args.target, workers, seconds, round_index)
            rates.append(report.rate)
            walls[workers].append(wall)
    single, multiple = statistics.median(one), statistics.median(many)
    print(f"target: {args.target}; {rounds} interleaved rounds of {seconds:g} s per campaign")
    print(f"cores: {os.cpu_count()}; load average before the run: {load:.2f} (other work shares the cores)")
    print(f"{'workers':>8} {'ops/s (median)':>15} {'min':>10} {'max':>10} {'wall s':>8}")
    for workers, rates in ((1, one), (args.workers, many)):
        wall = statistics.median(walls[workers])
        middle = statistics.median(rates)
        print(f"{workers:>8} {middle:>15,.0f} {min(rates):>10,.0f} {max(rates):>10,.0f} {wall:>8.1f}")
    print(f"speedup {args.workers} workers / 1 worker: {multiple / single:.2f}")


if __name__ == "__main__":
    main()
