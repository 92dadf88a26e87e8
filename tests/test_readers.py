"""Real datasets (issue #9): readers for COCO captions, COCO-Stuff, BAIR (VideoGPT's HDF5),
folders of videos with MSR-VTT / VATEX caption files and VSPW, on tiny files written here in
each format; their token path into training; the `paper` profile; and the README's commands
("Running on real data and on GPUs") run as written, on 2 CPU processes."""
import os
import re
import shlex
import socket
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from nuwa_lib.data import catalog, media, readers as R, tasks as T, text
from nuwa_lib.model.config import NuwaConfig
from nuwa_lib.tokenizers import real_tokens, token_sets as D, vqgan as V
from nuwa_lib.training import cli, schedule, task_data, trainer
from nuwa_lib.utils.paths import REPO_ROOT
from nuwa_lib.utils.profiles import load_profile

S = 32                      # reader size in the unit tests (the tiny tokenizers' canvas)
RGB = [(210, 40, 40), (40, 200, 60), (40, 60, 220), (230, 210, 40), (40, 200, 210),
       (200, 40, 210), (250, 250, 250), (120, 120, 120)]


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


# ----------------------------------------------------------------------------- tiny files
def _solid(colour, h=30, w=40):
    a = np.zeros((h, w, 3), np.uint8)
    a[:] = colour
    return a


