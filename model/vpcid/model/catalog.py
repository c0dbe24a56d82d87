"""Example device types written from real devices' public identities (R-DT-001).

Identities (vendor/device/class/subsystem IDs, BAR kinds and sizes) follow the
real parts; capability bodies are simplified but keep the real register
classes (writable enable bits, RW1C status bits). :data:`REGISTER_SINK` is
the one made-up type: a register map with every access class and side
effect (R-REG-001..R-REG-011), which the random engine plugs next to these.
"""

from __future__ import annotations

import struct

from vpcid.model.behaviour import DeviceData, MsixTable
from vpcid.model.devicetype import (
    BarKind,
    BarSpec,
    BridgeRegisters,
    Capability,
    DeviceType,
    IoWindow,
    PrefetchWindow,
    RomSpec,
)
from vpcid.model.header import ConfigSpace, standard_chain
from vpcid.model.registers import Access, Action, BarRegister, Bits, Effect, RegisterMap


def _power_management() -> Capability:
    """PCI power management: PMCSR power state and PME_En writable, PME status RW1C."""
    body = struct.pack("<HHBB", 0x0003, 0x0000, 0, 0)
    return Capability(0x01, body, writable=bytes([0, 0, 0x03, 0x01, 0, 0]),
                      rw1c=bytes([0, 0, 0, 0x80, 0, 0]))  # fmt: skip


def msi64_capability(capable: int = 0, maskable: bool = False, offset: int | None = None) -> Capability:
    """64-bit MSI able to use ``2**capable`` vectors (R-IRQ-001): enable and Multiple Message Enable,
    address (dword aligned), upper address and data writable; with ``maskable``, a writable mask bit per
    vector and read-only pending bits."""
    control = 0x0080 | capable << 1 | (0x100 if maskable else 0)
    body = struct.pack("<HIIH", control, 0, 0, 0)
    writable = bytes([0x71, 0x00]) + bytes([0xFC, 0xFF, 0xFF, 0xFF]) + b"\xff" * 4 + b"\xff\xff"
    if maskable:
        body += bytes(2 + 8)
        writable += bytes(2) + ((1 << (1 << capable)) - 1).to_bytes(4, "little") + bytes(4)
    return Capability(0x05, body, writable=writable, offset=offset)


def msix_capability(vectors: int, table: int, pba: int, offset: int | None = None) -> Capability:
    """MSI-X with ``vectors`` vectors, table and PBA at BAR offsets ``table`` and ``pba`` (BIR in bits 2:0):
    enable and function mask writable, the rest read-only (R-IRQ-002)."""
    body = struct.pack("<HII", vectors - 1, table, pba)
    return Capability(0x11, body, writable=bytes([0, 0xC0]) + bytes(8), offset=offset)


def _registers(size: int, fields: dict[int, tuple[int, int, int, int]]) -> tuple[bytes, bytes, bytes]:
    """Body, writable and RW1C bytes of a capability body of ``size`` bytes from ``{offset: (width, value,
    writable, rw1c)}``, offsets counted from the capability's ID byte; unnamed bytes are read-only zero."""
    body, writable, rw1c = bytearray(size), bytearray(size), bytearray(size)
    for offset, (width, value, wm, cm) in fields.items():
        for array, word in ((body, value), (writable, wm), (rw1c, cm)):
            array[offset - 2 : offset - 2 + width] = word.to_bytes(width, "little")
    return bytes(body), bytes(writable), bytes(rw1c)


def pci_express_endpoint(offset: int | None = None) -> Capability:
    """PCI Express capability, version 2, of an endpoint: all 0x3C bytes (R-DT-009).

    Device control (bits 14:0), link control (ASPM, read completion
    boundary, common clock, extended synch, clock power management,
    autonomous width disable), device control 2 (completion timeout, LTR)
    and link control 2 (target speed) writable; device status error bits
    RW1C; capabilities and status read-only; slot and root registers zero,
    as an endpoint has none.
    """
    body, writable, rw1c = _registers(0x3A, {
        0x02: (2, 0x0002, 0, 0),  # version 2, endpoint
        0x04: (4, 0x0000_8000, 0, 0),  # device capabilities: role-based error reporting
        0x08: (2, 0x2810, 0x7FFF, 0),  # device control
        0x0A: (2, 0, 0, 0x000F),  # device status: error detected bits
        0x0C: (4, 0x0040_3443, 0, 0),  # link capabilities: 8 GT/s, x4, ASPM L0s and L1
        0x10: (2, 0, 0x03CB, 0),  # link control
        0x12: (2, 0x1043, 0, 0),  # link status: 8 GT/s x4, slot clock
        0x24: (4, 0x0000_081F, 0, 0),  # device capabilities 2: completion timeout ranges, LTR
        0x28: (2, 0, 0x041F, 0),  # device control 2
        0x2C: (4, 0x0000_000E, 0, 0),  # link capabilities 2: 2.5, 5 and 8 GT/s
        0x30: (2, 0x0003, 0x000F, 0),  # link control 2: target speed 8 GT/s
    })  # fmt: skip
    return Capability(0x10, body, writable=writable, rw1c=rw1c, offset=offset)


