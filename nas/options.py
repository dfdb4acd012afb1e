"""Options that belong to a registry entry: an estimator, a space, a dataset declares the config
keys it reads, and the config section that names the entry takes exactly those keys.

An entry declares its options as a dataclass in its own module, with the ranges of
:mod:`nas.bounds` and a one-line help each::

    @dataclass
    class Options:
        tau: float = ranged(1.0, gt=0, help="start temperature")
        schedule: Optional[Literal["linear", "cosine"]] = option(None, help="temperature schedule")

and hands it to the registry with its class (``Options = ...`` as a class attribute, or
``options=`` for a function entry). An entry that declares none gets its options from its
signature (:func:`signature_options`), as ops already do with ``space.op_args``.

A config section that names an entry (``estimator: {name: gumbel, tau: 2}``) is a dataclass
built here from the section's own fields (``name``, and what every entry of that registry
shares, e.g. the adaptive-noise wrapper's keys) followed by the entry's options
(:func:`entry_section`); it loads, checks ranges, dumps and resumes like any other section, and
:func:`describe` lists its keys with type, default, range and help (the configuration reference).
The same function resolves any mapping that names an entry, so a section may later hold several
of them (one estimator per kind of choice) without new machinery.

``null`` given to an option means the entry's default (old run folders wrote ``null`` for "the
estimator's default"). Keys of older releases are renamed by :func:`migrate` with a one-line
deprecation warning on stderr.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import typing
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple

from .bounds import Range
from .errors import ConfigError


def option(default: Any = dataclasses.MISSING, *, help: str = "", default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with a one-line ``help`` (numbers use :func:`nas.bounds.ranged`)."""
    if isinstance(default, (list, dict)):
        default, default_factory = dataclasses.MISSING, (lambda d=default: type(d)(d))
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"help": help})


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin in (list, List):
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (tuple, Tuple):
        return "a list of " + str(len(typing.get_args(tp))) + " numbers"
    if origin in (dict, Dict):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


# --------------------------------------------------------------------------- introspection

@dataclass(frozen=True)
class OptionInfo:
    """One config key as the configuration reference shows it."""
    key: str
    type: str
    default: Any
    range: str     # "" when the key declares none
    help: str


@functools.lru_cache(maxsize=None)
def _comments(cls: type) -> Dict[str, str]:
    """``{field: trailing comment}`` of a dataclass's source (help for fields declared without one)."""
    out: Dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            lines, _ = inspect.getsourcelines(klass)
        except (OSError, TypeError):
            continue
        for line in lines:
            code, sep, comment = line.partition("  # ")
            head = code.strip().split(":", 1)
            if sep and len(head) == 2 and head[0].isidentifier():
                out[head[0]] = comment.strip()
    return out


def field_help(cls: type, f: dataclasses.Field) -> str:
    return f.metadata.get("help") or _comments(cls).get(f.name, "")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def describe(cls: type, prefix: str = "") -> List[OptionInfo]:
    """Every leaf key of dataclass ``cls`` (nested sections flattened with dots)."""
    hints = typing.get_type_hints(cls)
    out: List[OptionInfo] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += describe(tp, f"{prefix}{f.name}.")
            continue
        rng: Optional[Range] = f.metadata.get("range")
        out.append(OptionInfo(f"{prefix}{f.name}", _type_name(tp), _default(f),
                              rng.describe() if rng is not None else "", field_help(cls, f)))
    return out


# --------------------------------------------------------------------------- options of an entry

