"""Configuration space as bytes: header offsets, the per-byte declaration and its rules (R-DT-005..R-DT-007).

A device type's configuration space is data: per byte a power-on value, a
write mask and a write-1-to-clear mask (:class:`ConfigSpace`). This module
holds the type 0 header's offsets, the walk of both capability chains, and
:func:`check_space`, which rejects a declaration that breaks a rule every
layout must keep, naming the byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

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

# Type 1 (PCI-to-PCI bridge) header offsets: PCI-to-PCI Bridge Architecture 1.2 §3.2, PCIe Base §7.5.1.3.
HEADER_TYPE_BRIDGE = 1
PRIMARY_BUS, SECONDARY_BUS, SUBORDINATE_BUS, SECONDARY_LATENCY = 0x18, 0x19, 0x1A, 0x1B
IO_BASE, IO_LIMIT, SECONDARY_STATUS = 0x1C, 0x1D, 0x1E
MEMORY_BASE, MEMORY_LIMIT, PREF_BASE, PREF_LIMIT = 0x20, 0x22, 0x24, 0x26
PREF_BASE_UPPER, PREF_LIMIT_UPPER, IO_BASE_UPPER, IO_LIMIT_UPPER = 0x28, 0x2C, 0x30, 0x32
BRIDGE_ROM_BAR, BRIDGE_CONTROL = 0x38, 0x3E
BRIDGE_BAR_COUNT = 2
CTL_ISA, CTL_VGA, CTL_BUS_RESET = 0x04, 0x08, 0x40
BRIDGE_CONTROL_BITS = 0x0FFF
"""Bridge control bits the PCI-to-PCI bridge specification defines; bits 15:12 are reserved (R-BRG-001)."""
BRIDGE_IDENTITY_BYTES = (
    *range(VENDOR_ID, VENDOR_ID + 4), *range(REVISION, REVISION + 4), HEADER_TYPE, CAP_POINTER, INTERRUPT_PIN,
)  # fmt: skip
"""A type 1 header's identity: it has no subsystem ID registers (0x2C-0x2F hold the prefetchable
limit's upper half)."""


WINDOW_BYTES = frozenset((*range(0x1C, 0x1E), *range(0x20, 0x30), *range(0x30, 0x34)))
"""Bytes of a type 1 header's window registers (I/O base and limit, memory and prefetchable base and
limit, their upper halves): writable bits here may have any power-on value (R-BRG-001)."""


class IoWindow(StrEnum):
    """The I/O window a bridge implements: bits 3:0 of its I/O base and limit (R-BRG-001)."""

    NONE = "none"
    BITS16 = "16-bit"
    BITS32 = "32-bit"


class PrefetchWindow(StrEnum):
    """The prefetchable memory window a bridge implements: bits 3:0 of its base and limit (R-BRG-001)."""

    NONE = "none"
    BITS32 = "32-bit"
    BITS64 = "64-bit"


