"""Search spaces, one registry entry each: ``SPACES.get(name)()`` gives a :class:`SearchSpace`."""
from nas import blocks as _blocks  # noqa: F401  (registers the blocks' ops every space may name)

from nas.config import register_entry_options

from .base import IMAGE, MAZE, TABULAR, Network, SearchSpace, Supernet
from .darts import DartsSpace
from .dnf import DNFSpace
from .nb201 import NB201Space
from .program import ProgramSpace
from .registry import SPACES, get_space, get_space_class

SPACES.register("nb201", NB201Space)
SPACES.register("darts", DartsSpace)
SPACES.register("dnf", DNFSpace)
SPACES.register("program", ProgramSpace)

register_entry_options("space", lambda name: (get_space_class(name).options(),), SPACES.names)
register_entry_options("derive", lambda name: (get_space_class(name).derive_options_class(),), SPACES.names)


__all__ = ["SPACES", "SearchSpace", "Supernet", "Network", "IMAGE", "TABULAR", "MAZE", "get_space", "get_space_class"]
