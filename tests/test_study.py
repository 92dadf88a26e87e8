"""The compute-allocation study (nuwa_lib.experiments.study, notebook 14): its configuration, the
evaluation steps, the compute count, one arm of each kind end to end on tiny untrained parts,
the cache, and the findings written from the rows."""
import copy
import json
import math

import pytest
from task_helpers import tiny_model

from nuwa_lib.evaluation import judge_nets, judges as J
from nuwa_lib.experiments import choose_tokenizer, study
from nuwa_lib.utils import checkpoint, profiles

pytestmark = pytest.mark.usefixtures("one_thread")


def smoke(**study_overrides):
    cfg = copy.deepcopy(profiles.load_profile("smoke"))
    cfg["study"].update(study_overrides)
    return cfg


def test_every_profile_has_a_valid_study():
    for name in ("smoke", "mini", "paper"):
        sc = study.StudyConfig.from_profile(profiles.load_profile(name))
        assert sc.models and sc.tokenizers
        assert dict(sc.targets) == {"T2I": 0.5, "T2V": 0.4, "tokenizer": 0.9}


@pytest.mark.parametrize("section, match", [
    ({"models": [{"task": "S2V", "dim": 8, "batch_size": 2, "lr": 1e-3, "steps": 2}]}, "task"),
    ({"models": [{"task": "T2I", "dim": 8, "batch_size": 2, "lr": 1e-3}]}, "exactly"),
    ({"models": [{"task": "T2I", "dim": 0, "batch_size": 2, "lr": 1e-3, "steps": 2}]}, "dim"),
    ({"models": [{"task": "T2I", "dim": 8, "batch_size": 2, "lr": -1, "steps": 2}]}, "lr"),
    ({"prompts": 0}, "prompts"),
    ({"targets": {"T2I": 2.0}}, "targets"),
    ({"colour": 1}, "unknown"),
])
def test_bad_study_sections_name_the_problem(section, match):
    with pytest.raises(ValueError, match=match):
        study.StudyConfig.from_profile(smoke(**section))
    cfg = smoke()
    del cfg["study"]
    with pytest.raises(ValueError, match="no study"):
        study.StudyConfig.from_profile(cfg)


def test_eval_steps_are_geometric_and_end_at_the_run():
    assert study.eval_steps(2000, 5) == [125, 250, 500, 1000, 2000]
    assert study.eval_steps(10, 2) == [5, 10]
    assert study.eval_steps(3, 5) == [1, 2, 3]
    assert study.eval_steps(7, 1) == [7]
    with pytest.raises(ValueError):
        study.eval_steps(0, 2)


def test_flops_per_sample_counts_the_linear_layers():
    m = tiny_model()
    d, f = m.config.dim, m.config.ffn_dim
    enc = 4 * d * d + 2 * d * f                  # q, k, v, out + the FFN's two layers
    dec = 8 * d * d + 2 * d * f                  # self- and cross-attention + FFN
    out = d * m.config.codebook_size
    assert study.flops_per_sample(m, 32, 64) == 6 * (enc * 32 + (dec + out) * 64)


def _untrained_judges(cfg):
    jcfg = judge_nets.JudgesConfig.from_profile(cfg)
    nets = {n: judge_nets.build(n, jcfg).eval() for n in ("classifier", "clip", "video")}
    return J.Judges(**nets, segmenter=None, config=jcfg, paths={}, info={})


@pytest.fixture
def tiny_study(tmp_path, monkeypatch, toks):
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(tmp_path))
    cfg = smoke(points=2, prompts=2, val=3, data_size=4, top_k=8,
                models=[{"task": "T2I", "dim": 16, "batch_size": 2, "lr": 1e-3, "steps": 2}],
                tokenizers=[{"width": 4, "steps": 2}])
    cfg["model"]["codebook_size"] = toks.visual.config.codebook    # the tiny tokenizer's codes
    return cfg, study.StudyConfig.from_profile(cfg), _untrained_judges(cfg), toks


