"""Run a search from a :class:`~nas.config.Config`: build data, supernet, estimator and optimizers,
train, derive, and keep everything in a run folder (config, checkpoint, genotype, TensorBoard,
log, metrics). This is the only place that turns config dataclasses into library objects."""
from __future__ import annotations

import itertools
import json
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
from ..supernet.bn import recalibrate_bn
from ..engine.checkpoint import load_checkpoint, remove_stale_temps, save_atomic
from ..engine.monitor import Monitor, log, setup_logging
from ..engine.runtime import replan_epochs, resolve_device, rng_state, seed_everything, set_rng_state
from .loop import Searcher
from .optim import build_optimizers
from .summaries import SearchSummaries

CKPT_VERSION = 1


def make_estimator(cfg: Config) -> Estimator:
    e = cfg.estimator
    return build_estimator(e.name, noise=e.noise, sigma0=e.sigma0, sigma_max=e.sigma_max,
                           tau=e.tau, tau_end=e.tau_end, schedule=e.schedule, per=e.per,
                           gamma=e.gamma, threshold=e.threshold, single_path=e.single_path,
                           gamma_end=e.gamma_end, threshold_end=e.threshold_end)


def make_loaders(cfg: Config, device: torch.device):
    from ..data import build_search_loaders
    from ..data.tabular import TABULAR, TabularOptions, build_tabular_search_loaders
    d = cfg.data
    if d.dataset in TABULAR:
        opts = TabularOptions(features=d.dnf.features, clauses=d.dnf.clauses, width=d.dnf.width,
                              noise=d.dnf.noise, samples=d.dnf.samples, quantiles=d.quantiles)
        return build_tabular_search_loaders(d.dataset, options=opts, train_portion=d.train_portion,
                                            batch_size=d.batch_size, seed=cfg.seed, device=device)
    return build_search_loaders(d.dataset, root=d.root, download=d.download, resize=d.resize,
                                subset=d.subset, train_portion=d.train_portion, batch_size=d.batch_size,
                                workers=d.workers, seed=cfg.seed, device=device, augment=d.augment)


def make_supernet(cfg: Config, estimator: Estimator, num_classes: int, in_channels: int,
                  info: Optional[Dict[str, Any]] = None):
    from search_spaces import get_space
    space = get_space(cfg.space.name)
    s = cfg.space
    kwargs: Dict[str, Any] = dict(C=s.C, ops=s.ops, affine=s.affine)
    if space.name == "dnf":  # a rule learner over tabular features: none of the cell keys apply
        kwargs = dict(rules=s.rules, lambda_g=s.lambda_g, feature_names=(info or {}).get("features"),
                      class_names=(info or {}).get("classes"))
    elif space.name == "nb201":
        kwargs.update(N=s.N, derive_exclude=cfg.estimator.derive_exclude,
                      with_aux_skip=cfg.optim.uses_aux_skip, derive_max_skip=cfg.estimator.derive_max_skip,
                      fused=s.fused, channels_last=s.channels_last, partial_channels=s.partial_channels)
    else:
        kwargs.update(layers=s.layers, steps=s.steps, multiplier=s.multiplier, stem_multiplier=s.stem_multiplier,
                      derive_max_skip=cfg.estimator.derive_max_skip, with_aux_skip=cfg.optim.uses_aux_skip,
                      partial_channels=s.partial_channels)
    if cfg.estimator.derive_exclude and space.name != "nb201":
        raise ConfigError(f"estimator.derive_exclude applies to the nb201 space; the {space.name} space has "
                          f"its own derive rule (darts already leaves 'none' out): remove the key")
    if cfg.estimator.derive_max_skip is not None and space.name not in ("nb201", "darts"):
        raise ConfigError(f"estimator.derive_max_skip applies to the nb201 and darts spaces; the {space.name} "
                          f"space has no skip connections to limit: remove the key")
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
    warning: Optional[str] = None  # see collapse_warning


