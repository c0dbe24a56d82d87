"""Certification reports: JSON (the record), JUnit XML (for CI), HTML (for people), console table.

Every form carries the same facts: the verdict in one vocabulary
(:func:`verdict_text`: CONFORMANT or NOT CONFORMANT, a third-party target's
findings marked as such), the run (:class:`RunContext`: date, vpcid and
spec versions, host, command line) with its seed and budget, and per
requirement its verdict, variant and minimal counterexample. User-supplied
text is escaped wherever it is shown: HTML escaping on the page, rich
markup escaping on the terminal.

Each requirement links to the rendered spec (``vpcid spec-site``) at
:class:`SpecSite`: the folder or URL in ``VPCID_SPEC_SITE``, by default the
checkout's build/spec-site (a link relative to the report's own folder, so a
report and the site move together inside the checkout).
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import platform
import re
import shlex
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from vpcid.conformance.certify import CertificationReport, RequirementResult, Verdict
from vpcid.conformance.explain import DEFAULT_SITE, requirement_anchor
from vpcid.conformance.trace import Op, Step, TraceHeader, write_trace
from vpcid.conformance.traceability import load_requirements, repository_root, spec_dir
from vpcid.model.profile import AXIS_REQUIREMENT, DEFAULT_PROFILE

VERDICT_STYLE = {
    Verdict.PASS: "green",
    Verdict.FAIL: "bold red",
    Verdict.NOT_APPLICABLE: "dim",
    Verdict.WAIVED: "yellow",
}
CONFORMANT = "CONFORMANT"
NOT_CONFORMANT = "NOT CONFORMANT"
THIRD_PARTY_NOTE = "third-party target: findings reported, not a failure of this run"
SPEC_VERSION_LINE = re.compile(r"^Specification version: (\S+)\s*$", re.MULTILINE)


# ------------------------------------------------------------------ the run


def vpcid_version() -> str:
    """The installed vpcid's version."""
    try:
        return version("vpcid")
    except PackageNotFoundError:
        return "unknown"


@cache
def spec_version() -> str:
    """The specification's version (spec/README.md) and a digest of its text, e.g. ``0.1 (sha256 3f2a...)``.

    The digest covers every Markdown file under spec/, so two reports name
    the same version only when their requirements read the same.
    """
    root = spec_dir()
    match = SPEC_VERSION_LINE.search((root / "README.md").read_text(encoding="utf-8"))
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.md")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{match[1] if match else 'unversioned'} (sha256 {digest.hexdigest()[:12]})"


@dataclass(frozen=True)
class RunContext:
    """What a report says about the run beyond its results: when, with what, where, how invoked."""

    date: str
    """UTC date and time the run started, ISO 8601."""
    vpcid_version: str
    spec_version: str
    host: str
    """Host name and platform."""
    command_line: str
    third_party: bool = False
    """The target is someone else's implementation (QEMU's models): findings are reported as such."""
    adapter_spec: str = ""
    """The ``--adapter`` argument, as the replay command needs it."""

    @classmethod
    def current(cls, adapter_spec: str = "", third_party: bool = False) -> RunContext:
        """The context of this process's run, now."""
        argv = [Path(sys.argv[0]).name if sys.argv else "vpcid", *sys.argv[1:]]
        return cls(
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            vpcid_version=vpcid_version(),
            spec_version=spec_version(),
            host=f"{platform.node() or 'unknown host'} ({platform.platform()})",
            command_line=shlex.join(argv),
            third_party=third_party,
            adapter_spec=adapter_spec,
        )

    def to_json(self, report: CertificationReport) -> dict[str, Any]:
        return {
            "date": self.date, "vpcid_version": self.vpcid_version, "spec_version": self.spec_version,
            "host": self.host, "command_line": self.command_line, "seed": report.seed,
            "budget": report.budget, "third_party": self.third_party,
        }  # fmt: skip


