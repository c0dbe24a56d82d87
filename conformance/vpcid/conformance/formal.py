"""The formal layer: z3 proofs and CrossHair contracts as evidence for requirements.

Two kinds of evidence live here:

- **z3 proofs** (:mod:`vpcid.conformance.proofs`): each proof is a function,
  registered with :func:`proof` and the requirement IDs it establishes, that
  returns a :class:`ProofResult`. Proofs run the model's own functions on
  symbolic values wherever the code allows it, so what is proved is the code,
  not a re-statement of it:

  - bit-vector arguments (``z3.BitVec``) where the code only uses ``&``,
    ``|`` and ``~`` on fixed-width values (``merge_byte``);
  - :class:`Sym`, a stand-in for a Python ``int`` whose value is a z3 term,
    elsewhere. A ``Sym`` is a two's complement bit-vector of :data:`WIDTH`
    bits with a tracked bound on its magnitude; every operator it supports
    (``& | ^ ~ + - << >>`` and comparisons) agrees exactly with Python's
    unbounded integers as long as no value needs more than ``WIDTH - 1``
    bits, and the bound tracking raises :class:`OverflowError` before that
    can happen. Any other use (``*``, ``%``, ``int()`` of a non-constant,
    hashing) raises, so code the proofs cannot follow fails loudly instead
    of being proved wrongly.
  - When the code branches on a ``Sym`` (``if base == 0``), :meth:`Prover.explore`
    runs it once per feasible path, like a symbolic executor, and returns
    each path's condition and result.

- **CrossHair contracts** (:mod:`vpcid.model.contracts`): PEP 316 ``pre:`` /
  ``post:`` docstrings on thin wrappers that call the model's real
  functions; ``tests/test_crosshair.py`` runs ``crosshair check`` over them.

:func:`evidence` maps each requirement ID to the kinds of formal evidence for
it (``"z3"``, ``"crosshair"``), from the two registries. The registries are
declarations; ``tests/test_proofs.py`` and ``tests/test_crosshair.py`` are what
make them true in CI. ``spec/proofs/README.md`` describes every proof.

z3 is imported on first use, not with this module: :func:`declared_proofs`
reads the proofs' declarations from their source, so :func:`evidence` (and
``vpcid trace`` / ``vpcid explain``) work on an install without the dev
extra; only running a proof needs z3 (:func:`z3_missing` says why not).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pathlib
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

Z3_HINT = "the z3 proofs need z3-solver, in the dev extra: pip install 'vpcid[dev]'"


class _ImportedOnUse:
    """Stands for an optional module until an attribute of it is first needed.

    The first attribute lookup imports the module and puts it in this
    module's globals in place of the stand-in, so later lookups cost nothing.
    A missing module raises :class:`ModuleNotFoundError` saying what needs it.
    """

    def __init__(self, name: str, hint: str) -> None:
        self._name = name
        self._hint = hint

    def __getattr__(self, attribute: str) -> Any:
        try:
            module = importlib.import_module(self._name)
        except ImportError as exc:
            why = f"{self._name} is not installed: {self._hint}"
            raise ModuleNotFoundError(why, name=self._name) from exc
        globals()[self._name] = module
        return getattr(module, attribute)


if TYPE_CHECKING:
    import z3
else:
    z3 = _ImportedOnUse("z3", Z3_HINT)


def z3_missing() -> str | None:
    """Why the proofs cannot run here (z3 cannot be imported), or None when they can."""
    try:
        importlib.import_module("z3")
    except ImportError as exc:
        return f"z3 is not installed ({exc}): {Z3_HINT}"
    return None


P = ParamSpec("P")
T = TypeVar("T")

WIDTH = 128
"""Bits of the two's complement vectors standing for Python ints in :class:`Sym`."""

SOLVER_TIMEOUT_MS = 60_000
"""Per query. A query that times out makes the proof ``unknown``, never ``proved``."""

_RID = re.compile(r"^R-[A-Z]+-\d{3}$")


# --------------------------------------------------------------------- results
class Status(StrEnum):
    """Outcome of a proof."""

    PROVED = "proved"
    REFUTED = "refuted"
    """The solver found a counterexample to one claim."""
    UNKNOWN = "unknown"
    """The solver gave up (timeout), or the assumptions were contradictory (vacuous)."""
    ERROR = "error"
    """The harness could not run the code symbolically (e.g. it changed shape)."""


