"""Device-type files: the one reader and writer of spec/formats/device-type.md (R-DT-001, R-DT-002).

A file is validated against ``spec/formats/device-type.schema.json`` with
:mod:`jsonschema` before any type is built; the model's own checks then
reject inconsistent bytes, naming the byte. Writers produce the bytes form.
Behaviour names resolve through :data:`BAR_BEHAVIOURS` and
:data:`CONFIG_BEHAVIOURS`, then the ``vpcid.behaviours`` entry point group,
then ``package.module:attribute``; a type's ``bar_registers`` are its
register map (:func:`register_map`, R-REG-001), its BAR behaviour.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, cast

import jsonschema
from vpcid.conformance.inputs import MIB, decode_text, parse_json, read_input
from vpcid.conformance.traceability import spec_dir
from vpcid.model import (
    BarBehaviour,
    BarKind,
    BarSpec,
    BridgeRegisters,
    Capability,
    ConfigBehaviour,
    ConfigSpace,
    DeviceType,
    DeviceTypeError,
    ExtendedCapability,
    IoWindow,
    PrefetchWindow,
    Register,
    RegisterClass,
    RomSpec,
)
from vpcid.model.manager import type_difference
from vpcid.model.registers import REGISTER_MAP_NAME, Access, Action, BarRegister, Bits, Effect, RegisterMap

FORMAT_KEY = "vpcid-device-types"
FORMAT_VERSION = 1
FILE_LIMIT = 64 * MIB
"""Largest type file read: a 16 MiB ROM is 32 MiB of hex."""
ROW = 16
BEHAVIOUR_GROUP = "vpcid.behaviours"

BAR_BEHAVIOURS: dict[str, str | None] = {
    "memory": None,
    "edu": "vpcid.model.catalog:EduBehaviour",
    "msix": "vpcid.model.behaviour:MsixTable",
    "qemu-edu": "vpcid.adapters.qemu.behaviours:EduBehaviour",
    "qemu-pci-testdev": "vpcid.adapters.qemu.behaviours:TestdevBehaviour",
    "qemu-zero": "vpcid.adapters.qemu.behaviours:ZeroBehaviour",
}
"""BAR behaviour names the suite knows (R-DT-003), and where each lives; ``memory`` is the default."""
CONFIG_BEHAVIOURS: dict[str, str | None] = {
    "msi-mme-clamp": "vpcid.model.catalog:MsiMultipleMessageClamp",
    "qemu-flr": "vpcid.adapters.qemu.behaviours:FunctionLevelReset",
}
"""Configuration behaviour names the suite knows (R-DT-008), and where each lives."""


class TypeFileError(DeviceTypeError):
    """A device-type file is malformed or declares an inconsistent type (``bad-device-type``)."""


@dataclass(frozen=True)
class TypeEntry:
    """One type of a file, with what the file says around it."""

    dtype: DeviceType
    opaque: tuple[tuple[int, range], ...] = ()
    """(BAR index, offsets) whose contents no behaviour describes: the suite never accesses them."""
    source: str = ""
    notes: tuple[str, ...] = field(default=())


# ------------------------------------------------------------------ reading


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads((spec_dir() / "formats" / "device-type.schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def read_type_file(path: Path) -> tuple[TypeEntry, ...]:
    """Every type of the file at ``path``; :class:`TypeFileError` names the file and what is wrong."""
    text = decode_text(read_input(path, FILE_LIMIT, TypeFileError), path, TypeFileError)
    return parse_type_file(parse_json(text, path, TypeFileError), str(path))


def parse_type_file(document: object, where: str = "<types>") -> tuple[TypeEntry, ...]:
    """The types of a parsed file (its JSON value)."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(cast(Any, document)))
    if error is not None:
        place = "/".join(str(p) for p in error.absolute_path) or "top level"
        message = error.message if len(error.message) <= 300 else error.message[:300] + "..."
        raise TypeFileError(f"{where}: at {place}: {message}")
    assert isinstance(document, dict)
    entries: list[TypeEntry] = []
    seen: set[str] = set()
    for index, obj in enumerate(document["types"]):
        name = obj["name"]
        if name in seen:
            raise TypeFileError(f"{where}: type {name!r} is declared twice")
        seen.add(name)
        try:
            entries.append(_entry(obj))
        except DeviceTypeError as exc:
            raise TypeFileError(f"{where}: types/{index} ({name!r}): {exc}") from None
    return tuple(entries)


