"""The DARTS op tables: ``name -> constructor(C_in, C_out, stride, affine)`` (Liu et al. 2019).

``OPS`` builds the candidates of the discrete network; ``SUPERNET_OPS`` those of the supernet,
which differ only in that the pooling candidates get a BN (affine=False) after them, as in the
DARTS search code (``MixedOp``): the parameter-free pools otherwise have a different output
scale from the BN-ended convolutions they are mixed with.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

from torch import Tensor, nn

from nas.ops import FactorizedReduce, Identity, Pool, Zero

OpCtor = Callable[[int, int, int, bool], nn.Module]

PRIMITIVES: Tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                               "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


class DilConv(nn.Sequential):
    """ReLU → depthwise Conv(k, dilation) → Conv1x1 → BN."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, padding=0, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConvs without dilation; only the first one strides (DARTS ``SepConv``)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True):
        super().__init__(
            DilConv(C_in, C_in, kernel, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel, 1, padding, 1, affine),
        )


def _skip(C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 and C_in == C_out else FactorizedReduce(C_in, C_out, affine=affine)


OPS: Dict[str, OpCtor] = {
    "none": lambda C_in, C_out, stride, affine: Zero(C_in, C_out, stride),
    "max_pool_3x3": lambda C_in, C_out, stride, affine: Pool("max", C_in, C_out, stride, affine=affine),
    "avg_pool_3x3": lambda C_in, C_out, stride, affine: Pool("avg", C_in, C_out, stride, affine=affine),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda C_in, C_out, stride, affine: SepConv(C_in, C_out, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C_in, C_out, stride, affine: SepConv(C_in, C_out, 5, stride, 2, affine),
    "dil_conv_3x3": lambda C_in, C_out, stride, affine: DilConv(C_in, C_out, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C_in, C_out, stride, affine: DilConv(C_in, C_out, 5, stride, 4, 2, affine),
}

SUPERNET_OPS: Dict[str, OpCtor] = {
    **OPS,
    "max_pool_3x3": lambda C_in, C_out, stride, affine: Pool("max", C_in, C_out, stride, affine=affine,
                                                             bn_after=True),
    "avg_pool_3x3": lambda C_in, C_out, stride, affine: Pool("avg", C_in, C_out, stride, affine=affine,
                                                             bn_after=True),
}


def drop_path(x: Tensor, drop_prob: float) -> Tensor:
    """Zero whole samples of a branch with probability ``drop_prob`` and rescale the rest by
    ``1/(1-p)`` (DARTS/NASNet drop-path; applied in training to every non-identity op)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep)
    return x / keep * mask
