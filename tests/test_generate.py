"""Task-level generation: conditions and primes from the task's data, tokens to pixels,
best-of-n by CLIP (Sec. 4.2)."""
import numpy as np
import pytest
import torch
from task_helpers import WORLD

from nuwa_lib.evaluation import judge_nets
from nuwa_lib.generation import generate as G
from nuwa_lib.training import task_data


def test_text_to_image_gives_pixels_and_is_seeded(toks, model):
    data = task_data.task_data("T2I", "mscoco", "test", 3, toks, progress=False, **WORLD)
    a = G.generate(model, data, [0, 2], toks.visual, seed=1)
    assert a.samples.shape == a.real.shape == (2, 1, 32, 32, 3) and a.samples.dtype == np.uint8
    assert a.captions == [data.tokens.captions[0], data.tokens.captions[2]]
    b = G.generate(model, data, [0, 2], toks.visual, seed=1)
    assert torch.equal(a.tokens, b.tokens)
    c = G.generate(model, data, [0, 2], toks.visual, seed=2)
    assert not torch.equal(a.tokens, c.tokens)


def test_video_prediction_keeps_the_given_first_frame(toks, model):
    data = task_data.task_data("V2V", "bair", "test", 2, toks, progress=False, **WORLD)
    g = G.generate(model, data, [0, 1], toks.visual, seed=0)
    assert g.tokens.shape == (2, 4, 8, 8)
    assert torch.equal(g.tokens[:, 0], data.batch([0, 1]).target[:, 0])
    assert g.captions is None


def test_best_of_n_keeps_the_clip_favourite(toks, model):
    data = task_data.task_data("T2I", "mscoco", "test", 2, toks, progress=False, **WORLD)
    clip = judge_nets.TinyCLIP(width=4, embed_dim=8, text_dim=8, text_layers=1, heads=2).eval()
    g = G.generate(model, data, [0, 1], toks.visual, seed=0, n=3, clip=clip)
    assert g.scores.shape == (2, 3)
    from nuwa_lib.evaluation.metrics import clip_similarity
    best = clip_similarity(clip, g.samples[:, 0], g.captions)
    assert np.allclose(best, g.scores.max(1), atol=1e-5)
    with pytest.raises(ValueError, match="clip="):
        G.generate(model, data, [0], toks.visual, n=2)
    v2v = task_data.task_data("V2V", "bair", "test", 1, toks, progress=False, **WORLD)
    with pytest.raises(ValueError, match="caption"):
        G.generate(model, v2v, [0], toks.visual, n=2, clip=clip)
