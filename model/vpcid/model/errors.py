"""Typed errors of the data manager (R-ERR-*).

Every rejected operation raises a subclass of :class:`VpcidError` and leaves
the data manager exactly as it was (R-ERR-001). Each class carries a stable
``kind`` string that traces and reports use to name the error (R-ERR-003).
"""

from __future__ import annotations


class VpcidError(Exception):
    """Base of every error the data manager raises (R-ERR-001)."""

    kind = "error"


class InvalidArgument(VpcidError, ValueError):
    """An argument is of the wrong type or out of its range (R-ERR-002)."""

    kind = "invalid-argument"


class UnknownVm(VpcidError, LookupError):
    """No VM element has this id (R-DS-002)."""

    kind = "unknown-vm"


class DuplicateVm(VpcidError):
    """A VM element with this id already exists (R-DS-001)."""

    kind = "duplicate-vm"


class UnknownDevice(VpcidError, LookupError):
    """No VPCID instance is plugged at this BDF of the VM (R-DS-004)."""

    kind = "unknown-device"


class SlotOccupied(VpcidError):
    """The BDF already holds an instance (R-HP-001)."""

    kind = "slot-occupied"


class BadWidth(VpcidError, ValueError):
    """The access width is not one the address space allows (R-ACC-001)."""

    kind = "bad-width"


class Misaligned(VpcidError, ValueError):
    """The access is not naturally aligned where the profile or the space requires it (R-ACC-002)."""

    kind = "misaligned"


class DeviceTypeError(VpcidError, ValueError):
    """A device type definition is inconsistent (R-DT-001)."""

    kind = "bad-device-type"


class ProfileError(VpcidError, ValueError):
    """A profile manifest names an unknown axis or value (R-VAR-001)."""

    kind = "bad-profile"


class BlobError(VpcidError, ValueError):
    """A data blob or VM snapshot is malformed or corrupt (R-BLOB-*)."""

    kind = "bad-blob"


class BlobMismatch(BlobError):
    """A well-formed blob does not fit the instance it is restored into (R-SR-003, R-SR-004)."""

    kind = "blob-mismatch"
