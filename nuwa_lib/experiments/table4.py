"""Table 4 (VQ-VAE vs VQ-GAN vs VQ-GAN-Seg, Sec. 4.5): the rows, the paper's claims about them,
and the profile's targets.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from ..tokenizers import vqgan
from ..tokenizers.vq_eval import blur_reference, evaluate_images, evaluate_sketches
from ..tokenizers.vqgan import KIND_NAMES, VQModel, configs_from_profile, rate_label
from . import paper
from .claims import NAN, decide, mean_std, pm


def _paper(p, before, after) -> dict:
    """The paper's row ``p`` as "paper: ..." cells: ``before``, its rate, then ``after``."""
    return {**{f"paper: {k}": p[k] for k in before},
            "paper: R → D (rate)": rate_label(p["R"], p["D"], p["F"]),
            **{f"paper: {k}": p[k] for k in after}}


def table4_names(cfg) -> dict:
    """{row: [run names]} of Table 4: the image tokenizers of ``vqgan.paper_rows`` and the
    chosen sketch tokenizer, each with its seed replicas (``seeds:`` of its profile entry)."""
    section = cfg.get("vqgan") or {}
    rows = set(section.get("paper_rows") or {}) | {vqgan.chosen(cfg)[1]}
    return {n: names for n, names in vqgan.replicas(cfg).items() if n in rows}


MEASURED = ("SSIM", "FID", "codes used", "PA", "FWIoU")


def _mean_std(runs: Sequence[Mapping], row: Mapping) -> dict:
    """``row`` with each measured column the mean over ``runs`` and a ``<column> std`` beside
    it (NaN for one run), and the number of ``seeds``."""
    cols = [c for c in MEASURED if c in runs[0]]
    agg = mean_std(runs, cols)
    return {**row, "seeds": len(runs), **{c: agg[c][0] for c in cols},
            **{f"{c} std": agg[c][1] for c in cols if c in ("SSIM", "FID", "PA", "FWIoU")}}


def table4(cfg, tokenizers: Mapping[str, VQModel], classifier, n: int, blur_radius=1.0) -> tuple:
    """Table 4 on the world: one row per image tokenizer (SSIM, FID) and per VQ-GAN-Seg
    evaluation set (PA, FWIoU), each beside the paper's row it stands in for
    (``vqgan.paper_rows`` of the profile; the sketch rows pair with COCO-Stuff and VSPW),
    and a reference row: the originals blurred by ``blur_radius`` px. A row trained with
    several seeds is their mean, with a ``<column> std``; every run is read on the same
    held-out pictures (the profile's seed). Returns (rows, runs): ``runs`` one per tokenizer."""
    jcanvas = int((cfg.get("world") or {}).get("canvas", 32))
    seed = int(cfg.get("seed", 0))
    paper_rows = (cfg.get("vqgan") or {}).get("paper_rows") or {}
    names = table4_names(cfg)
    main = next(iter(tokenizers[r[0]].config for r in names.values()
                     if tokenizers[r[0]].config.kind != "seg"))
    ref = blur_reference(main, classifier, n, blur_radius, jcanvas)
    rows = [{"part": "images", "model": "reference",
             "name": f"originals, Gaussian blur r={blur_radius:g}",
             "R → D (rate)": f"{main.canvas}² (no tokens)", "tokens": 0, "data": "MSCOCO role",
             "seeds": 0, **ref, "SSIM std": 0.0, "FID std": 0.0}]
    runs = []
    for name, replicas in names.items():
        c = tokenizers[name].config
        base = {"part": "sketches" if c.kind == "seg" else "images", "model": KIND_NAMES[c.kind],
                "name": name, "R → D (rate)": c.label, "tokens": c.grid ** 2}
        if c.kind == "seg":
            per = [evaluate_sketches(tokenizers[r], n) for r in replicas]
            runs += [{"name": r, "seed": tokenizers[r].config.seed, "data": d["data"],
                      "PA": d["PA"], "FWIoU": d["FWIoU"], "codes used": d["codes_used"]}
                     for r, ds in zip(replicas, per) for d in ds]
            for i, p in enumerate(paper.TABLE4_SKETCHES[:len(per[0])]):
                one = [{"PA": ds[i]["PA"], "FWIoU": ds[i]["FWIoU"], "codes used": ds[i]["codes_used"]}
                       for ds in per]
                rows.append(_mean_std(one, {**base, "data": per[0][i]["data"],
                                            **_paper(p, ["data"], ["PA", "FWIoU"])}))
            continue
        one = []
        for r in replicas:
            e = evaluate_images(tokenizers[r], classifier, n, jcanvas, seed=seed)
            one.append({"SSIM": e["SSIM"], "FID": e["FID"], "codes used": e["codes_used"]})
            runs.append({"name": r, "seed": tokenizers[r].config.seed, "data": "MSCOCO role",
                         **one[-1]})
        row = {**base, "data": "MSCOCO role"}
        if name in paper_rows:
            row.update(_paper(paper.TABLE4_IMAGES[paper_rows[name]], ["model", "data"],
                              ["SSIM", "FID"]))
        rows.append(_mean_std(one, row))
    return rows, runs


