"""One estimator per kind of discrete parameter (``estimator.kinds``).

A supernet's discrete parameters are of different kinds: the op choice of an edge (a categorical
that a relaxation such as DARTS's softmax learns well), the L0 gates of edges, ops and channels,
the rule pool of a DNF op (binary literals and selectors, which a straight-through or Bop
estimator with adaptive noise learns so that derive keeps what ran; Lu, "Neural Disjunctive
Normal Form", 2020), the instructions of a program. Each kind is a registry entry
(:data:`KINDS`, :func:`register_kind`) with the shape of its choices and the estimator its block
defaults to; ``estimator.name`` is the estimator of the space's main kind
(:attr:`nas.spaces.base.SearchSpace.main_kind`) and ``estimator.kinds`` overrides the others:

    estimator: {name: softmax, kinds: {rules: ste+noise, gates: {name: bop, gamma: 1e-3}}}

A value is an estimator's name, ``NAME+noise`` (adaptive noise), or a section mapping ``name``
and the estimator's options. :class:`EstimatorSet` holds them: it *is* the main kind's estimator
for every caller that knows one estimator, and a block asks it for its own kind with
:meth:`~nas.estimators.base.Estimator.for_kind`. Schedules, checkpoints, TensorBoard scalars,
the discrete optimizer and the after-step hooks cover every estimator of the set; each hook sees
only the parameters of the choices its estimator learns (:meth:`EstimatorSet.bind`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from ..errors import ConfigError, NasError
from ..registry import Registry
from .base import BINARY, CATEGORICAL, Estimator, Sample

HARD_CONCRETE = "hard_concrete"   # the gates' own estimator (nas.blocks.l0.HardConcreteGate): None here


@dataclass(frozen=True)
class Kind:
    """A kind of discrete parameter: the shape of its choices (``categorical``/``binary``), the
    estimator its block defaults to (a spec as in ``estimator.kinds``; None: the main
    estimator) and names only it accepts (``hard_concrete`` for gates)."""
    shape: str
    default: Optional[Any] = None
    own: Tuple[str, ...] = ()
    help: str = ""


KINDS = Registry("kind of discrete parameter")


def register_kind(name: str, shape: str, default: Optional[Any] = None, *, own: Tuple[str, ...] = (),
                  help: str = "") -> Kind:
    """Register a kind a block asks for with ``estimator.for_kind(name)``; ``estimator.kinds.<name>``
    then sets its estimator."""
    if shape not in (CATEGORICAL, BINARY):
        raise ValueError(f"a kind's shape is {CATEGORICAL} or {BINARY}, got '{shape}'")
    kind = Kind(shape, default, tuple(own), help)
    KINDS.register(name, kind)
    return kind


register_kind("ops", CATEGORICAL, help="the op choice of each edge")
register_kind("gates", BINARY, HARD_CONCRETE, own=(HARD_CONCRETE,),
              help="L0 gates of edges, ops and channels (space.gates, the l0_* ops)")
register_kind("rules", BINARY, {"name": "ste", "noise": "adaptive", "sigma_end": 0.0},
              help="the rule pools and selectors of DNF blocks (dnf_1x1, the dnf space)")
register_kind("program", CATEGORICAL, help="the instructions of a program (the program space)")


def parse_spec(spec: Any, key: str) -> Dict[str, Any]:
    """``"ste"``, ``"ste+noise"`` or ``{name: ste, noise: adaptive, ...}`` as one section mapping."""
    if isinstance(spec, str):
        from . import parse_spec as parse_name   # the commands' NAME / NAME+noise
        try:
            parsed = parse_name(spec)
        except NasError as e:
            raise ConfigError(f"{key}: {e}") from None
        return {"name": parsed.name, **({"noise": parsed.noise} if parsed.noise != "none" else {})}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return dict(spec)
    raise ConfigError(f"{key}: expected an estimator name, NAME+noise or a mapping with a name, got {spec!r}")


def build_kind(kind: str, spec: Any, key: str) -> Optional[Estimator]:
    """The estimator ``spec`` names for ``kind``; a one-line error naming both when the kind is
    unknown or the estimator cannot learn choices of the kind's shape. None: the kind's own
    estimator (hard concrete gates)."""
    from . import ESTIMATORS, build_estimator
    if kind not in KINDS:
        raise ConfigError(f"{key}: unknown kind '{kind}'; allowed: {', '.join(KINDS.names())}")
    k = KINDS.get(kind)
    section = parse_spec(spec, key)
    name = section.pop("name")
    if name in k.own:
        if section:
            raise ConfigError(f"{key}: '{name}' takes no options here, got {', '.join(section)}")
        return None
    cls = ESTIMATORS.get(name, f"{key}.name")
    if k.shape not in cls.kinds:
        raise ConfigError(f"{key}: estimator '{name}' learns only {' and '.join(cls.kinds)} choices and "
                          f"kind '{kind}' is {k.shape}; choose one that learns {k.shape} choices")
    try:
        return build_estimator(name, **section)
    except ConfigError as e:   # its messages name estimator.<key>; say which kind
        raise ConfigError(f"{key}: {e}") from None


class OptimizerGroup:
    """Several discrete optimizers (one per estimator that has one) stepped as one."""

    def __init__(self, optimizers: List[torch.optim.Optimizer]):
        self.optimizers = optimizers
        self.param_groups = [g for o in optimizers for g in o.param_groups]

    def step(self, closure: Any = None) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)


class EstimatorSet(Estimator):
    """The main estimator plus one per other kind. As an :class:`Estimator` it is the main one
    (its ``create``/``sample``/``derive`` learn the main kind's choices); :meth:`for_kind` gives
    a kind's own (None for hard-concrete gates)."""

    def __init__(self, main: Estimator, main_kind: str, kinds: Mapping[str, Optional[Estimator]]):
        super().__init__()
        self.main, self.main_kind = main, main_kind
        # the kinds of discrete parameter -> their estimator; ``kinds`` stays Estimator's (the shapes learned)
        self.by_kind: Dict[str, Optional[Estimator]] = {main_kind: main, **kinds}
        self.name, self.kinds, self.supports_noise, self.decodes = main.name, main.kinds, main.supports_noise, main.decodes
        self.independent_gates = main.independent_gates   # FairDARTS asks the choice's estimator
        self.schedules, self.values = main.schedules, main.values
        self._owner: Dict[int, Estimator] = {}
        self._bound = False

    # the main kind's estimator, for the callers that know one
    def create(self, shape, kind, init_std=1e-3, generator=None):
        return self.main.create(shape, kind, init_std, generator)

    def sample(self, params: Dict[str, Tensor], kind: str, training: bool) -> Sample:
        return self.main.sample(params, kind, training)

    def probs(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        return self.main.probs(params, kind)

    def expected_weights(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        return self.main.expected_weights(params, kind)

    def derive(self, params: Dict[str, Tensor], kind: str) -> Tensor:
        return self.main.derive(params, kind)

    def distribution(self, params: Dict[str, Tensor], kind: str):
        return self.main.distribution(params, kind)

    # ------------------------------------------------------------ kinds
    def for_kind(self, kind: str) -> Optional[Estimator]:
        if kind not in KINDS:
            raise ConfigError(f"a block asks for kind '{kind}', which is not registered; "
                              f"allowed: {', '.join(KINDS.names())} (nas.estimators.kinds.register_kind)")
        if kind not in self.by_kind:   # a kind the config did not name: its block's default
            d = KINDS.get(kind).default
            self.by_kind[kind] = self.main if d is None else build_kind(kind, d, f"estimator.kinds.{kind}")
        return self.by_kind[kind]

    def estimators(self) -> List[Estimator]:
        """The distinct estimators of the set, the main one first."""
        out: List[Estimator] = []
        for e in self.by_kind.values():
            if e is not None and all(e is not o for o in out):
                out.append(e)
        return out

    def bind(self, owners: Iterable[Tuple[Estimator, Iterable[Tensor]]]) -> None:
        """Record which estimator learns each architecture parameter: ``owners`` pairs each
        choice's estimator with its parameters (the set itself stands for the main one)."""
        self._owner = {}
        for est, params in owners:
            for p in params:
                self._owner[id(p)] = self.main if est is self else est
        self._bound = True

    def _split(self, params: Iterable[Tensor]) -> Dict[int, List[Tensor]]:
        out: Dict[int, List[Tensor]] = {}
        for p in params:
            out.setdefault(id(self._owner.get(id(p), self.main)), []).append(p)
        return out

    def discrete_optimizer(self, params: List[Tensor]) -> Optional[torch.optim.Optimizer]:
        split = self._split(params)
        opts = [o for e in self.estimators() if id(e) in split
                for o in [e.discrete_optimizer(split[id(e)])] if o is not None]
        return None if not opts else opts[0] if len(opts) == 1 else OptimizerGroup(opts)

    @torch.no_grad()
    def after_step(self, params_by_role: Dict[str, List[Tensor]]) -> None:
        by_est: Dict[int, Dict[str, List[Tensor]]] = {}
        for role, params in params_by_role.items():
            for eid, ps in self._split(params).items():
                by_est.setdefault(eid, {})[role] = ps
        for e in self.estimators():
            e.after_step(by_est.get(id(e), {}))

    def set_progress(self, epoch: int, epochs: int, step: int = 0, steps_per_epoch: int = 1) -> None:
        for e in self.estimators():
            e.set_progress(epoch, epochs, step, steps_per_epoch)

    def _others(self) -> Dict[str, Estimator]:
        """The other kinds' estimators; once bound, those that learn some choice of the model."""
        used = {id(e) for e in self._owner.values()}
        return {k: e for k, e in self.by_kind.items() if e is not None and e is not self.main
                and (not self._bound or id(e) in used)}

    def scalars(self) -> Dict[str, float]:
        """The main estimator's values, then each other kind's as ``<kind>/<value>``."""
        out = dict(self.main.scalars())
        for k, e in self._others().items():
            out.update({f"{k}/{n}": v for n, v in e.scalars().items()})
        return out

    def state_dict(self) -> dict:
        return {**self.main.state_dict(), "kinds": {k: e.state_dict() for k, e in self._others().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.main.load_state_dict(state)
        for k, s in state.get("kinds", {}).items():
            e = self.for_kind(k)
            if e is not None:
                e.load_state_dict(s)

    def __repr__(self) -> str:
        others = ", ".join(f"{k}={e!r}" for k, e in self._others().items())
        return f"{self.main!r}" + (f" [{others}]" if others else "")


def estimators_from_config(section: Any, main_kind: str = "ops") -> EstimatorSet:
    """The :class:`EstimatorSet` of an ``estimator:`` section: ``name`` and its options for
    ``main_kind``, ``kinds`` for the others (the rest default to their blocks' choices)."""
    from . import build_estimator
    from ..options import options_dict
    main = build_estimator(section.name, **options_dict(section, exclude=("name", "kinds")))
    given = getattr(section, "kinds", None) or {}
    if not isinstance(given, Mapping):
        raise ConfigError(f"estimator.kinds must map a kind to an estimator, e.g. {{rules: ste+noise}}; got {given!r}")
    kinds = {}
    for kind, spec in given.items():
        built = build_kind(kind, spec, f"estimator.kinds.{kind}")
        kinds[kind] = built
    if main_kind in kinds:
        raise ConfigError(f"estimator.kinds.{main_kind}: '{main_kind}' is this space's main kind, set by "
                          f"estimator.name; remove estimator.kinds.{main_kind}")
    return EstimatorSet(main, main_kind, kinds)
