"""L0 gates with the hard-concrete distribution.

Louizos, Welling, Kingma, "Learning Sparse Neural Networks through L0 Regularization", ICLR 2018,
and its reference code (ALGORITHMS.md §4):

    u ~ U(1e-6, 1 - 1e-6)
    s = sigmoid((log u - log(1-u) + log α) / β)
    z = clamp(s (ζ - γ) + γ, 0, 1)                      (training sample)
    z = clamp(sigmoid(log α)(ζ - γ) + γ, 0, 1)          (test time, deterministic)
    L0 = Σ sigmoid(log α - β log(-γ/ζ))                 (expected number of non-zero gates)

β = 2/3, γ = -0.1, ζ = 1.1; log α ~ N(log((1-p)/p), 0.01), p = 0.5; log α kept in
[log 1e-2, log 1e2] (the reference code's ``constrain_parameters``, applied here lazily before each
use because no per-module hook runs after the optimizer step).

The gate parameters are a binary :class:`~nas.supernet.Choice` driven by a private
:class:`HardConcrete` estimator, so they are architecture parameters (role ``"logits"``): the
search's Adam trains them in the arch step, where the Searcher adds every module's ``penalty()``
(here ``l0_lambda · L0``) to the loss. A gate is *closed* when its test-time value is exactly 0.

:class:`EstimatorGate` is the same gate learned by a search estimator instead (``ste``, ``bop``,
``+ adaptive noise``, …; ``space.gate_estimator=search``): a binary choice whose forward value
``z`` is the estimator's, with the penalty ``l0_lambda · Σ z`` — the L0 norm of a binary gate
vector, and its relaxation for the relaxed estimators. :func:`make_gate` builds either;
:class:`ChannelGatedOp` puts one gate on every output channel of an op (the ``l0_*`` candidates).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..estimators.base import BINARY, Estimator, Sample
from ..supernet.choice import Choice

BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1
U_EPS = 1e-6
LOG_ALPHA_MIN, LOG_ALPHA_MAX = math.log(1e-2), math.log(1e2)
INIT_STD = 0.01
P_INIT = 0.5


def stretch(s: Tensor, gamma: float = GAMMA, zeta: float = ZETA) -> Tensor:
    """``clamp(s (ζ - γ) + γ, 0, 1)``."""
    return (s * (zeta - gamma) + gamma).clamp(0.0, 1.0)


def hard_concrete_sample(log_alpha: Tensor, u: Tensor, beta: float = BETA, gamma: float = GAMMA,
                         zeta: float = ZETA) -> Tensor:
    """The training-time gate for given uniforms ``u``."""
    s = torch.sigmoid((u.log() - (1 - u).log() + log_alpha) / beta)
    return stretch(s, gamma, zeta)


def eval_gate(log_alpha: Tensor, gamma: float = GAMMA, zeta: float = ZETA) -> Tensor:
    """The deterministic test-time gate ``clamp(sigmoid(log α)(ζ - γ) + γ, 0, 1)``."""
    return stretch(torch.sigmoid(log_alpha), gamma, zeta)


def expected_l0(log_alpha: Tensor, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> Tensor:
    """``P(z ≠ 0)`` per gate: ``sigmoid(log α - β log(-γ/ζ))``."""
    return torch.sigmoid(log_alpha - beta * math.log(-gamma / zeta))


class HardConcrete(Estimator):
    """Binary estimator of an L0 gate; ``probs`` is ``P(z ≠ 0)``, ``derive`` "test-time gate > 0".

    Not in the ``estimator.name`` registry: gates use it whatever the search's estimator is.
    """

    name = "hard_concrete"
    kinds = (BINARY,)

    def __init__(self, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA, p_init: float = P_INIT):
        super().__init__()
        self.beta, self.gamma, self.zeta, self.p_init = beta, gamma, zeta, p_init

    def create(self, shape: Tuple[int, ...], kind: str, init_std: float = INIT_STD,
               generator: Optional[torch.Generator] = None) -> Dict[str, Tuple[Tensor, str]]:
        mean = math.log((1 - self.p_init) / self.p_init)
        return {"log_alpha": (mean + init_std * torch.randn(shape, generator=generator), "logits")}

    def sample(self, params: Dict[str, Tensor], kind: str, training: bool) -> Sample:
        la = params["log_alpha"]
        if not training:
            return Sample(eval_gate(la, self.gamma, self.zeta))
        u = U_EPS + (1 - 2 * U_EPS) * torch.rand_like(la)
        return Sample(hard_concrete_sample(la, u, self.beta, self.gamma, self.zeta))

    def probs(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        return expected_l0(params["log_alpha"].detach(), self.beta, self.gamma, self.zeta)

    def derive(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        return eval_gate(params["log_alpha"].detach(), self.gamma, self.zeta) > 0


class HardConcreteGate(nn.Module):
    """``n`` L0 gates: ``forward() -> z [n]`` (a sample in training, the test-time gate in eval)."""

    def __init__(self, n: int, l0_lambda: float = 1e-4, *, labels: Sequence[str] = (),
                 generator: Optional[torch.Generator] = None, p_init: float = P_INIT):
        super().__init__()
        self.n, self.l0_lambda = n, l0_lambda
        self.choice = Choice(HardConcrete(p_init=p_init), n, kind=BINARY, init_std=INIT_STD,
                             generator=generator, labels=labels)

    @property
    def log_alpha(self) -> nn.Parameter:
        return self.choice.log_alpha

    @torch.no_grad()
    def constrain(self) -> None:
        la = self.log_alpha
        # in place only when needed: an in-place op between forward and backward would break autograd
        if bool((la < LOG_ALPHA_MIN).any() or (la > LOG_ALPHA_MAX).any()):
            la.clamp_(LOG_ALPHA_MIN, LOG_ALPHA_MAX)

    def forward(self) -> Tensor:
        self.constrain()
        return self.choice().weights

    def penalty(self) -> Tensor:
        """``l0_lambda · Σ sigmoid(log α - β log(-γ/ζ))``."""
        self.constrain()
        est = self.choice.estimator
        return self.l0_lambda * expected_l0(self.log_alpha, est.beta, est.gamma, est.zeta).sum()

    def open(self) -> Tensor:
        """Bool ``[n]``: gates whose test-time value is non-zero."""
        return self.choice.derive()

    def open_probs(self) -> Tensor:
        """``[n]`` differentiable ``P(z ≠ 0)`` (the expected L0 term per gate), for a cost budget."""
        est = self.choice.estimator
        return expected_l0(self.log_alpha, est.beta, est.gamma, est.zeta)

    def scalars(self) -> Dict[str, float]:
        """For TensorBoard: the L0 penalty and how many gates are open at test time."""
        with torch.no_grad():
            return {"l0/penalty": float(self.penalty()), "l0/open": float(self.open().sum()),
                    "l0/gates": float(self.n)}

    def extra_repr(self) -> str:
        return f"n={self.n}, l0_lambda={self.l0_lambda}"


class GatedOp(nn.Module):
    """``op(*args) · z``: one L0 gate on the whole output of an op (or of anything callable)."""

    def __init__(self, op: nn.Module, l0_lambda: float = 1e-4, *, label: str = "gate"):
        super().__init__()
        self.op = op
        self.gate = HardConcreteGate(1, l0_lambda, labels=[label])

    def forward(self, *args, **kwargs) -> Tensor:
        return self.op(*args, **kwargs) * self.gate()[0]


class GatedEdge(GatedOp):
    """An L0 gate on a cell edge: wraps the edge's mixed op, ``forward(x, weights, index)``."""


