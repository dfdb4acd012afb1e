"""An image dataset held in memory and what every reader computes from one: a class-balanced
subset and the per-channel statistics. Below both :mod:`nas.data.datasets` (the registry) and
:mod:`nas.data.stream` (datasets read on demand)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 [N, 3, H, W]
    labels: torch.Tensor  # int64 [N]
    classes: List[str]
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.images.shape[1:])


def stratified_subset(labels: torch.Tensor, n: Optional[int], seed: int) -> torch.Tensor:
    """Indices (ascending) of ``n`` items, as equal per class as the class sizes allow.

    Each class is shuffled by ``seed``; items are then taken round-robin over the classes (all
    first picks, then all second picks, ...), so a class that runs out leaves its share to others.
    """
    N = labels.numel()
    if n is None or n >= N:
        return torch.arange(N)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(N, generator=g)
    # grouped by class, in random order inside each class
    by_class = perm[torch.sort(labels[perm], stable=True).indices]
    cls = labels[by_class]
    starts = torch.searchsorted(cls, cls, right=False)
    rank = torch.arange(N) - starts                     # position of each item inside its class
    key = rank * (int(labels.max()) + 1) + cls
    return torch.sort(by_class[torch.argsort(key)[:n]]).values


def channel_stats(images: torch.Tensor) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units, exact, from 256-bin histograms of the uint8s."""
    hist = torch.stack([torch.bincount(images[:, c].reshape(-1), minlength=256)
                        for c in range(images.shape[1])]).to(torch.float64)    # [3, 256]
    values = torch.arange(256, dtype=torch.float64) / 255
    count = hist.sum(1)
    mean = (hist * values).sum(1) / count
    std = ((hist * values ** 2).sum(1) / count - mean ** 2).clamp_min(0).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())
