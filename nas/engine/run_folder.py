"""The folder of one run, a search or a retraining, and its checkpoint: what ``nas-search`` and
``nas-retrain`` do the same way with ``--out`` and ``--resume``, so that no run ever overwrites
another's files or a user's own, and a resumed run continues exactly.

A run folder holds ``config.yaml`` (the resolved config), ``log.txt``, ``tb/`` and
``checkpoint.pt``, written atomically after every ``trainer.ckpt_every`` epochs with everything an
exact resume needs: the run's state (model, optimizers, ...), the loaders' data order and every RNG
state, under a ``kind`` and a version.

* A new run takes a folder that does not exist or is empty, or one that a run of the same kind
  left before its first checkpoint (its ``config.yaml`` carries this module's header and there
  is no checkpoint or result: nothing in it can be resumed). Any other folder is refused.
* An advisory lock (``fcntl.flock`` on ``.lock``) is held for the run's life: a second writer,
  new or resuming, gets a one-line error instead of mixing its files with the first's.
* ``--resume A`` continues A in place; ``--resume A --out B`` continues a copy of A in B and
  leaves A as it was. The checkpoint must be of the command's kind and version, and the resumed
  config must be the run's own: only the keys its command lists as resumable may change (where
  the data lives, the device, the number of epochs, ...).
* ``config.yaml`` is written atomically with a header naming the command; when it is damaged,
  ``--resume`` takes the config stored in the checkpoint.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

import torch
import yaml

from ..config import from_dict, parse_yaml, to_dict
from ..errors import CheckpointError, NasError, StorageError, TrainingError, storage_error
from .checkpoint import load_checkpoint, save_atomic, write_text_atomic
from .distributed import DistributedError
from .monitor import Monitor, flatten, log, setup_logging
from .runtime import replan_epochs, rng_state, set_rng_state
from .signals import as_interrupted

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

CKPT_VERSION = 1
# What a checkpoint without a "kind" is: search checkpoints before kinds were written.
DEFAULT_KIND = "search"
LOCK = ".lock"
CHECKPOINT = "checkpoint.pt"
PROGS = {"search": "nas-search", "retrain": "nas-retrain", "random": "nas-random-search"}
HEADER = ("# {prog} run config: the resolved config of this run; --resume reads it (or, when it is "
          "damaged, the checkpoint's copy)\n")
_HEADER_RE = re.compile(r"# (nas-search|nas-retrain|nas-random-search) run config")
# files a run writes before its first checkpoint; results (metrics.json) end that state
START_FILES = {"search": {"config.yaml", "log.txt", "tb", "latency.json"},
               "retrain": {"config.yaml", "log.txt", "tb", "genotype.yaml"},
               "random": {"config.yaml", "log.txt"}}
_TEMP_RE = re.compile(r".+\.[A-Za-z0-9_]+\.tmp")  # <file>.<random>.tmp: write_atomic's temporaries
REQUIRED = ("model", "epoch", "config")  # the keys every checkpoint has
# Keys that may differ between a checkpoint and the config that resumes it: where the data lives,
# how it is decoded, where it runs, how often to checkpoint, and how many epochs in total
# (see :func:`~nas.engine.runtime.replan_epochs`). Anything else would continue a different run
# from this state. A kind of run adds its own (a retraining: how often it evaluates, and its
# genotype, which the checkpoint holds).
RESUMABLE_CHANGES = ("name", "device", "data.root", "data.download", "data.workers", "data.cache",
                     "trainer.epochs", "trainer.ckpt_every", "trainer.dist_timeout", "trainer.channels_last")


def default_out_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _entries(path: Path) -> List[str]:
    try:
        return sorted(e for e in os.listdir(path) if e != LOCK)
    except OSError as e:
        raise storage_error(e, path, "read the folder") from None


def folder_kind(path: Path) -> Optional[str]:
    """``"search"``/``"retrain"`` for a folder whose config.yaml a nas command wrote, else None.
    Folders written before the header existed are recognised by their checkpoint's config."""
    cfg = path / "config.yaml"
    try:
        with open(cfg, "rb") as f:
            first = f.readline(200).decode("utf-8", "replace")
    except OSError:
        first = ""
    m = _HEADER_RE.match(first)
    if m:
        return {v: k for k, v in PROGS.items()}[m.group(1)]
    if (path / CHECKPOINT).is_file() and cfg.is_file():
        try:
            data = parse_yaml(cfg.read_text(encoding="utf-8"), cfg)
        except (NasError, OSError, UnicodeDecodeError):
            return None
        return "retrain" if isinstance(data, dict) and "model" in data else "search"
    return None


