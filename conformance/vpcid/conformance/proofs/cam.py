"""Configuration mechanism #1: how 0xCF8 selects a function and register (R-CAM-004, R-CAM-005).

The proof runs the model's real ``DataManager._cam_data`` (the handler for
bytes of the 0xCFC-0xCFF window) on a symbolic 0xCF8 value, in each
``cf8_extended`` variant, for every port and length in the window, reads and
writes. The harness makes two substitutions, both at the boundary of the
code under proof: the configuration access it ends in
(``DataManager._config_access``) is recorded instead of performed, and
``manager.Bdf`` (whose validation insists on concrete ints) records its
three fields. Against the spec's bit ranges (z3 ``Extract``, not the code's
shifts and masks):

- with bit 31 set, the access goes to bus = bits 23:16, device = 15:11,
  function = 10:8, offset = bits 7:2 * 4 (+ bits 27:24 * 256 when the
  variant extends) + the port's distance from 0xCFC, with the access's length
  and bytes; with bit 31 clear, nothing is accessed, reads return all ones;
- on enabled values (bit 31 set, bits 1:0 clear, bits 30:24 clear, or bits
  30:28 with ``extends``) the map to (bus, device, function, register) is a
  bijection onto all functions and all dword registers (0-0xFC, or 0-0xFFC):
  the spec's encoding is a two-sided inverse.
"""

from __future__ import annotations

from dataclasses import dataclass

import z3
from vpcid.conformance.formal import Prover, Sym, proof, stand_in, substituted, term_of
from vpcid.model import manager
from vpcid.model.bdf import Bdf
from vpcid.model.manager import CFC, DataManager, VmElement
from vpcid.model.profile import Cf8Extended, Profile
from vpcid.model.tables import DecodeTable, lowest_bdf_first

WINDOW = tuple((port, length) for port in range(CFC, CFC + 4) for length in range(1, CFC + 5 - port))
"""Every (port, length) an access can have inside 0xCFC-0xCFF."""


@dataclass(frozen=True)
class _Access:
    bus: object
    device: object
    function: object
    offset: object
    length: int
    payload: bytes | None


class _Recorder:
    """A data manager of the class under proof whose configuration accesses are recorded, not performed."""

    def __init__(self, cls: type[DataManager], profile: Profile) -> None:
        self.accesses: list[_Access] = []
        recorder = self

        class Recording(cls):  # type: ignore[valid-type,misc]
            def _config_access(
                self, vm: VmElement, bdf: Bdf, offset: int, length: int, payload: bytes | None
            ) -> bytes:
                bus, device, function = stand_in(bdf)
                recorder.accesses.append(_Access(bus, device, function, offset, length, payload))
                return b"" if payload is not None else bytes(length)

        self.manager: DataManager = Recording(profile)


def _bdf_fields(bus: object, device: object, function: object) -> tuple[object, object, object]:
    return bus, device, function


def _bits(term: z3.BitVecRef, high: int, low: int) -> z3.BitVecRef:
    """Bits ``high:low`` of a 0xCF8 value, as the spec names them, zero-extended for comparison."""
    return z3.ZeroExt(term.size() - (high - low + 1), z3.Extract(high, low, term))


def _run(
    dm: _Recorder, cf8: Sym, port: int, length: int, payload: bytes | None
) -> tuple[bytes, list[_Access]]:
    vm = VmElement(0, DecodeTable(lowest_bdf_first), DecodeTable(lowest_bdf_first), None)
    vm.cf8 = stand_in(cf8)
    dm.accesses = []
    with substituted(manager, "Bdf", _bdf_fields):
        data = dm.manager._cam_data(vm, port, payload, length)
    return data, dm.accesses


