"""The contract of the model a search trains and of the discrete network a retraining trains, as
the loops see them (:mod:`nas.searcher.loop`, :mod:`nas.retrainer.trainer`): spaces build them
(:mod:`nas.spaces.base` re-exports these names for a space's author).

* :class:`Supernet` — ``forward(x) -> logits`` and ``genotype()``, plus penalty, scalars,
  artifacts, extra metrics, the auxiliary skip β and its architecture parameters, each with a
  default;
* :class:`Network` — the discrete network: a plain module, with the drop-path probability the
  retrain loop sets;
* :class:`Penalized`, :class:`Reporting` — blocks inside either that add a loss term or curves.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

from torch import Tensor, nn

from .choice import Choice, arch_parameters, choices, weight_parameters

@runtime_checkable
class Penalized(Protocol):
    """A block that adds a term to the architecture loss (L0 gates, the DNF sparsity)."""

    def penalty(self) -> Tensor: ...


@runtime_checkable
class Reporting(Protocol):
    """A block with values worth a TensorBoard curve (L0 gates: penalty, open gates)."""

    def scalars(self) -> Dict[str, float]: ...


def provides(m: nn.Module, name: str) -> bool:
    """``isinstance(m, P)`` for a runtime-checkable protocol ``P`` of the one method ``name``
    (:class:`Penalized`, :class:`Reporting`): ``m`` has an attribute ``name`` that is not ``None``.
    typing's own check walks the protocol's attributes on every call, about 10 µs a module: over a
    supernet's few hundred modules, at every architecture step, a few percent of a small search's
    step. A class without the attribute is answered from the class and the module's own dicts."""
    if getattr(type(m), name, None) is None and name not in m.__dict__ and name not in m._modules \
            and name not in m._parameters and name not in m._buffers:
        return False
    return getattr(m, name, None) is not None


def module_penalty(model: nn.Module) -> Optional[Tensor]:
    """Sum of ``penalty()`` over the :class:`Penalized` submodules of ``model`` (not ``model``
    itself); ``None`` when there are none."""
    terms = [m.penalty() for m in model.modules() if m is not model and provides(m, "penalty")]
    return sum(terms[1:], terms[0]) if terms else None


def module_scalars(model: nn.Module) -> Dict[str, float]:
    """``<module>/<key>`` for every :class:`Reporting` submodule of ``model`` (not ``model`` itself;
    choices are summarised by the search's own entropy and probability curves)."""
    out: Dict[str, float] = {}
    for name, m in model.named_modules():
        if m is not model and provides(m, "scalars") and not isinstance(m, Choice):
            out.update({f"{name}/{k}": float(v) for k, v in m.scalars().items()})
    return out


class Supernet(nn.Module):
    """The model a search trains. A subclass implements ``forward(x) -> logits`` and
    :meth:`genotype`; everything else has a default that fits a plain supernet.

    Architecture parameters are the parameters of its :class:`~nas.supernet.Choice` modules
    (found by type, whatever their names); every other parameter is a weight. The estimator gives
    each architecture parameter a *role* (``"logits"``: Adam; ``"discrete"``: the estimator's
    discrete optimizer, Bop; ``"noise"``: adaptive-noise σ), see :mod:`nas.estimators.base`.

    ``aux_skip``: DARTS-'s auxiliary skip weight β (Chu et al., ICLR 2021). ``None`` (the default)
    says that this supernet has no auxiliary skip; a supernet that has one sets a float in its
    constructor, adds ``β·x`` on every edge in its forward, and the search loop writes β before
    each step (:func:`nas.searcher.loop.aux_skip_at`). It is a plain attribute, not state:
    derive recomputes it from the run's progress.
    """

    aux_skip: Optional[float] = None

    def genotype(self) -> Any:
        """The derived architecture as the space's genotype (plain data)."""
        raise NotImplementedError(f"{type(self).__name__} must implement genotype()")

    @property
    def has_aux_skip(self) -> bool:
        return self.aux_skip is not None

    def choices(self) -> Dict[str, Choice]:
        """The architecture choices by qualified module name (e.g. ``"arch.cell"``)."""
        return choices(self)

    def arch_parameters(self, role: str = "logits") -> List[nn.Parameter]:
        """The architecture parameters with the given role."""
        return arch_parameters(self, role)

    def weight_parameters(self) -> List[nn.Parameter]:
        """Every parameter that is not an architecture parameter."""
        return weight_parameters(self)

    def penalty(self) -> Optional[Tensor]:
        """Regularisation added to the architecture loss (and to the joint loss): by default the
        sum of the :class:`Penalized` blocks inside; ``None`` when there is none."""
        return module_penalty(self)

    def scalars(self) -> Dict[str, float]:
        """``{"<module>/<key>": value}`` for TensorBoard, by default from the :class:`Reporting`
        blocks inside."""
        return module_scalars(self)

    def artifacts(self, genotype: Any = None) -> Dict[str, str]:
        """Files a run folder keeps next to ``genotype.yaml`` (of ``genotype``, default the
        supernet's own): ``{file name: text}`` (the dnf space: ``rules.txt``; cells with DNF or
        L0-gated candidates: ``learned_ops.txt``)."""
        return {}

    def extra_metrics(self, info: Dict[str, Any]) -> Dict[str, Any]:
        """Final scores the supernet computes itself, on held-out data its loaders left in
        ``info`` (the program space: end-to-end accuracy on the test mazes); the search adds them
        to ``metrics.json`` and TensorBoard. Default: none."""
        return {}

    def budget(self) -> Any:
        """The :class:`nas.cost.Budget` a search with a ``cost:`` section attached as the submodule
        ``cost`` (:func:`nas.cost.attach_budget`; its penalty and scalars reach the loss and
        TensorBoard as every :class:`Penalized`/:class:`Reporting` block's do), or ``None``."""
        return self._modules.get("cost")

    def set_progress(self, epoch: int, epochs: int, step: int = 0, steps_per_epoch: int = 1) -> None:
        """The search's progress, given by the loop before every step as to the estimator
        (:meth:`nas.estimators.base.Estimator.set_progress`): passed on to the budget, whose
        penalty waits for ``cost.warmup_epochs``. A subclass with a schedule of its own extends it."""
        budget = self.budget()
        if budget is not None:
            budget.set_progress(epoch, epochs, step, steps_per_epoch)

    def cost_open_probs(self, name: str) -> Optional[Tensor]:
        """For the expected cost (:mod:`nas.cost.budget`): ``[E, K]`` or ``[E, 1]`` probability
        that gates keep the candidates of choice ``name`` open; ``None`` (the default): no gates."""
        return None

    def cost_kept_share(self, name: str) -> Optional[Tensor]:
        """For the expected cost: ``[E, K]`` the expected share of each candidate's output
        channels its own gates keep open (width-searching candidates, ``l0_*``; 1 for the
        others), differentiable; ``None`` (the default): no candidate searches its width."""
        return None

    def derive_limit(self, name: str, candidates: Sequence[str]) -> Optional[Tuple[int, int]]:
        """``(k, M)``: derive keeps candidate ``candidates[k]`` of choice ``name`` on at most M
        edges (NB201: P-DARTS's skip limit); ``None`` (the default): no such limit."""
        return None


class Network(nn.Module):
    """The discrete network of a genotype: ``forward(x)`` gives logits, or ``(logits, aux)`` in
    training with an auxiliary head. ``drop_path_prob`` is set by the retrain loop every epoch;
    a network without drop-path leaves it unread."""

    drop_path_prob: float = 0.0
