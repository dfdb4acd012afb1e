"""The DARTS evaluation network built from a genotype (Liu et al. 2019, ``model.py``
``NetworkCIFAR``): stem Conv3x3 + BN to ``stem_multiplier·C``, ``layers`` cells with reductions at
1/3 and 2/3 depth, auxiliary head after the cell at 2/3 depth, global pooling and a classifier.

Training-mode forward returns ``(logits, aux_logits)`` when the auxiliary head is on (the DARTS
convention), else ``logits``. Drop-path with probability ``drop_path_prob`` (set by the trainer,
DARTS ramps it linearly over the epochs) zeroes whole samples of every non-identity op output.
"""
from __future__ import annotations

from typing import Any, Mapping, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.ops import FactorizedReduce, Identity, ReLUConvBN, build_op

from ..base import Network
from .genotype import Genotype
from .ops import drop_path
from .skeleton import stack_cells


class EvalCell(nn.Module):
    def __init__(self, genotype: Genotype, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool, op_args: Mapping[str, Mapping[str, Any]] = {}):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        cell = "reduce" if reduction else "normal"
        self.nodes = genotype.nodes(cell)
        self.concat = list(getattr(genotype, f"{cell}_concat"))
        self.ops = nn.ModuleList(build_op(op, C, C, 2 if reduction and src < 2 else 1, True, **op_args.get(op, {}))
                                 for node in self.nodes for op, src in node)
        self.multiplier = len(self.concat)

    def forward(self, s0: Tensor, s1: Tensor, drop_prob: float) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        k = 0
        for node in self.nodes:
            acc = None
            for _, src in node:
                op = self.ops[k]
                h = op(states[src])
                if self.training and drop_prob > 0 and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                acc = h if acc is None else acc + h
                k += 1
            states.append(acc)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS ``AuxiliaryHeadCIFAR`` for an 8x8 input: ReLU → AvgPool(5, 3) → Conv1x1(128) → BN →
    ReLU → Conv2x2(768) → BN → ReLU → Linear. Other input sizes (small CPU images) are pooled to
    the 2x2 the head expects."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        if min(x.shape[-2:]) >= 5:
            x = self.pool(x)
        if tuple(x.shape[-2:]) != (2, 2):
            x = F.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(Network):
    def __init__(self, genotype: Genotype, *, num_classes: int, C: int = 36, layers: int = 20,
                 auxiliary: bool = True, stem_multiplier: int = 3, in_channels: int = 3,
                 op_args: Mapping[str, Mapping[str, Any]] = {}):
        super().__init__()
        self.genotype = genotype
        self.drop_path_prob = 0.0
        self.stem, self.cells, widths = stack_cells(
            lambda C_pp, C_p, C_cell, reduction, reduction_prev: EvalCell(
                genotype, C_pp, C_p, C_cell, reduction, reduction_prev, op_args),
            C=C, layers=layers, stem_multiplier=stem_multiplier, in_channels=in_channels)
        # the auxiliary head reads the output of the cell at 2/3 depth
        self.auxiliary_head = AuxiliaryHead(widths[2 * layers // 3], num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: Tensor) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        aux = None
        s0 = s1 = self.stem(x)
        aux_at = 2 * len(self.cells) // 3
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == aux_at and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return (logits, aux) if aux is not None else logits
