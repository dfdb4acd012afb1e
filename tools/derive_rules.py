"""Derive rules under a budget, scored on every cost source of the NB201 ground truth.

    python tools/derive_rules.py RUN_DIR [RUN_DIR ...] --rule max1: --rule max2:max_skip=2,min_skip=null \\
        --rule extra:budget_extra_skip=1 [--percentiles 10% 25% 50% 75% 90%] [--groups 0-3 4-8]

derives every finished NB201 search (``nas-search`` run folders) within the budget at each
percentile of each cost source (MACs and the 27 devices of the shipped latency table, or
``--sources``) under each
rule (``NAME:KEY=VALUE,...``: overrides of the run's ``derive:`` section, ``nas-derive --derive``;
``NAME:`` the run's own rule), and prints per rule and group of seeds (``--groups A-B``, by the
runs' ``seed``) a Markdown table: per percentile, how many derived cells reach the budget's top-1%
threshold (``nas-lookup --device D --budget B``; a budget where no cell of the rule fits counts as
a miss) and the mean share of the cells within the budget that are more accurate on CIFAR-10.

Reproduces the derive-rule study of docs/devices.md ("Which derive rule under a budget").
"""
from __future__ import annotations

import argparse
import bisect
import contextlib
import io
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.errors import ConfigError, NasError  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="derive_rules", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--rule", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="a derive rule: overrides of the run's derive section ('NAME:' the run's own)")
    p.add_argument("--percentiles", nargs="+", default=["10%", "25%", "50%", "75%", "90%"], metavar="P%")
    p.add_argument("--groups", nargs="+", default=None, metavar="A-B", help="seed ranges reported apart")
    p.add_argument("--sources", nargs="+", default=None, metavar="SOURCE",
                   help="cost sources (macs and devices of nas-lookup --devices; default all)")
    p.add_argument("--device", default="cpu", help="unused (table lookups); a uniform tool interface")
    return p


def parse_rule(text: str) -> Tuple[str, List[str]]:
    name, sep, keys = text.partition(":")
    if not sep or not name:
        raise NasError(f"--rule '{text}': expected NAME:KEY=VALUE,... (NAME: for the run's own rule)")
    return name, [kv for kv in keys.split(",") if kv]


def parse_group(text: str) -> Tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        return int(lo), int(hi if sep else lo)
    except ValueError:
        raise NasError(f"--groups '{text}': expected a seed range like 0-3") from None


def run(args: argparse.Namespace) -> int:
    from nas.api import derive
    from nas.benchmarks import NB201Table
    from nas.benchmarks.budget_truth import budget_truth, parse_budget
    from nas.benchmarks.device_latency import DeviceTable
    from nas.benchmarks.nb201_table import DATASETS, cell_costs
    rules = [parse_rule(r) for r in args.rule] or [("own", [])]
    groups = [parse_group(g) for g in args.groups] if args.groups else [(-(10 ** 9), 10 ** 9)]
    seeds = {}
    for r in args.runs:
        try:
            seeds[r] = int(yaml.safe_load((r / "config.yaml").read_text())["seed"])
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
            raise NasError(f"{r}: not a finished search run folder (no readable config.yaml with a seed)") from None
    table, devices = NB201Table.load(), DeviceTable.load()
    c10 = DATASETS.index("cifar10")
    sources: Dict[str, Dict[str, float]] = {"macs": cell_costs("macs")}
    sources.update({d: devices.by_arch(d) for d in devices.devices})
    for src in args.sources or []:
        if src not in sources:
            raise NasError(f"--sources: unknown cost source '{src}'; known: {', '.join(sources)}")
    if args.sources:
        sources = {s: sources[s] for s in args.sources}
    # (rule, group, percentile) -> [(reached the threshold, share of the cells within that beat it)]
    scores: Dict[tuple, List[Tuple[bool, float]]] = {}
    for src, costs in sources.items():
        for pct in args.percentiles:
            budget = parse_budget(pct, costs)
            truth = budget_truth(table, costs, budget)
            accs = sorted(table.rows[a][c10] for a in table.rows if costs[a] <= budget * (1 + 1e-12))
            over = ([] if src == "macs" else ["metric=latency", f"device={src}"]) + [f"target={budget!r}"]
            for name, keys in rules:
                for r, seed in seeds.items():
                    try:
                        with contextlib.redirect_stdout(io.StringIO()):
                            acc = table.score(str(derive(r, cost=over, rules=keys))).acc["cifar10"]
                    except ConfigError as e:
                        if "cheapest cell" not in str(e):
                            raise
                        acc = None  # no cell of the rule fits the budget
                    hit = acc is not None and acc >= truth.threshold - 1e-9
                    beaten = 1.0 if acc is None else (len(accs) - bisect.bisect_right(accs, acc + 1e-9)) / len(accs)
                    for g in groups:
                        if g[0] <= seed <= g[1]:
                            scores.setdefault((name, g, pct), []).append((hit, beaten))
    print("| rule | seeds | " + " | ".join(args.percentiles) + " | all |")
    print("|" + " --- |" * (len(args.percentiles) + 3))
    for name, _ in rules:
        for g in groups:
            cells = [scores.get((name, g, p), []) for p in args.percentiles]
            label = "all" if not args.groups else f"{g[0]}–{g[1]}"
            row = [f"{sum(h for h, _ in c)}/{len(c)}, {100 * statistics.mean(b for _, b in c):.0f}%" if c else "–"
                   for c in cells]
            n = sum(len(c) for c in cells)
            total = f"{sum(h for c in cells for h, _ in c)}/{n}" if n else "–"
            print(f"| {name} | {label} | " + " | ".join(row) + f" | {total} |")
    return 0


def main(args: argparse.Namespace) -> int:
    from nas.commands import guarded
    return guarded("derive_rules", run, args, also=(OSError,))


if __name__ == "__main__":
    from nas.utils.pipes import exit_quietly_on_closed_pipe
    exit_quietly_on_closed_pipe()
    sys.exit(main(get_args_parser().parse_args()))
