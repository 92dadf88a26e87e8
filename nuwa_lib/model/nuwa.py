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

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .config import (
    Condition,
    Extent3,
    NuwaConfig,
    Shape3,
    _check_condition,
    _check_grid,
    _check_ids,
    _describe,
    _padding,
    exists,
    modality_of,
)
from .layers import (
    AxialPositions,
    DecodeCache,
    DecoderLayer,
    EncoderLayer,
    decode_windows,
)


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
        return self._encode(cond)[0]

    def _encode(self, cond: Condition) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(C^(L), the condition's padding mask or None): the decoder's cross-attention hides
        the same padded keys as the encoder."""
        x, keep = self._condition(_check_condition(cond))
        extent = self.config.extent(cond.modality)
        for layer in self.encoder:
            x = layer(x, cond.grid, extent, keep)
        return self.encoder_norm(x), keep

    def forward(self, cond: Condition, target_tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, N, codebook_size) for every target slot, given the tokens before it.

        target_tokens: (B, s, h, w) visual token ids (an image has s = 1); slot t of the
        output predicts token t in raster order (time-major)."""
        ids, grid = self._target(target_tokens, _check_condition(cond).batch_size)
        memory, cond_keep = self._encode(cond)
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
        memory, cond_keep = self._encode(cond)
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
