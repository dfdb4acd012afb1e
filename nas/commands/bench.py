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

Side by side with xautodl (``--against-xautodl DIR``, DIR holding the ``xautodl/`` folder of
D-X-Y/AutoDL-Projects): the dense step (``softmax``) against xautodl's ``TinyNetworkDarts`` and the
single-path step (``gumbel_hard``) against its ``TinyNetworkGDAS``, both sides timed by the same
code (:func:`time_steps`), in fresh processes that alternate within one invocation, with the same
thread count; xautodl's step is its search loop's (:mod:`nas.commands.bench_xautodl`). The table
gives images/s, the speed-up over xautodl in wall time and in CPU time (the latter barely moves
when other jobs share the CPU), peak RSS, the convolutions' GFLOP/s inside each step (profiled
kernel time) and that of a standalone 3x3 convolution of the first stage's shape, with the load
average before and after.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
from typing import Dict, List

import torch

from nas.benchmarks.steps import conv_rate, nb201_step, search_step, time_steps, timed, timing_parser
from nas.commands import entry, guarded
from nas.errors import NasError
from nas.estimators import parse_spec


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas-bench", description=__doc__.split("\n\n")[0],
                                parents=[timing_parser(batch=None, batch_help="default 64 (with --exported: the export's batch)")])
    p.add_argument("--estimators", default=None, help="comma-separated specs (default: all, see above)")
    p.add_argument("--affine", action="store_true", help="BN with affine parameters in the cells")
    p.add_argument("--no-fused", dest="fused", action="store_false",
                   help="the per-edge cell (space.fused=false) instead of the fused one")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="NCHW activations (trainer.channels_last=false)")
    p.add_argument("--group-convs", choices=("auto", "on", "off"), default="auto",
                   help="fused cells: one conv per node for same-shaped candidates (space.group_convs; "
                        "auto: off on the CPU, on elsewhere)")
    p.add_argument("--partial-channels", type=int, default=1, metavar="K",
                   help="PC-DARTS: 1/K of the channels through each mixed op (space.partial_channels)")
    p.add_argument("--against-xautodl", metavar="DIR", default=None,
                   help="time xautodl's DARTS and GDAS steps (DIR/xautodl) against softmax and gumbel_hard")
    p.add_argument("--rounds", type=int, default=3, help="with --against-xautodl: alternating rounds")
    p.add_argument("--single-path-steps", type=int, default=40,
                   help="with --against-xautodl: timed steps of the single-path pair (its cost follows the "
                        "sampled path, one per step for all cells, so it needs more steps to average)")
    p.add_argument("--exported", metavar="DIR", default=None,
                   help="time a nas-export folder in ONNX Runtime and PyTorch eager (median of --steps calls)")
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
    """The estimator of a spec: ``NAME``, ``NAME+noise`` or ``NAME:single_path``."""
    return parse_spec(spec, single_path=True).build()


