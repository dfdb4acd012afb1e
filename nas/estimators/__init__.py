"""Estimators for discrete choices, one registry entry each (see ``base.py`` for the interface)."""
from __future__ import annotations

import dataclasses
from typing import Any, List, NamedTuple, Optional

from ..config import register_entry_options
from ..errors import ConfigError, NasError
from ..registry import Registry
from .base import BINARY, CATEGORICAL, Estimator, Sample
from .bop import Bop, BopEstimator
from .dirichlet import Dirichlet
from .gumbel import Gumbel, GumbelHard
from .noise import AdaptiveNoise
from .reinmax import ReinMax
from .schedules import Schedule
from .ste import STE
from .surrogate import SigmoidGate, Softmax, SoftsignGate, TanhGate

ESTIMATORS = Registry("estimator")
ESTIMATORS.register("softmax", Softmax)
ESTIMATORS.register("sigmoid", SigmoidGate)
ESTIMATORS.register("tanh", TanhGate)
ESTIMATORS.register("softsign", SoftsignGate)
ESTIMATORS.register("gumbel", Gumbel)
ESTIMATORS.register("gumbel_hard", GumbelHard)
ESTIMATORS.register("ste", STE)
ESTIMATORS.register("bop", BopEstimator)
ESTIMATORS.register("dirichlet", Dirichlet)
ESTIMATORS.register("reinmax", ReinMax)

NOISES = ("none", "adaptive")


def noise_capable() -> list:
    """Names of the estimators that ``estimator.noise=adaptive`` works with."""
    return [n for n in ESTIMATORS.names() if ESTIMATORS.get(n).supports_noise]


def estimator_options(name: str) -> type:
    """The options dataclass estimator ``name`` declares (its ``Options``, else its constructor's
    keywords): the keys of the ``estimator:`` section that names it, besides the noise wrapper's."""
    from ..options import options_of
    return options_of(ESTIMATORS.get(name, "estimator.name"))


def build_estimator(name: str, noise: str = "none", sigma0: float = 0.2, sigma_max: float = 0.5,
                    noise_lr: Optional[float] = None, sigma_end: Optional[float] = None, **kwargs: Any) -> Estimator:
    """``ESTIMATORS[name](**options)``, wrapped in :class:`AdaptiveNoise` when ``noise="adaptive"``;
    ``None`` values mean "the estimator's default"; ``noise_lr`` is the optimizer's (ignored here).

    A keyword the estimator does not declare (:func:`estimator_options`) is an error naming the
    config key, so that a setting that would silently do nothing (``estimator.gamma`` with
    ``softmax``) is caught.
    """
    cls = ESTIMATORS.get(name, "estimator.name")
    given = {k: v for k, v in kwargs.items() if v is not None}
    accepted = {f.name for f in dataclasses.fields(estimator_options(name))}
    extra = sorted(set(given) - accepted)
    if extra:
        raise ConfigError(f"estimator.{extra[0]} is not used by estimator '{name}'; "
                          f"it takes: {', '.join(sorted(accepted)) or 'no options'}")
    if noise not in NOISES:
        raise ConfigError(f"estimator.noise: unknown noise '{noise}'; allowed: {', '.join(NOISES)}")
    if sigma_end is not None and noise != "adaptive":
        raise ConfigError("estimator.sigma_end anneals adaptive noise: set estimator.noise=adaptive or remove it")
    if noise == "adaptive":
        if sigma_end is not None and not 0.0 <= sigma_end <= sigma_max:
            raise ConfigError(f"estimator.sigma_end must lie in [0, estimator.sigma_max={sigma_max}], got {sigma_end}")
        if not cls.supports_noise:
            raise ConfigError(f"estimator.noise=adaptive works only with estimator.name "
                              f"{' or '.join(noise_capable())}, not '{name}'")
        if given.get("single_path"):
            raise ConfigError("estimator.single_path=true cannot be combined with estimator.noise=adaptive: "
                              "the noisy forward is not one-hot, so every candidate runs")
        if not 0.0 <= sigma0 <= sigma_max:
            raise ConfigError(f"estimator.sigma0 must lie in [0, estimator.sigma_max={sigma_max}], got {sigma0}")
    try:
        est = cls(**given)
    except ValueError as e:
        raise ConfigError(f"estimator '{name}': {e}") from None
    return AdaptiveNoise(est, sigma0, sigma_max, sigma_end) if noise == "adaptive" else est


class EstimatorSpec(NamedTuple):
    """An estimator as the benchmark and comparison commands name it on their command line."""
    name: str
    noise: str = "none"        # "adaptive" for NAME+noise
    single_path: bool = False  # NAME:single_path

    def overrides(self) -> List[str]:
        """The config overrides that select it (``estimator.single_path`` only where it is set)."""
        return [f"estimator.name={self.name}", f"estimator.noise={self.noise}",
                *(["estimator.single_path=true"] if self.single_path else [])]

    def build(self, **kwargs: Any) -> Estimator:
        return build_estimator(self.name, noise=self.noise, **({"single_path": True} if self.single_path else {}),
                               **kwargs)


def parse_spec(spec: str, single_path: bool = False) -> EstimatorSpec:
    """``NAME`` or ``NAME+noise`` (``estimator.noise=adaptive``); with ``single_path``, also
    ``NAME:single_path`` (the selected candidate alone in the forward). The name is checked when
    the estimator is built."""
    name, _, opt = spec.strip().partition(":") if single_path else (spec.strip(), "", "")
    name, plus, extra = name.partition("+")
    if (plus and extra != "noise") or opt not in ("", "single_path") or not name:
        forms = "NAME, NAME+noise or NAME:single_path" if single_path else "NAME or NAME+noise"
        raise NasError(f"estimator spec '{spec}': use {forms}")
    return EstimatorSpec(name, "adaptive" if plus else "none", bool(opt))


def estimator_from_config(section: Any) -> Estimator:
    """The estimator an ``estimator:`` section (:class:`nas.config.EstimatorConfig`) names."""
    from ..options import options_dict
    return build_estimator(section.name, **options_dict(section, exclude=("name", "kinds")))


def _section_options(name: str) -> tuple:
    from .noise import NoiseOptions
    return NoiseOptions, estimator_options(name)


register_entry_options("estimator", _section_options, ESTIMATORS.names)

__all__ = ["ESTIMATORS", "build_estimator", "estimator_options", "estimator_from_config", "noise_capable",
           "parse_spec", "EstimatorSpec", "Estimator", "Sample", "Schedule",
           "AdaptiveNoise", "ReinMax", "Bop", "BopEstimator", "STE", "CATEGORICAL", "BINARY"]
