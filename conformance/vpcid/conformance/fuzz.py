"""``vpcid fuzz TYPE_OR_ADAPTER``: a fuzzing campaign of the stateful engine against one target.

The target is a device-type file or a bundled type name (the model with
that type: a campaign then finds crashes of the type's Python behaviour and
violated invariants), or any ``--adapter`` spec: a device model written in
Python (``module:factory``), a vfio-user server (``vfio-user:...``), QEMU's
device models (``qemu:...``), the Cython backend. The campaign is
:func:`vpcid.conformance.stateful.run_campaign`: Hypothesis draws every
rule and its parameters, the example database (a directory by default, or
a Redis server shared by many machines) keeps what fails and replays it
first, and the first finding is cut down to a minimal trace, written for
``vpcid replay`` (or ``vpcid fuzz --replay`` when an invariant broke),
and named by the rule it breaks. ``--workers N`` runs N campaigns on
pytest-xdist, one per core, sharing the database; a report shows which
configuration bytes and BAR offsets were read and written.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from vpcid.adapters.base import AdapterUnavailable
from vpcid.adapters.reference import ModelAdapter
from vpcid.adapters.registry import AdapterSpecError, load_adapter, registered
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.stateful import (
    CampaignError,
    CampaignResult,
    CampaignStats,
    Coverage,
    Device,
    DeviceMachine,
    FuzzFinding,
    Invariant,
    Target,
    device_invariant,
    replay,
    run_campaign,
)
from vpcid.conformance.trace import (
    Op,
    OpKind,
    Step,
    TraceHeader,
    define_type_op,
    new_op,
    read_trace,
    write_trace,
)
from vpcid.conformance.typefile import parse_type_definition, read_type_file, type_json
from vpcid.model import Bdf, DeviceType, VpcidError
from vpcid.model.registers import RegisterMap

DEFAULT_DATABASE = Path(".hypothesis") / "vpcid-fuzz"
"""Where ``vpcid fuzz`` keeps its example database unless told otherwise."""
DEFAULT_EXAMPLES = 200
"""Hypothesis examples a campaign runs unless given a duration."""
DEFAULT_COUNTEREXAMPLES = Path("counterexamples")
STATUS_INTERVAL = 0.25
"""Seconds between the progress updates a worker writes and the command shows."""
WORKER_ENV = "VPCID_FUZZ_RUN"
"""Environment variable that hands a worker process its run folder."""
EXIT_FINDING = 1
EXIT_UNAVAILABLE = 3


# --------------------------------------------------------------------------- targets


def _definable(dtype: DeviceType) -> bool:
    """Whether a ``define_type`` operation can carry ``dtype`` (its behaviours have names a type file
    resolves, and the definition reads back as the same type)."""
    try:
        return parse_type_definition(type_json(dtype)).fingerprint() == dtype.fingerprint()
    except VpcidError:
        return False


def type_target(types: Sequence[DeviceType], label: str | None = None) -> Target:
    """The model holding one instance of each of ``types`` in VM 1 (at 00:02.0, 00:03.0, ...).

    A type the suite does not bundle is defined by ``define_type`` when a
    type file could name it, so the trace replays on ``--adapter
    reference``; otherwise the model is handed the type itself.
    """
    if not types:
        raise CampaignError("a campaign on the model needs at least one device type")
    names = [t.name for t in types]
    if len(set(names)) != len(names):
        raise CampaignError(
            f"device types named twice: {', '.join(sorted(n for n in names if names.count(n) > 1))}"
        )
    handed = {t.name: t for t in types if SUITE_TYPES.get(t.name) != t and not _definable(t)}
    prologue: list[Op] = [
        define_type_op(type_json(t)) for t in types if SUITE_TYPES.get(t.name) != t and t.name not in handed
    ]
    prologue.append(new_op(OpKind.CREATE_VM, 1))
    devices = tuple(Device(1, Bdf(0, 2 + k, 0), t) for k, t in enumerate(types))
    prologue += [Op(OpKind.PLUG, vm=d.vm, bdf=d.bdf, name=d.dtype.name) for d in devices]
    shown = label or f"the model with {', '.join(names)}"
    adapter = ModelAdapter(f"model({', '.join(names)})", types={**SUITE_TYPES, **handed})
    key = "model|" + "|".join(t.fingerprint().hex() for t in types)
    return Target(adapter, shown, devices, tuple(prologue), handed, None if handed else "reference", key)


def open_target(spec: str, types: Sequence[DeviceType] = ()) -> Target:
    """The target ``TYPE_OR_ADAPTER`` names: a device-type file, a bundled type's name, or an
    ``--adapter`` spec (``types``: more types for a full-API adapter to plug, ``--types``).

    Raises :class:`~vpcid.adapters.registry.AdapterSpecError` for a spec
    that names nothing, and passes on
    :class:`~vpcid.adapters.base.AdapterUnavailable`.
    """
    path = Path(spec)
    if (":" not in spec and path.suffix == ".json") or (path.is_file() and ":" not in spec):
        entries = read_type_file(path)
        return type_target([*(e.dtype for e in entries), *types], f"the model with the types of {spec}")
    if spec in SUITE_TYPES and spec not in registered():
        return type_target([SUITE_TYPES[spec], *types])
    adapter = load_adapter(spec)
    try:
        return Target.for_adapter(adapter, spec, types)
    except VpcidError:
        adapter.close()
        raise


def load_invariants(specs: Iterable[str]) -> list[Invariant]:
    """The invariants ``module:name`` specs name: an :class:`Invariant`, a function (wrapped with
    :func:`device_invariant`), or a list of them. ``module`` is found on the Python path or in the
    current folder, or is a path ending in ``.py``."""
    found: list[Invariant] = []
    for spec in specs:
        module_name, _, attribute = spec.rpartition(":")
        if not module_name or not attribute:
            raise CampaignError(f"--invariants {spec!r}: give MODULE:NAME, e.g. mychecks:invariants")
        module = _import_module(module_name, spec)
        value = getattr(module, attribute, None)
        if value is None:
            raise CampaignError(f"--invariants {spec!r}: {module_name} has no {attribute!r}")
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if isinstance(item, Invariant):
                found.append(item)
            elif callable(item):
                found.append(device_invariant()(item))
            else:
                raise CampaignError(f"--invariants {spec!r}: {item!r} is neither an Invariant nor a function")
    return found


def _import_module(name: str, spec: str) -> Any:
    try:
        if name.endswith(".py"):
            location = Path(name)
            module_spec = importlib.util.spec_from_file_location(location.stem, location)
            if module_spec is None or module_spec.loader is None or not location.is_file():
                raise CampaignError(f"--invariants {spec!r}: no Python file {name}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
        return importlib.import_module(name)
    except CampaignError:
        raise
    except Exception as exc:
        raise CampaignError(
            f"--invariants {spec!r}: importing {name} failed: {type(exc).__name__}: {exc}"
        ) from None


# --------------------------------------------------------------------------- example databases


def open_database(where: str | None) -> ExampleDatabase | None:
    """The example database ``--database`` names: ``none``, ``redis://HOST:PORT[/DB]`` (Hypothesis's
    Redis database, shared by every machine that reaches the server), or a folder (created)."""
    if where is None or where == "none":
        return None
    if where.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError:
            raise CampaignError(
                "--database redis://...: install the redis package (pip install redis)"
            ) from None
        client = redis.Redis.from_url(where)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise CampaignError(f"--database {where}: no Redis server answers: {exc}") from None
        return RedisExampleDatabase(client)
    return DirectoryBasedExampleDatabase(where)


# --------------------------------------------------------------------------- campaigns over several processes


@dataclass
class RunOptions:
    """What every worker of a campaign is told (written to the run folder as JSON)."""

    target: str
    types: list[str] = field(default_factory=list)
    invariants: list[str] = field(default_factory=list)
    examples: int | None = DEFAULT_EXAMPLES
    duration: float | None = None
    seed: int = 0
    database: str | None = str(DEFAULT_DATABASE)
    replay_only: bool = False
    steps: int = 25
    shrink: bool = True


@dataclass
class FuzzReport:
    """A whole campaign, over one or several workers: totals, what was exercised, the finding."""

    target: str
    workers: int
    operations: int
    examples: int
    seconds: float
    coverage: Coverage
    devices: tuple[Device, ...]
    finding: FuzzFinding | None = None
    per_worker: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Operations per second while fuzzing, all workers together: each worker's operations over its
        own campaign's seconds (process and pytest start-up left out), added up."""
        timed = [w for w in self.per_worker if w.get("seconds", 0) > 0]
        rates = [float(w["operations"]) / float(w["seconds"]) for w in timed]
        if rates:
            return sum(rates)
        return self.operations / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "workers": self.workers,
            "operations": self.operations,
            "examples": self.examples,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
            "exercised": exercised_rows(self.coverage, self.devices),
            "registers": register_rows(self.coverage, self.devices),
            "finding": None if self.finding is None else self.finding.to_json(),
            "per_worker": self.per_worker,
        }


