"""Dense masked attention: the ground truth every fast backend is tested against.

Builds all ``Nq x Nk`` scores, so it costs O(N^2) memory; use it for tests, small grids and
the full/block/axial ablations (Fig. 3, Tables 1 and 6).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from einops import rearrange

from .masks import nearby_mask


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                        global_kv: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                        ) -> torch.Tensor:
    """softmax(q k^T / sqrt(D) restricted to ``mask``) v, Eq. (11).

    q: (B, H, Nq, D); k, v: (B, H, Nk, D); mask: (Nq, Nk) bool, True = may attend.
    global_kv: optional (kg, vg) of shape (B, H, G, D), keys every query sees.
    Computed in float32 and returned in q's dtype. A query with no visible key gets 0.
    """
    dtype = q.dtype
    q, k, v = q.float(), k.float(), v.float()
    mask = mask.to(q.device)
    if global_kv is not None:
        kg, vg = global_kv
        k = torch.cat([kg.float(), k], dim=2)
        v = torch.cat([vg.float(), v], dim=2)
        mask = torch.cat([mask.new_ones(mask.shape[0], kg.shape[2]), mask], dim=1)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    # Rows without any visible key would be all -inf (NaN after softmax): give them 0.
    empty = ~mask.any(dim=1)
    if bool(empty.any()):
        scores = scores.masked_fill(rearrange(empty, "q -> q 1"), 0.0)
    attn = torch.softmax(scores, dim=-1)
    if bool(empty.any()):
        attn = attn.masked_fill(rearrange(empty, "q -> q 1"), 0.0)
    return torch.einsum("bhqk,bhkd->bhqd", attn, v).to(dtype)


def reference_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal=False, global_kv=None):
    """3DNA with the dense nearby mask of Eq. (7): the ``reference`` backend."""
    mask = nearby_mask(q_shape, kv_shape, extent, causal, q.device)
    return reference_attention(q, k, v, mask, global_kv)
