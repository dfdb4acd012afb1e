"""Allowed values of config keys, declared next to the fields and checked when a config is loaded.

A config dataclass declares a numeric key with :func:`ranged` and a free-text key with
:func:`matching` instead of a bare default::

    momentum: float = ranged(0.9, ge=0, lt=1)
    lr_min: float = ranged(0.001, ge=0, le="lr")      # a bound may name a sibling key
    betas: Tuple[float, float] = ranged((0.5, 0.999), ge=0, lt=1)   # lists: every element

:func:`check_fields` then rejects a value outside its range, and any float that is not finite
(nan, inf), with one line naming the key, the value and what is allowed. The same mechanism
serves every section, including sections added later: :func:`undeclared_numeric_fields` lists
the numeric keys that lack a range, and the config tests fail on any.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Tuple, Union

from .errors import ConfigError

Bound = Union[int, float, str, None]  # a number, or the name of a sibling field


def _show(b: float) -> str:
    if isinstance(b, int) and b >= 2 ** 20 and b & (b - 1) == 0:
        return f"2^{b.bit_length() - 1}"
    return repr(b)


@dataclass(frozen=True)
class Range:
    """``ge``/``gt``: lower bound (inclusive/exclusive); ``le``/``lt``: upper bound. A bound given
    as a string is the value of that sibling field of the same section."""
    ge: Bound = None
    gt: Bound = None
    le: Bound = None
    lt: Bound = None

    def _bound(self, b: Bound, obj: Any, prefix: str) -> Tuple[Optional[float], str]:
        if isinstance(b, str):
            if obj is None:  # the range itself (the configuration reference): name the sibling
                return None, f"{prefix}{b}"
            v = getattr(obj, b)
            return v, f"{prefix}{b}={v!r}"
        return b, (_show(b) if b is not None else "")

    def describe(self, obj: Any = None, prefix: str = "") -> str:
        lo_b, lo_open = (self.gt, True) if self.gt is not None else (self.ge, False)
        hi_b, hi_open = (self.lt, True) if self.lt is not None else (self.le, False)
        _, lo = self._bound(lo_b, obj, prefix)
        _, hi = self._bound(hi_b, obj, prefix)
        if lo and hi:
            return f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        if lo:
            return f"{'>' if lo_open else '>='} {lo}"
        if hi:
            return f"{'<' if hi_open else '<='} {hi}"
        return "any finite number"

    def holds(self, v: float, obj: Any = None) -> bool:
        def val(b: Bound) -> Optional[float]:
            return self._bound(b, obj, "")[0]
        checks = ((self.ge, lambda b: v >= b), (self.gt, lambda b: v > b),
                  (self.le, lambda b: v <= b), (self.lt, lambda b: v < b))
        return all(val(b) is None or ok(val(b)) for b, ok in checks)


def ranged(default: Any = dataclasses.MISSING, *, ge: Bound = None, gt: Bound = None, le: Bound = None,
           lt: Bound = None, default_factory: Any = dataclasses.MISSING, help: str = "") -> Any:
    """A dataclass field whose numbers (or each number of a list/tuple) must lie in the range;
    ``help``: its one line in the configuration reference (:func:`nas.options.describe`)."""
    if isinstance(default, (list, dict)):  # mutable defaults need a factory
        default, default_factory = dataclasses.MISSING, (lambda d=default: type(d)(d))
    metadata: dict = {"range": Range(ge=ge, gt=gt, le=le, lt=lt)}
    if help:
        metadata["help"] = help
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def matching(default: Any, pattern: str, hint: str) -> Any:
    """A text field whose value must fully match ``pattern``; ``hint`` says what is allowed."""
    return dataclasses.field(default=default, metadata={"pattern": (re.compile(pattern), hint)})


def _numbers(value: Any) -> Iterator[Tuple[str, Any]]:
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield f"[{i}]", v
    else:
        yield "", value


def _names_sibling(rng: Optional[Range]) -> bool:
    return rng is not None and any(isinstance(b, str) for b in (rng.ge, rng.gt, rng.le, rng.lt))


def check_fields(obj: Any, prefix: str = "") -> None:
    """One-line :class:`ConfigError` for the first field of dataclass ``obj`` (not its nested
    sections) holding a non-finite float, else for the first outside its range or pattern
    (finiteness first: a range bounded by a sibling key reads that key's value)."""
    leaves = [(f, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    leaves = [(f, v) for f, v in leaves if v is not None and not dataclasses.is_dataclass(v)]
    for f, value in leaves:
        for suffix, v in _numbers(value):
            if isinstance(v, float) and not math.isfinite(v):
                rng = f.metadata.get("range")
                allowed = rng.describe(obj, prefix) if rng is not None else "any finite number"
                raise ConfigError(f"{prefix}{f.name}{suffix}={v!r} is not a finite number; allowed: {allowed}")
    # a range bounded by a sibling key after that key's own: a bad sigma_max is named as itself,
    # not as the bound that sigma0 then fails
    leaves.sort(key=lambda fv: _names_sibling(fv[0].metadata.get("range")))
    for f, value in leaves:
        key = f"{prefix}{f.name}"
        rng: Optional[Range] = f.metadata.get("range")
        for suffix, v in _numbers(value):
            if rng is not None and not isinstance(v, bool) and isinstance(v, (int, float)) and not rng.holds(v, obj):
                raise ConfigError(f"{key}{suffix}={v!r} is out of range; allowed: {rng.describe(obj, prefix)}")
        pattern = f.metadata.get("pattern")
        if pattern is not None and isinstance(value, str) and not pattern[0].fullmatch(value):
            raise ConfigError(f"{key}={value!r} is not allowed; {pattern[1]}")


def check_config(obj: Any, prefix: str = "") -> None:
    """:func:`check_fields` on ``obj`` and every nested section (a config built in Python)."""
    check_fields(obj, prefix)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_config(value, f"{prefix}{f.name}.")


def _is_numeric(tp: Any) -> bool:
    if tp in (int, float):
        return True
    if typing.get_origin(tp) is typing.Literal:
        return False
    return any(_is_numeric(a) for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis)


def walk_owned(cls: type, prefix: str = "") -> Iterator[Tuple[str, dataclasses.Field, Any, type]]:
    """``(dotted key, field, type hint, the dataclass declaring it)`` of every leaf key of config
    class ``cls``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if "section" in vars(tp) and hasattr(tp, "entry_class"):  # a section naming an entry: its default's keys
            tp = tp.entry_class(tp.default_entry)
        if dataclasses.is_dataclass(tp):
            yield from walk_owned(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, tp, cls


def walk_fields(cls: type, prefix: str = "") -> Iterator[Tuple[str, dataclasses.Field, Any]]:
    """``(dotted key, field, type hint)`` of every leaf key of config class ``cls``."""
    for key, f, tp, _ in walk_owned(cls, prefix):
        yield key, f, tp


def undeclared_numeric_fields(cls: type) -> List[str]:
    """Dotted keys of ``cls`` holding numbers that declare no range (each one is a defect)."""
    return [key for key, f, tp in walk_fields(cls) if _is_numeric(tp) and "range" not in f.metadata]


# shared by the search and retrain configs
MAX_SEED = 2 ** 63          # torch.manual_seed takes a signed 64-bit seed
RUN_NAME = r"(?!\.\.?$)[^/\\\x00]{1,100}"
RUN_NAME_HINT = ("a run name is 1 to 100 characters without '/' or '\\' "
                 "(the default run folder is runs/<name>-<time>)")
