"""Data for search and evaluation: uint8 image sets in memory (or streamed, :mod:`nas.data.stream`)
and tensor batch loaders.

Search (DARTS, Liu et al. 2019; NAS-Bench-201, Dong & Yang 2020) splits the *train* split in two:
one part trains the weights, the other is the validation set the architecture parameters are
optimised on; both are shuffled and augmented, as in the papers' search code. Evaluation trains on
the whole train split and tests on the held-out test split without augmentation. Every loader is
normalised with the train split's mean/std.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

from dataclasses import dataclass

from ..bounds import ranged
from ..errors import DataError
from ..options import option
from .datasets import DATASETS, ImageSet, load_dataset, require_classes
from .registry import KINDS, DataKind, dataset_options, datasets_of, kind_of, own_options, register_dataset, register_kind
from .loader import BatchLoader, StreamLoader, split_indices
from .stream import StreamSet, dataset_source

__all__ = ["ImageSet", "StreamSet", "load_dataset", "split_indices", "BatchLoader", "StreamLoader", "DATASETS",
           "KINDS", "DataKind", "register_dataset", "register_kind", "kind_of", "dataset_options", "datasets_of",
           "build_search_loaders", "build_eval_loaders"]

# the second loader gets its own random stream, different from the first's for any seed
_SECOND_STREAM = 1_000_003

Source = Union[ImageSet, StreamSet]
# share(build, key): build() once per machine, its tensors mapped by the machine's other ranks
Share = Callable[[Callable[[], Dict[str, Any]], str], Dict[str, Any]]


def _built_here(build: Callable[[], Dict[str, Any]], key: str) -> Dict[str, Any]:
    return build()


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


def _streamed(stream: bool, given: Any) -> bool:
    """Whether the data is read batch by batch (then nothing is decoded up front to share)."""
    parts = given.values() if isinstance(given, dict) else [given]
    return stream or any(isinstance(g, StreamSet) for g in parts)


def _prepared(build: Callable[[], Dict[str, Any]], share: Share, key: str, stream: bool, given: Any
              ) -> Dict[str, Any]:
    """``build()``: once per machine through ``share`` for in-memory images, which the loaders
    then hold as views of one shared copy; here for streamed data (each rank reads its batches)."""
    return build() if _streamed(stream, given) else share(build, key)


def _part(data: Source, idx: Optional[torch.Tensor]) -> Tuple[Source, Optional[torch.Tensor]]:
    """``data`` restricted to ``idx``: in-memory images are gathered (the copy the loader holds),
    a streamed set keeps its positions."""
    if isinstance(data, StreamSet) or idx is None:
        return data, idx
    return ImageSet(data.images[idx], data.labels[idx], data.classes, data.mean, data.std), None


def _loader(part: Tuple[Source, Optional[torch.Tensor]], *, workers: int, **common: Any) -> BatchLoader:
    data, idx = part
    if isinstance(data, StreamSet):
        return StreamLoader(data, idx if idx is not None else torch.arange(len(data)), workers=workers, **common)
    return BatchLoader(data.images, data.labels, **common)


def build_search_loaders(dataset: str, *, root: Optional[str], download: bool,
                         resize: Optional[int], subset: Optional[int], train_portion: float,
                         batch_size: int, workers: int, seed: int, device: Any,
                         augment: bool = True, stream: bool = False, given: Any = None,
                         shard: Tuple[int, int] = (0, 1), share: Share = _built_here,
                         channels_last: bool = False, options: Any = None,
                         ) -> Tuple[BatchLoader, BatchLoader, Dict[str, Any]]:
    """(weight-training loader, architecture-validation loader, info), both from the train split.
    ``stream``: read the images batch by batch (:class:`StreamLoader`) instead of holding them in
    memory; ``given``: a dataset object instead of the registered ``dataset``; ``options``: the
    dataset's own declared options (:func:`nas.data.registry.own_options`).

    Data parallel: ``shard`` is (rank, world) (each rank iterates its slice of every global batch
    of ``batch_size``); ``share(build, key)`` runs ``build`` once per machine and hands its
    tensors to the machine's other ranks (:meth:`nas.engine.distributed.World.node_shared`)."""
    def build() -> Dict[str, Any]:
        data = _load(dataset, given, "train", root=root, download=download, resize=resize, subset=subset,
                     seed=seed, workers=workers, stream=stream, options=options)
        require_classes(data.labels, data.classes, dataset)
        train_idx, val_idx = split_indices(len(data), train_portion, seed)
        return {"train": _part(data, train_idx), "val": _part(data, val_idx),
                "info": _info(data, n_train=len(train_idx), n_val=len(val_idx))}

    parts = _prepared(build, share, "search-data", stream, given)
    info = parts["info"]
    common = dict(batch_size=batch_size, shuffle=True, augment=augment, mean=info["mean"],
                  std=info["std"], device=device, workers=workers, shard=shard, channels_last=channels_last)
    train = _loader(parts["train"], seed=seed, **common)
    val = _loader(parts["val"], seed=seed + _SECOND_STREAM, **common)
    return train, val, info


