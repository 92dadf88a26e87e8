"""The training loop (Eq. 15 over the sampled tasks): :class:`Trainer`.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

from ..data import tasks as T
from ..model.config import NuwaConfig
from ..model.nuwa import Nuwa
from ..utils import checkpoint, progress as P
from .distributed import Dist
from .schedule import (
    Schedule,
    TaskSampler,
    TrainCheckpointError,
    TrainConfig,
    dropout_rows,
    model_seed,
    step_seed,
)
from .task_data import TaskData


# --------------------------------------------------------------------------- trainer
READ_EVERY = 100      # steps between readings of the history's tensors on a GPU (one wait each)


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
        self.bf16 = config.autocast(self.device)
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
        if c.cond_dropout and batch.cond.kind == "text" and T.get_task(task).reads_caption:
            rows = dropout_rows(c.seed, step, c.batch_size, c.cond_dropout)
            per = c.batch_size // self.dist.world_size
            batch = self.data[task].without_condition(
                batch, rows[self.dist.rank * per:(self.dist.rank + 1) * per])
        batch = batch.to(self.device)
        lr = self.opt.param_groups[0]["lr"]
        torch.manual_seed(step_seed(c.seed, step, self.dist.rank))       # dropout
        self.net.train()
        loss = self.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip)
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in self.params if p.grad is not None]))
        self.opt.step()
        self.sched.step()
        value = loss.detach()
        if self.dist.world_size > 1:
            torch.distributed.all_reduce(value)
            value = value / self.dist.world_size
        # on a GPU the loss and the norm stay tensors until read (:attr:`history`), so the loop
        # does not wait for the device; they are read every READ_EVERY steps all the same (and
        # on the CPU, where reading costs nothing, at once): thousands of unread tensors cost
        # megabytes each on the CPU's heap (2 GB per 1000 steps of a mini run)
        log = {"step": step, "task": task, "loss": value, "lr": float(lr),
               "grad_norm": norm.detach()}
        self._history.append(log)
        self.step += 1
        if self.device.type == "cpu" or len(self._history) - self._read >= READ_EVERY:
            self.history
        return log

    @property
    def history(self) -> list:
        """Every step's log, its loss and gradient norm as numbers."""
        for log in self._history[self._read:]:
            for k in ("loss", "grad_norm"):
                if isinstance(log[k], torch.Tensor):
                    log[k] = float(log[k])
        self._read = len(self._history)
        return self._history

    @history.setter
    def history(self, value) -> None:
        self._history, self._read = list(value), 0

    def run(self, until: int | None = None, progress=True, on_step: Callable | None = None):
        """Train until step ``until`` (default: the config's steps); ``on_step(trainer)``
        runs after every step (checkpointing). The caller's random state is left as it was."""
        until = self.config.steps if until is None else min(until, self.config.steps)
        bar = P.bar(total=until, initial=self.step, desc="NÜWA " + "+".join(self.tasks),
                    progress=self.dist.main and progress, leave=False)
        recent: dict = {}
        bar_shown = not bar.disable
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
                    if bar_shown and (self.step % 10 == 0 or self.step == until):
                        bar.set_postfix({k: f"{float(v):.3f}" for k, v in recent.items()})
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
