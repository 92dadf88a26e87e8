"""The tile plan the fused Triton kernels follow (nuwa_lib.attention.tiles), checked on the
CPU against the dense nearby mask: every visible pair is computed exactly once, the counts
(inside, computed, full blocks) are right, and the issue's score figures hold exactly."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from attention_helpers import nearby_cases

from nuwa_lib.attention.masks import count_pairs, nearby_mask
from nuwa_lib.attention.tiles import (
    best_tiling,
    box_shape,
    estimated_scores,
    tile_plan,
    tile_tokens,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = ((16, 16), (16, 32), (32, 16))
TILINGS = ("rows", "boxes", "auto")
SIDES = ("queries", "keys")


def _lanes_ok(rows: torch.Tensor, name: str):
    """Each row: strictly increasing raster indices, then -1 padding only at the end."""
    for r, row in enumerate(rows.tolist()):
        n = sum(x >= 0 for x in row)
        assert all(x == -1 for x in row[n:]), f"{name} {r}: -1 lane before a real one: {row}"
        real = row[:n]
        assert all(a < b for a, b in zip(real, real[1:])), f"{name} {r} not increasing: {row}"


def check_plan(plan, mask: torch.Tensor, tile: int, block: int):
    """``mask``: (N outer, N other) bool, rows = the tiled grid (queries or keys)."""
    n_outer, n_other = mask.shape
    tiles, blocks = plan.tiles.long(), plan.blocks.long()
    starts, full = plan.starts.long(), plan.full.long()
    n_tiles, n_blocks = tiles.shape[0], blocks.shape[0]

    # (a) the tiles partition the outer grid, at most `tile` lanes each
    assert tiles.shape[1] == tile
    assert blocks.shape[1] == block
    real = tiles[tiles >= 0]
    assert real.numel() == n_outer
    assert torch.equal(torch.bincount(real, minlength=n_outer), torch.ones(n_outer).long())
    assert bool((tiles >= 0).any(1).all()), "an empty tile"
    _lanes_ok(tiles, "tile")

    # (f) starts and block lanes; one full flag per block
    assert full.shape == (n_blocks,), f"{full.numel()} full flags for {n_blocks} blocks"
    assert starts.shape == (n_tiles + 1,)
    assert int(starts[0]) == 0 and int(starts[-1]) == n_blocks
    assert bool((starts[1:] >= starts[:-1]).all())
    _lanes_ok(blocks, "block")
    assert bool((blocks >= 0).any(1).all()), "an empty block"
    assert n_blocks == 0 or int(blocks.max()) < n_other

    # (b) every visible pair is covered exactly once, none twice
    owner = torch.repeat_interleave(torch.arange(n_tiles), starts[1:] - starts[:-1])
    q = tiles[owner][:, :, None].expand(n_blocks, tile, block)
    k = blocks[:, None, :].expand(n_blocks, tile, block)
    used = (q >= 0) & (k >= 0)
    cover = torch.bincount((q * n_other + k)[used], minlength=n_outer * n_other)
    cover = cover.view(n_outer, n_other)
    assert int(cover.max()) <= 1, "a pair computed twice"
    missed = (mask & (cover == 0)).nonzero()
    assert missed.numel() == 0, f"visible pairs never computed: {missed[:5].tolist()}"

    # (d) full exactly when no -1 lane and every real pair of the block is visible
    assert set(full.tolist()) <= {0, 1}
    visible = mask[q.clamp(min=0), k.clamp(min=0)] | (q < 0)  # -1 tile lanes don't count
    expect = (blocks >= 0).all(1) & visible.all(2).all(1)
    assert torch.equal(full.bool(), expect)

    # (c), (e) counts
    assert plan.inside == int(mask.sum())
    assert plan.computed == n_blocks * tile * block >= plan.inside
    s = plan.summary()
    assert s["blocks_visited"] == n_blocks and s["full_blocks"] == int(full.sum())


@settings(max_examples=40, deadline=None)
@given(nearby_cases(max_text=20, max_image_side=7, grid=st.integers(1, 4), max_extent=2))
def test_plan_covers_every_visible_pair_once(case):
    q_shape, kv_shape, extent, causal, _ = case
    mask = nearby_mask(q_shape, kv_shape, extent, causal)
    pairs = count_pairs(q_shape, kv_shape, extent, causal)
    assert pairs == int(mask.sum())
    for tile, block in SIZES:
        for tiling in TILINGS:
            for side in SIDES:
                plan = tile_plan(q_shape, kv_shape, extent, causal, tile, block, tiling, side)
                check_plan(plan, mask if side == "queries" else mask.T, tile, block)
                assert plan.inside == pairs


def test_key_tile_no_query_reaches():
    """Cross grid, side "keys": key tiles outside every query's window visit no block. A
    plan that gives them an empty (all -1) block but no full flag shifts ``full`` against
    ``blocks``: the dk/dv kernel reads ``FULL + blk`` of a later block (or past the end)."""
    q_shape, kv_shape, extent = (1, 1, 1), (2, 3, 3), (None, 0, None)
    plan = tile_plan(q_shape, kv_shape, extent, False, 16, 16, "rows", "keys")
    assert plan.full.shape == (plan.blocks.shape[0],)
    assert bool((plan.blocks >= 0).any(1).all()), "an all -1 block"
    check_plan(plan, nearby_mask(q_shape, kv_shape, extent).T, 16, 16)
    # here the shift makes a masked block read the flag of a later full one
    q_shape, kv_shape, extent = (2, 4, 16), (2, 9, 7), (2, 1, 9)
    plan = tile_plan(q_shape, kv_shape, extent, False, 16, 16, "rows", "keys")
    check_plan(plan, nearby_mask(q_shape, kv_shape, extent).T, 16, 16)


def test_issue_figures_image():
    plan = tile_plan((1, 21, 21), (1, 21, 21), (1, 3, 3), False, 64, 64, "rows", "queries")
    assert plan.computed == 77_824
    assert plan.inside == 18_225 == count_pairs((1, 21, 21), (1, 21, 21), (1, 3, 3))


def test_issue_figures_causal_video():
    shape = (10, 21, 21)
    plan = tile_plan(shape, shape, (3, 3, 3), True, 64, 64, "rows", "queries")
    assert plan.computed == 2_400_256
    assert plan.inside == 530_730 == count_pairs(shape, shape, (3, 3, 3), True)


def test_best_tiling_beats_rows_on_causal_video():
    shape, extent = (10, 21, 21), (3, 3, 3)
    best = best_tiling(shape, shape, extent, True, 64, 64, "queries")
    assert best == "rows" or (isinstance(best, tuple) and len(best) == 3
                              and math.prod(best) <= 64)
    rows = tile_plan(shape, shape, extent, True, 64, 64, "rows", "queries")
    picked = tile_plan(shape, shape, extent, True, 64, 64, best, "queries")
    auto = tile_plan(shape, shape, extent, True, 64, 64, "auto", "queries")
    assert picked.computed <= rows.computed
    assert auto.computed == picked.computed and auto.inside == rows.inside


@pytest.mark.parametrize("q_shape,kv_shape,extent", [
    ((4, 9, 9), (4, 9, 9), (1, 2, 2)),
    ((3, 6, 10), (3, 6, 10), (2, 1, 3)),
    ((1, 12, 12), (1, 12, 12), (0, 3, 3)),
    ((20, 1, 1), (20, 1, 1), (4, 0, 0)),
])
@pytest.mark.parametrize("side", SIDES)
def test_estimated_scores(q_shape, kv_shape, extent, side):
    outer = q_shape if side == "queries" else kv_shape
    tile, block = 32, 16
    box = box_shape(outer, tile)
    for tiling in ("rows", "boxes", box, (1, 2, 4), (2, 2, 2)):
        for causal in (False, True):
            exact = tile_plan(q_shape, kv_shape, extent, causal, tile, block, tiling, side)
            est = estimated_scores(q_shape, kv_shape, extent, causal, tile, block, tiling, side)
            assert est >= exact.computed, (tiling, causal)
            if not causal and tiling != "rows":
                assert est == exact.computed, tiling
    best = best_tiling(q_shape, kv_shape, extent, True, tile, block, side)
    assert best == "rows" or isinstance(best, tuple)


def test_estimated_scores_cross_grid():
    q_shape, kv_shape, extent = (2, 5, 7), (3, 4, 6), (1, 1, 2)
    for side in SIDES:
        for tiling in ("boxes", (1, 2, 8), (2, 3, 2)):
            exact = tile_plan(q_shape, kv_shape, extent, False, 16, 16, tiling, side)
            assert estimated_scores(q_shape, kv_shape, extent, False, 16, 16, tiling,
                                    side) == exact.computed


@settings(max_examples=200, deadline=None)
@given(st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40)),
       st.integers(1, 256))
def test_box_shape_fits_block_and_grid(shape, block):
    box = box_shape(shape, block)
    assert len(box) == 3 and all(isinstance(b, int) and b >= 1 for b in box)
    assert math.prod(box) <= block
    assert all(b <= n for b, n in zip(box, shape))


def test_tile_tokens_rejects_too_large_box():
    with pytest.raises(ValueError, match="more than 16"):
        tile_tokens((4, 8, 8), 16, (2, 4, 4))
    with pytest.raises(ValueError):
        tile_tokens((1, 5, 5), 4, (1, 1, 5))
    tiles = tile_tokens((4, 8, 8), 32, (2, 4, 4))  # exactly a block: fine
    assert sorted(torch.cat(tiles).tolist()) == list(range(4 * 8 * 8))
