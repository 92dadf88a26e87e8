"""Training NÜWA (Sec. 3.4, 4.1): the multi-task objective of Eq. (16), resumable, on one
process or many (``torchrun``).

**Objective.** Eq. (16) sums three cross-entropies over *all* target tokens: T2I (caption ->
image), V2V (the constant word "None" -> video) and T2V (caption -> video). We draw one task
per step with probabilities proportional to the profile's ``train.weights`` (the
:class:`TaskSampler`), so the expected step is the weighted sum of Eq. (16)'s terms; each
term is the mean cross-entropy of that task's target tokens (the paper's sum over tokens
divided by the number of tokens, so an image and a video step have losses on one scale).
Which tasks are trained is the caller's choice: Table 5's rows (T2V, T2V+T2I, T2V+V2V, all
three) and fine-tuning on one task are the same loop with another task list. The world roles
standing in for Conceptual Captions, Moments in Time and VATEX are
:data:`nuwa_lib.tasks.PRETRAIN_ROLES`.

**Optimiser.** Adam (Sec. 4.1: lr 1e-3, warm-up 5% of the steps), then a cosine (or linear)
decay to 0 over the remaining steps; the global gradient norm is clipped
(``train.grad_clip``). Optional bf16 autocast on CUDA (``train.bf16``; ignored on CPU).

**Determinism and resuming.** The batch of step t is a function of (seed, t) only -- which
task, which samples -- and dropout is re-seeded from (seed, t, rank) every step, so a run is
a pure function of its config. Every ``checkpoint_every`` steps the whole state (model,
optimiser, scheduler, step, sampler, loss history) is written atomically
(:func:`nuwa_lib.utils.checkpoint.save`); a restarted run continues from it to exactly the weights
of an uninterrupted run. A checkpoint of another config, or a corrupt one, raises
:class:`TrainCheckpointError` naming the file and the mismatch.

**Scale-out.** Under ``torchrun`` each of the W ranks takes a disjoint slice of the step's
global batch (batch_size / W samples) and DistributedDataParallel averages the gradients
(gloo on CPU, nccl on CUDA), so W processes follow the single-process run on the same global
batch. ``python -m nuwa_lib.train --profile P --steps N --out DIR`` is the entry point;
with ``--real-data`` it trains on the datasets of the profile's ``data:`` section instead of
the world (:func:`nuwa_lib.readers.prepare`), and ``--override FILE.yaml`` merges a file over
the profile (dataset roots, sizes).

**Cache.** :func:`get_pretrained` returns the model trained on the profile's world for a
task list, loaded from ``artifacts/<profile>/nuwa/<tasks>-<hash>.pt`` when present, otherwise
trained (resuming a ``.partial.pt`` state when one is there) and cached; the hash covers the
model and training configs, the tasks and roles, the world and the tokenizers' contents.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from nuwa_lib import tasks as T, world
from nuwa_lib.datasets import TaskData, Tokenizers, profile_tokenizers, task_data, world_settings
from nuwa_lib.model import Nuwa, NuwaConfig
from nuwa_lib.utils import checkpoint, progress as P
from nuwa_lib.utils.cache import artifact_path, fetch, key_hash, profile_of
from nuwa_lib.utils.pool import map_in_processes

TRAIN_VERSION = 1
STATE_FORMAT = "nuwa-training-state"
MODEL_FORMAT = "nuwa-model"
TRAIN_STREAM = 3000      # world seed stream of the training draws (judges 1000, VQ 2000)
DECAYS = ("cosine", "linear", "constant")
SPEED_ONLY = ("threads",)   # train: keys that change speed, not results (not in the hash)


class TrainCheckpointError(checkpoint.CheckpointError):
    """A training state or model file that cannot be used: corrupt, or for another run."""


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TrainConfig:
    """The ``train:`` section of a profile (plus its ``seed``)."""
    steps: int = 100                 # optimiser steps
    batch_size: int = 8              # global batch (split across DDP ranks)
    lr: float = 1e-3                 # Sec. 4.1
    warmup: float = 0.05             # fraction of the steps with a linear warm-up (Sec. 4.1: 5%)
    decay: str = "cosine"            # after the warm-up: cosine | linear | constant
    betas: tuple = (0.9, 0.999)      # Adam's (not given in the paper: PyTorch's defaults)
    weight_decay: float = 0.0
    grad_clip: float = 1.0           # max global gradient norm; 0 turns clipping off
    weights: Mapping[str, float] = field(
        default_factory=lambda: {"T2I": 1.0, "V2V": 1.0, "T2V": 1.0})   # task -> sampling weight
    data_size: int = 2000            # training samples tokenized per task (train split)
    checkpoint_every: int = 50       # steps between training-state checkpoints
    bf16: bool = False               # autocast to bfloat16 on CUDA (ignored on CPU)
    threads: Optional[int] = None    # torch threads on CPU (speed only, not in the hash)
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "data_size", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"train.{name} must be a positive integer, got {v!r}")
        if not isinstance(self.lr, (int, float)) or self.lr <= 0:
            raise ValueError(f"train.lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.warmup, (int, float)) or not 0 <= self.warmup < 1:
            raise ValueError(f"train.warmup must be a fraction in [0, 1), got {self.warmup!r}")
        world._check("train.decay", self.decay, DECAYS)
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"train.betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        if self.grad_clip is None or self.grad_clip < 0:
            raise ValueError(f"train.grad_clip must be >= 0 (0: off), got {self.grad_clip!r}")
        if not isinstance(self.weights, Mapping):
            raise ValueError(f"train.weights must map task names to weights, got {self.weights!r}")
        weights = {}
        for name, w in self.weights.items():
            task = T.get_task(name).name
            if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
                raise ValueError(f"train.weights.{name} must be a number >= 0, got {w!r}")
            weights[task] = float(w)
        object.__setattr__(self, "weights", weights)
        if not isinstance(self.bf16, bool):
            raise ValueError(f"train.bf16 must be true or false, got {self.bf16!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"train.threads must be a positive integer or null, got "
                             f"{self.threads!r}")

    @classmethod
    def from_profile(cls, cfg: Mapping[str, Any], **overrides) -> "TrainConfig":
        """The ``train:`` section and ``seed``; ``overrides`` replace keys (e.g. ``steps=``
        for a shorter run, ``weights=`` for another mix). ``data_size`` may not exceed the
        world's train split."""
        section = dict(cfg.get("train") or {})
        allowed = {f.name for f in fields(cls)} - {"seed"}
        unknown = (set(section) | set(overrides)) - allowed
        if unknown:
            raise ValueError(f"train: unknown key(s) {sorted(unknown)}; allowed: "
                             f"{', '.join(sorted(allowed))}")
        values = {**section, **overrides}
        if isinstance(values.get("betas"), list):
            values["betas"] = tuple(values["betas"])
        config = cls(**values, seed=int(cfg.get("seed", 0)))
        train_size = ((cfg.get("world") or {}).get("split_sizes") or {}).get("train")
        if train_size is not None and config.data_size > int(train_size):
            raise ValueError(f"train.data_size={config.data_size} exceeds the world's train split "
                             f"(world.split_sizes.train={train_size})")
        return config

    def weight(self, task: str) -> float:
        """A task's sampling weight (1 when the profile does not name it)."""
        return self.weights.get(T.get_task(task).name, 1.0)

    def key(self) -> dict:
        """What the results depend on (the config without speed-only settings)."""
        return {k: v for k, v in asdict(self).items() if k not in SPEED_ONLY}


