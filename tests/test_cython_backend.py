"""The Cython backend (vpcid.adapters.cython): certified, blob-compatible with the model, batch = per-call.

Tests that need the compiled module are skipped, with the reason, when it is
not built (no C compiler at install time).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import cast

import pytest
from conftest import expected_digest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vpcid.adapters import cython as backend
from vpcid.adapters.base import AdapterInfo, AdapterUnavailable
from vpcid.adapters.reference import ManagerFactory, ModelAdapter
from vpcid.conformance.certify import certify
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.engine import RandomOps
from vpcid.conformance.trace import Op, OpKind
from vpcid.model import Bdf, DataManager, Profile, VpcidError
from vpcid.model.profile import AXES

needs_backend = pytest.mark.skipif(not backend.available(), reason=backend.UNAVAILABLE_REASON or "")

ROOT = Path(__file__).resolve().parents[1]
EVERY_VALUE = [("default", "")] + [
    (axis, value.value)
    for axis, enum in AXES.items()
    for value in enum
    if value.value != Profile().to_mapping()[axis]
]
"""The default profile, then each non-default value of each axis (one axis changed at a time)."""
ALTERNATIVE = Profile.from_mapping({axis: list(enum)[1].value for axis, enum in AXES.items()})
PROFILES = (Profile(), ALTERNATIVE, Profile.from_mapping({"bar_move_while_decoding": "deferred"}))
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def episode(profile: Profile, seed: int) -> list[Op]:
    """One episode of the fast engine's generator: every operation kind, from ``init``."""
    return next(iter(RandomOps(AdapterInfo("t", profile), seed, episode=150).episodes(150)))


# ------------------------------------------------------------------ certification


@needs_backend
@pytest.mark.req("R-VAR-002")
def test_certifies_at_a_small_budget() -> None:
    report = certify(backend.adapter(None), budget=2000)
    assert report.conformant, [f.description for r in report.requirements for f in r.failures][:3]


@needs_backend
@pytest.mark.req("R-VAR-001", "R-VAR-002")
@pytest.mark.parametrize(("axis", "value"), EVERY_VALUE, ids=[f"{a}={v}" for a, v in EVERY_VALUE])
def test_every_variant_value_certifies(axis: str, value: str) -> None:
    profile = Profile.from_mapping({axis: value} if value else {})
    report = certify(backend.CythonAdapter(profile), budget=600)
    assert report.conformant, [f.description for r in report.requirements for f in r.failures][:3]
    assert report.profile == profile.to_mapping()


@needs_backend
@pytest.mark.req("R-VAR-003")
def test_factory_reads_a_profile_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "profile.toml"
    lines = [f'{axis} = "{value}"' for axis, value in ALTERNATIVE.to_mapping().items()]
    manifest.write_text("[implementation]\nname = 'cython'\n\n[profile]\n" + "\n".join(lines) + "\n")
    adapter = backend.adapter(str(manifest))
    assert adapter.info.profile == ALTERNATIVE
    assert adapter.info.canonical_blobs
    assert certify(adapter, budget=600).conformant


@needs_backend
@pytest.mark.req("R-ERR-001", "R-ERR-003")
def test_manager_api_certifies_behind_the_model_adapter() -> None:
    """The Python API (exceptions, not error codes) behaves as the model's DataManager."""
    factory = cast(ManagerFactory, backend.Manager)  # the same API; not a DataManager subclass
    impl = ModelAdapter("cython-manager", ALTERNATIVE, manager_factory=factory)
    assert certify(impl, budget=600).conformant


