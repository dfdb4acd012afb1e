"""nas: differentiable neural architecture search with pluggable estimators for discrete choices.

The public API (see docs/api.md and docs/extending.md): :func:`load_config`,
:func:`search`, :func:`derive`, :func:`retrain`, :func:`export`, :func:`build_network`, :func:`list_spaces`,
:func:`list_ops`, :func:`list_estimators`, :func:`register_op`, :func:`register_space`,
:func:`register_estimator`, :func:`register_dataset`, and the error classes. The functions are
imported on first use, so ``import nas`` (and ``nas-search --help``) stays fast.
"""
from .errors import CheckpointError, ConfigError, DataError, NasError

from .version import __version__

_API = ("load_config", "search", "derive", "retrain", "export", "build_network", "list_spaces", "list_ops",
        "list_estimators", "register_op", "register_space", "register_estimator", "register_dataset")
__all__ = [*_API, "NasError", "ConfigError", "DataError", "CheckpointError", "__version__"]


# subpackages the docs use as ``nas.X.Y`` after a plain ``import nas``; imported on first use too
_SUBPACKAGES = ("benchmarks",)


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    if name in _SUBPACKAGES:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'nas' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(_API) | set(_SUBPACKAGES))
