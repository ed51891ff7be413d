"""Benchmarks that print figures, never pass or fail: `python -m speakstream.bench --help`.

Targets live here rather than in timed tests, and every figure that depends on the
machine's load is printed next to a baseline measured in the same run.
"""
