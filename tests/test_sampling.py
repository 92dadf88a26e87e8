"""Sampling (Sec. 3.3, Eq. 15; Sec. 4.2): KV-cached decoding equals the full forward,
temperature / top-k, priming with given tokens, best-of-n re-ranking, argument errors."""
import math

import numpy as np
import pytest
import torch

from nuwa_lib.generation.sampling import BestOfN, best_of_n, draw, sample
from nuwa_lib.model.config import Condition, NuwaConfig
from nuwa_lib.model.nuwa import Nuwa
from nuwa_lib.utils.progress import enabled as show_progress

B = 2
TEXT_LEN, TEXT_VOCAB, CODES, SKETCH_CODES = 6, 300, 40, 12
IMAGE, VIDEO = (1, 4, 5), (3, 4, 5)


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


def model_for(seed=0, dtype=torch.float64, **overrides) -> Nuwa:
    values = dict(dim=16, heads=2, encoder_layers=1, decoder_layers=1, text_vocab=TEXT_VOCAB,
                  text_length=TEXT_LEN, codebook_size=CODES, sketch_codebook_size=SKETCH_CODES,
                  target_tokens=(3, 4, 5), sketch_tokens=(2, 3, 3), image_extent=(1, 1, 1),
                  video_extent=(1, 1, 2))
    torch.manual_seed(seed)
    model = Nuwa(NuwaConfig(**{**values, **overrides})).to(dtype).eval()
    with torch.no_grad():   # livelier logits than the N(0, 0.02) init, so samples differ
        for p in model.parameters():
            p.mul_(8.0)
    return model


@pytest.fixture(scope="module")
def model():
    return model_for()


