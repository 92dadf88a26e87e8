"""The image tasks of Sec. 4.2 on the world: T2I (Table 1, Fig. 4), S2I (Fig. 6), zero-shot
I2I completion (Fig. 7) and TI2I manipulation (Fig. 8) -- what notebooks 05-08 share, so no
logic lives only in a notebook. Every claim is decided by :mod:`.claims`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..data import splits, tasks as T, world
from ..evaluation import metrics
from ..evaluation.segmentation import pixel_accuracy
from . import paper
from .claims import NAN, decide, ours_of, side_row

# The paper's columns, then ours: "Acc" (the world classifier reads every attribute the
# caption names, DESIGN §7), which the paper has no column for.
TABLE1_COLUMNS = paper.TABLE1_COLUMNS + ("Acc",)
CEILING_ROW = "ceiling_vq"    # real test pictures through the VQ-GAN: what the tokens allow
OUR_ROWS = ("scratch_full", "scratch_axial", "scratch_nearby", "finetune_cc",
            "finetune_multitask", "zeroshot_multitask")


def seeded(cfg: Mapping[str, Any], seed: int) -> dict:
    """The profile ``cfg`` with ``seed`` in place of its seed (a repeat of a training run)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return {**dict(cfg), "seed": int(seed)}


def world_samples(role: str, split: str, indices, *, seed=0, canvas=32, frames=8) -> list:
    """The world's samples ``indices`` of a role's split."""
    return [splits.sample(role, split, int(i), seed, canvas, frames) for i in indices]


def real_pictures(role: str, split: str, indices, *, seed=0, canvas=32, frames=8) -> np.ndarray:
    """uint8 (N, H, W, 3) images (or (N, T, H, W, 3) videos) of samples ``indices``."""
    what = "video" if splits.ROLES[role].kind == "video" else "image"
    return np.stack([getattr(s, what) for s in world_samples(role, split, indices, seed=seed,
                                                             canvas=canvas, frames=frames)])


def real_segs(role: str, split: str, indices, *, seed=0, canvas=32, frames=8) -> np.ndarray:
    """Class maps (N, H, W) (or (N, T, H, W)) of samples ``indices``."""
    return np.stack([s.seg for s in world_samples(role, split, indices, seed=seed,
                                                  canvas=canvas, frames=frames)])


def counterfactual_pictures(role: str, split: str, indices, *, seed=0, canvas=32,
                            frames=8) -> dict:
    """TI2I's ground truth for samples ``indices``: {"edits": per sample {"attribute",
    "value", "position", "objects"} (see :func:`edit_accuracy`), "before": the originals,
    "after": the counterfactual pictures, "captions": the edited captions, "segs": the class
    maps (a colour edit keeps them), "edit_rows": first changed pixel row per sample}."""
    samples = world_samples(role, split, indices, seed=seed, canvas=canvas, frames=frames)
    cfs = [T.counterfactual("TI2I", s, frames) for s in samples]
    edits = []
    for s, c in zip(samples, cfs):      # the edit tasks.counterfactual makes: last object's colour
        obj = s.scene.objects[-1]
        new = world.COLOURS[(world.COLOURS.index(obj.colour) + 1) % len(world.COLOURS)]
        changed = world.change_attribute(s.scene, "colour", new, obj=len(s.scene.objects) - 1)
        if world.caption(changed) != c["caption"]:
            raise AssertionError("counterfactual_pictures disagrees with tasks.counterfactual")
        edits.append({"attribute": "colour", "value": new, "position": obj.position,
                      "objects": len(s.scene.objects)})
    return {"edits": edits, "before": np.stack([s.image for s in samples]),
            "after": np.stack([c["picture"] for c in cfs]),
            "captions": [c["caption"] for c in cfs], "segs": np.stack([s.seg for s in samples]),
            "edit_rows": np.array([c["edit_row"] for c in cfs])}


# --------------------------------------------------------------------------- T2I
def t2i_scores(samples, real, captions, classifier, clip, *, radii=metrics.FID_RADII,
               isc_splits: int = 10) -> dict:
    """Table 1's columns for generated images ``samples`` (N, H, W, 3) against ``real``
    pictures: {"FID-k": ..., "IS": ..., "CLIPSIM": ..., "Acc": ...} (world judges)."""
    samples, real = np.asarray(samples), np.asarray(real)
    if samples.ndim != 4 or real.ndim != 4:
        raise ValueError(f"samples and real must be images (N, H, W, 3), got shapes "
                         f"{samples.shape} and {real.shape}")
    fids = metrics.fid_k(samples, real, classifier, radii)
    return {**{f"FID-{k}": v for k, v in fids.items()},
            "IS": metrics.inception_score(samples, classifier, splits=isc_splits)[0],
            "CLIPSIM": metrics.clipsim(clip, samples, captions),
            "Acc": metrics.accuracy(classifier, samples, captions)}


