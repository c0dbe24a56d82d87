"""Every implementation serves any byte-level device type (R-DT-005..R-DT-008, R-SR-*, R-BLOB-*).

Device types and operation sequences are drawn by :mod:`vpcid.conformance.strategies`;
the Cython backend, the KVM adapters (``kvm``, ``kvm+cython``) and the vfio-user
server behind our client must give the model's observations for them, and the
Cython backend byte-identical blobs and snapshots. Hypothesis runs
derandomized with modest example counts, so the file is deterministic and quick.
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from vpcid.adapters import cython as backend
from vpcid.adapters.base import Adapter, AdapterInfo, AdapterUnavailable
from vpcid.adapters.kvm import kvmapi
from vpcid.adapters.reference import ModelAdapter
from vpcid.adapters.vfio_user.adapter import AdapterArgument, DeviceArgument, build
from vpcid.adapters.vfio_user.server import DeviceSpec, VfioUserServer
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.engine import Differential
from vpcid.conformance.strategies import (
    DEFAULT_TYPE_NAME,
    bar_layouts,
    config_accesses,
    device_operations,
    device_types,
)
from vpcid.conformance.trace import OK, Observation, Op, OpKind
from vpcid.conformance.typefile import parse_type_file, type_file_json
from vpcid.model import (
    AXES,
    DEFAULT_PROFILE,
    BarKind,
    BarSpec,
    Bdf,
    DataManager,
    DeviceType,
    Profile,
    VpcidError,
    layout,
)
from vpcid.model import blob as blobfmt
from vpcid.model.header import COMMAND, ROM_BAR, STATUS, STATUS_CAP_LIST, check_space

DETERMINISTIC = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Same examples on every run: a failure here is reproducible by running the test again."""


def examples(count: int) -> settings:
    """:data:`DETERMINISTIC` with ``count`` examples."""
    return settings(DETERMINISTIC, max_examples=count)


FIRST, SECOND = Bdf(0, 2, 0), Bdf(1, 3, 5)
"""Two instances; the second on another bus and at a function above 3, so every BDF field routes."""
VM = 1
EVERY_ALTERNATIVE = Profile.from_mapping({axis: list(enum)[1].value for axis, enum in AXES.items()})
PROFILES = {"default": Profile(), "every-alternative": EVERY_ALTERNATIVE}

needs_backend = pytest.mark.skipif(not backend.available(), reason=backend.UNAVAILABLE_REASON or "")
KVM_REASON = kvmapi.unavailable_reason()


class DataManagerApi(Protocol):
    """What the tests call on a model or Cython data manager."""

    def save(self, vm_id: int, bdf: Bdf) -> bytes: ...
    def restore(self, vm_id: int, bdf: Bdf, blob: bytes) -> None: ...
    def snapshot(self, vm_id: int) -> bytes: ...
    def restore_vm(self, vm_id: int, snapshot: bytes) -> None: ...
    def vm_ids(self) -> tuple[int, ...]: ...


def model_adapter(dtype: DeviceType, profile: Profile = DEFAULT_PROFILE, **kw: Any) -> ModelAdapter:
    """The model, knowing ``dtype`` by its name."""
    return ModelAdapter("model", profile, types={dtype.name: dtype}, **kw)


def diverges(impl: Adapter, model: ModelAdapter, ops: Sequence[Op]) -> str | None:
    """The first divergence of ``impl`` from ``model`` over ``ops``, described, or None."""
    divergence = Differential(impl, model).run(ops)
    return None if divergence is None else divergence.describe()


def outcome(call: Callable[..., object], *args: object) -> str:
    """``ok`` or the error kind of a data-manager call."""
    try:
        call(*args)
    except VpcidError as exc:
        return exc.kind
    return "ok"


# ------------------------------------------------------------------ the strategies themselves


