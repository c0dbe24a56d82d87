"""Planted bugs: small deliberate deviations from the reference, to measure the suite's strength.

Each mutant is a :class:`DataManager` subclass that changes one thing, and
claims the default profile. ``vpcid mutation-score`` certifies each one; a
mutant the suite does not reject is a hole in the suite. The adapter name
``mutant:NAME`` runs one of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from vpcid.adapters.reference import ModelAdapter
from vpcid.model import Bdf, BlobError, ConfigLayout, DataManager, DeviceType, Profile
from vpcid.model import blob as blobfmt
from vpcid.model.configspace import bar_address, decode_enabled, decode_window
from vpcid.model.devicetype import BAR0, COMMAND, LAYOUT_FIELDS, ROM_INDEX, BarKind
from vpcid.model.manager import Instance, VmElement
from vpcid.model.profile import (
    BarMoveWhileDecoding,
    Cf8LowBits,
    Overlap,
    Straddle,
    UnmappedMmioRead,
)
from vpcid.model.registers import BarRegister, CompiledRegister, Effect, RegisterMap
from vpcid.model.topology import Ranges, claims


@dataclass(frozen=True)
class Mutant:
    """A planted bug: name, what it breaks, and how to build the broken manager."""

    name: str
    description: str
    requirements: tuple[str, ...]
    build: Callable[[Profile], DataManager]

    def adapter(self) -> ModelAdapter:
        """The mutant behind the adapter protocol, declaring the default profile."""
        return ModelAdapter(f"mutant:{self.name}", Profile(), manager_factory=self.build)


def _with_layout(change: Callable[[ConfigLayout, DeviceType], ConfigLayout]) -> type[DataManager]:
    """A manager whose device types get a modified configuration layout (at plug and restore)."""

    class LayoutMutant(DataManager):
        def _layout(self, dtype: DeviceType) -> ConfigLayout:
            return change(super()._layout(dtype), dtype)

    return LayoutMutant


def _patch(lay: ConfigLayout, offsets: range, **masks: int) -> ConfigLayout:
    """Replace mask bytes (``wmask``, ``w1cmask``) or ``image`` bytes at ``offsets``."""
    fields = {name: bytearray(getattr(lay, name)) for name in LAYOUT_FIELDS}
    for name, value in masks.items():
        for o in offsets:
            fields[name][o] = value
    return ConfigLayout(*(bytes(fields[n]) for n in LAYOUT_FIELDS))


def _bar_half_size(lay: ConfigLayout, dtype: DeviceType) -> ConfigLayout:
    """Address bit ``size / 2`` of every BAR whose size has that bit in its lower dword is writable."""
    wmask = bytearray(lay.wmask)
    for i in range(6):
        bar = dtype.bar(i)
        if bar is not None and 32 <= bar.size <= 1 << 32:
            low = int.from_bytes(wmask[BAR0 + 4 * i : BAR0 + 4 * i + 4], "little")
            wmask[BAR0 + 4 * i : BAR0 + 4 * i + 4] = (low | (bar.size >> 1)).to_bytes(4, "little")
    return dataclasses.replace(lay, wmask=bytes(wmask))


def _rw1c_as_rw(lay: ConfigLayout, dtype: DeviceType) -> ConfigLayout:
    wmask = bytes(w | c for w, c in zip(lay.wmask, lay.w1cmask, strict=True))
    return ConfigLayout(lay.image, wmask, bytes(len(lay.image)))


def _rw1c_ignored(lay: ConfigLayout, dtype: DeviceType) -> ConfigLayout:
    return ConfigLayout(lay.image, lay.wmask, bytes(len(lay.image)))


def _identity_writable(lay: ConfigLayout, dtype: DeviceType) -> ConfigLayout:
    return _patch(lay, range(0x2C, 0x30), wmask=0xFF)


def _cache_line_read_only(lay: ConfigLayout, dtype: DeviceType) -> ConfigLayout:
    return _patch(lay, range(0x0C, 0x0D), wmask=0)


def _window_mutant(change: Callable[[bytes | bytearray, DeviceType, int], int | None]) -> type[DataManager]:
    class WindowMutant(DataManager):
        def _window(self, config: bytes | bytearray, dtype: DeviceType, index: int) -> int | None:
            return change(config, dtype, index)

    return WindowMutant


def _decode_ignores_command(config: bytes | bytearray, dtype: DeviceType, index: int) -> int | None:
    forced = bytearray(config)
    forced[COMMAND] |= 0x3
    if index == ROM_INDEX:
        forced[0x30] |= 1
    return decode_window(forced, dtype, index)


def _upper_half_ignored(config: bytes | bytearray, dtype: DeviceType, index: int) -> int | None:
    forced = bytearray(config)
    bar = dtype.bar(index) if index != ROM_INDEX else None
    if bar is not None and bar.kind is BarKind.MEM64:
        forced[BAR0 + 4 * index + 4 : BAR0 + 4 * index + 8] = bytes(4)
    return decode_window(forced, dtype, index)


def _io_uses_memory_bit(config: bytes | bytearray, dtype: DeviceType, index: int) -> int | None:
    bar = dtype.bar(index) if index != ROM_INDEX else None
    if bar is None or bar.kind is not BarKind.IO:
        return decode_window(config, dtype, index)
    forced = bytearray(config)
    forced[COMMAND] = (forced[COMMAND] & ~0x1) | ((forced[COMMAND] >> 1) & 0x1)
    return decode_window(forced, dtype, index)


def _rom_ignores_enable(config: bytes | bytearray, dtype: DeviceType, index: int) -> int | None:
    forced = bytearray(config)
    if index == ROM_INDEX:
        forced[0x30] |= 1
    return decode_window(forced, dtype, index)


def _zero_address_decodes(config: bytes | bytearray, dtype: DeviceType, index: int) -> int | None:
    base = decode_window(config, dtype, index)
    bar = dtype.bar(index) if index != ROM_INDEX else None
    if base is None and bar is not None and decode_enabled(config, dtype, index):
        return 0 if bar_address(config, index, bar.kind) == 0 else None
    return base


def _no_limit_check(config: bytes | bytearray, dtype: DeviceType, index: int) -> int | None:
    base = decode_window(config, dtype, index)
    if base is not None or index == ROM_INDEX:
        return base
    bar = dtype.bar(index)
    if bar is None or bar.kind is not BarKind.IO:
        return base
    address = int.from_bytes(config[BAR0 + 4 * index : BAR0 + 4 * index + 4], "little") & ~0x3
    enabled = config[COMMAND] & 0x1
    return address & 0xFFFF if enabled and address and address + bar.size > 0x10000 else None


def _variant(**axes: object) -> Callable[[Profile], DataManager]:
    """A manager that silently runs another variant while claiming the declared profile."""

    def build(profile: Profile) -> DataManager:
        return DataManager(dataclasses.replace(profile, **axes))  # type: ignore[arg-type]

    return build


class BlobDropsMemory(DataManager):
    @staticmethod
    def _record(inst: Instance) -> blobfmt.InstanceRecord:
        return dataclasses.replace(DataManager._record(inst), pages=())


class IsolationLeak(DataManager):
    def _new_vm(self, vm_id: int, ecam_base: int | None) -> VmElement:
        vm = super()._new_vm(vm_id, ecam_base)
        if self._vms:
            first = self._vms[min(self._vms)]
            vm.memory_table = first.memory_table
        return vm


class ResetForgetsCommand(DataManager):
    def _reset_instance(self, vm: VmElement, inst: Instance, keep_sticky: bool) -> None:
        command = bytes(inst.config[COMMAND : COMMAND + 2])
        super()._reset_instance(vm, inst, keep_sticky)
        self._config_store(vm, inst, COMMAND, command)


class ResetKeepsData(DataManager):
    def _reset_instance(self, vm: VmElement, inst: Instance, keep_sticky: bool) -> None:
        data = inst.data
        super()._reset_instance(vm, inst, keep_sticky)
        inst.data = data


class ResetVmKeepsCf8(DataManager):
    def reset_vm(self, vm_id: int) -> None:
        cf8 = self._vm(vm_id).cf8
        super().reset_vm(vm_id)
        self._vms[vm_id].cf8 = cf8


class UnplugLeavesRoutes(DataManager):
    def unplug(self, vm_id: int, bdf: Bdf) -> None:
        vm = self._vm(vm_id)
        self._instance(vm, bdf)
        del vm.config_table[bdf]


class AbsentReadsZero(DataManager):
    def _config_access(
        self, vm: VmElement, bdf: Bdf, offset: int, length: int, payload: bytes | None
    ) -> bytes:
        if bdf not in vm.config_table and payload is None:
            return bytes(length)
        return super()._config_access(vm, bdf, offset, length, payload)


class CamIgnoresEnable(DataManager):
    def _cam_data(self, vm: VmElement, port: int, payload: bytes | None, length: int) -> bytes:
        saved = vm.cf8
        vm.cf8 |= 0x8000_0000
        try:
            return super()._cam_data(vm, port, payload, length)
        finally:
            vm.cf8 = saved


class CamFunctionBits(DataManager):
    def _cam_data(self, vm: VmElement, port: int, payload: bytes | None, length: int) -> bytes:
        saved = vm.cf8
        vm.cf8 &= ~0x400  # function bit 2 lost
        try:
            return super()._cam_data(vm, port, payload, length)
        finally:
            vm.cf8 = saved


class EcamBusShift(DataManager):
    def _ecam_data(self, vm: VmElement, address: int, payload: bytes | None, length: int) -> bytes:
        assert vm.ecam_base is not None
        rel = address - vm.ecam_base
        shifted = vm.ecam_base + (((rel >> 20) << 19) | (rel & 0x7FFFF)) if rel >> 20 else address
        return super()._ecam_data(vm, shifted, payload, length)


class RestoreAcceptsIdentity(DataManager):
    def _instance_from(self, rec: blobfmt.InstanceRecord, bdf: Bdf, dtype: DeviceType) -> Instance:
        lay = self._layout(dtype)
        fixed_clear = bytes(
            (c & ~f) | (i & f) for c, i, f in zip(rec.config, lay.image, lay.fixed, strict=False)
        )
        inst = super()._instance_from(dataclasses.replace(rec, config=fixed_clear), bdf, dtype)
        inst.config[:] = rec.config[: len(inst.config)]
        return inst


class RestoreHalfApplies(DataManager):
    def restore(self, vm_id: int, bdf: Bdf, blob: bytes) -> None:
        inst = self._instance(self._vm(vm_id), bdf)
        try:
            record = blobfmt.decode_instance(blob)
        except Exception:
            record = None
        if record is not None and len(record.config) == len(inst.config):
            inst.config[0x3C] = record.config[0x3C]  # interrupt line applied before validation
        super().restore(vm_id, bdf, blob)


class SnapshotTrustsInstances(DataManager):
    """Restoring a snapshot checks its own digest but not its instance blobs' (R-BLOB-006)."""

    def restore_vm(self, vm_id: int, snapshot: bytes) -> None:
        try:
            record = blobfmt.decode_snapshot(snapshot)
        except BlobError:
            record = None
        if record is not None:
            resealed = tuple(
                (packed, blob[:-32] + hashlib.sha256(blob[:-32]).digest()) for packed, blob in record.devices
            )
            snapshot = blobfmt.encode_snapshot(dataclasses.replace(record, devices=resealed))
        super().restore_vm(vm_id, snapshot)


