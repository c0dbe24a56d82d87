"""QEMU through qtest: request rates, the adapter's rate over the engine's stretches, e1000 certification.

Run as ``python benchmarks/qemu_rates.py [--quick] [--skip-certify] [--baseline COMMIT]``.
Everything is measured in one run, side by side, on a paused q35 machine
with an e1000 at 00:04.0 (the machine ``--adapter qemu:e1000`` presents):

* **floors**: qtest requests per second against a running QEMU, synchronous
  (one request, wait for its reply, the next) and pipelined
  (:data:`~vpcid.adapters.qemu.qtest.PIPELINE_DEPTH` in flight), over a mix
  of ECAM configuration reads and writes and 0xCF8 reads;
* **adapter**: operations per second the QEMU adapter reaches over the
  random engine's access stretches (what the engine hands
  ``execute_many`` between two ``init``/``save``/``restore``), next to the
  same operations through ``execute`` one at a time, and as a fraction of
  the pipelined floor;
* **certification**: ``vpcid certify --adapter qemu:e1000 --waivers q35.toml``
  timed for the code at ``--baseline`` (unpacked with ``git archive`` into a
  temporary folder and put first on ``PYTHONPATH``) and for this checkout,
  one after the other; the two reports' verdicts, checks and findings are
  compared.

Rounds are interleaved and medians reported, because the machine is shared
(the load average is printed). Ratios are printed, never judged.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vpcid.adapters.qemu.adapter import QemuAdapter
from vpcid.adapters.qemu.discover import DeviceSpec, prepare
from vpcid.adapters.qemu.qtest import PIPELINE_DEPTH, QemuProcess
from vpcid.conformance.engine import RandomOps, model_for, touches_opaque
from vpcid.conformance.trace import Op, OpKind

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "1db799e"
"""The commit before the QEMU adapter pipelined qtest requests and used snapshot machines."""
DEVICE = "e1000"
ACCESSES = frozenset({
    OpKind.CONFIG_READ, OpKind.CONFIG_WRITE, OpKind.IO_READ, OpKind.IO_WRITE,
    OpKind.MMIO_READ, OpKind.MMIO_WRITE,
})  # fmt: skip
"""What a stretch is made of; ``init``, ``save`` and ``restore`` end one."""
CLI = "import sys; from vpcid.conformance.cli import main; sys.argv[0] = 'vpcid'; sys.exit(main())"


def request_mix(count: int) -> list[str]:
    """Configuration reads across the e1000's header, interrupt-line writes and 0xCF8 reads (ECAM)."""
    function = 0xB000_0000 + ((4 << 3) << 12)
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 3:
            out.append(f"writeb {function + 0x3C:#x} {i & 0xFF:#x}")
        elif kind == 2:
            out.append("inl 0xcf8")
        else:
            out.append(f"readl {function + (i * 4) % 0x40:#x}")
    return out


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def floors(requests: Sequence[str], rounds: int) -> dict[str, float]:
    """Median requests/s, synchronous and pipelined, against one paused QEMU."""
    qemu = QemuProcess.spawn(DeviceSpec.parse(DEVICE).machine_args())
    try:
        prepare(qemu)
        samples: dict[str, list[float]] = {"sync": [], "pipelined": []}
        for _ in range(rounds):
            samples["sync"].append(len(requests) / timed(lambda: [qemu.qtest([r]) for r in requests]))
            samples["pipelined"].append(len(requests) / timed(lambda: qemu.qtest(requests)))
    finally:
        qemu.kill()
    return {k: statistics.median(v) for k, v in samples.items()}


def stretches(adapter: QemuAdapter, episodes: int, seed: int) -> list[list[Op]]:
    """The random engine's episodes cut as the engine hands them over: runs of accesses the model does
    not withhold, between the operations that end one (init, save, restore), which come as runs too."""
    model = model_for(adapter.info)
    out: list[list[Op]] = []
    for ops in RandomOps(adapter.info, seed).episodes(episodes * 120):
        for op in ops:
            if touches_opaque(model, op):
                continue
            model.execute(op)
            if out and (op.kind in ACCESSES) == (out[-1][0].kind in ACCESSES):
                out[-1].append(op)
            else:
                out.append([op])
    return out