def _types_of(files: Sequence[str]) -> list[DeviceType]:
    from vpcid.conformance.typefile import load_types

    return [entry.dtype for entry in load_types([Path(f) for f in files]).values()]


def run_one(
    options: RunOptions,
    progress: Callable[[CampaignStats], None] | None = None,
    stop: Callable[[], bool] | None = None,
    seed_offset: int = 0,
) -> tuple[CampaignResult, Target]:
    """One campaign in this process, as ``options`` say; the target is closed afterwards."""
    invariants = load_invariants(options.invariants)
    database = open_database(options.database)
    target = open_target(options.target, _types_of(options.types))
    try:
        result = run_campaign(
            target,
            examples=options.examples,
            duration=options.duration,
            seed=options.seed + seed_offset,
            invariants=invariants,
            database=database,
            replay_only=options.replay_only,
            steps=options.steps,
            progress=progress,
            stop=stop,
            shrink=options.shrink,
        )
    finally:
        target.adapter.close()
    return result, target


def _write_json(path: Path, obj: object) -> None:
    """Write ``obj`` so that a reader never sees half of it."""
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(obj), encoding="utf-8")
    partial.replace(path)


def worker_main() -> None:
    """The body of one pytest-xdist worker: run the campaign of the run folder :data:`WORKER_ENV` names
    with this worker's seed, write status while it runs and the result at the end; fail the test on
    a finding."""
    folder = Path(os.environ[WORKER_ENV])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(re.sub(r"\D", "", worker) or 0)
    options = RunOptions(**json.loads((folder / "options.json").read_text(encoding="utf-8")))

    def status(stats: CampaignStats) -> None:
        _write_json(
            folder / f"status-{worker}.json",
            {"operations": stats.operations, "examples": stats.examples, "seconds": stats.elapsed},
        )

    def stop() -> bool:
        return (folder / "stop").exists()

    result, _target = run_one(options, status, stop, seed_offset=index * 1_000_003)
    stats = result.stats
    _write_json(
        folder / f"result-{worker}.json",
        {
            "worker": worker,
            "operations": stats.operations,
            "examples": stats.examples,
            "seconds": stats.elapsed,
            "coverage": result.coverage.to_json(),
            "finding": None if result.finding is None else result.finding.to_json(),
        },
    )
    if result.finding is not None:
        (folder / "stop").touch()
        raise AssertionError(result.finding.description)


