"""The image tasks of Sec. 4.2 (notebooks 05-08): Table 1's rows and claims, the TI2I
manipulation region and scores, I2I completion scores, S2I's PA, and zero-shot priming
through generate() with tiny models."""
import numpy as np
import pytest
import torch
from task_helpers import WORLD, PerfectReader

from nuwa_lib.data import splits, tasks as T, world
from nuwa_lib.evaluation import judge_nets
from nuwa_lib.experiments import claims, image_tasks as IT, paper
from nuwa_lib.generation import generate as G
from nuwa_lib.training import task_data


class SegOracle:
    def __init__(self, segs):
        self.segs = np.asarray(segs)

    def predict(self, images):
        return self.segs


def _scores(fid0, clip, **rest):
    base = {c: fid0 for c in IT.TABLE1_COLUMNS}
    return {**base, "IS": 1.0, "CLIPSIM": clip, **rest}


# --------------------------------------------------------------------------- T2I
def test_seeded_changes_only_the_seed():
    cfg = {"name": "smoke", "seed": 0, "train": {"steps": 3}}
    s = IT.seeded(cfg, 2)
    assert s["seed"] == 2 and s["train"] == cfg["train"] and cfg["seed"] == 0
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="seed"):
            IT.seeded(cfg, bad)


def test_table1_puts_ours_beside_the_paper_with_mean_and_std():
    ours = {"scratch_nearby": [_scores(2.0, 0.5), _scores(4.0, 0.7)],
            "finetune_cc": [_scores(3.0, 0.6)]}
    tab = IT.table1(ours)
    assert len(tab) == len(paper.TABLE1)
    r = tab[tab["row"] == "scratch_nearby"].iloc[0]
    assert r["seeds"] == 2 and r["FID-0"] == pytest.approx(3.0)
    assert r["FID-0 std"] == pytest.approx(np.std([2.0, 4.0], ddof=1))
    assert r["paper FID-0"] == 16.9 and r["paper CLIPSIM"] == 0.3276
    ft = tab[tab["row"] == "finetune_cc"].iloc[0]
    assert ft["seeds"] == 1 and np.isnan(ft["FID-0 std"])
    assert np.isnan(tab[tab["row"] == "scratch_full"].iloc[0]["FID-0"])     # not run: NaN
    assert np.isnan(tab[tab["model"] == "DALL-E"].iloc[0]["paper CLIPSIM"])  # paper's "-"
    with pytest.raises(ValueError, match="unknown Table 1 row"):
        IT.table1({"scratch_sparse": [_scores(1.0, 0.1)]})


def test_table1_has_our_acc_column_and_the_tokens_ceiling_row():
    ours = {"finetune_cc": [_scores(3.0, 0.6, Acc=0.2), _scores(3.0, 0.6, Acc=0.4)]}
    tab = IT.table1(ours, ceiling=_scores(1.0, 0.8, Acc=0.6))
    assert len(tab) == len(paper.TABLE1) + 1
    ceiling = tab[tab["row"] == IT.CEILING_ROW].iloc[0]
    assert ceiling["Acc"] == 0.6 and ceiling["Acc / ceiling"] == pytest.approx(1.0)
    ft = tab[tab["row"] == "finetune_cc"].iloc[0]
    assert ft["Acc"] == pytest.approx(0.3) and ft["Acc / ceiling"] == pytest.approx(0.5)
    assert np.isnan(ft["paper Acc"])                       # the paper has no Acc column
    assert "Acc / ceiling" not in IT.table1(ours).columns   # no ceiling given, no ratio


def test_claims_are_decided_from_the_numbers():
    ours = {"scratch_full": [_scores(10.0, 0.40), _scores(10.2, 0.41), _scores(9.8, 0.39)],
            "scratch_axial": [_scores(9.0, 0.42), _scores(9.2, 0.43), _scores(8.8, 0.41)],
            "scratch_nearby": [_scores(5.0, 0.50), _scores(5.2, 0.51), _scores(4.8, 0.49)],
            "finetune_cc": [_scores(4.0, 0.55)], "finetune_multitask": [_scores(4.5, 0.56)]}
    claims = {(c["claim"].split(" (")[0], c["claim"].split("(")[1].split(",")[0]): c
              for c in IT.t2i_claims(IT.table1(ours))}
    nearby = claims["nearby beats axial and full", "FID-0"]
    assert nearby["holds"] and nearby["clear"] and "16.9" in nearby["paper"]
    assert claims["nearby beats axial and full", "CLIPSIM"]["holds"]
    multi = claims["multi-task pretraining helps T2I", "FID-0"]
    assert not multi["holds"] and multi["clear"] is None      # 4.5 > 4.0: worse; single runs
    assert claims["multi-task pretraining helps T2I", "CLIPSIM"]["holds"]
    # within the spread: ordered but not clear
    ours["scratch_nearby"] = [_scores(8.0, 0.5), _scores(9.5, 0.5), _scores(7.9, 0.5)]
    c = {x["claim"]: x for x in IT.t2i_claims(IT.table1(ours))}
    fid = c["nearby beats axial and full (FID-0, lower is better)"]
    assert fid["holds"] and fid["clear"] is False


