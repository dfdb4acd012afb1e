"""Does a DNF candidate keep its rules inside a cell? (the rules' estimator per kind)

    python tools/dnf_in_cell.py --rules default,ste+noise,softmax,none --seeds 0 [CONFIG] [key=value ...]

For every rule-pool estimator (``estimator.kinds.rules``; the op choice keeps ``estimator.name``)
and seed, runs a search with ``dnf_1x1`` among the NB201 candidates (default: the quickstart on
digits), then prints a markdown table: the derived cell, the ``dnf_1x1`` edges it keeps, the mean
number of conjunctions and literals per output channel of their derived rules (over every cell),
the share of ``IF FALSE`` channels, and the supernet's validation accuracy in eval mode (the
derived rules; the search's final ``val_acc``, BN recalibrated on ``trainer.bn_batches`` batches)
against training mode (the forward the search ran: sampled or noisy rule pools, BN batch
statistics). A gap between the two is a rule set that derive changed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nas.blocks.dnf import DNFOp  # noqa: E402
from nas.blocks.rules import clauses_of  # noqa: E402
from nas.config import load_config  # noqa: E402
from nas.searcher.derive import load_supernet  # noqa: E402
from nas.searcher.run import make_loaders, run_search  # noqa: E402

OPS = "space.ops=[none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3, dnf_1x1]"


@torch.no_grad()
def accuracy(model, loader, training: bool) -> float:
    """Accuracy with the model in train (batch statistics, sampled choices) or eval mode."""
    model.train(training)
    right = total = 0
    for x, y in loader:
        right += int((model(x).argmax(1) == y).sum())
        total += len(y)
    model.eval()
    return right / max(total, 1)


def rule_stats(model, genotype):
    """Mean conjunctions and literals per output channel, and the share of IF FALSE channels, of
    the dnf_1x1 ops on the derived cell's edges."""
    conj, lits, false = [], [], []
    for cell in model.cells:
        if not hasattr(cell, "edges"):
            continue
        for e, op_name in enumerate(genotype.ops):
            if op_name != "dnf_1x1":
                continue
            op = next(m for m in cell.edges[e].ops if isinstance(m, DNFOp))
            W, S = (t.cpu() for t in op.block.derived())
            for t in range(op.block.T):
                cl = clauses_of(W[t], S[t])
                conj.append(len(cl))
                lits.append(sum(len(c) for c in cl))
                false.append(not cl)
    mean = lambda v: statistics.mean(v) if v else float("nan")  # noqa: E731
    return mean(conj), mean(lits), mean(false)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("items", nargs="*", help="a config (default quickstart) and key=value overrides")
    p.add_argument("--rules", default="default,ste+noise,softmax,none",
                   help="rule-pool estimators, comma-separated; default: the rules kind's own; "
                        "none: the search without dnf_1x1")
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", type=Path, default=Path("runs/dnf_in_cell"))
    a = p.parse_args(argv)
    config = next((i for i in a.items if "=" not in i), "quickstart")
    overrides = [i for i in a.items if "=" in i]
    print("| rules | seed | cell | dnf edges | conj/ch | lits/ch | IF FALSE | val % eval | val % train-mode | search s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for rules in a.rules.split(","):
        for seed in [int(s) for s in a.seeds.split(",")]:
            plain = rules == "none"   # the same search without the DNF candidate, for reference
            cfg = load_config(config, [OPS.replace(", dnf_1x1", "") if plain else OPS, "space.op_args={dnf_1x1: {rules: 4}}",
                                       "device=cpu", f"seed={seed}", *overrides,
                                       *([] if plain or rules == "default" else [f"estimator.kinds={{rules: {rules}}}"])])
            out = a.out / f"{rules}-{seed}"
            t0 = time.time()
            res = run_search(cfg, out, quiet=True)
            secs = time.time() - t0
            _, _, model = load_supernet(out)
            g = model.genotype()
            _, val, _ = make_loaders(cfg, torch.device("cpu"))
            conj, lits, false = rule_stats(model, g)
            # eval mode: the search's final score (BN recalibrated on the derived choices, trainer.bn_batches)
            ev, tr = res.metrics["val_acc"], 100 * accuracy(model, val, True)
            print(f"| {rules} | {seed} | `{res.genotype}` | {list(g.ops).count('dnf_1x1')} | {conj:.2f} | {lits:.2f} "
                  f"| {false:.0%} | {ev:.1f} | {tr:.1f} | {secs:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