@dataclass(frozen=True)
class Counterexample:
    """Values of the declared inputs (and derived values) that break one claim."""

    claim: str
    requirements: tuple[str, ...]
    case: str
    inputs: tuple[tuple[str, str], ...]
    derived: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        head = f"claim {self.claim!r} ({', '.join(self.requirements)})"
        if self.case:
            head += f" in case {self.case!r}"
        lines = [f"counterexample to {head}:"]
        width = max((len(n) for n, _ in self.inputs + self.derived), default=0)
        lines += [f"  {name:<{width}} = {value}" for name, value in self.inputs]
        if self.derived:
            lines.append("  where")
            lines += [f"  {name:<{width}} = {value}" for name, value in self.derived]
        return "\n".join(lines)


@dataclass(frozen=True)
class ProofResult:
    """What one proof established, or why it did not."""

    proof: str
    requirements: tuple[str, ...]
    status: Status
    claims: int
    """Number of claims (solver queries and concrete cross-checks) discharged."""
    counterexample: Counterexample | None = None
    detail: str = ""
    seconds: float = 0.0

    @property
    def proved(self) -> bool:
        return self.status is Status.PROVED

    def report(self) -> str:
        """Readable summary; a counterexample is printed variable by variable."""
        head = (
            f"{self.proof}: {self.status.value} ({', '.join(self.requirements)}; "
            f"{self.claims} claims, {self.seconds:.2f}s)"
        )
        parts = [head]
        if self.detail:
            parts.append(self.detail)
        if self.counterexample is not None:
            parts.append(str(self.counterexample))
        return "\n".join(parts)

    __str__ = report


class Refuted(Exception):
    """A claim has a counterexample."""

    def __init__(self, counterexample: Counterexample) -> None:
        super().__init__(str(counterexample))
        self.counterexample = counterexample


class Inconclusive(Exception):
    """The solver could not decide a claim, or its assumptions are unsatisfiable."""


# ------------------------------------------------------------- symbolic ints
class SymbolicError(TypeError):
    """The code did something with a symbolic value that a proof cannot follow."""


def _bits_of(value: int) -> int:
    return value.bit_length() if value >= 0 else (~value).bit_length()