def build_eval_loaders(dataset: str, *, root: Optional[str], download: bool,
                       resize: Optional[int], subset: Optional[int], batch_size: int,
                       workers: int, seed: int, device: Any, augment: bool = True,
                       test_subset: Optional[int] = None, stream: bool = False, given: Any = None,
                       shard: Tuple[int, int] = (0, 1), share: Share = _built_here, channels_last: bool = False,
                       options: Any = None) -> Tuple[BatchLoader, BatchLoader, Dict[str, Any]]:
    """(loader on the full train split, loader on the test split, info).

    ``subset`` limits the train split only; ``test_subset`` limits the test split (default: all).
    ``stream``, ``given``, ``options``: as for :func:`build_search_loaders` (``given``: ``{"train", "test"}``);
    ``shard``, ``share``: likewise (both loaders are sharded).
    """
    def build() -> Dict[str, Any]:
        kw = dict(root=root, download=download, resize=resize, seed=seed, workers=workers, stream=stream,
                  options=options)
        train = _load(dataset, given, "train", subset=subset, **kw)
        require_classes(train.labels, train.classes, dataset)
        test = _load(dataset, given, "test", subset=test_subset, **kw)
        if tuple(test.shape) != tuple(train.shape) or test.classes != train.classes:
            raise DataError(f"train and test splits differ (shape {train.shape} vs {test.shape}, "
                            f"classes {len(train.classes)} vs {len(test.classes)}); give both the "
                            f"same class folders, or set data.resize=<size>")
        return {"train": _part(train, None), "test": _part(test, None),
                "info": _info(train, n_train=len(train), n_test=len(test))}

    parts = _prepared(build, share, "eval-data", stream, given)
    info = parts["info"]
    common = dict(batch_size=batch_size, mean=info["mean"], std=info["std"], device=device, workers=workers,
                  shard=shard, channels_last=channels_last)
    train_loader = _loader(parts["train"], shuffle=True, augment=augment, seed=seed, **common)
    test_loader = _loader(parts["test"], shuffle=False, augment=False, **common)
    return train_loader, test_loader, info


@dataclass
class ImageOptions:
    """The ``data.*`` keys of every image dataset."""
    root: Optional[str] = option(None, help="where the dataset lives (a folder, an archive)")
    download: bool = option(False, help="download a missing dataset (nothing is downloaded otherwise)")
    resize: Optional[int] = ranged(None, ge=1, help="image side after resizing (null: as stored)")
    subset: Optional[int] = ranged(None, ge=1, help="keep this many train images, class-balanced (null: all)")
    workers: int = ranged(0, ge=0, help="decoding processes of a streamed dataset")
    stream: bool = option(False, help="read images batch by batch (DataLoader) instead of in memory")
    augment: bool = option(True, help="random crop and horizontal flip of the training batches")


def image_search_loaders(name: str, d: Any, *, seed: int, device: torch.device, world: Any, given: Any = None,
                         channels_last: bool = False) -> Tuple[BatchLoader, BatchLoader, Dict[str, Any]]:
    """The ``image`` kind's search loaders (:func:`build_search_loaders`) for a config's ``data``."""
    return build_search_loaders(name, root=d.root, download=d.download, resize=d.resize, subset=d.subset,
                                train_portion=d.train_portion, batch_size=d.batch_size, workers=d.workers,
                                seed=seed, device=device, augment=d.augment, stream=d.stream, given=given,
                                shard=world.shard, share=world.node_shared, channels_last=channels_last,
                                options=own_options(name, d))


register_kind(DataKind("image", ImageOptions, image_search_loaders))

from . import tabular, maze  # noqa: E402,F401  (their kinds and datasets register on import)
from ..config import register_entry_options  # noqa: E402

register_entry_options("data", dataset_options, DATASETS.names)
