"""Run a search from a :class:`~nas.config.Config`: build data, supernet, estimator and optimizers,
train, derive, and keep everything in a run folder (config, checkpoint, genotype, TensorBoard,
log, metrics). This is the only place that turns config dataclasses into library objects."""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import yaml

from ..config import Config, dump_config, from_dict, to_dict
from ..errors import CheckpointError, ConfigError, NasError
from ..estimators import build_estimator
from ..estimators.base import Estimator
from .checkpoint import load_checkpoint, save_atomic
from .loop import Searcher
from .monitor import Monitor, log, setup_logging
from .optim import build_optimizers

CKPT_VERSION = 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but no CUDA GPU is visible; use device=cpu or device=auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for the search itself
        pass


def make_estimator(cfg: Config) -> Estimator:
    e = cfg.estimator
    return build_estimator(e.name, noise=e.noise, sigma0=e.sigma0, sigma_max=e.sigma_max,
                           tau=e.tau, tau_end=e.tau_end, schedule=e.schedule, per=e.per,
                           gamma=e.gamma, threshold=e.threshold, single_path=e.single_path,
                           gamma_end=e.gamma_end, threshold_end=e.threshold_end)


def make_loaders(cfg: Config, device: torch.device):
    from ..data import build_search_loaders
    d = cfg.data
    return build_search_loaders(d.dataset, root=d.root, download=d.download, resize=d.resize,
                                subset=d.subset, train_portion=d.train_portion, batch_size=d.batch_size,
                                workers=d.workers, seed=cfg.seed, device=device, augment=d.augment)


def make_supernet(cfg: Config, estimator: Estimator, num_classes: int, in_channels: int):
    from search_spaces import get_space
    space = get_space(cfg.space.name)
    s = cfg.space
    kwargs: Dict[str, Any] = dict(C=s.C, ops=s.ops, affine=s.affine)
    if space.name == "nb201":
        kwargs["N"] = s.N
    else:
        kwargs.update(layers=s.layers, steps=s.steps, multiplier=s.multiplier, stem_multiplier=s.stem_multiplier)
    if s.gates != "none":
        kwargs.update(gates=s.gates, l0_lambda=s.l0_lambda)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = space.build_supernet(estimator, num_classes=num_classes, in_channels=in_channels,
                                 init_std=cfg.optim.arch.init_std, generator=gen, **kwargs)
    return space, model


@dataclass
class SearchResult:
    out_dir: Path
    genotype: Any
    genotype_str: str
    metrics: Dict[str, Any]


