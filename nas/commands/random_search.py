"""``nas-random-search``: the random-search baseline with a wall-clock budget
(:mod:`nas.benchmarks.random_search`), in a run folder.

    nas-random-search CONFIG.yaml [key=value ...] --budget SECONDS --out DIR
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas.commands import entry, guarded


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas-random-search", description="Random-search baseline with a wall-clock budget.")
    p.add_argument("items", nargs="*", metavar="CONFIG.yaml | key=value")
    p.add_argument("--budget", type=float, required=True, help="wall-clock seconds")
    p.add_argument("--epochs-per-cell", type=int, default=1)
    p.add_argument("--max-cells", type=int, default=None)
    p.add_argument("--out", type=Path, required=True, help="a new or empty folder for the run")
    p.add_argument("--quiet", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    from nas.benchmarks.random_search import random_search
    from nas.config import config_from_cli

    cfg = config_from_cli(args.items)
    res = random_search(cfg, args.budget, epochs_per_cell=args.epochs_per_cell, max_cells=args.max_cells,
                        out_dir=args.out, log=(lambda s: None) if args.quiet else print)
    print(f"genotype: {res.best}")
    print(f"run folder: {args.out}")
    return 0


def main(args: argparse.Namespace) -> int:
    return guarded("nas-random-search", run, args)


def cli(argv=None) -> int:
    return entry("random_search", argv, intermixed=True)


if __name__ == "__main__":
    sys.exit(cli())
