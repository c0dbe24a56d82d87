"""Scenario cases: short, concrete operation sequences that check the spec's requirements.

A case is a body of operations with no expectations: the suite runs it on
the implementation and on the model (in the implementation's declared
profile) and compares the observations op by op. A good case is one whose
observations would differ if the implementation broke the requirement, so
bodies read back after writes, read at BAR boundaries, read old and new
addresses after a move, and so on.

Two kinds:

- **device cases** (:func:`device_cases`) exercise one device already
  present at ``Target.bdf`` of ``Target.vm``, through guest-view operations
  only (plus reset, save and restore where noted in ``needs``). They rely only
  on what the target's :class:`~vpcid.model.DeviceType` declares, so they
  also run against real devices whose types were discovered; a case whose
  feature the device lacks is not generated.
- **system cases** (:func:`system_cases`) start from an empty data manager
  right after ``init`` and create VMs, plug :data:`SUITE_TYPES` by name,
  hot-plug, snapshot and restore literal blobs (``full_api``).

Every operation of a case carries the requirement it checks (``Case.rules``;
None for set-up), and a case's requirements are those of its steps: a
failure is blamed on the rule of the step that diverged, and the steps that
passed before it still count (:mod:`vpcid.conformance.certify`). Cases that
compute nothing from the device are data, the way the WebAssembly and
consensus-specs suites keep theirs: tables of rows, each row a requirement
and its steps in a small script language (:class:`Script`,
:data:`SYSTEM_SCRIPTS`, played by :class:`_Player`). Builders remain where a
case truly computes: from the device's BARs, capabilities and registers, or
literal blobs.

Addresses used by device cases: 32-bit memory BARs and the ROM in
0xE000_0000-0xEFFF_FFFF, 64-bit memory BARs from 0x10_0000_0000, I/O BARs
in 0xC000-0xCFFF, each naturally aligned, never in the ECAM window.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import shlex
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from vpcid.conformance.devices import EXPRESS_SINK, KITCHEN_SINK, SUITE_TYPES
from vpcid.conformance.trace import Op, OpKind
from vpcid.model import Bdf, BlobError, DataManager, DeviceType, Profile
from vpcid.model import blob as blobfmt
from vpcid.model.catalog import A100, E1000, EDU, NVME
from vpcid.model.devicetype import BarKind, BarSpec
from vpcid.model.header import ChainEntry
from vpcid.model.manager import DEFAULT_ECAM_BASE
from vpcid.model.profile import BarMoveWhileDecoding

GROUPS = (
    "data-structure",
    "device-types",
    "registers",
    "configuration-space",
    "bars",
    "decode",
    "access",
    "config-mechanism",
    "ecam",
    "hot-plug",
    "reset",
    "save-restore",
    "blob",
    "errors",
    "variants",
    "bridges",
)
"""Every case group, in report order."""

SUITE_VM = 1
"""The VM id of the default targets."""


@dataclass(frozen=True)
class Target:
    """The device a single-device case exercises."""

    vm: int
    bdf: Bdf
    dtype: DeviceType
    ecam_base: int | None
    opaque: frozenset[int] = frozenset()
    """BARs whose contents the implementation declares opaque: no case accesses their contents."""
    reserved_functions: tuple[Bdf, ...] = ()
    """Platform functions of a fixed machine: no case reads them, not even by a straddling access."""


@dataclass(frozen=True)
class Case:
    """One scenario: a body of operations and the requirements it checks."""

    name: str
    group: str
    requirements: tuple[str, ...]
    description: str
    ops: tuple[Op, ...]
    needs: frozenset[OpKind]
    full_api: bool
    rules: tuple[str | None, ...] = ()
    """The requirement each operation checks, aligned with ``ops`` (None: setup of the case)."""


# ------------------------------------------------------------------ constants

CF8, CFC = 0xCF8, 0xCFC
CMD_IO, CMD_MEM, CMD_MASTER = 0x1, 0x2, 0x4
ROM_BAR, ROM = 0x30, 6
ECAM_SIZE = 256 << 20
ONES32 = 0xFFFF_FFFF
U64 = 1 << 64

_IO_START, _IO_END = 0xC000, 0xD000
_LOW_START, _LOW_END = 0xE000_0000, 0xF000_0000
_HIGH_START = 0x10_0000_0000
_GAP = {"io": 0x40, "low": 0x1000, "high": 0x1000}
_REGION = {"io": (_IO_START, _IO_END), "low": (_LOW_START, _LOW_END), "high": (_HIGH_START, U64)}


# ------------------------------------------------------------------ BARs and their addresses


@dataclass(frozen=True)
class _Bar:
    """One implemented BAR (index 0-5) or the expansion ROM (index 6) of a device type."""

    index: int
    kind: BarKind | None
    """None for the ROM."""
    size: int

    @property
    def is_rom(self) -> bool:
        return self.kind is None

    @property
    def is_io(self) -> bool:
        return self.kind is BarKind.IO

    @property
    def is64(self) -> bool:
        return self.kind is BarKind.MEM64

    @property
    def reg(self) -> int:
        """Configuration offset of the BAR's (lower) register."""
        return ROM_BAR if self.is_rom else 0x10 + 4 * self.index

    @property
    def enable(self) -> int:
        """Command bit that enables the BAR's decode."""
        return CMD_IO if self.is_io else CMD_MEM

    @property
    def region(self) -> str:
        return "io" if self.is_io else "high" if self.is64 else "low"

    @property
    def label(self) -> str:
        if self.is_rom:
            return "rom"
        return f"{'io-bar' if self.is_io else 'bar'}{self.index}"

    @property
    def probe(self) -> int:
        """Offset of the dword the cases use to check that data reaches the BAR."""
        return 4 if self.size >= 8 else 0


def _bars(dtype: DeviceType) -> list[_Bar]:
    out = [_Bar(i, spec.kind, spec.size) for i in range(6) if (spec := dtype.bar(i)) is not None]
    if dtype.rom is not None:
        out.append(_Bar(ROM, None, dtype.rom.size))
    return out


def _align(value: int, size: int) -> int:
    return (value + size - 1) // size * size


@cache
def _plan(dtype: DeviceType) -> dict[int, tuple[int, ...]]:
    """BAR index -> (primary address, alternate address), both safe and disjoint; absent if none fit.

    Memory BARs and the ROM go to 0xE000_0000-0xEFFF_FFFF (32-bit) or from
    0x10_0000_0000 (64-bit), I/O BARs to 0xC000-0xCFFF; every address is
    aligned to its BAR's size and separated from the region's start and from
    the next BAR by a gap, so that the bytes just outside a BAR decode nothing
    and still lie in the safe window.
    """
    cursor = {region: start + _GAP[region] for region, (start, _) in _REGION.items()}
    placed: dict[int, list[int]] = {}
    bars = sorted(_bars(dtype), key=lambda b: (-b.size, b.index))
    for _round in range(2):
        for bar in bars:
            if _round == 1 and bar.index not in placed:
                continue
            region = bar.region
            base = _align(cursor[region], bar.size)
            if base + bar.size > _REGION[region][1]:
                continue
            placed.setdefault(bar.index, []).append(base)
            cursor[region] = base + bar.size + _GAP[region]
    return {index: tuple(addresses) for index, addresses in placed.items()}


def _cap_spans(dtype: DeviceType) -> list[tuple[ChainEntry, range]]:
    """Each capability of both chains (R-DT-006, R-DT-007) and the bytes the cases exercise as its:
    from its header up to the next capability above it, the end of its area, or 64 bytes."""
    chain = dtype.chain
    out: list[tuple[ChainEntry, range]] = []
    for e in chain:
        area_end = dtype.config_size if e.extended else 0x100
        above = [x.offset for x in chain if x.extended == e.extended and x.offset > e.offset]
        out.append((e, range(e.offset, min(area_end, e.offset + 64, *above))))
    return out


def _declared_dword(dtype: DeviceType, dword: int) -> bool:
    """Whether any byte of the dword has a non-zero power-on value or mask (R-DT-005)."""
    space = dtype.declared
    span = slice(dword, dword + 4)
    return any(space.image[span]) or any(space.wmask[span]) or any(space.w1cmask[span])


def _unclaimed_dwords(dtype: DeviceType) -> list[int]:
    """A few dword offsets at or above 0x40 whose bytes are all read-only zero (R-CFG-010)."""
    free = [d for d in range(0x40, dtype.config_size, 4) if not _declared_dword(dtype, d)]
    if dtype.express:
        free = [d for d in free if d != 0x100]
    low = [d for d in free if d < 0x100]
    high = [d for d in free if d >= 0x100]
    picked = low[:3] + low[-1:] + high[:2] + high[-1:]
    return sorted(set(picked))


# ------------------------------------------------------------------ building bodies


class _Body:
    """The operations of one case body, each with the requirement it checks, and helpers for VM-level
    operations.

    :meth:`check` names the requirement the operations that follow check; :meth:`setup` marks the
    ones that follow as set-up (a divergence there is blamed on the operation's own rule).
    """

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.rules: list[str | None] = []
        self.rule: str | None = None

    def add(self, op: Op) -> None:
        self.ops.append(op)
        self.rules.append(self.rule)

    def check(self, rid: str) -> None:
        """The operations from here on check requirement ``rid``."""
        self.rule = rid

    def setup(self) -> None:
        """The operations from here on set the case up."""
        self.rule = None

    def create_vm(self, vm: int, ecam_base: int | None = DEFAULT_ECAM_BASE) -> None:
        self.add(Op(OpKind.CREATE_VM, vm=vm, ecam_base=ecam_base))

    def destroy_vm(self, vm: int) -> None:
        self.add(Op(OpKind.DESTROY_VM, vm=vm))

    def plug(self, vm: int, bdf: Bdf, dtype: DeviceType, ecam_base: int | None = DEFAULT_ECAM_BASE) -> _Fn:
        self.add(Op(OpKind.PLUG, vm=vm, bdf=bdf, name=dtype.name))
        return _Fn(self, vm, bdf, dtype, ecam_base)

    def unplug(self, vm: int, bdf: Bdf) -> None:
        self.add(Op(OpKind.UNPLUG, vm=vm, bdf=bdf))

    def reset_vm(self, vm: int) -> None:
        self.add(Op(OpKind.RESET_VM, vm=vm))

    def snapshot(self, vm: int, slot: str) -> None:
        self.add(Op(OpKind.SNAPSHOT, vm=vm, name=slot))

    def restore_vm(self, vm: int, slot: str = "", data: bytes = b"") -> None:
        self.add(Op(OpKind.RESTORE_VM, vm=vm, name=slot, data=data))

    def tables(self, vm: int) -> None:
        self.add(Op(OpKind.TABLES, vm=vm))

    def ior(self, vm: int, port: int, width: int = 4) -> None:
        self.add(Op(OpKind.IO_READ, vm=vm, address=port, width=width))

    def iow(self, vm: int, port: int, width: int, value: int) -> None:
        self.add(Op(OpKind.IO_WRITE, vm=vm, address=port, width=width, value=value))

    def mr(self, vm: int, address: int, width: int = 4) -> None:
        self.add(Op(OpKind.MMIO_READ, vm=vm, address=address, width=width))

    def mw(self, vm: int, address: int, width: int, value: int) -> None:
        self.add(Op(OpKind.MMIO_WRITE, vm=vm, address=address, width=width, value=value))


class _Fn:
    """Operations on one function (VM, BDF, device type), appended to a body."""

    def __init__(
        self, body: _Body, vm: int, bdf: Bdf, dtype: DeviceType, ecam_base: int | None,
        opaque: frozenset[int] = frozenset(),
    ) -> None:  # fmt: skip
        self.body = body
        self.vm = vm
        self.bdf = bdf
        self.dtype = dtype
        self.ecam_base = ecam_base
        self.opaque = opaque
        self.bars = _bars(dtype)
        self.plan = _plan(dtype)

    def check(self, rid: str) -> None:
        """The operations from here on check requirement ``rid`` (:meth:`_Body.check`)."""
        self.body.check(rid)

    def setup(self) -> None:
        """The operations from here on set the case up (:meth:`_Body.setup`)."""
        self.body.setup()

    # --- raw operations
    def cr(self, offset: int, width: int = 4) -> None:
        self.body.add(Op(OpKind.CONFIG_READ, vm=self.vm, bdf=self.bdf, address=offset, width=width))

    def cw(self, offset: int, width: int, value: int) -> None:
        self.body.add(
            Op(OpKind.CONFIG_WRITE, vm=self.vm, bdf=self.bdf, address=offset, width=width, value=value)
        )

    def ior(self, port: int, width: int = 4) -> None:
        self.body.ior(self.vm, port, width)

    def iow(self, port: int, width: int, value: int) -> None:
        self.body.iow(self.vm, port, width, value)

    def mr(self, address: int, width: int = 4) -> None:
        self.body.mr(self.vm, address, width)

    def mw(self, address: int, width: int, value: int) -> None:
        self.body.mw(self.vm, address, width, value)

    def reset(self) -> None:
        self.body.add(Op(OpKind.RESET, vm=self.vm, bdf=self.bdf))

    def save(self, slot: str) -> None:
        self.body.add(Op(OpKind.SAVE, vm=self.vm, bdf=self.bdf, name=slot))

    def restore(self, slot: str = "", data: bytes = b"") -> None:
        self.body.add(Op(OpKind.RESTORE, vm=self.vm, bdf=self.bdf, name=slot, data=data))

    # --- helpers
    def bar(self, index: int) -> _Bar:
        return next(b for b in self.bars if b.index == index)

    def placed(self, *, rom: bool = True) -> list[_Bar]:
        """BARs with a safe primary address and accessible contents (optionally without the ROM)."""
        return [
            b for b in self.bars
            if b.index in self.plan and (rom or not b.is_rom) and b.index not in self.opaque
        ]  # fmt: skip

    def movable(self) -> list[_Bar]:
        """BARs with both a primary and an alternate address, and accessible contents."""
        return [b for b in self.bars if len(self.plan.get(b.index, ())) == 2 and b.index not in self.opaque]

    def addr(self, bar: _Bar, which: int = 0) -> int:
        return self.plan[bar.index][which]

    def command(self, value: int) -> None:
        self.cw(0x04, 2, value)

    def program(self, bar: _Bar, address: int, *, rom_enable: bool = True) -> None:
        """Write a BAR's register(s) like firmware: lower dword, then upper (R-BAR-003, R-BAR-005)."""
        if bar.is_rom:
            self.cw(ROM_BAR, 4, (address & ONES32) | int(rom_enable))
            return
        self.cw(bar.reg, 4, address & ONES32)
        if bar.is64:
            self.cw(bar.reg + 4, 4, address >> 32)

    def decode(self, bars: Sequence[_Bar], which: int = 0) -> None:
        """Program ``bars`` at their primary (or alternate) addresses, then turn both decodes on."""
        for bar in bars:
            self.program(bar, self.addr(bar, which))
        self.command(CMD_IO | CMD_MEM)

    def read_reg(self, bar: _Bar) -> None:
        self.cr(bar.reg)
        if bar.is64:
            self.cr(bar.reg + 4)

    def rd(self, bar: _Bar, address: int, width: int = 4) -> None:
        """Read ``width`` bytes at ``address`` in the BAR's space (I/O or memory)."""
        if bar.is_io:
            self.ior(address, width)
        else:
            self.mr(address, width)

    def wr(self, bar: _Bar, address: int, width: int, value: int) -> None:
        if bar.is_io:
            self.iow(address, width, value)
        else:
            self.mw(address, width, value)

    def poke(self, bar: _Bar, base: int, value: int) -> None:
        self.wr(bar, base + bar.probe, 4, value)

    def peek(self, bar: _Bar, base: int) -> None:
        self.rd(bar, base + bar.probe, 4)

    def cf8_value(self, offset: int, *, enable: bool = True, bdf: Bdf | None = None) -> int:
        """The 0xCF8 value selecting ``offset`` of ``bdf`` (default: this function) (R-CAM-004)."""
        b = bdf or self.bdf
        return (
            (0x8000_0000 if enable else 0) | b.bus << 16 | b.device << 11 | b.function << 8 | (offset & 0xFC)
        )

    def cf8(self, offset: int, *, enable: bool = True, bdf: Bdf | None = None, extra: int = 0) -> None:
        self.iow(CF8, 4, self.cf8_value(offset, enable=enable, bdf=bdf) | extra)

    def ecam(self, offset: int, bdf: Bdf | None = None) -> int:
        """MMIO address of ``offset`` of ``bdf`` in the ECAM window (R-ECAM-002)."""
        assert self.ecam_base is not None
        b = bdf or self.bdf
        return self.ecam_base + (b.bus << 20 | b.device << 15 | b.function << 12 | offset)


def _make(name: str, group: str, description: str, body: _Body, *, full_api: bool) -> Case:
    """A case from a body; its requirements are those its steps check, in the order they first do."""
    assert group in GROUPS, group
    ops = tuple(body.ops)
    requirements = tuple(dict.fromkeys(rule for rule in body.rules if rule is not None))
    assert requirements, f"case {name} checks no requirement"
    needs = frozenset(op.kind for op in ops)
    return Case(name, group, requirements, description, ops, needs, full_api, tuple(body.rules))


def _absent(bdf: Bdf) -> Bdf:
    """A BDF on a bus the cases never populate."""
    return Bdf(0xFE if bdf.bus != 0xFE else 0xFD, 0x1F, 7)


# ================================================================== device cases


class _Dev:
    """Context for the device-case builders of one target."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.out: list[Case] = []
        self._body: _Body | None = None

    def start(self) -> _Fn:
        """Begin a new case body; returns the target's function handle."""
        self._body = _Body()
        t = self.target
        return _Fn(self._body, t.vm, t.bdf, t.dtype, t.ecam_base, t.opaque)

    def done(self, name: str, group: str, description: str) -> None:
        assert self._body is not None
        self.out.append(_make(name, group, description, self._body, full_api=False))
        self._body = None


# ---------------------------------------------------------------- device cases as data

Row = tuple[str | None, str] | tuple[str | None, str, str]
"""A row of a case table: the requirement its steps check (None: set-up), the steps as a script, and
optionally the condition a target must meet for the row to apply (``express``, ``conventional``)."""


@dataclass(frozen=True)
class Script:
    """A device case as data: rows of steps, each row checking one requirement (:func:`_play`).

    The steps are a small script, like the WebAssembly suite's: ``;``-separated commands on the
    target function, numbers as Python literals, widths after ``/`` (default 4):
    ``cr OFF/W``, ``cw OFF/W VALUE`` (configuration), ``ior PORT/W``, ``iow PORT/W VALUE`` (I/O),
    ``mr ADDR/W``, ``mw ADDR/W VALUE`` (MMIO), ``er OFF/W``, ``ew OFF/W VALUE`` (ECAM at the
    function's offset), ``cf8 OFF [+EXTRA]`` and ``cf8- OFF`` (0xCF8 selecting the function's
    offset, enable set or clear, EXTRA ORed in). A ``~`` before a command addresses a function no
    case populates (R-ACC-006) instead of the target.
    """

    name: str
    group: str
    description: str
    rows: tuple[Row, ...]
    needs: str = ""
    """A condition on the target for the whole case (``ecam``: it has an ECAM window)."""


def _applies(condition: str, target: Target) -> bool:
    return {
        "": True,
        "express": target.dtype.express,
        "conventional": not target.dtype.express,
        "ecam": target.ecam_base is not None,
    }[condition]


def _play(f: _Fn, script: str) -> None:
    """Append a device script's steps to ``f``'s body (see :class:`Script`)."""
    _Player(f.body, f).play(script, system=False)


