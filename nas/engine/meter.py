"""Epoch meters, the steps of an epoch and the loss guard shared by the search loop and
the retrain trainer."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import TrainingError


class Meter:
    """Running sums of loss and accuracy over an epoch. The sums stay on the batches' device, so a
    step never waits for the accelerator; :meth:`result` syncs once."""

    def __init__(self) -> None:
        self._loss: Optional[Tensor] = None
        self._correct: Optional[Tensor] = None
        self.n = 0

    def update(self, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        b = y.shape[0]
        total = loss.detach().float() * b
        correct = (logits.detach().argmax(1) == y).sum()
        self._loss = total if self._loss is None else self._loss + total
        self._correct = correct if self._correct is None else self._correct + correct
        self.n += b

    def loss_sum(self) -> Optional[Tensor]:
        """The running loss sum on the device (None before the first update), not synced."""
        return self._loss

    def all_reduce_(self, sum_over_ranks: Callable[[Tensor], Tensor]) -> "Meter":
        """Replace the sums by their totals over the data-parallel ranks (``sum_over_ranks`` sums a
        tensor over them in place): the epoch's loss and accuracy over the global batches."""
        like = self._loss if self._loss is not None else torch.zeros(())
        t = torch.stack([like.new_tensor(0.0) if self._loss is None else self._loss.double(),
                         like.new_tensor(0.0) if self._correct is None else self._correct.double(),
                         like.new_tensor(float(self.n))]).double()
        sum_over_ranks(t)
        self._loss, self._correct, self.n = t[0], t[1], int(t[2])
        return self

    def result(self) -> Dict[str, float]:
        n = max(self.n, 1)
        loss = 0.0 if self._loss is None else float(self._loss)
        correct = 0 if self._correct is None else int(self._correct)
        return {"loss": loss / n, "acc": 100.0 * correct / n}


def steps_in_epoch(loader: Any, max_steps: Optional[int]) -> int:
    """The batches of ``loader`` an epoch runs: all, or at most ``max_steps`` (smoke runs)."""
    n = len(loader)
    return min(n, max_steps) if max_steps else n


# The loss is checked at every step on the CPU (free) and every SYNC_EVERY steps on an
# accelerator, where each check is a device sync that stalls the launch queue.
SYNC_EVERY = 50
# A run whose epoch-mean loss grows this many times beyond its first step's has diverged.
DIVERGENCE_FACTOR = 100.0


def loss_causes(grad_clip: float, rates: Sequence[Tuple[str, str, float, Optional[float]]], *more: str) -> str:
    """The settings that most often make a run's loss explode, with their values, for
    :class:`LossGuard`: each learning rate ``(what, key, lr, lr_min)`` (its ``lr_min`` named when
    above a tenth of ``lr``: the cosine schedule keeps it high), ``more`` (a run's own, e.g. the
    estimator's temperature), and no gradient clipping."""
    causes = [f"{what} too high ({key}.lr={lr:g}"
              + (f", {key}.lr_min={lr_min:g})" if lr_min is not None and lr_min > lr / 10 else ")")
              for what, key, lr, lr_min in rates]
    causes += more
    if grad_clip == 0:
        causes.append("no gradient clipping (trainer.grad_clip=0)")
    return ", ".join(causes)


class LossGuard:
    """Ends a run whose loss is no longer a number (NaN/inf) or has diverged while staying finite:
    the running mean of the epoch's loss above ``factor`` times the loss of the run's first step
    (at least 1: with K >= 2 classes the first loss is about ln K). The first step, not the first
    epoch, is the reference because a run with a learning rate far too high (optim.weights.lr=300)
    diverges within its first epoch. ``causes`` names the settings to look at, with their values;
    the run adds what it leaves behind (:class:`~nas.errors.TrainingError`)."""

    def __init__(self, causes: str, factor: float = DIVERGENCE_FACTOR,
                 reduce: Optional[Callable[[Tensor], Tensor]] = None):
        self.causes = causes
        self.factor = factor
        self.start: Optional[float] = None
        # data parallel (nas.engine.prepare.RunHooks.loss_reduce): sums a tensor over the ranks in
        # place. The guard then judges the global batch's loss, so every rank reaches the same
        # verdict at the same step (a rank whose own batches went wrong never leaves the others
        # waiting in an all-reduce)
        self.reduce = reduce

    def due(self, loss: Tensor, step: int, last: bool) -> bool:
        """Whether :meth:`check` looks at the loss at this step (else it returns at once)."""
        return loss.device.type == "cpu" or self.start is None or (step + 1) % SYNC_EVERY == 0 or last

    def check(self, loss: Tensor, meter: Meter, epoch: int, step: int, last: bool, n: int = 1) -> None:
        """After ``meter.update(loss, ...)`` of step ``step`` of ``epoch`` (both from 0); ``n``:
        the step's batch size (the weight of this rank's loss when data parallel)."""
        if not self.due(loss, step, last):
            return
        on_cpu = loss.device.type == "cpu"
        first = self.start is None
        step_loss, mean = self._losses(loss, meter, n)
        value = step_loss if on_cpu or first else mean
        where = f"epoch {epoch + 1} step {step + 1}" if on_cpu or first else \
            f"epoch {epoch + 1}, one of the steps up to {step + 1}"
        if not math.isfinite(value) and first and epoch == step == 0:  # the initial weights: no update made it so
            raise TrainingError(f"the loss was {value} at the first step ({where}), before any update, so no learning "
                                f"rate caused it; likely causes: an op or user module that outputs non-finite values "
                                f"(space.ops, imports), or non-finite inputs in the data")
        if not math.isfinite(value):
            raise TrainingError(f"the loss became {value} in {where}; likely causes: {self.causes}")
        if first:
            self.start = value
        mean = mean if on_cpu and meter.n else value
        limit = self.factor * max(self.start, 1.0)
        if mean > limit:
            raise TrainingError(f"the loss diverged: {mean:.4g} in {where}, over {self.factor:g}x the "
                                f"first step's {self.start:.4g}; likely causes: {self.causes}")

    def _losses(self, loss: Tensor, meter: Meter, n: int) -> Tuple[float, float]:
        """(this step's loss, the epoch's running mean loss): over every rank's batches when
        data parallel (one all-reduce), else this process's (one sync)."""
        step_loss = loss.detach().float()
        total = meter.loss_sum()
        if self.reduce is None:
            value = float(step_loss)
            return value, (float(total) / meter.n if total is not None and meter.n else value)
        t = torch.stack([step_loss.double() * n, step_loss.new_tensor(float(n), dtype=torch.float64),
                         (total if total is not None else step_loss.new_zeros(())).double(),
                         step_loss.new_tensor(float(meter.n), dtype=torch.float64)])
        t = self.reduce(t).tolist()
        return t[0] / max(t[1], 1.0), (t[2] / t[3] if t[3] else t[0] / max(t[1], 1.0))

    def state_dict(self) -> Dict[str, Optional[float]]:
        return {"start": self.start}

    def load_state_dict(self, state: Optional[Dict[str, Optional[float]]]) -> None:
        self.start = (state or {}).get("start")
