"""Run a search from a :class:`~nas.config.Config`: build data, supernet, estimator and optimizers,
train, derive, and keep everything in a run folder (config, checkpoint, genotype, TensorBoard,
log, metrics). This is the only place that turns config dataclasses into library objects."""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import yaml

from ..bounds import check_config
from ..config import Config, CostConfig, to_dict
from ..cost import cost_report
from ..errors import ConfigError
from ..data.registry import datasets_of, kind_of
from ..estimators.kinds import estimators_from_config
from ..estimators.base import Estimator
from ..plugins import accepted_kwargs, genotype_record, import_user_modules
from ..supernet.bn import recalibrate_bn
from ..supernet.choice import choices
from ..engine.amp import Precision
from ..engine.checkpoint import write_text_atomic
from ..engine.distributed import World, setup as setup_world
from ..engine.meter import loss_causes as engine_loss_causes
from ..engine.monitor import log
from ..engine.prepare import RunHooks, engine_note, prepare_model
from ..engine.rank_folder import claim_shared, start_shared
from ..engine.run_folder import RESUMABLE_CHANGES, RunFolder
from ..engine.runtime import seed_everything
from ..engine.shapes import check_input_fits
from ..engine.signals import deferred
from .loop import ARCH_STEP_LIMIT, Searcher
from .optim import build_optimizers
from .summaries import SearchSummaries


def make_estimator(cfg: Config) -> Estimator:
    """The estimators the ``estimator:`` section names: ``name`` for the space's main kind of
    discrete parameter, ``kinds`` for the others (:mod:`nas.estimators.kinds`)."""
    from nas.spaces import get_space_class
    return estimators_from_config(cfg.estimator, get_space_class(cfg.space.name).main_kind)


def make_hooks(cfg: Config) -> list:
    """The search's regularisers and step hooks (``optim.regularisers``, ``optim.hooks``)."""
    from .registries import search_hooks
    return search_hooks(cfg.optim.regularisers, cfg.optim.hooks)


def make_loaders(cfg: Config, device: torch.device, dataset: Any = None, world: Optional[World] = None):
    """The search's loaders, from the dataset's kind (:mod:`nas.data.registry`); with a
    data-parallel ``world``, this rank's shards of them."""
    d = cfg.data
    return kind_of(d.dataset).search_loaders(d.dataset, d, seed=cfg.seed, device=device, world=world or World(device=device),
                                             given=dataset, channels_last=cfg.trainer.channels_last is True)


def check_space(cfg: Config) -> None:
    """One-line errors for a config its space would misread: data of another kind (see
    :meth:`nas.spaces.base.SearchSpace.check_config`)."""
    from nas.spaces import get_space
    space = get_space(cfg.space.name)
    space.check_config(cfg, kind_of(cfg.data.dataset).name, datasets_of(space.data_kind))


def make_supernet(cfg: Config, estimator: Estimator, num_classes: int, in_channels: int,
                  info: Optional[Dict[str, Any]] = None):
    """``(space, supernet)`` of ``cfg``: the space maps its config section to the supernet's
    keywords (:meth:`~nas.spaces.base.SearchSpace.supernet_kwargs`)."""
    from nas.spaces import get_space
    space = get_space(cfg.space.name)
    gen = torch.Generator().manual_seed(cfg.seed)
    # a user's space may leave out what it does not use of the run's sizes and initialisation
    context = accepted_kwargs(space.build_supernet, "", dict(in_channels=in_channels, init_std=cfg.optim.arch.init_std,
                                                             generator=gen))
    kwargs = space.supernet_kwargs(cfg, info)
    if kwargs.get("gate_estimator") not in (None, "search"):   # hard concrete unless estimator.kinds.gates says
        kwargs["gate_estimator"] = estimator.for_kind("gates")
    elif kwargs.get("gate_estimator") == "search" and "gates" in (getattr(cfg.estimator, "kinds", None) or {}):
        raise ConfigError("space.gate_estimator=search and estimator.kinds.gates both name the gates' estimator: "
                          "keep estimator.kinds.gates and remove space.gate_estimator")
    model = space.build_supernet(estimator, num_classes=num_classes, **context, **kwargs)
    estimator.bind((c.estimator, list(c.parameters())) for c in choices(model).values())
    cost_model = space.cost_model()
    if cost_model is not None:  # the cost of the network the cell will be trained in
        make_budget(cfg, cost_model, model, num_classes, in_channels)
    elif cfg.cost.device:
        raise ConfigError(f"cost.device: the device latency table covers the nb201 space only, not '{space.name}'; "
                          f"give the space a cost model and profile it with nas-profile-latency "
                          f"(docs/devices.md)")
    elif cfg.cost != CostConfig():
        raise ConfigError(f"the {space.name} space has no cost model; the cost: keys apply to spaces with one "
                          f"(nb201, darts): remove the cost section")
    return space, model


