"""z3 proofs over the reference model; importing this package registers them all.

See ``spec/proofs/README.md`` for what each proof establishes and how it is
tied to the model's code, and :mod:`vpcid.conformance.formal` for the engine.
"""

from . import bars, cam, lookup, masked_write

__all__ = ["bars", "cam", "lookup", "masked_write"]
