"""Guest memory image and guest code of the KVM adapter, generated with the iced-x86 encoder.

Execution model
---------------
The guest is a 64-bit long-mode program. By default it runs at CPL0: on a
software KVM such as kvm_pvm, CPL0 code goes through KVM's instruction
emulator, and the emulator reaches an I/O or MMIO exit without a world
switch, which costs less than the native round trip user-mode code pays
(measured: about 12 us against 35-40 us per exit). Optionally it runs at
CPL3 (``cpl=3``); an all-zero I/O permission bitmap in the TSS grants every
port (IOPL is not kept by every KVM). On hardware KVM both run natively.

Per operation the host writes a short routine into the *op slot* (a
template assembled once with iced-x86, its immediates patched with the
operation's port, address, value or 0xCF8 word) and resumes the vCPU::

    slot:  mov byte [DOORBELL], al   ; control exit: result taken, next routine posted
    body:  <the operation's access>  ; e.g. mov eax, [moffs64 ADDRESS] -> KVM_EXIT_MMIO
           mov [moffs64 RESULT], eax ; reads: the value goes back through guest memory
           jmp slot

so one operation costs its access exits plus one doorbell exit, and about
four emulated instructions (a configuration access through 0xCF8/0xCFC
makes four port accesses: save 0xCF8, select, data lane, restore).

Guest-physical layout
---------------------
Everything the guest needs lives in one *private block* of ``PRIVATE_SIZE``
bytes at ``Layout.base``; every other guest-physical address is unbacked, so
an access there exits as MMIO.

====================  =========================================================
offset in the block   contents
====================  =========================================================
``IMAGE`` (slot 0)    PML4, GDT, IDT, TSS + I/O bitmap, fault stubs, page tables;
                      the same bytes for every VM (one host mapping, shared)
``DATA``  (slot 1)    result, op slot (code), stack: per VM
``DOORBELL``          unbacked page: a store here ends an operation
``APERTURE``          2 unbacked pages: stand-in for an address paging cannot reach
``CONFIG_WINDOW``     256 MiB unbacked, ECAM layout: configuration registers that
                      mechanism #1 cannot select (offsets >= 0x100, unaligned lanes)
====================  =========================================================

Paging identity-maps guest-physical memory, user-accessible, at the
canonical virtual address of each physical address: 1 GiB pages up to
``2^min(phys_bits, 48)`` when the vCPU has them, else 2 MiB pages up to
``2^39``. Exceptions go through the IDT to CPL0 stubs that push the vector
and ``hlt`` (``KVM_EXIT_HLT``); the host reads the frame and reports the
fault.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from typing import TYPE_CHECKING

from iced_x86 import BlockEncoder, Code, Encoder, Instruction, MemoryOperand, Register

if TYPE_CHECKING:
    from iced_x86._iced_x86_py import Register as RegisterType

PAGE = 0x1000
GIB = 1 << 30

# offsets inside the private block
IMAGE = 0x0
PML4 = IMAGE + 0x0000
GDT = IMAGE + 0x1000
IDT = IMAGE + 0x2000
TSS = IMAGE + 0x3000
IO_BITMAP = TSS + 0x68
TSS_LIMIT = 0x68 + 0x2000
"""The TSS with an I/O permission bitmap for all 65536 ports (all allowed) and its 0xFF terminator."""
FAULT_STUBS = IMAGE + 0x6000
FAULT_SLOT = 0x10
PAGING = IMAGE + 0x10000
"""PDPTs (1 GiB pages) or PDPT + page directories (2 MiB pages)."""
IMAGE_SIZE = PAGING + 0x201000
DATA = 0x400000
DATA_SIZE = 0x4000
RESULT = DATA
SLOT = DATA + 0x1000
"""The op slot: doorbell store, then the current operation's routine."""
SLOT_SIZE = 0x1000
STACK_TOP = DATA + 0x4000
DOORBELL = 0x500000
APERTURE = 0x600000
APERTURE_SIZE = 2 * PAGE
CONFIG_WINDOW = 0x10000000
CONFIG_WINDOW_SIZE = 0x10000000
PRIVATE_SIZE = 0x20000000

