"""The ``vpcid`` command line.

``main`` is a click group; every command is attached with
``main.add_command(...)`` at the bottom of this module. Any
:class:`~vpcid.model.errors.VpcidError` a command raises is reported as one
line, ``vpcid: error: <message>``, on stderr with exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import click
from vpcid.conformance.lspci import render_lspci
from vpcid.conformance.machine import demo_machine_file, load_machine
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


@click.group(cls=VpcidGroup)
@click.version_option(package_name="vpcid", prog_name="vpcid")
def main() -> None:
    """Reference model and conformance suite for virtual PCI device data managers."""


@click.command("lspci", short_help="List PCI functions like lspci -nn.")
@click.option(
    "--machine",
    "machine_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Machine description (TOML) to build and list; default: the bundled demo machine.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show lspci -vv detail: regions, ROM, capabilities.")
def lspci_command(machine_file: Path | None, verbose: bool) -> None:
    """List the PCI functions of a machine's VM, as lspci -nn (or -vv -nn) would."""
    machine = load_machine(machine_file if machine_file is not None else demo_machine_file())
    click.echo(render_lspci(machine.manager, machine.vm_id, verbose=verbose), nl=False)


main.add_command(lspci_command)

from vpcid.conformance.commands import ALL_COMMANDS  # noqa: E402 - commands attach to the group above
from vpcid.conformance.serve import SERVE_COMMAND  # noqa: E402
from vpcid.conformance.types_cli import types_group  # noqa: E402

for _command in (*ALL_COMMANDS, SERVE_COMMAND, types_group):
    main.add_command(_command)
