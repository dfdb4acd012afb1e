"""Per-epoch cells of finished NB201 searches and their ground truth, from the runs' TensorBoard logs.

    python tools/alpha_trajectory.py RUN_DIR [RUN_DIR ...] [--exclude none] [--table nb201_accuracy.csv]

For every run it prints the cell each epoch's α derives to, and the cell of the change of α over
the last epochs (``change T-k``: the argmax of ``α_T - α_k``, what the architecture steps after
epoch k favoured; ``nas/benchmarks/trajectory.py``), each with its NB201 CIFAR-10 accuracy; then
the mean ± std of every rule over the runs.

Reproduces the per-epoch trajectories of docs/results/search-quality.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.benchmarks import DEFAULT_TABLE, NB201Table  # noqa: E402
from nas.benchmarks.trajectory import trajectory  # noqa: E402
from nas.errors import NasError  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alpha_trajectory", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="nas-search run folders (nb201)")
    p.add_argument("--exclude", default="", metavar="OPS",
                   help="comma-separated ops never picked, e.g. 'none' (DARTS's derive rule)")
    p.add_argument("--table", type=Path, default=None, help=f"NB201 accuracy CSV (default {DEFAULT_TABLE})")
    p.add_argument("--partial-table", action="store_true",
                   help="accept a table of a subset of the cells (ranks among those); default: all 15,625 required")
    return p


def main(args: argparse.Namespace) -> int:
    exclude = [o.strip() for o in args.exclude.split(",") if o.strip()]
    try:
        table = NB201Table.load(args.table, partial=args.partial_table)
        by_rule: Dict[str, List[float]] = {}
        for run in args.runs:
            print(f"{run}")
            for rule, cell in trajectory(run, exclude):
                acc = table.accuracy(cell)
                by_rule.setdefault(rule, []).append(acc)
                print(f"  {rule:12s} {acc:6.2f}  {cell}")
    except (NasError, ValueError) as e:
        print(f"alpha_trajectory: error: {e}", file=sys.stderr)
        return 2
    print("\n| rule | runs | NB201 CIFAR-10 mean ± std |\n| --- | --- | --- |")
    for rule, accs in by_rule.items():
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"| {rule} | {len(accs)} | {statistics.mean(accs):.2f} ± {std:.2f} |")
    return 0


if __name__ == "__main__":
    from nas.utils.pipes import exit_quietly_on_closed_pipe
    exit_quietly_on_closed_pipe()
    sys.exit(main(get_args_parser().parse_args()))
