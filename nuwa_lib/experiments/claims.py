"""The one rule every claims table decides by (Tables 1-3, 5, 6, TV2V, the summary).

A claim "a beats b" *holds* when a's mean over seeds is on the better side of b's, and holds
*clearly* when the gap also exceeds the sum of the two rows' standard deviations -- which needs
a measured spread on both rows: a row run once (std NaN) can hold but never clearly, since one
run cannot tell a gap from another machine's rounding. A deterministic reference (a copy of
the data) has std 0, measured.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def mean_std(runs: Sequence[Mapping[str, float]], columns: Sequence[str]) -> dict:
    """{column: (mean, std)} over runs (std with ddof=1; NaN for a single run)."""
    if not runs:
        raise ValueError("mean_std needs at least one run")
    out = {}
    for c in columns:
        v = np.array([float(r[c]) for r in runs])
        out[c] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"))
    return out


def decide(ma: float, sa: float, mb: float, sb: float, lower: bool) -> tuple:
    """(holds, clear) for "a beats b": ``ma``, ``mb`` the two means, ``sa``, ``sb`` their
    stds over seeds (NaN where a row was run once; 0 for a deterministic reference such as
    a copy of the data). ``holds``: a's mean is on the better side (``lower`` is better, or
    higher); ``clear``: the gap exceeds ``sa + sb`` -- None when either spread is unmeasured,
    since one run cannot tell a gap from another machine's rounding."""
    gap = (mb - ma) if lower else (ma - mb)
    if not (np.isfinite(sa) and np.isfinite(sb)):
        return bool(gap > 0), None
    return bool(gap > 0), bool(gap > sa + sb)


def verdict(holds: bool, clear) -> str:
    """The words of a claim's verdict: "holds, clearly", "holds, within the spread",
    "holds (no spread measured)" (``clear`` None or NaN) or "does not hold"."""
    if not holds:
        return "does not hold"
    if clear is None or (isinstance(clear, float) and np.isnan(clear)):
        return "holds (no spread measured)"
    return "holds, clearly" if clear else "holds, within the spread"


def pm(mean: float, std: float = float("nan"), digits: int = 2) -> str:
    """"mean ± std" at ``digits`` decimals, as the notebooks print table cells: the mean
    alone when the std is NaN (one run), "—" when the mean is (no such number)."""
    if np.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" + ("" if np.isnan(std) else f" ± {std:.{digits}f}")


def cell(column: str, mean: float, std: float = float("nan")) -> str:
    """A table cell as the notebooks print it: :func:`pm` at 3 decimals for the scores that
    live in [0, 1] (CLIPSIM, Acc), at 2 for the others (FIDs, IS)."""
    return pm(mean, std, 3 if column in ("CLIPSIM", "Acc") else 2)
