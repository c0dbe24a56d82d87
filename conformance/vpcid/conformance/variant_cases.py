"""Scenario cases for the variant axes observed in real VMMs (spec/variants.md, R-VAR-001).

Each case's observations differ between an axis's default and its other values, so an
implementation (or a mutant) that runs on the wrong value fails it:

- ``cf8_narrow`` and the reset control register (R-CAM-001, R-CAM-008): narrow accesses to
  0xCF8-0xCFB, and 0xCF9's bits 1 and 3 where it is the reset control register (the platform
  reset, bit 2, only in a system case, since a real VMM's reset cannot be undone inside one device
  case);
- ``cf8_low_bits = "offset"`` (R-CAM-002, R-CAM-004): 0xCF8 bits 1:0 select bytes;
- ``bar_at_top`` (R-DEC-006): a 64-bit BAR ending at 2^64-1 (device case), a 32-bit BAR and the ROM
  ending at 4 GiB (system case: on real platforms firmware lives there);
- ``address_zero`` (R-DEC-004): BARs at address and port zero (system case: RAM and legacy
  devices live there on real platforms);
- ``overlap = "first-mapped"`` (R-DEC-008): the lower BAR moved onto one already decoding;
- ``bar_sizing`` (R-BAR-003): writes of address bits below a BAR's size, and the sizing probe;
- ``unmapped_io_read`` (R-ACC-004), ``config_past_space`` (R-CFG-009): reads that nothing answers;
- ``odd_word_write`` (R-ACC-003): word writes at offset 1 of a dword.

Registered by :func:`vpcid.conformance.cases.device_cases` and :func:`~vpcid.conformance.cases.system_cases`.
"""

from __future__ import annotations

from vpcid.conformance.cases import (
    CF8,
    CFC,
    CMD_IO,
    CMD_MEM,
    KS_BDF,
    ONES32,
    ROM_BAR,
    SUITE_VM,
    U64,
    Script,
    _Body,
    _Dev,
    _scripted,
    _Sys,
    _vm_with,
)
from vpcid.conformance.devices import KITCHEN_SINK
from vpcid.model import DataManager

RESET_CONTROL = 0xCF9
"""The platform's reset control register (R-CAM-008)."""

NARROW_ADDRESS_ACCESSES = Script(
    "narrow-address-accesses", "config-mechanism",
    "byte and word accesses to 0xCF8-0xCFB are ordinary I/O nothing decodes (default), the same with "
    "the reset control register at 0xCF9 (reset-control), read CONFIG_ADDRESS's low bytes "
    "(read-address) or read and replace its bytes (address-bytes)",
    (
        ("R-CAM-001", "cf8 0x3C; ior 0xCF8/1; ior 0xCFA/2; ior 0xCFB/1; ior 0xCF8/2; ior 0xCFA"),
        ("R-CAM-008", "ior 0xCF9/1; iow 0xCF9/1 0x02; ior 0xCF9/1; ior 0xCF8/2; ior 0xCF8"),
        ("R-CAM-001", "iow 0xCF8/1 0x08; iow 0xCFA/2 0; iow 0xCFB/1 0x80; ior 0xCF8; ior 0xCFC;"
                      "iow 0xCF8/2 0x3C; ior 0xCF8; ior 0xCFC"),
        ("R-CAM-008", "cf8 0x3C; iow 0xCF9/1 0; ior 0xCF9/1; ior 0xCF8"),
        ("R-CAM-001", "iow 0xCF8 0x800301FC; ior 0xCF8/1; ior 0xCF8/2; ior 0xCFA/2"),
        ("R-CAM-008", "iow 0xCF9/1 0xF3; ior 0xCF9/1; ior 0xCF8"),  # not bit 3: PIIX3 has no full reset
    ),
)  # fmt: skip

CF8_BYTE_SELECT = Script(
    "cf8-byte-select", "config-mechanism",
    "0xCF8 bits 1:0 select no bytes (default) or are ORed into the register offset (offset), so a "
    "dword read then spans two dwords and bytes past 0xFF read zero",
    (
        ("R-CAM-004", "cf8 0x00 +1; ior 0xCFC; ior 0xCFC/1; ior 0xCFD/1; ior 0xCFE/2; cf8 0x08 +2; ior 0xCFC;"
                      "ior 0xCFC/2"),
        ("R-CAM-004", "cf8 0x3C +1; iow 0xCFC/1 0x5A; cr 0x3C; cf8 0x3C +3; ior 0xCFC; ior 0xCFE/2"),
        ("R-CAM-004", "cf8 0xFC +3; ior 0xCFC; ior 0xCFD/2; cf8 0x3C; ior 0xCFC"),
    ),
)  # fmt: skip


