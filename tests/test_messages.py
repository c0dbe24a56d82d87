"""Messages about two things that share a name say what tells them apart: fingerprints, and the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from vpcid.adapters.base import AdapterInfo, define_type
from vpcid.conformance.certify import CertifyError, check_types
from vpcid.conformance.discovery import type_difference
from vpcid.conformance.machine import MachineError, load_machine
from vpcid.conformance.trace import EXTENSIONS, FULL, define_type_op
from vpcid.conformance.typefile import type_json, write_type_file
from vpcid.model import DeviceType, DeviceTypeError
from vpcid.model.catalog import E1000
from vpcid.model.devicetype import ConfigSpace

TOLD_APART = re.compile(
    r"fingerprint ([0-9a-f]{16})\.\.\. vs ([0-9a-f]{16})\.\.\., image at 0x2-0x3 \(first 0x0e vs 0x34\)"
)


def other_e1000() -> DeviceType:
    """A type called e1000 whose device ID is 0x1234 instead of the suite's 0x100e."""
    image = bytearray(E1000.declared.image)
    image[0x02:0x04] = b"\x34\x12"
    space = ConfigSpace(bytes(image), E1000.declared.wmask, E1000.declared.w1cmask)
    return DeviceType.from_space("e1000", space, E1000.bars, E1000.rom)


def assert_told_apart(message: str) -> None:
    found = TOLD_APART.search(message)
    assert found is not None, message
    assert (found[1], found[2]) == (E1000.fingerprint().hex()[:16], other_e1000().fingerprint().hex()[:16])


def test_type_difference_names_both_fingerprints_and_the_bytes() -> None:
    assert_told_apart(type_difference(E1000, other_e1000()))


@pytest.mark.req("R-DT-002")
def test_define_type_under_a_known_name_shows_both_definitions() -> None:
    with pytest.raises(DeviceTypeError) as raised:
        define_type({"e1000": E1000}, define_type_op(type_json(other_e1000())))
    assert "device type 'e1000' is already known with another definition" in str(raised.value)
    assert_told_apart(str(raised.value))


def test_types_redefining_a_suite_type_show_both_definitions() -> None:
    with pytest.raises(CertifyError) as raised:
        check_types(AdapterInfo("reference", operations=FULL | EXTENSIONS), [other_e1000()])
    assert "redefines suite types, the suite's first: 'e1000' (" in str(raised.value)
    assert_told_apart(str(raised.value))


def test_a_machine_types_file_redefining_a_suite_type_shows_both_definitions(tmp_path: Path) -> None:
    write_type_file(tmp_path / "types.json", [other_e1000()])
    (tmp_path / "m.toml").write_text('types = ["types.json"]\n[vm]\nid = 1\n')
    with pytest.raises(MachineError) as raised:
        load_machine(tmp_path / "m.toml")
    assert "'e1000' is not the suite's type of that name: fingerprint" in str(raised.value)
    assert_told_apart(str(raised.value))