@pytest.mark.req("R-DT-005", "R-DT-006", "R-DT-007", "R-DT-002")
@examples(100)
@given(dtype=device_types())
def test_drawn_types_keep_the_rules_and_survive_a_type_file(dtype: DeviceType) -> None:
    space = dtype.declared
    assert check_space(space, dtype.express) == dtype.chain
    assert bool(space.image[STATUS] & STATUS_CAP_LIST) == any(not e.extended for e in dtype.chain)
    again = DeviceType.from_space(dtype.name, space, dtype.bars, dtype.rom, None, dtype.config_behaviour)
    assert again.fingerprint() == dtype.fingerprint()
    (entry,) = parse_type_file(type_file_json([dtype]))
    assert entry.dtype.fingerprint() == dtype.fingerprint()


def _descending_chain(t: DeviceType) -> bool:
    offsets = [e.offset for e in t.chain if not e.extended]
    return any(a > b for a, b in itertools.pairwise(offsets))


CORNERS: dict[str, Callable[[DeviceType], bool]] = {
    "descending capability chain": _descending_chain,
    "three or more capabilities": lambda t: sum(not e.extended for e in t.chain) >= 3,
    "extended chain of three": lambda t: sum(e.extended for e in t.chain) >= 3,
    "express type without extended capabilities": lambda t: (
        t.express and not any(e.extended for e in t.chain)
    ),
    "msi-mme-clamp": lambda t: t.config_behaviour is not None,
    "I/O BAR": lambda t: any(b is not None and b.kind is BarKind.IO for b in t.bars),
    "prefetchable 64-bit BAR above 4 GiB": lambda t: any(
        b is not None and b.kind is BarKind.MEM64 and b.prefetchable and b.size > 1 << 32 for b in t.bars
    ),
    "ROM of 1 MiB or more": lambda t: t.rom is not None and t.rom.size >= 1 << 20,
    "RW1C bits beyond the status register": lambda t: any(t.declared.w1cmask[0x08:]),
    "writable command bits other than the builder's": lambda t: t.command_mask not in (0, 0x0507),
    "multi-function": lambda t: t.multifunction,
}


@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # a found type's 4 KiB arrays
@pytest.mark.parametrize("corner", sorted(CORNERS))
def test_device_types_reach_every_corner(corner: str) -> None:
    search = settings(DETERMINISTIC, max_examples=400, phases=[Phase.generate])  # found, not shrunk
    found = find(device_types(), CORNERS[corner], settings=search)
    assert CORNERS[corner](found)


def test_shrinking_moves_towards_small_simple_types() -> None:
    with_rom = find(device_types(), lambda t: t.rom is not None, settings=settings(DETERMINISTIC))
    assert with_rom.rom is not None
    assert with_rom.rom.size == 2048
    assert with_rom.rom.contents == b""
    assert not with_rom.express
    assert not with_rom.chain
    assert not any(with_rom.bars)
    assert with_rom.vendor_id == with_rom.device_id == with_rom.class_code == 0
    space = with_rom.declared
    assert {o for o, m in enumerate(space.wmask) if m} <= {COMMAND, COMMAND + 1, *range(ROM_BAR, ROM_BAR + 4)}
    assert {o for o, m in enumerate(space.w1cmask) if m} <= {STATUS, STATUS + 1}
    (wide,) = [b for b in find(bar_layouts(), _has_mem64, settings=settings(DETERMINISTIC)) if b is not None]
    assert (wide.kind, wide.size, wide.prefetchable) == (BarKind.MEM64, 16, False)


def _has_mem64(bars: tuple[BarSpec | None, ...]) -> bool:
    return any(b is not None and b.kind is BarKind.MEM64 for b in bars)


