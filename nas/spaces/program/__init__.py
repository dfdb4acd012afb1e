"""``program``: a program template with learnable lines, learned jointly with a LOOK network
(the digit maze of ``nas/data/maze.py``); the genotype is the derived program, printed as code
(``program.txt`` in the run folder)."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from nas.errors import ConfigError
from nas.estimators.base import Estimator

from dataclasses import dataclass
from typing import Literal

from nas.bounds import ranged
from nas.options import option

from ..base import MAZE, SearchSpace, bad_genotype
from .genotype import ProgramGenotype
from .maze import INSTRUCTIONS, LINES, LOOK_HIDDEN, STEPS, MazeNetwork, MazeSupernet, maze_template, scores

# the smallest maze model of the contract tests (tests/test_contract.py): 3 outcomes (a 1x1 grid,
# a counter mod 3), 3 lines, 6 steps, halting on a write: the tiny supernet's initial hard program
# (INC first) then keeps running, so every line and goto bears on the output. (Under the default
# halt_on="value" a hard program whose first line is not LOOK halts after one step, and its gotos
# get a true zero gradient.)
TINY = dict(width=1, height=1, count=3, steps=6, look_hidden=4, halt_on="write")


@dataclass
class ProgramOptions:
    """``space.*`` of the program space: its template's size and its LOOK network."""
    lines: int = ranged(LINES, ge=1, help="learnable program lines")
    steps: int = ranged(STEPS, ge=1, help="unrolled execution steps")
    look_hidden: int = ranged(LOOK_HIDDEN, ge=1, help="hidden units of the LOOK network")
    halt: Literal["value", "write"] = option("value", help="halt after a step that leaves dir = 0 / that writes it")


class ProgramSpace(SearchSpace):
    """The maze template (:mod:`.maze`): its instructions are fixed by the template, not
    registered ops, so ``space.ops`` does not apply; ``space.*`` (:class:`ProgramOptions`) sizes the template and
    ``data.*`` of the maze (the task) the registers."""

    name = "program"
    ops = ()
    main_kind = "program"
    data_kind = MAZE
    Options = ProgramOptions
    tiny_supernet = {**TINY, "lines": 3}
    tiny_network = TINY

    def supernet_kwargs(self, cfg: Any, info: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        p, m = cfg.space, cfg.data
        return dict(lines=p.lines, steps=p.steps, look_hidden=p.look_hidden, halt_on=p.halt, width=m.width,
                    height=m.height, count=m.count)

    def build_supernet(self, estimator: Estimator, *, num_classes: int, width: int, height: int, count: int,
                       lines: int = LINES, steps: int = STEPS, look_hidden: int = LOOK_HIDDEN,
                       halt_on: str = "value", init_std: float = 1e-3,
                       generator: Optional[torch.Generator] = None, **_: Any) -> MazeSupernet:
        if lines < 1 or steps < 1 or look_hidden < 1:
            raise ConfigError(f"space: lines, steps and look_hidden must be positive, got "
                              f"lines={lines}, steps={steps}, look_hidden={look_hidden}")
        if num_classes != width * height * count:
            raise ConfigError(f"the program space scores width·height·count = {width * height * count} "
                              f"outcomes, the data has {num_classes}; use data.dataset=maze")
        return MazeSupernet(estimator, width=width, height=height, count=count, lines=lines, steps=steps,
                            look_hidden=look_hidden, halt_on=halt_on, init_std=init_std, generator=generator)

    def build_network(self, genotype: ProgramGenotype, *, num_classes: Optional[int] = None, width: int = 5,
                      height: int = 3, count: int = 15, steps: int = STEPS, look_hidden: int = LOOK_HIDDEN,
                      halt_on: str = "value", **_: Any) -> MazeNetwork:
        return MazeNetwork(genotype, width=width, height=height, count=count, steps=steps, look_hidden=look_hidden,
                           halt_on=halt_on)

    def network_kwargs(self, model_cfg: Any) -> Dict[str, Any]:
        raise ConfigError(f"the {self.name} space has no network to retrain (its LOOK is trained with the "
                          f"program); nas-retrain takes a cell of a space with one")

    def genotype_from_dict(self, data: Dict[str, Any]) -> ProgramGenotype:
        g = ProgramGenotype.from_dict(data)
        unknown = [x for x in g.instrs if x not in INSTRUCTIONS]
        if unknown:
            raise bad_genotype(f"unknown instruction '{unknown[0]}'; known: {', '.join(INSTRUCTIONS)}")
        return g

    def genotype_to_dict(self, genotype: ProgramGenotype) -> Dict[str, Any]:
        return genotype.to_dict()


__all__ = ["ProgramSpace", "ProgramGenotype", "MazeSupernet", "MazeNetwork", "maze_template", "scores"]
