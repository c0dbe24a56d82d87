"""QEMU 7.2's PCI bridges through raw qtest: pcie-root-port, pci-bridge and the x3130 switch.

Each test starts a paused q35 machine with bridges and devices behind them and does, through ECAM, what
firmware and a guest would: number the buses, open windows, reset a secondary bus. What QEMU does is
pinned here byte for byte, without the model, with the QEMU source that makes it so; where it differs
from the bridge rules of spec/requirements/08-bridges.md the test is named ``test_finding_...``.
(QEMU changes: these tests fail.) Without QEMU the module skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from vpcid.adapters.qemu import adapter
from vpcid.adapters.qemu.adapter import QEMU_PROFILE
from vpcid.adapters.qemu.discover import DeviceSpec, discover, prepare
from vpcid.adapters.qemu.qtest import Guest, QemuProcess, QemuUnavailable, qemu_binary
from vpcid.conformance.certify import CertificationReport, Verdict, certify, load_waivers
from vpcid.conformance.traceability import load_requirements
from vpcid.conformance.typefile import read_type_file, write_type_file
from vpcid.model import Bdf
from vpcid.model.catalog import BRIDGES
from vpcid.model.profile import BridgeIsa, BridgeWindows

if qemu_binary() is None:
    pytest.skip("qemu-system-x86_64 is not installed (run .ci/install-debian.sh)", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("no_leftover_qemu")

ROOT_PORT = "pcie-root-port,id=rp1,bus=pcie.0,addr=04.0,chassis=1,slot=1"
PCI_BRIDGE = "pci-bridge,id=pb1,bus=pcie.0,addr=05.0,chassis_nr=2"
SWITCH_PORT = "pcie-root-port,id=rp2,bus=pcie.0,addr=06.0,chassis=3,slot=3"
UPSTREAM = "x3130-upstream,id=up,bus=rp2,addr=00.0"
DOWNSTREAM = "xio3130-downstream,id=dn,bus=up,addr=00.0,chassis=4,slot=4"
EDU_ID, TESTDEV_ID, VGA_ID = 0x11E8_1234, 0x0005_1B36, 0x1111_1234
ROOT_PORT_ID, PCI_BRIDGE_ID, UPSTREAM_ID, DOWNSTREAM_ID = 0x000C_1B36, 0x0001_1B36, 0x8232_104C, 0x8233_104C
NOTHING = 0xFFFF_FFFF
BUS_NUMBERS, IO_BASE, IO_LIMIT, MEMORY_BASE, MEMORY_LIMIT = 0x18, 0x1C, 0x1D, 0x20, 0x22
PREF_BASE, PREF_LIMIT, PREF_BASE_UPPER, PREF_LIMIT_UPPER, BRIDGE_CONTROL = 0x24, 0x26, 0x28, 0x2C, 0x3E
SECONDARY_BUS_RESET, ISA_ENABLE, VGA_ENABLE = 0x40, 0x04, 0x08


def bdf(bus: int, device: int, function: int = 0) -> int:
    return bus << 8 | device << 3 | function


@contextmanager
def machine(*devices: str) -> Iterator[Guest]:
    """A paused q35 machine with ``devices`` (``-device`` arguments), ECAM opened; killed afterwards."""
    qemu = QemuProcess.spawn(["-machine", "q35", "-m", "64M", *(a for d in devices for a in ("-device", d))])
    try:
        yield prepare(qemu)
    finally:
        qemu.kill()


def number(guest: Guest, bridge: int, primary: int, secondary: int, subordinate: int) -> None:
    """Write a bridge's three bus numbers (0x18-0x1A) in one dword, as firmware does."""
    guest.config_write(bridge, BUS_NUMBERS, 4, subordinate << 16 | secondary << 8 | primary)


def masks(guest: Guest, function: int, offsets: range) -> dict[int, tuple[int, int, int]]:
    """Per byte: (power-on value, read after writing 0xff, read after writing 0x00); the value put back."""
    found = {}
    for offset in offsets:
        before = guest.config_read(function, offset, 1)
        guest.config_write(function, offset, 1, 0xFF)
        ones = guest.config_read(function, offset, 1)
        guest.config_write(function, offset, 1, 0x00)
        zeros = guest.config_read(function, offset, 1)
        guest.config_write(function, offset, 1, before)
        found[offset] = (before, ones, zeros)
    return found


# ------------------------------------------------------------------ the type 1 header's registers

