"""Retrain a derived architecture from scratch with a :class:`RetrainConfig` and keep a run folder
like ``nas-search`` does: ``config.yaml``, ``genotype.yaml``, ``checkpoint.pt`` (atomic, exact
resume), ``tb/``, ``log.txt`` and ``metrics.json`` (test accuracy on the real test split, params
and multiply-accumulates in millions)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import yaml

from ..config import dump_config, from_dict, to_dict
from ..errors import CheckpointError, ConfigError, NasError
from ..engine.amp import GradStep, Precision
from ..engine.checkpoint import load_checkpoint, save_atomic
from ..engine.distributed import DistributedError, setup as setup_world
from ..engine.monitor import Monitor, flatten, log, setup_logging
from ..engine.runtime import replan_epochs, rng_state, seed_everything, set_rng_state
from ..engine.sync_bn import convert_sync_bn
from ..utils import count_macs, count_params
from .config import RetrainConfig
from .genotypes import genotype_from_data, resolve_genotype
from .trainer import Trainer

CKPT_VERSION = 1
RESUMABLE_CHANGES = ("name", "device", "data.root", "data.download", "data.workers",
                     "trainer.epochs", "trainer.ckpt_every", "trainer.eval_every", "model.genotype",
                     "trainer.dist_timeout", "trainer.channels_last")
DEFAULT_C = {"nb201": 16, "darts": 36}


@dataclass
class RetrainResult:
    out_dir: Path
    genotype: Any
    metrics: Dict[str, Any]


def make_network(cfg: RetrainConfig, space: Any, genotype: Any, num_classes: int, in_channels: int
                 ) -> torch.nn.Module:
    m = cfg.model
    C = m.C if m.C is not None else DEFAULT_C.get(space.name, 16)
    if space.name == "nb201":
        unused = [k for k, v in (("model.auxiliary", m.auxiliary), ("model.drop_path_prob", m.drop_path_prob))
                  if v]
        if unused:
            raise ConfigError(f"{unused[0]} is a DARTS-network setting; the nb201 network has none (set it off)")
        return space.build_network(genotype, num_classes=num_classes, C=C, N=m.N, in_channels=in_channels)
    return space.build_network(genotype, num_classes=num_classes, C=C, layers=m.layers, auxiliary=m.auxiliary,
                               stem_multiplier=m.stem_multiplier, in_channels=in_channels)


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


def _open_run_folder(cfg: RetrainConfig, out_dir: Path, resume: bool, quiet: bool
                     ) -> Tuple[Optional[Dict[str, Any]], Dict[str, Any]]:
    """Check ``out_dir``, open its log, write config and genotype: (checkpoint to resume, genotype as data)."""
    ckpt_path = out_dir / "checkpoint.pt"
    ckpt = None
    if resume:
        ckpt = load_checkpoint(ckpt_path, required=("model", "epoch", "config", "genotype"))
        if ckpt.get("version") != CKPT_VERSION or ckpt.get("kind") != "retrain":
            raise CheckpointError(f"checkpoint {ckpt_path} is not a retrain checkpoint of version {CKPT_VERSION}")
        _check_resume(cfg, ckpt, ckpt_path)
        space, genotype = genotype_from_data(ckpt["genotype"], str(ckpt_path))
    else:
        if ckpt_path.exists():
            raise NasError(f"{out_dir} already holds a run; continue it with --resume {out_dir} or choose another --out")
        space, genotype = resolve_genotype(cfg.model.genotype)
    out_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(out_dir / "log.txt", quiet)
    dump_config(cfg, out_dir / "config.yaml")
    (out_dir / "genotype.yaml").write_text(yaml.safe_dump(space.genotype_to_dict(genotype), sort_keys=False))
    return ckpt, space.genotype_to_dict(genotype)


def run_retrain(cfg: RetrainConfig, out_dir: Optional[Path] = None, *, quiet: bool = False,
                resume: bool = False) -> RetrainResult:
    """Train ``cfg.model.genotype`` from scratch; with ``resume``, continue the run in ``out_dir``
    (its genotype is the one stored in the checkpoint).

    Under ``torchrun`` it is one rank of a data-parallel retraining (:mod:`nas.engine.distributed`):
    rank 0 reads and writes ``out_dir``; the data order and crop/flip are the single process's;
    Cutout holes and drop-path masks come from per-rank streams (seed + rank)."""
    world = setup_world(cfg.device, cfg.trainer.dist_timeout)
    out_dir = Path(world.broadcast(str(out_dir if out_dir is not None else Path("runs") / (
        f"{cfg.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"))))
    ckpt_path = out_dir / "checkpoint.pt"
    ckpt, genotype_data = world.on_main(lambda: _open_run_folder(cfg, out_dir, resume, quiet), "reading the run folder")
    space, genotype = genotype_from_data(genotype_data, str(out_dir / "genotype.yaml"))
    if not world.is_main:
        setup_logging(None, True)

    device = world.device
    seed_everything(cfg.seed + world.rank)  # drop-path masks: a stream per rank
    from ..data import build_eval_loaders
    d = cfg.data
    if d.cutout < 0:
        raise ConfigError(f"data.cutout must be >= 0 (0 = off), got {d.cutout}")
    train_loader, test_loader, info = build_eval_loaders(
        d.dataset, root=d.root, download=d.download, resize=d.resize, subset=d.subset,
        batch_size=d.batch_size, workers=d.workers, seed=cfg.seed, device=device, augment=d.augment,
        test_subset=d.test_subset, shard=world.shard, share=world.node_shared,
        channels_last=cfg.trainer.channels_last)
    model = make_network(cfg, space, genotype, info["num_classes"], info["shape"][0])
    params_m = count_params(model) / 1e6
    macs_m = count_macs(model, tuple(info["shape"])) / 1e6
    o, t = cfg.optim, cfg.trainer
    if t.sync_bn and world.enabled:
        model = convert_sync_bn(model, world)
    model.to(device)
    if t.channels_last:
        model.to(memory_format=torch.channels_last)
    world.sync_module(model)  # rank 0's initialisation everywhere
    optimizer = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                                nesterov=o.nesterov and o.momentum > 0, weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(t.epochs, 1), eta_min=o.lr_min)
    trainer = Trainer(model, optimizer, sched, train_loader, epochs=t.epochs, grad_clip=t.grad_clip,
                      aux_weight=cfg.model.auxiliary_weight, drop_path_prob=cfg.model.drop_path_prob,
                      cutout_length=d.cutout, seed=cfg.seed + world.rank, max_steps_per_epoch=t.max_steps_per_epoch)
    precision = Precision(t.amp, device)
    trainer.autocast, trainer.world = precision.autocast, world
    trainer.grad = GradStep(precision.scaler(), world.average if world.enabled else None)

    start_epoch, history, elapsed = 0, [], 0.0
    if ckpt is not None:
        try:
            trainer.load_state_dict(ckpt)
            train_loader.load_state_dict(ckpt["loaders"]["train"])
            set_rng_state(ckpt["rng"], device)
            _restore_rank_streams(ckpt, trainer, world, cfg.seed)
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"checkpoint {ckpt_path} does not match its config "
                                  f"({str(e).splitlines()[0][:100] if str(e) else type(e).__name__}); "
                                  f"start a new run") from None
        replan_epochs(sched, t.epochs)
        start_epoch, history, elapsed = ckpt["epoch"], ckpt.get("history", []), ckpt.get("seconds", 0.0)
        log.info(f"resumed from {ckpt_path} after epoch {start_epoch}")

    def checkpoint(epoch_done: int, seconds: float) -> None:
        # every rank's own random streams (drop-path, Cutout), so that the same number of ranks resumes exactly
        streams = world.gather({"rng": rng_state(device), "cutout": trainer.cutout_generator.get_state()},
                               "collecting the ranks' random streams")
        if world.is_main:
            save_atomic({"version": CKPT_VERSION, "kind": "retrain", "epoch": epoch_done, "config": to_dict(cfg),
                         **trainer.state_dict(), "loaders": {"train": train_loader.state_dict()},
                         "rng": rng_state(device), "world_size": world.size, "rank_streams": streams,
                         "genotype": space.genotype_to_dict(genotype), "history": history, "seconds": seconds},
                        ckpt_path)

    log.info(f"retrain {cfg.name}: space={space.name} genotype={genotype} params={params_m:.3f}M "
             f"macs={macs_m:.1f}M device={device} train={info['n_train']} test={info['n_test']} out={out_dir}"
             + (f" ranks={world.size} sync_bn={t.sync_bn}" if world.enabled else "")
             + (f" amp={t.amp}" if t.amp != "off" else ""))
    monitor = Monitor(out_dir / "tb" if world.is_main else None, epochs=t.epochs, quiet=quiet or not world.is_main,
                      desc="retrain", purge_step=start_epoch + 1 if ckpt is not None else None)
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
        if world.is_main:
            (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        monitor.hparams(to_dict(cfg), {k: metrics[k] for k in ("test_acc", "test_loss", "params_m", "macs_m")},
                        t.epochs)
        log.info(f"done in {seconds:.1f}s: test_acc={final['acc']:.2f} params={params_m:.3f}M macs={macs_m:.1f}M")
    except DistributedError as e:
        raise DistributedError(f"{e}; the last checkpoint in {out_dir} is intact: continue with "
                               f"torchrun ... -m nas.commands.retrain --resume {out_dir}") from None
    finally:
        monitor.close()
    return RetrainResult(out_dir, genotype, metrics)


def _restore_rank_streams(ckpt: Dict[str, Any], trainer: Trainer, world: Any, seed: int) -> None:
    """This rank's drop-path and Cutout streams from the checkpoint when it was written by as many
    ranks; with another number of ranks, rank 0 continues rank 0's and the others start streams
    seeded by (seed + rank, epoch) — the data order is unaffected, the masks are fresh draws."""
    streams = ckpt.get("rank_streams")
    if streams is not None and len(streams) == world.size:
        set_rng_state(streams[world.rank]["rng"], world.device)
        trainer.cutout_generator.set_state(streams[world.rank]["cutout"])
    elif world.rank > 0:
        g = seed + world.rank + 1_000_003 * int(ckpt["epoch"])
        torch.manual_seed(g)
        trainer.cutout_generator.manual_seed(g)


def load_run_config(out_dir: Path) -> RetrainConfig:
    path = Path(out_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{out_dir} is not a retrain run folder (no config.yaml)")
    return from_dict(RetrainConfig, yaml.safe_load(path.read_text()) or {})
