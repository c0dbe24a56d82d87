"""Scenario cases for the paths only a declared variant, an edge of a rule or a tie reaches.

System cases (``full_api``), each written against a systematic mutant of the
model that the rest of the suite let through (docs/mutation-testing.md); the
profile named with each is the one whose model tells the mutant apart:

- an I/O BAR programmed at 0x10000 decodes nowhere, and the last window that
  fits below it does (R-DEC-006);
- an expansion ROM enabled while memory decode is off (the command register
  holding bus master only) is not decoding: under ``ignored`` its register
  takes writes, under ``deferred`` it maps when memory decode comes on
  (R-BAR-007, R-DEC-005, R-DEC-003);
- under ``ignored``, a write to the register of a BAR that does not decode,
  beside one that does (the next dword, or the dword after a 64-bit BAR),
  is not a write to the decoding BAR: it takes effect (R-BAR-003, R-DEC-005);
- under ``cf8_low_bits = latched``, 0xCF8 with bit 0 set and the enable
  bit clear selects nothing (R-CAM-005);
- under ``cf8_after_access = clear``, accesses that end just before the data
  window or start just after it leave 0xCF8 as it was (R-CAM-007);
- under ``deferred``, a latched window one BAR size past the BAR's limit is
  rejected (R-SR-005);
- three BARs overlapping, two of one size at one base (a tie in one hash
  bucket) beside a larger one: the lowest BDF wins; removing a BAR from one
  bucket keeps the other buckets of its size class (R-DEC-008, R-DS-006);
- a memory-like BAR keeps bytes a write puts on both sides of a page
  boundary (R-DT-004);
- msi-mme-clamp rewrites the two control bytes only: a clamp after the
  message address's low byte was written leaves that byte (R-DT-008).
"""

from __future__ import annotations

import dataclasses

from vpcid.conformance.cases import (
    CMD_MEM,
    KS_BDF,
    KS_MSI,
    SUITE_VM,
    Script,
    _Body,
    _ks_blob,
    _Player,
    _restore_body,
    _Sys,
    _unclamped_blob,
    _vm_with,
)
from vpcid.conformance.devices import KITCHEN_SINK
from vpcid.conformance.trace import define_type_op
from vpcid.conformance.typefile import type_json
from vpcid.model import Bdf, DeviceType
from vpcid.model import blob as blobfmt
from vpcid.model.catalog import MsiMultipleMessageClamp
from vpcid.model.devicetype import BarKind, BarSpec

