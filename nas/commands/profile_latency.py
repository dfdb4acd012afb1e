"""Measure the latency lookup table of a search's trained network on this machine's device.

    nas-profile-latency CONFIG.yaml [key=value ...] [--batch 1 64] [--device auto]
                        [--repeats 20] [--out latency.json]

times every candidate op (the space's own and ``space.ops``, built with ``space.op_args``) on
every edge shape of the network the config's ``cost:`` section
describes (nb201: the benchmark network C=16, N=5, 32x32 by default; darts: the evaluation
network) and its skeleton, at each batch size, and writes (or extends) a JSON table for
``cost.metric=latency cost.latency_table=latency.json``. A search copies the table into its run
folder. See nas/cost/latency.py for the model (ProxylessNAS/FBNet: the sum of the ops' latencies).

Its table is what ``cost.metric=latency`` reads (``cost.latency_table``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas.commands import entry, guarded


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas-profile-latency", description=__doc__.split("\n\n")[0])
    p.add_argument("items", nargs="*", metavar="CONFIG.yaml | key=value")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes to measure (default 1)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per entry (the median is kept)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before them")
    p.add_argument("--classes", type=int, default=10, help="outputs of the network when cost.classes is unset")
    p.add_argument("--in-channels", type=int, default=3, help="input channels of the network (default 3)")
    p.add_argument("--out", type=Path, default=Path("latency.json"), help="the table to write or extend")
    p.add_argument("--quiet", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    from nas.config import config_from_cli
    from nas.cost import LatencyTable, profile_latency, require_cost_model
    from nas.engine.runtime import resolve_device
    from nas.spaces import get_space
    from nas.plugins import import_user_modules
    cfg = config_from_cli(args.items)
    import_user_modules(cfg.imports)  # the run's own ops are timed too
    cost_model = require_cost_model(get_space(cfg.space.name))
    c = cfg.cost
    table = LatencyTable.load(args.out) if args.out.is_file() else None
    table = profile_latency(cost_model, network=cost_model.trained_network(c.C, c.N, c.layers),
                            resolution=c.resolution, num_classes=c.classes or args.classes,
                            in_channels=args.in_channels, batch_sizes=args.batch,
                            device=resolve_device(args.device), cell=cost_model.cell(cfg), repeats=args.repeats,
                            warmup=args.warmup, table=table, log=None if args.quiet else print,
                            ops=getattr(cfg.space, "ops", None), op_args=getattr(cfg.space, "op_args", None))
    table.save(args.out)
    print(f"{len(table.entries)} entries on {table.device} written to {args.out}")
    return 0


def main(args: argparse.Namespace) -> int:
    return guarded("nas-profile-latency", run, args)


def cli(argv=None) -> int:
    return entry("profile_latency", argv)


if __name__ == "__main__":
    sys.exit(cli())
