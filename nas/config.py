"""Typed run configuration: dataclasses at the edge, YAML with ``_base_`` inheritance, dotted overrides.

Only the commands and the experiments in ``tools/`` read YAML. Library classes take plain keyword arguments;
this module turns a YAML file plus ``key=value`` overrides into a validated :class:`Config` and
rejects unknown keys, wrong types and bad literal values with a one-line :class:`ConfigError`.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple

import yaml

from .bounds import MAX_SEED, RUN_NAME, RUN_NAME_HINT, check_fields, matching, ranged
from .errors import ConfigError
from .options import _type_name, option

def _config_dir() -> Path:
    """The shipped configs: ``nas/configs`` in an installed wheel, ``configs/`` in a checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "configs"
    return installed if installed.is_dir() else here.parent / "configs"


CONFIG_DIR = _config_dir()


# The registries a config section names an entry of sit above the config layer; each registers
# here how to read its entries' options (``register_entry_options``) when it is imported, and a
# config that names an entry imports the registry's module by name first (as ``imports:`` does).
ENTRY_MODULES = {"data": "nas.data", "space": "nas.spaces", "derive": "nas.spaces", "estimator": "nas.estimators"}
_RESOLVERS: Dict[str, Tuple[Any, Any]] = {}


def register_entry_options(section: str, options: Any, names: Any) -> None:
    """``options(name)``: the option dataclasses of entry ``name`` of ``section``; ``names()``: the
    registered entries (called by the registries of nas.data, nas.spaces, nas.estimators)."""
    _RESOLVERS[section] = (options, names)


def _resolver(section: str) -> Tuple[Any, Any]:
    if section not in _RESOLVERS:
        import importlib
        importlib.import_module(ENTRY_MODULES[section])
    return _RESOLVERS[section]


def _entry_options(section: str, name: str) -> Tuple[type, ...]:
    return tuple(_resolver(section)[0](name))


class EntrySection:
    """A config section that names a registry entry: the dataclass holds the section's own keys;
    the class built for an entry (:func:`nas.options.entry_section`) adds the entry's options.
    Constructing the bare section (``SpaceConfig(name="darts", C=8)``) builds the entry's class."""

    _option_sources: Tuple[type, ...] = ()

    # a base section sets ``section`` (the registry whose entries it names) in its own class body
    section = ""
    entry_key = "name"
    default_entry = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not cls._option_sources and "section" in cls.__dict__:
            cls = cls.entry_class(kwargs.get(cls.entry_key, cls.default_entry))
        return object.__new__(cls)

    def __reduce__(self) -> Any:  # the class is built at run time: pickle how to build it again
        return _rebuild_section, (_section_base(type(self)), type(self)._option_sources, _plain_section(self))

    @classmethod
    def entry_class(cls, name: str) -> type:
        """The section's class for entry ``name``: the base's keys, then the entry's options."""
        from .options import entry_section
        base = _section_base(cls)
        return entry_section(base, *_entry_options(base.section, name))


@dataclass
class DataConfig(EntrySection):
    """``data:`` the dataset's name and batching, then the options its kind and its registry
    entry declare (:mod:`nas.data.registry`; e.g. ``root``, ``resize`` of image data)."""
    dataset: str = option("digits", help="a registered dataset (nas.data.DATASETS); its kind says which spaces take it")
    train_portion: float = ranged(0.5, gt=0, lt=1, help="share of the train split that trains the weights; the rest the architecture")
    batch_size: int = ranged(64, ge=1, help="samples per batch")

    section = "data"
    entry_key = "dataset"
    default_entry = "digits"


@dataclass
class SpaceConfig(EntrySection):
    """``space:`` the space's name, then the options the space declares (its ``Options``;
    :meth:`nas.spaces.base.SearchSpace.options`)."""
    name: str = option("nb201", help="a registered search space (nas.spaces.SPACES)")

    section = "space"
    default_entry = "nb201"


@dataclass
class EstimatorConfig(EntrySection):
    """``estimator:`` the estimator's name, the adaptive-noise wrapper's keys
    (:class:`nas.estimators.noise.NoiseOptions`), then the options the estimator declares.

    ``name`` learns the space's main kind of discrete parameter (op choices); ``kinds`` maps
    each other kind (gates, rules, program, a registered one) to an estimator name,
    ``NAME+noise`` or a section ``{name: ..., options}`` (:mod:`nas.estimators.kinds`)."""
    name: str = option("softmax", help="a registered estimator (nas.estimators.ESTIMATORS)")
    kinds: Dict[str, Any] = option({}, help=(
        "an estimator per other kind of discrete parameter, e.g. {rules: ste+noise, gates: hard_concrete}; "
        "kinds left out take their block's default"))

    section = "estimator"
    default_entry = "softmax"


