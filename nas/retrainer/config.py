"""Typed config of ``tools/retrain.py``: train a derived architecture from scratch.

Loaded with the same machinery as the search config (``_base_`` inheritance, dotted overrides,
unknown keys rejected): :func:`nas.config.load_config` with ``cls=RetrainConfig``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional


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
    stream: bool = False                # read images batch by batch instead of holding them in memory
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
    op_args: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # op options over the genotype's own
    args: Dict[str, Any] = field(default_factory=dict)  # a user space's own build_network keywords


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


@dataclass
class RetrainConfig:
    name: str = "retrain"
    imports: List[str] = field(default_factory=list)  # user modules / .py files imported before anything is built
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: RetrainDataConfig = field(default_factory=RetrainDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: RetrainOptimConfig = field(default_factory=RetrainOptimConfig)
    trainer: RetrainTrainerConfig = field(default_factory=RetrainTrainerConfig)
