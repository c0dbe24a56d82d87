"""Scenario cases for register maps (R-REG-001..R-REG-012).

System cases (``full_api``): each defines the type it exercises with
``define_type`` and plugs it, because an implementation may decline the
``registers`` behaviour (certification then leaves these cases out and
reports the type as declined, :func:`vpcid.conformance.certify.declined_cases`),
while every full-API implementation must know the suite's own types.

The register cases run on :data:`~vpcid.model.catalog.REGISTER_SINK`
(registers of every class, widths 1 to 8, side effects of every action, a
4 KiB memory BAR, an I/O BAR and a memory-like BAR):

- per register, after the power-on reads of the case's registers: the walk
  (the reset value's complement, all ones, zero, each read back) with reads
  of what its side effects act on, a second read of read-to-clear
  registers after their sources set them, a write to part of it, a read
  from its last bytes into what follows, and a write and read of the gap
  after it;
- side effects of one access on several registers, triggers, partial
  writes that fire effects, reads that clear part of a register;
- reset and VM reset; save and restore; restores of blobs no register
  state can be.

Two more cases define types of their own: register maps that each break one
rule of R-REG-001 (rejected) next to a valid one, and configuration-space
registers whose bits have their own classes (R-REG-012).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from vpcid.conformance.cases import CMD_IO, CMD_MEM, SUITE_VM, _Body, _Fn, _plan, _Sys
from vpcid.conformance.trace import define_type_op
from vpcid.conformance.typefile import parse_type_definition, type_json
from vpcid.model import Bdf, DataManager, DeviceType, Profile
from vpcid.model import blob as blobfmt
from vpcid.model.behaviour import PAGE_SIZE
from vpcid.model.catalog import REGISTER_SINK
from vpcid.model.devicetype import BarKind, BarSpec
from vpcid.model.registers import ACCESS_RULE, Access, Action, BarRegister, Effect, RegisterMap

GROUP = "registers"
REGISTER_BDF = Bdf(0, 6, 0)
"""Where the cases plug register-sink (where the random engine plugs it too)."""
CONFIG_BITS_BDF = Bdf(0, 9, 0)
MAX_OPS = 64
"""Operations a case may hold (tests/test_cases.py)."""
PATTERN = 0xA5C3_5A3C_A5C3_5A3C
"""Partial writes and literal register values: bits of both kinds in every byte."""

_CLASS_PRIORITY = (Access.RC, Access.RW1C, Access.RW1S, Access.WO, Access.RW, Access.RO, Access.RSVD)


def _regmap(dtype: DeviceType) -> RegisterMap:
    behaviour = dtype.behaviour
    assert isinstance(behaviour, RegisterMap), dtype.name
    return behaviour


def class_rule(reg: BarRegister) -> str:
    """The requirement a walk of ``reg`` checks: that of its class with the most behaviour (a
    register of ``ro`` bits with a few ``rw1c`` ones is an R-REG-004 register)."""
    present = set(reg.classes())
    return ACCESS_RULE[next(access for access in _CLASS_PRIORITY if access in present)]


# ------------------------------------------------------------------ register-sink in a case body


class _Sink:
    """register-sink defined, plugged at :data:`REGISTER_BDF` of the suite VM and decoding; accesses by
    register or by BAR offset (8-byte accesses to the I/O BAR as two dwords, low first)."""

    def __init__(self, body: _Body, bars: Sequence[int] = (0, 1)) -> None:
        self.body = body
        self.map = _regmap(REGISTER_SINK)
        body.setup()
        body.create_vm(SUITE_VM)
        body.add(define_type_op(type_json(REGISTER_SINK)))
        self.f: _Fn = body.plug(SUITE_VM, REGISTER_BDF, REGISTER_SINK)
        self.bars = tuple(bars)
        self.decode()

    def decode(self) -> None:
        """Program the case's BARs at their primary addresses and turn both decodes on."""
        for index in self.bars:
            bar = self.f.bar(index)
            self.f.program(bar, self.f.addr(bar))
        self.f.command(CMD_IO | CMD_MEM)

    def size(self, bar: int) -> int:
        return self.f.bar(bar).size

    def read(self, bar: int, offset: int, width: int) -> None:
        handle = self.f.bar(bar)
        for at, piece in _pieces(handle.is_io, offset, width):
            self.f.rd(handle, self.f.addr(handle) + at, piece)

    def write(self, bar: int, offset: int, width: int, value: int) -> None:
        handle = self.f.bar(bar)
        for at, piece in _pieces(handle.is_io, offset, width):
            part = value >> 8 * (at - offset) & ((1 << 8 * piece) - 1)
            self.f.wr(handle, self.f.addr(handle) + at, piece, part)

    def read_reg(self, reg: BarRegister) -> None:
        self.read(reg.bar, reg.offset, reg.width)

    def write_reg(self, reg: BarRegister, value: int) -> None:
        self.write(reg.bar, reg.offset, reg.width, value)

    def reg(self, name: str) -> BarRegister:
        return self.map.register(name)


