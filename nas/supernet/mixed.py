"""The mixed op of an edge: a weighted sum over candidate ops (DARTS), or single-path execution
of the selected candidate when the weights are one-hot in value (GDAS).

Single path (GDAS, Dong & Yang 2019): ``out = ĥ_k*·o_k*(x) + Σ_{k≠k*} ĥ_k``. The other terms are
zero in value but still carry gradient to their mixing weights, so α gets a gradient in every
entry while only one op runs.
"""
from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn


class MixedOp(nn.Module):
    def __init__(self, ops: Sequence[nn.Module], names: Sequence[str]):
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.names = list(names)

    def forward(self, x: Tensor, weights: Tensor, index: Optional[int] = None) -> Tensor:
        """``weights``: ``[K]`` mixing weights of this edge; ``index``: the selected candidate
        when the forward value of ``weights`` is one-hot (single path), else ``None``."""
        if index is not None:
            rest = weights.sum() - weights[index]  # zero in value, gradient to the other entries
            return self.ops[index](x) * weights[index] + rest
        out = None
        for w, op in zip(weights.unbind(0), self.ops):
            if getattr(op, "is_zero", False):
                continue  # zero output: no value and no gradient to w (see nas.ops.common)
            y = op(x) * w
            out = y if out is None else out + y
        if out is None:  # every candidate is `none`
            return self.ops[0](x) * weights.sum()
        return out
