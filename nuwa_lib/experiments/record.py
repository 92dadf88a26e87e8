"""The record's models, stage by stage: what each notebook evaluates, what ``nuwa-repro
--retrain`` trains and ships (DESIGN §3).

A *stage* is the set of trained models one notebook brings into the record: the judges
(notebook 01), the tokenizers (02), the Eq. 16 pretraining (04), the fine-tuned and
from-scratch rows of Tables 1-3, 5, 6 and S2I (05, 06, 09, 10, 11, 13) and the compute
study's arms (14). Every model has a *slot*, its place in the record
(``t2i/scratch_full/seed0``), which the shipped weights' manifest keeps.

:func:`runs_of` gives a NÜWA stage's rows as :class:`~nuwa_lib.training.runs.Run` (the
notebooks call it); :func:`resolve` fetches every model of a stage (shipped -> cached ->
trained); :func:`retrain` trains the stages afresh and ships them; :func:`live_run` is the
short training a notebook shows before it loads the record's model; :func:`describe` says
where a model came from.
"""
from __future__ import annotations

import os
import time
from typing import Any, Mapping, Sequence

import torch

from ..data import tasks as T
from ..evaluation import judges as J
from ..tokenizers import token_sets, vq_eval, vq_train, vqgan
from ..training import runs, task_data
from ..utils import cache, checkpoint, machine, parked, progress as P, weights
from ..utils.pool import map_in_processes
from . import image_tasks, study, video_tasks

STAGES = ("judges", "tokenizers", "pretraining", "t2i", "s2i", "t2v", "v2v", "s2v",
          "multitask", "study")
NOTEBOOK = {"judges": "01_evaluators", "tokenizers": "02_vqgan", "pretraining": "04_pretraining",
            "t2i": "05_t2i", "s2i": "06_s2i", "t2v": "09_t2v", "v2v": "10_v2v", "s2v": "11_s2v",
            "multitask": "13_multitask", "study": "14_compute_study"}
NUWA_STAGES = ("pretraining", "t2i", "s2i", "t2v", "v2v", "s2v", "multitask")
SKETCH_STAGES = ("s2i", "s2v")
VAL_SAMPLES = 128            # held-out samples per task for a NÜWA model's validation loss


