"""Whether a network takes the data's images at all, asked once before training: a skeleton that
halves the resolution twice cannot take 1x1 images (``data.resize=1``), and PyTorch would say so
only as a shape error from deep inside the first step."""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError

PROBE_SIZES = range(1, 65)


def _fits(model: nn.Module, shape: Sequence[int]) -> bool:
    try:
        with torch.no_grad():
            model(torch.zeros(2, *shape))
        return True
    except (RuntimeError, ValueError, IndexError):
        return False


def check_input_fits(model: nn.Module, shape: Sequence[int], what: str, resize_key: str = "data.resize") -> None:
    """A one-line ConfigError naming ``resize_key`` and sizes that work when ``model`` (on the CPU,
    not yet moved) cannot run on a batch of ``shape`` (``[C, H, W]``). ``what`` names the network.
    The model, its buffers and every RNG are left as they were (it runs on a copy, in eval mode)."""
    probe = copy.deepcopy(model).eval()
    rng = torch.get_rng_state()
    try:
        if _fits(probe, shape):
            return
        if len(shape) != 3:
            raise ConfigError(f"the data's inputs of shape {tuple(shape)} do not fit the {what}")
        side = shape[-1]
        near = [s for s in PROBE_SIZES if abs(s - side) <= 16 and _fits(probe, (shape[0], s, s))]
        hint = (f"sizes near it that fit: {', '.join(map(str, near[:6]))}" if near
                else f"no size up to {PROBE_SIZES[-1]} fits")
        raise ConfigError(f"{resize_key}: {shape[-2]}x{side} images do not fit the {what} ({hint}); "
                          f"set {resize_key}=<one of them>")
    finally:
        torch.set_rng_state(rng)