@pytest.mark.req("R-ACC-003", "R-CFG-001")
@examples(60)
@given(st.data())
def test_config_accesses_are_valid_and_follow_the_masks(data: st.DataObject) -> None:
    dtype = data.draw(device_types())
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, FIRST, dtype)
    lay = layout(dtype, dm.profile.status)
    for _ in range(4):
        access = data.draw(config_accesses(dtype))
        assert access.offset % 4 + access.width <= 4
        assert 0 <= access.value < 1 << (8 * access.width)
        before = dm.config_read(VM, FIRST, access.offset & ~3, 4)
        dm.config_write(VM, FIRST, access.offset, access.width, access.value)
        if dtype.config_behaviour is not None or access.offset >= dtype.config_size:
            continue
        lane = access.offset % 4
        after = dm.config_read(VM, FIRST, access.offset & ~3, 4)
        for k in range(4):
            o, old, new = (access.offset & ~3) + k, (before >> (8 * k)) & 0xFF, (after >> (8 * k)) & 0xFF
            written = lane <= k < lane + access.width
            value = (access.value >> (8 * (k - lane))) & 0xFF if written else 0
            want = ((old & ~lay.wmask[o]) | (value & lay.wmask[o])) & ~(value & lay.w1cmask[o]) & 0xFF
            assert new == (want if written else old), f"config byte {o:#x}"


# ------------------------------------------------------------------ the Cython backend


def run_cython(dtype: DeviceType, profile: Profile, ops: Sequence[Op]) -> tuple[ModelAdapter, Any]:
    """The model and the Cython backend after ``ops``; fails on the first divergent observation."""
    model = model_adapter(dtype, profile)
    compiled = backend.CythonAdapter(profile, "cython", types={dtype.name: dtype})
    found = diverges(compiled, model, ops)
    assert found is None, f"Cython backend diverges from the model on {dtype.name}: {found}"
    return model, compiled


def assert_same_bytes(model: DataManagerApi, compiled: DataManagerApi) -> None:
    """Every instance blob and VM snapshot byte-identical; each restores into the other side as is."""
    assert compiled.vm_ids() == model.vm_ids()
    for vm in model.vm_ids():
        snapshot = model.snapshot(vm)
        assert compiled.snapshot(vm) == snapshot, f"VM {vm} snapshot"
        for bdf in (FIRST, SECOND):
            saved = outcome(model.save, vm, bdf)
            assert outcome(compiled.save, vm, bdf) == saved
            if saved == "ok":
                blob = model.save(vm, bdf)
                assert compiled.save(vm, bdf) == blob, f"VM {vm} {bdf} blob"
                compiled.restore(vm, bdf, blob)
                assert compiled.save(vm, bdf) == blob  # R-SR-008: restore then save gives the bytes back
        spare = max(model.vm_ids()) + 1
        for side in (model, compiled):
            side.restore_vm(spare, snapshot)
            assert side.snapshot(spare) == snapshot
        compiled_snapshot = compiled.snapshot(vm)
        model.restore_vm(spare, compiled_snapshot)
        assert model.snapshot(spare) == compiled_snapshot


@needs_backend
@pytest.mark.req(
    "R-DT-005", "R-DT-006", "R-DT-007", "R-DT-008", "R-SR-001", "R-SR-002", "R-SR-006", "R-SR-008",
    "R-BLOB-003", "R-BLOB-004", "R-BLOB-005", "R-BLOB-006",
)  # fmt: skip
@pytest.mark.parametrize("profile_name", sorted(PROFILES))
@examples(100)
@given(data=st.data())
def test_cython_backend_serves_drawn_types_like_the_model(profile_name: str, data: st.DataObject) -> None:
    profile = PROFILES[profile_name]
    dtype = data.draw(device_types(), label="type")
    ops = data.draw(device_operations(dtype, bdfs=(FIRST, SECOND)), label="operations")
    model, compiled = run_cython(dtype, profile, ops)
    assert_same_bytes(model.manager, compiled.manager)
    batch = backend.CythonAdapter(profile, "cython-batch", types={dtype.name: dtype})
    fresh = model_adapter(dtype, profile)
    expected = [fresh.execute(op) for op in ops]
    assert batch.run_batch(batch.encode(ops)).observations() == expected


