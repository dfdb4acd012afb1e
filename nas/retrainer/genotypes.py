"""Where a genotype to retrain comes from: a ``genotype.yaml``, a run folder, a named published
cell, or the genotype's own string (NB201 ``|op~0|+...``, DARTS ``Genotype(...)``).

A genotype.yaml may carry the ``imports`` and ``op_args`` of the run that wrote it
(:mod:`nas.plugins`): the imports are imported before the genotype is read, and the op options
come back with it (the ``extras`` of :func:`resolve_record`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import yaml

from ..errors import CheckpointError, ConfigError
from ..plugins import import_user_modules, split_record

NO_EXTRAS: Dict[str, Any] = {"imports": [], "op_args": {}}


def genotype_from_data(data: Any, where: str) -> Tuple[Any, Any]:
    """``(space, genotype)`` from the mapping of a genotype.yaml."""
    space, genotype, _ = record_from_data(data, where)
    return space, genotype


def record_from_data(data: Any, where: str) -> Tuple[Any, Any, Dict[str, Any]]:
    """``(space, genotype, extras)`` from the mapping of a genotype.yaml, its imports imported."""
    from nas.spaces import SPACES, get_space
    data, extras = split_record(data)
    import_user_modules(extras["imports"])
    if not isinstance(data, dict):
        raise CheckpointError(f"{where} is not a genotype file (expected a mapping with 'space' and the cell)")
    name = data.get("space")
    if name is None:  # files written by hand: the space that recognises its keys
        name = next((n for n in SPACES.names() if get_space(n).claims_genotype_dict(data)), None)
    if name not in SPACES.names():
        raise CheckpointError(f"{where}: unknown or missing 'space' ({name!r}); known: {', '.join(SPACES.names())}")
    space = get_space(name)
    return space, space.genotype_from_dict(data), extras


def resolve_genotype(spec: str) -> Tuple[Any, Any]:
    """``(space, genotype)`` for ``model.genotype``; every failure is one line."""
    space, genotype, _ = resolve_record(spec)
    return space, genotype


def resolve_record(spec: str) -> Tuple[Any, Any, Dict[str, Any]]:
    """``(space, genotype, extras)`` for ``model.genotype`` (extras: the imports and op options a
    genotype.yaml records; none for a string or a named cell)."""
    from nas.spaces import SPACES, get_space
    spaces = [get_space(n) for n in SPACES.names()]
    forms = ", ".join(s.genotype_hint for s in spaces if s.genotype_hint)
    spec = (spec or "").strip()
    if not spec:
        raise ConfigError(f"model.genotype is empty; give a genotype.yaml, a run folder or a genotype string ({forms})")
    for space in spaces:  # each space reads its own printed genotypes and named cells
        genotype = space.genotype_from_string(spec)
        if genotype is not None:
            return space, genotype, dict(NO_EXTRAS)
    path = Path(spec).expanduser()
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError:  # e.g. a name too long to be a path
        is_dir = is_file = False
    if is_dir:
        path = path / "genotype.yaml"
        if not path.is_file():
            raise CheckpointError(f"{path.parent} has no genotype.yaml; derive one with nas-derive {path.parent}")
        is_file = True
    if is_file:
        try:
            data = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} is not valid YAML ({str(e).splitlines()[0][:100]})") from None
        return record_from_data(data, str(path))
    raise ConfigError(f"model.genotype: '{spec[:80]}' is not a file or folder nor a genotype string ({forms})")
def check_replacement(given: str, own: str, where: str, resuming: bool) -> None:
    """A one-line ConfigError for ``--genotype given`` where the cell ``own`` belongs: on resume
    (``own``: the run's genotype.yaml) any other cell, since the checkpoint's is the one trained;
    else a cell of another space than the config's own (``where``), whose ``model`` keys are
    another network's. Nothing when ``own`` cannot be read (there is nothing to compare with)."""
    from ..errors import NasError
    if not own or given == own:
        return
    try:
        own_space, own_cell, _ = resolve_record(own)
    except NasError:
        return
    space, cell, _ = resolve_record(given)
    if resuming and (space.name, space.genotype_to_dict(cell)) != (own_space.name, own_space.genotype_to_dict(own_cell)):
        raise ConfigError(f"--genotype {given} is not the cell {where} trains ({own_cell}); resume without "
                          f"--genotype, or retrain {given} in a new run with --out")
    if space.name != own_space.name:
        raise ConfigError(f"--genotype {given} is a cell of the {space.name} space; {where} is a config for the "
                          f"{own_space.name} space (its model.genotype and model.* keys are for that network): give a "
                          f"{space.name} retrain config")
