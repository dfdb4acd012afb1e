"""The discrete DNF classifier built only from a rule-set genotype (fixed binary W, S)."""
from __future__ import annotations

from torch import Tensor

from nas.blocks.dnf import class_logits, dnf_forward, literals
from nas.blocks.rules import clauses_to_tensors

from ..base import Network
from .genotype import DNFGenotype


class DNFNetwork(Network):
    def __init__(self, genotype: DNFGenotype):
        super().__init__()
        self.genotype = genotype
        W, S = clauses_to_tensors(genotype.tower_clauses(), len(genotype.features))
        self.register_buffer("W", W)
        self.register_buffer("S", S)

    def forward(self, x: Tensor) -> Tensor:
        return class_logits(*dnf_forward(literals(x), self.W.to(x.dtype), self.S.to(x.dtype)))
