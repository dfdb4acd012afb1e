"""Second-order DARTS: the architecture gradient through one virtual weight step.

Liu, Simonyan, Yang, "DARTS", ICLR 2019, eq. 6-8, as ``Architect._backward_step_unrolled``::

    w'  = w - ξ (μ·m + ∇_w L_train(w, α) + λ·w)          (the SGD step the optimizer would take:
                                                           ξ its current lr, m its momentum buffer,
                                                           μ its momentum, λ its weight decay)
    ∇_α ≈ ∇_α L_val(w', α) - ξ [∇_α L_train(w⁺, α) - ∇_α L_train(w⁻, α)] / (2ε)
    w±  = w ± ε ∇_{w'} L_val(w', α),   ε = 0.01 / ‖∇_{w'} L_val(w', α)‖

The second term is a central finite difference of the Hessian-vector product
``∇²_{α,w} L_train · ∇_{w'} L_val``. Two deviations from the DARTS code, both to follow the paper
(ALGORITHMS.md §2): the finite difference is taken around ``w`` (the code perturbs ``w'``), and the
vector is ``∇_{w'} L_val`` itself (the code adds ``λ·w'``). As in the code, nesterov and dampening
are ignored in the virtual step.

No model is rebuilt: the weights are overwritten in place under ``no_grad`` and restored exactly
afterwards, with the buffers (BN running statistics), so the model leaves this function as it
came in, with the architecture gradient in ``.grad`` of every architecture parameter. The two
``w±`` passes see the same random draws (stochastic estimators: one sample for both sides of the
difference).

Data parallel (:mod:`nas.engine.distributed`): the three gradients are averaged over the ranks
where they are formed — ``∇_w L_train`` before the virtual step, ``(∇_α, ∇_{w'}) L_val`` before ε
and ``w±``, the finite difference before it is subtracted — so every rank takes the virtual step
of the global batch. Mixed precision (fp16): each gradient is of the scaled loss ``S·L``; the two
that feed a weight update (``∇_w L_train``, ``∇_{w'} L_val``) are divided by S, and ``.grad`` is
left scaled for the GradScaler, which skips the step if anything overflowed.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..engine.amp import GradStep

Batch = Tuple[Tensor, Tensor]
# loss(x, y, with_penalty) -> (loss, logits): the search loop's training objective
LossFn = Callable[[Tensor, Tensor, bool], Tuple[Tensor, Tensor]]
FD_RADIUS = 0.01  # ε·‖∇_{w'} L_val‖ (DARTS ``r``)


def _grads(loss: Tensor, params: Sequence[Tensor], **kw) -> List[Tensor]:
    gs = torch.autograd.grad(loss, params, allow_unused=True, **kw)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]


def _rng_devices(tensors: Sequence[Tensor]) -> List[torch.device]:
    return sorted({t.device for t in tensors if t.device.type == "cuda"}, key=str)


@torch.no_grad()
def _set(params: Sequence[Tensor], values: Sequence[Tensor], direction: Optional[Sequence[Tensor]] = None,
         scale: float = 0.0) -> None:
    for p, v, d in zip(params, values, direction or [None] * len(params)):
        p.copy_(v if d is None else v + scale * d)


def virtual_step(optimizer: torch.optim.Optimizer, weights: Sequence[nn.Parameter],
                 grads: Sequence[Tensor]) -> Tuple[List[Tensor], float]:
    """``w - ξ(μ·m + g + λ·w)`` for every weight (detached), and ξ (the first group's lr)."""
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    out = []
    for p, g in zip(weights, grads):
        group = group_of[id(p)]
        d = g.detach() + group.get("weight_decay", 0.0) * p.detach()
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None and group.get("momentum", 0.0):
            d = d + group["momentum"] * buf
        out.append(p.detach() - group["lr"] * d)
    return out, float(optimizer.param_groups[0]["lr"])


def unrolled_arch_backward(loss: LossFn, weights: Sequence[nn.Parameter], arch: Sequence[nn.Parameter],
                           optimizer: torch.optim.Optimizer, train_batch: Batch, val_batch: Batch, *,
                           buffers: Sequence[Tensor] = (), grad_step: Optional[GradStep] = None
                           ) -> Tuple[Tensor, Tensor]:
    """Put the second-order DARTS gradient into ``.grad`` of the architecture parameters ``arch``;
    return the validation loss and logits at ``w'`` (detached).

    ``loss``: the training objective of the model both parameter lists belong to; ``weights``:
    the parameters ``optimizer`` (the weights' SGD) steps; ``buffers``: the model's buffers (BN
    running statistics), restored with the weights afterwards; ``grad_step``: the architecture
    step's loss scaling and averaging over data-parallel ranks (None: neither)."""
    step = grad_step if grad_step is not None else GradStep()
    scale = step.scale
    weights = [p for p in weights if p.requires_grad]
    arch = list(arch)
    (x, y), (xv, yv) = train_batch, val_batch
    w0 = [p.detach().clone() for p in weights]
    buffers = list(buffers)
    b0 = [b.detach().clone() for b in buffers]
    devices = _rng_devices([*weights, *arch])
    try:
        loss_t, _ = loss(x, y, False)
        g_t = step.average(weights, _grads(step.scaled(loss_t, len(y)), weights), len(y))
        w_virtual, xi = virtual_step(optimizer, weights, [g / scale for g in g_t] if scale != 1 else g_t)
        del loss_t, g_t
        _set(weights, w_virtual)
        loss_v, logits_v = loss(xv, yv, True)
        g = step.average(arch + weights, _grads(step.scaled(loss_v, len(yv)), arch + weights), len(yv))
        d_alpha, d_w = g[:len(arch)], g[len(arch):]
        if scale != 1:
            d_w = [t / scale for t in d_w]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in d_w]))
        implicit = [torch.zeros_like(a) for a in arch]
        if 0 < float(norm) < float("inf"):
            eps = FD_RADIUS / float(norm)
            with torch.random.fork_rng(devices=devices):
                rng = torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]
                sides = []
                for sign in (1.0, -1.0):
                    torch.set_rng_state(rng[0])
                    for d, s in zip(devices, rng[1]):
                        torch.cuda.set_rng_state(s, d)
                    _set(weights, w0, d_w, sign * eps)
                    loss_pm, _ = loss(x, y, False)
                    sides.append(_grads(step.scaled(loss_pm, len(y)), arch))
            implicit = step.average(arch, [(gp - gn) / (2 * eps) for gp, gn in zip(*sides)], len(y))
        for a, da, hv in zip(arch, d_alpha, implicit):
            a.grad = (da - xi * hv).detach()
    finally:
        _set(weights, w0)
        _set(buffers, b0)
    return loss_v.detach(), logits_v.detach()