def test_a_model_arm_gives_one_deterministic_row_per_point(tiny_study):
    cfg, sc, judges, toks = tiny_study
    arm = sc.models[0]
    a = study.model_curve(cfg, arm, sc, judges, toks)
    b = study.model_curve(cfg, arm, sc, judges, toks)
    assert a == b
    assert [r["step"] for r in a] == [1, 2]
    assert [r["samples"] for r in a] == [2, 4]
    assert a[1]["TFLOP"] == pytest.approx(2 * a[0]["TFLOP"])
    for r in a:
        assert math.isfinite(r["val loss"]) and 0 <= r["Acc"] <= 1 and r["prompts"] == 2
        assert r["ceiling Acc"] == a[0]["ceiling Acc"]       # same prompts, same ceiling


def test_a_tokenizer_arm_reads_pictures_before_and_after(tiny_study):
    cfg, sc, judges, _ = tiny_study
    rows = study.tokenizer_curve(cfg, sc.tokenizers[0], sc, judges)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["Acc before"] == rows[1]["Acc before"]
    assert all(0 <= r["Acc after"] <= 1 and -1 <= r["SSIM"] <= 1 and 0 < r["usage"] <= 1
               for r in rows)
    assert rows[0]["arm"] == "tokenizer width=4" and rows[0]["width"] == 4
    assert rows[0]["kind"] == cfg["vqgan"]["models"][cfg["vqgan"]["tokenizer"]].get(
        "kind", "vqgan")


def test_the_sweep_starts_from_its_own_base_not_the_profiles_later_choice():
    cfg = smoke()
    cfg["study"] = {**cfg["study"], "tokenizer_base": {"codebook": 24, "width": 6}}
    arm = study._tokenizer_arm("t", {"steps": 7, "width": 10})
    c = study._tokenizer_config(cfg, arm)
    assert (c.codebook, c.width, c.steps) == (24, 10, 7)      # the arm's change wins
    for bad in ({"steps": 3}, {"colour": 1}, [1]):
        cfg["study"]["tokenizer_base"] = bad
        with pytest.raises(ValueError, match="tokenizer_base"):
            study.StudyConfig.from_profile(cfg)


def test_tokenizer_arms_change_any_setting_and_name_bad_ones():
    arm = study._tokenizer_arm("t", {"steps": 30, "kind": "vqvae", "code_dim": 8,
                                     "l2_codes": True})
    assert arm.changes == (("code_dim", 8), ("kind", "vqvae"), ("l2_codes", True))
    assert arm.label == "tokenizer code_dim=8 kind=vqvae l2_codes=True"
    c = study._tokenizer_config(smoke(), arm)
    assert (c.kind, c.code_dim, c.l2_codes, c.steps) == ("vqvae", 8, True, 30)
    assert study._tokenizer_arm("t", {"steps": 5}).label == "tokenizer as profiled"
    with pytest.raises(ValueError, match="unknown tokenizer setting.*colour"):
        study._tokenizer_arm("study.tokenizers[1]", {"steps": 5, "colour": 1})
    with pytest.raises(ValueError, match="study.tokenizers\\[1\\]: kind"):
        study._tokenizer_arm("study.tokenizers[1]", {"steps": 5, "kind": "gan"})
    with pytest.raises(ValueError, match="steps"):
        study._tokenizer_arm("t", {"width": 5})


