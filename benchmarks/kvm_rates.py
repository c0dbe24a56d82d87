"""Guest-driven accesses per second: the KVM adapter, the bare-KVM floor, and QEMU, in one run.

Run as ``python benchmarks/kvm_rates.py [--exits N] [--rounds R] [--cython] [--device edu|e1000|all]``.

The same guest loop runs three times, on the same ``/dev/kvm``, in 64-bit
mode at CPL0 (the adapter's default)::

    mov rcx, N
    L:  mov eax, [moffs64 BAR0 + REG]   ; a 4-byte read of a device register
        dec rcx
        jnz L

* **adapter**: on a vCPU of :class:`vpcid.adapters.kvm.KvmAdapter`; every
  exit is decoded and dispatched into the data manager, whose device type
  answers the read.
* **floor**: ``benchmarks/kvm_floor.c`` (compiled here with gcc) loads the
  adapter's guest (same memory image, registers and CPUID, same code at the
  same address) and answers every exit with a constant: bare ``KVM_RUN``.
* **QEMU**: Debian's ``qemu-system-x86_64 -accel kvm`` with the QEMU device
  whose BAR0 the vpcid type reproduces, and a tiny firmware generated here:
  it enters long mode, programs the BAR through 0xCF8/0xCFC, writes ``S`` to
  the debug port, runs the loop, writes ``E`` and leaves through
  isa-debug-exit. The rate is timed between the two marks.

Devices: ``edu`` (1 MiB BAR0, identification register 0x00; the vpcid type's
registers are a Python ``BarBehaviour``) and ``e1000`` (128 KiB BAR0, STATUS
at 0x08; the vpcid type is memory-like).

Rounds are interleaved and the median of each is reported with the two
ratios (adapter / floor, adapter / QEMU). Goals (issue 6): >= 0.85 of the
floor, >= 1.0 of QEMU. Nothing is judged here; the numbers are printed.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from iced_x86 import BlockEncoder, Code, Instruction, MemoryOperand, Register
from vpcid.adapters.base import AdapterUnavailable
from vpcid.adapters.kvm import KvmAdapter, adapter, adapter_cython
from vpcid.adapters.kvm import guest as g
from vpcid.conformance.trace import Op, OpKind
from vpcid.model import Bdf

HERE = Path(__file__).resolve().parent
EDU_BDF = Bdf(0, 4, 0)
BAR0 = 0xFEA0_0000
VM = 1


@dataclass(frozen=True)
class Device:
    """The device the loop reads: its vpcid type, the QEMU device with the same BAR0, the register."""

    vpcid_type: str
    qemu_device: str
    register: int
    model_value: int


DEVICES = {
    "edu": Device("edu", "edu", 0x00, 0x010000ED),  # identification register, 1 MiB BAR0 in both
    "e1000": Device("e1000", "e1000", 0x08, 0),  # STATUS, 128 KiB BAR0 in both (vpcid: memory-like)
}


def loop_code(count: int, device: Device) -> list[Instruction]:
    """The measured loop: ``count`` 4-byte reads of the device's register in BAR0."""
    load = Instruction.create_reg_mem(Code.MOV_EAX_MOFFS32, Register.EAX, g.absolute(BAR0 + device.register))
    return [
        Instruction.create_reg_u64(Code.MOV_R64_IMM64, Register.RCX, count),
        load,
        Instruction.create_reg(Code.DEC_RM64, Register.RCX),
        Instruction.create_branch(Code.JNE_REL8_64, 0),  # target patched below: the load
    ]


def encode(instructions: list[Instruction], rip: int, bitness: int = 64) -> bytes:
    encoder = BlockEncoder(bitness)
    encoder.add_many(instructions)
    return bytes(encoder.encode(rip))


def counted_loop(count: int, device: Device, rip: int, tail: list[Instruction]) -> bytes:
    """``loop_code`` at ``rip`` with its branch aimed at the load, followed by ``tail``."""
    head = encode(loop_code(count, device)[:1], rip)
    code = loop_code(count, device)
    code[3] = Instruction.create_branch(Code.JNE_REL8_64, rip + len(head))
    return encode(code + tail, rip)


