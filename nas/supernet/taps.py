"""Per-layer copies of the mixing weights: every module of a supernet that receives a
:class:`~nas.estimators.base.Sample` (a cell) gets its own tensor ``A_l`` of the same value,
so that ``∂L/∂A_l`` (the architecture gradient of layer ``l`` alone) can be read, or ``A_l``
moved by a perturbation of its own. The supernet and its cells are unchanged: the copies are
made by forward pre-hooks while a :class:`LayerTaps` is installed.

Layers are grouped by the sample they share (the DARTS space's normal and reduction cells draw
from two choices, so two groups; NB201's cells share one), in the order the forward visits them.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..estimators.base import Sample
from .choice import Choice


class LayerTaps:
    """``with LayerTaps(model) as taps: loss = f(model(x))``; then ``taps.layers`` lists
    ``(group, A_l)`` per layer: with ``perturb=None`` each ``A_l`` is a leaf requiring grad
    (``A_l.grad`` after backward), else ``A_l = A + perturb[l]``."""

    def __init__(self, model: nn.Module, perturb: Optional[Sequence[Tensor]] = None,
                 receivers: Optional[List[nn.Module]] = None):
        self.model, self.perturb = model, perturb
        # the modules that took a Sample last time (found by watching every module once)
        self.receivers = receivers
        self.layers: List[tuple] = []
        self._groups: Dict[int, int] = {}
        self._made: set = set()
        self._seen: List[nn.Module] = []
        self._handles: list = []

    def __enter__(self) -> "LayerTaps":
        mods = self.receivers if self.receivers is not None else [
            m for m in self.model.modules() if not isinstance(m, Choice)]
        self._handles = [m.register_forward_pre_hook(self._pre, with_kwargs=True) for m in mods]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if self.receivers is None:
            self.receivers = self._seen

    def _tap(self, module: nn.Module, s: Sample) -> Sample:
        group = self._groups.setdefault(id(s), len(self._groups))
        i = len(self.layers)
        if self.perturb is None:
            w = s.weights.detach().clone().requires_grad_()
        else:
            w = s.weights + self.perturb[i].to(s.weights.dtype)
        self.layers.append((group, w))
        if module not in self._seen:
            self._seen.append(module)
        out = Sample(w, s.index)
        self._made.add(id(out))
        return out

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict):
        if not any(isinstance(a, Sample) and id(a) not in self._made for a in (*args, *kwargs.values())):
            return None
        args = tuple(self._tap(module, a) if isinstance(a, Sample) and id(a) not in self._made else a for a in args)
        kwargs = {k: self._tap(module, v) if isinstance(v, Sample) and id(v) not in self._made else v
                  for k, v in kwargs.items()}
        return args, kwargs


def grads_by_group(taps: LayerTaps, factor: float = 1.0) -> Dict[int, List[Tensor]]:
    """``{group: [factor · ∂L/∂A_l flattened, ...]}`` after a backward through recording taps."""
    out: Dict[int, List[Tensor]] = {}
    for g, w in taps.layers:
        grad = w.grad if w.grad is not None else torch.zeros_like(w)
        # float32 at least: half-width gradients would round the cosines
        flat = grad.detach().reshape(-1)
        out.setdefault(g, []).append(flat.to(torch.promote_types(flat.dtype, torch.float32)) * factor)
    return out