class Schedule:
    """The learning-rate factor of step t: linear warm-up over ``warmup`` x steps, then a
    cosine / linear decay to 0 at ``steps`` (or constant). A class (not a lambda) so the
    scheduler's state holds it as plain numbers."""

    def __init__(self, steps: int, warmup: float, decay: str):
        self.steps, self.warmup, self.decay = int(steps), float(warmup), str(decay)

    @property
    def warmup_steps(self) -> int:
        return max(1, round(self.warmup * self.steps))

    def __call__(self, step: int) -> float:
        warm = self.warmup_steps
        if step < warm:
            return (step + 1) / warm
        rest = max(1, self.steps - warm)
        p = min(1.0, (step - warm) / rest)
        if self.decay == "cosine":
            return 0.5 * (1 + math.cos(math.pi * p))
        if self.decay == "linear":
            return 1.0 - p
        return 1.0


def lr_at(config: TrainConfig, step: int) -> float:
    return config.lr * Schedule(config.steps, config.warmup, config.decay)(step)


# --------------------------------------------------------------------------- sampler
class TaskSampler:
    """Which task and which samples each step trains on: a pure function of (seed, step),
    so a resumed run, and every DDP rank, draws the same batches. Tasks are drawn with
    probability proportional to their weights; samples uniformly (without replacement
    within a batch when the dataset is large enough)."""

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float], seed: int):
        self.tasks = T.task_names(tasks)
        w = np.array([float(weights.get(t, 1.0)) for t in self.tasks])
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"task weights must be >= 0 with a positive sum, got "
                             f"{dict(zip(self.tasks, w.tolist()))}")
        self.probs = w / w.sum()
        self.seed = int(seed)

    def task(self, step: int) -> str:
        rng = np.random.default_rng([self.seed, TRAIN_STREAM, int(step)])
        return self.tasks[int(rng.choice(len(self.tasks), p=self.probs))]

    def indices(self, step: int, size: int, batch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, TRAIN_STREAM + 1, int(step)])
        return rng.choice(size, batch, replace=batch > size)

    def draw(self, step: int, sizes: Mapping[str, int], batch: int):
        """(task, indices of its dataset) of ``step``'s global batch."""
        task = self.task(step)
        return task, self.indices(step, sizes[task], batch)

    def counts(self, steps: int) -> dict:
        """Steps each task gets in the first ``steps`` steps."""
        out = dict.fromkeys(self.tasks, 0)
        for s in range(steps):
            out[self.task(s)] += 1
        return out

    def state_dict(self) -> dict:
        return {"tasks": list(self.tasks), "probs": [float(p) for p in self.probs],
                "seed": self.seed}


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The torch seed of step ``step`` on ``rank`` (dropout)."""
    return int(np.random.default_rng([seed, TRAIN_STREAM + 2, step, rank]).integers(2 ** 62))


def model_seed(seed: int) -> int:
    return int(seed) * 1000 + 17


# --------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class Dist:
    """Where this process runs: its rank among ``world_size`` and its device."""
    rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world_size > 1:
            torch.distributed.barrier()


def init_distributed(device: str | None = None) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT): nccl on CUDA, gloo on CPU. Without torchrun:
    a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    if world_size == 1:
        return Dist(0, 1, device or ("cuda" if cuda else "cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world_size, f"cuda:{local}" if cuda else "cpu")


# --------------------------------------------------------------------------- trainer
class Trainer:
    """The state of one training run: model, optimiser, scheduler, step and history.
    :meth:`run` continues from :attr:`step`; :meth:`state` / :meth:`load_state` move all of
    it in and out of a checkpoint."""

    def __init__(self, model_config: NuwaConfig, config: TrainConfig,
                 data: Mapping[str, TaskData], *, init_state: Mapping | None = None,
                 dist: Dist | None = None):
        self.config, self.model_config = config, model_config
        self.dist = dist = dist or Dist()
        self.tasks = T.task_names(list(data))
        self.data = {t: data[t] for t in self.tasks}
        for name, d in self.data.items():
            if not isinstance(d, TaskData) or d.task.name != name:
                raise ValueError(f"data[{name!r}] must be the TaskData of task {name}")
        self.sizes = {t: len(d) for t, d in self.data.items()}
        self.sampler = TaskSampler(self.tasks, config.weights, config.seed)
        if config.batch_size % dist.world_size:
            raise ValueError(f"train.batch_size={config.batch_size} must divide by the number of "
                             f"processes ({dist.world_size})")
        self.device = torch.device(dist.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(model_seed(config.seed))
            self.model = Nuwa(model_config)
        if init_state is not None:
            checkpoint.load_state("init", self.model, init_state, "model", TrainCheckpointError)
        kinds = {T.get_task(t).condition_kind for t in self.tasks}
        # An embedding no task reads gets no gradient: freeze it (DDP wants a gradient for
        # every trained parameter). With text and sketch tasks mixed, each step leaves one
        # of the two unused, which DDP is told to expect.
        self.model.text_embedding.requires_grad_("text" in kinds)
        self.model.sketch_embedding.requires_grad_("sketch" in kinds)
        self.model.to(self.device)
        self.net = self.model
        if dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids,
                                               find_unused_parameters=len(kinds) > 1)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=config.lr, betas=config.betas,
                                    weight_decay=config.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, Schedule(config.steps, config.warmup, config.decay))
        self.bf16 = bool(config.bf16 and self.device.type == "cuda")
        self.step, self.history, self.seconds = 0, [], 0.0

    def batch(self, step: int):
        """This rank's slice of the global batch of ``step``: (task, Batch)."""
        task, idx = self.sampler.draw(step, self.sizes, self.config.batch_size)
        per = self.config.batch_size // self.dist.world_size
        idx = idx[self.dist.rank * per:(self.dist.rank + 1) * per]
        return task, self.data[task].batch(idx)

    def loss(self, batch) -> torch.Tensor:
        """Mean cross-entropy of every target token (one term of Eq. 16), through the DDP
        wrapper when there is one (its hooks average the gradients)."""
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else nullcontext())
        with autocast:
            logits = self.net(batch.cond, batch.target)
        return F.cross_entropy(rearrange(logits.float(), "b n k -> (b n) k"),
                               batch.target.reshape(-1))

    def train_step(self) -> dict:
        c, step = self.config, self.step
        task, batch = self.batch(step)
        batch = batch.to(self.device)
        lr = self.opt.param_groups[0]["lr"]
        torch.manual_seed(step_seed(c.seed, step, self.dist.rank))       # dropout
        self.net.train()
        loss = self.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.grad_clip:
            norm = float(torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip))
        else:
            norm = float(torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in self.params if p.grad is not None])))
        self.opt.step()
        self.sched.step()
        value = loss.detach()
        if self.dist.world_size > 1:
            torch.distributed.all_reduce(value)
            value = value / self.dist.world_size
        log = {"step": step, "task": task, "loss": float(value), "lr": float(lr),
               "grad_norm": norm}
        self.history.append(log)
        self.step += 1
        return log

    def run(self, until: int | None = None, progress=True, on_step: Callable | None = None):
        """Train until step ``until`` (default: the config's steps); ``on_step(trainer)``
        runs after every step (checkpointing). The caller's random state is left as it was."""
        until = self.config.steps if until is None else min(until, self.config.steps)
        bar = P.bar(total=until, initial=self.step, desc="NÜWA " + "+".join(self.tasks),
                    progress=self.dist.main and progress, leave=False)
        recent: dict = {}
        before = torch.get_num_threads()
        if self.config.threads and self.device.type == "cpu":
            torch.set_num_threads(self.config.threads)
        t0 = time.perf_counter()
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                while self.step < until:
                    log = self.train_step()
                    recent[log["task"]] = log["loss"]
                    bar.update(1)
                    if self.step % 10 == 0 or self.step == until:
                        bar.set_postfix({k: f"{v:.3f}" for k, v in recent.items()})
                    if on_step is not None:
                        on_step(self)
        finally:
            torch.set_num_threads(before)
            self.seconds += time.perf_counter() - t0
            bar.close()
        self.model.eval()
        return self

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "step": self.step,
                "sampler": self.sampler.state_dict(), "history": self.history,
                "seconds": self.seconds}

    def load_state(self, path, state: Mapping):
        sampler = checkpoint.canonical(self.sampler.state_dict())
        if state.get("sampler") != sampler:
            raise TrainCheckpointError(f"{path}: training state does not match (sampler: file "
                                       f"{state.get('sampler')!r} != wanted {sampler!r})")
        checkpoint.load_state(path, self.model, state["model"], "model", TrainCheckpointError)
        try:
            self.opt.load_state_dict(state["opt"])
            self.sched.load_state_dict(state["sched"])
        except (ValueError, KeyError, RuntimeError) as err:
            raise TrainCheckpointError(f"{path}: optimiser state does not fit: "
                                       f"{str(err).splitlines()[0]}") from None
        self.step, self.history = int(state["step"]), list(state["history"])
        self.seconds = float(state.get("seconds", 0.0))


