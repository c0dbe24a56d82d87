"""The tool as a new user meets it (issue 15): the docs example adapter, --adapter, help, the docs.

The main test is the path a newcomer takes: copy docs/example/example.py into
an empty folder, certify it from there, break one rule, get a replayable
trace, replay it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from vpcid.conformance.cli import main
from vpcid.conformance.machine import parse_machine
from vpcid.conformance.typefile import write_type_file
from vpcid.model import BarKind, BarSpec, DeviceType

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "docs" / "example" / "example.py"
VPCID = Path(sys.executable).parent / "vpcid"
BUDGET = "2000"
BREAK = ("COMMAND_WRITABLE = 0x0507", "COMMAND_WRITABLE = 0xFFFF")
"""The rule the newcomer breaks: every command register bit writable (R-CFG-004)."""


def vpcid(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``vpcid ARGS`` run from ``folder`` as a user runs it: the installed command, a fresh process."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [str(VPCID), *args], cwd=folder, capture_output=True, text=True, env=env, check=False
    )


@pytest.fixture
def newcomer(tmp_path: Path) -> Path:
    """An empty folder holding only a copy of the docs example, as docs/example-adapter.md says."""
    folder = tmp_path / "myvmm"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "example.py")
    return folder


@pytest.mark.req("R-CFG-004", "R-VAR-002")
def test_copy_certify_break_replay(newcomer: Path) -> None:
    certified = vpcid(newcomer, "certify", "--adapter", "example:factory", "--budget", BUDGET)
    assert certified.returncode == 0, certified.stdout + certified.stderr
    assert re.search(r"^CONFORMANT: \d+ pass, 0 fail", certified.stdout, re.MULTILINE), certified.stdout
    assert not (newcomer / "counterexamples").exists() or not any((newcomer / "counterexamples").iterdir())

    source = (newcomer / "example.py").read_text(encoding="utf-8")
    assert source.count(BREAK[0]) == 1
    (newcomer / "example.py").write_text(source.replace(*BREAK), encoding="utf-8")
    broken = vpcid(newcomer, "certify", "--adapter", "example:factory", "--budget", BUDGET, "--failures-only")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "NOT CONFORMANT" in broken.stdout
    assert re.search(r"R-CFG-004 +│ Command register +│ fail", broken.stdout), broken.stdout
    traces = sorted((newcomer / "counterexamples").glob("*.jsonl"))
    assert traces, broken.stdout
    printed = broken.stdout.strip().splitlines()[-1].strip()
    assert printed.startswith("vpcid replay counterexamples/")
    assert printed.endswith("--adapter example:factory")

    command = shlex.split(printed)
    replayed = vpcid(newcomer, *command[1:])
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert replayed.stdout.startswith("DIVERGES at line ")

    (newcomer / "example.py").write_text(source, encoding="utf-8")
    fixed = vpcid(newcomer, *command[1:])
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert fixed.stdout.startswith("no divergence")


def test_the_docs_example_states_what_the_newcomer_sees() -> None:
    walkthrough = (ROOT / "docs" / "example-adapter.md").read_text(encoding="utf-8")
    assert "vpcid certify --adapter example:factory" in walkthrough
    assert f"sed -i 's/^{BREAK[0]}/{BREAK[1]}/' example.py" in walkthrough
    assert "docs/example-adapter.md" in (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert "docs/example-adapter.md" in (ROOT / "README.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------ --adapter


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("import nonexistent_dependency_xyz\n", "importing example failed: ModuleNotFoundError: No module "
         "named 'nonexistent_dependency_xyz' (example.py:1)"),
        ("x = 1\ny = undefined_name\n", "importing example failed: NameError: name 'undefined_name' is not "
         "defined (example.py:2)"),
        ("def factory(:\n", "importing example failed: SyntaxError"),
        ("def other(argument):\n    return None\n", "example has no 'factory'; define def factory(argument"),
        ("factory = 3\n", "example:factory is not a callable adapter factory"),
        ("def factory(argument):\n    return 3\n", "the factory returned a int, not an adapter"),
        ("def factory(argument):\n    return {}['x']\n", "the factory raised KeyError: 'x' (example.py:2)"),
    ],
    ids=["missing-dependency", "name-error", "syntax-error", "no-factory", "not-callable", "not-an-adapter",
         "factory-raises"],
)  # fmt: skip
def test_an_adapter_that_fails_to_load_says_why(module: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(module, encoding="utf-8")
    result = vpcid(tmp_path, "certify", "--adapter", "example:factory")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vpcid: error: ")
    assert message in lines[0]


def test_a_module_that_is_not_there_is_bad_input_naming_the_folder(tmp_path: Path) -> None:
    result = vpcid(tmp_path, "certify", "--adapter", "nothere:factory")
    assert result.returncode == 2
    assert f"cannot import nothere: no module 'nothere' in {tmp_path}" in result.stderr
    unknown = vpcid(tmp_path, "certify", "--adapter", "nothere")
    assert unknown.returncode == 2
    assert "no adapter named 'nothere'" in unknown.stderr
    assert "e.g. nothere:factory" in unknown.stderr


def test_a_path_to_a_python_file_names_the_module(newcomer: Path) -> None:
    (newcomer / "sub").mkdir()
    shutil.move(newcomer / "example.py", newcomer / "sub" / "example.py")
    result = vpcid(newcomer, "certify", "--adapter", "sub/example.py:factory", "--budget", "500")
    assert result.returncode == 0, result.stdout + result.stderr
    missing = vpcid(newcomer, "certify", "--adapter", "sub/absent.py:factory")
    assert missing.returncode == 2
    assert "sub/absent.py: no such file" in missing.stderr


def test_an_argument_the_factory_refuses_is_one_line(newcomer: Path) -> None:
    result = vpcid(newcomer, "certify", "--adapter", "example:factory:surprise")
    assert result.returncode == 2
    assert (
        "the factory raised ValueError: the example adapter takes no argument, got 'surprise'"
        in result.stderr
    )


# ------------------------------------------------------------------ the pytest plugin


@pytest.fixture
def isolated(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose subprocess loads plugins from entry points, as an implementer's CI does."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("PYTEST_PLUGINS", raising=False)
    shutil.copy(EXAMPLE, pytester.path / "example.py")
    return pytester


pytest_plugins = ["pytester"]
PLUGIN_ARGS = ("--vpcid-adapter", "example:factory", "--vpcid-budget", "1000", "-q", "-p", "no:cacheprovider")


def test_the_plugin_certifies_the_example_in_ci(isolated: pytest.Pytester) -> None:
    result = isolated.runpytest_subprocess(*PLUGIN_ARGS)
    assert result.ret == 0, result.stdout.str()
    assert not (isolated.path / "vpcid-counterexamples").exists()


def test_the_plugin_writes_replayable_traces_of_a_broken_example(isolated: pytest.Pytester) -> None:
    source = (isolated.path / "example.py").read_text(encoding="utf-8")
    (isolated.path / "example.py").write_text(source.replace(*BREAK), encoding="utf-8")
    result = isolated.runpytest_subprocess(*PLUGIN_ARGS)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str()
    commands = re.findall(r"reproduce with: (vpcid replay \S+ --adapter example:factory)", text)
    assert commands, text
    assert '{"op": "init"}' in text, "the minimal trace is shown as trace-language JSON"
    assert "{'op'" not in text.split("minimal trace", 1)[1].split("reproduce with", 1)[0]
    for command in sorted(set(commands))[:3]:
        replayed = vpcid(isolated.path, *shlex.split(command)[1:])
        assert replayed.returncode == 1, replayed.stdout + replayed.stderr
        assert "DIVERGES" in replayed.stdout


@pytest.mark.parametrize(
    ("spec", "message"),
    [("nothere:factory", "no module 'nothere'"), ("mutant:no-such-bug", "the adapter is unavailable here")],
)
def test_the_plugin_reports_an_adapter_it_cannot_load_in_one_line(
    isolated: pytest.Pytester, spec: str, message: str
) -> None:
    result = isolated.runpytest_subprocess("--vpcid-adapter", spec, "-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = result.stderr.str()
    assert f"--vpcid-adapter {spec}: " in errors, errors
    assert message in errors, errors
    assert "Traceback" not in errors + result.stdout.str()


# ------------------------------------------------------------------ help


def commands(command: click.Command, path: tuple[str, ...] = ("vpcid",)) -> list[tuple[str, click.Command]]:
    found = [(" ".join(path), command)]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found += commands(sub, (*path, name))
    return found


EVERY_COMMAND = commands(main)
OURS = [(name, c) for name, c in EVERY_COMMAND if c.callback is None or c.callback.__module__ in
        ("vpcid.conformance.commands", "vpcid.conformance.cli")]  # fmt: skip
"""Commands this project's CLI modules define (others document themselves; their exit status is added)."""


