"""BAR behaviours of QEMU device models, written from their public source (R-DT-003).

The model hands a behaviour one run of bytes inside one BAR. QEMU's memory
core does more before a device sees anything: it cuts the run into pieces no
larger than the region's maximum access size and no larger than the
alignment of their address, rejects pieces the region declares invalid
(reads of a rejected piece return zero, writes vanish), and widens or splits
each valid piece to the sizes the device implements. :class:`MemoryOps`
reproduces those rules for one region, so that a behaviour needs only the
device's own read and write handlers.

Behaviours here:

- :class:`EduBehaviour` - QEMU's ``edu`` teaching device (BAR0, 1 MiB).
- :class:`TestdevBehaviour` - QEMU's ``pci-testdev`` (BAR0 memory, BAR1 I/O,
  optional BAR2 ``membar`` that decodes nothing).
- :class:`ZeroBehaviour` - regions that read zero and ignore writes (e1000's
  I/O BAR).
- :class:`FunctionLevelReset` - a configuration behaviour (R-DT-008): what
  a write of PCI Express Initiate Function Level Reset does to configuration
  space in QEMU's PCI core (nvme).
- :class:`SwitchPortFunctionLevelReset` - the same for the x3130 switch's
  upstream port, a bridge (R-BRG-001), together with the MSI clamp QEMU's
  core applies to every function with MSI.

Every piece of state lives in ``DeviceData.extra`` so that it travels in
blobs (R-DS-005). A BAR whose behaviour is not known is *opaque*: declared in
:attr:`QemuMachine.opaque <vpcid.adapters.qemu.adapter.QemuMachine.opaque>`
and never accessed by a conforming generator; the behaviour answers zero for
it only so that the model has a defined value.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vpcid.model.behaviour import DeviceData
from vpcid.model.catalog import MsiMultipleMessageClamp
from vpcid.model.header import standard_chain

ReadFn = Callable[[DeviceData, int, int], int]
"""(state, offset, size) -> value of one device-level access."""
WriteFn = Callable[[DeviceData, int, int, int], None]
"""(state, offset, size, value) for one device-level access."""


def _pow2floor(n: int) -> int:
    return 1 << (n.bit_length() - 1)


@dataclass(frozen=True)
class MemoryOps:
    """The access rules of one QEMU ``MemoryRegionOps`` (its ``valid`` and ``impl`` fields).

    Zero means "not given", as in QEMU: ``valid_max == 0`` accepts every size
    (and pieces are then at most 4 bytes); ``impl_min == 0`` is 1 and
    ``impl_max == 0`` is 4.
    """

    valid_min: int = 0
    valid_max: int = 0
    valid_unaligned: bool = False
    impl_min: int = 0
    impl_max: int = 0
    impl_unaligned: bool = False

    def pieces(self, offset: int, length: int) -> Iterator[tuple[int, int]]:
        """The (offset, size) pieces the memory core dispatches for a run of ``length`` bytes."""
        end = offset + length
        while offset < end:
            size = end - offset
            limit = self.valid_max or 4
            if not self.impl_unaligned:
                align = offset & -offset
                if align and align < limit:
                    limit = align
            size = _pow2floor(min(size, limit))
            yield offset, size
            offset += size

    def valid(self, offset: int, size: int) -> bool:
        """Whether a piece reaches the device at all (otherwise: read zero, write dropped)."""
        if not self.valid_unaligned and offset & (size - 1):
            return False
        if not self.valid_max:
            return True
        return self.valid_min <= size <= self.valid_max

    def _calls(self, offset: int, size: int) -> Iterator[tuple[int, int, int]]:
        """Device calls for one valid piece: (offset, size, bit shift in the piece's value)."""
        impl_min, impl_max = self.impl_min or 1, self.impl_max or 4
        step = max(min(size, impl_max), impl_min)
        for k in range(0, size, step):
            yield offset + k, step, 8 * k

    def read(self, data: DeviceData, offset: int, length: int, handler: ReadFn) -> bytes:
        """Perform a read run through the memory core's rules; little-endian result."""
        out = bytearray()
        for piece, size in self.pieces(offset, length):
            value = 0
            if self.valid(piece, size):
                for at, step, shift in self._calls(piece, size):
                    value |= (handler(data, at, step) & ((1 << (8 * step)) - 1)) << shift
            out += (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        return bytes(out)

    def write(
        self,
        data: DeviceData,
        offset: int,
        payload: bytes,
        handler: WriteFn,
        swallow: Callable[[DeviceData, int, int, int], bool] | None = None,
    ) -> None:
        """Perform a write run; ``swallow`` models ioeventfds that consume a piece before the device."""
        for piece, size in self.pieces(offset, len(payload)):
            if not self.valid(piece, size):
                continue
            start = piece - offset
            value = int.from_bytes(payload[start : start + size], "little")
            if swallow is not None and swallow(data, piece, size, value):
                continue
            for at, step, shift in self._calls(piece, size):
                handler(data, at, step, (value >> shift) & ((1 << (8 * step)) - 1))


# ------------------------------------------------------------------ zero


class ZeroBehaviour:
    """Every BAR reads zero and ignores writes (QEMU's e1000 I/O BAR; undeclared BARs)."""

    name = "qemu-zero"

    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        return bytes(length)

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        return None

    def reset(self, data: DeviceData) -> None:
        return None

    def check(self, data: DeviceData) -> str | None:
        return "this behaviour keeps no state" if data.extra or data.memory else None


# ------------------------------------------------------------------ edu

EDU_OPS = MemoryOps(valid_min=4, valid_max=8, impl_min=4, impl_max=8)
"""hw/misc/edu.c: ``edu_mmio_ops`` accept 4- and 8-byte accesses, naturally aligned."""

_EDU_STATE = struct.Struct("<IIII4Q")
"""addr4, fact, status, irq_status, dma.src, dma.dst, dma.cnt, dma.cmd."""
EDU_COMPUTING, EDU_IRQFACT, EDU_DMA_RUN, EDU_FACT_IRQ = 0x01, 0x80, 0x1, 0x1
U32, U64 = (1 << 32) - 1, (1 << 64) - 1


def factorial32(n: int) -> int:
    """What edu's worker thread leaves in ``fact``: n! in 32-bit arithmetic (0! = 1)."""
    result = 1
    for k in range(2, min(n, 34) + 1):  # 34! and above are multiples of 2^32
        result = (result * k) & U32
    return 0 if n >= 34 else result


class EduBehaviour:
    """QEMU's ``edu`` device, BAR0 (``hw/misc/edu.c`` in QEMU 7.2).

    Registers (offsets into BAR0): 0x00 identification 0x010000ed; 0x04
    liveness (reads the inverse of the last write, 0 at power-on); 0x08
    factorial (a write starts the worker thread, which leaves ``n!`` modulo
    2^32; the QEMU adapter waits for it to finish, so the model completes it
    at once); 0x20 status (bit 0 computing, bit 7 raise an interrupt when the
    factorial is done; only bit 7 is writable); 0x24 interrupt status, 0x60
    raise and 0x64 lower interrupt bits; 0x80/0x88/0x90/0x98 DMA source,
    destination, count and command (frozen while a DMA runs; a DMA never
    completes while the machine is paused, so a command with bit 0 freezes
    them). Below 0x80 only 4-byte accesses reach the device; from 0x80 also
    8-byte ones; everything else reads as all ones and ignores writes. The
    memory core first drops 1- and 2-byte and unaligned pieces (read zero).

    Not modelled: the interrupt itself (INTx sets configuration status bit 3
    and MSI writes guest memory); generated accesses to 0x20-0x23 and
    0x60-0x67 are declared opaque by the adapter so that none is raised.
    """

    name = "qemu-edu"

    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        return EDU_OPS.read(data, offset, length, self._read)

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        EDU_OPS.write(data, offset, payload, self._write)

    @staticmethod
    def _read(data: DeviceData, offset: int, size: int) -> int:
        addr4, fact, status, irq, src, dst, cnt, cmd = _EDU_STATE.unpack(data.extra)
        if (offset < 0x80 and size != 4) or (offset >= 0x80 and size not in (4, 8)):
            return U64
        registers = {0x00: 0x010000ED, 0x04: addr4, 0x08: fact, 0x20: status, 0x24: irq,
                     0x80: src, 0x88: dst, 0x90: cnt, 0x98: cmd}  # fmt: skip
        return int(registers.get(offset, U64))

    @staticmethod
    def _write(data: DeviceData, offset: int, size: int, value: int) -> None:
        addr4, fact, status, irq, src, dst, cnt, cmd = _EDU_STATE.unpack(data.extra)
        if (offset < 0x80 and size != 4) or (offset >= 0x80 and size not in (4, 8)):
            return
        if offset == 0x04:
            addr4 = ~value & U32
        elif offset == 0x08:
            if not status & EDU_COMPUTING:
                fact = factorial32(value & U32)
                if status & EDU_IRQFACT:
                    irq |= EDU_FACT_IRQ
        elif offset == 0x20:
            status = (status | EDU_IRQFACT) if value & EDU_IRQFACT else (status & ~EDU_IRQFACT)
        elif offset == 0x60:
            irq |= value & U32
        elif offset == 0x64:
            irq &= ~value & U32
        elif offset in (0x80, 0x88, 0x90) and not cmd & EDU_DMA_RUN:
            src, dst, cnt = (
                value if offset == o else old for o, old in ((0x80, src), (0x88, dst), (0x90, cnt))
            )
        elif offset == 0x98 and value & EDU_DMA_RUN and not cmd & EDU_DMA_RUN:
            cmd = value
        data.extra[:] = _EDU_STATE.pack(addr4, fact, status, irq, src, dst, cnt, cmd)

    def reset(self, data: DeviceData) -> None:
        """edu has no reset handler: only power-on (a fresh instance) zeroes its registers."""
        if len(data.extra) != _EDU_STATE.size:
            data.extra[:] = bytes(_EDU_STATE.size)

    def check(self, data: DeviceData) -> str | None:
        if len(data.extra) != _EDU_STATE.size:
            return f"edu state is {_EDU_STATE.size} bytes"
        if data.memory:
            return "edu keeps no BAR memory"
        return None


# ------------------------------------------------------------------ pci-testdev

TESTDEV_OPS = MemoryOps(impl_min=1, impl_max=1)
"""hw/misc/pci-testdev.c: no ``valid`` limits, the device handles one byte at a time."""

_TESTS = (
    ("mmio-no-eventfd", False), ("mmio-wildcard-eventfd", True), ("mmio-datamatch-eventfd", True),
    ("portio-no-eventfd", False), ("portio-wildcard-eventfd", True), ("portio-datamatch-eventfd", True),
)  # fmt: skip
"""(name, has an ioeventfd) of each test, by index: type (0 mmio, 1 portio) * 3 + test."""
_DATAMATCH, _NOMATCH = 0xFA, 0xCE
_TESTDEV_STATE = struct.Struct("<b6I")
"""current test (-1 none), then each test's hit count."""


def _test_header(index: int, count: int) -> bytes:
    """A test's header as the device exposes it: test, width, offset, data, count, name, NUL."""
    name, _ = _TESTS[index]
    wildcard = "wildcard" in name
    base = 2048 if index < 3 else 128
    data = _NOMATCH if wildcard else _DATAMATCH
    return struct.pack("<BBxxIBxxxI", index, 1, base + index, data, count) + name.encode() + b"\x00"


class TestdevBehaviour:
    """QEMU's ``pci-testdev`` (``hw/misc/pci-testdev.c``): ioeventfd self-tests.

    BAR0 (4 KiB memory) and BAR1 (256 ports) share one state. Writing byte
    ``t`` (0-2) at offset 0 of BAR0 selects memory test ``t`` (of BAR1:
    port test ``3 + t``); any other byte there deselects. While a test is
    selected, both BARs read its header byte by byte (test, width, offset,
    data, hit count, name; zero past it) and a one-byte write at the test's
    offset counts a hit - for ``no-eventfd`` and ``datamatch`` only of the
    value 0xfa; the wildcard and datamatch tests register an ioeventfd that
    swallows matching one-byte writes before the device sees them. With no
    test selected everything reads zero. Device reset deselects; counts stay.
    BAR2 (``membar``) is an empty container: it decodes nothing, reads zero.
    """

    name = "qemu-pci-testdev"

    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        if bar not in (0, 1):
            return bytes(length)
        return TESTDEV_OPS.read(data, offset, length, self._read)

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        if bar not in (0, 1):
            return
        kind = bar

        def handler(d: DeviceData, at: int, size: int, value: int) -> None:
            self._write(d, at, value, kind)

        TESTDEV_OPS.write(data, offset, payload, handler, self._swallowed)

    @staticmethod
    def _state(data: DeviceData) -> tuple[int, list[int]]:
        current, *counts = _TESTDEV_STATE.unpack(data.extra)
        return current, counts

    @staticmethod
    def _store(data: DeviceData, current: int, counts: list[int]) -> None:
        data.extra[:] = _TESTDEV_STATE.pack(current, *counts)

    def _read(self, data: DeviceData, offset: int, size: int) -> int:
        current, counts = self._state(data)
        if current < 0:
            return 0
        header = _test_header(current, counts[current])
        if offset + size >= len(header):
            return 0
        return header[offset]

    def _write(self, data: DeviceData, offset: int, value: int, kind: int) -> None:
        current, counts = self._state(data)
        if offset == 0:
            current = -1
            if value < 3:
                current = kind * 3 + value
                counts[current] = 0
            self._store(data, current, counts)
            return
        if current < 0:
            return
        name, _ = _TESTS[current]
        base = 2048 if current < 3 else 128
        if offset != base + current:
            return
        if "wildcard" not in name and value != _DATAMATCH:
            return
        counts[current] = (counts[current] + 1) & U32
        self._store(data, current, counts)

    def _swallowed(self, data: DeviceData, offset: int, size: int, value: int) -> bool:
        """Whether the selected test's ioeventfd consumes this piece (exact offset, one byte)."""
        current, _ = self._state(data)
        if current < 0:
            return False
        name, has_eventfd = _TESTS[current]
        base = 2048 if current < 3 else 128
        if not has_eventfd or size != 1 or offset != base + current:
            return False
        return "wildcard" in name or value == _DATAMATCH

    def reset(self, data: DeviceData) -> None:
        if len(data.extra) != _TESTDEV_STATE.size:
            self._store(data, -1, [0] * 6)
            return
        _, counts = self._state(data)
        self._store(data, -1, counts)

    def check(self, data: DeviceData) -> str | None:
        if len(data.extra) != _TESTDEV_STATE.size or data.memory:
            return f"pci-testdev state is {_TESTDEV_STATE.size} bytes and no BAR memory"
        current, _ = self._state(data)
        return None if -1 <= current < 6 else "pci-testdev test index out of range"


# ------------------------------------------------------------------ configuration behaviour: FLR

EXPRESS_ID, MSI_ID, MSIX_ID = 0x10, 0x05, 0x11
DEVCTL, DEVCTL_FLR = 0x08, 0x8000
DEVCAP_FLR = 1 << 28


class FunctionLevelReset:
    """Initiate Function Level Reset as QEMU 7.2 performs it on configuration space (R-DT-008).

    ``pcie_cap_flr_write_config`` (hw/pci/pcie.c): after a configuration write
    leaves Device Control bit 15 set, ``pci_device_reset`` runs and the bit is
    cleared again, so it always reads zero. The reset's effect on
    configuration space is ``pci_do_device_reset`` (hw/pci/pci.c): the
    command register, the status register's RW1C bits, the interrupt line
    and cache line size cleared; every BAR and the ROM BAR back to their
    type bits (so nothing decodes); ``msi_reset`` (MSI enable and Multiple
    Message Enable cleared, address, data, mask and pending bits zeroed) and
    ``msix_reset`` (MSI-X enable and function mask cleared). Everything
    else - the rest of Device Control, power management, bytes no capability
    claims - keeps its value. The device's own registers are reset too; they
    live in BARs the adapter declares opaque.

    Device-type files name it ``qemu-flr`` (vpcid.conformance.typefile).
    """

    name = "qemu-flr"

    def config_write(self, config: bytearray, offset: int, before: bytes) -> None:
        chain = standard_chain(bytes(config))
        express = next((e.offset for e in chain if e.cap_id == EXPRESS_ID), None)
        if express is None:
            return
        control = express + DEVCTL
        if not int.from_bytes(config[control : control + 2], "little") & DEVCTL_FLR:
            return
        config[control + 1] &= ~(DEVCTL_FLR >> 8) & 0xFF
        config[0x04:0x06] = bytes(2)  # command
        config[0x07] &= 0x06  # status: the error bits (0xf900) cleared
        config[0x0C] = config[0x3C] = 0  # cache line size, interrupt line
        config[0x10:0x28] = bytes(24)  # BARs: the manager keeps their read-only type bits
        config[0x30:0x34] = bytes(4)  # ROM BAR
        for entry in chain:
            if entry.cap_id == MSI_ID:
                _msi_reset(config, entry.offset)
            elif entry.cap_id == MSIX_ID:
                config[entry.offset + 3] &= 0x3F  # MSI-X enable and function mask


def _msi_reset(config: bytearray, cap: int) -> None:
    """``msi_reset``: enable and Multiple Message Enable cleared; address, data, mask, pending zeroed."""
    flags = int.from_bytes(config[cap + 2 : cap + 4], "little") & ~0x0071
    config[cap + 2 : cap + 4] = flags.to_bytes(2, "little")
    wide, masking = bool(flags & 0x0080), bool(flags & 0x0100)
    end = cap + (14 if wide else 10) + (10 if masking else 0)
    config[cap + 4 : end] = bytes(end - cap - 4)  # address (high), data, reserved, mask, pending


DEVCTL_ERROR_REPORTING = 0x000F
"""Device Control bits 3:0 (correctable, non-fatal, fatal, unsupported request reporting enables)."""


class SwitchPortFunctionLevelReset:
    """Initiate Function Level Reset of QEMU's x3130-upstream, a bridge, with its MSI clamp (R-DT-008).

    ``xio3130_upstream_write_config`` (hw/pci-bridge/xio3130_upstream.c) runs
    the PCI core's write first - where ``msi_write_config`` clamps Multiple
    Message Enable (:class:`~vpcid.model.catalog.MsiMultipleMessageClamp`) -
    and then ``pcie_cap_flr_write_config``: with Device Control bit 15 set the
    function is reset and the bit reads zero again. The reset is
    ``pci_do_device_reset`` on a type 1 header (command, the status register's
    RW1C bits, cache line size and interrupt line cleared; the two BARs and the
    ROM BAR at 0x38 back to their type bits; MSI reset) and the port's own
    reset, ``pci_bridge_reset`` (bus numbers, secondary latency timer, the
    address bits of every window base and limit, the prefetchable upper halves
    and bridge control cleared) and ``pcie_cap_deverr_reset`` (Device Control's
    error reporting enables cleared). A type names one configuration behaviour,
    so this one carries both.
    """

    name = "vpcid.adapters.qemu.behaviours:SwitchPortFunctionLevelReset"

    def __init__(self) -> None:
        self._clamp = MsiMultipleMessageClamp()

    def config_write(self, config: bytearray, offset: int, before: bytes) -> None:
        self._clamp.config_write(config, offset, before)
        chain = standard_chain(bytes(config))
        express = next((e.offset for e in chain if e.cap_id == EXPRESS_ID), None)
        if express is None:
            return
        control = express + DEVCTL
        value = int.from_bytes(config[control : control + 2], "little")
        if not value & DEVCTL_FLR:
            return
        value &= ~(DEVCTL_FLR | DEVCTL_ERROR_REPORTING)
        config[control : control + 2] = value.to_bytes(2, "little")
        config[0x04:0x06] = bytes(2)  # command
        config[0x07] &= 0x06  # status: the error bits (0xf900) cleared
        config[0x0C] = config[0x3C] = 0  # cache line size, interrupt line
        config[0x10:0x18] = bytes(8)  # the two BARs: the manager keeps their read-only type bits
        config[0x38:0x3C] = bytes(4)  # the ROM BAR
        config[0x18:0x1C] = bytes(4)  # primary, secondary, subordinate, secondary latency timer
        config[0x1C] &= 0x0F  # I/O base and limit: the address bits; the type nibbles are read-only
        config[0x1D] &= 0x0F
        config[0x20:0x24] = bytes(4)  # memory base and limit
        config[0x24] &= 0x0F  # prefetchable base and limit: the address bits
        config[0x25] = 0
        config[0x26] &= 0x0F
        config[0x27] = 0
        config[0x28:0x30] = bytes(8)  # the prefetchable upper halves
        config[0x3E:0x40] = bytes(2)  # bridge control
        for entry in chain:
            if entry.cap_id == MSI_ID:
                _msi_reset(config, entry.offset)
            elif entry.cap_id == MSIX_ID:
                config[entry.offset + 3] &= 0x3F