def _own(names: List[str]) -> set:
    """The names without the temporaries of writes a kill cut short (removed once claimed)."""
    return {n for n in names if not _TEMP_RE.fullmatch(n)}


def _listing(names: List[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _first_line(e: BaseException, width: int = 100) -> str:
    return str(e).splitlines()[0][:width] if str(e) else type(e).__name__


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


T = TypeVar("T")


class RunFolder:
    """The folder of one run of ``cfg``, locked from :meth:`claim` until :meth:`release`.

    :meth:`run` runs the command's body with ``log.txt`` open; the body calls :meth:`start`
    first (which, on resume, reads and checks the checkpoint before anything is built), then
    :meth:`restore`, :meth:`save` after the epochs :meth:`checkpoint_due` names, and
    :meth:`write_text` for its results.
    """

    writer = True  # this process writes the folder (data parallel: rank 0 only, nas.engine.rank_folder)

    def __init__(self, path: Path, kind: str, cfg: Any = None, *, resumable: Sequence[str] = (),
                 required: Tuple[str, ...] = REQUIRED):
        self.path = Path(path)
        self.kind = kind
        self.prog = PROGS[kind]
        self.cfg, self.resumable, self.required = cfg, tuple(resumable), required
        self.ckpt_path = self.path / CHECKPOINT
        self.resuming = False     # claimed to continue the run in it (in place or in a copy)
        self.ckpt: Optional[Dict[str, Any]] = None  # the checkpoint resumed from, once started
        self.reused = False       # a new run took a folder a run left before its first checkpoint
        self.copied_from: Optional[Path] = None
        self._fd: Optional[int] = None
        # progress, for the note an interruption or a failure leaves
        self.epoch: Optional[int] = None        # the epoch being trained, from 1 (set by the run)
        self.epochs: Optional[int] = None
        self.saved_epoch: Optional[int] = None  # epochs done in the last checkpoint written
        self.finished = False  # metrics.json is written: the run's results are complete

    # ------------------------------------------------------------------ claiming
    @classmethod
    def claim(cls, path: Optional[os.PathLike], cfg: Any, *, kind: str, resumable: Sequence[str],
              resume: bool = False, copy_from: Optional[os.PathLike] = None,
              required: Tuple[str, ...] = REQUIRED) -> "RunFolder":
        """Take ``path`` for a new run of ``cfg``, or (``resume``) for continuing the run in it;
        with ``copy_from`` (a run folder; implies ``resume``) continue that run, in place when
        ``path`` is None or the same folder, else in a copy made at ``path``. A new run's
        ``path`` defaults to ``runs/<name>-<timestamp>``."""
        if copy_from is not None:
            resume = True
            path = path if path is not None else copy_from
        folder = cls(Path(path) if path is not None else default_out_dir(cfg.name), kind, cfg,
                     resumable=resumable, required=required)
        folder.resuming = resume
        try:
            if copy_from is not None and Path(copy_from).resolve() != folder.path.resolve():
                check_resumable(Path(copy_from), kind, locked=False)
                folder._claim_new(copy_of=Path(copy_from))
                return folder
            if resume:
                if folder.path.is_dir():
                    folder._lock()  # first: "in use by another run" says more than what it holds now
                try:
                    check_resumable(folder.path, kind)
                except BaseException:
                    folder.release()
                    raise
            else:
                folder._claim_new()
            folder._remove_temps()
        except OSError as e:  # e.g. a name too long to even test whether it exists
            folder.release()
            raise storage_error(e, e.filename or folder.path, "use the run folder") from None
        return folder

    def _claim_new(self, copy_of: Optional[Path] = None) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise StorageError(f"--out {path} is a file; give a folder for the run (--out)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise storage_error(e, path, "create the run folder") from None
        self._lock()
        try:
            names = _entries(path)
            if copy_of is not None:
                if names:
                    raise NasError(f"--out {path} is not empty ({_listing(names)}); to continue a copy of "
                                   f"{copy_of} give --out a new or empty folder, or continue it in place "
                                   f"with --resume {copy_of} alone")
                self._copy(copy_of)
                return
            if not names:
                return
            kind = folder_kind(path)
            if (path / CHECKPOINT).exists():
                if kind not in (None, self.kind):
                    raise NasError(f"{path} holds a {PROGS[kind]} run; choose another --out")
                raise NasError(f"{path} already holds a run; continue it with --resume {path} "
                               f"or choose another --out")
            if kind == self.kind and _own(names) <= START_FILES[self.kind]:
                self.reused = True  # a run that stopped before its first checkpoint: nothing to lose
                return
            raise NasError(f"{path} is not empty ({_listing(names)}) and holds no {self.prog} run to "
                           f"resume; choose another --out (a run only writes into a new or empty folder)")
        except BaseException:
            self.release()
            raise

    def _copy(self, source: Path) -> None:
        src = RunFolder(source, self.kind)
        src._lock()  # no run may write into the source while it is copied
        copied: List[Path] = []
        try:
            check_resumable(source, self.kind)
            for name in _entries(source):
                s, d = source / name, self.path / name
                if _TEMP_RE.fullmatch(name):
                    continue
                copied.append(d)
                try:
                    if s.is_dir():
                        shutil.copytree(s, d)
                    else:
                        shutil.copy2(s, d)
                except OSError as e:
                    raise storage_error(e, d, "copy the run into") from None
                except shutil.Error as e:
                    raise StorageError(f"cannot copy {s} into {d} ({str(e)[:200]}); check the free "
                                       f"space and permissions of --out") from None
        except BaseException:
            for d in copied:  # --out was empty: leave it so, not half a copy
                shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)
            raise
        finally:
            src.release()
        self.copied_from = source

    # ------------------------------------------------------------------ lock
    def _lock(self) -> None:
        if fcntl is None:
            return
        lock = self.path / LOCK
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise storage_error(e, self.path, "write into the run folder") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise NasError(f"{self.path} is in use by another run (pid {pid}); wait for it to end, "
                               f"or choose another --out") from None
            try:  # the holder before us may have removed the file between our open and flock
                if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (and its file); safe to call twice."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path / LOCK)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _remove_temps(self) -> List[str]:
        """Temporary files of a write that a SIGKILL cut short (the lock says no one writes now)."""
        stale = [n for n in _entries(self.path) if _TEMP_RE.fullmatch(n)]
        for n in stale:
            (self.path / n).unlink(missing_ok=True)
        return stale

    # ------------------------------------------------------------------ the run
    def run(self, quiet: bool, body: Callable[[], T]) -> T:
        """``body()`` with log.txt open and the lock released at the end. Whatever ends the run
        reaches log.txt as one line: a user error, an I/O error (as a StorageError), a failed
        optimisation (with what the run leaves behind), or a signal (an :class:`Interrupted`
        whose ``note`` names the checkpoint to resume, or says there is none)."""
        try:
            setup_logging(self.file("log.txt"), quiet)
            if self.copied_from is not None:
                log.info(f"continuing a copy of {self.copied_from} (left as it was)")
            return body()
        except KeyboardInterrupt as e:
            stop = as_interrupted(e)
            if self.finished:  # a signal during the last bookkeeping: exit as the finished run it is
                stop.finished = True
                stop.note = f"{stop.name} arrived after the run finished; its results are complete in {self.path}"
            else:
                stop.note = f"interrupted by {stop.name}{self.where()}; {self.state_note()}"
            log.warning(stop.note)
            raise stop from None
        except (NasError, OSError) as e:
            err = storage_error(e, e.filename or self.path) if isinstance(e, OSError) else e
            if isinstance(err, (TrainingError, StorageError)) and self.started:
                err = type(err)(f"{err}; {self.state_note()}")  # it failed mid-run: say what is kept
            log.error(f"error: {err}")
            if err is e:
                raise
            raise err from None
        finally:
            self.release()

    def start(self) -> None:
        """The run's first step (inside :meth:`run`): on resume, read the checkpoint and check it
        (its ``kind`` and version, the ``required`` keys, the config against ``resumable``)
        before anything is built; then write ``config.yaml``."""
        self.epochs = self.cfg.trainer.epochs
        if self.resuming:
            ckpt = load_checkpoint(self.ckpt_path, required=self.required)
            found = (ckpt.get("kind", DEFAULT_KIND), ckpt.get("version"))
            if found != (self.kind, CKPT_VERSION):
                raise CheckpointError(f"checkpoint {self.ckpt_path} is a {found[0]} checkpoint of version "
                                      f"{found[1]}; {self.prog} resumes {self.kind} checkpoints of version "
                                      f"{CKPT_VERSION}: start a new run")
            check_resume_config(self.cfg, ckpt, self.ckpt_path, self.resumable)
            self.ckpt, self.saved_epoch = ckpt, ckpt["epoch"]
        elif self.reused:
            log.info(f"{self.path} held a run that stopped before its first checkpoint: starting it again")
        self.write_config(to_dict(self.cfg))

    @property
    def resumed(self) -> bool:
        return self.ckpt is not None

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

    def log_resumed(self, start_epoch: int, ranks: int) -> None:
        """The log line of a resumed run, with the number of ranks where it changed."""
        written = self.ckpt.get("world_size", 1)
        log.info(f"resumed from {self.ckpt_path} after epoch {start_epoch}"
                 + (f" (written by {written} ranks, continued by {ranks})" if written != ranks else ""))

    def monitor(self, quiet: bool, start_epoch: int, **kwargs: Any) -> Monitor:
        """The run's progress and TensorBoard (``tb/``, written by the writing process only). A
        resumed run rewrites the TensorBoard steps after its checkpoint, so the interrupted ones
        are dropped (and a run started again in its folder drops all of the earlier start's)."""
        return Monitor(self.path / "tb" if self.writer else None, epochs=self.cfg.trainer.epochs,
                       quiet=quiet or not self.writer,
                       purge_step=start_epoch + 1 if self.resumed or self.reused else None, **kwargs)

    @contextmanager
    def closing(self, monitor: Monitor) -> Iterator[Monitor]:
        """The run's epochs with ``monitor``, closed however they end; a rank's failure of a
        data-parallel run names what the run leaves (:meth:`state_note`)."""
        try:
            yield monitor
        except DistributedError as e:
            raise DistributedError(f"{e}; {self.state_note()}") from None
        finally:
            monitor.close()

    def save(self, epoch_done: int, seconds: float, history: list, state: Dict[str, Any],
             loaders: Dict[str, Any], device: torch.device) -> None:
        """Write the checkpoint after ``epoch_done`` epochs: ``state`` (model, optimizers, genotype,
        ...) plus the config, the loaders' data order and the RNG states."""
        save_atomic({"version": CKPT_VERSION, "kind": self.kind, "epoch": epoch_done,
                     "config": to_dict(self.cfg), **state,
                     "loaders": {name: loader.state_dict() for name, loader in loaders.items()},
                     "rng": rng_state(device), "history": history, "seconds": seconds}, self.ckpt_path)
        self.saved_epoch = epoch_done

    def checkpoint_due(self, epoch_done: int, end_epoch: Optional[int] = None) -> bool:
        """After every ``trainer.ckpt_every`` epochs, at the last epoch and where a session ends."""
        t = self.cfg.trainer
        return epoch_done % t.ckpt_every == 0 or epoch_done in (t.epochs, end_epoch)

    # ------------------------------------------------------------------ files
    def file(self, name: str) -> Path:
        return self.path / name

    def write_text(self, name: str, text: str) -> None:
        write_text_atomic(self.path / name, text)
        if name == "metrics.json":  # every command writes its results last
            self.finished = True

    def write_config(self, data: Dict[str, Any]) -> None:
        self.write_text("config.yaml", HEADER.format(prog=self.prog) + yaml.safe_dump(data, sort_keys=False))

    # ------------------------------------------------------------------ what a stop leaves
    def state_note(self) -> str:
        """What an interrupted or failed run leaves behind, precisely: the checkpoint to resume
        from and the command, or that there is none yet."""
        if self.saved_epoch is not None:
            return (f"the checkpoint after epoch {self.saved_epoch} of {self.epochs} is kept in {self.path}; "
                    f"continue with: {self.prog} --resume {self.path}")
        return (f"no checkpoint was written yet, so there is nothing to resume; start again with "
                f"--out {self.path}")

    @property
    def started(self) -> bool:
        """Training began in this session or before it (a checkpoint exists)."""
        return self.epoch is not None or self.saved_epoch is not None

    def where(self) -> str:
        return f" in epoch {self.epoch} of {self.epochs}" if self.epoch is not None else ""


def in_use(path: Path) -> Optional[str]:
    """The pid of the run that holds ``path``'s lock now, or None (call it before claiming)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except OSError:
        return os.read(fd, 32).decode("ascii", "replace").strip() or "?"
    finally:
        os.close(fd)  # also drops the shared lock


def check_resumable(path: Path, kind: str, locked: bool = True) -> None:
    """One-line CheckpointError unless ``path`` holds a ``kind`` run with a checkpoint
    (``locked=False``: only that it is a folder of the right kind, before it is locked)."""
    prog = PROGS[kind]
    if not path.is_dir():
        raise CheckpointError(f"--resume {path}: no such run folder; give the folder {prog} wrote")
    found = folder_kind(path)
    if found is not None and found != kind:
        raise CheckpointError(f"{path} is a {PROGS[found]} run; continue it with {PROGS[found]} --resume {path}")
    if locked and not (path / CHECKPOINT).is_file():
        if found == kind and _own(_entries(path)) <= START_FILES[kind]:
            raise CheckpointError(f"{path} has no checkpoint yet (the run stopped before its first one; see "
                                  f"{path / 'log.txt'}), so there is nothing to resume; start it again "
                                  f"with --out {path}")
        raise CheckpointError(f"checkpoint {path / CHECKPOINT} not found; give the run folder {prog} wrote, "
                              f"with its {CHECKPOINT}")


def load_run_config(path: os.PathLike, cls: type, kind: str, check_lock: Optional[bool] = None) -> Any:
    """The resolved config of the ``kind`` run in ``path``, as a ``cls`` (for ``--resume``): its
    config.yaml or, when that file is missing or damaged, the copy inside its checkpoint (which
    every checkpoint carries), with a warning on stderr that says so. ``check_lock=False``: do not
    refuse a folder another process holds (the other ranks of a data-parallel run, whose rank 0
    may already have locked it); ``None``: check on rank 0 alone."""
    from .distributed import is_main_process
    path = Path(path)
    pid = in_use(path) if (is_main_process() if check_lock is None else check_lock) else None
    if pid is not None:
        raise NasError(f"{path} is in use by another run (pid {pid}); wait for it to end before resuming it")
    check_resumable(path, kind)
    cfg = path / "config.yaml"
    try:
        data = parse_yaml(cfg.read_text(encoding="utf-8"), cfg)
        why = None if isinstance(data, dict) else f"holds a {type(data).__name__}, not a config"
    except NasError as e:
        why = str(e).replace(f"{cfg}", "").strip(" :")
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or type(e).__name__
    if why is None:
        try:
            return from_dict(cls, data)
        except NasError as e:  # valid YAML but not this run's config (a stray edit, another file)
            why = str(e)
    ckpt = load_checkpoint(path / CHECKPOINT)
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"{cfg} is damaged ({why}) and {path / CHECKPOINT} holds no config; start a new run")
    print(f"{PROGS[kind]}: warning: {cfg} is damaged ({why}); resuming with the config stored in the "
          f"checkpoint", file=sys.stderr)
    return from_dict(cls, ckpt["config"])