class _Player:
    """Plays scripts onto a body: the device commands of :class:`Script` on the current function,
    and for system cases (:data:`SYSTEM_SCRIPTS`) the data manager's own operations too.

    System commands: ``vm VM [ecam=BASE|noecam]`` (create), ``destroy VM``, ``reset-vm VM``,
    ``tables VM``, ``snapshot VM SLOT``, ``restore-vm VM SLOT``, ``restore-vm-bytes VM TEXT``,
    ``plug VM BDF TYPE`` (also makes it the current function), ``at VM BDF TYPE`` (the current
    function, not plugged), ``unplug VM BDF``, ``@BDF`` (back to a function of the current VM
    already named), and on the current function ``reset``, ``save SLOT``, ``restore SLOT``,
    ``restore-bytes TEXT``, ``bring-up [which=N] [value=V] [limit=N]``, ``look [which=N] [noregs]``
    (:func:`_bring_up`, :func:`_look`). Words are split as a shell does, so TEXT may be quoted.
    """

    def __init__(self, body: _Body, current: _Fn | None = None) -> None:
        self.body = body
        self.current = current
        self.ecam: dict[int, int | None] = {}
        self.known: dict[tuple[int, Bdf], _Fn] = {}

    def function(self, vm: int, bdf: Bdf, type_name: str) -> _Fn:
        f = _Fn(self.body, vm, bdf, SUITE_TYPES[type_name], self.ecam.get(vm, DEFAULT_ECAM_BASE))
        self.known[(vm, bdf)] = f
        return f

    def play(self, script: str, *, system: bool) -> None:
        for command in script.split(";"):
            words = shlex.split(command)
            if system and self.system(words):
                continue
            assert self.current is not None, f"case script: no function for {command!r}"
            self.device(self.current, words, command)

    def system(self, words: list[str]) -> bool:
        """Perform one system command; False when ``words`` is not one."""
        verb, args, body = words[0], words[1:], self.body
        if verb.startswith("@"):
            assert self.current is not None
            in_vm, _, at = verb[1:].rpartition("/")
            self.current = self.known[(int(in_vm, 0) if in_vm else self.current.vm, Bdf.parse(at))]
            return True
        if verb not in ("vm", "destroy", "reset-vm", "tables", "snapshot", "restore-vm", "restore-vm-bytes",
                        "plug", "at", "unplug"):  # fmt: skip
            return self.function_command(words)
        vm = int(args[0], 0)
        if verb == "vm":
            base: int | None = DEFAULT_ECAM_BASE
            for option in args[1:]:
                base = None if option == "noecam" else int(option.removeprefix("ecam="), 0)
            self.ecam[vm] = base
            body.create_vm(vm, base)
        elif verb in ("destroy", "reset-vm", "tables"):
            {"destroy": body.destroy_vm, "reset-vm": body.reset_vm, "tables": body.tables}[verb](vm)
        elif verb in ("snapshot", "restore-vm"):
            (body.snapshot if verb == "snapshot" else body.restore_vm)(vm, args[1])
        elif verb == "restore-vm-bytes":
            body.restore_vm(vm, data=args[1].encode())
        elif verb in ("plug", "at"):
            bdf = Bdf.parse(args[1])
            if verb == "plug":
                body.add(Op(OpKind.PLUG, vm=vm, bdf=bdf, name=args[2]))
            self.current = self.function(vm, bdf, args[2])
        else:
            body.unplug(vm, Bdf.parse(args[1]))
        return True

    def function_command(self, words: list[str]) -> bool:
        """The current function's lifecycle commands and the bring-up and look-back macros."""
        verb, args, f = words[0], words[1:], self.current
        options = dict(a.split("=") for a in args if "=" in a)
        if f is None or verb not in ("reset", "save", "restore", "restore-bytes", "bring-up", "look"):
            return False
        if verb == "reset":
            f.reset()
        elif verb == "save":
            f.save(args[0])
        elif verb == "restore":
            f.restore(args[0])
        elif verb == "restore-bytes":
            f.restore(data=args[0].encode())
        elif verb == "bring-up":
            which, value, limit = (int(options.get(k, d), 0) for k, d in
                                   (("which", "0"), ("value", "0x0C0FFEE0"), ("limit", "7")))  # fmt: skip
            _bring_up(f, which=which, value=value, limit=limit)
        else:
            _look(f, which=int(options.get("which", "0"), 0), registers="noregs" not in args)
        return True

    @staticmethod
    def device(f: _Fn, words: list[str], command: str) -> None:
        """One device command on ``f`` (see :class:`Script`)."""
        verb, target = words[0], f
        if verb.startswith("~"):
            verb, target = verb[1:], _Fn(f.body, f.vm, _absent(f.bdf), f.dtype, f.ecam_base)
        if len(words) < 2:
            raise ValueError(f"case script: unknown command {command!r}")
        place, _, size = words[1].partition("/")
        number, width = int(place, 0), int(size or "4", 0)
        value = int(words[2].lstrip("+"), 0) if len(words) > 2 else 0
        if verb == "er":
            target.mr(target.ecam(number), width)
        elif verb == "ew":
            target.mw(target.ecam(number), width, value)
        elif verb in ("cr", "ior", "mr"):
            {"cr": target.cr, "ior": target.ior, "mr": target.mr}[verb](number, width)
        elif verb in ("cw", "iow", "mw"):
            {"cw": target.cw, "iow": target.iow, "mw": target.mw}[verb](number, width, value)
        elif verb in ("cf8", "cf8-"):
            f.cf8(number, enable=verb == "cf8", bdf=target.bdf, extra=value)
        else:
            raise ValueError(f"case script: unknown command {command!r}")


def _scripted(d: _Dev, script: Script) -> None:
    """Build a :class:`Script` case for ``d``'s target, if the target meets its conditions."""
    target = d.target
    if not _applies(script.needs, target):
        return
    f = d.start()
    for row in script.rows:
        rule, steps, condition = (*row, "")[:3]
        if not _applies(condition, target):
            continue
        f.setup() if rule is None else f.check(rule)
        _play(f, steps)
    d.done(script.name, script.group, script.description)


IDENTITY_HEADER = Script(
    "identity-header", "device-types",
    "the power-on header holds the type's IDs, class, header type, BAR type bits and pin",
    (
        ("R-DT-001", "cr 0x00; cr 0x04; cr 0x08; cr 0x0C"),
        ("R-BAR-008", "cr 0x10; cr 0x14; cr 0x18; cr 0x1C; cr 0x20; cr 0x24"),
        ("R-CFG-002", "cr 0x28; cr 0x2C; cr 0x30; cr 0x34; cr 0x38; cr 0x3C"),
        ("R-CFG-011", "cr 0x0E/1"),
        ("R-CFG-002", "cr 0x3D/1"),
    ),
)  # fmt: skip

CONFIGURATION_SPACE = (
    Script(
        "read-only-header-fields", "configuration-space",
        "IDs, revision, class, header type, subsystem IDs, capability pointer, pin and the fixed-zero "
        "fields keep their values when written with ones and zeros",
        (
            ("R-CFG-002", "cr 0x00; cw 0x00 0xFFFFFFFF; cr 0x00; cw 0x00 0; cr 0x00;"
                          "cr 0x08; cw 0x08 0xFFFFFFFF; cr 0x08; cw 0x08 0; cr 0x08;"
                          "cr 0x2C; cw 0x2C 0xFFFFFFFF; cr 0x2C; cw 0x2C 0; cr 0x2C"),
            ("R-CFG-003", "cw 0x0D/1 0xFF; cr 0x0D/1"),
            ("R-CFG-011", "cw 0x0E/1 0xFF; cr 0x0E/1"),
            ("R-CFG-003", "cw 0x0F/1 0xFF; cr 0x0F/1; cw 0x28 0xFFFFFFFF; cr 0x28"),
            ("R-CFG-002", "cw 0x34/1 0xFF; cr 0x34/1"),
            ("R-CFG-003", "cw 0x35/1 0xFF; cr 0x35/1; cw 0x36/2 0xFFFF; cr 0x36/2;"
                          "cw 0x38 0xFFFFFFFF; cr 0x38"),
            ("R-CFG-002", "cw 0x3D/1 0xFF; cr 0x3D/1"),
            ("R-CFG-003", "cw 0x3E/2 0xFFFF; cr 0x3E/2"),
            ("R-CFG-001", "cr 0x0C; cr 0x34; cr 0x3C"),
        ),
    ),
    Script(
        "command-and-status", "configuration-space",
        "command starts at zero and keeps exactly the type's writable bits; status shows the "
        "capability-list bit iff the type has capabilities and no write sets a bit",
        (
            ("R-CFG-004", "cr 0x04; cw 0x04/2 0xFFFF; cr 0x04/2; cw 0x04/2 0x5555; cr 0x04/2;"
                          "cw 0x04/2 0xAAAA; cr 0x04/2; cw 0x04/2 0; cr 0x04/2"),
            ("R-CFG-001", "cw 0x05/1 0xFF; cr 0x04/2; cw 0x04/1 0xFF; cr 0x04/2; cw 0x04/2 0"),
            ("R-CFG-006", "cw 0x06/2 0xFFFF; cr 0x06/2; cw 0x06/2 0xF900; cr 0x06/2"),
            ("R-CFG-005", "cw 0x06/2 0x0010; cr 0x06/2; cw 0x06/2 0; cr 0x06/2; cw 0x04 0xFFFF0000; cr 0x04;"
                          "cw 0x07/1 0xFF; cw 0x06/1 0xFF; cr 0x04"),
        ),
    ),
    Script(
        "cache-line-and-interrupt-line", "configuration-space",
        "cache line size and interrupt line start at zero, take any byte, and writes change only "
        "the bytes they cover",
        (
            ("R-CFG-007", "cr 0x0C/1; cr 0x3C/1; cw 0x0C/1 0xA5; cw 0x3C/1 0x5A; cr 0x0C; cr 0x3C;"
                          "cw 0x0C 0xFFFFFFFF; cw 0x3C 0xFFFFFFFF; cr 0x0C; cr 0x3C"),
            ("R-CFG-001", "cw 0x0C/2 0x0010; cw 0x3C/2 0x000B; cr 0x0C/1; cr 0x0D/1; cr 0x3C/2; cw 0x3C/1 0;"
                          "cr 0x3C"),
        ),
    ),
)  # fmt: skip
"""Device cases of the configuration space that compute nothing from the type."""

ABSENT_FUNCTION = Script(
    "absent-function", "access",
    "configuration reads of an empty BDF return all ones of the access width and writes are "
    "dropped, leaving present functions untouched",
    (
        ("R-ACC-006", "~cr 0x00; ~cr 0x00/2; ~cr 0x02/2; ~cr 0x03/1; ~cr 0x3C; ~cr 0x100; ~cr 0xFFC;"
                      "~cw 0x3C/1 0x5A; ~cr 0x3C/1; ~cw 0x04/2 0x7; ~cr 0x04/2"),
        ("R-DS-004", "cr 0x00; cr 0x3C/1"),
    ),
)  # fmt: skip

CONFIG_MECHANISM = (
    Script(
        "data-window", "config-mechanism",
        "0xCFC-0xCFF read and write the dword 0xCF8 selects, at the port's distance from 0xCFC",
        (
            ("R-CAM-004", "cf8 0x00; ior 0xCFC"),
            ("R-ACC-007", "ior 0xCFC/1; ior 0xCFD/1; ior 0xCFE/2; ior 0xCFF/1; ior 0xCFD/2"),
            ("R-CAM-004", "cf8 0x08; ior 0xCFC; cf8 0x2C; ior 0xCFE/2; cf8 0x3C; iow 0xCFC/1 0x5A; cr 0x3C;"
                          "iow 0xCFC 0xFFFFFFA5; ior 0xCFC; cr 0x3C"),
            ("R-CFG-001", "cf8 0x0C; iow 0xCFC/1 0x20; iow 0xCFE/1 0xFF; iow 0xCFD/2 0xFFFF; ior 0xCFC;"
                          "cr 0x0C"),
        ),
    ),
    Script(
        "address-register", "config-mechanism",
        "only dword accesses at 0xCF8 reach the address register, which keeps bit 31 and bits 23:2 "
        "(all bits when latched) and reads back what it kept",
        (
            ("R-CAM-003", "ior 0xCF8"),
            ("R-CAM-002", "iow 0xCF8 0xFFFFFFFF; ior 0xCF8; iow 0xCF8 0x7F000003; ior 0xCF8; cf8 0x00 +3;"
                          "ior 0xCF8; ior 0xCFC"),
            ("R-CAM-001", "ior 0xCF8/1; ior 0xCF8/2; ior 0xCF9/1; ior 0xCFA/2; iow 0xCF8/2 0; iow 0xCFB/1 0;"
                          "iow 0xCFA/2 0x1234; ior 0xCF8; ior 0xCFC"),
            ("R-CAM-003", "iow 0xCF8 0; ior 0xCF8"),
        ),
    ),
    Script(
        "extended-bits-and-enable", "config-mechanism",
        "0xCF8 bits 27:24 are ignored (default) or select registers 0x100-0xFFF (extends); with "
        "bit 31 clear the data window reads ones and drops writes",
        (
            (None, "cw 0x100 0x0BADCAFE", "express"),
            ("R-CAM-002", "cf8 0x00 +0x1000000; ior 0xCF8"),
            ("R-CAM-004", "ior 0xCFC; cf8 0xFC +0xF000000; ior 0xCFC; iow 0xCFC 0; cr 0xFC"),
            ("R-CAM-004", "cr 0xFFC", "express"),
            ("R-CAM-005", "cf8- 0x3C; ior 0xCF8; ior 0xCFC; ior 0xCFE/2; iow 0xCFC/1 0x77; cr 0x3C/1"),
            ("R-CAM-002", "cf8 0x3C; iow 0xCFC/1 0x66; cr 0x3C/1"),
        ),
    ),
    Script(
        "after-data-access", "config-mechanism",
        "0xCF8 keeps its value across data-window accesses (default) or reads zero after one (clear)",
        (
            ("R-CAM-007", "cf8 0x3C; ior 0xCFC; ior 0xCF8; ior 0xCFC/1; cf8 0x3C; iow 0xCFD/1 0; ior 0xCF8"),
            ("R-CAM-003", "cf8 0x3C; ior 0xCF8; ior 0xCF8"),
            ("R-CAM-007", "ior 0xCFF/1; ior 0xCFC"),
        ),
    ),
    Script(
        "absent-and-straddle", "config-mechanism",
        "an empty BDF reads all ones through 0xCFC, and an access across 0xCFB/0xCFC reaches only "
        "its window bytes (split)",
        (
            ("R-ACC-006", "~cf8 0x00; ior 0xCFC; ior 0xCFE/2; iow 0xCFC 0; ior 0xCFF/1"),
            ("R-ACC-005", "cf8 0x00; ior 0xCFA; ior 0xCFE"),
            ("R-CAM-004", "cf8 0x3C; iow 0xCFA 0x005AFFFF; cr 0x3C"),
            ("R-CAM-001", "ior 0xCF8"),
        ),
    ),
)  # fmt: skip
"""Device cases of configuration mechanism #1 (0xCF8/0xCFC)."""

ECAM_ADDRESSING = Script(
    "addressing-and-split", "ecam",
    "ECAM offsets select bus, device, function and register; accesses split at dword boundaries, "
    "lower address first",
    (
        ("R-ECAM-002", "er 0x00; er 0x02/2"),
        ("R-ECAM-003", "er 0x00/8; er 0x08/8"),
        ("R-ECAM-002", "er 0x3D/1; ew 0x3C/1 0x5A; cr 0x3C"),
        ("R-ECAM-003", "ew 0x08/8 0xFFFFFFFFFFFFFFFF; er 0x08/8; cr 0x0C"),
        ("R-ACC-002", "er 0x02/4; er 0x3B/2; ew 0x3A 0x00A50000; cr 0x3C"),
        ("R-ECAM-002", "ew 0x3C 0; er 0x3C"),
    ),
    needs="ecam",
)  # fmt: skip

CONFIG_ERRORS = Script(
    "config-access", "errors",
    "configuration accesses of a bad width, crossing a dword, past 0xFFF or with a value too wide "
    "are rejected (bad-width, misaligned, invalid-argument) and change nothing",
    (
        (None, "cw 0x3C/1 0x11"),
        ("R-ACC-001", "cr 0x3C/0; cr 0x3C/3; cr 0x3C/8; cw 0x3C/3 0x22"),
        ("R-ERR-001", "cr 0x3C"),
        ("R-ACC-003", "cr 0x02; cr 0x03/2; cr 0x3D; cr 0x3F/2; cr 0xFFF/2; cw 0x3A 0x33333333;"
                      "cw 0x3B/2 0x4444"),
        ("R-ERR-001", "cr 0x3C"),
        ("R-ERR-002", "cr 0x1000/1; cw 0x1000 0; cr -4"),
        ("R-ACC-008", "cw 0x3C/1 0x100; cw 0x3C/2 0x10000; cw 0x3C 0x100000000"),
        ("R-ERR-003", "cw 0x3C/1 -1"),
        ("R-ERR-001", "cr 0x3C"),
    ),
)  # fmt: skip


# ---------------------------------------------------------------- data structure


def _ds_windows(d: _Dev) -> None:
    """R-DS-006, R-DS-009, R-DT-004, R-ACC-009: a BAR decodes exactly its range, and moves with its data."""
    probe = d.start()
    chosen = [b for r in ("low", "high", "io") for b in [x for x in probe.movable() if x.region == r][:1]]
    for bar in chosen + [b for b in probe.movable() if b.is_rom]:
        f = d.start()
        first, second = f.addr(bar, 0), f.addr(bar, 1)
        last = bar.size - 4
        f.program(bar, first)
        f.command(bar.enable)
        if not bar.is_rom:
            f.check("R-DT-004")
            f.wr(bar, first, 4, 0x1111_0000 | bar.index)
            f.wr(bar, first + last, 4, 0x2222_0000 | bar.index)
            f.poke(bar, first, 0x3333_0000 | bar.index)
        f.check("R-DS-006")
        for a in (first - 4, first, first + last, first + bar.size):
            f.rd(bar, a)
        if bar.size >= 16 and not bar.is_rom:
            f.check("R-DT-004")
            f.rd(bar, first + 8)  # never written: reads as the behaviour's initial state
        f.check("R-DEC-010")
        f.command(0)
        f.program(bar, second)
        f.command(bar.enable)
        f.check("R-DS-009")
        for a in (first, first + last, second - 4, second, second + last, second + bar.size):
            f.rd(bar, a)
        f.check("R-ACC-009")
        f.peek(bar, second)
        f.check("R-DEC-005")
        f.read_reg(bar)
        d.done(
            f"tables-exact-{bar.label}",
            "data-structure",
            f"{bar.label} decodes exactly [base, base+size) and, moved while disabled, only at its new "
            "base, carrying its contents at the same offsets",
        )


def _ds_all_bars(d: _Dev) -> None:
    """R-DS-006, R-DS-009: every BAR decoding at once, each at its own address, each first and last byte."""
    f = d.start()
    bars = f.placed()
    if len(bars) < 2:
        return
    f.command(0)
    for bar in bars:
        f.program(bar, f.addr(bar))
    f.check("R-DEC-002")
    f.command(CMD_IO | CMD_MEM)
    f.setup()
    for n, bar in enumerate(bars):
        if not bar.is_rom:
            f.poke(bar, f.addr(bar), 0xA000_0000 | n)
    for bar in bars:
        base = f.addr(bar)
        f.check("R-DEC-001" if bar.is_io else "R-DS-006")
        f.peek(bar, base)
        f.rd(bar, base, 1)
        f.check("R-DS-009")
        f.rd(bar, base + bar.size - 1, 1)
        f.rd(bar, base + bar.size, 1)
    d.done(
        "tables-all-bars",
        "data-structure",
        "all BARs decode at once, each only over its own range, and each keeps its own data",
    )


# ---------------------------------------------------------------- device types


def _dt_bar_data(d: _Dev) -> None:
    """R-DT-003, R-DT-004: accesses routed to a BAR reach its behaviour with offsets from the base."""
    f = d.start()
    bars = f.placed(rom=False)
    if not bars:
        return
    f.command(0)
    for bar in bars:
        f.program(bar, f.addr(bar))
    f.command(CMD_IO | CMD_MEM)
    behaviour = "R-DT-003" if d.target.dtype.behaviour is not None else "R-DT-004"
    for n, bar in enumerate(bars):
        base = f.addr(bar)
        f.check(behaviour)
        f.peek(bar, base)
        f.poke(bar, base, 0x5EED_0000 | n)
        f.peek(bar, base)
        f.rd(bar, base, 4)
        f.check("R-ACC-009")
        f.rd(bar, base + bar.size - 4, 4)
        f.wr(bar, base + bar.size - 4, 4, 0x0BAD_F00D)
        f.rd(bar, base + bar.size - 4, 4)
        f.rd(bar, base + bar.probe, 2)
    d.done(
        "bar-behaviour",
        "device-types",
        "each BAR's accesses reach the type's behaviour (memory-like by default) at the right offsets",
    )


# ---------------------------------------------------------------- configuration space


