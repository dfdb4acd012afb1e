"""A differentiable latency model of an NB201 cell on one device, fitted to the measured table.

A search needs the expected latency of the relaxed cell, a function of the per-edge op
probabilities ``q_e`` (:mod:`nas.cost.budget`). The measured latency of a cell is not a sum over
its ops: kernels fuse, and on the TFLite devices (Pixel 3, Raspberry Pi 4) an op whose input or
output is cut off by ``none`` edges is pruned from the graph. The model

    L̂(cell) = b + Σ_e w_e[k_e]                                  (additive: ProxylessNAS, FBNet)
              + Σ_(i<j) W_ij[k_i, k_j]                            (one term per pair of edges)
              + Σ_e v_e[k_e] · live_e(cell) + u · connected(cell)

is linear in its features, fitted by least squares over all 15,625 cells of the table at once for
every device (the design matrix is shared; minimum-norm solution, as the one-hot features are
collinear). ``live_e``: edge e lies on a path of non-``none`` edges from the input to the output;
``connected``: some edge does. The additive part alone is the classic lookup-table model; its
fit is reported beside (``nas-lookup --devices``).

Its expectation under independent edges (the relaxation's product distribution) is exact and
differentiable in ``q``:

    E[L̂] = b + Σ_e q_eᵀ w_e + Σ_(i<j) q_iᵀ W_ij q_j + Σ_e (q_eᵀ v_e) · R_from(e) · C_to(e) + u · P(connected)

with ``p_e = 1 − q_e[none]``; ``R_i`` the probability that node i is reached from the input
(``R_0 = 1``, ``R_1 = p_10``, ``R_2 = 1 − (1 − p_20)(1 − R_1 p_21)``), ``C_j`` that node j reaches
the output (``C_3 = 1``, ``C_2 = p_32``, ``C_1 = 1 − (1 − p_31)(1 − p_21 C_2)``). An edge i→j's
own event and ``R_i`` and ``C_j`` involve disjoint edges (those among nodes ≤ i, the edge, those
among nodes ≥ j), hence the product; ``P(connected)`` sums the 2^6 on/off patterns of the edges.

The derived cell's latency is always read from the table itself (:mod:`nas.cost.device`), never
from this model.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor

N_EDGES, N_OPS = 6, 5
NONE = 0  # the index of `none` among the benchmark's ops (nas.spaces.nb201.OPS)
PAIRS: List[Tuple[int, int]] = [(i, j) for i in range(N_EDGES) for j in range(i + 1, N_EDGES)]


def _edges() -> Tuple[Tuple[int, int], ...]:
    from nas.spaces.nb201.genotype import EDGES
    return EDGES  # (to, from) per edge


def live_edges(on: Tensor) -> Tensor:
    """:func:`nas.spaces.nb201.genotype.live_edges` (imported late: the space imports this package)."""
    from nas.spaces.nb201.genotype import live_edges as live
    return live(on)


def all_cells() -> Tensor:
    """``[15625, 6]`` op indices of every cell, in the table's order."""
    return torch.cartesian_prod(*[torch.arange(N_OPS)] * N_EDGES)


def features(cells: Tensor, pairwise: bool = True) -> Tensor:
    """``[n, F]`` design matrix of the model (module docstring) for ``cells`` ``[n, 6]``;
    ``pairwise=False``: the additive model's ``[n, 31]`` (bias, one-hot per edge and op)."""
    n = cells.shape[0]
    rows = torch.arange(n)
    add = torch.zeros(n, N_EDGES * N_OPS, dtype=torch.float64)
    add[rows[:, None], torch.arange(N_EDGES) * N_OPS + cells] = 1
    cols = [torch.ones(n, 1, dtype=torch.float64), add]
    if pairwise:
        pair = torch.zeros(n, len(PAIRS) * N_OPS * N_OPS, dtype=torch.float64)
        idx = torch.stack([p * N_OPS * N_OPS + cells[:, i] * N_OPS + cells[:, j] for p, (i, j) in enumerate(PAIRS)], 1)
        pair[rows[:, None], idx] = 1
        live = live_edges(cells != NONE)
        cols += [pair, add * live.repeat_interleave(N_OPS, 1), live.any(-1, keepdim=True).double()]
    return torch.cat(cols, 1)


