"""The data blob and VM snapshot formats (R-BLOB-*); prose in spec/formats/blob.md.

Both are canonical: equal state always encodes to equal bytes. Both are
versioned, made of tagged sections, and end in a SHA-256 digest of what
precedes; a snapshot's digest takes each instance blob by that blob's own
digest (a hash tree of depth two, R-BLOB-006).
Hand-written with :mod:`struct` rather than a serialisation library because
the byte layout itself is normative: any implementation, in any language,
must produce exactly these bytes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from vpcid.model.behaviour import PAGE_SIZE
from vpcid.model.errors import BlobError

BLOB_MAGIC = b"VPCIDBLB"
SNAPSHOT_MAGIC = b"VPCIDVMS"
FORMAT_MAJOR, FORMAT_MINOR = 1, 0
WINDOW_SLOTS = 7
"""BAR0-5 and the ROM."""

CRITICAL = 0x1
"""Section flag: a reader that does not know the tag must reject the blob (R-BLOB-002)."""

TAG_TYPE, TAG_CONFIG, TAG_WINDOWS, TAG_MEMORY, TAG_EXTRA = 1, 2, 3, 4, 5
TAG_VM, TAG_DEVICE, TAG_MAP_ORDER, TAG_TOPOLOGY = 1, 2, 3, 4
NO_PARENT = 0xFFFF_FFFF
"""Topology entry of an instance on a root bus (R-BLOB-008)."""

_HEADER = struct.Struct("<8sHHHH")  # magic, major, minor, section count, reserved
_SECTION = struct.Struct("<HHI")  # tag, flags, length
_WINDOW = struct.Struct("<BQ")  # decodes?, base
_PAGE = struct.Struct("<BQ")  # BAR, page index
_DIGEST = 32


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """Decoded content of an instance blob (R-BLOB-003)."""

    type_name: str
    fingerprint: bytes
    config: bytes
    windows: tuple[int | None, ...]
    pages: tuple[tuple[int, int, bytes], ...]
    """(BAR index, page index, PAGE_SIZE bytes), ascending, no all-zero page."""
    extra: bytes


@dataclass(frozen=True, slots=True)
class VmRecord:
    """Decoded content of a VM snapshot (R-BLOB-005)."""

    ecam_base: int | None
    cf8: int
    devices: tuple[tuple[int, bytes], ...]
    """(packed BDF, instance blob), ascending by BDF; with a topology, in tree pre-order, the BDF of an
    instance below a bridge with bus byte 0 (R-BLOB-007)."""
    map_order: tuple[tuple[int, int], ...]
    """(packed BDF, BAR index) of every decoding BAR, oldest mapping first; with a topology, (index in
    ``devices``, BAR index) (R-BLOB-008)."""
    parents: tuple[int | None, ...] | None = None
    """For a VM with bridges: each device's bridge as an index into ``devices``, None on a root bus."""


def _device_entries(dev: bytes, what: str) -> list[tuple[int, int, int]]:
    """(packed BDF, start, end) of each instance blob in a snapshot's devices section (R-BLOB-005)."""
    if len(dev) < 4:
        raise BlobError(f"{what} device section is truncated")
    (count,) = struct.unpack_from("<I", dev)
    pos, entries = 4, list[tuple[int, int, int]]()
    for _ in range(count):
        if pos + 6 > len(dev):
            raise BlobError(f"{what} device entry runs past the end")
        packed, length = struct.unpack_from("<HI", dev, pos)
        if pos + 6 + length > len(dev):
            raise BlobError(f"{what} device blob runs past the end")
        entries.append((packed, pos + 6, pos + 6 + length))
        pos += 6 + length
    if pos != len(dev):
        raise BlobError(f"{what} device section has trailing bytes")
    return entries


def _hashed_devices(dev: bytes, what: str) -> bytes:
    """The devices section as the snapshot's digest covers it: each blob by its own digest (R-BLOB-006)."""
    hashed, last = bytearray(), 0
    for _, start, end in _device_entries(dev, what):
        hashed += dev[last:start] + dev[max(start, end - _DIGEST) : end]
        last = end
    return bytes(hashed + dev[last:])