def run_op_args(cfg: Config, ops: Any) -> Dict[str, Dict[str, Any]]:
    """The options the run's ops were built with, for its genotype.yaml: ``space.op_args``, plus
    ``space.l0_lambda`` for the candidates that take one (the L0-gated ops)."""
    from ..ops.registry import OPS, op_options
    out = {op: dict(v) for op, v in getattr(cfg.space, "op_args", {}).items()}  # the options a space declares
    for op in ops or ():
        if op in OPS and "l0_lambda" in op_options(op) and "l0_lambda" not in out.get(op, {}) \
                and hasattr(cfg.space, "l0_lambda"):
            out.setdefault(op, {})["l0_lambda"] = cfg.space.l0_lambda
    return out


def make_budget(cfg: Config, cost_model: Any, model: torch.nn.Module, num_classes: int, in_channels: int):
    """Attach the ``cost:`` section's :class:`~nas.cost.Budget` to ``model`` (``model.cost``)."""
    from ..cost import attach_budget
    from ..cost.device import cost_source
    c = cfg.cost  # its ranges are checked with the config (nas.bounds)
    network = cost_model.trained_network(c.C, c.N, c.layers)
    latency, table = cost_source(c, cost_model, network, getattr(cfg.space, "ops", None))
    return attach_budget(model, cost_model, metric=c.metric, target=c.target, weight=c.weight, form=c.form,
                         hard=c.hard, estimate=c.estimate, warmup=c.warmup_epochs, sample_within=c.sample_within,
                         num_classes=c.classes or num_classes, in_channels=in_channels,
                         resolution=c.resolution, network=network, table=table,
                         cell=cost_model.cell(cfg), latency=latency, batch_size=c.batch_size, ops=getattr(cfg.space, "ops", None),
                         op_args=getattr(cfg.space, "op_args", None))


@dataclass
class SearchResult:
    out_dir: Path
    genotype: Any
    genotype_str: str
    metrics: Dict[str, Any]
    warning: Optional[str] = None  # see collapse_warning


def collapse_warning(space: Any, genotype: Any) -> Optional[str]:
    """A one-line warning when the derived cell cannot pass its input to its output."""
    if space.is_connected(genotype):
        return None
    return (f"warning: the derived cell {genotype} has no path from its input to its output (each path "
            f"crosses a 'none' edge), so it outputs zeros: the search collapsed (docs/results/search-quality.md); "
            f"try nas-derive RUN --method perturbation, estimator.noise=adaptive, or another seed")


