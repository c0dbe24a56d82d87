"""Scenario cases for platform-level semantics: reset kinds and sticky bits (R-RST-004, R-RST-005),
the multi-function rules (R-MF-001..R-MF-003) and a movable ECAM window (R-ECAM-005, R-ECAM-006).

System cases (``full_api``). Each defines the types it exercises with
``define_type``, as the suite's own types have no sticky bits, no FLR and no
multi-function header: :data:`FLR_STICKY` (a PCI Express function that can
do FLR, with sticky RW and RW1C bits) and :data:`MULTIFUNCTION` (a function 0
that says multi-function). The ECAM cases need ``set_ecam_base``, an
extension an adapter declares (spec/formats/adapter.md); certification
leaves them out for an adapter that does not.
"""

from __future__ import annotations

from vpcid.conformance.cases import CMD_MEM, SUITE_VM, _Body, _Sys
from vpcid.conformance.trace import Op, OpKind, define_type_op
from vpcid.conformance.typefile import type_json
from vpcid.model import Bdf, Capability, DeviceType, Register, RegisterClass
from vpcid.model.devicetype import BarKind, BarSpec
from vpcid.model.manager import DEFAULT_ECAM_BASE, ECAM_SIZE

RESET_GROUP, PLUG_GROUP, ECAM_GROUP = "reset", "hot-plug", "ecam"

PCIE_CAP = 0x40
"""Where :data:`FLR_STICKY` has its PCI Express capability."""
DEVICE_CONTROL = PCIE_CAP + 0x08
STICKY_RW, STICKY_RW1C = 0x80, 0x84
""":data:`FLR_STICKY`'s device-specific registers: RW with bits 15:0 sticky, RW1C with bits 3:0 sticky."""
STICKY_RW1C_POWER_ON = 0x0000_00FF


def _flr_sticky() -> DeviceType:
    body = bytes([0x02, 0x00]) + (1 << 28).to_bytes(4, "little") + bytes(4)  # caps, DevCap (FLR), ctl, sta
    writable = bytes(6) + b"\xff\xff" + bytes(2)  # Device Control, Initiate FLR included
    rw1c = bytes(8) + b"\x0f\x00"  # Device Status error bits
    sticky = bytearray(4096)
    sticky[STICKY_RW : STICKY_RW + 2] = b"\xff\xff"
    sticky[STICKY_RW1C] = 0x0F
    return DeviceType(
        name="platform-flr-sticky",
        vendor_id=0x1B36,
        device_id=0x00F1,
        class_code=0xFF0000,
        express=True,
        bars=(BarSpec(BarKind.MEM32, 4096),),
        capabilities=(Capability(0x10, body, writable, rw1c, offset=PCIE_CAP),),
        registers=(
            Register(STICKY_RW, 4, RegisterClass.RW),
            Register(STICKY_RW1C, 4, RegisterClass.RW1C, STICKY_RW1C_POWER_ON),
        ),
        sticky=bytes(sticky),
    )


FLR_STICKY = _flr_sticky()
"""A PCI Express function that can do FLR, with sticky bits in two device-specific registers (R-RST-004)."""
MULTIFUNCTION = DeviceType(
    name="platform-multifunction",
    vendor_id=0x1B36,
    device_id=0x00F2,
    class_code=0xFF0000,
    multifunction=True,
    bars=(BarSpec(BarKind.MEM32, 4096),),
)
"""A function whose header type says multi-function (bit 7), for function 0 (R-MF-001)."""
SINGLE = DeviceType(
    name="platform-single",
    vendor_id=0x1B36,
    device_id=0x00F3,
    class_code=0xFF0000,
    bars=(BarSpec(BarKind.MEM32, 4096),),
)
"""A single-function type (header type bit 7 clear)."""
PLATFORM_TYPES = (FLR_STICKY, MULTIFUNCTION, SINGLE)

FLR_BDF = Bdf(0, 0x0A, 0)
MF_DEVICE = 0x0B
BAR_ADDRESS = 0xC000_0000
"""Where the cases program a BAR that a moved ECAM window then covers (R-ECAM-006)."""
MOVED_ECAM = BAR_ADDRESS
"""The window's new base: over :data:`BAR_ADDRESS`."""


def _define(b: _Body, *types: DeviceType) -> None:
    for dtype in types:
        b.add(define_type_op(type_json(dtype)))


def _cr(b: _Body, bdf: Bdf, offset: int, width: int = 4) -> None:
    b.add(Op(OpKind.CONFIG_READ, vm=SUITE_VM, bdf=bdf, address=offset, width=width))


