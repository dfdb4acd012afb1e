"""Extension points of the search loop: regularisers (a term added to the architecture loss) and
step hooks (code run around the weight and architecture steps), one registry entry each.

A config names them with their options, which the entry declares as a dataclass of ranged
fields (:class:`SearchHook.Options`)::

    optim:
      regularisers: {fair_zero_one: {weight: 10}}     # nas.searcher.registries.REGULARISERS
      hooks: {sdarts: {mode: adv, epsilon: 0.03}}     # nas.searcher.registries.HOOKS

The loop (:class:`~nas.searcher.loop.Searcher`) calls every entry at the same points, in this
order per batch, and knows none of them by name:

1. ``start_epoch(epoch, epochs)`` once per epoch; ``start_step(epoch, step, steps)`` before
   every step (a schedule that changes the supernet between two steps, DrNAS's stages), then
   ``holds_arch()``: while any entry returns True the step makes no architecture update (a
   warm-up of the hook's own);
2. ``before_weight_step(x, y)`` before the weight step's forward (SDARTS perturbs α here);
3. ``after_weight_backward(x, y)`` after its backward, before clipping and the optimizer step
   (Λ-DARTS adds its regulariser's gradient, OLES records the training gradients);
4. ``after_weight_step()`` once the weight step's gradients are complete (also when its forward
   failed), before the optimizer steps (SDARTS removes its perturbation here);
5. ``arch_term()``: a term added to the architecture loss (and to the joint loss in
   ``optim.mode=joint``); regularisers implement this one;
6. ``arch_grad_params()``: further parameters whose gradients the architecture step's backward
   computes, read by ``after_arch_backward()`` (OLES: the validation gradients of the ops).

``bind(searcher)`` is called once by the loop: it refuses, in one line, a combination that
cannot work (e.g. SDARTS-ADV with Bop's discrete state). ``state_dict`` / ``load_state_dict``
travel in the search checkpoint, so a resumed search continues exactly; an entry that changes
the supernet's structure (parameter shapes, pruned candidates) rebuilds it from its state in
``restore_structure(model, state)``, which a resume calls before the model and the optimizers
load theirs (and ``nas-derive`` before it loads the model).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry

# the Searcher (nas.searcher.loop) that calls the hooks; not imported: the loop imports this module
Searcher = Any


class SearchHook:
    """Base class: every method is a no-op. Subclasses set ``name`` and ``Options`` (a dataclass
    whose fields carry their ranges, :func:`nas.bounds.ranged`) and override what they need."""

    name: str = "hook"
    section: str = "hooks"  # its config section: optim.hooks

    @dataclasses.dataclass
    class Options:
        pass

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()
        self.searcher: Optional[Searcher] = None

    # ------------------------------------------------------------------ loop points
    def bind(self, searcher: Searcher) -> None:
        self.searcher = searcher

    def start_epoch(self, epoch: int, epochs: int) -> None:
        pass

    def start_step(self, epoch: int, step: int, steps: int) -> None:
        pass

    def holds_arch(self) -> bool:
        return False

    def before_weight_step(self, x: Tensor, y: Tensor) -> None:
        pass

    def after_weight_backward(self, x: Tensor, y: Tensor) -> None:
        pass

    def after_weight_step(self) -> None:
        pass

    def arch_term(self) -> Optional[Tensor]:
        return None

    def arch_grad_params(self) -> List[nn.Parameter]:
        return []

    def after_arch_backward(self) -> None:
        pass

    # ------------------------------------------------------------------ reporting, resume
    def scalars(self) -> Dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def restore_structure(self, model: nn.Module, state: dict) -> None:
        """Rebuild, from this entry's saved ``state``, the structure it gave ``model`` (before
        the model's own state is loaded into it)."""

    def refuse(self, why: str) -> ConfigError:
        return ConfigError(f"{self.key}: {why}")

    @property
    def key(self) -> str:
        return f"optim.{self.section}.{self.name}"

    def __repr__(self) -> str:
        opts = ", ".join(f"{f.name}={getattr(self.options, f.name)}" for f in dataclasses.fields(self.options))
        return f"{self.name}({opts})"


class Regulariser(SearchHook):
    """A term ``weight · R(α)`` added to the architecture loss; subclasses implement
    :meth:`penalty` (``R``, ``None`` when nothing applies) and declare ``weight`` in Options."""

    section = "regularisers"  # optim.regularisers

    def penalty(self) -> Optional[Tensor]:
        raise NotImplementedError

    def arch_term(self) -> Optional[Tensor]:
        w = self.options.weight
        if w == 0:
            return None
        r = self.penalty()
        return None if r is None else w * r


def build_hooks(spec: Mapping[str, Any], registry: Registry, key: str) -> List[SearchHook]:
    """``spec``: ``{name: {option: value}}`` from the config (``key``: its config key). Unknown
    names, unknown options and values outside their ranges are one-line ``ConfigError`` s."""
    from ..config import from_dict

    out = []
    for name, opts in spec.items():
        cls = registry.get(name, key)
        if opts is None:
            opts = {}
        if not isinstance(opts, Mapping):
            raise ConfigError(f"{key}.{name}: expected a mapping of options "
                              f"({', '.join(f.name for f in dataclasses.fields(cls.Options)) or 'none'}), got {opts!r}")
        out.append(cls(from_dict(cls.Options, dict(opts), prefix=f"{key}.{name}.")))
    return out


def grad_vector(params: List[nn.Parameter]) -> Optional[Tensor]:
    """The gradients of ``params`` as one flat float vector (missing ones as zeros); ``None``
    when none has a gradient."""
    if all(p.grad is None for p in params):
        return None
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params])