class MisalignedConfigAccepted(DataManager):
    @staticmethod
    def _check_config_access(bdf: Bdf, offset: int, width: int) -> None:
        if offset % 4 + width > 4 and width in (2, 4) and 0 <= offset <= 0xFFF - width:
            return
        DataManager._check_config_access(bdf, offset, width)

    def _config_access(
        self, vm: VmElement, bdf: Bdf, offset: int, length: int, payload: bytes | None
    ) -> bytes:
        if offset % 4 + length > 4:
            first = 4 - offset % 4
            head = None if payload is None else payload[:first]
            tail = None if payload is None else payload[first:]
            return super()._config_access(vm, bdf, offset, first, head) + super()._config_access(
                vm, bdf, offset + first, length - first, tail
            )
        return super()._config_access(vm, bdf, offset, length, payload)


class BigEndianMmio(DataManager):
    def mmio_read(self, vm_id: int, address: int, width: int) -> int:
        value = super().mmio_read(vm_id, address, width)
        return int.from_bytes(value.to_bytes(width, "little"), "big")


class WideValuesMasked(DataManager):
    def mmio_write(self, vm_id: int, address: int, width: int, value: int) -> None:
        if type(value) is int and value >= 1 << (8 * width):
            value &= (1 << (8 * width)) - 1
        super().mmio_write(vm_id, address, width, value)


