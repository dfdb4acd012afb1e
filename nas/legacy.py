"""Search-config keys of the previous release, read for one more (then this module goes).

Until then the ``space:``, ``estimator:`` and ``data:`` sections held the union of every entry's
keys, and every run folder's ``config.yaml`` wrote them all. A key of that union that the named
entry does not declare is dropped when it holds the old default (it said nothing); renamed keys
are moved to their new place with a one-line deprecation warning (:func:`nas.options.deprecated`).

* ``estimator.derive_exclude``, ``estimator.derive_max_skip`` -> ``derive.exclude``, ``derive.max_skip``;
* ``space.channels_last`` -> ``trainer.channels_last`` (one key: null, the space's default, is
  what ``space.channels_last: true`` with ``trainer.channels_last: false`` did);
* ``space.program.*``, ``space.args.*`` -> ``space.*``; ``data.dnf.*``, ``data.maze.*`` -> ``data.*``.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Dict, Sequence

from .errors import ConfigError
from .options import deprecated, move_key

_DNF = {"features": 10, "clauses": 3, "width": 3, "noise": 0.0, "samples": 2000}
_MAZE = {"width": 5, "height": 3, "count": 15, "max_moves": 14, "decay": 0.7, "train": 2000, "test": 1000}
_PROGRAM = {"lines": 3, "steps": 45, "look_hidden": 32, "halt": "value"}

# the sections' keys and defaults in the previous release (flat keys, then nested groups)
FLAT = {
    "space": {"C": 16, "N": 5, "layers": 8, "steps": 4, "multiplier": 4, "stem_multiplier": 3, "ops": None,
              "affine": False, "gates": "none", "l0_lambda": 1e-4, "gate_estimator": "hard_concrete", "rules": 64,
              "lambda_g": 1e-4, "op_args": {}, "fused": True, "partial_channels": 1, "group_convs": None},
    "estimator": {"tau": None, "tau_end": None, "schedule": None, "per": None, "noise": "none", "sigma0": 0.2,
                  "sigma_max": 0.5, "noise_lr": None, "gamma": None, "gamma_end": None, "threshold": None,
                  "threshold_end": None, "single_path": None},
    "data": {"root": None, "download": False, "resize": None, "subset": None, "workers": 0, "stream": False,
             "augment": True, "quantiles": [0.25, 0.5, 0.75]},
}
GROUPS = {"space": {"program": _PROGRAM, "args": {}}, "data": {"dnf": _DNF, "maze": _MAZE}}
RENAMED = {("estimator", "derive_exclude"): (("derive", "exclude"), []),
           ("estimator", "derive_max_skip"): (("derive", "max_skip"), None)}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def _flatten_groups(section: Dict[str, Any], where: str, declared: Sequence[str]) -> None:
    for group, defaults in GROUPS.get(where, {}).items():
        values = section.pop(group, None)
        if not isinstance(values, dict):
            if values is not None:
                section[group] = values  # not the old form: the entry's own check reports it
            continue
        owner = bool(defaults) and set(defaults) <= set(declared) or group == "args"
        for k, v in values.items():
            if not owner:
                if k in defaults and _same(defaults[k], v):
                    continue
                raise ConfigError(f"{where}.{group}.{k}={v!r}: the {where}.{group} keys apply to another "
                                  f"{'space' if where == 'space' else 'dataset'}; remove them")
            if k in defaults and _same(defaults[k], v):
                section[k] = v  # the old default, written by every run folder: no warning
            else:
                deprecated(f"{where}.{group}.{k}", f"{where}.{k}")
                section[k] = v


def _drop_union(section: Dict[str, Any], where: str, declared: Sequence[str], own_groups: Sequence[str]) -> None:
    for k, old in FLAT.get(where, {}).items():
        if k in section and _same(section[k], old) and (k not in declared or k in own_groups):
            del section[k]


def rename_keys(data: Dict[str, Any]) -> None:
    """Move the renamed keys of ``data`` (one config file, or the overrides over the merged
    files) to their new place, over what is there: called per file before ``_base_`` files are
    merged, a child's old key overrides its base's new one, as the same key would. The old
    default, written by every run folder of that release, moves without a warning."""
    for (sec, key), (dst, old_default) in RENAMED.items():
        section = data.get(sec)
        if isinstance(section, dict) and key in section:
            move_key(data, (sec, key), dst, warn=not _same(section[key], old_default))


def migrate_search_config(data: Dict[str, Any], section_types: Any, section_keys: Dict[str, Any]) -> Dict[str, Any]:
    """``data`` (a search config's mapping) with the previous release's keys moved or dropped;
    ``section_types(data)``: the section classes of the entries it names (``nas.config``)."""
    _SECTION_KEYS = section_keys
    if not isinstance(data, dict):
        return data
    data = copy.deepcopy(data)
    rename_keys(data)
    space = data.get("space")
    if isinstance(space, dict) and "channels_last" in space:
        nhwc = space.pop("channels_last")
        trainer = data.setdefault("trainer", {})
        if isinstance(trainer, dict):
            if nhwc is not True:
                deprecated("space.channels_last", "trainer.channels_last")
            if trainer.get("channels_last") is not True:  # the old trainer key was true: NHWC everywhere
                trainer["channels_last"] = None if nhwc is True else nhwc
    types = section_types(data)
    for where in _SECTION_KEYS:
        section = data.get(where)
        if not isinstance(section, dict):
            continue
        declared = [f.name for f in dataclasses.fields(types[where])]
        own = [k for g, d in GROUPS.get(where, {}).items()
               if isinstance(section.get(g), dict) and d and set(d) <= set(declared) for k in d]
        _drop_union(section, where, declared, own)
        _flatten_groups(section, where, declared)
    derive = data.get("derive")
    if isinstance(derive, dict):  # the old keys at their defaults, moved in by an older override
        declared = [f.name for f in dataclasses.fields(types["derive"])]
        for k, old in (("exclude", []), ("max_skip", None)):
            if k in derive and k not in declared and _same(derive[k], old):
                del derive[k]
    return data
