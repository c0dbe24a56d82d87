"""The KVM backend: real vCPUs execute every guest-visible access (issue 6).

- :mod:`~vpcid.adapters.kvm.kvmapi`: a small typed layer over the KVM ioctls.
- :mod:`~vpcid.adapters.kvm.guest`: the guest image and routines, encoded with iced-x86.
- :mod:`~vpcid.adapters.kvm.machine`: KVM VMs with one vCPU running those routines.
- :mod:`~vpcid.adapters.kvm.adapter`: the adapter and its factories ``adapter`` and ``adapter_cython``.
"""

from vpcid.adapters.kvm.adapter import KvmAdapter, adapter, adapter_cython
from vpcid.adapters.kvm.kvmapi import unavailable_reason
from vpcid.adapters.kvm.machine import GuestError

__all__ = ["GuestError", "KvmAdapter", "adapter", "adapter_cython", "unavailable_reason"]