def verdict_text(report: CertificationReport, context: RunContext) -> str:
    """The one verdict vocabulary: CONFORMANT, NOT CONFORMANT, NOT CONFORMANT (third-party ...)."""
    if report.conformant:
        return CONFORMANT
    return f"{NOT_CONFORMANT} ({THIRD_PARTY_NOTE})" if context.third_party else NOT_CONFORMANT


def replay_line(trace: Path, adapter_spec: str) -> str:
    """The exact shell command that replays ``trace`` on the adapter (quoted for a POSIX shell)."""
    return shlex.join(["vpcid", "replay", str(trace), "--adapter", adapter_spec])


# ------------------------------------------------------------------ links to the rendered spec

SPEC_SITE_VARIABLE = "VPCID_SPEC_SITE"
"""Where reports link each requirement: a URL (``https://...``) or a folder holding the built site."""
URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@cache
def requirement_pages() -> dict[str, str]:
    """R-ID -> its page in the rendered spec, relative to the site, e.g. ``requirements/03-x.html``."""
    root = spec_dir()
    return {
        rid: req.path.relative_to(root).with_suffix(".html").as_posix()
        for rid, req in load_requirements().items()
    }


@dataclass(frozen=True)
class SpecSite:
    """The rendered spec that reports link to (``vpcid spec-site`` builds it)."""

    base: str
    """A URL, or a folder: absolute, or relative to the folder of the report that links to it."""

    @classmethod
    def configured(cls) -> SpecSite:
        """``VPCID_SPEC_SITE`` if set; else the checkout's build/spec-site; else ``spec-site`` beside
        the report."""
        chosen = os.environ.get(SPEC_SITE_VARIABLE, "").strip()
        if chosen:
            return cls(chosen)
        root = repository_root()
        return cls(str(root / DEFAULT_SITE) if root is not None else "spec-site")

    def href(self, rid: str, report_folder: Path | None = None) -> str:
        """The link to ``rid``'s section: relative from a report in ``report_folder``; without one,
        absolute (for the terminal)."""
        page = f"{requirement_pages()[rid]}#{requirement_anchor(rid)}"
        if URL.match(self.base):
            return f"{self.base.rstrip('/')}/{page}"
        folder = Path(self.base)
        if report_folder is not None:
            if not folder.is_absolute():
                return (folder / page).as_posix()
            return Path(os.path.relpath(folder, report_folder.resolve())).joinpath(page).as_posix()
        located = folder if folder.is_absolute() else Path.cwd() / folder
        path, _, anchor = page.partition("#")
        return f"{(located / path).resolve().as_uri()}#{anchor}"


# ------------------------------------------------------------------ counterexamples


def write_counterexamples(
    report: CertificationReport, directory: Path, context: RunContext | None = None
) -> list[Path]:
    """One replayable trace file per distinct failure (``vpcid replay FILE --adapter X``)."""
    context = context or RunContext.current(report.adapter)
    written: dict[str, Path] = {}
    for result in report.requirements:
        for failure in result.failures:
            key = json.dumps(failure.trace, sort_keys=True)
            if key in written:
                continue
            steps = [Step(Op.from_json(obj)) for obj in failure.trace]
            path = directory / f"{result.rid.lower()}-{len(written) + 1:03d}.jsonl"
            header = TraceHeader(
                report.profile,
                {"adapter": report.adapter, "check": failure.check, "divergence": failure.description,
                 "requirements": [r.rid for r in report.requirements if failure in r.failures],
                 "seed": report.seed, "date": context.date, "vpcid_version": context.vpcid_version,
                 "replay": replay_line(path, context.adapter_spec or report.adapter)},
            )  # fmt: skip
            write_trace(path, header, steps)
            written[key] = path
    return list(written.values())


# ------------------------------------------------------------------ JSON and JUnit


