"""Finding adapters: built-in names, mutants, ``package.module:factory`` and what ``vpcid adapters`` lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from vpcid.adapters.base import Adapter, AdapterUnavailable
from vpcid.adapters.reference import ModelAdapter
from vpcid.adapters.registry import BUILTIN, AdapterEntry, AdapterSpecError, load_adapter, probe, registered
from vpcid.conformance.cli import main
from vpcid.conformance.mutants import MUTANTS
from vpcid.model import Profile
from vpcid.model.profile import Overlap, Straddle


def test_reference_by_name() -> None:
    adapter = load_adapter("reference")
    assert isinstance(adapter, ModelAdapter)
    assert isinstance(adapter, Adapter)
    assert adapter.info.name == "reference"
    assert adapter.info.profile == Profile()
    assert adapter.info.machine is None
    adapter.close()


@pytest.mark.req("R-VAR-003")
def test_reference_with_a_profile_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "profile.toml"
    manifest.write_text('[profile]\nstraddle = "reject"\noverlap = "last-mapped"\n', encoding="utf-8")
    adapter = load_adapter(f"reference:{manifest}")
    assert adapter.info.profile == Profile(straddle=Straddle.REJECT, overlap=Overlap.LAST_MAPPED)


def test_mutant_by_name() -> None:
    adapter = load_adapter("mutant:rw1c-as-rw")
    assert isinstance(adapter, ModelAdapter)
    assert adapter.info.name == "mutant:rw1c-as-rw"
    assert adapter.info.profile == Profile()


def test_unknown_mutant_lists_the_planted_bugs() -> None:
    with pytest.raises(AdapterUnavailable) as caught:
        load_adapter("mutant:no-such-bug")
    message = str(caught.value)
    assert all(m.name in message for m in MUTANTS)
    with pytest.raises(AdapterUnavailable, match="mutant:NAME"):
        load_adapter("mutant")


def test_module_path_factory() -> None:
    adapter = load_adapter("vpcid.adapters.reference:reference")
    assert isinstance(adapter, ModelAdapter)
    assert adapter.info.name == "reference"
    mutant = load_adapter("vpcid.conformance.mutants:mutant_adapter:cam-ignores-enable")
    assert mutant.info.name == "mutant:cam-ignores-enable"


def test_unknown_name_lists_the_known_names() -> None:
    with pytest.raises(AdapterSpecError) as caught:
        load_adapter("qemu-of-my-dreams")
    message = str(caught.value)
    assert "qemu-of-my-dreams" in message
    for name in registered():
        assert name in message
    assert "reference" in message
    assert "mutant" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_package.vmm:factory", "cannot import no_such_package.vmm: no module 'no_such_package'"),
        ("vpcid.adapters.nonexistent:factory", "cannot import vpcid.adapters.nonexistent"),
        ("vpcid.adapters.reference:nope", "has no 'nope'; define def nope"),
        ("vpcid.adapters.registry:BUILTIN", "not a callable adapter factory"),
        ("vpcid.adapters.reference", "no adapter named 'vpcid.adapters.reference'"),
        ("logging:getLogger", "not an adapter"),
        ("", "needs NAME"),
        ("not a module:factory", "is not a module name"),
    ],
)
def test_module_path_that_does_not_work_is_bad_input(spec: str, message: str) -> None:
    with pytest.raises(AdapterSpecError, match=message) as caught:
        load_adapter(spec)
    assert caught.value.kind == "bad-adapter"
    assert "\n" not in str(caught.value)


def test_builtins_are_registered_and_probe_ready() -> None:
    found = registered()
    assert {"reference", "mutant"} <= set(found)
    for entry in BUILTIN:
        assert found[entry.name] == entry
    # adapters for real implementations may be unavailable here; the bundled two always run
    assert probe(found["reference"]) == (True, "ready")
    assert probe(found["mutant"]) == (True, "ready")


def test_probe_reports_why_not() -> None:
    entry = AdapterEntry("ghost", "no_such_package.vmm:factory", "nothing", "no_such_package.vmm:factory")
    ok, reason = probe(entry)
    assert not ok
    assert "cannot import no_such_package.vmm" in reason


def test_cli_adapters_lists_reference_as_available() -> None:
    result = CliRunner().invoke(main, ["adapters"], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    reference = [line for line in lines if "reference" in line and "available" in line]
    assert reference, result.output
    assert "unavailable" not in reference[0]
    assert any("mutant" in line and "mutant:rw1c-as-rw" in line for line in lines)


def test_cli_adapter_that_cannot_be_found_exits_2_with_the_reason() -> None:
    result = CliRunner().invoke(main, ["certify", "--adapter", "no_such_package.vmm:factory"])
    assert result.exit_code == 2
    assert result.stderr.startswith("vpcid: error: cannot import no_such_package.vmm")
    assert len(result.stderr.splitlines()) == 1


def test_cli_unavailable_adapter_exits_3_with_the_reason() -> None:
    result = CliRunner().invoke(main, ["certify", "--adapter", "mutant:no-such-bug"])
    assert result.exit_code == 3
    assert "unavailable" in result.stderr
    assert "rw1c-as-rw" in result.stderr
