"""The NAS-Bench-201 macro skeleton shared by the supernet and the discrete network.

stem Conv3x3(3→C)+BN; N cells at C; ResBlock(C→2C, stride 2); N cells; ResBlock(2C→4C, stride 2);
N cells; BN → ReLU → global average pool → Linear.
"""
from __future__ import annotations

from typing import Callable, List

from torch import Tensor, nn

from nas.ops import ReLUConvBN


class ResBlock(nn.Module):
    """``[AvgPool(2,2) → Conv1x1](x) + RCB3x3(s1)(RCB3x3(s2)(x))`` (NB201 ResNetBasicblock)."""

    def __init__(self, C_in: int, C_out: int, stride: int = 2, affine: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride, 1, affine=affine)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, affine=affine)
        # ceil_mode: an odd side halves like the stride-2 conv beside it (a no-op on even sides)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True),
            nn.Conv2d(C_in, C_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Skeleton(nn.Module):
    """Stem, three stages of ``N`` cells built by ``make_cell(C)`` with two ResBlocks, and head."""

    def __init__(self, make_cell: Callable[[int], nn.Module], C: int, N: int, num_classes: int,
                 in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: List[nn.Module] = []
        C_prev = C
        for stage, C_curr in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                layers.append(ResBlock(C_prev, C_curr, 2))
            layers.extend(make_cell(C_curr) for _ in range(N))
            C_prev = C_curr
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def head(self, x: Tensor) -> Tensor:
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))