class ChannelGate(nn.Module):
    """One L0 gate per channel of ``x [B, C, ...]``."""

    def __init__(self, C: int, l0_lambda: float = 1e-4):
        super().__init__()
        self.gate = HardConcreteGate(C, l0_lambda)

    def forward(self, x: Tensor) -> Tensor:
        z = self.gate()
        return x * z.view(1, -1, *([1] * (x.dim() - 2)))


def gate_channels(op: nn.Module, C: int, l0_lambda: float = 1e-4) -> nn.Sequential:
    """``op`` followed by per-channel L0 gates on its ``C`` output channels."""
    return nn.Sequential(op, ChannelGate(C, l0_lambda))


# A gate learned by a search estimator starts open: logits at +GATE_INIT_LOGIT (sigmoid 0.73),
# discrete states (Bop) at 1; the initialisation a choice gets otherwise is a fair coin per gate.
GATE_INIT_LOGIT = 1.0


class EstimatorGate(nn.Module):
    """``n`` binary gates learned by ``estimator``; the same interface as :class:`HardConcreteGate`.

    ``penalty() = l0_lambda · Σ z`` over the forward value ``z`` of the last training pass (a
    fresh sample if none): the number of open gates for a discrete ``z`` (STE, Bop), its
    relaxation otherwise. Its gradient reaches the gates through the estimator like the loss's.
    """

    def __init__(self, n: int, l0_lambda: float, estimator: Estimator, *, labels: Sequence[str] = (),
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        self.n, self.l0_lambda = n, l0_lambda
        self.choice = Choice(estimator, n, kind=BINARY, generator=generator, labels=labels)
        with torch.no_grad():
            for name, role in self.choice.roles.items():
                if role == "logits":
                    getattr(self.choice, name).add_(GATE_INIT_LOGIT)
                elif role == "discrete":
                    getattr(self.choice, name).fill_(1.0)
        self._last: Optional[Tensor] = None

    def forward(self) -> Tensor:
        z = self.choice().weights
        if self.training:
            self._last = z
        return z

    def penalty(self) -> Tensor:
        z = self._last if self._last is not None else self.choice().weights
        self._last = None
        return self.l0_lambda * z.sum()

    def open(self) -> Tensor:
        return self.choice.derive()

    def open_probs(self) -> Tensor:
        """``[n]`` the estimator's expected gate value, differentiable (a cost budget's weight)."""
        return self.choice.expected_weights()

    def scalars(self) -> Dict[str, float]:
        return {"l0/open": float(self.open().sum()), "l0/gates": float(self.n)}

    def extra_repr(self) -> str:
        return f"n={self.n}, l0_lambda={self.l0_lambda}"


GATES = ("none", "edge", "op", "channel")   # where a cell space puts its gates (space.gates)
GATE_ESTIMATORS = ("hard_concrete", "search")


def gate_estimator_for(choice: Union[str, Estimator, None], estimator: Estimator) -> Optional[Estimator]:
    """The estimator of a supernet's L0 gates from ``space.gate_estimator``: ``"hard_concrete"``
    (or None) -> None, i.e. :class:`HardConcreteGate`; ``"search"`` -> the run's ``estimator``;
    an :class:`Estimator` as it is."""
    if choice is None or choice == "hard_concrete":
        return None
    if choice == "search":
        return estimator
    if isinstance(choice, Estimator):
        return choice
    raise ConfigError(f"space.gate_estimator: unknown '{choice}'; allowed: {', '.join(GATE_ESTIMATORS)}")


def make_gate(n: int, l0_lambda: float = 1e-4, estimator: Optional[Estimator] = None, *,
              labels: Sequence[str] = (), generator: Optional[torch.Generator] = None) -> nn.Module:
    """``n`` L0 gates: hard concrete (Louizos et al.) when ``estimator`` is None, else learned by it."""
    if estimator is None:
        return HardConcreteGate(n, l0_lambda, labels=labels, generator=generator)
    return EstimatorGate(n, l0_lambda, estimator, labels=labels, generator=generator)


class ChannelGatedOp(nn.Module):
    """``op(x) · z`` with one L0 gate per output channel: a candidate whose width the search
    learns (the ``l0_*`` ops). An op that takes a shared ``relu(x)`` still does.

    Derive keeps its open channels: :meth:`kept_fraction` is the share a genotype records as the
    edge's width, and the discrete network builds the op at that width (:class:`Pruned`)."""

    sets_width = True   # its kept fraction is a width the discrete network is built at

    def __init__(self, op: nn.Module, C_out: int, l0_lambda: float = 1e-4,
                 estimator: Optional[Estimator] = None, generator: Optional[torch.Generator] = None):
        super().__init__()
        self.op = op
        self.gate = make_gate(C_out, l0_lambda, estimator, generator=generator)
        self.takes_relu_input = bool(getattr(op, "takes_relu_input", False))

    def forward(self, x: Tensor, relu_done: bool = False) -> Tensor:
        y = self.op(x, True) if relu_done else self.op(x)
        return y * self.gate().view(1, -1, *([1] * (y.dim() - 2)))

    def open_channels(self) -> List[int]:
        return torch.nonzero(self.gate.open(), as_tuple=False).flatten().tolist()

    def kept_fraction(self) -> float:
        """The share of its output channels open at test time."""
        return len(self.open_channels()) / self.gate.n

    def describe(self) -> str:
        """The channels open at test time, for the run folder's ``learned_ops.txt``."""
        kept = self.open_channels()
        return f"open channels {len(kept)}/{self.gate.n}: {' '.join(map(str, kept)) or '-'}"


def pruned_width(fraction: float, C: int) -> int:
    """The channels a width ``fraction`` of ``C`` keeps: ``round(fraction · C)``, at least 1."""
    return max(1, min(C, int(round(fraction * C))))


class Pruned(nn.Module):
    """The derived form of a :class:`ChannelGatedOp`: ``op`` built with only the ``kept``
    channels that stayed open, its output placed in the first ``kept`` of ``C_out`` channels and
    zeros in the rest (a cell adds its edges, so every edge keeps the cell's width). The closed
    channels cost nothing: no weights, no multiply-accumulates."""

    def __init__(self, op: nn.Module, kept: int, C_out: int):
        super().__init__()
        self.op, self.kept, self.C_out = op, kept, C_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.op(x)
        return torch.nn.functional.pad(y, (0, 0, 0, 0, 0, self.C_out - self.kept))

    def extra_repr(self) -> str:
        return f"kept={self.kept}/{self.C_out}"
