"""Cost per access of the reference model against devices per VM and BAR size (R-DS-006).

Run as ``python benchmarks/access_cost.py [--quick]``. It builds one VM per
case, programs it through configuration writes as firmware would, and
times five kinds of access, each spread over every device of the VM:

* ``config read``: ``DataManager.config_read`` of a dword;
* ``CAM 0xCF8/0xCFC``: configuration mechanism #1, ``io_write`` of the
  address to 0xCF8 then ``io_read`` of 0xCFC (one op is the pair);
* ``I/O BAR read``: ``io_read`` of a dword inside an I/O BAR;
* ``MMIO read`` / ``MMIO write``: a dword inside a 64-bit memory BAR.

Cases: 1, 16, 256 and 1024 devices per VM (4 KiB memory BAR each), and one
device whose memory BAR is 4 KiB, 1 MiB, 1 GiB or 64 GiB. Every device also
has a 16-port I/O BAR so I/O BAR reads can be timed in both dimensions.
Samples are interleaved round-robin over all (case, access) pairs and the
median is reported, because the machine is noisy. The ratios are reported,
never judged: no thresholds.
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vpcid.model import Bdf, DataManager
from vpcid.model.devicetype import BAR0, COMMAND, BarKind, BarSpec, DeviceType

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
DEVICE_COUNTS = (1, 16, 256, 1024)
BAR_SIZES = (4 * KIB, 1 * MIB, 1 * GIB, 64 * GIB)
VM_ID = 1
MEMORY_BASE = 1 << 36
"""First memory BAR address: above 4 GiB, aligned for every BAR size measured."""
IO_BASE = 0x1000
IO_BAR_SIZE = 16
IO_BAR_INDEX = 2
DEVICES_PER_BUS = 32
ACCESSES_PER_PASS = 1024
"""Distinct access targets per case; one timed pass walks them all once."""
CF8, CFC = 0xCF8, 0xCFC
CMD_IO_MEM = 0x3


@dataclass(frozen=True, slots=True)
class Case:
    """One VM shape: how many devices and how large each one's memory BAR is."""

    label: str
    devices: int
    bar_size: int


@dataclass(frozen=True, slots=True)
class Workload:
    """A built VM and the access targets of each kind, shuffled over its devices."""

    manager: DataManager
    config_targets: tuple[tuple[Bdf, int], ...]
    cf8_values: tuple[int, ...]
    io_ports: tuple[int, ...]
    mmio_targets: tuple[tuple[int, int], ...]
    """(address, value to write)."""


def size_label(size: int) -> str:
    """``4 KiB``, ``64 GiB``."""
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def bench_type(bar_size: int) -> DeviceType:
    """A device with one 64-bit memory BAR of ``bar_size`` (BAR0) and a 16-port I/O BAR (BAR2)."""
    return DeviceType(
        name=f"bench-{bar_size:#x}",
        vendor_id=0x1234,
        device_id=0xBE00,
        class_code=0x00FF00,
        bars=(BarSpec(BarKind.MEM64, bar_size), None, BarSpec(BarKind.IO, IO_BAR_SIZE)),
    )


