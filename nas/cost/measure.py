"""The cost of one op or one network from its shapes.

MACs: :func:`nas.utils.count_macs` with NAS-Bench-201's convention (conv and linear
multiply-accumulates plus one addition per biased output; BN, pooling, ReLU and the sums of a
cell's nodes cost nothing). Parameters: every parameter of the module (BN's affine ones
included, as NB201 counts them; a DARTS network is built without its auxiliary head). Both are
reported in millions. Latency: milliseconds from a :class:`~nas.cost.latency.LatencyTable`.
"""
from __future__ import annotations

from typing import Tuple

from torch import nn

from ..utils.flops import count_macs, count_params

METRICS: Tuple[str, ...] = ("macs", "params", "latency")
UNITS = {"macs": "M MACs", "params": "M params", "latency": "ms"}


def counted(metric: str, module: nn.Module, input_shape: Tuple[int, ...]) -> float:
    """MACs or parameters of ``module`` on one input of shape (C, H, W), in millions."""
    if metric == "macs":
        return count_macs(module, input_shape, bias=True) / 1e6
    if metric == "params":
        return count_params(module, exclude=()) / 1e6
    raise ValueError(f"'{metric}' is not counted; the counted metrics are macs and params")