class EduBehaviour:
    """A simplified model of the registers of QEMU's ``edu`` teaching device (R-DT-003).

    BAR0 offset 0x00 reads the identification 0x010000ed; 0x04 is the
    liveness check: it reads zero at power-on and the bitwise inverse of the
    last value written there; 0x20 bit 7 is a writable status bit. Only
    4-byte accesses at those offsets take effect; every other read returns
    all ones, every other write is dropped. State: the liveness register as
    read and the status, 8 bytes of ``extra``.

    This is a catalog device for the model, not QEMU's edu: QEMU's memory core
    reads other sizes and offsets differently and its factorial, interrupt
    and DMA registers are not modelled. The behaviour that matches QEMU 7.2
    exactly, used to certify it, is ``vpcid.adapters.qemu.behaviours``.
    """

    name = "edu"

    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        liveness, status = (int(v) for v in struct.unpack("<II", data.extra))
        value = {0x00: 0x010000ED, 0x04: liveness, 0x20: status}.get(offset)
        if length != 4 or value is None:
            return b"\xff" * length
        return value.to_bytes(4, "little")

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        if len(payload) != 4:
            return
        value = int.from_bytes(payload, "little")
        if offset == 0x04:
            data.extra[0:4] = (~value & 0xFFFFFFFF).to_bytes(4, "little")
        elif offset == 0x20:
            data.extra[4:8] = (value & 0x80).to_bytes(4, "little")

    def reset(self, data: DeviceData) -> None:
        data.extra[:] = bytes(8)

    def check(self, data: DeviceData) -> str | None:
        if len(data.extra) != 8:
            return "edu state is 8 bytes"
        if data.memory:
            return "edu keeps no BAR memory"
        (status,) = struct.unpack_from("<I", data.extra, 4)
        return None if status & ~0x80 == 0 else "edu status has bits other than 0x80"


class MsiMultipleMessageClamp:
    """Configuration behaviour ``msi-mme-clamp`` (R-DT-008), as QEMU's PCI core behaves.

    After a configuration write that touches an MSI capability (ID 0x05)
    while its MSI Enable bit (control bit 0) is set, a Multiple Message
    Enable field (control bits 6:4) larger than Multiple Message Capable
    (bits 3:1) is set to Multiple Message Capable. The PCI specification
    leaves that write undefined; clamping keeps the function consistent.
    """

    name = "msi-mme-clamp"

    def config_write(self, config: bytearray, offset: int, before: bytes) -> None:
        for entry in standard_chain(bytes(config)):
            if entry.cap_id != 0x05:
                continue
            control = int.from_bytes(config[entry.offset + 2 : entry.offset + 4], "little")
            size = (14 if control & 0x80 else 10) + (10 if control & 0x100 else 0)
            touched = offset < entry.offset + size and entry.offset < offset + len(before)
            capable, enabled = (control >> 1) & 7, (control >> 4) & 7
            if touched and control & 1 and enabled > capable:
                control = control & ~0x70 | capable << 4
                config[entry.offset + 2 : entry.offset + 4] = control.to_bytes(2, "little")


E1000 = DeviceType(
    name="e1000",
    vendor_id=0x8086, device_id=0x100E, revision=0x02, class_code=0x020000,
    subsystem_vendor_id=0x8086, subsystem_id=0x001E, interrupt_pin=1,
    bars=(BarSpec(BarKind.MEM32, 128 << 10), BarSpec(BarKind.IO, 64)),
    rom=RomSpec(64 << 10, b"\x55\xaa" + bytes(30)),
    capabilities=(_power_management(),),
)  # fmt: skip
"""Intel 82540EM Gigabit Ethernet (PRO/1000 MT Desktop): 128 KiB registers, 64-byte I/O window, option ROM."""

