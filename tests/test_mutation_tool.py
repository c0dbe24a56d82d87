"""The systematic-mutant machinery (``vpcid mutate``): cosmic-ray's mutants of the model, loaded as a
separate package and certified against the pristine model, on a handful of mutants."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

pytest.importorskip("cosmic_ray", reason="cosmic-ray is not installed (pip install -e '.[dev]')")

from vpcid.conformance.cli import main
from vpcid.conformance.mutation import (
    PAIRED_VALUES,
    Mutation,
    Settings,
    annotation_spans,
    declared_profiles,
    first_pass,
    fork_judge,
    in_annotation,
    judge,
    load_mirror,
    project_root,
    target_named,
    wait_for,
)
from vpcid.model import Profile

TABLES = "model/vpcid/model/tables.py"
DEVICETYPE = "model/vpcid/model/devicetype.py"


def in_child(work: Any, timeout: float = 120.0) -> tuple[dict[str, Any] | None, str]:
    """Run ``work`` in a forked child (the mirror stays installed there only): its answer and end."""
    _, answer, ended = wait_for(fork_judge(work, timeout))
    return answer, ended


def edited(path: str, old: str, new: str) -> dict[str, str]:
    """The source of ``path`` with ``old`` (which must occur once) replaced by ``new``."""
    source = (project_root() / path).read_text(encoding="utf-8")
    assert source.count(old) == 1, f"{old!r} does not occur exactly once in {path}"
    return {path: source.replace(old, new)}


def test_annotations_are_found_in_parameters_returns_and_variables() -> None:
    source = "def f(a: int | None = 1 | 2) -> bytes | None:\n    b: int | str = 3 | 4\n    return None\n"
    spans = annotation_spans(source)
    assert len(spans) == 3

    def at(line: int, column: int) -> Mutation:
        return Mutation(
            "id",
            "x.py",
            "core/ReplaceBinaryOperator_BitOr_BitAnd",
            0,
            (line, column),
            (line, column + 1),
            "f",
        )

    assert in_annotation(at(1, 13), spans)  # int | None of the parameter
    assert in_annotation(at(1, 37), spans)  # bytes | None returned
    assert in_annotation(at(2, 11), spans)  # int | str of the variable
    assert not in_annotation(at(1, 24), spans)  # the default value 1 | 2 is evaluated
    assert not in_annotation(at(2, 22), spans)  # so is the assigned 3 | 4


def test_first_pass_takes_one_replacement_per_operator_site() -> None:
    def mutation(operator: str) -> Mutation:
        return Mutation("id", TABLES, f"core/{operator}", 0, (1, 0), (1, 1), None)

    assert first_pass(mutation("ReplaceBinaryOperator_Add_Sub"))
    assert not first_pass(mutation("ReplaceBinaryOperator_Add_Mul"))
    assert first_pass(mutation("ReplaceComparisonOperator_Lt_LtE"))
    assert not first_pass(mutation("ReplaceComparisonOperator_Lt_Gt"))
    assert first_pass(mutation("NumberReplacer"))


def test_alternate_profiles_give_every_axis_each_of_its_values() -> None:
    profiles = declared_profiles()
    assert profiles[0] == Profile()
    from vpcid.model.profile import AXES

    for axis, values in AXES.items():
        assert {p.to_mapping()[axis] for p in profiles} == {v.value for v in values}
    default = Profile().to_mapping()
    singles = profiles[1 : len(profiles) - len(PAIRED_VALUES)]
    for profile in singles:  # one axis away from the default each, so no value hides another
        assert len([a for a, v in profile.to_mapping().items() if v != default[a]]) == 1, profile
    paired = [
        {a: v for a, v in p.to_mapping().items() if v != default[a]} for p in profiles[len(singles) + 1 :]
    ]
    assert paired == list(PAIRED_VALUES)  # then the pairs whose rules only meet together


def test_a_restore_under_the_deferred_move_at_the_top_of_memory_needs_both_values() -> None:
    """The paired profile kills a mutant of the top-of-space check a deferred restore makes, which
    neither value alone reaches."""
    source = (project_root() / "model/vpcid/model/manager.py").read_text(encoding="utf-8")
    old = "return not (top_unmapped and base + size == limit)"
    assert source.count(old) == 1
    mutated = {
        "model/vpcid/model/manager.py": source.replace(
            old, "return not (top_unmapped and base - size == limit)"
        )
    }
    pair = Profile.from_mapping(PAIRED_VALUES[0])
    alone = [Profile.from_mapping({axis: value}) for axis, value in PAIRED_VALUES[0].items()]
    for profile, killed in ((alone[0], False), (alone[1], False), (pair, True)):
        settings = Settings(budget=500, profiles=(profile,))
        answer, _ = in_child(lambda s=settings: judge(target_named("model"), mutated, s).to_json())
        assert answer is not None
        assert answer["killed"] is killed, (profile, answer)


def test_the_mirror_is_a_separate_package_built_from_the_model_sources() -> None:
    def work() -> dict[str, Any]:
        import vpcid.model

        mirror = load_mirror({})
        kitchen = mirror.suite_types()["kitchen-sink"]
        return {
            "name": mirror.model.__name__,
            "separate": mirror.model.DataManager is not vpcid.model.DataManager,
            "pristine": sys.modules["vpcid.model"] is vpcid.model,
            "types": type(kitchen) is mirror.model.DeviceType and type(kitchen) is not vpcid.model.DeviceType,
        }

    answer, ended = in_child(work)
    assert ended == "done"
    assert answer == {"name": "vpcid_mutant.model", "separate": True, "pristine": True, "types": True}


def test_unmutated_model_is_conformant_and_a_mutated_one_is_killed_on_its_rule() -> None:
    target = target_named("model")
    settings = Settings(profiles=(Profile(),))
    answer, _ = in_child(lambda: judge(target, {}, settings).to_json())
    assert answer == {"killed": False, "reason": "conformant", "how": "certified"}

    shifted = edited(TABLES, "bucket = slots.get(address >> log2)", "bucket = slots.get(address << log2)")
    answer, _ = in_child(lambda: judge(target, shifted, settings).to_json())
    assert answer is not None
    assert answer["killed"]
    assert answer["how"] == "certified"
    assert answer["reason"].startswith("R-")


HEADER = "model/vpcid/model/header.py"


@pytest.mark.req("R-DT-006")
def test_a_mutant_that_accepts_a_broken_definition_is_killed_by_define_type() -> None:
    """Definitions reach the mutant through its own type-file reader: a mutated rule of the declared
    bytes (a capability pointer that is not a dword allowed) is rejected by the type-rule-breaks case,
    not by the suite's pristine reader in front of it."""
    rule = "if pointer % 4 or pointer < CAPABILITY_AREA:"
    unaligned = edited(HEADER, rule, "if pointer < CAPABILITY_AREA:")
    settings = Settings(profiles=(Profile(),))
    answer, _ = in_child(lambda: judge(target_named("model"), unaligned, settings).to_json())
    assert answer is not None
    assert answer["killed"], answer
    assert answer["reason"] == "R-DT-006: case device-types/type-rule-breaks", answer