def signature_options(fn: Callable, skip: Sequence[str] = (), name: str = "Options") -> type:
    """A dataclass of the keyword parameters of ``fn`` that have a default (besides ``skip``):
    the options of an entry that declares none. Types come from the annotations (none: any)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: take the values as given
        hints = {}
    fields = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in skip or p.name == "self" or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        if p.default is inspect.Parameter.empty:
            continue
        fields.append((p.name, hints.get(p.name, Any), option(p.default)))
    return dataclasses.make_dataclass(name, fields)


def options_of(entry: Any, fn: Optional[Callable] = None, skip: Sequence[str] = ()) -> type:
    """The options dataclass of a registry entry: its ``Options`` attribute, else the signature
    of ``fn`` (default: the entry itself, its ``__init__`` for a class)."""
    declared = getattr(entry, "Options", None)
    if declared is not None:
        if not dataclasses.is_dataclass(declared):
            raise ConfigError(f"{getattr(entry, '__name__', entry)}.Options must be a dataclass")
        return declared
    fn = fn or (entry.__init__ if isinstance(entry, type) else entry)
    return _signature_options_cached(fn, tuple(skip), f"{getattr(entry, '__name__', 'Entry')}Options")


@functools.lru_cache(maxsize=None)
def _signature_options_cached(fn: Callable, skip: Tuple[str, ...], name: str) -> type:
    return signature_options(fn, skip, name)


def _copy_field(f: dataclasses.Field) -> dataclasses.Field:
    return dataclasses.field(default=f.default, default_factory=f.default_factory,  # type: ignore[misc]
                             metadata=f.metadata)


@functools.lru_cache(maxsize=None)
def entry_section(base: type, *options: type) -> type:
    """The section dataclass: ``base``'s fields (``name``, the keys all entries share), then
    the fields of each ``options`` dataclass in turn; a key declared twice is a one-line error."""
    hints: Dict[str, Any] = {}
    fields: List[Tuple[str, Any, dataclasses.Field]] = []
    seen = {f.name: base.__name__ for f in dataclasses.fields(base)}
    for opts in options:
        opt_hints = typing.get_type_hints(opts)
        for f in dataclasses.fields(opts):
            if f.name in seen:
                raise ConfigError(f"{opts.__qualname__} declares the option '{f.name}', which "
                                  f"{seen[f.name]} already has; give it another name")
            seen[f.name] = opts.__qualname__
            hints[f.name] = opt_hints[f.name]
            fields.append((f.name, opt_hints[f.name], _copy_field(f)))
    name = base.__name__ + "".join(o.__name__ for o in options)
    cls = dataclasses.make_dataclass(name, fields, bases=(base,))
    cls.__module__ = base.__module__
    cls._option_sources = options  # for describe(): where each key's help comes from
    return cls


def section_help(cls: type, key: str) -> str:
    for src in (cls, *getattr(cls, "_option_sources", ())):
        for f in dataclasses.fields(src):
            if f.name == key:
                h = field_help(src, f)
                if h:
                    return h
    return ""


def nulls_to_defaults(cls: type, data: Dict[str, Any], keep: Sequence[str] = ()) -> Dict[str, Any]:
    """``null`` for an option means its default: drop those keys (besides ``keep``)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if not (v is None and k in names and k not in keep)}


def options_dict(section: Any, exclude: Sequence[str] = ("name",)) -> Dict[str, Any]:
    """The options of a section object as keywords (nested sections stay objects)."""
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section) if f.name not in exclude}


@dataclass
class NoOptions:
    """An entry without options."""


# --------------------------------------------------------------------------- old keys

_warned: set = set()


def deprecated(old: str, new: str) -> None:
    """One line on stderr, once per process and key: ``old`` is read as ``new``."""
    if old in _warned:
        return
    _warned.add(old)
    print(f"nas: deprecated config key {old}: use {new} (the old key is read for one more release)",
          file=sys.stderr)


def move_key(data: Dict[str, Any], src: Tuple[str, ...], dst: Tuple[str, ...], *, warn: bool = True) -> None:
    """Move ``data[src...]`` to ``data[dst...]``, over a value there (the old key was given on
    purpose: a config of this release writes only the new one)."""
    node: Any = data
    for p in src[:-1]:
        node = node.get(p) if isinstance(node, dict) else None
    if not isinstance(node, dict) or src[-1] not in node:
        return
    value = node.pop(src[-1])
    if warn:
        deprecated(".".join(src), ".".join(dst))
    target = data
    for p in dst[:-1]:
        if not isinstance(target.get(p), dict):
            target[p] = {}
        target = target[p]
    target[dst[-1]] = value


def drop_unused(data: Dict[str, Any], keys: Sequence[str], legacy: Dict[str, Any]) -> Dict[str, Any]:
    """``data`` without the keys an older release wrote into every section (the union of all
    entries' keys) that this entry does not declare, when they hold that release's default:
    they said nothing. A non-default value stays, and is refused as an unknown key."""
    return {k: v for k, v in data.items() if k in keys or k not in legacy or legacy[k] != v}
