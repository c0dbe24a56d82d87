"""Discovery of a live function's device type (vpcid.conformance.discovery): one implementation, any target.

Targets here: the reference model behind a fixed machine (through
AdapterPort), in-memory functions that misbehave on purpose (FakePort), the
vpcid vfio-user server through the client, and QEMU through the command
(skipped without QEMU).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from vpcid.adapters.base import FixedMachine
from vpcid.adapters.qemu.qtest import kill_all, live_pids, qemu_binary
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.devices import EXPRESS_SINK, KITCHEN_SINK, SUITE_TYPES
from vpcid.conformance.discovery import (
    AdapterPort,
    ConfigAccess,
    DiscoveryError,
    bar_slots,
    consistent_with,
    describe_difference,
    discover_command,
    discover_machine,
    discover_type,
)
from vpcid.conformance.typefile import read_type_file
from vpcid.model import Bdf, Capability, ConfigSpace, DeviceType, RomSpec
from vpcid.model.catalog import E1000, EDU

DEV = Bdf(0, 2, 0)


def _model(dtype: DeviceType) -> ModelAdapter:
    return ModelAdapter("model", machine=FixedMachine(vm=1, devices=((DEV, dtype),)))


def _discover(dtype: DeviceType) -> DeviceType:
    model = _model(dtype)
    (entry,) = discover_machine(model)
    return entry.dtype


class RecordingPort(AdapterPort):
    """AdapterPort that remembers every write."""

    def __init__(self, dtype: DeviceType) -> None:
        model = _model(dtype)
        assert model.info.machine is not None
        super().__init__(model, model.info.machine, DEV)
        self.writes: list[tuple[int, int, int]] = []

    def config_batch(self, accesses: Sequence[ConfigAccess]) -> list[int]:
        self.writes += [(o, w, v) for o, w, v in accesses if v is not None]
        return super().config_batch(accesses)


class FakePort:
    """A function in memory with per-byte write, RW1C and write-1-to-set masks (the last is not
    expressible by a device type); configuration space is ``len(image)`` bytes."""

    label = "fake function"

    def __init__(self, image: bytes, wmask: dict[int, int] | None = None, w1c: dict[int, int] | None = None,
                 w1s: dict[int, int] | None = None) -> None:  # fmt: skip
        self.config = bytearray(image)
        self.wmask, self.w1c, self.w1s = wmask or {}, w1c or {}, w1s or {}
        self.writes: list[tuple[int, int, int]] = []

    def config_batch(self, accesses: Sequence[ConfigAccess]) -> list[int]:
        values = []
        for offset, width, value in accesses:
            inside = offset + width <= len(self.config)
            if value is None:
                data = self.config[offset : offset + width] if inside else b"\xff" * width
                values.append(int.from_bytes(data, "little"))
                continue
            self.writes.append((offset, width, value))
            for k in range(width if inside else 0):
                o, byte = offset + k, (value >> (8 * k)) & 0xFF
                w, c, s = self.wmask.get(o, 0), self.w1c.get(o, 0), self.w1s.get(o, 0)
                self.config[o] = ((self.config[o] & ~w) | (byte & w)) & ~(byte & c) & 0xFF | (byte & s)
        return values

    def rom_window(self, size: int) -> int | None:
        return None

    def read_memory(self, address: int, length: int) -> bytes:
        raise AssertionError("no ROM to read")


def _header(vendor: int = 0x1234, device: int = 0x5678, header_type: int = 0) -> bytearray:
    image = bytearray(256)
    image[0:4] = struct.pack("<HH", vendor, device)
    image[0x0E] = header_type
    return image


# ------------------------------------------------------------------ the model as the target


@pytest.mark.req("R-DT-005", "R-DT-006", "R-DT-007", "R-DT-008")
@pytest.mark.parametrize("name", sorted(SUITE_TYPES))
def test_suite_types_are_rediscovered_from_the_model(name: str) -> None:
    """Every suite type, served by the model, is discovered consistently: same bytes and write masks,
    BARs, ROM size and contents, chains; RW1C bits that read one; the MSI clamp where it is declared."""
    declared = SUITE_TYPES[name]
    found = _discover(declared)
    assert consistent_with(found, declared), describe_difference(declared, found)
    assert found.declared.image == declared.declared.image
    assert found.declared.wmask == declared.declared.wmask
    assert found.chain == declared.chain
    assert bar_slots(found) == bar_slots(declared)
    if declared.rom is None:
        assert found.rom is None
    else:
        assert found.rom == RomSpec(declared.rom.size, declared.rom.contents.rstrip(b"\0"))
    visible_w1c = bytes(
        c & i for c, i in zip(declared.declared.w1cmask, declared.declared.image, strict=True)
    )
    assert bytes(f & ~0 for f in found.declared.w1cmask[8:]) == visible_w1c[8:]


@pytest.mark.req("R-DT-008")
def test_msi_clamp_is_discovered_only_where_the_target_clamps() -> None:
    """kitchen-sink clamps MME to its capable 2 while enabled: msi-mme-clamp with MME writable. The
    catalog's edu declares MME writable without clamping: no configuration behaviour."""
    sink = _discover(KITCHEN_SINK)
    assert sink.config_behaviour is not None
    assert sink.config_behaviour.name == "msi-mme-clamp"
    assert sink.declared.wmask[0x52] == 0x71
    edu = _discover(EDU)
    assert edu.config_behaviour is None
    assert edu.declared.wmask[0x42] == 0x71


