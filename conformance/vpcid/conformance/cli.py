"""The ``vpcid`` command line.

``main`` is a click group; every command is attached with
``main.add_command(...)`` at the bottom of this module. Any
:class:`~vpcid.model.errors.VpcidError` a command raises is reported as one
line, ``vpcid: error: <message>``, on stderr with exit status 2. The exit
statuses (0 conformant, 1 not conformant, 2 bad input, 3 adapter
unavailable) are in ``vpcid --help`` and the README.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import click
from vpcid.conformance.lspci import (
    IdFilter,
    LspciOptions,
    SlotFilter,
    dump_functions,
    machine_functions,
    render,
)
from vpcid.conformance.machine import demo_machine_file, load_machine
from vpcid.conformance.pciids import DEFAULT_PCI_IDS, IdNames, PciIds
from vpcid.conformance.types_cli import TYPES_OPTION, known_types
from vpcid.model.errors import VpcidError

EXIT_ERROR = 2
"""Exit status for rejected input, the same click uses for usage errors."""


class ReportedError(click.ClickException):
    """A :class:`VpcidError` on its way to the user: one line on stderr, exit status 2."""

    exit_code = EXIT_ERROR

    def __init__(self, error: VpcidError) -> None:
        super().__init__(" ".join(str(error).splitlines()))
        self.error = error

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"vpcid: error: {self.format_message()}", file=file, err=True)


class VpcidGroup(click.Group):
    """A click group whose commands report :class:`VpcidError` as one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VpcidError as exc:
            raise ReportedError(exc) from exc


MAIN_EPILOG = """\b
Examples:
  vpcid certify --adapter reference                 # the model certifies itself
  vpcid certify --adapter mymodule:factory          # your implementation (mymodule.py here)
  vpcid replay counterexamples/r-cfg-006-001.jsonl --adapter mymodule:factory
  vpcid lspci -vv                                   # the demo machine, as lspci shows it
  vpcid COMMAND --help                              # each command's options and examples

\b
Exit status:
  0  conformant: every check passed (or the command did its job)
  1  not conformant: a finding, a failing or unrun vector, a divergence replayed
  2  bad input: a file, an option or the adapter argument (one line: vpcid: error: ...)
  3  the adapter cannot run on this machine (the reason is printed)"""


@click.group(cls=VpcidGroup, epilog=MAIN_EPILOG)
@click.version_option(package_name="vpcid", prog_name="vpcid")
def main() -> None:
    """Reference model and conformance suite for virtual PCI device data managers.

    Certify an implementation of the data manager, or of one device as a VMM
    shows it, against the executable specification: per requirement a
    verdict, and every divergence shrunk to a trace vpcid replay reproduces.
    Write your own adapter from docs/example-adapter.md.
    """


