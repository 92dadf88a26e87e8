"""Watch NÜWA draw (nuwa_lib.generation.watch): the panel's callbacks as pure functions -- a bad
caption is a message, the steps are the sampler's own tokens in raster order, each with its
3DNA window and its attention over the text, and the canvas greys what is not drawn yet."""
import numpy as np
import pytest
import torch
from task_helpers import tiny_model, tiny_tokenizers

from nuwa_lib.generation import sampling, watch
from nuwa_lib.model.config import Condition
from nuwa_lib.model.layers import decode_windows

pytestmark = pytest.mark.usefixtures("one_thread")
CAPTION = "a large red circle at the top left on grass"


@pytest.fixture(scope="module")
def parts():
    return tiny_model(), tiny_tokenizers()


@pytest.mark.parametrize("text, match", [
    ("", "empty"), ("   ", "empty"), (3, "must be text"),
    ("a red unicorn on grass", "no word 'unicorn'"),
    ("a purple blob and a zebra", r"no words 'blob', 'zebra'.*its words are: a, and"),
    ("red " * 41, "41 words; at most 40")])
def test_a_bad_caption_is_a_message_naming_the_problem(text, match):
    with pytest.raises(ValueError, match=match):
        watch.check_caption(text)


def test_a_caption_is_normalised():
    assert watch.check_caption("  A Red  circle,at the TOP ") == "a red circle at the top"


def test_the_steps_are_the_samplers_tokens_with_their_windows_and_text(parts):
    model, toks = parts
    grid = (2, 8, 8)
    steps = watch.drawing(model, toks.text, CAPTION, grid, seed=3, temperature=1.0, top_k=8)
    ids, keep = toks.text.encode(CAPTION)
    same = sampling.sample(model, Condition.from_text(ids, keep), grid, top_k=8,
                           generator=torch.Generator().manual_seed(3))
    assert len(steps) == 128
    assert np.array_equal(steps[-1].tokens, same[0].numpy())
    real = int(keep.sum())
    windows = decode_windows("nearby", grid, grid, model.config.extent("video"), True, "cpu")
    for t in (0, 9, 70, 127):
        s = steps[t]
        assert s.slot == tuple(np.unravel_index(t, grid))
        assert (s.tokens.reshape(-1)[: t + 1] >= 0).all() and (s.tokens.reshape(-1)[t + 1:] < 0).all()
        assert sorted(np.flatnonzero(s.window)) == sorted(windows[t].tolist())
        assert s.window.reshape(-1)[t] and not s.window.reshape(-1)[t + 1:].any()   # causal
        assert s.text.shape == (real,) and np.isclose(s.text.sum(), 1, atol=1e-5)
    assert "step" not in vars(model.decoder[-1].cross_attn)              # the hook is gone


def test_the_canvas_greys_the_cells_not_drawn_yet(parts):
    model, toks = parts
    steps = watch.drawing(model, toks.text, CAPTION, (1, 8, 8))
    first = watch.canvas(toks.visual, steps[0])
    assert first.shape == (1, 32, 32, 3) and first.dtype == np.uint8
    assert (first[0, 4:, :] == watch.GREY).all() and (first[0, :4, 4:] == watch.GREY).all()
    assert not (first[0, :4, :4] == watch.GREY).all()
    assert not (watch.canvas(toks.visual, steps[-1]) == watch.GREY).all(-1).all()


def test_the_draw_button_never_raises_and_the_view_says_where_it_is(parts):
    model, toks = parts
    bad = watch.attempt(model, toks, "a unicorn", (1, 8, 8))
    assert not bad["ok"] and "unicorn" in bad["message"] and bad["steps"] == []
    got = watch.attempt(model, toks, CAPTION, (1, 8, 8), seed=1)
    assert got["ok"] and len(got["steps"]) == 64 and len(got["pieces"]) == len(got["steps"][0].text)
    fig, line = watch.view(toks.visual, got["steps"], 9, got["pieces"])
    assert line.startswith("token 10 of 64 (row 1, column 1) = code ")
    assert "attends most to the text token '" in line and "Ġ" not in line
    _, last = watch.view(toks.visual, got["steps"], 999, got["pieces"])    # clamped
    assert last.startswith("token 64 of 64")
    with pytest.raises(ValueError, match="nothing drawn"):
        watch.view(toks.visual, [], 0, [])


def test_the_panel_is_built_from_the_widgets(parts):
    model, toks = parts
    box = watch.panel(model, toks, [CAPTION], video_grid=(2, 8, 8))
    assert box.children[1].value == CAPTION
