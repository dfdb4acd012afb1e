"""Derive the discrete architecture from a search's checkpoint.

    nas-derive RUN_DIR | checkpoint.pt [--top-k K] [--out genotype.yaml] [--device cpu]
    nas-derive RUN_DIR --exclude none     # NB201: never pick these ops (DARTS §2.4)
    nas-derive RUN_DIR --max-skip 1       # at most 1 skip_connect edge (P-DARTS §3.3)
    nas-derive RUN_DIR --max-skip 1 --min-skip 1   # exactly 1 (P-DARTS's "constant M")
    nas-derive RUN_DIR --method perturbation [--batches 40] [--tune-steps 0]
    nas-derive RUN_DIR --cost target=55 [--cost metric=params]   # within another budget
    nas-derive RUN_DIR --cost target=55 --derive budget_extra_skip=1   # any derive.* key of the space

rebuilds the supernet from the checkpoint's own config, loads its architecture parameters and
estimator state, applies the space's derive rule (NB201: the estimator's decision per edge;
DARTS: per node the K strongest non-``none`` incoming edges by ``Choice.probs()``, K=2 as in the
paper; ``--exclude`` overrides the run's ``derive.exclude``, ``--max-skip`` its
``derive.max_skip``, ``--min-skip`` its ``derive.min_skip``, ``--derive KEY=VALUE`` any key of its
``derive:`` section), writes ``genotype.yaml`` (default:
into the run folder) and prints
the genotype (with the run's ``imports`` and op options, and beside it the ``learned_ops.txt`` of
DNF and L0-gated candidates).
``--method perturbation`` selects each NB201 edge's op by how much removing it costs the supernet's
validation accuracy (DARTS-PT, ``nas/supernet/perturbation.py``), on the run's own data.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from nas.commands import entry, guarded
from nas.errors import ConfigError, NasError
from nas.searcher.derive import derive


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas-derive", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, metavar="RUN_DIR|checkpoint.pt", help="a nas-search run folder or checkpoint")
    p.add_argument("--top-k", type=int, default=None,
                   help="DARTS: incoming edges kept per intermediate node (default 2, as in the paper)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the genotype (default: genotype.yaml beside the checkpoint)")
    p.add_argument("--force", action="store_true",
                   help="write --out over an existing file that is not a genotype file (never over a run's "
                        "checkpoint or config)")
    p.add_argument("--device", default="cpu", help="device to rebuild the supernet on (default cpu)")
    p.add_argument("--method", choices=("argmax", "perturbation"), default="argmax",
                   help="argmax of α per edge (default), or DARTS-PT's perturbation-based selection "
                        "measured on validation batches of the run's data (nb201)")
    p.add_argument("--batches", type=int, default=40, help="perturbation: validation batches per measurement")
    p.add_argument("--tune-steps", type=int, default=0, help="perturbation: weight steps after each edge decision")
    p.add_argument("--tune-lr", type=float, default=None,
                   help="perturbation: SGD lr of those steps (default: the run's optim.weights.lr_min)")
    p.add_argument("--seed", type=int, default=0, help="perturbation: seed of the edge order")
    p.add_argument("--exclude", default=None, metavar="OPS",
                   help="nb201 argmax: comma-separated ops derive never picks, e.g. 'none' as DARTS does "
                        "(overrides the run's derive.exclude; '' picks among all)")
    p.add_argument("--max-skip", default=None, metavar="M",
                   help="most skip_connect edges the derived cell keeps, P-DARTS's limit (darts: in the "
                        "normal cell); overrides the run's derive.max_skip; 'none' for no limit")
    p.add_argument("--min-skip", default=None, metavar="M",
                   help="fewest skip_connect edges the derived cell keeps (the edges with the largest skip "
                        "probability take it); with --max-skip M: exactly M, as P-DARTS; overrides the run's "
                        "derive.min_skip; 'none' for no floor")
    p.add_argument("--derive", action="append", default=[], metavar="KEY=VALUE", dest="rules",
                   help="override a key of the run's derive section, e.g. --derive budget_extra_skip=1 "
                        "(the space's derive keys: docs/spaces.md)")
    p.add_argument("--cost", action="append", default=[], metavar="KEY=VALUE",
                   help="override the run's cost section for derive, e.g. --cost target=55 --cost metric=params: "
                        "the most probable cell within that budget (cost.hard)")
    return p


def parse_max_skip(value: Optional[str], flag: str = "--max-skip") -> Any:
    """``--max-skip`` (or ``--min-skip``): ``None`` keeps the run's own setting, ``'none'``
    removes it, else an int."""
    if value is None:
        return ...
    if value.strip().lower() in ("none", "null", ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{flag} takes a whole number or 'none', got '{value}'") from None


def is_genotype_file(path: Path) -> bool:
    """Whether ``path`` reads as a genotype.yaml (a mapping naming a known space, or a hand-written
    cell): the only kind of existing file ``--out`` may replace without ``--force``."""
    import yaml

    from nas.spaces import SPACES
    try:
        if path.stat().st_size > 1 << 20:
            return False
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and (data.get("space") in SPACES.names() or "normal" in data
                                       or str(data.get("arch", "")).startswith("|"))


def check_out(source: Path, out: Path, explicit: bool, force: bool) -> None:
    """One line instead of writing ``out`` where that would lose something: a run's checkpoint or
    config (never, even with ``--force``), another existing file that is not a genotype file
    (unless ``--force``), or a file inside a run folder that a running search holds (its
    genotype would be replaced by one of an early checkpoint)."""
    from nas.engine.run_folder import CHECKPOINT, folder_kind, in_use
    run_dir = source if source.is_dir() else source.parent
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file, e.g. --out {out / 'genotype.yaml'}")
    if out.name in (CHECKPOINT, "config.yaml") and (folder_kind(out.parent) is not None
                                                     or out.resolve() == source.resolve()):
        raise ConfigError(f"--out {out} is the run's {out.name}; a genotype never replaces it: give "
                          f"another file, e.g. --out {out.parent / 'genotype.yaml'}")
    if out.exists() and out.resolve() == source.resolve():
        raise ConfigError(f"--out {out} is the checkpoint derive reads; give another file")
    if explicit and out.exists() and not force and not is_genotype_file(out):
        raise ConfigError(f"--out {out} exists and is not a genotype file; choose another --out, or add "
                          f"--force to replace it")
    pid = in_use(run_dir)
    if pid is not None and out.resolve().parent == run_dir.resolve():
        raise NasError(f"{run_dir} is in use by a running search (pid {pid}); derive from its latest checkpoint "
                       f"into another file with --out FILE outside the folder, or wait for the run to end")


def run(args: argparse.Namespace) -> int:
    notes: list = []  # the cost line, printed after the genotype
    out = args.out or (args.source if args.source.is_dir() else args.source.parent) / "genotype.yaml"
    check_out(args.source, out, args.out is not None, args.force)
    if args.out is not None:  # `--out new/folder/genotype.yaml` makes the folder, as `nas-search --out` does
        args.out.parent.mkdir(parents=True, exist_ok=True)
    space, genotype = derive(args.source, args.top_k, args.device, args.method, args.batches,
                             args.tune_steps, args.seed, args.tune_lr, args.exclude,
                             parse_max_skip(args.max_skip), write=out, log=notes.append, cost=args.cost,
                             min_skip=parse_max_skip(args.min_skip, "--min-skip"), rules=args.rules)
    print(genotype)
    for line in notes:
        print(line)
    print(f"written to {out}")
    return 0


def main(args: argparse.Namespace) -> int:
    return guarded("nas-derive", run, args)


def cli(argv=None) -> int:
    return entry("derive", argv)


if __name__ == "__main__":
    sys.exit(cli())
