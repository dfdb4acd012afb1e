"""A second program template for the program block: learn a 2-line counter.

    python examples/program_counter.py --estimator ste --noise adaptive

Registers ``x`` (the input, 0..7) and ``y`` (the output, starts at 0); instructions ``INC``
(``y ← y + 1 mod 8``), ``DEC`` (``x ← max(x - 1, 0)``) and ``NOP``; two learnable lines (an
instruction and a goto each: 3² · 2² = 36 programs), 14 unrolled steps, halting after the first
step that leaves ``x = 0``. The task: ``y = x`` for every input ``x = 1..7``, i.e. count x down
while counting y up. The one correct program is ``0: INC; goto 1 / 1: DEC; goto 0``.

The learnable lines are trained by the chosen estimator through the registry
(``nas.estimators.build_estimator``), with Adam on the logits and noise temperatures and Bop on a
discrete state, as the search loop does; the loss is the cross-entropy of the final ``y``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.blocks.program import Instruction, ProgramBlock, Template, log_probs, table  # noqa: E402
from nas.estimators import build_estimator  # noqa: E402
from nas.supernet import arch_parameters  # noqa: E402

SIZE = 8


def counter_template(size: int = SIZE) -> Template:
    return Template(
        registers={"x": size, "y": size},
        instructions=[
            Instruction("INC", {"y": (("y",), table(lambda y: (y + 1) % size, (size,), size))}),
            Instruction("DEC", {"x": (("x",), table(lambda x: max(x - 1, 0), (size,), size))}),
            Instruction("NOP", {}),
        ],
        lines=2, steps=2 * (size - 1), halt=("x", 0))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--estimator", default="softmax")
    p.add_argument("--noise", default="none", choices=["none", "adaptive"])
    p.add_argument("--steps", type=int, default=150, help="optimisation steps (one batch: every input)")
    p.add_argument("--lr", type=float, default=0.1, help="Adam lr of the logits and noise temperatures")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(args: argparse.Namespace) -> Dict[str, object]:
    torch.manual_seed(args.seed)
    kw = {"gamma": 1e-2, "threshold": 1e-4} if args.estimator == "bop" else {}
    est = build_estimator(args.estimator, noise=args.noise, **kw)
    block = ProgramBlock(counter_template(), est, init_std=0.5, generator=torch.Generator().manual_seed(args.seed))
    x = torch.arange(1, SIZE)                                     # every input
    continuous = arch_parameters(block, "logits") + arch_parameters(block, "noise")
    adam = torch.optim.Adam(continuous, lr=args.lr) if continuous else None
    bop = est.discrete_optimizer(arch_parameters(block, "discrete"))
    for step in range(args.steps):
        est.set_progress(step, args.steps)
        y = block({"x": x})["y"]
        loss = F.nll_loss(log_probs(y), x)
        block.zero_grad()
        loss.backward()
        for opt in (adam, bop):
            if opt is not None:
                opt.step()
        est.after_step({"noise": arch_parameters(block, "noise")})
    block.eval()
    with torch.no_grad():
        exact = float((block({"x": x})["y"].argmax(1) == x).float().mean())
    return {"program": block.text(), "accuracy": 100.0 * exact}


if __name__ == "__main__":
    result = main(get_args_parser().parse_args())
    print(f"program: {result['program']}\naccuracy on x = 1..{SIZE - 1}: {result['accuracy']:.0f} %")