def _cfg_capabilities(d: _Dev) -> None:
    """R-CFG-008, R-DT-006..R-DT-008, R-CFG-001: both capability chains and each capability's masks."""
    dtype = d.target.dtype
    caps = _cap_spans(dtype)
    if not any(not e.extended for e, _ in caps):
        f = d.start()
        f.check("R-DT-006")
        f.cr(0x34, 1)
        f.check("R-CFG-005")
        f.cr(0x06, 2)
        f.check("R-CFG-008")
        f.cr(0x40)
        f.cw(0x40, 4, ONES32)
        f.cr(0x40)
        d.done(
            "capability-list-empty",
            "configuration-space",
            "without a capability list status bit 4 is clear and nothing in 0x40-0xff links one",
        )
    hook = dtype.config_behaviour is not None
    for k, (entry, span) in enumerate(caps):
        dwords = list(range(span.start, span.stop, 4))
        for part in range(0, len(dwords), 6):
            chunk = dwords[part : part + 6]
            f = d.start()
            f.check("R-DT-007" if entry.extended else "R-DT-006")
            if k == 0 and part == 0:
                f.cr(0x34, 1)
                f.cr(0x06, 2)
            if part == 0:
                f.cr(entry.offset, 4 if entry.extended else 2)
            for value in (ONES32, 0, 0x5AA5_5AA5):
                for dw in chunk:
                    f.check("R-DT-005")
                    f.cr(dw)
                    f.check("R-DT-008" if hook else "R-CFG-001")
                    f.cw(dw, 4, value)
                    f.cr(dw)
            f.check("R-CFG-008")
            for o in entry.header_bytes:
                f.cw(o, 1, 0xFF)
            f.cr(entry.offset, 4 if entry.extended else 2)
            suffix = f"-part{part // 6}" if len(dwords) > 6 else ""
            kind = "extended-" if entry.extended else ""
            d.done(
                f"{kind}capability-{k}-id-{entry.cap_id:02x}-at-{entry.offset:03x}{suffix}",
                "configuration-space",
                f"{kind}capability {k} (ID {entry.cap_id:#04x}) sits at {entry.offset:#x} in the chain with "
                "read-only ID and next bytes, and its bytes follow their writable and RW1C masks"
                + (" and the type's configuration behaviour" if hook else ""),
            )


MSI_CAPABILITY = 0x05
"""Capability ID of MSI, whose Multiple Message Enable the ``msi-mme-clamp`` behaviour clamps."""


def _cfg_msi_clamp(d: _Dev) -> None:
    """R-DT-008: a type's ``msi-mme-clamp`` behaviour sets a Multiple Message Enable above Multiple
    Message Capable to Multiple Message Capable, and leaves every value up to it alone: each value of
    the field is written with MSI enabled, then with MSI disabled, and the control word read back."""
    dtype = d.target.dtype
    behaviour = dtype.config_behaviour
    if behaviour is None or behaviour.name != "msi-mme-clamp":
        return
    for entry in dtype.chain:
        if entry.extended or entry.cap_id != MSI_CAPABILITY:
            continue
        control = entry.offset + 2
        f = d.start()
        for enable in (1, 0):
            for requested in range(8):
                f.check("R-DT-008")
                f.cw(control, 2, requested << 4 | enable)
                f.cr(control, 2)
        f.cw(control, 2, 0)
        d.done(
            f"msi-mme-clamp-at-{entry.offset:02x}",
            "configuration-space",
            f"the MSI capability at {entry.offset:#x}: with MSI enabled, a Multiple Message Enable above "
            "Multiple Message Capable reads back as Multiple Message Capable, and every other value "
            "as written (the type's msi-mme-clamp configuration behaviour)",
        )


def _cfg_declared_bytes(d: _Dev) -> None:
    """R-DT-005, R-CFG-001: every declared dword from 0x40 outside the chains follows its bytes' masks."""
    dtype = d.target.dtype
    in_caps = {o for _, span in _cap_spans(dtype) for o in span}
    dwords = [dw for dw in range(0x40, dtype.config_size, 4)
              if _declared_dword(dtype, dw) and not in_caps & set(range(dw, dw + 4))]  # fmt: skip
    for part in range(0, len(dwords), 10):
        f = d.start()
        for value in (ONES32, 0, 0xA55A_A55A):
            f.check("R-DT-005" if value == ONES32 else "R-CFG-001")
            for dw in dwords[part : part + 10]:
                f.cw(dw, 4, value)
                f.cr(dw)
        d.done(
            f"declared-bytes-{dwords[part]:03x}",
            "configuration-space",
            "declared bytes outside the header and the capabilities keep their power-on values until "
            "written and then follow their writable and RW1C masks",
        )


def _cfg_power_on(d: _Dev) -> None:
    """R-DT-005: every dword of the configuration space reads the type's power-on bytes, before any
    write (the catalogue's and the definitions' bytes, capability bodies included, byte for byte)."""
    dwords = range(0, d.target.dtype.config_size, 4)
    for part in range(0, len(dwords), 56):  # a case stays short: 1 KiB of space each
        f = d.start()
        f.check("R-DT-005")
        for dw in dwords[part : part + 56]:
            f.cr(dw)
        what = "every dword of the configuration space reads its power-on value before any write"
        d.done(f"power-on-space-{dwords[part]:03x}", "configuration-space", what)


def _cfg_size(d: _Dev) -> None:
    """R-CFG-009, R-CFG-010: bytes past the function's space read all ones; unclaimed bytes read zero."""
    f = d.start()
    dtype = d.target.dtype
    f.check("R-CFG-009")
    if not dtype.express:
        for offset, width in (
            (0x100, 1),
            (0x100, 2),
            (0x100, 4),
            (0x102, 2),
            (0x103, 1),
            (0x800, 4),
            (0xFFC, 4),
            (0xFFF, 1),
        ):
            f.cr(offset, width)
        f.cw(0x100, 4, 0x1234_5678)
        f.cr(0x100)
        f.cw(0xFFC, 4, 0)
        f.cr(0xFFC)
    f.check("R-CFG-010")
    for dw in _unclaimed_dwords(dtype):
        f.cr(dw)
        f.cw(dw, 4, ONES32)
        f.cr(dw)
        f.cw(dw + 3, 1, 0xFF)
        f.cr(dw + 2, 2)
    if len(f.body.ops) < 3:
        return
    d.done(
        "space-size-and-unclaimed-bytes",
        "configuration-space",
        f"a {dtype.config_size}-byte function reads all ones beyond its space and zero at unclaimed "
        "bytes, ignoring writes to both",
    )


def _cfg_registers(d: _Dev) -> None:
    """R-CFG-012, R-CFG-001: device-specific registers follow their class (RO, RW, RW1C, reserved)."""
    regs = d.target.dtype.registers
    for part in range(0, len(regs), 5):
        f = d.start()
        for reg in regs[part : part + 5]:
            full = (1 << (8 * reg.width)) - 1
            f.check("R-CFG-012")
            f.cr(reg.offset, reg.width)
            for value in (0x5A5A_5A5A & full, full, 0):
                f.cw(reg.offset, reg.width, value)
                f.cr(reg.offset, reg.width)
            if reg.width > 1:
                f.check("R-CFG-001")
                f.cw(reg.offset, 4 if reg.width == 4 else reg.width, full)
                f.cw(reg.offset, 1, 0xA5)
                f.cr(reg.offset, reg.width)
        suffix = f"-{part // 5}" if len(regs) > 5 else ""
        classes = ", ".join(sorted({r.cls.value for r in regs[part : part + 5]}))
        d.done(
            f"device-specific-registers{suffix}",
            "configuration-space",
            f"device-specific registers ({classes}) start at their initial values and follow their "
            "class on every write",
        )


# ---------------------------------------------------------------- BAR registers


def _bar_registers(d: _Dev) -> None:
    """R-BAR-001..R-BAR-003, R-BAR-005..R-BAR-008: sizing, type bits and dropped low bits of each BAR."""
    f0 = d.start()
    for bar in f0.bars:
        f = d.start()
        f.check("R-BAR-008")
        f.read_reg(bar)
        if bar.is_rom:
            f.check("R-BAR-001")
            for value in (0xFFFF_FFFE, ONES32, 0x7FE, 0):
                f.cw(ROM_BAR, 4, value)
                f.cr(ROM_BAR)
            f.check("R-BAR-007")
            if bar.index in f.plan:
                f.cw(ROM_BAR, 4, f.addr(bar) | 0x7FF)
                f.cr(ROM_BAR)
                f.cr(ROM_BAR, 1)
                f.cr(ROM_BAR + 2, 2)
            f.cw(ROM_BAR, 4, 0)
            f.cr(ROM_BAR)
            d.done(
                "register-rom",
                "bars",
                "the ROM BAR sizes as its address bits at and above the ROM size plus the enable bit, "
                "with bits 10:1 reading zero",
            )
            continue
        f.check("R-BAR-001")
        f.cw(bar.reg, 4, ONES32)
        f.cr(bar.reg)
        f.check("R-BAR-005" if bar.is64 else "R-BAR-006" if bar.is_io else "R-BAR-003")
        if bar.is64:
            f.cw(bar.reg + 4, 4, ONES32)
            f.read_reg(bar)
        f.cw(bar.reg, 4, 0)
        f.cr(bar.reg)
        if bar.is64:
            f.cw(bar.reg + 4, 4, 0)
            f.cr(bar.reg + 4)
        f.check("R-BAR-003")
        if bar.index in f.plan:
            base = f.addr(bar)
            junk = (bar.size - 1) & ONES32
            f.cw(bar.reg, 4, (base & ONES32) | junk)
            f.cr(bar.reg)
            f.cr(bar.reg, 1)
            f.cr(bar.reg + 2, 2)
            if bar.is64:
                f.cw(bar.reg + 4, 4, (base >> 32) | ((bar.size - 1) >> 32))
                f.cr(bar.reg + 4)
        f.check("R-BAR-002")
        f.cw(bar.reg, 4, 0xF)
        f.cr(bar.reg)
        d.done(
            f"register-{bar.label}",
            "bars",
            f"{bar.label} ({bar.kind}, {bar.size:#x} bytes) reads its type bits, sizes as ~(size-1) "
            "and drops written address bits below its size",
        )


def _bar_unimplemented(d: _Dev) -> None:
    """R-BAR-004: unimplemented BAR slots read zero and ignore writes."""
    dtype = d.target.dtype
    slots = [
        i
        for i in range(6)
        if dtype.bar(i) is None
        and not (i > 0 and (p := dtype.bar(i - 1)) is not None and p.kind is BarKind.MEM64)
    ]
    if not slots:
        return
    f = d.start()
    f.check("R-BAR-004")
    for i in slots:
        f.cr(0x10 + 4 * i)
        f.cw(0x10 + 4 * i, 4, ONES32)
        f.cr(0x10 + 4 * i)
        f.cw(0x10 + 4 * i, 2, 0xC001)
        f.cr(0x10 + 4 * i)
    d.done(
        "unimplemented-slots",
        "bars",
        "BAR slots the type does not implement read zero and ignore writes",
    )


def _bar_io_high_bits(d: _Dev) -> None:
    """R-BAR-006, R-DEC-006: an I/O BAR keeps bits 31:16 but decodes only below 64 KiB."""
    f = d.start()
    bars = [b for b in f.placed(rom=False) if b.is_io]
    if not bars:
        return
    bar = bars[0]
    base = f.addr(bar)
    f.check("R-BAR-006")
    f.cw(bar.reg, 4, 0x0001_0000 | base)
    f.cr(bar.reg)
    f.check("R-DEC-006")
    f.command(CMD_IO)
    f.wr(bar, base + bar.probe, 4, 0x1234_5678)
    f.peek(bar, base)
    f.setup()
    f.command(0)
    f.cw(bar.reg, 4, base)
    f.cr(bar.reg)
    f.command(CMD_IO)
    f.check("R-DEC-005")
    f.peek(bar, base)
    f.cw(bar.reg, 4, 0xFFFF_0000 | base)
    f.cr(bar.reg)
    f.peek(bar, base)
    d.done(
        f"high-address-bits-{bar.label}",
        "bars",
        "an I/O BAR keeps written bits 31:16 and does not decode while its address is at or above 64 KiB",
    )


def _bar_rom(d: _Dev) -> None:
    """R-BAR-007: ROM contents, zero past their end, writes ignored; absent ROM reads zero."""
    f = d.start()
    rom = d.target.dtype.rom
    f.check("R-BAR-007")
    if rom is None:
        f.cr(ROM_BAR)
        f.cw(ROM_BAR, 4, ONES32)
        f.cr(ROM_BAR)
        f.cw(ROM_BAR, 4, 0xE000_0001)
        f.cr(ROM_BAR)
        f.cr(ROM_BAR + 1, 1)
        d.done(
            "rom-absent",
            "bars",
            "without an expansion ROM the ROM BAR reads zero and ignores writes",
        )
        return
    bar = f.bar(ROM)
    if ROM not in f.plan:
        return
    base = f.addr(bar)
    f.setup()
    f.program(bar, base)
    f.check("R-DEC-003")
    f.command(CMD_MEM)
    f.mr(base, 4)
    f.check("R-BAR-007")
    f.mr(base, 8)
    f.mr(base + 1, 2)
    end = len(rom.contents)
    for offset in sorted({max(end - 4, 0), end & ~3, rom.size - 8}):
        if offset + 8 <= rom.size:
            f.mr(base + offset, 8)
    f.mw(base, 4, 0xDEAD_BEEF)
    f.mw(base + rom.size - 4, 4, 0xDEAD_BEEF)
    f.mr(base)
    f.mr(base + rom.size - 4)
    f.mr(base + rom.size)
    d.done(
        "rom-contents",
        "bars",
        "a decoding ROM reads its contents, zero past their end, and ignores writes",
    )


# ---------------------------------------------------------------- decode


def _dec_enable(d: _Dev) -> None:
    """R-DEC-001, R-DEC-002, R-ACC-004: a BAR decodes only while its command bit is set."""
    for kind, bit, other, req in (
        ("io", CMD_IO, CMD_MEM, "R-DEC-001"),
        ("memory", CMD_MEM, CMD_IO, "R-DEC-002"),
    ):
        f = d.start()
        bars = [b for b in f.placed(rom=False) if b.is_io == (kind == "io")]
        if not bars:
            continue
        for bar in bars:
            f.program(bar, f.addr(bar))
        f.check("R-ACC-004")
        for bar in bars:
            f.poke(bar, f.addr(bar), 0x0D15_AB1E)  # dropped: nothing decodes yet
            f.peek(bar, f.addr(bar))
        f.check(req)
        f.command(other | CMD_MASTER)
        for bar in bars:
            f.peek(bar, f.addr(bar))
        f.command(bit)
        for n, bar in enumerate(bars):
            f.peek(bar, f.addr(bar))
            f.poke(bar, f.addr(bar), 0xE4AB_1E00 | n)
            f.peek(bar, f.addr(bar))
        f.command(0)
        for bar in bars:
            f.peek(bar, f.addr(bar))
        f.check("R-DEC-009")
        f.command(bit | other)
        for bar in bars:
            f.peek(bar, f.addr(bar))
        name = "io-bar-enable" if kind == "io" else "memory-enable"
        d.done(
            name,
            "decode",
            f"{kind} BARs decode only while command bit {bit.bit_length() - 1} is set; data written "
            "while they do not decode is dropped",
        )


def _dec_rom_enable(d: _Dev) -> None:
    """R-DEC-003: the ROM decodes only while command memory space and its enable bit are both set."""
    f = d.start()
    if d.target.dtype.rom is None or ROM not in f.plan:
        return
    bar = f.bar(ROM)
    base = f.addr(bar)
    f.check("R-DEC-003")
    f.program(bar, base, rom_enable=False)
    f.command(CMD_MEM)
    f.mr(base)
    f.command(0)
    f.program(bar, base, rom_enable=True)
    f.mr(base)
    f.command(CMD_IO)
    f.mr(base)
    f.command(CMD_MEM)
    f.mr(base)
    f.mr(base + 4)
    f.check("R-BAR-007")
    f.cw(ROM_BAR, 1, 0)  # clear the enable bit only (the address bytes are untouched)
    f.cr(ROM_BAR)
    f.check("R-DEC-003")
    f.mr(base)
    f.cw(ROM_BAR, 1, 1)
    f.mr(base)
    d.done(
        "rom-enable",
        "decode",
        "the ROM decodes only while both command bit 1 and its enable bit are set",
    )


def _dec_address_zero(d: _Dev) -> None:
    """R-DEC-004: a BAR whose address is zero does not decode (its contents stay)."""
    f = d.start()
    bars = f.placed(rom=False)
    if not bars:
        return
    bar = bars[0]
    base = f.addr(bar)
    f.program(bar, base)
    f.command(bar.enable)
    f.poke(bar, base, 0x2E40_0000)
    f.peek(bar, base)
    f.command(0)
    f.program(bar, 0)
    f.read_reg(bar)
    f.check("R-DEC-004")
    f.command(bar.enable)
    f.peek(bar, base)
    f.check("R-DEC-010")
    f.command(0)
    f.program(bar, base)
    f.command(bar.enable)
    f.peek(bar, base)
    d.done(
        f"address-zero-{bar.label}",
        "decode",
        "a BAR programmed to address zero decodes nowhere; programmed back, it shows its old data",
    )


def _dec_move_while_decoding(d: _Dev) -> None:
    """R-DEC-005 (V-BAR-MOVE): writing the register of a decoding BAR, then re-enabling decode."""
    f0 = d.start()
    chosen: list[_Bar] = []
    for region in ("low", "high", "io"):
        chosen += [b for b in f0.movable() if b.region == region and not b.is_rom][:1]
    for bar in chosen[:1] + [b for b in f0.movable() if b.is_rom]:
        f = d.start()
        first, second = f.addr(bar, 0), f.addr(bar, 1)
        f.program(bar, first)
        f.command(bar.enable)
        if not bar.is_rom:
            f.poke(bar, first, 0x4D0F_E000 | bar.index)
        f.peek(bar, first)
        f.check("R-DEC-005")
        f.program(bar, second)
        f.read_reg(bar)
        f.peek(bar, first)
        f.peek(bar, second)
        f.check("R-DEC-009")
        f.command(bar.enable | CMD_MASTER)  # decode stays enabled: not a re-enable
        f.peek(bar, first)
        f.peek(bar, second)
        f.check("R-DEC-010")
        f.command(0)
        f.peek(bar, first)
        f.peek(bar, second)
        f.check("R-DEC-005")
        f.command(bar.enable)
        f.peek(bar, first)
        f.peek(bar, second)
        f.read_reg(bar)
        d.done(
            f"move-while-decoding-{bar.label}",
            "decode",
            f"rewriting {bar.label} while it decodes moves it at once (default), on the next decode "
            "enable (deferred), or not at all (ignored)",
        )


def _dec_64bit_halves(d: _Dev) -> None:
    """R-DEC-007: a 64-bit BAR written one dword at a time decodes at the half-updated address."""
    f0 = d.start()
    for bar in [b for b in f0.movable() if b.is64][:2]:
        f = d.start()
        first, second = f.addr(bar, 0), f.addr(bar, 1)
        half = (first & ~ONES32) | (second & ONES32)
        f.program(bar, first)
        f.command(CMD_MEM)
        f.poke(bar, first, 0x64B1_7000 | bar.index)
        f.check("R-DEC-007")
        f.cw(bar.reg, 4, second & ONES32)
        for a in sorted({first, half, second}):
            f.peek(bar, a)
        f.check("R-DEC-005")
        f.cw(bar.reg + 4, 4, second >> 32)
        for a in sorted({first, half, second}):
            f.peek(bar, a)
        f.check("R-BAR-005")
        f.read_reg(bar)
        f.command(0)
        f.cw(bar.reg + 4, 4, first >> 32)
        f.cw(bar.reg, 4, first & ONES32)
        f.command(CMD_MEM)
        f.peek(bar, first)
        d.done(
            f"64bit-halves-{bar.label}",
            "decode",
            "a decoding 64-bit BAR written lower dword then upper dword decodes at the half-updated "
            "address in between",
        )


def _dec_other_writes(d: _Dev) -> None:
    """R-DEC-009: configuration writes that touch neither command nor BARs, and BAR data, never reroute."""
    f = d.start()
    bars = f.placed(rom=False)
    if not bars:
        return
    bar = bars[0]
    base = f.addr(bar)
    f.program(bar, base)
    f.command(bar.enable)
    f.poke(bar, base, 0x0F0F_0F0F)
    writes: list[tuple[int, int, int]] = [
        (0x0C, 1, 0x10),
        (0x3C, 1, 0x0B),
        (0x06, 2, 0xFFFF),
        (0x2C, 4, 0),
        (0x28, 4, ONES32),
    ]
    writes += [(e.offset, 4, ONES32) for e, _ in _cap_spans(d.target.dtype)[:2]]
    writes += [(r.offset, r.width, (1 << (8 * r.width)) - 1) for r in d.target.dtype.registers[:2]]
    f.check("R-DEC-009")
    for offset, width, value in writes:
        f.cw(offset, width, value)
        f.peek(bar, base)
    f.wr(bar, base, 4, 0x0000_0000)
    f.check("R-DEC-010")
    f.command(bar.enable)  # rewriting the same command value is not a new enable
    f.peek(bar, base)
    f.read_reg(bar)
    d.done(
        f"routing-unchanged-{bar.label}",
        "decode",
        "writes to other configuration fields and to BAR contents leave routing unchanged",
    )


