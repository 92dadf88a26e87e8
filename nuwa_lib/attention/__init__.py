"""3D Nearby Attention (3DNA), Sec. 3.2, Eqs. (6)-(11), and the sparse masks of Fig. 3.

One semantics, several backends::

    out = nearby_attention(q, k, v, q_shape, kv_shape, extent, causal=False,
                           global_kv=None, backend="auto")

* ``reference`` -- dense scores with the nearby mask (ground truth, O(N^2)).
* ``torch``     -- query tiles against contiguous key slices with batched SDPA,
  O(N * window); the default for CPU tensors.
* ``triton``    -- fused forward/backward kernels with online softmax that visit only the
  blocks of the tile plan (:mod:`.tiles`): the tokens each tile's windows reach.
* ``flex``      -- PyTorch's FlexAttention with a block mask from the nearby mask (compiled
  on CUDA; on CPU forward only), the baseline a user would otherwise pick.

``auto`` uses ``torch`` for CPU tensors and, for CUDA tensors, the backend the GPU record
measured fastest (:mod:`.gpu_choice`; ``triton`` until a record exists).

``masked_attention`` runs full / block / axial / nearby attention for the ablations.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from .masks import (
    MASK_KINDS,
    attention_mask,
    axial_mask,
    block_mask,
    check_causal,
    check_extent,
    check_shape,
    count_pairs,
    full_mask,
    grid_coordinates,
    nearby_mask,
    project_coordinates,
    resolve_extent,
)
from .reference import reference_attention, reference_nearby_attention
from .torch_masked import torch_masked_attention
from .gpu_choice import measured_choice
from .torch_nearby import plan_nearby, torch_nearby_attention

BACKENDS = ("auto", "reference", "torch", "triton", "flex")

__all__ = [
    "BACKENDS", "MASK_KINDS", "nearby_attention", "masked_attention", "count_pairs",
    "attention_mask", "nearby_mask", "full_mask", "block_mask", "axial_mask",
    "project_coordinates", "grid_coordinates", "resolve_extent", "reference_attention",
    "reference_nearby_attention", "torch_nearby_attention", "torch_masked_attention",
    "plan_nearby", "flex_nearby_attention", "measured_choice",
    "triton_nearby_attention", "validate_attention_args", "run_nearby_attention",
]


def _check_tensor(name: str, x, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {what}, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have rank 4 {what}, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def validate_attention_args(q, k, v, q_shape, kv_shape, extent=None, causal=False,
                            global_kv=None):
    """Check the arguments of :func:`nearby_attention`; return normalised shapes/extent.

    Raises ``ValueError`` naming the argument and what it allows.
    """
    _check_tensor("q", q, "(B, H, Nq, D)")
    _check_tensor("k", k, "(B, H, Nk, D)")
    _check_tensor("v", v, "(B, H, Nk, D)")
    q_shape = check_shape("q_shape", q_shape)
    kv_shape = check_shape("kv_shape", kv_shape)
    B, H, n_q, D = q.shape
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape (B, H, Nk, D), got k {tuple(k.shape)} "
                         f"and v {tuple(v.shape)}")
    if (k.shape[0], k.shape[1], k.shape[3]) != (B, H, D):
        raise ValueError(f"k and v must match q in batch B, heads H and head dim D: q is "
                         f"{tuple(q.shape)} (B, H, Nq, D), k is {tuple(k.shape)}")
    if n_q != math.prod(q_shape):
        raise ValueError(f"q has Nq={n_q} tokens but q_shape={q_shape} holds "
                         f"{math.prod(q_shape)}: Nq must equal s*h*w of q_shape")
    if k.shape[2] != math.prod(kv_shape):
        raise ValueError(f"k has Nk={k.shape[2]} tokens but kv_shape={kv_shape} holds "
                         f"{math.prod(kv_shape)}: Nk must equal s*h*w of kv_shape")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k and v must be on one device, got {q.device}, {k.device}, "
                         f"{v.device}")
    if extent is not None:
        extent = check_extent(extent)
    check_causal(causal, q_shape, kv_shape)
    if global_kv is not None:
        if not isinstance(global_kv, (tuple, list)) or len(global_kv) != 2:
            raise ValueError("global_kv must be None or a pair (k_global, v_global) of tensors "
                             f"of shape (B, H, G, D), got {type(global_kv).__name__}")
        kg, vg = global_kv
        _check_tensor("global_kv[0]", kg, "(B, H, G, D)")
        _check_tensor("global_kv[1]", vg, "(B, H, G, D)")
        if kg.shape != vg.shape or (kg.shape[0], kg.shape[1], kg.shape[3]) != (B, H, D):
            raise ValueError(f"global_kv tensors must both have shape (B={B}, H={H}, G, D={D}), "
                             f"got {tuple(kg.shape)} and {tuple(vg.shape)}")
        if kg.dtype != q.dtype or kg.device != q.device:
            raise ValueError("global_kv must have q's dtype and device, got "
                             f"{kg.dtype} on {kg.device}")
    return q_shape, kv_shape, extent


def _triton():
    from . import triton_nearby
    return triton_nearby


def triton_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal=False, global_kv=None,
                            **block_sizes):
    """The fused Triton kernels (imported lazily, so the package works without Triton)."""
    return _triton().triton_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal,
                                             global_kv, **block_sizes)


def flex_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal=False, global_kv=None,
                          **options):
    """FlexAttention with the nearby block mask (imported lazily, like the Triton kernels)."""
    from .flex_nearby import flex_nearby_attention as flex
    return flex(q, k, v, q_shape, kv_shape, extent, causal, global_kv, **options)


def nearby_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_shape, kv_shape, extent,
                     causal: bool = False,
                     global_kv: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                     backend: str = "auto") -> torch.Tensor:
    """3D Nearby Attention, Eqs. (6)-(11): each query attends to its nearby keys.

    q: (B, H, Nq, D) on the grid ``q_shape = (s, h, w)``; k, v: (B, H, Nk, D) on
    ``kv_shape = (s', h', w')``; raster order is time-major. Query (k, i, j) sees the keys
    within ``extent = (e_s, e_h, e_w)`` of (floor(k s'/s), floor(i h'/h), floor(j w'/w)),
    ``None`` meaning the whole axis; windows are truncated at the borders. ``causal`` (only
    for ``q_shape == kv_shape``) also hides keys after the query in raster order.
    ``global_kv = (kg, vg)`` of shape (B, H, G, D) adds keys every query sees.
    Scores are scaled by 1/sqrt(D). ``backend``: one of :data:`BACKENDS`; ``auto`` uses
    ``torch`` for CPU tensors and the measured choice for CUDA tensors (see
    :func:`measured_choice`). Returns (B, H, Nq, D).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if extent is None:
        raise ValueError("extent must be (e_s, e_h, e_w), each a non-negative integer or None "
                         "(= the whole axis), got None")
    q_shape, kv_shape, extent = validate_attention_args(q, k, v, q_shape, kv_shape, extent,
                                                        causal, global_kv)
    return run_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal,
                                None if global_kv is None else tuple(global_kv), backend)


def run_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal=False, global_kv=None,
                         backend: str = "auto") -> torch.Tensor:
    """:func:`nearby_attention` without its argument checks: for callers whose shapes are
    right by construction (the model's layers, which check their inputs once per forward)."""
    if backend == "auto":
        backend = measured_choice()["backend"] if q.is_cuda else "torch"
    if backend == "reference":
        return reference_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal, global_kv)
    if backend == "torch":
        return torch_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal, global_kv)
    if backend == "flex":
        return flex_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal, global_kv)
    return triton_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal, global_kv)


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_kind: str, q_shape,
                     kv_shape, *, extent=None, block_size=None, causal: bool = False,
                     global_kv: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
    """Attention restricted by one of the sparse patterns of Fig. 3, through fused SDPA.

    ``mask_kind`` in :data:`MASK_KINDS`: ``full``, ``block`` (needs ``block_size``),
    ``axial``, ``nearby`` (needs ``extent``). Used by the ablations (Tables 1 and 6), which
    compare the patterns at equal semantics: each runs as one SDPA call with its mask (see
    :mod:`.torch_masked`), so a row costs what dense attention with that pattern costs; for
    fast 3DNA (only the window's keys visited) use :func:`nearby_attention`.
    """
    if mask_kind not in MASK_KINDS:
        raise ValueError(f"mask_kind must be one of {MASK_KINDS}, got {mask_kind!r}")
    q_shape, kv_shape, extent = validate_attention_args(q, k, v, q_shape, kv_shape, extent,
                                                        causal, global_kv)
    if block_size is not None:
        block_size = check_shape("block_size", block_size)
    return torch_masked_attention(q, k, v, mask_kind, q_shape, kv_shape, extent, block_size,
                                  causal, None if global_kv is None else tuple(global_kv))