@pytest.mark.req("R-DT-001")
def test_a_mutant_that_rejects_a_valid_definition_is_blamed_on_the_rule_at_its_edge() -> None:
    """A 64-bit BAR of 16 bytes is the smallest allowed: a mutant that refuses it fails the
    type-edge-sizes case, blamed on the rule the step checks, not on define_type's own rule."""
    strict = edited(DEVICETYPE, "16 <= bar.size <= 1 << 63", "16 < bar.size <= 1 << 63")
    settings = Settings(profiles=(Profile(),))
    answer, _ = in_child(lambda: judge(target_named("model"), strict, settings).to_json())
    assert answer is not None
    assert answer["reason"] == "R-DT-001: case device-types/type-edge-sizes", answer


def test_an_equivalent_mutant_survives() -> None:
    """Without its cache, ``layout`` computes the same bytes: certification cannot tell them apart."""
    uncached = edited(DEVICETYPE, "@lru_cache(maxsize=512)\ndef layout(", "def layout(")
    settings = Settings(profiles=(Profile(),))
    answer, _ = in_child(lambda: judge(target_named("model"), uncached, settings).to_json())
    assert answer == {"killed": False, "reason": "conformant", "how": "certified"}


def test_a_mutant_that_does_not_load_is_killed() -> None:
    broken = {"model/vpcid/model/bdf.py": "raise RuntimeError('the mutated module fails at import')\n"}
    answer, _ = in_child(lambda: judge(target_named("model"), broken, Settings()).to_json())
    assert answer == {
        "killed": True,
        "reason": "RuntimeError: the mutated module fails at import",
        "how": "load",
    }


