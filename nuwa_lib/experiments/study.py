"""How NÜWA and its tokenizer learn the world: learning curves against training compute.

The paper trains at one scale (Sec. 4.1); at toy scale the question comes first: how much
compute does a model of a given width need before its samples say what their prompts say, and
where does the tokenizer cap that? The profile's ``study:`` section sets the arms:

* **model arms** -- one task (T2I or T2V) from scratch at a width (``dim``), batch size and
  learning rate; at a few geometrically spaced steps the validation loss (cross-entropy per
  target token on ``val``) and the judges' Acc and CLIPSIM of samples for held-out ``test``
  prompts, beside the same prompts' real pictures through the VQ-GAN (the ceiling);
* **tokenizer arms** -- the profile's image tokenizer at a ``width`` trained for ``steps``: the
  classifier's Acc on held-out test pictures after the VQ-GAN against before it, and the share
  of shapes it still reads.

Intermediate points are read off one run whose schedule (warm-up, cosine decay) spans the
whole run, as learning curves usually are; only the last point is a finished run. Training
compute is counted, not timed: 6 x (the encoder's linear weights x condition tokens + the
decoder's and output layer's linear weights x target tokens) per sample (forward and
backward; attention scores, windowed and small here, are left out). Each arm is a pure
function of its config and seed, cached as JSON under ``artifacts/<profile>/study/``, and
arms run ``workers`` at a time in separate processes.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from ..data import tasks as T
from ..evaluation import judge_nets, judges as J, metrics
from ..tokenizers import token_sets, vq_eval, vq_train, vqgan
from ..training import task_data
from ..utils import checkpoint, progress as P
from ..utils.cache import artifact_path, available, fetch, key_hash
from ..utils.files import write_json
from ..utils.pool import map_in_processes
from ..utils.provenance import training_record
from ..utils import weights
from ..utils.weights import Spec
# reading the rows (re-exported: notebook 14 calls them as study.*)
from .study_reading import (  # noqa: F401
    ARM_KEYS, EXTRA_COLUMNS, EXTRA_SHORT, SWEPT, TOKENIZER_KEYS, _fmt, arm_label, best_arm,
    compute_to_reach, extrapolate, final_rows, findings)

STUDY_VERSION = 1
TASKS = ("T2I", "T2V")
JUDGES = ("classifier", "clip", "video")


# a model arm's optional settings and their defaults; at its default a setting stays out of
# the arm's key, label and rows, so the arms measured before it existed keep their hashes
ARM_EXTRAS = {"layers": 0, "cond_dropout": 0.0, "guidance": 0.0}


@dataclass(frozen=True)
class ModelArm:
    """One task from scratch at a width, batch size and learning rate, for ``steps``; and,
    optionally, ``layers`` (encoder and decoder layers each; 0: the profile's),
    ``cond_dropout`` (the share of captions trained as the word "None", ``train.cond_dropout``)
    and ``guidance`` (a classifier-free guidance scale against "None": its samples are read
    beside the paper's sampling at every point, never instead of it; beyond the paper)."""
    task: str
    dim: int
    batch_size: int
    lr: float
    steps: int
    layers: int = 0
    cond_dropout: float = 0.0
    guidance: float = 0.0

    def extras(self) -> dict:
        """The optional settings that differ from their defaults."""
        return {k: getattr(self, k) for k, v in ARM_EXTRAS.items() if getattr(self, k) != v}

    def key(self) -> dict:
        """What the arm's hash depends on: its settings, the defaults of the extras left out."""
        return {k: v for k, v in asdict(self).items() if k not in ARM_EXTRAS} | self.extras()

    @property
    def label(self) -> str:
        return (f"{self.task} d={self.dim} b={self.batch_size} lr={self.lr:g}"
                + "".join(f" {EXTRA_SHORT[k]}={_fmt(v)}" for k, v in self.extras().items()))


@dataclass(frozen=True)
class TokenizerArm:
    """The profile's image tokenizer (``vqgan.tokenizer``) with ``changes`` to its settings
    (``((VQConfig field, value), ...)``: width, codebook, code_dim, kind, lr, ...), trained
    for ``steps``."""
    steps: int
    changes: tuple = ()

    @property
    def label(self) -> str:
        return "tokenizer " + (" ".join(f"{k}={_fmt(v)}" for k, v in self.changes)
                               or "as profiled")


@dataclass(frozen=True)
class StudyConfig:
    models: tuple
    tokenizers: tuple
    points: int = 4            # evaluation points per arm
    prompts: int = 64          # held-out test prompts sampled per point
    pictures: int = 0          # held-out pictures per tokenizer point (0: ``prompts``)
    val: int = 256             # validation samples for the loss
    data_size: int = 4000      # training samples tokenized per task
    temperature: float = 1.0
    top_k: int | None = 32
    workers: int = 1           # arms at once, one process each (wall time only)
    threads: int = 1           # torch threads per arm (speed only)
    targets: tuple = ()        # ((task or "tokenizer", share the arm should reach), ...)
    tokenizer_base: tuple = ()  # ((VQConfig field, value), ...) under every tokenizer arm
    tokenizer: str = ""        # the model arms' image tokenizer ("": vqgan.tokenizer)

    @classmethod
    def from_profile(cls, cfg: Mapping[str, Any]) -> "StudyConfig":
        section = dict(cfg.get("study") or {})
        if not section:
            raise ValueError("the profile has no study: section (model and tokenizer arms)")
        allowed = set(cls.__dataclass_fields__)
        unknown = set(section) - allowed
        if unknown:
            raise ValueError(f"study: unknown key(s) {sorted(unknown)}; allowed: "
                             f"{', '.join(sorted(allowed))}")
        models = tuple(_arm(ModelArm, f"study.models[{i}]", a)
                       for i, a in enumerate(section.pop("models", None) or []))
        toks = tuple(_tokenizer_arm(f"study.tokenizers[{i}]", a)
                     for i, a in enumerate(section.pop("tokenizers", None) or []))
        for i, a in enumerate(models):
            if a.task not in TASKS:
                raise ValueError(f"study.models[{i}].task must be one of {TASKS}, got {a.task!r}")
        base = section.pop("tokenizer_base", None) or {}
        if not isinstance(base, Mapping) or "steps" in base:
            raise ValueError(f"study.tokenizer_base must map tokenizer settings (not steps) to "
                             f"values, got {base!r}")
        base = _tokenizer_arm("study.tokenizer_base", {"steps": 1, **base}).changes
        targets = section.pop("targets", None) or {}
        if not isinstance(targets, Mapping) or any(
                t not in TASKS + ("tokenizer",) or not isinstance(v, (int, float))
                or not 0 < v <= 1 for t, v in targets.items()):
            raise ValueError(f"study.targets must map tasks of {TASKS} (Acc as a share of the "
                             f"ceiling) or 'tokenizer' (Acc after / before) to shares in (0, 1], "
                             f"got {targets!r}")
        c = cls(models=models, tokenizers=toks, targets=tuple(sorted(targets.items())),
                tokenizer_base=base, **section)
        if c.tokenizer:
            images = [n for n, v in vqgan.configs_from_profile(cfg).items() if v.kind != "seg"]
            if c.tokenizer not in images:
                raise ValueError(f"study.tokenizer must name an image tokenizer of vqgan.models "
                                 f"({', '.join(images)}), got {c.tokenizer!r}")
        for name in ("points", "prompts", "val", "data_size", "workers", "threads"):
            _positive_int(f"study.{name}", getattr(c, name))
        if c.pictures:
            _positive_int("study.pictures", c.pictures)
        return c

    @property
    def tokenizer_pictures(self) -> int:
        return self.pictures or self.prompts

    def eval_key(self, kind: str = "model") -> dict:
        """What an arm's numbers depend on besides the arm (not workers or threads); a
        model arm's leaves out the tokenizer arms' ``pictures``."""
        # tokenizer_base: in each tokenizer arm's config, so in its tokenizer hash
        # tokenizer: in each model arm's run hash (the tokenizers' hashes)
        skip = ("models", "tokenizers", "workers", "threads", "targets", "tokenizer_base",
                "tokenizer") + (("pictures",) if kind == "model" else ())
        return {k: v for k, v in asdict(self).items() if k not in skip}


def _positive_int(where: str, v) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{where} must be a positive integer, got {v!r}")


def _arm(kind, where: str, values) -> Any:
    names = [f for f in kind.__dataclass_fields__ if f not in ARM_EXTRAS]
    if not isinstance(values, Mapping) or not set(names) <= set(values) <= set(names) | set(
            ARM_EXTRAS):
        raise ValueError(f"{where} must set exactly {names} (and, if it changes them, any of "
                         f"{list(ARM_EXTRAS)}), got {values!r}")
    arm = kind(**values)
    for f in names:
        v = getattr(arm, f)
        if f == "lr":
            if not isinstance(v, (int, float)) or v <= 0:
                raise ValueError(f"{where}.lr must be a positive number, got {v!r}")
        elif f != "task":
            _positive_int(f"{where}.{f}", v)
    if not isinstance(arm.layers, int) or isinstance(arm.layers, bool) or arm.layers < 0:
        raise ValueError(f"{where}.layers must be a whole number >= 0 (0: the profile's), got "
                         f"{arm.layers!r}")
    if not isinstance(arm.cond_dropout, (int, float)) or not 0 <= arm.cond_dropout < 1:
        raise ValueError(f"{where}.cond_dropout must be a fraction in [0, 1), got "
                         f"{arm.cond_dropout!r}")
    if not isinstance(arm.guidance, (int, float)) or arm.guidance < 0:
        raise ValueError(f"{where}.guidance must be a scale >= 0 (0: none), got "
                         f"{arm.guidance!r}")
    if arm.guidance and not arm.cond_dropout:
        raise ValueError(f"{where}: guidance needs cond_dropout > 0 (the model must learn the "
                         f"word \"None\" to be guided against it)")
    return arm


def _tokenizer_arm(where: str, values) -> TokenizerArm:
    """``{steps: N, <VQConfig field>: value, ...}`` -> a :class:`TokenizerArm`."""
    if not isinstance(values, Mapping) or "steps" not in values:
        raise ValueError(f"{where} must set steps and any settings of the tokenizer, "
                         f"got {values!r}")
    _positive_int(f"{where}.steps", values["steps"])
    allowed = set(vqgan.VQConfig.__dataclass_fields__) - {"steps", "seed", "train_size"}
    changes = {k: v for k, v in values.items() if k != "steps"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown tokenizer setting(s) {sorted(unknown)}; allowed: "
                         f"{', '.join(sorted(allowed))}")
    try:
        vqgan.VQConfig(**changes)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None
    return TokenizerArm(int(values["steps"]), tuple(sorted(changes.items())))


def eval_steps(steps: int, points: int) -> list:
    """``points`` steps of a run of ``steps``, geometrically spaced, the last one ``steps``."""
    if points < 1 or steps < 1:
        raise ValueError(f"need steps >= 1 and points >= 1, got {steps}, {points}")
    first = max(1, steps // 2 ** (points - 1))
    out = sorted({int(round(first * (steps / first) ** (i / max(1, points - 1))))
                  for i in range(points)})
    out[-1] = steps
    return out


def _linear_weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def flops_per_sample(model, cond_tokens: int, target_tokens: int) -> int:
    """Training FLOPs of one sample (forward + backward, linear layers only, see above)."""
    enc = sum(_linear_weights(layer) for layer in model.encoder)
    dec = sum(_linear_weights(layer) for layer in model.decoder)
    out = 0 if model.to_logits is None else model.to_logits.weight.numel()
    return 6 * (enc * cond_tokens + (dec + out) * target_tokens)


# ---------------------------------------------------------------------- model arms
def _model_plan(cfg, arm: ModelArm, sc: StudyConfig, tokenizers):
    from ..training import runs

    model = {"dim": arm.dim, "codebook_size": tokenizers.visual.config.codebook,
             **({"encoder_layers": arm.layers, "decoder_layers": arm.layers}
                if arm.layers else {})}
    train = {"steps": arm.steps, "batch_size": arm.batch_size, "lr": arm.lr,
             "data_size": sc.data_size,
             **({"cond_dropout": arm.cond_dropout} if arm.cond_dropout else {})}
    return runs.plan(cfg, (arm.task,), model_overrides=model, train_overrides=train,
                     tokenizers=tokenizers, progress=False)


def study_tokenizers(cfg, sc: StudyConfig, progress=False):
    """The model arms' tokenizers: the profile's, with ``study.tokenizer`` as the image one
    when the study names it (loaded from the shipped set or the cache, else trained)."""
    if sc.tokenizer:
        cfg = {**cfg, "vqgan": {**cfg["vqgan"], "tokenizer": sc.tokenizer}}
    return token_sets.profile_tokenizers(cfg, sketch=False, progress=progress)


def _val_loss(trainer, data) -> float:
    from ..training import runs

    trainer.net.eval()
    return runs.heldout_loss(trainer.model, data)


def _readout(judges, pixels, captions, video: bool) -> dict:
    r = metrics.readout(judges, pixels, captions, video)
    return {"Acc": r["Acc"], "colour": r.get("colour"), "shape": r.get("shape"),
            "CLIPSIM": r["CLIPSIM"]}


def model_curve(cfg, arm: ModelArm, sc: StudyConfig, judges, tokenizers, *,
                progress=False) -> list:
    """The rows of one model arm: one per evaluation step (see the module docstring)."""
    from ..generation import generate
    from ..training import runs, trainer

    p = _model_plan(cfg, arm, sc, tokenizers)
    ws = task_data.world_settings(cfg)
    data = runs.build_data(p.tasks, p.roles, tokenizers, sc.data_size, profile=p.profile,
                            progress=progress, **ws)
    role = p.roles[arm.task]
    val = task_data.task_data(arm.task, role, "val", sc.val, tokenizers, profile=p.profile, **ws)
    test = task_data.task_data(arm.task, role, "test", sc.prompts, tokenizers, profile=p.profile,
                              **ws)
    tr = trainer.Trainer(p.model_config, p.config, data)
    first = test.batch([0])
    per_sample = flops_per_sample(tr.model, first.cond.tokens.shape[1], first.target[0].numel())
    video = T.get_task(arm.task).target == "video"
    rows, ceiling = [], None
    for step in eval_steps(arm.steps, sc.points):
        tr.run(until=step, progress=progress)
        g = generate.generate(tr.model, test, range(sc.prompts), tokenizers.visual,
                              temperature=sc.temperature, top_k=sc.top_k, seed=p.config.seed)
        if ceiling is None:
            ceiling = _readout(judges, g.real, g.captions, video)
        got = _readout(judges, g.samples, g.captions, video)
        guided = {}
        if arm.guidance:              # beside the paper's sampling, from the same model
            gg = generate.generate(tr.model, test, range(sc.prompts), tokenizers.visual,
                                   temperature=sc.temperature, top_k=sc.top_k,
                                   seed=p.config.seed, guidance=arm.guidance)
            r = _readout(judges, gg.samples, gg.captions, video)
            guided = {"guided Acc": r["Acc"], "guided CLIPSIM": r["CLIPSIM"],
                      "guided Acc / ceiling": r["Acc"] / ceiling["Acc"] if ceiling["Acc"]
                      else None}
        rows.append({"task": arm.task, "dim": arm.dim, "batch": arm.batch_size, "lr": arm.lr,
                     "steps": arm.steps, **{EXTRA_COLUMNS[k]: v for k, v in arm.extras().items()},
                     "step": step, "parameters": sum(
                         q.numel() for q in tr.model.parameters()),
                     "samples": step * arm.batch_size,
                     "TFLOP": step * arm.batch_size * per_sample / 1e12,
                     "val loss": _val_loss(tr, val), **got,
                     **{f"ceiling {k}": v for k, v in ceiling.items()},
                     "Acc / ceiling": got["Acc"] / ceiling["Acc"] if ceiling["Acc"] else None,
                     **guided, "prompts": sc.prompts})
    return rows


# ------------------------------------------------------------------ tokenizer arms
def _tokenizer_config(cfg, arm: TokenizerArm) -> vqgan.VQConfig:
    """The arm's config: the profile's image tokenizer, with the study's ``tokenizer_base``
    (where the sweep started, so a later change of the profile's tokenizer leaves the sweep
    as it was measured), then the arm's changes and steps."""
    base = vqgan.configs_from_profile(cfg)[(cfg.get("vqgan") or {}).get("tokenizer")]
    start = dict(StudyConfig.from_profile(cfg).tokenizer_base)
    return replace(base, steps=arm.steps, **{**start, **dict(arm.changes)})


def tokenizer_curve(cfg, arm: TokenizerArm, sc: StudyConfig, judges, *, progress=False,
                    timing: dict | None = None) -> list:
    """The rows of one tokenizer arm: the classifier's reading of held-out test pictures
    before and after the tokenizer, their SSIM and the codebook's usage, at each evaluation
    step. ``timing`` (a dict) receives the seconds spent training, evaluations left out."""
    config = _tokenizer_config(cfg, arm)
    ws = task_data.world_settings(cfg)
    jcanvas, n = ws["canvas"], sc.tokenizer_pictures
    pics = vq_eval.heldout_pictures(config, n)
    caps = task_data.captions_of("mscoco", "test", range(n), **ws)
    tr = vq_train.Trainer(config, judges.classifier, jcanvas)
    rows = []
    seconds = 0.0
    for step in eval_steps(arm.steps, sc.points):
        t0 = time.perf_counter()
        tr.run(until=step, progress=progress)
        seconds += time.perf_counter() - t0
        rec = vqgan.reconstruct(tr.model, pics)
        rows.append({"arm": arm.label, **{k: getattr(config, k) for k in SWEPT},
                     "steps": arm.steps, "step": step,
                     "parameters": sum(q.numel() for q in tr.model.parameters()),
                     **vq_eval.read_back(judges.classifier, pics, rec, caps, jcanvas),
                     "SSIM": metrics.ssim(pics, rec),
                     "usage": vq_eval.codebook_usage(tr.model, pics)["usage"],
                     "pictures": n})
    if timing is not None:
        timing["train_seconds"] = round(seconds, 1)
    return rows


# --------------------------------------------------------------------------- runs
def _identity(cfg, kind: str, arm, sc: StudyConfig, tokenizers=None) -> tuple:
    """(cache path, key, shipped spec) of an arm: its config, the study's evaluation settings,
    the judges and (model arms) the training run's hash, which covers the tokenizers and the
    world."""
    jcfg = judge_nets.JudgesConfig.from_profile(cfg)
    key = {"version": STUDY_VERSION, "kind": kind,
           "arm": arm.key() if kind == "model" else asdict(arm), "eval": sc.eval_key(kind),
           "judges": {n: judge_nets.config_hash(n, jcfg) for n in JUDGES}}
    if kind == "model":
        key["run"] = _model_plan(cfg, arm, sc, tokenizers).hash
    else:
        config = _tokenizer_config(cfg, arm)
        key["tokenizer"] = vqgan.config_hash(config, key["judges"]["classifier"])
    # the steps in the name: a longer run of the same arm is another file and another slot
    name = f"{arm.label.replace(' ', '_').replace('=', '')}_{arm.steps}"
    hash_ = key_hash(checkpoint.canonical(key))
    spec = Spec(cfg.get("name"), "study", name, hash_, key, slot=f"study/{kind}/{name}",
                suffix=".json")
    return artifact_path(cfg.get("name"), "study", name, hash_, ".json"), key, spec


def _run_arm(cfg, kind: str, arm, tokenizers=None, progress=False) -> list:
    """One arm's rows, from the cache or computed (and cached)."""
    sc = StudyConfig.from_profile(cfg)
    if kind == "model" and tokenizers is None:
        tokenizers = study_tokenizers(cfg, sc)
    path, key, spec = _identity(cfg, kind, arm, sc, tokenizers)

    def load(path):
        try:
            payload = json.loads(path.read_text())
            if payload.get("key") == checkpoint.canonical(key):
                return payload["rows"]
        except (OSError, ValueError, KeyError):
            pass
        raise checkpoint.CheckpointError(f"{path}: not a study result of this arm (corrupt or "
                                         f"another config); delete it to rerun the arm")

    def build():
        torch.set_num_threads(sc.threads)
        t0 = time.perf_counter()
        judges = J.get_judges(cfg, names=JUDGES, progress=False)
        timing: dict = {}
        if kind == "model":
            rows = model_curve(cfg, arm, sc, judges, tokenizers, progress=progress)
        else:
            rows = tokenizer_curve(cfg, arm, sc, judges, progress=progress, timing=timing)
        info = {"steps": arm.steps, "train_seconds": round(time.perf_counter() - t0, 1),
                **{f"training_only_{k}": v for k, v in timing.items()},
                "trained_by": training_record(sc.threads)}
        write_json(path, {"key": checkpoint.canonical(key), "rows": rows, "info": info})
        return rows

    return fetch(path, load, build, spec=spec)[0]


def tokenizer_seconds(cfg) -> dict:
    """{(tokenizer arm label, steps): seconds its training took} (evaluations left out), from the
    arms' shipped or cached results: what a tokenizer's steps cost on the machine that ran
    them (``trained_by`` in the file says which)."""
    sc = StudyConfig.from_profile(cfg)
    out = {}
    for arm in sc.tokenizers:
        path, _, spec = _identity(cfg, "tokenizer", arm, sc)
        found = weights.find(spec) or (path if Path(path).exists() else None)
        if found is not None:
            info = json.loads(Path(found).read_text()).get("info") or {}
            if "training_only_train_seconds" in info:
                out[(arm.label, arm.steps)] = float(info["training_only_train_seconds"])
    return out


def run_study(cfg, *, tokenizers=None, progress=True) -> dict:
    """{"models": rows, "tokenizers": rows} of every arm of the profile's ``study:``, the
    missing arms computed ``workers`` at a time (costliest first), the rest from the cache."""
    sc = StudyConfig.from_profile(cfg)
    # the judges and the profile's tokenizers first, here, so workers only read their caches
    J.get_judges(cfg, names=JUDGES, progress=progress)
    if tokenizers is None:
        tokenizers = study_tokenizers(cfg, sc, progress=progress)
    arms = [("tokenizer", a) for a in sc.tokenizers] + [("model", a) for a in sc.models]
    missing = [(k, a) for k, a in arms if not available(*_identity(cfg, k, a, sc, tokenizers)[::2])]
    missing.sort(key=lambda ka: -_cost(cfg, *ka))
    bar = P.bar(total=len(arms), initial=len(arms) - len(missing), desc="study arms",
                progress=progress)
    if missing and sc.workers > 1:
        def done(i, _):
            bar.set_postfix_str(missing[i][1].label)
            bar.update(1)

        map_in_processes(_run_arm, [(dict(cfg), k, a, tokenizers, P.for_workers())
                                    for k, a in missing], sc.workers, done=done)
    else:
        for k, a in missing:
            bar.set_postfix_str(a.label)
            _run_arm(cfg, k, a, tokenizers, progress=progress)
            bar.update(1)
    bar.close()
    rows = {"models": [], "tokenizers": []}
    for k, a in arms:
        rows["models" if k == "model" else "tokenizers"] += _run_arm(cfg, k, a, tokenizers)
    return rows


def _cost(cfg, kind: str, arm) -> float:
    """A rough relative cost, to start the long arms first (wall time only)."""
    if kind == "tokenizer":
        c = _tokenizer_config(cfg, arm)
        return arm.steps * c.width ** 2 * (1.6 if c.kind == "vqgan" else 1)
    tokens = 512 if arm.task == "T2V" else 64
    return arm.steps * arm.batch_size * tokens * arm.dim ** 2 / 1e3



# the notebooks' sections whose ``{steps: ...}`` overrides train a NÜWA model
TRAINING_SECTIONS = ("t2i", "s2i", "t2v", "v2v", "s2v", "multitask")


def training_runs(cfg: Mapping[str, Any]) -> list:
    """Every NÜWA training stage the profile configures, as rows (section, stage, steps,
    batch, samples seen, data size): what the study sized. Eq. 16's pretraining is
    ``train:``; the others are the ``{steps: ...}`` overrides of the task notebooks' sections."""
    base = cfg.get("train") or {}

    def row(section, stage, over):
        steps, batch = over.get("steps"), over.get("batch_size", base.get("batch_size"))
        return {"section": section, "stage": stage, "steps": steps, "batch": batch,
                "samples": steps * batch, "data size": over.get("data_size",
                                                                 base.get("data_size"))}

    rows = [row("train", "pretraining (Eq. 16)", base)]
    for name in TRAINING_SECTIONS:
        rows += [row(name, stage, over) for stage, over in (cfg.get(name) or {}).items()
                 if isinstance(over, Mapping) and "steps" in over]
    return rows
