"""Configuration space as bytes: header offsets, the per-byte declaration and its rules (R-DT-005..R-DT-007).

A device type's configuration space is data: per byte a power-on value, a
write mask and a write-1-to-clear mask (:class:`ConfigSpace`). This module
holds the type 0 header's offsets, the walk of both capability chains, and
:func:`check_space`, which rejects a declaration that breaks a rule every
layout must keep, naming the byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from vpcid.model.errors import DeviceTypeError

CONVENTIONAL_CONFIG_SIZE = 0x100
EXPRESS_CONFIG_SIZE = 0x1000

# Type 0 header offsets.
VENDOR_ID, DEVICE_ID, COMMAND, STATUS, REVISION, CLASS_CODE = 0x00, 0x02, 0x04, 0x06, 0x08, 0x09
CACHE_LINE_SIZE, LATENCY_TIMER, HEADER_TYPE = 0x0C, 0x0D, 0x0E
BAR0, SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID, ROM_BAR, CAP_POINTER = 0x10, 0x2C, 0x2E, 0x30, 0x34
INTERRUPT_LINE, INTERRUPT_PIN = 0x3C, 0x3D
CAPABILITY_AREA = 0x40
EXTENDED_AREA = 0x100

CMD_IO, CMD_MEM, CMD_BUS_MASTER, CMD_SERR, CMD_INTX_DISABLE = 0x1, 0x2, 0x4, 0x100, 0x400
COMMAND_BITS = 0x07FF
"""Command bits the PCI specification defines; bits 15:11 are reserved (R-CFG-004)."""
STATUS_CAP_LIST = 0x10
STATUS_ERROR_BITS = 0xF900
"""Master data parity error, signalled/received target abort, received master abort, SERR, parity."""
HEADER_TYPE_MULTIFUNCTION = 0x80
"""Header type bit 7: the device has functions besides function 0 (R-MF-001)."""
PCIE_CAP_ID = 0x10
"""The PCI Express capability's ID (R-RST-005)."""
PCIE_DEVICE_CAPABILITIES, PCIE_DEVICE_CONTROL = 0x04, 0x08
"""Offsets of Device Capabilities (32 bits) and Device Control (16 bits) inside the PCI Express capability."""
DEVCAP_FLR = 1 << 28
"""Device Capabilities bit 28: Function Level Reset Capability."""
DEVCTL_INITIATE_FLR = 1 << 15
"""Device Control bit 15: Initiate Function Level Reset (reads 0)."""

IDENTITY_BYTES = (
    *range(VENDOR_ID, VENDOR_ID + 4), *range(REVISION, REVISION + 4), HEADER_TYPE,
    *range(SUBSYSTEM_VENDOR_ID, SUBSYSTEM_VENDOR_ID + 4), CAP_POINTER, INTERRUPT_PIN,
)  # fmt: skip
"""Vendor, device, revision, class, header type, subsystem IDs, capabilities pointer, pin (R-CFG-002)."""


@dataclass(frozen=True, slots=True)
class ConfigSpace:
    """A function's configuration space, per byte: power-on value, write mask, RW1C mask (R-DT-005).

    The three arrays have the function's size (256, or 4096 for PCI Express).
    A bit in ``wmask`` takes the written value, a bit in ``w1cmask`` is
    cleared by a written one, every other bit is read-only (R-CFG-001).
    """

    image: bytes
    wmask: bytes
    w1cmask: bytes
    sticky: bytes = b""
    """Bits a function-level reset keeps and a power-on reset clears (R-RST-004); empty: none. A mask
    with no bit set is stored empty, so equal declarations compare equal."""

    def __post_init__(self) -> None:
        for name in ("image", "wmask", "w1cmask", "sticky"):
            if type(getattr(self, name)) is not bytes:
                raise DeviceTypeError(f"configuration {name} must be bytes")
        size = len(self.image)
        if self.sticky and len(self.sticky) != size:
            raise DeviceTypeError(
                f"the sticky mask has the space's {size} bytes or none, not {len(self.sticky)}"
            )
        if self.sticky and not any(self.sticky):
            object.__setattr__(self, "sticky", b"")
        if size not in (CONVENTIONAL_CONFIG_SIZE, EXPRESS_CONFIG_SIZE):
            raise DeviceTypeError(f"configuration space is 256 or 4096 bytes, not {size}")
        if len(self.wmask) != size or len(self.w1cmask) != size:
            raise DeviceTypeError(
                f"configuration image, wmask and w1cmask must have the same length, not {size}, "
                f"{len(self.wmask)} and {len(self.w1cmask)} bytes"
            )

    def word(self, offset: int, width: int, array: str = "image") -> int:
        """Little-endian value of ``width`` bytes of ``array`` at ``offset``."""
        data: bytes = getattr(self, array)
        return int.from_bytes(data[offset : offset + width], "little")


