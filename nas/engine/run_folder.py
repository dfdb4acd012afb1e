"""The folder of one run, a search or a retraining, and its checkpoint: what ``nas-search`` and
``nas-retrain`` do the same way.

A run folder holds ``config.yaml`` (the resolved config), ``log.txt``, ``tb/`` and
``checkpoint.pt``, written atomically after every ``trainer.ckpt_every`` epochs with everything an
exact resume needs: the run's state (model, optimizers, ...), the loaders' data order and every RNG
state. A resumed run must use the run's own config; only the keys its command lists as resumable
may change (where the data lives, the device, the number of epochs, ...).
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
import yaml

from ..config import dump_config, from_dict, to_dict
from ..errors import CheckpointError, NasError
from .checkpoint import load_checkpoint, remove_stale_temps, save_atomic
from .monitor import flatten, setup_logging
from .runtime import replan_epochs, rng_state, set_rng_state

CKPT_VERSION = 1
# What a checkpoint without a "kind" is: search checkpoints before kinds were written.
DEFAULT_KIND = "search"


def default_out_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def load_run_config(out_dir: Path, cls: type) -> Any:
    """The resolved config of an existing run folder, as a ``cls`` (for ``--resume``)."""
    path = Path(out_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{out_dir} is not a run folder (no config.yaml); give the folder the run wrote")
    return from_dict(cls, yaml.safe_load(path.read_text()) or {})


def check_resume_config(cfg: Any, ckpt: Dict[str, Any], ckpt_path: Path, resumable: Sequence[str]) -> None:
    """A one-line CheckpointError when ``cfg`` would not continue the run in ``ckpt``: a key
    outside ``resumable`` differs from the checkpoint's config, or the run would end before
    the checkpoint's epoch."""
    try:
        saved = flatten(to_dict(from_dict(type(cfg), ckpt["config"])))
    except (NasError, TypeError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {ckpt_path} holds a config this nas cannot read ({e}); "
                              f"start a new run") from None
    now = flatten(to_dict(cfg))
    for key in sorted(set(saved) | set(now)):
        if key not in resumable and saved.get(key) != now.get(key):
            raise CheckpointError(f"checkpoint {ckpt_path} was written with {key}={saved.get(key)!r}, "
                                  f"the resumed config has {key}={now.get(key)!r}; resume with the run's "
                                  f"own config (only {', '.join(resumable)} may change) or start a new run")
    if cfg.trainer.epochs < ckpt["epoch"]:
        raise CheckpointError(f"checkpoint {ckpt_path} is at epoch {ckpt['epoch']}; trainer.epochs="
                              f"{cfg.trainer.epochs} would end before it")


def _first_line(e: BaseException, width: int = 100) -> str:
    return str(e).splitlines()[0][:width] if str(e) else type(e).__name__


class RunFolder:
    """``out_dir`` (default ``runs/<name>-<timestamp>``) for a run of ``cfg``.

    With ``resume`` the folder's checkpoint is read and checked now (its ``kind`` and version,
    the keys listed in ``required``, the config against ``resumable``), before anything is built;
    without, a folder that already holds a checkpoint is refused, so no run is overwritten.
    """

    def __init__(self, out_dir: Optional[Path], cfg: Any, *, kind: str, resumable: Sequence[str],
                 resume: bool = False, required: Tuple[str, ...] = ("model", "epoch", "config")):
        self.path = Path(out_dir) if out_dir is not None else default_out_dir(cfg.name)
        self.ckpt_path = self.path / "checkpoint.pt"
        self.cfg, self.kind = cfg, kind
        self.ckpt: Optional[Dict[str, Any]] = None
        if resume:
            remove_stale_temps(self.ckpt_path)  # a kill during save_atomic; the checkpoint itself is whole
            ckpt = load_checkpoint(self.ckpt_path, required=required)
            found = (ckpt.get("kind", DEFAULT_KIND), ckpt.get("version"))
            if found != (kind, CKPT_VERSION):
                raise CheckpointError(f"checkpoint {self.ckpt_path} is a {found[0]} checkpoint of version "
                                      f"{found[1]}; this command resumes {kind} checkpoints of version "
                                      f"{CKPT_VERSION}: start a new run")
            check_resume_config(cfg, ckpt, self.ckpt_path, resumable)
            self.ckpt = ckpt
        elif self.ckpt_path.exists():
            raise NasError(f"{self.path} already holds a run; continue it with --resume {self.path} "
                           f"or choose another --out")

    @property
    def resumed(self) -> bool:
        return self.ckpt is not None

    def open(self, quiet: bool) -> None:
        """Create the folder, send the log to ``log.txt`` (appended on resume), write the config."""
        self.path.mkdir(parents=True, exist_ok=True)
        setup_logging(self.path / "log.txt", quiet)
        dump_config(self.cfg, self.path / "config.yaml")

    def restore(self, load_state: Callable[[Dict[str, Any]], None], loaders: Dict[str, Any],
                device: torch.device, sched: Any) -> Tuple[int, list, float]:
        """Put the checkpoint's state back: ``load_state(ckpt)`` (model, optimizers, ...), the
        loaders' data order, the RNG states; re-plan ``sched`` for the config's epochs. Returns
        ``(epochs done, history, seconds)``; ``(0, [], 0.0)`` for a new run."""
        if self.ckpt is None:
            return 0, [], 0.0
        ckpt, path = self.ckpt, self.ckpt_path
        try:
            load_state(ckpt)
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"checkpoint {path} does not match its config ({_first_line(e)}); "
                                  f"start a new run") from None
        try:
            for name, loader in loaders.items():
                loader.load_state_dict(ckpt["loaders"][name])
            set_rng_state(ckpt["rng"], device)
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"checkpoint {path} has no usable data-order/RNG state "
                                  f"({type(e).__name__}: {_first_line(e, 80)}); start a new run") from None
        replan_epochs(sched, self.cfg.trainer.epochs)
        return ckpt["epoch"], ckpt.get("history", []), ckpt.get("seconds", 0.0)

    def save(self, epoch_done: int, seconds: float, history: list, state: Dict[str, Any],
             loaders: Dict[str, Any], device: torch.device) -> None:
        """Write the checkpoint after ``epoch_done`` epochs: ``state`` (model, optimizers, genotype,
        ...) plus the config, the loaders' data order and the RNG states."""
        save_atomic({"version": CKPT_VERSION, "kind": self.kind, "epoch": epoch_done,
                     "config": to_dict(self.cfg), **state,
                     "loaders": {name: loader.state_dict() for name, loader in loaders.items()},
                     "rng": rng_state(device), "history": history, "seconds": seconds}, self.ckpt_path)

    def checkpoint_due(self, epoch_done: int, end_epoch: Optional[int] = None) -> bool:
        """After every ``trainer.ckpt_every`` epochs, at the last epoch and where a session ends."""
        t = self.cfg.trainer
        return epoch_done % max(t.ckpt_every, 1) == 0 or epoch_done in (t.epochs, end_epoch)
