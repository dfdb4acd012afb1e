"""Derive the discrete architecture from a search's checkpoint.

    python tools/derive.py RUN_DIR | checkpoint.pt [--top-k K] [--out genotype.yaml] [--device cpu]
    python tools/derive.py RUN_DIR --exclude none     # NB201: never pick these ops (DARTS §2.4)
    python tools/derive.py RUN_DIR --max-skip 1       # at most 1 skip_connect edge (P-DARTS §3.3)
    python tools/derive.py RUN_DIR --method perturbation [--batches 40] [--tune-steps 0]
    python tools/derive.py RUN_DIR --cost target=55 [--cost metric=params]   # within another budget

rebuilds the supernet from the checkpoint's own config, loads its architecture parameters and
estimator state, applies the space's derive rule (NB201: the estimator's decision per edge;
DARTS: per node the K strongest non-``none`` incoming edges by ``Choice.probs()``, K=2 as in the
paper; ``--exclude`` overrides the run's ``estimator.derive_exclude``, ``--max-skip`` its
``estimator.derive_max_skip``), writes ``genotype.yaml`` (default: into the run folder) and prints
the genotype.
``--method perturbation`` selects each NB201 edge's op by how much removing it costs the supernet's
validation accuracy (DARTS-PT, ``nas/supernet/perturbation.py``), on the run's own data.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.errors import CheckpointError, ConfigError, NasError  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="derive", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, metavar="RUN_DIR|checkpoint.pt", help="a nas-search run folder or checkpoint")
    p.add_argument("--top-k", type=int, default=None,
                   help="DARTS: incoming edges kept per intermediate node (default 2, as in the paper)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the genotype (default: genotype.yaml beside the checkpoint)")
    p.add_argument("--device", default="cpu", help="device to rebuild the supernet on (default cpu)")
    p.add_argument("--method", choices=("argmax", "perturbation"), default="argmax",
                   help="argmax of α per edge (default), or DARTS-PT's perturbation-based selection "
                        "measured on validation batches of the run's data (nb201)")
    p.add_argument("--batches", type=int, default=40, help="perturbation: validation batches per measurement")
    p.add_argument("--tune-steps", type=int, default=0, help="perturbation: weight steps after each edge decision")
    p.add_argument("--tune-lr", type=float, default=None,
                   help="perturbation: SGD lr of those steps (default: the run's optim.weights.lr_min)")
    p.add_argument("--seed", type=int, default=0, help="perturbation: seed of the edge order")
    p.add_argument("--exclude", default=None, metavar="OPS",
                   help="nb201 argmax: comma-separated ops derive never picks, e.g. 'none' as DARTS does "
                        "(overrides the run's estimator.derive_exclude; '' picks among all)")
    p.add_argument("--max-skip", default=None, metavar="M",
                   help="most skip_connect edges the derived cell keeps, P-DARTS's limit (darts: in the "
                        "normal cell); overrides the run's estimator.derive_max_skip; 'none' for no limit")
    p.add_argument("--cost", action="append", default=[], metavar="KEY=VALUE",
                   help="override the run's cost section for derive, e.g. --cost target=55 --cost metric=params: "
                        "the most probable cell within that budget (cost.hard)")
    return p


def parse_max_skip(value: Optional[str]) -> Any:
    """``--max-skip``: ``None`` keeps the run's own limit, ``'none'`` removes it, else an int."""
    if value is None:
        return ...
    if value.strip().lower() in ("none", "null", ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--max-skip takes a whole number or 'none', got '{value}'") from None


def load_supernet(source: Path, device: str = "cpu", exclude: Optional[str] = None,
                  max_skip: Any = ..., cost: Sequence[str] = ()) -> Tuple[Any, Any, Any]:
    """``(config, space, supernet)`` of the search checkpoint at ``source`` (a run folder or a
    file), with its architecture, estimator state and auxiliary-skip β as the search left them.
    ``exclude`` and ``max_skip`` (``...``: the run's own) override the run's derive keys."""
    import torch

    from nas.config import Config, from_dict
    from nas.search.checkpoint import load_checkpoint
    from nas.search.loop import aux_skip_at
    from nas.search.run import make_estimator, make_supernet

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
    if cost:
        from nas.config import apply_overrides, to_dict
        cfg = from_dict(Config, apply_overrides(to_dict(cfg), [f"cost.{kv}" for kv in cost]))
    kept = (source if source.is_dir() else source.parent) / "latency.json"
    if cfg.cost.metric == "latency" and kept.is_file():  # the table the run was searched with
        cfg.cost.latency_table = str(kept)
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
           exclude: Optional[str] = None, max_skip: Any = ..., log: Any = None,
           cost: Sequence[str] = ()) -> Tuple[Any, Any]:
    """``(space, genotype)`` of the search checkpoint at ``source`` (a run folder or a file);
    ``log`` (e.g. ``print``) receives the derived network's cost against the run's budget."""
    space, genotype, model = _derive(source, top_k, device, method, batches, tune_steps, seed, tune_lr,
                                     exclude, max_skip, cost)
    if log is not None and getattr(model, "cost", None) is not None:
        from nas.cost import cost_report
        log(cost_report(model.cost, genotype))
    return space, genotype


