"""A small, typed layer over the Linux KVM API (``/dev/kvm``, API version 12), in plain ioctls.

Objects own their file descriptors and mappings and release them in
``close()`` (idempotent; also on context exit): :class:`Kvm` (the system
fd), :class:`Vm` (a VM fd and its memory slots), :class:`Vcpu` (a vCPU fd
and its shared ``kvm_run`` page). :meth:`Vcpu.run` enters the guest and
returns the exit reason; the exit payloads are decoded from ``kvm_run``
by :meth:`Vcpu.io_exit`, :meth:`Vcpu.mmio_exit` and friends.

ioctl numbers are computed from the structure sizes (``_IOW`` and
friends), so a layout mistake shows up as a wrong number the kernel
rejects, not as silent corruption. ``fcntl.ioctl`` takes the request as an
unsigned 32-bit number and an integer argument as a signed C int; structure
arguments go through ctypes buffers.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

KVM_PATH = "/dev/kvm"
KVM_API_VERSION = 12

# ------------------------------------------------------------------ ioctl numbers
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(_IOC_NONE, nr, 0)


def _iow(nr: int, struct_type: type[ctypes.Structure]) -> int:
    return _ioc(_IOC_WRITE, nr, ctypes.sizeof(struct_type))


def _ior(nr: int, struct_type: type[ctypes.Structure]) -> int:
    return _ioc(_IOC_READ, nr, ctypes.sizeof(struct_type))


def _iowr(nr: int, struct_type: type[ctypes.Structure]) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, nr, ctypes.sizeof(struct_type))


# ------------------------------------------------------------------ structures
class KvmRegs(ctypes.Structure):
    """``struct kvm_regs``: the general-purpose registers, RIP and RFLAGS."""

    _fields_: ClassVar = [
        (name, ctypes.c_uint64)
        for name in (
            "rax",
            "rbx",
            "rcx",
            "rdx",
            "rsi",
            "rdi",
            "rsp",
            "rbp",
            "r8",
            "r9",
            "r10",
            "r11",
            "r12",
            "r13",
            "r14",
            "r15",
            "rip",
            "rflags",
        )
    ]
    rax: int
    rbx: int
    rcx: int
    rdx: int
    rsi: int
    rdi: int
    rsp: int
    rbp: int
    r8: int
    r9: int
    r10: int
    r11: int
    r12: int
    r13: int
    r14: int
    r15: int
    rip: int
    rflags: int


class KvmSegment(ctypes.Structure):
    """``struct kvm_segment``: a segment register with its hidden part."""

    _fields_: ClassVar = [
        ("base", ctypes.c_uint64),
        ("limit", ctypes.c_uint32),
        ("selector", ctypes.c_uint16),
        ("type", ctypes.c_uint8),
        ("present", ctypes.c_uint8),
        ("dpl", ctypes.c_uint8),
        ("db", ctypes.c_uint8),
        ("s", ctypes.c_uint8),
        ("l", ctypes.c_uint8),
        ("g", ctypes.c_uint8),
        ("avl", ctypes.c_uint8),
        ("unusable", ctypes.c_uint8),
        ("padding", ctypes.c_uint8),
    ]
    base: int
    limit: int
    selector: int
    type: int
    present: int
    dpl: int
    db: int
    s: int
    l: int  # noqa: E741 - the kernel's field name
    g: int
    avl: int
    unusable: int


class KvmDtable(ctypes.Structure):
    """``struct kvm_dtable``: GDTR or IDTR."""

    _fields_: ClassVar = [
        ("base", ctypes.c_uint64),
        ("limit", ctypes.c_uint16),
        ("padding", ctypes.c_uint16 * 3),
    ]
    base: int
    limit: int


class KvmSregs(ctypes.Structure):
    """``struct kvm_sregs``: segments, descriptor tables, control registers, EFER."""

    _fields_: ClassVar = [
        *((name, KvmSegment) for name in ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")),
        ("gdt", KvmDtable),
        ("idt", KvmDtable),
        *((name, ctypes.c_uint64) for name in ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")),
        ("interrupt_bitmap", ctypes.c_uint64 * 4),
    ]
    cs: KvmSegment
    ds: KvmSegment
    es: KvmSegment
    fs: KvmSegment
    gs: KvmSegment
    ss: KvmSegment
    tr: KvmSegment
    ldt: KvmSegment
    gdt: KvmDtable
    idt: KvmDtable
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    cr8: int
    efer: int
    apic_base: int


class KvmUserspaceMemoryRegion(ctypes.Structure):
    """``struct kvm_userspace_memory_region``: one memory slot."""

    _fields_: ClassVar = [
        ("slot", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("guest_phys_addr", ctypes.c_uint64),
        ("memory_size", ctypes.c_uint64),
        ("userspace_addr", ctypes.c_uint64),
    ]


class KvmCpuidEntry2(ctypes.Structure):
    """``struct kvm_cpuid_entry2``."""

    _fields_: ClassVar = [
        *((name, ctypes.c_uint32) for name in ("function", "index", "flags", "eax", "ebx", "ecx", "edx")),
        ("padding", ctypes.c_uint32 * 3),
    ]
    function: int
    index: int
    flags: int
    eax: int
    ebx: int
    ecx: int
    edx: int


class KvmCpuid2Header(ctypes.Structure):
    """``struct kvm_cpuid2`` without its flexible array (for the ioctl numbers)."""

    _fields_: ClassVar = [("nent", ctypes.c_uint32), ("padding", ctypes.c_uint32)]


MAX_CPUID_ENTRIES = 256


class KvmCpuid2(ctypes.Structure):
    """``struct kvm_cpuid2`` with room for :data:`MAX_CPUID_ENTRIES` entries."""

    _fields_: ClassVar = [
        ("nent", ctypes.c_uint32),
        ("padding", ctypes.c_uint32),
        ("entries", KvmCpuidEntry2 * MAX_CPUID_ENTRIES),
    ]
    nent: int
    entries: ctypes.Array[KvmCpuidEntry2]


class KvmVcpuEvents(ctypes.Structure):
    """``struct kvm_vcpu_events`` (x86), read to describe a pending exception."""

    _fields_: ClassVar = [
        ("exc_injected", ctypes.c_uint8),
        ("exc_nr", ctypes.c_uint8),
        ("exc_has_error_code", ctypes.c_uint8),
        ("exc_pending", ctypes.c_uint8),
        ("exc_error_code", ctypes.c_uint32),
        ("rest", ctypes.c_uint8 * 56),
    ]
    exc_injected: int
    exc_nr: int
    exc_has_error_code: int
    exc_pending: int
    exc_error_code: int


KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, KvmCpuid2Header)
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, KvmUserspaceMemoryRegion)
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, KvmRegs)
KVM_SET_REGS = _iow(0x82, KvmRegs)
KVM_GET_SREGS = _ior(0x83, KvmSregs)
KVM_SET_SREGS = _iow(0x84, KvmSregs)
KVM_SET_CPUID2 = _iow(0x90, KvmCpuid2Header)
KVM_GET_VCPU_EVENTS = _ior(0x9F, KvmVcpuEvents)
KVM_SET_VCPU_EVENTS = _iow(0xA0, KvmVcpuEvents)

KVM_CAP_USER_MEMORY = 3
KVM_CAP_SET_TSS_ADDR = 4
KVM_CAP_EXT_CPUID = 7
KVM_CAP_NR_MEMSLOTS = 10
KVM_CAP_VCPU_EVENTS = 41


class ExitReason(IntEnum):
    """``KVM_EXIT_*``: why ``KVM_RUN`` returned."""

    UNKNOWN = 0
    EXCEPTION = 1
    IO = 2
    HYPERCALL = 3
    DEBUG = 4
    HLT = 5
    MMIO = 6
    IRQ_WINDOW_OPEN = 7
    SHUTDOWN = 8
    FAIL_ENTRY = 9
    INTR = 10
    SET_TPR = 11
    TPR_ACCESS = 12
    NMI = 16
    INTERNAL_ERROR = 17
    SYSTEM_EVENT = 24
    IOAPIC_EOI = 26
    HYPERV = 27
    X86_RDMSR = 29
    X86_WRMSR = 30
    DIRTY_RING_FULL = 31
    AP_RESET_HOLD = 32
    X86_BUS_LOCK = 33
    NOTIFY = 37
    MEMORY_FAULT = 39

    @classmethod
    def describe(cls, value: int) -> str:
        try:
            return f"KVM_EXIT_{cls(value).name}"
        except ValueError:
            return f"KVM exit reason {value}"


# kvm_run: header, then the exit union at offset 32
RUN_EXIT_REASON = 8
RUN_UNION = 32
_U32 = struct.Struct("<I")
_IO_EXIT = struct.Struct("<BBHIQ")  # direction, size, port, count, data_offset
_MMIO_EXIT = struct.Struct("<Q8sIB")  # phys_addr, data, len, is_write
_INTERNAL = struct.Struct("<II")
_FAIL_ENTRY = struct.Struct("<QI")
_SYSTEM_EVENT = struct.Struct("<II")
IO_IN, IO_OUT = 0, 1
MMIO_DATA = RUN_UNION + 8


@dataclass(frozen=True, slots=True)
class IoExit:
    """``KVM_EXIT_IO``: a port access; its bytes live in ``kvm_run`` at ``data_offset``."""

    out: bool
    size: int
    port: int
    count: int
    data_offset: int


@dataclass(frozen=True, slots=True)
class MmioExit:
    """``KVM_EXIT_MMIO``: a guest-physical access no memory slot backs."""

    phys_addr: int
    data: bytes
    length: int
    is_write: bool


class KvmError(OSError):
    """An ioctl on ``/dev/kvm``, a VM or a vCPU failed."""


_libc = ctypes.CDLL(None, use_errno=True)
raw_ioctl = _libc.ioctl
"""libc ``ioctl`` through ctypes, for the hot path (``KVM_RUN``): integer arguments below 2^31 only.

