"""Discover a QEMU PCI device model's layout from the guest's side, and the machine around it.

Discovery runs on its own throw-away QEMU, paused, with the device at a fixed
address on a q35 machine, and reads everything through ECAM (so that 0xCF8
is never disturbed):

1. identity: vendor, device, revision, class, subsystem IDs, interrupt pin,
   header type (multi-function bit); PCI Express when offset 0x100 exists;
2. BARs, sized the way Linux does it (decode off, save, write ones, read,
   restore), 64-bit BARs over both dwords, and the expansion ROM, whose
   contents are then read through a temporary mapping;
3. capabilities, by walking the chain from 0x34; each capability's length
   comes from its ID (PM 8, MSI by its flags, MSI-X 12, PCI Express by its
   version, vendor-specific by its length byte; otherwise up to the next one);
4. writable and write-1-to-clear masks, probed byte by byte (write 0xff,
   read, write 0x00, read, restore) where that is safe: the command register,
   the capabilities whose registers only store values (PM, MSI, MSI-X, PCI
   Express without its function-level-reset bit) and the bytes of 0x40-0xFF
   no capability claims - the suite writes those bytes itself. Capabilities
   with other IDs are taken as read-only (their writes can start device
   actions). RW1C bits that are zero at power-on cannot be seen; the status
   register gets the PCI core's standard error bits (0xF900);
5. the platform: every other PCI function on bus 0, and every I/O and memory
   range QEMU's flat memory map (``info mtree -f``) gives to something other
   than the PCI host bridge's configuration ports and ECAM window;
6. migration: whether configuration space survives a ``migrate`` to a file
   and back (devices without migration state come back reset).

Everything a :class:`~vpcid.model.DeviceType` cannot express is listed in
:attr:`Discovery.notes` and left to the suite to report.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vpcid.adapters.qemu.behaviours import EduBehaviour, TestdevBehaviour, ZeroBehaviour
from vpcid.adapters.qemu.qtest import Guest, QemuError, QemuProcess, QemuUnavailable
from vpcid.model import Bdf, DeviceTypeError, VpcidError
from vpcid.model.behaviour import BarBehaviour
from vpcid.model.devicetype import (
    BarKind,
    BarSpec,
    Capability,
    DeviceType,
    Register,
    RegisterClass,
    RomSpec,
    layout,
)
from vpcid.model.profile import StatusRegister

DEVICE_BDF = Bdf(0, 4, 0)
"""Where the device under test sits unless ``addr=`` says otherwise."""
ECAM_BASE = 0xB000_0000
"""q35's PCIEXBAR window, enabled by the adapter at every start (firmware's job)."""
PCIEXBAR = 0x60
RAM = "128M"
SCRATCH = 0xE000_0000
"""Where discovery maps the ROM for a moment to read it (inside the PCI hole)."""

_MTREE_LINE = re.compile(r"^\s*([0-9a-f]+)-([0-9a-f]+) \(prio (-?\d+), ([^)]*)\): (\S+)")
_PLATFORM_PASS = {"io", "pci-conf-idx", "pci-conf-data", "pcie-mmcfg-mmio"}
"""Flat-map regions that are not platform-owned: the I/O root (unassigned ports), the
configuration mechanism #1 ports (the spec's own platform window) and ECAM."""
RESET_CONTROL = range(0xCF9, 0xCFA)
"""q35's reset control register sits inside 0xCF8-0xCFB; it is platform-owned (and resets the machine)."""


class DiscoveryError(QemuUnavailable):
    """The device's layout cannot be read or cannot be expressed as a device type."""