@dataclass(frozen=True, slots=True)
class ChainEntry:
    """One capability found by walking a chain: where it is, its ID, and for an extended
    capability its version (R-DT-006, R-DT-007)."""

    offset: int
    cap_id: int
    extended: bool = False
    version: int = 0

    @property
    def header_bytes(self) -> range:
        """The ID and next-pointer bytes (read-only in every layout)."""
        return range(self.offset, self.offset + (4 if self.extended else 2))


def _fail(offset: int, what: str) -> DeviceTypeError:
    return DeviceTypeError(f"config byte {offset:#05x}: {what}")


def standard_chain(image: bytes) -> tuple[ChainEntry, ...]:
    """Walk the capability list from 0x34 when status bit 4 says there is one (R-DT-006).

    Every pointer is dword aligned and inside 0x40-0xFC; a pointer seen twice
    is a cycle. Raises :class:`DeviceTypeError` naming the byte at fault.
    """
    if not image[STATUS] & STATUS_CAP_LIST:
        return ()
    entries: list[ChainEntry] = []
    seen: set[int] = set()
    at, pointer = CAP_POINTER, image[CAP_POINTER]
    if pointer == 0:
        raise _fail(CAP_POINTER, "status bit 4 announces capabilities but the pointer is zero")
    while pointer:
        if pointer % 4 or pointer < CAPABILITY_AREA:
            raise _fail(at, f"capability pointer {pointer:#04x} is not a dword in 0x40-0xfc")
        if pointer in seen:
            raise _fail(at, f"capability pointer {pointer:#04x} closes a cycle")
        seen.add(pointer)
        entries.append(ChainEntry(pointer, image[pointer]))
        at, pointer = pointer + 1, image[pointer + 1]
    return tuple(entries)


def extended_chain(image: bytes) -> tuple[ChainEntry, ...]:
    """Walk the PCI Express extended capabilities from 0x100 (R-DT-007).

    A zero dword at 0x100 means none. Each header is a 16-bit ID, a 4-bit
    version and a 12-bit next offset that is zero or a dword in 0x100-0xFFC.
    """
    if len(image) < EXPRESS_CONFIG_SIZE:
        return ()
    entries: list[ChainEntry] = []
    seen: set[int] = set()
    at = offset = EXTENDED_AREA
    if not int.from_bytes(image[offset : offset + 4], "little"):
        return ()
    while offset:
        if offset % 4 or offset < EXTENDED_AREA:
            raise _fail(at, f"extended capability pointer {offset:#05x} is not a dword in 0x100-0xffc")
        if offset in seen:
            raise _fail(at, f"extended capability pointer {offset:#05x} closes a cycle")
        seen.add(offset)
        header = int.from_bytes(image[offset : offset + 4], "little")
        entries.append(ChainEntry(offset, header & 0xFFFF, True, (header >> 16) & 0xF))
        at, offset = offset + 2, header >> 20
    return tuple(entries)


def capability_chain(image: bytes) -> tuple[ChainEntry, ...]:
    """Both chains, standard first (R-DT-006, R-DT-007)."""
    return standard_chain(image) + extended_chain(image)


