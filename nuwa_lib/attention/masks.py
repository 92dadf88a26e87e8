"""Attention masks over 3D token grids (Sec. 3.2, Fig. 3).

Every grid is ``(s, h, w)`` = (frames, rows, columns) and tokens are laid out in
raster order, time-major: ``index = t*h*w + i*w + j``. Text of L tokens is the grid
``(L, 1, 1)`` and an image is ``(1, h, w)``.

A mask is an ``(Nq, Nk)`` boolean tensor, ``True`` where the query may attend to the
key. Four kinds, as in Fig. 3:

* ``full``   -- every key.
* ``block``  -- keys in the same fixed 3D block as the (projected) query; blocks tile the
  key grid with ``block_size = (b_s, b_h, b_w)`` starting at the origin (Fig. 3 uses
  2x2x2 blocks on a 4x4x2 grid).
* ``axial``  -- keys on one of the three axis lines through the projected query: they
  share two of the three coordinates (same row, same column, or same position in
  another frame). This is the union of the three axial attentions of Fig. 3 in one
  mask; a factorised model would run them as separate layers.
* ``nearby`` -- 3DNA, Eq. (7): keys with ``|a - i'| <= e_h``, ``|b - j'| <= e_w``,
  ``|c - k'| <= e_s`` around the projected query; windows are truncated at the borders.

``causal=True`` (self-attention only, ``q_shape == kv_shape``) additionally keeps only
keys at or before the query in raster order, for every kind. Causal nearby attention is
therefore the paper's *centred* window cut at the query, not a one-sided corner window.

Masks are planned once per (kind, shapes, extent, causal, device) and cached; the
returned tensors are shared, so treat them as read-only.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import Optional, Tuple

import torch
from einops import rearrange

Shape3 = Tuple[int, int, int]
Extent3 = Tuple[Optional[int], Optional[int], Optional[int]]

MASK_KINDS = ("full", "block", "axial", "nearby")
_AXES = ("s", "h", "w")


# ----------------------------------------------------------------------------- checks
def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def check_shape(name: str, shape) -> Shape3:
    """Validate a grid shape ``(s, h, w)`` of three positive integers."""
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise ValueError(
            f"{name} must be a grid shape (s, h, w) of three positive integers, got {shape!r}"
        )
    if not all(_is_int(x) and x > 0 for x in shape):
        raise ValueError(
            f"{name} must contain three positive integers (s, h, w), got {tuple(shape)!r}"
        )
    return tuple(int(x) for x in shape)


def check_extent(extent, name: str = "extent") -> Extent3:
    """Validate ``(e_s, e_h, e_w)``: each a non-negative integer or ``None`` (whole axis)."""
    if not isinstance(extent, (tuple, list)) or len(extent) != 3:
        raise ValueError(
            f"{name} must be (e_s, e_h, e_w), each a non-negative integer or None "
            f"(= the whole axis), got {extent!r}"
        )
    for axis, e in zip(_AXES, extent):
        if e is not None and not (_is_int(e) and e >= 0):
            raise ValueError(
                f"{name} on axis {axis!r} must be a non-negative integer or None "
                f"(= the whole axis), got {e!r}"
            )
    return tuple(None if e is None else int(e) for e in extent)


def check_causal(causal, q_shape: Shape3, kv_shape: Shape3) -> bool:
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be True or False, got {causal!r}")
    if causal and tuple(q_shape) != tuple(kv_shape):
        raise ValueError(
            "causal=True is only allowed for self-attention, where q_shape == kv_shape; "
            f"got q_shape={tuple(q_shape)} and kv_shape={tuple(kv_shape)}"
        )
    return causal


def resolve_extent(extent: Extent3, kv_shape: Shape3) -> Shape3:
    """Replace ``None`` (whole axis) by the key grid's size on that axis.

    A window of half-width ``n'`` around any projected coordinate covers the whole axis
    of length ``n'``, so ``None`` and ``n'`` give the same mask.
    """
    return tuple(n if e is None else min(int(e), n) for e, n in zip(extent, kv_shape))


def _device_key(device) -> str:
    return str(torch.device("cpu" if device is None else device))


# ------------------------------------------------------------------ coordinate mapping
def project_coordinates(q_shape: Shape3, kv_shape: Shape3) -> Tuple[torch.Tensor, ...]:
    """Per-axis projection of query coordinates onto the key grid (Sec. 3.2).

    Query (k, i, j) on ``q_shape`` maps to (floor(k s'/s), floor(i h'/h), floor(j w'/w)).
    Returns three int64 tensors, one per axis, of lengths s, h, w.
    """
    return tuple(
        torch.div(torch.arange(n) * n2, n, rounding_mode="floor")
        for n, n2 in zip(q_shape, kv_shape)
    )


def grid_coordinates(shape: Shape3) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, i, j) of every token of ``shape`` in raster order (time-major)."""
    s, h, w = shape
    idx = torch.arange(s * h * w)
    return idx // (h * w), (idx // w) % h, idx % w


def axis_window(n_q: int, n_kv: int, e: int) -> torch.Tensor:
    """``(n_q, n_kv)`` bool: key coordinate within ``e`` of the projected query, Eq. (7)."""
    centre = torch.div(torch.arange(n_q) * n_kv, n_q, rounding_mode="floor")
    return (torch.arange(n_kv)[None, :] - centre[:, None]).abs() <= e


def _product_mask(ms: torch.Tensor, mh: torch.Tensor, mw: torch.Tensor) -> torch.Tensor:
    """Mask of the 3D grids whose (t, i, j) entry is ms[t] & mh[i] & mw[j] (raster order)."""
    m = (rearrange(ms, "s s2 -> s 1 1 s2 1 1") & rearrange(mh, "h h2 -> 1 h 1 1 h2 1")
         & rearrange(mw, "w w2 -> 1 1 w 1 1 w2"))
    return rearrange(m, "s h w s2 h2 w2 -> (s h w) (s2 h2 w2)")


def _apply_causal(mask: torch.Tensor, causal: bool) -> torch.Tensor:
    return torch.tril(mask) if causal else mask


def index_mask(q_idx, k_idx, q_shape, kv_shape, extent, causal) -> torch.Tensor:
    """Exact nearby mask, Eq. (7), of the queries ``q_idx`` against the keys ``k_idx`` (raster
    indices on ``q_shape`` and ``kv_shape``; ``extent`` resolved, no ``None``)."""
    (s, h, w), (s2, h2, w2), (es, eh, ew) = q_shape, kv_shape, extent
    qt, qi, qj = q_idx // (h * w), (q_idx // w) % h, q_idx % w
    kt, ki, kj = k_idx // (h2 * w2), (k_idx // w2) % h2, k_idx % w2
    mask = ((kt[None] - (qt * s2 // s)[:, None]).abs() <= es) \
        & ((ki[None] - (qi * h2 // h)[:, None]).abs() <= eh) \
        & ((kj[None] - (qj * w2 // w)[:, None]).abs() <= ew)
    if causal:
        mask &= k_idx[None] <= q_idx[:, None]
    return mask


# ------------------------------------------------------------------------------ masks
@functools.lru_cache(maxsize=64)
def _nearby_mask(q_shape, kv_shape, extent, causal, device) -> torch.Tensor:
    e = resolve_extent(extent, kv_shape)
    axes = [axis_window(n, n2, ea) for n, n2, ea in zip(q_shape, kv_shape, e)]
    return _apply_causal(_product_mask(*axes), causal).to(device)


def nearby_mask(q_shape, kv_shape, extent, causal: bool = False, device=None) -> torch.Tensor:
    """3D nearby mask, Eq. (7) (Fig. 3, right): ``(Nq, Nk)`` bool, True = may attend."""
    q_shape, kv_shape = check_shape("q_shape", q_shape), check_shape("kv_shape", kv_shape)
    extent = check_extent(extent)
    check_causal(causal, q_shape, kv_shape)
    return _nearby_mask(q_shape, kv_shape, extent, causal, _device_key(device))


@functools.lru_cache(maxsize=64)
def _full_mask(q_shape, kv_shape, causal, device) -> torch.Tensor:
    n_q, n_k = math.prod(q_shape), math.prod(kv_shape)
    return _apply_causal(torch.ones(n_q, n_k, dtype=torch.bool), causal).to(device)


def full_mask(q_shape, kv_shape, causal: bool = False, device=None) -> torch.Tensor:
    """Full attention (Fig. 3, left): every key, or every earlier key when causal."""
    q_shape, kv_shape = check_shape("q_shape", q_shape), check_shape("kv_shape", kv_shape)
    check_causal(causal, q_shape, kv_shape)
    return _full_mask(q_shape, kv_shape, causal, _device_key(device))


@functools.lru_cache(maxsize=64)
def _block_mask(q_shape, kv_shape, block_size, causal, device) -> torch.Tensor:
    axes = []
    for c, n2, b in zip(project_coordinates(q_shape, kv_shape), kv_shape, block_size):
        axes.append((c // b)[:, None] == (torch.arange(n2) // b)[None, :])
    return _apply_causal(_product_mask(*axes), causal).to(device)


def block_mask(q_shape, kv_shape, block_size, causal: bool = False, device=None) -> torch.Tensor:
    """3D block-sparse attention (Fig. 3): keys in the projected query's fixed 3D block.

    ``block_size = (b_s, b_h, b_w)`` in key-grid tokens; blocks start at the origin and the
    last block on an axis may be shorter.
    """
    q_shape, kv_shape = check_shape("q_shape", q_shape), check_shape("kv_shape", kv_shape)
    block_size = check_shape("block_size", block_size)
    check_causal(causal, q_shape, kv_shape)
    return _block_mask(q_shape, kv_shape, block_size, causal, _device_key(device))


@functools.lru_cache(maxsize=64)
def _axial_mask(q_shape, kv_shape, causal, device) -> torch.Tensor:
    same = [c[:, None] == torch.arange(n2)[None, :]
            for c, n2 in zip(project_coordinates(q_shape, kv_shape), kv_shape)]
    every = [torch.ones_like(m) for m in same]
    along_w = _product_mask(same[0], same[1], every[2])  # same frame and row
    along_h = _product_mask(same[0], every[1], same[2])  # same frame and column
    along_s = _product_mask(every[0], same[1], same[2])  # same (row, column), any frame
    return _apply_causal(along_w | along_h | along_s, causal).to(device)


def axial_mask(q_shape, kv_shape, causal: bool = False, device=None) -> torch.Tensor:
    """3D axial-sparse attention (Fig. 3): keys on the three axis lines through the query.

    A key is visible when it shares two of its three coordinates with the projected query
    (same row, same column, or the same pixel in another frame).
    """
    q_shape, kv_shape = check_shape("q_shape", q_shape), check_shape("kv_shape", kv_shape)
    check_causal(causal, q_shape, kv_shape)
    return _axial_mask(q_shape, kv_shape, causal, _device_key(device))


def attention_mask(kind: str, q_shape, kv_shape, *, extent=None, block_size=None,
                   causal: bool = False, device=None) -> torch.Tensor:
    """The ``(Nq, Nk)`` mask of one of :data:`MASK_KINDS` (Fig. 3)."""
    if kind not in MASK_KINDS:
        raise ValueError(f"mask_kind must be one of {MASK_KINDS}, got {kind!r}")
    if kind == "nearby":
        if extent is None:
            raise ValueError("extent is required for mask_kind='nearby': (e_s, e_h, e_w)")
        return nearby_mask(q_shape, kv_shape, extent, causal, device)
    if kind == "block":
        if block_size is None:
            raise ValueError("block_size is required for mask_kind='block': (b_s, b_h, b_w)")
        return block_mask(q_shape, kv_shape, block_size, causal, device)
    if kind == "axial":
        return axial_mask(q_shape, kv_shape, causal, device)
    return full_mask(q_shape, kv_shape, causal, device)


# ------------------------------------------------------------------------ pair counts
def _axis_counts(n_q: int, n_kv: int, e: int) -> Tuple[list, list]:
    """Per query coordinate: window size, and (self-grid only) keys strictly before it."""
    total, before = [], []
    for x in range(n_q):
        c = x * n_kv // n_q
        lo, hi = max(0, c - e), min(n_kv - 1, c + e)
        total.append(hi - lo + 1)
        before.append(c - lo)  # keys in the window with coordinate < c
    return total, before


def count_pairs(q_shape, kv_shape, extent, causal: bool = False) -> int:
    """Number of (query, key) pairs 3DNA attends to, without building the mask.

    The nearby mask is a product of per-axis windows, so the bidirectional count is the
    product of per-axis window sums -- O((hws)(e^h e^w e^s)) work, Sec. 4.3 -- and the causal
    count splits "key before query in raster order" by the first axis where they differ:
    an earlier frame (any row and column in the window), the same frame and an earlier row,
    or the same row and a column at or before the query.
    """
    q_shape, kv_shape = check_shape("q_shape", q_shape), check_shape("kv_shape", kv_shape)
    extent = check_extent(extent)
    check_causal(causal, q_shape, kv_shape)
    e = resolve_extent(extent, kv_shape)
    (ts, tb), (hs, hb), (ws, wb) = (_axis_counts(n, n2, ea)
                                    for n, n2, ea in zip(q_shape, kv_shape, e))
    if not causal:
        return sum(ts) * sum(hs) * sum(ws)
    s, h, w = q_shape
    return (sum(tb) * sum(hs) * sum(ws)          # earlier frames
            + s * sum(hb) * sum(ws)              # same frame, earlier rows
            + s * h * (sum(wb) + w))             # same row, columns <= query