def collapse_warning(genotype: Any) -> Optional[str]:
    """A one-line warning when the derived cell cannot pass its input to its output."""
    if getattr(genotype, "is_connected", lambda: True)():
        return None
    return (f"warning: the derived cell {genotype} has no path from its input to its output (each path "
            f"crosses a 'none' edge), so it outputs zeros: the search collapsed (docs/RESULTS.md); "
            f"try tools/derive.py RUN --method perturbation, estimator.noise=adaptive, or another seed")


def aux_none_warning(cfg: Config, genotype: Any) -> Optional[str]:
    """A one-line warning when a search with the auxiliary skip derives ``none`` (only an estimator
    without logits can: the supernet leaves ``none`` out otherwise): in that supernet the edge
    computed ``β·x``, an identity path, not zero. Edges that L0 gates closed are real zeros."""
    ops = getattr(genotype, "ops", ())
    if not cfg.optim.uses_aux_skip or cfg.space.gates != "none" or "none" not in ops:
        return None
    return (f"warning: the derived cell {genotype} has 'none' edges, which beside the auxiliary skip "
            f"(optim.aux_skip) were identity paths in the supernet, not zero edges; '{cfg.estimator.name}' "
            f"has no logits to rank the other ops: read them as skip_connect, or search with optim.aux_skip=0")


def default_out_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


# Keys that may differ between a checkpoint and the config that resumes it: where the data lives,
# how it is decoded, where it runs, how often to checkpoint, and how many epochs in total
# (see :func:`replan_epochs`). Anything else would continue a different search from this state.
RESUMABLE_CHANGES = ("name", "device", "data.root", "data.download", "data.workers",
                     "trainer.epochs", "trainer.ckpt_every")


def check_resume_config(cfg: Config, ckpt: Dict[str, Any], ckpt_path: Path) -> None:
    """A one-line CheckpointError when ``cfg`` would not continue the search in ``ckpt``."""
    from ..engine.monitor import flatten
    try:
        saved = flatten(to_dict(from_dict(Config, ckpt["config"])))
    except (NasError, TypeError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {ckpt_path} holds a config this nas cannot read ({e}); "
                              f"start a new run") from None
    now = flatten(to_dict(cfg))
    for key in sorted(set(saved) | set(now)):
        if key not in RESUMABLE_CHANGES and saved.get(key) != now.get(key):
            raise CheckpointError(f"checkpoint {ckpt_path} was written with {key}={saved.get(key)!r}, "
                                  f"the resumed config has {key}={now.get(key)!r}; resume with the run's "
                                  f"own config (only {', '.join(RESUMABLE_CHANGES)} may change) or start a new run")
    if cfg.trainer.epochs < ckpt["epoch"]:
        raise CheckpointError(f"checkpoint {ckpt_path} is at epoch {ckpt['epoch']}; trainer.epochs="
                              f"{cfg.trainer.epochs} would end before it")


