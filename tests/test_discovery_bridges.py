"""Discovery of type 1 bridges (vpcid.conformance.discovery, R-BRG-001): the model's bundled bridges served
back through the reference adapter, in-memory bridges, and QEMU's four bridges (skipped without QEMU)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest
from vpcid.adapters.base import FixedMachine
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.discovery import (
    ConfigAccess,
    bar_slots,
    consistent_with,
    describe_difference,
    discover_machine,
    discover_type,
)
from vpcid.model import Bdf, DeviceType
from vpcid.model.catalog import BRIDGES
from vpcid.model.header import IoWindow, PrefetchWindow

DEV = Bdf(0, 2, 0)


def _discover(dtype: DeviceType) -> DeviceType:
    (entry,) = discover_machine(ModelAdapter("model", machine=FixedMachine(vm=1, devices=((DEV, dtype),))))
    return entry.dtype


@pytest.mark.req("R-BRG-001")
@pytest.mark.parametrize("name", sorted(BRIDGES))
def test_bundled_bridges_are_rediscovered_from_the_model(name: str) -> None:
    """Each bundled bridge, served by the model, is discovered with the same bytes, masks (but the bits
    discovery never writes), windows, bridge control and BARs (two slots, the ROM BAR at 0x38): bus
    numbers and windows are probed byte by byte, not sized as BARs."""
    declared = BRIDGES[name]
    found = _discover(declared)
    assert consistent_with(found, declared), describe_difference(declared, found)
    assert found.bridge is not None
    assert declared.bridge is not None
    assert (found.bridge.io, found.bridge.prefetchable) == (declared.bridge.io, declared.bridge.prefetchable)
    assert found.bridge.control_mask == declared.bridge.control_mask
    assert bar_slots(found) == bar_slots(declared)


class BridgePort:
    """A type 1 function in memory: bus numbers, windows and bridge control writable; records writes."""

    label = "fake bridge"

    def __init__(self, image: bytes, wmask: dict[int, int]) -> None:
        self.config, self.wmask = bytearray(image), wmask
        self.writes: list[tuple[int, int, int]] = []

    def config_batch(self, accesses: Sequence[ConfigAccess]) -> list[int]:
        values = []
        for offset, width, value in accesses:
            inside = offset + width <= len(self.config)
            if value is None:
                data = self.config[offset : offset + width] if inside else b"\xff" * width
                values.append(int.from_bytes(data, "little"))
                continue
            self.writes.append((offset, width, value))
            for k in range(width if inside else 0):
                o, byte = offset + k, (value >> (8 * k)) & 0xFF
                mask = self.wmask.get(o, 0)
                self.config[o] = (self.config[o] & ~mask | byte & mask) & 0xFF
        return values

    def rom_window(self, size: int) -> int | None:
        return None

    def read_memory(self, address: int, length: int) -> bytes:
        raise AssertionError("no ROM to read")


def _bridge_port(*, io_32: bool, bar0_io: bool) -> BridgePort:
    """A bridge with one BAR (I/O or 32-bit memory), a 32-bit or 16-bit I/O window, a 32-bit prefetchable
    window; bridge control bits 0-6 writable."""
    image = bytearray(256)
    image[0:4] = struct.pack("<HH", 0x1234, 0x5678)
    image[0x0A:0x0C], image[0x0E] = b"\x00\x06", 0x01
    image[0x10] = 0x01 if bar0_io else 0x00
    image[0x1C] = image[0x1D] = 0x01 if io_32 else 0x00
    wmask = {0x04: 0x07, 0x10: 0xF0 if bar0_io else 0x00, 0x11: 0xFF, 0x12: 0xFF, 0x13: 0xFF, 0x18: 0xFF,
             0x19: 0xFF, 0x1A: 0xFF, 0x1C: 0xF0, 0x1D: 0xF0, 0x20: 0xF0, 0x21: 0xFF, 0x22: 0xF0, 0x23: 0xFF,
             0x24: 0xF0, 0x25: 0xFF, 0x26: 0xF0, 0x27: 0xFF, 0x3C: 0xFF, 0x3E: 0x7F}  # fmt: skip
    if io_32:
        wmask |= dict.fromkeys(range(0x30, 0x34), 0xFF)
    return BridgePort(bytes(image), wmask)


@pytest.mark.req("R-BRG-001")
def test_a_bridge_is_probed_without_a_secondary_bus_reset() -> None:
    """Bridge control bit 6 is never written as one (it would reset everything below); it is declared
    writable and noted. The bus numbers, I/O upper 16 bits and windows are probed, BAR1's slot too."""
    port = _bridge_port(io_32=True, bar0_io=True)
    found = discover_type(port, "bridge")
    for offset, width, value in port.writes:
        if offset <= 0x3E < offset + width:
            assert not value.to_bytes(width, "little")[0x3E - offset] & 0x40, (offset, width, value)
    assert any("Secondary Bus Reset" in note and "not probed" in note for note in found.notes)
    t = found.dtype
    assert t.bridge is not None
    assert (t.bridge.io, t.bridge.prefetchable) == (IoWindow.BITS32, PrefetchWindow.BITS32)
    assert t.bridge.control_mask == 0x7F
    assert t.bars[0] is not None
    assert t.bars[0].size == 16
    assert t.declared.wmask[0x18:0x1B] == b"\xff\xff\xff"
    assert t.declared.wmask[0x30:0x34] == b"\xff\xff\xff\xff"


@pytest.mark.req("R-BRG-001")
def test_a_bridge_whose_bytes_no_window_declaration_has_is_declared_the_nearest_way_and_noted() -> None:
    """A 16-bit I/O window whose upper 16 bits are writable anyway: declared read-only zero, noted."""
    port = _bridge_port(io_32=False, bar0_io=False)
    port.wmask |= dict.fromkeys(range(0x30, 0x34), 0xFF)
    found = discover_type(port, "bridge")
    assert found.dtype.bridge is not None
    assert found.dtype.bridge.io is IoWindow.BITS16
    assert found.dtype.declared.wmask[0x30:0x34] == bytes(4)
    assert any("bridge registers a 16-bit I/O" in note and "0x30 read" in note for note in found.notes)
