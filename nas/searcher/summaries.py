"""What a search adds to the generic :class:`~nas.engine.monitor.Monitor`: per-choice
probabilities, entropies, noise and flip statistics, heatmaps and cell diagrams (tags listed in
:mod:`nas.engine.monitor`)."""
from __future__ import annotations

import math
import re
from typing import Any, Dict

import torch
from torch import nn

from ..supernet.model import Supernet

from ..engine.monitor import Monitor
from ..supernet.choice import Choice, choices


def entropies(p: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each row of a categorical distribution ``[E, K]``, or of each Bernoulli gate ``[E]``."""
    p = p.detach().float()
    q = p.clamp_min(1e-12)
    if p.dim() == 1:
        r = (1 - p).clamp_min(1e-12)
        return -(p * q.log() + (1 - p) * r.log())
    return -(p * q.log()).sum(-1)


def choice_entropy(p: torch.Tensor) -> float:
    """Mean entropy (nats) over the rows of a categorical distribution, or of Bernoulli gates."""
    return float(entropies(p).mean())



def _tag(name: str) -> str:
    return name[len("arch."):] if name.startswith("arch.") else name


# Choices with more entries than this (a DNF rule pool, per-channel L0 gates) are summarised
# (mean entropy, mean P(open)) instead of one curve and one heatmap row per entry.
DETAIL_MAX = 64


def detailed(ch: Choice) -> bool:
    return len(ch.labels) <= DETAIL_MAX


def choice_scalars(model: nn.Module) -> Dict[str, float]:
    """Entropy, candidate probabilities and noise σ statistics of every choice."""
    out: Dict[str, float] = {}
    for cname, ch in choices(model).items():
        tag = _tag(cname)
        p = ch.probs()
        h = entropies(p)
        out[f"entropy/{tag}/mean"] = float(h.mean())
        if not detailed(ch) and p.dim() == 1:
            out[f"probs/{tag}/mean"] = float(p.float().mean())
        for e, label in enumerate(ch.labels if detailed(ch) else ()):
            out[f"entropy/{tag}/{label}"] = float(h[e])
            if p.dim() == 2:
                for k, op in enumerate(ch.candidates):
                    out[f"probs/{tag}/{label}/{op}"] = float(p[e, k])
            else:
                out[f"probs/{tag}/{label}"] = float(p[e])
        sigma = [t.detach().float().flatten() for t in ch.parameters_by_role("noise")]
        if sigma:
            s = torch.cat(sigma)
            out.update({f"noise/{tag}/mean": float(s.mean()), f"noise/{tag}/min": float(s.min()),
                        f"noise/{tag}/max": float(s.max())})
    return out


def probs_layout(model: nn.Module) -> Dict[str, Dict[str, list]]:
    """One Custom Scalars chart per edge with a curve per candidate."""
    charts: Dict[str, Dict[str, list]] = {}
    for cname, ch in choices(model).items():
        tag = _tag(cname)
        if not detailed(ch):
            continue
        if ch.kind == "categorical":
            charts[f"probs/{tag}"] = {f"{tag} {label}": [re.escape(f"probs/{tag}/{label}/") + ".*"]
                                      for label in ch.labels}
        else:
            charts[f"probs/{tag}"] = {f"{tag} gates": [re.escape(f"probs/{tag}/") + ".*"]}
    return charts


class SearchSummaries:
    """Writes the per-epoch search pictures and statistics to a :class:`Monitor`; remembers the
    discrete state of the previous epoch to count Bop flips."""

    def __init__(self, monitor: Monitor, model: Supernet, space: Any = None):
        self.monitor, self.model, self.space = monitor, model, space
        self.prev = self._discrete()
        monitor.layout(probs_layout(model))

    def _discrete(self) -> Dict[str, torch.Tensor]:
        return {_tag(n): torch.cat([t.detach().flatten().cpu().clone() for t in ch.parameters_by_role("discrete")])
                for n, ch in choices(self.model).items() if any(True for _ in ch.parameters_by_role("discrete"))}

    def scalars(self) -> Dict[str, float]:
        out = choice_scalars(self.model)
        out.update(self.model.scalars())  # the supernet's own (L0 gates: penalty, open gates)
        now = self._discrete()
        for tag, v in now.items():
            if tag in self.prev:
                out[f"discrete/{tag}/changed"] = float((v != self.prev[tag]).sum())
        self.prev = now
        return out

    def images(self, genotype: Any, step: int) -> None:
        from .figures import cell_diagram, cell_edges, heatmap
        m = self.monitor
        for cname, ch in choices(self.model).items():
            if not detailed(ch):
                continue
            tag = _tag(cname)
            m.image(f"choices/{tag}", heatmap(ch.probs(), ch.labels, ch.candidates,
                                              title=f"{tag}: P(candidate | edge), epoch {step}"), step)
        if genotype is not None:
            for cell, edges in (cell_edges(self.space, genotype) if self.space is not None else {}).items():
                m.image(f"cell/{cell}", cell_diagram(edges, title=f"derived {cell} cell, epoch {step}"), step)
            m.text("genotype", str(genotype), step)

    def write(self, step: int, genotype: Any) -> None:
        """Everything of one epoch at TensorBoard step ``step`` (= epochs done)."""
        self.monitor.scalars(self.scalars(), step)
        self.images(genotype, step)
        self.monitor.flush()
