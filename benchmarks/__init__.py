"""Benchmarks: `python -m benchmarks` (or `make bench`) prints ratio tables against references."""