NVME = DeviceType(
    name="nvme",
    vendor_id=0x144D, device_id=0xA808, revision=0x00, class_code=0x010802,
    subsystem_vendor_id=0x144D, subsystem_id=0xA801, interrupt_pin=1,
    bars=(BarSpec(BarKind.MEM64, 16 << 10), None),
    capabilities=(
        _power_management(), msi64_capability(capable=5, offset=0x50), pci_express_endpoint(offset=0x70),
        msix_capability(33, table=0x3000, pba=0x2000, offset=0xB0),
    ),
    behaviour=MsixTable(),
    express=True,
)  # fmt: skip
"""Samsung 970 EVO Plus NVMe controller: 16 KiB 64-bit BAR, PCI Express; capabilities where the part has
them: power management at 0x40, 64-bit MSI for 32 vectors at 0x50, PCI Express at 0x70 and MSI-X (33
vectors, table at BAR0 0x3000, PBA at BAR0 0x2000) at 0xb0, whose table the ``msix`` behaviour serves
(R-IRQ-003)."""

EDU = DeviceType(
    name="edu",
    vendor_id=0x1234, device_id=0x11E8, revision=0x10, class_code=0x00FF00,
    subsystem_vendor_id=0x1AF4, subsystem_id=0x1100, interrupt_pin=1,
    bars=(BarSpec(BarKind.MEM32, 1 << 20),),
    capabilities=(msi64_capability(),),
    behaviour=EduBehaviour(),
)  # fmt: skip
"""QEMU's edu teaching device: one 1 MiB register BAR."""

A100 = DeviceType(
    name="a100",
    vendor_id=0x10DE, device_id=0x20F1, revision=0xA1, class_code=0x030200,
    subsystem_vendor_id=0x10DE, subsystem_id=0x145F, interrupt_pin=1,
    bars=(
        BarSpec(BarKind.MEM32, 16 << 20),
        BarSpec(BarKind.MEM64, 64 << 30, prefetchable=True), None,
        BarSpec(BarKind.MEM64, 32 << 20, prefetchable=True), None,
    ),
    capabilities=(_power_management(), msi64_capability(), pci_express_endpoint()),
    express=True,
)  # fmt: skip
"""NVIDIA A100 PCIe 40 GB: 16 MiB registers, 64 GiB and 32 MiB prefetchable 64-bit BARs."""


def _pci_express_port(port_type: int, slot: bool, offset: int | None = None) -> Capability:
    """PCI Express capability, version 2, of a port (type 4 root, 5 switch upstream, 6 switch
    downstream), all 0x3C bytes (R-DT-009): device control writable, device status error bits RW1C,
    link control writable, a slot of its own when ``slot``; other registers read zero (R-BRG-001)."""
    caps = 0x0002 | port_type << 4 | (0x0100 if slot else 0)
    body, writable, rw1c = _registers(0x3A, {
        0x02: (2, caps, 0, 0),
        0x04: (4, 0x0000_8000, 0, 0),  # device capabilities: role-based error reporting
        0x08: (2, 0x2810, 0x7FFF, 0),  # device control
        0x0A: (2, 0, 0, 0x000F),  # device status: error detected bits
        0x0C: (4, 0x0040_3443, 0, 0),  # link capabilities
        0x10: (2, 0, 0x01FB, 0),  # link control
        0x12: (2, 0x1043, 0, 0),  # link status
    })  # fmt: skip
    return Capability(0x10, body, writable=writable, rw1c=rw1c, offset=offset)


def _subsystem_vendor(offset: int) -> Capability:
    """Bridge subsystem vendor ID capability (ID 0x0D) with subsystem IDs zero, as QEMU's root port."""
    return Capability(0x0D, bytes(6), offset=offset)


QEMU_BRIDGE_CONTROL = BridgeRegisters(
    IoWindow.BITS16, PrefetchWindow.BITS64, control_mask=0x0BFF, control_rw1c=0x0400,
    secondary_status=0x00A0, secondary_status_rw1c=0, latency_timer_writable=True,
)  # fmt: skip
"""The bridge registers QEMU 7.2 gives its conventional pci-bridge (hw/pci/pci.c pci_init_mask_bridge,
hw/pci/pci_bridge.c pci_bridge_initfn; its PCI Express ports: :data:`QEMU_EXPRESS_PORT_CONTROL`):
16-bit I/O and 64-bit prefetchable windows, bridge control bits 0-9 and 11 writable and 10 (discard
timer status) RW1C, secondary status 66 MHz and fast back-to-back capable with no RW1C
bits, and a writable secondary latency timer (QEMU 8.2 makes it read-only zero below PCI Express ports,
as PCIe Base §7.5.1.3.6 says)."""

