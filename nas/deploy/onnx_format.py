"""``--format onnx``: ``torch.onnx.export`` with the dynamo exporter (``torch.export`` then
onnxscript's translation), opset :data:`OPSET`, input ``input`` and output ``logits``, checked
with ``onnx.checker``, run in ONNX Runtime."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .deps import require

NAME = "onnx"
FILE = "model.onnx"
OPSET = 18
INPUT, OUTPUT = "input", "logits"


def write(model: nn.Module, example: torch.Tensor, out: Path, dynamic_batch: bool) -> Path:
    onnx, _ = require("onnx", "onnxscript", what="--format onnx")
    dyn = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=OPSET, input_names=[INPUT],
                                    output_names=[OUTPUT], dynamic_shapes=dyn, verbose=False)
    path = out / FILE
    program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return path


def session(path: Path, threads: int = 0) -> Any:
    (ort,) = require("onnxruntime", what="running the onnx export")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(path: Path, x: torch.Tensor) -> torch.Tensor:
    sess = session(path)
    (y,) = sess.run([OUTPUT], {INPUT: np.ascontiguousarray(x.numpy())})
    return torch.from_numpy(y)