# ------------------------------------------------------------------ adapter
def prepare(kvm: KvmAdapter, device: Device) -> None:
    """VM 1 with the device, its BAR0 decoding at BAR0, programmed by guest configuration writes."""
    for op in (
        Op(OpKind.INIT),
        Op(OpKind.CREATE_VM, vm=VM),
        Op(OpKind.PLUG, vm=VM, bdf=EDU_BDF, name=device.vpcid_type),
        Op(OpKind.CONFIG_WRITE, vm=VM, bdf=EDU_BDF, address=0x10, width=4, value=BAR0),
        Op(OpKind.CONFIG_WRITE, vm=VM, bdf=EDU_BDF, address=0x04, width=2, value=0x2),
    ):
        observation = kvm.execute(op)
        assert observation.error is None, (op, observation)
    check = kvm.execute(Op(OpKind.MMIO_READ, vm=VM, address=BAR0 + device.register, width=4))
    assert check.value == device.model_value, check


def adapter_code(kvm: KvmAdapter, count: int, device: Device) -> bytes:
    body = g.body_va(kvm.layout)
    return counted_loop(
        count, device, body, [Instruction.create_branch(Code.JMP_REL32_64, kvm.layout.va(g.SLOT))]
    )


def run_adapter(kvm: KvmAdapter, count: int, device: Device) -> float:
    code = adapter_code(kvm, count, device)
    start = time.perf_counter()
    kvm.run_code(VM, code)
    return count / (time.perf_counter() - start)


# ------------------------------------------------------------------ floor
def write_state(kvm: KvmAdapter, count: int, device: Device, path: Path) -> None:
    """The adapter's guest, parked at its doorbell with the loop posted, for kvm_floor.c."""
    guest = kvm.guest(VM)
    platform = guest.platform
    sregs, regs = guest.initial_state()
    data = bytearray(g.DATA_SIZE)
    data[g.SLOT - g.DATA : g.SLOT - g.DATA + len(guest.doorbell_code)] = guest.doorbell_code
    code = adapter_code(kvm, count, device)
    data[guest.body : guest.body + len(code)] = code
    assert platform.image is not None
    image = bytes(platform.image.map)
    base = kvm.layout.base
    out = bytearray(b"VPCIDKVM")
    out += struct.pack("<QQ", base + g.DOORBELL, 0x010000ED)
    for blob in (bytes(platform.cpuid), bytes(sregs), bytes(regs)):
        out += struct.pack("<I", len(blob)) + blob
    out += struct.pack("<I", 2)
    out += struct.pack("<IIQQ", 0, platform.image_flags, base + g.IMAGE, len(image)) + image
    out += struct.pack("<IIQQ", 1, 0, base + g.DATA, len(data)) + data
    path.write_bytes(out)


def build_floor(workdir: Path) -> Path | None:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None
    binary = workdir / "kvm_floor"
    subprocess.run([gcc, "-O2", "-o", str(binary), str(HERE / "kvm_floor.c")], check=True)
    return binary


def run_floor(binary: Path, state: Path) -> float:
    done = subprocess.run([str(binary), str(state)], check=True, capture_output=True, text=True)
    exits, nanoseconds = (int(x) for x in done.stdout.split())
    return exits / (nanoseconds / 1e9)


# ------------------------------------------------------------------ QEMU
ROM = 0xFFFF_0000
PML4, PDPT, PD = 0x0000, 0x1000, 0x2000
GDT, GDTR = 0x6000, 0x6100
CODE16, CODE32, CODE64 = 0xF000, 0x7000, 0x8000


