"""Register maps: registers inside BARs, bit by bit (R-REG-001..R-REG-011).

A device type declares its registers as :class:`BarRegister` values - name,
BAR, offset, width, an access class per bit (:class:`Access`, refined by
:class:`Bits`), a reset value and side effects of writes (:class:`Effect`) -
and gathers them in a :class:`RegisterMap`. The map is the type's BAR
behaviour (:class:`~vpcid.model.behaviour.BarBehaviour`, named
``registers``), so every implementation that runs Python behaviours (the
model, the Cython backend, the KVM adapter, the vfio-user server) serves it
unchanged. Register values live in the BAR's sparse data at their offsets
(R-REG-011), so the blob carries them.

Example::

    nic = RegisterMap((
        BarRegister("VERSION", bar=0, offset=0x0, width=4, access=Access.RO, reset=0x0001_0002),
        BarRegister("ISR", bar=0, offset=0x8, width=4, access=Access.RW1C),
        BarRegister("DOORBELL", bar=0, offset=0xC, width=4, access=Access.WO,
                    on_write=(Effect("ISR", Action.SET, mask=0x1),)),
    ))
    DeviceType(name="nic", ..., bars=(BarSpec(BarKind.MEM32, 4096),), behaviour=nic)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from vpcid.model.behaviour import PAGE_SIZE, DeviceData
from vpcid.model.errors import DeviceTypeError

REGISTER_MAP_NAME = "registers"
"""The BAR behaviour name of every register map (R-REG-001); no other behaviour may use it."""
WIDTHS = (1, 2, 4, 8)
MAX_REGISTERS = 4096
MAX_EFFECTS = 255
MAX_NAME = 64


class Access(StrEnum):
    """What reads and writes do to one bit of a register (R-REG-002..R-REG-007)."""

    RO = "ro"
    RW = "rw"
    RW1C = "rw1c"
    RW1S = "rw1s"
    RC = "rc"
    WO = "wo"
    RSVD = "rsvd"


ACCESS_CODES = {access: code for code, access in enumerate(Access)}
"""Fingerprint code of each class (spec/formats/device-type.md): ro 0, rw 1, ... rsvd 6."""
CONFIG_ACCESS = frozenset({Access.RO, Access.RW, Access.RW1C, Access.RSVD})
"""The classes configuration-space registers can hold: those the per-byte masks express (R-REG-012)."""
ACCESS_RULE = {
    Access.RO: "R-REG-002",
    Access.RSVD: "R-REG-002",
    Access.RW: "R-REG-003",
    Access.RW1C: "R-REG-004",
    Access.RW1S: "R-REG-005",
    Access.RC: "R-REG-006",
    Access.WO: "R-REG-007",
}
"""The requirement that states each class's behaviour."""


class Action(StrEnum):
    """What a side effect does to its target register's bits (R-REG-009)."""

    SET = "set"
    CLEAR = "clear"
    SET_WRITTEN = "set-written"
    CLEAR_WRITTEN = "clear-written"


ACTION_CODES = {action: code for code, action in enumerate(Action)}
"""Fingerprint code of each action: set 0, clear 1, set-written 2, clear-written 3."""


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise DeviceTypeError(message)


def _is_int(value: object) -> bool:
    return type(value) is int


def bit_list(mask: int) -> str:
    """Bit numbers of ``mask`` as people read them: ``3``, ``0, 4`` or ``31:8``."""
    bits = [k for k in range(mask.bit_length()) if mask >> k & 1]
    runs: list[tuple[int, int]] = []
    for bit in bits:
        if runs and runs[-1][1] == bit - 1:
            runs[-1] = (runs[-1][0], bit)
        else:
            runs.append((bit, bit))
    return ", ".join(str(low) if low == high else f"{high}:{low}" for low, high in runs)


