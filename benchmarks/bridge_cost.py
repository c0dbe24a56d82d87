"""What bridges cost an access (R-BRG-004, R-BRG-006): side by side in one run, printed as ratios.

Run as ``python benchmarks/bridge_cost.py [--quick]``. Four VMs, built through
configuration writes as firmware would:

* ``flat``: one device on bus 0;
* ``four deep``: the same device below four pci-bridges chained from bus 0,
  every window open over its BAR;
* ``no bridges``: 256 devices on buses 0-7;
* ``256 bridges``: 256 devices again, 255 of them each below its own bridge
  (the bridges are the 255 functions 00:00.0-00:1f.6, secondary buses 1-255:
  every bus number there is) and the last at 00:1f.7.

For each it times ``mmio_read`` of a dword in the device's BAR and
``config_read`` of a dword of its configuration space, for the reference
model and, when it is built, the Cython backend. For each implementation in
turn, samples are interleaved round-robin over its (VM, access) pairs (not
across implementations, whose runs would evict each other's caches) and the
median is reported, because the machine is shared. The ratios (four deep / flat, 256
bridges / none) are printed, never judged: the issue's goal is 1.3 or less.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vpcid.model import Bdf, DataManager
from vpcid.model.catalog import PCI_BRIDGE
from vpcid.model.devicetype import BAR0, COMMAND, BarKind, BarSpec, DeviceType

VM_ID = 1
BAR_SIZE = 4096
MEMORY_BASE = 0xC000_0000
"""First BAR address; every bridge's memory window covers 0xC0000000-0xDFFFFFFF."""
WINDOW = 0xDFF0_C000
"""Memory base 0xC0000000, limit 0xDFFFFFFF (base and limit words of one dword)."""
CLOSED_PREF = 0x0001_FFF1
DEVICE = DeviceType(
    name="bench-bridged", vendor_id=0x1234, device_id=0xBE01, class_code=0x00FF00,
    bars=(BarSpec(BarKind.MEM32, BAR_SIZE),),
)  # fmt: skip
ACCESSES = 256
"""Distinct targets per timed pass."""

Manager = Any
"""A :class:`DataManager` or the Cython backend's ``Manager`` (same API)."""


@dataclass(frozen=True, slots=True)
class Workload:
    """A built VM and what to access in it."""

    manager: Manager
    addresses: tuple[int, ...]
    functions: tuple[Bdf, ...]


MULTIFUNCTION_BRIDGE = dataclasses.replace(PCI_BRIDGE, name="pci-bridge-multifunction", multifunction=True)
"""QEMU's pci-bridge with header type bit 7 set, so eight of them can share a device (R-MF-001)."""


def _bridge(manager: Manager, bdf: Bdf, primary: int, secondary: int, subordinate: int) -> None:
    manager.plug(VM_ID, bdf, MULTIFUNCTION_BRIDGE)
    manager.config_write(VM_ID, bdf, 0x18, 4, primary | secondary << 8 | subordinate << 16)
    manager.config_write(VM_ID, bdf, 0x20, 4, WINDOW)
    manager.config_write(VM_ID, bdf, 0x24, 4, CLOSED_PREF)
    manager.config_write(VM_ID, bdf, COMMAND, 2, 0x2)


def _device(manager: Manager, bdf: Bdf, index: int) -> int:
    base = MEMORY_BASE + index * BAR_SIZE
    manager.plug(VM_ID, bdf, DEVICE)
    manager.config_write(VM_ID, bdf, BAR0, 4, base)
    manager.config_write(VM_ID, bdf, COMMAND, 2, 0x2)
    return base


