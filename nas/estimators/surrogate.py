"""Temperature surrogates: ``softmax(α/τ)`` for categorical choices (DARTS: τ = 1 fixed).

Liu, Simonyan, Yang, "DARTS: Differentiable Architecture Search", ICLR 2019. The forward value is
the relaxed distribution itself, so every candidate runs and the gradient is exact.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import BINARY, CATEGORICAL, Estimator, Sample, init_logits
from .schedules import Schedule


class Softmax(Estimator):
    """Categorical ``w = softmax(α/τ)``; binary form ``w = sigmoid(α/τ)``."""

    name = "softmax"

    def __init__(self, tau: float = 1.0, tau_end: Optional[float] = None,
                 schedule: Optional[str] = None, per: str = "epoch"):
        super().__init__()
        end = tau if tau_end is None else tau_end
        self.schedules["tau"] = Schedule(tau, end, schedule or ("constant" if end == tau else "linear"), per)
        self.values["tau"] = tau

    def create(self, shape: Tuple[int, ...], kind: str, init_std: float = 1e-3,
               generator: Optional[torch.Generator] = None) -> Dict[str, Tuple[Tensor, str]]:
        return {"alpha": (init_logits(shape, init_std, generator), "logits")}

    def relaxed(self, alpha: Tensor, kind: str) -> Tensor:
        tau = self.values["tau"]
        return F.softmax(alpha / tau, dim=-1) if kind == CATEGORICAL else torch.sigmoid(alpha / tau)

    def sample(self, params: Dict[str, Tensor], kind: str, training: bool) -> Sample:
        return Sample(self.relaxed(params["alpha"], kind))

    def probs(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        return self.relaxed(params["alpha"].detach(), kind)
