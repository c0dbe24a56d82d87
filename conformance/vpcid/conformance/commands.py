"""The suite's commands: certify, replay, vectors, mutation-score, adapters, trace, certify-bundled.

Exit status, the same for every command (:data:`EXIT_STATUS`): 0 conformant
or done, 1 not conformant (a finding, a failing or unrun vector, a
divergence replayed), 2 bad input (one line ``vpcid: error: ...``), 3 the
adapter cannot run on this machine. Text that comes from users (adapter
arguments, paths, reasons) is printed with rich markup and emoji codes
turned off, so ``[red]`` or ``:factory:`` show as typed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from vpcid.adapters.base import Adapter, AdapterUnavailable
from vpcid.adapters.registry import AdapterSpecError, load_adapter, probe, registered
from vpcid.conformance import vectors as vector_suite
from vpcid.conformance.certify import (
    DEFAULT_BUDGET,
    DEFAULT_SEED,
    CertificationReport,
    certify,
    load_waivers,
)
from vpcid.conformance.engine import Differential
from vpcid.conformance.mutants import MUTANTS
from vpcid.conformance.report import (
    RunContext,
    print_table,
    replay_line,
    verdict_text,
    write_counterexamples,
    write_html,
    write_json,
    write_junit,
)
from vpcid.conformance.trace import OpKind, TraceError, read_trace
from vpcid.conformance.traceability import load_requirements
from vpcid.conformance.typefile import load_types
from vpcid.conformance.types_cli import TYPES_OPTION
from vpcid.model import DeviceType

EXIT_NONCONFORMANT = 1
EXIT_UNAVAILABLE = 3


def exit_status(one: str = "not conformant: a finding, or a failing or unrun vector") -> str:
    """The exit statuses a command's help ends with; ``one`` says what status 1 means for it."""
    return (
        "\b\nExit status:\n"
        "  0  conformant: every check passed (or the command did its job)\n"
        f"  1  {one}\n"
        "  2  bad input: a file, an option or the adapter argument (one line: vpcid: error: ...)\n"
        "  3  the adapter cannot run on this machine (the reason is printed)"
    )


EXIT_STATUS = exit_status()
"""The exit statuses of the commands that certify."""


def _console() -> Console:
    """The terminal's width on a terminal; 140 columns into a file or pipe, so tables stay readable.

    Emoji codes are off: ``:factory:`` in an adapter argument prints as typed.
    """
    if sys.stdout.isatty():
        return Console(emoji=False, highlight=False)
    return Console(width=140, emoji=False, highlight=False)


def run_context(spec: str) -> RunContext:
    """The run's context for an adapter argument: a registered third-party target is marked as one."""
    entry = registered().get(spec.partition(":")[0])
    return RunContext.current(spec, third_party=entry is not None and entry.third_party)


@contextmanager
def opened(spec: str) -> Iterator[Adapter]:
    """Load an adapter, always closing it; an unavailable adapter exits 3 with its reason, one that
    cannot be loaded at all is bad input (exit 2)."""
    try:
        adapter = load_adapter(spec)
    except AdapterSpecError:
        raise  # bad input: one line and exit status 2 (VpcidGroup)
    except AdapterUnavailable as exc:
        click.echo(f"vpcid: adapter {spec!r} is unavailable: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    try:
        yield adapter
    finally:
        adapter.close()


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )  # fmt: skip


def run_certification(
    spec: str,
    budget: int,
    seed: int,
    waivers: Path | None,
    console: Console,
    quiet: bool = False,
    platform_waivers: bool = True,
    types: Sequence[DeviceType] = (),
) -> CertificationReport:
    """Certify the adapter ``spec``, with a progress bar on ``console``.

    Without a waiver file the adapter's own platform waivers apply
    (:attr:`AdapterInfo.waivers`) unless ``platform_waivers`` is false.
    """
    known = set(load_requirements())
    waiver_map = load_waivers(waivers, known) if waivers is not None else {}
    with opened(spec) as adapter, _progress(console) as bar:
        declared = adapter.info.waivers
        if waivers is None and platform_waivers and declared is not None:
            waiver_map = load_waivers(declared, known)
            if not quiet:
                console.print(escape(f"applying the platform waivers of {adapter.info.name}: {declared}"))
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if quiet:
                return
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=min(done, total))

        return certify(adapter, budget, seed, waiver_map, progress, types=types)