@click.command(
    "lspci",
    short_help="List PCI functions the way pciutils' lspci does.",
    epilog=("\b\nExit status:\n  0  listed\n  2  bad input: a machine, type or dump file, or an option"),
)
@click.option(
    "-v",
    "verbose",
    count=True,
    help="Be verbose: -v decoded header and regions, -vv capabilities, -vvv more.",
)
@click.option(
    "-x", "hex_dump", count=True, help="Hex dump: -x standard header, -xxx 256 bytes, -xxxx 4096 bytes."
)
@click.option("-n", "numeric", count=True, help="Numeric IDs: -n numbers only, -nn names and numbers.")
@click.option("-D", "always_domains", is_flag=True, help="Always show domain numbers.")
@click.option("-t", "tree", is_flag=True, help="Show the bus tree (with -v: names), as lspci -t draws it.")
@click.option(
    "-s", "slot", metavar="[[[[DOMAIN]:]BUS]:][DEV][.[FN]]", help="Show only functions in these slots."
)
@click.option(
    "-d", "ids", metavar="[VENDOR]:[DEVICE][:CLASS[:PROGIF]]", help="Show only functions with these IDs."
)
@click.option(
    "-i",
    "id_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help=f"Use this pci.ids database instead of {DEFAULT_PCI_IDS}.",
)
@click.option(
    "-F",
    "dump_file",
    type=click.Path(path_type=Path),
    default=None,
    metavar="FILE",
    help="Show a dump, not a machine: lspci -x/-xxx/-xxxx text, a sysfs function folder, a config file.",
)
@click.option(
    "--machine",
    "machine_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Machine description (TOML) to build and list; default: the bundled demo machine.",
)
@TYPES_OPTION
def lspci_command(
    verbose: int,
    hex_dump: int,
    numeric: int,
    always_domains: bool,
    tree: bool,
    slot: str | None,
    ids: str | None,
    id_file: Path | None,
    dump_file: Path | None,
    machine_file: Path | None,
    type_files: tuple[Path, ...],
) -> None:
    """List PCI functions as pciutils' lspci does: a machine's VM, or a dump (-F).

    A machine's functions are read through the data manager; their region
    sizes come from the device types, and a region that does not decode
    says why ([not decoding], [shadowed by ...]). Names come from pci.ids;
    without it numbers are shown and a note says so.

    \b
    Examples:
      vpcid lspci                              # the demo machine, one line each
      vpcid lspci -vv -nn                      # decoded headers and capabilities
      vpcid lspci -s 00:03.0 -xxx              # one function with its 256-byte dump
      vpcid lspci -d 8086: -v --machine vm.toml --types my-types.json
      vpcid lspci -vv -F dump.txt              # a dump from lspci -xxxx (or sysfs)
      vpcid lspci -tv --machine bridged.toml   # the bus tree below the machine's bridges
    """
    if dump_file is not None and (machine_file is not None or type_files):
        raise click.UsageError(
            "-F shows a dump; --machine and --types describe a machine: give one or the other"
        )
    options = LspciOptions(
        verbose=verbose,
        hex_dump=hex_dump,
        numeric=numeric,
        always_domains=always_domains,
        tree=tree,
        slot=SlotFilter.parse(slot) if slot is not None else None,
        ids=IdFilter.parse(ids) if ids is not None else None,
    )
    if dump_file is not None:
        functions = dump_functions(dump_file)
    else:
        source = machine_file if machine_file is not None else demo_machine_file()
        machine = load_machine(source, types=known_types(type_files))
        functions = machine_functions(machine.manager, machine.vm_id)
    database = PciIds.load(id_file)
    if database is None and numeric != 1:
        where = id_file if id_file is not None else DEFAULT_PCI_IDS
        click.echo(f"vpcid: note: no PCI ID database at {where}; showing numbers (install pci.ids)", err=True)
    click.echo(render(functions, options, IdNames(database, numeric)), nl=False)


main.add_command(lspci_command)

from vpcid.adapters.qemu.models import qemu_models_command  # noqa: E402
from vpcid.conformance.commands import ALL_COMMANDS  # noqa: E402 - commands attach to the group above
from vpcid.conformance.explain import EXPLAIN_COMMANDS  # noqa: E402
from vpcid.conformance.fuzz import FUZZ_COMMAND  # noqa: E402
from vpcid.conformance.mutation import MUTATE_COMMAND  # noqa: E402
from vpcid.conformance.serve import SERVE_COMMAND  # noqa: E402
from vpcid.conformance.types_cli import types_group  # noqa: E402

for _command in (
    *ALL_COMMANDS,
    SERVE_COMMAND,
    types_group,
    qemu_models_command,
    MUTATE_COMMAND,
    *EXPLAIN_COMMANDS,
    FUZZ_COMMAND,
):
    main.add_command(_command)


def _document_exit_status(command: click.Command) -> None:
    """End every command's help with the exit statuses, where it does not state its own."""
    if "Exit status" not in (command.epilog or ""):
        command.epilog = f"{command.epilog}\n\n{EXIT_STATUS}" if command.epilog else EXIT_STATUS
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _document_exit_status(sub)


from vpcid.conformance.commands import EXIT_STATUS  # noqa: E402

_document_exit_status(main)
