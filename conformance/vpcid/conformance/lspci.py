"""Render a VM the way ``lspci -nn`` / ``lspci -vv -nn`` print a real machine.

Everything shown is found through the data manager's public interface, as
an operating system would find it: configuration reads for identity,
command and status, capabilities; the Linux BAR sizing probe (decode off,
write all ones, read back, restore) for region sizes; and the manager's
tables (:meth:`~vpcid.model.DataManager.tables`,
:meth:`~vpcid.model.DataManager.resolve`) to tell whether each region
actually decodes. Rendering leaves the VM exactly as it found it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vpcid.model.bdf import Bdf
from vpcid.model.devicetype import (
    BAR0,
    CACHE_LINE_SIZE,
    CAP_POINTER,
    CLASS_CODE,
    CMD_IO,
    CMD_MEM,
    COMMAND,
    DEVICE_ID,
    INTERRUPT_LINE,
    INTERRUPT_PIN,
    LATENCY_TIMER,
    REVISION,
    ROM_BAR,
    ROM_INDEX,
    STATUS,
    STATUS_CAP_LIST,
    SUBSYSTEM_ID,
    SUBSYSTEM_VENDOR_ID,
    VENDOR_ID,
)
from vpcid.model.manager import DataManager, VmTables

BAR_COUNT = 6
DECODE_ENABLE = CMD_IO | CMD_MEM
BAR_SPACE_IO = 0x1
BAR_MEM_TYPE_MASK = 0x6
BAR_MEM_TYPE_64 = 0x4
BAR_MEM_PREFETCH = 0x8
BAR_IO_ADDRESS_MASK = ~0x3
BAR_MEM_ADDRESS_MASK = ~0xF
ROM_ADDRESS_MASK = 0xFFFF_F800
ROM_ENABLE = 0x1
IO_SPACE_LIMIT = 0xFFFF
"""x86 port space: Linux sizes I/O BARs within 16 bits (``IO_SPACE_LIMIT``)."""
DWORD = 0xFFFF_FFFF
MAX_CAPABILITIES = 48
"""A conventional capability list holds at most (256 - 64) / 4 entries."""

CLASS_NAMES: dict[int, str] = {
    0x00: "Unclassified device", 0x01: "Mass storage controller", 0x02: "Network controller",
    0x03: "Display controller", 0x04: "Multimedia controller", 0x05: "Memory controller",
    0x06: "Bridge", 0x07: "Communication controller", 0x08: "Generic system peripheral",
    0x09: "Input device controller", 0x0A: "Docking station", 0x0B: "Processor",
    0x0C: "Serial bus controller", 0x0D: "Wireless controller", 0x0E: "Intelligent controller",
    0x0F: "Satellite communications controller", 0x10: "Encryption controller",
    0x11: "Signal processing controller", 0x12: "Processing accelerators",
    0x13: "Non-Essential Instrumentation", 0x40: "Coprocessor", 0xFF: "Unassigned class",
}  # fmt: skip
"""Base class names, as in pci.ids (used when the subclass is not listed)."""

SUBCLASS_NAMES: dict[int, str] = {
    0x0000: "Non-VGA unclassified device", 0x0001: "VGA compatible unclassified device",
    0x0100: "SCSI storage controller", 0x0101: "IDE interface", 0x0106: "SATA controller",
    0x0107: "Serial Attached SCSI controller", 0x0108: "Non-Volatile memory controller",
    0x0180: "Mass storage controller", 0x0200: "Ethernet controller", 0x0280: "Network controller",
    0x0300: "VGA compatible controller", 0x0302: "3D controller", 0x0380: "Display controller",
    0x0403: "Audio device", 0x0600: "Host bridge", 0x0601: "ISA bridge", 0x0604: "PCI bridge",
    0x0C03: "USB controller", 0x0C05: "SMBus", 0x1200: "Processing accelerators",
}  # fmt: skip
"""Class/subclass names (class code bits 23:8), as in pci.ids."""

PROG_IF_NAMES: dict[tuple[int, int], str] = {
    (0x0108, 0x01): "NVMHCI", (0x0108, 0x02): "NVM Express",
    (0x0106, 0x01): "AHCI 1.0", (0x0C03, 0x30): "XHCI",
}  # fmt: skip
"""Programming interface names for a few classes, as lspci shows them with ``-v``."""

VENDOR_NAMES: dict[int, str] = {
    0x1002: "Advanced Micro Devices, Inc. [AMD/ATI]", 0x1022: "Advanced Micro Devices, Inc. [AMD]",
    0x10DE: "NVIDIA Corporation", 0x10EC: "Realtek Semiconductor Co., Ltd.",
    0x144D: "Samsung Electronics Co Ltd", 0x14E4: "Broadcom Inc. and subsidiaries",
    0x15AD: "VMware", 0x15B3: "Mellanox Technologies", 0x1AF4: "Red Hat, Inc.",
    0x1B36: "Red Hat, Inc.", 0x1D0F: "Amazon.com, Inc.", 0x8086: "Intel Corporation",
}  # fmt: skip
"""Vendor names from pci.ids; 0x1234 (QEMU's edu and VGA) is unassigned there, so it shows as Device."""

CAPABILITY_NAMES: dict[int, str] = {0x01: "Power Management", 0x05: "MSI", 0x10: "Express", 0x11: "MSI-X"}


@dataclass(frozen=True, slots=True)
class BarProbe:
    """What the sizing probe found for one BAR or the expansion ROM (R-BAR-003).

    For a 64-bit BAR ``original`` and ``readback`` hold both dwords (upper
    dword in bits 63:32).
    """

    index: int
    """BAR index 0-5, or 6 for the expansion ROM."""
    original: int
    """The register value before the probe, type bits included."""
    readback: int
    """The value read back after writing all ones to the address bits."""
    size: int
    """Bytes decoded: the lowest address bit that reads back as one."""

    @property
    def is_io(self) -> bool:
        return self.index != ROM_INDEX and bool(self.original & BAR_SPACE_IO)

    @property
    def is_64bit(self) -> bool:
        return (
            self.index != ROM_INDEX
            and not self.is_io
            and self.original & BAR_MEM_TYPE_MASK == BAR_MEM_TYPE_64
        )

    @property
    def address(self) -> int:
        """The programmed address with type (or ROM enable) bits removed."""
        if self.index == ROM_INDEX:
            return self.original & ROM_ADDRESS_MASK
        return self.original & (BAR_IO_ADDRESS_MASK if self.is_io else BAR_MEM_ADDRESS_MASK)


def probe_bars(manager: DataManager, vm_id: int, bdf: Bdf) -> tuple[BarProbe, ...]:
    """Size every implemented BAR and the ROM the way Linux does (``pci_read_bases``).

    Decode is switched off in the command register, each register is saved,
    written with all ones, read back and restored, then the command register
    is restored. BARs that read back zero are not implemented and are left out.
    """

    def read(offset: int) -> int:
        return manager.config_read(vm_id, bdf, offset, 4)

    def size_dword(offset: int, ones: int) -> tuple[int, int]:
        original = read(offset)
        manager.config_write(vm_id, bdf, offset, 4, original | ones)
        readback = read(offset)
        manager.config_write(vm_id, bdf, offset, 4, original)
        return original, readback

    command = manager.config_read(vm_id, bdf, COMMAND, 2)
    if command & DECODE_ENABLE:
        manager.config_write(vm_id, bdf, COMMAND, 2, command & ~DECODE_ENABLE)
    probes: list[BarProbe] = []
    try:
        index = 0
        while index < BAR_COUNT:
            offset = BAR0 + 4 * index
            original, readback = size_dword(offset, DWORD)
            if original & BAR_SPACE_IO:
                size = _lowest_bit(readback & BAR_IO_ADDRESS_MASK & IO_SPACE_LIMIT)
                step = 1
            elif original & BAR_MEM_TYPE_MASK == BAR_MEM_TYPE_64 and index + 1 < BAR_COUNT:
                original_high, readback_high = size_dword(offset + 4, DWORD)
                original |= original_high << 32
                readback |= readback_high << 32
                size = _lowest_bit(readback & BAR_MEM_ADDRESS_MASK & ((1 << 64) - 1))
                step = 2
            else:
                size = _lowest_bit(readback & BAR_MEM_ADDRESS_MASK & DWORD)
                step = 1
            if size:
                probes.append(BarProbe(index, original, readback, size))
            index += step
        original, readback = size_dword(ROM_BAR, ROM_ADDRESS_MASK)
        rom_size = _lowest_bit(readback & ROM_ADDRESS_MASK)
        if rom_size:
            probes.append(BarProbe(ROM_INDEX, original, readback, rom_size))
    finally:
        if command & DECODE_ENABLE:
            manager.config_write(vm_id, bdf, COMMAND, 2, command)
    return tuple(probes)


def _lowest_bit(value: int) -> int:
    return value & -value


def format_size(size: int) -> str:
    """lspci's ``show_size``: the size in the largest whole unit of K, M, G, T."""
    units = ("", "K", "M", "G", "T")
    step = 0
    while size % 1024 == 0 and step < len(units) - 1:
        size //= 1024
        step += 1
    return f"{size}{units[step]}"


def class_name(class_code: int) -> str:
    """The pci.ids name of a 24-bit class code's class and subclass."""
    subclass = class_code >> 8
    name = SUBCLASS_NAMES.get(subclass) or CLASS_NAMES.get(subclass >> 8)
    return name if name is not None else f"Class {subclass:04x}"


def vendor_device_name(vendor_id: int, device_id: int) -> str:
    """``Intel Corporation Device [8086:100e]``; an unknown vendor shows as ``Device [1234:11e8]``."""
    vendor = VENDOR_NAMES.get(vendor_id)
    prefix = f"{vendor} " if vendor is not None else ""
    return f"{prefix}Device [{vendor_id:04x}:{device_id:04x}]"


def render_lspci(manager: DataManager, vm_id: int, *, verbose: bool = False) -> str:
    """Every function of the VM, one line each, or with ``verbose`` the ``lspci -vv`` detail.

    The VM is left as it was found: the sizing probe restores every register
    it touches, and if re-enabling decode changed the order in which BARs
    were mapped (which the last-mapped overlap variant depends on), the VM
    is put back from the snapshot taken before.
    """
    tables = manager.tables(vm_id)
    before = manager.snapshot(vm_id) if verbose else b""
    decoders = _decoders(manager, vm_id, tables) if verbose else {}
    lines: list[str] = []
    try:
        for bdf, _type_name in tables.config:
            lines.extend(_DeviceView(manager, vm_id, bdf, decoders).render(verbose=verbose))
    finally:
        if verbose and manager.snapshot(vm_id) != before:
            manager.restore_vm(vm_id, before)
    return "".join(line + "\n" for line in lines)


Decoders = dict[tuple[Bdf, int], tuple[Bdf, int] | None]
"""(BDF, BAR) of every decoding window -> the (BDF, BAR) that wins its base address."""


def _decoders(manager: DataManager, vm_id: int, tables: VmTables) -> Decoders:
    """Who decodes each window's base, read before any probe re-maps a window."""
    spaces = (("io", tables.io), ("memory", tables.memory))
    return {
        (entry.bdf, entry.bar): manager.resolve(vm_id, space, entry.base)
        for space, entries in spaces
        for entry in entries
    }


def _flag(value: int, bit: int) -> str:
    return "+" if value & bit else "-"


class _DeviceView:
    """One function, read through configuration space, rendered as lspci lines."""

    def __init__(self, manager: DataManager, vm_id: int, bdf: Bdf, decoders: Decoders) -> None:
        self.manager = manager
        self.vm_id = vm_id
        self.bdf = bdf
        self.decoders = decoders

    def read(self, offset: int, width: int) -> int:
        return self.manager.config_read(self.vm_id, self.bdf, offset, width)

    def render(self, *, verbose: bool) -> list[str]:
        class_code = self.read(CLASS_CODE, 1) | self.read(CLASS_CODE + 1, 2) << 8
        revision = self.read(REVISION, 1)
        title = (
            f"{self.bdf} {class_name(class_code)} [{class_code >> 8:04x}]: "
            f"{vendor_device_name(self.read(VENDOR_ID, 2), self.read(DEVICE_ID, 2))}"
        )
        if revision:
            title += f" (rev {revision:02x})"
        if not verbose:
            return [title]
        prog_if = class_code & 0xFF
        if prog_if:
            name = PROG_IF_NAMES.get((class_code >> 8, prog_if))
            title += f" (prog-if {prog_if:02x} [{name}])" if name else f" (prog-if {prog_if:02x})"
        lines = [title]
        subsystem_vendor = self.read(SUBSYSTEM_VENDOR_ID, 2)
        if subsystem_vendor not in (0, 0xFFFF):
            lines.append(f"\tSubsystem: {vendor_device_name(subsystem_vendor, self.read(SUBSYSTEM_ID, 2))}")
        command = self.read(COMMAND, 2)
        lines += self.control_and_status(command)
        lines += self.regions(command)
        lines += self.capabilities()
        lines.append(f"\tVPCID device type: {self.manager.device_type(self.vm_id, self.bdf).name}")
        lines.append("")
        return lines

    def control_and_status(self, command: int) -> list[str]:
        status = self.read(STATUS, 2)
        devsel = ("fast", "medium", "slow", "??")[(status >> 9) & 0x3]
        lines = [
            f"\tControl: I/O{_flag(command, 0x1)} Mem{_flag(command, 0x2)} BusMaster{_flag(command, 0x4)} "
            f"SpecCycle{_flag(command, 0x8)} MemWINV{_flag(command, 0x10)} VGASnoop{_flag(command, 0x20)} "
            f"ParErr{_flag(command, 0x40)} Stepping{_flag(command, 0x80)} SERR{_flag(command, 0x100)} "
            f"FastB2B{_flag(command, 0x200)} DisINTx{_flag(command, 0x400)}",
            f"\tStatus: Cap{_flag(status, 0x10)} 66MHz{_flag(status, 0x20)} UDF{_flag(status, 0x40)} "
            f"FastB2B{_flag(status, 0x80)} ParErr{_flag(status, 0x100)} DEVSEL={devsel} "
            f">TAbort{_flag(status, 0x800)} <TAbort{_flag(status, 0x1000)} <MAbort{_flag(status, 0x2000)} "
            f">SERR{_flag(status, 0x4000)} <PERR{_flag(status, 0x8000)} INTx{_flag(status, 0x8)}",
        ]
        if command & 0x4:
            latency = f"\tLatency: {self.read(LATENCY_TIMER, 1)}"
            cache_line = self.read(CACHE_LINE_SIZE, 1)
            lines.append(latency + (f", Cache Line Size: {cache_line * 4} bytes" if cache_line else ""))
        pin = self.read(INTERRUPT_PIN, 1)
        if pin:
            line = self.read(INTERRUPT_LINE, 1)
            pin_name = chr(ord("A") + pin - 1) if pin <= 4 else "?"
            routed = f" routed to IRQ {line}" if line not in (0, 0xFF) else ""
            lines.append(f"\tInterrupt: pin {pin_name}{routed}")
        return lines

    # ---------------------------------------------------------------- BARs
    def regions(self, command: int) -> list[str]:
        lines: list[str] = []
        for probe in probe_bars(self.manager, self.vm_id, self.bdf):
            if probe.index == ROM_INDEX:
                lines.append(self.rom_line(probe, command))
                continue
            address = probe.address
            if probe.is_io:
                where = f"{address:04x}" if address else "<unassigned>"
                text = f"I/O ports at {where}"
                enabled = bool(command & CMD_IO)
            else:
                where = f"{address:08x}" if address else "<unassigned>"
                width = "64-bit" if probe.is_64bit else "32-bit"
                prefetch = "" if probe.original & BAR_MEM_PREFETCH else "non-"
                text = f"Memory at {where} ({width}, {prefetch}prefetchable)"
                enabled = bool(command & CMD_MEM)
            marker = self.decode_marker(probe, enabled=enabled, disabled_text="[disabled]")
            lines.append(f"\tRegion {probe.index}: {text}{marker} [size={format_size(probe.size)}]")
        return lines

    def rom_line(self, probe: BarProbe, command: int) -> str:
        where = f"{probe.address:08x}" if probe.address else "<unassigned>"
        if not probe.original & ROM_ENABLE:
            marker = " [disabled]"
        else:
            marker = self.decode_marker(
                probe, enabled=bool(command & CMD_MEM), disabled_text="[disabled by cmd]"
            )
        return f"\tExpansion ROM at {where}{marker} [size={format_size(probe.size)}]"

    def decode_marker(self, probe: BarProbe, *, enabled: bool, disabled_text: str) -> str:
        """Empty when the BAR decodes and wins its base address; otherwise why not."""
        if not enabled:
            return f" {disabled_text}"
        window = (self.bdf, probe.index)
        if window not in self.decoders:
            return " [not decoding]"
        owner = self.decoders[window]
        if owner is not None and owner != window:
            other, bar = owner
            return f" [shadowed by {other} {'ROM' if bar == ROM_INDEX else f'BAR {bar}'}]"
        return ""

    # -------------------------------------------------------- capabilities
    def capabilities(self) -> list[str]:
        if not self.read(STATUS, 2) & STATUS_CAP_LIST:
            return []
        lines: list[str] = []
        seen: set[int] = set()
        where = self.read(CAP_POINTER, 1) & ~0x3
        while where:
            if where in seen or len(seen) >= MAX_CAPABILITIES:
                lines.append("\tCapabilities: <chain looped>")
                break
            seen.add(where)
            cap_id = self.read(where, 1)
            if cap_id == 0xFF:
                lines.append(f"\tCapabilities: [{where:02x}] <chain broken>")
                break
            describe = _CAPABILITY_DETAIL.get(cap_id)
            name = CAPABILITY_NAMES.get(cap_id, f"Capability id {cap_id:#04x}")
            if describe is None:
                lines.append(f"\tCapabilities: [{where:02x}] {name}")
            else:
                head, *detail = describe(self, where)
                lines.append(f"\tCapabilities: [{where:02x}] {head}")
                lines.extend(f"\t\t{text}" for text in detail)
            where = self.read(where + 1, 1) & ~0x3
        return lines

    def power_management(self, where: int) -> list[str]:
        pmc = self.read(where + 2, 2)
        pmcsr = self.read(where + 4, 2)
        aux_current = (0, 55, 100, 160, 220, 270, 320, 375)[(pmc >> 6) & 0x7]
        return [
            f"Power Management version {pmc & 0x7}",
            f"Flags: PMEClk{_flag(pmc, 0x8)} DSI{_flag(pmc, 0x20)} D1{_flag(pmc, 0x200)} "
            f"D2{_flag(pmc, 0x400)} AuxCurrent={aux_current}mA PME(D0{_flag(pmc, 0x800)},"
            f"D1{_flag(pmc, 0x1000)},D2{_flag(pmc, 0x2000)},D3hot{_flag(pmc, 0x4000)},"
            f"D3cold{_flag(pmc, 0x8000)})",
            f"Status: D{pmcsr & 0x3} NoSoftRst{_flag(pmcsr, 0x8)} PME-Enable{_flag(pmcsr, 0x100)} "
            f"DSel={(pmcsr >> 9) & 0xF} DScale={(pmcsr >> 13) & 0x3} PME{_flag(pmcsr, 0x8000)}",
        ]

    def msi(self, where: int) -> list[str]:
        control = self.read(where + 2, 2)
        is_64bit = bool(control & 0x80)
        address = self.read(where + 4, 4)
        if is_64bit:
            address |= self.read(where + 8, 4) << 32
        data = self.read(where + (0xC if is_64bit else 0x8), 2)
        enabled_vectors = 1 << ((control >> 4) & 0x7)
        capable_vectors = 1 << ((control >> 1) & 0x7)
        return [
            f"MSI: Enable{_flag(control, 0x1)} Count={enabled_vectors}/{capable_vectors} "
            f"Maskable{_flag(control, 0x100)} 64bit{_flag(control, 0x80)}",
            f"Address: {address:016x}  Data: {data:04x}"
            if is_64bit
            else f"Address: {address:08x}  Data: {data:04x}",
        ]

    def express(self, where: int) -> list[str]:
        flags = self.read(where + 2, 2)
        port_types = {
            0x0: "Endpoint", 0x1: "Legacy Endpoint", 0x4: "Root Port", 0x5: "Upstream Port",
            0x6: "Downstream Port", 0x7: "PCI-Express to PCI/PCI-X Bridge",
            0x8: "PCI/PCI-X to PCI-Express Bridge", 0x9: "Root Complex Integrated Endpoint",
            0xA: "Root Complex Event Collector",
        }  # fmt: skip
        port_type = (flags >> 4) & 0xF
        kind = port_types.get(port_type, f"Unknown type {port_type}")
        device_cap = self.read(where + 4, 4)
        device_control = self.read(where + 8, 2)
        device_status = self.read(where + 0xA, 2)
        link_cap = self.read(where + 0xC, 4)
        link_status = self.read(where + 0x12, 2)
        return [
            f"Express (v{flags & 0xF}) {kind}, MSI {(flags >> 9) & 0x1F:02x}",
            f"DevCap:\tMaxPayload {128 << (device_cap & 0x7)} bytes, "
            f"PhantFunc {(1 << ((device_cap >> 3) & 0x3)) - 1}",
            f"DevCtl:\tCorrErr{_flag(device_control, 0x1)} NonFatalErr{_flag(device_control, 0x2)} "
            f"FatalErr{_flag(device_control, 0x4)} UnsupReq{_flag(device_control, 0x8)}",
            f"\tMaxPayload {128 << ((device_control >> 5) & 0x7)} bytes, "
            f"MaxReadReq {128 << ((device_control >> 12) & 0x7)} bytes",
            f"DevSta:\tCorrErr{_flag(device_status, 0x1)} NonFatalErr{_flag(device_status, 0x2)} "
            f"FatalErr{_flag(device_status, 0x4)} UnsupReq{_flag(device_status, 0x8)} "
            f"AuxPwr{_flag(device_status, 0x10)} TransPend{_flag(device_status, 0x20)}",
            f"LnkCap:\tPort #{link_cap >> 24}, Speed {_link_speed(link_cap & 0xF)}, "
            f"Width x{(link_cap >> 4) & 0x3F}",
            f"LnkSta:\tSpeed {_link_speed(link_status & 0xF)}, Width x{(link_status >> 4) & 0x3F}",
        ]

    def msix(self, where: int) -> list[str]:
        control = self.read(where + 2, 2)
        table = self.read(where + 4, 4)
        pending = self.read(where + 8, 4)
        return [
            f"MSI-X: Enable{_flag(control, 0x8000)} Count={(control & 0x7FF) + 1} "
            f"Masked{_flag(control, 0x4000)}",
            f"Vector table: BAR={table & 0x7} offset={table & ~0x7:08x}",
            f"PBA: BAR={pending & 0x7} offset={pending & ~0x7:08x}",
        ]


_CAPABILITY_DETAIL: dict[int, Callable[[_DeviceView, int], list[str]]] = {
    0x01: _DeviceView.power_management,
    0x05: _DeviceView.msi,
    0x10: _DeviceView.express,
    0x11: _DeviceView.msix,
}
"""Capability IDs whose registers are decoded, with the lines they print (head line first)."""


def _link_speed(code: int) -> str:
    return {1: "2.5GT/s", 2: "5GT/s", 3: "8GT/s", 4: "16GT/s", 5: "32GT/s", 6: "64GT/s"}.get(code, "unknown")
