"""Device types: what a device supplies to the data manager (R-DT-*).

A :class:`DeviceType` declares identity, BARs, an optional expansion ROM,
capabilities, device-specific registers and an optional BAR behaviour. The
manager derives everything else; :func:`layout` turns a type into the
per-byte configuration-space image and masks (R-CFG-001).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from vpcid.model.errors import DeviceTypeError
from vpcid.model.profile import StatusRegister

if TYPE_CHECKING:
    from vpcid.model.behaviour import BarBehaviour

CONVENTIONAL_CONFIG_SIZE = 0x100
EXPRESS_CONFIG_SIZE = 0x1000
BAR_COUNT = 6
ROM_INDEX = 6
"""BAR index under which the expansion ROM is mapped in the routing tables (R-BAR-007)."""

# Header offsets (type 0 header).
VENDOR_ID, DEVICE_ID, COMMAND, STATUS, REVISION, CLASS_CODE = 0x00, 0x02, 0x04, 0x06, 0x08, 0x09
CACHE_LINE_SIZE, LATENCY_TIMER, HEADER_TYPE = 0x0C, 0x0D, 0x0E
BAR0, SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID, ROM_BAR, CAP_POINTER = 0x10, 0x2C, 0x2E, 0x30, 0x34
INTERRUPT_LINE, INTERRUPT_PIN = 0x3C, 0x3D
CAPABILITY_AREA = 0x40

CMD_IO, CMD_MEM, CMD_BUS_MASTER, CMD_SERR, CMD_INTX_DISABLE = 0x1, 0x2, 0x4, 0x100, 0x400
STATUS_CAP_LIST = 0x10
STATUS_ERROR_BITS = 0xF900
"""Master data parity error, signalled/received target abort, received master abort, SERR, parity."""


class BarKind(StrEnum):
    """What a BAR decodes (R-BAR-001)."""

    IO = "io"
    MEM32 = "mem32"
    MEM64 = "mem64"


class RegisterClass(StrEnum):
    """How the bits of a device-specific register behave on a write (R-CFG-001)."""

    RO = "ro"
    RW = "rw"
    RW1C = "rw1c"
    RSVD = "rsvd"


@dataclass(frozen=True, slots=True)
class BarSpec:
    """One BAR: its kind, its size (a power of two) and prefetchability (R-BAR-001)."""

    kind: BarKind
    size: int
    prefetchable: bool = False

    def type_bits(self) -> int:
        """The read-only low bits of the BAR's (lower) dword (R-BAR-002)."""
        if self.kind is BarKind.IO:
            return 0x1
        bits = 0x4 if self.kind is BarKind.MEM64 else 0x0
        return bits | (0x8 if self.prefetchable else 0)


@dataclass(frozen=True, slots=True)
class RomSpec:
    """Expansion ROM: size (power of two, 2 KiB to 16 MiB) and contents (R-BAR-007)."""

    size: int
    contents: bytes = b""


@dataclass(frozen=True, slots=True)
class Capability:
    """A capability structure: ID and body (after the ID/next bytes), with a per-byte write mask.

    ``writable`` and ``rw1c`` are the same length as ``body`` or empty (all read-only).
    """

    cap_id: int
    body: bytes
    writable: bytes = b""
    rw1c: bytes = b""


@dataclass(frozen=True, slots=True)
class Register:
    """A device-specific register in the header's free area (R-CFG-001)."""

    offset: int
    width: int
    cls: RegisterClass
    value: int = 0


