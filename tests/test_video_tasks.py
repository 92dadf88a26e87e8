"""The video tasks of Sec. 4.2-4.3 (notebooks 09 on): Table 2's columns, the paper's rows
beside ours, claims decided from the numbers, held-out combinations, with tiny judges."""
import dataclasses

import numpy as np
import pytest
import torch
from task_helpers import WORLD, PerfectReader

from nuwa_lib.data import splits, tasks as T, world
from nuwa_lib.evaluation import judge_nets
from nuwa_lib.experiments import claims, paper, video_tasks as VT
from nuwa_lib.tokenizers import vqgan as V


def _kinetics(split, n):
    samples = [splits.sample("kinetics", split, i, **WORLD) for i in range(n)]
    return samples, np.stack([s.video for s in samples]), [s.caption for s in samples]


def test_t2v_scores_give_table2_columns():
    torch.manual_seed(0)
    clf = judge_nets.WorldClassifier(width=4, feature_dim=6).eval().requires_grad_(False)
    vnet = judge_nets.WorldClassifier(width=4, feature_dim=6, frames=4).eval().requires_grad_(False)
    clip = judge_nets.TinyCLIP(width=4, embed_dim=8, text_dim=8, text_layers=1, heads=2).eval()
    _, videos, caps = _kinetics("test", 10)
    s = VT.t2v_scores(videos, videos, caps, vnet, clf, clip)
    assert set(s) == set(VT.T2V_COLUMNS)
    assert abs(s["FID-img"]) < 1e-3 and abs(s["FID-vid"]) < 1e-3
    assert 0 <= s["Acc"] <= 100 and -1 <= s["CLIPSIM"] <= 1
    with pytest.raises(ValueError, match="videos"):
        VT.t2v_scores(videos[:, 0], videos, caps, vnet, clf, clip)
    with pytest.raises(ValueError, match="captions"):
        VT.t2v_scores(videos, videos, caps[:3], vnet, clf, clip)


def test_motion_accuracy_reads_the_motion_the_caption_names():
    samples, videos, caps = _kinetics("test", 12)
    reader = PerfectReader([s.scene for s in samples], video=True)
    assert VT.motion_accuracy(reader, videos, caps) == 100.0
    wrong = []
    for s in samples:
        o = s.scene.objects[0]
        other = next(m for m in world.MOTIONS if m != o.motion)
        scene = dataclasses.replace(s.scene, objects=(dataclasses.replace(o, motion=other),))
        wrong.append(world.caption(scene, True))
    assert VT.motion_accuracy(reader, videos, wrong) == 0.0


def test_zeroshot_split_holds_only_heldout_combinations():
    assert VT.heldout_share("kinetics", "zeroshot", range(16), **WORLD) == 1.0
    assert VT.heldout_share("kinetics", "train", range(16), **WORLD) == 0.0


def test_side_by_side_puts_ours_beside_the_paper_rows():
    ours = {"scratch": [{"Acc": 50.0, "FID-img": 3.0, "FID-vid": 1.0, "CLIPSIM": 0.2},
                        {"Acc": 60.0, "FID-img": 5.0, "FID-vid": 1.0, "CLIPSIM": 0.4}],
            "finetune_multitask": [{"Acc": 70.0, "FID-img": 2.0, "FID-vid": 0.5, "CLIPSIM": 0.5}],
            "ref": [{"Acc": 90.0, "FID-img": 0.1, "FID-vid": 0.1, "CLIPSIM": 0.6}]}
    tab = VT.side_by_side(paper.TABLE2, ours, VT.T2V_COLUMNS, extra_rows=["ref"])
    assert list(tab["model"])[:len(paper.TABLE2)] == [p["model"] for p in paper.TABLE2]
    assert len(tab) == len(paper.TABLE2) + 1
    r = tab[tab["row"] == "scratch"].iloc[0]
    assert r["Acc"] == 55.0 and r["Acc std"] == pytest.approx(np.std([50, 60], ddof=1))
    assert r["paper Acc"] == 77.4 and r["seeds"] == 2
    assert np.isnan(tab[tab["row"] == "finetune_multitask"]["Acc std"].iloc[0])
    assert np.isnan(tab[tab["row"] == "ref"]["paper Acc"].iloc[0])
    assert np.isnan(tab[tab["model"] == "TFGAN (128×128)"]["Acc"].iloc[0])
    with pytest.raises(ValueError, match="unknown row"):
        VT.side_by_side(paper.TABLE2, {"nope": ours["ref"]}, VT.T2V_COLUMNS)


