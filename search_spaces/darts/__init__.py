"""The DARTS search space (Liu et al., ICLR 2019): 8 ops on the 14 edges of normal and reduction
cells with 2 input and 4 intermediate nodes."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch

from nas.errors import ConfigError
from nas.estimators.base import Estimator

from ..base import SearchSpace
from .genotype import GENOTYPES, Genotype, derive_cell, named_genotype
from .network import DartsNetwork
from .ops import OPS, PRIMITIVES, SUPERNET_OPS
from .supernet import DartsSupernet, edge_names


class DartsSpace(SearchSpace):
    name = "darts"
    ops = PRIMITIVES

    def build_supernet(self, estimator: Estimator, *, num_classes: int, C: int = 16, layers: int = 8,
                       steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3,
                       ops: Optional[Sequence[str]] = None, affine: bool = False, in_channels: int = 3,
                       init_std: float = 1e-3, generator: Optional[torch.Generator] = None,
                       gates: str = "none", l0_lambda: float = 0.0,
                       derive_max_skip: Optional[int] = None, with_aux_skip: bool = False,
                       partial_channels: int = 1) -> DartsSupernet:
        ops = self.check_ops(ops) if ops else list(PRIMITIVES)
        if all(o == "none" for o in ops):
            raise ConfigError("space.ops: the DARTS derive rule needs at least one op other than 'none'")
        if gates != "none":
            raise ConfigError(f"space.gates={gates} is not available in the darts space; use space.gates=none")
        for key, v in (("layers", layers), ("steps", steps), ("C", C), ("stem_multiplier", stem_multiplier)):
            if v < 1:
                raise ConfigError(f"space.{key} must be positive, got {v}")
        if not 1 <= multiplier <= steps:
            raise ConfigError(f"space.multiplier must be in 1..space.steps={steps}, got {multiplier}")
        if C % 2:
            raise ConfigError(f"space.C must be even in the darts space (FactorizedReduce halves it), got {C}")
        if partial_channels > 1 and C % partial_channels == 0 and (C // partial_channels) % 2:
            raise ConfigError(f"space.partial_channels={partial_channels} leaves {C // partial_channels} channels "
                              f"per mixed op; the darts space needs an even number (FactorizedReduce halves it)")
        return DartsSupernet(estimator, num_classes=num_classes, C=C, layers=layers, steps=steps,
                             multiplier=multiplier, stem_multiplier=stem_multiplier, ops=ops,
                             affine=affine, in_channels=in_channels, init_std=init_std, generator=generator,
                             derive_max_skip=derive_max_skip, with_aux_skip=with_aux_skip,
                             partial_channels=partial_channels)

    def build_network(self, genotype: Genotype, *, num_classes: int, C: int = 36, layers: int = 20,
                      auxiliary: bool = True, stem_multiplier: int = 3, in_channels: int = 3) -> DartsNetwork:
        return DartsNetwork(genotype, num_classes=num_classes, C=C, layers=layers, auxiliary=auxiliary,
                            stem_multiplier=stem_multiplier, in_channels=in_channels)

    def genotype_from_dict(self, data: Dict[str, Any]) -> Genotype:
        return Genotype.from_dict(data)

    def genotype_to_dict(self, genotype: Genotype) -> Dict[str, Any]:
        return genotype.to_dict()


__all__ = ["DartsSpace", "DartsSupernet", "DartsNetwork", "Genotype", "GENOTYPES", "named_genotype",
           "derive_cell", "edge_names", "OPS", "SUPERNET_OPS", "PRIMITIVES"]
