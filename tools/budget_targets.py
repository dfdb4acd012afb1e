"""Targets of budgeted searches from the NB201 ground truth alone: per (device, budget), the cells
within, the front, the top-1% threshold, the MACs budget of the same share and its best cell's
latency, and what each derive rule can reach.

    python tools/budget_targets.py eyeriss:25% raspi4:50% pixel3:10.68 macs:55 macs:95 [--rules]
    python tools/budget_targets.py --all 10% 25% 50% 75% --rules     # every device at these percentiles

A budget is milliseconds on the device (``macs:``/``params:``: millions), or ``P%``: the cost of the
⌈P·n/100⌉-th cheapest cell. ``--rules``: per derive rule (docs/devices.md), the best cell it admits
and how many cells at or above the top-1% threshold it keeps. Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.errors import NasError  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="budget_targets", description=__doc__.split("\n\n")[0])
    p.add_argument("rows", nargs="*", metavar="DEVICE:BUDGET", help="e.g. eyeriss:4.63, raspi4:50%%, macs:55")
    p.add_argument("--all", nargs="+", metavar="P%", default=None, help="every device of the table at these budgets")
    p.add_argument("--rules", action="store_true", help="what each derive rule reaches")
    p.add_argument("--table", type=Path, default=None, help="NB201 accuracy CSV (default: the shipped one)")
    p.add_argument("--device", default="cpu", help="unused (table lookups); a uniform tool interface")
    return p


def run(args: argparse.Namespace) -> int:
    from nas.benchmarks import NB201Table
    from nas.benchmarks.budget_truth import RULES, budget_truth, count_at_least, derive_rule, parse_budget, same_share_budget
    from nas.benchmarks.device_latency import DeviceTable
    from nas.benchmarks.nb201_table import cell_costs
    table = NB201Table.load(args.table)
    devices = DeviceTable.load()
    rows = list(args.rows)
    if args.all:
        rows += [f"{d}:{b}" for d in devices.devices for b in args.all]
    if not rows:
        raise NasError("give DEVICE:BUDGET rows or --all P%")
    macs = cell_costs("macs")
    costs_of = {"macs": macs}
    head = "| device | budget | cells within | front | C-100 | IN16 | top-1% threshold | MACs same share: best, its cost |"
    rules = [r[0] for r in RULES]
    if args.rules:
        head += "".join(f" {r}: best (n ≥ thr) |" for r in rules)
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for spec in rows:
        name, _, b = spec.partition(":")
        if not b:
            raise NasError(f"'{spec}': expected DEVICE:BUDGET, e.g. eyeriss:4.63 or macs:55")
        if name not in costs_of:
            costs_of[name] = cell_costs("params") if name == "params" else devices.by_arch(name)
        costs = costs_of[name]
        budget = parse_budget(b, costs)
        t = budget_truth(table, costs, budget)
        if t.front is None:
            print(f"| {name} | {budget:.6g} | 0 | none fits | | | | |")
            continue
        unit = "M" if name in ("macs", "params") else "ms"
        line = (f"| {name} | {budget:.6g} {unit} | {t.within:,} ({100 * t.share:.0f}%) | {t.front[1][0]:.2f} | "
                f"{t.front[1][1]:.2f} | {t.front[1][2]:.2f} | {t.threshold:.2f} |")
        if name in ("macs", "params"):
            line += " |"
        else:
            m = same_share_budget(macs, t.within)
            best = budget_truth(table, macs, m).front
            over = costs[best[0]] > budget * (1 + 1e-12)
            line += f" {best[1][0]:.2f}, {costs[best[0]]:.4g} ms{' OVER' if over else ''} |"
        if args.rules:
            for label, exclude, max_skip, live in RULES:
                keep = derive_rule(exclude, max_skip, live)
                r = budget_truth(table, costs, budget, keep=keep)
                n = count_at_least(table, costs, budget, t.threshold, keep)
                line += f" {r.front[1][0]:.2f} ({n}) |" if r.front else " none fits (0) |"
        print(line)
    return 0


def main(args: argparse.Namespace) -> int:
    from nas.commands import guarded
    return guarded("budget_targets", run, args, also=(OSError,))


if __name__ == "__main__":
    from nas.utils.pipes import exit_quietly_on_closed_pipe
    exit_quietly_on_closed_pipe()
    sys.exit(main(get_args_parser().parse_args()))