EXPRESS_PORT_WINDOWS = {
    0x1C: (0xF0, 0xF0, 0x00), 0x1D: (0x00, 0xF0, 0x00),  # I/O base/limit: bits 7:4, 16-bit type 0
    0x20: (0xF0, 0xF0, 0x00), 0x21: (0xFF, 0xFF, 0x00), 0x22: (0x00, 0xF0, 0x00), 0x23: (0x00, 0xFF, 0x00),
    0x24: (0xF1, 0xF1, 0x01), 0x25: (0xFF, 0xFF, 0x00), 0x26: (0x01, 0xF1, 0x01), 0x27: (0x00, 0xFF, 0x00),
    **dict.fromkeys(range(0x28, 0x30), (0x00, 0xFF, 0x00)),  # prefetchable upper 32 bits: RW
    **dict.fromkeys(range(0x30, 0x34), (0x00, 0x00, 0x00)),  # I/O upper 16 bits: RO 0
}  # fmt: skip
"""pcie-root-port's windows: bases and limits RW in their address bits, type nibbles read-only (16-bit I/O,
64-bit prefetchable), and power-on values that close every window (rp_reset in
hw/pci-bridge/pcie_root_port.c calls pci_bridge_disable_base_limit after pci_bridge_reset)."""


def zeroed(windows: dict[int, tuple[int, int, int]]) -> dict[int, tuple[int, int, int]]:
    """The same masks with power-on values of zero except the read-only type nibbles."""
    return {offset: (ones & ~writable_bits(ones, zeros), ones, zeros) for offset, (_, ones, zeros) in
            windows.items()}  # fmt: skip


def writable_bits(ones: int, zeros: int) -> int:
    return ones & ~zeros


@pytest.mark.req("R-BRG-001")
def test_root_port_header_registers() -> None:
    """Bus numbers and the secondary latency timer RW, the windows as above, bridge control 0x5F, interrupt
    line RW (pci_init_mask_bridge in hw/pci/pci.c)."""
    with machine(ROOT_PORT) as guest:
        found = masks(guest, bdf(0, 4), range(0x18, 0x40))
    assert {o: found[o] for o in range(0x18, 0x1C)} == dict.fromkeys(range(0x18, 0x1C), (0x00, 0xFF, 0x00))
    assert {o: found[o] for o in EXPRESS_PORT_WINDOWS} == EXPRESS_PORT_WINDOWS
    assert found[0x3C] == (0x00, 0xFF, 0x00)
    assert (found[0x3E], found[0x3F]) == ((0x00, 0x5F, 0x00), (0x00, 0x00, 0x00))


@pytest.mark.req("R-BRG-001")
def test_switch_ports_header_registers() -> None:
    """x3130-upstream and xio3130-downstream: the root port's masks, but windows zero at power-on
    (xio3130 reset runs pci_bridge_reset only): open windows at 0, gated by the command register alone."""
    with machine(SWITCH_PORT, UPSTREAM, DOWNSTREAM) as guest:
        number(guest, bdf(0, 6), 0, 1, 2)
        number(guest, bdf(1, 0), 1, 2, 2)
        assert guest.config_read(bdf(1, 0), 0, 4) == UPSTREAM_ID
        assert guest.config_read(bdf(2, 0), 0, 4) == DOWNSTREAM_ID
        found = [masks(guest, port, range(0x1B, 0x40)) for port in (bdf(1, 0), bdf(2, 0))]
    for port in found:
        assert {o: port[o] for o in EXPRESS_PORT_WINDOWS} == zeroed(EXPRESS_PORT_WINDOWS)
        assert port[0x1B] == (0x00, 0xFF, 0x00)
        assert (port[0x3E], port[0x3F]) == ((0x00, 0x5F, 0x00), (0x00, 0x00, 0x00))


@pytest.mark.req("R-BRG-001")
def test_pci_bridge_header_registers() -> None:
    """pci-bridge (conventional): windows zero at power-on; secondary status 66MHz and fast back-to-back
    (pci_bridge_initfn); bridge control bits 0-9 and 11 writable (conventional PCI's fast back-to-back and
    discard timer bits as well; bit 10, the discard timer status, is RW1C)."""
    with machine(PCI_BRIDGE) as guest:
        found = masks(guest, bdf(0, 5), range(0x18, 0x40))
    assert {o: found[o] for o in range(0x18, 0x1C)} == dict.fromkeys(range(0x18, 0x1C), (0x00, 0xFF, 0x00))
    assert {o: found[o] for o in EXPRESS_PORT_WINDOWS} == zeroed(EXPRESS_PORT_WINDOWS)
    assert found[0x1E] == (0xA0, 0xA0, 0xA0)
    assert (found[0x3E], found[0x3F]) == ((0x00, 0xFF, 0x00), (0x00, 0x0B, 0x00))


