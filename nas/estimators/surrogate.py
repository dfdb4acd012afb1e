"""Temperature surrogates: a smooth function of the logits stands in for the discrete choice.

* ``softmax``: categorical ``w = softmax(α/τ)`` (DARTS: Liu, Simonyan, Yang, ICLR 2019, τ = 1
  fixed); binary ``w = sigmoid(α/τ)``.
* ``sigmoid``, ``tanh``, ``softsign``: gates ``g(λα)`` with ``λ = 1/τ``, ``g`` one of
  ``sigmoid(x)``, ``tanh(x)/2 + 1/2``, ``softsign(x)/2 + 1/2`` (``softsign(x) = x/(1+|x|)``).
  On a binary choice that is the gate; on a categorical choice every candidate gets its own
  independent gate ``w_k = g(λα_k)`` (FairDARTS: Chu et al., ECCV 2020, who use the sigmoid), so
  the weights of an edge need not sum to 1.

The forward value is the relaxation itself, so every candidate runs and the gradient is exact.
The temperature follows a schedule (``tau`` → ``tau_end``); sharpening means τ decreasing, i.e.
λ = 1/τ increasing. An exponential τ schedule is an exponential λ schedule (``λ_end = 1/τ_end``);
a linear τ schedule is not linear in λ. Derive is the argmax of α per row (or ``α > 0``),
whatever τ is.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import CATEGORICAL, LogitEstimator, Sample
from .schedules import Schedule, TemperatureOptions


class Surrogate(LogitEstimator):
    """Shared by the surrogates: a τ schedule and ``sample = probs = relaxed(α)``."""

    Options = TemperatureOptions

    def __init__(self, tau: float = 1.0, tau_end: Optional[float] = None,
                 schedule: Optional[str] = None, per: str = "epoch"):
        super().__init__()
        self.schedules["tau"] = Schedule.of(tau, tau_end, schedule, per)
        self.values["tau"] = tau

    def relaxed(self, alpha: Tensor, kind: str) -> Tensor:
        raise NotImplementedError

    def sample(self, params: Dict[str, Tensor], kind: str, training: bool) -> Sample:
        return Sample(self.relaxed(params["alpha"], kind))

    def probs(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        return self.relaxed(params["alpha"].detach(), kind)


class Softmax(Surrogate):
    """Categorical ``w = softmax(α/τ)``; binary form ``w = sigmoid(α/τ)``."""

    name = "softmax"

    def relaxed(self, alpha: Tensor, kind: str) -> Tensor:
        tau = self.values["tau"]
        return F.softmax(alpha / tau, dim=-1) if kind == CATEGORICAL else torch.sigmoid(alpha / tau)


class Gate(Surrogate):
    """Independent gates ``w = g(α/τ)`` on every entry (binary gates, or FairDARTS per candidate).

    :meth:`probs` of a categorical choice normalises the gates of a row to sum to 1 (for
    entropy and the per-op curves); the mixed op itself uses the unnormalised gates.
    """

    gate: Callable[[Tensor], Tensor]
    independent_gates = True

    def relaxed(self, alpha: Tensor, kind: str) -> Tensor:
        return type(self).gate(alpha / self.values["tau"])

    def probs(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        g = self.relaxed(params["alpha"].detach(), kind)
        return g / g.sum(-1, keepdim=True) if kind == CATEGORICAL else g


class SigmoidGate(Gate):
    """``w = sigmoid(α/τ)``."""

    name = "sigmoid"
    gate = staticmethod(torch.sigmoid)


def _half_tanh(x: Tensor) -> Tensor:
    # tanh(x)/2 + 1/2 = sigmoid(2x); the sigmoid form has no cancellation near 0 for x << 0.
    return torch.sigmoid(2 * x)


def _half_softsign(x: Tensor) -> Tensor:
    # softsign(x)/2 + 1/2 is 1/(2(1-x)) for x < 0 and 1 - 1/(2(1+x)) for x >= 0; written so that
    # neither side cancels and neither branch divides by zero (torch.where differentiates both).
    is_neg = x < 0
    zero = torch.zeros_like(x)
    neg = 0.5 / (1 - torch.where(is_neg, x, zero))
    pos = 1 - 0.5 / (1 + torch.where(is_neg, zero, x))
    return torch.where(is_neg, neg, pos)


class TanhGate(Gate):
    """``w = tanh(α/τ)/2 + 1/2`` (computed as ``sigmoid(2α/τ)``, the same function)."""

    name = "tanh"
    gate = staticmethod(_half_tanh)


class SoftsignGate(Gate):
    """``w = softsign(α/τ)/2 + 1/2``, ``softsign(x) = x/(1+|x|)``: polynomial, not exponential, tails."""

    name = "softsign"
    gate = staticmethod(_half_softsign)
