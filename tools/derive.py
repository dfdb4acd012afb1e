"""Derive the discrete architecture from a search's checkpoint.

    python tools/derive.py RUN_DIR | checkpoint.pt [--top-k K] [--out genotype.yaml] [--device cpu]

rebuilds the supernet from the checkpoint's own config, loads its architecture parameters and
estimator state, applies the space's derive rule (NB201: the estimator's decision per edge;
DARTS: per node the K strongest non-``none`` incoming edges by ``Choice.probs()``, K=2 as in the
paper), writes ``genotype.yaml`` (default: into the run folder) and prints the genotype.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Tuple

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.errors import CheckpointError, ConfigError, NasError  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="derive", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, metavar="RUN_DIR|checkpoint.pt", help="a nas-search run folder or checkpoint")
    p.add_argument("--top-k", type=int, default=None,
                   help="DARTS: incoming edges kept per intermediate node (default 2, as in the paper)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the genotype (default: genotype.yaml beside the checkpoint)")
    p.add_argument("--device", default="cpu", help="device to rebuild the supernet on (default cpu)")
    return p


def derive(source: Path, top_k: Optional[int] = None, device: str = "cpu") -> Tuple[Any, Any]:
    """``(space, genotype)`` of the search checkpoint at ``source`` (a run folder or a file)."""
    import torch

    from nas.config import Config, from_dict
    from nas.search.checkpoint import load_checkpoint
    from nas.search.run import make_estimator, make_supernet

    ckpt = load_checkpoint(source)
    if ckpt.get("kind") == "retrain":
        raise CheckpointError(f"{source} is a retrain checkpoint; its genotype is in its genotype.yaml")
    try:
        cfg = from_dict(Config, ckpt["config"])
    except (NasError, TypeError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {source} holds a config this nas cannot read ({e})") from None
    state = ckpt["model"]
    try:
        num_classes, in_channels = state["classifier.weight"].shape[0], state["stem.0.weight"].shape[1]
    except (KeyError, AttributeError, IndexError):
        raise CheckpointError(f"checkpoint {source} has no supernet stem/classifier weights") from None
    estimator = make_estimator(cfg)
    space, model = make_supernet(cfg, estimator, num_classes, in_channels)
    try:
        model.load_state_dict(state)
        estimator.load_state_dict(ckpt.get("estimator", {}))
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {source} does not match its config ({str(e).splitlines()[0][:100]})") from None
    model.to(torch.device(device))
    if space.name == "darts":
        k = 2 if top_k is None else top_k
        if k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {k}")
        return space, model.genotype(top_k=k)
    if top_k is not None:
        raise ConfigError(f"--top-k applies to the darts space; a {space.name} cell has one op per edge")
    return space, model.genotype()


def main(args: argparse.Namespace) -> int:
    try:
        space, genotype = derive(args.source, args.top_k, args.device)
        out = args.out or (args.source if args.source.is_dir() else args.source.parent) / "genotype.yaml"
        out.write_text(yaml.safe_dump(space.genotype_to_dict(genotype), sort_keys=False))
    except NasError as e:
        print(f"derive: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"derive: error: cannot write the genotype ({e})", file=sys.stderr)
        return 2
    print(genotype)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
