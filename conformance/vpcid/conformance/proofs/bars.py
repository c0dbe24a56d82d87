"""BAR sizing, type bits, alignment and decode, for every BAR shape the spec allows.

Every shape is enumerated: I/O BARs of 4..256 bytes, 32-bit memory BARs of
16 B..2 GiB and 64-bit memory BARs of 16 B..2^63 B (each prefetchable or
not), and expansion ROMs of 2 KiB..16 MiB. For each, the device type and its
per-byte masks come from the model (``DeviceType``, ``layout``,
``bar_register_span``), and for *every* prior register content reachable
(bits neither writable nor RW1C equal to the power-on image) and *every*
written value:

- the write is the manager's byte loop over the real ``merge_byte``
  (``cfg[o] = merge_byte(cfg[o], byte, wmask[o], w1cmask[o])``, the one line
  of ``DataManager._config_store`` the proof restates);
- the address is the real ``bar_address`` and the decode the real
  ``decode_window``, run on :class:`~vpcid.conformance.formal.Sym` values,
  path by path. Their only helper, ``configspace.read_le``, is replaced for
  the run by :func:`symbolic_read_le`, the same little-endian sum written
  with operators a ``Sym`` supports (cross-checked against ``read_le``).

Every feasible decode path is also replayed concretely through a real
``DataManager`` (write the prior state, the value, the command register,
read back, look at the tables) and compared with the symbolic result.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from vpcid.conformance.formal import Prover, Sym, proof, stand_in, substituted
from vpcid.model import configspace
from vpcid.model.bdf import Bdf
from vpcid.model.configspace import bar_address, bar_register_span, decode_window, merge_byte, read_le
from vpcid.model.devicetype import (
    COMMAND,
    ROM_INDEX,
    BarKind,
    BarSpec,
    DeviceType,
    RomSpec,
    layout,
)
from vpcid.model.manager import DataManager
from vpcid.model.profile import StatusRegister

VM, SLOT = 1, Bdf(0, 1, 0)
SAMPLES_PER_PATH = 1

MergeFn = Callable[[int, int, int, int], int]
DecodeFn = Callable[[bytearray, DeviceType, int], "int | None"]
AddressFn = Callable[[bytearray, int, BarKind], int]


@dataclass(frozen=True)
class Shape:
    """One BAR (or the ROM, index 6) of a one-BAR device type, with the spec's expectations."""

    label: str
    dtype: DeviceType
    index: int
    size: int
    low_bits: int
    """Read-only low bits of the register (R-BAR-002, R-BAR-007)."""
    type_bits: int
    """What the spec says those bits read (R-BAR-002); 0 for the ROM."""
    limit: int
    """One past the highest decodable address (R-DEC-006)."""
    enable: int
    """Command register bit that enables decode (R-DEC-001..R-DEC-003)."""


def _device(label: str, bar: BarSpec | None = None, rom: RomSpec | None = None) -> DeviceType:
    return DeviceType(
        f"proof-{label}",
        vendor_id=0x1B36,
        device_id=0x00FF,
        class_code=0xFF0000,
        bars=(bar,) if bar is not None else (),
        rom=rom,
    )


def shapes() -> Iterator[Shape]:
    """Every BAR kind, power-of-two size and prefetchable flag the spec allows (R-BAR-001), and every ROM."""
    for log2 in range(2, 9):
        size = 1 << log2
        yield Shape(
            f"io {size:#x}", _device(f"io-{log2}", BarSpec(BarKind.IO, size)), 0, size, 0x3, 0x1, 1 << 16, 0x1
        )
    for kind, top, limit in ((BarKind.MEM32, 31, 1 << 32), (BarKind.MEM64, 63, 1 << 64)):
        for prefetchable in (False, True):
            for log2 in range(4, top + 1):
                size = 1 << log2
                spec_bits = (0x4 if kind is BarKind.MEM64 else 0x0) | (0x8 if prefetchable else 0x0)
                label = f"{kind.value}{' prefetchable' if prefetchable else ''} {size:#x}"
                dtype = _device(label.replace(" ", "-"), BarSpec(kind, size, prefetchable))
                yield Shape(label, dtype, 0, size, 0xF, spec_bits, limit, 0x2)
    for log2 in range(11, 25):
        size = 1 << log2
        yield Shape(
            f"rom {size:#x}",
            _device(f"rom-{log2}", rom=RomSpec(size)),
            ROM_INDEX,
            size,
            0x7FE,
            0x0,
            1 << 32,
            0x2,
        )


