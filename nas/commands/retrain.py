"""Train a derived architecture from scratch and measure its test accuracy.

    nas-retrain [CONFIG.yaml] [key=value ...] [--genotype G] [--out DIR] [--resume RUN_DIR]

G is a genotype.yaml, a nas-search run folder, a named cell (DARTS_V2, ...) or a genotype string
(NB201 ``|op~0|+...``, DARTS ``Genotype(...)``); it sets ``model.genotype``. The run folder holds
``config.yaml``, ``genotype.yaml``, ``checkpoint.pt``, ``tb/``, ``log.txt`` and ``metrics.json``
(test accuracy, params and MACs in millions). Default config: configs/retrain_darts_digits.yaml.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

from nas.commands import entry, guarded
from nas.errors import NasError

DEFAULT_CONFIG = "retrain_darts_digits"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas-retrain", description=__doc__.split("\n\n")[0])
    p.add_argument("items", nargs="*", metavar="CONFIG.yaml | key=value",
                   help=f"a YAML config (default configs/{DEFAULT_CONFIG}.yaml) and dotted overrides")
    p.add_argument("--genotype", default=None, help="genotype.yaml, run folder, named cell or genotype string")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<name>-<timestamp>)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="continue a retrain run (with --out: continue a copy of it there)")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="overrides the config's device")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines; only the result")
    return p


def run(args: argparse.Namespace) -> int:
    from nas.config import check_config_file_kept, config_from_cli
    from nas.engine.distributed import is_main_process
    from nas.retrainer import RetrainConfig, run_retrain
    from nas.engine.run_folder import load_run_config
    from nas.retrainer.genotypes import check_replacement

    items: List[str] = list(args.items)
    if args.device is not None:
        items.append(f"device={args.device}")
    base = load_run_config(args.resume, RetrainConfig, "retrain") if args.resume is not None else None
    cfg = config_from_cli(items, cls=RetrainConfig, default=DEFAULT_CONFIG, resume_cfg=base)
    check_config_file_kept(items, args.out)
    if args.genotype is not None:  # set as is: a '|op~0|...' string is not YAML
        cfg.model.genotype = args.genotype
    if base is not None and cfg.model.genotype != base.model.genotype:
        check_replacement(cfg.model.genotype, str(args.resume / "genotype.yaml"), str(args.resume), resuming=True)
    elif base is None and args.genotype is not None:
        own = config_from_cli(items, cls=RetrainConfig, default=DEFAULT_CONFIG).model.genotype
        where = next((a for a in items if "=" not in a), DEFAULT_CONFIG)
        check_replacement(args.genotype, own, where, resuming=False)
    result = run_retrain(cfg, args.out, quiet=args.quiet, resume_from=args.resume)
    if not is_main_process():  # under torchrun rank 0 prints the result
        return 0
    m = result.metrics
    print(f"genotype: {result.genotype}")
    print(f"test_acc: {m['test_acc']:.2f}  params: {m['params_m']:.3f}M  MACs: {m['macs_m']:.1f}M")
    print(f"run folder: {result.out_dir}")
    return 0


def main(args: argparse.Namespace) -> int:
    from nas.engine.distributed import rank_tag
    return guarded(f"nas-retrain{rank_tag()}", run, args)


def cli(argv=None) -> int:
    return entry("retrain", argv, intermixed=True)


if __name__ == "__main__":
    sys.exit(cli())
