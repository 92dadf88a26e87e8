"""Reading notebook 14's learning curves: each arm's last point, the best arm, the compute at
which a target was (or, extrapolated, would be) reached, and the findings written from the rows.
The arms themselves are run by :mod:`nuwa_lib.experiments.study`."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ..tokenizers import vqgan


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


SWEPT = ("kind", "width", "codebook", "code_dim", "l2_codes", "lr", "disc_start",
         "perceptual_weight")   # the settings every tokenizer row shows


# a model arm's optional settings as row columns (in a row only when not at their default)
EXTRA_COLUMNS = {"layers": "layers", "cond_dropout": "cond dropout", "guidance": "guidance"}
EXTRA_SHORT = {"layers": "L", "cond_dropout": "drop", "guidance": "cfg"}   # in arm labels
# what tells one model arm's rows apart (a missing column: the setting's default)
ARM_KEYS = ("task", "dim", "batch", "lr", "steps", *EXTRA_COLUMNS.values())


def final_rows(rows: Sequence[Mapping], keys=ARM_KEYS) -> list:
    """The last point of every arm."""
    last: dict = {}
    for r in rows:
        k = tuple(r.get(c) for c in keys)
        if k not in last or r["step"] > last[k]["step"]:
            last[k] = r
    return list(last.values())


def arm_label(r: Mapping) -> str:
    """A model arm's name in tables and figures: "d=64 b=16 lr=0.001, 1500 steps" (and its
    optional settings where they are not at their defaults: "L=4", "drop=0.1", "cfg=3")."""
    extra = "".join(f" {EXTRA_SHORT[f]}={_fmt(r[c])}" for f, c in EXTRA_COLUMNS.items()
                    if r.get(c))
    return f"d={r['dim']} b={r['batch']} lr={r['lr']:g}{extra}, {r['steps']} steps"


def best_arm(rows: Sequence[Mapping], task: str, by: str = "Acc / ceiling") -> Mapping:
    """The finished arm of ``task`` with the highest ``by`` (ties: the higher CLIPSIM, the
    lower val loss, then the lower compute)."""
    finished = [r for r in final_rows(rows) if r["task"] == task]
    if not finished:
        raise ValueError(f"the study has no arm of task {task!r}")
    return max(finished, key=lambda r: (_value(r[by]), r["CLIPSIM"], -r["val loss"], -r["TFLOP"]))


def _value(x) -> float:
    """A ratio that may be undefined (None: a ceiling of 0) as a number that sorts last."""
    return -1.0 if x is None or not math.isfinite(x) else float(x)


def compute_to_reach(rows: Sequence[Mapping], task: str, target: float,
                     by: str = "Acc / ceiling") -> float | None:
    """The least training compute (TFLOP) at which any point of ``task`` reached ``target``
    of ``by``; None when no point did."""
    hits = [r["TFLOP"] for r in rows if r["task"] == task and _value(r[by]) >= target]
    return min(hits) if hits else None


def extrapolate(rows: Sequence[Mapping], arm: Mapping, target: float,
                by: str = "Acc / ceiling", x: str = "TFLOP", keys=ARM_KEYS) -> float | None:
    """The ``x`` (compute, or a tokenizer's steps) at which ``arm``'s curve would reach
    ``target`` of ``by`` if it kept the log-linear slope of its last two points; None when
    it does not rise there. ``keys``: the columns that tell the arm's rows apart."""
    pts = sorted(((r[x], r[by]) for r in rows if all(r.get(k) == arm.get(k) for k in keys)),
                 key=lambda p: p[0])
    if len(pts) < 2 or any(_value(v) < 0 for _, v in pts[-2:]):
        return None
    (c0, v0), (c1, v1) = pts[-2:]
    slope = (v1 - v0) / math.log10(c1 / c0)
    if v1 >= target:
        return c1
    if slope <= 0:
        return None
    return c1 * 10 ** ((target - v1) / slope)


def _pct(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}"


def findings(model_rows: Sequence[Mapping], tokenizer_rows: Sequence[Mapping],
             cfg: Mapping[str, Any], targets: Mapping[str, float]) -> str:
    """What the study's numbers show, as Markdown bullets written from the rows: per task every
    finished arm, the best, and when ``targets[task]`` (a share of the ceiling's Acc) was or
    would be reached; per tokenizer width the same against ``targets["tokenizer"]``."""
    out = []
    model = cfg.get("model") or {}
    for task in dict.fromkeys(r["task"] for r in model_rows):
        done = sorted((r for r in final_rows(model_rows) if r["task"] == task),
                      key=lambda r: (r["batch"], r["lr"], r["dim"], r["steps"]))
        best = best_arm(model_rows, task)
        arms = "; ".join(f"{arm_label(r)}: Acc/ceiling "
                         f"{_pct(r['Acc / ceiling'])}, CLIPSIM {r['CLIPSIM']:.3f}, val loss "
                         f"{r['val loss']:.3f} at {r['TFLOP']:.3g} TFLOP" for r in done)
        out.append(f"* **{task}** (ceiling on the same {best['prompts']} prompts: Acc "
                   f"{best['ceiling Acc']:.3f}, CLIPSIM {best['ceiling CLIPSIM']:.3f}). "
                   f"At the end of each run: {arms}.")
        out.append(f"  Best: {arm_label(best)} (Acc/ceiling {_pct(best['Acc / ceiling'])}, "
                   f"CLIPSIM {best['CLIPSIM']:.3f}).")
        target = targets.get(task)
        if target is not None:
            reached = compute_to_reach(model_rows, task, target)
            if reached is not None:
                out.append(f"  The target Acc ≥ {target:g} × ceiling was first reached at "
                           f"{reached:.3g} TFLOP.")
            else:
                guess = extrapolate(model_rows, best, target)
                tail = ("its curve does not rise at the end, so no extrapolation is made"
                        if guess is None else f"extrapolating its last two points "
                        f"(log-linear) gives about {guess:.3g} TFLOP, "
                        f"{guess / best['TFLOP']:.1f}× the best arm's compute")
                out.append(f"  No point reached the target Acc ≥ {target:g} × ceiling; "
                           f"{tail}.")
        if model.get("dim") is not None:
            out.append(f"  The profile's model has d={model['dim']}.")
    goal = targets.get("tokenizer")
    for r in final_rows(tokenizer_rows, keys=TOKENIZER_KEYS):
        line = (f"* **{r['arm']}** after {r['step']} steps: Acc {r['Acc after']:.3f} after "
                f"the tokenizer against {r['Acc before']:.3f} before "
                f"({_pct(r['Acc after / before'])} of it); shapes read {r['shape after']:.3f} "
                f"(before {r['shape before']:.3f}); colours {r['colour after']:.3f}; SSIM "
                f"{r['SSIM']:.3f}; codebook usage {r['usage']:.2f}.")
        if goal is not None and _value(r["Acc after / before"]) < goal:
            steps = extrapolate(tokenizer_rows, r, goal, by="Acc after / before", x="step",
                                keys=TOKENIZER_KEYS)
            line += (f" Acc after / before ≥ {goal:g} is not reached; "
                     + ("its curve does not rise at the end." if steps is None else
                        f"extrapolating its last two points (log-linear in steps) gives about "
                        f"{steps:,.0f} steps."))
        elif goal is not None:
            line += f" It keeps Acc after / before ≥ {goal:g}."
        out.append(line)
    read = (cfg.get("vqgan") or {}).get("tokenizer")
    if read and tokenizer_rows:
        chosen = vqgan.chosen(cfg)[0]
        names = [(read, "image tokenizer")] if read == chosen else [
            (chosen, "chosen image tokenizer"), (read, "image tokenizer notebooks 04+ read")]
        for name, what in names:
            c = vqgan.configs_from_profile(cfg)[name]
            out.append(f"* The profile's {what} ({name}): "
                       + ", ".join(f"{k} {_fmt(getattr(c, k))}" for k in SWEPT)
                       + f", {c.steps} steps.")
    return "\n".join(out)


TOKENIZER_KEYS = ("arm", "steps")   # what tells one tokenizer arm's rows apart