def check_space(space: ConfigSpace, express: bool) -> tuple[ChainEntry, ...]:
    """Reject a declaration that breaks a rule every layout keeps; return its capability chain.

    The rules (R-DT-005..R-DT-007): no bit both writable and RW1C; identity,
    capability pointer and every capability's ID and next bytes read-only;
    a type 0 header; vendor ID not 0xFFFF; interrupt pin 0-4; command bits
    only those the PCI specification defines, zero at power-on; a status
    register with no writable bit and RW1C bits only among its error bits;
    well-formed chains.
    """
    image, wmask, w1c = space.image, space.wmask, space.w1cmask
    if (len(image) == EXPRESS_CONFIG_SIZE) != express:
        raise DeviceTypeError("a PCI Express function has 4096 bytes of configuration space, others 256")
    both = int.from_bytes(wmask, "little") & int.from_bytes(w1c, "little")
    if both:
        raise _fail(((both & -both).bit_length() - 1) // 8, "a bit is both writable and RW1C")
    for offset in IDENTITY_BYTES:
        if wmask[offset] | w1c[offset]:
            raise _fail(offset, "identity bytes and the capabilities pointer are read-only")
    if space.word(VENDOR_ID, 2) == 0xFFFF:
        raise _fail(VENDOR_ID, "vendor ID 0xffff is reserved for 'no device'")
    if image[HEADER_TYPE] & 0x7F:
        raise _fail(HEADER_TYPE, f"header type {image[HEADER_TYPE] & 0x7F}: only type 0 headers are modelled")
    if image[INTERRUPT_PIN] > 4:
        raise _fail(INTERRUPT_PIN, "interrupt pin is 0 (none) or 1-4 (INTA#-INTD#)")
    command_bits = space.word(COMMAND, 2, "wmask")
    if space.word(COMMAND, 2) or space.word(COMMAND, 2, "w1cmask") or command_bits & ~COMMAND_BITS:
        raise _fail(COMMAND, "the command register is zero at power-on with writable bits only in 0x07ff")
    if space.word(STATUS, 2, "wmask") or space.word(STATUS, 2, "w1cmask") & ~STATUS_ERROR_BITS:
        raise _fail(STATUS, "status bits are read-only or RW1C error bits (0xf900)")
    if express:
        for offset in range(EXTENDED_AREA, EXTENDED_AREA + 4):
            if wmask[offset] | w1c[offset]:
                raise _fail(offset, "0x100 holds the first extended capability header (or zero): read-only")
    chain = capability_chain(image)
    for entry in chain:
        for offset in entry.header_bytes:  # inside the space: pointers are at most 0xfc / 0xffc
            if wmask[offset] | w1c[offset]:
                raise _fail(offset, "a capability's ID and next bytes are read-only")
    _check_sticky(space, chain)
    return chain


def flr_control(image: bytes, chain: tuple[ChainEntry, ...]) -> int | None:
    """Offset of Device Control when the function can do a function-level reset, else None (R-RST-005).

    The function's first PCI Express capability (ID 0x10 in the standard chain) must hold Device
    Control inside the space, and its power-on Device Capabilities must have bit 28 set.
    """
    entry = next((e for e in chain if not e.extended and e.cap_id == PCIE_CAP_ID), None)
    if entry is None or entry.offset + PCIE_DEVICE_CONTROL + 2 > CONVENTIONAL_CONFIG_SIZE:
        return None
    at = entry.offset + PCIE_DEVICE_CAPABILITIES
    if not int.from_bytes(image[at : at + 4], "little") & DEVCAP_FLR:
        return None
    return entry.offset + PCIE_DEVICE_CONTROL


def _check_sticky(space: ConfigSpace, chain: tuple[ChainEntry, ...]) -> None:
    """Sticky bits are writable or RW1C bits at or above 0x40, and Initiate FLR is not one
    (R-RST-004, R-RST-005)."""
    sticky = space.sticky
    if sticky:
        for offset, bits in enumerate(sticky):
            if bits and offset < CAPABILITY_AREA:
                raise _fail(offset, "sticky bits lie at or above 0x40: the header resets at every reset")
            if bits & ~(space.wmask[offset] | space.w1cmask[offset]):
                raise _fail(offset, "a sticky bit must be writable or RW1C (read-only bits never change)")
    control = flr_control(space.image, chain)
    if control is not None and sticky and sticky[control + 1] & 0x80:  # bit 7 of the upper byte
        raise _fail(control + 1, "Initiate Function Level Reset is not sticky: a reset ends it")
