"""Certification reports: JSON (the record), JUnit XML (for CI), HTML (for people), console table."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from vpcid.conformance.certify import CertificationReport, Verdict
from vpcid.conformance.trace import Op, Step, TraceHeader, write_trace
from vpcid.model.profile import AXIS_REQUIREMENT, DEFAULT_PROFILE

VERDICT_STYLE = {
    Verdict.PASS: "green",
    Verdict.FAIL: "bold red",
    Verdict.NOT_APPLICABLE: "dim",
    Verdict.WAIVED: "yellow",
}


def write_counterexamples(report: CertificationReport, directory: Path) -> list[Path]:
    """One replayable trace file per distinct failure (``vpcid replay FILE --adapter X``)."""
    written: dict[str, Path] = {}
    for result in report.requirements:
        for failure in result.failures:
            key = json.dumps(failure.trace, sort_keys=True)
            if key in written:
                continue
            steps = [Step(Op.from_json(obj)) for obj in failure.trace]
            header = TraceHeader(
                report.profile,
                {"adapter": report.adapter, "check": failure.check, "divergence": failure.description,
                 "requirements": [r.rid for r in report.requirements if failure in r.failures],
                 "seed": report.seed},
            )  # fmt: skip
            path = directory / f"{result.rid.lower()}-{len(written) + 1:03d}.jsonl"
            write_trace(path, header, steps)
            written[key] = path
    return list(written.values())


def write_json(report: CertificationReport, path: Path) -> None:
    """Every requirement with verdict, profile, counts, seed and minimal counterexamples."""
    path.write_text(json.dumps(report.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_junit(report: CertificationReport, path: Path) -> None:
    """One test case per requirement; failures carry the divergence and the minimal trace."""
    counts = report.counts()
    suite = ET.Element(
        "testsuite",
        name=f"vpcid certification of {report.adapter}",
        tests=str(len(report.requirements)),
        failures=str(counts[Verdict.FAIL.value]),
        skipped=str(counts[Verdict.NOT_APPLICABLE.value] + counts[Verdict.WAIVED.value]),
        errors=str(len(report.errors)),
        time=f"{report.duration_s:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in {**report.profile, "seed": str(report.seed), "budget": str(report.budget)}.items():
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


def render_html(report: CertificationReport) -> str:
    """A self-contained page: summary, profile, and the per-requirement table with counterexamples."""
    esc = html.escape
    counts = report.counts()
    status = "CONFORMANT" if report.conformant else "NOT CONFORMANT"
    rows = []
    for r in report.requirements:
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
        rows.append(
            f"<tr class='{r.verdict.name.lower()}'><td>{esc(r.rid)}</td><td>{esc(r.title)}</td>"
            f"<td class='verdict'>{esc(r.verdict.value)}</td><td>{r.checks}</td>"
            f"<td>{esc(r.variant or '')}</td><td>{details}{waiver}</td></tr>"
        )
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
    errors = "".join(f"<li>{esc(e)}</li>" for e in report.errors)
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>vpcid certification: {esc(report.adapter)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
h1 .ok {{ color: #1a7f37; }} h1 .bad {{ color: #cf222e; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; vertical-align: top; text-align: left; }}
tr.fail td.verdict {{ background: #ffebe9; color: #cf222e; font-weight: bold; }}
tr.pass td.verdict {{ background: #dafbe1; color: #1a7f37; }}
tr.not_applicable td.verdict {{ color: #888; }}
tr.waived td.verdict {{ background: #fff8c5; }}
tr.deviation td {{ background: #fff8c5; font-weight: bold; }}
pre {{ background: #f6f8fa; padding: 0.5rem; overflow-x: auto; font-size: 0.85em; }}
</style></head><body>
<h1>vpcid certification of <code>{esc(report.adapter)}</code>:
<span class="{"ok" if report.conformant else "bad"}">{status}</span></h1>
<p>{esc(report.description)}</p>
<p>Requirements: {esc(summary)}. Seed {report.seed}, budget {report.budget},
{report.duration_s:.1f} s.</p>
<ul>{engines}</ul>
{f"<h2>Errors</h2><ul>{errors}</ul>" if errors else ""}
<h2>Declared profile</h2>
<p>Highlighted rows are where the implementation declares a variant other than the spec's default.</p>
<table><tr><th>axis</th><th>declared</th><th>default</th><th>requirement</th></tr>{profile}</table>
<h2>Requirements</h2>
<table><tr><th>requirement</th><th>title</th><th>verdict</th><th>checks</th><th>variant</th>
<th>counterexample (minimal trace; replay with <code>vpcid replay</code>)</th></tr>
{"".join(rows)}
</table></body></html>
"""


def write_html(report: CertificationReport, path: Path) -> None:
    path.write_text(render_html(report), encoding="utf-8")


def print_table(report: CertificationReport, console: Console, show_all: bool = True) -> None:
    """The per-requirement table on the terminal, then a one-line verdict."""
    table = Table(title=f"vpcid certification of {report.adapter}")
    for column in ("requirement", "title", "verdict", "checks", "variant"):
        table.add_column(column)
    for r in report.requirements:
        if show_all or r.verdict is Verdict.FAIL:
            style = VERDICT_STYLE[r.verdict]
            table.add_row(r.rid, r.title, f"[{style}]{r.verdict.value}[/]", str(r.checks), r.variant or "")
    console.print(table)
    for r in report.requirements:
        for f in r.failures[:1]:
            console.print(f"[bold red]{r.rid}[/] {f.check}: {f.description}")
    for error in report.errors:
        console.print(f"[bold red]error:[/] {error}")
    for name, answer in report.declined_types.items():
        console.print(
            f"[yellow]declined:[/] the implementation answered define_type of {escape(name)!r} with "
            f"{answer}; its cases were left out"
        )
    counts = report.counts()
    verdict = "[green]CONFORMANT[/]" if report.conformant else "[bold red]NOT CONFORMANT[/]"
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    console.print(
        f"{verdict}: {summary} ({report.duration_s:.1f} s, seed {report.seed}, budget {report.budget})"
    )
