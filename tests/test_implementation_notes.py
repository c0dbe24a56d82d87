"""Every requirement says which PCI section it restates and what QEMU, cloud-hypervisor and crosvm do.

The notes sit under each requirement's text in spec/requirements/*.md, one line per source
(``*PCI:*``, ``*QEMU:*``, ``*cloud-hypervisor:*``, ``*crosvm:*``); a requirement that restates no
PCI rule says "vpcid's own" on its PCI line. spec/variants.md lists the differences found in
those VMMs, each naming requirements that exist and either a declared axis or "not yet an axis".
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from vpcid.conformance.explain import requirement_text
from vpcid.conformance.traceability import Requirement, expand, load_requirements, repository_root
from vpcid.model.profile import AXES

ROOT = repository_root()
SOURCES = ("PCI", "QEMU", "cloud-hypervisor", "crosvm")
PCI_SECTION = re.compile(r"\b(PCI LB 3\.0|PCIe Base 3\.0) §\d+(\.\d+)*")
OWN = "vpcid's own: no PCI section"
NO_PCI_SECTION = "no PCI section"
DIFFERENCES_HEADING = "## Differences observed in real VMMs"
NOT_YET = "not yet an axis"
ISSUE_DIFFERENCES = expand("R-DEC-006 R-CAM-001..R-CAM-002 R-DEC-008 R-BAR-003 R-DEC-004 R-CFG-010")


def _spec() -> Path:
    assert ROOT is not None, "tests run from a source checkout"
    return ROOT / "spec"


def _requirements() -> list[Requirement]:
    return sorted(load_requirements(_spec()).values(), key=lambda r: r.rid)


def _notes(req: Requirement) -> dict[str, str]:
    """The requirement's note lines by source, read from the text below its heading."""
    found: dict[str, str] = {}
    for line in requirement_text(req).splitlines():
        for source in SOURCES:
            label = f"*{source}:*"
            if line.startswith(label):
                assert source not in found, f"{req.rid} has two {label} lines"
                found[source] = line.removeprefix(label).strip()
    return found


def _differences() -> list[str]:
    """The entries of spec/variants.md's section on differences observed in real VMMs."""
    text = (_spec() / "variants.md").read_text(encoding="utf-8")
    assert DIFFERENCES_HEADING in text, "spec/variants.md has no section on differences in real VMMs"
    section = text.split(DIFFERENCES_HEADING, 1)[1].split("\n#", 1)[0]
    entries: list[str] = []
    for line in section.splitlines():
        if line.startswith("- **"):
            entries.append(line)
        elif entries and line.strip():
            entries[-1] += " " + line.strip()
    return entries


def test_the_requirement_files_hold_every_requirement_family() -> None:
    families = {req.rid.rsplit("-", 1)[0] for req in _requirements()}
    assert families >= {"R-DS", "R-DT", "R-CFG", "R-BAR", "R-DEC", "R-ACC", "R-CAM", "R-ECAM"}
    assert families >= {"R-HP", "R-RST", "R-SR", "R-ERR", "R-REG"}


@pytest.mark.parametrize("req", _requirements(), ids=lambda r: r.rid)
def test_every_requirement_has_a_pci_line_and_a_note_per_vmm(req: Requirement) -> None:
    notes = _notes(req)
    missing = [source for source in SOURCES if not notes.get(source)]
    assert not missing, f"{req.rid} ({req.path.name}:{req.line}) has no note for {', '.join(missing)}"


@pytest.mark.parametrize("req", _requirements(), ids=lambda r: r.rid)
def test_the_pci_line_names_a_section_or_says_there_is_none(req: Requirement) -> None:
    pci = _notes(req).get("PCI", "")
    assert PCI_SECTION.search(pci) or NO_PCI_SECTION in pci, (
        f"{req.rid}: the PCI line names no section of PCI LB 3.0 or PCIe Base 3.0 and does not "
        f"say there is none: {pci!r}"
    )


def test_requirements_of_the_data_managers_own_say_so() -> None:
    """Tables, blobs, errors and introspection restate no PCI rule; their PCI line says so."""
    for rid in ("R-DS-002", "R-DS-005", "R-DS-007", "R-DT-002", "R-SR-001", "R-ERR-003"):
        (req,) = [r for r in _requirements() if r.rid == rid]
        assert _notes(req)["PCI"].startswith(OWN), rid


def test_notes_cite_only_requirements_that_exist() -> None:
    defined = set(load_requirements(_spec()))
    for req in _requirements():
        cited = expand("\n".join(_notes(req).values()))
        assert cited <= defined, f"{req.rid}'s notes cite undefined {sorted(cited - defined)}"


def test_every_difference_names_requirements_the_three_vmms_and_an_axis_or_none() -> None:
    defined = set(load_requirements(_spec()))
    entries = _differences()
    assert len(entries) >= 10
    for entry in entries:
        head = entry.split("**")[1]
        cited = expand(head)
        assert cited, f"difference names no requirement: {head!r}"
        assert cited <= defined, f"difference names undefined {sorted(cited - defined)}"
        assert any(vmm in entry for vmm in ("QEMU", "cloud-hypervisor", "crosvm")), head
        axis_part = entry.split("Axis:", 1)
        assert len(axis_part) == 2, f"difference {head!r} says nothing about an axis"
        named_axes = set(re.findall(r"`([a-z0-9_]+)`", axis_part[1])) & set(AXES)
        says_why_not = axis_part[1].strip().startswith("none") and len(axis_part[1]) > 80  # "none" + reason
        assert named_axes or NOT_YET in axis_part[1] or says_why_not, f"difference {head!r}: {axis_part[1]!r}"


def test_the_differences_the_issue_lists_are_all_there() -> None:
    """QEMU's top-of-space BARs, 0xCF8 bits and bytes, overlap, sizing writes, BAR at 0, bytes from 0x40."""
    heads = {rid for entry in _differences() for rid in expand(entry.split("**")[1])}
    assert heads >= ISSUE_DIFFERENCES


def test_a_section_number_or_its_absence_is_recognised() -> None:
    assert PCI_SECTION.search("PCI LB 3.0 §6.2.5.1 Address Maps")
    assert PCI_SECTION.search("PCIe Base 3.0 §7.2.2 Enhanced Configuration Access Mechanism")
    assert not PCI_SECTION.search("PCI LB 3.0 Address Maps")


def test_a_requirement_without_a_vmm_note_is_found(tmp_path: Path) -> None:
    (tmp_path / "r.md").write_text(
        "### R-XX-001 — one\nText.\n\n*PCI:* vpcid's own: no PCI section.\n*QEMU:* q.\n"
        "*cloud-hypervisor:* c.\n\n### R-XX-002 — two\n*crosvm:* belongs to the next one.\n",
        encoding="utf-8",
    )
    req = load_requirements(tmp_path)["R-XX-001"]
    assert set(_notes(req)) == {"PCI", "QEMU", "cloud-hypervisor"}
