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
    p.add_argument("--budget", type=float, default=None, help="print the best cell costing at most this (millions)")
    p.add_argument("--metric", choices=("macs", "params"), default="macs", help="the budget's metric")
    p.add_argument("--dataset", choices=DATASETS, default="cifar10", help="the accuracy the budget's best cell maximises")
    p.add_argument("--top", type=int, default=None, metavar="N",
                   help="with --budget: list the N best cells within it and their rank agreement across datasets")
    p.add_argument("--exclude", default=None, metavar="OPS",
                   help="with --budget: only cells without these ops (comma-separated), as derive's --exclude")
    p.add_argument("--max-skip", type=int, default=None, metavar="M",
                   help="with --budget: only cells with at most M skip_connect edges, as derive's --max-skip")
    p.add_argument("--device", default="cpu", help="unused (a table lookup); kept for a uniform tool interface")
    return p


def format_score(table: NB201Table, arch) -> str:
    s = table.score(arch)
    parts = [f"{LABELS[d]} {s.acc[d]:.2f}% (rank {s.rank[d]}/{s.n})" for d in DATASETS]
    return f"{s.arch}\n  " + "\n  ".join(parts)


def run(args: argparse.Namespace) -> int:
    table = NB201Table.load(args.table, partial=args.partial_table)
    if not args.archs and args.budget is None:
        raise NasError("give a cell (run folder, genotype.yaml or cell string) or --budget M")
    if args.budget is None and (args.top is not None or args.exclude is not None or args.max_skip is not None):
        raise NasError("--top, --exclude and --max-skip list cells within a budget; give --budget M too")
    for a in args.archs:
        print(format_score(table, a))
    if args.budget is not None and args.top is None and args.exclude is None and args.max_skip is None:
        print(table.format_budget(args.budget, args.metric, args.dataset))
    elif args.budget is not None:
        print_top(table, args)
    return 0


def derive_rule(exclude: Optional[str], max_skip: Optional[int]):
    """``keep(arch)``: the cell uses no op of ``exclude`` and at most ``max_skip`` skip connections."""
    from nas.spaces.nb201 import OPS
    from nas.spaces.nb201.genotype import parse_ops

    banned = {op.strip() for op in (exclude or "").split(",") if op.strip()}
    unknown = sorted(banned - set(OPS))
    if unknown:
        raise NasError(f"--exclude: unknown op '{unknown[0]}'; the benchmark's ops are {', '.join(OPS)}")
    if max_skip is not None and max_skip < 0:
        raise NasError(f"--max-skip must be >= 0, got {max_skip}")

    def keep(arch: str) -> bool:
        ops = parse_ops(arch)
        return not banned.intersection(ops) and (max_skip is None or ops.count("skip_connect") <= max_skip)
    return keep


def print_top(table: NB201Table, args: argparse.Namespace) -> None:
    from nas.benchmarks.nb201_table import cell_costs, kendall_tau_b

    n = 1 if args.top is None else args.top
    if n < 1:
        raise NasError(f"--top must be at least 1, got {n}")
    rows = table.top_within(args.budget, cell_costs(args.metric), n, args.dataset,
                            keep=derive_rule(args.exclude, args.max_skip))
    unit = {"macs": "M MACs", "params": "M params"}[args.metric]
    rule = (f", without {args.exclude}" if args.exclude else "") + (
        f", at most {args.max_skip} skip_connect" if args.max_skip is not None else "")
    if not rows:
        print(f"no cell of the table costs at most {args.budget:g} {unit}{rule}")
        return
    print(f"{len(rows)} best cells within {args.budget:g} {unit}{rule}, by {LABELS[args.dataset]}:")
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
