"""Deterministic train/val split and a batch loader that works on one uint8 tensor (or, for
image sets that do not fit in memory, reads each batch through a ``DataLoader``: StreamLoader).

The loader replaces ``torch.utils.data.DataLoader`` + PIL transforms for in-memory image sets:
the whole set is moved to the device once as uint8, and each batch is gathered, augmented
(DARTS/NB201 search augmentation: zero-padded random crop + horizontal flip) and normalised with
a few tensor ops. All randomness comes from the loader's own ``torch.Generator``, so a seed fixes
every batch, and ``state_dict()`` lets a resumed run see exactly the same data order.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch

from ..errors import ConfigError


def split_indices(n: int, train_portion: float, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Disjoint ``(train_idx, val_idx)`` covering ``range(n)``; the first ``floor(portion * n)``
    items of a seeded permutation go to train (as DARTS' ``split = int(floor(portion * n))``)."""
    if not 0.0 < train_portion < 1.0:
        raise ConfigError(f"data.train_portion must be in (0, 1), got {train_portion}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = int(math.floor(train_portion * n))
    if n_train == 0 or n_train == n:
        raise ConfigError(f"data.train_portion={train_portion} of {n} images leaves one side "
                          f"empty; use more images or a portion nearer 0.5")
    return perm[:n_train], perm[n_train:]


def crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
              pad: int) -> torch.Tensor:
    """Zero-pad by ``pad``, crop ``x``'s size at ``offsets`` ([B, 2] as (dy, dx) in [0, 2*pad])
    and mirror the rows where ``flips`` is true; one gather for the whole batch."""
    B, C, H, W = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))                   # [B, C, H+2p, W+2p]
    ar_h = torch.arange(H, device=x.device)
    ar_w = torch.arange(W, device=x.device)
    rows = offsets[:, :1] + ar_h                                            # [B, H]
    cols = offsets[:, 1:] + torch.where(flips[:, None], W - 1 - ar_w, ar_w)  # [B, W]
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return xp[b, c, rows[:, None, :, None], cols[:, None, None, :]]         # [B, C, H, W]


class BatchLoader:
    """Iterates ``(x float32 [B, C, H, W] normalised, y int64 [B])`` on ``device``."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 shuffle: bool, augment: bool, mean: Sequence[float], std: Sequence[float],
                 seed: int = 0, drop_last: bool = False, device: Any = "cpu"):
        if images_u8.dtype != torch.uint8 or images_u8.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images_u8.dtype} "
                             f"{tuple(images_u8.shape)}")
        self.device = torch.device(device)
        self.images = images_u8.to(self.device)  # uint8 on device: 4x less memory than float
        self.labels = labels.to(self.device, torch.int64)
        self._setup(images_u8.shape[0], images_u8.shape[-2], batch_size=batch_size, shuffle=shuffle,
                    augment=augment, mean=mean, std=std, seed=seed, drop_last=drop_last)

    def _setup(self, n: int, height: int, *, batch_size: int, shuffle: bool, augment: bool,
               mean: Sequence[float], std: Sequence[float], seed: int, drop_last: bool) -> None:
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be positive, got {batch_size}")
        self.n = n
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.drop_last = drop_last
        self.mean, self.std = tuple(mean), tuple(std)
        self.pad = max(1, height // 8)  # 4 for 32x32, as in DARTS/NB201
        # normalise in 0..255 units so the uint8 batch needs no separate /255
        self._mean = 255 * torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        self._std = 255 * torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        # a CPU generator: its state is portable across devices and draws here are tiny
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0  # epochs started

    def __len__(self) -> int:
        n = self.n
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def eval_loader(self) -> "BatchLoader":
        """The same images as they are: no crop/flip, fixed order."""
        return BatchLoader(self.images, self.labels, batch_size=self.batch_size, shuffle=False, augment=False,
                           mean=self.mean, std=self.std, device=self.device)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        # the whole epoch's randomness is drawn here, when the epoch starts: the generator state
        # then never depends on how far a consumer got (zip() stops the longer loader early)
        n, g = self.n, self.generator
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        offsets = flips = None
        if self.augment:
            offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=g).to(self.device)
            flips = (torch.rand(n, generator=g) < 0.5).to(self.device)
        self.epoch += 1
        return self._batches(order.to(self.device), offsets, flips)

    def _batches(self, order: torch.Tensor, offsets: Optional[torch.Tensor],
                 flips: Optional[torch.Tensor]) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[sl]
            x = self.images[idx]
            yield self._finish(x, offsets, flips, sl), self.labels[idx]

    def _finish(self, x: torch.Tensor, offsets: Optional[torch.Tensor], flips: Optional[torch.Tensor],
                sl: slice) -> torch.Tensor:
        """Augment (the epoch's crops and flips of batch slice ``sl``) and normalise a uint8 batch."""
        if offsets is not None:
            x = crop_flip(x, offsets[sl], flips[sl], self.pad)
        return (x.float() - self._mean) / self._std

    def state_dict(self) -> Dict[str, Any]:
        """Generator state and number of epochs started: after loading it, the next ``iter()``
        gives exactly the epoch the saved loader's next ``iter()`` would have given. (A
        checkpoint taken mid-epoch therefore resumes at the following epoch.)"""
        return {"epoch": self.epoch, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])


class _Order(torch.utils.data.Sampler):
    """The current epoch's order; a persistent ``DataLoader`` reads it anew every epoch."""

    def __init__(self) -> None:
        self.order: list = []

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class StreamLoader(BatchLoader):
    """:class:`BatchLoader` over a :class:`~nas.data.stream.StreamSet`: the images of each batch
    are read by a ``DataLoader`` with ``workers`` processes instead of gathered from memory; the
    order, crops, flips, normalisation and ``state_dict`` are the same (so are the batches)."""

    def __init__(self, source: Any, positions: torch.Tensor, *, batch_size: int, shuffle: bool,
                 augment: bool, mean: Sequence[float], std: Sequence[float], seed: int = 0,
                 drop_last: bool = False, device: Any = "cpu", workers: int = 0):
        from .stream import _Items, _collate
        self.device = torch.device(device)
        self.source, self.positions, self.workers = source, positions, workers
        self._setup(len(positions), source.shape[-2], batch_size=batch_size, shuffle=shuffle, augment=augment,
                    mean=mean, std=std, seed=seed, drop_last=drop_last)
        self._order = _Order()
        items = _Items(source.dataset, source.indices[positions].tolist(), source.resize)
        self._reader = torch.utils.data.DataLoader(
            items, batch_size=batch_size, sampler=self._order, num_workers=workers, collate_fn=_collate,
            drop_last=drop_last, persistent_workers=workers > 0, pin_memory=self.device.type == "cuda")

    def eval_loader(self) -> "StreamLoader":
        return StreamLoader(self.source, self.positions, batch_size=self.batch_size, shuffle=False, augment=False,
                            mean=self.mean, std=self.std, device=self.device, workers=self.workers)

    def _batches(self, order: torch.Tensor, offsets: Optional[torch.Tensor],
                 flips: Optional[torch.Tensor]) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        from .stream import _raise
        self._order.order = order.cpu().tolist()
        for i, batch in enumerate(self._reader):
            x, y = _raise(batch, "data")
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            x = x.to(self.device, non_blocking=True)
            yield self._finish(x, offsets, flips, sl), y.to(self.device)
