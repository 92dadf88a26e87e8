"""Real datasets (Sec. 4, 4.1): readers for the paper's data on disk. Files are decoded by
:mod:`nuwa_lib.data.media`; a profile's ``data:`` section (roots from ``NUWA_DATA_<NAME>`` or
an override file) opens readers (:mod:`nuwa_lib.data.catalog`); their tokens are
:mod:`nuwa_lib.tokenizers.real_tokens`; :func:`nuwa_lib.training.task_data.prepare` (what
``python -m nuwa_lib.training.cli --real-data`` calls) turns them into training data. This
module imports none of the higher ones.

**Readers.** Each is an indexable sequence of :class:`RealSample` (the fields of the world's
:class:`nuwa_lib.data.world.Sample` that real data has) at the resolution the visual
tokenizer takes, so :func:`nuwa_lib.tokenizers.vqgan.encode` and the token builders read them
unchanged. Each class documents its layout on disk:

=================  ==========================================================================
``coco_captions``  :class:`CocoCaptions`: MSCOCO; also Conceptual Captions written that way
``coco_stuff``     :class:`CocoStuff`: COCO-Stuff's images and label maps
``bair_hdf5``      :class:`BairHDF5`: BAIR robot pushing in VideoGPT's HDF5 layout
``video_folder``   :class:`VideoFolder`: a folder of videos decoded with PyAV, optionally
                   captioned (Moments in Time, VATEX, MSR-VTT, Kinetics)
``vspw``           :class:`VSPW`: VSPW's frame folders and label maps
=================  ==========================================================================

*Pictures* are resized so that the shorter side is ``size`` (bicubic; label maps nearest)
and centre-cropped to ``size`` x ``size`` (Sec. 4.1: 336). ``pre_size`` first squashes them
to ``pre_size``² (bilinear): Sec. 4.2 does this with 128 for Kinetics.

*Videos* give ``frames`` frames sampled at ``fps`` (Sec. 4.1: 10 frames at 2.5 fps, i.e.
the first 4 s): frame k is the one shown at time k / fps. A video shorter than that holds
its last frame. VSPW's frames are stills at ``source_fps`` (15), so every 15 / 2.5 = 6th is
taken; BAIR has no timestamps, so ``stride`` (default 1) picks consecutive frames.

*Class maps* (COCO-Stuff: 182 classes, VSPW: 124, both with 255 = unlabelled) must fit the
sketch tokenizer's ``n_classes`` inputs (the world's 9, :data:`nuwa_lib.data.world.N_SEG_CLASSES`).
``seg_classes`` says how: ``"modulo"`` (the default: label mod n_classes, so neighbouring
labels stay apart and the layout of the sketch survives), ``"clip"`` (labels above
n_classes - 1 become n_classes - 1), a list (label v -> list[v]) or a mapping {label: class};
unlabelled (255) becomes 0 under both rules, and labels a table leaves out become 0.

*Validation.* A missing root, annotation file or listed file raises ``FileNotFoundError``
naming it; a malformed annotation, an unreadable picture or an undecodable video raises
:class:`DataError` naming the file and what is wrong. With ``skip_bad=True`` a listed file
that is missing, and a sample that cannot be read, are skipped with a warning naming it.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Iterator

import numpy as np

from . import world
from .media import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    DataError,
    RealSample,
    _file,
    class_table,
    load_json,
    read_picture,
    read_video,
    resize_crop,
)


# --------------------------------------------------------------------------- readers
class Reader(Sequence):
    """A real dataset as a sequence of :class:`RealSample` (see the module docstring).
    Subclasses fill ``self.items`` (one entry per sample, ``(id, ...)``; ``(id, path,
    caption)`` when captioned) and ``_read``; ``options`` names their own settings that
    the samples depend on (part of :meth:`key`)."""
    fmt = ""
    kind = "image"            # "image" or "video"
    has_seg = False
    options: tuple = ()

    def __init__(self, root, *, name: str | None = None, split: str = "train", size: int = 336,
                 frames: int = 10, fps: float = 2.5, seg_classes="modulo",
                 n_classes: int = world.N_SEG_CLASSES, pre_size: int | None = None,
                 skip_bad: bool = False):
        self.name = name or self.fmt
        self.root = _file(Path(root).expanduser(), f"the root of dataset {self.name!r}",
                          folder=True)
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

    def _sample(self, i, path, *, image=None, video=None, seg=None, caption=None):
        return RealSample(image=image, video=video, seg=seg, caption=caption, role=self.name,
                          split=self.split, index=i, path=str(path))

    def _fit(self, pic: np.ndarray, nearest=False) -> np.ndarray:
        return resize_crop(pic, self.size, nearest=nearest, pre_size=self.pre_size)

    def _with_map(self, picture, label_map) -> tuple:
        """A picture and its label map (which must be the same size), both fitted, the
        map's labels mapped to classes."""
        raw, labels = read_picture(picture), read_picture(label_map, label_map=True)
        if labels.shape != raw.shape[:2]:
            raise DataError(f"{label_map}: label map of {labels.shape[1]}x{labels.shape[0]} does "
                            f"not match its picture {picture} of {raw.shape[1]}x{raw.shape[0]}")
        return self._fit(raw), self.table[self._fit(labels, nearest=True)]

    def _drop_missing(self, missing: list, what: str, listed_in) -> None:
        """Missing listed files: an error naming the first, or (skip_bad) a warning."""
        if not missing:
            return
        where = f" (listed in {listed_in})"
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
        return [it[2] for it in self.items] if self.captioned else []

    def key(self) -> dict:
        """What the samples depend on (token caches and runs are keyed by it)."""
        ids = hashlib.sha256(json.dumps([str(it[0]) for it in self.items]).encode()).hexdigest()
        seg = self.seg_classes if isinstance(self.seg_classes, str) else \
            hashlib.sha256(self.table.tobytes()).hexdigest()[:12]
        video = self.kind == "video"
        return {"reader": self.fmt, "name": self.name, "root": str(self.root.resolve()),
                "split": self.split, "size": self.size, "pre_size": self.pre_size,
                "frames": self.frames if video else None, "fps": self.fps if video else None,
                "seg_classes": seg if self.has_seg else None,
                "n_classes": self.n_classes if self.has_seg else None,
                "options": {k: getattr(self, k) for k in self.options},
                "samples": len(self), "ids": ids[:16],
                "sources": [[p.name, st.st_size, st.st_mtime_ns]
                            for p in self.sources for st in [p.stat()]]}


