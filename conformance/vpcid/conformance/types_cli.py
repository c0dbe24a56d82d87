"""``vpcid types``: list, export and check device types (spec/formats/device-type.md)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.discovery import discover_command
from vpcid.conformance.importer import (
    import_sources,
    machine_text,
    read_overlay,
    relative_reference,
)
from vpcid.conformance.typefile import TypeEntry, load_types, read_type_file, type_file_json, write_type_file
from vpcid.model import DeviceType
from vpcid.model.errors import DeviceTypeError
from vpcid.model.registers import BarRegister, RegisterMap

TYPES_OPTION = click.option(
    "--types",
    "type_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="A device-type file (spec/formats/device-type.md); repeatable.",
)


def known_types(type_files: Sequence[Path]) -> dict[str, DeviceType]:
    """The suite's types, then those of ``--types`` files (a file may not redefine a suite type)."""
    found = dict(SUITE_TYPES)
    for name, entry in load_types(type_files).items():
        if name in found and found[name] != entry.dtype:
            raise click.UsageError(f"--types: {name!r} is a suite type; give your type another name")
        found[name] = entry.dtype
    return found


def _capabilities(t: DeviceType) -> str:
    """``[40] 0x01`` per capability, ``[100] ext 0x0001 v1`` per extended one, as lspci numbers them."""
    shown = (f"ext {e.cap_id:#06x} v{e.version}" if e.extended else f"{e.cap_id:#04x}" for e in t.chain)
    return ", ".join(f"[{e.offset:x}] {text}" for e, text in zip(t.chain, shown, strict=True))


def class_runs(reg: BarRegister) -> str:
    """A register's bits by class, most significant first: ``31:16 rsvd, 15:0 rw`` (R-REG-001)."""
    classes = reg.classes()
    runs: list[tuple[int, int, str]] = []
    for bit, access in enumerate(classes):
        if runs and runs[-1][2] == access.value:
            runs[-1] = (runs[-1][0], bit, access.value)
        else:
            runs.append((bit, bit, access.value))
    return ", ".join(
        f"{high}:{low} {name}" if high != low else f"{low} {name}" for low, high, name in runs[::-1]
    )


def effect_text(reg: BarRegister) -> str:
    """A register's side effects in order: ``set STATUS 0x1 when 0x1`` (R-REG-009)."""
    return "; ".join(
        f"{e.action.value} {e.target} {e.mask:#x}" + (f" when {e.when:#x}" if e.when else "")
        for e in reg.on_write
    )


def register_summary(t: DeviceType) -> str:
    """``18: BAR0 14, BAR1 4`` for a type with a register map, else empty."""
    if not isinstance(t.behaviour, RegisterMap):
        return ""
    regs = t.behaviour.registers
    per_bar = ", ".join(f"BAR{bar} {sum(r.bar == bar for r in regs)}" for bar in sorted(t.behaviour.bars))
    return f"{len(regs)}: {per_bar}"


def print_registers(t: DeviceType, console: Console) -> None:
    """One row per register of ``t``'s register map: where, width, name, reset, classes, side effects."""
    if not isinstance(t.behaviour, RegisterMap):
        console.print(
            f"{t.name}: no registers (BAR behaviour {t.behaviour.name if t.behaviour else 'memory'})"
        )
        return
    table = Table(title=f"{t.name}: registers")
    for column in ("BAR", "offset", "width", "name", "reset", "bits", "side effects"):
        table.add_column(column)
    for reg in t.behaviour.registers:
        table.add_row(str(reg.bar), f"{reg.offset:#x}", str(reg.width), reg.name,
                      f"{reg.reset:#0{2 + 2 * reg.width}x}", class_runs(reg), effect_text(reg))  # fmt: skip
    console.print(table)


def print_types(types: Sequence[DeviceType], console: Console) -> None:
    """One row per type: IDs, class, BARs, ROM, capabilities (offset and ID), behaviours, registers,
    fingerprint."""
    table = Table(title="device types")
    for column in ("name", "IDs", "class", "BARs", "ROM", "capabilities", "behaviour", "registers",
                   "fingerprint"):  # fmt: skip
        table.add_column(column)
    for t in types:
        bars = ", ".join(f"{i}:{b.kind.value} {b.size:#x}" for i, b in enumerate(t.bars) if b is not None)
        behaviour = t.behaviour.name if t.behaviour is not None else "memory"
        if t.config_behaviour is not None:
            behaviour += f" + {t.config_behaviour.name}"
        table.add_row(
            t.name, f"{t.vendor_id:04x}:{t.device_id:04x}", f"{t.class_code:06x}", bars,
            f"{t.rom.size:#x}" if t.rom else "", _capabilities(t), behaviour, register_summary(t),
            t.fingerprint().hex()[:16],
        )  # fmt: skip
    console.print(table)


