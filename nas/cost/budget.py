"""A cost budget in the search: the expected cost of the relaxed cell, added to the architecture
loss, and the derive constraint.

Expected cost (ProxylessNAS, Cai et al. 2019, eq. 4; FBNet, Wu et al. 2019, eq. 5):

    E[cost] = fixed + Σ_choices Σ_e share_e Σ_k q_ek · c_ek

with ``c_ek`` from :class:`~nas.cost.table.CostTable` and ``q_ek`` the estimator's expected
forward value (:meth:`nas.estimators.base.Estimator.expected_weights`: softmax(α/τ) for DARTS,
softmax(α) for SNAS's and GDAS's samples, the Dirichlet mean for DrNAS, the straight-through
one-hot for the STE and Bop's state, whose gradient reaches Bop's momentum), restricted to the
candidates derive can pick and renormalised over them (a ``none`` that derive never keeps would
otherwise hide the cost of the op that replaces it), times the probability that an L0 gate keeps
the op open (``P(z ≠ 0)``, the expected number of open gates of Louizos et al. 2018). A
width-searching candidate (``l0_*``: one gate per output channel) costs ``a + b·C·f``, its cost at
the expected share ``f`` of its channels open (the mean ``P(z ≠ 0)`` of its gates over the cells;
:meth:`nas.cost.table.CostTable.width_terms`), so the penalty reaches its gates.

Penalty with target T and weight λ, added to the architecture loss:

* ``hinge``: ``λ · max(0, E/T − 1)`` — nothing below the target;
* ``log``: ``λ · log(E/T)`` — FBNet's and MnasNet's multiplicative cost term ``(E/T)^λ`` in log
  space: it keeps pulling the cost down below the target, more gently the further below;
* ``abs``: ``λ · |E/T − 1|`` — TuNAS's absolute reward (Bender et al., CVPR 2020, eq. 3, there
  ``β·|T(α)/T₀ − 1|`` with ``β < 0`` in a reward): below the target it pulls the cost *up*, so the
  search spends the budget instead of undershooting it.

``estimate: derived`` replaces E by the cost of the cell the distribution's argmax would derive,
straight through (value: that cell's cost; gradient: E's). A near-uniform distribution (DARTS's
softmax after a short search) has an E far from any cell it derives: the penalty then either
never acts or pushes every expensive candidate below the cheap ones (docs/results/budgets.md).

``warmup`` (``cost.warmup_epochs``): the penalty acts only after this many epochs of search (fractions count per step),
so that the task gradient first ranks the candidates and the budget then chooses among them.

``sample_within`` (``cost.sample_within``): the one-hot estimators (GDAS's ``gumbel_hard``, the
STE) draw only cells within T: their sample's argmax becomes the best cell within the budget
under the same derive rules (:class:`~nas.cost.feasible.FeasibleArgmax`), so the supernet's
weights train only on cells derive could return, and α learns to rank those (the constrained
sampling of budgeted one-shot search, e.g. SPOS, Guo et al. 2020, there with uniform sampling).

With ``hard`` the derived cell never costs more than T: when the estimator's decision does, derive
takes the most probable cell that fits (``most_probable_within``; DARTS: an exact Pareto dynamic
programme over the nodes, see ``DartsSupernet._within_budget``; NB201 with width-searching
candidates: ``NB201Supernet._within_budget``, where such an op may be kept narrower). Every exact
cost (:meth:`Budget.exact`) counts an edge with a recorded width at that width.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..estimators.base import CATEGORICAL, straight_through
from ..supernet.choice import choices
from .feasible import most_probable_within
from .measure import UNITS
from .table import CostTable

FORMS = ("hinge", "log", "abs")
ESTIMATES = ("expected", "derived")


class Budget(nn.Module):
    """Attached to a supernet as ``model.cost``: the search loop adds :meth:`penalty` to the
    architecture loss (every module's ``penalty()``), the monitor writes :meth:`scalars` to
    TensorBoard as ``cost/expected``, ``cost/derived`` and ``cost/target``, and the supernet's
    ``genotype()`` asks :meth:`over` and :meth:`within`. Holds no parameters or state; it learns
    the search's progress as the estimators do, through :meth:`set_progress` (the supernet's
    :meth:`~nas.supernet.model.Supernet.set_progress` passes it on every step)."""

    def __init__(self, model: nn.Module, table: CostTable, allowed: Dict[str, Tensor],
                 selected: Callable[[Any], Dict[str, Sequence[Tuple[int, str]]]], *,
                 widths: Optional[Callable[[Any], Dict[str, Dict[int, float]]]] = None,
                 target: Optional[float] = None, weight: float = 1.0, form: str = "hinge",
                 hard: Optional[bool] = None, estimate: str = "expected", warmup: float = 0.0,
                 sample_within: bool = False):
        super().__init__()
        if form not in FORMS:
            raise ConfigError(f"cost.form: unknown form '{form}'; allowed: {', '.join(FORMS)}")
        if estimate not in ESTIMATES:
            raise ConfigError(f"cost.estimate: unknown estimate '{estimate}'; allowed: {', '.join(ESTIMATES)}")
        self.estimate = estimate
        if warmup < 0:
            raise ConfigError(f"cost.warmup_epochs must be >= 0 epochs, got {warmup}")
        # epochs of search before the penalty acts; outside a search (no progress given) it acts
        self.warmup, self.epochs_done = float(warmup), float("inf")
        if target is not None and target <= 0:
            raise ConfigError(f"cost.target must be positive ({UNITS[table.metric]}), got {target}")
        if weight < 0:
            raise ConfigError(f"cost.weight must be >= 0, got {weight}")
        if hard and target is None:
            raise ConfigError("cost.hard=true needs cost.target")
        self.table, self.selected, self.widths = table, selected, widths
        self.target, self.weight, self.form = target, weight, form
        self.hard = target is not None if hard is None else hard
        self._model = weakref.ref(model)  # not a submodule: the model owns this module
        self._choices = {n: ch for n, ch in choices(model).items() if n in table.edges}
        missing = sorted(set(table.edges) - set(self._choices))
        if missing:
            raise ConfigError(f"the cost table has choice '{missing[0]}', the supernet has none such")
        self._allowed = {n: allowed[n].expand(table.edges[n].shape[0], -1).bool() for n in self._choices}
        self._cost = {n: table.for_candidates(n, ch.candidates).float() for n, ch in self._choices.items()}
        self._slope: Dict[str, Tensor] = {}   # width-searching candidates: b·C of a + b·k (module docstring)
        for n, ch in self._choices.items():
            terms = table.width_terms(n, ch.candidates)
            if terms is not None:
                self._cost[n], self._slope[n] = terms[0].float(), terms[1].float()
        self._on: Dict[Tuple[str, Any], Tensor] = {}
        if self.hard and all(bool((table.share[n] == 1).all()) for n in self._choices):
            # a space whose derive within a target admits other cells than `allowed` says which
            own = getattr(model, "cost_cheapest", None)
            least = own(table) if own is not None else None
            if least is None:
                least = table.fixed + sum(table.cheapest(n, self._allowed[n], ch.candidates)
                                          for n, ch in self._choices.items())
            if least > target:
                raise ConfigError(f"cost.target={target:.6g} {UNITS[table.metric]} is below the cheapest cell "
                                  f"derive may pick ({least:.6g}); raise it or set cost.hard=false")
        elif self.hard and table.fixed > target:  # cells of unknown shape: their skeleton alone is a bound
            raise ConfigError(f"cost.target={target:.6g} {UNITS[table.metric]} is below the cost of the network "
                              f"without its cells' ops ({table.fixed:.6g}); raise it or set cost.hard=false")
        self.sample_within = sample_within
        if sample_within:
            self._install_decoders(model)

    def _install_decoders(self, model: nn.Module) -> None:
        """``cost.sample_within``: every choice of the table samples only cells within the target."""
        if self.target is None:
            raise ConfigError("cost.sample_within=true needs cost.target")
        if len(self._choices) != 1:
            raise ConfigError(f"cost.sample_within needs one costed choice, this supernet has "
                              f"{len(self._choices)} ({', '.join(self._choices)}); set it false")
        from .feasible import FeasibleArgmax
        for name, ch in self._choices.items():
            if ch.kind != CATEGORICAL or not bool((self.table.share[name] == 1).all()):
                raise ConfigError(f"cost.sample_within: the cells of choice '{name}' do not keep one op on every "
                                  f"edge (nb201 does; darts keeps two inputs per node); set it false")
            if not getattr(ch.estimator, "decodes", False):
                raise ConfigError(f"cost.sample_within needs an estimator whose sample is one-hot (gumbel_hard, ste); "
                                  f"'{ch.estimator.name}' mixes the candidates: set estimator.name or cost.sample_within=false")
            ch.set_decoder(FeasibleArgmax(self.table.for_candidates(name, ch.candidates), self.target - self.table.fixed,
                                          self._allowed[name], model.derive_limit(name, ch.candidates),
                                          self.table.cell_costs(name, ch.candidates)))

    def set_progress(self, epoch: int, epochs: int, step: int = 0, steps_per_epoch: int = 1) -> None:
        """The search's progress before step ``step`` of epoch ``epoch`` (both from 0), as
        :meth:`nas.estimators.base.Estimator.set_progress` takes it: the penalty waits for
        ``cost.warmup_epochs`` of it."""
        self.epochs_done = epoch + step / steps_per_epoch

    def _dev(self, kind: str, name: str, like: Tensor) -> Tensor:
        src = {"cost": self._cost, "allowed": self._allowed, "slope": self._slope}[kind][name]
        key = (kind, name, like.device)
        if key not in self._on:
            self._on[key] = src.to(like.device)
        return self._on[key]

    def expected(self) -> Tensor:
        """The differentiable expected cost of the current distribution (module docstring)."""
        model = self._model()
        total: Optional[Tensor] = None
        for name, ch in self._choices.items():
            w = ch.expected_weights()
            q = w * self._dev("allowed", name, w)
            q = q / q.sum(-1, keepdim=True).clamp_min(1e-12)
            keep = model.cost_open_probs(name)
            if keep is not None:
                q = q * keep
            if self.estimate == "derived":  # the argmax cell's cost, the distribution's gradient
                hard = F.one_hot(q.detach().argmax(-1), q.shape[-1]).to(q.dtype)
                q = straight_through(hard * (q.detach().sum(-1, keepdim=True) > 0), q)
            cost = self._dev("cost", name, q)
            share = model.cost_kept_share(name) if name in self._slope else None
            if share is not None:  # a + b·C·f = full − b·C·(1 − f)
                cost = cost - self._dev("slope", name, q) * (1 - share.to(cost.dtype))
            term = (q * cost).sum()
            extra = self.table.interactions(name, q, ch.candidates)
            if extra is not None:
                term = term + extra
            total = term if total is None else total + term
        return total + self.table.fixed

    def penalty(self) -> Tensor:
        if self.target is None or self.weight == 0 or self.epochs_done < self.warmup:
            return torch.zeros(())
        ratio = self.expected() / self.target
        if self.form == "hinge":
            return self.weight * F.relu(ratio - 1)
        return self.weight * (torch.log(ratio) if self.form == "log" else (ratio - 1).abs())

    def exact(self, genotype: Any) -> float:
        """The cost of the network built from ``genotype`` (an edge with a recorded width at it)."""
        return self.table.exact(self.selected(genotype), None if self.widths is None else self.widths(genotype))

    def edge_costs(self) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        """``({choice: [E, K] cost}, {choice: [E, K] allowed})`` over each choice's candidates: what a
        space's own derive within the target weighs, the cost of each kept (edge, op) as
        :meth:`exact` adds it up (not weighted by ``share``, the chance the edge is kept)."""
        t = self.table
        return ({n: t.edges[n][:, [t.column(op) for op in ch.candidates]] for n, ch in self._choices.items()},
                dict(self._allowed))

    def over(self, genotype: Any) -> bool:
        """Whether derive must look for a cheaper cell."""
        return self.hard and self.exact(genotype) > self.target * (1 + 1e-9)

    def require_within(self, genotype: Any, fix: str = "raise cost.target or set cost.hard=false") -> None:
        """A one-line ConfigError when a hard target is exceeded by ``genotype``, the cell derive
        found (over the target only when no cell of the space fits)."""
        if self.over(genotype):
            raise ConfigError(f"the cheapest cell derive finds costs {self.exact(genotype):.6g} "
                              f"{UNITS[self.table.metric]}, over cost.target={self.target:.6g} (cost.hard); {fix}")

    def within(self, name: str, probs: Tensor, allowed: Tensor, count_limit: Optional[Tuple[int, int]] = None,
               candidates: Optional[Sequence[str]] = None, cost: Optional[Tensor] = None,
               keep: Optional[Callable[[Tensor], Tensor]] = None) -> Optional[List[int]]:
        """The most probable index per edge of choice ``name`` (one op per edge, NB201) into
        ``candidates`` (default: the choice's) whose cell fits the target; ``None`` if none does.
        ``cost``: ``[E, K]`` the candidates' costs, default the table's (full width); ``keep``:
        ``[n, E]`` cells → ``[n]`` bool, the cells the space admits (:func:`most_probable_within`)."""
        candidates = candidates or self._choices[name].candidates
        cost = self.table.for_candidates(name, candidates) if cost is None else cost
        logp = probs.double().clamp_min(1e-300).log()
        return most_probable_within(logp, cost, self.target - self.table.fixed, allowed.bool(), count_limit,
                                    self.table.cell_costs(name, candidates), keep)

    @torch.no_grad()
    def scalars(self) -> Dict[str, float]:
        out = {"expected": float(self.expected()), "derived": self.exact(self._model().genotype())}
        if self.target is not None:
            out["target"] = float(self.target)
        return out

    def extra_repr(self) -> str:
        return (f"metric={self.table.metric}, target={self.target}, weight={self.weight}, "
                f"form={self.form}, hard={self.hard}, fixed={self.table.fixed:.4g}"
                + (", sample_within=True" if self.sample_within else ""))


def cost_report(budget: Budget, genotype: Any) -> str:
    """One line: the derived network's exact cost against the target."""
    c = budget.exact(genotype)
    unit = UNITS[budget.table.metric]
    if budget.target is None:
        return f"cost: {c:.4f} {unit}"
    return f"cost: {c:.4f} {unit} (target {budget.target:g}, {'within' if c <= budget.target * (1 + 1e-9) else 'OVER'})"


def attach_budget(model: nn.Module, cost_model: Any, *, metric: str, target: Optional[float], weight: float,
                  form: str, hard: Optional[bool], num_classes: int, in_channels: int, resolution: int,
                  estimate: str = "expected", warmup: float = 0.0, sample_within: bool = False,
                  network: Dict[str, Any], cell: Optional[Dict[str, Any]] = None, latency: Any = None,
                  batch_size: int = 1, ops: Optional[Sequence[str]] = None,
                  table: Optional[CostTable] = None, op_args: Optional[Dict[str, Dict[str, Any]]] = None) -> Budget:
    """Build the cost table of a space's trained network (its :class:`~nas.cost.model.CostModel`,
    with the candidates ``ops``, default the space's own), unless ``table`` is given (a device's,
    :mod:`nas.cost.device`), and attach a :class:`Budget` to ``model`` as ``model.cost``."""
    from .table import build_cost_table
    table = table or build_cost_table(cost_model, metric, num_classes=num_classes, in_channels=in_channels,
                                      resolution=resolution, network=network, cell=cell, latency=latency,
                                      batch_size=batch_size, ops=ops, op_args=op_args)
    budget = Budget(model, table, cost_model.derivable(model), cost_model.selected_edges,
                    widths=cost_model.selected_widths, target=target,
                    weight=weight, form=form, hard=hard, estimate=estimate, warmup=warmup,
                    sample_within=sample_within)
    budget.table_source = latency  # the latency table, kept with the run
    model.cost = budget
    cheapest = getattr(model, "cheapest_cost", None)  # spaces whose cells derive cannot enumerate up front
    if budget.hard and cheapest is not None:
        least = cheapest()
        if least is not None and least > target * (1 + 1e-9):
            raise ConfigError(f"cost.target={target:.6g} {UNITS[table.metric]} is below the cheapest cell derive "
                              f"may pick ({least:.6g}); raise it or set cost.hard=false")
    return budget
