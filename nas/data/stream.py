"""Image sets read item by item: any torchvision-style dataset, in memory or streamed.

A user's dataset (``nas.register_dataset``, or a ``Dataset`` handed to ``nas.search`` /
``nas.retrain``) only needs ``len(ds)`` and ``ds[i] -> (image, label)``; an image is a PIL image,
a ``uint8`` or ``[0, 1]`` float tensor ``[C, H, W]`` / ``[H, W]``, or a numpy ``[H, W, C]`` /
``[H, W]`` array. Grayscale stays one channel, images need not be square (all of one set share
one size, or ``data.resize`` makes them ``R×R``), and the classes are ``ds.classes`` or
``0 .. max label``.

Two ways to feed them to a search or a retraining:

* in memory (``data.stream: false``): every image decoded once into a ``uint8 [N, C, H, W]``
  tensor, :class:`~nas.data.datasets.ImageSet` — ``N·C·H·W`` bytes (CIFAR-10: 150 MB);
* streamed (``data.stream: true``): :class:`StreamSet` keeps the dataset and
  :class:`StreamLoader` reads each batch through a ``DataLoader`` with ``data.workers`` processes
  — about ``batch_size · C·H·W · 4`` bytes per batch in flight, ``workers · 2`` batches ahead.

Either way the batches are the same: each epoch's order, crops and flips are drawn at its start
from the loader's own generator (:class:`~nas.data.loader.BatchLoader`), workers only decode, so a
seed fixes every batch and a resumed run sees the same data order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from .sets import ImageSet, channel_stats, stratified_subset

STATS_ITEMS = 1000   # items a streamed set's per-channel mean/std is estimated from
DECODE_BATCH = 256   # items per DataLoader batch when a dataset is decoded into memory


def to_uint8(image: Any, resize: Optional[int] = None) -> torch.Tensor:
    """``uint8 [C, H, W]`` of one dataset image (see the module docstring), ``R×R`` when ``resize``."""
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL
        from PIL import Image
        if image.mode.startswith("I;16"):
            a = np.asarray(image, dtype=np.float64) * (255 / 65535)
        elif image.mode in ("I", "F"):
            a = np.asarray(image, dtype=np.float64)
            a = a * (255 / max(float(a.max()), 1.0))
        else:
            im = image if image.mode in ("L", "RGB") else image.convert("L" if image.mode in ("1", "LA") else "RGB")
            if resize is not None and im.size != (resize, resize):
                im = im.resize((resize, resize), Image.BILINEAR)
            a = np.asarray(im)
        t = torch.from_numpy(np.ascontiguousarray(np.round(a).clip(0, 255).astype(np.uint8)))
        t = t[None] if t.dim() == 2 else t.permute(2, 0, 1)
    else:
        if isinstance(image, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(image))
            if t.dim() == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3, 4):
                t = t.permute(2, 0, 1)   # numpy images are H, W, C
        elif isinstance(image, torch.Tensor):
            t = image.detach().cpu()
        else:
            raise DataError(f"a dataset image must be a PIL image, a tensor or a numpy array, got {type(image).__name__}")
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3:
            raise DataError(f"a dataset image must be [C, H, W] or [H, W], got shape {tuple(t.shape)}")
        if t.is_floating_point():
            t = (t.float() * 255).round().clamp(0, 255).to(torch.uint8)  # float images are in [0, 1]
        elif t.dtype != torch.uint8:
            t = t.clamp(0, 255).to(torch.uint8)
    if resize is not None and tuple(t.shape[-2:]) != (resize, resize):
        t = F.interpolate(t[None].float(), size=(resize, resize), mode="bilinear", align_corners=False,
                          antialias=True).round().clamp(0, 255).to(torch.uint8)[0]
    return t.contiguous()


def to_label(label: Any) -> int:
    try:
        return int(label)
    except (TypeError, ValueError):
        raise DataError(f"a dataset label must be a class index, got {label!r}") from None


@dataclass
class _Failure:
    """What a worker hands back instead of raising: the main process turns it into one line."""
    message: str


class _Items(torch.utils.data.Dataset):
    """``dataset[indices[i]]`` as ``(uint8 [C, H, W], label)``, failures as :class:`_Failure`."""

    def __init__(self, dataset: Any, indices: Sequence[int], resize: Optional[int]):
        self.dataset, self.indices, self.resize = dataset, list(indices), resize

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        j = self.indices[i]
        try:
            item = self.dataset[j]
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise DataError(f"dataset[i] must be (image, label), got {type(item).__name__}")
            return to_uint8(item[0], self.resize), to_label(item[1])
        except Exception as e:  # the user's dataset failed: one line, raised in the main process
            return _Failure(f"item {j}: {type(e).__name__}: {' '.join(str(e).split())[:160]}")


def _collate(items: List[Any]) -> Any:
    for it in items:
        if isinstance(it, _Failure):
            return it
    shapes = {tuple(x.shape) for x, _ in items}
    if len(shapes) > 1:
        return _Failure(f"images of different sizes {sorted(shapes)[:2]}; set data.resize=<size>")
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)


def _raise(batch: Any, where: str) -> Any:
    if isinstance(batch, _Failure):
        raise DataError(f"{where}: {batch.message}")
    return batch


def read_batches(dataset: Any, indices: Sequence[int], resize: Optional[int], workers: int,
                 batch_size: int = DECODE_BATCH, where: str = "dataset") -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """``(uint8 [B, C, H, W], labels [B])`` of ``dataset[indices]`` in that order."""
    loader = torch.utils.data.DataLoader(_Items(dataset, indices, resize), batch_size=batch_size, shuffle=False,
                                         num_workers=workers, collate_fn=_collate)
    for batch in loader:
        yield _raise(batch, where)


def class_names(dataset: Any, labels: Optional[torch.Tensor]) -> List[str]:
    classes = getattr(dataset, "classes", None)
    if classes is not None:
        return [str(c) for c in classes]
    if labels is None or labels.numel() == 0:
        raise DataError("the dataset has no 'classes' and no labels to count them from")
    return [str(c) for c in range(int(labels.max()) + 1)]


def known_labels(dataset: Any) -> Optional[torch.Tensor]:
    """The labels a dataset lists without decoding its images (torchvision's ``targets``)."""
    for attr in ("targets", "labels"):
        v = getattr(dataset, attr, None)
        if v is not None and len(v) == len(dataset):
            return torch.as_tensor(np.asarray(v), dtype=torch.int64)
    return None


def decode_into_memory(dataset: Any, *, resize: Optional[int], subset: Optional[int], seed: int,
                       workers: int) -> ImageSet:
    """The whole (subset of the) dataset as an :class:`~nas.data.datasets.ImageSet`."""
    labels = known_labels(dataset)
    keep = stratified_subset(labels, subset, seed) if labels is not None else _first(len(dataset), subset, seed)
    parts = list(read_batches(dataset, keep.tolist(), resize, workers))
    if not parts:
        raise DataError("the dataset is empty")
    images, ys = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    mean, std = channel_stats(images)
    return ImageSet(images, ys, class_names(dataset, ys), mean, std)


def _first(n: int, subset: Optional[int], seed: int) -> torch.Tensor:
    """Without labels to stratify by: ``subset`` items of a seeded permutation, ascending."""
    if subset is None or subset >= n:
        return torch.arange(n)
    return torch.sort(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:subset]).values


