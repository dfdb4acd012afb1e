"""The DARTS candidates (Liu et al. 2019) and drop-path.

The ops themselves are entries of the one op registry (:mod:`nas.ops.builtin`); ``PRIMITIVES``
is the space's default candidate list. In the supernet the pooling candidates get a BN
(affine=False) after them (context ``pool_bn=True``), as in the DARTS search code
(``MixedOp``): the parameter-free pools otherwise have a different output scale from the
BN-ended convolutions they are mixed with.
"""
from __future__ import annotations

from typing import Tuple

from torch import Tensor

from nas.ops import DilConv, SepConv  # noqa: F401  (the DARTS blocks, defined with the other ops)

PRIMITIVES: Tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                               "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


def drop_path(x: Tensor, drop_prob: float) -> Tensor:
    """Zero whole samples of a branch with probability ``drop_prob`` and rescale the rest by
    ``1/(1-p)`` (DARTS/NASNet drop-path; applied in training to every non-identity op)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep)
    return x / keep * mask
