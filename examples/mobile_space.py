"""A search space written as user code: a MobileNet-style chain of mixed layers.

Each layer of the chain (Sandler et al., "MobileNetV2", CVPR 2018; searched layer by layer as in
ProxylessNAS and FBNet) chooses an inverted-residual block, kernel 3 or 5 and expansion 3 or 6
(the ops ``mb_k3_e3`` … ``mb_k5_e6`` registered below; ``space.ops`` may name any registered
op), and learns its width with one L0 gate per output channel (Louizos et al., ICLR 2018). Derive
keeps per layer the estimator's block and as many channels as are open at test time (at least
one). Nothing here edits the package: a config lists this file under ``imports:``

    nas-search examples/mobile_chain.yaml
    nas-retrain examples/retrain_mobile_chain.yaml --genotype runs/<the search>/
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

import nas
from nas.blocks.l0 import gate_estimator_for, make_gate
from nas.errors import CheckpointError, ConfigError
from nas.ops import build_op
from nas.supernet import Choice, MixedOp
from nas.spaces import IMAGE, Network, SearchSpace, Supernet

STAGE_WIDTHS = (1, 2, 4)   # stage widths in units of space.C; every stage after the first halves H, W


class InvertedResidual(nn.Module):
    """1x1 expand → BN → ReLU6 → depthwise k×k (stride) → BN → ReLU6 → 1x1 project → BN, plus
    the input where the shapes allow (MobileNetV2's block)."""

    def __init__(self, C_in: int, C_out: int, stride: int, kernel: int, expansion: int, affine: bool):
        super().__init__()
        hidden = C_in * expansion
        self.block = nn.Sequential(
            nn.Conv2d(C_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden, affine=affine), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden, affine=affine), nn.ReLU6(),
            nn.Conv2d(hidden, C_out, 1, bias=False), nn.BatchNorm2d(C_out, affine=affine))
        self.residual = stride == 1 and C_in == C_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return x + y if self.residual else y


def inverted_residual(kernel: int, expansion: int):
    def build(C_in: int, C_out: int, stride: int, affine: bool, **_: Any) -> nn.Module:
        return InvertedResidual(C_in, C_out, stride, kernel, expansion, affine)
    build.__name__ = build.__qualname__ = f"mb_k{kernel}_e{expansion}"
    return build


BLOCKS: List[str] = []
for k in (3, 5):
    for e in (3, 6):
        nas.register_op(f"mb_k{k}_e{e}")(inverted_residual(k, e))
        BLOCKS.append(f"mb_k{k}_e{e}")


def plan(C: int, N: int) -> List[Tuple[int, int]]:
    """``(C_out, stride)`` of every layer: ``N`` per stage, the first of a later stage strides."""
    return [(C * w, 2 if s > 0 and i == 0 else 1) for s, w in enumerate(STAGE_WIDTHS) for i in range(N)]


@dataclass(frozen=True)
class ChainGenotype:
    """The stem width and ``(op, width, stride)`` of every layer: plain data."""

    stem: int
    layers: Tuple[Tuple[str, int, int], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple((str(o), int(w), int(s)) for o, w, s in self.layers))
        if self.stem < 1 or not self.layers or any(w < 1 or s not in (1, 2) for _, w, s in self.layers):
            raise CheckpointError(f"genotype: a chain needs a stem and layers of width >= 1, stride 1 or 2; "
                                  f"got stem {self.stem}, layers {self.layers}")
        from nas.ops import OPS
        unknown = [o for o, _, _ in self.layers if o not in OPS]
        if unknown:
            raise CheckpointError(f"genotype: unknown op '{unknown[0]}'")

    def __str__(self) -> str:
        return f"stem {self.stem} > " + " > ".join(f"{o} w{w}" + (" s2" if s == 2 else "") for o, w, s in self.layers)

    def to_dict(self) -> Dict[str, Any]:
        return {"space": "mobile_chain", "stem": self.stem, "layers": [list(layer) for layer in self.layers]}


