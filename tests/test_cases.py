"""The scenario-case library (vpcid.conformance.cases): coverage, well-formedness and variant sensitivity."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from functools import cache

import pytest
from vpcid.adapters.base import FixedMachine
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.cases import (
    GROUPS,
    Case,
    Target,
    all_cases,
    default_targets,
    device_cases,
    system_cases,
)
from vpcid.conformance.devices import SUITE_TYPES
from vpcid.conformance.trace import GUEST_VIEW, Observation, Op, OpKind
from vpcid.conformance.traceability import load_requirements
from vpcid.model import BarKind, BarSpec, Bdf, DeviceType, Profile, Register, RegisterClass, RomSpec
from vpcid.model.catalog import NVME
from vpcid.model.manager import DEFAULT_ECAM_BASE, ECAM_SIZE
from vpcid.model.profile import AXES

DEVICE_KINDS = GUEST_VIEW | {OpKind.RESET, OpKind.SAVE, OpKind.RESTORE}
"""What a device case may use: guest-view operations plus reset, save and restore."""
INIT = Op(OpKind.INIT)
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

Run = tuple[Target | None, Case]
"""A case with the target it was built for (None: a system case)."""


def prologue(target: Target) -> list[Op]:
    """What the runner executes before a device case on a full-API adapter."""
    return [
        INIT,
        Op(OpKind.CREATE_VM, vm=target.vm, ecam_base=target.ecam_base),
        Op(OpKind.PLUG, vm=target.vm, bdf=target.bdf, name=target.dtype.name),
    ]


def full_ops(run: Run) -> list[Op]:
    target, case = run
    return (prologue(target) if target is not None else [INIT]) + list(case.ops)


def observe(ops: Sequence[Op], adapter: ModelAdapter) -> list[Observation]:
    """Observations of ``ops``; a TraceError (an ill-formed case) propagates."""
    return [adapter.execute(op) for op in ops]


@cache
def library() -> tuple[Run, ...]:
    runs: list[Run] = [(t, c) for t in default_targets() for c in device_cases(t)]
    return tuple(runs + [(None, c) for c in system_cases()])


@cache
def default_observations() -> tuple[tuple[Observation, ...], ...]:
    return tuple(tuple(observe(full_ops(run), ModelAdapter())) for run in library())


def alternatives() -> list[tuple[str, str]]:
    return [(axis, value.value) for axis, enum in AXES.items() for value in list(enum)[1:]]


# --------------------------------------------------------------------------- coverage and shape


@pytest.mark.req("R-VAR-002")
def test_every_requirement_is_checked_by_a_case() -> None:
    """(1) Every R-ID the spec defines is listed by at least one case."""
    defined = set(load_requirements())
    cases = all_cases(default_targets())
    cited = {rid for c in cases for rid in c.requirements}
    assert defined - cited == set(), "requirements without a case"
    assert cited - defined == set(), "cases citing requirements the spec does not define"
    assert 150 <= len(cases) <= 600  # a guard against a generator run wild (425 with bridges, MSI-X, axes)


def test_names_groups_and_needs() -> None:
    """(3) Unique kebab-case names, known groups, ``needs`` exactly the kinds used, short bodies."""
    cases = all_cases(default_targets())
    names = [c.name for c in cases]
    assert len(names) == len(set(names))
    for case in cases:
        assert KEBAB.match(case.name), case.name
        assert case.group in GROUPS, case.name
        assert case.needs == frozenset(op.kind for op in case.ops), case.name
        assert 3 <= len(case.ops) <= 64, (case.name, len(case.ops))
        assert case.description, case.name
        assert case.requirements, case.name
        assert OpKind.INIT not in case.needs, case.name
    for target in default_targets():
        per_target = device_cases(target)
        assert len({(c.group, c.name) for c in per_target}) == len(per_target)
        for case in per_target:
            assert not case.full_api
            assert case.needs <= DEVICE_KINDS, (case.name, case.needs - DEVICE_KINDS)
            assert all(op.vm == target.vm for op in case.ops), case.name
    assert all(c.full_api for c in system_cases())
    assert {c.group for c in cases} == set(GROUPS)


def test_default_targets() -> None:
    targets = default_targets()
    assert {t.dtype.name for t in targets} == set(SUITE_TYPES)
    assert len({t.bdf for t in targets}) == len(targets)
    assert all(t.vm == 1 and t.ecam_base == DEFAULT_ECAM_BASE for t in targets)


# --------------------------------------------------------------------------- every case runs


def test_every_case_runs_on_the_model() -> None:
    """(2) Every case runs on a ModelAdapter without a TraceError; rejected operations are observations."""
    observations = default_observations()
    assert len(observations) == len(library())
    errors = sum(1 for obs in observations for o in obs if o.error is not None)
    assert errors > 0  # the error cases do produce errors


def test_device_cases_use_safe_addresses() -> None:
    """After every operation of every device case, whatever decodes lies in the safe windows.

    Memory: 0xE000_0000-0xEFFF_FFFF or from 0x10_0000_0000, never in the ECAM window; I/O:
    0xC000-0xCFFF, clear of 0xCF8-0xCFF.
    """
    for target in default_targets():
        for case in device_cases(target):
            adapter = ModelAdapter()
            for op in prologue(target) + list(case.ops):
                adapter.execute(op)
                if op.kind is OpKind.INIT:
                    continue
                tables = adapter.manager.tables(target.vm)
                for e in tables.memory:
                    low = e.base >= 0xE000_0000 and e.base + e.size <= 0xF000_0000
                    assert low or e.base >= 0x10_0000_0000, (case.name, hex(e.base))
                for e in tables.io:
                    assert e.base >= 0xC000, (case.name, hex(e.base))
                    assert e.base + e.size <= 0xD000, (case.name, hex(e.base))


def test_device_cases_do_not_depend_on_other_devices() -> None:
    """Device cases give the same observations on a fixed machine holding every target (guest view)."""
    targets = default_targets()
    machine = FixedMachine(1, tuple((t.bdf, t.dtype) for t in targets), DEFAULT_ECAM_BASE)
    guest = ModelAdapter(machine=machine, operations=DEVICE_KINDS)
    by_index = {id(run[1]): obs for run, obs in zip(library(), default_observations(), strict=True)}
    for target in targets:
        for case in device_cases(target):
            alone = by_index[id(next(c for t, c in library() if t == target and c.name == case.name))]
            seen = observe([INIT, *case.ops], guest)
            assert seen[1:] == list(alone[3:]), case.name


def test_other_vm_bdf_and_no_ecam() -> None:
    """Cases follow the target's VM and BDF; without an ECAM window no case touches ECAM."""
    target = Target(7, Bdf(2, 1, 3), SUITE_TYPES["kitchen-sink"], None)
    cases = device_cases(target)
    assert not [c.name for c in cases if c.group == "ecam"]
    for case in cases:
        assert all(op.bdf in (None, target.bdf) or op.bdf.bus >= 0xFD for op in case.ops), case.name
        observe(prologue(target) + list(case.ops), ModelAdapter())


