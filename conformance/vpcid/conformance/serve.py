"""``vpcid serve``: serve VPCID instances of a data manager to VMMs.

``vpcid serve vfio-user --socket PATH [--socket PATH ...] [--type TYPE ...]
[--types FILE ...]`` exposes one device per socket (spec/formats/vfio-user.md),
with per-client limits (``--message-timeout``, ``--max-data-xfer``,
``--max-client-fds``, ``--max-stream``, ``--max-dma-maps``), on the data
manager ``--manager`` names (else ``VPCID_SERVE_MANAGER``, else the compiled
backend when built) with the compiled path's ``--busy-poll-us`` (else
``VPCID_SERVE_BUSY_POLL_US``, else 50), each checked before anything
listens: a bad value is a usage error (exit 2). It prints one line per
device and one naming the data manager on stderr, then ``ready`` on stdout
once every socket listens, and runs until SIGTERM or SIGINT, when it
removes its sockets.
Also runnable as ``python -m vpcid.conformance.serve vfio-user ...``.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.typefile import load_types
from vpcid.conformance.types_cli import TYPES_OPTION
from vpcid.model import Profile
from vpcid.model.errors import VpcidError

DEFAULT_TYPE = "kitchen-sink"


@click.group("serve")
def serve_group() -> None:
    """Serve VPCID instances of a data manager to VMMs."""


@serve_group.command("vfio-user")
@click.option("--socket", "sockets", multiple=True, required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="UNIX socket of one device; repeat for more devices.")  # fmt: skip
@click.option(
    "--type",
    "types",
    multiple=True,
    metavar="TYPE",
    help=f"Device type per socket, in order (vpcid types, or a type of a --types file); one "
    f"type serves every socket. Default: {DEFAULT_TYPE}, or the one type of a --types file.",
)
@TYPES_OPTION
@click.option("--profile", "profile_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Profile manifest: the variants the data manager runs in.")  # fmt: skip
@click.option("--vm", default=1, show_default=True, type=click.IntRange(0, 0xFFFF_FFFF),
              help="VM id of the data manager's VM that holds the devices.")  # fmt: skip
@click.option("--message-timeout", default=10.0, show_default=True, type=click.FloatRange(0.05, 3600),
              callback=lambda ctx, param, value: _finite(param, value),
              help="Seconds a client may stall inside a message, or leave its replies unread, before it "
                   "is disconnected (0.05-3600).")  # fmt: skip
@click.option("--max-data-xfer", default=1 << 20, show_default=True, type=click.IntRange(4096, 64 << 20),
              help="Largest region or migration transfer in one message (max_data_xfer_size).")  # fmt: skip
@click.option("--max-client-fds", type=click.IntRange(0, 1 << 20), default=None,
              help="File descriptors (DMA regions, IRQ eventfds) the server keeps for one client; beyond, "
                   "ENOSPC. Default: the process's descriptor limit shared among the devices.")  # fmt: skip
@click.option("--max-stream", default=1 << 30, show_default=True, type=click.IntRange(4096, 1 << 40),
              help="Longest migration stream a device takes (spooled to a temporary file).")  # fmt: skip
@click.option("--max-dma-maps", default=65535, show_default=True, type=click.IntRange(1, 65535),
              help="DMA regions one client may have mapped at once (max_dma_maps).")  # fmt: skip
@click.option("--manager", "manager_name", type=click.Choice(["model", "cython"]), default=None,
              help="Data manager serving the devices: the model, or the compiled Cython backend. Default: "
                   "$VPCID_SERVE_MANAGER, else cython when it is built, else model.")  # fmt: skip
@click.option("--busy-poll-us", type=int, default=None, metavar="N",
              help="Microseconds (0-1000) the compiled path polls for a client's next message before "
                   "the device's thread sleeps; 0 sleeps at once. Default: $VPCID_SERVE_BUSY_POLL_US, "
                   "else 50.")  # fmt: skip
@click.option("-v", "--verbose", count=True, help="Log rejected messages (-v) and more (-vv).")
def vfio_user_command(
    sockets: tuple[Path, ...],
    types: tuple[str, ...],
    type_files: tuple[Path, ...],
    profile_path: Path | None,
    vm: int,
    message_timeout: float,
    max_data_xfer: int,
    max_client_fds: int | None,
    max_stream: int,
    max_dma_maps: int,
    manager_name: str | None,
    busy_poll_us: int | None,
    verbose: int,
) -> None:
    """Expose VPCID instances as vfio-user devices, one per socket, until SIGTERM.

    \b
    Examples:
      vpcid serve vfio-user --socket /tmp/nic.sock --type e1000
      vpcid serve vfio-user --socket /tmp/dev.sock --types my-device.json
      vpcid serve vfio-user --socket /tmp/dev.sock --manager model
    """
    from vpcid.adapters.vfio_user.server import (
        BUSY_POLL_ENV,
        MANAGER_ENV,
        DeviceSpec,
        Limits,
        ServerManager,
        VfioUserServer,
        busy_poll_from,
        choose_manager,
    )

    try:
        limits = Limits(max_data_xfer, message_timeout, max_client_fds, max_stream, max_dma_maps)
    except VpcidError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        manager_factory = choose_manager(manager_name)
    except VpcidError as exc:
        source = "--manager" if manager_name is not None else f"${MANAGER_ENV} (no --manager)"
        raise click.BadParameter(str(exc), param_hint=source) from None
    try:
        busy_poll = busy_poll_from(busy_poll_us)
    except VpcidError as exc:
        source = "--busy-poll-us" if busy_poll_us is not None else f"${BUSY_POLL_ENV} (no --busy-poll-us)"
        raise click.BadParameter(str(exc), param_hint=source) from None

    from_files = load_types(type_files)
    known = {**SUITE_TYPES, **{name: entry.dtype for name, entry in from_files.items()}}
    default = [next(iter(from_files))] if len(from_files) == 1 else [DEFAULT_TYPE]
    names = list(types) or default
    if len(names) == 1:
        names *= len(sockets)
    if len(names) != len(sockets):
        raise click.BadParameter(f"{len(sockets)} sockets but {len(names)} types", param_hint="--type")
    unknown = sorted({n for n in names if n not in known})
    if unknown:
        raise click.BadParameter(f"unknown device type(s): {', '.join(unknown)}", param_hint="--type")
    if len(set(sockets)) != len(sockets):
        raise click.BadParameter("a socket path is given twice", param_hint="--socket")
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        profile = (
            Profile.from_manifest(profile_path.read_text(encoding="utf-8")) if profile_path else Profile()
        )
    except VpcidError as exc:
        raise click.ClickException(str(exc)) from None
    specs = [DeviceSpec(path, known[name]) for path, name in zip(sockets, names, strict=True)]
    try:
        server = VfioUserServer(
            specs, profile, vm, manager_factory=manager_factory, limits=limits, busy_poll_us=busy_poll
        )
    except (OSError, ValueError, VpcidError) as exc:
        raise click.ClickException(f"cannot serve: {exc}") from None
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        for device, spec in zip(server.devices, specs, strict=True):
            click.echo(f"vfio-user: {spec.dtype.name} ({device.bdf} of VM {vm}) at {spec.path}", err=True)
        served_by = "model" if manager_factory is ServerManager else "cython"
        poll = f", busy poll {busy_poll} us" if served_by == "cython" else ""
        click.echo(f"vfio-user: data manager {served_by}{poll}", err=True)
        click.echo("ready")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _finite(param: click.Parameter, value: float) -> float:
    """Reject nan (which passes any range check) and infinities."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number of seconds", param=param)
    return value


SERVE_COMMAND = serve_group
"""Attach with ``main.add_command(SERVE_COMMAND)`` in cli.py."""

if __name__ == "__main__":
    serve_group(prog_name="vpcid serve")
