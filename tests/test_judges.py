"""Specifications of the world's judges (DESIGN §7): shapes, data, training, the cache."""
import numpy as np
import pytest
import torch

from nuwa_lib.data import world
from nuwa_lib.evaluation import judge_checks, judge_nets, judges as J
from nuwa_lib.utils.tensors import to_tensor

TINY = {"threads": 1,
        "classifier": {"width": 4, "feature_dim": 8, "steps": 2, "batch_size": 4},
        "clip": {"width": 4, "embed_dim": 8, "text_dim": 8, "text_layers": 1, "heads": 2,
                 "steps": 2, "batch_size": 4},
        "video": {"width": 2, "feature_dim": 8, "steps": 2, "batch_size": 2},
        "segmenter": {"width": 4, "steps": 2, "batch_size": 4}}


def _cfg(**judges):
    section = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY.items()}
    for name, over in judges.items():
        section[name].update(over)
    return {"name": "smoke", "seed": 0, "world": {"canvas": 32, "frames": 4}, "judges": section}


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(tmp_path))
    return tmp_path


# ----------------------------------------------------------------------------- networks
def test_classifier_forward_shapes_and_is_classes():
    jc = judge_nets.JudgesConfig.from_profile(_cfg())
    m = judge_nets.build("classifier", jc).eval()
    out = m(torch.zeros(3, 3, 32, 32))
    assert out["features"].shape == (3, 8)
    assert {h: v.shape[1] for h, v in out["logits"].items()} == {
        "shape": 5, "colour": 6, "size": 2, "position": 9, "background": 4}
    assert {a: v.shape for a, v in out["slots"].items()} == {
        "shape": (3, 9, 6), "colour": (3, 9, 7), "size": (3, 9, 3)}    # 0 = empty cell
    lp = m.is_log_probs(out)
    assert lp.shape == (3, 30)     # shape x colour
    assert torch.allclose(lp.exp().sum(1), torch.ones(3), atol=1e-5)


def test_video_net_takes_exactly_its_frame_count():
    jc = judge_nets.JudgesConfig.from_profile(_cfg())
    m = judge_nets.build("video", jc).eval()
    out = m(torch.zeros(2, 4, 3, 32, 32))
    assert out["features"].shape == (2, 8) and out["logits"]["motion"].shape == (2, 5)
    assert out["presence"].shape == (2, len(judge_nets.VIDEO_PRESENCE)) == (2, 5 + 6 + 2 + 9 + 5)
    assert m.all_logits(out).shape == (2, 5 + 6 + 2 + 9 + 4 + 5 + len(judge_nets.VIDEO_PRESENCE))
    with pytest.raises(ValueError, match="frames=4"):
        m(torch.zeros(2, 3, 3, 32, 32))


def test_clip_gives_unit_embeddings_and_square_logits():
    jc = judge_nets.JudgesConfig.from_profile(_cfg())
    clip = judge_nets.build("clip", jc).eval()
    caps = ["a small red circle on the left on grass",
            "a large blue square moves up then stays still and a small white cross moves left in the sky"]
    img = clip.embed_images(np.zeros((2, 32, 32, 3), np.uint8))
    txt = clip.embed_captions(caps)
    assert img.shape == txt.shape == (2, 8)
    assert torch.allclose(txt.norm(dim=1), torch.ones(2), atol=1e-5)
    assert clip(to_tensor(np.zeros((2, 32, 32, 3), np.uint8)), clip.tokenizer(caps)).shape == (2, 2)


def test_text_encoder_ignores_padding():
    jc = judge_nets.JudgesConfig.from_profile(_cfg())
    clip = judge_nets.build("clip", jc).eval()
    tok = clip.tokenizer(["a small red circle in the center on sand"])
    longer = torch.cat([tok, torch.zeros(1, 8, dtype=torch.long)], 1)
    clip.pos_emb.data = torch.randn(32, 8)
    assert torch.allclose(clip.encode_text(tok), clip.encode_text(longer), atol=1e-6)


def test_tokenizer_names_unknown_words_and_long_captions():
    tok = judge_nets.WordTokenizer(max_len=6)
    with pytest.raises(ValueError, match="'zebra'"):
        tok(["a zebra"])
    with pytest.raises(ValueError, match="max_len=6"):
        tok(["a small red circle on the left on grass"])


