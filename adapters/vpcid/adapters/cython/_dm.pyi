"""Typed interface of the compiled module ``vpcid.adapters.cython._dm`` (built from ``_dm.pyx``)."""

from collections.abc import Mapping, Sequence
from types import TracebackType

from vpcid.adapters.base import AdapterInfo
from vpcid.conformance.trace import Observation, Op
from vpcid.model import Bdf, DeviceType, Profile
from vpcid.model.behaviour import BarBehaviour
from vpcid.model.manager import TopologyNode, VmTables

ERROR_KINDS: tuple[str, ...]
"""Error kind of each error code; index 0 is "ok", the last is "empty-slot"."""

SHA_ENGINES: tuple[str, ...]
"""Names of the SHA-256 engines: "portable", "openssl", "sha-ni"."""

def sha_engine() -> str:
    """The SHA-256 engine blobs are hashed with (the fastest available, or ``VPCID_SHA_ENGINE``)."""

def available_sha_engines() -> tuple[str, ...]:
    """The SHA-256 engines this build can run on this machine."""

def use_sha_engine(name: str) -> str:
    """Switch the SHA-256 engine; return the previous one's name. ValueError if not available."""

def sha256(data: bytes | bytearray | memoryview) -> bytes:
    """SHA-256 of ``data`` with the engine in use."""

def sha256_pair(
    first: bytes | bytearray | memoryview, second: bytes | bytearray | memoryview
) -> tuple[bytes, bytes]:
    """SHA-256 of two messages, hashed as two streams where they overlap (snapshots seal blobs in pairs)."""

class TypeInfo:
    """A device type as the compiled manager holds it: layout, BARs, behaviour."""

    @property
    def dtype(self) -> DeviceType: ...
    @property
    def name(self) -> str: ...
    @property
    def name_bytes(self) -> bytes: ...
    @property
    def fingerprint(self) -> bytes: ...
    @property
    def accepts(self) -> frozenset[bytes]: ...
    @property
    def behaviour(self) -> BarBehaviour | None: ...

class Manager:
    """The compiled data manager; the API and error classes of ``vpcid.model.DataManager``."""

    def __init__(self, profile: Profile | None = None) -> None: ...
    @property
    def profile(self) -> Profile: ...
    @property
    def last_digest(self) -> bytes | None:
        """Digest (last 32 bytes) of the last blob or snapshot this manager produced, or None."""
    def register_type(self, dtype: DeviceType) -> None: ...
    def create_vm(self, vm_id: int, *, ecam_base: int | None = 0xB000_0000) -> None: ...
    def destroy_vm(self, vm_id: int) -> None: ...
    def vm_ids(self) -> tuple[int, ...]: ...
    def plug(self, vm_id: int, bdf: Bdf, dtype: DeviceType) -> None: ...
    def unplug(self, vm_id: int, bdf: Bdf) -> None: ...
    def config_read(self, vm_id: int, bdf: Bdf, offset: int, width: int) -> int: ...
    def config_write(self, vm_id: int, bdf: Bdf, offset: int, width: int, value: int) -> None: ...
    def io_read(self, vm_id: int, port: int, width: int) -> int: ...
    def io_write(self, vm_id: int, port: int, width: int, value: int) -> None: ...
    def mmio_read(self, vm_id: int, address: int, width: int) -> int: ...
    def mmio_write(self, vm_id: int, address: int, width: int, value: int) -> None: ...
    def reset(self, vm_id: int, bdf: Bdf) -> None: ...
    def reset_vm(self, vm_id: int) -> None: ...
    def set_ecam_base(self, vm_id: int, base: int | None) -> None: ...
    def ecam_base(self, vm_id: int) -> int | None: ...
    def save(self, vm_id: int, bdf: Bdf) -> bytes: ...
    def restore(self, vm_id: int, bdf: Bdf, blob: bytes | bytearray | memoryview) -> None: ...
    def snapshot(self, vm_id: int) -> bytes: ...
    def restore_vm(self, vm_id: int, snapshot: bytes | bytearray | memoryview) -> None: ...
    def tables(self, vm_id: int) -> VmTables: ...
    def resolve(self, vm_id: int, space: str, address: int) -> tuple[Bdf, int] | None: ...
    def topology(self, vm_id: int) -> tuple[TopologyNode, ...]: ...
    def device_type(self, vm_id: int, bdf: Bdf) -> DeviceType: ...
    def cf8(self, vm_id: int) -> int: ...
    def region_config(
        self, vm_id: int, bdf: Bdf, offset: int, length: int, payload: bytes | None = None
    ) -> bytes:
        """Configuration bytes by BDF, one access per dword (a VMM's view; writes return b"")."""
    def region_bar(
        self, vm_id: int, bdf: Bdf, index: int, offset: int, length: int, payload: bytes | None = None
    ) -> bytes:
        """BAR ``index`` (6: the ROM) contents at ``offset``, decoding or not (writes return b"")."""