@needs_backend
@pytest.mark.req("R-ERR-002")
def test_manager_rejects_arguments_like_the_model() -> None:
    calls: list[tuple[str, tuple[object, ...]]] = [
        ("create_vm", (True,)), ("create_vm", (-1,)), ("create_vm", (1 << 32,)), ("destroy_vm", (9,)),
        ("config_read", (1, "00:02.0", 0, 4)), ("config_read", (1, Bdf(0, 2, 0), 0x1000, 4)),
        ("config_read", (1, Bdf(0, 2, 0), 0, 3)), ("config_read", (1, Bdf(0, 2, 0), 2, 4)),
        ("config_write", (1, Bdf(0, 2, 0), 0, 1, 256)), ("io_read", (1, 0xFFFF, 2)), ("io_read", (1, 0, 8)),
        ("mmio_read", (1, (1 << 64) - 2, 4)), ("mmio_write", (1, 0, 8, 1 << 64)), ("mmio_read", (1, 0, 4.0)),
        ("plug", (1, Bdf(0, 2, 0), SUITE_TYPES["e1000"])), ("plug", (1, Bdf(0, 5, 0), "e1000")),
        ("unplug", (1, Bdf(0, 7, 0))), ("restore", (1, Bdf(0, 2, 0), b"")), ("restore_vm", (2, "blob")),
        ("save", (2, Bdf(0, 2, 0))), ("reset", (1, None)), ("resolve", (1, "disk", 0)), ("cf8", (3,)),
    ]  # fmt: skip
    outcomes = []
    for manager in (DataManager(), backend.Manager()):
        manager.create_vm(1)
        manager.plug(1, Bdf(0, 2, 0), SUITE_TYPES["kitchen-sink"])
        seen = []
        for name, args in calls:
            try:
                getattr(manager, name)(*args)
                seen.append("ok")
            except VpcidError as exc:
                seen.append(exc.kind)
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]


# ------------------------------------------------------------------ blobs: byte-identical both ways


def _instances(manager: DataManager | backend.Manager) -> Iterator[tuple[int, Bdf, str]]:
    for vm in manager.vm_ids():
        for bdf, name in manager.tables(vm).config:
            yield vm, bdf, name


@needs_backend
@pytest.mark.req("R-BLOB-003", "R-BLOB-004", "R-BLOB-005", "R-SR-008")
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(PROFILES) - 1))
def test_blobs_cross_restore_both_ways_byte_identical(seed: int, which: int) -> None:
    """Model save -> Cython restore -> Cython save is the same bytes, and the reverse; snapshots too."""
    profile = PROFILES[which]
    model, compiled = ModelAdapter(profile=profile), backend.CythonAdapter(profile)
    for op in episode(profile, seed):
        assert model.execute(op) == compiled.execute(op), op
    sides = (model.manager, compiled.manager)
    assert list(_instances(sides[0])) == list(_instances(sides[1]))
    for source, make_target in (
        (sides[0], lambda: backend.Manager(profile)),
        (sides[1], lambda: DataManager(profile)),
    ):
        for vm, bdf, name in _instances(source):
            blob = source.save(vm, bdf)
            assert blob == (sides[1] if source is sides[0] else sides[0]).save(vm, bdf)
            target = make_target()
            target.create_vm(7)
            target.plug(7, bdf, SUITE_TYPES[name])
            target.restore(7, bdf, blob)
            assert target.save(7, bdf) == blob
        for vm in source.vm_ids():
            snapshot = source.snapshot(vm)
            target = make_target()
            for dtype in SUITE_TYPES.values():
                target.register_type(dtype)
            target.restore_vm(vm, snapshot)
            assert target.snapshot(vm) == snapshot
            assert target.tables(vm) == source.tables(vm)


DAMAGE = given(
    seed=st.integers(0, 2**32 - 1), flips=st.lists(st.integers(0, 1 << 20), min_size=1, max_size=4)
)
"""A random episode's seed, and the bytes to flip in what it saved."""


@needs_backend
@pytest.mark.req("R-BLOB-001", "R-SR-005", "R-SR-007")
@SETTINGS
@DAMAGE
def test_damaged_blobs_are_rejected_alike(seed: int, flips: list[int]) -> None:
    """A re-sealed blob with flipped bytes gets the same verdict, and leaves the same state, on both sides."""
    model, compiled = _twins(seed)
    for vm, bdf, _ in _instances(model.manager):
        body = bytearray(model.manager.save(vm, bdf)[:-32])
        for flip in flips:
            body[16 + flip % (len(body) - 16)] ^= 1 << (flip % 8)
        blob = bytes(body) + hashlib.sha256(body).digest()
        _assert_alike(model, compiled, vm, "restore", vm, bdf, blob)


