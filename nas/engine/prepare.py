"""What every run does the same way around its loop — a search, a retraining, the benchmarks of
the search step: the model's preparation (:func:`prepare_model`) and the hooks a loop calls on
every step (:class:`RunHooks`: mixed precision and data parallelism), passed to
:class:`~nas.searcher.loop.Searcher` and :class:`~nas.retrainer.trainer.Trainer` when they are built."""
from __future__ import annotations

from typing import Callable, ContextManager, Optional

import torch
from torch import Tensor, nn

from .amp import GradStep, Precision
from .distributed import World
from .runtime import keep_freed_memory
from .sync_bn import convert_sync_bn


def prepare_model(model: nn.Module, world: World, *, sync_bn: bool = False, channels_last: bool = False) -> nn.Module:
    """The model as a run trains it, in this order: BN synchronised over the ranks (``sync_bn``,
    data parallel only; it replaces modules, so before the move), on ``world.device``, in NHWC
    memory format (``channels_last``, a layout: the values are unchanged), and rank 0's parameters
    and buffers on every rank; and the process's allocator set to keep freed memory for the next
    step (:func:`~nas.engine.runtime.keep_freed_memory`). Returns the model to use (a new object
    where BN was replaced)."""
    keep_freed_memory()
    if sync_bn and world.enabled:
        model = convert_sync_bn(model, world)
    model.to(world.device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    world.sync_module(model)
    return model


class RunHooks:
    """What a run adds around a loop's steps, passed to the loop's constructor: the autocast
    context and loss scalers of ``trainer.amp`` (:class:`~nas.engine.amp.Precision`), and the data
    parallelism of ``world`` — every gradient averaged over the ranks (:class:`GradStep`), the
    meters summed, the loss guard judging the global batch. The default: one process, full
    precision, on the CPU."""

    def __init__(self, world: Optional[World] = None, precision: Optional[Precision] = None):
        self.world = world if world is not None else World()
        self.precision = precision if precision is not None else Precision("off", self.world.device)

    def autocast(self) -> ContextManager:
        return self.precision.autocast()

    def grad_step(self) -> GradStep:
        """A fresh :class:`GradStep` (one per kind of step: each has its own loss scale)."""
        return GradStep(self.precision.scaler(), self.world.average if self.world.enabled else None)

    def loss_reduce(self) -> Optional[Callable[[Tensor], Tensor]]:
        """What the loss guard sums its loss with over the ranks (``None``: one process)."""
        if not self.world.enabled:
            return None
        world = self.world
        return lambda t: world.all_reduce(t, "the loss check")


def engine_note(world: World, sync_bn: bool, amp: str) -> str:
    """What a run's first log line says of its engine, where it is not the default."""
    return ((f" ranks={world.size} sync_bn={sync_bn}" if world.enabled else "")
            + (f" amp={amp}" if amp != "off" else ""))