def test_the_cheapest_tokenizer_point_that_meets_every_target_is_chosen():
    def row(arm, step, steps, acc, shape, colour):
        return {"arm": arm, "step": step, "steps": steps, "Acc after / before": acc,
                "shape after / before": shape, "colour after": colour, "SSIM": 0.7,
                "usage": 0.9}
    rows = [row("a", 500, 1000, 0.85, 0.95, 0.99), row("a", 1000, 1000, 0.92, 0.95, 0.99),
            row("b", 250, 500, 0.95, 0.91, 0.98), row("b", 500, 500, 0.97, 0.89, 0.99),
            row("c", 100, 100, 0.99, 0.99, 0.5)]
    # a: 600 s for 1000 steps; b: 1000 s for 500 steps -> b's step 250 costs 500 s < 600 s
    got = choose_tokenizer.cheapest(rows, {("a", 1000): 600.0, ("b", 500): 1000.0,
                                           ("c", 100): 1.0})
    assert got["row"]["arm"] == "b" and got["row"]["step"] == 250 and got["seconds"] == 500
    assert choose_tokenizer.cheapest(rows, {("a", 1000): 600.0})["row"]["step"] == 1000
    # a longer run of arm a is another arm: its time is not a's
    assert choose_tokenizer.cheapest(rows, {("a", 4000): 1.0, ("b", 500): 1000.0})["row"]["arm"] == "b"
    assert got["meets"] and choose_tokenizer.target_share(got["row"]) >= 1
    # none meets them: the arm whose last point comes nearest (a: shape 0.95, Acc 0.85/0.9)
    near = choose_tokenizer.cheapest(rows[:1] + rows[-1:], {("a", 1000): 1.0, ("c", 100): 1.0})
    assert not near["meets"] and near["row"]["arm"] == "a"
    assert choose_tokenizer.target_share(near["row"]) == pytest.approx(0.85 / 0.9)
    assert choose_tokenizer.cheapest([], {}) is None
    text = choose_tokenizer.text(rows[:1] + rows[-1:], {("a", 1000): 60.0, ("c", 100): 1.0})
    assert "No point of any arm meets" in text and "**a** after 500 steps (1.0 CPU minutes" in text
    assert "Chosen: b at 250 steps" in choose_tokenizer.text(rows, {("a", 1000): 600.0,
                                                                    ("b", 500): 1000.0})
    undefined = dict(rows[0], **{"Acc after / before": None, "SSIM": 0.5, "usage": 0.1})
    assert "Acc after / before n/a" in choose_tokenizer.text([undefined], {("a", 1000): 1.0})


def test_an_arm_is_cached_and_a_foreign_cache_file_is_refused(tiny_study, monkeypatch):
    cfg, sc, judges, toks = tiny_study
    monkeypatch.setattr(J, "get_judges", lambda *a, **kw: judges)
    arm = sc.tokenizers[0]
    rows = study._run_arm(cfg, "tokenizer", arm)
    path, key, _ = study._identity(cfg, "tokenizer", arm, sc)
    assert json.loads(path.read_text())["rows"] == rows
    assert study._run_arm(cfg, "tokenizer", arm) == rows
    seconds = study.tokenizer_seconds(cfg)          # its training time, evaluations left out
    key = (arm.label, arm.steps)
    assert list(seconds) == [key] and 0 <= seconds[key] <= \
        json.loads(path.read_text())["info"]["train_seconds"]
    path.write_text("{not json")
    with pytest.raises(checkpoint.CheckpointError, match="delete it"):
        study._run_arm(cfg, "tokenizer", arm)


def _row(task, dim, step, tflop, acc, ceiling=0.5, batch=16, lr=1e-3, steps=1000):
    return {"task": task, "dim": dim, "batch": batch, "lr": lr, "steps": steps, "step": step,
            "TFLOP": tflop,
            "val loss": 3.0 - acc, "Acc": acc, "CLIPSIM": 0.4, "ceiling Acc": ceiling,
            "ceiling CLIPSIM": 0.8, "Acc / ceiling": acc / ceiling, "prompts": 64}