@pytest.mark.req("R-BRG-001")
def test_secondary_latency_timer_is_writable_on_express_ports() -> None:
    """PCIe Base 7.5.1.3.5 makes the secondary latency timer of a PCI Express port read-only zero. QEMU 7.2
    leaves it writable on pcie-root-port and the xio3130 ports: pci_bridge_initfn (hw/pci/pci_bridge.c)
    clears its write mask only from QEMU 8.2 (machine types after 8.1: x-pci-express-writeable-slt-bug).
    R-BRG-001 lets a type declare either, so the discovered types say writable and certification agrees."""
    with machine(ROOT_PORT) as guest:
        guest.config_write(bdf(0, 4), 0x1B, 1, 0x40)
        assert guest.config_read(bdf(0, 4), 0x1B, 1) == 0x40


# ------------------------------------------------------------------ routing by bus number


@pytest.mark.req("R-BRG-003")
def test_bus_numbers_route_configuration_requests() -> None:
    """Nothing behind a bridge answers until its secondary bus has a number; then the functions below answer
    at that number, also two levels down (root port -> switch upstream -> downstream -> edu)."""
    with machine(
        ROOT_PORT, "edu,bus=rp1,addr=00.0", SWITCH_PORT, UPSTREAM, DOWNSTREAM, "edu,bus=dn,addr=00.0"
    ) as g:
        assert [g.config_read(bdf(bus, 0), 0, 4) for bus in (1, 2, 3, 4)] == [NOTHING] * 4
        assert g.config_read(bdf(0, 4), 0, 4) == ROOT_PORT_ID
        number(g, bdf(0, 4), 0, 1, 1)
        number(g, bdf(0, 6), 0, 2, 4)
        assert g.config_read(bdf(1, 0), 0, 4) == EDU_ID
        assert g.config_read(bdf(2, 0), 0, 4) == UPSTREAM_ID
        assert g.config_read(bdf(3, 0), 0, 4) == NOTHING  # in range, but the upstream port has no number yet
        number(g, bdf(2, 0), 2, 3, 4)
        number(g, bdf(3, 0), 3, 4, 4)
        assert [g.config_read(bdf(bus, 0), 0, 4) for bus in (3, 4, 5)] == [DOWNSTREAM_ID, EDU_ID, NOTHING]
        assert g.config_read(bdf(4, 1), 0, 4) == NOTHING


@pytest.mark.req("R-BRG-003")
def test_secondary_above_subordinate_still_routes_the_secondary_number() -> None:
    """A bridge takes its secondary bus number whatever its subordinate says (R-BRG-003, as the bridge
    architecture tests the two separately); QEMU does the same, comparing a bus's number with the
    request's before any range check (pci_find_bus_nr in hw/pci/pci.c): secondary 1, subordinate 0 still
    reaches edu at 01:00.0."""
    with machine(ROOT_PORT, "edu,bus=rp1,addr=00.0") as guest:
        number(guest, bdf(0, 4), 0, 1, 0)
        assert guest.config_read(bdf(1, 0), 0, 4) == EDU_ID


def test_finding_overlapping_ranges_go_to_the_bridge_created_last() -> None:
    """Two root-bus bridges claiming the same bus: the spec routes it through the first by (device,
    function); QEMU through the bridge created last, as pci_bridge_initfn puts each secondary bus at the
    head of the parent's child list (QLIST_INSERT_HEAD) and pci_find_bus_nr takes the first in it."""
    with machine(ROOT_PORT, "edu,bus=rp1,addr=00.0", SWITCH_PORT, UPSTREAM) as guest:
        number(guest, bdf(0, 4), 0, 2, 3)
        number(guest, bdf(0, 6), 0, 2, 3)
        assert guest.config_read(bdf(2, 0), 0, 4) == UPSTREAM_ID  # behind 00:06.0, the later -device


def test_finding_secondary_bus_reset_hides_the_buses_past_the_secondary() -> None:
    """While Secondary Bus Reset (bridge control bit 6) is set, pci_secondary_bus_in_range (hw/pci/pci.c)
    refuses every bus number, so QEMU does not walk past the secondary bus: the switch's downstream bus
    reads all ones, while the secondary bus itself still answers (its number is compared first). The spec
    routes by bus numbers alone."""
    with machine(SWITCH_PORT, UPSTREAM, DOWNSTREAM, "edu,bus=dn,addr=00.0") as guest:
        number(guest, bdf(0, 6), 0, 1, 3)
        number(guest, bdf(1, 0), 1, 2, 3)
        number(guest, bdf(2, 0), 2, 3, 3)
        assert guest.config_read(bdf(3, 0), 0, 4) == EDU_ID
        guest.config_write(bdf(3, 0), 0x04, 2, 0x2)
        guest.config_write(bdf(0, 6), BRIDGE_CONTROL, 2, SECONDARY_BUS_RESET)
        assert guest.config_read(bdf(1, 0), 0, 4) == UPSTREAM_ID
        assert guest.config_read(bdf(3, 0), 0, 4) == NOTHING
        assert guest.config_read(bdf(0, 6), BRIDGE_CONTROL, 2) == SECONDARY_BUS_RESET


