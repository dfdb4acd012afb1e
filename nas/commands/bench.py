"""Search-step throughput and peak memory per estimator on the NAS-Bench-201 supernet.

    nas-bench --C 16 --N 5 --resolution 32 --batch 64

One *search step* is what the alternating search loop does per batch: a weight step (forward,
backward, clip, SGD) on a train batch and an architecture step (forward, backward, Adam / Bop) on a
val batch, both through :class:`nas.searcher.loop.Searcher`. images/s = batch / seconds per search
step. Data are random tensors (the input pipeline is not measured). Each estimator runs in a fresh
process, so that the CPU peak memory (max RSS) of one does not hide another's; on CUDA the peak
is ``torch.cuda.max_memory_allocated``.

Estimator specs: a registered name, ``NAME+noise`` (adaptive noise) or ``NAME:single_path``
(single-path execution of the selected candidate for ste/bop). Default: every categorical
estimator, its single-path variant where it has one, and the noise variants.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List


import torch

from nas.commands import entry, guarded
from nas.errors import NasError


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas-bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--C", type=int, default=16, help="channels of the first stage")
    p.add_argument("--N", type=int, default=5, help="cells per stage")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed search steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed search steps first")
    p.add_argument("--estimators", default=None, help="comma-separated specs (default: all, see above)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--affine", action="store_true", help="BN with affine parameters in the cells")
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure one spec, print JSON
    return p


def default_specs() -> List[str]:
    from nas.estimators import CATEGORICAL, ESTIMATORS, noise_capable

    names = [n for n in ESTIMATORS.names() if CATEGORICAL in ESTIMATORS.get(n).kinds]
    specs = list(names)
    specs += [f"{n}:single_path" for n in names
              if "single_path" in inspect.signature(ESTIMATORS.get(n).__init__).parameters]
    specs += [f"{n}+noise" for n in noise_capable() if n in names]
    return specs


def build_estimator_from_spec(spec: str):
    from nas.estimators import build_estimator

    name, _, opt = spec.partition(":")
    name, _, noise = name.partition("+")
    if opt not in ("", "single_path") or noise not in ("", "noise"):
        raise NasError(f"estimator spec '{spec}': use NAME, NAME+noise or NAME:single_path")
    kw = {"single_path": True} if opt else {}
    return build_estimator(name, noise="adaptive" if noise else "none", **kw)


def measure(spec: str, args: argparse.Namespace) -> Dict[str, float]:
    from nas.searcher.loop import Searcher
    from nas.searcher.optim import build_optimizers
    from search_spaces import get_space

    device = torch.device(args.device)
    torch.manual_seed(0)
    est = build_estimator_from_spec(spec)
    model = get_space("nb201").build_supernet(est, num_classes=10, C=args.C, N=args.N, affine=args.affine,
                                              generator=torch.Generator().manual_seed(0)).to(device)
    opts = build_optimizers(model, est, epochs=1)
    shape = (args.batch, 3, args.resolution, args.resolution)
    batches = [(torch.randn(shape, device=device), torch.randint(0, 10, (args.batch,), device=device))
               for _ in range(2)]
    searcher = Searcher(model, est, opts, [batches[0]], [batches[1]], epochs=1)
    est.set_progress(0, 1)
    model.train()

    def step() -> None:
        (x, y), (xv, yv) = batches
        searcher.weight_step(x, y)
        searcher.arch_step(xv, yv, (x, y))

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = (time.perf_counter() - t0) / args.steps
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # each half on its own, in extra steps (the syncs between them would skew the total above):
    # the median over the steps of each phase's wall time
    phases: Dict[str, list] = {"weight": [], "arch": []}
    for _ in range(args.steps):
        (x, y), (xv, yv) = batches
        for name, fn in (("weight", lambda: searcher.weight_step(x, y)),
                         ("arch", lambda: searcher.arch_step(xv, yv, (x, y)))):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            phases[name].append(time.perf_counter() - t)
    med = {k: 1000 * sorted(v)[len(v) // 2] for k, v in phases.items()}
    return {"ms_per_step": 1000 * dt, "images_per_s": args.batch / dt, "peak_mib": peak,
            "rss_before_mib": rss0, "threads": torch.get_num_threads(),
            "weight_ms": med["weight"], "arch_ms": med["arch"]}


def run_one(spec: str, args: argparse.Namespace) -> Dict[str, float]:
    cmd = [sys.executable, "-m", "nas.commands.bench", "--one", spec, "--C", str(args.C), "--N", str(args.N),
           "--resolution", str(args.resolution), "--batch", str(args.batch), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--device", args.device]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    cmd += ["--affine"] if args.affine else []
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        raise NasError(f"{spec}: {lines[-1] if lines else f'exit {r.returncode}'}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def table(rows: Dict[str, Dict[str, float]], args: argparse.Namespace) -> str:
    base = rows.get("softmax")
    mem = "peak GPU MiB" if args.device.startswith("cuda") else "peak RSS MiB"
    out = [f"C={args.C} N={args.N} {args.resolution}x{args.resolution} batch {args.batch}, device {args.device}, "
           f"{next(iter(rows.values()))['threads']} thread(s), {args.steps} timed steps "
           f"(one step = weight step + arch step; the two halves timed alone in as many extra steps)", "",
           f"| estimator | ms / step | images / s | vs softmax | {mem} | weight step ms | arch step ms |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for spec, r in rows.items():
        speed = f"{base['ms_per_step'] / r['ms_per_step']:.2f}x" if base else "–"
        out.append(f"| {spec} | {r['ms_per_step']:.0f} | {r['images_per_s']:.1f} | {speed} | {r['peak_mib']:.0f} "
                   f"| {r['weight_ms']:.0f} | {r['arch_ms']:.0f} |")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one is not None:
        print(json.dumps(measure(args.one, args)))
        return 0
    specs = [s.strip() for s in args.estimators.split(",")] if args.estimators else default_specs()
    for s in specs:
        build_estimator_from_spec(s)  # a typo fails before minutes of measuring
    rows = {}
    for s in specs:
        rows[s] = run_one(s, args)
        print(f"{s}: {rows[s]['images_per_s']:.1f} images/s", file=sys.stderr, flush=True)
    print(table(rows, args))
    return 0


def main(args: argparse.Namespace) -> int:
    return guarded("nas-bench", run, args)


def cli(argv=None) -> int:
    return entry("bench", argv)


if __name__ == "__main__":
    sys.exit(cli())
