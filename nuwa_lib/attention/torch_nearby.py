"""3DNA in plain PyTorch: O(N * window) time and memory, the CPU default.

Plan (made once per shapes/extent/causal/device/tiling and cached):

1. Tile the queries into contiguous raster ranges: several whole frames when frames are
   small, otherwise bands of whole rows of one frame (7 rows of a 21x21 frame).
2. For each tile take the keys its windows can reach, Eq. (7). Time-major order makes
   frames k'-e..k'+e one *contiguous* slice of the key sequence; for a band of rows the
   slice is contiguous in the "band layout" (rows r0..r1 of every frame, one after the
   other). A causal slice ends at the tile's last query.
3. The exact nearby mask of a tile against its slice is a small boolean matrix. Tiles with
   the same slice length and the same mask (all interior tiles) form a group, and a group
   runs as one batched ``scaled_dot_product_attention`` call with that mask (at most
   ``MAX_TILES_PER_CALL`` tiles per call), so PyTorch's fused CPU kernel does the work. The
   few border tiles of each band (first and last frames) share one more call, with windows
   of a common length and one mask per tile.

Execution moves data as little as autograd allows: one ``index_select`` puts the queries
in group order and one gathers each group's key span (so the backward pass is one
``index_add`` per tensor instead of a full-size zero gradient per slice); inside a group
the evenly spaced, overlapping key slices are strided views (``Tensor.unfold``).
Autograd differentiates through all of it (no custom backward).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch.nn.attention import SDPBackend, sdpa_kernel

from .masks import index_mask, resolve_extent

# (target_tile, max_frame_tile, target_band) in tokens: frames of up to max_frame_tile tokens
# are grouped into tiles of about target_tile tokens; larger frames are cut into bands of
# whole rows of about target_band tokens. A 7-row band of a 21x21 frame with e_h = 3 needs
# 13 key rows, against 21 for the whole frame: about half the work of frame tiles.
DEFAULT_TILING = (256, 256, 160)
# Tiles per SDPA call: bounds the backward pass's per-window key gradients (see below).
MAX_TILES_PER_CALL = 16


@dataclass(frozen=True)
class TileGroup:
    """Query tiles with the same key-slice length and mask, run as one SDPA call."""
    n_tiles: int
    q_len: int                    # queries per tile
    k_len: int                    # keys per tile
    k_step: int                   # offset between consecutive tiles' slices in the key span
    mask: Optional[torch.Tensor]  # bool (q_len, k_len), or (T, 1, q_len, k_len) per tile;
    #                               None when every key is visible


@dataclass(frozen=True)
class NearbyPlan:
    groups: Tuple[TileGroup, ...]
    q_order: Optional[torch.Tensor]   # queries in group order (None: raster order already)
    q_restore: Optional[torch.Tensor]  # inverse permutation of q_order
    q_sizes: Tuple[int, ...]          # queries per group in that order
    k_index: torch.Tensor             # key indices of every group's span, concatenated
    k_sizes: Tuple[int, ...]          # span length per group
    dense: bool                       # one tile: all queries against all keys in order


def _query_tiles(q_shape, tiling) -> List[Tuple[int, int, int, int, int, int]]:
    """Contiguous query tiles as (start, end, t0, t1, r0, r1), inclusive frame/row bounds."""
    target_tile, max_frame_tile, target_band = tiling
    s, h, w = q_shape
    hw = h * w
    tiles = []
    if hw <= max_frame_tile:
        frames = max(1, target_tile // hw)
        for t0 in range(0, s, frames):
            t1 = min(s, t0 + frames) - 1
            tiles.append((t0 * hw, (t1 + 1) * hw, t0, t1, 0, h - 1))
    else:
        rows = max(1, target_band // w)
        for t in range(s):
            for r0 in range(0, h, rows):
                r1 = min(h, r0 + rows) - 1
                tiles.append((t * hw + r0 * w, t * hw + (r1 + 1) * w, t, t, r0, r1))
    return tiles


def _is_arithmetic(xs) -> Optional[int]:
    """The common step of an increasing arithmetic sequence, else None (0 for one item)."""
    if len(xs) == 1:
        return 0
    step = xs[1] - xs[0]
    if step <= 0 or any(b - a != step for a, b in zip(xs, xs[1:])):
        return None
    return step


@functools.lru_cache(maxsize=64)
def plan_nearby(q_shape, kv_shape, extent, causal: bool, device: str,
                tiling: Tuple[int, int, int] = DEFAULT_TILING) -> NearbyPlan:
    """Tile plan for 3DNA on these grids (arguments already validated; cached)."""
    s, h, w = q_shape
    s2, h2, w2 = kv_shape
    es, eh, ew = resolve_extent(extent, kv_shape)
    hw2 = h2 * w2
    groups = {}
    for qs, qe, t0, t1, r0, r1 in _query_tiles(q_shape, tiling):
        # Key frames and rows any query of the tile can reach, Eq. (7).
        f0, f1 = max(0, t0 * s2 // s - es), min(s2 - 1, t1 * s2 // s + es)
        k0, k1 = max(0, r0 * h2 // h - eh), min(h2 - 1, r1 * h2 // h + eh)
        if k0 == 0 and k1 == h2 - 1:
            layout, start, stop = None, f0 * hw2, (f1 + 1) * hw2
        else:  # rows k0..k1 of frames f0..f1: contiguous in the band layout of those rows
            band = (k1 - k0 + 1) * w2
            layout, start, stop = (k0, k1), f0 * band, (f1 + 1) * band
        k_idx = _layout_to_index(torch.arange(start, stop), layout, w2, hw2)
        if causal:  # k_idx is increasing: drop the keys after the tile's last query
            k_idx = k_idx[: int((k_idx < qe).sum())]
        q_idx = torch.arange(qs, qe)
        mask = index_mask(q_idx, k_idx, q_shape, kv_shape, (es, eh, ew), causal)
        key = (qe - qs, layout, len(k_idx), mask.numpy().tobytes())
        g = groups.setdefault(key, {"q": [], "k": [], "mask": mask})
        g["q"].append(q_idx)
        g["k"].append((start, k_idx))
    groups = _merge_border_groups(groups, q_shape, kv_shape, (es, eh, ew), causal)

    tile_groups, q_order, k_index = [], [], []
    for (q_len, layout, k_len, _), g in _split_large_groups(groups):
        starts = [start for start, _ in g["k"]]
        step = _is_arithmetic(starts)
        if step == 0:  # a single tile
            span, step = g["k"][0][1], k_len
        elif step is not None:  # one span; the tiles' slices are overlapping windows of it
            span = _layout_to_index(torch.arange(starts[0], starts[-1] + k_len), layout, w2, hw2)
        else:  # irregular starts: concatenate the slices
            span, step = torch.cat([k_idx for _, k_idx in g["k"]]), k_len
        mask = g["mask"]
        tile_groups.append(TileGroup(n_tiles=len(starts), q_len=q_len, k_len=k_len, k_step=step,
                                     mask=None if bool(mask.all()) else mask.to(device)))
        q_order.extend(g["q"])
        k_index.append(span)
    q_order = torch.cat(q_order)
    n_q = len(q_order)
    identity = torch.equal(q_order, torch.arange(n_q))
    q_restore = torch.empty_like(q_order)
    q_restore[q_order] = torch.arange(n_q)
    k_sizes = tuple(len(x) for x in k_index)
    k_index = torch.cat(k_index)
    dense = len(tile_groups) == 1 and tile_groups[0].n_tiles == 1 and identity \
        and torch.equal(k_index, torch.arange(s2 * hw2))
    return NearbyPlan(
        groups=tuple(tile_groups),
        q_order=None if identity else q_order.to(device),
        q_restore=None if identity else q_restore.to(device),
        q_sizes=tuple(g.n_tiles * g.q_len for g in tile_groups),
        k_index=k_index.to(device),
        k_sizes=k_sizes,
        dense=dense)


def _merge_border_groups(groups: dict, q_shape, kv_shape, extent, causal) -> dict:
    """Run the border tiles of each (tile size, key rows) family as one SDPA call.

    Tiles near the first and last frames have shorter, differently masked windows, so
    exact grouping gives them one small call each (2 e_s per band). Every call costs a few
    parallel regions, which is what dominates short clips and busy machines; so all tiles
    but the largest group of a family get windows of one common length (shifted inside the
    key layout, the extra keys masked out) and a mask per tile.
    """
    s2, h2, w2 = kv_shape
    families = {}
    for key in groups:
        families.setdefault(key[:2], []).append(key)
    merged = {}
    for (q_len, layout), keys in families.items():
        keys.sort(key=lambda kk: (len(groups[kk]["q"]), kk[2]), reverse=True)
        main, rest = keys[0], keys[1:]
        merged[main] = groups[main]
        if len(rest) < 2:
            merged.update((kk, groups[kk]) for kk in rest)
            continue
        length = max(kk[2] for kk in rest)
        size = s2 * h2 * w2 if layout is None else s2 * (layout[1] - layout[0] + 1) * w2
        g = {"q": [], "k": [], "mask": []}
        for kk in rest:
            for q_idx, (start, _) in zip(groups[kk]["q"], groups[kk]["k"]):
                start = min(start, size - length)
                k_idx = _layout_to_index(torch.arange(start, start + length), layout, w2, h2 * w2)
                g["q"].append(q_idx)
                g["k"].append((start, k_idx))
                g["mask"].append(index_mask(q_idx, k_idx, q_shape, kv_shape, extent, causal))
        g["mask"] = torch.stack(g["mask"])[:, None]  # (T, 1, q_len, length): per tile
        merged[(q_len, layout, length, "border")] = g
    return merged


def _split_large_groups(groups: dict):
    """(key, group) pairs with at most MAX_TILES_PER_CALL tiles each, largest last.

    The backward pass of one SDPA call holds a gradient for every key of every window of
    the call; capping the windows per call caps that transient (about 4 frames x 13 rows of
    keys per 7-row band). Largest last: autograd runs them first, before the smaller
    groups' gradients are held.
    """
    out = []
    for key, g in groups.items():
        n = len(g["q"])
        chunks = -(-n // MAX_TILES_PER_CALL)
        bounds = [round(i * n / chunks) for i in range(chunks + 1)]
        for a, b in zip(bounds, bounds[1:]):
            mask = g["mask"][a:b] if g["mask"].dim() == 4 else g["mask"]
            out.append((key, {"q": g["q"][a:b], "k": g["k"][a:b], "mask": mask}))
    out.sort(key=lambda item: len(item[1]["q"]) * item[0][0] * item[0][2])
    return out


def _layout_to_index(pos: torch.Tensor, layout, w2: int, hw2: int) -> torch.Tensor:
    """Key indices of positions in k (layout None) or in the band layout of rows (k0, k1)."""
    if layout is None:
        return pos
    k0, k1 = layout
    band = (k1 - k0 + 1) * w2
    return (pos // band) * hw2 + k0 * w2 + pos % band


@functools.lru_cache(maxsize=256)
def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where visible, -inf elsewhere, in the inputs' dtype. SDPA would otherwise convert the
    boolean mask on every forward and backward call. Keyed by the (cached) plan's mask."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, -math.inf)


def _with_global_prefix(mask: Optional[torch.Tensor], n_global: int) -> Optional[torch.Tensor]:
    """Global keys are an always-visible prefix of every tile's keys."""
    if mask is None:
        return None
    return torch.cat([mask.new_zeros(*mask.shape[:-1], n_global), mask], dim=-1)


