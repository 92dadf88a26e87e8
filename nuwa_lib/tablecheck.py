"""Comparing a run's tables with the committed golden tables, on any machine (DESIGN §3).

Another CPU rounds differently: MKL and ATen choose kernels by CPU features, and
training amplifies the last digits, so a trained number is not reproducible to its last
digit across machines, while everything that involves no training is. The check
therefore has two kinds of cell:

* **exact** cells (the world, masks and pair counts, parameter counts, row names, the
  paper's numbers, ...) must be equal as written in the CSV;
* **trained** cells, in the columns a notebook declared when it wrote the table
  (``Results.table(name, df, trained=[...])``, recorded in ``<name>.provenance.json``),
  must keep their kind (a finite number stays finite, an empty cell stays empty) and a
  number must lie in a band around the values the profile's seeds gave (:func:`band`: the
  golden table and the same table of runs with other seeds, committed under
  ``results/<profile>/spread/seed<N>/`` by ``make spread``). Text in a trained column
  (a claim's ``ours`` string, a verdict, ``True``/``False``) must have one of the shapes
  the column shows in those runs once its numbers are masked (:func:`shape_of`).

Table structure (files, columns, row counts) is always exact.
"""
from __future__ import annotations

import fnmatch
import json
import math
import re
from pathlib import Path
from typing import Iterable, Sequence

# A number as it appears in a table cell or inside a claim's text.
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\bnan\b|\binf\b")
_BOOLS = ("True", "False")

# The band around the seeds' values: WIDEN times their range on each side, and at least
# MIN_WIDTH of the column's typical range (so a cell whose seeds happened to agree is not held
# to the last digit) and REL_FLOOR of the value itself. Measured on the smoke profile (golden +
# 4 seeds on an Intel Xeon, AVX-512): the same code on an AMD EPYC (AVX2) and under
# ATEN_CPU_CAPABILITY=default lands at most 1.8 ranges outside the seeds' values for a mean
# and 2.4 for a standard deviation over seeds.
WIDEN = 4.0
MIN_WIDTH = 0.5
REL_FLOOR = 0.02
# A column "<name> std" is a standard deviation over a handful of seeds within one run: itself
# a noisy number (about 50% relative error over 3 seeds), so its band starts at 0 and reaches
# STD_WIDEN ranges above the seeds' largest value.
STD_SUFFIX = " std"
STD_WIDEN = 6.0


def trained_columns(columns: Iterable[str], patterns: Sequence[str] | None) -> list[str]:
    """The columns matched by ``patterns`` (shell-style: ``"FID-*"``), in table order.

    Raises ValueError for a pattern that matches no column, so a typo cannot silently
    turn a trained column into an exact one."""
    columns = [str(c) for c in columns]
    if not patterns:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    for p in patterns:
        if not any(fnmatch.fnmatchcase(c, p) for c in columns):
            raise ValueError(f"trained column pattern {p!r} matches none of the columns {columns}")
    return [c for c in columns if any(fnmatch.fnmatchcase(c, p) for p in patterns)]


def _number(x) -> float | None:
    """The cell as a float, or None for text (an empty cell reads as NaN)."""
    if isinstance(x, bool):
        return None
    if x == "" or x is None:
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def shape_of(text) -> str:
    """A text cell with its numbers masked: ``"6.516 vs 6.578 (axial)"`` → ``"# vs # (axial)"``;
    ``True``/``False`` → ``<bool>``."""
    s = str(text)
    if s in _BOOLS:
        return "<bool>"
    return _NUMBER.sub("#", s)


def band(values: Sequence[float], column_width: float = 0.0,
         std: bool = False) -> tuple[float, float]:
    """The interval a trained number may legitimately take, from the values the seeds gave
    (the golden run's included): their range widened on each side by
    ``max(WIDEN * range, MIN_WIDTH * column_width, REL_FLOOR * max|value|)``; for a
    standard-deviation column (``std``) from 0 to ``STD_WIDEN`` such widths above the largest."""
    lo, hi = min(values), max(values)
    r = hi - lo
    width = max(WIDEN * r, MIN_WIDTH * column_width, REL_FLOOR * max(abs(lo), abs(hi)))
    if std:
        return 0.0, hi + STD_WIDEN / WIDEN * width
    return lo - width, hi + width


def _read(path: Path):
    import pandas as pd

    return pd.read_csv(path, keep_default_na=False, dtype=str)


def declared_trained(ref_dir: Path, name: str) -> list[str]:
    """The trained columns recorded in ``<name>.provenance.json`` beside a golden table."""
    prov = Path(ref_dir) / f"{Path(name).stem}.provenance.json"
    if not prov.exists():
        return []
    try:
        return list(json.loads(prov.read_text()).get("trained_columns", []))
    except ValueError as err:
        raise ValueError(f"{prov}: not valid JSON ({err})") from None


def spread_dirs(ref_dir: Path) -> list[Path]:
    """The seed runs recorded beside ``results/<profile>/tables``: ``../spread/seed*/``."""
    base = Path(ref_dir).parent / "spread"
    return sorted(p for p in base.glob("seed*") if p.is_dir())


