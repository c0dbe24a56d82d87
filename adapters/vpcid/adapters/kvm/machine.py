"""KVM guests for the adapter: a :class:`Platform` (the KVM handle, the CPU facts, the shared
guest image) makes :class:`Guest` objects (a KVM VM with its memory slots and one vCPU,
parked at the doorbell of the op slot and ready for an operation).
"""

from __future__ import annotations

import contextlib
import ctypes
import struct

from vpcid.adapters.kvm import guest as g
from vpcid.adapters.kvm.kvmapi import (
    ExitReason,
    GuestMemory,
    Kvm,
    KvmCpuid2,
    KvmError,
    KvmRegs,
    KvmSegment,
    KvmSregs,
    Vcpu,
    Vm,
)

KVM_MEM_READONLY = 2
KVM_CAP_READONLY_MEM = 81
_FRAME = struct.Struct("<7Q")


class GuestError(RuntimeError):
    """An operation could not complete on the vCPU: a guest fault, a triple fault, an unexpected exit.

    The operation ends with this error; the adapter has already put a usable
    guest in place for the next one.
    """


class Platform:
    """The ``/dev/kvm`` handle, what the vCPU supports, and the image every guest shares."""

    def __init__(self, cpl: int = 0) -> None:
        if cpl not in (0, 3):
            raise ValueError("the guest runs at CPL0 or CPL3")
        self.kvm = Kvm()
        self.image: GuestMemory | None = None
        try:
            ext = self.kvm.cpuid_leaf(0x8000_0001)
            if ext is None or not ext.edx & (1 << 29):
                raise KvmError(0, "this KVM offers no long mode (CPUID 0x80000001 LM)")
            sizes = self.kvm.cpuid_leaf(0x8000_0008)
            phys_bits = sizes.eax & 0xFF if sizes is not None and sizes.eax & 0xFF else 36
            self.layout = g.Layout.for_cpu(phys_bits, bool(ext.edx & (1 << 26)), cpl)
            self.cpuid = KvmCpuid2()
            ctypes.memmove(
                ctypes.addressof(self.cpuid),
                ctypes.addressof(self.kvm.supported_cpuid()),
                ctypes.sizeof(KvmCpuid2),
            )
            self.image = GuestMemory(g.IMAGE_SIZE)
            self.image.map[:] = g.build_image(self.layout)
            self.image_flags = KVM_MEM_READONLY if self.kvm.check_extension(KVM_CAP_READONLY_MEM) else 0
        except BaseException:
            self.close()
            raise

    def guest(self) -> Guest:
        return Guest(self)

    def close(self) -> None:
        if self.image is not None:
            self.image.close()
        self.kvm.close()


def _segment(seg: KvmSegment, selector: int, code: bool, dpl: int) -> None:
    seg.base, seg.limit, seg.selector = 0, 0xFFFF_FFFF, selector
    seg.type = 0xB if code else 0x3  # execute/read or read/write, accessed
    seg.present, seg.dpl, seg.s, seg.g, seg.avl, seg.unusable = 1, dpl, 1, 1, 0, 0
    seg.l, seg.db = (1, 0) if code else (0, 1)


