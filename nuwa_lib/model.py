"""NÜWA: the 3D encoder-decoder over token grids (Sec. 3.3, Eqs. 12-15).

Every input and output is a grid of discrete tokens, written ``(s, h, w)`` (frames, rows,
columns; raster order time-major, as in :mod:`nuwa_lib.attention.masks`):

* text of L BPE tokens is the grid (L, 1, 1) (the paper's 1 x 1 x L), and the word "None"
  is text (V2V's constant condition, Eq. 16);
* an image is (1, h, w) tokens of the visual VQ-GAN, a video (s, h, w): frames are coded
  independently with the same codebook (Sec. 3.1);
* a sketch (segmentation map) is (1, h, w), a sketch video (s, h, w), tokens of VQ-GAN-Seg.

The model, top to bottom:

1. **Embeddings + positions**, Eqs. (12)-(13): a token embedding per vocabulary plus three
   learnable positional vocabularies (time, height, width), one set for the condition C and
   one for the target Y.
2. **Encoder**, Eq. (14): L pre-norm layers of 3DNA self-attention over C and an FFN.
3. **Decoder**, Eq. (15): L pre-norm layers of *causal* 3DNA self-attention over the
   generated tokens, 3DNA cross-attention from Y to the encoder output, and an FFN. The
   decoder input is the target shifted right by one behind a learned ``<bos>``: slot t holds
   ``<bos>`` (t = 0) or the embedding of token t-1, plus the positional embedding of slot t.
   Causal attention sees slots <= t, so the logits at t depend only on tokens < t.
4. **Logits** over the visual codebook at every target slot (the cross-entropy of Eq. 16).

Attention extents belong to the grid being attended to (the keys): text ``(None, 0, 0)``
(the whole text, the paper's (1, 1, inf)), images and image sketches ``(1, 3, 3)``, videos
and video sketches ``(3, 3, 3)`` (Sec. 4.1), in (e_s, e_h, e_w) order; smaller profiles scale
them to their smaller grids. ``encoder_attention`` / ``decoder_attention`` choose 3DNA
(``nearby``, via :func:`nuwa_lib.attention.nearby_attention`) or the ablations ``full`` and
``axial`` (Table 6, via :func:`nuwa_lib.attention.masked_attention`); the decoder's choice
applies to its self- and cross-attention.

Incremental decoding (for ``sampling.py``): :meth:`Nuwa.start` encodes the condition once and
projects it to every decoder layer's cross-attention keys and values; :meth:`Nuwa.step` then
produces one target slot at a time, attending only to the cached keys in that slot's causal
window (precomputed from the same masks), so a step costs O(window), not O(sequence).
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, replace
from typing import Any, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from nuwa_lib.attention import attention_mask, masked_attention, nearby_attention
from nuwa_lib.attention.masks import check_extent, check_shape

Shape3 = Tuple[int, int, int]
Extent3 = Tuple[Optional[int], Optional[int], Optional[int]]

ATTENTION_KINDS = ("nearby", "full", "axial")
CONDITION_KINDS = ("text", "sketch")   # the word "None" is text
MODALITIES = ("text", "image", "video")


def exists(x) -> bool:
    return x is not None


def modality_of(kind: str, grid: Shape3) -> str:
    """Which extent a grid gets: text, or image (one frame) / video (several frames)."""
    return "text" if kind == "text" else ("image" if grid[0] == 1 else "video")


# --------------------------------------------------------------------------- config
def _positive_int(name: str, value) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"model.{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class NuwaConfig:
    """Sizes of the model. ``from_profile`` reads the profile's ``model:`` section and the
    text vocabulary / length from its ``text:`` section."""
    dim: int = 64                      # d, the token width (1280 in the paper)
    heads: int = 4                     # attention heads (dim must divide by heads)
    encoder_layers: int = 1            # L of Eq. (14)
    decoder_layers: int = 1            # L of Eq. (15)
    ffn_mult: float = 4                # FFN hidden width = ffn_mult * dim (not given in the paper)
    dropout: float = 0.0               # on every residual branch
    text_vocab: int = 512              # BPE vocabulary bound (text.vocab_size)
    text_length: int = 32              # text tokens per caption (text.length; 77 in the paper)
    codebook_size: int = 256           # visual VQ-GAN codes, shared by images and video frames
    sketch_codebook_size: int = 256    # VQ-GAN-Seg codes
    target_tokens: Shape3 = (8, 8, 8)  # largest target grid (frames, h, w); images are (1, h, w)
    sketch_tokens: Shape3 = (8, 8, 8)  # largest sketch grid (frames, h, w)
    text_extent: Extent3 = (None, 0, 0)
    image_extent: Extent3 = (1, 3, 3)  # (e_s, e_h, e_w), images and image sketches
    video_extent: Extent3 = (3, 3, 3)  # videos and video sketches
    encoder_attention: str = "nearby"  # one of ATTENTION_KINDS
    decoder_attention: str = "nearby"
    tie_embeddings: bool = False       # logits through the visual embedding matrix

    def __post_init__(self):
        for name in ("dim", "heads", "encoder_layers", "decoder_layers", "text_vocab",
                     "text_length", "codebook_size", "sketch_codebook_size"):
            _positive_int(name, getattr(self, name))
        if self.dim % self.heads:
            raise ValueError(f"model.dim={self.dim} must be divisible by model.heads={self.heads}")
        if not isinstance(self.ffn_mult, numbers.Real) or round(self.ffn_mult * self.dim) < 1:
            raise ValueError(f"model.ffn_mult must be a positive number, got {self.ffn_mult!r}")
        if not isinstance(self.dropout, numbers.Real) or not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout!r}")
        for name in ("target_tokens", "sketch_tokens"):
            object.__setattr__(self, name, check_shape(f"model.{name}", getattr(self, name)))
        for m in MODALITIES:
            name = f"{m}_extent"
            object.__setattr__(self, name, check_extent(getattr(self, name), f"model.extents.{m}"))
        for name in ("encoder_attention", "decoder_attention"):
            if getattr(self, name) not in ATTENTION_KINDS:
                raise ValueError(f"model.{name} must be one of {ATTENTION_KINDS}, got "
                                 f"{getattr(self, name)!r}")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"model.tie_embeddings must be true or false, got "
                             f"{self.tie_embeddings!r}")

    @classmethod
    def from_profile(cls, cfg: Mapping[str, Any], **overrides) -> "NuwaConfig":
        """The ``model:`` section (``extents: {text, image, video}``) plus ``text.vocab_size``
        and ``text.length``; ``overrides`` replace fields (e.g. ``decoder_attention="full"``
        for an ablation row)."""
        from nuwa_lib.text import TextConfig

        section = dict(cfg.get("model") or {})
        extents = section.pop("extents", None) or {}
        allowed = {f for f in cls.__dataclass_fields__ if not f.endswith("_extent")} \
            - {"text_vocab", "text_length"}
        unknown = set(section) - allowed
        if unknown:
            raise ValueError(f"model: unknown key(s) {sorted(unknown)}; allowed: "
                             f"{', '.join(sorted(allowed | {'extents'}))}")
        bad = set(extents) - set(MODALITIES)
        if bad:
            raise ValueError(f"model.extents: unknown modality {sorted(bad)}; allowed: "
                             f"{', '.join(MODALITIES)}")
        text = TextConfig.from_profile(cfg)
        values = {**section, **{f"{m}_extent": tuple(e) for m, e in extents.items()},
                  "text_vocab": text.vocab_size, "text_length": text.length}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**{**values, **overrides})

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def ffn_dim(self) -> int:
        return int(round(self.ffn_mult * self.dim))

    @property
    def condition_positions(self) -> Shape3:
        """Sizes of the condition's positional vocabularies (time, height, width), Eq. (13):
        text uses the time axis (L, 1, 1), sketches all three."""
        s, h, w = self.sketch_tokens
        return (max(self.text_length, s), h, w)

    def extent(self, modality: str) -> Extent3:
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        return getattr(self, f"{modality}_extent")


# ------------------------------------------------------------------------ condition
@dataclass(frozen=True)
class Condition:
    """What the encoder reads: ``kind`` ("text" or "sketch"), ``tokens`` (B, N) int64 in
    raster order of ``grid`` (text: (L, 1, 1); sketch image (1, h, w); sketch video (s, h, w))
    and ``keep`` (B, N) bool, False on padding (None: every token is real)."""
    kind: str
    tokens: torch.Tensor
    grid: Shape3
    keep: Optional[torch.Tensor] = None

    def __post_init__(self):
        if self.kind not in CONDITION_KINDS:
            raise ValueError(f"condition kind must be one of {CONDITION_KINDS} (the word "
                             f"'None' is text), got {self.kind!r}")
        grid = check_shape("condition grid", self.grid)
        object.__setattr__(self, "grid", grid)
        if self.kind == "text" and grid[1:] != (1, 1):
            raise ValueError(f"a text condition lives on the grid (L, 1, 1), got {grid}")
        n = math.prod(grid)
        if not isinstance(self.tokens, torch.Tensor) or self.tokens.dim() != 2 \
                or self.tokens.shape[1] != n:
            raise ValueError(f"condition tokens must be a tensor of shape (B, {n}) for the grid "
                             f"{grid}, got {_describe(self.tokens)}")
        if self.tokens.is_floating_point() or self.tokens.dtype == torch.bool:
            raise ValueError(f"condition tokens must be integer ids, got {self.tokens.dtype}")
        if exists(self.keep):
            if not isinstance(self.keep, torch.Tensor) or self.keep.shape != self.tokens.shape \
                    or self.keep.dtype != torch.bool:
                raise ValueError(f"condition keep must be a bool tensor of the tokens' shape "
                                 f"{tuple(self.tokens.shape)}, got {_describe(self.keep)}")
            if self.keep.device.type != "meta" and not bool(self.keep.any(1).all()):
                empty = (~self.keep.any(1)).nonzero()[:, 0].tolist()
                raise ValueError(f"condition keep must keep at least one token per sample; "
                                 f"samples {empty} keep none")

    @classmethod
    def from_text(cls, ids: torch.Tensor, keep: Optional[torch.Tensor] = None) -> "Condition":
        """Text (or the word "None") from :meth:`TextTokenizer.encode`: ids (B, L)."""
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            raise ValueError(f"text ids must have shape (B, L), got {_describe(ids)}")
        return cls("text", ids, (ids.shape[1], 1, 1), keep)

    @classmethod
    def from_sketch(cls, tokens: torch.Tensor) -> "Condition":
        """VQ-GAN-Seg tokens of a sketch image (B, 1, h, w) or sketch video (B, s, h, w)."""
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 4:
            raise ValueError(f"sketch tokens must have shape (B, s, h, w) (s = 1 for an "
                             f"image), got {_describe(tokens)}")
        return cls("sketch", rearrange(tokens, "b s h w -> b (s h w)"), tuple(tokens.shape[1:]))

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def modality(self) -> str:
        return modality_of(self.kind, self.grid)

    def repeat(self, n: int) -> "Condition":
        """Each sample n times in a row (to draw n candidates per condition and re-rank)."""
        keep = self.keep.repeat_interleave(n, 0) if exists(self.keep) else None
        return replace(self, tokens=self.tokens.repeat_interleave(n, 0), keep=keep)

    def to(self, device) -> "Condition":
        return replace(self, tokens=self.tokens.to(device),
                       keep=self.keep.to(device) if exists(self.keep) else None)


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} of shape {tuple(x.shape)}"
    return type(x).__name__


def _check_condition(cond) -> Condition:
    if not isinstance(cond, Condition):
        raise ValueError(f"cond must be a Condition (Condition.from_text / from_sketch), "
                         f"got {type(cond).__name__}")
    return cond


def _padding(cond: Condition) -> Optional[torch.Tensor]:
    """The condition's keep mask, or None when nothing is padded (the fast 3DNA path)."""
    return cond.keep if exists(cond.keep) and not bool(cond.keep.all()) else None


