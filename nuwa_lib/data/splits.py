"""The world's roles (each stands in for one of the paper's datasets) and their splits:
:data:`ROLES`, :func:`sample`, :class:`WorldSplit`.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .world import (
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    CANVASES,
    SPLITS,
    Sample,
    Scene,
    _check,
    _check_min,
    caption,
    random_scene,
    render_image,
    render_video,
)


# --------------------------------------------------------------------------- roles / splits
@dataclass(frozen=True)
class RoleSpec:
    kind: str                       # "image" | "video"
    captioned: bool                 # does the role's task use the caption?
    seg: bool                       # does the role's task use the segmentation map?
    n_objects: tuple                # (lo, hi) objects per scene
    description: str


_IMG, _VID = "image", "video"
ROLES = {   # name: RoleSpec(kind, captioned, seg, n_objects, description)
    "cc": RoleSpec(_IMG, True, False, (1, 2),
                   "image-caption pretraining (Conceptual Captions' role, T2I)"),
    "moments": RoleSpec(_VID, False, False, (1, 2),
                        "unlabelled video (Moments in Time's role, V2V pretraining)"),
    "vatex": RoleSpec(_VID, True, False, (1, 2),
                      "captioned video pretraining (VATEX's role, T2V)"),
    "mscoco": RoleSpec(_IMG, True, False, (1, 2),
                       "image-caption fine-tuning and evaluation (MSCOCO's role, T2I, I2I, TI2I)"),
    "kinetics": RoleSpec(_VID, True, False, (1, 1),
                         "one object, caption and motion label (Kinetics' role, T2V)"),
    "bair": RoleSpec(_VID, False, False, (1, 1),
                     "uncaptioned single-object video prediction (BAIR's role, V2V)"),
    "msrvtt": RoleSpec(_VID, True, False, (1, 2),
                       "captioned video evaluation (MSR-VTT's role, T2V, TV2V)"),
    "vspw": RoleSpec(_VID, False, True, (1, 2),
                     "video with segmentation maps (VSPW's role, S2V)"),
    "cocostuff": RoleSpec(_IMG, False, True, (1, 2),
                          "image with segmentation maps (COCO-Stuff's role, S2I)"),
}
_ROLE_ID = {name: i for i, name in enumerate(ROLES)}


def _check_zeroshot(role, split):
    if split == "zeroshot" and ROLES[role].kind != "video":
        videos = ", ".join(r for r, spec in ROLES.items() if spec.kind == "video")
        raise ValueError(f"split 'zeroshot' is only defined for video roles ({videos}), "
                         f"not for the image role {role!r}")


def scene(role, split, index, seed=0, canvas=32) -> Scene:
    """The scene of ``sample(role, split, index, seed, canvas)``, without rendering it."""
    _check("role", role, tuple(ROLES))
    _check("split", split, SPLITS)
    index, seed = _check_min("index", index, 0), _check_min("seed", seed, 0)
    _check("canvas", canvas, CANVASES)
    spec = ROLES[role]
    _check_zeroshot(role, split)
    rng = np.random.default_rng([seed, _ROLE_ID[role], SPLITS.index(split), index])
    lo, hi = spec.n_objects
    n = lo if lo == hi else int(rng.integers(lo, hi + 1))
    return random_scene(rng, canvas, n, spec.kind == "video", True, split == "zeroshot")


def sample(role, split, index, seed=0, canvas=32, frames=8) -> Sample:
    """The ``index``-th sample of a role's split, a pure function of the arguments."""
    frames = _check_min("frames", frames, 1)
    sc = scene(role, split, index, seed, canvas)
    if ROLES[role].kind == "video":
        vid, seg = render_video(sc, frames)
        return Sample(sc, None, vid, seg, caption(sc, True), role, split, index)
    img, seg = render_image(sc)
    return Sample(sc, img, None, seg, caption(sc), role, split, index)


class WorldSplit(Sequence):
    """A lazy, indexable view of ``sample(role, split, i, ...)`` for i in range(size)."""

    def __init__(self, role, split, size, seed=0, canvas=32, frames=8):
        _check("role", role, tuple(ROLES))
        _check("split", split, SPLITS)
        _check_zeroshot(role, split)
        self.size = _check_min("size", size, 0)
        self.seed = _check_min("seed", seed, 0)
        self.canvas = _check("canvas", canvas, CANVASES)
        self.frames = _check_min("frames", frames, 1)
        self.role, self.split = role, split

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        i = operator.index(i)
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(f"index {i} out of range for a split of size {self.size}")
        return sample(self.role, self.split, i, self.seed, self.canvas, self.frames)

    def __repr__(self):
        return (f"WorldSplit(role={self.role!r}, split={self.split!r}, size={self.size}, "
                f"seed={self.seed}, canvas={self.canvas}, frames={self.frames})")


def attribute_stats(samples) -> list:
    """Rows {"attribute", "value", "count"} over all objects of the samples (background
    once per sample; motion only when there are videos), zero counts included."""
    counts = {a: dict.fromkeys(ATTRIBUTE_VALUES[a], 0) for a in ATTRIBUTES + ("motion",)}
    counts["n_objects"] = {1: 0, 2: 0}
    any_video = False
    for s in samples:
        counts["background"][s.scene.background] += 1
        counts["n_objects"][len(s.scene.objects)] += 1
        any_video |= s.video is not None
        for o in s.scene.objects:
            for a in ("shape", "colour", "size", "position", "motion"):
                counts[a][getattr(o, a)] += 1
    if not any_video:
        del counts["motion"]
    return [{"attribute": a, "value": v, "count": n}
            for a, vals in counts.items() for v, n in vals.items()]