NOTHING_THERE = Script(
    "nothing-there", "access",
    "a port nothing decodes (0xCF8, 0xCFA, 0xCFB) reads all ones by default and zero under "
    "unmapped_io_read = zeros; a "
    "conventional function's offsets from 0x100 read all ones by default and zero under "
    "config_past_space = zeros, and take no write either way",
    (
        ("R-ACC-004", "cf8- 0x3C; ior 0xCF8/1; ior 0xCFA/2; iow 0xCFB/1 0x12; ior 0xCFB/1; ior 0xCFA"),
        ("R-CFG-009", "cr 0x100; cr 0x102/2; cr 0xFFF/1; cw 0x100 0x12345678; cr 0x100", "conventional"),
        ("R-CFG-009", "cr 0x3C", "conventional"),
    ),
)  # fmt: skip


ODD_WORD_WRITES = Script(
    "odd-word-writes", "configuration-space",
    "a 2-byte configuration write at offset 1 of a dword is performed by default and dropped under "
    "odd_word_write = dropped, through the API, the 0xCFC window and ECAM",
    (
        ("R-ACC-003", "cw 0x05/2 0xFFFF; cr 0x04; cw 0x0D/2 0xFFFF; cr 0x0C; cw 0x04/2 0; cw 0x0C/1 0"),
        ("R-ACC-003", "cf8 0x04; iow 0xCFD/2 0xFFFF; ior 0xCFC; cr 0x04/2; cw 0x04/2 0"),
        ("R-ACC-003", "ew 0x05/2 0xFFFF; er 0x04; cw 0x04/2 0", "ecam"),
    ),
)  # fmt: skip


def _top_of_space(d: _Dev) -> None:
    """R-DEC-006 (V-BAR-TOP): a 64-bit BAR whose last byte is 2^64-1 decodes only by default."""
    f = d.start()
    bars = [b for b in f.placed(rom=False) if b.is64]
    if not bars:
        return
    bar = bars[0]
    top = U64 - bar.size
    f.program(bar, top)
    f.command(CMD_MEM)
    f.check("R-DEC-006")
    f.poke(bar, top, 0x5EA1_7095)
    f.peek(bar, top)
    f.mr(U64 - 4)
    f.read_reg(bar)
    f.command(0)
    f.program(bar, f.addr(bar))
    f.command(CMD_MEM)
    f.peek(bar, f.addr(bar))
    d.done(
        f"top-of-space-{bar.label}",
        "decode",
        "a 64-bit BAR whose last byte is 2^64-1 decodes by default and not under bar_at_top = unmapped",
    )


def _top_of_space_restore(d: _Dev) -> None:
    """R-DEC-006 (V-BAR-TOP), R-SR-003: a blob whose BAR window ends at 2^64 restores by default and
    is refused under bar_at_top = unmapped, where no BAR decodes there."""
    f = d.start()
    bars = [b for b in f.placed(rom=False) if b.is64]
    if not bars:
        return
    bar, target = bars[0], d.target
    top = U64 - bar.size
    dm = DataManager()
    dm.register_type(target.dtype)
    dm.create_vm(target.vm)
    dm.plug(target.vm, target.bdf, target.dtype)
    dm.config_write(target.vm, target.bdf, bar.reg, 4, top & 0xFFFF_FFFF)
    dm.config_write(target.vm, target.bdf, bar.reg + 4, 4, top >> 32)
    dm.config_write(target.vm, target.bdf, 0x04, 2, CMD_MEM)
    f.check("R-DEC-006")
    f.restore(data=dm.save(target.vm, target.bdf))
    f.peek(bar, top)
    f.read_reg(bar)
    d.done(
        f"top-of-space-restore-{bar.label}",
        "save-restore",
        "a blob whose BAR decodes up to 2^64-1 restores by default and is refused under "
        "bar_at_top = unmapped",
    )


