"""pytest plugin: ``pytest --vpcid-adapter X`` runs the conformance suite as ordinary tests.

Registered under the ``pytest11`` entry point, so implementers put the suite
in their own CI: one test per scenario case (named after it, marked with its
requirements), one for the fast random engine and one for the stateful
engine. A failing test writes its minimal trace to ``--vpcid-counterexamples``
and prints it as trace-language JSON with the exact ``vpcid replay`` command.
An adapter that cannot be loaded stops the run with one line saying why
(a usage error, before any test runs). Without ``--vpcid-adapter`` the plugin
does nothing.

The ``vpcid_fuzz`` fixture runs a fuzzing campaign from a test (see
docs/fuzzing.md): ``vpcid_fuzz("mymodule:factory", invariants=[...])`` fails
the test with the finding's minimal trace, written to
``--vpcid-counterexamples``, and the command that reproduces it; it returns
the campaign (what it ran and exercised) otherwise. ``--vpcid-fuzz-examples``,
``--vpcid-fuzz-duration`` and ``--vpcid-fuzz-database`` set its budget and
example database for the whole run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SUITE_MODULE = Path(__file__).with_name("suite_tests.py")
DEFAULT_COUNTEREXAMPLES = "vpcid-counterexamples"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vpcid", "vpcid conformance suite")
    group.addoption(
        "--vpcid-adapter",
        default=None,
        metavar="SPEC",
        help="run the conformance suite against this adapter: NAME[:ARG] or MODULE:FACTORY[:ARG]",
    )
    group.addoption("--vpcid-budget", type=int, default=20_000, help="random-engine operations")
    group.addoption("--vpcid-seed", type=int, default=0, help="seed of the engines")
    group.addoption(
        "--vpcid-counterexamples",
        default=DEFAULT_COUNTEREXAMPLES,
        metavar="DIR",
        help=f"where each failure's minimal trace is written, for vpcid replay ({DEFAULT_COUNTEREXAMPLES})",
    )
    group.addoption(
        "--vpcid-fuzz-examples",
        type=int,
        default=None,
        metavar="N",
        help="Hypothesis examples of each vpcid_fuzz campaign (default: what the test asks, else 200)",
    )
    group.addoption(
        "--vpcid-fuzz-duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run each vpcid_fuzz campaign this long instead",
    )
    group.addoption(
        "--vpcid-fuzz-database",
        default=None,
        metavar="DIR|redis://HOST:PORT|none",
        help="example database of the vpcid_fuzz campaigns (default: none, each run from its seed)",
    )


@pytest.fixture
def vpcid_fuzz(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """A function that fuzzes a target from a test: ``vpcid_fuzz(target, invariants=(), examples=None,
    duration=None, seed=0, machine=DeviceMachine, types=())``.

    ``target`` is an ``--adapter`` spec, a device-type file's path or a bundled type's name, a
    :class:`~vpcid.model.DeviceType` (or a list of them) run on the model, an adapter object or a
    :class:`~vpcid.conformance.stateful.Target`. A finding fails the test with its minimal trace
    (written to ``--vpcid-counterexamples``) and the command that reproduces it; otherwise the
    :class:`~vpcid.conformance.stateful.CampaignResult` is returned.
    """
    from vpcid.conformance.fuzz import pytest_campaign

    config = request.config

    def run(target: object, **options: Any) -> Any:
        return pytest_campaign(
            target,
            folder=Path(str(config.getoption("vpcid_counterexamples"))),
            test=request.node.name,
            examples_override=config.getoption("vpcid_fuzz_examples"),
            duration_override=config.getoption("vpcid_fuzz_duration"),
            database=config.getoption("vpcid_fuzz_database"),
            **options,
        )

    return run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "req(*ids): the requirement IDs (R-...) a test checks")
    spec = config.getoption("vpcid_adapter")
    if not spec:
        return
    _check_adapter(spec)
    config.args.append(str(SUITE_MODULE))


def _check_adapter(spec: str) -> None:
    """Load the adapter once, so that one that cannot be loaded is a usage error, not a traceback."""
    from vpcid.adapters.base import AdapterUnavailable
    from vpcid.adapters.registry import load_adapter
    from vpcid.model.errors import VpcidError

    try:
        adapter = load_adapter(spec)
    except VpcidError as exc:  # AdapterSpecError among them: the spec names nothing loadable
        raise pytest.UsageError(f"--vpcid-adapter {spec}: {exc}") from None
    except AdapterUnavailable as exc:
        raise pytest.UsageError(f"--vpcid-adapter {spec}: the adapter is unavailable here: {exc}") from None
    adapter.close()