def test_a_claim_is_clear_only_with_a_measured_spread_on_both_rows():
    assert claims.decide(1.0, 0.1, 2.0, 0.2, lower=True) == (True, True)       # gap 1 > 0.3
    assert claims.decide(1.0, 0.6, 2.0, 0.6, lower=True) == (True, False)      # gap 1 < 1.2
    assert claims.decide(2.0, 0.1, 1.0, 0.2, lower=False) == (True, True)      # higher is better
    assert claims.decide(1.0, 0.1, 2.0, 0.2, lower=False) == (False, False)
    assert claims.decide(1.0, np.nan, 2.0, 0.2, lower=True) == (True, None)    # one run: unmeasured
    assert claims.decide(1.0, 0.1, 2.0, 0.0, lower=True) == (True, True)       # a deterministic copy
    assert claims.verdict(True, True) == "holds, clearly"
    assert claims.verdict(True, False) == "holds, within the spread"
    assert claims.verdict(True, None) == claims.verdict(True, np.nan) == "holds (no spread measured)"
    assert claims.verdict(False, None) == claims.verdict(False, True) == "does not hold"


def test_t2i_scores_give_table1_columns(toks):
    torch.manual_seed(0)
    clf = judge_nets.WorldClassifier(width=4, feature_dim=6).eval().requires_grad_(False)
    clip = judge_nets.TinyCLIP(width=4, embed_dim=8, text_dim=8, text_layers=1, heads=2).eval()
    real = IT.real_pictures("mscoco", "test", range(12), **WORLD)
    caps = [splits.sample("mscoco", "test", i, **WORLD).caption for i in range(12)]
    s = IT.t2i_scores(real, real, caps, clf, clip, isc_splits=2)
    assert set(s) == set(IT.TABLE1_COLUMNS)
    assert abs(s["FID-0"]) < 1e-3 and -1 <= s["CLIPSIM"] <= 1 and s["IS"] >= 1 - 1e-6
    with pytest.raises(ValueError, match="images"):
        IT.t2i_scores(real[:, None], real, caps, clf, clip)


# --------------------------------------------------------------------------- TI2I
def _ti2i_world(n):
    samples = [splits.sample("mscoco", "test", i, **WORLD) for i in range(n)]
    cfs = [T.counterfactual("TI2I", s) for s in samples]
    edited = []
    for s in samples:
        k = len(s.scene.objects) - 1
        c = s.scene.objects[k].colour
        new = world.COLOURS[(world.COLOURS.index(c) + 1) % len(world.COLOURS)]
        edited.append(world.change_attribute(s.scene, "colour", new, obj=k))
    return samples, cfs, edited


def test_unchanged_region_is_where_the_counterfactual_keeps_the_pixels():
    samples, cfs, _ = _ti2i_world(6)
    before = np.stack([s.image for s in samples])
    after = np.stack([c["picture"] for c in cfs])
    region = IT.unchanged_region(before, after)
    assert region.shape == before.shape[:3] and region.dtype == bool
    assert 0 < region.mean() < 1
    for i, c in enumerate(cfs):     # nothing changes above the edit row
        assert region[i, : c["edit_row"]].all() and not region[i].all()
    with pytest.raises(ValueError, match="one shape"):
        IT.unchanged_region(before, after[:, :16])
    assert np.isnan(IT.region_pa(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.zeros((1, 2, 2), bool)))


def test_ti2i_scores_reward_the_edit_and_the_preservation():
    samples, cfs, edited = _ti2i_world(8)
    before = np.stack([s.image for s in samples])
    after = np.stack([c["picture"] for c in cfs])
    segs = np.stack([s.seg for s in samples])
    caps = [c["caption"] for c in cfs]
    good = IT.ti2i_scores(PerfectReader(edited), SegOracle(segs), after, caps, before, after, segs)
    assert good["changed"] == 1.0 and good["preserved"] == 1.0 and good["PA unchanged"] == 1.0
    assert good["all"] == 1.0 and 0 < good["unchanged share"] < 1
    # a model that ignores the text and copies the original keeps the rest, misses the edit
    copy = IT.ti2i_scores(PerfectReader([s.scene for s in samples]), SegOracle(segs), before, caps, before,
                          after, segs)
    assert copy["changed"] < 1.0 and copy["preserved"] == 1.0 and copy["all"] == 0.0
    # wrong classes everywhere: PA of the unchanged region drops to 0
    bad = IT.ti2i_scores(PerfectReader(edited), SegOracle((segs + 1) % world.N_SEG_CLASSES), after, caps,
                         before, after, segs)
    assert bad["PA unchanged"] == 0.0
    # with the edits: only the edited object's colour counts
    cf = IT.counterfactual_pictures("mscoco", "test", range(8), **WORLD)
    assert np.array_equal(cf["after"], after) and cf["captions"] == caps
    exact = IT.ti2i_scores(PerfectReader(edited), SegOracle(segs), after, caps, before, after, segs,
                           edits=cf["edits"])
    assert exact["changed"] == 1.0
    kept = IT.ti2i_scores(PerfectReader([s.scene for s in samples]), SegOracle(segs), before, caps,
                          before, after, segs, edits=cf["edits"])
    assert kept["changed"] == 0.0 and kept["preserved"] == 1.0
    assert any(e["objects"] == 2 for e in cf["edits"]) and any(e["objects"] == 1 for e in cf["edits"])
    with pytest.raises(ValueError, match="edits"):
        IT.edit_accuracy(PerfectReader(edited), after, cf["edits"][:3])
    with pytest.raises(ValueError, match="motion"):
        IT.ti2i_scores(PerfectReader(edited), SegOracle(segs), after, caps, before, after, segs,
                       changed="motion")


