"""Operations per second of the reference and the Cython backend, on the same traces, in one run.

Run as ``python benchmarks/cython_speed.py [--quick]``. Every trace is
generated once, up front, and then executed three ways:

* ``reference``: ``ModelAdapter.execute`` per operation (the model);
* ``cython``: ``CythonAdapter.execute`` per operation (compiled, called from Python);
* ``batch``: ``CythonAdapter.run_batch`` on the trace encoded once (the whole
  trace runs in compiled code; encoding is timed separately and not included).

The two traces below are timed twice: in steady state (each sample after one
untimed run of the same trace, as a fuzzer calling the batch in a loop sees
it) and cold (a batch of a few milliseconds then pays for refilling the
caches the other runners evicted).

Traces:

* ``random episodes``: the fast engine's generator (``RandomOps``), so every
  operation kind, including save/restore/snapshot, hot-plug and tables;
* ``access-heavy``: one VM of the suite's devices, programmed and decoding,
  then configuration, 0xCF8/0xCFC, ECAM, I/O BAR and MMIO reads and writes;
* ``flatness``: the access mix of ``benchmarks/access_cost.py`` (configuration
  read, CAM pair, I/O BAR read, MMIO read and write over 1024 targets spread
  over every device) on 1, 1024 and 4096 devices per VM and on 4 KiB and
  64 GiB BARs, plus 4096 devices with all targets on one of them. Only the
  accesses are timed; the VM is built before. Two kinds of ratio are
  printed. Those that change only the VM's size keep the accesses the same:
  4096 devices against 1 with every target on one device, 4096 devices
  against 1024 with the targets on the same 1024 devices, and the BAR size.
  The last ratio, 1024 devices touched against 1, changes the working set
  instead (about eight cache lines per touched device: table slots, the
  instance's header and configuration bytes, two windows, a BAR page), which
  no lookup structure can make free. Printed twice: warm (each sample after
  one untimed pass over the same accesses: the steady-state cost per access)
  and cold (without it: the other runners, sampled in between, evict the
  caches, so a larger working set pays its refill).

Samples are interleaved round-robin and the median is reported, because the
machine is shared. Ratios are printed, never judged: no thresholds.

``--profile`` adds where the batch's time goes on the random episodes, per
operation kind (``run_batch(..., profile=True)``, which reads a clock around
every operation and so runs a little slower).
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vpcid.adapters.base import AdapterInfo
from vpcid.adapters.cython import UNAVAILABLE_REASON, CythonAdapter
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.engine import SYSTEM_LAYOUT, RandomOps
from vpcid.conformance.trace import Op, OpKind
from vpcid.model import Bdf, DeviceType
from vpcid.model.devicetype import BarKind, BarSpec

KIB, GIB = 1 << 10, 1 << 30
VM = 1
CF8, CFC = 0xCF8, 0xCFC
ECAM = 0xB000_0000
TARGETS = 1024
"""Distinct access targets per flatness trace, spread over every device (as in access_cost.py)."""
DEVICES_PER_BUS = 32
MEMORY_BASE = 1 << 36
IO_BASE, IO_BAR_SIZE = 0x1000, 4


@dataclass(frozen=True)
class Trace:
    """A named trace: a setup run untimed, then the timed body."""

    name: str
    setup: tuple[Op, ...]
    body: tuple[Op, ...]


# --------------------------------------------------------------------------- traces


def random_episodes(budget: int, seed: int) -> Trace:
    """The fast engine's episodes: every operation kind, from ``init`` each time."""
    ops = [op for episode in RandomOps(AdapterInfo("bench"), seed).episodes(budget) for op in episode]
    return Trace("random episodes", (), tuple(ops))


def _cfg(kind: OpKind, bdf: Bdf, offset: int, width: int, value: int = 0) -> Op:
    return Op(kind, vm=VM, bdf=bdf, address=offset, width=width, value=value)