def _decoding(p: Prover, dm: _Recorder, extends: bool) -> None:
    """Every port, length, read and write: the access the spec's bit ranges select, or none."""
    cf8 = p.integer("cf8", 0, 0xFFFF_FFFF)
    x = term_of(cf8)
    register = _bits(x, 7, 2) * 4 + (_bits(x, 27, 24) * 256 if extends else 0)
    for port, length in WINDOW:
        for payload in (None, bytes(range(1, length + 1))):
            for path in p.explore(lambda: _run(dm, cf8, port, length, payload)):  # noqa: B023
                data, accesses = path.result
                show = {"port": port, "length": length, "write": payload is not None}
                if not accesses:
                    p.prove(
                        "with bit 31 clear the window selects nothing",
                        _bits(x, 31, 31) == 0,
                        rids=["R-CAM-005"],
                        given=[path.condition],
                        show=show,
                    )
                    p.check(
                        "reads of a disabled window return all ones, writes are dropped",
                        data == (b"" if payload is not None else b"\xff" * length),
                        rids=["R-CAM-005"],
                        show={**show, "returned": data},
                    )
                    continue
                p.check("one configuration access per window access", len(accesses) == 1, show=show)
                (a,) = accesses
                p.check(
                    "the access has the window access's length and bytes",
                    a.length == length and a.payload == payload,
                    show=show,
                )
                fields = (
                    Sym.lift(stand_in(a.bus)),
                    Sym.lift(stand_in(a.device)),
                    Sym.lift(stand_in(a.function)),
                    Sym.lift(stand_in(a.offset)),
                )
                bus, device, function, offset = (f.term for f in fields)
                p.prove(
                    "with bit 31 set the access goes to bits 23:16, 15:11, 10:8 and the register",
                    z3.And(
                        _bits(x, 31, 31) == 1,
                        bus == _bits(x, 23, 16),
                        device == _bits(x, 15, 11),
                        function == _bits(x, 10, 8),
                        offset == register + (port - CFC),
                    ),
                    rids=["R-CAM-004", "R-CAM-005"],
                    given=[path.condition],
                    show={
                        **show,
                        "bus": fields[0],
                        "device": fields[1],
                        "function": fields[2],
                        "offset": fields[3],
                    },
                )


def _select(dm: _Recorder, cf8: Sym) -> tuple[z3.BitVecRef, ...] | None:
    """(bus, device, function, register) a dword read of 0xCFC selects, or None."""
    _, accesses = _run(dm, cf8, CFC, 4, None)
    if not accesses:
        return None
    (a,) = accesses
    return tuple(Sym.lift(stand_in(v)).term for v in (a.bus, a.device, a.function, a.offset))


def _bijection(p: Prover, dm: _Recorder, extends: bool) -> None:
    top = 0xFFC if extends else 0xFC

    def encode(
        bus: z3.BitVecRef, device: z3.BitVecRef, function: z3.BitVecRef, reg: z3.BitVecRef
    ) -> z3.BitVecRef:
        """The spec's 0xCF8 value for a function and register: its inverse of the decoding."""
        return 0x8000_0000 | bus << 16 | device << 11 | function << 8 | (reg & 0xFC) | (reg >> 8) << 24

    def enabled(v: z3.BitVecRef) -> z3.BoolRef:
        reserved = _bits(v, 30, 28) if extends else _bits(v, 30, 24)
        return z3.And(_bits(v, 31, 31) == 1, reserved == 0, _bits(v, 1, 0) == 0, z3.ULT(v, 1 << 32))

    with p.case("decode then encode"):
        cf8 = p.integer("cf8", 0, 0xFFFF_FFFF)
        p.assume(enabled(term_of(cf8)))
        for path in p.explore(lambda: _select(dm, cf8)):
            p.check("an enabled value selects a function", path.result is not None, show={})
            assert path.result is not None
            bus, device, function, reg = path.result
            p.prove(
                "the selection is a function and a dword register in range",
                z3.And(
                    z3.ULE(bus, 0xFF),
                    z3.ULE(device, 0x1F),
                    z3.ULE(function, 0x7),
                    z3.ULE(reg, top),
                    reg & 3 == 0,
                ),
                given=[path.condition],
            )
            p.prove(
                "encoding the selection gives back the value (decoding is injective)",
                encode(bus, device, function, reg) == term_of(cf8),
                given=[path.condition],
            )
    with p.case("encode then decode"):
        want = (
            p.integer("bus", 0, 0xFF),
            p.integer("device", 0, 0x1F),
            p.integer("function", 0, 7),
            p.integer("register", 0, top),
        )
        p.assume(want[3] & 3 == 0)
        value = encode(*(w.term for w in want))
        cf8 = Sym(value, 32, 0xFFFF_FFFF)
        p.prove("the encoding is an enabled value", enabled(value))
        for path in p.explore(lambda: _select(dm, cf8)):
            p.check("an enabled value selects a function", path.result is not None, show={})
            assert path.result is not None
            p.prove(
                "decoding the encoding gives back the function and register (decoding is onto)",
                z3.And(*(got == w.term for got, w in zip(path.result, want, strict=True))),
                given=[path.condition],
            )


@proof("R-CAM-004", "R-CAM-005")
def cam_decoding(p: Prover, manager_class: type[DataManager] = DataManager) -> None:
    """0xCF8 selects bus 23:16, device 15:11, function 10:8, register 7:2 (and 27:24): a bijection.

    ``manager_class`` is the code under proof (the model's ``DataManager`` by default).
    """
    for variant in Cf8Extended:
        extends = variant is Cf8Extended.EXTENDS
        dm = _Recorder(manager_class, Profile(cf8_extended=variant))
        with p.case(f"cf8_extended = {variant.value}"):
            with p.case("every window access"):
                _decoding(p, dm, extends)
            with p.case("bijection"):
                _bijection(p, dm, extends)
