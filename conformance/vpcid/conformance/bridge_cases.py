"""Scenario cases for PCI-to-PCI bridges (R-BRG-*, R-BLOB-007, R-BLOB-008).

System cases: each defines the bundled bridge types it plugs with
``define_type`` (they are not suite types, so an implementation that cannot
hold a bridge declines the definition or the case), builds a tree of
bridges and functions, and observes routing by bus number through direct
configuration accesses, 0xCF8/0xCFC and ECAM, forwarding through I/O and
memory reads and writes, secondary bus reset, and snapshots of the tree.
Every step names the requirement it checks.
"""

from __future__ import annotations

import dataclasses

from vpcid.conformance.cases import CMD_IO, CMD_MEM, SUITE_VM, _Body, _Fn, _split, _Sys
from vpcid.conformance.devices import KITCHEN_SINK
from vpcid.conformance.platform_cases import FLR_STICKY, MULTIFUNCTION, SINGLE, STICKY_RW
from vpcid.conformance.trace import Op, OpKind, define_type_op
from vpcid.conformance.typefile import type_json
from vpcid.model import Bdf, BridgeRegisters, DataManager, DeviceType, IoWindow, PrefetchWindow
from vpcid.model import blob as blobfmt
from vpcid.model.catalog import A100, E1000, EDU, PCI_BRIDGE, PCIE_ROOT_PORT
from vpcid.model.manager import DEFAULT_ECAM_BASE

GROUP = "bridges"
PORT = Bdf(0, 1, 0)
NIC_BAR = 0xE000_0000
"""Where the cases put the e1000's 128 KiB BAR0; the bridges' memory windows start here."""
WINDOW = 0xE000_E000
"""Memory base and limit dword: 0xE0000000-0xE00FFFFF."""
BUS_NUMBERS, IO_WINDOW, MEMORY_WINDOW, PREF_WINDOW, CONTROL = 0x18, 0x1C, 0x20, 0x24, 0x3E
CLOSED_PREF = 0x0001_FFF1
"""Prefetchable base 0xfff00000 above limit 0xfffff: closed."""
WIDE_BRIDGE = DeviceType(
    name="bridge-io32-nopref", vendor_id=0x1B36, device_id=0x00E1, class_code=0x060400,
    bridge=BridgeRegisters(IoWindow.BITS32, PrefetchWindow.NONE),
)  # fmt: skip
"""A bridge declared by fields: 32-bit I/O window, no prefetchable window, bridge control bits 0-6."""


def _define(b: _Body, *types: DeviceType) -> None:
    b.setup()
    for dtype in types:
        b.add(define_type_op(type_json(dtype)))


def _fn(b: _Body, bdf: Bdf, dtype: DeviceType, vm: int = SUITE_VM) -> _Fn:
    """Operations on a function already plugged (or reached under another BDF after re-routing)."""
    return _Fn(b, vm, bdf, dtype, DEFAULT_ECAM_BASE)


def _chain(b: _Body, depth: int, *, forward: bool = True, vm: int = SUITE_VM) -> list[_Fn]:
    """``depth`` pci-bridges one below the other from 00:01.0 (bus n+1 below the n-th, subordinate
    ``depth``), each forwarding memory 0xE0000000-0xE00FFFFF when ``forward``."""
    bridges: list[_Fn] = []
    for level in range(depth):
        bdf = Bdf(level, 1 if level == 0 else 0, 0)
        bridge = b.plug(vm, bdf, PCI_BRIDGE)
        bridge.cw(BUS_NUMBERS, 4, level | (level + 1) << 8 | depth << 16)
        if forward:
            bridge.cw(MEMORY_WINDOW, 4, WINDOW)
            bridge.cw(PREF_WINDOW, 4, CLOSED_PREF)
            bridge.command(CMD_MEM)
        bridges.append(bridge)
    return bridges


def _nic(b: _Body, bdf: Bdf, vm: int = SUITE_VM) -> _Fn:
    nic = b.plug(vm, bdf, E1000)
    nic.cw(0x10, 4, NIC_BAR)
    nic.command(CMD_MEM)
    return nic


def _header(s: _Sys) -> None:
    """R-BRG-001: every register of a type 1 header read at power-on and after all ones are written."""
    for dtype in (PCI_BRIDGE, PCIE_ROOT_PORT, WIDE_BRIDGE):
        b = _Body()
        _define(b, dtype)
        b.create_vm(SUITE_VM)
        f = b.plug(SUITE_VM, PORT, dtype)
        b.check("R-BRG-001")
        for offset in range(0x0C, 0x40, 4):
            f.cr(offset)
        for offset in (*range(0x18, 0x38, 4), 0x3C):
            f.cw(offset, 4, 0xFFFF_FFFF)
            f.cr(offset)
        s.add(f"bridge-header-{dtype.name}", GROUP,
              f"the type 1 header of {dtype.name}: bus numbers, windows with their type nibbles and "
              "upper halves, secondary status, bridge control and the ROM BAR at 0x38, at power-on "
              "and after all ones", b)  # fmt: skip