def digest_of(body: bytes, devices: tuple[int, int] | None, what: str) -> bytes:
    """The digest field for ``body`` (R-BLOB-001); a snapshot's covers its instances' digests (R-BLOB-006).

    ``devices`` is the span of a snapshot's devices section in ``body``, None for an instance blob.
    """
    if devices is None:
        return hashlib.sha256(body).digest()
    start, end = devices
    return hashlib.sha256(body[:start] + _hashed_devices(body[start:end], what) + body[end:]).digest()


def frame(
    magic: bytes,
    sections: list[tuple[int, int, bytes]],
    *,
    major: int = FORMAT_MAJOR,
    minor: int = FORMAT_MINOR,
    count: int | None = None,
    reserved: int = 0,
) -> bytes:
    """Frame ``(tag, flags, payload)`` sections and append the digest (R-BLOB-001, R-BLOB-006).

    The header fields can be set to any value, so tests and conformance cases
    craft blobs that break exactly one rule.
    """
    body = bytearray(_HEADER.pack(magic, major, minor, len(sections) if count is None else count, reserved))
    devices = None
    for tag, flags, payload in sections:
        body += _SECTION.pack(tag, flags, len(payload))
        if magic == SNAPSHOT_MAGIC and tag == TAG_DEVICE:
            devices = (len(body), len(body) + len(payload))
        body += payload
    return bytes(body + digest_of(bytes(body), devices, "blob"))


