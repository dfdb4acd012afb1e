"""Neural DNF block: binary rule pool and selector learned through any binary estimator.

Jialin Lu, "Neural Disjunctive Normal Form", M.Sc. thesis, SFU 2020 (ALGORITHMS.md §4).

Literals ``b = [c_1, ¬c_1, …, c_K, ¬c_K]`` (``¬c = 1 - c``, inputs ``c ∈ [0, 1]``); a rule pool
``W ∈ {0,1}^{2K×N}`` and a selector ``S ∈ {0,1}^N`` per tower (one tower per class, sharing the
literals):

    conjunction  r_j = Π_i (1 - W_ij (1 - b_i))
    disjunction  ŷ   = 1 - Π_j (1 - S_j r_j)
    sparsity     λ_g Σ_j |S_j| · ‖W_·j‖_1            (λ_g = 1e-4, N = 64)

W and S are binary :class:`~nas.supernet.Choice` s (flattened to ``E = T·2K·N`` and ``E = T·N``
entries), so any registered estimator (sigmoid surrogates, binary concrete, STE, Bop, + adaptive
noise) learns them. The products are computed as products (not in log space): a factor that is
exactly 0, which hard forward values (STE, Bop) produce all the time, then still gets its exact
gradient ``Π_{k≠i}`` from ``torch.prod``'s backward.

In eval mode the block uses the *derived* binary W and S (the estimator's decision), so what is
evaluated is exactly the rule set the genotype prints.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..estimators.base import BINARY, Estimator
from ..supernet.choice import Choice

LAMBDA_G = 1e-4
RULES = 64
FORMS = ("log", "product")   # DNFOp's conjunction: log space (a matmul) or the thesis's product


def literals(c: Tensor) -> Tensor:
    """``[..., K]`` -> ``[..., 2K]`` interleaved ``[c_1, 1-c_1, c_2, 1-c_2, …]``: literal
    ``2k`` is feature k, literal ``2k+1`` its negation."""
    return torch.stack((c, 1 - c), dim=-1).flatten(-2)


def dnf_forward(b: Tensor, W: Tensor, S: Tensor) -> Tuple[Tensor, Tensor]:
    """``(ŷ, 1 - ŷ)`` for literals ``b [B, 2K]``, rule pools ``W [T, 2K, N]``, selectors ``S [T, N]``.

    ``1 - ŷ`` is returned from its own product rather than by subtraction, so a loss can take
    ``log(1 - ŷ)`` without cancellation when ŷ is near 1.
    """
    factors = 1 - W.unsqueeze(0) * (1 - b)[:, None, :, None]   # [B, T, 2K, N]
    r = factors.prod(dim=2)                                     # [B, T, N] conjunctions
    not_y = (1 - S.unsqueeze(0) * r).prod(dim=-1)               # [B, T]
    return 1 - not_y, not_y


def dnf_forward_log(log_b: Tensor, W: Tensor, S: Tensor) -> Tuple[Tensor, Tensor]:
    """:func:`dnf_forward` with the conjunction in log space, ``r_j = Π_i b_i^{W_ij} =
    exp(Σ_i W_ij log b_i)``: one matmul ``[B, 2K] @ [2K, T·N]`` instead of the ``[B, T, 2K, N]``
    factor tensor. Equal to the product form wherever W is binary (``b^0 = 1 = 1 - 0·(1-b)``,
    ``b^1 = b``): the forward of STE and Bop, eval mode, the printed rules; between 0 and 1 it
    interpolates geometrically (``b^w``) where the product form does linearly (``1 - w(1-b)``).
    ``log_b`` must be finite (``logsigmoid`` of the predicates' logits)."""
    T, K2, N = W.shape
    r = (log_b @ W.permute(1, 0, 2).reshape(K2, T * N)).exp().view(-1, T, N)   # [B, T, N]
    not_y = (1 - S.unsqueeze(0) * r).prod(dim=-1)
    return 1 - not_y, not_y


def sparsity(W: Tensor, S: Tensor, lambda_g: float) -> Tensor:
    """``λ_g Σ_t Σ_j |S_tj| ‖W_t·j‖_1`` for ``W [T, 2K, N]``, ``S [T, N]``."""
    return lambda_g * (S.abs() * W.abs().sum(dim=1)).sum()


class DNFBlock(nn.Module):
    """``T`` DNF towers over ``K`` inputs in [0, 1]; ``forward(c [B, K]) -> (ŷ, 1-ŷ)``, each ``[B, T]``."""

    def __init__(self, estimator: Estimator, in_features: int, *, rules: int = RULES, towers: int = 1,
                 lambda_g: float = LAMBDA_G, init_std: float = 1e-3,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        if in_features < 1 or rules < 1 or towers < 1:
            raise ValueError(f"DNFBlock needs positive sizes, got K={in_features}, N={rules}, T={towers}")
        self.K, self.N, self.T = in_features, rules, towers
        self.lambda_g = lambda_g
        self.W = Choice(estimator, towers * 2 * in_features * rules, kind=BINARY, init_std=init_std,
                        generator=generator)
        self.S = Choice(estimator, towers * rules, kind=BINARY, init_std=init_std, generator=generator)
        self._last: Optional[Tuple[Tensor, Tensor]] = None

    def sampled(self) -> Tuple[Tensor, Tensor]:
        """One forward value of ``(W [T, 2K, N], S [T, N])`` from the estimator (training mode)."""
        return (self.W().weights.view(self.T, 2 * self.K, self.N),
                self.S().weights.view(self.T, self.N))

    def derived(self) -> Tuple[Tensor, Tensor]:
        """The binary decision ``(W bool [T, 2K, N], S bool [T, N])``."""
        return (self.W.derive().view(self.T, 2 * self.K, self.N),
                self.S.derive().view(self.T, self.N))

    def forward(self, c: Optional[Tensor] = None, *, log_b: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Tower outputs for inputs ``c`` in [0, 1], or for log-literals ``log_b`` ``[B, 2K]``
        (the log-space conjunction, :func:`dnf_forward_log`)."""
        like = c if c is not None else log_b
        if self.training:
            W, S = self.sampled()
            self._last = (W, S)  # the penalty of this step uses the same sample
        else:
            W, S = (t.to(like.dtype) for t in self.derived())
        return dnf_forward(literals(c), W, S) if log_b is None else dnf_forward_log(log_b, W, S)

    def penalty(self) -> Tensor:
        """``λ_g Σ_j |S_j| ‖W_·j‖_1`` of the last training forward's sample (a fresh one if none)."""
        W, S = self._last if self._last is not None else self.sampled()
        self._last = None
        return sparsity(W, S, self.lambda_g)

    def extra_repr(self) -> str:
        return f"K={self.K}, rules={self.N}, towers={self.T}, lambda_g={self.lambda_g}"


class DNFOp(nn.Module):
    """The DNF block as a candidate op of a cell: a *logical 1x1* over channels.

    Each pixel's channels are squashed to predicates ``c = sigmoid(x)`` in [0, 1]; every output
    channel is one DNF tower over those ``C_in`` predicates (``2·C_in`` literals, ``rules``
    conjunctions); the tower outputs ŷ ∈ [0, 1] are re-centred by a BN (no affine in the supernet)
    so that the op's scale matches the conv candidates it is mixed with. ``stride`` 2 subsamples
    the pixels first, as a strided 1x1 conv does.

    ``form="log"`` (the default) computes the conjunctions in log space, ``Π_i b_i^{W_ij}``
    (:func:`dnf_forward_log`): a matmul, 40-80x faster on a CPU than the ``[B·H·W, C_out, 2·C_in,
    rules]`` product of the thesis's form (``form="product"``, :func:`dnf_forward`), and equal to it
    wherever the rule pool is binary — STE and Bop forward values, eval mode, the printed rules.
    With a relaxed W (softmax, sigmoid, Gumbel estimators; adaptive noise) the two interpolate
    differently between the same binary end points: a documented deviation, chosen because the
    product form makes a 6-candidate NB201 supernet step ~80x slower on the CPU proxy.

    Memory: the conjunction tensor is ``[B·H·W, C_out, 2·C_in, rules]``; keep ``rules`` small
    (default 8) inside a cell. It is the registered op ``dnf_1x1`` (:mod:`nas.blocks.ops`), and
    :func:`dnf_op` binds it to an estimator for a hand-made op table.

    ``density``: the probability that a literal starts in a conjunction (default ``1/C_in``: two
    of the ``2·C_in`` literals on average). The choices' own initialisation, a fair coin per
    entry, puts a literal and its negation into almost every conjunction (all but
    ``(3/4)^C_in`` of them): the op would start as constant FALSE, with a gradient of order
    ``4^-C_in/2`` — dead inside a cell. A sparse pool starts from short conjunctions instead.

    :meth:`rules` reads the learned op: output channel ``t`` is 1 where its rule over the input
    predicates ``in_k`` (channel k positive: ``sigmoid(x_k) > 1/2``) holds, on binary predicates.
    """

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool, estimator: Estimator, *,
                 rules: int = 8, lambda_g: float = LAMBDA_G, init_std: float = 1e-3,
                 generator: Optional[torch.Generator] = None, form: str = "log",
                 density: Optional[float] = None):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form must be one of {', '.join(FORMS)}, got '{form}'")
        density = 1.0 / C_in if density is None else density
        if not 0.0 <= density <= 1.0:
            raise ValueError(f"density must be in [0, 1], got {density}")
        self.stride, self.form = stride, form
        self.block = DNFBlock(estimator, C_in, rules=rules, towers=C_out, lambda_g=lambda_g,
                              init_std=init_std, generator=generator)
        bits = torch.rand(C_out * 2 * C_in * rules, generator=generator) < density
        init_binary(self.block.W, bits)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        B, C, H, W = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(B * H * W, C)                # pixels as rows
        if self.form == "log":   # log c = logsigmoid(x), log(1 - c) = logsigmoid(-x): finite
            y, _ = self.block(log_b=torch.stack((F.logsigmoid(rows), F.logsigmoid(-rows)), -1).flatten(-2))
        else:
            y, _ = self.block(torch.sigmoid(rows))                        # [B·H·W, C_out]
        y = y.view(B, H, W, -1).permute(0, 3, 1, 2)
        return self.bn(y)

    def forward_macs(self, output: Tensor) -> int:
        """MACs of the conjunctions, counted as the linear layer they are in log space
        (``log_b [pixels, 2·C_in] @ W [2·C_in, C_out·rules]``; the product form multiplies as
        many factors): ``pixels · 2·C_in · C_out · rules`` per image, for :func:`nas.utils.count_macs`.
        The disjunction's products, like BN and activations, are not counted."""
        pixels = output[0, 0].numel()   # of one image
        return pixels * 2 * self.block.K * self.block.T * self.block.N

    def rules(self) -> List[str]:
        """One line per output channel: ``IF (in3 AND NOT in7) OR (in1) THEN out 0``, the derived
        binary W and S simplified as in :mod:`nas.blocks.rules`."""
        from .rules import clauses_of, literal_name, rule_text
        W, S = (t.cpu() for t in self.block.derived())
        inputs = [f"in{k}" for k in range(self.block.K)]
        return [rule_text([[literal_name(lit, inputs) for lit in cl] for cl in clauses_of(W[t], S[t])], str(t), "out")
                for t in range(self.block.T)]

    def kept_fraction(self) -> float:
        """The share of output channels whose derived rule can hold (not ``IF FALSE``): 0 when
        the op derives to a constant, which a cell's derive then writes as ``none``."""
        from .rules import clauses_of
        W, S = (t.cpu() for t in self.block.derived())
        return sum(bool(clauses_of(W[t], S[t])) for t in range(self.block.T)) / self.block.T

    def describe(self) -> str:
        """The learned rules, for the run folder's ``learned_ops.txt``."""
        return "\n".join(self.rules())


def dnf_op(estimator: Estimator, rules: int = 8, lambda_g: float = LAMBDA_G):
    """A ``(C_in, C_out, stride, affine) -> DNFOp`` constructor with the op-table signature, bound
    to the search's estimator: ``OPS = {**OPS, "dnf_1x1": dnf_op(estimator)}``."""
    def make(C_in: int, C_out: int, stride: int, affine: bool) -> DNFOp:
        return DNFOp(C_in, C_out, stride, affine, estimator, rules=rules, lambda_g=lambda_g)
    return make


INIT_LOGIT = 2.0   # |logit| of an entry set by init_binary (sigmoid 0.88 / 0.12 for the relaxations)


@torch.no_grad()
def init_binary(choice: Choice, bits: Tensor) -> None:
    """Start a binary choice at ``bits`` whatever its estimator: logits ``±INIT_LOGIT`` (plus the
    small noise they were drawn with), a discrete state (Bop) equal to the bits."""
    for name, role in choice.roles.items():
        p = getattr(choice, name)
        if role == "logits":
            p.add_(torch.where(bits.view_as(p), INIT_LOGIT, -INIT_LOGIT))
        elif role == "discrete":
            p.copy_(bits.view_as(p).to(p.dtype))


LOGIT_EPS = 1e-6  # ŷ is squashed into [ε, 1-ε] so that hard 0/1 outputs give finite logits


def class_logits(y: Tensor, not_y: Tensor) -> Tensor:
    """Logits for cross-entropy from tower outputs ``ŷ [B, T]`` (and ``1 - ŷ``).

    One tower (a binary task, the thesis' setting): logits ``[0, logit ŷ]``, so that softmax
    cross-entropy *is* the binary cross-entropy of ŷ. ``T`` towers (one per class): ``logit ŷ_t``
    per class. ``p = ε + (1-2ε)ŷ`` is an affine squash, not a clamp, so a wrong hard output
    (ŷ exactly 0 or 1) still passes a gradient back.
    """
    p = LOGIT_EPS + (1 - 2 * LOGIT_EPS) * y
    q = LOGIT_EPS + (1 - 2 * LOGIT_EPS) * not_y
    logit = p.log() - q.log()
    if logit.shape[1] == 1:
        return torch.cat((torch.zeros_like(logit), logit), dim=1)
    return logit