# segment selectors, control registers
KERNEL_CS, KERNEL_DS, USER_DS, USER_CS, TSS_SEL = 0x08, 0x10, 0x1B, 0x23, 0x28
RFLAGS = 0x2
"""Bit 1 (reserved, set); interrupts off. Ports are granted by the TSS bitmap, not by IOPL."""
CR0 = 0x8005_0033  # PG WP NE ET MP PE
CR4_PAE = 0x20
EFER_LME_LMA = 0x500
VECTORS_WITH_ERROR_CODE = frozenset({8, 10, 11, 12, 13, 14, 17, 21, 29, 30})
EXCEPTION_NAMES = {
    0: "#DE",
    1: "#DB",
    2: "NMI",
    3: "#BP",
    4: "#OF",
    5: "#BR",
    6: "#UD",
    7: "#NM",
    8: "#DF",
    10: "#TS",
    11: "#NP",
    12: "#SS",
    13: "#GP",
    14: "#PF",
    16: "#MF",
    17: "#AC",
    18: "#MC",
    19: "#XM",
    20: "#VE",
    21: "#CP",
}

PLACEHOLDER = {1: 0x5A, 2: 0x5A5A, 4: 0x5A5A_5A5A, 8: 0x5A5A_5A5A_5A5A_5A5A}


def canonical(address: int) -> int:
    """The 48-bit canonical virtual address that maps guest-physical ``address``."""
    return address | 0xFFFF_0000_0000_0000 if address & (1 << 47) else address


@dataclass(frozen=True)
class Layout:
    """Where the private block is, how far paging reaches, and the guest's privilege level."""

    base: int
    phys_bits: int
    gbpages: bool
    cpl: int = 0

    @property
    def reach(self) -> int:
        """Guest-physical addresses below this are mapped by the guest's page tables."""
        return 1 << min(self.phys_bits, 48) if self.gbpages else 1 << min(self.phys_bits, 39)

    @property
    def private(self) -> range:
        return range(self.base, self.base + PRIVATE_SIZE)

    def va(self, offset: int) -> int:
        """Virtual address of an offset inside the private block."""
        return canonical(self.base + offset)

    @classmethod
    def for_cpu(cls, phys_bits: int, gbpages: bool, cpl: int = 0) -> Layout:
        """The private block in the top gigabyte below ``2^min(phys_bits, 47)`` that paging reaches."""
        top = 1 << min(phys_bits, 47, 48 if gbpages else 39)
        return cls(top - GIB, phys_bits, gbpages, cpl)


# ------------------------------------------------------------------ encoding
def absolute(address: int) -> MemoryOperand:
    """``[moffs64]``: a 64-bit absolute address (only with al/ax/eax/rax)."""
    return MemoryOperand.ctor_u64(Register.NONE, Register.NONE, 1, address, 8)


def assemble(instructions: Sequence[Instruction], rip: int) -> bytes:
    """Encode ``instructions`` at ``rip`` (branch targets are absolute addresses)."""
    encoder = BlockEncoder(64)
    encoder.add_many(list(instructions))
    return bytes(encoder.encode(rip))