def _derive(source: Path, top_k: Optional[int], device: str, method: str, batches: int, tune_steps: int,
            seed: int, tune_lr: Optional[float], exclude: Optional[str], max_skip: Any,
            cost: Sequence[str] = ()) -> Tuple[Any, Any, Any]:
    import torch

    if exclude is not None and method != "argmax":
        raise ConfigError("--exclude applies to --method argmax")
    if max_skip is not ... and method != "argmax":
        raise ConfigError("--max-skip applies to --method argmax")
    cfg, space, model = load_supernet(source, device, exclude, max_skip, cost)
    if space.name == "darts":
        k = 2 if top_k is None else top_k
        if k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {k}")
        return space, model.genotype(top_k=k), model
    if top_k is not None:
        raise ConfigError(f"--top-k applies to the darts space; a {space.name} cell has one op per edge")
    if method == "perturbation":
        if space.name != "nb201":
            raise ConfigError(f"--method perturbation supports the nb201 space, not {space.name}")
        return space, perturbation_genotype(model, cfg, torch.device(device), batches, tune_steps, seed, tune_lr), model
    return space, model.genotype(), model


def perturbation_genotype(model: Any, cfg: Any, device: Any, n_batches: int, tune_steps: int, seed: int,
                          tune_lr: Optional[float] = None) -> Any:
    """DARTS-PT selection (``nas.supernet.perturbation``) on un-augmented batches of the run's
    architecture split, then the supernet's own genotype with those decisions."""
    import dataclasses
    import itertools

    import torch

    from nas.search.run import make_loaders
    from nas.supernet.choice import weight_parameters
    from nas.supernet.perturbation import select_by_perturbation, sgd_tuner

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


def main(args: argparse.Namespace) -> int:
    notes: list = []  # the cost line, printed after the genotype
    try:
        space, genotype = derive(args.source, args.top_k, args.device, args.method, args.batches,
                                 args.tune_steps, args.seed, args.tune_lr, args.exclude,
                                 parse_max_skip(args.max_skip), log=notes.append, cost=args.cost)
        out = args.out or (args.source if args.source.is_dir() else args.source.parent) / "genotype.yaml"
        out.write_text(yaml.safe_dump(space.genotype_to_dict(genotype), sort_keys=False))
    except NasError as e:
        print(f"derive: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"derive: error: cannot write the genotype ({e})", file=sys.stderr)
        return 2
    print(genotype)
    for line in notes:
        print(line)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    from nas.utils.pipes import exit_quietly_on_closed_pipe
    exit_quietly_on_closed_pipe()
    sys.exit(main(get_args_parser().parse_args()))
