"""The 8 tasks of Fig. 1 as data: what goes to the encoder, what primes the
decoder, what the decoder must produce.

Training, sampling and every task notebook read this one table, so a task is
defined once. Each :class:`Task` row says, in words drawn from fixed vocabularies:

* ``encoder`` -- what the encoder reads (Sec. 3.3): ``"text"`` (the caption),
  ``"sketch"`` (a segmentation map, VQ-GAN-Seg tokens (1, h, w)), ``"sketch video"``
  (VQ-GAN-Seg tokens (s, h, w)) or ``"none"``: the constant text "None" (V2V's condition
  in Eq. 16, and I2I's);
* ``prime`` -- what the decoder is given before it generates: ``"nothing"``, ``"top half"``
  (the first h // 2 token rows of the image), ``"rows above the edit"`` (the token rows above
  the first changed one, TI2I) or ``"first frame"`` (the first frame(s) of the video); decoding
  is raster order (time-major), so every prime is a prefix of the target's tokens;
* ``target`` -- ``"image"``, a token grid (1, h, w), or ``"video"``, (s, h, w).

:func:`prime_mask` turns a task and a token grid into the bool mask (True = given) that
sampling primes the decoder with. Training does not use it: Eq. (16) is the cross-entropy
over *all* target tokens, so pretraining (T2I, V2V, T2V) and fine-tuning score every token.
``PRETRAIN_TASKS`` / ``PRETRAIN_ROLES`` are Eq. (16)'s three tasks and the world roles that
stand in for Conceptual Captions, Moments in Time and VATEX (Sec. 4).

``world_example`` renders one instance of a task on the Shapes World (the Fig. 1-style
overview of notebook 00); :func:`counterfactual` gives the ground truth of the two
zero-shot manipulation tasks (TI2I, TV2V), which the paper did not have.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

from . import splits, world

ENCODER_INPUTS = ("text", "sketch", "sketch video", "none")
PRIMES = ("nothing", "top half", "rows above the edit", "first frame")
TARGETS = ("image", "video")
PRETRAIN_TASKS = ("T2I", "V2V", "T2V")                          # Eq. (16)
PRETRAIN_ROLES = {"T2I": "cc", "V2V": "moments", "T2V": "vatex"}  # CC, Moments, VATEX (Sec. 4)

Shape3 = tuple


@dataclass(frozen=True)
class Task:
    name: str            # the paper's abbreviation
    title: str
    encoder: str         # one of ENCODER_INPUTS: "text", "sketch" (image seg map), "sketch video", "none" (the word "None")
    prime: str           # one of PRIMES: what the decoder is given before it generates
    target: str          # one of TARGETS: "image" (1, h, w) or "video" (s, h, w)
    zero_shot: bool      # evaluated without fine-tuning on the task (Sec. 4.2)
    role: str            # the Shapes World dataset role standing in for the paper's data
    paper: str           # where the paper reports it

    def __post_init__(self):
        world._check(f"{self.name}: encoder", self.encoder, ENCODER_INPUTS)
        world._check(f"{self.name}: prime", self.prime, PRIMES)
        world._check(f"{self.name}: target", self.target, TARGETS)
        world._check(f"{self.name}: role", self.role, tuple(splits.ROLES))

    # Derived views of the row (properties, so the table's columns stay the eight above).
    @property
    def condition_kind(self) -> str:
        """The :class:`nuwa_lib.model.config.Condition` kind: ``"text"`` (the word "None" is text)
        or ``"sketch"``."""
        return "sketch" if self.encoder.startswith("sketch") else "text"

    @property
    def reads_caption(self) -> bool:
        return self.encoder == "text"

    @property
    def reads_none(self) -> bool:
        """The encoder reads the constant word "None" (Eq. 16's c)."""
        return self.encoder == "none"

    @property
    def reads_sketch(self) -> bool:
        return self.condition_kind == "sketch"

    @property
    def video(self) -> bool:
        """The target is a video (s, h, w); otherwise an image (1, h, w)."""
        return self.target == "video"

    @property
    def primed(self) -> bool:
        return self.prime != "nothing"

    @property
    def counterfactual(self) -> bool:
        """The ground truth is an edited scene (TI2I, TV2V): see :func:`counterfactual`."""
        return self.name in ("TI2I", "TV2V")

    def target_grid(self, grid) -> Shape3:
        """The target's token grid, given the tokenizer's video grid (s, h, w): (1, h, w)
        for an image target, (s, h, w) for a video."""
        s, h, w = _grid(grid)
        return (s, h, w) if self.video else (1, h, w)

    def condition_grid(self, grid, text_length: int | None = None) -> Shape3 | None:
        """The encoder's grid: (L, 1, 1) for text and "None" (``text_length`` L; None when
        not given), (1, h, w) for a sketch, (s, h, w) for a sketch video."""
        s, h, w = _grid(grid)
        if self.encoder == "sketch":
            return (1, h, w)
        if self.encoder == "sketch video":
            return (s, h, w)
        return None if text_length is None else (int(text_length), 1, 1)


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("T2I", "text-to-image", "text", "nothing", "image", False, "mscoco", "Tab. 1, Fig. 4"),
    Task("S2I", "sketch-to-image", "sketch", "nothing", "image", False, "cocostuff", "Fig. 6"),
    Task("I2I", "image completion", "none", "top half", "image", True, "mscoco", "Fig. 7"),
    Task("TI2I", "text-guided image manipulation", "text", "rows above the edit", "image", True,
         "mscoco", "Fig. 8"),
    Task("T2V", "text-to-video", "text", "nothing", "video", False, "kinetics", "Tab. 2, Fig. 5"),
    Task("S2V", "sketch-to-video", "sketch video", "nothing", "video", False, "vspw", "Tab. 6"),
    Task("V2V", "video prediction", "none", "first frame", "video", False, "bair", "Tab. 3"),
    Task("TV2V", "text-guided video manipulation", "text", "first frame", "video", True, "msrvtt",
         "Fig. 12"),
)}


