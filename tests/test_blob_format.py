"""The data blob and VM snapshot byte formats (R-BLOB-001..R-BLOB-005).

Blobs are taken apart and rebuilt by hand here, with :mod:`struct` and
:mod:`hashlib`, from the framing documented in spec/formats/blob.md, so that
these tests check the model against the document rather than against itself.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import pytest
from conftest import NIC, VM, enable, expected_digest, program_bar
from vpcid.model import Bdf, BlobError, BlobMismatch, DataManager, Profile, VpcidError
from vpcid.model.catalog import A100, E1000, EDU, NVME

HEADER = struct.Struct("<8sHHHH")
SECTION = struct.Struct("<HHI")
DIGEST = 32
BLOB_MAGIC, SNAPSHOT_MAGIC = b"VPCIDBLB", b"VPCIDVMS"
NVME_AT, EDU_AT = Bdf(0, 3, 0), Bdf(0, 4, 0)
E1000_BAR0, E1000_BAR1, E1000_ROM = 0xFEBC_0000, 0xC000, 0xFEB0_0000
EDU_BAR0 = 0xFE00_0000
NVME_BAR0 = 0x1_0000_0000


@dataclass
class Framed:
    """A blob taken apart: header fields and (tag, flags, payload) sections."""

    magic: bytes
    major: int
    minor: int
    reserved: int
    sections: list[tuple[int, int, bytes]]

    def payload(self, tag: int) -> bytes:
        return next(p for t, _, p in self.sections if t == tag)

    def replace(self, tag: int, payload: bytes) -> None:
        self.sections = [(t, f, payload if t == tag else p) for t, f, p in self.sections]


def parse(blob: bytes) -> Framed:
    """Take a blob apart per spec/formats/blob.md, checking its framing strictly."""
    magic, major, minor, count, reserved = HEADER.unpack_from(blob)
    body, digest = blob[:-DIGEST], blob[-DIGEST:]
    pos, sections = HEADER.size, []
    for _ in range(count):
        tag, flags, length = SECTION.unpack_from(body, pos)
        pos += SECTION.size
        sections.append((tag, flags, body[pos : pos + length]))
        pos += length
    assert pos == len(body)
    assert expected_digest(body) == digest
    return Framed(magic, major, minor, reserved, sections)


def frame(
    magic: bytes,
    sections: list[tuple[int, int, bytes]],
    *,
    major: int = 1,
    minor: int = 0,
    reserved: int = 0,
    count: int | None = None,
    trailing: bytes = b"",
    lengths: dict[int, int] | None = None,
) -> bytes:
    """Build a blob by hand; ``lengths`` overrides a section's declared length by position."""
    body = bytearray(HEADER.pack(magic, major, minor, len(sections) if count is None else count, reserved))
    for k, (tag, flags, payload) in enumerate(sections):
        length = (lengths or {}).get(k, len(payload))
        body += SECTION.pack(tag, flags, length) + payload
    body += trailing
    return bytes(body + expected_digest(bytes(body)))


def reframe(f: Framed, **kwargs: object) -> bytes:
    args: dict[str, object] = {"major": f.major, "minor": f.minor, "reserved": f.reserved}
    args.update(kwargs)
    magic = args.pop("magic", f.magic)
    sections = args.pop("sections", f.sections)
    return frame(magic, sections, **args)  # type: ignore[arg-type]


def windows_payload(entries: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack("<BQ", flag, base) for flag, base in entries)


def memory_payload(pages: list[tuple[int, int, bytes]], count: int | None = None) -> bytes:
    out = bytearray(struct.pack("<I", len(pages) if count is None else count))
    for bar, index, content in pages:
        out += struct.pack("<BQ", bar, index) + content
    return bytes(out)


def page(fill: dict[int, int]) -> bytes:
    content = bytearray(4096)
    for offset, value in fill.items():
        content[offset] = value
    return bytes(content)


def state(dm: DataManager) -> tuple[object, ...]:
    return tuple((vm, dm.snapshot(vm), dm.tables(vm), dm.cf8(vm)) for vm in dm.vm_ids())


def programmed_dm(profile: Profile | None = None) -> DataManager:
    """VM 1: an e1000 (BAR0, BAR1, ROM decoding, data written), an EDU and an NVMe."""
    dm = DataManager(profile or Profile())
    dm.create_vm(VM)
    dm.plug(VM, NIC, E1000)
    dm.plug(VM, NVME_AT, NVME)
    dm.plug(VM, EDU_AT, EDU)
    program_bar(dm, VM, EDU_AT, 0, EDU_BAR0)
    enable(dm, VM, EDU_AT)
    program_bar(dm, VM, NIC, 0, E1000_BAR0)
    program_bar(dm, VM, NIC, 1, E1000_BAR1)
    dm.config_write(VM, NIC, 0x30, 4, E1000_ROM | 1)
    enable(dm, VM, NIC)
    program_bar(dm, VM, NVME_AT, 0, NVME_BAR0)
    enable(dm, VM, NVME_AT)
    dm.mmio_write(VM, E1000_BAR0 + 0x1234, 4, 0xDEADBEEF)
    dm.mmio_write(VM, E1000_BAR0 + 0x1_F000, 1, 0x7F)
    dm.io_write(VM, E1000_BAR1 + 8, 2, 0xBEEF)
    dm.mmio_write(VM, EDU_BAR0 + 4, 4, 0x1234_5678)
    dm.mmio_write(VM, EDU_BAR0 + 0x20, 4, 0x80)
    dm.io_write(VM, 0xCF8, 4, 0x8000_1008)
    return dm


@pytest.fixture
def pdm() -> DataManager:
    return programmed_dm()


