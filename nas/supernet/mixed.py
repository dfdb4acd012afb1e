"""The mixed op of an edge: a weighted sum over candidate ops (DARTS), or single-path execution
of the selected candidate when the weights are one-hot in value (GDAS).

Single path (GDAS, Dong & Yang 2019): ``out = ĥ_k*·o_k*(x) + Σ_{k≠k*} ĥ_k``. The other terms are
zero in value but still carry gradient to their mixing weights, so α gets a gradient in every
entry while only one op runs.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _dot(g: Tensor, y: Tensor) -> Tensor:
    """``<g, y>`` in float32 at least: under bf16/fp16 autocast the activations are half width, and
    a rounded half-width result would swamp ``∂L/∂α = p·(<g, y_k> - Σ_j p_j <g, y_j>)``, a small
    difference of the candidates' large dot products."""
    if g.dtype in (torch.float16, torch.bfloat16) or y.dtype in (torch.float16, torch.bfloat16):
        return torch.dot(g.reshape(-1).float(), y.reshape(-1).float())
    return torch.dot(g.reshape(-1), y.reshape(-1))


class _WeightedSum(torch.autograd.Function):
    """``out = Σ_k w[k]·y_k`` over the candidates ``ks`` that ran (the others are exactly zero).

    The same value and gradient as the autograd graph of ``Σ y_k * w[k]``, but with no temporary
    per term: forward accumulates with ``addcmul_``; backward gives ``∂L/∂y_k = w_k·g`` and
    ``∂L/∂w_k = <g, y_k>`` as one dot product instead of a product tensor and its sum
    (``∂L/∂w_k = 0`` for the candidates that did not run).
    """

    @staticmethod
    def forward(ctx, w: Tensor, ks: List[int], *ys: Tensor) -> Tensor:
        ctx.ks = ks
        ctx.save_for_backward(w, *ys)
        out = ys[0] * w[ks[0]]
        for k, y in zip(ks[1:], ys[1:]):
            out.addcmul_(y, w[k])
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        w, *ys = ctx.saved_tensors
        gw = None
        if ctx.needs_input_grad[0]:
            gf = g.reshape(-1)
            gw = torch.zeros_like(w)
            for k, y in zip(ctx.ks, ys):
                gw[k] = _dot(gf, y)
        gys = [g * w[k] if ctx.needs_input_grad[2 + i] else None for i, k in enumerate(ctx.ks)]
        return (gw, None, *gys)


class _SinglePath(torch.autograd.Function):
    """``out = w[k]·y + Σ_{j≠k} w[j]`` (GDAS single path) in one kernel, with the gradient of
    the autograd graph: ``∂L/∂y = w_k·g``, ``∂L/∂w_k = <g, y>``, ``∂L/∂w_j = Σ g`` for j ≠ k."""

    @staticmethod
    def forward(ctx, w: Tensor, k: int, y: Tensor) -> Tensor:
        ctx.k = k
        ctx.save_for_backward(w, y)
        rest = w.sum() - w[k]  # zero in value
        return torch.addcmul(rest.to(y.dtype), y, w[k])

    @staticmethod
    def backward(ctx, g: Tensor):
        w, y = ctx.saved_tensors
        k = ctx.k
        gw = None
        if ctx.needs_input_grad[0]:
            gw = g.sum().to(w.dtype).expand(w.shape).clone()
            gw[k] = _dot(g.reshape(-1), y)
        gy = g * w[k] if ctx.needs_input_grad[2] else None
        return gw, None, gy


class MixedOp(nn.Module):
    """One edge of a supernet cell: the candidate ``ops`` (named ``names``, in the order of the
    choice's candidates) mixed by the weights a :class:`~nas.supernet.Choice` samples,
    ``out = Σ_k w_k·o_k(x)`` (DARTS), or only the selected candidate when ``index`` is given
    (single path, see the module docstring). A candidate with ``is_zero`` (``none``) is skipped:
    it adds nothing and its weight gets no gradient; so is one that ``active`` leaves out (a
    masked choice, :meth:`~nas.supernet.Choice.set_mask`: weight exactly 0, no gradient)."""

    def __init__(self, ops: Sequence[nn.Module], names: Sequence[str]):
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.names = list(names)

    def forward(self, x: Tensor, weights: Tensor, index: Optional[int] = None,
                shared: Optional[Dict[str, Tensor]] = None, active: Optional[Sequence[bool]] = None) -> Tensor:
        """``weights``: ``[K]`` mixing weights of this edge; ``index``: the selected candidate
        when the forward value of ``weights`` is one-hot (single path), else ``None``.

        ``shared``: a dict the caller keeps per input tensor ``x``; candidates that begin with a
        ReLU (``takes_relu_input``, called as ``op(relu(x), True)``) then share one ``relu(x)``
        across every edge leaving that node instead of each computing and storing its own copy.
        ``active``: per candidate, whether it is still in the choice (``None``: all are).
        """
        if index is not None:
            return _SinglePath.apply(weights, index, self._run(index, x, shared))
        ks = [k for k, op in enumerate(self.ops)
              if not getattr(op, "is_zero", False) and (active is None or active[k])]
        # a zero candidate has no value and no gradient to its w (see nas.ops.common)
        if not ks:  # every candidate is `none`
            return self.ops[0](x) * weights.sum()
        return _WeightedSum.apply(weights, ks, *(self._run(k, x, shared) for k in ks))

    def _run(self, k: int, x: Tensor, shared: Optional[Dict[str, Tensor]]) -> Tensor:
        op = self.ops[k]
        if shared is None or not getattr(op, "takes_relu_input", False):
            return op(x)
        if "relu" not in shared:
            shared["relu"] = F.relu(x)
        return op(shared["relu"], True)


def edge_output(edge: nn.Module, h: Tensor, sample: Any, e: int, shared: Optional[Dict] = None,
                scale: Optional[Tensor] = None, gates: Optional[Tensor] = None) -> Tensor:
    """Edge ``e`` of a cell on input ``h``: its mixed op under the estimator's ``sample`` (weights,
    sampled index and active candidates of that edge), times ``scale[e]`` (a factor per edge: L0
    edge gates, PC-DARTS edge normalisation) and ``gates[e]`` (its channel gates) where given. The
    cells of every space run their edges through it, in that order of products."""
    idx = None if sample.index is None else sample.index[e]
    y = edge(h, sample.weights[e], idx, shared, None if sample.active is None else sample.active[e])
    if scale is not None:
        y = y * scale[e]
    if gates is not None:
        y = y * gates[e]
    return y