def _unframe(
    magic: bytes, blob: bytes, known: set[int], what: str, optional: frozenset[int] = frozenset()
) -> dict[int, bytes]:
    """Check framing and digest; return the known sections by tag (R-BLOB-001, R-BLOB-002, R-BLOB-006)."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise BlobError(f"{what} must be bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < _HEADER.size + _DIGEST:
        raise BlobError(f"{what} is truncated ({len(blob)} bytes)")
    got_magic, major, _minor, count, reserved = _HEADER.unpack_from(blob)
    if got_magic != magic:
        raise BlobError(f"not a {what} (magic {got_magic!r})")
    if major != FORMAT_MAJOR:
        raise BlobError(f"{what} format {major}.x is not supported (this reader: {FORMAT_MAJOR}.x)")
    if reserved:
        raise BlobError(f"{what} header reserved field is not zero")
    body, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    sections: dict[int, bytes] = {}
    devices = None
    pos, last_tag, size = _HEADER.size, 0, len(body)
    for _ in range(count):
        if pos + _SECTION.size > size:
            raise BlobError(f"{what} section header runs past the end")
        tag, flags, length = _SECTION.unpack_from(body, pos)
        pos += _SECTION.size
        if tag <= last_tag:
            raise BlobError(f"{what} sections out of order at tag {tag}")
        if flags & ~CRITICAL:
            raise BlobError(f"{what} section {tag} has unknown flags {flags:#x}")
        if pos + length > size:
            raise BlobError(f"{what} section {tag} runs past the end")
        if tag in known:
            sections[tag] = body[pos : pos + length]
            if magic == SNAPSHOT_MAGIC and tag == TAG_DEVICE:
                devices = (pos, pos + length)
        elif flags & CRITICAL:
            raise BlobError(f"{what} has critical section {tag} this reader does not know")
        pos, last_tag = pos + length, tag
    if pos != size:
        raise BlobError(f"{what} has {size - pos} trailing bytes")
    missing = known - set(sections) - optional
    if missing:
        raise BlobError(f"{what} lacks section(s) {sorted(missing)}")
    computed = digest_of(body, devices, what)
    if computed != digest:
        raise BlobError(
            f"{what} integrity check failed (SHA-256 mismatch: stored {_digest_text(digest, computed)}, "
            f"computed {_digest_text(computed, digest)})"
        )
    return sections


def _digest_text(digest: bytes, other: bytes) -> str:
    """``digest`` in hex for a message: 16 digits, or up to the first that differs from ``other``."""
    shown, full = digest.hex(), other.hex()
    first = next((k for k in range(len(shown)) if shown[k] != full[k : k + 1]), len(shown))
    end = max(16, first + 1)
    return shown[:end] + ("..." if end < len(shown) else "")


def encode_instance(rec: InstanceRecord) -> bytes:
    """Canonical bytes of an instance blob (R-BLOB-003, R-BLOB-004)."""
    name = rec.type_name.encode()
    windows = b"".join(_WINDOW.pack(0, 0) if w is None else _WINDOW.pack(1, w) for w in rec.windows)
    memory = bytearray(struct.pack("<I", len(rec.pages)))
    for bar, page, content in rec.pages:
        memory += _PAGE.pack(bar, page) + content
    return frame(BLOB_MAGIC, [
        (TAG_TYPE, CRITICAL, struct.pack("<B", len(name)) + name + rec.fingerprint),
        (TAG_CONFIG, CRITICAL, rec.config),
        (TAG_WINDOWS, CRITICAL, windows),
        (TAG_MEMORY, CRITICAL, bytes(memory)),
        (TAG_EXTRA, CRITICAL, rec.extra),
    ])  # fmt: skip


def decode_instance(blob: bytes) -> InstanceRecord:
    """Parse an instance blob, rejecting anything non-canonical (R-BLOB-001..R-BLOB-004)."""
    what = "instance blob"
    s = _unframe(BLOB_MAGIC, blob, {TAG_TYPE, TAG_CONFIG, TAG_WINDOWS, TAG_MEMORY, TAG_EXTRA}, what)
    typ = s[TAG_TYPE]
    if not typ or len(typ) != 1 + typ[0] + _DIGEST:
        raise BlobError(f"{what} type section has the wrong length")
    try:
        name = typ[1 : 1 + typ[0]].decode()
    except UnicodeDecodeError:
        raise BlobError(f"{what} type name is not UTF-8") from None
    config = s[TAG_CONFIG]
    if len(config) not in (0x100, 0x1000):
        raise BlobError(f"{what} configuration section is {len(config)} bytes, not 256 or 4096")
    raw = s[TAG_WINDOWS]
    if len(raw) != 9 * WINDOW_SLOTS:
        raise BlobError(f"{what} windows section has the wrong length")
    windows: list[int | None] = []
    for k in range(WINDOW_SLOTS):
        flag, base = _WINDOW.unpack_from(raw, 9 * k)
        if flag not in (0, 1) or (flag == 0 and base):
            raise BlobError(f"{what} window {k} is not canonical")
        windows.append(base if flag else None)
    mem = s[TAG_MEMORY]
    if len(mem) < 4:
        raise BlobError(f"{what} memory section is truncated ({len(mem)} bytes, its page count takes 4)")
    (count,) = struct.unpack_from("<I", mem)
    entry = 9 + PAGE_SIZE
    if len(mem) != 4 + count * entry:
        raise BlobError(
            f"{what} memory section length does not match its page count: {len(mem)} bytes, "
            f"{count} pages of {entry} take {4 + count * entry}"
        )
    pages: list[tuple[int, int, bytes]] = []
    for k in range(count):
        bar, page = _PAGE.unpack_from(mem, 4 + k * entry)
        content = mem[4 + k * entry + 9 : 4 + (k + 1) * entry]
        if pages and (bar, page) <= pages[-1][:2]:
            raise BlobError(f"{what} memory pages are not in ascending order")
        if not any(content):
            raise BlobError(f"{what} stores an all-zero page (not canonical)")
        pages.append((bar, page, content))
    return InstanceRecord(name, typ[1 + typ[0] :], config, tuple(windows), tuple(pages), s[TAG_EXTRA])


def encode_snapshot(rec: VmRecord) -> bytes:
    """Canonical bytes of a VM snapshot (R-BLOB-005)."""
    vm = struct.pack("<BQI", rec.ecam_base is not None, rec.ecam_base or 0, rec.cf8)
    devices = bytearray(struct.pack("<I", len(rec.devices)))
    for packed, blob in rec.devices:
        devices += struct.pack("<HI", packed, len(blob)) + blob
    order = bytearray(struct.pack("<I", len(rec.map_order)))
    for packed, bar in rec.map_order:
        order += struct.pack("<HB", packed, bar)
    sections = [
        (TAG_VM, CRITICAL, vm),
        (TAG_DEVICE, CRITICAL, bytes(devices)),
        (TAG_MAP_ORDER, CRITICAL, bytes(order)),
    ]
    if rec.parents is not None:  # R-BLOB-008: only a VM with bridges has a topology section
        topology = struct.pack("<I", len(rec.parents)) + b"".join(
            struct.pack("<I", NO_PARENT if parent is None else parent) for parent in rec.parents
        )
        sections.append((TAG_TOPOLOGY, CRITICAL, topology))
    return frame(SNAPSHOT_MAGIC, sections)


def decode_snapshot(blob: bytes) -> VmRecord:
    """Parse a VM snapshot's framing; the device blobs are parsed by :func:`decode_instance`."""
    what = "VM snapshot"
    known = {TAG_VM, TAG_DEVICE, TAG_MAP_ORDER, TAG_TOPOLOGY}
    s = _unframe(SNAPSHOT_MAGIC, blob, known, what, optional=frozenset({TAG_TOPOLOGY}))
    if len(s[TAG_VM]) != 13:
        raise BlobError(f"{what} VM section has the wrong length")
    has_ecam, ecam, cf8 = struct.unpack("<BQI", s[TAG_VM])
    if has_ecam not in (0, 1) or (not has_ecam and ecam):
        raise BlobError(f"{what} ECAM field is not canonical")
    dev, devices = s[TAG_DEVICE], list[tuple[int, bytes]]()
    tree = TAG_TOPOLOGY in s
    for packed, start, end in _device_entries(dev, what):
        if not tree and devices and packed <= devices[-1][0]:
            raise BlobError(f"{what} devices are not in ascending BDF order")
        devices.append((packed, dev[start:end]))
    parents = _topology(s[TAG_TOPOLOGY], [packed for packed, _ in devices], what) if tree else None
    order_raw = s[TAG_MAP_ORDER]
    if len(order_raw) < 4:
        raise BlobError(f"{what} map-order section is truncated ({len(order_raw)} bytes, its count takes 4)")
    (n,) = struct.unpack_from("<I", order_raw)
    if len(order_raw) != 4 + 3 * n:
        raise BlobError(
            f"{what} map-order section length does not match its count: {len(order_raw)} bytes, "
            f"{n} entries of 3 take {4 + 3 * n}"
        )
    order = tuple(struct.unpack_from("<HB", order_raw, 4 + 3 * k) for k in range(n))
    if parents is not None and any(index >= len(devices) for index, _ in order):
        raise BlobError(f"{what} map order names a device index past the devices section")
    return VmRecord(ecam if has_ecam else None, cf8, tuple(devices), order, parents)


