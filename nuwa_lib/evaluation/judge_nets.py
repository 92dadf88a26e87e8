"""The judges' configs and networks: the world classifier (the FID / IS / Acc features), the tiny
CLIP (CLIPSIM), the video network (FID-vid, FVD) and the segmenter (Detected PA).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..data import world
from ..utils.cache import key_hash
from ..utils.tensors import evaluating, to_tensor

# Bump a judge's version when its architecture, loss or training data changes: its old
# cache files then stop matching and it retrains (the others are kept).
JUDGE_VERSIONS = {"classifier": 2, "clip": 1, "video": 2, "segmenter": 1}
JUDGE_NAMES = ("classifier", "clip", "video", "segmenter")
JUDGE_STREAM = 1000     # world seed stream of the judges' scenes (roles use 0..8)
CHECKPOINT_FORMAT = "nuwa-judge"
MAX_CAPTION_WORDS = 24  # longest caption: two objects with a motion change, "in the sky" (22)
IMAGE_HEADS = ("shape", "colour", "size", "position", "background")
VIDEO_HEADS = IMAGE_HEADS + ("motion",)


def _batched(fn, x, batch_size=256):
    """Apply ``fn`` to slices of ``x`` and concatenate the tensors (or dicts of them) it returns."""
    outs = [fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    if isinstance(outs[0], dict):
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    return torch.cat(outs)


VIDEO_PRESENCE = tuple((a, v) for a in ("shape", "colour", "size", "position", "motion")
                       for v in world.ATTRIBUTE_VALUES[a])
SLOT_CLASSES = {a: 1 + len(world.ATTRIBUTE_VALUES[a]) for a in ("shape", "colour", "size")}


# --------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class ClassifierConfig:
    """The image classifier (FID, FID-k, IS, KID, Acc on images, FID-img)."""
    width: int = 24             # channels of the first conv; stages use 2x and 4x
    feature_dim: int = 128      # the penultimate layer: FID / KID features
    steps: int = 1200
    batch_size: int = 64
    lr: float = 2e-3
    single_fraction: float = 0.5
    is_heads: tuple = ("shape", "colour")   # IS classes: the joint of these heads


@dataclass(frozen=True)
class ClipConfig:
    """The tiny CLIP (CLIPSIM, re-ranking)."""
    width: int = 24
    embed_dim: int = 128
    text_dim: int = 128
    text_layers: int = 2
    heads: int = 4
    steps: int = 1200
    batch_size: int = 128
    lr: float = 1e-3
    single_fraction: float = 0.5
    video_fraction: float = 0.25    # pairs (one video frame, the video's caption)


@dataclass(frozen=True)
class VideoConfig:
    """The video net (FID-vid, FVD, Acc on videos)."""
    width: int = 24
    feature_dim: int = 128
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    single_fraction: float = 0.5


@dataclass(frozen=True)
class SegmenterConfig:
    """The segmenter (Detected PA)."""
    width: int = 16
    steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    single_fraction: float = 0.5
    video_fraction: float = 0.5     # training maps that are frames of moving videos


_CONFIGS = {"classifier": ClassifierConfig, "clip": ClipConfig, "video": VideoConfig,
            "segmenter": SegmenterConfig}


@dataclass(frozen=True)
class JudgesConfig:
    seed: int = 0
    canvas: int = 32
    frames: int = 8
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    # torch threads while training (None: torch's default). Not part of any judge's hash: it
    # changes speed, not the recipe. On a small machine shared with other work, 1 thread
    # avoids the stalls of threads waiting for each other.
    threads: int | None = None

    @classmethod
    def from_profile(cls, cfg: Mapping[str, Any]) -> "JudgesConfig":
        """Read ``seed``, ``world.canvas``, ``world.frames`` and the ``judges:`` section."""
        section = dict(cfg.get("judges") or {})
        threads = section.pop("threads", None)
        unknown = set(section) - set(_CONFIGS)
        if unknown:
            raise ValueError(f"judges: unknown section(s) {sorted(unknown)}; allowed: "
                             f"{', '.join(_CONFIGS)}, threads")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"judges.threads must be a positive integer or null, got {threads!r}")
        subs = {name: _make_config(name, section.get(name) or {}) for name in _CONFIGS}
        w = cfg.get("world") or {}
        return cls(seed=int(cfg.get("seed", 0)), canvas=int(w.get("canvas", 32)),
                   frames=int(w.get("frames", 8)), threads=threads, **subs)

    def judge(self, name):
        world._check("judge", name, JUDGE_NAMES)
        return getattr(self, name)


def _make_config(name, values):
    cls = _CONFIGS[name]
    allowed = {f.name for f in fields(cls)}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"judges.{name}: unknown key(s) {sorted(unknown)}; allowed: "
                         f"{', '.join(sorted(allowed))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)


def config_hash(name, jcfg: JudgesConfig) -> str:
    """12 hex digits over everything that determines the judge's weights."""
    return key_hash({"name": name, "version": JUDGE_VERSIONS[name], "seed": jcfg.seed,
                     "canvas": jcfg.canvas, "frames": jcfg.frames if name == "video" else None,
                     "config": asdict(jcfg.judge(name))})


