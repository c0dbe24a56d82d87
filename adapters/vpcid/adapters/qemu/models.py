"""Which of QEMU's PCI device models the suite can certify, asked of QEMU itself, and certifying them all.

:func:`pci_models` reads ``qemu-system-x86_64 -device help``, keeps every
device on the PCI bus, and starts each one, paused under qtest, at 00:04.0
of the chosen machine with nothing else: a model that refuses to start
without a host backend (a drive, a netdev of a kind, a chardev, a memory
backend, a host device) or that is neither a type 0 function nor a type 1
bridge (R-BRG-001) is listed with the reason and left out. A few models need
a property that is not a backend to start at all (nvme's serial number, a
pci-bridge's chassis number): :data:`REQUIRED_PROPERTIES` supplies it.
Bridges are certified alone here, nothing below them; ``vpcid-behind=``
certifies a device below them.

``vpcid qemu-models [--budget N]`` (:data:`qemu_models_command`, opt-in: it
certifies every certifiable model, minutes of work) prints one row per
model: the device, the verdict, the failed requirements and the seconds it
took; ``--markdown`` prints the table docs/qemu.md carries.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import click
from vpcid.adapters.base import AdapterUnavailable
from vpcid.adapters.qemu.adapter import adapter as qemu_adapter
from vpcid.adapters.qemu.discover import MACHINES, DeviceSpec, prepare
from vpcid.adapters.qemu.qtest import QemuError, QemuProcess, qemu_binary
from vpcid.conformance.certify import Verdict, certify, load_waivers
from vpcid.conformance.traceability import load_requirements
from vpcid.model import Bdf

PROBE_BDF = Bdf(0, 4, 0)
HELP_TIMEOUT = 60.0
REQUIRED_PROPERTIES: dict[str, tuple[str, ...]] = {
    "nvme": ("serial=vpcid0001",),
    "pci-bridge": ("chassis_nr=1",),
}
"""Properties a model will not start without that are not host backends (nvme: a serial number;
pci-bridge: a chassis number other than 0)."""
_HELP_LINE = re.compile(r'^name "(?P<name>[^"]+)", bus (?P<bus>[\w-]+)')
_QEMU_PREFIX = re.compile(r"^qemu-system-x86_64: (-device [^ ]+: )?")
"""What QEMU puts before its error message: the program and the -device option that failed."""


class ModelListError(QemuError):
    """QEMU's device list cannot be read."""


@dataclass(frozen=True)
class PciModel:
    """One PCI device model of this QEMU, and whether the suite can certify it."""

    name: str
    category: str
    options: tuple[str, ...] = ()
    """Properties :data:`REQUIRED_PROPERTIES` adds."""
    certifiable: bool = False
    reason: str = ""
    """Why it is not certifiable (empty when it is)."""

    @property
    def spec(self) -> str:
        """The argument of ``--adapter qemu:...``."""
        return ",".join((self.name, *self.options))


def parse_device_help(text: str) -> list[tuple[str, str]]:
    """(name, category) of every device on the PCI bus in ``-device help`` output, in QEMU's order."""
    out: list[tuple[str, str]] = []
    category = ""
    for line in text.splitlines():
        if line.endswith(" devices:") or line.endswith("devices:"):
            category = line.removesuffix(":").removesuffix(" devices").strip()
            continue
        m = _HELP_LINE.match(line.strip())
        if m and m.group("bus") == "PCI":
            out.append((m.group("name"), category))
    return out


