"""What every training run does the same way, search or retrain: pick the device, seed every
RNG, save and restore RNG states for an exact resume, and re-plan the cosine schedule when a
resumed run changes its number of epochs."""
from __future__ import annotations

import ctypes
import math
import os
import random
import sys
from typing import Any, Dict

import torch

from ..errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but no CUDA GPU is visible; use device=cpu or device=auto")
    return torch.device(name)


# glibc's mallopt parameters, and the environment variables by which a user sets them instead
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_")


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep the memory that freed tensors leave and hand it to the next ones.

    A training step allocates and frees the same activation-sized blocks (about 1 MB at the CPU
    proxy's size) hundreds of times. By default glibc returns the top of its heap to the system
    when more than a few hundred kB of it are free, and takes it back, page by zeroed page, on the
    next step: about 15% of a step's CPU time at that size. Here blocks up to 32 MB come from the
    heap, which keeps up to 1 GB free and grows by 64 MB at a time; the peak memory is the same,
    but it is not given back while the process runs. Nothing computed changes. It is skipped where
    the C library is not glibc, where the user tuned malloc (any ``MALLOC_*_`` variable of
    :data:`_MALLOC_ENV`), and with ``NAS_KEEP_FREED_MEMORY=0`` (glibc's defaults). Returns whether
    it took effect."""
    if (not sys.platform.startswith("linux") or any(k in os.environ for k in _MALLOC_ENV)
            or os.environ.get("NAS_KEEP_FREED_MEMORY", "1") == "0"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # the mmap threshold first: setting the trim threshold alone fixes it at 128 kB, so that every
    # activation would be mapped and unmapped
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 1 << 30)
                and mallopt(_M_TOP_PAD, 64 << 20))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for the search itself
        pass


def replan_epochs(sched: torch.optim.lr_scheduler.LRScheduler, epochs: int) -> None:
    """Resume with a different ``trainer.epochs`` (extend or shorten a search): the cosine
    learning rate continues on the curve planned for the new total from the epoch reached,
    ``lr = lr_min + (lr0 - lr_min)(1 + cos(π·t/T))/2`` with ``T`` the new total, and the
    estimator's schedules follow the new total through ``set_progress``. The epochs already run
    keep the old plan, so such a run equals a run planned for the new total only if its
    schedules are constant; resuming with the same total is exact (bitwise on CPU)."""
    if not isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) or sched.T_max == max(epochs, 1):
        return
    sched.T_max = max(epochs, 1)
    t = min(sched.last_epoch, sched.T_max)
    for group, base in zip(sched.optimizer.param_groups, sched.base_lrs):
        group["lr"] = sched.eta_min + (base - sched.eta_min) * (1 + math.cos(math.pi * t / sched.T_max)) / 2
    sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]


def rng_state(device: torch.device) -> Dict[str, Any]:
    state: Dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    try:
        import numpy as np
        state["numpy"] = np.random.get_state()
    except ImportError:
        pass
    return state


def set_rng_state(state: Dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    if state.get("numpy") is not None:
        import numpy as np
        np.random.set_state(state["numpy"])