def firmware(count: int, device: Device) -> bytes:
    """64 KiB firmware: real mode -> long mode (identity map of 4 GiB), program the device, time the loop."""
    rom = bytearray(b"\xf4" * 0x10000)
    struct.pack_into("<Q", rom, PML4, (ROM + PDPT) | 0x63)
    for j in range(4):
        struct.pack_into("<Q", rom, PDPT + 8 * j, (ROM + PD + j * 0x1000) | 0x63)
        struct.pack_into("<512Q", rom, PD + j * 0x1000, *(((j << 30) | (k << 21)) | 0xE3 for k in range(512)))
    struct.pack_into("<4Q", rom, GDT, 0, 0x00CF9B000000FFFF, 0x00CF93000000FFFF, 0x00AF9B000000FFFF)
    struct.pack_into("<HI", rom, GDTR, 4 * 8 - 1, ROM + GDT)
    i = Instruction
    r = Register
    eax, edx, ecx = r.EAX, r.EDX, r.ECX
    code16 = [
        i.create(Code.CLI),
        i.create_mem(Code.LGDT_M1632, MemoryOperand(r.NONE, r.NONE, 1, GDTR, 2, False, r.CS)),
        i.create_reg_reg(Code.MOV_R32_CR, eax, r.CR0),
        i.create_reg_u32(Code.OR_EAX_IMM32, eax, 1),
        i.create_reg_reg(Code.MOV_CR_R32, r.CR0, eax),
        i.create_far_branch(Code.JMP_PTR1632, 0x08, ROM + CODE32),
    ]
    code32 = [
        i.create_reg_u32(Code.MOV_R32_IMM32, eax, 0x10),
        i.create_reg_reg(Code.MOV_SREG_R32M16, r.DS, eax),
        i.create_reg_reg(Code.MOV_SREG_R32M16, r.SS, eax),
        i.create_reg_reg(Code.MOV_R32_CR, eax, r.CR4),
        i.create_reg_u32(Code.OR_EAX_IMM32, eax, 0x20),
        i.create_reg_reg(Code.MOV_CR_R32, r.CR4, eax),
        i.create_reg_u32(Code.MOV_R32_IMM32, eax, ROM + PML4),
        i.create_reg_reg(Code.MOV_CR_R32, r.CR3, eax),
        i.create_reg_u32(Code.MOV_R32_IMM32, ecx, 0xC000_0080),
        i.create(Code.RDMSR),
        i.create_reg_u32(Code.OR_EAX_IMM32, eax, 0x100),
        i.create(Code.WRMSR),
        i.create_reg_reg(Code.MOV_R32_CR, eax, r.CR0),
        i.create_reg_u32(Code.OR_EAX_IMM32, eax, 0x8000_0000),
        i.create_reg_reg(Code.MOV_CR_R32, r.CR0, eax),
        i.create_far_branch(Code.JMP_PTR1632, 0x18, ROM + CODE64),
    ]

    def out_dword(port: int, value: int, width: int = 4) -> list[Instruction]:
        acc = {2: r.AX, 4: eax}[width]
        out = {2: Code.OUT_DX_AX, 4: Code.OUT_DX_EAX}[width]
        return [
            i.create_reg_u32(Code.MOV_R32_IMM32, edx, port),
            i.create_reg_u32(Code.MOV_R32_IMM32, eax, value),
            i.create_reg_reg(out, r.DX, acc),
        ]

    def mark(char: str) -> list[Instruction]:
        return [
            i.create_reg_u32(Code.MOV_R8_IMM8, r.AL, ord(char)),
            i.create_u32_reg(Code.OUT_IMM8_AL, 0xE9, r.AL),
        ]

    select_bar = 0x8000_0000 | EDU_BDF.packed << 8
    setup = [
        *out_dword(0xCF8, select_bar | 0x10),
        *out_dword(0xCFC, BAR0),
        *out_dword(0xCF8, select_bar | 0x04),
        *out_dword(0xCFC, 0x2, 2),
        *mark("S"),
    ]
    head = encode(setup, ROM + CODE64)
    tail = [
        *mark("E"),
        i.create_reg_u32(Code.MOV_R8_IMM8, r.AL, 0),
        i.create_u32_reg(Code.OUT_IMM8_AL, 0xF4, r.AL),
    ]
    code64 = head + counted_loop(count, device, ROM + CODE64 + len(head), tail)
    for offset, blob in (
        (CODE16, encode(code16, ROM + CODE16, 16)),
        (CODE32, encode(code32, ROM + CODE32, 32)),
        (CODE64, code64),
        (0xFFF0, encode([i.create_branch(Code.JMP_REL16, ROM + CODE16)], ROM + 0xFFF0, 16)),
    ):
        rom[offset : offset + len(blob)] = blob
    return bytes(rom)


