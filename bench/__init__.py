"""Benchmarks of AlgoEdge (run from the repository root with ``python -m bench.<name>``); never timed tests."""
