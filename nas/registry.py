"""Small name -> constructor registries for the extension points (spaces, estimators, datasets).

fvcore-style: registering a name twice is an error, and looking up an unknown name raises a
:class:`~nas.errors.ConfigError` that lists the known names.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Optional

from .errors import ConfigError


class Registry:
    """Names of one kind of extension (``kind``: "search space", "estimator", "dataset") mapped to
    their constructors: :meth:`register` adds one (a name twice is a ``ValueError``), :meth:`get`
    looks one up (an unknown name is a one-line ``ConfigError`` listing the known ones, prefixed
    by the config ``key`` it came from), :meth:`names` lists them sorted."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Any] = {}

    def register(self, name: Optional[str] = None, obj: Any = None):
        """Use as ``reg.register("name", obj)`` or as a decorator ``@reg.register("name")``."""

        def add(o: Any) -> Any:
            key = name or o.__name__
            if key in self._items:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._items[key] = o
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str, key: str = "") -> Any:
        if name not in self._items:
            where = f"{key}: " if key else ""
            raise ConfigError(
                f"{where}unknown {self.kind} '{name}'; known: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