class CocoCaptions(Reader):
    """COCO captions: ``annotations`` (a JSON with ``images`` [{id, file_name}] and
    ``annotations`` [{image_id, caption}]) and the ``images`` folder, both relative to the
    root. One sample per image with its first caption, or one per (image, caption) pair
    with ``all_captions``."""
    fmt, kind, options = "coco_captions", "image", ("all_captions",)

    def __init__(self, root, annotations="annotations/captions_train2017.json",
                 images="train2017", *, all_captions=False, **kw):
        super().__init__(root, **kw)
        self.captioned, self.all_captions = True, bool(all_captions)
        f = self.annotations = _file(self.root / annotations, "COCO caption annotations")
        self.images = _file(self.root / images, "COCO image folder", folder=True)
        self.sources = [f]
        data = load_json(f, "COCO caption annotations")
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) or \
                not isinstance(data.get("annotations"), list):
            raise DataError(f"{f}: COCO caption annotations need the lists 'images' and "
                            f"'annotations'")
        files = {}
        for k, im in enumerate(data["images"]):
            if not isinstance(im, dict) or "id" not in im or \
                    not isinstance(im.get("file_name"), str):
                raise DataError(f"{f}: images[{k}] needs an 'id' and a 'file_name'")
            files[im["id"]] = im["file_name"]
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
        missing = []
        for image_id in (im["id"] for im in data["images"] if im["id"] in caps):
            path = self.images / files[image_id]
            if not path.is_file():
                missing.append(path)
                continue
            chosen = caps[image_id] if self.all_captions else caps[image_id][:1]
            self.items += [(f"{image_id}/{j}", path, c) for j, c in enumerate(chosen)]
        self._drop_missing(missing, "image file", f)

    def _read(self, i):
        _, path, caption = self.items[i]
        return self._sample(i, path, image=self._fit(read_picture(path)), caption=caption)


