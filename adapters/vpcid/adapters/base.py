"""The adapter protocol: how the suite drives an implementation (spec/formats/adapter.md).

An adapter executes one :class:`~vpcid.conformance.trace.Op` at a time and
returns its :class:`~vpcid.conformance.trace.Observation`. It declares which
operation kinds it supports, its variant profile, and, for implementations
that show a guest a fixed set of devices rather than the whole data-manager
API, the machine it presents.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from vpcid.conformance.trace import (
    EXTENSIONS,
    FULL,
    GUEST_VIEW,
    INTROSPECTION,
    Observation,
    Op,
    OpKind,
    TraceError,
)
from vpcid.model import Bdf, DeviceType, DeviceTypeError, Profile, VpcidError
from vpcid.model.manager import DEFAULT_ECAM_BASE


class EmptySlot(VpcidError):
    """A restore names a slot no successful save or snapshot filled (observed as ``empty-slot``)."""

    kind = "empty-slot"


def load_slot(slots: Mapping[str, bytes], op: Op) -> bytes:
    """The blob a ``restore`` or ``restore_vm`` names: its literal ``blob``, or what its ``slot`` holds."""
    if not op.name:
        return op.data
    blob = slots.get(op.name)
    if blob is None:
        raise EmptySlot(f"{op.kind.value}: nothing saved in slot {op.name!r}")
    return blob


def define_type(
    known: Mapping[str, DeviceType], op: Op, parse: Callable[[object], DeviceType] | None = None
) -> DeviceType:
    """The type a ``define_type`` operation defines, checked against the types already known by name:
    a different definition under a known name is ``bad-device-type`` (R-DT-002). ``parse`` reads the
    definition (default: the type-file reader's ``parse_type_definition``)."""
    if parse is None:
        from vpcid.conformance.typefile import parse_type_definition

        parse = parse_type_definition

    dtype = parse(json.loads(op.data))
    other = known.get(dtype.name)
    if other is not None and other != dtype:
        from vpcid.conformance.discovery import type_difference

        raise DeviceTypeError(
            f"device type {dtype.name!r} is already known with another definition: "
            f"{type_difference(other, dtype)} (known first)"
        )
    return dtype


@dataclass(frozen=True)
class OpaqueRange:
    """Bytes of one BAR whose contents no declared behaviour describes (registers with side
    effects, asynchronous work): the suite never accesses them (index 6 is the ROM)."""

    bdf: Bdf
    bar: int
    offsets: range


@dataclass(frozen=True)
class FixedMachine:
    """The VM a guest-view adapter presents after ``init``: its id, ECAM window and devices."""

    vm: int
    devices: tuple[tuple[Bdf, DeviceType], ...]
    ecam_base: int | None = DEFAULT_ECAM_BASE
    reserved_functions: tuple[Bdf, ...] = ()
    """Functions the platform has that the model does not describe (host bridge, ...): never probed."""
    reserved_io: tuple[range, ...] = ()
    """Port ranges the platform owns (PIC, PIT, serial, ...): never accessed or used for BARs."""
    reserved_memory: tuple[range, ...] = ()
    """Guest-physical ranges the platform owns (RAM, firmware, APICs, ...): likewise."""
    opaque: tuple[OpaqueRange, ...] = ()
    """BAR contents the suite must not access; the BARs' registers and decode are still checked."""
    firmware: tuple[tuple[Bdf, int, int, int], ...] = ()
    """Configuration writes ``(function, offset, width, value)`` firmware makes at power-on, each made
    right after the device it names is plugged (``devices`` lists a bridge before what is below it), so
    a bridge is numbered before its secondary bus is populated (R-BRG-003)."""

    def opaque_bars(self, bdf: Bdf, dtype: DeviceType) -> frozenset[int]:
        """Indices of ``bdf``'s BARs whose whole contents are opaque (cases leave them out)."""
        whole = set()
        for r in self.opaque:
            bar = dtype.bar(r.bar) if r.bar < 6 else None
            if r.bdf == bdf and bar is not None and r.offsets.start <= 0 and r.offsets.stop >= bar.size:
                whole.add(r.bar)
        return frozenset(whole)

    def touches_opaque(self, bdf: Bdf, bar: int, start: int, stop: int) -> bool:
        """Whether offsets ``[start, stop)`` of ``bdf``'s BAR ``bar`` include an opaque byte."""
        return any(
            r.bdf == bdf and r.bar == bar and r.offsets.start < stop and start < r.offsets.stop
            for r in self.opaque
        )

    def is_reserved(self, space: str, start: int, length: int = 1) -> bool:
        """Whether ``[start, start+length)`` touches a platform range of ``space`` ("io"/"memory")."""
        ranges = self.reserved_io if space == "io" else self.reserved_memory
        end = start + length
        return any(r.start < end and start < r.stop for r in ranges)


@dataclass(frozen=True)
class AdapterInfo:
    """What an implementation declares about itself."""

    name: str
    profile: Profile = field(default_factory=Profile)
    operations: frozenset[OpKind] = FULL
    machine: FixedMachine | None = None
    """None: the adapter offers the full API and starts empty after ``init``."""
    canonical_blobs: bool = True
    """Whether save/snapshot produce the spec's byte format (R-BLOB-*), so digests compare."""
    description: str = ""
    waivers: Path | None = None
    """A strict waiver file for the platform the adapter presents (e.g. QEMU's q35 host bridge):
    certify applies it unless told not to or given another file."""
    declined_types: tuple[tuple[str, str], ...] = ()
    """Device types the adapter was given and declines, with why (e.g. a bridge behind a vfio-user
    server, which is one function): left out of its machine; certification reports them as declined."""
    unsupported_reasons: tuple[tuple[OpKind, str], ...] = ()
    """Why the adapter does not support an operation kind it leaves out (e.g. ``topology``): the
    suite reports the cases needing it as skipped with this reason (spec/formats/adapter.md)."""

    def __post_init__(self) -> None:
        if not self.operations >= GUEST_VIEW:
            missing = ", ".join(sorted(k.value for k in GUEST_VIEW - self.operations))
            raise ValueError(f"adapter {self.name!r} must support the guest-view operations; lacks {missing}")
        if self.machine is None and not FULL <= self.operations <= FULL | EXTENSIONS | INTROSPECTION:
            raise ValueError(f"adapter {self.name!r}: without a fixed machine the full API is required")

    def why_unsupported(self, kind: OpKind) -> str:
        """Why this adapter does not support ``kind``: its declared reason, or that it does not declare it."""
        for declared, reason in self.unsupported_reasons:
            if declared is kind:
                return reason
        return f"adapter {self.name!r} does not declare {kind.value}"

    def unsupported(self, op: Op) -> TraceError:
        """The error for an operation of a kind this adapter does not declare (the trace is at fault)."""
        return TraceError(f"adapter {self.name!r} does not support {op.kind.value}")


@runtime_checkable
class Adapter(Protocol):
    """An implementation under test, or the reference model."""

    @property
    def info(self) -> AdapterInfo:
        """The adapter's declaration."""
        ...

    def execute(self, op: Op) -> Observation:
        """Perform one operation; a rejected operation is ``Observation(error=kind)``."""
        ...

    def close(self) -> None:
        """Release every resource (processes, sockets, file descriptors)."""
        ...


ExecuteMany = Callable[[Sequence[Op]], tuple[list[Observation], Exception | None]]
"""An adapter's optional ``execute_many(ops)`` (spec/formats/adapter.md): perform ``ops`` in order,
as ``execute`` would one at a time; return their observations and the exception the first failing
operation raised (None if none failed; it is then the last one performed). A ``TraceError``
propagates. The engines hand whole stretches to an adapter that offers it."""


AdapterFactory = Callable[[str | None], Adapter]
"""Builds an adapter from the text after ``name:`` in ``--adapter name:argument`` (or None)."""


class AdapterUnavailable(Exception):
    """The adapter cannot run on this machine; the message says why, in one line."""
