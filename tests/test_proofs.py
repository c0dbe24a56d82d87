"""The z3 proofs (spec/proofs/README.md) hold for the model, and fail on broken code.

Each proof test's ``req`` marker must name exactly the requirements the proof
declares, so the traceability matrix and the proof registry cannot drift.
"""

from __future__ import annotations

import re

import pytest
from vpcid.conformance.formal import (
    PROOFS,
    Proof,
    ProofResult,
    Status,
    all_proofs,
    contract_requirements,
    evidence,
)
from vpcid.conformance.proofs.bars import bar_sizing
from vpcid.conformance.proofs.cam import cam_decoding
from vpcid.conformance.proofs.lookup import lookup_exact
from vpcid.conformance.proofs.masked_write import masked_write
from vpcid.conformance.traceability import load_requirements, repository_root
from vpcid.model import configspace
from vpcid.model.devicetype import BarKind, DeviceType
from vpcid.model.manager import DataManager
from vpcid.model.tables import DecodeTable, Mapping


def _proved(request: pytest.FixtureRequest, proof: Proof[[]]) -> ProofResult:
    marker = request.node.get_closest_marker("req")
    assert marker is not None
    assert set(marker.args) == set(proof.requirements), "the test's req marker must match the proof"
    result = proof()
    assert result.status is Status.PROVED, result.report()
    assert result.claims > 0
    return result


@pytest.mark.req("R-CFG-001", "R-CFG-006")
def test_masked_write_is_proved(request: pytest.FixtureRequest) -> None:
    _proved(request, masked_write)


@pytest.mark.req(
    "R-BAR-002", "R-BAR-003", "R-BAR-005", "R-BAR-007", "R-DEC-001", "R-DEC-002", "R-DEC-003",
    "R-DEC-004", "R-DEC-006",
)  # fmt: skip
def test_bar_sizing_and_decode_are_proved(request: pytest.FixtureRequest) -> None:
    result = _proved(request, bar_sizing)
    assert result.claims > 197 * 5, "every BAR and ROM shape contributes its claims"


@pytest.mark.req("R-DS-006", "R-DS-009", "R-DEC-008")
def test_lookup_scheme_is_proved_exact(request: pytest.FixtureRequest) -> None:
    _proved(request, lookup_exact)


@pytest.mark.req("R-CAM-004", "R-CAM-005")
def test_config_mechanism_decoding_is_proved_a_bijection(request: pytest.FixtureRequest) -> None:
    _proved(request, cam_decoding)


def test_every_registered_proof_has_a_test() -> None:
    assert set(all_proofs()) == {"masked_write", "bar_sizing", "lookup_exact", "cam_decoding"}


# --------------------------------------------------------- broken variants
def merge_ignoring_wmask(old: int, value: int, wmask: int, w1cmask: int) -> int:
    """merge_byte that forgets to mask the written value with wmask."""
    merged = (old & ~wmask) | value
    return merged & ~(value & w1cmask) & 0xFF


def merge_rw1c_as_rw(old: int, value: int, wmask: int, w1cmask: int) -> int:
    """merge_byte that treats RW1C bits as plain read-write bits."""
    writable = wmask | w1cmask
    return ((old & ~writable) | (value & writable)) & 0xFF


def _counterexample_text(result: ProofResult) -> str:
    assert result.status is Status.REFUTED, result.report()
    assert result.counterexample is not None
    return result.report()


@pytest.mark.req("R-CFG-001")
def test_masked_write_proof_refutes_a_merge_that_ignores_wmask() -> None:
    text = _counterexample_text(masked_write(merge_ignoring_wmask))
    for name in ("old", "value", "wmask", "w1cmask"):
        assert re.search(rf"^  {name}\s+= 0x[0-9a-f]{{2}}$", text, re.M), text
    assert "counterexample to claim" in text
    assert "R-CFG-001" in text


