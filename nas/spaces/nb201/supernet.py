"""The NAS-Bench-201 supernet: every edge of the shared cell is a mixed op over the candidates.

One :class:`Choice` of shape ``[6, K]`` is shared by all 3N cells (NB201 search, as in DARTS and
GDAS on NB201); it is sampled once per forward pass. Cell ops use BN without affine.

Optional L0 hard-concrete gates (Louizos et al. 2018, :mod:`nas.blocks.l0`), ``gates=``:

* ``edge``: one gate per edge of the shared cell, multiplying the edge's output;
* ``op``: one gate per (edge, candidate), multiplying that candidate's mixing weight;
* ``channel``: in every cell, one gate per output channel of every edge.

Derive drops what is closed at test time: a closed edge (edge gates; channel gates: every channel
of that edge closed in every cell) becomes ``none``; with op gates the edge takes the estimator's
choice among its open candidates, ``none`` when all are closed.

``aux_skip`` (DARTS-, Chu et al., ICLR 2021): every edge adds ``β·x`` to its mixed output,
``out_ij = Σ_k p_k·o_k(x_i) + β·x_i``. The search loop sets β per step
(:class:`nas.searcher.loop.Searcher`); DARTS- decays it linearly to 0 over the search. The
auxiliary identity carries the gradient flow that otherwise makes the skip candidate win early,
so α_skip only grows where a skip helps the cell itself. 0 (the default) is the plain supernet.
A supernet built for it (``with_aux_skip=True``) never derives ``none`` when its estimator has logits:
beside the auxiliary skip a ``none`` edge computed ``β·x``, an identity path, not a zero edge.

``derive_exclude`` names ops that derive never picks: an edge whose decision is one of them takes
the most probable allowed candidate instead. DARTS (Liu et al. 2019, §2.4) leaves ``none`` out of
its derive because its weight is not identifiable: raising the zero op's logit only rescales the
edge's output, which the following BN undoes. The NB201 paper's own derive (argmax over all five
ops) is the default; excluding ``none`` is a documented deviation that a config opts into. The
key sits in the estimator's config section because the reason is the relaxation's: with one-hot
forward values (GDAS, STE, Bop) the zero op's weight is not a mere scale.

``derive_max_skip`` M (P-DARTS, Chen et al., ICCV 2019, §3.3 "search space regularization":
"control the number of preserved skip-connects to be a constant M"): when the derived cell has
more than M ``skip_connect`` edges, the M with the largest skip probability keep it and every
other takes its most probable allowed candidate other than ``skip_connect``. The limit is a prior
on the cell, applied at derive only; the search itself is unchanged. ``None`` (the default) sets
no limit. Like ``derive_exclude`` it needs the estimator's logits to rank the candidates.
``derive_min_skip`` m is the floor: a derived cell with fewer than m ``skip_connect`` edges gives
skip to the other edges with the largest skip probability (where skip is allowed) until it has m.
With ``max_skip = min_skip = M`` the cell has exactly M, P-DARTS's "constant M". Where the argmax
is a near tie between a skip edge and a conv edge, the floor keeps the count of skips from
depending on it. Under a hard cost budget the budget comes first: the floor holds where the cell
still fits. ``derive_budget_extra_skip`` n: under a budget the cell would exceed, up to n more skip
edges than M where they buy a costlier cell within it (``_spend_extra_skip``).
``derive_budget_none`` K: under a budget the cell would exceed, ``none`` may be derived on every
edge, ranked just after the edge's K most probable candidates (``_none_after``), in cells where no
op is off every input-output path; also where ``derive_exclude`` or the auxiliary skip rule it
out otherwise.

Speed, exact in value and gradient (``fused=False``, ``channels_last=False`` turn them off):
``fused`` runs each cell through :func:`nas.supernet.fused.run_cell` (one convolution for the
same-shaped candidate convs of all edges leaving a node, mixing weights folded into BN, one sum
per node), except with channel gates; ``channels_last`` hands the stem an NHWC input, so every
activation is NHWC, where CPU convolutions run about 3x faster at C=16 (docs/results/speed.md).
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from nas.blocks.l0 import GATES, make_gate
from nas.cost.table import DERIVE_WIDTHS
from nas.errors import ConfigError
from nas.estimators.base import Estimator, Sample
from nas.ops import build_op
from nas.ops.registry import describe_ops, op_context
from nas.supernet import Choice, MixedOp
from nas.supernet.mixed import edge_output
from nas.supernet.fused import Plan, run_cell
from nas.supernet.partial import EdgeNormalization, PartialMixedOp, check_partial

from ..base import Supernet, check_max_skip, check_min_skip, refuse_without_logits
from .genotype import EDGE_NAMES, EDGES, OPS, NB201Genotype, NODES, all_live
from .skeleton import ResBlock, Skeleton


EDGES_FROM_TO = [(i, j) for j, i in EDGES]


class SearchCell(nn.Module):
    def __init__(self, C: int, op_names: Sequence[str], affine: bool = False,
                 channel_gates: bool = False, l0_lambda: float = 1e-4,
                 gate_estimator: Optional[Estimator] = None, op_args: Mapping[str, Mapping[str, Any]] = {},
                 context: Optional[Dict[str, Any]] = None, fused: bool = True, partial_channels: int = 1,
                 group_convs: Optional[bool] = None):
        super().__init__()
        self.C = C
        self.fused = fused  # nas.supernet.fused: same values and gradients, fewer kernels
        self.group_convs = group_convs  # run_cell's: None groups the convs off the CPU only
        self._plan: Optional[Plan] = None
        K = partial_channels
        context = dict(context or {}, gate_estimator=gate_estimator, l0_lambda=l0_lambda)

        def ops(c: int) -> List[nn.Module]:
            return [build_op(name, c, c, 1, affine, **op_context(name, op_args, **context)) for name in op_names]
        self.edges = nn.ModuleList(
            PartialMixedOp(ops(C // K), op_names, K) if K > 1 else MixedOp(ops(C), op_names) for _ in EDGES)
        self.gate = (make_gate(len(EDGES) * C, l0_lambda, gate_estimator,
                               labels=[f"{edge}/{c}" for edge in EDGE_NAMES for c in range(C)])
                     if channel_gates else None)

    def closed_edges(self) -> Tensor:
        """Bool ``[6]``: edges whose channel gates are all closed (False without channel gates)."""
        if self.gate is None:
            return torch.zeros(len(EDGES), dtype=torch.bool)
        return ~self.gate.open().view(len(EDGES), self.C).any(1).cpu()

    def forward(self, x: Tensor, sample: Sample, edge_gates: Optional[Tensor] = None,
                aux_skip: float = 0.0) -> Tensor:
        if self.fused and self.gate is None:
            self._plan = self._plan or Plan(self.edges)
            return run_cell([x], EDGES_FROM_TO, self.edges, sample.weights, sample.index, edge_gates,
                            aux_skip, self._plan, self.group_convs, sample.active)[-1]
        z_ch = None if self.gate is None else self.gate().view(len(EDGES), 1, self.C, 1, 1)
        nodes = [x]
        shared = [{}]  # per node: its relu, computed once for the convs of all outgoing edges
        e = 0
        for j in range(1, NODES):
            acc = None
            for i in range(j):
                y = edge_output(self.edges[e], nodes[i], sample, e, shared[i], edge_gates, z_ch)
                if aux_skip:
                    y = y + aux_skip * nodes[i]
                acc = y if acc is None else acc + y
                e += 1
            nodes.append(acc)
            shared.append({})
        return nodes[-1]


class NB201Supernet(Supernet, Skeleton):
    def __init__(self, estimator: Estimator, *, num_classes: int, C: int = 16, N: int = 5,
                 ops: Optional[Sequence[str]] = None, affine: bool = False, in_channels: int = 3,
                 init_std: float = 1e-3, generator: Optional[torch.Generator] = None,
                 gates: str = "none", l0_lambda: float = 1e-4, derive_exclude: Sequence[str] = (),
                 with_aux_skip: bool = False, derive_max_skip: Optional[int] = None,
                 derive_min_skip: Optional[int] = None, derive_budget_extra_skip: int = 0,
                 derive_budget_none: Optional[int] = None,
                 gate_estimator: Optional[Estimator] = None, op_args: Mapping[str, Mapping[str, Any]] = {},
                 fused: bool = True, channels_last: bool = True, partial_channels: int = 1,
                 group_convs: Optional[bool] = None):
        if gates not in GATES:
            raise ConfigError(f"space.gates: unknown gates '{gates}'; allowed: {', '.join(GATES)}")
        self.op_names = list(ops) if ops else list(OPS)
        unknown = [op for op in derive_exclude if op not in self.op_names]
        if unknown:
            raise ConfigError(f"derive.exclude: '{unknown[0]}' is not a candidate op here; "
                              f"candidates: {', '.join(self.op_names)}")
        self.derive_allowed = torch.tensor([op not in derive_exclude for op in self.op_names])
        if not self.derive_allowed.any():
            raise ConfigError("derive.exclude leaves no candidate to derive; keep at least one op")
        self.derive_max_skip = check_max_skip(derive_max_skip)
        self.derive_min_skip = check_min_skip(derive_min_skip, derive_max_skip)
        if derive_budget_extra_skip < 0:
            raise ConfigError(f"derive.budget_extra_skip must be 0 or more, got {derive_budget_extra_skip}")
        self.derive_budget_extra_skip = derive_budget_extra_skip
        if derive_budget_none is not None and derive_budget_none < 1:
            raise ConfigError(f"derive.budget_none must be 1 or more (or null: never none), got {derive_budget_none}")
        self.derive_budget_none = derive_budget_none
        self.gates = gates
        self.aux_skip = 0.0  # DARTS-'s β, set by the search loop (see the module docstring)
        self.channels_last = channels_last
        K = check_partial(partial_channels, (C, 2 * C, 4 * C))
        # ops with discrete parameters of their own (dnf_1x1) learn them with the rules' estimator
        context = dict(estimator=estimator.for_kind("rules"), generator=generator)
        super().__init__(lambda c: SearchCell(c, self.op_names, affine, gates == "channel", l0_lambda,
                                              gate_estimator, op_args, context, fused, K, group_convs),
                         C, N, num_classes, in_channels)
        self.arch = nn.ModuleDict({
            "cell": Choice(estimator, len(EDGES), self.op_names, init_std=init_std,
                           generator=generator, labels=EDGE_NAMES)})
        has_logits = "logits" in self.arch["cell"].roles.values()
        if with_aux_skip and has_logits and "none" in self.op_names:
            # beside the auxiliary skip a `none` edge computed β·x, an identity path: deriving it
            # as a zero edge would cut a path the cell was judged with (module docstring)
            self.derive_allowed[self.op_names.index("none")] = False
            if not self.derive_allowed.any():
                raise ConfigError("space.ops: with optim.aux_skip derive never picks 'none'; "
                                  "give at least one other op")
        refuse_without_logits(self.arch["cell"], estimator.name,
                              [key for key, given in (("derive.exclude=[]", not self.derive_allowed.all()),
                                                      ("derive.max_skip=null", derive_max_skip is not None),
                                                      ("derive.min_skip=null", bool(derive_min_skip)))
                               if given])
        if K > 1:  # PC-DARTS edge normalisation (nas.supernet.partial)
            self.arch["edges"] = EdgeNormalization(EDGES_FROM_TO, EDGE_NAMES, init_std, generator)
        if gates == "edge":
            self.arch["gates"] = make_gate(len(EDGES), l0_lambda, gate_estimator, labels=EDGE_NAMES,
                                           generator=generator)
        elif gates == "op":
            labels = [f"{edge}/{op}" for edge in EDGE_NAMES for op in self.op_names]
            self.arch["gates"] = make_gate(len(labels), l0_lambda, gate_estimator, labels=labels,
                                           generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        sample = self.arch["cell"]()
        edge_gates = None
        if self.gates == "edge":
            edge_gates = self.arch["gates"]()
        elif self.gates == "op":
            z = self.arch["gates"]().view(len(EDGES), len(self.op_names))
            sample = Sample(sample.weights * z, sample.index, sample.active)
        if "edges" in self.arch:
            beta = self.arch["edges"].weights()
            edge_gates = beta if edge_gates is None else edge_gates * beta
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x) if isinstance(cell, ResBlock) else cell(x, sample, edge_gates, self.aux_skip)
        return self.head(x)

    def genotype(self) -> NB201Genotype:
        """Derive: the estimator's decision per edge (argmax of α for the relaxations), without
        the ops of ``derive_exclude`` and what the L0 gates closed, with at most
        ``derive_max_skip`` and at least ``derive_min_skip`` skip connections (see the module
        docstring)."""
        idx = self.arch["cell"].derive().tolist()
        allowed = self.derive_allowed.expand(len(EDGES), -1).clone()
        if self.arch["cell"].mask is not None:  # pruned candidates (Choice.set_mask)
            allowed &= self.arch["cell"].mask
        if self.gates == "op":
            allowed &= self.arch["gates"].open().view(len(EDGES), len(self.op_names)).cpu()
        ops = []
        probs = None
        for e, k in enumerate(idx):
            if not allowed[e, k] and allowed[e].any():
                if probs is None:
                    probs = self.arch["cell"].probs().float().cpu()
                k = int(probs[e].masked_fill(~allowed[e], float("-inf")).argmax())
            ops.append(self.op_names[k] if allowed[e, k] else "none")
        skippable = allowed.clone()  # an edge its gates closed stays closed under the skip floor
        if self.gates in ("edge", "channel"):
            if self.gates == "edge":
                closed = [not is_open for is_open in self.arch["gates"].open().tolist()]
            else:
                cells = [c for c in self.cells if isinstance(c, SearchCell)]
                closed = torch.stack([c.closed_edges() for c in cells]).all(0).tolist()
            ops = ["none" if shut else op for op, shut in zip(ops, closed)]
            skippable[torch.tensor(closed, dtype=torch.bool)] = False
        if self.derive_max_skip is not None and ops.count("skip_connect") > self.derive_max_skip:
            ops = self._limit_skips(ops, allowed)
        derived = self._derived_forms(self._floor_skips(list(ops), skippable))
        budget = self.budget()  # nas.cost.Budget, attached for a cost budget
        if budget is not None and budget.over(derived):
            derived = self._within_budget(budget, ops, allowed, self.derive_max_skip)
            if self.derive_max_skip is not None and self.derive_budget_extra_skip:
                derived = self._spend_extra_skip(budget, ops, allowed, derived)
            floored = self._derived_forms(self._floor_skips(list(derived.ops), skippable))
            if floored.ops != derived.ops and not budget.over(floored) and self._admits(floored.ops):
                derived = NB201Genotype(floored.ops, derived.widths)
        return derived

    def _kept(self, e: int, op: str) -> Tuple[Optional[float], bool]:
        """``(share, is_width)``: the mean over every cell of what ``op`` on edge ``e`` kept of its
        own (its ``kept_fraction``; None for an op without one) and whether that share is a width
        (``sets_width``: the L0-gated convs)."""
        cells = [c for c in self.cells if isinstance(c, SearchCell)]
        mods = [c.edges[e].ops[self.op_names.index(op)] for c in cells] if op in self.op_names else []
        mods = [m for m in mods if hasattr(m, "kept_fraction")]
        if not mods:
            return None, False
        return sum(m.kept_fraction() for m in mods) / len(mods), all(getattr(m, "sets_width", False) for m in mods)

    def _derived_forms(self, ops: list) -> NB201Genotype:
        """What the derived ops kept of their own, over every cell (an op's ``kept_fraction``):
        an op that kept nothing (a DNF op whose every rule is ``IF FALSE``, an L0-gated op with
        every channel closed) is ``none``; a width-searching op (``sets_width``) records the mean
        share of channels it kept as the edge's width."""
        widths: List[Optional[float]] = [None] * len(EDGES)
        for e, op in enumerate(ops):
            kept, is_width = self._kept(e, op)
            if kept is None:
                continue
            if kept == 0:
                ops[e] = "none"
            elif is_width:
                widths[e] = round(kept, 4)
        return NB201Genotype(tuple(ops), tuple(widths))

    def _spend_extra_skip(self, budget, ops: list, allowed: Tensor, derived: NB201Genotype) -> NB201Genotype:
        """``derive_budget_extra_skip`` n: of the most probable cells within the target with at
        most ``derive_max_skip + j`` skip edges (j = 0..n), the costliest by the table (ties: the
        fewer skips). Under a binding budget a skip edge is also a way to free cost for a conv
        elsewhere; an extra skip is kept only where it does that (the cell spends more of the
        budget), never where it makes the cell cheaper, which is the skip collapse the limit
        guards against. Measured on the CPU proxy over 28 cost sources and 5 budget percentiles
        (docs/devices.md, "Which derive rule under a budget")."""
        best, spent = derived, budget.exact(derived) if not budget.over(derived) else float("-inf")
        for extra in range(1, self.derive_budget_extra_skip + 1):
            cell = self._within_budget(budget, ops, allowed, self.derive_max_skip + extra)
            if budget.over(cell):
                continue
            cost = budget.exact(cell)
            if cost > spent * (1 + 1e-12) + 1e-12:
                best, spent = cell, cost
        return best

    def _within_budget(self, budget, ops: list, allowed: Tensor, max_skip: Optional[int]) -> NB201Genotype:
        """The most probable cell under the same derive rules that fits ``cost.target`` (edges
        that gates closed stay ``none``; at most ``max_skip`` skip connections).

        A width-searching candidate (``l0_*``) may be kept narrower than its gates' width ``w``:
        at ``w`` or at any share of :data:`DERIVE_WIDTHS` below it. The op choice comes first: a
        cell is admissible when it fits with each such op at its narrowest width, and the most
        probable admissible cell is taken (its width does not change a cell's probability); its
        width-searching edges then get the widest widths that fit (ties: the earlier edges
        wider). Without such candidates this is the plain most probable cell within the target."""
        names = self._budget_names()
        probs = torch.zeros(len(EDGES), len(names))
        probs[:, :len(self.op_names)] = self.arch["cell"].probs().float().cpu()
        mask = torch.zeros(len(EDGES), len(names), dtype=torch.bool)
        mask[:, :len(self.op_names)] = allowed
        closed = [op == "none" and not bool(allowed[e, self.op_names.index("none")])
                  if "none" in self.op_names else op == "none" for e, op in enumerate(ops)]
        keep = None
        if self.derive_budget_none is not None:
            probs, mask = self._none_after(probs, mask, names.index("none"), self.derive_budget_none)
            keep = self._live_cells(names)
        for e, shut in enumerate(closed):  # a gate closed it, or nothing is allowed there
            if shut:
                mask[e] = False
                mask[e, names.index("none")] = True
        table = budget.table
        cost = table.for_candidates("arch.cell", names).clone()
        options: Dict[Tuple[int, int], List[float]] = {}   # (edge, candidate) -> its widths, widest first
        for e in range(len(EDGES)):
            for k, op in enumerate(names):
                kept, is_width = self._kept(e, op)
                if kept == 0:      # derives to none
                    cost[e, k] = cost[e, names.index("none")]
                elif is_width and mask[e, k]:
                    options[e, k] = [round(kept, 4)] + [w for w in DERIVE_WIDTHS if w < round(kept, 4)]
                    cost[e, k] = table.at_width("arch.cell", e, op, options[e, k][-1])
        pick = budget.within("arch.cell", probs, mask, _skip_limit(names, max_skip), candidates=names, cost=cost,
                             keep=keep)
        if pick is None:
            return self._derived_forms(list(ops))  # the caller's require_within names the problem
        derived = self._derived_forms([names[k] for k in pick])
        narrow = [(e, options[e, k]) for e, k in enumerate(pick) if (e, k) in options and len(options[e, k]) > 1]
        if not narrow:
            return derived
        at = {(e, w): table.at_width("arch.cell", e, derived.ops[e], w) for e, ws in narrow for w in ws}
        rest = budget.exact(derived) - sum(at[e, ws[0]] for e, ws in narrow)
        limit = budget.target * (1 + 1e-9)
        best = None
        for choice in itertools.product(*(ws for _, ws in narrow)):  # widest first
            total = rest + sum(at[e, w] for (e, _), w in zip(narrow, choice))
            if total <= limit and (best is None or total > best[0] * (1 + 1e-12)):
                best = (total, choice)
        if best is None:
            return derived
        widths = list(derived.widths or (None,) * len(EDGES))
        for (e, _), w in zip(narrow, best[1]):
            widths[e] = w
        return NB201Genotype(derived.ops, tuple(widths))

    def _budget_names(self) -> List[str]:
        """The candidates derive within a target enumerates: the space's ops, and ``none`` (an
        edge the gates closed) where they lack it."""
        return list(self.op_names) + ([] if "none" in self.op_names else ["none"])

    @staticmethod
    def _none_after(probs: Tensor, mask: Tensor, none: int, k: int) -> Tuple[Tensor, Tensor]:
        """``derive_budget_none`` K: ``none`` allowed on every edge, ranked just after the edge's K
        most probable allowed candidates: as probable as the (K+1)-th, and ahead of it (with K at
        least the number allowed, just behind the least probable). Its own probability is not
        used: in a relaxed supernet the zero op's weight only rescales the edge's output, which
        the following BN undoes (DARTS §2.4), and beside DARTS-'s auxiliary skip a ``none`` edge
        carried ``β·x``. Under a budget an edge then keeps one of its K strongest ops or is
        dropped, never one the search ranked below them."""
        probs, mask = probs.clone(), mask.clone()
        ranked = probs.masked_fill(~mask, float("-inf")).sort(-1, descending=True).values
        n = mask.sum(-1)
        after = ranked.gather(1, torch.clamp(n - 1, min=0).clamp(max=k)[:, None])[:, 0]
        # a hair either way decides the rank against that op; far below any gap of the search's
        score = torch.where(n > k, after * (1 + 1e-6), after * (1 - 1e-6))
        probs[:, none] = torch.where(n > 0, score, probs[:, none])
        mask[:, none] = True
        return probs, mask

    def _live_cells(self, names: Sequence[str]):
        """``[n, 6]`` op indices into ``names`` → ``[n]`` bool: every op on an input-output path
        (:func:`~nas.spaces.nb201.genotype.all_live`). Once ``none`` may be derived, an op whose
        input is zero or whose output no path uses would be paid for and compute nothing."""
        none = list(names).index("none")
        return lambda grid: all_live(grid != none)

    def _admits(self, ops: Sequence[str]) -> bool:
        """Whether the derive rules admit the cell ``ops`` (with ``derive_budget_none``: no wasted op)."""
        return self.derive_budget_none is None or bool(all_live(torch.tensor([op != "none" for op in ops])))

    def cost_cheapest(self, table: Any) -> Optional[float]:
        """For :class:`nas.cost.Budget`'s check of a hard target: the cheapest cell derive within a
        target may pick, by the table's cell cost: the allowed ops with at most
        ``derive_max_skip`` (+ ``derive_budget_extra_skip``) skip edges, and with
        ``derive_budget_none`` ``none`` on any edge of a cell without a wasted op. The sum of
        each edge's cheapest op, the budget's generic bound, would admit targets only cells with
        more skips meet, and the search would run in full before derive found nothing."""
        from nas.cost.feasible import feasible_grid, grid_cost
        names = self._budget_names()
        mask = torch.zeros(len(EDGES), len(names), dtype=torch.bool)
        mask[:, :len(self.op_names)] = self.derive_allowed
        keep = None
        if self.derive_budget_none is not None:
            mask[:, names.index("none")] = True  # as _none_after allows it
            keep = self._live_cells(names)
        cost = table.narrowest("arch.cell", names)
        limit = None if self.derive_max_skip is None else self.derive_max_skip + self.derive_budget_extra_skip
        cell_cost = table.cell_costs("arch.cell", names)
        grid = feasible_grid(cost, float("inf"), mask, _skip_limit(names, limit), cell_cost, keep)
        return None if grid is None else table.fixed + float(grid_cost(cost, grid, cell_cost).min())

    def derive_limit(self, name: str, candidates: Sequence[str]) -> Optional[Tuple[int, int]]:
        return _skip_limit(candidates, self.derive_max_skip) if name == "arch.cell" else None

    def cost_kept_share(self, name: str) -> Optional[Tensor]:
        """For :mod:`nas.cost.budget`: ``[E, K]`` the mean ``P(z ≠ 0)`` of a width-searching
        candidate's channel gates over the cells (1 for the other candidates), ``None`` without
        such candidates."""
        if name != "arch.cell":
            return None
        cells = [c for c in self.cells if isinstance(c, SearchCell)]
        cols: List[Optional[Tensor]] = []
        for k in range(len(self.op_names)):
            mods = [[c.edges[e].ops[k] for c in cells] for e in range(len(EDGES))]
            if not all(getattr(m, "sets_width", False) for row in mods for m in row):
                cols.append(None)
                continue
            cols.append(torch.stack([torch.stack([m.gate.open_probs().mean() for m in row]).mean() for row in mods]))
        given = [c for c in cols if c is not None]
        if not given:
            return None
        return torch.stack([c if c is not None else torch.ones_like(given[0]) for c in cols], 1)

    def cost_open_probs(self, name: str) -> Optional[Tensor]:
        """For :mod:`nas.cost.budget`: ``[E, K]`` or ``[E, 1]`` probability that the L0 gates
        keep a candidate open (``P(z ≠ 0)``; channel gates: the mean over the edge's channels
        and cells, the share of its cost that stays), ``None`` without gates."""
        if self.gates == "none" or name != "arch.cell":
            return None
        if self.gates == "channel":
            cells = [c for c in self.cells if isinstance(c, SearchCell)]
            return torch.stack([c.gate.open_probs().view(len(EDGES), -1).mean(1)
                                for c in cells]).mean(0)[:, None]
        p = self.arch["gates"].open_probs()
        return p[:, None] if self.gates == "edge" else p.view(len(EDGES), len(self.op_names))

    def _limit_skips(self, ops: list, allowed: Tensor) -> list:
        """P-DARTS's limit on the derived cell: the ``derive_max_skip`` skip edges with the largest
        skip probability keep it (ties: the earlier edge), the others their next allowed choice."""
        probs = self.arch["cell"].probs().float().cpu()
        skip = self.op_names.index("skip_connect")
        edges = [e for e, op in enumerate(ops) if op == "skip_connect"]
        ranked = sorted(edges, key=lambda e: (-float(probs[e, skip]), e))
        for e in ranked[self.derive_max_skip:]:
            others = allowed[e].clone()
            others[skip] = False
            ops[e] = (self.op_names[int(probs[e].masked_fill(~others, float("-inf")).argmax())]
                      if others.any() else "none")
        return ops

    def _floor_skips(self, ops: list, allowed: Tensor) -> list:
        """P-DARTS's constant M from below: while the cell has fewer than ``derive_min_skip``
        skip edges, the edge with the largest skip probability (ties: the earlier edge) among those
        that may take skip and do not have it takes it."""
        if not self.derive_min_skip or "skip_connect" not in self.op_names:
            return ops
        skip = self.op_names.index("skip_connect")
        missing = self.derive_min_skip - ops.count("skip_connect")
        if missing <= 0:
            return ops
        probs = self.arch["cell"].probs().float().cpu()
        free = [e for e, op in enumerate(ops) if op != "skip_connect" and allowed[e, skip]]
        for e in sorted(free, key=lambda e: (-float(probs[e, skip]), e))[:missing]:
            ops[e] = "skip_connect"
        return ops

    def artifacts(self, genotype: Optional[NB201Genotype] = None) -> Dict[str, str]:
        """``learned_ops.txt``: what the derived cell's ops learned of their own in every cell
        (DNF rules per output channel, open channels of L0-gated ops), when they have any."""
        genotype = genotype if genotype is not None else self.genotype()
        found = [(f"cells.{i} edge {EDGE_NAMES[e]} {op}", cell.edges[e].ops[self.op_names.index(op)])
                 for i, cell in enumerate(self.cells) if isinstance(cell, SearchCell)
                 for e, op in enumerate(genotype.ops) if op in self.op_names]
        text = describe_ops(found)
        return {"learned_ops.txt": text} if text else {}


def _skip_limit(candidates: Sequence[str], max_skip: Optional[int]) -> Optional[Tuple[int, int]]:
    """``(index of skip_connect among candidates, M)``, the count limit the budget's enumeration
    takes; ``None`` without a limit or without a skip candidate."""
    if max_skip is None or "skip_connect" not in candidates:
        return None
    return list(candidates).index("skip_connect"), max_skip
