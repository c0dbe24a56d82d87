"""A small VMM with one PCI device, and the adapter that lets vpcid certify it.

Copy this file, replace the VMM part with (calls into) your own VMM, and run,
from the folder that holds it::

    vpcid certify --adapter example:factory

docs/example-adapter.md walks through it. The file has two parts:

1. ``ToyVmm``: what you already have. A guest's view of one PCI function at
   00:03.0 (configuration space, a 4 KiB memory BAR, a 32-port I/O BAR) behind
   configuration mechanism #1 (ports 0xCF8/0xCFC) and an ECAM window. It knows
   nothing of vpcid.
2. ``ExampleAdapter`` and ``factory``: the thin bridge. It declares the
   machine the VMM shows a guest (``FixedMachine``: the VM, the device's type,
   the ECAM window), turns each trace operation into a guest access, and
   turns what the VMM does into an observation, rejections included.
"""

from __future__ import annotations

from collections.abc import Callable

from vpcid.adapters.base import AdapterInfo, FixedMachine
from vpcid.conformance.trace import GUEST_VIEW, OK, Observation, Op, OpKind
from vpcid.model import BarKind, BarSpec, Bdf, DeviceType, Profile

# ====================================================================== 1. the VMM (yours)

ECAM_BASE = 0xB000_0000
ECAM_SIZE = 256 << 20  # 4 KiB per function, 32 devices x 8 functions x 256 buses
CONFIG_ADDRESS = 0xCF8  # configuration mechanism #1: the address register ...
CONFIG_DATA = 0xCFC  # ... and the 4-port data window
DEVICE_SLOT = (0, 3, 0)  # bus, device, function of our one device

MEMORY_BAR_SIZE = 4096  # BAR0: 32-bit memory
IO_BAR_SIZE = 32  # BAR1: I/O ports
COMMAND_IO, COMMAND_MEMORY = 0x1, 0x2
COMMAND_WRITABLE = 0x0507  # I/O, memory, bus master, SERR# enable, INTx disable
STATUS_RW1C = 0xF900  # the status register's error bits are write-1-to-clear


class ToyDevice:
    """One PCI function: 256 bytes of configuration space and two BARs of plain storage."""

    VENDOR_ID, DEVICE_ID, REVISION, CLASS_CODE = 0x1234, 0xD0C5, 0x01, 0xFF0000

    def __init__(self) -> None:
        self.config = bytearray(256)
        self.writable = bytearray(256)  # per byte: the bits a write sets
        self.write_one_to_clear = bytearray(256)  # per byte: the bits a written one clears
        self.memory = bytearray(MEMORY_BAR_SIZE)
        self.ports = bytearray(IO_BAR_SIZE)
        self.power_on()

    def power_on(self) -> None:
        """The state after reset: identity, BAR type bits, every other register zero."""
        self.config[:] = bytes(256)
        self.writable[:] = bytes(256)
        self.write_one_to_clear[:] = bytes(256)
        self._put(0x00, 2, self.VENDOR_ID)
        self._put(0x02, 2, self.DEVICE_ID)
        self._put(0x08, 1, self.REVISION)
        self._put(0x09, 3, self.CLASS_CODE)
        self._put(0x04, 2, 0, writable=COMMAND_WRITABLE)
        self._put(0x06, 2, 0, clear=STATUS_RW1C)
        self._put(0x0C, 1, 0, writable=0xFF)  # cache line size
        self._put(0x10, 4, 0x0, writable=~(MEMORY_BAR_SIZE - 1) & 0xFFFF_FFF0)  # BAR0, memory
        self._put(0x14, 4, 0x1, writable=~(IO_BAR_SIZE - 1) & 0xFFFF_FFFC)  # BAR1, I/O (bit 0 set)
        self._put(0x3C, 1, 0, writable=0xFF)  # interrupt line
        self.memory[:] = bytes(MEMORY_BAR_SIZE)
        self.ports[:] = bytes(IO_BAR_SIZE)

    def _put(self, offset: int, size: int, value: int, writable: int = 0, clear: int = 0) -> None:
        for k in range(size):
            self.config[offset + k] = (value >> 8 * k) & 0xFF
            self.writable[offset + k] = (writable >> 8 * k) & 0xFF
            self.write_one_to_clear[offset + k] = (clear >> 8 * k) & 0xFF

    def read_config_byte(self, offset: int) -> int:
        return self.config[offset]

    def write_config_byte(self, offset: int, value: int) -> None:
        """Writable bits take the value, a written one clears a write-1-to-clear bit, the rest stay."""
        mask, clear = self.writable[offset], self.write_one_to_clear[offset]
        self.config[offset] = ((self.config[offset] & ~mask) | (value & mask)) & ~(value & clear) & 0xFF

    def _register(self, offset: int) -> int:
        return int.from_bytes(self.config[offset : offset + 4], "little")

    def memory_window(self) -> int | None:
        """Where BAR0 decodes: memory decoding on, an address programmed, all of it below 4 GiB."""
        base = self._register(0x10) & ~0xF
        on = self._register(0x04) & COMMAND_MEMORY and base != 0 and base + MEMORY_BAR_SIZE <= 1 << 32
        return base if on else None

    def io_window(self) -> int | None:
        """Where BAR1 decodes: I/O decoding on, an address programmed, all of it below 64 KiB."""
        base = self._register(0x14) & ~0x3
        on = self._register(0x04) & COMMAND_IO and base != 0 and base + IO_BAR_SIZE <= 1 << 16
        return base if on else None


