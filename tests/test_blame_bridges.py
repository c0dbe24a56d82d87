"""Blame knows bridges (issue 18): type 1 header bytes, routing by bus numbers, forwarding, secondary bus
reset, function reset of a bridge and snapshots of VMs with bridges each name their R-BRG-* or R-BLOB-*
rule, not the type 0 or decode rule a symptom below a bridge resembles."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.blame import Blame, blame, config_field, topology_rule
from vpcid.conformance.engine import Differential
from vpcid.conformance.mutants import BY_NAME
from vpcid.conformance.trace import Op, OpKind, define_type_op
from vpcid.conformance.typefile import type_json
from vpcid.model import Bdf, DataManager, Profile
from vpcid.model.blob import decode_snapshot, encode_snapshot
from vpcid.model.catalog import BRIDGES, PCI_BRIDGE
from vpcid.model.devicetype import layout
from vpcid.model.manager import VmElement

VM = 1
BRIDGE = Bdf(0, 1, 0)
LOWER = Bdf(1, 0, 0)
"""The second bridge of a chain, on the first one's secondary bus 1."""
NIC = Bdf(2, 0, 0)
"""An e1000 below both bridges, on bus 2."""
WINDOW = 0xE000_E000
"""Memory base and limit dword: 0xE0000000-0xE00FFFFF."""
NIC_BAR = 0xE000_0000


def op(kind: OpKind, bdf: Bdf | None = None, address: int = 0, width: int = 0, value: int = 0) -> Op:
    return Op(kind, vm=VM, bdf=bdf, address=address, width=width, value=value)


def cw(bdf: Bdf, offset: int, width: int, value: int) -> Op:
    return op(OpKind.CONFIG_WRITE, bdf, offset, width, value)


def cr(bdf: Bdf, offset: int, width: int = 4) -> Op:
    return op(OpKind.CONFIG_READ, bdf, offset, width)


def mr(address: int, width: int = 4) -> Op:
    return op(OpKind.MMIO_READ, address=address, width=width)


def plug(bdf: Bdf, name: str) -> Op:
    return Op(OpKind.PLUG, vm=VM, bdf=bdf, name=name)


PROLOGUE = [Op(OpKind.INIT), define_type_op(type_json(PCI_BRIDGE)), Op(OpKind.CREATE_VM, vm=VM)]


def chain_with_nic(*, windows: bool = True) -> list[Op]:
    """Two pci-bridges (buses 1 and 2, subordinate 2), each forwarding 0xE0000000-0xE00FFFFF when
    ``windows``, and an e1000 on bus 2 with its 128 KiB BAR0 decoding at 0xE0000000."""
    ops = [*PROLOGUE]
    for level, bdf in enumerate((BRIDGE, LOWER)):
        ops += [plug(bdf, "pci-bridge"), cw(bdf, 0x18, 4, level | (level + 1) << 8 | 2 << 16)]
        if windows:
            ops += [cw(bdf, 0x20, 4, WINDOW), cw(bdf, 0x04, 2, 0x2)]
    return [*ops, plug(NIC, "e1000"), cw(NIC, 0x10, 4, NIC_BAR), cw(NIC, 0x04, 2, 0x2)]


def blamed(impl: ModelAdapter, trace: Sequence[Op]) -> Blame:
    """Blame of a trace that diverges on its last operation."""
    divergence = Differential(impl).replay(list(trace))
    assert divergence is not None, "the trace does not diverge"
    assert divergence.index == len(trace) - 1, f"diverges early, at {divergence.describe()}"
    return blame(impl, trace, divergence)


def buggy(factory: type[DataManager]) -> ModelAdapter:
    return ModelAdapter("buggy", Profile(), manager_factory=factory)


def step_of(trace: Sequence[Op], wanted: Op) -> int:
    return max(k for k, o in enumerate(trace) if o == wanted)


# --------------------------------------------------------------------------- the type 1 header's bytes