def _routing(s: _Sys) -> None:
    """R-BRG-002..R-BRG-004 and R-BRG-010: plug below a bridge, reach it by the routed number through
    all three mechanisms, lose it when the range empties, find it again under a new number."""
    b = _Body()
    _define(b, PCI_BRIDGE)
    b.create_vm(SUITE_VM)
    (bridge,) = _chain(b, 1, forward=False)
    b.check("R-BRG-002")
    b.plug(SUITE_VM, Bdf(1, 3, 0), EDU)
    b.check("R-BRG-003")
    below = _fn(b, Bdf(1, 3, 0), EDU)
    below.cr(0x00)
    below.cf8(0x00)
    b.ior(SUITE_VM, 0xCFC)
    b.mr(SUITE_VM, below.ecam(0x00))
    bridge.cw(BUS_NUMBERS + 1, 1, 5)  # secondary 5 above subordinate 1: bus 5 still, 01:03.0 is gone
    below.cr(0x00)
    b.add(Op(OpKind.SAVE, vm=SUITE_VM, bdf=Bdf(1, 3, 0), name="gone"))
    b.check("R-BRG-004")
    b.tables(SUITE_VM)
    b.check("R-BRG-003")
    bridge.cw(BUS_NUMBERS + 2, 1, 7)  # 5-7: the bus is 5 now
    moved = _fn(b, Bdf(5, 3, 0), EDU)
    moved.cr(0x00)
    moved.cf8(0x2C)
    b.ior(SUITE_VM, 0xCFC)
    bridge.cw(BUS_NUMBERS, 1, 0x33)  # the primary bus number routes nothing
    moved.cr(0x00)
    b.check("R-BRG-010")
    b.tables(SUITE_VM)
    b.check("R-BRG-003")
    b.plug(SUITE_VM, Bdf(6, 0, 0), E1000)  # bus 6 is in 5-7 but names nothing: a root bus now
    moved.cr(0x00)
    _fn(b, Bdf(6, 0, 0), E1000).cr(0x00)
    b.check("R-BRG-002")
    b.plug(SUITE_VM, Bdf(5, 3, 0), E1000)  # taken
    b.plug(SUITE_VM, Bdf(5, 4, 0), E1000)
    b.check("R-BRG-010")
    b.tables(SUITE_VM)
    s.add("bridge-routing", GROUP,
          "a function below a bridge is reached by the bridge's secondary bus number through direct "
          "accesses, 0xCFC and ECAM; an empty range hides it (all ones, unknown-device); a new range "
          "finds it under a new number; root buses keep their numbers", b)  # fmt: skip


def _deep(s: _Sys) -> None:
    """R-BRG-003, R-BRG-006: four bridges deep, routing and forwarding through every level."""
    b = _Body()
    _define(b, PCI_BRIDGE)
    b.create_vm(SUITE_VM)
    bridges = _chain(b, 4)
    nic = _nic(b, Bdf(4, 2, 0))
    b.check("R-BRG-003")
    nic.cr(0x00)
    nic.cr(0x10)
    b.check("R-BRG-006")
    b.mw(SUITE_VM, NIC_BAR + 0x40, 4, 0x1357_9BDF)
    b.mr(SUITE_VM, NIC_BAR + 0x40)
    bridges[2].cw(BUS_NUMBERS + 2, 1, 2)  # the third bridge's range empties
    b.check("R-BRG-003")
    nic.cr(0x00)
    b.check("R-BRG-006")
    b.mr(SUITE_VM, NIC_BAR + 0x40)  # memory still reaches it: forwarding ignores bus numbers
    bridges[1].command(0)
    b.mr(SUITE_VM, NIC_BAR + 0x40)
    bridges[1].command(CMD_MEM)
    bridges[2].cw(BUS_NUMBERS + 2, 1, 4)
    b.check("R-BRG-003")
    nic.cr(0x04)
    s.add("bridge-four-deep", GROUP,
          "a function four bridges deep is routed to through every level and reached by memory "
          "through every window; emptying one range hides it from configuration only", b)  # fmt: skip


def _forwarding(s: _Sys) -> None:
    """R-BRG-005, R-BRG-006: windows, command bits, prefetchable window, straddling the edge."""
    b = _Body()
    _define(b, PCI_BRIDGE)
    b.create_vm(SUITE_VM)
    bridges = _chain(b, 2)
    nic = _nic(b, Bdf(2, 0, 0))
    b.check("R-BRG-005")  # 0xe000fffc is inside the windows only if their limits end in 0xfffff
    b.mw(SUITE_VM, NIC_BAR + 0xFFFC, 4, 0xAABB_CCDD)
    b.mr(SUITE_VM, NIC_BAR + 0xFFFC)
    b.check("R-BRG-006")
    bridges[1].command(CMD_IO)  # the second bridge stops forwarding memory
    b.mr(SUITE_VM, NIC_BAR + 0xFFFC)
    b.tables(SUITE_VM)
    bridges[1].command(CMD_MEM)
    b.check("R-BRG-005")
    bridges[1].cw(MEMORY_WINDOW, 4, WINDOW + 0x0010_0010)  # 0xe0100000-0xe01fffff
    bridges[1].cr(MEMORY_WINDOW)
    b.mr(SUITE_VM, NIC_BAR + 0xFFFC)
    bridges[1].cw(PREF_WINDOW, 4, 0xE001_E001)  # the prefetchable window (64-bit type) covers it
    bridges[1].cr(PREF_WINDOW)
    b.check("R-BRG-006")
    b.mr(SUITE_VM, NIC_BAR + 0xFFFC)
    b.check("R-BRG-005")
    bridges[1].cw(PREF_WINDOW + 4, 4, 1)  # upper half 1: the window moves above 4 GiB
    b.mr(SUITE_VM, NIC_BAR + 0xFFFC)
    bridges[1].cw(PREF_WINDOW + 4, 4, 0)
    b.check("R-BRG-006")
    bridges[0].cw(MEMORY_WINDOW, 4, 0xE000_E000 | 0x0010 << 16)  # first: 0xe0000000-0xe01fffff
    bridges[1].cw(PREF_WINDOW, 4, CLOSED_PREF)
    bridges[1].cw(MEMORY_WINDOW, 4, WINDOW)  # second: 1 MiB, the NIC's BAR ends inside it
    nic.cw(0x10, 4, NIC_BAR + 0xE_0000)  # BAR 0xe00e0000-0xe00fffff, up to the window's edge
    b.mw(SUITE_VM, NIC_BAR + 0xF_FFFC, 4, 0x0102_0304)
    b.mr(SUITE_VM, NIC_BAR + 0xF_FFFC, 8)  # straddles the window's end
    b.mw(SUITE_VM, NIC_BAR + 0xF_FFFC, 8, 0x1111_2222_3333_4444)
    b.mr(SUITE_VM, NIC_BAR + 0xF_FFF8, 8)
    s.add("bridge-forwarding", GROUP,
          "memory reaches a BAR below two bridges only inside every bridge's windows with their "
          "memory bit set; the prefetchable window and its upper half forward too; an access across "
          "a window's edge is split there", b)  # fmt: skip


