"""The suite: one module per contract area (SPEC.md). Checks register in ``conformance.catalog``."""
