"""The estimator interface: how a discrete choice is relaxed or estimated.

An estimator is a small object shared by every choice of a model. It creates the parameters a
choice needs (logits, a discrete state, noise temperatures), turns them into the weights a mixed
op uses in its forward pass, and says which candidate a choice derives to. It knows nothing about
cells, edges or networks: a choice is just a tensor of shape ``[E, K]`` (categorical: E independent
choices among K candidates) or ``[E]`` (binary gates).

Each parameter it creates carries a *role* that tells the search loop how to optimise it:

* ``"logits"``  – continuous architecture parameters, Adam (DARTS/GDAS/SNAS/STE latent weights);
* ``"discrete"`` – discrete state in {0, 1} updated by a discrete optimizer (Bop), no latent weights;
* ``"noise"``  – adaptive noise temperatures σ, Adam, clipped after every step.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from .schedules import Schedule

CATEGORICAL = "categorical"
BINARY = "binary"
ROLES = ("logits", "discrete", "noise")


@dataclass
class Sample:
    """What a choice hands to its mixed ops for one forward pass.

    ``weights``: ``[E, K]`` (categorical) or ``[E]`` (binary) mixing weights, differentiable.
    ``index``: for categorical choices whose forward value is one-hot, the selected candidate of
    each of the E choices as a Python list, so that a mixed op may run only that candidate
    (single-path execution); ``None`` when every candidate must run.
    ``active``: for a masked choice (:meth:`nas.supernet.Choice.set_mask`), per decision the
    candidates still in it (nested Python lists of bool); the others have weight exactly 0 and
    no gradient, so a mixed op need not run them. ``None``: every candidate is in.
    """

    weights: Tensor
    index: Optional[List[int]] = None
    active: Optional[List] = None


class Estimator:
    """Base class. Subclasses set ``name`` and implement :meth:`create`, :meth:`sample`, :meth:`probs`."""

    name: str = "base"
    kinds: Tuple[str, ...] = (CATEGORICAL, BINARY)
    # True when the forward value is the discrete value itself, so adaptive noise applies (STE, Bop).
    supports_noise: bool = False
    # True when a categorical training sample is the one-hot of hard_value(scores): a structured
    # argmax (a cost budget's feasible cells, nas.cost.budget) can then replace the row-wise one.
    decodes: bool = False
    # True when every entry of a categorical choice is its own value in [0, 1] (independent
    # gates, FairDARTS) rather than a share of a distribution over the row
    independent_gates: bool = False

    def __init__(self) -> None:
        # Scheduled hyper-parameters by name (e.g. {"tau": Schedule(...)}); their current values
        # live in self.values and are refreshed by set_progress().
        self.schedules: Dict[str, Schedule] = {}
        self.values: Dict[str, float] = {}

    # ---------------------------------------------------------------- parameters
    def create(self, shape: Tuple[int, ...], kind: str, init_std: float = 1e-3,
               generator: Optional[torch.Generator] = None) -> Dict[str, Tuple[Tensor, str]]:
        """Initial parameter tensors for one choice: ``{name: (tensor, role)}``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- forward
    def sample(self, params: Dict[str, Tensor], kind: str, training: bool) -> Sample:
        """Mixing weights for one forward pass (stochastic estimators sample here)."""
        raise NotImplementedError

    def probs(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        """The choice's current distribution (categorical: rows sum to 1; binary: P(open)),
        detached, for logging, entropy and derive."""
        raise NotImplementedError

    def expected_weights(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        """The expected forward value, differentiable in the parameters: what a cost budget
        weighs each candidate's cost by (:mod:`nas.cost.budget`). By default the eval-mode
        value (softmax(α), a Dirichlet mean, Bop's state); estimators whose eval value is a
        detached decision override it."""
        return self.sample(params, kind, training=False).weights

    def distribution(self, params: Dict[str, Tensor], kind: str) -> Optional[torch.distributions.Distribution]:
        """The distribution the mixing weights are drawn from, differentiable in the parameters
        (DrNAS's KL regulariser reads it); ``None`` when the estimator defines none."""
        return None

    def derive(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        """The discrete decision: categorical -> LongTensor [E] of indices; binary -> BoolTensor."""
        p = self.probs(params, kind)
        return p.argmax(-1) if kind == CATEGORICAL else p > 0.5

    # ---------------------------------------------------------------- optimisation hooks
    def discrete_optimizer(self, params: List[Tensor]) -> Optional[torch.optim.Optimizer]:
        """Optimizer for the ``"discrete"`` parameters (Bop); None when there are none."""
        return None

    @torch.no_grad()
    def after_step(self, params_by_role: Dict[str, List[Tensor]]) -> None:
        """Called after every architecture step (e.g. to clip noise temperatures)."""

    # ---------------------------------------------------------------- kinds
    def for_kind(self, kind: str) -> Optional["Estimator"]:
        """The estimator of one kind of discrete parameter (``"rules"``, ``"gates"``, …;
        :mod:`nas.estimators.kinds`): a lone estimator learns every kind it is handed."""
        return self

    def bind(self, owners: Iterable[Tuple["Estimator", Iterable[Tensor]]]) -> None:
        """Called once with the built supernet's ``(choice estimator, choice parameters)`` pairs
        (an :class:`~nas.estimators.kinds.EstimatorSet` records which estimator owns which)."""

    # ---------------------------------------------------------------- schedules
    def set_progress(self, epoch: int, epochs: int, step: int = 0, steps_per_epoch: int = 1) -> None:
        for key, sch in self.schedules.items():
            self.values[key] = sch.value(sch.progress(epoch, epochs, step, steps_per_epoch))

    def scalars(self) -> Dict[str, float]:
        """Current scheduled values, for progress bars and TensorBoard."""
        return dict(self.values)

    def state_dict(self) -> dict:
        return {"values": dict(self.values)}

    def load_state_dict(self, state: dict) -> None:
        self.values.update(state.get("values", {}))

    def __repr__(self) -> str:
        vals = ", ".join(f"{k}={v:.4g}" for k, v in self.values.items())
        return f"{type(self).__name__}({vals})"


def init_logits(shape: Tuple[int, ...], init_std: float, generator: Optional[torch.Generator]) -> Tensor:
    """DARTS/NB201 initialisation ``α = init_std · N(0, 1)``."""
    return init_std * torch.randn(shape, generator=generator)


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Forward value ``hard`` exactly, gradient ``∂/∂soft = identity``.

    Written ``hard + (soft - soft.detach())`` rather than ``hard - soft.detach() + soft``: the
    two are the same function, but this one is exactly one-hot in value (no rounding residue), so
    the zero-valued terms of single-path execution are exactly zero.
    """
    return hard + (soft - soft.detach())


def check_shape(shape: Tuple[int, ...], kind: str) -> None:
    """The interface's shapes: categorical ``[E, K]``, binary ``[E]``."""
    want = {CATEGORICAL: 2, BINARY: 1}
    if kind not in want:
        raise ValueError(f"unknown choice kind '{kind}'; allowed: {', '.join(want)}")
    if len(shape) != want[kind]:
        raise ValueError(f"a {kind} choice has shape {'[E, K]' if kind == CATEGORICAL else '[E]'}, got {list(shape)}")


class LogitEstimator(Estimator):
    """An estimator over real logits ``α`` (role ``"logits"``, DARTS initialisation).

    Derive is the argmax of α per row (categorical) or ``α > 0`` (binary), read from the logits
    themselves so that a temperature or a rounding of ``softmax``/``sigmoid`` never decides it.
    """

    def create(self, shape: Tuple[int, ...], kind: str, init_std: float = 1e-3,
               generator: Optional[torch.Generator] = None) -> Dict[str, Tuple[Tensor, str]]:
        check_shape(shape, kind)
        return {"alpha": (init_logits(shape, init_std, generator), "logits")}

    def derive(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        a = params["alpha"].detach()
        return a.argmax(-1) if kind == CATEGORICAL else a > 0


Decoder = Callable[[Tensor], Tensor]
_DECODER: ContextVar[Optional[Decoder]] = ContextVar("structured_argmax", default=None)


@contextmanager
def structured_argmax(decode: Optional[Decoder]) -> Iterator[None]:
    """Within this block :func:`hard_value` picks a categorical choice's indices by
    ``decode(scores)`` (``[E, K]`` additive scores, e.g. logits, to a LongTensor ``[E]``: the
    best allowed combination of rows, ``argmax Σ_e scores[e, k_e]``) instead of each row's argmax.
    Set by a :class:`~nas.supernet.choice.Choice` around its estimator, so that the estimator
    itself never learns what the rows are."""
    token = _DECODER.set(decode)
    try:
        yield
    finally:
        _DECODER.reset(token)


def hard_value(alpha: Tensor, kind: str) -> Tuple[Tensor, Optional[List[int]]]:
    """``onehot(argmax α)`` (with the indices) or ``1[α > 0]``, detached, in α's dtype; inside
    :func:`structured_argmax` the categorical indices are its decoder's."""
    if kind == CATEGORICAL:
        decode = _DECODER.get()
        index = alpha.detach().argmax(-1) if decode is None else decode(alpha.detach()).to(alpha.device)
        return torch.nn.functional.one_hot(index, alpha.shape[-1]).to(alpha.dtype), index.tolist()
    return (alpha.detach() > 0).to(alpha.dtype), None