def _cw(b: _Body, bdf: Bdf, offset: int, width: int, value: int) -> None:
    b.add(Op(OpKind.CONFIG_WRITE, vm=SUITE_VM, bdf=bdf, address=offset, width=width, value=value))


def _dirty_flr_sticky(b: _Body) -> None:
    """Set writable and RW1C bits, sticky and not, and let BAR 0 decode with data in it."""
    _cw(b, FLR_BDF, STICKY_RW, 4, 0xA5A5_5A5A)
    _cw(b, FLR_BDF, STICKY_RW1C, 4, 0x0000_0033)  # clears bits 5, 4 (not sticky) and 1, 0 (sticky)
    _cw(b, FLR_BDF, DEVICE_CONTROL, 2, 0x001F)
    _cw(b, FLR_BDF, 0x3C, 1, 0x0B)
    _cw(b, FLR_BDF, 0x10, 4, BAR_ADDRESS)
    _cw(b, FLR_BDF, 0x04, 2, CMD_MEM)
    b.mw(SUITE_VM, BAR_ADDRESS + 8, 4, 0x1234_5678)


def _read_flr_sticky(b: _Body) -> None:
    for offset in (0x04, 0x10, 0x3C, DEVICE_CONTROL, STICKY_RW, STICKY_RW1C):
        _cr(b, FLR_BDF, offset)
    b.mr(SUITE_VM, BAR_ADDRESS + 8)


def _sys_resets(s: _Sys) -> None:
    b = _Body()
    _define(b, FLR_STICKY)
    b.create_vm(SUITE_VM)
    b.plug(SUITE_VM, FLR_BDF, FLR_STICKY)
    _dirty_flr_sticky(b)
    b.check("R-RST-004")
    b.add(Op(OpKind.RESET, vm=SUITE_VM, bdf=FLR_BDF))
    _read_flr_sticky(b)
    b.setup()
    _dirty_flr_sticky(b)
    b.check("R-RST-004")
    b.reset_vm(SUITE_VM)
    _read_flr_sticky(b)
    s.add(
        "reset-sticky-bits",
        RESET_GROUP,
        "a function reset keeps sticky bits, a VM (power-on) reset clears them",
        b,
    )

    b = _Body()
    _define(b, FLR_STICKY)
    b.create_vm(SUITE_VM)
    b.plug(SUITE_VM, FLR_BDF, FLR_STICKY)
    _dirty_flr_sticky(b)
    b.check("R-RST-005")
    _cw(b, FLR_BDF, DEVICE_CONTROL, 2, 0x8000)  # Initiate FLR
    _read_flr_sticky(b)
    b.setup()
    _dirty_flr_sticky(b)
    b.check("R-RST-005")
    _cw(b, FLR_BDF, DEVICE_CONTROL, 4, 0x000F_801F)  # a dword write through Device Status too
    _read_flr_sticky(b)
    b.setup()
    _dirty_flr_sticky(b)
    b.check("R-RST-005")
    _cw(b, FLR_BDF, DEVICE_CONTROL, 1, 0x80)  # the low byte: bit 7 there is not Initiate FLR
    _cw(b, FLR_BDF, DEVICE_CONTROL + 1, 1, 0x7F)  # the high byte without bit 15: no FLR either
    _read_flr_sticky(b)
    b.iow(SUITE_VM, 0xCF8, 4, 0x8000_0000 | FLR_BDF.packed << 8 | DEVICE_CONTROL)
    b.iow(SUITE_VM, 0xCFD, 1, 0x80)  # through configuration mechanism #1
    _read_flr_sticky(b)
    s.add(
        "reset-initiate-flr",
        RESET_GROUP,
        "a guest write of 1 to Initiate FLR resets the function, sticky bits kept",
        b,
    )


