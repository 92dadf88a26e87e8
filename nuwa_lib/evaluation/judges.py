"""Judges: small evaluator networks trained on the Shapes World (DESIGN §7).

The paper scores samples with networks trained on real photos and clips: Inception-v3 for
FID and IS (Table 1), CLIP for CLIPSIM and for re-ranking 60 samples (Sec. 4.2), I3D /
C3D-style video networks for FID-vid and FVD (Tables 2, 3, 5, 6) and a segmentation model
for Detected PA (Table 6). Their weights cannot be downloaded here, and they would not
understand the Shapes World anyway. So we train one small judge for each role on the world
itself (their networks are in :mod:`~nuwa_lib.evaluation.judge_nets`), and ``metrics.py``
computes the paper's formulas with them.

Two-object scenes. ``Sample.labels`` names the *first* object, but nothing in an image says
which object came first, so per-attribute heads trained on two-object scenes would learn a
coin flip. The per-object heads (shape, colour, size, position, motion) are therefore trained
and checked on one-object scenes only. Every scene trains the background head and what reads
several objects: for images, slot heads saying which shape, colour and size occupies each of
the 9 position cells (objects never share a cell); for videos, whose objects move between
cells, multi-label presence heads ("is something red here? does something move up?").
A fraction ``single_fraction`` of the judges' scenes have one object.

Data. Judges draw scenes from their own seed stream of the world (``JUDGE_STREAM``; the
dataset roles use 0..8), fresh scenes every step, and are checked on the stream's ``test``
split, which they never train on. They see every attribute x motion combination, including
the held-out ones of the ``zeroshot`` split: a judge must recognise what a zero-shot
generator draws, and only the generators must never see those combinations.

Cache. A trained judge is written to ``artifacts/<profile>/judges/<name>-<hash>.pt``; the hash
covers the judge's config, the seed, canvas, frames and :data:`JUDGE_VERSIONS`, so a change to
any of them trains a new judge and never loads a stale one. :func:`get_judges` loads what is
there and trains what is missing.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..data import world
from ..utils import checkpoint, progress as P
from ..utils.cache import artifact_path, fetch, profile_of, source_of
from ..utils.weights import Spec
from ..utils.provenance import training_record
from ..utils.tensors import to_tensor
from .judge_nets import (
    CHECKPOINT_FORMAT,
    IMAGE_HEADS,
    JUDGE_NAMES,
    JUDGE_STREAM,
    JUDGE_VERSIONS,
    SLOT_CLASSES,
    VIDEO_HEADS,
    VIDEO_PRESENCE,
    JudgesConfig,
    Segmenter,
    TinyCLIP,
    WorldClassifier,
    _make_config,
    build,
    config_hash,
)


class JudgeCacheError(checkpoint.CheckpointError):
    """A cached judge file that cannot be used: corrupt, or made for another config."""


@dataclass
class WorldData:
    """A batch of judge scenes: ``pixels`` is (N, H, W, 3) images or (N, T, H, W, 3) videos."""
    pixels: np.ndarray
    seg: np.ndarray
    captions: list
    scenes: list
    video: bool

    def __len__(self):
        return len(self.scenes)


def judge_scene(split, index, seed=0, canvas=32, video=False, n_objects=None,
                single_fraction=0.5):
    """The ``index``-th scene of the judges' stream: 1 object with probability
    ``single_fraction`` (unless ``n_objects`` is given), every combination allowed."""
    world._check("split", split, world.SPLITS)
    rng = np.random.default_rng([seed, JUDGE_STREAM, world.SPLITS.index(split), index])
    n = n_objects if n_objects is not None else (1 if rng.random() < single_fraction else 2)
    return world.random_scene(rng, canvas, n, video, exclude_heldout=False)


def world_data(split, n, *, seed=0, canvas=32, frames=8, video=False, n_objects=None,
               single_fraction=0.5, start=0) -> WorldData:
    """Scenes ``start .. start+n-1`` of the judges' stream, rendered with captions and maps."""
    scenes = [judge_scene(split, start + i, seed, canvas, video, n_objects, single_fraction)
              for i in range(n)]
    rendered = [world.render_video(s, frames) if video else world.render_image(s) for s in scenes]
    pixels, seg = ([np.stack(m) for m in zip(*rendered)] if n
                   else [np.zeros((0,), np.uint8) for _ in range(2)])
    return WorldData(pixels, seg, [world.caption(s, video) for s in scenes], scenes, video)


