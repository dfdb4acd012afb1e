"""Tabular binary-feature data for rule learners (the ``dnf`` space): a synthetic DNF task and
scikit-learn's bundled breast-cancer set binarised by thresholds; a small tensor loader.

* ``synthetic_dnf``: K random bits per sample; the label is a random ground-truth DNF of
  ``clauses`` conjunctions of ``width`` distinct literals (each negated with probability 1/2);
  train labels are flipped with probability ``noise`` (the test split stays clean, so test
  accuracy measures how well the rule was recovered). The seed fixes the rule and the samples.
* ``breast_cancer``: 569 samples, 30 real features (bundled, no download); a fixed 20 % test split;
  each feature is binarised at the given quantiles of the *train* split (``"mean radius > 13.37"``).

Loaders yield ``(x float32 [B, K] in {0, 1}, y int64 [B])`` on the device; their interface matches
:class:`~nas.data.loader.BatchLoader` (``len``, ``state_dict``/``load_state_dict``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from ..bounds import ranged
from ..errors import ConfigError, DataError
from ..options import NoOptions
from .datasets import require_classes
from .loader import shard_bounds, sharded_len, split_indices
from .registry import DATASETS, DataKind, register_dataset, register_kind

TABULAR = "tabular"
TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0          # breast_cancer: the held-out test split is the same for every run seed
_TEST_STREAM = 7_919         # synthetic test samples come from their own random stream
_SECOND_STREAM = 1_000_003

Literal_ = Tuple[int, bool]  # (feature, negated)


@dataclass
class TabularOptions:
    """Options of the tabular datasets (the ``data.*`` keys of ``synthetic_dnf`` and ``breast_cancer``; each declares its own)."""

    features: int = 10
    clauses: int = 3
    width: int = 3
    noise: float = 0.0
    samples: int = 2000
    quantiles: Sequence[float] = (0.25, 0.5, 0.75)


@dataclass
class SyntheticDNFOptions:
    """``data.*`` of ``synthetic_dnf``."""
    features: int = ranged(10, ge=1, help="K binary features")
    clauses: int = ranged(3, ge=1, help="conjunctions of the ground-truth rule")
    width: int = ranged(3, ge=1, le="features", help="literals per conjunction")
    noise: float = ranged(0.0, ge=0, le=1, help="probability of flipping a train label")
    samples: int = ranged(2000, ge=2, help="train + test samples")


@dataclass
class BreastCancerOptions:
    """``data.*`` of ``breast_cancer``."""
    quantiles: List[float] = ranged([0.25, 0.5, 0.75], gt=0, lt=1, help="thresholds binarising each feature")


@dataclass
class TabularSet:
    x: torch.Tensor                    # float32 [n, K] in {0, 1}
    y: torch.Tensor                    # int64 [n]
    features: List[str]
    classes: List[str]
    rule: Optional[List[List[Literal_]]] = field(default=None)   # ground truth (synthetic only)

    def __len__(self) -> int:
        return self.y.shape[0]


def random_dnf(features: int, clauses: int, width: int, generator: torch.Generator) -> List[List[Literal_]]:
    """``clauses`` conjunctions of ``width`` distinct features, each negated with probability 1/2."""
    out = []
    for _ in range(clauses):
        feats = torch.randperm(features, generator=generator)[:width].sort().values.tolist()
        negs = (torch.rand(width, generator=generator) < 0.5).tolist()
        out.append(list(zip(feats, negs)))
    return out


def eval_dnf(x: torch.Tensor, rule: Sequence[Sequence[Literal_]]) -> torch.Tensor:
    """Bool ``[n]``: the DNF ``rule`` on binary inputs ``x [n, K]``."""
    bits = x > 0.5
    y = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for clause in rule:
        c = torch.ones_like(y)
        for k, neg in clause:
            c &= ~bits[:, k] if neg else bits[:, k]
        y |= c
    return y


def dnf_string(rule: Sequence[Sequence[Literal_]], features: Sequence[str]) -> str:
    return " OR ".join("(" + " AND ".join(("NOT " if n else "") + features[k] for k, n in c) + ")"
                       for c in rule) or "FALSE"


@register_dataset("synthetic_dnf", kind=TABULAR, options=SyntheticDNFOptions)
def synthetic_dnf(*, split: str, seed: int, options: TabularOptions) -> TabularSet:
    """K random bits per sample labelled by a random ground-truth DNF (see the module docstring)."""
    o = options
    if not (o.features >= 1 and o.clauses >= 1 and 1 <= o.width <= o.features):
        raise ConfigError(f"data: need features >= 1, clauses >= 1 and 1 <= width <= features; got "
                          f"features={o.features}, clauses={o.clauses}, width={o.width}")
    if not 0.0 <= o.noise < 0.5 or o.samples < 2:
        raise ConfigError(f"data: need 0 <= noise < 0.5 and samples >= 2; got noise={o.noise}, "
                          f"samples={o.samples}")
    g = torch.Generator().manual_seed(seed)
    rule = random_dnf(o.features, o.clauses, o.width, g)
    n_test = max(1, int(o.samples * TEST_FRACTION))
    n = o.samples - n_test if split == "train" else n_test
    gs = g if split == "train" else torch.Generator().manual_seed(seed + _TEST_STREAM)
    x = torch.randint(0, 2, (n, o.features), generator=gs).float()
    y = eval_dnf(x, rule)
    if split == "train" and o.noise > 0:
        y ^= torch.rand(n, generator=gs) < o.noise
    names = [f"x{k}" for k in range(o.features)]
    return TabularSet(x, y.long(), names, ["0", "1"], rule)


@register_dataset("breast_cancer", kind=TABULAR, options=BreastCancerOptions)
def breast_cancer(*, split: str, seed: int, options: TabularOptions) -> TabularSet:
    """scikit-learn's bundled breast-cancer set, each feature binarised at quantiles of the train split."""
    from sklearn.datasets import load_breast_cancer

    q = list(options.quantiles)
    if not q or not all(0.0 < v < 1.0 for v in q):
        raise ConfigError(f"data.quantiles: give a non-empty list of quantiles in (0, 1), got {q}")
    d = load_breast_cancer()  # bundled with scikit-learn: works offline
    x = torch.from_numpy(d.data).float()
    y = torch.from_numpy(d.target).long()
    test_idx, train_idx = split_indices(len(y), TEST_FRACTION, TEST_SPLIT_SEED)
    thresholds = torch.quantile(x[train_idx], torch.tensor(q), dim=0)      # [Q, 30] from train only
    idx = train_idx if split == "train" else test_idx
    bits = (x[idx, None, :] > thresholds[None]).float()                    # [n, Q, 30]
    bits = bits.permute(0, 2, 1).reshape(len(idx), -1)                     # feature-major
    names = [f"{d.feature_names[f]} > {float(thresholds[i, f]):.4g}"
             for f in range(x.shape[1]) for i in range(len(q))]
    return TabularSet(bits, y[idx], names, [str(c) for c in d.target_names])


