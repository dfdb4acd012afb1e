"""The run folder of a data-parallel run (:mod:`nas.engine.distributed`): rank 0 alone claims,
locks and writes it (:class:`~nas.engine.run_folder.RunFolder`); every other rank holds a
:class:`FollowerFolder` with the same path that writes nothing and receives from rank 0 what it
reads (the checkpoint to resume), so every rank resumes from the same state even when the folder
is on rank 0's machine only."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, TypeVar

from ..config import to_dict
from ..errors import ConfigError
from .distributed import World
from .monitor import flatten, setup_logging
from .run_folder import REQUIRED, RunFolder
from .signals import as_interrupted

T = TypeVar("T")


class FollowerFolder(RunFolder):
    """Rank r > 0's view of the run folder rank 0 claimed: same path and state, no writes, no lock."""

    writer = False

    def run(self, quiet: bool, body: Callable[[], T]) -> T:
        setup_logging(None, True)  # rank 0 keeps the log
        try:
            return body()
        except KeyboardInterrupt as e:
            stop = as_interrupted(e)
            stop.note = f"interrupted by {stop.name}{self.where()}; {self.state_note()}"
            raise stop from None

    def start(self) -> None:  # rank 0 reads and checks; see start_shared
        self.epochs = self.cfg.trainer.epochs

    def save(self, epoch_done: int, *args: Any, **kwargs: Any) -> None:
        self.saved_epoch = epoch_done

    def write_text(self, name: str, text: str) -> None:
        pass

    def release(self) -> None:
        pass


def claim_shared(world: World, path: Optional[os.PathLike], cfg: Any, *, kind: str, resumable: Sequence[str],
                 resume: bool = False, copy_from: Optional[os.PathLike] = None,
                 required: Tuple[str, ...] = REQUIRED) -> RunFolder:
    """:meth:`RunFolder.claim` on rank 0 (its error, if any, raised on every rank); a
    :class:`FollowerFolder` of the folder it claimed on the others."""
    claimed: Dict[str, RunFolder] = {}
    world.check_config(flatten(to_dict(cfg)))  # ranks started by hand with different overrides
    batch = getattr(getattr(cfg, "data", None), "batch_size", None)
    if world.enabled and isinstance(batch, int) and batch < world.size:  # a rank with no image: NaN statistics
        raise ConfigError(f"data.batch_size={batch} is the global batch, split over {world.size} ranks: give at least "
                          f"one image per rank (data.batch_size >= {world.size}), or start fewer ranks")

    def claim() -> Tuple[str, bool, Optional[str]]:
        f = RunFolder.claim(path, cfg, kind=kind, resumable=resumable, resume=resume, copy_from=copy_from,
                            required=required)
        claimed["folder"] = f
        return str(f.path), f.resuming, str(f.copied_from) if f.copied_from else None

    where, resuming, copied = world.on_main(claim, "claiming the run folder")
    if world.is_main:
        return claimed["folder"]
    folder = FollowerFolder(Path(where), kind, cfg, resumable=resumable, required=required)
    folder.resuming, folder.copied_from = resuming, Path(copied) if copied else None
    return folder


def start_shared(world: World, folder: RunFolder) -> None:
    """``folder.start()`` on rank 0 (reading and checking the checkpoint to resume, writing
    config.yaml); the checkpoint and what rank 0 found on every rank."""
    def start() -> Tuple[Optional[Dict[str, Any]], Optional[int], bool]:
        folder.start()
        return folder.ckpt, folder.saved_epoch, folder.reused

    ckpt, saved, reused = world.on_main(start, "reading the run folder")
    if not world.is_main:
        folder.start()
        folder.ckpt, folder.saved_epoch, folder.reused = ckpt, saved, reused
