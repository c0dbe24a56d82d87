"""Machine descriptions: a TOML file that builds one VM in a :class:`~vpcid.model.DataManager`.

spec/formats/machine.md is the format's user documentation. In short::

    [vm]
    id = 1                      # VM id, 0-0xffffffff (required)
    ecam_base = 0xb0000000      # optional: ECAM window base; false = no ECAM window
    [vm.profile]                # optional: variant axes, as in a profile manifest
    overlap = "last-mapped"

    [[device]]
    bdf = "00:02.0"             # bus:device.function, hexadecimal bus and device
    type = "e1000"              # a device type name from vpcid.model.CATALOG
    bars = { 0 = 0xfebc0000, 1 = 0xc000 }   # optional: BAR index -> address
    rom = 0xfeb80000            # optional: expansion ROM address, programmed enabled
    writes = [[0x3c, 1, 0x0b]]  # optional: further configuration writes [offset, width, value]
    command = 0x7               # optional: command register, written last

A top-level ``types = ["my-types.json"]`` names device-type files
(spec/formats/device-type.md, paths relative to the machine file) whose
types ``type`` may name besides the suite's; :func:`load_machine` also
takes types directly (``--types``).

Devices are programmed the way firmware does it, in BDF order: each
address is written to its BAR register(s) with ``config_write`` (both
dwords of a 64-bit BAR), then the ROM BAR with its enable bit, then the
further writes in order, then the command register. Every mistake raises :class:`MachineError` naming the
place and what to change; unknown keys are rejected, never ignored. Files are read through
:mod:`vpcid.conformance.inputs` (regular files of at most 4 MiB, UTF-8, depth and integer limits).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, NoReturn

from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.discovery import type_difference
from vpcid.conformance.inputs import MIB, decode_text, parse_toml, read_text
from vpcid.conformance.typefile import load_types
from vpcid.model.bdf import Bdf
from vpcid.model.configspace import address_limit
from vpcid.model.devicetype import BAR0, COMMAND, ROM_BAR, BarKind, DeviceType
from vpcid.model.errors import VpcidError
from vpcid.model.manager import DEFAULT_ECAM_BASE, MAX_VM_ID, DataManager
from vpcid.model.profile import Profile

TOP_LEVEL_KEYS = ("vm", "device", "types")
VM_KEYS = ("id", "ecam_base", "profile")
DEVICE_KEYS = ("bdf", "type", "bars", "rom", "writes", "command")
ROM_ENABLE = 0x1
MACHINE_FILE_LIMIT = 4 * MIB
"""Largest machine file read."""
ROM_ADDRESS_LIMIT = 1 << 32
"""The expansion ROM BAR is a 32-bit register."""

MachineSource = str | os.PathLike[str] | Traversable
"""A ``str`` is the TOML text itself; a path or importlib resource names a file to read."""


class MachineError(VpcidError, ValueError):
    """A machine description is malformed or asks for something its devices cannot do."""

    kind = "bad-machine"


@dataclass(frozen=True)
class Machine:
    """A VM built from a machine description: the manager that holds it and its id."""

    manager: DataManager
    vm_id: int


@dataclass(frozen=True, slots=True)
class _DevicePlan:
    """One validated ``[[device]]`` entry, ready to be plugged and programmed."""

    bdf: Bdf
    dtype: DeviceType
    bars: tuple[tuple[int, int], ...]
    rom: int | None
    writes: tuple[tuple[int, int, int], ...]
    command: int | None


def demo_machine_file() -> Traversable:
    """The machine description bundled with the package (``data/demo-machine.toml``)."""
    return resources.files("vpcid.conformance") / "data" / "demo-machine.toml"


def load_machine(source: MachineSource, types: Mapping[str, DeviceType] | None = None) -> Machine:
    """Build the VM a machine description describes; ``source`` is TOML text or a file.

    ``types`` adds device types ``type`` may name (``--types`` files).
    """
    if isinstance(source, str):
        return parse_machine(source, types=types)
    origin = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    if isinstance(source, os.PathLike):
        try:
            text = read_text(Path(source), MACHINE_FILE_LIMIT, MachineError)
        except MachineError as exc:
            reason = str(exc).removeprefix(f"{origin}: ").removeprefix("cannot read: ")
            fix = "" if "; " in reason else "; check the path"
            raise MachineError(f"cannot read machine file {origin}: {reason}{fix}") from None
        return parse_machine(text, origin=origin, types=types, folder=Path(origin).parent)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise MachineError(f"{origin}: cannot read: {exc.strerror or type(exc).__name__}") from None
    return parse_machine(decode_text(data, origin, MachineError), origin=origin, types=types)


def parse_machine(
    text: str,
    *,
    origin: str = "<machine text>",
    types: Mapping[str, DeviceType] | None = None,
    folder: Path | None = None,
) -> Machine:
    """Build the VM described by the TOML document ``text``; ``origin`` prefixes error messages,
    ``folder`` is where relative ``types`` paths start (the current folder by default).

    The text is parsed with the bounded TOML reader (depth and integer limits).
    """
    if len(text) > MACHINE_FILE_LIMIT:
        raise MachineError(f"{origin}: more than the {MACHINE_FILE_LIMIT}-character limit for a machine file")
    document = parse_toml(text, origin, MachineError)
    return _MachineReader(origin, types or {}, folder or Path()).build(document)


class _MachineReader:
    """Validates a parsed machine description and builds its VM; errors name ``origin``."""

    def __init__(self, origin: str, types: Mapping[str, DeviceType], folder: Path) -> None:
        self.origin = origin
        self.known: dict[str, DeviceType] = {**SUITE_TYPES, **types}
        self.folder = folder

    def fail(self, where: str, problem: str) -> NoReturn:
        raise MachineError(f"{self.origin}: {where}: {problem}")

    # ------------------------------------------------------------ document
    def build(self, document: Mapping[str, Any]) -> Machine:
        self.check_keys("top level", document, TOP_LEVEL_KEYS, required=("vm",))
        self.type_files(document.get("types", []))
        vm = self.table("[vm]", document["vm"])
        self.check_keys("[vm]", vm, VM_KEYS, required=("id",))
        vm_id = self.integer("[vm] id", vm["id"], MAX_VM_ID)
        ecam_base = self.ecam_base(vm.get("ecam_base", DEFAULT_ECAM_BASE))
        profile = self.profile(vm.get("profile", {}))
        plans = self.devices(document.get("device", []))

        manager = DataManager(profile)
        try:
            manager.create_vm(vm_id, ecam_base=ecam_base)
        except VpcidError as exc:
            self.fail("[vm]", str(exc))
        for plan in plans:
            self.program(manager, vm_id, plan)
        return Machine(manager, vm_id)

    def type_files(self, value: object) -> None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail("types", "types is an array of device-type file paths")
        for name, entry in load_types(self.folder / v for v in value).items():
            known = self.known.get(name)
            if known is not None and known != entry.dtype:
                origin = "the suite's type" if known is SUITE_TYPES.get(name) else "the --types type"
                difference = type_difference(known, entry.dtype)
                self.fail("types", f"{name!r} is not {origin} of that name: {difference}; rename one of them")
            self.known[name] = entry.dtype

    def ecam_base(self, value: object) -> int | None:
        if value is False:
            return None
        return self.integer("[vm] ecam_base", value, (1 << 64) - 1, extra_hint=" or false for no ECAM")

    def profile(self, value: object) -> Profile:
        table = self.table("[vm.profile]", value)
        try:
            return Profile.from_mapping(table)
        except VpcidError as exc:
            self.fail("[vm.profile]", str(exc))

    def devices(self, value: object) -> list[_DevicePlan]:
        if not isinstance(value, list):
            self.fail("device", "devices are an array of tables; write each one as [[device]]")
        plans: dict[Bdf, _DevicePlan] = {}
        for number, entry in enumerate(value, start=1):
            plan = self.device(f"[[device]] #{number}", entry)
            if plan.bdf in plans:
                self.fail(f"[[device]] #{number}", f"BDF {plan.bdf} is used twice; give each device its own")
            plans[plan.bdf] = plan
        return [plans[bdf] for bdf in sorted(plans)]  # firmware enumerates in BDF order

    # -------------------------------------------------------------- device
    def device(self, where: str, value: object) -> _DevicePlan:
        entry = self.table(where, value)
        if "bdf" not in entry:
            self.fail(where, "missing required key 'bdf'")
        bdf = self.bdf(where, entry["bdf"])
        where = f"{where} ({bdf})"
        self.check_keys(where, entry, DEVICE_KEYS, required=("type",))
        type_name = entry["type"]
        dtype = self.known.get(type_name) if isinstance(type_name, str) else None
        if dtype is None:
            known = ", ".join(sorted(self.known))
            shown = repr(type_name) if isinstance(type_name, str) else _describe(type_name)
            self.fail(where, f"unknown device type {shown}; use one of: {known}")
        bars = self.bars(where, dtype, entry.get("bars", {}))
        rom = self.rom(where, dtype, entry["rom"]) if "rom" in entry else None
        writes = self.writes(where, dtype, entry.get("writes", []))
        command = self.command(where, dtype, entry["command"]) if "command" in entry else None
        return _DevicePlan(bdf, dtype, bars, rom, writes, command)

    def writes(self, where: str, dtype: DeviceType, value: object) -> tuple[tuple[int, int, int], ...]:
        label = f"{where} writes"
        if not isinstance(value, list):
            self.fail(label, "writes is an array of [offset, width, value] arrays")
        out: list[tuple[int, int, int]] = []
        for number, item in enumerate(value):
            if not isinstance(item, list) or len(item) != 3:
                self.fail(f"{label}[{number}]", "each write is [offset, width, value]")
            width = item[1]
            if width not in (1, 2, 4) or type(width) is not int:
                self.fail(f"{label}[{number}]", f"width is 1, 2 or 4, got {_describe(width)}")
            offset = self.integer(f"{label}[{number}] offset", item[0], dtype.config_size - width)
            if offset % 4 + width > 4:
                self.fail(f"{label}[{number}]", f"{offset:#x}+{width} crosses a dword")
            out.append(
                (offset, width, self.integer(f"{label}[{number}] value", item[2], (1 << 8 * width) - 1))
            )
        return tuple(out)

    def bdf(self, where: str, value: object) -> Bdf:
        if not isinstance(value, str):
            self.fail(where, f'bdf must be a string like "00:02.0", got {_describe(value)}')
        try:
            return Bdf.parse(value)
        except VpcidError as exc:
            self.fail(where, f'{exc}; write bus:device.function in hex, e.g. "00:02.0"')

    def bars(self, where: str, dtype: DeviceType, value: object) -> tuple[tuple[int, int], ...]:
        table = self.table(f"{where} bars", value)
        implemented = [i for i in range(6) if dtype.bar(i) is not None]
        choices = ", ".join(str(i) for i in implemented) or "none"
        programmed: list[tuple[int, int]] = []
        for key, address in table.items():
            if key not in ("0", "1", "2", "3", "4", "5"):
                self.fail(
                    f"{where} bars", f"key {key!r} is not a BAR index 0-5; {dtype.name} has BARs {choices}"
                )
            index = int(key)
            bar = dtype.bar(index)
            if bar is None:
                lower = dtype.bar(index - 1) if index > 0 else None
                if lower is not None and lower.kind is BarKind.MEM64:
                    self.fail(
                        f"{where} bars",
                        f"BAR {index} of {dtype.name} is the upper half of 64-bit BAR {index - 1}; "
                        f"give the whole 64-bit address under key {index - 1}",
                    )
                self.fail(
                    f"{where} bars", f"{dtype.name} does not implement BAR {index}; it has BARs {choices}"
                )
            label = f"{where} BAR {index}"
            limit = address_limit(bar.kind)
            base = self.integer(label, address, limit - 1)
            self.check_window(label, base, bar.size, limit)
            programmed.append((index, base))
        return tuple(sorted(programmed))

    def rom(self, where: str, dtype: DeviceType, value: object) -> int:
        label = f"{where} rom"
        if dtype.rom is None:
            self.fail(label, f"{dtype.name} has no expansion ROM; remove the rom key")
        address = self.integer(label, value, ROM_ADDRESS_LIMIT - 1)
        self.check_window(label, address, dtype.rom.size, ROM_ADDRESS_LIMIT)
        return address

    def command(self, where: str, dtype: DeviceType, value: object) -> int:
        label = f"{where} command"
        command = self.integer(label, value, 0xFFFF)
        unsupported = command & ~dtype.command_mask
        if unsupported:
            self.fail(
                label,
                f"bits {unsupported:#x} are not implemented by {dtype.name}; "
                f"use only bits of {dtype.command_mask:#06x}",
            )
        return command

    def check_window(self, label: str, address: int, size: int, limit: int) -> None:
        """An address firmware could program: non-zero, aligned to the size, below the limit."""
        if address == 0:
            self.fail(label, "address 0 means unassigned; remove the entry instead")
        if address % size:
            lower = address - address % size
            self.fail(
                label,
                f"address {address:#x} is not a multiple of the size {_human_size(size)} ({size:#x}); "
                f"use e.g. {lower or size:#x}",
            )
        if address + size > limit:
            self.fail(
                label,
                f"window {address:#x}+{_human_size(size)} ends above {limit:#x}; choose a lower address",
            )

    # ------------------------------------------------------------ building
    def program(self, manager: DataManager, vm_id: int, plan: _DevicePlan) -> None:
        """Plug one device and program it as firmware would, through configuration writes."""
        try:
            manager.plug(vm_id, plan.bdf, plan.dtype)
            for index, address in plan.bars:
                offset = BAR0 + 4 * index
                manager.config_write(vm_id, plan.bdf, offset, 4, address & 0xFFFF_FFFF)
                bar = plan.dtype.bar(index)
                if bar is not None and bar.kind is BarKind.MEM64:
                    manager.config_write(vm_id, plan.bdf, offset + 4, 4, address >> 32)
            if plan.rom is not None:
                manager.config_write(vm_id, plan.bdf, ROM_BAR, 4, plan.rom | ROM_ENABLE)
            for offset, width, value in plan.writes:
                manager.config_write(vm_id, plan.bdf, offset, width, value)
            if plan.command is not None:
                manager.config_write(vm_id, plan.bdf, COMMAND, 2, plan.command)
        except VpcidError as exc:
            self.fail(f"device {plan.bdf}", str(exc))

    # -------------------------------------------------------------- values
    def table(self, where: str, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"expected a table, got {_describe(value)}")
        return value

    def check_keys(
        self, where: str, table: Mapping[str, Any], allowed: Iterable[str], *, required: Iterable[str] = ()
    ) -> None:
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.fail(where, f"unknown key {key!r}; {hint}allowed: {', '.join(allowed)}")
        for key in required:
            if key not in table:
                self.fail(where, f"missing required key {key!r}")

    def integer(self, where: str, value: object, top: int, *, extra_hint: str = "") -> int:
        if type(value) is not int:
            self.fail(where, f"expected an integer such as 0x1000{extra_hint}, got {_describe(value)}")
        if not 0 <= value <= top:
            self.fail(where, f"{value:#x} is out of range; use 0-{top:#x}")
        return value


def _describe(value: object) -> str:
    """A value as TOML would spell it, with its kind, for error messages."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if isinstance(value, float):
        return f"{value!r} (a float)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _human_size(size: int) -> str:
    """``64K``, ``64G``: a size in the largest binary unit that divides it."""
    units = ("", "K", "M", "G", "T", "P", "E")
    step = 0
    while size and size % 1024 == 0 and step < len(units) - 1:
        size //= 1024
        step += 1
    return f"{size}{units[step]}"
