"""What a training run is: :class:`TrainConfig`, the learning-rate :class:`Schedule`, the
multi-task :class:`TaskSampler` (Sec. 3.4) and the seeds of each step.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from ..data import tasks as T, world
from ..utils import checkpoint

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
    bf16: Any = False                # autocast to bfloat16 on CUDA (ignored on CPU); "auto": on
                                     # CUDA, like the device not in the hash (see autocast())
    threads: Optional[int] = None    # torch threads on CPU (speed only, not in the hash)
    weights_dtype: str = "float32"   # the finished model's stored weights (what is evaluated)
    cond_dropout: float = 0.0        # share of text conditions replaced by "None" (guidance)
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
        if not isinstance(self.bf16, bool) and self.bf16 != "auto":
            raise ValueError(f"train.bf16 must be true, false or 'auto', got {self.bf16!r}")
        world._check("train.weights_dtype", self.weights_dtype, checkpoint.DTYPES)
        if not isinstance(self.cond_dropout, (int, float)) or isinstance(self.cond_dropout, bool) \
                or not 0 <= self.cond_dropout < 1:
            raise ValueError(f"train.cond_dropout must be a fraction in [0, 1), got "
                             f"{self.cond_dropout!r}")
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

    def key(self) -> dict:
        """What the results depend on (the config without speed-only settings; the stored
        dtype only when it is not float32 and the condition dropout only when it is on, so
        earlier runs keep their hashes)."""
        key = {k: v for k, v in asdict(self).items() if k not in SPEED_ONLY
               and not (k == "weights_dtype" and v == "float32")
               and not (k == "cond_dropout" and not v)}
        key["bf16"] = self.bf16 is True     # "auto" follows the machine, as the device does
        return key

    def autocast(self, device) -> bool:
        """Whether training on ``device`` autocasts to bfloat16: on CUDA only, with
        ``bf16: true`` (part of the recipe) or ``"auto"`` (whenever the machine has CUDA; the
        hash is that of ``false``, and the model's manifest entry records the autocast)."""
        return torch.device(device).type == "cuda" and self.bf16 in (True, "auto")


class Schedule:
    """The learning-rate factor of step t: linear warm-up over ``warmup`` x steps, then a
    cosine / linear decay to 0 at ``steps`` (or constant). A class (not a lambda) so the
    scheduler's state holds it as plain numbers."""

    def __init__(self, steps: int, warmup: float, decay: str):
        self.steps, self.warmup, self.decay = int(steps), float(warmup), str(decay)

    def __call__(self, step: int) -> float:
        warm = max(1, round(self.warmup * self.steps))
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


def dropout_rows(seed: int, step: int, n: int, p: float) -> torch.Tensor:
    """Which of the ``n`` rows of step ``step``'s batch lose their condition (bool (n,)):
    each with probability ``p``, the same on every machine and on resuming."""
    rng = np.random.default_rng([seed, TRAIN_STREAM + 3, step])
    return torch.from_numpy(rng.random(n) < p)


def model_seed(seed: int) -> int:
    return int(seed) * 1000 + 17