class Sym:
    """A Python ``int`` whose value is a z3 term (see the module docstring).

    ``bits``: the value lies in ``[-2**bits, 2**bits)``. ``umax``: when known,
    the value lies in ``[0, umax]``.
    """

    __slots__ = ("bits", "term", "umax")
    __hash__ = None  # type: ignore[assignment]  # equality is symbolic

    def __init__(self, term: z3.BitVecRef, bits: int, umax: int | None = None) -> None:
        if bits > WIDTH - 2:
            raise OverflowError(f"a value may need {bits} bits, more than the {WIDTH - 2} modelled")
        self.term = term
        self.bits = bits
        self.umax = umax

    @staticmethod
    def lift(value: int | Sym) -> Sym:
        if isinstance(value, Sym):
            return value
        if type(value) is bool or not isinstance(value, int):
            raise SymbolicError(f"cannot mix a symbolic int with {type(value).__name__}")
        return Sym(z3.BitVecVal(value, WIDTH), _bits_of(value), value if value >= 0 else None)

    @staticmethod
    def var(name: str, low: int, high: int) -> tuple[Sym, z3.BoolRef]:
        """A fresh variable and its range constraint ``low <= var <= high``."""
        term = z3.BitVec(name, WIDTH)
        bits = max(_bits_of(low), _bits_of(high))
        return Sym(term, bits, high if low >= 0 else None), z3.And(term >= low, term <= high)

    # bitwise
    def __and__(self, other: int | Sym) -> Sym:
        o = Sym.lift(other)
        known = [x for x in (self, o) if x.umax is not None]
        bits = min(x.bits for x in known) if known else max(self.bits, o.bits)
        umax = min(x.umax for x in known if x.umax is not None) if known else None
        return Sym(self.term & o.term, bits, umax)

    __rand__ = __and__

    def __or__(self, other: int | Sym) -> Sym:
        o = Sym.lift(other)
        bits = max(self.bits, o.bits)
        both = self.umax is not None and o.umax is not None
        return Sym(self.term | o.term, bits, (1 << bits) - 1 if both else None)

    __ror__ = __or__

    def __xor__(self, other: int | Sym) -> Sym:
        o = Sym.lift(other)
        bits = max(self.bits, o.bits)
        both = self.umax is not None and o.umax is not None
        return Sym(self.term ^ o.term, bits, (1 << bits) - 1 if both else None)

    __rxor__ = __xor__

    def __invert__(self) -> Sym:
        return Sym(~self.term, self.bits)

    # arithmetic
    def __add__(self, other: int | Sym) -> Sym:
        o = Sym.lift(other)
        umax = self.umax + o.umax if self.umax is not None and o.umax is not None else None
        return Sym(self.term + o.term, max(self.bits, o.bits) + 1, umax)

    __radd__ = __add__

    def __sub__(self, other: int | Sym) -> Sym:
        o = Sym.lift(other)
        return Sym(self.term - o.term, max(self.bits, o.bits) + 1)

    def __rsub__(self, other: int) -> Sym:
        return Sym.lift(other) - self

    def __neg__(self) -> Sym:
        return Sym(-self.term, self.bits + 1)

    @staticmethod
    def _amount(amount: int | Sym) -> tuple[Sym, int]:
        a = Sym.lift(amount)
        if a.umax is None:
            raise SymbolicError("shift by a symbolic amount that is not known to be non-negative")
        return a, a.umax

    def __lshift__(self, amount: int | Sym) -> Sym:
        a, top = Sym._amount(amount)
        umax = self.umax << top if self.umax is not None else None
        return Sym(self.term << a.term, self.bits + top, umax)

    def __rlshift__(self, value: int) -> Sym:
        return Sym.lift(value) << self

    def __rshift__(self, amount: int | Sym) -> Sym:
        a, _ = Sym._amount(amount)
        low = a.term.as_long() if z3.is_bv_value(a.term) else 0
        umax = self.umax >> low if self.umax is not None else None
        return Sym(self.term >> a.term, max(self.bits - low, 0), umax)  # arithmetic shift = Python's

    def __rrshift__(self, value: int) -> Sym:
        return Sym.lift(value) >> self

    # comparisons (signed: Python ints are signed)
    def __eq__(self, other: object) -> SymBool:  # type: ignore[override]
        return SymBool(self.term == Sym.lift(other).term)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> SymBool:  # type: ignore[override]
        return SymBool(self.term != Sym.lift(other).term)  # type: ignore[arg-type]

    def __lt__(self, other: int | Sym) -> SymBool:
        return SymBool(self.term < Sym.lift(other).term)

    def __le__(self, other: int | Sym) -> SymBool:
        return SymBool(self.term <= Sym.lift(other).term)

    def __gt__(self, other: int | Sym) -> SymBool:
        return SymBool(self.term > Sym.lift(other).term)

    def __ge__(self, other: int | Sym) -> SymBool:
        return SymBool(self.term >= Sym.lift(other).term)

    # conversions
    def __bool__(self) -> bool:
        return _decide(self.term != 0)

    def __index__(self) -> int:
        value = z3.simplify(self.term)
        if not z3.is_bv_value(value):
            raise SymbolicError("the code needs a concrete int where the proof has a symbolic one")
        n: int = value.as_long()
        return n - (1 << WIDTH) if n >> (WIDTH - 1) else n

    __int__ = __index__

    def __repr__(self) -> str:
        return f"Sym({self.term})"


class SymBool:
    """A Python ``bool`` whose value is a z3 formula; ``bool()`` of it follows one feasible path."""

    __slots__ = ("term",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, term: z3.BoolRef) -> None:
        self.term = term

    def __bool__(self) -> bool:
        return _decide(self.term)

    def __and__(self, other: SymBool | bool) -> SymBool:
        return SymBool(z3.And(self.term, _formula(other)))

    def __or__(self, other: SymBool | bool) -> SymBool:
        return SymBool(z3.Or(self.term, _formula(other)))

    def __invert__(self) -> SymBool:
        return SymBool(z3.Not(self.term))

    def __eq__(self, other: object) -> SymBool:  # type: ignore[override]
        return SymBool(self.term == _formula(other))

    def __ne__(self, other: object) -> SymBool:  # type: ignore[override]
        return SymBool(self.term != _formula(other))

    def __repr__(self) -> str:
        return f"SymBool({self.term})"