# --------------------------------------------------------------------------- features the type lacks

BARE = DeviceType(name="bare", vendor_id=0x1B36, device_id=0x00EE, class_code=0xFF0000)
"""A function with no BAR, no ROM, no capability and no register."""

ONLY_IO = DeviceType(name="only-io", vendor_id=0x1B36, device_id=0x00ED, class_code=0xFF0000,
                     bars=(None, None, BarSpec(BarKind.IO, 8)))  # fmt: skip


def platform_or_probe(case: Case, op: Op) -> bool:
    """I/O accesses a device without I/O BARs may still make: 0xCF8-0xCFF, or argument checks."""
    return (op.address <= 0xCFF and op.address + op.width > 0xCF8) or case.group == "errors"


@pytest.mark.parametrize("dtype", [NVME, BARE], ids=lambda t: t.name)
def test_no_case_needs_a_missing_rom_or_io_bar(dtype: DeviceType) -> None:
    """(5) Types without a ROM or an I/O BAR get no case about them (only the ROM-absent check)."""
    target = Target(1, Bdf(0, 6, 0), dtype, DEFAULT_ECAM_BASE)
    cases = device_cases(target)
    assert cases
    for case in cases:
        assert "io-bar" not in case.name
        assert "rom" not in case.name or case.name == "rom-absent"
        for op in case.ops:
            if op.kind in (OpKind.IO_READ, OpKind.IO_WRITE):
                assert platform_or_probe(case, op), (case.name, op)
            if op.kind is OpKind.CONFIG_WRITE and op.address == 0x30 and case.name != "rom-absent":
                assert op.value & 1 == 0 or op.value == 0xFFFF_FFFF, case.name
    adapter = ModelAdapter(types={dtype.name: dtype})
    for case in cases:
        observe(prologue(target) + list(case.ops), adapter)


