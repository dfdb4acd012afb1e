"""Adaptive noise on a discrete forward value (``estimator.noise: adaptive``, with ``ste`` or ``bop``).

Jialin Lu, "Neural Disjunctive Normal Form", M.Sc. thesis, SFU 2020 (ALGORITHMS.md §1). During
training the discrete value ``w ∈ {0, 1}`` (a gate, or each entry of a one-hot row) is perturbed
toward the other value,

    ``w̃ = w + (1 - 2w)·σ·ε``,  ``ε ~ U(0, 1)`` per entry and per forward pass,

so 1 → 1 - σε and 0 → σε. There is one learned temperature σ per discrete entry (shape of the
choice, role ``"noise"``), initialised to σ0 = 0.2, trained by Adam on the same loss through
``∂w̃/∂σ = (1-2w)·ε`` and clipped to ``[0, σ_max]`` (σ_max = 0.5) after every step. With
``sigma_end`` the bound goes linearly (per step) from σ_max to it over the search (this project's
addition): ``sigma_end: 0`` ends the search on the binary value that derive keeps. The
gradient to ``w`` is autograd's ``1 - 2σε`` (≥ 0 for σ ≤ 1/2), then whatever the base estimator
does with it (identity to α for STE, Bop's momentum). At eval there is no noise.

Under noise the forward value is not one-hot, so every candidate runs (``Sample.index = None``):
the noisy weight of an unselected candidate, σε, multiplies its output. ``single_path`` is
therefore refused together with noise.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from dataclasses import dataclass
from typing import Literal

from ..bounds import ranged
from ..options import option
from .base import Estimator, Sample
from .schedules import Schedule


@dataclass
class NoiseOptions:
    """The adaptive-noise wrapper's keys, beside any estimator's own in its config section."""
    noise: Literal["none", "adaptive"] = option("none", help="adaptive noise on a discrete forward value")
    sigma0: float = ranged(0.2, ge=0, le="sigma_max", help="initial noise temperature σ")
    sigma_max: float = ranged(0.5, ge=0, help="largest σ (clipped after every step)")
    noise_lr: Optional[float] = ranged(None, gt=0, help="Adam lr of the noise temperatures (null: optim.arch.lr)")
    sigma_end: Optional[float] = ranged(None, ge=0, le="sigma_max", help=(
        "σ's bound at the end of the search, reached linearly per step from sigma_max (null: constant); "
        "0 makes the last steps run the binary value derive keeps"))

SIGMA = "sigma"


class AdaptiveNoise(Estimator):
    """Wraps a base estimator whose forward value is discrete (``supports_noise``)."""

    def __init__(self, base: Estimator, sigma0: float = 0.2, sigma_max: float = 0.5,
                 sigma_end: Optional[float] = None):
        super().__init__()
        if not base.supports_noise:
            raise ValueError(f"adaptive noise needs a discrete forward value; '{base.name}' has none")
        if not 0.0 <= sigma0 <= sigma_max:
            raise ValueError(f"adaptive noise needs 0 <= sigma0 <= sigma_max, got {sigma0}, {sigma_max}")
        self.base, self.sigma0, self.sigma_max = base, sigma0, sigma_max
        self.name, self.kinds = base.name, base.kinds
        self.decodes = base.decodes  # the noise perturbs the base's decision, decoded as the base decodes it
        # One set of scheduled values, the base's, seen through either object.
        self.schedules, self.values = base.schedules, base.values
        self._sigmas: List[Tensor] = []
        # the clip bound of σ, annealed to sigma_end over the search when one is given
        self._bound = Schedule.of(sigma_max, sigma_end, "linear" if sigma_end is not None else None, "step")
        self.bound = float(sigma_max)

    def create(self, shape: Tuple[int, ...], kind: str, init_std: float = 1e-3,
               generator: Optional[torch.Generator] = None) -> Dict[str, Tuple[Tensor, str]]:
        params = self.base.create(shape, kind, init_std, generator)
        params[SIGMA] = (torch.full(shape, float(self.sigma0)), "noise")
        return params

    @staticmethod
    def _base(params: Dict[str, Tensor]) -> Dict[str, Tensor]:
        return {k: v for k, v in params.items() if k != SIGMA}

    def sample(self, params: Dict[str, Tensor], kind: str, training: bool) -> Sample:
        s = self.base.sample(self._base(params), kind, training)
        if not training:
            return s
        w = s.weights
        eps = torch.rand_like(w)
        return Sample(w + (1 - 2 * w) * params[SIGMA] * eps)

    def probs(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        return self.base.probs(self._base(params), kind)

    def derive(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        return self.base.derive(self._base(params), kind)

    def expected_weights(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        # the noise has mean σ/2 toward the other value; the cost is the base's decision's
        return self.base.expected_weights(self._base(params), kind)

    def discrete_optimizer(self, params: List[Tensor]) -> Optional[torch.optim.Optimizer]:
        return self.base.discrete_optimizer(params)

    @torch.no_grad()
    def after_step(self, params_by_role: Dict[str, List[Tensor]]) -> None:
        self.base.after_step(params_by_role)
        self._sigmas = list(params_by_role.get("noise", []))
        for s in self._sigmas:
            s.clamp_(0.0, self.bound)

    def set_progress(self, epoch: int, epochs: int, step: int = 0, steps_per_epoch: int = 1) -> None:
        self.base.set_progress(epoch, epochs, step, steps_per_epoch)
        self.bound = self._bound.value(self._bound.progress(epoch, epochs, step, steps_per_epoch))

    def scalars(self) -> Dict[str, float]:
        """The base's values plus the mean σ over all entries (once a step has run)."""
        out = self.base.scalars()
        if self._bound.kind != "constant":
            out["sigma_bound"] = self.bound
        if self._sigmas:
            with torch.no_grad():
                out["sigma_mean"] = float(torch.cat([s.reshape(-1) for s in self._sigmas]).float().mean())
        return out

    def state_dict(self) -> dict:
        annealed = self._bound.kind != "constant"   # a constant bound is the config's, nothing to keep
        return {**self.base.state_dict(), **({"sigma_bound": self.bound} if annealed else {})}

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state)
        self.bound = state.get("sigma_bound", self.bound)

    def __repr__(self) -> str:
        return f"AdaptiveNoise({self.base!r}, sigma0={self.sigma0}, sigma_max={self.sigma_max})"
