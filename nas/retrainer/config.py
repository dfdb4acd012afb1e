"""Typed config of ``nas-retrain``: train a derived architecture from scratch.

Loaded with the same machinery as the search config (``_base_`` inheritance, dotted overrides,
unknown keys rejected): :func:`nas.config.load_config` with ``cls=RetrainConfig``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ..bounds import RUN_NAME, RUN_NAME_HINT, ranged, matching
from ..config import EntrySection, RunConfig, RunTrainerConfig, WeightOptimConfig, import_config_modules, named_entry
from ..options import option


@dataclass
class RetrainDataConfig(EntrySection):
    """``data:`` of a retraining: the dataset, the test set's size, batching and Cutout, then the
    options its kind and its registry entry declare (image data: ``root``, ``resize``, ``subset``
    of the training images, ...; :mod:`nas.data.registry`), as in a search's ``data:``."""
    dataset: str = option("digits", help="a registered image dataset (nas.data.DATASETS)")
    test_subset: Optional[int] = ranged(None, ge=1, help="test images, class-balanced (null: the whole test split)")
    batch_size: int = ranged(96, ge=1, help="samples per batch")
    cutout: int = ranged(0, ge=0, help="side of the Cutout square (DARTS: 16); 0: off")

    section = "data"
    entry_key = "dataset"
    default_entry = "digits"


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

    @staticmethod
    def section_types(data: Dict[str, Any]) -> Dict[str, type]:
        """The ``data:`` class of the dataset ``data`` names (the config's user modules imported
        first: their registrations must be seen)."""
        import_config_modules(data)
        return {"data": RetrainDataConfig.entry_class(named_entry(data, "data", RetrainDataConfig))}

    @staticmethod
    def migrate(data: Dict[str, Any]) -> Dict[str, Any]:
        return data