ADAPTER_HELP = (
    "The implementation: a registered NAME[:ARG] (see vpcid adapters), or your MODULE:FACTORY[:ARG] "
    "(a module in the current folder or installed, or PATH.py:FACTORY)."
)


def _report_counterexamples(
    report: CertificationReport, directory: Path, context: RunContext, console: Console
) -> list[Path]:
    """Write each failure's minimal trace and print the exact command that replays the first."""
    traces = write_counterexamples(report, directory, context)
    if traces:
        console.print(escape(f"wrote {len(traces)} minimal traces to {directory}/; reproduce one with"))
        console.print("  " + escape(replay_line(traces[0], context.adapter_spec)))
    return traces


@click.command("certify", epilog=EXIT_STATUS)
@click.option("--adapter", "adapter_spec", required=True, metavar="SPEC", help=ADAPTER_HELP)
@click.option("--budget", default=DEFAULT_BUDGET, show_default=True, type=click.IntRange(min=100),
              help="Random-engine operations; the stateful engine runs budget/1000 examples.")  # fmt: skip
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int,
              help="Seed of the random and stateful engines; the same seed repeats the run.")  # fmt: skip
@click.option(
    "--waivers",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Strict waiver file: waived requirements must fail (replaces the adapter's own).",
)
@TYPES_OPTION
@click.option(
    "--no-platform-waivers",
    is_flag=True,
    help="Do not apply the waivers the adapter declares for its platform (e.g. QEMU's q35).",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report as JSON: the record, with every counterexample.")  # fmt: skip
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report as JUnit XML, one test case per requirement, for CI.")  # fmt: skip
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report as one self-contained HTML page.")  # fmt: skip
@click.option("--failures-only", is_flag=True, help="Print only failing requirements in the table.")
@click.option("--counterexamples", "counterexample_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("counterexamples"), show_default=True,
              help="Where each failure's minimal trace is written, for vpcid replay.")  # fmt: skip
def certify_command(
    adapter_spec: str,
    budget: int,
    seed: int,
    waivers: Path | None,
    json_path: Path | None,
    junit_path: Path | None,
    html_path: Path | None,
    failures_only: bool,
    counterexample_dir: Path,
    type_files: tuple[Path, ...],
    no_platform_waivers: bool,
) -> None:
    """Certify an implementation: per-requirement verdicts; exit 0 only when conformant.

    \b
    Examples:
      vpcid certify --adapter reference
      vpcid certify --adapter mymodule:factory          # mymodule.py in this folder
      vpcid certify --adapter cython --types my-device.json --html report.html
      vpcid certify --adapter qemu:virtio-net-pci --failures-only
    """
    console = _console()
    context = run_context(adapter_spec)
    types = [entry.dtype for entry in load_types(type_files).values()]
    report = run_certification(
        adapter_spec, budget, seed, waivers, console, platform_waivers=not no_platform_waivers, types=types
    )
    print_table(report, console, show_all=not failures_only, context=context)
    for path, writer in ((json_path, write_json), (junit_path, write_junit), (html_path, write_html)):
        if path is not None:
            writer(report, path, context)
            console.print(escape(f"wrote {path}"))
    _report_counterexamples(report, counterexample_dir, context, console)
    sys.exit(0 if report.conformant else EXIT_NONCONFORMANT)


@click.command("replay", epilog=exit_status("the trace diverges from the model: it reproduces"))
@click.argument("trace_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--adapter", "adapter_spec", required=True, metavar="SPEC", help=ADAPTER_HELP)
def replay_command(trace_file: Path, adapter_spec: str) -> None:
    """Replay a trace on an adapter against the model; exit 1 if it diverges (it reproduces).

    TRACE_FILE is a trace of the trace language (spec/formats/trace.md), such
    as the minimal traces certify writes to counterexamples/.

    \b
    Examples:
      vpcid replay counterexamples/r-cfg-006-001.jsonl --adapter mymodule:factory
      vpcid replay bug.jsonl --adapter reference          # the model agrees with itself: exit 0
    """
    _header, steps = read_trace(trace_file)
    ops = [step.op for step in steps]
    if not ops or ops[0].kind is not OpKind.INIT:
        raise TraceError(
            f'{trace_file}: a replayable trace starts with an init operation; add {{"op": "init"}}'
        )
    with opened(adapter_spec) as adapter:
        divergence = Differential(adapter).replay(ops)
    if divergence is None:
        click.echo(f"no divergence: {len(ops)} operations matched the model")
        return
    click.echo(f"DIVERGES at line {steps[divergence.index].line}: {divergence.describe()}")
    sys.exit(EXIT_NONCONFORMANT)


@click.group("vectors", epilog=EXIT_STATUS)
def vectors_group() -> None:
    """Golden vectors: generate them from the model, run them against an adapter.

    \b
    Examples:
      vpcid vectors generate vectors/ && vpcid vectors run vectors/ --adapter reference
    """


@vectors_group.command("generate", epilog=EXIT_STATUS)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--machine-of", "adapter_spec", default=None,
    help="Adapter whose fixed machine (guest view) the vectors are for; default: the full-API cases.",
)  # fmt: skip
@TYPES_OPTION
@click.option(
    "--case", "patterns", multiple=True, metavar="PATTERN",
    help="Only the cases whose label (group/case@type:bdf) or vector ID matches this shell pattern; "
    "repeatable.",
)  # fmt: skip
def vectors_generate(
    directory: Path, adapter_spec: str | None, type_files: tuple[Path, ...], patterns: tuple[str, ...]
) -> None:
    """Write one folder per requirement group, a manifest and a trace per case.

    \b
    Examples:
      vpcid vectors generate vectors/
      vpcid vectors generate vectors/ --types my-device.json
      vpcid vectors generate edu/ --machine-of qemu:edu
      vpcid vectors generate bridges/ --case 'bridges/*'
    """
    machine = None
    types = [entry.dtype for entry in load_types(type_files).values()]
    if adapter_spec is not None:
        if types:
            raise click.UsageError("--types adds devices to the full-API cases; a fixed machine has its own")
        with opened(adapter_spec) as adapter:
            machine = adapter.info.machine
        if machine is None:
            raise click.UsageError(f"adapter {adapter_spec!r} offers the full API, not a fixed machine")
    count = vector_suite.generate(directory, machine, types, patterns)
    click.echo(f"wrote {count} vectors to {directory}")


@vectors_group.command("run", epilog=EXIT_STATUS)
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--adapter", "adapter_spec", required=True, metavar="SPEC", help=ADAPTER_HELP)
def vectors_run(directory: Path, adapter_spec: str) -> None:
    """Run every vector; end with an audit line; exit 1 on any failure, unaccounted vector, or when
    no vector applies to the adapter (a run that checks nothing is not a pass).

    \b
    Examples:
      vpcid vectors run vectors/ --adapter reference
      vpcid vectors run edu/ --adapter qemu:edu
    """
    with opened(adapter_spec) as adapter:
        result = vector_suite.run(directory, adapter)
    for case_id, detail in result.failed:
        click.echo(f"FAIL {case_id}: {detail}")
    reasons: dict[str, int] = {}
    for _, reason in result.excluded:
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items()):
        click.echo(f"excluded {count}: {reason}")
    click.echo(result.audit_line())
    if result.ran == 0:
        click.echo(
            f"vpcid: ran no vector: none of the {result.listed} in {directory} applies to {adapter_spec}; "
            "generate vectors for it (vpcid vectors generate DIR, or --machine-of for a fixed machine)",
            err=True,
        )
    sys.exit(0 if result.succeeded else EXIT_NONCONFORMANT)


