"""NAS-Bench-201 ground truth of a searched cell.

    nas-lookup RUN_DIR | genotype.yaml | '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' [...]

prints the CIFAR-10 / CIFAR-100 / ImageNet16-120 test accuracy of each cell in the benchmark
table and its rank among all cells (1 = best; tied cells share the best rank).

    nas-lookup --budget 55 [--metric macs|params] [--dataset cifar10]

prints the best cell of the table whose benchmark network (C=16, N=5, 32x32) costs at most the
budget (millions of MACs, which are NB201's FLOPs, or of parameters): the Pareto front's answer.

    nas-lookup --budget 55 --top 10 [--exclude none] [--max-skip 1]

lists the 10 best cells within the budget (among those a derive rule can give: never an op of
``--exclude``, at most ``--max-skip`` skip connections) with their accuracy on all three datasets,
and how far the three datasets agree on their order (Kendall's τ_b): where the benchmark's own
datasets disagree, the gaps between those cells are within its training noise, and no proxy
search can be expected to order them.

    nas-lookup --devices
    nas-lookup --device pixel3 --budget 10.68 [--top 10]     # or --budget 50% (a percentile)
    nas-lookup --budget 55 --front                           # the same report on MACs

lists the 27 devices of the shipped latency table (range, and the fit of their latency models);
on a device (or with ``--front``), prints what the budget admits: how many cells and their share,
the Pareto front within it (CIFAR-10, with CIFAR-100 and ImageNet16-120 beside), the top-1%
threshold, the MACs budget admitting the same share and where its best cell lands on the
device, and the best cell and top-1% count under each derive rule (docs/devices.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from nas.benchmarks import DATASETS, DEFAULT_TABLE, NB201Table
from nas.commands import entry, guarded
from nas.errors import NasError

LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16_120": "ImageNet16-120"}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas-lookup", description=__doc__.split("\n\n")[0])
    p.add_argument("archs", nargs="*", metavar="RUN_DIR|genotype.yaml|ARCH",
                   help="a run folder, a genotype.yaml or an NB201 cell string")
    p.add_argument("--table", type=Path, default=None,
                   help=f"CSV with columns arch,{','.join(DATASETS)} (default {DEFAULT_TABLE})")
    p.add_argument("--partial-table", action="store_true",
                   help="accept a table of a subset of the cells (ranks among those); default: all 15,625 required")
    p.add_argument("--budget", default=None,
                   help="print the best cell costing at most this (millions, or ms with --device; P%%: a percentile)")
    p.add_argument("--metric", choices=("macs", "params"), default="macs", help="the budget's metric")
    p.add_argument("--dataset", choices=DATASETS, default="cifar10", help="the accuracy the budget's best cell maximises")
    p.add_argument("--top", type=int, default=None, metavar="N",
                   help="with --budget: list the N best cells within it and their rank agreement across datasets")
    p.add_argument("--exclude", default=None, metavar="OPS",
                   help="with --budget: only cells without these ops (comma-separated), as derive's --exclude")
    p.add_argument("--max-skip", type=int, default=None, metavar="M",
                   help="with --budget: only cells with at most M skip_connect edges, as derive's --max-skip")
    p.add_argument("--device", default=None,
                   help="a device of the latency table (nas-lookup --devices): budgets in ms on it "
                        "(cpu, cuda, auto: ignored, a uniform tool interface)")
    p.add_argument("--devices", action="store_true", help="list the devices of the latency table and their model fits")
    p.add_argument("--front", action="store_true",
                   help="with --budget: the full ground-truth report (implied by --device)")
    return p


def format_score(table: NB201Table, arch) -> str:
    s = table.score(arch)
    parts = [f"{LABELS[d]} {s.acc[d]:.2f}% (rank {s.rank[d]}/{s.n})" for d in DATASETS]
    return f"{s.arch}\n  " + "\n  ".join(parts)


TORCH_DEVICES = ("cpu", "cuda", "auto")


def run(args: argparse.Namespace) -> int:
    from nas.benchmarks.budget_truth import parse_budget
    from nas.benchmarks.nb201_table import cell_costs

    if args.devices:
        print(format_devices())
        return 0
    table = NB201Table.load(args.table, partial=args.partial_table)
    device = None if args.device in (None, *TORCH_DEVICES) else args.device
    if not args.archs and args.budget is None:
        raise NasError("give a cell (run folder, genotype.yaml or cell string) or --budget M")
    if args.budget is None and (args.top is not None or args.exclude is not None or args.max_skip is not None):
        raise NasError("--top, --exclude and --max-skip list cells within a budget; give --budget M too")
    for a in args.archs:
        print(format_score(table, a))
    if args.budget is None:
        return 0
    if device is not None:
        from nas.benchmarks.device_latency import DeviceTable
        dt = DeviceTable.load()
        dt.column(device)  # unknown: one line listing the known ones
        costs, unit = dt.by_arch(device), f"ms on {device}"
    else:
        costs, unit = cell_costs(args.metric), {"macs": "M MACs", "params": "M params"}[args.metric]
    budget = parse_budget(args.budget, costs)
    if device is not None or args.front:
        print(format_truth(table, costs, budget, unit, args, device))
    elif args.top is None and args.exclude is None and args.max_skip is None:
        print(table.format_budget(budget, args.metric, args.dataset))
    else:
        print_top(table, args, costs, budget, unit)
    return 0


def format_devices() -> str:
    """One row per device: latency range, the fit of the additive and the full model, and the
    noise ceiling of the measurements (:func:`nas.cost.latency_model.noise_ceiling`)."""
    from nas.benchmarks.device_latency import DeviceTable
    from nas.cost.device import device_models
    from nas.cost.latency_model import noise_ceiling
    t = DeviceTable.load()
    models = device_models()
    lines = [f"{len(t.devices)} devices of {t.path.name} (ms of NAS-Bench-201's network, C=16 N=5 32x32; "
             f"model: docs/devices.md)",
             "| device | fastest ms | median ms | slowest ms | additive rho | additive error | model rho | model error "
             "| model r | noise ceiling r |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for d in t.devices:
        ms, m = t.latency(d), models[d]
        lines.append(f"| {d} | {float(ms.min()):.6g} | {float(ms.median()):.4g} | {float(ms.max()):.4g} | "
                     f"{m.additive_fit.rho:.4f} | {100 * m.additive_fit.mean_error:.1f}% | {m.fit.rho:.4f} | "
                     f"{100 * m.fit.mean_error:.1f}% | {m.fit.r:.4f} | {noise_ceiling(ms):.4f} |")
    return "\n".join(lines)


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def accs_text(accs) -> str:
    return "  ".join(f"{LABELS[d]} {a:.2f}" for d, a in zip(DATASETS, accs))


def format_truth(table: NB201Table, costs, budget: float, unit: str, args: argparse.Namespace,
                 device: Optional[str]) -> str:
    """The ground-truth report of one budget (nas.benchmarks.budget_truth)."""
    from nas.benchmarks.budget_truth import RULES, budget_truth, count_at_least, same_share_budget
    from nas.benchmarks.budget_truth import derive_rule as rule_of
    from nas.benchmarks.nb201_table import cell_costs

    fastest = min(costs.values())
    if budget < fastest:
        raise NasError(f"--budget {budget:g} {unit} is below the cheapest cell ({fastest:.6g}); raise it")
    n_top = args.top or 0
    t = budget_truth(table, costs, budget, args.dataset, top=n_top)
    arch, accs, cost = t.front
    out = [f"budget {budget:.6g} {unit}: {t.within:,} of {t.total:,} cells within ({100 * t.share:.1f}% of the space)",
           f"front: {accs_text(accs)}  ({cost:.6g})  {arch}",
           f"top-1% threshold: {LABELS[args.dataset]} {t.threshold:.2f} (the {ordinal(max(1, t.within // 100))} best within)"]
    front = [(c, a) for c, a, _ in table.front(costs, args.dataset) if c <= budget * (1 + 1e-12)]
    out.append(f"Pareto front within the budget ({len(front)} cells, by {LABELS[args.dataset]}):")
    out.append(f"  {'cost':>9}  CIFAR-10  CIFAR-100  ImageNet16-120  cell")
    for c, a in front:
        r = table.rows[a]
        out.append(f"  {c:9.4f}  {r[0]:8.2f}  {r[1]:9.2f}  {r[2]:14.2f}  {a}")
    if device is not None:
        macs = cell_costs("macs")
        m = same_share_budget(macs, t.within)
        best = budget_truth(table, macs, m, args.dataset).front
        over = costs[best[0]] > budget * (1 + 1e-12)
        out.append(f"same share on MACs: {m:.4f} M MACs admits {budget_truth(table, macs, m).within:,} cells; its best "
                   f"cell scores {accs_text(best[1])} and runs {costs[best[0]]:.4g} ms on {device} "
                   f"({'OVER the budget' if over else 'within'})")
    out.append("derive rules (cells the rule admits within the budget; their best; how many reach the threshold):")
    for label, exclude, max_skip, live in RULES:
        keep = rule_of(exclude, max_skip, live)
        r = budget_truth(table, costs, budget, args.dataset, keep=keep)
        best = f"{r.front[1][DATASETS.index(args.dataset)]:.2f}" if r.front else "none fits"
        out.append(f"  {label:<22} {r.within:6,} cells  best {best}  "
                   f"{count_at_least(table, costs, budget, t.threshold, keep, args.dataset)} at or above {t.threshold:.2f}")
    if n_top:
        top = budget_truth(table, costs, budget, args.dataset, keep=derive_rule(args.exclude, args.max_skip), top=n_top).top
        rule = (f", without {args.exclude}" if args.exclude else "") + (
            f", at most {args.max_skip} skip_connect" if args.max_skip is not None else "")
        out.append(f"{len(top)} best cells within the budget{rule}:")
        for a, r, c in top:
            out.append(f"  {c:9.4f}  {r[0]:8.2f}  {r[1]:9.2f}  {r[2]:14.2f}  {a}")
    return "\n".join(out)


def derive_rule(exclude: Optional[str], max_skip: Optional[int]):
    """``keep(arch)``: the cell uses no op of ``exclude`` and at most ``max_skip`` skip connections."""
    from nas.benchmarks.budget_truth import derive_rule as rule_of
    from nas.spaces.nb201 import OPS

    banned = {op.strip() for op in (exclude or "").split(",") if op.strip()}
    unknown = sorted(banned - set(OPS))
    if unknown:
        raise NasError(f"--exclude: unknown op '{unknown[0]}'; the benchmark's ops are {', '.join(OPS)}")
    if max_skip is not None and max_skip < 0:
        raise NasError(f"--max-skip must be >= 0, got {max_skip}")
    return rule_of(tuple(banned), max_skip)


def print_top(table: NB201Table, args: argparse.Namespace, costs, budget: float, unit: str) -> None:
    from nas.benchmarks.nb201_table import kendall_tau_b

    n = 1 if args.top is None else args.top
    if n < 1:
        raise NasError(f"--top must be at least 1, got {n}")
    rows = table.top_within(budget, costs, n, args.dataset, keep=derive_rule(args.exclude, args.max_skip))
    rule = (f", without {args.exclude}" if args.exclude else "") + (
        f", at most {args.max_skip} skip_connect" if args.max_skip is not None else "")
    if not rows:
        print(f"no cell of the table costs at most {budget:g} {unit}{rule}")
        return
    print(f"{len(rows)} best cells within {budget:g} {unit}{rule}, by {LABELS[args.dataset]}:")
    heads = [LABELS[d] for d in DATASETS] + [unit]
    print("  ".join(heads) + "  cell")
    for arch, accs, cost in rows:
        print("  ".join(f"{v:>{len(h)}.2f}" for h, v in zip(heads, (*accs, cost))) + f"  {arch}")
    if len(rows) > 2:
        i = DATASETS.index(args.dataset)
        agree = [f"{LABELS[args.dataset]}~{LABELS[d]} {kendall_tau_b([r[1][i] for r in rows], [r[1][j] for r in rows]):.2f}"
                 for j, d in enumerate(DATASETS) if j != i]
        print(f"rank agreement among these {len(rows)} (Kendall's tau-b; 1 = same order, 0 = unrelated): "
              + ", ".join(agree))


def main(args: argparse.Namespace) -> int:
    return guarded("nas-lookup", run, args)


def cli(argv=None) -> int:
    return entry("lookup", argv)


if __name__ == "__main__":
    sys.exit(cli())