def check_stages(stages: Sequence[str]) -> list:
    """``stages`` in the record's order; ``all`` (or none) means every stage."""
    stages = list(stages or ["all"])
    if "all" in stages:
        return list(STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; stages: all, {', '.join(STAGES)}")
    return [s for s in STAGES if s in stages]


def _check_stage(stage: str) -> None:
    check_stages([stage])
    if stage == "all":
        raise ValueError("one stage, not all")


# --------------------------------------------------------------------------- the rows
def pretraining_run(cfg: Mapping[str, Any]) -> runs.Run:
    """Notebook 04's Eq. 16 model (T2I + V2V + T2V on the pretraining roles)."""
    return runs.Run(cfg, slot="pretraining/multitask")


def runs_of(cfg: Mapping[str, Any], stage: str) -> dict:
    """{row key: Run} of a NÜWA stage, as the stage's notebook evaluates them (fine-tunings
    carry their ``init`` chain; the keys are the notebook's)."""
    _check_stage(stage)
    if stage not in NUWA_STAGES:
        raise ValueError(f"stage {stage!r} trains no NÜWA model; NÜWA stages: "
                         f"{', '.join(NUWA_STAGES)}")
    S = cfg.get(stage) or {}
    multi = pretraining_run(cfg)
    if stage == "pretraining":
        return {"multitask": multi}
    if stage == "t2i":
        seed, mscoco = int(cfg.get("seed", 0)), {"T2I": "mscoco"}
        out = {(f"scratch_{k}", s): runs.Run(
                   image_tasks.seeded(cfg, s), ("T2I",), roles=mscoco,
                   model_overrides={"encoder_attention": k, "decoder_attention": k},
                   train_overrides=runs.overrides(S, "scratch"), slot=f"t2i/scratch_{k}/seed{s}")
               for k in S["attentions"] for s in S["seeds"]}
        cc = runs.Run(cfg, ("T2I",), train_overrides=runs.overrides(S, "pretrain_cc"),
                      slot="t2i/pretrain_cc")                # image-only pretraining on cc
        for key, init in (("finetune_cc", cc), ("finetune_multitask", multi)):
            out[key, seed] = runs.Run(cfg, ("T2I",), roles=mscoco, init=init,
                                      train_overrides=runs.overrides(S, "finetune"),
                                      slot=f"t2i/{key}")
        out["zeroshot_multitask", seed] = multi
        return out
    if stage == "s2i":
        return {"NÜWA fine-tuned (multi-task pretraining)": runs.Run(
                    cfg, ("S2I",), init=multi, train_overrides=runs.overrides(S, "finetune"),
                    slot="s2i/finetune_multitask"),
                "NÜWA from scratch": runs.Run(cfg, ("S2I",),
                                              train_overrides=runs.overrides(S, "scratch"),
                                              slot="s2i/scratch")}
    if stage in ("t2v", "v2v"):
        task = stage.upper()
        roles = {task: {"t2v": "kinetics", "v2v": "bair"}[stage]}
        return {"scratch": runs.Run(cfg, (task,), roles=roles,
                                    train_overrides=runs.overrides(S, "scratch"),
                                    slot=f"{stage}/scratch"),
                "finetune_multitask": runs.Run(cfg, (task,), roles=roles, init=multi,
                                               train_overrides=runs.overrides(S, "finetune"),
                                               slot=f"{stage}/finetune_multitask")}
    if stage == "s2v":
        over = runs.overrides(S, "train")
        return {(row, s): runs.Run(image_tasks.seeded(cfg, s), ("S2V",), train_overrides=over,
                                   model_overrides=dict(zip(("encoder_attention",
                                                             "decoder_attention"),
                                                            video_tasks.attention_pair(row))),
                                   slot=f"s2v/{row}/seed{s}")
                for row in S["rows"] for s in S["seeds"]}
    # multitask (Table 5): pretraining on task subsets, then T2V fine-tuned on msrvtt
    pre = {(row, s): runs.Run(image_tasks.seeded(cfg, s), video_tasks.pretraining_tasks(row),
                              train_overrides=runs.overrides(S, "pretrain"),
                              slot=f"multitask/pre/{row}/seed{s}")
           for row in S["rows"] for s in S["seeds"]}
    fine = {key: runs.Run(p.cfg, ("T2V",), roles={"T2V": "msrvtt"}, init=p,
                          train_overrides=runs.overrides(S, "finetune"),
                          slot=f"multitask/{key[0]}/seed{key[1]}") for key, p in pre.items()}
    return {**{("pre",) + k: p for k, p in pre.items()}, **fine}


def stage_tokenizers(cfg: Mapping[str, Any], stage: str, progress=True):
    return token_sets.profile_tokenizers(cfg, sketch=stage in SKETCH_STAGES, progress=progress)


def get_runs(cfg: Mapping[str, Any], stage: str, tokenizers=None, progress=True) -> dict:
    """{row key: (Nuwa, info)} of a NÜWA stage: shipped, cached or trained (the stage's
    ``workers`` at a time)."""
    S = cfg.get(stage) or {}
    tokenizers = tokenizers or stage_tokenizers(cfg, stage, progress)
    return runs.get_many(runs_of(cfg, stage), workers=int(S.get("workers") or 1),
                         tokenizers=tokenizers, progress=progress)


def _judge_in_worker(cfg, name):
    torch.set_num_threads(1)
    J.get_judges(cfg, names=(name,), progress=P.for_workers())


def _train_judges(cfg, progress=True) -> None:
    """The missing judges trained ``judges.workers`` at a time (default: as many as the cores
    allow; the longest first), one process each; a judge is a function of its config, so only
    the wall time changes."""
    profile = cache.profile_of(cfg)
    jcfg = J.JudgesConfig.from_profile(cfg)
    missing = [n for n in J.JUDGE_NAMES if not cache.available(
        J.judge_path(n, jcfg, profile), J.judge_spec(n, jcfg, profile))]
    missing.sort(key=lambda n: (n != "video", -jcfg.judge(n).steps))   # video: 8 frames a sample
    workers = machine.workers((cfg.get("judges") or {}).get("workers", "auto"))
    if len(missing) > 1 and workers > 1:
        with P.bar(total=len(missing), desc=f"training {len(missing)} judges, {workers} at a "
                   f"time", progress=progress) as bar:
            map_in_processes(_judge_in_worker, [(dict(cfg), n) for n in missing], workers,
                             done=lambda i, _: bar.update(1))


def resolve(cfg: Mapping[str, Any], stage: str, progress=True):
    """Every model of ``stage``: shipped, cached, or trained and cached."""
    _check_stage(stage)
    if stage == "judges":
        _train_judges(cfg, progress)
        return J.get_judges(cfg, progress=progress)
    if stage == "tokenizers":
        return vq_train.get_tokenizers(cfg, progress=progress)
    if stage == "study":
        return study.run_study(cfg, progress=progress)
    return get_runs(cfg, stage, progress=progress)


# --------------------------------------------------------------------------- retraining
def _losses(spec: weights.Spec, payload: Mapping, cfg, path) -> dict:
    """Final train loss (mean of the last tenth of the history) and the held-out loss: a
    judge's on its ``val`` scenes, a NÜWA model's per token on ``VAL_SAMPLES`` validation
    samples of each trained task; a tokenizer's reconstruction error on ``VAL_SAMPLES`` held-out
    pictures (mean squared error on [-1, 1], or the share of wrong classes for sketches)."""
    info = payload.get("info") or {}
    tail = [h["loss"] for h in payload.get("history") or [] if "loss" in h]
    tail = tail[-max(1, len(tail) // 10):]
    train = sum(tail) / len(tail) if tail else info.get("final_loss")
    out = {"train_loss": None if train is None else round(float(train), 4), "val_loss": None}
    if spec.kind == "judges":
        jcfg = J.JudgesConfig.from_profile(cfg)
        out["val_loss"] = round(J.heldout_loss(payload["name"], J.load_checkpoint(path), jcfg), 4)
    if spec.kind == "vqgan":
        vq, _ = vq_train.load_tokenizer(path)
        pics = vq_eval.heldout_pictures(vq.config, VAL_SAMPLES)
        rec = vqgan.reconstruct(vq, pics)
        err = (float((rec != pics).mean()) if vq.config.kind == "seg" else
               float(((vqgan.to_input(rec, vq.config) - vqgan.to_input(pics, vq.config)) ** 2)
                     .mean()))
        out["val_loss"] = round(err, 5)
    if spec.kind == "nuwa":
        model, _ = runs.load_model_payload(spec.name, payload)
        toks = token_sets.profile_tokenizers(
            cfg, sketch=any(T.get_task(t).reads_sketch for t in payload["tasks"]), progress=False)
        ws = payload["world"]
        val = {t: task_data.task_data(t, payload["roles"][t], "val", VAL_SAMPLES, toks,
                                      profile=spec.profile, progress=False, **ws)
               for t in payload["tasks"]}
        out["val_loss"] = {t: round(runs.heldout_loss(model, d), 4) for t, d in val.items()}
    return out


def _record_of(spec, payload, cfg, path) -> dict:
    """The manifest's account of how a model was trained."""
    if spec.kind == "study":
        info = payload.get("info") or {}
        return {"steps": info.get("steps"), "train_seconds": info.get("train_seconds"),
                "trained_by": info.get("trained_by"), "train_loss": None,
                "val_loss": {"final": (payload["rows"][-1] or {}).get("val loss")
                             if payload.get("rows") else None}}
    info = payload.get("info") or {}
    return {"steps": info.get("steps"), "train_seconds": info.get("train_seconds"),
            "trained_by": info.get("trained_by"), **_losses(spec, payload, cfg, path)}


# what a shipped tokenizer keeps of its history: the steps that end a dead-code restart window
# (they carry the codebook usage notebook 02 plots), not all 5400
HISTORY_EVERY = {"vqgan": 20}


def ship_resolved(cfg: Mapping[str, Any], stage: str, resolved: Sequence, progress=True) -> list:
    """Ship every model ``resolved`` (``cache.RESOLVED`` entries) that came from this
    machine's cache or training; returns the shipped files."""
    import json

    dtype = {"nuwa": str(cfg.get("train", {}).get("weights_dtype", "float32"))}
    done, out = set(), []
    todo = [(s, p) for s, p, how in resolved if s is not None and how != "shipped"]
    for spec, path in P.bar(todo, desc=f"shipping {stage}", progress=progress, leave=False):
        if spec.file in done:
            continue
        done.add(spec.file)
        payload = (json.loads(path.read_text()) if spec.suffix == ".json"
                   else checkpoint.read_payload(path))
        weights.ship(spec, path, stage=stage, record=_record_of(spec, payload, cfg, path),
                     dtype=None if spec.suffix == ".json" else dtype.get(spec.kind),
                     history_every=HISTORY_EVERY.get(spec.kind))
        out.append(spec.file)
    return out


def retrain(cfg: Mapping[str, Any], stages: Sequence[str] = ("all",), progress=True,
            missing_only: bool = False) -> dict:
    """Train every model of ``stages`` afresh (their shipped models set aside; this
    machine's cache and partial training states are used, so an interrupted retrain
    continues where it stopped) and ship them with the manifest, stage by stage. With
    ``missing_only`` the shipped models that fit the profile are kept and only the others
    (new rows, seeds, changed configs) are trained and shipped.
    Returns {stage: {"files": [...], "seconds": s}}."""
    stages = check_stages(stages)
    profile = cache.profile_of(cfg)
    # one run alone gets every core (threads are speed only, not in any hash), unless
    # NUWA_THREADS (--threads) says otherwise
    cfg = {**cfg, "train": {**(cfg.get("train") or {}), "threads": machine.threads(machine.cores())}}
    env = weights.MISSING_ENV if missing_only else weights.RETRAIN_ENV
    before = os.environ.get(env)
    report = {}
    parked.begin(profile, stages)          # what `nuwa-repro --park` would carry meanwhile
    try:
        for i, stage in enumerate(stages):
            # this stage and the later ones are set aside (or, completing them, their
            # mismatched models replaced); the earlier ones are shipped by now
            os.environ[env] = ",".join(stages[i:])    # workers inherit it
            t0 = time.perf_counter()
            del cache.RESOLVED[:]
            resolve(cfg, stage, progress=progress)
            files = ship_resolved(cfg, stage, list(cache.RESOLVED), progress=progress)
            # this stage's old files that no model of the stage uses any more
            kept = set(files) | {s.file for s, _, how in cache.RESOLVED
                                 if s is not None and how == "shipped"}
            stale = [f for f, e in weights.manifest(profile)["files"].items()
                     if e.get("stage") == stage and f not in kept]
            if stale:
                weights.drop(profile, stale)
            report[stage] = {"files": files, "seconds": round(time.perf_counter() - t0, 1)}
            print(f"retrain {stage}: {len(files)} model(s) shipped to "
                  f"{weights.weights_dir(profile)} in {report[stage]['seconds']:.0f} s",
                  flush=True)
        parked.end(profile)
    finally:
        if before is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = before
    return report


# --------------------------------------------------------------------------- notebooks
def describe(info: Mapping[str, Any], stage: str | None = None, profile: str = "") -> str:
    """One line: where a model came from (the shipped weights, this machine's cache or
    trained now), its steps, wall time and machine; with ``stage``, how to retrain it."""
    by = info.get("trained_by") or {}
    threads = by.get("threads")
    made = (f"{info.get('steps', '?')} steps, {info.get('train_seconds', '?')} s on "
            f"{by.get('device', 'cpu')} {by.get('cpu') or ''}".rstrip()
            + (f" ({threads} thread{'s' if threads != 1 else ''})" if threads else "")
            + (f", commit {by['git_sha'][:7]}" if by.get("git_sha") else ""))
    where = {"shipped": "shipped", "loaded": "this machine's cache",
             "trained": "trained now"}.get(info.get("source"), info.get("source", "?"))
    return f"{where}: {made}" + (f"; {retrain_hint(stage, profile)}" if stage else "")


def retrain_hint(stage: str, profile: str) -> str:
    return f"retrain with `nuwa-repro --profile {profile} --retrain {stage}`"


def live_run(cfg: Mapping[str, Any], stage: str, progress=True) -> list:
    """A short training a notebook shows (``live.steps`` of the stage's recipe, on
    ``live.data_size`` samples) before it loads the record's model: [(step, loss)], every
    tenth step. Nothing is cached; the random state of the caller is kept."""
    _check_stage(stage)
    live = cfg.get("live") or {}
    steps, size = int(live.get("steps", 100)), int(live.get("data_size", 256))
    with torch.random.fork_rng(devices=[]):
        if stage == "judges":
            jcfg = J.JudgesConfig.from_profile(cfg)
            _, info = J.train_judge("classifier", jcfg, progress=progress, steps=steps)
            hist = info["history"]
        elif stage == "tokenizers":
            name = vqgan.chosen(cfg)[0]           # the recipe notebook 02 trains its rows with
            config = vq_train.configs_from_profile(cfg)[name]
            judges = J.get_judges(cfg, names=("classifier",), progress=progress)
            tr = vq_train.Trainer(config, judges.classifier,
                                  J.JudgesConfig.from_profile(cfg).canvas)
            tr.run(until=steps, progress=progress)
            hist = [h["loss"] for h in tr.history]
        elif stage in NUWA_STAGES:
            run = next(iter(runs_of(cfg, stage).values()))
            p = runs.plan(run.cfg, tokenizers=stage_tokenizers(cfg, stage, progress),
                          progress=progress, **{k: v for k, v in run.kwargs().items()
                                                if k != "slot"})
            data = runs.build_data(p.tasks, p.roles, p.tokenizers, size, profile=p.profile,
                                   progress=progress, **p.run["world"])
            tr, _ = runs.train(p.model_config, p.config, data, stop_after=steps,
                               progress=progress)
            hist = [h["loss"] for h in tr.history]
        else:
            raise ValueError(f"stage {stage!r} has no live run (its notebook shows its curves)")
    every = max(1, len(hist) // 10)
    return [(i + every, sum(hist[i:i + every]) / every)
            for i in range(0, len(hist) - every + 1, every)]


def live_line(points: Sequence) -> str:
    """The live run's losses on one line (every tenth of the run, averaged)."""
    shown = " → ".join(f"{loss:.2f}" for _, loss in points)
    return f"live run, {points[-1][0] if points else 0} steps: loss {shown}"


def source_lines(infos: Mapping[Any, Mapping], stage: str, profile: str) -> list:
    """``describe`` of each model of a stage, one line per model (its row key first), then
    how to retrain them."""
    width = max((len(str(k)) for k in infos), default=0)
    return [f"{str(k):<{width}}  {describe(i)}" for k, i in infos.items()] + \
        [f"({retrain_hint(stage, profile)})"]