def assert_blob_rejected(dm: DataManager, blob: object, exc: type[VpcidError] = BlobError) -> None:
    """Restoring ``blob`` into the e1000 raises exactly ``exc``'s kind and changes nothing."""
    before, saved = state(dm), dm.save(VM, NIC)
    with pytest.raises(exc) as info:
        dm.restore(VM, NIC, blob)  # type: ignore[arg-type]
    assert info.value.kind == exc.kind
    assert dm.save(VM, NIC) == saved
    assert state(dm) == before


def assert_snapshot_rejected(dm: DataManager, snap: object, exc: type[VpcidError] = BlobError) -> None:
    """Restoring ``snap`` into VM 1 (existing) and VM 2 (new) is rejected; nothing changes."""
    before = state(dm)
    for vm in (VM, 2):
        with pytest.raises(exc) as info:
            dm.restore_vm(vm, snap)  # type: ignore[arg-type]
        assert info.value.kind == exc.kind
        assert state(dm) == before


# ---------------------------------------------------------------- R-BLOB-001


@pytest.mark.req("R-BLOB-001", "R-BLOB-002")
def test_writer_framing(pdm: DataManager) -> None:
    for blob, magic, tags in (
        (pdm.save(VM, NIC), BLOB_MAGIC, [1, 2, 3, 4, 5]),
        (pdm.save(VM, EDU_AT), BLOB_MAGIC, [1, 2, 3, 4, 5]),
        (pdm.snapshot(VM), SNAPSHOT_MAGIC, [1, 2, 3]),
    ):
        f = parse(blob)
        assert (f.magic, f.major, f.minor, f.reserved) == (magic, 1, 0, 0)
        assert [t for t, _, _ in f.sections] == tags
        assert all(flags == 1 for _, flags, _ in f.sections)  # format 1.0 marks all critical
        assert reframe(f) == blob
        assert blob[-DIGEST:] == expected_digest(blob[:-DIGEST])


@pytest.mark.req("R-BLOB-001")
@pytest.mark.parametrize("value", ["blob", [1, 2, 3], None, 0, 1.5, object()], ids=lambda v: type(v).__name__)
def test_rejects_input_that_is_not_bytes(pdm: DataManager, value: object) -> None:
    assert_blob_rejected(pdm, value)
    assert_snapshot_rejected(pdm, value)


@pytest.mark.req("R-BLOB-001")
def test_rejects_str_of_valid_blob(pdm: DataManager) -> None:
    assert_blob_rejected(pdm, pdm.save(VM, NIC).decode("latin-1"))


@pytest.mark.req("R-BLOB-001")
@pytest.mark.parametrize("length", [0, 1, 8, 15, 16, 31, 47])
def test_rejects_shorter_than_header_and_digest(pdm: DataManager, length: int) -> None:
    assert_blob_rejected(pdm, pdm.save(VM, NIC)[:length])
    assert_snapshot_rejected(pdm, pdm.snapshot(VM)[:length])


