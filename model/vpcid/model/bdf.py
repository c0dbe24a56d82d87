"""Bus/device/function addresses, the keys of the configuration table (R-DS-003)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple, Self

from vpcid.model.errors import InvalidArgument

_BDF_TEXT = re.compile(r"([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])", re.ASCII)


class _BdfFields(NamedTuple):
    bus: int
    device: int
    function: int


class Bdf(_BdfFields):
    """A PCI function address: bus 0-255, device 0-31, function 0-7 (R-DS-003).

    A named tuple, checked on construction: the configuration table hashes
    one on every configuration access, and a tuple hashes and compares in C.
    Ordered by bus, then device, then function. Every way to make one
    (the constructor, :meth:`_make`, :meth:`_replace`, :meth:`parse`,
    :meth:`unpack`, copying and unpickling) checks the fields (R-ERR-002).
    """

    __slots__ = ()

    def __new__(cls, bus: int, device: int, function: int) -> Bdf:
        for name, value, top in (("bus", bus, 255), ("device", device, 31), ("function", function, 7)):
            if type(value) is not int or not 0 <= value <= top:
                raise InvalidArgument(f"BDF {name} must be an integer 0-{top}, got {value!r}")
        return super().__new__(cls, bus, device, function)

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Self:  # type: ignore[override]  # the stub is generic
        """A BDF from three fields, checked like the constructor."""
        fields = tuple(iterable)
        if len(fields) != 3:
            raise InvalidArgument(f"a BDF has three fields (bus, device, function), got {len(fields)}")
        return cls(*fields)

    def _replace(self, **changes: Any) -> Self:
        """A copy with some fields changed, checked like the constructor."""
        unknown = set(changes) - set(self._fields)
        if unknown:
            raise InvalidArgument(f"a BDF has no field {', '.join(sorted(unknown))}")
        return type(self)(**{**self._asdict(), **changes})

    @classmethod
    def parse(cls, text: str) -> Bdf:
        """Parse ``bb:dd.f`` exactly (hexadecimal bus and device, as lspci prints them; no spaces)."""
        match = _BDF_TEXT.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:40] + "..."
            raise InvalidArgument(f"not a BDF (expected bb:dd.f): {shown}")
        return cls(int(match[1], 16), int(match[2], 16), int(match[3]))

    @classmethod
    def unpack(cls, packed: int) -> Bdf:
        """Inverse of :attr:`packed`."""
        if type(packed) is not int or not 0 <= packed <= 0xFFFF:
            raise InvalidArgument(f"packed BDF must be 0-0xffff, got {packed!r}")
        return cls(packed >> 8, (packed >> 3) & 0x1F, packed & 0x7)

    @property
    def packed(self) -> int:
        """The 16-bit routing ID: bus 15:8, device 7:3, function 2:0."""
        return self.bus << 8 | self.device << 3 | self.function

    def __str__(self) -> str:
        return f"{self.bus:02x}:{self.device:02x}.{self.function}"
