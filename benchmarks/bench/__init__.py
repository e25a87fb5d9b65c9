"""Benchmark code behind ``benchmarks/run.py``: shared helpers here, one module per scenario in ``scenarios/``."""
