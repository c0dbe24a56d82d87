"""The register scenario cases (vpcid.conformance.register_cases): what they exercise, that the model
answers them as the rules say, that planted register bugs fail them, and how certification counts the
R-REG requirements (cases, the random engine, implementations that decline register maps)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache

import pytest
from vpcid.adapters import cython as backend
from vpcid.adapters.base import Adapter
from vpcid.adapters.kvm import kvmapi
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.cases import GROUPS, Case, system_cases
from vpcid.conformance.certify import Verdict, certify
from vpcid.conformance.engine import REGISTER_RULES, Differential
from vpcid.conformance.mutants import MUTANTS, Mutant
from vpcid.conformance.register_cases import (
    CONFIG_REGISTERS,
    GROUP,
    MAX_OPS,
    _even_runs,
    _register_map_breaks,
    class_rule,
)
from vpcid.conformance.trace import Observation, Op, OpKind
from vpcid.conformance.traceability import load_requirements
from vpcid.conformance.typefile import parse_type_definition
from vpcid.model import DeviceTypeError
from vpcid.model.catalog import REGISTER_SINK
from vpcid.model.registers import Access, RegisterMap

INIT = Op(OpKind.INIT)
REG_RULES = {rid for rid in load_requirements() if rid.startswith("R-REG-")}
KVM_REASON = kvmapi.unavailable_reason()


@cache
def register_cases() -> tuple[Case, ...]:
    return tuple(c for c in system_cases() if c.group == GROUP)


def case(name: str) -> Case:
    return next(c for c in register_cases() if c.name == name)


def run(c: Case, adapter: Adapter | None = None) -> list[tuple[Op, str | None, Observation]]:
    """Each operation of ``c`` with the requirement it checks and what the model (or ``adapter``)
    observes, from ``init``."""
    impl = adapter or ModelAdapter()
    impl.execute(INIT)
    return [(op, rule, impl.execute(op)) for op, rule in zip(c.ops, c.rules, strict=True)]


def sink_registers() -> RegisterMap:
    behaviour = REGISTER_SINK.behaviour
    assert isinstance(behaviour, RegisterMap)
    return behaviour


# ------------------------------------------------------------------ shape


@pytest.mark.req("R-REG-001", "R-REG-012")
def test_register_cases_check_every_register_requirement() -> None:
    cases = register_cases()
    assert GROUP in GROUPS
    assert {rid for c in cases for rid in c.requirements} == REG_RULES
    for c in cases:
        assert c.full_api, c.name
        assert 3 <= len(c.ops) <= MAX_OPS, (c.name, len(c.ops))
        assert all(rule is None or rule in REG_RULES for rule in c.rules), c.name
        defines = [op for op in c.ops if op.kind is OpKind.DEFINE_TYPE]
        plugs = [op for op in c.ops if op.kind is OpKind.PLUG]
        assert defines, f"{c.name} defines its own type"
        assert plugs, f"{c.name} plugs its own type"
        assert c.ops.index(defines[-1]) < c.ops.index(plugs[0]), c.name


def test_every_register_of_register_sink_is_walked_and_read_at_power_on() -> None:
    """Each register is read whole before anything is written (R-REG-010), and written whole with its
    reset value's complement, all ones and zero under the rule of its class (the I/O BAR's 8-byte
    register as two dwords)."""
    regs = sink_registers()
    walked: dict[str, set[int]] = {}
    power_on: set[str] = set()
    for c in register_cases():
        if not c.name.startswith("register-map-classes-"):
            continue
        bases = {
            (op.address - 0x10) // 4: op.value & ~0xF
            for op in c.ops
            if op.kind is OpKind.CONFIG_WRITE and 0x10 <= op.address < 0x28
        }
        written = False
        for op, rule in zip(c.ops, c.rules, strict=True):
            if op.kind not in (OpKind.MMIO_READ, OpKind.MMIO_WRITE, OpKind.IO_READ, OpKind.IO_WRITE):
                continue
            io = op.kind in (OpKind.IO_READ, OpKind.IO_WRITE)
            bar = next(b for b, base in bases.items() if (b == 1) == io)
            offset = op.address - bases[bar]
            reg = regs.at(bar, offset)
            is_write = op.kind in (OpKind.MMIO_WRITE, OpKind.IO_WRITE)
            written |= is_write
            if reg is None or reg.offset != offset:
                continue
            if not written and rule == "R-REG-010":
                power_on.add(reg.name)
            whole = op.width == min(reg.width, 4 if io else 8)
            if is_write and whole and rule == class_rule(reg):
                walked.setdefault(reg.name, set()).add(op.value)
    names = {r.name for r in regs.registers}
    assert power_on == names
    assert set(walked) == names
    for reg in regs.registers:
        low = (1 << 32) - 1 if reg.bar == 1 and reg.width == 8 else reg.full
        assert {~reg.reset & low, reg.full & low, 0} <= walked[reg.name], reg.name


def test_walks_carry_the_rule_of_the_class_with_most_behaviour() -> None:
    regs = sink_registers()
    assert class_rule(regs.register("ID")) == "R-REG-002"
    assert class_rule(regs.register("CTRL")) == "R-REG-003"  # rw with rsvd bits
    assert class_rule(regs.register("STATUS")) == "R-REG-004"  # ro with rw1c and rsvd bits
    assert class_rule(regs.register("IMS")) == "R-REG-005"
    assert class_rule(regs.register("ICR")) == "R-REG-006"
    assert class_rule(regs.register("DOORBELL")) == "R-REG-007"


def test_cases_per_bar_are_as_few_and_even_as_fit() -> None:
    assert _even_runs([10, 10, 10, 10], 25) == [(0, 2), (2, 4)]
    assert _even_runs([5, 20, 20, 5], 30) == [(0, 2), (2, 4)]
    runs = _even_runs([30, 1, 1, 1, 30], 32)
    assert len(runs) == 2
    assert runs[0][0] == 0
    assert runs[0][1] == runs[1][0]
    assert runs[1][1] == 5
    with pytest.raises(ValueError, match="exceed"):
        _even_runs([10, 40], 32)
    names = [c.name for c in register_cases() if c.name.startswith("register-map-classes-")]
    assert names[0] == "register-map-classes-id-to-ctrl"
    assert names[-1] == "register-map-classes-ioctl-to-iodb"


# ------------------------------------------------------------------ what the model answers


@pytest.mark.req("R-REG-001")
def test_each_broken_register_map_is_rejected_and_the_valid_one_plugs() -> None:
    for definition in _register_map_breaks():
        with pytest.raises(DeviceTypeError):
            parse_type_definition(definition)
    seen = run(case("register-map-definitions"))
    defines = [obs for op, _rule, obs in seen if op.kind is OpKind.DEFINE_TYPE]
    assert [obs.error for obs in defines[:-1]] == ["bad-device-type"] * len(_register_map_breaks())
    assert defines[-1] == Observation()
    reads = [obs.value for op, _rule, obs in seen if op.kind is OpKind.MMIO_READ]
    assert reads == [0x3, 0x0, 0x0, 0x0, 0x3]  # STATUS, DOORBELL (wo), KICK and gaps, STATUS again


@pytest.mark.req("R-REG-011")
def test_restores_of_impossible_register_state_are_rejected_and_change_nothing() -> None:
    seen = run(case("register-map-restore-checks"))
    restores = [(k, obs) for k, (op, _rule, obs) in enumerate(seen) if op.kind is OpKind.RESTORE]
    assert [obs.error for _k, obs in restores] == ["blob-mismatch"] * 7 + [None]
    after = [seen[k + 1][2].value for k, _obs in restores]
    assert after == [0xBEEF] * 7 + [0x600D]  # SCRATCH: its reset value until the valid restore
    status, memory = seen[-3][2].value, seen[-1][2].value
    assert status == 0xA1  # STATUS bit 0, read-only but set by CTRL's side effect, came back
    assert memory == 0x77


@pytest.mark.req("R-REG-012")
def test_configuration_register_bits_become_masks() -> None:
    """Write all ones, then zero, to each configuration register; the read-backs follow each bit's class,
    computed here from the declaration: rw bits take the value, rw1c bits clear, ro bits keep, rsvd
    bits read zero."""
    seen = run(case("config-register-bits"))
    rejected = [obs.error for op, _rule, obs in seen if op.kind is OpKind.DEFINE_TYPE]
    assert rejected == ["bad-device-type"] * 5 + [None]
    for register in CONFIG_REGISTERS:
        offset, width = int(register["offset"], 16), register["width"]
        full = (1 << 8 * width) - 1
        masks = dict.fromkeys(("ro", "rw", "rw1c", "rsvd"), 0)
        rest = full
        for span, cls in register["bits"].items():
            high, _, low = span.partition(":")
            mask = ((1 << int(high) - int(low or high) + 1) - 1) << int(low or high)
            masks[cls] |= mask
            rest &= ~mask
        masks[register["class"]] |= rest
        value = int(register["value"], 16)
        reads = [
            obs.value
            for op, _rule, obs in seen
            if op.kind is OpKind.CONFIG_READ and op.address == offset and op.width == width
        ]
        after_ones = value & masks["ro"] | masks["rw"]
        assert reads[0] == value, register
        assert reads[2] == after_ones, register
        assert reads[3] == value & masks["ro"], register


@pytest.mark.req("R-REG-009", "R-REG-008")
def test_side_effects_case_observes_order_and_partial_accesses() -> None:
    """The memory reads of the side-effects case, as the rules give them (worked out by hand)."""
    seen = run(case("register-map-side-effects"))
    status = sink_registers().register("STATUS").offset
    assert all(op.address & 0xFFF == status for op, _rule, _obs in seen[8:19:2])
    reads = [obs.value for op, _rule, obs in seen if op.kind is OpKind.MMIO_READ]
    assert reads[:6] == [0xA1, 0xA0, 0xA1, 0xA0, 0xA0, 0xA0]  # CTRL 0x3: set, then clear, in order
    # one write over IMS (0xF0) and IMC (0x30): IMS |= 0xF0, IMC &= ~0x30, then IMC |= 0xF0, IMS &= ~0x30
    assert reads[6:8] == [0xC0, 0xF0]
    # IMS 0x5 sets IMC bits 0x5 through its effect, which fires nothing on IMS; IMC 0x4 clears both
    assert reads[8:10] == [0xF5_0000_00C5, 0xF1_0000_00C1]
    # ICS byte 1 written 0x80: ICR bit 15 (the written value is 0x8000), beside its reset value 3
    assert reads[10] == 0x8003
    # ICS 0x0102: ICR bits 8 and 1; a read of byte 1 clears bit 8 only, the whole read bit 1
    assert reads[11:14] == [0x01, 0x02, 0x00]
    # DOORBELL's untriggered effect fires on a 1-byte write and on a write that only starts in a gap
    assert reads[14:16] == [0x01, 0x100]
    assert reads[16:18] == [0xA1, 0x01]  # STATUS: bit 0 set by CTRL stays through writes; rw1c bits clear
    assert reads[18:] == [0xA5C3_5A3C_A5C3_5A3C, 0x5A3C]  # BAR2 declares no register: memory


# ------------------------------------------------------------------ planted bugs and implementations

REGISTER_MUTANTS = [m for m in MUTANTS if all(rid.startswith("R-REG-") for rid in m.requirements)]


@pytest.mark.parametrize(
    "mutant", [pytest.param(m, id=m.name, marks=pytest.mark.req(*m.requirements)) for m in REGISTER_MUTANTS]
)
def test_a_register_case_fails_each_planted_register_bug_on_its_rule(mutant: Mutant) -> None:
    """The first register case that diverges on the mutant does so at or after a step that checks the
    mutant's rule (blame then names it: tests/test_mutants.py)."""
    for c in register_cases():
        divergence = Differential(mutant.adapter()).run([INIT, *c.ops])
        if divergence is not None:
            checked = {rule for rule in c.rules[: divergence.index] if rule is not None}
            assert set(mutant.requirements) & checked, (c.name, divergence.index)
            return
    pytest.fail(f"no register case tells {mutant.name} from the model")


