"""Judges: small evaluator networks trained on the Shapes World (DESIGN §7).

The paper scores samples with networks trained on real photos and clips: Inception-v3 for
FID and IS (Table 1), CLIP for CLIPSIM and for re-ranking 60 samples (Sec. 4.2), I3D /
C3D-style video networks for FID-vid and FVD (Tables 2, 3, 5, 6) and a segmentation model
for Detected PA (Table 6). Their weights cannot be downloaded here, and they would not
understand the Shapes World anyway. So we train one small judge for each role on the world
itself, and ``metrics.py`` computes the paper's formulas with them:

* :class:`WorldClassifier` (``frames=1``): per-attribute heads (shape, colour, size,
  position, background) and per-cell "slot" heads. Its penultimate features feed FID /
  FID-k / KID, its joint shape x colour log-probabilities feed IS, its heads give Acc.
* :class:`TinyCLIP`: a word-level text transformer and a conv image encoder trained with
  the symmetric InfoNCE loss of CLIP; its cosine similarity is our CLIPSIM.
* the video net, a :class:`WorldClassifier` with ``frames=T`` (:class:`VideoTrunk`: shared
  per-frame layers for appearance, the frames' maps stacked and fused for motion), the same
  heads plus motion; its features -> FID-vid, its logits -> FVD.
* :class:`Segmenter`: a small U-Net over the 9 segmentation classes -> Detected PA.

Two-object scenes. ``Sample.labels`` names the *first* object, but nothing in an image says
which object came first, so per-attribute heads trained on two-object scenes would learn a
coin flip. The per-object heads (shape, colour, size, position, motion) are therefore trained
and checked on one-object scenes only. Every scene trains the background head and what reads
several objects: for images, slot heads saying which shape, colour and size occupies each of
the 9 position cells (objects never share a cell); for videos, whose objects move between
cells, multi-label presence heads ("is something red here? does something move up?").
A fraction ``single_fraction`` of the judges' scenes have one object.

Data. Judges draw scenes from their own seed stream of the world (``JUDGE_STREAM``; the
dataset roles use 0..8), fresh scenes every step, and are checked on the stream's ``test``
split, which they never train on. They see every attribute x motion combination, including
the held-out ones of the ``zeroshot`` split: a judge must recognise what a zero-shot
generator draws, and only the generators must never see those combinations.

Cache. A trained judge is written to ``artifacts/<profile>/judges/<name>-<hash>.pt``; the hash
covers the judge's config, the seed, canvas, frames and :data:`JUDGE_VERSIONS`, so a change to
any of them trains a new judge and never loads a stale one. :func:`get_judges` loads what is
there and trains what is missing.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from nuwa_lib import world
from nuwa_lib.segmentation import fwiou, mean_iou, pixel_accuracy
from nuwa_lib.utils import checkpoint, progress as P
from nuwa_lib.utils.cache import artifact_path, fetch, key_hash, profile_of
from nuwa_lib.utils.tensors import evaluating, to_tensor

# Bump a judge's version when its architecture, loss or training data changes: its old
# cache files then stop matching and it retrains (the others are kept).
JUDGE_VERSIONS = {"classifier": 2, "clip": 1, "video": 2, "segmenter": 1}
JUDGE_NAMES = ("classifier", "clip", "video", "segmenter")
JUDGE_STREAM = 1000     # world seed stream of the judges' scenes (roles use 0..8)
CHECKPOINT_FORMAT = "nuwa-judge"
MAX_CAPTION_WORDS = 24  # longest caption: two objects with a motion change, "in the sky" (22)
IMAGE_HEADS = ("shape", "colour", "size", "position", "background")
VIDEO_HEADS = IMAGE_HEADS + ("motion",)


class JudgeCacheError(checkpoint.CheckpointError):
    """A cached judge file that cannot be used: corrupt, or made for another config."""


def _exists(x):
    return x is not None


# --------------------------------------------------------------------------- tensors
def _batched(fn, x, batch_size=256):
    """Apply ``fn`` to slices of ``x`` (numpy) and concatenate the tensors it returns."""
    outs = [fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    if isinstance(outs[0], dict):
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    return torch.cat(outs)


# --------------------------------------------------------------------------- world data
VIDEO_PRESENCE = tuple((a, v) for a in ("shape", "colour", "size", "position", "motion")
                       for v in world.ATTRIBUTE_VALUES[a])
SLOT_CLASSES = {a: 1 + len(world.ATTRIBUTE_VALUES[a]) for a in ("shape", "colour", "size")}


@dataclass
class WorldData:
    """A batch of judge scenes: ``pixels`` is (N, H, W, 3) images or (N, T, H, W, 3) videos."""
    pixels: np.ndarray
    seg: np.ndarray
    captions: list
    scenes: list
    video: bool

    def __len__(self):
        return len(self.scenes)


def judge_scene(split, index, seed=0, canvas=32, video=False, n_objects=None,
                single_fraction=0.5):
    """The ``index``-th scene of the judges' stream: 1 object with probability
    ``single_fraction`` (unless ``n_objects`` is given), every combination allowed."""
    world._check("split", split, world.SPLITS)
    rng = np.random.default_rng([seed, JUDGE_STREAM, world.SPLITS.index(split), index])
    n = n_objects if _exists(n_objects) else (1 if rng.random() < single_fraction else 2)
    return world.random_scene(rng, canvas, n, video, exclude_heldout=False)


def world_data(split, n, *, seed=0, canvas=32, frames=8, video=False, n_objects=None,
               single_fraction=0.5, start=0) -> WorldData:
    """Scenes ``start .. start+n-1`` of the judges' stream, rendered with captions and maps."""
    scenes = [judge_scene(split, start + i, seed, canvas, video, n_objects, single_fraction)
              for i in range(n)]
    if video:
        rendered = [world.render_video(s, frames) for s in scenes]
    else:
        rendered = [world.render_image(s) for s in scenes]
    pixels = np.stack([r[0] for r in rendered]) if n else np.zeros((0,), np.uint8)
    seg = np.stack([r[1] for r in rendered]) if n else np.zeros((0,), np.uint8)
    return WorldData(pixels, seg, [world.caption(s, video) for s in scenes], scenes, video)