class ThreadLock:
    """A lock for threads, as ``threading.Lock`` is, that compiled code takes without a Python call."""

    def acquire(self, blocking: bool = True) -> bool: ...
    def release(self) -> None: ...
    def locked(self) -> bool: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool: ...

class RegionPath:
    """REGION_READ and REGION_WRITE messages of one served vfio-user device, answered in compiled code."""

    def __init__(
        self,
        manager: Manager,
        vm_id: int,
        bdf: Bdf,
        regions: Sequence[tuple[int, int]],
        manager_lock: ThreadLock,
        device_lock: ThreadLock,
        stop_flag: bytearray,
        busy_poll_ns: int = 0,
    ) -> None: ...
    @property
    def busy_poll_ns(self) -> int: ...
    def answer(
        self,
        rx: bytes | bytearray | memoryview,
        start: int,
        end: int,
        read_limit: int,
        write_limit: int,
        flush: int,
    ) -> tuple[int, int, bytes]:
        """(bytes consumed, messages answered, replies) for the accesses at the start of ``rx[start:end]``."""
    def serve(
        self,
        fd: int,
        chunk: bytearray | memoryview,
        control_room: int,
        read_limit: int,
        write_limit: int,
        flush: int,
    ) -> tuple[int, int, int, list[tuple[int, int, bytes]], int, bytes]:
        """Read and answer until a read is not answered whole: (read length, consumed, answered,
        control messages, flags, replies not sent)."""

class Trace:
    """A trace encoded for :meth:`CythonAdapter.run_batch`: one C record per operation."""

    @property
    def length(self) -> int: ...
    def __len__(self) -> int: ...

class BatchResult:
    """Every observation of a batch run, compactly: a kind and a value per operation."""

    @property
    def kinds(self) -> bytes:
        """Per operation: 0 ok, 1 value, 2 error (value = error code), 3 digest, 4 tables."""
    @property
    def length(self) -> int: ...
    @property
    def profile(self) -> dict[str, tuple[int, int]] | None:
        """With ``run_batch(..., profile=True)``: operation kind -> (count, nanoseconds)."""
    def value(self, i: int) -> int:
        """Read value, error code, or where the operation's digest or table rows are kept."""
    def observation(self, i: int) -> Observation: ...
    def observations(self) -> list[Observation]: ...
    def __len__(self) -> int: ...

class CythonAdapter:
    """The compiled data manager behind the adapter protocol, with a batch engine."""

    def __init__(
        self,
        profile: Profile | None = None,
        name: str = "cython",
        types: Mapping[str, DeviceType] | None = None,
    ) -> None: ...
    @property
    def manager(self) -> Manager: ...
    @property
    def info(self) -> AdapterInfo: ...
    def execute(self, op: Op) -> Observation: ...
    def close(self) -> None: ...
    def encode(self, ops: Sequence[Op]) -> Trace: ...
    def run_batch(self, trace: Trace, profile: bool = False) -> BatchResult: ...
    def execute_all(self, ops: Sequence[Op]) -> list[Observation]: ...