def scene_targets(scenes, video=False) -> dict:
    """Training targets of a list of scenes: per-head class indices of the first object,
    ``single`` (bool, one object: where the object heads are defined), and for images
    ``slot_<attribute>`` (N, 9) cell contents (0 = empty, v + 1 = value v), for videos the
    multi-hot ``presence`` over :data:`VIDEO_PRESENCE`."""
    heads = VIDEO_HEADS if video else IMAGE_HEADS
    n = len(scenes)
    out = {h: np.zeros(n, np.int64) for h in heads}
    out["single"] = np.zeros(n, bool)
    if video:
        slot = {k: i for i, k in enumerate(VIDEO_PRESENCE)}
        out["presence"] = np.zeros((n, len(VIDEO_PRESENCE)), np.float32)
    else:
        out.update({f"slot_{a}": np.zeros((n, 9), np.int64) for a in SLOT_CLASSES})
    for i, s in enumerate(scenes):
        o = s.objects[0]
        for h in heads:
            value = s.background if h == "background" else getattr(o, h)
            out[h][i] = world.ATTRIBUTE_VALUES[h].index(value)
        out["single"][i] = len(s.objects) == 1
        for obj in s.objects:
            if video:
                for a in ("shape", "colour", "size", "position", "motion"):
                    out["presence"][i, slot[(a, getattr(obj, a))]] = 1.0
            else:
                cell = world.POSITIONS.index(obj.position)
                for a in SLOT_CLASSES:
                    value = world.ATTRIBUTE_VALUES[a].index(getattr(obj, a))
                    out[f"slot_{a}"][i, cell] = value + 1
    return out


# --------------------------------------------------------------------------- training
def _judge_seed(name, jcfg):
    return jcfg.seed * 1000 + JUDGE_NAMES.index(name)


def _classifier_loss(model, batch):
    x, t = batch
    out = model(x)
    single = t["single"]
    loss = F.cross_entropy(out["logits"]["background"], t["background"])
    for h in model.head_names:
        if h != "background" and single.any():
            loss = loss + F.cross_entropy(out["logits"][h][single], t[h][single])
    # Summed over bits / cells (not averaged): each object weighs like a head.
    if model.video:
        bce = F.binary_cross_entropy_with_logits(out["presence"], t["presence"], reduction="none")
        return loss + bce.sum(1).mean()
    for a, logits in out["slots"].items():
        ce = F.cross_entropy(rearrange(logits, "b n k -> (b n) k"), t[f"slot_{a}"].flatten(),
                             reduction="none")
        loss = loss + ce.view(len(x), -1).sum(1).mean()
    return loss


def _mixed_batch(jcfg, c, step, split="train"):
    """Step ``step``'s training pictures for CLIP and the segmenter: ``batch_size`` scenes,
    the last ``video_fraction`` of them one random frame of a moving video (objects anywhere).
    Returns (pixels (N, H, W, 3), captions, maps (N, H, W))."""
    n_video = int(round(c.batch_size * c.video_fraction))
    start = step * c.batch_size
    img = world_data(split, c.batch_size - n_video, seed=jcfg.seed, canvas=jcfg.canvas,
                     single_fraction=c.single_fraction, start=start)
    pixels, captions, maps = list(img.pixels), list(img.captions), list(img.seg)
    for index in range(start + c.batch_size - n_video, start + c.batch_size):
        scene = judge_scene(split, index, jcfg.seed, jcfg.canvas, True, None, c.single_fraction)
        t = int(np.random.default_rng([jcfg.seed, JUDGE_STREAM, index]).integers(jcfg.frames))
        vid, seg = world.render_video(scene, t + 1)   # frames 0..t; the last one is frame t
        pixels.append(vid[-1])
        captions.append(world.caption(scene, video=True))   # the video's caption
        maps.append(seg[-1])
    return np.stack(pixels), captions, np.stack(maps)


