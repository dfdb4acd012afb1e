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

``with_aux_skip`` (DARTS-, Chu et al., ICLR 2021): every edge adds ``β·skip(h)`` to its mixed
output, where ``skip`` is the identity, or on the stride-2 edges of a reduction cell a
FactorizedReduce without affine (as in the authors' code; it has weights, trained with the
others). The search loop sets β (``aux_skip``) per step. Built only on request, so a plain
supernet's state holds no auxiliary weights.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from nas.estimators.base import Estimator, Sample
from nas.ops import FactorizedReduce, ReLUConvBN
from nas.supernet import Choice, MixedOp

from ..base import Supernet, check_max_skip, refuse_without_logits
from .genotype import Genotype, derive_cell, derive_cell_max_skip
from .ops import PRIMITIVES, SUPERNET_OPS
from .skeleton import reduction_layers, stack_cells  # noqa: F401  (reduction_layers: re-exported)


def edge_names(steps: int) -> List[str]:
    """``"2<-0", "2<-1", "3<-0", ...``: node ``n+2`` reads from nodes ``0 .. n+1``."""
    return [f"{n + 2}<-{i}" for n in range(steps) for i in range(n + 2)]


class SearchCell(nn.Module):
    def __init__(self, steps: int, multiplier: int, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool, op_names: Sequence[str], affine: bool = False,
                 with_aux_skip: bool = False):
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
                self.edges.append(MixedOp([SUPERNET_OPS[name](C, C, stride, affine) for name in op_names],
                                          op_names))
                if with_aux_skip:
                    self.aux.append(FactorizedReduce(C, C, affine=False) if stride == 2 else nn.Identity())

    def forward(self, s0: Tensor, s1: Tensor, sample: Sample, aux_skip: float = 0.0) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for _ in range(self.steps):
            acc = None
            for h in list(states):
                idx = None if sample.index is None else sample.index[e]
                y = self.edges[e](h, sample.weights[e], idx)
                if aux_skip:
                    y = y + aux_skip * self.aux[e](h)
                acc = y if acc is None else acc + y
                e += 1
            states.append(acc)
        return torch.cat(states[-self.multiplier:], dim=1)


class DartsSupernet(Supernet):
    def __init__(self, estimator: Estimator, *, num_classes: int, C: int = 16, layers: int = 8,
                 steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3,
                 ops: Optional[Sequence[str]] = None, affine: bool = False, in_channels: int = 3,
                 init_std: float = 1e-3, generator: Optional[torch.Generator] = None,
                 derive_max_skip: Optional[int] = None, with_aux_skip: bool = False):
        super().__init__()
        self.op_names = list(ops) if ops else list(PRIMITIVES)
        self.derive_max_skip = check_max_skip(derive_max_skip)
        self.steps, self.multiplier = steps, multiplier
        self.stem, self.cells, widths = stack_cells(
            lambda C_pp, C_p, C_cell, reduction, reduction_prev: SearchCell(
                steps, multiplier, C_pp, C_p, C_cell, reduction, reduction_prev, self.op_names, affine,
                with_aux_skip),
            C=C, layers=layers, stem_multiplier=stem_multiplier, in_channels=in_channels)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[-1], num_classes)
        labels = edge_names(steps)
        self.arch = nn.ModuleDict({
            name: Choice(estimator, len(labels), self.op_names, init_std=init_std, generator=generator,
                         labels=labels)
            for name in ("normal", "reduce")})
        if with_aux_skip:
            self.aux_skip = 0.0  # DARTS-'s β, set by the search loop (see the module docstring)
        refuse_without_logits(self.arch["normal"], estimator.name,
                              ["estimator.derive_max_skip=null"] if derive_max_skip is not None else [])

    def forward(self, x: Tensor) -> Tensor:
        samples = {name: choice() for name, choice in self.arch.items()}
        beta = self.aux_skip or 0.0
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, samples["reduce" if cell.reduction else "normal"], beta)
        return self.classifier(self.global_pooling(s1).flatten(1))

    def genotype(self, top_k: int = 2) -> Genotype:
        """DARTS derive on each choice's probabilities (``Choice.probs()``, i.e. what the
        estimator believes: softmax(α) for the relaxations, the one-hot state for Bop). With
        ``derive_max_skip`` M the normal cell keeps at most M skip connections (P-DARTS §3.3,
        :func:`derive_cell_max_skip`); the reduction cell, where P-DARTS sets no limit, is as is.
        With a hard cost budget (``model.cost``) a cell over the target is derived again by
        :meth:`_within_budget`."""
        probs = {name: self.arch[name].probs().detach().float().cpu() for name in ("normal", "reduce")}
        genotype = self._derive(probs, top_k)
        budget = self.budget()
        if budget is not None and budget.over(genotype):
            genotype = self._within_budget(budget, probs, top_k, genotype)
        return genotype

    def _derive(self, probs: Dict[str, Tensor], top_k: int) -> Genotype:
        cells = {"normal": derive_cell_max_skip(probs["normal"], self.op_names, self.steps, top_k,
                                                self.derive_max_skip),
                 "reduce": derive_cell(probs["reduce"], self.op_names, self.steps, top_k)}
        concat = list(range(2 + self.steps - self.multiplier, self.steps + 2))
        return Genotype(cells["normal"], concat, cells["reduce"], concat, edges_per_node=top_k)

    def _within_budget(self, budget, probs: Dict[str, Tensor], top_k: int, genotype: Genotype) -> Genotype:
        """A greedy descent to the target: while the cell costs more, take out of the candidates
        the kept (edge, op) whose removal saves the most cost per unit of log-probability lost
        (Σ log p of the kept pairs), and derive again, so the edge may switch to a cheaper op or
        give way to another input of its node. Stops at the target, or when no removal saves
        anything (then the cheapest cell found, over the target)."""
        def score(g: Genotype) -> float:
            return sum(math.log(max(float(probs[c.split(".")[1]][row, self.op_names.index(op)]), 1e-30))
                       for c, pairs in budget.selected(g).items() for row, op in pairs)

        left = {name: p.clone() for name, p in probs.items()}
        while budget.over(genotype):
            cost, s0, best = budget.exact(genotype), score(genotype), None
            for choice, pairs in budget.selected(genotype).items():
                cell = choice.split(".")[1]
                for row, op in pairs:
                    trial = {name: p.clone() for name, p in left.items()}
                    trial[cell][row, self.op_names.index(op)] = -1.0  # below every probability
                    g = self._derive(trial, top_k)
                    saved = cost - budget.exact(g)
                    if saved > 0:
                        rate = saved / max(s0 - score(g), 1e-12)
                        if best is None or rate > best[0]:
                            best = (rate, trial, g)
            if best is None:
                break
            _, left, genotype = best
        return genotype
