"""Fuzz a device model's registers: a small NIC, four planted bugs, and the fixed model.

docs/fuzzing-registers.md walks through it. Certify the correct model, then a
buggy one, from the folder that holds this file and nic_registers.json::

    vpcid certify --adapter nic_registers:factory
    vpcid certify --adapter nic_registers:factory:isr-write-clears-all --failures-only

Three parts:

1. ``nic_registers.json`` declares the device: its identity, a 4 KiB memory
   BAR and, inside it, four registers with their access classes, reset
   values and side effects (spec/requirements/07-registers.md). The suite
   runs the reference model on that declaration.
2. ``NicModel`` is the device model under test: the code of your VMM's
   device, here in Python. It keeps its registers in the instance's data
   (``DeviceData.extra``) so that it is a BAR behaviour (R-DT-003), and it
   knows nothing of the declaration. ``BUGS`` holds four versions of it
   with one mistake each.
3. ``NicAdapter`` runs the model under test behind vpcid's data manager (the
   PCI plumbing: configuration space, BAR decode) and presents the machine
   the declaration describes, so every access the suite makes is compared
   with the declared registers, bit by bit.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

from vpcid.adapters.base import AdapterInfo, AdapterUnavailable, FixedMachine
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.trace import GUEST_VIEW, Observation, Op
from vpcid.conformance.typefile import read_type_file
from vpcid.model import Bdf, DeviceData, DeviceType

HERE = Path(__file__).resolve().parent
DECLARED: DeviceType = read_type_file(HERE / "nic_registers.json")[0].dtype
"""The NIC as nic_registers.json declares it: what the reference model runs."""
VM_ID = 1
SLOT = Bdf(0, 3, 0)

VERSION, CONTROL, ISR, DOORBELL = 0x000, 0x004, 0x008, 0x00C
VERSION_VALUE = 0x0001_0002
CONTROL_RESET = 0x01  # link enabled
CONTROL_BITS = 0xFF  # bits 31:8 are reserved
ISR_BITS = 0x3  # bit 0: doorbell rang; bit 1: link changed; bits 31:2 reserved


class NicModel:
    """The NIC's registers as its device model implements them (the code under test).

    State: VERSION, CONTROL and ISR as three little-endian u32 in
    ``data.extra``; DOORBELL keeps nothing, writing it raises ISR bit 0.
    Registers are dwords; narrower accesses reach their bytes.
    """

    name = "example-nic-model"
    STATE = struct.Struct("<III")

    # -- the registers, one dword at a time (what a device author writes)
    def read_register(self, data: DeviceData, offset: int) -> int:
        version, control, isr = self.STATE.unpack(data.extra)
        registers: dict[int, int] = {VERSION: version, CONTROL: control, ISR: isr}
        return registers.get(offset, 0)

    def write_register(self, data: DeviceData, offset: int, value: int, lanes: int) -> None:
        """Write ``value`` to the register at ``offset``; ``lanes`` masks the bytes the access covers."""
        version, control, isr = self.STATE.unpack(data.extra)
        if offset == VERSION:
            version = self.write_version(version, value, lanes)
        elif offset == CONTROL:
            control = (control & ~lanes | value & lanes) & CONTROL_BITS
        elif offset == ISR:
            isr = self.write_isr(isr, value & lanes)
        elif offset == DOORBELL:
            isr = self.ring_doorbell(isr)
        data.extra[:] = self.STATE.pack(version, control, isr)

    def write_version(self, version: int, value: int, lanes: int) -> int:
        """VERSION is read-only."""
        return version

    def write_isr(self, isr: int, written: int) -> int:
        """Interrupt status is write-1-to-clear."""
        return isr & ~written

    def ring_doorbell(self, isr: int) -> int:
        """Ringing the doorbell raises ISR bit 0."""
        return isr | 0x1

    def power_on(self) -> tuple[int, int, int]:
        """(VERSION, CONTROL, ISR) at power-on."""
        return VERSION_VALUE, CONTROL_RESET, 0

    # -- the BarBehaviour protocol: bytes in, bytes out (R-DT-003)
    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        return bytes(
            self.read_register(data, at & ~3) >> 8 * (at & 3) & 0xFF for at in range(offset, offset + length)
        )

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        registers: dict[int, tuple[int, int]] = {}
        for k, byte in enumerate(payload):
            at = offset + k
            value, lanes = registers.get(at & ~3, (0, 0))
            registers[at & ~3] = (value | byte << 8 * (at & 3), lanes | 0xFF << 8 * (at & 3))
        for register, (value, lanes) in sorted(registers.items()):
            self.write_register(data, register, value, lanes)

    def reset(self, data: DeviceData) -> None:
        data.extra[:] = self.STATE.pack(*self.power_on())

    def check(self, data: DeviceData) -> str | None:
        return None if len(data.extra) == self.STATE.size else "the NIC model keeps 12 bytes of state"


# ---------------------------------------------------------------- four planted bugs, one per kind


class IsrWriteClearsAll(NicModel):
    """A register class wrong: any write to ISR clears every bit (R-REG-004)."""

    def write_isr(self, isr: int, written: int) -> int:
        return 0


class VersionWritable(NicModel):
    """A register class wrong: VERSION takes what is written to it (R-REG-002)."""

    def write_version(self, version: int, value: int, lanes: int) -> int:
        return version & ~lanes | value & lanes


class DoorbellSetsWrongBit(NicModel):
    """A side effect wrong: the doorbell raises ISR bit 1, not bit 0 (R-REG-009)."""

    def ring_doorbell(self, isr: int) -> int:
        return isr | 0x2


class ControlResetsToZero(NicModel):
    """A reset value wrong: CONTROL powers on as 0, not 1 (R-REG-010)."""

    def power_on(self) -> tuple[int, int, int]:
        return VERSION_VALUE, 0, 0


BUGS: dict[str, type[NicModel]] = {
    "isr-write-clears-all": IsrWriteClearsAll,
    "version-writable": VersionWritable,
    "doorbell-sets-wrong-bit": DoorbellSetsWrongBit,
    "control-resets-to-zero": ControlResetsToZero,
}
"""Each planted bug by name, with the requirement certification must blame it on."""
BLAMED = {
    "isr-write-clears-all": ("R-REG-004", "ISR"),
    "version-writable": ("R-REG-002", "VERSION"),
    "doorbell-sets-wrong-bit": ("R-REG-009", "ISR"),
    "control-resets-to-zero": ("R-REG-010", "CONTROL"),
}
"""The requirement and the register a finding on each planted bug names."""


# ---------------------------------------------------------------- the adapter


class NicAdapter:
    """The model under test behind vpcid's data manager, presented as the declared NIC at 00:03.0."""

    def __init__(self, model: NicModel) -> None:
        under_test = dataclasses.replace(DECLARED, behaviour=model)
        self._runner = ModelAdapter(
            f"nic({model.name})", machine=FixedMachine(VM_ID, ((SLOT, under_test),)), operations=GUEST_VIEW
        )
        self._info = AdapterInfo(
            name=f"example-nic:{type(model).__name__}",
            operations=GUEST_VIEW,
            machine=FixedMachine(VM_ID, ((SLOT, DECLARED),)),
            description="docs/example/nic_registers.py: a NIC device model against its declared registers",
        )

    @property
    def info(self) -> AdapterInfo:
        return self._info

    def execute(self, op: Op) -> Observation:
        return self._runner.execute(op)

    def close(self) -> None:
        """Nothing to release."""


def factory(argument: str | None) -> NicAdapter:
    """``--adapter nic_registers:factory`` (the fixed model) or ``nic_registers:factory:BUG``."""
    if argument is None:
        return NicAdapter(NicModel())
    bug = BUGS.get(argument)
    if bug is None:
        raise AdapterUnavailable(f"name a planted bug: nic_registers:factory:BUG, one of {', '.join(BUGS)}")
    return NicAdapter(bug())
