"""Hardware cost of the network a search will train: MACs, parameters, latency.

* :mod:`.model` — :class:`CostModel`, what a space's ``cost_model()`` says of its trained network;
* :mod:`.measure` — the cost of one op or one network from its shapes (MACs and parameters by
  counting, latency from a measured lookup table);
* :mod:`.table` — :class:`CostTable`, the cost of every candidate on every edge of the trained
  network, summed over the cells that share the edge's choice, plus the fixed skeleton;
* :mod:`.latency` — the lookup table: measured per op, edge shape and batch size on a device;
* :mod:`.device` — ``cost.device``: an NB201 cell's measured latency on a device of the shipped
  table (:mod:`nas.benchmarks.device_latency`), with :mod:`.latency_model`'s differentiable fit
  for the relaxed cell;
* :mod:`.feasible` — the most probable cell within a budget;
* :mod:`.budget` — :class:`Budget`, the differentiable expected cost added to the architecture
  loss, with its TensorBoard scalars and the derive constraint.
"""
from .budget import Budget, attach_budget, cost_report
from .feasible import most_probable_within
from .latency import LatencyTable, profile_latency
from .measure import METRICS, UNITS
from .model import CostModel, RegisteredOps, require_cost_model
from .table import CostTable, EdgeShape, build_cost_table

__all__ = ["Budget", "attach_budget", "cost_report", "most_probable_within", "LatencyTable",
           "profile_latency", "METRICS", "UNITS", "CostModel", "RegisteredOps", "require_cost_model", "CostTable", "EdgeShape", "build_cost_table"]