@dataclass(frozen=True, slots=True)
class Bits:
    """Bits ``high`` down to ``low`` (inclusive) of a register, with their own class (R-REG-001)."""

    high: int
    low: int
    access: Access

    def __post_init__(self) -> None:
        _need(
            _is_int(self.high) and _is_int(self.low) and 0 <= self.low <= self.high,
            f"a bit range is HIGH:LOW with 0 <= LOW <= HIGH, got {self.high!r}:{self.low!r}",
        )
        _need(
            isinstance(self.access, Access),
            f"bits {self.label}: the class must be an Access ({', '.join(Access)}), got {self.access!r}",
        )

    @property
    def mask(self) -> int:
        """The range as a mask of the register's value."""
        return ((1 << (self.high - self.low + 1)) - 1) << self.low

    @property
    def label(self) -> str:
        """``HIGH:LOW``, or ``N`` for one bit."""
        return str(self.low) if self.high == self.low else f"{self.high}:{self.low}"

    @classmethod
    def parse(cls, text: str, access: Access) -> Bits:
        """Bits from ``"N"`` or ``"HIGH:LOW"`` (decimal)."""
        high, _, low = text.partition(":")
        try:
            return cls(int(high), int(low or high), access)
        except ValueError:
            raise DeviceTypeError(f"bits {text!r}: write N or HIGH:LOW in decimal") from None


@dataclass(frozen=True, slots=True)
class Effect:
    """A side effect of a write to a register on the ``target`` register's bits (R-REG-009).

    ``set``/``clear`` act on ``mask`` when the written value has a one in
    ``when`` (on every write when ``when`` is 0); ``set-written`` and
    ``clear-written`` act on the bits of ``mask`` written as one.
    """

    target: str
    action: Action
    mask: int
    when: int = 0

    def __post_init__(self) -> None:
        _need(type(self.target) is str, f"a side effect's target is a register name, got {self.target!r}")
        _need(
            isinstance(self.action, Action),
            f"side effect on {self.target!r}: the action is one of {', '.join(Action)}, got {self.action!r}",
        )
        _need(
            _is_int(self.mask) and 0 < self.mask < 1 << 64,
            f"side effect on {self.target!r}: the mask is a non-zero 64-bit integer, got {self.mask!r}",
        )
        _need(
            _is_int(self.when) and 0 <= self.when < 1 << 64,
            f"side effect on {self.target!r}: the trigger is a 64-bit integer, got {self.when!r}",
        )
        _need(
            not self.when or self.action in (Action.SET, Action.CLEAR),
            f"side effect on {self.target!r}: only set and clear take a trigger; {self.action} acts "
            "on the bits written as one",
        )

    def acts(self, written: int) -> bool:
        """Whether a write of ``written`` (uncovered bytes zero) fires a set or clear effect."""
        return self.when == 0 or bool(written & self.when)


@dataclass(frozen=True, slots=True)
class BarRegister:
    """A register inside BAR ``bar`` at ``offset`` (R-REG-001).

    ``access`` is the class of every bit that no entry of ``bits`` gives
    another one; ``reset`` the value at power-on and reset (R-REG-010);
    ``on_write`` the side effects of writing it, in order (R-REG-009).
    """

    name: str
    bar: int
    offset: int
    width: int
    access: Access = Access.RW
    reset: int = 0
    bits: tuple[Bits, ...] = ()
    on_write: tuple[Effect, ...] = ()

    def __post_init__(self) -> None:
        name = self.name
        _need(
            type(name) is str
            and 0 < len(name) <= MAX_NAME
            and name.isascii()
            and name.isprintable()
            and " " not in name,
            f"a register name is 1-{MAX_NAME} printable ASCII characters without spaces, got {name!r}",
        )
        where = f"register {name!r}"
        _need(_is_int(self.bar) and 0 <= self.bar <= 5, f"{where}: the BAR is a slot 0-5, got {self.bar!r}")
        _need(
            _is_int(self.width) and self.width in WIDTHS,
            f"{where}: the width is 1, 2, 4 or 8 bytes, got {self.width!r}",
        )
        _need(
            _is_int(self.offset) and 0 <= self.offset < 1 << 64 and self.offset % self.width == 0,
            f"{where}: the offset must be a multiple of its width {self.width}, got {self.offset!r}",
        )
        _need(
            isinstance(self.access, Access),
            f"{where}: the class must be an Access ({', '.join(Access)}), got {self.access!r}",
        )
        for name_, kind in (("bits", Bits), ("on_write", Effect)):
            value = getattr(self, name_)
            _need(
                type(value) is tuple and all(isinstance(v, kind) for v in value),
                f"{where}: {name_} is a tuple of {kind.__name__}",
            )
        _need(len(self.on_write) <= MAX_EFFECTS, f"{where}: at most {MAX_EFFECTS} side effects")
        taken = 0
        for bits in self.bits:
            _need(
                bits.high < 8 * self.width,
                f"{where}: bits {bits.label} lie outside its {8 * self.width} bits",
            )
            _need(not taken & bits.mask, f"{where}: bit {bit_list(taken & bits.mask)} is given two classes")
            taken |= bits.mask
        _need(
            _is_int(self.reset) and 0 <= self.reset <= self.full,
            f"{where}: the reset value {self.reset!r} does not fit {self.width} bytes",
        )
        silent = self.reset & (self.mask_of(Access.WO) | self.mask_of(Access.RSVD))
        _need(
            not silent,
            f"{where}: bit {bit_list(silent)} is wo or rsvd and reads zero, so it resets to zero "
            f"(reset value {self.reset:#x})",
        )

    @property
    def full(self) -> int:
        """Every bit of the register."""
        return (1 << (8 * self.width)) - 1

    @property
    def end(self) -> int:
        """The offset just past the register."""
        return self.offset + self.width

    def mask_of(self, access: Access) -> int:
        """The bits of class ``access``."""
        rest = self.full
        found = 0
        for bits in self.bits:
            rest &= ~bits.mask
            if bits.access is access:
                found |= bits.mask
        return found | (rest if self.access is access else 0)

    def access_at(self, bit: int) -> Access:
        """The class of bit ``bit`` (0 = least significant)."""
        for bits in self.bits:
            if bits.low <= bit <= bits.high:
                return bits.access
        return self.access

    def classes(self) -> tuple[Access, ...]:
        """The class of each bit, bit 0 first (what the fingerprint encodes)."""
        return tuple(self.access_at(bit) for bit in range(8 * self.width))

    def where(self) -> str:
        """``BAR0+0x10``: where the register lies."""
        return f"BAR{self.bar}+{self.offset:#x}"


