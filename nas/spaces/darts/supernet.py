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

import itertools
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
from nas.supernet.mixed import edge_output
from nas.supernet.partial import EdgeNormalization, PartialMixedOp, check_partial

from ..base import Supernet, check_max_skip, check_min_skip, refuse_without_logits
from .genotype import Genotype, derive_cell, derive_cell_max_skip, floor_skips
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
                y = edge_output(self.edges[e], h, sample, e, None, edge_scale, z_ch)
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
                 derive_max_skip: Optional[int] = None, derive_min_skip: Optional[int] = None,
                 with_aux_skip: bool = False, gates: str = "none", l0_lambda: float = 1e-4,
                 gate_estimator: Optional[Estimator] = None,
                 op_args: Mapping[str, Mapping[str, Any]] = {}, partial_channels: int = 1):
        super().__init__()
        if gates not in GATES:
            raise ConfigError(f"space.gates: unknown gates '{gates}'; allowed: {', '.join(GATES)}")
        self.gates = gates
        self.op_names = list(ops) if ops else list(PRIMITIVES)
        self.derive_max_skip = check_max_skip(derive_max_skip)
        self.derive_min_skip = check_min_skip(derive_min_skip, derive_max_skip)
        self.steps, self.multiplier = steps, multiplier
        # ops with discrete parameters of their own (dnf_1x1) learn them with the rules' estimator
        context = dict(estimator=estimator.for_kind("rules"), generator=generator)
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
                              [key for key, given in (("derive.max_skip=null", derive_max_skip is not None),
                                                      ("derive.min_skip=null", bool(derive_min_skip))) if given])

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
                samples[name] = Sample(samples[name].weights * z, samples[name].index, samples[name].active)
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
        ``derive_max_skip`` M the normal cell keeps at most M skip connections and with
        ``derive_min_skip`` m at least m (P-DARTS §3.3, :func:`derive_cell_max_skip`); the
        reduction cell, where P-DARTS sets no limit, is as is. Under a hard budget the budget
        comes first: the floor holds where the cell still fits.
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
            normal = floor_skips(list(genotype.normal), probs["normal"], self.op_names, self.steps, top_k,
                                 self.derive_min_skip)
            floored = Genotype(normal, genotype.normal_concat, genotype.reduce, genotype.reduce_concat,
                               edges_per_node=top_k)
            if normal != list(genotype.normal) and not budget.over(floored):
                genotype = floored
        return genotype

    def _derive(self, probs: Dict[str, Tensor], top_k: int) -> Genotype:
        cells = {"normal": derive_cell_max_skip(probs["normal"], self.op_names, self.steps, top_k,
                                                self.derive_max_skip, self.derive_min_skip),
                 "reduce": derive_cell(probs["reduce"], self.op_names, self.steps, top_k)}
        concat = list(range(2 + self.steps - self.multiplier, self.steps + 2))
        return Genotype(cells["normal"], concat, cells["reduce"], concat, edges_per_node=top_k)

    def _node_options(self, budget, probs: Dict[str, Tensor], top_k: int):
        """Every way a node may be derived: ``(cell, node, pairs, log p, cost, skips)`` per node,
        as tensors over its options (``top_k`` distinct inputs, one allowed non-``none`` op
        each; ``skips`` counts ``skip_connect`` where ``derive_max_skip`` limits it)."""
        costs, allowed = budget.edge_costs()
        limited = self.derive_max_skip is not None and "skip_connect" in self.op_names
        real = [k for k, op in enumerate(self.op_names) if op != "none"]
        nodes = []
        for cell in ("normal", "reduce"):
            cost = costs.get(f"arch.{cell}", torch.zeros_like(probs[cell])).double()
            ok = allowed.get(f"arch.{cell}", torch.ones_like(probs[cell], dtype=torch.bool))
            logp = probs[cell].double().clamp_min(1e-30).log()
            start = 0
            for n in range(self.steps):
                pairs, rows = [], []
                for srcs in itertools.combinations(range(n + 2), min(top_k, n + 2)):
                    for ks in itertools.product(real, repeat=len(srcs)):
                        if all(ok[start + i, k] for i, k in zip(srcs, ks)):
                            pairs.append(tuple((self.op_names[k], i) for i, k in zip(srcs, ks)))
                            rows.append([(start + i, k) for i, k in zip(srcs, ks)])
                if not pairs:
                    return None
                lp = torch.tensor([sum(float(logp[e, k]) for e, k in r) for r in rows], dtype=torch.float64)
                c = torch.tensor([sum(float(cost[e, k]) for e, k in r) for r in rows], dtype=torch.float64)
                sk = torch.tensor([sum(op == "skip_connect" for op, _ in pr) if limited and cell == "normal" else 0
                                   for pr in pairs])
                nodes.append((cell, pairs, lp, c, sk))
                start += n + 2
        return nodes

    def cheapest_cost(self, top_k: int = 2) -> Optional[float]:
        """The cost of the cheapest cells derive may pick under the attached budget (each node's
        cheapest option, exactly), for a hard target to be refused before the search."""
        budget = self.budget()
        nodes = None if budget is None else self._node_options(
            budget, {name: self.open_weights(name) for name in ("normal", "reduce")}, top_k)
        if nodes is None:
            return None
        cap = self.derive_max_skip if self.derive_max_skip is not None else 0
        picks = _pareto_best(nodes, math.inf, cap, cheapest=True)
        return budget.table.fixed + sum(float(c[j]) for (_, _, _, c, _), j in zip(nodes, picks))

    def _within_budget(self, budget, probs: Dict[str, Tensor], top_k: int, genotype: Genotype) -> Genotype:
        """The most probable pair of cells within the target, exactly: a multiple-choice knapsack
        where every node picks one option (``top_k`` inputs with one non-``none`` op each),
        ``max Σ log p  s.t.  fixed + Σ cost ≤ T`` (and at most ``derive_max_skip`` skips in the
        normal cell). Costs add up per kept (edge, op), so a dynamic programme over the nodes
        that keeps only the Pareto front (no cheaper option set is as probable) of the partial
        cells within the target is exact; a cell is found whenever one fits. When none does:
        the cheapest cell (derive then refuses it)."""
        nodes = self._node_options(budget, probs, top_k)
        if nodes is None:
            return genotype
        cap = self.derive_max_skip if self.derive_max_skip is not None else 0
        limit = budget.target - budget.table.fixed
        found = _pareto_best(nodes, limit + 1e-9 * max(1.0, abs(budget.target)), cap)
        if found is None:
            found = _pareto_best(nodes, math.inf, cap, cheapest=True)
        cells = {"normal": [], "reduce": []}
        for (cell, pairs, *_), j in zip(nodes, found):
            cells[cell].extend(pairs[j])
        concat = list(range(2 + self.steps - self.multiplier, self.steps + 2))
        return Genotype(cells["normal"], concat, cells["reduce"], concat, edges_per_node=top_k)

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


