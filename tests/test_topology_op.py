"""The ``topology`` trace operation (R-BRG-010) and firmware writes of fixed machines (R-BRG-003)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from vpcid.adapters.base import AdapterInfo, FixedMachine
from vpcid.adapters.reference import ModelAdapter
from vpcid.adapters.vfio_user.adapter import DECLINED_BRIDGE, declined_reason
from vpcid.conformance.cases import system_cases
from vpcid.conformance.certify import certify, implicated, skipped_cases
from vpcid.conformance.engine import Differential, format_observation
from vpcid.conformance.trace import (
    EXTENSIONS,
    FULL,
    INTROSPECTION,
    Observation,
    Op,
    OpKind,
    TraceError,
    parse_lines,
)
from vpcid.model import Bdf, ConfigSpace, DataManager, DeviceTypeError, Profile
from vpcid.model.catalog import (
    EDU,
    PCI_BRIDGE,
    PCIE_ROOT_PORT,
    QEMU_EXPRESS_PORT_CONTROL,
    X3130_UPSTREAM,
    XIO3130_DOWNSTREAM,
)
from vpcid.model.header import bridge_registers
from vpcid.model.manager import TopologyNode

VM = 1
CASE = "bridges/bridge-topology"


def topology_case_ops() -> list[Op]:
    (case,) = [c for c in system_cases() if f"{c.group}/{c.name}" == CASE]
    return [Op(OpKind.INIT), *case.ops]


@pytest.mark.req("R-BRG-010")
def test_topology_operation_and_observation_round_trip() -> None:
    rows = [["00:01.0", None, 0, 1, 0, "pci-bridge", 1], [None, 0, None, 3, 0, "edu", None]]
    line = {"op": "topology", "vm": 1, "expect": {"topology": rows}}
    _, (step,) = parse_lines([json.dumps(line)])
    assert step.op == Op(OpKind.TOPOLOGY, vm=1)
    assert step.expect is not None
    assert step.expect.topology == (
        ("00:01.0", None, 0, 1, 0, "pci-bridge", 1),
        (None, 0, None, 3, 0, "edu", None),
    )
    assert step.to_json() == line
    assert "00:01.0 pci-bridge (slot 1.0, root bus 0) secondary 1" in format_observation(step.expect)
    assert "unreachable edu (slot 3.0, below #0)" in format_observation(step.expect)


@pytest.mark.parametrize(
    "row",
    [["00:01.0", None, 0, 1, 0, "pci-bridge"], ["00:01.0", None, -1, 1, 0, "x", None],
     [1, None, 0, 1, 0, "x", None], ["00:01.0", None, 0, 1, 0, 7, None], "row"],
)  # fmt: skip
def test_a_malformed_topology_row_is_a_trace_error(row: object) -> None:
    with pytest.raises(TraceError, match="topology row"):
        Observation.from_json({"topology": [row]})


def test_topology_is_introspection_apart_from_the_full_api() -> None:
    """An adapter declaring ``FULL | EXTENSIONS`` (written before ``topology``) does not claim it."""
    assert OpKind.TOPOLOGY in INTROSPECTION
    assert OpKind.TOPOLOGY not in FULL | EXTENSIONS
    assert frozenset(OpKind) == FULL | EXTENSIONS | INTROSPECTION
    assert OpKind.TOPOLOGY in ModelAdapter().info.operations
    assert implicated(Op(OpKind.TOPOLOGY, vm=VM), None) == ("R-BRG-010",)


@pytest.mark.req("R-BRG-010")
def test_the_reference_adapter_observes_the_managers_tree() -> None:
    model = ModelAdapter()
    for op in topology_case_ops():
        observed = model.execute(op)
        if op.kind is OpKind.TOPOLOGY and op.vm == VM:
            nodes = model.manager.topology(VM)
            assert observed.topology == tuple(
                (None if n.bdf is None else str(n.bdf), n.parent, n.root_bus, n.device, n.function,
                 n.type_name, n.secondary)
                for n in nodes
            )  # fmt: skip
    assert model.execute(Op(OpKind.TOPOLOGY, vm=VM + 1)).error == "unknown-vm"


class _NoSecondary(DataManager):
    """A planted bug: the topology never names a bridge's secondary bus number."""

    def topology(self, vm_id: int) -> tuple[TopologyNode, ...]:
        return tuple(
            TopologyNode(n.bdf, n.parent, n.root_bus, n.device, n.function, n.type_name, None, n.windows)
            for n in super().topology(vm_id)
        )