def _dec_overlap_rom(d: _Dev) -> None:
    """R-DEC-008 (V-OVERLAP): a ROM enabled on top of a decoding memory BAR of the same function."""
    f = d.start()
    if ROM not in f.plan:
        return
    rom = f.bar(ROM)
    mems = [b for b in f.placed(rom=False) if b.region == "low"]
    if not mems:
        return
    bar = mems[0]
    big = bar if bar.size >= rom.size else rom
    at = f.addr(big)
    f.program(bar, at)
    f.program(rom, at, rom_enable=False)
    f.command(CMD_MEM)
    f.mw(at, 4, 0x0E41_A900)
    f.mr(at)
    f.check("R-DEC-008")
    f.cw(ROM_BAR, 4, at | 1)  # the ROM begins decoding after the BAR
    f.mr(at)
    f.mr(at + 4)
    f.check("R-BAR-007")
    f.mw(at, 4, 0x0E41_A911)
    f.read_reg(bar)
    f.cr(ROM_BAR)
    f.check("R-DEC-003")
    f.cw(ROM_BAR, 4, at)  # ROM disabled again: only the BAR decodes
    f.mr(at)
    d.done(
        f"overlap-rom-{bar.label}",
        "decode",
        "where the ROM and a BAR of the same function overlap, the BAR wins (lowest-bdf: ROM last) "
        "or the ROM (last-mapped), and configuration space is unchanged",
    )


def _dec_overlap_bars(d: _Dev) -> None:
    """R-DEC-008 (V-OVERLAP): two BARs of one function made to overlap by moving the higher one."""
    f0 = d.start()
    for region in ("io", "low", "high"):
        bars = [b for b in f0.movable() if b.region == region and not b.is_rom]
        if len(bars) < 2:
            continue
        low_i, high_i = bars[0], bars[1]
        f = d.start()
        at = f.addr(low_i if low_i.size >= high_i.size else high_i, 0)
        other = f.addr(high_i, 1)
        off = max(low_i.probe, high_i.probe) if min(low_i.size, high_i.size) >= 8 else 0
        f.program(low_i, at)
        f.program(high_i, other)
        f.command(low_i.enable)
        f.wr(low_i, at + off, 4, 0x1000_0000 | low_i.index)
        f.wr(high_i, other + off, 4, 0x2000_0000 | high_i.index)
        f.check("R-DEC-008")
        f.program(high_i, at)  # moved onto the lower BAR while decoding
        f.rd(low_i, at + off)
        f.wr(low_i, at + off + 0, 2, 0x3333)
        f.read_reg(low_i)
        f.read_reg(high_i)
        f.check("R-DEC-005")
        f.command(0)
        f.program(high_i, other)
        f.command(low_i.enable)
        f.rd(low_i, at + off)
        f.rd(high_i, other + off)
        d.done(
            f"overlap-{low_i.label}-{high_i.label}",
            "decode",
            f"when {high_i.label} is moved onto {low_i.label}, the lower index wins by default and "
            "the most recently mapped under last-mapped",
        )
        return


# ---------------------------------------------------------------- access


def _first(f: _Fn, region: str) -> _Bar | None:
    bars = [b for b in f.placed(rom=False) if b.region == region]
    return bars[0] if bars else None


def _acc_byte_order(d: _Dev) -> None:
    """R-ACC-007, R-ACC-001: values are little-endian at every allowed width."""
    f = d.start()
    f.check("R-ACC-007")
    f.cw(0x3C, 2, 0xFF5A)
    for width in (1, 2, 4):
        f.cr(0x3C, width)
    bars = [b for r in ("low", "high", "io") if (b := _first(f, r)) is not None][:2]
    f.setup()
    f.decode(bars)
    for bar in bars:
        base = f.addr(bar) + bar.probe
        f.check("R-ACC-007")
        f.wr(bar, base, 4, 0x4433_2211)
        f.rd(bar, base)
        for k in range(4):
            f.rd(bar, base + k, 1)
        f.rd(bar, base, 2)
        f.rd(bar, base + 2, 2)
        end = f.addr(bar) + bar.size
        f.check("R-ACC-001")
        for width in (1, 2, 4, 8) if not bar.is_io else (1, 2):
            f.wr(bar, end - width, width, (1 << (8 * width)) - 2)
            f.rd(bar, end - width, width)
        f.check("R-DT-004")
        if not bar.is_io and bar.size >= 16:
            f.mw(f.addr(bar) + 8, 8, 0x8877_6655_4433_2211)
            f.mr(f.addr(bar) + 8, 8)
            f.mr(f.addr(bar) + 12, 4)
            f.mw(f.addr(bar) + 12, 1, 0xEE)
            f.mr(f.addr(bar) + 8, 8)
    d.done(
        "byte-order-and-widths",
        "access",
        "byte k of an access is bits 8k+7:8k of its value, for configuration, I/O and MMIO accesses "
        "of every allowed width",
    )


def _acc_unmapped(d: _Dev) -> None:
    """R-ACC-004 (V-UNMAPPED-MMIO): unmapped reads return ones (or zeros for MMIO); writes vanish."""
    f = d.start()
    bars = [b for r in ("low", "high", "io") if (b := _first(f, r)) is not None]
    if not bars:
        return
    for bar in bars:
        base = f.addr(bar)
        f.setup()
        f.program(bar, base)
        widths = (1, 2, 4) if bar.is_io else (1, 2, 4, 8)
        f.check("R-ACC-004")
        for w in widths:
            f.rd(bar, base, w)
        f.wr(bar, base, 4, 0x1111_1111)
    f.check("R-DEC-002")
    f.command(CMD_IO | CMD_MEM)
    f.check("R-ACC-004")
    for bar in bars:
        f.rd(bar, f.addr(bar), 4)
        f.rd(bar, f.addr(bar) + bar.size, 4)
    d.done(
        "unmapped",
        "access",
        "reads nothing decodes return all ones (MMIO: zeros under unmapped_mmio_read=zeros) and "
        "writes nothing decodes are dropped",
    )


def _acc_straddle_edges(d: _Dev) -> None:
    """R-ACC-005 (V-STRADDLE): accesses that run off either end of a BAR."""
    f = d.start()
    bars = [b for r in ("low", "io", "high") if (b := _first(f, r)) is not None][:2]
    if not bars:
        return
    f.decode(bars)
    for bar in bars:
        base, size = f.addr(bar), bar.size
        f.setup()
        f.wr(bar, base, 4, 0x0302_0100)
        f.wr(bar, base + size - 4, 4, 0x7F7E_7D7C)
        f.check("R-ACC-005")
        f.rd(bar, base + size - 2, 4)
        f.rd(bar, base - 2, 4)
        f.rd(bar, base - 1, 2)
        f.wr(bar, base + size - 2, 4, 0xAAAA_BBBB)
        f.wr(bar, base - 2, 4, 0xCCCC_DDDD)
        f.check("R-ACC-009")
        f.rd(bar, base + size - 4, 4)
        f.rd(bar, base, 4)
        f.check("R-ACC-004")
        if not bar.is_io:
            f.mr(base + size - 4, 8)
            f.mr(base - 4, 8)
    d.done(
        "straddle-edges",
        "access",
        "an access running off a BAR is split into its decoded and unmapped runs (default), treated "
        "as unmapped (reject) or served from its start address only (start-address)",
    )


def _acc_straddle_adjacent(d: _Dev) -> None:
    """R-ACC-005 (V-STRADDLE), R-ACC-009: an access across two adjacent BARs reaches both."""
    f0 = d.start()
    for region in ("low", "io", "high"):
        bars = sorted((b for b in f0.placed() if b.region == region), key=lambda b: (-b.size, b.index))
        if len(bars) < 2:
            continue
        big, small = bars[0], bars[1]
        f = d.start()
        at = f.addr(big)
        nxt = at + big.size
        if nxt + small.size > _REGION[region][1]:
            continue
        f.program(big, at)
        f.program(small, nxt)
        f.command(CMD_IO | CMD_MEM)
        if not big.is_rom:
            f.wr(big, nxt - 4, 4, 0x4433_2211)
        if not small.is_rom:
            f.wr(small, nxt, 4, 0x8877_6655)
        f.check("R-ACC-005")
        f.rd(big, nxt - 2, 4)
        f.rd(big, nxt - 1, 2)
        f.rd(big, nxt - 3, 4)
        if not big.is_io:
            f.mr(nxt - 4, 8)
        f.check("R-ACC-009")
        f.wr(big, nxt - 2, 4, 0xDDCC_BBAA)
        f.rd(big, nxt - 4, 4)
        f.rd(small, nxt, 4)
        d.done(
            f"straddle-{big.label}-{small.label}",
            "access",
            f"an access across adjacent {big.label} and {small.label} is split between them in "
            "ascending address order (default)",
        )


def _acc_unaligned(d: _Dev) -> None:
    """R-ACC-002 (V-ALIGN): unaligned I/O and MMIO accesses inside one BAR."""
    f = d.start()
    bars = [b for r in ("low", "high", "io") if (b := _first(f, r)) is not None]
    bars = [b for b in bars if b.size >= 16 or b.is_io]
    if not bars:
        return
    f.decode(bars)
    for bar in bars:
        base = f.addr(bar)
        f.check("R-ACC-002")
        if bar.size >= 8:
            f.wr(bar, base + 1, 4, 0x4433_2211)
            f.rd(bar, base + 1, 4)
            f.rd(bar, base + 3, 2)
            f.rd(bar, base, 4)
            f.rd(bar, base + 4, 4)
        else:
            f.wr(bar, base + 1, 2, 0x2211)
            f.rd(bar, base + 1, 2)
            f.rd(bar, base, 4)
        f.check("R-ACC-007")
        if not bar.is_io:
            f.mw(base + 4, 8, 0x0102_0304_0506_0708)
            f.mr(base + 4, 8)
            f.mr(base + 2, 8)
            f.mr(base + 8, 8)
    d.done(
        "unaligned",
        "access",
        "unaligned accesses inside a BAR are performed (default) or rejected as misaligned "
        "(alignment=natural)",
    )


# ---------------------------------------------------------------- configuration mechanism #1


def _ecam_space(d: _Dev) -> None:
    """R-ECAM-001, R-ECAM-003, R-CFG-009, R-ACC-006: the window's bounds, past the space, empty BDFs."""
    base = d.target.ecam_base
    if base is None:
        return
    f = d.start()
    e = f.ecam
    f.check("R-CFG-009" if not d.target.dtype.express else "R-ECAM-003")
    for offset, width in ((0x100, 4), (0x100, 8), (0xFFC, 4), (0xFFF, 1), (0x7FE, 4)):
        f.mr(e(offset), width)
    f.mw(e(0x100), 4, 0x1357_9BDF)
    f.mr(e(0x100), 4)
    f.cr(0x100)
    f.check("R-ECAM-003")
    for reg in d.target.dtype.registers:
        if reg.offset >= 0x100:
            f.mr(e(reg.offset), reg.width)
            f.mw(e(reg.offset), reg.width, (1 << (8 * reg.width)) - 1)
            f.mr(e(reg.offset), reg.width)
    absent = _absent(d.target.bdf)
    f.check("R-ACC-006")
    f.mr(e(0x00, absent), 4)
    f.mr(e(0x00, absent), 8)
    f.mw(e(0x3C, absent), 1, 0x5A)
    f.mr(e(0x3C, absent), 1)
    f.check("R-ECAM-001")
    f.mr(base - 4, 4)
    f.mr(base + ECAM_SIZE, 4)
    f.check("R-ACC-005")
    if Bdf(0xFF, 0x1F, 7) not in d.target.reserved_functions:
        f.mr(base + ECAM_SIZE - 4, 8)  # the last function's last dword, then unmapped
    if Bdf(0, 0, 0) not in d.target.reserved_functions:
        f.mr(base - 4, 8)  # unmapped, then 00:00.0 offset 0
    f.check("R-ACC-004")
    f.mw(base + ECAM_SIZE, 4, 0x1234_5678)
    f.mr(base + ECAM_SIZE, 4)
    d.done(
        "window-bounds-and-absent",
        "ecam",
        "the ECAM window covers exactly 256 MiB; through it, offsets past the function's space and "
        "empty BDFs read all ones and drop writes",
    )


# ---------------------------------------------------------------- errors


def _err_space(d: _Dev) -> None:
    """R-ACC-001, R-ACC-008, R-ERR-001..R-ERR-003: bad I/O and MMIO accesses are rejected, with no effect."""
    f = d.start()
    f.cf8(0x00)
    f.check("R-ACC-001")
    for port, width in ((CFC, 8), (CFC, 3), (CFC, 0)):
        f.ior(port, width)
    for port, width in ((0x1_0000, 1), (0xFFFF, 2), (0xFFFD, 4), (-1, 1)):
        f.ior(port, width)
    f.ior(0xFFFC, 4)
    f.ior(0xFFFF, 1)
    f.iow(0xFFFF, 2, 0)
    f.check("R-ACC-008")
    f.iow(CF8, 4, 1 << 32)
    f.iow(CF8, 4, -1)
    f.iow(CF8, 2, 0x1_0000)
    f.check("R-ERR-001")
    f.ior(CF8, 4)
    bar = _first(f, "low") or _first(f, "high")
    at = f.addr(bar) if bar is not None else _LOW_START
    f.setup()
    if bar is not None:
        f.program(bar, at)
        f.command(CMD_MEM)
        f.mw(at, 4, 0x600D_600D)
    f.check("R-ERR-003")
    for width in (16, 3, 0):
        f.mr(at, width)
    f.check("R-ACC-008")
    f.mw(at, 8, 1 << 64)
    f.mw(at, 1, 0x100)
    f.mw(at, 4, -1)
    f.check("R-ERR-001")
    f.mr(at, 4)
    f.check("R-ERR-002")
    f.mr(U64 - 4, 8)
    f.mr(U64, 1)
    f.mr(-8, 8)
    f.check("R-ACC-001")
    f.mr(U64 - 8, 8)
    f.mr(U64 - 1, 1)
    d.done(
        "io-and-mmio-access",
        "errors",
        "I/O and MMIO accesses of a bad width, outside their space or with a value too wide are "
        "rejected and change nothing; the last bytes of each space are accessible",
    )


# ---------------------------------------------------------------- reset


def _rst_config(d: _Dev) -> None:
    """R-RST-001, R-RST-002, R-BAR-008: a function reset restores power-on configuration and empties data."""
    f = d.start()
    bars = f.placed()
    for bar in bars:
        f.program(bar, f.addr(bar))
    f.command(0xFFFF)
    f.cw(0x0C, 1, 0x10)
    f.cw(0x3C, 1, 0x0B)
    spans = _cap_spans(d.target.dtype)
    cap_dwords = [dw for _, span in spans for dw in range(span.start, span.stop, 4)][:6]
    for dw in cap_dwords:
        f.cw(dw, 4, ONES32)
    regs = d.target.dtype.registers[:4]
    for reg in regs:
        f.cw(reg.offset, reg.width, (1 << (8 * reg.width)) - 1)
    data = [b for b in bars if not b.is_rom][:3]
    for n, bar in enumerate(data):
        f.poke(bar, f.addr(bar), 0xDA7A_0000 | n)
    f.check("R-RST-001")
    f.reset()
    f.cr(0x04)
    f.cr(0x0C)
    f.cr(0x3C)
    f.check("R-BAR-008")
    for bar in f.bars:
        f.read_reg(bar)
    f.check("R-RST-001")
    for dw in cap_dwords:
        f.cr(dw)
    for reg in regs:
        f.cr(reg.offset, reg.width)
    for bar in bars:
        f.peek(bar, f.addr(bar))
    f.setup()
    f.decode(data)
    f.check("R-RST-002")
    for bar in data:
        f.peek(bar, f.addr(bar))
    d.done(
        "function-reset",
        "reset",
        "a function reset brings command, BARs, ROM BAR, cache line, interrupt line, capabilities and "
        "registers back to power-on values, removes every decode and empties the BARs' data",
    )


# ---------------------------------------------------------------- save / restore


def _sr_round_trip(d: _Dev) -> None:
    """R-SR-001, R-SR-002, R-SR-008, R-DS-005: save, change everything, restore, save again."""
    f = d.start()
    bars = [b for b in f.movable() if not b.is_rom][:3]
    f.decode(bars)
    for n, bar in enumerate(bars):
        f.poke(bar, f.addr(bar), 0x5A7E_0000 | n)
    f.cw(0x3C, 1, 0x0B)
    f.check("R-BLOB-003")
    f.save("before")
    f.check("R-SR-001")
    f.save("again")
    f.cr(0x3C, 1)
    for bar in bars:
        f.peek(bar, f.addr(bar))
    f.setup()
    f.cw(0x3C, 1, 0x0C)
    f.command(0)
    f.decode(bars, 1)
    for n, bar in enumerate(bars):
        f.poke(bar, f.addr(bar, 1), 0x0DD0_0000 | n)
    f.check("R-SR-002")
    f.restore("before")
    f.cr(0x04, 2)
    f.cr(0x3C, 1)
    f.check("R-DS-005")
    for bar in bars:
        f.read_reg(bar)
        f.peek(bar, f.addr(bar))
        f.peek(bar, f.addr(bar, 1))
    f.check("R-SR-008")
    f.save("after")
    d.done(
        "round-trip",
        "save-restore",
        "restoring a saved blob brings back configuration, decode addresses and data, and saving "
        "again gives the same bytes",
    )


def _sr_power_on(d: _Dev) -> None:
    """R-SR-002, R-RST-001: restoring a power-on blob, and restoring after a reset."""
    f = d.start()
    bars = f.placed(rom=False)[:2]
    f.check("R-SR-001")
    f.save("power-on")
    f.setup()
    f.decode(bars)
    for bar in bars:
        f.poke(bar, f.addr(bar), 0xB10B_0001)
    f.check("R-SR-001")
    f.save("programmed")
    f.check("R-SR-002")
    f.restore("power-on")
    f.cr(0x04)
    for bar in bars:
        f.read_reg(bar)
        f.peek(bar, f.addr(bar))
    f.reset()
    f.restore("programmed")
    f.cr(0x04)
    for bar in bars:
        f.peek(bar, f.addr(bar))
    f.check("R-SR-008")
    f.save("programmed-again")
    d.done(
        "power-on-and-after-reset",
        "save-restore",
        "a power-on blob restores a quiet device, and a programmed blob restores over a reset one",
    )


def _sr_decode_order(d: _Dev) -> None:
    """R-SR-002, R-DEC-008: restored BARs begin decoding in ascending index (visible under last-mapped)."""
    f0 = d.start()
    for region in ("io", "low", "high"):
        bars = [b for b in f0.movable() if b.region == region and not b.is_rom]
        if len(bars) < 2:
            continue
        lo, hi = bars[0], bars[1]
        f = d.start()
        at = f.addr(lo if lo.size >= hi.size else hi, 0)
        off = 4 if min(lo.size, hi.size) >= 8 else 0
        f.program(lo, f.addr(lo, 1))
        f.program(hi, at)
        f.command(lo.enable)
        f.wr(lo, f.addr(lo, 1) + off, 4, 0x1010_1010)
        f.wr(hi, at + off, 4, 0x2020_2020)
        f.check("R-DEC-008")
        f.program(lo, at)  # moved onto hi while decoding: lo begins decoding last
        f.rd(lo, at + off)
        f.save("overlapping")
        f.check("R-SR-002")
        f.restore("overlapping")  # both begin decoding again, lo first, hi last
        f.rd(lo, at + off)
        f.save("restored")
        d.done(
            f"restore-decode-order-{lo.label}-{hi.label}",
            "save-restore",
            "after a restore, overlapping BARs of one function resolve as if they began decoding in "
            "ascending index order (visible under last-mapped)",
        )
        return


# ---------------------------------------------------------------- variants


def _var_probe(d: _Dev) -> None:
    """R-VAR-001..R-VAR-003: one short probe per variant axis a guest can observe on this device."""
    f = d.start()
    f.check("R-VAR-003")  # the axes this case is sensitive to are listed in its vector's manifest
    f.cf8(0x00, extra=0x3 | 1 << 24)  # V-CF8-LOW, V-CF8-EXT
    f.check("R-VAR-001")
    f.ior(CF8, 4)
    f.ior(CFC, 4)  # V-CF8-EXT: offset 0x100 under extends
    f.ior(CF8, 4)  # V-CF8-CLEAR
    bar = _first(f, "low") or _first(f, "high")
    if bar is not None:
        base = f.addr(bar)
        f.check("R-VAR-002")
        f.mr(base, 4)  # V-UNMAPPED-MMIO
        f.program(bar, base)
        f.command(CMD_MEM)
        f.mw(base + bar.size - 4, 4, 0xA1B2_C3D4)
        f.mr(base + bar.size - 2, 4)  # V-STRADDLE (and V-ALIGN)
        f.mr(base - 2, 4)
        f.mr(base + 2, 4)  # V-ALIGN
        if len(f.plan.get(bar.index, ())) == 2:
            f.program(bar, f.addr(bar, 1))  # V-BAR-MOVE
            f.mr(base + bar.size - 4, 4)
            f.mr(f.addr(bar, 1) + bar.size - 4, 4)
            f.read_reg(bar)
    d.done(
        "axis-probe",
        "variants",
        "a guest-visible probe of every variant axis: the observations match the model only in the "
        "declared profile, every axis not declared taking its default",
    )