def _clip_loss(model, batch):
    x, tokens = batch
    logits = model(x, tokens)
    # Captions that are the same text are the same target: mask them out of the negatives.
    same = (tokens[:, None, :] == tokens[None, :, :]).all(-1)
    logits = logits.masked_fill(same & ~torch.eye(len(x), dtype=torch.bool), float("-inf"))
    target = torch.arange(len(x))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


# Object pixels are ~10% of a map; weighting them up teaches the shape classes sooner.
_SEG_WEIGHT = torch.tensor([1.0] * len(world.BACKGROUNDS) + [4.0] * len(world.SHAPES))


def _segmenter_loss(model, batch):
    x, seg = batch
    return F.cross_entropy(model(x), seg, weight=_SEG_WEIGHT)


_LOSSES = {"classifier": _classifier_loss, "video": _classifier_loss, "clip": _clip_loss,
           "segmenter": _segmenter_loss}


def _batches(name, jcfg, c, model, split="train"):
    """step -> judge ``name``'s training batch (inputs, targets), fresh world scenes (of
    ``split``: the held-out loss reads ``val``)."""
    def batch(step):
        if name in ("classifier", "video"):
            d = world_data(split, c.batch_size, seed=jcfg.seed, canvas=jcfg.canvas,
                           frames=jcfg.frames, video=name == "video",
                           single_fraction=c.single_fraction, start=step * c.batch_size)
            t = {k: torch.from_numpy(v) for k, v in scene_targets(d.scenes, d.video).items()}
            return to_tensor(d.pixels), t
        pixels, captions, maps = _mixed_batch(jcfg, c, step, split)
        if name == "clip":
            return to_tensor(pixels), model.tokenizer(captions)
        return to_tensor(pixels), torch.from_numpy(maps.astype(np.int64))
    return batch


def _fit(model, loss_fn, batches, steps, lr, desc, progress):
    """AdamW with a 5% linear warm-up and a cosine decay; fresh world data every step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * 0.5
                                              * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    losses, t0 = [], time.perf_counter()
    bar = P.bar(range(steps), desc=desc, progress=progress, leave=False)
    for step in bar:
        loss = loss_fn(model, batches(step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    model.eval()
    return {"steps": steps, "final_loss": float(np.mean(losses[-max(1, steps // 10):])),
            "train_seconds": round(time.perf_counter() - t0, 1), "history": losses}


def heldout_loss(name, model, jcfg: JudgesConfig, batches: int = 4) -> float:
    """Judge ``name``'s training loss on ``batches`` batches of the judges' ``val`` scenes."""
    c = jcfg.judge(name)
    make = _batches(name, jcfg, c, model, split="val")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        return float(np.mean([float(_LOSSES[name](model, make(i))) for i in range(batches)]))


def train_judge(name, jcfg: JudgesConfig, progress=True, steps: int | None = None):
    """Train one judge from scratch; deterministic on CPU for a given config and seed.
    ``steps`` replaces the recipe's (a short live run). Returns (model in eval mode, info
    dict with the loss of every step)."""
    c = jcfg.judge(name)
    before = torch.get_num_threads()
    # fork_rng: the caller's random state is the same whether a judge was trained or loaded
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_judge_seed(name, jcfg))
        model = build(name, jcfg)
        if jcfg.threads:
            torch.set_num_threads(jcfg.threads)
        try:
            info = _fit(model, _LOSSES[name], _batches(name, jcfg, c, model), steps or c.steps, c.lr,
                        f"judge {name}", progress)
            info["trained_by"] = training_record()
        finally:
            torch.set_num_threads(before)
    return _freeze(model), info


def _freeze(model):
    model.eval()
    model.requires_grad_(False)
    return model


# --------------------------------------------------------------------------- cache
def judge_path(name, jcfg: JudgesConfig, profile: str) -> Path:
    return artifact_path(profile, "judges", name, config_hash(name, jcfg))


def save_judge(path, name, jcfg, model, info) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a checkpoint."""
    return checkpoint.save(path, {
        "format": CHECKPOINT_FORMAT, "version": JUDGE_VERSIONS[name], "name": name,
        "hash": config_hash(name, jcfg), "seed": jcfg.seed, "canvas": jcfg.canvas,
        "frames": jcfg.frames, "config": checkpoint.canonical(asdict(jcfg.judge(name))),
        "info": info, "state_dict": model.state_dict()})


