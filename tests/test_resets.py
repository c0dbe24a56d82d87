"""Reset kinds: sticky bits kept by a function reset and cleared by a VM reset (R-RST-004), and the
function-level reset a guest initiates through PCI Express Device Control (R-RST-005).

Each behaviour is checked on the model and on the compiled backend (skipped, with the reason, when it
is not built), and the two are compared on random operation sequences.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from vpcid.adapters import cython as backend
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.platform_cases import (
    BAR_ADDRESS,
    DEVICE_CONTROL,
    FLR_STICKY,
    PCIE_CAP,
    STICKY_RW,
    STICKY_RW1C,
    STICKY_RW1C_POWER_ON,
)
from vpcid.conformance.trace import Op, OpKind, define_type_op
from vpcid.conformance.typefile import parse_type_definition, type_json
from vpcid.model import (
    Bdf,
    Capability,
    ConfigSpace,
    DataManager,
    DeviceType,
    DeviceTypeError,
    Register,
    RegisterClass,
)
from vpcid.model.devicetype import fingerprint_input

VM = 1
FN = Bdf(0, 0x0A, 0)
OTHER = Bdf(0, 0x0D, 0)
ECAM = 0xB000_0000
needs_backend = pytest.mark.skipif(not backend.available(), reason=backend.UNAVAILABLE_REASON or "")

Manager = Any
"""The model's DataManager or the compiled backend's Manager: the same API."""


def _cython_manager() -> Manager:
    assert backend.available(), backend.UNAVAILABLE_REASON
    return backend.Manager()


MANAGERS: list[Any] = [
    pytest.param(DataManager, id="model"),
    pytest.param(_cython_manager, id="cython", marks=needs_backend),
]


@pytest.fixture(params=MANAGERS)
def make(request: pytest.FixtureRequest) -> Callable[[], Manager]:
    factory: Callable[[], Manager] = request.param
    return factory


def _plugged(make: Callable[[], Manager], dtype: DeviceType = FLR_STICKY) -> Manager:
    dm = make()
    dm.create_vm(VM)
    dm.plug(VM, FN, dtype)
    return dm


def _dirty(dm: Manager) -> None:
    """Write sticky and ordinary bits, enable decode and put data in BAR 0."""
    dm.config_write(VM, FN, STICKY_RW, 4, 0xA5A5_5A5A)
    dm.config_write(VM, FN, STICKY_RW1C, 4, 0x33)  # clears bits 5:4 (ordinary) and 1:0 (sticky)
    dm.config_write(VM, FN, DEVICE_CONTROL, 2, 0x001F)
    dm.config_write(VM, FN, 0x3C, 1, 0x0B)
    dm.config_write(VM, FN, 0x10, 4, BAR_ADDRESS)
    dm.config_write(VM, FN, 0x04, 2, 0x2)
    dm.mmio_write(VM, BAR_ADDRESS + 8, 4, 0x1234_5678)


def _assert_function_reset(dm: Manager) -> None:
    """Power-on state except the sticky bits _dirty wrote (R-RST-001, R-RST-002, R-RST-004)."""
    assert dm.config_read(VM, FN, 0x04, 2) == 0
    assert dm.config_read(VM, FN, 0x10, 4) == 0
    assert dm.config_read(VM, FN, 0x3C, 1) == 0
    assert dm.config_read(VM, FN, DEVICE_CONTROL, 2) == 0
    assert dm.config_read(VM, FN, STICKY_RW, 4) == 0x0000_5A5A  # bits 15:0 sticky
    assert dm.config_read(VM, FN, STICKY_RW1C, 4) == 0xFC  # bits 3:0 kept cleared, 7:4 back at power-on
    assert dm.mmio_read(VM, BAR_ADDRESS + 8, 4) == 0xFFFF_FFFF  # nothing decodes
    assert dm.tables(VM).memory == ()


@pytest.mark.req("R-RST-004")
def test_function_reset_keeps_sticky_bits(make: Callable[[], Manager]) -> None:
    dm = _plugged(make)
    _dirty(dm)
    dm.reset(VM, FN)
    _assert_function_reset(dm)
    dm.config_write(VM, FN, 0x10, 4, BAR_ADDRESS)
    dm.config_write(VM, FN, 0x04, 2, 0x2)
    assert dm.mmio_read(VM, BAR_ADDRESS + 8, 4) == 0  # data re-initialised (R-RST-002)


@pytest.mark.req("R-RST-004")
def test_vm_reset_is_a_power_on_reset_and_clears_sticky_bits(make: Callable[[], Manager]) -> None:
    dm = _plugged(make)
    _dirty(dm)
    dm.reset_vm(VM)
    assert dm.config_read(VM, FN, STICKY_RW, 4) == 0
    assert dm.config_read(VM, FN, STICKY_RW1C, 4) == STICKY_RW1C_POWER_ON
    assert dm.config_read(VM, FN, 0x04, 2) == 0
    power_on = _plugged(make)
    assert dm.save(VM, FN) == power_on.save(VM, FN)


@pytest.mark.req("R-RST-004")
def test_reset_without_sticky_bits_is_the_power_on_image(make: Callable[[], Manager]) -> None:
    dm = _plugged(make)
    fresh = dm.save(VM, FN)
    dm.reset(VM, FN)  # nothing written: the power-on image either way
    assert dm.save(VM, FN) == fresh


@pytest.mark.req("R-RST-004")
def test_reset_instance_is_the_one_per_instance_reset() -> None:
    """Other code (a bridge's secondary bus reset) resets instances through _reset_instance."""
    dm = DataManager()
    dm.create_vm(VM)
    dm.plug(VM, FN, FLR_STICKY)
    _dirty(dm)
    vm = dm._vm(VM)
    dm._reset_instance(vm, vm.config_table[FN], keep_sticky=True)
    _assert_function_reset(dm)
    dm._reset_instance(vm, vm.config_table[FN], keep_sticky=False)
    assert dm.config_read(VM, FN, STICKY_RW, 4) == 0


@pytest.mark.req("R-RST-004")
def test_restore_takes_sticky_bits_and_reset_keeps_them(make: Callable[[], Manager]) -> None:
    dm = _plugged(make)
    _dirty(dm)
    blob = dm.save(VM, FN)
    other = _plugged(make)
    other.restore(VM, FN, blob)
    other.reset(VM, FN)
    assert other.config_read(VM, FN, STICKY_RW, 4) == 0x5A5A


# ------------------------------------------------------------------ declaring sticky bits


def _sticky(**at: int) -> bytes:
    mask = bytearray(4096)
    for offset, bits in at.items():
        mask[int(offset.removeprefix("o"), 16)] = bits
    return bytes(mask)


def _flr_type(name: str, sticky: bytes = b"", devcap: int = 1 << 28, control: int = 0) -> DeviceType:
    body = bytes([0x02, 0x00]) + devcap.to_bytes(4, "little") + control.to_bytes(2, "little") + bytes(2)
    return DeviceType(
        name=name, vendor_id=0x1B36, device_id=0x00F9, class_code=0xFF0000, express=True,
        capabilities=(Capability(0x10, body, bytes(6) + b"\xff\xff" + bytes(2), offset=PCIE_CAP),),
        registers=(
            Register(0x80, 4, RegisterClass.RW), Register(0x84, 4, RegisterClass.RW1C),
            Register(0x88, 4, RegisterClass.RO, 0x77),
        ),
        sticky=sticky,
    )  # fmt: skip


@pytest.mark.req("R-RST-004")
@pytest.mark.parametrize(
    ("sticky", "byte", "why"),
    [
        (_sticky(o3c=0xFF), "0x03c", "at or above 0x40"),
        (_sticky(o88=0x01), "0x088", "writable or RW1C"),
        (_sticky(o49=0x80), "0x049", "Initiate Function Level Reset"),
        (bytes(256), "", "4096 bytes or none"),
    ],
)
def test_sticky_declarations_that_break_a_rule_are_rejected(sticky: bytes, byte: str, why: str) -> None:
    with pytest.raises(DeviceTypeError, match=why) as caught:
        _flr_type("bad-sticky", sticky)
    assert byte in str(caught.value)


@pytest.mark.req("R-RST-004")
def test_sticky_bits_are_part_of_the_fingerprint_only_when_declared() -> None:
    plain = _flr_type("sticky-or-not")
    zero = _flr_type("sticky-or-not", bytes(4096))
    marked = _flr_type("sticky-or-not", _sticky(o80=0x0F))
    assert zero.declared.sticky == b""
    assert zero.fingerprint() == plain.fingerprint()
    assert marked.fingerprint() != plain.fingerprint()
    assert fingerprint_input(marked) == fingerprint_input(plain) + b"STICKY" + _sticky(o80=0x0F)


@pytest.mark.req("R-RST-004")
def test_type_files_carry_sticky_bits_in_both_forms() -> None:
    obj = type_json(FLR_STICKY)
    assert set(obj["config"]["sticky"]) == {"080"}
    assert parse_type_definition(obj).fingerprint() == FLR_STICKY.fingerprint()
    fields_form: dict[str, Any] = {
        "name": "sticky-fields", "vendor_id": "0x1b36", "device_id": 1, "class_code": 0, "express": True,
        "registers": [{"offset": "0x80", "width": 4, "class": "rw"}],
        "sticky": {"080": "ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"},
    }  # fmt: skip
    built = parse_type_definition(fields_form)
    assert built.declared.sticky[0x80] == 0xFF
    assert parse_type_definition(type_json(built)).fingerprint() == built.fingerprint()
    space = built.declared
    again = DeviceType.from_space(
        "sticky-fields", ConfigSpace(space.image, space.wmask, space.w1cmask, space.sticky)
    )
    assert again.fingerprint() == built.fingerprint()
    assert "sticky" not in type_json(_flr_type("no-sticky"))["config"]


# ------------------------------------------------------------------ function-level reset (R-RST-005)


def _write_via(dm: Manager, how: str, value: int) -> None:
    """Write Device Control's upper byte: directly, through 0xCF8/0xCFC, or through ECAM."""
    high = DEVICE_CONTROL + 1
    if how == "direct":
        dm.config_write(VM, FN, high, 1, value)
    elif how == "cam":
        dm.io_write(VM, 0xCF8, 4, 0x8000_0000 | FN.packed << 8 | (high & ~3))
        dm.io_write(VM, 0xCFC + (high & 3), 1, value)
    else:
        dm.mmio_write(VM, ECAM + (FN.packed << 12) + high, 1, value)


@pytest.mark.req("R-RST-005")
@pytest.mark.parametrize("how", ["direct", "cam", "ecam"])
def test_initiate_flr_resets_the_function_keeping_sticky_bits(make: Callable[[], Manager], how: str) -> None:
    dm = _plugged(make)
    dm.plug(VM, OTHER, FLR_STICKY)
    dm.config_write(VM, OTHER, STICKY_RW, 4, 0x1111_1111)
    _dirty(dm)
    _write_via(dm, how, 0x80)
    _assert_function_reset(dm)  # Initiate FLR reads 0 too
    assert dm.config_read(VM, OTHER, STICKY_RW, 4) == 0x1111_1111  # other functions are not reset


@pytest.mark.req("R-RST-005")
def test_a_write_leaving_initiate_flr_clear_resets_nothing(make: Callable[[], Manager]) -> None:
    dm = _plugged(make)
    _dirty(dm)
    dm.config_write(VM, FN, DEVICE_CONTROL, 1, 0x80)  # bit 7 of the low byte
    dm.config_write(VM, FN, DEVICE_CONTROL + 1, 1, 0x7F)
    assert dm.config_read(VM, FN, DEVICE_CONTROL, 2) == 0x7F80
    assert dm.config_read(VM, FN, 0x04, 2) == 0x2
    assert dm.mmio_read(VM, BAR_ADDRESS + 8, 4) == 0x1234_5678


@pytest.mark.req("R-RST-005")
def test_initiate_flr_of_a_function_without_flr_capability_is_a_plain_bit(
    make: Callable[[], Manager],
) -> None:
    dtype = _flr_type("no-flr", devcap=0)
    dm = _plugged(make, dtype)
    dm.config_write(VM, FN, 0x80, 4, 0xFFFF_FFFF)
    dm.config_write(VM, FN, DEVICE_CONTROL, 2, 0x8000)
    assert dm.config_read(VM, FN, DEVICE_CONTROL, 2) == 0x8000
    assert dm.config_read(VM, FN, 0x80, 4) == 0xFFFF_FFFF


@pytest.mark.req("R-RST-005")
def test_flr_capability_is_read_from_the_pcie_capability() -> None:
    assert FLR_STICKY.flr_control == DEVICE_CONTROL
    assert _flr_type("no-flr", devcap=0).flr_control is None
    assert _flr_type("flr-set-at-power-on", control=0x8000).flr_control == DEVICE_CONTROL


@pytest.mark.req("R-RST-005")
def test_after_an_flr_initiate_flr_reads_its_power_on_value(make: Callable[[], Manager]) -> None:
    """A declaration whose power-on Device Control has bit 15 set (no real function has): a write of 1
    still resets, and only a write of 1 does, not every write while the bit reads 1."""
    dm = _plugged(make, _flr_type("flr-set-at-power-on", control=0x8000))
    dm.config_write(VM, FN, 0x80, 4, 0x1234)
    dm.config_write(VM, FN, DEVICE_CONTROL, 1, 0x0F)  # bit 15 untouched: no reset
    assert dm.config_read(VM, FN, 0x80, 4) == 0x1234
    dm.config_write(VM, FN, DEVICE_CONTROL, 2, 0x800F)
    assert dm.config_read(VM, FN, 0x80, 4) == 0
    assert dm.config_read(VM, FN, DEVICE_CONTROL, 2) == 0x8000


# ------------------------------------------------------------------ model and backend agree


@needs_backend
@pytest.mark.req("R-RST-004")
@pytest.mark.req("R-RST-005")
@pytest.mark.parametrize("seed", range(4))
def test_model_and_backend_agree_on_resets(seed: int) -> None:
    rng = random.Random(seed)
    offsets = [0x04, 0x10, 0x3C, DEVICE_CONTROL, DEVICE_CONTROL + 2, STICKY_RW, STICKY_RW1C]
    ops = [Op(OpKind.INIT), define_type_op(type_json(FLR_STICKY)), Op(OpKind.CREATE_VM, vm=VM)]
    ops += [Op(OpKind.PLUG, vm=VM, bdf=b, name=FLR_STICKY.name) for b in (FN, OTHER)]
    for _ in range(300):
        bdf = rng.choice((FN, OTHER))
        roll = rng.random()
        if roll < 0.05:
            ops.append(Op(OpKind.RESET, vm=VM, bdf=bdf))
        elif roll < 0.08:
            ops.append(Op(OpKind.RESET_VM, vm=VM))
        elif roll < 0.1:
            ops.append(Op(OpKind.SAVE, vm=VM, bdf=bdf, name="s"))
        elif roll < 0.5:
            width = rng.choice((1, 2, 4))
            offset = rng.choice(offsets) + rng.randrange(4 // width) * width
            value = rng.getrandbits(8 * width)
            ops.append(Op(OpKind.CONFIG_WRITE, vm=VM, bdf=bdf, address=offset, width=width, value=value))
        else:
            ops.append(Op(OpKind.CONFIG_READ, vm=VM, bdf=bdf, address=rng.choice(offsets), width=4))
    model, compiled = ModelAdapter(), backend.CythonAdapter()
    try:
        for op in ops:
            assert compiled.execute(op) == model.execute(op), op
    finally:
        model.close()
        compiled.close()