_DEVICE_CASES: tuple[Callable[[_Dev], None] | Script, ...] = (
    _ds_windows,
    _ds_all_bars,
    IDENTITY_HEADER,
    _dt_bar_data,
    *CONFIGURATION_SPACE,
    _cfg_capabilities,
    _cfg_msi_clamp,
    _cfg_declared_bytes,
    _cfg_power_on,
    _cfg_size,
    _cfg_registers,
    _bar_registers,
    _bar_unimplemented,
    _bar_io_high_bits,
    _bar_rom,
    _dec_enable,
    _dec_rom_enable,
    _dec_address_zero,
    _dec_move_while_decoding,
    _dec_64bit_halves,
    _dec_other_writes,
    _dec_overlap_rom,
    _dec_overlap_bars,
    _acc_byte_order,
    _acc_unmapped,
    _acc_straddle_edges,
    _acc_straddle_adjacent,
    _acc_unaligned,
    ABSENT_FUNCTION,
    *CONFIG_MECHANISM,
    ECAM_ADDRESSING,
    _ecam_space,
    CONFIG_ERRORS,
    _err_space,
    _rst_config,
    _sr_round_trip,
    _sr_power_on,
    _sr_decode_order,
    _var_probe,
)


def device_cases(target: Target) -> list[Case]:
    """Cases about the one device at ``target.bdf`` of VM ``target.vm`` (body operations only).

    The runner first executes ``init`` and, for full-API adapters, creates
    the VM (with ``target.ecam_base``) and plugs ``target.dtype`` at
    ``target.bdf``. Features the type lacks produce no case.
    """
    d = _Dev(target)
    for entry in _DEVICE_CASES:
        if isinstance(entry, Script):
            _scripted(d, entry)
        else:
            entry(d)
    __import__("vpcid.conformance.variant_cases", fromlist=["_"]).variant_device_cases(d)
    return d.out


# ================================================================== system cases

KS_BDF = Bdf(0, 3, 0)
NIC_BDF = Bdf(0, 2, 0)
EXP_BDF = Bdf(0, 4, 0)
GPU_BDF = Bdf(0, 5, 0)
EDU_BDF = Bdf(0, 7, 0)
VM2 = 2
MIGRATED_NIC_BDF = Bdf(0x01, 0x13, 0x5)
"""Where snapshot-migration puts its NIC: bus, device and function bits all in use (R-SR-006)."""


class _Sys:
    """Collects system cases."""

    def __init__(self) -> None:
        self.out: list[Case] = []

    def add(self, name: str, group: str, description: str, body: _Body) -> None:
        self.out.append(_make(name, group, description, body, full_api=True))


def _vm_with(
    body: _Body, vm: int, *devices: tuple[Bdf, DeviceType], ecam_base: int | None = DEFAULT_ECAM_BASE
) -> list[_Fn]:
    body.create_vm(vm, ecam_base)
    return [body.plug(vm, bdf, dtype, ecam_base) for bdf, dtype in devices]


def _bring_up(f: _Fn, *, which: int = 0, value: int = 0x0C0F_FEE0, limit: int = 7) -> None:
    """Program the first ``limit`` placed BARs at their primary (or alternate) addresses, enable decode
    and write one dword to each."""
    bars = [b for b in f.bars if len(f.plan.get(b.index, ())) > which][:limit]
    for bar in bars:
        f.program(bar, f.addr(bar, which))
    f.command(CMD_IO | CMD_MEM)
    for n, bar in enumerate(bars):
        if not bar.is_rom:
            f.poke(bar, f.addr(bar, which), value + n)


def _look(f: _Fn, *, which: int = 0, registers: bool = True) -> None:
    """Read back what :func:`_bring_up` set: command, BAR registers, one dword of each BAR."""
    f.cr(0x04)
    for bar in f.bars:
        if len(f.plan.get(bar.index, ())) > which:
            if registers:
                f.read_reg(bar)
            f.peek(bar, f.addr(bar, which))


# ---------------------------------------------------------------- data structure


def _sys_data_structure(s: _Sys) -> None:
    """R-DS-001..R-DS-004, R-DS-007, R-DS-008: VM elements and their tables."""

    b = _Body()
    ks, _nic = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK), (NIC_BDF, E1000))
    _bring_up(ks)
    ks.save("ks")
    b.snapshot(SUITE_VM, "vm")
    b.check("R-DS-002")
    b.destroy_vm(SUITE_VM)
    b.check("R-ERR-003")
    ks.cr(0x00)
    ks.cw(0x04, 2, 0)
    ks.ior(CF8, 4)
    ks.iow(CF8, 4, 0)
    ks.mr(ks.addr(ks.bar(1)), 4)
    ks.mw(ks.addr(ks.bar(1)), 4, 0)
    b.plug(SUITE_VM, GPU_BDF, A100)
    b.unplug(SUITE_VM, NIC_BDF)
    ks.reset()
    b.reset_vm(SUITE_VM)
    ks.save("gone")
    ks.restore("ks")
    b.snapshot(SUITE_VM, "gone")
    b.tables(SUITE_VM)
    b.destroy_vm(SUITE_VM)
    b.check("R-DS-002")
    b.create_vm(SUITE_VM)
    ks.cr(0x00)
    b.tables(SUITE_VM)
    ks.mr(ks.addr(ks.bar(1)), 4)
    s.add(
        "destroy-vm",
        "data-structure",
        "destroying a VM removes it with its instances; every operation naming it is rejected "
        "(unknown-vm) until it is created again, empty",
        b,
    )

    b = _Body()
    b.create_vm(SUITE_VM)
    far = (Bdf(0, 0, 0), Bdf(0xFF, 0x1F, 7), Bdf(0x80, 0x10, 3), Bdf(0x01, 0x00, 5))
    fns = [
        b.plug(SUITE_VM, bdf, t)
        for bdf, t in zip(far, (E1000, KITCHEN_SINK, EXPRESS_SINK, NVME), strict=True)
    ]
    for f in fns:
        f.check("R-DS-003")
        f.cr(0x00)
        f.check("R-CAM-004")
        f.cf8(0x00)
        f.ior(CFC, 4)
        f.check("R-ECAM-002")
        f.mr(f.ecam(0x00), 4)
        f.check("R-DS-003")
        f.cw(0x3C, 1, f.bdf.packed & 0xFF)
    for f in fns:
        f.cr(0x3C, 1)
    b.check("R-DS-007")
    b.tables(SUITE_VM)
    s.add(
        "config-table-flat-buses",
        "data-structure",
        "instances at any bus 0-255, device 0-31, function 0-7 are reached directly, through 0xCFC "
        "and through ECAM",
        b,
    )

    b = _Body()
    gpu, ks, exp = _vm_with(b, SUITE_VM, (GPU_BDF, A100), (KS_BDF, KITCHEN_SINK), (EXP_BDF, EXPRESS_SINK))
    for f in (gpu, ks, exp):
        _bring_up(f)
    b.check("R-DS-007")
    b.tables(SUITE_VM)
    big = gpu.bar(1)
    at = gpu.addr(big)
    b.check("R-DT-004")
    for offset in (0, 8, big.size >> 1, big.size - 8):
        gpu.mw(at + offset, 8, 0x0123_4567_89AB_CDEF ^ offset)
        gpu.mr(at + offset, 8)
    b.check("R-DS-009")
    gpu.mr(at + big.size, 8)
    gpu.mr(at - 8, 8)
    b.check("R-DS-006")
    gpu.save("gpu")
    s.add(
        "tables-one-entry-per-bar",
        "data-structure",
        "each decoding BAR, whatever its size (up to 64 GiB here), is one table entry, decodes to its "
        "last byte and its contents are stored sparsely",
        b,
    )

    b = _Body()
    f1, n1 = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK), (NIC_BDF, E1000))
    f2, n2 = _vm_with(b, VM2, (KS_BDF, KITCHEN_SINK), (NIC_BDF, E1000))
    for f in (f1, n1, f2, n2):
        _bring_up(f, value=0x1000_0000 * f.vm, limit=2)
    f1.iow(CF8, 4, f1.cf8_value(0x3C))
    f2.iow(CF8, 4, f2.cf8_value(0x00))

    def look2() -> None:
        f2.cr(0x04)
        f2.cr(0x14)
        f2.peek(f2.bar(1), f2.addr(f2.bar(1)))
        f2.peek(f2.bar(0), f2.addr(f2.bar(0)))
        n2.peek(n2.bar(0), n2.addr(n2.bar(0)))
        f2.ior(CF8, 4)
        f2.ior(CFC, 4)

    b.check("R-DS-008")
    f1.iow(CFC, 1, 0x77)
    f1.mw(f1.addr(f1.bar(1)) + 4, 4, 0xFFFF_0001)
    look2()
    f1.reset()
    b.reset_vm(SUITE_VM)
    look2()
    f2.save("vm2-ks")
    f1.restore("vm2-ks")
    b.unplug(SUITE_VM, NIC_BDF)
    b.plug(SUITE_VM, NIC_BDF, E1000)
    b.snapshot(SUITE_VM, "vm1")
    b.restore_vm(SUITE_VM, "vm1")
    b.destroy_vm(SUITE_VM)
    look2()
    b.check("R-DS-001")
    b.tables(VM2)
    s.add(
        "vm-isolation",
        "data-structure",
        "accesses, resets, restores, hot-plug and destruction in VM 1 change nothing observable in "
        "VM 2, with equal BDFs and addresses",
        b,
    )

    b = _Body()
    fns = _vm_with(
        b, SUITE_VM, (NIC_BDF, E1000), (KS_BDF, KITCHEN_SINK), (EXP_BDF, EXPRESS_SINK), (GPU_BDF, A100)
    )
    # every type's plan starts at the same addresses: devices on odd slots use their primary
    # addresses, the others their alternates, so several BARs of different devices overlap
    for f in fns:
        _bring_up(f, which=f.bdf.device % 2, value=0x1000_0000 * f.bdf.device)
    b.check("R-DS-007")
    b.tables(SUITE_VM)
    b.check("R-DS-009")
    for f in fns:
        _look(f, which=f.bdf.device % 2, registers=False)
    s.add(
        "tables-exact-many-devices",
        "data-structure",
        "with every suite type plugged and decoding, each address resolves to the BAR the overlap rule "
        "picks, and the tables list exactly the decoding BARs",
        b,
    )


# ---------------------------------------------------------------- device types


KS_MSI = 0x50
"""Where kitchen-sink's 64-bit MSI capability sits: control at 0x52, 14 bytes up to 0x5d."""


Definition = dict[str, Any]


def _definition(dtype: DeviceType, name: str, config_behaviour: bool = False) -> Definition:
    """``dtype`` as a ``define_type`` definition under another name, without its fingerprint (the
    edits below change the declaration) and, unless ``config_behaviour``, without its configuration
    behaviour (which an implementation may decline, R-DT-008)."""
    from vpcid.conformance.typefile import type_json

    defn = copy.deepcopy(type_json(dtype))
    defn["name"] = name
    defn.pop("fingerprint", None)
    if not config_behaviour:
        defn["config_behaviour"] = None
    return defn


def _poke(defn: Definition, array: str, offset: int, data: bytes) -> Definition:
    """``defn`` with ``data`` at ``offset`` of one of its configuration arrays (image, wmask, w1cmask)."""
    rows = defn["config"].setdefault(array, {})
    for at, byte in enumerate(data, offset):
        key = f"{at - at % 16:03x}"
        row = bytearray.fromhex(rows.get(key, "00" * 16))
        row[at % 16] = byte
        rows[key] = row.hex(" ")
    return defn


def _extended_header(cap_id: int, version: int, next_offset: int) -> bytes:
    return (cap_id | version << 16 | next_offset << 20).to_bytes(4, "little")


def _type_rule_breaks() -> list[tuple[str, Definition]]:
    """Definitions that each break one rule of R-DT-001 or R-DT-005..R-DT-007 and nothing else: the
    requirement and the definition. Edits of the suite's kitchen-sink and express-sink types."""

    def ks() -> Definition:
        return _definition(KITCHEN_SINK, "rule-break")

    def ex() -> Definition:
        return _definition(EXPRESS_SINK, "rule-break")

    breaks: list[tuple[str, Definition]] = [
        ("R-DT-005", _poke(ks(), "w1cmask", 0x44, b"\x01")),  # also writable there
        *(
            ("R-DT-005", _poke(ks(), mask, at, b"\x01"))
            for mask, at in (
                ("wmask", 0x00),
                ("wmask", 0x03),
                ("w1cmask", 0x08),
                ("wmask", 0x0B),
                ("wmask", 0x0E),
                ("wmask", 0x2C),
                ("w1cmask", 0x2F),
                ("wmask", 0x34),
                ("wmask", 0x3D),
            )
        ),
        ("R-DT-005", _poke(ks(), "image", 0x00, b"\xff\xff")),  # vendor ID 0xFFFF
        ("R-DT-005", _poke(ks(), "image", 0x0E, b"\x01")),  # a type 1 header
        ("R-DT-005", _poke(ks(), "image", 0x3D, b"\x05")),  # interrupt pin 5
        ("R-DT-005", _poke(ks(), "image", 0x04, b"\x02")),  # command not zero at power-on
        ("R-DT-005", _poke(ks(), "w1cmask", 0x05, b"\x02")),  # an RW1C command bit
        ("R-DT-005", _poke(ks(), "wmask", 0x05, b"\x0d")),  # command bit 11 writable
        ("R-DT-005", _poke(ks(), "wmask", 0x06, b"\x01")),  # a writable status bit
        ("R-DT-005", _poke(ks(), "w1cmask", 0x06, b"\x20")),  # RW1C outside the error bits
        ("R-DT-006", _poke(ks(), "image", 0x34, b"\x00")),  # status bit 4 with a zero pointer
        ("R-DT-006", _poke(ks(), "image", 0x34, b"\x3c")),  # below 0x40
        ("R-DT-006", _poke(ks(), "image", 0x34, b"\x45")),  # not a dword
        ("R-DT-006", _poke(ks(), "image", 0x41, b"\x50")),  # 0x50 -> 0x40 -> 0x50
        ("R-DT-006", _poke(ks(), "wmask", 0x50, b"\x01")),  # a writable capability ID
        ("R-DT-006", _poke(ks(), "w1cmask", 0x41, b"\x01")),  # an RW1C next pointer
        ("R-DT-007", _poke(ex(), "wmask", 0x100, b"\x01")),
        ("R-DT-007", _poke(ex(), "w1cmask", 0x103, b"\x10")),
        ("R-DT-007", _poke(ex(), "image", 0x100, _extended_header(0x0B, 1, 0x402))),
        ("R-DT-007", _poke(ex(), "image", 0x100, _extended_header(0x0B, 1, 0x0FC))),
        ("R-DT-007", _poke(ex(), "image", 0x100, _extended_header(0x0B, 1, 0x100))),
    ]
    for index, kind, size in ((4, "mem32", 8), (5, "io", 2), (0, "io", 512)):
        defn = ks()
        defn["bars"][index] = {"kind": kind, "size": size, "prefetchable": False}
        breaks.append(("R-DT-001", defn))
    defn = ks()
    defn["bars"][0]["prefetchable"] = True
    breaks.append(("R-DT-001", defn))
    defn = ks()
    defn["rom"] = {"size": 1024, "contents": defn["rom"]["contents"][:2048]}
    breaks.append(("R-DT-001", defn))
    defn = ks()
    defn["rom"]["contents"] += "00"  # one byte more than the ROM holds
    breaks.append(("R-DT-001", defn))
    defn = ex()
    defn["bars"] = [None, None, defn["bars"][2], None, None, {"kind": "mem64", "size": 16}]
    breaks.append(("R-DT-001", defn))
    defn = ex()
    defn["bars"][1] = {"kind": "mem32", "size": 16}
    breaks.append(("R-DT-001", defn))
    defn = _poke(ks(), "wmask", 0x20, bytes(4))  # BAR4's register as a 4 GiB BAR would have it
    defn["bars"][4] = {"kind": "mem32", "size": 1 << 32}
    breaks.append(("R-DT-001", defn))
    sizes = _type_rule_edges()[0][1]
    defn = _poke(copy.deepcopy(sizes), "wmask", 0x20, bytes(8))  # as a 2^64-byte BAR would have it
    defn["name"], defn["bars"][4] = "rule-break", {"kind": "mem64", "size": 1 << 64}
    breaks.append(("R-DT-001", defn))
    defn = _poke(copy.deepcopy(sizes), "wmask", 0x30, (0xFE00_0001).to_bytes(4, "little"))  # a 32 MiB ROM
    defn["name"], defn["rom"]["size"] = "rule-break", 1 << 25
    breaks.append(("R-DT-001", defn))
    zero_first = _poke(ex(), "image", 0x100, bytes(4))
    breaks.append(("R-DT-007", _poke(zero_first, "wmask", 0x103, b"\x01")))  # no list, yet writable
    breaks.append(("R-DT-007", _poke(ex(), "wmask", 0x403, b"\x10")))  # the second header's next offset
    only_next = _poke(ex(), "image", 0x100, _extended_header(0, 0, 0x100))  # ID 0, next: itself
    breaks.append(("R-DT-007", only_next))
    defn = _poke(ks(), "wmask", 0x20, b"\xe0\xff\xff\xff")  # BAR4's register as a 32-byte BAR has it
    defn["bars"][4] = {"kind": "mem32", "size": 24}  # not a power of two
    breaks.append(("R-DT-001", defn))
    defn = _poke(ks(), "image", 0x24, b"\x04\0\0\0")  # a 64-bit BAR in slot 5, its upper half at 0x28
    _poke(_poke(defn, "wmask", 0x24, b"\xf0\xff\xff\xff"), "wmask", 0x28, b"\xff" * 4)
    defn["bars"][5] = {"kind": "mem64", "size": 16}
    breaks.append(("R-DT-001", defn))
    for offset, value in ((0x08, b"\x07"), (0x3D, b"\x02"), (0x3C, b"\x05")):  # revision, pin, line
        defn = _poke(_definition(KITCHEN_SINK, "kitchen-sink"), "image", offset, value)
        breaks.append(("R-DT-002", defn))  # another definition under a known name
    return breaks


def _type_rule_edges() -> list[tuple[str, Definition, str]]:
    """Definitions that keep every rule at its edge: the requirement, the definition, what is at the
    edge."""
    from vpcid.model import RomSpec

    edges = DeviceType(
        "edge-sizes", vendor_id=0x1B36, device_id=0x00EE, class_code=0xFF0000, interrupt_pin=4,
        bars=(BarSpec(BarKind.IO, 256), BarSpec(BarKind.MEM32, 1 << 31), BarSpec(BarKind.MEM64, 16),
              None, BarSpec(BarKind.MEM64, 1 << 63), None),
        rom=RomSpec(1 << 24, bytes(range(256)) * 16),
    )  # fmt: skip
    last = _poke(_definition(KITCHEN_SINK, "edge-last-capability"), "image", 0x41, b"\xfc")
    _poke(last, "image", 0xFC, b"\x09\x00")
    no_list = _poke(_definition(KITCHEN_SINK, "edge-no-list"), "image", 0x06, b"\x00")
    last_extended = _poke(_definition(EXPRESS_SINK, "edge-last-extended"), "image", 0x400,
                          _extended_header(0x01, 2, 0xFFC))  # fmt: skip
    _poke(last_extended, "image", 0xFFC, _extended_header(0x03, 15, 0))
    _poke(last_extended, "w1cmask", 0xFFC, bytes(4))
    command = _poke(_definition(KITCHEN_SINK, "edge-command"), "wmask", 0x05, b"\x07")
    named = _definition(KITCHEN_SINK, "edge-name-" + "n" * 245)
    no_extended = _poke(_definition(EXPRESS_SINK, "edge-no-extended"), "image", 0x100, bytes(4))
    _poke(no_extended, "wmask", 0x104, b"\xff")
    return [
        ("R-DT-001", _definition(edges, edges.name), "a BAR of 256 I/O bytes, 2 GiB of 32-bit memory, "
         "64-bit BARs of 16 bytes and 2^63 bytes (the last in slot 4), a 16 MiB ROM, interrupt pin 4"),
        ("R-DT-001", named, "a name of 255 bytes"),
        ("R-DT-005", command, "command bits 8-10 writable"),
        ("R-DT-006", last, "a capability at 0xFC"),
        ("R-DT-006", no_list, "status bit 4 clear with a capability pointer set: no list"),
        ("R-DT-007", last_extended, "an extended capability header at 0xFFC"),
        ("R-DT-007", no_extended, "no extended capability (0x100 reads zero), writable bytes from 0x104"),
    ]  # fmt: skip