def _pieces(io: bool, offset: int, width: int) -> list[tuple[int, int]]:
    """(offset, width) of the accesses that make one access of ``width`` bytes: I/O takes at most 4."""
    if io and width == 8:
        return [(offset, 4), (offset + 4, 4)]
    return [(offset, width)]


def _targets(regmap: RegisterMap, reg: BarRegister) -> list[BarRegister]:
    """The registers ``reg``'s side effects act on, each once, in declared order."""
    return [regmap.register(name) for name in dict.fromkeys(e.target for e in reg.on_write)]


def _gap_after(regmap: RegisterMap, reg: BarRegister, bar_size: int) -> int:
    """Bytes of the gap right after ``reg`` (0: a register or the BAR's end follows)."""
    at = reg.end
    while at < bar_size and regmap.at(reg.bar, at) is None:
        at += 1
    return at - reg.end


def _exercise(sink: _Sink, reg: BarRegister) -> None:
    """What each register of a case gets after the power-on reads (see the module docstring)."""
    body, regmap = sink.body, sink.map
    rule = class_rule(reg)
    targets = _targets(regmap, reg)
    for value in (~reg.reset & reg.full, reg.full, 0):
        body.check(rule)
        sink.write_reg(reg, value)
        sink.read_reg(reg)
        body.check("R-REG-009")
        for target in targets:
            sink.read_reg(target)
    read_to_clear = bool(reg.mask_of(Access.RC))
    for source, effect in regmap.sources(reg):  # set bits for the second read or the partial write to lose
        if effect.action in (Action.SET, Action.SET_WRITTEN):
            body.check("R-REG-009")
            sink.write_reg(source, effect.when or effect.mask & source.full)
            sink.read_reg(reg)
            if read_to_clear:
                body.check("R-REG-006")
                sink.read_reg(reg)
    body.check("R-REG-008")
    if reg.width >= 2:
        half = reg.width // 2
        sink.write(reg.bar, reg.offset + half, half, PATTERN & ((1 << 8 * half) - 1))
        sink.read_reg(reg)
    bar_size = sink.size(reg.bar)
    if reg.end + 2 <= bar_size:
        start, width = (reg.end - 2, 4) if reg.width >= 2 else (reg.end - 1, 2)
        sink.read(reg.bar, start, width)
    gap = _gap_after(regmap, reg, bar_size)
    if gap:
        width = 4 if gap >= 4 else 2 if gap >= 2 else 1
        sink.write(reg.bar, reg.end, width, (1 << 8 * width) - 1)
        sink.read(reg.bar, reg.end, width)


def _power_on(sink: _Sink, regs: Sequence[BarRegister]) -> None:
    """Read every register of ``regs`` whole before anything else touches them (R-REG-010: plug)."""
    sink.body.check("R-REG-010")
    for reg in regs:
        sink.read_reg(reg)