@click.command("mutation-score", epilog=exit_status("a planted bug survived: the suite missed it"))
@click.option("--budget", default=DEFAULT_BUDGET, show_default=True, type=click.IntRange(min=100),
              help="Random-engine operations per planted bug.")  # fmt: skip
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int, help="Seed of the engines.")
def mutation_score_command(budget: int, seed: int) -> None:
    """Certify every planted bug; the suite must reject each one (killed/total).

    \b
    Examples:
      vpcid mutation-score
      vpcid mutation-score --budget 5000 --seed 7
    """
    console = _console()
    table = Table(title="planted bugs")
    for column in ("mutant", "breaks", "killed", "by"):
        table.add_column(column)
    killed = 0
    for mutant in MUTANTS:
        report = certify(mutant.adapter(), budget, seed, stop_at_first_failure=True)
        failing = [r.rid for r in report.requirements if r.failures]
        verdict = not report.conformant
        killed += verdict
        table.add_row(mutant.name, ", ".join(mutant.requirements), "yes" if verdict else "[bold red]NO[/]",
                      ", ".join(failing[:4]))  # fmt: skip
    console.print(table)
    console.print(f"mutation score: {killed}/{len(MUTANTS)} killed")
    sys.exit(0 if killed == len(MUTANTS) else EXIT_NONCONFORMANT)


