"""NAS-Bench-201 genotype: one op per edge of the 4-node cell.

Dong & Yang, "NAS-Bench-201", ICLR 2020. Edges in the order ``1←0, 2←0, 2←1, 3←0, 3←1, 3←2``;
string form ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``. An op is any registered op
(:mod:`nas.ops.registry`); only cells of the benchmark's five have a NAS-Bench-201 accuracy.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

from nas.errors import CheckpointError

from ..base import check_genotype_ops

if TYPE_CHECKING:
    from torch import Tensor

# the benchmark's ops, the space's default candidates (space.ops may name any registered op)
OPS: Tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NODES = 4
EDGES: Tuple[Tuple[int, int], ...] = tuple((j, i) for j in range(1, NODES) for i in range(j))  # (to, from)
EDGE_NAMES: Tuple[str, ...] = tuple(f"{j}<-{i}" for j, i in EDGES)

_NODE_RE = re.compile(r"^\|(.+)\|$")


@dataclass(frozen=True)
class NB201Genotype:
    """``ops[e]`` is the op on edge ``EDGES[e]``; ``widths[e]``, where not None, the share of the
    cell's channels the op of a width-searching edge (``l0_*``) kept at derive, which the
    discrete network builds it at (``widths: {"3<-0": 0.5}`` in a genotype.yaml; the string form
    has no widths)."""

    ops: Tuple[str, ...]
    widths: Tuple[Optional[float], ...] = ()

    def __post_init__(self) -> None:
        if len(self.ops) != len(EDGES):
            raise CheckpointError(f"genotype: an NB201 cell has {len(EDGES)} edges, got {len(self.ops)}")
        check_genotype_ops(self.ops)
        object.__setattr__(self, "ops", tuple(self.ops))
        widths = tuple(self.widths) if any(w is not None for w in self.widths) else ()
        if widths and len(widths) != len(EDGES):
            raise CheckpointError(f"genotype: widths has {len(widths)} entries for {len(EDGES)} edges")
        for e, w in enumerate(widths):
            if w is not None and not (isinstance(w, (int, float)) and 0 < w <= 1):
                raise CheckpointError(f"genotype: widths.{EDGE_NAMES[e]} must be a share of the channels "
                                      f"in (0, 1], got {w!r}")
        object.__setattr__(self, "widths", widths)

    def width(self, e: int) -> Optional[float]:
        """The recorded width of edge ``e`` (None: the op's own, full width)."""
        return self.widths[e] if self.widths else None

    def __str__(self) -> str:
        nodes, e = [], 0
        for j in range(1, NODES):
            nodes.append("|" + "|".join(f"{self.ops[e + i]}~{i}" for i in range(j)) + "|")
            e += j
        return "+".join(nodes)

    @classmethod
    def from_string(cls, arch: str) -> "NB201Genotype":
        """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (whitespace tolerated)."""
        return cls(parse_ops(arch))

    def edges(self) -> List[Tuple[int, int, str]]:
        """``(to, from, op)`` for every edge."""
        return [(j, i, op) for (j, i), op in zip(EDGES, self.ops)]

    def to_dict(self) -> dict:
        out: Dict[str, Any] = {"space": "nb201", "arch": str(self)}
        if self.widths:
            out["widths"] = {EDGE_NAMES[e]: w for e, w in enumerate(self.widths) if w is not None}
        return out

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "NB201Genotype":
        """``{"arch": ..., "widths": {edge: share}}`` (widths optional)."""
        ops = parse_ops(data["arch"])
        given = data.get("widths") or {}
        if not isinstance(given, dict) or not set(given) <= set(EDGE_NAMES):
            raise CheckpointError(f"genotype: widths maps edges ({', '.join(EDGE_NAMES)}) to shares of "
                                  f"the channels, got {given!r}")
        return cls(ops, tuple(given.get(name) for name in EDGE_NAMES))

    def is_connected(self) -> bool:
        """Whether some path of non-``none`` edges leads from the input node 0 to the output node
        3; a cell without one outputs zeros whatever its input (NB201 lists such cells at 10%)."""
        reached = {0}
        for (j, i), op in zip(EDGES, self.ops):  # EDGES go to increasing nodes: one pass suffices
            if op != "none" and i in reached:
                reached.add(j)
        return NODES - 1 in reached


def live_edges(on: "Tensor") -> "Tensor":
    """``[..., 6]`` bool: the edges of ``on`` (``[..., 6]`` bool, non-``none`` edges) that lie on a
    path of ``on`` edges from node 0 to node 3. An ``on`` edge off every such path computes
    nothing the output uses: its input is zero or its output reaches no one."""
    import torch
    reach = [torch.ones_like(on[..., 0])] + [torch.zeros_like(on[..., 0])] * (NODES - 1)
    for e, (j, i) in enumerate(EDGES):  # edges go to increasing nodes: one pass suffices
        reach[j] = reach[j] | (on[..., e] & reach[i])
    co = [torch.zeros_like(on[..., 0])] * (NODES - 1) + [torch.ones_like(on[..., 0])]
    for e in sorted(range(len(EDGES)), key=lambda e: -EDGES[e][1]):  # from the output backwards
        j, i = EDGES[e]
        co[i] = co[i] | (on[..., e] & co[j])
    return torch.stack([on[..., e] & reach[i] & co[j] for e, (j, i) in enumerate(EDGES)], -1)


def all_live(on: "Tensor") -> "Tensor":
    """``[...]`` bool: the cell is connected and every ``on`` edge is live (:func:`live_edges`),
    so no op of it is wasted computation."""
    return on.any(-1) & (live_edges(on) == on).all(-1)


def parse_ops(arch: str) -> Tuple[str, ...]:
    """The six op names of ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (whitespace tolerated),
    checked for the cell's layout but not for the names."""
    arch = arch.strip()
    parts = arch.split("+")
    if len(parts) != NODES - 1:
        raise CheckpointError(f"genotype: '{arch}' is not an NB201 string; expected "
                              f"'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'")
    ops: List[str] = []
    for j, part in enumerate(parts, start=1):
        m = _NODE_RE.match(part.strip())
        items = m.group(1).split("|") if m else []
        if len(items) != j:
            raise CheckpointError(f"genotype: node {j} of '{arch}' must list {j} inputs as |op~i|")
        for i, item in enumerate(items):
            op, _, src = item.partition("~")
            if src != str(i):
                raise CheckpointError(f"genotype: node {j} of '{arch}': expected input ~{i}, got '{item}'")
            ops.append(op)
    return tuple(ops)


def all_genotypes() -> Iterator[NB201Genotype]:
    """All 5^6 = 15,625 cells, in lexicographic order of op indices."""
    for combo in itertools.product(OPS, repeat=len(EDGES)):
        yield NB201Genotype(combo)
