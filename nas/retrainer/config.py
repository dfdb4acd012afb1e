"""Typed config of ``tools/retrain.py``: train a derived architecture from scratch.

Loaded with the same machinery as the search config (``_base_`` inheritance, dotted overrides,
unknown keys rejected): :func:`nas.config.load_config` with ``cls=RetrainConfig``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class RetrainDataConfig:
    dataset: str = "digits"
    root: Optional[str] = None
    download: bool = False
    resize: Optional[int] = None
    subset: Optional[int] = None        # training images (default: the whole train split)
    test_subset: Optional[int] = None   # test images (default: the whole test split)
    batch_size: int = 96
    workers: int = 0
    augment: bool = True                # random crop + horizontal flip
    cutout: int = 0                     # side of the Cutout square (DARTS: 16); 0 = off


@dataclass
class ModelConfig:
    genotype: str = ""          # genotype.yaml, a run folder, a named cell (DARTS_V2) or a genotype string
    C: Optional[int] = None     # channels (default: NB201 16, DARTS 36)
    N: int = 5                  # NB201: cells per stage
    layers: int = 20            # DARTS: cells
    stem_multiplier: int = 3    # DARTS
    auxiliary: bool = False     # DARTS: auxiliary head after the cell at 2/3 depth
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.0  # DARTS: ramped linearly from 0 over the epochs


@dataclass
class RetrainOptimConfig:
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4


@dataclass
class RetrainTrainerConfig:
    epochs: int = 600
    grad_clip: float = 5.0              # 0 = off
    ckpt_every: int = 1
    eval_every: int = 0                 # test-set evaluation every N epochs (0: only at the end)
    max_steps_per_epoch: Optional[int] = None  # cap for smoke runs
    amp: Literal["off", "bf16", "fp16"] = "off"   # mixed precision (fp16: with loss scaling)
    channels_last: bool = False         # NHWC memory format for the convolutions
    sync_bn: bool = False               # data parallel: BN statistics over the global batch
    dist_timeout: float = 1800.0        # data parallel: seconds a rank waits for the others


@dataclass
class RetrainConfig:
    name: str = "retrain"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: RetrainDataConfig = field(default_factory=RetrainDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: RetrainOptimConfig = field(default_factory=RetrainOptimConfig)
    trainer: RetrainTrainerConfig = field(default_factory=RetrainTrainerConfig)