def _class_cases(s: _Sys) -> None:
    """R-REG-002..R-REG-010 register by register: register-sink's registers in (BAR, offset) order, in
    as few cases per BAR as :data:`MAX_OPS` allows, of sizes as even as can be (:func:`_even_runs`),
    each case decoding only the BAR it exercises."""
    regmap = _regmap(REGISTER_SINK)

    def build(regs: Sequence[BarRegister]) -> _Body:
        body = _Body()
        sink = _Sink(body, (regs[0].bar,))
        _power_on(sink, regs)
        for reg in regs:
            _exercise(sink, reg)
        return body

    for bar in sorted(regmap.bars):
        regs = [r for r in regmap.registers if r.bar == bar]
        setup = len(_Sink(_Body(), (bar,)).body.ops)
        costs = [len(build([reg]).ops) - setup for reg in regs]
        for start, stop in _even_runs(costs, MAX_OPS - setup):
            chunk = regs[start:stop]
            body = build(chunk)
            assert len(body.ops) <= MAX_OPS, [r.name for r in chunk]
            _add_class_case(s, chunk, body)


def _even_runs(costs: Sequence[int], capacity: int) -> list[tuple[int, int]]:
    """Split ``costs`` into the fewest consecutive runs whose sums fit ``capacity``, the largest sum as
    small as can be: (start, stop) of each run."""
    count = len(costs)
    best: dict[int, tuple[int, int, list[tuple[int, int]]]] = {count: (0, 0, [])}
    for start in range(count - 1, -1, -1):
        options: list[tuple[int, int, list[tuple[int, int]]]] = []
        for stop in range(start + 1, count + 1):
            size = sum(costs[start:stop])
            if size > capacity:
                break
            runs, largest, rest = best[stop]
            options.append((runs + 1, max(largest, size), [(start, stop), *rest]))
        if not options:
            raise ValueError(f"a register's operations ({costs[start]}) exceed a case's {capacity}")
        best[start] = min(options, key=lambda option: option[:2])
    return best[0][2]


def _add_class_case(s: _Sys, regs: Sequence[BarRegister], body: _Body) -> None:
    first, last = regs[0].name.lower(), regs[-1].name.lower()
    names = ", ".join(r.name for r in regs)
    kind = "I/O" if _is_io(regs[0].bar) else "memory"
    s.add(
        f"register-map-classes-{first}-to-{last}",
        GROUP,
        f"register-sink's {kind} BAR{regs[0].bar} registers {names}: power-on values, each walked "
        "(complement of its reset value, all ones, zero) with read-backs and reads of what its side "
        "effects act on, read-to-clear bits read twice, a write to part of it, a read into what "
        "follows it, a write to the gap after it",
        body,
    )


def _is_io(bar: int) -> bool:
    spec = REGISTER_SINK.bar(bar)
    return spec is not None and spec.kind is BarKind.IO


# ------------------------------------------------------------------ side effects and partial accesses


