"""Ground truth of a budget: what the NB201 table holds within it, on any cost (MACs, parameters,
a device's measured latency).

For a budget B on cost c (``costs``: cell string → cost of its benchmark network):

* **cells within**: the cells with ``c ≤ B``, and their share of the 15,625;
* **front**: the most accurate of them (CIFAR-10 by default), with its CIFAR-100 and
  ImageNet16-120 accuracies beside;
* **top-1% threshold**: the accuracy of the ⌊n/100⌋-th best of the n cells within (at least the
  best): a searched cell at or above it ranks among the top 1% of what the budget admits, the
  measure of a budgeted search that does not ask it to order cells closer than the benchmark's
  own training noise;
* **same share on MACs**: the MACs budget that admits as many cells, and the front under it with
  its latency on the device (does a MACs proxy even keep within the device's budget?).

``--budget P%`` names a budget by its percentile: the cost of the ⌈P·n/100⌉-th cheapest cell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import NasError
from .nb201_table import DATASETS, NB201Table

Keep = Optional[Callable[[str], bool]]


def percentile_budget(costs: Dict[str, float], pct: float) -> float:
    """The cost of the ⌈pct·n/100⌉-th cheapest cell (``pct`` in (0, 100])."""
    if not 0 < pct <= 100:
        raise NasError(f"a budget percentile must be in (0, 100], got {pct:g}%")
    values = sorted(costs.values())
    return values[max(1, math.ceil(pct / 100 * len(values))) - 1]


def parse_budget(text: str, costs: Dict[str, float]) -> float:
    """``"4.63"`` or ``"25%"`` (a percentile of ``costs``)."""
    text = str(text).strip()
    try:
        return percentile_budget(costs, float(text[:-1])) if text.endswith("%") else float(text)
    except ValueError:
        raise NasError(f"--budget: expected a number or a percentile like 25%, got '{text}'") from None


@dataclass
class BudgetTruth:
    """What the table holds within one budget (module docstring)."""

    budget: float
    within: int        # cells within
    total: int         # cells considered (all, or those ``keep`` admits)
    front: Optional[Tuple[str, Tuple[float, ...], float]]  # (arch, accuracies in DATASETS order, cost)
    threshold: Optional[float]  # top-1% threshold on the dataset
    top: List[Tuple[str, Tuple[float, ...], float]]

    @property
    def share(self) -> float:
        return self.within / self.total


def budget_truth(table: NB201Table, costs: Dict[str, float], budget: float, dataset: str = "cifar10",
                 keep: Keep = None, top: int = 0) -> BudgetTruth:
    """:class:`BudgetTruth` of ``budget`` on ``costs`` (cells ``keep`` admits: a derive rule)."""
    i = DATASETS.index(table._check(dataset))
    cells = [a for a in table.rows if keep is None or keep(a)]
    fits = sorted((a for a in cells if costs[a] <= budget * (1 + 1e-12)),
                  key=lambda a: (-table.rows[a][i], costs[a], a))
    rows = [(a, table.rows[a], costs[a]) for a in fits[:max(top, 1)]]
    threshold = table.rows[fits[max(1, len(fits) // 100) - 1]][i] if fits else None
    return BudgetTruth(budget, len(fits), len(table.rows), rows[0] if rows else None, threshold, rows[:top])


def same_share_budget(costs: Dict[str, float], within: int) -> float:
    """The largest budget on ``costs`` that admits at most ``within`` cells (cells tied in cost, as
    MACs often are, enter together; at least the cheapest cell's cost)."""
    values = sorted(costs.values())
    b = values[max(within, 1) - 1]
    if within < len(values) and values[within] <= b * (1 + 1e-12):  # the tie group crosses the count
        below = [v for v in values[:within] if v < b * (1 - 1e-12)]
        b = below[-1] if below else values[0]
    return b


def count_at_least(table: NB201Table, costs: Dict[str, float], budget: float, threshold: float,
                   keep: Keep = None, dataset: str = "cifar10") -> int:
    """How many cells within ``budget`` (admitted by ``keep``) reach ``threshold``."""
    i = DATASETS.index(table._check(dataset))
    return sum(1 for a, accs in table.rows.items()
               if costs[a] <= budget * (1 + 1e-12) and accs[i] >= threshold and (keep is None or keep(a)))


def derive_rule(exclude: Sequence[str] = (), max_skip: Optional[int] = None, live: bool = False) -> Callable[[str], bool]:
    """``keep(arch)``: the cell has no op of ``exclude``, at most ``max_skip`` skip connections and,
    with ``live``, no op off every input-output path (``derive.budget_none``'s cells)."""
    import torch

    from nas.spaces.nb201.genotype import all_live, parse_ops
    banned = set(exclude)

    def keep(arch: str) -> bool:
        ops = parse_ops(arch)
        return (not banned.intersection(ops) and (max_skip is None or ops.count("skip_connect") <= max_skip)
                and (not live or bool(all_live(torch.tensor([op != "none" for op in ops])))))
    return keep


# the derive rules a budgeted search can use: (label, excluded ops, skip limit, no wasted op)
RULES: Tuple[Tuple[str, Tuple[str, ...], Optional[int], bool], ...] = (
    ("any cell", (), None, False),
    ("no wasted op, <=2 skip", (), 2, True),
    ("no none", ("none",), None, False),
    ("no none, <=2 skip", ("none",), 2, False),
    ("no none, <=1 skip", ("none",), 1, False),
)