def test_bare_type_has_no_bar_cases() -> None:
    target = Target(1, Bdf(0, 6, 0), BARE, DEFAULT_ECAM_BASE)
    for case in device_cases(target):
        for op in case.ops:
            if op.kind in (OpKind.MMIO_READ, OpKind.MMIO_WRITE) and case.group != "errors":
                inside = DEFAULT_ECAM_BASE - 8 <= op.address < DEFAULT_ECAM_BASE + ECAM_SIZE + 8
                assert inside, (case.name, hex(op.address))


def test_io_only_type() -> None:
    target = Target(1, Bdf(0, 9, 0), ONLY_IO, DEFAULT_ECAM_BASE)
    cases = device_cases(target)
    names = {c.name for c in cases}
    assert {"register-io-bar2", "io-bar-enable", "high-address-bits-io-bar2"} <= names
    assert "memory-enable" not in names
    adapter = ModelAdapter(types={ONLY_IO.name: ONLY_IO})
    for case in cases:
        observe(prologue(target) + list(case.ops), adapter)


EXTREME = DeviceType(
    name="extreme", vendor_id=0x1B36, device_id=0x00EC, class_code=0xFF0000, express=True,
    bars=(BarSpec(BarKind.MEM32, 1 << 31), BarSpec(BarKind.MEM64, 1 << 63), None, BarSpec(BarKind.IO, 256),
          BarSpec(BarKind.IO, 4), BarSpec(BarKind.MEM32, 16)),
    rom=RomSpec(1 << 24, b"\x55\xaa"),
    registers=(Register(0x40, 1, RegisterClass.RSVD), Register(0x104, 4, RegisterClass.RW, 1),
               Register(0xFFE, 2, RegisterClass.RO, 7)),
)  # fmt: skip
"""Largest BARs and ROM, every slot used, registers at both ends of extended space."""


def test_extreme_type_stays_in_safe_windows() -> None:
    """BARs too large for the 32-bit window are only sized, never decoded; the rest stay safe."""
    target = Target(3, Bdf(1, 2, 3), EXTREME, 0xC000_0000)
    cases = device_cases(target)
    assert {"register-bar0", "register-bar1", "rom-contents", "straddle-io-bar3-io-bar4"} <= {
        c.name for c in cases
    }
    adapter = ModelAdapter(types={EXTREME.name: EXTREME})
    for case in cases:
        for op in prologue(target) + list(case.ops):
            adapter.execute(op)
            if op.kind is not OpKind.INIT:
                for e in adapter.manager.tables(target.vm).memory:
                    assert e.base >= 0xE000_0000, (case.name, hex(e.base))
                    assert not 0xC000_0000 <= e.base < 0xD000_0000, (case.name, hex(e.base))


# --------------------------------------------------------------------------- literal blobs


