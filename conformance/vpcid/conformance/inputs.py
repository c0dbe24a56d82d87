"""Reading users' files safely: the one bounded, typed loading layer (R-ERR-001).

Every reader of a user-supplied file or stream goes through this module:

- :func:`read_input`: regular files only (never a FIFO, a device or a
  folder), at most a stated number of bytes;
- :func:`decode_text`: UTF-8, the error naming the first byte that is not;
- :func:`parse_json` and :func:`parse_toml`: nesting at most
  :data:`MAX_DEPTH` levels, integers at most :data:`MAX_INT_BITS` bits, no
  NaN or Infinity;
- :func:`validate`: a JSON Schema (``spec/formats/*.schema.json`` or one
  built in code) checked with :mod:`jsonschema`, the library the
  device-type format uses; the error names the field, what is wrong and,
  from the schema's ``description``, what to write instead;
- :func:`confined`: a relative path that must stay inside the folder it
  belongs to (a vector folder's cases).

Each failure raises the reader's own :class:`~vpcid.model.errors.VpcidError`
subclass with one line naming the file, so the command line reports it as
``vpcid: error: ...`` with exit status 2. Bad input never leaves a
traceback, a hang or unbounded memory behind.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, cast

import jsonschema
from vpcid.model.errors import ProfileError, VpcidError
from vpcid.model.profile import AXES, Profile

MIB = 1 << 20
MAX_DEPTH = 64
"""Deepest nesting of arrays and objects (tables) accepted in any user file; ours need at most 6."""
MAX_INT_BITS = 128
"""Widest integer accepted in any user file: every value the formats hold fits 64 bits, and traces
also carry values just past 2**64 to check they are rejected (R-ACC-008)."""
MAX_INT_DIGITS = 40
"""Decimal digits of the widest JSON integer read (2**128 has 39); longer ones are refused before
conversion, so a megabyte of digits costs nothing."""
PROFILE_LIMIT = MIB
"""Largest profile manifest read."""

ErrorType = type[VpcidError]


class InputError(VpcidError, ValueError):
    """A user-supplied file cannot be read as what it should be."""

    kind = "bad-input"


# ------------------------------------------------------------------ bytes and text


def read_input(path: Path, limit: int, error: ErrorType = InputError) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; else ``error`` saying why.

    A FIFO, a device, a socket or a folder is refused: the file is opened without
    blocking and examined through the open descriptor, so reading never waits for
    a writer, never follows a swap made after a check, and never grows without bound.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise error(f"{path}: cannot read: {_reason(exc)}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: not a regular file ({_file_kind(info.st_mode)}); give a file")
        raise error(f"{path}: {info.st_size} bytes is more than the {limit}-byte limit for this file")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = _read_bounded(handle, info.st_size, limit)
        except OSError as exc:
            raise error(f"{path}: cannot read: {_reason(exc)}") from None
    if len(data) > limit:
        raise error(f"{path}: more than the {limit}-byte limit for this file")
    return data


def _read_bounded(handle: BinaryIO, size: int, limit: int) -> bytes:
    """At most ``limit + 1`` bytes: as many as the file had when it was examined, plus what it grew
    since, in chunks, so that memory follows the file's size rather than the limit."""
    chunks = [handle.read(min(size, limit) + 1)]
    total = len(chunks[0])
    while total <= limit and len(chunks[-1]) > 0 and total > size:
        chunk = handle.read(min(MIB, limit + 1 - total))
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):  # fmt: skip
        if test(mode):
            return name
    return "not a file"


def decode_text(data: bytes, where: object, error: ErrorType = InputError) -> str:
    """``data`` as UTF-8 text; the error names the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{where}: byte {exc.start} is not UTF-8 text; save the file as UTF-8") from None


def read_text(path: Path, limit: int, error: ErrorType = InputError) -> str:
    """:func:`read_input` then :func:`decode_text`."""
    return decode_text(read_input(path, limit, error), path, error)


# ------------------------------------------------------------------ documents


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits is longer than any this format holds")
    return int(text)


def parse_json(text: str, where: object, error: ErrorType = InputError, *, lines: bool = True) -> Any:
    """Parse JSON; NaN and Infinity, nesting deeper than :data:`MAX_DEPTH` and integers wider
    than :data:`MAX_INT_BITS` bits are errors too. ``lines``: name the line of a syntax error
    (not for a one-line document such as a trace line)."""
    try:
        document = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno} column {exc.colno}" if lines else f"column {exc.colno}"
        raise error(f"{where}: {at}: not JSON ({exc.msg}); fix the syntax there") from None
    except RecursionError:
        raise error(f"{where}: nested more than {MAX_DEPTH} levels deep; flatten it") from None
    except ValueError as exc:
        raise error(f"{where}: {exc}") from None
    check_document(document, where, error)
    return document


def parse_toml(text: str, where: object, error: ErrorType = InputError) -> dict[str, Any]:
    """Parse TOML with the limits of :func:`parse_json`."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: not valid TOML: {exc}; fix the syntax there") from None
    except RecursionError:
        raise error(f"{where}: nested more than {MAX_DEPTH} levels deep; flatten it") from None
    except ValueError as exc:  # an integer too long to convert
        raise error(f"{where}: {exc}") from None
    check_document(document, where, error)
    return document


