"""How precisely certification blames a single planted bug: per mutant, the requirements it names.

Every mutant of ``vpcid.conformance.mutants`` breaks one rule and declares the
requirement(s) it breaks. This certifies each at the default budget and prints,
per mutant, how many requirements the report names, which ones, and whether the
requirement blamed most (by failing checks, then spec order) is one the mutant
breaks. Then the summary: kill rate, median number named, right-one-first rate
(issue 14's goals: median 1, right first in at least 95%). Not a timed test:
nothing is judged, the numbers are printed.

    python benchmarks/blame_precision.py [--budget N] [--seed N] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

from vpcid.conformance.certify import DEFAULT_BUDGET, DEFAULT_SEED, certify
from vpcid.conformance.mutants import MUTANTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--only", nargs="*", default=None, help="mutant names")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
    counts: list[int] = []
    right_first = killed = 0
    started = time.perf_counter()
    print(f"{'mutant':32} {'named':>5}  first        breaks -> named (most failing checks first)")
    for mutant in chosen:
        report = certify(mutant.adapter(), args.budget, args.seed)
        failing = [r for r in report.requirements if r.failures]
        ranked = sorted(failing, key=lambda r: -len(r.failures))  # stable: spec order breaks ties
        named = [r.rid for r in ranked]
        killed += not report.conformant
        counts.append(len(named))
        first_ok = bool(named) and named[0] in mutant.requirements
        right_first += first_ok
        mark = "yes" if first_ok else ("-" if not named else "NO")
        shown = ", ".join(named[:8]) + (f" (+{len(named) - 8})" if len(named) > 8 else "")
        print(f"{mutant.name:32} {len(named):5}  {mark:12} {', '.join(mutant.requirements)} -> {shown}")
    n = len(chosen)
    print()
    print(f"killed {killed}/{n}; requirements named per mutant: median {statistics.median(counts):g}, "
          f"max {max(counts)}; right one first {right_first}/{n} ({100 * right_first / n:.0f}%); "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