def scene_targets(scenes, video=False) -> dict:
    """Training targets of a list of scenes: per-head class indices of the first object,
    ``single`` (bool, one object: where the object heads are defined), and for images
    ``slot_<attribute>`` (N, 9) cell contents (0 = empty, v + 1 = value v), for videos the
    multi-hot ``presence`` over :data:`VIDEO_PRESENCE`."""
    heads = VIDEO_HEADS if video else IMAGE_HEADS
    n = len(scenes)
    out = {h: np.zeros(n, np.int64) for h in heads}
    out["single"] = np.zeros(n, bool)
    if video:
        slot = {k: i for i, k in enumerate(VIDEO_PRESENCE)}
        out["presence"] = np.zeros((n, len(VIDEO_PRESENCE)), np.float32)
    else:
        out.update({f"slot_{a}": np.zeros((n, 9), np.int64) for a in SLOT_CLASSES})
    for i, s in enumerate(scenes):
        o = s.objects[0]
        for h in heads:
            value = s.background if h == "background" else getattr(o, h)
            out[h][i] = world.ATTRIBUTE_VALUES[h].index(value)
        out["single"][i] = len(s.objects) == 1
        for obj in s.objects:
            if video:
                for a in ("shape", "colour", "size", "position", "motion"):
                    out["presence"][i, slot[(a, getattr(obj, a))]] = 1.0
            else:
                cell = world.POSITIONS.index(obj.position)
                for a in SLOT_CLASSES:
                    out[f"slot_{a}"][i, cell] = world.ATTRIBUTE_VALUES[a].index(getattr(obj, a)) + 1
    return out


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
    key = {"name": name, "version": JUDGE_VERSIONS[name], "seed": jcfg.seed, "canvas": jcfg.canvas,
           "frames": jcfg.frames if name == "video" else None,
           "config": asdict(jcfg.judge(name))}
    return key_hash(key)


_canonical = checkpoint.canonical


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

    def features(self, x):
        """Penultimate features (B, feature_dim): what FID / FID-vid compare."""
        return self(x)["features"]

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
            return torch.cat([self.encode_text(self.tokenizer(captions[i:i + batch_size]))
                              for i in range(0, len(captions), batch_size)])


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


# --------------------------------------------------------------------------- training
def _judge_seed(name, jcfg):
    return jcfg.seed * 1000 + JUDGE_NAMES.index(name)


