"""The NAS-Bench-201 search step as the speed benchmarks time it (``nas-bench``, its xautodl side,
``tools/bench_dist.py``, ``tools/gpu_speed_check.py``): one builder of the supernet, its optimizers,
two random batches and the :class:`~nas.searcher.loop.Searcher` that steps on them, prepared as a
run prepares its model (:func:`nas.engine.prepare.prepare_model`, :class:`~nas.engine.prepare.RunHooks`),
and the timers every side uses.

One *search step* is what the alternating search loop does per batch: a weight step (forward,
backward, clip, SGD) on a train batch and an architecture step (forward, backward, Adam / Bop) on a
val batch. The data are random tensors: the input pipeline is not measured.
"""
from __future__ import annotations

import argparse
import resource
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..engine.amp import Precision
from ..engine.distributed import World
from ..engine.prepare import RunHooks, prepare_model

Batch = Tuple[torch.Tensor, torch.Tensor]


def timing_parser(batch: Optional[int] = 64, batch_help: Optional[str] = None) -> argparse.ArgumentParser:
    """The flags every side of ``nas-bench`` takes (a parent parser): the step's size, how it is
    timed, and ``--one`` (internal: measure one thing in this process and print JSON)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--C", type=int, default=16, help="channels of the first stage")
    p.add_argument("--N", type=int, default=5, help="cells per stage")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch", type=int, default=batch, help=batch_help)
    p.add_argument("--steps", type=int, default=10, help="timed search steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed search steps first")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    return p


def nb201_step(estimator: Any, world: World, *, C: int, N: int, resolution: int, batch: int, amp: str = "off",
               sync_bn: bool = False, **supernet: Any) -> Tuple[Any, List[Batch]]:
    """``(searcher, batches)``: the NB201 supernet (``supernet``: more ``build_supernet``
    keywords) of ``estimator`` prepared on ``world`` (``sync_bn``; ``amp``: ``trainer.amp``), and
    two random batches of the global size ``batch``, of which this rank holds its slice (the
    same data whatever the number of ranks)."""
    from ..searcher.loop import Searcher
    from ..searcher.optim import build_optimizers
    from ..spaces import get_space

    torch.manual_seed(0)
    model = get_space("nb201").build_supernet(estimator, num_classes=10, C=C, N=N,
                                              generator=torch.Generator().manual_seed(0), **supernet)
    model = prepare_model(model, world, sync_bn=sync_bn)
    opts = build_optimizers(model, estimator, epochs=1)
    lo, hi = batch * world.rank // world.size, batch * (world.rank + 1) // world.size
    g = torch.Generator().manual_seed(1)
    shape = (batch, 3, resolution, resolution)
    batches = [(torch.randn(shape, generator=g)[lo:hi].to(world.device),
                torch.randint(0, 10, (batch,), generator=g)[lo:hi].to(world.device)) for _ in range(2)]
    searcher = Searcher(model, estimator, opts, [batches[0]], [batches[1]], epochs=1,
                        hooks=RunHooks(world, Precision(amp, world.device)))
    estimator.set_progress(0, 1)
    model.train()
    return searcher, batches


def search_step(searcher: Any, batches: Sequence[Tuple[torch.Tensor, torch.Tensor]]) -> Callable[[], None]:
    """One timed search step: a weight step on ``batches[0]``, then an architecture step on
    ``batches[1]`` (first order, or unrolled on ``batches[0]``)."""
    (x, y), (xv, yv) = batches

    def step() -> None:
        searcher.weight_step(x, y)
        searcher.arch_step(xv, yv, (x, y))
    return step


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of one call of ``fn`` (on CUDA between two synchronisations: the kernels' time)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def time_steps(step: Callable[[], None], args: argparse.Namespace, device: torch.device) -> Dict[str, float]:
    """Wall and CPU time per call of ``step`` after ``args.warmup`` untimed calls, and peak memory."""
    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = (time.perf_counter() - t0) / args.steps
    dc = (time.process_time() - c0) / args.steps
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    return {"ms_per_step": 1000 * dt, "cpu_ms_per_step": 1000 * dc, "images_per_s": args.batch / dt,
            "peak_mib": peak, "threads": torch.get_num_threads()}


def conv_rate(step: Callable[[], None], args: argparse.Namespace) -> Dict[str, float]:
    """The convolutions of one ``step`` (CPU): their FLOPs (forward and backward, as
    ``torch.utils.flop_counter`` counts them) and their kernels' time (profiler, self time of the
    convolution ops), in a counted step and a profiled step; and, right after in the same process
    (so under the same load), a standalone 3x3 convolution of the first stage's shape."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        step()
    flops = sum(n for op, n in fc.get_flop_counts().get("Global", {}).items() if "convolution" in str(op))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    us = sum(e.self_cpu_time_total for e in prof.key_averages() if "conv" in e.key)
    return {"conv_gflop": flops / 1e9, "conv_ms": us / 1000, "conv_gflops": flops / 1e3 / max(us, 1e-9),
            "standalone_gflops": max(standalone_conv_rate(args.C, args.resolution, args.batch, channels_last)
                                     for channels_last in (True, False))}


def standalone_conv_rate(C: int, resolution: int, batch: int, channels_last: bool) -> float:
    """GFLOP/s of a 3x3 convolution C -> C (stride 1, the first stage's shape) with both of its
    gradients, the best of a few repetitions."""
    import torch.nn.functional as F

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, C, resolution, resolution).to(memory_format=fmt).requires_grad_()
    w = torch.randn(C, C, 3, 3, requires_grad=True)
    g = torch.randn(batch, C, resolution, resolution).to(memory_format=fmt)
    flops = 3 * 2 * 9 * C * C * resolution * resolution * batch  # forward, grad input, grad weight
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        torch.autograd.grad(F.conv2d(x, w, padding=1), (x, w), g)
        best = min(best, time.perf_counter() - t)
    return flops / best / 1e9
