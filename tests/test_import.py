"""Importing dumps as device types: every shipped dump imports, its machine file shows the dump's
bytes, masks follow the PCI rules for the standard capabilities, overlays correct what a dump cannot
show, and the notes say what was guessed (R-DT-005..R-DT-007)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from vpcid.conformance.cli import main
from vpcid.conformance.dumps import Dump, read_dumps
from vpcid.conformance.importer import (
    DumpImportError,
    ImportedFunction,
    import_dump,
    import_dumps,
    import_sources,
    machine_text,
    parse_overlay,
)
from vpcid.conformance.machine import load_machine
from vpcid.conformance.typefile import read_type_file, write_type_file
from vpcid.model import Bdf, DataManager, DeviceType
from vpcid.model.header import extended_chain, standard_chain

DUMPS = Path(__file__).parent / "data" / "dumps"
SOURCES = sorted(DUMPS.glob("*.txt")) + sorted(p for p in DUMPS.iterdir() if p.is_dir())
VM = 1
AT = Bdf(0, 4, 0)


def machine_of(functions: tuple[ImportedFunction, ...], folder: Path) -> DataManager:
    write_type_file(folder / "types.json", [f.entry for f in functions])
    (folder / "machine.toml").write_text(machine_text(functions, "types.json"), encoding="utf-8")
    machine = load_machine(folder / "machine.toml")
    assert machine.vm_id == VM
    return machine.manager


def shown(dm: DataManager, bdf: Bdf, size: int) -> bytes:
    return b"".join(dm.config_read(VM, bdf, o, 4).to_bytes(4, "little") for o in range(0, size, 4))


def plugged(dtype: DeviceType) -> DataManager:
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, AT, dtype)
    return dm


def written(dm: DataManager, offset: int, width: int, value: int) -> int:
    dm.config_write(VM, AT, offset, width, value)
    return dm.config_read(VM, AT, offset, width)


def e1000e() -> ImportedFunction:
    (function,) = import_sources([DUMPS / "qemu-e1000e.txt"])
    return function


def put(data: bytearray, offset: int, width: int, value: int) -> None:
    data[offset : offset + width] = value.to_bytes(width, "little")


def base(size: int = 256, pin: int = 1, cap: int = 0) -> bytearray:
    """A type 0 header, vendor 1234:5678, class 0xff0000, one 4 KiB memory BAR at 0xfe000000."""
    data = bytearray(size)
    put(data, 0x00, 4, 0x5678_1234)
    put(data, 0x08, 4, 0xFF00_0001)
    put(data, 0x10, 4, 0xFE00_0000)
    data[0x3D] = pin
    if cap:
        put(data, 0x06, 2, 0x0010)
        data[0x34] = cap
    return data


def dump_of(data: bytearray | bytes, sizes: tuple[int | None, ...] | None = (0x1000, 0, 0, 0, 0, 0),
            rom: int | None = 0, bdf: Bdf | None = AT) -> Dump:  # fmt: skip
    return Dump("synthetic.txt:1", 0, bdf, bytes(data), sizes, rom)


# ------------------------------------------------------------------ every shipped dump


@pytest.mark.req("R-DT-005", "R-DT-006", "R-DT-007")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_every_shipped_dump_imports_and_its_machine_shows_the_dump(source: Path, tmp_path: Path) -> None:
    functions = import_sources([source])
    assert functions
    dm = machine_of(functions, tmp_path)
    for function in functions:
        dump = function.dump
        assert dump.bdf is not None
        assert function.unreproducible == ()
        assert shown(dm, dump.bdf, len(dump.config)) == dump.config, function.dtype.name
        declared = function.dtype.declared.image
        assert [(e.offset, e.cap_id) for e in function.dtype.chain] == [
            (e.offset, e.cap_id) for e in standard_chain(declared) + extended_chain(declared)
        ]
        assert function.entry.source == f"imported from {dump.source}"
        assert any("bus master" in note for note in function.entry.notes)


@pytest.mark.req("R-DT-005")
def test_the_type_file_reads_back_as_the_same_types(tmp_path: Path) -> None:
    functions = import_sources([p for p in SOURCES if not p.name.startswith("host-")])
    write_type_file(tmp_path / "types.json", [f.entry for f in functions])
    again = read_type_file(tmp_path / "types.json")
    assert [e.dtype for e in again] == [f.dtype for f in functions]
    assert [e.notes for e in again] == [f.entry.notes for f in functions]


# ------------------------------------------------------------------ the CLI


def test_the_cli_writes_types_and_a_machine_that_places_colliding_functions(tmp_path: Path) -> None:
    sources = [DUMPS / "host-lspci-vv-xxxx.txt", DUMPS / "qemu-e1000.txt"]
    out, machine = tmp_path / "out" / "types.json", tmp_path / "machine.toml"
    out.parent.mkdir()
    result = CliRunner().invoke(
        main, ["types", "import", *map(str, sources), "-o", str(out), "--machine", str(machine)]
    )
    assert result.exit_code == 0, result.output
    assert "8086:100e@00:04.0: " in result.output
    assert f"wrote {out} and {machine}" in result.output
    text = machine.read_text()
    assert 'types = ["out/types.json"]' in text
    assert "# placed at 00:06.0: its dump BDF 00:04.0 is taken" in text
    built = load_machine(machine)
    (e1000_dump,) = read_dumps(DUMPS / "qemu-e1000.txt")
    assert shown(built.manager, Bdf(0, 6, 0), 256) == e1000_dump.config
    for dump in read_dumps(DUMPS / "host-lspci-vv-xxxx.txt"):
        assert dump.bdf is not None
        assert shown(built.manager, dump.bdf, len(dump.config)) == dump.config


def test_the_cli_writes_nothing_when_a_function_does_not_import(tmp_path: Path) -> None:
    hex_only = tmp_path / "hex.txt"
    hex_only.write_text("00:04.0 x\n" + "".join(
        f"{o:02x}: " + " ".join(f"{b:02x}" for b in base()[o : o + 16]) + "\n" for o in range(0, 256, 16)
    ))  # fmt: skip
    out = tmp_path / "types.json"
    result = CliRunner().invoke(
        main, ["types", "import", str(DUMPS / "qemu-e1000.txt"), str(hex_only), "-o", str(out)]
    )
    assert result.exit_code == 2
    assert "vpcid: error:" in result.output
    assert "BAR0 (mem32, register 0xfe000000) is implemented but its size is not known" in result.output
    assert not out.exists()


def test_the_cli_name_option_names_one_function(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    one = CliRunner().invoke(main, ["types", "import", str(DUMPS / "qemu-rtl8139.txt"), "-o", str(out),
                                    "--name", "my-rtl"])  # fmt: skip
    assert one.exit_code == 0, one.output
    assert [e.dtype.name for e in read_type_file(out)] == ["my-rtl"]
    two = CliRunner().invoke(main, ["types", "import", str(DUMPS / "host-lspci-vv-xxxx.txt"), "-o",
                                    str(tmp_path / "u.json"), "--name", "x"])  # fmt: skip
    assert two.exit_code == 2
    assert "names one function" in two.output


# ------------------------------------------------------------------ power-on image and masks


@pytest.mark.req("R-DT-005")
def test_power_on_image_is_the_dump_without_what_firmware_programs() -> None:
    function = e1000e()
    image, dump = function.dtype.declared.image, function.dump.config
    assert image[0x04:0x06] == bytes(2)  # command
    assert image[0x10:0x24] == bytes(8) + b"\x01" + bytes(11)  # BARs: type bits only (BAR2 is I/O)
    assert image[0x30:0x34] == bytes(4)  # ROM BAR
    assert image[0x3C] == 0  # interrupt line
    assert int.from_bytes(image[0xA2:0xA4], "little") == 0x0004  # MSI-X enable off, table size kept
    assert int.from_bytes(image[0xE8:0xEA], "little") == 0x2000  # Max_Read_Request_Size 512 at reset
    untouched = [
        o for o in range(4096) if not (0x04 <= o < 0x06 or 0x10 <= o < 0x34 or o in (0x3C, 0xA3, 0xE9))
    ]
    assert all(image[o] == dump[o] for o in untouched)
    (programmed,) = [n for n in function.entry.notes if n.startswith("power-on values")]
    assert "command 0x7" in programmed
    assert "interrupt line 0xb" in programmed
    assert dict(function.bars) == {
        0: 0xC000_0000,
        1: 0xC002_0000,
        2: 0xC000,
        3: 0xC004_0000,
    }
    assert function.command == 0x7


@pytest.mark.req("R-DT-005")
def test_header_masks_follow_the_pci_rules() -> None:
    dtype = e1000e().dtype
    assert dtype.command_mask == 0x0547  # I/O, memory, bus master, parity, SERR#, INTx disable
    assert dtype.status_rw1c == 0xF900
    dm = plugged(dtype)
    assert written(dm, 0x04, 2, 0xFFFF) == 0x0547
    assert written(dm, 0x0C, 1, 0xFF) == 0xFF  # cache line size
    assert written(dm, 0x0D, 1, 0xFF) == 0x00  # latency timer: PCI Express hardwires it
    assert written(dm, 0x3C, 1, 0xFF) == 0xFF  # interrupt line
    assert written(dm, 0x3D, 1, 0x00) == 0x01  # interrupt pin
    assert written(dm, 0x10, 4, 0xFFFF_FFFF) == 0xFFFE_0000  # 128 KiB
    assert written(dm, 0x18, 4, 0xFFFF_FFFF) == 0xFFFF_FFE1  # 32-byte I/O
    assert written(dm, 0x30, 4, 0xFFFF_FFFF) == 0xFFFC_0001  # 256 KiB ROM


def test_command_bits_without_io_bars_or_pin_and_conventional_features() -> None:
    data = base(pin=0)
    put(data, 0x04, 2, 0x0010)  # memory write and invalidate, set by a driver
    data[0x0D] = 0x40  # latency timer programmed
    dtype = import_dump(dump_of(data)).dtype
    assert dtype.command_mask == 0x0156
    dm = plugged(dtype)
    assert written(dm, 0x0D, 1, 0xF8) == 0xF8


def test_a_pci_express_dump_with_a_conventional_only_command_bit_is_an_error() -> None:
    data = base(4096, cap=0x40)
    put(data, 0x04, 2, 0x0008)
    put(data, 0x40, 4, 0x0001_0010)  # PCI Express v1 endpoint
    with pytest.raises(DumpImportError, match=r"config byte 0x004: command bits 0x8 are hardwired to zero"):
        import_dump(dump_of(data))


@pytest.mark.req("R-DT-005")
def test_power_management_msi_and_msix_masks() -> None:
    dm = plugged(e1000e().dtype)
    assert written(dm, 0xCC, 2, 0xFFFF) == 0x0003  # PMCSR: power state only (no PME support)
    assert written(dm, 0xCA, 2, 0x0000) == 0x0022  # PMC is read-only
    assert written(dm, 0xD2, 2, 0xFFFF) == 0x00F1  # MSI: enable, MME; 64-bit flag read-only
    assert written(dm, 0xD4, 4, 0xFFFF_FFFF) == 0xFFFF_FFFC
    assert written(dm, 0xD8, 4, 0xFFFF_FFFF) == 0xFFFF_FFFF  # upper address
    assert written(dm, 0xDC, 4, 0xFFFF_FFFF) == 0x0000_FFFF  # data; the next two bytes are not MSI's
    assert written(dm, 0xA2, 2, 0xFFFF) == 0xC004  # MSI-X enable and function mask
    assert written(dm, 0xA4, 4, 0) == 0x0000_0003  # table offset/BIR read-only


def test_msi_with_per_vector_masking_and_pme() -> None:
    data = base(cap=0x40)
    put(data, 0x40, 2, 0x5001)  # PM, next 0x50
    put(data, 0x42, 2, 0xC803)  # PME from D0 and D3hot
    put(data, 0x44, 2, 0x8103)  # D3hot, PME_En, PME_Status set in the dump
    put(data, 0x50, 2, 0x0005)  # MSI, last
    put(data, 0x52, 2, 0x0105)  # per-vector masking, 32-bit, 4 vectors capable, enabled
    put(data, 0x5C, 4, 0x0000_0003)  # mask bits
    put(data, 0x60, 4, 0x0000_0002)  # pending
    function = import_dump(dump_of(data))
    dm = plugged(function.dtype)
    assert written(dm, 0x44, 2, 0xFFFF) == 0x0103  # power state, PME_En; PME_Status cleared by a one
    assert written(dm, 0x52, 2, 0xFFFF) == 0x0175
    assert written(dm, 0x5C, 4, 0xFFFF_FFFF) == 0x0000_000F  # four vectors
    assert written(dm, 0x60, 4, 0xFFFF_FFFF) == 0  # pending: read-only, zero at power-on
    assert function.dtype.declared.w1cmask[0x45] == 0x80
    assert set(function.unreproducible) == {(0x45, 0x80), (0x60, 0x02)}
    notes = " ".join(function.entry.notes)
    assert "PM PME status bits 0x8000 at 0x044 are set in the dump" in notes
    assert "MSI pending bits 0x2 at 0x060" in notes


@pytest.mark.req("R-DT-005")
def test_pci_express_endpoint_and_aer_masks() -> None:
    dm = plugged(e1000e().dtype)
    assert written(dm, 0xE8, 2, 0xFFFF) == 0x78FF  # device control: no FLR, ext tag or phantoms here
    assert dm.device_type(VM, AT).declared.w1cmask[0xEA] == 0x0F  # device status error bits
    assert written(dm, 0xF0, 2, 0xFFFF) == 0x02CB  # link control of an endpoint
    assert written(dm, 0xF2, 2, 0xFFFF) == 0x0011  # link status read-only
    assert written(dm, 0xE4, 4, 0) == 0x0000_8000  # device capabilities read-only
    w1c = dm.device_type(VM, AT).declared.w1cmask
    assert int.from_bytes(w1c[0x104:0x108], "little") == 0x07FF_F030
    assert int.from_bytes(w1c[0x110:0x114], "little") == 0x0000_F1C1
    assert written(dm, 0x108, 4, 0xFFFF_FFFF) == 0x07FF_F030  # uncorrectable mask
    assert written(dm, 0x10C, 4, 0) == 0  # severity RW
    assert written(dm, 0x114, 4, 0xFFFF_FFFF) == 0x0000_F1C1
    assert written(dm, 0x118, 4, 0xFFFF_FFFF) == 0x0000_01E0  # ECRC enables; capable bits read-only
    serial = int.from_bytes(e1000e().dump.config[0x144:0x148], "little")
    assert written(dm, 0x144, 4, 0) == serial  # Device Serial Number: read-only


def test_pci_express_version_2_event_collector_with_aer() -> None:
    data = base(4096, pin=0, cap=0x40)
    put(data, 0x40, 2, 0x0010)  # PCI Express, last
    put(data, 0x42, 2, 0x00A2)  # version 2, Root Complex Event Collector
    put(data, 0x44, 4, 0x1000_0020)  # extended tag supported, FLR capable
    put(data, 0x5E, 2, 0x0001)  # root capabilities: CRS software visibility
    put(data, 0x60, 4, 0x0001_0000)  # root status: PME status set
    put(data, 0x64, 4, 0x0000_0813)  # device capabilities 2: timeout ranges, disable, LTR
    put(data, 0x100, 4, 0x0002_0001)  # AER v2, last
    put(data, 0x130, 4, 0x0000_0001)  # root error status: ERR_COR received
    function = import_dump(dump_of(data))
    dm = plugged(function.dtype)
    assert written(dm, 0x48, 2, 0xFFFF) == 0x79FF  # ext tag too; FLR (bit 15) stays read-only zero
    assert written(dm, 0x50, 2, 0xFFFF) == 0  # no link registers
    assert written(dm, 0x5C, 2, 0xFFFF) == 0x001F  # root control with CRS visibility
    assert written(dm, 0x68, 2, 0xFFFF) == 0x041F  # device control 2: timeout value/disable, LTR
    assert written(dm, 0x70, 2, 0xFFFF) == 0  # link control 2: no link
    assert written(dm, 0x12C, 4, 0xFFFF_FFFF) == 0x7  # root error command
    w1c = function.dtype.declared.w1cmask
    assert int.from_bytes(w1c[0x60:0x64], "little") == 0x0001_0000
    assert int.from_bytes(w1c[0x130:0x134], "little") == 0x7F
    assert set(function.unreproducible) == {(0x62, 0x01), (0x130, 0x01)}
    assert any("initiate function level reset" in n for n in function.entry.notes)


@pytest.mark.req("R-DT-005")
def test_rw1c_bits_set_in_a_live_dump_are_power_on_zero_and_listed(tmp_path: Path) -> None:
    data = base()
    put(data, 0x06, 2, 0x2008)  # received master abort, interrupt status
    function = import_dump(dump_of(data))
    assert function.dtype.declared.image[0x06:0x08] == bytes(2)
    assert set(function.unreproducible) == {(0x06, 0x08), (0x07, 0x20)}
    assert any("status error bits 0x2000 at 0x006 are set in the dump" in n for n in function.entry.notes)
    text = machine_text((function,), "types.json")
    assert "# not reproduced: config byte 0x007 bits 0x20 (RW1C or live state)" in text
    dm = machine_of((function,), tmp_path)
    assert dm.config_read(VM, AT, 0x06, 2) == 0


@pytest.mark.req("R-DT-006", "R-DT-007")
def test_capabilities_stay_at_the_offsets_the_dump_has_them() -> None:
    chain = [(e.offset, e.cap_id, e.extended) for e in e1000e().dtype.chain]
    assert chain == [(0xC8, 0x01, False), (0xD0, 0x05, False), (0xE0, 0x10, False), (0xA0, 0x11, False),
                     (0x100, 0x0001, True), (0x140, 0x0003, True)]  # fmt: skip


# ------------------------------------------------------------------ notes: what was guessed


def test_notes_say_what_a_dump_cannot_show() -> None:
    (ahci,) = import_sources([DUMPS / "qemu-ich9-ahci.txt"])
    (hda,) = import_sources([DUMPS / "qemu-ich9-intel-hda.txt"])
    (virtio,) = import_sources([DUMPS / "qemu-virtio-net-pci.txt"])
    notes = " | ".join(ahci.entry.notes + hda.entry.notes + virtio.entry.notes + e1000e().entry.notes)
    assert "capability SATA at 0xa8: body 0x0aa-0x0af read-only" in notes
    assert "device-specific bytes 0x040 (no capability claims them): read-only" in notes
    assert "vendor-specific capabilities at 0x84, 0x70, 0x60, 0x50, 0x40: read-only" in notes
    assert "expansion ROM of 0x40000 bytes: a dump does not show its contents (empty)" in notes
    assert "extended capability Device Serial Number (v1) at 0x140: body 0x144-0x14b read-only" in notes
    assert "bus master enable is taken writable" in notes


def test_a_bar_reading_zero_with_unknown_size_is_taken_as_unimplemented() -> None:
    data = base()
    put(data, 0x10, 4, 0)
    function = import_dump(dump_of(data, sizes=None, rom=None))
    assert function.dtype.bars == ()
    assert function.dtype.rom is None
    notes = " ".join(function.entry.notes)
    assert "BARs 0, 1, 2, 3, 4, 5 read 0 and the dump does not say a size: taken as unimplemented" in notes
    assert "the expansion ROM BAR reads 0 and the ROM's size is unknown: taken as no ROM" in notes


def test_header_only_and_short_express_dumps_are_padded() -> None:
    header = import_dump(dump_of(base()[:64]))
    assert len(header.dtype.declared.image) == 256
    assert any("only the 64-byte header" in n for n in header.entry.notes)
    data = base(cap=0x40)
    put(data, 0x40, 4, 0x0002_0010)  # PCI Express v2 endpoint in a 256-byte dump
    express = import_dump(dump_of(data))
    assert express.dtype.express
    assert any("extended configuration space (0x100-0xfff) taken as empty" in n for n in express.entry.notes)


# ------------------------------------------------------------------ import errors


def _set(offset: int, width: int, value: int) -> Callable[[bytearray], None]:
    return lambda data: put(data, offset, width, value)


@pytest.mark.parametrize(("change", "size", "message"), [
    (_set(0x06, 2, 0x10), 64, r"shows only the 64-byte header, but status bit 4 announces"),
    (_set(0x0E, 1, 0x01), 256, r"header type 1: only type 0 functions are imported"),
    (_set(0x10, 4, 0xFE00_0800), 256, r"BAR0 address 0xfe000800 is not a multiple of its size 0x1000"),
    (_set(0x14, 4, 0xC001), 256, r"BAR1 \(io, register 0x0000c001\) is implemented but its size is"),
    (_set(0x30, 4, 0xFEB0_0000), 256, r"expansion ROM BAR holds 0xfeb00000 but the ROM's size"),
    (_set(0x3D, 1, 5), 256, r"config byte 0x03d: interrupt pin is 0 \(none\) or 1-4"),
    (_set(0x24, 4, 0x0000_0004), 256, r"config byte 0x024: a 64-bit BAR in slot 5"),
    (_set(0x10, 4, 0xFFFF_FFFF), 256, r"BAR0 reads 0xffffffff"),
    (_set(0x04, 2, 0x0800), 256, r"command bits 0x0800 are reserved"),
], ids=["64 bytes with capabilities", "bridge", "misaligned BAR", "size 0", "ROM size 0", "pin 5",
        "64-bit BAR in slot 5", "all ones BAR", "reserved command bit"])  # fmt: skip
def test_dumps_that_cannot_become_a_type_are_import_errors(
    change: Callable[[bytearray], None], size: int, message: str
) -> None:
    data = base()
    change(data)
    with pytest.raises(DumpImportError, match=message) as caught:
        import_dump(dump_of(data[:size]))
    assert str(caught.value).startswith("synthetic.txt:1 (00:04.0): ")
    assert caught.value.kind == "bad-import"


def test_two_functions_may_not_get_one_name() -> None:
    (dump,) = read_dumps(DUMPS / "qemu-e1000.txt")
    with pytest.raises(DumpImportError, match=r"would both be named '8086:100e@00:04.0'"):
        import_dumps([dump, dump])


# ------------------------------------------------------------------ overlays


def overlay(*functions: dict[str, object]) -> object:
    return {"vpcid-import-overlay": 1, "functions": list(functions)}


@pytest.mark.req("R-DT-005")
def test_an_overlay_gives_a_lone_config_file_its_sizes_and_name(tmp_path: Path) -> None:
    (e1000,) = read_dumps(DUMPS / "qemu-e1000.txt")
    lone = tmp_path / "config"
    lone.write_bytes(e1000.config)
    with pytest.raises(DumpImportError, match=r"BAR0 .* \"bar_sizes\": \{\"0\": SIZE\}"):
        import_sources([lone])
    fixes = parse_overlay(overlay({"match": {"ids": "8086:100e"}, "name": "nic", "rom_size": "0x40000",
                                   "bar_sizes": {"0": "0x20000", "1": 64}}))  # fmt: skip
    (function,) = import_sources([lone], overlay=fixes)
    assert function.dtype.name == "nic"
    (reference,) = import_sources([DUMPS / "qemu-e1000.txt"])
    assert function.dtype.declared == reference.dtype.declared
    assert function.dtype.bars == reference.dtype.bars
    text = machine_text((function,), "types.json")
    assert "# placed at 00:01.0: the dump has no BDF" in text
    dm = machine_of((function,), tmp_path)
    assert shown(dm, Bdf(0, 1, 0), 256) == e1000.config


def test_overlay_bytes_masks_behaviours_and_notes() -> None:
    fixes = parse_overlay(overlay({
        "match": {"bdf": "0000:00:04.0"},
        "bytes": [{"offset": "0x88", "width": 4, "wmask": "0xffffffff"}, {"offset": 0x8C, "value": 7}],
        "config_behaviour": "msi-mme-clamp",
        "notes": ["0x88: virtio's PCI configuration access window is writable"],
    }))  # fmt: skip
    (dump,) = read_dumps(DUMPS / "qemu-virtio-net-pci.txt")
    function = import_dump(dump, overlay=fixes)
    space = function.dtype.declared
    assert space.wmask[0x88:0x8C] == b"\xff" * 4
    assert space.image[0x8C] == 7
    assert function.dtype.config_behaviour is not None
    assert function.dtype.config_behaviour.name == "msi-mme-clamp"
    assert "overlay: 0x88: virtio's PCI configuration access window is writable" in function.entry.notes
    assert (0x8C, 0x07) in function.unreproducible  # the overlay's power-on value differs from the dump


def test_an_overlay_corrects_a_byte_that_breaks_a_rule() -> None:
    data = base()
    data[0x3D] = 5
    with pytest.raises(DumpImportError, match=r"config byte 0x03d: .*an overlay's \"bytes\" can correct"):
        import_dump(dump_of(data))
    fixes = parse_overlay(overlay({"bytes": [{"offset": "0x3d", "value": 1}]}))
    assert import_dump(dump_of(data), overlay=fixes).dtype.interrupt_pin == 1


def test_overlays_are_read_from_files_and_checked(tmp_path: Path) -> None:
    from vpcid.conformance.importer import read_overlay

    path = tmp_path / "overlay.json"
    path.write_text(json.dumps(overlay({"match": {"bdf": "00:04.0"}, "name": "x"})))
    assert read_overlay(path).functions[0].name == "x"
    path.write_text("{")
    with pytest.raises(DumpImportError, match=re.escape(f"{path}: line 1")):
        read_overlay(path)


@pytest.mark.parametrize(("document", "message"), [
    ({"functions": []}, r"top level: 'vpcid-import-overlay' is a required property"),
    (overlay({"sizes": {}}), r"functions/0: Additional properties are not allowed \('sizes'"),
    (overlay({"bar_sizes": {"6": 4096}}), r"functions/0/bar_sizes"),
    (overlay({"match": {"bdf": "00:04.8"}}), r"functions/0/match/bdf"),
    (overlay({"bytes": [{"offset": 2, "width": 4, "value": 0}]}), r"offset 0x2 is not aligned to its width"),
    (overlay({"bytes": [{"offset": 2, "value": 256}]}), r"a value wider than 1 byte"),
], ids=["no version", "unknown key", "BAR 6", "bad BDF", "misaligned", "too wide"])  # fmt: skip
def test_malformed_overlays_are_rejected(document: object, message: str) -> None:
    with pytest.raises(DumpImportError, match=message):
        parse_overlay(document)


def test_overlay_entries_must_match_and_name_one_function() -> None:
    functions = read_dumps(DUMPS / "host-lspci-vv-xxxx.txt")
    with pytest.raises(DumpImportError, match=r"functions/0: matches none of the imported functions"):
        import_dumps(functions, overlay=parse_overlay(overlay({"match": {"ids": "dead:beef"}})))
    with pytest.raises(DumpImportError, match=r"functions/0: names one type but matches 6 functions"):
        import_dumps(functions, overlay=parse_overlay(overlay({"name": "all"})))
    data = base()
    with pytest.raises(DumpImportError, match=r"bytes at 0x100\+4 lie outside the function's 256 bytes"):
        import_dump(dump_of(data), overlay=parse_overlay(overlay({"bytes": [{"offset": 256, "width": 4}]})))