def table4_claims(rows) -> list:
    """The paper's Table 4 claims checked on our rows: {claim, evidence, holds, clear}, decided
    by :func:`~nuwa_lib.experiments.claims.decide` (clear: the gap exceeds the two rows' seed
    spreads; None where a row was trained once)."""
    img = {r["name"]: r for r in rows if r["part"] == "images" and r["model"] != "reference"}
    by = {}
    for r in img.values():
        by.setdefault((r["model"], r["tokens"]), []).append(r)
    out = []

    def std(r, col):
        v = r.get(f"{col} std", NAN)
        return NAN if v is None else float(v)

    def claim(text, a, b, col, lower=True):
        """"a beats b" on ``col``."""
        ma, sa, mb, sb = float(a[col]), std(a, col), float(b[col]), std(b, col)
        holds, clear = decide(ma, sa, mb, sb, lower)
        digits = 3 if col == "SSIM" else 2
        out.append({"claim": text, "evidence": f"{col} {pm(ma, sa, digits)} vs {pm(mb, sb, digits)}",
                    "holds": holds, "clear": clear})

    def rate(r):
        return r["R → D (rate)"].split("(")[1]

    for tokens in sorted(t for m, t in by if m == "VQ-VAE"):
        v = by[("VQ-VAE", tokens)][0]
        for g in by.get(("VQ-GAN", tokens), []):
            if g["R → D (rate)"] == v["R → D (rate)"]:
                what = f"VQ-GAN beats VQ-VAE at the same tokens ({v['R → D (rate)']})"
                claim(f"{what}: FID", g, v, "FID")
                claim(f"{what}: SSIM", g, v, "SSIM", lower=False)
    gans = sorted((r for r in img.values() if r["model"] == "VQ-GAN"), key=lambda r: r["tokens"])
    same_canvas = {}
    for r in gans:
        same_canvas.setdefault(r["R → D (rate)"].split("²")[0], []).append(r)
    for canvas, rs in same_canvas.items():
        for a, b in zip(rs, rs[1:]):
            claim(f"more tokens for the same {canvas}² pictures give lower FID ({a['tokens']} → "
                  f"{b['tokens']} tokens)", b, a, "FID")
    pairs_rate = [(a, b) for a in gans for b in gans
                  if a["tokens"] < b["tokens"] and rate(a) == rate(b)]
    for a, b in pairs_rate:
        claim(f"at the same rate, more tokens give lower FID ({a['R → D (rate)']} vs "
              f"{b['R → D (rate)']})", b, a, "FID")
    pairs_tokens = [(a, b) for a in gans for b in gans
                    if a["tokens"] == b["tokens"] and rate(a) < rate(b)]
    if pairs_rate and pairs_tokens:
        d_tokens = max(abs(a["FID"] - b["FID"]) for a, b in pairs_rate)
        d_rate = max(abs(a["FID"] - b["FID"]) for a, b in pairs_tokens)
        out.append({"claim": "the number of tokens matters more than the rate (FID gap at the "
                             "same rate with more tokens > FID gap at the same tokens with "
                             "another rate)",
                    "evidence": f"{d_tokens:.2f} vs {d_rate:.2f}", "holds": d_tokens > d_rate,
                    "clear": None})
    for r in rows:
        if r["part"] == "sketches":
            out.append({"claim": f"VQ-GAN-Seg reconstructs {r['data']} sketches well (paper: "
                                 f"PA ≥ 95%)",
                        "evidence": f"PA {r['PA']:.2f}%, FWIoU {r['FWIoU']:.2f}%",
                        "holds": bool(r["PA"] >= 95), "clear": None})
    return out