@dataclass(frozen=True, slots=True)
class BridgeRegisters:
    """What a type 1 header's bytes declare beyond a type 0 header's rules (R-BRG-001).

    The windows it implements, the writable and RW1C bits of bridge control,
    the secondary status register's power-on value and RW1C bits, and whether
    the secondary latency timer is writable (read-only zero in PCI Express).
    """

    io: IoWindow = IoWindow.BITS16
    prefetchable: PrefetchWindow = PrefetchWindow.BITS64
    control_mask: int = 0x007F
    control_rw1c: int = 0
    secondary_status: int = 0
    secondary_status_rw1c: int = STATUS_ERROR_BITS
    latency_timer_writable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.io, IoWindow) or not isinstance(self.prefetchable, PrefetchWindow):
            raise DeviceTypeError("bridge windows are an IoWindow and a PrefetchWindow")
        tops = {"control_mask": BRIDGE_CONTROL_BITS, "control_rw1c": BRIDGE_CONTROL_BITS,
                "secondary_status": 0xFFFF, "secondary_status_rw1c": STATUS_ERROR_BITS}  # fmt: skip
        for name, top in tops.items():
            value = getattr(self, name)
            if type(value) is not int or value & ~top or value < 0:
                raise DeviceTypeError(f"bridge {name} must be an integer within {top:#06x}, got {value!r}")
        if self.control_mask & self.control_rw1c:
            raise DeviceTypeError("a bridge control bit is both writable and RW1C")
        if type(self.latency_timer_writable) is not bool:
            raise DeviceTypeError("bridge latency_timer_writable must be a bool")

    def registers(self) -> list[tuple[int, int, int, int, int]]:
        """(offset, width, power-on value, wmask, w1cmask) of every type 1 register 0x18-0x33 and 0x3E."""
        io_type = {IoWindow.NONE: 0, IoWindow.BITS16: 0x0, IoWindow.BITS32: 0x1}[self.io]
        io_mask = 0 if self.io is IoWindow.NONE else 0xF0
        pref_type = {PrefetchWindow.NONE: 0, PrefetchWindow.BITS32: 0x0, PrefetchWindow.BITS64: 0x1}
        pref_mask = 0 if self.prefetchable is PrefetchWindow.NONE else 0xFFF0
        io_upper = 0xFFFF if self.io is IoWindow.BITS32 else 0
        pref_upper = 0xFFFF_FFFF if self.prefetchable is PrefetchWindow.BITS64 else 0
        return [
            (PRIMARY_BUS, 1, 0, 0xFF, 0), (SECONDARY_BUS, 1, 0, 0xFF, 0), (SUBORDINATE_BUS, 1, 0, 0xFF, 0),
            (SECONDARY_LATENCY, 1, 0, 0xFF if self.latency_timer_writable else 0, 0),
            (IO_BASE, 1, io_type, io_mask, 0), (IO_LIMIT, 1, io_type, io_mask, 0),
            (SECONDARY_STATUS, 2, self.secondary_status, 0, self.secondary_status_rw1c),
            (MEMORY_BASE, 2, 0, 0xFFF0, 0), (MEMORY_LIMIT, 2, 0, 0xFFF0, 0),
            (PREF_BASE, 2, pref_type[self.prefetchable], pref_mask, 0),
            (PREF_LIMIT, 2, pref_type[self.prefetchable], pref_mask, 0),
            (PREF_BASE_UPPER, 4, 0, pref_upper, 0), (PREF_LIMIT_UPPER, 4, 0, pref_upper, 0),
            (IO_BASE_UPPER, 2, 0, io_upper, 0), (IO_LIMIT_UPPER, 2, 0, io_upper, 0),
            (BRIDGE_CONTROL, 2, 0, self.control_mask, self.control_rw1c),
        ]  # fmt: skip


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


def bridge_registers(space: ConfigSpace) -> BridgeRegisters | None:
    """What a type 1 header declares, read off its bytes, or None for a type 0 header (R-BRG-001).

    Raises :class:`DeviceTypeError` naming the byte when the bridge registers
    contradict every window kind: bus numbers not writable or not zero at
    power-on, a window's type nibbles differing between base and limit or
    from its writable bits, upper halves writable without the wide window.
    The address bits of window bases and limits (their writable bits) may hold
    any power-on value: QEMU's pcie-root-port powers on with its windows closed.
    """
    if space.image[HEADER_TYPE] & 0x7F != HEADER_TYPE_BRIDGE:
        return None
    image, wmask = space.image, space.wmask
    io_type, io_mask = image[IO_BASE] & 0xF, wmask[IO_BASE]
    io = (
        IoWindow.NONE
        if io_mask == 0 and io_type == 0
        else IoWindow.BITS32
        if io_type == 1
        else IoWindow.BITS16
    )
    if io_type > 1:
        raise _fail(IO_BASE, f"I/O window type {io_type} is not 0 (16-bit) or 1 (32-bit)")
    pref_type, pref_mask = image[PREF_BASE] & 0xF, space.word(PREF_BASE, 2, "wmask")
    pref = (PrefetchWindow.NONE if pref_mask == 0 and pref_type == 0
            else PrefetchWindow.BITS64 if pref_type == 1 else PrefetchWindow.BITS32)  # fmt: skip
    if pref_type > 1:
        raise _fail(PREF_BASE, f"prefetchable window type {pref_type} is not 0 (32-bit) or 1 (64-bit)")
    declared = BridgeRegisters(
        io, pref, control_mask=space.word(BRIDGE_CONTROL, 2, "wmask") & BRIDGE_CONTROL_BITS,
        control_rw1c=space.word(BRIDGE_CONTROL, 2, "w1cmask") & BRIDGE_CONTROL_BITS,
        secondary_status=space.word(SECONDARY_STATUS, 2),
        secondary_status_rw1c=space.word(SECONDARY_STATUS, 2, "w1cmask") & STATUS_ERROR_BITS,
        latency_timer_writable=wmask[SECONDARY_LATENCY] == 0xFF,
    )  # fmt: skip
    for offset, width, value, wm, cm in declared.registers():
        for k in range(width):
            o, shift = offset + k, 8 * k
            want = ((value >> shift) & 0xFF, (wm >> shift) & 0xFF, (cm >> shift) & 0xFF)
            if o in WINDOW_BYTES:  # any power-on address bits; the read-only bits are the rule
                want = (want[0] | (image[o] & want[1]), want[1], want[2])
            if (image[o], wmask[o], space.w1cmask[o]) != want:
                raise _fail(o, f"a {io.value} I/O, {pref.value} prefetchable bridge has {want[0]:#04x}, "
                               f"writable {want[1]:#04x}, RW1C {want[2]:#04x} here")  # fmt: skip
    return declared


