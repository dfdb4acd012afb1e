"""The DARTS search network (Liu et al. 2019, ``model_search.py``).

``layers`` cells, reduction cells at ``layers//3`` and ``2*layers//3`` (channels doubled there).
Every cell has two inputs, preprocessed to C channels (FactorizedReduce when the previous cell
halved the resolution, else ReLU-Conv1x1-BN), and ``steps`` intermediate nodes each fed by all
earlier nodes through a mixed op; its output concatenates the last ``multiplier`` nodes. Edges
from the inputs stride 2 in a reduction cell. BN is without affine and pooling candidates get a
BN (``SUPERNET_OPS``).

Two :class:`Choice` s of shape ``[E, K]`` (``E = Σ_{n<steps} (n+2)``, 14 for 4 steps),
``arch.normal`` and ``arch.reduce``, are each sampled once per forward pass and shared by all
cells of their type.

``partial_channels`` K > 1: PC-DARTS (Xu et al., ICLR 2020; :mod:`nas.supernet.partial`): each
mixed op sees 1/K of its input's channels, the rest bypass it, and the edges into a node are
weighted by a softmax over their β (``arch.edges_normal``, ``arch.edges_reduce``); derive ranks
an edge by β times its strongest op weight.

``with_aux_skip`` (DARTS-, Chu et al., ICLR 2021): every edge adds ``β·skip(h)`` to its mixed
output, where ``skip`` is the identity, or on the stride-2 edges of a reduction cell a
FactorizedReduce without affine (as in the authors' code; it has weights, trained with the
others). The search loop sets β (``aux_skip``) per step. Built only on request, so a plain
supernet's state holds no auxiliary weights.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from nas.estimators.base import Estimator, Sample
from nas.ops import FactorizedReduce, ReLUConvBN
from nas.supernet import Choice, MixedOp
from nas.supernet.partial import EdgeNormalization, PartialMixedOp, check_partial

from ..base import check_max_skip, refuse_without_logits
from .genotype import Genotype, derive_cell, derive_cell_max_skip
from .ops import PRIMITIVES, SUPERNET_OPS


def edge_names(steps: int) -> List[str]:
    """``"2<-0", "2<-1", "3<-0", ...``: node ``n+2`` reads from nodes ``0 .. n+1``."""
    return [f"{n + 2}<-{i}" for n in range(steps) for i in range(n + 2)]


def edge_pairs(steps: int) -> List[Tuple[int, int]]:
    """``(i, j)`` per edge, in the order of :func:`edge_names`."""
    return [(i, n + 2) for n in range(steps) for i in range(n + 2)]


def reduction_layers(layers: int) -> List[int]:
    return [layers // 3, 2 * layers // 3]


class SearchCell(nn.Module):
    def __init__(self, steps: int, multiplier: int, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool, op_names: Sequence[str], affine: bool = False,
                 with_aux_skip: bool = False, partial_channels: int = 1):
        super().__init__()
        self.reduction, self.steps, self.multiplier = reduction, steps, multiplier
        self.preprocess0 = (FactorizedReduce(C_pp, C, affine=affine) if reduction_prev
                            else ReLUConvBN(C_pp, C, 1, 1, 0, affine=affine))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=affine)
        self.edges = nn.ModuleList()
        self.aux = nn.ModuleList() if with_aux_skip else None
        for n in range(steps):
            for i in range(n + 2):
                stride = 2 if reduction and i < 2 else 1
                K = partial_channels
                ops = [SUPERNET_OPS[name](C // K, C // K, stride, affine) for name in op_names]
                self.edges.append(PartialMixedOp(ops, op_names, K) if K > 1 else MixedOp(ops, op_names))
                if with_aux_skip:
                    self.aux.append(FactorizedReduce(C, C, affine=False) if stride == 2 else nn.Identity())

    def forward(self, s0: Tensor, s1: Tensor, sample: Sample, aux_skip: float = 0.0,
                edge_scale: Optional[Tensor] = None) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for _ in range(self.steps):
            acc = None
            for h in list(states):
                idx = None if sample.index is None else sample.index[e]
                y = self.edges[e](h, sample.weights[e], idx)
                if edge_scale is not None:
                    y = y * edge_scale[e]
                if aux_skip:
                    y = y + aux_skip * self.aux[e](h)
                acc = y if acc is None else acc + y
                e += 1
            states.append(acc)
        return torch.cat(states[-self.multiplier:], dim=1)


class DartsSupernet(nn.Module):
    def __init__(self, estimator: Estimator, *, num_classes: int, C: int = 16, layers: int = 8,
                 steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3,
                 ops: Optional[Sequence[str]] = None, affine: bool = False, in_channels: int = 3,
                 init_std: float = 1e-3, generator: Optional[torch.Generator] = None,
                 derive_max_skip: Optional[int] = None, with_aux_skip: bool = False,
                 partial_channels: int = 1):
        super().__init__()
        self.op_names = list(ops) if ops else list(PRIMITIVES)
        self.derive_max_skip = check_max_skip(derive_max_skip)
        self.steps, self.multiplier = steps, multiplier
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        K = check_partial(partial_channels, [C * 2 ** sum(i >= r for r in reduction_layers(layers))
                                             for i in range(layers)])
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            if reduction:
                C_curr *= 2
            self.cells.append(SearchCell(steps, multiplier, C_pp, C_p, C_curr, reduction, reduction_prev,
                                         self.op_names, affine, with_aux_skip, K))
            reduction_prev = reduction
            C_pp, C_p = C_p, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)
        labels = edge_names(steps)
        self.arch = nn.ModuleDict({
            name: Choice(estimator, len(labels), self.op_names, init_std=init_std, generator=generator,
                         labels=labels)
            for name in ("normal", "reduce")})
        if K > 1:  # PC-DARTS edge normalisation, one β per edge of each cell type
            for name in ("normal", "reduce"):
                self.arch[f"edges_{name}"] = EdgeNormalization(edge_pairs(steps), labels, init_std, generator)
        if with_aux_skip:
            self.aux_skip = 0.0  # DARTS-'s β, set by the search loop (see the module docstring)
        refuse_without_logits(self.arch["normal"], estimator.name,
                              ["estimator.derive_max_skip=null"] if derive_max_skip is not None else [])

    def forward(self, x: Tensor) -> Tensor:
        samples = {name: self.arch[name]() for name in ("normal", "reduce")}
        scales = {name: self.arch[f"edges_{name}"].weights() if f"edges_{name}" in self.arch else None
                  for name in ("normal", "reduce")}
        beta = getattr(self, "aux_skip", 0.0)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, samples[kind], beta, scales[kind])
        return self.classifier(self.global_pooling(s1).flatten(1))

    def genotype(self, top_k: int = 2) -> Genotype:
        """DARTS derive on each choice's probabilities (``Choice.probs()``, i.e. what the
        estimator believes: softmax(α) for the relaxations, the one-hot state for Bop). With
        ``derive_max_skip`` M the normal cell keeps at most M skip connections (P-DARTS §3.3,
        :func:`derive_cell_max_skip`); the reduction cell, where P-DARTS sets no limit, is as is."""
        probs = {name: self.arch[name].probs() for name in ("normal", "reduce")}
        for name in probs:
            if f"edges_{name}" in self.arch:  # PC-DARTS: an edge ranks by β·p
                with torch.no_grad():
                    probs[name] = probs[name] * self.arch[f"edges_{name}"].weights().unsqueeze(1).to(probs[name])
        cells = {"normal": derive_cell_max_skip(probs["normal"], self.op_names, self.steps, top_k,
                                                self.derive_max_skip),
                 "reduce": derive_cell(probs["reduce"], self.op_names, self.steps, top_k)}
        concat = list(range(2 + self.steps - self.multiplier, self.steps + 2))
        return Genotype(cells["normal"], concat, cells["reduce"], concat, edges_per_node=top_k)
