"""The checks that the judges judge: held-out head accuracies, retrieval R@1, segmentation
scores, against the profile's targets.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..data import world
from .judge_nets import (
    IMAGE_HEADS,
    JUDGE_NAMES,
    SLOT_CLASSES,
    VIDEO_HEADS,
    JudgesConfig,
    TinyCLIP,
    WorldClassifier,
    build,
    n_parameters,
)
from .judges import Judges, WorldData, scene_targets, world_data
from .segmentation import fwiou, mean_iou, pixel_accuracy


# --------------------------------------------------------------------------- checks
def head_accuracy(model: WorldClassifier, data: WorldData) -> dict:
    """Per-head accuracy on single-object scenes (background: on all scenes) and
    ``scene_exact``: the fraction of scenes whose multi-object reading (every slot of an
    image, every presence bit of a video) is entirely right."""
    pred = model.predict(data.pixels)
    t = scene_targets(data.scenes, model.video)
    single = t["single"]
    out = {}
    for h in model.head_names:
        mask = np.ones_like(single) if h == "background" else single
        out[h] = float((pred[h][mask] == t[h][mask]).mean()) if mask.any() else float("nan")
    if model.video:
        exact = ((pred["presence"] > 0.5) == (t["presence"] > 0.5)).all(1)
    else:
        exact = np.all([(pred[f"slot_{a}"] == t[f"slot_{a}"]).all(1) for a in SLOT_CLASSES], 0)
    out["scene_exact"] = float(exact.mean())
    return out


def retrieval_r_at_1(clip: TinyCLIP, images, captions, candidates=100) -> float:
    """Text retrieval R@1: for each image, is its own caption the most similar among
    ``candidates`` captions (its own and those of the other images of its group)? A caption
    that is word-for-word the image's own counts as right. Groups are consecutive chunks of
    ``candidates`` images; a last, incomplete chunk is left out."""
    n = (len(images) // candidates) * candidates
    if n == 0:
        raise ValueError(f"retrieval needs at least candidates={candidates} images, "
                         f"got {len(images)}")
    img = clip.embed_images(images[:n])
    txt = clip.embed_captions(list(captions[:n]))
    hits = []
    for g in range(0, n, candidates):
        sim = img[g:g + candidates] @ txt[g:g + candidates].T
        best = sim.argmax(1).numpy()
        hits += [captions[g + b] == captions[g + i] for i, b in enumerate(best)]
    return float(np.mean(hits))


def _row(judge, metric, value, target=None):
    met = "" if target is None else bool(value >= target)
    return {"judge": judge, "metric": metric, "value": float(value),
            "target": "" if target is None else float(target), "met": met}


def check_judges(judges: Judges, heldout: int, candidates: int, targets: Mapping) -> list:
    """The evidence that the judges can be trusted: rows {judge, metric, value, target, met}
    measured on the judges' ``test`` split, which no judge trains on.

    * classifier / video net: per-head accuracy on ``heldout`` one-object scenes (motion for
      videos), and how often the whole two-object reading is right (slots / presence);
    * CLIP: text retrieval R@1 among ``candidates`` captions, and CLIPSIM of matched and of
      mismatched (shifted by one) image-caption pairs, the scale of CLIPSIM;
    * segmenter: PA, FWIoU and mIoU on images and on frames of moving videos."""
    jc = judges.config
    kw = dict(seed=jc.seed, canvas=jc.canvas, frames=jc.frames)
    rows = []
    for name, video in (("classifier", False), ("video", True)):
        model = getattr(judges, name)
        if model is None:
            continue
        one = world_data("test", heldout, video=video, n_objects=1, **kw)
        acc = head_accuracy(model, one)
        for h in model.head_names:
            rows.append(_row(name, f"accuracy: {h} (one-object scenes)", acc[h], targets.get(name)))
        two = world_data("test", heldout, video=video, n_objects=2, start=heldout, **kw)
        what = "presence, every bit right" if video else "slots, every cell right"
        exact = head_accuracy(model, two)["scene_exact"]
        rows.append(_row(name, f"{what} (two-object scenes)", exact))
    mixed = world_data("test", heldout, start=2 * heldout, **kw)
    if judges.clip is not None:
        r1 = retrieval_r_at_1(judges.clip, mixed.pixels, mixed.captions, candidates)
        rows.append(_row("clip", f"text retrieval R@1 (N={candidates} captions)", r1,
                         targets.get("clip_r_at_1")))
        img = judges.clip.embed_images(mixed.pixels)
        txt = judges.clip.embed_captions(mixed.captions)
        rows.append(_row("clip", "CLIPSIM, matched pairs", (img * txt).sum(1).mean()))
        rows.append(_row("clip", "CLIPSIM, mismatched pairs", (img * txt.roll(1, 0)).sum(1).mean()))
    if judges.segmenter is not None:
        moving = world_data("test", max(1, heldout // jc.frames), video=True,
                            start=3 * heldout, **kw)
        sets = (("images", mixed.pixels, mixed.seg),
                ("video frames", moving.pixels.reshape(-1, *moving.pixels.shape[2:]),
                 moving.seg.reshape(-1, *moving.seg.shape[2:])))
        for what, pixels, seg in sets:
            pred = judges.segmenter.predict(pixels)
            rows.append(_row("segmenter", f"PA ({what})", pixel_accuracy(pred, seg),
                             targets.get("segmenter_pa")))
            rows.append(_row("segmenter", f"FWIoU ({what})", fwiou(pred, seg)))
            rows.append(_row("segmenter", f"mIoU ({what})", mean_iou(pred, seg)))
    return rows


def recipe(jcfg: JudgesConfig) -> list:
    """What each judge is and how it is trained (untrained models give the sizes)."""
    serves = {"classifier": "FID, FID-k, IS, KID, FID-img, Acc (images)",
              "clip": "CLIPSIM, re-ranking", "video": "FID-vid, FVD, Acc (videos)",
              "segmenter": "Detected PA"}
    rows = []
    for name in JUDGE_NAMES:
        c = jcfg.judge(name)
        rows.append({"judge": name, "network": type(build(name, jcfg)).__name__,
                     "parameters": n_parameters(build(name, jcfg)), "steps": c.steps,
                     "batch_size": c.batch_size, "scenes_seen": c.steps * c.batch_size,
                     "serves": serves[name]})
    return rows


def describe_predictions(pred: Mapping, video=False) -> list:
    """Short readings of :meth:`WorldClassifier.predict` output, one per sample: "small red
    circle, top left, grass"; for an image whose slots hold several objects, "small red
    circle (left) + large blue cross (top), grass"; for videos "..., moves up, grass"."""
    def slot(a, i, c):
        k = int(pred[f"slot_{a}"][i, c])
        return world.ATTRIBUTE_VALUES[a][k - 1] if k else "?"

    out = []
    for i in range(len(pred["shape"])):
        v = {h: world.ATTRIBUTE_VALUES[h][int(pred[h][i])]
             for h in (VIDEO_HEADS if video else IMAGE_HEADS)}
        cells = [] if video else [c for c in range(9) if pred["slot_shape"][i, c]]
        if len(cells) > 1:
            objs = [" ".join(slot(a, i, c) for a in ("size", "colour", "shape"))
                    + f" ({world.POSITIONS[c]})" for c in cells]
            out.append(" + ".join(objs) + f", {v['background']}")
            continue
        where = f"moves {v['motion']}" if video else v["position"]
        out.append(f"{v['size']} {v['colour']} {v['shape']}, {where}, {v['background']}")
    return out
