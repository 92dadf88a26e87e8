"""The tile plan of the fused 3DNA kernels: which scores they compute (Sec. 3.2, Eq. 7).

A program of a Triton kernel owns one *tile* -- up to ``BLOCK_M`` queries (forward, dq) or
``BLOCK_N`` keys (dk, dv) -- and walks a list of *blocks* of the other side, gathered by
index. Every (tile, block) pair it visits costs ``BLOCK_M x BLOCK_N`` scores, however many of
them lie inside a window, so the plan decides the kernels' work. It is made here, on the
CPU, once per configuration (cached); the kernels in :mod:`.triton_nearby` only follow it.

* **tiles**: ``rows`` -- runs of tokens in raster order: whole frames when a frame holds at
  most ``BLOCK`` tokens, else whole rows of one frame (runs of ``BLOCK`` tokens of a frame
  when a row is longer);
  ``boxes`` -- 3D boxes ``(b_s, b_h, b_w)`` of at most ``BLOCK`` tokens (chosen by
  :func:`box_shape`, or given as a tuple).
* **blocks**: the tokens of the other grid that at least one token of the tile interacts
  with (the union of the tile's windows, Eq. 7, causal cut included), in raster order, cut
  into runs of ``BLOCK``; unused lanes hold -1.
* **full**: a block whose every pair lies inside the windows needs no mask; the kernels mask
  only the others, element by element.

Each pair inside a window lies in exactly one visited block, so ``inside`` equals
:func:`~.masks.count_pairs`, and ``inside / computed`` is the share of the computed scores
that are used (the *score efficiency*).
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Tuple, Union

import torch

from .masks import axis_window, index_mask, resolve_extent

TILINGS = ("rows", "boxes")
Tiling = Union[str, Tuple[int, int, int]]


@dataclass(frozen=True)
class TilePlan:
    """Tiles of one grid, each with the blocks of the other grid it visits."""

    tiles: torch.Tensor    # (n_tiles, tile_lanes) int32 raster indices, -1 = unused lane
    blocks: torch.Tensor   # (n_blocks, block_lanes) int32 raster indices, -1 = unused lane
    starts: torch.Tensor   # (n_tiles + 1,) int32: tile t visits blocks[starts[t]:starts[t + 1]]
    full: torch.Tensor     # (n_blocks,) int32: 1 where every pair of the block is visible
    inside: int            # pairs inside the windows

    @property
    def computed(self) -> int:
        """Scores the kernel computes: every lane of every visited (tile, block) pair."""
        return self.blocks.shape[0] * self.tiles.shape[1] * self.blocks.shape[1]

    def summary(self) -> dict:
        n_blocks = int(self.blocks.shape[0])
        return {"tiles": int(self.tiles.shape[0]), "blocks_visited": n_blocks,
                "full_blocks": int(self.full.sum()), "computed_scores": self.computed,
                "inside_window": self.inside,
                "score_efficiency": self.inside / self.computed if self.computed else 0.0}


def box_shape(shape, block: int) -> Tuple[int, int, int]:
    """A near-cubic box of at most ``block`` tokens that fits ``shape``: the smallest side is
    doubled first (ties: columns, then rows, then frames) while the box still fits."""
    box = [1, 1, 1]
    while True:
        grow = [a for a in (2, 1, 0) if box[a] < shape[a] and 2 * math.prod(box) <= block]
        if not grow:
            return tuple(box)
        a = min(grow, key=lambda a: box[a])
        box[a] = min(2 * box[a], shape[a])


def tile_tokens(shape, block: int, tiling: Tiling = "rows") -> list:
    """The tiles of ``shape`` (lists of raster indices, each at most ``block`` long)."""
    s, h, w = shape
    grid = torch.arange(s * h * w).view(s, h * w)
    if tiling == "rows":
        if h * w <= block:
            return [frames.flatten() for frames in grid.split(block // (h * w))]
        run = (block // w) * w if w <= block else block
        return [frame[p:p + run] for frame in grid for p in range(0, h * w, run)]
    bs, bh, bw = box_shape(shape, block) if tiling == "boxes" else tiling
    if bs * bh * bw > block:
        raise ValueError(f"tile box {(bs, bh, bw)} holds more than {block} tokens")
    grid = grid.view(s, h, w)
    return [grid[t:t + bs, i:i + bh, j:j + bw].flatten()
            for t in range(0, s, bs) for i in range(0, h, bh) for j in range(0, w, bw)]


def _pad(rows: list, width: int) -> torch.Tensor:
    out = torch.full((len(rows), width), -1, dtype=torch.int32)
    for r, x in enumerate(rows):
        out[r, :len(x)] = x
    return out


def _reach(coords: torch.Tensor, n: int, n2: int, e: int, side: str) -> torch.Tensor:
    """The coordinates of the other grid that tokens at these coordinates of one axis can
    interact with (Eq. 7 per axis; ``side`` as in :func:`tile_plan`)."""
    window = axis_window(n, n2, e)  # (n queries, n2 keys)
    near = window[coords].any(0) if side == "queries" else window[:, coords].any(1)
    return near.nonzero().flatten()


def _candidate_axes(t, outer, other, extent, side):
    """Per axis, the coordinates of the other grid that the tile ``t`` reaches (their product
    is a superset of the union of the tile's windows, equal to it without ``causal``)."""
    _, h, w = outer
    return [_reach(c.unique(), n, n2, e, side) if side == "queries"
            else _reach(c.unique(), n2, n, e, side)
            for c, n, n2, e in zip((t // (h * w), t // w % h, t % w), outer, other, extent)]


def _raster(axes, shape) -> torch.Tensor:
    """Raster indices on ``shape`` of the product of three coordinate lists (increasing)."""
    _, h, w = shape
    return (axes[0][:, None, None] * (h * w) + axes[1][None, :, None] * w
            + axes[2][None, None, :]).flatten()


def _visits(q_shape, kv_shape, extent, causal, tiles, side):
    """For each tile: its candidate tokens of the other grid and its visibility mask on them."""
    outer, other = (q_shape, kv_shape) if side == "queries" else (kv_shape, q_shape)
    for t in tiles:
        cand = _raster(_candidate_axes(t, outer, other, extent, side), other)
        if side == "queries":
            yield t, cand, index_mask(t, cand, q_shape, kv_shape, extent, causal)
        else:
            yield t, cand, index_mask(cand, t, q_shape, kv_shape, extent, causal).T


def _candidates(shape, tile: int) -> list:
    """Tilings :func:`best_tiling` compares: rows, and every box of more than 3/4 of a tile."""
    boxes = [b for b in itertools.product(*(range(1, n + 1) for n in shape))
             if 3 * tile // 4 < math.prod(b) <= tile]
    return ["rows", *boxes]


def estimated_scores(q_shape, kv_shape, extent, causal, tile: int, block: int,
                     tiling: Tiling = "rows", side: str = "queries") -> int:
    """The scores a plan would compute, from the tiles' candidate tokens alone (exact without
    ``causal`` for box tiles; with it, candidates past the tile's last query (side
    ``queries``) or before its first key (side ``keys``) are dropped, an upper bound)."""
    extent = resolve_extent(tuple(extent), kv_shape)
    outer, other = (q_shape, kv_shape) if side == "queries" else (kv_shape, q_shape)
    n_blocks = 0
    for t in tile_tokens(outer, tile, tiling):
        axes = _candidate_axes(t, outer, other, extent, side)
        if causal:
            cand = _raster(axes, other)
            size = int((cand <= t.max()).sum() if side == "queries" else (cand >= t.min()).sum())
        else:
            size = math.prod(len(a) for a in axes)
        n_blocks += -(-size // block)
    return n_blocks * tile * block


@functools.lru_cache(maxsize=64)
def best_tiling(q_shape, kv_shape, extent, causal: bool, tile: int, block: int,
                side: str = "queries") -> Tiling:
    """Of rows and the boxes of :func:`_candidates`, the tiling with the fewest estimated
    scores (ties: rows, then the boxes in order)."""
    outer = q_shape if side == "queries" else kv_shape
    counts = {t: estimated_scores(q_shape, kv_shape, extent, causal, tile, block, t, side)
              for t in _candidates(outer, tile)}
    return min(counts, key=counts.get)


@functools.lru_cache(maxsize=64)
def tile_plan(q_shape, kv_shape, extent, causal: bool, tile: int, block: int,
              tiling: Tiling = "rows", side: str = "queries", device: str = "cpu") -> TilePlan:
    """The plan of one kernel (arguments validated, ``extent`` may hold ``None``).

    ``side="queries"``: tiles of ``tile`` queries visiting blocks of ``block`` keys (forward
    and dq); ``side="keys"``: tiles of ``tile`` keys visiting blocks of ``block`` queries (dk,
    dv), i.e. the queries whose windows reach the tile. ``tiling="auto"``: the
    :func:`best_tiling` of this side.
    """
    extent = resolve_extent(tuple(extent), kv_shape)
    if tiling == "auto":
        tiling = best_tiling(q_shape, kv_shape, extent, causal, tile, block, side)
    tiles = tile_tokens(q_shape if side == "queries" else kv_shape, tile, tiling)
    blocks, starts, full, inside = [], [0], [], 0
    for t, cand, m in _visits(q_shape, kv_shape, extent, causal, tiles, side):
        inside += int(m.sum())
        seen = m.any(0)
        cols, m = cand[seen], m[:, seen]
        n = -(-len(cols) // block)
        lanes = torch.zeros(len(t), n * block, dtype=torch.bool)
        lanes[:, :len(cols)] = m
        full.append(lanes.view(len(t), n, block).all(2).all(0))
        if len(cols):  # a tile that nothing reaches visits no block
            blocks.extend(cols.split(block))
        starts.append(len(blocks))
    return TilePlan(tiles=_pad(tiles, tile).to(device), blocks=_pad(blocks, block).to(device),
                    starts=torch.tensor(starts, dtype=torch.int32).to(device),
                    full=torch.cat(full).to(torch.int32).to(device), inside=inside)