def _lstsq(a: Tensor, y: Tensor) -> Tensor:
    """Minimum-norm least squares ``argmin |a w − y|`` (rank-deficient ``a``), every column of ``y``."""
    return torch.linalg.pinv(a.T @ a, hermitian=True) @ (a.T @ y)


def ranks(x: Tensor) -> Tensor:
    """Ranks 1..n, ties sharing their mean rank (as Spearman's ρ with ties defines them)."""
    order = torch.argsort(x, stable=True)
    xs = x[order]
    r = torch.empty_like(x, dtype=torch.float64)
    first = torch.ones_like(xs, dtype=torch.bool)
    first[1:] = xs[1:] != xs[:-1]
    group = torch.cumsum(first.long(), 0) - 1
    starts = torch.nonzero(first).flatten().double()
    ends = torch.cat([starts[1:], torch.tensor([float(len(x))], dtype=torch.float64)])
    r[order] = ((starts + ends - 1) / 2 + 1)[group]
    return r


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman's ρ: Pearson's correlation of the (tie-averaged) ranks."""
    rx, ry = ranks(x) - (len(x) + 1) / 2, ranks(y) - (len(y) + 1) / 2
    return float((rx * ry).sum() / (rx.square().sum() * ry.square().sum()).sqrt())


def pearson(x: Tensor, y: Tensor) -> float:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    return float((x * y).sum() / (x.square().sum() * y.square().sum()).sqrt())


def twin_cells() -> Tuple[Tensor, Tensor]:
    """Row indices ``(a, b)`` of the pairs of distinct cells that are one network: with the edge
    2←1 ``none``, nodes 1 and 2 are interchangeable (swap the edges 1←0 ↔ 2←0 and 3←1 ↔ 3←2).
    The table measured each twin on its own, so their difference is measurement noise."""
    edges = list(_edges())
    e = {edge: k for k, edge in enumerate(edges)}
    cells = all_cells()
    swap = cells.clone()
    for x, y in (((1, 0), (2, 0)), ((3, 1), (3, 2))):
        swap[:, e[x]], swap[:, e[y]] = cells[:, e[y]], cells[:, e[x]]
    index = (swap * (N_OPS ** torch.arange(N_EDGES - 1, -1, -1))).sum(1)  # all_cells' order
    a = torch.arange(len(cells))
    keep = (cells[:, e[2, 1]] == NONE) & (index > a)
    return a[keep], index[keep]


def noise_ceiling(ms: Tensor) -> float:
    """The highest Pearson correlation any predictor can reach with the measured ``ms``
    (``[15625]``): that of the noise-free latency, ``sqrt(1 − σ²/Var(ms))``, with the noise
    variance ``σ² = Var(ms_a − ms_b) / 2`` estimated from the :func:`twin_cells` (independent
    noise of equal variance on every cell assumed)."""
    a, b = twin_cells()
    var = float(ms.double().var())
    noise = float((ms[a] - ms[b]).double().var()) / 2
    return max(var - noise, 0.0) ** 0.5 / var ** 0.5


@dataclass
class Fit:
    """How well a model's predictions ``pred`` match the measured ``ms``."""

    rho: float        # Spearman's ρ over all cells
    mean_error: float  # mean of |pred − ms| / ms over the connected cells
    r: float = float("nan")  # Pearson's r over all cells (compare with noise_ceiling)

    @classmethod
    def of(cls, pred: Tensor, ms: Tensor) -> "Fit":
        # a disconnected cell outputs zeros (NB201 scores it 10%); on the TFLite devices its whole
        # network is pruned to microseconds, where a relative error would drown every other cell's
        conn = live_edges(all_cells() != NONE).any(-1)
        # ranked at the table's precision (6 significant digits): predictions of equally fast cells
        # differ in their last bits, and splitting the table's ties would cost ρ nothing real
        return cls(spearman(significant(pred, 6), ms), float(((pred - ms).abs() / ms)[conn].mean()),
                   pearson(pred, ms))