def _image(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _labels(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)


def _video(path, colours, fps, w=48, h=32):
    """An MPEG-4 file whose frame i is the solid colour colours[i]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        st = c.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1000))
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"qscale": "2"}
        for col in colours:
            for pkt in st.encode(av.VideoFrame.from_ndarray(_solid(col, h, w), format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)


def _json(path, data):
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def make_coco(root, annotations="captions.json", images="images"):
    _image(root / images / "000001.jpg", _solid(RGB[0], 30, 40))
    _image(root / images / "000002.png", _solid(RGB[1], 50, 30))
    _image(root / images / "000003.jpg", _solid(RGB[2], 64, 64))
    _json(root / annotations, {
        "images": [{"id": 1, "file_name": "000001.jpg"}, {"id": 2, "file_name": "000002.png"},
                   {"id": 3, "file_name": "000003.jpg"}],
        "annotations": [{"image_id": 1, "caption": "A  red picture.\n"},
                        {"image_id": 2, "caption": "a green picture"},
                        {"image_id": 1, "caption": "something red"},
                        {"image_id": 3, "caption": "a blue square picture"}]})
    return root


def make_moments(root):
    _video(root / "training" / "pushing" / "m1.mp4", RGB[:3], 2.5)    # 3 frames
    _video(root / "training" / "running" / "m2.mp4", RGB[:6], 5)      # 6 frames at 5 fps
    return root


def make_vatex(root):
    _video(root / "videos" / "abc_000001_000011.mp4", RGB[2:5], 2.5)
    _video(root / "videos" / "xyz_000005_000015.mp4", RGB[5:8], 2.5)
    _json(root / "vatex_training_v1.0.json", [
        {"videoID": "abc_000001_000011", "enCap": ["a person waves", "someone waving"],
         "chCap": ["..."]},
        {"videoID": "xyz_000005_000015", "enCap": ["a dog runs on grass"]}])
    return root


def make_msrvtt(root):
    _video(root / "TrainValVideo" / "video0.mp4", RGB[:3], 2.5)
    (root / "TrainValVideo" / "video1.mp4").write_bytes(b"not a video, just bytes" * 20)
    _video(root / "TrainValVideo" / "video2.mp4", RGB[3:6], 2.5)
    _json(root / "train_val_videodatainfo.json", {
        "videos": [{"video_id": "video0"}, {"video_id": "video1"}, {"video_id": "video2"}],
        "sentences": [{"video_id": "video0", "caption": "a man is cooking", "sen_id": 0},
                      {"video_id": "video1", "caption": "a broken video", "sen_id": 1},
                      {"video_id": "video2", "caption": "cars drive by", "sen_id": 2},
                      {"video_id": "video0", "caption": "someone cooks", "sen_id": 3}]})
    return root


def make_cocostuff(root):
    lab = np.zeros((30, 40), np.uint8)
    lab[:15, :20], lab[:15, 20:], lab[15:, :20], lab[15:, 20:] = 0, 20, 181, 255
    for stem in ("000000000009", "000000000025"):
        _image(root / "train2017" / f"{stem}.jpg", _solid(RGB[3], 30, 40))
        _labels(root / "stuffthingmaps_trainval2017" / "train2017" / f"{stem}.png", lab)
    return root


def make_bair(root, lengths=(4, 3, 5)):
    n = sum(lengths)
    data = np.stack([_solid(RGB[i % len(RGB)], 16, 16) for i in range(n)])
    with h5py.File(root / "bair.hdf5", "w") as f:
        f["train_data"] = data
        f["train_idx"] = np.cumsum([0, *lengths[:-1]]).astype(np.int64)
        f["test_data"] = data[:4]
        f["test_idx"] = np.array([0], np.int64)
    return root


def make_vspw(root, stills=13):
    for name in ("vid_a", "vid_b"):
        for i in range(stills):
            _image(root / "data" / name / "origin" / f"{i:08d}.jpg", _solid(RGB[i % len(RGB)], 30, 40))
            _labels(root / "data" / name / "mask" / f"{i:08d}.png", np.full((30, 40), i, np.uint8))
    (root / "train.txt").write_text("vid_a\nvid_b\n")
    return root


MAKERS = {"cc": make_coco, "moments": make_moments, "vatex": make_vatex,
          "mscoco": lambda r: make_coco(r, "annotations/captions_train2014.json", "train2014"),
          "msrvtt": make_msrvtt, "cocostuff": make_cocostuff, "bair": make_bair,
          "vspw": make_vspw}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Every dataset in the layout profiles/paper.yaml documents, one folder each."""
    base = tmp_path_factory.mktemp("data")
    out = {}
    for name, make in MAKERS.items():
        (base / name).mkdir()
        out[name] = make(base / name)
    return out


@pytest.fixture
def env(roots, monkeypatch):
    for name, root in roots.items():
        monkeypatch.setenv(catalog.root_variable(name), str(root))
    return roots


@pytest.fixture(scope="module")
def paper():
    return load_profile("paper")


def _close(a, colour, tol=14):
    return np.abs(a.astype(int) - np.array(colour)).max() <= tol


# ----------------------------------------------------------------------------- readers
def test_coco_captions(env, paper):
    r = catalog.open_dataset(paper, "cc", size=S)
    assert isinstance(r, R.CocoCaptions) and r.captioned and len(r) == 3
    s = r[0]
    assert s.image.shape == (S, S, 3) and s.image.dtype == np.uint8 and s.video is None
    assert s.caption == "A red picture." and s.seg is None and s.scene is None and s.role == "cc"
    assert _close(s.image, RGB[0]) and _close(r[1].image, RGB[1])      # 40x30 and 30x50 cropped
    assert r.captions() == ["A red picture.", "a green picture", "a blue square picture"]
    assert len(R.CocoCaptions(env["cc"], "captions.json", "images", all_captions=True, size=S)) == 4


def test_coco_captions_validation(tmp_path):
    root = make_coco(tmp_path / "coco")
    with pytest.raises(FileNotFoundError, match=r"nope\.json: COCO caption annotations not found"):
        R.CocoCaptions(root, "nope.json", "images")
    (root / "bad.json").write_text("{not json")
    with pytest.raises(media.DataError, match=r"bad\.json: COCO caption annotations is not valid JSON"):
        R.CocoCaptions(root, "bad.json", "images")
    (root / "odd.json").write_text('{"images": [{"id": 1, "file_name": "000001.jpg"}], '
                                   '"annotations": [{"image_id": 1, "caption": "x"}, '
                                   '{"image_id": 99, "caption": "y"}]}')
    with pytest.raises(media.DataError, match=r"odd\.json: annotations\[1\] refers to image_id 99"):
        R.CocoCaptions(root, "odd.json", "images")
    (root / "images" / "000002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"000002\.png: image file not found \(listed in "):
        R.CocoCaptions(root, "captions.json", "images")
    with pytest.warns(UserWarning, match=r"skipped 1 missing image file\(s\), e\.g\. .*000002\.png"):
        r = R.CocoCaptions(root, "captions.json", "images", skip_bad=True, size=S)
    assert len(r) == 2
    (root / "images" / "000003.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(media.DataError, match=r"000003\.jpg: cannot read the image"):
        r[1]
    with pytest.warns(UserWarning, match=r"skipped sample 1: .*000003\.jpg: cannot read"):
        assert [s.index for s in r.samples()] == [0]


def test_coco_stuff_maps_classes(env, paper):
    r = catalog.open_dataset(paper, "cocostuff", size=S)
    s = r[0]
    assert r.has_seg and s.image.shape == (S, S, 3) and s.seg.shape == (S, S)
    assert s.seg.dtype == np.uint8 and s.caption is None
    # 40x30 -> 43x32 -> centre 32x32: the four quadrants survive, nearest-neighbour
    assert (s.seg[0, 0], s.seg[0, -1], s.seg[-1, 0], s.seg[-1, -1]) == (0, 20 % 9, 181 % 9, 0)
    clip = R.CocoStuff(env["cocostuff"], size=S, seg_classes="clip")[0].seg
    assert (clip[0, 0], clip[0, -1], clip[-1, 0], clip[-1, -1]) == (0, 8, 8, 0)
    table = R.CocoStuff(env["cocostuff"], size=S, seg_classes={20: 3, 181: 5})[0].seg
    assert (table[0, -1], table[-1, 0], table[-1, -1]) == (3, 5, 0)
    assert set(np.unique(s.seg)) <= set(range(R.world.N_SEG_CLASSES))
    with pytest.raises(ValueError, match="class 12 of label 20 must be an integer in 0..8"):
        media.class_table({20: 12})
    with pytest.raises(ValueError, match="seg_classes 'mod' is not one of: modulo, clip"):
        media.class_table("mod")


def test_coco_stuff_validation(tmp_path):
    root = make_cocostuff(tmp_path / "cs")
    _labels(root / "stuffthingmaps_trainval2017" / "train2017" / "000000000025.png",
            np.zeros((10, 10)))
    r = R.CocoStuff(root, size=S)
    with pytest.raises(media.DataError, match=r"000000000025\.png: label map of 10x10 does not match "
                                          r"its picture .*000000000025\.jpg of 40x30"):
        r[1]
    (root / "train2017" / "000000000009.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"000000000009\.jpg: image of a label map not found"):
        R.CocoStuff(root, size=S)


def test_bair_hdf5(env, paper):
    r = catalog.open_dataset(paper, "bair", size=S)
    assert isinstance(r, R.BairHDF5) and len(r) == 3 and r.kind == "video"
    v = r[2].video                        # the last video: frames 7..11, up to the end of the data
    assert v.shape == (10, S, S, 3) and v.dtype == np.uint8
    assert [_close(v[k], RGB[(7 + min(k, 4)) % 8], 2) for k in range(10)] == [True] * 10
    assert _close(r[1].video[-1], RGB[6], 2)                     # 3 frames, the last held
    assert len(R.BairHDF5(env["bair"], split="test", size=S)) == 1
    assert _close(R.BairHDF5(env["bair"], size=S, stride=2)[0].video[1], RGB[2], 2)


def test_bair_validation(tmp_path):
    root = tmp_path
    with h5py.File(root / "a.hdf5", "w") as f:
        f["train_data"] = np.zeros((5, 8, 8, 3), np.uint8)
    with pytest.raises(media.DataError, match=r"a\.hdf5: no dataset 'train_idx' .*found \['train_data'\]"):
        R.BairHDF5(root, "a.hdf5")
    with h5py.File(root / "b.hdf5", "w") as f:
        f["train_data"] = np.zeros((5, 8, 8, 3), np.uint8)
        f["train_idx"] = np.array([0, 3, 5])
    with pytest.raises(media.DataError, match=r"b\.hdf5: train_idx must start at 0 and increase "
                                          r"strictly below the 5 frames"):
        R.BairHDF5(root, "b.hdf5")
    (root / "c.hdf5").write_bytes(b"garbage")
    with pytest.raises(media.DataError, match=r"c\.hdf5: not a readable HDF5 file"):
        R.BairHDF5(root, "c.hdf5")
    with pytest.raises(FileNotFoundError, match=r"d\.hdf5: BAIR HDF5 file not found"):
        R.BairHDF5(root, "d.hdf5")


def test_videos_are_sampled_at_2_5_fps(env, paper):
    moments = catalog.open_dataset(paper, "moments", size=S)
    assert not moments.captioned and len(moments) == 2 and moments.captions() == []
    a, b = moments[0].video, moments[1].video
    assert a.shape == b.shape == (10, S, S, 3) and moments[0].caption is None
    # 3 frames at 2.5 fps: one per sample, then the last held
    assert [_close(f, RGB[min(k, 2)]) for k, f in enumerate(a)] == [True] * 10
    # 6 frames at 5 fps: every 2nd (t = 0, 0.4, 0.8 s), then the last (t = 1.0 s) held
    assert [_close(f, RGB[min(2 * k, 5)]) for k, f in enumerate(b)] == [True] * 10
    vatex = catalog.open_dataset(paper, "vatex", size=S)
    assert vatex.captions() == ["a person waves", "a dog runs on grass"]
    assert _close(vatex[1].video[0], RGB[5])
    short = R.VideoFolder(env["vatex"], "videos", "vatex_training_v1.0.json", frames=2, fps=5,
                          size=16)
    assert short[0].video.shape == (2, 16, 16, 3)


def test_a_bad_video_is_named_or_skipped(env, paper):
    r = catalog.open_dataset(paper, "msrvtt", size=S)
    assert [it[0] for it in r.items] == ["video0/0", "video1/0", "video2/0"]
    assert r[0].caption == "a man is cooking"
    with pytest.raises(media.DataError, match=r"video1\.mp4: cannot decode the video"):
        r[1]
    with pytest.raises(media.DataError, match=r"video1\.mp4"):
        list(r.samples())
    r = R.VideoFolder(env["msrvtt"], "TrainValVideo", "train_val_videodatainfo.json", size=S,
                      skip_bad=True)
    with pytest.warns(UserWarning, match=r"skipped sample 1: .*video1\.mp4: cannot decode"):
        assert [s.caption for s in r.samples()] == ["a man is cooking", "cars drive by"]


def test_caption_files_are_validated(tmp_path):
    root = make_vatex(tmp_path / "v")
    _json(root / "bad.json", [{"videoID": "abc_000001_000011"}])
    with pytest.raises(media.DataError, match=r"bad\.json: entry 0 needs a 'videoID' and 'enCap'"):
        R.VideoFolder(root, "videos", "bad.json")
    _json(root / "plain.json", {"abc_000001_000011": "waving", "gone": ["not on disk"]})
    with pytest.raises(FileNotFoundError, match=r"videos/gone: video file \(\.mp4/\.avi/.*\) not "
                                                r"found \(listed in .*plain\.json\)"):
        R.VideoFolder(root, "videos", "plain.json")
    with pytest.warns(UserWarning, match="skipped 1 missing video file"):
        assert R.VideoFolder(root, "videos", "plain.json", skip_bad=True).captions() == ["waving"]
    _json(root / "num.json", 3)
    with pytest.raises(media.DataError, match=r"num\.json: not a caption file"):
        R.VideoFolder(root, "videos", "num.json")


def test_vspw(env, paper):
    r = catalog.open_dataset(paper, "vspw", size=S)
    s = r[0]
    assert len(r) == 2 and s.video.shape == (10, S, S, 3) and s.seg.shape == (10, S, S)
    # stills at 15 fps, sampled at 2.5 fps: every 6th (0, 6, 12), then the last held
    picks = [min(6 * k, 12) for k in range(10)]
    assert [_close(f, RGB[i % 8], 20) for f, i in zip(s.video, picks)] == [True] * 10
    assert [int(m[0, 0]) for m in s.seg] == [i % 9 for i in picks]
    (env["vspw"] / "val.txt").write_text("vid_a\nvid_missing\n")
    with pytest.raises(FileNotFoundError, match=r"vid_missing/origin: frame folder not found"):
        R.VSPW(env["vspw"], split="val")


def test_roots_come_from_the_environment_or_the_override(roots, paper, monkeypatch, tmp_path):
    monkeypatch.delenv("NUWA_DATA_CC", raising=False)
    with pytest.raises(ValueError, match="dataset 'cc' has no root: set the environment variable "
                                         "NUWA_DATA_CC to its folder, or data.datasets.cc.root"):
        catalog.open_dataset(paper, "cc")
    monkeypatch.setenv("NUWA_DATA_CC", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=r"absent: the root of dataset 'cc' \(from "
                                                r"NUWA_DATA_CC\) is not a folder"):
        catalog.open_dataset(paper, "cc")
    over = tmp_path / "run.yaml"
    over.write_text(yaml.safe_dump({"data": {"datasets": {"cc": {"root": str(roots["cc"])}},
                                             "frames": 4}, "model": {"dim": 64}}))
    cfg = catalog.apply_override(paper, over)
    assert cfg["name"] == "paper" and cfg["model"]["dim"] == 64 and cfg["model"]["heads"] == 20
    assert cfg["data"]["datasets"]["cc"]["images"] == "images" and cfg["data"]["frames"] == 4
    assert len(catalog.open_dataset(cfg, "cc", size=S)) == 3
    with pytest.raises(ValueError, match=r"data: unknown key\(s\) \['fsp'\]"):
        catalog.data_config({"data": {"fsp": 2}})
    with pytest.raises(ValueError, match=r"data.datasets.cc: unknown key\(s\) \['image'\] for "
                                         r"reader coco_captions"):
        catalog.open_dataset({"data": {"datasets": {"cc": {"reader": "coco_captions", "image": "x",
                                                     "root": str(roots["cc"])}}}}, "cc")
    with pytest.raises(ValueError, match="task S2V has no dataset: set data.tasks.S2V"):
        catalog.task_datasets({"data": {"tasks": {}}}, ["S2V"])
    with pytest.raises(ValueError, match="task TI2I is evaluated zero-shot"):
        catalog.task_datasets(paper, ["TI2I"])


# ----------------------------------------------------------------------------- token path
def _vq(kind="vqgan", seed=0):
    torch.manual_seed(seed)
    return V.VQModel(V.VQConfig(kind=kind, codebook=16, code_dim=8, width=4)).eval()


@pytest.fixture(scope="module")
def toks(roots):
    cfg = text.TextConfig(vocab_size=300, length=16)
    captions = R.CocoCaptions(roots["cc"], "captions.json", "images").captions()
    return D.Tokenizers(text.TextTokenizer(text.train_bpe(cfg, captions + ["None"]), cfg),
                        _vq(), _vq("seg", 1))


def test_readers_feed_the_token_sets_and_a_training_step(env, paper, toks, tmp_path, monkeypatch):
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    cc = catalog.open_dataset(paper, "cc", size=S)
    rt = real_tokens.real_tokens(cc, toks, profile="unit", progress=False)
    assert rt.source == "built" and rt.kind == "image" and rt.visual.shape == (3, 1, 8, 8)
    assert rt.text_ids.shape == (3, 16) and rt.captions[0] == "A red picture."
    again = real_tokens.real_tokens(cc, toks, profile="unit", progress=False)
    assert again.source == "loaded" and torch.equal(again.visual, rt.visual)
    assert again.path.name.startswith("real-cc-train-")
    # other tokenizer weights: another cache entry
    assert real_tokens.real_tokens(cc, D.Tokenizers(toks.text, _vq(seed=3)), profile="unit",
                         progress=False).source == "built"
    data = {
        "T2I": task_data.task_data("T2I", cc, n=3, tokenizers=toks, progress=False),
        "S2I": task_data.task_data("S2I", catalog.open_dataset(paper, "cocostuff", size=S), tokenizers=toks,
                           progress=False),
        "T2V": task_data.task_data("T2V", catalog.open_dataset(paper, "vatex", size=S), tokenizers=toks,
                           progress=False),
        "S2V": task_data.task_data("S2V", catalog.open_dataset(paper, "vspw", size=S), tokenizers=toks,
                           progress=False),
        "V2V": task_data.task_data("V2V", catalog.open_dataset(paper, "bair", size=S), tokenizers=toks,
                           progress=False),
    }
    b = data["S2V"].batch([0, 1])
    assert b.cond.kind == "sketch" and b.cond.grid == (10, 8, 8) and b.target.shape == (2, 10, 8, 8)
    assert data["V2V"].batch([2]).prime.sum() == 64                 # the first frame primes
    assert data["T2V"].batch([0, 1]).cond.kind == "text"
    skipping = R.VideoFolder(env["msrvtt"], "TrainValVideo", "train_val_videodatainfo.json",
                             size=S, skip_bad=True)
    with pytest.warns(UserWarning, match="video1.mp4"):
        m = real_tokens.real_tokens(skipping, toks, progress=False)
    assert m.n == 2 and m.indices.tolist() == [0, 2] and m.captions[1] == "cars drive by"
    with pytest.raises(ValueError, match="task T2V has video targets; role 'cc' holds images"):
        task_data.TaskData(T.get_task("T2V"), rt)
    with pytest.raises(ValueError, match="gives 16x16 pictures but the visual tokenizer takes 32x32"):
        real_tokens.real_tokens(R.CocoCaptions(env["cc"], "captions.json", "images", size=16), toks)
    model = NuwaConfig(dim=16, heads=2, text_vocab=300, text_length=16, codebook_size=16,
                       sketch_codebook_size=16, target_tokens=(10, 8, 8),
                       sketch_tokens=(10, 8, 8), image_extent=(1, 1, 1), video_extent=(1, 1, 1))
    tr = trainer.Trainer(model, schedule.TrainConfig(steps=5, batch_size=2, weights={}), data)
    tr.run(progress=False)
    assert len(tr.history) == 5 and all(np.isfinite(h["loss"]) for h in tr.history)


# ----------------------------------------------------------------------------- paper profile
def test_the_paper_profile_is_section_4_1(paper):
    m = NuwaConfig.from_profile(paper)
    assert (m.encoder_layers, m.decoder_layers, m.dim, m.codebook_size) == (24, 24, 1280, 12288)
    assert m.target_tokens == (10, 21, 21) and m.text_length == 77
    assert (m.text_extent, m.image_extent, m.video_extent) == ((None, 0, 0), (1, 3, 3), (3, 3, 3))
    c = schedule.TrainConfig.from_profile(paper)
    assert (c.lr, c.warmup, c.batch_size, c.betas) == (1e-3, 0.05, 128, (0.9, 0.999))
    d = catalog.data_config(paper)
    assert (d["frames"], d["fps"], real_tokens.visual_canvas(paper)) == (10, 2.5, 336)
    vq = V.configs_from_profile(paper)[paper["vqgan"]["tokenizer"]]
    assert (vq.canvas // vq.factor, vq.codebook, vq.code_dim) == (21, 12288, 256)  # E(I): 441 x 256
    assert {catalog.root_variable(n) for n in d["datasets"]} == {
        f"NUWA_DATA_{n}" for n in ("CC", "MOMENTS", "VATEX", "MSCOCO", "COCOSTUFF", "KINETICS",
                                   "BAIR", "MSRVTT", "VSPW")}


# ------------------------------------------------------------- the commands of docs/real-data-and-gpus.md
SCALED = {   # the paper's depth, grids, codebook and extents; the width and tokenizers shrunk
    "model": {"dim": 32, "heads": 2},
    "vqgan": {"common": {"width": 4, "code_dim": 8, "disc_width": 4, "codebook": 512}},
    "train": {"steps": 1, "batch_size": 1, "threads": 1},
    "data": {"tokenizers": "untrained"},
}


def _readme_commands():
    page = (REPO_ROOT / "docs" / "real-data-and-gpus.md").read_text()
    section = page.split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    lines = [l.strip() for b in blocks for l in b.splitlines()
             if l.strip() and not l.strip().startswith("#")]
    export = next(l for l in lines if l.startswith("export "))
    python = next(l for l in lines if l.startswith(".venv/bin/python -m nuwa_lib.training.cli"))
    single, multi = (l for l in lines if l.startswith(".venv/bin/torchrun"))
    return export, python, single, multi


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _out(cwd):
    payload = torch.load(cwd / "runs" / "paper" / "model.pt", weights_only=True)
    return payload["info"], payload["history"], payload["model"]


def test_readme_commands_train_the_paper_architecture_on_real_files(roots, tmp_path, monkeypatch):
    """The three lines of docs/real-data-and-gpus.md, as written: one process in this one, then torchrun with 2
    processes on one node, then 2 "nodes" of 1 process each."""
    export, python, single, multi = _readme_commands()
    wanted = {catalog.root_variable(n) for n in T.PRETRAIN_ROLES.values()}
    assert {a.split("=")[0] for a in export.split()[1:]} == wanted
    assert "--nproc-per-node $NPROC" in single and "--standalone" in single
    for flag in ("--nnodes $NNODES", "--node-rank $NODE_RANK", "--master-addr $MASTER_ADDR",
                 "--master-port $MASTER_PORT"):
        assert flag in multi
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           **{catalog.root_variable(n): str(roots[n]) for n in T.PRETRAIN_ROLES.values()}}

    # one process: the paper's 24 + 24 layers on 10x21x21 video tokens, d = 32
    one = tmp_path / "one"
    one.mkdir()
    (one / "run.yaml").write_text(yaml.safe_dump(SCALED))
    monkeypatch.chdir(one)
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(one / "artifacts"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    argv = shlex.split(python)
    assert argv[:3] == [".venv/bin/python", "-m", "nuwa_lib.training.cli"]
    assert cli.main(argv[3:] + ["--no-progress"]) == 0
    info, history, model = _out(one)
    assert [h["task"] for h in history] == ["V2V"] and np.isfinite(history[0]["loss"])
    assert (model["encoder_layers"], model["decoder_layers"], model["dim"]) == (24, 24, 32)
    assert model["target_tokens"] == [10, 21, 21] and model["codebook_size"] == 12288
    assert info["samples"] == {"T2I": 3, "V2V": 2, "T2V": 2}

    # torchrun: the same two lines, on 2 CPU processes (gloo), a T2I step (seed 1)
    bindir = f"{Path(sys.executable).parent}/"
    scaled = {**SCALED, "seed": 1, "train": {**SCALED["train"], "batch_size": 2}}

    def launch(cwd, line, **extra):
        cwd.mkdir(exist_ok=True)
        (cwd / "run.yaml").write_text(yaml.safe_dump(scaled))
        e = {**env, "NUWA_ARTIFACTS_DIR": str(cwd / "artifacts"), **extra}
        return subprocess.Popen(["bash", "-c", line.replace(".venv/bin/", bindir)], cwd=cwd,
                                env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(proc):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-2000:] + err[-4000:]
        return out

    out = finish(launch(tmp_path / "node", single, NPROC="2"))
    assert "on 2 process(es)" in out
    info, history, _ = _out(tmp_path / "node")
    assert info["world_size"] == 2 and [h["task"] for h in history] == ["T2I"]
    assert not list((tmp_path / "node" / "artifacts").rglob(".*share*"))   # shares merged

    port = str(_free_port())
    nodes = [launch(tmp_path / "nodes", multi, NPROC="1", NNODES="2", NODE_RANK=str(r),
                    MASTER_ADDR="127.0.0.1", MASTER_PORT=port) for r in (0, 1)]
    outs = [finish(p) for p in nodes]
    assert "on 2 process(es)" in outs[0]
    info2, history2, _ = _out(tmp_path / "nodes")
    assert info2["world_size"] == 2
    assert history2[0]["loss"] == pytest.approx(history[0]["loss"], abs=1e-4)


def test_the_command_line_names_what_is_missing(roots, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    for n in ("cc", "moments", "vatex"):
        monkeypatch.delenv(catalog.root_variable(n), raising=False)
    args = ["--profile", "paper", "--real-data", "--no-progress", "--out", str(tmp_path / "o")]
    assert cli.main(args) == 2
    assert "error: dataset 'cc' has no root: set the environment variable NUWA_DATA_CC" in \
        capsys.readouterr().err
    for n in ("cc", "moments", "vatex"):
        monkeypatch.setenv(catalog.root_variable(n), str(roots[n]))
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "takes 336² pictures" in err and "data.tokenizers {visual: FILE" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {tasks: {T2I: moments}, tokenizers: untrained}\n")
    assert cli.main(args + ["--override", str(bad)]) == 2
    assert "task T2I needs images but dataset 'moments' (video_folder) holds videos" in \
        capsys.readouterr().err
