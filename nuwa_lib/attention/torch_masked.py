"""Full / block / axial attention (Fig. 3) through PyTorch's fused SDPA.

The ablations (Tables 1 and 6) compare attention *patterns*; running them through the dense
einsum reference would also compare implementations (it costs about twice what fused SDPA
does). Each pattern's mask is turned once into what SDPA takes fastest, and cached:

* ``full`` without causality: no mask at all (SDPA's unmasked kernel);
* ``full`` causal on one grid: ``is_causal=True`` (raster order is the sequence order);
* everything else: an additive mask (0 visible, -inf hidden) in the inputs' dtype, so SDPA
  does not convert a boolean mask on every forward and backward call.

A query with no visible key gets 0, as in the reference; no pattern of Fig. 3 leaves one
empty (every query sees its own projected position), but a mask that would is detected when
it is built and routed to the reference, so the hot path never checks.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import torch

from .masks import attention_mask
from .reference import reference_attention
from .torch_nearby import _sdpa


class FusedMask(NamedTuple):
    additive: Optional[torch.Tensor]   # (Nq, Nk) 0 / -inf, or None: no mask
    is_causal: bool                    # SDPA's own causal mask instead of ``additive``
    dense_mask: Optional[torch.Tensor]  # bool mask with an empty row: use the reference


@functools.lru_cache(maxsize=64)
def fused_mask(kind: str, q_shape, kv_shape, extent, block_size, causal: bool, device: str,
               dtype: torch.dtype, n_global: int) -> FusedMask:
    """The cheapest SDPA form of one pattern (arguments already validated; cached)."""
    if kind == "full" and n_global == 0:
        return FusedMask(None, bool(causal), None)
    mask = attention_mask(kind, q_shape, kv_shape, extent=extent, block_size=block_size,
                          causal=causal, device=device)
    if n_global:
        mask = torch.cat([mask.new_ones(mask.shape[0], n_global), mask], dim=1)
    if not bool(mask.any(dim=1).all()):
        return FusedMask(None, False, mask)
    if bool(mask.all()):
        return FusedMask(None, False, None)
    additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return FusedMask(additive.masked_fill_(~mask, -math.inf), False, None)


def torch_masked_attention(q, k, v, kind: str, q_shape, kv_shape, extent=None, block_size=None,
                           causal: bool = False, global_kv=None) -> torch.Tensor:
    """Attention restricted to one pattern of Fig. 3 by fused SDPA; q: (B, H, Nq, D), k, v:
    (B, H, Nk, D), global_kv (kg, vg) of shape (B, H, G, D) seen by every query. Arguments
    are assumed validated (use :func:`nuwa_lib.attention.masked_attention`)."""
    n_global = 0 if global_kv is None else global_kv[0].shape[2]
    plan = fused_mask(kind, tuple(q_shape), tuple(kv_shape),
                      None if extent is None else tuple(extent),
                      None if block_size is None else tuple(block_size), bool(causal),
                      str(q.device), q.dtype, n_global)
    if n_global:
        k, v = torch.cat([global_kv[0], k], 2), torch.cat([global_kv[1], v], 2)
    if plan.dense_mask is not None:
        return reference_attention(q, k, v, plan.dense_mask)
    return _sdpa(q, k, v, plan.additive, is_causal=plan.is_causal)