@click.command("adapters", epilog=EXIT_STATUS)
def adapters_command() -> None:
    """List the adapters found and whether each can run here (and why not).

    Your own adapter needs no registration: vpcid certify --adapter
    MODULE:FACTORY (docs/example-adapter.md).

    \b
    Examples:
      vpcid adapters
    """
    console = _console()
    table = Table(title="adapters")
    for column in ("name", "status", "summary", "example"):
        table.add_column(column)
    for entry in registered().values():
        ok, reason = probe(entry)
        status = "[green]available[/]" if ok else f"[red]unavailable[/]: {escape(reason)}"
        table.add_row(escape(entry.name), status, escape(entry.summary), escape(entry.example or entry.name))
    console.print(table)


EVIDENCE_KINDS = ("unit", "property", "vector", "z3", "crosshair")


@click.command("trace", epilog=EXIT_STATUS)
@click.argument("requirement_ids", nargs=-1, metavar="[R-ID]...")
@click.option("--missing", is_flag=True, help="Only requirements lacking some kind of evidence.")
def trace_command(requirement_ids: tuple[str, ...], missing: bool) -> None:
    """Per requirement: where the model implements it and which kinds of check establish it.

    With R-IDs, only those requirements, each followed by its evidence: model
    file:line, test IDs, vector IDs and proofs (vpcid explain R-ID adds the
    text and each vector's steps in hex). Runs without the dev extras: the
    z3 proofs are read from their declarations; what an installed package
    cannot show (its tests) is said at the end.

    \b
    Examples:
      vpcid trace
      vpcid trace --missing
      vpcid trace R-DEC-005 R-CFG-006
    """
    from vpcid.conformance.explain import Explainer
    from vpcid.conformance.traceability import trace

    explainer = Explainer()
    wanted = [explainer.resolve(query) for query in requirement_ids]
    report = trace(sources=explainer.sources, suite=True)
    console = _console()
    table = Table(title="requirement evidence")
    for column in ("requirement", "title", "model", *EVIDENCE_KINDS, "tests"):
        table.add_column(column)
    for rid, req in report.requirements.items():
        ev = report.evidence[rid]
        if (wanted and rid not in wanted) or (missing and set(EVIDENCE_KINDS) <= ev.kinds):
            continue
        marks = ["[green]✓[/]" if k in ev.kinds else "[dim]·[/]" for k in EVIDENCE_KINDS]
        table.add_row(rid, escape(req.title), ", ".join(sorted(ev.model)), *marks, str(len(ev.tests)))
    console.print(table)
    for rid in wanted:
        found = explainer.explain(rid)
        lines = [f"{rid} — {found.requirement.title} ({found.spec_path}:{found.requirement.line})"]
        lines += [f"  model  {site}" for site in found.model]
        lines += [f"  test   {test.node_id}" for test in found.tests]
        lines += [f"  vector {vector.vector_id}" for vector in found.vectors]
        lines += [f"  formal {item}" for item in found.formal]
        lines += [f"  variant {axis}" for axis in found.variants]
        click.echo("\n".join(lines))
    for why in explainer.unavailable():
        click.echo(f"vpcid: note: not shown: {why}", err=True)
    if not wanted:
        totals = {k: sum(k in e.kinds for e in report.evidence.values()) for k in EVIDENCE_KINDS}
        click.echo(
            f"{len(report.requirements)} requirements; " + ", ".join(f"{k}: {v}" for k, v in totals.items())
        )