@pytest.mark.req("R-BRG-007")
def test_secondary_bus_reset_resets_everything_below() -> None:
    """Bit 6 from 0 to 1 resets the secondary bus and everything below (bus_cold_reset in
    pci_bridge_write_config): the switch ports' bus numbers go to 0, so edu is unreachable until firmware
    numbers them again, and then its command register reads 0. The bridge itself keeps its numbers."""
    with machine(SWITCH_PORT, UPSTREAM, DOWNSTREAM, "edu,bus=dn,addr=00.0") as guest:
        number(guest, bdf(0, 6), 0, 1, 3)
        number(guest, bdf(1, 0), 1, 2, 3)
        number(guest, bdf(2, 0), 2, 3, 3)
        guest.config_write(bdf(3, 0), 0x04, 2, 0x2)
        guest.config_write(bdf(0, 6), BRIDGE_CONTROL, 2, SECONDARY_BUS_RESET)
        guest.config_write(bdf(0, 6), BRIDGE_CONTROL, 2, 0)
        assert guest.config_read(bdf(0, 6), BUS_NUMBERS, 4) == 0x0003_0100
        assert guest.config_read(bdf(1, 0), BUS_NUMBERS, 4) == 0
        number(guest, bdf(1, 0), 1, 2, 3)
        assert guest.config_read(bdf(2, 0), BUS_NUMBERS, 4) == 0
        number(guest, bdf(2, 0), 2, 3, 3)
        assert guest.config_read(bdf(3, 0), 0, 4) == EDU_ID
        assert guest.config_read(bdf(3, 0), 0x04, 2) == 0


# ------------------------------------------------------------------ forwarding through windows

EDU_BAR = 0xC000_0000
EDU_IDENTIFICATION = 0x0100_00ED
"""What edu's register 0 reads (hw/misc/edu.c)."""


@pytest.mark.req("R-BRG-006")
def test_memory_forwarding_needs_the_window_and_the_command_bit() -> None:
    """edu's 1 MiB BAR behind a root port decodes only through the bridge: its memory window (bits 31:20 of
    base and limit) or its prefetchable one (which forwards a non-prefetchable BAR too, with the upper 32
    bits), and only with the bridge's Memory Space bit (pci_bridge_update_mappings). An address no window
    forwards reads 0 on q35."""
    with machine(ROOT_PORT, "edu,bus=rp1,addr=00.0") as guest:
        port, edu = bdf(0, 4), bdf(1, 0)
        number(guest, port, 0, 1, 1)
        guest.config_write(edu, 0x10, 4, EDU_BAR)
        guest.config_write(edu, 0x04, 2, 0x2)
        seen = [guest.mmio_read(EDU_BAR, 4)]  # windows closed at power-on
        guest.config_write(port, 0x04, 2, 0x2)
        seen.append(guest.mmio_read(EDU_BAR, 4))
        guest.config_write(port, MEMORY_BASE, 4, 0xC000_C000)  # base and limit: 0xc0000000-0xc00fffff
        seen.append(guest.mmio_read(EDU_BAR, 4))
        guest.config_write(port, 0x04, 2, 0x0)
        seen.append(guest.mmio_read(EDU_BAR, 4))
        guest.config_write(port, 0x04, 2, 0x2)
        guest.config_write(port, MEMORY_BASE, 4, 0x0000_FFF0)  # closed again
        guest.config_write(port, PREF_BASE, 4, 0xC001_C001)
        seen.append(guest.mmio_read(EDU_BAR, 4))
        guest.config_write(port, PREF_BASE_UPPER, 4, 1)
        guest.config_write(port, PREF_LIMIT_UPPER, 4, 1)  # now 0x1_c0000000-0x1_c00fffff
        seen.append(guest.mmio_read(EDU_BAR, 4))
        guest.config_write(port, PREF_BASE_UPPER, 4, 0)
        guest.config_write(port, PREF_LIMIT_UPPER, 4, 0)
        guest.config_write(edu, 0x10, 4, EDU_BAR + 0x10_0000)  # the BAR moves out of the window
        seen.append(guest.mmio_read(EDU_BAR + 0x10_0000, 4))
    assert seen == [0, 0, EDU_IDENTIFICATION, 0, EDU_IDENTIFICATION, 0, 0]


