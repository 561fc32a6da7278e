"""
Benchmarks: each bench_*.py module prints its results next to a baseline measured in the
same run.
"""
