"""`vpcid serve vfio-user --manager model|cython --busy-poll-us N` (spec/formats/vfio-user.md, Limits):
the options win over VPCID_SERVE_MANAGER and VPCID_SERVE_BUSY_POLL_US, and a bad value of either, or
of the variable standing in for an absent option, is a usage error (exit 2) before anything listens."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ServerProcess
from vpcid.adapters import cython as backend
from vpcid.adapters.vfio_user import server as server_module
from vpcid.adapters.vfio_user.client import VfioUserClient
from vpcid.adapters.vfio_user.server import BUSY_POLL_ENV, MANAGER_ENV
from vpcid.conformance.cli import main
from vpcid.conformance.typefile import write_type_file
from vpcid.model import ConfigSpace, DeviceType
from vpcid.model.catalog import E1000


def serve(tmp_path: Path, *options: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``vpcid serve vfio-user`` in-process with options that must fail before it listens."""
    socket_path = tmp_path / "dev.sock"
    arguments = ["serve", "vfio-user", "--socket", str(socket_path), *options]
    result = CliRunner(env={MANAGER_ENV: None, BUSY_POLL_ENV: None, **(env or {})}).invoke(main, arguments)
    assert not socket_path.exists(), "a refused command must not listen"
    return result.exit_code, result.output


@pytest.mark.parametrize("value", ["1001", "-1", "100000"])
def test_busy_poll_out_of_range_is_a_usage_error(tmp_path: Path, value: str) -> None:
    code, output = serve(tmp_path, "--busy-poll-us", value)
    assert code == 2
    assert "--busy-poll-us" in output
    assert f"0-1000, not {value}" in output


def test_busy_poll_not_an_integer_is_a_usage_error(tmp_path: Path) -> None:
    code, output = serve(tmp_path, "--busy-poll-us", "fast")
    assert code == 2
    assert "'fast' is not a valid integer" in output


def test_unknown_manager_is_a_usage_error(tmp_path: Path) -> None:
    code, output = serve(tmp_path, "--manager", "rust")
    assert code == 2
    assert "'rust' is not one of 'model', 'cython'" in output


def test_bad_environment_values_are_usage_errors_naming_the_variable(tmp_path: Path) -> None:
    code, output = serve(tmp_path, env={BUSY_POLL_ENV: "soon"})
    assert code == 2
    assert f"${BUSY_POLL_ENV} (no --busy-poll-us)" in output
    assert "'soon' is not an integer" in output
    code, output = serve(tmp_path, env={BUSY_POLL_ENV: "5000"})
    assert code == 2
    assert "0-1000, not 5000" in output
    code, output = serve(tmp_path, env={MANAGER_ENV: "rust"})
    assert code == 2
    assert f"${MANAGER_ENV} (no --manager)" in output
    assert "'rust' is not 'model' or 'cython'" in output


def test_cython_manager_when_not_built_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "CompiledManager", None)
    code, output = serve(tmp_path, "--manager", "cython")
    assert code == 2
    assert "--manager" in output
    assert "the cython data manager is not available" in output


def test_options_win_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad environment values do not matter once both options are given."""
    monkeypatch.setenv(MANAGER_ENV, "rust")
    monkeypatch.setenv(BUSY_POLL_ENV, "soon")
    socket_path = tmp_path / "nic.sock"
    arguments = ["--socket", str(socket_path), "--type", "e1000", "--manager", "model", "--busy-poll-us", "0"]
    with ServerProcess(*arguments) as server, VfioUserClient(str(socket_path)) as client:
        assert client.config_read(0, 4) == E1000.declared.image[:4]
    assert "vfio-user: data manager model\n" in server.stderr


@pytest.mark.skipif(not backend.available(), reason=backend.UNAVAILABLE_REASON or "")
def test_cython_manager_with_a_busy_poll(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MANAGER_ENV, raising=False)
    monkeypatch.delenv(BUSY_POLL_ENV, raising=False)
    socket_path = tmp_path / "nic.sock"
    arguments = [
        "--socket",
        str(socket_path),
        "--type",
        "e1000",
        "--manager",
        "cython",
        "--busy-poll-us",
        "7",
    ]
    with ServerProcess(*arguments) as server, VfioUserClient(str(socket_path)) as client:
        assert client.config_read(0, 64) == E1000.declared.image[:64]
    assert "vfio-user: data manager cython, busy poll 7 us\n" in server.stderr


def test_environment_chooses_when_the_options_are_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MANAGER_ENV, "model")
    monkeypatch.delenv(BUSY_POLL_ENV, raising=False)
    socket_path = tmp_path / "nic.sock"
    with ServerProcess("--socket", str(socket_path)) as server, VfioUserClient(str(socket_path)) as client:
        assert len(client.config_read(0, 4)) == 4
    assert "vfio-user: data manager model\n" in server.stderr


def test_a_type_declared_by_two_types_files_is_refused_naming_both(tmp_path: Path) -> None:
    """The complaint names the earlier file and says whether the two definitions differ."""
    first, same, other = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    write_type_file(first, [E1000])
    write_type_file(same, [E1000])
    image = bytearray(E1000.declared.image)
    image[0x2C] ^= 0xFF  # another subsystem vendor ID
    space = ConfigSpace(bytes(image), E1000.declared.wmask, E1000.declared.w1cmask)
    write_type_file(other, [DeviceType.from_space("e1000", space, E1000.bars, E1000.rom)])
    code, output = serve(tmp_path, "--types", str(first), "--types", str(same))
    assert code == 2
    assert f"{same}: type 'e1000' is already declared by {first}, the same definition" in output
    code, output = serve(tmp_path, "--types", str(first), "--types", str(other))
    assert code == 2
    assert (
        f"{other}: type 'e1000' is already declared by {first}, a different definition (fingerprint" in output
    )
    assert "differing in image byte 0x2c" in output
