"""Benchmarks: NAS-Bench-201 ground truth and the random-search baseline."""
from .nb201_table import DATASETS, DEFAULT_TABLE, NB201Table, Score, resolve_arch

__all__ = ["DATASETS", "DEFAULT_TABLE", "NB201Table", "Score", "resolve_arch"]