def check_space(space: ConfigSpace, express: bool) -> tuple[ChainEntry, ...]:
    """Reject a declaration that breaks a rule every layout keeps; return its capability chain.

    The rules (R-DT-005..R-DT-007, R-BRG-001): no bit both writable and RW1C; identity,
    capability pointer and every capability's ID and next bytes read-only;
    a type 0 header, or a type 1 header whose bridge registers agree with one
    window declaration; vendor ID not 0xFFFF; interrupt pin 0-4; command bits
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
    bridge = image[HEADER_TYPE] & 0x7F == HEADER_TYPE_BRIDGE
    for offset in BRIDGE_IDENTITY_BYTES if bridge else IDENTITY_BYTES:
        if wmask[offset] | w1c[offset]:
            raise _fail(offset, "identity bytes and the capabilities pointer are read-only")
    if space.word(VENDOR_ID, 2) == 0xFFFF:
        raise _fail(VENDOR_ID, "vendor ID 0xffff is reserved for 'no device'")
    if image[HEADER_TYPE] & 0x7F > HEADER_TYPE_BRIDGE:
        raise _fail(HEADER_TYPE, f"header type {image[HEADER_TYPE] & 0x7F}: only types 0 and 1 are modelled")
    bridge_registers(space)
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


# ------------------------------------------------------------------ PCI rules of interrupt capabilities

CAP_MSI, CAP_EXPRESS, CAP_MSIX = 0x05, 0x10, 0x11
EXPRESS_CAPABILITY_SIZE = {1: 0x14, 2: 0x3C}
"""Bytes of the PCI Express capability of an endpoint, by its version (R-DT-009)."""
STATUS_INTERRUPT = 0x08
"""Status bit 3, Interrupt Status: read-only, driven by the device alone (R-IRQ-004)."""
MSIX_ENTRY_SIZE = 16
MSIX_VECTOR_MASK = 0x1
"""Vector Control bit 0 of an MSI-X table entry; bits 31:1 are reserved (R-IRQ-003)."""


def capability_room(image: bytes, chain: tuple[ChainEntry, ...], entry: ChainEntry) -> int:
    """Bytes from a standard capability's header to the next capability or the end of 0x40-0xFF."""
    starts = [e.offset for e in chain if not e.extended and e.offset > entry.offset]
    return min(starts, default=CONVENTIONAL_CONFIG_SIZE) - entry.offset


