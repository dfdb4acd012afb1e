"""What a user watches during a search: tqdm progress, one log line per epoch, TensorBoard.

TensorBoard tags: ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc`` (arch-step batches),
``lr/weights``, ``lr/arch``, ``estimator/<name>`` (scheduled values), ``entropy/<choice>``,
and per-edge candidate probabilities ``probs/<choice>/<edge>/<op>``.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from ..supernet.choice import choices

log = logging.getLogger("nas")


def setup_logging(log_file: Optional[Path], quiet: bool) -> None:
    log.setLevel(logging.INFO)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    if log_file is not None:
        fh = logging.FileHandler(log_file)
        fh.setFormatter(fmt)
        log.addHandler(fh)
    log.propagate = False


def choice_entropy(p: torch.Tensor) -> float:
    """Mean entropy (nats) over the rows of a categorical distribution, or of Bernoulli gates."""
    p = p.float().clamp_min(1e-12)
    if p.dim() == 1:
        q = (1 - p).clamp_min(1e-12)
        return float(-(p * p.log() + q * q.log()).mean())
    return float(-(p * p.log()).sum(-1).mean())


class Monitor:
    def __init__(self, tb_dir: Optional[Path], *, epochs: int, quiet: bool = False):
        self.writer = None
        if tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(tb_dir))
        # Bars only on an interactive terminal; otherwise (CI, --quiet, pipes) one line per epoch.
        self.bars = not quiet and sys.stderr.isatty()
        self.quiet = quiet
        self.epochs = epochs
        self.epoch_bar = None
        self.step_bar = None

    # ---------------------------------------------------------------- progress
    def start(self, first_epoch: int) -> None:
        if self.bars:
            from tqdm import tqdm
            self.epoch_bar = tqdm(total=self.epochs, initial=first_epoch, desc="search", unit="epoch",
                                  dynamic_ncols=True)

    def start_epoch(self, epoch: int, steps: int) -> None:
        if self.bars:
            from tqdm import tqdm
            self.step_bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step",
                                 leave=False, dynamic_ncols=True)

    def step(self, postfix: Dict[str, float]) -> None:
        if self.step_bar is not None:
            self.step_bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()}, refresh=False)
            self.step_bar.update(1)

    def end_epoch(self, epoch: int, metrics: Dict[str, float], model: nn.Module,
                  scalars: Dict[str, float], genotype: str) -> None:
        if self.step_bar is not None:
            self.step_bar.close()
            self.step_bar = None
        short = {k: v for k, v in metrics.items() if k.endswith(("loss", "acc"))}
        short.update({k: v for k, v in scalars.items() if k.startswith("estimator/")})
        if self.epoch_bar is not None:
            self.epoch_bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in short.items()}, refresh=False)
            self.epoch_bar.update(1)
        line = f"epoch {epoch + 1}/{self.epochs} " + " ".join(f"{k}={v:.4g}" for k, v in short.items())
        log.info(line + f" genotype={genotype}")
        if not self.bars and not self.quiet:
            print(line, file=sys.stderr, flush=True)
        if self.writer is not None:
            self.write_epoch(epoch, metrics, model, scalars, genotype)

    def write_epoch(self, epoch: int, metrics: Dict[str, float], model: nn.Module,
                    scalars: Dict[str, float], genotype: str) -> None:
        w = self.writer
        step = epoch + 1
        names = {"train_loss": "train/loss", "train_acc": "train/acc",
                 "search_val_loss": "val/loss", "search_val_acc": "val/acc"}
        for k, v in metrics.items():
            w.add_scalar(names.get(k, f"metrics/{k}"), v, step)
        for k, v in scalars.items():
            w.add_scalar(k, v, step)
        for cname, ch in choices(model).items():
            tag = cname.replace("arch.", "")
            p = ch.probs()
            w.add_scalar(f"entropy/{tag}", choice_entropy(p), step)
            for e, label in enumerate(ch.labels):
                if ch.kind == "categorical":
                    for k, op in enumerate(ch.candidates):
                        w.add_scalar(f"probs/{tag}/{label}/{op}", float(p[e, k]), step)
                else:
                    w.add_scalar(f"probs/{tag}/{label}", float(p[e]), step)
        w.add_text("genotype", genotype, step)
        w.flush()

    def close(self) -> None:
        for bar in (self.step_bar, self.epoch_bar):
            if bar is not None:
                bar.close()
        if self.writer is not None:
            self.writer.close()