def _probe_io(b: _Body, sink: _Fn, ports: tuple[int, ...]) -> None:
    """Move the kitchen sink's 4-byte I/O BAR 5 to each port's dword and read the port's byte: a
    forwarded port reads the BAR's zeros, one the bridge keeps upstream reads all ones."""
    for port in ports:
        sink.cw(0x24, 4, port & ~0x3)
        b.ior(SUITE_VM, port, 1)


def _probe_memory(b: _Body, sink: _Fn, addresses: tuple[int, ...], register: int = 0x20) -> None:
    """Move a kitchen-sink memory BAR (16-byte BAR 4, or with ``register`` 0x18 the 1 MiB 64-bit BAR
    2) over each address and read its byte."""
    size = 0x10 if register == 0x20 else 0x10_0000
    for address in addresses:
        base = address & ~(size - 1)
        sink.cw(register, 4, base & 0xFFFF_FFFF)
        if register == 0x18:
            sink.cw(register + 4, 4, base >> 32)
        b.mr(SUITE_VM, address, 1)


def _below(b: _Body, bridge_type: DeviceType) -> tuple[_Fn, _Fn]:
    """A bridge of ``bridge_type`` at 00:01.0 numbered 1, and a kitchen sink below it decoding."""
    _define(b, bridge_type)
    b.create_vm(SUITE_VM)
    bridge = b.plug(SUITE_VM, PORT, bridge_type)
    bridge.cw(BUS_NUMBERS, 4, 0x0001_0100)
    sink = b.plug(SUITE_VM, Bdf(1, 0, 0), KITCHEN_SINK)
    sink.command(CMD_IO | CMD_MEM)
    return bridge, sink


def _window_edges(s: _Sys) -> None:
    """R-BRG-006, R-BRG-011: every window forwards from its first byte to its last and nothing
    either side - a 32-bit I/O window with its upper halves, ISA enable in each 1 KiB block, the VGA
    ranges, memory, and a 64-bit prefetchable window high above 4 GiB (its upper halves taken whole)."""
    b = _Body()
    wide, sink = _below(b, WIDE_BRIDGE)
    b.check("R-BRG-006")
    wide.cw(IO_WINDOW, 2, 0x7050)  # 0x5000-0x?7fff, the low nibbles say 32-bit
    wide.cw(0x30, 4, 0x0001_0000)  # limit's upper half 1: every port from 0x5000 up is forwarded
    wide.cr(IO_WINDOW, 2)
    wide.command(CMD_IO)
    _probe_io(b, sink, (0x4FFF, 0x5000, 0x5FFF, 0x8000, 0xFFFF))
    wide.cw(0x30, 4, 0)  # 0x5000-0x7fff
    _probe_io(b, sink, (0x4FFF, 0x5000, 0x7FFF, 0x8000, 0x3C0))  # VGA ports need VGA enable
    wide.command(CMD_MEM)  # the I/O bit off: the window forwards nothing
    _probe_io(b, sink, (0x5000,))
    wide.command(CMD_IO)
    wide.cw(0x30, 4, 0x0001_0001)  # 0x15000-0x17fff: above the I/O space
    _probe_io(b, sink, (0x5000, 0xFFFF))
    wide.cw(0x30, 4, 0x0100_0000)  # 0x5000-0x1007fff: the limit's upper half counts whole
    _probe_io(b, sink, (0x8000,))
    wide.cw(0x30, 4, 0x0100_0100)  # 0x1005000-0x1007fff: the upper halves' high bytes count too
    _probe_io(b, sink, (0x5000,))
    wide.cw(0x30, 4, 0)  # the BAR stays at 0x5000 while only the window's base moves past it
    b.ior(SUITE_VM, 0x5000, 1)
    wide.cw(IO_WINDOW, 2, 0x7060)
    b.ior(SUITE_VM, 0x5000, 1)
    s.add("bridge-io-window-edges", GROUP,
          "a 32-bit I/O window forwards its first and last port and nothing beside, its upper halves "
          "taken whole, and only with the I/O bit set", b)  # fmt: skip

    b = _Body()
    wide, sink = _below(b, WIDE_BRIDGE)
    b.check("R-BRG-011")
    wide.cw(IO_WINDOW, 2, 0x00F0)  # 0xf000-0x10fff: ISA enable filters in each 1 KiB block
    wide.cw(0x30, 4, 0x0001_0000)
    wide.cw(CONTROL, 2, 0x0004)
    wide.command(CMD_IO)
    _probe_io(b, sink, (0xEFFF, 0xF000, 0xF0FF, 0xF100, 0xF3FF, 0xF400, 0xF4FF, 0xFC00, 0xFCFF, 0xFFFF))
    b.check("R-BRG-006")
    wide.cw(CONTROL, 2, 0)
    _probe_io(b, sink, (0xF100,))
    b.check("R-BRG-011")
    wide.cw(IO_WINDOW, 2, 0x00F0)  # windows closed: only VGA enable forwards
    wide.cw(0x30, 4, 0)
    wide.cw(MEMORY_WINDOW, 4, 0x0000_FFF0)
    wide.cw(CONTROL, 2, 0x0008)
    wide.command(CMD_IO | CMD_MEM)
    _probe_io(b, sink, (0x3AF, 0x3B0, 0x3BB, 0x3BC, 0x3BF, 0x3C0, 0x3DF, 0x3E0))
    _probe_memory(b, sink, (0x9_FFFF, 0xA_0000, 0xB_FFFF, 0xC_0000))
    s.add("bridge-isa-vga-edges", GROUP,
          "ISA enable forwards the first 256 ports of each 1 KiB block of the I/O window; VGA enable "
          "forwards the VGA ports and frame buffer from their first byte to their last", b)  # fmt: skip

    b = _Body()
    wide, sink = _below(b, WIDE_BRIDGE)
    b.check("R-BRG-006")
    wide.command(CMD_MEM)
    wide.cw(MEMORY_WINDOW, 4, 0xE030_E010)  # 0xe0100000-0xe03fffff
    _probe_memory(b, sink, (0xE00F_FFFF, 0xE010_0000, 0xE02F_FFFF, 0xE030_0000, 0xE03F_FFFF, 0xE040_0000))
    b.unplug(SUITE_VM, PORT)
    _define(b, PCI_BRIDGE)
    bridge = b.plug(SUITE_VM, PORT, PCI_BRIDGE)
    bridge.cw(BUS_NUMBERS, 4, 0x0001_0100)
    sink = b.plug(SUITE_VM, Bdf(1, 0, 0), KITCHEN_SINK)
    sink.command(CMD_MEM)
    bridge.command(CMD_MEM)
    bridge.cw(MEMORY_WINDOW, 4, 0x0000_FFF0)  # closed
    bridge.cw(PREF_WINDOW, 4, 0x0131_0111)  # 0x?01100000-0x?013fffff, 64-bit
    bridge.cw(PREF_WINDOW + 4, 4, 0x0100_0002)
    bridge.cw(PREF_WINDOW + 8, 4, 0x0100_0002)  # upper halves: 0x0100000201100000-0x01000002013fffff
    bridge.cr(PREF_WINDOW)
    high = 0x0100_0002 << 32
    _probe_memory(b, sink, (high + 0x010F_FFFF, high + 0x0110_0000, high + 0x0120_0000, high + 0x013F_FFFF,
                            high + 0x0140_0000, 0x0110_0000), register=0x18)  # fmt: skip
    s.add("bridge-memory-window-edges", GROUP,
          "the memory window and a 64-bit prefetchable window above 2^56 forward their first and last "
          "byte and nothing beside", b)  # fmt: skip


