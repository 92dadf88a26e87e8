"""NÜWA's 3D encoder-decoder (Sec. 3.3, Eqs. 12-15): shapes, causality, the KV cache,
gradients, parameter counts and argument errors."""
import math

import pytest
import torch

from nuwa_lib.model.config import ATTENTION_KINDS, Condition, NuwaConfig
from nuwa_lib.model.layers import decode_windows
from nuwa_lib.model.nuwa import (
    Nuwa,
    count_parameters,
    meta_model,
    n_parameters,
    open_choices,
    parameter_table,
)
from nuwa_lib.utils.profiles import load_profile

B = 2
TEXT_LEN, TEXT_VOCAB, CODES, SKETCH_CODES = 6, 300, 40, 12
IMAGE, VIDEO = (1, 4, 5), (3, 4, 5)


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


def tiny(**overrides) -> NuwaConfig:
    values = dict(dim=16, heads=2, encoder_layers=1, decoder_layers=2, text_vocab=TEXT_VOCAB,
                  text_length=TEXT_LEN, codebook_size=CODES, sketch_codebook_size=SKETCH_CODES,
                  target_tokens=(3, 4, 5), sketch_tokens=(2, 3, 3), image_extent=(1, 1, 1),
                  video_extent=(1, 1, 2))
    return NuwaConfig(**{**values, **overrides})


def model_for(seed=0, dtype=torch.float64, **overrides) -> Nuwa:
    torch.manual_seed(seed)
    return Nuwa(tiny(**overrides)).to(dtype).eval()


def conditions(g: torch.Generator) -> dict:
    """One of each condition: padded text, the word "None", a sketch image, a sketch video."""
    keep = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    none_keep = torch.tensor([[True] + [False] * 5] * B)
    return {
        "text": Condition.from_text(torch.randint(0, TEXT_VOCAB, (B, TEXT_LEN), generator=g), keep),
        "none": Condition.from_text(torch.full((B, TEXT_LEN), 7), none_keep),
        "sketch image": Condition.from_sketch(torch.randint(0, SKETCH_CODES, (B, 1, 3, 3), generator=g)),
        "sketch video": Condition.from_sketch(torch.randint(0, SKETCH_CODES, (B, 2, 3, 3), generator=g)),
    }


def targets(g: torch.Generator) -> dict:
    return {"image": torch.randint(0, CODES, (B, *IMAGE), generator=g),
            "video": torch.randint(0, CODES, (B, *VIDEO), generator=g)}


def decode_step_by_step(model, cond, target):
    """Logits of every slot from the KV cache, feeding the true previous tokens."""
    cache = model.start(cond, tuple(target.shape[1:]))
    flat = target.reshape(target.shape[0], -1)
    out = [model.step(cache)]
    for t in range(flat.shape[1] - 1):
        out.append(model.step(cache, flat[:, t]))
    assert cache.done
    return torch.stack(out, dim=1)


# ------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("cond_name", ["text", "none", "sketch image", "sketch video"])
@pytest.mark.parametrize("target_name", ["image", "video"])
def test_logits_cover_every_target_slot_for_every_condition(cond_name, target_name):
    g = torch.Generator().manual_seed(1)
    model = model_for(dtype=torch.float32)
    cond, target = conditions(g)[cond_name], targets(g)[target_name]
    logits = model(cond, target)
    assert logits.shape == (B, math.prod(target.shape[1:]), CODES)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert model.encode(cond).shape == (B, math.prod(cond.grid), 16)


def test_condition_grids_follow_the_paper():
    g = torch.Generator().manual_seed(0)
    c = conditions(g)
    assert c["text"].grid == (TEXT_LEN, 1, 1) and c["text"].modality == "text"  # 1 x 1 x L
    assert c["sketch image"].grid == (1, 3, 3) and c["sketch image"].modality == "image"
    assert c["sketch video"].grid == (2, 3, 3) and c["sketch video"].modality == "video"
    rep = c["text"].repeat(3)
    assert rep.batch_size == 3 * B and torch.equal(rep.tokens[:3], c["text"].tokens[:1].expand(3, -1))
    assert torch.equal(rep.keep[3:], c["text"].keep[1:].expand(3, -1))


