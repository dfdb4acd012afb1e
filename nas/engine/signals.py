"""SIGINT and SIGTERM end a run the same way: as an :class:`Interrupted` exception in the main
thread, so that every ``finally`` and ``except BaseException`` on the way out runs (atomic writes
remove their temporary file, extraction removes its half-written folder, the run logs where its
last checkpoint is) and the command exits with ``128 + signal number`` (130, 143)."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A signal that ends the run. A :class:`KeyboardInterrupt`, so ``except Exception`` never
    swallows it; ``note`` is what the run says about its state (set on the way out)."""

    def __init__(self, signum: int = signal.SIGINT, note: str = ""):
        super().__init__(signum, note)
        self.signum = signum
        self.note = note
        self.finished = False  # it came after the run's results were complete: nothing was lost

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 0 if self.finished else 128 + self.signum


def as_interrupted(e: BaseException) -> Interrupted:
    """A plain KeyboardInterrupt (Ctrl-C outside :func:`raise_on_signals`) as a SIGINT."""
    return e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)


class _Deferral:
    depth = 0                      # open deferred() blocks in the main thread
    pending: Optional[int] = None  # a signal that arrived inside one


@contextmanager
def deferred() -> Iterator[None]:
    """Inside: a signal that ends the run is raised when the block ends, not in the middle of it.
    For library code whose locks and queues an exception raised half-way leaves inconsistent:
    raised inside ``threading.Condition.notify`` (TensorBoard's event queue), it loses the
    wake-up of the writer thread, and closing the writer then hangs until its next flush (two
    minutes). Keep such blocks short: the run ends only once they are done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Deferral.depth += 1
    try:
        yield
    finally:
        _Deferral.depth -= 1
        if _Deferral.depth == 0 and _Deferral.pending is not None:
            signum, _Deferral.pending = _Deferral.pending, None
            raise Interrupted(signum)


@contextmanager
def raise_on_signals() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM raise :class:`Interrupted` (at the end of a :func:`deferred`
    block when one is open). The first one only: later ones are ignored while the run cleans
    up (a second Ctrl-C must not cut a cleanup into a traceback). Outside the main thread
    (where handlers cannot be set) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        for s in HANDLED:
            signal.signal(s, signal.SIG_IGN)
        if _Deferral.depth:
            _Deferral.pending = signum
            return
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