def _sys_multifunction(s: _Sys) -> None:
    fn = [Bdf(0, MF_DEVICE, f) for f in range(8)]
    b = _Body()
    _define(b, MULTIFUNCTION, SINGLE)
    b.create_vm(SUITE_VM)
    b.check("R-MF-001")
    b.plug(SUITE_VM, fn[0], SINGLE)
    b.plug(SUITE_VM, fn[1], SINGLE)  # slot-occupied: function 0 is single-function
    b.plug(SUITE_VM, fn[7], MULTIFUNCTION)
    _cr(b, fn[1], 0)
    b.tables(SUITE_VM)
    b.unplug(SUITE_VM, fn[0])
    b.plug(SUITE_VM, fn[0], MULTIFUNCTION)
    b.plug(SUITE_VM, fn[1], SINGLE)  # bit 7 of functions above 0 is not looked at
    b.plug(SUITE_VM, fn[7], MULTIFUNCTION)
    b.tables(SUITE_VM)
    s.add(
        "multifunction-function-0-decides",
        PLUG_GROUP,
        "functions above 0 need function 0 to say multi-function",
        b,
    )

    b = _Body()
    _define(b, MULTIFUNCTION, SINGLE)
    b.create_vm(SUITE_VM)
    b.check("R-MF-002")
    b.plug(SUITE_VM, fn[3], SINGLE)
    b.plug(SUITE_VM, fn[0], SINGLE)  # slot-occupied: function 3 is present
    b.plug(SUITE_VM, fn[0], MULTIFUNCTION)
    b.unplug(SUITE_VM, fn[0])
    b.check("R-MF-003")
    for f in (0, 3):
        _cr(b, fn[f], 0)
    b.mr(SUITE_VM, DEFAULT_ECAM_BASE + (fn[3].packed << 12))
    _cw(b, fn[3], 0x3C, 1, 0x0A)
    _cr(b, fn[3], 0x3C, 1)
    b.tables(SUITE_VM)
    b.check("R-MF-002")
    b.unplug(SUITE_VM, fn[3])
    b.plug(SUITE_VM, fn[7], SINGLE)
    b.plug(SUITE_VM, fn[0], SINGLE)  # slot-occupied: function 7 is present
    b.tables(SUITE_VM)
    what = "a single-function function 0 needs its device empty; functions above 0 answer alone"
    s.add("multifunction-function-0-last", PLUG_GROUP, what, b)


def _sys_ecam_move(s: _Sys) -> None:
    bdf = Bdf(0, 0x0C, 0)
    b = _Body()
    _define(b, SINGLE)
    b.create_vm(SUITE_VM)
    b.plug(SUITE_VM, bdf, SINGLE)
    _cw(b, bdf, 0x10, 4, BAR_ADDRESS)
    _cw(b, bdf, 0x04, 2, CMD_MEM)
    b.mw(SUITE_VM, BAR_ADDRESS, 4, 0xBA5E_0001)
    b.check("R-ECAM-005")
    for base in (MOVED_ECAM + 0x1000, 1 << 64, (1 << 64) - ECAM_SIZE + 0x1000_0000):
        b.add(Op(OpKind.SET_ECAM_BASE, vm=SUITE_VM, ecam_base=base))  # invalid-argument
    b.add(Op(OpKind.SET_ECAM_BASE, vm=SUITE_VM + 1, ecam_base=MOVED_ECAM))  # unknown-vm
    b.check("R-ECAM-006")
    b.add(Op(OpKind.SET_ECAM_BASE, vm=SUITE_VM, ecam_base=MOVED_ECAM))
    b.mr(SUITE_VM, BAR_ADDRESS)  # the window's bytes: bdf 00:00.0's vendor and device ID (absent: ones)
    b.mr(SUITE_VM, MOVED_ECAM + (bdf.packed << 12))
    b.mr(SUITE_VM, DEFAULT_ECAM_BASE + (bdf.packed << 12))  # the old place is unmapped now
    b.mw(SUITE_VM, MOVED_ECAM + (bdf.packed << 12) + 0x3C, 1, 0x05)
    _cr(b, bdf, 0x3C, 1)
    b.tables(SUITE_VM)
    b.add(Op(OpKind.SET_ECAM_BASE, vm=SUITE_VM, ecam_base=None))
    b.mr(SUITE_VM, BAR_ADDRESS)  # the BAR again, its data kept
    b.mr(SUITE_VM, MOVED_ECAM + (bdf.packed << 12))
    b.snapshot(SUITE_VM, "no-ecam")
    b.add(Op(OpKind.SET_ECAM_BASE, vm=SUITE_VM, ecam_base=0))
    b.mr(SUITE_VM, bdf.packed << 12)
    b.restore_vm(SUITE_VM, "no-ecam")  # the window travels in the snapshot
    b.mr(SUITE_VM, bdf.packed << 12)
    b.mr(SUITE_VM, BAR_ADDRESS)
    s.add(
        "ecam-move",
        ECAM_GROUP,
        "the platform moves and disables the ECAM window; BARs under it hide and return",
        b,
    )


def platform_cases(s: _Sys) -> None:
    """Add the platform cases to the system cases (:func:`vpcid.conformance.cases.system_cases`)."""
    _sys_resets(s)
    _sys_multifunction(s)
    _sys_ecam_move(s)