def _twins(seed: int) -> tuple[ModelAdapter, backend.CythonAdapter]:
    """The model and the compiled backend after the same random episode."""
    model, compiled = ModelAdapter(), backend.CythonAdapter()
    for op in episode(Profile(), seed):
        model.execute(op)
        compiled.execute(op)
    return model, compiled


def _assert_alike(
    model: ModelAdapter, compiled: backend.CythonAdapter, vm: int, method: str, *args: object
) -> None:
    """``method(*args)`` on both managers: the same verdict ("ok" or an error kind), the same VM after."""
    verdicts = []
    for side in (model, compiled):
        try:
            getattr(side.manager, method)(*args)
            verdicts.append("ok")
        except VpcidError as exc:
            verdicts.append(exc.kind)
    assert verdicts[0] == verdicts[1]
    assert model.manager.snapshot(vm) == compiled.manager.snapshot(vm)


@needs_backend
@pytest.mark.req("R-BLOB-001", "R-BLOB-006", "R-SR-007")
@SETTINGS
@DAMAGE
def test_damaged_snapshots_are_rejected_alike(seed: int, flips: list[int]) -> None:
    """A snapshot with flipped bytes, its digest left or taken again, gets the same verdict on both sides."""
    model, compiled = _twins(seed)
    for vm in model.manager.vm_ids():
        snapshot = model.manager.snapshot(vm)
        body = bytearray(snapshot[:-32])
        for flip in flips:
            body[16 + flip % (len(body) - 16)] ^= 1 << (flip % 8)
        for damaged in (bytes(body) + snapshot[-32:], bytes(body) + expected_digest(bytes(body))):
            _assert_alike(model, compiled, vm, "restore_vm", vm, damaged)


# ------------------------------------------------------------------ SHA-256 in C


def _engines() -> list[str]:
    return list(backend._dm.available_sha_engines()) if backend.available() else []


@pytest.fixture
def sha_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Hash with the engine named by the test's parameter, then switch back."""
    previous = backend._dm.use_sha_engine(request.param)
    try:
        yield request.param
    finally:
        backend._dm.use_sha_engine(previous)


@needs_backend
def test_portable_sha_engine_is_always_there() -> None:
    assert "portable" in backend._dm.available_sha_engines()
    assert backend._dm.sha_engine() in backend._dm.available_sha_engines()
    with pytest.raises(ValueError, match="not available"):
        backend._dm.use_sha_engine("md5")


@needs_backend
@pytest.mark.req("R-BLOB-001")
@pytest.mark.parametrize("sha_engine", _engines(), indirect=True)
def test_sha_engines_agree_with_hashlib(sha_engine: str) -> None:
    """Every length around the block and padding boundaries, one and two streams."""
    rng = random.Random(sha_engine)
    lengths = [*range(0, 200), 4095, 4096, 4097, 9000] + [rng.randrange(0, 20000) for _ in range(40)]
    for n in lengths:
        first = rng.randbytes(n)
        second = rng.randbytes(rng.choice((0, 63, 64, n, n + 64, rng.randrange(0, 9000))))
        assert backend._dm.sha256(first) == hashlib.sha256(first).digest(), n
        assert backend._dm.sha256_pair(first, second) == (
            hashlib.sha256(first).digest(),
            hashlib.sha256(second).digest(),
        ), n


@needs_backend
@pytest.mark.req("R-BLOB-003", "R-BLOB-005", "R-SR-008")
@pytest.mark.parametrize("sha_engine", _engines(), indirect=True)
def test_every_sha_engine_gives_the_models_digests(sha_engine: str) -> None:
    _per_call_and_batch_observe_as_the_model(episode(Profile(), 7))