@dataclass(frozen=True, slots=True)
class MsixPlace:
    """Where an MSI-X capability puts its table and pending-bit array (R-IRQ-003)."""

    vectors: int
    table_bar: int
    table_offset: int
    pba_bar: int
    pba_offset: int

    @property
    def table(self) -> range:
        """Offsets of the table inside its BAR: 16 bytes per vector."""
        return range(self.table_offset, self.table_offset + MSIX_ENTRY_SIZE * self.vectors)

    @property
    def pba(self) -> range:
        """Offsets of the pending-bit array inside its BAR: one bit per vector, whole qwords."""
        return range(self.pba_offset, self.pba_offset + 8 * ((self.vectors + 63) // 64))


def msix_place(image: bytes) -> MsixPlace | None:
    """The table and PBA the first MSI-X capability of ``image`` names, or None without one (R-IRQ-003)."""
    entry = next((e for e in standard_chain(image) if e.cap_id == CAP_MSIX), None)
    if entry is None:
        return None
    at = entry.offset
    control, table, pba = (
        int.from_bytes(image[at + k : at + k + n], "little") for k, n in ((2, 2), (4, 4), (8, 4))
    )
    return MsixPlace((control & 0x7FF) + 1, table & 7, table & ~7, pba & 7, pba & ~7)


def _expect(space: ConfigSpace, offset: int, width: int, what: str, wmask: int, w1c: int = 0) -> None:
    """The register at ``offset`` has exactly these writable and RW1C bits, or fail naming its first byte."""
    for k in range(width):
        want = ((wmask >> 8 * k) & 0xFF, (w1c >> 8 * k) & 0xFF)
        if (space.wmask[offset + k], space.w1cmask[offset + k]) != want:
            raise _fail(
                offset + k, f"{what}: writable {want[0]:#04x} and RW1C {want[1]:#04x} per the PCI rules"
            )


def check_pci_rules(space: ConfigSpace) -> None:
    """Reject a declaration that breaks the PCI rules of the structures it declares, naming the byte.

    Beyond the rules every declaration keeps (:func:`check_space`): a PCI
    Express function carries a PCI Express capability of the size its
    version needs (R-DT-009); MSI, MSI-X and the INTx bits have the register
    classes the PCI specification gives them (R-IRQ-001, R-IRQ-002, R-IRQ-004).
    """
    image = space.image
    chain = standard_chain(image)
    express = [e for e in chain if e.cap_id == CAP_EXPRESS]
    if len(image) == EXPRESS_CONFIG_SIZE and not express:
        raise _fail(CAP_POINTER, "a PCI Express function carries a PCI Express capability (ID 0x10)")
    for entry in express:
        version = image[entry.offset + 2] & 0xF
        size = EXPRESS_CAPABILITY_SIZE.get(version)
        if size is None:
            raise _fail(entry.offset + 2, f"PCI Express capability version {version}: 1 or 2")
        room = capability_room(image, chain, entry)
        if room < size:
            raise _fail(entry.offset, f"a version {version} PCI Express capability takes {size:#x} bytes, "
                                      f"{room:#x} are free before the next capability")  # fmt: skip
    for entry in chain:
        if entry.cap_id == CAP_MSI:
            _check_msi(space, entry.offset)
        elif entry.cap_id == CAP_MSIX:
            _check_msix(space, entry.offset)
    if image[STATUS] & STATUS_INTERRUPT:
        raise _fail(STATUS, "Interrupt Status (status bit 3) is clear at power-on")
    intx_disable = space.wmask[COMMAND + 1] & (CMD_INTX_DISABLE >> 8)
    if image[INTERRUPT_PIN] and not intx_disable:
        raise _fail(COMMAND + 1, "a function with an interrupt pin has a writable Interrupt Disable (bit 10)")


def msi_layout(control: int) -> dict[str, int]:
    """Offsets inside an MSI capability (from its ID byte) of its registers, by name (R-IRQ-001).

    ``mask`` and ``pending`` exist only with per-vector masking (control bit 8).
    """
    wide = 4 if control & 0x80 else 0
    layout = {"control": 2, "address": 4, "data": 8 + wide}
    if control & 0x100:
        layout |= {"mask": 12 + wide, "pending": 16 + wide}
    return layout


def _check_msi(space: ConfigSpace, at: int) -> None:
    """MSI: enable and Multiple Message Enable writable, the rest of control read-only; address (dword
    aligned), upper address and data writable; mask bits of the vectors it can use writable, pending bits
    read-only (R-IRQ-001)."""
    control = space.word(at + 2, 2)
    layout = msi_layout(control)
    size = max(layout.values()) + 4 if "mask" in layout else layout["data"] + 2
    if capability_room(space.image, standard_chain(space.image), ChainEntry(at, CAP_MSI)) < size:
        raise _fail(at, f"this MSI capability takes {size:#x} bytes; the next capability starts earlier")
    _expect(space, at + 2, 2, "MSI Message Control", 0x0071)
    _expect(space, at + 4, 4, "MSI Message Address", 0xFFFF_FFFC)
    if control & 0x80:
        _expect(space, at + 8, 4, "MSI Message Upper Address", 0xFFFF_FFFF)
    _expect(space, at + layout["data"], 2, "MSI Message Data", 0xFFFF)
    if "mask" in layout:
        vectors = 1 << min((control >> 1) & 7, 5)
        _expect(space, at + layout["mask"], 4, "MSI Mask Bits", (1 << vectors) - 1)
        _expect(space, at + layout["pending"], 4, "MSI Pending Bits", 0)


def _check_msix(space: ConfigSpace, at: int) -> None:
    """MSI-X: enable and function mask writable, table size and the table and PBA locations read-only
    (R-IRQ-002)."""
    if capability_room(space.image, standard_chain(space.image), ChainEntry(at, CAP_MSIX)) < 12:
        raise _fail(at, "an MSI-X capability takes 0xc bytes; the next capability starts earlier")
    _expect(space, at + 2, 2, "MSI-X Message Control", 0xC000)
    _expect(space, at + 4, 8, "MSI-X Table and PBA offsets", 0)
