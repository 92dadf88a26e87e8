"""The layers of NUWA: the attention of Eqs. 6-11 (nearby, full or axial), the encoder and
decoder layers of Eqs. 12-14, the axial positions, and the decoding cache.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..attention import attention_mask, run_nearby_attention, torch_masked_attention
from .config import Extent3, NuwaConfig, Shape3, exists


# ------------------------------------------------------------------------ attention
def _windowed_softmax(q, k, v, mask=None) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v over the keys ``mask`` allows (None: all), Eq. (11); a
    query with no visible key gets 0 (as the reference backend). mask broadcasts to
    (B, H, Nq, Nk)."""
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
    if not exists(mask):
        return torch.einsum("bhqk,bhkd->bhqd", scores.softmax(-1), v)
    scores = scores.masked_fill(~mask, float("-inf"))
    visible = mask.any(-1, keepdim=True)
    attn = torch.softmax(scores.masked_fill(~visible, 0.0), dim=-1) * visible
    return torch.einsum("bhqk,bhkd->bhqd", attn, v)


def attend(q, k, v, kind: str, q_shape: Shape3, kv_shape: Shape3, extent: Extent3,
           causal: bool = False, key_keep: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Attention of one kind between grids; ``key_keep`` (B, Nk) hides padded keys (None:
    nothing is padded).

    Without padding: 3DNA through the kernels of :func:`~nuwa_lib.attention.nearby_attention`
    (backend ``auto``), ``full`` and ``axial`` through fused SDPA with their mask (as
    :func:`~nuwa_lib.attention.masked_attention`); the model checked its inputs, so these
    skip the attention functions' own checks. With padding (text conditions, at most a few
    dozen keys) the kind's mask and the padding mask are combined densely.
    """
    if not exists(key_keep):
        if kind == "nearby":
            return run_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal)
        return torch_masked_attention(q, k, v, kind, q_shape, kv_shape, None, None, causal, None)
    mask = attention_mask(kind, q_shape, kv_shape, extent=extent, causal=causal, device=q.device)
    return _windowed_softmax(q, k, v, mask & rearrange(key_keep, "b k -> b 1 1 k"))


class Attention(nn.Module):
    """Multi-head 3DNA(X, C; W), Eqs. (6)-(11): queries from X (Eq. 8), keys and values from
    C (Eqs. 9-10), a softmax inside each query's window (Eq. 11), an output projection."""

    def __init__(self, dim: int, heads: int, kind: str):
        super().__init__()
        self.heads, self.kind = heads, kind
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b n (h d) -> b h n d", h=self.heads)

    def keys_values(self, c: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """K = C W^K, V = C W^V (Eqs. 9-10), heads split: (B, H, N, D) each."""
        return self.split_heads(self.to_k(c)), self.split_heads(self.to_v(c))

    def forward(self, x, c, x_shape, c_shape, extent, causal=False, key_keep=None):
        q = self.split_heads(self.to_q(x))
        k, v = self.keys_values(c)
        out = attend(q, k, v, self.kind, x_shape, c_shape, extent, causal, key_keep)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))

    def step(self, x, k, v, key_keep=None):
        """One query x (B, 1, dim) against its window's cached keys/values (B, H, W, D);
        ``key_keep`` (B, W) hides padded keys. This runs per token and layer while sampling,
        so it uses fused SDPA and plain views (einops costs more than the math here)."""
        B = x.shape[0]
        q = self.to_q(x).view(B, 1, self.heads, -1).transpose(1, 2)      # (B, H, 1, D)
        if not exists(key_keep):      # windows are never empty
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            mask = key_keep[:, None, None, :]                               # (B, 1, 1, W)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            out = torch.where(mask.any(-1, keepdim=True), out, 0.0)   # no visible key: 0
        return self.to_out(out.transpose(1, 2).reshape(B, 1, -1))        # (B, 1, H * D)


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class EncoderLayer(nn.Module):
    """C^(l) = 3DNA(C^(l-1), C^(l-1)), Eq. (14), pre-norm, then a feed-forward network."""

    def __init__(self, config: NuwaConfig):
        super().__init__()
        self.norm_attn = nn.LayerNorm(config.dim)
        self.attn = Attention(config.dim, config.heads, config.encoder_attention)
        self.norm_ffn = nn.LayerNorm(config.dim)
        self.ffn = FeedForward(config.dim, config.ffn_dim)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, c, grid, extent, keep=None):
        h = self.norm_attn(c)
        c = c + self.drop(self.attn(h, h, grid, grid, extent, key_keep=keep))
        return c + self.drop(self.ffn(self.norm_ffn(c)))


