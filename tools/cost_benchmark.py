"""Searched cells under a cost budget against NAS-Bench-201's Pareto front.

    python tools/cost_benchmark.py RUN_DIR [RUN_DIR ...] [--table nb201_accuracy.csv] [--png front.png]

reads finished runs (nas-search or random-search folders whose config has ``cost.target``, or
the folder a ``nas-derive RUN --cost target=B --out DIR/genotype.yaml`` wrote: that run within B),
groups them by metric, budget and method (the estimator's name, ``random`` for random search),
and prints per budget a table of the cells' NAS-Bench-201 CIFAR-10 accuracy (mean ± std over
the runs), their cost in the benchmark network, whether every one is within the budget, the
front (the best cell of the table within the budget) and the gap to it. ``--png`` draws every
cell of the table, the front, the budgets and the searched cells.

A run budgeted on a device (``cost.device``) is scored by that device's measured latency.
``--device D`` (a device of the shipped latency table, ``nas-lookup --devices``) adds every
cell's latency on D to the tables (a MACs-budgeted run beside a device-budgeted one: does it keep
within D's budget?) and draws the plot on D's front, with D's budgets.

Reproduces the budget tables and the front pictures of docs/results/budgets.md and docs/devices.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.errors import NasError  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cost_benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--table", type=Path, default=None, help="NB201 CSV (default ../shared/data/nb201_accuracy.csv)")
    p.add_argument("--partial-table", action="store_true",
                   help="accept a table of a subset of the cells (fronts among those); default: all 15,625 required")
    p.add_argument("--png", type=Path, default=None, help="write the cost-accuracy picture here")
    p.add_argument("--device", default=None,
                   help="a device of the latency table: score and plot the cells on it (cpu, cuda, auto: ignored)")
    return p


def read_run(run: Path) -> dict:
    """A search (or random-search) folder, or a folder of ``nas-derive --out`` holding only a
    genotype.yaml whose ``derived:`` record names the run it was derived from: then the run's
    config and time, with the budget of ``derived.cost`` (``--cost KEY=VALUE``)."""
    record = yaml.safe_load((run / "genotype.yaml").read_text())
    derived = record.get("derived") or {}
    source = run if (run / "config.yaml").is_file() or "from" not in derived else (run / derived["from"]).resolve()
    cfg = yaml.safe_load((source / "config.yaml").read_text())
    metrics = json.loads((source / "metrics.json").read_text())
    cost = dict(cfg.get("cost") or {})
    if source != run:
        cost.update({k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in derived.get("cost", []))})
    method = "random" if metrics.get("method") == "random" else label(cfg, derived_within=source != run)
    for key in ("max_skip", "min_skip"):  # derive's skip rule overridden (nas-derive --max-skip, --min-skip)
        if key in derived:
            method += f", {key.replace('_', ' ')} {'none' if derived[key] is None else derived[key]}"
    for kv in derived.get("derive", []):  # any derive key overridden (nas-derive --derive KEY=VALUE)
        method += f", {kv.replace('=', ' ')}"
    target = cost.get("target")
    # a device-budgeted run is scored on its device's measured latency
    return dict(run=run, arch=record["arch"], method=method, metric=cost.get("device") or cost.get("metric", "macs"),
                target=None if target is None else float(target), seconds=metrics.get("search_seconds"))


def is_run(run: Path) -> bool:
    if (run / "metrics.json").is_file():
        return True
    g = run / "genotype.yaml"
    return g.is_file() and "from" in ((yaml.safe_load(g.read_text()) or {}).get("derived") or {})


def label(cfg: dict, derived_within: bool = False) -> str:
    """The estimator and how its budget entered the search: ``softmax hinge 1`` (penalty weight),
    ``softmax w=0`` (derive within the budget only), ``... derived`` (cost.estimate), ``ste sample
    within`` (cost.sample_within, with the penalty's label when it has a weight); a cell that
    ``nas-derive --cost`` took from a finished run: ``softmax derive within`` (the run had no
    budget) or the run's label ``+ derive within``."""
    from nas.config import CostConfig
    cost = cfg.get("cost") or {}
    weight = cost.get("weight", CostConfig().weight)
    name = cfg["estimator"]["name"] + ("+noise" if cfg["estimator"].get("noise") == "adaptive" else "")
    if derived_within:
        return f"{name} derive within" if not cost.get("target") or not weight else f"{label(cfg)} + derive within"
    if cost.get("sample_within"):
        return f"{name} sample within" + (f" + {label({**cfg, 'cost': {**cost, 'sample_within': False}})}" if weight else "")
    if cost.get("target") is None:
        return name  # no budget: nothing entered the search
    if not weight:
        return f"{name} w=0"
    return (f"{name} {cost.get('form', 'hinge')} {weight:g}" + (" derived" if cost.get("estimate") == "derived" else "")
            + (f" after {cost['warmup_epochs']:g} ep" if cost.get("warmup_epochs") else ""))


def fmt(xs) -> str:
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"


def cell_costs_of(metric: str) -> dict:
    """Cost by cell string: ``macs``/``params`` counted, a device's latency read from its table."""
    from nas.benchmarks.nb201_table import cell_costs
    if metric in ("macs", "params"):
        return cell_costs(metric)
    if metric == "latency":
        raise NasError("a run budgeted on cost.latency_table (this machine's profile) cannot be scored on the "
                       "benchmark network; budget it with cost.device")
    from nas.benchmarks.device_latency import DeviceTable
    return DeviceTable.load().by_arch(metric)


def run(args: argparse.Namespace) -> int:
    from nas.benchmarks import NB201Table
    from nas.benchmarks.budget_truth import budget_truth
    device = None if args.device in (None, "cpu", "cuda", "auto") else args.device
    table = NB201Table.load(args.table, partial=args.partial_table)
    runs = [read_run(r) for r in args.runs if is_run(r)]
    costs = {m: cell_costs_of(m) for m in {r["metric"] for r in runs} | ({device} if device else set())}
    groups = defaultdict(list)
    for r in runs:
        r["acc"], r["cost"] = table.accuracy(r["arch"]), costs[r["metric"]][str(table.score(r["arch"]).arch)]
        groups[(r["metric"], r["target"])].append(r)
    for (metric, target), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        best = table.best_within(target, costs[metric]) if target else (*table.best(), None)
        print(f"\n{metric} budget {target}: front {best[1]:.2f} ({best[0]})")
        extra = f" ms on {device} (max) |" if device and device != metric else ""
        # the rank measure: cells at or above the top-1% threshold of the cells within the budget
        thr = budget_truth(table, costs[metric], target).threshold if target else None
        print("| method | runs | NB201 CIFAR-10 | min | cost mean (max) | all within | gap to front | search s |"
              " CIFAR-100 | ImageNet16-120 |" + (f" ≥ top-1% ({thr:.2f}) |" if thr is not None else "") + extra)
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if thr is not None else "")
              + (" --- |" if extra else ""))
        by = defaultdict(list)
        for r in rs:
            by[r["method"]].append(r)
        for method, ms in sorted(by.items()):
            accs = [r["acc"] for r in ms]
            cs = [r["cost"] for r in ms]
            ok = all(c <= target * (1 + 1e-9) for c in cs) if target else True
            secs = [r["seconds"] for r in ms if r["seconds"] is not None]
            print(f"| {method} | {len(ms)} | {fmt(accs)} | {min(accs):.2f} | {statistics.mean(cs):.2f} "
                  f"({max(cs):.2f}) | {'yes' if ok else 'NO'} | {statistics.mean(accs) - best[1]:+.2f} | "
                  f"{statistics.mean(secs) if secs else float('nan'):.0f} |"
                  f" {fmt([table.score(r['arch']).acc['cifar100'] for r in ms])} |"
                  f" {fmt([table.score(r['arch']).acc['imagenet16_120'] for r in ms])} |"
                  + (f" {sum(a >= thr for a, c in zip(accs, cs) if c <= target * (1 + 1e-9))}/{len(ms)} |"
                     if thr is not None else "")
                  + (f" {statistics.mean(costs[device][table.score(r['arch']).arch] for r in ms):.4g} "
                     f"({max(costs[device][table.score(r['arch']).arch] for r in ms):.4g}) |" if extra else ""))
    if args.png:
        from nas.cost.plot import front_plot
        metric = device or ("macs" if "macs" in costs or not costs else sorted(costs)[0])
        costs.setdefault(metric, cell_costs_of(metric))
        c = costs[metric]
        marks = defaultdict(list)
        for r in runs:  # on a device: every run, scored by its cell's latency there
            if r["metric"] == metric or device:
                at = f" @{r['target']:g}" + ("" if r["metric"] == metric else f" {r['metric']}") if r["target"] else ""
                marks[f"{r['method']}{at}"].append((c[table.score(r['arch']).arch], r["acc"]))
        img = front_plot([(c[a], table.rows[a][0]) for a in table.rows],
                         [(x, acc) for x, _, acc in table.front(c)],
                         sorted({r["target"] for r in runs if r["metric"] == metric and r["target"]}), dict(marks),
                         x_label=(f"ms on {metric} (measured)" if device else f"{metric} of the benchmark network (M)"),
                         y_label="NB201 CIFAR-10 test %",
                         title="searched cells vs the NAS-Bench-201 Pareto front")
        img.save(args.png)
        print(f"\nplot written to {args.png}")
    return 0


def main(args: argparse.Namespace) -> int:
    from nas.commands import guarded
    return guarded("cost_benchmark", run, args, also=(OSError, KeyError, yaml.YAMLError))


if __name__ == "__main__":
    from nas.utils.pipes import exit_quietly_on_closed_pipe
    exit_quietly_on_closed_pipe()
    sys.exit(main(get_args_parser().parse_args()))
