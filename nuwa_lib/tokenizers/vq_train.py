"""Training the visual tokenizers (Eqs. 3-5) and their cache: :func:`get_tokenizer`,
:func:`get_tokenizers` (several at once in worker processes). Cached as
``artifacts/<profile>/vqgan/<name>-<hash>.pt``; an interrupted run resumes from
``<name>-<hash>.partial.pt`` to the same weights as an uninterrupted one.
"""
from __future__ import annotations

import math
import time

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from einops import rearrange

from ..data import world
from ..evaluation import judge_nets, judges as J
from ..utils import checkpoint, parked, progress as P
from ..utils.cache import artifact_path, available, fetch, profile_of, source_of
from ..utils.provenance import training_record
from ..utils.weights import Spec
from ..utils.pool import map_in_processes
from . import losses as L
from .vqgan import (
    CHECKPOINT_FORMAT,
    KINDS,
    STATE_FORMAT,
    VQ_STREAM,
    VQ_VERSION,
    VQCheckpointError,
    VQConfig,
    VQModel,
    config_hash,
    configs_from_profile,
    training_batch,
)


class Trainer:
    """The state of one tokenizer's training run: model, discriminator, optimisers, step and
    history. :meth:`run` continues from :attr:`step`; :meth:`state` / :meth:`load_state`
    move everything in and out of a checkpoint."""

    def __init__(self, config: VQConfig, classifier=None, judge_canvas=32, *,
                 channels_last=False):
        self.config = c = config
        self.batch = training_batch          # (config, step) -> (input, raw pictures)
        self.recipe = r = L.RECIPES[c.kind]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed * 1000 + KINDS.index(c.kind))
            self.model = VQModel(c)
            self.disc = L.PatchDiscriminator(3, c.disc_width, c.canvas) if r.adversarial else None
        self.features = None
        if r.perceptual and c.perceptual_weight > 0:     # a zero weight skips the term's cost
            if classifier is None:
                raise ValueError(f"a {c.kind} tokenizer needs the world classifier judge for its "
                                 "perceptual loss (Eq. 4): pass classifier=")
            self.features = L.PerceptualFeatures(classifier, judge_canvas)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=c.lr, betas=(0.5, 0.9))
        self.opt_d = (torch.optim.Adam(self.disc.parameters(), lr=c.lr, betas=(0.5, 0.9))
                      if self.disc is not None else None)
        if channels_last:         # a memory format: speed only, the same numbers up to rounding
            for net in filter(None, (self.model, self.disc, self.features)):
                net.to(memory_format=torch.channels_last)
        self.step, self.history = 0, []
        self.disc_from = int(c.disc_start * c.steps)

    def _lr(self, step):
        # Warm-up times a cosine over all the steps: not training.schedule.Schedule (a cosine
        # after the warm-up), and the committed tokenizers were trained with this one.
        warm = max(1, self.config.steps // 20)
        s = self.config.steps
        return self.config.lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / s))

    def train_step(self):
        c, step = self.config, self.step
        gen = torch.Generator().manual_seed(int(np.random.default_rng([c.seed, VQ_STREAM + 1, step])
                                                .integers(2 ** 62)))
        x, raw = self.batch(c, step)
        for opt in filter(None, (self.opt, self.opt_d)):
            for group in opt.param_groups:
                group["lr"] = self._lr(step)
        self.model.train()
        out, idx, commit, counts = self.model(x, gen)
        # the terms of the tokenizer's recipe (losses.RECIPES): Eq. 3, then Eqs. 4 and 5
        rec = self.recipe.reconstruction(out, x, raw)
        loss = rec + c.beta * commit
        log = {"step": step, "rec": rec.item(), "commit": commit.item()}
        fidelity = rec
        if self.features is not None:
            perc = L.perceptual_loss(self.features, out, x)
            fidelity = rec + c.perceptual_weight * perc
            loss = loss + c.perceptual_weight * perc
            log["perceptual"] = perc.item()
        gan = self.disc is not None and step >= self.disc_from
        if gan:
            g = L.generator_loss(self.disc, out)
            lam = L.adaptive_weight(fidelity, g, self.model.decoder.out.weight)
            loss = loss + c.gan_weight * lam * g
            log.update(gan_g=g.item(), gan_weight=float(c.gan_weight * lam))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if gan:
            d_loss = L.discriminator_loss(self.disc, x, out)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            log["gan_d"] = d_loss.item()
        q = self.model.quantizer
        if (step + 1) % c.restart_every == 0:
            # usage over the window that ends here (Fig.: codebook usage over training)
            log["window_usage"] = float((q.hits > 0).float().mean())
            if step + 1 < c.steps:
                with torch.no_grad():
                    flat = rearrange(self.model.encoder(x), "b d h w -> (b h w) d")
                log["restarted"] = q.restart_dead(flat, c.restart_threshold, gen)
        p = counts.float() / counts.sum()
        log.update(loss=loss.item(), batch_codes=int((counts > 0).sum()),
                   perplexity=float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())))
        self.history.append(log)
        self.step += 1
        return log

    def run(self, until=None, progress=True, on_step: Callable | None = None):
        """Train until step ``until`` (default: the config's steps); ``on_step(trainer)``
        runs after every step (checkpointing)."""
        until = self.config.steps if until is None else min(until, self.config.steps)
        bar = P.bar(total=until, initial=self.step, desc=f"{self.config.kind} {self.config.label}",
                    progress=progress, leave=False)
        while self.step < until:
            log = self.train_step()
            bar.update(1)
            if self.step % 20 == 0:
                bar.set_postfix(loss=f"{log['loss']:.3f}", codes=log["batch_codes"])
            if on_step is not None:
                on_step(self)
        bar.close()
        self.model.eval()
        return self

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "disc": None if self.disc is None else self.disc.state_dict(),
                "opt_d": None if self.opt_d is None else self.opt_d.state_dict(),
                "step": self.step, "history": self.history}

    def load_state(self, path, state):
        checkpoint.load_state(path, self.model, state["model"], "tokenizer", VQCheckpointError)
        self.opt.load_state_dict(state["opt"])
        if self.disc is not None:
            checkpoint.load_state(path, self.disc, state["disc"], "discriminator", VQCheckpointError)
            self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.history = int(state["step"]), list(state["history"])


