"""Straight-through estimator over latent real logits.

Bengio, Léonard, Courville, "Estimating or Propagating Gradients Through Stochastic Neurons for
Conditional Computation", 2013. The forward value is the hard decision of a latent ``α``
(categorical ``onehot(argmax α)``, binary ``1[α > 0]``); the backward pass copies the gradient
with respect to that value onto α unchanged (identity): ``∂L/∂α := ∂L/∂w``. α has role
``"logits"`` and is optimised by the architecture Adam.

Which candidates run. The straight-through gradient of candidate ``k`` is
``∂L/∂w_k = <∂L/∂out, o_k(x)>``, which needs ``o_k(x)`` even when ``w_k = 0``; so in training
every candidate runs by default (``Sample.index = None``). With ``single_path=True`` only the
selected candidate runs and the others enter as zero-valued terms ``Σ_{k≠k*} w_k`` (as GDAS
does): the selected entry keeps its exact gradient, every other entry receives ``∂L/∂out``
summed over the output instead of ``<∂L/∂out, o_k(x)>``. That is an approximation (it is exact
only for the ``none`` candidate), traded for the cost of one candidate per edge. At eval the
forward is one-hot and only the selected candidate runs.
"""
from __future__ import annotations

from typing import Dict

import torch.nn.functional as F
from torch import Tensor

from dataclasses import dataclass

from ..options import option
from .base import CATEGORICAL, LogitEstimator, Sample, hard_value, straight_through


@dataclass
class STEOptions:
    single_path: bool = option(False, help="run only the selected op (the forward is one-hot)")


class STE(LogitEstimator):
    """``w = onehot(argmax α)`` / ``1[α > 0]`` forward, identity to α backward."""

    name = "ste"
    supports_noise = True
    decodes = True
    Options = STEOptions

    def __init__(self, single_path: bool = False):
        super().__init__()
        self.single_path = single_path

    def sample(self, params: Dict[str, Tensor], kind: str, training: bool) -> Sample:
        alpha = params["alpha"]
        hard, index = hard_value(alpha, kind)
        if not training:
            return Sample(hard, index)
        return Sample(straight_through(hard, alpha), index if self.single_path else None)

    def expected_weights(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        """The hard decision, straight through to α (its distribution is that point mass)."""
        alpha = params["alpha"]
        return straight_through(hard_value(alpha, kind)[0], alpha)

    def probs(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        """``softmax(α)`` / ``sigmoid(α)`` of the latent logits: for logging only; the forward
        value is the hard decision, and derive is its argmax."""
        a = params["alpha"].detach()
        return F.softmax(a, -1) if kind == CATEGORICAL else a.sigmoid()

    def __repr__(self) -> str:
        return f"STE(single_path={self.single_path})"
