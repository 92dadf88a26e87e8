"""The notebooks' number formatting (the verdict rule itself is tested in test_image_tasks)."""
import math

from nuwa_lib.experiments.claims import cell, pm


def test_pm_prints_the_spread_only_where_one_was_measured():
    assert pm(12.3456, 0.5, 2) == "12.35 ± 0.50"
    assert pm(12.3456, math.nan, 1) == "12.3"
    assert pm(math.nan, 0.5) == "—"


def test_cell_gives_scores_in_unit_range_three_decimals():
    assert cell("CLIPSIM", 0.76341) == "0.763"
    assert cell("Acc", 0.5, 0.01) == "0.500 ± 0.010"
    assert cell("FID-0", 132.091, 13.74) == "132.09 ± 13.74"