@pytest.mark.req("R-BRG-001", "R-BRG-007", "R-BRG-011")
@pytest.mark.parametrize(
    ("offset", "bits", "rid", "words"),
    [
        (0x18, 0xFF, "R-BRG-001", "primary bus number"),
        (0x19, 0x01, "R-BRG-001", "secondary bus number"),
        (0x1A, 0x01, "R-BRG-001", "subordinate bus number"),
        (0x1C, 0xF0, "R-BRG-001", "I/O base"),
        (0x1D, 0xF0, "R-BRG-001", "I/O limit"),
        (0x1F, 0x20, "R-BRG-001", "secondary status"),
        (0x22, 0xF0, "R-BRG-001", "memory limit"),
        (0x2C, 0xFF, "R-BRG-001", "prefetchable limit upper 32 bits"),
        (0x30, 0xFF, "R-BRG-001", "I/O base upper 16 bits"),
        (0x38, 0xFF, "R-BAR-007", "expansion ROM BAR"),
        (0x3E, 0x40, "R-BRG-007", "secondary bus reset"),
        (0x3E, 0x04, "R-BRG-011", "ISA enable"),
        (0x3E, 0x01, "R-BRG-001", "bridge control"),
        (0x10, 0xF0, "R-BAR-003", "BAR0"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_type_1_byte_is_blamed_on_the_bridge_header_rule(
    offset: int, bits: int, rid: str, words: str
) -> None:
    lay = layout(PCI_BRIDGE, Profile().status)
    found, what = config_field(PCI_BRIDGE, lay, offset, bits, True)
    assert (found, words in what) == (rid, True), what
    assert "BAR slot" not in what


@pytest.mark.req("R-CFG-010")
def test_a_pci_express_capability_register_is_the_capabilitys_not_an_unclaimed_byte() -> None:
    port = BRIDGES["xio3130-downstream"]
    express = next(entry for entry in port.chain if entry.cap_id == 0x10)
    slot_status = express.offset + 0x1A
    lay = layout(port, Profile().status)
    rid, what = config_field(port, lay, slot_status, 0x01, True)
    assert rid != "R-CFG-010"
    assert f"capability 0x10 at {express.offset:#x}" in what


# --------------------------------------------------------------------------- routing (R-BRG-003, R-BRG-004)


@pytest.mark.req("R-BRG-003")
def test_bus_numbers_routed_wrong_are_blamed_on_the_write_that_set_them() -> None:
    numbers = cw(BRIDGE, 0x18, 4, 0x0001_0100)
    trace = [*PROLOGUE, plug(BRIDGE, "pci-bridge"), numbers, plug(Bdf(1, 3, 0), "edu"),
             cw(BRIDGE, 0x19, 1, 5), cr(Bdf(1, 3, 0), 0)]  # fmt: skip
    found = blamed(BY_NAME["bridge-range-off-by-one"].adapter(), trace)
    assert found.requirements == ("R-BRG-003",)
    assert found.step == step_of(trace, numbers)
    assert "bus numbers of 00:01.0" in found.reason


class TableLagsRouting(DataManager):
    """Routes by the new bus numbers but keeps the configuration table as it was (R-BRG-004)."""

    def _bridge_config_store(self, vm: VmElement, bridge: object, offset: int, payload: bytes) -> None:
        kept = dict(vm.config_table)
        super()._bridge_config_store(vm, bridge, offset, payload)  # type: ignore[arg-type]
        if {0x19, 0x1A} & set(range(offset, offset + len(payload))) and len(kept) > 1:
            vm.config_table.clear()
            vm.config_table.update(kept)


@pytest.mark.req("R-BRG-004")
def test_a_table_that_does_not_follow_the_routing_is_the_tables_rule() -> None:
    renumber = cw(BRIDGE, 0x19, 1, 5)
    trace = [*PROLOGUE, plug(BRIDGE, "pci-bridge"), cw(BRIDGE, 0x18, 4, 0x0001_0100), plug(LOWER, "edu"),
             renumber, cr(Bdf(5, 0, 0), 0)]  # fmt: skip
    found = blamed(buggy(TableLagsRouting), trace)
    assert found.requirements == ("R-BRG-004",)
    assert found.step == step_of(trace, renumber)


@pytest.mark.req("R-BRG-002", "R-BRG-003")
def test_a_bus_tree_is_blamed_on_where_instances_sit_then_on_their_numbers() -> None:
    bridge = ("00:01.0", None, 0, 1, 0, "pci-bridge", 1)
    below = ("01:00.0", 0, None, 0, 0, "edu", None)
    on_root = ("01:00.0", None, 1, 0, 0, "edu", None)
    assert topology_rule([bridge, below], [bridge, on_root])[0] == ("R-BRG-002",)
    renumbered = ("00:01.0", None, 0, 1, 0, "pci-bridge", 5)
    assert topology_rule([bridge, below], [renumbered, below])[0] == ("R-BRG-003",)


# --------------------------------------------------------------------------- forwarding (R-BRG-006)


@pytest.mark.req("R-BRG-006")
def test_an_address_a_window_forwards_that_does_not_reach_the_bar_is_forwarding() -> None:
    trace = [*chain_with_nic(), mr(NIC_BAR + 0xFFFC)]
    found = blamed(BY_NAME["bridge-limit-granularity"].adapter(), trace)
    assert found.requirements == ("R-BRG-006",)
    assert "forwarding stops it" in found.reason


@pytest.mark.req("R-BRG-006")
def test_an_address_no_window_forwards_that_reaches_the_bar_is_forwarding() -> None:
    trace = [*chain_with_nic(windows=False), cw(BRIDGE, 0x04, 2, 0x2), cw(LOWER, 0x04, 2, 0x2),
             cw(LOWER, 0x24, 4, 0xE001_E001), cw(LOWER, 0x28, 4, 1),
             cw(BRIDGE, 0x24, 4, 0xE001_E001), mr(NIC_BAR)]  # fmt: skip
    found = blamed(BY_NAME["bridge-prefetch-upper-ignored"].adapter(), trace)
    assert found.requirements == ("R-BRG-006",)
    assert "does not forward it" in found.reason


@pytest.mark.req("R-DEC-004", "R-BRG-006")
def test_a_bridges_own_bar_decodes_by_the_decode_rules_not_by_forwarding() -> None:
    trace = [*PROLOGUE, plug(BRIDGE, "pci-bridge"), cw(BRIDGE, 0x04, 2, 0x2), op(OpKind.TABLES)]
    found = blamed(BY_NAME["address-zero-decodes"].adapter(), trace)
    assert found.requirements == ("R-DEC-004",)


# --------------------------------------------------------------------------- resets (R-BRG-007, R-BRG-008)


@pytest.mark.req("R-BRG-007")
def test_a_secondary_bus_reset_that_does_not_reach_below_is_blamed_on_the_bit_6_write() -> None:
    raise_reset = cw(BRIDGE, 0x3E, 2, 0x40)
    trace = [*chain_with_nic(), raise_reset, mr(NIC_BAR)]
    found = blamed(BY_NAME["bridge-reset-shallow"].adapter(), trace)
    assert found.requirements == ("R-BRG-007",)
    assert f"at step {step_of(trace, raise_reset)} (config_write)" in found.reason


class BridgeResetGoesDeep(DataManager):
    """A function reset of a bridge also resets everything below it (R-BRG-008)."""

    def reset(self, vm_id: int, bdf: Bdf) -> None:
        vm = self._vm(vm_id)
        inst = vm.config_table.get(bdf)
        below = list(inst.below()) if inst is not None and inst.dtype.bridge is not None else []
        super().reset(vm_id, bdf)
        for lower in below:
            self._reset_instance(vm, lower, keep_sticky=True)


@pytest.mark.req("R-BRG-008")
def test_a_bridge_reset_that_reaches_below_is_blamed_on_the_reset_of_a_bridge() -> None:
    reset = Op(OpKind.RESET, vm=VM, bdf=BRIDGE)
    trace = [*chain_with_nic(), reset, cw(BRIDGE, 0x18, 4, 0x0002_0100), cr(LOWER, 0x04)]
    found = blamed(buggy(BridgeResetGoesDeep), trace)
    assert found.requirements == ("R-BRG-008",)
    assert found.step == step_of(trace, reset)


# --------------------------------------------------------------------------- snapshots (R-BLOB-007, -008)


TREE_AND_ROOT = [*PROLOGUE, plug(BRIDGE, "pci-bridge"), cw(BRIDGE, 0x18, 4, 0x0001_0100),
                 plug(LOWER, "e1000"), plug(Bdf(0, 2, 0), "edu")]  # fmt: skip
"""A bridge on bus 0 with an e1000 below it on bus 1, and an edu on bus 0 after the bridge."""


def _reordered(snapshot: bytes, order: Sequence[int]) -> bytes:
    """``snapshot`` with its devices in ``order`` (indices of the original), parents and map order
    renumbered to match."""
    rec = decode_snapshot(snapshot)
    assert rec.parents is not None
    where = {old: new for new, old in enumerate(order)}
    parents = tuple(None if rec.parents[old] is None else where[rec.parents[old]] for old in order)  # type: ignore[index]
    return encode_snapshot(
        type(rec)(rec.ecam_base, rec.cf8, tuple(rec.devices[old] for old in order),
                  tuple((where[index], bar) for index, bar in rec.map_order), parents)
    )  # fmt: skip


class SnapshotRootsLastFirst(DataManager):
    """Lists the subtrees of a VM's root buses last first: the same tree, not in tree order (R-BLOB-007)."""

    def snapshot(self, vm_id: int) -> bytes:
        blob = super().snapshot(vm_id)
        rec = decode_snapshot(blob)
        if rec.parents is None:
            return blob
        starts = [k for k, parent in enumerate(rec.parents) if parent is None] + [len(rec.parents)]
        subtrees = [list(range(a, b)) for a, b in itertools.pairwise(starts)]
        return _reordered(blob, [k for subtree in reversed(subtrees) for k in subtree])


@pytest.mark.req("R-BLOB-007")
def test_a_snapshot_with_bridges_out_of_tree_order_is_the_device_order_rule() -> None:
    """Its own reader refuses such a snapshot: the writer broke the devices section's order."""
    trace = [*TREE_AND_ROOT, Op(OpKind.SNAPSHOT, vm=VM, name="s")]
    found = blamed(buggy(SnapshotRootsLastFirst), trace)
    assert found.requirements == ("R-BLOB-007",)


class SnapshotAdoptsLastRoot(DataManager):
    """Records the last instance of a snapshot as sitting below the first bridge, with bus byte 0: a
    valid topology section of another tree (R-BLOB-008)."""

    def snapshot(self, vm_id: int) -> bytes:
        blob = super().snapshot(vm_id)
        rec = decode_snapshot(blob)
        if rec.parents is None or rec.parents[-1] is not None:
            return blob
        packed, last = rec.devices[-1]
        devices = (*rec.devices[:-1], (packed & 0xFF, last))
        return encode_snapshot(type(rec)(rec.ecam_base, rec.cf8, devices, rec.map_order,
                                         (*rec.parents[:-1], 0)))  # fmt: skip


@pytest.mark.req("R-BLOB-008")
def test_a_snapshot_whose_topology_rebuilds_another_tree_is_the_topology_rule() -> None:
    trace = [*TREE_AND_ROOT, Op(OpKind.SNAPSHOT, vm=VM, name="s")]
    found = blamed(buggy(SnapshotAdoptsLastRoot), trace)
    assert found.requirements == ("R-BLOB-008",)
    assert "another tree" in found.reason