def run_qemu(qemu: str, rom: Path, count: int, device: Device) -> float:
    command = [
        qemu,
        "-accel",
        "kvm",
        "-M",
        "pc",
        "-m",
        "16",
        "-nodefaults",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-bios",
        str(rom),
        "-debugcon",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=1",
        "-device",
        f"{device.qemu_device},addr={EDU_BDF.device:02x}.0",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    marks: dict[bytes, float] = {}
    deadline = time.monotonic() + 600
    fd = process.stdout.fileno()
    while len(marks) < 2 and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            chunk = os.read(fd, 16)
            now = time.perf_counter()
            if not chunk:
                break
            for byte in chunk:
                marks.setdefault(bytes([byte]), now)
    process.wait(timeout=60)
    if b"S" not in marks or b"E" not in marks:
        error = process.stderr.read().decode() if process.stderr else ""
        raise RuntimeError(f"QEMU did not run the loop (marks {sorted(marks)}): {error.strip()}")
    return count / (marks[b"E"] - marks[b"S"])


# ------------------------------------------------------------------ main
LABELS = {
    "kvm": "KVM adapter (reference model)",
    "kvm+cython": "KVM adapter (Cython backend)",
    "floor": "bare KVM_RUN, C, constant reply",
}


def measure(device: Device, args: argparse.Namespace) -> None:
    """Interleaved rounds of every runner on ``device``; print the medians and the ratios."""
    adapters = {"kvm": adapter(None)}
    if args.cython:
        try:
            adapters["kvm+cython"] = adapter_cython(None)
        except AdapterUnavailable as exc:
            print(f"kvm+cython unavailable: {exc}")
    for kvm in adapters.values():
        prepare(kvm, device)
    qemu = shutil.which("qemu-system-x86_64")
    rates: dict[str, list[float]] = {name: [] for name in adapters}
    rates["floor"], rates["qemu"] = [], []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vpcid-kvm-") as tmp:
        workdir = Path(tmp)
        try:
            floor = build_floor(workdir)
        except subprocess.CalledProcessError as exc:
            floor, problems = None, [*problems, f"floor: gcc failed ({exc})"]
        state = workdir / "state.bin"
        write_state(adapters["kvm"], args.exits, device, state)
        rom = workdir / "firmware.bin"
        rom.write_bytes(firmware(args.exits, device))
        for _ in range(args.rounds):
            for name, kvm in adapters.items():
                rates[name].append(run_adapter(kvm, args.exits, device))
            if floor is not None:
                rates["floor"].append(run_floor(floor, state))
            if qemu is not None:
                try:
                    rates["qemu"].append(run_qemu(qemu, rom, args.exits, device))
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    qemu, problems = None, [*problems, f"QEMU: {exc}"]
    for kvm in adapters.values():
        kvm.close()
    median = {name: statistics.median(values) for name, values in rates.items() if values}
    print(
        f"{device.vpcid_type}: {args.exits} x 4-byte MMIO read of BAR0 + {device.register:#x} "
        f"(one exit each), median of {args.rounds} interleaved rounds"
    )
    labels = {**LABELS, "qemu": f"QEMU -accel kvm, -device {device.qemu_device}"}
    for name, rate in median.items():
        print(f"  {labels[name]:34} {rate:>10,.0f} accesses/s  ({1e6 / rate:6.2f} us each)")
    for name in ("floor", "qemu"):
        if name not in median:
            print(f"  {labels[name]:34} not measured (gcc / qemu-system-x86_64 missing or failed)")
    for problem in problems:
        print(f"  {problem}")
    for name in adapters:
        if "floor" in median:
            print(f"  ratio {name} / floor: {median[name] / median['floor']:.2f}   (goal >= 0.85)")
        if "qemu" in median:
            print(f"  ratio {name} / QEMU:  {median[name] / median['qemu']:.2f}   (goal >= 1.00)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exits", type=int, default=100_000, help="loop iterations (= exits) per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cython", action="store_true", help="also measure kvm+cython")
    parser.add_argument("--device", choices=[*sorted(DEVICES), "all"], default="all")
    args = parser.parse_args(argv)
    try:
        adapter(None).close()
    except AdapterUnavailable as exc:
        print(f"KVM adapter unavailable: {exc}")
        return 1
    print(f"CPU: {os.cpu_count()} threads, load {os.getloadavg()[0]:.2f}, python {sys.version.split()[0]}")
    for name in sorted(DEVICES) if args.device == "all" else [args.device]:
        measure(DEVICES[name], args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