class ToyVmm:
    """The guest-facing side of a VMM: port I/O and memory accesses, one byte at a time.

    A real VMM receives these as exits. An access that spans several targets
    (two BARs, a BAR and nothing) reaches each target with its own bytes.
    """

    def __init__(self) -> None:
        self.device = ToyDevice()
        self.config_address = 0  # the register at 0xCF8

    def reset(self) -> None:
        self.device.power_on()
        self.config_address = 0

    # -- configuration space, as a function's bytes (absent functions read all ones)
    def config_byte(self, slot: tuple[int, int, int], offset: int, value: int | None) -> int:
        if slot != DEVICE_SLOT or offset >= 256:
            return 0xFF
        if value is None:
            return self.device.read_config_byte(offset)
        self.device.write_config_byte(offset, value)
        return 0

    # -- port I/O
    def port_access(self, port: int, size: int, value: int | None) -> int:
        if port == CONFIG_ADDRESS and size == 4:  # only a 4-byte access reaches the address register
            if value is None:
                return self.config_address
            self.config_address = value & 0x80FF_FFFC  # enable, bus, device, function, register
            return 0
        return _bytewise(port, size, value, self._port_byte)

    def _port_byte(self, port: int, value: int | None) -> int:
        if CONFIG_ADDRESS <= port < CONFIG_DATA:
            return 0xFF  # bytes of 0xCF8 reached by a narrower access: nothing there
        if CONFIG_DATA <= port < CONFIG_DATA + 4:
            address = self.config_address
            if not address & 0x8000_0000:
                return 0xFF  # the enable bit is clear: the window reads all ones
            slot = ((address >> 16) & 0xFF, (address >> 11) & 0x1F, (address >> 8) & 0x7)
            return self.config_byte(slot, (address & 0xFC) + port - CONFIG_DATA, value)
        base = self.device.io_window()
        if base is not None and base <= port < base + IO_BAR_SIZE:
            if value is None:
                return self.device.ports[port - base]
            self.device.ports[port - base] = value
            return 0
        return 0xFF

    # -- memory
    def memory_access(self, address: int, size: int, value: int | None) -> int:
        return _bytewise(address, size, value, self._memory_byte)

    def _memory_byte(self, address: int, value: int | None) -> int:
        if ECAM_BASE <= address < ECAM_BASE + ECAM_SIZE:  # the ECAM window hides anything under it
            offset = address - ECAM_BASE
            slot = (offset >> 20, (offset >> 15) & 0x1F, (offset >> 12) & 0x7)
            return self.config_byte(slot, offset & 0xFFF, value)
        base = self.device.memory_window()
        if base is not None and base <= address < base + MEMORY_BAR_SIZE:
            if value is None:
                return self.device.memory[address - base]
            self.device.memory[address - base] = value
            return 0
        return 0xFF  # nothing decodes it: reads all ones, writes vanish


ByteAccess = Callable[[int, int | None], int]
"""Reads (value None) or writes one byte at an address; returns the byte read."""