def get_task(name: Union[str, Task]) -> Task:
    if isinstance(name, Task):
        return name
    key = name.upper() if isinstance(name, str) else name
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[key]


def task_names(names) -> tuple:
    """Task names checked and put in the table's order (so ("T2V", "T2I") and ("T2I",
    "T2V") are the same set); duplicates and an empty list are refused."""
    if isinstance(names, (str, Task)):
        names = [names]
    got = [get_task(n).name for n in names]
    if not got:
        raise ValueError(f"tasks must name at least one task; valid tasks: {', '.join(TASKS)}")
    if len(set(got)) != len(got):
        raise ValueError(f"tasks {got} name a task twice")
    return tuple(n for n in TASKS if n in got)


# --------------------------------------------------------------------------- priming
def _grid(grid) -> Shape3:
    try:
        g = tuple(int(n) for n in grid)
    except TypeError:
        g = ()
    if len(g) != 3 or any(n < 1 for n in g):
        raise ValueError(f"grid must be a token grid (s, h, w) of positive sizes, got {grid!r}")
    return g


def _count(name, value, lo, hi):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def prime_mask(task, grid, *, rows=None, frames: int = 1) -> torch.Tensor:
    """Which target tokens are given to the decoder before it generates (True = given), as
    a bool tensor of the task's target grid: (1, h, w) for images, (s, h, w) for videos;
    ``grid`` is the token grid of a target (or the tokenizer's video grid, see
    :meth:`Task.target_grid`).

    * ``nothing``: no token is given (T2I, S2I, T2V, S2V);
    * ``top half``: token rows < h // 2 (I2I); ``rows`` overrides the number of rows;
    * ``rows above the edit``: token rows < ``rows`` (TI2I; required: an int, or one per
      sample, which gives a mask (B, 1, h, w));
    * ``first frame``: the first ``frames`` frames (V2V, TV2V; 1 by default).

    Every mask is a prefix in raster order (time-major), as decoding needs:
    :func:`prime_length` counts it."""
    task = get_task(task)
    s, h, w = task.target_grid(grid)
    mask = torch.zeros(s, h, w, dtype=torch.bool)
    if rows is not None and task.prime in ("nothing", "first frame"):
        raise ValueError(f"{task.name} primes {task.prime}, not rows; rows must be None, got "
                         f"{rows!r}")
    if task.prime == "nothing":
        return mask
    if task.prime == "first frame":
        if s < 2:
            raise ValueError(f"{task.name} primes with the first frame(s) of a video; grid "
                             f"{(s, h, w)} has one frame")
        mask[: _count("frames", frames, 1, s - 1)] = True
        return mask
    if rows is None:
        if task.prime == "rows above the edit":
            raise ValueError(f"{task.name} primes the rows above the edit: pass rows= (token "
                             f"rows above the first changed one, see edit_row)")
        rows = h // 2
    if isinstance(rows, numbers.Integral) and not isinstance(rows, bool):
        mask[:, : _count("rows", rows, 0, h)] = True
        return mask
    rows = torch.as_tensor(rows)
    if rows.dim() != 1 or rows.dtype.is_floating_point or rows.dtype == torch.bool:
        raise ValueError(f"rows must be an int or a 1-D sequence of ints (one per sample), got "
                         f"{rows!r}")
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) > h):
        raise ValueError(f"rows must lie in [0, {h}], got values in [{int(rows.min())}, "
                         f"{int(rows.max())}]")
    row_ids = torch.arange(h)
    return (row_ids[None, :] < rows[:, None])[:, None, :, None].expand(len(rows), s, h, w).clone()


