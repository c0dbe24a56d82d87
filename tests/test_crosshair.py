"""CrossHair finds no counterexample to the contracts of ``vpcid.model.contracts``, and does find one
to a deliberately wrong contract.

The run is bounded: each postcondition gets at most ``PER_CONDITION_TIMEOUT``
CPU seconds, and stops earlier after ``MAX_UNINTERESTING_ITERATIONS``
iterations that reach no new code; the whole ``crosshair check`` is capped
at ``OVERALL_TIMEOUT`` seconds.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from vpcid.conformance.formal import contract_requirements
from vpcid.model import contracts

pytest.importorskip("crosshair")

MODULE = "vpcid.model.contracts"
PER_CONDITION_TIMEOUT = 5
MAX_UNINTERESTING_ITERATIONS = 100
OVERALL_TIMEOUT = 240
ROOT = Path(__file__).resolve().parents[1]

REPORT = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<level>info|error|warning): (?P<message>.*)$")
CHECKED = {"Not confirmed.", "Confirmed over all paths."}
"""What ``--report_all`` says of a postcondition CrossHair analysed without finding a counterexample."""


def crosshair_check(target: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "crosshair", "check", target,
        "--analysis_kind=PEP316",
        f"--per_condition_timeout={PER_CONDITION_TIMEOUT}",
        f"--max_uninteresting_iterations={MAX_UNINTERESTING_ITERATIONS}",
        "--report_all",
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=OVERALL_TIMEOUT, cwd=ROOT, check=False
    )


def postcondition_lines(path: Path) -> set[int]:
    """Line numbers of every ``post:`` condition in a file's docstrings."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return {n for n, text in enumerate(lines, start=1) if re.match(r"^\s+post: \S", text)}


@pytest.mark.req(
    "R-CFG-001", "R-CFG-006", "R-BAR-002", "R-BAR-003", "R-BAR-005", "R-BAR-007", "R-DEC-001",
    "R-DEC-002", "R-DEC-003", "R-DEC-004", "R-DEC-006", "R-DEC-008", "R-DS-006", "R-DS-009",
    "R-BLOB-001", "R-BLOB-003", "R-BLOB-004",
)  # fmt: skip
def test_crosshair_finds_no_counterexample_to_the_model_contracts(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("req")
    assert marker is not None
    declared = {rid for rids in contract_requirements().values() for rid in rids}
    assert set(marker.args) == declared, "the req marker must list what the contracts declare"

    done = crosshair_check(MODULE)
    reports = [m for line in done.stdout.splitlines() if (m := REPORT.match(line))]
    errors = [m[0] for m in reports if m["level"] == "error"]
    assert not errors, f"CrossHair found counterexamples: {errors}"
    assert done.returncode == 0, f"CrossHair failed: {done.stdout}\n{done.stderr[-2000:]}"

    source = Path(inspect.getfile(contracts))
    analysed = {int(m["line"]) for m in reports if Path(m["path"]).resolve() == source.resolve()}
    verdicts = {int(m["line"]): m["message"] for m in reports}
    missing = postcondition_lines(source) - analysed
    assert not missing, f"postconditions CrossHair did not report on (lines {sorted(missing)}): {done.stdout}"
    unchecked = {line: msg for line, msg in verdicts.items() if msg not in CHECKED}
    assert not unchecked, f"postconditions CrossHair could not check: {unchecked}"


WRONG_CONTRACT = '''
from vpcid.model.bdf import Bdf
from vpcid.model.tables import DecodeTable, Mapping, lowest_bdf_first


def lookup_off_by_one(size_log2: int, base: int, address: int) -> bool:
    """Deliberately wrong: claims the byte just past a BAR still resolves to it.

    pre: 0 <= size_log2 <= 63
    pre: 0 <= base and base % (1 << size_log2) == 0 and base + (1 << size_log2) <= 1 << 64
    pre: 0 <= address < 1 << 64
    post: __return__ == (base <= address <= base + (1 << size_log2))
    """
    table = DecodeTable(lowest_bdf_first)
    m = Mapping(Bdf(0, 1, 0), 0, base, size_log2, 1)
    table.insert(m)
    return table.lookup(address) is m
'''


@pytest.mark.req("R-DS-009")
def test_crosshair_finds_a_counterexample_to_a_wrong_contract(tmp_path: Path) -> None:
    path = tmp_path / "wrong_contract.py"
    path.write_text(WRONG_CONTRACT, encoding="utf-8")
    post_line = min(postcondition_lines(path))
    done = crosshair_check(str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [m for line in done.stdout.splitlines() if (m := REPORT.match(line)) and m["level"] == "error"]
    assert errors, done.stdout
    assert int(errors[0]["line"]) == post_line
    assert errors[0]["message"].startswith("false when calling lookup_off_by_one("), errors[0]["message"]


# ------------------------------------------------ the contracts as plain code
def _conditions(fn: object, kind: str) -> list[str]:
    doc = inspect.getdoc(fn) or ""
    return [line.split(":", 1)[1].strip() for line in doc.splitlines() if line.startswith(f"{kind}:")]


EXAMPLES: dict[str, list[tuple[object, ...]]] = {
    "masked_write": [(0xA5, 0x3C, 0x0F, 0xF0), (0xFF, 0xFF, 0x00, 0xFF), (0x00, 0xFF, 0xFF, 0x00)],
    "masked_write_bit": [
        (7, True, True, False, True),
        (3, True, False, True, False),
        (0, False, True, False, False),
    ],
    "bar_decode": [(2, 0x2, 0xFEBC0000), (0, 0x1, 0xC001), (7, 0x2, 1 << 63), (8, 0x2, 0xFFFE0001)],
    "bar_read_back": [(5, (1 << 64) - 1), (0, 0xFFFFFFFF), (9, 0xFFFFFFFF)],
    "table_lookup": [(12, 0xFEBC0000, 0xFEBC0FFF), (12, 0xFEBC0000, 0xFEBC1000), (63, 1 << 63, 1 << 63)],
    "table_resolve": [(4, 0x100, 8, 0x100, 0x180), (4, 0x100, 8, 0x100, 0x108), (0, 5, 0, 6, 7)],
    "blob_round_trip": [("nic", bytes(32), b"\x86\x80", False, 0b11, 0xFEBC0000, 2, 0, 7, 1, b"state")],
    "corrupted_blob_is_rejected": [(0, 1), (len(contracts.SAMPLE_BLOB) - 1, 0x80), (100, 0xFF)],
}


@pytest.mark.parametrize("name", sorted(contracts.CONTRACTS))
def test_each_contract_holds_on_examples_when_called_directly(name: str) -> None:
    """Fast and deterministic: every condition parses, and holds on the examples (no CrossHair)."""
    fn = getattr(contracts, name)
    names = list(inspect.signature(fn).parameters)
    pre, post = _conditions(fn, "pre"), _conditions(fn, "post")
    assert pre, f"{name} declares no precondition"
    assert post, f"{name} declares no postcondition"
    assert EXAMPLES.get(name), f"add examples for {name}"
    for args in EXAMPLES[name]:
        env = {**vars(contracts), **dict(zip(names, args, strict=True))}
        for condition in pre:
            assert eval(condition, env), f"{name}{args}: precondition {condition!r} fails"
        env["__return__"] = fn(*args)
        for condition in post:
            assert eval(condition, env), f"{name}{args}: postcondition {condition!r} fails"
