"""The stateful engine: a Hypothesis ``RuleBasedStateMachine`` over the generator's moves.

Each rule is one move of :class:`~vpcid.conformance.engine.RandomOps` (program
a BAR, toggle decode, access a window, hot-plug, save/restore, ...) drawn with
a seed Hypothesis controls, so Hypothesis searches and shrinks over moves and
their parameters. The minimal failing example is then cut down further,
operation by operation, by :func:`~vpcid.conformance.engine.minimise`.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import HealthCheck, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test
from vpcid.adapters.base import Adapter
from vpcid.conformance.engine import Differential, Finding, RandomOps, minimise
from vpcid.conformance.trace import Op
from vpcid.model import DeviceType

STEPS_PER_EXAMPLE = 25


class DivergenceFound(AssertionError):
    """Raised inside the machine so that Hypothesis shrinks the example."""


def run_stateful(
    impl: Adapter, examples: int, seed: int, types: Sequence[DeviceType] = ()
) -> tuple[int, list[Finding]]:
    """Run ``examples`` state-machine examples against ``impl``; return operations run and findings.

    ``types``: device types beyond the suite's (``--types``), as :class:`RandomOps` takes them.
    """
    recorded: list[list[Op]] = [[]]
    total = [0]

    class VpcidMachine(RuleBasedStateMachine):
        """Moves of the random generator, as rules; every observation compared with the model."""

        def __init__(self) -> None:
            super().__init__()
            self.moves = RandomOps(impl.info, 0, types=types)
            self.diff = Differential(impl)
            self.ops: list[Op] = []
            recorded[0] = self.ops

        def _play(self, ops: list[Op]) -> None:
            start = len(self.ops)
            self.ops += ops
            divergence = self.diff.run(ops, start)
            total[0] += len(ops)
            if divergence is not None:
                raise DivergenceFound(divergence.describe())

        @initialize()
        def start(self) -> None:
            self._play(self.moves.prologue())

        @rule(move=st.integers(0, 1 << 16), draw=st.integers(0, (1 << 32) - 1))
        def step(self, move: int, draw: int) -> None:
            self.moves.rng.seed(draw)
            maker = self.moves._makers[move % len(self.moves._makers)]
            self._play(maker())

    test_settings = settings(
        max_examples=examples,
        stateful_step_count=STEPS_PER_EXAMPLE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    try:
        run_state_machine_as_test(fixed_seed(seed)(VpcidMachine), settings=test_settings)
    except DivergenceFound:
        ops = list(recorded[0])
        final = Differential(impl).replay(ops)
        if final is None:
            return total[0], []
        return total[0], [minimise(impl, ops[: final.index + 1], "stateful", seed)]
    return total[0], []
