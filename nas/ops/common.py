"""Candidate-op building blocks (DARTS / NAS-Bench-201 definitions).

Every op is built by its entry in the op registry (:mod:`nas.ops.registry`) from
``(C_in, C_out, stride, affine)``. ``Zero.is_zero`` lets a
mixed op skip a candidate whose output is identically zero: its contribution and its gradient
with respect to the mixing weight (``<∂L/∂out, 0> = 0``) are both zero, so skipping it is exact.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ReLUConvBN(nn.Sequential):
    """ReLU → Conv(k, stride, pad, dilation, no bias) → BN (NB201 ``nor_conv_k``)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int,
                 dilation: int = 1, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    takes_relu_input = True  # a mixed op may hand it relu(x), shared with the node's other ops

    def forward(self, x: Tensor, relu_done: bool = False) -> Tensor:
        """``relu_done``: ``x`` is already ``relu(input)``; skip the ReLU."""
        return self[2](self[1](x if relu_done else self[0](x)))


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape."""

    is_zero = True

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        self.C_out, self.stride = C_out, stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1 and x.shape[1] == self.C_out:
            return x.mul(0.0)
        n, _, h, w = x.shape
        return x.new_zeros(n, self.C_out, (h + self.stride - 1) // self.stride,
                           (w + self.stride - 1) // self.stride)


class Identity(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs, concatenated (DARTS)."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        y = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))  # the offset path, same output size
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(y)], dim=1))


class Pool(nn.Module):
    """3x3 avg (``count_include_pad=False``) or max pooling, optionally preprocessed to C_out
    channels (NB201, when C_in != C_out) and optionally followed by a BN (DARTS supernet)."""

    def __init__(self, mode: str, C_in: int, C_out: int, stride: int, affine: bool = True,
                 bn_after: bool = False):
        super().__init__()
        self.pre = None if C_in == C_out else ReLUConvBN(C_in, C_out, 1, 1, 0, affine=affine)
        if mode == "avg":
            self.pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        elif mode == "max":
            self.pool = nn.MaxPool2d(3, stride=stride, padding=1)
        else:
            raise ValueError(f"pool mode must be 'avg' or 'max', got {mode!r}")
        self.bn = nn.BatchNorm2d(C_out, affine=False) if bn_after else None

    def forward(self, x: Tensor) -> Tensor:
        if self.pre is not None:
            x = self.pre(x)
        x = self.pool(x)
        return self.bn(x) if self.bn is not None else x


class DilConv(nn.Sequential):
    """ReLU → depthwise Conv(k, dilation) → Conv1x1 → BN (DARTS ``DilConv``)."""

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