# ---------------------------------------------------------------------- causality
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_causal_output_ignores_future_tokens(kind):
    g = torch.Generator().manual_seed(2)
    model = model_for(decoder_attention=kind, encoder_attention=kind)
    cond, target = conditions(g)["sketch video"], targets(g)["video"]
    before = model(cond, target)
    n = target[0].numel()
    for t in (0, 7, 21, n - 1):
        changed = target.clone().reshape(B, -1)
        changed[:, t] = (changed[:, t] + 1) % CODES
        after = model(cond, changed.reshape(target.shape))
        assert torch.equal(after[:, : t + 1], before[:, : t + 1]), f"slot <= {t} saw token {t}"
        if t + 1 < n:   # slot t+1 reads token t (right shift behind <bos>)
            assert not torch.allclose(after[:, t + 1], before[:, t + 1])


def test_padded_text_tokens_are_invisible():
    g = torch.Generator().manual_seed(3)
    model = model_for()
    cond, target = conditions(g)["text"], targets(g)["video"]
    tokens = cond.tokens.clone()
    tokens[~cond.keep] = (tokens[~cond.keep] + 5) % TEXT_VOCAB
    other = Condition.from_text(tokens, cond.keep)
    assert torch.allclose(model(cond, target), model(other, target), atol=1e-12)
    kept = cond.tokens.clone()
    kept[0, 0] = (kept[0, 0] + 5) % TEXT_VOCAB      # a real token does matter
    assert not torch.allclose(model(Condition.from_text(kept, cond.keep), target)[0],
                              model(cond, target)[0])


# ------------------------------------------------------------------------ KV cache
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
@pytest.mark.parametrize("cond_name", ["text", "sketch video"])
@pytest.mark.parametrize("target_name", ["image", "video"])
def test_cached_steps_equal_teacher_forcing(kind, cond_name, target_name):
    g = torch.Generator().manual_seed(4)
    model = model_for(encoder_attention=kind, decoder_attention=kind)
    cond, target = conditions(g)[cond_name], targets(g)[target_name]
    expected = model(cond, target)
    assert torch.allclose(decode_step_by_step(model, cond, target), expected, atol=1e-5, rtol=0)


def test_cached_steps_equal_teacher_forcing_in_float32_with_tied_embeddings():
    g = torch.Generator().manual_seed(5)
    model = model_for(dtype=torch.float32, tie_embeddings=True)
    cond, target = conditions(g)["none"], targets(g)["video"]
    assert torch.allclose(decode_step_by_step(model, cond, target), model(cond, target),
                          atol=1e-5, rtol=0)


def test_step_reads_only_the_cached_keys_in_its_window():
    g = torch.Generator().manual_seed(6)
    model = model_for()
    cond, target = conditions(g)["sketch video"], targets(g)["video"]
    expected = model(cond, target)
    flat = target.reshape(B, -1)
    cache = model.start(cond, VIDEO)
    model.step(cache)
    for t in range(1, flat.shape[1]):
        outside = torch.ones(flat.shape[1], dtype=torch.bool)
        outside[cache.self_windows[t]] = False
        kept = [(k[:, :, outside].clone(), v[:, :, outside].clone())
                for k, v in zip(cache.self_k, cache.self_v)]
        for k, v in zip(cache.self_k, cache.self_v):   # poison every key it must not read
            k[:, :, outside] = float("nan")
            v[:, :, outside] = float("nan")
        logits = model.step(cache, flat[:, t - 1])
        assert torch.allclose(logits, expected[:, t], atol=1e-5, rtol=0)
        for (k, v), (k0, v0) in zip(zip(cache.self_k, cache.self_v), kept):
            k[:, :, outside], v[:, :, outside] = k0, v0   # later windows may need them


def test_a_decoding_step_costs_a_window_not_the_sequence():
    # the paper's video grid, e = (3, 3, 3): at most 7 x 7 x 7 keys, causal half of them
    windows = decode_windows("nearby", (10, 21, 21), (10, 21, 21), (3, 3, 3), True, "cpu")
    assert len(windows) == 10 * 21 * 21
    assert max(len(w) for w in windows) <= 7 * 7 * 4
    assert all(int(w[-1]) == t for t, w in enumerate(windows))   # ends at the slot itself
    cross = decode_windows("nearby", (10, 21, 21), (77, 1, 1), (None, 0, 0), False, "cpu")
    assert all(len(w) == 77 for w in cross)                      # the whole text


