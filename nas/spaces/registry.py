"""The space registry: ``SPACES.get(name)()`` gives a :class:`~nas.spaces.base.SearchSpace`.
Apart from :mod:`nas.spaces` (which registers the built-in spaces) so that the spaces' own modules
can read it without importing the package that imports them."""
from nas.registry import Registry

SPACES = Registry("search space")


def get_space(name: str):
    return SPACES.get(name, "space.name")()


def get_space_class(name: str) -> type:
    """The registered space class ``name`` (its ``options()`` are the ``space.*`` keys)."""
    return SPACES.get(name, "space.name")
