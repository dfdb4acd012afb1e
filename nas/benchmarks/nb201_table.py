"""NAS-Bench-201 ground truth as a small CSV table: accuracy and rank of any cell.

Dong & Yang, "NAS-Bench-201", ICLR 2020. The official benchmark API needs gigabytes of RAM; the
search only has to be scored, so this reads a flat table instead.

The package ships the table (``nas/benchmarks/data/nb201_accuracy.csv.gz``: the published
CIFAR-10, CIFAR-100 and ImageNet16-120 test accuracies of all 15,625 cells, averaged over the
benchmark's seeds), so a lookup works after a plain install; ``--table PATH`` or the
``NAS_NB201_TABLE`` environment variable point to another copy. Format (CSV, gzip allowed)::

    arch,cifar10,cifar100,imagenet16_120
    |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|,94.37,...

``arch`` is the NB201 cell string, the other columns are test accuracies in % after the
benchmark's 200-epoch training. Extra columns are ignored; rows may come in any order.

Rank: ``1 + (number of cells with a strictly higher accuracy)`` ("competition" ranking), so the
best cell has rank 1 and tied cells share the best rank of their group.
"""
from __future__ import annotations

import bisect
import csv
import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from ..errors import CheckpointError, DataError, NasError, storage_error

DEFAULT_TABLE = Path(__file__).resolve().parent / "data" / "nb201_accuracy.csv.gz"
DATASETS: Tuple[str, ...] = ("cifar10", "cifar100", "imagenet16_120")
TABLE_ENV = "NAS_NB201_TABLE"  # overrides the default path when set
CELLS = 5 ** 6  # 5 ops on each of the 6 edges: 15,625 cells

ArchLike = Union[str, os.PathLike, "NB201Genotype"]  # noqa: F821 (resolved lazily)


def default_table_path() -> Path:
    return Path(os.environ.get(TABLE_ENV) or DEFAULT_TABLE)


def benchmark_cell(arch: str):
    """The :class:`NB201Genotype` of a cell string whose ops are all the benchmark's; one line
    naming the first other op (``dnf_1x1``, a user's op, a typo) otherwise."""
    from nas.spaces.nb201 import OPS, NB201Genotype
    from nas.spaces.nb201.genotype import parse_ops

    other = [op for op in parse_ops(arch) if op not in OPS]
    if other:
        raise DataError(f"not in NAS-Bench-201: op {other[0]} (the benchmark's cells use {', '.join(OPS)})")
    return NB201Genotype.from_string(arch)


def resolve_arch(arch: ArchLike):
    """An :class:`NB201Genotype` from a genotype, a cell string, a ``genotype.yaml`` or a run folder."""
    from nas.spaces.nb201 import NB201Genotype

    if isinstance(arch, NB201Genotype):
        return benchmark_cell(str(arch))
    text = str(arch).strip()
    if text.startswith("|"):
        return benchmark_cell(text)
    path = Path(text)
    if path.is_dir():
        if not (path / "genotype.yaml").is_file():
            raise CheckpointError(f"{path} has no genotype.yaml; give a finished run folder, a "
                                  f"genotype.yaml or a cell string '|op~0|+|op~0|op~1|+|...|'")
        path = path / "genotype.yaml"
    if not path.is_file():
        raise CheckpointError(f"'{text}' is neither a cell string '|op~0|+...', a genotype.yaml "
                              f"nor a run folder")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: not a YAML text file; expected a genotype.yaml with "
                              f"'arch: |op~0|+|...|'") from None
    except OSError as e:
        raise storage_error(e, path, "read") from None
    if isinstance(data, dict) and data.get("space", "nb201") != "nb201":
        raise CheckpointError(f"{path}: genotype of space '{data.get('space')}', not nb201; "
                              f"the NAS-Bench-201 table only scores nb201 cells")
    if not isinstance(data, dict) or not isinstance(data.get("arch"), str):
        raise CheckpointError(f"{path}: expected a mapping with key 'arch' holding an NB201 cell "
                              f"string (is this a NAS-Bench-201 search?)")
    return benchmark_cell(data["arch"])


@dataclass(frozen=True)
class Score:
    """Ground truth of one cell: accuracy (%) and rank (1 = best) per dataset, out of ``n`` cells."""

    arch: str
    acc: Dict[str, float]
    rank: Dict[str, int]
    n: int