def differs(impl: Adapter, cases: Sequence[Case]) -> list[str]:
    return [c.name for c in cases if Differential(impl).run([INIT, *c.ops]) is not None]


@pytest.mark.req("R-REG-002", "R-REG-008", "R-REG-009", "R-REG-010", "R-REG-011", "R-REG-012")
@pytest.mark.skipif(not backend.available(), reason=backend.UNAVAILABLE_REASON or "")
def test_the_cython_backend_passes_the_register_cases() -> None:
    assert differs(backend.CythonAdapter(), register_cases()) == []


@pytest.mark.req("R-REG-002", "R-REG-008", "R-REG-009", "R-REG-010", "R-REG-011", "R-REG-012")
@pytest.mark.skipif(KVM_REASON is not None, reason=f"KVM unavailable: {KVM_REASON}")
def test_the_kvm_adapter_passes_the_register_cases() -> None:
    from vpcid.adapters.kvm import adapter

    impl = adapter(None)
    try:
        assert differs(impl, register_cases()) == []
    finally:
        impl.close()


# ------------------------------------------------------------------ certification


class WithoutRegisterMaps(ModelAdapter):
    """An implementation that serves no register map: it declines types that declare one."""

    def execute(self, op: Op) -> Observation:
        if op.kind is OpKind.DEFINE_TYPE and "bar_registers" in json.loads(op.data):
            return Observation(error="bad-device-type")
        return super().execute(op)