def _gpu_below_two(b: _Body) -> tuple[_Fn, _Fn]:
    """Two bridges (VGA enable, memory bit) with an a100 below both, its 16 MiB BAR 0 at 0x1000000,
    and a kitchen sink on the root bus whose 16-byte BAR 4 sits at 0x1000000 too."""
    _define(b, PCI_BRIDGE, A100)
    b.create_vm(SUITE_VM)
    upper, lower = _chain(b, 2, forward=False)
    gpu = b.plug(SUITE_VM, Bdf(2, 0, 0), A100)
    gpu.cw(0x10, 4, 0x0100_0000)
    gpu.command(CMD_MEM)
    beside = b.plug(SUITE_VM, Bdf(0, 5, 0), KITCHEN_SINK)  # its size class is probed after the a100's
    beside.cw(0x20, 4, 0x0100_0000)
    beside.command(CMD_MEM)
    for bridge in (upper, lower):
        bridge.cw(CONTROL, 2, 0x0008)  # VGA enable: 0xa0000-0xbffff comes first among the ranges
        bridge.command(CMD_MEM)
        bridge.cw(PREF_WINDOW, 4, CLOSED_PREF)
    return upper, lower


PIECE_PROBES = (
    0x100_0000,
    0x10F_FFFF,
    0x110_0000,
    0x11F_FFFF,
    0x120_0000,
    0x12F_FFFF,
    0x130_0000,
    0x13F_FFFF,
)
"""Addresses in the a100's BAR 0 either side of every window edge the pieces cases use."""


def _forwarded_pieces(s: _Sys) -> None:
    """R-BRG-006, R-BRG-011: a BAR larger than the windows is forwarded in pieces - what every bridge
    above forwards of it - with one bridge's overlapping windows merged beside its VGA range, and a
    root-bus BAR of another size class decoding where the pieces do not reach."""
    b = _Body()
    upper, lower = _gpu_below_two(b)
    upper.cw(MEMORY_WINDOW, 4, 0x0130_0100)  # 0x1000000-0x13fffff
    lower.cw(PREF_WINDOW, 4, 0x0120_0110)  # prefetchable 0x1100000-0x12fffff
    lower.cw(MEMORY_WINDOW, 4, 0x0130_0120)  # memory 0x1200000-0x13fffff, overlapping it
    b.check("R-BRG-006")
    for address in PIECE_PROBES:
        b.mr(SUITE_VM, address, 1)
    upper.cw(MEMORY_WINDOW, 4, 0x0110_0110)  # 0x1100000-0x11fffff
    upper.cw(PREF_WINDOW, 4, 0x0131_0131)  # and 0x1300000-0x13fffff: the BAR reaches the lower
    upper.cw(PREF_WINDOW + 4, 4, 0)  # bridge in two pieces
    upper.cw(PREF_WINDOW + 8, 4, 0)
    for address in PIECE_PROBES:
        b.mr(SUITE_VM, address, 1)
    b.tables(SUITE_VM)
    s.add("bridge-forwarded-pieces", GROUP,
          "a BAR larger than the windows is reached only where every bridge above forwards it, in "
          "pieces, one bridge's overlapping windows merged beside its VGA range; a root-bus BAR decodes "
          "where the pieces do not reach", b)  # fmt: skip

    b = _Body()
    upper, lower = _gpu_below_two(b)
    sink = b.plug(SUITE_VM, Bdf(2, 1, 0), KITCHEN_SINK)  # below both bridges, over the frame buffer
    sink.cw(0x20, 4, 0x000A_0000)
    sink.command(CMD_MEM)
    upper.cw(MEMORY_WINDOW, 4, 0x0130_0100)  # 0x1000000-0x13fffff
    lower.cw(PREF_WINDOW, 4, 0x0130_0110)  # prefetchable 0x1100000-0x13fffff
    lower.cw(MEMORY_WINDOW, 4, 0x0120_0120)  # memory 0x1200000-0x12fffff, inside it
    b.check("R-BRG-011")
    b.mr(SUITE_VM, 0xA_0000, 1)
    b.check("R-BRG-006")
    for address in PIECE_PROBES:
        b.mr(SUITE_VM, address, 1)
    lower.cw(PREF_WINDOW, 4, 0x0110_0110)  # 0x1100000-0x11fffff and 0x1300000-0x13fffff: the lower
    lower.cw(MEMORY_WINDOW, 4, 0x0130_0130)  # bridge splits the BAR into two pieces first
    for address in PIECE_PROBES:
        b.mr(SUITE_VM, address, 1)
    s.add("bridge-forwarded-pieces-nested", GROUP,
          "one bridge's memory window inside its prefetchable window forwards their union, with its VGA "
          "range kept; a lower bridge splitting a BAR into pieces that the upper bridge forwards whole",
          b)  # fmt: skip


