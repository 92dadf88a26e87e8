"""Pictures: image grids, video strips, segmentation colours, the Fig. 1-style task overview.

Pure functions returning matplotlib figures; notebooks save them through
``Results.figure``. Nothing here draws on screen by itself.
"""
from __future__ import annotations

import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

# Segmentation palette: muted colours for the background "stuff" classes, strong
# ones for object classes, so a sketch reads like the paper's Fig. 6 inputs.
SEG_PALETTE = np.array([
    [96, 160, 72],    # grass
    [150, 190, 235],  # sky
    [215, 195, 140],  # sand
    [60, 100, 170],   # water
    [230, 60, 60],    # circle
    [250, 170, 30],   # square
    [70, 200, 200],   # triangle
    [200, 80, 220],   # diamond
    [40, 40, 40],     # cross
], dtype=np.uint8)


def seg_to_rgb(seg: np.ndarray) -> np.ndarray:
    """Colour a label map (..., H, W) with :data:`SEG_PALETTE` → (..., H, W, 3) uint8."""
    seg = np.asarray(seg)
    if seg.size and seg.max() >= len(SEG_PALETTE):
        raise ValueError(f"seg has label {int(seg.max())}; the palette knows {len(SEG_PALETTE)} classes")
    return SEG_PALETTE[seg]


def _show(ax, img, title: str | None = None, fontsize: float = 7) -> None:
    ax.imshow(img, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 26)), fontsize=fontsize)


def image_grid(images: Sequence[np.ndarray], ncols: int = 6, titles: Sequence[str] | None = None,
               size: float = 1.6, fontsize: float = 6.5):
    """A grid of (H, W, 3) images with optional wrapped titles."""
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    extra = 0.45 if titles else 0.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + extra)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < n:
            _show(ax, images[k], titles[k] if titles else None, fontsize)
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig


def video_strips(videos: Sequence[np.ndarray], titles: Sequence[str] | None = None,
                 size: float = 1.1, max_frames: int | None = None):
    """One row per video (T, H, W, 3), frames left to right, title above each row."""
    if len(videos) == 0:
        raise ValueError("video_strips needs at least one video")
    t = max(len(v) for v in videos) if max_frames is None else max_frames
    fig, axes = plt.subplots(len(videos), t, figsize=(t * size, len(videos) * (size + 0.35)),
                             squeeze=False)
    for r, video in enumerate(videos):
        for c in range(t):
            ax = axes[r, c]
            if c < len(video):
                _show(ax, video[c])
            else:
                ax.axis("off")
        if titles:
            axes[r, 0].set_title(titles[r], fontsize=7, loc="left")
        for c in range(min(t, len(video))):
            axes[r, c].set_xlabel(f"t={c}", fontsize=6)
    fig.tight_layout()
    return fig


def _panel_images(kind: str, data) -> list[np.ndarray]:
    if kind == "image":
        return [data]
    if kind == "seg":
        return [seg_to_rgb(data)]
    if kind == "video":
        return list(data)
    if kind == "segvideo":
        return list(seg_to_rgb(data))
    raise ValueError(f"unknown panel kind {kind!r}; expected text, image, seg, video or segvideo")


def task_overview(examples: Sequence[dict], frames_shown: int = 4, size: float = 0.95):
    """Fig. 1 on the world: one row per task, its inputs on the left, arrow, output.

    Each example is ``{"task": "T2I", "title": ..., "inputs": [(kind, data), ...],
    "output": (kind, data)}`` with kinds ``text``, ``image``, ``seg``, ``video``,
    ``segvideo`` (videos are shown by their first ``frames_shown`` frames)."""
    rows = []
    for ex in examples:
        cells = []
        for kind, data in ex["inputs"]:
            if kind == "text":
                cells.append(("text", data))
            else:
                cells += [("img", im) for im in _panel_images(kind, data)[:frames_shown]]
        cells.append(("arrow", None))
        kind, data = ex["output"]
        cells += [("img", im) for im in _panel_images(kind, data)[:frames_shown]]
        rows.append(cells)
    # a text cell is three image cells wide
    widths = [sum(3 if c[0] == "text" else 1 for c in row) for row in rows]
    ncols = max(widths) + 2  # + two columns for the task name
    fig = plt.figure(figsize=(ncols * size, len(rows) * size * 1.05))
    gs = fig.add_gridspec(len(rows), ncols, wspace=0.08, hspace=0.25)
    for r, (ex, row) in enumerate(zip(examples, rows)):
        ax = fig.add_subplot(gs[r, 0:2])
        ax.axis("off")
        title = "\n".join(textwrap.wrap(ex.get("title", ""), 18))
        ax.text(0.0, 0.5, f"{ex['task']}\n{title}", fontsize=7, fontweight="bold", va="center")
        col = 2
        for kind, data in row:
            span = 3 if kind == "text" else 1
            ax = fig.add_subplot(gs[r, col:col + span])
            col += span
            if kind == "img":
                _show(ax, data)
            elif kind == "text":
                ax.axis("off")
                ax.text(0.5, 0.5, "\n".join(textwrap.wrap(f'"{data}"', 30)), fontsize=6.5,
                        ha="center", va="center", style="italic")
            else:
                ax.axis("off")
                ax.text(0.5, 0.5, "→", fontsize=14, ha="center", va="center")
    return fig


def attribute_bars(stats, ncols: int = 3):
    """Bar charts of value fractions per attribute, from rows with columns
    ``attribute``, ``value`` and ``fraction`` (a pandas DataFrame)."""
    attributes = list(dict.fromkeys(stats["attribute"]))
    nrows = -(-len(attributes) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 3.2, nrows * 2.4), squeeze=False)
    for ax, attribute in zip(axes.flat, attributes):
        rows = stats[stats["attribute"] == attribute]
        ax.bar(range(len(rows)), rows["fraction"], color="#4c72b0")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(rows["value"], rotation=45, ha="right", fontsize=7)
        ax.axhline(1 / len(rows), color="grey", lw=0.8, ls="--")  # the uniform share
        ax.set_title(attribute, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(attributes):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