def _sys_type_rules(s: _Sys) -> None:
    """R-DT-001, R-DT-005..R-DT-007 through ``define_type``: every definition that breaks one rule is
    rejected and defines nothing; definitions at each rule's edge are accepted and plug."""
    from vpcid.conformance.trace import define_type_op
    from vpcid.conformance.typefile import parse_type_definition

    b = _Body()
    b.create_vm(SUITE_VM)
    for rid, defn in _type_rule_breaks():
        b.check(rid)
        b.add(define_type_op(defn))
    b.check("R-ERR-001")
    b.add(define_type_op(_definition(KITCHEN_SINK, "rule-break")))  # the name is still free
    s.add(
        "type-rule-breaks", "device-types",
        "a definition that breaks one rule of a device type (masks, identity, header, command and "
        "status registers, capability chains, BAR and ROM sizes) is rejected (bad-device-type) and "
        "leaves its name free for a valid definition",
        b,
    )  # fmt: skip

    for rid, defn, what in _type_rule_edges():
        b = _Body()
        b.create_vm(SUITE_VM)
        b.check(rid)
        b.add(define_type_op(defn))
        f = b.plug(SUITE_VM, KS_BDF, parse_type_definition(defn))
        for offset in (0x00, 0x04, 0x08, 0x2C, 0x34, 0x3C):
            f.cr(offset)
        for bar in f.bars:
            f.cw(bar.reg, 4, ONES32)
            f.cr(bar.reg)
            if bar.is64:
                f.cw(bar.reg + 4, 4, ONES32)
                f.cr(bar.reg + 4)
        for entry in f.dtype.chain:
            f.cr(entry.offset)
        s.add(f"type-edge-{defn['name'].removeprefix('edge-')[:16]}", "device-types",
              f"a definition at a rule's edge is accepted and plugs: {what}", b)  # fmt: skip


def _unclamped_blob(dtype: DeviceType) -> bytes:
    """A blob of ``dtype`` at :data:`KS_BDF` whose MSI control (at :data:`KS_MSI`) has MSI enabled and
    Multiple Message Enable 7, above its Multiple Message Capable: what a write would have clamped."""
    dm = DataManager(Profile())
    dm.create_vm(SUITE_VM)
    dm.plug(SUITE_VM, KS_BDF, dtype)
    record = blobfmt.decode_instance(dm.save(SUITE_VM, KS_BDF))
    control = int.from_bytes(record.config[KS_MSI + 2 : KS_MSI + 4], "little") & ~0x70 | 0x71
    return blobfmt.encode_instance(_set_config(record, KS_MSI + 2, control.to_bytes(2, "little")))


def _msi_layouts() -> list[tuple[str, int, Definition | None]]:
    """Kitchen-sink's MSI capability (64-bit addresses, 14 bytes) and, as definitions of their own, the
    same capability with 32-bit addresses (10 bytes), per-vector masking (20 bytes) and both (24):
    the name, the capability's length and the definition (None: kitchen-sink itself)."""
    layouts: list[tuple[str, int, Definition | None]] = [("kitchen-sink", 14, None)]
    for name, control_high, size in (
        ("msi-32", 0x00, 10),
        ("msi-32-mask", 0x01, 20),
        ("msi-64-mask", 0x01, 24),
    ):
        defn = _definition(KITCHEN_SINK, name, config_behaviour=True)
        low = 0x84 if name == "msi-64-mask" else 0x04  # Multiple Message Capable 2; bit 7: 64-bit
        layouts.append((name, size, _poke(defn, "image", KS_MSI + 2, bytes((low, control_high)))))
    late = _poke(
        _definition(KITCHEN_SINK, "msi-late-mmc3", config_behaviour=True), "image", KS_MSI + 2, b"\x86"
    )
    for at, pointer in ((0x34, 0x40), (0x41, KS_MSI), (KS_MSI + 1, 0x00)):  # the vendor capability first
        _poke(late, "image", at, bytes((pointer,)))
    layouts.append(("msi-late-mmc3", 14, late))  # Multiple Message Capable 3: an odd value
    return layouts


def _sys_msi_clamp_edges(s: _Sys) -> None:
    """R-DT-008: a configuration behaviour acts on the writes that touch its capability and only those.

    A restored blob may hold an MSI control word that a write would have clamped (MSI enabled,
    Multiple Message Enable 7 above Multiple Message Capable 2): it stays until a write touches the
    capability. For each MSI layout (10, 14, 20 and 24 bytes), byte writes just outside each end of
    the capability leave it; byte writes at its first and last bytes clamp it.
    """
    from vpcid.conformance.trace import define_type_op
    from vpcid.conformance.typefile import parse_type_definition

    for name, size, defn in _msi_layouts():
        b = _Body()
        b.create_vm(SUITE_VM)
        dtype = KITCHEN_SINK
        if defn is not None:
            b.add(define_type_op(defn))
            dtype = parse_type_definition(defn)
        ks = b.plug(SUITE_VM, KS_BDF, dtype)
        unclamped = _unclamped_blob(dtype)
        for offset in (KS_MSI - 1, KS_MSI + size, KS_MSI, KS_MSI + size - 1):
            b.setup()
            ks.restore(data=unclamped)
            b.check("R-DT-008")
            ks.cr(KS_MSI + 2, 2)
            ks.cw(offset, 1, 0)
            ks.cr(KS_MSI + 2, 2)
        s.add(
            "msi-clamp-on-touching-writes" + ("" if defn is None else f"-{name.removeprefix('msi-')}"),
            "device-types",
            f"an MSI Multiple Message Enable above Multiple Message Capable that a restore brought stays "
            f"through byte writes just outside a {size}-byte MSI capability ({name}) and is clamped by "
            "writes at its first and last bytes (msi-mme-clamp acts on writes that touch its capability)",
            b,
        )


def _sys_edu_state(s: _Sys) -> None:
    """R-SR-005: a restore checks the behaviour's state; edu's status holds bit 7 only."""
    dm = DataManager(Profile())
    dm.create_vm(SUITE_VM)
    dm.plug(SUITE_VM, EDU_BDF, EDU)
    dm.config_write(SUITE_VM, EDU_BDF, 0x10, 4, _plan(EDU)[0][0] & ONES32)
    dm.config_write(SUITE_VM, EDU_BDF, 0x04, 2, CMD_MEM)
    record = blobfmt.decode_instance(dm.save(SUITE_VM, EDU_BDF))
    b = _Body()
    (edu,) = _vm_with(b, SUITE_VM, (EDU_BDF, EDU))
    bar = edu.bar(0)
    edu.program(bar, edu.addr(bar))
    edu.command(CMD_MEM)
    for status in (0x80, 0x01, 0x100):
        extra = record.extra[:4] + status.to_bytes(4, "little")
        b.check("R-SR-005")
        edu.restore(data=blobfmt.encode_instance(dataclasses.replace(record, extra=extra)))
        edu.mr(edu.addr(bar) + 0x20)
    s.add(
        "edu-restore-checks-status",
        "device-types",
        "a restore checks the behaviour's state: an edu blob whose status has bit 7 restores, one with "
        "another status bit is rejected (blob-mismatch) and changes nothing",
        b,
    )


def _sys_device_types(s: _Sys) -> None:
    """R-DT-001..R-DT-004 with the suite's types."""
    b = _Body()
    b.check("R-DT-002")
    fns = _vm_with(b, SUITE_VM, *((Bdf(0, 8 + n, 0), t) for n, t in enumerate(SUITE_TYPES.values())))
    for f in fns:
        f.check("R-DT-001")
        for offset in (0x00, 0x08, 0x0C, 0x2C):
            f.cr(offset)
        f.check("R-CFG-002")
        for offset in (0x34, 0x3C):
            f.cr(offset)
    b.check("R-DT-002")
    b.tables(SUITE_VM)
    s.add(
        "suite-types-identity",
        "device-types",
        "every suite device type plugs by name and shows its declared identity",
        b,
    )

    b = _Body()
    (edu,) = _vm_with(b, SUITE_VM, (EDU_BDF, EDU))
    bar = edu.bar(0)
    at = edu.addr(bar)
    edu.program(bar, at)
    edu.command(CMD_MEM)
    b.check("R-DT-003")
    edu.mr(at)
    edu.mr(at + 4)
    edu.mw(at + 4, 4, 0x1234_5678)
    edu.mr(at + 4)
    edu.mr(at + 4, 2)
    edu.mw(at + 0x20, 4, 0xFF)
    edu.mr(at + 0x20)
    edu.mw(at + 0x20, 2, 0x0)
    edu.mr(at + 0x20)
    edu.mr(at + 0x40)
    edu.save("edu")
    edu.command(0)
    edu.program(bar, edu.addr(bar, 1))
    edu.command(CMD_MEM)
    edu.mr(edu.addr(bar, 1) + 4)
    edu.mr(edu.addr(bar, 1) + 0x20)
    b.check("R-SR-002")
    edu.reset()
    edu.restore("edu")
    edu.mr(at + 4)
    edu.mr(at + 0x20)
    b.check("R-RST-002")
    edu.reset()
    edu.program(bar, at)
    edu.command(CMD_MEM)
    edu.mr(at + 4)
    edu.mr(at + 0x20)
    s.add(
        "edu-behaviour",
        "device-types",
        "edu's BAR behaviour sees offsets from the BAR base, keeps its state in the blob and is "
        "re-initialised by reset",
        b,
    )

    fake = dataclasses.replace(E1000, device_id=0x100F)
    blob = _foreign_blob(fake, NIC_BDF)
    b = _Body()
    (nic,) = _vm_with(b, SUITE_VM, (NIC_BDF, E1000))
    _bring_up(nic)
    b.check("R-SR-003")
    nic.restore(data=blob)
    b.check("R-SR-007")
    _look(nic)
    b.check("R-DT-002")
    b.restore_vm(VM2, data=_foreign_snapshot(fake, NIC_BDF))
    b.check("R-SR-006")
    b.tables(VM2)
    s.add(
        "fingerprint-mismatch",
        "device-types",
        "a blob or snapshot of a different definition under a known type name is rejected "
        "(blob-mismatch) and changes nothing",
        b,
    )


# ---------------------------------------------------------------- hot-plug


def _sys_hot_plug(s: _Sys) -> None:
    """R-HP-001..R-HP-003: plug, unplug and re-plug."""

    b = _Body()
    ks, nic = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK), (NIC_BDF, E1000))
    _bring_up(ks)
    _bring_up(nic)
    b.tables(SUITE_VM)
    b.check("R-HP-002")
    b.unplug(SUITE_VM, KS_BDF)
    b.check("R-ACC-006")
    ks.cr(0x00)
    ks.cf8(0x00)
    ks.ior(CFC)
    ks.mr(ks.ecam(0x00))
    b.check("R-ACC-004")
    for bar in ks.placed():
        ks.peek(bar, ks.addr(bar))
    b.check("R-HP-002")
    b.unplug(SUITE_VM, KS_BDF)
    b.check("R-DEC-009")
    _look(nic)
    b.tables(SUITE_VM)
    s.add(
        "unplug-removes-routing",
        "hot-plug",
        "after unplug the BDF reads as absent, its former BAR addresses as unmapped, a second unplug "
        "is rejected (unknown-device), and other instances are untouched",
        b,
    )

    b = _Body()
    (ks,) = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK))
    _bring_up(ks)
    ks.cw(0x3C, 1, 0x0B)
    ks.cw(0x64, 4, 0)
    ks.cw(0x60, 4, ONES32)
    b.unplug(SUITE_VM, KS_BDF)
    b.check("R-HP-003")
    b.plug(SUITE_VM, KS_BDF, KITCHEN_SINK)
    for offset in (0x04, 0x3C, 0x60, 0x64):
        ks.cr(offset)
    _look(ks)
    ks.command(0)
    ks.decode(ks.placed())
    _look(ks, registers=False)
    b.unplug(SUITE_VM, KS_BDF)
    b.check("R-HP-001")
    nic = b.plug(SUITE_VM, KS_BDF, E1000)
    nic.cr(0x00)
    nic.cr(0x10)
    b.tables(SUITE_VM)
    s.add(
        "replug-starts-fresh",
        "hot-plug",
        "an instance plugged where another was unplugged starts from power-on with empty data, "
        "whatever the previous one held",
        b,
    )

    b = _Body()
    nic, ks = _vm_with(b, SUITE_VM, (NIC_BDF, E1000), (KS_BDF, KITCHEN_SINK))
    big = nic.bar(0)
    at = nic.addr(big)
    small = ks.bar(1)
    ks.program(small, at + 0x1000)
    ks.command(CMD_MEM)
    ks.mw(at + 0x1004, 4, 0x0000_0005)
    nic.program(big, at)
    nic.command(CMD_MEM)
    nic.mw(at + 0x1004, 4, 0x0000_0002)
    b.check("R-DEC-008")
    nic.mr(at + 0x1004)
    b.tables(SUITE_VM)
    b.check("R-HP-002")
    b.unplug(SUITE_VM, NIC_BDF)
    nic.mr(at + 0x1004)
    nic.mr(at + 0x2004)
    b.check("R-HP-003")
    b.plug(SUITE_VM, NIC_BDF, E1000)
    nic.program(big, at)
    nic.command(CMD_MEM)
    nic.mr(at + 0x1004)
    nic.mr(at + 0x2004)
    s.add(
        "unplug-overlap-winner",
        "hot-plug",
        "unplugging the device that wins an overlap exposes the other one; a re-plugged winner "
        "wins again by BDF (lowest-bdf) or by being mapped last",
        b,
    )


# ---------------------------------------------------------------- decode and mechanisms


def _sys_decode(s: _Sys) -> None:
    """R-DEC-008, R-DEC-006, R-CAM-006, R-ECAM-004, R-ECAM-001 across devices and platform windows."""
    b = _Body()
    nic, ks = _vm_with(b, SUITE_VM, (NIC_BDF, E1000), (KS_BDF, KITCHEN_SINK))
    at = nic.addr(nic.bar(0))
    ks.program(ks.bar(1), ks.addr(ks.bar(1), 1))
    ks.command(CMD_MEM)
    ks.mw(ks.addr(ks.bar(1), 1) + 8, 4, 0x0000_0003)
    ks.command(0)
    nic.program(nic.bar(0), at)
    nic.command(CMD_MEM)
    nic.mw(at + 8, 4, 0x0000_0002)
    ks.program(ks.bar(1), at)
    ks.command(CMD_MEM)  # ks maps after the e1000
    b.check("R-DEC-008")
    nic.mr(at + 8)
    nic.mw(at + 12, 4, 0x0000_00AA)
    nic.mr(at + 12)
    b.check("R-DS-009")
    b.tables(SUITE_VM)
    b.check("R-DEC-008")
    nic.command(0)
    nic.command(CMD_MEM)  # now the e1000 is the most recently mapped
    nic.mr(at + 8)
    nic.mr(at + 12)
    b.check("R-DEC-009")
    ks.cr(0x14)
    nic.cr(0x10)
    s.add(
        "overlap-between-devices",
        "decode",
        "BARs of two devices claiming one address resolve to the lowest BDF (default) or the most "
        "recently mapped (last-mapped); overlap is not rejected and changes no register",
        b,
    )

    b = _Body()
    (ks,) = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK))
    mem = ks.bar(1)
    inside = ks.ecam(0x000)  # the BAR sits exactly on this function's own ECAM page
    ks.program(mem, inside)
    ks.command(CMD_MEM)
    b.check("R-ECAM-004")
    ks.mr(inside)
    ks.mw(inside + 0x3C, 1, 0x42)
    ks.cr(0x3C)
    b.tables(SUITE_VM)
    below = DEFAULT_ECAM_BASE - mem.size
    b.setup()
    ks.program(mem, below)
    ks.mw(below + mem.size - 4, 4, 0x4433_2211)
    b.check("R-ACC-005")
    ks.mr(below + mem.size - 2, 4)  # BAR bytes, then ECAM bytes of 00:00.0 (absent)
    ks.mr(below + mem.size - 4, 8)
    b.check("R-ECAM-001")
    ks.command(0)
    ks.program(mem, inside)
    ks.cr(0x10)
    s.add(
        "ecam-before-bars",
        "ecam",
        "a memory BAR under the ECAM window never sees accesses there; accesses straddling the window "
        "edge split between the BAR and ECAM",
        b,
    )

    b = _Body()
    (ks,) = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK))
    top = ks.bar(2)
    high = U64 - top.size
    ks.program(top, high)
    ks.command(CMD_MEM)
    b.check("R-ACC-001")
    ks.mw(U64 - 8, 8, 0xFEDC_BA98_7654_3210)
    ks.mr(U64 - 8, 8)
    b.check("R-DEC-006")
    ks.mr(high)
    b.tables(SUITE_VM)
    ks.cw(0x10, 4, 0xFFE0)  # I/O BAR0 (32 bytes) ending exactly at 64 KiB: decodes
    ks.command(CMD_IO | CMD_MEM)
    ks.iow(0xFFFC, 4, 0x1234_5678)
    ks.ior(0xFFFC)
    b.check("R-BAR-006")
    ks.cw(0x10, 4, 0x1_FFE0)
    b.check("R-DEC-006")
    ks.ior(0xFFFC)
    b.tables(SUITE_VM)
    s.add(
        "address-limits",
        "decode",
        "BARs ending exactly at the top of their space decode; an I/O BAR above 64 KiB does not",
        b,
    )


# ---------------------------------------------------------------- reset


# ---------------------------------------------------------------- save / restore