def conditions(seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    keep = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    return {
        "text": Condition.from_text(torch.randint(0, TEXT_VOCAB, (B, TEXT_LEN), generator=g), keep),
        "sketch video": Condition.from_sketch(
            torch.randint(0, SKETCH_CODES, (B, 2, 3, 3), generator=g)),
    }


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sample_with_logits(model, cond, grid, **kw):
    """Tokens and the logits every drawn slot was drawn from, {t: (B, CODES)}."""
    seen = {}
    tokens = sample(model, cond, grid, on_logits=lambda t, logits: seen.__setitem__(t, logits),
                    **kw)
    return tokens, seen


def first_frame_prime(seed=1):
    prime = torch.randint(0, CODES, (B, *VIDEO), generator=gen(seed))
    mask = torch.zeros(VIDEO, dtype=torch.bool)
    mask[0] = True                                     # V2V: the first frame is given
    return prime, mask


# ------------------------------------------------------------- cache vs full forward
@pytest.mark.parametrize("cond_name", ["text", "sketch video"])
@pytest.mark.parametrize("grid", [IMAGE, VIDEO], ids=["image", "video"])
@pytest.mark.parametrize("top_k", [None, 5])
def test_cached_and_uncached_sampling_draw_identical_tokens(model, cond_name, grid, top_k):
    cond = conditions()[cond_name]
    cached, logits_c = sample_with_logits(model, cond, grid, top_k=top_k, generator=gen(3))
    full, logits_f = sample_with_logits(model, cond, grid, top_k=top_k, generator=gen(3),
                                        use_cache=False)
    assert cached.shape == (B, *grid) and cached.dtype == torch.long
    assert torch.equal(cached, full)
    assert sorted(logits_c) == sorted(logits_f) == list(range(math.prod(grid)))
    for t in logits_c:
        assert torch.allclose(logits_c[t], logits_f[t], atol=1e-10, rtol=0)


def test_cached_and_uncached_sampling_agree_when_primed(model):
    cond = conditions()["text"]
    prime, mask = first_frame_prime()
    kw = dict(prime=prime, prime_mask=mask, temperature=0.7)
    cached, logits_c = sample_with_logits(model, cond, VIDEO, generator=gen(4), **kw)
    full, logits_f = sample_with_logits(model, cond, VIDEO, generator=gen(4), use_cache=False,
                                        **kw)
    assert torch.equal(cached, full)
    assert sorted(logits_c) == sorted(logits_f) == list(range(20, 60))   # given slots draw nothing
    assert all(torch.allclose(logits_c[t], logits_f[t], atol=1e-10, rtol=0) for t in logits_c)


def test_cached_steps_agree_when_a_cross_window_holds_only_padding():
    """A text extent of (0, 0, 0) shows each slot one text token; where that token is
    padding the slot attends to nothing (output 0), with and without the cache."""
    small = model_for(text_extent=(0, 0, 0))
    keep = torch.tensor([[False, True] + [False] * 4, [True] * 6])
    cond = Condition.from_text(torch.randint(0, TEXT_VOCAB, (B, TEXT_LEN), generator=gen(26)),
                               keep)
    cached, logits_c = sample_with_logits(small, cond, IMAGE, generator=gen(27))
    full, logits_f = sample_with_logits(small, cond, IMAGE, generator=gen(27), use_cache=False)
    assert torch.equal(cached, full)
    assert all(torch.allclose(logits_c[t], logits_f[t], atol=1e-10, rtol=0) for t in logits_c)
    assert all(torch.isfinite(x).all() for x in logits_c.values())


def test_every_slot_is_drawn_from_the_teacher_forced_logits_of_the_sample(model):
    cond = conditions()["sketch video"]
    tokens, seen = sample_with_logits(model, cond, VIDEO, generator=gen(5))
    forced = model(cond, tokens)
    assert torch.allclose(torch.stack([seen[t] for t in range(60)], 1), forced, atol=1e-10,
                          rtol=0)


def test_same_generator_same_samples_and_other_seeds_differ(model):
    cond = conditions()["text"]
    a = sample(model, cond, VIDEO, generator=gen(6))
    assert torch.equal(a, sample(model, cond, VIDEO, generator=gen(6)))
    assert not torch.equal(a, sample(model, cond, VIDEO, generator=gen(7)))
    torch.manual_seed(0)
    b = sample(model, cond, VIDEO)                    # the global RNG when no generator
    torch.manual_seed(0)
    assert torch.equal(b, sample(model, cond, VIDEO))


def test_sampling_runs_without_dropout_and_restores_the_mode():
    trained = model_for(dropout=0.5)
    cond = conditions()["text"]
    expected = sample(trained, cond, IMAGE, generator=gen(8))
    trained.train()
    assert torch.equal(sample(trained, cond, IMAGE, generator=gen(8)), expected)
    assert trained.training


# ----------------------------------------------------------------- temperature, top-k
def test_top_k_1_is_greedy_decoding(model):
    cond = conditions()["sketch video"]
    greedy = sample(model, cond, VIDEO, top_k=1, generator=gen(9))
    forced = model(cond, greedy)
    assert torch.equal(forced.argmax(-1), greedy.reshape(B, -1))
    assert torch.equal(sample(model, cond, VIDEO, top_k=1, generator=gen(10)), greedy)


def test_temperature_to_zero_approaches_greedy(model):
    cond = conditions()["text"]
    greedy = sample(model, cond, VIDEO, top_k=1)
    for seed in (11, 12):
        assert torch.equal(sample(model, cond, VIDEO, temperature=1e-6, generator=gen(seed)),
                           greedy)
    assert not torch.equal(sample(model, cond, VIDEO, temperature=1.0, generator=gen(11)),
                           greedy)


def test_draw_follows_the_tempered_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]], dtype=torch.float64).expand(40_000, -1)
    for temperature in (1.0, 0.5):
        counts = torch.bincount(draw(logits, temperature, generator=gen(13)), minlength=4)
        expected = torch.softmax(logits[0] / temperature, -1)
        assert torch.allclose(counts.double() / counts.sum(), expected, atol=0.01)