def test_longest_caption_fits_the_tokenizer():
    scene = world.Scene("sky", 0, (
        world.Obj("triangle", "yellow", "large", "left", 9.0, 16.0, "right", (2, "still")),
        world.Obj("triangle", "yellow", "large", "right", 22.0, 16.0, "right", (2, "still"))))
    words = world.caption(scene, video=True).split()
    assert len(words) <= judge_nets.MAX_CAPTION_WORDS
    judge_nets.WordTokenizer()([world.caption(scene, video=True)])


def test_segmenter_predicts_a_class_per_pixel():
    jc = judge_nets.JudgesConfig.from_profile(_cfg())
    seg = judge_nets.build("segmenter", jc).eval()
    assert seg(torch.zeros(2, 3, 32, 32)).shape == (2, world.N_SEG_CLASSES, 32, 32)
    pred = seg.predict(np.zeros((3, 32, 32, 3), np.uint8))
    assert pred.shape == (3, 32, 32) and pred.dtype == np.uint8


# ----------------------------------------------------------------------------- data
def test_judge_scenes_are_deterministic_and_splits_differ():
    a = J.world_data("train", 6, seed=0)
    b = J.world_data("train", 6, seed=0)
    c = J.world_data("test", 6, seed=0)
    assert np.array_equal(a.pixels, b.pixels) and a.captions == b.captions
    assert a.captions != c.captions
    assert a.pixels.shape == (6, 32, 32, 3) and a.seg.shape == (6, 32, 32)
    v = J.world_data("test", 2, seed=0, frames=3, video=True, n_objects=1)
    assert v.pixels.shape == (2, 3, 32, 32, 3) and all(len(s.objects) == 1 for s in v.scenes)


def test_targets_label_the_object_only_in_single_object_scenes():
    one = world.Scene("sand", 0, (world.Obj("cross", "white", "small", "top", 16.0, 6.0),))
    two = world.Scene("water", 0, (world.Obj("circle", "red", "large", "left", 8.0, 16.0),
                                   world.Obj("square", "blue", "small", "right", 25.0, 16.0)))
    t = J.scene_targets([one, two])
    assert t["single"].tolist() == [True, False]
    assert t["shape"][0] == world.SHAPES.index("cross")
    assert t["background"].tolist() == [world.BACKGROUNDS.index("sand"), world.BACKGROUNDS.index("water")]
    # slots: cell 3 ("left") holds a red circle, cell 5 ("right") a blue square, the rest empty
    shapes = [0] * 9
    shapes[3], shapes[5] = 1 + world.SHAPES.index("circle"), 1 + world.SHAPES.index("square")
    assert t["slot_shape"][1].tolist() == shapes
    assert t["slot_colour"][1, 5] == 1 + world.COLOURS.index("blue")
    assert t["slot_size"][0].tolist() == [0, 1 + world.SIZES.index("small")] + [0] * 7
    moving = world.Scene("water", 0, (world.Obj("circle", "red", "large", "left", 8.0, 16.0, "up"),
                                      world.Obj("square", "blue", "small", "right", 25.0, 16.0)))
    on = {judge_nets.VIDEO_PRESENCE[i] for i in np.flatnonzero(J.scene_targets([moving], video=True)["presence"][0])}
    assert on == {("shape", "circle"), ("shape", "square"), ("colour", "red"), ("colour", "blue"),
                  ("size", "large"), ("size", "small"), ("position", "left"), ("position", "right"),
                  ("motion", "up"), ("motion", "still")}