WORKER_TEST = '''"""One worker of a vpcid fuzz campaign (generated; run by pytest-xdist)."""

from vpcid.conformance.fuzz import worker_main


def test_vpcid_fuzz_worker() -> None:
    worker_main()
'''


def _finding_from_json(obj: dict[str, Any]) -> FuzzFinding:
    trace = tuple(Op.from_json(op) for op in obj["trace"])
    return FuzzFinding(
        obj["kind"], trace, obj["description"], tuple(obj["rules"]), None, obj["reason"], obj["shrunk_from"]
    )


def run_workers(
    options: RunOptions, workers: int, progress: Callable[[CampaignStats], None] | None = None
) -> FuzzReport:
    """Run ``workers`` campaigns at once on pytest-xdist (seeds apart, one database), and merge them.

    Each worker runs ``options.duration`` seconds, or its share of
    ``options.examples``; the first finding stops the others.
    """
    if importlib.util.find_spec("xdist") is None:
        raise CampaignError("--workers needs pytest-xdist (pip install pytest-xdist)")
    if options.examples is not None:
        options = RunOptions(**{**options.__dict__, "examples": -(-options.examples // workers)})
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vpcid-fuzz-") as name:
        folder = Path(name)
        _write_json(folder / "options.json", options.__dict__)
        (folder / "test_worker.py").write_text(WORKER_TEST, encoding="utf-8")
        (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(folder / "pytest.ini"),
            "--rootdir",
            str(folder),
            "-n",
            str(workers),
            "--dist",
            "each",
            str(folder / "test_worker.py"),
        ]
        environment = {**os.environ, WORKER_ENV: str(folder)}
        with subprocess.Popen(
            command,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=os.getcwd(),
        ) as process:
            while process.poll() is None:
                time.sleep(STATUS_INTERVAL)
                if progress is not None:
                    progress(_status(folder, started))
                if any(r.get("finding") for r in _results(folder)):
                    (folder / "stop").touch()
            output = process.stdout.read() if process.stdout is not None else ""
        results = _results(folder)
        if len(results) < workers:
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise CampaignError(
                f"{workers - len(results)} of {workers} workers ended without a result:\n{tail}"
            )
    coverage = Coverage()
    for result in results:
        coverage.merge(Coverage.from_json(result["coverage"]))
    found = [r for r in results if r.get("finding")]
    finding = _finding_from_json(found[0]["finding"]) if found else None
    per_worker = [{k: r[k] for k in ("worker", "operations", "examples", "seconds")} for r in results]
    return FuzzReport(
        options.target,
        workers,
        sum(r["operations"] for r in results),
        sum(r["examples"] for r in results),
        time.monotonic() - started,
        coverage,
        (),
        finding,
        per_worker,
    )


def _results(folder: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("result-*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return out


def _status(folder: Path, started: float) -> CampaignStats:
    stats = CampaignStats(started=started)
    for path in folder.glob("status-*.json"):
        try:
            one = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        stats.operations += int(one["operations"])
        stats.examples += int(one["examples"])
    return stats


def run_fuzz(
    options: RunOptions, workers: int = 1, progress: Callable[[CampaignStats], None] | None = None
) -> FuzzReport:
    """A campaign in this process (``workers`` 1) or over ``workers`` processes."""
    if workers > 1:
        report = run_workers(options, workers, progress)
        target = open_target(options.target, _types_of(options.types))
        report.devices = target.devices
        report.target = target.label
        target.adapter.close()
        return report
    result, target = run_one(options, progress)
    stats = result.stats
    return FuzzReport(
        target.label,
        1,
        stats.operations,
        stats.examples,
        stats.elapsed,
        result.coverage,
        target.devices,
        result.finding,
        [
            {
                "worker": "main",
                "operations": stats.operations,
                "examples": stats.examples,
                "seconds": stats.elapsed,
            }
        ],
    )


# --------------------------------------------------------------------------- what was exercised


def _region_size(dtype: DeviceType | None, region: str) -> int | None:
    if dtype is None:
        return None
    if region == "config":
        return len(dtype.declared.image)
    index = int(region[3:])
    if index == 6:
        return dtype.rom.size if dtype.rom is not None else None
    bar = dtype.bar(index)
    return bar.size if bar is not None else None


def _runs(offsets: set[int], shown: int = 3) -> str:
    runs: list[list[int]] = []
    for offset in sorted(offsets):
        if runs and runs[-1][1] == offset:
            runs[-1][1] = offset + 1
        else:
            runs.append([offset, offset + 1])
    text = ", ".join(f"{a:#x}" if b - a == 1 else f"{a:#x}-{b - 1:#x}" for a, b in runs[:shown])
    return text + (f" (+{len(runs) - shown} more)" if len(runs) > shown else "")


def exercised_rows(coverage: Coverage, devices: Sequence[Device]) -> list[dict[str, Any]]:
    """Per function and region (configuration space, each BAR): accesses, distinct bytes read and
    written, whether the first and last byte were reached, the offsets touched (first runs), and for
    configuration space how many of the declared writable bytes were written."""
    types = {str(d.bdf): d.dtype for d in devices}
    rows: list[dict[str, Any]] = []
    for key in sorted(set(coverage.accesses) | set(coverage.read) | set(coverage.written)):
        bdf, region = key
        dtype = types.get(bdf)
        size = _region_size(dtype, region)
        read, written = coverage.read.get(key, set()), coverage.written.get(key, set())
        if size is not None:  # an access that straddles the end reaches past the region
            read, written = {o for o in read if o < size}, {o for o in written if o < size}
        touched = read | written
        row: dict[str, Any] = {
            "function": bdf,
            "type": dtype.name if dtype is not None else "",
            "region": region,
            "size": size,
            "accesses": coverage.accesses.get(key, 0),
            "bytes_read": len(read),
            "bytes_written": len(written),
            "edges": size is not None and {0, size - 1} <= touched,
            "offsets": _runs(touched),
        }
        if region == "config" and dtype is not None:
            writable = {o for o, m in enumerate(dtype.declared.wmask) if m} | {
                o for o, m in enumerate(dtype.declared.w1cmask) if m
            }
            row["writable_written"] = [len(writable & written), len(writable)]
        rows.append(row)
    return rows


def print_exercised(report: FuzzReport, console: Console) -> None:
    """The exercised table: one row per function and region a campaign reached."""
    table = Table(title="exercised")
    for column in ("function", "type", "region", "size", "accesses", "read", "written", "edges", "offsets"):
        table.add_column(column)
    for row in exercised_rows(report.coverage, report.devices):
        size = "" if row["size"] is None else f"{row['size']:#x}"
        written = f"{row['bytes_written']:,} B"
        if "writable_written" in row:
            done, total = row["writable_written"]
            written += f" ({done}/{total} writable)"
        table.add_row(
            escape(row["function"]),
            escape(row["type"]),
            row["region"],
            size,
            f"{row['accesses']:,}",
            f"{row['bytes_read']:,} B",
            written,
            "yes" if row["edges"] else "no",
            escape(row["offsets"]),
        )
    console.print(table)
    rows = register_rows(report.coverage, report.devices)
    if not rows:
        return
    registers = Table(title="registers exercised")
    for column in (
        "function",
        "register",
        "where",
        "classes",
        "reads",
        "writes",
        "bits written 1",
        "written 0",
    ):
        registers.add_column(column)
    for row in rows:
        registers.add_row(
            escape(row["function"]),
            escape(row["register"]),
            row["where"],
            row["classes"],
            f"{row['reads']:,}",
            f"{row['writes']:,}",
            row["ones"],
            row["zeros"],
        )
    console.print(registers)


def register_rows(coverage: Coverage, devices: Sequence[Device]) -> list[dict[str, Any]]:
    """Per register of each register map (R-REG-001): reads, writes, and how many of its bits were
    written as 1 and as 0 (``n/width``); every register is listed, exercised or not."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for device in devices:
        registers = device.dtype.behaviour
        key = str(device.bdf)
        if not isinstance(registers, RegisterMap) or key in seen:
            continue
        seen.add(key)
        for register in registers.registers:
            reads, writes, ones, zeros = coverage.registers.get((key, register.name), [0, 0, 0, 0])
            bits = 8 * register.width
            rows.append(
                {
                    "function": key,
                    "register": register.name,
                    "where": register.where(),
                    "classes": "/".join(sorted({a.value for a in register.classes()})),
                    "reads": reads,
                    "writes": writes,
                    "ones": f"{bin(ones).count('1')}/{bits}",
                    "zeros": f"{bin(zeros).count('1')}/{bits}",
                }
            )
    return rows


# --------------------------------------------------------------------------- the command


def write_finding(
    finding: FuzzFinding,
    folder: Path,
    target_spec: str,
    replay_spec: str | None,
    invariant_specs: Sequence[str],
) -> tuple[Path, str]:
    """Write a finding's trace to ``folder``; return the file and the command that reproduces it."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"fuzz-{finding.kind}-{'-'.join(finding.rules[:1]) or 'finding'}")
    path = folder / f"{stem.lower().strip('-')}.jsonl"
    if finding.kind == "divergence" and replay_spec is not None:
        command = f"vpcid replay {path} --adapter {replay_spec}"
    else:
        extra = "".join(f" --invariants {spec}" for spec in invariant_specs)
        command = f"vpcid fuzz {target_spec} --replay {path}{extra}"
    notes = {
        "target": target_spec,
        "kind": finding.kind,
        "finding": finding.description,
        "rules": list(finding.rules),
        "replay": command,
    }
    write_trace(path, TraceHeader({}, notes), [Step(op) for op in finding.trace])
    return path, command


@contextmanager
def _progress_display(console: Console, options: RunOptions) -> Iterator[Callable[[CampaignStats], None]]:
    """A rich progress line (operations, rate, examples, findings so far) while a campaign runs."""
    timed = options.duration is not None
    total = options.duration if timed else options.examples
    with Progress(
        SpinnerColumn(),
        TextColumn("fuzzing"),
        BarColumn(),
        TextColumn("{task.fields[operations]:,} ops · {task.fields[rate]:,.0f}/s"),
        TextColumn("{task.fields[examples]:,} examples"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task: TaskID = bar.add_task("fuzz", total=total, operations=0, rate=0.0, examples=0)

        def update(stats: CampaignStats) -> None:
            done = stats.elapsed if timed else stats.examples
            bar.update(
                task, completed=done, operations=stats.operations, rate=stats.rate, examples=stats.examples
            )

        yield update


def _console() -> Console:
    if sys.stdout.isatty():
        return Console(emoji=False, highlight=False)
    return Console(width=140, emoji=False, highlight=False)


FUZZ_EPILOG = """\b
Examples:
  vpcid fuzz mymodule:factory --duration 60        # your device model behind an adapter
  vpcid fuzz my-device.json --invariants checks:invariants
  vpcid fuzz vfio-user:spawn --examples 500
  vpcid fuzz qemu:edu --workers 2 --duration 300 --database redis://ci-cache:6379
  vpcid fuzz my-device.json --replay counterexamples/fuzz-invariant-version.jsonl

\b
Exit status:
  0  no finding within the budget (or a replayed trace no longer fails)
  1  a finding: divergence, violated invariant or crash (its minimal trace is written)
  2  bad input: a file, an option or the target (one line: vpcid: error: ...)
  3  the adapter cannot run on this machine (the reason is printed)"""


@click.command("fuzz", epilog=FUZZ_EPILOG)
@click.argument("target_spec", metavar="TYPE_OR_ADAPTER")
@click.option(
    "--types",
    "type_files",
    multiple=True,
    metavar="FILE",
    help="More device types for a full-API adapter to plug (repeatable).",
)
@click.option(
    "--invariants",
    "invariant_specs",
    multiple=True,
    metavar="MODULE:NAME",
    help="Invariants checked after every operation: an Invariant, a function or a list (repeatable).",
)
@click.option(
    "--examples",
    type=click.IntRange(min=1),
    default=None,
    help=f"Hypothesis examples to run ({DEFAULT_EXAMPLES} without --duration).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Run for this long (with --examples: whichever ends first).",
)
@click.option(
    "--steps", type=click.IntRange(min=1, max=1000), default=25, show_default=True, help="Rules per example."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the campaign (worker k adds k)."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Campaigns at once on pytest-xdist, one per core, sharing the database.",
)
@click.option(
    "--database",
    "database",
    default=str(DEFAULT_DATABASE),
    show_default=True,
    metavar="DIR|redis://HOST:PORT[/DB]|none",
    help="Hypothesis example database.",
)
@click.option("--replay-only", is_flag=True, help="Only replay the failing examples the database holds.")
@click.option(
    "--no-shrink",
    "no_shrink",
    is_flag=True,
    help="Skip Hypothesis's shrinking (faster); the trace is still cut down operation by operation.",
)
@click.option(
    "--replay",
    "replay_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Replay a trace on the target, checking the invariants; exit 1 if it still fails.",
)
@click.option(
    "--counterexamples",
    "counterexample_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_COUNTEREXAMPLES,
    show_default=True,
    help="Where a finding's trace is written.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the campaign as JSON: totals, what was exercised, the finding.",
)
def fuzz_command(
    target_spec: str,
    type_files: tuple[str, ...],
    invariant_specs: tuple[str, ...],
    examples: int | None,
    duration: float | None,
    steps: int,
    seed: int,
    workers: int,
    database: str,
    replay_only: bool,
    no_shrink: bool,
    replay_file: Path | None,
    counterexample_dir: Path,
    json_path: Path | None,
) -> None:
    """Fuzz a device model: a device-type file or bundled type (on the model), or any adapter.

    Hypothesis draws every step (which device, BAR, offset, width, value),
    the model checks every observation, user invariants are checked after
    every operation. The first finding is cut down to a minimal trace,
    written to --counterexamples with the command that reproduces it.
    """
    console = _console()
    try:
        if replay_file is not None:
            _replay(target_spec, type_files, invariant_specs, replay_file)
            return
        options = RunOptions(
            target_spec,
            list(type_files),
            list(invariant_specs),
            examples if examples is not None or duration is not None else DEFAULT_EXAMPLES,
            duration,
            seed,
            database,
            replay_only,
            steps,
            not no_shrink,
        )
        load_invariants(invariant_specs)  # bad invariants are bad input before any worker starts
        open_database(database)
        with _progress_display(console, options) as update:
            report = run_fuzz(options, workers, update)
    except AdapterSpecError:
        raise
    except AdapterUnavailable as exc:
        click.echo(f"vpcid: adapter {target_spec!r} is unavailable: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    console.print(
        escape(
            f"fuzzed {report.target}: {report.operations:,} operations, {report.examples:,} examples "
            f"in {report.seconds:.1f} s ({report.rate:,.0f} operations/s, {report.workers} "
            f"worker{'s' if report.workers > 1 else ''})"
        ),
        soft_wrap=True,
    )
    print_exercised(report, console)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8")
        console.print(escape(f"wrote {json_path}"), soft_wrap=True)
    finding = report.finding
    if finding is None:
        console.print("no finding")
        return
    replay_spec = None if finding.kind != "divergence" else _replay_spec(target_spec)
    path, command = write_finding(finding, counterexample_dir, target_spec, replay_spec, invariant_specs)
    console.print(escape(f"FINDING ({finding.kind}): {finding.description}"), soft_wrap=True)
    if finding.rules:
        console.print(escape(f"breaks: {', '.join(finding.rules)}"))
    console.print(
        escape(
            f"minimal trace: {len(finding.trace)} operations (Hypothesis's example had "
            f"{finding.shrunk_from}), written to {path}"
        ),
        soft_wrap=True,
    )
    for op in finding.trace:
        console.print("  " + escape(json.dumps(op.to_json(), sort_keys=True)), soft_wrap=True)
    console.print(escape(f"reproduce with: {command}"), soft_wrap=True)
    sys.exit(EXIT_FINDING)


def _replay_spec(target_spec: str) -> str | None:
    """The ``--adapter`` spec ``vpcid replay`` reproduces a divergence of this target with."""
    target = open_target(target_spec)
    try:
        return target.replay
    finally:
        target.adapter.close()


def _replay(target_spec: str, type_files: Sequence[str], invariant_specs: Sequence[str], trace: Path) -> None:
    """``--replay``: run a trace on the target with the invariants; exit 1 if it still fails."""
    invariants = load_invariants(invariant_specs)
    _header, steps = read_trace(trace)
    ops = [step.op for step in steps]
    if not ops or ops[0].kind is not OpKind.INIT:
        raise CampaignError(
            f'{trace}: a replayable trace starts with an init operation; add {{"op": "init"}}'
        )
    target = open_target(target_spec, _types_of(type_files))
    try:
        outcome = replay(target, ops, invariants)
    finally:
        target.adapter.close()
    if outcome is None:
        click.echo(f"no failure: {len(ops)} operations matched the model and kept every invariant")
        return
    line = steps[outcome.index].line if outcome.index < len(steps) else steps[-1].line
    what = f"{outcome.kind}: {outcome.name}" if outcome.name else outcome.kind
    click.echo(f"FAILS at line {line} ({what}): {outcome.detail}")
    sys.exit(EXIT_FINDING)


# --------------------------------------------------------------------------- the pytest fixture


def _fixture_target(target: object, types: Sequence[DeviceType]) -> tuple[Target, bool]:
    """The target the ``vpcid_fuzz`` fixture was given, and whether the fixture opened (and closes) it."""
    if isinstance(target, Target):
        return target, False
    if isinstance(target, DeviceType):
        return type_target([target, *types]), True
    if isinstance(target, list | tuple) and target and all(isinstance(t, DeviceType) for t in target):
        return type_target([*target, *types]), True
    if isinstance(target, str | Path):
        return open_target(str(target), types), True
    if hasattr(target, "execute") and hasattr(target, "info"):
        return Target.for_adapter(target, types=types), False  # type: ignore[arg-type]
    raise CampaignError(
        f"vpcid_fuzz: cannot fuzz {target!r}; give a spec, a DeviceType, an adapter or a Target"
    )


def pytest_campaign(
    target: object,
    *,
    folder: Path,
    test: str,
    invariants: Sequence[Invariant] = (),
    examples: int | None = None,
    duration: float | None = None,
    seed: int = 0,
    machine: type[DeviceMachine] = DeviceMachine,
    types: Sequence[DeviceType] = (),
    shrink: bool = True,
    examples_override: int | None = None,
    duration_override: float | None = None,
    database: str | None = None,
) -> CampaignResult:
    """The ``vpcid_fuzz`` fixture's campaign: on a finding, write its trace to ``folder`` and fail the
    test ``test`` with it; else return the campaign. The command line's ``--vpcid-fuzz-*`` options
    (the overrides) win over what the test asks."""
    import pytest

    if examples_override is not None or duration_override is not None:
        examples, duration = examples_override, duration_override
    if examples is None and duration is None:
        examples = DEFAULT_EXAMPLES
    resolved, owned = _fixture_target(target, types)
    try:
        result = run_campaign(
            resolved,
            examples=examples,
            duration=duration,
            seed=seed,
            invariants=invariants,
            database=open_database(database),
            shrink=shrink,
            machine=machine,
        )
    finally:
        if owned:
            resolved.adapter.close()
    finding = result.finding
    if finding is None:
        return result
    spec = str(target) if isinstance(target, str | Path) else resolved.label
    replay_spec = resolved.replay if finding.kind == "divergence" else None
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", test).strip("-")[:120]
    path, command = write_finding(finding, folder / stem, spec, replay_spec, ())
    trace = "\n".join(json.dumps(op.to_json(), sort_keys=True) for op in finding.trace)
    rules = f"\nbreaks: {', '.join(finding.rules)}" if finding.rules else ""
    pytest.fail(
        f"{finding.description}{rules}\nminimal trace ({len(finding.trace)} operations, written to "
        f"{path}):\n{trace}\nreproduce with: {command}",
        pytrace=False,
    )


FUZZ_COMMAND = fuzz_command
"""Attached to ``vpcid`` in :mod:`vpcid.conformance.cli`."""

__all__ = [
    "DEFAULT_DATABASE",
    "FUZZ_COMMAND",
    "DeviceMachine",
    "FuzzReport",
    "RunOptions",
    "exercised_rows",
    "load_invariants",
    "open_database",
    "open_target",
    "pytest_campaign",
    "run_fuzz",
    "run_workers",
    "type_target",
    "worker_main",
]
