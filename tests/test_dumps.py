"""Reading dumps: lspci -x/-xxx/-xxxx text as pciutils' dump reader takes it, sysfs folders, binary
config files; every malformed dump is a DumpError naming the file and the line or byte."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from vpcid.conformance.dumps import Dump, DumpError, parse_lspci_text, read_dumps
from vpcid.model import Bdf

DUMPS = Path(__file__).parent / "data" / "dumps"
TEXT_DUMPS = sorted(DUMPS.glob("*.txt"))
SYSFS_DUMPS = sorted(p for p in DUMPS.iterdir() if p.is_dir())
E1000_SIZES = (0x20000, 0x40, 0, 0, 0, 0)


def rows(data: bytes) -> str:
    return "".join(
        f"{o:02x}: " + " ".join(f"{b:02x}" for b in data[o : o + 16]) + "\n" for o in range(0, len(data), 16)
    )


def config(size: int = 256) -> bytes:
    data = bytearray(size)
    data[0:4] = bytes.fromhex("86800e10")
    data[0x10:0x14] = (0xFEBC0000).to_bytes(4, "little")
    return bytes(data)


def test_shipped_dumps_are_there() -> None:
    assert len(TEXT_DUMPS) >= 15
    assert len(SYSFS_DUMPS) >= 1
    listed = (DUMPS / "README.md").read_text(encoding="utf-8")
    for path in [*TEXT_DUMPS, *SYSFS_DUMPS]:
        name = path.name if path.is_file() else "sysfs-0000:00:0N.0/"
        assert name in listed, f"{path.name} has no line in tests/data/dumps/README.md"


@pytest.mark.parametrize("path", TEXT_DUMPS, ids=lambda p: p.name)
def test_every_shipped_text_dump_reads(path: Path) -> None:
    dumps = read_dumps(path)
    assert dumps
    for dump in dumps:
        assert len(dump.config) in (256, 4096)
        assert dump.bdf is not None
        assert dump.source.startswith(f"{path}:")
        assert dump.text_lines, "the shipped dumps carry -v lines"
        if any("Region" in line or "Memory at" in line for line in dump.text_lines):
            assert dump.bar_sizes is not None


@pytest.mark.skipif(shutil.which("lspci") is None, reason="pciutils' lspci is not installed")
@pytest.mark.parametrize("path", TEXT_DUMPS, ids=lambda p: p.name)
def test_pciutils_reads_the_same_bytes(path: Path) -> None:
    shown = subprocess.run(
        ["lspci", "-xxxx", "-F", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    theirs = {(d.domain, d.bdf): d.config for d in parse_lspci_text(shown, "lspci output")}
    assert theirs == {(d.domain, d.bdf): d.config for d in read_dumps(path)}


def test_vv_regions_give_sizes_by_index() -> None:
    (dump,) = read_dumps(DUMPS / "qemu-e1000.txt")
    assert dump.bdf == Bdf(0, 4, 0)
    assert dump.bar_sizes == E1000_SIZES
    assert dump.rom_size == 0x40000
    assert dump.text_lines[0].startswith("\tSubsystem:")
    (megasas,) = read_dumps(DUMPS / "qemu-megasas.txt")
    # lspci 3.9 shows the upper dwords of the 64-bit BARs as regions without a size: unknown
    assert megasas.bar_sizes == (0x4000, None, 0x100, 0x40000, None, 0)


def test_v_regions_map_to_non_zero_bars_in_order() -> None:
    by_v = {d.bdf: (d.bar_sizes, d.rom_size) for d in read_dumps(DUMPS / "host-lspci-v-xxx.txt")}
    by_vv = {d.bdf: (d.bar_sizes, d.rom_size) for d in read_dumps(DUMPS / "host-lspci-vv-xxxx.txt")}
    assert by_v == by_vv
    assert any(sizes is not None and sizes[0] for sizes, _ in by_v.values())


def test_v_regions_that_do_not_match_the_registers_leave_sizes_unknown(tmp_path: Path) -> None:
    text = "00:04.0 Ethernet controller: x\n\tMemory at febc0000 (32-bit) [size=128K]\n"
    text += "\tI/O ports at c000 [size=64]\n" + rows(config())
    path = tmp_path / "d.txt"
    path.write_text(text)
    (dump,) = read_dumps(path)
    assert dump.bar_sizes == (None,) * 6


def test_hex_only_dumps_have_no_sizes(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("00:04.0 Ethernet controller: x\n" + rows(config(64)))
    (dump,) = read_dumps(path)
    assert (len(dump.config), dump.bar_sizes, dump.rom_size, dump.text_lines) == (64, None, None, ())


def test_domains_crlf_uppercase_and_many_functions(tmp_path: Path) -> None:
    text = "0001:00:04.0 x\r\n" + rows(config()).upper().replace("\n", "\r\n") + "\r\n"
    text += "10000:02:1f.7 y\n" + rows(config(4096))
    path = tmp_path / "d.txt"
    path.write_text(text, newline="")
    first, second = read_dumps(path)
    assert (first.domain, first.bdf, first.label) == (1, Bdf(0, 4, 0), "0001:00:04.0")
    assert (second.domain, second.bdf, len(second.config)) == (0x10000, Bdf(2, 0x1F, 7), 4096)
    assert first.config == config()
    assert second.source == f"{path}:19"


def test_a_trailing_space_after_a_row_is_accepted_as_pciutils_does(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("00:04.0 x\n" + rows(config(64)).replace("\n", " \n"))
    (dump,) = read_dumps(path)
    assert dump.config == config(64)


@pytest.mark.parametrize("path", SYSFS_DUMPS, ids=lambda p: p.name)
def test_sysfs_folders_read_config_and_resource(path: Path) -> None:
    (dump,) = read_dumps(path)
    assert dump.source == str(path)
    assert dump.bdf == Bdf.parse(path.name.split(":", 1)[1])
    assert dump.config == (path / "config").read_bytes()
    assert dump.bar_sizes is not None
    assert dump.rom_size is not None


def test_sysfs_sizes_and_a_folder_without_a_bdf(tmp_path: Path) -> None:
    folder = tmp_path / "my-nic"
    folder.mkdir()
    (folder / "config").write_bytes(config())
    lines = ["0x00000000febc0000 0x00000000febdffff 0x0000000000040200"]
    lines += ["0x000000000000c000 0x000000000000c03f 0x0000000000040101"]
    lines += ["0x0000000000000000 0x0000000000000000 0x0000000000000000"] * 4
    lines += ["0x00000000feb80000 0x00000000febbffff 0x0000000000046200"]
    lines += ["0x0000000000000000 0x0000000000000000 0x0000000000000000"] * 6  # SR-IOV lines are ignored
    (folder / "resource").write_text("\n".join(lines) + "\n")
    data = bytearray(config())
    data[0x14:0x18] = (0xC001).to_bytes(4, "little")
    (folder / "config").write_bytes(bytes(data))
    (dump,) = read_dumps(folder)
    assert (dump.bdf, dump.domain) == (None, 0)
    assert dump.bar_sizes == E1000_SIZES
    assert dump.rom_size == 0x40000


def test_a_kernel_range_whose_kind_disagrees_with_the_register_is_not_a_bar(tmp_path: Path) -> None:
    folder = tmp_path / "sysfs-0000:00:01.1"
    folder.mkdir()
    (folder / "config").write_bytes(bytes(256))
    legacy = "0x00000000000001f0 0x00000000000001f7 0x0000000000000110"  # IDE compatibility ports
    rest = ["0x0000000000000000 0x0000000000000000 0x0000000000000000"] * 6
    (folder / "resource").write_text("\n".join([legacy, *rest]) + "\n")
    (dump,) = read_dumps(folder)
    assert dump.bdf == Bdf(0, 1, 1)
    assert dump.bar_sizes == (None, 0, 0, 0, 0, 0)


@pytest.mark.parametrize("size", [64, 256, 4096])
def test_a_lone_binary_config_file(tmp_path: Path, size: int) -> None:
    path = tmp_path / "config"
    path.write_bytes(config(size))
    (dump,) = read_dumps(path)
    assert (dump.source, dump.bdf, dump.config, dump.bar_sizes) == (str(path), None, config(size), None)


def test_dump_values_check_their_own_sizes() -> None:
    with pytest.raises(DumpError, match="64, 256 or 4096"):
        Dump("x", 0, None, bytes(100), None, None)
    with pytest.raises(DumpError, match="six BAR sizes"):
        Dump("x", 0, None, bytes(64), (0,), None)


# ------------------------------------------------------------------ malformed dumps

HEADER = "00:04.0 Ethernet controller: x\n"
GOOD = rows(config(64))
ROW = "{:02x}: " + " ".join(["00"] * 16) + "\n"
RESOURCE_ZERO = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"

MALFORMED_TEXT = [
    ("gap", HEADER + GOOD.replace("10: ", "20: ", 1), "line 3: row 0x20 leaves a gap"),
    ("duplicated row", HEADER + GOOD.replace("10: ", "00: ", 1), "line 3: row 0x0 repeats or goes back"),
    ("out of order", HEADER + ROW.format(0) + ROW.format(0x10) + ROW.format(0x20) + ROW.format(0x10),
     "line 5: row 0x10 repeats or goes back"),
    ("past 0xfff", HEADER + rows(config(4096)) + "1000: " + " ".join(["00"] * 16) + "\n",
     "row 0x1000 lies past 0xfff"),
    ("non-hex", HEADER + GOOD.replace("00: 86", "00: zz", 1), "line 2: a row is 16 hex bytes"),
    ("short row", HEADER + GOOD.replace(" 00\n", "\n", 1), "line 2: short row: 15 bytes"),
    ("long row", HEADER + GOOD.replace("\n", " 00\n", 1), "line 2: short row: 17 bytes"),
    ("two spaces", HEADER + GOOD.replace("86 80", "86  80", 1), "line 2: a row is 16 hex bytes"),
    ("header without rows", HEADER + "\n" + "00:05.0 y\n" + GOOD, "line 1: function 00:04.0 has no hex rows"),
    ("device 0x20", "00:20.0 x\n" + GOOD, "line 1: 00:20.0 is not a BDF"),
    ("function 8", "00:04.8 x\n" + GOOD, "line 1: 00:04.8 is not a BDF"),
    ("row outside a function", GOOD, "line 1: a hex row outside a function"),
    ("row after the empty line", HEADER + GOOD + "\n" + GOOD, "line 7: a hex row outside a function"),
    ("twice", HEADER + GOOD + "\n" + HEADER + GOOD, "line 7: function 00:04.0 appears twice"),
    ("0x60 bytes", HEADER + "".join(ROW.format(o) for o in range(0, 0x60, 0x10)), "has 0x60 bytes of rows"),
    ("no function", "hello\nworld\n", "no function found"),
    ("size not a power of two", HEADER + "\tRegion 0: Memory at febc0000 (32-bit) [size=3K]\n" + GOOD,
     "line 2: [size=3K] is not a power of two"),
    ("region 7", HEADER + "\tRegion 7: Memory at febc0000 (32-bit) [size=4K]\n" + GOOD,
     "line 2: region 7: a type 0 header has BARs 0-5"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in MALFORMED_TEXT],
                         ids=[n for n, _, _ in MALFORMED_TEXT])  # fmt: skip
def test_malformed_text_dumps_are_rejected_naming_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "dump.txt"
    path.write_text(text)
    with pytest.raises(DumpError, match=r"dump\.txt") as caught:
        read_dumps(path)
    assert message in str(caught.value)
    assert caught.value.kind == "bad-dump"


@pytest.mark.parametrize(("data", "message"), [
    (b"\x86\x80\x00", "truncated: 3 bytes"),
    (bytes(5000), "oversized: 5000 bytes"),
    (bytes(100), "100 bytes; a configuration space dump has 64, 256 or 4096"),
    (b"00:04.0 x\n\xff\xfe\n", "byte 10 is not UTF-8"),
], ids=["truncated", "oversized", "odd length", "not utf-8"])  # fmt: skip
def test_malformed_binary_dumps_are_rejected(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "config"
    path.write_bytes(data)
    with pytest.raises(DumpError, match=message):
        read_dumps(path)


def sysfs(tmp_path: Path, resource: str | None, data: bytes | None = None) -> Path:
    folder = tmp_path / "0000:00:04.0"
    folder.mkdir()
    (folder / "config").write_bytes(config() if data is None else data)
    if resource is not None:
        (folder / "resource").write_text(resource)
    return folder


@pytest.mark.parametrize(("resource", "message"), [
    ("0x0 0x1\n" + RESOURCE_ZERO * 6, "resource line 1: expected 'start end flags'"),
    ("start end flags\n" + RESOURCE_ZERO * 6, "resource line 1: expected 'start end flags'"),
    (RESOURCE_ZERO * 3, "3 lines; a resource file has a line per BAR and one for the ROM"),
    ("0x00000000febc0000 0x00000000febd0000 0x0000000000040200\n" + RESOURCE_ZERO * 6,
     "resource line 1: range 0xfebc0000-0xfebd0000 is not a power-of-two size"),
    (RESOURCE_ZERO * 6 + "0x00000000febc0000 0x00000000febb0000 0x0000000000040200\n",
     "resource line 7: range 0xfebc0000-0xfebb0000 is not a power-of-two size"),
], ids=["two fields", "not hex", "too few lines", "not a power of two", "end before start"])  # fmt: skip
def test_malformed_resource_files_are_rejected(tmp_path: Path, resource: str, message: str) -> None:
    with pytest.raises(DumpError, match=message):
        read_dumps(sysfs(tmp_path, resource))


def test_a_sysfs_folder_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DumpError, match="no 'config' file"):
        read_dumps(tmp_path)


def test_a_truncated_sysfs_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DumpError, match=r"config: truncated: 32 bytes"):
        read_dumps(sysfs(tmp_path, None, bytes(32)))


def test_a_sysfs_folder_name_with_a_bad_bdf_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "0000:00:04.9"
    folder.mkdir()
    (folder / "config").write_bytes(config())
    with pytest.raises(DumpError, match=r"folder name: 00:04.9 is not a BDF"):
        read_dumps(folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(DumpError, match="not a regular file"):
        read_dumps(fifo)
