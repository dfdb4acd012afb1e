"""NAS-Bench-201 (Dong & Yang, ICLR 2020): 5 ops on the 6 edges of a 4-node cell (by default;
``space.ops`` may name any registered op)."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from nas.blocks.l0 import gate_estimator_for
from nas.cost.model import CostModel
from nas.cost.table import EdgeShape
from nas.errors import CheckpointError, ConfigError
from nas.estimators.base import Estimator
from nas.ops import check_op_args

from dataclasses import dataclass

from nas.bounds import ranged
from nas.options import option

from ..base import CellOptions, MaxSkipOptions, SearchSpace, nhwc, refuse_model_args
from .genotype import EDGE_NAMES, EDGES, OPS, NB201Genotype, all_genotypes
from .network import NB201Network

from .supernet import NB201Supernet

@dataclass
class NB201Options(CellOptions):
    """``space.*`` of the nb201 space."""
    C: int = ranged(16, ge=1, help="channels of the first stage")
    N: int = ranged(5, ge=1, help="cells per stage")
    fused: bool = option(True, help="fused cell execution (nas/supernet/fused.py; exact)")
    group_convs: Optional[bool] = option(None, help="fused: one conv per node for same-shaped candidates "
                                                    "(null: not on CPU)")


@dataclass
class NB201DeriveOptions(MaxSkipOptions):
    """``derive.*`` of the nb201 space."""
    exclude: List[str] = option([], help="ops derive never picks ([none]: DARTS's rule, §2.4)")
    budget_extra_skip: int = ranged(0, ge=0, help="under a binding cost.target: up to this many skip edges "
                                                  "beyond max_skip where they buy a costlier cell within it")
    budget_none: Optional[int] = ranged(None, ge=1, help="under a binding cost.target: none may be derived on any "
                                                         "edge, ranked just after its K most probable ops, where no op "
                                                         "is left off an input-output path (null: never)")


class NB201Space(SearchSpace):
    """NAS-Bench-201 (Dong & Yang 2020): a 4-node cell of 6 edges, each choosing one of five ops,
    in a ResNet skeleton of 3 stages of ``N`` cells; derive is the argmax per edge."""
    name = "nb201"
    ops = OPS
    Options = NB201Options
    DeriveOptions = NB201DeriveOptions
    perturbation_choice = "arch.cell"
    tiny_supernet = {"C": 4, "N": 1}
    tiny_network = {"C": 4, "N": 1}

    def supernet_kwargs(self, cfg: Any, info: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        s = cfg.space
        kwargs: Dict[str, Any] = dict(C=s.C, N=s.N, ops=s.ops, affine=s.affine,
                                      derive_exclude=cfg.derive.exclude,
                                      with_aux_skip=cfg.optim.uses_aux_skip,
                                      derive_max_skip=cfg.derive.max_skip,
                                      derive_min_skip=cfg.derive.min_skip,
                                      derive_budget_extra_skip=cfg.derive.budget_extra_skip,
                                      derive_budget_none=cfg.derive.budget_none,
                                      # l0_lambda also weighs the gates of the l0_* candidates
                                      gates=s.gates, l0_lambda=s.l0_lambda, gate_estimator=s.gate_estimator,
                                      op_args=s.op_args, fused=s.fused, channels_last=nhwc(cfg, True),
                                      partial_channels=s.partial_channels, group_convs=s.group_convs)
        return kwargs

    def build_supernet(self, estimator: Estimator, *, num_classes: int, C: int = 16, N: int = 5,
                       ops: Optional[Sequence[str]] = None, affine: bool = False,
                       in_channels: int = 3, init_std: float = 1e-3,
                       generator: Optional[torch.Generator] = None, gates: str = "none",
                       l0_lambda: float = 1e-4, derive_exclude: Sequence[str] = (),
                       with_aux_skip: bool = False, derive_max_skip: Optional[int] = None,
                       derive_min_skip: Optional[int] = None, derive_budget_extra_skip: int = 0,
                       derive_budget_none: Optional[int] = None,
                       gate_estimator: Union[str, Estimator, None] = "hard_concrete",
                       op_args: Optional[Mapping[str, Mapping[str, Any]]] = None,
                       fused: bool = True, channels_last: bool = True, partial_channels: int = 1,
                       group_convs: Optional[bool] = None) -> NB201Supernet:
        ops = self.check_ops(ops) if ops else list(OPS)
        return NB201Supernet(estimator, num_classes=num_classes, C=C, N=N, ops=ops, affine=affine,
                             in_channels=in_channels, init_std=init_std, generator=generator,
                             gates=gates, l0_lambda=l0_lambda, derive_exclude=derive_exclude,
                             with_aux_skip=with_aux_skip, derive_max_skip=derive_max_skip,
                             derive_min_skip=derive_min_skip,
                             derive_budget_extra_skip=derive_budget_extra_skip,
                             derive_budget_none=derive_budget_none,
                             gate_estimator=gate_estimator_for(gate_estimator, estimator),
                             op_args=check_op_args(op_args or {}),
                             fused=fused, channels_last=channels_last, partial_channels=partial_channels,
                             group_convs=group_convs)

    def build_network(self, genotype: NB201Genotype, *, num_classes: int, C: int = 16, N: int = 5,
                      in_channels: int = 3, op_args: Optional[Mapping[str, Mapping[str, Any]]] = None
                      ) -> NB201Network:
        return NB201Network(genotype, num_classes=num_classes, C=C, N=N, in_channels=in_channels,
                            op_args=check_op_args(op_args or {}, "op_args"))

    def network_kwargs(self, model_cfg: Any) -> Dict[str, Any]:
        m = model_cfg
        refuse_model_args(m, self.name)
        darts_only = [k for k, v in (("model.auxiliary", m.auxiliary), ("model.drop_path_prob", m.drop_path_prob)) if v]
        if darts_only:
            raise ConfigError(f"{darts_only[0]} is a DARTS-network setting; the nb201 network has none (set it off)")
        return dict(C=16 if m.C is None else m.C, N=m.N)  # the benchmark's C

    def cost_model(self) -> "NB201CostModel":
        return NB201CostModel(self)

    def selected_edges(self, genotype: NB201Genotype) -> Dict[str, List[Tuple[int, str]]]:
        return {"arch.cell": list(enumerate(genotype.ops))}

    def selected_widths(self, genotype: NB201Genotype) -> Dict[str, Dict[int, float]]:
        return {"arch.cell": {e: w for e, w in enumerate(genotype.widths) if w is not None and genotype.ops[e] != "none"}}

    def edge_nodes(self, choice: str, edge: int) -> Tuple[int, int]:
        return EDGES[edge]

    genotype_hint = "an NB201 string '|op~0|+...'"

    def genotype_from_string(self, text: str) -> Optional[NB201Genotype]:
        return NB201Genotype.from_string(text) if text.startswith("|") else None

    def claims_genotype_dict(self, data: Dict[str, Any]) -> bool:
        return str(data.get("arch", "")).startswith("|")

    def genotype_from_dict(self, data: Dict[str, Any]) -> NB201Genotype:
        if not isinstance(data, dict) or not isinstance(data.get("arch"), str):
            raise CheckpointError("genotype: an NB201 genotype.yaml needs a key 'arch' with the cell "
                                  "string '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'")
        return NB201Genotype.from_dict(data)

    def genotype_to_dict(self, genotype: NB201Genotype) -> Dict[str, Any]:
        return genotype.to_dict()

    def is_connected(self, genotype: NB201Genotype) -> bool:
        return genotype.is_connected()


class NB201CostModel(CostModel):
    """The NB201 network a searched cell is trained in, for :mod:`nas.cost`: three stages of ``N``
    cells, one choice (``arch.cell``) shared by all of them."""

    def trained_network(self, C: Optional[int] = None, N: Optional[int] = None,
                        layers: Optional[int] = None) -> Dict[str, Any]:
        """The benchmark's network by default: C=16, N=5 (NAS-Bench-201 §2.1)."""
        if layers is not None:
            raise ConfigError("cost.layers applies to the darts space; an nb201 network has cost.C and cost.N")
        return {"C": 16 if C is None else C, "N": 5 if N is None else N}

    def edges(self, *, resolution: int, C: int = 16, N: int = 5) -> Dict[str, List[EdgeShape]]:
        rows, H = [], resolution
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage:
                H = (H + 1) // 2  # the ResBlock's stride-2 3x3 conv (padding 1)
            rows += [EdgeShape(e, c, c, 1, H, H) for _ in range(N) for e in range(len(EDGES))]
        return {"arch.cell": rows}

    def reference(self) -> NB201Genotype:
        return NB201Genotype(("none",) * len(EDGES))

    def derivable(self, model: NB201Supernet) -> Dict[str, torch.Tensor]:
        return {"arch.cell": model.derive_allowed}


__all__ = ["NB201Space", "NB201Genotype", "NB201Supernet", "NB201Network", "OPS", "EDGES",
           "EDGE_NAMES", "all_genotypes"]
