"""Widening the candidate ops of partial-channel mixed ops (DrNAS's progressive search: Chen et al.,
"DrNAS: Dirichlet Neural Architecture Search", ICLR 2021, §3.3, after Net2Net's Net2WiderNet,
Chen, Goodfellow, Shlens, ICLR 2016).

Between two stages DrNAS lowers the partial-channel K of PC-DARTS (each mixed op sees ``C/K``
channels, :mod:`nas.supernet.partial`) and widens every candidate op from ``C/K_old`` to
``C/K_new`` channels: each new input or output channel of a convolution is a copy of a randomly
chosen existing one, ``W'[:, c_old + i] = W[:, idx_in[i]]``, ``W'[c_old + i] = W[idx_out[i]]``; a
BN's new channels copy the statistics and affine parameters of the channels its convolution's
new outputs copy. The copied input weights are not divided by the number of copies (the authors'
code does not either): the widened op is a new start, not the same function, since the mixed op
now reads other channels of its input as well.

Parameters change in place (``p.data = wider``), so optimizers, the loop's parameter lists and
any other reference stay valid; :func:`widen_optimizer_state` widens the optimizers' per-parameter
state (SGD momentum) with the same indices. The indices come from the ``generator`` handed in,
so equal seeds widen equally on every rank.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigError
from ..ops.common import FactorizedReduce, Identity, Pool, ReLUConvBN, Zero
from .partial import PartialMixedOp

# modules a candidate op may consist of: parameter-free ones pass their channels through
_PASS = (nn.ReLU, nn.Identity, Identity, nn.AvgPool2d, nn.MaxPool2d, nn.Sequential, ReLUConvBN, Pool, Zero,
         FactorizedReduce)

# parameter -> [(dim, indices)]: what widened it, for its optimizer state
Widened = Dict[nn.Parameter, Tuple[Tuple[int, ...], List[Tuple[int, Tensor]]]]


def _gather(t: Tensor, dim: int, src: Tensor) -> Tensor:
    """``t`` with channel ``i`` of ``dim`` taken from channel ``src[i]``."""
    return t.index_select(dim, src.to(t.device))


def _keep(n: int, idx: Tensor) -> Tensor:
    """The gather index that keeps ``n`` channels and appends copies of channels ``idx``."""
    return torch.cat([torch.arange(n), idx])


def _set(p: nn.Parameter, widened: Widened, *steps: Tuple[int, Tensor]) -> None:
    """``steps``: ``(dim, gather index)`` pairs applied in order."""
    old = tuple(p.shape)
    t = p.data
    for dim, src in steps:
        t = _gather(t, dim, src)
    p.data = t
    p.grad = None  # of the old shape; the next step computes a new one
    widened[p] = (old, list(steps))


def check_widenable(op: nn.Module, name: str) -> None:
    """Refuse, in one line, an op this module cannot widen: one holding modules other than
    convolutions (plain or depthwise), BN, ReLU, pooling, identity and zero."""
    for m in op.modules():
        if isinstance(m, nn.Conv2d):
            if m.groups not in (1, m.in_channels) or (m.groups > 1 and m.out_channels != m.in_channels):
                raise ConfigError(f"op '{name}' has a grouped convolution ({m.groups} groups) that cannot be "
                                  f"widened; drop it from space.ops or keep partial_channels constant")
        elif not isinstance(m, (_BatchNorm,) + _PASS):
            raise ConfigError(f"op '{name}' holds a {type(m).__name__}, which cannot be widened (convolutions, "
                              f"BN, ReLU, pooling only); drop it from space.ops or keep partial_channels constant")


def widen_op(op: nn.Module, c_old: int, c_new: int, generator: torch.Generator, widened: Widened) -> None:
    """Widen a candidate op from ``c_old`` to ``c_new`` channels in and out (module docstring).
    Its modules are taken in registration order as a chain (``ReLU → Conv → BN``, DARTS's
    separable and dilated convolutions): a convolution's new input channels copy the channels the
    previous layer's new outputs copied, the first one's random ones. A FactorizedReduce widens
    each of its two convolutions' halves, and its BN with both."""
    def draw(n_old: int = c_old, n_new: int = c_new) -> Tensor:
        return _keep(n_old, torch.randint(0, n_old, (n_new - n_old,), generator=generator))

    src: Optional[Tensor] = None  # the gather index of the current tensor's channels
    inside = set()  # modules a FactorizedReduce widened as a whole
    for m in op.modules():
        if m in inside:
            continue
        if isinstance(m, FactorizedReduce):
            # two halves side by side: each conv widens its own half, the BN follows both
            src = draw() if src is None else src
            h_old, h_new = c_old // 2, c_new // 2
            halves = [draw(h_old, h_new) for _ in range(2)]
            for conv, out in zip((m.conv_1, m.conv_2), halves):
                _set(conv.weight, widened, (1, src), (0, out))
                conv.in_channels, conv.out_channels = c_new, h_new
            src = torch.cat([halves[0], halves[1] + h_old])
            _widen_bn(m.bn, src, c_new, widened)
            inside.update((m.conv_1, m.conv_2, m.bn))
        elif isinstance(m, nn.Conv2d):
            src = draw() if src is None else src
            if m.groups > 1:  # depthwise: channel c reads channel c
                _set(m.weight, widened, (0, src))
                m.groups = c_new
            else:
                out = draw()
                _set(m.weight, widened, (1, src), (0, out))
                src = out
            if m.bias is not None:
                _set(m.bias, widened, (0, src))
            m.in_channels = m.out_channels = c_new
        elif isinstance(m, _BatchNorm):  # BatchNorm2d, synchronised BN
            src = draw() if src is None else src
            _widen_bn(m, src, c_new, widened)
        elif isinstance(m, Zero) and m.C_out == c_old:
            m.C_out = c_new