def test_claims_follow_the_column_direction_and_the_spread():
    ours = {"scratch": [{"Acc": 50.0, "FID-img": 3.0, "FID-vid": 1.0, "CLIPSIM": 0.2},
                        {"Acc": 60.0, "FID-img": 5.0, "FID-vid": 1.2, "CLIPSIM": 0.4}],
            "finetune_multitask": [{"Acc": 70.0, "FID-img": 4.5, "FID-vid": 0.5, "CLIPSIM": 0.25},
                                   {"Acc": 70.0, "FID-img": 4.5, "FID-vid": 0.5, "CLIPSIM": 0.25}]}
    tab = VT.side_by_side(paper.TABLE2, ours, VT.T2V_COLUMNS)
    got = {c: VT.claim(tab, "ft beats scratch", "finetune_multitask", "scratch", c)
           for c in VT.T2V_COLUMNS}
    assert got["Acc"]["holds"] and got["Acc"]["clear"]                 # 70 vs 55 ± 7.1
    assert not got["FID-img"]["holds"]                                  # 4.5 vs 4.0, lower wins
    assert got["FID-vid"]["holds"] and got["FID-vid"]["clear"]
    assert not got["CLIPSIM"]["holds"]
    assert got["Acc"]["paper"] == "77.9 vs 77.4"
    assert claims.verdict(True, False) == "holds, within the spread"
    assert claims.verdict(False, False) == "does not hold"
    ours["finetune_multitask"] = ours["finetune_multitask"][:1]        # a single run
    one = VT.claim(VT.side_by_side(paper.TABLE2, ours, VT.T2V_COLUMNS), "ft beats scratch",
                   "finetune_multitask", "scratch", "Acc")
    assert one["holds"] and one["clear"] is None                       # no spread, not clear
    assert claims.verdict(one["holds"], one["clear"]) == "holds (no spread measured)"


def test_side_by_side_keeps_cond_frames_and_the_papers_spread():
    ours = {"scratch": [{"FVD": 2.0}], "scratch, 2": [{"FVD": 1.5}]}
    tab = VT.side_by_side(paper.TABLE3, ours, paper.TABLE3_COLUMNS,
                          extra_rows=[{"row": "scratch, 2", "model": "ours", "cond": 2}])
    assert list(tab["cond"]) == [1] * len(paper.TABLE3) + [2]
    assert tab[tab["model"] == "CCVS"]["paper FVD std"].iloc[0] == 2.0
    assert np.isnan(tab[tab["model"] == "DVD-GAN-FP"]["paper FVD std"].iloc[0])
    last = tab.iloc[-1]
    assert last["model"] == "ours" and last["FVD"] == 1.5 and np.isnan(last["paper FVD"])
    c = VT.claim(tab, "2 frames help", "scratch, 2", "scratch", "FVD")
    assert c["holds"] and c["clear"] is None                            # single runs


def test_fvd_of_identical_sets_is_zero():
    torch.manual_seed(0)
    vnet = judge_nets.WorldClassifier(width=4, feature_dim=6, frames=4).eval().requires_grad_(False)
    _, videos, _ = _kinetics("test", 10)
    assert abs(VT.fvd_of(videos, videos, vnet)) < 1e-3
    with pytest.raises(ValueError, match="videos"):
        VT.fvd_of(videos[:, 0], videos, vnet)


