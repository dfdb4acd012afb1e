"""The latency lookup table: measured per op, per edge shape and per batch size on one device.

ProxylessNAS (Cai et al. 2019, §3.3) and FBNet (Wu et al. 2019, §3.2) model a network's latency
as the sum of its ops' latencies, each measured once on the target device; the expected latency
of a relaxed cell is then differentiable in the architecture's probabilities. Here every op the
trained network can hold is timed on its input shape (``batch × C_in × H × W``), and the skeleton
is timed as a whole network whose cells are the space's reference genotype (the table subtracts
that genotype's ops; see :mod:`nas.cost.table`).

Timing: ``warmup`` untimed calls, then the median of ``repeats`` calls of the module in eval mode
under ``torch.inference_mode`` (CUDA: synchronised before and after each call).
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from ..errors import ConfigError, DataError
from .table import EdgeShape, network_key


def op_key(op: str, C_in: int, C_out: int, stride: int, H: int, W: int, batch: int,
           args: Optional[Mapping[str, Any]] = None) -> str:
    """The table's key of ``op`` on one edge shape at one batch size; an op built with options
    (``space.op_args``, e.g. a ``dnf_1x1``'s ``rules``) is another module, timed under its own key."""
    name = op + (json.dumps(dict(args), sort_keys=True, separators=(",", ":")) if args else "")
    return f"{name}|{C_in}|{C_out}|{stride}|{H}x{W}|b{batch}"


def describe_key(key: str) -> str:
    """``op on CxHxW (stride s) at batch b`` for an :func:`op_key`, else the key as it is."""
    parts = key.split("|")
    if len(parts) == 6:
        op, c_in, c_out, stride, hw, b = parts
        return f"{op} on {c_in}x{hw} -> {c_out} channels, stride {stride}, at batch {b.lstrip('b')}"
    return f"'{key}'"


@dataclass
class LatencyTable:
    """Milliseconds by key (:func:`op_key`, :func:`~nas.cost.table.network_key` + ``|b<batch>``)."""

    entries: Dict[str, float] = field(default_factory=dict)
    device: str = ""
    path: Optional[Path] = None

    def _get(self, key: str, what: str) -> float:
        if key not in self.entries:
            where = f" {self.path}" if self.path else ""
            raise ConfigError(f"cost.latency_table{where} has no entry for {what}; measure it with "
                              f"nas-profile-latency CONFIG --batch <cost.batch_size> on this network")
        return self.entries[key]

    def op(self, op: str, C_in: int, C_out: int, stride: int, H: int, W: int, batch: int,
           args: Optional[Mapping[str, Any]] = None) -> float:
        key = op_key(op, C_in, C_out, stride, H, W, batch, args)
        return self._get(key, f"{key.split('|')[0]} on {C_in}x{H}x{W} at batch {batch}")

    def network(self, key: str, batch: int) -> float:
        return self._get(f"{key}|b{batch}", f"the skeleton {key} at batch {batch}")

    def save(self, path: os.PathLike) -> None:
        Path(path).write_text(json.dumps({"device": self.device, "entries": self.entries}, indent=1))

    @classmethod
    def load(cls, path: os.PathLike) -> "LatencyTable":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"cost.latency_table: {path} not found; measure one with nas-profile-latency")
        try:
            data = json.loads(path.read_text())
            entries = {str(k): float(v) for k, v in data["entries"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DataError(f"cost.latency_table: {path} is not a latency table written by "
                            f"nas-profile-latency; measure it again") from None
        for key, ms in entries.items():  # a negative or NaN entry would pass as a cost, or end in a NaN loss
            if not (math.isfinite(ms) and ms >= 0):
                raise DataError(f"cost.latency_table: {path}: {describe_key(key)} takes {ms:g} ms; every entry "
                                f"must be a finite time >= 0 ms; measure it again with nas-profile-latency")
        return cls(entries, str(data.get("device", "")), path)


@torch.inference_mode()
def time_module(module: nn.Module, x: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of ``module(x)``."""
    module.eval()
    cuda = x.device.type == "cuda"
    times = []
    for i in range(warmup + repeats):
        if cuda:
            torch.cuda.synchronize(x.device)
        t0 = time.perf_counter()
        module(x)
        if cuda:
            torch.cuda.synchronize(x.device)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def profile_latency(cost_model: Any, *, network: Dict[str, Any], resolution: int, num_classes: int,
                    in_channels: int, batch_sizes: Sequence[int], device: torch.device,
                    cell: Optional[Dict[str, Any]] = None,
                    repeats: int = 20, warmup: int = 3, table: Optional[LatencyTable] = None,
                    log=None, ops: Optional[Sequence[str]] = None,
                    op_args: Optional[Mapping[str, Mapping[str, Any]]] = None) -> LatencyTable:
    """Time every op of every edge shape of a space's trained network (its
    :class:`~nas.cost.model.CostModel`; and its skeleton) at
    each batch size on ``device``; entries already in ``table`` are kept, so one file can hold
    several networks and batch sizes. ``ops``: the run's candidates (``space.ops``, registered
    ops included), timed besides the space's own; ``op_args``: the options the run builds them
    with (``space.op_args``), as :func:`~nas.cost.table.build_cost_table` reads them."""
    table = table or LatencyTable()
    cell = cell or {}
    op_args = op_args or {}
    candidates = list(dict.fromkeys([*cost_model.ops, *(ops or ())]))
    table.device = device_name(device)
    shapes: Iterable[EdgeShape] = {EdgeShape(0, s.C_in, s.C_out, s.stride, s.H, s.W)
                                   for rows in cost_model.edges(resolution=resolution, **network, **cell).values()
                                   for s in rows}
    ref = cost_model.reference(**cell)
    key = network_key(cost_model.name, ref, network, resolution, num_classes, in_channels)
    for b in batch_sizes:
        if b < 1:
            raise ConfigError(f"--batch sizes must be positive, got {b}")
        for s in sorted(shapes, key=lambda s: (s.C_in, s.H, s.stride)):
            x = torch.randn(b, s.C_in, s.H, s.W, device=device)
            for op in candidates:
                k = op_key(op, s.C_in, s.C_out, s.stride, s.H, s.W, b, op_args.get(op))
                if k not in table.entries:
                    module = cost_model.ops_table[op](s.C_in, s.C_out, s.stride, True, **op_args.get(op, {})).to(device)
                    # a zero op is dropped from the discrete network: it takes no time there
                    table.entries[k] = (0.0 if getattr(module, "is_zero", False)
                                        else time_module(module, x, repeats, warmup))
                    if log:
                        log(f"{k}: {table.entries[k]:.4f} ms")
        net = cost_model.build_network(ref, num_classes=num_classes, in_channels=in_channels, **network).to(device)
        table.entries[f"{key}|b{b}"] = time_module(
            net, torch.randn(b, in_channels, resolution, resolution, device=device), repeats, warmup)
        if log:
            log(f"{key}|b{b}: {table.entries[f'{key}|b{b}']:.4f} ms")
    return table
