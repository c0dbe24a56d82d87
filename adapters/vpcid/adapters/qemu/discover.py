"""Discover a QEMU PCI device model's type from the guest's side, and the machine around it.

Discovery runs on its own throw-away QEMU, paused, with the device at a fixed
address on bus 0 of a q35 (default) or pc machine, or behind one of QEMU's
bridges (``vpcid-behind=``, :data:`BRIDGE_CHAINS`): then the bridges are
numbered and their windows opened first, as firmware would
(:attr:`DeviceSpec.firmware`), and every function's type is discovered
where it sits;

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
    SwitchPortFunctionLevelReset,
    TestdevBehaviour,
    ZeroBehaviour,
)
from vpcid.adapters.qemu.qtest import Guest, QemuError, QemuProcess, QemuUnavailable
from vpcid.conformance.discovery import ConfigAccess, Discovered, DiscoveryError, discover_type
from vpcid.model import Bdf, DeviceTypeError, VpcidError
from vpcid.model.behaviour import BarBehaviour, ConfigBehaviour
from vpcid.model.catalog import MsiMultipleMessageClamp
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
EXPRESS_SLOT_IMPLEMENTED = 0x0100
"""PCI Express Capabilities register bit 8: the port has a slot."""
RESET_CONTROL = range(0xCF9, 0xCFA)
"""The reset control register (q35's ICH9, pc's PIIX3) sits inside 0xCF8-0xCFB; it is platform-owned."""


class QemuDiscoveryError(QemuUnavailable):
    """The device's layout cannot be read or cannot be expressed as a device type."""


SLOT_WITHOUT_POWER_CONTROL = "power_controller_present=off"
BRIDGE_CHAINS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "pcie-root-port": (("pcie-root-port", ("chassis=1", "slot=1", SLOT_WITHOUT_POWER_CONTROL)),),
    "pci-bridge": (("pci-bridge", ("chassis_nr=1",)),),
    "x3130": (
        ("pcie-root-port", ("chassis=1", "slot=1", SLOT_WITHOUT_POWER_CONTROL)),
        ("x3130-upstream", ()),
        ("xio3130-downstream", ("chassis=2", "slot=1", SLOT_WITHOUT_POWER_CONTROL)),
    ),
}
"""``vpcid-behind=`` -> the bridges above the device, from the root bus down (QEMU model, properties):
a PCI Express root port; a conventional PCI-to-PCI bridge; an x3130 switch (upstream and downstream port)
below a root port. The first sits at 00:04.0, each next one at 00:00.0 of the bus above it, the device on
the last one's secondary bus. The ports' slots have no power controller: with one, a guest write of
Slot Control's Power Controller Control powers the slot off and everything below stops answering
(pcie_cap_update_power in hw/pci/pcie.c), which no data manager rule describes."""
EXPRESS_ONLY = frozenset({"pcie-root-port", "x3130"})
"""Chains QEMU plugs only into a PCI Express root bus (q35)."""
ROOT_BUS = {"q35": "pcie.0", "pc": "pci.0"}
BRIDGE_IO_WINDOW = (0x6000, 0x9FFF)
"""The I/O window firmware opens on every bridge: free of the platform's ports on both machines (QEMU maps
a bridge window over the platform's I/O ports, so it must not cover 0xCF8 or the ACPI ports)."""
BRIDGE_MEMORY_WINDOW = (0xC000_0000, 0xFEBF_FFFF)
"""The memory window: the PCI hole above q35's ECAM window and below the I/O APIC."""
BRIDGE_PREFETCHABLE_WINDOW = (0x1_0000_0000, 0xFFFF_FFFE_FFFF_FFFF)
"""The 64-bit prefetchable window: everything above 4 GiB (QEMU cannot map a window ending at 2^64 - 1)."""
BRIDGE_COMMAND = 0x7
"""I/O space, memory space and bus master, as firmware leaves a bridge."""


@dataclass(frozen=True)
class BridgeSpec:
    """One bridge of a ``vpcid-behind=`` chain: its QEMU model and properties, where it sits, its qdev id."""

    model: str
    options: tuple[str, ...]
    bdf: Bdf
    qdev_id: str

    def device_arg(self, bus: str) -> str:
        place = f"addr={self.bdf.device:02x}.{self.bdf.function}"
        return ",".join((self.model, f"id={self.qdev_id}", f"bus={bus}", place, *self.options))


FirmwareWrite = tuple[Bdf, int, int, int]
"""(function, offset, width, value): a configuration write firmware makes at power-on."""