def _windows(x: torch.Tensor, n: int, length: int, step: int) -> torch.Tensor:
    """(T, BH, length, D) windows x[:, i*step : i*step + length] of x: (BH, span, D), as views.

    Overlapping windows need ``unfold``; disjoint ones are a plain reshape, whose backward
    pass is free (unfold's allocates and scatters).
    """
    if step == length or n == 1:
        return rearrange(x[:, :n * length], "bh (t m) d -> t bh m d", t=n)
    return x.unfold(1, length, step).permute(1, 0, 3, 2)


def _sdpa(q, k, v, mask, is_causal: bool = False):
    """Fused SDPA. PyTorch 2.14's bf16 CPU kernel takes its AMX path whenever the hardware has
    AMX, even when ``ATEN_CPU_CAPABILITY`` lowers ATen's kernels below it (as ``make
    test-other-cpu`` does), and then fails with "pack_vnni2 is only supported when avx512 is
    supported"; the math kernel computes the same attention."""
    try:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    except RuntimeError as err:
        if q.device.type != "cpu" or "pack_vnni2" not in str(err):
            raise
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)


def torch_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal=False, global_kv=None,
                           tiling: Tuple[int, int, int] = DEFAULT_TILING):
    """3DNA, Eqs. (7)-(11), as batched SDPA calls over query tiles and their key slices.

    q: (B, H, Nq, D); k, v: (B, H, Nk, D); arguments are assumed validated
    (use :func:`nuwa_lib.attention.nearby_attention`).
    """
    plan = plan_nearby(tuple(q_shape), tuple(kv_shape), tuple(extent), bool(causal),
                       str(q.device), tuple(tiling))
    B, H = q.shape[:2]
    masks = [None if g.mask is None else _additive_mask(g.mask, q.dtype) for g in plan.groups]
    if plan.dense:  # small grids: a single masked SDPA call, nothing to tile
        mask = masks[0]
        if global_kv is not None:
            k, v = torch.cat([global_kv[0], k], 2), torch.cat([global_kv[1], v], 2)
            mask = _with_global_prefix(mask, global_kv[0].shape[2])
        return _sdpa(q, k, v, mask)
    qf, kf, vf = (rearrange(x, "b h n d -> (b h) n d") for x in (q, k, v))
    if plan.q_order is not None:
        qf = qf.index_select(1, plan.q_order)
    q_parts = qf.split(plan.q_sizes, dim=1)
    k_parts = kf.index_select(1, plan.k_index).split(plan.k_sizes, dim=1)
    v_parts = vf.index_select(1, plan.k_index).split(plan.k_sizes, dim=1)
    if global_kv is not None:
        kg, vg = (rearrange(x, "b h g d -> (b h) g d") for x in global_kv)
    outs = []
    for g, mask, q_g, k_g, v_g in zip(plan.groups, masks, q_parts, k_parts, v_parts):
        q_t = rearrange(q_g, "bh (t m) d -> t bh m d", m=g.q_len)
        k_t, v_t = (_windows(x, g.n_tiles, g.k_len, g.k_step) for x in (k_g, v_g))
        if global_kv is not None:
            k_t = torch.cat([kg.expand(g.n_tiles, *kg.shape), k_t], dim=2)
            v_t = torch.cat([vg.expand(g.n_tiles, *vg.shape), v_t], dim=2)
            mask = _with_global_prefix(mask, kg.shape[1])
        o = _sdpa(q_t, k_t, v_t, mask)  # Eq. (11)
        outs.append(rearrange(o, "t bh m d -> bh (t m) d"))
    out = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
    if plan.q_restore is not None:
        out = out.index_select(1, plan.q_restore)  # back to raster order
    return rearrange(out, "(b h) n d -> b h n d", b=B, h=H)