def check_document(document: object, where: object, error: ErrorType = InputError) -> None:
    """Depth and integer limits over a parsed document, walked without recursion."""
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise error(f"{where}: nested more than {MAX_DEPTH} levels deep; flatten it")
            items = value.values() if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
        elif type(value) is int and value.bit_length() > MAX_INT_BITS:
            raise error(f"{where}: integer {value:#x} is wider than {MAX_INT_BITS} bits")


def read_json_file(
    path: Path, limit: int, error: ErrorType = InputError, schema: str | Mapping[str, Any] | None = None
) -> Any:
    """A JSON file read, parsed and (with ``schema``) validated within the limits."""
    document = parse_json(read_text(path, limit, error), path, error)
    if schema is not None:
        validate(document, schema, path, error)
    return document


def read_toml_file(
    path: Path, limit: int, error: ErrorType = InputError, schema: str | Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A TOML file read, parsed and (with ``schema``) validated within the limits."""
    document = parse_toml(read_text(path, limit, error), path, error)
    if schema is not None:
        validate(document, schema, path, error)
    return document


# ------------------------------------------------------------------ schemas


def _strict_integer(_checker: object, instance: object) -> bool:
    return type(instance) is int


@cache
def _validator_class() -> Any:
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine("integer", _strict_integer)
    extend = cast(Callable[..., Any], jsonschema.validators.extend)  # untyped in types-jsonschema
    return extend(base, type_checker=checker)


@cache
def _file_validator(name: str) -> Any:
    from vpcid.conformance.traceability import spec_dir

    text = (spec_dir() / "formats" / name).read_text(encoding="utf-8")
    schema = json.loads(text)
    cls = _validator_class()
    cls.check_schema(schema)
    return cls(schema)


def _validator(schema: str | Mapping[str, Any]) -> Any:
    if isinstance(schema, str):
        return _file_validator(schema)
    cls = _validator_class()
    return cls(schema)


def validate(
    document: object, schema: str | Mapping[str, Any], where: object, error: ErrorType = InputError
) -> None:
    """Check ``document`` against ``schema`` (a file name under ``spec/formats`` or a schema).

    The message names the place (``waiver/0/requirement``), what is wrong and,
    when the schema describes the field, what it should hold.
    """
    found = jsonschema.exceptions.best_match(_validator(schema).iter_errors(cast(Any, document)))
    if found is None:
        return
    place = "/".join(str(p) for p in found.absolute_path) or "top level"
    message = found.message if len(found.message) <= 200 else found.message[:200] + "..."
    hint = found.schema.get("description") if isinstance(found.schema, Mapping) else None
    fix = f"; expected {hint}" if isinstance(hint, str) else ""
    raise error(f"{where}: at {place}: {' '.join(message.split())}{fix}")


# ------------------------------------------------------------------ paths


def confined(folder: Path, relative: object, where: object, error: ErrorType = InputError) -> Path:
    """``folder / relative``, refused unless ``relative`` is a relative path that stays inside
    ``folder`` once every ``..`` and symbolic link is followed."""
    if not isinstance(relative, str) or not relative or "\0" in relative:
        raise error(f"{where}: a path inside {folder} is a non-empty string, got {relative!r}")
    if os.path.isabs(relative) or relative.startswith("~"):
        raise error(f"{where}: {relative!r} is absolute; give a path relative to {folder}")
    target = folder / relative
    try:
        inside = target.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic link loop
        raise error(f"{where}: cannot resolve {relative!r}: {_reason(exc)}") from None
    if not inside:
        raise error(f"{where}: {relative!r} leads out of {folder}; keep every path inside it")
    return target


# ------------------------------------------------------------------ profiles


def profile_schema() -> dict[str, Any]:
    """The schema of a profile manifest (spec/formats/profile.md), from the axes the model has."""
    axes = {
        axis: {"enum": [v.value for v in enum], "description": f"one of {', '.join(v.value for v in enum)}"}
        for axis, enum in AXES.items()
    }
    return {
        "type": "object",
        "description": "a [profile] table and optionally an [implementation] table",
        "properties": {
            "implementation": {"type": "object", "description": "a table of free-form values"},
            "profile": {
                "type": "object",
                "properties": axes,
                "additionalProperties": False,
                "description": f"a table of axis = value pairs; axes: {', '.join(AXES)}",
            },
        },
        "additionalProperties": False,
    }


def read_profile(path: Path) -> Profile:
    """The profile a manifest file declares (TOML, or JSON when it starts with ``{``) (R-VAR-003)."""
    text = read_text(path, PROFILE_LIMIT, ProfileError)
    parse: Callable[[str, object, ErrorType], Any] = (
        parse_json if text.lstrip().startswith("{") else parse_toml
    )
    document = parse(text, path, ProfileError)
    validate(document, profile_schema(), path, ProfileError)
    try:
        return Profile.from_mapping(document.get("profile", {}))
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
