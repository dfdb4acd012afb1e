"""The built-in candidate ops, entries of :data:`nas.ops.registry.OPS`.

* NAS-Bench-201 (Dong & Yang 2020): ``none``, ``skip_connect``, ``nor_conv_1x1``,
  ``nor_conv_3x3``, ``avg_pool_3x3``;
* DARTS (Liu et al. 2019): ``none``, ``max_pool_3x3``, ``avg_pool_3x3``, ``skip_connect``,
  ``sep_conv_3x3``, ``sep_conv_5x5``, ``dil_conv_3x3``, ``dil_conv_5x5``;
* the discrete blocks' ops (``dnf_1x1``, ``l0_<conv>``) are registered by :mod:`nas.blocks.ops`,
  a layer above: the blocks are built from the supernet's choices, which are built from these ops.

Any op works in any space: a space calls ``build_op(name, C_in, C_out, stride, affine, **context)``.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .common import DilConv, FactorizedReduce, Identity, Pool, ReLUConvBN, SepConv, Zero
from .registry import register_op


@register_op("none")
def none(C_in: int, C_out: int, stride: int, affine: bool, **_: Any) -> nn.Module:
    """The zero op (its output is 0; strided: of the output's shape)."""
    return Zero(C_in, C_out, stride)


@register_op("skip_connect")
def skip_connect(C_in: int, C_out: int, stride: int, affine: bool, **_: Any) -> nn.Module:
    """Identity; DARTS's FactorizedReduce where it strides, a 1x1 conv + BN where only the width changes."""
    # the identity where the shapes allow it (always in NB201 cells), DARTS's FactorizedReduce where
    # it strides, and NB201's Conv1x1-BN where only the width changes
    if stride == 1:
        return Identity() if C_in == C_out else nn.Sequential(nn.Conv2d(C_in, C_out, 1, bias=False),
                                                              nn.BatchNorm2d(C_out, affine=affine))
    return FactorizedReduce(C_in, C_out, affine=affine)


@register_op("nor_conv_1x1")
def nor_conv_1x1(C_in: int, C_out: int, stride: int, affine: bool, **_: Any) -> nn.Module:
    """ReLU → 1x1 conv → BN (NAS-Bench-201)."""
    return ReLUConvBN(C_in, C_out, 1, stride, 0, affine=affine)


@register_op("nor_conv_3x3")
def nor_conv_3x3(C_in: int, C_out: int, stride: int, affine: bool, **_: Any) -> nn.Module:
    """ReLU → 3x3 conv → BN (NAS-Bench-201)."""
    return ReLUConvBN(C_in, C_out, 3, stride, 1, affine=affine)


@register_op("avg_pool_3x3")
def avg_pool_3x3(C_in: int, C_out: int, stride: int, affine: bool, *, pool_bn: bool = False,
                 **_: Any) -> nn.Module:
    """3x3 average pooling (a 1x1 conv first where the width changes; BN after it in a DARTS supernet)."""
    return Pool("avg", C_in, C_out, stride, affine=affine, bn_after=pool_bn)


@register_op("max_pool_3x3")
def max_pool_3x3(C_in: int, C_out: int, stride: int, affine: bool, *, pool_bn: bool = False,
                 **_: Any) -> nn.Module:
    """3x3 max pooling (a 1x1 conv first where the width changes; BN after it in a DARTS supernet)."""
    return Pool("max", C_in, C_out, stride, affine=affine, bn_after=pool_bn)


@register_op("sep_conv_3x3")
def sep_conv_3x3(C_in: int, C_out: int, stride: int, affine: bool, **_: Any) -> nn.Module:
    """Two stacked ReLU → depthwise 3x3 → pointwise 1x1 → BN (DARTS)."""
    return SepConv(C_in, C_out, 3, stride, 1, affine)


@register_op("sep_conv_5x5")
def sep_conv_5x5(C_in: int, C_out: int, stride: int, affine: bool, **_: Any) -> nn.Module:
    """Two stacked ReLU → depthwise 5x5 → pointwise 1x1 → BN (DARTS)."""
    return SepConv(C_in, C_out, 5, stride, 2, affine)


@register_op("dil_conv_3x3")
def dil_conv_3x3(C_in: int, C_out: int, stride: int, affine: bool, **_: Any) -> nn.Module:
    """ReLU → depthwise 3x3 conv with dilation 2 → pointwise 1x1 → BN (DARTS)."""
    return DilConv(C_in, C_out, 3, stride, 2, 2, affine)


@register_op("dil_conv_5x5")
def dil_conv_5x5(C_in: int, C_out: int, stride: int, affine: bool, **_: Any) -> nn.Module:
    """ReLU → depthwise 5x5 conv with dilation 2 → pointwise 1x1 → BN (DARTS)."""
    return DilConv(C_in, C_out, 5, stride, 4, 2, affine)