def _widen_bn(m: _BatchNorm, src: Tensor, c_new: int, widened: Widened) -> None:
    for name in ("running_mean", "running_var"):
        buf = getattr(m, name)
        if buf is not None:
            setattr(m, name, _gather(buf, 0, src))
    if m.affine:
        _set(m.weight, widened, (0, src))
        _set(m.bias, widened, (0, src))
    m.num_features = c_new


def widen_partial(model: nn.Module, K: int, generator: torch.Generator) -> Widened:
    """Every :class:`~nas.supernet.partial.PartialMixedOp` of ``model`` to ``1/K`` of its
    channels (from its own ``1/K_old``); returns what widened each parameter, for
    :func:`widen_optimizer_state`. The caller checks K (:func:`check_widening`)."""
    from .fused import invalidate_plans

    widened: Widened = {}
    for mixed in partial_ops(model):
        c_old = _op_channels(mixed)
        c_new = c_old * mixed.K // K
        for op in mixed.ops:
            widen_op(op, c_old, c_new, generator, widened)
        mixed.K = K
    invalidate_plans(model)
    return widened


def partial_ops(model: nn.Module) -> List[PartialMixedOp]:
    return [m for m in model.modules() if isinstance(m, PartialMixedOp)]


def _op_channels(mixed: PartialMixedOp) -> int:
    """The channels a partial mixed op's candidates see: ``C/K``, read off its first conv or BN."""
    for m in mixed.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
        if isinstance(m, _BatchNorm):
            return m.num_features
    return 0  # parameter-free candidates only: nothing to widen


def check_widening(model: nn.Module, ks: Sequence[int], key: str) -> None:
    """Refuse, one line each: a model without partial-channel mixed ops, a first K that is not
    the model's, a K that does not divide a mixed op's channels, a K that grows, an op that cannot
    be widened."""
    mixed = partial_ops(model)
    if not mixed:
        raise ConfigError(f"{key}: widening needs partial channels (space.partial_channels > 1); "
                          f"set space.partial_channels={ks[0]} or give one K per stage equal to 1")
    have = sorted({m.K for m in mixed})
    if have != [ks[0]]:
        raise ConfigError(f"{key}: the first stage's K ({ks[0]}) must be space.partial_channels "
                          f"({', '.join(map(str, have))}); set them equal")
    for a, b in zip(ks, ks[1:]):
        if b > a:
            raise ConfigError(f"{key}: K may only fall from stage to stage (ops widen), got {list(ks)}")
    for m in mixed:
        C = _op_channels(m) * m.K
        bad = [k for k in ks if C and C % k]
        if bad:
            raise ConfigError(f"{key}: K={bad[0]} does not divide a mixed op's {C} channels; "
                              f"pick divisors of space.C")
        halves = any(isinstance(op, FactorizedReduce) for op in m.modules())
        odd = [k for k in ks if halves and (C // k) % 2]
        if odd:
            raise ConfigError(f"{key}: K={odd[0]} leaves {C // odd[0]} channels, odd, for a FactorizedReduce "
                              f"(two halves); pick a K that leaves an even number")
    if len(set(ks)) > 1:
        for m in mixed:
            for op, name in zip(m.ops, m.names):
                check_widenable(op, name)


@torch.no_grad()
def widen_optimizer_state(optimizer: torch.optim.Optimizer, widened: Widened) -> None:
    """Widen ``optimizer``'s state of every widened parameter with the parameter's own indices:
    each state tensor of the parameter's old shape (SGD's momentum buffer, Adam's moments)."""
    for p, (old, steps) in widened.items():
        state = optimizer.state.get(p)
        if not state:
            continue
        for name, t in list(state.items()):
            if isinstance(t, Tensor) and tuple(t.shape) == old:
                for dim, src in steps:
                    t = _gather(t, dim, src)
                state[name] = t
