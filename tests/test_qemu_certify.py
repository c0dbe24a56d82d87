"""Certify QEMU's own PCI device models (edu, pci-testdev, e1000) and check what the reports say.

Each device is certified once per module (seed 0, a small budget) in QEMU's
declared profile with the shipped q35 waivers, and pci-testdev with an option
ROM once more in the spec's default profile, to show which variants the suite
observes. Without QEMU the module skips.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from vpcid.adapters.base import AdapterUnavailable, FixedMachine
from vpcid.adapters.qemu import QEMU_PROFILE, adapter
from vpcid.adapters.qemu.qtest import kill_all, live_pids, qemu_binary
from vpcid.adapters.registry import registered
from vpcid.conformance.cases import Target
from vpcid.conformance.certify import CertificationReport, Verdict, certify, load_waivers
from vpcid.conformance.cli import main
from vpcid.conformance.report import render_html
from vpcid.conformance.traceability import load_requirements
from vpcid.model import Bdf

if qemu_binary() is None:
    pytest.skip("qemu-system-x86_64 is not installed (run .ci/install-debian.sh)", allow_module_level=True)
if "opaque" not in FixedMachine.__dataclass_fields__ or "reserved_functions" not in {
    f.name for f in dataclasses.fields(Target)
}:
    pytest.skip(
        "the suite does not honour FixedMachine.opaque / Target.reserved_functions yet (see docs/qemu.md)",
        allow_module_level=True,
    )

WAIVERS = Path(__file__).parents[1] / "adapters" / "vpcid" / "adapters" / "qemu" / "waivers" / "q35.toml"
BUDGET = 5000
"""The waived requirements fail through scenario cases, so any budget gives the same verdicts."""
ADAPTER = "qemu" if "qemu" in registered() else "vpcid.adapters.qemu:adapter"

CF8_RULES = {"R-CAM-001", "R-CAM-004", "R-CAM-008"}
"""What the q35 waivers once covered, declared variants now (cf8_low_bits = offset, cf8_narrow =
read-address), and the reset control register at 0xCF9: they pass in QEMU's profile."""

PASS_EVERYWHERE = {
    "R-DS-004", "R-DS-006", "R-DS-009", "R-DT-001", "R-DT-003", "R-DT-004", "R-CFG-001", "R-CFG-002",
    "R-CFG-003", "R-CFG-004", "R-CFG-005", "R-CFG-006", "R-CFG-007", "R-CFG-008", "R-CFG-009", "R-CFG-011",
    "R-BAR-001", "R-BAR-002", "R-BAR-003", "R-BAR-008", "R-DEC-002", "R-DEC-004", "R-DEC-005",
    "R-DEC-009", "R-DEC-010", "R-ACC-001", "R-ACC-002", "R-ACC-003", "R-ACC-004", "R-ACC-007", "R-ACC-008",
    "R-ACC-009", "R-ECAM-001", "R-ECAM-002", "R-ECAM-003", "R-ERR-001", "R-ERR-002", "R-ERR-003",
}  # fmt: skip
"""Configuration rules, BAR sizing and moves, decode, routing, unmapped accesses, ECAM, errors."""

PASS_ALSO = {
    "edu": {"R-DT-008"},
    "pci-testdev": {"R-BAR-004", "R-BAR-006", "R-DEC-001", "R-DEC-006"},
    "pci-testdev-rom": {"R-BAR-007", "R-DEC-003", "R-DEC-008", "R-DEC-001"},
    "e1000": {"R-BAR-004", "R-BAR-006", "R-BAR-007", "R-DEC-001", "R-DEC-003", "R-DEC-006", "R-SR-001",
              "R-SR-002", "R-SR-008", "R-DS-005"},
}  # fmt: skip


@pytest.fixture(scope="module")
def rom_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 KiB-and-a-bit option ROM image for pci-testdev (QEMU rounds the ROM BAR up to 4 KiB)."""
    rom = bytearray(2048 + 64)
    rom[0:3] = b"\x55\xaa\x04"
    for i in range(16, len(rom)):
        rom[i] = (i * 7 + 3) & 0xFF
    path = tmp_path_factory.mktemp("rom") / "testdev.rom"
    path.write_bytes(bytes(rom))
    return path


@pytest.fixture(scope="module")
def specs(rom_file: Path) -> dict[str, str]:
    return {"edu": "edu", "pci-testdev": "pci-testdev", "pci-testdev-rom": f"pci-testdev,romfile={rom_file}",
            "e1000": "e1000"}  # fmt: skip


@pytest.fixture(scope="module")
def reports(specs: dict[str, str]) -> Iterator[dict[str, CertificationReport]]:
    """One certification per device, QEMU profile, the q35 waivers the adapter declares; every QEMU
    killed afterwards."""
    out: dict[str, CertificationReport] = {}
    before = set(live_pids())
    for name, spec in specs.items():
        a = adapter(spec)
        try:
            assert a.info.waivers == WAIVERS
            out[name] = certify(a, BUDGET, 0, load_waivers(a.info.waivers, set(load_requirements())))
        finally:
            a.close()
    yield out
    assert set(live_pids()) <= before
    kill_all()


def _verdicts(report: CertificationReport, verdict: Verdict) -> set[str]:
    return {r.rid for r in report.requirements if r.verdict is verdict}


@pytest.mark.parametrize("device", ["edu", "pci-testdev", "pci-testdev-rom", "e1000"])
def test_certified_conformant_with_the_q35_waivers(
    reports: dict[str, CertificationReport], device: str
) -> None:
    report = reports[device]
    assert report.errors == []
    assert _verdicts(report, Verdict.FAIL) == set()
    assert report.conformant
    assert _verdicts(report, Verdict.WAIVED) == set()  # the platform waiver files list none
    assert _verdicts(report, Verdict.PASS) >= CF8_RULES
    assert report.profile == QEMU_PROFILE.to_mapping()


@pytest.mark.parametrize("device", ["edu", "pci-testdev", "pci-testdev-rom", "e1000"])
def test_guest_view_requirements_pass(reports: dict[str, CertificationReport], device: str) -> None:
    passed = _verdicts(reports[device], Verdict.PASS)
    assert PASS_EVERYWHERE | PASS_ALSO[device] <= passed
    assert not {r for r in passed if r.startswith(("R-HP-", "R-RST-"))}  # not offered by the adapter


def test_declared_variants_are_the_ones_exercised(reports: dict[str, CertificationReport]) -> None:
    """The variant column names QEMU's value for every axis a passing requirement states."""
    rows = {r.rid: r for r in reports["pci-testdev-rom"].requirements}
    assert rows["R-ACC-004"].variant == "unmapped_mmio_read=zeros, unmapped_io_read=ones"
    assert rows["R-DEC-008"].variant == "overlap=last-mapped"
    assert rows["R-DEC-005"].variant == "bar_move_while_decoding=immediate"
    assert rows["R-ACC-005"].variant == "straddle=split"
    assert rows["R-CAM-002"].variant == "cf8_low_bits=offset"
    assert rows["R-CAM-001"].variant == "cf8_narrow=read-address"