def _payload(config, hash_, fmt, **rest):
    return {"format": fmt, **_expect(config, hash_), **rest}


def _expect(config, hash_):
    return {"version": VQ_VERSION, "hash": hash_, "config": config.key()}


def save_tokenizer(path, config, hash_, model, history, info) -> Path:
    return checkpoint.save(path, _payload(config, hash_, CHECKPOINT_FORMAT, info=info,
                                          history=history, state_dict=model.state_dict()))


def load_tokenizer(path, config: VQConfig | None = None, hash_: str | None = None):
    """(VQModel in eval mode, payload) from ``path``; with ``config`` given, a file made for
    another config raises :class:`VQCheckpointError` naming the file and the mismatch."""
    expect = None if config is None else _expect(config, hash_) if hash_ else \
        {"version": VQ_VERSION, "config": config.key()}
    payload = checkpoint.load(path, CHECKPOINT_FORMAT, expect, what="tokenizer checkpoint",
                              hint="delete the file to retrain", error=VQCheckpointError)
    if config is None:
        try:
            config = VQConfig(**payload["config"])
        except (TypeError, ValueError) as err:
            raise VQCheckpointError(f"{path}: its config cannot be read back ({err})") from None
    model = checkpoint.load_state(path, VQModel(config), payload["state_dict"], "tokenizer",
                                  VQCheckpointError)
    model.eval().requires_grad_(False)
    return model, payload


def train_tokenizer(config: VQConfig, classifier=None, *, state_path=None, checkpoint_every=100,
                    progress=True, stop_after: int | None = None, hash_: str = "", threads=None,
                    judge_canvas=32):
    """Train one tokenizer; deterministic on CPU for a config. With ``state_path``, the
    full training state is written there every ``checkpoint_every`` steps and a run that
    finds it continues from it. ``stop_after`` ends the run early at that step (what an
    interruption looks like; the state is saved first). Returns (trainer, finished)."""
    tr = Trainer(config, classifier, judge_canvas)
    if state_path is not None and Path(state_path).exists():
        payload = checkpoint.load(state_path, STATE_FORMAT, _expect(config, hash_),
                                  what="tokenizer training state",
                                  hint="delete it to start the run again", error=VQCheckpointError)
        tr.load_state(state_path, payload["state"])

    def save_state(t):
        if state_path is not None and (t.step % checkpoint_every == 0 or t.step == stop_after):
            checkpoint.save(state_path, _payload(config, hash_, STATE_FORMAT, state=t.state()))

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        tr.run(until=stop_after, progress=progress, on_step=save_state)
    finally:
        torch.set_num_threads(before)
    tr.seconds = round(time.perf_counter() - t0, 1)
    return tr, tr.step >= config.steps


