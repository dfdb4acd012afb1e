"""Retraining a derived architecture from scratch (the step after a search)."""
from .config import RetrainConfig
from .genotypes import resolve_genotype
from .run import RetrainResult, make_network, run_retrain
from .trainer import Trainer

__all__ = ["RetrainConfig", "RetrainResult", "Trainer", "make_network", "resolve_genotype", "run_retrain"]
