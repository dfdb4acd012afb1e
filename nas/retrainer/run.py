"""Retrain a derived architecture from scratch with a :class:`RetrainConfig` and keep a run folder
like ``nas-search`` does: ``config.yaml``, ``genotype.yaml``, ``checkpoint.pt`` (atomic, exact
resume), ``tb/``, ``log.txt`` and ``metrics.json`` (test accuracy on the real test split, params
and multiply-accumulates in millions)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import yaml

from ..bounds import check_config
from ..config import to_dict
from ..errors import ConfigError
from ..engine.amp import Precision
from ..engine.distributed import World, setup as setup_world
from ..engine.meter import loss_causes as engine_loss_causes
from ..engine.monitor import log
from ..engine.prepare import RunHooks, engine_note, prepare_model
from ..engine.rank_folder import claim_shared, start_shared
from ..engine.run_folder import RESUMABLE_CHANGES as RUN_RESUMABLE, RunFolder
from ..engine.runtime import rng_state, seed_everything, set_rng_state
from ..engine.shapes import check_input_fits
from ..ops.registry import check_op_args, describe_ops
from ..plugins import accepted_kwargs, genotype_record, import_user_modules
from ..utils import count_macs, count_params
from .config import RetrainConfig
from .genotypes import record_from_data, resolve_record
from .trainer import Trainer

RESUMABLE_CHANGES = RUN_RESUMABLE + ("trainer.eval_every", "model.genotype")


@dataclass
class RetrainResult:
    out_dir: Path
    genotype: Any
    metrics: Dict[str, Any]


def make_network(cfg: RetrainConfig, space: Any, genotype: Any, num_classes: int, in_channels: int,
                 op_args: Optional[Dict[str, Dict[str, Any]]] = None) -> torch.nn.Module:
    """The discrete network of ``genotype``: the space maps the ``model`` section to its
    keywords (:meth:`~nas.spaces.base.SearchSpace.network_kwargs`); ``op_args``: the options
    its ops were searched with (the genotype.yaml's), under ``model.op_args``."""
    op_args = {**(op_args or {}), **check_op_args(cfg.model.op_args, "model.op_args")}
    # a user's space may leave out what it does not use
    context = accepted_kwargs(space.build_network, "", {"in_channels": in_channels, "op_args": op_args})
    return space.build_network(genotype, num_classes=num_classes, **context, **space.network_kwargs(cfg.model))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list:
    """The network's weights with ``weight_decay``; the parameters of its ops' own discrete
    choices (DNF rule logits, L0 gates) without: decay would pull their logits to the undecided 0."""
    from ..supernet.choice import arch_parameters, weight_parameters
    own = [p for role in ("logits", "discrete", "noise") for p in arch_parameters(model, role)]
    groups = [{"params": weight_parameters(model), "weight_decay": weight_decay}]
    return groups + ([{"params": own, "weight_decay": 0.0}] if own else [])


def run_retrain(cfg: RetrainConfig, out_dir: Optional[Path] = None, *, quiet: bool = False,
                resume: bool = False, dataset: Any = None, resume_from: Optional[Path] = None) -> RetrainResult:
    """Train ``cfg.model.genotype`` from scratch; with ``resume``, continue the run in ``out_dir``
    (its genotype is the one stored in the checkpoint); with ``resume_from``, continue that run in
    a copy at ``out_dir``. The folder is owned as :func:`nas.searcher.run.run_search` owns its own
    (:class:`~nas.engine.run_folder.RunFolder`). ``dataset``: ``{"train": ..., "test": ...}``
    dataset objects instead of ``data.dataset`` (see ``nas.retrain``).

    Under ``torchrun`` it is one rank of a data-parallel retraining (:mod:`nas.engine.distributed`):
    rank 0 alone claims, reads and writes the run folder; the data order and crop/flip are the
    single process's; Cutout holes and drop-path masks come from per-rank streams (seed + rank)."""
    check_config(cfg)
    cfg = replace(cfg, imports=import_user_modules(cfg.imports))  # user registrations first
    # a new run's genotype is read before the folder is claimed: a wrong one leaves no folder behind
    resolved = None if resume or resume_from is not None else resolve_record(cfg.model.genotype)
    world = setup_world(cfg.device, cfg.trainer.dist_timeout)
    folder = claim_shared(world, out_dir, cfg, kind="retrain", resumable=RESUMABLE_CHANGES, resume=resume,
                          copy_from=resume_from, required=("model", "epoch", "config", "genotype"))
    return folder.run(quiet, lambda: _retrain(cfg, folder, quiet, resolved, dataset, world))


def loss_causes(cfg: RetrainConfig) -> str:
    """The settings that most often make a retraining's loss explode, with their values."""
    return engine_loss_causes(cfg.trainer.grad_clip, [("a learning rate", "optim", cfg.optim.lr, cfg.optim.lr_min)])


def _retrain(cfg: RetrainConfig, folder: RunFolder, quiet: bool, resolved: Any, dataset: Any,
             world: World) -> RetrainResult:
    start_shared(world, folder)
    out_dir = folder.path
    if folder.resumed:
        space, genotype, extras = record_from_data(folder.ckpt["genotype"], str(folder.ckpt_path))
    else:
        space, genotype, extras = resolved
    imports = list(dict.fromkeys(cfg.imports + extras["imports"]))
    record = genotype_record(space, genotype, imports, {**extras["op_args"], **cfg.model.op_args})
    folder.write_text("genotype.yaml", yaml.safe_dump(record, sort_keys=False))

    device = world.device
    seed_everything(cfg.seed + world.rank)  # drop-path masks: a stream per rank
    from ..data import build_eval_loaders, kind_of, own_options
    d = cfg.data
    if kind_of(d.dataset).name != "image":
        raise ConfigError(f"data.dataset={d.dataset} is {kind_of(d.dataset).name} data, and nas-retrain trains "
                          f"image networks (nb201, darts, image spaces); retrain on an image dataset")
    train_loader, test_loader, info = build_eval_loaders(
        d.dataset, root=d.root, download=d.download, resize=d.resize, subset=d.subset,
        batch_size=d.batch_size, workers=d.workers, seed=cfg.seed, device=device, augment=d.augment,
        test_subset=d.test_subset, stream=d.stream, given=dataset, shard=world.shard, share=world.node_shared,
        channels_last=cfg.trainer.channels_last, options=own_options(d.dataset, d))
    model = make_network(cfg, space, genotype, info["num_classes"], info["shape"][0], extras["op_args"])
    check_input_fits(model, info["shape"], f"{space.name} network")
    params_m = count_params(model) / 1e6
    macs_m = count_macs(model, tuple(info["shape"])) / 1e6
    o, t = cfg.optim, cfg.trainer
    model = prepare_model(model, world, sync_bn=t.sync_bn, channels_last=t.channels_last)  # rank 0's initialisation everywhere
    optimizer = torch.optim.SGD(_param_groups(model, o.weight_decay), lr=o.lr, momentum=o.momentum,
                                nesterov=o.nesterov and o.momentum > 0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(t.epochs, 1), eta_min=o.lr_min)
    trainer = Trainer(model, optimizer, sched, train_loader, epochs=t.epochs, grad_clip=t.grad_clip,
                      aux_weight=cfg.model.auxiliary_weight, drop_path_prob=cfg.model.drop_path_prob,
                      cutout_length=d.cutout, seed=cfg.seed + world.rank, max_steps_per_epoch=t.max_steps_per_epoch,
                      loss_causes=loss_causes(cfg), hooks=RunHooks(world, Precision(t.amp, device)))

    loaders = {"train": train_loader}
    start_epoch, history, elapsed = folder.restore(trainer.load_state_dict, loaders, device, sched)
    if folder.resumed:
        _restore_rank_streams(folder.ckpt, trainer, world, cfg.seed)
        folder.log_resumed(start_epoch, world.size)

    def checkpoint(epoch_done: int, seconds: float) -> None:
        # every rank's own random streams (drop-path, Cutout), so that the same number of ranks resumes exactly
        streams = world.gather({"rng": rng_state(device), "cutout": trainer.cutout_generator.get_state()},
                               "collecting the ranks' random streams")
        if not folder.writer:
            folder.save(epoch_done)
            return
        folder.save(epoch_done, seconds, history, {**trainer.state_dict(), "genotype": record,
                                                   "world_size": world.size, "rank_streams": streams},
                    loaders, device)

    log.info(f"retrain {cfg.name}: space={space.name} genotype={genotype} params={params_m:.3f}M "
             f"macs={macs_m:.1f}M device={device} train={info['n_train']} test={info['n_test']} out={out_dir}"
             + engine_note(world, t.sync_bn, t.amp))
    monitor = folder.monitor(quiet, start_epoch, desc="retrain")
    monitor.start(start_epoch)
    t0 = time.time() - elapsed
    with folder.closing(monitor):  # a data-parallel failure says what the run leaves
        for epoch in range(start_epoch, t.epochs):
            folder.epoch = epoch + 1
            monitor.start_epoch(epoch, trainer.steps_per_epoch())
            metrics = trainer.train_epoch(epoch, on_step=lambda s, m: monitor.step(m))
            if t.eval_every > 0 and (epoch + 1) % t.eval_every == 0 and epoch + 1 < t.epochs:
                metrics.update({f"test_{k}": v for k, v in trainer.evaluate(test_loader).items()})
            history.append({"epoch": epoch + 1, **metrics})
            monitor.end_epoch(epoch, metrics, {"lr/weights": optimizer.param_groups[0]["lr"],
                                               "drop_path_prob": model.drop_path_prob})
            if folder.checkpoint_due(epoch + 1):
                checkpoint(epoch + 1, time.time() - t0)
        folder.epoch = None
        seconds = time.time() - t0
        final = trainer.evaluate(test_loader)
        monitor.scalars({"test/loss": final["loss"], "test/acc": final["acc"]}, t.epochs)
        metrics = {"test_acc": final["acc"], "test_loss": final["loss"],
                   "train_acc": history[-1]["train_acc"] if history else None,
                   "params_m": round(params_m, 6), "macs_m": round(macs_m, 3),
                   "train_seconds": round(seconds, 2), "epochs": t.epochs, "space": space.name,
                   "genotype": str(genotype), "history": history}
        folder.write_text("metrics.json", json.dumps(metrics, indent=2))
        learned = describe_ops(model.named_modules())
        if learned:  # the retrained DNF rules and open L0 channels, as the search writes them
            folder.write_text("learned_ops.txt", learned)
        monitor.hparams(to_dict(cfg), {k: metrics[k] for k in ("test_acc", "test_loss", "params_m", "macs_m")},
                        t.epochs)
        log.info(f"done in {seconds:.1f}s: test_acc={final['acc']:.2f} params={params_m:.3f}M macs={macs_m:.1f}M")
        failed = monitor.close()
        if failed is not None:
            raise failed
    return RetrainResult(out_dir, genotype, metrics)


def _restore_rank_streams(ckpt: Dict[str, Any], trainer: Trainer, world: World, seed: int) -> None:
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