def _isa_vga(s: _Sys) -> None:
    """R-BRG-006, R-BRG-011: the I/O window, ISA enable and VGA enable."""
    b = _Body()
    _define(b, PCI_BRIDGE)
    b.create_vm(SUITE_VM)
    (bridge,) = _chain(b, 1, forward=False)
    bridge.cw(IO_WINDOW, 2, 0x1010)  # 0x1000-0x1fff
    bridge.cw(MEMORY_WINDOW, 4, 0x0000_FFF0)  # memory window closed
    bridge.cw(PREF_WINDOW, 4, CLOSED_PREF)
    bridge.command(CMD_IO | CMD_MEM)
    nic = b.plug(SUITE_VM, Bdf(1, 0, 0), E1000)
    nic.cw(0x14, 4, 0x1100)
    nic.cw(0x10, 4, 0x000A_0000)
    nic.command(CMD_IO | CMD_MEM)
    b.check("R-BRG-006")
    b.iow(SUITE_VM, 0x1100, 4, 0x10)
    b.ior(SUITE_VM, 0x1100)
    b.mr(SUITE_VM, 0xA_0000)
    b.check("R-BRG-011")
    bridge.cw(CONTROL, 2, 0x0004)  # ISA enable: 0x1100-0x13ff stays on the primary side
    b.ior(SUITE_VM, 0x1100)
    nic.cw(0x14, 4, 0x1400)
    b.ior(SUITE_VM, 0x1400)
    bridge.cw(CONTROL, 2, 0x0008)  # VGA enable: 0xa0000-0xbffff forwarded
    b.mr(SUITE_VM, 0xA_0000)
    bridge.command(CMD_IO)
    b.mr(SUITE_VM, 0xA_0000)
    s.add("bridge-isa-vga", GROUP,
          "a bridge's I/O window forwards ports; ISA enable keeps ports whose bits 9:8 are not 00 "
          "upstream; VGA enable forwards the legacy frame buffer under the memory bit", b)  # fmt: skip


def _secondary_reset(s: _Sys) -> None:
    """R-BRG-007: bridge control bit 6 from 0 to 1 resets everything below, not the bridge."""
    b = _Body()
    _define(b, PCI_BRIDGE)
    b.create_vm(SUITE_VM)
    bridges = _chain(b, 2)
    nic = _nic(b, Bdf(2, 0, 0))
    nic.cw(0x3C, 1, 0x0B)
    b.mw(SUITE_VM, NIC_BAR, 4, 0x55)
    b.check("R-BRG-007")
    bridges[0].cw(CONTROL, 2, 0x0040)
    bridges[0].cr(CONTROL, 2)
    bridges[0].cr(BUS_NUMBERS)
    bridges[1].cr(BUS_NUMBERS)
    nic.cr(0x3C, 1)
    b.mr(SUITE_VM, NIC_BAR)
    bridges[1].cw(BUS_NUMBERS, 4, 0x0002_0201)
    nic.cr(0x04)
    nic.cr(0x10)
    nic.cr(0x3C, 1)
    nic.cw(0x3C, 1, 0x0C)
    bridges[0].cw(CONTROL, 2, 0x0040)  # already set: no reset
    nic.cr(0x3C, 1)
    bridges[0].cw(CONTROL, 2, 0x0000)  # cleared: nothing else
    nic.cr(0x3C, 1)
    s.add("bridge-secondary-bus-reset", GROUP,
          "setting secondary bus reset resets every function below, bridges below included, and "
          "not the bridge; writing it set again or clearing it resets nothing", b)  # fmt: skip


def _reset(s: _Sys) -> None:
    """R-BRG-008: a bridge's function reset, and the VM reset over unreachable functions."""
    b = _Body()
    _define(b, PCI_BRIDGE)
    b.create_vm(SUITE_VM)
    (bridge,) = _chain(b, 1)
    nic = _nic(b, Bdf(1, 0, 0))
    b.mw(SUITE_VM, NIC_BAR, 4, 0x77)
    b.check("R-BRG-008")
    b.add(Op(OpKind.RESET, vm=SUITE_VM, bdf=PORT))
    bridge.cr(BUS_NUMBERS)
    nic.cr(0x04)
    b.mr(SUITE_VM, NIC_BAR)
    bridge.cw(BUS_NUMBERS, 4, 0x0001_0100)
    nic.cr(0x04)
    bridge.cw(BUS_NUMBERS + 1, 1, 0)
    b.reset_vm(SUITE_VM)
    bridge.cw(BUS_NUMBERS, 4, 0x0001_0100)
    nic.cr(0x04)
    nic.cr(0x10)
    s.add("bridge-reset", GROUP,
          "resetting a bridge resets its own function only (what is below keeps its state, "
          "unreachable); the VM reset reaches unreachable functions too", b)  # fmt: skip