# --------------------------------------------------------------------------- networks
def _conv(cin, cout, stride=1, dilation=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation,
                                   bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvTrunk(nn.Module):
    """32x32 (or 64x64) -> stride 8 -> pooled to the 3x3 position grid: (B, 4w, 3, 3).
    Pooling to 3x3 rather than 1x1 keeps where things are: one cell per position."""

    def __init__(self, in_channels, width):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            _conv(in_channels, w),
            _conv(w, 2 * w, stride=2), _conv(2 * w, 2 * w),
            _conv(2 * w, 4 * w, stride=2), _conv(4 * w, 4 * w),
            _conv(4 * w, 4 * w, stride=2),
            nn.AdaptiveAvgPool2d(3))
        self.channels = 4 * w
        self.out_dim = 4 * w * 9

    def forward(self, x):
        return self.net(x)


class VideoTrunk(nn.Module):
    """(B, T, 3, H, W) -> a flat vector, from two paths over shared per-frame layers:

    * appearance: every frame through the same 2D stages (each frame teaches the same shape
      detectors), pooled to the 3x3 grid, averaged over time;
    * motion: at 1/2 resolution the frames' maps are stacked on the channel axis and fused
      (a 2 px step is one cell there, so direction is a local pattern), then 2D stages.
    Frames are stacked in order, so the first step (which a bounce may reverse) is seen."""

    def __init__(self, frames, width):
        super().__init__()
        w = width
        self.frame = nn.Sequential(_conv(3, w), _conv(w, 2 * w, stride=2))
        self.appearance = nn.Sequential(_conv(2 * w, 4 * w, stride=2), _conv(4 * w, 4 * w),
                                        _conv(4 * w, 4 * w, stride=2),
                                        nn.AdaptiveAvgPool2d(3), nn.Flatten())
        self.motion = nn.Sequential(nn.Conv2d(frames * 2 * w, 4 * w, 1, bias=False),
                                    nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),
                                    _conv(4 * w, 4 * w), _conv(4 * w, 4 * w, stride=2),
                                    _conv(4 * w, 4 * w, stride=2),
                                    nn.AdaptiveAvgPool2d(3), nn.Flatten())
        self.out_dim = 2 * 4 * w * 9

    def forward(self, x):
        b = x.shape[0]
        f = self.frame(rearrange(x, "b t c h w -> (b t) c h w"))
        look = rearrange(self.appearance(f), "(b t) d -> b t d", b=b).mean(1)
        move = self.motion(rearrange(f, "(b t) c h w -> b (t c) h w", b=b))
        return torch.cat([look, move], 1)