SCRIPTS: tuple[Script, ...] = (
    Script(
        "io-bar-address-limit", "decode",
        "an I/O BAR programmed at 0x10000 decodes nowhere (its window would end past the 64 KiB port "
        "space, even though it starts only one BAR size past the last window that fits); at 0xffe0 it "
        "decodes",
        (
            (None, "vm 1; plug 1 00:03.0 kitchen-sink; cw 0x10 0x10000; cw 0x04/2 0x1"),
            ("R-DEC-006", "tables 1; cr 0x10; ior 0xFFE0; ior 0xFFFC"),
            (None, "cw 0x04/2 0; cw 0x10 0xFFE0; cw 0x04/2 0x1"),
            ("R-DEC-006", "iow 0xFFE4 0x12345678; ior 0xFFE4; tables 1"),
        ),
    ),
    Script(
        "rom-enable-without-memory-decode", "decode",
        "an expansion ROM whose enable bit is set while the command register holds bus master only is "
        "not decoding: a second ROM BAR write takes effect (even under ignored), and turning memory "
        "decode on maps it at the address written last (even under deferred)",
        (
            (None, "vm 1; plug 1 00:03.0 kitchen-sink; cw 0x04/2 0x4"),
            ("R-BAR-007", "cw 0x30 0xE0003001; cw 0x30 0xE0008001; cr 0x30"),
            ("R-DEC-005", "tables 1"),
            ("R-DEC-003", "cw 0x04/2 0x6; cr 0x30; mr 0xE0008000; mr 0xE0003000; tables 1"),
        ),
    ),
    Script(
        "bar-writes-beside-a-decoding-bar", "decode",
        "a write to the register of a BAR that does not decode, in the dword after one that does, takes "
        "effect under every variant: BAR5 (I/O, decode off) after BAR4 (memory, decoding), BAR1 "
        "(memory, decode off) after BAR0 (I/O, decoding)",
        (
            (None, "vm 1; plug 1 00:03.0 kitchen-sink; cw 0x20 0xE0004800; cw 0x04/2 0x2"),
            ("R-BAR-003", "cw 0x24 0xC0A0; cr 0x24"),
            ("R-DEC-005", "cr 0x20; tables 1"),
            (None, "cw 0x04/2 0; cw 0x10 0xC040; cw 0x04/2 0x1"),
            ("R-BAR-003", "cw 0x14 0xE0001000; cr 0x14"),
            ("R-DEC-005", "cr 0x10; tables 1"),
        ),
    ),
    Script(
        "cf8-low-bits-without-enable", "config-mechanism",
        "0xCF8 with its enable bit clear selects nothing, whatever its low bits hold (a latched bit 0 "
        "included): the data window reads all ones until the enable bit is set",
        (
            (None, "vm 1; plug 1 00:03.0 kitchen-sink"),
            ("R-CAM-005", "cf8- 0x00 +1; ior 0xCFC; ior 0xCF8; cf8- 0x08 +3; ior 0xCFC/2; ior 0xCFE/1"),
            ("R-CAM-004", "cf8 0x00; ior 0xCFC"),
        ),
    ),
    Script(
        "cf8-after-accesses-beside-the-window", "config-mechanism",
        "accesses that end just before the data window (0xcfb, 0xcfa+2) or start just after it (0xd00) "
        "leave 0xCF8 as it was under every variant; one whose bytes include 0xcff is a data access",
        (
            (None, "vm 1; plug 1 00:03.0 kitchen-sink; cf8 0x00"),
            ("R-CAM-007", "ior 0xCFB/1; ior 0xCF8; ior 0xCFA/2; ior 0xCF8; iow 0xCFB/1 0; ior 0xCF8;"
                          "ior 0xD00/1; ior 0xCF8; iow 0xD00/2 0; ior 0xCF8; ior 0xD00; ior 0xCF8"),
            ("R-CAM-007", "ior 0xCFF/1; ior 0xCF8"),
        ),
    ),
    Script(
        "bar-data-across-a-page", "access",
        "memory-like BAR contents are kept a 4 KiB page at a time: writes whose bytes cross a page "
        "boundary inside a BAR (8 bytes from 0xffc, 4 from 0x1ffe) read back whole, from either page",
        (
            (None, "vm 1; plug 1 00:03.0 kitchen-sink; cw 0x18 0x00100000; cw 0x1C 0x10; cw 0x04/2 0x2"),
            ("R-DT-004", "mw 0x1000100FFC/8 0x1122334455667788; mr 0x1000100FFC/8; mr 0x1000100FFC;"
                         "mr 0x1000101000; mr 0x1000100FF8/8; mr 0x1000101004"),
            ("R-DT-004", "mw 0x1000101FFE/4 0xAABBCCDD; mr 0x1000101FFC/8; mr 0x1000101FFE/4;"
                         "mr 0x1000102000/2"),
        ),
    ),
    Script(
        "overlap-ties-and-removal", "decode",
        "two BARs of one size at one base (e1000s at 00:02.0 and 00:06.0) inside a larger one (a100 at "
        "00:05.0, mapped first): the lowest BDF wins the tie and beats the larger BAR; when the other "
        "e1000 moves away and stops decoding, the first keeps decoding",
        (
            (None, "vm 1; plug 1 00:02.0 e1000; plug 1 00:05.0 a100; plug 1 00:06.0 e1000;"
                   "@00:02.0; cw 0x10 0xE1020000; cw 0x04/2 0x2; mw 0xE1020004 0x11110004; cw 0x04/2 0;"
                   "@00:06.0; cw 0x10 0xE1020000; cw 0x04/2 0x2; mw 0xE1020004 0x66660004; cw 0x04/2 0;"
                   "@00:05.0; cw 0x10 0xE1000000; cw 0x04/2 0x2; mw 0xE1020004 0x55550004"),
            ("R-DEC-008", "@00:06.0; cw 0x04/2 0x2; @00:02.0; cw 0x04/2 0x2; mr 0xE1020004; tables 1"),
            (None, "@00:06.0; cw 0x04/2 0; cw 0x10 0xE1040000; cw 0x04/2 0x2; mr 0xE1040004"),
            ("R-DS-006", "cw 0x04/2 0; mr 0xE1020004; mr 0xE1040004; tables 1"),
        ),
    ),
)  # fmt: skip
"""The cases that compute nothing, as data (played like :data:`vpcid.conformance.cases.SYSTEM_SCRIPTS`)."""