class ExpressExtendedOnes(DataManager):
    def _config_access(
        self, vm: VmElement, bdf: Bdf, offset: int, length: int, payload: bytes | None
    ) -> bytes:
        if offset >= 0x100 and payload is None and bdf in vm.config_table:
            return b"\xff" * length
        return super()._config_access(vm, bdf, offset, length, payload)


class DuplicateVmReplaces(DataManager):
    def create_vm(self, vm_id: int, *, ecam_base: int | None = 0xB000_0000) -> None:
        if type(vm_id) is int:
            self._vms.pop(vm_id, None)
        super().create_vm(vm_id, ecam_base=ecam_base)


# ---------------------------------------------------------------- register maps (R-REG-*)


class Rw1cClearsAll(RegisterMap):
    def _apply_write(self, c: CompiledRegister, old: int, value: int, covered: int) -> int:
        return super()._apply_write(c, old, value, covered) & ~(c.rw1c & covered)


class WideResetLowHalf(RegisterMap):
    def _reset_value(self, reg: BarRegister) -> int:
        return reg.reset & 0xFFFF_FFFF


class EffectIgnoresTrigger(RegisterMap):
    def _apply_effect(self, effect: Effect, target: int, written: int) -> int:
        return super()._apply_effect(dataclasses.replace(effect, when=0), target, written)