def _classifier_loss(model, batch):
    x, t = batch
    out = model(x)
    single = t["single"]
    loss = F.cross_entropy(out["logits"]["background"], t["background"])
    for h in model.head_names:
        if h != "background" and single.any():
            loss = loss + F.cross_entropy(out["logits"][h][single], t[h][single])
    # Summed over bits / cells (not averaged): each object weighs like a head.
    if model.video:
        bce = F.binary_cross_entropy_with_logits(out["presence"], t["presence"], reduction="none")
        return loss + bce.sum(1).mean()
    for a, logits in out["slots"].items():
        ce = F.cross_entropy(rearrange(logits, "b n k -> (b n) k"), t[f"slot_{a}"].flatten(),
                             reduction="none")
        loss = loss + ce.view(len(x), -1).sum(1).mean()
    return loss


def _classifier_batches(jcfg, c, video):
    def batch(step):
        d = world_data("train", c.batch_size, seed=jcfg.seed, canvas=jcfg.canvas,
                       frames=jcfg.frames, video=video, single_fraction=c.single_fraction,
                       start=step * c.batch_size)
        t = {k: torch.from_numpy(v) for k, v in scene_targets(d.scenes, video).items()}
        return to_tensor(d.pixels), t
    return batch


def _random_frame(jcfg, index, single_fraction):
    """(scene, frame, its map): a random frame of the ``index``-th training video."""
    scene = judge_scene("train", index, jcfg.seed, jcfg.canvas, True, None, single_fraction)
    t = int(np.random.default_rng([jcfg.seed, JUDGE_STREAM, index]).integers(jcfg.frames))
    vid, seg = world.render_video(scene, t + 1)   # frames 0..t; the last one is frame t
    return scene, vid[-1], seg[-1]


def _clip_batches(jcfg, c, model):
    n_video = int(round(c.batch_size * c.video_fraction))

    def batch(step):
        start = step * c.batch_size
        img = world_data("train", c.batch_size - n_video, seed=jcfg.seed, canvas=jcfg.canvas,
                         single_fraction=c.single_fraction, start=start)
        pixels, captions = list(img.pixels), list(img.captions)
        for i in range(n_video):   # one random frame of a video with the video's caption
            idx = start + c.batch_size - n_video + i
            scene, frame, _ = _random_frame(jcfg, idx, c.single_fraction)
            pixels.append(frame)
            captions.append(world.caption(scene, video=True))
        return to_tensor(np.stack(pixels)), model.tokenizer(captions)
    return batch


def _clip_loss(model, batch):
    x, tokens = batch
    logits = model(x, tokens)
    # Captions that are the same text are the same target: mask them out of the negatives.
    same = (tokens[:, None, :] == tokens[None, :, :]).all(-1)
    logits = logits.masked_fill(same & ~torch.eye(len(x), dtype=torch.bool), float("-inf"))
    target = torch.arange(len(x))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _segmenter_batches(jcfg, c):
    n_video = int(round(c.batch_size * c.video_fraction))

    def batch(step):
        start = step * c.batch_size
        img = world_data("train", c.batch_size - n_video, seed=jcfg.seed, canvas=jcfg.canvas,
                         single_fraction=c.single_fraction, start=start)
        pixels, maps = list(img.pixels), list(img.seg)
        for i in range(n_video):   # a frame of a moving video: objects anywhere
            idx = start + c.batch_size - n_video + i
            _, frame, seg = _random_frame(jcfg, idx, c.single_fraction)
            pixels.append(frame)
            maps.append(seg)
        return to_tensor(np.stack(pixels)), torch.from_numpy(np.stack(maps).astype(np.int64))
    return batch


# Object pixels are ~10% of a map; weighting them up teaches the shape classes sooner.
_SEG_WEIGHT = torch.tensor([1.0] * len(world.BACKGROUNDS) + [4.0] * len(world.SHAPES))


def _segmenter_loss(model, batch):
    x, seg = batch
    return F.cross_entropy(model(x), seg, weight=_SEG_WEIGHT)


