"""Atomic checkpoints: written to a temporary file in the same folder, then renamed over the old
one, so a crash mid-write never leaves a truncated ``checkpoint.pt``."""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict

import torch

from ..errors import CheckpointError


def save_atomic(obj: Any, path: os.PathLike) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temps(path: os.PathLike) -> list:
    """Delete temporary files a killed :func:`save_atomic` left beside ``path``; their names."""
    path = Path(path)
    stale = sorted(path.parent.glob(path.name + ".*.tmp")) if path.parent.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return [p.name for p in stale]


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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or not a nas checkpoint ({first[:120]})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in required):
        raise CheckpointError(f"checkpoint {path} is not a nas checkpoint (missing "
                              f"{', '.join(k for k in required if not isinstance(ckpt, dict) or k not in ckpt)})")
    return ckpt
