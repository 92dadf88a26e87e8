"""Figures keep their pictures legible whatever their captions say."""
import matplotlib
import numpy as np

matplotlib.use("Agg")

from nuwa_lib import viz  # noqa: E402


def test_a_long_row_title_does_not_shrink_the_frames():
    videos = [np.zeros((8, 32, 32, 3), np.uint8)] * 3

    def frame_width(titles):
        fig = viz.video_strips(videos, titles=titles)
        width = fig.axes[0].get_position().width
        matplotlib.pyplot.close(fig)
        return width

    short = frame_width(["real", "scratch", "fine-tuned"])
    long = frame_width(["real (held-out combo): a small yellow diamond moves right on water "
                        "while a large purple circle stays still in the sky", "scratch",
                        "fine-tuned"])
    assert long > 0.9 * short
    assert short > 0.6 / 8          # eight frames fill most of the row