@pytest.mark.req("R-BRG-011")
def test_isa_enable_does_not_stop_forwarding_the_declared_variant() -> None:
    """With ISA Enable (bridge control bit 2) a bridge forwards only the first 256 ports of every 1 KiB of
    its I/O window (PCI-to-PCI Bridge Architecture 1.2, 3.2.5.18). QEMU ignores the bit:
    pci_bridge_update_mappings maps the whole window. pci-testdev's I/O BAR at 0x2100 (bits 9:8 = 01) behind
    a pci-bridge with window 0x2000-0x2fff answers (reads 0; unforwarded ports read all ones) either way.
    QEMU's profile declares it: V-BRIDGE-ISA ``ignored`` (R-BRG-011)."""
    assert QEMU_PROFILE.bridge_isa is BridgeIsa.IGNORED
    assert QEMU_PROFILE.bridge_windows is BridgeWindows.ENFORCED
    with machine(PCI_BRIDGE, "pci-testdev,bus=pb1,addr=03.0") as guest:
        bridge, testdev = bdf(0, 5), bdf(1, 3)
        number(guest, bridge, 0, 1, 1)
        assert guest.config_read(testdev, 0, 4) == TESTDEV_ID
        guest.config_write(testdev, 0x14, 4, 0x2100)
        guest.config_write(testdev, 0x04, 2, 0x1)
        seen = [guest.io_read(0x2100, 4)]
        guest.config_write(bridge, 0x04, 2, 0x1)
        guest.config_write(bridge, IO_BASE, 2, 0x2020)
        seen.append(guest.io_read(0x2100, 4))
        guest.config_write(bridge, BRIDGE_CONTROL, 2, ISA_ENABLE)
        seen.append(guest.io_read(0x2100, 4))
    assert seen == [NOTHING, 0, 0]


@pytest.mark.req("R-BRG-011")
def test_vga_enable_forwards_the_vga_ports() -> None:
    """VGA Enable (bit 3) forwards the VGA ports 0x3b0-0x3bb and 0x3c0-0x3df to a VGA behind the bridge,
    with the bridge's I/O Space bit (pci_bridge_init_vga_aliases, pci_register_vga): the Miscellaneous
    Output register at 0x3cc reads 0 through it and all ones without."""
    with machine(PCI_BRIDGE, "VGA,bus=pb1,addr=04.0") as guest:
        bridge, vga = bdf(0, 5), bdf(1, 4)
        number(guest, bridge, 0, 1, 1)
        assert guest.config_read(vga, 0, 4) == VGA_ID
        guest.config_write(vga, 0x04, 2, 0x3)
        seen = [guest.io_read(0x3CC, 1)]
        guest.config_write(bridge, BRIDGE_CONTROL, 2, VGA_ENABLE)
        seen.append(guest.io_read(0x3CC, 1))
        guest.config_write(bridge, 0x04, 2, 0x1)
        seen.append(guest.io_read(0x3CC, 1))
    assert seen == [0xFF, 0xFF, 0x00]


# ------------------------------------------------------------------ slots and FLR of the ports


def test_finding_a_slot_control_write_raises_slot_status_events() -> None:
    """A write to a port's Slot Control sets Command Completed (Slot Status bit 4) and, with
    Electromechanical Interlock Control (bit 11) written as one, toggles Electromechanical Interlock Status
    (bit 7), a read-only bit; EIC itself reads zero again (pcie_cap_slot_write_config and
    pcie_cap_slot_event in hw/pci/pcie.c). Per-byte masks cannot say a write to one register sets bits of
    another, and no configuration behaviour describes QEMU's hot-plug controller: certifying a root port
    or a downstream port reports it (R-DT-008, or the byte's rule when the write also covers it)."""
    with machine(ROOT_PORT + ",power_controller_present=off") as guest:
        port = bdf(0, 4)
        slot_control = 0x54 + 0x18  # the root port's PCI Express capability is at 0x54
        assert guest.config_read(port, slot_control, 4) == 0x0000_00C0
        guest.config_write(port, slot_control, 2, 0x0800)  # EIC only
        first = guest.config_read(port, slot_control, 4)
        guest.config_write(port, slot_control, 2, 0x0800)
        second = guest.config_read(port, slot_control, 4)
    assert (first, second) == (0x0090_0000, 0x0010_0000)


def test_finding_slot_power_off_hides_the_functions_below() -> None:
    """With a power controller (QEMU's default), writing Slot Control's Power Controller Control as one
    powers the slot off: the functions below stop answering until it is written as zero
    (pcie_cap_update_power). No data manager rule describes slot power, so the adapter's ports have no power
    controller (power_controller_present=off) and discovery never writes the bit."""
    with machine(ROOT_PORT, "edu,bus=rp1,addr=00.0") as guest:
        port = bdf(0, 4)
        number(guest, port, 0, 1, 1)
        guest.config_write(port, 0x54 + 0x18, 2, 0x0400)
        off = guest.config_read(bdf(1, 0), 0, 4)
        guest.config_write(port, 0x54 + 0x18, 2, 0x0000)
        on = guest.config_read(bdf(1, 0), 0, 4)
    assert (off, on) == (NOTHING, EDU_ID)