@pytest.mark.req("R-BRG-010")
def test_the_topology_case_catches_a_tree_without_secondary_numbers() -> None:
    ops = topology_case_ops()
    assert Differential(ModelAdapter()).run(ops) is None
    divergence = Differential(ModelAdapter(manager_factory=_NoSecondary)).run(ops)
    assert divergence is not None
    assert divergence.op.kind is OpKind.TOPOLOGY


@pytest.mark.req("R-BRG-010")
def test_cases_needing_topology_are_skipped_with_the_adapters_reason() -> None:
    without = AdapterInfo("plain", Profile(), operations=FULL | EXTENSIONS)
    skipped = skipped_cases(without)
    assert skipped[CASE] == "needs topology: adapter 'plain' does not declare topology"
    reasoned = AdapterInfo(
        "reasoned", Profile(), operations=FULL | EXTENSIONS,
        unsupported_reasons=((OpKind.TOPOLOGY, "its implementation has no introspection"),),
    )  # fmt: skip
    assert skipped_cases(reasoned)[CASE] == "needs topology: its implementation has no introspection"
    assert CASE not in skipped_cases(ModelAdapter().info)


@pytest.mark.req("R-BRG-003")
def test_firmware_writes_number_a_bridge_before_what_is_below_it_is_plugged() -> None:
    """``FixedMachine.firmware``: each write right after its device is plugged, so the device listed at
    01:00.0 goes onto the bridge's secondary bus, not onto a root bus 1."""
    devices = ((Bdf(0, 4, 0), PCI_BRIDGE), (Bdf(1, 0, 0), EDU))
    numbering = (Bdf(0, 4, 0), 0x18, 4, 0x0001_0100)
    with_firmware = ModelAdapter(machine=FixedMachine(VM, devices, firmware=(numbering,)))
    rows = with_firmware.execute(Op(OpKind.TOPOLOGY, vm=VM)).topology
    assert rows == (("00:04.0", None, 0, 4, 0, "pci-bridge", 1), ("01:00.0", 0, None, 0, 0, "edu", None))
    bare = ModelAdapter(machine=FixedMachine(VM, devices))
    assert bare.execute(Op(OpKind.TOPOLOGY, vm=VM)).topology == (
        ("00:04.0", None, 0, 4, 0, "pci-bridge", None), ("01:00.0", None, 1, 0, 0, "edu", None),
    )  # fmt: skip
    with_firmware.execute(Op(OpKind.RESET_VM, vm=VM))  # power-on numbers again; firmware runs at init only
    below = Op(OpKind.CONFIG_READ, vm=VM, bdf=Bdf(1, 0, 0), width=2)
    assert with_firmware.execute(below).value == 0xFFFF  # bus 1 names nothing now (R-ACC-006)
    with_firmware.execute(Op(OpKind.INIT))
    assert with_firmware.execute(below).value == EDU.vendor_id


class _Declining:
    """The reference model behind a fixed machine, declaring a bridge it left out (as vfio-user does)."""

    def __init__(self) -> None:
        self.model = ModelAdapter(machine=FixedMachine(VM, ((Bdf(0, 2, 0), EDU),)))
        self.info = dataclasses.replace(
            self.model.info, name="declining", declined_types=(("pci-bridge", DECLINED_BRIDGE),)
        )

    def execute(self, op: Op) -> Observation:
        return self.model.execute(op)

    def close(self) -> None:
        self.model.close()


@pytest.mark.req("R-BRG-001")
def test_the_vfio_user_adapter_declines_bridges_and_the_report_lists_them() -> None:
    """A vfio-user server is one function: a type 1 type is declined with its reason, which the
    certification report lists with the other declined types; the adapter has no ``topology``."""
    assert declined_reason(PCI_BRIDGE) == DECLINED_BRIDGE
    assert declined_reason(EDU) is None
    report = certify(_Declining(), 200, 0)
    assert report.declined_types == {"pci-bridge": DECLINED_BRIDGE}
    assert report.to_json()["declined_types"] == {"pci-bridge": DECLINED_BRIDGE}
    assert report.conformant


# ------------------------------------------------------------------ QEMU's PCI Express ports (R-BRG-001)