def stalled_warning(cfg: Config, searcher: Any, epochs: int) -> Optional[str]:
    """A one-line warning when the architecture learned nothing: its gradient was identically
    zero in an epoch (``searcher.stalled``), or α ended where this run started it."""
    now = [p.detach() for g in searcher.opt.arch_params.values() for p in g]
    moved = any(not torch.equal(a, p) for a, p in zip(searcher.alpha0, now))
    if not searcher.stalled and (moved or not searcher.alpha0):
        return None
    what = (f"its gradient was identically zero in epoch(s) {', '.join(map(str, searcher.stalled))} of {epochs}"
            if searcher.stalled else "it never moved from its initial value")
    e, a = cfg.estimator, cfg.optim.arch
    tau = (f"the temperature (estimator.tau={e.tau}, estimator.tau_end={e.tau_end}: a saturated relaxation has "
           f"no gradient) and " if hasattr(e, "tau") else "")  # the estimators that declare one
    return (f"warning: the architecture learned nothing: {what}, so the derived cell is not a search result; "
            f"check {tau}the architecture learning rate (optim.arch.lr={a.lr:g})")


def jump_warning(cfg: Config, searcher: Any, epochs: int) -> Optional[str]:
    """A one-line warning when an architecture step moved α by more than :data:`ARCH_STEP_LIMIT`
    (``searcher.jumps``): α oscillates instead of converging, so the cell is noise."""
    if not getattr(searcher, "jumps", None):
        return None
    worst = max(j for _, j in searcher.jumps)
    return (f"warning: the architecture jumped instead of learning: one step moved α by up to {worst:.3g} "
            f"(more than {ARCH_STEP_LIMIT:g}) in epoch(s) {', '.join(str(e) for e, _ in searcher.jumps)} of {epochs}, "
            f"so the derived cell is not a search result; lower the architecture learning rate "
            f"(optim.arch.lr={cfg.optim.arch.lr:g})")


def aux_none_warning(cfg: Config, genotype: Any) -> Optional[str]:
    """A one-line warning when a search with the auxiliary skip derives ``none`` (only an estimator
    without logits can: the supernet leaves ``none`` out otherwise): in that supernet the edge
    computed ``β·x``, an identity path, not zero. Edges that L0 gates closed are real zeros."""
    ops = getattr(genotype, "ops", ())
    if not cfg.optim.uses_aux_skip or getattr(cfg.space, "gates", "none") != "none" or "none" not in ops:
        return None
    return (f"warning: the derived cell {genotype} has 'none' edges, which beside the auxiliary skip "
            f"(optim.aux_skip) were identity paths in the supernet, not zero edges; '{cfg.estimator.name}' "
            f"has no logits to rank the other ops: read them as skip_connect, or search with optim.aux_skip=0")


def loss_causes(cfg: Config) -> str:
    """The settings that most often make a search's loss explode, with their values."""
    w, a, e = cfg.optim.weights, cfg.optim.arch, cfg.estimator
    t, t_end = getattr(e, "tau", None), getattr(e, "tau_end", None)  # estimators with a temperature
    tau = ([f"a temperature too low (estimator.tau={t}, estimator.tau_end={t_end})"]
           if t is not None or t_end is not None else [])
    return engine_loss_causes(cfg.trainer.grad_clip, [("a weight learning rate", "optim.weights", w.lr, w.lr_min),
                                                      ("an architecture learning rate", "optim.arch", a.lr, None)], *tau)


