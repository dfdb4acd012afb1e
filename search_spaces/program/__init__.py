"""``program``: a program template with learnable lines, learned jointly with a LOOK network
(the digit maze of ``nas/data/maze.py``); the genotype is the derived program, printed as code
(``program.txt`` in the run folder)."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from nas.errors import ConfigError
from nas.estimators.base import Estimator

from ..base import SearchSpace, bad_genotype
from .genotype import ProgramGenotype
from .maze import INSTRUCTIONS, LINES, LOOK_HIDDEN, STEPS, MazeNetwork, MazeSupernet, maze_template, scores


class ProgramSpace(SearchSpace):
    name = "program"
    ops = INSTRUCTIONS

    def build_supernet(self, estimator: Estimator, *, num_classes: int, width: int, height: int, count: int,
                       lines: int = LINES, steps: int = STEPS, look_hidden: int = LOOK_HIDDEN,
                       init_std: float = 1e-3, generator: Optional[torch.Generator] = None,
                       gates: str = "none", **_: Any) -> MazeSupernet:
        if gates != "none":
            raise ConfigError("space.gates: the program space has no edges, ops or channels to gate; use gates=none")
        if lines < 1 or steps < 1 or look_hidden < 1:
            raise ConfigError(f"space.program: lines, steps and look_hidden must be positive, got "
                              f"lines={lines}, steps={steps}, look_hidden={look_hidden}")
        if num_classes != width * height * count:
            raise ConfigError(f"the program space scores width·height·count = {width * height * count} "
                              f"outcomes, the data has {num_classes}; use data.dataset=maze")
        return MazeSupernet(estimator, width=width, height=height, count=count, lines=lines, steps=steps,
                            look_hidden=look_hidden, init_std=init_std, generator=generator)

    def build_network(self, genotype: ProgramGenotype, *, width: int = 5, height: int = 3, count: int = 15,
                      steps: int = STEPS, look_hidden: int = LOOK_HIDDEN, **_: Any) -> MazeNetwork:
        return MazeNetwork(genotype, width=width, height=height, count=count, steps=steps, look_hidden=look_hidden)

    def genotype_from_dict(self, data: Dict[str, Any]) -> ProgramGenotype:
        g = ProgramGenotype.from_dict(data)
        unknown = [x for x in g.instrs if x not in INSTRUCTIONS]
        if unknown:
            raise bad_genotype(f"unknown instruction '{unknown[0]}'; known: {', '.join(INSTRUCTIONS)}")
        return g

    def genotype_to_dict(self, genotype: ProgramGenotype) -> Dict[str, Any]:
        return genotype.to_dict()


__all__ = ["ProgramSpace", "ProgramGenotype", "MazeSupernet", "MazeNetwork", "maze_template", "scores"]
