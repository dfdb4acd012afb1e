"""Deterministic train/val split and a batch loader that works on one uint8 tensor (or, for
image sets that do not fit in memory, reads each batch through a ``DataLoader``: StreamLoader).

The loader replaces ``torch.utils.data.DataLoader`` + PIL transforms for in-memory image sets:
the whole set is moved to the device once as uint8, and each batch is gathered, augmented
(DARTS/NB201 search augmentation: zero-padded random crop + horizontal flip) and normalised with
a few tensor ops. All randomness comes from the loader's own ``torch.Generator``, so a seed fixes
every batch, and ``state_dict()`` lets a resumed run see exactly the same data order.

Data parallel (``shard=(rank, world)``): every rank draws the epoch's order and augmentation for
the whole set, exactly as one process would, and gathers, augments and normalises only its
contiguous slice of each global batch (:func:`shard_bounds`); ``batch_size`` is the global batch.
The generator state is the same on every rank and does not depend on the world size.
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


def shard_bounds(n: int, rank: int, world: int) -> Tuple[int, int]:
    """``[lo, hi)`` of ``rank``'s slice of a global batch of ``n`` items: contiguous, in rank
    order, sizes differing by at most one (the first ``n % world`` ranks take one more)."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def sharded_len(n: int, batch_size: int, drop_last: bool, world: int, min_per_rank: int = 2) -> int:
    """Batches per epoch. With several ranks, a last partial batch that cannot give every rank
    ``min_per_rank`` items is left out (training: one item per rank breaks BatchNorm without
    ``trainer.sync_bn``; evaluation keeps every item, ``min_per_rank=0``)."""
    full, rest = divmod(n, batch_size)
    keep_rest = rest > 0 and not drop_last and (world == 1 or rest >= min_per_rank * world)
    return full + keep_rest


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
    """Iterates ``(x [B, C, H, W] normalised, y int64 [B])`` on ``device``; x in torch's default
    float dtype (float32 unless a caller set another). ``shard``: (rank, world) of a data-parallel
    run; ``channels_last``: batches in NHWC memory format."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 shuffle: bool, augment: bool, mean: Sequence[float], std: Sequence[float],
                 seed: int = 0, drop_last: bool = False, device: Any = "cpu",
                 shard: Tuple[int, int] = (0, 1), channels_last: bool = False):
        if images_u8.dtype != torch.uint8 or images_u8.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images_u8.dtype} "
                             f"{tuple(images_u8.shape)}")
        self.device = torch.device(device)
        self.images = images_u8.to(self.device)  # uint8 on device: 4x less memory than float
        self.labels = labels.to(self.device, torch.int64)
        self._setup(images_u8.shape[0], images_u8.shape[-2], batch_size=batch_size, shuffle=shuffle,
                    augment=augment, mean=mean, std=std, seed=seed, drop_last=drop_last, shard=shard,
                    channels_last=channels_last)

    def _setup(self, n: int, height: int, *, batch_size: int, shuffle: bool, augment: bool,
               mean: Sequence[float], std: Sequence[float], seed: int, drop_last: bool,
               shard: Tuple[int, int], channels_last: bool) -> None:
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be positive, got {batch_size}")
        self.n = n
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.drop_last = drop_last
        self.rank, self.world = shard
        if not 0 <= self.rank < self.world:
            raise ValueError(f"shard {shard}: rank must lie in [0, world)")
        self.channels_last = channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.mean, self.std = tuple(mean), tuple(std)
        self.pad = max(1, height // 8)  # 4 for 32x32, as in DARTS/NB201
        # normalise in 0..255 units so the uint8 batch needs no separate /255
        dtype = torch.get_default_dtype()
        self._mean = 255 * torch.tensor(mean, dtype=dtype).view(1, -1, 1, 1).to(self.device)
        self._std = 255 * torch.tensor(std, dtype=dtype).view(1, -1, 1, 1).to(self.device)
        # a CPU generator: its state is portable across devices and draws here are tiny
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0  # epochs started

    def __len__(self) -> int:
        # an evaluation loader (no shuffling) keeps a last batch too small to reach every rank
        # (some ranks then get an empty slice); a training loader leaves it out
        return sharded_len(self.n, self.batch_size, self.drop_last, self.world,
                           min_per_rank=2 if self.shuffle else 0)

    def eval_loader(self, shard: Tuple[int, int] = (0, 1)) -> "BatchLoader":
        """The same images as they are: no crop/flip, fixed order; ``shard``: this rank's slices
        of each batch (default: the whole batches)."""
        return BatchLoader(self.images, self.labels, batch_size=self.batch_size, shuffle=False, augment=False,
                           mean=self.mean, std=self.std, device=self.device, shard=shard,
                           channels_last=self.channels_last)

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

    def _slices(self) -> Iterator[slice]:
        """This rank's slice of every global batch of the epoch, as positions in the epoch's order."""
        for i in range(len(self)):
            start = i * self.batch_size
            lo, hi = shard_bounds(min(self.batch_size, self.n - start), self.rank, self.world)
            yield slice(start + lo, start + hi)

    def _batches(self, order: torch.Tensor, offsets: Optional[torch.Tensor],
                 flips: Optional[torch.Tensor]) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        for sl in self._slices():
            idx = order[sl]
            yield self._finish(self.images[idx], offsets, flips, sl), self.labels[idx]

    def _finish(self, x: torch.Tensor, offsets: Optional[torch.Tensor], flips: Optional[torch.Tensor],
                sl: slice) -> torch.Tensor:
        """Augment (the epoch's crops and flips of batch slice ``sl``) and normalise a uint8 batch."""
        if offsets is not None:
            x = crop_flip(x, offsets[sl], flips[sl], self.pad)
        x = (x.to(self._mean.dtype) - self._mean) / self._std
        return x.contiguous(memory_format=self.memory_format)

    def state_dict(self) -> Dict[str, Any]:
        """Generator state and number of epochs started: after loading it, the next ``iter()``
        gives exactly the epoch the saved loader's next ``iter()`` would have given. (A
        checkpoint taken mid-epoch therefore resumes at the following epoch.)"""
        return {"epoch": self.epoch, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])


