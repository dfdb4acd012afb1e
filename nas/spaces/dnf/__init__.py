"""``dnf``: a standalone Neural DNF classifier (Lu 2020) over binary tabular features; the
genotype is the learned rule set, printed as if-then text (``rules.txt`` in the run folder)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch

from nas.blocks.dnf import LAMBDA_G, RULES
from nas.errors import ConfigError
from nas.estimators.base import Estimator

from nas.estimators.base import BINARY

from dataclasses import dataclass

from nas.bounds import ranged

from ..base import TABULAR, SearchSpace


@dataclass
class DNFOptions:
    """``space.*`` of the dnf space (Lu 2020)."""
    rules: int = ranged(RULES, ge=1, help="conjunctions per tower (N)")
    lambda_g: float = ranged(LAMBDA_G, ge=0, help="sparsity weight λ_g")
from .genotype import DNFGenotype, towers_for
from .network import DNFNetwork
from .supernet import DNFSupernet


class DNFSpace(SearchSpace):
    """A standalone Neural DNF rule learner (Lu 2020) over binary tabular features: the learned
    rule set is the genotype."""
    name = "dnf"
    ops = ()
    data_kind = TABULAR
    choice_kinds = (BINARY,)
    main_kind = "rules"
    Options = DNFOptions
    tiny_supernet = {"rules": 4}

    def supernet_kwargs(self, cfg: Any, info: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        info = info or {}
        return dict(rules=cfg.space.rules, lambda_g=cfg.space.lambda_g, feature_names=info.get("features"),
                    class_names=info.get("classes"))

    def build_supernet(self, estimator: Estimator, *, num_classes: int, in_channels: int,
                       rules: int = RULES, lambda_g: float = LAMBDA_G,
                       feature_names: Optional[Sequence[str]] = None,
                       class_names: Optional[Sequence[str]] = None, init_std: float = 1e-3,
                       generator: Optional[torch.Generator] = None, gates: str = "none",
                       l0_lambda: float = 0.0) -> DNFSupernet:
        if gates != "none":
            raise ConfigError("space.gates: the dnf space has no edges, ops or channels to gate; use gates=none")
        if rules < 1:
            raise ConfigError(f"space.rules must be positive, got {rules}")
        if lambda_g < 0:
            raise ConfigError(f"space.lambda_g must be >= 0, got {lambda_g}")
        return DNFSupernet(estimator, num_classes=num_classes, in_features=in_channels, rules=rules,
                           lambda_g=lambda_g, feature_names=feature_names, class_names=class_names,
                           init_std=init_std, generator=generator)

    def build_network(self, genotype: DNFGenotype, *, num_classes: Optional[int] = None,
                      **_: Any) -> DNFNetwork:
        return DNFNetwork(genotype)

    def network_kwargs(self, model_cfg: Any) -> Dict[str, Any]:
        raise ConfigError(f"the {self.name} space has no network to retrain; nas-retrain takes a cell "
                          f"of a space with one")

    def genotype_from_dict(self, data: Dict[str, Any]) -> DNFGenotype:
        return DNFGenotype.from_dict(data)

    def genotype_to_dict(self, genotype: DNFGenotype) -> Dict[str, Any]:
        return genotype.to_dict()


__all__ = ["DNFSpace", "DNFGenotype", "DNFSupernet", "DNFNetwork", "towers_for"]