@dataclass
class DeriveConfig(EntrySection):
    """``derive:`` how the search picks its cell: the options the space's derive declares
    (``SearchSpace.DeriveOptions``; nb201: ``exclude``, ``max_skip``)."""

    section = "derive"
    entry_key = "space"
    default_entry = "nb201"

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not cls._option_sources:  # built in Python without its space: the first that takes the keys
            for name in ["nb201"] + list(_resolver("derive")[1]()):
                cls = DeriveConfig.entry_class(name)
                if set(kwargs) <= {f.name for f in dataclasses.fields(cls)}:
                    break
        return object.__new__(cls)


_SECTION_KEYS = {"data": DataConfig, "space": SpaceConfig, "estimator": EstimatorConfig}


def _rebuild_section(base: type, options: Tuple[type, ...], values: Dict[str, Any]) -> Any:
    from .options import entry_section
    return entry_section(base, *options)(**values)


@dataclass
class WeightOptimConfig:
    lr: float = ranged(0.025, gt=0)
    lr_min: float = ranged(0.001, ge=0, le="lr")
    momentum: float = ranged(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = ranged(5e-4, ge=0)


@dataclass
class ArchOptimConfig:
    lr: float = ranged(3e-4, gt=0)
    betas: Tuple[float, float] = ranged((0.5, 0.999), ge=0, lt=1)
    weight_decay: float = ranged(1e-3, ge=0)
    init_std: float = ranged(1e-3, ge=0)
    beta_decay: float = ranged(0.0, ge=0)             # β-DARTS regulariser λ (λ_t = λ·epoch/epochs; 0: off; paper 50)


@dataclass
class OptimConfig:
    mode: Literal["alternating", "joint"] = "alternating"
    order: Literal[1, 2] = 1
    warmup_epochs: int = ranged(0, ge=0)  # weight-only epochs before arch updates start
    aux_skip: float = ranged(0.0, ge=0)   # DARTS- auxiliary skip β0 on every edge (0: off)
    aux_skip_end: float = ranged(0.0, ge=0)  # its β at the end of the search, reached linearly (DARTS-: 0)
    weights: WeightOptimConfig = field(default_factory=WeightOptimConfig)
    arch: ArchOptimConfig = field(default_factory=ArchOptimConfig)
    # name -> options of the entries of nas.searcher.hooks (their options and ranges live there):
    regularisers: Dict[str, Any] = field(default_factory=dict)  # terms of the arch loss, e.g. {drnas_kl: {weight: 1.0e-3}}
    hooks: Dict[str, Any] = field(default_factory=dict)         # step hooks, e.g. {sdarts: {mode: adv}}, {oles: {}}

    @property
    def uses_aux_skip(self) -> bool:
        return bool(self.aux_skip or self.aux_skip_end)


@dataclass
class RunTrainerConfig:
    """The ``trainer:`` keys of every run, a search's (:class:`TrainerConfig`) and a retraining's
    (:class:`nas.retrainer.config.RetrainTrainerConfig`): what the run engine reads
    (:mod:`nas.engine.prepare`, :mod:`nas.engine.run_folder`)."""
    epochs: int = ranged(50, ge=1)
    grad_clip: float = ranged(5.0, ge=0)         # 0 = off
    ckpt_every: int = ranged(1, ge=1)
    max_steps_per_epoch: Optional[int] = ranged(None, ge=1)  # cap for smoke runs
    amp: Literal["off", "bf16", "fp16"] = "off"  # mixed precision (fp16: with loss scaling)
    channels_last: Optional[bool] = None         # NHWC layout: true everywhere (tensor-core GPUs), false nowhere, null: the space's default (nb201: activations)
    sync_bn: bool = False                        # data parallel: BN statistics over the global batch, not per rank
    dist_timeout: float = ranged(1800.0, gt=0)   # data parallel: seconds a rank waits for the others before failing


@dataclass
class TrainerConfig(RunTrainerConfig):
    bn_batches: int = ranged(50, ge=0)          # train batches that recompute BN statistics before the final val_acc (0: off)
    eval_batches: Optional[int] = ranged(None, ge=0)  # validation batches of the final val_acc (null: all; 0: none, nor the BN recalibration)


@dataclass
class CostConfig:
    """A hardware budget (nas/cost): the expected cost of the network that will be trained."""
    metric: Literal["macs", "params", "latency"] = "macs"
    target: Optional[float] = ranged(None, gt=0)  # millions of MACs or params, or ms (None: report the cost only)
    # λ of the penalty on the architecture loss. 0 (default): cost.target alone searches as without a
    # budget and derives the most probable cell within it, the recipe that measured best (docs/devices.md)
    weight: float = ranged(0.0, ge=0)
    form: Literal["hinge", "log", "abs"] = "hinge"  # λ·max(0, E/T-1), FBNet's λ·log(E/T), TuNAS's λ·|E/T-1|
    hard: Optional[bool] = None          # derive never exceeds the target (None: true when target is set)
    estimate: Literal["expected", "derived"] = "expected"  # E under the distribution, or the argmax cell's (straight through)
    warmup_epochs: float = ranged(0.0, ge=0)  # epochs of search before the penalty acts
    sample_within: bool = False   # one-hot estimators (gumbel_hard, ste) draw only cells within the target (nb201)
    C: Optional[int] = ranged(None, ge=1)         # the trained network (None: nb201 16, darts 36)
    N: Optional[int] = ranged(None, ge=1)         # nb201 cells per stage (None: 5)
    layers: Optional[int] = ranged(None, ge=1)    # darts cells (None: 20)
    resolution: int = ranged(32, ge=1)            # input side of the trained network
    classes: Optional[int] = ranged(None, ge=1)   # its outputs (None: the dataset's classes)
    latency_table: Optional[str] = None  # metric latency: a table from nas-profile-latency
    device: Optional[str] = None  # metric latency: a device of the shipped NB201 table (nas-lookup --devices)
    batch_size: int = ranged(1, ge=1)             # metric latency: the batch size of the table's entries read


@dataclass
class RunConfig:
    """The top-level keys of every run's config, a search's (:class:`Config`) and a retraining's
    (:class:`nas.retrainer.config.RetrainConfig`); each sets its own default ``name``."""
    name: str = matching("run", RUN_NAME, RUN_NAME_HINT)
    imports: List[str] = field(default_factory=list)  # user modules / .py files imported before anything is built
    seed: int = ranged(0, ge=0, lt=MAX_SEED)
    device: Literal["auto", "cpu", "cuda"] = "auto"


def import_config_modules(data: Dict[str, Any]) -> None:
    """Import the user modules a config's ``imports:`` names: their registrations must be seen
    before its sections' entries are looked up."""
    from .plugins import import_user_modules
    if data.get("imports"):
        import_user_modules(_convert(data["imports"], List[str], "imports"))


def named_entry(data: Dict[str, Any], key: str, base: type) -> str:
    """The entry section ``data[key]`` names (``base``'s default when it names none)."""
    section = data.get(key)
    name = section.get(base.entry_key) if isinstance(section, dict) else None
    return base.default_entry if name is None else _convert(name, str, f"{key}.{base.entry_key}")


@dataclass
class Config(RunConfig):
    name: str = matching("search", RUN_NAME, RUN_NAME_HINT)
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    derive: DeriveConfig = field(default_factory=DeriveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    cost: CostConfig = field(default_factory=CostConfig)

    def __post_init__(self) -> None:
        # a derive section built without its space is read again as the space's own
        want = DeriveConfig.entry_class(self.space.name)
        if type(self.derive) is not want:
            given = _plain_section(self.derive)
            default = type(self.derive)()
            self.derive = from_dict(want, {k: v for k, v in given.items() if v != getattr(default, k)}, "derive.")

    @staticmethod
    def section_types(data: Dict[str, Any]) -> Dict[str, type]:
        """The section classes of the entries ``data`` names (the config's user modules imported
        first: their registrations must be seen)."""
        import_config_modules(data)
        out = {key: base.entry_class(named_entry(data, key, base)) for key, base in _SECTION_KEYS.items()}
        out["derive"] = DeriveConfig.entry_class(named_entry(data, "space", SpaceConfig))
        return out

    @staticmethod
    def migrate(data: Dict[str, Any]) -> Dict[str, Any]:
        from .legacy import migrate_search_config
        return migrate_search_config(data, Config.section_types, _SECTION_KEYS)


# --------------------------------------------------------------------------- YAML and overrides

def _resolve_base(base: str, relative_to: Path) -> Path:
    for cand in (relative_to / base, CONFIG_DIR / base, CONFIG_DIR / f"{base}.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(f"_base_: config '{base}' not found next to {relative_to} or in {CONFIG_DIR}")


def _merge(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(path: os.PathLike, _seen: Optional[set] = None) -> Dict[str, Any]:
    """Read a YAML config, following ``_base_`` (a path or a list of paths, later ones win)."""
    path = Path(path)
    if not path.is_file():
        named = CONFIG_DIR / f"{path}.yaml" if path.suffix == "" else None
        if named is not None and named.is_file():
            path = named
        else:
            raise ConfigError(f"config file {path} not found; give a YAML path or a name in {CONFIG_DIR}")
    seen = _seen or set()
    if path.resolve() in seen:
        raise ConfigError(f"_base_: cycle through {path}")
    seen = seen | {path.resolve()}
    data = parse_yaml(read_config_text(path), path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(data).__name__}")
    from .legacy import rename_keys
    rename_keys(data)  # before merging: a child's old key overrides its base's new one
    bases = data.pop("_base_", None)
    if isinstance(bases, str):
        bases = [bases]
    if bases is not None and not (isinstance(bases, list) and all(isinstance(b, str) and b for b in bases)):
        raise ConfigError(f"{path}: _base_ must be a config name or path, or a list of them, got {bases!r}")
    if isinstance(data.get("imports"), list):
        # a .py file beside the config (or below its folder) is found from any working directory
        data["imports"] = [str((path.parent / i).absolute()) if isinstance(i, str) and i.endswith(".py")
                           and not Path(i).is_absolute() and (path.parent / i).is_file() else i
                           for i in data["imports"]]
    merged: Dict[str, Any] = {}
    for b in bases or []:
        merged = _merge(merged, load_yaml(_resolve_base(b, path.parent), seen))
    return _merge(_other_entry(merged, data), data)


def _other_entry(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    """``base`` without the options of a section whose entry ``top`` changes (``data: {dataset:
    breast_cancer}`` over a ``synthetic_dnf`` base) that the new entry does not declare."""
    out = dict(base)
    if "model" in base or "model" in top:  # a retrain config (nas.api.load_config's rule): no entry sections
        return out
    for key, section in _SECTION_KEYS.items():
        old, new = base.get(key), top.get(key)
        if not (isinstance(old, dict) and isinstance(new, dict)):
            continue
        name = new.get(section.entry_key)
        if not isinstance(name, str) or name == old.get(section.entry_key, section.default_entry):
            continue
        try:
            declared = {f.name for f in dataclasses.fields(section.entry_class(name))}
        except (ConfigError, ImportError):  # a user's entry not imported yet: validation reports it
            continue
        out[key] = {k: v for k, v in old.items() if k in declared}
        if key == "space" and isinstance(base.get("derive"), dict):  # derive's keys are the space's too
            derive = {f.name for f in dataclasses.fields(DeriveConfig.entry_class(name))}
            out["derive"] = {k: v for k, v in base["derive"].items() if k in derive}
    return out


def read_config_text(path: Path) -> str:
    """The text of a config file; unreadable or non-UTF-8 files are one-line ConfigErrors."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                          f"give a YAML config saved as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"cannot read config {path} ({e.strerror or e}); check the path and its "
                          f"permissions") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
        seen: Dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                dup = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if dup:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice (lines {seen[key].start_mark.line + 1} and "
                    f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: Any) -> Any:
    """``yaml.safe_load`` that rejects duplicate keys; errors are one line naming ``source``."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        why = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{source}{at}: not valid YAML ({why})") from None


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``a.b.c=value`` strings; the value is parsed as YAML (``5``, ``true``, ``[1, 2]``)."""
    data = _merge({}, data)
    switched: Dict[str, Any] = {}  # an override naming another entry drops the old entry's options
    for item in overrides:
        key, _, raw = item.partition("=")
        parts = key.strip().split(".")
        if len(parts) == 2 and parts[0] in _SECTION_KEYS and parts[1] == _SECTION_KEYS[parts[0]].entry_key:
            try:
                switched.setdefault(parts[0], {})[parts[1]] = yaml.safe_load(raw) if raw else None
            except yaml.YAMLError:
                pass
    data = _other_entry(data, switched)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value (e.g. trainer.epochs=5)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    return data


# --------------------------------------------------------------------------- validation

def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError:
                pass
        raise bad
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {', '.join(repr(a) for a in args)}")
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise bad
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise bad
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    return value


def from_dict(cls: type, data: Dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a plain dict, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    if hasattr(cls, "section_types") and isinstance(data, dict):
        data = cls.migrate(data)
        hints.update(cls.section_types(data))
    elif getattr(cls, "_option_sources", ()) and isinstance(data, dict):
        from .options import nulls_to_defaults
        data = nulls_to_defaults(cls, data, keep=[f.name for f in dataclasses.fields(_section_base(cls))])
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}; allowed under "
                              f"'{prefix.rstrip('.') or 'top level'}': {', '.join(names)}")
        kwargs[key] = _convert(value, hints[key], f"{prefix}{key}")
    obj = cls(**kwargs)
    check_fields(obj, prefix)  # ranges declared next to the fields (nas.bounds)
    return obj


def _section_base(cls: type) -> type:
    """The base section class of ``cls`` (``cls`` itself, or the base an entry's class extends)."""
    return next(b for b in cls.__mro__ if "section" in b.__dict__ and b is not EntrySection)


def _plain_section(obj: Any) -> Dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def entry_names(key: str) -> List[str]:
    """The registered entries a section may name (the default first): spaces, estimators, datasets."""
    default = _SECTION_KEYS[key].default_entry
    return [default] + [n for n in _resolver(key)[1]() if n != default]


def config_fields(cls: type = None) -> List[Tuple[str, dataclasses.Field, Any, Tuple[str, ...], type]]:
    """``(dotted key, field, type, overrides that select its entry, declaring class)`` of every key
    a search config may hold: the fixed sections' and each registered entry's options (a key two
    entries declare is listed once, for the first); the configuration reference's rows."""
    from .bounds import walk_fields
    from .options import describe  # noqa: F401  (help text: nas.options.section_help)
    cls = cls or Config
    out, seen = [], set()
    for key, f, tp in walk_fields(cls):
        out.append((key, f, tp, (), cls))
        seen.add(key)
    if cls is not Config:
        return out
    for section, base in (*_SECTION_KEYS.items(), ("derive", DeriveConfig)):
        names = entry_names("space" if section == "derive" else section)
        for name in names:
            entry = base.entry_class(name)
            select = (f"{'space.name' if section == 'derive' else f'{section}.{base.entry_key}'}={name}",)
            for k, f, tp in walk_fields(entry, f"{section}."):
                if k not in seen:
                    seen.add(k)
                    out.append((k, f, tp, select if name != base.default_entry else (), entry))
    return out


def option_reference() -> Dict[str, List[Any]]:
    """The configuration reference's tables: ``{"space: darts": [OptionInfo, ...], ...}`` for each
    registered entry's section (its own keys, then its options), and ``"fixed"`` for the sections
    that name no entry (:func:`nas.options.describe`)."""
    from .options import describe
    fixed = [row for row in describe(Config) if row.key.split(".")[0] not in (*_SECTION_KEYS, "derive")]
    out: Dict[str, List[Any]] = {"fixed": fixed}
    for section, base in (*_SECTION_KEYS.items(), ("derive", DeriveConfig)):
        for name in entry_names("space" if section == "derive" else section):
            out[f"{section}: {name}"] = describe(base.entry_class(name), f"{section}.")
    return out


def to_dict(cfg: Any) -> Dict[str, Any]:
    """Plain-data dict (tuples become lists) so that it dumps to YAML and loads back equal."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(cfg))


def load_config(path: Optional[os.PathLike] = None, overrides: Sequence[str] = (),
                cls: type = Config) -> Any:
    """YAML file (or ``configs/quickstart.yaml``) + overrides -> validated config dataclass."""
    data = load_yaml(path if path is not None else CONFIG_DIR / "quickstart.yaml")
    return from_dict(cls, apply_overrides(data, overrides))


def dump_config(cfg: Any, path: os.PathLike) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def config_from_cli(items: Sequence[str], *, cls: type = Config, default: Optional[os.PathLike] = None,
                    resume_cfg: Any = None) -> Any:
    """The config a command line asks for: at most one YAML path among ``items`` plus its
    ``key=value`` overrides, or, when resuming, the run's own config plus overrides only."""
    configs = [a for a in items if "=" not in a]
    overrides = [a for a in items if "=" in a]
    if len(configs) > 1:
        raise ConfigError(f"give at most one config file, got {', '.join(configs)}")
    if resume_cfg is not None:
        if configs:
            raise ConfigError("--resume takes the run's own config; give only key=value overrides")
        return from_dict(cls, apply_overrides(to_dict(resume_cfg), overrides))
    return load_config(configs[0] if configs else default, overrides, cls=cls)


def check_config_file_kept(items: Sequence[str], out: Optional[os.PathLike]) -> None:
    """A run never writes over the config file it was started with (``--out`` its own folder)."""
    if out is None:
        return
    target = (Path(out) / "config.yaml").resolve()
    for a in items:
        if "=" not in a and Path(a).is_file() and Path(a).resolve() == target:
            raise ConfigError(f"--out {out} would overwrite your config {a} with the run's; "
                              f"choose another --out")