@dataclass(frozen=True)
class DeviceSpec:
    """``DEVICE[,option=value...]`` from ``--adapter qemu:DEVICE[,options]``."""

    model: str
    options: tuple[str, ...] = ()
    bdf: Bdf = DEVICE_BDF
    reset: bool = False
    """``vpcid-reset=on``: also declare ``reset_vm`` (QMP ``system_reset``)."""
    profile: str = "qemu"
    """``vpcid-profile=``: ``qemu`` (QEMU's variants), ``default`` (the spec's) or a manifest path."""

    @classmethod
    def parse(cls, text: str | None) -> DeviceSpec:
        if not text or not text.split(",")[0]:
            raise QemuUnavailable("name a device model: --adapter qemu:DEVICE[,option=value...]")
        model, *options = [part.strip() for part in text.split(",")]
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", model):
            raise QemuUnavailable(f"{model!r} is not a QEMU device model name")
        bdf = DEVICE_BDF
        reset = False
        profile = "qemu"
        kept: list[str] = []
        for option in options:
            key, _, value = option.partition("=")
            if key == "vpcid-reset":
                if value not in ("on", "off"):
                    raise QemuUnavailable("vpcid-reset is on or off")
                reset = value == "on"
            elif key == "vpcid-profile":
                if not value:
                    raise QemuUnavailable("vpcid-profile is qemu, default or a profile manifest path")
                profile = value
            elif key.startswith("vpcid-"):
                raise QemuUnavailable(f"unknown adapter option {key!r} (known: vpcid-reset, vpcid-profile)")
            elif key == "addr":
                device, _, function = value.partition(".")
                try:
                    bdf = Bdf(0, int(device, 16), int(function or "0", 16))
                except (ValueError, VpcidError) as exc:
                    raise QemuUnavailable(f"addr={value!r}: expected DD.F on bus 0 ({exc})") from None
            elif key in ("bus", "id"):
                raise QemuUnavailable(f"option {key}= is chosen by the adapter")
            else:
                kept.append(option)
        return cls(model, tuple(kept), bdf, reset, profile)

    @property
    def label(self) -> str:
        return ",".join((self.model, *self.options))

    def machine_args(self) -> list[str]:
        device = ",".join((self.model, f"addr={self.bdf.device:02x}.{self.bdf.function}", *self.options))
        return ["-machine", "q35", "-m", RAM, "-device", device]


def prepare(qemu: QemuProcess) -> Guest:
    """Do what firmware would: open q35's ECAM window; leave 0xCF8 at its power-on zero."""
    qemu.connect()
    qemu.qtest([
        f"outl 0xcf8 {0x8000_0000 | PCIEXBAR:#x}", f"outl 0xcfc {ECAM_BASE | 1:#x}",
        f"outl 0xcf8 {0x8000_0000 | PCIEXBAR + 4:#x}", "outl 0xcfc 0x0", "outl 0xcf8 0x0",
    ])  # fmt: skip
    return Guest(qemu, ECAM_BASE)


@dataclass(frozen=True)
class Discovery:
    """What discovery learnt: the device type, the platform around it, and what it assumed."""

    spec: DeviceSpec
    dtype: DeviceType
    reserved_functions: tuple[Bdf, ...]
    reserved_io: tuple[range, ...]
    reserved_memory: tuple[range, ...]
    migratable: bool
    opaque: tuple[tuple[int, range], ...]
    """(BAR index, offsets) whose contents no behaviour describes: the suite must not access them."""
    notes: tuple[str, ...] = field(default=())
    version: str = ""
    """QEMU's version, as QMP ``query-version`` reports it."""


# ------------------------------------------------------------------ behaviour choice

KNOWN_BEHAVIOURS: dict[str, tuple[BarBehaviour, tuple[tuple[int, range | None], ...]]] = {
    "edu": (EduBehaviour(), ((0, range(0x20, 0x24)), (0, range(0x60, 0x68)))),
    "pci-testdev": (TestdevBehaviour(), ()),
    "e1000": (ZeroBehaviour(), ((0, None),)),
}
"""Device model -> (behaviour, opaque parts: BAR index and offsets, None for the whole BAR).

edu: writes to 0x20 (interrupt on factorial) and 0x60/0x64 (raise/lower) would assert
an interrupt, which sets configuration status bit 3 - not expressible in a device type.
e1000: the register file (BAR0) has side effects on almost every register; its I/O BAR
reads zero and ignores writes in QEMU 7.2, which :class:`ZeroBehaviour` describes."""