def device_help() -> str:
    """``qemu-system-x86_64 -device help``."""
    binary = qemu_binary()
    if binary is None:
        raise ModelListError("qemu-system-x86_64 is not installed")
    try:
        done = subprocess.run(
            [binary, "-device", "help"], capture_output=True, text=True, timeout=HELP_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelListError(f"{binary} -device help: {exc}") from None
    if done.returncode != 0:
        raise ModelListError(f"{binary} -device help exited with {done.returncode}: {done.stderr.strip()}")
    return done.stdout + done.stderr


def probe_model(name: str, category: str, machine: str = "q35") -> PciModel:
    """Start ``name`` alone at 00:04.0 of ``machine`` under qtest: does a type 0 or type 1 function answer?"""
    options = REQUIRED_PROPERTIES.get(name, ())
    spec = DeviceSpec(name, options, PROBE_BDF, machine=machine)
    try:
        qemu = QemuProcess.spawn(spec.machine_args())
    except QemuError as exc:
        return PciModel(name, category, options, False, str(exc))
    try:
        guest = prepare(qemu)
        vendor, header = guest.config_batch(PROBE_BDF.packed, [(0x00, 2, None), (0x0E, 1, None)])
    except QemuError as exc:
        lines = [line for line in str(exc).split(" | ") if line.strip()]
        reason = _QEMU_PREFIX.sub("", lines[-1].split("stderr: ")[-1] if lines else str(exc))
        return PciModel(name, category, options, False, f"does not start alone: {reason.strip()}")
    finally:
        qemu.kill()
    if vendor == 0xFFFF:
        return PciModel(name, category, options, False, f"no function answers at {PROBE_BDF}")
    if vendor == 0x0000:
        return PciModel(name, category, options, False, "vendor ID 0x0000: a part another device configures")
    if header & 0x7F > 1:
        return PciModel(
            name, category, options, False, f"header type {header & 0x7F} (neither a function nor a bridge)"
        )
    return PciModel(name, category, options, True)


@cache
def pci_models(machine: str = "q35") -> tuple[PciModel, ...]:
    """Every PCI device model of this QEMU, probed on ``machine`` (cached per process)."""
    return tuple(probe_model(name, category, machine) for name, category in parse_device_help(device_help()))


# ------------------------------------------------------------------ certifying them all


@dataclass(frozen=True)
class ModelResult:
    """One row of the all-models table."""

    model: str
    verdict: str
    findings: tuple[str, ...]
    """Requirements that failed (beyond the machine's waivers), or why the model was not certified."""
    seconds: float


def certify_model(spec: str, budget: int, seed: int) -> ModelResult:
    """Certify ``qemu:SPEC`` with its machine's platform waivers; a row of the table."""
    started = time.monotonic()
    try:
        a = qemu_adapter(spec)
    except AdapterUnavailable as exc:
        return ModelResult(spec, "not certified", (str(exc),), time.monotonic() - started)
    try:
        waiver_file = a.info.waivers
        waivers = load_waivers(waiver_file, set(load_requirements())) if waiver_file is not None else {}
        report = certify(a, budget, seed, waivers)
    finally:
        a.close()
    failed = tuple(r.rid for r in report.requirements if r.verdict is Verdict.FAIL)
    verdict = "conformant" if report.conformant else "not conformant"
    return ModelResult(spec, verdict, failed + tuple(report.errors), time.monotonic() - started)


def certify_models(
    models: Iterable[PciModel], budget: int, seed: int, machine: str = "q35"
) -> Iterable[ModelResult]:
    """Certify each certifiable model; the others give a row with their reason."""
    for model in models:
        if not model.certifiable:
            yield ModelResult(model.spec, "not certified", (model.reason,), 0.0)
            continue
        suffix = "" if machine == "q35" else f",vpcid-machine={machine}"
        yield certify_model(model.spec + suffix, budget, seed)


def markdown_table(rows: Sequence[ModelResult]) -> str:
    """The table docs/qemu.md carries."""
    lines = ["| device | verdict | findings | seconds |", "|---|---|---|---|"]
    for row in rows:
        findings = ", ".join(row.findings).replace("|", "/") or "-"
        lines.append(f"| `{row.model}` | {row.verdict} | {findings} | {row.seconds:.1f} |")
    return "\n".join(lines)


@click.command("qemu-models")
@click.option("--budget", default=3000, show_default=True, type=click.IntRange(min=100),
              help="Random-engine operations per model.")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random engines.")
@click.option(
    "--machine",
    type=click.Choice(MACHINES),
    default="q35",
    show_default=True,
    help="QEMU machine type the models are plugged into.",
)
@click.option("--only", multiple=True, metavar="NAME", help="Certify only these models (repeatable).")
@click.option(
    "--list", "list_only", is_flag=True, help="List the models and why some are left out; certify none."
)
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table as Markdown to this file.")  # fmt: skip
def qemu_models_command(
    budget: int, seed: int, machine: str, only: tuple[str, ...], list_only: bool, markdown: Path | None
) -> None:
    """Certify every PCI device model of this QEMU that starts alone without a host backend.

    The list comes from `qemu-system-x86_64 -device help`; each model is
    started once to see whether it can be certified. Each certification
    uses the machine's platform waivers. Minutes of work: opt-in.

    \b
    Examples:
      vpcid qemu-models --list
      vpcid qemu-models --budget 3000 --markdown qemu-models.md
      vpcid qemu-models --only e1000e --only nvme
    """
    try:
        models = pci_models(machine)
    except QemuError as exc:
        raise click.ClickException(str(exc)) from None
    if only:
        unknown = set(only) - {m.name for m in models}
        if unknown:
            raise click.UsageError(f"not PCI models of this QEMU: {', '.join(sorted(unknown))}")
        models = tuple(m for m in models if m.name in only)
    if list_only:
        for m in models:
            click.echo(f"{m.spec:40} {m.category:12} {'certifiable' if m.certifiable else m.reason}")
        return
    rows: list[ModelResult] = []
    for row in certify_models(models, budget, seed, machine):
        rows.append(row)
        click.echo(f"{row.model:40} {row.verdict:15} {row.seconds:7.1f} s  {', '.join(row.findings) or '-'}")
    counts = {v: sum(r.verdict == v for r in rows) for v in ("conformant", "not conformant", "not certified")}
    click.echo(", ".join(f"{n} {v}" for v, n in counts.items()))
    if markdown is not None:
        markdown.write_text(markdown_table(rows) + "\n", encoding="utf-8")
        click.echo(f"wrote {markdown}")