def test_s2v_claims_compare_nearby_nearby_with_every_other_row():
    runs = lambda f, p: [{"FID-vid": f + d, "Detected PA": p - d / 10} for d in (0.0, 0.2, 0.4)]
    ours = {r: runs(2.0 if r == "nearby-nearby" else 3.0, 0.6 if r == "nearby-nearby" else 0.5)
            for r in VT.S2V_ROWS}
    tab = VT.side_by_side(paper.TABLE6, ours, paper.TABLE6_COLUMNS)
    assert list(tab["encoder"]) == [VT.attention_pair(r)[0] for r in VT.S2V_ROWS]
    assert (tab["seeds"] == 3).all()
    claims = VT.s2v_claims(tab)
    assert len(claims) == 8 and all(c["holds"] for c in claims)
    assert all(c["clear"] for c in claims if c["column"] == "FID-vid")      # 1.0 gap > 0.4 spread
    with pytest.raises(ValueError, match="unknown Table 6 row"):
        VT.attention_pair("nearby-axial")


# --------------------------------------------------------------------------- TV2V
def test_tv2v_scores_reward_the_new_motion_and_the_kept_attributes():
    idx = range(12)
    gt = VT.tv2v_ground_truth("msrvtt", "test", idx, **WORLD)
    samples = [splits.sample("msrvtt", "test", i, **WORLD) for i in idx]
    assert gt["captions"] == [T.counterfactual("TV2V", s, 4)["caption"] for s in samples]
    assert all(" then " in c for c in gt["captions"])
    assert all(" then " not in c for c in gt["judge_captions"])
    judged = [VT.new_motion_scene(s.scene, new) for s, (_, new) in zip(samples, gt["motions"])]
    args = (gt["after"], gt["judge_captions"], gt["original_captions"])
    good = VT.tv2v_scores(PerfectReader(judged, video=True), *args)
    assert good["motion"] == 100.0 and good["preserved"] == 100.0 and good["all"] == 100.0
    assert good["old motion"] == 0.0
    copied = VT.tv2v_scores(PerfectReader([s.scene for s in samples], video=True), *args)
    assert copied["old motion"] == 100.0 and copied["preserved"] == 100.0
    assert copied["motion"] < 100.0
    with pytest.raises(ValueError, match="captions"):
        VT.tv2v_scores(PerfectReader(judged, video=True), gt["after"], gt["judge_captions"][:2],
                       gt["original_captions"])


def test_motion_edits_give_every_other_motion_from_frame_one():
    s = splits.sample("msrvtt", "test", 0, **WORLD)
    edits = VT.motion_edits(s.scene, frames=4)
    assert [e["motion"] for e in edits] == [m for m in world.MOTIONS if m != s.scene.objects[0].motion]
    for e in edits:
        assert (e["video"][0] == s.video[0]).all() and e["caption"] != s.caption


def test_manipulate_keeps_the_given_first_frame(toks, model):
    s = splits.sample("msrvtt", "test", 0, **WORLD)
    caps = [e["caption"] for e in VT.motion_edits(s.scene, frames=4)[:2]]
    out = VT.manipulate(model, toks, s.video, caps, top_k=4, seed=0)
    assert out.shape == (2,) + s.video.shape
    first = V.decode(toks.visual, V.encode(toks.visual, s.video[None]))[:, 0]
    assert (out[:, 0] == first).all()
    again = VT.manipulate(model, toks, s.video, caps, top_k=4, seed=0)
    assert (again == out).all()


def test_t5_claims_follow_the_papers_reading_of_table5():
    base = {"T2V": (3.0, 0.20), "T2V+T2I": (3.1, 0.25), "T2V+V2V": (2.5, 0.21),
            "T2V+T2I+V2V": (2.0, 0.30)}
    ours = {r: [{"FID-vid": f + d, "CLIPSIM": c + d / 100} for d in (0.0, 0.1, 0.2)]
            for r, (f, c) in base.items()}
    tab = VT.side_by_side(paper.TABLE5, ours, paper.TABLE5_COLUMNS)
    assert list(tab["pretrained"]) == list(VT.TABLE5_ROWS)
    claims = VT.t5_claims(tab)
    assert len(claims) == 8 and all(c["holds"] for c in claims)
    assert claims[0]["paper"] == "0.2379 vs 0.2314"
    assert VT.pretraining_tasks("T2V+V2V") == ("T2V", "V2V")
    with pytest.raises(ValueError, match="unknown Table 5 row"):
        VT.pretraining_tasks("T2I")