class WorldClassifier(nn.Module):
    """Multi-head attribute classifier of images (``frames=1``, input (B, 3, H, W)) or of
    videos (``frames=T``, input (B, T, 3, H, W), see :class:`VideoTrunk`).

    Per-object heads (meaningful for one-object scenes) and a background head, plus what
    reads two-object scenes: for images, *slot* heads that say, for each of the 9 position
    cells, which shape, colour and size sits there (0 = empty; objects never share a cell,
    so this is unambiguous and binds attributes to objects); for videos, whose objects move
    across cells, multi-label *presence* heads over shapes, colours, sizes, start cells and
    motions."""

    def __init__(self, width=24, feature_dim=128, frames=1, is_heads=("shape", "colour")):
        super().__init__()
        self.frames = frames
        self.video = frames > 1
        self.head_names = VIDEO_HEADS if self.video else IMAGE_HEADS
        self.presence_keys = VIDEO_PRESENCE if self.video else ()
        for h in is_heads:
            world._check("is_heads entry", h, self.head_names)
        self.is_heads = tuple(is_heads)
        self.trunk = VideoTrunk(frames, width) if self.video else ConvTrunk(3, width)
        self.penultimate = nn.Sequential(nn.Linear(self.trunk.out_dim, feature_dim),
                                         nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({h: nn.Linear(feature_dim, len(world.ATTRIBUTE_VALUES[h]))
                                    for h in self.head_names})
        if self.video:
            self.presence = nn.Linear(feature_dim, len(self.presence_keys))
        else:   # one 1x1 conv over the 3x3 cell map: the same reader for every cell
            self.slots = nn.Conv2d(self.trunk.channels, sum(SLOT_CLASSES.values()), 1)

    def _check_input(self, x):
        want = (self.frames, 3) if self.video else (3,)
        got = tuple(x.shape[1:len(want) + 1])
        if x.ndim != 2 + len(want) + 1 or got != want:
            what = "(B, T, 3, H, W) videos" if self.video else "(B, 3, H, W) images"
            raise ValueError(f"{type(self).__name__} with frames={self.frames} takes {what} "
                             f"with T={self.frames}, got {tuple(x.shape)}")

    def forward(self, x):
        """{"features", "logits": {head: (B, classes)}} and "presence" (B, P) for videos
        or "slots": {attribute: (B, 9 cells, 1 + values)} for images."""
        self._check_input(x)
        m = self.trunk(x)
        f = self.penultimate(m if self.video else m.flatten(1))
        out = {"features": f, "logits": {h: head(f) for h, head in self.heads.items()}}
        if self.video:
            out["presence"] = self.presence(f)
        else:
            cells = rearrange(self.slots(m), "b k h w -> b (h w) k")
            out["slots"] = dict(zip(SLOT_CLASSES, cells.split(list(SLOT_CLASSES.values()), -1)))
        return out

    def all_logits(self, out):
        """Every head's logits side by side (B, sum of classes): the FVD layer of the video
        net, as FVD uses I3D's logit layer."""
        extra = [out["presence"]] if self.video else [v.flatten(1) for v in out["slots"].values()]
        return torch.cat([out["logits"][h] for h in self.head_names] + extra, 1)

    def is_log_probs(self, out):
        """log p over the joint classes of ``is_heads`` (B, prod of class counts): sums of
        per-head log-softmaxes, i.e. the heads treated as independent. IS reads these."""
        joint = None
        for h in self.is_heads:
            lp = F.log_softmax(out["logits"][h].double(), dim=1)
            joint = lp if joint is None else (joint[:, :, None] + lp[:, None, :]).flatten(1)
        return joint.float()

    @torch.no_grad()
    def predict(self, pixels, batch_size=256) -> dict:
        """uint8 images / videos -> numpy arrays: {head: class indices, "features"} and,
        for videos, "presence" probabilities, for images "slot_<attribute>" (N, 9) indices
        (0 = empty cell, v + 1 = value v)."""
        def run(chunk):
            out = self(to_tensor(chunk))
            res = {h: out["logits"][h].argmax(1) for h in self.head_names}
            if self.video:
                res["presence"] = torch.sigmoid(out["presence"])
            else:
                res.update({f"slot_{a}": v.argmax(-1) for a, v in out["slots"].items()})
            res["features"] = out["features"]
            return res
        with evaluating(self):
            return {k: v.numpy() for k, v in _batched(run, pixels, batch_size).items()}


class WordTokenizer:
    """Captions -> word indices over ``world.VOCABULARY`` (0 is padding). The judge reads
    whole words: the captions are templates over a few dozen words, no BPE needed."""

    def __init__(self, max_len=MAX_CAPTION_WORDS):
        self.words = ("<pad>",) + tuple(world.VOCABULARY)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.max_len = max_len

    def __len__(self):
        return len(self.words)

    def __call__(self, captions) -> torch.Tensor:
        ids = torch.zeros(len(captions), self.max_len, dtype=torch.long)
        for i, text in enumerate(captions):
            words = text.split()
            if len(words) > self.max_len:
                raise ValueError(f"caption has {len(words)} words, more than max_len="
                                 f"{self.max_len}: {text!r}")
            for j, w in enumerate(words):
                if w not in self.index:
                    raise ValueError(f"word {w!r} of caption {text!r} is not in the world's "
                                     f"vocabulary ({len(world.VOCABULARY)} words)")
                ids[i, j] = self.index[w]
        return ids


class TextBlock(nn.Module):
    """Pre-norm transformer block (self-attention over the caption's words, then an MLP)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x, keep):
        q, k, v = rearrange(self.qkv(self.norm1(x)), "b n (three h d) -> three b h n d",
                            three=3, h=self.heads)
        mask = keep[:, None, None, :]   # padding keys are never attended to
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(rearrange(a, "b h n d -> b n (h d)"))
        return x + self.mlp(self.norm2(x))


class TinyCLIP(nn.Module):
    """A CLIP for the world: conv image encoder + word-level text transformer, both
    projected to unit vectors in one space and trained with CLIP's symmetric InfoNCE."""

    def __init__(self, width=24, embed_dim=128, text_dim=128, text_layers=2, heads=4,
                 max_len=MAX_CAPTION_WORDS):
        super().__init__()
        self.tokenizer = WordTokenizer(max_len)
        self.image_trunk = ConvTrunk(3, width)
        self.image_proj = nn.Linear(self.image_trunk.out_dim, embed_dim)
        self.word_emb = nn.Embedding(len(self.tokenizer), text_dim)
        self.pos_emb = nn.Parameter(torch.zeros(max_len, text_dim))
        nn.init.normal_(self.pos_emb, std=0.02)
        self.blocks = nn.ModuleList(TextBlock(text_dim, heads) for _ in range(text_layers))
        self.text_norm = nn.LayerNorm(text_dim)
        self.text_proj = nn.Linear(text_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))   # CLIP's init

    def encode_image(self, x):
        """(B, 3, H, W) in [-1, 1] -> unit vectors (B, embed_dim)."""
        return F.normalize(self.image_proj(self.image_trunk(x).flatten(1)), dim=-1)

    def encode_text(self, tokens):
        """(B, L) word indices -> unit vectors (B, embed_dim); mean over the words."""
        keep = tokens != 0
        x = self.word_emb(tokens) + self.pos_emb[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, keep)
        x = self.text_norm(x)
        pooled = (x * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(self.text_proj(pooled), dim=-1)

    def forward(self, x, tokens):
        """Image x text logits (B, B), scaled as in CLIP."""
        scale = self.logit_scale.clamp(max=math.log(100)).exp()
        return scale * self.encode_image(x) @ self.encode_text(tokens).T

    @torch.no_grad()
    def embed_images(self, images, batch_size=256) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> unit vectors (N, embed_dim)."""
        with evaluating(self):
            return _batched(lambda c: self.encode_image(to_tensor(c)), images, batch_size)

    @torch.no_grad()
    def embed_captions(self, captions, batch_size=256) -> torch.Tensor:
        with evaluating(self):
            return _batched(lambda c: self.encode_text(self.tokenizer(c)), captions, batch_size)


class Segmenter(nn.Module):
    """A small U-Net: (B, 3, H, W) -> (B, 9, H, W) logits over ``world.SEG_CLASSES``. The
    dilated convs at 1/4 resolution see a whole object, which the shape classes need."""

    def __init__(self, width=16):
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(_conv(3, w), _conv(w, w))
        self.enc2 = nn.Sequential(_conv(w, 2 * w, stride=2), _conv(2 * w, 2 * w))
        self.enc3 = nn.Sequential(_conv(2 * w, 4 * w, stride=2), _conv(4 * w, 4 * w, dilation=2),
                                  _conv(4 * w, 4 * w, dilation=4))
        self.dec2 = nn.Sequential(_conv(6 * w, 2 * w), _conv(2 * w, 2 * w))
        self.dec1 = nn.Sequential(_conv(3 * w, w), _conv(w, w))
        self.head = nn.Conv2d(w, world.N_SEG_CLASSES, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], 1))
        return self.head(d1)

    @torch.no_grad()
    def predict(self, images, batch_size=256) -> np.ndarray:
        """uint8 (N, H, W, 3) -> label maps (N, H, W) uint8."""
        with evaluating(self):
            out = _batched(lambda c: self(to_tensor(c)).argmax(1), images, batch_size)
        return out.numpy().astype(np.uint8)


def build(name, jcfg: JudgesConfig) -> nn.Module:
    """A fresh (untrained) judge of the given name."""
    c = jcfg.judge(name)
    if name == "classifier":
        return WorldClassifier(c.width, c.feature_dim, 1, c.is_heads)
    if name == "video":
        return WorldClassifier(c.width, c.feature_dim, jcfg.frames, ("shape", "colour"))
    if name == "clip":
        return TinyCLIP(c.width, c.embed_dim, c.text_dim, c.text_layers, c.heads)
    return Segmenter(c.width)


def n_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
