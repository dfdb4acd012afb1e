"""Where a search's time goes: one ``nas-search`` run with a timer around each part.

    OMP_NUM_THREADS=1 python tools/profile_search.py CONFIG.yaml [key=value ...] [--cold-data] [--ops N]

runs the search as ``nas-search`` would (same config, same code path) and prints the seconds of
every part: imports, data (decoded-image cache or decoding), supernet and optimizers, the steps
(weight step, architecture step, and the rest of the loop: batches, meters, logging), BN
recalibration, the final evaluation, derive and files. ``--cold-data`` decodes the images as a
first run does (a fresh, temporary cache). ``--ops N`` also prints torch.profiler's table of the
ops of N weight+architecture steps (self CPU time, calls), and the share of the step's wall time
that the ops' kernels do not explain (Python and dispatch overhead). ``trainer.max_steps_per_epoch``
shortens the search; recalibration and evaluation keep their real sizes.

Reproduces the profile of docs/results/speed.md#the-cpu-proxy-search.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

T0, C0 = time.perf_counter(), time.process_time()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import nas.searcher.run as run_mod  # noqa: E402
from nas.config import config_from_cli  # noqa: E402
from nas.searcher.loop import Searcher  # noqa: E402

SECONDS: dict = defaultdict(float)
CPU: dict = defaultdict(float)  # this process's CPU seconds: on a shared machine, steadier than wall time
CALLS: dict = defaultdict(int)


def timed(owner, name: str, part: str) -> None:
    """Wrap ``owner.name`` so that its calls add their wall time to ``part``."""
    fn = getattr(owner, name)

    def wrapper(*a, **kw):
        t, c = time.perf_counter(), time.process_time()
        try:
            return fn(*a, **kw)
        finally:
            SECONDS[part] += time.perf_counter() - t
            CPU[part] += time.process_time() - c
            CALLS[part] += 1
    setattr(owner, name, wrapper)


def main() -> None:
    p = argparse.ArgumentParser(prog="profile_search", description=__doc__.split("\n\n")[0])
    p.add_argument("items", nargs="+", metavar="CONFIG.yaml | key=value")
    p.add_argument("--cold-data", action="store_true", help="decode the images (a fresh, temporary cache)")
    p.add_argument("--ops", type=int, default=0, metavar="N", help="profile the ops of N steps too")
    args = p.parse_args()
    if args.cold_data:
        os.environ["NAS_CACHE"] = tempfile.mkdtemp(prefix="nas-profile-cache-")
    SECONDS["imports (torch, nas)"] = time.perf_counter() - T0
    CPU["imports (torch, nas)"] = time.process_time() - C0
    cfg = config_from_cli(args.items)
    timed(run_mod, "make_loaders", "data: load/decode, split, loaders")
    timed(run_mod, "make_supernet", "supernet and cost model")
    timed(run_mod, "build_optimizers", "optimizers (first: imports torch._dynamo)")
    timed(run_mod, "recalibrate_bn", "BN recalibration (trainer.bn_batches)")
    timed(Searcher, "weight_step", "steps: weight step (fwd+bwd+SGD)")
    timed(Searcher, "arch_step", "steps: architecture step (fwd+bwd+Adam)")
    timed(Searcher, "train_epoch", "_epochs")
    timed(Searcher, "evaluate", "final evaluation (val split, eval mode)")
    timed(run_mod, "write_genotype", "genotype.yaml")
    start, cpu_start = time.perf_counter(), time.process_time()
    out = Path(tempfile.mkdtemp(prefix="nas-profile-run-"))
    run_mod.run_search(cfg, out / "run", quiet=True)
    total = time.perf_counter() - start + SECONDS["imports (torch, nas)"]
    cpu_total = time.process_time() - cpu_start + CPU["imports (torch, nas)"]
    weight, arch = "steps: weight step (fwd+bwd+SGD)", "steps: architecture step (fwd+bwd+Adam)"
    rest = "steps: the rest (batches, meters, schedules, log)"
    for d in (SECONDS, CPU):
        d[rest] = d.pop("_epochs") - d[weight] - d[arch]
    CALLS[rest] = CALLS.pop("_epochs") * 0 + CALLS[weight]
    other = "other (run folder, checkpoints, metrics)"
    SECONDS[other], CPU[other] = total - sum(SECONDS.values()), cpu_total - sum(CPU.values())
    print(f"search {cfg.name}: {total:.1f} s wall, {cpu_total:.1f} s CPU, one process, "
          f"{torch.get_num_threads()} thread(s)")
    print("| part | wall s | CPU s | share of CPU | calls | CPU ms per call |\n| --- | --- | --- | --- | --- | --- |")
    for part, s in SECONDS.items():
        n = CALLS.get(part, 0)
        per = f"{1000 * CPU[part] / n:.1f}" if n else ""
        print(f"| {part} | {s:.2f} | {CPU[part]:.2f} | {100 * CPU[part] / cpu_total:.1f}% | {n or ''} | {per} |")
    if args.ops:
        profile_ops(cfg, args.ops)


def profile_ops(cfg, n: int) -> None:
    """torch.profiler over ``n`` steps of a fresh search's first epoch (after 3 warm-up steps)."""
    from torch.profiler import ProfilerActivity, profile
    from dataclasses import replace
    cfg = replace(cfg, trainer=replace(cfg.trainer, epochs=1, max_steps_per_epoch=n + 3, bn_batches=0))
    state = {}
    step_fn = Searcher.arch_step

    def arch_step(self, *a, **kw):
        out = step_fn(self, *a, **kw)
        state["k"] = state.get("k", 0) + 1
        if state["k"] == 3:
            state["prof"] = profile(activities=[ProfilerActivity.CPU]).__enter__()
            state["t"] = time.perf_counter()
        elif state["k"] == n + 3:
            state["wall"] = time.perf_counter() - state["t"]
            state["prof"].__exit__(None, None, None)
        return out
    Searcher.arch_step = arch_step
    run_mod.run_search(cfg, Path(tempfile.mkdtemp(prefix="nas-profile-ops-")) / "run", quiet=True)
    prof = state["prof"]
    events = prof.key_averages()
    print(f"\n{n} steps (weight + architecture), profiled: {state['wall'] / n * 1000:.1f} ms per step (with the "
          f"profiler's own overhead)")
    print(events.table(sort_by="self_cpu_time_total", row_limit=25))
    kernels = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::")) / 1e6
    print(f"aten ops' self time: {kernels / n * 1000:.1f} ms per step; "
          f"ops called per step: {sum(e.count for e in events if e.key.startswith('aten::')) / n:.0f}")


if __name__ == "__main__":
    main()