@dataclass(frozen=True, slots=True)
class CompiledRegister:
    """A register as the map runs it: its class masks and its effects resolved to register indices."""

    reg: BarRegister
    readable: int
    rw: int
    rw1c: int
    rw1s: int
    rc: int
    silent: int
    """``wo`` and ``rsvd`` bits: read zero, store nothing."""
    effects: tuple[tuple[int, Effect], ...]


class RegisterMap:
    """The BAR behaviour of a type with registers (R-DT-003, R-REG-001..R-REG-011).

    Built from :class:`BarRegister` values; construction checks what a
    declaration can get wrong by itself (R-REG-001), :meth:`fit` what the
    type's BARs decide. BARs without registers are memory-like (R-DT-004).
    Subclasses may override the ``_``-prefixed rules of one class to plant a
    bug (the suite's mutants do).
    """

    name = REGISTER_MAP_NAME

    def __init__(self, registers: Iterable[BarRegister]) -> None:
        try:
            regs = tuple(registers) if not isinstance(registers, (str, bytes)) else ()
        except TypeError:
            raise DeviceTypeError(f"a register map holds BarRegister values, got {registers!r}") from None
        _need(all(isinstance(r, BarRegister) for r in regs), "a register map holds BarRegister values")
        _need(
            0 < len(regs) <= MAX_REGISTERS,
            f"a register map holds 1-{MAX_REGISTERS} registers, got {len(regs)}",
        )
        ordered = tuple(sorted(regs, key=lambda r: (r.bar, r.offset)))
        index = {r.name: k for k, r in enumerate(ordered)}
        _need(
            len(index) == len(ordered),
            f"register name {_first_twice([r.name for r in regs])!r} is used twice",
        )
        self.registers = ordered
        """The registers in ascending (BAR, offset) order (the order of effects and of the fingerprint)."""
        self._bytes: dict[int, dict[int, int]] = {}
        for k, reg in enumerate(ordered):
            lanes = self._bytes.setdefault(reg.bar, {})
            for offset in range(reg.offset, reg.end):
                other = lanes.get(offset)
                if other is not None:
                    raise DeviceTypeError(
                        f"registers {ordered[other].name!r} and {reg.name!r} share byte "
                        f"{offset:#x} of BAR{reg.bar}"
                    )
                lanes[offset] = k
        self._index = index
        self._compiled = tuple(self._compile(reg) for reg in ordered)
        self._reset_images: dict[tuple[int, int], bytes] | None = None
        self._page_rules: dict[tuple[int, int], tuple[int, int, int]] | None = None
        self._effect_bits: list[int] = [0] * len(ordered)
        for compiled in self._compiled:
            for target, effect in compiled.effects:
                self._effect_bits[target] |= effect.mask

    def _compile(self, reg: BarRegister) -> CompiledRegister:
        where = f"register {reg.name!r}"
        effects: list[tuple[int, Effect]] = []
        for effect in reg.on_write:
            target = self._index.get(effect.target)
            _need(
                target is not None,
                f"{where}: its side effect names {effect.target!r}, which the map does not hold",
            )
            assert target is not None
            goal = self.registers[target]
            _need(
                effect.mask <= goal.full,
                f"{where}: side effect mask {effect.mask:#x} is wider than {goal.name!r} ({goal.width} B)",
            )
            written = effect.action in (Action.SET_WRITTEN, Action.CLEAR_WRITTEN)
            _need(
                not written or effect.mask <= reg.full,
                f"{where}: {effect.action} mask {effect.mask:#x} is wider than the written register",
            )
            _need(effect.when <= reg.full, f"{where}: trigger {effect.when:#x} is wider than the register")
            silent = effect.mask & (goal.mask_of(Access.WO) | goal.mask_of(Access.RSVD))
            _need(
                not silent,
                f"{where}: its side effect changes bit {bit_list(silent)} of {goal.name!r}, "
                "which is wo or rsvd and holds no value",
            )
            effects.append((target, effect))
        silent = reg.mask_of(Access.WO) | reg.mask_of(Access.RSVD)
        return CompiledRegister(
            reg,
            reg.full & ~silent,
            reg.mask_of(Access.RW),
            reg.mask_of(Access.RW1C),
            reg.mask_of(Access.RW1S),
            reg.mask_of(Access.RC),
            silent,
            tuple(effects),
        )

    # ------------------------------------------------------------------ what the type checks
    def fit(self, bar_sizes: Mapping[int, int]) -> None:
        """Check every register against the type's implemented BARs (slot -> size) (R-REG-001)."""
        for reg in self.registers:
            size = bar_sizes.get(reg.bar)
            _need(
                size is not None,
                f"register {reg.name!r} lies in BAR{reg.bar}, which the type does not "
                "implement (not the upper half of a 64-bit BAR, not the ROM)",
            )
            assert size is not None
            _need(
                reg.end <= size,
                f"register {reg.name!r} ({reg.where()}, {reg.width} bytes) runs past the "
                f"end of BAR{reg.bar} ({size:#x} bytes)",
            )

    @property
    def bars(self) -> frozenset[int]:
        """The BAR slots that declare registers."""
        return frozenset(self._bytes)

    def register(self, name: str) -> BarRegister:
        """The register called ``name``."""
        found = self._index.get(name)
        if found is None:
            raise KeyError(name)
        return self.registers[found]

    def at(self, bar: int, offset: int) -> BarRegister | None:
        """The register holding byte ``offset`` of BAR ``bar``, or None (a gap, or a memory-like BAR)."""
        found = self._bytes.get(bar, {}).get(offset)
        return None if found is None else self.registers[found]

    def changed_by_effects(self, reg: BarRegister) -> int:
        """The bits of ``reg`` some side effect can change (R-REG-009, R-REG-011)."""
        return self._effect_bits[self._index[reg.name]]

    def sources(self, reg: BarRegister) -> tuple[tuple[BarRegister, Effect], ...]:
        """The registers whose writes act on ``reg``, with each effect."""
        k = self._index[reg.name]
        return tuple((c.reg, effect) for c in self._compiled for target, effect in c.effects if target == k)

    # ------------------------------------------------------------------ the rules of each class
    def _apply_write(self, c: CompiledRegister, old: int, value: int, covered: int) -> int:
        """A register's value after a write of ``value`` to its ``covered`` bits (R-REG-002..R-REG-005,
        R-REG-007): rw bits take the value, written ones clear rw1c bits and set rw1s bits."""
        new = (old & ~(c.rw & covered)) | (value & c.rw & covered)
        new &= ~(value & c.rw1c & covered)
        return new | (value & c.rw1s & covered)

    def _after_read(self, c: CompiledRegister, value: int, covered: int) -> int:
        """A register's value after a read returned its ``covered`` bits: rc bits cleared (R-REG-006)."""
        return value & ~(c.rc & covered)

    def _apply_effect(self, effect: Effect, target: int, written: int) -> int:
        """The target's value after ``effect`` of a write of ``written`` (R-REG-009)."""
        action = effect.action
        if action is Action.SET:
            return target | effect.mask if effect.acts(written) else target
        if action is Action.CLEAR:
            return target & ~effect.mask if effect.acts(written) else target
        if action is Action.SET_WRITTEN:
            return target | (written & effect.mask)
        return target & ~(written & effect.mask)

    def _reset_value(self, reg: BarRegister) -> int:
        """The value a register takes at power-on and reset (R-REG-010)."""
        return reg.reset

    # ------------------------------------------------------------------ the BarBehaviour protocol
    def read(self, data: DeviceData, bar: int, offset: int, length: int) -> bytes:
        """The bytes of registers and gaps (zero) an access covers; rc bits it returned are then
        cleared (R-REG-006, R-REG-008)."""
        lanes = self._bytes.get(bar)
        store = data.bar_memory(bar)
        if lanes is None:
            return store.read(offset, length)  # R-DT-004: a BAR without registers
        out = bytearray(length)
        for k, covered in self._covered(lanes, offset, length).items():
            c = self._compiled[k]
            reg = c.reg
            value = int.from_bytes(store.read(reg.offset, reg.width), "little")
            shown = value & c.readable
            for lane in range(reg.width):
                if covered >> (8 * lane) & 0xFF:
                    out[reg.offset + lane - offset] = shown >> (8 * lane) & 0xFF
            after = self._after_read(c, value, covered)
            if after != value:
                store.write(reg.offset, after.to_bytes(reg.width, "little"))
        return bytes(out)

    def write(self, data: DeviceData, bar: int, offset: int, payload: bytes) -> None:
        """Each covered register's classes, then the side effects of the written registers
        (R-REG-008, R-REG-009); bytes in gaps are dropped."""
        lanes = self._bytes.get(bar)
        store = data.bar_memory(bar)
        if lanes is None:
            store.write(offset, payload)  # R-DT-004
            return
        written: list[tuple[int, int]] = []
        for k, covered in sorted(self._covered(lanes, offset, len(payload)).items()):
            c = self._compiled[k]
            reg = c.reg
            value = 0
            for lane in range(reg.width):
                at = reg.offset + lane - offset
                if 0 <= at < len(payload):
                    value |= payload[at] << (8 * lane)
            old = int.from_bytes(store.read(reg.offset, reg.width), "little")
            new = self._apply_write(c, old, value, covered) & ~c.silent
            if new != old:
                store.write(reg.offset, new.to_bytes(reg.width, "little"))
            written.append((k, value & covered))
        for k, value in written:
            for target, effect in self._compiled[k].effects:
                goal = self.registers[target]
                goal_store = data.bar_memory(goal.bar)
                old = int.from_bytes(goal_store.read(goal.offset, goal.width), "little")
                new = self._apply_effect(effect, old, value) & goal.full
                if new != old:
                    goal_store.write(goal.offset, new.to_bytes(goal.width, "little"))

    def _covered(self, lanes: dict[int, int], offset: int, length: int) -> dict[int, int]:
        """Register index -> the mask of its bits that bytes ``[offset, offset+length)`` cover
        (R-REG-008): whole bytes, only those the access reaches."""
        found: dict[int, int] = {}
        for at in range(offset, offset + length):
            k = lanes.get(at)
            if k is not None:
                found[k] = found.get(k, 0) | 0xFF << (8 * (at - self.registers[k].offset))
        return found

    def reset(self, data: DeviceData) -> None:
        """Every register to its reset value, gaps to zero (R-REG-010, R-RST-002): one page image per
        page that holds registers."""
        if self._reset_images is None:
            images: dict[tuple[int, int], bytearray] = {}
            for reg in self.registers:
                building = images.setdefault((reg.bar, reg.offset // PAGE_SIZE), bytearray(PAGE_SIZE))
                start = reg.offset % PAGE_SIZE
                building[start : start + reg.width] = self._reset_value(reg).to_bytes(reg.width, "little")
            self._reset_images = {key: bytes(image) for key, image in images.items()}
        for (bar, page), image in self._reset_images.items():
            data.bar_memory(bar).write(page * PAGE_SIZE, image)

    def check(self, data: DeviceData) -> str | None:
        """What a restored blob's register BARs hold that no register state can be (R-REG-011): a byte
        in a gap, a ``wo`` or ``rsvd`` bit set, an ``ro`` bit no side effect changes off its reset value."""
        if data.extra:
            return "a register map keeps no extra device state"
        if self._page_rules is None:
            self._page_rules = self._build_page_rules()
        for bar in self._bytes:
            store = data.memory.get(bar)
            pages = store.pages if store is not None else {}
            for page, content in pages.items():
                if (bar, page) not in self._page_rules and any(content):
                    lane = next(k for k, byte in enumerate(content) if byte)
                    return self._misfit(bar, page * PAGE_SIZE + lane, content[lane])
        for (bar, page), (zero, fixed, value) in self._page_rules.items():
            store = data.memory.get(bar)
            stored = store.pages.get(page) if store is not None else None
            word = int.from_bytes(stored, "little") if stored is not None else 0
            bad = word & zero or (word ^ value) & fixed
            if bad:
                bit = (bad & -bad).bit_length() - 1
                return self._misfit(bar, page * PAGE_SIZE + bit // 8, word >> (bit & ~7) & 0xFF)
        return None

    def _build_page_rules(self) -> dict[tuple[int, int], tuple[int, int, int]]:
        """(BAR, page) -> (bits that must be zero, ro bits no effect changes, their reset values)."""
        rules: dict[tuple[int, int], list[int]] = {}
        for k, c in enumerate(self._compiled):
            reg = c.reg
            rule = rules.setdefault((reg.bar, reg.offset // PAGE_SIZE), [(1 << 8 * PAGE_SIZE) - 1, 0, 0])
            shift = 8 * (reg.offset % PAGE_SIZE)
            rule[0] &= ~((reg.full & ~c.silent) << shift)
            fixed = reg.mask_of(Access.RO) & ~self._effect_bits[k]
            rule[1] |= fixed << shift
            rule[2] |= (reg.reset & fixed) << shift
        return {key: (zero, fixed, value) for key, (zero, fixed, value) in rules.items()}

    def _misfit(self, bar: int, offset: int, byte: int) -> str:
        """Why byte ``offset`` of BAR ``bar`` holding ``byte`` is no register state (R-REG-011)."""
        reg = self.at(bar, offset)
        if reg is None:
            return f"BAR{bar} byte {offset:#x} lies in no register but holds {byte:#04x}"
        value = byte << 8 * (offset - reg.offset)
        k = self._index[reg.name]
        silent = value & self._compiled[k].silent
        if silent:
            return f"register {reg.name!r} has wo or rsvd bit {bit_list(silent)} set"
        fixed = reg.mask_of(Access.RO) & ~self._effect_bits[k]
        bits = bit_list((value ^ reg.reset) & fixed & 0xFF << 8 * (offset - reg.offset))
        return f"register {reg.name!r} read-only bit {bits} differs from its reset value {reg.reset:#x}"

    # ------------------------------------------------------------------ identity
    def encoding(self) -> bytes:
        """The register map's part of the fingerprint input (R-DT-002; spec/formats/device-type.md)."""
        out = [struct.pack("<H", len(self.registers))]
        for reg in self.registers:
            name = reg.name.encode("ascii")
            out.append(struct.pack("<B", len(name)) + name)
            out.append(struct.pack("<BQBQ", reg.bar, reg.offset, reg.width, reg.reset))
            out.append(bytes(ACCESS_CODES[a] for a in reg.classes()))
            out.append(struct.pack("<B", len(reg.on_write)))
            for effect in reg.on_write:
                target = effect.target.encode("ascii")
                out.append(struct.pack("<B", len(target)) + target)
                out.append(struct.pack("<BQQ", ACTION_CODES[effect.action], effect.mask, effect.when))
        return b"".join(out)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegisterMap) and self.encoding() == other.encoding()

    def __hash__(self) -> int:
        return hash(self.encoding())

    def __repr__(self) -> str:
        return f"RegisterMap({', '.join(f'{r.name}@{r.where()}' for r in self.registers)})"


def _first_twice(names: list[str]) -> str:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return ""