def parse_type_definition(definition: object, where: str = "definition") -> DeviceType:
    """One device-type object (a ``define_type`` operation's definition) as a type.

    Types are immutable, so a definition read before is not read again: the
    engines define the same types in every episode.
    """
    try:
        text = json.dumps(definition, sort_keys=True)
    except (TypeError, ValueError):
        return _parse_definition(definition, where)
    return _cached_definition(text, where)


@lru_cache(maxsize=64)
def _cached_definition(text: str, where: str) -> DeviceType:
    return _parse_definition(json.loads(text), where)


def _parse_definition(definition: object, where: str) -> DeviceType:
    entries = parse_type_file({FORMAT_KEY: FORMAT_VERSION, "types": [definition]}, where)
    return entries[0].dtype


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


def _rows(rows: Mapping[str, str], size: int, what: str) -> bytes:
    out = bytearray(size)
    for key, text in rows.items():
        offset = int(key, 16)
        if offset + ROW > size:
            raise DeviceTypeError(f"config {what} row {key} lies outside {size} bytes")
        out[offset : offset + ROW] = _hex(text)
    return bytes(out)


def _bars(items: Sequence[Any]) -> tuple[BarSpec | None, ...]:
    return tuple(
        None if b is None else BarSpec(BarKind(b["kind"]), _int(b["size"]), b.get("prefetchable", False))
        for b in items
    )


def _masks(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"body": _hex(obj["body"]), "writable": _hex(obj.get("writable", "")),
            "rw1c": _hex(obj.get("rw1c", "")),
            "offset": None if obj.get("offset") is None else _int(obj["offset"])}  # fmt: skip


def _bits(obj: Mapping[str, str]) -> tuple[Bits, ...]:
    return tuple(Bits.parse(text, Access(access)) for text, access in obj.items())


def register_map(items: Sequence[Mapping[str, Any]]) -> RegisterMap:
    """The register map of a type's ``bar_registers`` (R-REG-001; spec/formats/device-type.md)."""
    registers: list[BarRegister] = []
    for number, item in enumerate(items):
        try:
            effects = tuple(
                Effect(e["target"], Action(e["action"]), _int(e["mask"]), _int(e.get("when", 0)))
                for e in item.get("on_write", [])
            )
            registers.append(BarRegister(
                item["name"], item["bar"], _int(item["offset"]), item["width"],
                Access(item.get("access", "rw")), _int(item.get("reset", 0)), _bits(item.get("bits", {})),
                effects,
            ))  # fmt: skip
        except DeviceTypeError as exc:
            raise DeviceTypeError(f"bar_registers/{number}: {exc}") from None
    return RegisterMap(registers)


def _behaviour_of(obj: Mapping[str, Any]) -> BarBehaviour | None:
    """The BAR behaviour a type object declares: its register map, or a behaviour by name."""
    name = obj.get("behaviour", "memory")
    if "bar_registers" in obj:
        if name not in ("memory", REGISTER_MAP_NAME) or ("behaviour" in obj and name == "memory"):
            raise DeviceTypeError(
                f"a type with bar_registers has the register map as its BAR behaviour, not {name!r}: "
                f"leave behaviour out or write {REGISTER_MAP_NAME!r}"
            )
        return register_map(obj["bar_registers"])
    if name == REGISTER_MAP_NAME:
        raise DeviceTypeError(f"behaviour {REGISTER_MAP_NAME!r} needs the registers: declare bar_registers")
    return bar_behaviour(name)


