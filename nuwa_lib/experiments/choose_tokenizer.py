"""Choosing the image tokenizer from notebook 14's tokenizer arms (``study.tokenizer_curve``
rows): the point of any arm that meets every target for the fewest CPU minutes, or, when none
does, the arm that comes nearest.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from . import study_reading as S

TARGETS = {"Acc after / before": 0.9, "shape after / before": 0.9, "colour after": 0.97}


def target_share(row: Mapping, targets: Mapping[str, float] = TARGETS) -> float:
    """How near a tokenizer row is to its targets: the least of value / target (1: all met)."""
    return min(S._value(row[k]) / v for k, v in targets.items())


def cheapest(rows: Sequence[Mapping], seconds: Mapping[tuple, float],
             targets: Mapping[str, float] = TARGETS) -> dict | None:
    """The cheapest point of any tokenizer arm that meets every target: its row, its training
    time and ``meets`` True. The time is the arm's measured seconds (``seconds``: (arm label,
    steps) -> seconds of the whole arm, as ``study.tokenizer_seconds`` gives them) prorated to
    the point's step. When no point meets the targets, the arm whose last point comes nearest
    (highest :func:`target_share`), with ``meets`` False. None without rows."""
    best = None
    for r in rows:
        arm = (r["arm"], r["steps"])
        if target_share(r, targets) >= 1 and arm in seconds:
            cost = seconds[arm] * r["step"] / r["steps"]
            if best is None or cost < best["seconds"]:
                best = {"row": dict(r), "seconds": cost, "meets": True}
    if best is not None or not rows:
        return best
    near = max(S.final_rows(rows, keys=S.TOKENIZER_KEYS), key=lambda r: target_share(r, targets))
    return {"row": dict(near), "seconds": seconds.get((near["arm"], near["steps"]), math.nan),
            "meets": False}


def text(rows: Sequence[Mapping], seconds: Mapping[tuple, float]) -> str:
    """:func:`cheapest` as a Markdown sentence, every number from the rows."""
    choice = cheapest(rows, seconds)
    if choice is None:
        return "No tokenizer arm has been measured."
    r = choice["row"]
    reading = (f"Acc after / before {S._pct(r['Acc after / before'])}, shape after / before "
               f"{S._pct(r['shape after / before'])}, colours {r['colour after']:.3f}, SSIM "
               f"{r['SSIM']:.3f}, codebook usage {r['usage']:.2f}")
    minutes = f"{choice['seconds'] / 60:.1f} CPU minutes on one core"
    if choice["meets"]:
        return f"**Chosen: {r['arm']} at {r['step']} steps** ({minutes}): {reading}."
    steps = S.extrapolate(rows, r, TARGETS["shape after / before"], by="shape after / before",
                          x="step", keys=S.TOKENIZER_KEYS)
    return (f"**No point of any arm meets all three targets.** Nearest at equal CPU time: "
            f"**{r['arm']}** after {r['step']} steps ({minutes}), {reading}; its worst target "
            f"is at {S._pct(target_share(r))} of its bar. "
            + ("Its shape curve does not rise at the end." if steps is None else
               f"Extrapolating its shape curve (log-linear in steps), shape after / before "
               f"reaches 0.9 at about {steps:,.0f} steps."))