@pytest.mark.req("R-BRG-001")
def test_qemus_express_ports_have_their_measured_bridge_registers() -> None:
    """pcie-root-port, x3130-upstream and xio3130-downstream: bridge control 0x005F, secondary status 0;
    the root port powers on with its windows closed, as QEMU's rp_reset leaves them."""
    for t in (PCIE_ROOT_PORT, X3130_UPSTREAM, XIO3130_DOWNSTREAM):
        assert t.bridge == QEMU_EXPRESS_PORT_CONTROL
        assert t.declared.word(0x3E, 2, "wmask") == 0x005F
        assert t.declared.word(0x1E, 2) == 0
    assert PCI_BRIDGE.declared.word(0x3E, 2, "wmask") == 0x0BFF
    image = PCIE_ROOT_PORT.declared.image
    assert (image[0x1C], image[0x1D]) == (0xF0, 0x00)
    assert PCIE_ROOT_PORT.declared.word(0x20, 4) == 0x0000_FFF0
    assert PCIE_ROOT_PORT.declared.word(0x24, 4) == 0x0001_FFF1
    assert X3130_UPSTREAM.declared.word(0x20, 4) == 0


@pytest.mark.req("R-BRG-001")
def test_a_closed_root_port_stays_closed_and_reset_closes_it_again() -> None:
    """Nothing below a powered-on root port is forwarded; after a window is opened and the port reset
    the closed power-on windows are back (R-BRG-001, R-BRG-005)."""
    manager = DataManager()
    manager.create_vm(VM)
    port = Bdf(0, 4, 0)
    manager.plug(VM, port, PCIE_ROOT_PORT)
    (node,) = manager.topology(VM)
    assert node.windows is not None
    assert manager.config_read(VM, port, 0x20, 4) == 0x0000_FFF0
    manager.config_write(VM, port, 0x20, 4, 0xE000_E000)
    assert manager.config_read(VM, port, 0x20, 4) == 0xE000_E000
    manager.reset(VM, port)
    assert manager.config_read(VM, port, 0x1C, 2) == 0x00F0
    assert manager.config_read(VM, port, 0x24, 4) == 0x0001_FFF1


@pytest.mark.req("R-BRG-001")
def test_window_address_bits_may_have_any_power_on_value_but_type_nibbles_may_not() -> None:
    """Only the read-only type nibbles and the masks of base and limit are rules (R-BRG-001)."""
    space = PCI_BRIDGE.declared
    image = bytearray(space.image)
    image[0x20:0x24] = bytes([0x50, 0x12, 0x30, 0x00])  # memory base 0x1250, limit 0x0030: any address bits
    image[0x1C] = 0xA0
    opened = ConfigSpace(bytes(image), space.wmask, space.w1cmask)
    assert bridge_registers(opened) == PCI_BRIDGE.bridge
    image[0x20] = 0x51  # a memory window's low nibble is read-only zero
    with pytest.raises(DeviceTypeError, match="0x020"):
        bridge_registers(ConfigSpace(bytes(image), space.wmask, space.w1cmask))
    image[0x20] = 0x50
    image[0x24] = 0xF0  # base says 32-bit prefetchable, its limit still says 64-bit
    with pytest.raises(DeviceTypeError, match=r"0x026: .* 32-bit prefetchable"):
        bridge_registers(ConfigSpace(bytes(image), space.wmask, space.w1cmask))


@pytest.mark.req("R-BRG-010")
def test_the_cython_backend_answers_topology_per_call_and_in_a_batch() -> None:
    """The compiled adapter declares ``topology`` and observes what the model does, whether each
    operation is executed on its own or the whole trace runs as one compiled batch (where each
    observation is the tree at its step, not at the end)."""
    from vpcid.adapters import cython as backend

    if not backend.available():
        pytest.skip(f"Cython backend not built: {backend.UNAVAILABLE_REASON}")
    ops = topology_case_ops()
    assert ops.count(Op(OpKind.TOPOLOGY, vm=VM)) >= 2
    compiled = backend.adapter(None)
    assert OpKind.TOPOLOGY in compiled.info.operations
    assert CASE not in skipped_cases(compiled.info)
    model = ModelAdapter()
    expected = [model.execute(op) for op in ops]
    trees = [o.topology for o in expected if o.topology is not None]
    assert len(set(trees)) >= 3  # the tree changes along the trace
    assert [compiled.execute(op) for op in ops] == expected
    assert backend.adapter(None).execute_all(ops) == expected
