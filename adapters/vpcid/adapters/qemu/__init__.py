"""QEMU's own PCI device models, certified through qtest (``--adapter qemu:DEVICE[,options]``).

See ``docs/qemu.md``: how the adapter drives QEMU, how it discovers a
device's layout, the profile QEMU declares, and how to certify any PCI
device model. QEMU's bridges are certified alone (``qemu:pcie-root-port``,
``qemu:pci-bridge,chassis_nr=1``, ``qemu:x3130-upstream``,
``qemu:xio3130-downstream``) or with a device below them: the topology is
given in the adapter argument, ``vpcid-behind=pcie-root-port``,
``vpcid-behind=pci-bridge`` or ``vpcid-behind=x3130``
(:data:`~vpcid.adapters.qemu.discover.BRIDGE_CHAINS`), e.g.
``--adapter qemu:edu,vpcid-behind=x3130``.
"""

from vpcid.adapters.qemu.adapter import QEMU_PROFILE, OpaqueRange, QemuAdapter, adapter, opaque_of

__all__ = ["QEMU_PROFILE", "OpaqueRange", "QemuAdapter", "adapter", "opaque_of"]
