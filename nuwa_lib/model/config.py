"""The model's configuration (:class:`NuwaConfig`, Sec. 3.2-3.3) and what it reads: a
:class:`Condition` (text or sketch tokens, Eq. 12) with the checks of both.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Tuple

import torch
from einops import rearrange

from ..attention.masks import check_extent, check_shape

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
        from ..data.text import TextConfig

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
            if self.keep.device.type == "cpu" and not bool(self.keep.any(1).all()):
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
    """The condition's keep mask, or None when nothing is padded (the fast 3DNA path). Only
    a CPU mask is looked into: reading a GPU tensor's values would wait for the GPU on every
    forward, so there a given mask is used as it is (correct, if slower when it keeps all)."""
    if not exists(cond.keep):
        return None
    if cond.keep.device.type == "cpu" and bool(cond.keep.all()):
        return None
    return cond.keep


def _check_ids(name: str, ids: torch.Tensor, vocab: int) -> torch.Tensor:
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"{name} must be integer token ids, got {ids.dtype}")
    if ids.device.type == "cpu" and ids.numel():     # (on a GPU this would sync each call;
        lo, hi = int(ids.min()), int(ids.max())      #  an id out of range fails the lookup)
        if lo < 0 or hi >= vocab:
            raise ValueError(f"{name} must lie in [0, {vocab}), got values in [{lo}, {hi}]")
    return ids.long()


def _check_grid(name: str, grid: Shape3, bound: Shape3) -> Shape3:
    grid = check_shape(name, grid)
    if any(n > b for n, b in zip(grid, bound)):
        raise ValueError(f"{name} {grid} exceeds the model's positional vocabularies {bound} "
                         f"(frames, h, w)")
    return grid
