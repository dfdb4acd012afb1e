"""Search spaces, one registry entry each: ``SPACES.get(name)()`` gives a :class:`SearchSpace`."""
from nas.registry import Registry

from .base import IMAGE, MAZE, TABULAR, Network, SearchSpace, Supernet
from .darts import DartsSpace
from .dnf import DNFSpace
from .nb201 import NB201Space
from .program import ProgramSpace

SPACES = Registry("search space")
SPACES.register("nb201", NB201Space)
SPACES.register("darts", DartsSpace)
SPACES.register("dnf", DNFSpace)
SPACES.register("program", ProgramSpace)


def get_space(name: str) -> SearchSpace:
    return SPACES.get(name, "space.name")()


__all__ = ["SPACES", "SearchSpace", "Supernet", "Network", "IMAGE", "TABULAR", "MAZE", "get_space"]
