"""Make the QEMU dumps in tests/data/dumps (not run by the tests; rerun by hand after changing it).

For each model a paused q35 machine is started with the device at 00:04.0
(or behind a PCI Express root port at 01:00.0, so that it is an endpoint
with a link), and everything is done through qtest and ECAM as firmware and
Linux would: BARs sized the way Linux sizes them (decode off, write ones,
read back, restore), then assigned from fixed windows (I/O from 0xc000,
32-bit memory from 0xc0000000... below 0xfec00000, 64-bit memory from
0x8000000000), the expansion ROM given an address but left disabled, the
interrupt line set, MSI-X (or else MSI) enabled the way a driver does, and
the command register set. The function's configuration space is then read
and written as hex rows; pciutils' ``lspci -vv -xxxx -F`` renders that file
(so the text is what lspci prints for those bytes), and the sizes measured
here are added to its Region and Expansion ROM lines as lspci prints sizes
it knows (`` [size=..]``).

Usage: ``.venv/bin/python tests/data/make_dumps.py [MODEL...]``
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vpcid.adapters.qemu.discover import prepare
from vpcid.adapters.qemu.qtest import Guest, QemuProcess
from vpcid.model import Bdf

OUT = Path(__file__).parent / "dumps"
IO_BASE, MEM32_BASE, MEM64_BASE = 0xC000, 0xC000_0000, 0x80_0000_0000
INTERRUPT_LINE = 0x0B
MSI_ADDRESS, MSI_DATA = 0xFEE0_0000, 0x4021
ROOT_PORT = ["-device", "pcie-root-port,id=rp0,bus=pcie.0,addr=05.0,chassis=1,slot=1"]
ROOT_PORT_BDF = Bdf(0, 5, 0)


@dataclass(frozen=True)
class Model:
    """One QEMU device model to dump: its -device options and where it sits."""

    name: str
    device: str
    extra: tuple[str, ...] = ()
    behind_root_port: bool = False

    @property
    def bdf(self) -> Bdf:
        return Bdf(1, 0, 0) if self.behind_root_port else Bdf(0, 4, 0)

    def args(self) -> list[str]:
        place = "bus=rp0,addr=00.0" if self.behind_root_port else "addr=04.0"
        ports = ROOT_PORT if self.behind_root_port else []
        return ["-machine", "q35", "-m", "128M", *self.extra, *ports, "-device", f"{self.device},{place}"]


NULL_DRIVE = ("-blockdev", "driver=null-co,node-name=d0")
MODELS = (
    Model("e1000", "e1000"),
    Model("e1000e", "e1000e", behind_root_port=True),
    Model("virtio-net-pci", "virtio-net-pci"),
    Model("virtio-blk-pci", "virtio-blk-pci,drive=d0", NULL_DRIVE),
    Model("ich9-ahci", "ich9-ahci"),
    Model("megasas", "megasas"),
    Model("nvme", "nvme,serial=vpcid0001", behind_root_port=True),
    Model("rtl8139", "rtl8139"),
    Model("bochs-display", "bochs-display"),
    Model("qemu-xhci", "qemu-xhci"),
    Model("i6300esb", "i6300esb"),
    Model("vmxnet3", "vmxnet3", behind_root_port=True),
    Model("ich9-intel-hda", "ich9-intel-hda"),
)


def _align(value: int, size: int) -> int:
    return (value + size - 1) & ~(size - 1)


class Firmware:
    """Sizes and assigns BARs through ECAM, as firmware and Linux do."""

    def __init__(self, guest: Guest, bdf: Bdf) -> None:
        self.guest, self.packed = guest, bdf.packed
        self.io, self.mem32, self.mem64 = IO_BASE, MEM32_BASE, MEM64_BASE

    def read(self, offset: int, width: int) -> int:
        return self.guest.config_read(self.packed, offset, width)

    def write(self, offset: int, width: int, value: int) -> None:
        self.guest.config_write(self.packed, offset, width, value)

    def probe(self, offset: int, ones: int) -> int:
        old = self.read(offset, 4)
        self.write(offset, 4, ones)
        sized = self.read(offset, 4)
        self.write(offset, 4, old)
        return sized

    def assign(self) -> tuple[list[int | None], int | None]:
        """Size and place every BAR and the ROM; return the sizes (per slot, None unused) and ROM size."""
        self.write(0x04, 2, 0)
        sizes: list[int | None] = [None] * 6
        slot = 0
        while slot < 6:
            offset = 0x10 + 4 * slot
            sized = self.probe(offset, 0xFFFF_FFFF)
            if not sized:
                slot += 1
                continue
            if sized & 1:
                size = (~(sized & 0xFFFF_FFFC) & 0xFFFF) + 1
                self.io = _align(self.io, size)
                self.write(offset, 4, self.io)
                self.io += size
                sizes[slot] = size
                slot += 1
                continue
            if sized & 0x6 == 0x4:
                upper = self.probe(offset + 4, 0xFFFF_FFFF)
                mask = upper << 32 | (sized & 0xFFFF_FFF0)
                size = (~mask & (1 << 64) - 1) + 1
                self.mem64 = _align(self.mem64, size)
                self.write(offset, 4, self.mem64 & 0xFFFF_FFFF)
                self.write(offset + 4, 4, self.mem64 >> 32)
                self.mem64 += size
                sizes[slot] = size
                slot += 2
                continue
            size = (~(sized & 0xFFFF_FFF0) & 0xFFFF_FFFF) + 1
            self.mem32 = _align(self.mem32, size)
            self.write(offset, 4, self.mem32)
            self.mem32 += size
            sizes[slot] = size
            slot += 1
        rom_sized = self.probe(0x30, 0xFFFF_FFFE) & 0xFFFF_F800
        rom = None
        if rom_sized:
            rom = (~rom_sized & 0xFFFF_FFFF) + 1
            self.mem32 = _align(self.mem32, rom)
            self.write(0x30, 4, self.mem32)  # address assigned, enable bit clear: lspci's [disabled]
            self.mem32 += rom
        return sizes, rom

    def capabilities(self) -> dict[int, int]:
        """Capability ID -> offset (first of each), from the chain at 0x34."""
        found: dict[int, int] = {}
        pointer = self.read(0x34, 1) if self.read(0x06, 2) & 0x10 else 0
        while pointer and len(found) < 48:
            found.setdefault(self.read(pointer, 1), pointer)
            pointer = self.read(pointer + 1, 1) & 0xFC
        return found

    def enable_interrupts(self) -> None:
        """MSI-X enabled as a driver leaves it; else MSI with an address and data; else INTx."""
        caps = self.capabilities()
        if 0x11 in caps:
            at = caps[0x11]
            self.write(at + 2, 2, self.read(at + 2, 2) | 0x8000)
        elif 0x05 in caps:
            at = caps[0x05]
            control = self.read(at + 2, 2)
            self.write(at + 4, 4, MSI_ADDRESS)
            data_at = at + 0x0C if control & 0x80 else at + 0x08
            if control & 0x80:
                self.write(at + 8, 4, 0)
            self.write(data_at, 2, MSI_DATA)
            self.write(at + 2, 2, control | 0x1)


def open_root_port(guest: Guest) -> None:
    """Bus numbers and windows of the root port, so that its secondary bus (1) answers on ECAM."""
    packed = ROOT_PORT_BDF.packed
    guest.config_write(packed, 0x18, 4, 0x00_01_01_00)  # primary 0, secondary 1, subordinate 1


def config_bytes(guest: Guest, bdf: Bdf) -> bytes:
    express = guest.config_read(bdf.packed, 0x100, 4) != 0xFFFF_FFFF
    size = 0x1000 if express else 0x100
    values = guest.config_batch(bdf.packed, [(o, 4, None) for o in range(0, size, 4)])
    return b"".join(v.to_bytes(4, "little") for v in values)


def hex_rows(bdf: Bdf, config: bytes) -> str:
    rows = [
        f"{o:02x}: " + " ".join(f"{b:02x}" for b in config[o : o + 16]) for o in range(0, len(config), 16)
    ]
    return f"{bdf} dump\n" + "\n".join(rows) + "\n\n"


def size_text(size: int) -> str:
    """lspci's ``show_size``: the value in the largest of K, M, G, T that keeps it whole."""
    unit = 0
    while size >= 1024 and unit < 4:
        size //= 1024
        unit += 1
    return f" [size={size}{('', 'K', 'M', 'G', 'T')[unit]}]"


