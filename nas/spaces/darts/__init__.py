"""The DARTS search space (Liu et al., ICLR 2019): 8 ops on the 14 edges of normal and reduction
cells with 2 input and 4 intermediate nodes (by default; ``space.ops`` may name any registered op)."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from nas.cost.model import CostModel
from nas.cost.table import EdgeShape
from nas.errors import ConfigError
from nas.blocks.l0 import gate_estimator_for
from nas.estimators.base import Estimator
from nas.ops import check_op_args

from dataclasses import dataclass

from nas.bounds import ranged

from ..base import CellOptions, MaxSkipOptions, SearchSpace, refuse_model_args
from .genotype import GENOTYPES, Genotype, derive_cell, named_genotype
from .network import DartsNetwork
from .ops import PRIMITIVES
from .supernet import DartsSupernet, edge_names, reduction_layers


@dataclass
class DartsOptions(CellOptions):
    """``space.*`` of the darts space (its search network)."""
    C: int = ranged(16, ge=1, help="channels of the first cell")
    layers: int = ranged(8, ge=1, help="cells in the search network")
    steps: int = ranged(4, ge=1, help="intermediate nodes per cell")
    multiplier: int = ranged(4, ge=1, le="steps", help="nodes concatenated into the cell output")
    stem_multiplier: int = ranged(3, ge=1, help="stem channels = stem_multiplier·C")


class DartsSpace(SearchSpace):
    """DARTS (Liu et al. 2019): a normal and a reduction cell of 14 edges over 8 ops, each node
    keeping its 2 strongest non-``none`` inputs at derive."""
    name = "darts"
    ops = PRIMITIVES
    Options = DartsOptions
    DeriveOptions = MaxSkipOptions  # 'none' never derives in darts: no derive.exclude
    derive_options = ("top_k",)
    tiny_supernet = {"C": 2, "layers": 3, "steps": 2, "multiplier": 2, "stem_multiplier": 1}
    tiny_network = {"C": 2, "layers": 3, "stem_multiplier": 1, "auxiliary": True}

    def supernet_kwargs(self, cfg: Any, info: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        s = cfg.space
        return dict(C=s.C, layers=s.layers, steps=s.steps, multiplier=s.multiplier,
                    stem_multiplier=s.stem_multiplier, ops=s.ops, affine=s.affine,
                    derive_max_skip=cfg.derive.max_skip, derive_min_skip=cfg.derive.min_skip,
                    with_aux_skip=cfg.optim.uses_aux_skip,
                    gates=s.gates, l0_lambda=s.l0_lambda, gate_estimator=s.gate_estimator, op_args=s.op_args,
                    partial_channels=s.partial_channels)

    def build_supernet(self, estimator: Estimator, *, num_classes: int, C: int = 16, layers: int = 8,
                       steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3,
                       ops: Optional[Sequence[str]] = None, affine: bool = False, in_channels: int = 3,
                       init_std: float = 1e-3, generator: Optional[torch.Generator] = None,
                       gates: str = "none", l0_lambda: float = 1e-4,
                       derive_max_skip: Optional[int] = None, derive_min_skip: Optional[int] = None,
                       with_aux_skip: bool = False,
                       gate_estimator: Union[str, Estimator, None] = "hard_concrete",
                       op_args: Optional[Mapping[str, Mapping[str, Any]]] = None,
                       partial_channels: int = 1) -> DartsSupernet:
        ops = self.check_ops(ops) if ops else list(PRIMITIVES)
        if all(o == "none" for o in ops):
            raise ConfigError("space.ops: the DARTS derive rule needs at least one op other than 'none'")
        for key, v in (("layers", layers), ("steps", steps), ("C", C), ("stem_multiplier", stem_multiplier)):
            if v < 1:
                raise ConfigError(f"space.{key} must be positive, got {v}")
        if not 1 <= multiplier <= steps:
            raise ConfigError(f"space.multiplier must be in 1..space.steps={steps}, got {multiplier}")
        if C % 2:
            raise ConfigError(f"space.C must be even in the darts space (FactorizedReduce halves it), got {C}")
        if partial_channels > 1 and C % partial_channels == 0 and (C // partial_channels) % 2:
            raise ConfigError(f"space.partial_channels={partial_channels} leaves {C // partial_channels} channels "
                              f"per mixed op; the darts space needs an even number (FactorizedReduce halves it)")
        return DartsSupernet(estimator, num_classes=num_classes, C=C, layers=layers, steps=steps,
                             multiplier=multiplier, stem_multiplier=stem_multiplier, ops=ops,
                             affine=affine, in_channels=in_channels, init_std=init_std, generator=generator,
                             derive_max_skip=derive_max_skip, derive_min_skip=derive_min_skip,
                             with_aux_skip=with_aux_skip, gates=gates,
                             l0_lambda=l0_lambda, gate_estimator=gate_estimator_for(gate_estimator, estimator),
                             op_args=check_op_args(op_args or {}), partial_channels=partial_channels)

    def build_network(self, genotype: Genotype, *, num_classes: int, C: int = 36, layers: int = 20,
                      auxiliary: bool = True, stem_multiplier: int = 3, in_channels: int = 3,
                      op_args: Optional[Mapping[str, Mapping[str, Any]]] = None) -> DartsNetwork:
        return DartsNetwork(genotype, num_classes=num_classes, C=C, layers=layers, auxiliary=auxiliary,
                            stem_multiplier=stem_multiplier, in_channels=in_channels,
                            op_args=check_op_args(op_args or {}, "op_args"))

    def network_kwargs(self, model_cfg: Any) -> Dict[str, Any]:
        m = model_cfg
        refuse_model_args(m, self.name)
        return dict(C=36 if m.C is None else m.C, layers=m.layers, auxiliary=m.auxiliary,  # DARTS's CIFAR C
                    stem_multiplier=m.stem_multiplier)

    def cost_model(self) -> "DartsCostModel":
        return DartsCostModel(self)

    def selected_edges(self, genotype: Genotype) -> Dict[str, List[Tuple[int, str]]]:
        out: Dict[str, List[Tuple[int, str]]] = {}
        for cell in ("normal", "reduce"):
            out[f"arch.{cell}"] = [(sum(m + 2 for m in range(n)) + src, op)
                                   for n, node in enumerate(genotype.nodes(cell)) for op, src in node]
        return out

    def edge_nodes(self, choice: str, edge: int) -> Tuple[int, int]:
        node, first = 0, 0
        while edge >= first + node + 2:  # node n has the n + 2 inputs after the earlier nodes' edges
            first += node + 2
            node += 1
        return node + 2, edge - first

    genotype_hint = f"a named cell ({', '.join(GENOTYPES)}) or 'Genotype(...)'"

    def genotype_from_string(self, text: str) -> Optional[Genotype]:
        if text in GENOTYPES or text.startswith("Genotype("):
            return self.genotype_from_dict({"arch": text})
        return None

    def claims_genotype_dict(self, data: Dict[str, Any]) -> bool:
        return "normal" in data

    def genotype_from_dict(self, data: Dict[str, Any]) -> Genotype:
        return Genotype.from_dict(data)

    def genotype_to_dict(self, genotype: Genotype) -> Dict[str, Any]:
        return genotype.to_dict()


class DartsCostModel(CostModel):
    """The DARTS evaluation network a searched cell is trained in, for :mod:`nas.cost`: ``layers``
    cells, normal and reduction (``arch.normal``, ``arch.reduce``), each node keeping ``top_k`` inputs."""

    def trained_network(self, C: Optional[int] = None, N: Optional[int] = None,
                        layers: Optional[int] = None) -> Dict[str, Any]:
        """DARTS's CIFAR evaluation network by default (C=36, 20 cells), without the auxiliary
        head, which only runs in training."""
        if N is not None:
            raise ConfigError("cost.N applies to the nb201 space; a darts network has cost.C and cost.layers")
        return {"C": 36 if C is None else C, "layers": 20 if layers is None else layers, "auxiliary": False}

    def cell(self, cfg: Any) -> Dict[str, Any]:
        return {"steps": cfg.space.steps, "multiplier": cfg.space.multiplier}

    def edges(self, *, resolution: int, C: int = 36, layers: int = 20, auxiliary: bool = False,
              stem_multiplier: int = 3, steps: int = 4, multiplier: int = 4,
              top_k: int = 2) -> Dict[str, List[EdgeShape]]:
        # the edges' shapes do not depend on how many nodes the output concatenates (multiplier)
        rows: Dict[str, List[EdgeShape]] = {"arch.normal": [], "arch.reduce": []}
        H, C_curr = resolution, C
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            C_curr *= 2 if reduction else 1
            H_out = (H + 1) // 2 if reduction else H
            e = 0
            for n in range(steps):
                for src in range(n + 2):
                    stride = 2 if reduction and src < 2 else 1
                    share = min(top_k, n + 2) / (n + 2)  # derive keeps top_k of the node's n+2 inputs
                    rows["arch.reduce" if reduction else "arch.normal"].append(
                        EdgeShape(e, C_curr, C_curr, stride, H if src < 2 else H_out, H if src < 2 else H_out, share))
                    e += 1
            H = H_out
        return rows

    def reference(self, steps: int = 4, multiplier: int = 4) -> Genotype:
        pairs = tuple(("avg_pool_3x3", src) for _ in range(steps) for src in (0, 1))
        concat = tuple(range(2 + steps - multiplier, steps + 2))
        return Genotype(pairs, concat, pairs, concat)

    def derivable(self, model: DartsSupernet) -> Dict[str, torch.Tensor]:
        keep = torch.tensor([op != "none" for op in model.op_names])  # derive never keeps none
        return {"arch.normal": keep, "arch.reduce": keep}


__all__ = ["DartsSpace", "DartsSupernet", "DartsNetwork", "Genotype", "GENOTYPES", "named_genotype",
           "derive_cell", "edge_names", "PRIMITIVES"]