def test_priming_then_sampling_continues_the_given_tokens():
    """The loop sampling.py will run: given tokens first, then the model's own choices."""
    g = torch.Generator().manual_seed(7)
    model = model_for()
    cond, target = conditions(g)["none"], targets(g)["video"]
    flat, n_prime = target.reshape(B, -1), 20        # the first frame primes (V2V)
    cache = model.start(cond, VIDEO)
    logits, chosen = model.step(cache), []
    for t in range(flat.shape[1]):
        token = flat[:, t] if t < n_prime else logits.argmax(-1)
        chosen.append(token)
        if not cache.done:
            logits = model.step(cache, token)
    chosen = torch.stack(chosen, 1)
    assert torch.equal(chosen[:, :n_prime], flat[:, :n_prime])
    # greedy choices are the argmax of the teacher-forced logits on the chosen sequence
    forced = model(cond, chosen.reshape(target.shape))
    assert torch.equal(forced[:, n_prime:].argmax(-1), chosen[:, n_prime:])


def test_nearby_attention_with_whole_axes_equals_full_attention():
    g = torch.Generator().manual_seed(8)
    whole = (None, None, None)
    nearby = model_for(image_extent=whole, video_extent=whole)
    full = model_for(encoder_attention="full", decoder_attention="full")
    for cond in (conditions(g)["sketch video"], conditions(g)["text"]):
        target = targets(g)["video"]
        assert torch.allclose(nearby(cond, target), full(cond, target), atol=1e-6)


# ----------------------------------------------------------------------- training
@pytest.mark.parametrize("tie", [False, True])
def test_gradients_reach_every_parameter(tie):
    g = torch.Generator().manual_seed(9)
    model = model_for(dtype=torch.float32, tie_embeddings=tie, dropout=0.1).train()
    conds, target = conditions(g), targets(g)["video"]
    # text uses the text embedding, the sketch video every row of the condition positions
    loss = model.loss(conds["text"], target) + model.loss(conds["sketch video"], target)
    loss.backward()
    missing = [name for name, p in model.named_parameters()
               if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing
    assert math.isclose(loss.item() / 2, math.log(CODES), rel_tol=0.1)   # near uniform at init


# ------------------------------------------------------------------ parameter counts
@pytest.mark.parametrize("profile", ["smoke", "mini", "paper"])
def test_built_parameter_count_equals_the_formula(profile):
    config = NuwaConfig.from_profile(load_profile(profile))
    model = meta_model(config)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert n_parameters(model) == count_parameters(config)
    rows = parameter_table(config, reported=870_000_000)
    total = next(r for r in rows if r["component"] == "total")
    assert total["parameters"] == count_parameters(config)
    assert sum(r["parameters"] for r in rows[:-2]) == total["parameters"]


@pytest.mark.parametrize("overrides", [{"tie_embeddings": True}, {"ffn_mult": 2.5},
                                       {"encoder_layers": 3, "decoder_layers": 1}])
def test_parameter_formula_follows_the_open_choices(overrides):
    config = tiny(**overrides)
    assert n_parameters(Nuwa(config)) == count_parameters(config)


def test_paper_profile_is_the_paper_configuration():
    cfg = load_profile("paper")
    config, paper = NuwaConfig.from_profile(cfg), cfg["paper"]
    assert config.dim == paper["dim"] == 1280
    assert config.encoder_layers == config.decoder_layers == paper["layers"] == 24
    assert config.codebook_size == paper["codebook_size"] == 12288
    assert config.target_tokens == tuple(paper["video_tokens"]) == (10, 21, 21)
    assert config.text_length == paper["text_tokens"] == 77
    for modality in ("text", "image", "video"):
        assert config.extent(modality) == tuple(paper["extents"][modality])
    n = count_parameters(config)
    assert 0.5e9 < n < 2e9       # the same order as the reported 870M (our choices differ)
    choices = {row["choice"] for row in open_choices(config)}
    assert {"FFN width", "text vocabulary", "output embedding"} <= choices


def test_smoke_and_mini_profiles_build_models():
    for profile in ("smoke", "mini"):
        config = NuwaConfig.from_profile(load_profile(profile))
        assert config.target_tokens[1:] == (8, 8) and config.codebook_size == 256


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize("overrides, match", [
    ({"decoder_attention": "block"}, r"decoder_attention must be one of \('nearby'"),
    ({"dim": 30, "heads": 4}, "divisible"),
    ({"image_extent": (1, -1, 1)}, "non-negative integer or None"),
    ({"target_tokens": (0, 4, 4)}, "positive integers"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"heads": 0}, "heads must be a positive integer"),
])
def test_bad_configs_raise_clear_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny(**overrides)


