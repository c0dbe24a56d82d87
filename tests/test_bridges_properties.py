"""Random bridge trees: routing, forwarding and snapshots checked against independent oracles
(R-BRG-002, R-BRG-003, R-BRG-006, R-BRG-009)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vpcid.model import Bdf, DataManager, SlotOccupied
from vpcid.model.catalog import E1000, PCI_BRIDGE
from vpcid.model.manager import Instance, VmElement
from vpcid.model.topology import claims

VM = 1
BAR = 0xE000_0000


def oracle_route(vm: VmElement, number: int) -> Instance | None:
    """R-BRG-003 read literally: which bridge's secondary bus ``number`` names, walking from the root."""
    if number == 0 or vm.roots.get(number):
        return None
    level = [vm.roots[r][k] for r in sorted(vm.roots) for k in sorted(vm.roots[r])]
    while True:
        bridges = [b for b in level if b.dtype.bridge is not None and claims(b.config, number)]
        if not bridges:
            return None
        if bridges[0].config[0x19] == number:
            return bridges[0]
        level = [bridges[0].children[k] for k in sorted(bridges[0].children)]


def oracle_reaches(inst: Instance, address: int) -> bool:
    """R-BRG-006 read literally: every bridge above forwards ``address`` (memory)."""
    bridge = inst.parent
    while bridge is not None:
        command = int.from_bytes(bridge.config[4:6], "little")
        base = (int.from_bytes(bridge.config[0x20:0x22], "little") & 0xFFF0) << 16
        limit = (int.from_bytes(bridge.config[0x22:0x24], "little") & 0xFFF0) << 16 | 0xFFFFF
        if not command & 2 or not base <= address <= limit:
            return False
        bridge = bridge.parent
    return True


Step = tuple[str, int, int, int, int]
STEP = st.one_of(
    st.tuples(st.just("bridge"), st.integers(0, 5), st.integers(0, 3), st.integers(1, 6), st.integers(0, 2)),
    st.tuples(st.just("nic"), st.integers(0, 5), st.integers(0, 3), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("buses"), st.integers(0, 7), st.integers(0, 6), st.integers(0, 6), st.just(0)),
    st.tuples(
        st.just("window"),
        st.integers(0, 7),
        st.sampled_from([0xE000_E000, 0xE010_E010, 0x0000_FFF0]),
        st.just(0),
        st.just(0),
    ),
    st.tuples(st.just("command"), st.integers(0, 7), st.sampled_from([0, 2]), st.just(0), st.just(0)),
    st.tuples(st.just("reset"), st.integers(0, 7), st.just(0), st.just(0), st.just(0)),
    st.tuples(st.just("unplug"), st.integers(0, 7), st.just(0), st.just(0), st.just(0)),
)
"""Plug a forwarding bridge (secondary ``c``, subordinate ``c + d``) or a NIC (BAR at slot ``c``) at
bus ``a`` device ``b + 1``; write a bridge's bus numbers, memory window or command; secondary bus reset
of a bridge; unplug."""


@pytest.mark.req("R-BRG-002", "R-BRG-003", "R-BRG-006", "R-BRG-007", "R-BRG-009")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=14))
def test_random_trees_route_forward_and_snapshot_as_the_rules_say(
    steps: list[tuple[str, int, int, int, int]],
) -> None:
    dm = DataManager()
    dm.create_vm(VM)
    for kind, a, b, c, d in steps:
        vm = dm._vm(VM)
        tree = list(vm.tree())
        bridges = [i for i in tree if i.dtype.bridge is not None and i.bdf is not None]
        target = bridges[a % len(bridges)] if bridges else None
        try:
            if kind == "bridge":
                bdf = Bdf(a, 1 + b, 0)
                dm.plug(VM, bdf, PCI_BRIDGE)
                dm.config_write(VM, bdf, 0x18, 4, a | c << 8 | (c + d) << 16)
                dm.config_write(VM, bdf, 0x20, 4, 0xE000_E000)
                dm.config_write(VM, bdf, 4, 2, 2)
            elif kind == "nic":
                bdf = Bdf(a, 1 + b, 0)
                dm.plug(VM, bdf, E1000)
                dm.config_write(VM, bdf, 0x10, 4, BAR + c * 0x2_0000)
                dm.config_write(VM, bdf, 4, 2, 2)
            elif kind == "unplug":
                reachable = [i.bdf for i in tree if i.bdf is not None]
                if reachable:
                    dm.unplug(VM, reachable[a % len(reachable)])
            elif target is not None and target.bdf is not None:
                if kind == "buses":
                    dm.config_write(VM, target.bdf, 0x18, 4, b << 8 | c << 16)
                elif kind == "window":
                    dm.config_write(VM, target.bdf, 0x20, 4, b)
                elif kind == "command":
                    dm.config_write(VM, target.bdf, 4, 2, b)
                else:
                    below = list(target.below())
                    dm.config_write(VM, target.bdf, 0x3E, 2, 0x40)
                    dm.config_write(VM, target.bdf, 0x3E, 2, 0)
                    assert all(i.config == i.layout.image for i in below)  # R-BRG-007
        except SlotOccupied:
            pass
        vm = dm._vm(VM)
        for number in range(256):  # R-BRG-003
            assert vm.bus_owner.get(number) is oracle_route(vm, number), number
        for inst in vm.tree():  # R-BRG-002, R-BRG-003: the table holds exactly the reachable
            if inst.bdf is not None:
                assert vm.config_table[inst.bdf] is inst
        assert len(vm.config_table) == sum(1 for i in vm.tree() if i.bdf is not None)
        for k in range(4):  # R-BRG-006
            address = BAR + k * 0x2_0000
            owners = [i for i in vm.tree() if 0 in i.mappings and i.mappings[0].base == address]
            owners.sort(key=lambda i: i.bdf.packed if i.bdf is not None else 0x10000)  # lowest BDF first
            winner = next((i for i in owners if oracle_reaches(i, address)), None)
            want = None if winner is None or winner.bdf is None else (winner.bdf, 0)
            assert dm.resolve(VM, "memory", address) == want
    snap = dm.snapshot(VM)  # R-BRG-009
    dm.restore_vm(2, snap)
    assert dm.snapshot(2) == snap
    assert dm.topology(2) == dm.topology(VM)