def run_search(cfg: Config, out_dir: Optional[Path] = None, *, quiet: bool = False,
               resume: bool = False, stop_after: Optional[int] = None, dataset: Any = None,
               resume_from: Optional[Path] = None) -> SearchResult:
    """Search with ``cfg``; with ``resume``, continue the run in ``out_dir`` from its checkpoint.
    ``dataset``: a dataset object to search on instead of ``data.dataset`` (see ``nas.search``).

    ``resume_from``: continue that run folder's checkpoint in a copy at ``out_dir`` (the source is
    left as it was). The run folder is locked for the run's life (:mod:`nas.engine.run_folder`);
    whatever ends the run is written to its log.txt, and a signal leaves an
    :class:`~nas.engine.signals.Interrupted` whose note names the checkpoint to resume.

    ``stop_after``: end this session once that many epochs (in total) are done, with a
    checkpoint, as an interruption would (time-sliced jobs); a later ``resume`` continues it
    exactly. Such a session writes no ``genotype.yaml``/``metrics.json`` and returns the
    current genotype with ``metrics["finished"] = False``.

    Under ``torchrun`` it is one rank of a data-parallel search (:mod:`nas.engine.distributed`):
    rank 0 alone claims, reads and writes the run folder (:mod:`nas.engine.rank_folder`); every
    rank returns the same result.
    """
    check_config(cfg)  # a config built in Python gets the checks a loaded one had
    # user registrations first; the run keeps the paths absolute, so derive/resume find them again
    cfg = replace(cfg, imports=import_user_modules(cfg.imports))
    if not resume and resume_from is None:
        check_space(cfg)  # before claiming: a config its space refuses leaves no folder behind
        make_hooks(cfg)   # unknown names and options out of range, too
    world = setup_world(cfg.device, cfg.trainer.dist_timeout)
    folder = claim_shared(world, out_dir, cfg, kind="search", resumable=RESUMABLE_CHANGES, resume=resume,
                          copy_from=resume_from)
    return folder.run(quiet, lambda: _search(cfg, folder, quiet, stop_after, dataset, world))


