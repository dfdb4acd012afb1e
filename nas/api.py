"""The public Python API: what the commands do, as functions (timm's ``create_model`` /
``list_models`` are the model for this surface).

>>> import nas
>>> cfg = nas.load_config("quickstart", "trainer.epochs=2")
>>> result = nas.search(cfg)                 # a run folder under runs/, like nas-search
>>> net = nas.build_network("nb201", result.genotype, num_classes=10, C=8, N=1)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

from .config import Config, apply_overrides, from_dict, load_yaml
from .errors import ConfigError, NasError

ConfigLike = Union[str, os.PathLike, Config, Any]
from .data.registry import GIVEN as API_DATASET  # data.dataset of a run given a dataset object


def load_config(name_or_path: Optional[Union[str, os.PathLike]] = None, *overrides: str) -> Any:
    """A validated config from a shipped config's name (``"quickstart"``, ``"nb201_cifar10_cpu"``,
    ``"retrain_nb201_digits"``) or a YAML path, plus ``key=value`` overrides. A config with a
    ``model`` section is a retrain config (:class:`~nas.retrainer.RetrainConfig`), any other a
    search config (:class:`~nas.config.Config`). ``None``: the quickstart."""
    from .config import CONFIG_DIR
    from .retrainer.config import RetrainConfig
    if name_or_path is not None and not isinstance(name_or_path, (str, os.PathLike)):
        raise ConfigError(f"load_config: name_or_path is a {type(name_or_path).__name__}; give a shipped "
                          f"config's name or a YAML path")
    for o in overrides:
        if not isinstance(o, str):
            raise ConfigError(f"load_config: override {o!r} is a {type(o).__name__}; give 'key=value' "
                              f"strings, e.g. load_config('quickstart', 'trainer.epochs=5')")
    data = apply_overrides(load_yaml(name_or_path if name_or_path is not None else CONFIG_DIR / "quickstart.yaml"),
                           overrides)
    return from_dict(RetrainConfig if "model" in data else Config, data)


def _config(config: Optional[ConfigLike], cls: type) -> Any:
    if config is None or isinstance(config, (str, os.PathLike)):
        config = load_config(config)
    if not isinstance(config, cls):
        raise ConfigError(f"expected a {cls.__name__} (nas.load_config of a "
                          f"{'search' if cls is Config else 'retrain'} config), got {type(config).__name__}")
    return config


def search(config: Optional[ConfigLike] = None, out_dir: Optional[Union[str, os.PathLike]] = None, *,
           quiet: bool = True, resume: bool = False, dataset: Any = None) -> Any:
    """Run a search (``nas-search``); returns a :class:`~nas.searcher.run.SearchResult` with
    ``genotype``, ``out_dir`` and ``metrics``. ``config``: a :class:`Config`, a name or a path.
    ``dataset``: any torchvision-style dataset (``len``, ``ds[i] -> (image, label)``) to search on
    instead of ``data.dataset``: its train split, held in memory or, with ``data.stream=true``,
    read batch by batch (pass it again to resume)."""
    import dataclasses

    from .searcher.run import run_search
    cfg = _config(config, Config)
    if dataset is not None:  # the run folder records that the data came from Python
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset=API_DATASET))
    return run_search(cfg, Path(out_dir) if out_dir is not None else None, quiet=quiet, resume=resume,
                      dataset=dataset)


def derive(run_dir: Union[str, os.PathLike], *, top_k: Optional[int] = None, method: str = "argmax",
           exclude: Optional[str] = None, max_skip: Any = ..., device: str = "cpu",
           write: bool = False, cost: Sequence[str] = (), min_skip: Any = ...,
           rules: Sequence[str] = ()) -> Any:
    """The genotype of a search run folder or checkpoint (``nas-derive``): argmax per edge with the
    run's derive keys (``exclude``/``max_skip``/``min_skip`` override them) or ``method="perturbation"``
    (DARTS-PT). ``cost``: ``KEY=VALUE`` overrides of the run's ``cost:`` section, e.g.
    ``["target=55"]`` (the most probable cell within that budget); ``rules``: of its ``derive:``
    section, e.g. ``["budget_extra_skip=1"]``. ``write=True`` also writes
    ``genotype.yaml`` into the run folder."""
    from .searcher.derive import derive as _derive
    if not isinstance(run_dir, (str, os.PathLike)):
        raise NasError(f"derive: run_dir is {'None' if run_dir is None else 'a ' + type(run_dir).__name__}; "
                       f"give a search run folder or its checkpoint.pt")
    source = Path(run_dir)
    out = (source if source.is_dir() else source.parent) / "genotype.yaml" if write else None
    _, genotype = _derive(source, top_k, device, method, exclude=exclude, max_skip=max_skip, write=out,
                          cost=cost, min_skip=min_skip, rules=rules)
    return genotype


def retrain(config: Optional[ConfigLike] = None, genotype: Any = None,
            out_dir: Optional[Union[str, os.PathLike]] = None, *, quiet: bool = True, resume: bool = False,
            dataset: Any = None) -> Any:
    """Train a genotype from scratch (``nas-retrain``); returns a
    :class:`~nas.retrainer.RetrainResult` (``metrics["test_acc"]``, ``params_m``, ``macs_m``).
    ``genotype``: a genotype object, a run folder, a ``genotype.yaml``, a named cell or a
    genotype string; ``None`` keeps the config's ``model.genotype``. ``dataset``:
    ``{"train": ds, "test": ds}`` torchvision-style datasets instead of ``data.dataset``."""
    import dataclasses

    from .retrainer import RetrainConfig, run_retrain
    cfg = _config(config if config is not None else "retrain_nb201_digits", RetrainConfig)
    if genotype is not None:
        cfg.model.genotype = str(genotype)  # objects print as the strings resolve_genotype parses
    if dataset is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset=API_DATASET))
    return run_retrain(cfg, Path(out_dir) if out_dir is not None else None, quiet=quiet, resume=resume,
                       dataset=dataset)


def export(run: Union[str, os.PathLike], formats: Union[str, Sequence[str]] = "all",
           out_dir: Optional[Union[str, os.PathLike]] = None, *, batch: int = 1,
           resolution: Optional[int] = None, dynamic_batch: bool = False,
           allow_untrained: bool = False) -> Any:
    """Export a run's network (``nas-export``): ``formats`` among ``"onnx"``, ``"pt2"``,
    ``"python"`` or ``"all"``, written to ``out_dir`` (default ``RUN/export``) with an
    ``export.json``; each export is run against the PyTorch network. Returns a
    :class:`nas.deploy.ExportResult` (``files``, ``max_abs_diff`` per format). ``run``: a retrain
    run folder, or with ``allow_untrained=True`` a search run, a genotype.yaml or a genotype
    string (fresh weights)."""
    from .deploy import export as _export
    return _export(run, formats, out_dir, batch=batch, resolution=resolution, dynamic_batch=dynamic_batch,
                   allow_untrained=allow_untrained)


# build_network keywords that count channels, cells or classes: a zero builds empty layers
_SIZES = ("C", "N", "layers", "num_classes", "in_channels")


def build_network(space: str, genotype: Any, **kwargs: Any) -> Any:
    """The discrete network of ``genotype`` in ``space`` as a plain ``nn.Module`` for your own
    training code, e.g. ``build_network("nb201", "|nor_conv_3x3~0|+...", num_classes=10)``
    (keywords: the space's ``build_network``, e.g. NB201 ``C``, ``N``, ``in_channels``; DARTS
    ``C``, ``layers``, ``auxiliary``). ``genotype``: a genotype object, its string, a named cell,
    a ``genotype.yaml`` or a run folder."""
    import inspect

    from nas.spaces import get_space

    from .retrainer.genotypes import resolve_record
    if genotype is None:
        raise ConfigError("build_network: genotype is None; give a genotype object, its string, a named "
                          "cell, a genotype.yaml or a run folder")
    for key in _SIZES:
        value = kwargs.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"build_network: {key}={value!r}; give a whole number of at least 1")
    sp = get_space(space)
    if isinstance(genotype, (str, os.PathLike)):
        found, genotype, extras = resolve_record(str(genotype))
        if found.name != sp.name:
            raise ConfigError(f"genotype of space '{found.name}' given to build_network('{sp.name}', ...)")
        if extras["op_args"] and "op_args" in inspect.signature(sp.build_network).parameters:
            kwargs["op_args"] = {**extras["op_args"], **kwargs.get("op_args", {})}  # as the search built them
    kwargs.setdefault("num_classes", 10)
    return sp.build_network(genotype, **kwargs)


def list_spaces() -> List[str]:
    """Names of the registered search spaces (``space.name``)."""
    from nas.spaces import SPACES
    return SPACES.names()


def list_ops(space: Optional[str] = None) -> List[str]:
    """The default candidates of a search space, or with no space every registered op
    (``space.ops`` may name any of them)."""
    if space is None:
        from .ops import OPS
        return OPS.names()
    from nas.spaces import get_space
    return list(get_space(space).ops)


def list_estimators() -> List[str]:
    """Names of the registered estimators (``estimator.name``)."""
    from .estimators import ESTIMATORS
    return ESTIMATORS.names()


# --------------------------------------------------------------------------- extending nas

def register_op(name: str, *, spelling: Optional[Callable[[Any], Any]] = None) -> Callable[[Any], Any]:
    """``@nas.register_op("name")`` on a builder ``(C_in, C_out, stride, affine, **context) ->
    nn.Module``: a candidate ``space.ops`` can name in any space (context: see
    :mod:`nas.ops.registry`; a builder that needs none takes ``**_``). ``spelling(module) ->
    (class_source, constructor)``: the op as plain torch code for ``nas-export --format python``,
    for an op ``torch.fx`` cannot trace (see docs/export.md)."""
    from .ops import register_op as _register
    return _register(name, spelling=spelling)


def _class_registrar(fn: str, name: str, registry: Any, base: type, required: Sequence[str] = ()) -> Callable[[Any], Any]:
    """The decorator of ``fn(name)``: checks that it decorates a ``base`` subclass that defines
    the ``required`` methods of the contract, names the class ``name`` and registers it."""
    def add(cls: Any) -> Any:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise ConfigError(f"{fn}('{name}'): expected a{'n' if base.__name__[0] in 'AEIOU' else ''} "
                              f"{base.__name__} subclass, got {cls!r}")
        # checked now: the base's method raises NotImplementedError at the first run, a traceback
        missing = [m for m in required if getattr(cls, m, None) is getattr(base, m)]
        if missing:
            raise ConfigError(f"{fn}('{name}'): {cls.__name__} does not define {', '.join(missing)}, which every "
                              f"{base.__name__} must (see {base.__module__.replace('.', '/')}.py)")
        cls.name = name
        return registry.register(name, cls)
    return add


def register_space(name: str) -> Callable[[Any], Any]:
    """``@nas.register_space("name")`` on a :class:`nas.spaces.SearchSpace` subclass (the
    contract of ``nas/spaces/base.py``): it declares ``data_kind`` and its ``Options`` (the
    ``space.*`` keys; by default the keywords its ``build_supernet`` names besides the search's
    own; docs/extending.md); its ``build_supernet(estimator, *, num_classes, ...)`` returns a
    :class:`nas.spaces.Supernet` and gets those options; ``build_network(genotype, *, num_classes, ...)`` returns a
    :class:`nas.spaces.Network` and gets the ``model.*`` keys it names plus
    ``model.args``; ``genotype_to_dict``/``genotype_from_dict`` give the YAML round trip."""
    from nas.spaces import SPACES, SearchSpace
    return _class_registrar("register_space", name, SPACES, SearchSpace,
                            ("build_supernet", "build_network", "genotype_from_dict", "genotype_to_dict"))


def register_estimator(name: str) -> Callable[[Any], Any]:
    """``@nas.register_estimator("name")`` on an :class:`nas.estimators.Estimator` subclass
    (``create``, ``sample``, ``probs``; see ``nas/estimators/base.py``); its ``Options`` dataclass
    (or else its ``__init__`` keywords) are the ``estimator.*`` keys it accepts (docs/extending.md)."""
    from .estimators import ESTIMATORS, Estimator
    return _class_registrar("register_estimator", name, ESTIMATORS, Estimator, ("create", "sample", "probs"))


def register_dataset(name: str, *, kind: str = "image", options: Any = None) -> Callable[[Any], Any]:
    """``@nas.register_dataset("name")`` on ``fn(*, split, root, **_)`` returning a
    torchvision-style dataset (``len`` and ``ds[i] -> (image, label)``) or a
    :class:`nas.data.ImageSet`; ``data.dataset=name`` then uses it (``split``: ``"train"`` or
    ``"test"``; further keywords: ``download``, ``resize``, ``subset``, ``seed``, ``workers``).
    Another ``kind`` of data (:mod:`nas.data.registry`) decides the function's contract;
    ``options``: a dataclass of the dataset's own ``data.*`` keys (docs/extending.md)."""
    from .data import register_dataset as register
    return register(name, kind=kind, options=options)