QEMU_EXPRESS_PORT_CONTROL = BridgeRegisters(
    IoWindow.BITS16, PrefetchWindow.BITS64, control_mask=0x005F, control_rw1c=0,
    secondary_status=0, secondary_status_rw1c=0, latency_timer_writable=True,
)  # fmt: skip
"""The bridge registers of QEMU 7.2's PCI Express ports (pcie-root-port, x3130-upstream,
xio3130-downstream), measured through qtest: bridge control bits 0-4 and 6 writable (no Master Abort
Mode and no conventional bits 7-11, as PCIe Base §7.5.1.3.13 has it), secondary status 0, and the
secondary latency timer writable (QEMU 8.2 makes it read-only zero)."""

CLOSED_WINDOWS = ((0x1C, bytes([0xF0, 0x00])), (0x20, bytes([0xF0, 0xFF, 0x00, 0x00])),
                  (0x24, bytes([0xF1, 0xFF, 0x01, 0x00])))  # fmt: skip
"""Power-on I/O, memory and prefetchable base and limit of QEMU's pcie-root-port: rp_reset
(hw/pci-bridge/pcie_root_port.c) calls pci_bridge_disable_base_limit, leaving each base above its limit
(I/O 0xF0/0x00, memory 0xFFF0/0x0000, prefetchable 0xFFF1/0x0001: the type nibble kept)."""


def _with_closed_windows(dtype: DeviceType) -> DeviceType:
    """``dtype`` (a bridge) powering on with :data:`CLOSED_WINDOWS` instead of open zero windows."""
    space = dtype.declared
    image = bytearray(space.image)
    for offset, data in CLOSED_WINDOWS:
        image[offset : offset + len(data)] = data
    closed = ConfigSpace(bytes(image), space.wmask, space.w1cmask, space.sticky)
    return DeviceType.from_space(
        dtype.name, closed, dtype.bars, dtype.rom, dtype.behaviour, dtype.config_behaviour
    )


PCI_BRIDGE = DeviceType(
    name="pci-bridge",
    vendor_id=0x1B36, device_id=0x0001, class_code=0x060400, interrupt_pin=1,
    bars=(BarSpec(BarKind.MEM64, 256), None),
    capabilities=(Capability(0x04, bytes([0x01, 0x00])), msi64_capability()),
    bridge=QEMU_BRIDGE_CONTROL,
)  # fmt: skip
"""QEMU's pci-bridge (1b36:0001): conventional PCI-to-PCI bridge with a 256-byte 64-bit SHPC BAR; slot
ID and MSI capabilities (the SHPC capability is left out)."""

PCIE_ROOT_PORT = _with_closed_windows(DeviceType(
    name="pcie-root-port",
    vendor_id=0x1B36, device_id=0x000C, class_code=0x060400, interrupt_pin=1,
    bars=(BarSpec(BarKind.MEM32, 4096),),
    capabilities=(_subsystem_vendor(0x40), msix_capability(1, 0x000, 0x800, offset=0x48),
                  _pci_express_port(4, slot=True, offset=0x54)),
    express=True, bridge=QEMU_EXPRESS_PORT_CONTROL,
))  # fmt: skip
"""QEMU's pcie-root-port (1b36:000c): a PCI Express root port with an MSI-X BAR of one vector, its
windows closed at power-on."""

X3130_UPSTREAM = DeviceType(
    name="x3130-upstream",
    vendor_id=0x104C, device_id=0x8232, revision=0x02, class_code=0x060400, interrupt_pin=1,
    capabilities=(msi64_capability(), _pci_express_port(5, slot=False)),
    express=True, bridge=QEMU_EXPRESS_PORT_CONTROL,
)  # fmt: skip
"""TI XIO3130 switch upstream port (104c:8232), as QEMU's x3130-upstream models it: no BARs."""

XIO3130_DOWNSTREAM = DeviceType(
    name="xio3130-downstream",
    vendor_id=0x104C, device_id=0x8233, revision=0x01, class_code=0x060400, interrupt_pin=1,
    capabilities=(msi64_capability(), _pci_express_port(6, slot=True)),
    express=True, bridge=QEMU_EXPRESS_PORT_CONTROL,
)  # fmt: skip
"""TI XIO3130 switch downstream port (104c:8233), as QEMU's xio3130-downstream models it: no BARs."""

BRIDGES: dict[str, DeviceType] = {t.name: t for t in (PCI_BRIDGE, PCIE_ROOT_PORT, X3130_UPSTREAM,
                                                       XIO3130_DOWNSTREAM)}  # fmt: skip
