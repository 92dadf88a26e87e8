"""The codebook: vector quantisation with an exponential moving average of the assigned
encodings (Eq. 2; the EMA update replaces Eq. 3's codebook term).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .losses import commitment


class EMAQuantizer(nn.Module):
    """Nearest-code lookup (Eq. 1) with an EMA codebook and dead-code restart.

    Buffers: ``codebook`` (N, d_B), the EMA ``cluster_size`` (N) and ``embed_sum`` (N, d_B)
    of the features assigned to each code, ``hits`` (N): assignments since the last
    restart, and ``initialised`` (the codebook starts as random encoder outputs of the
    first training batch).

    With ``l2`` the encodings and the codes live on the unit sphere (Yu et al. 2022,
    ViT-VQGAN): the lookup compares directions only, and the decoder reads unit codes."""

    def __init__(self, n_codes, dim, decay=0.99, beta=0.25, eps=1e-5, l2=False):
        super().__init__()
        self.n_codes, self.dim, self.decay, self.beta, self.eps = n_codes, dim, decay, beta, eps
        self.l2 = bool(l2)
        self.register_buffer("codebook", torch.randn(n_codes, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(n_codes))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("hits", torch.zeros(n_codes, dtype=torch.long))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def _unit(self, flat):
        return F.normalize(flat, dim=1) if self.l2 else flat

    def nearest(self, flat):
        """Eq. (1): index of the closest code for each row of ``flat`` (M, d_B)."""
        flat = self._unit(flat)
        d = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
             + self.codebook.pow(2).sum(1)[None])
        return d.argmin(1)

    def _pick(self, flat, n, generator):
        """``n`` random rows of ``flat``: the fresh codes of (re)initialisation."""
        return flat[torch.randint(0, flat.shape[0], (n,), generator=generator)]

    @torch.no_grad()
    def _ema_update(self, flat, idx):
        onehot = F.one_hot(idx, self.n_codes).type(flat.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.n_codes * self.eps) * n
        self.codebook.copy_(self._unit(self.embed_sum / smoothed[:, None]))

    @torch.no_grad()
    def restart_dead(self, flat, threshold, generator) -> int:
        """Move every code assigned fewer than ``threshold`` times since the last restart onto
        a random encoder output of ``flat`` (and start counting again); returns how many
        codes were restarted."""
        dead = self.hits < threshold
        n = int(dead.sum())
        if n:
            fresh = self._pick(self._unit(flat.detach()), n, generator)
            self.codebook[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0
        self.hits.zero_()
        return n

    def forward(self, z, generator=None):
        """z (B, d_B, h, w) -> (quantised z with straight-through gradients, indices (B, h, w),
        commitment loss, code counts of this batch)."""
        b, d, h, w = z.shape
        flat = self._unit(rearrange(z, "b d h w -> (b h w) d"))
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
        commit = commitment(flat, zq)
        zq = flat + (zq - flat).detach()            # straight-through estimator
        zq = rearrange(zq, "(b h w) d -> b d h w", b=b, h=h, w=w)
        return zq, idx.view(b, h, w), commit, counts

    def embed(self, idx):
        """B[z]: indices (B, h, w) -> (B, d_B, h, w)."""
        return rearrange(self.codebook[idx], "b h w d -> b d h w")
