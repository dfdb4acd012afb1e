"""What a search space provides to the rest of the tool.

A space is a registry entry (``search_spaces.SPACES``) with four jobs, kept apart as in DARTS:
its default candidates (names in the one op registry, :mod:`nas.ops.registry`), its supernet
(mixed choices, built with an estimator), its genotype (plain data, YAML round trip) and the
discrete network built only from a genotype.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Sequence

from torch import nn

from nas.errors import CheckpointError, ConfigError


def check_max_skip(value: Optional[int]) -> Optional[int]:
    """``estimator.derive_max_skip`` as a supernet takes it: ``None`` (no limit) or 0 or more."""
    if value is not None and value < 0:
        raise ConfigError(f"estimator.derive_max_skip must be 0 or more (or null for no limit), got {value}")
    return value


def refuse_without_logits(choice: Any, estimator_name: str, settings: Sequence[str]) -> None:
    """One error naming the derive ``settings`` (``key=value that turns it off``) given to an
    estimator whose ``choice`` has no logits to rank the candidates by."""
    if not settings or "logits" in choice.roles.values():
        return
    keys = " and ".join(s.split("=")[0] for s in settings)
    raise ConfigError(f"{keys} {'need' if len(settings) > 1 else 'needs'} an estimator with logits to "
                      f"rank the candidates; '{estimator_name}' has none: set {' '.join(settings)}")


class SearchSpace:
    name: str = ""
    ops: Sequence[str] = ()

    def build_supernet(self, estimator: Any, *, num_classes: int, **kwargs: Any) -> nn.Module:
        raise NotImplementedError

    def build_network(self, genotype: Any, *, num_classes: int, **kwargs: Any) -> nn.Module:
        raise NotImplementedError

    def genotype_from_dict(self, data: Dict[str, Any]) -> Any:
        raise NotImplementedError

    def genotype_to_dict(self, genotype: Any) -> Dict[str, Any]:
        raise NotImplementedError

    def supernet_kwargs(self, cfg: Any, info: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The ``build_supernet`` keywords a search config asks for, besides the estimator, the
        data's sizes, ``init_std`` and ``generator``. The default (a user's space): the
        ``space.*`` keys ``build_supernet`` names — one it does not name must keep its default —
        and every key of ``space.args``."""
        from dataclasses import fields

        from nas.config import SpaceConfig
        from nas.plugins import accepted_kwargs
        for key, given in (("estimator.derive_exclude", cfg.estimator.derive_exclude),
                           ("estimator.derive_max_skip", cfg.estimator.derive_max_skip)):
            if given:
                raise ConfigError(f"{key} applies to the nb201 and darts spaces, not to '{self.name}': remove the key")
        values = {f.name: getattr(cfg.space, f.name) for f in fields(SpaceConfig) if f.name not in ("name", "args")}
        defaults = {f.name: getattr(SpaceConfig(), f.name) for f in fields(SpaceConfig)}
        return accepted_kwargs(self.build_supernet, f"space '{self.name}'", values, defaults,
                               cfg.space.args, "space.args", prefix="space.")

    def network_kwargs(self, model_cfg: Any) -> Dict[str, Any]:
        """The ``build_network`` keywords a retrain config's ``model`` section asks for, besides the
        data's sizes and the searched ``op_args``. The default (a user's space): the ``model.*``
        keys ``build_network`` names (one it does not name must keep its default; ``C: null``
        leaves the space's own width) and every key of ``model.args``."""
        from dataclasses import fields

        from nas.plugins import accepted_kwargs
        from nas.retrainer.config import ModelConfig
        skip = ("genotype", "args", "op_args", "auxiliary_weight", "drop_path_prob")
        values = {f.name: getattr(model_cfg, f.name) for f in fields(ModelConfig) if f.name not in skip}
        if values.get("C") is None:
            values.pop("C")
        defaults = {f.name: getattr(ModelConfig(), f.name) for f in fields(ModelConfig)}
        return accepted_kwargs(self.build_network, f"the {self.name} network", values, defaults,
                               model_cfg.args, "model.args", prefix="model.")

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