def _formula(value: object) -> z3.BoolRef:
    """A z3 formula from a claim: SymBool, z3 formula or Python bool."""
    if isinstance(value, SymBool):
        return value.term
    if isinstance(value, bool):
        return z3.BoolVal(value)
    if z3.is_bool(value):
        return value
    raise SymbolicError(f"a claim must be a formula or a bool, not {type(value).__name__}")


def term_of(value: int | Sym) -> z3.BitVecRef:
    """The :data:`WIDTH`-bit term of a ``Sym`` or int, for stating claims."""
    return Sym.lift(value).term


# -------------------------------------------------------------- path explorer
@dataclass
class _Run:
    """One execution: decisions taken at symbolic branches, and which of them were forks."""

    solver: z3.Solver
    prefix: tuple[bool, ...]
    decisions: list[z3.BoolRef] = field(default_factory=list)
    forks: list[bool] = field(default_factory=list)

    def decide(self, cond: z3.BoolRef) -> bool:
        can_true = self.solver.check(cond) != z3.unsat
        can_false = self.solver.check(z3.Not(cond)) != z3.unsat
        if can_true and can_false:
            n = len(self.forks)
            choice = self.prefix[n] if n < len(self.prefix) else True
            self.forks.append(choice)
        elif can_true or can_false:
            choice = can_true
        else:
            raise Inconclusive("reached a branch on an infeasible path")
        taken = cond if choice else z3.Not(cond)
        self.solver.add(taken)
        self.decisions.append(taken)
        return choice


_RUN: _Run | None = None


def _decide(cond: z3.BoolRef) -> bool:
    simplified = z3.simplify(cond)
    if z3.is_true(simplified):
        return True
    if z3.is_false(simplified):
        return False
    if _RUN is None:
        raise SymbolicError("the code branches on a symbolic value outside Prover.explore")
    return _RUN.decide(cond)


@dataclass(frozen=True)
class Path(Generic[T]):
    """One feasible path through the code: its condition and what the code returned."""

    condition: z3.BoolRef
    result: T


# --------------------------------------------------------------------- prover
FIRST_TRY_MS = 250
"""A claim is first tried on the incremental solver for this long (ms), then by :func:`_decide_hard`."""


def _new_solver() -> z3.Solver:
    solver = z3.Solver()
    solver.set("timeout", SOLVER_TIMEOUT_MS)
    return solver


def _decide_hard(formulas: Sequence[z3.BoolRef]) -> tuple[z3.CheckSatResult, z3.ModelRef | None]:
    """Satisfiability by the ``qfbv`` tactic (bit-blast to SAT), run from scratch.

    z3's incremental solver keeps its SMT core across push/pop and skips most
    bit-vector preprocessing; for claims mixing shifts by variable amounts
    with comparisons, the tactic is several times faster.
    """
    solver = z3.Tactic("qfbv").solver()
    solver.set("timeout", SOLVER_TIMEOUT_MS)
    solver.add(*formulas)
    outcome = solver.check()
    return outcome, solver.model() if outcome == z3.sat else None


@dataclass
class _Case:
    label: str
    domain: list[z3.BoolRef] = field(default_factory=list)
    inputs: list[tuple[str, Any, int | None]] = field(default_factory=list)
    """(name, term, bit-vector width or None for a Sym)."""
    checked: bool = True
    """Whether the domain is known to be satisfiable."""


