"""Real datasets (Sec. 4, 4.1): readers for the paper's data on disk, and the path from them
to training. Built on :mod:`nuwa_lib.datasets` (token sets, :class:`~nuwa_lib.datasets.
TaskData`), which never imports this module: ``datasets.task_data(task, reader)`` reaches
:func:`real_task_data` through :meth:`Reader.task_data`.

**Readers.** Each is an indexable sequence of :class:`RealSample` -- the fields of the
world's :class:`nuwa_lib.world.Sample` that real data has: ``image`` (H, W, 3) uint8 or
``video`` (T, H, W, 3) uint8, ``seg`` (H, W) / (T, H, W) uint8 class maps, ``caption`` (str
or None) and ``labels`` -- at the resolution the visual tokenizer takes, so
:func:`nuwa_lib.vqgan.encode` and the token builders read them unchanged:

=================  ==========================================================================
``coco_captions``  :class:`CocoCaptions`: a COCO caption JSON (``images`` / ``annotations``)
                   and an image folder (MSCOCO; also Conceptual Captions written in that form)
``coco_stuff``     :class:`CocoStuff`: images and PNG label maps of the same stem (COCO-Stuff)
``bair_hdf5``      :class:`BairHDF5`: VideoGPT's HDF5 layout, ``<split>_data`` (N, H, W, 3)
                   uint8 frames and ``<split>_idx`` the first frame of each video (the last
                   video ends at the end of the data)
``video_folder``   :class:`VideoFolder`: a folder of videos (searched recursively), optionally
                   with an MSR-VTT, VATEX or ``{video: caption(s)}`` caption JSON; decoded
                   with PyAV (Moments in Time, VATEX, MSR-VTT, Kinetics)
``vspw``           :class:`VSPW`: ``data/<video>/origin/*.jpg`` frames and ``mask/*.png``
                   label maps, videos listed in ``<split>.txt``
=================  ==========================================================================

*Pictures* are resized so that the shorter side is ``size`` (bicubic; label maps nearest)
and centre-cropped to ``size`` x ``size`` (Sec. 4.1: 336). ``pre_size`` first squashes them
to ``pre_size``² (bilinear): Sec. 4.2 does this with 128 for Kinetics.

*Videos* give ``frames`` frames sampled at ``fps`` (Sec. 4.1: 10 frames at 2.5 fps, i.e.
the first 4 s): frame k is the one shown at time k / fps. A video shorter than that holds
its last frame. VSPW's frames are stills at ``source_fps`` (15), so every 15 / 2.5 = 6th is
taken; BAIR has no timestamps, so ``stride`` (default 1) picks consecutive frames.

*Class maps* (COCO-Stuff: 182 classes, VSPW: 124, both with 255 = unlabelled) must fit the
sketch tokenizer's ``n_classes`` inputs (the world's 9, :data:`nuwa_lib.world.N_SEG_CLASSES`).
``seg_classes`` says how: ``"modulo"`` (the default: label mod n_classes, so neighbouring
labels stay apart and the layout of the sketch survives), ``"clip"`` (labels above
n_classes - 1 become n_classes - 1), a list (label v -> list[v]) or a mapping {label: class};
unlabelled (255) becomes 0 under both rules, and labels a table leaves out become 0.

*Validation.* A missing root, annotation file or listed file raises ``FileNotFoundError``
naming it; a malformed annotation, an unreadable picture or an undecodable video raises
:class:`DataError` naming the file and what is wrong. With ``skip_bad=True`` a listed file
that is missing, and a sample that cannot be read, are skipped with a warning naming it.

**Configuration.** A profile's ``data:`` section (:data:`DATA_DEFAULTS`) names the datasets,
their layout below each root, and the dataset each task trains on; roots come from the
environment (``NUWA_DATA_<NAME>``, e.g. ``NUWA_DATA_CC``) or from ``root:`` in a YAML file
merged over the profile (:func:`apply_override`, the CLI's ``--override``).

**Training data.** :func:`real_tokens` turns a reader into tokens (a :class:`RealTokens`,
which :class:`nuwa_lib.datasets.TaskData` takes like the world's), cached as
``artifacts/<profile>/tokens/real-<name>-<split>-<hash>.pt``; under ``torchrun`` each process
encodes its share and rank 0 merges them. :func:`prepare` builds everything a run needs --
tokenizers (a BPE trained on the datasets' own captions), tokens, :class:`TaskData` per task
-- and is what ``python -m nuwa_lib.train --real-data`` calls.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import numpy as np
import torch
import yaml
from PIL import Image

from nuwa_lib import tasks as T, world
from nuwa_lib.datasets import (TaskData, TokenCacheError, Tokenizers, WorldTokens, _small_int,
                       profile_tokenizers)
from nuwa_lib.utils import checkpoint, progress as P
from nuwa_lib.utils.cache import artifact_path, fetch, key_hash

REAL_TOKENS_FORMAT = "nuwa-real-tokens"
REAL_TOKENS_VERSION = 1
IGNORE_LABEL = 255                 # COCO-Stuff's and VSPW's "unlabelled"
SEG_RULES = ("modulo", "clip")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DataError(ValueError):
    """A dataset file that cannot be used: malformed annotations, an unreadable picture or
    video, an inconsistent HDF5 file. The message names the file."""


# --------------------------------------------------------------------------- samples
@dataclass
class RealSample:
    """One sample of a real dataset: the fields of :class:`nuwa_lib.world.Sample` that real
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
def _file(path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    return path


def _folder(path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: {what} (a folder) not found")
    return path


def load_json(path, what: str):
    """A JSON file's content; a missing file or invalid JSON names the file."""
    path = _file(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: {what} is not valid JSON ({err})") from None


def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an image file."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: cannot read the image ({err})") from None


def read_label_map(path) -> np.ndarray:
    """(H, W) uint8 labels from an 8-bit single-channel PNG (mode L or P)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P"):
                raise DataError(f"{path}: a label map must be an 8-bit single-channel PNG (mode "
                                f"L or P), got mode {im.mode}")
            return np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: label map not found") from None
    except (OSError, ValueError, SyntaxError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path}: cannot read the label map ({err})") from None


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
    """The lookup (256,) uint8 that maps a dataset's labels to ``n_classes`` sketch classes
    (see the module docstring): ``"modulo"``, ``"clip"``, a list or a {label: class} map."""
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
    times = [k / fps for k in range(frames)]
    picked: list = [None] * frames
    k, t0, last, last_arr, count = 0, None, None, None, 0
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
                t -= t0
                while k < frames and t > times[k] + 1e-6:   # frame k is the last shown by then
                    if last_arr is None:
                        last_arr = last.to_ndarray(format="rgb24")
                    picked[k] = last_arr
                    k += 1
                if k >= frames:
                    break
                last, last_arr = fr, None
            if last is not None and k < frames:
                last_arr = last_arr if last_arr is not None else last.to_ndarray(format="rgb24")
                picked[k:] = [last_arr] * (frames - k)
    except DataError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as err:
        raise DataError(f"{path}: cannot decode the video ({type(err).__name__}: {err})") from None
    if count == 0:
        raise DataError(f"{path}: no frame could be decoded")
    return np.stack([resize_crop(f, size, pre_size=pre_size) for f in picked])


def _fingerprint(path: Path) -> list:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


# --------------------------------------------------------------------------- readers
class Reader(Sequence):
    """A real dataset as a sequence of :class:`RealSample` (see the module docstring).
    Subclasses fill ``self.items`` (one entry per sample, ``(id, ...)``) and ``_read``."""
    fmt = ""
    kind = "image"            # "image" or "video"
    has_seg = False

    def __init__(self, root, *, name: str | None = None, split: str = "train", size: int = 336,
                 frames: int = 10, fps: float = 2.5, seg_classes="modulo",
                 n_classes: int = world.N_SEG_CLASSES, pre_size: int | None = None,
                 skip_bad: bool = False):
        self.root = _folder(Path(root).expanduser(), f"the root of dataset {name or self.fmt!r}")
        self.name = name or self.fmt
        self.split = str(split)
        self.size = world._check_min("size", size, 1)
        self.frames = world._check_min("frames", frames, 1)
        if not isinstance(fps, (int, float)) or isinstance(fps, bool) or fps <= 0:
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self.fps = float(fps)
        self.seg_classes, self.n_classes = seg_classes, int(n_classes)
        self.table = class_table(seg_classes, n_classes)
        self.pre_size = None if pre_size is None else world._check_min("pre_size", pre_size, 1)
        self.skip_bad = bool(skip_bad)
        self.captioned = False
        self.items: list = []
        self.sources: list[Path] = []     # annotation files the items come from (the cache key)

    # -- sequence
    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i) -> RealSample:
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"{type(self).__name__} indices must be integers, got {i!r}")
        i = int(i) + (len(self) if i < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for dataset {self.name!r} of {len(self)} "
                             f"samples")
        return self._read(i)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, {len(self)} {self.kind}s, "
                f"{self.size}x{self.size}, root={str(self.root)!r})")

    def _read(self, i: int) -> RealSample:     # pragma: no cover - abstract
        raise NotImplementedError

    # -- training data
    def task_data(self, task, tokenizers: Tokenizers, *, n: int | None = None,
                  profile: str | None = None, progress=True) -> TaskData:
        """Task ``task`` on this dataset's first ``n`` samples: :func:`real_task_data` (what
        :func:`nuwa_lib.datasets.task_data` calls when given a reader as the role)."""
        return real_task_data(task, self, tokenizers, n=n, profile=profile, progress=progress)

    def _sample(self, i, path, *, image=None, video=None, seg=None, caption=None, labels=None):
        return RealSample(image=image, video=video, seg=seg, caption=caption, role=self.name,
                          split=self.split, index=i, path=str(path), labels=dict(labels or {}))

    def _classes(self, labels: np.ndarray) -> np.ndarray:
        return self.table[labels]

    def _picture(self, path) -> np.ndarray:
        return resize_crop(read_image(path), self.size, pre_size=self.pre_size)

    def _label_map(self, path, like: np.ndarray | None = None, like_path=None) -> np.ndarray:
        labels = read_label_map(path)
        if like is not None and labels.shape != like.shape[:2]:
            raise DataError(f"{path}: label map of {labels.shape[1]}x{labels.shape[0]} does not "
                            f"match its picture {like_path} of {like.shape[1]}x{like.shape[0]}")
        return self._classes(resize_crop(labels, self.size, nearest=True, pre_size=self.pre_size))

    def _drop_missing(self, missing: list, what: str, listed_in) -> None:
        """Missing listed files: an error naming the first, or (skip_bad) a warning."""
        if not missing:
            return
        where = f" (listed in {listed_in})" if listed_in else ""
        more = f"; {len(missing) - 1} more missing" if len(missing) > 1 else ""
        if not self.skip_bad:
            raise FileNotFoundError(f"{missing[0]}: {what} not found{where}{more}; fix the "
                                    f"dataset or skip missing files with skip_bad")
        warnings.warn(f"dataset {self.name!r}: skipped {len(missing)} missing {what}(s), e.g. "
                      f"{missing[0]}{where}", stacklevel=3)

    # -- what the token builders use
    def samples(self, indices=None) -> Iterator[RealSample]:
        """The samples at ``indices`` (default: all) in order; with ``skip_bad`` one that
        cannot be read is skipped with a warning naming the file, otherwise it raises."""
        for i in range(len(self)) if indices is None else indices:
            try:
                yield self[int(i)]
            except DataError as err:
                if not self.skip_bad:
                    raise
                warnings.warn(f"dataset {self.name!r}: skipped sample {int(i)}: {err}",
                              stacklevel=2)

    def captions(self) -> list:
        """Every sample's caption in order, read from the annotations only (no decoding);
        empty for an uncaptioned dataset."""
        return []

    def key(self) -> dict:
        """What the samples depend on (token caches and runs are keyed by it)."""
        ids = hashlib.sha256(json.dumps([str(it[0]) for it in self.items]).encode()).hexdigest()
        seg = self.seg_classes if isinstance(self.seg_classes, str) else \
            hashlib.sha256(self.table.tobytes()).hexdigest()[:12]
        return {"reader": self.fmt, "name": self.name, "root": str(self.root.resolve()),
                "split": self.split, "size": self.size, "pre_size": self.pre_size,
                "frames": self.frames if self.kind == "video" else None,
                "fps": self.fps if self.kind == "video" else None,
                "seg_classes": seg if self.has_seg else None,
                "n_classes": self.n_classes if self.has_seg else None,
                "options": self._options(), "samples": len(self), "ids": ids[:16],
                "sources": [_fingerprint(p) for p in self.sources]}

    def _options(self) -> dict:
        return {}


class CocoCaptions(Reader):
    """COCO captions: ``annotations`` (a JSON with ``images`` [{id, file_name}] and
    ``annotations`` [{image_id, caption}]) and the ``images`` folder, both relative to the
    root. One sample per image with its first caption, or one per (image, caption) pair
    with ``all_captions``."""
    fmt, kind = "coco_captions", "image"

    def __init__(self, root, annotations="annotations/captions_train2017.json",
                 images="train2017", *, all_captions=False, **kw):
        super().__init__(root, **kw)
        self.captioned, self.all_captions = True, bool(all_captions)
        self.annotations = _file(self.root / annotations, "COCO caption annotations")
        self.images = _folder(self.root / images, "COCO image folder")
        self.sources = [self.annotations]
        data = load_json(self.annotations, "COCO caption annotations")
        f = self.annotations
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) or \
                not isinstance(data.get("annotations"), list):
            raise DataError(f"{f}: COCO caption annotations need the lists 'images' and "
                            f"'annotations'")
        files, order = {}, []
        for k, im in enumerate(data["images"]):
            if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
                raise DataError(f"{f}: images[{k}] needs an 'id' and a 'file_name'")
            files[im["id"]] = im["file_name"]
            order.append(im["id"])
        caps: dict = {}
        for k, a in enumerate(data["annotations"]):
            if not isinstance(a, dict) or "image_id" not in a:
                raise DataError(f"{f}: annotations[{k}] needs an 'image_id' and a 'caption'")
            if a["image_id"] not in files:
                raise DataError(f"{f}: annotations[{k}] refers to image_id {a['image_id']!r}, "
                                f"which is not in 'images'")
            cap = a.get("caption")
            if not isinstance(cap, str) or not cap.strip():
                raise DataError(f"{f}: annotations[{k}] has no caption text")
            caps.setdefault(a["image_id"], []).append(" ".join(cap.split()))
        items, missing = [], []
        for image_id in order:
            if image_id not in caps:
                continue
            path = self.images / files[image_id]
            if not path.is_file():
                missing.append(path)
                continue
            chosen = caps[image_id] if self.all_captions else caps[image_id][:1]
            items += [(f"{image_id}/{j}", path, c) for j, c in enumerate(chosen)]
        self._drop_missing(missing, "image file", f)
        self.items = items

    def _read(self, i):
        _, path, caption = self.items[i]
        return self._sample(i, path, image=self._picture(path), caption=caption)

    def captions(self):
        return [it[2] for it in self.items]

    def _options(self):
        return {"all_captions": self.all_captions}


class CocoStuff(Reader):
    """COCO-Stuff: label maps (8-bit PNG, 0..181, 255 unlabelled) in ``labels`` and the
    pictures of the same file stem in ``images``; ``seg`` holds the mapped classes."""
    fmt, kind, has_seg = "coco_stuff", "image", True

    def __init__(self, root, images="train2017", labels="stuffthingmaps_trainval2017/train2017",
                 **kw):
        super().__init__(root, **kw)
        self.images = _folder(self.root / images, "COCO-Stuff image folder")
        self.labels = _folder(self.root / labels, "COCO-Stuff label-map folder")
        pictures = {p.stem: p for p in self.images.iterdir()
                    if p.suffix.lower() in IMAGE_EXTENSIONS}
        maps = sorted(p for p in self.labels.iterdir() if p.suffix.lower() == ".png")
        if not maps:
            raise DataError(f"{self.labels}: no label maps (*.png) in the COCO-Stuff label folder")
        missing = [self.images / f"{m.stem}.jpg" for m in maps if m.stem not in pictures]
        self._drop_missing(missing, "image of a label map", self.labels)
        self.items = [(m.stem, pictures[m.stem], m) for m in maps if m.stem in pictures]

    def _read(self, i):
        _, pic, lab = self.items[i]
        raw = read_image(pic)
        seg = self._label_map(lab, raw, pic)
        return self._sample(i, pic, image=resize_crop(raw, self.size, pre_size=self.pre_size),
                            seg=seg)


class BairHDF5(Reader):
    """BAIR robot pushing in VideoGPT's HDF5 layout: ``<split>_data`` (N, H, W, 3) uint8, all
    videos' frames one after another, and ``<split>_idx`` (V,) the first frame of each
    video; video v is ``data[idx[v]:idx[v + 1]]``, the last one ending at the end of the
    data. ``frames`` frames ``stride`` apart from the first (no timestamps: ``fps`` is
    not used), resized to ``size``."""
    fmt, kind = "bair_hdf5", "video"

    def __init__(self, root, file="bair.hdf5", *, stride: int = 1, **kw):
        import h5py

        super().__init__(root, **kw)
        self.file = _file(self.root / file, "BAIR HDF5 file")
        self.stride = world._check_min("stride", stride, 1)
        self.sources = [self.file]
        self._data, self._idx = f"{self.split}_data", f"{self.split}_idx"
        try:
            with h5py.File(self.file, "r") as h5:
                keys = sorted(h5.keys())
                for k in (self._data, self._idx):
                    if k not in h5:
                        raise DataError(f"{self.file}: no dataset {k!r} (VideoGPT's layout: "
                                        f"<split>_data and <split>_idx); found {keys}")
                data, idx = h5[self._data], np.asarray(h5[self._idx])
                shape, dtype = data.shape, data.dtype
        except OSError as err:
            raise DataError(f"{self.file}: not a readable HDF5 file ({err})") from None
        if len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
            raise DataError(f"{self.file}: {self._data} must be uint8 frames (N, H, W, 3), got "
                            f"{dtype} {shape}")
        n = shape[0]
        if idx.ndim != 1 or not len(idx) or not np.issubdtype(idx.dtype, np.integer):
            raise DataError(f"{self.file}: {self._idx} must be a 1-D list of integer start "
                            f"frames, got {idx.dtype} {idx.shape}")
        if idx[0] != 0 or (np.diff(idx) <= 0).any() or idx[-1] >= n:
            raise DataError(f"{self.file}: {self._idx} must start at 0 and increase strictly "
                            f"below the {n} frames of {self._data} (the last video ends at the "
                            f"end of the data)")
        ends = np.append(idx[1:], n)
        self.items = [(v, int(a), int(b)) for v, (a, b) in enumerate(zip(idx, ends))]

    def _read(self, i):
        import h5py

        _, a, b = self.items[i]
        want = np.minimum(np.arange(self.frames) * self.stride, b - a - 1)
        try:
            with h5py.File(self.file, "r") as h5:
                clip = h5[self._data][a:a + int(want[-1]) + 1]
        except OSError as err:
            raise DataError(f"{self.file}: cannot read video {i} ({err})") from None
        video = np.stack([resize_crop(f, self.size, pre_size=self.pre_size) for f in clip[want]])
        return self._sample(i, f"{self.file}:{self._data}[{a}:{b}]", video=video)

    def _options(self):
        return {"stride": self.stride}


def video_captions(data, path) -> list:
    """[(video id, [captions])] from a caption JSON in one of three layouts: MSR-VTT
    (``{"videos": [{video_id}], "sentences": [{video_id, caption}]}``), VATEX
    (``[{"videoID", "enCap": [...]}]``) or ``{video id: caption or [captions]}``."""
    out: dict = {}
    if isinstance(data, dict) and "sentences" in data:
        if not isinstance(data["sentences"], list):
            raise DataError(f"{path}: 'sentences' must be a list (MSR-VTT layout)")
        for v in data.get("videos") or []:
            if not isinstance(v, dict) or "video_id" not in v:
                raise DataError(f"{path}: every entry of 'videos' needs a 'video_id'")
            out.setdefault(str(v["video_id"]), [])
        for k, s in enumerate(data["sentences"]):
            if not isinstance(s, dict) or "video_id" not in s or not isinstance(s.get("caption"), str):
                raise DataError(f"{path}: sentences[{k}] needs a 'video_id' and a 'caption' "
                                f"(MSR-VTT layout)")
            out.setdefault(str(s["video_id"]), []).append(s["caption"])
    elif isinstance(data, list):
        for k, v in enumerate(data):
            caps = v.get("enCap") if isinstance(v, dict) else None
            if not isinstance(v, dict) or "videoID" not in v or not isinstance(caps, list) or \
                    not all(isinstance(c, str) for c in caps):
                raise DataError(f"{path}: entry {k} needs a 'videoID' and 'enCap', a list of "
                                f"captions (VATEX layout)")
            out.setdefault(str(v["videoID"]), []).extend(caps)
    elif isinstance(data, dict):
        for vid, caps in data.items():
            caps = [caps] if isinstance(caps, str) else caps
            if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                raise DataError(f"{path}: the captions of {vid!r} must be a string or a list of "
                                f"strings")
            out[str(vid)] = list(caps)
    else:
        raise DataError(f"{path}: not a caption file (MSR-VTT {{videos, sentences}}, VATEX "
                        f"[{{videoID, enCap}}] or {{video: caption(s)}}), got a "
                        f"{type(data).__name__}")
    cleaned = [(vid, [" ".join(c.split()) for c in caps if c.strip()]) for vid, caps in out.items()]
    return [(vid, caps) for vid, caps in cleaned if caps]


class VideoFolder(Reader):
    """A folder of videos (``videos``, searched recursively for the usual extensions) with
    an optional caption JSON (``captions``, see :func:`video_captions`; ids match a file's
    stem or its path below the folder without the extension). Without captions every video
    is a sample (Moments in Time); with them, the captioned videos in the file's order,
    with their first caption (or one sample per caption with ``all_captions``)."""
    fmt, kind = "video_folder", "video"

    def __init__(self, root, videos="videos", captions=None, *, all_captions=False, **kw):
        super().__init__(root, **kw)
        self.videos = _folder(self.root / videos, "video folder")
        self.all_captions = bool(all_captions)
        files = sorted(p for p in self.videos.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
        if captions is None:
            if not files:
                raise DataError(f"{self.videos}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
            self.items = [(str(p.relative_to(self.videos).with_suffix("")), p, None) for p in files]
            return
        self.captioned = True
        self.caption_file = _file(self.root / captions, "caption file")
        self.sources = [self.caption_file]
        by_id: dict = {}
        for p in files:
            by_id.setdefault(p.stem, p)
            by_id.setdefault(str(p.relative_to(self.videos).with_suffix("")), p)
        listed = video_captions(load_json(self.caption_file, "caption file"), self.caption_file)
        if not listed:
            raise DataError(f"{self.caption_file}: no captions")
        items, missing = [], []
        for vid, caps in listed:
            if vid not in by_id:
                missing.append(self.videos / vid)
                continue
            chosen = caps if self.all_captions else caps[:1]
            items += [(f"{vid}/{j}", by_id[vid], c) for j, c in enumerate(chosen)]
        self._drop_missing(missing, f"video file ({'/'.join(VIDEO_EXTENSIONS)})",
                           self.caption_file)
        self.items = items

    def _read(self, i):
        _, path, caption = self.items[i]
        video = read_video(path, self.frames, self.fps, self.size, pre_size=self.pre_size)
        return self._sample(i, path, video=video, caption=caption)

    def captions(self):
        return [it[2] for it in self.items] if self.captioned else []

    def _options(self):
        return {"all_captions": self.all_captions}


class VSPW(Reader):
    """VSPW: the videos named in ``<split>.txt`` (one per line), each a folder
    ``data/<video>/origin/*.jpg`` of frames at ``source_fps`` (15) with label maps
    ``data/<video>/mask/<frame>.png`` (124 classes, 255 unlabelled). ``frames`` frames at
    ``fps`` (every ``source_fps / fps``-th still), pictures and mapped class maps."""
    fmt, kind, has_seg = "vspw", "video", True

    def __init__(self, root, *, data="data", list_file=None, source_fps: float = 15.0, **kw):
        super().__init__(root, **kw)
        self.data = _folder(self.root / data, "VSPW data folder")
        self.list_file = _file(self.root / (list_file or f"{self.split}.txt"), "VSPW video list")
        if not isinstance(source_fps, (int, float)) or source_fps <= 0:
            raise ValueError(f"source_fps must be a positive number, got {source_fps!r}")
        self.source_fps = float(source_fps)
        self.sources = [self.list_file]
        names = [l.strip() for l in self.list_file.read_text().splitlines() if l.strip()]
        if not names:
            raise DataError(f"{self.list_file}: lists no videos")
        missing = [self.data / n / "origin" for n in names if not (self.data / n / "origin").is_dir()]
        self._drop_missing(missing, "frame folder", self.list_file)
        self.items = [(n, self.data / n) for n in names if (self.data / n / "origin").is_dir()]

    def _read(self, i):
        name, folder = self.items[i]
        stills = sorted(p for p in (folder / "origin").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not stills:
            raise DataError(f"{folder / 'origin'}: no frames")
        step = self.source_fps / self.fps
        picks = [min(int(round(k * step)), len(stills) - 1) for k in range(self.frames)]
        video, seg = [], []
        for j in picks:
            raw = read_image(stills[j])
            seg.append(self._label_map(folder / "mask" / f"{stills[j].stem}.png", raw, stills[j]))
            video.append(resize_crop(raw, self.size, pre_size=self.pre_size))
        return self._sample(i, folder, video=np.stack(video), seg=np.stack(seg))

    def _options(self):
        return {"source_fps": self.source_fps}


READERS = {r.fmt: r for r in (CocoCaptions, CocoStuff, BairHDF5, VideoFolder, VSPW)}


# --------------------------------------------------------------------------- configuration
DATA_DEFAULTS = {
    "frames": 10,            # Sec. 4.1: 10 frames ...
    "fps": 2.5,              # ... at 2.5 fps
    "size": None,            # pictures' side; None: the visual tokenizer's canvas
    "seg_classes": "modulo",
    "skip_bad": False,
    "max_samples": None,     # samples tokenized per dataset; None: all
    "tokenizers": None,      # None (the profile's), "untrained", or {visual: FILE, sketch: FILE}
    "tasks": dict(T.PRETRAIN_ROLES),
    "datasets": {},
}
ENTRY_KEYS = {"reader", "root", "env"}


def _merge(base, over):
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def apply_override(cfg: Mapping[str, Any], path) -> dict:
    """The profile with a YAML file merged over it (mappings key by key, anything else
    replaced): dataset roots, any size or step. The profile's name stays."""
    path = _file(Path(path).expanduser(), "override file")
    try:
        over = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if over is None:
        return dict(cfg)
    if not isinstance(over, Mapping):
        raise ValueError(f"{path}: an override must be a mapping of profile sections")
    out = _merge(cfg, {k: v for k, v in over.items() if k != "name"})
    out["name"] = cfg.get("name")
    return out


def data_config(cfg: Mapping[str, Any]) -> dict:
    """The profile's ``data:`` section over :data:`DATA_DEFAULTS`, checked."""
    section = cfg.get("data") or {}
    if not isinstance(section, Mapping):
        raise ValueError("data: must be a mapping")
    unknown = set(section) - set(DATA_DEFAULTS)
    if unknown:
        raise ValueError(f"data: unknown key(s) {sorted(unknown)}; allowed: "
                         f"{', '.join(sorted(DATA_DEFAULTS))}")
    d = {**copy.deepcopy(DATA_DEFAULTS), **copy.deepcopy(dict(section))}
    for name, entry in (d["datasets"] or {}).items():
        if not isinstance(entry, Mapping) or "reader" not in entry:
            raise ValueError(f"data.datasets.{name} must be a mapping with a 'reader' (one of "
                             f"{', '.join(READERS)})")
        world._check(f"data.datasets.{name}.reader", entry["reader"], tuple(READERS))
    return d


def root_variable(name: str) -> str:
    """The environment variable that holds a dataset's root: NUWA_DATA_<NAME>."""
    return "NUWA_DATA_" + "".join(c if c.isalnum() else "_" for c in name.upper())


def dataset_root(name: str, entry: Mapping) -> Path:
    """A dataset's root: ``root:`` of its entry, else its environment variable."""
    var = entry.get("env") or root_variable(name)
    value = entry.get("root") or os.environ.get(var)
    if not value:
        raise ValueError(f"dataset {name!r} has no root: set the environment variable {var} "
                         f"to its folder, or data.datasets.{name}.root in an --override file")
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        origin = "data.datasets.%s.root" % name if entry.get("root") else var
        raise FileNotFoundError(f"{path}: the root of dataset {name!r} (from {origin}) is not a "
                                f"folder")
    return path


def open_dataset(cfg: Mapping[str, Any], name: str, *, size: int | None = None) -> Reader:
    """The reader of dataset ``name`` of the profile's ``data.datasets``."""
    d = data_config(cfg)
    world._check("dataset", name, tuple(d["datasets"]) or ("(none: data.datasets is empty)",))
    entry = dict(d["datasets"][name])
    cls = READERS[entry["reader"]]
    root = dataset_root(name, entry)
    options = {k: v for k, v in entry.items() if k not in ENTRY_KEYS}
    allowed = (set(inspect.signature(cls.__init__).parameters) |
               set(inspect.signature(Reader.__init__).parameters)) - {"self", "root", "kw", "name"}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"data.datasets.{name}: unknown key(s) {sorted(unknown)} for reader "
                         f"{entry['reader']}; allowed: {', '.join(sorted(allowed))}")
    common = {"frames": d["frames"], "fps": d["fps"], "seg_classes": d["seg_classes"],
              "skip_bad": d["skip_bad"], "size": size or d["size"] or 336}
    return cls(root, name=name, **{**common, **options})


def task_datasets(cfg: Mapping[str, Any], tasks) -> dict:
    """{task: dataset name} from ``data.tasks``."""
    d = data_config(cfg)
    out = {}
    for t in T.task_names(tasks):
        task = T.get_task(t)
        if task.counterfactual:
            raise ValueError(f"task {t} is evaluated zero-shot against counterfactual ground "
                             f"truth that only the Shapes World has; it cannot train on real data")
        name = (d["tasks"] or {}).get(t)
        if not name:
            raise ValueError(f"task {t} has no dataset: set data.tasks.{t} to one of "
                             f"data.datasets ({', '.join(d['datasets']) or 'none defined'})")
        out[t] = name
    return out


# --------------------------------------------------------------------------- tokens
@dataclass
class RealTokens(WorldTokens):
    """A real dataset's samples as tokens: :class:`~nuwa_lib.datasets.WorldTokens` with the
    dataset's name as ``role``, its ``kind`` ("image" / "video") and the reader index of
    each sample (skipped ones are absent)."""
    kind: str = "image"
    indices: Optional[torch.Tensor] = None


def real_tokens_key(reader: Reader, n: int, tokenizers: Tokenizers) -> dict:
    h = tokenizers.hashes()
    return {"version": REAL_TOKENS_VERSION, "dataset": reader.key(), "n": int(n),
            "tokenizers": {"text": h["text"] if reader.captioned else None,
                           "visual": h["visual"],
                           "sketch": h["sketch"] if reader.has_seg else None}}


def real_tokens_path(profile: str, key: Mapping) -> Path:
    d = key["dataset"]
    return artifact_path(profile, "tokens", f"real-{d['name']}-{d['split']}", key_hash(key))


def _encode(reader: Reader, indices, tokenizers: Tokenizers, progress: bool, chunk: int = 32):
    """Read and encode the samples at ``indices`` (skipping unreadable ones with
    ``skip_bad``): a dict of tensors and captions."""
    from nuwa_lib import vqgan

    sketch = tokenizers.sketch if reader.has_seg else None
    out = {"visual": [], "sketch": [], "captions": [], "indices": []}
    pics, segs = [], []

    def frames_at_once(vq):   # keep the (frames x h x w, codes) distance matrix near 512 MB
        return max(1, 2 ** 27 // (vq.config.grid ** 2 * vq.config.codebook))

    def flush():
        if pics:
            vq = tokenizers.visual
            out["visual"].append(_small_int(vqgan.encode(vq, np.stack(pics),
                                                         batch_size=frames_at_once(vq)),
                                            vq.config.codebook))
            if sketch is not None:
                out["sketch"].append(_small_int(vqgan.encode(sketch, np.stack(segs),
                                                             batch_size=frames_at_once(sketch)),
                                                sketch.config.codebook))
        pics.clear()
        segs.clear()

    bar = P.bar(total=len(indices), desc=f"tokens {reader.name}", progress=progress,
                leave=False)
    for s in reader.samples(indices):
        pics.append(s.video if s.video is not None else s.image)
        segs.append(s.seg)
        out["captions"].append(s.caption)
        out["indices"].append(s.index)
        if len(pics) == chunk:
            flush()
        bar.update(1)
    flush()
    bar.close()
    return out


def _cat(parts):
    return torch.cat(parts) if parts else None


def _dist_on(world_size: int) -> bool:
    return world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def sync(error: BaseException | None, world_size: int = 1) -> None:
    """A barrier that also tells every process whether one failed: the failed process
    re-raises its error, the others raise :class:`DataError` naming it (so no process
    waits forever for one that stopped)."""
    if not _dist_on(world_size):
        if error is not None:
            raise error
        return
    msgs: list = [None] * world_size
    torch.distributed.all_gather_object(
        msgs, None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    bad = [(r, m) for r, m in enumerate(msgs) if m]
    if bad:
        raise DataError(f"process {bad[0][0]} failed: {bad[0][1]}")


def save_real_tokens(path, rt: RealTokens) -> Path:
    return checkpoint.save(path, {"format": REAL_TOKENS_FORMAT, "version": REAL_TOKENS_VERSION,
                                  "key": rt.key, "kind": rt.kind, "captions": rt.captions,
                                  "indices": rt.indices, **rt.tensors()})


def load_real_tokens(path, key: Mapping | None = None) -> RealTokens:
    """A cached :class:`RealTokens`; one made for other data or tokenizers raises
    :class:`~nuwa_lib.datasets.TokenCacheError` naming the file and the mismatch."""
    p = checkpoint.load(path, REAL_TOKENS_FORMAT, None if key is None else {"key": key},
                        what="token cache", hint="delete it to re-encode", error=TokenCacheError)
    try:
        k = p["key"]
        return RealTokens(role=k["dataset"]["name"], split=k["dataset"]["split"],
                          n=int(p["visual"].shape[0]), key=k, visual=p["visual"],
                          captions=p.get("captions"), text_ids=p.get("text_ids"),
                          text_keep=p.get("text_keep"), sketch=p.get("sketch"),
                          path=Path(path), source="loaded", kind=p["kind"],
                          indices=p.get("indices"))
    except (KeyError, TypeError, AttributeError) as err:
        raise TokenCacheError(f"{path}: token cache lacks {err}; delete it to re-encode") from None


def _assemble(reader, key, parts, tokenizers) -> RealTokens:
    order = torch.as_tensor(parts["indices"], dtype=torch.int64).argsort()
    visual = parts["visual"]
    if visual is None or not len(visual):
        raise DataError(f"dataset {reader.name!r} ({reader.root}): no sample could be read")
    captions = [parts["captions"][i] for i in order.tolist()] if reader.captioned else None
    out = dict(role=reader.name, split=reader.split, n=len(visual), key=key,
               visual=visual[order], kind=reader.kind,
               indices=torch.as_tensor(parts["indices"], dtype=torch.int64)[order],
               captions=captions,
               sketch=None if parts["sketch"] is None else parts["sketch"][order])
    if captions is not None and tokenizers.text is not None:
        ids, keep = tokenizers.text.encode(captions)
        out.update(text_ids=ids.to(torch.int32), text_keep=keep)
    return RealTokens(**out)


def real_tokens(reader: Reader, tokenizers: Tokenizers, *, n: int | None = None,
                profile: str | None = None, rank: int = 0, world_size: int = 1,
                progress=True) -> RealTokens:
    """The first ``n`` samples (default: all) of a reader as tokens -- pictures through the
    visual tokenizer, class maps through the sketch tokenizer (when given), captions
    through the text tokenizer (when given) -- loaded from
    ``artifacts/<profile>/tokens/real-<name>-<split>-<hash>.pt`` when cached, otherwise
    encoded and (with a profile) cached. Under ``torchrun`` (``rank`` / ``world_size``,
    a profile required) every process encodes every world_size-th sample and rank 0
    merges the shares into the cache, which all then read."""
    if not isinstance(reader, Reader):
        raise ValueError(f"reader must be a nuwa_lib.readers.Reader, got {type(reader).__name__}")
    if not isinstance(tokenizers, Tokenizers) or tokenizers.visual is None:
        raise ValueError("real_tokens needs Tokenizers(visual=...) (and text= / sketch= for "
                         "captions / class maps)")
    canvas = tokenizers.visual.config.canvas
    if reader.size != canvas:
        raise ValueError(f"dataset {reader.name!r} gives {reader.size}x{reader.size} pictures but "
                         f"the visual tokenizer takes {canvas}x{canvas}: open it with size={canvas}")
    if reader.has_seg and tokenizers.sketch is not None and \
            tokenizers.sketch.config.canvas != canvas:
        raise ValueError(f"the sketch tokenizer takes {tokenizers.sketch.config.canvas}² maps, "
                         f"the visual one {canvas}²: they must match")
    total = len(reader) if n is None else min(world._check_min("n", n, 1), len(reader))
    key = real_tokens_key(reader, total, tokenizers)
    if world_size > 1 and profile is None:
        raise ValueError("encoding under torchrun needs a profile (the shares meet in its cache)")
    if profile is None:
        return _assemble(reader, key, _joined(_encode(reader, range(total), tokenizers, progress)),
                         tokenizers)
    path = real_tokens_path(profile, key)

    def build():
        if world_size > 1:
            return _encode_in_shares(reader, key, path, tokenizers, total, rank, world_size,
                                     progress)
        rt = _assemble(reader, key, _joined(_encode(reader, range(total), tokenizers, progress)),
                       tokenizers)
        save_real_tokens(path, rt)
        rt.path = path
        return rt

    return fetch(path, lambda p: load_real_tokens(p, key), build)[0]


def _encode_in_shares(reader, key, path, tokenizers, total, rank, world_size, progress):
    """Under ``torchrun``: every process encodes every world_size-th sample into a share
    file, rank 0 merges the shares into the cache at ``path``, and all read it back."""
    share = path.with_name(f".{path.stem}.share{rank}of{world_size}.pt")
    error = None
    try:
        parts = _encode(reader, range(rank, total, world_size), tokenizers, progress and rank == 0)
        checkpoint.save(share, {"format": "nuwa-real-token-share", **_joined(parts)})
    except Exception as err:  # noqa: BLE001 - every process must learn of it (sync)
        error = err
    sync(error, world_size)
    if rank == 0:
        error = None
        try:
            shares = [torch.load(path.with_name(f".{path.stem}.share{r}of{world_size}.pt"),
                                 weights_only=True) for r in range(world_size)]
            merged = {k: _cat([s[k] for s in shares if s[k] is not None])
                      for k in ("visual", "sketch")}
            merged["captions"] = [c for s in shares for c in s["captions"]]
            merged["indices"] = [i for s in shares for i in s["indices"]]
            save_real_tokens(path, _assemble(reader, key, merged, tokenizers))
            for r in range(world_size):
                path.with_name(f".{path.stem}.share{r}of{world_size}.pt").unlink(missing_ok=True)
        except Exception as err:  # noqa: BLE001
            error = err
        sync(error, world_size)
    else:
        sync(None, world_size)
    return load_real_tokens(path, key)


def _joined(parts) -> dict:
    return {"visual": _cat(parts["visual"]), "sketch": _cat(parts["sketch"]),
            "captions": list(parts["captions"]), "indices": list(parts["indices"])}


def real_task_data(task, reader: Reader, tokenizers: Tokenizers, *, n: int | None = None,
                   profile: str | None = None, progress=True, tokens: RealTokens | None = None
                   ) -> TaskData:
    """Task ``task`` on a real dataset: :func:`real_tokens` viewed through
    :class:`~nuwa_lib.datasets.TaskData` (batches for the model, prime masks)."""
    t = T.get_task(task)
    if t.counterfactual:
        raise ValueError(f"task {t.name} is evaluated zero-shot against counterfactual ground "
                         f"truth that only the Shapes World has; it has no real training data")
    if tokens is None:
        tokens = real_tokens(reader, tokenizers, n=n, profile=profile, progress=progress)
    none_ids = tokenizers.none_condition()[0] if t.reads_none else None
    return TaskData(t, tokens, none_ids)


# --------------------------------------------------------------------------- tokenizers
def real_text_tokenizer(cfg: Mapping[str, Any], readers, *, profile: str | None = None):
    """The lowercased BPE of the ``text:`` section trained on the datasets' own captions
    (``text.captions_per_role`` of each captioned dataset, plus the word "None"), cached
    as ``artifacts/<profile>/text/bpe-real-<hash>.json``."""
    from nuwa_lib import text

    profile = profile or cfg.get("name")
    config = text.TextConfig.from_profile(cfg)
    corpus = []
    for r in readers:
        corpus += r.captions()[: config.captions_per_role]
    corpus.append(text.NONE_CAPTION)
    digest = hashlib.sha256(json.dumps(corpus).encode()).hexdigest()
    key = {"version": text.TEXT_VERSION, "vocab_size": config.vocab_size, "corpus": digest}
    path = None if profile is None else artifact_path(profile, "text", "bpe-real", key_hash(key),
                                                      ".json")
    if path is None:
        return text.TextTokenizer(text.train_bpe(config, corpus), config, None)

    def build():
        tok = text.TextTokenizer(text.train_bpe(config, corpus), config, path)
        tok.save(path)
        return tok

    return fetch(path, lambda p: text.TextTokenizer.load(p, config), build)[0]


def visual_canvas(cfg: Mapping[str, Any]) -> int:
    """The side of the pictures the run's visual tokenizer takes (``data.tokenizers.visual``
    file, else the profile's ``vqgan.tokenizer``)."""
    from nuwa_lib import vqgan

    spec = data_config(cfg)["tokenizers"]
    if isinstance(spec, Mapping) and spec.get("visual"):
        return int(vqgan.load_tokenizer(Path(spec["visual"]).expanduser())[0].config.canvas)
    name = (cfg.get("vqgan") or {}).get("tokenizer")
    configs = vqgan.configs_from_profile(cfg)
    world._check("vqgan.tokenizer", name, tuple(configs))
    return configs[name].canvas


def real_tokenizers(cfg: Mapping[str, Any], readers, *, sketch: bool, untrained=False,
                    profile: str | None = None, progress=True) -> Tokenizers:
    """Tokenizers for real data: the BPE of :func:`real_text_tokenizer`, and VQ models from
    ``data.tokenizers`` -- files written by :func:`nuwa_lib.vqgan.save_tokenizer`
    ({visual: FILE, sketch: FILE}), ``untrained`` (freshly initialised, seeded: dry runs and
    tests), or (None) the profile's own, which :mod:`nuwa_lib.vqgan` trains on the Shapes
    World and which therefore exist only at the world's canvases (32, 64)."""
    from nuwa_lib import vqgan

    profile = profile or cfg.get("name")
    spec = data_config(cfg)["tokenizers"]
    if spec is None and not untrained and visual_canvas(cfg) not in world.CANVASES:
        raise ValueError(
            f"the profile's visual tokenizer takes {visual_canvas(cfg)}² pictures, and "
            f"nuwa_lib.vqgan trains tokenizers on the Shapes World, which renders only "
            f"{' or '.join(map(str, world.CANVASES))} px: give trained checkpoints in "
            f"data.tokenizers {{visual: FILE, sketch: FILE}} (written by "
            f"nuwa_lib.vqgan.save_tokenizer), or data.tokenizers: untrained for a dry run")
    text_tok = real_text_tokenizer(cfg, [r for r in readers if r.captioned], profile=profile)
    if untrained or spec == "untrained":
        return profile_tokenizers(cfg, profile=profile, sketch=sketch, untrained=True,
                                  progress=progress, text_tokenizer=text_tok)
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"visual", "sketch"}
        if unknown or not spec.get("visual") or (sketch and not spec.get("sketch")):
            raise ValueError("data.tokenizers must name checkpoint files {visual: FILE"
                             + (", sketch: FILE" if sketch else "") + f"}}, got {dict(spec)}")
        vis = vqgan.load_tokenizer(_file(Path(spec["visual"]).expanduser(),
                                         "visual tokenizer checkpoint"))[0]
        sk = vqgan.load_tokenizer(_file(Path(spec["sketch"]).expanduser(),
                                        "sketch tokenizer checkpoint"))[0] if sketch else None
        return Tokenizers(text_tok, vis, sk)
    if spec is not None:
        raise ValueError(f"data.tokenizers must be null, 'untrained' or {{visual: FILE, "
                         f"sketch: FILE}}, got {spec!r}")
    return profile_tokenizers(cfg, profile=profile, sketch=sketch, progress=progress,
                              text_tokenizer=text_tok)


# --------------------------------------------------------------------------- a run
def prepare(cfg: Mapping[str, Any], tasks=T.PRETRAIN_TASKS, *, rank: int = 0, world_size: int = 1,
            device: str | None = None, untrained=False, max_samples: int | None = None,
            progress=True):
    """Everything a training run on real data needs: ``(tokenizers, {task: TaskData},
    data key)``. Each task reads the dataset ``data.tasks`` names for it; the text BPE is
    trained on the datasets' captions (rank 0 first, the others read its cache); tokens
    are encoded once per dataset (every process its share, on ``device``) and cached. The
    data key (frames, fps, size and every dataset's key) goes into the run's hash."""
    profile = cfg.get("name")
    if not profile:
        raise ValueError("cfg has no 'name' (the profile)")
    d = data_config(cfg)
    names = task_datasets(cfg, tasks)
    sketch = any(T.get_task(t).reads_sketch for t in names)
    size = d["size"] or visual_canvas(cfg)
    readers = {name: open_dataset(cfg, name, size=size) for name in dict.fromkeys(names.values())}
    for t, name in names.items():
        task, r = T.get_task(t), readers[name]
        if task.video != (r.kind == "video"):
            raise ValueError(f"task {t} needs {task.target}s but dataset {name!r} "
                             f"({r.fmt}) holds {r.kind}s (data.tasks.{t})")
        if task.reads_caption and not r.captioned:
            raise ValueError(f"task {t} reads captions but dataset {name!r} has none: give its "
                             f"caption file (data.datasets.{name}) or another dataset")
        if task.reads_sketch and not r.has_seg:
            raise ValueError(f"task {t} reads sketches but dataset {name!r} ({r.fmt}) has no "
                             f"class maps")
    build = lambda quiet: real_tokenizers(cfg, list(readers.values()), sketch=sketch,  # noqa: E731
                                          untrained=untrained, progress=progress and not quiet)
    tokenizers, error = None, None
    if rank == 0:
        try:
            tokenizers = build(False)
        except Exception as err:  # noqa: BLE001 - the others must not wait for rank 0
            error = err
    sync(error, world_size)
    if rank != 0:
        tokenizers = build(True)
    if device is not None and str(device) != "cpu":
        for vq in (tokenizers.visual, tokenizers.sketch):
            if vq is not None:
                vq.to(device)
    n = max_samples or d["max_samples"]
    try:
        tokens = {name: real_tokens(r, tokenizers, n=n, profile=profile, rank=rank,
                                    world_size=world_size, progress=progress)
                  for name, r in readers.items()}
    finally:
        for vq in (tokenizers.visual, tokenizers.sketch):
            if vq is not None:
                vq.to("cpu")
    data = {t: real_task_data(t, readers[name], tokenizers, tokens=tokens[name])
            for t, name in names.items()}
    key = {"frames": d["frames"], "fps": d["fps"], "size": size,
           "datasets": {t: tokens[name].key for t, name in names.items()}}
    return tokenizers, data, key