def _per_call_and_batch_observe_as_the_model(ops: list[Op]) -> tuple[ModelAdapter, backend.CythonAdapter]:
    """Run ``ops`` on the model, on the backend call by call and in one batch; all must observe alike."""
    model = ModelAdapter()
    expected = [model.execute(op) for op in ops]
    per_call = backend.CythonAdapter()
    assert [per_call.execute(op) for op in ops] == expected
    batch = backend.CythonAdapter()
    assert batch.execute_all(ops) == expected
    return model, batch


def _bdf(device: int) -> Bdf:
    return Bdf(0, device, 0)


SNAPSHOT_CACHES = [
    Op(OpKind.INIT),
    Op(OpKind.CREATE_VM, vm=1, ecam_base=0xB000_0000),
    *(
        Op(OpKind.PLUG, vm=1, bdf=_bdf(device), name=name)
        for device, name in ((2, "e1000"), (3, "a100"), (4, "kitchen-sink"), (5, "express-sink"))
    ),
    Op(OpKind.CONFIG_WRITE, vm=1, bdf=_bdf(4), address=0x14, width=4, value=0xE000_0000),
    Op(OpKind.CONFIG_WRITE, vm=1, bdf=_bdf(4), address=0x04, width=2, value=0x3),
    Op(OpKind.MMIO_WRITE, vm=1, address=0xE000_0010, width=8, value=0x1122_3344_5566_7788),
    Op(OpKind.SNAPSHOT, vm=1, name="s1"),  # every instance written into the snapshot
    Op(OpKind.SAVE, vm=1, bdf=_bdf(3), name="b3"),  # a blob cut out of that snapshot
    Op(OpKind.CONFIG_WRITE, vm=1, bdf=_bdf(5), address=0x3C, width=1, value=0x5A),
    Op(OpKind.SNAPSHOT, vm=1, name="s2"),  # three instances copied, one written
    Op(OpKind.SAVE, vm=1, bdf=_bdf(5), name="b5"),
    Op(OpKind.RESET, vm=1, bdf=_bdf(4)),  # back to the power-on image
    Op(OpKind.CONFIG_READ, vm=1, bdf=_bdf(4), address=0x04, width=2),
    Op(OpKind.MMIO_READ, vm=1, address=0xE000_0010, width=8),
    Op(OpKind.RESTORE_VM, vm=2, name="s2"),  # a snapshot it sealed: the instances keep its blobs
    Op(OpKind.SAVE, vm=2, bdf=_bdf(4), name="c4"),
    Op(OpKind.SNAPSHOT, vm=2, name="s3"),
    Op(OpKind.TABLES, vm=2),
    Op(OpKind.RESTORE, vm=1, bdf=_bdf(5), name="b5"),
    Op(OpKind.SNAPSHOT, vm=1, name="s4"),
    Op(OpKind.CONFIG_WRITE, vm=2, bdf=_bdf(4), address=0x04, width=2, value=0x0),
    Op(OpKind.SNAPSHOT, vm=2, name="s5"),
    Op(OpKind.SAVE, vm=2, bdf=_bdf(3), name="c3"),
    Op(OpKind.TABLES, vm=1),
]
"""Snapshots that copy cached instance blobs and write changed ones, saves cut out of snapshots,
blobs kept from a restored snapshot, and a configuration space back at its power-on image."""


@needs_backend
@pytest.mark.req("R-BLOB-003", "R-BLOB-004", "R-BLOB-005", "R-SR-006", "R-SR-008", "R-RST-001")
def test_snapshot_caches_give_the_models_observations() -> None:
    model, batch = _per_call_and_batch_observe_as_the_model(SNAPSHOT_CACHES)
    for vm in (1, 2):
        assert batch.manager.snapshot(vm) == model.manager.snapshot(vm)
        for bdf, _ in model.manager.tables(vm).config:
            assert batch.manager.save(vm, bdf) == model.manager.save(vm, bdf)


