"""The 3DNA explorer's drawing functions and the pair counts behind the complexity plot."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from nuwa_lib import viz
from nuwa_lib.attention.complexity import self_attention_pairs
from nuwa_lib.attention.masks import attention_mask


@pytest.mark.parametrize("shape", [(2, 4, 4), (3, 5, 7), (1, 6, 5), (4, 1, 1)])
@pytest.mark.parametrize("kind", ["full", "block", "axial", "nearby"])
def test_closed_form_pair_counts_equal_mask_sums(shape, kind):
    kw = {"extent": (1, 1, 2), "block_size": (2, 2, 3)}
    assert self_attention_pairs(kind, shape, **kw) == int(attention_mask(kind, shape, shape, **kw).sum())


def test_nearby_grows_linearly_in_frames_while_axial_grows_faster():
    counts = {s: (self_attention_pairs("nearby", (s, 21, 21), extent=(3, 3, 3)),
                  self_attention_pairs("axial", (s, 21, 21))) for s in (10, 20, 40)}
    per_token_nearby = [n / (s * 441) for s, (n, _) in counts.items()]
    per_token_axial = [a / (s * 441) for s, (_, a) in counts.items()]
    assert per_token_nearby[-1] < 1.3 * per_token_nearby[0]   # bounded window
    assert per_token_axial[-1] > 1.5 * per_token_axial[0]     # grows with s


def test_fig3_query_sees_its_block_axes_and_neighbourhood():
    shape, query = (2, 4, 4), (1, 1, 1)
    block = viz.attended_tokens("block", shape, query, block_size=(2, 2, 2))
    assert block.sum() == 8 and block[:, :2, :2].all()
    axial = viz.attended_tokens("axial", shape, query)
    assert axial.sum() == 4 + 4 + 2 - 2
    nearby = viz.attended_tokens("nearby", shape, query, extent=(1, 1, 1), causal=True)
    # causal: all of frame 0's 3x3 window, and in frame 1 the window up to the query
    assert nearby[0].sum() == 9 and nearby[1].sum() == 5


def test_explorer_summary_follows_the_controls():
    fig1, text1 = viz.explorer_view((3, 6, 6), (1, 2, 3), (1, 1, 1))
    fig2, text2 = viz.explorer_view((3, 6, 6), (1, 2, 3), (1, 2, 2))
    fig3, text3 = viz.explorer_view((3, 6, 6), (0, 0, 0), (1, 1, 1))
    assert "attends to 27 of 108" in text1
    assert "attends to 75 of 108" in text2
    assert "attends to 8 of 108" in text3
    assert "full 108" in text1 and "axial" in text1 and "block" in text1
    assert len(fig1.axes) == 3


def test_pattern_colours_query_orange_and_attended_blue():
    pattern = np.zeros((1, 2, 2), bool)
    pattern[0, 0, 1] = True
    rgb = viz.pattern_rgb(pattern, (0, 1, 1))
    assert (rgb[0, 1, 1] == viz.TARGET_RGB).all() and (rgb[0, 0, 1] == viz.ATTENDED_RGB).all()
    assert (rgb[0, 0, 0] == viz.IGNORED_RGB).all()


def test_query_outside_the_grid_is_rejected():
    with pytest.raises(ValueError, match="query"):
        viz.explorer_view((2, 4, 4), (2, 0, 0), (1, 1, 1))


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="kind"):
        self_attention_pairs("dilated", (2, 4, 4))


def test_explorer_widget_keeps_the_query_inside_the_grid():
    box = viz.explorer((4, 6, 6))
    controls = {w.description: w for row in box.children[:-1] for w in row.children}
    assert set(controls) >= {"frames s", "rows h", "cols w", "query t", "query i", "query j",
                             "extent e_s", "attention", "causal"}
    assert controls["query t"].max == 3
    controls["frames s"].value = 2
    assert controls["query t"].max == 1 and controls["query t"].value <= 1