def _identity(cfg, name, profile):
    """(config, hash, cache path, judges config, shipped spec) of the profile's tokenizer
    ``name``; a VQ-GAN's hash covers its perceptual judge."""
    configs = configs_from_profile(cfg)
    world._check("tokenizer", name, tuple(configs))
    config, jcfg = configs[name], judge_nets.JudgesConfig.from_profile(cfg)
    judge_hash = judge_nets.config_hash("classifier", jcfg) if config.kind == "vqgan" else None
    hash_ = config_hash(config, judge_hash)
    spec = Spec(profile, "vqgan", name, hash_, {**_expect(config, hash_), "judge": judge_hash},
                slot=f"tokenizers/{name}")
    return config, hash_, artifact_path(profile, "vqgan", name, hash_), jcfg, spec


def get_tokenizer(cfg: Mapping[str, Any], name: str, *, classifier=None, profile=None,
                  train_if_missing=True, progress=True, judges=None):
    """The tokenizer ``name`` of the profile's ``vqgan.models``: the shipped one
    (``results/<profile>/weights/``) or the one cached in ``artifacts/<profile>/vqgan/`` under
    its config hash, otherwise trained
    (resuming a partial run when one is there) and cached. A VQ-GAN needs the world
    classifier (from ``judges``, or fetched through ``judges.get_judges``). Returns
    (VQModel, info) with info holding the training history."""
    profile = profile_of(cfg, profile)
    config, hash_, path, jcfg, spec = _identity(cfg, name, profile)

    def load(path):
        model, payload = load_tokenizer(path, config, hash_)
        return model, {**payload.get("info", {}), "history": payload.get("history", []),
                       "path": str(path), "source": source_of(path)}

    def build():
        nonlocal classifier
        if config.kind == "vqgan" and classifier is None:
            classifier = (judges or J.get_judges(cfg, names=("classifier",), profile=profile,
                                                 progress=progress)).classifier
        state_path = path.with_name(f"{name}-{hash_}.partial.pt")
        parked.unpark(state_path, profile)        # a state committed by an earlier session
        threads = (cfg.get("vqgan") or {}).get("threads")
        tr, _ = train_tokenizer(config, classifier, state_path=state_path, progress=progress,
                                hash_=hash_, threads=threads, judge_canvas=jcfg.canvas)
        info = {"name": name, "hash": hash_, "steps": tr.step, "train_seconds": tr.seconds,
                "parameters": sum(p.numel() for p in tr.model.parameters()),
                "trained_by": training_record(threads)}
        save_tokenizer(path, config, hash_, tr.model, tr.history, info)
        state_path.unlink(missing_ok=True)
        model, _ = load_tokenizer(path, config, hash_)
        return model, {**info, "history": tr.history, "path": str(path), "source": "trained"}

    return fetch(path, load, build, build_if_missing=train_if_missing, spec=spec,
                 missing=f"no cached tokenizer {name!r} at {path}; run notebook 02_vqgan or "
                         f"get_tokenizer(..., train_if_missing=True)")[0]


def _train_in_worker(cfg, name, profile):
    """One tokenizer trained (or found) in a worker process: returns nothing, the cache is
    the result."""
    get_tokenizer(cfg, name, profile=profile, progress=P.for_workers())


def get_tokenizers(cfg: Mapping[str, Any], names=None, *, profile=None, judges=None,
                   workers=None, progress=True):
    """{name: (VQModel, info)} for ``names`` (default: every model of the profile). Missing
    tokenizers are trained first, ``workers`` at a time in separate processes (default:
    the profile's ``vqgan.workers``); each run is the same as alone (training is a function
    of its config), only the wall time changes. Then all are loaded from the cache."""
    profile = profile or cfg.get("name")
    configs = configs_from_profile(cfg)
    names = list(configs) if names is None else list(names)
    for name in names:
        world._check("tokenizer", name, tuple(configs))
    workers = int(workers or (cfg.get("vqgan") or {}).get("workers") or 1)
    if any(configs[n].kind == "vqgan" for n in names):   # the judge first, once, in this process
        judges = judges or J.get_judges(cfg, names=("classifier",), profile=profile,
                                        progress=progress)
    missing = [n for n in names if not available(*_identity(cfg, n, profile)[2::2])]
    if workers > 1 and len(missing) > 1:
        # largest first, so the long runs start early: pixels x steps
        missing.sort(key=lambda n: -configs[n].canvas ** 2 * configs[n].steps)
        map_in_processes(_train_in_worker, [(dict(cfg), n, profile) for n in missing], workers)
    got = {n: get_tokenizer(cfg, n, profile=profile, judges=judges, progress=progress)
           for n in names}
    # trained in a worker just now: say so, as when trained here
    return {n: (m, {**i, "source": "trained"} if n in missing and workers > 1 else i)
            for n, (m, i) in got.items()}
