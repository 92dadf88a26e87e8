"""Visual tokenizers (Sec. 3.1): VQ-VAE, VQ-GAN and VQ-GAN-Seg, Eqs. (1)-(5), Table 4.

An encoder E maps an image I (H x W) to an h x w grid of d_B-dimensional features, with
h = H / F for the downsampling factor F (the paper's "rate", Table 4). Each feature is
replaced by its nearest code of the codebook B (Eq. 1), giving the tokens z, and a decoder
G draws the image back from B[z] (Eq. 2).

* **VQ-VAE** (Eq. 3): ``||I - Î||² + ||sg[E(I)] - B[z]||² + β ||E(I) - sg[B[z]]||²``. We move
  the codebook with exponential moving averages of the features assigned to each code
  (online k-means, van den Oord et al. 2017, App. A.1) instead of by the gradient of the
  middle term; the commitment term is kept. Codes that stop being used are restarted
  from random encoder outputs of the current batch ("dead-code restart"), so the codebook
  stays in use. Gradients pass the quantizer straight through.
* **VQ-GAN** (Eqs. 4-5) adds a perceptual loss ``||CNN(I) - CNN(Î)||²`` and a GAN loss
  with a PatchGAN discriminator D. The paper's CNN is an ImageNet network; ours is the
  world classifier judge (``judges.py``): its conv feature maps at three depths, unit
  length per position (as LPIPS normalises VGG's). The discriminator starts after a delay,
  and its term is weighted adaptively by the ratio of the gradient norms of the
  reconstruction and GAN losses at the decoder's last layer (Esser et al. 2021, Eq. 7).
* **VQ-GAN-Seg** ("image sketches", Sec. 3.1): a segmentation map of C classes is the
  one-hot C-channel image; the decoder predicts C logits per pixel and is trained with
  cross-entropy.

Videos are encoded frame by frame with the same 2D model (Sec. 3.1): :func:`encode` turns
images (N, H, W, 3), videos (N, T, H, W, 3), sketches (N, H, W) or sketch videos
(N, T, H, W) into token grids (N, s, h, w) (the paper's h x w x s, time-major here, s = 1
for images), and :func:`decode` turns tokens back into pixels or class maps. Training and
the cache (``artifacts/<profile>/vqgan/``) are :mod:`~nuwa_lib.tokenizers.vq_train`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..data import splits, world
from ..utils import checkpoint
from ..utils.cache import key_hash
from ..utils.tensors import to_tensor
from .quantizer import EMAQuantizer

KINDS = ("vqvae", "vqgan", "seg")
VQ_VERSION = 1
CHECKPOINT_FORMAT = "nuwa-vq"
STATE_FORMAT = "nuwa-vq-training-state"
VQ_STREAM = 2000          # world seed stream of the tokenizers' training picks
FRAMES = 8                # frames of the video roles' clips (splits.sample's default)
IMAGE_ROLES = ("cc", "moments")     # stills from the image role, frames from the video role
SEG_ROLES = ("cocostuff", "vspw")
SECTION_KEYS = {"threads", "workers", "common", "models", "tokenizer", "sketch_tokenizer", "chosen",
                "paper_rows", "eval"}
ADDED = {"l2_codes": False}     # VQConfig fields added since the first record: their defaults
KIND_NAMES = {"vqvae": "VQ-VAE", "vqgan": "VQ-GAN", "seg": "VQ-GAN-Seg"}


class VQCheckpointError(checkpoint.CheckpointError):
    """A tokenizer checkpoint that cannot be used: corrupt, or made for another config."""


def rate_label(r, d, f) -> str:
    """The R -> D (rate) label of Table 4: "256² → 16² (F16)"."""
    return f"{r}² → {d}² (F{f})"


@dataclass(frozen=True)
class VQConfig:
    """Everything that determines a tokenizer's weights (the cache key)."""
    kind: str = "vqgan"           # vqvae | vqgan | seg
    canvas: int = 32              # H = W of the input
    factor: int = 4               # F: h = canvas / factor
    codebook: int = 256           # N codes
    code_dim: int = 32            # d_B
    width: int = 32               # channels of the first conv level (x1, x2, x4, x4, ...)
    beta: float = 0.25            # commitment weight (Eq. 3)
    ema_decay: float = 0.99
    restart_threshold: int = 1        # a code with fewer assignments in a window is dead
    restart_every: int = 20           # the window: steps between dead-code restarts
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    perceptual_weight: float = 1.0    # VQ-GAN only (Eq. 4)
    gan_weight: float = 0.1           # VQ-GAN only (Eq. 5), times the adaptive weight
    disc_start: float = 0.5           # fraction of the steps before D starts
    disc_width: int = 32
    frame_fraction: float = 0.5       # share of training pictures that are video frames
    seed: int = 0
    train_size: int = 20000           # the world's train split size per role
    l2_codes: bool = False            # codes and encodings on the unit sphere (ViT-VQGAN)

    def __post_init__(self):
        world._check("kind", self.kind, KINDS)
        if self.factor < 1 or self.factor & (self.factor - 1):
            raise ValueError(f"factor must be a power of two (1, 2, 4, 8, ...), got {self.factor}")
        if self.canvas % self.factor:
            raise ValueError(f"canvas {self.canvas} is not divisible by factor {self.factor}")
        for name in ("codebook", "code_dim", "width", "steps", "batch_size", "restart_every",
                     "disc_width", "train_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0 <= self.frame_fraction <= 1 or not 0 <= self.disc_start <= 1:
            raise ValueError("frame_fraction and disc_start must lie in [0, 1]")

    def key(self) -> dict:
        """The config as the caches key it: settings added after the first record are left
        out while they keep their defaults, so the models trained before them keep their
        hashes."""
        return {k: v for k, v in asdict(self).items() if not (k in ADDED and v == ADDED[k])}

    @property
    def grid(self) -> int:
        """h = w: tokens per side."""
        return self.canvas // self.factor

    @property
    def in_channels(self) -> int:
        return world.N_SEG_CLASSES if self.kind == "seg" else 3

    @property
    def label(self) -> str:
        """Table 4's R -> D and rate: "32² → 8² (F4)"."""
        return rate_label(self.canvas, self.grid, self.factor)


def configs_from_profile(cfg: Mapping[str, Any]) -> dict:
    """{name: VQConfig} from the profile's ``vqgan:`` section: ``common`` settings, then each
    entry of ``models`` overriding them. An entry's ``seeds: 3`` adds replicas at the next two
    seeds after its own, named ``<name>_seed<s>`` (:func:`replicas`)."""
    section = cfg.get("vqgan") or {}
    if "models" not in section:
        raise ValueError("the profile has no vqgan.models section")
    unknown = set(section) - SECTION_KEYS
    if unknown:
        raise ValueError(f"vqgan: unknown key(s) {sorted(unknown)}; allowed: "
                         f"{', '.join(sorted(SECTION_KEYS))}")
    allowed = {f.name for f in fields(VQConfig)}
    common = dict(section.get("common") or {})
    w = cfg.get("world") or {}
    base = {"seed": int(cfg.get("seed", 0)),
            "train_size": int((w.get("split_sizes") or {}).get("train", 20000))}
    out = {}
    for name, over in section["models"].items():
        values = {**base, **common, **(over or {})}
        seeds = values.pop("seeds", None)
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"vqgan.models.{name}: unknown key(s) {sorted(unknown)}; allowed: "
                             f"{', '.join(sorted(allowed | {'seeds'}))}")
        out[name] = VQConfig(**values)
        for s in _seeds(f"vqgan.models.{name}.seeds", seeds, out[name].seed):
            out[f"{name}_seed{s}"] = replace(out[name], seed=s)
    return out


