"""Perturbation-based architecture selection (DARTS-PT: Wang, Cheng, Chen, Tang, Hsieh,
"Rethinking Architecture Selection in Differentiable NAS", ICLR 2021, Algorithm 1).

The magnitude of α need not say how much an op contributes to the supernet: in a short search the
logits stay close to uniform (softmax weights 0.19–0.21 on every NB201 edge after 3 epochs of the
CPU proxy), so their argmax is decided by noise. DARTS-PT instead measures each op's contribution
directly on the trained supernet: for one undecided edge at a time, remove each candidate op
(its mixing weight set to 0) and measure the supernet's validation accuracy; keep the op whose
removal hurts most, project the edge onto it (one-hot weight), optionally tune the supernet's
weights for a few steps, and go on with the next edge (edges in a random order, as in the paper).

Deviations, all from running in seconds on a CPU instead of hours on a GPU:

* ``tune_steps`` weight steps between edges (the paper tunes for epochs; default 0: none);
* the mixed weights of undecided edges are the choice's distribution (``probs``: ``softmax(α)`` for
  DARTS, the mean for Dirichlet, ``softmax(α)`` for the Gumbel estimators) rather than whatever the
  estimator samples, so that the measurement is deterministic;
* BatchNorm uses the statistics of each evaluation batch (train mode, on a copy of the supernet):
  removing an op shifts the activations, and the running statistics of the search would describe
  the unperturbed supernet.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..estimators.base import CATEGORICAL, Sample
from .choice import Choice

Batch = Tuple[Tensor, Tensor]


class _Projection:
    """A forward hook that replaces a choice's sample by ``base * mask`` (dense, no index)."""

    def __init__(self, choice: Choice):
        self.base = choice.probs().detach().clone()
        self.mask = torch.ones_like(self.base)
        self.handle = choice.register_forward_hook(self.hook)

    def hook(self, module: nn.Module, args: tuple, out: Sample) -> Sample:
        return Sample(self.base.to(out.weights.dtype) * self.mask)

    def project(self, row: int, k: int) -> None:
        """Decide ``row``: weight 1 on candidate ``k``, 0 elsewhere (the paper's projection)."""
        self.base[row] = 0.0
        self.base[row, k] = 1.0


@torch.no_grad()
def accuracy(model: nn.Module, batches: Sequence[Batch]) -> float:
    correct = total = 0
    for x, y in batches:
        correct += (model(x).argmax(1) == y).sum().item()
        total += y.numel()
    return 100.0 * correct / max(total, 1)


def select_by_perturbation(model: nn.Module, choice_name: str, batches: Sequence[Batch], *,
                           seed: int = 0, tune: Optional[Callable[[nn.Module], None]] = None,
                           log: Optional[Callable[[str], None]] = None) -> List[int]:
    """The candidate kept per row of the categorical choice ``model.get_submodule(choice_name)``.

    ``batches``: validation batches (the same ones for every measurement, so that differences
    between removals are paired). ``tune(model)``, when given, runs after each decision.
    Candidates the choice's mask pruned (``Choice.set_mask``, e.g. DrNAS's progressive pruning)
    are never measured nor kept. The model is not changed: the work happens on a copy.
    """
    work = copy.deepcopy(model)
    work.train()  # batch statistics, see the module docstring
    choice = work.get_submodule(choice_name)
    if not isinstance(choice, Choice) or choice.kind != CATEGORICAL:
        raise ValueError(f"{choice_name} is not a categorical choice")
    proj = _Projection(choice)
    rows, K = proj.base.shape
    kept = choice.mask if choice.mask is not None else torch.ones(rows, K, dtype=torch.bool)
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(seed)).tolist()
    chosen = [-1] * rows
    try:
        for row in order:
            drops = {}  # candidate -> accuracy lost when it is removed
            base_acc = accuracy(work, batches)
            for k in range(K):
                if kept[row, k]:
                    proj.mask[row, k] = 0.0
                    drops[k] = base_acc - accuracy(work, batches)
                    proj.mask[row, k] = 1.0
            k_best = max(drops, key=drops.get)
            chosen[row] = k_best
            proj.project(row, k_best)
            if log is not None:
                label = choice.labels[row] if row < len(choice.labels) else str(row)
                log(f"edge {label}: supernet acc {base_acc:.2f}; drop when removed: " + ", ".join(
                    f"{choice.candidates[k]} {d:+.2f}" for k, d in drops.items())
                    + f" -> {choice.candidates[k_best]}")
            if tune is not None:
                tune(work)
    finally:
        proj.handle.remove()
    return chosen


def sgd_tuner(batches: Iterable[Batch], steps: int, lr: float, weights: Callable[[nn.Module], List[nn.Parameter]]
              ) -> Callable[[nn.Module], None]:
    """``tune(model)``: ``steps`` plain SGD steps on the weights (α untouched) over ``batches``."""
    def tune(model: nn.Module) -> None:
        params = weights(model)
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
        it = iter(batches)
        for _ in range(steps):
            try:
                x, y = next(it)
            except StopIteration:
                it = iter(batches)
                x, y = next(it)
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return tune