def _overlap_first_mapped(d: _Dev) -> None:
    """R-DEC-008 (V-OVERLAP): the lower BAR moved onto a higher one that already decodes there wins by
    default and under last-mapped, and loses under first-mapped."""
    f0 = d.start()
    for region in ("io", "low", "high"):
        bars = [b for b in f0.movable() if b.region == region and not b.is_rom]
        if len(bars) < 2:
            continue
        low_i, high_i = bars[0], bars[1]
        f = d.start()
        at = f.addr(low_i if low_i.size >= high_i.size else high_i, 0)
        other = f.addr(low_i, 1)
        off = max(low_i.probe, high_i.probe) if min(low_i.size, high_i.size) >= 8 else 0
        f.program(high_i, at)
        f.program(low_i, other)
        f.command(low_i.enable)
        f.wr(high_i, at + off, 4, 0x2000_0000 | high_i.index)
        f.wr(low_i, other + off, 4, 0x1000_0000 | low_i.index)
        f.check("R-DEC-008")
        f.program(low_i, at)  # the lower BAR moved onto the higher one, which decoded first
        f.rd(high_i, at + off)
        f.wr(high_i, at + off, 2, 0x4444)
        f.command(0)
        f.program(low_i, other)
        f.command(low_i.enable)
        f.rd(low_i, other + off)
        f.rd(high_i, at + off)
        d.done(
            f"overlap-first-mapped-{low_i.label}-{high_i.label}",
            "decode",
            f"when {low_i.label} is moved onto {high_i.label}, which decodes there already, the lower "
            "index wins by default and under last-mapped, the earlier mapping under first-mapped",
        )
        return


def _bar_sizing(d: _Dev) -> None:
    """R-BAR-003 (V-BAR-SIZING): address bits below a BAR's size are read-only zero by default; under
    probe-only a write keeps them (and the BAR, misaligned, decodes nowhere) unless it is a dword whose
    address bits are all ones."""
    f = d.start()
    bars = [b for b in f.placed(rom=False) if b.size >= 32]
    if not bars:
        return
    bar = next((b for b in bars if not b.is_io), bars[0])
    base = f.addr(bar)
    f.check("R-BAR-003")
    f.cw(bar.reg, 4, 0xFFFF_FFF0 if not bar.is_io else 0xFFFF_FFFC)
    f.cr(bar.reg)
    f.cw(bar.reg, 4, ONES32)
    f.cr(bar.reg)
    f.cw(bar.reg, 2, 0xFFF0)
    f.cw(bar.reg + 2, 2, 0xFFFF)
    f.cr(bar.reg)
    f.cw(bar.reg, 4, (base | bar.size // 2) & ONES32)
    f.cr(bar.reg)
    if bar.is64:
        f.cw(bar.reg + 4, 4, base >> 32)
    f.command(bar.enable)
    f.rd(bar, base + bar.probe)
    f.command(0)
    f.program(bar, base)
    f.command(bar.enable)
    f.poke(bar, base, 0x51_2E0F)
    f.peek(bar, base)
    f.cr(bar.reg)
    d.done(
        f"sizing-writes-{bar.label}",
        "bars",
        "a BAR register keeps only the address bits above its size (default), or every address bit "
        "except from a dword write whose address bits are all ones (probe-only)",
    )


def variant_device_cases(d: _Dev) -> None:
    """Append this module's device cases for ``d``'s target (called by ``device_cases``)."""
    for script in (NARROW_ADDRESS_ACCESSES, CF8_BYTE_SELECT, NOTHING_THERE, ODD_WORD_WRITES):
        _scripted(d, script)
    _top_of_space(d)
    _top_of_space_restore(d)
    _overlap_first_mapped(d)
    _bar_sizing(d)


# ---------------------------------------------------------------- system cases


def _sys_reset_control(s: _Sys) -> None:
    """R-CAM-008: 0xCF9 bit 2 resets the platform (R-RST-003 semantics); bits 1 and 3 read back."""
    b = _Body()
    (ks,) = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK))
    bar = ks.bar(1)
    ks.program(bar, ks.addr(bar))
    ks.command(CMD_IO | CMD_MEM)
    ks.cw(0x3C, 1, 0x0B)
    ks.poke(bar, ks.addr(bar), 0xC0FF_EE00)
    ks.cf8(0x3C)
    b.check("R-CAM-008")
    b.ior(SUITE_VM, RESET_CONTROL, 1)
    b.iow(SUITE_VM, RESET_CONTROL, 1, 0x0A)
    b.ior(SUITE_VM, RESET_CONTROL, 1)
    b.ior(SUITE_VM, CF8, 4)
    b.iow(SUITE_VM, RESET_CONTROL, 1, 0x0E)  # bit 2: the platform reset
    b.ior(SUITE_VM, RESET_CONTROL, 1)
    b.ior(SUITE_VM, CF8, 4)
    ks.cr(0x04)
    ks.cr(0x3C)
    ks.read_reg(bar)
    ks.peek(bar, ks.addr(bar))
    b.tables(SUITE_VM)
    b.check("R-CAM-001")
    ks.cf8(0x3C)
    b.iow(SUITE_VM, CF8 + 2, 2, 0x8000)
    b.iow(SUITE_VM, CF8, 2, 0x0804)
    b.ior(SUITE_VM, CF8, 4)
    b.ior(SUITE_VM, CFC, 4)
    b.ior(SUITE_VM, 0xCF6, 4)
    b.check("R-CAM-008")
    b.iow(SUITE_VM, RESET_CONTROL, 1, 0x0A)
    b.ior(SUITE_VM, 0xCF7, 4)  # an unaligned dword with the reset control register in its middle
    b.ior(SUITE_VM, RESET_CONTROL, 2)
    s.add(
        "reset-control-register",
        "reset",
        "where 0xCF9 is the reset control register, a write of bit 2 resets the platform: devices to "
        "power-on, 0xCF8 and 0xCF9 to zero; bits 1 and 3 read back as written",
        b,
    )


