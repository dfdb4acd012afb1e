"""The registries of the search loop's extension points (:mod:`nas.searcher.hooks`): regularisers
(``optim.regularisers``) and step hooks (``optim.hooks``), with the built-in entries, and
:func:`search_hooks`, which builds a config's entries with their options checked."""
from __future__ import annotations

from typing import Any, List, Mapping

from ..registry import Registry
from .hooks import SearchHook, build_hooks
from .lambda_darts import LambdaDARTS
from .oles import OLES
from .progressive import DrNASProgressive
from .regularisers import DrNASKL, FairZeroOne
from .sdarts import SDARTS

_HINT = ("your own? subclass nas.searcher.hooks.{cls}, add it with nas.searcher.registries.{reg}.register "
         "and list its module under 'imports:'")
REGULARISERS = Registry("regulariser", _HINT.format(cls="Regulariser", reg="REGULARISERS"))
HOOKS = Registry("search hook", _HINT.format(cls="SearchHook", reg="HOOKS"))

REGULARISERS.register("fair_zero_one", FairZeroOne)
REGULARISERS.register("drnas_kl", DrNASKL)
HOOKS.register("sdarts", SDARTS)
HOOKS.register("lambda_darts", LambdaDARTS)
HOOKS.register("oles", OLES)
HOOKS.register("drnas_progressive", DrNASProgressive)


def search_hooks(regularisers: Mapping[str, Any], hooks: Mapping[str, Any]) -> List[SearchHook]:
    """The entries of ``optim.regularisers`` and ``optim.hooks``, in that order."""
    return (build_hooks(regularisers, REGULARISERS, "optim.regularisers")
            + build_hooks(hooks, HOOKS, "optim.hooks"))
