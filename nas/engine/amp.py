"""Mixed precision (``trainer.amp: off | bf16 | fp16``) and the gradient path of one optimisation
step, shared by the search loop and the retrain trainer.

``bf16`` and ``fp16`` run the forward pass under ``torch.autocast`` (Micikevicius et al., "Mixed
Precision Training", ICLR 2018): parameters, optimizer states and gradients stay float32. fp16
needs loss scaling: the loss is multiplied by S before backward, the gradients divided by S
before use, and a step whose gradients hold inf/NaN is skipped while S halves (``GradScaler``;
S doubles after 2000 finite steps). bf16 has float32's range and needs no scaling. With ``off``
the scaler is disabled and every call below is the plain float32 step, bit for bit.

:class:`GradStep` is that path for one kind of step: scaled backward (or ``autograd.grad``),
average over the data-parallel ranks (:meth:`nas.engine.distributed.World.average`), unscale,
clip, step, update S.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager, Iterable, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError

AMP_MODES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """The autocast context and the GradScalers of ``trainer.amp``."""

    def __init__(self, mode: str, device: torch.device):
        if mode not in AMP_MODES:
            raise ConfigError(f"trainer.amp: unknown mode '{mode}'; allowed: {', '.join(AMP_MODES)}")
        self.mode, self.device, self.dtype = mode, torch.device(device), AMP_MODES[mode]

    def autocast(self) -> ContextManager:
        return nullcontext() if self.dtype is None else torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A loss scaler: active for fp16, a pass-through otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.mode == "fp16")


GradSync = Callable[[Sequence[Tensor], Sequence[Optional[Tensor]], int], List[Optional[Tensor]]]


class GradStep:
    """backward → average over ranks → unscale → clip → step → update, for one kind of step.

    ``sync(params, grads, n)`` turns gradients of ``n·loss`` (this rank's batch of ``n``) into
    those of the global mean loss, ``Σ_r ∇(n_r·L_r) / Σ_r n_r``; None in a single process. The
    loss is weighted *before* backward because with synchronised BN a rank's loss also depends on
    the other ranks' images, so its gradient carries terms for theirs.
    """

    def __init__(self, scaler: Optional[torch.amp.GradScaler] = None, sync: Optional[GradSync] = None):
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler("cpu", enabled=False)
        self.sync = sync

    @property
    def scale(self) -> float:
        """The current loss scale S (1 when scaling is off)."""
        return float(self.scaler.get_scale()) if self.scaler.is_enabled() else 1.0

    def scaled(self, loss: Tensor, n: int) -> Tensor:
        """``S·loss``, times ``n`` (this rank's batch size) when the gradients are synchronised."""
        return self.scaler.scale(loss if self.sync is None else loss * n)

    def average(self, params: Sequence[Tensor], grads: Sequence[Optional[Tensor]], n: int) -> List[Optional[Tensor]]:
        return list(grads) if self.sync is None else self.sync(params, grads, n)

    def backward(self, loss: Tensor, params: Sequence[Tensor], n: int) -> None:
        """``(S·loss).backward()``, then ``.grad`` of ``params`` averaged over the ranks."""
        self.scaled(loss, n).backward()
        self.average_grads_(params, n)

    def grads(self, loss: Tensor, params: Sequence[Tensor], n: int) -> None:
        """``.grad`` of ``params`` only (``autograd.grad`` of ``S·loss``), averaged over the ranks."""
        if params:
            gs = torch.autograd.grad(self.scaled(loss, n), params, allow_unused=True)
            for p, g in zip(params, self.average(params, gs, n)):
                p.grad = g

    def average_grads_(self, params: Sequence[Tensor], n: int) -> None:
        if self.sync is not None:
            for p, g in zip(params, self.sync(params, [p.grad for p in params], n)):
                p.grad = g

    def step(self, optimizers: Iterable[Optional[torch.optim.Optimizer]], clip_params: Sequence[Tensor] = (),
             clip: float = 0.0) -> None:
        """Unscale, clip ``clip_params`` to norm ``clip`` (0: no clipping), step every optimizer
        (skipped when fp16 gradients overflowed), update S."""
        opts = [o for o in optimizers if o is not None]
        active = self.scaler.is_enabled()
        if active:
            # GradScaler.step insists on gradients; an optimizer without any (a step that reached
            # none of its parameters) has nothing to do anyway
            opts = [o for o in opts if any(p.grad is not None for g in o.param_groups for p in g["params"])]
            for o in opts:
                self.scaler.unscale_(o)
        if clip > 0:
            nn.utils.clip_grad_norm_(clip_params, clip)
        for o in opts:
            self.scaler.step(o) if active else o.step()
        if active and opts:
            self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)
