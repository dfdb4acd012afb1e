"""What every picture of the tool shares, drawn with Pillow: a colour per series and the font."""
from __future__ import annotations

from functools import lru_cache

from PIL import ImageFont

# a colour per op name or method, stable across epochs and runs (a hash of the name would vary per process)
PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14),
           (140, 86, 75), (227, 119, 194), (23, 190, 207), (188, 189, 34), (127, 127, 127))


@lru_cache(maxsize=8)
def font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()
