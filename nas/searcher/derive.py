"""Derive a genotype from a finished (or interrupted) search: rebuild the supernet from the
checkpoint's own config and state, then take its argmax per edge (with the run's derive keys, or
overrides) or DARTS-PT's perturbation selection (Wang et al. 2021)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Tuple

from ..errors import CheckpointError, ConfigError, NasError


def load_supernet(source: Path, device: str = "cpu", exclude: Optional[str] = None,
                  max_skip: Any = ...) -> Tuple[Any, Any, Any]:
    """``(config, space, supernet)`` of the search checkpoint at ``source`` (a run folder or a
    file), with its architecture, estimator state and auxiliary-skip β as the search left them.
    ``exclude`` and ``max_skip`` (``...``: the run's own) override the run's derive keys."""
    import torch

    from ..config import Config, from_dict
    from ..engine.checkpoint import load_checkpoint
    from .loop import aux_skip_at
    from .run import make_estimator, make_supernet

    ckpt = load_checkpoint(source)
    if ckpt.get("kind") == "retrain":
        raise CheckpointError(f"{source} is a retrain checkpoint; its genotype is in its genotype.yaml")
    try:
        cfg = from_dict(Config, ckpt["config"])
    except (NasError, TypeError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {source} holds a config this nas cannot read ({e})") from None
    if exclude is not None:
        cfg.estimator.derive_exclude = [op.strip() for op in exclude.split(",") if op.strip()]
    if max_skip is not ...:
        cfg.estimator.derive_max_skip = max_skip
    state = ckpt["model"]
    try:
        num_classes, in_channels = state["classifier.weight"].shape[0], state["stem.0.weight"].shape[1]
    except (KeyError, AttributeError, IndexError):
        raise CheckpointError(f"checkpoint {source} has no supernet stem/classifier weights") from None
    estimator = make_estimator(cfg)
    space, model = make_supernet(cfg, estimator, num_classes, in_channels)
    try:
        model.load_state_dict(state)
        estimator.load_state_dict(ckpt.get("estimator", {}))
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {source} does not match its config ({str(e).splitlines()[0][:100]})") from None
    model.to(torch.device(device))
    if hasattr(model, "aux_skip"):  # a plain attribute, so not in the state: recomputed from the progress
        model.aux_skip = aux_skip_at(cfg.optim.aux_skip, cfg.optim.aux_skip_end, ckpt.get("epoch", 0),
                                     cfg.trainer.epochs)
    return cfg, space, model


def derive(source: Path, top_k: Optional[int] = None, device: str = "cpu", method: str = "argmax",
           batches: int = 40, tune_steps: int = 0, seed: int = 0, tune_lr: Optional[float] = None,
           exclude: Optional[str] = None, max_skip: Any = ...) -> Tuple[Any, Any]:
    """``(space, genotype)`` of the search checkpoint at ``source`` (a run folder or a file)."""
    import torch

    if exclude is not None and method != "argmax":
        raise ConfigError("--exclude applies to --method argmax")
    if max_skip is not ... and method != "argmax":
        raise ConfigError("--max-skip applies to --method argmax")
    cfg, space, model = load_supernet(source, device, exclude, max_skip)
    if space.name == "darts":
        k = 2 if top_k is None else top_k
        if k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {k}")
        return space, model.genotype(top_k=k)
    if top_k is not None:
        raise ConfigError(f"--top-k applies to the darts space; a {space.name} cell has one op per edge")
    if method == "perturbation":
        if space.name != "nb201":
            raise ConfigError(f"--method perturbation supports the nb201 space, not {space.name}")
        return space, perturbation_genotype(model, cfg, torch.device(device), batches, tune_steps, seed, tune_lr)
    return space, model.genotype()


def perturbation_genotype(model: Any, cfg: Any, device: Any, n_batches: int, tune_steps: int, seed: int,
                          tune_lr: Optional[float] = None) -> Any:
    """DARTS-PT selection (``nas.supernet.perturbation``) on un-augmented batches of the run's
    architecture split, then the supernet's own genotype with those decisions."""
    import dataclasses
    import itertools

    import torch

    from .run import make_loaders
    from ..supernet.choice import weight_parameters
    from ..supernet.perturbation import select_by_perturbation, sgd_tuner

    if n_batches < 1 or tune_steps < 0:
        raise ConfigError("--batches must be >= 1 and --tune-steps >= 0")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, augment=False))
    train_loader, val_loader, _ = make_loaders(cfg, device)
    val = list(itertools.islice(iter(val_loader), n_batches))
    tune = None
    if tune_steps:
        train = list(itertools.islice(iter(train_loader), tune_steps))
        tune = sgd_tuner(train, tune_steps, cfg.optim.weights.lr_min if tune_lr is None else tune_lr,
                         weight_parameters)
    chosen = select_by_perturbation(model, "arch.cell", val, seed=seed, tune=tune,
                                    log=lambda m: print(m, file=sys.stderr))
    choice = model.arch["cell"]
    choice.derive = lambda: torch.tensor(chosen)  # the supernet's genotype() with these decisions
    try:
        return model.genotype()
    finally:
        del choice.derive  # the class's method again
