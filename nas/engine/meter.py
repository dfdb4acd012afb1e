"""Epoch meters and the finite-loss check shared by the search loop and the retrain trainer."""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import torch
from torch import Tensor

from ..errors import NasError


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


# A non-finite loss is checked at every step on the CPU (free) and every SYNC_EVERY steps on an
# accelerator, where each check is a device sync that stalls the launch queue.
SYNC_EVERY = 50


def check_finite(loss: Tensor, meter: Meter, epoch: int, step: int, last: bool, fix: str) -> None:
    """Raise a one-line :class:`NasError` once the loss is NaN/inf; ``meter`` holds the running sum
    that a non-finite loss poisons, so a deferred check still catches every step since the last."""
    if loss.device.type == "cpu":
        value = loss.detach().float()
    elif (step + 1) % SYNC_EVERY == 0 or last:
        total = meter.loss_sum()
        value = total if total is not None else loss.detach().float()
    else:
        return
    if not math.isfinite(float(value)):
        where = f"step {step}" if loss.device.type == "cpu" else f"one of the steps up to {step}"
        raise NasError(f"loss became {float(value)} at epoch {epoch} {where}; {fix} "
                       f"(checkpoint of the last epoch kept)")
