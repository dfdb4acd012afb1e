"""Pictures of a search for TensorBoard, drawn with Pillow (already installed with torchvision),
so monitoring needs no plotting library.

* :func:`heatmap` — a choice's distribution as an edges × candidates grid (one row per edge,
  colour and number = probability; binary gates: one column, P(open)).
* :func:`cell_diagram` — a derived cell: nodes on a line, every kept edge an arc labelled
  with its op, arrows pointing to the node it feeds.
* :func:`cell_edges` — the ``(to, from, op)`` edges of each cell of a genotype, for the spaces
  that expose them (NB201 ``edges()``, DARTS-style ``normal``/``reduce`` lists of ``(op, input)``).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image, ImageDraw, ImageFont

from ..utils.draw import PALETTE, font

Edge = Tuple[int, int, str]  # (to, from, op)

# viridis at 5 anchors: readable on screen and in grey, dark = unlikely, yellow = likely
_VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
_BG, _FG, _GRID = (255, 255, 255), (20, 20, 20), (200, 200, 200)


def colormap(p: float) -> Tuple[int, int, int]:
    """Piecewise-linear viridis of ``p`` in [0, 1]."""
    p = min(max(float(p), 0.0), 1.0) * (len(_VIRIDIS) - 1)
    i = min(int(p), len(_VIRIDIS) - 2)
    f = p - i
    a, b = _VIRIDIS[i], _VIRIDIS[i + 1]
    return tuple(round(a[c] + (b[c] - a[c]) * f) for c in range(3))  # type: ignore[return-value]


def _text_size(draw: ImageDraw.ImageDraw, text: str, f: ImageFont.ImageFont) -> Tuple[int, int]:
    l, t, r, b = draw.textbbox((0, 0), text, font=f)
    return r - l, b - t


def heatmap(probs: torch.Tensor, rows: Sequence[str], cols: Sequence[str], title: str = "") -> Image.Image:
    """``probs`` [E, K] (or [E] gates, drawn as one column ``P(open)``) as a labelled grid."""
    p = probs.detach().float().cpu()
    if p.dim() == 1:
        p, cols = p[:, None], ["P(open)"]
    E, K = p.shape
    f, fs = font(14), font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    row_w = max([_text_size(probe, r, f)[0] for r in rows] + [20]) + 16
    cell_w = max([_text_size(probe, c, fs)[0] for c in cols] + [48]) + 14
    cell_h, top = 30, 58 if title else 34
    img = Image.new("RGB", (row_w + K * cell_w + 10, top + E * cell_h + 10), _BG)
    d = ImageDraw.Draw(img)
    if title:
        d.text((10, 8), title, fill=_FG, font=f)
    for k, c in enumerate(cols):
        w, _ = _text_size(d, c, fs)
        d.text((row_w + k * cell_w + (cell_w - w) // 2, top - 22), c, fill=_FG, font=fs)
    for e in range(E):
        y = top + e * cell_h
        d.text((8, y + 7), rows[e], fill=_FG, font=f)
        best = int(p[e].argmax())
        for k in range(K):
            x = row_w + k * cell_w
            v = float(p[e, k])
            d.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=colormap(v), outline=_GRID)
            if K > 1 and k == best:  # the candidate this edge derives to
                d.rectangle([x + 1, y + 1, x + cell_w - 2, y + cell_h - 2], outline=(255, 0, 0), width=2)
            label = f"{v:.3f}"
            w, _ = _text_size(d, label, fs)
            d.text((x + (cell_w - w) // 2, y + 8), label, fill=_FG if v > 0.55 else (255, 255, 255), font=fs)
    return img


def cell_edges(space: Any, genotype: Any) -> Dict[str, List[Edge]]:
    """The cells of a genotype as ``{cell name: [(to, from, op), ...]}``: the edges the space
    says it keeps (:meth:`~nas.spaces.base.SearchSpace.selected_edges`) between the nodes it
    names (:meth:`~nas.spaces.base.SearchSpace.edge_nodes`); ``{}`` for a space without cells."""
    try:
        selected = space.selected_edges(genotype)
    except NotImplementedError:
        return {}
    return {name.rsplit(".", 1)[-1]: [(*space.edge_nodes(name, e), str(op)) for e, op in edges]
            for name, edges in selected.items()}


def cell_diagram(edges: Sequence[Edge], title: str = "", hidden: Sequence[str] = ("none",),
                 node_names: Optional[Dict[int, str]] = None) -> Image.Image:
    """Nodes left to right; an edge between neighbours is a straight arrow, any other edge an
    arc (alternately above and below the line, height growing with ``j - i``) labelled with its op. Ops in ``hidden`` (the
    zero op) are not edges of the derived cell and are left out."""
    kept = [(j, i, op) for j, i, op in edges if op not in hidden]
    nodes = sorted({n for j, i, _ in edges for n in (i, j)}) or [0]
    ops = sorted({op for _, _, op in kept})
    colour = {op: PALETTE[n % len(PALETTE)] for n, op in enumerate(ops)}
    gap, r, margin = 190, 20, 50
    span = max([abs(j - i) for j, i, _ in kept] + [1])
    arc_h = lambda s: 38 * s  # noqa: E731  (height of an arc spanning s nodes)
    half = arc_h(span) + 40
    top = 40 if title else 10
    W = 2 * margin + gap * (len(nodes) - 1)
    H = top + 2 * half + 10
    img = Image.new("RGB", (max(W, 360), H), _BG)
    d = ImageDraw.Draw(img)
    f, fs = font(15), font(13)
    if title:
        d.text((10, 8), title, fill=_FG, font=f)
    ymid = top + half
    xpos = {n: margin + gap * k for k, n in enumerate(nodes)}
    labels: List[Tuple[int, int, str, Tuple[int, int, int]]] = []
    arcs = 0
    for j, i, op in kept:
        x0, x1 = xpos[i], xpos[j]
        adjacent = abs(nodes.index(j) - nodes.index(i)) == 1
        h = 0 if adjacent else arc_h(abs(j - i))
        sign = -1 if arcs % 2 == 0 else 1  # -1: above the line
        arcs += 0 if adjacent else 1
        c = colour[op]
        if h == 0:
            d.line([(x0 + r, ymid), (x1 - r, ymid)], fill=c, width=3)
            lx, ly, tip, ang = (x0 + x1) // 2, ymid - 20, (x1 - r, ymid), 0.0
        else:
            pts = [(x0 + (x1 - x0) * t / 40, ymid + sign * h * math.sin(math.pi * t / 40)) for t in range(41)]
            d.line(pts, fill=c, width=3, joint="curve")
            lx, ly = (x0 + x1) // 2, int(ymid + sign * h) + (-20 if sign < 0 else 4)
            tip = pts[-4]
            ang = math.atan2(pts[-4][1] - pts[-6][1], pts[-4][0] - pts[-6][0])
        if h == 0:
            ang = 0.0
        ax, ay = tip
        d.polygon([(ax, ay), (ax - 12 * math.cos(ang - 0.4), ay - 12 * math.sin(ang - 0.4)),
                   (ax - 12 * math.cos(ang + 0.4), ay - 12 * math.sin(ang + 0.4))], fill=c)
        labels.append((lx, ly, op, c))
    for n in nodes:
        x = xpos[n]
        d.ellipse([x - r, ymid - r, x + r, ymid + r], fill=(240, 240, 240), outline=_FG, width=2)
        name = (node_names or {}).get(n, str(n))
        w, h = _text_size(d, name, f)
        d.text((x - w // 2, ymid - h // 2 - 3), name, fill=_FG, font=f)
    for lx, ly, op, c in labels:  # on top of the arcs, on a white box so they stay legible
        w, h = _text_size(d, op, fs)
        d.rectangle([lx - w // 2 - 3, ly - 1, lx + w // 2 + 3, ly + h + 5], fill=_BG, outline=c)
        d.text((lx - w // 2, ly), op, fill=c, font=fs)
    if not kept:
        d.text((margin, ymid + r + 10), "(every edge is 'none': the cell outputs zeros)", fill=_FG, font=fs)
    return img