About 0.5 us a call here, against 1.25 us for ``fcntl.ioctl`` (which audits
and parses its arguments) and 1 us with ctypes ``argtypes`` set (which
converts them); it releases the GIL while the guest runs. Returns -1 with
``ctypes.get_errno()`` set.
"""
get_errno = ctypes.get_errno


def _ioctl_int(fd: int, request: int, arg: int = 0) -> int:
    try:
        return fcntl.ioctl(fd, request, arg)
    except OSError as exc:
        raise KvmError(exc.errno, f"ioctl {request:#x}: {os.strerror(exc.errno or 0)}") from None


def _ioctl_buf(fd: int, request: int, buf: ctypes.Structure) -> None:
    try:
        fcntl.ioctl(fd, request, buf, True)
    except OSError as exc:
        raise KvmError(exc.errno, f"ioctl {request:#x}: {os.strerror(exc.errno or 0)}") from None


def unavailable_reason() -> str | None:
    """Why KVM cannot be used here (one line), or None when it can."""
    if not os.path.exists(KVM_PATH):
        return f"{KVM_PATH} does not exist (no KVM on this machine)"
    try:
        fd = os.open(KVM_PATH, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot open {KVM_PATH}: {exc.strerror}"
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION, 0)
        if version != KVM_API_VERSION:
            return f"{KVM_PATH} speaks KVM API version {version}, not {KVM_API_VERSION}"
        if not fcntl.ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY):
            return f"{KVM_PATH} lacks KVM_CAP_USER_MEMORY"
    except OSError as exc:
        return f"{KVM_PATH} does not answer KVM ioctls: {exc.strerror}"
    finally:
        os.close(fd)
    return None


class Kvm:
    """The KVM system fd: capabilities, supported CPUID, VM creation."""

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise KvmError(errno.ENODEV, reason)
        self.fd = os.open(KVM_PATH, os.O_RDWR | os.O_CLOEXEC)
        self.run_size = _ioctl_int(self.fd, KVM_GET_VCPU_MMAP_SIZE)
        self._cpuid: KvmCpuid2 | None = None

    def check_extension(self, cap: int) -> int:
        return _ioctl_int(self.fd, KVM_CHECK_EXTENSION, cap)

    def supported_cpuid(self) -> KvmCpuid2:
        """``KVM_GET_SUPPORTED_CPUID`` (cached)."""
        if self._cpuid is None:
            cpuid = KvmCpuid2()
            cpuid.nent = MAX_CPUID_ENTRIES
            _ioctl_buf(self.fd, KVM_GET_SUPPORTED_CPUID, cpuid)
            self._cpuid = cpuid
        return self._cpuid

    def cpuid_leaf(self, function: int, index: int = 0) -> KvmCpuidEntry2 | None:
        cpuid = self.supported_cpuid()
        for k in range(cpuid.nent):
            entry = cpuid.entries[k]
            if entry.function == function and entry.index == index:
                return entry
        return None

    def create_vm(self) -> Vm:
        return Vm(self, _ioctl_int(self.fd, KVM_CREATE_VM, 0))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Kvm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GuestMemory:
    """Anonymous host memory that backs guest-physical pages (shareable between VMs)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.map = mmap.mmap(
            -1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, mmap.PROT_READ | mmap.PROT_WRITE
        )
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.map))

    def close(self) -> None:
        if not self.map.closed:
            self.map.close()


