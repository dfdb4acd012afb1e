"""Data for search and evaluation: in-memory uint8 image sets and tensor batch loaders.

Search (DARTS, Liu et al. 2019; NAS-Bench-201, Dong & Yang 2020) splits the *train* split in two:
one part trains the weights, the other is the validation set the architecture parameters are
optimised on; both are shuffled and augmented, as in the papers' search code. Evaluation trains on
the whole train split and tests on the held-out test split without augmentation. Every loader is
normalised with the train split's mean/std.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

from ..errors import DataError
from .datasets import DATASETS, ImageSet, load_dataset
from .loader import BatchLoader, split_indices

__all__ = ["ImageSet", "load_dataset", "split_indices", "BatchLoader", "DATASETS",
           "build_search_loaders", "build_eval_loaders"]

# the second loader gets its own random stream, different from the first's for any seed
_SECOND_STREAM = 1_000_003


def _info(data: ImageSet, **sizes: int) -> Dict[str, Any]:
    return dict(num_classes=len(data.classes), shape=data.shape, classes=data.classes,
                mean=data.mean, std=data.std, **sizes)


Share = Callable[[Callable[[], Dict[str, Any]], str], Dict[str, Any]]


def _built_here(build: Callable[[], Dict[str, Any]], key: str) -> Dict[str, Any]:
    return build()


def build_search_loaders(dataset: str, *, root: Optional[str], download: bool,
                         resize: Optional[int], subset: Optional[int], train_portion: float,
                         batch_size: int, workers: int, seed: int, device: Any,
                         augment: bool = True, shard: Tuple[int, int] = (0, 1), share: Share = _built_here,
                         channels_last: bool = False) -> Tuple[BatchLoader, BatchLoader, Dict[str, Any]]:
    """(weight-training loader, architecture-validation loader, info), both from the train split.

    Data parallel: ``shard`` is (rank, world) (each rank iterates its slice of every global batch
    of ``batch_size``); ``share(build, key)`` runs ``build`` once per machine and hands its
    tensors to the machine's other ranks (:meth:`nas.engine.distributed.World.node_shared`)."""
    def build() -> Dict[str, Any]:
        data = load_dataset(dataset, root=root, download=download, resize=resize, subset=subset,
                            split="train", seed=seed, workers=workers)
        train_idx, val_idx = split_indices(len(data), train_portion, seed)
        return {"train": (data.images[train_idx], data.labels[train_idx]),
                "val": (data.images[val_idx], data.labels[val_idx]),
                "info": _info(data, n_train=len(train_idx), n_val=len(val_idx))}

    parts = share(build, "search-data")
    info = parts["info"]
    common = dict(batch_size=batch_size, shuffle=True, augment=augment, mean=info["mean"],
                  std=info["std"], device=device, shard=shard, channels_last=channels_last)
    train = BatchLoader(*parts["train"], seed=seed, **common)
    val = BatchLoader(*parts["val"], seed=seed + _SECOND_STREAM, **common)
    return train, val, info


def build_eval_loaders(dataset: str, *, root: Optional[str], download: bool,
                       resize: Optional[int], subset: Optional[int], batch_size: int,
                       workers: int, seed: int, device: Any, augment: bool = True,
                       test_subset: Optional[int] = None, shard: Tuple[int, int] = (0, 1),
                       share: Share = _built_here, channels_last: bool = False,
                       ) -> Tuple[BatchLoader, BatchLoader, Dict[str, Any]]:
    """(loader on the full train split, loader on the test split, info).

    ``subset`` limits the train split only; ``test_subset`` limits the test split (default: all).
    ``shard``, ``share``: as for :func:`build_search_loaders` (both loaders are sharded).
    """
    def build() -> Dict[str, Any]:
        train = load_dataset(dataset, root=root, download=download, resize=resize, subset=subset,
                             split="train", seed=seed, workers=workers)
        test = load_dataset(dataset, root=root, download=download, resize=resize, subset=test_subset,
                            split="test", seed=seed, workers=workers)
        if test.shape != train.shape or test.classes != train.classes:
            raise DataError(f"train and test splits differ (shape {train.shape} vs {test.shape}, "
                            f"classes {len(train.classes)} vs {len(test.classes)}); give both the "
                            f"same class folders, or set data.resize=<size>")
        return {"train": (train.images, train.labels), "test": (test.images, test.labels),
                "info": _info(train, n_train=len(train), n_test=len(test))}

    parts = share(build, "eval-data")
    info = parts["info"]
    common = dict(batch_size=batch_size, mean=info["mean"], std=info["std"], device=device, shard=shard,
                  channels_last=channels_last)
    train_loader = BatchLoader(*parts["train"], shuffle=True, augment=augment, seed=seed, **common)
    test_loader = BatchLoader(*parts["test"], shuffle=False, augment=False, **common)
    return train_loader, test_loader, info

