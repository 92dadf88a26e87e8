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
:data:`nuwa_lib.data.tasks.PRETRAIN_ROLES`.

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
batch. The command line is :mod:`nuwa_lib.training.cli` (world or ``--real-data``).

**Cache.** :func:`get_pretrained` caches each run under ``artifacts/<profile>/nuwa/`` by a hash
of the model and training configs, the tasks and roles, the world and the tokenizers' contents.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from ..data import splits, tasks as T, world
from ..model.config import NuwaConfig
from ..model.nuwa import Nuwa
from ..tokenizers.token_sets import Tokenizers, profile_tokenizers
from ..utils import checkpoint, machine, parked, progress as P
from ..utils.cache import artifact_path, available, fetch, key_hash, profile_of, source_of
from ..utils.pool import map_in_processes
from ..utils.provenance import training_record
from ..utils.weights import Spec
from .distributed import Dist
from .schedule import (
    MODEL_FORMAT,
    STATE_FORMAT,
    TRAIN_VERSION,
    TrainCheckpointError,
    TrainConfig,
)
from .task_data import TaskData, task_data, world_settings
from .trainer import Trainer


# --------------------------------------------------------------------------- runs
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
            checkpoint.save(state_path, {"format": STATE_FORMAT, "version": TRAIN_VERSION,
                                         **run, "hash": hash_, "state": t.state()})

    tr.run(until=stop_after, progress=progress, on_step=save_state)
    return tr, tr.step >= config.steps


def save_model(path, model: Nuwa, run: Mapping, hash_: str, history, info,
               dtype: str = "float32") -> Path:
    """The finished model, its floating weights stored as ``dtype`` (``train.weights_dtype``):
    what every later use loads, so a model trained here and the shipped one are the same."""
    return checkpoint.save(path, {"format": MODEL_FORMAT, "version": TRAIN_VERSION,
                                  **checkpoint.canonical(run), "hash": hash_, "info": info,
                                  "history": history,
                                  "state_dict": checkpoint.cast_floats(model.state_dict(), dtype)})


def config_from_dict(values: Mapping) -> NuwaConfig:
    return NuwaConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def load_model(path, run: Mapping | None = None, hash_: str | None = None):
    """(Nuwa in eval mode, payload) from a model file; with ``run`` / ``hash_`` given, a file
    of another run raises :class:`TrainCheckpointError` naming the file and the mismatch."""
    payload = checkpoint.load(path, MODEL_FORMAT, _expect(run, hash_), what="NÜWA model file",
                              hint="delete it to retrain", error=TrainCheckpointError)
    return load_model_payload(path, payload)


def load_model_payload(path, payload: Mapping):
    """(Nuwa in eval mode, payload) from a model file's payload (``path`` names it in errors);
    weights stored in half precision come back as float32."""
    try:
        config = config_from_dict(payload["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise TrainCheckpointError(f"{path}: its model config cannot be read back "
                                   f"({err})") from None
    model = checkpoint.load_state(path, Nuwa(config), payload["state_dict"], "model",
                                  TrainCheckpointError)
    return model.eval(), payload


def heldout_loss(model: Nuwa, data: TaskData, batch_size: int = 64) -> float:
    """Mean cross-entropy per target token on every sample of ``data`` (Eq. 16's term of
    its task, held out)."""
    total, n = 0.0, len(data)
    with torch.no_grad():
        for i in range(0, n, batch_size):
            b = data.batch(list(range(i, min(n, i + batch_size)))).to(model.bos.device)
            logits = model(b.cond, b.target)
            total += float(F.cross_entropy(logits.flatten(0, 1).float(),
                                           b.target.reshape(-1))) * b.target.shape[0]
    return total / n


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
        out[t] = world._check(f"role of {t}", role, tuple(splits.ROLES))
    return out


def check_tokenizers(model_config: NuwaConfig, tokenizers: Tokenizers, frames: int) -> None:
    """The model must fit the tokenizers: codebooks, text vocabulary, token grids."""
    c = model_config
    if tokenizers.text is not None and tokenizers.text.vocab_size > c.text_vocab:
        raise ValueError(f"the text tokenizer has {tokenizers.text.vocab_size} tokens but the "
                         f"model's text vocabulary is {c.text_vocab}")
    for kind, what, vq, codes, grid in (
            ("visual", "targets", tokenizers.visual, "codebook_size", "target_tokens"),
            ("sketch", "sketches", tokenizers.sketch, "sketch_codebook_size", "sketch_tokens")):
        if vq is None:
            continue
        v, n, g = vq.config, getattr(c, codes), getattr(c, grid)
        if v.codebook > n:
            raise ValueError(f"the {kind} tokenizer has {v.codebook} codes but model.{codes} "
                             f"is {n}")
        if v.grid > min(g[1:]) or frames > g[0]:
            raise ValueError(f"{what} of {frames} frames of {v.grid}x{v.grid} tokens exceed "
                             f"model.{grid} {g}")


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
    device: str = "cpu"            # where it trains and samples (speed only, not in the hash)

    @property
    def label(self) -> str:
        return "+".join(self.tasks)

    @property
    def path(self) -> Path:
        return artifact_path(self.profile, "nuwa", self.label, self.hash)

    def spec(self, slot: str | None = None) -> Spec:
        """What the shipped weights hold for this run (``slot``: its place in the record)."""
        return Spec(self.profile, "nuwa", self.label, self.hash, self.run, slot=slot)


def plan(cfg: Mapping[str, Any], tasks=T.PRETRAIN_TASKS, *, profile: str | None = None,
         roles: Mapping[str, str] | None = None, model_overrides: Mapping | None = None,
         train_overrides: Mapping | None = None, init=None, tokenizers: Tokenizers | None = None,
         progress=True, data_key: Mapping | None = None) -> Plan:
    """Resolve a run: configs, roles, tokenizers (the profile's unless given) and the hash.
    ``data_key`` (from :func:`~nuwa_lib.training.task_data.prepare`) marks a run on real data:
    it goes into the hash, and its ``frames`` replace the world's in the tokenizer check."""
    profile = profile_of(cfg, profile)
    tasks = T.task_names(tasks)
    roles = roles_for(tasks, roles)
    mcfg = NuwaConfig.from_profile(cfg, **dict(model_overrides or {}))
    tcfg = TrainConfig.from_profile(cfg, **dict(train_overrides or {}))
    sketch = any(T.get_task(t).reads_sketch for t in tasks)
    if tokenizers is None:
        tokenizers = profile_tokenizers(cfg, profile=profile, progress=progress, sketch=sketch)
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
            "sketch": hashes["sketch"] if sketch else None}
    run = checkpoint.canonical({
        "version": TRAIN_VERSION, "model": asdict(mcfg), "train": tcfg.key(), "tasks": list(tasks),
        "roles": roles, "world": ws, "tokenizers": used, "init": init_hash,
        **({"data": dict(data_key)} if data_key else {})})
    hash_ = key_hash(run)
    return Plan(profile, tasks, roles, mcfg, tcfg, tokenizers, run, hash_, init_state,
                machine.device(cfg.get("device")))


