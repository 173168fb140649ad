"""Benchmarks (`python -m tools.bench text|vision|rank|sparse|ablate`); see tools/bench/__main__.py."""