def load_tabular(name: str, *, split: str = "train", seed: int = 0,
                 options: Optional[TabularOptions] = None) -> TabularSet:
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got '{split}'")
    return tabular_dataset(name)(split=split, seed=seed, options=options or TabularOptions())


def tabular_dataset(name: str) -> Any:
    fn = DATASETS.get(name, "data.dataset")
    if getattr(fn, "kind", None) != TABULAR:
        raise ConfigError(f"data.dataset={name} is not a tabular dataset")
    return fn


class TabularLoader:
    """Iterates ``(x [B, K], y [B])`` on ``device`` with its own generator (see ``BatchLoader``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, shuffle: bool,
                 seed: int = 0, drop_last: bool = False, device: Any = "cpu",
                 shard: Tuple[int, int] = (0, 1)):
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.x, self.y = x.to(self.device, torch.float32), y.to(self.device, torch.int64)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.rank, self.world = shard  # the global batch is drawn, this rank's slice taken

    def __len__(self) -> int:
        return sharded_len(self.y.shape[0], self.batch_size, self.drop_last, self.world,
                           min_per_rank=2 if self.shuffle else 0)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        n = self.y.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        self.epoch += 1
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            lo, hi = shard_bounds(len(idx), self.rank, self.world)
            yield self.batch(idx[lo:hi])

    def batch(self, idx: torch.Tensor) -> Tuple[Any, torch.Tensor]:
        """``(x, y)`` of the samples ``idx`` (a subclass may give another input, e.g. the maze's)."""
        return self.x[idx], self.y[idx]

    def eval_loader(self, shard: Tuple[int, int] = (0, 1)) -> "TabularLoader":
        """The same samples in a fixed order (for final scores); ``shard`` as for the loader."""
        return TabularLoader(self.x, self.y, batch_size=self.batch_size, shuffle=False, device=self.device,
                             shard=shard)

    def state_dict(self) -> Dict[str, Any]:
        return {"epoch": self.epoch, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])


def _info(data: TabularSet, **sizes: int) -> Dict[str, Any]:
    return dict(num_classes=len(data.classes), shape=(data.x.shape[1],), classes=data.classes,
                features=data.features, mean=None, std=None, **sizes)


def build_tabular_search_loaders(name: str, *, options: TabularOptions, train_portion: float,
                                 batch_size: int, seed: int, device: Any, shard: Tuple[int, int] = (0, 1)
                                 ) -> Tuple[TabularLoader, TabularLoader, Dict[str, Any]]:
    """(rule-training loader, validation loader, info), both from the train split; ``shard``:
    (rank, world) of a data-parallel search (see :class:`nas.data.BatchLoader`)."""
    data = load_tabular(name, split="train", seed=seed, options=options)
    require_classes(data.y, data.classes, name)
    tr, va = split_indices(len(data), train_portion, seed)
    train = TabularLoader(data.x[tr], data.y[tr], batch_size=batch_size, shuffle=True, seed=seed, device=device,
                          shard=shard)
    val = TabularLoader(data.x[va], data.y[va], batch_size=batch_size, shuffle=True,
                        seed=seed + _SECOND_STREAM, device=device, shard=shard)
    return train, val, _info(data, n_train=len(tr), n_val=len(va))


def build_tabular_eval_loaders(name: str, *, options: TabularOptions, batch_size: int, seed: int,
                               device: Any) -> Tuple[TabularLoader, TabularLoader, Dict[str, Any]]:
    """(loader on the whole train split, loader on the test split, info)."""
    train = load_tabular(name, split="train", seed=seed, options=options)
    require_classes(train.y, train.classes, name)
    test = load_tabular(name, split="test", seed=seed, options=options)
    return (TabularLoader(train.x, train.y, batch_size=batch_size, shuffle=True, seed=seed, device=device),
            TabularLoader(test.x, test.y, batch_size=batch_size, shuffle=False, device=device),
            _info(train, n_train=len(train), n_test=len(test)))


def tabular_search_loaders(name: str, d: Any, *, seed: int, device: Any, world: Any, given: Any = None,
                           channels_last: bool = False) -> Tuple[Any, Any, Dict[str, Any]]:
    """The ``tabular`` kind's search loaders for a config's ``data`` (its dataset's options)."""
    return build_tabular_search_loaders(name, options=d, train_portion=d.train_portion, batch_size=d.batch_size,
                                        seed=seed, device=device, shard=world.shard)


register_kind(DataKind(TABULAR, NoOptions, tabular_search_loaders))
