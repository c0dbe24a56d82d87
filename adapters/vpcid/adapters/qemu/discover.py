"""Discover a QEMU PCI device model's type from the guest's side, and the machine around it.

Discovery runs on its own throw-away QEMU, paused, with the device at a fixed
address on bus 0 of a q35 (default) or pc machine:

1. the device type: :func:`vpcid.conformance.discovery.discover_type`, the
   one discovery of the suite, through :class:`QtestPort` - ECAM on q35;
   0xCF8/0xCFC on pc, which has no ECAM (0xCF8 is put back after every
   batch, and offsets from 0x100 read all ones: a pc guest cannot reach
   them); the ROM is read through a temporary mapping at 0xE0000000;
2. the BAR behaviour of the models this package describes
   (:data:`KNOWN_BEHAVIOURS`), and BAR ranges no behaviour describes
   (opaque: the suite never accesses them);
3. the platform: every other PCI function on bus 0, and every I/O and memory
   range QEMU's flat memory map (``info mtree -f``) gives to something other
   than the PCI host bridge's configuration ports and ECAM window;
4. migration: whether configuration space survives a ``migrate`` to a file
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

from vpcid.adapters.qemu.behaviours import (
    DEVCAP_FLR,
    EXPRESS_ID,
    EduBehaviour,
    FunctionLevelReset,
    TestdevBehaviour,
    ZeroBehaviour,
)
from vpcid.adapters.qemu.qtest import Guest, QemuError, QemuProcess, QemuUnavailable
from vpcid.conformance.discovery import ConfigAccess, Discovered, DiscoveryError, discover_type
from vpcid.model import Bdf, DeviceTypeError, VpcidError
from vpcid.model.behaviour import BarBehaviour
from vpcid.model.devicetype import BarSpec, ConfigSpace, DeviceType, RomSpec

DEVICE_BDF = Bdf(0, 4, 0)
"""Where the device under test sits unless ``addr=`` says otherwise."""
ECAM_BASE = 0xB000_0000
"""q35's PCIEXBAR window, enabled by the adapter at every start (firmware's job)."""
PCIEXBAR = 0x60
RAM = "128M"
SCRATCH = 0xE000_0000
"""Where discovery maps the ROM for a moment to read it (inside the PCI hole of both machines)."""
MACHINES = ("q35", "pc")
"""Machines the adapter drives: q35 (ICH9, PCI Express, ECAM) and pc (i440FX/PIIX3, conventional PCI)."""
WAIVER_DIR = Path(__file__).parent / "waivers"
CF8, CFC = 0xCF8, 0xCFC
_SUFFIX = {1: "b", 2: "w", 4: "l"}

_MTREE_LINE = re.compile(r"^\s*([0-9a-f]+)-([0-9a-f]+) \(prio (-?\d+), ([^)]*)\): (\S+)")
_PLATFORM_PASS = {"io", "pci-conf-idx", "pci-conf-data", "pcie-mmcfg-mmio"}
"""Flat-map regions that are not platform-owned: the I/O root (unassigned ports), the
configuration mechanism #1 ports (the spec's own platform window) and ECAM."""
RESET_CONTROL = range(0xCF9, 0xCFA)
"""The reset control register (q35's ICH9, pc's PIIX3) sits inside 0xCF8-0xCFB; it is platform-owned."""


class QemuDiscoveryError(QemuUnavailable):
    """The device's layout cannot be read or cannot be expressed as a device type."""