def fit(p: Plan, *, state_path, model_path, stop_after=None, progress=True,
        dist: Dist | None = None, data: Mapping | None = None):
    """Tokenize the data (rank 0 first, the others then read its cache), train with a
    resumable state at ``state_path`` and write the model to ``model_path`` (rank 0).
    Returns (trainer, info, finished)."""
    dist = dist or Dist(device=p.device)
    if data is None:
        data = dist.main_first(lambda main: build_data(
            p.tasks, p.roles, p.tokenizers, p.config.data_size, profile=p.profile,
            progress=progress if main else False, **p.run["world"]))
    tr, finished = train(p.model_config, p.config, data, state_path=state_path, run=p.run,
                         hash_=p.hash, init_state=p.init_state, stop_after=stop_after,
                         progress=progress, dist=dist)
    info = {"hash": p.hash, "tasks": list(p.tasks), "roles": p.roles, "steps": tr.step,
            "train_seconds": round(tr.seconds, 1), "world_size": dist.world_size,
            "parameters": sum(q.numel() for q in tr.model.parameters()),
            "samples": {t: len(d) for t, d in data.items()},
            "task_steps": tr.sampler.counts(tr.step),
            "trained_by": training_record(p.config.threads or torch.get_num_threads(),
                                          device=str(dist.device),
                                          autocast="bfloat16" if tr.bf16 else None)}
    if finished and dist.main and model_path is not None:
        save_model(model_path, tr.model, p.run, p.hash, tr.history, info,
                   p.config.weights_dtype)
    dist.barrier()
    return tr, info, finished


def get_pretrained(cfg: Mapping[str, Any], tasks=T.PRETRAIN_TASKS, *, profile: str | None = None,
                   roles: Mapping[str, str] | None = None, model_overrides: Mapping | None = None,
                   train_overrides: Mapping | None = None, init=None,
                   tokenizers: Tokenizers | None = None, train_if_missing=True, progress=True,
                   slot: str | None = None):
    """The NÜWA model trained on ``tasks`` (default Eq. 16's T2I + V2V + T2V) of the profile's
    world: the shipped one (``results/<profile>/weights/``) or the one cached in
    ``artifacts/<profile>/nuwa/<tasks>-<hash>.pt``, otherwise trained (continuing a
    ``.partial.pt`` state when one is there) and cached. ``slot`` names the model's place in
    the record (``t2i/finetune_cc``): a shipped model there under another hash is an error.

    ``roles`` replaces a task's world role; ``model_overrides`` / ``train_overrides`` replace
    keys of the ``model:`` / ``train:`` sections (an ablation's attention, a fine-tuning's
    steps); ``init=(model, info)`` starts from another run's weights (fine-tuning).
    Returns (Nuwa in eval mode, info) with info holding the loss history."""
    p = plan(cfg, tasks, profile=profile, roles=roles, model_overrides=model_overrides,
             train_overrides=train_overrides, init=init, tokenizers=tokenizers,
             progress=progress)

    def load(path):
        model, payload = load_model(path, p.run, p.hash)
        return model.to(p.device), {**payload.get("info", {}),
                                    "history": payload.get("history", []), "path": str(path),
                                    "source": source_of(path)}

    def build():
        state_path = p.path.with_name(f"{p.label}-{p.hash}.partial.pt")
        parked.unpark(state_path, p.profile)      # a state committed by an earlier session
        tr, info, _ = fit(p, state_path=state_path, model_path=p.path, progress=progress)
        state_path.unlink(missing_ok=True)
        model, _ = load_model(p.path, p.run, p.hash)
        return model.to(p.device), {**info, "history": tr.history, "path": str(p.path),
                                    "source": "trained"}

    return fetch(p.path, load, build, build_if_missing=train_if_missing, spec=p.spec(slot),
                 missing=f"no cached NÜWA model for {p.label} at {p.path}; run the pretraining "
                         f"notebook or get_pretrained(..., train_if_missing=True)")[0]