def _sys_save_restore(s: _Sys) -> None:
    """R-SR-002..R-SR-009 across instances, VMs and snapshots."""
    b = _Body()
    ks, nic = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK), (NIC_BDF, E1000))
    _bring_up(ks)
    _bring_up(nic, value=0x0E10_0000)
    ks.save("ks")
    b.check("R-SR-003")
    nic.restore("ks")
    b.check("R-SR-007")
    _look(nic)
    b.setup()
    b.create_vm(VM2)
    other = b.plug(VM2, GPU_BDF, KITCHEN_SINK)
    b.check("R-SR-002")
    other.restore("ks")
    _look(other)
    b.check("R-DS-005")
    other.save("copy")
    s.add(
        "restore-elsewhere-and-type-check",
        "save-restore",
        "a blob restores into any instance of its type (other VM, other BDF) and is rejected "
        "(blob-mismatch) by an instance of another type, which stays unchanged",
        b,
    )

    b = _Body()
    ks, nic = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK), (MIGRATED_NIC_BDF, E1000))
    for f in (ks, nic):
        _bring_up(f, limit=3)
    ks.cf8(0x3C)
    b.check("R-BLOB-005")
    b.snapshot(SUITE_VM, "vm1")
    b.snapshot(SUITE_VM, "vm1-again")
    b.check("R-SR-006")
    b.restore_vm(VM2, "vm1")
    b.snapshot(VM2, "vm2")
    b.tables(VM2)
    k2 = _Fn(b, VM2, KS_BDF, KITCHEN_SINK, DEFAULT_ECAM_BASE)
    n2 = _Fn(b, VM2, MIGRATED_NIC_BDF, E1000, DEFAULT_ECAM_BASE)
    for f in (k2, n2):
        _look(f, registers=False)
    k2.ior(CF8, 4)
    k2.ior(CFC, 4)
    b.check("R-SR-008")
    for f1, f2 in ((ks, k2), (nic, n2)):
        for f in (f1, f2):  # the same operations on the source and the migrated copy
            f.iow(CFC, 1, 0x21)
            f.command(0)
            f.program(f.bar(0), f.addr(f.bar(0), 1))
            f.command(CMD_IO | CMD_MEM)
            f.peek(f.bar(0), f.addr(f.bar(0), 1))
            f.cr(0x3C)
    b.snapshot(SUITE_VM, "vm1-after")
    b.check("R-DS-008")
    b.snapshot(VM2, "vm2-after")
    s.add(
        "snapshot-migration",
        "save-restore",
        "a VM restored from another's snapshot gives the same observations and the same snapshot "
        "bytes for the same operations afterwards (one device at a BDF with odd bus, device and function "
        "numbers, so every bit of the packed BDFs in the snapshot counts)",
        b,
    )

    b = _Body()
    ks, nic = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK), (NIC_BDF, E1000))
    _bring_up(ks)
    b.snapshot(SUITE_VM, "one-ks")
    (gpu,) = _vm_with(b, VM2, (GPU_BDF, A100), ecam_base=None)
    _bring_up(gpu)
    b.check("R-SR-006")
    b.restore_vm(VM2, "one-ks")
    gpu.cr(0x00)
    _look(_Fn(b, VM2, KS_BDF, KITCHEN_SINK, DEFAULT_ECAM_BASE))
    gpu.mr(gpu.addr(gpu.bar(0)) + 4)
    b.check("R-ECAM-001")
    b.mr(VM2, DEFAULT_ECAM_BASE + (KS_BDF.packed << 12))
    b.tables(VM2)
    b.setup()
    b.plug(SUITE_VM, GPU_BDF, A100)
    b.check("R-SR-007")
    b.restore_vm(SUITE_VM, "one-ks")
    b.tables(SUITE_VM)
    s.add(
        "snapshot-replaces-vm",
        "save-restore",
        "restoring a snapshot into an existing VM replaces it entirely: devices, ECAM window, 0xCF8 "
        "and tables",
        b,
    )

    b = _Body()
    (ks,) = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK), ecam_base=None)
    bar = ks.bar(1)
    first, second = ks.addr(bar, 0), ks.addr(bar, 1)
    ks.program(bar, first)
    ks.command(CMD_MEM)
    ks.mw(first + 4, 4, 0x9E4D_1119)
    ks.program(bar, second)  # while decoding: the deferred variant keeps it at `first`
    ks.cf8(0x00)
    b.check("R-SR-006")
    b.snapshot(SUITE_VM, "pending")
    b.restore_vm(VM2, "pending")
    k2 = _Fn(b, VM2, KS_BDF, KITCHEN_SINK, None)
    b.check("R-SR-009")
    k2.mr(first + 4)
    k2.mr(second + 4)
    b.check("R-CAM-003")
    k2.ior(CF8, 4)
    k2.ior(CFC, 4)
    b.check("R-DEC-005")
    k2.command(0)
    k2.command(CMD_MEM)
    k2.mr(first + 4)
    k2.mr(second + 4)
    b.check("R-SR-009")
    b.snapshot(VM2, "pending-copy")
    s.add(
        "pending-state-travels",
        "save-restore",
        "a deferred BAR move and 0xCF8 travel in the snapshot: the copy decodes where the source did "
        "and moves on the next enable",
        b,
    )

    b = _Body()
    nic, ks = _vm_with(b, SUITE_VM, (NIC_BDF, E1000), (KS_BDF, KITCHEN_SINK))
    at = nic.addr(nic.bar(0))
    nic.program(nic.bar(0), at)
    nic.command(CMD_MEM)
    nic.mw(at + 4, 4, 0x0000_0002)
    ks.program(ks.bar(1), ks.addr(ks.bar(1), 1))
    ks.command(CMD_MEM)
    ks.mw(ks.addr(ks.bar(1), 1) + 4, 4, 0x0000_0003)
    ks.command(0)
    ks.program(ks.bar(1), at)
    ks.command(CMD_MEM)  # ks begins decoding last
    b.check("R-DEC-008")
    nic.mr(at + 4)
    b.check("R-SR-006")
    b.snapshot(SUITE_VM, "order")
    b.restore_vm(VM2, "order")
    b.check("R-SR-009")
    b.mr(VM2, at + 4)
    b.restore_vm(SUITE_VM, "order")
    nic.mr(at + 4)
    b.check("R-SR-002")
    ks.save("ks")
    ks.restore("ks")  # a single-instance restore maps ks again, now last
    nic.mr(at + 4)
    s.add(
        "decode-order-travels",
        "save-restore",
        "the order in which BARs began decoding travels in the snapshot, so last-mapped overlap "
        "resolves the same way in the copy",
        b,
    )

    rec = blobfmt.decode_instance(_ks_blob())
    page = bytes([0x77]) * 4096
    groups: list[tuple[str, str, str, list[blobfmt.InstanceRecord]]] = [
        (
            "read-only-bits-changed",
            "R-SR-004",
            "blobs changing a vendor ID, BAR type bits, a capability ID or a reserved register bit",
            [
                _set_config(rec, 0x00, b"\x37\x1b"),
                _set_config(rec, 0x10, b"\x00"),
                _set_config(rec, 0x40, b"\x05"),
                _set_config(rec, 0x6C, b"\x01"),
            ],
        ),
        (
            "state-disagrees",
            "R-SR-005",
            "blobs with a 4096-byte configuration space for a 256-byte function, a decode address the "
            "registers do not hold, or one for a 64-bit BAR's upper slot",
            [
                dataclasses.replace(rec, config=rec.config + bytes(0x1000 - len(rec.config))),
                dataclasses.replace(rec, windows=(None, 0xE000_2000, *rec.windows[2:])),
                dataclasses.replace(rec, windows=(*rec.windows[:3], 0x10_0000_0000, *rec.windows[4:])),
            ],
        ),
        (
            "data-outside-device",
            "R-SR-005",
            "blobs with data for an unimplemented slot, for the ROM, in a page past a 16-byte BAR, in its "
            "first page but past its 16 bytes, or device state the memory behaviour does not keep",
            [
                dataclasses.replace(rec, pages=(*rec.pages, (3, 0, page))),
                dataclasses.replace(rec, pages=(*rec.pages, (6, 0, page))),
                dataclasses.replace(rec, pages=(*rec.pages, (4, 1, page))),
                dataclasses.replace(rec, pages=(*rec.pages, (4, 0, bytes(16) + page[16:]))),
                dataclasses.replace(rec, extra=b"\x01"),
            ],
        ),
    ]
    for name, req, what, records in groups:
        s.add(
            f"restore-rejects-{name}",
            "save-restore",
            f"{what} are each rejected (blob-mismatch) and the instance is unchanged",
            _restore_body([blobfmt.encode_instance(r) for r in records], req),
        )

    quiet = blobfmt.decode_instance(_ks_power_on_blob())  # nothing decodes: only the status bits matter
    b = _restore_body([blobfmt.encode_instance(_set_config(quiet, 0x06, bytes([0x10, 0xF9])))], "R-SR-004")
    ks = _Fn(b, SUITE_VM, KS_BDF, KITCHEN_SINK, DEFAULT_ECAM_BASE)
    b.check("R-CFG-006")
    for value in (0x0800, 0x0000, 0x8100):
        ks.cw(0x06, 2, value)
        ks.cr(0x06, 2)
    b.check("R-CFG-005")
    ks.cw(0x04, 4, 0xF900_0000)
    b.check("R-VAR-001")
    ks.cr(0x06, 2)
    s.add(
        "status-error-bits",
        "variants",
        "status error bits restored set are cleared one by one by writing ones (rw1c); under "
        "status=read-only they are not restorable and never change",
        b,
    )

    s.add(
        "restore-deferred-window",
        "variants",
        "a blob whose enabled BAR decodes away from its register is valid only under "
        "bar_move_while_decoding=deferred, where the copy keeps decoding there until re-enabled",
        _restore_body([_ks_deferred_blob()], "R-SR-005", move_after=True),
    )


# ---------------------------------------------------------------- blob format


def _restore_body(blobs: Sequence[bytes], rule: str, *, move_after: bool = False) -> _Body:
    """KS at 00:03.0 programmed at its alternate addresses, literal restores (each checking ``rule``),
    then reads of everything: what a rejected restore must leave unchanged (R-SR-007), or what an
    accepted one brought (R-SR-002)."""
    b = _Body()
    (ks,) = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK))
    _bring_up(ks, which=1, value=0x0A17_0000)
    ks.cw(0x3C, 1, 0x0C)
    accepted = [_restorable(blob) for blob in blobs]
    after = "R-SR-002" if all(accepted) else "R-SR-007"
    for blob in blobs:
        b.check(rule)
        ks.restore(data=blob)
        b.check(after)
        ks.cr(0x3C, 1)
    ks.cr(0x04)
    for which in (0, 1):
        for bar in ks.placed():
            ks.peek(bar, ks.addr(bar, which))
    for bar in ks.bars:
        ks.read_reg(bar)
    ks.cr(0x64)
    if move_after:
        b.check("R-DEC-005")
        ks.command(0)
        ks.command(CMD_IO | CMD_MEM)
        for which in (0, 1):
            ks.peek(ks.bar(1), ks.addr(ks.bar(1), which))
    b.check("R-SR-008" if all(accepted) else "R-ERR-001")
    ks.save("after")
    return b


def _snapshot_restorable(snapshot: bytes) -> bool:
    """Whether the default profile's model, knowing the suite's types, restores ``snapshot``."""
    manager = DataManager()
    for dtype in SUITE_TYPES.values():
        manager.register_type(dtype)
    try:
        manager.restore_vm(VM2, snapshot)
    except BlobError:
        return False
    return True


def _restorable(blob: bytes) -> bool:
    """Whether the default profile's model restores ``blob`` into kitchen-sink at 00:03.0."""
    try:
        _ks_manager().restore(SUITE_VM, KS_BDF, blob)
    except BlobError:
        return False
    return True


def _snapshot_body(snapshots: Sequence[bytes], rule: str) -> _Body:
    """VM 1 with two devices; literal snapshots (each checking ``rule``) restored over it and into a new
    VM 2; reads of both."""
    b = _Body()
    ks, _nic = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK), (NIC_BDF, E1000))
    _bring_up(ks, which=1)
    ks.cf8(0x08)
    b.check(rule)
    for snapshot in snapshots:
        b.restore_vm(SUITE_VM, data=snapshot)
        b.restore_vm(VM2, data=snapshot)
    accepted = all(_snapshot_restorable(snapshot) for snapshot in snapshots)
    b.check("R-SR-009" if accepted else "R-SR-007")
    for vm in (SUITE_VM, VM2):
        b.tables(vm)
        b.ior(vm, CF8, 4)
        b.ior(vm, CFC, 4)
        k = _Fn(b, vm, KS_BDF, KITCHEN_SINK, DEFAULT_ECAM_BASE)
        for which in (0, 1):
            k.peek(k.bar(1), k.addr(k.bar(1), which))
            k.peek(k.bar(0), k.addr(k.bar(0), which))
        k.mr(k.ecam(0x10))
    b.snapshot(SUITE_VM, "vm1")
    return b


def _sys_blob(s: _Sys) -> None:
    """R-BLOB-001..R-BLOB-005: literal blobs and snapshots, valid and broken."""
    good = _ks_blob()
    s.add(
        "instance-valid-literal",
        "blob",
        "a canonical literal blob restores its configuration, decode addresses and data, and saves "
        "back to the same bytes",
        _restore_body([good], "R-BLOB-003"),
    )

    magic, _major, _minor, sections = _split(good)
    body = good[:-32]
    flipped = bytearray(body)
    flipped[_payload_offset(good, 2) + 0x3C] ^= 0x01
    last_len_at = _section_header_offsets(good)[-1] + 4
    past_end = bytearray(body)
    past_end[last_len_at : last_len_at + 4] = struct.pack("<I", len(sections[-1][2]) + 1)
    rec = blobfmt.decode_instance(good)
    typ, _config, windows, memory, _extra = (sec[2] for sec in sections)
    loose_window = bytearray(windows)
    loose_window[0:9] = struct.pack("<BQ", 0, 0xC000)
    flag2 = bytearray(windows)
    flag2[9] = 2

    def with_section(tag: int, payload: bytes) -> bytes:
        return blobfmt.frame(magic, [(t, fl, payload if t == tag else p) for t, fl, p in sections])

    broken: list[tuple[str, str, str, list[bytes]]] = [
        (
            "framing",
            "R-BLOB-001",
            "no bytes, fewer bytes than a header and digest, half the bytes, the snapshot magic, or a "
            "non-zero reserved field",
            [
                b"",
                good[:40],
                good[: len(good) // 2],
                _digest(blobfmt.SNAPSHOT_MAGIC + good[8:-32]),
                blobfmt.frame(magic, sections, reserved=1),
            ],
        ),
        (
            "integrity",
            "R-BLOB-001",
            "a body byte changed after hashing, or a digest bit flipped",
            [bytes(flipped) + good[-32:], body + bytes([good[-32] ^ 0x80]) + good[-31:]],
        ),
        (
            "section-bounds",
            "R-BLOB-001",
            "a section running past the end, bytes after the last section, or a section count one short",
            [
                _digest(bytes(past_end)),
                _digest(good[:-32] + bytes(4)),
                blobfmt.frame(magic, sections, count=len(sections) - 1),
            ],
        ),
        (
            "versions",
            "R-BLOB-002",
            "major version 2 or 0, or an unknown critical section",
            [
                blobfmt.frame(magic, sections, major=2),
                blobfmt.frame(magic, sections, major=0),
                blobfmt.frame(magic, [*sections, (6, 1, b"x")], minor=1),
            ],
        ),
        (
            "section-order",
            "R-BLOB-002",
            "sections out of tag order, a tag repeated, a required section missing, or a section with "
            "tag 0 (tags start at 1)",
            [
                blobfmt.frame(magic, [sections[1], sections[0], *sections[2:]]),
                blobfmt.frame(magic, [(0, 0, b""), *sections]),
                blobfmt.frame(magic, [*sections[:2], sections[1], *sections[2:]]),
                blobfmt.frame(magic, sections[:-1]),
            ],
        ),
        (
            "section-contents",
            "R-BLOB-003",
            "a type section too long, a name that is not UTF-8, a 300-byte configuration, six windows, a "
            "page count disagreeing with the memory section, or a memory section too short for its count",
            [
                with_section(1, typ + b"\0"),
                with_section(1, typ[:1] + b"\xff" + typ[2:]),
                with_section(2, bytes(300)),
                with_section(3, windows[:-9]),
                with_section(4, struct.pack("<I", 9) + memory[4:]),
                with_section(4, memory[:3]),
            ],
        ),
        (
            "non-canonical",
            "R-BLOB-004",
            "an all-zero page, pages in descending order, a page stored twice, a page below the one before "
            "it but above the first, a non-decoding window with a base, or a decode flag of 2",
            [
                blobfmt.encode_instance(dataclasses.replace(rec, pages=(rec.pages[0], rec.pages[0]))),
                blobfmt.encode_instance(
                    dataclasses.replace(rec, pages=(rec.pages[0], rec.pages[2], rec.pages[1]))
                ),
                blobfmt.encode_instance(dataclasses.replace(rec, pages=(*rec.pages, (5, 0, bytes(4096))))),
                blobfmt.encode_instance(dataclasses.replace(rec, pages=tuple(reversed(rec.pages)))),
                with_section(3, bytes(loose_window)),
                with_section(3, bytes(flag2)),
            ],
        ),
    ]
    for name, req, what, blobs in broken:
        s.add(
            f"instance-rejects-{name}",
            "blob",
            f"blobs with {what} are each rejected (bad-blob) and the instance is unchanged",
            _restore_body(blobs, req),
        )
    s.add(
        "instance-skips-unknown-noncritical-section",
        "blob",
        "a minor-version blob with an unknown non-critical section is read, the section skipped",
        _restore_body([blobfmt.frame(magic, [*sections, (6, 0, b"future")], minor=1)], "R-BLOB-002"),
    )

    def with_windows(**bases: int | None) -> bytes:
        windows = list(rec.windows)
        for key, base in bases.items():
            windows[int(key[1:])] = base
        return blobfmt.encode_instance(dataclasses.replace(rec, windows=tuple(windows)))

    s.add(
        "instance-latched-windows",
        "blob",
        "decode windows a blob carries must be windows a BAR can have: naturally aligned, not at 0, and "
        "inside its address space (the last ones that fit are kept only where windows are latched, the "
        "deferred variant; elsewhere they must match the BAR registers)",
        _restore_body(
            [
                with_windows(w1=_plan(KITCHEN_SINK)[1][0] + 0x800),
                with_windows(w1=0),
                with_windows(w0=None, w1=_plan(KITCHEN_SINK)[1][0] + 0x800),
                with_windows(w4=0xFFFF_FFF0),
                with_windows(w4=0x1_0000_0000),
                with_windows(w0=0xFFE0),
                with_windows(w0=0x1_0000),
                with_windows(w2=(1 << 64) - (1 << 20)),
                with_windows(w6=0xFFFF_F800),
                with_windows(w6=0x1_0000_0000),
            ],
            "R-SR-005",
        ),
    )
    wrong_fp = dataclasses.replace(rec, fingerprint=hashlib.sha256(b"not the kitchen sink").digest())
    s.add(
        "instance-rejects-foreign-fingerprint",
        "blob",
        "a blob whose fingerprint is not that of its named type is rejected and changes nothing",
        _restore_body([blobfmt.encode_instance(wrong_fp)], "R-SR-003"),
    )

    snap = _snapshot()
    srec = blobfmt.decode_snapshot(snap)
    smagic, _, _, ssecs = _split(snap)
    vm_section = ssecs[0][2]
    devices = list(srec.devices)

    def snap_with(**changes: object) -> bytes:
        return blobfmt.encode_snapshot(dataclasses.replace(srec, **changes))  # type: ignore[arg-type]

    line_flipped = bytearray(devices[0][1])
    line_flipped[_payload_offset(devices[0][1], 2) + 0x3C] ^= 0x01  # interrupt line; its digest stays
    altered = bytes(line_flipped)

    s.add(
        "snapshot-valid-literal",
        "blob",
        "a canonical literal snapshot creates or replaces a VM with its ECAM window, 0xCF8, "
        "instances and decode order; so do the snapshot of a VM without devices and one whose ECAM window "
        "is the last that fits below 2^64",
        _snapshot_body(
            [snap, snap_with(devices=(), map_order=()), snap_with(ecam_base=(1 << 64) - ECAM_SIZE)],
            "R-BLOB-005",
        ),
    )
    entry = struct.pack("<HI", devices[0][0], len(devices[0][1]))
    one = struct.pack("<I", 1)
    sbroken: list[tuple[str, str, str, list[bytes]]] = [
        (
            "framing",
            "R-BLOB-001",
            "the instance blob magic, a changed body byte, or a broken instance blob",
            [
                good,
                snap[:-33] + bytes([snap[-33] ^ 1]) + snap[-32:],
                snap_with(devices=((devices[0][0], devices[0][1][:-1]), *devices[1:])),
            ],
        ),
        (
            "vm-section",
            "R-BLOB-005",
            "a 14-byte VM section, no ECAM flag but a base, or a misaligned ECAM base",
            [
                blobfmt.frame(smagic, [(1, 1, vm_section + b"\0"), *ssecs[1:]]),
                blobfmt.frame(smagic, [(1, 1, b"\0" + vm_section[1:]), *ssecs[1:]]),
                blobfmt.frame(
                    smagic,
                    [(1, 1, vm_section[:1] + struct.pack("<Q", 0xB000_1000) + vm_section[9:]), *ssecs[1:]],
                ),
            ],
        ),
        (
            "devices-and-order",
            "R-BLOB-005",
            "instances in descending BDF order, one BDF twice, a third instance below the second but above "
            "the first, a decoding BAR missing from the map order, a non-decoding BAR listed in it, or a "
            "map-order section too short for its count",
            [
                snap_with(devices=tuple(reversed(devices))),
                snap_with(devices=(devices[0], *devices)),
                snap_with(
                    devices=((0x08, devices[0][1]), devices[1], devices[0]),
                    map_order=(*srec.map_order, (0x08, 0)),
                ),
                blobfmt.frame(smagic, [*ssecs[:2], (ssecs[2][0], ssecs[2][1], b"\0\0\0")]),
                snap_with(map_order=srec.map_order[:-1]),
                snap_with(map_order=(*srec.map_order, (KS_BDF.packed, 3))),
            ],
        ),
        (
            "device-section",
            "R-BLOB-005",
            "a devices section too short for its count, an entry header cut short, an instance blob "
            "running past the section, or a byte after the last instance",
            [
                _unsealed_snapshot(ssecs, one[:3]),
                _unsealed_snapshot(ssecs, one + entry[:5]),
                _unsealed_snapshot(ssecs, one + entry + devices[0][1][:-1]),
                _unsealed_snapshot(ssecs, one + entry + devices[0][1] + b"\0"),
            ],
        ),
        (
            "unknown-type",
            "R-SR-006",
            "a device type the data manager does not know",
            [_foreign_snapshot(_MYSTERY, KS_BDF)],
        ),
        (
            "digest-tree",
            "R-BLOB-006",
            "an instance blob altered under its unchanged digest (so the snapshot's own digest still "
            "matches), or a digest over every byte instead of over the instances' digests",
            [snap_with(devices=((devices[0][0], altered), *devices[1:])), _digest(snap[:-32])],
        ),
    ]
    for name, req, what, snaps in sbroken:
        s.add(
            f"snapshot-rejects-{name}",
            "blob",
            f"snapshots with {what} are each rejected; VM 1 stays as it was and VM 2 is not created",
            _snapshot_body(snaps, req),
        )


# ---------------------------------------------------------------- errors


def _sys_errors(s: _Sys) -> None:
    """R-ERR-001..R-ERR-003: invalid arguments on the management operations."""

    b = _Body()
    (ks,) = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK))
    _bring_up(ks)
    b.check("R-ERR-002")
    ks.cr(0x3C, 3)
    ks.cw(0x06, 4, 0)
    ks.cw(0x3C, 1, 0x1FF)
    ks.ior(CF8, 8)
    ks.iow(0x1_0000, 1, 0)
    ks.mw(ks.addr(ks.bar(1)), 16, 0)
    ks.mw(ks.addr(ks.bar(1)), 4, 1 << 32)
    b.check("R-SR-007")
    ks.restore(data=b"not a blob")
    b.restore_vm(SUITE_VM, data=b"")
    b.check("R-ERR-003")
    b.create_vm(SUITE_VM)
    b.plug(SUITE_VM, KS_BDF, KITCHEN_SINK)
    b.check("R-ERR-001")
    _look(ks)
    b.tables(SUITE_VM)
    b.snapshot(SUITE_VM, "unchanged")
    s.add(
        "no-partial-effects",
        "errors",
        "a run of rejected operations of every kind leaves tables, configuration, data and 0xCF8 "
        "exactly as they were",
        b,
    )


