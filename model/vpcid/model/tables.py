"""The I/O and memory hash tables of a VM element (R-DS-006, R-DEC-008).

A BAR of size ``2**k`` at naturally aligned ``base`` is stored under the key
``(k, base >> k)``. An address ``a`` is resolved by one probe per size class
in use, at key ``(k, a >> k)``: exact, hash-only, and independent of how
many BARs there are and of how large they are. At most 64 classes exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from vpcid.model.bdf import Bdf


@dataclass(frozen=True, slots=True)
class Mapping:
    """One decoding BAR: the instance's BDF (None while bridges leave it unreachable, R-BRG-003), BAR
    index (6 = ROM), base and size log2, and the pieces of it the bridges above forward (R-BRG-006)."""

    bdf: Bdf | None
    bar: int
    base: int
    size_log2: int
    stamp: int
    """Order in which mappings were made in the VM; used by the last-mapped overlap variant."""
    pieces: tuple[tuple[int, int], ...] | None = None
    """Half-open address ranges of the BAR that reach it through the bridges above; None: all of it
    (an instance on a root bus)."""
    owner: object = field(default=None, compare=False, repr=False)
    """The instance the BAR belongs to (the manager's)."""

    def forwards(self, address: int) -> bool:
        """Whether an access to ``address`` inside the BAR reaches it (R-BRG-006)."""
        pieces = self.pieces
        return pieces is None or any(start <= address < stop for start, stop in pieces)

    @property
    def size(self) -> int:
        return 1 << self.size_log2

    @property
    def end(self) -> int:
        """One past the last decoded address."""
        return self.base + (1 << self.size_log2)


PriorityKey = Callable[[Mapping], tuple[int, ...]]


def lowest_bdf_first(m: Mapping) -> tuple[int, ...]:
    """Overlap rule ``lowest-bdf``: the lowest (BDF, BAR index) wins (R-DEC-008); a BAR of an unreachable
    instance (no BDF) after every reachable one (R-BRG-003)."""
    return (m.bdf.packed if m.bdf is not None else 0x10000, m.bar)


def last_mapped_first(m: Mapping) -> tuple[int, ...]:
    """Overlap rule ``last-mapped``: the most recently mapped BAR wins (R-DEC-008)."""
    return (-m.stamp,)


def _first_forwarded(bucket: list[Mapping], address: int) -> Mapping | None:
    """The first mapping of a bucket, in priority order, that ``address`` reaches (R-BRG-006)."""
    for m in bucket:
        if m.pieces is None:
            return m
        for start, stop in m.pieces:
            if start <= address < stop:
                return m
    return None


class DecodeTable:
    """Hash table from (size class, aligned base) to the BARs decoding there (R-DS-006)."""

    __slots__ = ("_classes", "_priority")

    def __init__(self, priority: PriorityKey) -> None:
        self._classes: dict[int, dict[int, list[Mapping]]] = {}
        self._priority = priority

    def insert(self, m: Mapping) -> None:
        """Add a mapping; ties at one key are kept in priority order."""
        slots = self._classes.setdefault(m.size_log2, {})
        bucket = slots.setdefault(m.base >> m.size_log2, [])
        bucket.append(m)
        bucket.sort(key=self._priority)

    def remove(self, m: Mapping) -> None:
        """Remove a mapping previously inserted; drop empty buckets and classes."""
        slots = self._classes[m.size_log2]
        key = m.base >> m.size_log2
        bucket = slots[key]
        bucket.remove(m)
        if not bucket:
            del slots[key]
            if not slots:
                del self._classes[m.size_log2]

    def lookup(self, address: int) -> Mapping | None:
        """The mapping that decodes ``address`` by the overlap rule, one probe per class (R-DS-009).

        In each bucket the first mapping, in priority order, whose forwarded
        pieces hold the address takes it (R-BRG-006); a mapping on a root bus
        holds every address of its BAR, so flat VMs look at the first only.
        """
        best: Mapping | None = None
        for log2, slots in self._classes.items():
            bucket = slots.get(address >> log2)
            if bucket is None:
                continue
            found = bucket[0]
            if found.pieces is not None:  # below bridges: the first mapping forwarded there
                forwarded = _first_forwarded(bucket, address)
                if forwarded is None:
                    continue
                found = forwarded
            if best is None or self._priority(found) < self._priority(best):
                best = found
        return best

    def size_classes(self) -> int:
        """How many size classes are in use (the number of probes per lookup)."""
        return len(self._classes)

    def __iter__(self) -> Iterator[Mapping]:
        for slots in self._classes.values():
            for bucket in slots.values():
                yield from bucket

    def __len__(self) -> int:
        return sum(len(b) for s in self._classes.values() for b in s.values())
