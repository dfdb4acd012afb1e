"""``--format pt2``: the ``torch.export`` program saved with ``torch.export.save``; it loads with
``torch.export.load(path).module()`` in plain PyTorch (nas's modules are traced into aten ops)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

NAME = "pt2"
FILE = "model.pt2"


def write(model: nn.Module, example: torch.Tensor, out: Path, dynamic_batch: bool) -> Path:
    dyn = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    program = torch.export.export(model, (example,), dynamic_shapes=dyn)
    path = out / FILE
    torch.export.save(program, str(path))
    return path


def run(path: Path, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.export.load(str(path)).module()(x)