@pytest.mark.req("R-REG-001", "R-REG-012")
def test_register_requirements_pass_on_the_reference_from_cases_and_the_engine() -> None:
    report = certify(ModelAdapter(), budget=1_000)
    results = {r.rid: r for r in report.requirements}
    assert {rid: results[rid].verdict for rid in REG_RULES} == dict.fromkeys(REG_RULES, Verdict.PASS)
    for rid in REG_RULES:
        citing = sum(rid in c.requirements for c in register_cases())
        engine = 1 if rid in REGISTER_RULES else 0  # the random engine aimed at register-sink
        assert results[rid].checks == citing + engine, rid


@pytest.mark.req("R-REG-001", "R-REG-012")
def test_an_implementation_without_register_maps_declines_them_and_is_conformant() -> None:
    """Register maps are a behaviour an implementation may decline (spec/formats/device-type.md): the
    cases that define one are left out, the types reported, R-REG-001..R-REG-011 not applicable;
    configuration registers with per-bit classes are masks every implementation serves (R-REG-012)."""
    report = certify(WithoutRegisterMaps(), budget=1_000)
    assert report.conformant
    results = {r.rid: r.verdict for r in report.requirements}
    assert {rid: results[rid] for rid in REGISTER_RULES} == dict.fromkeys(
        REGISTER_RULES, Verdict.NOT_APPLICABLE
    )
    assert results["R-REG-012"] is Verdict.PASS
    assert report.declined_types == {
        "register-sink": "bad-device-type",
        "register-map-break": "bad-device-type",
    }
    declining = [c for c in register_cases() if any(
        op.kind is OpKind.DEFINE_TYPE and "bar_registers" in json.loads(op.data)
        and not _rejected(op) for op in c.ops
    )]  # fmt: skip
    assert report.engines["cases"]["declined"] == len(declining)


def _rejected(op: Op) -> bool:
    try:
        parse_type_definition(json.loads(op.data))
    except DeviceTypeError:
        return True
    return False


def test_register_sink_has_every_class() -> None:
    classes = {access for reg in sink_registers().registers for access in reg.classes()}
    assert classes == set(Access)


@pytest.mark.req("R-REG-012")
def test_a_divergence_in_a_configuration_register_with_classes_per_bit_is_blamed_on_r_reg_012() -> None:
    from vpcid.conformance.blame import config_field
    from vpcid.conformance.register_cases import CONFIG_REGISTERS, _config_bits_definition
    from vpcid.conformance.typefile import parse_type_definition
    from vpcid.model.devicetype import layout
    from vpcid.model.profile import StatusRegister

    dtype = parse_type_definition(_config_bits_definition("config-register-bits", CONFIG_REGISTERS))
    register = next(r for r in dtype.registers if r.bits)
    rid, what = config_field(dtype, layout(dtype, StatusRegister.RW1C), register.offset, 0x01, True)
    assert rid == "R-REG-012", what
