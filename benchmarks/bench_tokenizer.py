"""Where a tokenizer training step's time goes on the CPU, and what pays; writes
results/bench/tokenizer_step_cpu.json.

The step is the profile's image tokenizer (``vqgan.tokenizer``, ``mini``: a VQ-GAN, 32² -> 8²,
width 16, batch 32) as :class:`nuwa_lib.tokenizers.vq_train.Trainer` runs it. All numbers
are medians of ``--repeats`` timed steps after two warm-up steps, in one process, the variants
interleaved so that load changes hit them alike.

* **parts**: drawing the batch (the world renders it); the forward passes of the encoder,
  the quantizer, the decoder, the perceptual features (Eq. 4, of the reconstruction and the
  input) and the discriminator (Eq. 5); and whole steps that add one term at a time: Eq. 3
  alone (a VQ-VAE step), + Eq. 4 (a VQ-GAN step before its discriminator starts), + Eq. 5
  (after it starts). The differences of those steps are each term's forward and backward.
* **before / after**: the step as the trainer ran it before this benchmark was written (the
  batch drawn from whole world samples, every video frame rendered) against the same step
  with each candidate speed-up: cheaper batch drawing (only the picture used is rendered;
  the same pixels, tested), the channels-last memory format, fewer passes (the perceptual
  features of the input and the reconstruction in one batch), and two threads instead of one.

Usage: python benchmarks/bench_tokenizer.py [--repeats 12] [--profile mini]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nuwa_lib.data import splits  # noqa: E402
from nuwa_lib.evaluation import judges as J  # noqa: E402
from nuwa_lib.tokenizers import losses as L, vq_train, vqgan as V  # noqa: E402
from nuwa_lib.utils.files import write_json  # noqa: E402
from nuwa_lib.utils.profiles import load_profile  # noqa: E402
from nuwa_lib.utils.provenance import provenance  # noqa: E402


def whole_sample_batch(config, step):
    """The batch as training drew it before: whole world samples (all 8 frames of a video
    rendered, its caption written), then one picture of each kept."""
    rng = np.random.default_rng([config.seed, V.VQ_STREAM, step])
    roles = V.SEG_ROLES if config.kind == "seg" else V.IMAGE_ROLES
    pics = []
    for _ in range(config.batch_size):
        index = int(rng.integers(config.train_size))
        frame = rng.random() < config.frame_fraction
        s = splits.sample(roles[frame], "train", index, config.seed, config.canvas)
        t = int(rng.integers(s.video.shape[0])) if frame else None
        pics.append(V.sample_picture(config, s, t))
    raw = np.stack(pics)
    return V.to_input(raw, config), raw


def median_ms(fns: dict, repeats: int) -> dict:
    """{name: median ms} of each callable, run interleaved (two warm-up rounds first)."""
    times = {k: [] for k in fns}
    for r in range(repeats + 2):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            if r >= 2:
                times[k].append(time.perf_counter() - t0)
    return {k: round(1000 * statistics.median(v), 2) for k, v in times.items()}


def perceptual_one_pass(features, x, y):
    """Eq. 4 with the reconstruction and the input through the features in one batch."""
    f = features(torch.cat([x, y]))
    return sum(F.mse_loss(a[:len(x)], a[len(x):]) for a in f)


class Step:
    """One tokenizer step at a fixed position of its schedule, repeatable: the trainer's
    step counter is set back before each call (its weights keep moving, as in training).
    ``perceptual`` replaces losses.perceptual_loss for this step."""

    def __init__(self, config, classifier, at, batch=None, channels_last=False, perceptual=None):
        self.tr = vq_train.Trainer(config, classifier, channels_last=channels_last)
        self.at, self.perceptual = at, perceptual
        if batch is not None:
            self.tr.batch = batch

    def __call__(self):
        self.tr.step = self.at
        kept = L.perceptual_loss
        L.perceptual_loss = self.perceptual or kept
        try:
            self.tr.train_step()
        finally:
            L.perceptual_loss = kept


def fixed_batch(config):
    x, raw = V.training_batch(config, 0)
    return lambda c, step: (x, raw)


def with_threads(n, fn):
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            fn()
        finally:
            torch.set_num_threads(before)
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "tokenizer_step_cpu.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_profile(args.profile)
    name = cfg["vqgan"]["tokenizer"]
    c = V.configs_from_profile(cfg)[name]
    clf = J.get_judges(cfg, names=("classifier",), progress=False).classifier
    before_disc, after_disc = 1, c.steps - 2
    vqvae = V.VQConfig(**{**c.__dict__, "kind": "vqvae"})

    # ---------------------------------------------------------------- parts
    fixed = fixed_batch(c)
    x, raw = fixed(c, 0)
    tr = vq_train.Trainer(c, clf)
    m = tr.model.train()
    with torch.no_grad():
        z = m.encoder(x)
        zq = m.quantizer(z)[0]
        out = m.decoder(zq)
    parts_fwd = median_ms({
        "batch (whole samples)": lambda: whole_sample_batch(c, 3),
        "batch (picture only)": lambda: V.training_batch(c, 3),
        "encoder forward": lambda: m.encoder(x),
        "quantizer forward": lambda: m.quantizer(z.detach()),
        "decoder forward": lambda: m.decoder(zq),
        "perceptual forward (x2)": lambda: (tr.features(out), tr.features(x)),
        "discriminator forward": lambda: tr.disc(out),
    }, args.repeats)
    steps = median_ms({
        "Eq. 3 (VQ-VAE step)": Step(vqvae, None, before_disc, fixed),
        "+ Eq. 4 (VQ-GAN, D not started)": Step(c, clf, before_disc, fixed),
        "+ Eq. 5 (VQ-GAN, D started)": Step(c, clf, after_disc, fixed),
    }, args.repeats)
    s3, s4, s5 = steps.values()
    breakdown = {
        "batch": parts_fwd["batch (whole samples)"],
        "encoder + quantizer + decoder, forward and backward (Eq. 3)": s3,
        "perceptual term, forward and backward (Eq. 4)": round(s4 - s3, 2),
        "GAN terms and D's step (Eq. 5)": round(s5 - s4, 2),
    }

    # ----------------------------------------------------------- before / after
    variants = {
        "before: whole-sample batch, 1 thread": Step(c, clf, after_disc, whole_sample_batch),
        "picture-only batch, 1 thread": Step(c, clf, after_disc),
        "picture-only batch, channels-last, 1 thread": Step(c, clf, after_disc,
                                                            channels_last=True),
        "picture-only batch, perceptual in one pass, 1 thread": Step(
            c, clf, after_disc, perceptual=perceptual_one_pass),
    }
    if len(os.sched_getaffinity(0)) >= 2:
        variants["picture-only batch, 2 threads"] = with_threads(2, Step(c, clf, after_disc))
        variants["picture-only batch, channels-last, 2 threads"] = with_threads(
            2, Step(c, clf, after_disc, channels_last=True))
    timed = median_ms(variants, args.repeats)
    base = timed["before: whole-sample batch, 1 thread"]
    result = {
        "benchmark": "tokenizer_step_cpu",
        "tokenizer": name, "config": c.__dict__,
        "repeats": args.repeats,
        "forward_ms": parts_fwd,
        "steps_ms": steps,
        "breakdown_ms": breakdown,
        "variants_ms": timed,
        "speedup_vs_before": {k: round(base / v, 3) for k, v in timed.items()},
        "note": "medians of interleaved steps in one process; batch drawing is included in the "
                "variants' steps and excluded from 'steps_ms' (a fixed batch)",
        "provenance": provenance(profile=args.profile, seed=int(cfg.get("seed", 0)),
                                 threads="1 (and 2 where stated)"),
    }
    write_json(Path(args.out), result)
    print(json.dumps({"forward_ms": parts_fwd, "breakdown_ms": breakdown, "variants_ms": timed},
                     indent=1, ensure_ascii=False))
    print(f"-> {args.out}")
    return result


if __name__ == "__main__":
    main()
