"""A user's path from a dump to a certified device: import, plug, lspci -xxxx shows the dump's bytes,
and our vfio-user server serving the imported type certifies through vfio-user:SOCKET@FILE
(R-DT-005..R-DT-007)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ServerProcess
from vpcid.adapters.vfio_user import adapter as vfio_user_adapter
from vpcid.conformance.certify import certify
from vpcid.conformance.cli import main
from vpcid.conformance.dumps import read_dumps

DUMPS = Path(__file__).parent / "data" / "dumps"
SOURCES = sorted(DUMPS.glob("*.txt")) + sorted(p for p in DUMPS.iterdir() if p.is_dir())
ROW = re.compile(r"^([0-9a-f]{2,3}): ((?:[0-9a-f]{2} ?){16})$")


def hex_rows(text: str) -> dict[str, bytes]:
    """Each function's bytes in ``lspci -xxxx`` output, by its ``bb:dd.f``."""
    out: dict[str, bytearray] = {}
    current = ""
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            out[current] += bytes.fromhex(match.group(2))
        elif line and not line[0].isspace():
            current = line.split()[0]
            out[current] = bytearray()
    return {bdf: bytes(data) for bdf, data in out.items()}


@pytest.mark.req("R-DT-005", "R-DT-006", "R-DT-007")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_import_plug_and_lspci_xxxx_print_the_dumps_bytes(source: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    types, machine = tmp_path / "types.json", tmp_path / "machine.toml"
    imported = runner.invoke(
        main, ["types", "import", str(source), "-o", str(types), "--machine", str(machine)]
    )
    assert imported.exit_code == 0, imported.output
    shown = runner.invoke(main, ["lspci", "--machine", str(machine), "-xxxx"])
    assert shown.exit_code == 0, shown.output
    rows = hex_rows(shown.output)
    for dump in read_dumps(source):
        assert dump.bdf is not None
        got = rows[f"{dump.bdf.bus:02x}:{dump.bdf.device:02x}.{dump.bdf.function}"]
        assert got[: len(dump.config)] == dump.config, f"{source.name} {dump.bdf}"


@pytest.mark.req("R-DT-005", "R-VAR-002")
def test_our_server_serving_an_imported_type_certifies_through_socket_at_file(tmp_path: Path) -> None:
    types = tmp_path / "virtio-net.json"
    imported = CliRunner().invoke(
        main,
        ["types", "import", str(DUMPS / "qemu-virtio-net-pci.txt"), "-o", str(types), "--name", "virtio-net"],
    )
    assert imported.exit_code == 0, imported.output
    sock = tmp_path / "vn.sock"
    with ServerProcess("--socket", str(sock), "--types", str(types)):
        built = vfio_user_adapter(f"{sock}@{types}")
        try:
            machine = built.info.machine
            assert machine is not None
            assert [t.name for _, t in machine.devices] == ["virtio-net"]
            report = certify(built, budget=5_000)
        finally:
            built.close()
    failing = [(r.rid, r.failures[0].detail) for r in report.requirements if r.failures]
    assert report.conformant, failing
    assert report.engines["cases"]["run"] > 20