def build(factory: Callable[[], Manager], shape: str) -> Workload:
    """One VM of ``shape`` (flat, four deep, no bridges, 256 bridges) on a fresh manager."""
    manager = factory()
    manager.create_vm(VM_ID)
    bases: list[int] = []
    functions: list[Bdf] = []
    if shape == "flat":
        bases.append(_device(manager, Bdf(0, 2, 0), 0))
        functions.append(Bdf(0, 2, 0))
    elif shape == "four deep":
        for level in range(4):
            _bridge(manager, Bdf(level, 1 if level == 0 else 0, 0), level, level + 1, 4)
        bases.append(_device(manager, Bdf(4, 2, 0), 0))
        functions.append(Bdf(4, 2, 0))
    else:
        bridged = shape == "256 bridges"
        for index in range(256):
            if not bridged:
                bdf = Bdf(index // 32, index % 32, 0)
            elif index < 255:
                _bridge(manager, Bdf(0, index // 8, index % 8), 0, index + 1, index + 1)
                bdf = Bdf(index + 1, 0, 0)
            else:
                bdf = Bdf(0, 31, 7)
            bases.append(_device(manager, bdf, index))
            functions.append(bdf)
    count = len(bases)
    addresses = tuple(bases[k % count] + (4 * k) % BAR_SIZE for k in range(ACCESSES))
    return Workload(manager, addresses, tuple(functions[k % count] for k in range(ACCESSES)))


def _mmio(w: Workload) -> Callable[[], None]:
    read, addresses = w.manager.mmio_read, w.addresses

    def run() -> None:
        for address in addresses:
            read(VM_ID, address, 4)

    return run


def _config(w: Workload) -> Callable[[], None]:
    read, functions = w.manager.config_read, w.functions

    def run() -> None:
        for bdf in functions:
            read(VM_ID, bdf, 0x10, 4)

    return run


def _check(w: Workload) -> None:
    """Every timed access reaches its device (a benchmark of reads that miss measures nothing)."""
    for address in w.addresses[:8]:
        assert w.manager.mmio_read(VM_ID, address, 4) == 0, hex(address)
    for bdf in w.functions[:8]:
        assert w.manager.config_read(VM_ID, bdf, 0, 2) == 0x1234, bdf


SHAPES = ("flat", "four deep", "no bridges", "256 bridges")
RATIOS = (("four deep", "flat"), ("256 bridges", "no bridges"))


def implementations() -> dict[str, Callable[[], Manager]]:
    """The model, and the Cython backend when it is built."""
    found: dict[str, Callable[[], Manager]] = {"model": DataManager}
    try:
        from vpcid.adapters.cython import _dm
    except ImportError:
        return found
    found["cython"] = _dm.Manager
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few rounds (a smoke run)")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else 41
    timed: dict[tuple[str, str, str], Callable[[], None]] = {}
    for impl, factory in implementations().items():
        for shape in SHAPES:
            w = build(factory, shape)
            _check(w)
            timed[impl, shape, "mmio_read"] = _mmio(w)
            timed[impl, shape, "config_read"] = _config(w)
    samples: dict[tuple[str, str, str], list[float]] = {key: [] for key in timed}
    gc.disable()
    try:
        for impl in implementations():  # one implementation at a time: the other's runs evict its caches
            mine = [(key, run) for key, run in timed.items() if key[0] == impl]
            for _ in range(rounds):
                for key, run in mine:
                    start = time.perf_counter_ns()
                    run()
                    samples[key].append((time.perf_counter_ns() - start) / ACCESSES)
    finally:
        gc.enable()
    ns = {key: statistics.median(values) for key, values in samples.items()}
    print(f"{'implementation':<16}{'VM':<14}{'access':<14}{'ns/access':>10}")
    for impl, shape, access in timed:
        print(f"{impl:<16}{shape:<14}{access:<14}{ns[impl, shape, access]:>10.0f}")
    print("ratios (goal: 1.3 or less)")
    for impl in implementations():
        for access in ("mmio_read", "config_read"):
            for shape, base in RATIOS:
                ratio = ns[impl, shape, access] / ns[impl, base, access]
                print(f"  {impl} {access}: {shape} / {base} = {ratio:.2f}")


if __name__ == "__main__":
    main()
