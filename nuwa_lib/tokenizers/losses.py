"""The tokenizers' losses apart from their networks, one function per term, as in
taming-transformers: Eq. 3's reconstruction and commitment terms (its codebook term is
replaced by the quantizer's moving averages), Eq. 4's perceptual term with its frozen
features, Eq. 5's two GAN terms with the patch discriminator, and the adaptive weight of
the GAN term. :data:`RECIPES` says which terms each kind of tokenizer trains with; the
trainer (:mod:`~nuwa_lib.tokenizers.vq_train`) composes them from it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


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


# ------------------------------------------------------------------------ Eq. 3
def pixel_reconstruction(out, x, raw=None):
    """||I - Î||² of Eq. (3), per pixel and channel, on pictures in [-1, 1]."""
    return F.mse_loss(out, x)


def class_reconstruction(logits, x=None, raw=None):
    """A sketch's reconstruction term: cross-entropy of the decoder's class logits
    (B, C, H, W) against the class map ``raw`` (B, H, W)."""
    return F.cross_entropy(logits, torch.as_tensor(raw).long())


def commitment(z, zq):
    """||E(I) - sg[B[z]]||² of Eq. (3), before its weight β: keeps the encoder near its codes."""
    return F.mse_loss(z, zq.detach())


# ------------------------------------------------------------------------ Eq. 5
def generator_loss(disc, fake):
    """-log D(Î), the generator's side of Eq. (5)."""
    return F.softplus(-disc(fake)).mean()


def discriminator_loss(disc, real, fake):
    """-(log D(I) + log(1 - D(Î))), the discriminator's side of Eq. (5), as a cross-entropy;
    ``fake`` is detached here."""
    return F.softplus(-disc(real)).mean() + F.softplus(disc(fake.detach())).mean()


def adaptive_weight(rec_loss, gan_loss, last_layer):
    """Eq. 7 of Esser et al.: ||∇ L_rec|| / ||∇ L_GAN|| at the decoder's last layer."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0, 1e4).detach()


# ------------------------------------------------------------------------ recipes
@dataclass(frozen=True)
class Recipe:
    """The terms one kind of tokenizer trains with: a reconstruction term ``(out, x, raw)``
    and the commitment term always, Eq. 4's perceptual term and Eq. 5's GAN terms when set."""
    reconstruction: Callable
    perceptual: bool = False
    adversarial: bool = False


RECIPES = {
    "vqvae": Recipe(pixel_reconstruction),                                   # Eq. 3
    "vqgan": Recipe(pixel_reconstruction, perceptual=True, adversarial=True),  # Eqs. 3-5
    "seg": Recipe(class_reconstruction),         # VQ-GAN-Seg: class maps, Eq. 3 with a CE
}
