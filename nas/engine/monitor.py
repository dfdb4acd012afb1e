"""What a user watches during a search or a retraining: tqdm progress, one log line per epoch, TensorBoard.

:class:`Monitor` is the generic part (progress bars or log lines, and TensorBoard primitives:
``scalars``, ``image``, ``text``, ``hparams``); :func:`write_search_summaries` adds what only a
search has. Tags of a search (TensorBoard step = epochs done):

* ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc`` (arch-step batches), ``metrics/<other>``;
* ``lr/weights``, ``lr/arch``; ``estimator/<name>`` — whatever ``estimator.scalars()`` returns
  (temperatures and every scheduled value, Bop flips, σ statistics);
* ``entropy/<choice>/mean`` and ``entropy/<choice>/<edge>`` (nats; gates: Bernoulli entropy);
* ``probs/<choice>/<edge>/<candidate>`` (gates: ``probs/<choice>/<edge>``), grouped into one
  multi-line chart per edge in the Custom Scalars tab;
* ``noise/<choice>/{mean,min,max}`` — σ of the ``"noise"``-role parameters (adaptive noise);
* ``discrete/<choice>/changed`` — entries of ``"discrete"``-role parameters (Bop state) that
  differ from the previous epoch: the net flips of the epoch;
* ``<module>/<key>``: the supernet's ``scalars()`` (L0 gates: penalty, open gates);
* images ``choices/<choice>`` (edges × candidates heatmap) and ``cell/<cell>`` (derived cell
  diagram); text ``genotype``; at the end an hparams summary (config → final metrics).
"""
from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Union

import torch


log = logging.getLogger("nas")

# names the search loop gives its epoch metrics -> TensorBoard tags
METRIC_TAGS = {"train_loss": "train/loss", "train_acc": "train/acc",
               "search_val_loss": "val/loss", "search_val_acc": "val/acc",
               "val_loss": "val/loss", "val_acc": "val/acc",
               "test_loss": "test/loss", "test_acc": "test/acc"}


class _LogFile(logging.FileHandler):
    """log.txt, which never prints a traceback: when a record cannot be written (a full disk) the
    file stops taking records; the run itself reports the cause as one line when it next writes."""

    def handleError(self, record: logging.LogRecord) -> None:
        self.failed = True

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(self, "failed", False):
            super().emit(record)

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # the last flush of a full disk
            self.failed = True