def _check_ids(name: str, ids: torch.Tensor, vocab: int) -> torch.Tensor:
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"{name} must be integer token ids, got {ids.dtype}")
    if ids.device.type != "meta" and ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab:
            raise ValueError(f"{name} must lie in [0, {vocab}), got values in [{lo}, {hi}]")
    return ids.long()


def _check_grid(name: str, grid: Shape3, bound: Shape3) -> Shape3:
    grid = check_shape(name, grid)
    if any(n > b for n, b in zip(grid, bound)):
        raise ValueError(f"{name} {grid} exceeds the model's positional vocabularies {bound} "
                         f"(frames, h, w)")
    return grid


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

    Without padding: 3DNA through :func:`nearby_attention` (backend ``auto``), ``full`` and
    ``axial`` through :func:`masked_attention`. With padding (text conditions, at most a few
    dozen keys) the kind's mask and the padding mask are combined densely.
    """
    if not exists(key_keep):
        if kind == "nearby":
            return nearby_attention(q, k, v, q_shape, kv_shape, extent, causal)
        return masked_attention(q, k, v, kind, q_shape, kv_shape, causal=causal)
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


# ------------------------------------------------------------------------------ model
class Nuwa(nn.Module):
    """The NÜWA encoder-decoder. ``forward(cond, target)`` gives teacher-forced logits;
    ``start`` / ``step`` decode one slot at a time with a KV cache."""

    def __init__(self, config: NuwaConfig):
        super().__init__()
        self.config = c = config
        self.text_embedding = nn.Embedding(c.text_vocab, c.dim)
        self.sketch_embedding = nn.Embedding(c.sketch_codebook_size, c.dim)
        self.visual_embedding = nn.Embedding(c.codebook_size, c.dim)
        self.condition_positions = AxialPositions(c.condition_positions, c.dim)  # Eq. (13)
        self.target_positions = AxialPositions(c.target_tokens, c.dim)           # Eq. (12)
        self.bos = nn.Parameter(torch.zeros(c.dim))                              # <bos>, Eq. (15)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.encoder_layers))
        self.encoder_norm = nn.LayerNorm(c.dim)
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.decoder_layers))
        self.decoder_norm = nn.LayerNorm(c.dim)
        self.to_logits = None if c.tie_embeddings else nn.Linear(c.dim, c.codebook_size,
                                                                 bias=False)
        self.apply(_init_weights)
        nn.init.normal_(self.bos, std=0.02)

    # -- inputs ---------------------------------------------------------------------
    def _condition(self, cond: Condition) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Embedded condition C + positions (Eq. 13), and its padding mask (None if none)."""
        c = self.config
        if cond.kind == "text":
            _check_grid("text condition grid", cond.grid, (c.text_length, 1, 1))
            tokens = _check_ids("text token ids", cond.tokens, c.text_vocab)
            x = self.text_embedding(tokens)
        else:
            _check_grid("sketch condition grid", cond.grid, c.sketch_tokens)
            tokens = _check_ids("sketch token ids", cond.tokens, c.sketch_codebook_size)
            x = self.sketch_embedding(tokens)
        return x + self.condition_positions(cond.grid), _padding(cond)

    def _target(self, target_tokens: torch.Tensor, batch: int) -> Tuple[torch.Tensor, Shape3]:
        if not isinstance(target_tokens, torch.Tensor) or target_tokens.dim() != 4:
            raise ValueError(f"target_tokens must have shape (B, s, h, w) (s = 1 for an image), "
                             f"got {_describe(target_tokens)}")
        if target_tokens.shape[0] != batch:
            raise ValueError(f"target_tokens has batch {target_tokens.shape[0]} but the "
                             f"condition has {batch}")
        grid = _check_grid("target grid", tuple(target_tokens.shape[1:]), self.config.target_tokens)
        ids = _check_ids("target token ids", target_tokens, self.config.codebook_size)
        return rearrange(ids, "b s h w -> b (s h w)"), grid

    def _extents(self, cond: Condition, grid: Shape3) -> Tuple[Extent3, Extent3]:
        """(condition extent, target extent): each attention uses its keys' modality."""
        c = self.config
        return c.extent(cond.modality), c.extent(modality_of("visual", grid))

    def _logits(self, y: torch.Tensor) -> torch.Tensor:
        y = self.decoder_norm(y)
        if exists(self.to_logits):
            return self.to_logits(y)
        return F.linear(y, self.visual_embedding.weight)  # tied: logits = y B^T

    # -- teacher forcing --------------------------------------------------------------
    def encode(self, cond: Condition) -> torch.Tensor:
        """The encoder output C^(L) (B, Nc, dim), Eq. (14)."""
        x, keep = self._condition(_check_condition(cond))
        extent = self.config.extent(cond.modality)
        for layer in self.encoder:
            x = layer(x, cond.grid, extent, keep)
        return self.encoder_norm(x)

    def forward(self, cond: Condition, target_tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, N, codebook_size) for every target slot, given the tokens before it.

        target_tokens: (B, s, h, w) visual token ids (an image has s = 1); slot t of the
        output predicts token t in raster order (time-major)."""
        ids, grid = self._target(target_tokens, _check_condition(cond).batch_size)
        memory = self.encode(cond)
        cond_keep = _padding(cond)
        cross_extent, self_extent = self._extents(cond, grid)
        bos = self.bos.expand(ids.shape[0], 1, -1)
        y = torch.cat([bos, self.visual_embedding(ids[:, :-1])], dim=1)  # shift right
        y = y + self.target_positions(grid)                               # Eq. (12)
        for layer in self.decoder:
            y = layer(y, memory, grid, cond.grid, self_extent, cross_extent, cond_keep)
        return self._logits(y)

    def loss(self, cond: Condition, target_tokens: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the target tokens, one term of Eq. (16)."""
        logits = self(cond, target_tokens)
        return F.cross_entropy(rearrange(logits, "b n k -> (b n) k"),
                               target_tokens.reshape(-1).long())

    # -- incremental decoding ---------------------------------------------------------
    @torch.no_grad()
    def start(self, cond: Condition, target_grid) -> DecodeCache:
        """Encode ``cond`` once and set up a cache for a target of ``target_grid`` (s, h, w)."""
        c = self.config
        grid = _check_grid("target grid", target_grid, c.target_tokens)
        memory = self.encode(cond)
        cond_keep = _padding(cond)
        cross_extent, self_extent = self._extents(cond, grid)
        B, n, dev = memory.shape[0], math.prod(grid), str(memory.device)
        cross = [layer.cross_attn.keys_values(memory) for layer in self.decoder]
        empty = memory.new_zeros(B, c.heads, n, c.head_dim)
        return DecodeCache(
            grid=grid, position=0, positions=self.target_positions(grid),
            self_k=[empty.clone() for _ in self.decoder], self_v=[empty.clone() for _ in self.decoder],
            cross_k=[k for k, _ in cross], cross_v=[v for _, v in cross], cond_keep=cond_keep,
            self_windows=decode_windows(c.decoder_attention, grid, grid, self_extent, True, dev),
            cross_windows=decode_windows(c.decoder_attention, grid, cond.grid, cross_extent,
                                         False, dev))

    @torch.no_grad()
    def step(self, cache: DecodeCache, prev_tokens: Optional[torch.Tensor] = None
             ) -> torch.Tensor:
        """Logits (B, codebook_size) of slot ``cache.position``, then advance by one.

        ``prev_tokens`` (B,) is the token chosen for the previous slot (sampled, or given
        when priming); the first step takes None (its input is ``<bos>``)."""
        t = cache.position
        if cache.done:
            raise ValueError(f"the target grid {cache.grid} is complete ({cache.length} slots)")
        B = cache.batch_size
        if t == 0:
            if exists(prev_tokens):
                raise ValueError("the first step reads <bos>: call step(cache) without tokens")
            x = self.bos.expand(B, 1, -1)
        else:
            if not isinstance(prev_tokens, torch.Tensor) or tuple(prev_tokens.shape) != (B,):
                raise ValueError(f"prev_tokens must be the ({B},) token ids chosen for slot "
                                 f"{t - 1}, got {_describe(prev_tokens)}")
            ids = _check_ids("prev_tokens", prev_tokens, self.config.codebook_size)
            x = self.visual_embedding(ids)[:, None]
        x = x + cache.positions[t]
        for i, layer in enumerate(self.decoder):
            x = layer.step(x, t, cache, i)
        cache.position += 1
        return self._logits(x)[:, 0]


