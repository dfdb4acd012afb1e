"""The maze program template and its models (Gaunt et al. 2016/2017; task: ``nas/data/maze.py``).

Registers ``X ∈ width``, ``Y ∈ height``, ``dir ∈ 5``, ``reg ∈ count``, all starting at 0 except
the start cell ``(X0, Y0)``; instructions

* ``INC``: ``reg ← reg + 1 mod count``;  ``DEC``: ``reg ← reg - 1 mod count``;
* ``MOVE``: ``X ← clamp(X + dx[dir])``, ``Y ← clamp(Y + dy[dir])`` (dir 0 stays; a move off the
  grid stays at the border);
* ``LOOK``: ``dir ← LOOK(image at X, Y)``, a learned function (:class:`LookNet`);

``lines`` learnable lines (default 3) and ``steps`` unrolled steps (default 45). ``halt_on``
(``space.halt``): ``"value"`` (the default) halts after the first step that leaves
``dir = 0``, so a program whose first line is not LOOK halts after one step (``dir`` starts at 0);
``"write"`` halts after a step that writes ``dir = 0``, a LOOK at a halt cell. One correct program
is ``0: LOOK; goto 1 / 1: MOVE; goto 2 / 2: INC; goto 0``; with ``L ≤ 14`` moves it halts after
``3L + 1 ≤ 43`` steps. Four of the 1,728 programs are correct under "value" (LOOK first, then MOVE
and INC in a cycle), six under "write" (also MOVE, LOOK, INC in a cycle: a first MOVE by dir 0 stays).

The models output log-probabilities of the joint outcome ``(X, Y, reg)`` as a product of the
final marginals, so the search loop's cross-entropy is ``-log p_X - log p_Y - log p_reg`` and its
accuracy is "final cell and count both exact".
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.blocks.program import FixedProgram, Instruction, ProgramBlock, Template, log_probs, one_hot, table
from nas.data.maze import DIRECTIONS, DX, DY, MazeInput, MazeSet
from nas.estimators.base import Estimator

from ..base import Network, Supernet
from .genotype import ProgramGenotype

INSTRUCTIONS = ("INC", "DEC", "MOVE", "LOOK")
LINES, STEPS, LOOK_HIDDEN = 3, 45, 32
CHUNK = 512      # mazes per batch in the final scores


def maze_template(width: int, height: int, count: int, lines: int = LINES, steps: int = STEPS,
                  halt_on: str = "value") -> Template:
    def clamp(v: int, n: int) -> int:
        return min(max(v, 0), n - 1)

    move_x = table(lambda x, d: clamp(x + DX[d], width), (width, DIRECTIONS), width)
    move_y = table(lambda y, d: clamp(y + DY[d], height), (height, DIRECTIONS), height)
    return Template(
        registers={"X": width, "Y": height, "dir": DIRECTIONS, "reg": count},
        instructions=[
            Instruction("INC", {"reg": (("reg",), table(lambda r: (r + 1) % count, (count,), count))}),
            Instruction("DEC", {"reg": (("reg",), table(lambda r: (r - 1) % count, (count,), count))}),
            Instruction("MOVE", {"X": (("X", "dir"), move_x), "Y": (("Y", "dir"), move_y)}),
            Instruction("LOOK", {"dir": (("X", "Y"), "look")}),
        ],
        lines=lines, steps=steps, halt=("dir", 0), halt_on=halt_on)


class LookNet(nn.Module):
    """``LOOK``: a small convnet on each cell's 8×8 image (3×3 conv to 8 channels, ReLU, 2×2 max
    pool, ``128 → hidden → 5``); ``forward(MazeInput) -> logits [B, W, H, 5]`` indexed by the
    instruction's input registers (X, Y). (An MLP ``64 → 32 → 5`` read about one more test image
    wrongly and, on 2 of 6 seeds with the correct program fixed, never left "always halt".)"""

    CHANNELS = 8

    def __init__(self, hidden: int = LOOK_HIDDEN):
        super().__init__()
        self.conv = nn.Conv2d(1, self.CHANNELS, 3, padding=1)
        self.head = nn.Sequential(nn.Linear(self.CHANNELS * 16, hidden), nn.ReLU(), nn.Linear(hidden, DIRECTIONS))

    def forward(self, x: MazeInput) -> Tensor:
        B, H, W, _ = x.images.shape
        z = F.max_pool2d(F.relu(self.conv(x.images.reshape(B * H * W, 1, 8, 8))), 2)   # [BHW, 8, 4, 4]
        return self.head(z.flatten(1)).view(B, H, W, DIRECTIONS).transpose(1, 2)       # [B, W, H, 5]


def joint_log_probs(state: Dict[str, Tensor]) -> Tensor:
    """``log p̃_X[x] + log p̃_Y[y] + log p̃_reg[c]`` as ``[B, W·H·count]`` in the order of the
    maze targets ``(x·H + y)·count + c``, each factor smoothed by :func:`~nas.blocks.program.log_probs`."""
    lx, ly, lc = (log_probs(state[r]) for r in ("X", "Y", "reg"))
    return (lx[:, :, None, None] + ly[:, None, :, None] + lc[:, None, None, :]).flatten(1)


class MazeModel(nn.Module):
    """``forward(MazeInput) -> joint log-probabilities`` of a program block on the maze (the
    supernet and the discrete network share it)."""

    block: nn.Module

    def run(self, x: MazeInput, tables: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
        return self.block({"X": x.start[:, 0], "Y": x.start[:, 1]}, x, tables)

    def forward(self, x: MazeInput) -> Tensor:
        return joint_log_probs(self.run(x))

    def genotype(self) -> ProgramGenotype:
        instrs, gotos = self.program()
        return ProgramGenotype(tuple(instrs), tuple(gotos))

    def artifacts(self, genotype: Optional[ProgramGenotype] = None) -> Dict[str, str]:
        """Files a run folder keeps next to genotype.yaml: the program as code."""
        return {"program.txt": (genotype or self.genotype()).text()}

    @torch.no_grad()
    def extra_metrics(self, info: Dict[str, Any]) -> Dict[str, Any]:
        """Final scores on the held-out test mazes (``info["test_set"]``), see :func:`scores`."""
        return scores(self, info["test_set"]) if "test_set" in info else {}


class MazeSupernet(MazeModel, Supernet):
    """The maze template with learnable lines (``instr``, ``goto``) and a :class:`LookNet`."""

    def __init__(self, estimator: Estimator, *, width: int, height: int, count: int, lines: int = LINES,
                 steps: int = STEPS, look_hidden: int = LOOK_HIDDEN, halt_on: str = "value",
                 init_std: float = 1e-3, generator: Optional[torch.Generator] = None):
        super().__init__()
        self.template = maze_template(width, height, count, lines, steps, halt_on)
        self.block = ProgramBlock(self.template, estimator.for_kind("program"), {"look": LookNet(look_hidden)},
                                  init_std=init_std, generator=generator)

    def program(self) -> Tuple[list, list]:
        return self.block.derived()


class MazeNetwork(MazeModel, Network):
    """The discrete model of a genotype: its fixed program and a fresh :class:`LookNet`."""

    def __init__(self, genotype: ProgramGenotype, *, width: int, height: int, count: int,
                 steps: int = STEPS, look_hidden: int = LOOK_HIDDEN, halt_on: str = "value"):
        super().__init__()
        self.template = maze_template(width, height, count, len(genotype.instrs), steps, halt_on)
        self.block = FixedProgram(self.template, genotype.instrs, genotype.gotos, {"look": LookNet(look_hidden)})

    def program(self) -> Tuple[list, list]:
        return list(self.block.instrs), list(self.block.gotos)


def perfect_look(digits: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """The table of a perfect LOOK for grids ``digits [B, H, W]``: one-hot ``[B, W, H, 5]``."""
    return one_hot(digits.transpose(1, 2), DIRECTIONS, dtype)


def scores(model: MazeModel, data: MazeSet, chunk: int = CHUNK) -> Dict[str, Any]:
    """In eval mode (the derived program, argmax LOOK) over every maze of ``data``:

    * ``test_acc``: % of mazes whose final cell and count are both exact (end to end);
    * ``oracle_acc``: the same with a perfect LOOK (the true digits), and ``program_correct``:
      whether that is 100 %, i.e. the derived program is correct on every maze;
    * ``look_acc``: % of the mazes' cell images that LOOK reads as their digit.
    """
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    y_all = data.targets()
    hits = {"test_acc": 0, "oracle_acc": 0, "look_acc": 0}
    for i in range(0, len(data), chunk):
        sl = slice(i, i + chunk)
        x = MazeInput(data.images[sl].to(device), data.start[sl].to(device))
        y = y_all[sl].to(device)
        hits["test_acc"] += int((model(x).argmax(1) == y).sum())
        oracle = model.run(x, {"look": perfect_look(data.digits[sl].to(device))})
        hits["oracle_acc"] += int((joint_log_probs(oracle).argmax(1) == y).sum())
        read = model.block.functions["look"](x).argmax(-1).transpose(1, 2)   # [B, H, W]
        hits["look_acc"] += int((read == data.digits[sl].to(device)).sum())
    model.train(was)
    n = len(data)
    out = {"test_acc": 100.0 * hits["test_acc"] / n, "oracle_acc": 100.0 * hits["oracle_acc"] / n,
           "look_acc": 100.0 * hits["look_acc"] / data.digits.numel()}
    out["program_correct"] = hits["oracle_acc"] == n
    return out