class ReadToClearKeeps(RegisterMap):
    def _after_read(self, c: CompiledRegister, value: int, covered: int) -> int:
        return value


class Rw1sAsRw(RegisterMap):
    def _apply_write(self, c: CompiledRegister, old: int, value: int, covered: int) -> int:
        plain = dataclasses.replace(c, rw=c.rw | c.rw1s, rw1s=0)
        return super()._apply_write(plain, old, value, covered)


class BridgeLimitGranularity(DataManager):
    """Memory window limits end in 0xfff instead of 0xfffff: 4 KiB granularity (R-BRG-005)."""

    def _forwarding(self, bridge: Instance) -> tuple[Ranges, Ranges]:
        ports, memory = super()._forwarding(bridge)
        return ports, tuple((start, stop - 0xFF000) for start, stop in memory if stop - 0xFF000 > start)


class BridgePrefetchUpperIgnored(DataManager):
    """A 64-bit prefetchable window ignores its upper 32 bits (R-BRG-005), so it forwards below 4 GiB what it
    must not (R-BRG-006)."""

    def _forwarding(self, bridge: Instance) -> tuple[Ranges, Ranges]:
        config = bytearray(bridge.config)
        config[0x28:0x30] = bytes(8)
        return super()._forwarding(dataclasses.replace(bridge, config=config))


class BridgeRangeOffByOne(DataManager):
    """A bridge's bus range leaves out its subordinate bus number (R-BRG-003)."""

    @staticmethod
    def _route_numbers(root_bridges: list[Instance], claimed: set[int]) -> dict[int, Instance]:
        found: dict[int, Instance] = {}
        for number in set(range(256)) - claimed:
            level: list[Instance] = root_bridges
            while (bridge := next((b for b in level if claims(b.config, number)
                                   and number != b.config[0x1A]), None)) is not None:  # fmt: skip
                if bridge.config[0x19] == number:
                    found[number] = bridge
                    break
                level = bridge.sub_bridges
        return found


class BridgeResetShallow(DataManager):
    """Secondary bus reset resets the functions on the secondary bus only, not those further below
    (R-BRG-007)."""

    def _secondary_bus_reset(self, vm: VmElement, bridge: Instance) -> None:
        for inst in list(bridge.children.values()):
            self._reset_instance(vm, inst, keep_sticky=True)
        self._reroute(vm)


def _registers_run(bug: type[RegisterMap]) -> Callable[[Profile], DataManager]:
    """A manager whose plugged types' register maps run ``bug`` (same declaration, so the same
    fingerprint: a blob or a define_type cannot tell them apart)."""

    class RegisterBug(DataManager):
        def plug(self, vm_id: int, bdf: Bdf, dtype: DeviceType) -> None:
            super().plug(vm_id, bdf, _with_map_class(dtype, bug))

    return RegisterBug


_REBUILT: dict[tuple[bytes, type[RegisterMap]], DeviceType] = {}


def _with_map_class(dtype: DeviceType, bug: type[RegisterMap]) -> DeviceType:
    regmap = dtype.behaviour if isinstance(dtype, DeviceType) else None
    if not isinstance(regmap, RegisterMap) or isinstance(regmap, bug):
        return dtype
    key = (dtype.fingerprint(), bug)
    if key not in _REBUILT:
        _REBUILT[key] = dataclasses.replace(dtype, behaviour=bug(regmap.registers))
    return _REBUILT[key]


