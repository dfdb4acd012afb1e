"""Small name -> constructor registries for the extension points (ops, spaces, estimators, datasets).

fvcore-style: registering a name twice is an error, and looking up an unknown name raises a
:class:`~nas.errors.ConfigError` that lists the known names. Registering the *same definition*
again (same module and qualified name, e.g. a notebook cell or a user module run a second time)
replaces the entry instead, so that re-running user code is not an error.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, Optional

from .errors import ConfigError

# what an unknown-name error adds: where a user's own entries come from
USER_HINT = "your own? register it with nas.register_{kind} and list its module under 'imports:'"


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


class Registry:
    """Names of one kind of extension (``kind``: "op", "search space", "estimator", "dataset")
    mapped to their constructors: :meth:`register` adds one (another definition under a taken
    name is a one-line ``ConfigError``), :meth:`get` looks one up (an unknown name is a one-line
    ``ConfigError`` listing the known ones, prefixed by the config ``key`` it came from, with the
    ``hint`` on where a user's own entries come from), :meth:`names` lists them sorted."""

    def __init__(self, kind: str, hint: str = ""):
        self.kind = kind
        self.hint = hint
        self._items: Dict[str, Any] = {}

    def register(self, name: Optional[str] = None, obj: Any = None):
        """Use as ``reg.register("name", obj)`` or as a decorator ``@reg.register("name")``."""

        def add(o: Any) -> Any:
            key = name or o.__name__
            if not isinstance(key, str) or not key:
                raise ConfigError(f"a {self.kind} needs a non-empty string name, got {key!r}")
            old = self._items.get(key)
            if old is not None and old is not o and _where(old) != _where(o):
                raise ConfigError(f"{self.kind} '{key}' is registered twice ({_where(old)} and "
                                  f"{_where(o)}); give one of them another name")
            self._items[key] = o
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str, key: str = "") -> Any:
        if name not in self._items:
            where = f"{key}: " if key else ""
            hint = f" ({self.hint})" if self.hint else ""
            raise ConfigError(
                f"{where}unknown {self.kind} '{name}'; known: {', '.join(sorted(self._items))}{hint}")
        return self._items[name]

    def names(self) -> list:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
