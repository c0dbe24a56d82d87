"""The rendered spec (``vpcid spec-site``), opened in headless Chromium.

Every page is loaded by Debian's Chromium with ``--headless --dump-dom``:
the DOM after the page's scripts ran, which is what a reader's browser
shows. Chromium's own command line is enough here (no driver to match to
the browser's version, no extra package); the pages are static, so one
dump per page says everything the checks need. Checked: every requirement
ID is an anchor on its page and is linked to, no link or resource of any
page is broken, every mention of an R-ID in running text is a link, each
requirement shows worked hex examples and links to its evidence, and the
certification report's "spec" links land on the requirements' anchors.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from rich.console import Console
from vpcid.conformance.certify import CertificationReport, Failure, RequirementResult, Verdict
from vpcid.conformance.explain import Explainer, build_site, requirement_anchor
from vpcid.conformance.report import SPEC_SITE_VARIABLE, SpecSite, print_table, requirement_pages, write_html
from vpcid.conformance.traceability import Sources, repository_root

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DOCS_EXTRA = all(importlib.util.find_spec(name) is not None for name in ("sphinx", "myst_parser"))
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian's chromium is absent (.ci/install-debian.sh installs it)"
    ),
    pytest.mark.skipif(
        not DOCS_EXTRA, reason="Sphinx and MyST are absent (the docs extra: pip install -e '.[docs]')"
    ),
]
RID = re.compile(r"\bR-[A-Z]+-\d{3}\b")
NOT_RUNNING_TEXT = {"a", "pre", "code", "h1", "h2", "h3", "h4", "h5", "h6", "title", "script", "style"}
"""Where an R-ID need not be a link: in a link, code, a heading (it has its ¶ link) or page chrome."""
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
ROOT = repository_root()
CHECKED_STEP = re.compile(r"\*\s+\d+  \w+ .* -&gt; (0x[0-9a-f]+|ok|error [\w-]+|tables \[|blob digest \w+)")
"""A worked example's step that checks the requirement (marked ``*``), with the observation it expects."""


@dataclass
class Page:
    """What the checks need from one page's DOM."""

    ids: set[str] = field(default_factory=set)
    links: list[str] = field(default_factory=list)
    """Every ``a href``."""
    resources: list[str] = field(default_factory=list)
    """Every ``link href``, ``script src`` and ``img src``."""
    unlinked: list[str] = field(default_factory=list)
    """R-IDs mentioned in running text but not inside a link."""
    dom: str = ""


class _DomReader(HTMLParser):
    def __init__(self, page: Page) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "id" in values:
            self.page.ids.add(values["id"])
        if tag == "a" and "href" in values:
            self.page.links.append(values["href"])
        if (tag == "link" and "href" in values) or (tag in ("script", "img") and values.get("src")):
            self.page.resources.append(values.get("href") or values["src"])
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            while self.open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if not NOT_RUNNING_TEXT.intersection(self.open):
            self.page.unlinked += RID.findall(data)


