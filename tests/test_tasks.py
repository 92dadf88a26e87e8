"""The 8 tasks as data (Fig. 1, Sec. 3.4): encoder inputs, decoder primes, targets, and the
world's ground truth for the zero-shot manipulation tasks."""
import numpy as np
import pytest
import torch

from nuwa_lib.data import splits, tasks as T

GRID = (8, 8, 8)


def test_the_table_says_what_each_task_reads_primes_and_makes():
    assert list(T.TASKS) == ["T2I", "S2I", "I2I", "TI2I", "T2V", "S2V", "V2V", "TV2V"]
    want = {  # name: (encoder, prime, target)
        "T2I": ("text", "nothing", "image"), "S2I": ("sketch", "nothing", "image"),
        "I2I": ("none", "top half", "image"), "TI2I": ("text", "rows above the edit", "image"),
        "T2V": ("text", "nothing", "video"), "S2V": ("sketch video", "nothing", "video"),
        "V2V": ("none", "first frame", "video"), "TV2V": ("text", "first frame", "video")}
    for name, (enc, prime, target) in want.items():
        t = T.get_task(name)
        assert (t.encoder, t.prime, t.target) == (enc, prime, target)
        assert t.condition_kind == ("sketch" if enc.startswith("sketch") else "text")
        assert t.reads_none == (enc == "none") and t.primed == (prime != "nothing")
        assert t.target_grid(GRID) == (GRID if target == "video" else (1, 8, 8))
    assert T.get_task("S2I").condition_grid(GRID) == (1, 8, 8)
    assert T.get_task("S2V").condition_grid(GRID) == GRID
    assert T.get_task("V2V").condition_grid(GRID, text_length=32) == (32, 1, 1)
    # Eq. (16)'s three tasks and the roles standing in for CC, Moments and VATEX
    assert T.PRETRAIN_TASKS == ("T2I", "V2V", "T2V")
    assert T.PRETRAIN_ROLES == {"T2I": "cc", "V2V": "moments", "T2V": "vatex"}
    assert [t for t in T.TASKS.values() if t.zero_shot] == [T.TASKS[n] for n in ("I2I", "TI2I", "TV2V")]


def test_the_table_keeps_its_columns():
    """Notebook 00 writes vars(task) as the committed tasks table: its columns stay put."""
    assert list(vars(T.TASKS["T2I"])) == ["name", "title", "encoder", "prime", "target",
                                          "zero_shot", "role", "paper"]


def test_rows_are_checked_against_the_vocabularies():
    with pytest.raises(ValueError, match="X: prime 'middle' is not one of: nothing, top half"):
        T.Task("X", "x", "text", "middle", "image", False, "mscoco", "")
    with pytest.raises(ValueError, match="X: encoder 'audio' is not one of"):
        T.Task("X", "x", "audio", "nothing", "image", False, "mscoco", "")


def test_task_names_are_checked_and_ordered():
    assert T.task_names(["t2v", "T2I"]) == ("T2I", "T2V")
    assert T.task_names("V2V") == ("V2V",)
    with pytest.raises(ValueError, match="unknown task 'T3V'; valid tasks: T2I, S2I"):
        T.task_names(["T3V"])
    with pytest.raises(ValueError, match="twice"):
        T.task_names(["T2I", "t2i"])
    with pytest.raises(ValueError, match="at least one task"):
        T.task_names([])


@pytest.mark.parametrize("name,kw,given", [
    ("T2I", {}, 0), ("S2I", {}, 0), ("T2V", {}, 0), ("S2V", {}, 0),
    ("I2I", {}, 4 * 8),                   # the top half: 4 of 8 token rows
    ("I2I", {"rows": 3}, 3 * 8),
    ("TI2I", {"rows": 5}, 5 * 8),
    ("V2V", {}, 64), ("V2V", {"frames": 3}, 3 * 64), ("TV2V", {}, 64),
])
def test_prime_masks_are_raster_prefixes(name, kw, given):
    mask = T.prime_mask(name, GRID, **kw)
    assert mask.dtype == torch.bool and tuple(mask.shape) == T.get_task(name).target_grid(GRID)
    assert T.prime_length(mask) == given == int(mask.sum())


def test_prime_masks_per_sample_and_their_errors():
    mask = T.prime_mask("TI2I", GRID, rows=[0, 2, 8])
    assert mask.shape == (3, 1, 8, 8)
    assert T.prime_length(mask).tolist() == [0, 16, 64]
    with pytest.raises(ValueError, match="pass rows="):
        T.prime_mask("TI2I", GRID)
    with pytest.raises(ValueError, match="T2I primes nothing, not rows"):
        T.prime_mask("T2I", GRID, rows=2)
    with pytest.raises(ValueError, match=r"frames must be an integer in \[1, 7\]"):
        T.prime_mask("V2V", GRID, frames=8)
    with pytest.raises(ValueError, match="has one frame"):
        T.prime_mask("V2V", (1, 8, 8))
    with pytest.raises(ValueError, match=r"rows must lie in \[0, 8\]"):
        T.prime_mask("TI2I", GRID, rows=[9])
    with pytest.raises(ValueError, match="grid must be a token grid"):
        T.prime_mask("T2I", (8, 8))
    holes = torch.zeros(1, 2, 2, dtype=torch.bool)
    holes[0, 1, 1] = True
    with pytest.raises(ValueError, match="prefix"):
        T.prime_length(holes)


def test_edit_row_finds_the_first_changed_row():
    a = np.zeros((32, 32, 3), np.uint8)
    b = a.copy()
    b[13, 5] = 1
    assert T.edit_row(a, b) == 13 and T.edit_row(a, a) == 32
    g = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    h = g.clone()
    h[0, 0, 6, 2] = 3
    assert T.edit_row(g, h).tolist() == [6, 8]
    assert T.edit_row(g[0], h[0]) == 6


def test_counterfactuals_give_the_manipulation_ground_truth():
    for i in range(5):
        s = splits.sample("mscoco", "val", i)
        cf = T.counterfactual("TI2I", s)
        r = cf["edit_row"]
        assert 0 <= r < 32 and cf["caption"] != s.caption
        assert np.array_equal(cf["picture"][:r], s.image[:r])          # rows above the edit kept
        assert not np.array_equal(cf["picture"][r], s.image[r])
        v = splits.sample("msrvtt", "val", i, frames=4)
        cf = T.counterfactual("TV2V", v, frames=4)
        assert cf["picture"].shape == v.video.shape
        assert np.array_equal(cf["picture"][0], v.video[0])            # the first frame primes
        assert "up" in cf["caption"] or "down" in cf["caption"]
    with pytest.raises(ValueError, match="only TI2I and TV2V"):
        T.counterfactual("T2I", s)


def test_world_examples_for_every_task():
    for i, name in enumerate(T.TASKS):
        ex = T.world_example(name, index=i)
        kind, out = ex["output"]
        assert ex["task"] == name and kind == T.TASKS[name].target
        assert out.shape == ((8, 32, 32, 3) if kind == "video" else (32, 32, 3))
    ex = T.world_example("TI2I", index=2)
    prime = ex["inputs"][0][1]
    s = splits.sample("mscoco", "val", 2)
    r = T.counterfactual("TI2I", s)["edit_row"]
    assert np.array_equal(prime[:r], s.image[:r]) and (prime[r:] == 128).all()
