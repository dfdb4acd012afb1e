"""What a search space provides to the rest of the tool.

A space is a registry entry (``search_spaces.SPACES``) with four jobs, kept apart as in DARTS:
its op table (candidate ops), its supernet (mixed choices, built with an estimator), its genotype
(plain data, YAML round trip) and the discrete network built only from a genotype.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from torch import nn

from nas.errors import CheckpointError, ConfigError


def check_max_skip(value: Optional[int]) -> Optional[int]:
    """``estimator.derive_max_skip`` as a supernet takes it: ``None`` (no limit) or 0 or more."""
    if value is not None and value < 0:
        raise ConfigError(f"estimator.derive_max_skip must be 0 or more (or null for no limit), got {value}")
    return value


def refuse_without_logits(choice: Any, estimator_name: str, settings: Sequence[str]) -> None:
    """One error naming the derive ``settings`` (``key=value that turns it off``) given to an
    estimator whose ``choice`` has no logits to rank the candidates by."""
    if not settings or "logits" in choice.roles.values():
        return
    keys = " and ".join(s.split("=")[0] for s in settings)
    raise ConfigError(f"{keys} {'need' if len(settings) > 1 else 'needs'} an estimator with logits to "
                      f"rank the candidates; '{estimator_name}' has none: set {' '.join(settings)}")


class SearchSpace:
    name: str = ""
    ops: Sequence[str] = ()

    def build_supernet(self, estimator: Any, *, num_classes: int, **kwargs: Any) -> nn.Module:
        raise NotImplementedError

    def build_network(self, genotype: Any, *, num_classes: int, **kwargs: Any) -> nn.Module:
        raise NotImplementedError

    def genotype_from_dict(self, data: Dict[str, Any]) -> Any:
        raise NotImplementedError

    def genotype_to_dict(self, genotype: Any) -> Dict[str, Any]:
        raise NotImplementedError

    # ---------------------------------------------------------------- cost model (nas.cost)
    # A space with a cost model sets ``cost_ops`` (its discrete op table) and implements the
    # methods below; see nas/cost/table.py for how they combine.

    def trained_network(self, C: Optional[int] = None, N: Optional[int] = None,
                        layers: Optional[int] = None) -> Dict[str, Any]:
        """``build_network`` keywords of the network a search's cell will be trained in (the
        ``cost.C``/``cost.N``/``cost.layers`` keys; ``None``: the space's evaluation defaults)."""
        raise ConfigError(f"space '{self.name}' has no cost model; the cost keys apply to nb201 and darts")

    def cost_edges(self, *, resolution: int, **network: Any) -> Dict[str, list]:
        """Per choice name, the :class:`nas.cost.EdgeShape` of every edge of every cell."""
        raise NotImplementedError

    def cost_reference(self) -> Any:
        """A genotype whose network measures the skeleton (any valid one)."""
        raise NotImplementedError

    def selected_edges(self, genotype: Any) -> Dict[str, List[Tuple[int, str]]]:
        """Per choice name, the (edge, op) pairs ``genotype`` keeps."""
        raise NotImplementedError

    def derivable(self, model: nn.Module) -> Dict[str, Any]:
        """Per choice name, a bool ``[K]`` or ``[E, K]`` of the candidates derive may pick."""
        raise NotImplementedError

    def check_ops(self, ops: Sequence[str], key: str = "space.ops") -> list:
        unknown = [o for o in ops if o not in self.ops]
        if unknown:
            raise ConfigError(f"{key}: unknown op '{unknown[0]}' for space '{self.name}'; "
                              f"known: {', '.join(self.ops)}")
        if len(set(ops)) != len(ops) or not ops:
            raise ConfigError(f"{key}: give a non-empty list of distinct ops from {', '.join(self.ops)}")
        return list(ops)


def bad_genotype(msg: str) -> CheckpointError:
    return CheckpointError(f"genotype: {msg}")