def test_default_profile_certification_observes_qemus_variants(specs: dict[str, str]) -> None:
    """Declaring the spec's defaults, the report names the variant QEMU implements instead."""
    a = adapter(specs["pci-testdev-rom"] + ",vpcid-profile=default")
    try:
        report = certify(a, 2000, 0)
    finally:
        a.close()
    assert not report.conformant
    assert report.variants.items() >= {
        ("unmapped_mmio_read", "zeros"), ("overlap", "last-mapped"), ("cf8_low_bits", "offset"),
        ("cf8_narrow", "read-address"),
    }  # fmt: skip
    assert "observed unmapped_mmio_read=zeros" in str({r.rid: r.variant for r in report.requirements})


def test_e1000_report_is_readable_for_a_qemu_maintainer(reports: dict[str, CertificationReport]) -> None:
    page = render_html(reports["e1000"])
    for text in ("qemu:e1000", "CONFORMANT", "opaque BAR contents", "BAR0 [0x0, 0x20000)",
                 "cf8_low_bits", "offset", "migration: yes", "R-SR-002"):  # fmt: skip
        assert text in page, text
    assert reports["e1000"].engines["cases"]["failed"] == 0  # the CF8 cases pass in QEMU's profile


def test_cli_certify_writes_html(tmp_path: Path) -> None:
    """The q35 platform waiver file applies without --waivers (it lists none now); declaring the spec's
    default profile shows the host bridge's variants as failures."""
    html = tmp_path / "report.html"
    traces = ["--counterexamples", str(tmp_path / "traces")]
    result = CliRunner().invoke(main, [
        "certify", "--adapter", f"{ADAPTER}:e1000", "--budget", str(BUDGET), "--html", str(html),
        "--failures-only", *traces,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "applying the platform waivers" in result.output
    assert "CONFORMANT" in result.output
    assert html.read_text().count("<tr") > 80
    bare = CliRunner().invoke(main, [
        "certify", "--adapter", f"{ADAPTER}:e1000,vpcid-profile=default", "--budget", "1000",
        "--no-platform-waivers", *traces,
    ])  # fmt: skip
    assert bare.exit_code == 1, bare.output
    assert "R-CAM-001" in bare.output
    assert not live_pids()


def test_pc_machine_certifies_with_its_own_waivers() -> None:
    """vpcid-machine=pc: no ECAM (configuration through 0xCF8/0xCFC, R-ECAM-* not applicable), the i440FX
    host bridge's waiver file (waivers/pc.toml: none needed, its variants are q35's), PIIX3 functions
    reserved."""
    a = adapter("e1000,vpcid-machine=pc")
    try:
        assert a.machine.ecam_base is None
        assert a.info.waivers == WAIVERS.with_name("pc.toml")
        assert Bdf(0, 1, 0) in a.machine.reserved_functions  # PIIX3
        assert "paused pc machine" in a.info.description
        report = certify(a, BUDGET, 0, load_waivers(a.info.waivers, set(load_requirements())))
    finally:
        a.close()
    assert report.conformant, [r.rid for r in report.requirements if r.failures]
    assert _verdicts(report, Verdict.WAIVED) == set()
    assert _verdicts(report, Verdict.PASS) >= CF8_RULES
    assert {"R-ECAM-001", "R-ECAM-002"} <= _verdicts(report, Verdict.NOT_APPLICABLE)  # no window
    assert {"R-CFG-001", "R-BAR-003", "R-CAM-005", "R-SR-002"} <= _verdicts(report, Verdict.PASS)
    assert not live_pids()


def test_waivers_off_and_device_properties() -> None:
    """vpcid-waivers=off declares no platform waivers; other options are QEMU device properties (nvme
    refuses to start without serial=)."""
    with pytest.raises(AdapterUnavailable, match="serial property not set"):
        adapter("nvme")
    a = adapter("nvme,serial=deadbeef,vpcid-waivers=off")
    try:
        assert a.info.waivers is None
        assert a.spec.options == ("serial=deadbeef",)
        assert a.discovery.dtype.vendor_id == 0x1B36
    finally:
        a.close()
    assert not live_pids()