class Guest:
    """One KVM VM with its memory and one vCPU, running the op-slot loop of :mod:`guest`."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.layout = layout = platform.layout
        self.data: GuestMemory | None = None
        self.vm: Vm = platform.kvm.create_vm()
        try:
            assert platform.image is not None
            self.vm.set_memory(0, layout.base + g.IMAGE, platform.image, platform.image_flags)
            self.data = GuestMemory(g.DATA_SIZE)
            self.vm.set_memory(1, layout.base + g.DATA, self.data)
            self.vcpu: Vcpu = self.vm.create_vcpu(0)
            self.vcpu.set_cpuid(platform.cpuid)
            self.doorbell_code = g.doorbell(layout)
            self.body = g.SLOT - g.DATA + len(self.doorbell_code)
            """Offset of the op routine in the data memory."""
            self.reset()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ state
    def reset(self) -> None:
        """Put the vCPU at the op slot's doorbell, in long mode at the layout's CPL; run to the doorbell."""
        assert self.data is not None
        self.data.map[g.SLOT - g.DATA : g.SLOT - g.DATA + len(self.doorbell_code)] = self.doorbell_code
        self.post(b"\xeb\xfe")  # jmp $ : never reached before the first operation is posted
        sregs, regs = self.initial_state()
        self.vcpu.set_sregs(sregs)
        self.vcpu.set_regs(regs)
        reason = self.vcpu.run()
        if reason != ExitReason.MMIO or self.vcpu.mmio_exit().phys_addr != self.layout.base + g.DOORBELL:
            raise GuestError(
                f"the guest did not reach its doorbell after a reset: {self.describe_exit(reason)}"
            )

    def initial_state(self) -> tuple[KvmSregs, KvmRegs]:
        """Registers for the op slot's doorbell store: 64-bit mode, paging on, at the layout's CPL."""
        layout = self.layout
        sregs = self.vcpu.get_sregs()
        user = layout.cpl == 3
        _segment(sregs.cs, g.USER_CS if user else g.KERNEL_CS, True, layout.cpl)
        for name in ("ds", "es", "fs", "gs", "ss"):
            _segment(getattr(sregs, name), g.USER_DS if user else g.KERNEL_DS, False, layout.cpl)
        tr = sregs.tr
        tr.base, tr.limit, tr.selector, tr.type = layout.va(g.TSS), g.TSS_LIMIT, g.TSS_SEL, 0xB
        tr.present, tr.dpl, tr.s, tr.l, tr.db, tr.g, tr.unusable = 1, 0, 0, 0, 0, 0, 0
        sregs.ldt.selector, sregs.ldt.unusable, sregs.ldt.present, sregs.ldt.type = 0, 1, 0, 2
        sregs.gdt.base, sregs.gdt.limit = layout.va(g.GDT), 7 * 8 - 1
        sregs.idt.base, sregs.idt.limit = layout.va(g.IDT), 32 * 16 - 1
        sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer = g.CR0, layout.base + g.PML4, g.CR4_PAE, g.EFER_LME_LMA
        regs = KvmRegs()
        regs.rip, regs.rsp, regs.rflags = layout.va(g.SLOT), layout.va(g.STACK_TOP - 0x800), g.RFLAGS
        return sregs, regs

    def post(self, code: bytes) -> None:
        """Place an operation's routine after the doorbell store (the guest is parked there)."""
        assert self.data is not None
        self.data.map[self.body : self.body + len(code)] = code

    def result(self, width: int) -> int:
        """The value the guest stored at RESULT."""
        assert self.data is not None
        return int.from_bytes(self.data.map[g.RESULT - g.DATA : g.RESULT - g.DATA + width], "little")

    # ------------------------------------------------------------ diagnostics
    def describe_fault(self) -> str:
        """The exception a fault stub halted on: vector, error code, where, CR2 for a page fault."""
        regs = self.vcpu.get_regs()
        stubs = self.layout.va(g.FAULT_STUBS)
        if not stubs < regs.rip <= stubs + 32 * g.FAULT_SLOT:
            return f"the guest executed hlt at rip {regs.rip - 1:#x}"
        stack = regs.rsp - self.layout.va(g.DATA)
        if self.data is None or not 0 <= stack <= g.DATA_SIZE - _FRAME.size:
            return f"guest halted at rip {regs.rip:#x} with rsp {regs.rsp:#x} outside its stack"
        vector, error, rip, cs, _rflags, _rsp, _ss = _FRAME.unpack_from(self.data.map, stack)
        name = g.EXCEPTION_NAMES.get(vector, f"vector {vector}")
        text = f"guest fault {name} (vector {vector}, error code {error:#x}) at rip {rip:#x}, cs {cs:#x}"
        if vector == 14:
            text += f", address {self.vcpu.get_sregs().cr2:#x}"
        return text

    def describe_exit(self, reason: int) -> str:
        """One line about the exit the vCPU stopped on."""
        vcpu = self.vcpu
        text = ExitReason.describe(reason)
        if reason == ExitReason.IO:
            io = vcpu.io_exit()
            text += f" ({'out' if io.out else 'in'} port {io.port:#x}, size {io.size}, count {io.count})"
        elif reason == ExitReason.MMIO:
            mmio = vcpu.mmio_exit()
            text += f" ({'write' if mmio.is_write else 'read'} {mmio.phys_addr:#x}, {mmio.length} bytes)"
        elif reason == ExitReason.INTERNAL_ERROR:
            suberror, data = vcpu.internal_error()
            text += f" (suberror {suberror}, data {', '.join(f'{d:#x}' for d in data)})"
        elif reason == ExitReason.FAIL_ENTRY:
            text += f" (hardware reason {vcpu.fail_entry()[0]:#x})"
        elif reason == ExitReason.SYSTEM_EVENT:
            text += f" (event {vcpu.system_event()})"
        elif reason == ExitReason.HLT:
            text += f" ({self.describe_fault()})"
        with contextlib.suppress(KvmError):
            text += f" at rip {vcpu.get_regs().rip:#x}"
        return text

    def close(self) -> None:
        self.vm.close()
        if self.data is not None:
            self.data.close()