class Vm:
    """A KVM VM: memory slots and vCPUs."""

    def __init__(self, kvm: Kvm, fd: int) -> None:
        self.kvm = kvm
        self.fd = fd
        self.vcpus: list[Vcpu] = []

    def set_memory(self, slot: int, guest_phys: int, memory: GuestMemory, flags: int = 0) -> None:
        """Map ``memory`` at ``guest_phys`` as slot ``slot`` (size 0 deletes the slot)."""
        region = KvmUserspaceMemoryRegion(slot, flags, guest_phys, memory.size, memory.address)
        _ioctl_buf(self.fd, KVM_SET_USER_MEMORY_REGION, region)

    def create_vcpu(self, index: int = 0) -> Vcpu:
        fd = _ioctl_int(self.fd, KVM_CREATE_VCPU, index)
        try:
            vcpu = Vcpu(fd, self.kvm.run_size)
        except BaseException:
            os.close(fd)
            raise
        self.vcpus.append(vcpu)
        return vcpu

    def close(self) -> None:
        for vcpu in self.vcpus:
            vcpu.close()
        self.vcpus.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Vcpu:
    """A vCPU: registers, ``KVM_RUN`` and the decoding of its exits."""

    def __init__(self, fd: int, run_size: int) -> None:
        self.fd = fd
        self.run_map = mmap.mmap(fd, run_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def run(self) -> int:
        """Enter the guest until the next exit; returns the ``KVM_EXIT_*`` reason.

        A signal that interrupts ``KVM_RUN`` (EINTR) is reported as
        :attr:`ExitReason.INTR`.
        """
        if raw_ioctl(self.fd, KVM_RUN, 0) < 0:
            code = get_errno()
            if code == errno.EINTR:
                return ExitReason.INTR
            raise KvmError(code, f"KVM_RUN: {os.strerror(code)}")
        return int(_U32.unpack_from(self.run_map, RUN_EXIT_REASON)[0])

    @property
    def exit_reason(self) -> int:
        return int(_U32.unpack_from(self.run_map, RUN_EXIT_REASON)[0])

    def io_exit(self) -> IoExit:
        direction, size, port, count, offset = _IO_EXIT.unpack_from(self.run_map, RUN_UNION)
        return IoExit(direction == IO_OUT, size, port, count, offset)

    def io_data(self, exit_: IoExit) -> bytes:
        return self.run_map[exit_.data_offset : exit_.data_offset + exit_.size * exit_.count]

    def set_io_data(self, exit_: IoExit, data: bytes) -> None:
        self.run_map[exit_.data_offset : exit_.data_offset + len(data)] = data

    def mmio_exit(self) -> MmioExit:
        phys, data, length, is_write = _MMIO_EXIT.unpack_from(self.run_map, RUN_UNION)
        return MmioExit(phys, data[:length], length, bool(is_write))

    def set_mmio_data(self, data: bytes) -> None:
        self.run_map[MMIO_DATA : MMIO_DATA + len(data)] = data

    def internal_error(self) -> tuple[int, tuple[int, ...]]:
        suberror, ndata = _INTERNAL.unpack_from(self.run_map, RUN_UNION)
        ndata = min(ndata, 16)
        return suberror, struct.unpack_from(f"<{ndata}Q", self.run_map, RUN_UNION + 8)

    def fail_entry(self) -> tuple[int, int]:
        reason, cpu = _FAIL_ENTRY.unpack_from(self.run_map, RUN_UNION)
        return reason, cpu

    def system_event(self) -> int:
        return int(_SYSTEM_EVENT.unpack_from(self.run_map, RUN_UNION)[0])

    def get_regs(self) -> KvmRegs:
        regs = KvmRegs()
        _ioctl_buf(self.fd, KVM_GET_REGS, regs)
        return regs

    def set_regs(self, regs: KvmRegs) -> None:
        _ioctl_buf(self.fd, KVM_SET_REGS, regs)

    def get_sregs(self) -> KvmSregs:
        sregs = KvmSregs()
        _ioctl_buf(self.fd, KVM_GET_SREGS, sregs)
        return sregs

    def set_sregs(self, sregs: KvmSregs) -> None:
        _ioctl_buf(self.fd, KVM_SET_SREGS, sregs)

    def get_events(self) -> KvmVcpuEvents:
        events = KvmVcpuEvents()
        _ioctl_buf(self.fd, KVM_GET_VCPU_EVENTS, events)
        return events

    def set_events(self, events: KvmVcpuEvents) -> None:
        _ioctl_buf(self.fd, KVM_SET_VCPU_EVENTS, events)

    def set_cpuid(self, cpuid: KvmCpuid2) -> None:
        _ioctl_buf(self.fd, KVM_SET_CPUID2, cpuid)

    def close(self) -> None:
        if not self.run_map.closed:
            self.run_map.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
