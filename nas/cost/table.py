"""The cost table of a search: every candidate op on every edge of the network that will be
trained, plus the fixed skeleton (stem, reduction blocks, head, a DARTS cell's preprocessing).

A space describes its trained network through the :class:`~nas.cost.model.CostModel` it returns
(``space.cost_model()``): ``edges`` (the shape of every edge of every cell, per choice),
``ops_table`` (the discrete op table), ``reference`` (a genotype to measure the skeleton with) and
``selected_edges`` (the (edge, op) pairs a genotype keeps). Then

    cost(genotype) = fixed + Σ_(choice, edge, op) kept  table[choice][edge, op]

where ``table[choice][e, k]`` sums op k's cost over every cell that shares the choice, and
``fixed = cost(network(reference)) − Σ_reference table``. Costs add up over ops because each op
of a cell is a separate module on a known input shape (MACs, parameters), or by the lookup-table
model of latency (ProxylessNAS, Cai et al. 2019; FBNet, Wu et al. 2019: the network's latency is
the sum of its ops' measured latencies). Tests check the sum against counting whole networks.

Widths: an edge whose genotype records a width (a width-searching op, ``l0_*``, kept that share of
its output channels) costs what its op built at that width costs on the edge's shapes
(:meth:`CostTable.at_width`, counted like the table's columns, so ``exact`` equals counting the
pruned network). A latency table times ops at full width only: a width-searching candidate is
refused with a latency metric rather than costed wrongly. For the expected cost of a search, a
width-searching op's cost is affine in its kept channels (``a + b·k``: a conv's output channels):
:meth:`CostTable.width_terms` gives its full-width cost ``a + b·C`` and slope ``b·C``, so that
``E[cost] = a + b·C·f`` for an expected kept share ``f``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import ConfigError
from .measure import METRICS, counted


# the shares of its channels, below its gates' width, that derive within a hard cost target may
# keep a width-searching op at (widest first; NB201Supernet._within_budget)
DERIVE_WIDTHS = (0.75, 0.5, 0.25)


@dataclass(frozen=True)
class EdgeShape:
    """One edge of one cell of the trained network: its row in its choice, its op's input
    channels, output channels, stride and input resolution. ``share``: the fraction of derived
    cells expected to keep the edge (1 in NB201; a DARTS node keeps top_k of its n+2 inputs)."""

    edge: int
    C_in: int
    C_out: int
    stride: int
    H: int
    W: int
    share: float = 1.0


@dataclass
class CostTable:
    """``edges[choice]``: ``[E, len(ops)]`` cost of op k on edge e (in :data:`UNITS` of ``metric``),
    summed over the cells sharing the choice; ``share[choice]``: ``[E]``; ``fixed``: the rest."""

    metric: str
    ops: List[str]
    edges: Dict[str, Tensor]
    share: Dict[str, Tensor]
    fixed: float
    network: Dict[str, Any] = field(default_factory=dict)
    # what costs an edge at a recorded width: every edge shape per choice, and the op's cost on one
    # shape at a width (None: this table cannot cost widths)
    rows: Dict[str, List[EdgeShape]] = field(default_factory=dict)
    measure_width: Optional[Callable[[str, EdgeShape, float], float]] = None
    width_ops: Tuple[str, ...] = ()   # the width-searching ops among ``ops``

    def column(self, op: str) -> int:
        if op not in self.ops:
            raise ConfigError(f"op '{op}' has no cost in this table; known: {', '.join(self.ops)}")
        return self.ops.index(op)

    def for_candidates(self, choice: str, candidates: Sequence[str]) -> Tensor:
        """``[E, K]`` share-weighted cost of a choice's candidates, in their order."""
        cols = [self.column(op) for op in candidates]
        return self.edges[choice][:, cols] * self.share[choice][:, None]

    def exact(self, selected: Dict[str, Sequence[Tuple[int, str]]],
              widths: Optional[Dict[str, Dict[int, float]]] = None) -> float:
        """The cost of a discrete network: ``fixed`` plus every kept (edge, op) of every choice,
        an edge with a width in ``widths`` (``{choice: {edge: share}}``) at that width."""
        total = self.fixed
        widths = widths or {}
        for choice, pairs in selected.items():
            t, w = self.edges[choice], widths.get(choice, {})
            total += sum(float(t[e, self.column(op)]) if w.get(e) is None else self.at_width(choice, e, op, w[e])
                         for e, op in pairs)
        return total

    def at_width(self, choice: str, edge: int, op: str, width: float) -> float:
        """The cost of ``op`` on edge ``edge`` of every cell sharing ``choice``, built at ``width``
        (the share of its output channels a derived width-searching op kept)."""
        self.column(op)
        if self.measure_width is None:
            raise ConfigError(f"this {self.metric} cost table measures full-width ops only; edge {edge} keeps "
                              f"'{op}' at width {width:g}: budget macs or params for a width search")
        return sum(self.measure_width(op, r, width) for r in self.rows[choice] if r.edge == edge)

    def width_terms(self, choice: str, candidates: Sequence[str]) -> Optional[Tuple[Tensor, Tensor]]:
        """``([E, K] full, [E, K] slope)``, share-weighted: a width-searching candidate's cost at
        full width and ``b·C`` of its cost ``a + b·k`` in its kept channels ``k`` (module
        docstring; other candidates: their column and 0); ``None`` when no candidate searches
        its width."""
        if not any(op in self.width_ops for op in candidates):
            return None
        full = self.for_candidates(choice, candidates).clone()
        slope = torch.zeros_like(full)
        sh = self.share[choice]
        for k, op in enumerate(candidates):
            if op not in self.width_ops:
                continue
            for e in range(full.shape[0]):
                rows = [r for r in self.rows[choice] if r.edge == e]
                top = [self.measure_width(op, r, 1.0) for r in rows]
                # b·C from the cost at C and at one channel: (c(C) − c(1))·C/(C − 1)
                per = [(t - self.measure_width(op, r, 1 / r.C_out)) * r.C_out / (r.C_out - 1) if r.C_out > 1 else t
                       for t, r in zip(top, rows)]
                full[e, k] = sum(top) * sh[e]
                slope[e, k] = sum(per) * sh[e]
        return full, slope

    def interactions(self, choice: str, q: Tensor, candidates: Sequence[str]) -> Optional[Tensor]:
        """The expected cost beyond ``Σ q·c`` of a choice's distribution ``q`` (``[E, K]``): none
        here, as costs add up over ops; a measured device table has some (:mod:`nas.cost.device`)."""
        return None

    def cell_costs(self, choice: str, candidates: Sequence[str]):
        """A function of ``[n, E]`` candidate indices giving the cells' cost minus ``fixed`` where
        cells are measured whole (:mod:`nas.cost.device`); ``None``: the sum of the edges' costs."""
        return None

    def cheapest(self, choice: str, allowed: Tensor, candidates: Sequence[str]) -> float:
        """The cost minus ``fixed`` of the cheapest cell of allowed candidates."""
        return float(self.min_cost(choice, allowed, candidates).sum())

    def min_cost(self, choice: str, allowed: Tensor, candidates: Sequence[str]) -> Tensor:
        """``[E]`` the cheapest allowed candidate per edge (``allowed``: ``[E, K]`` or ``[K]``), a
        width-searching one at the narrowest width derive may keep it at."""
        c = self.narrowest(choice, candidates)
        return c.masked_fill(~allowed.expand_as(c), float("inf")).min(-1).values

    def narrowest(self, choice: str, candidates: Sequence[str]) -> Tensor:
        """``[E, K]`` the candidates' costs, a width-searching one at the narrowest width derive
        may keep it at."""
        c = self.edges[choice][:, [self.column(op) for op in candidates]].clone()
        for k, op in enumerate(candidates):  # derive within a target may keep it at its narrowest width
            if op in self.width_ops and self.measure_width is not None:
                c[:, k] = torch.tensor([self.at_width(choice, e, op, DERIVE_WIDTHS[-1]) for e in range(c.shape[0])],
                                       dtype=c.dtype)
        return c


