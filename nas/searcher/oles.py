"""OLES: operation-level early stopping (Jiang, Ji, Zhu, Yuan, Huang, "Operation-Level Early
Stopping for Robustifying Differentiable NAS", NeurIPS 2023).

The paper traces the dominance of skip connections to the parametric operations overfitting
the training data while α is trained on the validation data. It watches each operation ``o``
(a candidate op of one edge of one cell, with its own weights) through the gradient matching
score of its weights over the last ``M`` steps,

    GM(o) = (1/M) Σ_{m=1..M} cos(g_train^o(m), g_val^o(m)),

``g_train^o`` the gradient of ``L_train`` in o's weights (the weight step's backward) and
``g_val^o`` that of ``L_val`` (computed with the architecture step's backward), and stops
training ``o`` (its weights freeze for the rest of the search) once ``GM(o) < ζ``. Defaults
``M = 20`` steps, ``ζ = 0.3``; the score restarts after every window of M steps.

Cost: the architecture step also computes the gradients of the unfrozen ops' weights (it
otherwise computes α's only). Needs the alternating, first-order loop. A frozen op keeps running
in the forward pass, and its weights stay as they were (``requires_grad=False``: no gradient,
no momentum, no weight decay).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from ..bounds import ranged
from ..supernet.choice import Choice
from ..supernet.mixed import MixedOp
from .hooks import SearchHook, grad_vector


def operation_units(model: nn.Module) -> List[List[nn.Parameter]]:
    """The trainable weights of every candidate op of every mixed op, one list per op (ops
    without weights, e.g. skip and pooling, are left out)."""
    arch = {id(p) for m in model.modules() if isinstance(m, Choice) for p in m.parameters()}
    units = []
    for m in model.modules():
        if isinstance(m, MixedOp):
            for op in m.ops:
                ps = [p for p in op.parameters() if p.requires_grad and id(p) not in arch]
                if ps:
                    units.append(ps)
    return units


def cosine(a: Tensor, b: Tensor) -> float:
    """``<a, b> / (‖a‖ ‖b‖)``; 0 when either is zero."""
    n = a.norm() * b.norm()
    return float((a @ b) / n) if n > 0 else 0.0


class OLES(SearchHook):
    """OLES (Jiang et al., NeurIPS 2023): an op's weights freeze once its train/val
    gradient-matching score falls below ζ."""

    name = "oles"

    @dataclass
    class Options:
        threshold: float = ranged(0.3, ge=-1, le=1)   # ζ
        window: int = ranged(20, ge=1)                # M steps per score

    def __init__(self, options=None):
        super().__init__(options)
        self.units: List[List[nn.Parameter]] = []
        self.frozen: List[bool] = []
        self.sums: List[float] = []
        self.counts: List[int] = []
        self.train_grads: List[Optional[Tensor]] = []

    def bind(self, searcher) -> None:
        super().bind(searcher)
        if searcher.mode != "alternating" or searcher.order != 1:
            raise self.refuse("compares each op's training and validation gradients of the first-order "
                              "alternating loop: set optim.mode=alternating and optim.order=1")
        self.units = operation_units(searcher.model)
        if not self.units:
            raise self.refuse("this supernet's candidate ops have no weights of their own to stop training")
        n = len(self.units)
        self.frozen, self.sums, self.counts = [False] * n, [0.0] * n, [0] * n
        self.train_grads = [None] * n

    def after_weight_backward(self, x: Tensor, y: Tensor) -> None:
        self.train_grads = [None if f else grad_vector(u) for u, f in zip(self.units, self.frozen)]

    def arch_grad_params(self) -> List[nn.Parameter]:
        return [p for u, f in zip(self.units, self.frozen) if not f for p in u]

    def after_arch_backward(self) -> None:
        M, zeta = self.options.window, self.options.threshold
        for i, u in enumerate(self.units):
            g_train = self.train_grads[i]
            if self.frozen[i] or g_train is None:
                continue
            g_val = grad_vector(u)
            if g_val is None:
                continue
            self.sums[i] += cosine(g_train, g_val)
            self.counts[i] += 1
            if self.counts[i] >= M:
                if self.sums[i] / self.counts[i] < zeta:
                    self.freeze(i)
                self.sums[i], self.counts[i] = 0.0, 0
        for p in self.arch_grad_params():
            p.grad = None  # the weight step starts from clean gradients anyway; don't keep val grads around

    def freeze(self, i: int) -> None:
        self.frozen[i] = True
        for p in self.units[i]:
            p.requires_grad_(False)
            p.grad = None

    def scalars(self) -> Dict[str, float]:
        return {"oles_frozen_ops": float(sum(self.frozen))}

    def state_dict(self) -> dict:
        return {"frozen": list(self.frozen), "sums": list(self.sums), "counts": list(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        if not state or len(state.get("frozen", [])) != len(self.units):
            return
        self.sums, self.counts = list(state["sums"]), list(state["counts"])
        for i, f in enumerate(state["frozen"]):
            if f:
                self.freeze(i)