def _entry(obj: Mapping[str, Any]) -> TypeEntry:
    name = obj["name"]
    bars = _bars(obj.get("bars", []))
    rom_obj = obj.get("rom")
    rom = None if rom_obj is None else RomSpec(_int(rom_obj["size"]), _hex(rom_obj.get("contents", "")))
    behaviour = _behaviour_of(obj)
    config_behaviour = None if obj.get("config_behaviour") is None else config_behaviour_named(
        obj["config_behaviour"]
    )  # fmt: skip
    if "config" in obj:
        config = obj["config"]
        size = config["size"]
        space = ConfigSpace(
            *(_rows(config.get(k, {}), size, k) for k in ("image", "wmask", "w1cmask", "sticky"))
        )
        dtype = DeviceType.from_space(name, space, bars, rom, behaviour, config_behaviour)
    else:
        ints: dict[str, Any] = {k: _int(obj[k]) for k in ("vendor_id", "device_id", "class_code", "revision",
                "subsystem_vendor_id", "subsystem_id", "interrupt_pin", "command_mask", "status_rw1c")
                if k in obj}  # fmt: skip
        dtype = DeviceType(
            name=name, bars=bars, rom=rom, behaviour=behaviour, config_behaviour=config_behaviour,
            express=obj.get("express", False), multifunction=obj.get("multifunction", False),
            capabilities=tuple(Capability(_int(c["id"]), **_masks(c)) for c in obj.get("capabilities", [])),
            extended_capabilities=tuple(
                ExtendedCapability(_int(c["id"]), _int(c["version"]), **_masks(c))
                for c in obj.get("extended_capabilities", [])
            ),
            registers=tuple(Register(_int(r["offset"]), r["width"], RegisterClass(r["class"]),
                                     _int(r.get("value", 0)), _bits(r.get("bits", {})))
                            for r in obj.get("registers", [])),
            bridge=None if "bridge" not in obj else _bridge(obj["bridge"]),
            sticky=_sticky_rows(obj.get("sticky"), obj.get("express", False)),
            **ints,
        )  # fmt: skip
    if obj.get("accepts"):  # R-MIG-001: earlier revisions whose blobs a restore accepts
        dtype = dataclasses.replace(dtype, accepts=tuple(sorted(bytes.fromhex(f) for f in obj["accepts"])))
    if "fingerprint" in obj and obj["fingerprint"] != dtype.fingerprint().hex():
        raise DeviceTypeError(
            f"fingerprint {obj['fingerprint']} does not match the declaration ({dtype.fingerprint().hex()})"
        )
    opaque = tuple((o["bar"], range(_int(o["start"]), _int(o["stop"]))) for o in obj.get("opaque", []))
    for bar, offsets in opaque:
        size = _bar_size(dtype, bar)
        if not 0 <= offsets.start < offsets.stop <= size:
            raise DeviceTypeError(
                f"opaque range {offsets.start:#x}-{offsets.stop:#x} is not inside BAR {bar}"
            )
    return TypeEntry(dtype, opaque, obj.get("source", ""), tuple(obj.get("notes", ())))


def _bridge(obj: Mapping[str, Any]) -> BridgeRegisters:
    """A bridge declaration of the fields form (R-BRG-001); absent keys take the defaults."""
    values: dict[str, Any] = {k: _int(obj[k]) for k in ("control_mask", "control_rw1c", "secondary_status",
                              "secondary_status_rw1c") if k in obj}  # fmt: skip
    return BridgeRegisters(
        io=IoWindow(obj.get("io", IoWindow.BITS16.value)),
        prefetchable=PrefetchWindow(obj.get("prefetchable", PrefetchWindow.BITS64.value)),
        latency_timer_writable=obj.get("latency_timer_writable", False),
        **values,
    )


def _sticky_rows(rows: Mapping[str, str] | None, express: bool) -> bytes:
    """The sticky mask of a type declared by fields (R-RST-004): its rows over the function's size."""
    if not rows:
        return b""
    return _rows(rows, 4096 if express else 256, "sticky")


def _bar_size(dtype: DeviceType, index: int) -> int:
    if index == 6:
        return dtype.rom.size if dtype.rom is not None else 0
    bar = dtype.bar(index)
    return bar.size if bar is not None else 0


def _resolve(name: str, known: Mapping[str, str | None], what: str) -> object | None:
    if name in known:
        target = known[name]
    else:
        found = [ep for ep in entry_points(group=BEHAVIOUR_GROUP) if ep.name == name]
        if found:
            target = found[0].value
        elif ":" in name and "." in name.partition(":")[0]:
            target = name
        else:
            raise DeviceTypeError(
                f"unknown {what} {name!r} (known: {', '.join(sorted(known))}; or package.module:attribute)"
            )
    if target is None:
        return None
    module_name, _, attribute = target.partition(":")
    try:
        found_obj: object = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise DeviceTypeError(f"{what} {name!r}: cannot load {target}: {exc}") from None
    return found_obj() if isinstance(found_obj, type) else found_obj


def bar_behaviour(name: str) -> BarBehaviour | None:
    """The BAR behaviour called ``name`` (None for ``memory``, the default) (R-DT-003)."""
    found = _resolve(name, BAR_BEHAVIOURS, "BAR behaviour")
    if found is not None and not all(hasattr(found, m) for m in ("name", "read", "write", "reset", "check")):
        raise DeviceTypeError(f"BAR behaviour {name!r} lacks name/read/write/reset/check")
    return cast("BarBehaviour | None", found)


