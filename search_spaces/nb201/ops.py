"""The NAS-Bench-201 op table: ``name -> constructor(C_in, C_out, stride, affine)``."""
from __future__ import annotations

from typing import Callable, Dict

from torch import nn

from nas.ops import Identity, Pool, ReLUConvBN, Zero

OpCtor = Callable[[int, int, int, bool], nn.Module]

OPS: Dict[str, OpCtor] = {
    "none": lambda C_in, C_out, stride, affine: Zero(C_in, C_out, stride),
    "skip_connect": lambda C_in, C_out, stride, affine: Identity(),
    "nor_conv_1x1": lambda C_in, C_out, stride, affine: ReLUConvBN(C_in, C_out, 1, stride, 0, affine=affine),
    "nor_conv_3x3": lambda C_in, C_out, stride, affine: ReLUConvBN(C_in, C_out, 3, stride, 1, affine=affine),
    "avg_pool_3x3": lambda C_in, C_out, stride, affine: Pool("avg", C_in, C_out, stride, affine=affine),
}