"""Bundled bridge types by name (R-BRG-001). Kept apart from :data:`CATALOG`, which the random engine and
the vectors draw from, so VMs without bridges stay exactly as they were."""

CATALOG: dict[str, DeviceType] = {t.name: t for t in (E1000, NVME, EDU, A100)}
"""Bundled device types by name."""


def _register_sink_map() -> RegisterMap:
    """BAR0 (4 KiB) and BAR1 (32 ports) registers of every class; BAR2 holds none (memory-like).

    The interrupt block follows the e1000 family's: ICR reads-to-clear, ICS
    sets ICR bits, IMS sets mask bits and IMC clears them (two views of one
    mask, kept equal by side effects). CTRL bit 0 sets STATUS bit 0 (ready),
    bit 1 clears it. Most reset values are non-zero so that reset shows.
    """
    rsvd_high = (Bits(31, 16, Access.RSVD),)
    return RegisterMap((
        BarRegister("ID", 0, 0x000, 4, Access.RO, reset=0x1B36_0100),
        BarRegister("CAPS", 0, 0x008, 8, Access.RO, reset=0x0000_00FF_0F01_2345),
        BarRegister("CTRL", 0, 0x010, 4, Access.RW, reset=0x0000_0010, bits=rsvd_high, on_write=(
            Effect("STATUS", Action.SET, mask=0x1, when=0x1),
            Effect("STATUS", Action.CLEAR, mask=0x1, when=0x2),
        )),
        BarRegister("STATUS", 0, 0x014, 4, Access.RO, reset=0x0000_00A0,
                    bits=(Bits(31, 8, Access.RSVD), Bits(7, 4, Access.RW1C))),
        BarRegister("IMS", 0, 0x018, 4, Access.RW1S, on_write=(
            Effect("IMC", Action.SET_WRITTEN, mask=0xFFFF_FFFF),
        )),
        BarRegister("IMC", 0, 0x01C, 4, Access.RW1C, on_write=(
            Effect("IMS", Action.CLEAR_WRITTEN, mask=0xFFFF_FFFF),
        )),
        BarRegister("ICR", 0, 0x020, 4, Access.RC, reset=0x0000_0003, bits=rsvd_high),
        BarRegister("ICS", 0, 0x024, 4, Access.WO, bits=rsvd_high, on_write=(
            Effect("ICR", Action.SET_WRITTEN, mask=0xFFFF),
        )),
        BarRegister("SCRATCH", 0, 0x028, 2, Access.RW, reset=0xBEEF),
        BarRegister("FLAGS", 0, 0x02A, 1, Access.RW1S, reset=0x01),
        BarRegister("REV", 0, 0x02B, 1, Access.RO, reset=0x5A),
        BarRegister("QWORD", 0, 0x030, 8, Access.RW, reset=0x0123_4567_89AB_CDEF,
                    bits=(Bits(63, 60, Access.RSVD),)),
        BarRegister("DOORBELL", 0, 0xFF8, 4, Access.WO, on_write=(Effect("ICR", Action.SET, mask=0x100),)),
        BarRegister("LAST", 0, 0xFFC, 4, Access.RW, reset=0xFFFF_0000),
        BarRegister("IOCTL", 1, 0x00, 2, Access.RW, reset=0x0001),
        BarRegister("IOSTAT", 1, 0x02, 1, Access.RW1C, reset=0xC3),
        BarRegister("IOQ", 1, 0x08, 8, Access.RW, reset=0x8000_0000_0000_0001),
        BarRegister("IODB", 1, 0x10, 4, Access.WO, on_write=(Effect("IOSTAT", Action.SET, mask=0x04),)),
    ))  # fmt: skip


REGISTER_SINK = DeviceType(
    name="register-sink",
    vendor_id=0x1B36, device_id=0x00F2, revision=0x01, class_code=0x00FF00,
    subsystem_vendor_id=0x1AF4, subsystem_id=0x1100, interrupt_pin=1,
    bars=(BarSpec(BarKind.MEM32, 4096), BarSpec(BarKind.IO, 32), BarSpec(BarKind.MEM32, 4096)),
    behaviour=_register_sink_map(),
)  # fmt: skip
"""Registers of every class (R-REG-002..R-REG-007), of widths 1 to 8, at both ends of a 4 KiB BAR and in
an I/O BAR, with side effects of all four actions (R-REG-009); a third BAR is plain memory. Not in
:data:`CATALOG`: the random engine defines and plugs it for implementations that take ``define_type``."""