MUTANTS: tuple[Mutant, ...] = (
    Mutant("bar-size-off-by-one", "BAR sizing reads back half the size", ("R-BAR-003",),
           _with_layout(_bar_half_size)),
    Mutant("rw1c-as-rw", "RW1C bits are plainly writable", ("R-CFG-001", "R-CFG-006", "R-CFG-012"),
           _with_layout(_rw1c_as_rw)),
    Mutant("rw1c-never-clears", "RW1C bits ignore written ones", ("R-CFG-006", "R-CFG-001", "R-CFG-012"),
           _with_layout(_rw1c_ignored)),
    Mutant("subsystem-writable", "subsystem IDs are writable", ("R-CFG-002",),
           _with_layout(_identity_writable)),
    Mutant("cache-line-read-only", "cache line size ignores writes", ("R-CFG-007",),
           _with_layout(_cache_line_read_only)),
    Mutant("decode-ignores-command", "BARs decode whatever the command register says",
           ("R-DEC-001", "R-DEC-002", "R-DEC-003"), _window_mutant(_decode_ignores_command)),
    Mutant("upper-half-ignored", "64-bit BARs decode at their lower dword only", ("R-BAR-005", "R-DEC-007"),
           _window_mutant(_upper_half_ignored)),
    Mutant("io-decode-uses-memory-bit", "I/O BARs follow the memory enable bit", ("R-DEC-001",),
           _window_mutant(_io_uses_memory_bit)),
    Mutant("rom-ignores-enable", "the ROM decodes without its enable bit", ("R-DEC-003",),
           _window_mutant(_rom_ignores_enable)),
    Mutant("address-zero-decodes", "a BAR at address zero decodes", ("R-DEC-004",),
           _window_mutant(_zero_address_decodes)),
    Mutant("io-limit-unchecked", "I/O BARs past 64 KiB decode, wrapped", ("R-DEC-006",),
           _window_mutant(_no_limit_check)),
    Mutant("straddle-start-address", "straddling accesses go to the start address's BAR only",
           ("R-ACC-005",), _variant(straddle=Straddle.START_ADDRESS)),
    Mutant("unmapped-mmio-zero", "unmapped MMIO reads zero", ("R-ACC-004",),
           _variant(unmapped_mmio_read=UnmappedMmioRead.ZEROS)),
    Mutant("cf8-latches-low-bits", "0xCF8 keeps its low bits", ("R-CAM-002",),
           _variant(cf8_low_bits=Cf8LowBits.LATCHED)),
    Mutant("overlap-last-mapped", "overlapping BARs: the last mapped wins", ("R-DEC-008",),
           _variant(overlap=Overlap.LAST_MAPPED)),
    Mutant("bar-move-deferred", "a BAR moved while decoding moves late", ("R-DEC-005",),
           _variant(bar_move_while_decoding=BarMoveWhileDecoding.DEFERRED)),
    Mutant("blob-drops-memory", "saved blobs lose BAR contents", ("R-SR-002", "R-BLOB-003"),
           lambda p: BlobDropsMemory(p)),
    Mutant("isolation-leak", "VMs share one memory table", ("R-DS-008",), lambda p: IsolationLeak(p)),
    Mutant("reset-forgets-command", "reset keeps the command register", ("R-RST-001",),
           lambda p: ResetForgetsCommand(p)),
    Mutant("reset-keeps-data", "reset keeps BAR contents", ("R-RST-002",), lambda p: ResetKeepsData(p)),
    Mutant("reset-vm-keeps-cf8", "VM reset keeps 0xCF8", ("R-RST-003",), lambda p: ResetVmKeepsCf8(p)),
    Mutant("unplug-leaves-routes", "unplug leaves the device's table entries (and a bridge in the tree)",
           ("R-HP-002", "R-BRG-002"), lambda p: UnplugLeavesRoutes(p)),
    Mutant("absent-reads-zero", "absent functions read zero", ("R-ACC-006",), lambda p: AbsentReadsZero(p)),
    Mutant("cam-ignores-enable", "0xCFC works with the enable bit clear", ("R-CAM-005",),
           lambda p: CamIgnoresEnable(p)),
    Mutant("cam-function-bit", "0xCF8 function bit 10 is lost", ("R-CAM-004",), lambda p: CamFunctionBits(p)),
    Mutant("ecam-bus-shift", "ECAM takes the bus from bits 26:19", ("R-ECAM-002",),
           lambda p: EcamBusShift(p)),
    Mutant("restore-accepts-identity",
           "restore lets identity bytes change, an accepted revision's too (and skips the size check)",
           ("R-SR-004", "R-SR-005", "R-MIG-002"),
           lambda p: RestoreAcceptsIdentity(p)),
    Mutant("snapshot-trusts-instances", "restoring a snapshot skips its instance blobs' digests",
           ("R-BLOB-006",), lambda p: SnapshotTrustsInstances(p)),
    Mutant("restore-half-applies", "a rejected restore changes the interrupt line", ("R-SR-007",),
           lambda p: RestoreHalfApplies(p)),
    Mutant("misaligned-config-accepted", "configuration accesses may cross a dword", ("R-ACC-003",),
           lambda p: MisalignedConfigAccepted(p)),
    Mutant("big-endian-mmio", "MMIO reads are big-endian", ("R-ACC-007",), lambda p: BigEndianMmio(p)),
    Mutant("wide-values-masked", "MMIO values too wide are truncated, not rejected", ("R-ACC-008",),
           lambda p: WideValuesMasked(p)),
    Mutant("express-extended-ones", "extended configuration space reads all ones", ("R-CFG-009",),
           lambda p: ExpressExtendedOnes(p)),
    Mutant("duplicate-vm-replaces", "creating an existing VM replaces it, even when the creation is rejected",
           ("R-DS-001", "R-ERR-001"),
           lambda p: DuplicateVmReplaces(p)),
    Mutant("register-rw1c-clears-all", "a write to an RW1C register clears every bit it covers",
           ("R-REG-004",), _registers_run(Rw1cClearsAll)),
    Mutant("register-reset-low-half", "8-byte registers reset only their lower dword", ("R-REG-010",),
           _registers_run(WideResetLowHalf)),
    Mutant("register-effect-ignores-trigger", "set and clear side effects act on every write, whatever their "
           "trigger", ("R-REG-009",), _registers_run(EffectIgnoresTrigger)),
    Mutant("register-rc-keeps", "read-to-clear bits keep their value when read", ("R-REG-006",),
           _registers_run(ReadToClearKeeps)),
    Mutant("register-rw1s-as-rw", "RW1S bits take the written value, zeros clearing them", ("R-REG-005",),
           _registers_run(Rw1sAsRw)),
    Mutant("bridge-limit-granularity", "bridge memory window limits have 4 KiB granularity, not 1 MiB",
           ("R-BRG-005", "R-BRG-006"), lambda p: BridgeLimitGranularity(p)),
    Mutant("bridge-prefetch-upper-ignored", "a 64-bit prefetchable window ignores its upper half",
           ("R-BRG-006", "R-BRG-005"), lambda p: BridgePrefetchUpperIgnored(p)),
    Mutant("bridge-range-off-by-one", "a bridge's bus range leaves out its subordinate number",
           ("R-BRG-003",), lambda p: BridgeRangeOffByOne(p)),
    Mutant("bridge-reset-shallow", "secondary bus reset does not reach below the secondary bus",
           ("R-BRG-007",), lambda p: BridgeResetShallow(p)),
)  # fmt: skip

BY_NAME = {m.name: m for m in MUTANTS}

BRIDGE_MUTANT_NAMES = ("bridge-limit-granularity", "bridge-prefetch-upper-ignored", "bridge-range-off-by-one",
                       "bridge-reset-shallow")  # fmt: skip
BRIDGE_MUTANTS: tuple[Mutant, ...] = tuple(BY_NAME[name] for name in BRIDGE_MUTANT_NAMES)
"""The planted bridge bugs (R-BRG-*), members of :data:`MUTANTS`: the bridge cases kill each, and blame
names its bridge rule first (forwarding R-BRG-006 for a window, routing R-BRG-003 for the bus range,
R-BRG-007 for the secondary bus reset)."""


def mutant_adapter(argument: str | None) -> ModelAdapter:
    """Factory for ``--adapter mutant:NAME``."""
    mutant = BY_NAME.get(argument or "")
    if mutant is None:
        from vpcid.adapters.base import AdapterUnavailable

        raise AdapterUnavailable(f"name a planted bug: mutant:NAME, one of {', '.join(BY_NAME)}")
    return mutant.adapter()
