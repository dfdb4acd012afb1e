"""Bop: the discrete state itself, updated by a momentum-threshold optimizer, no latent weights.

Helwegen, Widdicombe, Geiger, Liu, Cheng, Nusselder, "Latent Weights Do Not Exist: Rethinking
Binarized Neural Network Optimization", NeurIPS 2019, and larq's ``Bop``. With ``g = ∂L/∂w`` the
gradient with respect to the discrete value:

* binary ``w ∈ {0, 1}``: ``m ← (1-γ)m + γg``; flip ``w ← 1-w`` iff ``(2w-1)·m > τ`` (strict).
  With ``s = 2w-1 ∈ {-1, +1}`` this is larq's rule "flip iff ``|m| > τ`` and ``sign(m) = sign(s)``".
  The momentum is not reset on a flip (as in larq).
* categorical ``w`` one-hot over K (this project's generalisation; the papers define only the
  binary form, see ALGORITHMS.md): keep m per candidate; with ``i`` the selected candidate and
  ``j = argmin_k m_k``, switch to ``j`` iff ``m_i - m_j > τ`` (strict), and reset ``m_i`` and
  ``m_j`` to 0.

Defaults γ = 1e-4, τ = 1e-8 (larq); the Neural DNF thesis uses γ = 1e-5, τ = 1e-6. Both follow
schedules (``gamma → gamma_end``, ``threshold → threshold_end``) stepped by ``set_progress``,
which writes the current values into the optimizer's param groups.

The state is an ``nn.Parameter`` holding {0, 1} (role ``"discrete"``) so that autograd delivers
``∂L/∂w`` and ``state_dict``/DDP work; only :class:`Bop` ever changes it. Its initial value is
drawn from the seeded generator: one-hot at ``argmax`` of a standard normal row (a uniformly
random candidate) or ``1[N(0,1) > 0]`` (a fair coin per gate); ``init_std`` is not used.

Which candidates run: as for the STE, the exact ``∂L/∂w_k`` of an unselected candidate needs
``o_k(x)``, so in training every candidate runs by default; ``single_path=True`` runs only the
selected one and gives the others the zero-valued GDAS terms (an approximation, see
``nas/estimators/ste.py``). At eval only the selected candidate runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Literal, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..bounds import ranged
from ..options import option
from .base import BINARY, CATEGORICAL, Estimator, Sample, check_shape
from .schedules import SCHEDULE_KINDS, Schedule


@dataclass
class BopOptions:
    """Bop's momentum rate γ and flip threshold τ (Helwegen et al. 2019), each on a schedule."""
    gamma: float = ranged(1e-4, gt=0, le=1, help="momentum rate γ")
    gamma_end: Optional[float] = ranged(None, gt=0, le=1, help="γ at the end of the schedule (null: constant)")
    threshold: float = ranged(1e-8, ge=0, help="flip threshold τ")
    threshold_end: Optional[float] = ranged(None, ge=0, help="τ at the end of the schedule (null: constant)")
    schedule: Optional[SCHEDULE_KINDS] = option(None, help="how γ and τ move to their end values (null: linear)")
    per: Literal["epoch", "step"] = option("epoch", help="the schedule counts epochs or steps")
    single_path: bool = option(False, help="run only the selected op (the forward is one-hot)")


class Bop(torch.optim.Optimizer):
    """Bop over {0,1} tensors; a param group's ``kind`` says how to read them: ``"binary"``
    (every entry a gate) or ``"categorical"`` (one-hot rows over the last dimension)."""

    def __init__(self, params, gamma: float = 1e-4, threshold: float = 1e-8, kind: str = BINARY):
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"Bop: gamma must be in (0, 1], got {gamma}")
        if threshold < 0:
            raise ValueError(f"Bop: threshold must be >= 0, got {threshold}")
        if kind not in (BINARY, CATEGORICAL):
            raise ValueError(f"Bop: kind must be '{BINARY}' or '{CATEGORICAL}', got '{kind}'")
        super().__init__(params, dict(gamma=gamma, threshold=threshold, kind=kind))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Tensor]] = None) -> Optional[Tensor]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            gamma, tau = group["gamma"], group["threshold"]
            for w in group["params"]:
                if w.grad is None:
                    continue
                state = self.state[w]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(w, memory_format=torch.preserve_format)
                m = state["momentum"]
                m.mul_(1 - gamma).add_(w.grad, alpha=gamma)
                if group["kind"] == BINARY:
                    flip = (2 * w - 1) * m > tau
                    w.copy_(torch.where(flip, 1 - w, w))
                else:
                    _switch(w.view(-1, w.shape[-1]), m.view(-1, m.shape[-1]), tau)
        return loss


