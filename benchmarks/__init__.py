"""Benchmarks against a private containerd: ``make bench`` (``python -m benchmarks``)."""