@dataclass(frozen=True)
class DeviceType:
    """Everything a device supplies; the data manager does the rest (R-DT-001).

    ``bars`` has one entry per BAR slot used, ``None`` for an unimplemented
    slot; a 64-bit BAR uses its slot and the next, which must be ``None``.
    """

    name: str
    vendor_id: int
    device_id: int
    class_code: int
    revision: int = 0
    subsystem_vendor_id: int = 0
    subsystem_id: int = 0
    interrupt_pin: int = 0
    bars: tuple[BarSpec | None, ...] = ()
    rom: RomSpec | None = None
    capabilities: tuple[Capability, ...] = ()
    registers: tuple[Register, ...] = ()
    command_mask: int = CMD_IO | CMD_MEM | CMD_BUS_MASTER | CMD_SERR | CMD_INTX_DISABLE
    status_rw1c: int = STATUS_ERROR_BITS
    express: bool = False
    multifunction: bool = False
    behaviour: BarBehaviour | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def config_size(self) -> int:
        """Bytes of configuration space: 256, or 4096 for PCI Express (R-CFG-009)."""
        return EXPRESS_CONFIG_SIZE if self.express else CONVENTIONAL_CONFIG_SIZE

    def bar(self, index: int) -> BarSpec | None:
        """The BAR implemented at ``index`` (0-5), or None."""
        return self.bars[index] if index < len(self.bars) else None

    @cached_property
    def _fingerprint(self) -> bytes:
        behaviour = self.behaviour.name if self.behaviour is not None else "memory"
        text = repr((self.name, _identity_tuple(self), behaviour))
        return hashlib.sha256(text.encode()).digest()

    def fingerprint(self) -> bytes:
        """SHA-256 over everything that defines the type's behaviour (R-DT-002, R-BLOB-004)."""
        return self._fingerprint

    def __hash__(self) -> int:
        # Computed once: types key the layout cache on every plug and restore.
        return hash(self._fingerprint)

    @cached_property
    def decode_dwords(self) -> dict[int, tuple[int, ...]]:
        """Configuration dword index -> the BARs whose decode a write there can change (R-DEC-009).

        The command register's dword affects every BAR; a BAR's dword (both
        dwords of a 64-bit BAR) affects that BAR; the ROM BAR's dword the ROM.
        """
        table: dict[int, tuple[int, ...]] = {COMMAND // 4: self.implemented}
        for index in self.implemented:
            if index == ROM_INDEX:
                table[ROM_BAR // 4] = (ROM_INDEX,)
                continue
            bar = self.bars[index]
            assert bar is not None
            for dword in range(2 if bar.kind is BarKind.MEM64 else 1):
                table[BAR0 // 4 + index + dword] = (index,)
        return table

    @cached_property
    def implemented(self) -> tuple[int, ...]:
        """Indices of the implemented BARs, ROM (6) last."""
        bars = tuple(i for i in range(BAR_COUNT) if self.bar(i) is not None)
        return bars + ((ROM_INDEX,) if self.rom is not None else ())


def _identity_tuple(t: DeviceType) -> tuple[object, ...]:
    return (
        t.vendor_id, t.device_id, t.class_code, t.revision, t.subsystem_vendor_id,
        t.subsystem_id, t.interrupt_pin, t.bars, t.rom, t.capabilities, t.registers,
        t.command_mask, t.status_rw1c, t.express, t.multifunction,
    )  # fmt: skip


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _check_range(name: str, value: int, bits: int) -> None:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise DeviceTypeError(f"{name} must fit in {bits} bits, got {value!r}")


def _validate(t: DeviceType) -> None:
    """Reject inconsistent device types before they reach a VM (R-DT-001, R-DT-002)."""
    if not t.name or not t.name.isprintable() or len(t.name.encode()) > 255:
        raise DeviceTypeError("a device type needs a printable name of 1-255 bytes")
    for name, bits in (("vendor_id", 16), ("device_id", 16), ("class_code", 24), ("revision", 8),
                       ("subsystem_vendor_id", 16), ("subsystem_id", 16),
                       ("command_mask", 16), ("status_rw1c", 16)):  # fmt: skip
        _check_range(name, getattr(t, name), bits)
    if t.vendor_id == 0xFFFF:
        raise DeviceTypeError("vendor ID 0xffff is reserved for 'no device'")
    if not 0 <= t.interrupt_pin <= 4:
        raise DeviceTypeError("interrupt_pin is 0 (none) or 1-4 (INTA#-INTD#)")
    if t.command_mask & ~0x07FF or t.status_rw1c & ~STATUS_ERROR_BITS:
        raise DeviceTypeError("command_mask/status_rw1c name bits the header does not define")
    if len(t.bars) > BAR_COUNT:
        raise DeviceTypeError("a type 0 header has six BAR slots")
    for i, bar in enumerate(t.bars):
        if bar is None:
            continue
        if bar.kind is BarKind.IO:
            if not (_is_pow2(bar.size) and 4 <= bar.size <= 256) or bar.prefetchable:
                raise DeviceTypeError(f"BAR{i}: I/O BARs are 4-256 bytes, power of two, not prefetchable")
        elif bar.kind is BarKind.MEM32:
            if not (_is_pow2(bar.size) and 16 <= bar.size <= 1 << 31):
                raise DeviceTypeError(f"BAR{i}: 32-bit memory BARs are 16 B-2 GiB, power of two")
        else:
            if not (_is_pow2(bar.size) and 16 <= bar.size <= 1 << 63):
                raise DeviceTypeError(f"BAR{i}: 64-bit memory BARs are 16 B-8 EiB, power of two")
            if i == BAR_COUNT - 1 or t.bar(i + 1) is not None:
                raise DeviceTypeError(f"BAR{i}: a 64-bit BAR needs slot {i + 1} left empty")
        if i > 0 and (prev := t.bars[i - 1]) is not None and prev.kind is BarKind.MEM64:
            raise DeviceTypeError(f"BAR{i} is the upper half of 64-bit BAR{i - 1}")
    if t.rom is not None and not (
        _is_pow2(t.rom.size) and 2048 <= t.rom.size <= 1 << 24 and len(t.rom.contents) <= t.rom.size
    ):
        raise DeviceTypeError("ROM size is a power of two of 2 KiB-16 MiB holding its contents")
    layout(t, StatusRegister.RW1C)  # places capabilities and registers; raises on overlap


@dataclass(frozen=True, slots=True)
class ConfigLayout:
    """Per-byte power-on image and masks of a device type's configuration space (R-CFG-001).

    ``wmask``: bits a write sets from the written value; ``w1cmask``: bits a
    written one clears; ``rsvd``: reserved bits (read-only, always zero).
    A bit is in at most one mask; every other bit is read-only.
    """

    image: bytes
    wmask: bytes
    w1cmask: bytes
    rsvd: bytes
    fixed: bytes = b""
    """Bits neither writable nor RW1C: restore must find them equal to ``image`` (R-SR-004)."""

    def __post_init__(self) -> None:
        fixed = bytes(~(w | c) & 0xFF for w, c in zip(self.wmask, self.w1cmask, strict=True))
        object.__setattr__(self, "fixed", fixed)

    def first_fixed_difference(self, config: bytes) -> int | None:
        """Offset of the first byte of ``config`` whose fixed bits differ from the image, or None."""
        if len(config) != len(self.image):
            return 0
        diff = int.from_bytes(config, "little") ^ int.from_bytes(self.image, "little")
        diff &= int.from_bytes(self.fixed, "little")
        return None if diff == 0 else ((diff & -diff).bit_length() - 1) // 8


def bar_wmask(bar: BarSpec) -> int:
    """Writable bits of the BAR's address value: at and above its size (R-BAR-003, R-BAR-005).

    An I/O BAR register is 32 bits wide; bits 31:16 are writable too (R-BAR-006).
    """
    width = 64 if bar.kind is BarKind.MEM64 else 32
    low_bits = 0x3 if bar.kind is BarKind.IO else 0xF
    return ~(bar.size - 1) & ((1 << width) - 1) & ~low_bits


def rom_wmask(rom: RomSpec) -> int:
    """Writable bits of the ROM BAR: address bits at and above its size, plus enable (R-BAR-007)."""
    return (~(rom.size - 1) & 0xFFFFF800) | 0x1


@lru_cache(maxsize=512)
def layout(t: DeviceType, status: StatusRegister) -> ConfigLayout:
    """Compute the configuration image and masks of ``t`` under the status variant (R-CFG-002..009)."""
    size = t.config_size
    image, wmask, w1c, rsvd = bytearray(size), bytearray(size), bytearray(size), bytearray(size)
    used = bytearray(size)  # offsets claimed by a header field, capability or register

    def put(offset: int, width: int, value: int, wm: int = 0, cm: int = 0, rs: int = 0) -> None:
        if offset + width > CAPABILITY_AREA and any(used[offset : offset + width]):
            raise DeviceTypeError(f"config bytes {offset:#x}+{width} are claimed twice")
        for k in range(width):
            sh = 8 * k
            image[offset + k] = (value >> sh) & 0xFF
            wmask[offset + k] = (wm >> sh) & 0xFF
            w1c[offset + k] = (cm >> sh) & 0xFF
            rsvd[offset + k] = (rs >> sh) & 0xFF
            used[offset + k] = 1

    # Bytes no field claims stay zero and read-only (R-CFG-010): that covers the
    # latency timer, BIST, CardBus CIS, 0x35-0x3B, Min_Gnt, Max_Lat (R-CFG-003)
    # and unimplemented BAR slots (R-BAR-004).
    put(VENDOR_ID, 2, t.vendor_id)
    put(DEVICE_ID, 2, t.device_id)
    put(COMMAND, 2, 0, wm=t.command_mask)  # R-CFG-004
    status_value = STATUS_CAP_LIST if t.capabilities else 0  # R-CFG-005
    status_c = t.status_rw1c if status is StatusRegister.RW1C else 0
    put(STATUS, 2, status_value, cm=status_c)
    put(REVISION, 1, t.revision)
    put(CLASS_CODE, 3, t.class_code)
    put(CACHE_LINE_SIZE, 1, 0, wm=0xFF)  # R-CFG-007
    put(HEADER_TYPE, 1, 0x80 if t.multifunction else 0x00)  # R-CFG-011
    slot = 0
    while slot < BAR_COUNT:
        bar = t.bar(slot)
        if bar is None:
            slot += 1
            continue
        mask = bar_wmask(bar)
        put(BAR0 + 4 * slot, 4, bar.type_bits(), wm=mask & 0xFFFFFFFF)  # R-BAR-008: address zero
        if bar.kind is BarKind.MEM64:
            put(BAR0 + 4 * slot + 4, 4, 0, wm=mask >> 32)
            slot += 1
        slot += 1
    put(SUBSYSTEM_VENDOR_ID, 2, t.subsystem_vendor_id)
    put(SUBSYSTEM_ID, 2, t.subsystem_id)
    if t.rom is not None:
        put(ROM_BAR, 4, 0, wm=rom_wmask(t.rom))
    put(INTERRUPT_LINE, 1, 0, wm=0xFF)  # R-CFG-007
    put(INTERRUPT_PIN, 1, t.interrupt_pin)

    offset = CAPABILITY_AREA  # R-CFG-008: chained, dword aligned, from 0x40
    for i, cap in enumerate(t.capabilities):
        length = 2 + len(cap.body)
        if not 0 <= cap.cap_id <= 0xFF or length > 0x40 * 3:
            raise DeviceTypeError(f"capability {i}: id is one byte, body at most 190 bytes")
        for cap_mask in (cap.writable, cap.rw1c):
            if cap_mask and len(cap_mask) != len(cap.body):
                raise DeviceTypeError(f"capability {i}: masks must match the body's length")
        if offset + length > CONVENTIONAL_CONFIG_SIZE:
            raise DeviceTypeError("capabilities do not fit below offset 0x100")
        nxt = 0 if i == len(t.capabilities) - 1 else (offset + length + 3) & ~3
        put(offset, 2, cap.cap_id | nxt << 8)
        for k, byte in enumerate(cap.body):
            wm = cap.writable[k] if cap.writable else 0
            cm = cap.rw1c[k] if cap.rw1c else 0
            if wm & cm:
                raise DeviceTypeError(f"capability {i} byte {k}: a bit is both RW and RW1C")
            put(offset + 2 + k, 1, byte, wm=wm, cm=cm)
        if i == 0:
            put(CAP_POINTER, 1, offset)
        offset = nxt
    for reg in t.registers:  # R-CFG-012
        if reg.width not in (1, 2, 4) or reg.offset % reg.width or reg.offset < CAPABILITY_AREA:
            raise DeviceTypeError(f"register at {reg.offset:#x}: aligned width 1/2/4 at or above 0x40")
        if reg.offset + reg.width > size or not 0 <= reg.value < 1 << (8 * reg.width):
            raise DeviceTypeError(f"register at {reg.offset:#x}: outside config space or value too wide")
        full = (1 << (8 * reg.width)) - 1
        if reg.cls is RegisterClass.RSVD and reg.value:
            raise DeviceTypeError(f"register at {reg.offset:#x}: reserved bits read as zero")
        put(reg.offset, reg.width, reg.value,
            wm=full if reg.cls is RegisterClass.RW else 0,
            cm=full if reg.cls is RegisterClass.RW1C else 0,
            rs=full if reg.cls is RegisterClass.RSVD else 0)  # fmt: skip
    if any(image[o] & ~(wmask[o] | w1c[o]) & rsvd[o] for o in range(size)):
        raise DeviceTypeError("reserved bits must be zero")  # pragma: no cover - guarded above
    return ConfigLayout(bytes(image), bytes(wmask), bytes(w1c), bytes(rsvd))