def _search(cfg: Config, folder: RunFolder, quiet: bool, stop_after: Optional[int],
            dataset: Any, world: World) -> SearchResult:
    start_shared(world, folder)
    out_dir = folder.path

    device = world.device
    seed_everything(cfg.seed)
    estimator = make_estimator(cfg)
    train_loader, val_loader, info = make_loaders(cfg, device, dataset, world)
    space, model = make_supernet(cfg, estimator, info["num_classes"], info["shape"][0], info)
    if kind_of(cfg.data.dataset).tensors:  # tensor batches (a maze batch is a MazeInput, sized by its generator)
        check_input_fits(model, info["shape"], f"{space.name} supernet" + (f" (space.C={cfg.space.C})" if hasattr(cfg.space, "C") else ""))
    # rank 0's weights and BN buffers everywhere, whatever each rank consumed while loading
    # (trainer.channels_last null: the space's own layout inside, as nb201's, and NCHW batches)
    model = prepare_model(model, world, sync_bn=cfg.trainer.sync_bn, channels_last=cfg.trainer.channels_last is True)
    # a profiled table travels with the run; a device's is in the package (cost.device in config.yaml)
    if cfg.cost.metric == "latency" and model.budget() is not None and model.budget().table_source and folder.writer:
        model.budget().table_source.save(out_dir / "latency.json")  # the run keeps the table it was searched with
    w, a, t = cfg.optim.weights, cfg.optim.arch, cfg.trainer
    opts = build_optimizers(model, estimator, epochs=t.epochs, lr=w.lr, lr_min=w.lr_min, momentum=w.momentum,
                            nesterov=w.nesterov, weight_decay=w.weight_decay, arch_lr=a.lr, arch_betas=a.betas,
                            arch_weight_decay=a.weight_decay, noise_lr=cfg.estimator.noise_lr)
    searcher = Searcher(model, estimator, opts, train_loader, val_loader, epochs=t.epochs,
                        mode=cfg.optim.mode, order=cfg.optim.order, warmup_epochs=cfg.optim.warmup_epochs,
                        grad_clip=t.grad_clip, max_steps_per_epoch=t.max_steps_per_epoch,
                        beta_decay=a.beta_decay, aux_skip=cfg.optim.aux_skip,
                        aux_skip_end=cfg.optim.aux_skip_end, step_hooks=make_hooks(cfg),
                        loss_causes=loss_causes(cfg),
                        hooks=RunHooks(world, Precision(t.amp, device)))
    world.sync_rng()  # the same architecture samples on every rank

    loaders = {"train": train_loader, "val": val_loader}
    start_epoch, history, elapsed = folder.restore(searcher.load_state_dict, loaders, device, opts.weights_sched)
    if folder.resumed:
        folder.log_resumed(start_epoch, world.size)
    # what derive needs to rebuild the supernet without the data
    data = {"num_classes": info["num_classes"], "in_channels": info["shape"][0],
            **{k: list(info[k]) if info.get(k) is not None else None for k in ("features", "classes")}}

    def checkpoint(epoch_done: int, seconds: float) -> None:
        if not folder.writer:  # every rank holds the same state; rank 0 writes it
            folder.save(epoch_done)
            return
        folder.save(epoch_done, seconds, history, {**searcher.state_dict(), "data": data, "world_size": world.size,
                                                   "genotype": space.genotype_to_dict(model.genotype())},
                    loaders, device)

    log.info(f"search {cfg.name}: space={cfg.space.name} estimator={estimator!r} device={device} "
             f"train={info['n_train']} val={info['n_val']} out={out_dir}" + engine_note(world, t.sync_bn, t.amp))
    monitor = folder.monitor(quiet, start_epoch)
    summaries = SearchSummaries(monitor, model, space)
    end_epoch = t.epochs if stop_after is None else max(start_epoch, min(t.epochs, stop_after))
    monitor.start(start_epoch)
    t0 = time.time() - elapsed
    arch = [p for g in opts.arch_params.values() for p in g]
    searcher.alpha0, searcher.stalled, searcher.jumps = [p.detach().clone() for p in arch], [], []
    with folder.closing(monitor):  # a data-parallel failure says what the run leaves
        for epoch in range(start_epoch, end_epoch):
            folder.epoch = epoch + 1
            monitor.start_epoch(epoch, searcher.steps_per_epoch())
            metrics = searcher.train_epoch(epoch, on_step=lambda s, m: monitor.step(
                lambda: {**m(), **estimator.scalars(), **searcher.scalars()}))
            history.append({"epoch": epoch + 1, **metrics})
            if arch and searcher.arch_steps and float(searcher.arch_grad_abs) == 0:
                searcher.stalled.append(epoch + 1)
                log.warning(f"warning: the architecture's gradient was identically zero in epoch {epoch + 1}")
            jump = float(searcher.arch_step_max)
            if jump > ARCH_STEP_LIMIT:
                searcher.jumps.append((epoch + 1, jump))
                log.warning(f"warning: one architecture step moved α by {jump:.3g} in epoch {epoch + 1}")
            world.check_same([p for g in opts.arch_params.values() for p in g],
                             f"the architecture after epoch {epoch + 1}")
            scalars = {f"estimator/{k}": v for k, v in estimator.scalars().items()}
            scalars.update({f"hooks/{k}": v for k, v in searcher.scalars().items()})
            scalars.update({f"lr/{k}": v for k, v in opts.lrs().items()})
            genotype = model.genotype()
            monitor.end_epoch(epoch, metrics, scalars, note=f"genotype={genotype}")
            summaries.write(epoch + 1, genotype)
            if folder.checkpoint_due(epoch + 1, end_epoch):
                checkpoint(epoch + 1, time.time() - t0)
        folder.epoch = None
        if end_epoch < t.epochs:
            log.info(f"stopped after epoch {end_epoch} of {t.epochs}; continue with --resume {out_dir}")
            genotype = model.genotype()
            return SearchResult(out_dir, genotype, str(genotype),
                                {"finished": False, "epochs_done": end_epoch, "history": history})
        seconds = time.time() - t0
        final = _finish(cfg, folder, space, model, searcher, train_loader, val_loader, info, device,
                        history, seconds, world)
        monitor.hparams(to_dict(cfg), {k: v for k, v in final.metrics.items() if k != "epochs"}, t.epochs)
        failed = monitor.close()
        if failed is not None:
            raise failed
    return final


def _plain(loader: Any, cfg: Config, info: Dict[str, Any], device: torch.device,
           shard: Tuple[int, int] = (0, 1)) -> Any:
    """The loader's images as they are: no crop/flip, fixed order (``shard``: this rank's slices)."""
    return loader.eval_loader(shard)