@dataclass(frozen=True)
class DeviceSpec:
    """``DEVICE[,option=value...]`` from ``--adapter qemu:DEVICE[,options]``.

    Options starting ``vpcid-`` are the adapter's; every other option is a
    QEMU device property passed through (``qemu:nvme,serial=deadbeef``).
    """

    model: str
    options: tuple[str, ...] = ()
    bdf: Bdf = DEVICE_BDF
    reset: bool = False
    """``vpcid-reset=on``: also declare ``reset_vm`` (QMP ``system_reset``)."""
    profile: str = "qemu"
    """``vpcid-profile=``: ``qemu`` (QEMU's variants), ``default`` (the spec's) or a manifest path."""
    machine: str = "q35"
    """``vpcid-machine=q35|pc``: the QEMU machine the device is plugged into."""
    waivers: bool = True
    """``vpcid-waivers=off``: do not declare the machine's platform waivers."""

    @classmethod
    def parse(cls, text: str | None) -> DeviceSpec:
        if not text or not text.split(",")[0]:
            raise QemuUnavailable("name a device model: --adapter qemu:DEVICE[,option=value...]")
        model, *options = [part.strip() for part in text.split(",")]
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", model):
            raise QemuUnavailable(f"{model!r} is not a QEMU device model name")
        bdf = DEVICE_BDF
        reset, waivers = False, True
        profile, machine = "qemu", "q35"
        kept: list[str] = []
        for option in options:
            key, _, value = option.partition("=")
            if key in ("vpcid-reset", "vpcid-waivers"):
                if value not in ("on", "off"):
                    raise QemuUnavailable(f"{key} is on or off")
                if key == "vpcid-reset":
                    reset = value == "on"
                else:
                    waivers = value == "on"
            elif key == "vpcid-profile":
                if not value:
                    raise QemuUnavailable("vpcid-profile is qemu, default or a profile manifest path")
                profile = value
            elif key == "vpcid-machine":
                if value not in MACHINES:
                    raise QemuUnavailable(f"vpcid-machine is {' or '.join(MACHINES)}, not {value!r}")
                machine = value
            elif key.startswith("vpcid-"):
                raise QemuUnavailable(
                    f"unknown adapter option {key!r} "
                    "(known: vpcid-reset, vpcid-profile, vpcid-machine, vpcid-waivers)"
                )
            elif key == "addr":
                device, _, function = value.partition(".")
                try:
                    bdf = Bdf(0, int(device, 16), int(function or "0", 16))
                except (ValueError, VpcidError) as exc:
                    raise QemuUnavailable(f"addr={value!r}: expected DD.F on bus 0 ({exc})") from None
            elif key in ("bus", "id"):
                raise QemuUnavailable(f"option {key}= is chosen by the adapter")
            elif not key or not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
                raise QemuUnavailable(f"{option!r} is not a device property (property=value)")
            else:
                kept.append(option)
        return cls(model, tuple(kept), bdf, reset, profile, machine, waivers)

    @property
    def label(self) -> str:
        return ",".join((self.model, *self.options))

    @property
    def device(self) -> DeviceSpec:
        """What discovery depends on: the device, its properties, its address and its machine."""
        return DeviceSpec(self.model, self.options, self.bdf, machine=self.machine)

    def machine_args(self) -> list[str]:
        device = ",".join((self.model, f"addr={self.bdf.device:02x}.{self.bdf.function}", *self.options))
        return ["-machine", self.machine, "-m", RAM, "-device", device]

    def waiver_file(self) -> Path | None:
        """The machine's platform waivers (``waivers/MACHINE.toml``), unless ``vpcid-waivers=off``."""
        path = WAIVER_DIR / f"{self.machine}.toml"
        return path if self.waivers and path.exists() else None

    @property
    def ecam_base(self) -> int | None:
        """Where the machine's ECAM window is (q35), or None (pc has none)."""
        return ECAM_BASE if self.machine == "q35" else None


def machine_of(qemu: QemuProcess) -> str:
    """The ``-machine`` a QEMU process was started with (q35 when none was given)."""
    argv = qemu.argv
    for k, arg in enumerate(argv[:-1]):
        if arg == "-machine":
            return argv[k + 1].split(",")[0]
    return "q35"


def prepare(qemu: QemuProcess) -> Guest:
    """Do what firmware would; a guest for configuration accesses that leave 0xCF8 as it was.

    q35: open ECAM (PCIEXBAR at 0xB0000000), leave 0xCF8 at its power-on zero.
    pc: nothing to open; configuration accesses go through 0xCF8/0xCFC.
    """
    qemu.connect()
    if machine_of(qemu) == "pc":
        return CamGuest(qemu)
    qemu.qtest([
        f"outl 0xcf8 {0x8000_0000 | PCIEXBAR:#x}", f"outl 0xcfc {ECAM_BASE | 1:#x}",
        f"outl 0xcf8 {0x8000_0000 | PCIEXBAR + 4:#x}", "outl 0xcfc 0x0", "outl 0xcf8 0x0",
    ])  # fmt: skip
    return Guest(qemu, ECAM_BASE)


class CamGuest(Guest):
    """A guest of a machine without ECAM (pc): configuration accesses through 0xCF8/0xCFC.

    Every batch reads 0xCF8 first and writes it back last, so the guest's own
    CONFIG_ADDRESS survives. Offsets from 0x100 read all ones and writes to
    them are dropped: configuration mechanism #1 cannot reach them.
    """

    def __init__(self, qemu: QemuProcess) -> None:
        super().__init__(qemu, 0)

    def ecam_address(self, packed_bdf: int, offset: int) -> int:
        raise QemuError("this machine has no ECAM window")

    def config_read(self, packed_bdf: int, offset: int, width: int) -> int:
        return self.config_batch(packed_bdf, [(offset, width, None)])[0]

    def config_write(self, packed_bdf: int, offset: int, width: int, value: int) -> None:
        self.config_batch(packed_bdf, [(offset, width, value)])

    def config_batch(self, packed_bdf: int, accesses: Sequence[tuple[int, int, int | None]]) -> list[int]:
        saved = int(self.qemu.qtest([f"inl {CF8:#x}"])[0].split()[1], 16)
        requests: list[str] = []
        reached: list[bool] = []
        for offset, width, value in accesses:
            reached.append(offset < 0x100)
            if offset >= 0x100:
                continue
            port = CFC + (offset & 3)
            requests.append(f"outl {CF8:#x} {0x8000_0000 | packed_bdf << 8 | offset & 0xFC:#x}")
            if value is None:
                requests.append(f"in{_SUFFIX[width]} {port:#x}")
            else:
                requests.append(f"out{_SUFFIX[width]} {port:#x} {value:#x}")
        requests.append(f"outl {CF8:#x} {saved:#x}")
        replies = iter(self.qemu.qtest(requests))
        values: list[int] = []
        for (_, width, value), inside in zip(accesses, reached, strict=True):
            if inside:
                next(replies)  # the 0xCF8 write
                reply = next(replies)
                if value is None:
                    values.append(int(reply.split()[1], 16))
            elif value is None:
                values.append((1 << (8 * width)) - 1)
        return values