def _snapshots(s: _Sys) -> None:
    """R-BRG-009, R-BLOB-007, R-BLOB-008: bridge blobs and snapshots of a tree."""
    b = _Body()
    _define(b, PCI_BRIDGE)
    b.create_vm(SUITE_VM)
    bridges = _chain(b, 3)
    nic = _nic(b, Bdf(3, 0, 0))
    b.plug(SUITE_VM, Bdf(0, 4, 0), EDU)
    b.plug(SUITE_VM, Bdf(2, 5, 0), EDU)
    b.mw(SUITE_VM, NIC_BAR + 8, 4, 0xCAFE)
    b.check("R-BLOB-007")
    b.snapshot(SUITE_VM, "tree")
    b.check("R-BLOB-008")
    b.restore_vm(2, "tree")
    b.snapshot(2, "again")
    b.unplug(2, PORT)  # the restored VM's bridges go: its snapshot is flat again
    b.snapshot(2, "again-flat")
    b.restore_vm(2, "again")
    b.check("R-BRG-009")
    b.mr(2, NIC_BAR + 8)
    _fn(b, Bdf(3, 0, 0), E1000, vm=2).cr(0x10)
    b.tables(2)
    b.add(Op(OpKind.SAVE, vm=SUITE_VM, bdf=Bdf(1, 0, 0), name="middle"))
    bridges[1].cw(BUS_NUMBERS, 4, 0)
    bridges[1].command(0)
    nic.cr(0x00)
    b.mr(SUITE_VM, NIC_BAR + 8)
    b.add(Op(OpKind.RESTORE, vm=SUITE_VM, bdf=Bdf(1, 0, 0), name="middle"))
    nic.cr(0x00)
    b.mr(SUITE_VM, NIC_BAR + 8)
    b.check("R-BLOB-007")
    b.unplug(SUITE_VM, PORT)
    b.snapshot(SUITE_VM, "flat")
    s.add("bridge-snapshots", GROUP,
          "a snapshot of a tree restores bridges, bus numbers, windows and what is below; a bridge's "
          "blob restored re-routes and re-forwards; without bridges it is flat again", b)  # fmt: skip


def chained_snapshot(depth: int) -> bytes:
    """A snapshot of ``depth`` pci-bridges one below the other (each at device 0, function 0 of the
    secondary bus of the one above) and an edu below the last; built from the entries of a one-bridge
    snapshot, since no sequence of operations numbers more than 255 buses."""
    dm = DataManager()
    dm.register_type(PCI_BRIDGE)
    dm.create_vm(SUITE_VM)
    dm.plug(SUITE_VM, Bdf(0, 0, 0), PCI_BRIDGE)
    dm.config_write(SUITE_VM, Bdf(0, 0, 0), BUS_NUMBERS, 4, 0x0001_0100)
    dm.plug(SUITE_VM, Bdf(1, 0, 0), EDU)
    record = blobfmt.decode_snapshot(dm.snapshot(SUITE_VM))
    bridge, edu = record.devices
    devices = (bridge, *[(0, bridge[1])] * (depth - 1), edu)
    parents = (None, *range(depth))
    return blobfmt.encode_snapshot(
        dataclasses.replace(record, devices=devices, parents=parents, map_order=())
    )


def _snapshot_limits(s: _Sys) -> None:
    """R-BLOB-008: the structure of a bridged snapshot - the depth limit, the map order naming device
    entries by index, and the topology section's own length - checked before anything is restored."""
    b = _Body()
    _define(b, PCI_BRIDGE)
    b.create_vm(SUITE_VM)
    b.check("R-BLOB-008")
    deepest = chained_snapshot(blobfmt.MAX_BRIDGE_DEPTH)
    b.restore_vm(2, data=deepest)  # an edu below 255 bridges: accepted
    b.tables(2)
    b.restore_vm(3, data=chained_snapshot(blobfmt.MAX_BRIDGE_DEPTH + 1))  # below 256: bad-blob
    shallow = chained_snapshot(2)
    record = blobfmt.decode_snapshot(shallow)
    count = len(record.devices)
    for index in (count - 1, count):  # the last entry's BAR 0, then an index past the entries
        b.restore_vm(3, data=blobfmt.encode_snapshot(dataclasses.replace(record, map_order=((index, 0),))))
    bridge, _, edu = record.devices
    for devices in (
        (bridge, (0x0100, edu[1])),  # below a bridge with bus number 1 in its BDF
        (bridge, edu, edu),  # the same slot twice on one secondary bus
        (bridge, (0x0008, edu[1]), edu),  # siblings out of order: 00.0 after 01.0
        (bridge, edu, (0x0080, edu[1])),  # in order, the second at device 16: accepted
    ):
        tree = dataclasses.replace(record, devices=devices, parents=(None,) + (0,) * (len(devices) - 1))
        b.restore_vm(3, data=blobfmt.encode_snapshot(tree))
        b.tables(3)
    magic, _major, _minor, sections = _split(shallow)
    for payload in (b"", b"\x03", b"\x03\x00", b"\x03\x00\x00", b"\x00\x00\x00\x00", b"\x03\x00\x00\x00"):
        truncated = [(t, f, payload if t == blobfmt.TAG_TOPOLOGY else p) for t, f, p in sections]
        b.restore_vm(3, data=blobfmt.frame(magic, truncated))
    b.tables(3)
    s.add("bridge-snapshot-limits", GROUP,
          "a snapshot with an instance below 255 bridges restores and one below 256 is rejected; so are "
          "a map order naming a device entry past the last, an instance below a bridge with a bus number, "
          "siblings repeated or out of order, and a topology section shorter than its count or than the "
          "count field itself", b)  # fmt: skip