def test_a_hanging_or_crashing_child_is_reported_as_such() -> None:
    def hang() -> dict[str, Any]:
        time.sleep(60)
        return {}

    def crash() -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGKILL)
        return {}

    assert in_child(hang, timeout=0.2) == (None, "timeout")
    assert in_child(crash) == (None, "crash: killed by signal 9")


def test_cython_backend_with_the_unmutated_python_parts_is_conformant() -> None:
    target = target_named("cython")
    reason = target.available()
    if reason is not None:
        pytest.skip(f"Cython backend not built: {reason}")
    answer, _ = in_child(lambda: judge(target, {}, Settings(profiles=(Profile(),))).to_json())
    assert answer == {"killed": False, "reason": "conformant", "how": "certified"}


def test_vpcid_mutate_runs_a_cosmic_ray_session_and_reports_it(tmp_path: Path) -> None:
    session = tmp_path / "tables.sqlite"
    runner = CliRunner()
    args = ["mutate", "--session", str(session), "--only", TABLES, "--limit", "3", "--profiles", "default"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "cosmic-ray" in result.output
    assert "equivalent (annotations, skipped):" in result.output
    judged = [line for line in result.output.splitlines() if line.startswith(("killed ", "SURVIVED "))]
    assert len(judged) == 3
    assert all(TABLES in line for line in judged)
    with sqlite3.connect(session) as db:  # cosmic-ray's own session schema, readable by cr-report
        (results,) = db.execute("select count(*) from work_results").fetchone()
        (items,) = db.execute("select count(*) from work_items").fetchone()
    assert 3 < results < items

    report = runner.invoke(
        main, ["mutate", "--session", str(session), "--report", "--survivors", "--not-executed"]
    )
    assert report.exit_code == 0, report.output
    assert "survivors:" in report.output


def test_vpcid_mutate_rejects_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    outside = runner.invoke(main, ["mutate", "--session", str(tmp_path / "s.sqlite"), "--only", "README.md"])
    assert outside.exit_code == 2
    assert "not a file of target 'model'" in outside.output
    missing = runner.invoke(main, ["mutate", "--session", str(tmp_path / "none.sqlite"), "--report"])
    assert missing.exit_code == 2
    assert "no mutation session" in missing.output
    assert not (tmp_path / "none.sqlite").exists()


def _mutation(path: str, definition: str | None, operator: str) -> Any:
    from vpcid.conformance.mutation import Mutation

    return Mutation("job", path, f"core/{operator}", 0, (1, 0), (1, 1), definition)


def test_survivor_rules_classify_by_file_function_operator_and_both_sides_of_the_change() -> None:
    """The first rule that covers a survivor classifies it; one no rule covers is a gap (None)."""
    from vpcid.conformance.mutation import SURVIVOR_RULES, classify

    frozen = _mutation("model/vpcid/model/blob.py", None, "ReplaceTrueWithFalse")
    rule = classify(frozen, "-@dataclass(frozen=True, slots=True)\n+@dataclass(frozen=False, slots=True)")
    assert rule is not None
    assert rule.kind == "equivalent"
    bound = "-        if not (_is_pow2(bar.size) and 4 <= bar.size <= 256) or bar.prefetchable:\n"
    non_power = bound + "+        if not (_is_pow2(bar.size) and 4 <= bar.size <= 257) or bar.prefetchable:"
    power = bound + "+        if not (_is_pow2(bar.size) and 4 <= bar.size <= 512) or bar.prefetchable:"
    bars = _mutation("model/vpcid/model/devicetype.py", "_validate_bars", "NumberReplacer")
    assert (rule := classify(bars, non_power)) is not None
    assert "power of two" in rule.reason
    assert classify(bars, power) is None, "a bound moved to another power of two is a gap"
    guard = _mutation("model/vpcid/model/bdf.py", "__new__", "NumberReplacer")
    assert (rule := classify(guard, "-x\n+y")) is not None
    assert rule.kind == "api-guard"
    for rule in SURVIVOR_RULES:
        assert rule.kind in ("equivalent", "api-guard", "builder"), rule
        assert (project_root() / "model/vpcid/model" / rule.path).exists() or rule.path == ".py", rule.path
        assert rule.reason, rule
        assert not rule.reason.endswith(" "), rule


def test_the_survivor_table_is_written_between_its_markers(tmp_path: Path) -> None:
    from vpcid.conformance.mutation import TABLE_END, TABLE_START, MutationError, Summary, write_table

    page = tmp_path / "page.md"
    page.write_text(f"# Score\n\n{TABLE_START}\nold\n{TABLE_END}\nafter\n", encoding="utf-8")
    frozen = _mutation("model/vpcid/model/blob.py", None, "ReplaceTrueWithFalse")
    diff = "-@dataclass(frozen=True, slots=True)\n+@dataclass(frozen=False, slots=True)"
    summary = Summary(survivors=[(frozen, "certified: conformant", diff)])
    write_table(page, summary)
    text = page.read_text(encoding="utf-8")
    assert "old" not in text
    assert text.endswith(f"{TABLE_END}\nafter\n")
    assert "| equivalent | 1 |" in text
    page.write_text("no markers", encoding="utf-8")
    with pytest.raises(MutationError, match="no lines"):
        write_table(page, summary)


def test_lines_run_traces_methods_and_the_functions_nested_in_them() -> None:
    """Coverage counts every frame of the mirror's code: a closure called by a method is traced like
    the method (the lines a not-executed mutant sits on are truly never run)."""
    from vpcid.conformance.mutation import MIRROR_FILE_PREFIX, lines_run

    source = (
        "class Manager:\n"  # 1
        "    def access(self, port):\n"  # 2
        "        def resolve(p):\n"  # 3
        "            return p + 1\n"  # 4
        "        return resolve(port)\n"  # 5
        "    def resolve(self, port):\n"  # 6
        "        return port - 1\n"  # 7
    )
    space: dict[str, Any] = {}
    exec(compile(source, MIRROR_FILE_PREFIX + "demo.py", "exec"), space)
    result, lines = lines_run(lambda: space["Manager"]().access(41))
    assert result == 42
    assert {3, 4, 5} <= lines["demo.py"]
    assert 7 not in lines["demo.py"]


def test_a_mutation_on_a_line_without_bytecode_counts_as_run_with_its_statement() -> None:
    """A constant folded at compile time reports no line event for its continuation lines (nor does the
    ``*`` of a signature): the statement that holds the mutation decides whether it ran."""
    from vpcid.conformance.mutation import MIRROR_FILE_PREFIX, lines_run, statement_lines

    source = (
        "BITS = (('vendor_id', 16),\n"  # 1
        "        ('device_id', 16))\n"  # 2
        "def frame(magic,\n"  # 3
        "          *,\n"  # 4
        "          minor=0):\n"  # 5
        "    return magic\n"  # 6
    )
    space: dict[str, Any] = {}
    _, lines = lines_run(lambda: exec(compile(source, MIRROR_FILE_PREFIX + "demo.py", "exec"), space))
    assert 2 not in lines["demo.py"]
    assert 4 not in lines["demo.py"]
    spans = statement_lines(source)
    assert spans[2] == range(1, 3)
    assert spans[4] == range(3, 6)
    assert spans[6] == range(6, 7)
    assert set(spans[2]) & lines["demo.py"]
    assert set(spans[4]) & lines["demo.py"]
    assert not set(spans[6]) & lines["demo.py"], "the body of a function never called did not run"


def test_not_executed_mutants_are_grouped_by_their_qualified_definition(tmp_path: Path) -> None:
    """cosmic-ray names a definition by its last part only: the table tells the manager's public
    resolve method (never called by an operation) from the _io_access closure of the same name."""
    from vpcid.conformance.mutation import Summary, qualified_names, survivor_table

    manager = "model/vpcid/model/manager.py"
    source = (project_root() / manager).read_text(encoding="utf-8").splitlines()
    method = next(n for n, line in enumerate(source, 1) if "def resolve(self, vm_id" in line)
    closure = next(n for n, line in enumerate(source, 1) if "if CF8 <= p < CFC:" in line)
    names = qualified_names("\n".join(source))
    assert names[method + 1] == "DataManager.resolve"
    assert names[closure] == "DataManager._io_access.resolve"
    idle = Mutation("job", manager, "core/NumberReplacer", 0, (method + 1, 8), (method + 1, 9), "resolve")
    table = survivor_table(Summary(survivors=[(idle, "not executed: never run", None)]))
    assert f"| `{manager}` | DataManager.resolve | 1 |" in table


def test_survivor_rules_for_edges_and_variant_paths_leave_killable_mutants_as_gaps() -> None:
    """The equivalents read in the variant paths are classified; a mutant a case kills is not."""
    from vpcid.conformance.mutation import classify

    cf8 = _mutation("model/vpcid/model/manager.py", "_cf8_access", "NumberReplacer")
    five = (
        '-            return vm.cf8.to_bytes(4, "little")\n+            return vm.cf8.to_bytes( 5, "little")'
    )
    assert (rule := classify(cf8, five)) is not None
    assert rule.kind == "equivalent"
    window = _mutation("model/vpcid/model/manager.py", "_io_access", "ReplaceComparisonOperator_Lt_LtE")
    wider = (
        "-        touched_window = port < CFC + 4 and port + width > CFC\n"
        "+        touched_window = port <= CFC + 4 and port + width > CFC"
    )
    assert classify(window, wider) is None, "the cf8-after-accesses-beside-the-window case kills it"
    rom = _mutation(
        "model/vpcid/model/configspace.py", "decode_enabled", "ReplaceBinaryOperator_BitAnd_FloorDiv"
    )
    line = (
        "return dtype.rom is not None and bool(command {} CMD_MEM) and bool(read_le(config, ROM_BAR, 1) {} 1)"
    )
    assert classify(rom, f"-{line.format('&', '&')}\n+{line.format('&', '//')}") is not None
    assert classify(rom, f"-{line.format('&', '&')}\n+{line.format('//', '&')}") is None


def test_gaps_goes_with_recheck(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["mutate", "--session", str(tmp_path / "s.sqlite"), "--gaps"])
    assert result.exit_code == 2
    assert "--gaps goes with --recheck" in result.output
    assert not (tmp_path / "s.sqlite").exists()


def test_a_mutant_that_hangs_in_one_profile_is_killed_by_that_profiles_alarm() -> None:
    """The timeout is per profile (a conformant mutant certifies once per declared profile): the
    child's alarm ends a hanging certification and names the profile it hung in."""
    head = "    def lookup(self, address: int) -> Mapping | None:\n"
    hanging = edited(TABLES, head, head + "        while True:\n            pass\n")
    profiles = (Profile(), Profile.from_mapping({"status": "read-only"}))
    settings = Settings(profiles=profiles, timeout=1.0)
    assert settings.allowance > 2 * settings.timeout
    started = time.monotonic()
    answer, ended = in_child(lambda: judge(target_named("model"), hanging, settings, alarm=True).to_json())
    assert ended == "done"
    assert answer == {"killed": True, "reason": "[default] certification ran past 1 s", "how": "timeout"}
    assert time.monotonic() - started < 60  # ended by the child's alarm, not the parent's allowance


def _git(root: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_changed_lines_are_the_new_sides_of_git_diffs_hunks(tmp_path: Path, monkeypatch: Any) -> None:
    import vpcid.conformance.mutation as mutation

    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.org")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "a.py").write_text("".join(f"line{i}\n" for i in range(1, 11)))
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-q", "-m", "base")
    lines = (tmp_path / "a.py").read_text().splitlines()
    lines[2] = "changed3"
    lines[6:8] = ["new7", "new7b", "new8"]
    del lines[9]
    (tmp_path / "a.py").write_text("\n".join(lines) + "\n")
    (tmp_path / "b.py").write_text("x = 1\ny = 2\n")
    _git(tmp_path, "add", "b.py")
    monkeypatch.setattr(mutation, "project_root", lambda: tmp_path)
    found = mutation.changed_lines("HEAD", ["a.py", "b.py", "c.py"])
    assert found == {"a.py": frozenset({3, 7, 8, 9}), "b.py": frozenset({1, 2}), "c.py": frozenset()}

    def at(first: int, last: int) -> Mutation:
        return Mutation("id", "a.py", "core/NumberReplacer", 0, (first, 0), (last, 1), None)

    assert mutation.on_lines(at(3, 3), found)
    assert mutation.on_lines(at(1, 7), found)
    assert not mutation.on_lines(at(4, 6), found)
    assert mutation.on_lines(at(4, 6), None)
    with pytest.raises(mutation.MutationError, match="git diff failed"):
        mutation.changed_lines("no-such-revision", ["a.py"])


def test_vpcid_mutate_changed_since_judges_only_changed_lines(tmp_path: Path, monkeypatch: Any) -> None:
    import vpcid.conformance.mutation as mutation

    runner = CliRunner()
    bad = runner.invoke(
        main, ["mutate", "--session", str(tmp_path / "s.sqlite"), "--changed-since", "no-such-rev"]
    )
    assert bad.exit_code == 2
    assert "--changed-since no-such-rev: git diff failed" in bad.output
    source = (project_root() / TABLES).read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(source, 1) if line == "        key = m.base >> m.size_log2")
    monkeypatch.setattr(mutation, "changed_lines", lambda revision, files: {TABLES: frozenset({at})})
    session = tmp_path / "tables.sqlite"
    args = ["mutate", "--session", str(session), "--only", TABLES, "--changed-since", "HEAD",
            "--profiles", "default"]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "only mutants on the 1 lines changed since HEAD" in result.output
    judged = [line for line in result.output.splitlines() if line.startswith(("killed ", "SURVIVED "))]
    assert judged
    assert all(f"{TABLES}:{at} " in line for line in judged)
    with sqlite3.connect(session) as db:
        (results,) = db.execute(
            "select count(*) from work_results where worker_outcome != 'SKIPPED'"
        ).fetchone()
    assert results == len(judged)


def test_the_cython_target_rebinds_every_model_name_the_compiled_module_imports() -> None:
    """A name of the model the compiled module imports but the mutation target does not rebind would
    keep the pristine object: mutants of it could never be killed through the Cython backend."""
    import re

    from vpcid.conformance.mutation import CYTHON_BINDINGS

    source = (project_root() / "adapters/vpcid/adapters/cython/_dm.pyx").read_text(encoding="utf-8")
    imported = {
        alias: ("devices" if where == "conformance.devices" else where, name)
        for where, name, alias in re.findall(
            r"^from vpcid\.(model[\w.]*|conformance\.devices) import (\w+) as (\w+)$", source, re.MULTILINE
        )
    }
    assert "_TopologyNode" in imported
    assert imported == CYTHON_BINDINGS
