"""Worked example: fuzz a device model written in Python against invariants you declare.

A small NIC as a BAR behaviour (a read-only VERSION register, a read-write CTRL, a write-1-to-clear
ISR and a TRIGGER that raises ISR bit 0) with planted bugs of different kinds: ``BUGS`` names them.
Nothing about its registers is declared to vpcid; what must hold is said as invariants
(``NIC_INVARIANTS``), checked after every step of a campaign run from Python::

    from vpcid.conformance.fuzz import type_target
    from vpcid.conformance.stateful import run_campaign
    result = run_campaign(type_target([nic("isr-set-after-reset")]), invariants=NIC_INVARIANTS)
    print(result.finding.description)  # the invariant broken, with a trace of 10 steps or fewer

docs/fuzzing.md explains campaigns, invariants and the `vpcid fuzz` command; tests/test_fuzz.py
runs this example on every version: each bug is found and shrunk to 10 operations or fewer, and
the fixed version keeps every invariant.
"""

from __future__ import annotations

from vpcid.conformance.stateful import reads_after_reset, register_constant
from vpcid.model import BarKind, BarSpec, DeviceType
from vpcid.model.behaviour import DeviceData

VERSION, CTRL, ISR, TRIGGER = 0x0, 0x4, 0x8, 0xC
VERSION_VALUE = 0x0001_0002
MAX_TRACE = 10
"""A finding's trace is shrunk to this many operations or fewer."""


class Nic:
    """Four dword registers in a 16-byte BAR; ``bug`` plants one deviation from their description."""

    def __init__(self, bug: str | None = None) -> None:
        self.bug = bug
        self.name = f"test-nic-{bug or 'fixed'}"

    @staticmethod
    def _registers(data: DeviceData) -> bytearray:
        return data.extra

    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        return bytes(self._registers(data)[offset : offset + length])

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        registers = self._registers(data)
        for k, byte in enumerate(payload):
            at = offset + k
            if CTRL <= at < CTRL + 4:
                registers[at] = byte
            elif ISR <= at < ISR + 4:
                registers[at] &= ~byte & 0xFF
                if self.bug == "isr-write-clears-all":
                    registers[ISR : ISR + 4] = bytes(4)
            elif at == TRIGGER and byte & 1:
                registers[ISR] |= 1
                if self.bug == "trigger-bumps-version":
                    registers[VERSION] = (registers[VERSION] + 1) & 0xFF
            elif at == 0xF and byte == 0xFF and self.bug == "crash":
                raise ZeroDivisionError("planted crash")

    def reset(self, data: DeviceData) -> None:
        data.extra[:] = VERSION_VALUE.to_bytes(4, "little") + bytes(12)
        if self.bug == "isr-set-after-reset":
            data.extra[ISR] = 0x80

    def check(self, data: DeviceData) -> str | None:
        return None if len(data.extra) == 16 else "the NIC keeps 16 bytes of registers"


BUGS = ("trigger-bumps-version", "isr-set-after-reset", "isr-write-clears-all", "crash")
"""The planted bugs: a side effect on the wrong register, a reset value wrong, a write-1-to-clear
register whose every write clears it all, and a behaviour that raises."""


def nic(bug: str | None = None) -> DeviceType:
    """The NIC's device type, with ``bug`` (one of :data:`BUGS`) planted, or the fixed version."""
    return DeviceType(
        name=f"test-nic-{bug or 'fixed'}",
        vendor_id=0x1B36,
        device_id=0x0ABC,
        class_code=0x020000,
        bars=(BarSpec(BarKind.MEM32, 16),),
        behaviour=Nic(bug),
    )


NIC_INVARIANTS = (
    register_constant("VERSION never changes", VERSION, 4, bar=0, value=VERSION_VALUE),
    reads_after_reset("after reset ISR reads 0", ISR, 4, 0, bar=0),
)
