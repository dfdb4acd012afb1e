"""Does adaptive noise rescue STE and Bop on the Neural DNF block? (the seed experiment)

    python tools/dnf_convergence.py --estimators ste,bop,ste+noise,bop+noise,gumbel,sigmoid --seeds 0,1,2

Jialin Lu, "Neural Disjunctive Normal Form" (M.Sc. thesis, SFU 2020) claims that on a synthetic
DNF task plain STE and Bop get stuck (every gradient of W and S vanishes in a local minimum)
while the same estimators with adaptive noise converge. For every estimator spec and seed this
trains the standalone DNF classifier (``space.name=dnf``) on a fresh synthetic task (the seed
fixes the ground-truth rule and the samples) with the library's Searcher in joint mode, and after
every epoch scores the *derived* rule set (binary W, S) on the train and the clean test split and
measures the fraction of W/S entries whose gradient over the whole train split is non-zero.

It prints a markdown table (final train/test accuracy of the derived rules, epochs until the train
accuracy reaches ``--target``, whether the exact rule was recovered — the derived rules agree with
the ground truth on all 2^K inputs — and the live-gradient fraction at the end), writes the curves
to TensorBoard under ``--out/tb/<spec>/seed<k>`` and the table and per-run results to ``--out``.

Estimator specs: a registered name, or ``NAME+noise`` for ``estimator.noise=adaptive``; a spec
whose estimator is not registered (or cannot take noise) is reported as unavailable.

Reproduces the adaptive-noise experiment on the Neural DNF block (docs/ALGORITHMS.md names the
claim it measures).
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nas.data.tabular import (TabularLoader, TabularOptions, TabularSet, dnf_string, eval_dnf,  # noqa: E402
                              load_tabular)
from nas.errors import NasError  # noqa: E402
from nas.estimators import parse_spec  # noqa: E402
from nas.searcher.loop import Searcher  # noqa: E402
from nas.searcher.optim import build_optimizers  # noqa: E402
from nas.supernet import arch_parameters  # noqa: E402
from nas.spaces.dnf import DNFSpace  # noqa: E402

DEFAULT_SPECS = "ste,bop,ste+noise,bop+noise,gumbel,sigmoid"
MAX_EXACT_K = 20  # the exact-rule check enumerates all 2^K inputs


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=True)
    p.add_argument("--estimators", default=DEFAULT_SPECS, help="comma-separated specs: NAME or NAME+noise")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (each: a new rule and data)")
    p.add_argument("--features", type=int, default=10, help="K binary features")
    p.add_argument("--clauses", type=int, default=3, help="conjunctions of the ground-truth rule")
    p.add_argument("--width", type=int, default=3, help="literals per ground-truth conjunction")
    p.add_argument("--samples", type=int, default=2000, help="train + test samples (20%% test)")
    p.add_argument("--label-noise", type=float, default=0.0, help="train-label flip probability")
    p.add_argument("--rules", type=int, default=64, help="N, conjunctions in the block's pool")
    p.add_argument("--lambda-g", type=float, default=1e-4, help="sparsity weight")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam lr of logits (STE latent weights, surrogates)")
    p.add_argument("--noise-lr", type=float, default=None, help="Adam lr of the noise σ (default: --lr)")
    p.add_argument("--sigma0", type=float, default=0.2)
    p.add_argument("--bop-gamma", type=float, default=1e-4)
    p.add_argument("--bop-threshold", type=float, default=1e-6)
    p.add_argument("--init-std", type=float, default=1e-3, help="std of initial latent logits")
    p.add_argument("--target", type=float, default=99.0, help="train accuracy (%%) for 'epochs to target'")
    p.add_argument("--out", default="runs/dnf_convergence", help="folder for tb/, results.json, report.md")
    p.add_argument("--no-tb", action="store_true", help="do not write TensorBoard curves")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny tensors: 1 is fastest)")
    p.add_argument("--device", default="cpu")
    return p


def make_estimator(spec: str, args: argparse.Namespace):
    parsed = parse_spec(spec)
    kw: Dict[str, Any] = {}
    if parsed.name == "bop":
        kw = dict(gamma=args.bop_gamma, threshold=args.bop_threshold)
    return parsed.build(sigma0=args.sigma0, **kw)


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: TabularSet, device: torch.device) -> float:
    """Accuracy (%) of the derived rules (eval mode) on a whole split."""
    model.eval()
    pred = model(data.x.to(device)).argmax(1).cpu()
    model.train()
    return 100.0 * float((pred == data.y).float().mean())


def live_gradients(model: torch.nn.Module, data: TabularSet, device: torch.device) -> float:
    """Fraction of W/S entries (logits or discrete state) with a non-zero gradient of the training
    loss over the whole split, in training mode (what the optimiser sees)."""
    params = arch_parameters(model, "logits") + arch_parameters(model, "discrete")
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(data.x.to(device)), data.y.to(device)) + model.penalty()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    live = sum(int((g != 0).sum()) for g in grads if g is not None)
    return live / sum(p.numel() for p in params)


def exact_recovery(model: torch.nn.Module, rule, K: int, device: torch.device) -> Optional[bool]:
    """Whether the derived rules equal the ground truth on all 2^K inputs (None if K is too big)."""
    if K > MAX_EXACT_K:
        return None
    x = torch.tensor(list(itertools.product((0.0, 1.0), repeat=K)))
    truth = eval_dnf(x, rule)
    model.eval()
    with torch.no_grad():
        pred = model(x.to(device)).argmax(1).cpu().bool()
    model.train()
    return bool((pred == truth).all())


def run_one(spec: str, seed: int, args: argparse.Namespace, device: torch.device) -> Dict[str, Any]:
    opts = TabularOptions(features=args.features, clauses=args.clauses, width=args.width,
                          noise=args.label_noise, samples=args.samples)
    train = load_tabular("synthetic_dnf", split="train", seed=seed, options=opts)
    test = load_tabular("synthetic_dnf", split="test", seed=seed, options=opts)
    torch.manual_seed(seed)
    est = make_estimator(spec, args)
    model = DNFSpace().build_supernet(est, num_classes=2, in_channels=args.features, rules=args.rules,
                                      lambda_g=args.lambda_g, init_std=args.init_std,
                                      generator=torch.Generator().manual_seed(seed)).to(device)
    optims = build_optimizers(model, est, epochs=args.epochs, arch_lr=args.lr, arch_betas=(0.9, 0.999),
                              arch_weight_decay=0.0, noise_lr=args.noise_lr)
    loader = TabularLoader(train.x, train.y, batch_size=args.batch_size, shuffle=True, seed=seed, device=device)
    searcher = Searcher(model, est, optims, loader, loader, epochs=args.epochs, mode="joint", grad_clip=0.0)
    writer = None
    if not args.no_tb:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(Path(args.out) / "tb" / spec.replace("+", "_") / f"seed{seed}"))
    curve: List[Dict[str, float]] = []
    to_target = None
    t0 = time.time()
    for epoch in range(args.epochs):
        m = searcher.train_epoch(epoch)
        row = {"epoch": epoch + 1, "loss": m["train_loss"], "train_acc": accuracy(model, train, device),
               "test_acc": accuracy(model, test, device), "live_grad": live_gradients(model, train, device),
               **{f"estimator/{k}": v for k, v in est.scalars().items()}}
        curve.append(row)
        if to_target is None and row["train_acc"] >= args.target:
            to_target = epoch + 1
        if writer is not None:
            for k, v in row.items():
                if k != "epoch":
                    writer.add_scalar(k, v, epoch + 1)
    if writer is not None:
        writer.add_text("rules", model.genotype().text().replace("\n", "  \n"), args.epochs)
        writer.close()
    last = curve[-1]
    return {"spec": spec, "seed": seed, "train_acc": last["train_acc"], "test_acc": last["test_acc"],
            "epochs_to_target": to_target, "exact": exact_recovery(model, train.rule, args.features, device),
            "live_grad": last["live_grad"], "seconds": round(time.time() - t0, 2),
            "truth": dnf_string(train.rule, train.features), "rules": str(model.genotype()), "curve": curve}


def _mean_std(xs: List[float]) -> str:
    if not xs:
        return "–"
    return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def table(results: List[Dict[str, Any]], specs: List[str], target: float) -> str:
    head = ("| estimator | seeds | train acc % | test acc % | epochs to "
            f"{target:g}% (per seed) | exact rule | live grad (end) | s/run |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |\n")
    lines = []
    for spec in specs:
        rs = [r for r in results if r["spec"] == spec]
        if rs and "error" in rs[0]:
            lines.append(f"| {spec} | – | unavailable: {rs[0]['error']} | | | | | |")
            continue
        ep = ", ".join(str(r["epochs_to_target"]) if r["epochs_to_target"] else "never" for r in rs)
        exact = [r["exact"] for r in rs if r["exact"] is not None]
        lines.append(f"| {spec} | {len(rs)} | {_mean_std([r['train_acc'] for r in rs])} | "
                     f"{_mean_std([r['test_acc'] for r in rs])} | {ep} | "
                     f"{sum(exact)}/{len(exact) if exact else '–'} | "
                     f"{_mean_std([100 * r['live_grad'] for r in rs])} % | "
                     f"{statistics.mean(r['seconds'] for r in rs):.1f} |")
    return head + "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> List[Dict[str, Any]]:
    device = torch.device(args.device)
    specs = [s.strip() for s in args.estimators.split(",") if s.strip()]
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    results: List[Dict[str, Any]] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        for spec, seed in itertools.product(specs, seeds):
            if any(r["spec"] == spec and "error" in r for r in results):
                continue
            try:
                r = run_one(spec, seed, args, device)
            except NasError as e:
                results.append({"spec": spec, "seed": seed, "error": str(e)})
                continue
            results.append(r)
            print(f"{spec:>10} seed {seed}: train {r['train_acc']:.1f}% test {r['test_acc']:.1f}% "
                  f"to-target {r['epochs_to_target'] or 'never'} exact {r['exact']} "
                  f"live-grad {100 * r['live_grad']:.1f}% ({r['seconds']:.1f}s)", file=sys.stderr, flush=True)
    finally:
        torch.set_num_threads(threads)
    report = table(results, specs, args.target)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report)
    (out / "results.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(report)
    return results


if __name__ == "__main__":
    from nas.utils.pipes import exit_quietly_on_closed_pipe
    exit_quietly_on_closed_pipe()
    main(get_args_parser().parse_args())
