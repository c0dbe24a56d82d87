"""vpcid reference model of the VPCID data manager.

Read :mod:`vpcid.model.manager` beside ``spec/``; everything a user needs is
re-exported here.
"""

from vpcid.model.bdf import Bdf
from vpcid.model.behaviour import (
    MEMORY,
    BarBehaviour,
    ConfigBehaviour,
    DeviceData,
    MemoryBehaviour,
    SparseMemory,
)
from vpcid.model.catalog import BRIDGES, CATALOG
from vpcid.model.devicetype import (
    BarKind,
    BarSpec,
    BridgeRegisters,
    Capability,
    ConfigLayout,
    ConfigSpace,
    DeviceType,
    ExtendedCapability,
    IoWindow,
    PrefetchWindow,
    Register,
    RegisterClass,
    RomSpec,
    layout,
)
from vpcid.model.errors import (
    BadWidth,
    BlobError,
    BlobMismatch,
    DeviceTypeError,
    DuplicateVm,
    InvalidArgument,
    Misaligned,
    ProfileError,
    SlotOccupied,
    UnknownDevice,
    UnknownVm,
    VpcidError,
)
from vpcid.model.manager import DataManager, TableEntry, VmTables
from vpcid.model.profile import AXES, DEFAULT_PROFILE, Profile

__all__ = [
    "AXES",
    "BRIDGES",
    "CATALOG",
    "DEFAULT_PROFILE",
    "MEMORY",
    "BadWidth",
    "BarBehaviour",
    "BarKind",
    "BarSpec",
    "Bdf",
    "BlobError",
    "BlobMismatch",
    "BridgeRegisters",
    "Capability",
    "ConfigBehaviour",
    "ConfigLayout",
    "ConfigSpace",
    "DataManager",
    "DeviceData",
    "DeviceType",
    "DeviceTypeError",
    "DuplicateVm",
    "ExtendedCapability",
    "InvalidArgument",
    "IoWindow",
    "MemoryBehaviour",
    "Misaligned",
    "PrefetchWindow",
    "Profile",
    "ProfileError",
    "Register",
    "RegisterClass",
    "RomSpec",
    "SlotOccupied",
    "SparseMemory",
    "TableEntry",
    "UnknownDevice",
    "UnknownVm",
    "VmTables",
    "VpcidError",
    "layout",
]  # fmt: skip
