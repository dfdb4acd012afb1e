"""Retrain a derived architecture from scratch with a :class:`RetrainConfig` and keep a run folder
like ``nas-search`` does: ``config.yaml``, ``genotype.yaml``, ``checkpoint.pt`` (atomic, exact
resume), ``tb/``, ``log.txt`` and ``metrics.json`` (test accuracy on the real test split, params
and multiply-accumulates in millions)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import yaml

from ..config import dump_config, from_dict, to_dict
from ..errors import CheckpointError, ConfigError, NasError
from ..engine.checkpoint import load_checkpoint, save_atomic
from ..engine.monitor import Monitor, flatten, log, setup_logging
from ..engine.runtime import replan_epochs, resolve_device, rng_state, seed_everything, set_rng_state
from ..ops.registry import describe_ops
from ..plugins import genotype_record, import_user_modules
from ..utils import count_macs, count_params
from .config import RetrainConfig
from .genotypes import record_from_data, resolve_record
from .trainer import Trainer

CKPT_VERSION = 1
RESUMABLE_CHANGES = ("name", "device", "data.root", "data.download", "data.workers",
                     "trainer.epochs", "trainer.ckpt_every", "trainer.eval_every", "model.genotype")
DEFAULT_C = {"nb201": 16, "darts": 36}


@dataclass
class RetrainResult:
    out_dir: Path
    genotype: Any
    metrics: Dict[str, Any]


def make_network(cfg: RetrainConfig, space: Any, genotype: Any, num_classes: int, in_channels: int,
                 op_args: Optional[Dict[str, Dict[str, Any]]] = None) -> torch.nn.Module:
    """The discrete network of ``genotype``; ``op_args``: the options its ops were searched with
    (the genotype.yaml's), under ``model.op_args``."""
    m = cfg.model
    op_args = {**(op_args or {}), **m.op_args}
    C = m.C if m.C is not None else DEFAULT_C.get(space.name, 16)
    if space.name == "nb201":
        unused = [k for k, v in (("model.auxiliary", m.auxiliary), ("model.drop_path_prob", m.drop_path_prob))
                  if v]
        if unused:
            raise ConfigError(f"{unused[0]} is a DARTS-network setting; the nb201 network has none (set it off)")
        return space.build_network(genotype, num_classes=num_classes, C=C, N=m.N, in_channels=in_channels,
                                   op_args=op_args)
    if space.name == "darts":
        return space.build_network(genotype, num_classes=num_classes, C=C, layers=m.layers, auxiliary=m.auxiliary,
                                   stem_multiplier=m.stem_multiplier, in_channels=in_channels, op_args=op_args)
    # a user's space maps the model section itself (SearchSpace.network_kwargs)
    from ..plugins import accepted_kwargs
    context = accepted_kwargs(space.build_network, "", {"in_channels": in_channels, "op_args": op_args})
    return space.build_network(genotype, num_classes=num_classes, **context, **space.network_kwargs(m))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list:
    """The network's weights with ``weight_decay``; the parameters of its ops' own discrete
    choices (DNF rule logits, L0 gates) without: decay would pull their logits to the undecided 0."""
    from ..supernet.choice import arch_parameters, weight_parameters
    own = [p for role in ("logits", "discrete", "noise") for p in arch_parameters(model, role)]
    groups = [{"params": weight_parameters(model), "weight_decay": weight_decay}]
    return groups + ([{"params": own, "weight_decay": 0.0}] if own else [])


def _check_resume(cfg: RetrainConfig, ckpt: Dict[str, Any], path: Path) -> None:
    try:
        saved = flatten(to_dict(from_dict(RetrainConfig, ckpt["config"])))
    except (NasError, TypeError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {path} holds a config this nas cannot read ({e}); start a new run") from None
    now = flatten(to_dict(cfg))
    for key in sorted(set(saved) | set(now)):
        if key not in RESUMABLE_CHANGES and saved.get(key) != now.get(key):
            raise CheckpointError(f"checkpoint {path} was written with {key}={saved.get(key)!r}, the resumed "
                                  f"config has {key}={now.get(key)!r}; resume with the run's own config")
    if cfg.trainer.epochs < ckpt["epoch"]:
        raise CheckpointError(f"checkpoint {path} is at epoch {ckpt['epoch']}; trainer.epochs="
                              f"{cfg.trainer.epochs} would end before it")


def run_retrain(cfg: RetrainConfig, out_dir: Optional[Path] = None, *, quiet: bool = False,
                resume: bool = False, dataset: Any = None) -> RetrainResult:
    """Train ``cfg.model.genotype`` from scratch; with ``resume``, continue the run in ``out_dir``
    (its genotype is the one stored in the checkpoint). ``dataset``: ``{"train": ..., "test": ...}``
    dataset objects instead of ``data.dataset`` (see ``nas.retrain``)."""
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / (
        f"{cfg.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    ckpt_path = out_dir / "checkpoint.pt"
    ckpt = None
    cfg = replace(cfg, imports=import_user_modules(cfg.imports))  # user registrations first
    if resume:
        ckpt = load_checkpoint(ckpt_path, required=("model", "epoch", "config", "genotype"))
        if ckpt.get("version") != CKPT_VERSION or ckpt.get("kind") != "retrain":
            raise CheckpointError(f"checkpoint {ckpt_path} is not a retrain checkpoint of version {CKPT_VERSION}")
        _check_resume(cfg, ckpt, ckpt_path)
        space, genotype, extras = record_from_data(ckpt["genotype"], str(ckpt_path))
    else:
        if ckpt_path.exists():
            raise NasError(f"{out_dir} already holds a run; continue it with --resume {out_dir} or choose another --out")
        space, genotype, extras = resolve_record(cfg.model.genotype)
    imports = list(dict.fromkeys(cfg.imports + extras["imports"]))
    record = genotype_record(space, genotype, imports, {**extras["op_args"], **cfg.model.op_args})
    out_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(out_dir / "log.txt", quiet)
    dump_config(cfg, out_dir / "config.yaml")
    (out_dir / "genotype.yaml").write_text(yaml.safe_dump(record, sort_keys=False))

    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    from ..data import build_eval_loaders
    d = cfg.data
    if d.cutout < 0:
        raise ConfigError(f"data.cutout must be >= 0 (0 = off), got {d.cutout}")
    train_loader, test_loader, info = build_eval_loaders(
        d.dataset, root=d.root, download=d.download, resize=d.resize, subset=d.subset,
        batch_size=d.batch_size, workers=d.workers, seed=cfg.seed, device=device, augment=d.augment,
        test_subset=d.test_subset, stream=d.stream, given=dataset)
    model = make_network(cfg, space, genotype, info["num_classes"], info["shape"][0], extras["op_args"])
    params_m = count_params(model) / 1e6
    macs_m = count_macs(model, tuple(info["shape"])) / 1e6
    model.to(device)
    o, t = cfg.optim, cfg.trainer
    optimizer = torch.optim.SGD(_param_groups(model, o.weight_decay), lr=o.lr, momentum=o.momentum,
                                nesterov=o.nesterov and o.momentum > 0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(t.epochs, 1), eta_min=o.lr_min)
    trainer = Trainer(model, optimizer, sched, train_loader, epochs=t.epochs, grad_clip=t.grad_clip,
                      aux_weight=cfg.model.auxiliary_weight, drop_path_prob=cfg.model.drop_path_prob,
                      cutout_length=d.cutout, seed=cfg.seed, max_steps_per_epoch=t.max_steps_per_epoch)

    start_epoch, history, elapsed = 0, [], 0.0
    if ckpt is not None:
        try:
            trainer.load_state_dict(ckpt)
            train_loader.load_state_dict(ckpt["loaders"]["train"])
            set_rng_state(ckpt["rng"], device)
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"checkpoint {ckpt_path} does not match its config "
                                  f"({str(e).splitlines()[0][:100] if str(e) else type(e).__name__}); "
                                  f"start a new run") from None
        replan_epochs(sched, t.epochs)
        start_epoch, history, elapsed = ckpt["epoch"], ckpt.get("history", []), ckpt.get("seconds", 0.0)
        log.info(f"resumed from {ckpt_path} after epoch {start_epoch}")

    def checkpoint(epoch_done: int, seconds: float) -> None:
        save_atomic({"version": CKPT_VERSION, "kind": "retrain", "epoch": epoch_done, "config": to_dict(cfg),
                     **trainer.state_dict(), "loaders": {"train": train_loader.state_dict()},
                     "rng": rng_state(device), "genotype": record,
                     "history": history, "seconds": seconds}, ckpt_path)

    log.info(f"retrain {cfg.name}: space={space.name} genotype={genotype} params={params_m:.3f}M "
             f"macs={macs_m:.1f}M device={device} train={info['n_train']} test={info['n_test']} out={out_dir}")
    monitor = Monitor(out_dir / "tb", epochs=t.epochs, quiet=quiet, desc="retrain",
                      purge_step=start_epoch + 1 if ckpt is not None else None)
    monitor.start(start_epoch)
    t0 = time.time() - elapsed
    try:
        for epoch in range(start_epoch, t.epochs):
            monitor.start_epoch(epoch, trainer.steps_per_epoch())
            metrics = trainer.train_epoch(epoch, on_step=lambda s, m: monitor.step(m))
            if t.eval_every > 0 and (epoch + 1) % t.eval_every == 0 and epoch + 1 < t.epochs:
                metrics.update({f"test_{k}": v for k, v in trainer.evaluate(test_loader).items()})
            history.append({"epoch": epoch + 1, **metrics})
            monitor.end_epoch(epoch, metrics, {"lr/weights": optimizer.param_groups[0]["lr"],
                                               "drop_path_prob": getattr(model, "drop_path_prob", 0.0)})
            if (epoch + 1) % max(t.ckpt_every, 1) == 0 or epoch + 1 == t.epochs:
                checkpoint(epoch + 1, time.time() - t0)
        seconds = time.time() - t0
        final = trainer.evaluate(test_loader)
        monitor.scalars({"test/loss": final["loss"], "test/acc": final["acc"]}, t.epochs)
        metrics = {"test_acc": final["acc"], "test_loss": final["loss"],
                   "train_acc": history[-1]["train_acc"] if history else None,
                   "params_m": round(params_m, 6), "macs_m": round(macs_m, 3),
                   "train_seconds": round(seconds, 2), "epochs": t.epochs, "space": space.name,
                   "genotype": str(genotype), "history": history}
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        learned = describe_ops(model.named_modules())
        if learned:  # the retrained DNF rules and open L0 channels, as the search writes them
            (out_dir / "learned_ops.txt").write_text(learned)
        monitor.hparams(to_dict(cfg), {k: metrics[k] for k in ("test_acc", "test_loss", "params_m", "macs_m")},
                        t.epochs)
        log.info(f"done in {seconds:.1f}s: test_acc={final['acc']:.2f} params={params_m:.3f}M macs={macs_m:.1f}M")
    finally:
        monitor.close()
    return RetrainResult(out_dir, genotype, metrics)


def load_run_config(out_dir: Path) -> RetrainConfig:
    path = Path(out_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{out_dir} is not a retrain run folder (no config.yaml)")
    return from_dict(RetrainConfig, yaml.safe_load(path.read_text()) or {})
