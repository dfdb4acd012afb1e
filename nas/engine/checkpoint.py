"""Atomic checkpoints and run-folder files: written to a temporary file in the same folder, then
renamed over the old one, so a crash, a signal or a full disk mid-write never leaves a truncated
``checkpoint.pt`` (temporaries a SIGKILL leaves are removed when the run folder is next claimed,
:mod:`nas.engine.run_folder`)."""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from ..errors import CheckpointError, storage_error


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


class _Sink:
    """A binary file on a raw descriptor that keeps the ``OSError`` of a failed write: torch.save
    turns it into a bare RuntimeError ("unexpected pos"), which would hide a full disk."""

    def __init__(self, fd: int):
        self.fd = fd
        self.error: Optional[OSError] = None

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as e:
            self.error = e
            raise
        return len(data)

    def flush(self) -> None:
        pass


def write_atomic(path: os.PathLike, write: Callable[[_Sink], Any]) -> None:
    """``write(f)`` into a temporary file beside ``path``, synced, then renamed over ``path``: a
    crash, a signal or a full disk mid-write leaves the old file whole and no temporary behind.
    An I/O failure is a one-line :class:`~nas.errors.StorageError` naming ``path``."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise storage_error(e, path) from None
    sink = _Sink(fd)
    try:
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would create it (mkstemp makes it private)
            write(sink)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        err = e if isinstance(e, OSError) else sink.error
        if err is not None and isinstance(e, (OSError, RuntimeError)):
            raise storage_error(err, path) from None
        raise


def save_atomic(obj: Any, path: os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`write_atomic`."""
    write_atomic(path, lambda f: torch.save(obj, f))


def write_text_atomic(path: os.PathLike, text: str) -> None:
    """``path.write_text(text)`` (UTF-8) through :func:`write_atomic`."""
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def _gist(error: BaseException, limit: int = 120) -> str:
    """The first sentence of a loader's error, cut at a word: torch's zip errors run on with advice
    about its internals."""
    text = " ".join(str(error).split()) or type(error).__name__
    text = text.split(". ")[0].rstrip(".")
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return text


def load_checkpoint(path: os.PathLike, required: tuple = ("model", "epoch", "config")) -> Dict[str, Any]:
    """Load a checkpoint on CPU; a missing, truncated or foreign file is a one-line CheckpointError."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; give a run folder or a checkpoint.pt file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a nas checkpoint ({_gist(e)})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in required):
        raise CheckpointError(f"checkpoint {path} is not a nas checkpoint (missing "
                              f"{', '.join(k for k in required if not isinstance(ckpt, dict) or k not in ckpt)})")
    return ckpt