def symbolic_read_le(buf: Sequence[int | Sym], offset: int, width: int) -> int | Sym:
    """``read_le`` as a sum of shifted bytes, so that it also runs on ``Sym`` bytes."""
    value: int | Sym = 0
    for k in range(width):
        value = value | (buf[offset + k] << (8 * k))
    return value


def _check_read_le(p: Prover) -> None:
    rng = random.Random(0x5EED)
    buffers = [bytes(8), b"\xff" * 8] + [rng.randbytes(8) for _ in range(64)]
    for buf in buffers:
        for width in (1, 2, 4, 8):
            ok = bool(symbolic_read_le(list(buf), 0, width) == read_le(buf, 0, width))
            p.check("symbolic_read_le agrees with read_le", ok, show={"buffer": buf.hex(), "width": width})


def _replay(shape: Shape, old_register: int, old_command: int, value: int) -> tuple[int, int | None]:
    """Run the same situation through a real DataManager: (register read back, decoded base)."""
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, SLOT, shape.dtype)
    start = bar_register_span(shape.dtype, shape.index).start
    nbytes = len(bar_register_span(shape.dtype, shape.index))
    for register in (old_register, value):
        for dword in range(nbytes // 4):
            dm.config_write(VM, SLOT, start + 4 * dword, 4, (register >> (32 * dword)) & 0xFFFFFFFF)
    dm.config_write(VM, SLOT, COMMAND, 2, old_command)
    readback = sum(dm.config_read(VM, SLOT, start + 4 * d, 4) << (32 * d) for d in range(nbytes // 4))
    tables = dm.tables(VM)
    bases = [e.base for e in (*tables.io, *tables.memory) if e.bdf == SLOT and e.bar == shape.index]
    return readback, (bases[0] if bases else None)


def _shape_case(p: Prover, shape: Shape, merge: MergeFn, decode: DecodeFn, address_of: AddressFn) -> None:
    dtype, s = shape.dtype, shape.size
    lay = layout(dtype, StatusRegister.RW1C)
    span = bar_register_span(dtype, shape.index)
    regmask = (1 << (8 * len(span))) - 1
    fixed = lay.fixed

    # Any reachable prior state: bits neither writable nor RW1C hold the power-on image.
    cfg: list[int | Sym] = list(lay.image)
    for o in (COMMAND, COMMAND + 1, *span):
        b = p.integer(f"old[{o:#04x}]", 0, 0xFF)
        p.assume((b ^ lay.image[o]) & fixed[o] == 0)
        cfg[o] = b
    value = p.integer("value", 0, regmask)
    after = list(cfg)
    for k, o in enumerate(span):  # DataManager._config_store, byte by byte
        after[o] = merge(stand_in(cfg[o]), stand_in((value >> (8 * k)) & 0xFF), lay.wmask[o], lay.w1cmask[o])

    with substituted(configspace, "read_le", symbolic_read_le):
        readback = Sym.lift(symbolic_read_le(after, span.start, len(span)))
        command = Sym.lift(symbolic_read_le(after, COMMAND, 2))
        old_register = Sym.lift(symbolic_read_le(cfg, span.start, len(span)))
        if shape.index == ROM_INDEX:
            address = readback & 0xFFFFF800
            enabled = (command & shape.enable != 0) & (readback & 1 != 0)
        else:
            address = Sym.lift(address_of(stand_in(after), shape.index, dtype.bar(0).kind))  # type: ignore[union-attr]
            enabled = command & shape.enable != 0
        paths = p.explore(lambda: decode(stand_in(after), dtype, shape.index))
    show = {"read back": readback, "address": address, "command": command}

    address_bits = ~(s - 1) & regmask & ~shape.low_bits  # the writable bits: at and above the size
    if shape.index == ROM_INDEX:
        p.prove(
            "the ROM BAR keeps the address bits at and above its size, and the enable bit",
            readback == (value & ~(s - 1) & 0xFFFFF800) | (value & 1),
            rids=["R-BAR-007"],
            show=show,
        )
        p.prove(
            "ROM sizing: all-ones address bits read back ~(size-1)",
            readback & ~1 == address_bits,
            rids=["R-BAR-007"],
            given=[value & address_bits == address_bits],
            show=show,
        )
    else:
        p.prove(
            "a write leaves value & ~(size-1) and the type bits",
            readback == (value & ~(s - 1) & regmask & ~shape.low_bits) | shape.type_bits,
            rids=["R-BAR-003", "R-BAR-002"],
            show=show,
        )
        p.prove(
            "sizing: all-ones address bits read back ~(size-1) with the type bits",
            readback == (~(s - 1) & regmask) | shape.type_bits,
            rids=["R-BAR-003"],
            given=[value & address_bits == address_bits],
            show=show,
        )
        p.prove(
            "type bits read as the spec says, whatever is written",
            readback & shape.low_bits == shape.type_bits,
            rids=["R-BAR-002"],
            show=show,
        )
        p.prove(
            "bar_address is the register without its type bits",
            address == readback & ~shape.low_bits,
            rids=["R-BAR-003", "R-BAR-005"],
            show=show,
        )
        if len(span) == 8:
            p.prove(
                "the upper dword holds address bits 63:32 masked by ~(size-1) >> 32",
                readback >> 32 == (value >> 32) & ((~(s - 1) & regmask) >> 32),
                rids=["R-BAR-005"],
                show=show,
            )
    p.prove(
        "the address is naturally aligned",
        address & (s - 1) == 0,
        rids=["R-BAR-007" if shape.index == ROM_INDEX else "R-BAR-003"],
        show=show,
    )

    decode_rids = [
        "R-DEC-003" if shape.index == ROM_INDEX else "R-DEC-001" if shape.enable == 1 else "R-DEC-002",
        "R-DEC-004",
        "R-DEC-006",
    ]
    decodes = enabled & (address != 0) & (address + s <= shape.limit)
    for path in paths:
        base = path.result
        if base is None:
            p.prove(
                "decode_window declines exactly when disabled, at zero or past the limit",
                ~decodes,
                rids=decode_rids,
                given=[path.condition],
                show=show,
            )
        else:
            got = Sym.lift(base)
            p.prove(
                "decode_window decodes at the aligned address, enabled, non-zero, below the limit",
                decodes & (got == address) & (got & (s - 1) == 0),
                rids=decode_rids,
                given=[path.condition],
                show={**show, "decoded": got},
            )
        for model in p.models(path.condition, SAMPLES_PER_PATH):
            want = (Prover.evaluate(model, readback), Prover.evaluate(model, base))
            inputs = p.inputs(model)
            got_concrete = _replay(
                shape,
                stand_in(Prover.evaluate(model, old_register)),
                stand_in(Prover.evaluate(model, command)),
                inputs["value"],
            )
            p.check(
                "a real DataManager agrees with the symbolic run",
                got_concrete == want,
                show={**inputs, "symbolic (read back, base)": want, "DataManager": got_concrete},
            )


@proof(
    "R-BAR-002",
    "R-BAR-003",
    "R-BAR-005",
    "R-BAR-007",
    "R-DEC-001",
    "R-DEC-002",
    "R-DEC-003",
    "R-DEC-004",
    "R-DEC-006",
)
def bar_sizing(
    p: Prover,
    merge: MergeFn = merge_byte,
    decode: DecodeFn = decode_window,
    address_of: AddressFn = bar_address,
) -> None:
    """Every BAR shape: writes keep the size-aligned address and type bits; sizing; decode is exact.

    ``merge``, ``decode`` and ``address_of`` are the code under proof (the
    model's by default); they read configuration bytes through
    ``configspace.read_le``, which the proof swaps for :func:`symbolic_read_le`.
    """
    with p.case("read_le stand-in"):
        _check_read_le(p)
    for shape in shapes():
        with p.case(shape.label):
            _shape_case(p, shape, merge, decode, address_of)