def test_retrieval_counts_identical_caption_text_as_right():
    class Perfect:   # embeds every caption and image to a one-hot of its caption's text
        def __init__(self, captions):
            self.ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
            self.order = list(captions)

        def embed_images(self, images):
            return torch.eye(8)[[self.ids[self.order[int(i)]] for i in images[:, 0, 0, 0]]]

        def embed_captions(self, captions):
            return torch.eye(8)[[self.ids[c] for c in captions]]

    caps = ["a", "b", "a", "c"]
    images = np.zeros((4, 1, 1, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(4)
    assert judge_checks.retrieval_r_at_1(Perfect(caps), images, caps, candidates=4) == 1.0
    with pytest.raises(ValueError, match="candidates=8"):
        judge_checks.retrieval_r_at_1(Perfect(caps), images, caps, candidates=8)


# ----------------------------------------------------------------------------- config
def test_unknown_judge_keys_are_named():
    with pytest.raises(ValueError, match="depth"):
        judge_nets.JudgesConfig.from_profile(_cfg(classifier={"depth": 3}))
    bad = _cfg()
    bad["judges"]["inception"] = {}
    with pytest.raises(ValueError, match="inception"):
        judge_nets.JudgesConfig.from_profile(bad)


def test_hash_follows_the_recipe_not_the_thread_count():
    base = judge_nets.JudgesConfig.from_profile(_cfg())
    steps = judge_nets.JudgesConfig.from_profile(_cfg(classifier={"steps": 3}))
    threads = judge_nets.JudgesConfig.from_profile({**_cfg(), "judges": {**_cfg()["judges"], "threads": 2}})
    assert judge_nets.config_hash("classifier", base) != judge_nets.config_hash("classifier", steps)
    assert judge_nets.config_hash("clip", base) == judge_nets.config_hash("clip", steps)
    assert judge_nets.config_hash("classifier", base) == judge_nets.config_hash("classifier", threads)


# ----------------------------------------------------------------------------- cache
def test_cache_miss_trains_and_writes_then_hit_loads_identical_weights(artifacts):
    cfg = _cfg()
    first = J.get_judges(cfg, progress=False)
    assert all(first.info[n]["source"] == "trained" for n in judge_nets.JUDGE_NAMES)
    for name in judge_nets.JUDGE_NAMES:
        path = first.paths[name]
        assert path.parent == artifacts / "smoke" / "judges" and path.exists()
        model = getattr(first, name)
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert not list((artifacts / "smoke" / "judges").glob(".*tmp"))
    second = J.get_judges(cfg, progress=False)
    assert all(second.info[n]["source"] == "loaded" for n in judge_nets.JUDGE_NAMES)
    for name in judge_nets.JUDGE_NAMES:
        a, b = getattr(first, name).state_dict(), getattr(second, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_is_deterministic_and_leaves_the_callers_random_state_alone():
    jc = judge_nets.JudgesConfig.from_profile(_cfg())
    torch.manual_seed(123)
    a, _ = J.train_judge("classifier", jc, progress=False)
    after_training = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after_training)
    b, _ = J.train_judge("classifier", jc, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_missing_judge_without_training_names_the_file(artifacts):
    with pytest.raises(FileNotFoundError, match=r"classifier-[0-9a-f]{12}\.pt"):
        J.get_judges(_cfg(), train_if_missing=False, names=("classifier",))


def test_corrupt_cache_file_is_a_clear_error(artifacts):
    jc = judge_nets.JudgesConfig.from_profile(_cfg())
    path = J.judge_path("segmenter", jc, "smoke")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(J.JudgeCacheError, match="segmenter-.*cannot read"):
        J.get_judges(_cfg(), names=("segmenter",))


def test_checkpoint_for_another_config_is_refused_naming_the_key(artifacts, tmp_path):
    jc = judge_nets.JudgesConfig.from_profile(_cfg())
    model, info = J.train_judge("segmenter", jc, progress=False)
    path = J.save_judge(tmp_path / "seg.pt", "segmenter", jc, model, info)
    other = judge_nets.JudgesConfig.from_profile(_cfg(segmenter={"lr": 0.5}))
    with pytest.raises(J.JudgeCacheError, match=r"seg\.pt.*lr: file 0\.002 != wanted 0\.5"):
        J.load_judge(path, "segmenter", other)
    with pytest.raises(J.JudgeCacheError, match="name"):
        J.load_judge(path, "classifier", jc)
    assert isinstance(J.load_checkpoint(path), judge_nets.Segmenter)


def test_readings_name_one_object_or_every_occupied_cell():
    pred = {"shape": np.array([0, 0]), "colour": np.array([0, 0]), "size": np.array([1, 0]),
            "position": np.array([4, 0]), "background": np.array([2, 2]),
            "slot_shape": np.zeros((2, 9), int), "slot_colour": np.zeros((2, 9), int),
            "slot_size": np.zeros((2, 9), int)}
    pred["slot_shape"][1, [0, 8]] = (1, 2)       # circle top left, square bottom right
    pred["slot_colour"][1, [0, 8]] = (3, 1)      # blue, red
    pred["slot_size"][1, [0, 8]] = (2, 1)        # large, small
    assert judge_checks.describe_predictions(pred) == [
        "large red circle, center, sand",
        "large blue circle (top left) + small red square (bottom right), sand"]
