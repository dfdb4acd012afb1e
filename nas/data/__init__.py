"""Data for search and evaluation: uint8 image sets in memory (or streamed, :mod:`nas.data.stream`)
and tensor batch loaders.

Search (DARTS, Liu et al. 2019; NAS-Bench-201, Dong & Yang 2020) splits the *train* split in two:
one part trains the weights, the other is the validation set the architecture parameters are
optimised on; both are shuffled and augmented, as in the papers' search code. Evaluation trains on
the whole train split and tests on the held-out test split without augmentation. Every loader is
normalised with the train split's mean/std.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

import torch

from ..errors import DataError
from .datasets import DATASETS, ImageSet, load_dataset, require_classes
from .loader import BatchLoader, StreamLoader, split_indices
from .stream import StreamSet, dataset_source

__all__ = ["ImageSet", "StreamSet", "load_dataset", "split_indices", "BatchLoader", "StreamLoader", "DATASETS",
           "build_search_loaders", "build_eval_loaders"]

# the second loader gets its own random stream, different from the first's for any seed
_SECOND_STREAM = 1_000_003

Source = Union[ImageSet, StreamSet]


def _info(data: Source, **sizes: int) -> Dict[str, Any]:
    return dict(num_classes=len(data.classes), shape=tuple(data.shape), classes=data.classes,
                mean=data.mean, std=data.std, **sizes)


def _load(dataset: str, given: Any, split: str, **kw: Any) -> Source:
    """The split of registered ``dataset``, or of ``given`` (a dataset object: a torchvision-style
    ``Dataset``, an ``ImageSet``, or ``{"train": ..., "test": ...}`` of them)."""
    if given is None:
        return load_dataset(dataset, split=split, **kw)
    if isinstance(given, dict):
        if split not in given:
            raise DataError(f"the datasets given have no '{split}' split; pass {{'train': ..., 'test': ...}}")
        given = given[split]
    if isinstance(given, (ImageSet, StreamSet)):
        return given
    return dataset_source(given, stream=kw["stream"], resize=kw["resize"], subset=kw["subset"], seed=kw["seed"],
                          workers=kw["workers"])


def _loader(data: Source, idx: Optional[torch.Tensor], *, workers: int, **common: Any) -> BatchLoader:
    if isinstance(data, StreamSet):
        return StreamLoader(data, idx if idx is not None else torch.arange(len(data)), workers=workers, **common)
    if idx is None:
        return BatchLoader(data.images, data.labels, **common)
    return BatchLoader(data.images[idx], data.labels[idx], **common)


def build_search_loaders(dataset: str, *, root: Optional[str], download: bool,
                         resize: Optional[int], subset: Optional[int], train_portion: float,
                         batch_size: int, workers: int, seed: int, device: Any,
                         augment: bool = True, stream: bool = False, given: Any = None,
                         ) -> Tuple[BatchLoader, BatchLoader, Dict[str, Any]]:
    """(weight-training loader, architecture-validation loader, info), both from the train split.
    ``stream``: read the images batch by batch (:class:`StreamLoader`) instead of holding them in
    memory; ``given``: a dataset object instead of the registered ``dataset``."""
    data = _load(dataset, given, "train", root=root, download=download, resize=resize, subset=subset,
                 seed=seed, workers=workers, stream=stream)
    require_classes(data.labels, data.classes, dataset)
    train_idx, val_idx = split_indices(len(data), train_portion, seed)
    common = dict(batch_size=batch_size, shuffle=True, augment=augment, mean=data.mean,
                  std=data.std, device=device, workers=workers)
    train = _loader(data, train_idx, seed=seed, **common)
    val = _loader(data, val_idx, seed=seed + _SECOND_STREAM, **common)
    return train, val, _info(data, n_train=len(train_idx), n_val=len(val_idx))


def build_eval_loaders(dataset: str, *, root: Optional[str], download: bool,
                       resize: Optional[int], subset: Optional[int], batch_size: int,
                       workers: int, seed: int, device: Any, augment: bool = True,
                       test_subset: Optional[int] = None, stream: bool = False, given: Any = None,
                       ) -> Tuple[BatchLoader, BatchLoader, Dict[str, Any]]:
    """(loader on the full train split, loader on the test split, info).

    ``subset`` limits the train split only; ``test_subset`` limits the test split (default: all).
    ``stream``, ``given``: as for :func:`build_search_loaders` (``given``: ``{"train", "test"}``).
    """
    kw = dict(root=root, download=download, resize=resize, seed=seed, workers=workers, stream=stream)
    train = _load(dataset, given, "train", subset=subset, **kw)
    require_classes(train.labels, train.classes, dataset)
    test = _load(dataset, given, "test", subset=test_subset, **kw)
    if tuple(test.shape) != tuple(train.shape) or test.classes != train.classes:
        raise DataError(f"train and test splits differ (shape {train.shape} vs {test.shape}, "
                        f"classes {len(train.classes)} vs {len(test.classes)}); give both the "
                        f"same class folders, or set data.resize=<size>")
    common = dict(batch_size=batch_size, mean=train.mean, std=train.std, device=device, workers=workers)
    train_loader = _loader(train, None, shuffle=True, augment=augment, seed=seed, **common)
    test_loader = _loader(test, None, shuffle=False, augment=False, **common)
    return train_loader, test_loader, _info(train, n_train=len(train), n_test=len(test))
