"""The NAS-Bench-201 supernet: every edge of the shared cell is a mixed op over the candidates.

One :class:`Choice` of shape ``[6, K]`` is shared by all 3N cells (NB201 search, as in DARTS and
GDAS on NB201); it is sampled once per forward pass. Cell ops use BN without affine.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from nas.estimators.base import Estimator, Sample
from nas.supernet import Choice, MixedOp

from .genotype import EDGE_NAMES, EDGES, NB201Genotype, NODES
from .ops import OPS
from .skeleton import ResBlock, Skeleton


class SearchCell(nn.Module):
    def __init__(self, C: int, op_names: Sequence[str], affine: bool = False):
        super().__init__()
        self.edges = nn.ModuleList(
            MixedOp([OPS[name](C, C, 1, affine) for name in op_names], op_names) for _ in EDGES)

    def forward(self, x: Tensor, sample: Sample) -> Tensor:
        nodes = [x]
        e = 0
        for j in range(1, NODES):
            acc = None
            for i in range(j):
                idx = None if sample.index is None else sample.index[e]
                y = self.edges[e](nodes[i], sample.weights[e], idx)
                acc = y if acc is None else acc + y
                e += 1
            nodes.append(acc)
        return nodes[-1]


class NB201Supernet(Skeleton):
    def __init__(self, estimator: Estimator, *, num_classes: int, C: int = 16, N: int = 5,
                 ops: Optional[Sequence[str]] = None, affine: bool = False, in_channels: int = 3,
                 init_std: float = 1e-3, generator: Optional[torch.Generator] = None):
        self.op_names = list(ops) if ops else list(OPS)
        super().__init__(lambda c: SearchCell(c, self.op_names, affine), C, N, num_classes, in_channels)
        self.arch = nn.ModuleDict({
            "cell": Choice(estimator, len(EDGES), self.op_names, init_std=init_std,
                           generator=generator, labels=EDGE_NAMES)})

    def forward(self, x: Tensor) -> Tensor:
        sample = self.arch["cell"]()
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x) if isinstance(cell, ResBlock) else cell(x, sample)
        return self.head(x)

    def genotype(self) -> NB201Genotype:
        """Derive: the estimator's decision per edge (argmax of α for the relaxations)."""
        idx = self.arch["cell"].derive().tolist()
        return NB201Genotype(tuple(self.op_names[k] for k in idx))
