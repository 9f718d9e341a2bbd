"""Negative controls: deliberately broken executors, one module per contract area."""
