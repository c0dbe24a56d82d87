"""QEMU's own PCI device models, certified through qtest (``--adapter qemu:DEVICE[,options]``).

See ``docs/qemu.md``: how the adapter drives QEMU, how it discovers a
device's layout, the profile QEMU declares, and how to certify any PCI
device model.
"""

from vpcid.adapters.qemu.adapter import QEMU_PROFILE, OpaqueRange, QemuAdapter, adapter, opaque_of

__all__ = ["QEMU_PROFILE", "OpaqueRange", "QemuAdapter", "adapter", "opaque_of"]