def config_behaviour_named(name: str) -> ConfigBehaviour:
    """The configuration behaviour called ``name`` (R-DT-008)."""
    found = _resolve(name, CONFIG_BEHAVIOURS, "configuration behaviour")
    if found is None or not all(hasattr(found, m) for m in ("name", "config_write")):
        raise DeviceTypeError(f"configuration behaviour {name!r} lacks name/config_write")
    return cast(ConfigBehaviour, found)


def load_types(paths: Iterable[Path]) -> dict[str, TypeEntry]:
    """The types of several files by name (``--types FILE``, repeatable); a name twice is an error."""
    out: dict[str, TypeEntry] = {}
    declared_in: dict[str, Path] = {}
    for path in paths:
        for entry in read_type_file(path):
            name = entry.dtype.name
            if name in out:
                earlier = out[name].dtype
                how = (
                    "the same definition"
                    if earlier == entry.dtype
                    else f"a different definition ({type_difference(earlier, entry.dtype)})"
                )
                raise TypeFileError(
                    f"{path}: type {name!r} is already declared by {declared_in[name]}, {how}"
                )
            out[name] = entry
            declared_in[name] = path
    return out


# ------------------------------------------------------------------ writing


def _row_map(data: bytes) -> dict[str, str]:
    return {
        f"{o:03x}": " ".join(f"{b:02x}" for b in data[o : o + ROW])
        for o in range(0, len(data), ROW)
        if any(data[o : o + ROW])
    }


def type_json(entry: TypeEntry | DeviceType) -> dict[str, Any]:
    """One type in the bytes form, with its fingerprint (spec/formats/device-type.md)."""
    if isinstance(entry, DeviceType):
        entry = TypeEntry(entry)
    t = entry.dtype
    space = t.declared
    obj: dict[str, Any] = {"name": t.name, "fingerprint": t.fingerprint().hex()}
    if entry.source:
        obj["source"] = entry.source
    if entry.notes:
        obj["notes"] = list(entry.notes)
    obj["bars"] = [
        None if b is None else {"kind": b.kind.value, "size": b.size, "prefetchable": b.prefetchable}
        for b in t.bars
    ]
    obj["rom"] = None if t.rom is None else {"size": t.rom.size, "contents": t.rom.contents.hex()}
    obj["behaviour"] = t.behaviour.name if t.behaviour is not None else "memory"
    if isinstance(t.behaviour, RegisterMap):
        obj["bar_registers"] = [register_json(r) for r in t.behaviour.registers]
    obj["config_behaviour"] = t.config_behaviour.name if t.config_behaviour is not None else None
    if t.accepts:
        obj["accepts"] = sorted(f.hex() for f in t.accepts)
    if entry.opaque:
        obj["opaque"] = [{"bar": b, "start": r.start, "stop": r.stop} for b, r in entry.opaque]
    obj["config"] = {"size": len(space.image), "image": _row_map(space.image), "wmask": _row_map(space.wmask),
                     "w1cmask": _row_map(space.w1cmask)}  # fmt: skip
    if space.sticky:  # R-RST-004: written only for types that declare sticky bits
        obj["config"]["sticky"] = _row_map(space.sticky)
    return obj


def register_json(reg: BarRegister) -> dict[str, Any]:
    """One register of ``bar_registers`` as declared; numbers a person compares in hex."""
    obj: dict[str, Any] = {"name": reg.name, "bar": reg.bar, "offset": hex(reg.offset), "width": reg.width,
                           "access": reg.access.value, "reset": hex(reg.reset)}  # fmt: skip
    if reg.bits:
        obj["bits"] = {bits.label: bits.access.value for bits in reg.bits}
    if reg.on_write:
        obj["on_write"] = [
            {
                "target": e.target,
                "action": e.action.value,
                "mask": hex(e.mask),
                **({"when": hex(e.when)} if e.when else {}),
            }
            for e in reg.on_write
        ]
    return obj


def type_file_json(entries: Iterable[TypeEntry | DeviceType]) -> dict[str, Any]:
    """A whole file."""
    return {FORMAT_KEY: FORMAT_VERSION, "types": [type_json(e) for e in entries]}


def write_type_file(path: Path, entries: Iterable[TypeEntry | DeviceType]) -> None:
    """Write ``entries`` to ``path`` in the bytes form."""
    path.write_text(json.dumps(type_file_json(entries), indent=1) + "\n", encoding="utf-8")
