"""Discover a live PCI function's device type by probing it as a guest would (R-DT-001, R-DT-005..R-DT-008).

One implementation for every target. The target is reached through a
:class:`ConfigPort` - configuration reads and writes of one function, and
optionally a read of guest memory for the expansion ROM - implemented for
QEMU over qtest (:mod:`vpcid.adapters.qemu.discover`), for any vfio-user
server over the client (:mod:`vpcid.adapters.vfio_user.adapter`), and here
for any adapter that shows a fixed machine (:class:`AdapterPort`).

What :func:`discover_type` does, in order:

1. presence and header type: type 0 functions and type 1 bridges are device
   types (R-BRG-001); any other header type is refused before anything is
   written. A bridge's Secondary Bus Reset bit is never written as one;
2. the size of configuration space: 4096 bytes when the dword at 0x100 reads
   anything but all ones;
3. the power-on bytes, and both capability chains walked from them
   (R-DT-006, R-DT-007);
4. BARs sized the way Linux does it: decode off, save, write ones, read,
   restore, 64-bit BARs over both dwords (six slots, or a bridge's two); the
   expansion ROM likewise (at 0x30, or a bridge's 0x38), then mapped for a
   moment at a window the port offers and read in full;
5. per byte, the write and RW1C masks of the whole space: read, write ones,
   read, write zeros, read, restore the power-on value. A bit that follows the
   written value is writable; a bit that read one and is cleared by the ones
   and stays clear is RW1C. Bits whose writes start an action are written as
   zero only, declared read-only and noted (:data:`HAZARDS`: PCI Express
   Initiate Function Level Reset, Retrain Link, SR-IOV VF Enable);
6. MSI: Multiple Message Enable probed again with MSI disabled; a field that
   is writable but clamped to Multiple Message Capable while MSI is enabled
   is the configuration behaviour ``msi-mme-clamp`` (R-DT-008).

The bytes are then made to keep the rules every declaration keeps (R-DT-005,
and a bridge's R-BRG-001: its windows, bus numbers and bridge control as one
window declaration has them):
whatever the target does that a :class:`~vpcid.model.DeviceType` cannot
express is declared the way the model can and said in a note - never a
silent guess. RW1C bits that read zero cannot be told from read-only zeros;
the status register's error bits (0xF900) are assumed RW1C, as PCI defines
them, and that assumption is a note too.

``vpcid types discover ADAPTER -o FILE`` (:data:`discover_command`) runs the
discovery through any adapter with a fixed machine and writes a device-type
file (spec/formats/device-type.md).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import click
from vpcid.adapters.base import Adapter, AdapterUnavailable, ExecuteMany, FixedMachine
from vpcid.adapters.registry import AdapterSpecError, load_adapter
from vpcid.conformance.trace import Observation, Op, OpKind, TraceError
from vpcid.conformance.typefile import TypeEntry, write_type_file
from vpcid.model import Bdf, DeviceType, DeviceTypeError, VpcidError
from vpcid.model.behaviour import BarBehaviour, ConfigBehaviour
from vpcid.model.catalog import MsiMultipleMessageClamp
from vpcid.model.devicetype import BarKind, BarSpec, ConfigSpace, RomSpec, bar_wmask, rom_wmask
from vpcid.model.header import (
    BAR0,
    BRIDGE_BAR_COUNT,
    BRIDGE_CONTROL,
    BRIDGE_CONTROL_BITS,
    BRIDGE_IDENTITY_BYTES,
    BRIDGE_ROM_BAR,
    CAP_POINTER,
    CMD_IO,
    CMD_MEM,
    COMMAND,
    COMMAND_BITS,
    CONVENTIONAL_CONFIG_SIZE,
    CTL_BUS_RESET,
    EXPRESS_CONFIG_SIZE,
    EXTENDED_AREA,
    HEADER_TYPE,
    HEADER_TYPE_BRIDGE,
    IDENTITY_BYTES,
    INTERRUPT_PIN,
    IO_BASE,
    PREF_BASE,
    ROM_BAR,
    SECONDARY_LATENCY,
    SECONDARY_STATUS,
    STATUS,
    STATUS_ERROR_BITS,
    BridgeRegisters,
    ChainEntry,
    IoWindow,
    PrefetchWindow,
    bridge_registers,
    extended_chain,
    standard_chain,
)
from vpcid.model.manager import ECAM_SIZE

EXIT_UNAVAILABLE = 3
"""Exit status when the adapter cannot run here (as vpcid certify)."""

ConfigAccess = tuple[int, int, int | None]
"""One configuration access of the function: (offset, width 1/2/4, value to write or None to read)."""

MSI_ID, EXPRESS_ID, SRIOV_ID = 0x05, 0x10, 0x0010
MSI_ENABLE, MSI_MME = 0x01, 0x70
BAR_REGISTERS = frozenset(range(BAR0, BAR0 + 24)) | frozenset(range(ROM_BAR, ROM_BAR + 4))
"""Bytes sized as BARs rather than probed: their masks are those the BARs imply (R-DT-005)."""
BRIDGE_BAR_REGISTERS = frozenset(range(BAR0, BAR0 + 4 * BRIDGE_BAR_COUNT)) | frozenset(
    range(BRIDGE_ROM_BAR, BRIDGE_ROM_BAR + 4)
)
"""The same in a type 1 header: two BAR slots and the ROM BAR at 0x38 (R-BRG-001)."""
BATCH = 256
"""Bytes probed per batch of configuration accesses (six accesses each)."""


class ConfigPort(Protocol):
    """A live function as a guest reaches it: its configuration space, and guest memory for the ROM."""

    @property
    def label(self) -> str:
        """What the function is, for notes and errors (``qemu:e1000 00:04.0``)."""
        ...

    def config_batch(self, accesses: Sequence[ConfigAccess]) -> list[int]:
        """Perform the accesses in order; return the values read, in order.

        Offsets past the function's configuration space read all ones and
        ignore writes, as a host bridge makes them.
        """
        ...

    def rom_window(self, size: int) -> int | None:
        """A free guest-physical address, aligned to ``size``, where the ROM may be mapped for a
        moment to read it; None when the port reads no guest memory."""
        ...

    def read_memory(self, address: int, length: int) -> bytes:
        """``length`` bytes of guest memory at ``address``."""
        ...


class DiscoveryError(VpcidError):
    """The function cannot be probed, or what it shows cannot be a device type at all."""

    kind = "discovery-failed"


@dataclass(frozen=True)
class Hazard:
    """Bits of a capability whose write starts an action: written as zero only, declared read-only."""

    cap_id: int
    extended: bool
    offset: int
    """Byte offset from the start of the capability."""
    bits: int
    what: str


HAZARDS = (
    Hazard(
        EXPRESS_ID, False, 0x09, 0x80, "PCI Express Device Control bit 15 (Initiate Function Level Reset)"
    ),
    Hazard(EXPRESS_ID, False, 0x10, 0x20, "PCI Express Link Control bit 5 (Retrain Link)"),
    Hazard(SRIOV_ID, True, 0x08, 0x01, "SR-IOV Control bit 0 (VF Enable)"),
)
"""What :func:`discover_type` never writes as one; nor a bridge's Secondary Bus Reset, nor a slot's
Power Controller Control (see :meth:`_Probe.probe_values`)."""
EXPRESS_FLAGS, EXPRESS_SLOT_CAPABILITIES, EXPRESS_SLOT_CONTROL = 0x02, 0x14, 0x18
SLOT_IMPLEMENTED, POWER_CONTROLLER_PRESENT, POWER_CONTROLLER_CONTROL = 0x0100, 0x0002, 0x0400


@dataclass(frozen=True)
class Discovered:
    """A discovered device type and everything discovery could not know or express."""

    dtype: DeviceType
    notes: tuple[str, ...] = field(default=())

    def entry(self, source: str, opaque: tuple[tuple[int, range], ...] = ()) -> TypeEntry:
        """The type as a device-type file entry."""
        return TypeEntry(self.dtype, opaque, source, self.notes)

    def with_behaviour(self, behaviour: BarBehaviour | None, name: str | None = None) -> Discovered:
        """The same bytes with another BAR behaviour (and name)."""
        t = self.dtype
        try:
            dtype = DeviceType.from_space(
                name or t.name, t.declared, t.bars, t.rom, behaviour, t.config_behaviour
            )
        except DeviceTypeError as exc:
            raise DiscoveryError(f"{name or t.name}: {exc}") from None
        return Discovered(dtype, self.notes)


def discover_type(port: ConfigPort, name: str, behaviour: BarBehaviour | None = None) -> Discovered:
    """Probe the function behind ``port`` and build its exact device type (see the module docstring).

    Leaves the function as it found it (power-on values written back), except
    RW1C bits that were set: probing clears them. Raises
    :class:`DiscoveryError` when no function answers, when it is neither a
    type 0 function nor a type 1 bridge, or when its bytes break a rule no
    declaration may break.
    """
    return _Probe(port).run(name, behaviour)


def _word(data: bytes | bytearray, offset: int, width: int) -> int:
    return int.from_bytes(data[offset : offset + width], "little")


def _put(data: bytearray, offset: int, width: int, value: int) -> None:
    data[offset : offset + width] = value.to_bytes(width, "little")


def _runs(offsets: Sequence[int]) -> str:
    """``0x4e-0xff, 0x104`` for ascending offsets."""
    spans: list[list[int]] = []
    for o in offsets:
        if spans and o == spans[-1][1] + 1:
            spans[-1][1] = o
        else:
            spans.append([o, o])
    return ", ".join(f"{a:#x}-{b:#x}" if a != b else f"{a:#x}" for a, b in spans)


class _Probe:
    """One discovery run over one port; collects notes as it goes."""

    def __init__(self, port: ConfigPort) -> None:
        self.port = port
        self.notes: list[str] = []
        self.bridge = False
        """Whether the function has a type 1 header (R-BRG-001): two BAR slots, the ROM BAR at 0x38."""

    @property
    def bar_count(self) -> int:
        return BRIDGE_BAR_COUNT if self.bridge else 6

    @property
    def rom_register(self) -> int:
        return BRIDGE_ROM_BAR if self.bridge else ROM_BAR

    def fail(self, what: str) -> DiscoveryError:
        return DiscoveryError(f"{self.port.label}: {what}")

    def read(self, offset: int, width: int) -> int:
        return self.port.config_batch([(offset, width, None)])[0]

    # ------------------------------------------------------------ the run

    def run(self, name: str, behaviour: BarBehaviour | None) -> Discovered:
        if self.read(0x00, 2) == 0xFFFF:
            raise self.fail("no function answers (vendor ID reads 0xffff)")
        header = self.read(HEADER_TYPE, 1)
        if header & 0x7F > HEADER_TYPE_BRIDGE:
            raise self.fail(
                f"header type {header & 0x7F}: only type 0 functions and type 1 bridges are device types "
                "(nothing was written to it)"
            )
        self.bridge = header & 0x7F == HEADER_TYPE_BRIDGE
        size = EXPRESS_CONFIG_SIZE if self.read(EXTENDED_AREA, 4) != 0xFFFF_FFFF else CONVENTIONAL_CONFIG_SIZE
        power_on = self.space(size)
        chain = self.chain(power_on)
        bars, rom_size = self.size_bars(power_on)
        probes = self.probe_values(chain, size, power_on)
        wmask, w1c = self.masks(power_on, probes)
        config_behaviour = self.msi(power_on, chain, probes, wmask)
        image = bytearray(power_on)
        self.conform(image, wmask, w1c, chain, bars, rom_size)
        rom = None if rom_size is None else RomSpec(rom_size, self.rom_contents(power_on, rom_size))
        try:
            space = ConfigSpace(bytes(image), bytes(wmask), bytes(w1c))
            dtype = DeviceType.from_space(name, space, bars, rom, behaviour, config_behaviour)
        except DeviceTypeError as exc:
            raise self.fail(f"not expressible as a device type: {exc}") from None
        return Discovered(dtype, tuple(self.notes))

    def space(self, size: int) -> bytes:
        values = self.port.config_batch([(o, 4, None) for o in range(0, size, 4)])
        return b"".join(v.to_bytes(4, "little") for v in values)

    def chain(self, power_on: bytes) -> tuple[ChainEntry, ...]:
        try:
            return standard_chain(power_on) + extended_chain(power_on)
        except DeviceTypeError as exc:
            raise self.fail(
                f"capability chain cannot be a device type's (R-DT-006, R-DT-007): {exc}"
            ) from None

    # ------------------------------------------------------------ BARs and ROM

    def size_bars(self, power_on: bytes) -> tuple[tuple[BarSpec | None, ...], int | None]:
        """BARs and ROM size, sized with decode off; every register written back (R-BAR-001..R-BAR-007)."""
        command = _word(power_on, COMMAND, 2)
        registers = [BAR0 + 4 * k for k in range(self.bar_count)] + [self.rom_register]
        accesses: list[ConfigAccess] = [(COMMAND, 2, command & ~(CMD_IO | CMD_MEM))]
        for reg in registers:
            accesses += [(reg, 4, 0xFFFF_FFFF), (reg, 4, None), (reg, 4, _word(power_on, reg, 4))]
        accesses.append((COMMAND, 2, command))
        sized = dict(zip(registers, self.port.config_batch(accesses), strict=True))
        bars: list[BarSpec | None] = []
        slot = 0
        while slot < self.bar_count:
            reg = BAR0 + 4 * slot
            value, original = sized[reg], _word(power_on, reg, 4)
            if value in (0, 0xFFFF_FFFF):
                bars.append(None)
                slot += 1
                continue
            wide = not original & 0x1 and (original >> 1) & 0x3 == 0x2  # a 64-bit BAR: its upper dword counts
            if not value & ~(0x3 if original & 0x1 else 0xF) & 0xFFFF_FFFF and not (
                wide and sized.get(reg + 4, 0)
            ):
                self.notes.append(
                    f"BAR{slot} reads {value:#x} after writing ones: no address bit, so not implemented; "
                    "declared as reading zero, as R-BAR-004 requires of an unimplemented BAR"
                )
                bars.append(None)
                slot += 1
                continue
            low = 0x3 if original & 0x1 else 0xF
            if (value ^ original) & low:
                self.notes.append(
                    f"BAR{slot}'s type bits read {original & low:#x} at power-on and {value & low:#x} after "
                    "writing ones (writable, or a BAR smaller than PCI allows): declared as at power-on "
                    "(R-BAR-001, R-BAR-002)"
                )
                value = value & ~low | original & low
            if original & 0x1:
                bars.append(self.io_bar(slot, value))
                slot += 1
                continue
            kind, prefetchable = (original >> 1) & 0x3, bool(original & 0x8)
            if kind == 0x2:
                if slot == self.bar_count - 1:
                    raise self.fail(f"BAR{slot} says it is 64-bit: it has no upper dword")
                mask = sized[reg + 4] << 32 | (value & 0xFFFF_FFF0)
                size = self.size_of(f"BAR{slot}", mask, 64, 0xF)
                bars += [BarSpec(BarKind.MEM64, size, prefetchable), None]
                slot += 2
                continue
            if kind:
                self.notes.append(
                    f"BAR{slot} has memory type {kind:#x} ({'below 1 MiB' if kind == 1 else 'reserved'}); "
                    "declared a 32-bit BAR"
                )
            size = self.size_of(f"BAR{slot}", value & 0xFFFF_FFF0, 32, 0xF)
            bars.append(BarSpec(BarKind.MEM32, size, prefetchable))
            slot += 1
        while bars and bars[-1] is None:
            bars.pop()
        rom = sized[self.rom_register]
        rom_size = None
        if rom & 0xFFFF_F800:
            rom_size = self.size_of("the ROM BAR", rom & 0xFFFF_F800, 32, 0x7FF)
            if not rom & 0x1:
                self.notes.append(
                    "the ROM BAR's enable bit is read-only; the model makes it writable (R-BAR-007)"
                )
        return tuple(bars), rom_size

    def io_bar(self, slot: int, value: int) -> BarSpec:
        mask = value & 0xFFFF_FFFC
        size = mask & -mask
        if mask >> 16 != 0xFFFF:
            self.notes.append(
                f"BAR{slot} (I/O) has read-only address bits 31:16; the model makes them writable (R-BAR-006)"
            )
            mask |= 0xFFFF_0000
        if size > 256:
            raise self.fail(f"BAR{slot} is an I/O BAR of {size} bytes; I/O BARs are at most 256 (R-BAR-001)")
        self.size_of(f"BAR{slot}", mask, 32, 0x3)
        return BarSpec(BarKind.IO, size)

    def size_of(self, what: str, mask: int, width: int, low: int) -> int:
        """The size a sizing read-back implies; a mask with holes is noted (the model's is contiguous)."""
        size = mask & -mask
        full = ~(size - 1) & ((1 << width) - 1) & ~low
        if mask != full:
            self.notes.append(
                f"{what} sizes as {mask:#x}: not every address bit above its size {size:#x} is writable; "
                f"the model makes them writable ({full:#x})"
            )
        return size

    def rom_contents(self, power_on: bytes, size: int) -> bytes:
        """The ROM's bytes, through a temporary mapping at the port's window (zeros past them dropped)."""
        window = self.port.rom_window(size)
        if window is None:
            self.notes.append(
                "ROM contents were not read (the target offers no guest memory): declared empty"
            )
            return b""
        command, register = _word(power_on, COMMAND, 2), self.rom_register
        self.port.config_batch([(register, 4, window | 1), (COMMAND, 2, command | CMD_MEM)])
        try:
            contents = self.port.read_memory(window, size)
        finally:
            self.port.config_batch([(COMMAND, 2, command), (register, 4, _word(power_on, register, 4))])
        return contents.rstrip(b"\x00")

    # ------------------------------------------------------------ masks

    def probe_values(self, chain: Sequence[ChainEntry], size: int, power_on: bytes) -> dict[int, int]:
        """Per probed byte, the bits written as ones: all but the hazards' (noted).

        Besides :data:`HAZARDS`: a bridge's Secondary Bus Reset (it resets
        everything below), and the Power Controller Control bit of a PCI
        Express port's slot that has a power controller (powering the slot off
        takes the functions below it away).
        """
        sized = BRIDGE_BAR_REGISTERS if self.bridge else BAR_REGISTERS
        probes = {o: 0xFF for o in range(size) if o not in sized}
        if self.bridge:
            probes[BRIDGE_CONTROL] &= ~CTL_BUS_RESET
            self.notes.append(
                f"bridge control bit 6 (Secondary Bus Reset, config byte {BRIDGE_CONTROL:#05x}) resets "
                "everything below the bridge when written: not probed; declared writable, as every "
                "PCI-to-PCI bridge has it (R-BRG-001)"
            )
        for entry in chain:
            for hazard in HAZARDS:
                if (hazard.cap_id, hazard.extended) != (entry.cap_id, entry.extended):
                    continue
                at = entry.offset + hazard.offset
                if at in probes:
                    probes[at] &= ~hazard.bits
                    self.notes.append(
                        f"config byte {at:#05x} bits {hazard.bits:#04x} ({hazard.what}) start an action "
                        "when written: not probed, declared read-only"
                    )
            if entry.cap_id != EXPRESS_ID or entry.extended:
                continue
            flags = _word(power_on, entry.offset + EXPRESS_FLAGS, 2)
            slot = _word(power_on, entry.offset + EXPRESS_SLOT_CAPABILITIES, 4)
            if flags & SLOT_IMPLEMENTED and slot & POWER_CONTROLLER_PRESENT:
                at = entry.offset + EXPRESS_SLOT_CONTROL + 1
                probes[at] &= ~(POWER_CONTROLLER_CONTROL >> 8)
                self.notes.append(
                    f"config byte {at:#05x} bit 0x04 (PCI Express Slot Control bit 10, Power Controller "
                    "Control) powers the slot off when written as one, taking the functions below away: "
                    "not probed, declared read-only"
                )
        return probes

    def masks(self, power_on: bytes, probes: dict[int, int]) -> tuple[bytearray, bytearray]:
        """Per byte (writable, RW1C) masks: write ones, read, write zeros, read, restore (R-CFG-001)."""
        size = len(power_on)
        wmask, w1c = bytearray(size), bytearray(size)
        offsets = sorted(probes)
        odd: list[str] = []
        drifted: list[int] = []
        for start in range(0, len(offsets), BATCH):
            chunk = offsets[start : start + BATCH]
            accesses: list[ConfigAccess] = []
            for o in chunk:
                accesses += [(o, 1, None), (o, 1, probes[o]), (o, 1, None), (o, 1, 0), (o, 1, None),
                             (o, 1, power_on[o])]  # fmt: skip
            reads = self.port.config_batch(accesses)
            for k, o in enumerate(chunk):
                before, ones, zeros = reads[3 * k : 3 * k + 3]
                probe = probes[o]
                wmask[o] = ones & ~zeros & probe
                w1c[o] = before & ~ones & ~zeros & probe & ~wmask[o]
                strange = ((~ones & zeros) | (ones & zeros & ~before)) & probe & 0xFF
                if strange:
                    odd.append(f"{o:#05x} bits {strange:#04x} (read {before:#04x}, {ones:#04x} after "
                               f"writing {probe:#04x}, {zeros:#04x} after writing 0)")  # fmt: skip
                if before != power_on[o]:
                    drifted.append(o)
        if odd:
            self.notes.append(
                "bits that neither keep their value, follow the written value nor clear on a written one "
                f"(not expressible, declared read-only at their power-on value): {'; '.join(odd)}"
            )
        if drifted:
            self.notes.append(
                f"config bytes {_runs(drifted)} changed while other bytes were probed; their power-on "
                "values are declared"
            )
        self.notes.append(
            "RW1C bits that read zero cannot be told from read-only zero bits: declared read-only "
            "(except the status register's error bits, below)"
        )
        return wmask, w1c

    def msi(
        self, power_on: bytes, chain: Sequence[ChainEntry], probes: dict[int, int], wmask: bytearray
    ) -> ConfigBehaviour | None:
        """Multiple Message Enable probed with MSI disabled: writable but clamped while enabled is
        the ``msi-mme-clamp`` configuration behaviour (R-DT-008)."""
        behaviour: ConfigBehaviour | None = None
        for entry in chain:
            if entry.extended or entry.cap_id != MSI_ID:
                continue
            control = entry.offset + 2
            probe = probes[control] & ~MSI_ENABLE
            _, disabled, _ = self.port.config_batch(
                [
                    (control, 1, None),
                    (control, 1, probe),
                    (control, 1, None),
                    (control, 1, 0),
                    (control, 1, None),
                    (control, 1, power_on[control]),
                ]
            )
            enabled_mme = wmask[control] & MSI_MME
            disabled_mme = disabled & MSI_MME & probe
            capable = (power_on[control] >> 1) & 0x7
            if disabled_mme == enabled_mme:
                continue
            if disabled_mme == MSI_MME and wmask[control] & MSI_ENABLE and enabled_mme == capable << 4:
                wmask[control] |= MSI_MME
                behaviour = MsiMultipleMessageClamp()
                self.notes.append(
                    f"MSI at {entry.offset:#04x}: Multiple Message Enable is writable, clamped to Multiple "
                    f"Message Capable ({capable}) by a write while MSI is enabled: configuration behaviour "
                    "msi-mme-clamp (R-DT-008)"
                )
            else:
                self.notes.append(
                    f"MSI at {entry.offset:#04x}: Multiple Message Enable reads {disabled_mme >> 4} after "
                    f"writing 7 with MSI disabled and {enabled_mme >> 4} with MSI enabled (capable "
                    f"{capable}); no configuration behaviour describes it: declared as probed enabled"
                )
        return behaviour

    # ------------------------------------------------------------ the rules every declaration keeps

    def conform(
        self,
        image: bytearray,
        wmask: bytearray,
        w1c: bytearray,
        chain: Sequence[ChainEntry],
        bars: Sequence[BarSpec | None],
        rom_size: int | None,
    ) -> None:
        """Make the bytes keep R-DT-005's rules (a bridge's R-BRG-001 too); every change is noted."""
        identity = BRIDGE_IDENTITY_BYTES if self.bridge else IDENTITY_BYTES
        read_only = dict.fromkeys(identity, "identity or capabilities pointer (R-CFG-002)")
        read_only[CAP_POINTER] = "capabilities pointer (R-CFG-002)"
        for entry in chain:
            for o in entry.header_bytes:
                read_only[o] = "capability ID and next pointer (R-DT-006, R-DT-007)"
        if len(image) == EXPRESS_CONFIG_SIZE:
            for o in range(EXTENDED_AREA, EXTENDED_AREA + 4):
                read_only.setdefault(o, "first extended capability header (R-DT-007)")
        for o, what in sorted(read_only.items()):
            if wmask[o] | w1c[o]:
                self.notes.append(
                    f"config byte {o:#05x} ({what}) has writable {wmask[o]:#04x} / RW1C {w1c[o]:#04x} bits: "
                    "a device type declares it read-only"
                )
                wmask[o] = w1c[o] = 0
        if image[INTERRUPT_PIN] > 4:
            raise self.fail(f"interrupt pin {image[INTERRUPT_PIN]} is not 0-4 (R-DT-005)")
        self.command_and_status(image, wmask, w1c)
        self.bar_registers(image, wmask, w1c, bars, rom_size)
        if self.bridge:
            self.bridge_registers(image, wmask, w1c)

    def command_and_status(self, image: bytearray, wmask: bytearray, w1c: bytearray) -> None:
        command, writable = _word(image, COMMAND, 2), _word(wmask, COMMAND, 2)
        # the register once more as a whole word: some devices take only whole command writes (and
        # set the bits they implement of one they reject), which byte probes cannot see
        _, ones, zeros = self.port.config_batch(
            [(COMMAND, 2, None), (COMMAND, 2, 0xFFFF), (COMMAND, 2, None), (COMMAND, 2, 0),
             (COMMAND, 2, None), (COMMAND, 2, command)]
        )  # fmt: skip
        whole = ones & ~zeros & ~writable
        if whole:
            self.notes.append(f"command bits {whole:#06x} change only when the register is written whole")
            writable |= whole
        if command:
            self.notes.append(f"command register read {command:#06x}; declared zero at power-on (R-CFG-004)")
        if writable & ~COMMAND_BITS or _word(w1c, COMMAND, 2):
            self.notes.append(
                f"command bits {writable & ~COMMAND_BITS:#06x} are writable; the model keeps "
                f"{COMMAND_BITS:#06x} (R-CFG-004)"
            )
        _put(image, COMMAND, 2, 0)
        _put(wmask, COMMAND, 2, writable & COMMAND_BITS)
        _put(w1c, COMMAND, 2, 0)
        status_writable, observed = _word(wmask, STATUS, 2), _word(w1c, STATUS, 2)
        if status_writable:
            self.notes.append(
                f"status bits {status_writable:#06x} are writable; declared read-only (R-CFG-005)"
            )
        if observed & ~STATUS_ERROR_BITS:
            self.notes.append(
                f"status bits {observed & ~STATUS_ERROR_BITS:#06x} clear on a written one; only the error "
                "bits 0xf900 may (R-CFG-006): declared read-only"
            )
        assumed = STATUS_ERROR_BITS & ~observed
        if assumed:
            self.notes.append(
                f"status error bits {assumed:#06x} read zero, so whether they are RW1C cannot be seen: "
                "declared RW1C, as PCI defines them (R-CFG-006)"
            )
        _put(wmask, STATUS, 2, 0)
        _put(w1c, STATUS, 2, STATUS_ERROR_BITS)

    def bar_registers(
        self,
        image: bytearray,
        wmask: bytearray,
        w1c: bytearray,
        bars: Sequence[BarSpec | None],
        rom_size: int | None,
    ) -> None:
        """BAR and ROM registers exactly as the sized BARs imply (R-BAR-002..R-BAR-008)."""
        rom_register = self.rom_register
        registers = sorted(BRIDGE_BAR_REGISTERS if self.bridge else BAR_REGISTERS)
        power_on = {o: image[o] for o in registers}
        slot = 0
        while slot < self.bar_count:
            reg = BAR0 + 4 * slot
            bar = bars[slot] if slot < len(bars) else None
            if bar is None:
                for array, value in ((image, 0), (wmask, 0), (w1c, 0)):
                    _put(array, reg, 4, value)
                slot += 1
                continue
            mask = bar_wmask(bar)
            _put(image, reg, 4, bar.type_bits())
            _put(wmask, reg, 4, mask & 0xFFFF_FFFF)
            _put(w1c, reg, 4, 0)
            if bar.kind is BarKind.MEM64:
                _put(image, reg + 4, 4, 0)
                _put(wmask, reg + 4, 4, mask >> 32)
                _put(w1c, reg + 4, 4, 0)
                slot += 1
            slot += 1
        _put(image, rom_register, 4, 0)
        _put(wmask, rom_register, 4, 0 if rom_size is None else rom_wmask(RomSpec(rom_size)))
        _put(w1c, rom_register, 4, 0)
        differ = [o for o, byte in power_on.items() if image[o] != byte]
        if differ:
            self.notes.append(
                f"BAR or ROM register bytes {_runs(differ)} held an address or enable bit before sizing "
                "(programmed by someone): declared as at power-on, no address (R-BAR-008)"
            )

    def bridge_registers(self, image: bytearray, wmask: bytearray, w1c: bytearray) -> None:
        """A bridge's registers 0x18-0x33 and bridge control as one window declaration has them (R-BRG-001).

        The windows are those the type nibbles and writable bits show; bridge
        control keeps the probed writable bits (Secondary Bus Reset declared
        writable); RW1C bits are those seen, like everywhere else (a secondary
        status error bit that reads zero is declared read-only). Bytes the
        declaration cannot have are declared as it has them, each noted.
        """
        control = _word(wmask, BRIDGE_CONTROL, 2) | CTL_BUS_RESET
        _put(wmask, BRIDGE_CONTROL, 2, control)
        try:
            bridge_registers(ConfigSpace(bytes(image), bytes(wmask), bytes(w1c)))
            return
        except DeviceTypeError:
            pass
        io_type, pref_type = image[IO_BASE] & 0xF, image[PREF_BASE] & 0xF
        declared = BridgeRegisters(
            IoWindow.NONE if not wmask[IO_BASE] else IoWindow.BITS32 if io_type == 1 else IoWindow.BITS16,
            PrefetchWindow.NONE if not _word(wmask, PREF_BASE, 2)
            else PrefetchWindow.BITS64 if pref_type == 1 else PrefetchWindow.BITS32,
            control_mask=control & BRIDGE_CONTROL_BITS & ~_word(w1c, BRIDGE_CONTROL, 2),
            control_rw1c=_word(w1c, BRIDGE_CONTROL, 2) & BRIDGE_CONTROL_BITS,
            secondary_status=_word(image, SECONDARY_STATUS, 2),
            secondary_status_rw1c=_word(w1c, SECONDARY_STATUS, 2) & STATUS_ERROR_BITS,
            latency_timer_writable=wmask[SECONDARY_LATENCY] == 0xFF,
        )  # fmt: skip
        changed = []
        for offset, width, value, writable, rw1c in declared.registers():
            for k in range(width):
                o, shift = offset + k, 8 * k
                want = ((value >> shift) & 0xFF, (writable >> shift) & 0xFF, (rw1c >> shift) & 0xFF)
                have = (image[o], wmask[o], w1c[o])
                if have != want:
                    changed.append(
                        f"{o:#04x} read {have[0]:#04x} writable {have[1]:#04x} RW1C {have[2]:#04x}, "
                        f"declared {want[0]:#04x}/{want[1]:#04x}/{want[2]:#04x}"
                    )
                    image[o], wmask[o], w1c[o] = want
        self.notes.append(
            f"bridge registers a {declared.io.value} I/O, {declared.prefetchable.value} prefetchable window "
            f"declaration cannot have, declared as it has them (R-BRG-001): {'; '.join(changed)}"
        )


# ------------------------------------------------------------------ any adapter with a fixed machine


class AdapterPort:
    """A :class:`ConfigPort` over any guest-view adapter: configuration and MMIO operations of its VM.

    Batches go to the adapter's ``execute_many`` when it offers one (QEMU pipelines them), else one
    operation at a time.
    """

    def __init__(self, adapter: Adapter, machine: FixedMachine, bdf: Bdf) -> None:
        self.adapter = adapter
        self.machine = machine
        self.bdf = bdf
        self._many: ExecuteMany | None = getattr(adapter, "execute_many", None)

    @property
    def label(self) -> str:
        return f"{self.adapter.info.name} {self.bdf}"

    def _run(self, ops: Sequence[Op]) -> list[Observation]:
        """Perform ``ops``; any error observation or exception is a :class:`DiscoveryError`."""
        try:
            if self._many is not None:
                observed, failure = self._many(ops)
            else:
                observed, failure = [self.adapter.execute(op) for op in ops], None
        except (TraceError, VpcidError) as exc:
            raise DiscoveryError(f"{self.label}: {exc}") from None
        if failure is not None:
            op = ops[min(len(observed), len(ops) - 1)]  # the failing operation has no observation
            raise DiscoveryError(f"{self.label}: {op.to_json()}: {failure}")
        for op, observation in zip(ops, observed, strict=True):
            if observation.error is not None:
                raise DiscoveryError(f"{self.label}: {op.to_json()} failed: {observation.error}")
        return observed

    def config_batch(self, accesses: Sequence[ConfigAccess]) -> list[int]:
        vm, bdf = self.machine.vm, self.bdf
        ops = [
            Op(OpKind.CONFIG_READ, vm=vm, bdf=bdf, address=offset, width=width)
            if value is None
            else Op(OpKind.CONFIG_WRITE, vm=vm, bdf=bdf, address=offset, width=width, value=value)
            for offset, width, value in accesses
        ]
        observed = self._run(ops)
        values = [o.value for op, o in zip(ops, observed, strict=True) if op.kind is OpKind.CONFIG_READ]
        if any(v is None for v in values):
            raise DiscoveryError(f"{self.label}: a configuration read returned no value")
        return [v for v in values if v is not None]

    def rom_window(self, size: int) -> int | None:
        """The first size-aligned address from 0xE0000000 down that no platform range or ECAM touches."""
        ecam = self.machine.ecam_base
        step = max(size, 1 << 24)
        for address in range(0xE000_0000, 0x1000_0000, -step):
            address &= ~(size - 1)
            in_ecam = ecam is not None and ecam < address + size and address < ecam + ECAM_SIZE
            if not in_ecam and not self.machine.is_reserved("memory", address, size):
                return address
        return None

    def read_memory(self, address: int, length: int) -> bytes:
        ops = [
            Op(OpKind.MMIO_READ, vm=self.machine.vm, address=at, width=4)
            for at in range(address, address + length, 4)
        ]
        data = b"".join((o.value or 0).to_bytes(4, "little") for o in self._run(ops))
        return data[:length]


def discover_machine(adapter: Adapter) -> list[TypeEntry]:
    """Discover every device of an adapter's fixed machine, after ``init`` (power-on).

    Each type keeps the name and BAR behaviour the adapter declares for the
    device, and its opaque BAR ranges; the configuration bytes, BARs and ROM
    are discovered. A note says where they differ from the declared type.
    """
    machine = adapter.info.machine
    if machine is None:
        raise DiscoveryError(
            f"{adapter.info.name} offers the full API, not a machine: there is nothing to probe"
        )
    entries: list[TypeEntry] = []
    for bdf, declared in machine.devices:
        adapter.execute(Op(OpKind.INIT))
        found = discover_type(AdapterPort(adapter, machine, bdf), declared.name, declared.behaviour)
        notes = list(found.notes)
        if found.dtype != declared:
            notes.append(f"differs from the type {adapter.info.name} declares for {bdf}: "
                         f"{describe_difference(declared, found.dtype)}")  # fmt: skip
        opaque = tuple((r.bar, r.offsets) for r in machine.opaque if r.bdf == bdf)
        entries.append(TypeEntry(found.dtype, opaque, f"vpcid types discover {adapter.info.name} ({bdf})",
                                 tuple(notes)))  # fmt: skip
    return entries


def describe_difference(expected: DeviceType, found: DeviceType) -> str:
    """The first ways two types differ: bytes (value, masks), BARs, ROM, behaviours."""
    out: list[str] = []
    a, b = expected.declared, found.declared
    if len(a.image) != len(b.image):
        out.append(f"{len(a.image)} vs {len(b.image)} bytes of configuration space")
    for array in ("image", "wmask", "w1cmask"):
        left, right = getattr(a, array), getattr(b, array)
        differ = [o for o in range(min(len(left), len(right))) if left[o] != right[o]]
        if differ:
            o = differ[0]
            out.append(f"{array} at {_runs(differ[:16])}{'...' if len(differ) > 16 else ''} "
                       f"(first {left[o]:#04x} vs {right[o]:#04x})")  # fmt: skip
    if bar_slots(expected) != bar_slots(found):
        out.append("BARs")
    if expected.rom != found.rom:
        out.append("ROM")
    for what in ("behaviour", "config_behaviour"):
        left_hook, right_hook = getattr(expected, what), getattr(found, what)
        left_name = left_hook.name if left_hook is not None else None
        right_name = right_hook.name if right_hook is not None else None
        if left_name != right_name:
            out.append(f"{what} {left_name} vs {right_name}")
    if expected.name != found.name:
        out.append(f"name {expected.name!r} vs {found.name!r}")
    return "; ".join(out) or "nothing the fingerprint covers"


def type_difference(first: DeviceType, second: DeviceType) -> str:
    """Two definitions that share a name, told apart for a message: both fingerprints, then the
    first ways they differ (:func:`describe_difference`)."""
    shown = [t.fingerprint().hex()[:16] for t in (first, second)]
    return f"fingerprint {shown[0]}... vs {shown[1]}..., {describe_difference(first, second)}"


def bar_slots(t: DeviceType) -> tuple[BarSpec | None, ...]:
    """The six BAR slots of ``t`` (trailing unused slots may be left out of ``bars``)."""
    return tuple(t.bar(i) for i in range(6))


def consistent_with(found: DeviceType, candidate: DeviceType) -> bool:
    """Whether ``candidate`` could be the type discovery saw as ``found`` (its name and BAR behaviour aside).

    Equal power-on bytes, write masks, BARs and ROM sizes; every RW1C bit
    found is RW1C in the candidate, and the candidate's other RW1C bits read
    zero at power-on (discovery cannot see those), as may bits discovery did
    not write (:data:`HAZARDS`) be writable in it.
    """
    a, b = found.declared, candidate.declared
    if len(a.image) != len(b.image) or a.image != b.image or bar_slots(found) != bar_slots(candidate):
        return False
    if (found.rom is None) != (candidate.rom is None):
        return False
    if found.rom is not None and candidate.rom is not None and found.rom.size != candidate.rom.size:
        return False
    hazard = bytearray(len(a.image))
    for entry in candidate.chain:
        for h in HAZARDS:
            if (h.cap_id, h.extended) == (entry.cap_id, entry.extended) and entry.offset + h.offset < len(
                hazard
            ):
                hazard[entry.offset + h.offset] |= h.bits
    for o in range(len(a.image)):
        if (a.wmask[o] ^ b.wmask[o]) & ~hazard[o]:
            return False
        if a.w1cmask[o] & ~b.w1cmask[o] or (b.w1cmask[o] & ~a.w1cmask[o]) & a.image[o] & ~hazard[o]:
            return False
    mine = found.config_behaviour.name if found.config_behaviour is not None else None
    theirs = candidate.config_behaviour.name if candidate.config_behaviour is not None else None
    return mine is None or mine == theirs


# ------------------------------------------------------------------ the command


@click.command("discover")
@click.argument("adapter_spec", metavar="ADAPTER")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The device-type file to write.")  # fmt: skip
@click.option("--name", help="Name of the discovered type (only for a machine with one device).")
def discover_command(adapter_spec: str, output: Path, name: str | None) -> None:
    """Probe the devices an adapter shows and write their device types to a file.

    Every device of the adapter's machine is probed from power-on as a guest
    would (spec/formats/device-type.md): identity, BARs, ROM, every byte's
    write and RW1C masks, both capability chains. What cannot be known or
    expressed is written in each type's notes.

    \b
    Examples:
      vpcid types discover qemu:e1000e -o e1000e.json
      vpcid types discover "qemu:nvme,serial=deadbeef" -o nvme.json --name nvme
      vpcid types discover vfio-user:/run/dev0.sock -o dev0.json
    """
    try:
        adapter = load_adapter(adapter_spec)
    except AdapterSpecError:
        raise  # bad input: one line, exit 2
    except AdapterUnavailable as exc:
        click.echo(f"vpcid: adapter {adapter_spec!r} is unavailable: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    try:
        entries = discover_machine(adapter)
    except DiscoveryError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        adapter.close()
    if name is not None:
        if len(entries) != 1:
            raise click.UsageError(f"--name names one type; the machine has {len(entries)} devices")
        only = entries[0]
        try:
            dtype = DeviceType.from_space(name, only.dtype.declared, only.dtype.bars, only.dtype.rom,
                                          only.dtype.behaviour, only.dtype.config_behaviour)  # fmt: skip
        except DeviceTypeError as exc:
            raise click.UsageError(f"--name {name!r}: {exc}") from None
        entries = [TypeEntry(dtype, only.opaque, only.source, only.notes)]
    write_type_file(output, entries)
    for entry in entries:
        t = entry.dtype
        click.echo(f"{t.name}: {t.vendor_id:04x}:{t.device_id:04x}, {t.config_size} bytes, "
                   f"{len(entry.notes)} notes, fingerprint {t.fingerprint().hex()[:16]}")  # fmt: skip
    click.echo(f"wrote {len(entries)} type(s) to {output}")