def _fit(model, loss_fn, batches, steps, lr, desc, progress):
    """AdamW with a 5% linear warm-up and a cosine decay; fresh world data every step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    losses, t0 = [], time.perf_counter()
    bar = P.bar(range(steps), desc=desc, progress=progress, leave=False)
    for step in bar:
        loss = loss_fn(model, batches(step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    model.eval()
    return {"steps": steps, "final_loss": float(np.mean(losses[-max(1, steps // 10):])),
            "train_seconds": round(time.perf_counter() - t0, 1)}


def train_judge(name, jcfg: JudgesConfig, progress=True):
    """Train one judge from scratch; deterministic on CPU for a given config and seed.
    Returns (model in eval mode, info dict)."""
    c = jcfg.judge(name)
    before = torch.get_num_threads()
    # fork_rng: the caller's random state is the same whether a judge was trained or loaded
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_judge_seed(name, jcfg))
        model = build(name, jcfg)
        if name in ("classifier", "video"):
            batches, loss = _classifier_batches(jcfg, c, name == "video"), _classifier_loss
        elif name == "clip":
            batches, loss = _clip_batches(jcfg, c, model), _clip_loss
        else:
            batches, loss = _segmenter_batches(jcfg, c), _segmenter_loss
        if jcfg.threads:
            torch.set_num_threads(jcfg.threads)
        try:
            info = _fit(model, loss, batches, c.steps, c.lr, f"judge {name}", progress)
        finally:
            torch.set_num_threads(before)
    return _freeze(model), info


def _freeze(model):
    model.eval()
    model.requires_grad_(False)
    return model


# --------------------------------------------------------------------------- cache
def judge_path(name, jcfg: JudgesConfig, profile: str) -> Path:
    return artifact_path(profile, "judges", name, config_hash(name, jcfg))


def save_judge(path, name, jcfg, model, info) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a checkpoint."""
    return checkpoint.save(path, {
        "format": CHECKPOINT_FORMAT, "version": JUDGE_VERSIONS[name], "name": name,
        "hash": config_hash(name, jcfg), "seed": jcfg.seed, "canvas": jcfg.canvas,
        "frames": jcfg.frames, "config": _canonical(asdict(jcfg.judge(name))),
        "info": info, "state_dict": model.state_dict()})


_HINT = "delete the file to retrain"


def _read_checkpoint(path, expect=None) -> dict:
    return checkpoint.load(path, CHECKPOINT_FORMAT, expect, what="judge checkpoint", hint=_HINT,
                           error=JudgeCacheError)


def _restore(path, payload, name, jcfg):
    model = checkpoint.load_state(path, build(name, jcfg), payload["state_dict"],
                                  f"{name} architecture", JudgeCacheError)
    return _freeze(model)


def load_judge(path, name, jcfg: JudgesConfig):
    """(model in eval mode, info) from a checkpoint; a corrupt file or one made for another
    judge, version or config raises :class:`JudgeCacheError` naming the file and the
    mismatch."""
    expected = {"name": name, "version": JUDGE_VERSIONS[name], "seed": jcfg.seed,
                "canvas": jcfg.canvas, "frames": jcfg.frames,
                "config": asdict(jcfg.judge(name))}
    payload = _read_checkpoint(path, expected)
    return _restore(path, payload, name, jcfg), dict(payload.get("info") or {})


def load_checkpoint(path, expect=None) -> nn.Module:
    """A judge rebuilt from the config stored in its own checkpoint (no profile needed)."""
    payload = _read_checkpoint(path)
    name = payload.get("name")
    if name not in JUDGE_NAMES or payload.get("version") != JUDGE_VERSIONS[name]:
        raise JudgeCacheError(f"{path}: judge {name!r} of version {payload.get('version')!r} "
                              f"cannot be loaded (versions now: {JUDGE_VERSIONS})")
    if expect is not None and name != expect:
        raise JudgeCacheError(f"{path}: holds the {name} judge, not the {expect}")
    sub = _make_config(name, payload["config"])
    jcfg = JudgesConfig(seed=payload["seed"], canvas=payload["canvas"],
                        frames=payload["frames"], **{name: sub})
    return _restore(path, payload, name, jcfg)


@dataclass
class Judges:
    """The four judges (eval mode, frozen) and where each came from."""
    classifier: WorldClassifier | None
    clip: TinyCLIP | None
    video: WorldClassifier | None
    segmenter: Segmenter | None
    config: JudgesConfig
    paths: dict
    info: dict          # per judge: training info + "source" ("loaded" / "trained")

    def summary(self):
        """Rows describing each judge (architecture size and training budget)."""
        rows = []
        for name in JUDGE_NAMES:
            model = getattr(self, name)
            if model is None:
                continue
            c = self.config.judge(name)
            rows.append({"judge": name, "network": type(model).__name__,
                         "parameters": n_parameters(model), "steps": c.steps,
                         "batch_size": c.batch_size, "samples_seen": c.steps * c.batch_size,
                         "lr": c.lr})
        return rows