@pytest.mark.parametrize(("name", "command"), EVERY_COMMAND, ids=[n for n, _ in EVERY_COMMAND])
def test_every_help_documents_the_exit_statuses(name: str, command: click.Command) -> None:
    result = CliRunner().invoke(main, [*name.split()[1:], "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Exit status:" in result.output
    for status in ("0 ", "2  bad input"):
        assert re.search(rf"^\s+{status}", result.output, re.MULTILINE), result.output


@pytest.mark.parametrize(("name", "command"), OURS, ids=[n for n, _ in OURS])
def test_every_command_has_an_example_and_every_option_a_help_text(name: str, command: click.Command) -> None:
    result = CliRunner().invoke(main, [*name.split()[1:], "--help"], terminal_width=200)
    assert "Examples:" in result.output, result.output
    assert re.search(r"^\s+vpcid ", result.output.split("Examples:", 1)[1], re.MULTILINE)
    for parameter in command.params:
        if isinstance(parameter, click.Option) and parameter.name not in ("help", "version"):
            assert parameter.help, f"{name} {parameter.opts[0]} has no help text"


def test_readme_documents_every_exit_status() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for status in range(4):
        assert re.search(rf"^\| {status} \| ", readme, re.MULTILINE), status


# ------------------------------------------------------------------ the docs


MARKDOWN = sorted([*(ROOT / "spec").rglob("*.md"), *(ROOT / "docs").rglob("*.md"), ROOT / "README.md",
                   ROOT / "CONTRIBUTING.md"])  # fmt: skip


@pytest.mark.parametrize("page", MARKDOWN, ids=[str(p.relative_to(ROOT)) for p in MARKDOWN])
def test_every_link_and_cited_file_is_in_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", text):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"
    assert not re.search(r"\bref/[\w-]+\.(md|txt)\b", text), f"{page.relative_to(ROOT)} cites a file not here"


def test_spec_readme_lists_every_file_of_the_spec() -> None:
    spec = ROOT / "spec"
    readme = (spec / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\]\(([^)#]+)\)", readme))
    for path in spec.rglob("*"):
        if path.is_file() and path != spec / "README.md":
            assert path.relative_to(spec).as_posix() in listed, f"spec/README.md does not list {path}"


def test_the_machine_format_example_builds(tmp_path: Path) -> None:
    text = (ROOT / "spec" / "formats" / "machine.md").read_text(encoding="utf-8")
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    for path in tomllib.loads(example)["types"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        write_type_file(tmp_path / path, [DeviceType("my-nic", 0x1234, 0x0001, 0x020000,
                                                     bars=(BarSpec(BarKind.MEM32, 4096),))])  # fmt: skip
    machine = parse_machine(example, origin="machine.md", folder=tmp_path)
    from vpcid.model import Bdf

    assert machine.manager.config_read(machine.vm_id, Bdf(0, 3, 0), 0x10, 4) == 0xFE000000
    assert machine.manager.resolve(machine.vm_id, "memory", 0xFE000000) is not None