AFTER_MEM64 = DeviceType(
    name="io-after-mem64",
    vendor_id=0x1B36,
    device_id=0x00F1,
    class_code=0xFF0000,
    bars=(BarSpec(BarKind.MEM64, 0x1000), None, BarSpec(BarKind.IO, 4)),
    config_behaviour=MsiMultipleMessageClamp(),
)
"""A 64-bit memory BAR followed by a 4-port I/O BAR whose low byte is writable; its configuration
behaviour (which finds no MSI capability) makes every configuration write re-derive every BAR."""
AFTER_MEM64_BDF = Bdf(0, 8, 0)


def _play_scripts(s: _Sys) -> None:
    for script in SCRIPTS:
        b = _Body()
        player = _Player(b)
        for row in script.rows:
            rule, steps = row[0], row[1]
            b.setup() if rule is None else b.check(rule)
            player.play(steps, system=True)
        s.add(script.name, script.group, script.description, b)


def _io_after_mem64(s: _Sys) -> None:
    """R-DEC-005, R-BAR-003: under ``ignored`` a 64-bit BAR's registers are its two dwords, not the
    one after, whose BAR takes the write."""
    b = _Body()
    b.create_vm(SUITE_VM)
    b.add(define_type_op(type_json(AFTER_MEM64)))
    f = b.plug(SUITE_VM, AFTER_MEM64_BDF, AFTER_MEM64)
    f.cw(0x10, 4, 0xE000_5000)
    f.command(CMD_MEM)
    b.check("R-BAR-003")
    f.cw(0x18, 4, 0xC0A0)
    f.cr(0x18)
    b.check("R-DEC-005")
    f.cr(0x10)
    f.cr(0x14)
    b.tables(SUITE_VM)
    s.add(
        "bar-write-after-a-64-bit-bar",
        "decode",
        "a write to an I/O BAR (decode off) in the dword after a decoding 64-bit memory BAR takes effect "
        "under every variant",
        b,
    )


def _latched_window_past_limit(s: _Sys) -> None:
    """R-SR-005: under ``deferred`` a latched window must end inside its BAR's address space."""
    rec = blobfmt.decode_instance(_ks_blob())

    def with_window(index: int, base: int) -> bytes:
        windows = list(rec.windows)
        windows[index] = base
        return blobfmt.encode_instance(dataclasses.replace(rec, windows=tuple(windows)))

    past = [
        with_window(4, 0x1_0000_0010),  # 16-byte memory BAR, one size past 4 GiB
        with_window(0, 0x1_0020),  # 32-port I/O BAR, one size past 64 KiB
        with_window(6, 0x1_0000_0800),  # 2 KiB ROM, one size past 4 GiB
    ]
    s.add(
        "instance-latched-window-past-limit",
        "blob",
        "a blob whose decode window lies one BAR size past the BAR's address limit (an odd multiple of "
        "its size) is rejected under every variant, latched windows (deferred) included",
        _restore_body(past, "R-SR-005"),
    )


def _msi_clamp_keeps_address(s: _Sys) -> None:
    """R-DT-008: msi-mme-clamp rewrites the control word only."""
    b = _Body()
    (ks,) = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK))
    unclamped = _unclamped_blob(KITCHEN_SINK)
    for value in (0xFC, 0x04):
        b.setup()
        ks.restore(data=unclamped)
        b.check("R-DT-008")
        ks.cw(KS_MSI + 4, 1, value)
        ks.cr(KS_MSI, 4)
        ks.cr(KS_MSI + 4)
    s.add(
        "msi-clamp-keeps-message-address",
        "device-types",
        "a byte write to the MSI message address that clamps Multiple Message Enable changes the control "
        "word's enable field only; the address byte keeps the value written",
        b,
    )


def variant_path_cases(s: _Sys) -> None:
    """Add this module's system cases to ``s``."""
    _play_scripts(s)
    _io_after_mem64(s)
    _latched_window_past_limit(s)
    _msi_clamp_keeps_address(s)


__all__ = ["AFTER_MEM64", "SCRIPTS", "variant_path_cases"]
