"""Real files: pictures, label maps and videos decoded, resized and cropped as the paper does
(Sec. 4.1), and the errors that name a bad file (:class:`DataError`).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
from PIL import Image

from . import world

IGNORE_LABEL = 255                 # COCO-Stuff's and VSPW's "unlabelled"
SEG_RULES = ("modulo", "clip")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DataError(ValueError):
    """A dataset file that cannot be used: malformed annotations, an unreadable picture or
    video, an inconsistent HDF5 file. The message names the file."""


@dataclass
class RealSample:
    """One sample of a real dataset: the fields of :class:`nuwa_lib.data.world.Sample` that real
    data has (``scene`` is always None: nobody drew it). Exactly one of ``image`` /
    ``video`` is set."""
    image: Optional[np.ndarray]      # (H, W, 3) uint8
    video: Optional[np.ndarray]      # (T, H, W, 3) uint8
    seg: Optional[np.ndarray]        # (H, W) or (T, H, W) uint8 class ids < n_classes
    caption: Optional[str]
    role: str                        # the dataset's name (e.g. "cc", "bair")
    split: str
    index: int
    path: str                        # the file (or folder, or HDF5 entry) it was read from
    labels: dict = field(default_factory=dict)
    scene: None = None


# --------------------------------------------------------------------------- files
def _file(path, what: str, folder: bool = False) -> Path:
    """``path`` if it is a file (a folder with ``folder``), else ``FileNotFoundError``."""
    path = Path(path)
    if not (path.is_dir() if folder else path.is_file()):
        raise FileNotFoundError(f"{path}: {what}{' (a folder)' if folder else ''} not found")
    return path


def load_json(path, what: str):
    """A JSON file's content; a missing file or invalid JSON names the file."""
    path = _file(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: {what} is not valid JSON ({err})") from None


def read_picture(path, label_map: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an image file; with ``label_map``, (H, W) uint8 labels from
    an 8-bit single-channel PNG (mode L or P)."""
    path = Path(path)
    missing, what = ("label map", "the label map") if label_map else ("image file", "the image")
    try:
        with Image.open(path) as im:
            if label_map and im.mode not in ("L", "P"):
                raise DataError(f"{path}: a label map must be an 8-bit single-channel PNG (mode "
                                f"L or P), got mode {im.mode}")
            return np.asarray(im if label_map else im.convert("RGB"))
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: {missing} not found") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: cannot read {what} ({err})") from None


def resize_crop(pic: np.ndarray, size: int, *, nearest=False, pre_size=None) -> np.ndarray:
    """Shorter side to ``size``, then the centre ``size`` x ``size`` (bicubic; ``nearest``
    for label maps). ``pre_size`` squashes to ``pre_size``² first (bilinear; nearest)."""
    img = Image.fromarray(pic)
    if pre_size:
        img = img.resize((pre_size, pre_size), Image.NEAREST if nearest else Image.BILINEAR)
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.NEAREST if nearest else Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def class_table(rule="modulo", n_classes: int = world.N_SEG_CLASSES) -> np.ndarray:
    """The lookup (256,) uint8 that maps a dataset's labels to ``n_classes`` sketch classes:
    ``"modulo"``, ``"clip"``, a list or a {label: class} map (:mod:`nuwa_lib.data.readers`)."""
    n = world._check_min("n_classes", n_classes, 1)
    labels = np.arange(256)
    if isinstance(rule, str):
        world._check("seg_classes", rule, SEG_RULES)
        table = labels % n if rule == "modulo" else np.minimum(labels, n - 1)
        table[IGNORE_LABEL] = 0
        return table.astype(np.uint8)
    pairs = (rule.items() if isinstance(rule, Mapping) else
             enumerate(rule) if isinstance(rule, Sequence) else None)
    if pairs is None:
        raise ValueError(f"seg_classes must be one of {SEG_RULES}, a list or a mapping "
                         f"{{label: class}}, got {type(rule).__name__}")
    table = np.zeros(256, np.int64)
    for label, cls in pairs:
        if not isinstance(label, (int, np.integer)) or not 0 <= int(label) <= 255:
            raise ValueError(f"seg_classes: label {label!r} must be an integer in 0..255")
        if not isinstance(cls, (int, np.integer)) or not 0 <= int(cls) < n:
            raise ValueError(f"seg_classes: class {cls!r} of label {label} must be an integer "
                             f"in 0..{n - 1}")
        table[int(label)] = int(cls)
    return table.astype(np.uint8)


def read_video(path, frames: int, fps: float, size: int, *, pre_size=None) -> np.ndarray:
    """``frames`` frames sampled at ``fps`` (frame k: the one shown at time k / fps from the
    first), resized and cropped: (frames, size, size, 3) uint8. A shorter video holds its
    last frame. Decoded with PyAV; anything it cannot decode raises :class:`DataError`."""
    import av

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    picked: list = []
    last, last_arr, t0, count = None, None, None, 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            for fr in container.decode(stream):
                t = fr.time if fr.time is not None else count / rate
                count += 1
                t0 = t if t0 is None else t0
                # frame k is the last one shown by time k / fps (decoded to RGB once)
                while len(picked) < frames and t - t0 > len(picked) / fps + 1e-6:
                    last_arr = last.to_ndarray(format="rgb24") if last_arr is None else last_arr
                    picked.append(last_arr)
                if len(picked) == frames:
                    break
                last, last_arr = fr, None
            if last is None:
                raise DataError(f"{path}: no frame could be decoded")
            if len(picked) < frames:
                last_arr = last.to_ndarray(format="rgb24") if last_arr is None else last_arr
                picked += [last_arr] * (frames - len(picked))
    except DataError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as err:
        raise DataError(f"{path}: cannot decode the video ({type(err).__name__}: {err})") from None
    return np.stack([resize_crop(f, size, pre_size=pre_size) for f in picked])
