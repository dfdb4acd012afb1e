"""Λ-DARTS (Movahedi, Adabinejad, Imani, Keshavarz, Dehghani, Shakery, Araabi, "Λ-DARTS:
Mitigating Performance Collapse by Harmonizing Operation Selection among Cells", ICLR 2023).

The cells of a supernet share α, so α's gradient is the sum of the layers' gradients
``Λ_l = ∂L_train/∂A_l`` (``A_l``: the mixing weights as layer ``l`` uses them). The paper shows
that DARTS converges where the layers disagree, the layers near the output deciding, and
harmonises them: the weight step minimises ``L_train(w) - λ_t · R(w)`` with

    R = (2 / (L(L-1))) Σ_{i<j} cos(Λ_i, Λ_j)          (mean pairwise cosine of the layers' gradients)

per group of layers sharing a choice. ``∇_w R`` needs second derivatives; as the paper, with
``p_l = ∂R/∂Λ_l = (2/(L(L-1))) · (I - u_l u_lᵀ) Σ_j u_j / ‖Λ_l‖`` (``u_l = Λ_l/‖Λ_l‖``) it is the
central finite difference

    ∇_w R ≈ (∇_w L_train(w, A + εp) - ∇_w L_train(w, A - εp)) / (2ε),    ε = ε0 / ‖p‖

(two more forward/backward passes per weight step). ``λ_t = λ · epoch / (epochs - 1)`` (the
authors' NB201 code: λ = 0.125, ε0 = 1e-4). Needs the alternating loop; a group of one layer
(a space with one cell per choice) has no pair and contributes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import Tensor

from ..bounds import ranged
from ..supernet.taps import LayerTaps, grads_by_group
from .hooks import SearchHook


def harmony(grads: List[Tensor]) -> Tensor:
    """``R``: the mean pairwise cosine of ``grads`` (0 for fewer than two)."""
    L = len(grads)
    if L < 2:
        return grads[0].new_zeros(()) if grads else torch.zeros(())
    u = [g / g.norm() for g in grads]
    total = sum((u[i] * u[j]).sum() for i in range(L) for j in range(i + 1, L))
    return total / (L * (L - 1) / 2)


def harmony_grad(grads: List[Tensor]) -> List[Tensor]:
    """``∂R/∂Λ_l`` for every layer (see the module docstring)."""
    L = len(grads)
    if L < 2:
        return [torch.zeros_like(g) for g in grads]
    norms = [g.norm() for g in grads]
    u = [g / n for g, n in zip(grads, norms)]
    s = sum(u)
    scale = 1.0 / (L * (L - 1) / 2)
    return [scale * (s - ul * (ul @ s)) / n for ul, n in zip(u, norms)]


class LambdaDARTS(SearchHook):
    """Λ-DARTS (Movahedi et al., ICLR 2023): the weight step also maximises the mean pairwise
    cosine of the layers' architecture gradients."""

    name = "lambda_darts"

    @dataclass
    class Options:
        weight: float = ranged(0.125, ge=0)   # λ, reached at the last epoch
        epsilon: float = ranged(1e-4, gt=0)   # ε0 of the finite difference

    def __init__(self, options=None):
        super().__init__(options)
        self.lam = 0.0
        self.taps: Optional[LayerTaps] = None
        self.receivers = None
        self.last_harmony = float("nan")

    def bind(self, searcher) -> None:
        super().bind(searcher)
        if searcher.mode != "alternating":
            raise self.refuse("regularises the weight step of the alternating loop; with optim.mode=joint "
                              "the layer copies would cut α's gradient: set optim.mode=alternating")

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.lam = self.options.weight * epoch / max(epochs - 1, 1)

    def before_weight_step(self, x: Tensor, y: Tensor) -> None:
        if self.lam > 0:
            self.taps = LayerTaps(self.searcher.model, receivers=self.receivers).__enter__()

    def after_weight_backward(self, x: Tensor, y: Tensor) -> None:
        taps, self.taps = self.taps, None
        if taps is None:
            return
        taps.__exit__(None, None, None)
        self.receivers = taps.receivers
        # the recorded gradients are of the step's scaled loss S·m·L (nas.engine.amp.GradStep)
        by_group = grads_by_group(taps, 1.0 / self._loss_factor(len(y)))
        p_by_group = {g: harmony_grad(gs) for g, gs in by_group.items()}
        self.last_harmony = float(sum(harmony(gs) for gs in by_group.values()) / max(len(by_group), 1))
        counters: Dict[int, int] = {}
        pert = []
        for g, w in taps.layers:
            k = counters.get(g, 0)
            counters[g] = k + 1
            pert.append(p_by_group[g][k].reshape(w.shape))
        norm = torch.cat([p.reshape(-1) for p in pert]).norm()
        if not torch.isfinite(norm) or norm == 0:
            return
        eps = self.options.epsilon / float(norm)
        plus = self._weight_grads(x, y, [eps * p for p in pert])
        minus = self._weight_grads(x, y, [-eps * p for p in pert])
        # plus/minus are gradients of the scaled loss, as w.grad is: no further scaling
        scale = self.lam / (2 * eps)
        for w, gp, gm in zip(self.searcher.weights, plus, minus):
            if gp is None or gm is None or w.grad is None:
                continue
            w.grad.sub_(scale * (gp - gm))

    def _loss_factor(self, n: int) -> float:
        step = self.searcher.weight_grad
        return step.scale * (n if step.sync is not None else 1)

    def _weight_grads(self, x: Tensor, y: Tensor, pert: List[Tensor]) -> List[Optional[Tensor]]:
        s = self.searcher
        weights = [w for w in s.weights if w.requires_grad]
        with LayerTaps(s.model, perturb=pert, receivers=self.receivers):
            loss = s.weight_loss(x, y)
        step = s.weight_grad
        gs = torch.autograd.grad(step.scaled(loss, len(y)), weights, allow_unused=True)
        grads = dict(zip(map(id, weights), step.average(weights, gs, len(y))))
        return [grads.get(id(w)) for w in s.weights]

    def scalars(self) -> Dict[str, float]:
        return {"lambda_darts_lambda": self.lam, "lambda_darts_harmony": self.last_harmony}