def table1(ours: Mapping[str, Sequence[Mapping[str, float]]], columns=TABLE1_COLUMNS,
           ceiling: Mapping[str, float] | None = None):
    """Table 1 as a DataFrame: the paper's rows, and for each NÜWA row ours beside it --
    per column ``<c>`` (our mean over seeds), ``<c> std`` and ``paper <c>``; ``seeds`` counts
    our runs. ``ours`` maps a row key of :data:`OUR_ROWS` to its runs' scores. ``ceiling``:
    the scores of the real test pictures through the VQ-GAN, added as the row
    :data:`CEILING_ROW`, and each row's "Acc / ceiling" (its Acc over the ceiling's)."""
    import pandas as pd

    unknown = set(ours) - set(OUR_ROWS)
    if unknown:
        raise ValueError(f"unknown Table 1 row(s) {sorted(unknown)}; rows: {', '.join(OUR_ROWS)}")
    rows = [side_row(p, p.get("ours"), ours, columns, {"setting": p["setting"]})
            for p in paper.TABLE1]
    if ceiling is not None:
        row = {"model": "real, through the VQ-GAN", "setting": "ceiling of the tokens",
               "row": CEILING_ROW, "seeds": 0}
        for c in columns:
            row[c], row[f"{c} std"], row[f"paper {c}"] = float(ceiling[c]), NAN, NAN
        rows.append(row)
    tab = pd.DataFrame(rows)
    if ceiling is not None and "Acc" in columns:
        top = float(ceiling["Acc"])
        tab["Acc / ceiling"] = tab["Acc"] / top if top > 0 else NAN
    return tab


def t2i_claims(table, fid: str = "FID-0") -> list:
    """The paper's Table 1 claims decided from our numbers (lower FID is better, higher
    CLIPSIM is better): rows {"claim", "paper", "ours", "holds", "clear"}."""
    theirs = {p["ours"]: p for p in paper.TABLE1 if "ours" in p}

    def cmp(a, b, column, lower):
        (ma, sa), (mb, sb) = (ours_of(table, k, column, "Table 1") for k in (a, b))
        return (*decide(ma, sa, mb, sb, lower), f"{ma:.3f}", f"{mb:.3f}")

    out = []
    for column, lower in ((fid, True), ("CLIPSIM", False)):
        word = "lower" if lower else "higher"
        h1, c1, nearby, axial = cmp("scratch_nearby", "scratch_axial", column, lower)
        h2, c2, _, full = cmp("scratch_nearby", "scratch_full", column, lower)
        pv = [theirs[k][column] for k in ("scratch_nearby", "scratch_axial", "scratch_full")]
        out.append({"claim": f"nearby beats axial and full ({column}, {word} is better)",
                    "paper": f"{pv[0]} vs {pv[1]} (axial), {pv[2]} (full)",
                    "ours": f"{nearby} vs {axial} (axial), {full} (full)",
                    "holds": bool(h1 and h2),
                    "clear": None if c1 is None or c2 is None else c1 and c2})
        holds, clear, multi, cc = cmp("finetune_multitask", "finetune_cc", column, lower)
        out.append({"claim": f"multi-task pretraining helps T2I ({column}, {word} is better)",
                    "paper": f"{theirs['finetune_multitask'][column]} vs "
                             f"{theirs['finetune_cc'][column]} (CC only)",
                    "ours": f"{multi} vs {cc} (CC only)", "holds": holds, "clear": clear})
    return out


# --------------------------------------------------------------------------- TI2I
def unchanged_region(before, after) -> np.ndarray:
    """bool (N, H, W): pixels where the original and the counterfactual pictures agree."""
    a, b = np.asarray(before), np.asarray(after)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"before and after must be images (N, H, W, 3) of one shape, got "
                         f"{a.shape} and {b.shape}")
    return (a == b).all(-1)


def region_pa(pred, target, region) -> float:
    """PA over the pixels of ``region`` only (NaN when it is empty)."""
    pred, target, region = np.asarray(pred), np.asarray(target), np.asarray(region, bool)
    if not (pred.shape == target.shape == region.shape):
        raise ValueError(f"pred {pred.shape}, target {target.shape} and region {region.shape} "
                         f"must have one shape")
    return _mean_over(pred == target, region)


