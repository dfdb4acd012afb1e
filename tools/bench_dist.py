"""Data-parallel search-step throughput and memory per rank: W processes x T threads.

    python tools/bench_dist.py                      # CPU: 1 process x 2 threads against 2 x 1,
                                                    # NB201 at the CPU proxy size and at full size
    python tools/bench_dist.py --device cuda --layouts 1x4 --amp off,bf16,fp16 --sizes full
                                                    # one GPU, with and without AMP (prepared GPU check)
    python tools/bench_dist.py --memory configs/nb201_cifar10_cpu.yaml [key=value ...]
                                                    # memory per rank, 1 and 2 ranks

One *search step* is what the alternating search does per global batch: a weight step and an
architecture step (first order, softmax) of the NB201 supernet through
:class:`nas.searcher.loop.Searcher`, each rank on its slice of the global batch, gradients
averaged over the ranks (:mod:`nas.engine.distributed`, gloo on CPU, nccl on CUDA). images/s =
global batch / seconds per search step (the median of the timed steps; random data, the input
pipeline is not measured). Each layout runs under ``torch.distributed.run`` in fresh processes.

``--memory CONFIG``: each rank builds the search's loaders from CONFIG (rank 0 of each machine
decodes, the others map its tensors, :meth:`World.node_shared`), touches every page of the images
(as an epoch would) and reports its resident memory (RSS, which counts shared pages in every
process) and proportional memory (PSS, which splits them between the processes that map them).

Reproduces the tables of docs/results/data-parallel.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NB201_TRAIN = 25000  # the weight half of CIFAR-10's train split: steps per epoch = 25000 / batch
SIZES = {"proxy": dict(C=16, N=1, resolution=16), "full": dict(C=16, N=5, resolution=32)}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_dist", description=__doc__.split("\n\n")[0])
    p.add_argument("--layouts", default="1x2,2x1", help="comma-separated PROCESSESxTHREADS")
    p.add_argument("--sizes", default="proxy,full", help=f"comma-separated, from {', '.join(SIZES)}")
    p.add_argument("--batch", type=int, default=64, help="global batch (split between the processes)")
    p.add_argument("--steps", type=int, default=6, help="timed search steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--amp", default="off", help="comma-separated trainer.amp modes")
    p.add_argument("--sync-bn", action="store_true", help="synchronised BN (trainer.sync_bn)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--project", type=int, default=50, metavar="EPOCHS",
                   help="project a search of EPOCHS epochs over 25k weight images (NB201's split of CIFAR-10)")
    p.add_argument("--memory", default=None, metavar="CONFIG", help="report memory per rank for CONFIG's data")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="--memory: overrides of CONFIG (data.root=...)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one layout, JSON out
    return p


def memory_mib() -> Dict[str, float]:
    """This process's RSS, PSS and peak RSS in MiB (Linux)."""
    out = {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key.lower()] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def worker(spec: Dict) -> None:
    import torch

    from nas.benchmarks.steps import nb201_step, search_step, timed
    from nas.engine.distributed import setup
    from nas.estimators import build_estimator

    world = setup(spec["device"])
    device = world.device
    report: Dict = {"rank": world.rank}
    if spec.get("memory"):
        from nas.config import load_config
        from nas.searcher.run import make_loaders
        cfg = load_config(spec["memory"], [*spec.get("overrides", []), "trainer.max_steps_per_epoch=1"])
        t0 = time.perf_counter()
        train, val, info = make_loaders(cfg, device, world=world)
        load_s = time.perf_counter() - t0
        for loader in (train, val):  # one byte per 4 KiB page: every page of the images resident, as after an epoch
            if hasattr(loader, "images"):
                int(loader.images.reshape(-1)[::4096].sum())
        report.update(load_s=load_s, images=info["n_train"] + info["n_val"],
                      after_load=memory_mib(), batches=len(train))
        x, y = next(iter(train))
        report["local_batch"] = len(y)
        reports = world.gather(report)
        if world.is_main:
            print(json.dumps(reports), flush=True)
        return
    searcher, batches = nb201_step(build_estimator("softmax"), world, C=spec["C"], N=spec["N"],
                                   resolution=spec["resolution"], batch=spec["batch"], amp=spec["amp"],
                                   sync_bn=spec["sync_bn"])
    step = search_step(searcher, batches)

    for _ in range(spec["warmup"]):
        step()
    times = []
    for _ in range(spec["steps"]):
        world.barrier()
        times.append(timed(step, device))
    med = sorted(times)[len(times) // 2]
    report.update(ms=1000 * med, threads=torch.get_num_threads(), memory=memory_mib(),
                  gpu_peak_mib=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None)
    reports = world.gather(report)
    if world.is_main:
        slowest = max(r["ms"] for r in reports)  # a step ends when the last rank's all-reduce does
        print(json.dumps({"ms": slowest, "images_per_s": 1000 * spec["batch"] / slowest, "ranks": reports}),
              flush=True)


def launch(procs: int, threads: int, spec: Dict) -> Dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
           __file__, "--worker", json.dumps(spec)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in r.stdout.splitlines() if line.startswith(("{", "["))]
    if r.returncode != 0 or not lines:
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"bench_dist: {procs}x{threads} failed: " + " | ".join(tail))
    return json.loads(lines[-1])


def run(args: argparse.Namespace) -> int:
    if args.worker is not None:
        worker(json.loads(args.worker))
        return 0
    layouts = [tuple(int(v) for v in lay.split("x")) for lay in args.layouts.split(",")]
    if args.memory:
        print(f"memory per rank, data of {args.memory} (MiB; RSS counts pages shared between ranks in "
              f"each, PSS splits them)\n")
        print("| ranks | rank | images | load s | RSS after load | PSS after load | peak RSS |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for procs in sorted({p for p, _ in layouts}):
            for r in launch(procs, 1, {"device": args.device, "memory": args.memory, "overrides": args.overrides}):
                m = r["after_load"]
                print(f"| {procs} | {r['rank']} | {r['images']} | {r['load_s']:.1f} | {m.get('rss', 0):.0f} | "
                      f"{m.get('pss', 0):.0f} | {m['peak_rss']:.0f} |")
        return 0
    rows: List[str] = []
    for size in args.sizes.split(","):
        for amp in args.amp.split(","):
            for procs, threads in layouts:
                spec = {**SIZES[size], "batch": args.batch, "steps": args.steps, "warmup": args.warmup,
                        "amp": amp, "sync_bn": args.sync_bn, "device": args.device}
                res = launch(procs, threads, spec)
                mem = (f"{max(r['gpu_peak_mib'] for r in res['ranks']):.0f}" if args.device.startswith("cuda")
                       else f"{max(r['memory']['peak_rss'] for r in res['ranks']):.0f}")
                s = SIZES[size]
                hours = args.project * -(-NB201_TRAIN // args.batch) * res["ms"] / 3.6e6
                rows.append(f"| {size} (C={s['C']} N={s['N']} {s['resolution']}x{s['resolution']}) | {amp} | "
                            f"{procs} x {threads} | {res['ms']:.0f} | {res['images_per_s']:.1f} | {mem} | {hours:.1f} |")
                print(rows[-1], file=sys.stderr, flush=True)
    mem = "peak GPU MiB per rank" if args.device.startswith("cuda") else "peak RSS MiB per rank"
    print(f"search step (weight + architecture step, softmax, first order), global batch {args.batch}, "
          f"device {args.device}, sync_bn {args.sync_bn}, median of {args.steps} steps\n")
    print(f"| size | amp | processes x threads | ms / step | images / s | {mem} | h for {args.project} epochs |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(run(get_args_parser().parse_args()))
