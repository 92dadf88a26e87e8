"""Generating pictures for a task: a batch of task data -> sampled tokens -> pixels.

The glue the task notebooks share: :class:`~nuwa_lib.training.task_data.TaskData` says what
conditions the encoder and what primes the decoder (``tasks.py``),
:func:`~nuwa_lib.generation.sampling.sample` draws the target tokens with the KV cache, and the
visual VQ-GAN draws them as pixels.
With ``n > 1`` and the world CLIP, the best of n samples per caption is kept, as the paper
keeps the best of 60 (Sec. 4.2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..model.config import Condition
from ..tokenizers import vqgan
from ..training.task_data import TaskData
from . import sampling


@dataclass
class Generated:
    """Samples for a batch of a task's data. Pixels are uint8 (B, s, H, W, 3), s = 1 for
    images (take ``[:, 0]``); ``real`` is the data's own target, ``given`` what the decoder
    was primed from (the original picture for manipulation tasks)."""
    task: str
    samples: np.ndarray
    real: np.ndarray
    given: np.ndarray
    tokens: torch.Tensor
    captions: Optional[list]
    indices: list
    scores: Optional[np.ndarray] = None      # (B, n) CLIP scores when best-of-n was used


def generate(model, data: TaskData, indices: Sequence[int], visual: vqgan.VQModel, *,
             temperature: float = 1.0, top_k: Optional[int] = None, seed: int = 0,
             n: int = 1, clip=None, batch_size: Optional[int] = None,
             progress: bool = False, guidance: Optional[float] = None) -> Generated:
    """Sample the targets of ``data``'s items ``indices`` with ``model``.

    Conditions and primes come from the task (``data.batch``); given positions are kept.
    ``n > 1`` draws n samples per item and keeps the one the world ``clip`` scores highest
    against the item's caption (needs a captioned task). ``guidance`` (beyond the paper):
    classifier-free guidance at that scale against the word "None" (a text task; for a model
    trained with ``train.cond_dropout``). Deterministic for a seed."""
    if n > 1 and clip is None:
        raise ValueError("best-of-n (n > 1) needs the world CLIP judge: pass clip=")
    indices = list(indices)
    b = data.batch(indices)
    known = data.tokens.captions
    captions = None if known is None else [known[i] for i in indices]
    if n > 1 and captions is None:
        raise ValueError(f"best-of-n ranks samples by their caption; task {b.task} on role "
                         f"{data.tokens.role!r} has none")
    grid = tuple(b.target.shape[1:])
    gen = torch.Generator().manual_seed(int(seed))
    kw = dict(temperature=temperature, top_k=top_k, generator=gen, progress=progress)
    if guidance is not None:
        if not data.task.reads_caption or data.none_ids is None:
            raise ValueError(f"guidance needs a captioned task whose data holds the ids of "
                             f"'None'; task {b.task} reads no caption")
        kw.update(guidance=guidance, uncond=Condition.from_text(
            data.none_ids.expand(len(indices), -1).long()))
    prime = dict(prime=b.given, prime_mask=b.prime) if bool(b.prime.any()) else {}
    scores = None
    if n > 1:
        from ..evaluation.metrics import clip_similarity

        def score(tokens, i):
            pics = vqgan.decode(visual, tokens)
            pics = pics[:, 0] if pics.shape[1] == 1 else pics
            return clip_similarity(clip, pics, [captions[i]] * len(pics))

        best = sampling.best_of_n(model, b.cond, grid, n, score, batch_size=batch_size,
                                  **prime, **kw)
        tokens, scores = best.tokens, best.scores.numpy()
    else:
        tokens = sampling.sample(model, b.cond, grid, **prime, **kw)
    return Generated(b.task, vqgan.decode(visual, tokens), vqgan.decode(visual, b.target),
                     vqgan.decode(visual, b.given), tokens, captions, indices, scores)
