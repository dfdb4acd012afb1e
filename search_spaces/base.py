"""What a search space provides to the rest of the tool.

A space is a registry entry (``search_spaces.SPACES``) with four jobs, kept apart as in DARTS:
its op table (candidate ops), its supernet (mixed choices, built with an estimator), its genotype
(plain data, YAML round trip) and the discrete network built only from a genotype.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

from torch import nn

from nas.errors import CheckpointError


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

    def check_ops(self, ops: Sequence[str], key: str = "space.ops") -> list:
        from nas.errors import ConfigError
        unknown = [o for o in ops if o not in self.ops]
        if unknown:
            raise ConfigError(f"{key}: unknown op '{unknown[0]}' for space '{self.name}'; "
                              f"known: {', '.join(self.ops)}")
        if len(set(ops)) != len(ops) or not ops:
            raise ConfigError(f"{key}: give a non-empty list of distinct ops from {', '.join(self.ops)}")
        return list(ops)


def bad_genotype(msg: str) -> CheckpointError:
    return CheckpointError(f"genotype: {msg}")