def behaviour_for(
    model: str, bars: Sequence[BarSpec | None]
) -> tuple[BarBehaviour, tuple[tuple[int, range], ...]]:
    """The behaviour of ``model`` and its opaque BAR parts; unknown models are opaque throughout."""
    known = KNOWN_BEHAVIOURS.get(model)
    if known is None:
        return ZeroBehaviour(), tuple(
            (i, range(0, bar.size)) for i, bar in enumerate(bars) if bar is not None
        )
    behaviour, parts = known
    opaque = []
    for index, offsets in parts:
        bar = bars[index] if index < len(bars) else None
        if bar is not None:
            opaque.append((index, offsets if offsets is not None else range(0, bar.size)))
    return behaviour, tuple(opaque)


# ------------------------------------------------------------------ discovery


def _cap_length(cap_id: int, config: bytes, offset: int, limit: int) -> int:
    """Bytes of the capability at ``offset`` (ID and next included)."""
    if cap_id == 0x01:
        return 8
    if cap_id == 0x05:
        flags = int.from_bytes(config[offset + 2 : offset + 4], "little")
        length = 14 if flags & 0x80 else 10
        return length + 10 if flags & 0x100 else length
    if cap_id == 0x11:
        return 12
    if cap_id == 0x10:
        version = config[offset + 2] & 0xF
        return 0x3C if version >= 2 else 0x14
    if cap_id == 0x09:
        return max(3, config[offset + 2])
    return limit - offset


_PROBED_CAPS = {0x01, 0x05, 0x10, 0x11}
"""Capabilities whose registers only store values (besides the masks below): safe to probe."""
_CAP_PROBE_VALUE = {(0x10, 9): 0x7F}
"""(capability ID, byte offset) -> bits probed, where other bits start an action (PCIe FLR)."""