def default_out_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_search(cfg: Config, out_dir: Optional[Path] = None, *, quiet: bool = False,
               resume: bool = False) -> SearchResult:
    """Search with ``cfg``; with ``resume``, continue the run in ``out_dir`` from its checkpoint."""
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(cfg.name)
    ckpt_path = out_dir / "checkpoint.pt"
    ckpt = None
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        if ckpt.get("version") != CKPT_VERSION:
            raise CheckpointError(f"checkpoint {ckpt_path} has version {ckpt.get('version')}, this nas "
                                  f"reads version {CKPT_VERSION}; start a new run")
    elif ckpt_path.exists():
        raise NasError(f"{out_dir} already holds a run; continue it with --resume {out_dir} or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(out_dir / "log.txt", quiet)
    dump_config(cfg, out_dir / "config.yaml")

    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    estimator = make_estimator(cfg)
    train_loader, val_loader, info = make_loaders(cfg, device)
    space, model = make_supernet(cfg, estimator, info["num_classes"], info["shape"][0])
    model.to(device)
    w, a, t = cfg.optim.weights, cfg.optim.arch, cfg.trainer
    opts = build_optimizers(model, estimator, epochs=t.epochs, lr=w.lr, lr_min=w.lr_min, momentum=w.momentum,
                            nesterov=w.nesterov, weight_decay=w.weight_decay, arch_lr=a.lr, arch_betas=a.betas,
                            arch_weight_decay=a.weight_decay, noise_lr=cfg.estimator.noise_lr)
    searcher = Searcher(model, estimator, opts, train_loader, val_loader, epochs=t.epochs,
                        mode=cfg.optim.mode, order=cfg.optim.order, warmup_epochs=cfg.optim.warmup_epochs,
                        grad_clip=t.grad_clip, max_steps_per_epoch=t.max_steps_per_epoch)

    start_epoch, history, elapsed = 0, [], 0.0
    if ckpt is not None:
        try:
            searcher.load_state_dict(ckpt)
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"checkpoint {ckpt_path} does not match its config ({str(e).splitlines()[0][:100]}); "
                                  f"start a new run") from None
        train_loader.load_state_dict(ckpt["loaders"]["train"])
        val_loader.load_state_dict(ckpt["loaders"]["val"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        random.setstate(ckpt["rng"]["python"])
        if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)
        start_epoch, history, elapsed = ckpt["epoch"], ckpt.get("history", []), ckpt.get("seconds", 0.0)
        log.info(f"resumed from {ckpt_path} after epoch {start_epoch}")

    def checkpoint(epoch_done: int, seconds: float) -> None:
        save_atomic({
            "version": CKPT_VERSION, "epoch": epoch_done, "config": to_dict(cfg),
            "model": model.state_dict(), "optim": opts.state_dict(), "estimator": estimator.state_dict(),
            "loaders": {"train": train_loader.state_dict(), "val": val_loader.state_dict()},
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
            "genotype": space.genotype_to_dict(model.genotype()), "history": history, "seconds": seconds,
        }, ckpt_path)

    log.info(f"search {cfg.name}: space={cfg.space.name} estimator={estimator!r} device={device} "
             f"train={info['n_train']} val={info['n_val']} out={out_dir}")
    monitor = Monitor(out_dir / "tb", epochs=t.epochs, quiet=quiet)
    monitor.start(start_epoch)
    t0 = time.time() - elapsed
    try:
        for epoch in range(start_epoch, t.epochs):
            monitor.start_epoch(epoch, searcher.steps_per_epoch())
            metrics = searcher.train_epoch(epoch, on_step=lambda s, m: monitor.step(
                {**m, **{k: v for k, v in estimator.scalars().items()}}))
            history.append({"epoch": epoch + 1, **metrics})
            scalars = {f"estimator/{k}": v for k, v in estimator.scalars().items()}
            scalars.update({f"lr/{k}": v for k, v in opts.lrs().items()})
            monitor.end_epoch(epoch, metrics, model, scalars, str(model.genotype()))
            if (epoch + 1) % max(t.ckpt_every, 1) == 0 or epoch + 1 == t.epochs:
                checkpoint(epoch + 1, time.time() - t0)
    finally:
        monitor.close()
    seconds = time.time() - t0
    # the final score sees the validation images as they are: no crop/flip, fixed order
    from ..data import BatchLoader
    plain_val = BatchLoader(val_loader.images, val_loader.labels, batch_size=cfg.data.batch_size,
                            shuffle=False, augment=False, mean=info["mean"], std=info["std"], device=device)
    final = searcher.evaluate(plain_val)
    genotype = model.genotype()
    (out_dir / "genotype.yaml").write_text(yaml.safe_dump(space.genotype_to_dict(genotype), sort_keys=False))
    metrics = {"val_acc": final["acc"], "val_loss": final["loss"],
               "search_val_acc": history[-1].get("search_val_acc") if history else None,
               "train_acc": history[-1].get("train_acc") if history else None,
               "search_seconds": round(seconds, 2), "epochs": t.epochs, "genotype": str(genotype),
               "history": history}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info(f"done in {seconds:.1f}s: val_acc={final['acc']:.2f} genotype={genotype}")
    return SearchResult(out_dir, genotype, str(genotype), metrics)


def load_run_config(out_dir: Path) -> Config:
    """The resolved config of an existing run (for --resume)."""
    ckpt_cfg = out_dir / "config.yaml"
    if not ckpt_cfg.is_file():
        raise CheckpointError(f"{out_dir} is not a run folder (no config.yaml); give the folder nas-search wrote")
    return from_dict(Config, yaml.safe_load(ckpt_cfg.read_text()) or {})
