"""The digit maze (``data.dataset=maze``): the task of the ``program`` space.

A maze is a grid of ``width × height`` cells (default 5 × 3); cell ``(X, Y)`` (column X from the
left, row Y from the top) shows an 8×8 image of a digit 0–4 from scikit-learn's bundled digits,
read as a direction: 0 halt, 1 right (X+1), 2 up (Y-1), 3 left (X-1), 4 down (Y+1). Input: the
grid of images and a start cell ``(X0, Y0)``. Output: the cell where following the arrows from the
start reaches a halt cell, and the number of moves made, modulo ``count`` (default 15).

Generation of one maze (all draws from the split's seeded generator):

1. the number of moves ``L ∈ {0, …, max_moves}`` with ``P(L) ∝ decay^L`` (defaults 14 and 0.7:
   P(0) = 0.30, mean 2.3, P(L ≥ 10) = 0.027; ``decay = 1`` is uniform). ``max_moves = 14`` lets
   the 3-line program LOOK/MOVE/INC finish in ``3L + 1 ≤ 43`` of its 45 steps. Short paths must
   be common: with uniform lengths a LOOK network does not learn from the final outputs alone
   even under the correct program (docs/results/programs.md);
2. a start cell uniform over the grid and a self-avoiding path of exactly ``L`` moves from it,
   found by depth-first search trying the four neighbours in a random order (if no such path
   leaves that start, a new start is drawn);
3. the path's cells show the digit of the move that leaves them, its last cell 0 (halt); every
   other cell a digit uniform in 0–4 (never visited, whatever it shows);
4. every cell an image drawn uniformly among the split's images of its digit.

So following the arrows from the start halts after exactly ``L`` moves, never leaving the grid or
revisiting a cell. Images: the ``train`` mazes use the digits' train split, the ``test`` mazes its
test split (the project's fixed 80/20 split of sklearn digits, ``nas.data.datasets``), so no test
image is ever seen in training. Train mazes come from ``seed``, test mazes from their own stream
``seed + 7919``. The digit labels are kept (``MazeSet.digits``) for checks only (a perfect LOOK);
loaders yield input–output pairs only.

Loader batches: ``x = MazeInput(images float [B, H, W, 64] in [0, 1], start long [B, 2])`` and
``y = (X·H + Y)·count + moves`` (one index of the ``width·height·count`` joint outcomes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import torch

from ..bounds import ranged
from ..errors import ConfigError
from ..options import NoOptions
from .registry import DATASETS, DataKind, own_options, register_dataset, register_kind
from .loader import split_indices
from .tabular import TabularLoader

DIRECTIONS = 5                    # 0 halt, 1 right, 2 up, 3 left, 4 down
DX = (0, 1, 0, -1, 0)
DY = (0, 0, -1, 0, 1)
_TEST_STREAM = 7_919
_SECOND_STREAM = 1_000_003

# maze generators ``fn(split, seed, options) -> MazeSet``: datasets of kind "maze", the data of
# the spaces whose data kind is "maze" (nas.spaces.base.MAZE)
MAZE = "maze"


@dataclass
class MazeOptions:
    """``data.*`` of the ``maze`` dataset."""

    width: int = ranged(5, ge=1, help="grid width")
    height: int = ranged(3, ge=1, help="grid height")
    count: int = ranged(15, ge=2, help="the move counter's modulus")
    max_moves: int = ranged(14, ge=0, help="longest path (the 3-line program needs 3·14 + 1 = 43 of 45 steps)")
    decay: float = ranged(0.7, gt=0, help="P(L moves) ∝ decay^L for L = 0..max_moves (1: uniform)")
    train: int = ranged(2000, ge=2, help="mazes of train-split digit images (split by data.train_portion)")
    test: int = ranged(1000, ge=1, help="mazes of test-split digit images (the final end-to-end scores)")


class MazeInput(NamedTuple):
    images: torch.Tensor          # float [B, H, W, 64] in [0, 1]
    start: torch.Tensor           # long [B, 2]: (X0, Y0)


@dataclass
class MazeSet:
    images: torch.Tensor          # float [N, H, W, 64] in [0, 1]
    digits: torch.Tensor          # long [N, H, W]: the digit each cell shows (checks only)
    start: torch.Tensor           # long [N, 2]
    final: torch.Tensor           # long [N, 2]: (X, Y) where the path halts
    moves: torch.Tensor           # long [N]: moves made (not reduced)
    options: MazeOptions

    def __len__(self) -> int:
        return self.start.shape[0]

    def targets(self) -> torch.Tensor:
        o = self.options
        return (self.final[:, 0] * o.height + self.final[:, 1]) * o.count + self.moves % o.count


def follow(digits: torch.Tensor, start: Tuple[int, int], limit: int) -> Tuple[int, int, Optional[int]]:
    """Follow the arrows of one grid ``digits [H, W]`` from ``start`` for at most ``limit`` moves
    (a move off the grid stays in place): ``(X, Y, moves)``, ``moves = None`` if not halted."""
    H, W = digits.shape
    x, y = start
    for n in range(limit + 1):
        d = int(digits[y, x])
        if d == 0:
            return x, y, n
        x, y = min(max(x + DX[d], 0), W - 1), min(max(y + DY[d], 0), H - 1)
    return x, y, None


def _path(W: int, H: int, start: Tuple[int, int], moves: int, g: torch.Generator) -> Optional[List[Tuple[int, int]]]:
    """A self-avoiding path of exactly ``moves`` moves from ``start`` (randomised DFS), or None."""
    path, seen = [start], {start}

    def extend() -> bool:
        if len(path) == moves + 1:
            return True
        x, y = path[-1]
        for d in (torch.randperm(4, generator=g) + 1).tolist():
            nxt = (x + DX[d], y + DY[d])
            if 0 <= nxt[0] < W and 0 <= nxt[1] < H and nxt not in seen:
                path.append(nxt)
                seen.add(nxt)
                if extend():
                    return True
                seen.discard(path.pop())
        return False

    return path if extend() else None


def _direction(a: Tuple[int, int], b: Tuple[int, int]) -> int:
    return next(d for d in range(1, DIRECTIONS) if (a[0] + DX[d], a[1] + DY[d]) == b)


def digit_pools(split: str) -> List[torch.Tensor]:
    """Images of digits 0–4 of the project's digits split, as float ``[n_d, 64]`` in [0, 1] per digit."""
    from .datasets import load_dataset
    data = load_dataset("digits", root=None, download=False, resize=None, subset=None, split=split,
                        seed=0, workers=0)
    x = data.images[:, 0].float().div(255).flatten(1)                       # [N, 64]
    return [x[data.labels == d] for d in range(DIRECTIONS)]


