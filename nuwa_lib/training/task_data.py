"""A task's training examples: :class:`TaskData` views a token set (world or real) as the
:class:`~nuwa_lib.model.config.Condition` and target tokens of one task, and :func:`prepare`
builds everything a real-data run needs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional

import numpy as np
import torch

from ..data import splits, tasks as T, world
from ..data.catalog import data_config, open_dataset, task_datasets
from ..data.readers import Reader
from ..model.config import Condition
from ..tokenizers.real_tokens import (
    RealTokens,
    real_tokenizers,
    real_tokens,
    sync,
    visual_canvas,
)
from ..tokenizers.token_sets import Tokenizers, WorldTokens, world_tokens


# --------------------------------------------------------------------------- task view
@dataclass
class Batch:
    """One batch of a task: the encoder's condition, the target tokens (B, s, h, w) int64,
    the prime mask (B, s, h, w) (True = given to the decoder; used by sampling, not by the
    loss) and ``given`` (B, s, h, w): the tokens the prime is read from (the original
    picture for TI2I / TV2V, the target itself otherwise)."""
    task: str
    cond: Condition
    target: torch.Tensor
    prime: torch.Tensor
    given: torch.Tensor
    indices: torch.Tensor

    def to(self, device) -> "Batch":
        return Batch(self.task, self.cond.to(device), self.target.to(device),
                     self.prime.to(device), self.given.to(device), self.indices)


def trim_text(ids: torch.Tensor, keep: torch.Tensor):
    """(ids, keep) cut to the longest real caption of the batch; keep becomes None when no
    token is padding. Exact: padded keys are masked anyway and text positions are absolute."""
    n = int(keep.sum(1).max())
    ids, keep = ids[:, :n], keep[:, :n]
    return ids, (None if bool(keep.all()) else keep)


@dataclass
class TaskData(torch.utils.data.Dataset):
    """Task ``task`` on the tokens of one role: item i is a dict of the sample's tensors,
    :meth:`batch` gives a model-ready :class:`Batch`."""
    task: T.Task
    tokens: WorldTokens
    none_ids: Optional[torch.Tensor] = None     # (1, n) ids of the word "None" (encoder "none")
    frames: int = 1                             # prime frames of "first frame" tasks

    def __post_init__(self):
        self.task = T.get_task(self.task)
        t, wt = self.task, self.tokens
        kind = getattr(wt, "kind", None) or splits.ROLES[wt.role].kind   # RealTokens.kind
        if (kind == "video") != t.video:
            raise ValueError(f"task {t.name} has {t.target} targets; role {wt.role!r} holds "
                             f"{kind}s")
        if t.counterfactual != (wt.variant is not None) or (wt.variant and wt.variant != t.name):
            raise ValueError(f"task {t.name} needs tokens of variant "
                             f"{t.name if t.counterfactual else None!r}, got {wt.variant!r}")
        if t.reads_caption and wt.text_ids is None:
            raise ValueError(f"task {t.name} reads captions; role {wt.role!r} has none encoded")
        if t.reads_sketch and wt.sketch is None:
            raise ValueError(f"task {t.name} reads sketches; the tokens of role {wt.role!r} have "
                             f"none (a role with sketches and Tokenizers(sketch=...))")
        if t.reads_none and self.none_ids is None:
            raise ValueError(f'task {t.name} reads the word "None": pass none_ids '
                             f"(Tokenizers.none_condition())")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def target_grid(self) -> tuple:
        return self.tokens.grid

    def __getitem__(self, i) -> dict:
        b = self.batch([i])
        out = {"target": b.target[0], "prime": b.prime[0], "given": b.given[0]}
        if b.cond.kind == "text":
            out["text_ids"] = b.cond.tokens[0]
        else:
            out["sketch"] = b.cond.tokens[0].view(b.cond.grid)
        return out

    def without_condition(self, batch: Batch, rows: torch.Tensor) -> Batch:
        """``batch`` with the text condition of ``rows`` (bool (B,)) replaced by the word
        "None" (Eq. 16's empty condition): what condition dropout trains, so that sampling can
        guide with the unconditional logits."""
        if not self.task.reads_caption or self.none_ids is None:
            raise ValueError(f"task {self.task.name}: only a caption can be dropped, and it needs "
                             f'the ids of "None" (none_ids)')
        ids, keep = batch.cond.tokens, batch.cond.keep
        keep = torch.ones_like(ids, dtype=torch.bool) if keep is None else keep
        none = self.none_ids.to(ids.device).long()[0]
        n = max(ids.shape[1], len(none))
        ids = torch.nn.functional.pad(ids, (0, n - ids.shape[1]))
        keep = torch.nn.functional.pad(keep, (0, n - keep.shape[1]))
        rows = rows.to(ids.device)
        ids[rows] = torch.nn.functional.pad(none, (0, n - len(none)))
        keep[rows] = torch.arange(n, device=ids.device) < len(none)
        ids, keep = trim_text(ids, keep)
        return replace(batch, cond=Condition.from_text(ids, keep))

    def batch(self, indices) -> Batch:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        if idx.dim() != 1 or not len(idx):
            raise ValueError(f"indices must be a non-empty 1-D sequence, got {indices!r}")
        if int(idx.min()) < 0 or int(idx.max()) >= len(self):
            raise IndexError(f"indices must lie in [0, {len(self)}), got values in "
                             f"[{int(idx.min())}, {int(idx.max())}]")
        t, wt = self.task, self.tokens
        target = wt.visual[idx].long()
        if t.reads_sketch:
            cond = Condition.from_sketch(wt.sketch[idx].long())
        elif t.reads_none:
            cond = Condition.from_text(self.none_ids.expand(len(idx), -1).long())
        else:
            cond = Condition.from_text(*trim_text(wt.text_ids[idx].long(), wt.text_keep[idx]))
        given = wt.given[idx].long() if wt.given is not None else target
        if t.prime == "rows above the edit":
            prime = T.prime_mask(t, target.shape[1:], rows=wt.edit_rows[idx].long())
        else:
            prime = T.prime_mask(t, target.shape[1:], frames=self.frames)
            prime = prime.expand(len(idx), *prime.shape)
        return Batch(t.name, cond, target, prime, given, idx)


def task_data(task, role: str | None = None, split: str = "train", n: int = 256,
              tokenizers: Tokenizers | None = None, *, seed=0, canvas=32, frames=8,
              profile: str | None = None, progress=True) -> TaskData:
    """Task ``task`` on ``n`` samples of ``role``'s ``split`` (default role: the task's row in
    the table), tokens through :func:`world_tokens` (cached with a profile). ``role`` may
    also be a real dataset's reader (:mod:`nuwa_lib.data.readers`): then :func:`real_task_data`
    on its first ``n`` samples (``split`` and the world settings do not apply)."""
    task = T.get_task(task)
    if isinstance(role, Reader):       # a real dataset
        return real_task_data(task, role, tokenizers, n=n, profile=profile, progress=progress)
    role = role or task.role
    wt = world_tokens(role, split, n, tokenizers, seed=seed, canvas=canvas, frames=frames,
                      variant=task.name if task.counterfactual else None, profile=profile,
                      progress=progress)
    # captioned tasks keep "None" too: training may drop their caption for it (guidance)
    none_ids = tokenizers.none_condition()[0] if task.reads_none or task.reads_caption else None
    return TaskData(task, wt, none_ids)


def world_settings(cfg: Mapping[str, Any]) -> dict:
    """seed, canvas and frames of a profile (the keyword arguments of :func:`task_data`)."""
    w = cfg.get("world") or {}
    return {"seed": int(cfg.get("seed", 0)), "canvas": int(w.get("canvas", 32)),
            "frames": int(w.get("frames", 8))}


def captions_of(role: str, split: str, indices, *, seed=0, canvas=32, frames=8) -> list:
    """What the world would say about samples ``indices`` of a role, captioned or not (an
    uncaptioned role's scenes still have a caption; V2V readouts need it)."""
    video = splits.ROLES[role].kind == "video"
    return [world.caption(splits.sample(role, split, int(i), seed, canvas, frames).scene, video)
            for i in indices]


# --------------------------------------------------------------------------- real datasets
def real_task_data(task, reader: Reader, tokenizers: Tokenizers, *, n: int | None = None,
                   profile: str | None = None, progress=True, tokens: RealTokens | None = None
                   ) -> TaskData:
    """Task ``task`` on a real dataset: :func:`real_tokens` viewed as a :class:`TaskData`."""
    t = T.get_task(task)
    if t.counterfactual:
        raise ValueError(f"task {t.name} is evaluated zero-shot against counterfactual ground "
                         f"truth that only the Shapes World has; it has no real training data")
    if tokens is None:
        tokens = real_tokens(reader, tokenizers, n=n, profile=profile, progress=progress)
    none_ids = tokenizers.none_condition()[0] if t.reads_none else None
    return TaskData(t, tokens, none_ids)


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