def bundled_report_stem(spec: str) -> str:
    """File name stem of an adapter spec's reports."""
    return spec.replace(":", "-").replace("/", "-").replace("+", "-")


@click.command("certify-bundled", epilog=EXIT_STATUS)
@click.option("--reports", "reports_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports"), show_default=True,
              help="Where to write NAME.json, .xml, .html and NAME-counterexamples/.")  # fmt: skip
@click.option("--budget", default=DEFAULT_BUDGET, show_default=True, type=click.IntRange(min=100),
              help="Random-engine operations per implementation.")  # fmt: skip
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int, help="Seed of the engines.")
def certify_bundled_command(reports_dir: Path, budget: int, seed: int) -> None:
    """Certify every bundled implementation that can run here; say why the others cannot.

    Exits non-zero when one of this project's implementations is not conformant;
    third-party targets (QEMU's device models) are certified and reported alike,
    their verdict marked as a third-party target's. Each failure's minimal
    trace is written for vpcid replay, and the command to replay it printed.

    \b
    Examples:
      vpcid certify-bundled
      vpcid certify-bundled --reports out/ --budget 5000
    """
    console = _console()
    reports_dir.mkdir(parents=True, exist_ok=True)
    summary = Table(title="bundled implementations")
    for column in ("adapter", "result", "requirements", "seconds", "report"):
        summary.add_column(column)
    failed = False
    for entry in registered().values():
        if entry.name == "mutant":
            continue
        ok, reason = probe(entry)
        for spec in entry.bundled or (entry.example or entry.name,):
            if not ok:
                summary.add_row(escape(spec), f"[yellow]skipped[/]: {escape(reason)}", "", "", "")
                continue
            context = RunContext.current(spec, third_party=entry.third_party)
            report = run_certification(spec, budget, seed, entry.waiver_file(), console)
            stem = reports_dir / bundled_report_stem(spec)
            for suffix, writer in ((".json", write_json), (".xml", write_junit), (".html", write_html)):
                writer(report, stem.with_suffix(suffix), context)
            counts = ", ".join(f"{v} {k}" for k, v in report.counts().items() if v)
            colour = "green" if report.conformant else ("yellow" if entry.third_party else "bold red")
            verdict = f"[{colour}]{escape(verdict_text(report, context))}[/]"
            failed |= not report.conformant and not entry.third_party
            summary.add_row(escape(spec), verdict, counts, f"{report.duration_s:.1f}", escape(f"{stem}.html"))
            if not report.conformant:
                print_table(report, console, show_all=False, context=context)
                _report_counterexamples(report, Path(f"{stem}-counterexamples"), context, console)
    console.print(summary)
    sys.exit(EXIT_NONCONFORMANT if failed else 0)


ALL_COMMANDS = (
    certify_bundled_command,
    trace_command,
    certify_command,
    replay_command,
    vectors_group,
    mutation_score_command,
    adapters_command,
)