def _finish(cfg: Config, folder: RunFolder, space: Any, model: torch.nn.Module, searcher: Searcher,
            train_loader: Any, val_loader: Any, info: Dict[str, Any], device: torch.device,
            history: list, seconds: float, world: Optional[World] = None) -> SearchResult:
    """BN recalibration, final validation and derive, alike on every rank of a data-parallel
    search (rank 0 writes the files): synchronised BN recalibrates on each rank's slices of the
    batches (the statistics of the whole batches), plain BN on the whole batches; the evaluation
    (running statistics, no communication) runs on the whole validation set everywhere."""
    t, out_dir = cfg.trainer, folder.path
    world = world or World(device=device)
    # trainer.eval_batches=0: no final score, so no recalibration for it (neither touches α or the cell)
    scored = t.eval_batches != 0
    if t.bn_batches and scored:
        # after the last checkpoint: the checkpoint keeps the statistics the search left
        shard = world.shard if t.sync_bn else (0, 1)
        recalibrate_bn(model, itertools.islice(iter(_plain(train_loader, cfg, info, device, shard)), t.bn_batches))
    final = (searcher.evaluate(_plain(val_loader, cfg, info, device), t.eval_batches) if scored
             else {"acc": None, "loss": None})
    genotype = model.genotype()
    budget = model.budget()
    if budget is not None:
        budget.require_within(genotype, f"derive within another budget with nas-derive {out_dir} --cost target=T "
                                        f"(the checkpoint is kept), or set cost.hard=false")
    if folder.writer:
        write_genotype(out_dir / "genotype.yaml", cfg, space, model, genotype)
    cost = {} if budget is None else {f"cost_{budget.table.metric}": round(budget.exact(genotype), 6)}
    if budget is not None:
        log.info(cost_report(budget, genotype))
    metrics = {"val_acc": final["acc"], "val_loss": final["loss"], **cost,
               "search_val_acc": history[-1].get("search_val_acc") if history else None,
               "train_acc": history[-1].get("train_acc") if history else None,
               "search_seconds": round(seconds, 2), "epochs": t.epochs, "genotype": str(genotype),
               "history": history}
    extra = model.extra_metrics(info)  # held-out scores the model computes itself (the maze's test mazes)
    metrics.update(extra)
    with deferred():  # a signal after "done" waits for metrics.json, so the run ends as finished
        score = "off (trainer.eval_batches=0)" if final["acc"] is None else f"{final['acc']:.2f}"
        log.info(f"done in {seconds:.1f}s: val_acc={score} genotype={genotype}"
                 + "".join(f" {k}={v:.4g}" if isinstance(v, float) else f" {k}={v}" for k, v in extra.items()))
        warning = (stalled_warning(cfg, searcher, t.epochs) or jump_warning(cfg, searcher, t.epochs)
                   or collapse_warning(space, genotype)
                   or aux_none_warning(cfg, genotype))
        if warning:
            log.warning(warning)
            metrics["warning"] = warning
        folder.write_text("metrics.json", json.dumps(metrics, indent=2))
    return SearchResult(out_dir, genotype, str(genotype), metrics, warning)


def write_genotype(path: Path, cfg: Config, space: Any, model: torch.nn.Module, genotype: Any,
                   derived: Optional[Dict[str, Any]] = None) -> None:
    """``genotype.yaml`` with the run's imports and op options (:func:`nas.plugins.genotype_record`),
    and beside it the files the model keeps with its genotype (``artifacts(genotype)``: the dnf
    space's ``rules.txt``, the ``learned_ops.txt`` of DNF and L0-gated candidates). ``derived``:
    nas-derive's record of where and how (its ``derived:`` key; readers of the genotype skip it)."""
    record = genotype_record(space, genotype, cfg.imports, run_op_args(cfg, getattr(cfg.space, "ops", None) or space.ops))
    if derived:
        record["derived"] = derived
    write_text_atomic(path, yaml.safe_dump(record, sort_keys=False))
    for fname, text in model.artifacts(genotype).items():
        write_text_atomic(path.parent / fname, text)
