"""The architecture's path through an NB201 search, read back from the run's TensorBoard log.

Every epoch a search writes the probabilities of each edge's candidates
(``probs/cell/<edge>/<op>``, :mod:`nas.engine.monitor`). From them this module derives, per
epoch, the cell the search would have returned had it stopped there, and the cell of the
**change of the logits over the last epochs**: ``log p_T - log p_k`` equals ``α_T - α_k`` up to a
constant per edge, so its argmax per edge is the op that the architecture steps of epochs k+1..T
favoured, whatever the earlier epochs had put into α. Early architecture steps see untrained
convolutions and favour parameter-free ops (the skip "rush" of the first epoch, see
docs/results/search-quality.md); the change over the last epoch reads the preference of the trained supernet.

This is an analysis of finished runs (the same rule as a search with weight-only warm-up, without
rerunning it), not a derive rule a search applies.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ..errors import CheckpointError

Rows = List[List[float]]  # [edge][op] log-probabilities


def read_log_probs(run_dir: Path, choice: str = "cell") -> Tuple[Dict[int, Rows], List[str], List[str]]:
    """``({epoch: log p [edge][op]}, edges, ops)`` of ``choice`` from ``run_dir/tb``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted((Path(run_dir) / "tb").glob("events.out.tfevents.*"))
    if not files:
        raise CheckpointError(f"{run_dir} has no TensorBoard log (tb/events.out.tfevents.*); "
                              f"give a nas-search run folder")
    values: Dict[str, Dict[int, float]] = {}
    for f in files:  # a resumed run writes a second file; later steps replace earlier ones
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            if tag.startswith(f"probs/{choice}/") and tag.count("/") == 3:
                for ev in acc.Scalars(tag):
                    values.setdefault(tag, {})[ev.step] = ev.value
    if not values:
        raise CheckpointError(f"{run_dir}: the TensorBoard log has no probs/{choice}/<edge>/<op> scalars "
                              f"(a categorical choice named '{choice}', as in the nb201 space)")
    edges: List[str] = []
    ops: List[str] = []
    for tag in values:
        _, _, edge, op = tag.split("/")
        if edge not in edges:
            edges.append(edge)
        if op not in ops:
            ops.append(op)
    epochs = sorted(set.intersection(*(set(v) for v in values.values())))
    out = {t: [[math.log(max(values[f"probs/{choice}/{e}/{o}"][t], 1e-30)) for o in ops] for e in edges]
           for t in epochs}
    return out, edges, ops


def argmax_ops(rows: Rows, ops: Sequence[str], exclude: Sequence[str] = ()) -> List[str]:
    """Per edge the op with the largest value, leaving ``exclude`` out (ties: the first)."""
    allowed = [k for k, o in enumerate(ops) if o not in exclude]
    if not allowed:
        raise ValueError("exclude leaves no op")
    return [ops[max(allowed, key=lambda k: row[k])] for row in rows]


def change(later: Rows, earlier: Rows) -> Rows:
    return [[a - b for a, b in zip(r1, r0)] for r1, r0 in zip(later, earlier)]


def nb201_string(edge_ops: Sequence[str], edges: Sequence[str]) -> str:
    """The NB201 cell string of ops given for edges named as in ``EDGE_NAMES`` (any order)."""
    from nas.spaces.nb201 import EDGE_NAMES, NB201Genotype
    by_edge = dict(zip(edges, edge_ops))
    return str(NB201Genotype(tuple(by_edge[name] for name in EDGE_NAMES)))


def trajectory(run_dir: Path, exclude: Sequence[str] = ()) -> List[Tuple[str, str]]:
    """``[(rule, cell string)]``: ``epoch t`` for every logged epoch, then ``change T-k`` (the argmax
    of ``α_T - α_k``) for every earlier epoch k."""
    logp, edges, ops = read_log_probs(run_dir)
    epochs = sorted(logp)
    last = epochs[-1]
    rows = [(f"epoch {t}", nb201_string(argmax_ops(logp[t], ops, exclude), edges)) for t in epochs]
    rows += [(f"change {last}-{k}", nb201_string(argmax_ops(change(logp[last], logp[k]), ops, exclude), edges))
             for k in epochs[:-1]]
    return rows
