"""Op-only against op+width search at equal MACs budgets: plain NB201 cell, + ``dnf_1x1``, L0-gated convs.

    python tools/blocks_budget.py --seeds 0,1,2 --budget 55 --root /path/to/cifar10 [search key=value ...]

Reproduces the budget table of docs/results/blocks.md ("Op+width search at equal budgets"). For
every seed S and variant it runs the CPU proxy search (``configs/nb201_cifar10_cpu.yaml``,
``data.subset=10000``) with ``cost.metric=macs cost.target=B`` (millions of MACs of the benchmark
network, C=16 N=5 32x32; the derived cell never exceeds it):

* ``plain``: the five NB201 ops;
* ``dnf``: the five and ``dnf_1x1`` as a sixth candidate;
* ``l0``: op+width search, ``l0_nor_conv_1x1``/``l0_nor_conv_3x3`` in place of the two convs
  (derive writes the share of channels each kept into the genotype; within the budget it may
  keep one narrower, docs/blocks.md);

then retrains each derived cell with one protocol, ``configs/retrain_nb201_small.yaml`` (NB201
skeleton C=16 N=1, 16x16, 10k train images, 10 epochs, tested on the 10k test images), and
prints one markdown row per run: the retrained test accuracy, the MACs and parameters of the
retrained (pruned) network as counted, the derived cell's MACs on the benchmark network, search
and retrain seconds, the widths and the DNF rules (mean conjunctions / literals per output
channel of the kept ``dnf_1x1`` edges), then mean ± std per variant.

A ``dnf_1x1`` edge is counted by its conjunctions (a matmul of ``2·C_in`` log-literals with
``C_out·rules`` rules per pixel, :meth:`nas.blocks.dnf.DNFOp.forward_macs`), so the budget
restricts it like the convolutions. Search settings go as ``key=value`` (e.g. ``cost.weight=1``
to let the budget's penalty train the L0 gates during the search; default 0, the cost config's);
``--retrain-set key=value`` changes the retraining (``trainer.epochs=1 data.subset=1000`` for a smoke test).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Dict, List

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = {
    "plain": "[none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3]",
    "dnf": "[none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3, dnf_1x1]",
    "l0": "[none, skip_connect, l0_nor_conv_1x1, l0_nor_conv_3x3, avg_pool_3x3]",
}


def search_and_retrain(variant: str, seed: int, budget: float, a: argparse.Namespace) -> Dict[str, object]:
    from nas.config import load_config
    from nas.retrainer import RetrainConfig, run_retrain
    from nas.searcher.derive import load_supernet
    from nas.searcher.run import run_search

    root = [f"data.root={a.root}"] if a.root else []
    cfg = load_config("nb201_cifar10_cpu", ["data.subset=10000", *root, f"seed={seed}", f"space.ops={VARIANTS[variant]}",
                                            "cost.metric=macs", f"cost.target={budget:g}", *a.items])
    out = a.out / f"{variant}-b{budget:g}-s{seed}"
    res = run_search(cfg, out / "search", quiet=True)
    record = yaml.safe_load((out / "search" / "genotype.yaml").read_text())
    rules = ""
    if variant == "dnf" and "dnf_1x1" in res.genotype.ops:
        from dnf_in_cell import rule_stats
        _, _, model = load_supernet(out / "search")
        conj, lits, false = rule_stats(model, res.genotype)
        rules = f"{conj:.2f} conj, {lits:.2f} lits/ch, {false:.0%} IF FALSE"
    rcfg = load_config(a.retrain_config, [*root, f"seed={seed}", f"model.genotype={out / 'search'}", *a.retrain_set],
                       cls=RetrainConfig)
    rt = run_retrain(rcfg, out / "retrain", quiet=True)
    m = rt.metrics
    return {"variant": variant, "seed": seed, "cell": res.genotype_str,
            "widths": record.get("widths") or {}, "rules": rules,
            "cost": res.metrics.get("cost_macs"), "acc": m["test_acc"], "macs": m["macs_m"], "params": m["params_m"],
            "search_s": res.metrics["search_seconds"], "retrain_s": m["train_seconds"]}


def row(r: Dict[str, object]) -> str:
    widths = ", ".join(f"{k} {v:g}" for k, v in r["widths"].items()) or "-"
    return (f"| {r['variant']} | {r['seed']} | `{r['cell']}` | {widths} | {r['rules'] or '-'} | {r['cost']:.2f} | "
            f"{r['acc']:.2f} | {r['macs']:.2f} | {r['params']:.4f} | {r['search_s']:.0f} | {r['retrain_s']:.0f} |")


def mean_std(v: List[float]) -> str:
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"


def run(a: argparse.Namespace) -> int:
    variants = a.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        from nas.errors import NasError
        raise NasError(f"--variants: unknown '{unknown[0]}'; known: {', '.join(VARIANTS)}")
    seeds = [int(s) for s in a.seeds.split(",")]
    print("| variant | seed | derived cell | widths | rules | M MACs (benchmark net) | retrained test % | "
          "retrained M MACs | retrained M params | search s | retrain s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for seed in seeds:
        for v in variants:
            rows.append(search_and_retrain(v, seed, a.budget, a))
            print(row(rows[-1]), flush=True)
    print()
    print(f"| variant | retrained test % | retrained M MACs | retrained M params | search s | retrain s | "
          f"(seeds {a.seeds}, budget {a.budget:g} M MACs) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for v in variants:
        rs = [r for r in rows if r["variant"] == v]
        print(f"| {v} | " + " | ".join(mean_std([float(r[k]) for r in rs])
                                      for k in ("acc", "macs", "params", "search_s", "retrain_s")) + " | |")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("items", nargs="*", help="key=value overrides of the search config")
    p.add_argument("--seeds", default="0")
    p.add_argument("--budget", type=float, default=55.0, help="cost.target: millions of MACs of the benchmark network")
    p.add_argument("--variants", default="plain,dnf,l0", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--root", default=None, help="data.root of the search and the retraining (CIFAR-10)")
    p.add_argument("--retrain-config", default="retrain_nb201_small")
    p.add_argument("--retrain-set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the retraining")
    p.add_argument("--out", type=Path, default=Path("runs/blocks_budget"))
    from nas.commands import guarded
    return guarded("blocks_budget", run, p.parse_args(argv), also=(OSError, KeyError, yaml.YAMLError))


if __name__ == "__main__":
    sys.exit(main())