def get_judges(cfg: Mapping[str, Any], train_if_missing=True, progress=True,
               names=JUDGE_NAMES, profile: str | None = None) -> Judges:
    """Every judge of the profile ``cfg``: loaded from ``artifacts/<profile>/judges/`` when
    cached under its config hash, otherwise trained (and cached) or, with
    ``train_if_missing=False``, a FileNotFoundError naming the missing file."""
    profile = profile_of(cfg, profile)
    jcfg = JudgesConfig.from_profile(cfg)
    models, paths, infos = dict.fromkeys(JUDGE_NAMES), {}, {}
    for name in names:
        world._check("judge", name, JUDGE_NAMES)
        path = paths[name] = judge_path(name, jcfg, profile)

        def build(name=name, path=path):
            model, info = train_judge(name, jcfg, progress)
            save_judge(path, name, jcfg, model, info)
            return model, info

        (models[name], info), loaded = fetch(
            path, lambda p, name=name: load_judge(p, name, jcfg), build,
            build_if_missing=train_if_missing,
            missing=f"no cached {name} judge at {path}; run notebook 01_evaluators or "
                    f"get_judges(..., train_if_missing=True)")
        infos[name] = {**info, "source": "loaded" if loaded else "trained"}
    return Judges(**models, config=jcfg, paths=paths, info=infos)


# --------------------------------------------------------------------------- checks
def head_accuracy(model: WorldClassifier, data: WorldData) -> dict:
    """Per-head accuracy on single-object scenes (background: on all scenes) and
    ``scene_exact``: the fraction of scenes whose multi-object reading (every slot of an
    image, every presence bit of a video) is entirely right."""
    pred = model.predict(data.pixels)
    t = scene_targets(data.scenes, model.video)
    single = t["single"]
    out = {}
    for h in model.head_names:
        mask = np.ones_like(single) if h == "background" else single
        out[h] = float((pred[h][mask] == t[h][mask]).mean()) if mask.any() else float("nan")
    if model.video:
        exact = ((pred["presence"] > 0.5) == (t["presence"] > 0.5)).all(1)
    else:
        exact = np.all([(pred[f"slot_{a}"] == t[f"slot_{a}"]).all(1) for a in SLOT_CLASSES], 0)
    out["scene_exact"] = float(exact.mean())
    return out


