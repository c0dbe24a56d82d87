"""Masked configuration writes: the algebra of ``merge_byte`` for every input (R-CFG-001, R-CFG-006).

``merge_byte`` uses only ``&``, ``|`` and ``~`` and ends in ``& 0xFF``, so it
runs unchanged on 8-bit z3 bit-vectors: the claims below are about the
expression the model's own code builds. A 64-bit register write is eight
such bytes side by side (the manager merges a write byte by byte), which the
64-bit case checks with one call of the code per byte lane.

A concrete cross-check ties the two readings of the code together: the z3
term built from ``merge_byte`` and Python's evaluation of ``merge_byte`` on
ints agree on all 65,536 (old, value) pairs for several mask pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import z3
from vpcid.conformance.formal import Prover, proof
from vpcid.model.configspace import merge_byte

MergeFn = Callable[[int, int, int, int], int]
"""The shape of ``merge_byte(old, value, wmask, w1cmask) -> new``."""

CROSS_CHECK_MASKS = ((0x00, 0x00), (0xFF, 0x00), (0x00, 0xFF), (0x0F, 0xF0), (0x5A, 0xA5), (0x07, 0x80))
"""(wmask, w1cmask) pairs for the exhaustive concrete cross-check (no bit in both)."""

_LANES = 64


def word(
    merge: MergeFn, old: z3.BitVecRef, value: z3.BitVecRef, wmask: z3.BitVecRef, w1c: z3.BitVecRef
) -> z3.BitVecRef:
    """A multi-byte write: ``merge`` applied to every byte lane, as the manager does."""
    lanes = old.size() // 8
    if lanes == 1:
        return merge(old, value, wmask, w1c)

    def lane(x: z3.BitVecRef, k: int) -> z3.BitVecRef:
        return z3.Extract(8 * k + 7, 8 * k, x)

    return z3.Concat(
        *[merge(lane(old, k), lane(value, k), lane(wmask, k), lane(w1c, k)) for k in reversed(range(lanes))]
    )


def _cross_check(p: Prover, merge: MergeFn) -> None:
    """z3's reading of ``merge`` equals Python's on every (old, value), :data:`_LANES` lanes at a time."""
    bits = 8 * _LANES
    olds, values = z3.BitVec("old_lanes", bits), z3.BitVec("value_lanes", bits)

    def lanes(data: bytes) -> z3.BitVecRef:
        return z3.BitVecVal(int.from_bytes(data, "little"), bits)

    solver = z3.Solver()
    solver.check()
    model = solver.model()  # an empty model, used as a fast evaluator
    blocks = [bytes(range(b, b + _LANES)) for b in range(0, 256, _LANES)]
    for wm, cm in CROSS_CHECK_MASKS:
        expr = z3.simplify(
            word(merge, olds, values, lanes(bytes([wm]) * _LANES), lanes(bytes([cm]) * _LANES))
        )
        for old in range(256):
            model.update_value(olds, lanes(bytes([old]) * _LANES))
            for block in blocks:
                model.update_value(values, lanes(block))
                got = model.eval(expr, model_completion=True)
                from_z3 = list(got.as_long().to_bytes(_LANES, "little")) if z3.is_bv_value(got) else []
                python = [merge(old, v, wm, cm) for v in block]
                if from_z3 != python:
                    k = next(k for k in range(_LANES) if from_z3[k : k + 1] != python[k : k + 1])
                    p.check(
                        "z3 and Python evaluate merge_byte alike",
                        False,
                        show={
                            "old": old,
                            "value": block[k],
                            "wmask": wm,
                            "w1cmask": cm,
                            "python": python[k],
                            "z3": from_z3[k] if from_z3 else None,
                        },
                    )
        p.check("z3 and Python evaluate merge_byte alike", True, show={})


@proof("R-CFG-001", "R-CFG-006")
def masked_write(p: Prover, merge: MergeFn = merge_byte) -> None:
    """merge_byte is the spec's masked write; read-only bits never change; RW1C bits only clear."""
    with p.case("concrete cross-check"):
        _cross_check(p, merge)
    for bits in (8, 64):
        with p.case(f"{bits}-bit write"):
            old, value = p.bitvec("old", bits), p.bitvec("value", bits)
            wmask, w1cmask = p.bitvec("wmask", bits), p.bitvec("w1cmask", bits)
            p.assume(wmask & w1cmask == 0)  # R-CFG-001: no bit is in both masks
            new = word(merge, old, value, wmask, w1cmask)
            show = {"new": new}
            p.prove(
                "the write is the spec's formula",
                new == ((old & ~wmask) | (value & wmask)) & ~(value & w1cmask),
                rids=["R-CFG-001"],
                show=show,
            )
            p.prove(
                "bits outside wmask|w1cmask never change",
                (new ^ old) & ~(wmask | w1cmask) == 0,
                rids=["R-CFG-001"],
                show=show,
            )
            p.prove(
                "writable bits take the written value",
                (new ^ value) & wmask == 0,
                rids=["R-CFG-001"],
                show=show,
            )
            p.prove("RW1C never sets a bit", new & w1cmask & ~old == 0, rids=["R-CFG-006"], show=show)
            p.prove(
                "a written one clears an RW1C bit", new & w1cmask & value == 0, rids=["R-CFG-006"], show=show
            )
            p.prove(
                "a written zero never clears an RW1C bit",
                (new ^ old) & w1cmask & ~value == 0,
                rids=["R-CFG-006"],
                show=show,
            )
            again = word(merge, new, value, wmask, w1cmask)
            p.prove(
                "writing the same value twice changes nothing more",
                again == new,
                show={"new": new, "again": again},
            )
            other = p.bitvec("value2", bits)
            second = word(merge, new, other, wmask, w1cmask)
            p.prove(
                "a second write can only clear RW1C bits",
                second & w1cmask & ~new == 0,
                rids=["R-CFG-006"],
                show={"new": new, "second": second},
            )
