"""Benchmarks: each measures a figure against a raw floor taken in the same run."""
