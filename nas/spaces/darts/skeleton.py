"""The DARTS macro skeleton shared by the search network and the evaluation network (Liu et al.
2019, ``model_search.py`` / ``model.py``): a stem Conv3x3 + BN to ``stem_multiplier·C`` channels,
then ``layers`` cells with reductions at 1/3 and 2/3 depth, where the channels double. Each cell
reads the outputs of the two cells before it (the stem's output for the first two), so its
preprocessing needs both widths and whether the cell before halved the resolution."""
from __future__ import annotations

from typing import Callable, List, Tuple

from torch import nn

# make_cell(C_pp, C_p, C, reduction, reduction_prev) -> a cell with a ``multiplier`` attribute:
# its output has multiplier·C channels
MakeCell = Callable[[int, int, int, bool, bool], nn.Module]


def reduction_layers(layers: int) -> List[int]:
    return [layers // 3, 2 * layers // 3]


def stack_cells(make_cell: MakeCell, *, C: int, layers: int, stem_multiplier: int,
                in_channels: int) -> Tuple[nn.Sequential, nn.ModuleList, List[int]]:
    """``(stem, cells, widths)``: ``widths[i]`` is the number of channels cell ``i`` outputs."""
    C_curr = stem_multiplier * C
    stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
    C_pp, C_p, C_curr = C_curr, C_curr, C
    cells, widths = nn.ModuleList(), []
    reduction_prev = False
    for i in range(layers):
        reduction = i in reduction_layers(layers)
        if reduction:
            C_curr *= 2
        cell = make_cell(C_pp, C_p, C_curr, reduction, reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        C_pp, C_p = C_p, cell.multiplier * C_curr
        widths.append(C_p)
    return stem, cells, widths
