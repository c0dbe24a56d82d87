"""Device data and BAR behaviour: the data half of an instance's blob (R-DS-005, R-DT-003).

A BAR access that a VM routes to an instance is served by the device type's
:class:`BarBehaviour`; its state lives in :class:`DeviceData`, which the blob
carries. The default behaviour is memory-like (R-DT-004).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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
