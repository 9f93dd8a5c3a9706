"""Benchmarks: `python -m bench.run --size small|medium|large` (see bench/README.md)."""