def per_task(history: Sequence[Mapping]) -> dict:
    """The loss history split by task: {task: {"step": [...], "loss": [...]}}."""
    out: dict = {}
    for h in history:
        d = out.setdefault(h["task"], {"step": [], "loss": []})
        d["step"].append(h["step"])
        d["loss"].append(h["loss"])
    return out


# --------------------------------------------------------------------------- runs
def _state_payload(run: Mapping, hash_: str, state: Mapping) -> dict:
    return {"format": STATE_FORMAT, "version": TRAIN_VERSION, **run, "hash": hash_,
            "state": state}


def _expect(run: Mapping | None, hash_: str | None) -> dict:
    """The entries a file must match: the run's parts one by one (so a mismatch names the
    setting, e.g. ``train: steps: file 6 != wanted 7``), then the hash."""
    out = {"version": TRAIN_VERSION, **(run or {})}
    if hash_ is not None:
        out["hash"] = hash_
    return out


def train(model_config: NuwaConfig, config: TrainConfig, data: Mapping[str, TaskData], *,
          state_path=None, run: Mapping | None = None, hash_: str = "",
          init_state: Mapping | None = None, stop_after: int | None = None, progress=True,
          dist: Dist | None = None):
    """Train (or continue) a run; returns (trainer, finished). With ``state_path`` the full
    training state is written there every ``config.checkpoint_every`` steps (and when
    stopping), and a run that finds it continues from it -- after checking that it belongs
    to the same run (``run``, ``hash_``). ``stop_after`` ends the run early at that step
    (what an interruption looks like)."""
    run = checkpoint.canonical(run if run is not None else
                               {"model": asdict(model_config), "train": config.key(),
                                "tasks": list(T.task_names(list(data)))})
    tr = Trainer(model_config, config, data, init_state=init_state, dist=dist)
    if state_path is not None and Path(state_path).exists():
        payload = checkpoint.load(state_path, STATE_FORMAT, _expect(run, hash_),
                                  what="training state", hint="delete it to start the run again",
                                  error=TrainCheckpointError)
        tr.load_state(state_path, payload["state"])

    def save_state(t: Trainer):
        if state_path is None or not t.dist.main:
            return
        if t.step % config.checkpoint_every == 0 or t.step in (stop_after, config.steps):
            checkpoint.save(state_path, _state_payload(run, hash_, t.state()))

    tr.run(until=stop_after, progress=progress, on_step=save_state)
    return tr, tr.step >= config.steps


