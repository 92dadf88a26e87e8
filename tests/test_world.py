"""Specifications of the Shapes World (DESIGN §4), one behaviour per test name."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nuwa_lib.data import splits, world as w

VIDEO_ROLES = [r for r, s in splits.ROLES.items() if s.kind == "video"]
IMAGE_ROLES = [r for r, s in splits.ROLES.items() if s.kind == "image"]
N_BG = len(w.BACKGROUNDS)


def _pixels(s):
    return s.image if s.image is not None else s.video


def _same(a, b):
    return (np.array_equal(_pixels(a), _pixels(b)) and np.array_equal(a.seg, b.seg)
            and a.caption == b.caption and a.scene == b.scene)


def _centroid(mask):
    ys, xs = np.nonzero(mask)
    return xs.mean(), ys.mean()


def _digest(s):
    h = hashlib.sha256(_pixels(s).tobytes() + s.seg.tobytes() + s.caption.encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("role,split", [("cc", "train"), ("vatex", "val"),
                                        ("cocostuff", "test"), ("msrvtt", "zeroshot")])
def test_same_arguments_give_byte_identical_samples_regardless_of_call_order(role, split):
    first = splits.sample(role, split, 5, seed=3)
    for i in range(20):
        splits.sample(role, split, i, seed=3)
        splits.sample("moments", "train", i, seed=1)
    assert _same(first, splits.sample(role, split, 5, seed=3))


def test_samples_are_identical_in_a_fresh_process():
    code = ("from nuwa_lib.data import splits as w; import hashlib; "
            "s = w.sample('vspw', 'train', 7, seed=11); "
            "print(hashlib.sha256(s.video.tobytes() + s.seg.tobytes() "
            "+ s.caption.encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         env=dict(os.environ, PYTHONHASHSEED="123"))
    assert out.stdout.strip() == _digest(splits.sample("vspw", "train", 7, seed=11))


def test_different_index_split_role_or_seed_gives_different_samples():
    base = splits.sample("cc", "train", 0)
    others = [splits.sample("cc", "train", 1), splits.sample("cc", "val", 0),
              splits.sample("mscoco", "train", 0), splits.sample("cc", "train", 0, seed=1)]
    assert all(not _same(base, o) for o in others)
    digests = {_digest(splits.sample("cc", "train", i)) for i in range(50)}
    assert len(digests) == 50


# ----------------------------------------------------------------------------- captions
def test_captions_parse_back_to_the_scene_and_use_only_the_vocabulary():
    for role in splits.ROLES:
        for i in range(40):
            s = splits.sample(role, "train", i)
            assert s.caption == s.caption.lower()
            assert set(s.caption.split()) <= set(w.VOCABULARY)
            parsed = w.parse_caption(s.caption)
            assert parsed["background"] == s.scene.background
            assert len(parsed["objects"]) == len(s.scene.objects)
            for p, o in zip(parsed["objects"], s.scene.objects):
                assert (p["shape"], p["colour"], p["size"]) == (o.shape, o.colour, o.size)
                key = "motion" if s.video is not None else "position"
                assert p[key] == getattr(o, key)


def test_caption_templates_read_naturally():
    o = w.Obj("circle", "red", "large", "top left", 8, 8, "right")
    o2 = w.Obj("square", "blue", "small", "center", 15, 15, "still")
    scene = w.Scene("grass", 0, (o, o2))
    assert w.caption(scene) == ("a large red circle at the top left and "
                                "a small blue square in the center on grass")
    assert w.caption(scene, video=True) == ("a large red circle moves right and "
                                            "a small blue square stays still on grass")
    changed = w.change_motion(scene, "up", 3)
    assert w.caption(changed, video=True).startswith("a large red circle moves right then moves up")
    assert w.parse_caption(w.caption(changed, video=True))["objects"][0]["motion_change"] == "up"
    with pytest.raises(ValueError, match="caption"):
        w.parse_caption("a big red blob")


def test_labels_are_the_first_objects_class_indices():
    s = splits.sample("kinetics", "train", 2)
    o = s.scene.objects[0]
    assert s.labels == {"shape": w.SHAPES.index(o.shape), "colour": w.COLOURS.index(o.colour),
                        "size": w.SIZES.index(o.size), "position": w.POSITIONS.index(o.position),
                        "background": w.BACKGROUNDS.index(s.scene.background),
                        "motion": w.MOTIONS.index(o.motion)}
    assert "motion" not in splits.sample("cc", "train", 2).labels


# ----------------------------------------------------------------------------- pixels and seg
@pytest.mark.parametrize("canvas", [32, 64])
def test_object_pixels_have_the_exact_object_colour(canvas):
    for i in range(60):
        s = splits.sample("cc", "train", i, canvas=canvas)
        for o in s.scene.objects:
            mask = w._mask(o.shape, o.size, o.cx, o.cy, canvas)
            covered = np.zeros_like(mask)
            for later in s.scene.objects[s.scene.objects.index(o) + 1:]:
                covered |= w._mask(later.shape, later.size, later.cx, later.cy, canvas)
            visible = mask & ~covered
            assert (s.image[visible] == w.COLOUR_RGB[o.colour]).all()
            assert (s.seg[visible] == N_BG + w.SHAPES.index(o.shape)).all()


def test_the_labelled_first_object_stays_at_least_half_visible():
    for i in range(200):
        scene = splits.sample("mscoco", "test", i).scene
        if len(scene.objects) == 2:
            first, second = (w._mask(o.shape, o.size, o.cx, o.cy, 32) for o in scene.objects)
            assert (first & ~second).sum() >= w.MIN_VISIBLE * first.sum()


@pytest.mark.parametrize("canvas", [32, 64])
def test_single_object_centroid_lies_in_its_caption_position_cell(canvas):
    seen = 0
    for i in range(150):
        s = splits.sample("cocostuff", "val", i, canvas=canvas)
        if len(s.scene.objects) != 1:
            continue
        seen += 1
        x, y = _centroid(s.seg >= N_BG)
        word = w.parse_caption(s.caption)["objects"][0]["position"]
        assert w.cell_of(x, y, canvas) == word
    assert seen > 30


def test_seg_maps_agree_with_pixels():
    object_rgbs = np.array(list(w.COLOUR_RGB.values()))
    for role in ("cocostuff", "vspw"):
        for i in range(40):
            s = splits.sample(role, "train", i)
            px, seg = _pixels(s).reshape(-1, 3).astype(int), s.seg.reshape(-1)
            is_obj_colour = (px[:, None, :] == object_rgbs[None]).all(-1).any(-1)
            assert (seg[is_obj_colour] >= N_BG).all()
            assert (seg[~is_obj_colour] < N_BG).all()
            gap = np.abs(px[seg < N_BG][:, None, :] - object_rgbs[None]).max(-1).min()
            assert gap >= w.MIN_COLOUR_GAP
            expected = {w.BACKGROUNDS.index(s.scene.background)}
            expected |= {N_BG + w.SHAPES.index(o.shape) for o in s.scene.objects}
            assert set(np.unique(s.seg).tolist()) == expected


@pytest.mark.parametrize("canvas", [32, 64])
def test_every_background_texture_stays_far_from_every_object_colour(canvas):
    object_rgbs = np.array(list(w.COLOUR_RGB.values()))
    for bg in w.BACKGROUNDS:
        tex = np.stack([w.texture(bg, seed, canvas) for seed in range(0, w.N_TEXTURES, 4)])
        px = np.unique(tex.reshape(-1, 3), axis=0).astype(int)
        assert np.abs(px[:, None] - object_rgbs[None]).max(-1).min() >= w.MIN_COLOUR_GAP
        assert len(px) > 10                       # it is a texture, not a flat colour


def test_texture_depends_only_on_background_seed_and_canvas_and_is_the_same_in_every_frame():
    a, b = w.texture("water", 5, 32), w.texture("water", 5, 32)
    assert np.array_equal(a, b) and not np.array_equal(a, w.texture("water", 6, 32))
    s = splits.sample("vspw", "train", 3)
    bg = s.seg < N_BG
    tex = w.texture(s.scene.background, s.scene.texture_seed, 32)
    for t in range(len(s.video)):
        assert np.array_equal(s.video[t][bg[t]], tex[bg[t]])


# ----------------------------------------------------------------------------- videos
def test_objects_first_move_in_their_caption_direction_and_still_objects_stay_put():
    step = w.DEFAULT_SPEED
    for role in ("kinetics", "bair"):
        for i in range(80):
            s = splits.sample(role, "train", i)
            motion = w.parse_caption(s.caption)["objects"][0]["motion"]
            c0, c1 = _centroid(s.seg[0] >= N_BG), _centroid(s.seg[1] >= N_BG)
            dx, dy = w._DIRECTION[motion]
            assert np.allclose(np.subtract(c1, c0), (dx * step, dy * step))
            if motion == "still":
                assert (s.video == s.video[0]).all()


def test_bounce_reverses_direction_and_keeps_shapes_inside_the_canvas():
    for motion in ("up", "down", "left", "right"):
        o = w.Obj("cross", "white", "large", "right", 24, 15, motion)
        video, seg = w.render_video(w.Scene("sand", 1, (o,)), frames=40, speed=3)
        counts = (seg >= N_BG).sum(axis=(1, 2))
        assert (counts == counts[0]).all()        # never clipped by a wall
        track = w.trajectory(o, 40, 3)
        assert track.min() >= 7 and track.max() <= 31 - 7
        axis = 0 if motion in ("left", "right") else 1
        assert len(set(np.sign(np.diff(track[:, axis])))) == 2   # went both ways


def test_motion_change_switches_direction_from_frame_k_and_keeps_earlier_frames():
    o = w.Obj("circle", "red", "small", "center", 15, 15, "right")
    scene = w.Scene("grass", 2, (o,))
    changed = w.change_motion(scene, "up", 3)
    a, sa = w.render_video(scene, frames=7, speed=1)
    b, sb = w.render_video(changed, frames=7, speed=1)
    assert np.array_equal(a[:3], b[:3]) and np.array_equal(sa[:3], sb[:3])
    assert not np.array_equal(a[3], b[3])
    cs = [_centroid(sb[t] >= N_BG) for t in range(7)]
    assert all(np.allclose(np.subtract(cs[t + 1], cs[t]), (1, 0)) for t in range(2))
    assert all(np.allclose(np.subtract(cs[t + 1], cs[t]), (0, -1)) for t in range(2, 6))


# ----------------------------------------------------------------------------- held-out
def test_heldout_combinations_never_appear_in_training_splits_of_video_roles():
    for role in VIDEO_ROLES:
        for split, n in (("train", 150), ("val", 60), ("test", 60)):
            for i in range(n):
                scene = splits.sample(role, split, i, frames=1).scene
                assert not w.is_heldout(scene), (role, split, i)


def test_every_zeroshot_sample_has_a_heldout_first_object():
    for role in VIDEO_ROLES:
        for i in range(60):
            scene = splits.sample(role, "zeroshot", i, frames=2).scene
            first = w.Scene(scene.background, scene.texture_seed, scene.objects[:1])
            assert w.is_heldout(first), (role, i)


def test_zeroshot_split_of_an_image_role_is_an_error():
    for role in IMAGE_ROLES:
        with pytest.raises(ValueError, match="zeroshot"):
            splits.sample(role, "zeroshot", 0)


# ----------------------------------------------------------------------------- counterfactuals
OTHER_VALUE = {"shape": "diamond", "colour": "purple", "size": "small",
               "position": "bottom right", "background": "water"}


@pytest.mark.parametrize("attribute", w.ATTRIBUTES)
def test_change_attribute_changes_exactly_that_attribute(attribute):
    o = w.Obj("circle", "red", "large", "top left", 8, 9, "left")
    o2 = w.Obj("square", "blue", "small", "center", 15, 16)
    scene = w.Scene("grass", 7, (o, o2))
    new = w.change_attribute(scene, attribute, OTHER_VALUE[attribute])
    assert new.texture_seed == scene.texture_seed and new.objects[1] == o2
    before = dict(vars(o), background=scene.background)
    after = dict(vars(new.objects[0]), background=new.background)
    changed = {k for k in before if before[k] != after[k]}
    expected = {attribute} | ({"cx", "cy"} if attribute == "position" else set())
    assert changed == expected
    (img_a, seg_a), (img_b, seg_b) = w.render_image(scene), w.render_image(new)
    if attribute == "colour":
        assert np.array_equal(seg_a, seg_b)
        outside = seg_a < N_BG
        assert np.array_equal(img_a[outside], img_b[outside])
    if attribute == "background":
        assert np.array_equal(seg_a >= N_BG, seg_b >= N_BG)
        assert np.array_equal(img_a[seg_a >= N_BG], img_b[seg_b >= N_BG])
    if attribute in ("shape", "size", "position"):
        untouched = (seg_a < N_BG) & (seg_b < N_BG)
        assert np.array_equal(img_a[untouched], img_b[untouched])


def test_change_position_keeps_the_jitter_offset_and_refuses_occupied_cells():
    o = w.Obj("circle", "red", "small", "center", 13, 17)      # anchor (15, 15): offset (-2, +2)
    scene = w.Scene("sky", 0, (o, w.Obj("cross", "white", "small", "top", 15, 8)))
    moved = w.change_attribute(scene, "position", "bottom").objects[0]
    lo, anchor, hi = w._cells(32)[2]
    assert (moved.cx, moved.cy) == (13, min(anchor + 2, hi))
    assert w.cell_of(moved.cx, moved.cy) == "bottom"
    with pytest.raises(ValueError, match="occupied"):
        w.change_attribute(scene, "position", "top")


def test_counterfactual_pairs_change_one_thing_and_never_create_heldout_combinations():
    rng = np.random.default_rng(0)
    for _ in range(60):
        a, b, attr, old, new = w.counterfactual_pair(rng, video=True, frames=8)
        assert old != new and not w.is_heldout(a) and not w.is_heldout(b)
        if attr == "motion":
            k, m = b.objects[0].motion_change
            assert 1 <= k <= 7 and m == new
            va, _ = w.render_video(a, 8)
            vb, _ = w.render_video(b, 8)
            assert np.array_equal(va[:k], vb[:k])
        else:
            assert w.change_attribute(a, attr, new) == b
    a, b, attr, old, new = w.counterfactual_pair(rng, attribute="colour")
    assert attr == "colour" and a.objects[0].colour == old and b.objects[0].colour == new


# ----------------------------------------------------------------------------- splits & stats
def test_world_split_is_a_lazy_sequence_over_sample():
    ds = splits.WorldSplit("bair", "val", 5, seed=2, frames=4)
    assert len(ds) == 5 and ds[4].video.shape == (4, 32, 32, 3)
    assert _same(ds[-1], splits.sample("bair", "val", 4, seed=2, frames=4))
    assert _same(ds[np.int64(1)], ds[1])
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(IndexError):
        ds[-6]
    assert len(list(splits.WorldSplit("cc", "train", 0))) == 0


def test_attribute_stats_counts_every_value():
    samples = [splits.sample("vatex", "train", i, frames=1) for i in range(30)]
    rows = splits.attribute_stats(samples)
    by = {}
    for r in rows:
        by.setdefault(r["attribute"], {})[r["value"]] = r["count"]
    n_obj = sum(len(s.scene.objects) for s in samples)
    assert sum(by["shape"].values()) == sum(by["motion"].values()) == n_obj
    assert sum(by["background"].values()) == 30 and set(by["colour"]) == set(w.COLOURS)
    assert "motion" not in {r["attribute"] for r in splits.attribute_stats([splits.sample("cc", "train", 0)])}


# ----------------------------------------------------------------------------- errors
BAD_CALLS = [
    (lambda: splits.sample("foo", "train", 0), "role 'foo'.*cc, moments"),
    (lambda: splits.sample("cc", "dev", 0), "split 'dev'.*train, val, test, zeroshot"),
    (lambda: splits.sample("cc", "train", -1), "index"),
    (lambda: splits.sample("cc", "train", 0, seed=-3), "seed"),
    (lambda: splits.sample("cc", "train", 0, canvas=48), "canvas 48.*32, 64"),
    (lambda: splits.sample("vatex", "train", 0, frames=0), "frames"),
    (lambda: splits.WorldSplit("cc", "train", -1), "size"),
    (lambda: splits.WorldSplit("kinetics", "zeroshot", 3, canvas=16), "canvas"),
    (lambda: w.random_scene(np.random.default_rng(0), n_objects=3), "n_objects 3.*1, 2"),
    (lambda: w.render_video(splits.sample("cc", "train", 0).scene, frames=0), "frames"),
    (lambda: w.change_attribute(splits.sample("cc", "train", 0).scene, "texture", "x"), "attribute 'texture'"),
    (lambda: w.change_attribute(splits.sample("cc", "train", 0).scene, "shape", "hexagon"), "value 'hexagon'.*circle"),
    (lambda: w.change_motion(splits.sample("cc", "train", 0).scene, "sideways", 2), "motion 'sideways'.*up, down"),
    (lambda: w.change_motion(splits.sample("cc", "train", 0).scene, "up", 0), "after_frame"),
    (lambda: w.counterfactual_pair(np.random.default_rng(0), "motion"), "attribute 'motion'"),
    (lambda: w.Obj("circle", "pink", "small", "top", 8, 8), "colour 'pink'"),
    (lambda: w.Scene("grass", 0, (w.Obj("circle", "red", "small", "top", 15, 8),) * 2), "distinct"),
    (lambda: w.texture("lava", 0), "background 'lava'"),
    (lambda: w.Obj("circle", "red", "small", "top", 15, 8, "up", (2,)), "motion_change"),
    (lambda: w.Scene("sky", 0, (w.Obj("circle", "red", "large", "top", 15, 3),)), "canvas"),
    (lambda: w.trajectory(w.Obj("circle", "red", "small", "top", 15, 8), 4, -1.0), "speed"),
]


@pytest.mark.parametrize("call,match", BAD_CALLS, ids=[m.split()[0] for _, m in BAD_CALLS])
def test_bad_arguments_raise_value_errors_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(role=st.sampled_from(sorted(splits.ROLES)), split=st.sampled_from(["train", "val", "test"]),
       index=st.integers(0, 2**40), seed=st.integers(0, 2**31), canvas=st.sampled_from([32, 64]))
def test_any_sample_has_the_right_dtype_shape_seg_range_and_a_lowercase_caption(
        role, split, index, seed, canvas):
    s = splits.sample(role, split, index, seed=seed, canvas=canvas, frames=3)
    px = _pixels(s)
    shape = (canvas, canvas) if s.image is not None else (3, canvas, canvas)
    assert px.dtype == np.uint8 and px.shape == shape + (3,)
    assert s.seg.dtype == np.uint8 and s.seg.shape == shape and s.seg.max() < w.N_SEG_CLASSES
    assert (s.image is None) != (s.video is None)
    assert s.caption == s.caption.lower() and s.caption.startswith("a ")
    assert 1 <= len(s.scene.objects) <= 2


def test_one_frame_is_drawn_as_in_the_whole_video():
    rng = np.random.default_rng(5)
    for n in (1, 2):
        scene = w.random_scene(rng, 32, n, video=True)
        vid, seg = w.render_video(scene, 8)
        for t in (0, 3, 7):
            img, s = w.render_frame(scene, t, 8)
            assert np.array_equal(img, vid[t]) and np.array_equal(s, seg[t])
    with pytest.raises(ValueError, match="frame 8"):
        w.render_frame(scene, 8, 8)
