"""NAS-Bench-201 ground truth of a searched cell.

    nas-lookup RUN_DIR | genotype.yaml | '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' [...]

prints the CIFAR-10 / CIFAR-100 / ImageNet16-120 test accuracy of each cell in the benchmark
table and its rank among all cells (1 = best; tied cells share the best rank).

    nas-lookup --budget 55 [--metric macs|params] [--dataset cifar10]

prints the best cell of the table whose benchmark network (C=16, N=5, 32x32) costs at most the
budget (millions of MACs, which are NB201's FLOPs, or of parameters): the Pareto front's answer.
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
    for a in args.archs:
        print(format_score(table, a))
    if args.budget is not None:
        print(table.format_budget(args.budget, args.metric, args.dataset))
    return 0


def main(args: argparse.Namespace) -> int:
    return guarded("nas-lookup", run, args)


def cli(argv=None) -> int:
    return entry("lookup", argv)


if __name__ == "__main__":
    sys.exit(cli())
