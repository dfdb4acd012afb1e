"""Candidate-op building blocks shared by the search spaces (each space keeps its own op table)."""
from .common import FactorizedReduce, Identity, Pool, ReLUConvBN, Zero

__all__ = ["FactorizedReduce", "Identity", "Pool", "ReLUConvBN", "Zero"]