def _side_effect_case(s: _Sys) -> None:
    """R-REG-008, R-REG-009: triggers, one access over several registers, effects that do not chain,
    partial writes that fire effects, partial reads of a read-to-clear register, a memory-like BAR."""
    body = _Body()
    sink = _Sink(body, (0, 1, 2))
    reg = sink.reg
    ctrl, status, ims, imc = reg("CTRL"), reg("STATUS"), reg("IMS"), reg("IMC")
    icr, ics, doorbell = reg("ICR"), reg("ICS"), reg("DOORBELL")
    iostat, iodb = reg("IOSTAT"), reg("IODB")

    body.check("R-REG-009")  # a trigger bit decides whether set and clear act, in declared order
    for value in (0x1, 0x2, 0x1, 0x3, 0x4, 0x0):
        sink.write_reg(ctrl, value)
        sink.read_reg(status)
    body.check("R-REG-008")  # one write over IMS and IMC: both classes first, then both registers' effects
    sink.write(0, ims.offset, 8, 0x0000_0030_0000_00F0)
    sink.read_reg(ims)
    sink.read_reg(imc)
    body.check("R-REG-009")  # an effect's change fires no further effects
    sink.write_reg(ims, 0x5)
    sink.read(0, ims.offset, 8)
    sink.write_reg(imc, 0x4)
    sink.read(0, ims.offset, 8)
    body.check("R-REG-009")  # set-written takes the written value, zero in bytes the write does not cover
    sink.write(0, ics.offset + 1, 1, 0x80)
    sink.read_reg(icr)
    sink.write(0, ics.offset, 8, 0xFF02_0201_0003_0102)  # ICS, then SCRATCH, FLAGS and REV
    body.check("R-REG-008")  # a read clears the rc bits of the bytes it returns, and only those
    sink.read(0, icr.offset + 1, 1)
    sink.read_reg(icr)
    sink.read_reg(icr)
    body.check("R-REG-009")  # an effect without a trigger acts on every write covering a byte
    sink.write(0, doorbell.offset + 3, 1, 0)
    sink.read(0, icr.offset + 1, 1)
    sink.write(0, doorbell.offset - 2, 4, 0)
    sink.read(0, icr.offset, 2)
    sink.write_reg(iodb, 0)
    sink.read_reg(iostat)
    body.check("R-REG-004")
    sink.write_reg(iostat, 0x04)
    sink.read_reg(iostat)
    body.check("R-REG-002")  # an effect changes an ro bit; writes to it do not
    sink.write_reg(ctrl, 0x1)
    sink.write_reg(status, 0x0)
    sink.read_reg(status)
    sink.write_reg(status, 0xFFFF_FFFF)
    sink.read_reg(status)
    body.check("R-REG-008")  # a BAR that declares no register is memory-like
    sink.write(2, 0x10, 8, PATTERN)
    sink.read(2, 0x10, 8)
    sink.read(2, 0x14, 2)
    s.add(
        "register-map-side-effects",
        GROUP,
        "side effects of register-sink's writes: CTRL's triggers set and clear STATUS bit 0 in order, "
        "one write over IMS and IMC applies both classes then both effects, effects fire no further "
        "effects, set-written sees only the covered bytes, partial reads clear only their bytes of ICR, "
        "untriggered effects act on any covering write, an effect changes a read-only bit; BAR2 "
        "declares no register and is memory",
        body,
    )


# ------------------------------------------------------------------ reset, save and restore


def _dirty(sink: _Sink) -> None:
    """Move every register register-sink lets a write move off its reset value: all ones over each
    BAR's registers (8-byte writes, dwords on the I/O BAR), then IMS, which IMC's effect cleared."""
    regmap = sink.map
    for bar in sorted(regmap.bars):
        starts = dict.fromkeys(r.offset & ~7 for r in regmap.registers if r.bar == bar)
        for start in starts:
            sink.write(bar, start, 8, (1 << 64) - 1)
    sink.write_reg(sink.reg("IMS"), 0xFFFF_FFFF)


def _read_all(sink: _Sink, names: Sequence[str] | None = None) -> None:
    for reg in sink.map.registers:
        if names is None or reg.name in names:
            sink.read_reg(reg)


def _reset_case(s: _Sys) -> None:
    """R-REG-010: a function reset, then a VM reset, put every register back to its reset value."""
    body = _Body()
    sink = _Sink(body)
    body.setup()
    _dirty(sink)
    body.check("R-REG-010")
    sink.f.reset()
    body.setup()
    sink.decode()
    body.check("R-REG-010")
    _read_all(sink)
    body.setup()
    for bar, start in ((0, 0x10), (0, 0x28), (0, 0x30), (1, 0x00), (1, 0x08)):
        sink.write(bar, start, 8, (1 << 64) - 1)
    body.check("R-REG-010")
    body.reset_vm(SUITE_VM)
    body.setup()
    sink.decode()
    body.check("R-REG-010")
    _read_all(sink, ("CTRL", "STATUS", "SCRATCH", "FLAGS", "QWORD", "IOCTL", "IOSTAT", "IOQ"))
    s.add(
        "register-map-reset",
        GROUP,
        "after every register-sink register was written, a function reset and then a VM reset put each "
        "back to its reset value",
        body,
    )


