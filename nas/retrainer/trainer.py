"""The retraining loop of a discrete network (DARTS ``train.py`` / NB201 training): SGD with a
cosine learning rate, gradient clipping, auxiliary-head loss ``L + w_aux·L_aux``, drop-path
probability ramped ``p·epoch/epochs``, Cutout on the training batches. Ops with discrete
parameters of their own (DNF rule pools, L0 gates) add their ``penalty()`` to the loss."""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..engine.prepare import RunHooks
from ..engine.meter import LossGuard, Meter, steps_in_epoch
from ..supernet.model import module_penalty
from .augment import cutout

Batch = Tuple[Tensor, Tensor]


def split_outputs(out) -> Tuple[Tensor, Optional[Tensor]]:
    """A network returns ``logits`` or, in training with an auxiliary head, ``(logits, aux)``."""
    return out if isinstance(out, tuple) else (out, None)


class Trainer:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, train_loader: Iterable[Batch], *,
                 epochs: int, grad_clip: float = 5.0, aux_weight: float = 0.4,
                 drop_path_prob: float = 0.0, cutout_length: int = 0, seed: int = 0,
                 max_steps_per_epoch: Optional[int] = None,
                 loss_causes: str = "a learning rate too high (optim.lr), no gradient clipping (trainer.grad_clip=0)",
                 hooks: Optional[RunHooks] = None):
        self.model, self.opt, self.sched, self.train_loader = model, optimizer, scheduler, train_loader
        self.epochs, self.grad_clip, self.aux_weight = epochs, grad_clip, aux_weight
        self.drop_path_prob, self.cutout_length = drop_path_prob, cutout_length
        self.max_steps = max_steps_per_epoch
        self.cutout_generator = torch.Generator().manual_seed(seed)
        # the run's hooks (nas.engine.prepare.RunHooks): mixed precision; data parallelism, where
        # `grad` averages the gradients over the ranks, `world` sums the meters and the guard the loss
        hooks = hooks if hooks is not None else RunHooks()
        self.autocast: Callable[[], object] = hooks.autocast
        self.grad = hooks.grad_step()
        self.world = hooks.world
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.guard = LossGuard(loss_causes, reduce=hooks.loss_reduce())

    def steps_per_epoch(self) -> int:
        return steps_in_epoch(self.train_loader, self.max_steps)

    def train_epoch(self, epoch: int, on_step: Optional[Callable[[int, Callable[[], Dict[str, float]]], None]] = None
                    ) -> Dict[str, float]:
        self.model.train()
        # read by networks with drop-path (nas.spaces.base.Network), unread by the others
        self.model.drop_path_prob = self.drop_path_prob * epoch / max(self.epochs, 1)
        meter, steps = Meter(), self.steps_per_epoch()
        for step, (x, y) in enumerate(self.train_loader):
            if step >= steps:
                break
            x = cutout(x, self.cutout_length, self.cutout_generator)
            self.opt.zero_grad(set_to_none=True)
            with self.autocast():
                logits, aux = split_outputs(self.model(x))
                loss = F.cross_entropy(logits, y)
                if aux is not None:
                    loss = loss + self.aux_weight * F.cross_entropy(aux, y)
            pen = module_penalty(self.model)
            if pen is not None:
                loss = loss + pen
            meter.update(loss, logits, y)
            self.guard.check(loss, meter, epoch, step, step == steps - 1, len(y))
            self.grad.backward(loss, self.params, len(y))
            self.grad.step([self.opt], self.params, self.grad_clip)
            if on_step is not None:
                on_step(step, meter.result)
        self.sched.step()
        return {f"train_{k}": v for k, v in self.world.reduce_meter(meter).result().items()}

    @torch.no_grad()
    def evaluate(self, loader: Iterable[Batch]) -> Dict[str, float]:
        """Loss and accuracy over ``loader`` (data parallel: over every rank's shard, with rank
        0's BN statistics, as DDP's buffer broadcast would have them)."""
        self.world.sync_module(self.model, buffers_only=True)
        self.model.eval()
        meter = Meter()
        for x, y in loader:
            if len(y) == 0:  # a last batch too small to reach this rank
                continue
            with self.autocast():
                logits, _ = split_outputs(self.model(x))
                loss = F.cross_entropy(logits, y)
            meter.update(loss, logits, y)
        self.model.train()
        return self.world.reduce_meter(meter).result()

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optim": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "cutout": self.cutout_generator.get_state(),
                "scaler": self.grad.state_dict(), "loss_guard": self.guard.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optim"])
        self.sched.load_state_dict(state["sched"])
        self.cutout_generator.set_state(state["cutout"])
        self.grad.load_state_dict(state.get("scaler"))
        self.guard.load_state_dict(state.get("loss_guard"))  # absent in checkpoints before it
