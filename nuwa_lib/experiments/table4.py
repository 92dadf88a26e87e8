"""Table 4 (VQ-VAE vs VQ-GAN vs VQ-GAN-Seg, Sec. 4.5): the rows, the paper's claims about them,
and the profile's targets.
"""
from __future__ import annotations

from typing import Mapping

from ..tokenizers.vq_eval import blur_reference, evaluate_images, evaluate_sketches
from ..tokenizers.vqgan import KIND_NAMES, VQModel, configs_from_profile, rate_label
from . import paper


def _paper(p, before, after) -> dict:
    """The paper's row ``p`` as "paper: ..." cells: ``before``, its rate, then ``after``."""
    return {**{f"paper: {k}": p[k] for k in before},
            "paper: R → D (rate)": rate_label(p["R"], p["D"], p["F"]),
            **{f"paper: {k}": p[k] for k in after}}


def table4(cfg, tokenizers: Mapping[str, VQModel], classifier, n: int, blur_radius=1.0) -> list:
    """Table 4 on the world: one row per image tokenizer (SSIM, FID) and per VQ-GAN-Seg
    evaluation set (PA, FWIoU), each beside the paper's row it stands in for
    (``vqgan.paper_rows`` of the profile; the sketch rows pair with COCO-Stuff and VSPW),
    and a reference row: the originals blurred by ``blur_radius`` px."""
    jcanvas = int((cfg.get("world") or {}).get("canvas", 32))
    paper_rows = (cfg.get("vqgan") or {}).get("paper_rows") or {}
    main = next(iter(vq.config for vq in tokenizers.values() if vq.config.kind != "seg"))
    ref = blur_reference(main, classifier, n, blur_radius, jcanvas)
    rows = [{"part": "images", "model": "reference",
             "name": f"originals, Gaussian blur r={blur_radius:g}",
             "R → D (rate)": f"{main.canvas}² (no tokens)", "tokens": 0, "data": "MSCOCO role",
             **ref}]
    for name, vq in tokenizers.items():
        c = vq.config
        base = {"part": "sketches" if c.kind == "seg" else "images", "model": KIND_NAMES[c.kind],
                "name": name, "R → D (rate)": c.label, "tokens": c.grid ** 2}
        if c.kind == "seg":
            rows += [{**base, "data": r["data"], "PA": r["PA"], "FWIoU": r["FWIoU"],
                      "codes used": r["codes_used"],
                      **_paper(paper.TABLE4_SKETCHES[i], ["data"], ["PA", "FWIoU"])}
                     for i, r in enumerate(evaluate_sketches(vq, n))]
            continue
        r = evaluate_images(vq, classifier, n, jcanvas)
        row = {**base, "data": "MSCOCO role", "SSIM": r["SSIM"], "FID": r["FID"],
               "codes used": r["codes_used"]}
        if name in paper_rows:
            row.update(_paper(paper.TABLE4_IMAGES[paper_rows[name]], ["model", "data"],
                              ["SSIM", "FID"]))
        rows.append(row)
    return rows


def table4_claims(rows) -> list:
    """The paper's Table 4 claims checked on our rows: {claim, evidence, holds}."""
    img = {r["name"]: r for r in rows if r["part"] == "images" and r["model"] != "reference"}
    by = {}
    for r in img.values():
        by.setdefault((r["model"], r["tokens"]), []).append(r)
    out = []

    def claim(text, evidence, holds):
        out.append({"claim": text, "evidence": evidence, "holds": bool(holds)})

    def rate(r):
        return r["R → D (rate)"].split("(")[1]

    for tokens in sorted(t for m, t in by if m == "VQ-VAE"):
        v = by[("VQ-VAE", tokens)][0]
        for g in by.get(("VQ-GAN", tokens), []):
            if g["R → D (rate)"] == v["R → D (rate)"]:
                claim(f"VQ-GAN beats VQ-VAE at the same tokens ({v['R → D (rate)']}): FID",
                      f"FID {g['FID']:.2f} vs {v['FID']:.2f}", g["FID"] < v["FID"])
                claim(f"VQ-GAN beats VQ-VAE at the same tokens ({v['R → D (rate)']}): SSIM",
                      f"SSIM {g['SSIM']:.3f} vs {v['SSIM']:.3f}", g["SSIM"] > v["SSIM"])
    gans = sorted((r for r in img.values() if r["model"] == "VQ-GAN"), key=lambda r: r["tokens"])
    same_canvas = {}
    for r in gans:
        same_canvas.setdefault(r["R → D (rate)"].split("²")[0], []).append(r)
    for canvas, rs in same_canvas.items():
        if len(rs) > 1:
            fids = [r["FID"] for r in rs]
            claim(f"more tokens for the same {canvas}² pictures give lower FID",
                  ", ".join(f"{r['tokens']} tokens: {r['FID']:.2f}" for r in rs),
                  all(a > b for a, b in zip(fids, fids[1:])))
    pairs_rate = [(a, b) for a in gans for b in gans
                  if a["tokens"] < b["tokens"] and rate(a) == rate(b)]
    for a, b in pairs_rate:
        claim(f"at the same rate, more tokens give lower FID ({a['R → D (rate)']} vs "
              f"{b['R → D (rate)']})", f"FID {a['FID']:.2f} vs {b['FID']:.2f}",
              b["FID"] < a["FID"])
    pairs_tokens = [(a, b) for a in gans for b in gans
                    if a["tokens"] == b["tokens"] and rate(a) < rate(b)]
    if pairs_rate and pairs_tokens:
        d_tokens = max(abs(a["FID"] - b["FID"]) for a, b in pairs_rate)
        d_rate = max(abs(a["FID"] - b["FID"]) for a, b in pairs_tokens)
        claim("the number of tokens matters more than the rate (FID gap at the same rate with "
              "more tokens > FID gap at the same tokens with another rate)",
              f"{d_tokens:.2f} vs {d_rate:.2f}", d_tokens > d_rate)
    for r in rows:
        if r["part"] == "sketches":
            claim(f"VQ-GAN-Seg reconstructs {r['data']} sketches well (paper: PA ≥ 95%)",
                  f"PA {r['PA']:.2f}%, FWIoU {r['FWIoU']:.2f}%", r["PA"] >= 95)
    return out


def check_targets(rows, cfg) -> list:
    """The profile's bars (``vqgan.eval.targets``) for the tokenizers later notebooks use:
    SSIM of the image tokenizer, PA of the sketch tokenizer on each set, and the share of
    codes in use. Rows {target, value, bar, met}."""
    section = cfg.get("vqgan") or {}
    bars = (section.get("eval") or {}).get("targets") or {}
    main, sketch = section.get("tokenizer"), section.get("sketch_tokenizer")

    def share(r):           # codes in use as a share of the tokenizer's codebook
        return r["codes used"] / configs_from_profile(cfg)[r["name"]].codebook

    found = []              # (target, value, bar's name)
    for r in rows:
        if r["name"] == main:
            found += [(f"{main}: SSIM", r["SSIM"], "ssim"),
                      (f"{main}: codes used (share)", share(r), "usage")]
        elif r["name"] == sketch:
            found += [(f"{sketch}: PA % ({r['data']})", r["PA"], "pa"),
                      (f"{sketch}: codes used (share, {r['data']})", share(r), "usage")]
    return [{"target": t, "value": v, "bar": "" if bars.get(b) is None else bars[b],
             "met": "" if bars.get(b) is None else bool(v >= bars[b])} for t, v, b in found]