def setup_logging(log_file: Optional[Path], quiet: bool) -> None:
    """``nas`` log records go to ``log_file`` (appended: a resumed run continues the same file)."""
    log.setLevel(logging.INFO)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    log.propagate = False
    log.addHandler(logging.NullHandler())  # no handler would send warnings to stderr (lastResort)
    if log_file is not None:
        fh = _LogFile(log_file, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(fh)


def _quiet_writer_threads() -> None:
    """TensorBoard's writer thread re-raises its I/O error, which Python prints as a traceback;
    the same error reaches the main thread on the next write and is reported there as one line."""
    import threading
    if getattr(threading.excepthook, "_nas", False):
        return
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
            return
        previous(args)

    hook._nas = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Monitor:
    """Progress bars on an interactive terminal, else one line per epoch; TensorBoard if ``tb_dir``.

    ``purge_step``: on resume, the first step this session writes; TensorBoard then drops
    events at or after it left by the interrupted session (no doubled curves).
    """

    def __init__(self, tb_dir: Optional[Path], *, epochs: int, quiet: bool = False,
                 desc: str = "search", purge_step: Optional[int] = None):
        self.writer = None
        self.tb_dir = tb_dir
        if tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter
            _quiet_writer_threads()
            self.writer = self._tb(SummaryWriter, str(tb_dir), purge_step=purge_step)
        # Bars only on an interactive terminal; otherwise (CI, --quiet, pipes) one line per epoch.
        self.bars = not quiet and sys.stderr.isatty()
        self.quiet = quiet
        self.epochs = epochs
        self.desc = desc
        self.epoch_bar = None
        self.step_bar = None
        self._postfix_at = float("-inf")

    # ---------------------------------------------------------------- progress
    def start(self, first_epoch: int) -> None:
        if self.bars:
            from tqdm import tqdm
            self.epoch_bar = tqdm(total=self.epochs, initial=first_epoch, desc=self.desc, unit="epoch",
                                  dynamic_ncols=True, file=sys.stderr)

    def start_epoch(self, epoch: int, steps: int) -> None:
        if self.bars:
            from tqdm import tqdm
            self.step_bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step",
                                 leave=False, dynamic_ncols=True, file=sys.stderr)

    def step(self, postfix: Union[Mapping[str, float], Callable[[], Mapping[str, float]]]) -> None:
        """One optimisation step; ``postfix`` (e.g. loss, acc, tau) is shown on the step bar. A
        callable is evaluated only when the bar is redrawn (at most 4 times a second), so that
        reading values off an accelerator does not sync every step."""
        if self.step_bar is None:
            return
        now = time.monotonic()
        if not callable(postfix) or now - self._postfix_at >= 0.25:
            values = postfix() if callable(postfix) else postfix
            self.step_bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in values.items()},
                                      refresh=False)
            self._postfix_at = now
        self.step_bar.update(1)

    def end_epoch(self, epoch: int, metrics: Mapping[str, float],
                  scalars: Optional[Mapping[str, float]] = None, note: str = "") -> None:
        """Close the step bar, advance the epoch bar, log one line (to ``log.txt`` always, to
        stderr when there are no bars and not quiet) and write ``metrics`` and ``scalars`` to
        TensorBoard at step ``epoch + 1``. ``note`` is appended to the logged line only."""
        scalars = dict(scalars or {})
        if self.step_bar is not None:
            self.step_bar.close()
            self.step_bar = None
        short = {k: v for k, v in metrics.items() if k.endswith(("loss", "acc"))}
        short.update({k: v for k, v in scalars.items() if k.startswith(("estimator/", "hooks/"))})
        if self.epoch_bar is not None:
            self.epoch_bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in short.items()},
                                       refresh=False)
            self.epoch_bar.update(1)
        line = f"epoch {epoch + 1}/{self.epochs} " + " ".join(f"{k}={v:.4g}" for k, v in short.items())
        log.info(line + (f" {note}" if note else ""))
        if not self.bars and not self.quiet:
            print(line, file=sys.stderr, flush=True)
        self.scalars({METRIC_TAGS.get(k, f"metrics/{k}"): v for k, v in metrics.items()}, epoch + 1)
        self.scalars(scalars, epoch + 1)

    # ---------------------------------------------------------------- TensorBoard
    def scalars(self, values: Mapping[str, float], step: int) -> None:
        if self.writer is None:
            return
        for tag, v in values.items():
            if v is not None and math.isfinite(float(v)):
                self._tb(self.writer.add_scalar, tag, float(v), step)

    def image(self, tag: str, img: Union["Image.Image", torch.Tensor], step: int) -> None:  # noqa: F821
        """A PIL image or a ``[3, H, W]`` uint8 tensor."""
        if self.writer is None:
            return
        t = img if isinstance(img, torch.Tensor) else to_chw_uint8(img)
        self._tb(self.writer.add_image, tag, t, step, dataformats="CHW")

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer is not None:
            self._tb(self.writer.add_text, tag, text, step)

    def layout(self, charts: Mapping[str, Mapping[str, list]]) -> None:
        """Custom Scalars layout ``{category: {chart title: [tag regexes]}}``: several curves per chart."""
        if self.writer is not None and charts:
            self._tb(self.writer.add_custom_scalars, {c: {t: ["Multiline", list(r)] for t, r in ch.items()}
                                            for c, ch in charts.items()})

    def hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, float], step: int = 0) -> None:
        """An HParams-plugin session in this run's own event file (``add_hparams`` would open a
        new sub-run): ``hparams`` values are flattened to str/float/bool; ``metrics`` are also
        written as scalars ``hparams/<name>`` so the plugin can show them."""
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hp_summary
        flat = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in flatten(hparams).items()}
        mets = {f"hparams/{k}": float(v) for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
        for s in hp_summary(flat, mets):
            self._tb(self.writer._get_file_writer().add_summary, s)
        self.scalars(mets, step)

    def flush(self) -> None:
        if self.writer is not None:
            self._tb(self.writer.flush)

    def _tb(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A TensorBoard call; an I/O error (here or in the writer's thread, which hands it
        over on the next call) becomes one line naming the tb folder. A signal waits for the
        call to end (:func:`~nas.engine.signals.deferred`: the writer's queue stays whole)."""
        from .signals import deferred
        try:
            with deferred():
                return fn(*args, **kwargs)
        except OSError as e:
            from ..errors import storage_error
            raise storage_error(e, self.tb_dir, "write TensorBoard events to") from None

    def close(self) -> Optional[Exception]:
        """Close bars and the event file; never raises (it runs on the way out of a failed run
        too): returns the StorageError of a failed final write, if any."""
        for bar in (self.step_bar, self.epoch_bar):
            if bar is not None:
                bar.close()
        self.step_bar = self.epoch_bar = None
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                self._tb(writer.close)
            except Exception as e:  # noqa: BLE001 (reported by the caller on the success path)
                return e
        return None


def to_chw_uint8(img: "Image.Image") -> torch.Tensor:  # noqa: F821
    """A PIL RGB image as a ``[3, H, W]`` uint8 tensor (TensorBoard's default image layout)."""
    w, h = img.size
    t = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8)
    return t.view(h, w, 3).permute(2, 0, 1).contiguous()


def flatten(d: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# --------------------------------------------------------------------------- search summaries

