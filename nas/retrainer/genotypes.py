"""Where a genotype to retrain comes from: a ``genotype.yaml``, a run folder, a named published
cell, or the genotype's own string (NB201 ``|op~0|+...``, DARTS ``Genotype(...)``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Tuple

import yaml

from ..errors import CheckpointError, ConfigError


def genotype_from_data(data: Any, where: str) -> Tuple[Any, Any]:
    """``(space, genotype)`` from the mapping of a genotype.yaml."""
    from search_spaces import SPACES, get_space
    if not isinstance(data, dict):
        raise CheckpointError(f"{where} is not a genotype file (expected a mapping with 'space' and the cell)")
    name = data.get("space")
    if name is None:  # files written by hand: recognise the space by its keys
        name = "darts" if "normal" in data else "nb201" if str(data.get("arch", "")).startswith("|") else None
    if name not in SPACES.names():
        raise CheckpointError(f"{where}: unknown or missing 'space' ({name!r}); known: {', '.join(SPACES.names())}")
    space = get_space(name)
    return space, space.genotype_from_dict(data)


def resolve_genotype(spec: str) -> Tuple[Any, Any]:
    """``(space, genotype)`` for ``model.genotype``; every failure is one line."""
    from search_spaces import get_space
    from search_spaces.darts import GENOTYPES
    spec = (spec or "").strip()
    if not spec:
        raise ConfigError("model.genotype is empty; give a genotype.yaml, a run folder, a named cell "
                          f"({', '.join(GENOTYPES)}) or a genotype string")
    if spec in GENOTYPES or spec.startswith("Genotype("):
        space = get_space("darts")
        return space, space.genotype_from_dict({"arch": spec})
    if spec.startswith("|"):
        space = get_space("nb201")
        return space, space.genotype_from_dict({"arch": spec})
    path = Path(spec).expanduser()
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError:  # e.g. a name too long to be a path
        is_dir = is_file = False
    if is_dir:
        path = path / "genotype.yaml"
        if not path.is_file():
            raise CheckpointError(f"{path.parent} has no genotype.yaml; derive one with tools/derive.py {path.parent}")
        is_file = True
    if is_file:
        try:
            data = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} is not valid YAML ({str(e).splitlines()[0][:100]})") from None
        return genotype_from_data(data, str(path))
    raise ConfigError(f"model.genotype: '{spec[:80]}' is not a file or folder, a named cell "
                      f"({', '.join(GENOTYPES)}), an NB201 string '|op~0|+...' nor 'Genotype(...)'")
