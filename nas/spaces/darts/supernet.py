"""The DARTS search network (Liu et al. 2019, ``model_search.py``).

``layers`` cells, reduction cells at ``layers//3`` and ``2*layers//3`` (channels doubled there).
Every cell has two inputs, preprocessed to C channels (FactorizedReduce when the previous cell
halved the resolution, else ReLU-Conv1x1-BN), and ``steps`` intermediate nodes each fed by all
earlier nodes through a mixed op; its output concatenates the last ``multiplier`` nodes. Edges
from the inputs stride 2 in a reduction cell. BN is without affine and pooling candidates get a
BN (the op context's ``pool_bn``). The candidates are any registered ops (``nas.ops``).

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

Optional L0 gates (Louizos et al. 2018, :mod:`nas.blocks.l0`), ``gates=`` as in the NB201 space:

* ``edge``: one gate per edge of each cell type (``arch.normal_gates``, ``arch.reduce_gates``),
  multiplying the edge's output in every cell of the type;
* ``op``: one gate per (edge, candidate) of each cell type, multiplying that candidate's mixing
  weight;
* ``channel``: in every cell, one gate per output channel of every edge.

Derive (the DARTS rule, :func:`derive_cell`) then ranks what is closed last: a closed candidate
gets weight 0 on its edge, a closed edge (edge gates; channel gates: every channel of that edge
closed in every cell of the type) weight 0 for every candidate, so a node keeps it only when it
has fewer than ``top_k`` open inputs.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from nas.blocks.l0 import GATES, make_gate
from nas.errors import ConfigError
from nas.estimators.base import Estimator, Sample
from nas.ops import FactorizedReduce, ReLUConvBN, build_op
from nas.ops.registry import describe_ops, op_context
from nas.supernet import Choice, MixedOp
from nas.supernet.partial import EdgeNormalization, PartialMixedOp, check_partial

from ..base import Supernet, check_max_skip, refuse_without_logits
from .genotype import Genotype, derive_cell, derive_cell_max_skip
from .ops import PRIMITIVES
from .skeleton import reduction_layers, stack_cells  # noqa: F401  (reduction_layers: re-exported)

CELLS = ("normal", "reduce")


def edge_names(steps: int) -> List[str]:
    """``"2<-0", "2<-1", "3<-0", ...``: node ``n+2`` reads from nodes ``0 .. n+1``."""
    return [f"{n + 2}<-{i}" for n in range(steps) for i in range(n + 2)]


def edge_pairs(steps: int) -> List[Tuple[int, int]]:
    """``(i, j)`` per edge, in the order of :func:`edge_names`."""
    return [(i, n + 2) for n in range(steps) for i in range(n + 2)]


class SearchCell(nn.Module):
    def __init__(self, steps: int, multiplier: int, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool, op_names: Sequence[str], affine: bool = False,
                 with_aux_skip: bool = False, channel_gates: bool = False, l0_lambda: float = 1e-4,
                 gate_estimator: Optional[Estimator] = None, op_args: Mapping[str, Mapping[str, Any]] = {},
                 context: Optional[Dict[str, Any]] = None, partial_channels: int = 1):
        super().__init__()
        self.C = C
        context = dict(context or {}, gate_estimator=gate_estimator, l0_lambda=l0_lambda, pool_bn=True)
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
                ops = [build_op(name, C // K, C // K, stride, affine, **op_context(name, op_args, **context))
                       for name in op_names]
                self.edges.append(PartialMixedOp(ops, op_names, K) if K > 1 else MixedOp(ops, op_names))
                if with_aux_skip:
                    self.aux.append(FactorizedReduce(C, C, affine=False) if stride == 2 else nn.Identity())
        self.gate = make_gate(len(self.edges) * C, l0_lambda, gate_estimator) if channel_gates else None

    def closed_edges(self) -> Tensor:
        """Bool ``[E]``: edges whose channel gates are all closed (False without channel gates)."""
        if self.gate is None:
            return torch.zeros(len(self.edges), dtype=torch.bool)
        return ~self.gate.open().view(len(self.edges), self.C).any(1).cpu()

    def forward(self, s0: Tensor, s1: Tensor, sample: Sample, aux_skip: float = 0.0,
                edge_scale: Optional[Tensor] = None) -> Tensor:
        """``edge_scale`` ``[E]``: a factor per edge (L0 edge gates, PC-DARTS edge normalisation)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        z_ch = None if self.gate is None else self.gate().view(len(self.edges), 1, self.C, 1, 1)
        e = 0
        for _ in range(self.steps):
            acc = None
            for h in list(states):
                idx = None if sample.index is None else sample.index[e]
                y = self.edges[e](h, sample.weights[e], idx)
                if edge_scale is not None:
                    y = y * edge_scale[e]
                if z_ch is not None:
                    y = y * z_ch[e]
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
                 derive_max_skip: Optional[int] = None, with_aux_skip: bool = False,
                 gates: str = "none", l0_lambda: float = 1e-4, gate_estimator: Optional[Estimator] = None,
                 op_args: Mapping[str, Mapping[str, Any]] = {}, partial_channels: int = 1):
        super().__init__()
        if gates not in GATES:
            raise ConfigError(f"space.gates: unknown gates '{gates}'; allowed: {', '.join(GATES)}")
        self.gates = gates
        self.op_names = list(ops) if ops else list(PRIMITIVES)
        self.derive_max_skip = check_max_skip(derive_max_skip)
        self.steps, self.multiplier = steps, multiplier
        # ops with discrete parameters of their own (dnf_1x1) learn them with the run's estimator
        context = dict(estimator=estimator, generator=generator)
        K = check_partial(partial_channels, [C * 2 ** sum(i >= r for r in reduction_layers(layers))
                                             for i in range(layers)])
        self.stem, self.cells, widths = stack_cells(
            lambda C_pp, C_p, C_cell, reduction, reduction_prev: SearchCell(
                steps, multiplier, C_pp, C_p, C_cell, reduction, reduction_prev, self.op_names, affine,
                with_aux_skip, gates == "channel", l0_lambda, gate_estimator, op_args, context, K),
            C=C, layers=layers, stem_multiplier=stem_multiplier, in_channels=in_channels)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[-1], num_classes)
        labels = edge_names(steps)
        self.arch = nn.ModuleDict({
            name: Choice(estimator, len(labels), self.op_names, init_std=init_std, generator=generator,
                         labels=labels)
            for name in CELLS})
        if K > 1:  # PC-DARTS edge normalisation, one β per edge of each cell type
            for name in CELLS:
                self.arch[f"edges_{name}"] = EdgeNormalization(edge_pairs(steps), labels, init_std, generator)
        if gates in ("edge", "op"):
            for name in CELLS:
                lab = labels if gates == "edge" else [f"{edge}/{op}" for edge in labels for op in self.op_names]
                self.arch[f"{name}_gates"] = make_gate(len(lab), l0_lambda, gate_estimator, labels=lab,
                                                       generator=generator)
        if with_aux_skip:
            self.aux_skip = 0.0  # DARTS-'s β, set by the search loop (see the module docstring)
        refuse_without_logits(self.arch["normal"], estimator.name,
                              ["derive.max_skip=null"] if derive_max_skip is not None else [])

    def forward(self, x: Tensor) -> Tensor:
        samples = {name: self.arch[name]() for name in CELLS}
        scales: Dict[str, Optional[Tensor]] = {
            name: self.arch[f"edges_{name}"].weights() if f"edges_{name}" in self.arch else None for name in CELLS}
        for name in CELLS:
            if self.gates == "edge":
                z = self.arch[f"{name}_gates"]()
                scales[name] = z if scales[name] is None else scales[name] * z
            elif self.gates == "op":
                z = self.arch[f"{name}_gates"]().view(-1, len(self.op_names))
                samples[name] = Sample(samples[name].weights * z, samples[name].index)
        beta = self.aux_skip or 0.0
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, samples[kind], beta, scales[kind])
        return self.classifier(self.global_pooling(s1).flatten(1))

    def open_weights(self, name: str) -> Tensor:
        """``Choice.probs()`` of cell type ``name`` with what the L0 gates closed set to 0."""
        p = self.arch[name].probs().detach().float().cpu().clone()
        if self.gates == "edge":
            p[~self.arch[f"{name}_gates"].open().cpu()] = 0.0
        elif self.gates == "op":
            p[~self.arch[f"{name}_gates"].open().cpu().view_as(p)] = 0.0
        elif self.gates == "channel":
            cells = [c for c in self.cells if c.reduction == (name == "reduce")]
            p[torch.stack([c.closed_edges() for c in cells]).all(0)] = 0.0
        return p

    def genotype(self, top_k: int = 2) -> Genotype:
        """DARTS derive on each choice's probabilities (``Choice.probs()``, i.e. what the
        estimator believes: softmax(α) for the relaxations, the one-hot state for Bop). With
        ``derive_max_skip`` M the normal cell keeps at most M skip connections (P-DARTS §3.3,
        :func:`derive_cell_max_skip`); the reduction cell, where P-DARTS sets no limit, is as is.
        With PC-DARTS edge normalisation an edge ranks by ``β·p``. With a hard cost budget
        (``model.cost``) a cell over the target is derived again by :meth:`_within_budget`."""
        probs = {name: self.open_weights(name) for name in ("normal", "reduce")}
        for name in probs:
            if f"edges_{name}" in self.arch:
                with torch.no_grad():
                    probs[name] = probs[name] * self.arch[f"edges_{name}"].weights().unsqueeze(1).to(probs[name])
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

    def artifacts(self, genotype: Optional[Genotype] = None) -> Dict[str, str]:
        """``learned_ops.txt``: what the derived cells' ops learned of their own in every cell
        (DNF rules per output channel, open channels of L0-gated ops), when they have any."""
        genotype = genotype if genotype is not None else self.genotype()
        labels = edge_names(self.steps)
        found = []
        for i, cell in enumerate(self.cells):
            kind = "reduce" if cell.reduction else "normal"
            for n, node in enumerate(genotype.nodes(kind)):
                for op, src in node:
                    e = sum(m + 2 for m in range(n)) + src
                    found.append((f"cells.{i} ({kind}) edge {labels[e]} {op}",
                                  cell.edges[e].ops[self.op_names.index(op)]))
        text = describe_ops(found)
        return {"learned_ops.txt": text} if text else {}
