"""Benchmarks that print figures and ratios (``python -m bench.run`` is the end-to-end one)."""