@dataclass
class StreamSet:
    """A dataset read on demand: ``dataset[indices[i]]``, with its classes, image shape and the
    per-channel mean/std (estimated on :data:`STATS_ITEMS` items)."""
    dataset: Any
    indices: torch.Tensor
    labels: Optional[torch.Tensor]
    classes: List[str]
    shape: Tuple[int, ...]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    resize: Optional[int] = None

    def __len__(self) -> int:
        return len(self.indices)


def stream_set(dataset: Any, *, resize: Optional[int], subset: Optional[int], seed: int, workers: int) -> StreamSet:
    if len(dataset) == 0:
        raise DataError("the dataset is empty")
    labels = known_labels(dataset)
    keep = stratified_subset(labels, subset, seed) if labels is not None else _first(len(dataset), subset, seed)
    probe = _first(len(keep), STATS_ITEMS, seed)
    parts = list(read_batches(dataset, keep[probe].tolist(), resize, workers))
    images = torch.cat([p[0] for p in parts])
    mean, std = channel_stats(images)
    kept_labels = labels[keep] if labels is not None else None
    classes = class_names(dataset, kept_labels if kept_labels is not None else torch.cat([p[1] for p in parts]))
    return StreamSet(dataset, keep, kept_labels, classes, tuple(images.shape[1:]), mean, std, resize)


def dataset_source(dataset: Any, *, stream: bool, resize: Optional[int], subset: Optional[int], seed: int,
                   workers: int) -> Any:
    """An :class:`ImageSet` or :class:`StreamSet` of a torchvision-style dataset."""
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise DataError(f"a dataset needs len() and [i] -> (image, label); got {type(dataset).__name__}")
    if stream:
        return stream_set(dataset, resize=resize, subset=subset, seed=seed, workers=workers)
    return decode_into_memory(dataset, resize=resize, subset=subset, seed=seed, workers=workers)

