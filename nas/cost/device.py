"""``cost.device``: the latency budget of a search on a device of the shipped NB201 table.

The table (:mod:`nas.benchmarks.device_latency`) holds the measured latency of the benchmark's
network (C=16, N=5, 32×32) of every cell on 27 device settings, so nothing is profiled. The
search's expected latency comes from the device's fitted model (:mod:`nas.cost.latency_model`:
its additive part as the cost table's per-edge costs, the rest through :meth:`interactions`);
every discrete cell's latency — the derived cell's, the derive-within enumeration's, the
reported one — is read from the table.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import ConfigError
from .latency_model import LatencyModel, fit_models
from .table import CostTable

# the benchmark network the table was measured on (nas.spaces.nb201.trained_network's defaults)
NETWORK = {"C": 16, "N": 5}
RESOLUTION = 32


@lru_cache(maxsize=2)
def _models(path) -> Dict[str, LatencyModel]:
    from ..benchmarks.device_latency import DeviceTable
    t = DeviceTable.load(path)
    return dict(zip(t.devices, fit_models(t.ms)))


def device_models(path=None) -> Dict[str, LatencyModel]:
    """The fitted model of every device of the table at ``path`` (default the shipped one); fitted
    once per process (all devices share one least-squares solve, about a second)."""
    from ..benchmarks.device_latency import DeviceTable
    return _models(DeviceTable.load(path).path)


class DeviceCostTable(CostTable):
    """The :class:`CostTable` of an NB201 cell on ``device``: ``edges``/``fixed`` are the fitted
    model's additive part, :meth:`exact` and :meth:`cell_costs` read the measured table."""

    def __init__(self, device: str, ms: Tensor, model: LatencyModel, ops: Sequence[str]):
        super().__init__("latency", list(ops), {"arch.cell": model.additive.clone()},
                         {"arch.cell": torch.ones(model.additive.shape[0], dtype=torch.float64)}, model.bias,
                         dict(NETWORK, resolution=RESOLUTION, device=device))
        self.device, self.ms, self.model = device, ms, model

    def _cols(self, candidates: Sequence[str]) -> Tensor:
        return torch.tensor([self.column(op) for op in candidates])

    def cell_latency(self, idx: Tensor) -> Tensor:
        """Measured milliseconds of the cells ``idx`` (``[n, 6]`` indices into ``self.ops``)."""
        from ..benchmarks.device_latency import cell_index
        return self.ms[cell_index(idx.cpu(), len(self.ops))]

    def exact(self, selected: Dict[str, Sequence[Tuple[int, str]]],
              widths: Optional[Dict[str, Dict[int, float]]] = None) -> float:
        given = {e: w for e, w in (widths or {}).get("arch.cell", {}).items() if w is not None}
        if given:  # the table holds full-width cells only
            e, w = next(iter(given.items()))
            raise ConfigError(f"cost.device: the device latency table measures full-width NB201 cells; this cell keeps "
                              f"edge {e} at width {w:g}, which it has no latency for; budget macs or params")
        pairs = sorted(selected["arch.cell"])
        return float(self.cell_latency(torch.tensor([[self.column(op) for _, op in pairs]]))[0])

    def interactions(self, choice: str, q: Tensor, candidates: Sequence[str]) -> Optional[Tensor]:
        full = q.new_zeros(q.shape[0], len(self.ops))
        full[:, self._cols(candidates).to(q.device)] = q
        return self.model.interactions(full)

    def cell_costs(self, choice: str, candidates: Sequence[str]):
        cols = self._cols(candidates)
        return lambda grid: self.cell_latency(cols[grid.cpu()]).to(grid.device) - self.fixed

    def cheapest(self, choice: str, allowed: Tensor, candidates: Sequence[str]) -> float:
        from .feasible import feasible_grid
        grid = feasible_grid(self.for_candidates(choice, candidates), float("inf"), allowed.bool())
        return float(self.cell_costs(choice, candidates)(grid).min())


def device_cost_table(space: Any, device: str, *, ops: Sequence[str] = (), target: Optional[float] = None,
                      network: Optional[Dict[str, Any]] = None, resolution: int = RESOLUTION,
                      batch_size: int = 1, path=None) -> DeviceCostTable:
    """The :class:`DeviceCostTable` of ``space`` (NB201 only) with candidates ``ops`` on
    ``device``; one-line errors for another space, another network, an op the table lacks, an
    unknown device and a target below the device's fastest cell."""
    from ..benchmarks.device_latency import DeviceTable
    table = DeviceTable.load(path)
    if space.name != table.space:
        raise ConfigError(f"cost.device: the device latency table covers the {table.space} space only, not "
                          f"'{space.name}'; profile your own network on your device with "
                          f"nas-profile-latency CONFIG --out latency.json and set cost.latency_table=latency.json")
    network = dict(network or NETWORK)
    if {k: network.get(k) for k in NETWORK} != NETWORK or resolution != RESOLUTION or batch_size != 1:
        raise ConfigError(f"cost.device gives the latency of NAS-Bench-201's network (C=16, N=5, {RESOLUTION}x"
                          f"{RESOLUTION}; the batch size is in the device's name); remove cost.C, cost.N, "
                          f"cost.resolution and cost.batch_size, or profile this network with nas-profile-latency")
    missing = [op for op in ops if op not in table.ops]
    if missing:
        raise ConfigError(f"cost.device: the device table has no latency for op '{missing[0]}' of space.ops; it "
                          f"covers {', '.join(table.ops)}: drop the op or profile with nas-profile-latency")
    ms = table.latency(device)  # unknown device: one line listing the known ones
    fastest = float(ms.min())
    if target is not None and target < fastest:
        raise ConfigError(f"cost.target={target:g} ms is below the fastest NB201 cell on {device} "
                          f"({fastest:.6g} ms); raise it")
    return DeviceCostTable(device, ms, device_models(path)[device], table.ops)


def cost_source(c: Any, space: Any, network: Dict[str, Any], ops: Optional[Sequence[str]]):
    """``(latency table, cost table)`` of a ``cost:`` section ``c``: a profiled
    :class:`~nas.cost.latency.LatencyTable` (``cost.latency_table``), or the device's
    :class:`DeviceCostTable` (``cost.device``), or neither (MACs, parameters)."""
    from .latency import LatencyTable
    if c.device is not None:
        if c.metric != "latency":
            raise ConfigError(f"cost.device={c.device} budgets latency: set cost.metric=latency "
                              f"(cost.target in milliseconds)")
        if c.latency_table:
            raise ConfigError("cost.device and cost.latency_table are two latency sources: keep one")
        return None, device_cost_table(space, c.device, ops=ops or space.ops, target=c.target, network=network,
                                       resolution=c.resolution, batch_size=c.batch_size)
    if c.metric == "latency":
        if not c.latency_table:
            raise ConfigError("cost.metric=latency needs cost.device (a device of the shipped NB201 table: "
                              "nas-lookup --devices) or cost.latency_table (measure one with "
                              "nas-profile-latency CONFIG --out latency.json)")
        return LatencyTable.load(c.latency_table), None
    return None, None
