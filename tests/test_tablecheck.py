"""The cross-machine table check: exact where nothing is trained, a band from kernel
variants and seeds where it is (on the log scale for Fréchet distances)."""
import json

import pandas as pd
import pytest

from nuwa_lib import repro, tablecheck
from nuwa_lib.tablecheck import band, compare_tables, shape_of, trained_columns


def _table(folder, name, text, trained=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.csv").write_text(text)
    if trained is not None:
        (folder / f"{name}.provenance.json").write_text(json.dumps({"trained_columns": trained}))


@pytest.fixture
def golden(tmp_path):
    """A golden table with an exact key column and trained values, two kernel variants and
    two seed runs of it."""
    ref = tmp_path / "smoke" / "tables"
    _table(ref, "t", "k,v,ours,holds\nx,1.0,1.000 vs 2.000,False\ny,,a,True\n",
           trained=["v", "ours", "holds"])
    for run, v in (("kernels-a", "1.2"), ("kernels-b", "0.9"), ("seed1", "1.5"), ("seed2", "0.4")):
        _table(tmp_path / "smoke" / "spread" / run, "t",
               f"k,v,ours,holds\nx,{v},0.5 vs 3.000,True\ny,,a,False\n")
    return ref


def test_exact_columns_must_match_to_the_last_digit(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _table(b, "t", "k,n\nx,441\ny,0.185268\n")
    _table(a, "t", "k,n\nx,441\ny,0.185268\n")
    assert compare_tables(a, b) == []
    _table(a, "t", "k,n\nx,441\ny,0.185269\n")
    (problem,) = compare_tables(a, b)
    assert "row 1" in problem and "'n'" in problem and "exact" in problem


def test_structure_is_exact_missing_new_and_reshaped_tables(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _table(a, "t", "k,v\nx,1\n")
    _table(a, "extra", "k\nx\n")
    _table(b, "t", "k,w\nx,1\n")
    _table(b, "u", "k\nx\n")
    problems = compare_tables(a, b)
    assert any("u.csv: missing" in p for p in problems)
    assert any("extra.csv: new table" in p for p in problems)
    assert any("t.csv: columns" in p for p in problems)
    _table(a, "t", "k,w\nx,1\ny,2\n")
    assert any("2 rows != 1 rows" in p for p in compare_tables(a, b))


def test_trained_numbers_pass_inside_the_band_and_fail_outside(golden, tmp_path):
    new = tmp_path / "new"
    # all runs 0.4 .. 1.5; kernels 1.0, 1.2, 0.9 (range 0.3), seeds 1.0, 1.5, 0.4 (range 1.1):
    # band [0.4 - 4 * 0.3, 1.5 + 4 * 0.3] = [-0.8, 2.7]
    _table(new, "t", "k,v,ours,holds\nx,2.65,9.1 vs 0.2,True\ny,,a,False\n")
    assert compare_tables(new, golden) == []
    _table(new, "t", "k,v,ours,holds\nx,2.75,1.000 vs 2.000,False\ny,,a,True\n")
    (problem,) = compare_tables(new, golden)
    assert "row 0" in problem and "outside" in problem and "3 kernel and 2 seed runs" in problem


def test_trained_cells_keep_their_kind(golden, tmp_path):
    new = tmp_path / "new"
    _table(new, "t", "k,v,ours,holds\nx,nan,1 vs 2,False\ny,0.5,a,True\n")
    problems = compare_tables(new, golden)
    assert any("row 0" in p and "'v'" in p and "empty" in p for p in problems)
    assert any("row 1" in p and "'v'" in p and "a number" in p for p in problems)
    _table(new, "t", "k,v,ours,holds\nx,1.0,1 or 2,maybe\ny,,a,True\n")
    problems = compare_tables(new, golden)
    assert any("'ours'" in p and "shapes" in p for p in problems)
    assert any("'holds'" in p and "shapes" in p for p in problems)
    _table(new, "t", "k,v,ours,holds\nx,inf,1 vs 2,False\ny,,a,True\n")
    assert any("not finite" in p for p in compare_tables(new, golden))


def test_exact_key_columns_of_a_trained_table_stay_exact(golden, tmp_path):
    new = tmp_path / "new"
    _table(new, "t", "k,v,ours,holds\nX,1.0,1 vs 2,False\ny,,a,True\n")
    (problem,) = compare_tables(new, golden)
    assert "'k'" in problem and "exact" in problem


def test_trained_table_without_reference_runs_is_reported(tmp_path):
    ref, new = tmp_path / "p" / "tables", tmp_path / "new"
    _table(ref, "t", "k,v\nx,1\n", trained=["v"])
    _table(new, "t", "k,v\nx,1\n")
    (problem,) = compare_tables(new, ref)
    assert "make spread" in problem
    _table(tmp_path / "p" / "spread" / "kernels-a", "t", "k,v\nx,1\n")
    (problem,) = compare_tables(new, ref)
    assert "seed*" in problem and "make spread" in problem          # kernels alone are not enough
    _table(tmp_path / "p" / "spread" / "seed1", "t", "k,v\nx,1\ny,2\n")
    (problem,) = compare_tables(new, ref)
    assert "another shape" in problem


def test_band_widens_the_kernel_variants_by_their_range_with_floors():
    w = tablecheck.WIDEN
    assert band([1.0, 1.2, 0.9]) == pytest.approx((0.9 - 0.3 * w, 1.2 + 0.3 * w))
    lo, hi = band([2.0, 2.0])                     # kernels agree: the relative floor
    assert (lo, hi) == pytest.approx((2.0 - 2.0 * tablecheck.REL_FLOOR, 2.0 + 2.0 * tablecheck.REL_FLOOR))
    # ... or the seeds' range around all runs, e.g. an accuracy that no kernel change moved
    assert band([0.05, 0.05], [0.05, 0.0, 0.1]) == pytest.approx((-0.1, 0.2))
    # a standard deviation over seeds: from 0, and wider above
    assert band([0.1, 0.2], std=True) == pytest.approx((0.0, 0.2 + 0.1 * w * tablecheck.STD_WIDEN))


def test_frechet_distances_get_a_band_on_the_log_scale():
    assert [tablecheck.log_scale(c) for c in ("FID", "FID-8", "FID-vid", "FVD", "FID-vid std",
                                               "KID", "CLIPSIM")] == [True] * 4 + [False] * 3
    # kernels 0.4, 0.5 (log range 0.22, x4 = 0.89); seeds 0.4, 0.1, 0.8 (log range 2.08)
    lo, hi = band([0.4, 0.5], [0.4, 0.1, 0.8], log=True)
    assert (lo, hi) == pytest.approx((0.1 / 8, 0.8 * 8))
    lo, hi = band([3.0, 3.0], log=True)           # all agree: a factor 1 + REL_FLOOR
    assert (lo, hi) == pytest.approx((3.0 / (1 + tablecheck.REL_FLOOR), 3.0 * (1 + tablecheck.REL_FLOOR)))


def test_another_cpu_may_land_beyond_every_reference_run_but_not_far(tmp_path):
    """On another CPU a trained model is one more draw: a distance 2.5x the largest of the
    reference runs passes on the log scale; a tenfold one, or a linear column as far out, fails."""
    ref, new = tmp_path / "p" / "tables", tmp_path / "new"
    _table(ref, "t", "k,FID-vid,CLIPSIM\nx,0.43,0.43\n", trained=["FID-vid", "CLIPSIM"])
    for run, v in (("kernels-a", "0.37"), ("kernels-b", "0.40"), ("seed1", "0.07"),
                   ("seed2", "0.09"), ("seed3", "0.20")):
        _table(tmp_path / "p" / "spread" / run, "t", f"k,FID-vid,CLIPSIM\nx,{v},{v}\n")
    _table(new, "t", "k,FID-vid,CLIPSIM\nx,1.08,0.6\n")
    assert compare_tables(new, ref) == []
    _table(new, "t", "k,FID-vid,CLIPSIM\nx,20.0,1.08\n")
    problems = compare_tables(new, ref)
    assert len(problems) == 2 and "(log scale)" in problems[0] and "'CLIPSIM'" in problems[1]


def test_std_columns_get_the_wider_band_from_zero(tmp_path):
    ref, new = tmp_path / "p" / "tables", tmp_path / "new"
    _table(ref, "t", "k,v,v std\nx,1.0,0.10\n", trained=["v", "v std"])
    _table(tmp_path / "p" / "spread" / "kernels-a", "t", "k,v,v std\nx,1.1,0.12\n")
    _table(tmp_path / "p" / "spread" / "seed1", "t", "k,v,v std\nx,1.0,0.11\n")
    _table(new, "t", "k,v,v std\nx,1.0,0.0\n")
    assert compare_tables(new, ref) == []
    _table(new, "t", "k,v,v std\nx,1.0,0.25\n")       # 0.12 + 1.5 * 4 * 0.02 = 0.24
    (problem,) = compare_tables(new, ref)
    assert "'v std'" in problem


def test_shape_masks_numbers_and_booleans():
    assert shape_of("9.348 vs 9.131 (axial), 9.100 (full)") == "# vs # (axial), # (full)"
    assert shape_of("0.155 ± 0.008 vs 1e-05") == "# ± # vs #"
    assert shape_of("True") == shape_of("False") == "<bool>"
    assert shape_of("does not hold") == "does not hold"


def test_trained_column_patterns_are_checked_and_recorded(tmp_path):
    cols = ["row", "FID-0", "FID-0 std", "paper FID-0", "IS"]
    assert trained_columns(cols, ["FID-*", "IS"]) == ["FID-0", "FID-0 std", "IS"]
    with pytest.raises(ValueError, match="FDI"):
        trained_columns(cols, ["FDI-*"])
    out = repro.Results(profile="smoke", seed=0, root=tmp_path)
    out.table("t", pd.DataFrame({"row": ["a"], "FID-0": [1.0]}), trained=["FID-0"])
    prov = json.loads((tmp_path / "tables" / "t.provenance.json").read_text())
    assert prov["trained_columns"] == ["FID-0"]
    assert tablecheck.declared_trained(tmp_path / "tables", "t.csv") == ["FID-0"]


def test_a_shipped_record_is_bounded_by_its_other_cpu_reevaluation_alone(tmp_path):
    """Same weights, other kernels: the band is the record's value and the other-CPU run's,
    widened (4x their difference, at least 2%); no seed runs needed; only the tables the new
    run wrote are compared."""
    ref = tmp_path / "mini" / "tables"
    _table(ref, "t", "k,acc\nx,0.500\n", trained=["acc"])
    _table(ref, "u", "k\nx\n")
    _table(tmp_path / "mini-other-cpu" / "tables", "t", "k,acc\nx,0.510\n")
    new = tmp_path / "new"
    _table(new, "t", "k,acc\nx,0.545\n")                 # band [0.5 - 0.04, 0.51 + 0.04]
    assert compare_tables(new, ref, same_weights=True) == []
    _table(new, "t", "k,acc\nx,0.560\n")
    (problem,) = compare_tables(new, ref, same_weights=True)
    assert "outside" in problem and "0.56" in problem
    _table(new, "t", "k,acc\ny,0.500\n")
    assert "exact" in compare_tables(new, ref, same_weights=True)[0]


def test_a_shipped_record_without_its_other_cpu_reevaluation_cannot_be_checked(tmp_path):
    ref = tmp_path / "mini" / "tables"
    _table(ref, "t", "k,acc\nx,0.5\n", trained=["acc"])
    (problem,) = compare_tables(ref, ref, same_weights=True)
    assert "reproduce-other-cpu" in problem