def _seeds(where: str, seeds, own: int) -> list:
    """The replicas' seeds: ``seeds`` runs in all, the entry's own and the next seeds."""
    if seeds is None:
        return []
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"{where} must be the number of runs (>= 1; the entry's own seed and "
                         f"the next ones), got {seeds!r}")
    return [own + k for k in range(1, seeds)]


def replicas(cfg: Mapping[str, Any]) -> dict:
    """{name: [name, name_seed1, ...]}: each profile entry and its seed replicas."""
    configs = configs_from_profile(cfg)
    section = cfg["vqgan"]["models"]
    return {n: [n] + [f"{n}_seed{s}" for s in _seeds(n, (over or {}).get("seeds"), configs[n].seed)]
            for n, over in section.items()}


def chosen(cfg: Mapping[str, Any]) -> tuple:
    """(image, sketch): the tokenizers notebook 14's sweep chose (``vqgan.chosen``), on which
    the targets are checked; the ones later notebooks read (``tokenizer``,
    ``sketch_tokenizer``) when the profile names none."""
    section = cfg.get("vqgan") or {}
    pick = section.get("chosen") or {}
    names = (pick.get("image") or section.get("tokenizer"),
             pick.get("sketch") or section.get("sketch_tokenizer"))
    configs = configs_from_profile(cfg)
    for part, name in zip(("image", "sketch"), names):
        if name not in configs:
            raise ValueError(f"vqgan.chosen.{part}: {name!r} is not one of the profile's "
                             f"tokenizers ({', '.join(configs)})")
    return names


