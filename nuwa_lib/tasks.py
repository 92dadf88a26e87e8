"""The 8 tasks of Fig. 1 as data: what goes to the encoder, what primes the
decoder, what the decoder must produce.

Training, sampling and every task notebook read this one table, so a task is
defined once. ``world_example`` renders one instance of a task on the Shapes
World (used for the Fig. 1-style overview in notebook 00).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import world


@dataclass(frozen=True)
class Task:
    name: str            # the paper's abbreviation
    title: str
    encoder: str         # "text", "sketch" (image seg map), "sketch video", or "none" (the word "None")
    prime: str           # what the decoder is given before it generates: "nothing", "top half", "first frame"
    target: str          # "image" or "video"
    zero_shot: bool      # evaluated without fine-tuning on the task (Sec. 4.2)
    role: str            # the Shapes World dataset role standing in for the paper's data
    paper: str           # where the paper reports it


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


def get_task(name: str) -> Task:
    key = name.upper() if isinstance(name, str) else name
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[key]


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
    s = world.sample(task.role, "val", index, seed=seed, canvas=canvas, frames=frames)
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
        target = len(s.scene.objects) - 1
        obj = s.scene.objects[target]
        new_colour = world.COLOURS[(world.COLOURS.index(obj.colour) + 1) % len(world.COLOURS)]
        changed = world.change_attribute(s.scene, "colour", new_colour, obj=target)
        image, _ = world.render_image(changed)
        first_row = int(np.argmax((image != s.image).any(axis=(1, 2))))
        ex |= {"inputs": [("image", _keep_rows(s.image, first_row)),
                          ("text", world.caption(changed))],
               "output": ("image", image)}
    elif task.name == "T2V":
        ex |= {"inputs": [("text", s.caption)], "output": ("video", s.video)}
    elif task.name == "S2V":
        ex |= {"inputs": [("segvideo", s.seg)], "output": ("video", s.video)}
    elif task.name == "V2V":
        ex |= {"inputs": [("image", s.video[0])], "output": ("video", s.video)}
    elif task.name == "TV2V":
        obj = s.scene.objects[0]
        new_motion = "up" if obj.motion != "up" else "down"
        changed = world.change_motion(s.scene, new_motion, after_frame=1)
        video, _ = world.render_video(changed, frames=frames)
        ex |= {"inputs": [("image", s.video[0]), ("text", world.caption(changed, video=True))],
               "output": ("video", video)}
    return ex