def test_the_switch_upstream_port_resets_on_function_level_reset() -> None:
    """x3130-upstream resets itself when Device Control's Initiate FLR is written (pcie_cap_flr_write_config
    in xio3130_upstream.c's write_config): its error reporting enables and bus numbers read zero. It has
    MSI with a clamped Multiple Message Enable as well; a type names one configuration behaviour, so
    discovery gives it SwitchPortFunctionLevelReset, which does both, and certification finds nothing."""
    with machine(UPSTREAM.replace(",bus=rp2,addr=00.0", ",addr=04.0")) as guest:
        port = bdf(0, 4)
        guest.config_write(port, BUS_NUMBERS, 4, 0x0002_0100)
        device_control = 0x90 + 0x08
        guest.config_write(port, device_control, 2, 0x000F)
        before = guest.config_read(port, device_control, 2)
        guest.config_write(port, device_control, 2, 0x800F)
        after = guest.config_read(port, device_control, 2), guest.config_read(port, BUS_NUMBERS, 4)
    assert (before, after) == (0x000F, (0x0000, 0))


# ------------------------------------------------------------------ the adapter: a device below bridges


def test_behind_options_place_the_device_and_the_bridges() -> None:
    """vpcid-behind picks the chain: the first bridge at 00:04.0, each next one at 00:00.0 of the bus
    above, the device on the last bus (addr= places it there); firmware numbers every bridge (secondary:
    the next bus, subordinate: the device's), opens its windows and enables it."""
    spec = DeviceSpec.parse("edu,vpcid-behind=x3130")
    assert [(b.model, str(b.bdf)) for b in spec.bridges] == [
        ("pcie-root-port", "00:04.0"), ("x3130-upstream", "01:00.0"), ("xio3130-downstream", "02:00.0")
    ]  # fmt: skip
    assert spec.bdf == Bdf(3, 0, 0)
    assert spec.label == "edu,vpcid-behind=x3130"
    args = spec.machine_args()
    assert args[-1] == "edu,bus=vpcid-bridge2,addr=00.0"
    assert "x3130-upstream,id=vpcid-bridge1,bus=vpcid-bridge0,addr=00.0" in args
    numbering = [(str(b), value) for b, offset, width, value in spec.firmware if offset == BUS_NUMBERS]
    assert numbering == [("00:04.0", 0x0003_0100), ("01:00.0", 0x0003_0201), ("02:00.0", 0x0003_0302)]
    assert (Bdf(2, 0, 0), 0x04, 2, 0x7) in spec.firmware
    assert DeviceSpec.parse("pci-testdev,vpcid-behind=pci-bridge,addr=05.0").bdf == Bdf(1, 5, 0)
    on_pc = DeviceSpec.parse("edu,vpcid-behind=pci-bridge,vpcid-machine=pc").machine_args()
    assert on_pc[-4:] == ["-device", "pci-bridge,id=vpcid-bridge0,bus=pci.0,addr=04.0,chassis_nr=1",
                          "-device", "edu,bus=vpcid-bridge0,addr=00.0"]  # fmt: skip
    with pytest.raises(QemuUnavailable, match="needs a PCI Express root bus"):
        DeviceSpec.parse("edu,vpcid-behind=pcie-root-port,vpcid-machine=pc")
    with pytest.raises(QemuUnavailable, match="vpcid-behind is"):
        DeviceSpec.parse("edu,vpcid-behind=nowhere")


def test_discovery_below_a_switch_probes_every_function_where_it_sits() -> None:
    """The three ports and edu are discovered in one machine after firmware: edu's type is the one it has
    at 00:04.0 (a conventional function), the ports' are bridges with their PCI Express port types, and
    the root port's slot, having no power controller, keeps its Power Controller Control read-only."""
    found = discover(DeviceSpec.parse("edu,vpcid-behind=x3130"))
    alone = discover(DeviceSpec.parse("edu"))
    assert found.dtype.declared == alone.dtype.declared
    assert [(str(b), t.name) for b, t, _ in found.bridges] == [
        ("00:04.0", "qemu:pcie-root-port"), ("01:00.0", "qemu:x3130-upstream"),
        ("02:00.0", "qemu:xio3130-downstream"),
    ]  # fmt: skip
    for _, dtype, _ in found.bridges:
        assert dtype.bridge is not None
        assert dtype.bridge.control_mask == 0x005F
    assert Bdf(0, 4, 0) not in found.reserved_functions


