"""xautodl's NAS-Bench-201 search step, timed by the code that times this project's
(``nas-bench --against-xautodl DIR``; one measurement per process, JSON on stdout).

xautodl (D-X-Y/AutoDL-Projects) is imported from ``DIR`` at run time, only here: this project
keeps no copy of its code and does not depend on it. The step is its search loop's
(``exps/NAS-Bench-201-algos/DARTS-V1.py`` and ``GDAS.py``, first order): a weight step
(``zero_grad``, forward, cross entropy, ``backward``, ``clip_grad_norm_(network.parameters(), 5)``,
SGD lr 0.025 momentum 0.9 nesterov weight decay 5e-4) on a train batch, then an architecture step
(``zero_grad``, forward, ``backward``, Adam lr 3e-4 betas (0.5, 0.999) weight decay 1e-3) on a val
batch; ``TinyNetworkDarts`` / ``TinyNetworkGDAS`` (τ=10, its first epoch) with the NB201 op set,
``affine=False`` and ``track_running_stats=True`` as this project's supernet.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Dict

import torch

from nas.benchmarks.steps import conv_rate, time_steps, timing_parser
from nas.errors import NasError

MODELS = {"darts": "TinyNetworkDarts", "gdas": "TinyNetworkGDAS"}


def check_dir(path: str) -> Path:
    root = Path(path).expanduser().resolve()
    if not (root / "xautodl" / "models" / "cell_searchs").is_dir():
        raise NasError(f"--against-xautodl {path}: no xautodl/models/cell_searchs there; give the folder that "
                       f"holds xautodl/ (e.g. git archive HEAD xautodl of D-X-Y/AutoDL-Projects, untarred)")
    return root


def import_xautodl(path: str) -> Dict[str, ModuleType]:
    root = check_dir(path)
    sys.path.insert(0, str(root))
    return {name: importlib.import_module(f"xautodl.models.{name}") for name in ("cell_searchs", "cell_operations")}


def measure(model_name: str, args: argparse.Namespace) -> Dict[str, float]:
    if model_name not in MODELS:
        raise NasError(f"xautodl model '{model_name}': use one of {', '.join(MODELS)}")
    mods = import_xautodl(args.dir)
    device = torch.device(args.device)
    torch.manual_seed(0)
    cls = getattr(mods["cell_searchs"], MODELS[model_name])
    space = mods["cell_operations"].SearchSpaceNames["nas-bench-201"]
    net = cls(args.C, args.N, 4, 10, space, False, True).to(device)
    w_opt = torch.optim.SGD(net.get_weights(), 0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)
    a_opt = torch.optim.Adam(net.get_alphas(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    shape = (args.batch, 3, args.resolution, args.resolution)
    batches = [(torch.randn(shape, device=device), torch.randint(0, 10, (args.batch,), device=device))
               for _ in range(2)]
    net.train()

    def step() -> None:
        (x, y), (xv, yv) = batches
        w_opt.zero_grad()
        _, logits = net(x)
        criterion(logits, y).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5)
        w_opt.step()
        a_opt.zero_grad()
        _, logits = net(xv)
        criterion(logits, yv).backward()
        a_opt.step()

    out = time_steps(step, args, device)
    if device.type == "cpu":
        out.update(conv_rate(step, args))
    return out


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas-bench-xautodl", parents=[timing_parser()])
    p.add_argument("--dir", required=True, help="the folder that holds xautodl/")
    return p


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        print(json.dumps(measure(args.one, args)))
    except NasError as e:
        print(f"nas-bench: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