Measure = Callable[[str, EdgeShape], float]


def build_cost_table(cost_model: Any, metric: str, *, num_classes: int, in_channels: int, resolution: int,
                     network: Dict[str, Any], cell: Optional[Dict[str, Any]] = None, latency: Any = None,
                     batch_size: int = 1, ops: Optional[Sequence[str]] = None,
                     op_args: Optional[Dict[str, Dict[str, Any]]] = None) -> CostTable:
    """The :class:`CostTable` of a space's network ``build_network(g, **network)`` (its
    :class:`~nas.cost.model.CostModel`, ``space.cost_model()``) on
    ``resolution``² inputs with ``num_classes`` outputs; ``cell``: the searched cell's structure
    where the space has one (DARTS: ``steps``, ``multiplier``). ``latency``: a
    :class:`~nas.cost.latency.LatencyTable` (metric ``latency``), read at ``batch_size``.
    ``ops``: the run's candidates (``space.ops``: any registered op), costed besides the space's
    own, which its reference network is built of. ``op_args``: the options the run builds its ops
    with (``space.op_args``, e.g. a ``dnf_1x1``'s ``rules``), which the counted ops are built with
    too."""
    cell = cell or {}
    op_args = op_args or {}
    if metric not in METRICS:
        raise ConfigError(f"cost.metric: unknown metric '{metric}'; allowed: {', '.join(METRICS)}")
    ops = list(dict.fromkeys([*cost_model.ops, *(ops or ())]))
    shapes = cost_model.edges(resolution=resolution, **network, **cell)
    cache: Dict[Tuple[str, EdgeShape, Optional[float]], float] = {}

    def build(op: str, s: EdgeShape, **extra: Any) -> Any:
        """The op as the run builds it: its ``op_args``, plus ``extra`` (a width)."""
        return cost_model.ops_table[op](s.C_in, s.C_out, s.stride, True, **dict(op_args.get(op, {}), **extra))

    width_ops = tuple(op for op in ops if _sets_width(build, op, shapes))
    if metric == "latency" and width_ops:
        raise ConfigError(f"cost.metric=latency: op '{width_ops[0]}' searches its width, and a latency table times "
                          f"ops at full width only; budget cost.metric=macs or params, or drop the op")

    def op_cost(op: str, s: EdgeShape, width: Optional[float] = None) -> float:
        key = (op, EdgeShape(0, s.C_in, s.C_out, s.stride, s.H, s.W), width)
        if key not in cache:
            if metric == "latency":
                cache[key] = latency.op(op, s.C_in, s.C_out, s.stride, s.H, s.W, batch_size, op_args.get(op))
            else:
                module = build(op, s, **({} if width is None else {"width": width}))
                try:
                    cache[key] = counted(metric, module, (s.C_in, s.H, s.W))
                except (RuntimeError, ValueError, TypeError, IndexError) as e:  # a user op that cannot run
                    text = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
                    raise ConfigError(f"op '{op}' fails on a {s.C_in}x{s.H}x{s.W} input (C_out={s.C_out}, stride "
                                      f"{s.stride}) while its cost is counted: {type(e).__name__}: {text}; fix the "
                                      f"op's builder") from None
        return cache[key]

    edges: Dict[str, Tensor] = {}
    share: Dict[str, Tensor] = {}
    for choice, rows in shapes.items():
        n_edges = max(r.edge for r in rows) + 1
        t = torch.zeros(n_edges, len(ops), dtype=torch.float64)
        sh = torch.ones(n_edges, dtype=torch.float64)
        for r in rows:
            sh[r.edge] = r.share
            for k, op in enumerate(ops):
                t[r.edge, k] += op_cost(op, r)
        edges[choice], share[choice] = t, sh
    ref = cost_model.reference(**cell)
    if metric == "latency":
        whole = latency.network(network_key(cost_model.name, ref, network, resolution, num_classes, in_channels),
                                batch_size)
    else:
        net = cost_model.build_network(ref, num_classes=num_classes, in_channels=in_channels, **network)
        whole = counted(metric, net, (in_channels, resolution, resolution))
    table = CostTable(metric, ops, edges, share, 0.0,
                      dict(network, resolution=resolution, num_classes=num_classes, in_channels=in_channels),
                      rows=shapes, measure_width=None if metric == "latency" else op_cost, width_ops=width_ops)
    table.fixed = whole - table.exact(cost_model.selected_edges(ref))
    return table


def _sets_width(build: Callable[..., Any], op: str, shapes: Dict[str, List[EdgeShape]]) -> bool:
    """Whether ``op`` searches its width (its module ``sets_width``, :class:`nas.blocks.l0.ChannelGatedOp`)."""
    s = next((r for rows in shapes.values() for r in rows), None)
    if s is None:
        return False
    try:
        return bool(getattr(build(op, s), "sets_width", False))
    except (RuntimeError, ValueError, TypeError, IndexError, ConfigError):  # its cost reports the failure
        return False


def network_key(space: str, reference: Any, network: Dict[str, Any], resolution: int, num_classes: int,
                in_channels: int) -> str:
    """The latency table's key of the skeleton measurement of a trained network."""
    kw = ",".join(f"{k}={network[k]}" for k in sorted(network))
    return f"network|{space}|{kw}|{in_channels}x{resolution}x{resolution}|{num_classes}|{reference}"