@needs_backend
@pytest.mark.req("R-DT-008", "R-CFG-001")
@examples(40)
@given(data=st.data())
def test_cython_backend_runs_the_msi_clamp_like_the_model(data: st.DataObject) -> None:
    """MSI capabilities at drawn offsets: both sides clamp Multiple Message Enable to Multiple Message
    Capable while MSI is enabled, as the behaviour's definition says (worked out here apart from it)."""
    dtype = data.draw(device_types(config_behaviour=True), label="type")
    (msi,) = [e.offset for e in dtype.chain if e.cap_id == 0x05 and not e.extended]
    controls = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=6), label="controls")
    ops = [Op(OpKind.INIT), Op(OpKind.CREATE_VM, vm=VM), Op(OpKind.PLUG, vm=VM, bdf=FIRST, name=dtype.name)]
    for control in controls:
        ops += [
            Op(OpKind.CONFIG_WRITE, vm=VM, bdf=FIRST, address=msi + 2, width=2, value=control),
            Op(OpKind.CONFIG_READ, vm=VM, bdf=FIRST, address=msi + 2, width=2),
            Op(OpKind.CONFIG_WRITE, vm=VM, bdf=FIRST, address=msi, width=4, value=control << 16 | 0xFFFF),
            Op(OpKind.CONFIG_READ, vm=VM, bdf=FIRST, address=msi + 2, width=2),
        ]
    model, compiled = run_cython(dtype, Profile(), ops)
    assert_same_bytes(model.manager, compiled.manager)
    fresh = model_adapter(dtype)
    state = dtype.declared.word(msi + 2, 2)
    for op in ops:
        observed = fresh.execute(op)
        if op.kind is OpKind.CONFIG_WRITE:
            state = clamped(
                state & ~MSI_CONTROL_WRITABLE
                | (op.value >> (16 if op.width == 4 else 0)) & MSI_CONTROL_WRITABLE
            )
        elif op.kind is OpKind.CONFIG_READ:
            assert observed.value == state


MSI_CONTROL_WRITABLE = 0x0071
"""MSI Enable and Multiple Message Enable: the writable control bits the strategies declare."""


def clamped(control: int) -> int:
    """MSI control after ``msi-mme-clamp``: while enabled, Multiple Message Enable at most Capable."""
    capable, enabled = (control >> 1) & 7, (control >> 4) & 7
    if control & 1 and enabled > capable:
        return control & ~0x70 | capable << 4
    return control