def world_reading(cfg, name: str, vq: VQModel, classifier, video_net, n: int) -> dict:
    """What the world's judges still read after the tokenizer ``name``: on ``n`` held-out
    MSCOCO-role pictures, the classifier's Acc (all named), shape and colours before and after
    (:func:`~nuwa_lib.tokenizers.vq_eval.read_back`) and SSIM; SSIM of ``n`` held-out BAIR-role
    video frames; on the TV2V counterfactual videos of notebook 12 (``tv2v.eval`` of them), the
    video net's "preserved shape" before and after."""
    from ..evaluation import metrics
    from ..tokenizers import vq_eval
    from ..training import task_data
    from . import video_tasks

    ws = task_data.world_settings(cfg)
    pics = vq_eval.heldout_pictures(vq.config, n, seed=ws["seed"])
    caps = task_data.captions_of("mscoco", "test", range(n), **ws)
    rec = vqgan.reconstruct(vq, pics)
    frames = vq_eval.heldout_pictures(vq.config, n, video_role=True, seed=ws["seed"])
    row = {"name": name, "pictures": n,
           **vq_eval.read_back(classifier, pics, rec, caps, ws["canvas"]),
           "SSIM": metrics.ssim(pics, rec),
           "video frames SSIM": metrics.ssim(frames, vqgan.reconstruct(vq, frames))}
    gt = video_tasks.tv2v_ground_truth("msrvtt", "test", range(int(cfg["tv2v"]["eval"])), **ws)
    before, after = (video_tasks.tv2v_scores(video_net, v, gt["judge_captions"],
                                             gt["original_captions"])["preserved shape"]
                     for v in (gt["after"], vqgan.reconstruct(vq, gt["after"])))
    return {**row, "TV2V videos": len(gt["after"]), "TV2V preserved shape before": before / 100,
            "TV2V preserved shape after": after / 100,
            "TV2V preserved shape after / before": after / before if before else None}


# (bar's name in vqgan.eval.targets, what it bounds, the reading's column)
READING_TARGETS = (("acc", "Acc (all named) after / before", "Acc after / before"),
                   ("shape", "shape after / before", "shape after / before"),
                   ("colour", "colour after", "colour after"),
                   ("tv2v_shape", "TV2V preserved shape after / before",
                    "TV2V preserved shape after / before"))


def check_targets(cfg, runs, reading: Mapping | None = None, earlier: Mapping | None = None
                  ) -> list:
    """The profile's bars (``vqgan.eval.targets``) on the chosen tokenizers
    (:func:`~nuwa_lib.tokenizers.vqgan.chosen`, the shipped run of the profile's seed): SSIM and
    the share of codes in use of the image tokenizer, what the judges still read through it
    (``reading``: :func:`world_reading`), PA and code usage of the sketch tokenizer on each
    set. ``earlier`` adds "keeps or improves" rows whose bar is the earlier tokenizers' value:
    {"reading": their :func:`world_reading` (video frames SSIM), "sketches": the earlier
    sketch tokenizer's :func:`~nuwa_lib.tokenizers.vq_eval.evaluate_sketches` rows}. Rows
    {target, value, bar, met}."""
    section = cfg.get("vqgan") or {}
    bars = dict((section.get("eval") or {}).get("targets") or {})
    main, sketch = vqgan.chosen(cfg)
    configs = configs_from_profile(cfg)

    def share(r):           # codes in use as a share of the tokenizer's codebook
        return r["codes used"] / configs[r["name"]].codebook

    found = []              # (target, value, bar's name)
    for r in runs:
        if r["name"] == main:
            found += [(f"{main}: SSIM", r["SSIM"], "ssim"),
                      (f"{main}: codes used (share)", share(r), "usage")]
        elif r["name"] == sketch:
            found += [(f"{sketch}: PA % ({r['data']})", r["PA"], "pa"),
                      (f"{sketch}: codes used (share, {r['data']})", share(r), "usage")]
    if reading is not None:
        found[2:2] = [(f"{reading['name']}: {what}", reading[col], bar)
                      for bar, what, col in READING_TARGETS]
    if earlier and reading is not None and earlier.get("reading"):
        old = earlier["reading"]
        bars["frames"] = old["video frames SSIM"]
        found.append((f"{main}: video frames SSIM (bar: {old['name']}'s)",
                      reading["video frames SSIM"], "frames"))
    for i, old in enumerate((earlier or {}).get("sketches") or []):
        new = next(r for r in runs if r["name"] == sketch and r["data"] == old["data"])
        bars[f"sketch{i}"] = old["PA"]
        found.append((f"{sketch}: PA % ({old['data']}; bar: the earlier sketch tokenizer's)",
                      new["PA"], f"sketch{i}"))
    return [{"target": t, "value": v, "bar": "" if bars.get(b) is None else bars[b],
             "met": "" if bars.get(b) is None or v is None else bool(v >= bars[b])}
            for t, v, b in found]