@click.group("types", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Write the types as a device-type file to stdout.")
@TYPES_OPTION
@click.pass_context
def types_group(ctx: click.Context, as_json: bool, type_files: tuple[Path, ...]) -> None:
    """The device types the suite plugs by name, and those of --types files.

    \b
    Examples:
      vpcid types
      vpcid types --json > suite-types.json
      vpcid types check my-device.json
      vpcid types registers my-nic --types my-nic.json
      vpcid types import lspci-xxxx.txt -o imported.json --machine imported.toml
    """
    if ctx.invoked_subcommand is not None:
        return
    types = list(known_types(type_files).values())
    if as_json:
        click.echo(json.dumps(type_file_json(types), indent=1))
        return
    print_types(types, Console() if sys.stdout.isatty() else Console(width=160))


types_group.add_command(discover_command)


@types_group.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def types_check(files: tuple[Path, ...]) -> None:
    """Validate device-type files; print each type's fingerprint and capability chain, and run the PCI
    rules of the structures each declares (R-DT-009): exit status 1 when a type breaks one.

    \b
    Examples:
      vpcid types check my-device.json
      vpcid types --json > suite.json && vpcid types check suite.json
    """
    entries: list[TypeEntry] = []
    for path in files:
        entries += read_type_file(path)
    broken = 0
    for entry in entries:
        t = entry.dtype
        click.echo(f"{t.name}: {t.fingerprint().hex()}  {t.config_size} bytes, chain [{_capabilities(t)}]")
        if isinstance(t.behaviour, RegisterMap):
            click.echo(f"  registers {register_summary(t)}")
        for note in entry.notes:
            click.echo(f"  note: {note}")
        try:
            t.check_pci()
        except DeviceTypeError as error:
            broken += 1
            click.echo(f"  breaks the PCI rules (R-DT-009): {error}")
    if broken:
        raise SystemExit(1)


@types_group.command("registers")
@click.argument("name")
@TYPES_OPTION
def types_registers(name: str, type_files: tuple[Path, ...]) -> None:
    """Show a type's register map: each register's BAR, offset, width, reset value, classes by bit and
    side effects (spec/requirements/07-registers.md).

    \b
    Examples:
      vpcid types registers my-nic --types my-nic.json
    """
    found = known_types(type_files)
    if name not in found:
        raise click.UsageError(f"no device type {name!r}; `vpcid types` lists them (add --types FILE)")
    print_registers(found[name], Console() if sys.stdout.isatty() else Console(width=160))


@types_group.command("import")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The device-type file to write (one type per function).",
)
@click.option(
    "--overlay",
    "overlay_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Corrections to what the dump and the PCI rules say (spec/formats/import.md).",
)
@click.option("--name", help="The type's name, when the sources hold one function.")
@click.option(
    "--machine",
    "machine_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a machine file that plugs each function and programs it to show its dump.",
)
def types_import(
    sources: tuple[Path, ...],
    output: Path,
    overlay_file: Path | None,
    name: str | None,
    machine_file: Path | None,
) -> None:
    """Import configuration-space dumps as device types (spec/formats/import.md).

    \b
    A SOURCE is lspci -x/-xxx/-xxxx text (with or without -v/-vv lines, one
    function or many), a sysfs function folder (/sys/bus/pci/devices/...,
    its config and resource files) or a binary config file. Nothing is
    written unless every function imports.

    \b
    Examples:
      vpcid types import /sys/bus/pci/devices/0000:00:03.0 -o nic.json --machine nic.toml
      lspci -vv -xxxx > host.txt && vpcid types import host.txt -o host.json
      vpcid types import config.bin --overlay sizes.json -o mine.json --name my-device
    """
    overlay = read_overlay(overlay_file) if overlay_file is not None else None
    functions = import_sources(sources, name=name, overlay=overlay)
    machine = None
    if machine_file is not None:
        machine = machine_text(functions, relative_reference(output, machine_file))
    write_type_file(output, [f.entry for f in functions])
    if machine_file is not None and machine is not None:
        machine_file.write_text(machine, encoding="utf-8")
    for function in functions:
        t = function.dtype
        click.echo(f"{t.name}: {t.fingerprint().hex()}  from {function.dump.source}, "
                   f"{len(function.entry.notes)} notes")  # fmt: skip
        for offset, bits in function.unreproducible:
            click.echo(f"  not reproducible by configuration writes: byte {offset:#05x} bits {bits:#04x}")
    click.echo(f"wrote {output}" + (f" and {machine_file}" if machine_file is not None else ""))
