"""The PCI ID database (``pci.ids``) and the names ``lspci`` prints from it.

:class:`PciIds` reads the database the pciutils way: vendors with their
devices and per-device subsystems, generic subsystem blocks (``S``),
classes (``C``) with subclasses and programming interfaces; other
top-level blocks are skipped. :class:`IdNames` turns numbers into the text
``lspci`` prints for its ``-n`` level (0: names, 1: numbers, 2: both),
including its fallbacks for unknown IDs ("Device 1234:11e8", "Class ff00")
and its truncation of over-long names.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from vpcid.conformance.inputs import read_input
from vpcid.model.errors import VpcidError

DEFAULT_PCI_IDS = Path("/usr/share/misc/pci.ids")
"""Where Debian's ``pci.ids`` package puts the database (and where lspci looks)."""
PCI_IDS_LIMIT = 32 << 20
"""The largest database read: today's file is about 1.4 MB."""
MAX_LINE = 1024
"""pciutils' line limit; a longer line is an error, as there."""
NAME_BUFFER = 128
"""lspci formats class and device names into 128-byte buffers ..."""
SUBSYSTEM_BUFFER = 256
"""... and subsystem names into 256-byte ones; longer text ends in "..."."""


_Key = TypeVar("_Key", int, tuple[int, int], tuple[int, int, int], tuple[int, int, int, int])


class PciIdsError(VpcidError, ValueError):
    """The ID database is not in the ``pci.ids`` format; the message names the file and line."""

    kind = "bad-pci-ids"


