"""``nas-search [CONFIG.yaml] [key=value ...] [--out DIR] [--quiet] [--resume RUN_DIR]``.

With no config it runs ``configs/quickstart.yaml``. Every user error (unknown key, wrong type,
unknown name, missing data, corrupt checkpoint) is printed as one line and exits with code 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from .commands import guarded
from .config import Config, check_config_file_kept, config_from_cli


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nas-search", description="Differentiable architecture search.",
        epilog="examples: nas-search | nas-search configs/nb201_cifar10_cpu.yaml trainer.epochs=5 "
               "estimator.name=gumbel_hard | nas-search --resume runs/quickstart-...")
    p.add_argument("items", nargs="*", metavar="CONFIG.yaml | key=value",
                   help="a YAML config (default configs/quickstart.yaml) and dotted overrides")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<name>-<timestamp>)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last checkpoint (with --out: continue a copy "
                        "of it there, leaving RUN_DIR as it was)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines; only the result")
    return p


def run(args: argparse.Namespace) -> int:
    from .engine.distributed import is_main_process
    from .engine.run_folder import load_run_config
    from .searcher.run import run_search  # after parsing: --help stays fast
    base = load_run_config(args.resume, Config, "search") if args.resume is not None else None
    cfg = config_from_cli(args.items, resume_cfg=base)
    check_config_file_kept(args.items, args.out)
    result = run_search(cfg, args.out, quiet=args.quiet, resume_from=args.resume)
    if not is_main_process():  # under torchrun rank 0 prints the result
        return 0
    print(f"genotype: {result.genotype_str}")
    if result.warning:
        print(result.warning, file=sys.stderr)
    print(f"run folder: {result.out_dir}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_intermixed_args(argv)  # options may sit between overrides
    from .engine.distributed import rank_tag
    return guarded(f"nas-search{rank_tag()}", run, args)  # under torchrun every rank reports its own failure


if __name__ == "__main__":
    sys.exit(main())