@pytest.mark.req("R-BLOB-001", "R-BLOB-002", "R-BLOB-004", "R-BLOB-005", "R-SR-004", "R-SR-005", "R-SR-007")
def test_literal_blob_cases_are_rejected_as_intended() -> None:
    """Every literal restore in a "rejects" case is rejected by the model; valid literals are accepted."""
    for (target, case), observations in zip(library(), default_observations(), strict=True):
        if target is not None:
            continue
        ops = [INIT, *case.ops]
        literal = [obs for op, obs in zip(ops, observations, strict=True)
                   if op.kind in (OpKind.RESTORE, OpKind.RESTORE_VM) and not op.name]  # fmt: skip
        if not literal:
            continue
        if "-rejects-" in case.name or case.name == "fingerprint-mismatch":
            want = "blob-mismatch" if case.group == "save-restore" else None
            for obs in literal:
                assert obs.error is not None, case.name
                assert want is None or obs.error == want, case.name
        elif "valid-literal" in case.name or "skips" in case.name or case.name == "status-error-bits":
            assert all(obs.error is None for obs in literal), case.name


@pytest.mark.req("R-SR-008", "R-BLOB-003")
def test_valid_literal_blob_round_trips() -> None:
    """Restoring the literal blob and saving again gives back exactly the literal's bytes."""
    case = next(c for c in system_cases() if c.name == "instance-valid-literal")
    adapter = ModelAdapter()
    literal = next(op.data for op in case.ops if op.kind is OpKind.RESTORE)
    observe([INIT, *case.ops], adapter)
    from vpcid.conformance.trace import blob_digest

    saved = [op for op in case.ops if op.kind is OpKind.SAVE][-1]
    assert observe([saved], adapter)[0].digest == blob_digest(literal)


# --------------------------------------------------------------------------- variant sensitivity


@pytest.mark.req("R-VAR-001")
@pytest.mark.parametrize(("axis", "value"), alternatives())
def test_some_case_tells_each_variant_from_the_default(axis: str, value: str) -> None:
    """(4) For every alternative value of every axis, some case observes differently than by default."""
    profile = Profile.from_mapping({axis: value})
    for run, default in zip(library(), default_observations(), strict=True):
        if observe(full_ops(run), ModelAdapter(profile=profile)) != list(default):
            return
    pytest.fail(f"no case distinguishes {axis}={value} from the default profile")


def test_every_case_runs_in_every_alternative_profile() -> None:
    """Cases are well formed in every profile (a runner computes expectations in the declared one)."""
    everything = Profile.from_mapping({axis: list(enum)[-1].value for axis, enum in AXES.items()})
    for run in library():
        observe(full_ops(run), ModelAdapter(profile=everything))


# --------------------------------------------------------------------------- steps carry their requirement


def test_every_step_carries_the_requirement_it_checks() -> None:
    """Each operation of a case names the requirement it checks (None: set-up); a case's requirements
    are exactly those of its steps, in the order they first appear."""
    defined = set(load_requirements())
    for _target, case in library():
        assert len(case.rules) == len(case.ops), case.name
        named = [rule for rule in case.rules if rule is not None]
        assert named, f"{case.name} checks nothing"
        assert set(named) <= defined, case.name
        assert case.requirements == tuple(dict.fromkeys(named)), case.name


def test_scripted_cases_are_tables_of_rows() -> None:
    """The cases that compute nothing from the target are data: rows of (requirement, steps)."""
    from vpcid.conformance.cases import CONFIG_MECHANISM, CONFIGURATION_SPACE, Script, _Body, _Fn, _play

    scripts = [*CONFIGURATION_SPACE, *CONFIG_MECHANISM]
    assert all(isinstance(s, Script) for s in scripts)
    assert {s.group for s in scripts} == {"configuration-space", "config-mechanism"}
    target = default_targets()[1]
    f = _Fn(_Body(), target.vm, target.bdf, target.dtype, target.ecam_base)
    _play(f, "cr 0x3C/1; cw 0x3C/1 0x5A; ~cr 0x00; cf8 0x3C +3; cf8- 0x00; er 0x10/8; ew 0x3C/1 0")
    kinds = [op.kind for op in f.body.ops]
    assert kinds == [OpKind.CONFIG_READ, OpKind.CONFIG_WRITE, OpKind.CONFIG_READ, OpKind.IO_WRITE,
                     OpKind.IO_WRITE, OpKind.MMIO_READ, OpKind.MMIO_WRITE]  # fmt: skip
    assert f.body.ops[2].bdf != target.bdf, "~ addresses a function no case populates"
    assert f.body.ops[3].value == 0x8000_0000 | target.bdf.packed << 8 | 0x3C | 3
    assert f.body.ops[4].value == target.bdf.packed << 8
    assert f.body.ops[5].width == 8
    with pytest.raises(ValueError, match="unknown command"):
        _play(f, "poke 0x10")


