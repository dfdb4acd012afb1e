"""The most probable cell within a budget, when every edge picks one op and costs add up.

``argmax_{k_1..k_E} Σ_e log p_e[k_e]  s.t.  fixed + Σ_e c_e[k_e] ≤ limit`` (and at most ``M``
edges on one op, P-DARTS's skip limit), solved exactly by enumerating the allowed ops of every
edge: an NB201 cell has at most 5^6 = 15,625. Equally probable cells go to the costlier one (the
budget spent: the benchmark's front rises with cost), then to the first in lexicographic order of
the op indices, as the unconstrained argmax takes the first op. The costlier-first rule matters
for a point-mass distribution (Bop's state): every cell that changes the same number of edges
is then equally probable, and the first in order would put ``none`` on all of them.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

from ..errors import ConfigError

MAX_CELLS = 2_000_000  # beyond this the enumeration would take minutes: not an NB201-sized cell


CellCost = Callable[[Tensor], Tensor]  # [n, E] op indices -> [n] cost of each cell
Keep = Callable[[Tensor], Tensor]      # [n, E] op indices -> [n] bool: cells the space admits


def grid_cost(cost: Tensor, grid: Tensor, cell_cost: Optional[CellCost] = None) -> Tensor:
    """``[n]`` the cost of the cells ``grid`` (``[n, E]``): ``cell_cost`` where the cost of a cell
    is measured whole (a device table, :mod:`nas.cost.device`), else the sum of its edges' ``cost``."""
    if cell_cost is not None:
        return cell_cost(grid).double()
    return cost.double()[torch.arange(grid.shape[1]), grid].sum(1)


def feasible_grid(cost: Tensor, limit: float, allowed: Tensor,
                  count_limit: Optional[Tuple[int, int]] = None,
                  cell_cost: Optional[CellCost] = None, keep: Optional[Keep] = None) -> Optional[Tensor]:
    """``[F, E]`` every cell (op index per edge, lexicographic order) of allowed ops whose cost
    (:func:`grid_cost`) is at most ``limit``, that keeps op k on at most M edges
    (``count_limit = (k, M)``) and that ``keep`` admits (a rule on the whole cell, such as its
    topology); ``None`` when none does."""
    options = [torch.nonzero(allowed[e]).flatten() for e in range(allowed.shape[0])]
    if any(o.numel() == 0 for o in options):
        return None
    n = math.prod(o.numel() for o in options)
    if n > MAX_CELLS:
        raise ConfigError(f"the budget derive enumerates {n} cells, more than {MAX_CELLS}; "
                          f"restrict space.ops or set cost.hard=false")
    grid = torch.cartesian_prod(*options) if len(options) > 1 else options[0][:, None]  # [n, E]
    total = grid_cost(cost, grid, cell_cost)
    ok = total <= limit + 1e-9 * max(1.0, abs(limit))
    if count_limit is not None:
        k, m = count_limit
        ok &= (grid == k).sum(1) <= m
    if keep is not None:
        ok &= keep(grid)
    return grid[ok] if bool(ok.any()) else None


def most_probable_within(logp: Tensor, cost: Tensor, limit: float, allowed: Tensor,
                         count_limit: Optional[Tuple[int, int]] = None,
                         cell_cost: Optional[CellCost] = None, keep: Optional[Keep] = None) -> Optional[List[int]]:
    """Op index per edge (``logp``, ``cost``, ``allowed``: ``[E, K]``; ``limit`` on ``Σ cost``, or
    on ``cell_cost``), or ``None`` when no allowed cell fits. ``count_limit = (k, M)``: at most M
    edges pick op k; ``keep``: only cells it admits (:func:`feasible_grid`)."""
    grid = feasible_grid(cost, limit, allowed, count_limit, cell_cost, keep)
    if grid is None:
        return None
    rows = torch.arange(grid.shape[1])
    score = logp.double()[rows, grid].sum(1)
    spent = grid_cost(cost, grid, cell_cost)
    best = _near_max(score) & _near_max(spent.masked_fill(~_near_max(score), float("-inf")))
    return grid[best.nonzero()[0, 0]].tolist()  # the first of equally probable, equally costly cells


def _near_max(x: Tensor) -> Tensor:
    """``x`` within rounding of its maximum: sums of the same terms in another order are ties."""
    top = x.max()
    return x >= top - 1e-9 * max(1.0, abs(float(top)))


class FeasibleArgmax:
    """The structured argmax of a one-hot estimator's sample over the cells within a budget
    (``cost.sample_within``): ``argmax_{cells that fit} Σ_e scores[e, k_e]``, for scores that add
    up over edges (logits; the Gumbel-perturbed logits of GDAS, whose row-wise argmax is the
    Gumbel-max draw). With Gumbel noise this is perturb-and-MAP (Papandreou & Yuille, ICCV 2011):
    the draw lies within the budget and follows the distribution's order, though it is not an
    exact sample of the distribution restricted to those cells. The cells are enumerated once."""

    def __init__(self, cost: Tensor, limit: float, allowed: Tensor, count_limit: Optional[Tuple[int, int]] = None,
                 cell_cost: Optional[CellCost] = None):
        grid = feasible_grid(cost, limit, allowed, count_limit, cell_cost)
        if grid is None:
            raise ConfigError("cost.sample_within: no cell the derive rules allow fits cost.target; raise it")
        self.grid = grid
        self._on: dict = {}

    def __call__(self, scores: Tensor) -> Tensor:
        grid = self._on.get(scores.device)
        if grid is None:
            grid = self._on[scores.device] = self.grid.to(scores.device)
        total = scores[torch.arange(grid.shape[1], device=scores.device), grid].sum(1)
        return grid[total.argmax()]
