"""pytest plugin: ``pytest --vpcid-adapter X`` runs the conformance suite as ordinary tests.

Registered under the ``pytest11`` entry point, so implementers put the suite
in their own CI: one test per scenario case (named after it, marked with its
requirements), one for the fast random engine and one for the stateful
engine. Without ``--vpcid-adapter`` the plugin does nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SUITE_MODULE = Path(__file__).with_name("suite_tests.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vpcid", "vpcid conformance suite")
    group.addoption("--vpcid-adapter", default=None, help="run the conformance suite against this adapter")
    group.addoption("--vpcid-budget", type=int, default=20_000, help="random-engine operations")
    group.addoption("--vpcid-seed", type=int, default=0, help="seed of the engines")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "req(*ids): the requirement IDs (R-...) a test checks")
    if config.getoption("vpcid_adapter"):
        config.args.append(str(SUITE_MODULE))
