"""Pictures as network inputs, and eval mode for a block: the two tensor helpers every
network of the library (judges, metrics, tokenizers, sampling) shares."""
from __future__ import annotations

import numpy as np
import torch
from einops import rearrange


def to_tensor(images) -> torch.Tensor:
    """uint8 images (..., H, W, 3), numpy or torch, -> float (..., 3, H, W) in [-1, 1].

    (N, H, W, 3) images give (N, 3, H, W); (N, T, H, W, 3) videos give (N, T, 3, H, W)."""
    x = images if torch.is_tensor(images) else torch.from_numpy(np.ascontiguousarray(images))
    if x.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 with values 0..255, got dtype {x.dtype}")
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"images must have shape (..., H, W, 3), got {tuple(x.shape)}")
    return rearrange(x, "... h w c -> ... c h w").float().div(127.5).sub(1.0)


class evaluating:
    """Context manager: the module in eval mode inside, its previous mode restored after."""

    def __init__(self, module):
        self.module = module

    def __enter__(self):
        self.was_training = self.module.training
        self.module.eval()
        return self.module

    def __exit__(self, *exc):
        self.module.train(self.was_training)
        return False
