"""Train a derived architecture from scratch and measure its test accuracy.

    python tools/retrain.py [CONFIG.yaml] [key=value ...] [--genotype G] [--out DIR] [--resume RUN_DIR]

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.errors import NasError  # noqa: E402

DEFAULT_CONFIG = "retrain_darts_digits"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="retrain", description=__doc__.split("\n\n")[0])
    p.add_argument("items", nargs="*", metavar="CONFIG.yaml | key=value",
                   help=f"a YAML config (default configs/{DEFAULT_CONFIG}.yaml) and dotted overrides")
    p.add_argument("--genotype", default=None, help="genotype.yaml, run folder, named cell or genotype string")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<name>-<timestamp>)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue a retrain run")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="overrides the config's device")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines; only the result")
    return p


def main(args: argparse.Namespace) -> int:
    from nas.config import apply_overrides, from_dict, load_config, to_dict
    from nas.retrain import RetrainConfig, run_retrain
    from nas.retrain.run import load_run_config

    configs: List[str] = [a for a in args.items if "=" not in a]
    overrides: List[str] = [a for a in args.items if "=" in a]
    if args.device is not None:
        overrides.append(f"device={args.device}")
    out = args.out
    try:
        if len(configs) > 1:
            raise NasError(f"give at most one config file, got {', '.join(configs)}")
        if args.resume is not None:
            if configs:
                raise NasError("--resume takes the run's own config; give only key=value overrides")
            cfg = from_dict(RetrainConfig, apply_overrides(to_dict(load_run_config(args.resume)), overrides))
            out = args.resume
        else:
            cfg = load_config(configs[0] if configs else DEFAULT_CONFIG, overrides, cls=RetrainConfig)
        if args.genotype is not None:  # set as is: a '|op~0|...' string is not YAML
            cfg.model.genotype = args.genotype
        result = run_retrain(cfg, out, quiet=args.quiet, resume=args.resume is not None)
    except NasError as e:
        print(f"retrain: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"retrain: interrupted; the last checkpoint is kept in {out or 'the run folder'}", file=sys.stderr)
        return 130
    m = result.metrics
    print(f"genotype: {result.genotype}")
    print(f"test_acc: {m['test_acc']:.2f}  params: {m['params_m']:.3f}M  MACs: {m['macs_m']:.1f}M")
    print(f"run folder: {result.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_intermixed_args()))

