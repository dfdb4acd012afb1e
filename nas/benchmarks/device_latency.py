"""Measured latency of every NAS-Bench-201 network on 27 device settings.

The package ships ``nas/benchmarks/data/nb201_device_latency.csv.gz`` (licence and source beside
it in ``NB201_DEVICE_LATENCY_LICENSE.txt``): the inference latency in milliseconds of the
benchmark network (C=16, N=5) of each of the 15,625 cells on GPUs at batch 1/32/256 (the
column's suffix), Xeon CPUs, phones, a Raspberry Pi 4, and the simulated Eyeriss ASIC and FPGA,
as collected by HELP (Lee et al., NeurIPS 2021) from HW-NAS-Bench (Li et al., ICLR 2021) and its
own measurements. Format (CSV, gzip allowed)::

    arch,1080ti_1,1080ti_256,...,titanxp_32
    |avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|...|,10.7544,17.2553,...

A cell's latency here is the whole network's, measured: nothing is summed per op. Cells are held
in the lexicographic order of their op indices (:func:`nas.spaces.nb201.all_genotypes`): cell
``(k_0, ..., k_5)`` is row ``Σ_e k_e · 5^(5−e)``, so an enumeration of op indices reads its
latencies by one index computation.
"""
from __future__ import annotations

import csv
import gzip
import math
import os
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError, DataError, NasError, storage_error

DEFAULT_DEVICE_TABLE = Path(__file__).resolve().parent / "data" / "nb201_device_latency.csv.gz"
DEVICE_TABLE_ENV = "NAS_DEVICE_TABLE"  # overrides the default path when set
SPACE = "nb201"  # the only space the shipped table covers


def cell_index(idx: Tensor, n_ops: int = 5) -> Tensor:
    """Row of the cells ``idx`` (``[..., 6]`` op indices into the benchmark's ops) in the table."""
    weights = n_ops ** torch.arange(idx.shape[-1] - 1, -1, -1, device=idx.device)
    return (idx.long() * weights).sum(-1)


class DeviceTable:
    """``ms[:, d]``: the latency of every cell (table order, module docstring) on ``devices[d]``."""

    def __init__(self, devices: Sequence[str], ms: Tensor, path: Optional[Path] = None):
        self.devices: List[str] = list(devices)
        self.ms = ms
        self.path = path
        self.space = SPACE
        from nas.spaces.nb201 import OPS
        self.ops = tuple(OPS)

    def column(self, device: str) -> int:
        if device not in self.devices:
            raise ConfigError(f"cost.device: unknown device '{device}'; known: {', '.join(self.devices)}")
        return self.devices.index(device)

    def latency(self, device: str) -> Tensor:
        """``[15625]`` milliseconds of every cell on ``device``."""
        return self.ms[:, self.column(device)]

    def of(self, device: str, ops: Sequence[str]) -> float:
        """Milliseconds of the cell whose six edges hold ``ops``."""
        unknown = [op for op in ops if op not in self.ops]
        if unknown:
            raise ConfigError(f"the device table has no latency for op '{unknown[0]}': it covers the "
                              f"NAS-Bench-201 ops {', '.join(self.ops)}")
        row = cell_index(torch.tensor([self.ops.index(op) for op in ops]))
        return float(self.latency(device)[row])

    def by_arch(self, device: str) -> Dict[str, float]:
        """Milliseconds by cell string (the form :func:`nas.benchmarks.nb201_table.cell_costs` gives)."""
        from nas.spaces.nb201 import all_genotypes
        col = self.latency(device).tolist()
        return {str(g): col[i] for i, g in enumerate(all_genotypes())}

    @classmethod
    def load(cls, path: Optional[os.PathLike] = None) -> "DeviceTable":
        """The table at ``path`` (default: the shipped one, or ``$NAS_DEVICE_TABLE``); cached."""
        path = Path(path or os.environ.get(DEVICE_TABLE_ENV) or DEFAULT_DEVICE_TABLE)
        return _load(path.resolve())


@lru_cache(maxsize=4)
def _load(path: Path) -> DeviceTable:
    from nas.spaces.nb201 import OPS
    from nas.spaces.nb201.genotype import parse_ops

    if not path.is_file():
        raise DataError(f"device latency table {path} not found; reinstall the package or set {DEVICE_TABLE_ENV}")
    opener = gzip.open if path.suffix == ".gz" else open
    n = len(OPS) ** 6
    try:
        with opener(path, "rt", newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            head = next(reader)
            devices = head[1:]
            ms = torch.full((n, len(devices)), float("nan"), dtype=torch.float64)
            seen = torch.zeros(n, dtype=torch.bool)
            for line, row in enumerate(reader, start=2):
                try:
                    ops = parse_ops(row[0])
                    i = sum(OPS.index(op) * len(OPS) ** (5 - e) for e, op in enumerate(ops))
                    values = [float(v) for v in row[1:]]
                except (ValueError, IndexError, NasError) as e:
                    raise DataError(f"device latency table {path} line {line}: {e}") from None
                if len(values) != len(devices) or not all(math.isfinite(v) and v > 0 for v in values):
                    raise DataError(f"device latency table {path} line {line}: expected {len(devices)} "
                                    f"finite positive milliseconds")
                ms[i] = torch.tensor(values, dtype=torch.float64)
                seen[i] = True
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, csv.Error, zlib.error, StopIteration) as e:
        raise DataError(f"device latency table {path} is not a CSV text file ({type(e).__name__})") from None
    except OSError as e:
        raise storage_error(e, path, "read") from None
    if not bool(seen.all()):
        raise DataError(f"device latency table {path} has {int(seen.sum()):,} of the {n:,} NB201 cells")
    return DeviceTable(devices, ms, path)