def prime_length(mask: torch.Tensor):
    """How many tokens a prime mask gives, checking that it is a prefix in raster order
    (time-major): an int for a mask (s, h, w), a long tensor (B,) for (B, s, h, w)."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() not in (3, 4):
        raise ValueError("mask must be a bool tensor (s, h, w) or (B, s, h, w)")
    flat = mask.reshape(1, -1) if mask.dim() == 3 else mask.reshape(mask.shape[0], -1)
    n = flat.sum(1)
    prefix = torch.arange(flat.shape[1])[None, :] < n[:, None]
    if not torch.equal(prefix, flat):
        raise ValueError("a prime must be a prefix of the target in raster order (time-major); "
                         "this mask is not")
    return int(n[0]) if mask.dim() == 3 else n


def edit_row(before, after):
    """The first row where two pictures or token grids differ (the number of rows above
    the edit; the full height when they are equal). Images (H, W, 3) / token grids (s, h, w)
    give an int; a batch (B, ...) of token grids (B, s, h, w) gives a long tensor (B,)."""
    a, b = torch.as_tensor(np.asarray(before)), torch.as_tensor(np.asarray(after))
    if a.shape != b.shape:
        raise ValueError(f"before and after must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if a.dim() == 3 and a.shape[-1] == 3 and a.dtype == torch.uint8:     # one RGB image
        changed = (a != b).any(-1).any(-1)
        return int(changed.int().argmax()) if bool(changed.any()) else int(a.shape[0])
    if a.dim() == 3:                                                       # one grid (s, h, w)
        changed = (a != b).any(0).any(-1)
        return int(changed.int().argmax()) if bool(changed.any()) else int(a.shape[1])
    if a.dim() == 4:                                                       # grids (B, s, h, w)
        changed = (a != b).any(1).any(-1)
        first = changed.int().argmax(1)
        return torch.where(changed.any(1), first, torch.full_like(first, a.shape[2])).long()
    raise ValueError(f"edit_row takes an image (H, W, 3), a token grid (s, h, w) or grids "
                     f"(B, s, h, w), got shape {tuple(a.shape)}")


# --------------------------------------------------------------------------- the world
def counterfactual(name, s: world.Sample, frames: int = 8) -> dict:
    """The ground truth of a zero-shot manipulation task on the world sample ``s``:
    ``{"picture", "caption", "edit_row"}``.

    * TI2I: the same scene with the last-drawn object's colour changed ("make it ...");
      ``edit_row`` is the first pixel row that changed (the decoder is primed with the rows
      above it, Fig. 8);
    * TV2V: the first object follows another motion ("up", or "down" if it already moves up)
      from frame 1 on; the first frame is unchanged and primes the decoder (Fig. 12);
      ``edit_row`` is None."""
    task = get_task(name)
    if task.name == "TI2I":
        target = len(s.scene.objects) - 1
        obj = s.scene.objects[target]
        new_colour = world.COLOURS[(world.COLOURS.index(obj.colour) + 1) % len(world.COLOURS)]
        changed = world.change_attribute(s.scene, "colour", new_colour, obj=target)
        image, _ = world.render_image(changed)
        return {"picture": image, "caption": world.caption(changed), "edit_row": edit_row(s.image, image)}
    if task.name == "TV2V":
        obj = s.scene.objects[0]
        new_motion = "up" if obj.motion != "up" else "down"
        changed = world.change_motion(s.scene, new_motion, after_frame=1)
        video, _ = world.render_video(changed, frames=frames)
        return {"picture": video, "caption": world.caption(changed, video=True), "edit_row": None}
    raise ValueError(f"task {task.name} has no counterfactual ground truth; only TI2I and TV2V")


def _keep_rows(image: np.ndarray, rows: int) -> np.ndarray:
    """A decoder prime drawn as a picture: the first ``rows`` rows kept, the rest grey
    (raster-order decoding can only be primed with a prefix)."""
    out = image.copy()
    out[rows:] = 128
    return out


def _top_half(image: np.ndarray) -> np.ndarray:
    """The I2I prime: the top half of the image."""
    return _keep_rows(image, image.shape[0] // 2)


def world_example(name: str, index: int = 0, seed: int = 0, canvas: int = 32,
                  frames: int = 8) -> dict:
    """One instance of task ``name`` on the world, with ground-truth output:
    ``{"task", "title", "inputs": [(kind, data), ...], "output": (kind, data)}``."""
    task = get_task(name)
    s = splits.sample(task.role, "val", index, seed=seed, canvas=canvas, frames=frames)
    ex = {"task": task.name, "title": task.title}
    if task.name == "T2I":
        ex |= {"inputs": [("text", s.caption)], "output": ("image", s.image)}
    elif task.name == "S2I":
        ex |= {"inputs": [("seg", s.seg)], "output": ("image", s.image)}
    elif task.name == "I2I":
        ex |= {"inputs": [("image", _top_half(s.image))], "output": ("image", s.image)}
    elif task.name == "TI2I":
        # counterfactual ground truth: the same scene with the last-drawn object's colour
        # changed; the decoder is primed with the rows above that object (Fig. 2)
        cf = counterfactual(task, s, frames)
        ex |= {"inputs": [("image", _keep_rows(s.image, cf["edit_row"])),
                          ("text", cf["caption"])],
               "output": ("image", cf["picture"])}
    elif task.name == "T2V":
        ex |= {"inputs": [("text", s.caption)], "output": ("video", s.video)}
    elif task.name == "S2V":
        ex |= {"inputs": [("segvideo", s.seg)], "output": ("video", s.video)}
    elif task.name == "V2V":
        ex |= {"inputs": [("image", s.video[0])], "output": ("video", s.video)}
    elif task.name == "TV2V":
        cf = counterfactual(task, s, frames)
        ex |= {"inputs": [("image", s.video[0]), ("text", cf["caption"])],
               "output": ("video", cf["picture"])}
    return ex


__all__ = [
    "Task", "TASKS", "get_task", "task_names", "ENCODER_INPUTS", "PRIMES", "TARGETS",
    "PRETRAIN_TASKS", "PRETRAIN_ROLES", "prime_mask", "prime_length", "edit_row",
    "counterfactual", "world_example",
]