def test_draw_with_top_k_picks_only_the_k_largest_logits():
    logits = torch.randn(500, CODES, generator=gen(14))
    top3 = logits.topk(3, -1).indices
    chosen = draw(logits, 2.0, top_k=3, generator=gen(15))
    assert (chosen[:, None] == top3).any(1).all()
    assert len(set(chosen.tolist())) > 3                      # per row, not one global set


def test_draw_uses_float32_noise_for_half_precision_logits():
    logits = torch.randn(300, CODES, generator=gen(24)).bfloat16()
    assert torch.equal(draw(logits, generator=gen(25)), draw(logits.float(), generator=gen(25)))


# ------------------------------------------------------------------------- priming
def test_primed_first_frame_is_kept_and_conditions_the_rest(model):
    """V2V / TV2V: the first frame is given; later frames must depend on it."""
    cond = conditions()["text"]
    prime, mask = first_frame_prime()
    out, seen = sample_with_logits(model, cond, VIDEO, prime=prime, prime_mask=mask,
                                   generator=gen(16))
    assert torch.equal(out[:, 0], prime[:, 0])
    other = prime.clone()
    other[:, 0, 3, 4] = (other[:, 0, 3, 4] + 1) % CODES   # the last given token
    _, seen_other = sample_with_logits(model, cond, VIDEO, prime=other, prime_mask=mask,
                                       generator=gen(16))
    assert not torch.allclose(seen[20], seen_other[20])   # the first drawn slot sees it


def test_a_non_prefix_mask_is_kept_and_seen_by_later_slots_only(model):
    """TI2I-like: given tokens in the middle of the grid (a row and one lone slot)."""
    cond = conditions()["sketch video"]
    prime = torch.randint(0, CODES, (B, *IMAGE), generator=gen(17))
    mask = torch.zeros(IMAGE, dtype=torch.bool)
    mask[0, 1] = True              # row 1: slots 5..9
    mask[0, 3, 2] = True           # a lone slot 17
    out, seen = sample_with_logits(model, cond, IMAGE, prime=prime, prime_mask=mask,
                                   generator=gen(18))
    assert torch.equal(out[:, mask], prime[:, mask])
    assert sorted(seen) == [t for t in range(20) if t not in (5, 6, 7, 8, 9, 17)]
    assert torch.equal(out, sample(model, cond, IMAGE, prime=prime, prime_mask=mask,
                                   generator=gen(18), use_cache=False))
    other = prime.clone()
    other[:, 0, 3, 2] = (other[:, 0, 3, 2] + 1) % CODES     # change the lone slot 17
    out2, seen2 = sample_with_logits(model, cond, IMAGE, prime=other, prime_mask=mask,
                                     generator=gen(18))
    assert torch.equal(out2[:, 0].reshape(B, -1)[:, :17], out[:, 0].reshape(B, -1)[:, :17])
    assert all(torch.equal(seen2[t], seen[t]) for t in seen if t < 17)
    assert not torch.allclose(seen2[18], seen[18])           # slot 18 reads token 17
    assert torch.equal(out2[:, mask], other[:, mask])


def test_a_per_sample_mask_primes_each_row_on_its_own(model):
    cond = conditions()["text"]
    prime = torch.randint(0, CODES, (B, *IMAGE), generator=gen(19))
    mask = torch.zeros(B, *IMAGE, dtype=torch.bool)
    mask[0, 0, :2] = True          # I2I: sample 0 keeps its top half
    mask[1, 0, 0, 0] = True        # sample 1 only its first token
    out = sample(model, cond, IMAGE, prime=prime, prime_mask=mask, generator=gen(20))
    assert torch.equal(out[mask], prime[mask])
    full = sample(model, cond, IMAGE, prime=prime, prime_mask=mask, generator=gen(20),
                  use_cache=False)
    assert torch.equal(out, full)
    prime_ignored = prime.clone()
    prime_ignored[~mask] = -1      # values outside the mask are never read
    assert torch.equal(sample(model, cond, IMAGE, prime=prime_ignored, prime_mask=mask,
                              generator=gen(20)), out)


