"""SDARTS (Chen & Hsieh, "Stabilizing Differentiable Architecture Search via Perturbation-based
Regularization", ICML 2020): the weight step is taken with the architecture's mixing weights
``Ā`` perturbed, so that the weights fit a neighbourhood of ``Ā`` rather than the point, which
the paper shows regularises the Hessian of the validation loss in α (a flatter landscape, no
collapse when the cell is discretised):

* ``mode: rs`` (random smoothing, eq. 3): ``min_w E_{δ ~ U[-ε, ε]} L_train(w, Ā + δ)``, one draw
  of δ per weight step;
* ``mode: adv`` (adversarial, eq. 4): ``min_w max_{‖δ‖_∞ ≤ ε} L_train(w, Ā + δ)``, the inner max
  by ``steps`` of projected gradient ascent from a uniform random start,
  ``δ ← clip_[-ε, ε](δ + η · sign(∇_δ L_train))`` with ``η = step_size`` (default ``2ε/steps``).

``Ā`` is the mixing weight each relaxed choice hands its mixed ops (``softmax(α)`` for DARTS),
``δ`` has its shape and is added to it during the weight step only: the architecture step sees
the unperturbed weights. ε grows linearly per epoch from ``epsilon`` to ``epsilon_end`` (the
authors' code: 0.03 → 0.3). Choices without continuous logits (Bop's discrete state) are
refused: there is no relaxed ``Ā`` to smooth. A one-hot estimator's (STE, GDAS, ReinMax)
perturbed weights are no longer one-hot, so every candidate runs in the weight step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Literal, Optional

import torch
from torch import Tensor

from ..bounds import ranged
from ..estimators.base import Sample
from ..supernet.choice import Choice
from .hooks import SearchHook


class Perturbation:
    """While installed, every choice in ``choices`` returns ``Sample(weights + δ_c)`` (dense)."""

    def __init__(self, choices: List[Choice], deltas: List[Tensor]):
        self.deltas = deltas
        self.handles = [c.register_forward_hook(self._hook(d)) for c, d in zip(choices, deltas)]

    @staticmethod
    def _hook(delta: Tensor):
        def hook(module, args, out: Sample) -> Sample:
            return Sample(out.weights + delta.to(out.weights.dtype))
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


class SDARTS(SearchHook):
    """SDARTS (Chen & Hsieh, ICML 2020): the weight step at randomly (RS) or adversarially
    (ADV) perturbed mixing weights."""

    name = "sdarts"

    @dataclass
    class Options:
        mode: Literal["rs", "adv"] = "rs"
        epsilon: float = ranged(0.03, gt=0)                 # ε at the first epoch
        epsilon_end: Optional[float] = ranged(0.3, gt=0)    # ε at the last epoch (null: = epsilon)
        steps: int = ranged(7, ge=1)                        # adv: PGD steps
        step_size: Optional[float] = ranged(None, gt=0)     # adv: η (null: 2ε/steps)

    def __init__(self, options=None):
        super().__init__(options)
        self.epsilon = self.options.epsilon
        self.active: Optional[Perturbation] = None

    def bind(self, searcher) -> None:
        super().bind(searcher)
        if searcher.mode != "alternating":
            raise self.refuse("perturbs α in the weight step of the alternating loop; with "
                              "optim.mode=joint the same backward updates α: set optim.mode=alternating")
        self.choices = [m for m in searcher.model.modules()
                        if isinstance(m, Choice) and "logits" in m.roles.values()]
        if not self.choices:
            raise self.refuse(f"{'PGD on' if self.options.mode == 'adv' else 'smoothing'} the relaxed "
                              f"architecture weights needs continuous logits; estimator "
                              f"'{searcher.estimator.name}' has a discrete state only: use a relaxation "
                              f"(softmax, dirichlet, gumbel)")

    def start_epoch(self, epoch: int, epochs: int) -> None:
        end = self.options.epsilon if self.options.epsilon_end is None else self.options.epsilon_end
        self.epsilon = self.options.epsilon + (end - self.options.epsilon) * epoch / max(epochs, 1)

    def _shapes(self) -> List[Tensor]:
        # a relaxed choice's mixing weights have its logits' shape ([E, K] or [E])
        return [next(c.parameters_by_role("logits")).detach() for c in self.choices]

    def random_deltas(self) -> List[Tensor]:
        eps = self.epsilon
        return [torch.empty_like(w, dtype=torch.float32).uniform_(-eps, eps) for w in self._shapes()]

    def adversarial_deltas(self, x: Tensor, y: Tensor) -> List[Tensor]:
        """``steps`` of projected sign-gradient ascent on ``L_train(w, Ā + δ)`` within the ε-ball."""
        s = self.searcher
        eps, steps = self.epsilon, self.options.steps
        eta = self.options.step_size or 2 * eps / steps
        deltas = self.random_deltas()
        for _ in range(steps):
            leaves = [d.clone().requires_grad_() for d in deltas]
            p = Perturbation(self.choices, leaves)
            try:
                loss = s.weight_loss(x, y)
                grads = torch.autograd.grad(loss, leaves, allow_unused=True)
            finally:
                p.remove()
            deltas = [(d + eta * torch.sign(g)).clamp_(-eps, eps) if g is not None else d
                      for d, g in zip(deltas, grads)]
        return deltas

    def before_weight_step(self, x: Tensor, y: Tensor) -> None:
        deltas = self.adversarial_deltas(x, y) if self.options.mode == "adv" else self.random_deltas()
        self.active = Perturbation(self.choices, deltas)

    def after_weight_step(self) -> None:
        if self.active is not None:
            self.active.remove()
            self.active = None

    def scalars(self) -> Dict[str, float]:
        return {"sdarts_epsilon": self.epsilon}

    def state_dict(self) -> dict:
        return {"epsilon": self.epsilon}

    def load_state_dict(self, state: dict) -> None:
        self.epsilon = state.get("epsilon", self.epsilon)