def compare_tables(new_dir: Path, ref_dir: Path,
                   spread: Sequence[Path] | None = None) -> list[str]:
    """Differences between a run's tables (``new_dir``) and the golden ones (``ref_dir``),
    one line each; empty when the run matches. ``spread`` defaults to :func:`spread_dirs`."""
    new_dir, ref_dir = Path(new_dir), Path(ref_dir)
    spread = spread_dirs(ref_dir) if spread is None else [Path(p) for p in spread]
    new = {p.name for p in new_dir.glob("*.csv")}
    ref = {p.name for p in ref_dir.glob("*.csv")}
    problems = [f"{n}: missing from the new run" for n in sorted(ref - new)]
    problems += [f"{n}: new table, not in {ref_dir}" for n in sorted(new - ref)]
    for name in sorted(new & ref):
        problems += _compare_one(name, _read(new_dir / name), _read(ref_dir / name),
                                 declared_trained(ref_dir, name), spread)
    return problems


def identical(new_dir: Path, ref_dir: Path) -> list[str]:
    """Tables of ``new_dir`` that are not byte-identical to the same table in ``ref_dir``
    (the same-machine determinism check: same code, seed and machine give the same bytes)."""
    new_dir, ref_dir = Path(new_dir), Path(ref_dir)
    names = sorted(p.name for p in new_dir.glob("*.csv"))
    if not names:
        return [f"{new_dir}: no tables to compare"]
    problems = []
    for name in names:
        ref = ref_dir / name
        if not ref.exists():
            problems.append(f"{name}: not in {ref_dir}")
        elif ref.read_bytes() != (new_dir / name).read_bytes():
            problems.append(f"{name}: not byte-identical to {ref}")
    return problems


def _compare_one(name: str, a, b, trained: list[str], spread: Sequence[Path]) -> list[str]:
    if list(a.columns) != list(b.columns):
        return [f"{name}: columns {list(a.columns)} != {list(b.columns)}"]
    if len(a) != len(b):
        return [f"{name}: {len(a)} rows != {len(b)} rows"]
    seeds = []
    if trained:
        for d in spread:
            if not (d / name).exists():
                return [f"{name}: has trained columns but no seed run in {d} (make spread)"]
            s = _read(d / name)
            if list(s.columns) != list(b.columns) or len(s) != len(b):
                return [f"{name}: the seed run in {d} has another shape than the golden table "
                        "(make spread after changing a table)"]
            seeds.append(s)
        if not seeds:
            return [f"{name}: has trained columns but no seed runs to bound them (make spread)"]
    problems = []
    for col in a.columns:
        got, want = a[col].tolist(), b[col].tolist()
        if col not in trained:
            problems += [f"{name}: row {r}, column {col!r}: {x!r} != {y!r} (exact)"
                         for r, (x, y) in enumerate(zip(got, want)) if x != y]
            continue
        runs = [want] + [s[col].tolist() for s in seeds]
        problems += _check_trained(name, col, got, runs)
    return problems


def _check_trained(name: str, col: str, got: list, runs: list[list]) -> list[str]:
    """``runs[0]`` is the golden column, the rest the seed runs' columns."""
    nums = [[_number(x) for x in run] for run in runs]
    # the column's typical spread between seeds: the median of its cells' ranges
    ranges = sorted(max(c) - min(c) for c in
                    ([run[r] for run in nums] for r in range(len(got)))
                    if all(v is not None and math.isfinite(v) for v in c))
    column_width = ranges[len(ranges) // 2] if ranges else 0.0
    shapes = {shape_of(x) for run in runs for x in run if _number(x) is None}
    problems = []
    for r, x in enumerate(got):
        where = f"{name}: row {r}, column {col!r}"
        gold = nums[0][r]
        v = _number(x)
        if gold is None:                                  # text: a claim, a verdict, a bool
            if v is not None or shape_of(x) not in shapes:
                problems.append(f"{where}: {x!r} has none of the shapes {sorted(shapes)} (trained)")
            continue
        if v is None:
            problems.append(f"{where}: {x!r} is not a number (golden {runs[0][r]!r})")
        elif math.isnan(gold) or math.isnan(v):
            if math.isnan(gold) != math.isnan(v):
                problems.append(f"{where}: {x!r} is {'empty' if math.isnan(v) else 'a number'}, "
                                f"golden {runs[0][r]!r}")
        elif not math.isfinite(v):
            problems.append(f"{where}: {x!r} is not finite")
        else:
            vals = [run[r] for run in nums if run[r] is not None and math.isfinite(run[r])]
            lo, hi = band(vals, column_width, std=col.endswith(STD_SUFFIX))
            if not lo <= v <= hi:
                problems.append(f"{where}: {x} outside [{lo:.6g}, {hi:.6g}], the band of "
                                f"{len(vals)} seeds (golden {runs[0][r]}) (trained)")
    return problems