def with_sizes(text: str, sizes: list[int | None], rom: int | None) -> str:
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Region ") and ":" in stripped:
            index = int(stripped.split()[1].rstrip(":"))
            size = sizes[index]
            if size is not None:
                line += size_text(size)
        elif stripped.startswith("Expansion ROM at") and rom is not None:
            line += size_text(rom)
        out.append(line)
    return "\n".join(out) + "\n"


def dump(model: Model) -> str:
    qemu = QemuProcess.spawn(model.args())
    try:
        guest = prepare(qemu)
        if model.behind_root_port:
            open_root_port(guest)
        firmware = Firmware(guest, model.bdf)
        sizes, rom = firmware.assign()
        if firmware.read(0x3D, 1):  # interrupt line: only for a function with an interrupt pin
            firmware.write(0x3C, 1, INTERRUPT_LINE)
        firmware.enable_interrupts()
        command = 0x4  # bus master
        if any(s is not None and firmware.read(0x10 + 4 * i, 4) & 1 for i, s in enumerate(sizes)):
            command |= 0x1
        if any(s is not None and not firmware.read(0x10 + 4 * i, 4) & 1 for i, s in enumerate(sizes)) or rom:
            command |= 0x2
        firmware.write(0x04, 2, command)
        config = config_bytes(guest, model.bdf)
    finally:
        qemu.kill()
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw.txt"
        raw.write_text(hex_rows(model.bdf, config), encoding="utf-8")
        rendered = subprocess.run(
            ["lspci", "-vv", "-xxxx", "-F", str(raw)], capture_output=True, text=True, check=True
        ).stdout
    return with_sizes(rendered, sizes, rom)


def main(names: list[str]) -> None:
    chosen = [m for m in MODELS if not names or m.name in names]
    for model in chosen:
        path = OUT / f"qemu-{model.name}.txt"
        path.write_text(dump(model), encoding="utf-8")
        print(f"{path}: {model.args()}")


if __name__ == "__main__":
    main(sys.argv[1:])