def qtest_requests(adapter: QemuAdapter, run: list[Op]) -> list[str]:
    """The qtest requests a stretch becomes: the accesses whose arguments pass the model's checks
    (the adapter rejects the others, as the model does, without QEMU)."""
    model = model_for(adapter.info)
    return [adapter.access_request(op) for op in run if model.execute(op).error is None]


def adapter_rates(adapter: QemuAdapter, runs: list[list[Op]], rounds: int) -> dict[str, float]:
    """Over the same stretches, on the same machine states: accesses/s through ``execute_many`` and
    ``execute``, and requests/s of the stretches' own qtest requests sent raw, pipelined and one at
    a time (the floors for exactly this work: QEMU remaps memory on every BAR or command write)."""
    requests = {id(run): qtest_requests(adapter, run) for run in runs if run[0].kind in ACCESSES}
    accesses = sum(len(run) for run in runs if run[0].kind in ACCESSES)
    sent = sum(len(r) for r in requests.values())

    def pipelined_raw(run: list[Op]) -> float:
        qemu = adapter.qemu
        assert qemu is not None
        return timed(lambda: qemu.qtest(requests[id(run)]))

    def sync_raw(run: list[Op]) -> float:
        qemu = adapter.qemu
        assert qemu is not None
        return timed(lambda: [qemu.qtest([r]) for r in requests[id(run)]])

    measures: dict[str, tuple[Callable[[list[Op]], float], int]] = {
        "execute_many": (lambda run: timed(lambda: adapter.execute_many(run)), accesses),
        "execute": (lambda run: timed(lambda: [adapter.execute(op) for op in run]), accesses),
        "raw pipelined": (pipelined_raw, sent),
        "raw sync": (sync_raw, sent),
    }
    samples: dict[str, list[float]] = {k: [] for k in measures}
    for _ in range(rounds):
        for name, (measure, count) in measures.items():
            spent = 0.0
            for run in runs:
                if run[0].kind in ACCESSES:
                    spent += measure(run)
                else:
                    for op in run:  # init, save, restore: not what is measured
                        adapter.execute(op)
            samples[name].append(count / spent)
    return {k: statistics.median(v) for k, v in samples.items()} | {"accesses": accesses, "requests": sent}


def certify_run(label: str, pythonpath: str | None, tree: Path, folder: Path) -> tuple[float, dict[str, Any]]:
    """Seconds for one ``vpcid certify --adapter qemu:e1000`` with the q35 waivers, and its JSON report."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    else:
        env.pop("PYTHONPATH", None)
    report = folder / f"{label}.json"
    waivers = tree / "adapters" / "vpcid" / "adapters" / "qemu" / "waivers" / "q35.toml"
    command = [
        sys.executable, "-c", CLI, "certify", "--adapter", f"qemu:{DEVICE}", "--waivers", str(waivers),
        "--json", str(report), "--counterexamples", str(folder / f"{label}-counterexamples"),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if not report.exists():
        raise SystemExit(
            f"{label} certification wrote no report:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return seconds, json.loads(report.read_text(encoding="utf-8"))


def differences(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Where two reports disagree: per requirement (verdict, checks, failing checks and their traces),
    and in the engines' counts."""
    findings = []
    rows = {r["id"]: r for r in old["requirements"]}
    for row in new["requirements"]:
        was = rows.get(row["id"])
        if was is None:
            findings.append(f"{row['id']}: only in the new report")
            continue
        for key in ("verdict", "checks"):
            if was[key] != row[key]:
                findings.append(f"{row['id']}: {key} {was[key]} -> {row[key]}")
        if [[f["check"], f["trace"]] for f in was["failures"]] != [
            [f["check"], f["trace"]] for f in row["failures"]
        ]:
            findings.append(f"{row['id']}: failures differ")
    engines = []
    counts = [{name: dict(engine) for name, engine in report["engines"].items()} for report in (old, new)]
    stateful = [engine.get("stateful", {}).pop("operations", None) for engine in counts]
    if stateful[0] != stateful[1]:
        engines.append(
            f"stateful engine operations {stateful[0]} -> {stateful[1]}: Hypothesis draws constants"
        )
        engines.append("  from the project's source files, so its examples change whenever the source does")
    if counts[0] != counts[1]:
        engines.append(f"engines: {counts[0]} -> {counts[1]}")
    return findings, engines