def access_heavy(count: int, seed: int) -> Trace:
    """The suite's four devices, programmed and decoding, then a mix of guest accesses."""
    rng = random.Random(seed)
    setup = [Op(OpKind.INIT), Op(OpKind.CREATE_VM, vm=VM, ecam_base=ECAM)]
    windows: list[tuple[int, int]] = []
    io_windows: list[tuple[int, int]] = []
    next_mem, next_io = 0xE000_0000, 0xC000
    for bdf, name in SYSTEM_LAYOUT:
        dtype = SUITE_TYPES[name]
        setup.append(Op(OpKind.PLUG, vm=VM, bdf=bdf, name=name))
        for index, bar in enumerate(dtype.bars):
            if bar is None:
                continue
            if bar.kind is BarKind.IO:
                base = next_io = (next_io + bar.size - 1) & ~(bar.size - 1)
                next_io += bar.size
                io_windows.append((base, bar.size))
            else:
                base = (next_mem + bar.size - 1) & ~(bar.size - 1)
                if base + bar.size > 1 << 32 and bar.kind is BarKind.MEM64:
                    base = (1 << 40) + len(windows) * (1 << 37)
                else:
                    next_mem = base + bar.size
                windows.append((base, bar.size))
            setup.append(_cfg(OpKind.CONFIG_WRITE, bdf, 0x10 + 4 * index, 4, base & 0xFFFF_FFFF))
            if bar.kind is BarKind.MEM64:
                setup.append(_cfg(OpKind.CONFIG_WRITE, bdf, 0x14 + 4 * index, 4, base >> 32))
        setup.append(_cfg(OpKind.CONFIG_WRITE, bdf, 0x04, 2, 0x7))
    bdfs = [bdf for bdf, _ in SYSTEM_LAYOUT]
    body: list[Op] = []
    while len(body) < count:
        bdf = rng.choice(bdfs)
        pick = rng.random()
        if pick < 0.2:
            body.append(_cfg(OpKind.CONFIG_READ, bdf, rng.randrange(0, 0x100, 4), 4))
        elif pick < 0.3:
            body.append(
                _cfg(
                    OpKind.CONFIG_WRITE,
                    bdf,
                    rng.choice((0x0C, 0x3C, 0x44, 0x60, 0x64)),
                    1,
                    rng.getrandbits(8),
                )
            )
        elif pick < 0.4:
            register = rng.randrange(0, 0x40, 4)
            body.append(
                Op(
                    OpKind.IO_WRITE,
                    vm=VM,
                    address=CF8,
                    width=4,
                    value=0x8000_0000 | bdf.packed << 8 | register,
                )
            )
            body.append(Op(OpKind.IO_READ, vm=VM, address=CFC, width=4))
        elif pick < 0.5:
            address = ECAM + (bdf.packed << 12) + rng.randrange(0, 0x100, 4)
            body.append(Op(OpKind.MMIO_READ, vm=VM, address=address, width=4))
        elif pick < 0.6:
            base, size = rng.choice(io_windows)
            body.append(Op(OpKind.IO_READ, vm=VM, address=base + rng.randrange(0, size, 4), width=4))
        elif pick < 0.65:
            base, size = rng.choice(io_windows)
            body.append(
                Op(
                    OpKind.IO_WRITE,
                    vm=VM,
                    address=base + rng.randrange(0, size, 4),
                    width=4,
                    value=rng.getrandbits(32),
                )
            )
        else:
            base, size = rng.choice(windows)
            width = rng.choice((1, 2, 4, 8))
            address = base + rng.randrange(0, min(size, 1 << 20), width)
            if rng.random() < 0.5:
                body.append(Op(OpKind.MMIO_READ, vm=VM, address=address, width=width))
            else:
                body.append(
                    Op(
                        OpKind.MMIO_WRITE,
                        vm=VM,
                        address=address,
                        width=width,
                        value=rng.getrandbits(8 * width),
                    )
                )
    return Trace("access-heavy", tuple(setup), tuple(body))


def bench_type(bar_size: int) -> DeviceType:
    """A device with a 64-bit memory BAR of ``bar_size`` (BAR0) and a 4-port I/O BAR (BAR2)."""
    return DeviceType(
        name=f"speed-{bar_size:#x}", vendor_id=0x1234, device_id=0xBE01, class_code=0x00FF00,
        bars=(BarSpec(BarKind.MEM64, bar_size), None, BarSpec(BarKind.IO, IO_BAR_SIZE)),
    )  # fmt: skip