def test_a_fully_given_grid_is_returned_unchanged(model):
    cond = conditions()["text"]
    prime = torch.randint(0, CODES, (B, *IMAGE), generator=gen(21))
    mask = torch.ones(IMAGE, dtype=torch.bool)
    for use_cache in (True, False):
        assert torch.equal(sample(model, cond, IMAGE, prime=prime, prime_mask=mask,
                                  use_cache=use_cache), prime)


# ---------------------------------------------------------------------- best of n
def test_best_of_n_keeps_the_highest_score_per_condition(model):
    cond = conditions()["text"]
    calls = []

    def score_fn(tokens, i):
        calls.append((tuple(tokens.shape), i))
        return (tokens.float().mean((1, 2, 3)) * (1 if i == 0 else -1)).numpy()

    out = best_of_n(model, cond, IMAGE, 6, score_fn, generator=gen(22))
    assert isinstance(out, BestOfN)
    assert calls == [((6, *IMAGE), 0), ((6, *IMAGE), 1)]
    assert out.samples.shape == (B, 6, *IMAGE) and out.tokens.shape == (B, *IMAGE)
    assert out.scores.shape == (B, 6) and out.scores.dtype == torch.float64
    assert torch.equal(out.best, out.scores.argmax(1))
    for i in range(B):
        assert torch.equal(out.tokens[i], out.samples[i, out.best[i]])
        mean = out.samples[i].float().mean((1, 2, 3))
        assert float(mean[out.best[i]]) == float(mean.max() if i == 0 else mean.min())
    assert len({tuple(s.flatten().tolist()) for s in out.samples[0]}) > 1   # n distinct draws


def test_best_of_n_samples_belong_to_their_condition(model):
    """Greedy best-of-n: every candidate of condition i is condition i's greedy sample."""
    cond = conditions()["sketch video"]
    greedy = sample(model, cond, IMAGE, top_k=1)
    out = best_of_n(model, cond, IMAGE, 3, lambda tokens, i: torch.zeros(3), top_k=1,
                    batch_size=4)                      # one condition per decoding batch
    assert torch.equal(out.samples, greedy[:, None].expand(B, 3, *IMAGE))
    assert torch.equal(out.best, torch.zeros(B, dtype=torch.long))   # ties: the first


