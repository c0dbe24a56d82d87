"""vpcid conformance suite."""
