"""Reading users' files safely: bounded, regular files only, typed errors (R-ERR-001).

Every reader of a user-supplied file goes through :func:`read_input`, then
:func:`decode_text` and :func:`parse_json` where it applies, so that a
FIFO, a device, a huge file, bytes that are not UTF-8, JSON nested too
deeply or integers too long become one clear error naming the file, never a
traceback or a hang.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from vpcid.model.errors import VpcidError

MIB = 1 << 20


class InputError(VpcidError, ValueError):
    """A user-supplied file cannot be read as what it should be."""

    kind = "bad-input"


def read_input(path: Path, limit: int, error: type[VpcidError] = InputError) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; else ``error`` saying why."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: not a regular file")
    if info.st_size > limit:
        raise error(f"{path}: {info.st_size} bytes is more than the {limit}-byte limit for this file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{path}: more than the {limit}-byte limit for this file")
    return data


def decode_text(data: bytes, where: object, error: type[VpcidError] = InputError) -> str:
    """``data`` as UTF-8 text; the error names the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{where}: byte {exc.start} is not UTF-8 text") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str, where: object, error: type[VpcidError] = InputError) -> Any:
    """Parse JSON; NaN and Infinity, nesting too deep and integers too long are errors too."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:
        raise error(f"{where}: {exc}") from None
