"""Device data and BAR behaviour: the data half of an instance's blob (R-DS-005, R-DT-003).

A BAR access that a VM routes to an instance is served by the device type's
:class:`BarBehaviour`; its state lives in :class:`DeviceData`, which the blob
carries. The default behaviour is memory-like (R-DT-004).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from vpcid.model.header import MSIX_ENTRY_SIZE, MSIX_VECTOR_MASK, MsixPlace

PAGE_SIZE = 4096
"""Granule of the sparse BAR store; all-zero pages are never stored (R-BLOB-003)."""


class SparseMemory:
    """Byte store of one BAR, allocated a page at a time so a 64 GiB BAR costs nothing until used."""

    __slots__ = ("pages",)

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}

    def read(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset+length)``; never-written bytes are zero."""
        page, start = divmod(offset, PAGE_SIZE)
        if start + length <= PAGE_SIZE:
            stored = self.pages.get(page)
            return bytes(length) if stored is None else bytes(stored[start : start + length])
        return b"".join(self.read(offset + k, 1) for k in range(length))

    def write(self, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset``."""
        page, start = divmod(offset, PAGE_SIZE)
        if start + len(data) <= PAGE_SIZE:
            stored = self.pages.get(page)
            if stored is None:
                if not any(data):
                    return
                stored = self.pages[page] = bytearray(PAGE_SIZE)
            stored[start : start + len(data)] = data
            return
        for k, byte in enumerate(data):
            self.write(offset + k, bytes((byte,)))

    def nonzero_pages(self) -> list[tuple[int, bytes]]:
        """The pages holding a non-zero byte, by ascending index (canonical form)."""
        return [(i, bytes(p)) for i, p in sorted(self.pages.items()) if any(p)]


@dataclass
class DeviceData:
    """An instance's data: one sparse store per BAR index plus behaviour-defined state bytes."""

    memory: dict[int, SparseMemory] = field(default_factory=dict)
    extra: bytearray = field(default_factory=bytearray)

    def bar_memory(self, bar: int) -> SparseMemory:
        """The store of BAR ``bar``, created on first use."""
        store = self.memory.get(bar)
        if store is None:
            store = self.memory[bar] = SparseMemory()
        return store


class BarBehaviour(Protocol):
    """What a device type supplies to give its BARs behaviour (R-DT-003).

    ``read``/``write`` see one piece of an access: a run of bytes inside one
    BAR (``bar`` 0-5), ``offset`` from the BAR's base. State must live in
    ``data`` so that save/restore carries it.
    """

    @property
    def name(self) -> str:
        """Stable name; part of the device type's fingerprint."""
        ...

    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        """Return ``length`` bytes."""
        ...

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        """Absorb ``payload``."""
        ...

    def reset(self, data: DeviceData) -> None:
        """Re-initialise ``data`` after it was cleared (R-RST-002)."""
        ...

    def check(self, data: DeviceData) -> str | None:
        """Say what is wrong with restored ``data``, or None when it is acceptable (R-SR-005)."""
        ...


class MemoryBehaviour:
    """The default behaviour: every BAR byte reads what was last written, zero at first (R-DT-004)."""

    name = "memory"

    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        return data.bar_memory(bar).read(offset, length)

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        data.bar_memory(bar).write(offset, payload)

    def reset(self, data: DeviceData) -> None:
        return None

    def check(self, data: DeviceData) -> str | None:
        return "memory behaviour keeps no extra state" if data.extra else None


MEMORY = MemoryBehaviour()


class MsixTable:
    """BAR behaviour ``msix``: the MSI-X table and pending-bit array in the BARs the capability names
    (R-IRQ-003); every other BAR byte is memory-like (R-DT-004).

    A device type declares ``MsixTable()``; building the type binds it to the
    place its MSI-X capability names (:meth:`bound`). Table and PBA bytes are
    BAR data, saved in the blob like any (R-BLOB-003). Inside them only an
    aligned dword or qword run takes effect: another reads zero and writes
    nothing. Vector Control keeps bit 0 (the mask), set at reset; its
    reserved bits read zero. The PBA reads its bits and ignores writes; the
    model sends no message, so no access sets a pending bit.
    """

    name = "msix"

    def __init__(self, place: MsixPlace | None = None) -> None:
        self.place = place

    def bound(self, place: MsixPlace) -> MsixTable:
        """This behaviour serving the table and PBA at ``place``."""
        return MsixTable(place)

    def _area(self, bar: int, offset: int, length: int) -> tuple[str, bool] | None:
        """Whether the run touches the table or the PBA, and whether it is an access PCI allows there."""
        place = self.place
        if place is None:
            return None
        for area, at, span in (("table", place.table_bar, place.table), ("pba", place.pba_bar, place.pba)):
            if bar == at and offset < span.stop and span.start < offset + length:
                allowed = length in (4, 8) and offset % length == 0 and span.start <= offset < span.stop
                return area, allowed
        return None

    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        touched = self._area(bar, offset, length)
        if touched is not None and not touched[1]:
            return bytes(length)
        return data.bar_memory(bar).read(offset, length)

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        touched = self._area(bar, offset, len(payload))
        if touched is None:
            data.bar_memory(bar).write(offset, payload)
            return
        area, allowed = touched
        if not allowed or area == "pba":
            return
        assert self.place is not None
        stored = bytearray(payload)
        for k in range(0, len(stored), 4):
            if (offset + k - self.place.table_offset) % MSIX_ENTRY_SIZE == 12:  # Vector Control
                stored[k : k + 4] = bytes((stored[k] & MSIX_VECTOR_MASK, 0, 0, 0))
        data.bar_memory(bar).write(offset, bytes(stored))

    def reset(self, data: DeviceData) -> None:
        place = self.place
        if place is None:
            return
        memory = data.bar_memory(place.table_bar)
        for vector in range(place.vectors):
            memory.write(place.table_offset + MSIX_ENTRY_SIZE * vector + 12, bytes((MSIX_VECTOR_MASK,)))

    def check(self, data: DeviceData) -> str | None:
        place = self.place
        if data.extra:
            return "msix behaviour keeps no extra state"
        if place is None:
            return None
        table, pba = data.memory.get(place.table_bar), data.memory.get(place.pba_bar)
        for vector in range(place.vectors):
            at = place.table_offset + MSIX_ENTRY_SIZE * vector + 12
            control = int.from_bytes(table.read(at, 4), "little") if table is not None else 0
            if control & ~MSIX_VECTOR_MASK:
                return f"MSI-X vector {vector}: reserved Vector Control bits are set"
        pending = int.from_bytes(pba.read(place.pba_offset, len(place.pba)), "little") if pba else 0
        if pending >> place.vectors:
            return f"MSI-X pending bit {pending.bit_length() - 1} names no vector"
        return None


class ConfigBehaviour(Protocol):
    """Configuration-register semantics that per-byte masks cannot express (R-DT-008).

    Examples: a field clamped to a capability's maximum (MSI Multiple Message
    Enable), a bit that reads zero after a write starts an action (PCI Express
    Initiate FLR, Retrain Link), a status bit set by writing its control
    register. Its only state is the configuration space itself, which the
    blob carries.
    """

    @property
    def name(self) -> str:
        """Stable name; part of the device type's fingerprint."""
        ...

    def config_write(self, config: bytearray, offset: int, before: bytes) -> None:
        """Adjust ``config`` after the masked write of ``len(before)`` bytes at ``offset``.

        ``before`` holds those bytes as they were before the write. The manager
        keeps only changes to writable and RW1C bits; read-only bits stay.
        """
        ...
