"""Architecture-loss regularisers (``optim.regularisers``, :data:`~nas.searcher.registries.REGULARISERS`).

* ``fair_zero_one`` — FairDARTS (Chu, Zhou, Zhang, Li, "Fair DARTS: Eliminating Unfair
  Advantages in Differentiable Architecture Search", ECCV 2020, eq. 4): with independent sigmoid
  gates ``σ(α_i)`` on every candidate (``estimator.name=sigmoid``), the zero-one loss
  ``L_01 = -(1/N) Σ_i (σ(α_i) - 1/2)²`` over all N gates, added as ``w_01 · L_01`` with
  ``w_01 = 10``. It pushes each gate to 0 or 1, so that the derived cell (thresholded gates)
  is the one the supernet was trained as. Gates are the choices' expected forward values: every
  binary choice with logits, and the categorical ones of an estimator with independent gates.
* ``drnas_kl`` — DrNAS (Chen et al., ICLR 2021, §2.2): ``λ · Σ_rows KL(Dir(β) ‖ Dir(β̂))`` with
  the learned concentration ``β = ELU(α) + 1`` and the prior ``β̂ = prior · 1`` (DrNAS's code:
  ``prior = 1``, ``λ = 1e-3``); binary gates use their Beta form. Needs an estimator that
  defines a ``distribution`` (``dirichlet``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ..bounds import ranged
from ..estimators.base import BINARY, CATEGORICAL
from ..supernet.choice import Choice
from .hooks import Regulariser


def _choices_with_logits(model: torch.nn.Module) -> List[Choice]:
    return [m for m in model.modules() if isinstance(m, Choice) and "logits" in m.roles.values()]


def zero_one_loss(gates: List[Tensor]) -> Optional[Tensor]:
    """``-(1/N) Σ_i (g_i - 1/2)²`` over every entry of ``gates`` (FairDARTS eq. 4)."""
    if not gates:
        return None
    g = torch.cat([t.reshape(-1) for t in gates])
    return -((g - 0.5) ** 2).mean()


class FairZeroOne(Regulariser):
    """FairDARTS (Chu et al., ECCV 2020): the zero-one loss ``-(w_01/N)·Σ_i (σ(α_i) - 1/2)²`` on the gates."""

    name = "fair_zero_one"

    @dataclass
    class Options:
        weight: float = ranged(10.0, ge=0)   # w_01 (FairDARTS: 10)

    def bind(self, searcher) -> None:
        super().bind(searcher)
        self.gated = [c for c in _choices_with_logits(searcher.model)
                      if c.kind == BINARY or c.estimator.independent_gates]
        if not self.gated:
            raise self.refuse(f"the zero-one loss pushes independent gates to 0 or 1; estimator "
                              f"'{searcher.estimator.name}' mixes its candidates by a distribution, not "
                              f"gates: use estimator.name=sigmoid (FairDARTS)")

    def penalty(self) -> Optional[Tensor]:
        return zero_one_loss([c.expected_weights() for c in self.gated])


class DrNASKL(Regulariser):
    """DrNAS (Chen et al., ICLR 2021): ``λ·Σ KL(Dir(β) ‖ Dir(prior·1))`` of the learned Dirichlets."""

    name = "drnas_kl"

    @dataclass
    class Options:
        weight: float = ranged(1e-3, ge=0)   # λ (DrNAS code: reg_scale 1e-3)
        prior: float = ranged(1.0, gt=0)     # concentration β̂ of the prior on every entry

    def bind(self, searcher) -> None:
        super().bind(searcher)
        self.targets: List[Tuple[Choice, str]] = [
            (c, c.kind) for c in _choices_with_logits(searcher.model)
            if c.estimator.distribution(c.params(), c.kind) is not None]
        if not self.targets:
            raise self.refuse(f"the KL regulariser needs the distribution of the mixing weights; "
                              f"estimator '{searcher.estimator.name}' defines none: use estimator.name=dirichlet")

    def penalty(self) -> Optional[Tensor]:
        total = None
        for c, kind in self.targets:
            d = c.estimator.distribution(c.params(), kind)
            kl = torch.distributions.kl_divergence(d, prior_like(d, kind, self.options.prior)).sum()
            total = kl if total is None else total + kl
        return total


def prior_like(d: torch.distributions.Distribution, kind: str, prior: float) -> torch.distributions.Distribution:
    """The symmetric prior of ``d``'s shape: ``Dir(prior·1)`` per row, ``Beta(prior, prior)`` per gate."""
    if kind == CATEGORICAL:
        return torch.distributions.Dirichlet(torch.full_like(d.concentration, prior), validate_args=False)
    c = torch.full_like(d.concentration1, prior)
    return torch.distributions.Beta(c, c, validate_args=False)
