"""The discrete blocks as candidate ops, entries of :data:`nas.ops.registry.OPS`: ``dnf_1x1``, the
Neural DNF block as a logical 1x1 (Lu 2020, :class:`~nas.blocks.dnf.DNFOp`), and ``l0_<conv>``
for every conv of :mod:`nas.ops.builtin`: the conv with one L0 gate per output channel (Louizos
et al. 2018, :class:`~nas.blocks.l0.ChannelGatedOp`). Registered when :mod:`nas.blocks` is
imported (:mod:`nas.spaces` imports it, so every space can name them)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from ..estimators.base import Estimator
from ..ops.registry import OPS, build_op, register_op
from .dnf import LAMBDA_G, DNFOp
from .l0 import ChannelGatedOp, Pruned, pruned_width

DNF_RULES = 8        # conjunctions per output channel of dnf_1x1 (space.op_args.dnf_1x1.rules)
L0_LAMBDA = 1e-4     # the penalty weight of an l0_* op's gates when no space gives one


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
    context's ``gate_estimator`` (None: hard concrete) with penalty weight ``l0_lambda``; with a
    ``width`` (a discrete network of a genotype that recorded one) ``name`` at that share of its
    channels instead (:class:`~nas.blocks.l0.Pruned`)."""
    def build(C_in: int, C_out: int, stride: int, affine: bool, *, gate_estimator: Optional[Estimator] = None,
              l0_lambda: float = L0_LAMBDA, generator: Optional[torch.Generator] = None,
              width: Optional[float] = None, **context: Any) -> nn.Module:
        if width is not None:   # the derived form: only the channels the gates kept, no gates
            kept = pruned_width(width, C_out)
            return Pruned(build_op(name, C_in, kept, stride, affine, generator=generator, **context), kept, C_out)
        op = build_op(name, C_in, C_out, stride, affine, generator=generator, **context)
        return ChannelGatedOp(op, C_out, l0_lambda, gate_estimator, generator)
    build.__doc__ = f"``{name}`` with one L0 gate per output channel (Louizos et al. 2018): a learned width."
    build.__name__ = build.__qualname__ = f"l0_{name}"  # the registry tells entries apart by name
    OPS.register(f"l0_{name}", build)
    return f"l0_{name}"


CONVS = ("nor_conv_1x1", "nor_conv_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
L0_OPS = tuple(register_l0(name) for name in CONVS)
