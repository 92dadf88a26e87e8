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

NAN = float("nan")


def mean_std(runs: Sequence[Mapping[str, float]], columns: Sequence[str]) -> dict:
    """{column: (mean, std)} over runs (std with ddof=1; NaN for a single run)."""
    if not runs:
        raise ValueError("mean_std needs at least one run")
    values = {c: np.array([float(r[c]) for r in runs]) for c in columns}
    return {c: (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else NAN)
            for c, v in values.items()}


def decide(ma: float, sa: float, mb: float, sb: float, lower: bool) -> tuple:
    """(holds, clear) for "a beats b" from the means ``ma``, ``mb`` and stds ``sa``, ``sb``
    (``lower`` is better, or higher); ``clear`` is None when either spread is unmeasured."""
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


def pm(mean: float, std: float = NAN, digits: int = 2) -> str:
    """"mean ± std" at ``digits`` decimals: the mean alone when the std is NaN (one run), "—"
    when the mean is NaN (no such number)."""
    if np.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" + ("" if np.isnan(std) else f" ± {std:.{digits}f}")


def cell(column: str, mean: float, std: float = NAN) -> str:
    """A table cell as the notebooks print it: :func:`pm` at 3 decimals for the scores that
    live in [0, 1] (CLIPSIM, Acc), at 2 for the others (FIDs, IS)."""
    return pm(mean, std, 3 if column in ("CLIPSIM", "Acc") else 2)


def side_row(p: Mapping, key, ours: Mapping[str, Sequence[Mapping]], columns: Sequence[str],
             described: Mapping, spread: Sequence[str] = ()) -> dict:
    """One row of a side-by-side table: the paper's row ``p`` (its model, the ``described``
    cells) with, per column, our mean and std over the runs ``ours[key]`` (NaN where there
    are none) beside ``paper <c>`` (and ``paper <c> std`` for the columns in ``spread``);
    ``seeds`` counts our runs."""
    row = {"model": p["model"], **described, "row": key or "",
           "seeds": len(ours.get(key, ())) if key else 0}
    agg = mean_std(ours[key], columns) if key in ours else {}
    for c in columns:
        row[c], row[f"{c} std"] = agg.get(c, (NAN, NAN))
        row[f"paper {c}"] = NAN if p.get(c) is None else float(p[c])
        if c in spread:
            row[f"paper {c} std"] = float(p.get(f"{c} std", NAN))
    return row


def ours_of(table, key: str, column: str, what: str = "the table") -> tuple:
    """(our mean, our std) of ``column`` in the row ``key`` of a side-by-side table."""
    r = table[table["row"] == key]
    if r.empty:
        raise ValueError(f"{what} has no row {key!r}")
    return float(r[column].iloc[0]), float(r[f"{column} std"].iloc[0])
