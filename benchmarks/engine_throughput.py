"""Throughput of the differential engines against the reference adapter, side by side in one run.

Prints operations per second of the fast seeded engine (generation, execution
on implementation and model, comparison) and of the stateful Hypothesis
engine, each the median of interleaved rounds, and their ratio. No
thresholds: the machine is shared and noisy.

    python benchmarks/engine_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.engine import run_random
from vpcid.conformance.stateful import run_stateful


def fast_engine(budget: int, seed: int) -> float:
    started = time.perf_counter()
    executed, findings = run_random(ModelAdapter(), budget, seed)
    assert not findings, "the reference must not diverge from itself"
    return executed / (time.perf_counter() - started)


def stateful_engine(examples: int, seed: int) -> float:
    started = time.perf_counter()
    steps, findings = run_stateful(ModelAdapter(), examples, seed)
    assert not findings, "the reference must not diverge from itself"
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    args = parser.parse_args()
    rounds, budget, examples = (2, 5_000, 10) if args.quick else (7, 100_000, 100)
    fast: list[float] = []
    stateful: list[float] = []
    gc.disable()
    try:
        for round_index in range(rounds):
            fast.append(fast_engine(budget, round_index))
            stateful.append(stateful_engine(examples, round_index))
    finally:
        gc.enable()
    fast_rate, stateful_rate = statistics.median(fast), statistics.median(stateful)
    print(f"rounds: {rounds} (interleaved), fast budget {budget} ops, stateful {examples} examples")
    print(f"fast engine:      {fast_rate:10,.0f} ops/s   (min {min(fast):,.0f}, max {max(fast):,.0f})")
    low, high = min(stateful), max(stateful)
    print(f"stateful engine:  {stateful_rate:10,.0f} ops/s   (min {low:,.0f}, max {high:,.0f})")
    print(f"ratio fast / stateful: {fast_rate / stateful_rate:.2f}")


if __name__ == "__main__":
    main()
