"""Cutout (DeVries & Taylor 2017) on a normalised batch tensor, as in the DARTS evaluation code:
one ``length × length`` square per image, centred uniformly at random (clipped at the borders),
set to zero after normalisation."""
from __future__ import annotations

import torch
from torch import Tensor


def cutout(x: Tensor, length: int, generator: torch.Generator) -> Tensor:
    """``x``: ``[B, C, H, W]``; the centres come from ``generator`` (CPU, so its state is portable)."""
    if length <= 0:
        return x
    B, _, H, W = x.shape
    cy = torch.randint(0, H, (B, 1), generator=generator).to(x.device)
    cx = torch.randint(0, W, (B, 1), generator=generator).to(x.device)
    rows = torch.arange(H, device=x.device)
    cols = torch.arange(W, device=x.device)
    in_y = (rows >= cy - length // 2) & (rows < cy + length // 2)           # [B, H]
    in_x = (cols >= cx - length // 2) & (cols < cx + length // 2)           # [B, W]
    hole = in_y[:, :, None] & in_x[:, None, :]                              # [B, H, W]
    return x * (~hole)[:, None].to(x.dtype)