def save_model(path, model: Nuwa, run: Mapping, hash_: str, history, info) -> Path:
    return checkpoint.save(path, {"format": MODEL_FORMAT, "version": TRAIN_VERSION,
                                  **checkpoint.canonical(run), "hash": hash_, "info": info,
                                  "history": history, "state_dict": model.state_dict()})


def config_from_dict(values: Mapping) -> NuwaConfig:
    return NuwaConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def load_model(path, run: Mapping | None = None, hash_: str | None = None):
    """(Nuwa in eval mode, payload) from a model file; with ``run`` / ``hash_`` given, a file
    of another run raises :class:`TrainCheckpointError` naming the file and the mismatch."""
    payload = checkpoint.load(path, MODEL_FORMAT, _expect(run, hash_), what="NÜWA model file",
                              hint="delete it to retrain", error=TrainCheckpointError)
    try:
        config = config_from_dict(payload["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise TrainCheckpointError(f"{path}: its model config cannot be read back ({err})") from None
    model = checkpoint.load_state(path, Nuwa(config), payload["state_dict"], "model",
                                  TrainCheckpointError)
    return model.eval(), payload


def roles_for(tasks: Sequence[str], roles: Mapping[str, str] | None = None) -> dict:
    """The world role each task trains on: ``roles`` first, then the pretraining roles of
    Eq. (16)'s tasks (CC's, Moments', VATEX's), then the task's own role in the table."""
    roles = dict(roles or {})
    unknown = set(roles) - set(tasks)
    if unknown:
        raise ValueError(f"roles name task(s) {sorted(unknown)} that are not trained; tasks: "
                         f"{', '.join(tasks)}")
    out = {}
    for t in tasks:
        role = roles.get(t) or T.PRETRAIN_ROLES.get(t) or T.get_task(t).role
        out[t] = world._check(f"role of {t}", role, tuple(world.ROLES))
    return out


def check_tokenizers(model_config: NuwaConfig, tokenizers: Tokenizers, frames: int) -> None:
    """The model must fit the tokenizers: codebooks, text vocabulary, token grids."""
    c = model_config
    vis = tokenizers.visual.config
    if vis.codebook > c.codebook_size:
        raise ValueError(f"the visual tokenizer has {vis.codebook} codes but model.codebook_size "
                         f"is {c.codebook_size}")
    if vis.grid > min(c.target_tokens[1:]) or frames > c.target_tokens[0]:
        raise ValueError(f"targets of {frames} frames of {vis.grid}x{vis.grid} tokens exceed "
                         f"model.target_tokens {c.target_tokens}")
    if tokenizers.text is not None and tokenizers.text.vocab_size > c.text_vocab:
        raise ValueError(f"the text tokenizer has {tokenizers.text.vocab_size} tokens but the "
                         f"model's text vocabulary is {c.text_vocab}")
    if tokenizers.sketch is not None:
        sk = tokenizers.sketch.config
        if sk.codebook > c.sketch_codebook_size:
            raise ValueError(f"the sketch tokenizer has {sk.codebook} codes but "
                             f"model.sketch_codebook_size is {c.sketch_codebook_size}")
        if sk.grid > min(c.sketch_tokens[1:]) or frames > c.sketch_tokens[0]:
            raise ValueError(f"sketches of {frames} frames of {sk.grid}x{sk.grid} tokens exceed "
                             f"model.sketch_tokens {c.sketch_tokens}")


def build_data(tasks: Sequence[str], roles: Mapping[str, str], tokenizers: Tokenizers,
               size: int, *, seed=0, canvas=32, frames=8, profile: str | None = None,
               progress=True) -> dict:
    """{task: TaskData} on ``size`` samples of each task's role's train split (tokens cached
    under ``artifacts/<profile>/tokens/`` with a profile)."""
    return {t: task_data(t, roles[t], "train", size, tokenizers, seed=seed, canvas=canvas,
                         frames=frames, profile=profile, progress=progress) for t in tasks}


@dataclass
class Plan:
    """Everything a run needs, and its identity (``run`` and its ``hash``)."""
    profile: str
    tasks: tuple
    roles: dict
    model_config: NuwaConfig
    config: TrainConfig
    tokenizers: Tokenizers
    run: dict
    hash: str
    init_state: Optional[Mapping] = None

    @property
    def label(self) -> str:
        return "+".join(self.tasks)

    @property
    def path(self) -> Path:
        return artifact_path(self.profile, "nuwa", self.label, self.hash)


def plan(cfg: Mapping[str, Any], tasks=T.PRETRAIN_TASKS, *, profile: str | None = None,
         roles: Mapping[str, str] | None = None, model_overrides: Mapping | None = None,
         train_overrides: Mapping | None = None, init=None, tokenizers: Tokenizers | None = None,
         progress=True, data_key: Mapping | None = None) -> Plan:
    """Resolve a run: configs, roles, tokenizers (the profile's unless given) and the hash.
    ``data_key`` (from :func:`nuwa_lib.readers.prepare`) marks a run on real data: it goes
    into the hash, and its ``frames`` replace the world's in the tokenizer check."""
    profile = profile_of(cfg, profile)
    tasks = T.task_names(tasks)
    roles = roles_for(tasks, roles)
    mcfg = NuwaConfig.from_profile(cfg, **dict(model_overrides or {}))
    tcfg = TrainConfig.from_profile(cfg, **dict(train_overrides or {}))
    if tokenizers is None:
        tokenizers = profile_tokenizers(cfg, profile=profile, progress=progress,
                                        sketch=any(T.get_task(t).reads_sketch for t in tasks))
    ws = world_settings(cfg)
    check_tokenizers(mcfg, tokenizers, int(data_key["frames"]) if data_key else ws["frames"])
    init_state, init_hash = None, None
    if init is not None:
        model, info = init
        init_state, init_hash = model.state_dict(), info.get("hash")
        if not init_hash:
            raise ValueError("init must be (model, info) as returned by get_pretrained (info "
                             "holds the run's hash)")
    hashes = tokenizers.hashes()
    used = {"text": hashes["text"], "visual": hashes["visual"],
            "sketch": hashes["sketch"] if any(T.get_task(t).reads_sketch for t in tasks) else None}
    run = checkpoint.canonical({
        "version": TRAIN_VERSION, "model": asdict(mcfg), "train": tcfg.key(), "tasks": list(tasks),
        "roles": roles, "world": ws, "tokenizers": used, "init": init_hash,
        **({"data": dict(data_key)} if data_key else {})})
    hash_ = key_hash(run)
    return Plan(profile, tasks, roles, mcfg, tcfg, tokenizers, run, hash_, init_state)


def fit(p: Plan, *, state_path, model_path, stop_after=None, progress=True,
        dist: Dist | None = None, data: Mapping | None = None):
    """Tokenize the data (rank 0 first, the others then read its cache), train with a
    resumable state at ``state_path`` and write the model to ``model_path`` (rank 0).
    Returns (trainer, info, finished)."""
    dist = dist or Dist()
    if data is None:
        if dist.main:
            data = build_data(p.tasks, p.roles, p.tokenizers, p.config.data_size,
                              profile=p.profile, progress=progress, **p.run["world"])
        dist.barrier()
        if not dist.main:
            data = build_data(p.tasks, p.roles, p.tokenizers, p.config.data_size,
                              profile=p.profile, progress=False, **p.run["world"])
    tr, finished = train(p.model_config, p.config, data, state_path=state_path, run=p.run,
                         hash_=p.hash, init_state=p.init_state, stop_after=stop_after,
                         progress=progress, dist=dist)
    info = {"hash": p.hash, "tasks": list(p.tasks), "roles": p.roles, "steps": tr.step,
            "train_seconds": round(tr.seconds, 1), "world_size": dist.world_size,
            "parameters": sum(q.numel() for q in tr.model.parameters()),
            "samples": {t: len(d) for t, d in data.items()},
            "task_steps": tr.sampler.counts(tr.step)}
    if finished and dist.main and model_path is not None:
        save_model(model_path, tr.model, p.run, p.hash, tr.history, info)
    dist.barrier()
    return tr, info, finished


def get_pretrained(cfg: Mapping[str, Any], tasks=T.PRETRAIN_TASKS, *, profile: str | None = None,
                   roles: Mapping[str, str] | None = None, model_overrides: Mapping | None = None,
                   train_overrides: Mapping | None = None, init=None,
                   tokenizers: Tokenizers | None = None, train_if_missing=True, progress=True):
    """The NÜWA model trained on ``tasks`` (default Eq. 16's T2I + V2V + T2V) of the profile's
    world: loaded from ``artifacts/<profile>/nuwa/<tasks>-<hash>.pt`` when cached, otherwise
    trained (continuing a ``.partial.pt`` state when one is there) and cached.

    ``roles`` replaces a task's world role; ``model_overrides`` / ``train_overrides`` replace
    keys of the ``model:`` / ``train:`` sections (an ablation's attention, a fine-tuning's
    steps); ``init=(model, info)`` starts from another run's weights (fine-tuning).
    Returns (Nuwa in eval mode, info) with info holding the loss history."""
    p = plan(cfg, tasks, profile=profile, roles=roles, model_overrides=model_overrides,
             train_overrides=train_overrides, init=init, tokenizers=tokenizers,
             progress=progress)

    def load(path):
        model, payload = load_model(path, p.run, p.hash)
        return model, {**payload.get("info", {}), "history": payload.get("history", []),
                       "path": str(path), "source": "loaded"}

    def build():
        state_path = p.path.with_name(f"{p.label}-{p.hash}.partial.pt")
        tr, info, _ = fit(p, state_path=state_path, model_path=p.path, progress=progress)
        state_path.unlink(missing_ok=True)
        model, _ = load_model(p.path, p.run, p.hash)
        return model, {**info, "history": tr.history, "path": str(p.path), "source": "trained"}

    return fetch(p.path, load, build, build_if_missing=train_if_missing,
                 missing=f"no cached NÜWA model for {p.label} at {p.path}; run the pretraining "
                         f"notebook or get_pretrained(..., train_if_missing=True)")[0]


@dataclass(eq=False)
class Run:
    """One :func:`get_pretrained` call as data, for :func:`get_many`: the profile ``cfg``
    (e.g. :func:`nuwa_lib.image_tasks.seeded` for a repeat), the tasks, and the same
    ``roles`` / ``model_overrides`` / ``train_overrides``; ``init`` is another Run whose model
    this one starts from (fine-tuning), trained first when missing."""
    cfg: Mapping[str, Any]
    tasks: tuple = T.PRETRAIN_TASKS
    roles: Optional[Mapping[str, str]] = None
    model_overrides: Optional[Mapping] = None
    train_overrides: Optional[Mapping] = None
    init: Optional["Run"] = None

    def chain(self) -> list:
        """[the first run, ..., self]: the runs whose weights lead to this one."""
        return (self.init.chain() if self.init is not None else []) + [self]

    def kwargs(self) -> dict:
        return {"tasks": self.tasks, "roles": self.roles, "model_overrides": self.model_overrides,
                "train_overrides": self.train_overrides}


def _train_chain(chain: Sequence[Run], threads: int, tokenizers: Tokenizers | None) -> None:
    """In a worker process: every run of ``chain`` in order, each from the previous one's
    weights (all but the last are cached by then). The cache is the result."""
    torch.set_num_threads(threads)
    init = None
    for r in chain:
        init = get_pretrained(r.cfg, init=init, tokenizers=tokenizers,
                              progress=P.for_workers(), **r.kwargs())


def get_many(runs: Mapping[Any, Run], *, workers: int = 1, tokenizers: Tokenizers | None = None,
             progress=True) -> dict:
    """{key: (Nuwa, info)} for a dict of :class:`Run`: what ``get_pretrained`` would return
    for each, with the missing runs trained ``workers`` at a time in separate processes
    ("spawn"; each with this process's torch thread count). Runs are trained level by level
    along their ``init`` chains, so a shared starting model is trained once. A run is a pure
    function of its config, so the models do not depend on ``workers``: only the wall time
    does. ``tokenizers`` (default: the profile's, loaded where needed) go to the workers too."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    for key, r in runs.items():
        if not isinstance(r, Run):
            raise TypeError(f"run {key!r} must be a train.Run, got {type(r).__name__}")
    chains = {key: r.chain() for key, r in runs.items()}
    threads = torch.get_num_threads()
    got: dict[int, tuple] = {}                       # id(Run) -> (model, info)
    trained: set = set()                              # hashes trained in workers

    def init_of(chain, d):
        return got[id(chain[d - 1])] if d else None

    for d in range(max((len(c) for c in chains.values()), default=0)):
        level = {k: c for k, c in chains.items() if len(c) > d}
        missing = {}                                  # run hash -> the chain up to it
        for c in level.values():
            r = c[d]
            p = plan(r.cfg, init=init_of(c, d), tokenizers=tokenizers, progress=False, **r.kwargs())
            if not p.path.exists():
                missing.setdefault(p.hash, c[:d + 1])
        if len(missing) > 1 and workers > 1:
            with P.bar(total=len(missing), progress=progress,
                       desc=f"training {len(missing)} runs, {min(workers, len(missing))} at a "
                            f"time") as bar:
                map_in_processes(_train_chain, [(c, threads, tokenizers) for c in missing.values()],
                                 workers, done=lambda i, _: bar.update(1))
            trained.update(missing)
        for c in level.values():                      # trained now, loaded (or one trained here)
            if id(c[d]) not in got:
                r = c[d]
                model, info = get_pretrained(r.cfg, init=init_of(c, d), tokenizers=tokenizers,
                                             progress=progress, **r.kwargs())
                if info["hash"] in trained:            # in a worker: say so, as alone
                    info = {**info, "source": "trained"}
                got[id(r)] = (model, info)
    return {key: got[id(c[-1])] for key, c in chains.items()}


# --------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m nuwa_lib.train",
        description="Train NÜWA on the profile's world (Eq. 16 by default), or with --real-data "
                    "on real datasets; under torchrun each process takes a slice of every batch "
                    "(DDP).")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--tasks", default=",".join(T.PRETRAIN_TASKS),
                    help="comma-separated task names (default: T2I,V2V,T2V)")
    ap.add_argument("--steps", type=int, help="override train.steps")
    ap.add_argument("--batch-size", type=int, help="override train.batch_size (the global batch)")
    ap.add_argument("--data-size", type=int, help="override train.data_size")
    ap.add_argument("--checkpoint-every", type=int, help="override train.checkpoint_every")
    ap.add_argument("--threads", type=int, help="torch threads per process (CPU)")
    ap.add_argument("--out", help="write state.pt (resumable) and model.pt here instead of the "
                                  "artifacts cache")
    ap.add_argument("--stop-after", type=int, help="stop at this step (the state is saved)")
    ap.add_argument("--untrained-tokenizers", action="store_true",
                    help="freshly initialised VQ models instead of the trained ones (timing, tests)")
    ap.add_argument("--save-replicas", action="store_true",
                    help="every process writes its weights to OUT/replica-<rank>.pt (DDP checks)")
    ap.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--real-data", action="store_true",
                    help="train on the datasets of the profile's data: section (nuwa_lib.readers; "
                         "roots from NUWA_DATA_<NAME> or --override) instead of the world")
    ap.add_argument("--override", metavar="FILE.yaml",
                    help="a YAML file merged over the profile (dataset roots, any size or step)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from nuwa_lib.profiles import load_profile

    try:
        cfg = load_profile(args.profile)
        if args.override:
            from nuwa_lib.readers import apply_override

            cfg = apply_override(cfg, args.override)
        over = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size),
                                  ("data_size", args.data_size),
                                  ("checkpoint_every", args.checkpoint_every),
                                  ("threads", args.threads)) if v is not None}
        tasks = [t for t in args.tasks.split(",") if t]
        dist = init_distributed(args.device)
        progress = not args.no_progress
        if args.threads:
            torch.set_num_threads(args.threads)
        tokenizers, data, data_key = None, None, None
        if args.real_data:
            from nuwa_lib.readers import prepare

            tokenizers, data, data_key = prepare(
                cfg, tasks, rank=dist.rank, world_size=dist.world_size, device=dist.device,
                untrained=args.untrained_tokenizers, max_samples=args.data_size,
                progress=progress and dist.main)
        else:
            if dist.main:
                tokenizers = profile_tokenizers(
                    cfg, untrained=args.untrained_tokenizers, progress=progress,
                    sketch=any(T.get_task(t).reads_sketch for t in T.task_names(tasks)))
            dist.barrier()
            if not dist.main:   # rank 0 has built and cached what the others now read
                tokenizers = profile_tokenizers(
                    cfg, untrained=args.untrained_tokenizers, progress=False,
                    sketch=any(T.get_task(t).reads_sketch for t in T.task_names(tasks)))
        p = plan(cfg, tasks, train_overrides=over, tokenizers=tokenizers, progress=progress,
                 data_key=data_key)
        if args.out:
            out = Path(args.out)
            state_path, model_path = out / "state.pt", out / "model.pt"
        else:
            model_path = p.path
            state_path = p.path.with_name(f"{p.label}-{p.hash}.partial.pt")
        tr, info, finished = fit(p, state_path=state_path, model_path=model_path,
                                 stop_after=args.stop_after, progress=progress, dist=dist,
                                 data=data)
        if args.save_replicas and args.out:
            checkpoint.save(Path(args.out) / f"replica-{dist.rank}.pt",
                            {"format": "nuwa-replica", "rank": dist.rank, "step": tr.step,
                             "state_dict": tr.model.state_dict()})
        if dist.main:
            last = per_task(tr.history)
            losses = ", ".join(f"{t} {v['loss'][-1]:.3f}" for t, v in last.items())
            print(f"{p.label}: step {tr.step}/{p.config.steps} on {dist.world_size} process(es), "
                  f"{info['train_seconds']} s; last losses: {losses}; "
                  f"{'model ' + str(model_path) if finished else 'state ' + str(state_path)}")
        if not args.out and finished and dist.main:
            state_path.unlink(missing_ok=True)
    except (ValueError, FileNotFoundError, checkpoint.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0



if __name__ == "__main__":
    sys.exit(main())