class _Prober:
    def __init__(self, guest: Guest, bdf: Bdf) -> None:
        self.guest = guest
        self.packed = bdf.packed

    def config(self, size: int) -> bytes:
        values = self.guest.config_batch(self.packed, [(o, 4, None) for o in range(0, size, 4)])
        return b"".join(v.to_bytes(4, "little") for v in values)

    def byte_masks(self, offsets: Sequence[int], probes: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Per byte: (writable mask, RW1C mask), learnt by writing ``probe`` then zero, and restoring."""
        accesses: list[tuple[int, int, int | None]] = []
        for offset, probe in zip(offsets, probes, strict=True):
            accesses += [(offset, 1, None), (offset, 1, probe), (offset, 1, None), (offset, 1, 0),
                         (offset, 1, None)]  # fmt: skip
        reads = self.guest.config_batch(self.packed, accesses)
        restore = [(o, 1, reads[3 * k]) for k, o in enumerate(offsets)]
        if restore:
            self.guest.config_batch(self.packed, restore)
        out: dict[int, tuple[int, int]] = {}
        for k, (offset, probe) in enumerate(zip(offsets, probes, strict=True)):
            old, ones, zeros = reads[3 * k : 3 * k + 3]
            writable = (ones ^ zeros) & probe
            rw1c = old & ~ones & ~zeros & probe & ~writable
            out[offset] = (writable, rw1c)
        return out

    def size_bar(self, offset: int, probe: int = 0xFFFF_FFFF) -> tuple[int, int]:
        """(value, value read back after writing ``probe``), restoring the register."""
        old, sized = self.guest.config_batch(
            self.packed, [(offset, 4, None), (offset, 4, probe), (offset, 4, None)]
        )
        self.guest.config_write(self.packed, offset, 4, old)
        return old, sized


def discover(spec: DeviceSpec) -> Discovery:
    """Start a throw-away QEMU with the device, read its layout and the platform, kill it."""
    qemu = QemuProcess.spawn(spec.machine_args())
    try:
        guest = prepare(qemu)
        found = _discover(spec, guest)
    except QemuError as exc:
        raise DiscoveryError(f"discovering {spec.label}: {exc}") from None
    finally:
        qemu.kill()
    migratable = _migrates(spec)
    return dataclasses.replace(found, migratable=migratable)


def _discover(spec: DeviceSpec, guest: Guest) -> Discovery:
    notes: list[str] = []
    bdf = spec.bdf
    probe = _Prober(guest, bdf)
    if guest.config_read(bdf.packed, 0, 2) == 0xFFFF:
        raise DiscoveryError(f"no function answers at {bdf} (is {spec.model!r} a PCI device model?)")
    express = guest.config_read(bdf.packed, 0x100, 4) != 0xFFFF_FFFF
    config = probe.config(0x1000 if express else 0x100)
    header_type = config[0x0E]
    if header_type & 0x7F:
        raise DiscoveryError(f"{spec.model} has header type {header_type & 0x7F}: only type 0 is modelled")

    # command register: the writable bits (restored to zero afterwards)
    guest.config_batch(bdf.packed, [(0x04, 2, 0xFFFF)])
    command_mask = guest.config_batch(bdf.packed, [(0x04, 2, None), (0x04, 2, 0)])[0]
    if command_mask & ~0x07FF:
        notes.append(f"command bits {command_mask & ~0x07FF:#06x} are writable; the model keeps 0x07ff")
        command_mask &= 0x07FF
    status_probe = probe.byte_masks([0x06, 0x07], [0xFF, 0xFF])
    status_writable = status_probe[0x06][0] | status_probe[0x07][0] << 8
    if status_writable:
        notes.append(
            f"status bits {status_writable:#06x} are writable; the model has no writable status bits"
        )

    bars = _bars(probe, notes)
    rom = _rom(guest, probe, bdf, notes)
    capabilities, claimed = _capabilities(probe, config, notes)
    registers = _registers(probe, config, claimed, _packed(capabilities), express, notes)
    behaviour, opaque = behaviour_for(spec.model, bars)
    try:
        dtype = DeviceType(
            name=f"qemu:{spec.label}",
            vendor_id=int.from_bytes(config[0:2], "little"),
            device_id=int.from_bytes(config[2:4], "little"),
            revision=config[0x08],
            class_code=int.from_bytes(config[0x09:0x0C], "little"),
            subsystem_vendor_id=int.from_bytes(config[0x2C:0x2E], "little"),
            subsystem_id=int.from_bytes(config[0x2E:0x30], "little"),
            interrupt_pin=config[0x3D],
            bars=bars,
            rom=rom,
            capabilities=capabilities,
            registers=registers,
            command_mask=command_mask,
            express=express,
            multifunction=bool(header_type & 0x80),
            behaviour=behaviour,
        )
    except DeviceTypeError as exc:
        raise DiscoveryError(f"{spec.model}'s layout is not expressible as a device type: {exc}") from None
    _compare_image(dtype, config, notes)
    functions, io, memory = _platform(guest, bdf)
    version = guest.qemu.qmp("query-version")
    numbers = version.get("qemu", {})
    text = (
        f"{numbers.get('major')}.{numbers.get('minor')}.{numbers.get('micro')} {version.get('package', '')}"
    )
    return Discovery(spec, dtype, functions, io, memory, False, opaque, tuple(notes), text.strip())


def _bars(probe: _Prober, notes: list[str]) -> tuple[BarSpec | None, ...]:
    bars: list[BarSpec | None] = []
    slot = 0
    while slot < 6:
        reg = 0x10 + 4 * slot
        _, sized = probe.size_bar(reg)
        if sized == 0:
            bars.append(None)
            slot += 1
            continue
        if sized & 0x1:
            mask = sized & 0xFFFF_FFFC
            size = (~mask & 0xFFFF_FFFF) + 1 if mask else 0
            if mask & 0xFFFF_0000 != 0xFFFF_0000:
                size &= 0xFFFF
            bars.append(BarSpec(BarKind.IO, size))
            slot += 1
            continue
        kind = (sized >> 1) & 0x3
        prefetchable = bool(sized & 0x8)
        if kind == 0x2 and slot < 5:
            _, upper = probe.size_bar(reg + 4)
            mask = (upper << 32 | (sized & 0xFFFF_FFF0)) & (1 << 64) - 1
            bars += [BarSpec(BarKind.MEM64, ((~mask) & (1 << 64) - 1) + 1, prefetchable), None]
            slot += 2
            continue
        if kind != 0:
            notes.append(f"BAR{slot} has memory type {kind:#x}; taken as a 32-bit BAR")
        mask = sized & 0xFFFF_FFF0
        bars.append(BarSpec(BarKind.MEM32, (~mask & 0xFFFF_FFFF) + 1, prefetchable))
        slot += 1
    while bars and bars[-1] is None:
        bars.pop()
    return tuple(bars)


def _rom(guest: Guest, probe: _Prober, bdf: Bdf, notes: list[str]) -> RomSpec | None:
    _, sized = probe.size_bar(0x30, 0xFFFF_F800)
    mask = sized & 0xFFFF_F800
    if not mask:
        return None
    size = (~mask & 0xFFFF_FFFF) + 1
    guest.config_batch(bdf.packed, [(0x30, 4, SCRATCH | 1), (0x04, 2, 0x2)])
    try:
        contents = guest.read_block(SCRATCH, size)
    finally:
        guest.config_batch(bdf.packed, [(0x04, 2, 0), (0x30, 4, 0)])
    return RomSpec(size, contents.rstrip(b"\x00"))


def _capabilities(probe: _Prober, config: bytes, notes: list[str]) -> tuple[tuple[Capability, ...], set[int]]:
    caps: list[Capability] = []
    claimed: set[int] = set()
    offsets: list[int] = []
    pointer = config[0x34] & 0xFC if config[0x06] & 0x10 else 0
    while pointer and pointer not in offsets and len(offsets) < 48:
        offsets.append(pointer)
        pointer = config[pointer + 1] & 0xFC
    expected = 0x40
    for k, offset in enumerate(offsets):
        cap_id = config[offset]
        limit = offsets[k + 1] if k + 1 < len(offsets) and offsets[k + 1] > offset else 0x100
        length = min(_cap_length(cap_id, config, offset, limit), 0x100 - offset)
        if cap_id not in (0x01, 0x05, 0x10, 0x11, 0x09):
            while length > 2 and not config[offset + length - 1]:
                length -= 1
        if offset != expected:
            notes.append(
                f"capability {k} (ID {cap_id:#04x}) is at {offset:#x}; R-CFG-008 packs it at {expected:#x}"
            )
        expected = (offset + length + 3) & ~3
        body_offsets = list(range(offset + 2, offset + length))
        writable = bytearray(len(body_offsets))
        rw1c = bytearray(len(body_offsets))
        if cap_id in _PROBED_CAPS:
            probes = [_CAP_PROBE_VALUE.get((cap_id, o - offset), 0xFF) for o in body_offsets]
            masks = probe.byte_masks(body_offsets, probes)
            for i, o in enumerate(body_offsets):
                writable[i], rw1c[i] = masks[o]
        else:
            notes.append(f"capability ID {cap_id:#04x} at {offset:#x} was not probed; taken as read-only")
        caps.append(Capability(cap_id, bytes(config[offset + 2 : offset + length]), bytes(writable),
                               bytes(rw1c)))  # fmt: skip
        claimed.update(range(offset, offset + length))
    return tuple(caps), claimed


def _packed(capabilities: tuple[Capability, ...]) -> set[int]:
    """Bytes the model gives the capabilities: from 0x40, each dword aligned after the previous one."""
    used: set[int] = set()
    offset = 0x40
    for cap in capabilities:
        used.update(range(offset, offset + 2 + len(cap.body)))
        offset = (offset + 2 + len(cap.body) + 3) & ~3
    return used


def _registers(
    probe: _Prober, config: bytes, claimed: set[int], model_claimed: set[int], express: bool, notes: list[str]
) -> tuple[Register, ...]:
    """Device-specific bytes outside capabilities, as registers the model can express.

    Bytes where the model would place a capability (packed from 0x40, R-CFG-008)
    are left out too when QEMU puts its capabilities elsewhere: the suite then
    reports the difference in layout.
    """
    free = [o for o in range(0x40, 0x100) if o not in claimed and o not in model_claimed]
    masks = probe.byte_masks(free, [0xFF] * len(free))
    registers: list[Register] = []
    for dword in range(0x40, 0x100, 4):
        span = [o for o in range(dword, dword + 4) if o in masks]
        if not span:
            continue
        rw = [masks[o][0] for o in span]
        c = [masks[o][1] for o in span]
        values = [config[o] for o in span]
        if len(span) == 4 and all(m == 0xFF for m in rw):
            registers.append(Register(dword, 4, RegisterClass.RW, int.from_bytes(bytes(values), "little")))
            continue
        if len(span) == 4 and all(m == 0xFF for m in c):
            registers.append(Register(dword, 4, RegisterClass.RW1C, int.from_bytes(bytes(values), "little")))
            continue
        for o, w, one, v in zip(span, rw, c, values, strict=True):
            if w == 0xFF:
                registers.append(Register(o, 1, RegisterClass.RW, v))
            elif one == 0xFF:
                registers.append(Register(o, 1, RegisterClass.RW1C, v))
            elif w or one:
                notes.append(f"config byte {o:#x} has partial masks (RW {w:#04x}, RW1C {one:#04x}): "
                             "not expressible, taken as read-only")  # fmt: skip
                registers.append(Register(o, 1, RegisterClass.RO, v))
            elif v:
                registers.append(Register(o, 1, RegisterClass.RO, v))
    scratch = sorted(
        o for r in registers if r.cls is RegisterClass.RW for o in range(r.offset, r.offset + r.width)
    )
    if scratch:
        runs = _runs(scratch)
        notes.append(
            f"configuration bytes {runs} no capability claims are read/write (QEMU's PCI core makes every "
            "such byte from 0x40 writable); declared as RW device-specific registers (R-CFG-012), so "
            "R-CFG-010 is not checked on them"
        )
    if express:
        for dword in range(0x100, 0x1000, 4):
            value = int.from_bytes(config[dword : dword + 4], "little")
            if value:
                registers.append(Register(dword, 4, RegisterClass.RO, value))
        notes.append("extended configuration space (0x100-0xfff) was read but not probed: taken as read-only")
    return tuple(registers)


def _runs(offsets: list[int]) -> str:
    """``0x4e-0xff, ...`` for sorted offsets."""
    out: list[list[int]] = []
    for o in offsets:
        if out and o == out[-1][1] + 1:
            out[-1][1] = o
        else:
            out.append([o, o])
    return ", ".join(f"{a:#x}-{b:#x}" if a != b else f"{a:#x}" for a, b in out)


def _compare_image(dtype: DeviceType, config: bytes, notes: list[str]) -> None:
    """Note every power-on byte the model's image of the type would show differently."""
    image = layout(dtype, StatusRegister.RW1C).image
    for offset, (want, got) in enumerate(zip(image, config, strict=False)):
        if want != got and not 0x10 <= offset < 0x28 and offset not in (0x30, 0x31, 0x32, 0x33):
            notes.append(
                f"power-on config byte {offset:#x} is {got:#04x}; the model's image says {want:#04x}"
            )


def _platform(guest: Guest, own: Bdf) -> tuple[tuple[Bdf, ...], tuple[range, ...], tuple[range, ...]]:
    """Other functions on bus 0 and the platform's I/O and memory ranges."""
    functions = []
    probes = [(Bdf(0, d, f), (d << 3 | f) << 12) for d in range(32) for f in range(8)]
    requests = [f"readw {ECAM_BASE + offset:#x}" for _, offset in probes]
    replies = guest.qemu.qtest(requests)
    for (bdf, _), reply in zip(probes, replies, strict=True):
        if int(reply.split()[1], 16) != 0xFFFF and bdf != own:
            functions.append(bdf)
    text = guest.qemu.qmp("human-monitor-command", **{"command-line": "info mtree -f"})
    io, memory = parse_mtree(str(text))
    return tuple(functions), io, memory


def parse_mtree(text: str) -> tuple[tuple[range, ...], tuple[range, ...]]:
    """Platform-owned ranges of the ``I/O`` and ``memory`` address spaces in ``info mtree -f``."""
    spaces: dict[str, list[range]] = {"io": [], "memory": []}
    current: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("FlatView"):
            current = None
        elif stripped.startswith("AS "):
            name = stripped.split('"')[1] if '"' in stripped else ""
            if name == "I/O":
                current = "io"
            elif name == "memory" and current is None:
                current = "memory"
        elif current is not None and (m := _MTREE_LINE.match(line)):
            start, end, region = int(m.group(1), 16), int(m.group(2), 16), m.group(5)
            if region not in _PLATFORM_PASS:
                spaces[current].append(range(start, end + 1))
    io = _merge([*spaces["io"], RESET_CONTROL])
    return io, _merge(spaces["memory"])


def _merge(ranges: list[range]) -> tuple[range, ...]:
    out: list[range] = []
    for r in sorted(ranges, key=lambda r: r.start):
        if out and r.start <= out[-1].stop:
            out[-1] = range(out[-1].start, max(out[-1].stop, r.stop))
        else:
            out.append(r)
    return tuple(out)


# ------------------------------------------------------------------ migration


def migrate_out(qemu: QemuProcess, path: Path) -> None:
    """Save the whole paused machine to ``path`` through QMP ``migrate``."""
    qemu.qmp("migrate", uri=f"exec:cat > {_shell_quote(path)}")
    _await_migration(qemu, f"migration to {path}")


def migrate_in(qemu: QemuProcess, path: Path) -> None:
    """Load ``path`` into a QEMU started with ``-incoming defer``; it stays paused."""
    qemu.qmp("migrate-incoming", uri=f"exec:cat {_shell_quote(path)}")
    _await_migration(qemu, f"incoming migration from {path}")


def _await_migration(qemu: QemuProcess, what: str) -> None:
    """Poll ``query-migrate`` until the migration completes (about 4 s at most); raise if it fails."""
    for _ in range(2000):
        status = qemu.qmp("query-migrate").get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise QemuError(f"{what} {status}: {qemu.stderr_tail()}")
        time.sleep(0.002)
    raise QemuError(f"{what} did not complete")


def _shell_quote(path: Path) -> str:
    text = str(path)
    if not re.fullmatch(r"[A-Za-z0-9_./+-]+", text):
        raise QemuError(f"unsafe path for a migration URI: {text!r}")
    return text


def _migrates(spec: DeviceSpec) -> bool:
    """Whether the device's configuration space survives migration (it has migration state)."""
    source = QemuProcess.spawn(spec.machine_args())
    target: QemuProcess | None = None
    try:
        guest = prepare(source)
        guest.config_write(spec.bdf.packed, 0x3C, 1, 0x5A)
        stream = source.workdir / "probe.mig"
        migrate_out(source, stream)
        target = QemuProcess.spawn(spec.machine_args(), incoming=True)
        target.connect()
        migrate_in(target, stream)
        restored = prepare(target)
        return restored.config_read(spec.bdf.packed, 0x3C, 1) == 0x5A
    except QemuError:
        return False
    finally:
        source.kill()
        if target is not None:
            target.kill()


def rom_signature(rom: RomSpec | None) -> str:
    """Short description of a ROM for reports."""
    if rom is None:
        return "none"
    head = struct.unpack_from("<H", rom.contents.ljust(2, b"\x00"))[0]
    return f"{rom.size // 1024} KiB, {len(rom.contents)} bytes of contents, signature {head:#06x}"
