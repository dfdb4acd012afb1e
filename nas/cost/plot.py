"""A cost-accuracy picture: every cell of a benchmark table, its Pareto front, the budgets and the
searched cells, drawn with Pillow (no plotting library needed)."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from PIL import Image, ImageDraw

from ..utils.draw import PALETTE, font

Point = Tuple[float, float]


def front_plot(cells: Sequence[Point], front: Sequence[Point], budgets: Sequence[float],
               marks: Dict[str, List[Point]], *, x_label: str, y_label: str, title: str = "",
               y_min: float = 85.0, size: Tuple[int, int] = (900, 600)) -> Image.Image:
    """``cells``/``front``: (cost, accuracy) points in grey and as a step line; ``budgets``:
    dashed vertical lines; ``marks``: the searched cells per method, one colour each."""
    f = font(13)
    # the legend's column is as wide as its longest name: the picture widens rather than cut it
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    right = max(190, 45 + max((int(probe.textlength(n, font=f)) for n in marks), default=0))
    W, H = size[0] + right - 190, size[1]
    left, top, bottom = 70, 40, 50
    xs = [c for c, _ in cells] or [0.0, 1.0]
    x0, x1 = 0.0, max(xs) * 1.03
    y1 = max([a for _, a in cells] + [a for pts in marks.values() for _, a in pts]) + 0.3
    img = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(img)

    def at(c: float, a: float) -> Tuple[float, float]:
        return (left + (c - x0) / (x1 - x0) * (W - left - right),
                top + (y1 - max(a, y_min)) / (y1 - y_min) * (H - top - bottom))

    for i in range(6):  # axes ticks
        c, a = x0 + (x1 - x0) * i / 5, y_min + (y1 - y_min) * i / 5
        px, _ = at(c, y_min)
        _, py = at(x0, a)
        d.line([(px, H - bottom), (px, top)], fill=(235, 235, 235))
        d.line([(left, py), (W - right, py)], fill=(235, 235, 235))
        d.text((px - 12, H - bottom + 6), f"{c:.0f}" if x1 > 20 else f"{c:.2f}", fill=(60, 60, 60), font=f)
        d.text((8, py - 7), f"{a:.1f}", fill=(60, 60, 60), font=f)
    d.rectangle([left, top, W - right, H - bottom], outline=(80, 80, 80))
    for c, a in cells:
        x, y = at(c, a)
        d.point((x, y), fill=(175, 175, 175))
    for (c, a), (c2, a2) in zip(front, front[1:]):  # the front as steps: best accuracy up to each cost
        p, q, r = at(c, a), at(c2, a), at(c2, a2)
        d.line([p, q, r], fill=(20, 20, 20), width=2)
    for b in budgets:
        x, _ = at(b, y_min)
        for y in range(top, H - bottom, 10):
            d.line([(x, y), (x, y + 5)], fill=(200, 40, 40), width=1)
        d.text((x + 3, top + 2), f"{b:g}", fill=(200, 40, 40), font=f)
    def mark(x: float, y: float, shape: int, col: Tuple[int, int, int]) -> None:
        box = [x - 5, y - 5, x + 5, y + 5]
        if shape == 0:
            d.ellipse(box, outline=col, width=2)
        elif shape == 1:
            d.rectangle(box, outline=col, width=2)
        else:
            d.polygon([(x, y - 6), (x + 6, y), (x, y + 6), (x - 6, y)], outline=col, width=2)

    for i, (name, pts) in enumerate(marks.items()):
        # colours repeat after the palette: the shape (circle, square, diamond) tells them apart
        col, shape = PALETTE[i % len(PALETTE)], (i // len(PALETTE)) % 3
        for c, a in pts:
            mark(*at(c, a), shape, col)
        ly = top + 10 + 20 * i
        mark(W - right + 17, ly + 5, shape, col)
        d.text((W - right + 28, ly - 2), name, fill=(20, 20, 20), font=f)
    d.text((left, 12), title, fill=(20, 20, 20), font=font(15))
    d.text(((W - right + left) / 2 - 60, H - 22), x_label, fill=(20, 20, 20), font=f)
    d.text((left + 4, top + 4), y_label, fill=(20, 20, 20), font=f)
    return img