def config_hash(config: VQConfig, judge_hash: str | None = None) -> str:
    """12 hex digits over the config, the version and (VQ-GAN) the perceptual judge."""
    key = {"version": VQ_VERSION, "config": config.key(),
           "judge": judge_hash if config.kind == "vqgan" else None}
    return key_hash(key)


# --------------------------------------------------------------------------- networks
def _norm(c):
    return nn.GroupNorm(1, c)


class ResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.body = nn.Sequential(_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
                                  _norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.skip(x) + self.body(x)


def _channels(width, levels):
    return [width * min(2 ** i, 4) for i in range(levels + 1)]


class Encoder(nn.Module):
    """E: (B, C, H, W) -> (B, d_B, H/F, W/F); one stride-2 conv per factor of 2."""

    def __init__(self, cin, width, code_dim, factor):
        super().__init__()
        ch = _channels(width, int(math.log2(factor)))
        layers = [nn.Conv2d(cin, ch[0], 3, padding=1)]
        for a, b in zip(ch[:-1], ch[1:]):
            layers += [ResBlock(a, b), nn.Conv2d(b, b, 4, stride=2, padding=1)]
        layers += [ResBlock(ch[-1], ch[-1]), _norm(ch[-1]), nn.SiLU(),
                   nn.Conv2d(ch[-1], code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """G: (B, d_B, h, w) -> (B, C, h*F, w*F); nearest upsampling + conv per factor of 2."""

    def __init__(self, cout, width, code_dim, factor):
        super().__init__()
        ch = _channels(width, int(math.log2(factor)))[::-1]
        layers = [nn.Conv2d(code_dim, ch[0], 3, padding=1), ResBlock(ch[0], ch[0])]
        for a, b in zip(ch[:-1], ch[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(a, b, 3, padding=1), ResBlock(b, b)]
        layers += [_norm(ch[-1]), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.out = nn.Conv2d(ch[-1], cout, 3, padding=1)   # "the last layer" of Eq. 7's ratio

    def forward(self, x):
        return self.out(self.net(x))


class VQModel(nn.Module):
    """E, the quantizer and G of one tokenizer (:class:`VQConfig`)."""

    def __init__(self, config: VQConfig):
        super().__init__()
        c = self.config = config
        self.encoder = Encoder(c.in_channels, c.width, c.code_dim, c.factor)
        self.quantizer = EMAQuantizer(c.codebook, c.code_dim, c.ema_decay, c.beta, l2=c.l2_codes)
        self.decoder = Decoder(c.in_channels, c.width, c.code_dim, c.factor)

    def forward(self, x, generator=None):
        """x (B, C, H, W) -> (reconstruction or logits, indices, commitment loss, counts)."""
        zq, idx, commit, counts = self.quantizer(self.encoder(x), generator)
        return self.decoder(zq), idx, commit, counts

    @torch.no_grad()
    def encode_tensor(self, x):
        z = self.encoder(x)
        return self.quantizer.nearest(rearrange(z, "b d h w -> (b h w) d")).view(
            z.shape[0], *z.shape[2:])

    @torch.no_grad()
    def decode_tensor(self, idx):
        return self.decoder(self.quantizer.embed(idx))


# --------------------------------------------------------------------------- data
def training_batch(config: VQConfig, step: int):
    """The training pictures of ``step``: a deterministic function of (seed, step), so a
    resumed run sees the same data. Returns float (B, C, H, W): RGB in [-1, 1], or the
    one-hot maps for ``seg``; plus the raw uint8 pictures / int maps."""
    rng = np.random.default_rng([config.seed, VQ_STREAM, step])
    roles = SEG_ROLES if config.kind == "seg" else IMAGE_ROLES
    pics = []
    for _ in range(config.batch_size):
        index = int(rng.integers(config.train_size))
        frame = rng.random() < config.frame_fraction       # else a still of the image role
        scene = splits.scene(roles[frame], "train", index, config.seed, config.canvas)
        # only the picture used is drawn: a frame of the video role's 8-frame clip, or the still
        if frame:
            pic, seg = world.render_frame(scene, int(rng.integers(FRAMES)), FRAMES)
        else:
            pic, seg = world.render_image(scene)
        pics.append(seg if config.kind == "seg" else pic)
    raw = np.stack(pics)
    return to_input(raw, config), raw


def sample_picture(config: VQConfig, sample, t=None):
    """A sample's image (its seg map for ``seg``), or frame ``t`` of its video (seg maps)."""
    if t is None:
        return sample.seg if config.kind == "seg" else sample.image
    return (sample.seg if config.kind == "seg" else sample.video)[t]


def to_input(pics, config: VQConfig) -> torch.Tensor:
    """uint8 RGB (N, H, W, 3) -> (N, 3, H, W) in [-1, 1]; seg maps (N, H, W) -> one-hot."""
    x = torch.as_tensor(np.ascontiguousarray(pics))
    if config.kind == "seg":
        if x.ndim != 3 or x.dtype.is_floating_point:
            raise ValueError(f"sketches must be integer class maps (N, H, W), got "
                             f"{tuple(x.shape)} {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= world.N_SEG_CLASSES):
            raise ValueError(f"sketch classes must lie in 0..{world.N_SEG_CLASSES - 1}")
        x = F.one_hot(x.long(), world.N_SEG_CLASSES).permute(0, 3, 1, 2).float()
    else:
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {tuple(x.shape)} {x.dtype}")
        x = to_tensor(x)
    if tuple(x.shape[-2:]) != (config.canvas, config.canvas):
        raise ValueError(f"this tokenizer takes {config.canvas}x{config.canvas} inputs, got "
                         f"{tuple(x.shape[-2:])}")
    return x


def from_output(y, config: VQConfig) -> np.ndarray:
    """Decoder output -> uint8 RGB (N, H, W, 3), or class maps (N, H, W) for ``seg``."""
    if config.kind == "seg":
        return y.argmax(1).to(torch.uint8).numpy()
    return ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


# --------------------------------------------------------------------------- tokens
def _frames_of(vq: VQModel, x):
    """(flat frames, number of frames per item) for images/videos/sketches."""
    x = np.asarray(x)
    seg = vq.config.kind == "seg"
    image_ndim = 3 if seg else 4
    if x.ndim == image_ndim:
        return x, 1
    if x.ndim == image_ndim + 1:
        return x.reshape(-1, *x.shape[2:]), x.shape[1]
    what = "sketches (N, H, W) or sketch videos (N, T, H, W)" if seg else \
        "images (N, H, W, 3) or videos (N, T, H, W, 3)"
    raise ValueError(f"this {vq.config.kind} tokenizer encodes {what}, got shape {x.shape}")


@torch.no_grad()
def encode(vq: VQModel, x, batch_size=256) -> torch.Tensor:
    """Pictures -> token grids (N, s, h, w) int64, each frame encoded on its own (Sec. 3.1):
    images / sketches give s = 1, videos / sketch videos s = T."""
    frames, s = _frames_of(vq, x)
    vq.eval()
    device = next(vq.parameters()).device
    out = [vq.encode_tensor(to_input(frames[i:i + batch_size], vq.config).to(device)).cpu()
           for i in range(0, len(frames), batch_size)]
    idx = torch.cat(out) if out else torch.zeros(0, vq.config.grid, vq.config.grid, dtype=torch.long)
    return idx.view(-1, s, *idx.shape[1:])


@torch.no_grad()
def decode(vq: VQModel, tokens, batch_size=256) -> np.ndarray:
    """Token grids (N, s, h, w) -> uint8 (N, s, H, W, 3), or class maps (N, s, H, W) for a
    VQ-GAN-Seg. Take ``[:, 0]`` for images."""
    t = torch.as_tensor(tokens)
    if t.ndim != 4 or t.dtype.is_floating_point:
        raise ValueError(f"tokens must be an integer grid (N, s, h, w), got {tuple(t.shape)} {t.dtype}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= vq.config.codebook):
        raise ValueError(f"token ids must lie in 0..{vq.config.codebook - 1}, got "
                         f"{int(t.min())}..{int(t.max())}")
    vq.eval()
    device = next(vq.parameters()).device
    n, s = t.shape[:2]
    flat = t.reshape(-1, *t.shape[2:]).long()
    out = [from_output(vq.decode_tensor(flat[i:i + batch_size].to(device)).cpu(), vq.config)
           for i in range(0, len(flat), batch_size)]
    pics = np.concatenate(out)
    return pics.reshape(n, s, *pics.shape[1:])


def reconstruct(vq: VQModel, x) -> np.ndarray:
    """encode -> decode, in the input's layout."""
    return decode(vq, encode(vq, x)).reshape(np.shape(x))