def test_reading_the_rows():
    rows = [_row("T2I", 64, 100, 1.0, 0.05), _row("T2I", 64, 1000, 10.0, 0.15),
            _row("T2I", 128, 100, 3.0, 0.10), _row("T2I", 128, 1000, 30.0, 0.30)]
    assert study.best_arm(rows, "T2I")["dim"] == 128
    assert study.compute_to_reach(rows, "T2I", 0.5) == 30.0
    assert study.compute_to_reach(rows, "T2I", 0.7) is None
    # d=64: 0.1 -> 0.3 of the ceiling over one decade: 0.5 two decades after the last point
    assert study.extrapolate(rows, rows[1], 0.7) == pytest.approx(10.0 * 10 ** 2)
    flat = [_row("T2V", 64, 1, 1.0, 0.1), _row("T2V", 64, 2, 2.0, 0.1)]
    assert study.extrapolate(flat, flat[0], 0.5) is None
    with pytest.raises(ValueError, match="no arm"):
        study.best_arm(rows, "T2V")


def test_findings_are_written_from_the_rows():
    rows = [_row("T2I", 64, 100, 1.0, 0.05), _row("T2I", 64, 1000, 10.0, 0.15),
            _row("T2V", 64, 10, 2.0, 0.02), _row("T2V", 64, 100, 20.0, 0.30)]
    toks = [{"arm": "tokenizer width=16", "steps": 10, "step": 10, "Acc before": 0.8,
             "Acc after": 0.4, "Acc after / before": 0.5, "shape before": 0.9,
             "shape after": 0.55, "colour after": 0.9, "SSIM": 0.7, "usage": 0.5}]
    toks = [dict(toks[0], step=5, **{"Acc after / before": 0.3}), toks[0]]
    text = study.findings(rows, toks, smoke(), {"T2I": 0.5, "T2V": 0.4, "tokenizer": 0.9})
    assert "Acc/ceiling 0.30" in text and "val loss 2.850" in text        # T2I's last point
    assert "No point reached the target Acc ≥ 0.5" in text
    assert "about 100 TFLOP" in text            # 0.1 -> 0.3 of the ceiling per decade: 0.5 at 10x
    assert "The target Acc ≥ 0.4 × ceiling was first reached at 20 TFLOP" in text
    assert "Acc 0.400 after the tokenizer against 0.800 before (0.50 of it)" in text
    assert "shapes read 0.550" in text
    # 0.3 -> 0.5 of the before-Acc over one doubling of steps: 0.9 two doublings after step 10
    assert "Acc after / before ≥ 0.9 is not reached" in text and "about 40 steps" in text


def test_a_longer_run_of_the_same_arm_has_its_own_file_and_slot(tiny_study):
    cfg, sc, _, toks = tiny_study
    short, long = sc.models[0], study.ModelArm(**{**sc.models[0].__dict__, "steps": 4})
    (p1, _, s1), (p2, _, s2) = (study._identity(cfg, "model", a, sc, toks) for a in (short, long))
    assert p1 != p2 and s1.slot != s2.slot and s1.name.endswith("_2") and s2.name.endswith("_4")


def test_a_longer_run_of_the_same_width_is_another_arm():
    short = [_row("T2I", 64, 100, 1.0, 0.05, steps=200), _row("T2I", 64, 200, 2.0, 0.10, steps=200)]
    long = [_row("T2I", 64, 400, 4.0, 0.20, steps=800), _row("T2I", 64, 800, 8.0, 0.15, steps=800)]
    assert len(study.final_rows(short + long)) == 2
    assert study.best_arm(short + long, "T2I")["steps"] == 800
    # the short arm's own slope: +0.1 of the ceiling per doubling, so 0.4 two doublings on
    assert study.extrapolate(short + long, short[0], 0.4) == pytest.approx(8.0)
    assert study.arm_label(long[0]) == "d=64 b=16 lr=0.001, 800 steps"


