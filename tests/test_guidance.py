"""Conditioning the model cannot ignore (beyond the paper; issue #28): condition dropout in
training replaces captions by the word "None" (Eq. 16's empty condition), and classifier-free
guidance at sampling mixes the conditional and the "None" logits."""
from dataclasses import replace

import pytest
import torch
from task_helpers import WORLD, tiny_model, tiny_tokenizers

from nuwa_lib.generation import generate, sampling
from nuwa_lib.model.config import Condition
from nuwa_lib.training import runs as TR, schedule, trainer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toks():
    return tiny_tokenizers()


@pytest.fixture(scope="module")
def data(toks):
    return TR.build_data(("T2I", "V2V"), TR.roles_for(("T2I", "V2V")), toks, 8, progress=False,
                         **WORLD)


# --------------------------------------------------------------------------- training
def test_cond_dropout_is_a_fraction_and_in_the_hash_only_when_on():
    plain = schedule.TrainConfig()
    assert "cond_dropout" not in plain.key()
    assert replace(plain, cond_dropout=0.1).key()["cond_dropout"] == 0.1
    for bad in (-0.1, 1.0, True, "0.1"):
        with pytest.raises(ValueError, match="train.cond_dropout must be a fraction"):
            schedule.TrainConfig(cond_dropout=bad)


def test_the_rows_dropped_are_a_function_of_seed_and_step():
    a = schedule.dropout_rows(0, 5, 1000, 0.2)
    assert torch.equal(a, schedule.dropout_rows(0, 5, 1000, 0.2))
    assert not torch.equal(a, schedule.dropout_rows(0, 6, 1000, 0.2))
    assert 0.15 < a.float().mean() < 0.25
    assert not schedule.dropout_rows(0, 5, 100, 0.0).any()


def test_a_dropped_caption_becomes_the_word_none(data, toks):
    d = data["T2I"]
    b = d.batch([0, 1, 2])
    rows = torch.tensor([False, True, False])
    out = d.without_condition(b, rows)
    none_ids, _ = toks.none_condition()
    n = none_ids.shape[1]
    keep = out.cond.keep if out.cond.keep is not None else torch.ones_like(out.cond.tokens, dtype=bool)
    assert torch.equal(out.cond.tokens[1, :n], none_ids[0]) and int(keep[1].sum()) == n
    for r in (0, 2):          # the others keep their captions
        k = int(b.cond.keep[r].sum()) if b.cond.keep is not None else b.cond.tokens.shape[1]
        assert torch.equal(out.cond.tokens[r, :k], b.cond.tokens[r, :k]) and int(keep[r].sum()) == k
    assert torch.equal(out.target, b.target)
    with pytest.raises(ValueError, match="only a caption can be dropped"):
        data["V2V"].without_condition(data["V2V"].batch([0]), torch.tensor([True]))


def test_training_with_dropout_sees_none_on_the_dropped_rows(data):
    config = schedule.TrainConfig(steps=3, batch_size=4, data_size=8, weights={"T2I": 1.0},
                                  cond_dropout=0.5)
    tr = trainer.Trainer(tiny_model().config, config, {"T2I": data["T2I"]})
    seen = []
    plain_loss = tr.loss
    tr.loss = lambda batch: seen.append(batch.cond) or plain_loss(batch)
    for _ in range(3):
        tr.train_step()
    none = data["T2I"].none_ids[0]
    for step, cond in enumerate(seen):
        rows = schedule.dropout_rows(config.seed, step, 4, 0.5)
        for r in range(4):
            is_none = torch.equal(cond.tokens[r, :len(none)], none) and (
                cond.keep is None and cond.tokens.shape[1] == len(none)
                or cond.keep is not None and int(cond.keep[r].sum()) == len(none))
            assert is_none == bool(rows[r]), (step, r)


# --------------------------------------------------------------------------- sampling
def _conds(toks, n=2):
    ids, keep = toks.text.encode(["a large red circle at the top left on grass"] * n)
    none, _ = toks.none_condition()
    return Condition.from_text(ids, keep), Condition.from_text(none.expand(n, -1))


def test_guidance_one_is_the_conditional_model_and_guidance_changes_samples(toks):
    model = tiny_model()
    cond, uncond = _conds(toks)

    def draw(**kw):
        return sampling.sample(model, cond, (1, 8, 8), generator=torch.Generator().manual_seed(0),
                               **kw)
    base = draw()
    assert torch.equal(draw(guidance=1.0, uncond=uncond), base)
    strong = draw(guidance=4.0, uncond=uncond)
    assert not torch.equal(strong, base)
    slow = sampling.sample(model, cond, (1, 8, 8), generator=torch.Generator().manual_seed(0),
                           guidance=4.0, uncond=uncond, use_cache=False)
    assert torch.equal(slow, strong)


@pytest.mark.parametrize("kw, match", [
    ({"guidance": 2.0}, "needs both guidance"), ({"uncond": "u"}, "needs both guidance"),
    ({"guidance": 0.0, "uncond": "u"}, "guidance must be a positive number"),
    ({"guidance": float("nan"), "uncond": "u"}, "guidance must be a positive number"),
    ({"guidance": 2.0, "uncond": "one"}, "uncond must have the condition's batch size 2")])
def test_bad_guidance_is_named(toks, kw, match):
    cond, uncond = _conds(toks)
    kw = {k: (uncond if v == "u" else _conds(toks, 1)[1] if v == "one" else v) for k, v in kw.items()}
    with pytest.raises(ValueError, match=match):
        sampling.sample(tiny_model(), cond, (1, 8, 8), **kw)


def test_best_of_n_and_generate_pass_the_guidance_on(data, toks):
    model = tiny_model()
    cond, uncond = _conds(toks)
    best = sampling.best_of_n(model, cond, (1, 8, 8), 2, lambda tok, i: torch.arange(2.0),
                              guidance=3.0, uncond=uncond, batch_size=2,
                              generator=torch.Generator().manual_seed(0))
    assert best.tokens.shape == (2, 1, 8, 8)
    g = generate.generate(model, data["T2I"], [0, 1], toks.visual, guidance=50.0)
    b = data["T2I"].batch([0, 1])
    none = Condition.from_text(data["T2I"].none_ids.expand(2, -1))
    same = sampling.sample(model, b.cond, (1, 8, 8), generator=torch.Generator().manual_seed(0),
                           guidance=50.0, uncond=none)
    assert torch.equal(g.tokens, same)
    assert not torch.equal(g.tokens, generate.generate(model, data["T2I"], [0, 1], toks.visual).tokens)
    with pytest.raises(ValueError, match="guidance needs a captioned task"):
        generate.generate(model, data["V2V"], [0], toks.visual, guidance=2.0)