MAX_BRIDGE_DEPTH = 255
"""The most bridges above one instance: every bus below a bridge needs its own number 1-255 to be
reached, so no sequence of operations builds a deeper tree (R-BLOB-008)."""


def _topology(raw: bytes, packed: list[int], what: str) -> tuple[int | None, ...]:
    """Parse and check a topology section against the devices' BDFs (R-BLOB-007, R-BLOB-008).

    One parent per device; a parent is an earlier entry on the chain of
    bridges above the entry before (pre-order); an instance below a bridge
    has bus byte 0; siblings come in ascending BDF order, never twice.
    Whether each parent is a bridge is the manager's check (it needs the types).
    """
    if len(raw) < 4 or len(raw) != 4 + 4 * struct.unpack_from("<I", raw)[0]:
        raise BlobError(f"{what} topology section length does not match its count")
    (count,) = struct.unpack_from("<I", raw)
    if count != len(packed):
        raise BlobError(f"{what} topology lists {count} instances, the devices section {len(packed)}")
    parents: list[int | None] = []
    chain: list[int] = []  # the entries above the current one, outermost first
    last_child: dict[int | None, int] = {}
    for index in range(count):
        (raw_parent,) = struct.unpack_from("<I", raw, 4 + 4 * index)
        parent = None if raw_parent == NO_PARENT else raw_parent
        if index:
            chain.append(index - 1)
        while chain and chain[-1] != parent:
            chain.pop()
        if parent is not None and not chain:
            raise BlobError(f"{what} topology entry {index}: parent {parent} is not an entry above it")
        if len(chain) > MAX_BRIDGE_DEPTH:
            raise BlobError(f"{what} topology entry {index} sits below more than {MAX_BRIDGE_DEPTH} bridges")
        if parent is not None and packed[index] >> 8:
            raise BlobError(f"{what} topology entry {index} is below a bridge but its BDF has a bus number")
        previous = last_child.get(parent)
        if previous is not None and packed[index] <= packed[previous]:
            raise BlobError(f"{what} topology entry {index}: siblings out of order or repeated")
        last_child[parent] = index
        parents.append(parent)
    return tuple(parents)