@pytest.mark.req("R-CFG-006")
def test_masked_write_proof_refutes_rw1c_treated_as_rw() -> None:
    result = masked_write(merge_rw1c_as_rw)
    text = _counterexample_text(result)
    for name in ("old", "value", "wmask", "w1cmask", "new"):
        assert re.search(rf"^  {name}\s+= 0x[0-9a-f]+$", text, re.M), text
    # Evaluate the printed counterexample: the broken merge really breaks the spec's formula there.
    values = {m[1]: int(m[2], 16) for m in re.finditer(r"^  (\w+)\s+= (0x[0-9a-f]+)$", text, re.M)}
    old, value, wmask, w1c = (values[k] & 0xFF for k in ("old", "value", "wmask", "w1cmask"))
    assert merge_rw1c_as_rw(old, value, wmask, w1c) != configspace.merge_byte(old, value, wmask, w1c)


@pytest.mark.req("R-DEC-006")
def test_bar_proof_refutes_a_decode_that_ignores_the_address_limit() -> None:
    def decode_without_limit(config: bytearray, dtype: DeviceType, index: int) -> int | None:
        bar = dtype.bar(index)
        if bar is None:
            return configspace.decode_window(config, dtype, index)
        command = configspace.read_le(config, 0x04, 2)
        base = configspace.bar_address(config, index, bar.kind)
        enabled = bool(command & (0x1 if bar.kind is BarKind.IO else 0x2))
        return base if enabled and base != 0 else None  # forgets R-DEC-006

    text = _counterexample_text(bar_sizing(decode=decode_without_limit))
    assert "R-DEC-006" in text
    assert re.search(r"^  value\s+= 0x[0-9a-f]+$", text, re.M), text


@pytest.mark.req("R-DS-009")
def test_lookup_proof_refutes_a_table_keyed_one_class_too_coarse() -> None:
    class CoarseTable(DecodeTable):
        def insert(self, m: Mapping) -> None:
            slots = self._classes.setdefault(m.size_log2, {})
            slots.setdefault(m.base >> (m.size_log2 + 1), []).append(m)

        def lookup(self, address: int) -> Mapping | None:
            for log2, slots in self._classes.items():
                bucket = slots.get(address >> (log2 + 1))
                if bucket is not None:
                    return bucket[0]
            return None

    text = _counterexample_text(lookup_exact(CoarseTable))
    assert re.search(r"^  address\s+= 0x", text, re.M), text


@pytest.mark.req("R-CAM-004")
def test_cam_proof_refutes_a_decoder_that_drops_a_function_bit() -> None:
    from vpcid.model import manager

    class TwoBitFunction(DataManager):
        def _cam_data(self, vm: manager.VmElement, port: int, payload: bytes | None, length: int) -> bytes:
            cf8 = vm.cf8
            if not cf8 & 0x8000_0000:
                return b"\xff" * length if payload is None else b""
            bdf = manager.Bdf((cf8 >> 16) & 0xFF, (cf8 >> 11) & 0x1F, (cf8 >> 8) & 0x3)
            return self._config_access(vm, bdf, (cf8 & 0xFC) + (port - manager.CFC), length, payload)

    text = _counterexample_text(cam_decoding(TwoBitFunction))
    assert re.search(r"^  cf8\s+= 0x[0-9a-f]+$", text, re.M), text


# ---------------------------------------------------------------- evidence
def test_evidence_is_derived_from_the_registries() -> None:
    found = evidence()
    z3_ids = {rid for p in all_proofs().values() for rid in p.requirements}
    crosshair_ids = {rid for rids in contract_requirements().values() for rid in rids}
    assert {rid for rid, kinds in found.items() if "z3" in kinds} == z3_ids
    assert {rid for rid, kinds in found.items() if "crosshair" in kinds} == crosshair_ids
    assert all(kinds <= {"z3", "crosshair"} and kinds for kinds in found.values())
    root = repository_root()
    assert root is not None
    assert set(found) <= set(load_requirements(root / "spec")), "evidence names only defined requirements"
    assert {"R-CFG-001", "R-CFG-006", "R-BAR-003", "R-DS-006", "R-DS-009", "R-CAM-004"} <= z3_ids
    assert PROOFS.keys() == all_proofs().keys()


def test_the_proof_readme_lists_every_proof_and_its_requirements() -> None:
    root = repository_root()
    assert root is not None
    readme = (root / "spec" / "proofs" / "README.md").read_text(encoding="utf-8")
    for name, registered in all_proofs().items():
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row is not None, f"spec/proofs/README.md has no table row for {name}"
        assert set(re.findall(r"R-[A-Z]+-\d{3}", row)) == set(registered.requirements), row
