"""Whether a network takes the data's images at all, asked once before training: a skeleton that
halves the resolution twice cannot take 1x1 images (``data.resize=1``), and PyTorch would say so
only as a shape error from deep inside the first step."""
from __future__ import annotations

import copy
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import ConfigError, NasError

PROBE_SIZES = range(1, 65)


def _run(model: nn.Module, shape: Sequence[int]) -> Optional[Tuple[Exception, str]]:
    """None when ``model`` runs on a batch of ``shape``; else the error and the module it came
    from (its qualified name and class: the innermost module whose forward had not returned)."""
    open_: List[str] = []
    names = {m: n for n, m in model.named_modules()}
    hooks = []
    for m, n in names.items():
        hooks.append(m.register_forward_pre_hook(lambda mod, _i, n=n: open_.append(n)))
        hooks.append(m.register_forward_hook(lambda mod, _i, _o: open_.pop() and None))  # None: keep the output
    try:
        with torch.no_grad():
            model(torch.zeros(2, *shape))
        return None
    except Exception as e:  # noqa: BLE001 (told apart below: only a size that fits elsewhere is the size)
        where = open_[-1] if open_ else ""
        cls = type(model.get_submodule(where)).__name__ if where else type(model).__name__
        return e, f"{where or 'the network'} ({cls})"
    finally:
        for h in hooks:
            h.remove()


def _fits(model: nn.Module, shape: Sequence[int]) -> bool:
    return _run(model, shape) is None


def check_input_fits(model: nn.Module, shape: Sequence[int], what: str, resize_key: str = "data.resize") -> None:
    """A one-line ConfigError naming ``resize_key`` and sizes that work when ``model`` (on the CPU,
    not yet moved) cannot run on a batch of ``shape`` (``[C, H, W]``). ``what`` names the network.
    The model, its buffers and every RNG are left as they were (it runs on a copy, in eval mode)."""
    probe = copy.deepcopy(model).eval()
    rng = torch.get_rng_state()
    try:
        failed = _run(probe, shape)
        if failed is None:
            return
        side = shape[-1]
        near = ([s for s in PROBE_SIZES if abs(s - side) <= 16 and _fits(probe, (shape[0], s, s))]
                if len(shape) == 3 else [])
        if not near:  # no size fits: the size is not what is wrong, the module is
            e, where = failed
            text = str(e).strip().splitlines()[0][:160] if str(e).strip() else "(no message)"
            raise NasError(f"the {what} fails on a batch of {'x'.join(map(str, shape))} inputs (and on every size "
                           f"near it) in {where}: {type(e).__name__}: {text}; check that module (its channels, "
                           f"its input size, the methods it must have)")
        raise ConfigError(f"{resize_key}: {shape[-2]}x{side} images do not fit the {what} (sizes near it that "
                          f"fit: {', '.join(map(str, near[:6]))}); set {resize_key}=<one of them>")
    finally:
        torch.set_rng_state(rng)
