"""The public Hypothesis strategies: BAR accesses, offsets aimed at registers, whole traces."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance import strategies
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.engine import Differential
from vpcid.conformance.strategies import BarAccess, bar_accesses, bar_offsets, traces
from vpcid.conformance.trace import GUEST_VIEW, OpKind
from vpcid.model import BarKind, BarSpec, DeviceType
from vpcid.model.devicetype import ROM_INDEX

KITCHEN_SINK = SUITE_TYPES["kitchen-sink"]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def region_size(dtype: DeviceType, index: int) -> int:
    if index == ROM_INDEX:
        assert dtype.rom is not None
        return dtype.rom.size
    bar = dtype.bar(index)
    assert bar is not None
    return bar.size


def test_every_public_strategy_is_exported_and_documented() -> None:
    for name in strategies.__all__:
        thing = getattr(strategies, name)
        assert thing is not None
        if callable(thing):
            assert (thing.__doc__ or "").strip(), f"{name} has no docstring"


@FAST
@given(bar_accesses(KITCHEN_SINK))
def test_bar_accesses_stay_inside_the_bar_and_never_write_the_rom(access: BarAccess) -> None:
    assert access.bar in KITCHEN_SINK.implemented
    assert access.offset >= 0
    assert access.offset + access.width <= region_size(KITCHEN_SINK, access.bar)
    if access.bar == ROM_INDEX:
        assert not access.write
    spec = KITCHEN_SINK.bar(access.bar) if access.bar != ROM_INDEX else None
    if spec is not None and spec.kind is BarKind.IO:
        assert access.width <= 4
    assert 0 <= access.value < 1 << (8 * access.width)
    assert access.write or access.value == 0


def test_bar_accesses_reach_both_ends_of_a_small_bar() -> None:
    first = find(bar_accesses(KITCHEN_SINK, bar=4), lambda a: a.offset == 0 and a.width == 4 and a.write)
    last = find(bar_accesses(KITCHEN_SINK, bar=4), lambda a: a.offset + a.width == 16)
    assert (first.bar, last.bar) == (4, 4)


def test_bar_offsets_aim_at_declared_registers_and_their_last_byte() -> None:
    registers = [(0x100, 4), (0x2000, 2)]
    for wanted in (0x100, 0x103, 0x2001):
        assert find(bar_offsets(0x10000, registers), lambda o, w=wanted: o == w) == wanted


def test_bar_strategies_refuse_what_does_not_exist() -> None:
    barless = DeviceType(name="barless", vendor_id=0x1234, device_id=1, class_code=0xFF0000)
    with pytest.raises(ValueError, match="implements no BAR"):
        find(bar_accesses(barless), lambda _: True)
    with pytest.raises(ValueError, match="no BAR 3"):
        find(bar_accesses(SUITE_TYPES["e1000"], bar=3), lambda _: True)
    with pytest.raises(ValueError, match="positive size"):
        bar_offsets(0)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(traces(devices=2, max_moves=12))
def test_a_whole_trace_defines_its_type_and_runs_on_the_reference(ops: list) -> None:  # type: ignore[type-arg]
    assert [op.kind for op in ops[:3]] == [OpKind.INIT, OpKind.DEFINE_TYPE, OpKind.CREATE_VM]
    assert sum(op.kind is OpKind.PLUG for op in ops[:6]) == 2
    assert Differential(ModelAdapter()).replay(ops) is None


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_a_trace_of_a_given_type_keeps_to_the_operations_asked_for(data: st.DataObject) -> None:
    dtype = SUITE_TYPES["e1000"]
    ops = data.draw(traces(dtype, operations=GUEST_VIEW | {OpKind.CREATE_VM, OpKind.PLUG}, max_moves=8))
    allowed = GUEST_VIEW | {OpKind.CREATE_VM, OpKind.PLUG, OpKind.DEFINE_TYPE}
    assert {op.kind for op in ops} <= allowed
    assert any(op.kind is OpKind.PLUG and op.name == "e1000" for op in ops)


def test_a_drawn_bar_layout_is_a_valid_type_s() -> None:
    layout = find(
        strategies.bar_layouts(), lambda bars: any(b is not None and b.kind is BarKind.MEM64 for b in bars)
    )
    assert any(isinstance(b, BarSpec) for b in layout)
