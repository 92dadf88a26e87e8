"""The image tasks of Sec. 4.2 on the world: T2I (Table 1, Fig. 4), S2I (Fig. 6), zero-shot
I2I completion (Fig. 7) and TI2I manipulation (Fig. 8).

What notebooks 05-08 share, so no logic lives only in a notebook:

* :func:`seeded` -- a profile with another seed (a Table 1 row's repeat: the model's
  initialisation, the training draws and the world's training samples all follow it; the
  evaluation data are always drawn with the profile's own seed);
* :func:`real_pictures` / :func:`real_segs` -- the real world pictures (not through the
  VQ-GAN) and class maps of a role's split, the reference set of FID and PA;
* :func:`t2i_scores` -- Table 1's columns for one set of samples: FID-0/1/2/4/8, IS, CLIPSIM;
* :func:`mean_std` and :func:`table1` -- seeds aggregated (mean, std) and our rows beside
  the paper's (:data:`nuwa_lib.experiments.paper.TABLE1`);
* :func:`decide` and :func:`verdict` -- the rule every claim of every table follows: a
  claim *holds* when the means are ordered as claimed, and holds *clearly* when the gap
  exceeds the sum of the two rows' spreads, which needs a measured spread on both rows
  (a single run has none: its clear is None, "holds (no spread measured)");
* :func:`t2i_claims` -- the paper's two Table 1 claims decided from the numbers;
* :func:`unchanged_region` and :func:`ti2i_scores` -- TI2I against the counterfactual
  ground truth: the changed attribute, the preserved ones, PA of the unchanged region;
* :func:`i2i_scores` -- I2I completions: agreement with the ground truth where the given
  top half determines the object, diversity where it does not;
* :func:`segmentation_pa` -- S2I: the segmenter's PA of generated images against the sketch.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..data import splits, world
from ..evaluation import metrics
from ..evaluation.segmentation import pixel_accuracy
from . import paper
from .claims import decide, mean_std

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


def real_pictures(role: str, split: str, indices, *, seed=0, canvas=32, frames=8) -> np.ndarray:
    """uint8 (N, H, W, 3) images (or (N, T, H, W, 3) videos) of samples ``indices``."""
    video = splits.ROLES[role].kind == "video"
    return np.stack([getattr(splits.sample(role, split, int(i), seed, canvas, frames),
                             "video" if video else "image") for i in indices])


def real_segs(role: str, split: str, indices, *, seed=0, canvas=32, frames=8) -> np.ndarray:
    """Class maps (N, H, W) (or (N, T, H, W)) of samples ``indices``."""
    return np.stack([splits.sample(role, split, int(i), seed, canvas, frames).seg
                     for i in indices])


def counterfactual_pictures(role: str, split: str, indices, *, seed=0, canvas=32,
                            frames=8) -> dict:
    """TI2I's ground truth for samples ``indices``: {"edits": what changed, per sample
    {"attribute", "value", "position", "objects"} (see :func:`edit_accuracy`), "before": originals (N, H, W, 3),
    "after": the counterfactual pictures, "captions": the edited captions, "segs": the class
    maps (a colour edit keeps them), "edit_rows": first changed pixel row per sample}."""
    from ..data import tasks as T

    samples = [splits.sample(role, split, int(i), seed, canvas, frames) for i in indices]
    cfs = [T.counterfactual("TI2I", s, frames) for s in samples]
    edits = []
    for s, c in zip(samples, cfs):       # the edit tasks.counterfactual makes: the last object's colour
        obj = s.scene.objects[-1]
        new = world.COLOURS[(world.COLOURS.index(obj.colour) + 1) % len(world.COLOURS)]
        changed = world.change_attribute(s.scene, "colour", new, obj=len(s.scene.objects) - 1)
        if world.caption(changed) != c["caption"]:
            raise AssertionError("counterfactual_pictures disagrees with tasks.counterfactual")
        edits.append({"attribute": "colour", "value": new, "position": obj.position,
                      "objects": len(s.scene.objects)})
    return {"edits": edits, "before": np.stack([s.image for s in samples]),
            "after": np.stack([c["picture"] for c in cfs]),
            "captions": [c["caption"] for c in cfs],
            "segs": np.stack([s.seg for s in samples]),
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
    out = {f"FID-{k}": v for k, v in metrics.fid_k(samples, real, classifier, radii).items()}
    out["IS"] = metrics.inception_score(samples, classifier, splits=isc_splits)[0]
    out["CLIPSIM"] = metrics.clipsim(clip, samples, captions)
    out["Acc"] = metrics.accuracy(classifier, samples, captions)
    return out




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
    rows = []
    for p in paper.TABLE1:
        key = p.get("ours")
        row = {"model": p["model"], "setting": p["setting"], "row": key or "",
               "seeds": len(ours.get(key, ())) if key else 0}
        agg = mean_std(ours[key], columns) if key in ours else {}
        for c in columns:
            m, s = agg.get(c, (float("nan"), float("nan")))
            row[c], row[f"{c} std"] = m, s
            row[f"paper {c}"] = float("nan") if p.get(c) is None else p[c]
        rows.append(row)
    if ceiling is not None:
        row = {"model": "real, through the VQ-GAN", "setting": "ceiling of the tokens",
               "row": CEILING_ROW, "seeds": 0}
        for c in columns:
            row[c], row[f"{c} std"], row[f"paper {c}"] = float(ceiling[c]), float("nan"), float("nan")
        rows.append(row)
    tab = pd.DataFrame(rows)
    if ceiling is not None and "Acc" in columns:
        top = float(ceiling["Acc"])
        tab["Acc / ceiling"] = tab["Acc"] / top if top > 0 else float("nan")
    return tab


def _get(table, key, column, what="Table 1"):
    """(our mean, our std) of ``column`` in the row ``key`` of a side-by-side table."""
    r = table[table["row"] == key]
    if r.empty:
        raise ValueError(f"{what} has no row {key!r}")
    return float(r[column].iloc[0]), float(r[f"{column} std"].iloc[0])






def _all_clear(flags) -> bool | None:
    """Several gaps at once: None when any is unmeasured, else whether all are clear."""
    flags = list(flags)
    return None if any(f is None for f in flags) else all(flags)


def t2i_claims(table, fid: str = "FID-0") -> list:
    """The paper's Table 1 claims decided from our numbers (lower FID is better, higher
    CLIPSIM is better): rows {"claim", "paper", "ours", "holds", "clear"}, each decided by
    :func:`decide` (``clear`` None where a compared row has a single run)."""
    def cmp(a, b, column, lower):
        (ma, sa), (mb, sb) = _get(table, a, column), _get(table, b, column)
        return (*decide(ma, sa, mb, sb, lower), f"{ma:.3f} vs {mb:.3f}")

    def paper_value(key, column):
        return next(p[column] for p in paper.TABLE1 if p.get("ours") == key)

    out = []
    for column, lower in ((fid, True), ("CLIPSIM", False)):
        word = "lower" if lower else "higher"
        a = [cmp("scratch_nearby", other, column, lower)
             for other in ("scratch_axial", "scratch_full")]
        pv = [paper_value(k, column) for k in ("scratch_nearby", "scratch_axial", "scratch_full")]
        out.append({"claim": f"nearby beats axial and full ({column}, {word} is better)",
                    "paper": f"{pv[0]} vs {pv[1]} (axial), {pv[2]} (full)",
                    "ours": f"{a[0][2]} (axial), {a[1][2].split(' vs ')[1]} (full)",
                    "holds": bool(a[0][0] and a[1][0]), "clear": _all_clear([a[0][1], a[1][1]])})
        b = cmp("finetune_multitask", "finetune_cc", column, lower)
        out.append({"claim": f"multi-task pretraining helps T2I ({column}, {word} is better)",
                    "paper": f"{paper_value('finetune_multitask', column)} vs "
                             f"{paper_value('finetune_cc', column)} (CC only)",
                    "ours": f"{b[2]} (CC only)", "holds": b[0], "clear": b[1]})
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
    if not region.any():
        return float("nan")
    return float((pred == target)[region].mean())


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
    """TI2I against the counterfactual ground truth: ``samples`` edited by the model for the
    edited ``captions``; ``before`` / ``after`` the original and counterfactual pictures,
    ``segs`` the scenes' class maps (a colour edit keeps them).

    * ``changed``: with ``edits`` (:func:`counterfactual_pictures`), how often the judge reads
      the edited object's attribute as the new value (:func:`edit_accuracy`); without, how
      often it reads that attribute of every object as the caption names it;
    * ``preserved``: the same for every other attribute the caption names (mean over them);
    * ``all``: every named attribute right (Acc);
    * ``PA unchanged``: the segmenter's PA of the samples against the class maps, on the
      pixels the edit does not touch (:func:`unchanged_region`)."""
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
    a = np.asarray(pictures_a, np.float32)
    b = np.asarray(pictures_b, np.float32)
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
    out = {"Acc": float(ok.mean()),
           "Acc (determined)": float(ok[d].mean()) if d.any() else float("nan"),
           "Acc (not determined)": float(ok[~d].mean()) if (~d).any() else float("nan"),
           "determined share": float(d.mean())}
    if second is not None:
        h = samples.shape[1] // 2
        a, b = samples[:, h:], np.asarray(second)[:, h:]
        out["diversity (bottom half)"] = diversity(a, b)
        for name, sel in (("determined", d), ("not determined", ~d)):
            out[f"diversity ({name})"] = diversity(a[sel], b[sel]) if sel.any() else float("nan")
    return out


# --------------------------------------------------------------------------- S2I
def segmentation_pa(segmenter, samples, sketches) -> float:
    """S2I: PA of the world segmenter's maps of generated images against the input sketch."""
    return pixel_accuracy(segmenter.predict(np.asarray(samples)), np.asarray(sketches))

