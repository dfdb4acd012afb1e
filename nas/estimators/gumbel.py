"""Gumbel-softmax estimators.

* ``gumbel`` (soft): SNAS, Xie et al., ICLR 2019 — ``w = softmax((log_softmax(α) + G)/τ)``,
  ``G = -log(-log U)``; binary form: binary concrete ``sigmoid((α + log U - log(1-U))/τ)``.
* ``gumbel_hard`` (straight-through): GDAS, Dong & Yang, CVPR 2019 — the forward value is the
  one-hot ``ĥ = onehot(argmax h) - h.detach() + h`` of the soft sample ``h``, so only the sampled
  candidate has to run; the gradient flows through ``h`` to every entry of α. τ linear 10 → 0.1.
  Binary form: ``1[h > 1/2]`` of the binary concrete sample, straight through ``h``.

The soft and hard samples draw from the same distribution as ``softmax(α)`` (the Gumbel-max
trick: ``argmax(log_softmax(α) + G)`` is distributed as ``softmax(α)``; the binary concrete sample
exceeds 1/2 with probability ``sigmoid(α)``), whatever τ is. Derive: argmax of α per row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..bounds import ranged
from ..errors import NasError
from .base import CATEGORICAL, LogitEstimator, Sample, hard_value, straight_through
from .schedules import Schedule, TemperatureOptions


@dataclass
class GumbelOptions(TemperatureOptions):
    """GDAS/SNAS anneal τ from 1 towards 0.03 by default."""
    tau_end: Optional[float] = ranged(0.03, ge=0.01, le=1e4, help="end temperature (null: 0.03)")


@dataclass
class GumbelHardOptions(TemperatureOptions):
    """GDAS (Dong & Yang 2019): τ from 10 to 0.1."""
    tau: float = ranged(10.0, ge=0.01, le=1e4, help="start temperature τ")
    tau_end: Optional[float] = ranged(0.1, ge=0.01, le=1e4, help="end temperature (null: 0.1)")

_EPS = 1e-6  # keeps U away from 0 and 1 so that log(-log U) is finite
RESAMPLES = 10  # draws before a non-finite sample is an error instead of an endless loop


def gumbel_noise(like: Tensor) -> Tensor:
    u = torch.rand_like(like).clamp_(_EPS, 1 - _EPS)
    return -torch.log(-torch.log(u))


def logistic_noise(like: Tensor) -> Tensor:
    u = torch.rand_like(like).clamp_(_EPS, 1 - _EPS)
    return torch.log(u) - torch.log1p(-u)


class Gumbel(LogitEstimator):
    """Soft Gumbel-softmax sample (SNAS). At eval the mean-field ``softmax(α)`` is used."""

    name = "gumbel"
    hard = False

    Options = GumbelOptions

    def __init__(self, tau: float = 1.0, tau_end: Optional[float] = 0.03,
                 schedule: Optional[str] = None, per: str = "epoch"):
        super().__init__()
        self.schedules["tau"] = Schedule.of(tau, tau_end, schedule, per)
        self.values["tau"] = tau

    def soft_sample(self, alpha: Tensor, kind: str) -> Tensor:
        return self.perturbed_sample(alpha, kind)[0]

    def perturbed_sample(self, alpha: Tensor, kind: str) -> Tuple[Tensor, Tensor]:
        """``(h, z)``: the soft sample ``h = softmax(z/τ)`` (``sigmoid(z/τ)``) and its perturbed
        logits ``z = log_softmax(α) + G`` (``α + L``), whose argmax is the Gumbel-max draw."""
        tau = self.values["tau"]
        for _ in range(RESAMPLES):
            if kind == CATEGORICAL:
                z = F.log_softmax(alpha, dim=-1) + gumbel_noise(alpha)
                h = F.softmax(z / tau, dim=-1)
            else:
                z = alpha + logistic_noise(alpha)
                h = torch.sigmoid(z / tau)
            # GDAS resamples when a tiny τ overflows the softmax.
            if torch.isfinite(h).all():
                return h, z
        # fresh noise cannot help: the logits themselves are not finite (a diverged arch step)
        raise NasError(f"the Gumbel sample stayed non-finite after {RESAMPLES} draws (architecture logits "
                       f"finite: {bool(torch.isfinite(alpha).all())}, tau={tau:g}); lower optim.arch.lr "
                       f"or raise estimator.tau_end")

    def sample(self, params: Dict[str, Tensor], kind: str, training: bool) -> Sample:
        alpha = params["alpha"]
        if not training:
            return Sample(F.softmax(alpha, -1) if kind == CATEGORICAL else torch.sigmoid(alpha))
        return Sample(self.soft_sample(alpha, kind))

    def probs(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        a = params["alpha"].detach()
        return F.softmax(a, -1) if kind == CATEGORICAL else torch.sigmoid(a)


class GumbelHard(Gumbel):
    """Straight-through hard Gumbel-softmax (GDAS): one-hot forward, gradient through ``h``.

    At eval the argmax of α is used (one-hot, single path).
    """

    name = "gumbel_hard"
    hard = True
    decodes = True

    Options = GumbelHardOptions

    def __init__(self, tau: float = 10.0, tau_end: Optional[float] = 0.1,
                 schedule: Optional[str] = None, per: str = "epoch"):
        super().__init__(tau, tau_end, schedule, per)

    def expected_weights(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        """``softmax(α)`` (``sigmoid(α)``): the one-hot sample's exact mean (Gumbel-max), so the
        expected cost needs no sample and no straight-through."""
        alpha = params["alpha"]
        return F.softmax(alpha, -1) if kind == CATEGORICAL else torch.sigmoid(alpha)

    def sample(self, params: Dict[str, Tensor], kind: str, training: bool) -> Sample:
        alpha = params["alpha"]
        if not training:
            return Sample(*hard_value(alpha, kind))
        h, z = self.perturbed_sample(alpha, kind)
        # the argmax of z is h's, but z adds up over rows (a structured argmax decodes it) and
        # keeps its order where a tiny τ rounds h to exact ties
        hard, index = hard_value(z if kind == CATEGORICAL else h - 0.5, kind)
        return Sample(straight_through(hard, h), index)
