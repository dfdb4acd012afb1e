"""The search loop: weights and architecture trained alternately (first-order DARTS / GDAS, weight
step first as in the NB201 code) or jointly from one backward pass (SNAS single level).

Liu et al. 2019 (DARTS §2.3), Dong & Yang 2019 (GDAS), Xie et al. 2019 (SNAS).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..engine.meter import LossGuard, Meter, steps_in_epoch
from ..errors import NasError
from ..estimators.base import Estimator
from ..supernet.model import Supernet
from ..engine.prepare import RunHooks
from .hooks import SearchHook
from .optim import Optimizers
from .unrolled import unrolled_arch_backward

# α are logits (log-odds up to a constant): one step that moves one by more than 10 changes a
# choice's odds e^10 ≈ 22,000-fold, which no sensible architecture step does (Adam moves α by
# about optim.arch.lr per step, at most ~16·lr with DARTS's betas); it means α jumps back and forth
ARCH_STEP_LIMIT = 10.0

Batch = Tuple[Tensor, Tensor]


def beta_decay_penalty(logits: Iterable[Tensor]) -> Optional[Tensor]:
    """β-DARTS's Beta-Decay regulariser (Ye et al., CVPR 2022): the mean over the categorical
    choices (rows of every 2-D logit tensor) of ``logsumexp(α_row)``. Its gradient is ``softmax(α)``,
    so it pulls the largest logits down hardest and keeps α from running away to one candidate
    (the skip connection of a collapsing DARTS). Binary gates (1-D logits) are left out."""
    rows = [torch.logsumexp(a, dim=-1) for a in logits if a.dim() == 2]
    return torch.cat(rows).mean() if rows else None


def aux_skip_at(beta0: float, beta_end: float, epochs_done: float, epochs: int) -> float:
    """β of the auxiliary skip after ``epochs_done`` of ``epochs``: linear from β0 to β_end."""
    return beta0 + (beta_end - beta0) * min(1.0, epochs_done / max(epochs, 1))


@contextmanager
def frozen(params: List[nn.Parameter]) -> Iterator[None]:
    """``requires_grad=False`` on ``params`` while the forward graph is built. The weight step
    never uses the architecture's gradients, and autograd's ``inputs=`` pruning skips only the
    built-in kernels' unused outputs: a custom Function's backward (the fused node sums' ``<g, t>``
    per weighted term) and the small ops that gather the mixing weights would still run. Values
    and weight gradients are unchanged; the one visible difference is that a candidate whose
    weight is exactly 0 (a one-hot STE/Bop state) is skipped in the weight step, so its BN running
    statistics are updated by the architecture steps only."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class Searcher:
    """Trains a :class:`~nas.supernet.model.Supernet`'s weights and architecture on two loaders.

    ``mode="alternating"``: per train batch a weight step (SGD on ``L_train``), then an
    architecture step on the next val batch (``L_val`` + the supernet's penalty + β-DARTS's
    regulariser; ``order=2``: DARTS's unrolled gradient, :mod:`nas.searcher.unrolled`).
    ``mode="joint"``: one backward of ``L_train`` + penalty updates both (SNAS single level).
    Architecture steps start after ``warmup_epochs``. ``hooks``: the run's mixed precision and
    data parallelism (:class:`~nas.engine.prepare.RunHooks`; default: one process, full precision). The estimator's schedules and the
    auxiliary skip β follow the progress per step. ``optimizers``: from
    :func:`nas.searcher.optim.build_optimizers`. ``step_hooks``: regularisers and step hooks
    (:mod:`nas.searcher.hooks`: SDARTS, Λ-DARTS, OLES, FairDARTS's and DrNAS's regularisers),
    called at fixed points of every step.
    """

    def __init__(self, model: Supernet, estimator: Estimator, optimizers: Optimizers,
                 train_loader: Iterable[Batch], val_loader: Iterable[Batch], *, epochs: int,
                 mode: str = "alternating", order: int = 1, warmup_epochs: int = 0,
                 grad_clip: float = 5.0, max_steps_per_epoch: Optional[int] = None,
                 beta_decay: float = 0.0, aux_skip: float = 0.0, aux_skip_end: float = 0.0,
                 step_hooks: Sequence[SearchHook] = (),
                 loss_causes: str = "a learning rate too high (optim.weights.lr, optim.arch.lr), "
                                    "no gradient clipping (trainer.grad_clip=0)",
                 hooks: Optional[RunHooks] = None):
        if mode not in ("alternating", "joint"):
            raise NasError(f"optim.mode: unknown mode '{mode}'; allowed: alternating, joint")
        if order == 2 and mode != "alternating":
            raise NasError("optim.order=2 needs optim.mode=alternating (the unrolled step uses a val batch)")
        self.model, self.estimator, self.opt = model, estimator, optimizers
        self.train_loader, self.val_loader = train_loader, val_loader
        self.epochs, self.mode, self.order = epochs, mode, order
        self.warmup_epochs, self.grad_clip = warmup_epochs, grad_clip
        self.max_steps = max_steps_per_epoch
        # β-DARTS weight λ_t = λ·epoch/epochs (their NB201 code: 50·epoch/100), set per epoch
        self.beta_decay, self.beta_weight = beta_decay, 0.0
        if beta_decay < 0:
            raise NasError(f"optim.arch.beta_decay must be >= 0 (0 turns it off), got {beta_decay}")
        if beta_decay > 0 and beta_decay_penalty(optimizers.arch_params.get("logits", [])) is None:
            raise NasError(f"optim.arch.beta_decay regularises categorical logits; estimator "
                           f"'{estimator.name}' has none here: set optim.arch.beta_decay=0")
        if aux_skip < 0 or aux_skip_end < 0:
            raise NasError(f"optim.aux_skip and optim.aux_skip_end must be >= 0 (0 turns it off), "
                           f"got {aux_skip} and {aux_skip_end}")
        self.aux_skip, self.aux_skip_end = aux_skip, aux_skip_end
        self.aux_on = aux_skip > 0 or aux_skip_end > 0
        if not isinstance(model, Supernet):
            raise TypeError(f"the search loop trains a nas.spaces.base.Supernet, got {type(model).__name__}: "
                            f"subclass Supernet (it gives every method the loop calls a default)")
        if self.aux_on and not model.has_aux_skip:
            raise NasError(f"optim.aux_skip: this supernet ({type(model).__name__}) has no auxiliary "
                           f"skip (the nb201 and darts spaces have); set optim.aux_skip=0")
        self.weights = model.weight_parameters()
        # listed once: on the single-path step, walking the module tree per zero_grad cost ~5%
        self.params = list(model.parameters())
        # the run's hooks: mixed precision, and data parallelism, where the GradSteps average
        # every gradient over the ranks, `world` sums the meters and the guard the loss
        hooks = hooks if hooks is not None else RunHooks()
        self.guard = LossGuard(loss_causes, reduce=hooks.loss_reduce())
        self.autocast: Callable[[], object] = hooks.autocast
        self.weight_grad, self.arch_grad = hooks.grad_step(), hooks.grad_step()
        self.arch_grad_abs: Any = 0.0  # Σ|∂L/∂α| of the epoch so far (note_arch_grads)
        self.arch_steps = 0  # architecture updates of the epoch so far
        self.arch_step_max: Any = 0.0  # the largest |Δα| of one architecture step this epoch (_stepped)
        self.world = hooks.world
        self.step_hooks = list(step_hooks)
        for h in self.step_hooks:
            h.bind(self)

    # ------------------------------------------------------------------ steps
    def loss(self, x: Tensor, y: Tensor, with_penalty: bool) -> Tuple[Tensor, Tensor]:
        with self.autocast():
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
        if with_penalty:
            pen = self.model.penalty()
            if pen is not None:
                loss = loss + pen
            if self.beta_weight > 0:
                beta = beta_decay_penalty(self.opt.arch_params.get("logits", []))
                if beta is not None:
                    loss = loss + self.beta_weight * beta
            for h in self.step_hooks:
                term = h.arch_term()
                if term is not None:
                    loss = loss + term
        return loss, logits

    def weight_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """``L_train`` as the weight step computes it (architecture frozen, no penalty): what
        the step hooks differentiate (SDARTS's PGD, Λ-DARTS's finite differences)."""
        with frozen(self.arch_trainable()):
            return self.loss(x, y, with_penalty=False)[0]

    def zero_grad(self) -> None:
        """``model.zero_grad(set_to_none=True)`` without walking the module tree."""
        for p in self.params:
            p.grad = None

    def weight_step(self, x: Tensor, y: Tensor, update_arch: bool = False) -> Tuple[Tensor, Tensor]:
        """SGD on the weights from ``L_train``; with ``update_arch`` (joint mode) the same backward,
        of ``L_train`` + penalty, also updates the architecture."""
        for h in self.step_hooks:
            h.before_weight_step(x, y)
        try:
            self.zero_grad()
            arch = self.arch_trainable() if update_arch else []
            with nullcontext() if update_arch else frozen(self.arch_trainable()):
                loss, logits = self.loss(x, y, with_penalty=update_arch)
            # one loss, one scale: the weight and architecture optimizers step under one scaler
            self.weight_grad.backward(loss, self.weights + arch, len(y))
            for h in self.step_hooks:
                h.after_weight_backward(x, y)
            self.note_arch_grads(arch)
        finally:
            for h in self.step_hooks:
                h.after_weight_step()
        with self._stepped(arch if update_arch else []):
            self.weight_grad.step([self.opt.weights] + ([self.opt.arch, self.opt.discrete] if update_arch else []),
                                  self.weights, self.grad_clip)
        if update_arch:
            self.arch_steps += 1
            self.estimator.after_step(self.opt.arch_params)
        return loss, logits

    def note_arch_grads(self, params: List[nn.Parameter]) -> None:
        """Add ``Σ|∂L/∂α|`` to the epoch's sum (a tensor: no device sync per step). Zero over an
        epoch means the architecture learned nothing, e.g. a temperature so low that the
        relaxation saturated (run.py warns)."""
        for p in params:
            if p.grad is not None:
                self.arch_grad_abs = p.grad.detach().abs().sum().float() + self.arch_grad_abs

    def arch_update(self) -> None:
        self.arch_steps += 1
        params = self.arch_trainable()
        self.note_arch_grads(params)
        with self._stepped(params):
            self.arch_grad.step([self.opt.arch, self.opt.discrete])
        self.estimator.after_step(self.opt.arch_params)

    @contextmanager
    def _stepped(self, params: List[nn.Parameter]) -> Iterator[None]:
        """Keep the epoch's largest ``|Δα|`` of one step inside (a tensor: no device sync per
        step); far above any sensible step it means a learning rate that makes α jump (run.py
        warns, :data:`ARCH_STEP_LIMIT`)."""
        before = [p.detach().clone() for p in params]
        yield
        for b, p in zip(before, params):
            if p.numel():
                self.arch_step_max = torch.maximum((p.detach() - b).abs().max().float(),
                                                   torch.as_tensor(self.arch_step_max, device=p.device))

    def arch_trainable(self) -> List[nn.Parameter]:
        return [p for group in self.opt.arch_params.values() for p in group if p.requires_grad]

    def arch_step(self, x: Tensor, y: Tensor, train_batch: Batch) -> Tuple[Tensor, Tensor]:
        self.zero_grad()
        params = self.arch_trainable()
        if self.order == 2:  # second-order DARTS
            loss, logits = unrolled_arch_backward(self.loss, self.weights, params, self.opt.weights,
                                                  train_batch, (x, y), buffers=list(self.model.buffers()),
                                                  grad_step=self.arch_grad)
        else:
            loss, logits = self.loss(x, y, with_penalty=True)
            # only the architecture's gradients (and those a hook asks for): autograd then skips
            # every other weight-gradient kernel (a conv's grad_weight is about a third of its backward)
            extra = [p for h in self.step_hooks for p in h.arch_grad_params()]
            self.arch_grad.grads(loss, params + extra, len(y))
            for h in self.step_hooks:
                h.after_arch_backward()
        self.arch_update()
        return loss, logits

    def set_aux_skip(self, epochs_done: float) -> None:
        """DARTS-'s auxiliary skip weight ``β = β0 + (β_end - β0)·t/T`` after ``t`` of ``T`` epochs,
        applied per step. The paper decays β linearly from 1 to 0 over the search (β0 = 1,
        β_end = 0); ``β_end = β0`` keeps it constant, this project's variant (docs/results/search-quality.md:
        on the CPU proxy the decay itself drives α to the skip connections that replace it)."""
        if self.aux_on:
            self.model.aux_skip = aux_skip_at(self.aux_skip, self.aux_skip_end, epochs_done, self.epochs)

    # ------------------------------------------------------------------ epochs
    def steps_per_epoch(self) -> int:
        return steps_in_epoch(self.train_loader, self.max_steps)

    def train_epoch(self, epoch: int, on_step: Optional[Callable[[int, Callable[[], Dict[str, float]]], None]] = None
                    ) -> Dict[str, float]:
        self.model.train()
        update_arch = epoch >= self.warmup_epochs
        self.beta_weight = self.beta_decay * epoch / max(self.epochs, 1)
        for h in self.step_hooks:
            h.start_epoch(epoch, self.epochs)
        train_m, val_m = Meter(), Meter()
        self.arch_grad_abs = self.arch_step_max = 0.0
        self.arch_steps = 0
        steps = self.steps_per_epoch()
        val_iter = iter(self.val_loader) if self.mode == "alternating" else None
        for step, (x, y) in enumerate(self.train_loader):
            if step >= steps:
                break
            self.estimator.set_progress(epoch, self.epochs, step, steps)
            self.model.set_progress(epoch, self.epochs, step, steps)  # a cost budget's warm-up
            self.set_aux_skip(epoch + step / steps)
            for h in self.step_hooks:
                h.start_step(epoch, step, steps)
            arch_now = update_arch and not any(h.holds_arch() for h in self.step_hooks)
            loss, logits = self.weight_step(x, y, update_arch=arch_now and self.mode == "joint")
            train_m.update(loss, logits, y)
            if self.mode == "alternating" and arch_now:
                try:
                    xv, yv = next(val_iter)
                except StopIteration:
                    val_iter = iter(self.val_loader)
                    xv, yv = next(val_iter)
                vloss, vlogits = self.arch_step(xv, yv, (x, y))
                val_m.update(vloss, vlogits, yv)
            self.guard.check(loss, train_m, epoch, step, step == steps - 1, len(y))
            if on_step is not None:
                on_step(step, train_m.result)
            # the step's graph goes before the next step's hooks, which may reshape parameters
            # (autograd keeps a parameter's old shape while a graph that reads it is alive)
            loss = logits = vloss = vlogits = None
        self.opt.weights_sched.step()
        self.set_aux_skip(epoch + 1)  # after the last epoch: β_end (DARTS-: 0, the plain supernet)
        out = {f"train_{k}": v for k, v in self.world.reduce_meter(train_m).result().items()}
        if val_m.n:
            out.update({f"search_val_{k}": v for k, v in self.world.reduce_meter(val_m).result().items()})
        return out

    @torch.no_grad()
    def evaluate(self, loader: Iterable[Batch], max_batches: Optional[int] = None) -> Dict[str, float]:
        """Loss and accuracy of the supernet in eval mode (deterministic choices)."""
        self.model.eval()
        m = Meter()
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            loss, logits = self.loss(x, y, with_penalty=False)
            m.update(loss, logits, y)
        self.model.train()
        return m.result()

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optim": self.opt.state_dict(),
                "estimator": self.estimator.state_dict(), "loss_guard": self.guard.state_dict(),
                "scalers": {"weights": self.weight_grad.state_dict(), "arch": self.arch_grad.state_dict()},
                "step_hooks": {h.name: h.state_dict() for h in self.step_hooks}}

    def load_state_dict(self, state: dict) -> None:
        hooks = state.get("step_hooks") or {}
        for h in self.step_hooks:  # the shapes the saved model and optimizer state have
            h.restore_structure(self.model, hooks.get(h.name, {}))
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optim"])
        self.estimator.load_state_dict(state["estimator"])
        self.guard.load_state_dict(state.get("loss_guard"))  # absent in checkpoints before it
        scalers = state.get("scalers") or {}
        self.weight_grad.load_state_dict(scalers.get("weights"))
        self.arch_grad.load_state_dict(scalers.get("arch"))
        for h in self.step_hooks:
            h.load_state_dict(hooks.get(h.name, {}))

    def scalars(self) -> Dict[str, float]:
        """The hooks' current values (ε of SDARTS, λ of Λ-DARTS, ops OLES froze), for logs."""
        return {k: v for h in self.step_hooks for k, v in h.scalars().items()}
