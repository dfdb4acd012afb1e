"""NAS-Bench-201 (Dong & Yang, ICLR 2020): 5 ops on the 6 edges of a 4-node cell."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch

from nas.errors import CheckpointError
from nas.estimators.base import Estimator

from ..base import SearchSpace
from .genotype import EDGE_NAMES, EDGES, OPS, NB201Genotype, all_genotypes
from .network import NB201Network
from .supernet import NB201Supernet


class NB201Space(SearchSpace):
    name = "nb201"
    ops = OPS

    def build_supernet(self, estimator: Estimator, *, num_classes: int, C: int = 16, N: int = 5,
                       ops: Optional[Sequence[str]] = None, affine: bool = False,
                       in_channels: int = 3, init_std: float = 1e-3,
                       generator: Optional[torch.Generator] = None, gates: str = "none",
                       l0_lambda: float = 1e-4, derive_exclude: Sequence[str] = (),
                       with_aux_skip: bool = False, derive_max_skip: Optional[int] = None,
                       fused: bool = True, channels_last: bool = True, partial_channels: int = 1) -> NB201Supernet:
        ops = self.check_ops(ops) if ops else list(OPS)
        return NB201Supernet(estimator, num_classes=num_classes, C=C, N=N, ops=ops, affine=affine,
                             in_channels=in_channels, init_std=init_std, generator=generator,
                             gates=gates, l0_lambda=l0_lambda, derive_exclude=derive_exclude,
                             with_aux_skip=with_aux_skip, derive_max_skip=derive_max_skip,
                             fused=fused, channels_last=channels_last, partial_channels=partial_channels)

    def build_network(self, genotype: NB201Genotype, *, num_classes: int, C: int = 16, N: int = 5,
                      in_channels: int = 3) -> NB201Network:
        return NB201Network(genotype, num_classes=num_classes, C=C, N=N, in_channels=in_channels)

    def genotype_from_dict(self, data: Dict[str, Any]) -> NB201Genotype:
        if not isinstance(data, dict) or not isinstance(data.get("arch"), str):
            raise CheckpointError("genotype: an NB201 genotype.yaml needs a key 'arch' with the cell "
                                  "string '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'")
        return NB201Genotype.from_string(data["arch"])

    def genotype_to_dict(self, genotype: NB201Genotype) -> Dict[str, Any]:
        return genotype.to_dict()


__all__ = ["NB201Space", "NB201Genotype", "NB201Supernet", "NB201Network", "OPS", "EDGES",
           "EDGE_NAMES", "all_genotypes"]