def _mean_over(values: np.ndarray, sel: np.ndarray) -> float:
    """The mean of ``values`` where ``sel`` holds; NaN where it holds nowhere."""
    return float(values[sel].mean()) if sel.any() else NAN


def edit_accuracy(classifier, samples, edits) -> float:
    """How often the judge reads the edited object's changed attribute as the edit's new
    value: the object's own head in one-object scenes, the slot head of its position cell in
    two-object scenes (the other object's attribute does not count)."""
    pred = classifier.predict(np.asarray(samples))
    if len(edits) != len(samples):
        raise ValueError(f"{len(samples)} samples but {len(edits)} edits")
    ok = []
    for i, e in enumerate(edits):
        values = world.ATTRIBUTE_VALUES[e["attribute"]]
        if e["objects"] == 1:
            ok.append(pred[e["attribute"]][i] == values.index(e["value"]))
        else:
            cell = world.POSITIONS.index(e["position"])
            ok.append(pred[f"slot_{e['attribute']}"][i, cell] == values.index(e["value"]) + 1)
    return float(np.mean(ok))


def ti2i_scores(classifier, segmenter, samples, captions, before, after, segs,
                changed: str = "colour", edits=None) -> dict:
    """TI2I ``samples`` for the edited ``captions`` against the counterfactual ground truth
    (``before`` / ``after`` pictures, class maps ``segs``): ``changed`` (with ``edits``, by
    :func:`edit_accuracy`; without, that attribute of every object), ``preserved`` (every other
    attribute named), ``all`` (Acc), and ``PA unchanged`` (the segmenter's PA on the pixels the
    edit does not touch)."""
    agree = metrics.attribute_agreement(classifier, samples, captions)
    if changed not in agree:
        raise ValueError(f"attribute {changed!r} is not named by the captions; read: "
                         f"{sorted(k for k in agree if k not in ('all', 'n'))}")
    others = [a for a in ("background", "shape", "size", "position", "colour")
              if a in agree and a != changed]
    region = unchanged_region(before, after)
    pred = segmenter.predict(np.asarray(samples))
    hit = agree[changed] if edits is None else edit_accuracy(classifier, samples, edits)
    return {"changed": hit, "preserved": float(np.mean([agree[a] for a in others])),
            **{f"preserved {a}": agree[a] for a in others}, "all": agree["all"],
            "PA unchanged": region_pa(pred, np.asarray(segs), region),
            "unchanged share": float(region.mean())}


# --------------------------------------------------------------------------- I2I
def determined(scenes, rows: int) -> np.ndarray:
    """bool (N,): is every object of the scene at least partly inside the given top ``rows``
    pixel rows (so the prime shows it)? Where not, the completion has to invent it."""
    return np.array([all(o.cy - world._radius(o.size, sc.canvas) < rows for o in sc.objects)
                     for sc in scenes], bool)


def diversity(pictures_a, pictures_b) -> float:
    """Mean absolute pixel difference in [0, 1] of two completions of the same primes."""
    a, b = np.asarray(pictures_a, np.float32), np.asarray(pictures_b, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"two sets of completions must have one shape, got {a.shape}, {b.shape}")
    return float(np.abs(a - b).mean() / 255.0)


def i2i_scores(classifier, samples, captions, is_determined, second=None) -> dict:
    """I2I completions ``samples`` of scenes with ``captions``: Acc (every attribute of the
    ground-truth caption read in the completion) where the prime shows every object and
    where it does not, and with ``second`` (a second completion of the same primes) the
    diversity of the two in the bottom half: over all samples, and split the same way."""
    samples = np.asarray(samples)
    ok = metrics.attribute_agreement(classifier, samples, captions, per_sample=True)["per_sample"]
    d = np.asarray(is_determined, bool)
    out = {"Acc": float(ok.mean()), "Acc (determined)": _mean_over(ok, d),
           "Acc (not determined)": _mean_over(ok, ~d), "determined share": float(d.mean())}
    if second is not None:
        h = samples.shape[1] // 2
        a, b = samples[:, h:], np.asarray(second)[:, h:]
        out["diversity (bottom half)"] = diversity(a, b)
        for name, sel in (("determined", d), ("not determined", ~d)):
            out[f"diversity ({name})"] = diversity(a[sel], b[sel]) if sel.any() else NAN
    return out


# --------------------------------------------------------------------------- S2I
def segmentation_pa(segmenter, samples, sketches) -> float:
    """S2I: PA of the world segmenter's maps of generated images against the input sketch."""
    return pixel_accuracy(segmenter.predict(np.asarray(samples)), np.asarray(sketches))

