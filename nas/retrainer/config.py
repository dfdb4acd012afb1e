"""Typed config of ``nas-retrain``: train a derived architecture from scratch.

Loaded with the same machinery as the search config (``_base_`` inheritance, dotted overrides,
unknown keys rejected): :func:`nas.config.load_config` with ``cls=RetrainConfig``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ..bounds import RUN_NAME, RUN_NAME_HINT, ranged, matching
from ..config import RunConfig, RunTrainerConfig, WeightOptimConfig


@dataclass
class RetrainDataConfig:
    dataset: str = "digits"
    root: Optional[str] = None
    download: bool = False
    resize: Optional[int] = ranged(None, ge=1)  # the network may need more: checked when it is built
    subset: Optional[int] = ranged(None, ge=1)       # training images (default: the whole train split)
    test_subset: Optional[int] = ranged(None, ge=1)  # test images (default: the whole test split)
    batch_size: int = ranged(96, ge=1)
    workers: int = ranged(0, ge=0)
    stream: bool = False                # read images batch by batch instead of holding them in memory
    augment: bool = True                # random crop + horizontal flip
    cutout: int = ranged(0, ge=0)       # side of the Cutout square (DARTS: 16); 0 = off


@dataclass
class ModelConfig:
    genotype: str = ""          # genotype.yaml, a run folder, a named cell (DARTS_V2) or a genotype string
    C: Optional[int] = ranged(None, ge=1)  # channels (default: NB201 16, DARTS 36)
    N: int = ranged(5, ge=1)               # NB201: cells per stage
    layers: int = ranged(20, ge=1)         # DARTS: cells
    stem_multiplier: int = ranged(3, ge=1)  # DARTS
    auxiliary: bool = False     # DARTS: auxiliary head after the cell at 2/3 depth
    auxiliary_weight: float = ranged(0.4, ge=0)
    drop_path_prob: float = ranged(0.0, ge=0, lt=1)  # DARTS: ramped linearly from 0 over the epochs
    op_args: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # op options over the genotype's own
    args: Dict[str, Any] = field(default_factory=dict)  # a user space's own build_network keywords


@dataclass
class RetrainOptimConfig(WeightOptimConfig):
    """SGD as the search's weight optimizer, with DARTS's retraining defaults."""
    lr_min: float = ranged(0.0, ge=0, le="lr")
    nesterov: bool = False
    weight_decay: float = ranged(3e-4, ge=0)


@dataclass
class RetrainTrainerConfig(RunTrainerConfig):
    epochs: int = ranged(600, ge=1)       # a retraining's own default (DARTS: 600)
    eval_every: int = ranged(0, ge=0)     # test-set evaluation every N epochs (0: only at the end)


@dataclass
class RetrainConfig(RunConfig):
    name: str = matching("retrain", RUN_NAME, RUN_NAME_HINT)
    data: RetrainDataConfig = field(default_factory=RetrainDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: RetrainOptimConfig = field(default_factory=RetrainOptimConfig)
    trainer: RetrainTrainerConfig = field(default_factory=RetrainTrainerConfig)