class DecoderLayer(nn.Module):
    """Eq. (15): causal 3DNA over the generated tokens Y_{<i,<j,<k}, 3DNA from Y to the
    encoder output C^(L), and a feed-forward network; pre-norm residual blocks."""

    def __init__(self, config: NuwaConfig):
        super().__init__()
        self.norm_self = nn.LayerNorm(config.dim)
        self.self_attn = Attention(config.dim, config.heads, config.decoder_attention)
        self.norm_cross = nn.LayerNorm(config.dim)
        self.cross_attn = Attention(config.dim, config.heads, config.decoder_attention)
        self.norm_ffn = nn.LayerNorm(config.dim)
        self.ffn = FeedForward(config.dim, config.ffn_dim)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, y, memory, grid, cond_grid, self_extent, cross_extent, cond_keep=None):
        h = self.norm_self(y)
        y = y + self.drop(self.self_attn(h, h, grid, grid, self_extent, causal=True))
        y = y + self.drop(self.cross_attn(self.norm_cross(y), memory, grid, cond_grid,
                                          cross_extent, key_keep=cond_keep))
        return y + self.drop(self.ffn(self.norm_ffn(y)))

    def step(self, y, t: int, cache: "DecodeCache", layer: int):
        """Slot t only: its key/value joins the cache, then it attends to its windows."""
        h = self.norm_self(y)
        k_t, v_t = self.self_attn.keys_values(h)
        cache.self_k[layer][:, :, t] = k_t[:, :, 0]
        cache.self_v[layer][:, :, t] = v_t[:, :, 0]
        win = cache.self_windows[t]
        y = y + self.drop(self.self_attn.step(h, cache.self_k[layer][:, :, win],
                                              cache.self_v[layer][:, :, win]))
        win = cache.cross_windows[t]
        k, v, keep = cache.cross_k[layer], cache.cross_v[layer], cache.cond_keep
        if len(win) < k.shape[2]:   # part of the condition (else all of it, e.g. the text)
            k, v = k[:, :, win], v[:, :, win]
            keep = keep[:, win] if exists(keep) else None
        y = y + self.drop(self.cross_attn.step(self.norm_cross(y), k, v, keep))
        return y + self.drop(self.ffn(self.norm_ffn(y)))


class AxialPositions(nn.Module):
    """Three learnable positional vocabularies P^s, P^h, P^w (Eqs. 12-13): the embedding of
    slot (k, i, j) is P^s_k + P^h_i + P^w_j."""

    def __init__(self, sizes: Shape3, dim: int):
        super().__init__()
        self.time, self.height, self.width = (nn.Embedding(n, dim) for n in sizes)

    def forward(self, grid: Shape3) -> torch.Tensor:
        """(s*h*w, dim) in raster order, time-major."""
        s, h, w = grid
        dev = self.time.weight.device
        pos = (rearrange(self.time(torch.arange(s, device=dev)), "s d -> s 1 1 d")
               + rearrange(self.height(torch.arange(h, device=dev)), "h d -> 1 h 1 d")
               + rearrange(self.width(torch.arange(w, device=dev)), "w d -> 1 1 w d"))
        return rearrange(pos, "s h w d -> (s h w) d")


# --------------------------------------------------------------------------- decoding
@functools.lru_cache(maxsize=32)
def decode_windows(kind: str, q_shape: Shape3, kv_shape: Shape3, extent: Extent3,
                   causal: bool, device: str) -> Tuple[torch.Tensor, ...]:
    """Per query slot, the key indices its mask row allows (increasing): the part of the
    KV cache one decoding step reads. Planned once per grids / kind / extent."""
    mask = attention_mask(kind, q_shape, kv_shape, extent=extent, causal=causal)
    cols = mask.nonzero(as_tuple=True)[1]
    return tuple(part.to(device) for part in cols.split(mask.sum(1).tolist()))


@dataclass
class DecodeCache:
    """State of incremental decoding for one batch: the condition encoded once, every
    decoder layer's cross-attention keys/values, and the self-attention keys/values of the
    slots decoded so far. ``position`` is the slot the next :meth:`Nuwa.step` produces."""
    grid: Shape3
    position: int
    positions: torch.Tensor          # (N, dim) target positional embeddings, Eq. (12)
    self_k: List[torch.Tensor]       # per decoder layer (B, H, N, D)
    self_v: List[torch.Tensor]
    cross_k: List[torch.Tensor]      # per decoder layer (B, H, Nc, D)
    cross_v: List[torch.Tensor]
    cond_keep: Optional[torch.Tensor]  # (B, Nc) or None (no padding)
    self_windows: Tuple[torch.Tensor, ...]
    cross_windows: Tuple[torch.Tensor, ...]

    @property
    def length(self) -> int:
        return math.prod(self.grid)

    @property
    def batch_size(self) -> int:
        return self.cross_k[0].shape[0]

    @property
    def done(self) -> bool:
        return self.position >= self.length