# --------------------------------------------------------------------------- I2I / S2I
def test_determined_when_every_object_reaches_into_the_prime():
    top = world.Scene("grass", 0, (world.Obj("circle", "red", "small", "top", 16.0, 5.0),))
    low = world.Scene("grass", 0, (world.Obj("circle", "red", "small", "bottom", 16.0, 27.0),))
    both = world.Scene("grass", 0, top.objects + (world.Obj("square", "blue", "large", "bottom",
                                                            16.0, 24.0),))
    assert IT.determined([top, low, both], 16).tolist() == [True, False, False]
    assert IT.determined([low], 32).tolist() == [True]


def test_i2i_scores_split_by_determined_and_measure_diversity():
    samples = [splits.sample("mscoco", "test", i, **WORLD) for i in range(6)]
    pics = np.stack([s.image for s in samples])
    caps = [s.caption for s in samples]
    det = np.array([True, True, False, True, False, False])
    s = IT.i2i_scores(PerfectReader([x.scene for x in samples]), pics, caps, det, second=pics)
    assert s["Acc"] == s["Acc (determined)"] == s["Acc (not determined)"] == 1.0
    assert s["determined share"] == 0.5 and s["diversity (bottom half)"] == 0.0
    other = 255 - pics
    got = IT.i2i_scores(PerfectReader([x.scene for x in samples]), pics, caps, det, second=other)
    assert got["diversity (bottom half)"] > 0.1
    assert got["diversity (bottom half)"] == pytest.approx(
        (got["diversity (determined)"] + got["diversity (not determined)"]) / 2, rel=1e-5)
    assert s["diversity (determined)"] == s["diversity (not determined)"] == 0.0
    assert np.isnan(IT.i2i_scores(PerfectReader([x.scene for x in samples]), pics, caps,
                                  np.ones(6, bool))["Acc (not determined)"])


def test_segmentation_pa_against_the_sketch():
    segs = IT.real_segs("cocostuff", "test", range(3), **WORLD)
    assert segs.shape == (3, 32, 32)
    assert IT.segmentation_pa(SegOracle(segs), np.zeros((3, 32, 32, 3), np.uint8), segs) == 1.0


# --------------------------------------------------------------------------- zero-shot priming
def test_i2i_completion_keeps_the_given_top_half(toks, model):
    data = task_data.task_data("I2I", "mscoco", "test", 3, toks, progress=False, **WORLD)
    g = G.generate(model, data, [0, 1, 2], toks.visual, seed=0)
    target = data.batch([0, 1, 2]).target
    h = target.shape[2] // 2
    assert torch.equal(g.tokens[:, :, :h], target[:, :, :h])
    assert T.prime_length(T.prime_mask("I2I", target.shape[1:])) == h * target.shape[3]


def test_ti2i_keeps_the_original_rows_above_the_edit(toks, model):
    data = task_data.task_data("TI2I", "mscoco", "test", 4, toks, progress=False, **WORLD)
    b = data.batch(range(4))
    g = G.generate(model, data, range(4), toks.visual, seed=0)
    for i in range(4):
        rows = int(data.tokens.edit_rows[i])
        assert torch.equal(g.tokens[i, :, :rows], b.given[i, :, :rows])
    assert g.captions == data.tokens.captions[:4]


def test_counterfactual_pictures_match_the_task_ground_truth():
    cf = IT.counterfactual_pictures("mscoco", "test", [0, 3], **WORLD)
    assert cf["before"].shape == cf["after"].shape == (2, 32, 32, 3)
    assert cf["segs"].shape == (2, 32, 32) and len(cf["captions"]) == 2
    s = splits.sample("mscoco", "test", 3, **WORLD)
    t = T.counterfactual("TI2I", s)
    assert np.array_equal(cf["after"][1], t["picture"]) and cf["captions"][1] == t["caption"]
    assert cf["edit_rows"][1] == t["edit_row"] and np.array_equal(cf["before"][1], s.image)