def _bytewise(address: int, size: int, value: int | None, one: ByteAccess) -> int:
    """A little-endian access of ``size`` bytes performed byte by byte."""
    if value is None:
        return int.from_bytes(bytes(one(address + k, None) for k in range(size)), "little")
    for k in range(size):
        one(address + k, (value >> 8 * k) & 0xFF)
    return 0


# ====================================================================== 2. the adapter (the bridge)

VM_ID = 1
TOY_TYPE = DeviceType(
    name="toy",
    vendor_id=ToyDevice.VENDOR_ID,
    device_id=ToyDevice.DEVICE_ID,
    revision=ToyDevice.REVISION,
    class_code=ToyDevice.CLASS_CODE,
    bars=(BarSpec(BarKind.MEM32, MEMORY_BAR_SIZE), BarSpec(BarKind.IO, IO_BAR_SIZE)),
)
"""The device as vpcid describes it; the model runs this type beside the VMM and compares."""


class ExampleAdapter:
    """The adapter protocol (spec/formats/adapter.md): ``info``, ``execute(op)``, ``close()``."""

    def __init__(self, profile: Profile | None = None) -> None:
        self.vmm = ToyVmm()
        self._info = AdapterInfo(
            name="example",
            profile=profile or Profile(),  # the spec's default behaviour on every variant axis
            operations=GUEST_VIEW,  # init, configuration, I/O and MMIO reads and writes
            machine=FixedMachine(vm=VM_ID, devices=((Bdf(*DEVICE_SLOT), TOY_TYPE),), ecam_base=ECAM_BASE),
            description="docs/example: a toy VMM with one PCI function at 00:03.0",
        )

    @property
    def info(self) -> AdapterInfo:
        return self._info

    def execute(self, op: Op) -> Observation:
        """One guest operation; what the spec says must be rejected becomes an error observation."""
        if op.kind is OpKind.INIT:
            self.vmm.reset()
            return OK
        rejected = _check(op)
        if rejected is not None:
            return Observation(error=rejected)
        write = op.kind in (OpKind.CONFIG_WRITE, OpKind.IO_WRITE, OpKind.MMIO_WRITE)
        value = op.value if write else None
        if op.kind in (OpKind.CONFIG_READ, OpKind.CONFIG_WRITE):
            assert op.bdf is not None
            slot = (op.bdf.bus, op.bdf.device, op.bdf.function)
            got = _bytewise(op.address, op.width, value, lambda o, v: self.vmm.config_byte(slot, o, v))
        elif op.kind in (OpKind.IO_READ, OpKind.IO_WRITE):
            got = self.vmm.port_access(op.address, op.width, value)
        else:
            got = self.vmm.memory_access(op.address, op.width, value)
        return OK if write else Observation(value=got)

    def close(self) -> None:
        """Nothing to release: the VMM lives in this process."""


def _check(op: Op) -> str | None:
    """The error kind the spec requires for a malformed access (R-ERR-002), checked in its order."""
    if not 0 <= op.vm <= 0xFFFF_FFFF:
        return "invalid-argument"
    if op.vm != VM_ID:
        return "unknown-vm"
    widths: tuple[int, ...]
    if op.kind in (OpKind.CONFIG_READ, OpKind.CONFIG_WRITE):
        widths, top = (1, 2, 4), 0x1000
    elif op.kind in (OpKind.IO_READ, OpKind.IO_WRITE):
        widths, top = (1, 2, 4), 1 << 16
    else:
        widths, top = (1, 2, 4, 8), 1 << 64
    if op.width not in widths:
        return "bad-width"
    config = op.kind in (OpKind.CONFIG_READ, OpKind.CONFIG_WRITE)
    if not 0 <= op.address <= top - (1 if config else op.width):
        return "invalid-argument"
    if config and op.address % 4 + op.width > 4:
        return "misaligned"  # a configuration access stays inside one dword
    if op.kind in (OpKind.CONFIG_WRITE, OpKind.IO_WRITE, OpKind.MMIO_WRITE) and not (
        0 <= op.value < 1 << 8 * op.width
    ):
        return "invalid-argument"
    return None


def factory(argument: str | None) -> ExampleAdapter:
    """What ``--adapter example:factory[:ARGUMENT]`` calls; this VMM takes no argument."""
    if argument:
        raise ValueError(f"the example adapter takes no argument, got {argument!r}")
    return ExampleAdapter()