class QtestPort:
    """The device under test as :func:`~vpcid.conformance.discovery.discover_type` probes it."""

    def __init__(self, guest: Guest, bdf: Bdf, label: str) -> None:
        self.guest = guest
        self.bdf = bdf
        self._label = label

    @property
    def label(self) -> str:
        return self._label

    def config_batch(self, accesses: Sequence[ConfigAccess]) -> list[int]:
        return self.guest.config_batch(self.bdf.packed, accesses)

    def rom_window(self, size: int) -> int | None:
        return SCRATCH

    def read_memory(self, address: int, length: int) -> bytes:
        return self.guest.read_block(address, length)


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

    @property
    def ecam_base(self) -> int | None:
        return self.spec.ecam_base


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


def discover(spec: DeviceSpec) -> Discovery:
    """Start a throw-away QEMU with the device, read its type and the platform, kill it."""
    qemu = QemuProcess.spawn(spec.machine_args())
    try:
        guest = prepare(qemu)
        found = _discover(spec, guest)
    except QemuError as exc:
        raise QemuDiscoveryError(f"discovering {spec.label}: {exc}") from None
    finally:
        qemu.kill()
    return dataclasses.replace(found, migratable=_migrates(spec))


def _discover(spec: DeviceSpec, guest: Guest) -> Discovery:
    bdf = spec.bdf
    port = QtestPort(guest, bdf, f"qemu:{spec.label} at {bdf} ({spec.machine})")
    try:
        found = discover_type(port, f"qemu:{spec.label}")
        behaviour, opaque = behaviour_for(spec.model, found.dtype.bars)
        found = function_level_reset(found.with_behaviour(behaviour))
    except DiscoveryError as exc:
        hint = f" (is {spec.model!r} a PCI device model?)" if "no function answers" in str(exc) else ""
        raise QemuDiscoveryError(f"{exc}{hint}") from None
    functions, io, memory = _platform(guest, bdf)
    version = guest.qemu.qmp("query-version")
    numbers = version.get("qemu", {})
    text = (
        f"{numbers.get('major')}.{numbers.get('minor')}.{numbers.get('micro')} {version.get('package', '')}"
    )
    return Discovery(spec, found.dtype, functions, io, memory, False, opaque, found.notes, text.strip())


def function_level_reset(found: Discovered) -> Discovered:
    """A PCI Express function that can do FLR (Device Capabilities bit 28) gets Initiate FLR as QEMU has
    it: writable, resetting the function (:class:`FunctionLevelReset`, R-DT-008).

    Discovery never writes the bit (it starts an action); this comes from
    QEMU's source (``pcie_cap_flr_init`` makes it writable, and
    ``pcie_cap_flr_write_config`` resets), and the type's notes say so.
    """
    t = found.dtype
    space = t.declared
    express = next((e.offset for e in t.chain if not e.extended and e.cap_id == EXPRESS_ID), None)
    if express is None or not int.from_bytes(space.image[express + 4 : express + 8], "little") & DEVCAP_FLR:
        return found
    if t.config_behaviour is not None:
        note = (
            f"Initiate FLR (config byte {express + 9:#05x} bit 7) resets the function in QEMU, but the type "
            f"already has the configuration behaviour {t.config_behaviour.name}: declared read-only"
        )
        return Discovered(t, (*found.notes, note))
    wmask = bytearray(space.wmask)
    wmask[express + 9] |= 0x80
    try:
        dtype = DeviceType.from_space(
            t.name, ConfigSpace(space.image, bytes(wmask), space.w1cmask), t.bars, t.rom, t.behaviour,
            FunctionLevelReset(),
        )  # fmt: skip
    except DeviceTypeError as exc:
        raise QemuDiscoveryError(f"{t.name}: {exc}") from None
    note = (
        f"Initiate FLR (config byte {express + 9:#05x} bit 7) was not written; from QEMU's source "
        "(pcie_cap_flr_init, pcie_cap_flr_write_config) it is declared writable, with the configuration "
        "behaviour FunctionLevelReset that resets the function's configuration space (R-DT-008)"
    )
    return Discovered(dtype, (*found.notes, note))


def _platform(guest: Guest, own: Bdf) -> tuple[tuple[Bdf, ...], tuple[range, ...], tuple[range, ...]]:
    """Other functions on bus 0 and the platform's I/O and memory ranges."""
    functions = [
        bdf
        for bdf in (Bdf(0, d, f) for d in range(32) for f in range(8))
        if bdf != own and guest.config_read(bdf.packed, 0, 2) != 0xFFFF
    ]
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