@pytest.mark.req("R-DT-005")
def test_rw1c_bits_are_inferred_and_the_invisible_ones_noted() -> None:
    """kitchen-sink's RW1C register at 0x60 holds 0x800000f1: those bits are found, the zero ones are not."""
    found = discover_type(RecordingPort(KITCHEN_SINK), "sink")
    assert found.dtype.declared.w1cmask[0x60:0x64] == bytes([0xF1, 0, 0, 0x80])
    assert found.dtype.declared.w1cmask[0x06:0x08] == b"\x00\xf9"
    assert any("cannot be told from read-only" in n for n in found.notes)
    assert any("status error bits 0xf900" in n for n in found.notes)


def _express_with_flr() -> DeviceType:
    """A PCI Express endpoint whose Device Control (with Initiate FLR) and Link Control are writable."""
    body = struct.pack("<HIHHIHH", 0x0002, 1 << 28, 0, 0, 0, 0, 0)
    writable = bytes(6) + b"\xff\xff" + bytes(6) + b"\xff\xff" + bytes(2)
    return DeviceType(name="flr", vendor_id=0x1B36, device_id=0x0100, class_code=0x020000,
                      capabilities=(Capability(0x10, body, writable=writable, offset=0x60),))  # fmt: skip


def test_bits_that_start_actions_are_never_written_as_ones() -> None:
    """Initiate FLR (Device Control bit 15) and Retrain Link (Link Control bit 5) are written as zero
    only, declared read-only, and noted."""
    port = RecordingPort(_express_with_flr())
    found = discover_type(port, "flr")
    devctl_high, lnkctl = 0x60 + 9, 0x60 + 0x10
    for offset, width, value in port.writes:
        data = value.to_bytes(width, "little")
        for at, bit in ((devctl_high, 0x80), (lnkctl, 0x20)):
            if offset <= at < offset + width:
                assert not data[at - offset] & bit, (offset, width, value)
    wmask = found.dtype.declared.wmask
    assert (wmask[devctl_high], wmask[lnkctl]) == (0x7F, 0xDF)
    assert sum("start an action" in n for n in found.notes) == 2


# ------------------------------------------------------------------ targets that break the rules


def test_absent_and_cardbus_functions_are_refused_before_any_write() -> None:
    """Type 1 bridges are device types (tests/test_discovery_bridges.py); a CardBus bridge is not."""
    absent = FakePort(b"\xff" * 256)
    with pytest.raises(DiscoveryError, match="no function answers"):
        discover_type(absent, "x")
    cardbus = FakePort(bytes(_header(header_type=0x02)))
    with pytest.raises(DiscoveryError, match="header type 2"):
        discover_type(cardbus, "x")
    assert absent.writes == cardbus.writes == []


def test_what_a_device_type_cannot_express_is_noted_never_guessed() -> None:
    """A writable vendor ID, a command register not zero at power-on, a bit set by a written one, a
    writable status bit: each declared the way the model can, and each said in a note."""
    image = _header()
    image[0x04] = 0x02  # memory decode already on
    image[0x3C] = 0x0A
    port = FakePort(bytes(image), wmask={0x00: 0xFF, 0x04: 0x07, 0x3C: 0xFF, 0x06: 0x40}, w1s={0x50: 0x01})
    found = discover_type(port, "odd")
    space = found.dtype.declared
    assert (space.wmask[0x00], space.image[0x04], space.wmask[0x3C], space.wmask[0x50]) == (0, 0, 0xFF, 0)
    assert space.wmask[0x06] == 0
    assert space.image[0x3C] == 0x0A
    notes = " ".join(found.notes)
    expected = ("identity or capabilities pointer", "command register read 0x0002",
                "neither keep their value", "0x050 bits 0x01", "status bits 0x0040 are writable")  # fmt: skip
    for text in expected:
        assert text in notes, text
    assert port.config[0x00] == 0x34  # written back: the function is left as it was found


def test_broken_capability_chain_is_a_discovery_error() -> None:
    image = _header()
    image[0x06], image[0x34] = 0x10, 0x42  # capability list announced, pointer not dword aligned
    with pytest.raises(DiscoveryError, match="R-DT-006"):
        discover_type(FakePort(bytes(image)), "x")