def bridge_firmware(bridge: Bdf, secondary: int, subordinate: int) -> tuple[FirmwareWrite, ...]:
    """What firmware writes to a bridge: its bus numbers, its three windows open, its command register.

    Windows: :data:`BRIDGE_IO_WINDOW`, :data:`BRIDGE_MEMORY_WINDOW` and
    :data:`BRIDGE_PREFETCHABLE_WINDOW` (a bridge without a 64-bit prefetchable
    window ignores the upper halves; read-only type nibbles ignore the writes).
    """
    io_base, io_limit = BRIDGE_IO_WINDOW
    mem_base, mem_limit = BRIDGE_MEMORY_WINDOW
    pref_base, pref_limit = BRIDGE_PREFETCHABLE_WINDOW
    return (
        (bridge, 0x18, 4, subordinate << 16 | secondary << 8 | bridge.bus),
        (bridge, 0x1C, 2, (io_limit >> 8 & 0xF0) << 8 | io_base >> 8 & 0xF0),
        (bridge, 0x20, 4, (mem_limit >> 16 & 0xFFF0) << 16 | mem_base >> 16 & 0xFFF0),
        (bridge, 0x24, 4, (pref_limit >> 16 & 0xFFF0) << 16 | pref_base >> 16 & 0xFFF0),
        (bridge, 0x28, 4, pref_base >> 32),
        (bridge, 0x2C, 4, pref_limit >> 32),
        (bridge, 0x04, 2, BRIDGE_COMMAND),
    )


def apply_firmware(guest: Guest, writes: Sequence[FirmwareWrite]) -> None:
    """Make ``writes`` in order (one batch per function, so a bridge is numbered before what is below it)."""
    for bdf, offset, width, value in writes:
        guest.config_batch(bdf.packed, [(offset, width, value)])


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
    behind: str | None = None
    """``vpcid-behind=`` one of :data:`BRIDGE_CHAINS`: the device sits below those bridges."""

    @classmethod
    def parse(cls, text: str | None) -> DeviceSpec:
        if not text or not text.split(",")[0]:
            raise QemuUnavailable("name a device model: --adapter qemu:DEVICE[,option=value...]")
        model, *options = [part.strip() for part in text.split(",")]
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", model):
            raise QemuUnavailable(f"{model!r} is not a QEMU device model name")
        slot: tuple[int, int] | None = None
        reset, waivers = False, True
        profile, machine = "qemu", "q35"
        behind: str | None = None
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
            elif key == "vpcid-behind":
                if value not in BRIDGE_CHAINS:
                    raise QemuUnavailable(f"vpcid-behind is {', '.join(BRIDGE_CHAINS)}, not {value!r}")
                behind = value
            elif key.startswith("vpcid-"):
                raise QemuUnavailable(
                    f"unknown adapter option {key!r} "
                    "(known: vpcid-reset, vpcid-profile, vpcid-machine, vpcid-waivers, vpcid-behind)"
                )
            elif key == "addr":
                slot_text, _, function_text = value.partition(".")
                try:
                    checked = Bdf(0, int(slot_text, 16), int(function_text or "0", 16))
                    slot = checked.device, checked.function
                except (ValueError, VpcidError) as exc:
                    raise QemuUnavailable(f"addr={value!r}: expected DD.F ({exc})") from None
            elif key in ("bus", "id"):
                raise QemuUnavailable(f"option {key}= is chosen by the adapter")
            elif not key or not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
                raise QemuUnavailable(f"{option!r} is not a device property (property=value)")
            else:
                kept.append(option)
        if behind in EXPRESS_ONLY and machine != "q35":
            raise QemuUnavailable(f"vpcid-behind={behind} needs a PCI Express root bus: vpcid-machine=q35")
        depth = len(BRIDGE_CHAINS[behind]) if behind is not None else 0
        number, function = slot if slot is not None else (DEVICE_BDF.device if behind is None else 0, 0)
        return cls(model, tuple(kept), Bdf(depth, number, function), reset, profile, machine, waivers, behind)

    @property
    def label(self) -> str:
        return ",".join(
            (self.model, *self.options, *([f"vpcid-behind={self.behind}"] if self.behind else []))
        )

    @property
    def device(self) -> DeviceSpec:
        """What discovery depends on: the device, its properties, its address, its machine, its bridges."""
        return DeviceSpec(self.model, self.options, self.bdf, machine=self.machine, behind=self.behind)

    @property
    def bridges(self) -> tuple[BridgeSpec, ...]:
        """The bridges above the device, from the root bus down (none without ``vpcid-behind``)."""
        chain = BRIDGE_CHAINS[self.behind] if self.behind is not None else ()
        return tuple(
            BridgeSpec(model, options, DEVICE_BDF if depth == 0 else Bdf(depth, 0, 0), f"vpcid-bridge{depth}")
            for depth, (model, options) in enumerate(chain)
        )

    @property
    def firmware(self) -> tuple[FirmwareWrite, ...]:
        """Configuration writes firmware makes at power-on: each bridge numbered (secondary: the next bus,
        subordinate: the device's bus) and its windows opened (:func:`bridge_firmware`)."""
        depth = len(self.bridges)
        return tuple(w for b in self.bridges for w in bridge_firmware(b.bdf, b.bdf.bus + 1, depth))

    def machine_args(self) -> list[str]:
        slot = f"addr={self.bdf.device:02x}.{self.bdf.function}"
        args = ["-machine", self.machine, "-m", RAM]
        bus = ROOT_BUS[self.machine]
        for bridge in self.bridges:
            args += ["-device", bridge.device_arg(bus)]
            bus = bridge.qdev_id
        place = [f"bus={bus}", slot] if self.bridges else [slot]
        return [*args, "-device", ",".join((self.model, *place, *self.options))]

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
    bridges: tuple[tuple[Bdf, DeviceType, tuple[tuple[int, range], ...]], ...] = ()
    """The bridges above the device (``vpcid-behind``), from the root bus down: where each sits, its type
    (discovered alone), its opaque BAR parts."""

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
    """Start a throw-away QEMU with the device, read its type and the platform, kill it.

    Below bridges (``vpcid-behind``): firmware numbers the buses and opens the
    windows first, then every function is probed where it sits (a root
    port's slot registers read as its populated slot makes them; discovery
    never powers the slot off, :data:`~vpcid.conformance.discovery.HAZARDS`).
    """
    qemu = QemuProcess.spawn(spec.machine_args())
    try:
        guest = prepare(qemu)
        apply_firmware(guest, spec.firmware)
        bridges = tuple(_bridge_type(spec, bridge, guest) for bridge in spec.bridges)
        found = _discover(spec, guest)
    except QemuError as exc:
        raise QemuDiscoveryError(f"discovering {spec.label}: {exc}") from None
    finally:
        qemu.kill()
    notes = [f"bridge {bdf} ({dtype.name}): {note}" for bdf, dtype, _, found_notes in bridges
             for note in found_notes]  # fmt: skip
    return dataclasses.replace(
        found,
        migratable=_migrates(spec),
        bridges=tuple(bridge[:3] for bridge in bridges),
        notes=(*found.notes, *notes),
    )