_SAVED_VALUES = (
    ("CTRL", 0x1230),
    ("STATUS", 0x20),
    ("IMS", 0x0F),
    ("IMC", 0x03),
    ("ICS", 0x0102),
    ("DOORBELL", 0),
    ("SCRATCH", 0x1357),
    ("FLAGS", 0x80),
    ("QWORD", 0x0ACE_0FBA_5E00_D00D),
    ("LAST", 0x600D_F00D),
    ("IOCTL", 0x4321),
    ("IOSTAT", 0x41),
    ("IOQ", 0x0123_4567_89AB_CDEF),
)
"""Writes that move register-sink's registers to values of their own before a save."""


def _save_restore_case(s: _Sys) -> None:
    """R-REG-011: a restore brings back every register as saved, after other writes changed them."""
    body = _Body()
    sink = _Sink(body)
    for name, value in _SAVED_VALUES:
        sink.write_reg(sink.reg(name), value)
    body.check("R-REG-011")
    sink.f.save("registers")
    body.setup()
    _dirty(sink)
    body.check("R-REG-011")
    sink.f.restore("registers")
    _read_all(sink)
    s.add(
        "register-map-save-restore",
        GROUP,
        "register-sink's registers written, saved, written again and restored read as saved",
        body,
    )


PageEdit = Callable[[dict[tuple[int, int], bytearray]], None]
"""A change to a blob's BAR pages, (BAR, page) -> the page's bytes."""


def _sink_blob(edit: PageEdit | None = None, extra: bytes = b"") -> bytes:
    """A blob of register-sink at :data:`REGISTER_BDF`, decoding at the cases' addresses, SCRATCH
    holding 0x600D (its reset value is 0xBEEF) and STATUS bit 0 set by CTRL's effect; ``edit`` then
    changes its BAR pages ((BAR, page) -> bytes), ``extra`` is its device state."""
    plan = _plan(REGISTER_SINK)
    dm = DataManager(Profile())
    dm.create_vm(SUITE_VM)
    dm.plug(SUITE_VM, REGISTER_BDF, REGISTER_SINK)
    dm.config_write(SUITE_VM, REGISTER_BDF, 0x10, 4, plan[0][0])
    dm.config_write(SUITE_VM, REGISTER_BDF, 0x14, 4, plan[1][0])
    dm.config_write(SUITE_VM, REGISTER_BDF, 0x04, 2, CMD_IO | CMD_MEM)
    regmap = _regmap(REGISTER_SINK)
    dm.mmio_write(SUITE_VM, plan[0][0] + regmap.register("SCRATCH").offset, 2, 0x600D)
    dm.mmio_write(SUITE_VM, plan[0][0] + regmap.register("CTRL").offset, 4, 0x11)
    record = blobfmt.decode_instance(dm.save(SUITE_VM, REGISTER_BDF))
    pages = {(bar, page): bytearray(data) for bar, page, data in record.pages}
    if edit is not None:
        edit(pages)
    kept = tuple((bar, page, bytes(data)) for (bar, page), data in sorted(pages.items()) if any(data))
    return blobfmt.encode_instance(dataclasses.replace(record, pages=kept, extra=extra))