def test_system_scripts_play_the_data_managers_operations() -> None:
    """System cases as data: VM and hot-plug commands, the current function, literal blobs as text."""
    from vpcid.conformance.cases import SYSTEM_SCRIPTS, _Body, _Player

    names = {script.name for scripts in SYSTEM_SCRIPTS.values() for script in scripts}
    assert {"vm-id-range", "unknown-vm", "error-order", "vm-reset"} <= names
    assert names <= {c.name for c in system_cases()}
    body = _Body()
    _Player(body).play(
        "vm 1 ecam=0xC0000000; plug 1 00:03.0 kitchen-sink; vm 2 noecam; plug 2 00:03.0 e1000;"
        "@1/00:03.0; er 0x00; @2/00:03.0; cr 0x00; restore-bytes 'not a blob'; reset-vm 2; tables 1",
        system=True,
    )
    ops = body.ops
    assert [op.kind for op in ops] == [
        OpKind.CREATE_VM, OpKind.PLUG, OpKind.CREATE_VM, OpKind.PLUG, OpKind.MMIO_READ, OpKind.CONFIG_READ,
        OpKind.RESTORE, OpKind.RESET_VM, OpKind.TABLES,
    ]  # fmt: skip
    assert (ops[0].ecam_base, ops[2].ecam_base) == (0xC000_0000, None)
    assert ops[4].address == 0xC000_0000 + (Bdf(0, 3, 0).packed << 12), "ECAM of the VM's own window"
    assert (ops[5].vm, ops[6].data) == (2, b"not a blob")


class _ClampAlways:
    """A broken ``msi-mme-clamp``: with MSI enabled it sets Multiple Message Enable to Multiple Message
    Capable whatever was written (a systematic mutant of the catalog's behaviour did this)."""

    name = "msi-mme-clamp"

    def config_write(self, config: bytearray, offset: int, before: bytes) -> None:
        control = int.from_bytes(config[0x52:0x54], "little")
        if control & 1:
            config[0x52:0x54] = (control & ~0x70 | ((control >> 1) & 7) << 4).to_bytes(2, "little")


@pytest.mark.req("R-DT-008")
def test_msi_clamp_case_tells_a_clamp_that_also_changes_allowed_values() -> None:
    kitchen = SUITE_TYPES["kitchen-sink"]
    target = next(t for t in default_targets() if t.dtype is kitchen)
    (case,) = [c for c in device_cases(target) if c.name.startswith("msi-mme-clamp")]
    assert set(case.requirements) == {"R-DT-008"}
    ops = [Op(OpKind.INIT), Op(OpKind.CREATE_VM, vm=target.vm, ecam_base=target.ecam_base),
           Op(OpKind.PLUG, vm=target.vm, bdf=target.bdf, name=kitchen.name), *case.ops]  # fmt: skip
    broken = dataclasses.replace(kitchen, config_behaviour=_ClampAlways())
    assert broken == kitchen  # same definition, same behaviour name: only the behaviour's code differs
    pristine = ModelAdapter()
    mutant = ModelAdapter("clamp-always", types={**SUITE_TYPES, kitchen.name: broken})
    seen = [[pristine.execute(op) for op in ops], [mutant.execute(op) for op in ops]]
    assert seen[0] != seen[1]
    clamping = [t for t in default_targets() if t.dtype.config_behaviour is not None]
    others = [c.name for t in default_targets() if t not in clamping for c in device_cases(t)]
    assert not [name for name in others if name.startswith("msi-mme-clamp")]
