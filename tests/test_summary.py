"""The summary notebook's library: tables beside the paper's numbers, claims gathered with
their verdicts, run times, all read from a results folder."""
import json

import numpy as np
import pandas as pd

from nuwa_lib.experiments import paper, summary as SM, video_tasks as VT


def _write(root, name, df):
    (root / "tables").mkdir(parents=True, exist_ok=True)
    df.to_csv(root / "tables" / f"{name}.csv", index=False)


def test_side_by_side_view_shows_ours_and_the_papers_numbers(tmp_path):
    ours = {"scratch": [{"FVD": 2.0}, {"FVD": 3.0}], "finetune_multitask": [{"FVD": 1.5}]}
    _write(tmp_path, "tab3_v2v", VT.side_by_side(paper.TABLE3, ours, paper.TABLE3_COLUMNS))
    view = SM.side_by_side_view(SM.load_table(tmp_path, "tab3_v2v"))
    assert list(view.columns) == ["row", "FVD", "paper FVD"]
    r = view[view["row"] == "NÜWA (scratch) [scratch]"].iloc[0]
    assert r["FVD"] == "2.500 ± 0.707" and r["paper FVD"] == "87.60"
    assert view[view["row"] == "CCVS"]["FVD"].iloc[0] == "—"
    assert SM.load_table(tmp_path, "nope") is None


def test_claims_are_gathered_with_verdicts(tmp_path):
    _write(tmp_path, "tab2_t2v_claims", pd.DataFrame(
        [{"claim": "a", "column": "Acc", "paper": "1 vs 0", "ours": "2 vs 1", "holds": True, "clear": False},
         {"claim": "b", "column": "Acc", "paper": "1 vs 0", "ours": "0 vs 1", "holds": False, "clear": False}]))
    _write(tmp_path, "tab4_claims", pd.DataFrame([{"claim": "c", "evidence": "FID 1 vs 2", "holds": True}]))
    c = SM.gather_claims(tmp_path)
    assert list(c["source"]) == ["Table 2", "Table 2", "Table 4"]
    assert list(c["verdict"]) == ["holds, within the spread", "does not hold",
                                  "holds (no spread measured)"]
    assert c["ours"].iloc[2] == "FID 1 vs 2"
    assert SM.gather_claims(tmp_path / "empty").empty


def test_runtimes_read_the_pipeline_record(tmp_path):
    assert SM.runtimes(tmp_path) is None
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "runtimes.json").write_text(json.dumps(
        {"metrics": {"01_b": 2.5, "00_a": 1.0}, "unit": "s"}))
    t = SM.runtimes(tmp_path)
    assert list(t["notebook"]) == ["00_a", "01_b"] and t["seconds"].sum() == 3.5


def test_plain_view_folds_std_into_the_value():
    df = pd.DataFrame([{"row": "x", "runs": 3, "motion": 50.0, "motion std": 5.0, "all": 10.0, "all std": np.nan}])
    v = SM.plain_view(df)
    assert list(v.columns) == ["row", "motion", "all"] and v["motion"].iloc[0] == "50.00 ± 5.00"


def test_verdicts_of_another_cpu_are_shown_beside_ours_and_clear_flips_flagged(tmp_path):
    here, there = tmp_path / "mini", SM.other_cpu_root(tmp_path / "mini")
    assert there == tmp_path / "mini-other-cpu"
    rows = lambda holds, clear: pd.DataFrame(
        [{"claim": c, "paper": "", "ours": "", "holds": h, "clear": k}
         for c, h, k in zip("abc", holds, clear)])
    _write(here, "tab1_t2i_claims", rows([True, True, False], [True, False, False]))
    _write(there, "tab1_t2i_claims", rows([True, False, True], [True, False, True]))
    both = SM.compare_verdicts(here, there)
    assert list(both["same"]) == [True, False, False]
    assert list(both["clear flips"]) == [False, False, True]      # c: clear there, not here
    assert list(both["verdict there"]) == ["holds, clearly", "does not hold", "holds, clearly"]


def test_learning_targets_are_read_against_the_ceiling_of_the_same_table(tmp_path):
    _write(tmp_path, "pretraining_readout", pd.DataFrame([
        {"task": "T2I", "pictures": "NÜWA samples", "Acc (all named)": 0.2, "motion": np.nan},
        {"task": "T2I", "pictures": "real, through the VQ-GAN", "Acc (all named)": 0.5,
         "motion": np.nan},
        {"task": "V2V", "pictures": "NÜWA samples", "Acc (all named)": 0.1, "motion": 0.7},
        {"task": "V2V", "pictures": "real, through the VQ-GAN", "Acc (all named)": 0.4,
         "motion": 0.9}]))
    _write(tmp_path, "tab6_s2v", pd.DataFrame([
        {"row": "full-full", "FID-vid": 30.0, "paper FID-vid": 35.2, "Detected PA": 0.9,
         "paper Detected PA": 0.5},
        {"row": "nearby-nearby", "FID-vid": 50.0, "paper FID-vid": 27.8, "Detected PA": 0.8,
         "paper Detected PA": 0.6},
        {"row": "real through the VQ-GAN", "FID-vid": 20.0, "paper FID-vid": np.nan,
         "Detected PA": 0.95, "paper Detected PA": np.nan}]))
    t = SM.learning_targets(tmp_path).set_index("target")
    assert set(t["table"]) == {"pretraining_readout", "tab6_s2v"}   # only the tables there
    t2i = t.loc["pretraining readout: T2I Acc / ceiling"]
    assert t2i["ours"] == 0.2 / 0.5 and t2i["bar"] == "≥ 0.5" and not t2i["met"]
    assert t.loc["pretraining readout: V2V motion read", "met"]           # 0.7 ≥ 0.6, no ratio
    fid = t.loc["Table 6: every row's FID-vid / ceiling (worst)"]
    assert fid["ours"] == 2.5 and fid["met"]                              # worst row: 50 / 20
    pa = t.loc["Table 6: every row's Detected PA (worst)"]
    assert pa["ours"] == 0.8 and not pa["met"]                            # the reference is no row
    assert "T2V" in t.loc["pretraining readout: T2V Acc / ceiling", "note"]   # no T2V row: NaN
    assert not t.loc["pretraining readout: T2V Acc / ceiling", "met"]