def test_differences_are_described() -> None:
    assert E1000.rom is not None
    space = E1000.declared
    wmask = bytearray(space.wmask)
    wmask[0x3C] = 0
    other = DeviceType.from_space(
        "nic", ConfigSpace(space.image, bytes(wmask), space.w1cmask), E1000.bars, RomSpec(E1000.rom.size)
    )
    text = describe_difference(E1000, other)
    for part in ("wmask at 0x3c (first 0xff vs 0x00)", "ROM", "name 'e1000' vs 'nic'"):
        assert part in text, text
    assert describe_difference(E1000, E1000) == "nothing the fingerprint covers"


# ------------------------------------------------------------------ the command


@pytest.mark.req("R-DT-001", "R-DT-002")
def test_discover_command_writes_a_type_file(tmp_path: Path) -> None:
    """`vpcid types discover vfio-user:spawn=...`: every device of the machine, with notes, in a file
    the one reader reads back; --name names a single type."""
    out = tmp_path / "types.json"
    result = CliRunner().invoke(
        discover_command, ["vfio-user:spawn=kitchen-sink+express-sink", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    entries = read_type_file(out)
    assert [e.dtype.name for e in entries] == ["kitchen-sink", "express-sink"]
    for entry, declared in zip(entries, (KITCHEN_SINK, EXPRESS_SINK), strict=True):
        assert consistent_with(entry.dtype, declared)
        assert entry.notes
        assert entry.source.startswith("vpcid types discover")
    named = CliRunner().invoke(discover_command, ["vfio-user:spawn=e1000", "-o", str(out), "--name", "nic"])
    assert named.exit_code == 0, named.output
    (nic,) = read_type_file(out)
    assert nic.dtype.name == "nic"
    assert nic.dtype.rom is not None
    assert E1000.rom is not None
    assert nic.dtype.rom.contents == E1000.rom.contents.rstrip(b"\0")
    too_many = CliRunner().invoke(
        discover_command, ["vfio-user:spawn=e1000+edu", "-o", str(out), "--name", "x"]
    )
    assert too_many.exit_code != 0
    assert "--name names one type" in too_many.output
    from vpcid.conformance.cli import main

    unknown = CliRunner().invoke(main, ["types", "discover", "no-such-adapter", "-o", str(out)])
    assert unknown.exit_code == 2  # bad input: one line naming what is wrong
    assert "no adapter named 'no-such-adapter'" in unknown.output


def test_discover_command_needs_a_machine(tmp_path: Path) -> None:
    result = CliRunner().invoke(discover_command, ["reference", "-o", str(tmp_path / "x.json")])
    assert result.exit_code != 0
    assert "nothing to probe" in result.output


@pytest.mark.skipif(qemu_binary() is None, reason="qemu-system-x86_64 is not installed")
def test_discovery_through_qtest_and_through_the_adapter_agree(tmp_path: Path) -> None:
    """QEMU's edu: the adapter's own discovery (qtest, ECAM) and `vpcid types discover qemu:edu`
    (the same discovery through the adapter's operations) give the same type, fingerprint included."""
    from vpcid.adapters.qemu import adapter

    before = set(live_pids())
    out = tmp_path / "edu.json"
    result = CliRunner().invoke(discover_command, ["qemu:edu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    (entry,) = read_type_file(out)
    a = adapter("edu")
    try:
        assert entry.dtype.fingerprint() == a.discovery.dtype.fingerprint()
        assert entry.dtype.config_behaviour is not None
        assert [(r.start, r.stop) for _, r in entry.opaque] == [(0x20, 0x24), (0x60, 0x68)]
    finally:
        a.close()
    assert set(live_pids()) <= before
    kill_all()


@pytest.mark.req("R-BAR-004")
def test_a_bar_that_reads_type_bits_but_no_address_is_not_implemented() -> None:
    """libvfio-user's unimplemented BARs read 0x1 whatever is written: no address bit, so no BAR; the
    type says it reads zero (R-BAR-004), and certifying then finds the difference."""
    image = _header()
    image[0x10:0x14] = struct.pack("<I", 0x1)  # BAR0 reads 1 and ignores writes
    image[0x14:0x18] = struct.pack("<I", 0x1)  # BAR1: a 256-byte I/O BAR
    found = discover_type(FakePort(bytes(image), wmask={0x15: 0xFF, 0x16: 0xFF, 0x17: 0xFF}), "odd-bars")
    assert found.dtype.bar(0) is None
    bar1 = found.dtype.bar(1)
    assert bar1 is not None
    assert (bar1.kind.value, bar1.size) == ("io", 256)
    assert found.dtype.declared.image[0x10:0x14] == bytes(4)
    assert any("BAR0 reads 0x1 after writing ones: no address bit" in note for note in found.notes)
