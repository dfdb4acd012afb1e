"""The ``dnf`` space's "supernet": a standalone Neural DNF classifier over binary features whose
architecture *is* its rule set (W and S binary choices, see :mod:`nas.blocks.dnf`)."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import Tensor

from nas.blocks.dnf import LAMBDA_G, RULES, DNFBlock, class_logits
from nas.blocks.rules import clauses_of, literal_name
from nas.estimators.base import Estimator

from ..base import Supernet
from .genotype import DNFGenotype, towers_for


class DNFSupernet(Supernet):
    """``forward(x [B, K] in [0, 1]) -> logits [B, classes]``; ``genotype()`` the derived rules."""

    def __init__(self, estimator: Estimator, *, num_classes: int, in_features: int, rules: int = RULES,
                 lambda_g: float = LAMBDA_G, feature_names: Optional[Sequence[str]] = None,
                 class_names: Optional[Sequence[str]] = None, init_std: float = 1e-3,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        self.features = list(feature_names) if feature_names else [f"x{k}" for k in range(in_features)]
        self.classes = list(class_names) if class_names else [str(c) for c in range(num_classes)]
        if len(self.features) != in_features or len(self.classes) != num_classes:
            raise ValueError("feature/class names do not match in_features/num_classes")
        self.block = DNFBlock(estimator.for_kind("rules"), in_features, rules=rules, towers=towers_for(num_classes),
                              lambda_g=lambda_g, init_std=init_std, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return class_logits(*self.block(x))

    def genotype(self) -> DNFGenotype:
        W, S = self.block.derived()
        labels = self.classes[1:] if len(self.classes) == 2 else self.classes
        rules = tuple((label, tuple(tuple(literal_name(lit, self.features) for lit in cl)
                                    for cl in clauses_of(W[t].cpu(), S[t].cpu())))
                      for t, label in enumerate(labels))
        return DNFGenotype(tuple(self.features), tuple(self.classes), rules)

    def artifacts(self, genotype: Optional[DNFGenotype] = None) -> Dict[str, str]:
        """Files a run folder keeps next to genotype.yaml."""
        return {"rules.txt": (genotype if genotype is not None else self.genotype()).text()}