@needs_backend
@pytest.mark.req("R-HP-001", "R-RST-001", "R-BLOB-003")
@pytest.mark.parametrize("profile", PROFILES, ids=["default", "alternative", "deferred"])
def test_instances_in_power_on_state_share_their_types_blob(profile: Profile) -> None:
    """A plugged or reset instance saves its type's power-on blob, computed once; any change leaves it."""
    model, compiled = DataManager(profile), backend.Manager(profile)
    first, second = Bdf(0, 2, 0), Bdf(0, 3, 0)
    for m in (model, compiled):
        m.create_vm(1)
        m.plug(1, first, SUITE_TYPES["kitchen-sink"])
        m.plug(1, second, SUITE_TYPES["kitchen-sink"])
    power_on = compiled.save(1, first)
    assert power_on == model.save(1, first)
    assert compiled.save(1, second) is power_on  # shared, not hashed again
    assert compiled.snapshot(1) == model.snapshot(1)
    for m in (model, compiled):
        m.config_write(1, second, 0x3C, 1, 0x5A)
    changed = compiled.save(1, second)
    assert changed == model.save(1, second)
    assert changed != power_on
    for m in (model, compiled):
        m.reset(1, second)
    assert compiled.save(1, second) is power_on
    assert compiled.snapshot(1) == model.snapshot(1)


# ------------------------------------------------------------------ the batch engine


ODD_OPS = [
    Op(OpKind.CONFIG_READ, vm=-1, bdf=Bdf(0, 2, 0), address=0, width=4),
    Op(OpKind.CONFIG_READ, vm=1, bdf=Bdf(0, 2, 0), address=0, width=True),
    Op(OpKind.MMIO_WRITE, vm=1, address=1 << 64, width=8, value=1),
    Op(OpKind.MMIO_WRITE, vm=1, address=0xE000_0000, width=8, value=(1 << 64) - 1),
    Op(OpKind.IO_WRITE, vm=1 << 40, address=0xCF8, width=4, value=0x8000_1000),
    Op(OpKind.CREATE_VM, vm=9, ecam_base=None),
    Op(OpKind.CREATE_VM, vm=10, ecam_base=0xB000_0001),
    Op(OpKind.RESTORE, vm=1, bdf=Bdf(0, 2, 0), name="never-saved"),
    Op(OpKind.RESTORE, vm=1, bdf=Bdf(0, 2, 0), data=b"VPCIDBLB"),
    Op(OpKind.RESTORE_VM, vm=4, data=b""),
    Op(OpKind.TABLES, vm=1),
]


@needs_backend
@pytest.mark.req("R-VAR-002")
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(PROFILES) - 1), odd=st.permutations(ODD_OPS))
def test_batch_returns_the_per_call_observations(seed: int, which: int, odd: list[Op]) -> None:
    profile = PROFILES[which]
    ops = episode(profile, seed)
    ops = ops[: len(ops) // 2] + odd + ops[len(ops) // 2 :]
    per_call = backend.CythonAdapter(profile)
    expected = [per_call.execute(op) for op in ops]
    batch = backend.CythonAdapter(profile)
    result = batch.run_batch(batch.encode(ops), profile=True)
    assert result.observations() == expected
    assert len(result) == len(ops) == len(result.kinds)
    assert result.profile is not None
    assert sum(count for count, _ in result.profile.values()) == len(ops)
    model = ModelAdapter(profile=profile)
    assert [model.execute(op) for op in ops] == expected


@needs_backend
def test_batch_and_per_call_share_state() -> None:
    """A batch continues from the adapter's state, and per-call continues after it."""
    adapter = backend.CythonAdapter()
    prologue = RandomOps(adapter.info, 0).prologue()
    adapter.run_batch(adapter.encode(prologue))
    write = Op(OpKind.CONFIG_WRITE, vm=1, bdf=Bdf(0, 2, 0), address=0x3C, width=1, value=0x5A)
    read = Op(OpKind.CONFIG_READ, vm=1, bdf=Bdf(0, 2, 0), address=0x3C, width=1)
    adapter.execute_all([write, Op(OpKind.SAVE, vm=1, bdf=Bdf(0, 2, 0), name="s")])
    assert adapter.execute(read).value == 0x5A
    adapter.execute(Op(OpKind.RESET, vm=1, bdf=Bdf(0, 2, 0)))
    assert adapter.execute_all([Op(OpKind.RESTORE, vm=1, bdf=Bdf(0, 2, 0), name="s"), read])[1].value == 0x5A


# ------------------------------------------------------------------ without the compiled module


def test_factory_reports_unavailable_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "UNAVAILABLE_REASON", "cython backend not built (no compiler)")
    assert not backend.available()
    with pytest.raises(AdapterUnavailable, match="no compiler"):
        backend.adapter(None)