def flatness(
    devices: int, bar_size: int, passes: int, seed: int, spread: bool = True
) -> tuple[Trace, DeviceType]:
    """``devices`` devices with ``bar_size`` BARs, then the access_cost.py mix over 1024 targets.

    ``spread``: the targets are spread over every device (as in access_cost.py);
    otherwise all of them are on the first device, so that a VM of many
    devices is accessed exactly as a VM of one: only the tables' size differs.
    """
    dtype = bench_type(bar_size)
    rng = random.Random(seed)
    bdfs = [Bdf(i // DEVICES_PER_BUS // 8, i // 8 % DEVICES_PER_BUS, i % 8) for i in range(devices)]
    setup = [Op(OpKind.INIT), Op(OpKind.CREATE_VM, vm=VM, ecam_base=ECAM)]
    memory_bases, io_bases = [], []
    for i, bdf in enumerate(bdfs):
        memory_base, io_base = MEMORY_BASE + i * bar_size, IO_BASE + i * IO_BAR_SIZE
        setup += [
            Op(OpKind.PLUG, vm=VM, bdf=bdf, name=dtype.name),
            _cfg(OpKind.CONFIG_WRITE, bdf, 0x10, 4, memory_base & 0xFFFF_FFFF),
            _cfg(OpKind.CONFIG_WRITE, bdf, 0x14, 4, memory_base >> 32),
            _cfg(OpKind.CONFIG_WRITE, bdf, 0x18, 4, io_base),
            _cfg(OpKind.CONFIG_WRITE, bdf, 0x04, 2, 0x3),
        ]
        memory_bases.append(memory_base)
        io_bases.append(io_base)
    touched = devices if spread else 1
    slots = max(1, TARGETS // touched)
    stride = bar_size // slots
    order = list(range(TARGETS))
    rng.shuffle(order)
    one_pass: list[Op] = []
    for k in order:
        device, slot = k % touched, k // touched % slots
        bdf = bdfs[device]
        register = (4 * k) % 0x40
        address = memory_bases[device] + slot * stride
        one_pass += [
            _cfg(OpKind.CONFIG_READ, bdf, register, 4),
            Op(OpKind.IO_WRITE, vm=VM, address=CF8, width=4, value=0x8000_0000 | bdf.packed << 8 | register),
            Op(OpKind.IO_READ, vm=VM, address=CFC, width=4),
            Op(OpKind.IO_READ, vm=VM, address=io_bases[device], width=4),
            Op(OpKind.MMIO_READ, vm=VM, address=address, width=4),
            Op(OpKind.MMIO_WRITE, vm=VM, address=address, width=4, value=(k * 0x9E37_79B9 | 1) & 0xFFFF_FFFF),
        ]
    label = f"{devices} device{'s' if devices > 1 else ''}, {size_label(bar_size)} BAR"
    if not spread:
        label += ", 1 touched"
    return Trace(label, tuple(setup), tuple(one_pass * passes)), dtype


def size_label(size: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", KIB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


# --------------------------------------------------------------------------- runners

Runner = Callable[[], float]
"""Runs one sample and returns its duration in seconds."""


def per_call(adapter: ModelAdapter | CythonAdapter, trace: Trace, warm: bool) -> Runner:
    """Build the trace's VM once; each sample executes the body op by op.

    ``warm``: run the body once, untimed, before timing it (steady-state cost).
    """
    for op in trace.setup:
        adapter.execute(op)

    def run() -> float:
        execute = adapter.execute
        if warm:
            for op in trace.body:
                execute(op)
        started = time.perf_counter()
        for op in trace.body:
            execute(op)
        return time.perf_counter() - started

    return run


def batch(adapter: CythonAdapter, trace: Trace, warm: bool) -> Runner:
    """Build the trace's VM once; each sample runs the body, encoded once, in one batch."""
    for op in trace.setup:
        adapter.execute(op)
    body = adapter.encode(trace.body)

    def run() -> float:
        if warm:
            adapter.run_batch(body)
        started = time.perf_counter()
        adapter.run_batch(body)
        return time.perf_counter() - started

    return run


def runners_for(trace: Trace, extra: Sequence[DeviceType] = (), warm: bool = False) -> dict[str, Runner]:
    """The three ways to run ``trace``, each on its own adapter (a body may rely on its setup)."""
    types = {**SUITE_TYPES, **{t.name: t for t in extra}}
    return {
        f"{trace.name}|reference": per_call(ModelAdapter(types=types), trace, warm),
        f"{trace.name}|cython": per_call(CythonAdapter(types=types), trace, warm),
        f"{trace.name}|batch": batch(CythonAdapter(types=types), trace, warm),
    }


def measure(runners: dict[str, Runner], rounds: int) -> dict[str, float]:
    """Median seconds per sample of every runner, sampled round-robin, rotated each round."""
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        runners[name]()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(runners[name]())
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def print_flatness(
    built: Sequence[tuple[Trace, DeviceType]], flat: dict[str, float], passes: int, warm: bool
) -> None:
    """ns per access of every case and way, and the ratios to the smallest case."""
    if warm:
        print(f"flatness, warm: ns per access, {TARGETS} targets x 6 accesses x {passes} passes per sample,")
        print("each sample after one untimed pass over the same accesses (steady state)")
    else:
        print("flatness, cold: the same samples without the untimed pass; the other runners in between")
        print("evict the caches, so a larger working set (more devices, more pages) pays its refill")
    print(f"{'case':<36}{'reference':>12}{'cython per-call':>18}{'cython batch':>15}")
    ns: dict[tuple[str, str], float] = {}
    for trace, _ in built:
        row = f"{trace.name:<36}"
        for way, width in (("reference", 12), ("cython", 18), ("batch", 15)):
            ns[trace.name, way] = flat[f"{trace.name}|{way}"] / len(trace.body) * 1e9
            row += f"{ns[trace.name, way]:>{width}.0f}"
        print(row)
    one, some, many, same, large = (t.name for t, _ in built)
    print("ratios that change only the VM's size (the same accesses):")
    for label, case, base in (
        ("4096 devices / 1 device, targets on one device", same, one),
        ("4096 devices / 1024 devices, targets on 1024 devices", many, some),
        ("64 GiB BAR / 4 KiB BAR", large, one),
    ):
        print(f"  {label}: {_ratios(ns, case, base)}")
    print("ratio that changes the working set (touched devices 1 -> 1024), not the VM's size:")
    print(f"  1024 devices touched / 1 device touched: {_ratios(ns, some, one)}")
    print()


def _ratios(ns: dict[tuple[str, str], float], case: str, base: str) -> str:
    return "  ".join(f"{way} {ns[case, way] / ns[base, way]:.2f}" for way in ("reference", "cython", "batch"))


def print_profile(trace: Trace, rounds: int) -> None:
    """Per operation kind: count, ns per operation and share of the batch (median of ``rounds`` runs)."""
    adapter = CythonAdapter()
    body = adapter.encode(trace.body)
    adapter.run_batch(body)
    runs = []
    for _ in range(rounds):
        profile = adapter.run_batch(body, profile=True).profile
        assert profile is not None
        runs.append(profile)
    spent = {kind: statistics.median(run[kind][1] for run in runs) for kind in runs[0]}
    total = sum(spent.values())
    print(f"batch profile, {trace.name}: {total / len(trace.body):.0f} ns per operation in all")
    print(f"{'kind':<14}{'count':>8}{'ns/op':>10}{'share':>8}")
    for kind in sorted(spent, key=lambda k: -spent[k]):
        count = runs[0][kind][0]
        print(f"{kind:<14}{count:>8}{spent[kind] / count:>10.0f}{spent[kind] / total:>8.1%}")
    print()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="very short run (smoke test)")
    parser.add_argument("--profile", action="store_true", help="where the batch's time goes, per kind")
    args = parser.parse_args(argv)
    if UNAVAILABLE_REASON is not None:
        raise SystemExit(f"cython_speed: {UNAVAILABLE_REASON}")
    quick = args.quick
    rounds = 3 if quick else 7
    budget, accesses, passes = (5_000, 5_000, 1) if quick else (50_000, 50_000, 4)
    started = time.perf_counter()

    traces = [random_episodes(budget, seed=1), access_heavy(accesses, seed=2)]
    encode_rates: dict[str, float] = {}
    for trace in traces:
        encoder = CythonAdapter()
        t0 = time.perf_counter()
        encoder.encode(trace.body)
        encode_rates[trace.name] = len(trace.body) / (time.perf_counter() - t0)

    from vpcid.adapters.cython import _dm

    python = f"{platform.python_implementation()} {platform.python_version()}, SHA-256: {_dm.sha_engine()}"
    print(f"vpcid Cython backend speed: median of {rounds} interleaved rounds ({python})")
    print("ops/s of the same pre-generated traces; x = ratio to the reference's ops/s")
    for warm in (True, False):
        runners: dict[str, Runner] = {}
        for trace in traces:
            runners.update(runners_for(trace, warm=warm))
        results = measure(runners, rounds)
        print()
        if warm:
            print("steady state: each sample after one untimed run of the same trace")
        else:
            print("cold: no untimed run; the runners sampled in between evict the caches, which a batch")
            print("of a few milliseconds pays for (trace records, result buffers, BAR pages)")
        header = f"{'trace':<18}{'ops':>8}{'reference':>14}{'cython per-call':>24}{'cython batch':>24}"
        print(header)
        for trace in traces:
            n = len(trace.body)
            rate = {way: n / results[f"{trace.name}|{way}"] for way in ("reference", "cython", "batch")}
            print(
                f"{trace.name:<18}{n:>8}{rate['reference']:>14,.0f}"
                f"{rate['cython']:>15,.0f} ({rate['cython'] / rate['reference']:>5.1f}x)"
                f"{rate['batch']:>15,.0f} ({rate['batch'] / rate['reference']:>5.1f}x)"
            )
    print("(batch excludes encoding the trace: " + ", ".join(
        f"{name} {rate:,.0f} ops/s" for name, rate in encode_rates.items()) + ")")  # fmt: skip
    print()
    if args.profile:
        print_profile(traces[0], rounds)

    # flatness
    cases = [
        (1, 4 * KIB, True),
        (1024, 4 * KIB, True),
        (4096, 4 * KIB, True),
        (4096, 4 * KIB, False),
        (1, 64 * GIB, True),
    ]
    built = [flatness(d, s, passes, 3, spread) for d, s, spread in cases]
    for warm in (True, False):
        flat_runners: dict[str, Runner] = {}
        for trace, dtype in built:
            flat_runners.update(runners_for(trace, [dtype], warm=warm))
        flat = measure(flat_runners, rounds)
        print_flatness(built, flat, passes, warm)
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