def check_options(o: MazeOptions) -> None:
    if o.width < 1 or o.height < 1 or o.width * o.height < 2:
        raise ConfigError(f"data: maze width and height must be positive with at least 2 cells, "
                          f"got {o.width}x{o.height}")
    if not 0 <= o.max_moves < o.width * o.height:
        raise ConfigError(f"data.max_moves must lie in [0, width·height-1 = {o.width * o.height - 1}] "
                          f"(a path never revisits a cell), got {o.max_moves}")
    if not o.decay > 0:
        raise ConfigError(f"data.decay (P(L moves) ∝ decay^L) must be positive, got {o.decay}")
    if o.count < 2:
        raise ConfigError(f"data.count (the move counter's modulus) must be >= 2, got {o.count}")
    if o.train < 2 or o.test < 1:
        raise ConfigError(f"data: need train >= 2 and test >= 1 mazes, got train={o.train}, test={o.test}")


@register_dataset("maze", kind=MAZE, options=MazeOptions)
def generate(split: str, seed: int, options: MazeOptions) -> MazeSet:
    """The ``options.train`` (or ``options.test``) mazes of a split (see the module docstring)."""
    if split not in ("train", "test"):
        raise ConfigError(f"maze split must be 'train' or 'test', got '{split}'")
    o = options
    check_options(o)
    pools = digit_pools(split)
    g = torch.Generator().manual_seed(seed if split == "train" else seed + _TEST_STREAM)
    n = o.train if split == "train" else o.test
    W, H = o.width, o.height
    digits = torch.empty(n, H, W, dtype=torch.long)
    start = torch.empty(n, 2, dtype=torch.long)
    final = torch.empty(n, 2, dtype=torch.long)
    moves = torch.empty(n, dtype=torch.long)
    length_probs = o.decay ** torch.arange(o.max_moves + 1, dtype=torch.float64)
    for i in range(n):
        L = int(torch.multinomial(length_probs, 1, generator=g))
        path = None
        while path is None:
            s = int(torch.randint(0, W * H, (1,), generator=g))
            path = _path(W, H, (s % W, s // W), L, g)
        grid = torch.randint(0, DIRECTIONS, (H, W), generator=g)
        for a, b in zip(path, path[1:]):
            grid[a[1], a[0]] = _direction(a, b)
        grid[path[-1][1], path[-1][0]] = 0
        digits[i], start[i], final[i], moves[i] = grid, torch.tensor(path[0]), torch.tensor(path[-1]), L
    pick = torch.rand(n, H, W, generator=g)
    sizes = torch.tensor([len(p) for p in pools])
    which = (pick * sizes[digits]).long()                                     # [N, H, W] index in its pool
    images = torch.empty(n, H, W, pools[0].shape[1])
    for d, pool in enumerate(pools):
        mask = digits == d
        images[mask] = pool[which[mask]]
    return MazeSet(images, digits, start, final, moves, o)


class MazeLoader(TabularLoader):
    """Iterates ``(MazeInput, y)`` on ``device`` with its own generator (see ``BatchLoader``)."""

    def __init__(self, data: MazeSet, idx: Optional[torch.Tensor] = None, *, batch_size: int,
                 shuffle: bool, seed: int = 0, device: Any = "cpu", shard: Tuple[int, int] = (0, 1)):
        idx = torch.arange(len(data)) if idx is None else idx
        super().__init__(data.images[idx], data.targets()[idx], batch_size=batch_size, shuffle=shuffle,
                         seed=seed, device=device, shard=shard)
        self.data, self.idx = data, idx
        self.start = data.start[idx].to(self.device)

    def batch(self, idx: torch.Tensor) -> Tuple[MazeInput, torch.Tensor]:
        return MazeInput(self.x[idx], self.start[idx]), self.y[idx]

    def eval_loader(self, shard: Tuple[int, int] = (0, 1)) -> "MazeLoader":
        """The same mazes in a fixed order (for final scores); ``shard`` as for the loader."""
        return MazeLoader(self.data, self.idx, batch_size=self.batch_size, shuffle=False, device=self.device,
                          shard=shard)


def build_maze_search_loaders(name: str = "maze", *, options: MazeOptions, train_portion: float,
                              batch_size: int, seed: int,
                              device: Any) -> Tuple[MazeLoader, MazeLoader, Dict[str, Any]]:
    """(program-training loader, validation loader, info) of the registered maze ``name``, both
    from its train mazes; ``info`` also holds the test mazes (``info["test_set"]``) for the final
    end-to-end scores."""
    o = options
    make = DATASETS.get(name, "data.dataset")
    train = make("train", seed, o)
    tr, va = split_indices(len(train), train_portion, seed)
    loaders = (MazeLoader(train, tr, batch_size=batch_size, shuffle=True, seed=seed, device=device),
               MazeLoader(train, va, batch_size=batch_size, shuffle=True, seed=seed + _SECOND_STREAM,
                          device=device))
    info = dict(num_classes=o.width * o.height * o.count, shape=(o.height, o.width), classes=None,
                mean=None, std=None, n_train=len(tr), n_val=len(va), maze=o,
                test_set=make("test", seed, o))
    return loaders[0], loaders[1], info


def maze_search_loaders(name: str, d: Any, *, seed: int, device: Any, world: Any, given: Any = None,
                        channels_last: bool = False) -> Tuple[MazeLoader, MazeLoader, Dict[str, Any]]:
    """The ``maze`` kind's search loaders for a config's ``data`` (the maze's options)."""
    if world.enabled:  # the maze loaders have no shards, and the final scores would be one rank's
        raise ConfigError("data.dataset=maze searches in one process: run nas-search without torchrun")
    return build_maze_search_loaders(name, options=own_options(name, d), train_portion=d.train_portion,
                                     batch_size=d.batch_size, seed=seed, device=device)


register_kind(DataKind(MAZE, NoOptions, maze_search_loaders, tensors=False))  # MazeInput batches
