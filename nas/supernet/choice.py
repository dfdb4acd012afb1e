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

    def params(self) -> Dict[str, Tensor]:
        return {name: getattr(self, name) for name in self.roles}

    def forward(self) -> Sample:
        with structured_argmax(self._decoder):  # None: each row's argmax, also inside another choice's
            return self.estimator.sample(self.params(), self.kind, self.training)

    def probs(self) -> Tensor:
        return self.estimator.probs(self.params(), self.kind)

    def derive(self) -> Tensor:
        return self.estimator.derive(self.params(), self.kind)

    def expected_weights(self) -> Tensor:
        with structured_argmax(self._decoder):
            return self.estimator.expected_weights(self.params(), self.kind)

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