def _switch(w: Tensor, m: Tensor, tau: float) -> None:
    """Categorical Bop in place on rows ``w, m: [R, K]``."""
    i = w.argmax(-1)                                          # [R] selected
    j = m.argmin(-1)                                          # [R] most wanted
    gap = m.gather(1, i[:, None]).squeeze(1) - m.gather(1, j[:, None]).squeeze(1)
    rows = (gap > tau).nonzero().squeeze(1)
    if rows.numel():
        w[rows] = 0
        w[rows, j[rows]] = 1
        m[rows, i[rows]] = 0
        m[rows, j[rows]] = 0


class BopEstimator(Estimator):
    """The discrete state as forward value, :class:`Bop` as its optimizer."""

    name = "bop"
    supports_noise = True
    Options = BopOptions

    def __init__(self, gamma: float = 1e-4, gamma_end: Optional[float] = None,
                 threshold: float = 1e-8, threshold_end: Optional[float] = None,
                 schedule: Optional[str] = None, per: str = "epoch", single_path: bool = False):
        super().__init__()
        for key, v in (("gamma", gamma), ("gamma_end", gamma_end)):
            if v is not None and not 0.0 < v <= 1.0:
                raise ValueError(f"{key} must be in (0, 1], got {v}")
        for key, v in (("threshold", threshold), ("threshold_end", threshold_end)):
            if v is not None and v < 0:
                raise ValueError(f"{key} must be >= 0, got {v}")
        self.schedules["gamma"] = Schedule.of(gamma, gamma_end, schedule, per)
        self.schedules["threshold"] = Schedule.of(threshold, threshold_end, schedule, per)
        self.values.update(gamma=gamma, threshold=threshold)
        self.single_path = single_path
        self._optimizers: List[Bop] = []

    def create(self, shape: Tuple[int, ...], kind: str, init_std: float = 1e-3,
               generator: Optional[torch.Generator] = None) -> Dict[str, Tuple[Tensor, str]]:
        check_shape(shape, kind)
        z = torch.randn(shape, generator=generator)
        state = F.one_hot(z.argmax(-1), shape[-1]).float() if kind == CATEGORICAL else (z > 0).float()
        return {"state": (state, "discrete")}

    def sample(self, params: Dict[str, Tensor], kind: str, training: bool) -> Sample:
        w = params["state"]
        if kind != CATEGORICAL:
            return Sample(w)
        index = w.detach().argmax(-1).tolist() if self.single_path or not training else None
        return Sample(w, index)

    def probs(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        return params["state"].detach().clone()

    def derive(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        w = params["state"].detach()
        return w.argmax(-1) if kind == CATEGORICAL else w > 0.5

    def discrete_optimizer(self, params: List[Tensor]) -> Optional[torch.optim.Optimizer]:
        """One :class:`Bop` over every choice's state; the kind of a state is read from its
        shape (categorical ``[E, K]``, binary ``[E]``, enforced by :meth:`create`)."""
        groups = [{"params": [p for p in params if p.dim() == d], "kind": k}
                  for d, k in ((2, CATEGORICAL), (1, BINARY))]
        groups = [g for g in groups if g["params"]]
        if not groups:
            return None
        opt = Bop(groups, gamma=self.values["gamma"], threshold=self.values["threshold"])
        self._optimizers.append(opt)
        return opt

    def set_progress(self, epoch: int, epochs: int, step: int = 0, steps_per_epoch: int = 1) -> None:
        super().set_progress(epoch, epochs, step, steps_per_epoch)
        self._push()

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._push()

    def _push(self) -> None:
        for opt in self._optimizers:
            for g in opt.param_groups:
                g["gamma"], g["threshold"] = self.values["gamma"], self.values["threshold"]

    def __repr__(self) -> str:
        return (f"Bop(gamma={self.values['gamma']:.3g}, threshold={self.values['threshold']:.3g}, "
                f"single_path={self.single_path})")