def test_best_of_n_repeats_the_prime_for_every_candidate(model):
    cond = conditions()["text"]
    prime, mask = first_frame_prime()
    per_sample = mask.expand(B, *VIDEO).clone()
    per_sample[1, 0, 1:] = False                       # sample 1: only the first row given
    for m in (mask, per_sample):
        out = best_of_n(model, cond, VIDEO, 3, lambda tokens, i: [1.0, 3.0, 2.0],
                        prime=prime, prime_mask=m, generator=gen(23), batch_size=3)
        given = m.expand(B, *VIDEO)
        for i in range(B):
            assert torch.equal(out.samples[i][:, given[i]],
                               prime[i][given[i]].expand(3, -1))
        assert torch.equal(out.best, torch.ones(B, dtype=torch.long))


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kw, match", [
    (dict(target_grid=(1, 4)), "target_grid must be a grid shape"),
    (dict(target_grid=(0, 4, 5)), "target_grid must contain three positive integers"),
    (dict(target_grid=(1, 5, 5)), r"target_grid \(1, 5, 5\) exceeds"),
    (dict(temperature=0), "temperature must be a positive finite number"),
    (dict(temperature=-1.0), "temperature must be a positive finite number"),
    (dict(top_k=0), r"top_k must be None \(every code\) or an integer in \[1, 40\]"),
    (dict(top_k=41), r"top_k must be None .* in \[1, 40\]"),
    (dict(top_k=2.5), "top_k must be None"),
    (dict(prime=torch.zeros(B, *IMAGE, dtype=torch.long)), "prime needs prime_mask"),
    (dict(prime_mask=torch.ones(IMAGE, dtype=torch.bool)), "prime_mask needs prime"),
    (dict(prime=torch.zeros(B, 1, 4, 4, dtype=torch.long),
          prime_mask=torch.ones(IMAGE, dtype=torch.bool)),
     r"prime must be an integer token tensor of shape \(B, s, h, w\) = \(2, 1, 4, 5\)"),
    (dict(prime=torch.zeros(B, *IMAGE), prime_mask=torch.ones(IMAGE, dtype=torch.bool)),
     "prime must be an integer token tensor"),
    (dict(prime=torch.zeros(B, *IMAGE, dtype=torch.long),
          prime_mask=torch.ones(1, 4, 4, dtype=torch.bool)),
     r"prime_mask must be a bool tensor of shape \(s, h, w\) = \(1, 4, 5\) or \(B, s, h, w\)"),
    (dict(prime=torch.zeros(B, *IMAGE, dtype=torch.long), prime_mask=torch.ones(IMAGE)),
     "prime_mask must be a bool tensor"),
    (dict(prime=torch.full((B, *IMAGE), CODES), prime_mask=torch.ones(IMAGE, dtype=torch.bool)),
     r"prime tokens at the given positions must lie in \[0, 40\)"),
    (dict(generator=0), "generator must be a torch.Generator"),
    (dict(on_logits=3), "on_logits must be callable"),
    (dict(cond="a red circle"), "cond must be a Condition"),
    (dict(model=torch.nn.Linear(2, 2)), "model must be a nuwa_lib.model.nuwa.Nuwa"),
])
def test_bad_sampling_arguments_raise_errors_naming_them(model, kw, match):
    args, kw = dict(model=model, cond=conditions()["text"], target_grid=IMAGE), dict(kw)
    args.update({k: kw.pop(k) for k in list(kw) if k in args})
    with pytest.raises(ValueError, match=match):
        sample(args["model"], args["cond"], args["target_grid"], **kw)


@pytest.mark.parametrize("n, score_fn, kw, match", [
    (0, lambda t, i: [0.0], {}, "n must be a positive integer"),
    (2.0, lambda t, i: [0.0, 0.0], {}, "n must be a positive integer"),
    (2, "clip", {}, "score_fn must be callable"),
    (2, lambda t, i: [0.0, 1.0, 2.0], {}, r"score_fn must return scores of shape \(2,\)"),
    (2, lambda t, i: torch.zeros(2, 1), {}, r"score_fn must return scores of shape \(2,\)"),
    (2, lambda t, i: [float("nan"), 0.0], {}, "score_fn returned NaN scores for condition 0"),
    (2, lambda t, i: ["a", "b"], {}, "score_fn must return 2 numbers"),
    (2, lambda t, i: [0.0, 0.0], {"batch_size": 0}, "batch_size must be None or a positive"),
    (2, lambda t, i: [0.0, 0.0], {"top_k": 0}, "top_k must be None"),
    (2, lambda t, i: [0.0, 0.0], {"prime": torch.zeros(1, *IMAGE, dtype=torch.long),
                                  "prime_mask": torch.ones(IMAGE, dtype=torch.bool)},
     r"prime must be .* = \(2, 1, 4, 5\)"),
])
def test_bad_best_of_n_arguments_raise_errors_naming_them(model, n, score_fn, kw, match):
    with pytest.raises(ValueError, match=match):
        best_of_n(model, conditions()["text"], IMAGE, n, score_fn, **kw)


def test_progress_bars_stay_quiet_without_a_terminal(model, capsys, monkeypatch):
    monkeypatch.setenv("CI", "1")
    assert not show_progress(True)
    best_of_n(model, conditions()["text"], IMAGE, 2, lambda t, i: np.zeros(2), progress=True,
              batch_size=2)
    assert capsys.readouterr().err == ""
