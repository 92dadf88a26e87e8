"""The video tasks of Sec. 4.2-4.3 on the world: T2V (Table 2, Fig. 5), V2V (Table 3),
S2V (Table 6), zero-shot TV2V (Fig. 12) and the multi-task ablation (Table 5) -- what the video
notebooks (09 on) share. Every claim is decided by :mod:`.claims`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from ..data import tasks as T, world
from ..evaluation import metrics
from ..evaluation.judge_nets import VIDEO_PRESENCE
from . import image_tasks, paper
from .claims import decide, ours_of, side_row

T2V_COLUMNS = paper.TABLE2_COLUMNS
LOWER_IS_BETTER = {"Acc": False, "FID-img": True, "FID-vid": True, "CLIPSIM": False,
                   "FVD": True, "Detected PA": False}


def _videos(x, name) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"{name} must be videos (N, T, H, W, 3), got shape {x.shape}")
    return x


def t2v_scores(samples, real, captions, video_net, classifier, clip) -> dict:
    """Table 2's columns for generated videos ``samples`` (N, T, H, W, 3) against ``real``
    videos: {"Acc" (percent, as the paper prints it), "FID-img", "FID-vid", "CLIPSIM"}, all
    with world judges."""
    samples, real = _videos(samples, "samples"), _videos(real, "real")
    if len(captions) != len(samples):
        raise ValueError(f"{len(samples)} samples but {len(captions)} captions")
    return {"Acc": 100.0 * metrics.accuracy(video_net, samples, captions),
            "FID-img": metrics.fid_img(samples, real, classifier),
            "FID-vid": metrics.fid_vid(samples, real, video_net),
            "CLIPSIM": metrics.clipsim(clip, samples, captions)}


def motion_accuracy(video_net, samples, captions) -> float:
    """How often the video net reads the motion the caption names (one-object captions by
    the motion head, two-object ones by the presence heads), in percent."""
    agree = metrics.attribute_agreement(video_net, _videos(samples, "samples"), captions)
    if "motion" not in agree:
        raise ValueError("the captions name no motion")
    return 100.0 * agree["motion"]


def heldout_share(role: str, split: str, indices, *, seed=0, canvas=32, frames=8) -> float:
    """Fraction of the samples ``indices`` whose scene has a held-out attribute x motion
    combination."""
    return float(np.mean([world.is_heldout(s.scene) for s in image_tasks.world_samples(
        role, split, indices, seed=seed, canvas=canvas, frames=frames)]))


def side_by_side(paper_rows: Sequence[Mapping[str, Any]], ours: Mapping[str, Sequence[Mapping]],
                 columns: Sequence[str], extra_rows: Sequence[str] = ()):
    """A paper table with ours beside it: the paper's rows in order; a row whose ``"ours"``
    key names an entry of ``ours`` gets our mean (``<c>``), std (``<c> std``) and run count
    (``seeds``) beside ``paper <c>``. ``extra_rows`` (keys of ``ours`` the paper has no row
    for, e.g. a reference; a name, or a dict with "row" and e.g. "model", "cond") are appended
    with NaN paper numbers."""
    import pandas as pd

    extra = [{"model": e, "row": e} if isinstance(e, str) else {"model": e["row"], **e}
             for e in extra_rows]
    known = {p.get("ours") for p in paper_rows} | {e["row"] for e in extra}
    unknown = set(ours) - known
    if unknown:
        raise ValueError(f"unknown row(s) {sorted(unknown)}; rows: "
                         f"{', '.join(sorted(k for k in known if k))}")
    spread = [c for c in columns if any(f"{c} std" in q for q in paper_rows)]   # Table 3's ±
    items = [(p, p.get("ours")) for p in paper_rows]
    items += [({k: v for k, v in e.items() if k not in columns}, e["row"]) for e in extra]
    rows = []
    for p, key in items:
        described = {k: v for k, v in p.items()               # e.g. cond, encoder, decoder
                     if k not in ("model", "ours", "row") and k not in columns
                     and not k.endswith(" std")}
        rows.append(side_row(p, key, ours, columns, described, spread))
    return pd.DataFrame(rows)


def compare(table, a: str, b: str, column: str, lower: bool | None = None) -> dict:
    """Does row ``a`` beat row ``b`` on ``column``? {"holds", "clear", "ours", "gap"}
    (``clear`` None where either row's std is NaN: a single run)."""
    lower = LOWER_IS_BETTER[column] if lower is None else lower
    (ma, sa), (mb, sb) = ours_of(table, a, column), ours_of(table, b, column)
    holds, clear = decide(ma, sa, mb, sb, lower)
    fmt = (lambda v, s: f"{v:.3f}" + ("" if np.isnan(s) else f" ± {s:.3f}"))    # NaN: "nan"
    return {"holds": holds, "clear": clear, "gap": float((mb - ma) if lower else (ma - mb)),
            "ours": f"{fmt(ma, sa)} vs {fmt(mb, sb)}"}


def claim(table, text: str, a: str, b: str, column: str, lower: bool | None = None) -> dict:
    """A claim row {"claim", "column", "paper", "ours", "holds", "clear"}: row ``a`` beats
    row ``b`` on ``column`` (the paper's numbers from the table's ``paper <column>``)."""
    lower = LOWER_IS_BETTER[column] if lower is None else lower
    c = compare(table, a, b, column, lower)
    pa, pb = (table.loc[table["row"] == k, f"paper {column}"].iloc[0] for k in (a, b))
    return {"claim": f"{text} ({column}, {'lower' if lower else 'higher'} is better)",
            "column": column, "paper": f"{pa:g} vs {pb:g}", "ours": c["ours"],
            "holds": c["holds"], "clear": c["clear"]}


def fvd_of(samples, real, video_net) -> float:
    """FVD (world video net logits) of generated videos against real ones (Table 3)."""
    return metrics.fvd(_videos(samples, "samples"), _videos(real, "real"), video_net)


# --------------------------------------------------------------------------- S2V (Table 6)
S2V_ROWS = ("full-full", "nearby-full", "full-nearby", "axial-axial", "nearby-nearby")


def attention_pair(row: str) -> tuple:
    """"nearby-full" -> ("nearby", "full"): the encoder's and the decoder's attention."""
    if row not in S2V_ROWS:
        raise ValueError(f"unknown Table 6 row {row!r}; rows: {', '.join(S2V_ROWS)}")
    return tuple(row.split("-"))


def s2v_claims(table) -> list:
    """Table 6's claims decided from our numbers, on FID-vid and on Detected PA:
    nearby-nearby beats every other row; replacing either side by full attention hurts
    (nearby-nearby beats nearby-full and full-nearby); nearby beats axial."""
    return [claim(table, f"nearby-nearby beats {other} on S2V", "nearby-nearby", other, column)
            for column in ("FID-vid", "Detected PA") for other in S2V_ROWS[:-1]]


# --------------------------------------------------------------------------- TV2V (Fig. 12)
TV2V_OTHERS = ("background", "shape", "colour", "size", "position")


def new_motion_scene(scene, motion):
    """The scene whose first object moves ``motion`` from the start: what the video net
    (trained on constant motions) should read in a TV2V ground truth that changes the motion
    from frame 1 on (frame 0 is the same in both)."""
    o = scene.objects[0]
    return replace(scene, objects=(replace(o, motion=motion, motion_change=None),)
                   + tuple(scene.objects[1:]))


def tv2v_ground_truth(role: str, split: str, indices, *, seed=0, canvas=32, frames=8) -> dict:
    """TV2V's ground truth for samples ``indices`` (the edit of
    :func:`nuwa_lib.data.tasks.counterfactual`: the first object moves "up", or "down" if it
    already moves up, from frame 1 on):
    {"captions": the edited captions the encoder reads ("... then moves up ..."),
    "judge_captions": the same scenes with the new motion from the start (what the video net
    reads), "original_captions", "motions": (old, new) per sample, "before": the original
    videos, "after": the counterfactual videos}."""
    out = {k: [] for k in ("captions", "judge_captions", "original_captions", "motions",
                           "before", "after")}
    for s in image_tasks.world_samples(role, split, indices, seed=seed, canvas=canvas,
                                       frames=frames):
        cf = T.counterfactual("TV2V", s, frames)
        old = s.scene.objects[0].motion
        new = "up" if old != "up" else "down"
        if world.caption(world.change_motion(s.scene, new, after_frame=1), True) != cf["caption"]:
            raise AssertionError("tv2v_ground_truth disagrees with tasks.counterfactual")
        out["captions"].append(cf["caption"])
        out["judge_captions"].append(world.caption(new_motion_scene(s.scene, new), True))
        out["original_captions"].append(world.caption(s.scene, True))
        out["motions"].append((old, new))
        out["before"].append(s.video)
        out["after"].append(cf["picture"])
    out["before"], out["after"] = np.stack(out["before"]), np.stack(out["after"])
    return out


def tv2v_scores(video_net, samples, judge_captions, original_captions) -> dict:
    """TV2V against the counterfactual ground truth (see :func:`tv2v_ground_truth`), in
    percent: ``motion`` (the video net reads the edited object's new motion: its motion head
    in one-object videos, the presence of that motion in two-object ones), ``old motion`` (it
    reads the original caption's motion; one-object captions only), ``preserved`` (the other
    attributes named, mean and each) and ``all`` (every named attribute)."""
    samples = _videos(samples, "samples")
    if not (len(samples) == len(judge_captions) == len(original_captions)):
        raise ValueError(f"{len(samples)} samples, {len(judge_captions)} edited and "
                         f"{len(original_captions)} original captions")
    new = metrics.attribute_agreement(video_net, samples, judge_captions)
    others = [a for a in TV2V_OTHERS if a in new]
    read = video_net.predict(samples)
    bit = {k: i for i, k in enumerate(VIDEO_PRESENCE)}

    def shows(i, objs, motion):         # the edited (first) object's motion, as the judge reads it
        if len(objs) == 1:
            return read["motion"][i] == world.MOTIONS.index(motion)
        return read["presence"][i, bit[("motion", motion)]] > 0.5

    edited = [world.parse_caption(c)["objects"] for c in judge_captions]
    parsed = [world.parse_caption(c)["objects"] for c in original_captions]
    hit = [shows(i, objs, objs[0]["motion"]) for i, objs in enumerate(edited)]
    single = [i for i, objs in enumerate(parsed) if len(objs) == 1]
    old = (100.0 * float(np.mean([shows(i, parsed[i], parsed[i][0]["motion"]) for i in single]))
           if single else float("nan"))
    return {"motion": 100.0 * float(np.mean(hit)), "old motion": old,
            "preserved": 100.0 * float(np.mean([new[a] for a in others])),
            **{f"preserved {a}": 100.0 * new[a] for a in others}, "all": 100.0 * new["all"]}


def motion_edits(scene, frames: int = 8, after_frame: int = 1) -> list:
    """Fig. 12's texts for one source scene: for every motion other than the first object's,
    {"motion", "caption", "video"}: the caption and the counterfactual video in which the
    object moves that way from ``after_frame`` on."""
    out = []
    for m in world.MOTIONS:
        if m == scene.objects[0].motion:
            continue
        changed = world.change_motion(scene, m, after_frame=after_frame)
        video, _ = world.render_video(changed, frames=frames)
        out.append({"motion": m, "caption": world.caption(changed, video=True), "video": video})
    return out


def manipulate(model, tokenizers, video, captions, *, frames: int = 1, temperature=1.0,
               top_k=None, seed: int = 0) -> np.ndarray:
    """TV2V with free texts: the first ``frames`` frames of one source ``video`` (T, H, W, 3)
    prime the decoder, each caption of ``captions`` goes to the encoder; returns uint8
    (len(captions), T, H, W, 3)."""
    import torch

    from ..generation import sampling
    from ..model.config import Condition
    from ..tokenizers import vqgan
    from ..training.task_data import trim_text

    video = _videos(np.asarray(video)[None], "video")
    given = vqgan.encode(tokenizers.visual, video).expand(len(captions), -1, -1, -1)
    ids, keep = tokenizers.text.encode(list(captions))
    cond = Condition.from_text(*trim_text(ids.long(), keep))
    mask = T.prime_mask("TV2V", tuple(given.shape[1:]), frames=frames)
    gen = torch.Generator().manual_seed(int(seed))
    tokens = sampling.sample(model, cond, tuple(given.shape[1:]), temperature=temperature,
                             top_k=top_k, prime=given, prime_mask=mask, generator=gen)
    return vqgan.decode(tokenizers.visual, tokens)


# --------------------------------------------------------------------------- Table 5
TABLE5_ROWS = ("T2V", "T2V+T2I", "T2V+V2V", "T2V+T2I+V2V")


def pretraining_tasks(row: str) -> tuple:
    """"T2V+T2I" -> ("T2V", "T2I"): the tasks a Table 5 row pretrains on."""
    if row not in TABLE5_ROWS:
        raise ValueError(f"unknown Table 5 row {row!r}; rows: {', '.join(TABLE5_ROWS)}")
    return tuple(row.split("+"))


def t5_claims(table) -> list:
    """Table 5's claims decided from our numbers (Sec. 4.3): T2I helps CLIPSIM (T2V+T2I beats
    T2V), V2V helps the visual quality (T2V+V2V beats T2V on FID-vid), and all three tasks
    beat every other row on FID-vid and on CLIPSIM."""
    out = [claim(table, "adding T2I to T2V pretraining helps T2V", "T2V+T2I", "T2V", "CLIPSIM"),
           claim(table, "adding V2V to T2V pretraining helps T2V", "T2V+V2V", "T2V", "FID-vid")]
    return out + [claim(table, f"pretraining on all three tasks beats {other}", "T2V+T2I+V2V",
                        other, column)
                  for column in ("FID-vid", "CLIPSIM") for other in TABLE5_ROWS[:-1]]
