"""A discrete architecture choice: E independent decisions among K candidates (or E gates).

The choice owns its parameters (registered ``nn.Parameter`` s, so ``.to()``, ``state_dict``,
checkpoints and DDP just work) and delegates their meaning to a shared :class:`Estimator`.
A supernet calls it once per forward pass and hands the resulting :class:`Sample` to every cell
that shares it (GDAS: one sample per forward, shared by all cells of a type).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import NasError
from ..estimators.base import BINARY, CATEGORICAL, Estimator, Sample, structured_argmax


class Choice(nn.Module):
    """``num_choices`` decisions among ``candidates`` (``kind="categorical"``, parameters ``[E, K]``)
    or ``num_choices`` gates (``kind="binary"``, ``[E]``), learned through ``estimator``.

    ``choice()`` gives the :class:`~nas.estimators.base.Sample` of one forward pass (mixing
    weights, and the selected indices when they are one-hot); :meth:`probs` the current
    distribution; :meth:`derive` the discrete decision. The parameters and their roles
    (``"logits"``, ``"discrete"``, ``"noise"``) come from ``estimator.create``; ``labels`` name the
    E decisions (edges) in logs and TensorBoard.
    """

    def __init__(self, estimator: Estimator, num_choices: int, candidates: Sequence[str] = (),
                 kind: str = CATEGORICAL, init_std: float = 1e-3,
                 generator: Optional[torch.Generator] = None, labels: Sequence[str] = ()):
        super().__init__()
        if kind == CATEGORICAL and len(candidates) < 1:
            raise ValueError("a categorical choice needs candidate names")
        self.estimator = estimator
        self.kind = kind
        self.candidates = list(candidates)
        self.labels = list(labels) or [str(i) for i in range(num_choices)]
        shape: Tuple[int, ...] = (num_choices, len(candidates)) if kind == CATEGORICAL else (num_choices,)
        self.roles: Dict[str, str] = {}
        for name, (tensor, role) in estimator.create(shape, kind, init_std, generator).items():
            self.register_parameter(name, nn.Parameter(tensor))
            self.roles[name] = role
        self._decoder: Optional[Callable[[Tensor], Tensor]] = None  # see set_decoder
        self._mask: Optional[Tensor] = None  # see set_mask
        self._active: Optional[List] = None

    @property
    def decoder(self) -> Optional[Callable[[Tensor], Tensor]]:
        return self._decoder

    def set_decoder(self, decoder: Optional[Callable[[Tensor], Tensor]]) -> None:
        """Install the structured argmax of this choice's one-hot samples
        (:func:`nas.estimators.base.structured_argmax`: the sample is the decoder's indices, e.g.
        the cells within a cost budget, ``cost.sample_within``); ``None``: each row's argmax. Only
        a categorical choice whose estimator's sample is one-hot (``estimator.decodes``) has one."""
        if decoder is not None and (self.kind != CATEGORICAL or not getattr(self.estimator, "decodes", False)):
            raise NasError(f"a decoder needs a categorical choice whose estimator samples one-hot; this one is "
                           f"{self.kind} with estimator '{self.estimator.name}'")
        self._decoder = decoder

    @property
    def mask(self) -> Optional[Tensor]:
        """The candidates still in the choice (bool, the logits' shape), ``None``: all."""
        return self._mask

    def set_mask(self, mask: Optional[Tensor]) -> None:
        """Take candidates out of the choice, whatever its estimator (DrNAS's pruning, Chen et al.
        2021, §3.3): where ``mask`` is False the mixing weight is exactly 0, and a categorical
        row's kept weights are renormalised, ``w'_k = m_k·w_k / Σ_j m_j·w_j``, as are
        :meth:`probs` and :meth:`expected_weights`; :meth:`derive` picks kept candidates only; a
        one-hot sample picks among the kept ones. For a relaxation whose weights are a
        normalised vector of per-candidate terms (softmax, Dirichlet: ``w_k = g_k / Σ_j g_j``), the
        renormalised weights are ``g_k / Σ_{kept} g_j``: the pruned logits get no gradient from the
        loss. ``None`` restores every candidate. The mask travels in the choice's state dict."""
        if mask is None:
            self._mask, self._active = None, None
            return
        shape = tuple(next(iter(self.params().values())).shape)
        mask = torch.as_tensor(mask).detach().to("cpu")
        if mask.dtype != torch.bool or tuple(mask.shape) != shape:
            raise NasError(f"a choice's mask is a bool tensor of its shape {list(shape)}, got "
                           f"{mask.dtype} {list(mask.shape)}")
        if self.kind == CATEGORICAL and not bool(mask.any(-1).all()):
            raise NasError("a choice's mask must keep at least one candidate of every row")
        self._mask = mask.clone()
        # Sample.active: the mixed ops skip the rest without a device sync
        self._active = self._mask.tolist()

    def _masked(self, w: Tensor) -> Tensor:
        m = self._mask.to(w.device)
        w = w * m.to(w.dtype)
        return w / w.sum(-1, keepdim=True) if self.kind == CATEGORICAL else w

    def _mask_decoder(self) -> Optional[Callable[[Tensor], Tensor]]:
        """The structured argmax among the kept candidates (one-hot samples, expected weights)."""
        if self._mask is None or self.kind != CATEGORICAL:
            return self._decoder
        inner = self._decoder

        def decode(scores: Tensor) -> Tensor:
            scores = scores.masked_fill(~self._mask.to(scores.device), float("-inf"))
            return scores.argmax(-1) if inner is None else inner(scores)
        return decode

    def params(self) -> Dict[str, Tensor]:
        return {name: getattr(self, name) for name in self.roles}

    def forward(self) -> Sample:
        with structured_argmax(self._mask_decoder()):  # None: each row's argmax, also inside another choice's
            sample = self.estimator.sample(self.params(), self.kind, self.training)
        if self._mask is None:
            return sample
        return Sample(self._masked(sample.weights), sample.index, self._active)

    def probs(self) -> Tensor:
        p = self.estimator.probs(self.params(), self.kind)
        return p if self._mask is None else self._masked(p)

    def derive(self) -> Tensor:
        d = self.estimator.derive(self.params(), self.kind)
        if self._mask is None:
            return d
        m = self._mask.to(d.device)
        if self.kind != CATEGORICAL:
            return d & m
        # the estimator's decision where it is kept, else the most probable kept candidate
        kept = m.gather(-1, d.unsqueeze(-1)).squeeze(-1)
        return torch.where(kept, d, self.probs().masked_fill(~m, float("-inf")).argmax(-1))

    def expected_weights(self) -> Tensor:
        with structured_argmax(self._mask_decoder()):
            w = self.estimator.expected_weights(self.params(), self.kind)
        return w if self._mask is None else self._masked(w)

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self._mask is not None:
            destination[prefix + "mask"] = self._mask.clone()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        self.set_mask(state_dict.pop(prefix + "mask", None))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def parameters_by_role(self, role: str) -> Iterator[nn.Parameter]:
        return (getattr(self, n) for n, r in self.roles.items() if r == role)

    def extra_repr(self) -> str:
        return f"{self.kind}, labels={len(self.labels)}, candidates={self.candidates}, estimator={self.estimator.name}"


def arch_parameters(model: nn.Module, role: str = "logits") -> List[nn.Parameter]:
    """Architecture parameters of every :class:`Choice` in ``model`` with the given role."""
    return [p for m in model.modules() if isinstance(m, Choice) for p in m.parameters_by_role(role)]


def weight_parameters(model: nn.Module) -> List[nn.Parameter]:
    """Every parameter that is not an architecture parameter."""
    arch = {id(p) for m in model.modules() if isinstance(m, Choice) for p in m.parameters()}
    return [p for p in model.parameters() if id(p) not in arch]


def choices(model: nn.Module) -> Dict[str, Choice]:
    """The model's choices by their qualified module name (e.g. ``"arch.cell"``)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, Choice)}