def _set_byte(bar: int, offset: int, value: int) -> PageEdit:
    def edit(pages: dict[tuple[int, int], bytearray]) -> None:
        page = pages.setdefault((bar, offset // PAGE_SIZE), bytearray(PAGE_SIZE))
        page[offset % PAGE_SIZE] = value

    return edit


def _restore_checks_case(s: _Sys) -> None:
    """R-REG-011: a blob is rejected (blob-mismatch) and changes nothing when its register BARs hold
    what no register state can: a byte in a gap, a wo or rsvd bit set, a read-only bit no effect
    changes off its reset value, device state; a blob whose differences are all register state is
    restored."""
    regmap = _regmap(REGISTER_SINK)
    body = _Body()
    sink = _Sink(body)
    scratch = regmap.register("SCRATCH")
    bad: tuple[tuple[PageEdit | None, bytes], ...] = (
        (_set_byte(0, 0x004, 0x01), b""),  # a byte in a gap
        (_set_byte(1, 0x14, 0x80), b""),  # a byte in a gap of the I/O BAR
        (_set_byte(0, regmap.register("CTRL").offset + 2, 0x01), b""),  # an rsvd bit
        (_set_byte(0, regmap.register("DOORBELL").offset, 0x01), b""),  # a wo bit
        (_set_byte(0, regmap.register("REV").offset, 0x5B), b""),  # a read-only bit off its reset value
        (_set_byte(0, regmap.register("CAPS").offset + 7, 0x80), b""),  # the same, high in 8 bytes
        (None, b"\x00"),  # device state
    )
    for edit, extra in bad:
        body.check("R-REG-011")
        sink.f.restore(data=_sink_blob(edit, extra))
        sink.read_reg(scratch)
    body.check("R-REG-011")  # STATUS bit 0 is ro, but CTRL's effect sets it; BAR2 is memory
    sink.f.restore(data=_sink_blob(_set_byte(2, 0x20, 0x77)))
    sink.read_reg(scratch)
    sink.read_reg(regmap.register("STATUS"))
    sink.f.program(sink.f.bar(2), sink.f.addr(sink.f.bar(2)))
    sink.read(2, 0x20, 4)
    s.add(
        "register-map-restore-checks",
        GROUP,
        "register-sink blobs holding a byte in a gap (memory and I/O BAR), an rsvd bit, a wo bit, a "
        "read-only bit off its reset value or device state are rejected and change nothing; a blob "
        "with a read-only bit a side effect sets and data in the memory-like BAR is restored",
        body,
    )


# ------------------------------------------------------------------ R-REG-001: declarations

_BREAK_NAME = "register-map-break"
_BREAK_BASE = DeviceType(
    name=_BREAK_NAME, vendor_id=0x1B36, device_id=0x00F3, class_code=0x00FF00,
    bars=(BarSpec(BarKind.MEM32, 4096),),
    behaviour=RegisterMap((
        BarRegister("STATUS", 0, 0x0, 4, Access.RW1C, reset=0x3),
        BarRegister("DOORBELL", 0, 0x4, 4, Access.WO, on_write=(Effect("STATUS", Action.SET, mask=0x1),)),
        BarRegister("KICK", 0, 0x8, 1, Access.WO),
    )),
)  # fmt: skip
"""A small valid register map; :func:`_register_map_breaks` edits it to break one rule at a time."""

Definition = dict[str, Any]


def _base_definition() -> Definition:
    defn = copy.deepcopy(type_json(_BREAK_BASE))
    defn.pop("fingerprint", None)
    return defn


def _with_register(**fields: Any) -> Definition:
    """The base with one more register (a free 4-byte slot at 0x10 unless ``fields`` say otherwise)."""
    defn = _base_definition()
    defn["bar_registers"].append({"name": "EXTRA", "bar": 0, "offset": "0x10", "width": 4, **fields})
    return defn


def _with_effect(register: str, **effect: Any) -> Definition:
    """The base with one more side effect on ``register``'s writes."""
    defn = _base_definition()
    entry = next(r for r in defn["bar_registers"] if r["name"] == register)
    entry.setdefault("on_write", []).append(effect)
    return defn


def _register_map_breaks() -> list[Definition]:
    """Definitions that each break one rule of R-REG-001 and nothing else."""
    renamed = _base_definition()
    renamed["bar_registers"][1]["name"] = "STATUS"
    no_registers = _base_definition()
    no_registers["bar_registers"] = []
    named_only = _base_definition()
    del named_only["bar_registers"]
    memory = _base_definition()
    memory["behaviour"] = "memory"
    many = _with_effect("KICK", target="STATUS", action="set", mask="0x1")
    many["bar_registers"][2]["on_write"] *= 256
    return [
        _with_register(name=""),
        _with_register(name="TWO WORDS"),
        _with_register(name="R" * 65),
        _with_register(name="TAB\tBED"),
        _with_register(name="CAF\u00c9"),
        renamed,  # a name used twice
        _with_register(bar=1),  # a BAR slot the type does not implement
        _with_register(width=3),
        _with_register(offset="0x12"),  # not a multiple of its width
        _with_register(offset="0x1000"),  # past the BAR's end
        _with_register(offset="0x4", width=2),  # shares bytes with DOORBELL
        _with_register(access="rwx"),
        _with_register(bits={"32:32": "rw"}),  # outside its 32 bits
        _with_register(bits={"7:0": "ro", "3:3": "rw"}),  # bit 3 has two classes
        _with_register(bits={"3:0": "toggle"}),
        _with_register(width=1, reset="0x100"),  # does not fit
        _with_register(access="wo", reset="0x1"),
        _with_register(bits={"31:16": "rsvd"}, reset="0x10000"),
        _with_effect("DOORBELL", target="NOWHERE", action="set", mask="0x1"),
        _with_effect("DOORBELL", target="STATUS", action="toggle", mask="0x1"),
        _with_effect("DOORBELL", target="STATUS", action="set", mask="0x0"),
        _with_effect("DOORBELL", target="STATUS", action="set", mask="0x100000000"),  # wider than STATUS
        _with_effect("KICK", target="STATUS", action="set-written", mask="0x100"),  # wider than KICK
        _with_effect("KICK", target="STATUS", action="set", mask="0x1", when="0x100"),
        _with_effect("DOORBELL", target="STATUS", action="set-written", mask="0x1", when="0x1"),
        _with_effect("STATUS", target="KICK", action="set", mask="0x1"),  # a wo bit holds nothing
        many,  # 256 side effects
        no_registers,
        named_only,  # the behaviour named without its registers
        memory,  # registers under another behaviour name
    ]


def _definitions_case(s: _Sys) -> None:
    """R-REG-001: each definition that breaks one rule of register maps is rejected and defines
    nothing; the valid map then defines, plugs and serves its registers."""
    body = _Body()
    body.check("R-REG-001")
    for defn in _register_map_breaks():
        body.add(define_type_op(defn))
    valid = _base_definition()
    body.add(define_type_op(valid))  # the name is still free
    body.setup()
    body.create_vm(SUITE_VM)
    f = body.plug(SUITE_VM, REGISTER_BDF, parse_type_definition(valid))
    bar = f.bar(0)
    f.program(bar, f.addr(bar))
    f.command(CMD_MEM)
    body.check("R-REG-001")
    for offset in (0x0, 0x4, 0x8, 0xC):
        f.mr(f.addr(bar) + offset)
    f.mw(f.addr(bar) + 0x4, 4, 0)
    f.mr(f.addr(bar))
    s.add(
        "register-map-definitions",
        GROUP,
        "register maps that break one rule each (names empty, too long, not printable ASCII, with a "
        "space or used twice; a BAR not implemented; widths, alignment, the BAR's end, shared bytes; "
        "unknown classes, bit ranges outside or overlapping; reset values too wide or setting wo or "
        "rsvd bits; side effects naming no register, an unknown action, a zero or too wide mask or "
        "trigger, a wo target bit, more than 255; no register; the behaviour name without its map "
        "or the map under another name) are rejected (bad-device-type); the valid map then plugs",
        body,
    )


# ------------------------------------------------------------------ R-REG-012: configuration space


def _config_bits_definition(name: str, registers: list[Definition]) -> Definition:
    return {
        "name": name, "vendor_id": "0x1b36", "device_id": "0x00f4", "class_code": "0xff0000",
        "bars": [{"kind": "mem32", "size": 4096}], "registers": registers,
    }  # fmt: skip


CONFIG_REGISTERS: list[Definition] = [
    {"offset": "0x40", "width": 4, "class": "rw", "value": "0x00f00a5a",
     "bits": {"31:24": "rsvd", "23:16": "rw1c", "11:8": "ro"}},
    {"offset": "0x44", "width": 2, "class": "ro", "value": "0x5a3c", "bits": {"7:0": "rw"}},
    {"offset": "0x46", "width": 2, "class": "rw1c", "value": "0x0ff5",
     "bits": {"15:12": "rsvd", "3:0": "ro"}},
    {"offset": "0x48", "width": 1, "class": "rsvd", "value": "0x05", "bits": {"3:0": "rw"}},
    {"offset": "0x4c", "width": 4, "class": "rw1c", "value": "0xffff00ff",
     "bits": {"15:8": "rsvd", "31:24": "rw"}},
]  # fmt: skip
"""Configuration registers whose bits have classes of their own (R-REG-012)."""


def _config_bits_case(s: _Sys) -> None:
    """R-REG-012: bits of a configuration register take their own classes (ro, rw, rw1c, rsvd) as
    masks; a configuration register with rw1s, rc or wo bits, or a value setting an rsvd bit, is
    rejected."""
    body = _Body()
    body.check("R-REG-012")
    first = CONFIG_REGISTERS[0]
    for bits in ({"3:0": "rw1s"}, {"3:0": "rc"}, {"31:28": "wo"}, {"31:24": "rsvd", "7:0": "rc"}):
        body.add(define_type_op(_config_bits_definition("config-register-bits", [{**first, "bits": bits}])))
    body.add(define_type_op(_config_bits_definition(
        "config-register-bits", [{**first, "bits": {"31:24": "rsvd"}, "value": "0x01000000"}]
    )))  # fmt: skip
    valid = _config_bits_definition("config-register-bits", CONFIG_REGISTERS)
    body.add(define_type_op(valid))
    body.setup()
    body.create_vm(SUITE_VM)
    f = body.plug(SUITE_VM, CONFIG_BITS_BDF, parse_type_definition(valid))
    body.check("R-REG-012")
    for register in CONFIG_REGISTERS:
        offset, width = int(register["offset"], 16), register["width"]
        full = (1 << 8 * width) - 1
        f.cr(offset, width)
        for value in (PATTERN & full, full, 0):
            f.cw(offset, width, value)
            f.cr(offset, width)
        if width >= 2:
            f.cw(offset + width - 1, 1, 0xFF)
            f.cr(offset, width)
    s.add(
        "config-register-bits",
        GROUP,
        "configuration registers whose bit ranges have their own classes (ro, rw, rw1c, rsvd in rw, "
        "ro, rw1c and rsvd registers of 1, 2 and 4 bytes) read their values, take writes as each bit's "
        "class says, also in part; one with rw1s, rc or wo bits or a value setting an rsvd bit is "
        "rejected",
        body,
    )


def register_cases(s: _Sys) -> None:
    """Add every register case to ``s`` (one line of :func:`vpcid.conformance.cases.system_cases`)."""
    _definitions_case(s)
    _class_cases(s)
    _side_effect_case(s)
    _reset_case(s)
    _save_restore_case(s)
    _restore_checks_case(s)
    _config_bits_case(s)


__all__ = ["CONFIG_REGISTERS", "GROUP", "REGISTER_BDF", "class_rule", "register_cases"]
