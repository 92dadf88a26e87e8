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
for images), and :func:`decode` turns tokens back into pixels or class maps.

Trained tokenizers are cached in ``artifacts/<profile>/vqgan/<name>-<hash>.pt``; training
writes its full state every ``checkpoint_every`` steps to ``<name>-<hash>.partial.pt`` and
a restarted run continues from there to the same weights as an uninterrupted one.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from nuwa_lib import paper, world
from nuwa_lib.utils import checkpoint, progress as P
from nuwa_lib.utils.cache import artifact_path, fetch, key_hash, profile_of
from nuwa_lib.utils.pool import map_in_processes
from nuwa_lib.utils.tensors import to_tensor

KINDS = ("vqvae", "vqgan", "seg")
VQ_VERSION = 1
CHECKPOINT_FORMAT = "nuwa-vq"
STATE_FORMAT = "nuwa-vq-training-state"
VQ_STREAM = 2000          # world seed stream of the tokenizers' training picks
IMAGE_ROLES = ("cc", "moments")     # stills from the image role, frames from the video role
SEG_ROLES = ("cocostuff", "vspw")
SECTION_KEYS = {"threads", "workers", "common", "models", "tokenizer", "sketch_tokenizer", "paper_rows", "eval"}
KIND_NAMES = {"vqvae": "VQ-VAE", "vqgan": "VQ-GAN", "seg": "VQ-GAN-Seg"}


class VQCheckpointError(checkpoint.CheckpointError):
    """A tokenizer checkpoint that cannot be used: corrupt, or made for another config."""


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
        return paper.label(self.canvas, self.grid, self.factor)


def configs_from_profile(cfg: Mapping[str, Any]) -> dict:
    """{name: VQConfig} from the profile's ``vqgan:`` section: ``common`` settings, then each
    entry of ``models`` overriding them."""
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
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"vqgan.models.{name}: unknown key(s) {sorted(unknown)}; allowed: "
                             f"{', '.join(sorted(allowed))}")
        out[name] = VQConfig(**values)
    return out


