"""Estimators for discrete choices, one registry entry each (see ``base.py`` for the interface)."""
from __future__ import annotations

import inspect
from typing import Any

from ..errors import ConfigError
from ..registry import Registry
from .base import BINARY, CATEGORICAL, Estimator, Sample
from .gumbel import Gumbel, GumbelHard
from .schedules import Schedule
from .surrogate import Softmax

ESTIMATORS = Registry("estimator")
ESTIMATORS.register("softmax", Softmax)
ESTIMATORS.register("gumbel", Gumbel)
ESTIMATORS.register("gumbel_hard", GumbelHard)


def build_estimator(name: str, noise: str = "none", sigma0: float = 0.2, sigma_max: float = 0.5,
                    **kwargs: Any) -> Estimator:
    """``ESTIMATORS[name](**kwargs)``; ``None`` values mean "the estimator's default".

    A keyword the estimator does not take is an error naming the config key, so that a setting
    that would silently do nothing (e.g. ``estimator.gamma`` with ``softmax``) is caught.
    """
    cls = ESTIMATORS.get(name, "estimator.name")
    given = {k: v for k, v in kwargs.items() if v is not None}
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    extra = sorted(set(given) - accepted)
    if extra:
        raise ConfigError(f"estimator.{extra[0]} is not used by estimator '{name}'; "
                          f"it takes: {', '.join(sorted(accepted)) or 'no options'}")
    est = cls(**given)
    if noise != "none":
        raise ConfigError(f"estimator.noise: '{noise}' is not available yet; allowed: none")
    return est


__all__ = ["ESTIMATORS", "build_estimator", "Estimator", "Sample", "Schedule", "CATEGORICAL", "BINARY"]
