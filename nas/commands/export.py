"""Export a found network for deployment without nas: ONNX, a torch.export program, plain PyTorch.

    nas-export RUN [--format onnx|pt2|python|all] [--out DIR] [--batch B] [--resolution R] [--dynamic-batch]

RUN is a nas-retrain run folder (its trained weights), or with ``--allow-untrained`` a search run,
a genotype.yaml or a genotype string (the network at its configured size, fresh weights: for
latency work before training). Every format is run on a batch against the PyTorch network (ONNX
in ONNX Runtime) and the max abs difference printed; above 1e-4 the command fails (exit 2).
``export.json`` beside the files records the genotype, input shape, class names, normalisation
and test accuracy. ONNX needs the optional extra: pip install 'nas[export]'.
"""
from __future__ import annotations

import argparse
import sys

from nas.commands import entry, guarded


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas-export", description=__doc__.split("\n\n")[0])
    p.add_argument("run", metavar="RUN", help="nas-retrain run folder (or, untrained: search run, genotype.yaml, genotype string)")
    p.add_argument("--format", default="all", metavar="FORMAT",
                   help="onnx, pt2, python or all (default), or a comma-separated list")
    p.add_argument("--out", default=None, help="output folder (default RUN/export)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the exported input (default 1)")
    p.add_argument("--resolution", type=int, default=None, help="input side (default: the run's data)")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size at run time")
    p.add_argument("--allow-untrained", action="store_true", help="export a network without trained weights")
    return p


def run(args: argparse.Namespace) -> int:
    from nas.deploy import export
    result = export(args.run, args.format, args.out, batch=args.batch, resolution=args.resolution,
                    dynamic_batch=args.dynamic_batch, allow_untrained=args.allow_untrained, echo=print)
    m = result.meta
    acc = f"test_acc {m['test_acc']:.2f}" if m["test_acc"] is not None else "untrained"
    print(f"{m['space']} {m['genotype']}  input {m['input']['shape']}  {acc}")
    print(f"written to {result.out_dir} (export.json describes it)")
    return 0


def main(args: argparse.Namespace) -> int:
    return guarded("nas-export", run, args)


def cli(argv=None) -> int:
    return entry("export", argv)


if __name__ == "__main__":
    sys.exit(cli())
