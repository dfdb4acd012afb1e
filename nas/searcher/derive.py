"""Derive a genotype from a finished (or interrupted) search: rebuild the supernet from the
checkpoint's own config and state, then take its argmax per edge (with the run's derive keys, or
overrides, and the run's cost budget or another one) or DARTS-PT's perturbation selection
(Wang et al. 2021)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from ..errors import CheckpointError, ConfigError, NasError


def load_supernet(source: Path, device: str = "cpu", exclude: Optional[str] = None,
                  max_skip: Any = ..., cost: Sequence[str] = (), min_skip: Any = ...,
                  rules: Sequence[str] = ()) -> Tuple[Any, Any, Any]:
    """``(config, space, supernet)`` of the search checkpoint at ``source`` (a run folder or a
    file), with its architecture, estimator state and auxiliary-skip β as the search left them.
    ``exclude``, ``max_skip`` and ``min_skip`` (``...``: the run's own) override the run's derive keys;
    ``cost``: ``KEY=VALUE`` overrides of its ``cost:`` section (derive within another budget);
    ``rules``: ``KEY=VALUE`` overrides of its ``derive:`` section (any key the space reads)."""
    import torch

    from ..config import Config, from_dict
    from ..engine.checkpoint import load_checkpoint
    from ..plugins import import_user_modules
    from .loop import aux_skip_at
    from .run import make_estimator, make_hooks, make_supernet

    ckpt = load_checkpoint(source)
    if ckpt.get("kind") == "retrain":
        raise CheckpointError(f"{source} is a retrain checkpoint; its genotype is in its genotype.yaml")
    try:
        cfg = from_dict(Config, ckpt["config"])
    except (NasError, TypeError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {source} holds a config this nas cannot read ({e})") from None
    changes: Dict[str, Any] = {}
    if exclude is not None:
        changes["exclude"] = [op.strip() for op in exclude.split(",") if op.strip()]
    if max_skip is not ...:
        changes["max_skip"] = max_skip
    if min_skip is not ...:
        changes["min_skip"] = min_skip
    if changes:  # the space's derive section takes them (an empty one is no change where it has none)
        from ..config import to_dict
        plain = to_dict(cfg)
        plain["derive"].update({k: v for k, v in changes.items() if v not in ([], None) or k in plain["derive"]})
        cfg = from_dict(Config, plain)
    import_user_modules(cfg.imports)  # the run's own ops, spaces, estimators
    if cost or rules:
        from ..config import apply_overrides, to_dict
        cfg = from_dict(Config, apply_overrides(to_dict(cfg), [f"cost.{kv}" for kv in cost]
                                                + [f"derive.{kv}" for kv in rules]))
    kept = (source if source.is_dir() else source.parent) / "latency.json"
    if cfg.cost.metric == "latency" and not cfg.cost.device and kept.is_file():  # the table the run was searched with
        cfg.cost.latency_table = str(kept)
    state = ckpt["model"]
    data = ckpt.get("data")
    if data is None:  # checkpoints before the data sizes were kept: read them off the weights
        try:
            data = {"num_classes": state["classifier.weight"].shape[0], "in_channels": state["stem.0.weight"].shape[1]}
        except (KeyError, AttributeError, IndexError):
            raise CheckpointError(f"checkpoint {source} has no data sizes nor supernet stem/classifier weights") from None
    estimator = make_estimator(cfg)
    space, model = make_supernet(cfg, estimator, data["num_classes"], data["in_channels"], data)
    try:
        for h in make_hooks(cfg):  # what a step hook changed of the supernet (DrNAS's widening)
            h.restore_structure(model, (ckpt.get("step_hooks") or {}).get(h.name, {}))
        model.load_state_dict(state)
        estimator.load_state_dict(ckpt.get("estimator", {}))
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {source} does not match its config ({str(e).splitlines()[0][:100]})") from None
    model.to(torch.device(device))
    if model.has_aux_skip:  # a plain attribute, so not in the state: recomputed from the progress
        model.aux_skip = aux_skip_at(cfg.optim.aux_skip, cfg.optim.aux_skip_end, ckpt.get("epoch", 0),
                                     cfg.trainer.epochs)
    return cfg, space, model


def derive(source: Path, top_k: Optional[int] = None, device: str = "cpu", method: str = "argmax",
           batches: int = 40, tune_steps: int = 0, seed: int = 0, tune_lr: Optional[float] = None,
           exclude: Optional[str] = None, max_skip: Any = ..., write: Optional[Path] = None,
           log: Optional[Callable[[str], Any]] = None, cost: Sequence[str] = (),
           min_skip: Any = ..., rules: Sequence[str] = ()) -> Tuple[Any, Any]:
    """``(space, genotype)`` of the search checkpoint at ``source`` (a run folder or a file);
    ``write``: a genotype.yaml path to write it to, with the run's imports and op options and the
    files the supernet keeps beside it (``learned_ops.txt``, ``rules.txt``); ``cost``, ``rules``:
    ``KEY=VALUE`` overrides of the run's ``cost:`` and ``derive:`` sections; ``log`` (e.g. ``print``) receives the
    derived network's cost against the budget, when the run has a cost model."""
    cfg, space, model, genotype = _derive(source, top_k, device, method, batches, tune_steps, seed, tune_lr,
                                          exclude, max_skip, cost, min_skip, rules)
    budget = model.budget()
    if budget is not None:
        budget.require_within(genotype, "give a higher --cost target=T, or --cost hard=false")
    if write is not None:
        from .run import write_genotype
        record = provenance(Path(source), Path(write), method, exclude, max_skip, cost, top_k, min_skip, rules)
        if record is not None and budget is not None:
            record["cost_exact"] = {budget.table.metric: round(budget.exact(genotype), 6)}
        try:
            write_genotype(Path(write), cfg, space, model, genotype, derived=record)
        except OSError as e:
            raise NasError(f"cannot write the genotype to {write} ({e.strerror or e}); give a writable --out") from None
    if log is not None and budget is not None:
        from ..cost import cost_report
        log(cost_report(budget, genotype))
    return space, genotype


def provenance(source: Path, write: Path, method: str, exclude: Optional[str], max_skip: Any,
               cost: Sequence[str], top_k: Optional[int], min_skip: Any = ...,
               rules: Sequence[str] = ()) -> Optional[Dict[str, Any]]:
    """The ``derived:`` record of a genotype.yaml: the run it came from (relative to the
    genotype's folder, so that the two move together) and every derive option given, so that a
    cell derived within another budget can be traced and tabulated (``tools/cost_benchmark.py``).
    ``None`` for the run's own genotype again (its folder, its rules): nothing to trace."""
    import os

    run = source if source.is_dir() else source.parent
    where = os.path.relpath(run.resolve(), write.resolve().parent)
    if (where == "." and method == "argmax" and top_k is None and exclude is None and max_skip is ...
            and min_skip is ... and not cost and not rules):
        return None
    record: Dict[str, Any] = {"from": where, "method": method}
    if top_k is not None:
        record["top_k"] = top_k
    if exclude is not None:
        record["exclude"] = exclude
    if max_skip is not ...:
        record["max_skip"] = max_skip
    if min_skip is not ...:
        record["min_skip"] = min_skip
    if rules:
        record["derive"] = list(rules)
    if cost:
        record["cost"] = list(cost)
    return record


def _derive(source: Path, top_k: Optional[int], device: str, method: str, batches: int, tune_steps: int,
            seed: int, tune_lr: Optional[float], exclude: Optional[str], max_skip: Any,
            cost: Sequence[str], min_skip: Any = ..., rules: Sequence[str] = ()) -> Tuple[Any, Any, Any, Any]:
    """``(config, space, supernet, genotype)``: :func:`derive`'s work."""
    import torch

    if exclude is not None and method != "argmax":
        raise ConfigError("--exclude applies to --method argmax")
    if max_skip is not ... and method != "argmax":
        raise ConfigError("--max-skip applies to --method argmax")
    if min_skip is not ... and method != "argmax":
        raise ConfigError("--min-skip applies to --method argmax")
    if rules and method != "argmax":
        raise ConfigError("--derive applies to --method argmax")
    cfg, space, model = load_supernet(source, device, exclude, max_skip, cost, min_skip, rules)
    options = {} if top_k is None else {"top_k": top_k}
    if top_k is not None and "top_k" not in space.derive_options:
        from nas.spaces import SPACES, get_space
        where = " and ".join(f"the {n} space" for n in SPACES.names() if "top_k" in get_space(n).derive_options)
        raise ConfigError(f"--top-k applies to {where}; a {space.name} cell has one op per edge")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")
    if method == "perturbation":
        if space.perturbation_choice is None:
            raise ConfigError(f"--method perturbation does not support the {space.name} space")
        return cfg, space, model, perturbation_genotype(model, space.perturbation_choice, cfg, torch.device(device),
                                                        batches, tune_steps, seed, tune_lr)
    return cfg, space, model, model.genotype(**options)


def perturbation_genotype(model: Any, choice_name: str, cfg: Any, device: Any, n_batches: int, tune_steps: int,
                          seed: int, tune_lr: Optional[float] = None) -> Any:
    """DARTS-PT selection (``nas.supernet.perturbation``) on un-augmented batches of the run's
    architecture split, then the supernet's own genotype with those decisions."""
    import dataclasses
    import itertools
    import sys

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
    chosen = select_by_perturbation(model, choice_name, val, seed=seed, tune=tune,
                                    log=lambda m: print(m, file=sys.stderr))
    choice = model.choices()[choice_name]
    choice.derive = lambda: torch.tensor(chosen)  # the supernet's genotype() with these decisions
    try:
        return model.genotype()
    finally:
        del choice.derive  # the class's method again