def measure(spec: str, args: argparse.Namespace) -> Dict[str, float]:
    from nas.engine.distributed import World

    device = torch.device(args.device)
    searcher, batches = nb201_step(build_estimator_from_spec(spec), World(device=device), C=args.C, N=args.N,
                                   resolution=args.resolution, batch=args.batch, affine=args.affine,
                                   fused=args.fused, channels_last=args.channels_last,
                                   partial_channels=args.partial_channels,
                                   group_convs={"auto": None, "on": True, "off": False}[args.group_convs])
    step = search_step(searcher, batches)
    out = time_steps(step, args, device)
    if args.against_xautodl:
        if device.type == "cpu":
            out.update(conv_rate(step, args))
        return out
    # each half on its own, in extra steps (the syncs between them would skew the total above):
    # the median over the steps of each phase's wall time
    phases: Dict[str, list] = {"weight": [], "arch": []}
    for _ in range(args.steps):
        (x, y), (xv, yv) = batches
        for name, fn in (("weight", lambda: searcher.weight_step(x, y)),
                         ("arch", lambda: searcher.arch_step(xv, yv, (x, y)))):
            phases[name].append(timed(fn, device))
    out.update({f"{k}_ms": 1000 * sorted(v)[len(v) // 2] for k, v in phases.items()})
    return out


def common_flags(args: argparse.Namespace) -> List[str]:
    """The size, timing and thread flags a child process measures with."""
    out = ["--C", str(args.C), "--N", str(args.N), "--resolution", str(args.resolution), "--batch", str(args.batch),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device]
    return out + (["--threads", str(args.threads)] if args.threads else [])


def run_one(spec: str, args: argparse.Namespace, module: str = "nas.commands.bench") -> Dict[str, float]:
    cmd = [sys.executable, "-m", module, "--one", spec] + common_flags(args)
    if module == "nas.commands.bench":
        cmd += ["--affine"] if args.affine else []
        cmd += [] if args.fused else ["--no-fused"]
        cmd += [] if args.channels_last else ["--no-channels-last"]
        cmd += ["--partial-channels", str(args.partial_channels), "--group-convs", args.group_convs]
        cmd += ["--against-xautodl", args.against_xautodl] if args.against_xautodl else []
    else:
        cmd += ["--dir", args.against_xautodl]
    # the child must import this package the way the parent did (a checkout is not installed)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [_package_root(), os.environ.get("PYTHONPATH")] if p))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        raise NasError(f"{spec}: {lines[-1] if lines else f'exit {r.returncode}'}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _package_root() -> str:
    import nas
    return os.path.dirname(os.path.dirname(os.path.abspath(nas.__file__)))


PAIRS = (("dense", "softmax", "darts"), ("single path", "gumbel_hard", "gdas"))


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def against_xautodl(args: argparse.Namespace) -> str:
    """Alternate this project's steps and xautodl's, each in a fresh process, ``args.rounds`` times;
    the table of medians over the rounds."""
    from nas.commands.bench_xautodl import check_dir

    check_dir(args.against_xautodl)
    load_before = load()
    runs: Dict[str, Dict[str, List[Dict[str, float]]]] = {name: {"nas": [], "xautodl": []} for name, _, _ in PAIRS}
    single = argparse.Namespace(**{**vars(args), "steps": args.single_path_steps})
    for r in range(args.rounds):
        for name, spec, model in PAIRS:
            sides = [("nas", spec, "nas.commands.bench"), ("xautodl", model, "nas.commands.bench_xautodl")]
            for side, what, module in (sides if r % 2 == 0 else sides[::-1]):  # who goes first alternates
                res = run_one(what, single if name == "single path" else args, module)
                runs[name][side].append(res)
                print(f"round {r + 1}: {side} {what}: {res['images_per_s']:.1f} images/s "
                      f"(CPU {args.batch / res['cpu_ms_per_step'] * 1000:.1f}), load {load()}",
                      file=sys.stderr, flush=True)
    load_after = load()

    def med(rs: List[Dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rs)

    threads = runs[PAIRS[0][0]]["nas"][0]["threads"]
    out = [f"C={args.C} N={args.N} {args.resolution}x{args.resolution} batch {args.batch}, {threads} thread(s), "
           f"{args.rounds} rounds x {args.steps} timed steps (single path: {args.single_path_steps}) after "
           f"{args.warmup} warm-up (one step = weight step + "
           f"arch step; each measurement in a fresh process, the two tools alternating); xautodl from "
           f"{args.against_xautodl}", f"load average (1, 5, 15 min) before: {load_before}; after: {load_after}", "",
           "| step | nas images/s (per CPU-s) | xautodl images/s (per CPU-s) | speed-up (wall) | speed-up (CPU time) "
           "| peak RSS MiB nas / xautodl | conv GFLOP per step nas / xautodl | conv GFLOP/s in the step's kernels "
           "nas / xautodl | standalone conv GFLOP/s (same processes) | conv GFLOP / step wall time nas / xautodl |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, spec, model in PAIRS:
        a, b = runs[name]["nas"], runs[name]["xautodl"]
        wall = [y["ms_per_step"] / x["ms_per_step"] for x, y in zip(a, b)]
        cpu = [y["cpu_ms_per_step"] / x["cpu_ms_per_step"] for x, y in zip(a, b)]
        cpu_ips = [args.batch * 1000 / med(rs, "cpu_ms_per_step") for rs in (a, b)]
        out.append(f"| {name}: {spec} vs {model.upper()} | {med(a, 'images_per_s'):.1f} ({cpu_ips[0]:.1f}) "
                   f"| {med(b, 'images_per_s'):.1f} ({cpu_ips[1]:.1f}) "
                   f"| {statistics.median(wall):.2f}x ({min(wall):.2f}-{max(wall):.2f}) "
                   f"| {statistics.median(cpu):.2f}x ({min(cpu):.2f}-{max(cpu):.2f}) "
                   f"| {med(a, 'peak_mib'):.0f} / {med(b, 'peak_mib'):.0f} "
                   f"| {med(a, 'conv_gflop'):.3g} / {med(b, 'conv_gflop'):.3g} "
                   f"| {med(a, 'conv_gflops'):.0f} / {med(b, 'conv_gflops'):.0f} "
                   f"| {med(a + b, 'standalone_gflops'):.0f} "
                   f"| {1000 * med(a, 'conv_gflop') / med(a, 'ms_per_step'):.0f} / "
                   f"{1000 * med(b, 'conv_gflop') / med(b, 'ms_per_step'):.0f} |")
    out += ["", f"standalone: a 3x3 convolution {args.C}->{args.C}, {args.resolution}x{args.resolution}, batch "
                f"{args.batch}, forward + both gradients, best of NHWC and NCHW, timed in each process right "
                f"after its profiled step; GFLOP/s in the step's kernels: conv FLOPs / profiled conv kernel time"]
    return "\n".join(out)


def table(rows: Dict[str, Dict[str, float]], args: argparse.Namespace) -> str:
    base = rows.get("softmax")
    mem = "peak GPU MiB" if args.device.startswith("cuda") else "peak RSS MiB"
    variant = ", ".join([f"partial channels 1/{args.partial_channels}"] * (args.partial_channels > 1)
                        + ["per-edge cells"] * (not args.fused) + ["NCHW"] * (not args.channels_last)
                        + [f"group convs {args.group_convs}"] * (args.group_convs != "auto"))
    out = [f"C={args.C} N={args.N} {args.resolution}x{args.resolution} batch {args.batch}, device {args.device}, "
           f"{next(iter(rows.values()))['threads']} thread(s), {args.steps} timed steps "
           f"(one step = weight step + arch step; the two halves timed alone in as many extra steps)"
           + (f"; {variant}" if variant else "") + f"; load average {load()}", "",
           f"| estimator | ms / step | images / s | vs softmax | {mem} | weight step ms | arch step ms |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for spec, r in rows.items():
        speed = f"{base['ms_per_step'] / r['ms_per_step']:.2f}x" if base else "–"
        out.append(f"| {spec} | {r['ms_per_step']:.0f} | {r['images_per_s']:.1f} | {speed} | {r['peak_mib']:.0f} "
                   f"| {r['weight_ms']:.0f} | {r['arch_ms']:.0f} |")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    if args.exported:
        from nas.deploy.bench import bench_exported, table as exported_table
        res = bench_exported(args.exported, threads=args.threads, batch=args.batch, repeats=max(args.steps, 1),
                             warmup=args.warmup)
        print(exported_table(res, max(args.steps, 1), args.warmup))
        return 0
    if args.batch is None:
        args.batch = 64
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one is not None:
        print(json.dumps(measure(args.one, args)))
        return 0
    if args.against_xautodl:
        print(against_xautodl(args))
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