def write_json(report: CertificationReport, path: Path, context: RunContext | None = None) -> None:
    """Every requirement with verdict, profile, counts, seed and minimal counterexamples, and the run."""
    context = context or RunContext.current(report.adapter)
    document = {"run": context.to_json(report), "verdict": verdict_text(report, context), **report.to_json()}
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_junit(report: CertificationReport, path: Path, context: RunContext | None = None) -> None:
    """One test case per requirement; failures carry the divergence and the minimal trace."""
    context = context or RunContext.current(report.adapter)
    counts = report.counts()
    suite = ET.Element(
        "testsuite",
        name=f"vpcid certification of {report.adapter}",
        tests=str(len(report.requirements)),
        failures=str(counts[Verdict.FAIL.value]),
        skipped=str(counts[Verdict.NOT_APPLICABLE.value] + counts[Verdict.WAIVED.value]),
        errors=str(len(report.errors)),
        time=f"{report.duration_s:.3f}",
        timestamp=context.date,
        hostname=context.host,
    )
    properties = ET.SubElement(suite, "properties")
    run = {
        "verdict": verdict_text(report, context), "date": context.date,
        "vpcid_version": context.vpcid_version, "spec_version": context.spec_version, "host": context.host,
        "command_line": context.command_line, "seed": str(report.seed), "budget": str(report.budget),
    }  # fmt: skip
    for key, value in {**report.profile, **run}.items():
        ET.SubElement(properties, "property", name=key, value=value)
    for result in report.requirements:
        case = ET.SubElement(
            suite, "testcase", classname="vpcid.requirements", name=f"{result.rid} {result.title}"
        )
        if result.verdict is Verdict.FAIL:
            first = result.failures[0]
            failure = ET.SubElement(case, "failure", message=f"{first.check}: {first.description}")
            failure.text = "\n".join(json.dumps(step) for step in first.trace)
        elif result.verdict is Verdict.NOT_APPLICABLE:
            ET.SubElement(case, "skipped", message="no applicable check for this adapter")
        elif result.verdict is Verdict.WAIVED:
            ET.SubElement(case, "skipped", message=f"waived: {result.waiver}")
    for error in report.errors:
        case = ET.SubElement(suite, "testcase", classname="vpcid.certification", name="certification")
        ET.SubElement(case, "error", message=error)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


# ------------------------------------------------------------------ HTML


@cache
def requirement_texts() -> dict[str, tuple[str, str]]:
    """R-ID -> (spec file relative to spec/, the requirement's text below its heading)."""
    root = spec_dir()
    texts: dict[str, tuple[str, str]] = {}
    for rid, req in load_requirements().items():
        lines = req.path.read_text(encoding="utf-8").splitlines()[req.line :]
        body: list[str] = []
        for line in lines:
            if line.startswith("#"):
                break
            body.append(line)
        texts[rid] = (req.path.relative_to(root).as_posix(), "\n".join(body).strip())
    return texts


def _anchor(rid: str) -> str:
    return f"text-{rid}"


def _failure_summary(report: CertificationReport) -> str:
    esc = html.escape
    items = []
    for r in report.requirements:
        if r.verdict is not Verdict.FAIL:
            continue
        first = r.failures[0]
        more = f" (and {len(r.failures) - 1} more)" if len(r.failures) > 1 else ""
        items.append(
            f'<li><a href="#row-{esc(r.rid)}">{esc(r.rid)}</a> {esc(r.title)}: {esc(first.check)}: '
            f"{esc(first.description)}{more}</li>"
        )
    items += [f"<li>certification error: {esc(e)}</li>" for e in report.errors]
    if not items:
        return "<p>No requirement failed.</p>"
    return f"<h2>Failures</h2><ol>{''.join(items)}</ol>"


