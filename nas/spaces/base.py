"""What a search space provides to the rest of the tool, and what its supernet and its discrete
network provide: the written contract that the search loop, the run, derive and retrain rely on.

A space is a registry entry (``nas.spaces.SPACES``) with four jobs, kept apart as in DARTS:
its default candidates (names in the one op registry, :mod:`nas.ops.registry`), its supernet
(mixed choices, built with an estimator), its genotype (plain data, YAML round trip) and the
discrete network built only from a genotype.

* :class:`SearchSpace` — builds supernets and networks, reads and writes genotypes, owns its
  ``space.*`` config keys and says what kind of data it takes;
* :class:`Supernet` — the model a search trains: ``forward(x) -> logits`` and ``genotype()``,
  plus penalty, scalars, artifacts, extra metrics, the auxiliary skip β and its architecture
  parameters, each with a default;
* :class:`Network` — the discrete network: a plain module, with the drop-path probability the
  retrain loop sets.

A user's space (``nas.register_space``) may declare nothing but its four jobs: the defaults of
:meth:`SearchSpace.supernet_kwargs`, :meth:`SearchSpace.network_kwargs` and its config keys come
from the keywords its ``build_supernet`` and ``build_network`` name.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Literal, Optional, Sequence, Tuple

from torch import nn

from nas.bounds import ranged
from nas.errors import CheckpointError, ConfigError
from nas.options import NoOptions, option, options_dict, options_of
from nas.estimators.base import CATEGORICAL
from nas.supernet.model import (Network, Penalized, Reporting, Supernet,  # noqa: F401  (a space's author's names)
                                module_penalty, module_scalars)

IMAGE = "image"        # batches [B, C, H, W]
TABULAR = "tabular"    # batches [B, K] of features in [0, 1]
MAZE = "maze"          # batches of nas.data.maze.MazeInput: a grid of digit images and a start cell
DATA_KINDS = (IMAGE, TABULAR, MAZE)


def check_max_skip(value: Optional[int]) -> Optional[int]:
    """``derive.max_skip`` as a supernet takes it: ``None`` (no limit) or 0 or more."""
    if value is not None and value < 0:
        raise ConfigError(f"derive.max_skip must be 0 or more (or null for no limit), got {value}")
    return value


def check_min_skip(value: Optional[int], max_skip: Optional[int]) -> Optional[int]:
    """``derive.min_skip`` as a supernet takes it: ``None`` (no floor) or 0 or more, at most
    ``derive.max_skip``."""
    if value is not None and value < 0:
        raise ConfigError(f"derive.min_skip must be 0 or more (or null for no floor), got {value}")
    if value is not None and max_skip is not None and value > max_skip:
        raise ConfigError(f"derive.min_skip={value} is above derive.max_skip={max_skip}; set min_skip <= max_skip "
                          f"(equal: exactly that many skip connections, as P-DARTS)")
    return value


# the build_supernet keywords a search fills in itself: never space.* options
SUPERNET_CONTEXT = ("estimator", "num_classes", "in_channels", "init_std", "generator")


@dataclass
class CellOptions:
    """The ``space.*`` options the cell spaces (nb201, darts) share."""
    ops: Optional[List[str]] = option(None, help="candidate subset (null: the space's own op list)")
    affine: bool = option(False, help="BN affine in the supernet (the papers use false)")
    gates: Literal["none", "edge", "op", "channel"] = option("none", help="L0 gates on edges, ops or channels")
    l0_lambda: float = ranged(1e-4, ge=0, help="weight of the L0 gates' penalty (and of the l0_* candidates')")
    gate_estimator: Literal["hard_concrete", "search"] = option(
        "hard_concrete", help="who learns the L0 gates: hard concrete or the search's estimator")
    op_args: Dict[str, Dict[str, Any]] = option({}, help="options per op, e.g. {dnf_1x1: {rules: 8}}")
    partial_channels: int = ranged(1, ge=1, help="PC-DARTS: 1/K of the channels through each mixed op (1: off)")


@dataclass
class MaxSkipOptions:
    """``derive.max_skip`` and ``derive.min_skip``: P-DARTS's control of the skip connections in
    the derived cell (Chen et al. 2019, §3.3: "a constant M"; ``max_skip = min_skip = M``)."""
    max_skip: Optional[int] = ranged(None, ge=0, help="most skip_connect edges derive keeps (null: no limit)")
    min_skip: Optional[int] = ranged(None, ge=0, help="fewest skip_connect edges derive keeps (null: no floor)")


def nhwc(cfg: Any, default: bool) -> bool:
    """``trainer.channels_last`` as a space's own layout: null is the space's ``default``."""
    value = cfg.trainer.channels_last
    return default if value is None else bool(value)


def refuse_without_logits(choice: Any, estimator_name: str, settings: Sequence[str]) -> None:
    """One error naming the derive ``settings`` (``key=value that turns it off``) given to an
    estimator whose ``choice`` has no logits to rank the candidates by."""
    if not settings or "logits" in choice.roles.values():
        return
    keys = " and ".join(s.split("=")[0] for s in settings)
    raise ConfigError(f"{keys} {'need' if len(settings) > 1 else 'needs'} an estimator with logits to "
                      f"rank the candidates; '{estimator_name}' has none: set {' '.join(settings)}")


def refuse_model_args(model_cfg: Any, space_name: str) -> None:
    """One error for ``model.args`` (a user network's own keywords) given to a built-in network."""
    if model_cfg.args:
        raise ConfigError(f"model.args passes keywords to a user space's network; the {space_name} network "
                          f"has its own model.* keys: remove model.args")




# --------------------------------------------------------------------------- the space

class SearchSpace:
    """One registry entry of ``nas.spaces.SPACES``: what the tool needs from a space.

    A subclass sets the class attributes and implements the four ``NotImplementedError`` methods
    and :meth:`supernet_kwargs`.

    * ``name``, ``ops``: the registry name and the candidate ops ``space.ops`` may name;
    * ``data_kind``: ``"image"``, ``"tabular"`` or ``"maze"``, the batches its supernet takes;
    * ``choice_kinds``: the kinds of choice its supernet has (an estimator must support them);
    * ``main_kind``: the kind of discrete parameter ``estimator.name`` learns
      (:mod:`nas.estimators.kinds`); ``estimator.kinds`` sets the others;
    * ``Options``: a dataclass of the ``space.*`` keys it reads, with ranges and help
      (:mod:`nas.options`); ``None`` (a user's space): the keywords of its ``build_supernet``
      besides the search's own (:data:`SUPERNET_CONTEXT`); any other key is a one-line error;
    * ``DeriveOptions``: a dataclass of the ``derive.*`` keys it reads (``None``: none);
    * ``derive_options``: keyword arguments of its supernet's ``genotype()`` (darts: ``top_k``);
    * ``perturbation_choice``: the choice DARTS-PT's perturbation derive selects on, if supported;
    * ``tiny_supernet``, ``tiny_network``: the smallest ``build_supernet``/``build_network``
      sizes for smoke runs and the contract tests (``tests/test_contract.py``);

    A space with a cost model (:mod:`nas.cost`) returns it from :meth:`cost_model`.
    """

    name: str = ""
    ops: Sequence[str] = ()
    data_kind: str = IMAGE
    choice_kinds: Tuple[str, ...] = (CATEGORICAL,)
    main_kind: str = "ops"
    Options: Optional[type] = None
    DeriveOptions: Optional[type] = None
    derive_options: Tuple[str, ...] = ()
    perturbation_choice: Optional[str] = None
    genotype_hint: str = ""  # what genotype_from_string takes, for messages
    tiny_supernet: Dict[str, Any] = {}
    tiny_network: Dict[str, Any] = {}

    def build_supernet(self, estimator: Any, *, num_classes: int, **kwargs: Any) -> Supernet:
        raise NotImplementedError

    def build_network(self, genotype: Any, *, num_classes: int, **kwargs: Any) -> nn.Module:
        raise NotImplementedError

    def genotype_from_dict(self, data: Dict[str, Any]) -> Any:
        raise NotImplementedError

    def genotype_to_dict(self, genotype: Any) -> Dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def options(cls) -> type:
        """The dataclass of the ``space.*`` keys (see ``Options``)."""
        return options_of(cls, cls.build_supernet, skip=SUPERNET_CONTEXT)

    @classmethod
    def derive_options_class(cls) -> type:
        """The dataclass of the ``derive.*`` keys (see ``DeriveOptions``)."""
        return cls.DeriveOptions or NoOptions

    def supernet_kwargs(self, cfg: Any, info: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The ``build_supernet`` keywords a search config asks for, besides the estimator, the
        data's sizes, ``init_std`` and ``generator``. The default (a user's space): its options,
        ``space.*`` (:meth:`options`)."""
        return options_dict(cfg.space)

    def network_kwargs(self, model_cfg: Any) -> Dict[str, Any]:
        """The ``build_network`` keywords a retrain config's ``model`` section asks for, besides the
        data's sizes and the searched ``op_args``. The default (a user's space): the ``model.*``
        keys ``build_network`` names (one it does not name must keep its default; ``C: null``
        leaves the space's own width) and every key of ``model.args``."""
        from nas.plugins import accepted_kwargs
        skip = ("genotype", "args", "op_args", "auxiliary_weight", "drop_path_prob")
        fields = dataclasses.fields(model_cfg)  # the retrain config's ModelConfig (a layer above the spaces)
        values = {f.name: getattr(model_cfg, f.name) for f in fields if f.name not in skip}
        if values.get("C") is None:
            values.pop("C")
        defaults = {f.name: getattr(type(model_cfg)(), f.name) for f in fields}
        return accepted_kwargs(self.build_network, f"the {self.name} network", values, defaults,
                               model_cfg.args, "model.args", prefix="model.")

    def is_connected(self, genotype: Any) -> bool:
        """Whether the derived cell passes its input to its output (a cell of ``none`` edges
        outputs zeros); True where the space cannot collapse that way."""
        return True

    def check_config(self, cfg: Any, data_kind: str, datasets: Sequence[str] = ()) -> None:
        """One-line errors, before anything is built, for a search config that this space would
        misread: data of another kind (``data_kind``: what ``cfg.data.dataset`` gives;
        ``datasets``: names of the ones this space takes, for the message), and the refusals of
        :meth:`supernet_kwargs` (a key it does not declare never loads: :mod:`nas.options`)."""
        if data_kind != self.data_kind:
            from .registry import SPACES, get_space
            fits = [n for n in SPACES.names() if get_space(n).data_kind == data_kind]
            names = f" ({', '.join(datasets)})" if datasets else ""
            raise ConfigError(f"data.dataset={cfg.data.dataset} is {data_kind} data; the {self.name} space "
                              f"takes {self.data_kind} data: choose a dataset of that kind{names} or "
                              f"space.name={' or '.join(fits) or '<a space for it>'}")
        self.supernet_kwargs(cfg)

    def cost_model(self) -> Optional[Any]:
        """The :class:`~nas.cost.model.CostModel` of this space's trained network, or ``None``
        (the default): the space has no cost model, and a run's ``cost:`` section must stay unset."""
        return None

    def selected_edges(self, genotype: Any) -> Dict[str, List[Tuple[int, str]]]:
        """Per choice name, the (edge, op) pairs ``genotype`` keeps (the cost model and the
        figures read a genotype through it)."""
        raise NotImplementedError

    def selected_widths(self, genotype: Any) -> Dict[str, Dict[int, float]]:
        """Per choice name, ``{edge: share}`` of the kept edges whose genotype records a width (a
        width-searching op built at that share of its channels); the cost model costs them at
        it. Default: none (a space whose genotypes record no widths)."""
        return {}

    def edge_nodes(self, choice: str, edge: int) -> Tuple[int, int]:
        """``(to, from)``: the nodes edge ``edge`` of choice ``choice`` joins (cell figures)."""
        raise NotImplementedError

    def genotype_from_string(self, text: str) -> Optional[Any]:
        """The genotype ``text`` names in this space (its printed form, a published cell's
        name), or ``None`` when it is none of this space's (``model.genotype``)."""
        return None

    def claims_genotype_dict(self, data: Dict[str, Any]) -> bool:
        """Whether a genotype mapping written without ``space:`` (by hand) is this space's."""
        return False
        raise NotImplementedError

    def check_ops(self, ops: Sequence[str], key: str = "space.ops") -> list:
        """A candidate list: distinct names of registered ops (:mod:`nas.ops.registry`); the
        space's own ``ops`` are only its default."""
        from nas.ops.registry import check_ops
        return check_ops(ops, key)


def bad_genotype(msg: str) -> CheckpointError:
    return CheckpointError(f"genotype: {msg}")


def check_genotype_ops(ops: Iterable[str], where: str = "") -> None:
    """A one-line :class:`CheckpointError` for a genotype op that is no registered op (a typo, or
    a user's op whose module is not imported)."""
    from nas.ops import OPS
    for op in ops:
        if op not in OPS:
            at = f"{where}: " if where else ""
            raise bad_genotype(f"{at}unknown op '{op}'; known: {', '.join(OPS.names())} ({OPS.hint})")

