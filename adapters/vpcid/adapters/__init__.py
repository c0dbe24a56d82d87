"""vpcid adapters: bridges from the suite to implementations."""