class Prover:
    """Declares inputs, explores the code's paths and discharges claims with z3.

    Work is organised in nested :meth:`case` scopes: inputs and their domain
    constraints declared in a case are forgotten when it ends, so one proof
    can cover many device shapes without their assumptions mixing.
    """

    def __init__(self, proof: str, requirements: tuple[str, ...]) -> None:
        self.proof = proof
        self.requirements = requirements
        self.claims = 0
        self._cases: list[_Case] = [_Case("")]
        self._solver = _new_solver()
        self.failed_case = ""
        """The case an exception left, for the report."""
        self.first_try_ms = FIRST_TRY_MS
        """Time on the incremental solver before a claim goes to :func:`_decide_hard`; 0 skips it."""

    # -- scopes and inputs
    @contextmanager
    def case(self, label: str) -> Iterator[None]:
        """A scope for inputs, domain constraints and claims about one situation."""
        self._cases.append(_Case(label))
        self._solver.push()
        try:
            yield
        except BaseException:
            self.failed_case = self.failed_case or self.case_label
            raise
        finally:
            self._solver.pop()
            self._cases.pop()

    @property
    def case_label(self) -> str:
        return " / ".join(c.label for c in self._cases if c.label)

    def _domain(self) -> list[z3.BoolRef]:
        return [d for c in self._cases for d in c.domain]

    def assume(self, *constraints: SymBool | z3.BoolRef | bool) -> None:
        """Restrict the inputs of the current case (a precondition of every later claim)."""
        for c in constraints:
            f = _formula(c)
            self._cases[-1].domain.append(f)
            self._solver.add(f)
        self._cases[-1].checked = False

    def _check_not_vacuous(self) -> None:
        if all(c.checked for c in self._cases):
            return
        if self._solver.check() == z3.unsat:
            raise Inconclusive(f"the assumptions of case {self.case_label!r} are contradictory")
        for c in self._cases:
            c.checked = True

    def bitvec(self, name: str, width: int) -> z3.BitVecRef:
        """A fixed-width bit-vector input (for code that is pure bit logic)."""
        term = z3.BitVec(name, width)
        self._cases[-1].inputs.append((name, term, width))
        return term

    def integer(self, name: str, low: int, high: int) -> Sym:
        """A Python-int input ranging over ``low..high`` (inclusive)."""
        sym, rng = Sym.var(name, low, high)
        self._cases[-1].inputs.append((name, sym.term, None))
        self.assume(rng)
        return sym

    # -- claims
    def prove(
        self,
        label: str,
        claim: SymBool | z3.BoolRef | bool,
        *,
        rids: Sequence[str] = (),
        given: Sequence[SymBool | z3.BoolRef | bool] = (),
        show: Mapping[str, object] | None = None,
    ) -> None:
        """Prove ``claim`` for every input allowed by the domain and ``given``, or raise."""
        rids = tuple(rids) or self.requirements
        unknown = set(rids) - set(self.requirements)
        if unknown:
            raise ValueError(f"claim {label!r} names {sorted(unknown)}, not declared by {self.proof}")
        self.claims += 1
        self._check_not_vacuous()
        s = self._solver
        s.push()
        try:
            for g in given:
                s.add(_formula(g))
            if given and s.check() == z3.unsat:
                raise Inconclusive(f"claim {label!r}: its hypotheses are contradictory (vacuous)")
            negated = z3.Not(_formula(claim))
            s.add(negated)
            outcome, model = z3.unknown, None
            if self.first_try_ms:
                s.set("timeout", self.first_try_ms)
                try:
                    outcome = s.check()
                finally:
                    s.set("timeout", SOLVER_TIMEOUT_MS)
                model = s.model() if outcome == z3.sat else None
            if outcome == z3.unknown:
                outcome, model = _decide_hard([*self._domain(), *map(_formula, given), negated])
            if outcome == z3.unsat:
                return
            if model is None:
                raise Inconclusive(f"claim {label!r}: the solver gave up")
            raise Refuted(self._counterexample(label, rids, model, show or {}))
        finally:
            s.pop()

    def lemma(self, label: str, claim: SymBool | z3.BoolRef, *, rids: Sequence[str] = ()) -> None:
        """Prove ``claim`` for the current case, then keep it as an assumption for later claims.

        Sound because a lemma is proved over the same inputs and domain it then
        constrains; it only saves the solver from re-deriving it in each claim.
        """
        self.prove(label, claim, rids=rids)
        self.assume(claim)

    def check(self, label: str, ok: bool, *, rids: Sequence[str] = (), show: Mapping[str, object]) -> None:
        """A concrete fact observed while running the code (no solver involved)."""
        self.claims += 1
        if not ok:
            rids = tuple(rids) or self.requirements
            inputs = tuple((k, _fmt_concrete(v)) for k, v in show.items())
            raise Refuted(Counterexample(label, rids, self.case_label, inputs))

    def _counterexample(
        self, label: str, rids: tuple[str, ...], model: z3.ModelRef, show: Mapping[str, object]
    ) -> Counterexample:
        inputs = tuple(
            (name, _fmt(model.eval(term, model_completion=True), width))
            for c in self._cases
            for name, term, width in c.inputs
        )
        derived = tuple((name, _fmt_value(model, value)) for name, value in show.items())
        return Counterexample(label, rids, self.case_label, inputs, derived)

    # -- symbolic execution
    def explore(self, fn: Callable[[], T], *, limit: int = 64) -> list[Path[T]]:
        """Run ``fn`` once per feasible path through its branches on symbolic values."""
        global _RUN
        if _RUN is not None:
            raise SymbolicError("explore() does not nest")
        self._check_not_vacuous()
        pending: list[tuple[bool, ...]] = [()]
        paths: list[Path[T]] = []
        while pending:
            prefix = pending.pop()
            run = _Run(self._solver, prefix)
            self._solver.push()
            _RUN = run
            try:
                result = fn()
            finally:
                _RUN = None
                self._solver.pop()
            for n in range(len(prefix), len(run.forks)):
                pending.append((*run.forks[:n], not run.forks[n]))
            paths.append(Path(z3.And(*run.decisions), result))
            if len(paths) > limit:
                raise Inconclusive(f"more than {limit} paths")
        return paths

    def models(self, condition: z3.BoolRef, count: int) -> list[z3.ModelRef]:
        """Up to ``count`` distinct input assignments satisfying the domain and ``condition``."""
        s = self._solver
        terms = [t for c in self._cases for _, t, _ in c.inputs]
        found: list[z3.ModelRef] = []
        s.push()
        try:
            s.add(condition)
            while len(found) < count and s.check() == z3.sat:
                m = s.model()
                found.append(m)
                if not terms:
                    break
                s.add(z3.Or([t != m.eval(t, model_completion=True) for t in terms]))
        finally:
            s.pop()
        return found

    def inputs(self, model: z3.ModelRef) -> dict[str, int]:
        """The declared inputs' values in ``model``, as Python ints."""
        return {
            name: _as_int(model.eval(term, model_completion=True), width)
            for c in self._cases
            for name, term, width in c.inputs
        }

    @staticmethod
    def evaluate(model: z3.ModelRef, value: object) -> object:
        """``value`` with every symbolic part replaced by its value in ``model``."""
        if isinstance(value, Sym):
            return _as_int(model.eval(value.term, model_completion=True), None)
        if isinstance(value, SymBool):
            return z3.is_true(model.eval(value.term, model_completion=True))
        if isinstance(value, tuple):
            return tuple(Prover.evaluate(model, v) for v in value)
        if isinstance(value, list):
            return [Prover.evaluate(model, v) for v in value]
        if z3.is_expr(value):
            evaluated = model.eval(value, model_completion=True)
            return z3.is_true(evaluated) if z3.is_bool(evaluated) else evaluated.as_long()
        return value


