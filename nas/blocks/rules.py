"""Readable rules from a DNF block's binary rule pool ``W`` and selector ``S``.

A tower's rule is the disjunction of its selected conjunctions (``S_j = 1``), each the AND of the
literals it includes (``W_ij = 1``). For binary inputs the extracted rule is simplified without
changing its value on any input: a conjunction holding a feature and its negation is always
false and is dropped, duplicates go, and a conjunction that includes another one is absorbed
(``A OR (A AND B) = A``). An empty conjunction is TRUE; an empty disjunction is FALSE.

Text form, one line per tower: ``IF (x3 AND NOT x7) OR (x1) THEN class 1``.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import Tensor

Clause = Tuple[int, ...]   # literal indices: 2k = feature k, 2k+1 = NOT feature k


def clauses_of(W: Tensor, S: Tensor) -> List[Clause]:
    """Simplified clauses of one tower from ``W bool [2K, N]`` and ``S bool [N]``."""
    raw = set()
    for j in torch.nonzero(S, as_tuple=False).flatten().tolist():
        lits = tuple(torch.nonzero(W[:, j], as_tuple=False).flatten().tolist())
        feats = [lit // 2 for lit in lits]
        if len(set(feats)) < len(feats):
            continue  # x AND NOT x: never true on binary inputs
        raw.add(lits)
    kept = [c for c in raw if not any(o != c and set(o) <= set(c) for o in raw)]
    return sorted(kept, key=lambda c: (len(c), c))


def literal_name(lit: int, features: Sequence[str]) -> str:
    name = features[lit // 2]
    return f"NOT {name}" if lit % 2 else name


def literal_index(text: str, features: Sequence[str]) -> int:
    """Inverse of :func:`literal_name`; ``ValueError`` for an unknown feature."""
    neg = text.startswith("NOT ")
    name = text[4:] if neg else text
    return 2 * list(features).index(name) + int(neg)


def rule_text(clauses: Sequence[Sequence[str]], label: str, then: str = "class") -> str:
    """``IF (a AND NOT b) OR (c) THEN class <label>`` from clauses of literal names (``then``
    names what the rule sets: a ``class``, or an ``out`` channel of a DNF op)."""
    if not clauses:
        cond = "FALSE"
    elif any(len(c) == 0 for c in clauses):
        cond = "TRUE"
    else:
        cond = " OR ".join("(" + " AND ".join(c) + ")" for c in clauses)
    return f"IF {cond} THEN {then} {label}"


def clauses_to_tensors(towers: Sequence[Sequence[Clause]], K: int) -> Tuple[Tensor, Tensor]:
    """Binary ``(W [T, 2K, N], S [T, N])`` that realise the given clauses (N = most clauses of a
    tower, at least 1; unused slots are unselected)."""
    N = max([len(cl) for cl in towers] + [1])
    W = torch.zeros(len(towers), 2 * K, N)
    S = torch.zeros(len(towers), N)
    for t, cl in enumerate(towers):
        for j, lits in enumerate(cl):
            S[t, j] = 1
            for lit in lits:
                W[t, lit, j] = 1
    return W, S
