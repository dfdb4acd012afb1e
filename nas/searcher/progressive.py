"""DrNAS's progressive search (Chen, Wang, Cheng, Tang, Hsieh, "DrNAS: Dirichlet Neural
Architecture Search", ICLR 2021, §3.3; their NAS-Bench-201 code ``train_search_progressive.py``).

The search runs in stages ``s = 1..S`` that share the run's epochs (``stages``: the share of each)
and its one cosine learning-rate schedule. Stage 1 trains partial-channel mixed ops (PC-DARTS, K =
``partial_channels[0]``) over all candidates. Entering stage ``s`` it

* **prunes** every edge to the ``keep[s]`` candidates of largest probability (ranked among those
  still in; the Dirichlet mean, so by α): the others leave the choice
  (:meth:`nas.supernet.Choice.set_mask`), their mixing weight is exactly 0 and the kept ones are
  renormalised per edge, ``w'_k = m_k·w_k / Σ_j m_j·w_j``; their ops no longer run;
* **widens** the candidate ops from ``C/K_{s-1}`` to ``C/K_s`` channels (Net2WiderNet copies,
  :mod:`nas.supernet.widen`), with their SGD momentum, so that the fewer surviving ops see more of
  the channels at about the same memory.

Within every stage the first ``warmup`` share of its steps trains the weights only (the authors'
code: 10 of each stage's 50 epochs). Stage boundaries fall on steps, ``round(Σ_{r≤s} share_r ·
epochs · steps per epoch)``, so short searches change stage mid-epoch as well.

State: the stage entered. The masks travel in the model's state (each choice's ``mask``); a
resume re-widens the ops (:meth:`restore_structure`) before the model and optimizer load theirs.
The widening indices come from a generator seeded by the run's seed and the stage, identical on
every rank.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import torch
from torch import nn

from ..bounds import ranged
from ..errors import CheckpointError
from ..estimators.base import CATEGORICAL
from ..supernet.choice import Choice
from ..supernet.mixed import MixedOp
from ..supernet.widen import check_widening, partial_ops, widen_optimizer_state, widen_partial
from .hooks import SearchHook


def pruned_choices(model: nn.Module) -> List[Choice]:
    """The categorical choices whose candidates are the ops of the model's mixed ops (not, e.g.,
    the edge-normalisation choices of PC-DARTS, whose candidates are edges)."""
    ops = {tuple(m.names) for m in model.modules() if isinstance(m, MixedOp)}
    return [m for m in model.modules()
            if isinstance(m, Choice) and m.kind == CATEGORICAL and tuple(m.candidates) in ops]


def top_mask(probs: torch.Tensor, keep: int, mask=None) -> torch.Tensor:
    """Bool mask of the ``keep`` most probable candidates of each row among those ``mask`` keeps
    (ties: the earlier candidate)."""
    p = probs.detach().float().cpu()
    if mask is not None:
        p = p.masked_fill(~mask, float("-inf"))
    order = torch.sort(-p, dim=-1, stable=True).indices[:, :keep]
    return torch.zeros_like(p, dtype=torch.bool).scatter_(-1, order, True)


class DrNASProgressive(SearchHook):
    """The stages of DrNAS's progressive search (module docstring)."""

    name = "drnas_progressive"

    @dataclass
    class Options:
        stages: List[float] = ranged([0.5, 0.5], gt=0, le=1, help="share of trainer.epochs per stage (sum 1)")
        keep: List[int] = ranged([5, 3], ge=1, help="candidates kept per edge in each stage")
        partial_channels: List[int] = ranged([4, 2], ge=1, help="PC-DARTS K per stage (the first: space.partial_channels)")
        warmup: float = ranged(0.2, ge=0, lt=1, help="share of each stage without architecture steps")

    def __init__(self, options=None):
        super().__init__(options)
        self.stage = -1  # the stage entered last (-1: none yet)
        self.bounds: List[int] = []
        self.held = False
        self.seed = 0  # bind() reads the run's; unbound (nas-derive) the copies are overwritten anyway

    def bind(self, searcher) -> None:
        super().bind(searcher)
        o = self.options
        n = len(o.stages)
        if n < 1 or len(o.keep) != n or len(o.partial_channels) != n:
            raise self.refuse(f"stages, keep and partial_channels need one entry per stage, got "
                              f"{len(o.stages)}, {len(o.keep)} and {len(o.partial_channels)}")
        if abs(sum(o.stages) - 1) > 1e-6:
            raise self.refuse(f"stages are shares of trainer.epochs and must sum to 1, got {o.stages}")
        if any(b > a for a, b in zip(o.keep, o.keep[1:])):
            raise self.refuse(f"keep may only fall from stage to stage (pruned ops stay out), got {o.keep}")
        model = searcher.model
        self.choices = pruned_choices(model)
        if not self.choices:
            raise self.refuse("found no choice among the ops of mixed ops to prune; this space has none")
        most = min(len(c.candidates) for c in self.choices)
        if o.keep[0] > most:
            raise self.refuse(f"keep={o.keep[0]} exceeds the {most} candidates of an edge; keep at most {most}")
        if set(o.partial_channels) != {1} or partial_ops(model):
            check_widening(model, o.partial_channels, self.key + ".partial_channels")
        self.seed = torch.initial_seed()  # the run's seed (seed_everything), the same on every rank

    # ------------------------------------------------------------------ schedule
    def start_step(self, epoch: int, step: int, steps: int) -> None:
        total = self.searcher.epochs * steps
        starts, acc = [], 0.0
        for share in self.options.stages:
            starts.append(round(acc * total))
            acc += share
        starts.append(total)
        g = epoch * steps + step
        target = max(s for s in range(len(self.options.stages)) if starts[s] <= g)
        while self.stage < target:
            self.stage += 1
            self.enter(self.stage)
        s = self.stage
        self.held = g < starts[s] + round(self.options.warmup * (starts[s + 1] - starts[s]))

    def holds_arch(self) -> bool:
        return self.held

    def generator(self, stage: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + stage) % (2 ** 63))

    def enter(self, stage: int) -> None:
        """Prune to ``keep[stage]`` and widen to ``partial_channels[stage]``."""
        keep = self.options.keep[stage]
        with torch.no_grad():
            for c in self.choices:
                kept = len(c.candidates) if c.mask is None else int(c.mask.sum(-1).min())
                if keep < kept:
                    c.set_mask(top_mask(c.probs(), keep, c.mask))
        self._widen(self.searcher.model, self.options.partial_channels[stage], stage,
                    [self.searcher.opt.weights])

    def _widen(self, model: nn.Module, K: int, stage: int, optimizers) -> None:
        mixed = partial_ops(model)
        if not mixed or mixed[0].K == K:
            return
        if mixed[0].K < K:
            raise CheckpointError(f"{self.key}: the supernet's ops already see 1/{mixed[0].K} of the "
                                  f"channels, more than stage {stage + 1}'s 1/{K}; start a new run")
        widened = widen_partial(model, K, self.generator(stage))
        for opt in optimizers:
            widen_optimizer_state(opt, widened)

    # ------------------------------------------------------------------ reporting, resume
    def scalars(self) -> Dict[str, float]:
        return {"stage": float(self.stage + 1)}

    def state_dict(self) -> dict:
        return {"stage": self.stage}

    def restore_structure(self, model: nn.Module, state: dict) -> None:
        stage = state.get("stage", -1)
        if stage >= 0:
            self._widen(model, self.options.partial_channels[stage], stage, [])

    def load_state_dict(self, state: dict) -> None:
        self.stage = state.get("stage", -1)
