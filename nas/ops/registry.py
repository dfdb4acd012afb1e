"""The candidate-op registry: one table for every space; ``space.ops`` names entries of it.

An entry is a builder ``builder(C_in, C_out, stride, affine, **context) -> nn.Module`` (DARTS's
op table signature plus a context). The context carries what a space knows and some ops need:

* ``estimator`` — for ops with discrete parameters of their own (a DNF rule pool): the run's
  estimator in a supernet; the discrete network leaves it out and the op picks its own;
* ``gate_estimator`` — the estimator of L0 gates (``None``: hard concrete; ``space.gate_estimator``);
* ``l0_lambda`` — the weight of their penalty (``space.l0_lambda``; an op's own
  ``space.op_args.<op>.l0_lambda`` overrides it);
* ``generator`` — the seeded generator of the supernet's initialisation;
* ``pool_bn`` — True in the DARTS supernet, whose pooling candidates get a BN after them;
* ``width`` — in a discrete network, the share of its output channels a width-searching op
  (the ``l0_*`` ops) kept at derive (the genotype's ``widths``); the op is built that narrow;
* the op's own options, ``space.op_args.<op>`` (e.g. ``rules`` of ``dnf_1x1``).

A builder names the context keys it uses as keyword arguments and takes the rest with ``**_``;
a builder without ``**`` is handed only the keys it names.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from torch import nn

from ..errors import ConfigError
from ..registry import USER_HINT, Registry

OpBuilder = Callable[..., nn.Module]

OPS = Registry("op", USER_HINT.format(kind="op"))
# op name -> how ``nas-export --format python`` writes the op's module as plain torch code
# (:mod:`nas.export.codegen`); an op whose module traces into torch.nn modules needs none
SPELLINGS: Dict[str, Callable[[nn.Module], Any]] = {}
# context keys a space fills in (objects and flags), never options of an op
CONTEXT_KEYS = ("estimator", "gate_estimator", "generator", "pool_bn", "width")


def register_op(name: str, *, spelling: Optional[Callable[[nn.Module], Any]] = None
                ) -> Callable[[OpBuilder], OpBuilder]:
    """``@register_op("name")`` on a builder ``(C_in, C_out, stride, affine, **context) -> nn.Module``.

    ``spelling(module) -> (class_source, constructor)``: the op as plain torch code for
    ``nas-export --format python`` (:mod:`nas.export.codegen`), needed only by an op that
    ``torch.fx`` cannot trace into ``torch.nn`` modules and torch functions."""
    if spelling is not None:
        SPELLINGS[name] = spelling
    add = OPS.register(name)

    def checked(builder: OpBuilder) -> OpBuilder:
        if not callable(builder):  # else a raw TypeError when the first supernet is built
            raise ConfigError(f"register_op('{name}'): expected a builder (C_in, C_out, stride, affine, **context) "
                              f"-> nn.Module, got {type(builder).__name__} {builder!r:.60}")
        return add(builder)
    return checked


def _signature(builder: OpBuilder) -> Tuple[Tuple[str, ...], bool]:
    """The builder's keyword names after the four positional ones, and whether it takes ``**``."""
    params = list(inspect.signature(builder).parameters.values())
    named = tuple(p.name for p in params[4:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return named, any(p.kind == p.VAR_KEYWORD for p in params)


def op_options(name: str) -> Tuple[str, ...]:
    """The options ``space.op_args.<name>`` may set: the builder's keywords that are no context key."""
    named, _ = _signature(OPS.get(name, "space.op_args"))
    return tuple(k for k in named if k not in CONTEXT_KEYS)


def check_op_args(op_args: Mapping[str, Any], key: str = "space.op_args") -> Dict[str, Dict[str, Any]]:
    """``op_args`` as ``{op: {option: value}}``, every op registered and every option one its
    builder names; a one-line :class:`ConfigError` otherwise."""
    out: Dict[str, Dict[str, Any]] = {}
    for name, options in (op_args or {}).items():
        OPS.get(name, f"{key}.{name}")
        if not isinstance(options, Mapping):
            raise ConfigError(f"{key}.{name} must be a mapping of options, e.g. {{rules: 8}}; got {options!r}")
        allowed = op_options(name)
        bad = [k for k in options if k not in allowed]
        if bad:
            raise ConfigError(f"{key}.{name}.{bad[0]} is not an option of op '{name}'; it takes: "
                              f"{', '.join(allowed) or 'no options'}")
        out[name] = dict(options)
    return out


def build_op(name: str, C_in: int, C_out: int, stride: int, affine: bool, **context: Any) -> nn.Module:
    """The registered op ``name``; ``context`` as in the module docstring."""
    builder = OPS.get(name, "space.ops")
    named, takes_any = _signature(builder)
    if not takes_any:
        context = {k: v for k, v in context.items() if k in named}
    try:
        op = builder(C_in, C_out, stride, affine, **context)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"op '{name}' cannot be built with C_in={C_in}, C_out={C_out}, stride={stride} "
                          f"({' '.join(str(e).split())[:160]})") from None
    if not isinstance(op, nn.Module):
        raise ConfigError(f"op '{name}': its builder returned a {type(op).__name__}, not an nn.Module")
    op._nas_op = name  # the export names an op it cannot write by its registered name
    return op


def op_context(name: str, op_args: Mapping[str, Mapping[str, Any]], **context: Any) -> Dict[str, Any]:
    """The context of op ``name``: the space's ``context`` overridden by the op's own options."""
    return {**context, **op_args.get(name, {})}


def check_ops(ops: Sequence[str], key: str = "space.ops") -> list:
    """A non-empty list of distinct registered op names."""
    for o in ops:
        OPS.get(o, key)
    if len(set(ops)) != len(ops) or not ops:
        raise ConfigError(f"{key}: give a non-empty list of distinct op names")
    return list(ops)


def describe_ops(found: Iterable[Tuple[str, nn.Module]]) -> str:
    """The text of a run's ``learned_ops.txt``: for every ``(where, module)`` whose module defines
    ``describe()`` (what an op learned of its own: DNF rules, open L0 channels), a header line and
    the description; empty when none does."""
    parts = [f"{where}:\n{m.describe()}\n" for where, m in found if callable(getattr(m, "describe", None))]
    return "\n".join(parts)
