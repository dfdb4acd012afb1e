"""Random-search baseline with a wall-clock budget (Li & Talwalkar 2019; NB201 §5 "RS").

Sample cells uniformly from the search space, train each one briefly at the proxy scale of the
search (same data split, channels, cells, resolution, weight optimiser), score it by its accuracy
on the architecture-validation split, and keep the best. New cells are started while the elapsed
time is below the budget (the first is always trained), so the baseline gets the same wall clock
as the search it is compared with. This is the bar every NAS method must clear. With a
``cost.target`` only cells whose trained network fits it are drawn (uniformly among them).

    nas-random-search CONFIG.yaml [key=value ...] --budget SECONDS --out DIR   (nas.commands.random_search)

With ``out_dir`` it keeps a run folder as every command does (:class:`~nas.engine.run_folder.RunFolder`:
a new or empty folder, locked while it runs, ``config.yaml``, ``log.txt``, ``genotype.yaml``,
``metrics.json``); it has no checkpoint: an interrupted random search starts again.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional

import torch
import torch.nn.functional as F
import yaml

from ..config import Config
from ..errors import NasError


@dataclass
class Trial:
    arch: str
    val_acc: float
    seconds: float


@dataclass
class RandomSearchResult:
    best: str
    best_val_acc: float
    trials: List[Trial] = field(default_factory=list)
    seconds: float = 0.0


def train_and_score(model: torch.nn.Module, train_loader, val_loader, *, epochs: int, lr: float,
                    lr_min: float, momentum: float, nesterov: bool, weight_decay: float,
                    grad_clip: float, max_steps_per_epoch: Optional[int] = None) -> float:
    """Train ``model`` for ``epochs`` (SGD, cosine per step) and return its val accuracy in %."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                          nesterov=nesterov and momentum > 0, weight_decay=weight_decay)
    steps = min(len(train_loader), max_steps_per_epoch or len(train_loader))
    total = max(epochs * steps, 1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=lr_min)
    model.train()
    for _ in range(epochs):
        for step, (x, y) in enumerate(train_loader):
            if step >= steps:
                break
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            sched.step()
    model.eval()
    correct = n = 0
    with torch.inference_mode():
        for x, y in val_loader:
            correct += (model(x).argmax(1) == y).sum().item()
            n += y.shape[0]
    return 100.0 * correct / max(n, 1)


def random_search(cfg: Config, budget_seconds: float, *, epochs_per_cell: int = 1,
                  max_cells: Optional[int] = None, out_dir: Optional[Path] = None,
                  log=print, quiet: bool = True) -> RandomSearchResult:
    """Random search over ``cfg.space`` on ``cfg.data`` within ``budget_seconds`` of wall clock;
    with ``out_dir``, in a run folder claimed there first (``log.txt`` also gets every line)."""
    if out_dir is None:
        return _random_search(cfg, budget_seconds, epochs_per_cell, max_cells, log)
    from ..engine.monitor import log as run_log
    from ..engine.run_folder import RunFolder
    folder = RunFolder.claim(out_dir, cfg, kind="random", resumable=())

    def body() -> RandomSearchResult:
        folder.start()
        result = _random_search(cfg, budget_seconds, epochs_per_cell, max_cells,
                                lambda line: (run_log.info(line), log(line)))
        write_run(folder, result, budget_seconds, epochs_per_cell)
        return result
    return folder.run(quiet, body)


def _random_search(cfg: Config, budget_seconds: float, epochs_per_cell: int, max_cells: Optional[int],
                   log: Callable[[str], Any]) -> RandomSearchResult:
    from nas.spaces import get_space

    from ..engine.runtime import resolve_device, seed_everything
    from ..searcher.run import make_loaders

    if cfg.space.name != "nb201":
        raise NasError(f"random search samples NB201 cells; space '{cfg.space.name}' is not supported")
    from nas.spaces.nb201 import OPS, NB201Genotype
    from nas.spaces.nb201.genotype import EDGES

    from ..plugins import import_user_modules
    import_user_modules(cfg.imports)  # the user's ops of space.ops
    t0 = time.time()
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    train_loader, val_loader, info = make_loaders(cfg, device)
    plain_val = val_loader.eval_loader()
    space = get_space("nb201")
    ops = cfg.space.ops or list(OPS)
    gen = torch.Generator().manual_seed(cfg.seed)
    fits = within_budget(cfg, space, info["num_classes"], info["shape"][0])
    w = cfg.optim.weights
    trials: List[Trial] = []
    best: Optional[Trial] = None
    while (not trials or time.time() - t0 < budget_seconds) and (max_cells is None or len(trials) < max_cells):
        t1 = time.time()
        for _ in range(MAX_DRAWS):  # uniform over the cells within the budget, by rejection
            idx = torch.randint(len(ops), (len(EDGES),), generator=gen).tolist()
            genotype = NB201Genotype(tuple(ops[i] for i in idx))
            if fits(genotype):
                break
        else:
            raise NasError(f"no cell within cost.target={cfg.cost.target:g} in {MAX_DRAWS} random draws; raise it")
        model = space.build_network(genotype, num_classes=info["num_classes"], C=cfg.space.C,
                                    N=cfg.space.N, in_channels=info["shape"][0],
                                    op_args=cfg.space.op_args).to(device)
        acc = train_and_score(model, train_loader, plain_val, epochs=epochs_per_cell, lr=w.lr,
                              lr_min=w.lr_min, momentum=w.momentum, nesterov=w.nesterov,
                              weight_decay=w.weight_decay, grad_clip=cfg.trainer.grad_clip,
                              max_steps_per_epoch=cfg.trainer.max_steps_per_epoch)
        trial = Trial(str(genotype), acc, time.time() - t1)
        trials.append(trial)
        if best is None or acc > best.val_acc:  # ties: the earlier cell stays
            best = trial
        log(f"cell {len(trials)}: val_acc={acc:.2f} ({trial.seconds:.1f}s) {trial.arch}")
    return RandomSearchResult(best.arch, best.val_acc, trials, time.time() - t0)


MAX_DRAWS = 100_000


def within_budget(cfg: Config, space: Any, num_classes: int, in_channels: int) -> Callable[[Any], bool]:
    """Whether a cell's trained network costs at most ``cost.target`` (always, without one)."""
    c = cfg.cost
    if c.target is None:
        return lambda genotype: True
    from ..cost import build_cost_table, require_cost_model
    from ..cost.device import cost_source
    cost_model = require_cost_model(space)
    network = cost_model.trained_network(c.C, c.N, c.layers)
    latency, table = cost_source(c, cost_model, network, cfg.space.ops)
    table = table or build_cost_table(cost_model, c.metric, num_classes=c.classes or num_classes,
                                      in_channels=in_channels, resolution=c.resolution, network=network,
                                      latency=latency, batch_size=c.batch_size, ops=cfg.space.ops)
    return lambda genotype: (table.exact(space.selected_edges(genotype), space.selected_widths(genotype))
                             <= c.target * (1 + 1e-9))


def write_run(folder: Any, result: RandomSearchResult, budget: float, epochs: int) -> None:
    """The run folder's results, readable by ``nas-lookup``: genotype.yaml and metrics.json."""
    folder.write_text("genotype.yaml", yaml.safe_dump({"space": "nb201", "arch": result.best}, sort_keys=False))
    folder.write_text("metrics.json", json.dumps({
        "method": "random", "val_acc": result.best_val_acc, "genotype": result.best,
        "search_seconds": round(result.seconds, 2), "budget_seconds": budget, "epochs_per_cell": epochs,
        "cells": len(result.trials), "trials": [vars(t) for t in result.trials]}, indent=2))

