"""vfio-user for vpcid: serve VPCID instances to any VMM, certify any vfio-user device server.

- :mod:`.protocol`: the wire format (header, payload structures, typed errors);
- :mod:`.server`: a server exposing VPCID instances of a data manager as devices;
- :mod:`.client`: a client (what a VMM sends);
- :mod:`.adapter`: the suite's adapter, a thin VMM over the client (``--adapter vfio-user:ARG``);
- :mod:`.fuzz`: the message-parser fuzzer (``python -m vpcid.adapters.vfio_user.fuzz``).

The mapping of VPCIDs onto vfio-user is spec/formats/vfio-user.md.
"""

from vpcid.adapters.vfio_user.adapter import VfioUserAdapter, adapter

__all__ = ["VfioUserAdapter", "adapter"]
