"""Benchmarks: `python -m benchmarks` (or `make bench`) prints endpoint calls, wall times and synth costs."""