def overrides(section: Mapping[str, Any], part: str) -> dict:
    """The training overrides of one kind of run in a notebook's profile section:
    ``section[part]`` (steps, lr, ...), with the section's ``threads`` when it sets one."""
    threads = section.get("threads")
    return {**section[part], **({"threads": int(threads)} if threads else {})}


@dataclass(eq=False)
class Run:
    """One :func:`get_pretrained` call as data, for :func:`get_many`: the profile ``cfg``
    (e.g. :func:`nuwa_lib.experiments.image_tasks.seeded` for a repeat), the tasks, and the same
    ``roles`` / ``model_overrides`` / ``train_overrides``; ``init`` is another Run whose model
    this one starts from (fine-tuning), trained first when missing; ``slot`` its place in the
    record (:mod:`nuwa_lib.experiments.record`)."""
    cfg: Mapping[str, Any]
    tasks: tuple = T.PRETRAIN_TASKS
    roles: Optional[Mapping[str, str]] = None
    model_overrides: Optional[Mapping] = None
    train_overrides: Optional[Mapping] = None
    init: Optional["Run"] = None
    slot: Optional[str] = None

    def chain(self) -> list:
        """[the first run, ..., self]: the runs whose weights lead to this one."""
        return (self.init.chain() if self.init is not None else []) + [self]

    def kwargs(self) -> dict:
        return {"tasks": self.tasks, "roles": self.roles, "model_overrides": self.model_overrides,
                "train_overrides": self.train_overrides, "slot": self.slot}


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
    ("spawn"; each with this process's torch thread count). A run is ready once every run
    before it on its ``init`` chain is shipped or cached: the ready runs train together
    (a fine-tune whose start is shipped beside a run from scratch), and a shared starting
    model is trained once. A run is a pure function of its config, so the models do not
    depend on ``workers``: only the wall time does. ``tokenizers`` (default: the profile's,
    loaded where needed) go to the workers too."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    for key, r in runs.items():
        if not isinstance(r, Run):
            raise TypeError(f"run {key!r} must be a train.Run, got {type(r).__name__}")
    chains = {key: r.chain() for key, r in runs.items()}
    threads = torch.get_num_threads()
    got: dict[int, tuple] = {}                       # id(Run) -> (model, info)
    trained: set = set()                              # hashes trained in workers

    def load(chain, d):
        r = chain[d]
        model, info = get_pretrained(r.cfg, init=got[id(chain[d - 1])] if d else None,
                                     tokenizers=tokenizers, progress=progress, **r.kwargs())
        if info["hash"] in trained:                   # in a worker: say so, as alone
            info = {**info, "source": "trained"}
        got[id(r)] = (model, info)

    def first_missing(chain):
        """Load the chain's shipped or cached runs in order; (hash, chain up to it) of the
        first one that is neither, or None when every run of the chain is loaded."""
        for d, r in enumerate(chain):
            if id(r) in got:
                continue
            kw = r.kwargs()
            slot = kw.pop("slot")
            p = plan(r.cfg, init=got[id(chain[d - 1])] if d else None, tokenizers=tokenizers,
                     progress=False, **kw)
            if not available(p.path, p.spec(slot)):
                return p.hash, chain[:d + 1]
            load(chain, d)
        return None

    while True:
        ready: dict = {}                              # run hash -> the chain up to it
        for c in chains.values():
            nxt = first_missing(c)
            if nxt is not None:
                ready.setdefault(*nxt)
        if not ready:
            break
        if len(ready) > 1 and workers > 1:
            with P.bar(total=len(ready), progress=progress,
                       desc=f"training {len(ready)} runs, {min(workers, len(ready))} at a "
                            f"time") as bar:
                map_in_processes(_train_chain, [(c, threads, tokenizers) for c in ready.values()],
                                 workers, done=lambda i, _: bar.update(1))
            trained.update(ready)
        else:                                         # one at a time, in this process
            c = next(iter(ready.values()))
            load(c, len(c) - 1)
    return {key: got[id(c[-1])] for key, c in chains.items()}