def _bridge_type(
    spec: DeviceSpec, bridge: BridgeSpec, guest: Guest
) -> tuple[Bdf, DeviceType, tuple[tuple[int, range], ...], tuple[str, ...]]:
    """One bridge's type, probed where it sits (its bus numbers and windows are written back)."""
    port = QtestPort(guest, bridge.bdf, f"qemu:{bridge.model} at {bridge.bdf} ({spec.machine})")
    try:
        found = discover_type(port, f"qemu:{bridge.model}")
        behaviour, opaque = behaviour_for(bridge.model, found.dtype.bars)
        found = function_level_reset(found.with_behaviour(behaviour))
    except DiscoveryError as exc:
        raise QemuDiscoveryError(str(exc)) from None
    return bridge.bdf, found.dtype, opaque, found.notes


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
    functions, io, memory = _platform(guest, spec.bridges[0].bdf if spec.bridges else bdf)
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
    ``pcie_cap_flr_write_config`` resets), and the type's notes say so. A
    bridge without a slot (the x3130 upstream port) gets
    :class:`SwitchPortFunctionLevelReset`, which resets its type 1 header and
    carries the MSI clamp too; a port with a slot resets its slot as well,
    which no behaviour here describes, so its bit stays read-only (noted).
    """
    t = found.dtype
    space = t.declared
    express = next((e.offset for e in t.chain if not e.extended and e.cap_id == EXPRESS_ID), None)
    if express is None or not int.from_bytes(space.image[express + 4 : express + 8], "little") & DEVCAP_FLR:
        return found
    behaviour: ConfigBehaviour = FunctionLevelReset()
    if t.bridge is not None:
        if int.from_bytes(space.image[express + 2 : express + 4], "little") & EXPRESS_SLOT_IMPLEMENTED:
            note = (
                f"Initiate FLR (config byte {express + 9:#05x} bit 7) resets the port and its slot in QEMU "
                "(pcie_cap_slot_reset), which no configuration behaviour describes: declared read-only"
            )
            return Discovered(t, (*found.notes, note))
        if t.config_behaviour is None or t.config_behaviour.name == MsiMultipleMessageClamp.name:
            behaviour = SwitchPortFunctionLevelReset()
    if t.config_behaviour is not None and behaviour.name == FunctionLevelReset.name:
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
            behaviour,
        )  # fmt: skip
    except DeviceTypeError as exc:
        raise QemuDiscoveryError(f"{t.name}: {exc}") from None
    note = (
        f"Initiate FLR (config byte {express + 9:#05x} bit 7) was not written; from QEMU's source "
        "(pcie_cap_flr_init, pcie_cap_flr_write_config) it is declared writable, with the configuration "
        f"behaviour {type(behaviour).__name__} that resets the function's configuration space (R-DT-008)"
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
        apply_firmware(guest, spec.firmware)
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