def _load_build_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vpcid_hatch_build", ROOT / "hatch_build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("env", "reason"),
    [({"CC": "/nonexistent/cc"}, "no C compiler found"), ({"VPCID_NO_CYTHON": "1"}, "is set")],
)
def test_build_hook_skips_with_one_clear_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], reason: str
) -> None:
    hook = _load_build_hook()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(hook.SkipBuild, match=reason) as info:
        hook.build_extension(tmp_path / "lib", tmp_path)
    assert "\n" not in str(info.value)


def test_build_hook_can_be_told_to_skip_libcrypto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hook = _load_build_hook()
    monkeypatch.setenv("VPCID_NO_LIBCRYPTO", "1")
    assert hook._libcrypto_problem(None, tmp_path) == "VPCID_NO_LIBCRYPTO is set"


def test_build_hook_builds_without_libcrypto_where_the_probe_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hook = _load_build_hook()
    ccompiler = pytest.importorskip("setuptools._distutils.ccompiler")
    sysconfig = pytest.importorskip("setuptools._distutils.sysconfig")
    compiler = ccompiler.new_compiler()
    sysconfig.customize_compiler(compiler)
    monkeypatch.delenv("VPCID_NO_LIBCRYPTO", raising=False)
    monkeypatch.setattr(
        hook, "LIBCRYPTO_PROBE", "#include <vpcid/no-such-header.h>\nint main(void) { return 0; }"
    )
    problem = hook._libcrypto_problem(compiler, tmp_path)
    assert problem
    assert "\n" not in problem


_FALLBACK_CHECK = """
import hashlib, importlib.machinery, importlib.util, sys
import vpcid.adapters
name = "vpcid.adapters.cython._dm"
loader = importlib.machinery.ExtensionFileLoader(name, sys.argv[1])
module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
sys.modules[name] = module
loader.exec_module(module)
from vpcid.adapters.cython import CythonAdapter
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.trace import Op, OpKind
from vpcid.model import Bdf
assert "openssl" not in module.available_sha_engines(), module.available_sha_engines()
for engine in module.available_sha_engines():
    module.use_sha_engine(engine)
    assert module.sha256(b"abc" * 100) == hashlib.sha256(b"abc" * 100).digest()
    ops = [Op(OpKind.INIT), Op(OpKind.CREATE_VM, vm=1), Op(OpKind.PLUG, vm=1, bdf=Bdf(0, 3, 0), name="a100"),
           Op(OpKind.SAVE, vm=1, bdf=Bdf(0, 3, 0), name="b"), Op(OpKind.SNAPSHOT, vm=1, name="s")]
    model = ModelAdapter()
    assert CythonAdapter().execute_all(ops) == [model.execute(op) for op in ops]
print("ok")
"""


def test_build_hook_builds_without_libcrypto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The fallback the hook takes where libcrypto is missing builds a module that hashes right."""
    hook = _load_build_hook()
    monkeypatch.setenv("VPCID_NO_LIBCRYPTO", "1")
    notes: list[str] = []
    try:
        built = hook.build_extension(tmp_path / "lib", tmp_path, notes)
    except hook.SkipBuild as exc:
        pytest.skip(f"cannot build here: {exc}")
    assert notes == ["SHA-256: without libcrypto (VPCID_NO_LIBCRYPTO is set)"]
    env = {**os.environ, "VPCID_SHA_ENGINE": ""}
    command = [sys.executable, "-c", _FALLBACK_CHECK, str(built)]
    check = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "ok"