# ---------------------------------------------------------------- system cases as data

SYSTEM_SCRIPTS: dict[str, tuple[Script, ...]] = {
    "data-structure": (
        Script(
            "create-vm-unique", "data-structure",
            "a new VM is empty with 0xCF8 zero; creating an existing VM id is rejected (duplicate-vm) and "
            "leaves that VM as it was",
            (
                (None, "vm 1; at 1 00:03.0 kitchen-sink"),
                ("R-CAM-003", "ior 0xCF8"),
                ("R-DS-001", "tables 1"),
                (None, "plug 1 00:03.0 kitchen-sink; bring-up"),
                ("R-ERR-003", "vm 1; vm 1 noecam"),
                ("R-ERR-001", "look; er 0x00; tables 1"),
            ),
        ),
        Script(
            "vm-id-range", "data-structure",
            "VM ids 0 and 0xFFFFFFFF are valid; ids outside 0-0xFFFFFFFF are rejected (invalid-argument)",
            (
                ("R-DS-001", "vm 0; plug 0 00:03.0 kitchen-sink; cr 0x00;"
                             "vm 0xFFFFFFFF; plug 0xFFFFFFFF 00:03.0 kitchen-sink; cr 0x00"),
                ("R-ERR-002", "vm 0x100000000; vm -1"),
                ("R-DS-001", "tables 0; tables 0xFFFFFFFF; destroy 0; tables 0xFFFFFFFF"),
            ),
        ),
        Script(
            "functions-independent", "data-structure",
            "each function of a device is independent: function 1 works without function 0 and writes to "
            "one never show in the other",
            (
                (None, "vm 1; plug 1 00:03.1 kitchen-sink; at 1 00:03.0 e1000"),
                ("R-ACC-006", "cr 0x00"),
                ("R-DS-003", "@00:03.1; cr 0x00; cr 0x0E/1; plug 1 00:03.0 e1000; cr 0x00; cw 0x04/2 0x2;"
                             "cw 0x3C/1 0x0A; @00:03.1; cr 0x04/2; cr 0x3C/1; unplug 1 00:03.0; cr 0x00"),
                ("R-ACC-006", "@00:03.0; cr 0x00"),
            ),
        ),
        Script(
            "unknown-device", "data-structure",
            "reset, save, restore and unplug of an empty BDF are rejected (unknown-device); its "
            "configuration reads all ones",
            (
                (None, "vm 1; plug 1 00:03.0 kitchen-sink; save ks; at 1 00:02.0 e1000"),
                ("R-DS-004", "reset; save none"),
                ("R-ERR-003", "restore ks"),
                ("R-HP-002", "unplug 1 00:02.0"),
                ("R-ACC-006", "cr 0x00; cw 0x3C/1 1; cr 0x3C; tables 1"),
            ),
        ),
    ),
    "hot-plug": (
        Script(
            "plug-power-on-and-occupied", "hot-plug",
            "a plugged instance starts at power-on with nothing decoding; plugging an occupied BDF is "
            "rejected (slot-occupied) and changes nothing",
            (
                (None, "vm 1; plug 1 00:03.0 kitchen-sink"),
                ("R-HP-001", "cr 0x00; cr 0x04; tables 1"),
                (None, "bring-up"),
                ("R-ERR-003", "plug 1 00:03.0 kitchen-sink; plug 1 00:03.0 e1000"),
                ("R-ERR-001", "at 1 00:03.0 kitchen-sink; look; tables 1"),
            ),
        ),
    ),
    "platform": (
        Script(
            "platform-ports-first", "config-mechanism",
            "an I/O BAR covering 0xCF8-0xCFF never receives accesses to those ports",
            (
                (None, "vm 1; plug 1 00:03.0 kitchen-sink; cw 0x10 0xCE0; cw 0x04/2 0x1;"
                       "iow 0xCE0 0x11111111; iow 0xCF4 0x22222222; ior 0xCE0; ior 0xCF4"),
                ("R-CAM-006", "cf8 0x00; ior 0xCF8; ior 0xCFC"),
                ("R-CAM-001", "ior 0xCF9/1; ior 0xCFA/2"),
                ("R-ACC-005", "ior 0xCF6"),
                ("R-CAM-006", "iow 0xCFC 0; iow 0xCFE/2 0xFFFF; cr 0x00; cw 0x04/2 0; ior 0xCF8; tables 1"),
            ),
        ),
        Script(
            "ecam-window-choice", "ecam",
            "a VM's ECAM window is the 256 MiB-aligned base it was created with, or none; a misaligned or "
            "overflowing base is rejected (invalid-argument)",
            (
                ("R-DS-001", "vm 1 ecam=0xC0000000; plug 1 00:03.0 kitchen-sink; vm 2 noecam;"
                             "plug 2 00:03.0 kitchen-sink"),
                ("R-ECAM-001", "at 1 00:03.0 kitchen-sink; er 0x00; mr 0xB0018000; @2/00:03.0; mr 0xB0018000;"
                               "cr 0x00"),
                ("R-RST-003", "reset-vm 1; at 1 00:03.0 kitchen-sink; er 0x00"),
                ("R-ERR-002", "vm 3 ecam=0xB0001000; vm 3 ecam=0xFFFFFFFFF8000000"),
                ("R-ECAM-001", "vm 3 ecam=0xFFFFFFFFF0000000; plug 3 00:03.0 kitchen-sink;"
                               "mr 0xFFFFFFFFF0018000"),
            ),
        ),
    ),
    "reset": (
        Script(
            "vm-reset", "reset",
            "a VM reset resets every instance and clears 0xCF8; the ECAM window and the set of instances "
            "stay",
            (
                (None, "vm 1 ecam=0x80000000; plug 1 00:03.0 kitchen-sink; plug 1 00:02.0 e1000; @00:03.0;"
                       "bring-up; @00:02.0; bring-up; @00:03.0; cf8 0x3C; iow 0xCFC/1 0x0B"),
                ("R-RST-003", "reset-vm 1"),
                ("R-CAM-003", "ior 0xCF8; ior 0xCFC"),
                ("R-RST-001", "cr 0x04; @00:02.0; cr 0x04"),
                ("R-RST-002", "@00:03.0; look; @00:02.0; look"),
                ("R-RST-003", "@00:03.0; er 0x00; @00:02.0; er 0x3C; tables 1"),
            ),
        ),
    ),
    "errors": (
        Script(
            "unknown-vm", "errors",
            "every operation naming a VM that was never created is rejected (unknown-vm)",
            (
                ("R-DS-002", "at 7 00:03.0 kitchen-sink; cr 0x00; cw 0x3C/1 0; ior 0xCF8; iow 0xCF8 0;"
                             "mr 0xB0000000; mw 0xB0000000 0; plug 7 00:03.0 kitchen-sink; unplug 7 00:03.0;"
                             "reset; reset-vm 7; save x; snapshot 7 x; tables 7"),
                ("R-ERR-003", "destroy 7"),
                ("R-ERR-001", "vm 7; tables 7"),
            ),
        ),
        Script(
            "error-order", "errors",
            "when several errors apply the first in R-ERR-002's order is reported: the VM id, the instance "
            "before the blob it would take, the width before the offset before the value, arguments before "
            "duplicate-vm and slot-occupied",
            (
                (None, "vm 1; plug 1 00:03.0 kitchen-sink"),
                ("R-ECAM-001", "vm 1 ecam=0x1000; vm 1 ecam=0xFFFFFFFFF8000000"),
                ("R-ERR-002", "vm 0x100000000; at 1 00:09.0 kitchen-sink; restore-bytes 'not a blob'; reset;"
                              "save x; @00:03.0; restore-bytes 'not a blob'; restore-bytes '';"
                              "at 7 00:03.0 kitchen-sink; restore-bytes 'not a blob';"
                              "restore-vm-bytes 0x100000000 'not a snapshot'"),
                ("R-ERR-003", "plug 1 00:03.0 kitchen-sink"),
                ("R-ERR-002", "at 1 00:03.0 kitchen-sink; cr 0x1000/3; cw 0x1000 0x100000000; cw 0x3E 0;"
                              "mr 0x10000000000000000/16; mw 0xFFFFFFFFFFFFFFFE 0x10000000000; tables 1"),
            ),
        ),
        Script(
            "address-space-top", "errors",
            "an ECAM window must end inside the 64-bit address space (the last one that does is "
            "accepted) and an MMIO access at 2^64 is rejected (invalid-argument), while the last dword "
            "below it is an ordinary unmapped access",
            (
                (None, "vm 1; plug 1 00:03.0 kitchen-sink"),
                ("R-ECAM-001", "vm 2 ecam=0x10000000000000000; vm 3 ecam=0xFFFFFFFFF0000000; tables 3"),
                ("R-ERR-002", "at 1 00:03.0 kitchen-sink; mw 0x10000000000000000 1; mr 0x10000000000000000;"
                              "tables 2"),
                ("R-ACC-004", "mw 0xFFFFFFFFFFFFFFFC 1; mr 0xFFFFFFFFFFFFFFFC"),
            ),
        ),
    ),
}  # fmt: skip
"""System cases that compute nothing, as data (:class:`_Player`), by the builders they sit next to."""


def _scripted_system(s: _Sys, group: str) -> None:
    for script in SYSTEM_SCRIPTS[group]:
        b = _Body()
        player = _Player(b)
        for row in script.rows:
            rule, steps = row[0], row[1]
            b.setup() if rule is None else b.check(rule)
            player.play(steps, system=True)
        s.add(script.name, script.group, script.description, b)


def system_cases() -> list[Case]:
    """Cases that create their own VMs and devices (``full_api``); the body starts right after ``init``."""
    s = _Sys()
    for build in (
        lambda s: _scripted_system(s, "data-structure"),
        _sys_data_structure,
        _sys_device_types,
        _sys_edu_state,
        _sys_type_rules,
        _sys_msi_clamp_edges,
        lambda s: _scripted_system(s, "hot-plug"),
        _sys_hot_plug,
        _sys_decode,
        lambda s: _scripted_system(s, "platform"),
        lambda s: _scripted_system(s, "reset"),
        _sys_save_restore,
        _sys_blob,
        _sys_errors,
        lambda s: _scripted_system(s, "errors"),
        lambda s: __import__("vpcid.conformance.variant_path_cases", fromlist=["_"]).variant_path_cases(s),
        lambda s: __import__("vpcid.conformance.register_cases", fromlist=["_"]).register_cases(s),
        lambda s: __import__("vpcid.conformance.platform_cases", fromlist=["_"]).platform_cases(s),
        lambda s: __import__("vpcid.conformance.irq_cases", fromlist=["_"]).irq_cases(s),
        lambda s: __import__("vpcid.conformance.variant_cases", fromlist=["_"]).variant_system_cases(s),
        lambda s: __import__("vpcid.conformance.bridge_cases", fromlist=["_"]).bridge_cases(s),
    ):
        build(s)
    return s.out


# ================================================================== literal blobs


_MYSTERY = DeviceType(
    name="mystery-device",
    vendor_id=0x1B36,
    device_id=0x00FE,
    class_code=0xFF0000,
    bars=(BarSpec(BarKind.MEM32, 4096),),
)
"""A device type no suite adapter knows, for snapshots naming an unknown type."""

_HDR = struct.Struct("<8sHHHH")
_SEC = struct.Struct("<HHI")
Section = tuple[int, int, bytes]


def _digest(body: bytes) -> bytes:
    """``body`` with the digest an instance blob's framing gives it (R-BLOB-001)."""
    return body + hashlib.sha256(body).digest()


def _section_header_offsets(blob: bytes) -> list[int]:
    count = _HDR.unpack_from(blob)[3]
    out, pos = [], _HDR.size
    for _ in range(count):
        out.append(pos)
        pos += _SEC.size + _SEC.unpack_from(blob, pos)[2]
    return out


def _unsealed_snapshot(sections: Sequence[Section], devices: bytes) -> bytes:
    """A snapshot with ``sections`` but ``devices`` as its devices section, framed by hand with a zero
    digest: a devices section whose entries cannot be walked has no digest to compare (R-BLOB-005,
    R-BLOB-006), so a reader rejects it before the digest."""
    body = [
        (tag, flags, devices if tag == blobfmt.TAG_DEVICE else payload) for tag, flags, payload in sections
    ]
    out = bytearray(
        _HDR.pack(blobfmt.SNAPSHOT_MAGIC, blobfmt.FORMAT_MAJOR, blobfmt.FORMAT_MINOR, len(body), 0)
    )
    for tag, flags, payload in body:
        out += _SEC.pack(tag, flags, len(payload)) + payload
    return bytes(out) + bytes(32)


def _split(blob: bytes) -> tuple[bytes, int, int, list[Section]]:
    """Magic, version and sections of a well-formed blob or snapshot."""
    magic, major, minor, _, _ = _HDR.unpack_from(blob)
    sections: list[Section] = []
    for pos in _section_header_offsets(blob):
        tag, flags, length = _SEC.unpack_from(blob, pos)
        sections.append((tag, flags, blob[pos + _SEC.size : pos + _SEC.size + length]))
    return magic, major, minor, sections


def _payload_offset(blob: bytes, tag: int) -> int:
    for pos in _section_header_offsets(blob):
        if _SEC.unpack_from(blob, pos)[0] == tag:
            return pos + _SEC.size
    raise KeyError(tag)


def _set_config(rec: blobfmt.InstanceRecord, offset: int, data: bytes) -> blobfmt.InstanceRecord:
    config = bytearray(rec.config)
    config[offset : offset + len(data)] = data
    return dataclasses.replace(rec, config=bytes(config))


def _ks_manager(profile: Profile | None = None) -> DataManager:
    dm = DataManager(profile or Profile())
    dm.create_vm(SUITE_VM)
    dm.plug(SUITE_VM, KS_BDF, KITCHEN_SINK)
    return dm


@cache
def _ks_blob() -> bytes:
    """Kitchen-sink with BARs 0, 1, 2 and the ROM decoding at their primary addresses and data in 3 BARs."""
    dm = _ks_manager()
    plan = _plan(KITCHEN_SINK)
    for index in (0, 1, 2):
        dm.config_write(SUITE_VM, KS_BDF, 0x10 + 4 * index, 4, plan[index][0] & ONES32)
    dm.config_write(SUITE_VM, KS_BDF, 0x18, 4, plan[2][0] & ONES32)
    dm.config_write(SUITE_VM, KS_BDF, 0x1C, 4, plan[2][0] >> 32)
    dm.config_write(SUITE_VM, KS_BDF, ROM_BAR, 4, plan[ROM][0] | 1)
    dm.config_write(SUITE_VM, KS_BDF, 0x04, 2, CMD_IO | CMD_MEM)
    dm.config_write(SUITE_VM, KS_BDF, 0x3C, 1, 0x0B)
    dm.config_write(SUITE_VM, KS_BDF, 0x64, 4, 0xCAFE_F00D)
    dm.io_write(SUITE_VM, plan[0][0] + 4, 4, 0x1000_0004)
    dm.mmio_write(SUITE_VM, plan[1][0] + 4, 4, 0x1100_0004)
    dm.mmio_write(SUITE_VM, plan[2][0] + 4, 4, 0x1200_0004)
    dm.mmio_write(SUITE_VM, plan[2][0] + 0x5000, 8, 0x1200_5000_1200_5000)
    return dm.save(SUITE_VM, KS_BDF)


@cache
def _ks_power_on_blob() -> bytes:
    """Kitchen-sink as plugged: power-on configuration, nothing decoding, no data."""
    return _ks_manager().save(SUITE_VM, KS_BDF)


@cache
def _ks_deferred_blob() -> bytes:
    """Kitchen-sink saved under bar_move_while_decoding=deferred: BAR1 decodes away from its register."""
    dm = _ks_manager(Profile(bar_move_while_decoding=BarMoveWhileDecoding.DEFERRED))
    plan = _plan(KITCHEN_SINK)
    dm.config_write(SUITE_VM, KS_BDF, 0x14, 4, plan[1][0])
    dm.config_write(SUITE_VM, KS_BDF, 0x04, 2, CMD_MEM)
    dm.mmio_write(SUITE_VM, plan[1][0] + 4, 4, 0xDEFE_0001)
    dm.config_write(SUITE_VM, KS_BDF, 0x14, 4, plan[1][1])
    return dm.save(SUITE_VM, KS_BDF)


@cache
def _snapshot() -> bytes:
    """VM with kitchen-sink and e1000 decoding, 0xCF8 set, overlapping BARs in a known decode order."""
    dm = DataManager()
    dm.create_vm(SUITE_VM)
    dm.plug(SUITE_VM, NIC_BDF, E1000)
    dm.plug(SUITE_VM, KS_BDF, KITCHEN_SINK)
    ks, nic = _plan(KITCHEN_SINK), _plan(E1000)
    dm.config_write(SUITE_VM, KS_BDF, 0x14, 4, ks[1][0])
    dm.config_write(SUITE_VM, KS_BDF, 0x10, 4, ks[0][0])
    dm.config_write(SUITE_VM, KS_BDF, 0x04, 2, CMD_IO | CMD_MEM)
    dm.mmio_write(SUITE_VM, ks[1][0] + 4, 4, 0x5555_0004)
    dm.config_write(SUITE_VM, NIC_BDF, 0x10, 4, nic[0][0])
    dm.config_write(SUITE_VM, NIC_BDF, 0x04, 2, CMD_MEM)
    dm.mmio_write(SUITE_VM, nic[0][0] + 4, 4, 0x2222_0004)
    dm.io_write(SUITE_VM, CF8, 4, 0x8000_1808)
    return dm.snapshot(SUITE_VM)


def _foreign_manager(dtype: DeviceType, bdf: Bdf) -> DataManager:
    dm = DataManager()
    dm.create_vm(SUITE_VM)
    dm.plug(SUITE_VM, bdf, dtype)
    dm.config_write(SUITE_VM, bdf, 0x10, 4, _LOW_START)
    dm.config_write(SUITE_VM, bdf, 0x04, 2, CMD_MEM)
    return dm


def _foreign_blob(dtype: DeviceType, bdf: Bdf) -> bytes:
    return _foreign_manager(dtype, bdf).save(SUITE_VM, bdf)


def _foreign_snapshot(dtype: DeviceType, bdf: Bdf) -> bytes:
    return _foreign_manager(dtype, bdf).snapshot(SUITE_VM)


# ================================================================== the library


def _suffix(target: Target) -> str:
    b = target.bdf
    return f"{target.dtype.name}-{b.bus:02x}-{b.device:02x}-{b.function}"


def all_cases(targets: Sequence[Target]) -> list[Case]:
    """Device cases for each target (names suffixed with type and BDF), then the system cases."""
    out: list[Case] = []
    for target in targets:
        suffix = _suffix(target)
        out += [dataclasses.replace(c, name=f"{c.name}-{suffix}") for c in device_cases(target)]
    return out + system_cases()


def default_targets() -> list[Target]:
    """One target per suite type in VM 1 with the default ECAM window (for full-API adapters)."""
    placement = (
        ("e1000", NIC_BDF),
        ("kitchen-sink", KS_BDF),
        ("express-sink", EXP_BDF),
        ("a100", GPU_BDF),
        ("nvme", Bdf(0, 6, 0)),
        ("edu", EDU_BDF),
    )
    return [Target(SUITE_VM, bdf, SUITE_TYPES[name], DEFAULT_ECAM_BASE) for name, bdf in placement]


__all__ = ["GROUPS", "Case", "Target", "all_cases", "default_targets", "device_cases", "system_cases"]