def test_bad_profile_sections_raise_clear_errors():
    cfg = load_profile("smoke")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['width'\]"):
        NuwaConfig.from_profile({**cfg, "model": {**cfg["model"], "width": 3}})
    with pytest.raises(ValueError, match="unknown modality"):
        NuwaConfig.from_profile({**cfg, "model": {**cfg["model"], "extents": {"audio": [1, 1, 1]}}})
    assert NuwaConfig.from_profile(cfg, decoder_attention="axial").decoder_attention == "axial"


def test_bad_inputs_raise_clear_errors():
    g = torch.Generator().manual_seed(10)
    model = model_for(dtype=torch.float32)
    conds, target = conditions(g), targets(g)["image"]
    sketch = conds["sketch image"]
    cases = [
        (lambda: model(sketch, target[:, 0]), r"target_tokens must have shape \(B, s, h, w\)"),
        (lambda: model(sketch, target[:1]), "batch 1 but the condition has 2"),
        (lambda: model(sketch, torch.zeros(B, 4, 4, 5, dtype=torch.long)),
         r"target grid \(4, 4, 5\) exceeds"),
        (lambda: model(sketch, target + CODES), rf"target token ids must lie in \[0, {CODES}\)"),
        (lambda: model(sketch, target.float()), "integer token ids"),
        (lambda: model(Condition.from_sketch(torch.full((B, 1, 3, 3), SKETCH_CODES)), target),
         rf"sketch token ids must lie in \[0, {SKETCH_CODES}\)"),
        (lambda: model(Condition.from_text(torch.full((B, 6), TEXT_VOCAB)), target),
         rf"text token ids must lie in \[0, {TEXT_VOCAB}\)"),
        (lambda: model(Condition.from_text(torch.zeros(B, 9, dtype=torch.long)), target),
         r"text condition grid \(9, 1, 1\) exceeds"),
        (lambda: model("a red circle", target), "cond must be a Condition"),
        (lambda: Condition("audio", torch.zeros(B, 4, dtype=torch.long), (4, 1, 1)),
         r"kind must be one of \('text', 'sketch'\)"),
        (lambda: Condition("text", torch.zeros(B, 4, dtype=torch.long), (1, 2, 2)),
         r"grid \(L, 1, 1\)"),
        (lambda: Condition("sketch", torch.zeros(B, 5, dtype=torch.long), (1, 2, 2)),
         r"shape \(B, 4\) for the grid"),
        (lambda: Condition.from_text(torch.zeros(B, 3, dtype=torch.long),
                                     torch.tensor([[True] * 3, [False] * 3])),
         r"samples \[1\] keep none"),
        (lambda: Condition.from_sketch(torch.zeros(B, 3, 3, dtype=torch.long)),
         r"sketch tokens must have shape \(B, s, h, w\)"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


def test_bad_decoding_steps_raise_clear_errors():
    g = torch.Generator().manual_seed(11)
    model = model_for(dtype=torch.float32)
    cond = conditions(g)["sketch image"]
    cache = model.start(cond, (1, 1, 2))
    with pytest.raises(ValueError, match="first step reads <bos>"):
        model.step(cache, torch.zeros(B, dtype=torch.long))
    model.step(cache)
    with pytest.raises(ValueError, match=r"prev_tokens must be the \(2,\) token ids"):
        model.step(cache)
    with pytest.raises(ValueError, match=rf"prev_tokens must lie in \[0, {CODES}\)"):
        model.step(cache, torch.full((B,), CODES))
    model.step(cache, torch.zeros(B, dtype=torch.long))
    with pytest.raises(ValueError, match=r"grid \(1, 1, 2\) is complete"):
        model.step(cache, torch.zeros(B, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds"):
        model.start(cond, (1, 5, 5))


def test_inputs_are_checked_without_reading_values_off_the_cpu():
    """Reading a GPU tensor's values syncs with the GPU; the forward's checks only read CPU
    tensors (a meta tensor has no values at all: any read raises)."""
    from nuwa_lib.model.config import _check_ids, _padding

    ids = torch.zeros(2, 4, dtype=torch.long, device="meta")
    keep = torch.ones(2, 4, dtype=torch.bool, device="meta")
    cond = Condition.from_text(ids, keep)
    assert _padding(cond) is keep
    assert _check_ids("text token ids", ids, 10).device.type == "meta"
    with pytest.raises(ValueError, match=r"must lie in \[0, 10\)"):
        _check_ids("text token ids", torch.tensor([[3, 12]]), 10)
    assert _padding(Condition.from_text(torch.zeros(2, 4, dtype=torch.long),
                                        torch.ones(2, 4, dtype=torch.bool))) is None
