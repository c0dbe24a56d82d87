"""Campaigns beyond one process: pytest-xdist workers, a Redis example database shared by two
processes (a real redis-server started here), and HypoFuzz running a DeviceMachine test unchanged."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vpcid.conformance.trace import read_trace

PLANTED = "mutant:unmapped-mmio-zero"
"""A planted bug (unmapped MMIO reads zero, R-ACC-004) every campaign finds within its first examples."""
CLI = [sys.executable, "-c", "from vpcid.conformance.cli import main; main()"]


def vpcid(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A redis-server of its own on a free port, without persistence; stopped afterwards."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server here (Debian package redis-server; .ci/install-debian.sh installs it)")
    if importlib.util.find_spec("redis") is None:
        pytest.skip("the redis Python package is not installed (pip install redis)")
    import redis

    port = free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        for _ in range(200):  # until it accepts connections (or has exited)
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None:
                    pytest.fail(f"redis-server exited with status {process.returncode}")
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not accept connections")
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.req("R-ACC-004")
def test_two_processes_share_one_redis_corpus(redis_url: str, tmp_path: Path) -> None:
    first = vpcid(
        "fuzz",
        PLANTED,
        "--database",
        redis_url,
        "--examples",
        "200",
        "--no-shrink",
        "--counterexamples",
        "one",
        cwd=tmp_path,
    )
    assert first.returncode == 1, first.stdout + first.stderr
    assert "breaks: R-ACC-004" in first.stdout
    # The second process generates nothing: it only replays what the database holds.
    second = vpcid(
        "fuzz", PLANTED, "--database", redis_url, "--replay-only", "--counterexamples", "two", cwd=tmp_path
    )
    assert second.returncode == 1, second.stdout + second.stderr
    assert "breaks: R-ACC-004" in second.stdout
    _, steps = read_trace(next((tmp_path / "two").glob("*.jsonl")))
    assert len(steps) <= 10
    # Another Redis database number holds nothing: replaying from it finds nothing.
    empty = vpcid("fuzz", PLANTED, "--database", f"{redis_url}/1", "--replay-only", cwd=tmp_path)
    assert empty.returncode == 0, empty.stdout + empty.stderr
    assert "no finding" in empty.stdout


def test_workers_run_on_pytest_xdist_and_stop_at_a_finding(tmp_path: Path) -> None:
    if importlib.util.find_spec("xdist") is None:
        pytest.skip("pytest-xdist is not installed (pip install pytest-xdist)")
    found = vpcid(
        "fuzz",
        PLANTED,
        "--workers",
        "2",
        "--duration",
        "60",
        "--database",
        "db",
        "--no-shrink",
        "--json",
        "report.json",
        cwd=tmp_path,
    )
    assert found.returncode == 1, found.stdout + found.stderr
    assert "2 workers" in found.stdout
    assert "breaks: R-ACC-004" in found.stdout
    import json

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["workers"] == 2
    assert len(report["per_worker"]) == 2
    assert {w["worker"] for w in report["per_worker"]} == {"gw0", "gw1"}
    assert report["operations"] == sum(w["operations"] for w in report["per_worker"])
    clean = vpcid("fuzz", "e1000", "--workers", "2", "--examples", "10", "--database", "none", cwd=tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no finding" in clean.stdout


MACHINES = """
from hypothesis import HealthCheck, settings
from vpcid.conformance.stateful import DeviceMachine


@settings(stateful_step_count=5, deadline=None, suppress_health_check=list(HealthCheck))
class PlantedBug(DeviceMachine):
    target = "mutant:unmapped-mmio-zero"


TestPlantedBug = PlantedBug.TestCase
"""
"""A user's test module: a machine against a planted bug, with short examples (HypoFuzz shrinks each)."""


COLLECT = """
import sys
from hypofuzz.collection import collect_tests

found = collect_tests(["test_machines.py", "-p", "no:cacheprovider"])
print("fuzz targets:", [target.nodeid for target in found.fuzz_targets])
print("not collected:", sorted(found.not_collected))
"""


def hypofuzz_cli() -> Path:
    command = Path(sys.executable).with_name("hypothesis")
    if importlib.util.find_spec("hypofuzz") is None or not command.exists():
        pytest.skip("HypoFuzz is not installed (pip install hypofuzz)")
    return command


WITHOUT_CI = {name: value for name, value in os.environ.items() if name != "CI"}
"""HypoFuzz's environment: with CI set, Hypothesis loads its "ci" settings profile, which derandomizes
every test, and HypoFuzz fuzzes only randomized ones (as any HypoFuzz run outside CI)."""


def test_hypofuzz_collects_a_device_machine_unchanged(tmp_path: Path) -> None:
    hypofuzz_cli()
    (tmp_path / "test_machines.py").write_text(MACHINES, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-c", COLLECT],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=WITHOUT_CI,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "fuzz targets: ['test_machines.py::TestPlantedBug::runTest']" in run.stdout, run.stdout
    assert "not collected: []" in run.stdout


@pytest.mark.skipif(
    not os.environ.get("VPCID_HYPOFUZZ_RUN"), reason="set VPCID_HYPOFUZZ_RUN=1 (about a minute)"
)
def test_hypofuzz_finds_the_planted_bug(tmp_path: Path) -> None:
    """HypoFuzz's hub looks at its workers once a minute, so a run lasts at least that long."""
    command = hypofuzz_cli()
    (tmp_path / "test_machines.py").write_text(MACHINES, encoding="utf-8")
    run = subprocess.run(
        [
            str(command),
            "fuzz",
            "--no-dashboard",
            "-n",
            "1",
            "--",
            "test_machines.py",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=WITHOUT_CI,
    )
    text = run.stdout + run.stderr
    assert "using 1 process to fuzz 1 test" in text, text
    assert "Found a failing input for every test!" in text, text
