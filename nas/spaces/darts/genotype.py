"""The DARTS genotype and the DARTS derive rule (Liu et al., "DARTS", ICLR 2019).

A cell has two input nodes (0: the output of the cell before the previous one, 1: the previous
cell's output) and ``steps`` intermediate nodes ``2 .. steps+1``; node ``n`` reads from nodes
``0 .. n-1``. The genotype lists, per cell type, the ``(op, input)`` pairs of every intermediate
node in order, two per node, and the nodes concatenated into the cell output::

    Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])

That repr is valid Python and parses back with :meth:`Genotype.from_string` (``ast``, no ``eval``).
Published cells live in :data:`GENOTYPES` and are looked up by name.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from nas.errors import CheckpointError
from nas.plugins import RECORD_KEYS

from ..base import check_genotype_ops

Pair = Tuple[str, int]
FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


def _bad(msg: str) -> CheckpointError:
    return CheckpointError(f"genotype: {msg}")


def node_sizes(n_pairs: int, edges_per_node: int) -> List[int]:
    """How many ``(op, input)`` pairs each intermediate node has: ``min(k, n + 2)`` for node
    ``n + 2`` (the first node has only two possible inputs)."""
    sizes, n = [], 0
    while sum(sizes) < n_pairs:
        sizes.append(min(edges_per_node, n + 2))
        n += 1
    if sum(sizes) != n_pairs:
        raise _bad(f"{n_pairs} (op, input) pairs do not make whole nodes of {edges_per_node} inputs")
    return sizes


@dataclass(frozen=True)
class Genotype:
    """Normal and reduction cell of a DARTS network; ``edges_per_node`` is 2 in DARTS (derive's
    top-k) and is shown only when it differs."""

    normal: Tuple[Pair, ...]
    normal_concat: Tuple[int, ...]
    reduce: Tuple[Pair, ...]
    reduce_concat: Tuple[int, ...]
    edges_per_node: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.edges_per_node, int) or self.edges_per_node < 1:
            raise _bad(f"edges_per_node must be a positive integer, got {self.edges_per_node!r}")
        for cell in ("normal", "reduce"):
            pairs = self._pairs(cell, getattr(self, cell))
            concat = self._concat(f"{cell}_concat", getattr(self, f"{cell}_concat"))
            object.__setattr__(self, cell, pairs)
            object.__setattr__(self, f"{cell}_concat", concat)
            n_nodes = len(node_sizes(len(pairs), self.edges_per_node))
            pos = 0
            for n, size in enumerate(node_sizes(len(pairs), self.edges_per_node)):
                for op, src in pairs[pos:pos + size]:
                    if src >= n + 2:
                        raise _bad(f"{cell} node {n + 2} reads from node {src}; it can only read "
                                   f"from nodes 0..{n + 1}")
                pos += size
            bad = [c for c in concat if not 0 <= c < n_nodes + 2]
            if bad:
                raise _bad(f"{cell}_concat lists node {bad[0]}, the cell has nodes 0..{n_nodes + 1}")

    @staticmethod
    def _pairs(cell: str, value: Any) -> Tuple[Pair, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            raise _bad(f"{cell} must be a non-empty list of (op, input) pairs, got {value!r}")
        out = []
        for item in value:
            if (not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 2
                    or not isinstance(item[0], str) or not isinstance(item[1], int) or isinstance(item[1], bool)):
                raise _bad(f"{cell}: {item!r} is not an (op, input) pair such as ('sep_conv_3x3', 0)")
            if item[0] == "none":
                raise _bad(f"{cell}: {item!r} keeps a 'none' edge; a DARTS cell lists only the edges it keeps")
            check_genotype_ops([item[0]], cell)
            if item[1] < 0:
                raise _bad(f"{cell}: input {item[1]} of {item!r} is negative")
            out.append((item[0], item[1]))
        return tuple(out)

    @staticmethod
    def _concat(key: str, value: Any) -> Tuple[int, ...]:
        if isinstance(value, range):
            value = list(value)
        if (isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value
                or not all(isinstance(c, int) and not isinstance(c, bool) for c in value)):
            raise _bad(f"{key} must be a non-empty list of node indices, got {value!r}")
        return tuple(value)

    def __repr__(self) -> str:
        def pairs(p: Tuple[Pair, ...]) -> str:
            return "[" + ", ".join(f"({op!r}, {i})" for op, i in p) + "]"
        extra = f", edges_per_node={self.edges_per_node}" if self.edges_per_node != 2 else ""
        return (f"Genotype(normal={pairs(self.normal)}, normal_concat={list(self.normal_concat)}, "
                f"reduce={pairs(self.reduce)}, reduce_concat={list(self.reduce_concat)}{extra})")

    __str__ = __repr__

    def nodes(self, cell: str) -> List[List[Pair]]:
        """The ``(op, input)`` pairs of each intermediate node of ``cell`` (``normal``/``reduce``)."""
        pairs = getattr(self, cell)
        out, pos = [], 0
        for size in node_sizes(len(pairs), self.edges_per_node):
            out.append(list(pairs[pos:pos + size]))
            pos += size
        return out

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"space": "darts"}
        for cell in ("normal", "reduce"):
            d[cell] = [[op, i] for op, i in getattr(self, cell)]
            d[f"{cell}_concat"] = list(getattr(self, f"{cell}_concat"))
        if self.edges_per_node != 2:
            d["edges_per_node"] = self.edges_per_node
        d["arch"] = repr(self)
        return d

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Genotype":
        """From :meth:`to_dict`'s fields, or from ``arch:`` alone (a ``Genotype(...)`` string or
        the name of a published cell, e.g. ``DARTS_V2``)."""
        if not isinstance(data, dict):
            raise _bad(f"a DARTS genotype.yaml is a mapping with keys {', '.join(FIELDS)}, got {type(data).__name__}")
        if all(k in data for k in FIELDS):
            extra = set(data) - set(FIELDS) - {"space", "arch", "edges_per_node", *RECORD_KEYS}
            if extra:
                raise _bad(f"unknown key '{sorted(extra)[0]}'; a DARTS genotype has {', '.join(FIELDS)}")
            g = cls(**{k: data[k] for k in FIELDS}, edges_per_node=data.get("edges_per_node", 2))
            if isinstance(data.get("arch"), str) and cls.from_string(data["arch"]) != g:
                raise _bad("'arch' and the normal/reduce lists describe different cells; keep one of them")
            return g
        if isinstance(data.get("arch"), str):
            return cls.from_string(data["arch"])
        missing = [k for k in FIELDS if k not in data]
        raise _bad(f"a DARTS genotype.yaml needs {', '.join(FIELDS)} (missing {missing[0]}), or "
                   f"'arch: Genotype(...)', or 'arch: <name>' with a name from {', '.join(GENOTYPES)}")

    @classmethod
    def from_string(cls, text: str) -> "Genotype":
        """Parse ``Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])``
        (as printed by DARTS code; ``range(2, 6)`` is accepted) or a name in :data:`GENOTYPES`."""
        text = text.strip()
        if text in GENOTYPES:
            return GENOTYPES[text]
        try:
            call = ast.parse(text, mode="eval").body
        except SyntaxError:
            call = None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"
                and not call.args):
            raise _bad(f"'{text[:60]}' is neither 'Genotype(normal=..., normal_concat=..., reduce=..., "
                       f"reduce_concat=...)' nor a named genotype ({', '.join(GENOTYPES)})")
        kwargs: Dict[str, Any] = {}
        for kw in call.keywords:
            if kw.arg not in FIELDS + ("edges_per_node",):
                raise _bad(f"unknown Genotype field '{kw.arg}'; fields: {', '.join(FIELDS)}")
            kwargs[kw.arg] = _literal(kw.value, kw.arg)
        missing = [k for k in FIELDS if k not in kwargs]
        if missing:
            raise _bad(f"Genotype(...) lacks {missing[0]}")
        return cls(**kwargs)


def _literal(node: ast.AST, key: str) -> Any:
    # ``range(a, b)`` appears in published genotype files; anything else must be a literal
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords):
        return list(range(*[_literal(a, key) for a in node.args]))
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise _bad(f"{key} is not a literal list") from None


def derive_cell(weights: torch.Tensor, op_names: Sequence[str], steps: int, top_k: int = 2) -> List[Pair]:
    """The DARTS derive rule on one cell's edge weights ``[E, K]`` (edges in the order
    ``2←0, 2←1, 3←0, 3←1, 3←2, ...``): for each intermediate node keep the ``top_k`` incoming
    edges whose strongest non-``none`` op weight is largest, each with that op.

    Ties keep the order of the DARTS code (a stable sort): among equally strong edges the lower
    input wins, among equally strong ops the one listed first.
    """
    w = weights.detach().float().cpu()
    real = [k for k, name in enumerate(op_names) if name != "none"]
    if not real:
        raise ValueError("derive needs at least one candidate other than 'none'")
    gene: List[Pair] = []
    start = 0
    for n in range(steps):
        rows = w[start:start + n + 2, real]                          # [n+2 inputs, K-1]
        best = [max(range(len(real)), key=lambda k: (float(r[k]), -k)) for r in rows]
        strength = [float(r[b]) for r, b in zip(rows, best)]
        edges = sorted(range(n + 2), key=lambda i: -strength[i])[:top_k]
        gene.extend((op_names[real[best[i]]], i) for i in edges)
        start += n + 2
    return gene


def _gene_rows(steps: int, top_k: int) -> List[int]:
    """The first weight row of each gene entry's node: node n keeps min(top_k, n+2) edges, and its
    rows start after the inputs of the nodes before it."""
    return [sum(m + 2 for m in range(n)) for n in range(steps) for _ in range(min(top_k, n + 2))]


def floor_skips(gene: List[Pair], weights: torch.Tensor, op_names: Sequence[str], steps: int, top_k: int = 2,
                min_skip: Optional[int] = None) -> List[Pair]:
    """P-DARTS's constant M from below: while ``gene`` has fewer than ``min_skip`` skip
    connections, the kept edge with the largest skip weight (ties: the earlier) takes
    ``skip_connect``; the edges kept stay the same."""
    if not min_skip or "skip_connect" not in op_names:
        return gene
    skip = list(op_names).index("skip_connect")
    w = weights.detach().float().cpu()
    rows = _gene_rows(steps, top_k)
    gene = list(gene)
    free = [i for i, (op, src) in enumerate(gene) if op != "skip_connect"]
    missing = min_skip - (len(gene) - len(free))
    for i in sorted(free, key=lambda i: (-float(w[rows[i] + gene[i][1], skip]), i))[:max(missing, 0)]:
        gene[i] = ("skip_connect", gene[i][1])
    return gene


def derive_cell_max_skip(weights: torch.Tensor, op_names: Sequence[str], steps: int, top_k: int = 2,
                         max_skip: Optional[int] = None, min_skip: Optional[int] = None) -> List[Pair]:
    """:func:`derive_cell` with at most ``max_skip`` ``skip_connect`` edges (P-DARTS, Chen et al.,
    ICCV 2019, §3.3): while the derived cell has more, the kept skip edge with the smallest skip
    weight loses that candidate and the cell is derived again, so the edge may give way to another
    input of its node as well as to another op. ``None`` sets no limit. With ``min_skip`` the
    cell then has at least that many (:func:`floor_skips`)."""
    w = weights.detach().float().cpu().clone()
    gene = derive_cell(w, op_names, steps, top_k)
    if max_skip is None or "skip_connect" not in op_names:
        return floor_skips(gene, w, op_names, steps, top_k, min_skip)
    skip = list(op_names).index("skip_connect")
    rows = _gene_rows(steps, top_k)
    while sum(op == "skip_connect" for op, _ in gene) > max_skip:
        kept = [rows[i] + src for i, (op, src) in enumerate(gene)
                if op == "skip_connect" and w[rows[i] + src, skip] > float("-inf")]
        if not kept:  # only skip-only edges left: nothing else to give way to
            break
        w[min(kept, key=lambda e: (float(w[e, skip]), -e)), skip] = float("-inf")
        gene = derive_cell(w, op_names, steps, top_k)
    return floor_skips(gene, weights, op_names, steps, top_k, min_skip)


def _g(normal: List[Pair], reduce: List[Pair]) -> Genotype:
    return Genotype(tuple(normal), (2, 3, 4, 5), tuple(reduce), (2, 3, 4, 5))


# Published cells (CIFAR-10), as in the authors' genotype files.
GENOTYPES: Dict[str, Genotype] = {
    # DARTS first order (Liu et al. 2019)
    "DARTS_V1": _g([("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
                    ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
                   [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
                    ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)]),
    # DARTS second order: 2.76±0.09 % test error, 3.3M params
    "DARTS_V2": _g([("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                    ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
                   [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
                    ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)]),
    # GDAS (Dong & Yang 2019), AutoDL-Projects' GDAS_V1
    "GDAS_V1": _g([("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 0), ("sep_conv_5x5", 2),
                   ("sep_conv_3x3", 3), ("skip_connect", 0), ("sep_conv_5x5", 4), ("sep_conv_3x3", 3)],
                  [("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("sep_conv_5x5", 2), ("sep_conv_5x5", 1),
                   ("dil_conv_5x5", 2), ("sep_conv_3x3", 1), ("sep_conv_5x5", 0), ("sep_conv_5x5", 1)]),
    # PC-DARTS (Xu et al. 2020), PC_DARTS_cifar: 2.57±0.07 %, 3.6M
    "PC_DARTS": _g([("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
                    ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
                   [("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
                    ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)]),
    # P-DARTS (Chen et al. 2019)
    "PDARTS": _g([("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
                  ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4)],
                 [("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
                  ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3)]),
}
GENOTYPES["DARTS"] = GENOTYPES["DARTS_V2"]


def named_genotype(name: str) -> Genotype:
    try:
        return GENOTYPES[name]
    except KeyError:
        raise _bad(f"unknown named genotype '{name}'; known: {', '.join(GENOTYPES)}") from None