def retrieval_r_at_1(clip: TinyCLIP, images, captions, candidates=100) -> float:
    """Text retrieval R@1: for each image, is its own caption the most similar among
    ``candidates`` captions (its own and those of the other images of its group)? A caption
    that is word-for-word the image's own counts as right. Groups are consecutive chunks of
    ``candidates`` images; a last, incomplete chunk is left out."""
    n = (len(images) // candidates) * candidates
    if n == 0:
        raise ValueError(f"retrieval needs at least candidates={candidates} images, got {len(images)}")
    img = clip.embed_images(images[:n])
    txt = clip.embed_captions(list(captions[:n]))
    hits = []
    for g in range(0, n, candidates):
        sim = img[g:g + candidates] @ txt[g:g + candidates].T
        best = sim.argmax(1).numpy()
        hits += [captions[g + b] == captions[g + i] for i, b in enumerate(best)]
    return float(np.mean(hits))


def _row(judge, metric, value, target=None):
    met = "" if target is None else bool(value >= target)
    return {"judge": judge, "metric": metric, "value": float(value),
            "target": "" if target is None else float(target), "met": met}


def check_judges(judges: Judges, heldout: int, candidates: int, targets: Mapping) -> list:
    """The evidence that the judges can be trusted: rows {judge, metric, value, target, met}
    measured on the judges' ``test`` split, which no judge trains on.

    * classifier / video net: per-head accuracy on ``heldout`` one-object scenes (motion for
      videos), and how often the whole two-object reading is right (slots / presence);
    * CLIP: text retrieval R@1 among ``candidates`` captions, and CLIPSIM of matched and of
      mismatched (shifted by one) image-caption pairs, the scale of CLIPSIM;
    * segmenter: PA, FWIoU and mIoU on images and on frames of moving videos."""
    jc = judges.config
    kw = dict(seed=jc.seed, canvas=jc.canvas, frames=jc.frames)
    rows = []
    for name, video in (("classifier", False), ("video", True)):
        model = getattr(judges, name)
        if model is None:
            continue
        one = world_data("test", heldout, video=video, n_objects=1, **kw)
        acc = head_accuracy(model, one)
        for h in model.head_names:
            rows.append(_row(name, f"accuracy: {h} (one-object scenes)", acc[h], targets.get(name)))
        two = world_data("test", heldout, video=video, n_objects=2, start=heldout, **kw)
        what = "presence, every bit right" if video else "slots, every cell right"
        rows.append(_row(name, f"{what} (two-object scenes)", head_accuracy(model, two)["scene_exact"]))
    mixed = world_data("test", heldout, start=2 * heldout, **kw)
    if judges.clip is not None:
        r1 = retrieval_r_at_1(judges.clip, mixed.pixels, mixed.captions, candidates)
        rows.append(_row("clip", f"text retrieval R@1 (N={candidates} captions)", r1,
                         targets.get("clip_r_at_1")))
        img = judges.clip.embed_images(mixed.pixels)
        txt = judges.clip.embed_captions(mixed.captions)
        rows.append(_row("clip", "CLIPSIM, matched pairs", (img * txt).sum(1).mean()))
        rows.append(_row("clip", "CLIPSIM, mismatched pairs", (img * txt.roll(1, 0)).sum(1).mean()))
    if judges.segmenter is not None:
        moving = world_data("test", max(1, heldout // jc.frames), video=True,
                            start=3 * heldout, **kw)
        sets = (("images", mixed.pixels, mixed.seg),
                ("video frames", moving.pixels.reshape(-1, *moving.pixels.shape[2:]),
                 moving.seg.reshape(-1, *moving.seg.shape[2:])))
        for what, pixels, seg in sets:
            pred = judges.segmenter.predict(pixels)
            rows.append(_row("segmenter", f"PA ({what})", pixel_accuracy(pred, seg),
                             targets.get("segmenter_pa")))
            rows.append(_row("segmenter", f"FWIoU ({what})", fwiou(pred, seg)))
            rows.append(_row("segmenter", f"mIoU ({what})", mean_iou(pred, seg)))
    return rows


def recipe(jcfg: JudgesConfig) -> list:
    """What each judge is and how it is trained (untrained models give the sizes)."""
    serves = {"classifier": "FID, FID-k, IS, KID, FID-img, Acc (images)",
              "clip": "CLIPSIM, re-ranking", "video": "FID-vid, FVD, Acc (videos)",
              "segmenter": "Detected PA"}
    rows = []
    for name in JUDGE_NAMES:
        c = jcfg.judge(name)
        rows.append({"judge": name, "network": type(build(name, jcfg)).__name__,
                     "parameters": n_parameters(build(name, jcfg)), "steps": c.steps,
                     "batch_size": c.batch_size, "scenes_seen": c.steps * c.batch_size,
                     "serves": serves[name]})
    return rows


def describe_predictions(pred: Mapping, video=False) -> list:
    """Short readings of :meth:`WorldClassifier.predict` output, one per sample: "small red
    circle, top left, grass"; for an image whose slots hold several objects, "small red
    circle (left) + large blue cross (top), grass"; for videos "..., moves up, grass"."""
    out = []
    for i in range(len(pred["shape"])):
        v = {h: world.ATTRIBUTE_VALUES[h][int(pred[h][i])]
             for h in (VIDEO_HEADS if video else IMAGE_HEADS)}
        cells = [] if video else [c for c in range(9) if pred["slot_shape"][i, c]]
        if len(cells) > 1:
            objs = [" ".join(world.ATTRIBUTE_VALUES[a][int(pred[f"slot_{a}"][i, c]) - 1]
                             if pred[f"slot_{a}"][i, c] else "?" for a in ("size", "colour", "shape"))
                    + f" ({world.POSITIONS[c]})" for c in cells]
            out.append(" + ".join(objs) + f", {v['background']}")
            continue
        where = f"moves {v['motion']}" if video else v["position"]
        out.append(f"{v['size']} {v['colour']} {v['shape']}, {where}, {v['background']}")
    return out