def build(case: Case, rng: random.Random) -> Workload:
    """Plug ``case.devices`` devices across buses, program distinct BARs, enable decode."""
    manager = DataManager()
    manager.create_vm(VM_ID)
    dtype = bench_type(case.bar_size)
    bdfs = [Bdf(i // DEVICES_PER_BUS, i % DEVICES_PER_BUS, 0) for i in range(case.devices)]
    memory_bases, io_bases = [], []
    for i, bdf in enumerate(bdfs):
        memory_base = MEMORY_BASE + i * case.bar_size
        io_base = IO_BASE + i * IO_BAR_SIZE
        manager.plug(VM_ID, bdf, dtype)
        manager.config_write(VM_ID, bdf, BAR0, 4, memory_base & 0xFFFF_FFFF)
        manager.config_write(VM_ID, bdf, BAR0 + 4, 4, memory_base >> 32)
        manager.config_write(VM_ID, bdf, BAR0 + 4 * IO_BAR_INDEX, 4, io_base)
        manager.config_write(VM_ID, bdf, COMMAND, 2, CMD_IO_MEM)
        memory_bases.append(memory_base)
        io_bases.append(io_base)
    assert len(manager.tables(VM_ID).memory) == case.devices, "every memory BAR must decode"

    slots = max(1, ACCESSES_PER_PASS // case.devices)
    stride = case.bar_size // slots
    order = list(range(ACCESSES_PER_PASS))
    rng.shuffle(order)
    config_targets, cf8_values, io_ports, mmio_targets = [], [], [], []
    for k in order:
        device, slot = k % case.devices, k // case.devices % slots
        bdf = bdfs[device]
        register = (4 * k) % 0x40
        config_targets.append((bdf, register))
        cf8_values.append(0x8000_0000 | bdf.bus << 16 | bdf.device << 11 | bdf.function << 8 | register)
        io_ports.append(io_bases[device] + 4 * (slot % (IO_BAR_SIZE // 4)))
        mmio_targets.append((memory_bases[device] + slot * stride, (k * 0x9E37_79B9 | 1) & 0xFFFF_FFFF))
    return Workload(manager, tuple(config_targets), tuple(cf8_values), tuple(io_ports), tuple(mmio_targets))


def config_read_pass(w: Workload) -> int:
    read = w.manager.config_read
    for bdf, offset in w.config_targets:
        read(VM_ID, bdf, offset, 4)
    return len(w.config_targets)


def cam_pass(w: Workload) -> int:
    write, read = w.manager.io_write, w.manager.io_read
    for value in w.cf8_values:
        write(VM_ID, CF8, 4, value)
        read(VM_ID, CFC, 4)
    return len(w.cf8_values)


def io_bar_read_pass(w: Workload) -> int:
    read = w.manager.io_read
    for port in w.io_ports:
        read(VM_ID, port, 4)
    return len(w.io_ports)


def mmio_read_pass(w: Workload) -> int:
    read = w.manager.mmio_read
    for address, _ in w.mmio_targets:
        read(VM_ID, address, 4)
    return len(w.mmio_targets)


def mmio_write_pass(w: Workload) -> int:
    write = w.manager.mmio_write
    for address, value in w.mmio_targets:
        write(VM_ID, address, 4, value)
    return len(w.mmio_targets)


PASSES: dict[str, Callable[[Workload], int]] = {
    "config read": config_read_pass,
    "CAM 0xCF8/0xCFC": cam_pass,
    "I/O BAR read": io_bar_read_pass,
    "MMIO read": mmio_read_pass,
    "MMIO write": mmio_write_pass,
}
"""Each access kind and the function that walks a workload's targets once with it."""
ACCESS_KINDS = tuple(PASSES)


def sample(run: Callable[[Workload], int], workload: Workload, passes: int) -> float:
    """ns per access over ``passes`` walks of the workload's targets."""
    accesses = 0
    start = time.perf_counter_ns()
    for _ in range(passes):
        accesses += run(workload)
    return (time.perf_counter_ns() - start) / accesses


def measure(cases: Sequence[Case], rounds: int, passes: int) -> dict[tuple[str, str], float]:
    """Median ns/op of every (case label, access kind), sampled round-robin, interleaved."""
    rng = random.Random(20240601)
    workloads = {case.label: build(case, rng) for case in cases}
    pairs = [(case.label, kind) for case in cases for kind in ACCESS_KINDS]
    for label, kind in pairs:  # warm up: caches, and the pages MMIO writes allocate
        PASSES[kind](workloads[label])
    samples: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_number in range(rounds):
            shift = round_number % len(pairs)  # rotate the start so drift spreads over every pair
            for label, kind in pairs[shift:] + pairs[:shift]:
                samples[label, kind].append(sample(PASSES[kind], workloads[label], passes))
    finally:
        if gc_was_enabled:
            gc.enable()
    return {pair: statistics.median(values) for pair, values in samples.items()}


def geometric_mean_ratio(results: dict[tuple[str, str], float], label: str, baseline: str) -> float:
    """Geometric mean over the access kinds of ns/op(label) / ns/op(baseline)."""
    ratios = [results[label, kind] / results[baseline, kind] for kind in ACCESS_KINDS]
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


def print_section(
    title: str, rows: Sequence[tuple[str, Case]], results: dict[tuple[str, str], float], baseline: Case
) -> None:
    """One table: a row per case, ns/op and ratio to the baseline for each access kind."""
    print(title)
    print(f"{'':<14}" + "".join(f"{kind:>20}" for kind in ACCESS_KINDS))
    print(f"{'':<14}" + "".join(f"{'ns/op  ratio':>20}" for _ in ACCESS_KINDS))
    for row_label, case in rows:
        cells = ""
        for kind in ACCESS_KINDS:
            cost = results[case.label, kind]
            cells += f"{cost:>13.0f}{cost / results[baseline.label, kind]:>7.2f}"
        print(f"{row_label:<14}{cells}")
    print()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="very short run (smoke test)")
    args = parser.parse_args(argv)
    rounds, passes = (3, 1) if args.quick else (21, 16)

    baseline = Case("1 device, 4 KiB BAR", 1, BAR_SIZES[0])
    by_devices = [baseline] + [Case(f"{n} devices", n, BAR_SIZES[0]) for n in DEVICE_COUNTS[1:]]
    by_size = [baseline] + [Case(f"1 device, {size_label(s)} BAR", 1, s) for s in BAR_SIZES[1:]]
    started = time.perf_counter()
    results = measure(by_devices + by_size[1:], rounds, passes)
    elapsed = time.perf_counter() - started

    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(
        f"vpcid access cost: median ns/op of {rounds} interleaved rounds, "
        f"{passes} x {ACCESSES_PER_PASS} accesses per sample ({elapsed:.1f} s, {python})"
    )
    print(f"ratio = ns/op / ns/op of {baseline.label}; one CAM op = out 0xCF8 + in 0xCFC")
    print()
    device_rows = [(f"{c.devices} device{'s' if c.devices > 1 else ''}", c) for c in by_devices]
    print_section("(a) devices per VM, each with a 4 KiB memory BAR", device_rows, results, baseline)
    size_rows = [(f"{size_label(c.bar_size)} BAR", c) for c in by_size]
    print_section("(b) memory BAR size, 1 device", size_rows, results, baseline)

    print("geometric mean of the ratios over the five access kinds:")
    largest_devices, largest_bar = by_devices[-1], by_size[-1]
    devices_ratio = geometric_mean_ratio(results, largest_devices.label, baseline.label)
    size_ratio = geometric_mean_ratio(results, largest_bar.label, baseline.label)
    print(f"ratio {largest_devices.devices} devices / 1 device: {devices_ratio:.2f}")
    largest_size, smallest_size = size_label(largest_bar.bar_size), size_label(baseline.bar_size)
    print(f"ratio {largest_size} BAR / {smallest_size} BAR: {size_ratio:.2f}")


if __name__ == "__main__":
    main()
