"""Dirichlet relaxation (DrNAS: Chen, Wang, Cheng, Tang, Hsieh, "DrNAS: Dirichlet Neural
Architecture Search", ICLR 2021).

The mixing weights are a *sample* of a Dirichlet distribution whose concentration is learned:
``β = ELU(α) + 1`` (positive, ``β = 1`` at α = 0: the uniform prior), ``w ~ Dir(β)``, drawn with the
pathwise (implicit reparameterisation) gradient of ``torch.distributions.Dirichlet.rsample``, one
sample per forward pass shared by every choice that shares α (as GDAS shares its Gumbel sample).
Sampling the simplex explores the architecture space and acts as a regulariser of the sharpness of
the validation loss in α, which DrNAS credits for avoiding the collapse of DARTS. DrNAS's "l2"
regulariser is plain weight decay on α (``optim.arch.weight_decay``, 1e-3 in both).

* eval: the mean ``β / Σβ`` (DrNAS samples at eval too; a deterministic eval is this project's
  choice, so that validation accuracy and the supernet's eval forward are reproducible);
* derive: argmax of α per row (= argmax of β and of the mean: ELU + 1 is increasing);
* binary form (this project's generalisation; DrNAS only defines the categorical one):
  ``w ~ Beta(ELU(α) + 1, ELU(-α) + 1)``, a two-category Dirichlet whose mean exceeds 1/2 iff α > 0.

DrNAS's "kl" regulariser is the ``drnas_kl`` entry of ``optim.regularisers``
(:mod:`nas.searcher.regularisers`), which reads :meth:`Dirichlet.distribution`; its progressive
schedule (partial channels with K decreasing, op pruning between stages) is the
``drnas_progressive`` step hook (:mod:`nas.searcher.progressive`).
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import CATEGORICAL, LogitEstimator, Sample


def concentration(alpha: Tensor) -> Tensor:
    """``β = ELU(α) + 1`` (DrNAS eq. 3's positive transform)."""
    return F.elu(alpha) + 1.0


class Dirichlet(LogitEstimator):
    """``w ~ Dir(ELU(α) + 1)`` while training, the Dirichlet mean at eval; every candidate runs."""

    name = "dirichlet"

    def sample(self, params: Dict[str, Tensor], kind: str, training: bool) -> Sample:
        alpha = params["alpha"]
        if not training:
            return Sample(self.mean(alpha, kind))
        # validate_args=False: β > 0 by construction, and the check costs a device sync per forward
        # (with it on, an H100 search step took 266 ms against softmax's 166 ms; not re-measured)
        if kind == CATEGORICAL:
            return Sample(torch.distributions.Dirichlet(concentration(alpha), validate_args=False).rsample())
        return Sample(torch.distributions.Beta(concentration(alpha), concentration(-alpha),
                                               validate_args=False).rsample())

    @staticmethod
    def mean(alpha: Tensor, kind: str) -> Tensor:
        if kind == CATEGORICAL:
            beta = concentration(alpha)
            return beta / beta.sum(-1, keepdim=True)
        b1, b0 = concentration(alpha), concentration(-alpha)
        return b1 / (b1 + b0)

    def probs(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        return self.mean(params["alpha"].detach(), kind)

    def distribution(self, params: Dict[str, Tensor], kind: str) -> torch.distributions.Distribution:
        """The learned distribution of the mixing weights, differentiable in α: ``Dir(β)`` per
        row, ``Beta(β(α), β(-α))`` per gate."""
        alpha = params["alpha"]
        if kind == CATEGORICAL:
            return torch.distributions.Dirichlet(concentration(alpha), validate_args=False)
        return torch.distributions.Beta(concentration(alpha), concentration(-alpha), validate_args=False)
