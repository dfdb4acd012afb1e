"""Partial channel connections and edge normalisation (PC-DARTS: Xu, Xie, Zhang, Chen, Qi, Tian,
Xiong, "PC-DARTS: Partial Channel Connections for Memory-Efficient Architecture Search", ICLR 2020).

**Partial channels** (§3.2, eq. 2): the mixed op of edge ``(i, j)`` sees only a sample of ``1/K``
of the channels of ``x_i``; the others bypass it::

    f^PC_ij(x_i) = shuffle( cat[ Σ_k w_k·o_k(S_ij ∗ x_i),  (1 − S_ij) ∗ x_i ] )

``S_ij`` selects the first ``C/K`` channels (as the authors' code: the channel shuffle after every
edge, groups ``K``, changes which channels come first from node to node). The candidate ops are
built for ``C/K`` channels, so the mixed op costs about ``1/K`` of its memory and, for
convolutions, ``1/K²`` of its FLOPs. On a stride-2 edge the bypassed channels are halved by a
2x2 max pooling (the authors' ``self.mp``).

**Edge normalisation** (§3.3, eq. 4): ``x_j = Σ_{i<j} softmax_i(β_j)_i · f^PC_ij(x_i)`` with one
logit ``β_ij`` per edge, a softmax over the edges into each node, learned with α by the
architecture optimiser. The sampled channels change the edges' outputs from step to step; β
averages over them, which the paper reports to stabilise the search. Derive (DARTS): an edge
ranks by ``softmax(β)_ij · max_{k≠none} p_ijk`` (the authors' ``_parse``); the op of an edge is
still its argmax of α, so NAS-Bench-201's derive is unchanged.

The β of each node is a :class:`~nas.supernet.Choice` of the ``softmax`` estimator (whatever
estimator the α use: β is always a softmax), so the search loop finds it among the architecture
parameters.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .choice import Choice
from .mixed import MixedOp


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet's channel shuffle: channel ``g·(C/groups) + m`` moves to ``m·groups + g``."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def shuffle_cat(y: Tensor, rest: Tensor, groups: int) -> Tensor:
    """``channel_shuffle(cat([y, rest], 1), groups)`` with ``y`` one group's channels, written in
    one copy and in ``y``'s memory format (NHWC stays NHWC)."""
    n, c1, h, w = y.shape
    fmt = torch.channels_last if y.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = y.new_empty(n, c1 * groups, h, w).contiguous(memory_format=fmt)
    grid = out.view(n, c1, groups, h, w)  # out channel m·groups + g
    grid[:, :, 0] = y
    grid[:, :, 1:] = rest.reshape(n, groups - 1, c1, h, w).transpose(1, 2)
    return out


class PartialMixedOp(MixedOp):
    """A :class:`MixedOp` over the first ``C/K`` channels of its input, the rest bypassing it
    (module docstring). Its ``ops`` are built for ``C/K`` channels."""

    def __init__(self, ops: Sequence[nn.Module], names: Sequence[str], K: int):
        super().__init__(ops, names)
        self.K = K

    def forward(self, x: Tensor, weights: Tensor, index: Optional[int] = None,
                shared: Optional[Dict[str, Tensor]] = None, active: Optional[Sequence[bool]] = None) -> Tensor:
        c = x.shape[1] // self.K
        y = super().forward(x[:, :c], weights, index, shared, active)
        rest = x[:, c:]
        if y.shape[2:] != rest.shape[2:]:  # a stride-2 edge
            rest = F.max_pool2d(rest, 2, 2)
        return shuffle_cat(y, rest, self.K)


def check_partial(K: int, channels: Sequence[int]) -> int:
    """``space.partial_channels`` K: 1 (off) or a divisor of every cell's channel count."""
    from ..errors import ConfigError

    if K < 1:
        raise ConfigError(f"space.partial_channels must be 1 (off) or more, got {K}")
    bad = [c for c in channels if c % K]
    if bad:
        raise ConfigError(f"space.partial_channels={K} must divide the channels of every cell "
                          f"({', '.join(map(str, sorted(set(channels))))}); pick a divisor of space.C")
    return K


class EdgeNormalization(nn.Module):
    """β: per node with two or more incoming edges, a softmax over its edges (module docstring).
    ``edges`` lists ``(i, j)`` per edge; ``weights()`` is ``[E]``, 1 for a node's only edge."""

    def __init__(self, edges: Sequence[Tuple[int, int]], labels: Sequence[str], init_std: float = 1e-3,
                 generator: Optional[torch.Generator] = None):
        from ..estimators import build_estimator

        super().__init__()
        self.E = len(edges)
        into: Dict[int, List[int]] = {}
        for e, (_, j) in enumerate(edges):
            into.setdefault(j, []).append(e)
        self.groups = {j: es for j, es in sorted(into.items()) if len(es) > 1}
        estimator = build_estimator("softmax")
        self.choices = nn.ModuleDict({
            str(j): Choice(estimator, 1, [labels[e] for e in es], init_std=init_std, generator=generator,
                           labels=[f"into {j}"])
            for j, es in self.groups.items()})

    def weights(self) -> Tensor:
        parts, order = [], []
        for j, es in self.groups.items():
            parts.append(self.choices[str(j)]().weights.reshape(-1))
            order += es
        if not parts:
            return torch.ones(self.E)
        w = torch.cat(parts)
        singles = [e for e in range(self.E) if e not in order]
        if singles:
            w = torch.cat([w, w.new_ones(len(singles))])
            order += singles
        return w[torch.tensor(order, device=w.device).argsort()]
