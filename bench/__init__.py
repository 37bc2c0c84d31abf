"""Benchmarks: they print figures and write bench/results/*.json; they never pass or fail."""
