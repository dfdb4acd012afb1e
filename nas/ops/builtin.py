"""The built-in candidate ops, entries of :data:`nas.ops.registry.OPS`.

* NAS-Bench-201 (Dong & Yang 2020): ``none``, ``skip_connect``, ``nor_conv_1x1``,
  ``nor_conv_3x3``, ``avg_pool_3x3``;
* DARTS (Liu et al. 2019): ``none``, ``max_pool_3x3``, ``avg_pool_3x3``, ``skip_connect``,
  ``sep_conv_3x3``, ``sep_conv_5x5``, ``dil_conv_3x3``, ``dil_conv_5x5``;
* discrete blocks: ``dnf_1x1``, the Neural DNF block as a logical 1x1 (Lu 2020,
  :class:`~nas.blocks.dnf.DNFOp`), and ``l0_<conv>`` for every conv above: the conv with one L0
  gate per output channel (Louizos et al. 2018, :class:`~nas.blocks.l0.ChannelGatedOp`).

Any op works in any space: a space calls ``build_op(name, C_in, C_out, stride, affine, **context)``.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from ..blocks.dnf import LAMBDA_G, DNFOp
from ..blocks.l0 import ChannelGatedOp
from ..estimators.base import Estimator
from .common import DilConv, FactorizedReduce, Identity, Pool, ReLUConvBN, SepConv, Zero
from .registry import OPS, build_op, register_op

DNF_RULES = 8        # conjunctions per output channel of dnf_1x1 (space.op_args.dnf_1x1.rules)
L0_LAMBDA = 1e-4     # the penalty weight of an l0_* op's gates when no space gives one


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


@register_op("dnf_1x1")
def dnf_1x1(C_in: int, C_out: int, stride: int, affine: bool, *, estimator: Optional[Estimator] = None,
            generator: Optional[torch.Generator] = None, rules: int = DNF_RULES, lambda_g: float = LAMBDA_G,
            form: str = "log", density: Optional[float] = None, **_: Any) -> nn.Module:
    """The Neural DNF block (Lu 2020) as a logical 1x1: each output channel a DNF over the input
    channels' predicates. In a supernet the run's estimator learns the rule pool; the discrete network gives none
    and the op trains its rules with the STE, whose forward value stays binary. ``form``: the
    conjunction in log space or as the thesis's product (:class:`~nas.blocks.dnf.DNFOp`)."""
    from ..estimators.ste import STE
    return DNFOp(C_in, C_out, stride, affine, estimator if estimator is not None else STE(),
                 rules=rules, lambda_g=lambda_g, generator=generator, form=form, density=density)


def register_l0(name: str) -> str:
    """Register ``l0_<name>``: op ``name`` with one L0 gate per output channel, learned by the
    context's ``gate_estimator`` (None: hard concrete) with penalty weight ``l0_lambda``."""
    def build(C_in: int, C_out: int, stride: int, affine: bool, *, gate_estimator: Optional[Estimator] = None,
              l0_lambda: float = L0_LAMBDA, generator: Optional[torch.Generator] = None,
              **context: Any) -> nn.Module:
        op = build_op(name, C_in, C_out, stride, affine, generator=generator, **context)
        return ChannelGatedOp(op, C_out, l0_lambda, gate_estimator, generator)
    build.__doc__ = f"``{name}`` with one L0 gate per output channel (Louizos et al. 2018): a learned width."
    build.__name__ = build.__qualname__ = f"l0_{name}"  # the registry tells entries apart by name
    OPS.register(f"l0_{name}", build)
    return f"l0_{name}"


CONVS = ("nor_conv_1x1", "nor_conv_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
L0_OPS = tuple(register_l0(name) for name in CONVS)