@dataclass(frozen=True)
class Template:
    """An assembled routine and where its operation-specific constants sit in it."""

    code: bytes
    fields: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Field name ("address", "value", "cf8", "lane") -> (byte offset, size)."""
    listing: tuple[str, ...] = ()
    """The instructions as the encoder saw them (Intel syntax), for tests and reviews."""

    def patched(self, **values: int) -> bytes:
        code = bytearray(self.code)
        for name, value in values.items():
            offset, size = self.fields[name]
            code[offset : offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        return bytes(code)


class _Builder:
    """Encodes instructions one at a time, remembering where named constants land."""

    def __init__(self, rip: int) -> None:
        self.start = rip
        self.rip = rip
        self.code = bytearray()
        self.fields: dict[str, tuple[int, int]] = {}
        self.listing: list[str] = []
        self._encoder = Encoder(64)

    def emit(self, instruction: Instruction, name: str | None = None) -> None:
        length = self._encoder.encode(instruction, self.rip)
        if name is not None:
            offsets = self._encoder.get_constant_offsets()
            if offsets.has_immediate:
                at, size = offsets.immediate_offset, offsets.immediate_size
            else:
                at, size = offsets.displacement_offset, offsets.displacement_size
            self.fields[name] = (len(self.code) + at, size)
        self.code += self._encoder.take_buffer()
        self.listing.append(str(instruction))
        self.rip += length

    def template(self) -> Template:
        return Template(bytes(self.code), dict(self.fields), tuple(self.listing))


ACC = {1: Register.AL, 2: Register.AX, 4: Register.EAX, 8: Register.RAX}
_LOAD = {1: Code.MOV_AL_MOFFS8, 2: Code.MOV_AX_MOFFS16, 4: Code.MOV_EAX_MOFFS32, 8: Code.MOV_RAX_MOFFS64}
_STORE = {1: Code.MOV_MOFFS8_AL, 2: Code.MOV_MOFFS16_AX, 4: Code.MOV_MOFFS32_EAX, 8: Code.MOV_MOFFS64_RAX}
_IMM = {1: Code.MOV_R8_IMM8, 2: Code.MOV_R16_IMM16, 4: Code.MOV_R32_IMM32, 8: Code.MOV_R64_IMM64}
_IN = {1: Code.IN_AL_DX, 2: Code.IN_AX_DX, 4: Code.IN_EAX_DX}
_OUT = {1: Code.OUT_DX_AL, 2: Code.OUT_DX_AX, 4: Code.OUT_DX_EAX}


def _mov_imm(reg: RegisterType, width: int, value: int) -> Instruction:
    if width == 8:
        return Instruction.create_reg_u64(_IMM[8], reg, value)
    return Instruction.create_reg_u32(_IMM[width], reg, value)


def load(width: int, address: int) -> Instruction:
    """``mov acc, [moffs64]``."""
    return Instruction.create_reg_mem(_LOAD[width], ACC[width], absolute(address))


def store(width: int, address: int) -> Instruction:
    """``mov [moffs64], acc``."""
    return Instruction.create_mem_reg(_STORE[width], absolute(address), ACC[width])


class Routine(Enum):
    """The operation routines the op slot can hold."""

    IO_READ = "io_read"
    IO_WRITE = "io_write"
    MEM_READ = "mem_read"
    MEM_WRITE = "mem_write"
    CF8_READ = "cf8_read"
    CF8_WRITE = "cf8_write"
    IO_READ_LOOP = "io_read_loop"
    MEM_READ_LOOP = "mem_read_loop"


def doorbell(layout: Layout) -> bytes:
    """``mov [moffs64 DOORBELL], al``: the store that ends every operation."""
    return assemble([store(1, layout.va(DOORBELL))], layout.va(SLOT))


@cache
def routine(layout: Layout, which: Routine, width: int) -> Template:
    """The routine ``which`` of ``width`` bytes, assembled at the op slot's body, ending in ``jmp slot``."""
    slot = layout.va(SLOT)
    b = _Builder(slot + len(doorbell(layout)))
    acc = ACC[width]
    dx = Register.DX
    back = Instruction.create_branch(Code.JMP_REL32_64, slot)
    ph = PLACEHOLDER[width]
    result = layout.va(RESULT)
    match which:
        case Routine.MEM_READ:
            b.emit(load(width, 0x5A5A_5A5A_5A5A_5A5A), "address")
            b.emit(store(width, result))
        case Routine.MEM_WRITE:
            b.emit(_mov_imm(acc, width, ph), "value")
            b.emit(store(width, 0x5A5A_5A5A_5A5A_5A5A), "address")
        case Routine.IO_READ:
            b.emit(_mov_imm(Register.EDX, 4, 0x5A5A_5A5A), "address")
            b.emit(Instruction.create_reg_reg(_IN[width], acc, dx))
            b.emit(store(width, result))
        case Routine.IO_WRITE:
            b.emit(_mov_imm(Register.EDX, 4, 0x5A5A_5A5A), "address")
            b.emit(_mov_imm(acc, width, ph), "value")
            b.emit(Instruction.create_reg_reg(_OUT[width], dx, acc))
        case Routine.CF8_READ | Routine.CF8_WRITE:
            eax, esi = Register.EAX, Register.ESI
            b.emit(_mov_imm(Register.EDX, 4, 0xCF8))
            b.emit(Instruction.create_reg_reg(Code.IN_EAX_DX, eax, dx))  # save 0xCF8
            b.emit(Instruction.create_reg_reg(Code.MOV_R32_RM32, esi, eax))
            b.emit(_mov_imm(eax, 4, 0x5A5A_5A5A), "cf8")
            b.emit(Instruction.create_reg_reg(Code.OUT_DX_EAX, dx, eax))  # select the register
            b.emit(_mov_imm(Register.DL, 1, 0x5A), "lane")  # dx = 0xCFC + lane
            if which is Routine.CF8_READ:
                b.emit(Instruction.create_reg_reg(_IN[width], acc, dx))
                b.emit(store(width, result))
            else:
                b.emit(_mov_imm(acc, width, ph), "value")
                b.emit(Instruction.create_reg_reg(_OUT[width], dx, acc))
            b.emit(_mov_imm(Register.DL, 1, 0xF8))
            b.emit(Instruction.create_reg_reg(Code.MOV_R32_RM32, eax, esi))
            b.emit(Instruction.create_reg_reg(Code.OUT_DX_EAX, dx, eax))  # restore 0xCF8
        case Routine.MEM_READ_LOOP:  # benchmark: load forever
            top = b.rip
            b.emit(load(width, 0x5A5A_5A5A_5A5A_5A5A), "address")
            back = Instruction.create_branch(Code.JMP_REL32_64, top)
        case Routine.IO_READ_LOOP:  # benchmark: read a port forever
            b.emit(_mov_imm(Register.EDX, 4, 0x5A5A_5A5A), "address")
            top = b.rip
            b.emit(Instruction.create_reg_reg(_IN[width], acc, dx))
            back = Instruction.create_branch(Code.JMP_REL32_64, top)
    b.emit(back)
    return b.template()