class _Order(torch.utils.data.Sampler):
    """The current epoch's batches (lists of positions: this rank's slices); a persistent
    ``DataLoader`` reads them anew every epoch."""

    def __init__(self) -> None:
        self.batches: list = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class StreamLoader(BatchLoader):
    """:class:`BatchLoader` over a :class:`~nas.data.stream.StreamSet`: the images of each batch
    are read by a ``DataLoader`` with ``workers`` processes instead of gathered from memory; the
    order, crops, flips, normalisation and ``state_dict`` are the same (so are the batches). A
    data-parallel rank reads only its slice of each batch."""

    def __init__(self, source: Any, positions: torch.Tensor, *, batch_size: int, shuffle: bool,
                 augment: bool, mean: Sequence[float], std: Sequence[float], seed: int = 0,
                 drop_last: bool = False, device: Any = "cpu", workers: int = 0,
                 shard: Tuple[int, int] = (0, 1), channels_last: bool = False):
        from .stream import _Items, _collate
        self.device = torch.device(device)
        self.source, self.positions, self.workers = source, positions, workers
        self._setup(len(positions), source.shape[-2], batch_size=batch_size, shuffle=shuffle, augment=augment,
                    mean=mean, std=std, seed=seed, drop_last=drop_last, shard=shard,
                    channels_last=channels_last)
        self._order = _Order()
        items = _Items(source.dataset, source.indices[positions].tolist(), source.resize)
        self._reader = torch.utils.data.DataLoader(
            items, batch_sampler=self._order, num_workers=workers, collate_fn=_collate,
            persistent_workers=workers > 0, pin_memory=self.device.type == "cuda")

    def eval_loader(self, shard: Tuple[int, int] = (0, 1)) -> "StreamLoader":
        return StreamLoader(self.source, self.positions, batch_size=self.batch_size, shuffle=False, augment=False,
                            mean=self.mean, std=self.std, device=self.device, workers=self.workers, shard=shard,
                            channels_last=self.channels_last)

    def _batches(self, order: torch.Tensor, offsets: Optional[torch.Tensor],
                 flips: Optional[torch.Tensor]) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        from .stream import _raise
        slices = list(self._slices())
        positions = order.cpu().tolist()
        # a rank's slice of a short last evaluation batch may be empty: nothing to read
        self._order.batches = [positions[sl] for sl in slices if sl.stop > sl.start]
        reader = iter(self._reader)
        for sl in slices:
            if sl.stop == sl.start:
                empty = torch.zeros((0, *self.source.shape), dtype=torch.uint8, device=self.device)
                yield self._finish(empty, offsets, flips, sl), torch.zeros(0, dtype=torch.int64, device=self.device)
                continue
            x, y = _raise(next(reader), "data")
            x = x.to(self.device, non_blocking=True)
            yield self._finish(x, offsets, flips, sl), y.to(self.device)
