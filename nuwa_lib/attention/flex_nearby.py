"""3D Nearby Attention through PyTorch's FlexAttention: the baseline of the GPU benchmark.

``flex_nearby_attention`` has the semantics of :func:`nuwa_lib.attention.nearby_attention`
(Eq. 7 of the paper, with the same projection, ``causal`` and ``global_kv``), computed by
``torch.nn.attention.flex_attention`` with a ``BlockMask`` built by ``create_block_mask``
from a ``mask_mod`` that derives each query's window from the (t, i, j) coordinates of the
raster indices. This is what a user would pick instead of our Triton kernel, so the GPU
benchmark compares against it: FlexAttention visits every (query block, key block) pair
the block mask marks -- full blocks without a mask, partial blocks (the window's border,
the causal diagonal, the padded tail) with ``mask_mod`` applied elementwise -- so its cost
is ``blocks_visited * block_size**2`` scores (:func:`flex_block_counts`), not the window's
pair count. The BlockMask is built once per configuration (cached), by
``create_block_mask`` over chunks of whole query blocks to bound its memory.

Global keys are a prefix of the keys that every query sees. On CUDA the default is
``torch.compile(flex_attention)`` (the fused kernel); on CPU it is eager FlexAttention,
which materialises the scores of every row (dense O(N^2), like the reference) and, in
PyTorch 2.14, refuses inputs that require grad (no CPU backward): use it on CPU for
forward checks only.
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Optional, Tuple

import torch

from .masks import check_causal, check_extent, check_shape, count_pairs, resolve_extent

__all__ = ["flex_nearby_attention", "flex_block_counts", "flex_block_mask"]

# The one warning eager FlexAttention gives (once per process) on every CPU call path.
_EAGER_WARNING = "flex_attention called without torch.compile"


def _flex_module():
    try:
        from torch.nn.attention import flex_attention as fa
        fa.create_block_mask, fa.flex_attention  # noqa: B018 - both must exist
    except (ImportError, AttributeError) as err:
        raise ValueError("FlexAttention needs PyTorch >= 2.5 (torch.nn.attention.flex_attention"
                         f"); this is torch {torch.__version__}") from err
    return fa


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    """``torch.compile(flex_attention)``, built once. Each grid's ``mask_mod`` is a new
    closure, so every configuration is one recompile: the limit is raised (and isolated to
    this region) so a benchmark sweep never falls back silently to the unfused eager path,
    and ``fullgraph`` makes any graph break an error instead."""
    fa = _flex_module()
    try:
        return torch.compile(fa.flex_attention, fullgraph=True, dynamic=False,
                             recompile_limit=256, isolate_recompiles=True)
    except TypeError:  # a torch.compile without per-region recompile limits
        return torch.compile(fa.flex_attention, fullgraph=True, dynamic=False)


def _nearby_mask_mod(q_shape, kv_shape, extent, causal: bool, n_global: int):
    """``mask_mod(b, h, q_idx, kv_idx)`` of Eq. (7) on raster indices; ``kv_idx < n_global``
    are the global keys. Axes whose window always covers the whole key axis are skipped."""
    (s, h, w), (s2, h2, w2) = q_shape, kv_shape
    es, eh, ew = extent
    hw, hw2 = h * w, h2 * w2
    # the axes whose window can miss keys (the others always cover the whole key axis)
    axes = [axis for axis, (n2, e) in zip(("s", "h", "w"), ((s2, es), (h2, eh), (w2, ew)))
            if e < n2 - 1]

    def mask_mod(b, h_, q_idx, kv_idx):
        k_idx = kv_idx - n_global
        ok = None
        for axis in axes:
            if axis == "s":
                qc, kc, n, n2, e = q_idx // hw, k_idx // hw2, s, s2, es
            elif axis == "h":
                qc, kc, n, n2, e = (q_idx // w) % h, (k_idx // w2) % h2, h, h2, eh
            else:
                qc, kc, n, n2, e = q_idx % w, k_idx % w2, w, w2, ew
            centre = qc if n == n2 else (qc * n2) // n
            near = (kc - centre).abs() <= e
            ok = near if ok is None else ok & near
        if causal:
            ok = (k_idx <= q_idx) if ok is None else ok & (k_idx <= q_idx)
        if ok is None:
            ok = k_idx >= 0
        if n_global:
            ok = ok | (kv_idx < n_global)
        return ok

    return mask_mod


# create_block_mask evaluates mask_mod on a dense (Nq, Nk) grid through vmap, with int64
# intermediates of that size: it runs on query chunks of about this many (query, key) pairs.
_CHUNK_PAIRS = 1 << 22


def _shifted(mask_mod, offset: int):
    def shifted(b, h, q_idx, kv_idx):
        return mask_mod(b, h, q_idx + offset, kv_idx)
    return shifted


@functools.lru_cache(maxsize=64)
def _block_mask(q_shape, kv_shape, extent, causal, n_global, device, block_size):
    """``create_block_mask`` of the nearby ``mask_mod``, over chunks of whole query blocks
    (each block row of a BlockMask depends only on its own queries, so the rows of the
    chunks, concatenated, are the BlockMask of one call) to bound its memory."""
    fa = _flex_module()
    mask_mod = _nearby_mask_mod(q_shape, kv_shape, extent, causal, n_global)
    n_q, n_k = math.prod(q_shape), n_global + math.prod(kv_shape)
    rows = max(1, _CHUNK_PAIRS // (block_size * n_k)) * block_size
    if rows >= n_q:
        return fa.create_block_mask(mask_mod, None, None, n_q, n_k, device=device,
                                    BLOCK_SIZE=block_size)
    parts = [fa.create_block_mask(_shifted(mask_mod, start), None, None,
                                  min(rows, n_q - start), n_k, device=device,
                                  BLOCK_SIZE=block_size)
             for start in range(0, n_q, rows)]
    return fa.BlockMask.from_kv_blocks(
        *(torch.cat([getattr(p, name) for p in parts], dim=dim) for name, dim in (
            ("kv_num_blocks", -1), ("kv_indices", -2),
            ("full_kv_num_blocks", -1), ("full_kv_indices", -2))),
        BLOCK_SIZE=block_size, mask_mod=mask_mod, seq_lengths=(n_q, n_k))


def flex_block_mask(q_shape, kv_shape, extent, causal: bool = False, n_global: int = 0,
                    device="cpu", block_size: int = 128):
    """The (cached) FlexAttention ``BlockMask`` of 3DNA on these grids, B = H = 1
    (broadcast over batch and heads). Keys: ``n_global`` global keys, then the key grid."""
    q_shape, kv_shape = check_shape("q_shape", q_shape), check_shape("kv_shape", kv_shape)
    check_causal(causal, q_shape, kv_shape)
    extent = resolve_extent(check_extent(extent), kv_shape)
    if not (isinstance(block_size, int) and block_size > 0):
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    return _block_mask(q_shape, kv_shape, extent, causal, int(n_global),
                       str(torch.device(device)), block_size)


def flex_block_counts(q_shape, kv_shape, extent, causal: bool = False,
                      block_size: int = 128) -> dict:
    """What FlexAttention computes for 3DNA on these grids (no global keys), per (b, h).

    ``blocks_visited`` (query block, key block) pairs the block mask marks, of which
    ``full_blocks`` need no mask and ``partial_blocks`` get ``mask_mod`` elementwise;
    ``computed_scores = blocks_visited * block_size**2``; ``inside_window`` is the exact
    number of (query, key) pairs 3DNA attends to (:func:`count_pairs`).
    """
    bm = flex_block_mask(q_shape, kv_shape, extent, causal, 0, "cpu", block_size)
    partial = int(bm.kv_num_blocks.sum())
    full = 0 if bm.full_kv_num_blocks is None else int(bm.full_kv_num_blocks.sum())
    visited = partial + full
    return {"blocks_visited": visited, "partial_blocks": partial, "full_blocks": full,
            "computed_scores": visited * block_size * block_size,
            "inside_window": count_pairs(q_shape, kv_shape, extent, causal)}


def flex_nearby_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_shape, kv_shape,
                          extent, causal: bool = False,
                          global_kv: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                          compiled: Optional[bool] = None, block_size: int = 128
                          ) -> torch.Tensor:
    """3D Nearby Attention, Eqs. (6)-(11), by FlexAttention with the nearby block mask.

    Arguments and result as :func:`nuwa_lib.attention.nearby_attention`: q (B, H, Nq, D) on
    ``q_shape``, k, v (B, H, Nk, D) on ``kv_shape``, ``extent`` (``None`` = whole axis),
    ``causal`` (self-attention only), ``global_kv = (kg, vg)`` of shape (B, H, G, D) seen by
    every query; scale 1/sqrt(D); fp32, fp16 or bf16, returned in the input dtype.
    Arguments are assumed validated (``nearby_attention(..., backend="flex")`` checks them).
    ``compiled``: ``None`` compiles on CUDA and runs eager elsewhere; ``block_size``: the
    block mask's (query and key) block size. On CPU, PyTorch's FlexAttention has no
    backward: inputs that require grad raise ``NotImplementedError`` (under
    ``torch.no_grad()`` they are detached and run).
    """
    fa = _flex_module()
    n_global = 0
    if global_kv is not None:
        kg, vg = global_kv
        n_global = kg.shape[2]
        k, v = torch.cat([kg, k], dim=2), torch.cat([vg, v], dim=2)
    bm = flex_block_mask(q_shape, kv_shape, extent, causal, n_global, q.device, block_size)
    if compiled is None:
        compiled = q.is_cuda
    if q.device.type == "cpu" and not torch.is_grad_enabled():
        q, k, v = q.detach(), k.detach(), v.detach()  # torch refuses requires_grad on CPU
    scale = 1.0 / math.sqrt(q.shape[-1])
    try:
        if compiled:
            out = _compiled_flex()(q, k, v, block_mask=bm, scale=scale)
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_EAGER_WARNING, category=UserWarning)
                out = fa.flex_attention(q, k, v, block_mask=bm, scale=scale)
    except NotImplementedError as err:
        if "backward" in str(err) and q.device.type == "cpu":
            raise NotImplementedError(
                f"flex_nearby_attention: PyTorch {torch.__version__}'s FlexAttention has no "
                "backward on CPU, so it refuses inputs that require grad there. Run it on "
                "CUDA, under torch.no_grad(), or use nearby_attention(backend='torch' or "
                "'reference') on CPU.") from err
        raise
    return out.to(q.dtype)
