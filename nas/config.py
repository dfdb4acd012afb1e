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

def _config_dir() -> Path:
    """The shipped configs: ``nas/configs`` in an installed wheel, ``configs/`` in a checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "configs"
    return installed if installed.is_dir() else here.parent / "configs"


CONFIG_DIR = _config_dir()


@dataclass
class DNFDataConfig:
    """The synthetic DNF task (``data.dataset=synthetic_dnf``)."""
    features: int = ranged(10, ge=1)             # K binary features
    clauses: int = ranged(3, ge=1)               # conjunctions of the ground-truth rule
    width: int = ranged(3, ge=1, le="features")  # literals per conjunction
    noise: float = ranged(0.0, ge=0, le=1)       # probability of flipping a train label
    samples: int = ranged(2000, ge=2)            # train + test samples


@dataclass
class MazeDataConfig:
    """The digit maze (``data.dataset=maze``, searched by ``space.name=program``; nas/data/maze.py)."""
    width: int = ranged(5, ge=1)
    height: int = ranged(3, ge=1)
    count: int = ranged(15, ge=2)                # the move counter's modulus
    max_moves: int = ranged(14, ge=0)            # longest path (the 3-line program needs 3·14 + 1 = 43 of 45 steps)
    decay: float = ranged(0.7, gt=0)             # P(L moves) ∝ decay^L for L = 0..max_moves (1: uniform)
    train: int = ranged(2000, ge=2)              # mazes of train-split digit images (split by data.train_portion)
    test: int = ranged(1000, ge=1)               # mazes of test-split digit images (the final end-to-end scores)


@dataclass
class DataConfig:
    dataset: str = "digits"
    root: Optional[str] = None
    download: bool = False
    resize: Optional[int] = ranged(None, ge=1)   # the network may need more: checked when it is built
    subset: Optional[int] = ranged(None, ge=1)
    train_portion: float = ranged(0.5, gt=0, lt=1)
    batch_size: int = ranged(64, ge=1)
    workers: int = ranged(0, ge=0)
    stream: bool = False           # read images batch by batch (DataLoader, data.workers) instead of in memory
    augment: bool = True
    dnf: DNFDataConfig = field(default_factory=DNFDataConfig)
    maze: MazeDataConfig = field(default_factory=MazeDataConfig)
    quantiles: List[float] = ranged([0.25, 0.5, 0.75], gt=0, lt=1)  # tabular binarisation


@dataclass
class ProgramSpaceConfig:
    """The ``program`` space (nas/spaces/program): its template's size and its LOOK network."""
    lines: int = ranged(3, ge=1)                 # learnable program lines
    steps: int = ranged(45, ge=1)                # unrolled execution steps
    look_hidden: int = ranged(32, ge=1)          # hidden units of the LOOK network (nas/spaces/program/maze.py)
    halt: Literal["value", "write"] = "value"    # halt after a step that leaves dir = 0 / that writes it


@dataclass
class SpaceConfig:
    name: str = "nb201"
    C: int = ranged(16, ge=1)
    N: int = ranged(5, ge=1)                     # NB201: cells per stage
    layers: int = ranged(8, ge=1)                # DARTS: cells in the search network
    steps: int = ranged(4, ge=1)                 # DARTS: intermediate nodes per cell
    multiplier: int = ranged(4, ge=1, le="steps")  # DARTS: nodes concatenated into the cell output
    stem_multiplier: int = ranged(3, ge=1)       # DARTS
    ops: Optional[List[str]] = None  # candidate subset (default: the space's full op list)
    affine: bool = False           # BN affine in the supernet (the papers use False)
    gates: Literal["none", "edge", "op", "channel"] = "none"  # L0 gates (nb201, darts)
    l0_lambda: float = ranged(1e-4, ge=0)
    gate_estimator: Literal["hard_concrete", "search"] = "hard_concrete"  # who learns L0 gates
    rules: int = ranged(64, ge=1)                # DNF space: conjunctions per tower (N)
    lambda_g: float = ranged(1e-4, ge=0)         # DNF space: sparsity weight λ_g
    program: ProgramSpaceConfig = field(default_factory=ProgramSpaceConfig)  # program space
    op_args: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # options per op, e.g. {dnf_1x1: {rules: 8}}
    args: Dict[str, Any] = field(default_factory=dict)  # a user space's own build_supernet keywords
    fused: bool = True             # nb201: fused cell execution (nas/supernet/fused.py; exact)
    channels_last: bool = True     # nb201: NHWC activations (layout only; faster convs on CPU)
    partial_channels: int = ranged(1, ge=1)  # PC-DARTS: 1/K of the channels through each mixed op (1: off)
    group_convs: Optional[bool] = None  # nb201 fused: one conv per node for same-shaped candidates (null: not on CPU)


@dataclass
class EstimatorConfig:
    name: str = "softmax"
    # temperatures: below 0.01 a relaxation saturates in float32 (exp(-Δα/τ) underflows: no gradient)
    tau: Optional[float] = ranged(None, ge=0.01, le=1e4)      # start temperature (None: the estimator's default)
    tau_end: Optional[float] = ranged(None, ge=0.01, le=1e4)  # end temperature (None: = tau or the default)
    schedule: Optional[Literal["constant", "linear", "exponential", "cosine"]] = None
    per: Optional[Literal["epoch", "step"]] = None   # schedule counted per epoch (default) or step
    noise: Literal["none", "adaptive"] = "none"
    sigma0: float = ranged(0.2, ge=0, le="sigma_max")
    sigma_max: float = ranged(0.5, ge=0)
    noise_lr: Optional[float] = ranged(None, gt=0)  # Adam lr of the noise temperatures (None: optim.arch.lr)
    gamma: Optional[float] = ranged(None, gt=0, le=1)      # Bop momentum rate
    gamma_end: Optional[float] = ranged(None, gt=0, le=1)  # Bop momentum rate at the end of the schedule
    threshold: Optional[float] = ranged(None, ge=0)        # Bop flip threshold
    threshold_end: Optional[float] = ranged(None, ge=0)    # Bop flip threshold at the end of the schedule
    single_path: Optional[bool] = None   # run only the selected op when the forward is one-hot
    derive_exclude: List[str] = field(default_factory=list)  # NB201: ops derive never picks (DARTS §2.4: none)
    derive_max_skip: Optional[int] = ranged(None, ge=0)  # most skip_connect edges derive keeps (P-DARTS §3.3; None: no limit)


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
    channels_last: bool = False                  # NHWC memory format for the convolutions (tensor-core GPUs)
    sync_bn: bool = False                        # data parallel: BN statistics over the global batch, not per rank
    dist_timeout: float = ranged(1800.0, gt=0)   # data parallel: seconds a rank waits for the others before failing


@dataclass
class TrainerConfig(RunTrainerConfig):
    bn_batches: int = ranged(50, ge=0)          # train batches that recompute BN statistics before the final val_acc (0: off)


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
    latency_table: Optional[str] = None  # metric latency: a table from tools/profile_latency.py
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


@dataclass
class Config(RunConfig):
    name: str = matching("search", RUN_NAME, RUN_NAME_HINT)
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    cost: CostConfig = field(default_factory=CostConfig)


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
    return _merge(merged, data)


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