def _init_weights(module: nn.Module) -> None:
    """GPT-style: N(0, 0.02) for linear and embedding weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and exists(module.bias):
        nn.init.zeros_(module.bias)


# ------------------------------------------------------------------- parameter counts
def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(config: NuwaConfig) -> Nuwa:
    """The model built on the meta device: shapes and counts without memory (the paper's
    configuration would need 4-5 GB of float32 weights)."""
    with torch.device("meta"):
        return Nuwa(config)


def _component_counts(c: NuwaConfig) -> List[Tuple[str, int, str]]:
    d, f = c.dim, c.ffn_dim
    attn = 4 * (d * d + d)              # W_Q, W_K, W_V, W_O with biases
    ffn = d * f + f + f * d + d
    norm = 2 * d
    enc = attn + ffn + 2 * norm
    dec = 2 * attn + ffn + 3 * norm
    cs, ch, cw = c.condition_positions
    ts, th, tw = c.target_tokens
    return [
        ("text embedding", c.text_vocab * d, f"{c.text_vocab:,} BPE tokens x d"),
        ("visual embedding", c.codebook_size * d, f"{c.codebook_size:,} VQ-GAN codes x d"),
        ("sketch embedding", c.sketch_codebook_size * d,
         f"{c.sketch_codebook_size:,} VQ-GAN-Seg codes x d"),
        ("positional vocabularies + <bos>", (cs + ch + cw + ts + th + tw + 1) * d,
         f"condition ({cs}+{ch}+{cw}) + target ({ts}+{th}+{tw}) + 1, x d (Eqs. 12-13)"),
        ("encoder layers", c.encoder_layers * enc,
         f"{c.encoder_layers} x (3DNA 4d^2+4d + FFN {c.ffn_dim} wide + 2 LayerNorms) (Eq. 14)"),
        ("decoder layers", c.decoder_layers * dec,
         f"{c.decoder_layers} x (2 x 3DNA + FFN + 3 LayerNorms) (Eq. 15)"),
        ("final LayerNorms", 2 * norm, "encoder and decoder outputs"),
        ("output projection", 0 if c.tie_embeddings else c.codebook_size * d,
         "tied to the visual embedding" if c.tie_embeddings else "d x codes, untied"),
    ]


def count_parameters(config: NuwaConfig) -> int:
    """The number of parameters of ``Nuwa(config)``, from the formulas alone."""
    return sum(n for _, n, _ in _component_counts(config))


def parameter_table(config: NuwaConfig, reported: Optional[int] = None) -> List[dict]:
    """Rows (component, parameters, share, formula) for a notebook, plus our open choices
    (FFN width, text vocabulary, tied embeddings, ...) and, given ``reported`` (the paper's
    870M), that number beside our total. Nothing here is tuned to match it."""
    parts = _component_counts(config)
    total = sum(n for _, n, _ in parts)
    rows = [{"component": name, "parameters": n, "share": n / total, "formula": formula}
            for name, n, formula in parts]
    rows.append({"component": "total", "parameters": total, "share": 1.0,
                 "formula": f"d={config.dim}, {config.heads} heads, L={config.encoder_layers}"
                            f"+{config.decoder_layers}"})
    if exists(reported):
        rows.append({"component": "paper (reported)", "parameters": int(reported), "share": None,
                     "formula": "Sec. 4.1: 'a total number of 870M parameters'"})
    return rows


def open_choices(config: NuwaConfig) -> List[dict]:
    """What the paper leaves open and what this configuration chose (DESIGN §6)."""
    return [
        {"choice": "FFN width", "ours": f"{config.ffn_mult:g} x d = {config.ffn_dim:,}",
         "paper": "not given"},
        {"choice": "text vocabulary", "ours": f"{config.text_vocab:,} BPE tokens",
         "paper": "lowercased BPE, size not given"},
        {"choice": "output embedding", "ours": "tied" if config.tie_embeddings else "untied",
         "paper": "not given"},
        {"choice": "sketch codebook", "ours": f"{config.sketch_codebook_size:,} codes",
         "paper": "not given"},
        {"choice": "attention heads", "ours": f"{config.heads} of {config.head_dim}",
         "paper": "not given"},
        {"choice": "biases, norms", "ours": "biases on every projection, pre-norm LayerNorm",
         "paper": "not given"},
    ]