def run_search(cfg: Config, out_dir: Optional[Path] = None, *, quiet: bool = False,
               resume: bool = False, stop_after: Optional[int] = None) -> SearchResult:
    """Search with ``cfg``; with ``resume``, continue the run in ``out_dir`` from its checkpoint.

    ``stop_after``: end this session once that many epochs (in total) are done, with a
    checkpoint, as an interruption would (time-sliced jobs); a later ``resume`` continues it
    exactly. Such a session writes no ``genotype.yaml``/``metrics.json`` and returns the
    current genotype with ``metrics["finished"] = False``.
    """
    if cfg.trainer.bn_batches < 0:
        raise ConfigError(f"trainer.bn_batches must be >= 0 (0 turns the BN recalibration off), "
                          f"got {cfg.trainer.bn_batches}")
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(cfg.name)
    ckpt_path = out_dir / "checkpoint.pt"
    ckpt = None
    if resume:
        remove_stale_temps(ckpt_path)  # a kill during save_atomic; the checkpoint itself is whole
        ckpt = load_checkpoint(ckpt_path)
        if ckpt.get("version") != CKPT_VERSION:
            raise CheckpointError(f"checkpoint {ckpt_path} has version {ckpt.get('version')}, this nas "
                                  f"reads version {CKPT_VERSION}; start a new run")
        check_resume_config(cfg, ckpt, ckpt_path)
    elif ckpt_path.exists():
        raise NasError(f"{out_dir} already holds a run; continue it with --resume {out_dir} or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(out_dir / "log.txt", quiet)
    dump_config(cfg, out_dir / "config.yaml")

    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    estimator = make_estimator(cfg)
    train_loader, val_loader, info = make_loaders(cfg, device)
    space, model = make_supernet(cfg, estimator, info["num_classes"], info["shape"][0], info)
    model.to(device)
    w, a, t = cfg.optim.weights, cfg.optim.arch, cfg.trainer
    opts = build_optimizers(model, estimator, epochs=t.epochs, lr=w.lr, lr_min=w.lr_min, momentum=w.momentum,
                            nesterov=w.nesterov, weight_decay=w.weight_decay, arch_lr=a.lr, arch_betas=a.betas,
                            arch_weight_decay=a.weight_decay, noise_lr=cfg.estimator.noise_lr)
    searcher = Searcher(model, estimator, opts, train_loader, val_loader, epochs=t.epochs,
                        mode=cfg.optim.mode, order=cfg.optim.order, warmup_epochs=cfg.optim.warmup_epochs,
                        grad_clip=t.grad_clip, max_steps_per_epoch=t.max_steps_per_epoch,
                        beta_decay=a.beta_decay, aux_skip=cfg.optim.aux_skip,
                        aux_skip_end=cfg.optim.aux_skip_end)

    start_epoch, history, elapsed = 0, [], 0.0
    if ckpt is not None:
        try:
            searcher.load_state_dict(ckpt)
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"checkpoint {ckpt_path} does not match its config ({str(e).splitlines()[0][:100]}); "
                                  f"start a new run") from None
        try:
            train_loader.load_state_dict(ckpt["loaders"]["train"])
            val_loader.load_state_dict(ckpt["loaders"]["val"])
            set_rng_state(ckpt["rng"], device)
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"checkpoint {ckpt_path} has no usable data-order/RNG state "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}); "
                                  f"start a new run") from None
        replan_epochs(opts.weights_sched, t.epochs)
        start_epoch, history, elapsed = ckpt["epoch"], ckpt.get("history", []), ckpt.get("seconds", 0.0)
        log.info(f"resumed from {ckpt_path} after epoch {start_epoch}")

    def checkpoint(epoch_done: int, seconds: float) -> None:
        save_atomic({
            "version": CKPT_VERSION, "epoch": epoch_done, "config": to_dict(cfg),
            "model": model.state_dict(), "optim": opts.state_dict(), "estimator": estimator.state_dict(),
            "loaders": {"train": train_loader.state_dict(), "val": val_loader.state_dict()},
            "rng": rng_state(device),
            "genotype": space.genotype_to_dict(model.genotype()), "history": history, "seconds": seconds,
        }, ckpt_path)

    log.info(f"search {cfg.name}: space={cfg.space.name} estimator={estimator!r} device={device} "
             f"train={info['n_train']} val={info['n_val']} out={out_dir}")
    # a resumed run rewrites the TensorBoard steps after its checkpoint: drop the interrupted ones
    monitor = Monitor(out_dir / "tb", epochs=t.epochs, quiet=quiet,
                      purge_step=start_epoch + 1 if ckpt is not None else None)
    summaries = SearchSummaries(monitor, model)
    end_epoch = t.epochs if stop_after is None else max(start_epoch, min(t.epochs, stop_after))
    monitor.start(start_epoch)
    t0 = time.time() - elapsed
    try:
        for epoch in range(start_epoch, end_epoch):
            monitor.start_epoch(epoch, searcher.steps_per_epoch())
            metrics = searcher.train_epoch(epoch, on_step=lambda s, m: monitor.step(
                lambda: {**m(), **estimator.scalars()}))
            history.append({"epoch": epoch + 1, **metrics})
            scalars = {f"estimator/{k}": v for k, v in estimator.scalars().items()}
            scalars.update({f"lr/{k}": v for k, v in opts.lrs().items()})
            genotype = model.genotype()
            monitor.end_epoch(epoch, metrics, scalars, note=f"genotype={genotype}")
            summaries.write(epoch + 1, genotype)
            if (epoch + 1) % max(t.ckpt_every, 1) == 0 or epoch + 1 in (t.epochs, end_epoch):
                checkpoint(epoch + 1, time.time() - t0)
        if end_epoch < t.epochs:
            log.info(f"stopped after epoch {end_epoch} of {t.epochs}; continue with --resume {out_dir}")
            genotype = model.genotype()
            return SearchResult(out_dir, genotype, str(genotype),
                                {"finished": False, "epochs_done": end_epoch, "history": history})
        seconds = time.time() - t0
        final = _finish(cfg, out_dir, space, model, searcher, train_loader, val_loader, info, device,
                        history, seconds)
        monitor.hparams(to_dict(cfg), {k: v for k, v in final.metrics.items() if k != "epochs"}, t.epochs)
    finally:
        monitor.close()
    return final


