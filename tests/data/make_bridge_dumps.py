"""Make tests/data/bridge-dumps/qemu-bridges.txt (not run by the tests; rerun by hand after changing it).

A paused q35 machine with QEMU's three kinds of bridge, each with devices behind it: a PCI Express root
port with edu below, a conventional pci-bridge with pci-testdev and a VGA below, and a second root port
with an x3130 switch (upstream port, two downstream ports, edu below one of them). There is no firmware
under qtest, so this script does its job through ECAM, depth first as SeaBIOS does: each bridge gets the
next bus number as its secondary and the last bus below it as its subordinate; the BARs below a bridge
are assigned (I/O from 0x1000, memory from 0xc0000000, 64-bit prefetchable memory from 0x8000000000,
each naturally aligned) and the bridge's windows set around them (4 KiB I/O and 1 MiB memory
granularity, prefetchable for 64-bit prefetchable BARs; a window with nothing below stays closed);
command registers enabled.
Every function's configuration space is then written as hex rows, which pciutils' ``lspci -vv -xxxx -F``
renders, so the file is what lspci prints for those bytes.

Usage: ``.venv/bin/python tests/data/make_bridge_dumps.py``
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from vpcid.adapters.qemu.discover import prepare
from vpcid.adapters.qemu.qtest import Guest, QemuProcess

OUT = Path(__file__).parent / "bridge-dumps" / "qemu-bridges.txt"
DEVICES = (
    "pcie-root-port,id=rp1,bus=pcie.0,addr=04.0,chassis=1,slot=1",
    "edu,bus=rp1,addr=00.0",
    "pci-bridge,id=pb1,bus=pcie.0,addr=05.0,chassis_nr=2",
    "pci-testdev,bus=pb1,addr=03.0",
    "VGA,bus=pb1,addr=04.0",
    "pcie-root-port,id=rp2,bus=pcie.0,addr=06.0,chassis=3,slot=3",
    "x3130-upstream,id=up,bus=rp2,addr=00.0",
    "xio3130-downstream,id=dn1,bus=up,addr=00.0,chassis=4,slot=4",
    "xio3130-downstream,id=dn2,bus=up,addr=01.0,chassis=5,slot=5",
    "edu,bus=dn2,addr=00.0",
)
IO_START, MEM32_START, MEM64_START = 0x1000, 0xC000_0000, 0x80_0000_0000
IO_GRANULE, MEM_GRANULE = 0x1000, 0x10_0000


def _align(value: int, size: int) -> int:
    return (value + size - 1) & ~(size - 1)


class Firmware:
    """Bus numbers, BARs and bridge windows, assigned depth first through ECAM."""

    def __init__(self, guest: Guest) -> None:
        self.guest = guest
        self.io, self.mem32, self.mem64 = IO_START, MEM32_START, MEM64_START
        self.last_bus = 0
        self.functions: list[int] = []

    def read(self, packed: int, offset: int, width: int) -> int:
        return self.guest.config_read(packed, offset, width)

    def write(self, packed: int, offset: int, width: int, value: int) -> None:
        self.guest.config_write(packed, offset, width, value)

    def scan(self, bus: int) -> None:
        for device in range(32):
            for function in range(8):
                packed = bus << 8 | device << 3 | function
                if self.read(packed, 0x00, 2) == 0xFFFF:
                    if function == 0:
                        break
                    continue
                self.functions.append(packed)
                if self.read(packed, 0x0E, 1) & 0x7F == 1:
                    self.bridge(packed, bus)
                else:
                    self.assign_bars(packed, 6)
                if function == 0 and not self.read(packed, 0x0E, 1) & 0x80:
                    break

    def bridge(self, packed: int, bus: int) -> None:
        self.last_bus += 1
        secondary = self.last_bus
        self.write(packed, 0x18, 4, 0xFF << 16 | secondary << 8 | bus)
        self.assign_bars(packed, 2)
        self.io, self.mem32 = _align(self.io, IO_GRANULE), _align(self.mem32, MEM_GRANULE)
        self.mem64 = _align(self.mem64, MEM_GRANULE)
        io, mem32, mem64 = self.io, self.mem32, self.mem64
        self.scan(secondary)
        self.write(packed, 0x1A, 1, self.last_bus)
        self.io, self.mem32 = _align(self.io, IO_GRANULE), _align(self.mem32, MEM_GRANULE)
        self.mem64 = _align(self.mem64, MEM_GRANULE)
        if self.io > io:  # a window with nothing below is closed: base above limit
            self.write(packed, 0x1C, 2, ((self.io - 1) >> 8 & 0xF0) << 8 | io >> 8 & 0xF0)
        else:
            self.write(packed, 0x1C, 2, 0x00F0)
        if self.mem32 > mem32:
            self.write(packed, 0x20, 4, ((self.mem32 - 1) >> 16 & 0xFFF0) << 16 | mem32 >> 16 & 0xFFF0)
        else:
            self.write(packed, 0x20, 4, 0x0000_FFF0)
        if self.mem64 > mem64:
            self.write(packed, 0x24, 4, ((self.mem64 - 1) >> 16 & 0xFFF0) << 16 | mem64 >> 16 & 0xFFF0)
            self.write(packed, 0x28, 4, mem64 >> 32)
            self.write(packed, 0x2C, 4, (self.mem64 - 1) >> 32)
        else:
            self.write(packed, 0x24, 4, 0x0000_FFF0)
            self.write(packed, 0x28, 4, 0)
            self.write(packed, 0x2C, 4, 0)
        self.write(packed, 0x04, 2, 0x7)

    def probe(self, packed: int, offset: int) -> int:
        old = self.read(packed, offset, 4)
        self.write(packed, offset, 4, 0xFFFF_FFFF)
        sized = self.read(packed, offset, 4)
        self.write(packed, offset, 4, old)
        return sized

    def assign_bars(self, packed: int, count: int) -> None:
        slot, command = 0, 0x4
        while slot < count:
            offset = 0x10 + 4 * slot
            sized = self.probe(packed, offset)
            if not sized:
                slot += 1
                continue
            if sized & 1:
                size = (~(sized & 0xFFFF_FFFC) & 0xFFFF) + 1
                self.io = _align(self.io, size)
                self.write(packed, offset, 4, self.io)
                self.io += size
                command |= 0x1
            elif sized & 0x6 == 0x4:
                mask = self.probe(packed, offset + 4) << 32 | (sized & 0xFFFF_FFF0)
                size = (~mask & (1 << 64) - 1) + 1
                if sized & 0x8:  # prefetchable: above 4 GiB, through the prefetchable windows
                    self.mem64 = _align(self.mem64, size)
                    base, self.mem64 = self.mem64, self.mem64 + size
                else:  # non-prefetchable: below 4 GiB, as SeaBIOS and Linux place it
                    self.mem32 = _align(self.mem32, size)
                    base, self.mem32 = self.mem32, self.mem32 + size
                self.write(packed, offset, 4, base & 0xFFFF_FFFF)
                self.write(packed, offset + 4, 4, base >> 32)
                command |= 0x2
                slot += 1
            else:
                size = (~(sized & 0xFFFF_FFF0) & 0xFFFF_FFFF) + 1
                self.mem32 = _align(self.mem32, size)
                self.write(packed, offset, 4, self.mem32)
                self.mem32 += size
                command |= 0x2
            slot += 1
        if self.read(packed, 0x3D, 1):
            self.write(packed, 0x3C, 1, 0x0B)
        self.write(packed, 0x04, 2, command)


def hex_rows(packed: int, config: bytes) -> str:
    address = f"{packed >> 8:02x}:{packed >> 3 & 0x1F:02x}.{packed & 7}"
    rows = [
        f"{o:02x}: " + " ".join(f"{b:02x}" for b in config[o : o + 16]) for o in range(0, len(config), 16)
    ]
    return f"{address} dump\n" + "\n".join(rows) + "\n\n"


def main() -> None:
    qemu = QemuProcess.spawn(["-machine", "q35", "-m", "128M", *(a for d in DEVICES for a in ("-device", d))])
    try:
        guest = prepare(qemu)
        firmware = Firmware(guest)
        firmware.scan(0)
        text = []
        for packed in sorted(firmware.functions):
            express = guest.config_read(packed, 0x100, 4) != 0xFFFF_FFFF
            values = guest.config_batch(
                packed, [(o, 4, None) for o in range(0, 0x1000 if express else 0x100, 4)]
            )
            text.append(hex_rows(packed, b"".join(v.to_bytes(4, "little") for v in values)))
    finally:
        qemu.kill()
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw.txt"
        raw.write_text("".join(text), encoding="utf-8")
        rendered = subprocess.run(
            ["lspci", "-vv", "-xxxx", "-F", str(raw)], capture_output=True, text=True, check=True
        ).stdout
    OUT.write_text(rendered, encoding="utf-8")
    print(f"{OUT}: {len(text)} functions")


if __name__ == "__main__":
    main()
