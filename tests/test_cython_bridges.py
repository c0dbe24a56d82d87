"""Bridges in the Cython backend: random operation sequences with bridges several levels deep give the
model's observations, tables, blobs and snapshots (R-BRG-*).

Each sequence runs on :class:`vpcid.model.DataManager` and on the compiled
:class:`vpcid.adapters.cython.Manager` side by side: every call's result or
error class, the tables after every operation, every instance blob and every
snapshot (byte for byte) must agree. The sequences plug bridges (QEMU's four
and bridges with every other window kind) on root buses and below bridges,
program bus numbers, windows, command bits and bridge control (ISA, VGA,
secondary bus reset) the way firmware does and the way it should not, and
reach devices below them by configuration, I/O and MMIO accesses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from conftest import expected_digest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vpcid.adapters import cython as backend
from vpcid.adapters.reference import ModelAdapter
from vpcid.model import Bdf, DataManager, DeviceType, Profile, VpcidError
from vpcid.model.blob import VmRecord as SnapshotRecord
from vpcid.model.blob import decode_snapshot, encode_snapshot
from vpcid.model.catalog import BRIDGES, EDU, PCI_BRIDGE, MsiMultipleMessageClamp
from vpcid.model.devicetype import BarKind, BarSpec, BridgeRegisters, IoWindow, PrefetchWindow, RomSpec

needs_backend = pytest.mark.skipif(not backend.available(), reason=backend.UNAVAILABLE_REASON or "")

WIDE_BRIDGE = DeviceType(
    name="wide-bridge", vendor_id=0x1AF4, device_id=0x7001, class_code=0x060400, command_mask=0x0507,
    bridge=BridgeRegisters(IoWindow.BITS32, PrefetchWindow.BITS32),
)  # fmt: skip
"""A bridge with a 32-bit I/O window and a 32-bit prefetchable window (QEMU's have 16-bit and 64-bit)."""
BARE_BRIDGE = DeviceType(
    name="bare-bridge", vendor_id=0x1AF4, device_id=0x7002, class_code=0x060400, command_mask=0x0507,
    bars=(BarSpec(BarKind.IO, 16),), rom=RomSpec(2048, b"\x55\xaa" + bytes(range(30))),
    bridge=BridgeRegisters(IoWindow.NONE, PrefetchWindow.NONE),
)  # fmt: skip
"""A bridge with neither an I/O nor a prefetchable window, an I/O BAR and a ROM at 0x38."""
LEAF = DeviceType(
    name="leaf", vendor_id=0x1AF4, device_id=0x7010, class_code=0x020000, command_mask=0x0507,
    bars=(BarSpec(BarKind.IO, 32), BarSpec(BarKind.MEM32, 4096), BarSpec(BarKind.MEM64, 1 << 20), None),
    rom=RomSpec(4096, b"\x55\xaa\x01\x02"),
)  # fmt: skip
"""A function with an I/O BAR, a 4 KiB and a 1 MiB (64-bit) memory BAR and a ROM."""

CLAMPED_BRIDGE = dataclasses.replace(
    PCI_BRIDGE, name="pci-bridge-clamped", config_behaviour=MsiMultipleMessageClamp()
)
"""QEMU's pci-bridge with QEMU's MSI clamping as a configuration behaviour (R-DT-008): every write to it
goes through the behaviour."""

TYPES: tuple[DeviceType, ...] = (
    *BRIDGES.values(), WIDE_BRIDGE, BARE_BRIDGE, CLAMPED_BRIDGE, LEAF, LEAF, LEAF, EDU,
)  # fmt: skip
"""Plugged types, drawn uniformly: leaves three times as often as each bridge."""

MEMORY_BASES = (0xC000_0000, 0xC010_0000, 0xC020_0000, 0xC0F0_0000, 0xD000_0000, 0xE000_0000)
IO_BASES = (0x1000, 0x1020, 0x1400, 0x2000, 0x2100, 0x3000, 0x3B0, 0x3C0)
VALUES: dict[int, tuple[int, ...]] = {
    0x04: (0x0, 0x1, 0x2, 0x3, 0x7),  # command: I/O, memory, bus master
    0x10: (*MEMORY_BASES, *IO_BASES, 0xFFFF_FFFF, 0),
    0x14: (*MEMORY_BASES, 0, 0xFFFF_FFFF, 0x1),
    0x18: tuple(
        p | s << 8 | u << 16
        for p, s, u in (
            (0, 1, 1),
            (0, 1, 3),
            (0, 2, 2),
            (1, 2, 3),
            (0, 3, 3),
            (0, 4, 6),
            (0, 2, 1),
            (0, 0, 5),
            (0, 5, 5),
        )
    ),
    0x1C: (0x0000_1010, 0x0000_2010, 0x0000_1030, 0x0000_3020, 0x0000_0000, 0x0000_00F0),
    0x20: (0xC000_C000, 0xC010_C000, 0xC0F0_C0F0, 0xD000_C000, 0xE000_D000, 0x0000_FFF0),
    0x24: (0xC000_C000, 0xE000_E000, 0xD000_D000, 0x0001_FFF1, 0xE001_E001),
    0x28: (0, 1),
    0x2C: (0, 1),
    0x30: (0, 0x0001_0000, 0x0001_0001),
    0x38: (0xC030_0001, 0xC040_0001, 0, 0xFFFF_FFFF),
    0x3C: tuple(0x0B | control << 16 for control in (0x00, 0x04, 0x08, 0x0C, 0x40, 0x48, 0x03)),
}
"""Values written at each dword offset: BAR bases that land inside and outside the windows, bus
numbers that nest, overlap, run backwards and reach nothing, windows open and closed."""

bdfs = st.builds(Bdf, st.integers(0, 6), st.integers(0, 3), st.sampled_from((0, 0, 1)))
offsets = st.sampled_from(sorted(VALUES))


TREE_BDFS = (Bdf(0, 1, 0), Bdf(1, 0, 0), Bdf(2, 0, 0), Bdf(2, 1, 0), Bdf(3, 0, 0), Bdf(4, 2, 0))
"""Where :func:`firmware_tree` puts its functions."""


def operation_strategy(
    bdfs: st.SearchStrategy[Bdf], platform_reset: bool
) -> st.SearchStrategy[tuple[Any, ...]]:
    """Operations on functions drawn from ``bdfs``: accesses most, then configuration writes, then
    plugs, then what tears state down (``reset_vm`` only with ``platform_reset``)."""

    @st.composite
    def config_writes(draw: st.DrawFn) -> tuple[Any, ...]:
        dword = draw(offsets)
        width = draw(st.sampled_from((4, 4, 2, 1)))
        lane = draw(st.integers(0, 4 - width).filter(lambda k: k % width == 0))
        value = (draw(st.sampled_from(VALUES[dword])) >> (8 * lane)) & ((1 << (8 * width)) - 1)
        return ("config_write", draw(bdfs), dword + lane, width, value)

    reads = st.one_of(
        st.tuples(st.just("mmio_read"), addresses, st.sampled_from((1, 2, 4, 8))),
        st.tuples(st.just("io_read"), ports, st.sampled_from((1, 2, 4))),
        st.tuples(st.just("resolve"), st.sampled_from(("io", "memory")), st.one_of(addresses, ports)),
        st.tuples(
            st.just("config_read"),
            bdfs,
            st.sampled_from((0x00, 0x04, 0x10, 0x18, 0x1C, 0x20, 0x3C)),
            st.just(4),
        ),
    )
    writes = st.one_of(
        st.tuples(st.just("mmio_write"), addresses, st.sampled_from((1, 4, 8)), st.integers(0, 0xFF)),
        st.tuples(st.just("io_write"), ports, st.sampled_from((1, 2, 4)), st.integers(0, 0xFF)),
    )
    rare = st.one_of(
        st.tuples(st.just("unplug"), bdfs),
        st.tuples(st.just("reset"), bdfs),
        st.tuples(st.just("reset_vm")) if platform_reset else st.tuples(st.just("reset"), bdfs),
        st.tuples(st.just("save_restore"), bdfs, bdfs),
        st.tuples(st.just("snapshot_restore")),
    )
    return st.one_of(
        reads, reads, reads, writes, config_writes(), config_writes(), config_writes(),
        st.tuples(st.just("plug"), bdfs, st.integers(0, len(TYPES) - 1)), rare,
    )  # fmt: skip


addresses = st.one_of(
    st.sampled_from((0xC000_0000, 0xC020_0000)).flatmap(lambda b: st.integers(b, b + 0xFFF)),
    st.sampled_from((0xC000_0000, 0xC020_0000)).flatmap(lambda b: st.integers(b, b + 0xFFF)),
    st.sampled_from(MEMORY_BASES).flatmap(lambda b: st.integers(b - 8, b + 0x1010)),
    st.sampled_from((0xA0000, 0xBFFF8, 0xC030_0000, 0xC040_0000)),
)
ports = st.sampled_from(IO_BASES).flatmap(lambda p: st.integers(max(p - 4, 0), p + 0x24))
operations = operation_strategy(bdfs, platform_reset=True)
tree_operations = operation_strategy(st.one_of(st.sampled_from(TREE_BDFS), bdfs), platform_reset=False)

VM = 1


def perform(manager: Any, op: tuple[Any, ...], blobs: dict[str, bytes]) -> object:
    """One operation on ``manager``; its result, or the error class it raised."""
    kind, *args = op
    call: Callable[..., object]
    try:
        if kind == "plug":
            return manager.plug(VM, args[0], TYPES[args[1]])
        if kind == "save_restore":
            blob = blobs["save"] = manager.save(VM, args[0])
            return manager.restore(VM, args[1], blob)
        if kind == "snapshot_restore":
            snapshot = blobs["snapshot"] = manager.snapshot(VM)
            return manager.restore_vm(VM, snapshot)
        call = getattr(manager, kind)
        return call(VM, *args)
    except VpcidError as exc:
        return type(exc)


def run_both(profile: Profile, ops: list[tuple[Any, ...]]) -> None:
    model, compiled = DataManager(profile), backend.Manager(profile)
    for manager in (model, compiled):
        manager.create_vm(VM)
    for step, op in enumerate(ops):
        model_blobs: dict[str, bytes] = {}
        compiled_blobs: dict[str, bytes] = {}
        want = perform(model, op, model_blobs)
        got = perform(compiled, op, compiled_blobs)
        where = f"step {step}: {op}"
        assert got == want, where
        assert compiled_blobs == model_blobs, where
        assert compiled.tables(VM) == model.tables(VM), where
        assert compiled.topology(VM) == model.topology(VM), where
    assert compiled.snapshot(VM) == model.snapshot(VM)
    for bdf, _ in model.tables(VM).config:
        assert compiled.save(VM, bdf) == model.save(VM, bdf)


PROFILES = (
    Profile(),
    Profile.from_mapping({"overlap": "last-mapped", "bar_move_while_decoding": "deferred"}),
    Profile.from_mapping({"straddle": "start-address", "bar_move_while_decoding": "ignored"}),
    Profile.from_mapping({"bridge_isa": "ignored", "unmapped_mmio_read": "zeros"}),
    Profile.from_mapping({"bridge_windows": "ignored", "overlap": "last-mapped"}),
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def firmware_tree() -> list[tuple[Any, ...]]:
    """Root port 00:01.0 -> bus 1: switch upstream port -> bus 2: downstream port 02:00.0 -> bus 3 and
    pci-bridge (clamped) 02:01.0 -> bus 4, a leaf on buses 3 and 4; numbered, windowed and enabled top down as
    firmware enumerates (R-BRG-003, R-BRG-006)."""
    names = ("pcie-root-port", "x3130-upstream", "xio3130-downstream")
    root, up, down = (TYPES.index(BRIDGES[name]) for name in names)
    pci = TYPES.index(CLAMPED_BRIDGE)  # its writes go through a configuration behaviour
    leaf = TYPES.index(LEAF)
    ops: list[tuple[Any, ...]] = [("plug", Bdf(0, 1, 0), root)]
    ops += [("config_write", Bdf(0, 1, 0), 0x18, 4, 0x040100), ("plug", Bdf(1, 0, 0), up)]
    ops += [("config_write", Bdf(1, 0, 0), 0x18, 4, 0x040201), ("plug", Bdf(2, 0, 0), down),
            ("plug", Bdf(2, 1, 0), pci)]  # fmt: skip
    ops += [
        ("config_write", Bdf(2, 0, 0), 0x18, 4, 0x030302),
        ("config_write", Bdf(2, 1, 0), 0x18, 4, 0x040402),
    ]
    ops += [("plug", Bdf(3, 0, 0), leaf), ("plug", Bdf(4, 2, 0), leaf)]
    windows = ((Bdf(0, 1, 0), 0xC030_C000, 0x3010), (Bdf(1, 0, 0), 0xC030_C000, 0x3010),
               (Bdf(2, 0, 0), 0xC010_C000, 0x1010), (Bdf(2, 1, 0), 0xC030_C020, 0x3020))  # fmt: skip
    for bdf, mem, io in windows:
        ops += [("config_write", bdf, 0x20, 4, mem), ("config_write", bdf, 0x1C, 2, io),
                ("config_write", bdf, 0x04, 2, 3)]  # fmt: skip
    for bdf, mem, io in ((Bdf(3, 0, 0), 0xC000_0000, 0x1000), (Bdf(4, 2, 0), 0xC020_0000, 0x2000)):
        ops += [("config_write", bdf, 0x10, 4, io), ("config_write", bdf, 0x14, 4, mem),
                ("config_write", bdf, 0x04, 2, 3)]  # fmt: skip
    return ops


@needs_backend
@pytest.mark.req("R-BRG-002", "R-BRG-003", "R-BRG-004", "R-BRG-006", "R-BRG-007", "R-BRG-008", "R-BRG-009")
@pytest.mark.req("R-BRG-010", "R-BRG-011")
@SETTINGS
@given(ops=st.lists(operations, min_size=15, max_size=80), which=st.integers(0, len(PROFILES) - 1),
       enumerated=st.booleans())  # fmt: skip
def test_random_bridge_sequences_match_the_model(
    ops: list[tuple[Any, ...]], which: int, enumerated: bool
) -> None:
    run_both(PROFILES[which], (firmware_tree() if enumerated else []) + ops)


@needs_backend
@pytest.mark.req("R-BRG-006", "R-BRG-007", "R-BRG-011")
@SETTINGS
@given(ops=st.lists(tree_operations, min_size=15, max_size=80), which=st.integers(0, len(PROFILES) - 1))
def test_random_operations_on_an_enumerated_tree_match_the_model(
    ops: list[tuple[Any, ...]], which: int
) -> None:
    run_both(PROFILES[which], firmware_tree() + ops)


@needs_backend
@pytest.mark.req("R-BRG-003")
def test_a_tree_enumerated_as_firmware_does_routes_and_forwards_alike() -> None:
    ops = firmware_tree()
    probes: list[tuple[Any, ...]] = [
        ("config_read", Bdf(3, 0, 0), 0, 4), ("config_read", Bdf(4, 2, 0), 0, 4),
        ("config_read", Bdf(5, 0, 0), 0, 4),
        ("mmio_write", 0xC000_0010, 4, 0xAB), ("mmio_read", 0xC000_0010, 4), ("mmio_read", 0xC020_0000, 4),
        ("io_write", 0x1004, 1, 0x5A), ("io_read", 0x1004, 1), ("io_read", 0x2000, 4),
        ("resolve", "memory", 0xC020_0000), ("resolve", "io", 0x1000),
        ("config_write", Bdf(2, 0, 0), 0x3E, 2, 0x40),  # secondary bus reset below the downstream port
        ("config_read", Bdf(3, 0, 0), 0x14, 4), ("mmio_read", 0xC000_0010, 4),
        ("config_write", Bdf(1, 0, 0), 0x1A, 1, 2),  # the switch stops claiming buses 3 and 4
        ("config_read", Bdf(4, 2, 0), 0, 4), ("snapshot_restore",), ("reset", Bdf(0, 1, 0)),
        ("config_read", Bdf(1, 0, 0), 0, 4), ("reset_vm",), ("unplug", Bdf(0, 1, 0)),
    ]  # fmt: skip
    run_both(Profile(), ops + probes)


def _verdict(manager: Any, method: str, *args: object) -> str:
    try:
        getattr(manager, method)(*args)
    except VpcidError as exc:
        return exc.kind
    return "ok"


@needs_backend
@pytest.mark.req("R-BLOB-007")
@pytest.mark.req("R-BLOB-008")
@SETTINGS
@given(
    ops=st.lists(tree_operations, max_size=20),
    flips=st.lists(st.integers(0, 1 << 16), min_size=1, max_size=3),
    where=st.sampled_from(("tail", "entries", "anywhere")),
)
def test_damaged_bridged_snapshots_are_rejected_alike(
    ops: list[tuple[Any, ...]], flips: list[int], where: str
) -> None:
    """A bridged snapshot with flipped bits, sealed again, gets the same verdict on both sides and leaves
    the same VM: bits of the map order and topology sections (``tail``), of the device entries' BDF and
    length fields (``entries``), or anywhere past the header."""
    model, compiled = DataManager(), backend.Manager()
    for manager in (model, compiled):
        manager.create_vm(VM)
        for op in firmware_tree() + ops:
            perform(manager, op, {})
    snapshot = model.snapshot(VM)
    assert compiled.snapshot(VM) == snapshot
    body = bytearray(snapshot[:-32])
    devices_end = 16 + 8 + 13 + 8 + int.from_bytes(body[16 + 8 + 13 + 4 : 16 + 8 + 13 + 8], "little")
    entry_fields, pos = [], 16 + 8 + 13 + 8 + 4
    while pos < devices_end:
        entry_fields += range(pos, pos + 6)
        pos += 6 + int.from_bytes(body[pos + 2 : pos + 6], "little")
    for flip in flips:
        if where == "tail":
            at = devices_end + flip % (len(body) - devices_end)
        elif where == "entries" and entry_fields:
            at = entry_fields[flip % len(entry_fields)]
        else:
            at = 16 + flip % (len(body) - 16)
        body[at] ^= 1 << (flip % 8)
    damaged = bytes(body) + expected_digest(bytes(body))
    assert _verdict(compiled, "restore_vm", VM, damaged) == _verdict(model, "restore_vm", VM, damaged)
    assert compiled.snapshot(VM) == model.snapshot(VM)
    assert compiled.tables(VM) == model.tables(VM)


@needs_backend
@pytest.mark.req("R-BRG-010")
def test_the_suites_bridge_cases_certify_the_adapter_per_call_and_in_batches() -> None:
    """Every case of the ``bridges`` group gives the model's observations through ``execute`` and
    through the batch engine (``encode`` then ``run_batch``)."""
    from vpcid.conformance.certify import applicable_cases
    from vpcid.conformance.engine import Differential

    cases = [case for case in applicable_cases(backend.CythonAdapter().info) if case[1].group == "bridges"]
    assert len(cases) >= 10
    for label, _, ops in cases:
        assert Differential(backend.CythonAdapter()).run(ops) is None, label
        batch = backend.CythonAdapter()
        model = ModelAdapter()
        assert batch.run_batch(batch.encode(ops)).observations() == [model.execute(op) for op in ops], label


def _tree_record() -> tuple[SnapshotRecord, DataManager, Any]:
    """The firmware tree with a BAR written, on the model and the backend, and its snapshot record."""
    model, compiled = DataManager(), backend.Manager()
    for manager in (model, compiled):
        manager.create_vm(VM)
        for op in [*firmware_tree(), ("mmio_write", 0xC000_0010, 4, 0xAB)]:
            perform(manager, op, {})
    return decode_snapshot(model.snapshot(VM)), model, compiled


def _restructured(record: SnapshotRecord, name: str) -> SnapshotRecord:
    """``record`` with one structural change, valid or not (R-BLOB-007, R-BLOB-008)."""
    devices, parents = list(record.devices), list(record.parents or ())
    leaf = next(k for k, (_, blob) in enumerate(devices) if b"leaf" in blob[:64])
    if name == "leaf-as-parent":
        parents[leaf + 1 :] = [leaf] * (len(parents) - leaf - 1)
    elif name == "parent-off-the-chain":
        parents[-1] = 0 if parents[-1] != 0 else 1
    elif name == "parent-after-the-entry":
        parents[1] = len(parents) - 1
    elif name == "siblings-swapped":
        devices[2], devices[3] = devices[3], devices[2]
    elif name == "entry-repeated":
        devices[3] = devices[2]
    elif name == "bus-number-below-a-bridge":
        devices[1] = (devices[1][0] | 0x0500, devices[1][1])
    elif name == "no-topology":
        return dataclasses.replace(record, parents=None)
    elif name == "index-past-the-devices":
        return dataclasses.replace(record, map_order=(*record.map_order, (len(devices), 0)))
    elif name == "map-order-reversed":
        return dataclasses.replace(record, map_order=tuple(reversed(record.map_order)))
    elif name == "flattened":
        parents = [None] * len(parents)
    return dataclasses.replace(record, devices=tuple(devices), parents=tuple(parents))


RESTRUCTURINGS = (
    "leaf-as-parent", "parent-off-the-chain", "parent-after-the-entry", "siblings-swapped",
    "entry-repeated", "bus-number-below-a-bridge", "no-topology", "index-past-the-devices",
    "map-order-reversed", "flattened",
)  # fmt: skip


@needs_backend
@pytest.mark.req("R-BLOB-007", "R-BLOB-008")
@pytest.mark.parametrize("name", RESTRUCTURINGS)
def test_restructured_topologies_get_the_models_verdict(name: str) -> None:
    """A bridged snapshot re-encoded with its tree broken (or only reordered) gets the same verdict on both
    sides; a rejected one creates no VM, an accepted one the same VM."""
    record, model, compiled = _tree_record()
    snapshot = encode_snapshot(_restructured(record, name))
    verdict = _verdict(model, "restore_vm", 2, snapshot)
    assert _verdict(compiled, "restore_vm", 2, snapshot) == verdict
    assert compiled.vm_ids() == model.vm_ids()
    if verdict == "ok":
        assert compiled.snapshot(2) == model.snapshot(2)
        assert compiled.topology(2) == model.topology(2)


@needs_backend
@pytest.mark.req("R-BLOB-008")
def test_a_topology_section_without_a_bridge_is_rejected_alike() -> None:
    """A snapshot of a VM with no bridge given a topology section is bad-blob on both sides."""
    model, compiled = DataManager(), backend.Manager()
    for manager in (model, compiled):
        manager.create_vm(VM)
        perform(manager, ("plug", Bdf(0, 3, 0), TYPES.index(LEAF)), {})
        perform(manager, ("plug", Bdf(2, 0, 0), TYPES.index(LEAF)), {})
    record = decode_snapshot(model.snapshot(VM))
    snapshot = encode_snapshot(dataclasses.replace(record, parents=(None, None)))
    assert _verdict(model, "restore_vm", 2, snapshot) == "bad-blob"
    assert _verdict(compiled, "restore_vm", 2, snapshot) == "bad-blob"
    assert compiled.vm_ids() == model.vm_ids() == (VM,)


@needs_backend
@pytest.mark.req("R-BRG-003", "R-BRG-004")
@pytest.mark.parametrize("profile", [Profile(), Profile.from_mapping({"overlap": "last-mapped"})], ids=str)
def test_overlapping_bars_change_places_when_routing_renumbers_a_function(profile: Profile) -> None:
    """Two BARs at one address: the one below the bridges (03:00.0) before the one on root bus 5 under
    the lowest-BDF rule; when the downstream port's bus loses its number the function below has no BDF
    and comes after every reachable one, and back when the number returns (R-DEC-008, R-BRG-003)."""
    leaf = TYPES.index(LEAF)
    ops: list[tuple[Any, ...]] = [
        ("plug", Bdf(5, 0, 0), leaf), ("config_write", Bdf(5, 0, 0), 0x14, 4, 0xC000_0000),
        ("config_write", Bdf(5, 0, 0), 0x04, 2, 2), ("mmio_write", 0xC000_0000, 1, 0x11),
        ("mmio_read", 0xC000_0000, 1), ("resolve", "memory", 0xC000_0000),
        ("config_write", Bdf(2, 0, 0), 0x19, 1, 7),  # secondary 7 above subordinate 3: bus 3 unnumbered
        ("mmio_read", 0xC000_0000, 1), ("resolve", "memory", 0xC000_0000),
        ("mmio_write", 0xC000_0000, 1, 0x22),
        ("config_write", Bdf(2, 0, 0), 0x18, 4, 0x030302),  # back: 03:00.0
        ("mmio_read", 0xC000_0000, 1), ("resolve", "memory", 0xC000_0000),
    ]  # fmt: skip
    run_both(profile, firmware_tree() + ops)
    model = DataManager(profile)
    model.create_vm(VM)
    results = [perform(model, op, {}) for op in firmware_tree() + ops][-len(ops) :]
    if profile.overlap.value == "lowest-bdf":  # the model itself moves the winner back and forth
        assert [results[k] for k in (4, 5, 7, 8, 11, 12)] == [
            0x11, (Bdf(3, 0, 0), 1), 0, (Bdf(5, 0, 0), 1), 0x11, (Bdf(3, 0, 0), 1)
        ]  # fmt: skip
