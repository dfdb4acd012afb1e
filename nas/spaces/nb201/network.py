"""The discrete NAS-Bench-201 network built from a genotype (BN with affine, as the benchmark); its
ops come from the op registry, with ``op_args`` the options the search gave them."""
from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor, nn

from nas.ops import build_op

from ..base import Network
from .genotype import NB201Genotype, NODES
from .skeleton import Skeleton


class InferCell(nn.Module):
    def __init__(self, genotype: NB201Genotype, C: int, op_args: Mapping[str, Mapping[str, Any]] = {}):
        super().__init__()
        # `none` edges are dropped: they add nothing.
        self.inputs = [[(i, k) for k, (j2, i, op) in enumerate(genotype.edges()) if j2 == j and op != "none"]
                       for j in range(NODES)]
        # an edge with a recorded width is built at that share of C (nas.blocks.l0.Pruned)
        self.ops = nn.ModuleDict({str(k): build_op(op, C, C, 1, True, **op_args.get(op, {}),
                                                   **({} if genotype.width(k) is None else {"width": genotype.width(k)}))
                                  for k, (_, _, op) in enumerate(genotype.edges()) if op != "none"})

    def forward(self, x: Tensor) -> Tensor:
        nodes = [x]
        for j in range(1, NODES):
            terms = [self.ops[str(k)](nodes[i]) for i, k in self.inputs[j]]
            nodes.append(sum(terms[1:], terms[0]) if terms else x.mul(0.0))
        return nodes[-1]


class NB201Network(Network, Skeleton):
    def __init__(self, genotype: NB201Genotype, *, num_classes: int, C: int = 16, N: int = 5,
                 in_channels: int = 3, op_args: Mapping[str, Mapping[str, Any]] = {}):
        super().__init__(lambda c: InferCell(genotype, c, op_args), C, N, num_classes, in_channels)
        self.genotype = genotype

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.head(x)