def _tree_edits(s: _Sys) -> None:
    """R-BRG-002, R-BRG-003, R-BRG-004, R-DEC-008: plugging and unplugging around bridges re-routes
    exactly where it must - a secondary bus emptied and filled again, a bridge unplugged so that an
    overlapping one takes its numbers, bus 0 kept by the host even when it is empty, and a BAR's
    overlap order following its new BDF when renumbering moves it."""
    b = _Body()
    _define(b, PCI_BRIDGE)
    b.create_vm(SUITE_VM)
    b.check("R-BRG-002")
    first = b.plug(SUITE_VM, PORT, PCI_BRIDGE)
    first.cw(BUS_NUMBERS, 4, 0x0001_0100)
    b.plug(SUITE_VM, Bdf(1, 0, 0), EDU)
    b.unplug(SUITE_VM, Bdf(1, 0, 0))  # the secondary bus is empty again
    b.plug(SUITE_VM, Bdf(1, 0, 0), EDU)
    _fn(b, Bdf(1, 0, 0), EDU).cr(0x00)
    b.tables(SUITE_VM)
    b.check("R-BRG-003")
    second = b.plug(SUITE_VM, Bdf(0, 2, 0), PCI_BRIDGE)
    second.cw(BUS_NUMBERS, 4, 0x0002_0200)
    b.plug(SUITE_VM, Bdf(2, 0, 0), E1000)
    second.cw(BUS_NUMBERS, 4, 0x0001_0100)  # both bridges take bus 1: the first one's bus wins
    _fn(b, Bdf(1, 0, 0), EDU).cr(0x00)
    b.tables(SUITE_VM)
    b.check("R-BRG-004")
    b.unplug(SUITE_VM, PORT)  # the first bridge goes: the second's bus is bus 1 now
    _fn(b, Bdf(1, 0, 0), E1000).cr(0x00)
    b.tables(SUITE_VM)
    b.check("R-BRG-003")
    rooted = b.plug(SUITE_VM, Bdf(5, 0, 0), PCI_BRIDGE)  # no bridge names bus 5: a root bus
    rooted.cw(BUS_NUMBERS, 4, 0x0006_0605)
    b.plug(SUITE_VM, Bdf(6, 0, 0), KITCHEN_SINK)
    b.unplug(SUITE_VM, Bdf(0, 2, 0))  # root bus 0 is empty now
    rooted.cw(BUS_NUMBERS, 4, 0x0000_0005)  # secondary 0: bus 0 still names the host's root bus 0
    _fn(b, Bdf(0, 0, 0), KITCHEN_SINK).cr(0x00)
    b.tables(SUITE_VM)
    b.check("R-DEC-008")
    rooted.cw(BUS_NUMBERS, 4, 0x0006_0605)
    rooted.cw(MEMORY_WINDOW, 4, 0xE010_E010)  # 0xe0100000-0xe01fffff
    rooted.command(CMD_MEM)
    below, beside = _fn(b, Bdf(6, 0, 0), KITCHEN_SINK), b.plug(SUITE_VM, Bdf(7, 0, 0), KITCHEN_SINK)
    below.cw(0x20, 4, 0xE010_0000)
    beside.cw(0x20, 4, 0xE010_0010)
    for sink, value in ((below, 0x11), (beside, 0x22)):
        sink.command(CMD_MEM)
        sink.mw(0xE010_0000 if sink is below else 0xE010_0010, 4, value)
    beside.cw(0x20, 4, 0xE010_0000)  # overlapping: 06:00.0 is the lower BDF and wins by default
    b.mr(SUITE_VM, 0xE010_0000)
    rooted.cw(BUS_NUMBERS, 4, 0x0008_0805)  # 06:00.0 becomes 08:00.0: 07:00.0 wins now
    b.mr(SUITE_VM, 0xE010_0000)
    b.tables(SUITE_VM)
    b.check("R-BLOB-007")
    b.snapshot(SUITE_VM, "roots")  # instances on root buses 5 and 7
    b.restore_vm(2, "roots")
    b.tables(2)
    b.mr(2, 0xE010_0000)
    b.check("R-BRG-003")
    rooted.cw(BUS_NUMBERS, 4, 0x00FF_FF05)  # bus 255, the last number, names the secondary bus
    _fn(b, Bdf(0xFF, 0, 0), KITCHEN_SINK).cr(0x00)
    b.check("R-DEC-008")
    b.unplug(SUITE_VM, Bdf(7, 0, 0))
    below = _fn(b, Bdf(0xFF, 0, 0), KITCHEN_SINK)
    below.cw(0x20, 4, 0)
    below.cw(0x14, 4, 0xE010_0000)  # BAR 1 (4 KiB) decodes 0xe0100000 through the bridge
    rooted.cw(BUS_NUMBERS, 4, 0x0000_0005)  # and keeps decoding while unreachable (no BDF)
    last = b.plug(SUITE_VM, Bdf(0xFF, 0x1F, 7), KITCHEN_SINK)  # root bus 255, the highest BDF
    last.cw(0x20, 4, 0xE010_0010)
    last.command(CMD_MEM)
    last.mw(0xE010_0010, 4, 0x33)
    last.cw(0x20, 4, 0xE010_0000)  # overlapping: any BDF is lower than none, so ff:1f.7 wins
    b.mr(SUITE_VM, 0xE010_0000)
    b.check("R-DS-009")
    last.cw(0x20, 4, 0xE020_0000)  # the 16-byte class: ff:1f.7 alone at 0xe0200000
    below.cw(0x14, 4, 0xE020_0000)  # the 4 KiB class, outside the bridge's window: not forwarded
    b.mr(SUITE_VM, 0xE020_0000)
    b.mr(SUITE_VM, 0xE020_0010)
    s.add("bridge-tree-edits", GROUP,
          "plugging and unplugging around bridges re-routes where it must: a secondary bus emptied and "
          "filled, an unplugged bridge's numbers taken by an overlapping one, bus 0 kept by the host "
          "when empty, bus 255, the overlap order following a BDF that renumbering changed or took "
          "away, a BAR outside its bridge's window beside one that decodes, and root buses other than "
          "0 in a snapshot", b)  # fmt: skip

    b = _Body()
    _define(b, PCI_BRIDGE, FLR_STICKY)
    b.create_vm(SUITE_VM)
    bridge = b.plug(SUITE_VM, PORT, PCI_BRIDGE)
    bridge.cw(BUS_NUMBERS, 4, 0x0001_0100)
    sticky = b.plug(SUITE_VM, Bdf(1, 0, 0), FLR_STICKY)
    b.check("R-RST-004")
    sticky.cw(STICKY_RW, 4, 0xAAAA_5555)
    sticky.cw(0x3C, 1, 0x0B)
    bridge.cw(CONTROL, 1, 0x40)  # secondary bus reset: sticky bits kept, the rest to power-on
    sticky.cr(STICKY_RW)
    sticky.cr(0x3C, 1)
    b.check("R-BRG-007")
    sticky.cw(0x3C, 1, 0x0C)
    bridge.cw(CONTROL + 1, 1, 0x01)  # the byte above changes: bit 6 of 0x3e was already set, no reset
    bridge.cw(0x3C, 2, 0x0105)  # interrupt line and pin, ending just below bridge control
    sticky.cr(0x3C, 1)
    bridge.cr(CONTROL, 2)
    bridge.cw(CONTROL, 2, 0)
    bridge.cw(CONTROL, 2, 0x0040)  # set again from 0: a new reset
    sticky.cr(0x3C, 1)
    sticky.cr(STICKY_RW)
    s.add("bridge-reset-keeps-sticky", GROUP,
          "a secondary bus reset keeps the sticky bits of the functions below it and resets the rest; "
          "only a write that takes bridge control bit 6 from 0 to 1 resets, not one beside it or above "
          "it while the bit stays set", b)  # fmt: skip