def certification(baseline: str) -> None:
    with tempfile.TemporaryDirectory(prefix="vpcid-qemu-rates-") as scratch:
        folder = Path(scratch)
        old_tree = folder / "baseline"
        old_tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", baseline], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive.stdout, check=True)
        old_path = os.pathsep.join(str(old_tree / part) for part in ("adapters", "conformance", "model"))
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        old_seconds, old_report = certify_run("baseline", old_path, old_tree, folder)
        new_seconds, new_report = certify_run("current", None, ROOT, folder)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"# vpcid certify --adapter qemu:{DEVICE} --waivers q35.toml (default budget), wall seconds")
    print(f"  baseline {baseline:<12} {old_seconds:8.1f}   (report: {old_report['duration_s']:.1f} s)")
    print(f"  this checkout         {new_seconds:8.1f}   (report: {new_report['duration_s']:.1f} s)")
    print(f"  speed-up              {old_seconds / new_seconds:8.2f}x")
    findings, engines = differences(old_report, new_report)
    print("  reports: " + ("same verdicts, checks and findings" if not findings else "differ:"))
    for line in findings + engines:
        print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, episodes and rounds")
    parser.add_argument("--skip-certify", action="store_true", help="rates only, no certification timing")
    parser.add_argument("--baseline", default=BASELINE, help="commit timed as the old code")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    count, episodes, rounds = (4_000, 20, 1) if args.quick else (20_000, 100, 3)

    rates = floors(request_mix(count), rounds)
    print(f"# qtest requests/s against a paused QEMU ({count} requests, median of {rounds})")
    print(f"  synchronous (1 in flight)      {rates['sync']:12,.0f}   {1e6 / rates['sync']:7.1f} us/request")
    print(f"  pipelined ({PIPELINE_DEPTH} in flight)     {rates['pipelined']:12,.0f}   "
          f"{1e6 / rates['pipelined']:7.1f} us/request")  # fmt: skip
    print(f"  pipelined / synchronous        {rates['pipelined'] / rates['sync']:12.1f}x")

    adapter = QemuAdapter(DeviceSpec.parse(DEVICE))
    try:
        runs = stretches(adapter, episodes, args.seed)
        ops = adapter_rates(adapter, runs, rounds)
    finally:
        adapter.close()
    count_runs = sum(1 for r in runs if r[0].kind in ACCESSES)
    print(f"# QEMU adapter over the random engine's access stretches (seed {args.seed}: "
          f"{ops['accesses']:.0f} accesses in {count_runs} stretches; {ops['requests']:.0f} reach QEMU, "
          f"the rest fail the argument checks; median of {rounds})")  # fmt: skip
    print(f"  execute_many (pipelined)       {ops['execute_many']:12,.0f} operations/s")
    print(f"  execute (one at a time)        {ops['execute']:12,.0f} operations/s")
    print(
        f"  their requests, raw pipelined  {ops['raw pipelined']:12,.0f} requests/s   (floor for this work)"
    )
    print(f"  their requests, raw one by one {ops['raw sync']:12,.0f} requests/s")
    print(f"  execute_many / execute                        {ops['execute_many'] / ops['execute']:6.2f}x")
    print(
        f"  execute_many / raw pipelined (same requests)  {ops['execute_many'] / ops['raw pipelined']:6.2f}"
    )
    print(f"  execute_many / pipelined floor (mix above)    {ops['execute_many'] / rates['pipelined']:6.2f}")
    print(f"  execute / raw one by one (same requests)      {ops['execute'] / ops['raw sync']:6.2f}")

    if not args.skip_certify:
        certification(args.baseline)


if __name__ == "__main__":
    main()