def _as_int(value: z3.ExprRef, width: int | None) -> int:
    n: int = value.as_long()
    if width is None and n >> (WIDTH - 1):
        n -= 1 << WIDTH
    return n


def _fmt(value: z3.ExprRef, width: int | None) -> str:
    n = _as_int(value, width)
    if width is not None:
        return f"0x{n:0{(width + 3) // 4}x}"
    return _fmt_concrete(n)


def _fmt_concrete(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        return repr(value)
    return f"{value:#x}"


def _fmt_value(model: z3.ModelRef, value: object) -> str:
    if isinstance(value, Sym):
        return _fmt(model.eval(value.term, model_completion=True), None)
    if isinstance(value, SymBool):
        return str(z3.is_true(model.eval(value.term, model_completion=True)))
    if not z3.is_expr(value):
        return _fmt_concrete(value)
    evaluated = model.eval(value, model_completion=True)
    if z3.is_bool(evaluated):
        return str(z3.is_true(evaluated))
    return _fmt(evaluated, evaluated.size())


@contextmanager
def substituted(module: object, name: str, replacement: object) -> Iterator[None]:
    """Temporarily replace ``module.name`` (a helper the code calls through its module globals)."""
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


# ------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Proof(Generic[P]):
    """A registered proof: call it to run it; it names the requirements it establishes."""

    name: str
    requirements: tuple[str, ...]
    body: Callable[Concatenate[Prover, P], None]

    @property
    def summary(self) -> str:
        doc = self.body.__doc__ or ""
        return doc.strip().splitlines()[0] if doc.strip() else self.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> ProofResult:
        prover = Prover(self.name, self.requirements)
        start = time.perf_counter()
        status, cex, detail = Status.PROVED, None, ""
        try:
            self.body(prover, *args, **kwargs)
        except Refuted as refuted:
            status, cex = Status.REFUTED, refuted.counterexample
        except Inconclusive as why:
            status, detail = Status.UNKNOWN, f"in case {prover.failed_case!r}: {why}"
        except (SymbolicError, OverflowError, z3.Z3Exception, AttributeError, TypeError, KeyError) as exc:
            status = Status.ERROR
            detail = f"in case {prover.failed_case!r}: {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        return ProofResult(self.name, self.requirements, status, prover.claims, cex, detail, seconds)


PROOFS: dict[str, Proof[Any]] = {}
"""Every registered proof, by name (filled when :mod:`vpcid.conformance.proofs` is imported)."""


def proof(*requirements: str) -> Callable[[Callable[Concatenate[Prover, P], None]], Proof[P]]:
    """Register a proof body ``(prover, ...) -> None`` establishing ``requirements``."""
    bad = [r for r in requirements if not _RID.match(r)]
    if bad or not requirements:
        raise ValueError(f"a proof names one or more requirement IDs, got {requirements!r}")

    def register(body: Callable[Concatenate[Prover, P], None]) -> Proof[P]:
        name = body.__name__
        if name in PROOFS:
            raise ValueError(f"proof {name!r} is registered twice")
        registered = Proof(name, tuple(requirements), body)
        PROOFS[name] = registered
        return registered

    return register


def all_proofs() -> dict[str, Proof[Any]]:
    """Every proof, after importing the proof modules."""
    importlib.import_module("vpcid.conformance.proofs")
    return dict(PROOFS)


def run_all() -> list[ProofResult]:
    """Run every registered proof with its defaults (the model's real functions)."""
    return [p() for p in all_proofs().values()]


def contract_requirements() -> dict[str, tuple[str, ...]]:
    """CrossHair contract name -> requirement IDs it checks, from :mod:`vpcid.model.contracts`."""
    contracts = importlib.import_module("vpcid.model.contracts")
    declared: dict[str, tuple[str, ...]] = dict(contracts.CONTRACTS)
    return declared


@dataclass(frozen=True)
class ProofDeclaration:
    """A proof as its source declares it: ``@proof("R-...")`` on a function of the proofs package."""

    name: str
    requirements: tuple[str, ...]
    path: pathlib.Path
    line: int
    """Line of the ``def`` (its decorator is above it)."""
    summary: str
    """The first line of its docstring."""


def _proof_ids(decorator: ast.expr) -> tuple[str, ...] | None:
    """The requirement IDs of a ``@proof(...)`` decorator, or None for another decorator."""
    if not isinstance(decorator, ast.Call):
        return None
    func = decorator.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    if name != "proof":
        return None
    return tuple(a.value for a in decorator.args if isinstance(a, ast.Constant) and isinstance(a.value, str))


def declared_proofs() -> dict[str, ProofDeclaration]:
    """Every proof by name, read from the proof modules' source without importing them (no z3 needed).

    The same declarations :func:`proof` registers when the modules are
    imported; ``tests/test_traceability.py`` checks that the two agree.
    """
    spec = importlib.util.find_spec("vpcid.conformance.proofs")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    found: dict[str, ProofDeclaration] = {}
    for folder in folders:
        for path in sorted(pathlib.Path(folder).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in tree.body:
                if not isinstance(node, ast.FunctionDef):
                    continue
                for decorator in node.decorator_list:
                    ids = _proof_ids(decorator)
                    if ids is None:
                        continue
                    doc = (ast.get_docstring(node) or node.name).strip().splitlines()[0]
                    found[node.name] = ProofDeclaration(node.name, ids, path, node.lineno, doc)
    return found


def evidence() -> dict[str, set[str]]:
    """Requirement ID -> kinds of formal evidence for it: ``"z3"`` and/or ``"crosshair"``.

    Read from the declarations (:func:`declared_proofs`, the contracts'
    registry), so it needs neither z3 nor CrossHair.
    """
    found: dict[str, set[str]] = {}
    for declared in declared_proofs().values():
        for rid in declared.requirements:
            found.setdefault(rid, set()).add("z3")
    for rids in contract_requirements().values():
        for rid in rids:
            found.setdefault(rid, set()).add("crosshair")
    return found


def stand_in(value: object) -> Any:
    """``value`` typed as ``Any``: hands a symbolic stand-in (a ``Sym``, a list of them) to model
    code annotated for ``int`` or ``bytes``. Runtime identity; only the static type changes."""
    return value