@needs_backend
@pytest.mark.req("R-SR-003", "R-SR-004", "R-SR-005", "R-SR-007", "R-BLOB-001")
@examples(60)
@given(data=st.data())
def test_a_changed_blob_gets_the_same_verdict_from_both(data: st.DataObject) -> None:
    """A blob of a drawn type with one configuration bit flipped and the digest resealed: the model and
    the backend accept or reject it alike; a read-only bit is always rejected; a rejection changes nothing."""
    dtype = data.draw(device_types(), label="type")
    operations = frozenset(OpKind) - {OpKind.UNPLUG}  # the instance is there at the end
    ops = data.draw(device_operations(dtype, operations=operations, max_moves=8), label="operations")
    model, compiled = run_cython(dtype, Profile(), ops)
    managers: list[DataManagerApi] = [model.manager, compiled.manager]
    record = blobfmt.decode_instance(model.manager.save(VM, FIRST))
    bit = data.draw(st.integers(0, 8 * len(record.config) - 1), label="bit")
    config = bytearray(record.config)
    config[bit // 8] ^= 1 << (bit % 8)
    changed = blobfmt.encode_instance(dataclasses.replace(record, config=bytes(config)))
    before = [m.save(VM, FIRST) for m in managers]
    verdicts = [outcome(m.restore, VM, FIRST, changed) for m in managers]
    assert verdicts[0] == verdicts[1], f"model {verdicts[0]}, Cython {verdicts[1]} for bit {bit:#x}"
    fixed = layout(dtype, Profile().status).fixed
    if fixed[bit // 8] >> (bit % 8) & 1:
        assert verdicts == ["blob-mismatch"] * 2
    after = [m.save(VM, FIRST) for m in managers]
    assert after[0] == after[1]
    if verdicts[0] != "ok":
        assert after == before
    foreign = _blob_of(data.draw(device_types(name="other"), label="other type"))
    assert [outcome(m.restore, VM, FIRST, foreign) for m in managers] == ["blob-mismatch"] * 2


def _blob_of(dtype: DeviceType) -> bytes:
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, FIRST, dtype)
    return dm.save(VM, FIRST)


# ------------------------------------------------------------------ the KVM adapters


class PlugsThroughManager:
    """A KVM adapter whose ``plug`` hands the drawn type to its data manager.

    The KVM adapters resolve a ``plug``'s type name among the suite's types
    only (they take no ``types=``), so the drawn type is plugged through the
    data manager the vCPU's exits are served by; every other operation goes
    through the adapter.
    """

    def __init__(self, inner: Any, types: dict[str, DeviceType]) -> None:
        self.inner = inner
        self.types = types

    @property
    def info(self) -> AdapterInfo:
        info: AdapterInfo = self.inner.info
        return info

    def execute(self, op: Op) -> Observation:
        if op.kind is not OpKind.PLUG:
            observation: Observation = self.inner.execute(op)
            return observation
        assert op.bdf is not None
        try:
            self.inner.manager.plug(op.vm, op.bdf, self.types[op.name])
        except VpcidError as exc:
            return Observation(error=exc.kind)
        return OK

    def close(self) -> None:
        return None


@pytest.fixture(scope="module", params=["kvm", "kvm+cython"])
def kvm(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One KVM adapter for the module; each example starts with ``init``."""
    if KVM_REASON is not None:
        pytest.skip(f"KVM unavailable: {KVM_REASON}")
    from vpcid.adapters.kvm import adapter, adapter_cython

    try:
        made = adapter(None) if request.param == "kvm" else adapter_cython(None)
    except AdapterUnavailable as exc:
        pytest.skip(f"{request.param} unavailable: {exc}")
    yield made
    made.close()


@pytest.mark.req("R-DT-005", "R-DT-006", "R-DT-007", "R-DT-008", "R-SR-002", "R-SR-006")
@examples(20)
@given(data=st.data())
def test_kvm_adapters_serve_drawn_types_to_the_guest(kvm: Any, data: st.DataObject) -> None:
    dtype = data.draw(device_types(), label="type")
    ops = data.draw(device_operations(dtype, bdfs=(FIRST, SECOND), max_moves=15), label="operations")
    impl = PlugsThroughManager(kvm, {dtype.name: dtype})
    found = diverges(impl, model_adapter(dtype), ops)
    assert found is None, f"{kvm.info.name} diverges from the model: {found}"


# ------------------------------------------------------------------ the vfio-user server


@pytest.mark.req("R-DT-005", "R-DT-006", "R-DT-007", "R-DT-008", "R-SR-001", "R-SR-002", "R-BLOB-003")
@examples(25)
@given(data=st.data())
def test_vfio_user_server_serves_drawn_types_to_our_client(data: st.DataObject) -> None:
    """Two in-process servers (primary and migration peer) serve the drawn type; the thin VMM of
    vpcid.adapters.vfio_user drives them. It names types among the suite's only, so the drawn type is
    added there for the duration of the example."""
    dtype = data.draw(device_types(), label="type")
    with tempfile.TemporaryDirectory(prefix="vpcid-") as directory, pytest.MonkeyPatch.context() as patch:
        patch.setitem(SUITE_TYPES, DEFAULT_TYPE_NAME, dtype)
        primary, peer = Path(directory, "a.sock"), Path(directory, "b.sock")
        with VfioUserServer([DeviceSpec(primary, dtype)]), VfioUserServer([DeviceSpec(peer, dtype)]):
            vmm = build(AdapterArgument((DeviceArgument(str(primary), str(peer), DEFAULT_TYPE_NAME),)))
            try:
                info = vmm.info
                assert info.canonical_blobs
                assert info.machine is not None
                ops = data.draw(
                    device_operations(dtype, vm=info.machine.vm, bdfs=(FIRST,), operations=info.operations),
                    label="operations",
                )
                model = model_adapter(dtype, info.profile, machine=info.machine, operations=info.operations)
                found = diverges(vmm, model, ops)
            finally:
                vmm.close()
    assert found is None, f"vfio-user diverges from the model: {found}"