def certified(argument: str) -> CertificationReport:
    """``qemu:ARGUMENT`` certified as ``vpcid certify`` does (its platform waivers, budget 1500, seed 0)."""
    a = adapter(argument)
    try:
        assert a.info.waivers is not None
        return certify(a, 1500, 0, load_waivers(a.info.waivers, set(load_requirements())))
    finally:
        a.close()


def diverging_steps(report: CertificationReport) -> set[str]:
    """Each failure's diverging step (``step N: OPERATION``), whichever requirement blame names."""
    return {f.description.split(": expected")[0] for r in report.requirements for f in r.failures}


def failed_cases(report: CertificationReport) -> set[str]:
    return {f.check.removeprefix("case ") for r in report.requirements for f in r.failures
            if f.check.startswith("case ")}  # fmt: skip


SLOT_EVENTS = "step 2: config_read vm 1 {port} offset {slot_control:#x} width 4"
"""A slot control write raises slot status events
(test_finding_a_slot_control_write_raises_slot_status_events)."""
EXPRESS_FINDINGS = {"R-CFG-001", "R-CFG-010", "R-DT-008"}
"""What blame may call those findings (the body of a capability, an unclaimed byte, the behaviour)."""


def test_a_device_below_bridges_is_certified_with_them() -> None:
    """pci-testdev below a pci-bridge: the model performs the machine's firmware writes (bus numbers,
    windows, command) after plugging the bridge, so both hold the same tree; nothing diverges."""
    a = adapter("pci-testdev,vpcid-behind=pci-bridge")
    try:
        assert a.info.machine is not None
        assert [str(b) for b, _ in a.info.machine.devices] == ["00:04.0", "01:00.0"]
        assert a.info.machine.firmware == a.spec.firmware
    finally:
        a.close()
    report = certified("pci-testdev,vpcid-behind=pci-bridge")
    failed = {r.rid: r.failures[0].description for r in report.requirements if r.verdict is Verdict.FAIL}
    assert report.conformant, failed


def test_finding_edu_below_a_root_port() -> None:
    """edu below pcie-root-port: edu and the routing through the port conform; the one finding is the
    port's own: its slot control write raises slot status events."""
    report = certified("edu,vpcid-behind=pcie-root-port")
    failed = {r.rid for r in report.requirements if r.verdict is Verdict.FAIL}
    assert failed <= EXPRESS_FINDINGS  # which of them blame names (or explains as a variant) may vary
    assert diverging_steps(report) == {SLOT_EVENTS.format(port="00:04.0", slot_control=0x6C)}
    assert failed_cases(report) == {
        "configuration-space/capability-0-id-10-at-054-part1@qemu:pcie-root-port:00:04.0",
    }


def test_finding_edu_below_the_x3130_switch() -> None:
    """edu below pcie-root-port, x3130-upstream and xio3130-downstream: the root port's finding and the
    downstream port's slot (slot status events; its FLR resets Device Control,
    test_finding_the_switch_downstream_port_resets_with_its_slot). Nothing about routing, forwarding or
    edu diverges."""
    report = certified("edu,vpcid-behind=x3130")
    failed = {r.rid for r in report.requirements if r.verdict is Verdict.FAIL}
    assert failed <= EXPRESS_FINDINGS  # which of them blame names (or explains as a variant) may vary
    assert diverging_steps(report) == {
        SLOT_EVENTS.format(port="00:04.0", slot_control=0x6C),
        SLOT_EVENTS.format(port="02:00.0", slot_control=0xA8),
        "step 2: config_read vm 1 02:00.0 offset 0x98 width 4",
    }
    assert failed_cases(report) == {
        "configuration-space/capability-0-id-10-at-054-part1@qemu:pcie-root-port:00:04.0",
        "configuration-space/capability-0-id-10-at-090-part0@qemu:xio3130-downstream:02:00.0",
        "configuration-space/capability-0-id-10-at-090-part1@qemu:xio3130-downstream:02:00.0",
    }


@pytest.mark.req("R-CAM-004")
def test_the_cf8_window_stops_at_byte_0xff_below_bridges_too() -> None:
    """With 0xCF8's low bits selecting byte 0xff (QEMU's cf8_low_bits = offset), a dword read of 0xCFC
    returns byte 0xff alone: pci_data_read (hw/pci/pci_host.c) limits the access to the first 256 bytes,
    so the bytes of the extended space at 0x100 (the root port's AER header, non-zero through ECAM) read
    zero, as the model's offset variant says (R-CAM-004); the certifications above agree on every port."""
    with machine(ROOT_PORT) as guest:
        port = bdf(0, 4)
        extended = guest.config_read(port, 0x100, 4)
        guest.io_write(0xCF8, 4, 0x8000_0000 | port << 8 | 0xFF)
        through_cf8 = guest.io_read(0xCFC, 4)
    assert extended & 0xFFFFFF != 0
    assert through_cf8 == 0