def test_training_runs_list_every_stage_of_the_profile():
    cfg = smoke()
    cfg["t2v"]["finetune"] = {"steps": 7, "batch_size": 3}
    rows = study.training_runs(cfg)
    assert rows[0]["section"] == "train" and rows[0]["steps"] == cfg["train"]["steps"]
    got = {(r["section"], r["stage"]): r for r in rows}
    assert got[("t2v", "finetune")]["samples"] == 21          # its own batch, not train's
    assert got[("t2i", "scratch")]["batch"] == cfg["train"]["batch_size"]
    expected = {(n, s) for n in study.TRAINING_SECTIONS for s, v in cfg[n].items()
                if isinstance(v, dict) and "steps" in v}
    assert set(got) == expected | {("train", "pretraining (Eq. 16)")}


def test_a_model_arm_may_change_depth_dropout_and_guidance_and_old_arms_keep_their_keys():
    plain = study._arm(study.ModelArm, "a", {"task": "T2I", "dim": 8, "batch_size": 2,
                                             "lr": 1e-3, "steps": 4})
    assert plain.key() == {"task": "T2I", "dim": 8, "batch_size": 2, "lr": 1e-3, "steps": 4}
    assert plain.label == "T2I d=8 b=2 lr=0.001"
    arm = study._arm(study.ModelArm, "a", {"task": "T2I", "dim": 8, "batch_size": 2, "lr": 1e-3,
                                           "steps": 4, "layers": 3, "cond_dropout": 0.1,
                                           "guidance": 2.0})
    assert arm.key() == {**plain.key(), "layers": 3, "cond_dropout": 0.1, "guidance": 2.0}
    assert arm.label == "T2I d=8 b=2 lr=0.001 L=3 drop=0.1 cfg=2"
    base = {"task": "T2I", "dim": 8, "batch_size": 2, "lr": 1e-3, "steps": 4}
    for extra, match in (({"layers": -1}, "layers"), ({"cond_dropout": 1.0}, "cond_dropout"),
                         ({"guidance": 2.0}, "guidance needs cond_dropout"),
                         ({"depth": 2}, "exactly")):
        with pytest.raises(ValueError, match=match):
            study._arm(study.ModelArm, "a", {**base, **extra})


def test_a_guided_arm_reads_its_guided_samples_beside_the_papers_sampling(tiny_study):
    cfg, sc, judges, toks = tiny_study
    arm = study.ModelArm("T2I", 16, 2, 1e-3, 2, cond_dropout=0.5, guidance=2.0)
    rows = study.model_curve(cfg, arm, sc, judges, toks)
    assert rows == study.model_curve(cfg, arm, sc, judges, toks)
    for r in rows:
        assert r["cond dropout"] == 0.5 and r["guidance"] == 2.0 and "layers" not in r
        assert 0 <= r["guided Acc"] <= 1 and 0 <= r["Acc"] <= 1
    plain = study.model_curve(cfg, sc.models[0], sc, judges, toks)
    assert "guided Acc" not in plain[0] and "cond dropout" not in plain[0]
    finals = study.final_rows(plain + rows)                # two arms, told apart
    assert len(finals) == 2
    assert {study.arm_label(r) for r in finals} == {"d=16 b=2 lr=0.001, 2 steps",
                                                    "d=16 b=2 lr=0.001 drop=0.5 cfg=2, 2 steps"}
    # the arms' runs differ (condition dropout is in the training hash) and so do their files
    assert study._model_plan(cfg, arm, sc, toks).hash != \
        study._model_plan(cfg, sc.models[0], sc, toks).hash


def test_the_study_may_name_its_own_image_tokenizer():
    cfg = smoke()
    assert study.StudyConfig.from_profile(cfg).tokenizer == ""
    image = next(n for n, v in cfg["vqgan"]["models"].items() if v.get("kind") != "seg")
    cfg["study"]["tokenizer"] = image
    sc = study.StudyConfig.from_profile(cfg)
    assert sc.tokenizer == image and "tokenizer" not in sc.eval_key()
    for bad in ("seg_f4", "nope"):
        cfg["study"]["tokenizer"] = bad
        with pytest.raises(ValueError, match="study.tokenizer must name an image tokenizer"):
            study.StudyConfig.from_profile(cfg)