def chromium_dom(path: Path) -> str:
    """The page's DOM after it loaded, as headless Chromium serialises it."""
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--dump-dom"]
    run = subprocess.run([*command, path.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, f"chromium could not load {path}: {run.stderr[-2000:]}"
    assert "</html>" in run.stdout, f"chromium dumped no document for {path}"
    return run.stdout


def read_page(path: Path) -> Page:
    page = Page(dom=chromium_dom(path))
    _DomReader(page).feed(page.dom)
    return page


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    assert ROOT is not None, "tests run from a source checkout"
    return Explainer(Sources.checkout(ROOT))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, explainer: Explainer) -> Path:
    output = tmp_path_factory.mktemp("spec-site")
    build_site(output, explainer)
    return output


@pytest.fixture(scope="module")
def pages(site: Path) -> dict[Path, Page]:
    """Every HTML page of the site, as Chromium shows it (two browsers at a time)."""
    paths = sorted(site.rglob("*.html"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(paths, pool.map(read_page, paths), strict=True))


def resolve(page: Path, href: str) -> tuple[Path, str] | None:
    """The file and fragment an internal link points at; None for another scheme (mailto:, https:)."""
    parts = urlsplit(href)
    if parts.scheme and parts.scheme != "file":
        return None
    target = Path(unquote(parts.path)) if parts.scheme == "file" else (page.parent / unquote(parts.path))
    if not parts.path:
        target = page
    return target.resolve(), parts.fragment


def test_every_requirement_is_an_anchor_on_its_page_and_is_linked_to(
    site: Path, pages: dict[Path, Page], explainer: Explainer
) -> None:
    linked: set[tuple[Path, str]] = set()
    for path, page in pages.items():
        for href in page.links:
            target = resolve(path, href)
            if target is not None:
                linked.add(target)
    for rid in explainer.requirements:
        where = (site / requirement_pages()[rid]).resolve()
        assert where in pages, f"{rid}: no page {requirement_pages()[rid]}"
        assert requirement_anchor(rid) in pages[where].ids, f"{rid}: no anchor #{requirement_anchor(rid)}"
        assert (where, requirement_anchor(rid)) in linked, f"{rid}: nothing links to it"


def test_no_link_or_resource_of_any_page_is_broken(site: Path, pages: dict[Path, Page]) -> None:
    broken = []
    checked = 0
    for path, page in pages.items():
        for href in page.links + page.resources:
            target = resolve(path, href)
            if target is None:
                continue
            file, fragment = target
            checked += 1
            if not file.is_file():
                broken.append(f"{path.relative_to(site)}: {href} (no such file)")
            elif fragment and file.suffix == ".html" and fragment not in pages[file].ids:
                broken.append(f"{path.relative_to(site)}: {href} (no element with that id)")
    assert not broken, f"{len(broken)} broken links of {checked}:\n" + "\n".join(broken[:40])
    assert checked > 1000


def test_every_mention_of_a_requirement_in_running_text_is_a_link(
    site: Path, pages: dict[Path, Page]
) -> None:
    unlinked = {str(p.relative_to(site)): page.unlinked for p, page in pages.items() if page.unlinked}
    unlinked.pop("searchindex.html", None)
    assert unlinked == {}


def test_each_requirement_shows_worked_hex_examples_and_links_to_its_evidence(
    site: Path, pages: dict[Path, Page], explainer: Explainer
) -> None:
    for rid in explainer.requirements:
        found = explainer.explain(rid)
        dom = pages[(site / requirement_pages()[rid]).resolve()].dom
        evidence = "../" * requirement_pages()[rid].count("/") + "evidence"
        start = dom.index(f'<section id="{requirement_anchor(rid)}">')
        end = dom.find("<section id=", start + 1)
        section = dom[start : end if end != -1 else len(dom)]
        assert "vpcid-evidence" in section, rid
        if found.vectors:
            assert "Worked example" in section, rid
            assert any(v.vector_id in section for v in found.vectors), f"{rid}: vector IDs are shown as typed"
            assert CHECKED_STEP.search(section), f"{rid}: no step checking it, in hex"
            assert f'href="{evidence}/vectors/' in section, rid
        for item, target in ((found.model, "model"), (found.tests, "tests"), (found.formal, "formal")):
            assert bool(item) == (f'href="{evidence}/{target}.html#' in section), f"{rid}: {target}"


def test_the_html_report_links_each_requirement_to_its_anchor(
    site: Path, pages: dict[Path, Page], explainer: Explainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SPEC_SITE_VARIABLE, str(site))
    results = [
        RequirementResult(rid, req.title, Verdict.PASS, 1) for rid, req in explainer.requirements.items()
    ]
    report = CertificationReport("reference", "", {}, 0, 100, results, {}, 0.0)
    path = tmp_path / "reports" / "reference.html"
    path.parent.mkdir()
    write_html(report, path)
    spec_links = re.findall(r'<a class="spec" href="([^"]+)"', chromium_dom(path))
    assert len(spec_links) == 2 * len(results), "a link in the table and one by the requirement's text"
    for href in spec_links:
        assert not href.startswith("/"), "relative to the report, so report and site can move together"
        target = resolve(path, href)
        assert target is not None
        file, fragment = target
        assert fragment in pages[file].ids, href


def test_the_terminal_report_names_the_rendered_rule_of_each_failure(
    site: Path, pages: dict[Path, Page]
) -> None:
    failure = Failure("cases", "a BAR written while it decodes did not move", [])
    failed = RequirementResult("R-DEC-005", "Writing a BAR that decodes", Verdict.FAIL, 1, [failure])
    report = CertificationReport("x", "", {}, 0, 100, [failed], {}, 0.0)
    console = Console(record=True, width=400)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SPEC_SITE_VARIABLE, str(site))
        assert SpecSite.configured().base == str(site)
        print_table(report, console, show_all=False)
    line = next(ln for ln in console.export_text().splitlines() if "the rule: " in ln)
    file, fragment = resolve(site, line.split("the rule: ", 1)[1].strip()) or (None, "")
    assert file == (site / "requirements" / "03-decode-and-routing.html").resolve()
    assert fragment == "r-dec-005"
    assert fragment in pages[file].ids