class NB201Table:
    """Accuracies of NB201 cells, keyed by their canonical cell string."""

    def __init__(self, rows: Dict[str, Tuple[float, ...]], path: Optional[Path] = None):
        if not rows:
            raise DataError(f"NB201 table {path} has no rows")
        self.rows = rows
        self.path = path
        # ascending accuracies per dataset: rank = 1 + how many are strictly larger
        self._sorted: List[List[float]] = [sorted(v[d] for v in rows.values()) for d in range(len(DATASETS))]

    @classmethod
    def load(cls, path: Optional[os.PathLike] = None, *, partial: bool = False) -> "NB201Table":
        """Read a table; it must hold all :data:`CELLS` cells once each (ranks out of fewer cells
        would look right and be wrong), unless ``partial`` (``--partial-table``): a table of a
        subset of your own, ranked among its own cells."""
        path = Path(path) if path is not None else default_table_path()
        if not path.is_file():
            raise DataError(f"NB201 table {path} not found; pass --table PATH (a CSV with columns "
                            f"arch,{','.join(DATASETS)}) or set {TABLE_ENV}")
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", newline="", encoding="utf-8") as f:
                rows, lines = cls._read(f, path)
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, csv.Error, zlib.error) as e:
            raise DataError(f"NB201 table {path} is not a CSV text file ({type(e).__name__}); give the "
                            f"table as CSV (gzip allowed) with columns arch,{','.join(DATASETS)}") from None
        except OSError as e:
            raise storage_error(e, path, "read") from None
        if not partial and (len(rows) != CELLS or lines != CELLS):
            dup = f" ({lines - len(rows)} cells given twice)" if lines != len(rows) else ""
            raise DataError(f"NB201 table {path} has {len(rows):,} distinct cells{dup}, the benchmark has "
                            f"{CELLS:,}: ranks would be wrong; give the full table, or pass "
                            f"--partial-table for a table of your own subset")
        return cls(rows, path)

    @staticmethod
    def _read(f: Any, path: Path) -> Tuple[Dict[str, Tuple[float, ...]], int]:
        from nas.spaces.nb201 import NB201Genotype

        rows: Dict[str, Tuple[float, ...]] = {}
        reader = csv.DictReader(f)
        missing = [c for c in ("arch",) + DATASETS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"NB201 table {path} lacks column '{missing[0]}'; expected columns "
                            f"arch,{','.join(DATASETS)}")
        line = 1
        for line, row in enumerate(reader, start=2):
            try:
                arch = str(NB201Genotype.from_string(row["arch"]))
                rows[arch] = tuple(float(row[d]) for d in DATASETS)
            except (NasError, ValueError, TypeError) as e:
                raise DataError(f"NB201 table {path} line {line}: {e}") from None
        return rows, line - 1

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, arch: ArchLike) -> bool:
        return str(resolve_arch(arch)) in self.rows

    def accuracy(self, arch: ArchLike, dataset: str = "cifar10") -> float:
        return self.score(arch).acc[self._check(dataset)]

    def rank_of(self, acc: float, dataset: str = "cifar10") -> int:
        """Rank an accuracy would have: ``1 + #cells with strictly higher accuracy``."""
        s = self._sorted[DATASETS.index(self._check(dataset))]
        return 1 + len(s) - bisect.bisect_right(s, acc)

    def score(self, arch: ArchLike) -> Score:
        key = str(resolve_arch(arch))
        if key not in self.rows:
            raise DataError(f"cell {key} is not in the NB201 table {self.path} ({len(self)} cells)")
        acc = dict(zip(DATASETS, self.rows[key]))
        return Score(key, acc, {d: self.rank_of(acc[d], d) for d in DATASETS}, len(self))

    def best(self, dataset: str = "cifar10") -> Tuple[str, float]:
        i = DATASETS.index(self._check(dataset))
        arch = max(self.rows, key=lambda a: self.rows[a][i])
        return arch, self.rows[arch][i]

    def mean(self, dataset: str = "cifar10") -> float:
        s = self._sorted[DATASETS.index(self._check(dataset))]
        return sum(s) / len(s)

    def best_within(self, budget: float, costs: Dict[str, float],
                    dataset: str = "cifar10") -> Optional[Tuple[str, float, float]]:
        """``(arch, accuracy, cost)`` of the most accurate cell of the table whose cost (``costs``:
        :func:`cell_costs`) is at most ``budget``; ``None`` if none is. Ties: the cheaper cell."""
        i = DATASETS.index(self._check(dataset))
        fits = [a for a in self.rows if costs[a] <= budget * (1 + 1e-12)]
        if not fits:
            return None
        arch = max(fits, key=lambda a: (self.rows[a][i], -costs[a]))
        return arch, self.rows[arch][i], costs[arch]

    def top_within(self, budget: float, costs: Dict[str, float], n: int, dataset: str = "cifar10",
                   keep: Optional[Callable[[str], bool]] = None) -> List[Tuple[str, Tuple[float, ...], float]]:
        """The ``n`` most accurate cells within ``budget`` (and ``keep(arch)``, e.g. a derive
        rule), best first, as ``(arch, accuracies in DATASETS order, cost)``; ties: cheaper first."""
        i = DATASETS.index(self._check(dataset))
        fits = [a for a in self.rows if costs[a] <= budget * (1 + 1e-12) and (keep is None or keep(a))]
        fits.sort(key=lambda a: (-self.rows[a][i], costs[a], a))
        return [(a, self.rows[a], costs[a]) for a in fits[:n]]

    def front(self, costs: Dict[str, float], dataset: str = "cifar10") -> List[Tuple[float, str, float]]:
        """The Pareto front ``[(cost, arch, accuracy)]`` by increasing cost: every cell more
        accurate than all cells that cost no more."""
        i = DATASETS.index(self._check(dataset))
        out: List[Tuple[float, str, float]] = []
        for a in sorted(self.rows, key=lambda a: (costs[a], -self.rows[a][i])):
            if not out or self.rows[a][i] > out[-1][2]:
                out.append((costs[a], a, self.rows[a][i]))
        return out

    def format_budget(self, budget: float, metric: str = "macs", dataset: str = "cifar10") -> str:
        """The best cell within ``budget`` million ``metric`` of the benchmark network, as text."""
        best = self.best_within(budget, cell_costs(metric), dataset)
        unit = {"macs": "M MACs (NB201's MFLOPs)", "params": "M params"}[metric]
        if best is None:
            return f"no cell of the table costs at most {budget:g} {unit}"
        arch, acc, cost = best
        return f"best cell within {budget:g} {unit}: {arch}\n  {dataset} {acc:.2f}%, cost {cost:.5f}"

    @staticmethod
    def _check(dataset: str) -> str:
        if dataset not in DATASETS:
            raise NasError(f"unknown NB201 dataset '{dataset}'; known: {', '.join(DATASETS)}")
        return dataset


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ_b of two paired sequences (Kendall 1945, ties corrected):
    ``(C − D) / sqrt((P − T_x)(P − T_y))`` with C/D the concordant/discordant pairs, P all pairs,
    T_x/T_y the pairs tied in x/y; NaN when either sequence is constant."""
    if len(x) != len(y):
        raise ValueError(f"kendall_tau_b: {len(x)} against {len(y)} values")
    n = len(x)
    c = d = tx = ty = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            tx += dx == 0
            ty += dy == 0
            c += dx * dy > 0
            d += dx * dy < 0
    pairs = n * (n - 1) // 2
    den = ((pairs - tx) * (pairs - ty)) ** 0.5
    return (c - d) / den if den else float("nan")


def cell_costs(metric: str = "macs", *, C: int = 16, N: int = 5, resolution: int = 32,
               num_classes: int = 10) -> Dict[str, float]:
    """The cost of every NB201 cell's network (default: the benchmark's CIFAR-10 network, whose
    MACs are the table's FLOPs: 7.78305 to 220.11969 M; see :mod:`nas.cost`), by cell string."""
    from nas.spaces import get_space
    from nas.spaces.nb201 import all_genotypes

    from ..cost import build_cost_table
    cost_model = get_space("nb201").cost_model()
    table = build_cost_table(cost_model, metric, num_classes=num_classes, in_channels=3, resolution=resolution,
                             network=cost_model.trained_network(C, N))
    return {str(g): table.exact(cost_model.selected_edges(g)) for g in all_genotypes()}