def fault_stub(vector: int) -> list[Instruction]:
    """CPL0 entry for exception ``vector``: make the frame uniform, push the vector, halt."""
    code = [] if vector in VECTORS_WITH_ERROR_CODE else [Instruction.create_i32(Code.PUSHQ_IMM8, 0)]
    return [*code, Instruction.create_i32(Code.PUSHQ_IMM8, vector), Instruction.create(Code.HLT)]


# ------------------------------------------------------------------ image
def _descriptor(base: int, limit: int, access: int, flags: int) -> int:
    return (
        (limit & 0xFFFF)
        | (base & 0xFFFFFF) << 16
        | access << 40
        | ((limit >> 16) & 0xF) << 48
        | flags << 52
        | ((base >> 24) & 0xFF) << 56
    )


TABLE_FLAGS = 0x67
"""Present, writable, user, accessed, dirty (set, so the walker never writes the tables)."""
LEAF_FLAGS = 0xE7
"""As TABLE_FLAGS, plus page size (a 1 GiB or 2 MiB page)."""


@cache
def build_image(layout: Layout) -> bytes:
    """Page tables, descriptor tables, TSS and fault stubs: the shared, read-only part of every guest."""
    image = bytearray(IMAGE_SIZE)
    base = layout.base
    if layout.gbpages:  # PML4[i] -> PDPT i: 512 pages of 1 GiB
        for i in range(max(1, layout.reach >> 39)):
            table = PAGING + i * PAGE
            struct.pack_into("<Q", image, PML4 + 8 * i, (base + table) | TABLE_FLAGS)
            count = min(512, layout.reach >> 30)
            entries = [((i << 39) | (j << 30)) | LEAF_FLAGS for j in range(count)]
            struct.pack_into(f"<{count}Q", image, table, *entries)
    else:  # PML4[0] -> PDPT -> one page directory per GiB: 512 pages of 2 MiB
        struct.pack_into("<Q", image, PML4, (base + PAGING) | TABLE_FLAGS)
        for j in range(min(512, layout.reach >> 30)):
            directory = PAGING + (j + 1) * PAGE
            struct.pack_into("<Q", image, PAGING + 8 * j, (base + directory) | TABLE_FLAGS)
            entries = [((j << 30) | (k << 21)) | LEAF_FLAGS for k in range(512)]
            struct.pack_into("<512Q", image, directory, *entries)
    tss_va = layout.va(TSS)
    gdt = [
        0,
        _descriptor(0, 0xFFFFF, 0x9B, 0xA),  # 0x08 kernel code, 64-bit
        _descriptor(0, 0xFFFFF, 0x93, 0xC),  # 0x10 kernel data
        _descriptor(0, 0xFFFFF, 0xF3, 0xC),  # 0x18 user data
        _descriptor(0, 0xFFFFF, 0xFB, 0xA),  # 0x20 user code, 64-bit
        _descriptor(tss_va & 0xFFFFFFFF, TSS_LIMIT, 0x8B, 0x0),  # 0x28 busy 64-bit TSS
        tss_va >> 32,
    ]
    struct.pack_into(f"<{len(gdt)}Q", image, GDT, *gdt)
    struct.pack_into("<Q", image, TSS + 4, layout.va(STACK_TOP))  # RSP0
    struct.pack_into("<H", image, TSS + 0x66, IO_BITMAP - TSS)
    image[TSS + TSS_LIMIT] = 0xFF
    for vector in range(32):
        target = layout.va(FAULT_STUBS + vector * FAULT_SLOT)
        low = (target & 0xFFFF) | KERNEL_CS << 16 | 0x8E << 40 | ((target >> 16) & 0xFFFF) << 48
        struct.pack_into("<QQ", image, IDT + 16 * vector, low, target >> 32)
        stub = assemble(fault_stub(vector), target)
        start = FAULT_STUBS + vector * FAULT_SLOT
        image[start : start + len(stub)] = stub
    return bytes(image)


def body_va(layout: Layout) -> int:
    """Virtual address of the op routine: right after the doorbell store in the op slot."""
    return layout.va(SLOT) + len(doorbell(layout))