@pytest.mark.req("R-BLOB-001")
def test_rejects_truncated_blob(pdm: DataManager) -> None:
    blob, snap = pdm.save(VM, NIC), pdm.snapshot(VM)
    for cut in (1, 2, DIGEST, DIGEST + 1, len(blob) // 2, len(blob) - 48):
        assert_blob_rejected(pdm, blob[:-cut])
    for cut in (1, DIGEST, len(snap) // 2):
        assert_snapshot_rejected(pdm, snap[:-cut])


@pytest.mark.req("R-BLOB-001")
def test_rejects_header_and_digest_only(pdm: DataManager) -> None:
    empty = frame(BLOB_MAGIC, [])
    assert len(empty) == 48
    assert_blob_rejected(pdm, empty)  # no sections at all
    assert_snapshot_rejected(pdm, frame(SNAPSHOT_MAGIC, []))


@pytest.mark.req("R-BLOB-001")
def test_rejects_wrong_magic(pdm: DataManager) -> None:
    blob, snap = pdm.save(VM, NIC), pdm.snapshot(VM)
    assert_blob_rejected(pdm, snap)  # a snapshot is not an instance blob
    assert_snapshot_rejected(pdm, blob)
    for magic in (b"VPCIDBLX", b"vpcidblb", b"\x00" * 8, SNAPSHOT_MAGIC):
        assert_blob_rejected(pdm, reframe(parse(blob), magic=magic))
    for magic in (b"VPCIDVMX", BLOB_MAGIC):
        assert_snapshot_rejected(pdm, reframe(parse(snap), magic=magic))


@pytest.mark.req("R-BLOB-001")
@pytest.mark.parametrize("reserved", [1, 0x80, 0x8000, 0xFFFF])
def test_rejects_nonzero_reserved(pdm: DataManager, reserved: int) -> None:
    assert_blob_rejected(pdm, reframe(parse(pdm.save(VM, NIC)), reserved=reserved))
    assert_snapshot_rejected(pdm, reframe(parse(pdm.snapshot(VM)), reserved=reserved))


@pytest.mark.req("R-BLOB-001")
def test_rejects_digest_mismatch(pdm: DataManager) -> None:
    blob = pdm.save(VM, NIC)
    positions = [0, 9, 12, HEADER.size, HEADER.size + 9, 0x40, len(blob) - DIGEST - 1, len(blob) - 1]
    for pos in positions:
        corrupt = bytearray(blob)
        corrupt[pos] ^= 0x01
        assert_blob_rejected(pdm, bytes(corrupt))
    snap = bytearray(pdm.snapshot(VM))
    snap[len(snap) // 2] ^= 0x80
    assert_snapshot_rejected(pdm, bytes(snap))
    # The complaint shows both digests: 16 digits, or up to the first digit where they differ.
    body, stored = blob[:-DIGEST], blob[-DIGEST:]
    altered = bytearray(body)
    altered[0x40] ^= 0x01
    with pytest.raises(BlobError) as info:
        pdm.restore(VM, NIC, bytes(altered) + stored)
    computed = hashlib.sha256(altered).hexdigest()
    assert f"(SHA-256 mismatch: stored {stored.hex()[:16]}..., computed {computed[:16]}...)" in str(
        info.value
    )
    flipped = stored[:-1] + bytes([stored[-1] ^ 0x01])
    with pytest.raises(BlobError) as info:
        pdm.restore(VM, NIC, body + flipped)
    assert f"stored {flipped.hex()}, computed {stored.hex()})" in str(info.value)


@pytest.mark.req("R-BLOB-001")
def test_rejects_digest_of_other_content(pdm: DataManager) -> None:
    blob = pdm.save(VM, NIC)
    other = pdm.save(VM, EDU_AT)
    assert_blob_rejected(pdm, blob[:-DIGEST] + other[-DIGEST:])
    assert_blob_rejected(pdm, blob[:-DIGEST] + bytes(DIGEST))
    assert_blob_rejected(pdm, blob[:-DIGEST] + hashlib.sha256(blob[:-DIGEST]).digest()[::-1])


@pytest.mark.req("R-BLOB-001")
@pytest.mark.parametrize("position", [0, 2, 4])
@pytest.mark.parametrize("extra", [1, 2, 9, 0xFFFF_FFFF - 0x100], ids=["plus1", "plus2", "plus9", "huge"])
def test_rejects_section_past_end(pdm: DataManager, position: int, extra: int) -> None:
    f = parse(pdm.save(VM, NIC))
    tail = sum(SECTION.size + len(p) for _, _, p in f.sections[position + 1 :])
    declared = len(f.sections[position][2]) + tail + extra
    blob = reframe(f, lengths={position: min(declared, 0xFFFF_FFFF)})
    assert_blob_rejected(pdm, blob)


@pytest.mark.req("R-BLOB-001")
def test_rejects_section_header_past_end(pdm: DataManager) -> None:
    f = parse(pdm.save(VM, NIC))
    assert_blob_rejected(pdm, reframe(f, count=6))
    assert_blob_rejected(pdm, reframe(f, count=0xFFFF))
    assert_blob_rejected(pdm, reframe(f, trailing=b"\x06\x00\x00\x00"))  # half a section header
    s = parse(pdm.snapshot(VM))
    assert_snapshot_rejected(pdm, reframe(s, count=4))


@pytest.mark.req("R-BLOB-001")
@pytest.mark.parametrize(
    "trailing", [b"\x00", b"\xff" * 7, bytes(SECTION.size), bytes(64)], ids=["1", "7", "8", "64"]
)
def test_rejects_trailing_bytes(pdm: DataManager, trailing: bytes) -> None:
    assert_blob_rejected(pdm, reframe(parse(pdm.save(VM, NIC)), trailing=trailing))
    assert_snapshot_rejected(pdm, reframe(parse(pdm.snapshot(VM)), trailing=trailing))


@pytest.mark.req("R-BLOB-001")
def test_rejects_undeclared_last_section(pdm: DataManager) -> None:
    """A section count one short leaves the last section as trailing bytes."""
    assert_blob_rejected(pdm, reframe(parse(pdm.save(VM, NIC)), count=4))
    assert_snapshot_rejected(pdm, reframe(parse(pdm.snapshot(VM)), count=2))


@pytest.mark.req("R-BLOB-001")
def test_rejects_bytes_appended_after_digest(pdm: DataManager) -> None:
    assert_blob_rejected(pdm, pdm.save(VM, NIC) + b"\x00")
    assert_snapshot_rejected(pdm, pdm.snapshot(VM) + b"\x00")


# ---------------------------------------------------------------- R-BLOB-002


@pytest.mark.req("R-BLOB-002")
@pytest.mark.parametrize("major", [0, 2, 3, 0x100, 0xFFFF])
def test_rejects_other_major_version(pdm: DataManager, major: int) -> None:
    assert_blob_rejected(pdm, reframe(parse(pdm.save(VM, NIC)), major=major))
    assert_snapshot_rejected(pdm, reframe(parse(pdm.snapshot(VM)), major=major))


@pytest.mark.req("R-BLOB-002")
@pytest.mark.parametrize("minor", [1, 7, 0xFFFF])
def test_accepts_other_minor_version(pdm: DataManager, minor: int) -> None:
    blob = pdm.save(VM, NIC)
    pdm.restore(VM, NIC, reframe(parse(blob), minor=minor))
    assert pdm.save(VM, NIC) == blob
    snap = pdm.snapshot(VM)
    pdm.restore_vm(2, reframe(parse(snap), minor=minor))
    assert pdm.snapshot(2) == snap


@pytest.mark.req("R-BLOB-002")
@pytest.mark.parametrize("tag", [6, 7, 0x100, 0xFFFF])
@pytest.mark.parametrize("payload", [b"", b"future", bytes(5000)], ids=["empty", "short", "long"])
def test_skips_unknown_noncritical_instance_section(pdm: DataManager, tag: int, payload: bytes) -> None:
    blob = pdm.save(VM, NIC)
    f = parse(blob)
    extended = reframe(f, minor=1, sections=[*f.sections, (tag, 0, payload)])
    target = DataManager()
    target.create_vm(VM)
    target.plug(VM, NIC, E1000)
    target.restore(VM, NIC, extended)
    assert target.save(VM, NIC) == blob
    mine = [e for e in pdm.tables(VM).memory + pdm.tables(VM).io if e.bdf == NIC]
    assert sorted(target.tables(VM).memory + target.tables(VM).io) == sorted(mine)
    assert target.mmio_read(VM, E1000_BAR0 + 0x1234, 4) == 0xDEADBEEF


@pytest.mark.req("R-BLOB-002")
@pytest.mark.parametrize("tag", [5, 6, 0xFFFF])
def test_skips_unknown_noncritical_snapshot_section(pdm: DataManager, tag: int) -> None:
    snap = pdm.snapshot(VM)
    f = parse(snap)
    extended = reframe(f, minor=3, sections=[*f.sections, (tag, 0, b"\x01\x02\x03")])
    pdm.restore_vm(2, extended)
    assert pdm.snapshot(2) == snap


@pytest.mark.req("R-BLOB-002")
def test_skips_several_unknown_noncritical_sections(pdm: DataManager) -> None:
    blob = pdm.save(VM, NIC)
    f = parse(blob)
    extended = reframe(f, minor=2, sections=[*f.sections, (6, 0, b"a"), (9, 0, b"bc"), (200, 0, b"")])
    pdm.restore(VM, NIC, extended)
    assert pdm.save(VM, NIC) == blob


@pytest.mark.req("R-BLOB-002")
@pytest.mark.parametrize("tag", [6, 0x100, 0xFFFF])
def test_rejects_unknown_critical_section(pdm: DataManager, tag: int) -> None:
    f = parse(pdm.save(VM, NIC))
    assert_blob_rejected(pdm, reframe(f, minor=1, sections=[*f.sections, (tag, 1, b"must-know")]))
    s = parse(pdm.snapshot(VM))
    assert_snapshot_rejected(pdm, reframe(s, minor=1, sections=[*s.sections, (tag, 1, b"")]))


@pytest.mark.req("R-BLOB-002")
@pytest.mark.parametrize(
    "order",
    [[2, 1, 3, 4, 5], [1, 2, 3, 5, 4], [5, 4, 3, 2, 1], [1, 3, 2, 4, 5]],
    ids=["swap-1-2", "swap-4-5", "reversed", "swap-2-3"],
)
def test_rejects_out_of_order_tags(pdm: DataManager, order: list[int]) -> None:
    f = parse(pdm.save(VM, NIC))
    by_tag = {t: (t, fl, p) for t, fl, p in f.sections}
    assert_blob_rejected(pdm, reframe(f, sections=[by_tag[t] for t in order]))


@pytest.mark.req("R-BLOB-002")
def test_rejects_repeated_tag(pdm: DataManager) -> None:
    f = parse(pdm.save(VM, NIC))
    assert_blob_rejected(pdm, reframe(f, sections=[*f.sections[:3], f.sections[2], *f.sections[3:]]))
    assert_blob_rejected(pdm, reframe(f, sections=[*f.sections, f.sections[-1]]))
    s = parse(pdm.snapshot(VM))
    assert_snapshot_rejected(pdm, reframe(s, sections=[s.sections[1], s.sections[0], s.sections[2]]))
    assert_snapshot_rejected(pdm, reframe(s, sections=[s.sections[0], s.sections[0], *s.sections[1:]]))


@pytest.mark.req("R-BLOB-002")
def test_rejects_unknown_section_out_of_order(pdm: DataManager) -> None:
    """An unknown non-critical section must still respect ascending tags."""
    f = parse(pdm.save(VM, NIC))
    assert_blob_rejected(pdm, reframe(f, minor=1, sections=[(9, 0, b"x"), *f.sections]))
    assert_blob_rejected(pdm, reframe(f, minor=1, sections=[*f.sections, (9, 0, b""), (8, 0, b"")]))


# ---------------------------------------------------------------- R-BLOB-003


@pytest.mark.req("R-BLOB-003")
def test_instance_sections_of_e1000(pdm: DataManager) -> None:
    f = parse(pdm.save(VM, NIC))
    assert [t for t, _, _ in f.sections] == [1, 2, 3, 4, 5]
    assert f.payload(1) == bytes([5]) + b"e1000" + E1000.fingerprint()
    config = b"".join(pdm.config_read(VM, NIC, o, 4).to_bytes(4, "little") for o in range(0, 0x100, 4))
    assert f.payload(2) == config
    assert len(config) == 256
    assert f.payload(3) == windows_payload(
        [(1, E1000_BAR0), (1, E1000_BAR1), (0, 0), (0, 0), (0, 0), (0, 0), (1, E1000_ROM)]
    )
    assert len(f.payload(3)) == 7 * 9
    expected_pages = [
        (0, 1, page({0x234: 0xEF, 0x235: 0xBE, 0x236: 0xAD, 0x237: 0xDE})),
        (0, 0x1F, page({0: 0x7F})),
        (1, 0, page({8: 0xEF, 9: 0xBE})),
    ]
    assert f.payload(4) == memory_payload(expected_pages)
    assert f.payload(5) == b""


@pytest.mark.req("R-BLOB-003")
def test_instance_sections_of_edu(pdm: DataManager) -> None:
    f = parse(pdm.save(VM, EDU_AT))
    assert f.payload(1) == bytes([3]) + b"edu" + EDU.fingerprint()
    assert f.payload(3) == windows_payload([(1, EDU_BAR0)] + [(0, 0)] * 6)
    assert f.payload(4) == struct.pack("<I", 0)
    assert f.payload(5) == struct.pack("<II", ~0x1234_5678 & 0xFFFF_FFFF, 0x80)  # liveness as read


@pytest.mark.req("R-BLOB-003")
def test_instance_sections_of_express_device(pdm: DataManager) -> None:
    pdm.mmio_write(VM, NVME_BAR0 + 0x3FF8, 8, 0x0102_0304_0506_0708)
    f = parse(pdm.save(VM, NVME_AT))
    assert f.payload(1) == bytes([4]) + b"nvme" + NVME.fingerprint()
    assert len(f.payload(2)) == 4096
    assert f.payload(2)[:4] == struct.pack("<HH", 0x144D, 0xA808)
    assert f.payload(3) == windows_payload([(1, NVME_BAR0)] + [(0, 0)] * 6)
    masks = {0x00C + 16 * vector: 1 for vector in range(33)}  # MSI-X Vector Control mask bits (R-IRQ-003)
    assert f.payload(4) == memory_payload([(0, 3, page(masks | {0xFF8 + k: 8 - k for k in range(8)}))])


@pytest.mark.req("R-BLOB-003")
def test_instance_window_of_64bit_bar_above_4g() -> None:
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, NIC, A100)
    program_bar(dm, VM, NIC, 1, 0xFF_0000_0000 // (64 << 30) * (64 << 30))
    program_bar(dm, VM, NIC, 3, 0x7E_0000_0000)
    enable(dm, VM, NIC, 0x2)
    far = (64 << 30) - 4096
    base1 = 0xFF_0000_0000 // (64 << 30) * (64 << 30)
    dm.mmio_write(VM, base1 + far, 1, 0x5A)
    f = parse(dm.save(VM, NIC))
    assert f.payload(3) == windows_payload(
        [(0, 0), (1, base1), (0, 0), (1, 0x7E_0000_0000), (0, 0), (0, 0), (0, 0)]
    )
    assert f.payload(4) == memory_payload([(1, far // 4096, page({0: 0x5A}))])


def _instance_sections(pdm: DataManager) -> Framed:
    return parse(pdm.save(VM, NIC))


@pytest.mark.req("R-BLOB-003")
@pytest.mark.parametrize("missing", [1, 2, 3, 4, 5])
def test_rejects_missing_instance_section(pdm: DataManager, missing: int) -> None:
    f = _instance_sections(pdm)
    assert_blob_rejected(pdm, reframe(f, sections=[s for s in f.sections if s[0] != missing]))


@pytest.mark.req("R-BLOB-003")
def test_rejects_malformed_type_section(pdm: DataManager) -> None:
    f = _instance_sections(pdm)
    fingerprint = E1000.fingerprint()
    for payload in (
        b"",
        bytes([6]) + b"e1000" + fingerprint,  # name length says 6
        bytes([4]) + b"e1000" + fingerprint,
        bytes([5]) + b"e1000" + fingerprint[:-1],
        bytes([5]) + b"e1000" + fingerprint + b"\x00",
        bytes([2]) + b"\xff\xfe" + fingerprint,  # not UTF-8
    ):
        f2 = _instance_sections(pdm)
        f2.replace(1, payload)
        assert_blob_rejected(pdm, reframe(f2))
    assert f.payload(1) == bytes([5]) + b"e1000" + fingerprint


@pytest.mark.req("R-BLOB-003")
@pytest.mark.parametrize("size", [0, 255, 257, 512, 4095, 4097])
def test_rejects_config_section_of_other_size(pdm: DataManager, size: int) -> None:
    f = _instance_sections(pdm)
    f.replace(2, (f.payload(2) * 17)[:size])
    assert_blob_rejected(pdm, reframe(f))


@pytest.mark.req("R-BLOB-003")
@pytest.mark.parametrize("size", [0, 9, 62, 64, 9 * 8])
def test_rejects_windows_section_of_other_size(pdm: DataManager, size: int) -> None:
    f = _instance_sections(pdm)
    f.replace(3, (f.payload(3) + bytes(20))[:size])
    assert_blob_rejected(pdm, reframe(f))


@pytest.mark.req("R-BLOB-003")
def test_rejects_malformed_memory_section(pdm: DataManager) -> None:
    good = [(0, 1, page({0: 1}))]
    for payload in (
        b"",
        b"\x00\x00\x00",
        memory_payload(good, count=2),
        memory_payload(good, count=0),
        memory_payload(good)[:-1],
        memory_payload(good) + b"\x00",
        memory_payload([(0, 1, page({0: 1})[:-1])]),
    ):
        f = _instance_sections(pdm)
        f.replace(4, payload)
        assert_blob_rejected(pdm, reframe(f))
    # The complaint gives the section's length and the length its page count implies.
    for payload, complaint in (
        (b"\x00\x00\x00", "memory section is truncated (3 bytes, its page count takes 4)"),
        (
            memory_payload(good, count=2),
            "does not match its page count: 4109 bytes, 2 pages of 4105 take 8214",
        ),
        (memory_payload(good, count=0), "does not match its page count: 4109 bytes, 0 pages of 4105 take 4"),
    ):
        f = _instance_sections(pdm)
        f.replace(4, payload)
        with pytest.raises(BlobError) as info:
            pdm.restore(VM, NIC, reframe(f))
        assert complaint in str(info.value)


@pytest.mark.req("R-BLOB-003")
def test_memory_pages_hold_bar_contents_by_offset(pdm: DataManager) -> None:
    """A crafted page appears in the BAR at ``page index * 4096`` from its base."""
    f = _instance_sections(pdm)
    f.replace(4, memory_payload([(0, 5, page({0: 0x11, 0xFFF: 0x22})), (1, 0, page({63: 0x33}))]))
    pdm.restore(VM, NIC, reframe(f))
    assert pdm.mmio_read(VM, E1000_BAR0 + 5 * 4096, 1) == 0x11
    assert pdm.mmio_read(VM, E1000_BAR0 + 6 * 4096 - 1, 1) == 0x22
    assert pdm.mmio_read(VM, E1000_BAR0 + 0x1234, 4) == 0
    assert pdm.io_read(VM, E1000_BAR1 + 63, 1) == 0x33


# ---------------------------------------------------------------- R-BLOB-004


def _fresh_e1000() -> DataManager:
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, NIC, 0, E1000_BAR0)
    enable(dm, VM, NIC, 0x2)
    return dm


@pytest.mark.req("R-BLOB-004")
def test_equal_state_gives_equal_bytes() -> None:
    simple = _fresh_e1000()
    simple.mmio_write(VM, E1000_BAR0 + 0x100, 4, 0xAB)
    winding = DataManager()
    winding.create_vm(VM)
    winding.plug(VM, NIC, E1000)
    program_bar(winding, VM, NIC, 0, 0xE000_0000)
    enable(winding, VM, NIC, 0x3)
    winding.mmio_write(VM, 0xE000_0000 + 0x1_0000, 8, (1 << 64) - 1)  # later zeroed again
    winding.mmio_write(VM, 0xE000_0000 + 0x100, 4, 0xAB)
    winding.mmio_write(VM, 0xE000_0000 + 0x1_0000, 8, 0)
    winding.config_write(VM, NIC, 0x0C, 1, 0x40)
    winding.config_write(VM, NIC, 0x0C, 1, 0x00)
    enable(winding, VM, NIC, 0x0)
    program_bar(winding, VM, NIC, 0, E1000_BAR0)
    enable(winding, VM, NIC, 0x2)
    assert winding.save(VM, NIC) == simple.save(VM, NIC)


@pytest.mark.req("R-BLOB-004")
def test_pages_in_ascending_order_whatever_the_write_order() -> None:
    forward, backward = _fresh_e1000(), _fresh_e1000()
    for dm in (forward, backward):
        program_bar(dm, VM, NIC, 1, E1000_BAR1)
        enable(dm, VM, NIC, 0x3)
    offsets = [0x1_F000, 0x3000, 0x0, 0x1_0000]
    for offset in offsets:
        forward.mmio_write(VM, E1000_BAR0 + offset, 1, 1)
    forward.io_write(VM, E1000_BAR1, 1, 1)
    backward.io_write(VM, E1000_BAR1, 1, 1)
    for offset in reversed(offsets):
        backward.mmio_write(VM, E1000_BAR0 + offset, 1, 1)
    assert forward.save(VM, NIC) == backward.save(VM, NIC)
    mem = parse(forward.save(VM, NIC)).payload(4)
    (count,) = struct.unpack_from("<I", mem)
    keys = [struct.unpack_from("<BQ", mem, 4 + k * (9 + 4096)) for k in range(count)]
    assert keys == [(0, 0), (0, 3), (0, 0x10), (0, 0x1F), (1, 0)]


@pytest.mark.req("R-BLOB-004")
def test_zeroed_page_is_not_stored() -> None:
    dm = _fresh_e1000()
    blank = dm.save(VM, NIC)
    dm.mmio_write(VM, E1000_BAR0 + 0x2000, 8, 0x1234)
    assert dm.save(VM, NIC) != blank
    dm.mmio_write(VM, E1000_BAR0 + 0x2000, 8, 0)
    assert dm.save(VM, NIC) == blank
    assert parse(blank).payload(4) == struct.pack("<I", 0)


@pytest.mark.req("R-BLOB-004")
def test_non_decoding_window_has_base_zero() -> None:
    dm = _fresh_e1000()
    program_bar(dm, VM, NIC, 1, E1000_BAR1)  # programmed, I/O decode off
    dm.config_write(VM, NIC, 0x30, 4, E1000_ROM)  # programmed, ROM enable off
    windows = parse(dm.save(VM, NIC)).payload(3)
    assert windows == windows_payload([(1, E1000_BAR0)] + [(0, 0)] * 6)
    enable(dm, VM, NIC, 0x0)
    assert parse(dm.save(VM, NIC)).payload(3) == bytes(63)


@pytest.mark.req("R-BLOB-004")
def test_fingerprint_is_the_device_types() -> None:
    for dtype in (E1000, NVME, EDU, A100):
        dm = DataManager()
        dm.create_vm(VM)
        dm.plug(VM, NIC, dtype)
        name = dtype.name.encode()
        assert parse(dm.save(VM, NIC)).payload(1) == bytes([len(name)]) + name + dtype.fingerprint()


@pytest.mark.req("R-BLOB-004")
def test_rejects_all_zero_page(pdm: DataManager) -> None:
    f = _instance_sections(pdm)
    f.replace(4, memory_payload([(0, 1, page({0x234: 0xEF})), (0, 2, bytes(4096))]))
    assert_blob_rejected(pdm, reframe(f))
    f.replace(4, memory_payload([(0, 0, bytes(4096))]))
    assert_blob_rejected(pdm, reframe(f))


@pytest.mark.req("R-BLOB-004")
@pytest.mark.parametrize(
    "keys",
    [[(0, 2), (0, 1)], [(1, 0), (0, 1)], [(0, 1), (0, 1)], [(0, 5), (0, 1), (0, 9)]],
    ids=["page-descending", "bar-descending", "duplicate", "unsorted-three"],
)
def test_rejects_unordered_pages(pdm: DataManager, keys: list[tuple[int, int]]) -> None:
    f = _instance_sections(pdm)
    f.replace(4, memory_payload([(bar, index, page({0: 1})) for bar, index in keys]))
    assert_blob_rejected(pdm, reframe(f))


@pytest.mark.req("R-BLOB-004")
@pytest.mark.parametrize(
    ("slot", "flag", "base"), [(2, 0, 0x1000), (6, 0, 1), (0, 0, E1000_BAR0), (0, 2, E1000_BAR0)]
)
def test_rejects_noncanonical_window(pdm: DataManager, slot: int, flag: int, base: int) -> None:
    f = _instance_sections(pdm)
    raw = bytearray(f.payload(3))
    raw[9 * slot : 9 * slot + 9] = struct.pack("<BQ", flag, base)
    f.replace(3, bytes(raw))
    assert_blob_rejected(pdm, reframe(f))


@pytest.mark.req("R-BLOB-004")
def test_accepted_blobs_are_canonical(pdm: DataManager) -> None:
    """A crafted canonical blob is accepted and saved back byte for byte."""
    f = _instance_sections(pdm)
    f.replace(4, memory_payload([(0, 0, page({1: 1})), (0, 31, page({4095: 9})), (1, 0, page({0: 3}))]))
    crafted = reframe(f)
    pdm.restore(VM, NIC, crafted)
    assert pdm.save(VM, NIC) == crafted


# ---------------------------------------------------------------- R-BLOB-005


@pytest.mark.req("R-BLOB-005")
def test_snapshot_sections(pdm: DataManager) -> None:
    f = parse(pdm.snapshot(VM))
    assert [t for t, _, _ in f.sections] == [1, 2, 3]
    assert f.payload(1) == struct.pack("<BQI", 1, 0xB000_0000, 0x8000_1008)
    devices = bytearray(struct.pack("<I", 3))
    for bdf in (NIC, NVME_AT, EDU_AT):
        blob = pdm.save(VM, bdf)
        devices += struct.pack("<HI", bdf.packed, len(blob)) + blob
    assert f.payload(2) == bytes(devices)
    order = [(EDU_AT, 0), (NIC, 0), (NIC, 1), (NIC, 6), (NVME_AT, 0)]
    assert f.payload(3) == struct.pack("<I", 5) + b"".join(struct.pack("<HB", b.packed, i) for b, i in order)


@pytest.mark.req("R-BLOB-005")
def test_snapshot_bdf_packing() -> None:
    dm = DataManager()
    dm.create_vm(VM, ecam_base=None)
    dm.plug(VM, Bdf(0xAB, 0x1F, 7), EDU)
    dm.plug(VM, Bdf(0x01, 0x02, 3), EDU)
    devices = parse(dm.snapshot(VM)).payload(2)
    first = struct.unpack_from("<H", devices, 4)[0]
    assert first == 0x01 << 8 | 0x02 << 3 | 3
    assert parse(dm.snapshot(VM)).payload(1) == struct.pack("<BQI", 0, 0, 0)


@pytest.mark.req("R-BLOB-005")
def test_snapshot_of_empty_vm() -> None:
    dm = DataManager()
    dm.create_vm(VM, ecam_base=0xC000_0000)
    f = parse(dm.snapshot(VM))
    assert f.payload(1) == struct.pack("<BQI", 1, 0xC000_0000, 0)
    assert f.payload(2) == struct.pack("<I", 0)
    assert f.payload(3) == struct.pack("<I", 0)


def _snapshot_parts(pdm: DataManager) -> tuple[Framed, list[tuple[int, bytes]]]:
    f = parse(pdm.snapshot(VM))
    dev = f.payload(2)
    (count,) = struct.unpack_from("<I", dev)
    pos, devices = 4, []
    for _ in range(count):
        packed, length = struct.unpack_from("<HI", dev, pos)
        devices.append((packed, dev[pos + 6 : pos + 6 + length]))
        pos += 6 + length
    return f, devices


def _devices_payload(devices: list[tuple[int, bytes]], count: int | None = None) -> bytes:
    out = bytearray(struct.pack("<I", len(devices) if count is None else count))
    for packed, blob in devices:
        out += struct.pack("<HI", packed, len(blob)) + blob
    return bytes(out)


@pytest.mark.req("R-BLOB-005")
def test_rejects_devices_out_of_bdf_order(pdm: DataManager) -> None:
    f, devices = _snapshot_parts(pdm)
    for bad in (devices[::-1], [devices[1], devices[0], devices[2]], [devices[0], devices[0], *devices[1:]]):
        f.replace(2, _devices_payload(bad))
        assert_snapshot_rejected(pdm, reframe(f))


@pytest.mark.req("R-BLOB-005")
def test_rejects_malformed_device_section(pdm: DataManager) -> None:
    f, devices = _snapshot_parts(pdm)
    good = _devices_payload(devices)
    for payload in (
        b"",
        b"\x01\x00",
        _devices_payload(devices, count=4),
        _devices_payload(devices, count=2),
        good[:-1],
        good + b"\x00",
        good[:4] + good[4:6] + struct.pack("<I", 0xFFFF_FFF0) + good[10:],
    ):
        f.replace(2, payload)
        assert_snapshot_rejected(pdm, reframe(f))


@pytest.mark.req("R-BLOB-005")
def test_rejects_corrupt_device_blob_inside_snapshot(pdm: DataManager) -> None:
    f, devices = _snapshot_parts(pdm)
    packed, blob = devices[1]
    corrupt = bytearray(blob)
    corrupt[20] ^= 1
    devices[1] = (packed, bytes(corrupt))
    f.replace(2, _devices_payload(devices))
    assert_snapshot_rejected(pdm, reframe(f))


@pytest.mark.req("R-BLOB-005")
@pytest.mark.parametrize(
    "vm_section",
    [
        struct.pack("<BQI", 2, 0xB000_0000, 0),  # has_ecam not 0 or 1
        struct.pack("<BQI", 0, 0xB000_0000, 0),  # no ECAM but a base
        struct.pack("<BQI", 1, 0xB000_1000, 0),  # not aligned to 256 MiB
        struct.pack("<BQI", 1, (1 << 64) - (1 << 28) + (1 << 28) // 2, 0),
        struct.pack("<BQ", 1, 0xB000_0000),  # too short
        struct.pack("<BQIB", 1, 0xB000_0000, 0, 0),  # too long
    ],
    ids=["has-ecam-2", "base-without-ecam", "misaligned", "misaligned-top", "short", "long"],
)
def test_rejects_bad_vm_section(pdm: DataManager, vm_section: bytes) -> None:
    f = parse(pdm.snapshot(VM))
    f.replace(1, vm_section)
    assert_snapshot_rejected(pdm, reframe(f))


@pytest.mark.req("R-BLOB-005")
def test_accepts_vm_section_at_top_of_address_space() -> None:
    dm = DataManager()
    dm.create_vm(VM, ecam_base=(1 << 64) - (1 << 28))
    snap = dm.snapshot(VM)
    assert parse(snap).payload(1) == struct.pack("<BQI", 1, (1 << 64) - (1 << 28), 0)
    other = DataManager()
    other.restore_vm(VM, snap)
    assert other.snapshot(VM) == snap


@pytest.mark.req("R-BLOB-005")
def test_rejects_malformed_map_order_section(pdm: DataManager) -> None:
    f = parse(pdm.snapshot(VM))
    good = f.payload(3)
    for payload in (b"", b"\x05\x00", good[:-1], good + b"\x00", struct.pack("<I", 6) + good[4:]):
        f.replace(3, payload)
        assert_snapshot_rejected(pdm, reframe(f))
    # The complaint gives the section's length and the length its count implies.
    for payload, complaint in (
        (b"\x05\x00", "map-order section is truncated (2 bytes, its count takes 4)"),
        (struct.pack("<I", 6) + good[4:], f"{len(good)} bytes, 6 entries of 3 take 22"),
    ):
        f.replace(3, payload)
        with pytest.raises(BlobError) as info:
            pdm.restore_vm(VM, reframe(f))
        assert complaint in str(info.value)


@pytest.mark.req("R-BLOB-005", "R-SR-006")
def test_rejects_map_order_not_matching_decoding_bars(pdm: DataManager) -> None:
    f = parse(pdm.snapshot(VM))
    good = f.payload(3)
    (count,) = struct.unpack_from("<I", good)
    entries = [good[4 + 3 * k : 7 + 3 * k] for k in range(count)]
    extra = struct.pack("<HB", NIC.packed, 2)  # BAR2 of the e1000 is not implemented
    last = struct.unpack("<HB", entries[-1])
    first = struct.unpack("<HB", entries[0])
    lowest = min(struct.unpack("<HB", e) for e in entries)  # the complaint lists BARs in BDF order
    for bad, complaint in (
        (entries[:-1], f": 1 missing: {Bdf.unpack(last[0])} BAR {last[1]}"),
        ([*entries, extra], f": 1 extra: {NIC} BAR 2"),
        ([*entries, entries[0]], f": 1 repeated: {Bdf.unpack(first[0])} BAR {first[1]}"),
        ([struct.pack("<HB", 0x77, 0)], f": {count} missing: {Bdf.unpack(lowest[0])} BAR {lowest[1]}, "),
        ([struct.pack("<HB", 0x77, 0)], f", ...; 1 extra: {Bdf.unpack(0x77)} BAR 0"),  # at most 4 shown
    ):
        f.replace(3, struct.pack("<I", len(bad)) + b"".join(bad))
        before = state(pdm)
        with pytest.raises(BlobError) as info:
            pdm.restore_vm(VM, reframe(f))
        assert info.value.kind in (BlobError.kind, BlobMismatch.kind)
        assert "does not list exactly the decoding BARs: " in str(info.value)
        assert complaint in str(info.value)
        assert state(pdm) == before


# ---------------------------------------------------------------- R-BLOB-006


def device_entries(devices: bytes) -> list[tuple[int, bytes]]:
    """(packed BDF, instance blob) of a well-formed devices section."""
    entries, pos = [], 4
    for _ in range(struct.unpack_from("<I", devices)[0]):
        packed, length = struct.unpack_from("<HI", devices, pos)
        entries.append((packed, devices[pos + 6 : pos + 6 + length]))
        pos += 6 + length
    return entries


def devices_payload(entries: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(struct.pack("<I", len(entries)))
    for packed, blob in entries:
        out += struct.pack("<HI", packed, len(blob)) + blob
    return bytes(out)


@pytest.mark.req("R-BLOB-006")
def test_snapshot_digest_hashes_instance_digests_not_instance_bytes(pdm: DataManager) -> None:
    snap = pdm.snapshot(VM)
    body = snap[:-DIGEST]
    devices = parse(snap).payload(2)
    entries = device_entries(devices)
    start = body.index(devices)
    hashed = bytearray(devices[:4])
    for packed, blob in entries:
        hashed += struct.pack("<HI", packed, len(blob)) + blob[-DIGEST:]
    assert len(entries) == 3
    assert snap[-DIGEST:] == hashlib.sha256(body[:start] + hashed + body[start + len(devices) :]).digest()
    assert snap[-DIGEST:] != hashlib.sha256(body).digest()


@pytest.mark.req("R-BLOB-006", "R-BLOB-001")
def test_rejects_snapshot_with_a_digest_over_every_byte(pdm: DataManager) -> None:
    snap = pdm.snapshot(VM)
    assert_snapshot_rejected(pdm, snap[:-DIGEST] + hashlib.sha256(snap[:-DIGEST]).digest())


@pytest.mark.req("R-BLOB-006", "R-BLOB-001", "R-SR-007")
def test_rejects_instance_blob_altered_under_its_digest(pdm: DataManager) -> None:
    """The snapshot's digest still matches; the instance blob's own digest does not."""
    f = parse(pdm.snapshot(VM))
    entries = device_entries(f.payload(2))
    for k, (packed, blob) in enumerate(entries):
        altered = bytearray(blob)
        altered[len(altered) // 2] ^= 0x40
        f.replace(2, devices_payload([*entries[:k], (packed, bytes(altered)), *entries[k + 1 :]]))
        crafted = reframe(f)
        assert crafted[-DIGEST:] == pdm.snapshot(VM)[-DIGEST:]  # the tree covers only the blob's digest
        assert_snapshot_rejected(pdm, crafted)


@pytest.mark.req("R-BLOB-006")
def test_resealed_instance_blob_changes_the_snapshot_digest(pdm: DataManager) -> None:
    """An instance blob changed and sealed again is a new, valid snapshot with a new digest."""
    snap = pdm.snapshot(VM)
    f = parse(snap)
    entries = device_entries(f.payload(2))
    blob = parse(entries[0][1])
    config = bytearray(blob.payload(2))
    config[0x3C] ^= 0x01  # interrupt line: read-write, no side effects
    blob.replace(2, bytes(config))
    f.replace(2, devices_payload([(entries[0][0], reframe(blob)), *entries[1:]]))
    crafted = reframe(f)
    assert crafted[-DIGEST:] != snap[-DIGEST:]
    other = DataManager()
    for dtype in (E1000, NVME, EDU):
        other.register_type(dtype)
    other.restore_vm(VM, crafted)
    assert other.snapshot(VM) == crafted