def _read_checkpoint(path, expect=None) -> dict:
    return checkpoint.load(path, CHECKPOINT_FORMAT, expect, what="judge checkpoint",
                           hint="delete the file to retrain", error=JudgeCacheError)


def _restore(path, payload, name, jcfg):
    model = checkpoint.load_state(path, build(name, jcfg), payload["state_dict"],
                                  f"{name} architecture", JudgeCacheError)
    return _freeze(model)


def _expected(name, jcfg: JudgesConfig) -> dict:
    return {"name": name, "version": JUDGE_VERSIONS[name], "seed": jcfg.seed,
            "canvas": jcfg.canvas, "frames": jcfg.frames, "config": asdict(jcfg.judge(name))}


def judge_spec(name, jcfg: JudgesConfig, profile: str) -> Spec:
    """What the shipped weights hold for judge ``name`` (its place: ``judges/<name>``)."""
    return Spec(profile, "judges", name, config_hash(name, jcfg), _expected(name, jcfg),
                slot=f"judges/{name}")


def load_judge(path, name, jcfg: JudgesConfig):
    """(model in eval mode, info) from a checkpoint; a corrupt file or one made for another
    judge, version or config raises :class:`JudgeCacheError` naming the file and the
    mismatch."""
    payload = _read_checkpoint(path, _expected(name, jcfg))
    return _restore(path, payload, name, jcfg), dict(payload.get("info") or {})


def load_checkpoint(path, expect=None) -> nn.Module:
    """A judge rebuilt from the config stored in its own checkpoint (no profile needed)."""
    payload = _read_checkpoint(path)
    name = payload.get("name")
    if name not in JUDGE_NAMES or payload.get("version") != JUDGE_VERSIONS[name]:
        raise JudgeCacheError(f"{path}: judge {name!r} of version {payload.get('version')!r} "
                              f"cannot be loaded (versions now: {JUDGE_VERSIONS})")
    if expect is not None and name != expect:
        raise JudgeCacheError(f"{path}: holds the {name} judge, not the {expect}")
    sub = _make_config(name, payload["config"])
    jcfg = JudgesConfig(seed=payload["seed"], canvas=payload["canvas"],
                        frames=payload["frames"], **{name: sub})
    return _restore(path, payload, name, jcfg)


@dataclass
class Judges:
    """The four judges (eval mode, frozen) and where each came from."""
    classifier: WorldClassifier | None
    clip: TinyCLIP | None
    video: WorldClassifier | None
    segmenter: Segmenter | None
    config: JudgesConfig
    paths: dict
    info: dict          # per judge: training info + "source" ("loaded" / "trained")


def get_judges(cfg: Mapping[str, Any], train_if_missing=True, progress=True,
               names=JUDGE_NAMES, profile: str | None = None) -> Judges:
    """Every judge of the profile ``cfg``: the shipped one (``results/<profile>/weights/``) or
    the one cached in ``artifacts/<profile>/judges/`` under its config hash, otherwise trained
    (and cached) or, with ``train_if_missing=False``, a FileNotFoundError naming the missing
    file."""
    profile = profile_of(cfg, profile)
    jcfg = JudgesConfig.from_profile(cfg)
    models, paths, infos = dict.fromkeys(JUDGE_NAMES), {}, {}
    for name in names:
        world._check("judge", name, JUDGE_NAMES)
        path = paths[name] = judge_path(name, jcfg, profile)

        def train(name=name, path=path):
            model, info = train_judge(name, jcfg, progress)
            save_judge(path, name, jcfg, model, info)
            return model, info

        def load(p, name=name):
            paths[name] = p
            model, info = load_judge(p, name, jcfg)
            return model, {**info, "source": source_of(p)}

        (models[name], info), loaded = fetch(
            path, load, train, build_if_missing=train_if_missing,
            spec=judge_spec(name, jcfg, profile),
            missing=f"no cached {name} judge at {path}; run notebook 01_evaluators or "
                    f"get_judges(..., train_if_missing=True)")
        infos[name] = info if loaded else {**info, "source": "trained"}
    return Judges(**models, config=jcfg, paths=paths, info=infos)
