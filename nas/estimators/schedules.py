"""Schedules for temperatures and other annealed hyper-parameters.

A schedule maps training progress ``t ∈ [0, 1]`` to a value between ``start`` and ``end``.
Progress is counted per epoch (``t = epoch / (epochs - 1)``, the GDAS/NB201 rule
``τ = τ_max - (τ_max - τ_min)·epoch/(epochs - 1)``) or per optimisation step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

from ..bounds import ranged
from ..errors import ConfigError
from ..options import option

SCHEDULE_KINDS = Literal["constant", "linear", "exponential", "cosine"]


@dataclass
class TemperatureOptions:
    """The options of an estimator with a temperature τ on a schedule (:meth:`Schedule.of`)."""
    # below 0.01 a relaxation saturates in float32 (exp(-Δα/τ) underflows: no gradient)
    tau: float = ranged(1.0, ge=0.01, le=1e4, help="start temperature τ")
    tau_end: Optional[float] = ranged(None, ge=0.01, le=1e4, help="end temperature (null: τ stays constant)")
    schedule: Optional[SCHEDULE_KINDS] = option(None, help="how τ goes from tau to tau_end (null: linear)")
    per: Literal["epoch", "step"] = option("epoch", help="the schedule counts epochs or steps")

KINDS = ("constant", "linear", "exponential", "cosine")


@dataclass
class Schedule:
    start: float
    end: float
    kind: str = "constant"
    per: str = "epoch"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"schedule: unknown kind '{self.kind}'; allowed: {', '.join(KINDS)}")
        if self.per not in ("epoch", "step"):
            raise ConfigError(f"schedule: per must be 'epoch' or 'step', got '{self.per}'")
        if self.kind == "exponential" and (self.start <= 0 or self.end <= 0):
            raise ConfigError("schedule: an exponential schedule needs positive start and end values")

    @classmethod
    def of(cls, start: float, end: Optional[float] = None, kind: Optional[str] = None,
           per: Optional[str] = None) -> "Schedule":
        """The estimators' convention: no ``end`` means constant; an ``end`` without a ``kind``
        means linear (the GDAS/SNAS rule); ``per`` defaults to epoch."""
        end = start if end is None else end
        return cls(start, end, kind or ("constant" if end == start else "linear"), per or "epoch")

    def value(self, t: float) -> float:
        """Value at progress ``t`` (clamped to [0, 1])."""
        t = min(max(t, 0.0), 1.0)
        if self.kind == "constant":
            return self.start
        if self.kind == "linear":
            return self.start + (self.end - self.start) * t
        if self.kind == "exponential":
            return self.start * (self.end / self.start) ** t
        return self.end + 0.5 * (self.start - self.end) * (1 + math.cos(math.pi * t))

    def progress(self, epoch: int, epochs: int, step: int, steps_per_epoch: int) -> float:
        """Progress of (epoch, step within epoch) under this schedule's counting."""
        if self.per == "epoch":
            return epoch / max(epochs - 1, 1)
        total = max(epochs * steps_per_epoch - 1, 1)
        return (epoch * steps_per_epoch + step) / total
