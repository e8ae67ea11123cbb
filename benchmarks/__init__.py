"""Benchmarks: python -m benchmarks.<integration> [--quick]."""