def _sys_top_of_32bit_space(s: _Sys) -> None:
    """R-DEC-006 (V-BAR-TOP): a 32-bit BAR and the ROM ending at 4 GiB, and an I/O BAR ending at 64 KiB."""
    b = _Body()
    (ks,) = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK))
    mem, rom, io = ks.bar(1), ks.bar(6), ks.bar(5)
    ks.program(mem, (1 << 32) - mem.size)
    ks.cw(0x10 + 4 * io.index, 4, 0x1_0000 - io.size)
    ks.command(CMD_IO | CMD_MEM)
    b.check("R-DEC-006")
    ks.poke(mem, (1 << 32) - mem.size, 0x70B0_0001)
    ks.mr((1 << 32) - 4)
    ks.iow(0x1_0000 - 4, 4, 0x70B0_0002)
    ks.ior(0x1_0000 - 4)
    b.tables(SUITE_VM)
    ks.program(mem, (1 << 32) - 2 * mem.size)
    ks.peek(mem, (1 << 32) - 2 * mem.size)
    ks.program(rom, (1 << 32) - rom.size)
    ks.mr((1 << 32) - rom.size)
    b.tables(SUITE_VM)
    ks.cw(ROM_BAR, 4, ((1 << 32) - 2 * rom.size) | 1)
    ks.mr((1 << 32) - 2 * rom.size)
    b.tables(SUITE_VM)
    s.add(
        "top-of-32-bit-space",
        "decode",
        "a 32-bit BAR and the ROM whose last byte is 0xFFFFFFFF decode by default and not under "
        "bar_at_top = unmapped; an I/O BAR ending at 64 KiB decodes under both",
        b,
    )


def _sys_address_zero(s: _Sys) -> None:
    """R-DEC-004 (V-ADDR-ZERO): a memory BAR and an I/O BAR at address zero."""
    b = _Body()
    (ks,) = _vm_with(b, SUITE_VM, (KS_BDF, KITCHEN_SINK))
    mem, io = ks.bar(1), ks.bar(0)
    ks.command(CMD_IO | CMD_MEM)
    b.check("R-DEC-004")
    ks.mw(0, 4, 0x2E70_0001)
    ks.mr(4)
    ks.iow(4, 4, 0x2E70_0002)
    ks.ior(4)
    b.tables(SUITE_VM)
    b.check("R-DEC-010")
    ks.program(mem, ks.addr(mem))
    ks.peek(mem, ks.addr(mem))
    ks.mr(4)
    b.tables(SUITE_VM)
    b.check("R-DEC-004")
    ks.program(io, 0)
    ks.command(CMD_IO | CMD_MEM)
    ks.ior(4)
    b.tables(SUITE_VM)
    s.add(
        "address-zero",
        "decode",
        "BARs at address zero decode nowhere by default and at zero under address_zero = decodes",
        b,
    )


def variant_system_cases(s: _Sys) -> None:
    """Append this module's system cases (called by ``system_cases``)."""
    _sys_reset_control(s)
    _sys_top_of_32bit_space(s)
    _sys_address_zero(s)