@dataclass(slots=True)
class PciIds:
    """Names by ID, as read from a ``pci.ids`` file (first entry wins; a duplicate is an error)."""

    source: str = "<pci.ids text>"
    vendors: dict[int, str] = field(default_factory=dict)
    devices: dict[tuple[int, int], str] = field(default_factory=dict)
    subsystems: dict[tuple[int, int, int, int], str] = field(default_factory=dict)
    generic_subsystems: dict[tuple[int, int], str] = field(default_factory=dict)
    classes: dict[int, str] = field(default_factory=dict)
    subclasses: dict[tuple[int, int], str] = field(default_factory=dict)
    prog_ifs: dict[tuple[int, int, int], str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> PciIds:
        """The database in the file ``path``; :class:`PciIdsError` if it cannot be read or parsed."""
        data = read_input(path, PCI_IDS_LIMIT, PciIdsError)
        # Names are shown, never compared: a byte that is not UTF-8 becomes U+FFFD, not an error.
        return cls.parse(data.decode("utf-8", errors="replace"), source=str(path))

    @classmethod
    def parse(cls, text: str, *, source: str = "<pci.ids text>") -> PciIds:
        """The database in ``text``; errors name ``source`` and the line, as pciutils does."""
        database = cls(source=source)
        _Parser(database).run(text)
        return database

    @staticmethod
    def load(path: Path | None) -> PciIds | None:
        """The database at ``path`` (default :data:`DEFAULT_PCI_IDS`), or None when there is no such file.

        A file read before and unchanged since (same size and modification time) is not parsed again.
        """
        path = DEFAULT_PCI_IDS if path is None else path
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PciIdsError(f"{path}: cannot read: {exc.strerror or exc}") from None
        return _read_unchanged(path, info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_unchanged(path: Path, size: int, modified_ns: int) -> PciIds:
    """:meth:`PciIds.read`, remembered per file version (the database is never changed once read)."""
    return PciIds.read(path)


class _Parser:
    """pciutils' ``id_parse_list``: tab depth gives the level, the top-level letter the block."""

    def __init__(self, database: PciIds) -> None:
        self.db = database
        self.block = ""  # "vendor", "device", "generic", "class", "subclass" or "skip"
        self.ids: tuple[int, ...] = ()
        self.line = 0

    def fail(self, problem: str) -> PciIdsError:
        return PciIdsError(f"{problem} at {self.db.source}, line {self.line}")

    def run(self, text: str) -> None:
        for self.line, raw in enumerate(_lines(text), start=1):
            if len(raw.encode("utf-8", errors="replace")) >= MAX_LINE - 1:
                raise self.fail("Line too long")
            line = raw[:-1] if raw.endswith((" ", "\t")) else raw
            if not line.strip(" \t") or line.lstrip(" \t").startswith("#"):
                continue
            depth = len(line) - len(line.lstrip("\t"))
            self.entry(depth, line[depth:])

    def entry(self, depth: int, text: str) -> None:
        if depth == 0:
            self.top(text)
        elif self.block == "skip":
            return
        elif depth == 1:
            self.nested_once(text)
        elif depth == 2:
            self.nested_twice(text)
        else:
            raise self.fail("Parse error")

    def top(self, text: str) -> None:
        if text.startswith("C "):
            klass = self.hex(text[2:4], text[4:5])
            self.block, self.ids = "class", (klass,)
            self.insert(self.db.classes, klass, text[5:])
        elif text.startswith("S "):
            vendor = self.hex(text[2:6], None)
            if len(text) != 6:
                raise self.fail("Parse error")
            if vendor not in self.db.vendors:
                raise self.fail("Vendor does not exist")
            self.block, self.ids = "generic", (vendor,)
        elif len(text) > 1 and "A" <= text[0] <= "Z" and text[1] == " ":
            self.block = "skip"  # a block pciutils does not know (reserved for future use)
        else:
            vendor = self.hex(text[0:4], text[4:5])
            self.block, self.ids = "vendor", (vendor,)
            self.insert(self.db.vendors, vendor, text[5:])

    def nested_once(self, text: str) -> None:
        if self.block in ("vendor", "device"):
            device = self.hex(text[0:4], text[4:5])
            self.block, self.ids = "device", (self.ids[0], device)
            self.insert(self.db.devices, self.ids, text[5:])
        elif self.block == "generic":
            device = self.hex(text[0:4], text[4:5])
            self.insert(self.db.generic_subsystems, (self.ids[0], device), text[5:])
        elif self.block in ("class", "subclass"):
            subclass = self.hex(text[0:2], text[2:3])
            self.block, self.ids = "subclass", (self.ids[0], subclass)
            self.insert(self.db.subclasses, self.ids, text[3:])
        else:
            raise self.fail("Parse error")

    def nested_twice(self, text: str) -> None:
        if self.block == "device":
            vendor, device = self.ids[0], self.ids[1]
            sub_vendor = self.hex(text[0:4], text[4:5])
            sub_device = self.hex(text[5:9], text[9:10])
            self.insert(self.db.subsystems, (vendor, device, sub_vendor, sub_device), text[10:])
        elif self.block == "subclass":
            prog_if = self.hex(text[0:2], text[2:3])
            self.insert(self.db.prog_ifs, (self.ids[0], self.ids[1], prog_if), text[3:])
        else:
            raise self.fail("Parse error")

    def hex(self, digits: str, separator: str | None) -> int:
        """A fixed-width hex field, then a space or tab (``separator`` None: nothing may follow)."""
        if len(digits) not in (2, 4) or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise self.fail("Parse error")
        if separator is not None and (len(separator) != 1 or separator not in " \t"):
            raise self.fail("Parse error")
        return int(digits, 16)

    def insert(self, table: dict[_Key, str], key: _Key, rest: str) -> None:
        name = rest.lstrip(" \t")
        if not name:
            raise self.fail("Parse error")
        if key in table:
            raise self.fail("Duplicate entry")
        table[key] = name


def _lines(text: str) -> Iterator[str]:
    """Lines without their ends; a lone CR also ends a line's text, as in pciutils."""
    for line in text.split("\n"):
        yield line.split("\r", 1)[0]


@dataclass(frozen=True, slots=True)
class IdNames:
    """pciutils' ``pci_lookup_name`` for lspci: ``numeric`` is the count of ``-n`` (0, 1 or 2+)."""

    database: PciIds | None
    numeric: int = 0

    @property
    def mixed(self) -> bool:
        return self.numeric >= 2

    @property
    def numbers_only(self) -> bool:
        return self.numeric == 1

    def _db(self) -> PciIds | None:
        return None if self.numbers_only else self.database

    def vendor_device(self, vendor: int, device: int) -> str:
        """``Intel Corporation 82540EM Gigabit Ethernet Controller`` (or with ``[8086:100e]``, or numbers)."""
        db = self._db()
        vendor_name = db.vendors.get(vendor) if db else None
        device_name = db.devices.get((vendor, device)) if db else None
        return self._pair(vendor_name, device_name, f"{vendor:04x}:{device:04x}", NAME_BUFFER)

    def subsystem(self, vendor: int, device: int, sub_vendor: int, sub_device: int) -> str:
        """The Subsystem line's text: the subsystem's vendor and its name for this device."""
        db = self._db()
        vendor_name = db.vendors.get(sub_vendor) if db else None
        name = self._subsystem_name(db, vendor, device, sub_vendor, sub_device) if db else None
        return self._pair(vendor_name, name, f"{sub_vendor:04x}:{sub_device:04x}", SUBSYSTEM_BUFFER)

    @staticmethod
    def _subsystem_name(db: PciIds, vendor: int, device: int, sub_vendor: int, sub_device: int) -> str | None:
        name = None
        if vendor > 0 and device > 0:
            name = db.subsystems.get((vendor, device, sub_vendor, sub_device))
        if name is None:
            name = db.generic_subsystems.get((sub_vendor, sub_device))
        if name is None and (vendor, device) == (sub_vendor, sub_device):
            name = db.devices.get((vendor, device))
        return name

    def device_class(self, device_class: int) -> str:
        """``Ethernet controller``; a class without a listed subclass shows its number too."""
        number = f"{device_class:04x}"
        db = self._db()
        name = db.subclasses.get((device_class >> 8, device_class & 0xFF)) if db else None
        mixed = self.mixed
        if name is None and db is not None:
            name = db.classes.get(device_class >> 8)
            if name is not None:
                mixed = True
        return self._single(name, number, "Class", NAME_BUFFER, mixed=mixed)

    def prog_if(self, device_class: int, prog_if: int) -> str | None:
        """The programming interface's name, or None; looked up whatever ``-n`` says, as lspci does."""
        db = self.database
        name = db.prog_ifs.get((device_class >> 8, device_class & 0xFF, prog_if)) if db else None
        if name is None and device_class == 0x0101 and not prog_if & 0x70:
            name = _ide_prog_if(prog_if)
        return None if name is None else _truncate(name, NAME_BUFFER)

    def _single(self, name: str | None, number: str, unknown: str, size: int, *, mixed: bool) -> str:
        if self.numbers_only:
            text = number
        elif name is None:
            text = f"{unknown} [{number}]" if mixed else f"{unknown} {number}"
        else:
            text = f"{name} [{number}]" if mixed else name
        return _truncate(text, size)

    def _pair(self, vendor: str | None, device: str | None, number: str, size: int) -> str:
        if self.numbers_only:
            text = number
        elif self.mixed:
            if vendor and device:
                text = f"{vendor} {device} [{number}]"
            elif not vendor:
                text = f"Device [{number}]"
            else:
                text = f"{vendor} Device [{number}]"
        elif vendor and device:
            text = f"{vendor} {device}"
        elif not vendor:
            text = f"Device {number}"
        else:
            text = f"{vendor} Device {number[5:]}"
        return _truncate(text, size)


def _ide_prog_if(prog_if: int) -> str:
    """pciutils spells out an IDE controller's mode bits when pci.ids has no name for them."""
    bits = ((0x80, "Master"), (0x08, "SecP"), (0x04, "SecO"), (0x02, "PriP"), (0x01, "PriO"))
    return " ".join(name for bit, name in bits if prog_if & bit)


def _truncate(text: str, size: int) -> str:
    """snprintf into ``size`` bytes, then "..." over the last three kept, as pciutils' format_name does."""
    data = text.encode("utf-8")
    if len(data) < size:
        return text
    return data[: size - 4].decode("utf-8", errors="ignore") + "..."
