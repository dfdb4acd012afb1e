"""Optimizers of a search: SGD for the weights, Adam for the continuous architecture parameters
(logits and noise temperatures), and the estimator's discrete optimizer (Bop) for discrete state.

Defaults follow DARTS / NAS-Bench-201 (see ALGORITHMS.md §2).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..estimators.base import Estimator
from ..supernet.choice import arch_parameters, weight_parameters


@dataclass
class Optimizers:
    weights: torch.optim.Optimizer
    weights_sched: torch.optim.lr_scheduler.LRScheduler
    arch: Optional[torch.optim.Optimizer]
    discrete: Optional[torch.optim.Optimizer]
    arch_params: Dict[str, List[nn.Parameter]] = field(default_factory=dict)

    def state_dict(self) -> dict:
        return {"weights": self.weights.state_dict(), "weights_sched": self.weights_sched.state_dict(),
                "arch": self.arch.state_dict() if self.arch else None,
                "discrete": self.discrete.state_dict() if self.discrete else None}

    def load_state_dict(self, state: dict) -> None:
        self.weights.load_state_dict(state["weights"])
        self.weights_sched.load_state_dict(state["weights_sched"])
        for name in ("arch", "discrete"):
            opt = getattr(self, name)
            if opt is not None and state.get(name) is not None:
                opt.load_state_dict(state[name])

    def lrs(self) -> Dict[str, float]:
        out = {"weights": self.weights.param_groups[0]["lr"]}
        if self.arch is not None:
            out["arch"] = self.arch.param_groups[0]["lr"]
        return out


def build_optimizers(model: nn.Module, estimator: Estimator, *, epochs: int, lr: float = 0.025,
                     lr_min: float = 0.001, momentum: float = 0.9, nesterov: bool = True,
                     weight_decay: float = 5e-4, arch_lr: float = 3e-4,
                     arch_betas: Tuple[float, float] = (0.5, 0.999), arch_weight_decay: float = 1e-3,
                     noise_lr: Optional[float] = None) -> Optimizers:
    # one explicit group: a model whose only parameters are architectural (the dnf space) gets
    # an empty, harmless weight optimizer instead of torch's "empty parameter list" error
    weights = torch.optim.SGD([{"params": weight_parameters(model)}], lr=lr, momentum=momentum,
                              nesterov=nesterov and momentum > 0, weight_decay=weight_decay, foreach=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(weights, T_max=max(epochs, 1), eta_min=lr_min)
    groups = {role: arch_parameters(model, role) for role in ("logits", "discrete", "noise")}
    param_groups = []
    if groups["logits"]:
        param_groups.append({"params": groups["logits"], "lr": arch_lr, "weight_decay": arch_weight_decay})
    if groups["noise"]:
        # σ is a temperature, not a preference between candidates: no weight decay pulls it to 0.
        param_groups.append({"params": groups["noise"], "lr": noise_lr or arch_lr, "weight_decay": 0.0})
    arch = torch.optim.Adam(param_groups, lr=arch_lr, betas=arch_betas) if param_groups else None
    discrete = estimator.discrete_optimizer(groups["discrete"]) if groups["discrete"] else None
    return Optimizers(weights, sched, arch, discrete, groups)