def _pareto_best(nodes, limit: float, cap: int, cheapest: bool = False) -> Optional[List[int]]:
    """The option per node of the most probable (``cheapest``: the cheapest, then most probable)
    set of options with ``Σ cost ≤ limit`` and ``Σ skips ≤ cap``, or ``None``: node by node, every
    partial set extended by every option, then only the Pareto front kept per skip count."""
    cost = torch.zeros(1, dtype=torch.float64)
    logp = torch.zeros(1, dtype=torch.float64)
    skips = torch.zeros(1, dtype=torch.long)
    picks = torch.zeros(1, 0, dtype=torch.long)
    for _, _, lp, c, sk in nodes:
        f, o = cost.numel(), c.numel()
        cost, logp = (cost[:, None] + c[None]).flatten(), (logp[:, None] + lp[None]).flatten()
        skips = (skips[:, None] + sk[None]).flatten()
        picks = torch.cat([picks.repeat_interleave(o, 0), torch.arange(o).repeat(f)[:, None]], 1)
        keep = (cost <= limit) & (skips <= cap)
        if not bool(keep.any()):
            return None
        cost, logp, skips, picks = cost[keep], logp[keep], skips[keep], picks[keep]
        order = torch.argsort(-logp, stable=True)
        order = order[torch.argsort(cost[order], stable=True)]
        order = order[torch.argsort(skips[order], stable=True)]  # by skips, then cost, then most probable
        cost, logp, skips, picks = cost[order], logp[order], skips[order], picks[order]
        front = torch.ones_like(cost, dtype=torch.bool)
        for s in skips.unique():
            at = (skips == s).nonzero().flatten()
            best_before = torch.cat([logp.new_tensor([-math.inf]), logp[at].cummax(0).values[:-1]])
            front[at] = logp[at] > best_before + 1e-12  # no cheaper partial set is as probable
        cost, logp, skips, picks = cost[front], logp[front], skips[front], picks[front]
    if cheapest:
        at = (cost <= cost.min() + 1e-12).nonzero().flatten()
        return picks[at[logp[at].argmax()]].tolist()
    return picks[logp.argmax()].tolist()