@pytest.mark.req("R-BRG-001")
def test_the_bundled_express_ports_hold_qemus_bridge_registers() -> None:
    """The catalogue's pcie-root-port, x3130-upstream and xio3130-downstream power on with QEMU's bytes in
    0x18-0x33 (the root port's windows closed) and its bridge control write mask 0x005F."""
    with machine(SWITCH_PORT.replace("addr=06.0", "addr=04.0").replace("rp2", "rp1"),
                 UPSTREAM.replace("rp2", "rp1"), DOWNSTREAM) as guest:  # fmt: skip
        number(guest, bdf(0, 4), 0, 1, 2)
        number(guest, bdf(1, 0), 1, 2, 2)
        # deepest first: setting bridge control bit 6 resets what is below
        found = {
            name: masks(guest, function, range(0x1C, 0x40))
            for name, function in (("xio3130-downstream", bdf(2, 0)), ("x3130-upstream", bdf(1, 0)),
                                   ("pcie-root-port", bdf(0, 4)))
        }  # fmt: skip
    for name, registers in found.items():
        declared = BRIDGES[name].declared
        assert {o: v[0] for o, v in registers.items() if o < 0x34} == {
            o: declared.image[o] for o in range(0x1C, 0x34)
        }, name
        assert (registers[0x3E][1], registers[0x3F][1]) == (0x5F, 0x00)
        assert declared.word(0x3E, 2, "wmask") == 0x005F


def test_the_pci_bridge_alone_is_conformant() -> None:
    """QEMU's conventional pci-bridge certified alone (nothing below it): its type 1 header, discovered byte
    by byte, behaves as declared (bus numbers, windows, bridge control, secondary status, the SHPC BAR)."""
    a = adapter("pci-bridge,chassis_nr=1")
    try:
        assert a.discovery.dtype.bridge is not None
        assert a.info.waivers is not None
        report = certify(a, 1500, 0, load_waivers(a.info.waivers, set(load_requirements())))
    finally:
        a.close()
    failed = {r.rid: r.failures[0].description for r in report.requirements if r.verdict is Verdict.FAIL}
    assert report.conformant, failed


def test_the_switch_upstream_port_alone_is_conformant() -> None:
    """x3130-upstream alone: its FLR and MSI clamp described by SwitchPortFunctionLevelReset (R-DT-008)."""
    a = adapter("x3130-upstream")
    try:
        behaviour = a.discovery.dtype.config_behaviour
        assert behaviour is not None
        assert behaviour.name.endswith(":SwitchPortFunctionLevelReset")
        assert a.info.waivers is not None
        report = certify(a, 1500, 0, load_waivers(a.info.waivers, set(load_requirements())))
    finally:
        a.close()
    failed = {r.rid: r.failures[0].description for r in report.requirements if r.verdict is Verdict.FAIL}
    assert report.conformant, failed


def test_finding_the_switch_downstream_port_resets_with_its_slot() -> None:
    """xio3130-downstream resets on Initiate FLR too, and its reset also resets its slot
    (pcie_cap_slot_reset), which no configuration behaviour describes: discovery leaves the bit read-only
    (noted), and certification reports the reset (R-CFG-001: Device Control's error reporting enables
    read zero after a write that set them)."""
    with machine(DOWNSTREAM.replace(",bus=up,addr=00.0", ",addr=04.0")) as guest:
        port = bdf(0, 4)
        device_control = 0x90 + 0x08
        guest.config_write(port, device_control, 2, 0x000F)
        before = guest.config_read(port, device_control, 2)
        guest.config_write(port, device_control, 2, 0x800F)
        after = guest.config_read(port, device_control, 2)
    assert (before, after) == (0x000F, 0x0000)
    found = discover(DeviceSpec.parse("xio3130-downstream"))
    assert any("resets the port and its slot" in note for note in found.notes)


@pytest.mark.req("R-BRG-001", "R-DT-008")
def test_discovered_bridge_types_round_trip_through_a_type_file(tmp_path: Path) -> None:
    """A discovered bridge, its combined configuration behaviour named by module path, is read back from
    its device-type file as the same type (R-BRG-001, R-DT-008)."""
    found = discover(DeviceSpec.parse("x3130-upstream"))
    path = tmp_path / "x3130-upstream.json"
    write_type_file(path, [found.dtype])
    (entry,) = read_type_file(path)
    assert entry.dtype == found.dtype
    assert entry.dtype.fingerprint() == found.dtype.fingerprint()