def config_hash(config: VQConfig, judge_hash: str | None = None) -> str:
    """12 hex digits over the config, the version and (VQ-GAN) the perceptual judge."""
    key = {"version": VQ_VERSION, "config": asdict(config),
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


class EMAQuantizer(nn.Module):
    """Nearest-code lookup (Eq. 1) with an EMA codebook and dead-code restart.

    Buffers: ``codebook`` (N, d_B), the EMA ``cluster_size`` (N) and ``embed_sum`` (N, d_B)
    of the features assigned to each code, ``hits`` (N): assignments since the last
    restart, and ``initialised`` (the codebook starts as random encoder outputs of the
    first training batch)."""

    def __init__(self, n_codes, dim, decay=0.99, beta=0.25, eps=1e-5):
        super().__init__()
        self.n_codes, self.dim, self.decay, self.beta, self.eps = n_codes, dim, decay, beta, eps
        self.register_buffer("codebook", torch.randn(n_codes, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(n_codes))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("hits", torch.zeros(n_codes, dtype=torch.long))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def nearest(self, flat):
        """Eq. (1): index of the closest code for each row of ``flat`` (M, d_B)."""
        d = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
             + self.codebook.pow(2).sum(1)[None])
        return d.argmin(1)

    @torch.no_grad()
    def _pick(self, flat, n, generator):
        idx = torch.randint(0, flat.shape[0], (n,), generator=generator)
        return flat[idx]

    @torch.no_grad()
    def _ema_update(self, flat, idx):
        onehot = F.one_hot(idx, self.n_codes).type(flat.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.n_codes * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def restart_dead(self, flat, threshold, generator) -> int:
        """Move every code assigned fewer than ``threshold`` times since the last restart onto
        a random encoder output of ``flat`` (and start counting again); returns how many
        codes were restarted."""
        dead = self.hits < threshold
        n = int(dead.sum())
        if n:
            fresh = self._pick(flat.detach(), n, generator)
            self.codebook[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0
        self.hits.zero_()
        return n

    def forward(self, z, generator=None):
        """z (B, d_B, h, w) -> (quantised z with straight-through gradients, indices (B, h, w),
        commitment loss, code counts of this batch)."""
        b, d, h, w = z.shape
        flat = rearrange(z, "b d h w -> (b h w) d")
        if self.training and not bool(self.initialised):
            with torch.no_grad():
                self.codebook.copy_(self._pick(flat.detach(), self.n_codes, generator))
                self.embed_sum.copy_(self.codebook)
                self.initialised.fill_(True)
        idx = self.nearest(flat.detach())
        counts = torch.bincount(idx, minlength=self.n_codes)
        if self.training:
            self._ema_update(flat.detach(), idx)
            self.hits += counts
        zq = self.codebook[idx]
        commit = F.mse_loss(flat, zq.detach())
        zq = flat + (zq - flat).detach()            # straight-through estimator
        zq = rearrange(zq, "(b h w) d -> b d h w", b=b, h=h, w=w)
        return zq, idx.view(b, h, w), commit, counts

    def embed(self, idx):
        """B[z]: indices (B, h, w) -> (B, d_B, h, w)."""
        return rearrange(self.codebook[idx], "b h w d -> b d h w")


class VQModel(nn.Module):
    """E, the quantizer and G of one tokenizer (:class:`VQConfig`)."""

    def __init__(self, config: VQConfig):
        super().__init__()
        c = self.config = config
        self.encoder = Encoder(c.in_channels, c.width, c.code_dim, c.factor)
        self.quantizer = EMAQuantizer(c.codebook, c.code_dim, c.ema_decay, c.beta)
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


class PatchDiscriminator(nn.Module):
    """PatchGAN D (Isola et al. 2017): strided convs to a grid of real/fake logits, each
    judging one patch of the input."""

    def __init__(self, cin=3, width=32, canvas=32):
        super().__init__()
        layers, c = [], cin
        for i in range(max(2, int(math.log2(canvas)) - 3)):   # 32 -> 8x8 logits (3 convs)
            cout = width * min(2 ** i, 4)
            layers += [nn.Conv2d(c, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c = cout
        layers += [nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(c, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class PerceptualFeatures(nn.Module):
    """CNN(I) of Eq. (4): the frozen world classifier's conv feature maps after each of its
    first three resolution levels, unit length per position. Inputs bigger than the judge's
    canvas are average-pooled down to it first."""

    TAPS = (0, 2, 4)     # indices in ConvTrunk.net after which features are taken

    def __init__(self, classifier, canvas):
        super().__init__()
        self.layers = classifier.trunk.net[:max(self.TAPS) + 1]
        self.canvas = canvas
        self.requires_grad_(False)
        self.eval()

    def train(self, mode=True):   # always in eval mode: frozen BatchNorm statistics
        return super().train(False)

    def forward(self, x):
        if x.shape[-1] > self.canvas:
            x = F.adaptive_avg_pool2d(x, self.canvas)
        out = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.TAPS:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-6))
        return out


def perceptual_loss(features: PerceptualFeatures, x, y):
    """Eq. (4): mean squared distance of the normalised feature maps, summed over taps."""
    return sum(F.mse_loss(a, b) for a, b in zip(features(x), features(y)))


# --------------------------------------------------------------------------- data
def training_batch(config: VQConfig, step: int):
    """The training pictures of ``step``: a deterministic function of (seed, step), so a
    resumed run sees the same data. Returns float (B, C, H, W): RGB in [-1, 1], or the
    one-hot maps for ``seg``; plus the raw uint8 pictures / int maps."""
    rng = np.random.default_rng([config.seed, VQ_STREAM, step])
    roles = SEG_ROLES if config.kind == "seg" else IMAGE_ROLES
    pics = []
    for i in range(config.batch_size):
        index = int(rng.integers(config.train_size))
        if rng.random() < config.frame_fraction:
            s = world.sample(roles[1], "train", index, config.seed, config.canvas)
            t = int(rng.integers(s.video.shape[0]))
            pics.append(s.seg[t] if config.kind == "seg" else s.video[t])
        else:
            s = world.sample(roles[0], "train", index, config.seed, config.canvas)
            pics.append(s.seg if config.kind == "seg" else s.image)
    raw = np.stack(pics)
    return to_input(raw, config), raw


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
    frames, s = _frames_of(vq, x)
    out = decode(vq, encode(vq, frames))[:, 0]
    return out if np.asarray(x).ndim == frames.ndim else out.reshape(np.asarray(x).shape[:2] + out.shape[1:])


# --------------------------------------------------------------------------- training
def _adaptive_weight(rec_loss, gan_loss, last_layer):
    """Eq. 7 of Esser et al.: ||∇ L_rec|| / ||∇ L_GAN|| at the decoder's last layer."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0, 1e4).detach()


class Trainer:
    """The state of one tokenizer's training run: model, discriminator, optimisers, step and
    history. :meth:`run` continues from :attr:`step`; :meth:`state` / :meth:`load_state`
    move everything in and out of a checkpoint."""

    def __init__(self, config: VQConfig, classifier=None, judge_canvas=32):
        self.config = c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed * 1000 + KINDS.index(c.kind))
            self.model = VQModel(c)
            self.disc = PatchDiscriminator(3, c.disc_width, c.canvas) if c.kind == "vqgan" else None
        if c.kind == "vqgan":
            if classifier is None:
                raise ValueError("a VQ-GAN needs the world classifier judge for its perceptual "
                                 "loss (Eq. 4): pass classifier=")
            self.features = PerceptualFeatures(classifier, judge_canvas)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=c.lr, betas=(0.5, 0.9))
        self.opt_d = (torch.optim.Adam(self.disc.parameters(), lr=c.lr, betas=(0.5, 0.9))
                      if self.disc is not None else None)
        self.step, self.history = 0, []
        self.disc_from = int(c.disc_start * c.steps)

    def _lr(self, step):
        warm = max(1, self.config.steps // 20)
        s = self.config.steps
        return self.config.lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / s))

    def train_step(self):
        c, step = self.config, self.step
        gen = torch.Generator().manual_seed(int(np.random.default_rng([c.seed, VQ_STREAM + 1, step])
                                                .integers(2 ** 62)))
        x, raw = training_batch(c, step)
        for opt in filter(None, (self.opt, self.opt_d)):
            for group in opt.param_groups:
                group["lr"] = self._lr(step)
        self.model.train()
        out, idx, commit, counts = self.model(x, gen)
        log = {"step": step}
        if c.kind == "seg":
            rec = F.cross_entropy(out, torch.as_tensor(raw).long())
        else:
            rec = F.mse_loss(out, x)
        loss = rec + c.beta * commit
        log.update(rec=rec.item(), commit=commit.item())
        if c.kind == "vqgan":
            perc = perceptual_loss(self.features, out, x)
            loss = loss + c.perceptual_weight * perc
            log["perceptual"] = perc.item()
            if step >= self.disc_from:
                g = F.softplus(-self.disc(out)).mean()          # -log D(Î), Eq. 5
                lam = _adaptive_weight(rec + c.perceptual_weight * perc, g,
                                       self.model.decoder.out.weight)
                loss = loss + c.gan_weight * lam * g
                log.update(gan_g=g.item(), gan_weight=float(c.gan_weight * lam))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.disc is not None and step >= self.disc_from:
            # D maximises log D(I) + log(1 - D(Î)) (Eq. 5), as a cross-entropy
            d_loss = (F.softplus(-self.disc(x)).mean() + F.softplus(self.disc(out.detach())).mean())
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            log["gan_d"] = d_loss.item()
        q = self.model.quantizer
        if (step + 1) % c.restart_every == 0:
            # usage over the window that ends here (Fig.: codebook usage over training)
            log["window_usage"] = float((q.hits > 0).float().mean())
            if step + 1 < c.steps:
                with torch.no_grad():
                    flat = rearrange(self.model.encoder(x), "b d h w -> (b h w) d")
                log["restarted"] = q.restart_dead(flat, c.restart_threshold, gen)
        p = counts.float() / counts.sum()
        log.update(loss=loss.item(), batch_codes=int((counts > 0).sum()),
                   perplexity=float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())))
        self.history.append(log)
        self.step += 1
        return log

    def run(self, until=None, progress=True, on_step: Callable | None = None):
        """Train until step ``until`` (default: the config's steps); ``on_step(trainer)``
        runs after every step (checkpointing)."""
        until = self.config.steps if until is None else min(until, self.config.steps)
        bar = P.bar(total=until, initial=self.step, desc=f"{self.config.kind} {self.config.label}",
                    progress=progress, leave=False)
        while self.step < until:
            log = self.train_step()
            bar.update(1)
            if self.step % 20 == 0:
                bar.set_postfix(loss=f"{log['loss']:.3f}", codes=log["batch_codes"])
            if on_step is not None:
                on_step(self)
        bar.close()
        self.model.eval()
        return self

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "disc": None if self.disc is None else self.disc.state_dict(),
                "opt_d": None if self.opt_d is None else self.opt_d.state_dict(),
                "step": self.step, "history": self.history}

    def load_state(self, path, state):
        checkpoint.load_state(path, self.model, state["model"], "tokenizer", VQCheckpointError)
        self.opt.load_state_dict(state["opt"])
        if self.disc is not None:
            checkpoint.load_state(path, self.disc, state["disc"], "discriminator", VQCheckpointError)
            self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.history = int(state["step"]), list(state["history"])


def _payload(config, hash_, fmt, **rest):
    return {"format": fmt, "version": VQ_VERSION, "hash": hash_, "config": asdict(config), **rest}


def _expect(config, hash_):
    return {"version": VQ_VERSION, "hash": hash_, "config": asdict(config)}


def save_tokenizer(path, config, hash_, model, history, info) -> Path:
    return checkpoint.save(path, _payload(config, hash_, CHECKPOINT_FORMAT, info=info,
                                          history=history, state_dict=model.state_dict()))


def load_tokenizer(path, config: VQConfig | None = None, hash_: str | None = None):
    """(VQModel in eval mode, payload) from ``path``; with ``config`` given, a file made for
    another config raises :class:`VQCheckpointError` naming the file and the mismatch."""
    expect = None if config is None else _expect(config, hash_) if hash_ else \
        {"version": VQ_VERSION, "config": asdict(config)}
    payload = checkpoint.load(path, CHECKPOINT_FORMAT, expect, what="tokenizer checkpoint",
                              hint="delete the file to retrain", error=VQCheckpointError)
    if config is None:
        try:
            config = VQConfig(**payload["config"])
        except (TypeError, ValueError) as err:
            raise VQCheckpointError(f"{path}: its config cannot be read back ({err})") from None
    model = checkpoint.load_state(path, VQModel(config), payload["state_dict"], "tokenizer",
                                  VQCheckpointError)
    model.eval().requires_grad_(False)
    return model, payload


def train_tokenizer(config: VQConfig, classifier=None, *, state_path=None, checkpoint_every=100,
                    progress=True, stop_after: int | None = None, hash_: str = "", threads=None,
                    judge_canvas=32):
    """Train one tokenizer; deterministic on CPU for a config. With ``state_path``, the
    full training state is written there every ``checkpoint_every`` steps and a run that
    finds it continues from it. ``stop_after`` ends the run early at that step (what an
    interruption looks like; the state is saved first). Returns (trainer, finished)."""
    tr = Trainer(config, classifier, judge_canvas)
    if state_path is not None and Path(state_path).exists():
        payload = checkpoint.load(state_path, STATE_FORMAT, _expect(config, hash_),
                                  what="tokenizer training state",
                                  hint="delete it to start the run again", error=VQCheckpointError)
        tr.load_state(state_path, payload["state"])

    def save_state(t):
        if state_path is not None and (t.step % checkpoint_every == 0 or t.step == stop_after):
            checkpoint.save(state_path, _payload(config, hash_, STATE_FORMAT, state=t.state()))

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        tr.run(until=stop_after, progress=progress, on_step=save_state)
    finally:
        torch.set_num_threads(before)
    tr.seconds = round(time.perf_counter() - t0, 1)
    return tr, tr.step >= config.steps


def tokenizer_path(profile, name, hash_) -> Path:
    return artifact_path(profile, "vqgan", name, hash_)


def _identity(cfg, name, profile):
    """(config, hash, cache path, judges config) of the profile's tokenizer ``name``; a
    VQ-GAN's hash covers its perceptual judge."""
    from nuwa_lib import judges as J

    configs = configs_from_profile(cfg)
    world._check("tokenizer", name, tuple(configs))
    config, jcfg = configs[name], J.JudgesConfig.from_profile(cfg)
    judge_hash = J.config_hash("classifier", jcfg) if config.kind == "vqgan" else None
    hash_ = config_hash(config, judge_hash)
    return config, hash_, tokenizer_path(profile, name, hash_), jcfg


def get_tokenizer(cfg: Mapping[str, Any], name: str, *, classifier=None, profile=None,
                  train_if_missing=True, progress=True, judges=None):
    """The tokenizer ``name`` of the profile's ``vqgan.models``: loaded from
    ``artifacts/<profile>/vqgan/`` when cached under its config hash, otherwise trained
    (resuming a partial run when one is there) and cached. A VQ-GAN needs the world
    classifier (from ``judges``, or fetched through ``judges.get_judges``). Returns
    (VQModel, info) with info holding the training history."""
    from nuwa_lib import judges as J

    profile = profile_of(cfg, profile)
    config, hash_, path, jcfg = _identity(cfg, name, profile)

    def load(path):
        model, payload = load_tokenizer(path, config, hash_)
        return model, {**payload.get("info", {}), "history": payload.get("history", []),
                       "path": str(path), "source": "loaded"}

    def build():
        nonlocal classifier
        if config.kind == "vqgan" and classifier is None:
            classifier = (judges or J.get_judges(cfg, names=("classifier",), profile=profile,
                                                 progress=progress)).classifier
        state_path = path.with_name(f"{name}-{hash_}.partial.pt")
        threads = (cfg.get("vqgan") or {}).get("threads")
        tr, _ = train_tokenizer(config, classifier, state_path=state_path, progress=progress,
                                hash_=hash_, threads=threads, judge_canvas=jcfg.canvas)
        info = {"name": name, "hash": hash_, "steps": tr.step, "train_seconds": tr.seconds,
                "parameters": sum(p.numel() for p in tr.model.parameters())}
        save_tokenizer(path, config, hash_, tr.model, tr.history, info)
        state_path.unlink(missing_ok=True)
        model, _ = load_tokenizer(path, config, hash_)
        return model, {**info, "history": tr.history, "path": str(path), "source": "trained"}

    return fetch(path, load, build, build_if_missing=train_if_missing,
                 missing=f"no cached tokenizer {name!r} at {path}; run notebook 02_vqgan or "
                         f"get_tokenizer(..., train_if_missing=True)")[0]


def _train_in_worker(cfg, name, profile):
    """One tokenizer trained (or found) in a worker process: returns nothing, the cache is
    the result."""
    get_tokenizer(cfg, name, profile=profile, progress=P.for_workers())


def get_tokenizers(cfg: Mapping[str, Any], names=None, *, profile=None, judges=None,
                   workers=None, progress=True):
    """{name: (VQModel, info)} for ``names`` (default: every model of the profile). Missing
    tokenizers are trained first, ``workers`` at a time in separate processes (default:
    the profile's ``vqgan.workers``); each run is the same as alone (training is a function
    of its config), only the wall time changes. Then all are loaded from the cache."""
    from nuwa_lib import judges as J

    profile = profile or cfg.get("name")
    configs = configs_from_profile(cfg)
    names = list(configs) if names is None else list(names)
    for name in names:
        world._check("tokenizer", name, tuple(configs))
    workers = int(workers or (cfg.get("vqgan") or {}).get("workers") or 1)
    if any(configs[n].kind == "vqgan" for n in names):   # the judge first, once, in this process
        judges = judges or J.get_judges(cfg, names=("classifier",), profile=profile,
                                        progress=progress)
    missing = [n for n in names if not _cached(cfg, n, profile)]
    if workers > 1 and len(missing) > 1:
        # largest first, so the long runs start early: pixels x steps
        missing.sort(key=lambda n: -configs[n].canvas ** 2 * configs[n].steps)
        map_in_processes(_train_in_worker, [(dict(cfg), n, profile) for n in missing], workers)
    return {n: get_tokenizer(cfg, n, profile=profile, judges=judges, progress=progress)
            for n in names}


def _cached(cfg, name, profile) -> bool:
    return _identity(cfg, name, profile)[2].exists()


# --------------------------------------------------------------------------- evaluation
def heldout_pictures(config: VQConfig, n: int, video_role=False, seed=None):
    """``n`` test-split pictures the tokenizers never train on: images of the MSCOCO role
    (seg maps of COCO-Stuff's) or, with ``video_role``, frames of BAIR's (VSPW's maps)."""
    seed = config.seed if seed is None else seed
    if config.kind == "seg":
        role = "vspw" if video_role else "cocostuff"
    else:
        role = "bair" if video_role else "mscoco"
    out = []
    for i in range(n):
        s = world.sample(role, "test", i, seed, config.canvas)
        if video_role:
            t = i % s.video.shape[0]
            out.append(s.seg[t] if config.kind == "seg" else s.video[t])
        else:
            out.append(s.seg if config.kind == "seg" else s.image)
    return np.stack(out)


def codebook_usage(vq: VQModel, pictures) -> dict:
    """How many codes the tokens of ``pictures`` use, and the perplexity of their usage."""
    tokens = encode(vq, pictures).flatten()
    counts = torch.bincount(tokens, minlength=vq.config.codebook).float()
    p = counts[counts > 0] / counts.sum()
    used = int((counts > 0).sum())
    return {"codes_used": used, "usage": used / vq.config.codebook,
            "perplexity": float(torch.exp(-(p * p.log()).sum()))}



def downsample(images, size) -> np.ndarray:
    """Average-pool uint8 images (N, H, W, 3) to size x size (H a multiple of size)."""
    n, h, w, c = images.shape
    if h == size:
        return images
    k = h // size
    return images.reshape(n, size, k, size, k, c).mean((2, 4)).round().astype(np.uint8)


def evaluate_images(vq: VQModel, classifier, n: int, judge_canvas=32) -> dict:
    """Table 4's columns for an image tokenizer on ``n`` held-out MSCOCO-role images:
    SSIM of reconstructions at the tokenizer's resolution, FID (world features) of the
    reconstructions against the originals (both pooled to the judge's canvas), and codebook
    usage."""
    from nuwa_lib import metrics

    pics = heldout_pictures(vq.config, n)
    rec = reconstruct(vq, pics)
    small = downsample(pics, judge_canvas), downsample(rec, judge_canvas)
    return {"SSIM": metrics.ssim(pics, rec), "FID": metrics.fid(small[1], small[0], classifier),
            **codebook_usage(vq, pics)}


def evaluate_sketches(vq: VQModel, n: int) -> list:
    """Table 4's lower part for a VQ-GAN-Seg: PA and FWIoU (in %) of reconstructed maps of
    ``n`` held-out COCO-Stuff-role sketches and ``n`` VSPW-role video frames."""
    from nuwa_lib.segmentation import fwiou, pixel_accuracy

    rows = []
    for data, video in (("COCO-Stuff role", False), ("VSPW role", True)):
        maps = heldout_pictures(vq.config, n, video_role=video)
        rec = reconstruct(vq, maps)
        rows.append({"data": data, "PA": 100 * pixel_accuracy(rec, maps),
                     "FWIoU": 100 * fwiou(rec, maps), **codebook_usage(vq, maps)})
    return rows


def blur_reference(config: VQConfig, classifier, n: int, radius=1.0, judge_canvas=32) -> dict:
    """What a reconstruction that only blurs scores: the held-out pictures against themselves
    blurred by a Gaussian of ``radius`` px (the scale of the SSIM and FID columns)."""
    from nuwa_lib import metrics

    pics = heldout_pictures(config, n)
    blurred = metrics.gaussian_blur(pics, radius)
    return {"SSIM": metrics.ssim(pics, blurred),
            "FID": metrics.fid(downsample(blurred, judge_canvas), downsample(pics, judge_canvas),
                               classifier)}


def table4(cfg, tokenizers: Mapping[str, VQModel], classifier, n: int, blur_radius=1.0) -> list:
    """Table 4 on the world: one row per image tokenizer (SSIM, FID) and per VQ-GAN-Seg
    evaluation set (PA, FWIoU), each beside the paper's row it stands in for
    (``vqgan.paper_rows`` of the profile; the sketch rows pair with COCO-Stuff and VSPW),
    and a reference row: the originals blurred by ``blur_radius`` px."""
    jcanvas = int((cfg.get("world") or {}).get("canvas", 32))
    paper_rows = (cfg.get("vqgan") or {}).get("paper_rows") or {}
    main = next(iter(vq.config for vq in tokenizers.values() if vq.config.kind != "seg"))
    ref = blur_reference(main, classifier, n, blur_radius, jcanvas)
    rows = [{"part": "images", "model": "reference", "name": f"originals, Gaussian blur r={blur_radius:g}",
             "R → D (rate)": f"{main.canvas}² (no tokens)", "tokens": 0, "data": "MSCOCO role", **ref}]
    for name, vq in tokenizers.items():
        c = vq.config
        base = {"part": "sketches" if c.kind == "seg" else "images", "model": KIND_NAMES[c.kind],
                "name": name, "R → D (rate)": c.label, "tokens": c.grid ** 2}
        if c.kind == "seg":
            for i, r in enumerate(evaluate_sketches(vq, n)):
                p = paper.TABLE4_SKETCHES[i]
                rows.append({**base, "data": r["data"], "PA": r["PA"], "FWIoU": r["FWIoU"],
                             "codes used": r["codes_used"],
                             "paper: data": p["data"],
                             "paper: R → D (rate)": paper.label(p["R"], p["D"], p["F"]),
                             "paper: PA": p["PA"], "paper: FWIoU": p["FWIoU"]})
            continue
        r = evaluate_images(vq, classifier, n, jcanvas)
        row = {**base, "data": "MSCOCO role", "SSIM": r["SSIM"], "FID": r["FID"],
               "codes used": r["codes_used"]}
        if name in paper_rows:
            p = paper.TABLE4_IMAGES[paper_rows[name]]
            row.update({"paper: model": p["model"], "paper: data": p["data"],
                        "paper: R → D (rate)": paper.label(p["R"], p["D"], p["F"]),
                        "paper: SSIM": p["SSIM"], "paper: FID": p["FID"]})
        rows.append(row)
    return rows


def table4_claims(rows) -> list:
    """The paper's Table 4 claims checked on our rows: {claim, evidence, holds}."""
    img = {r["name"]: r for r in rows if r["part"] == "images" and r["model"] != "reference"}
    seg = [r for r in rows if r["part"] == "sketches"]
    by = {}
    for r in img.values():
        by.setdefault((r["model"], r["tokens"]), []).append(r)
    out = []

    def claim(text, evidence, holds):
        out.append({"claim": text, "evidence": evidence, "holds": bool(holds)})

    for (model, tokens), rs in sorted(by.items()):
        if model != "VQ-VAE":
            continue
        for g in by.get(("VQ-GAN", tokens), []):
            if g["R → D (rate)"] != rs[0]["R → D (rate)"]:
                continue
            v = rs[0]
            claim(f"VQ-GAN beats VQ-VAE at the same tokens ({v['R → D (rate)']}): FID",
                  f"FID {g['FID']:.2f} vs {v['FID']:.2f}", g["FID"] < v["FID"])
            claim(f"VQ-GAN beats VQ-VAE at the same tokens ({v['R → D (rate)']}): SSIM",
                  f"SSIM {g['SSIM']:.3f} vs {v['SSIM']:.3f}", g["SSIM"] > v["SSIM"])
    gans = sorted((r for r in img.values() if r["model"] == "VQ-GAN"), key=lambda r: r["tokens"])
    same_canvas = {}
    for r in gans:
        same_canvas.setdefault(r["R → D (rate)"].split("²")[0], []).append(r)
    for canvas, rs in same_canvas.items():
        if len(rs) > 1:
            fids = [r["FID"] for r in rs]
            claim(f"more tokens for the same {canvas}² pictures give lower FID",
                  ", ".join(f"{r['tokens']} tokens: {r['FID']:.2f}" for r in rs),
                  all(a > b for a, b in zip(fids, fids[1:])))
    for a in gans:
        for b in gans:
            same_rate = a["R → D (rate)"].split("(")[1] == b["R → D (rate)"].split("(")[1]
            if a is not b and same_rate and a["tokens"] < b["tokens"]:
                claim(f"at the same rate, more tokens give lower FID ({a['R → D (rate)']} vs "
                      f"{b['R → D (rate)']})", f"FID {a['FID']:.2f} vs {b['FID']:.2f}",
                      b["FID"] < a["FID"])
    rate = lambda r: r["R → D (rate)"].split("(")[1]
    pairs_rate = [(a, b) for a in gans for b in gans if a["tokens"] < b["tokens"] and rate(a) == rate(b)]
    pairs_tokens = [(a, b) for a in gans for b in gans
                    if a["tokens"] == b["tokens"] and rate(a) < rate(b)]
    if pairs_rate and pairs_tokens:
        d_tokens = max(abs(a["FID"] - b["FID"]) for a, b in pairs_rate)
        d_rate = max(abs(a["FID"] - b["FID"]) for a, b in pairs_tokens)
        claim("the number of tokens matters more than the rate (FID gap at the same rate with "
              "more tokens > FID gap at the same tokens with another rate)",
              f"{d_tokens:.2f} vs {d_rate:.2f}", d_tokens > d_rate)
    for r in seg:
        claim(f"VQ-GAN-Seg reconstructs {r['data']} sketches well (paper: PA ≥ 95%)",
              f"PA {r['PA']:.2f}%, FWIoU {r['FWIoU']:.2f}%", r["PA"] >= 95)
    return out


def check_targets(rows, cfg) -> list:
    """The profile's bars (``vqgan.eval.targets``) for the tokenizers later notebooks use:
    SSIM of the image tokenizer, PA of the sketch tokenizer on each set, and the share of
    codes in use. Rows {target, value, bar, met}."""
    section = cfg.get("vqgan") or {}
    bars = (section.get("eval") or {}).get("targets") or {}
    main, sketch = section.get("tokenizer"), section.get("sketch_tokenizer")
    out = []
    for r in rows:
        if r["name"] == main:
            out.append({"target": f"{main}: SSIM", "value": r["SSIM"], "bar": bars.get("ssim")})
            out.append({"target": f"{main}: codes used (share)", "value": r["codes used"] /
                        configs_from_profile(cfg)[main].codebook, "bar": bars.get("usage")})
        elif r["name"] == sketch:
            out.append({"target": f"{sketch}: PA % ({r['data']})", "value": r["PA"],
                        "bar": bars.get("pa")})
            out.append({"target": f"{sketch}: codes used (share, {r['data']})", "value":
                        r["codes used"] / configs_from_profile(cfg)[sketch].codebook,
                        "bar": bars.get("usage")})
    for t in out:
        t["met"] = "" if t["bar"] is None else bool(t["value"] >= t["bar"])
        t["bar"] = "" if t["bar"] is None else t["bar"]
    return out
