"""What the cost model (:mod:`nas.cost`) needs of a search space's trained network, as one object
a space returns (:meth:`nas.spaces.base.SearchSpace.cost_model`; ``None``: the space has no cost
model, and a run's ``cost:`` section must stay unset).

A space with one subclasses :class:`CostModel` and implements :meth:`~CostModel.trained_network`,
:meth:`~CostModel.edges`, :meth:`~CostModel.reference` and :meth:`~CostModel.derivable` (and
:meth:`~CostModel.cell` where its cell's structure is configurable); see
:mod:`nas.cost.table` for how they combine into ``cost(genotype) = fixed + Σ kept table[...]``.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torch import nn

from ..errors import ConfigError


class RegisteredOps(Mapping):
    """The op registry (:mod:`nas.ops.registry`) as the discrete op table the cost model builds
    candidates from: ``table[name](C_in, C_out, stride, affine)``, the op as a discrete network
    has it (no estimator in its context)."""

    def __getitem__(self, name: str) -> Any:
        from ..ops.registry import build_op
        return functools.partial(build_op, name)

    def __iter__(self):
        from ..ops.registry import OPS
        return iter(OPS)

    def __len__(self) -> int:
        from ..ops.registry import OPS
        return len(OPS.names())


class CostModel:
    """The trained network of one space, as the cost tables see it. ``space``: the space that
    returned it, which builds the networks (``build_network``), names its default candidates
    (``ops``) and reads genotypes (``selected_edges``)."""

    ops_table: Mapping = RegisteredOps()  # the discrete op table candidates are measured with

    def __init__(self, space: Any):
        self.space = space

    @property
    def name(self) -> str:
        return self.space.name

    @property
    def ops(self) -> Sequence[str]:
        """The space's default candidates (a run may add any registered op)."""
        return self.space.ops

    def build_network(self, genotype: Any, **kwargs: Any) -> nn.Module:
        return self.space.build_network(genotype, **kwargs)

    def selected_edges(self, genotype: Any) -> Dict[str, List[Tuple[int, str]]]:
        """Per choice name, the (edge, op) pairs ``genotype`` keeps (the space reads its genotype)."""
        return self.space.selected_edges(genotype)

    def selected_widths(self, genotype: Any) -> Dict[str, Dict[int, float]]:
        """Per choice name, ``{edge: share}`` of the edges ``genotype`` keeps at a recorded width."""
        return self.space.selected_widths(genotype)

    def trained_network(self, C: Optional[int] = None, N: Optional[int] = None,
                        layers: Optional[int] = None) -> Dict[str, Any]:
        """``build_network`` keywords of the network a search's cell will be trained in (the
        ``cost.C``/``cost.N``/``cost.layers`` keys; ``None``: the space's evaluation defaults)."""
        raise NotImplementedError

    def cell(self, cfg: Any) -> Dict[str, Any]:
        """The searched cell's structure that a search config (:class:`nas.config.Config`) asks
        for and the cost model needs besides the trained network's sizes (darts: ``steps``,
        ``multiplier``); passed to :meth:`edges` and :meth:`reference`."""
        return {}

    def edges(self, *, resolution: int, **network: Any) -> Dict[str, list]:
        """Per choice name, the :class:`nas.cost.EdgeShape` of every edge of every cell."""
        raise NotImplementedError

    def reference(self, **cell: Any) -> Any:
        """A genotype whose network measures the skeleton (any valid one)."""
        raise NotImplementedError

    def derivable(self, model: nn.Module) -> Dict[str, Any]:
        """Per choice name, a bool ``[K]`` or ``[E, K]`` of the candidates derive may pick."""
        raise NotImplementedError


def require_cost_model(space: Any) -> CostModel:
    """``space.cost_model()``, or a one-line error for a space without one."""
    model = space.cost_model()
    if model is None:
        raise ConfigError(f"space '{space.name}' has no cost model; the cost keys apply to spaces with one "
                          f"(nb201, darts)")
    return model
