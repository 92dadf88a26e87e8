"""Pictures: image grids, video strips, segmentation colours, the Fig. 1-style task overview.

Pure functions returning matplotlib figures; notebooks save them through
``Results.figure``. Nothing here draws on screen by itself.
"""
from __future__ import annotations

import textwrap
import warnings
from typing import Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker
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
        raise ValueError(f"seg has label {int(seg.max())}; the palette knows "
                         f"{len(SEG_PALETTE)} classes")
    return SEG_PALETTE[seg]


def _show(ax, img, title: str | None = None, fontsize: float = 7) -> None:
    ax.imshow(img, interpolation="nearest")
    ax.set(xticks=[], yticks=[])
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 26)), fontsize=fontsize)


def _grid(n: int, ncols: int, width: float, height: float):
    """``n`` panels, ``ncols`` a row, each ``width`` × ``height``: the figure, its first n axes."""
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * width, nrows * height), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat[:n]


def image_grid(images: Sequence[np.ndarray], ncols: int = 6, titles: Sequence[str] | None = None,
               size: float = 1.6, fontsize: float = 6.5):
    """A grid of (H, W, 3) images with optional wrapped titles."""
    if len(images) == 0:
        raise ValueError("image_grid needs at least one image")
    fig, axes = _grid(len(images), max(1, min(ncols, len(images))), size,
                      size + (0.45 if titles else 0.0))
    for k, ax in enumerate(axes):
        _show(ax, images[k], titles[k] if titles else None, fontsize)
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
        for c, ax in enumerate(axes[r]):
            if c < len(video):
                _show(ax, video[c])
                ax.set_xlabel(f"t={c}", fontsize=6)
            else:
                ax.axis("off")
        if titles:
            # A row title runs across the row; left out of the layout, a long caption cannot
            # shrink every frame to make room for itself.
            axes[r, 0].annotate(titles[r], (0, 1), xycoords="axes fraction", xytext=(0, 3),
                                textcoords="offset points", ha="left", va="bottom",
                                fontsize=7, annotation_clip=False).set_in_layout(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout(h_pad=1.2)
    return fig


def _panel_images(kind: str, data) -> list[np.ndarray]:
    if kind in ("seg", "segvideo"):
        data = seg_to_rgb(data)
    if kind in ("image", "seg"):
        return [data]
    if kind in ("video", "segvideo"):
        return list(data)
    raise ValueError(f"unknown panel kind {kind!r}; expected text, image, seg, video or segvideo")


def task_overview(examples: Sequence[dict], frames_shown: int = 4, size: float = 0.95):
    """Fig. 1 on the world: one row per task, its inputs on the left, arrow, output.

    Each example is ``{"task": "T2I", "title": ..., "inputs": [(kind, data), ...],
    "output": (kind, data)}`` with kinds ``text``, ``image``, ``seg``, ``video``,
    ``segvideo`` (videos are shown by their first ``frames_shown`` frames)."""
    def images(kind, data):
        return [("img", im) for im in _panel_images(kind, data)[:frames_shown]]

    rows = []
    for ex in examples:
        cells = [c for kind, data in ex["inputs"]
                 for c in ([("text", data)] if kind == "text" else images(kind, data))]
        rows.append(cells + [("arrow", None)] + images(*ex["output"]))
    # a text cell is three image cells wide; two more columns for the task name
    ncols = max(sum(3 if kind == "text" else 1 for kind, _ in row) for row in rows) + 2
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
                continue
            ax.axis("off")
            if kind == "text":
                ax.text(0.5, 0.5, "\n".join(textwrap.wrap(f'"{data}"', 30)), fontsize=6.5,
                        ha="center", va="center", style="italic")
            else:
                ax.text(0.5, 0.5, "→", fontsize=14, ha="center", va="center")
    return fig


def attribute_bars(stats, ncols: int = 3):
    """Bar charts of value fractions per attribute, from rows with columns
    ``attribute``, ``value`` and ``fraction`` (a pandas DataFrame)."""
    attributes = list(dict.fromkeys(stats["attribute"]))
    fig, axes = _grid(len(attributes), ncols, 3.2, 2.4)
    for ax, attribute in zip(axes, attributes):
        rows = stats[stats["attribute"] == attribute]
        ax.bar(range(len(rows)), rows["fraction"], color="#4c72b0")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(rows["value"], rotation=45, ha="right", fontsize=7)
        ax.axhline(1 / len(rows), color="grey", lw=0.8, ls="--")  # the uniform share
        ax.set_title(attribute, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# 3D sparse attention pictures (Fig. 3) and the 3DNA explorer's drawing function

TARGET_RGB = np.array([242, 142, 43], np.uint8)     # the query token (orange, as in Fig. 3)
ATTENDED_RGB = np.array([59, 125, 216], np.uint8)   # tokens it attends to (blue)
IGNORED_RGB = np.array([232, 232, 232], np.uint8)


def _query_index(shape, query) -> int:
    s, h, w = shape
    t, i, j = query
    if not (0 <= t < s and 0 <= i < h and 0 <= j < w):
        raise ValueError(f"query {tuple(query)} lies outside the grid (s, h, w) = {tuple(shape)}")
    return (t * h + i) * w + j


def attended_tokens(kind: str, shape, query, *, extent=None, block_size=None,
                    causal: bool = False) -> np.ndarray:
    """Which tokens of an (s, h, w) grid the query token (t, i, j) attends to under
    ``kind`` (full, block, axial, nearby) self-attention: a boolean (s, h, w) array."""
    from .attention.masks import attention_mask

    row = attention_mask(kind, shape, shape, extent=extent, block_size=block_size,
                         causal=causal)[_query_index(shape, query)]
    return row.reshape(tuple(shape)).numpy()


def attended_counts(shape, query, *, extent, block_size, causal: bool = False) -> dict:
    """Number of tokens the query attends to under each kind of attention."""
    return {kind: int(attended_tokens(kind, shape, query, extent=extent, block_size=block_size,
                                      causal=causal).sum())
            for kind in ("full", "block", "axial", "nearby")}


def pattern_rgb(pattern: np.ndarray, query) -> np.ndarray:
    """Colour an (s, h, w) attended pattern: query orange, attended blue, others grey."""
    rgb = np.where(pattern[..., None], ATTENDED_RGB, IGNORED_RGB).astype(np.uint8)
    rgb[tuple(query)] = TARGET_RGB
    return rgb


def _draw_frames(axes, pattern, query) -> None:
    _, h, w = pattern.shape
    for t, (ax, frame) in enumerate(zip(axes, pattern_rgb(pattern, query))):
        ax.imshow(frame, interpolation="nearest")
        ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
        ax.grid(which="minor", color="white", lw=1 if max(h, w) <= 16 else 0.3)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        ax.set_title(f"frame {t}", fontsize=7)


def sparse_attention_figure(shape=(2, 4, 4), query=(1, 1, 1), *, extent=(1, 1, 1),
                            block_size=(2, 2, 2), causal: bool = True,
                            kinds=("block", "axial", "nearby")):
    """Fig. 3 regenerated: for each kind, the tokens one query attends to (upper part,
    frame by frame) and the whole (N, N) mask (lower part; black = masked)."""
    from .attention.masks import attention_mask

    s = shape[0]
    fig = plt.figure(figsize=(1.6 * s * len(kinds), 4.2))
    gs = fig.add_gridspec(2, len(kinds) * s, height_ratios=[1, 1.6])
    for k, kind in enumerate(kinds):
        mask = attention_mask(kind, shape, shape, extent=extent, block_size=block_size,
                              causal=causal).numpy()
        top = [fig.add_subplot(gs[0, c]) for c in range(k * s, (k + 1) * s)]
        _draw_frames(top, mask[_query_index(shape, query)].reshape(shape), query)
        top[0].set_ylabel(kind, fontsize=9, fontweight="bold")
        big = fig.add_subplot(gs[1, k * s:(k + 1) * s])
        big.imshow(np.where(mask[..., None], ATTENDED_RGB, 0).astype(np.uint8),
                   interpolation="nearest")
        big.set_title(f"{kind}: {int(mask.sum())} of {mask.size} pairs", fontsize=8)
        big.set_xlabel("key", fontsize=7)
        big.set_ylabel("query", fontsize=7)
        big.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def explorer_view(shape, query, extent, *, causal: bool = False, kind: str = "nearby",
                  block_size=(2, 2, 2)):
    """What the 3DNA explorer shows for one setting of its controls: a figure of the
    attended tokens frame by frame, and a one-line summary with the count of attended
    tokens under ``kind`` and, for comparison, under full, block and axial attention."""
    pattern = attended_tokens(kind, shape, query, extent=extent, block_size=block_size,
                              causal=causal)
    counts = attended_counts(shape, query, extent=extent, block_size=block_size, causal=causal)
    s = shape[0]
    fig, axes = plt.subplots(1, s, figsize=(min(1.8 * s, 14), 2.0), squeeze=False)
    _draw_frames(axes[0], pattern, query)
    axes[0, 0].set_ylabel(kind, fontsize=8)
    fig.tight_layout()
    others = ", ".join(f"{k} {n}" for k, n in counts.items() if k != kind)
    summary = (f"{kind}: query {tuple(query)} attends to {counts[kind]} of "
               f"{int(np.prod(shape))} tokens ({others})")
    return fig, summary


def explorer(grid=(4, 6, 6), *, block_size=(2, 2, 2)):
    """The 3DNA explorer of notebook 03: sliders for the grid (s, h, w), the query and the
    extent, a choice of attention pattern and causality, and :func:`explorer_view` redrawn
    for each setting. Returns the ipywidgets box to display."""
    import ipywidgets as widgets
    from IPython.display import display

    s0, h0, w0 = grid
    slider = lambda value, hi, name, lo=1: widgets.IntSlider(value, lo, hi, description=name)
    controls = dict(
        s=slider(s0, 6, "frames s"), h=slider(h0, 12, "rows h"), w=slider(w0, 12, "cols w"),
        t=slider(s0 // 2, s0 - 1, "query t", 0), i=slider(h0 // 2, h0 - 1, "query i", 0),
        j=slider(w0 // 2, w0 - 1, "query j", 0), e_s=slider(1, 5, "extent e_s", 0),
        e_h=slider(1, 5, "extent e_h", 0), e_w=slider(1, 5, "extent e_w", 0),
        kind=widgets.Dropdown(options=["nearby", "block", "axial", "full"], value="nearby",
                              description="attention"),
        causal=widgets.Checkbox(True, description="causal"),
    )
    for axis, q in (("s", "t"), ("h", "i"), ("w", "j")):   # keep the query inside the grid
        widgets.dlink((controls[axis], "value"), (controls[q], "max"), lambda n: n - 1)

    def show(s, h, w, t, i, j, e_s, e_h, e_w, kind, causal):
        fig, summary = explorer_view((s, h, w), (min(t, s - 1), min(i, h - 1), min(j, w - 1)),
                                     (e_s, e_h, e_w), causal=causal, kind=kind,
                                     block_size=block_size)
        display(fig)
        plt.close(fig)
        display(widgets.HTML(f"<b>{summary}</b>"))

    view = widgets.interactive_output(show, controls)
    rows = [("s", "h", "w"), ("t", "i", "j"), ("e_s", "e_h", "e_w"), ("kind", "causal")]
    return widgets.VBox([widgets.HBox([controls[k] for k in r]) for r in rows] + [view])


def attention_bench_figure(bench: dict, methods=("masked_sdpa", "causal_sdpa", "torch")):
    """Plot ``results/bench/attention_cpu.json``: median fwd+bwd time and peak memory per
    method against the number of frames s (grids s × 21 × 21)."""
    cases = bench["cases"]
    frames = sorted(cases, key=int)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    panels = (("median_s", 1e3, "fwd+bwd median (ms)", "time"),
              ("peak_mb", 1, "peak memory (MB)", "memory"))
    for ax, (key, scale, ylabel, title) in zip(axes, panels):
        for method in methods:
            xs = [s for s in frames if method in cases[s]]
            ax.plot([int(s) for s in xs], [cases[s][method][key] * scale for s in xs],
                    marker="o", label=method)
        ax.set(xscale="log", yscale="log", xlabel="frames s", ylabel=ylabel, title=title)
        ax.minorticks_off()
        ax.set_xticks([int(s) for s in frames], frames)
        ax.legend(fontsize=8)
    fig.suptitle("3DNA on CPU, causal, e = (3, 3, 3), B=1, H=4, D=64", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# training and evaluation curves (notebooks 01, 02, 04, 14)

def curve_panels(rows, panels, x: str = "level", y: str = "value", line: str = "curve",
                 size=(3.6, 3.0)):
    """One subplot per panel ``(title, xlabel, ylabel, [curve names])``; each curve is
    the rows whose ``line`` column equals its name, plotted as ``y`` against ``x``."""
    import pandas as pd

    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(size[0] * len(panels), size[1]),
                             squeeze=False)
    for ax, (title, xlabel, ylabel, curves) in zip(axes[0], panels):
        for name in curves:
            part = df[df[line] == name].sort_values(x)
            if part.empty:
                raise ValueError(f"no rows with {line} == {name!r}")
            ax.plot(part[x], part[y], marker="o", label=name)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def history_panels(histories: dict, panels, x: str = "step", size=(4.2, 3.0)):
    """Training curves of several runs. ``histories``: {run name: list of per-step dicts};
    ``panels``: ``(title, ylabel, key)`` — each panel plots ``key`` of every run against
    ``x``, skipping the steps that did not log it."""
    fig, axes = plt.subplots(1, len(panels), figsize=(size[0] * len(panels), size[1]),
                             squeeze=False)
    for ax, (title, ylabel, key) in zip(axes[0], panels):
        for name, history in histories.items():
            pts = [(h[x], h[key]) for h in history if key in h]
            if pts:
                ax.plot(*zip(*pts), label=name, lw=1.2)
        ax.set(title=title, xlabel=x, ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def task_loss_curves(curves: dict, smooth: int = 1, reference: float | None = None,
                     size=(6.0, 3.4)):
    """Loss per task against the training step (``train.per_task`` output), each a moving
    average over ``smooth`` of that task's steps; ``reference``: a dashed line (e.g. log N)."""
    fig, ax = plt.subplots(figsize=size)
    for task, c in curves.items():
        loss = np.asarray(c["loss"], dtype=float)
        k = max(1, min(int(smooth), len(loss)))
        avg = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(np.asarray(c["step"])[k - 1:], avg, label=task, lw=1.4)
    if reference is not None:
        ax.axhline(reference, ls="--", c="grey", lw=1, label="uniform guess")
    ax.set(xlabel="training step", ylabel="cross-entropy per token (nats)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def study_curves(rows, panels, *, x: str = "TFLOP", line: str = "arm", by: str = "task",
                 logx: bool = True, size=(3.4, 2.8),
                 ceiling_label: str = "ceiling (real, through the VQ-GAN)"):
    """Learning curves of a study (``nuwa_lib.experiments.study`` rows): one subplot row per
    value of ``by`` (e.g. the task), one column per panel ``(y, ylabel, ceiling)`` where
    ``ceiling`` names a column drawn as a dashed line labelled ``ceiling_label`` (or None);
    one line per value of ``line``."""
    import pandas as pd

    df = pd.DataFrame(rows)
    groups = list(dict.fromkeys(df[by]))
    fig, axes = plt.subplots(len(groups), len(panels), squeeze=False,
                             figsize=(size[0] * len(panels), size[1] * len(groups)))
    for ax_row, g in zip(axes, groups):
        part = df[df[by] == g]
        for ax, (y, ylabel, ceiling) in zip(ax_row, panels):
            for name in dict.fromkeys(part[line]):
                arm = part[part[line] == name].sort_values(x)
                ax.plot(arm[x], arm[y], marker="o", ms=3, lw=1.2, label=name)
            if ceiling is not None:
                ax.axhline(float(part[ceiling].iloc[0]), ls="--", c="grey", lw=1,
                           label=ceiling_label)
            if logx:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set(xlabel=x, ylabel=ylabel)
            ax.set_title(f"{g}: {ylabel}", fontsize=10)
            ax.grid(alpha=0.3)
        handles = {}
        for ax in ax_row:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        ax_row[-1].legend(handles.values(), handles.keys(), fontsize=7, loc="center left",
                          bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig
