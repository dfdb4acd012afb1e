"""``nas-bench --exported DIR``: the latency of an exported network where it will run, in ONNX
Runtime (``model.onnx``) and in PyTorch eager (the standalone ``model.py``, else the
``torch.export`` program), so that the latency a search budgeted (``cost.latency_table``) can be
compared with the one measured. Each is called ``warmup`` times untimed, then timed ``repeats``
times; the median is reported, in milliseconds per batch."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from ..errors import ConfigError
from . import META, onnx_format, pt2_format, python_format


def median_ms(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _input_shape(meta: Dict, batch: Optional[int]) -> List[int]:
    fixed = meta["input"]["shape"][0]
    if batch is None:
        batch = fixed if isinstance(fixed, int) else 1
    elif isinstance(fixed, int) and batch != fixed:
        raise ConfigError(f"the network was exported for batch {fixed}; time it with --batch {fixed} or export it "
                          f"again with --batch {batch} (or --dynamic-batch)")
    return [batch, *meta["input"]["shape"][1:]]


def bench_exported(folder: os.PathLike, *, threads: Optional[int] = None, batch: Optional[int] = None,
                   repeats: int = 50, warmup: int = 5) -> Dict[str, object]:
    """``{"shape", "threads", "rows": {runtime: median ms}}`` for the exports in ``folder``."""
    folder = Path(folder)
    if not (folder / META).is_file():
        raise ConfigError(f"{folder} has no {META}; give the folder nas-export wrote (RUN/export)")
    meta = json.loads((folder / META).read_text())
    shape = _input_shape(meta, batch)
    if threads:
        torch.set_num_threads(threads)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    rows: Dict[str, float] = {}
    if (folder / onnx_format.FILE).is_file():
        sess = onnx_format.session(folder / onnx_format.FILE, threads or 0)
        feed = {onnx_format.INPUT: np.ascontiguousarray(x.numpy())}
        rows["onnxruntime (model.onnx)"] = median_ms(lambda: sess.run(None, feed), repeats, warmup)
    eager = None
    if (folder / python_format.FILE).is_file():
        eager, name = python_format.load(folder / python_format.FILE), "pytorch eager (model.py)"
    elif (folder / pt2_format.FILE).is_file():
        eager, name = torch.export.load(str(folder / pt2_format.FILE)).module(), "pytorch (model.pt2)"
    if eager is not None:
        with torch.inference_mode():
            rows[name] = median_ms(lambda: eager(x), repeats, warmup)
    if not rows:
        raise ConfigError(f"{folder} holds no model.onnx, model.py or model.pt2; export with nas-export --format all")
    return {"shape": shape, "threads": torch.get_num_threads() if not threads else threads, "rows": rows,
            "genotype": meta.get("genotype"), "cpu": platform.processor() or platform.machine()}


def table(res: Dict[str, object], repeats: int, warmup: int) -> str:
    out = [f"{res['genotype']}  input {res['shape']}, {res['threads']} thread(s), median of {repeats} "
           f"after {warmup} warm-up calls, load {os.getloadavg()[0]:.2f}",
           "| runtime | ms per batch |", "| --- | ---: |"]
    out += [f"| {k} | {v:.3f} |" for k, v in res["rows"].items()]
    return "\n".join(out)
