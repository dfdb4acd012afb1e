"""ReinMax: a second-order accurate straight-through gradient for one-hot samples.

Liu, Zhao, Gao, "Bridging Discrete and Backpropagation: Straight-Through and Beyond",
NeurIPS 2023 (Algorithm 2). With ``π0 = softmax(α)``, a one-hot draw ``D ~ Cat(π0)`` and the
temperature ``τ``:

    π1 = (D + softmax(α/τ)) / 2
    ∂L/∂α := (2·J(π1) - J(π0)/2) · ∂L/∂D,      J(p) = diag(p) - p pᵀ (the softmax Jacobian at p)

The forward value is ``D`` exactly; the straight-through estimator (``J(π0)·∂L/∂D``) is the
first-order (forward Euler) approximation of the same gradient, ReinMax the second-order (Heun)
one. In code: ``π1`` is re-expressed as ``softmax(α + c)`` with ``c = log π1 - α`` held constant
so that its Jacobian is ``J(π1)``, and ``w = D + (π2 - π2.detach())`` with ``π2 = 2π1 - π0/2``.

* categorical: ``D`` is drawn by the Gumbel-max trick (``onehot(argmax(log_softmax(α) + G))``,
  distributed as ``Cat(softmax(α))``), so a structured argmax (a cost budget's feasible cells) can
  decode it as for GDAS;
* binary gates and Bop-style {0, 1} parameters: the two-category case with logits ``(0, α)``,
  ``p = sigmoid(α)``, ``D ~ Bernoulli(p)``, ``π1 = (D + sigmoid(α/τ))/2`` and
  ``∂L/∂α := (2·π1(1-π1) - p(1-p)/2) · ∂L/∂D`` (the formula above restricted to the open entry);
* eval: the one-hot of ``argmax α`` (``1[α > 0]``); derive: the same.

Which candidates run: ``∂L/∂D_k = <∂L/∂out, o_k(x)>`` needs every candidate's output, so in
training every candidate runs unless ``single_path=True`` (the GDAS approximation, see
``nas/estimators/ste.py``). ``τ`` defaults to 1 (the paper's experiments use τ ∈ [0.5, 2]).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import CATEGORICAL, LogitEstimator, Sample, hard_value, straight_through
from .gumbel import gumbel_noise
from .schedules import Schedule, TemperatureOptions
from .ste import STEOptions


@dataclass
class ReinMaxOptions(STEOptions, TemperatureOptions):
    """ReinMax: τ of ``π1 = (D + softmax(α/τ))/2`` (1, constant unless scheduled)."""


def reinmax_categorical(alpha: Tensor, D: Tensor, tau: float) -> Tensor:
    """``D`` in value, ReinMax's gradient to ``alpha`` (rows over the last dimension)."""
    pi0 = F.softmax(alpha, dim=-1)
    pi1 = (D + F.softmax(alpha / tau, dim=-1)) / 2
    # the value of pi1, the Jacobian of softmax at pi1
    pi1 = F.softmax((torch.log(pi1) - alpha).detach() + alpha, dim=-1)
    pi2 = 2 * pi1 - 0.5 * pi0
    return straight_through(D, pi2)


def reinmax_binary(alpha: Tensor, D: Tensor, tau: float) -> Tensor:
    """``D ∈ {0, 1}`` in value, ReinMax's gradient to the gate logits ``alpha``."""
    p0 = torch.sigmoid(alpha)
    p1 = (D + torch.sigmoid(alpha / tau)) / 2
    # sigmoid(logit(p1)) = p1 in value, with the derivative p1(1 - p1)
    p1 = torch.sigmoid((torch.logit(p1) - alpha).detach() + alpha)
    return straight_through(D, 2 * p1 - 0.5 * p0)


class ReinMax(LogitEstimator):
    """One-hot (``{0, 1}``) samples of ``softmax(α)`` (``sigmoid(α)``), ReinMax gradient."""

    Options = ReinMaxOptions

    name = "reinmax"
    decodes = True

    def __init__(self, tau: float = 1.0, tau_end: Optional[float] = None, schedule: Optional[str] = None,
                 per: str = "epoch", single_path: bool = False):
        super().__init__()
        self.schedules["tau"] = Schedule.of(tau, tau_end, schedule, per)
        self.values["tau"] = tau
        self.single_path = single_path

    def sample(self, params: Dict[str, Tensor], kind: str, training: bool) -> Sample:
        alpha = params["alpha"]
        if not training:
            return Sample(*hard_value(alpha, kind))
        tau = self.values["tau"]
        if kind == CATEGORICAL:
            D, index = hard_value(F.log_softmax(alpha.detach(), -1) + gumbel_noise(alpha), kind)
            return Sample(reinmax_categorical(alpha, D, tau), index if self.single_path else None)
        D = (torch.rand_like(alpha) < torch.sigmoid(alpha.detach())).to(alpha.dtype)
        return Sample(reinmax_binary(alpha, D, tau))

    def expected_weights(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        """``softmax(α)`` (``sigmoid(α)``): the mean of the one-hot sample."""
        alpha = params["alpha"]
        return F.softmax(alpha, -1) if kind == CATEGORICAL else torch.sigmoid(alpha)

    def probs(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        a = params["alpha"].detach()
        return F.softmax(a, -1) if kind == CATEGORICAL else torch.sigmoid(a)

    def __repr__(self) -> str:
        return f"ReinMax(tau={self.values['tau']:.4g}, single_path={self.single_path})"