def significant(x: Tensor, digits: int) -> Tensor:
    """``x`` rounded to ``digits`` significant digits."""
    scale = 10.0 ** (digits - 1 - torch.floor(torch.log10(x.abs().clamp_min(1e-300))))
    return torch.round(x * scale) / scale


class LatencyModel:
    """The fitted model of one device (module docstring): ``predict(cells)`` and the differentiable
    ``expected(q)``; ``fit``/``additive_fit``: its and the additive model's agreement with the table."""

    def __init__(self, w: Tensor, fit: Fit, additive_fit: Fit):
        self.w = w
        self.fit, self.additive_fit = fit, additive_fit
        k = N_EDGES * N_OPS
        self.bias = float(w[0])
        self.additive = w[1:1 + k].view(N_EDGES, N_OPS)
        self.pairs = w[1 + k:1 + k + len(PAIRS) * N_OPS * N_OPS].view(len(PAIRS), N_OPS, N_OPS)
        self.live = w[1 + k + len(PAIRS) * N_OPS * N_OPS:-1].view(N_EDGES, N_OPS)
        self.connected = float(w[-1])
        self._on: Dict[Tuple[torch.device, torch.dtype], Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = {}

    def predict(self, cells: Tensor) -> Tensor:
        return features(cells) @ self.w

    def interactions(self, q: Tensor) -> Tensor:
        """The expectation of every term but the bias and the additive one (``q``: ``[6, 5]``)."""
        pairs, live, on_mask, on_conn, _ = self._tensors(q)
        i, j = zip(*PAIRS)
        pair = torch.einsum("pa,pab,pb->", q[list(i)], pairs, q[list(j)])
        p = 1 - q[:, NONE]
        edge = {(j_, i_): p[e] for e, (j_, i_) in enumerate(_edges())}
        one = torch.ones((), dtype=q.dtype, device=q.device)
        r1 = edge[1, 0]
        reach = [one, r1, 1 - (1 - edge[2, 0]) * (1 - r1 * edge[2, 1])]
        c2 = edge[3, 2]
        co = [None, 1 - (1 - edge[3, 1]) * (1 - edge[2, 1] * c2), c2, one]
        path = torch.stack([reach[i_] * co[j_] for j_, i_ in _edges()])
        live_term = ((q * live).sum(-1) * path).sum()
        # P(connected): the 2^6 on/off patterns of the edges, each with its probability
        prob = torch.where(on_mask, p, 1 - p).prod(-1)
        return pair + live_term + (prob * on_conn).sum() * self.connected

    def expected(self, q: Tensor) -> Tensor:
        """``E[L̂]`` under independent edges with op probabilities ``q`` (``[6, 5]``, benchmark order)."""
        return self.bias + (q * self._tensors(q)[4]).sum() + self.interactions(q)

    def _tensors(self, like: Tensor):
        key = (like.device, like.dtype)
        if key not in self._on:
            masks = torch.tensor(list(itertools.product((False, True), repeat=N_EDGES)))
            conn = live_edges(masks).any(-1)
            self._on[key] = tuple(t.to(like.device, like.dtype) if t.is_floating_point() else t.to(like.device)
                                  for t in (self.pairs, self.live, masks, conn.double(), self.additive))
        return self._on[key]


def fit_models(ms: Tensor) -> List[LatencyModel]:
    """One :class:`LatencyModel` per column of ``ms`` (``[15625, D]``, table order)."""
    cells = all_cells()
    a, a_add = features(cells), features(cells, pairwise=False)
    w, w_add = _lstsq(a, ms), _lstsq(a_add, ms)
    pred, pred_add = a @ w, a_add @ w_add
    return [LatencyModel(w[:, d], Fit.of(pred[:, d], ms[:, d]), Fit.of(pred_add[:, d], ms[:, d]))
            for d in range(ms.shape[1])]


def fit_additive(ms: Tensor) -> Tuple[float, Tensor]:
    """``(b, w [6, 5])`` of the additive least-squares model of one column ``ms`` (``[15625]``)."""
    w = _lstsq(features(all_cells(), pairwise=False), ms[:, None])[:, 0]
    return float(w[0]), w[1:].view(N_EDGES, N_OPS)


