"""`vpcid serve vfio-user --types FILE`: our server serves a type from a device-type file (R-DT-005)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ServerProcess
from vpcid.adapters.vfio_user.client import VfioUserClient
from vpcid.conformance.cli import main
from vpcid.conformance.typefile import write_type_file
from vpcid.model import ConfigSpace, DeviceType
from vpcid.model.catalog import E1000


def file_type() -> DeviceType:
    """The e1000's bytes under another name, with a read-only vendor byte pattern at 0xf0."""
    image = bytearray(E1000.declared.image)
    image[0xF0:0xF4] = b"\x76\x70\x63\x69"
    space = ConfigSpace(bytes(image), E1000.declared.wmask, E1000.declared.w1cmask)
    return DeviceType.from_space("nic-from-file", space, E1000.bars, E1000.rom)


@pytest.mark.req("R-DT-005")
def test_server_serves_the_one_type_of_a_types_file(tmp_path: Path) -> None:
    t = file_type()
    types = tmp_path / "nic.json"
    write_type_file(types, [t])
    sock = tmp_path / "nic.sock"
    with (
        ServerProcess("--socket", str(sock), "--types", str(types)) as server,
        VfioUserClient(str(sock)) as client,
    ):
        assert client.config_read(0, 256) == t.declared.image
        client.config_write(0x3C, b"\x0b")
        assert client.config_read(0x3C, 1) == b"\x0b"
        assert client.region_info(0).size == 128 << 10
    assert "nic-from-file" in server.stderr


def test_serve_rejects_an_unknown_type_name(tmp_path: Path) -> None:
    types = tmp_path / "nic.json"
    write_type_file(types, [file_type()])
    args = ["serve", "vfio-user", "--socket", str(tmp_path / "s"), "--types", str(types), "--type", "nic"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "unknown device type(s): nic" in result.output
