"""The penalties modules add to a loss: every submodule with a ``penalty()`` (L0 gates, a DNF
rule pool's sparsity), summed; shared by the search's architecture step and retraining."""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn


def regularization(model: nn.Module) -> Optional[Tensor]:
    """Sum of ``penalty()`` over modules that define one (L0 gates, DNF sparsity)."""
    terms = [m.penalty() for m in model.modules() if m is not model and hasattr(m, "penalty")]
    return sum(terms[1:], terms[0]) if terms else None