def _multifunction_snapshots(s: _Sys) -> None:
    """R-MF-001, R-MF-002, R-BLOB-008: the multi-function rules hold for the functions of one device
    below a bridge in a snapshot: single-function function 0 with function 1 beside it is a tree no
    plugs can build, and is rejected; a multi-function function 0 is accepted."""
    dm = DataManager()
    for dtype in (PCI_BRIDGE, MULTIFUNCTION, SINGLE):
        dm.register_type(dtype)
    dm.create_vm(SUITE_VM)
    dm.plug(SUITE_VM, Bdf(0, 0, 0), PCI_BRIDGE)
    dm.config_write(SUITE_VM, Bdf(0, 0, 0), BUS_NUMBERS, 4, 0x0001_0100)
    dm.plug(SUITE_VM, Bdf(1, 0, 0), MULTIFUNCTION)
    dm.plug(SUITE_VM, Bdf(1, 0, 1), SINGLE)
    record = blobfmt.decode_snapshot(dm.snapshot(SUITE_VM))
    bridge, multi, single = record.devices
    b = _Body()
    _define(b, PCI_BRIDGE, MULTIFUNCTION, SINGLE)
    b.create_vm(SUITE_VM)
    b.check("R-MF-002")
    for devices in (
        (bridge, (0x0000, single[1]), single),
        (bridge, multi, single),
        (bridge, (0x0001, single[1])),
    ):
        tree = dataclasses.replace(record, devices=devices, parents=(None,) + (0,) * (len(devices) - 1))
        b.restore_vm(2, data=blobfmt.encode_snapshot(tree))
        b.tables(2)
    flat = ((0x0B << 3, single[1]), ((0x0B << 3) | 1, single[1]))  # 00:0b.0 and 00:0b.1, no bridge
    b.restore_vm(3, data=blobfmt.encode_snapshot(dataclasses.replace(record, devices=flat, parents=None)))
    b.tables(3)
    s.add("bridge-multifunction-snapshots", GROUP,
          "below a bridge or on a root bus, a snapshot with a single-function function 0 and function 1 "
          "beside it is rejected; with a multi-function function 0, or function 1 alone, it restores",
          b)  # fmt: skip


def _unplug(s: _Sys) -> None:
    """R-BRG-002: unplugging a bridge removes what is below it."""
    b = _Body()
    _define(b, PCI_BRIDGE)
    b.create_vm(SUITE_VM)
    _chain(b, 2)
    nic = _nic(b, Bdf(2, 0, 0))
    b.check("R-BRG-002")
    b.unplug(SUITE_VM, PORT)
    nic.cr(0x00)
    b.mr(SUITE_VM, NIC_BAR)
    b.tables(SUITE_VM)
    b.unplug(SUITE_VM, Bdf(2, 0, 0))
    b.plug(SUITE_VM, Bdf(2, 0, 0), E1000)  # bus 2 is a root bus now
    _fn(b, Bdf(2, 0, 0), E1000).cr(0x04)
    b.tables(SUITE_VM)
    s.add("bridge-unplug", GROUP,
          "unplugging a bridge removes every function below it with its table entries", b)  # fmt: skip


def _topology(s: _Sys) -> None:
    """R-BRG-010: the ``topology`` operation lists the tree as it is plugged and numbered now.

    A case of its own (the routing case observes the same tree through accesses and ``tables``), so
    an adapter without ``topology`` skips only this one."""
    b = _Body()
    _define(b, PCI_BRIDGE, PCIE_ROOT_PORT)
    b.create_vm(SUITE_VM)
    topology = Op(OpKind.TOPOLOGY, vm=SUITE_VM)
    b.plug(SUITE_VM, Bdf(0, 5, 0), EDU)
    bridges = _chain(b, 2, forward=False)
    b.plug(SUITE_VM, Bdf(2, 3, 0), EDU)
    b.plug(SUITE_VM, Bdf(1, 4, 0), E1000)
    b.plug(SUITE_VM, Bdf(0, 2, 0), PCIE_ROOT_PORT)  # not numbered: its bus has no number
    b.plug(SUITE_VM, Bdf(9, 0, 0), EDU)  # bus 9 is routed nowhere: a root bus
    b.check("R-BRG-010")
    b.add(topology)
    bridges[1].cw(BUS_NUMBERS + 1, 1, 6)  # the lower bridge's secondary above the upper's range
    b.add(topology)
    bridges[0].cw(BUS_NUMBERS + 2, 1, 6)  # the upper range grows: bus 6 is reached again
    b.add(topology)
    bridges[0].cw(BUS_NUMBERS, 4, 0)  # the upper bridge loses its numbers: all below is unreachable
    b.add(topology)
    b.reset_vm(SUITE_VM)
    b.add(topology)
    b.unplug(SUITE_VM, PORT)  # the upper bridge and all below it go
    b.add(topology)
    b.add(Op(OpKind.TOPOLOGY, vm=SUITE_VM + 1))  # no such VM
    s.add("bridge-topology", GROUP,
          "the topology operation lists every instance in tree order with its BDF now (or none), its "
          "bridge, its root bus, slot, type and a bridge's secondary number, as numbering changes, after "
          "a VM reset and after a bridge is unplugged", b)  # fmt: skip


def bridge_cases(s: _Sys) -> None:
    """Every bridge case (R-BRG-001..R-BRG-011, R-BLOB-007, R-BLOB-008)."""
    for build in (_header, _routing, _deep, _forwarding, _window_edges, _forwarded_pieces, _isa_vga,
                  _secondary_reset, _reset, _snapshots, _snapshot_limits, _tree_edits,
                  _multifunction_snapshots, _unplug, _topology):  # fmt: skip
        build(s)