class CocoStuff(Reader):
    """COCO-Stuff: label maps (8-bit PNG, 0..181, 255 unlabelled) in ``labels`` and the
    pictures of the same file stem in ``images``; ``seg`` holds the mapped classes."""
    fmt, kind, has_seg = "coco_stuff", "image", True

    def __init__(self, root, images="train2017", labels="stuffthingmaps_trainval2017/train2017",
                 **kw):
        super().__init__(root, **kw)
        self.images = _file(self.root / images, "COCO-Stuff image folder", folder=True)
        self.labels = _file(self.root / labels, "COCO-Stuff label-map folder", folder=True)
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
        image, seg = self._with_map(pic, lab)
        return self._sample(i, pic, image=image, seg=seg)


class BairHDF5(Reader):
    """BAIR robot pushing in VideoGPT's HDF5 layout: ``<split>_data`` (N, H, W, 3) uint8, all
    videos' frames one after another, and ``<split>_idx`` (V,) the first frame of each
    video; video v is ``data[idx[v]:idx[v + 1]]``, the last one ending at the end of the
    data. ``frames`` frames ``stride`` apart from the first (no timestamps: ``fps`` is
    not used), resized to ``size``."""
    fmt, kind, options = "bair_hdf5", "video", ("stride",)

    def __init__(self, root, file="bair.hdf5", *, stride: int = 1, **kw):
        import h5py

        super().__init__(root, **kw)
        self.file = _file(self.root / file, "BAIR HDF5 file")
        self.stride = world._check_min("stride", stride, 1)
        self.sources = [self.file]
        self._data, self._idx = f"{self.split}_data", f"{self.split}_idx"
        try:
            with h5py.File(self.file, "r") as h5:
                for k in (self._data, self._idx):
                    if k not in h5:
                        raise DataError(f"{self.file}: no dataset {k!r} (VideoGPT's layout: "
                                        f"<split>_data and <split>_idx); found {sorted(h5)}")
                shape, dtype = h5[self._data].shape, h5[self._data].dtype
                idx = np.asarray(h5[self._idx])
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
        video = np.stack([self._fit(f) for f in clip[want]])
        return self._sample(i, f"{self.file}:{self._data}[{a}:{b}]", video=video)


def video_captions(data, path) -> list:
    """[(video id, [captions])] from a caption JSON in one of three layouts: MSR-VTT
    (``{"videos": [{video_id}], "sentences": [{video_id, caption}]}``), VATEX
    (``[{"videoID", "enCap": [...]}]``) or ``{video id: caption or [captions]}``."""
    pairs = []
    if isinstance(data, dict) and "sentences" in data:
        if not isinstance(data["sentences"], list):
            raise DataError(f"{path}: 'sentences' must be a list (MSR-VTT layout)")
        for v in data.get("videos") or []:
            if not isinstance(v, dict) or "video_id" not in v:
                raise DataError(f"{path}: every entry of 'videos' needs a 'video_id'")
            pairs.append((v["video_id"], []))
        for k, s in enumerate(data["sentences"]):
            if not isinstance(s, dict) or "video_id" not in s or \
                    not isinstance(s.get("caption"), str):
                raise DataError(f"{path}: sentences[{k}] needs a 'video_id' and a 'caption' "
                                f"(MSR-VTT layout)")
            pairs.append((s["video_id"], [s["caption"]]))
    elif isinstance(data, list):
        for k, v in enumerate(data):
            caps = v.get("enCap") if isinstance(v, dict) else None
            if not isinstance(v, dict) or "videoID" not in v or not isinstance(caps, list) or \
                    not all(isinstance(c, str) for c in caps):
                raise DataError(f"{path}: entry {k} needs a 'videoID' and 'enCap', a list of "
                                f"captions (VATEX layout)")
            pairs.append((v["videoID"], caps))
    elif isinstance(data, dict):
        for vid, caps in data.items():
            caps = [caps] if isinstance(caps, str) else caps
            if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                raise DataError(f"{path}: the captions of {vid!r} must be a string or a list of "
                                f"strings")
            pairs.append((vid, caps))
    else:
        raise DataError(f"{path}: not a caption file (MSR-VTT {{videos, sentences}}, VATEX "
                        f"[{{videoID, enCap}}] or {{video: caption(s)}}), got a "
                        f"{type(data).__name__}")
    out: dict = {}
    for vid, caps in pairs:
        out.setdefault(str(vid), []).extend(" ".join(c.split()) for c in caps if c.strip())
    return [(vid, caps) for vid, caps in out.items() if caps]