def _plain(loader: Any, cfg: Config, info: Dict[str, Any], device: torch.device) -> Any:
    """The loader's images as they are: no crop/flip, fixed order."""
    from ..data import BatchLoader
    if hasattr(loader, "eval_loader"):  # tabular loaders: no augmentation to switch off
        return loader.eval_loader()
    return BatchLoader(loader.images, loader.labels, batch_size=cfg.data.batch_size,
                       shuffle=False, augment=False, mean=info["mean"], std=info["std"], device=device)


def _finish(cfg: Config, out_dir: Path, space: Any, model: torch.nn.Module, searcher: Searcher,
            train_loader: Any, val_loader: Any, info: Dict[str, Any], device: torch.device,
            history: list, seconds: float) -> SearchResult:
    t = cfg.trainer
    if t.bn_batches:
        # after the last checkpoint: the checkpoint keeps the statistics the search left
        recalibrate_bn(model, itertools.islice(iter(_plain(train_loader, cfg, info, device)), t.bn_batches))
    final = searcher.evaluate(_plain(val_loader, cfg, info, device))
    genotype = model.genotype()
    (out_dir / "genotype.yaml").write_text(yaml.safe_dump(space.genotype_to_dict(genotype), sort_keys=False))
    # files a model keeps next to its genotype (the dnf space: rules.txt)
    for fname, text in (model.artifacts() if hasattr(model, "artifacts") else {}).items():
        (out_dir / fname).write_text(text)
    metrics = {"val_acc": final["acc"], "val_loss": final["loss"],
               "search_val_acc": history[-1].get("search_val_acc") if history else None,
               "train_acc": history[-1].get("train_acc") if history else None,
               "search_seconds": round(seconds, 2), "epochs": t.epochs, "genotype": str(genotype),
               "history": history}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info(f"done in {seconds:.1f}s: val_acc={final['acc']:.2f} genotype={genotype}")
    warning = collapse_warning(genotype) or aux_none_warning(cfg, genotype)
    if warning:
        log.warning(warning)
    return SearchResult(out_dir, genotype, str(genotype), metrics, warning)


def load_run_config(out_dir: Path) -> Config:
    """The resolved config of an existing run (for --resume)."""
    ckpt_cfg = out_dir / "config.yaml"
    if not ckpt_cfg.is_file():
        raise CheckpointError(f"{out_dir} is not a run folder (no config.yaml); give the folder nas-search wrote")
    return from_dict(Config, yaml.safe_load(ckpt_cfg.read_text()) or {})
