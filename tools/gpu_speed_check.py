"""GPU check of the NAS-Bench-201 search step: one script for a machine with a GPU.

    python tools/gpu_speed_check.py                      # CUDA, full NB201 size, every variant
    python tools/gpu_speed_check.py --variants eager,amp --steps 20 --out gpu.json

For ``softmax`` (the dense step) and ``gumbel_hard`` (GDAS, single path) at C=16, N=5, 32x32,
batch 64 it times the search step (``Searcher.weight_step`` + ``Searcher.arch_step``, random
tensors; the input pipeline is not measured) under these variants, each in a fresh process:

* ``unfused``   the per-edge supernet in NCHW (``space.fused=false``, ``space.channels_last=false``);
* ``eager``     the fused cells (nas/supernet/fused.py) with channels_last, the default;
* ``amp``       ``eager`` under bf16 autocast (no grad scaler needed for bf16);
* ``compile``   ``amp`` with the supernet wrapped in ``torch.compile`` (default mode; GDAS samples a
                new path every step, so expect recompiles there: their count is reported);
* ``graph``     ``amp`` with the whole dense step (both halves and both optimiser steps) captured
                once in a CUDA graph and replayed (softmax only: a sampled path is not static).

It prints images/s, steps/s and peak memory per variant and projects a full NB201 GDAS search
(250 epochs of ceil(25000 / 64) = 391 steps, the GDAS paper's setting) from the fastest
``gumbel_hard`` variant's steps/s, excluding data loading and evaluation. ``--device cpu`` with a
small ``--C/--N/--resolution/--batch`` runs the same code as a smoke test.

Reproduces the GPU step of docs/results/speed.md (on a machine with a GPU).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

VARIANTS = ("unfused", "eager", "amp", "compile", "graph")
ESTIMATORS = ("softmax", "gumbel_hard")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--N", type=int, default=5)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compiles, captures)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--estimators", default=",".join(ESTIMATORS))
    p.add_argument("--timeout", type=float, default=300, help="seconds per variant before it is skipped")
    p.add_argument("--epochs", type=int, default=250, help="projected search: epochs")
    p.add_argument("--train-images", type=int, default=25000, help="projected search: weight-step images per epoch")
    p.add_argument("--out", default=None, help="also write the results as JSON")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: "estimator:variant"
    return p


def build(est_name: str, variant: str, args: argparse.Namespace):
    from nas.benchmarks.steps import nb201_step
    from nas.engine.distributed import World
    from nas.estimators import build_estimator

    device = torch.device(args.device)
    plain = variant == "unfused"
    searcher, batches = nb201_step(build_estimator(est_name), World(device=device), C=args.C, N=args.N,
                                   resolution=args.resolution, batch=args.batch, fused=not plain,
                                   channels_last=not plain,
                                   amp="bf16" if variant in ("amp", "compile", "graph") else "off")
    if variant == "graph":  # Adam's step counter must live on the device to be captured
        for group in searcher.opt.arch.param_groups:
            group["capturable"] = True
    if variant == "compile":
        searcher.model = torch.compile(searcher.model)
    return searcher, batches, device


def measure(est_name: str, variant: str, args: argparse.Namespace) -> dict:
    from nas.benchmarks.steps import search_step

    searcher, batches, device = build(est_name, variant, args)
    cuda = device.type == "cuda"
    step = search_step(searcher, batches)

    run = step
    if variant == "graph":
        if not cuda or est_name != "softmax":
            raise RuntimeError("graph needs CUDA and a static step (softmax)")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up on a side stream creates the optimiser state
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        run = graph.replay
    for _ in range(args.warmup):
        run()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    for _ in range(args.steps):
        run()
    if cuda:
        torch.cuda.synchronize(device)
    dt = (time.perf_counter() - t) / args.steps
    out = {"estimator": est_name, "variant": variant, "ms_per_step": 1000 * dt, "steps_per_s": 1 / dt,
           "images_per_s": args.batch / dt,
           "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else float("nan")}
    if variant == "compile":
        from torch._dynamo.utils import counters
        out["recompiles"] = sum(counters["stats"].values()) if "stats" in counters else None
        out["graph_breaks"] = sum(counters["graph_break"].values())
    return out


def run_child(spec: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--one", spec, "--device", args.device, "--C", str(args.C), "--N", str(args.N),
           "--resolution", str(args.resolution), "--batch", str(args.batch), "--steps", str(args.steps),
           "--warmup", str(args.warmup)]
    est, variant = spec.split(":")
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"estimator": est, "variant": variant, "error": f"over {args.timeout:.0f} s"}
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        return {"estimator": est, "variant": variant, "error": lines[-1] if lines else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.one:
        est, variant = args.one.split(":")
        print(json.dumps(measure(est, variant, args)))
        return 0
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available() \
        else args.device
    rows = []
    for est in args.estimators.split(","):
        for variant in args.variants.split(","):
            if variant == "graph" and est != "softmax":
                continue
            rows.append(run_child(f"{est}:{variant}", args))
            print(f"{est} {variant}: {rows[-1].get('images_per_s', rows[-1].get('error'))}", file=sys.stderr,
                  flush=True)
    steps_per_epoch = math.ceil(args.train_images / args.batch)
    print(f"device {device_name}, torch {torch.__version__}; C={args.C} N={args.N} {args.resolution}x{args.resolution} "
          f"batch {args.batch}; {args.steps} timed steps after {args.warmup} (one step = weight step + arch step)\n")
    print("| estimator | variant | ms / step | images / s | peak MiB | notes |\n| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "error" in r:
            print(f"| {r['estimator']} | {r['variant']} | – | – | – | failed: {r['error']} |")
            continue
        note = (f"recompiles {r.get('recompiles')}, graph breaks {r.get('graph_breaks')}"
                if r["variant"] == "compile" else "")
        print(f"| {r['estimator']} | {r['variant']} | {r['ms_per_step']:.1f} | {r['images_per_s']:.0f} "
              f"| {r['peak_mib']:.0f} | {note} |")
    gdas = [r for r in rows if r["estimator"] == "gumbel_hard" and "error" not in r]
    if gdas:
        best = max(gdas, key=lambda r: r["steps_per_s"])
        hours = args.epochs * steps_per_epoch / best["steps_per_s"] / 3600
        print(f"\nprojected NB201 GDAS search, {args.epochs} epochs x {steps_per_epoch} steps, at the fastest "
              f"gumbel_hard variant ({best['variant']}, {best['steps_per_s']:.1f} steps/s): {hours:.2f} h "
              f"(search steps only: no data loading, no evaluation)")
    if args.out:
        Path(args.out).write_text(json.dumps({"device": device_name, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
