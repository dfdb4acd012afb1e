"""BatchNorm recalibration of a supernet for its eval-mode forward.

A sampled estimator (GDAS, single-path STE/Bop, Dirichlet) trains with a different op on each
edge every step, so an op's BN running statistics mix the inputs of many sub-networks and lag far
behind its weights; the eval-mode forward (the derived single path, or the mean relaxation) then
normalises with statistics it never produced, and its accuracy reads near chance. As in one-shot
NAS (Guo et al. 2020, SPOS §3.3; Bender et al. 2018), the statistics are recomputed on training
batches with the eval-mode choices before scoring: every BN's running mean and variance become the
plain average over those batches (``momentum=None``).
"""
from __future__ import annotations

from typing import Iterable, Tuple

import torch
from torch import Tensor, nn


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Tuple[Tensor, Tensor]]) -> int:
    """Recompute the running statistics of every tracking BN of ``model`` on ``batches``, running
    BN in train mode and everything else (the choices above all: their eval-mode decision) in eval
    mode. A BN that no batch reaches (an op off the eval-mode path) keeps its old statistics.
    Returns the number of batches; the model is left in eval mode."""
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    saved = {bn: (bn.momentum, {k: v.clone() for k, v in bn.state_dict().items()}) for bn in bns}
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
        bn.train()
    n = 0
    try:
        for x, _ in batches:
            model(x)
            n += 1
    finally:
        for bn in bns:
            momentum, state = saved[bn]
            bn.momentum = momentum
            bn.eval()
            if n == 0 or int(bn.num_batches_tracked) == 0:
                bn.load_state_dict(state)
    return n
