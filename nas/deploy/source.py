"""What ``nas-export RUN`` exports: the network of a retrain run folder with its trained weights, or
(``--allow-untrained``) the network of a search run, genotype.yaml or genotype string at its
configured size with fresh weights; with what ``export.json`` records of it (genotype, input
shape, class names, the data's normalisation, the retrain's test accuracy)."""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError

DEFAULT_RESOLUTION = 32   # a genotype's network without data: CIFAR-sized RGB input
DEFAULT_CLASSES = 10


@dataclass
class Source:
    network: nn.Module            # the PyTorch network in eval mode (the reference of every check)
    space: str
    genotype: str
    record: Dict[str, Any]        # the genotype as genotype.yaml writes it
    input_shape: Tuple[int, ...]   # one sample's: C, H, W for images
    classes: Optional[List[str]]
    mean: Optional[List[float]]   # per channel, of images scaled to [0, 1]
    std: Optional[List[float]]
    test_acc: Optional[float]
    trained: bool
    origin: str

    @classmethod
    def of(cls, network: nn.Module, input_shape: Tuple[int, ...], *, genotype: str = "", space: str = "") -> "Source":
        """Any network, for :func:`nas.deploy.export_source`."""
        return cls(network.eval(), space or type(network).__name__, genotype or type(network).__name__, {},
                   tuple(input_shape), None, None, None, None, False, "python")


def _untrained_hint(what: str, run: str) -> str:
    return (f"{what} has no trained weights; retrain it first (nas-retrain --genotype {run}) or pass "
            f"--allow-untrained to export the network with fresh weights (for latency work)")


def _data_info(data_cfg: Any) -> Dict[str, Any]:
    from ..data import load_dataset
    d = data_cfg
    data = load_dataset(d.dataset, root=d.root, download=False, resize=d.resize, subset=d.subset, split="train",
                        seed=0, workers=0, stream=d.stream)
    return {"classes": list(data.classes), "shape": tuple(data.shape), "mean": [float(v) for v in data.mean],
            "std": [float(v) for v in data.std]}


def _record(space: Any, genotype: Any, extras: Dict[str, Any]) -> Dict[str, Any]:
    from ..plugins import genotype_record
    return genotype_record(space, genotype, extras.get("imports", []), extras.get("op_args", {}))


def _retrain_run(path: Path, allow_untrained: bool, resolution: Optional[int]) -> Source:
    from ..config import from_dict, parse_yaml
    from ..engine.checkpoint import load_checkpoint
    from ..plugins import import_user_modules
    from ..retrainer.config import RetrainConfig
    from ..retrainer.genotypes import record_from_data
    from ..retrainer.run import make_network
    ckpt_path = path / "checkpoint.pt"
    if not ckpt_path.is_file() and not allow_untrained:
        raise CheckpointError(_untrained_hint(f"{path} (no checkpoint.pt)", str(path)))
    ckpt = load_checkpoint(ckpt_path, ("model", "config", "genotype")) if ckpt_path.is_file() else None
    if ckpt is not None:
        cfg = from_dict(RetrainConfig, ckpt["config"])
        import_user_modules(cfg.imports)
        space, genotype, extras = record_from_data(ckpt["genotype"], str(ckpt_path))
    else:
        cfg = from_dict(RetrainConfig, parse_yaml((path / "config.yaml").read_text(encoding="utf-8"), path))
        import_user_modules(cfg.imports)
        from ..retrainer.genotypes import resolve_record
        space, genotype, extras = resolve_record(str(path))
    info = _data_info(cfg.data)
    net = make_network(cfg, space, genotype, len(info["classes"]), info["shape"][0], extras["op_args"])
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
    metrics = path / "metrics.json"
    test_acc = json.loads(metrics.read_text()).get("test_acc") if metrics.is_file() else None
    shape = tuple(info["shape"])
    if resolution and len(shape) == 3:   # images: [C, H, W]
        shape = (shape[0], resolution, resolution)
    return Source(net.eval(), space.name, str(genotype), _record(space, genotype, extras), shape, info["classes"],
                  info["mean"], info["std"], test_acc if ckpt is not None else None, ckpt is not None, str(path))


def _sized(space: Any, C: Optional[int] = None, N: Optional[int] = None, layers: Optional[int] = None) -> Dict[str, Any]:
    """The network a search's cell is trained in (a space with a cost model knows it), else the
    space's own defaults."""
    cost_model = space.cost_model()
    return cost_model.trained_network(C, N, layers) if cost_model is not None else {}


def _genotype(run: str, resolution: Optional[int], cfg: Any = None) -> Source:
    """The network of a genotype (a search run's, with ``cfg`` its config) with fresh weights."""
    from ..retrainer.genotypes import resolve_record
    space, genotype, extras = resolve_record(run)
    info = _data_info(cfg.data) if cfg is not None else None
    cost = cfg.cost if cfg is not None else None
    kwargs = _sized(space, cost.C, cost.N, cost.layers) if cost is not None else _sized(space)
    in_ch = info["shape"][0] if info else 3
    classes = info["classes"] if info else None
    n_out = (cost.classes if cost is not None and cost.classes else None) or (len(classes) if classes else DEFAULT_CLASSES)
    if classes is not None and len(classes) != n_out:  # cost.classes sizes the head for another task
        classes = None
    params = inspect.signature(space.build_network).parameters
    if "in_channels" in params:
        kwargs["in_channels"] = in_ch
    if "op_args" in params and extras["op_args"]:
        kwargs["op_args"] = extras["op_args"]
    torch.manual_seed(0)  # fresh weights, the same for the same genotype
    net = space.build_network(genotype, num_classes=n_out, **kwargs)
    side = resolution or (cost.resolution if cost is not None else DEFAULT_RESOLUTION)
    return Source(net.eval(), space.name, str(genotype), _record(space, genotype, extras), (in_ch, side, side),
                  classes, info["mean"] if info else None, info["std"] if info else None, None, False, run)


def load_source(run: str, *, allow_untrained: bool = False, resolution: Optional[int] = None) -> Source:
    """The network ``run`` names and what is known of it (see the module docstring)."""
    from ..engine.run_folder import folder_kind
    if resolution is not None and resolution < 1:
        raise ConfigError(f"--resolution must be a positive image side, got {resolution}")
    path = Path(run).expanduser()
    if path.is_dir():
        kind = folder_kind(path)
        if kind == "retrain":
            return _retrain_run(path, allow_untrained, resolution)
        if kind == "search" or (path / "genotype.yaml").is_file():
            if not allow_untrained:
                raise CheckpointError(_untrained_hint(f"{path} (a search run)", str(path)))
            cfg = None
            if kind == "search":
                from ..config import Config, from_dict, parse_yaml
                from ..plugins import import_user_modules
                cfg = from_dict(Config, parse_yaml((path / "config.yaml").read_text(encoding="utf-8"), path))
                import_user_modules(cfg.imports)
            return _genotype(str(path), resolution, cfg)
        raise CheckpointError(f"{path} is not a nas run folder (no config.yaml with a checkpoint or genotype.yaml); "
                              f"give a nas-retrain run folder")
    if not allow_untrained:
        raise CheckpointError(_untrained_hint(f"the genotype '{run[:60]}'", run))
    return _genotype(run, resolution)
