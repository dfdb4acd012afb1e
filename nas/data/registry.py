"""One registry of datasets, whose entries declare their kind, and the kinds' own registry.

A dataset (``data.dataset``) is a loader function in :data:`DATASETS` with two attributes set
by :func:`register_dataset`: its ``kind`` (``"image"``, ``"tabular"``, ``"maze"``, or a user's)
and its ``Options`` (a dataclass of the ``data.*`` keys it reads besides its kind's; none: the
kind's alone). A kind (:class:`DataKind`, in :data:`KINDS`) declares the ``data.*`` keys every
dataset of it takes and builds a search's loaders; the spaces name the kind of data they take
(``SearchSpace.data_kind``). The search asks the dataset's kind for its loaders, so a new kind
lives in its own module: its ``DataKind``, its datasets, its tests. (Importing this module
imports :mod:`nas.data` first, which registers the built-in kinds and datasets.)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..registry import USER_HINT, Registry

DATASETS = Registry("dataset", USER_HINT.format(kind="dataset"))
KINDS = Registry("dataset kind")
IMAGE = "image"   # datasets registered without a kind are images (nas.register_dataset's contract)
GIVEN = "<python>"  # data.dataset of a run handed a dataset object (nas.search(dataset=...)): images


@dataclass(frozen=True)
class DataKind:
    """A kind of data: ``Options``, the ``data.*`` keys every dataset of it takes (a dataclass),
    and ``search_loaders(name, data, *, seed, device, world, given, channels_last) -> (train
    loader, validation loader, info)`` for the dataset ``name`` and the config's ``data``
    section; ``info`` has at least ``num_classes`` and ``shape`` (see :mod:`nas.data`).
    ``tensors``: whether a batch's inputs are one tensor of ``info["shape"]`` per sample (the
    search then checks that the supernet takes that size); a maze batch is not."""
    name: str
    Options: type
    search_loaders: Callable[..., Tuple[Any, Any, Dict[str, Any]]]
    tensors: bool = True


def register_kind(kind: DataKind) -> DataKind:
    return KINDS.register(kind.name, kind)


def register_dataset(name: str, fn: Optional[Callable] = None, *, kind: str = IMAGE,
                     options: Optional[type] = None) -> Any:
    """Register loader ``fn`` as dataset ``name`` of ``kind``, reading the ``data.*`` keys of
    ``options`` besides its kind's; as a decorator without ``fn``."""
    def add(f: Callable) -> Callable:
        f.kind = kind
        if options is not None:
            f.Options = options
        return DATASETS.register(name, f)
    return add(fn) if fn is not None else add


def kind_of(name: str) -> DataKind:
    """The :class:`DataKind` of dataset ``name`` (a one-line error for an unknown one)."""
    if name == GIVEN:
        return KINDS.get(IMAGE)
    return KINDS.get(getattr(DATASETS.get(name, "data.dataset"), "kind", IMAGE), f"data.dataset={name}: kind")


def dataset_options(name: str) -> Tuple[type, ...]:
    """The ``data.*`` option dataclasses of dataset ``name``: its kind's, then its own."""
    from ..options import NoOptions
    kind = kind_of(name)
    return kind.Options, (NoOptions if name == GIVEN else getattr(DATASETS.get(name), "Options", NoOptions))


def own_options(name: str, section: Any) -> Any:
    """Dataset ``name``'s own declared options (its ``Options``), read from a config's ``data``
    section; None when it declares none (its kind's keys are all it reads)."""
    opts = None if name == GIVEN else getattr(DATASETS.get(name, "data.dataset"), "Options", None)
    if opts is None:
        return None
    return opts(**{f.name: getattr(section, f.name) for f in dataclasses.fields(opts)})


def datasets_of(kind: str) -> List[str]:
    """The names of the registered datasets of ``kind``."""
    return [n for n in DATASETS.names() if getattr(DATASETS.get(n), "kind", IMAGE) == kind]