class VideoFolder(Reader):
    """A folder of videos (``videos``, searched recursively for the usual extensions) with
    an optional caption JSON (``captions``, see :func:`video_captions`; ids match a file's
    stem or its path below the folder without the extension). Without captions every video
    is a sample (Moments in Time); with them, the captioned videos in the file's order,
    with their first caption (or one sample per caption with ``all_captions``)."""
    fmt, kind, options = "video_folder", "video", ("all_captions",)

    def __init__(self, root, videos="videos", captions=None, *, all_captions=False, **kw):
        super().__init__(root, **kw)
        self.videos = _file(self.root / videos, "video folder", folder=True)
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
        missing = [self.videos / vid for vid, _ in listed if vid not in by_id]
        for vid, caps in listed:
            if vid in by_id:
                chosen = caps if self.all_captions else caps[:1]
                self.items += [(f"{vid}/{j}", by_id[vid], c) for j, c in enumerate(chosen)]
        self._drop_missing(missing, f"video file ({'/'.join(VIDEO_EXTENSIONS)})",
                           self.caption_file)

    def _read(self, i):
        _, path, caption = self.items[i]
        video = read_video(path, self.frames, self.fps, self.size, pre_size=self.pre_size)
        return self._sample(i, path, video=video, caption=caption)


class VSPW(Reader):
    """VSPW: the videos named in ``<split>.txt`` (one per line), each a folder
    ``data/<video>/origin/*.jpg`` of frames at ``source_fps`` (15) with label maps
    ``data/<video>/mask/<frame>.png`` (124 classes, 255 unlabelled). ``frames`` frames at
    ``fps`` (every ``source_fps / fps``-th still), pictures and mapped class maps."""
    fmt, kind, has_seg, options = "vspw", "video", True, ("source_fps",)

    def __init__(self, root, *, data="data", list_file=None, source_fps: float = 15.0, **kw):
        super().__init__(root, **kw)
        self.data = _file(self.root / data, "VSPW data folder", folder=True)
        self.list_file = _file(self.root / (list_file or f"{self.split}.txt"), "VSPW video list")
        if not isinstance(source_fps, (int, float)) or source_fps <= 0:
            raise ValueError(f"source_fps must be a positive number, got {source_fps!r}")
        self.source_fps = float(source_fps)
        self.sources = [self.list_file]
        names = [l.strip() for l in self.list_file.read_text().splitlines() if l.strip()]
        if not names:
            raise DataError(f"{self.list_file}: lists no videos")
        present = {n: (self.data / n / "origin").is_dir() for n in names}
        self._drop_missing([self.data / n / "origin" for n in names if not present[n]],
                           "frame folder", self.list_file)
        self.items = [(n, self.data / n) for n in names if present[n]]

    def _read(self, i):
        _, folder = self.items[i]
        stills = sorted(p for p in (folder / "origin").iterdir()
                        if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not stills:
            raise DataError(f"{folder / 'origin'}: no frames")
        step = self.source_fps / self.fps
        picks = [stills[min(int(round(k * step)), len(stills) - 1)] for k in range(self.frames)]
        video, seg = map(np.stack, zip(*[self._with_map(p, folder / "mask" / f"{p.stem}.png")
                                         for p in picks]))
        return self._sample(i, folder, video=video, seg=seg)


READERS = {r.fmt: r for r in (CocoCaptions, CocoStuff, BairHDF5, VideoFolder, VSPW)}
