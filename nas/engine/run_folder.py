"""A run folder belongs to one run: what ``nas-search`` and ``nas-retrain`` may do with ``--out``
and ``--resume``, so that no run ever overwrites another's files or a user's own.

* A new run takes a folder that does not exist or is empty, or one that a run of the same kind
  left before its first checkpoint (its ``config.yaml`` carries this module's header and there
  is no checkpoint or result: nothing in it can be resumed). Any other folder is refused.
* An advisory lock (``fcntl.flock`` on ``.lock``) is held for the run's life: a second writer,
  new or resuming, gets a one-line error instead of mixing its files with the first's.
* ``--resume A`` continues A in place; ``--resume A --out B`` continues a copy of A in B and
  leaves A as it was.
* ``config.yaml`` is written atomically with a header naming the command; when it is damaged,
  ``--resume`` takes the config stored in the checkpoint.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from ..errors import CheckpointError, NasError, StorageError, TrainingError, storage_error

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"
CHECKPOINT = "checkpoint.pt"
PROGS = {"search": "nas-search", "retrain": "nas-retrain"}
HEADER = ("# {prog} run config: the resolved config of this run; --resume reads it (or, when it is "
          "damaged, the checkpoint's copy)\n")
_HEADER_RE = re.compile(r"# (nas-search|nas-retrain) run config")
# files a run writes before its first checkpoint; results (metrics.json) end that state
START_FILES = {"search": {"config.yaml", "log.txt", "tb"},
               "retrain": {"config.yaml", "log.txt", "tb", "genotype.yaml"}}
_TEMP_RE = re.compile(r".+\.[A-Za-z0-9_]+\.tmp")  # <file>.<random>.tmp: write_atomic's temporaries


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
        from ..config import parse_yaml
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


class RunFolder:
    """The folder of one run, locked from :meth:`claim` until :meth:`release`."""

    def __init__(self, path: Path, kind: str):
        self.path = Path(path)
        self.kind = kind
        self.prog = PROGS[kind]
        self.reused = False       # a new run took a folder a run left before its first checkpoint
        self.copied_from: Optional[Path] = None
        self._fd: Optional[int] = None
        # progress, for the note an interruption or a failure leaves (set by the run)
        self.epoch: Optional[int] = None        # the epoch being trained, from 1
        self.epochs: Optional[int] = None
        self.saved_epoch: Optional[int] = None  # epochs done in the last checkpoint written

    # ------------------------------------------------------------------ claiming
    @classmethod
    def claim(cls, path: os.PathLike, kind: str, *, resume: bool = False,
              copy_from: Optional[os.PathLike] = None) -> "RunFolder":
        """Take ``path`` for a new run, or (``resume``) for continuing the run in it; with
        ``copy_from`` (a different run folder) first copy that run into ``path``."""
        folder = cls(Path(path), kind)
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

    # ------------------------------------------------------------------ files
    def file(self, name: str) -> Path:
        return self.path / name

    def write_text(self, name: str, text: str) -> None:
        from .checkpoint import write_text_atomic
        write_text_atomic(self.path / name, text)

    def write_config(self, data: Dict[str, Any]) -> None:
        import yaml
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


def load_run_config_data(path: Path, kind: str) -> Tuple[Dict[str, Any], Optional[str]]:
    """``(plain config, warning)`` of the run in ``path``: its config.yaml or, when that file is
    missing or damaged, the copy inside its checkpoint (which every checkpoint carries), with a
    warning that says so."""
    from ..config import parse_yaml
    from .checkpoint import load_checkpoint
    path = Path(path)
    pid = in_use(path)
    if pid is not None:
        raise NasError(f"{path} is in use by another run (pid {pid}); wait for it to end before resuming it")
    check_resumable(path, kind)
    cfg = path / "config.yaml"
    try:
        data = parse_yaml(cfg.read_text(encoding="utf-8"), cfg)
        if isinstance(data, dict):
            return data, None
        why = f"holds a {type(data).__name__}, not a config"
    except NasError as e:
        why = str(e).replace(f"{cfg}", "").strip(" :")
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or type(e).__name__
    ckpt = load_checkpoint(path / CHECKPOINT)
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"{cfg} is damaged ({why}) and {path / CHECKPOINT} holds no config; start a new run")
    return ckpt["config"], f"{cfg} is damaged ({why}); resuming with the config stored in the checkpoint"


T = TypeVar("T")


def run_in(folder: RunFolder, quiet: bool, body: Callable[[], T]) -> T:
    """``body()`` with ``folder``'s log.txt open and its lock released at the end. Whatever ends
    the run reaches log.txt as one line: a user error, an I/O error (as a StorageError), a failed
    optimisation (with what the run leaves behind), or a signal (an :class:`Interrupted` whose
    ``note`` names the checkpoint to resume, or says there is none)."""
    from .monitor import log, setup_logging
    from .signals import as_interrupted
    try:
        setup_logging(folder.file("log.txt"), quiet)
        if folder.copied_from is not None:
            log.info(f"continuing a copy of {folder.copied_from} (left as it was)")
        return body()
    except KeyboardInterrupt as e:
        stop = as_interrupted(e)
        stop.note = f"interrupted by {stop.name}{folder.where()}; {folder.state_note()}"
        log.warning(stop.note)
        raise stop from None
    except (NasError, OSError) as e:
        err = storage_error(e, e.filename or folder.path) if isinstance(e, OSError) else e
        if isinstance(err, (TrainingError, StorageError)) and folder.started:
            err = type(err)(f"{err}; {folder.state_note()}")  # it failed mid-run: say what is kept
        log.error(f"error: {err}")
        if err is e:
            raise
        raise err from None
    finally:
        folder.release()