def _row(r: RequirementResult, site: SpecSite, folder: Path | None) -> str:
    esc = html.escape
    details = ""
    if r.failures:
        items = []
        for f in r.failures[:3]:
            trace = "\n".join(json.dumps(step) for step in f.trace)
            variant = f" — matches variant {esc(str(f.observed_variant))}" if f.observed_variant else ""
            items.append(
                f"<details><summary>{esc(f.check)}: {esc(f.description)}{variant}</summary>"
                f"<pre>{esc(trace)}</pre></details>"
            )
        details = "".join(items)
    waiver = f"<div class='waiver'>waived: {esc(r.waiver)}</div>" if r.waiver else ""
    return (
        f"<tr class='{r.verdict.name.lower()}' id=\"row-{esc(r.rid)}\"><td>{esc(r.rid)}</td>"
        f'<td><a href="#{_anchor(r.rid)}">{esc(r.title)}</a> '
        f'<a class="spec" href="{esc(site.href(r.rid, folder))}">spec</a></td>'
        f"<td class='verdict'>{esc(r.verdict.value)}</td><td>{r.checks}</td>"
        f"<td>{esc(r.variant or '')}</td><td>{details}{waiver}</td></tr>"
    )


def render_html(
    report: CertificationReport,
    context: RunContext | None = None,
    site: SpecSite | None = None,
    folder: Path | None = None,
) -> str:
    """A self-contained page: verdict, failure summary, the run, profile, the per-requirement table with
    counterexamples, and the text of every requirement (each row's title links to it, and its "spec"
    link to the rendered spec: ``site``, by default :meth:`SpecSite.configured`, linked from a page
    in ``folder``)."""
    context = context or RunContext.current(report.adapter)
    site = site or SpecSite.configured()
    folder = folder or Path.cwd()
    esc = html.escape
    counts = report.counts()
    status = verdict_text(report, context)
    rows = "".join(_row(r, site, folder) for r in report.requirements)
    defaults = DEFAULT_PROFILE.to_mapping()
    deviation = ' class="deviation"'
    profile = "".join(
        f"<tr{deviation if v != defaults.get(k) else ''}><td>{esc(k)}</td><td>{esc(v)}</td>"
        f"<td>{esc(defaults.get(k, ''))}</td><td>{esc(AXIS_REQUIREMENT.get(k, ''))}</td></tr>"
        for k, v in report.profile.items()
    )
    engines = "".join(
        f"<li>{esc(name)}: {esc(', '.join(f'{k} {v}' for k, v in stats.items()))}</li>"
        for name, stats in report.engines.items()
    )
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    run = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>"
        for k, v in (("date", context.date), ("vpcid", context.vpcid_version), ("spec", context.spec_version),
                     ("host", context.host), ("command line", context.command_line), ("seed", report.seed),
                     ("budget", report.budget), ("duration", f"{report.duration_s:.1f} s"))
    )  # fmt: skip
    texts = requirement_texts()
    spec_texts = "".join(
        f'<dt id="{_anchor(r.rid)}">{esc(r.rid)} — {esc(r.title)} '
        f'<small>(spec/{esc(texts[r.rid][0])}, <a class="spec" href="{esc(site.href(r.rid, folder))}">'
        "rendered</a>)</small></dt>"
        f"<dd><pre class='spec'>{esc(texts[r.rid][1])}</pre></dd>"
        for r in report.requirements
        if r.rid in texts
    )
    css_class = "ok" if report.conformant else ("third" if context.third_party else "bad")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>vpcid certification: {esc(report.adapter)}: {esc(status)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
h1 .ok {{ color: #1a7f37; }} h1 .bad {{ color: #cf222e; }} h1 .third {{ color: #9a6700; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; vertical-align: top; text-align: left; }}
tr.fail td.verdict {{ background: #ffebe9; color: #cf222e; font-weight: bold; }}
tr.pass td.verdict {{ background: #dafbe1; color: #1a7f37; }}
tr.not_applicable td.verdict {{ color: #888; }}
tr.waived td.verdict {{ background: #fff8c5; }}
tr.deviation td {{ background: #fff8c5; font-weight: bold; }}
pre {{ background: #f6f8fa; padding: 0.5rem; overflow-x: auto; font-size: 0.85em; }}
pre.spec {{ white-space: pre-wrap; font-family: inherit; font-size: 0.95em; }}
</style></head><body>
<h1>vpcid certification of <code>{esc(report.adapter)}</code>:
<span class="{css_class}">{esc(status)}</span></h1>
<p>{esc(report.description)}</p>
<p>Requirements: {esc(summary)}.</p>
{_failure_summary(report)}
<h2>Run</h2>
<table>{run}</table>
<ul>{engines}</ul>
<h2>Declared profile</h2>
<p>Highlighted rows are where the implementation declares a variant other than the spec's default.</p>
<table><tr><th>axis</th><th>declared</th><th>default</th><th>requirement</th></tr>{profile}</table>
<h2>Requirements</h2>
<p>Each requirement's "spec" link opens it in the rendered specification at
<code>{esc(site.base)}</code> (<code>vpcid spec-site</code> builds it;
set {SPEC_SITE_VARIABLE} to link elsewhere).</p>
<table><tr><th>requirement</th><th>title (links to its text)</th><th>verdict</th><th>checks</th>
<th>variant</th><th>counterexample (minimal trace; replay with <code>vpcid replay</code>)</th></tr>
{rows}
</table>
<h2>Requirement texts</h2>
<dl>{spec_texts}</dl>
</body></html>
"""


def write_html(report: CertificationReport, path: Path, context: RunContext | None = None) -> None:
    """Write the HTML report; its links to the rendered spec are relative to the report's folder."""
    path.write_text(render_html(report, context, folder=path.parent), encoding="utf-8")


# ------------------------------------------------------------------ terminal


def print_table(
    report: CertificationReport, console: Console, show_all: bool = True, context: RunContext | None = None
) -> None:
    """The per-requirement table on the terminal, the failures, then a one-line verdict.

    With ``show_all`` false only failing requirements are shown, and no table at all when none
    failed; waived findings are listed only with ``show_all``.
    """
    context = context or RunContext.current(report.adapter)
    shown = [r for r in report.requirements if show_all or r.verdict is Verdict.FAIL]
    if shown:
        table = Table(title=escape(f"vpcid certification of {report.adapter}"))
        for column in ("requirement", "title", "verdict", "checks", "variant"):
            table.add_column(column)
        for r in shown:
            style = VERDICT_STYLE[r.verdict]
            table.add_row(r.rid, escape(r.title), f"[{style}]{r.verdict.value}[/]", str(r.checks),
                          escape(r.variant or ""))  # fmt: skip
        console.print(table)
    elif not show_all:
        console.print("no requirement failed")
    site = SpecSite.configured()
    for r in report.requirements:
        if r.verdict is Verdict.FAIL:
            for f in r.failures[:1]:
                console.print(f"[bold red]{r.rid}[/] {escape(f.check)}: {escape(f.description)}")
                console.print(f"  the rule: {escape(site.href(r.rid))}", style="dim", soft_wrap=True)
        elif r.verdict is Verdict.WAIVED and show_all:
            console.print(f"[yellow]{r.rid} waived[/] ({escape(r.waiver or '')}): {len(r.failures)} findings")
    for error in report.errors:
        console.print(f"[bold red]error:[/] {escape(error)}")
    for name, answer in report.declined_types.items():
        console.print(
            f"[yellow]declined:[/] the implementation answered define_type of {escape(repr(name))} with "
            f"{escape(answer)}; its cases were left out"
        )
    counts = report.counts()
    status = verdict_text(report, context)
    colour = "green" if report.conformant else ("yellow" if context.third_party else "bold red")
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    console.print(
        f"[{colour}]{escape(status)}[/]: {summary} ({report.duration_s:.1f} s, seed {report.seed}, "
        f"budget {report.budget})"
    )
    console.print(
        escape(f"vpcid {context.vpcid_version}, spec {context.spec_version}, {context.date}, {context.host}"),
        style="dim",
    )


__all__ = [
    "CONFORMANT",
    "NOT_CONFORMANT",
    "RunContext",
    "SpecSite",
    "print_table",
    "render_html",
    "replay_line",
    "requirement_texts",
    "spec_version",
    "verdict_text",
    "write_counterexamples",
    "write_html",
    "write_json",
    "write_junit",
]
