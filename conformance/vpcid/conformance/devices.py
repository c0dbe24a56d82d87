"""Device types the suite's engines plug, by name (the trace language's ``type`` field).

Implementations under test must know these types; ``vpcid types`` prints
them. All are memory-like (R-DT-004) except ``edu``, whose behaviour is
declared in :mod:`vpcid.model.catalog`.
"""

from __future__ import annotations

import struct

from vpcid.model import (
    CATALOG,
    BarKind,
    BarSpec,
    Capability,
    DeviceType,
    ExtendedCapability,
    Register,
    RegisterClass,
    RomSpec,
)
from vpcid.model.catalog import MsiMultipleMessageClamp, pci_express_endpoint

KITCHEN_SINK = DeviceType(
    name="kitchen-sink",
    vendor_id=0x1B36, device_id=0x00F0, revision=0x01, class_code=0x00FF00,
    subsystem_vendor_id=0x1AF4, subsystem_id=0x1100, interrupt_pin=2, multifunction=True,
    bars=(
        BarSpec(BarKind.IO, 32),
        BarSpec(BarKind.MEM32, 4096),
        BarSpec(BarKind.MEM64, 1 << 20, prefetchable=True), None,
        BarSpec(BarKind.MEM32, 16),
        BarSpec(BarKind.IO, 4),
    ),
    rom=RomSpec(2048, bytes(range(256)) * 8),
    capabilities=(
        Capability(0x05, struct.pack("<HIIH", 0x0084, 0, 0, 0), offset=0x50,
                   writable=bytes([0x71, 0x00, 0xFC, 0xFF, 0xFF, 0xFF]) + b"\xff" * 6),
        Capability(0x09, bytes([0x0A, 0x5A, 0xA5, 0, 0, 0x0F]), writable=bytes([0, 0xFF, 0x0F, 0, 0, 0]),
                   rw1c=bytes([0, 0, 0, 0, 0, 0x0F]), offset=0x40),
    ),
    config_behaviour=MsiMultipleMessageClamp(),
    registers=(
        Register(0x60, 4, RegisterClass.RW1C, 0x8000_00F1),
        Register(0x64, 4, RegisterClass.RW, 0x1234_5678),
        Register(0x68, 2, RegisterClass.RO, 0xBEEF),
        Register(0x6C, 4, RegisterClass.RSVD, 0),
    ),
)  # fmt: skip
"""Every feature in one conventional function: I/O, 32- and 64-bit BARs, a 16-byte BAR, ROM, a
capability chain that runs downwards (64-bit MSI placed at 0x50, able to use 4 vectors, whose Multiple
Message Enable the ``msi-mme-clamp`` configuration behaviour clamps; then a vendor capability with RW
and RW1C bytes at 0x40), and device-specific RO/RW/RW1C/reserved registers."""

EXPRESS_SINK = DeviceType(
    name="express-sink",
    vendor_id=0x1B36, device_id=0x00F1, class_code=0x058000,
    bars=(BarSpec(BarKind.MEM64, 1 << 32), None, BarSpec(BarKind.IO, 256)),
    capabilities=(pci_express_endpoint(),),  # R-DT-009: a PCI Express function carries one
    extended_capabilities=(
        ExtendedCapability(0x000B, 1, bytes([0x01, 0x10, 0x00, 0x01]) + bytes(8),
                           writable=bytes(4) + b"\xff" * 4 + bytes(4), rw1c=bytes(8) + b"\x0f" + bytes(3)),
        ExtendedCapability(0x0001, 2, bytes(8), writable=bytes(4) + b"\xff\x0f" + bytes(2), offset=0x400),
    ),
    registers=(Register(0x200, 4, RegisterClass.RW, 0), Register(0xFFC, 4, RegisterClass.RW1C, 0xFFFF_FFFF)),
    express=True,
)  # fmt: skip
"""A PCI Express function with a 4 GiB BAR, its PCI Express capability at 0x40, a vendor-specific
extended capability at 0x100, a second
extended capability placed at 0x400, and registers in extended configuration space."""

SUITE_TYPES: dict[str, DeviceType] = {
    **CATALOG,
    KITCHEN_SINK.name: KITCHEN_SINK,
    EXPRESS_SINK.name: EXPRESS_SINK,
}