class ChainSupernet(Supernet):
    """The chain with a mixed op and an L0 gate vector per layer; its penalty (the gates' L0
    terms) and scalars come from the :class:`Supernet` defaults."""

    def __init__(self, estimator: Any, *, num_classes: int, C: int, N: int, ops: Sequence[str], in_channels: int,
                 l0_lambda: float, gate_estimator: Any, init_std: float, generator: Optional[torch.Generator]):
        super().__init__()
        self.C, self.op_names = C, list(ops)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C), nn.ReLU6())
        self.strides, self.layers, self.gates = [], nn.ModuleList(), nn.ModuleList()
        C_in = C
        for C_out, stride in plan(C, N):
            # the run's estimator reaches ops with discrete parameters of their own (dnf_1x1)
            self.layers.append(MixedOp([build_op(op, C_in, C_out, stride, False, estimator=estimator,
                                                 generator=generator, l0_lambda=l0_lambda) for op in ops], ops))
            self.gates.append(make_gate(C_out, l0_lambda, gate_estimator, generator=generator))
            self.strides.append(stride)
            C_in = C_out
        self.classifier = nn.Linear(C_in, num_classes)
        self.arch = nn.ModuleDict({"layers": Choice(estimator, len(self.layers), ops, init_std=init_std,
                                                    generator=generator,
                                                    labels=[f"layer{i}" for i in range(len(self.layers))])})

    def forward(self, x: Tensor) -> Tensor:
        sample = self.arch["layers"]()
        x = self.stem(x)
        for i, (layer, gate) in enumerate(zip(self.layers, self.gates)):
            x = layer(x, sample.weights[i], None if sample.index is None else sample.index[i])
            x = x * gate().view(1, -1, 1, 1)   # the layer's width: closed channels are zero
        return self.classifier(x.mean((2, 3)))

    def genotype(self) -> ChainGenotype:
        picks = self.arch["layers"].derive().tolist()
        widths = [max(1, int(g.open().sum())) for g in self.gates]
        return ChainGenotype(self.C, tuple((self.op_names[k], w, s) for k, w, s in zip(picks, widths, self.strides)))


class ChainNetwork(Network):
    """The discrete chain of a genotype: each layer its op at its derived width."""

    def __init__(self, genotype: ChainGenotype, *, num_classes: int, in_channels: int = 3,
                 op_args: Optional[Dict[str, Dict[str, Any]]] = None):
        super().__init__()
        op_args = op_args or {}
        self.stem = nn.Sequential(nn.Conv2d(in_channels, genotype.stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(genotype.stem), nn.ReLU6())
        layers, C_in = [], genotype.stem
        for op, width, stride in genotype.layers:
            layers.append(build_op(op, C_in, width, stride, True, **op_args.get(op, {})))
            C_in = width
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(C_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.layers(self.stem(x)).mean((2, 3)))


@nas.register_space("mobile_chain")
class MobileChainSpace(SearchSpace):
    ops = tuple(BLOCKS)
    data_kind = IMAGE
    # its space.* keys are the keywords of build_supernet (C, N, ops, l0_lambda, gate_estimator):
    # the default supernet_kwargs passes them, and any other key is refused when the config loads
    tiny_supernet = {"C": 4, "N": 1}
    tiny_network: Dict[str, Any] = {}

    def build_supernet(self, estimator: Any, *, num_classes: int, C: int = 16, N: int = 2,
                       ops: Optional[Sequence[str]] = None, in_channels: int = 3, l0_lambda: float = 1e-4,
                       gate_estimator: Any = "hard_concrete", init_std: float = 1e-3,
                       generator: Optional[torch.Generator] = None) -> ChainSupernet:
        if C < 1 or N < 1:
            raise ConfigError(f"space.C and space.N must be positive, got {C} and {N}")
        # space.gate_estimator: hard concrete (None) or the search's estimator learns the widths
        return ChainSupernet(estimator, num_classes=num_classes, C=C, N=N, ops=self.check_ops(ops or self.ops),
                             in_channels=in_channels, l0_lambda=l0_lambda,
                             gate_estimator=gate_estimator_for(gate_estimator, estimator),
                             init_std=init_std, generator=generator)

    def build_network(self, genotype: ChainGenotype, *, num_classes: int, in_channels: int = 3,
                      op_args: Optional[Dict[str, Dict[str, Any]]] = None) -> ChainNetwork:
        return ChainNetwork(genotype, num_classes=num_classes, in_channels=in_channels, op_args=op_args)

    def genotype_to_dict(self, genotype: ChainGenotype) -> Dict[str, Any]:
        return genotype.to_dict()

    # the TensorBoard cell diagram: layer i is the edge from node i to node i + 1
    def selected_edges(self, genotype: ChainGenotype) -> Dict[str, List[Tuple[int, str]]]:
        return {"arch.layers": [(i, op) for i, (op, _, _) in enumerate(genotype.layers)]}

    def edge_nodes(self, choice: str, edge: int) -> Tuple[int, int]:
        return edge + 1, edge

    def genotype_from_dict(self, data: Dict[str, Any]) -> ChainGenotype:
        try:
            return ChainGenotype(int(data["stem"]), tuple(tuple(layer) for layer in data["layers"]))
        except (KeyError, TypeError, ValueError):
            raise CheckpointError("genotype: a mobile_chain genotype.yaml needs 'stem: <width>' and "
                                  "'layers: [[op, width, stride], ...]'") from None
