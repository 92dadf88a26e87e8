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
  number must lie in a band (:func:`band`) built from two kinds of reference run, both
  committed under ``results/<profile>/spread/`` by ``make spread``:

  - ``kernels-<name>/``: the golden profile and seed under other kernels (ATen at AVX2,
    MKL and oneDNN held to AVX2 or to their portable paths): how far a number moves when
    only the rounding changes, as on another CPU;
  - ``seed<N>/``: the profile with other seeds: how far a number moves between equally
    legitimate runs. Another CPU's run is one more such run, not a slightly perturbed
    golden one: rounding differences early in training grow until the model is another
    draw (on an AMD EPYC without AVX-512, the smoke video tokenizer's reconstruction FID-vid
    came out 2.5-3x the largest of these eight runs). So the band covers all of them, and a
    cell that no kernel change moved, such as an accuracy over a dozen samples, still moves
    by whole samples.

  Fréchet distances (FID, FID-k, FID-img, FID-vid, FVD) are positive and spread by factors
  across seeds, not by amounts (the smoke image tokenizer's FID: 2.2 to 10.9), so their band
  is built the same way on the logarithm of the value.

  Text in a trained column (a claim's ``ours`` string, a verdict, ``True``/``False``)
  must have one of the shapes the column shows in those runs once its numbers are
  masked (:func:`shape_of`).

Table structure (files, columns, row counts) is always exact.

**The shipped record** (``same_weights=True``): a profile whose models are shipped
(``results/<profile>/weights/``) is re-evaluated from the same weights, so nothing is trained
and only inference rounds differently on another CPU. Its reference runs are the record
re-evaluated under ATen's portable kernels, ``results/<profile>-other-cpu/tables/``
(``make reproduce-other-cpu``), and a trained cell must lie in the band of the committed
value and that run alone (the same :func:`band`: 4x their difference, at least 2%). Only the
tables the new run wrote are compared (a slice of the record).
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

# The widths of :func:`band` (reference runs of the smoke profile made on an Intel Xeon, AVX-512,
# the goldens on an AMD EPYC, AVX-512; docs/testing.md says which other machines were tried).
WIDEN = 4.0
REL_FLOOR = 0.02
# trained columns whose band is built on log(value) (a column's " std" never is)
LOG_SCALE = ("FID", "FID-*", "FVD")
# A column "<name> std" is a standard deviation over a handful of seeds within one run: itself
# a noisy number (about 50% relative error over 3 seeds), so its band starts at 0 and reaches
# STD_WIDEN widths above the largest value.
STD_SUFFIX = " std"
STD_WIDEN = 1.5
KERNEL_PREFIX, SEED_PREFIX = "kernels-", "seed"


def trained_columns(columns: Iterable[str], patterns: Sequence[str] | None) -> list[str]:
    """The columns matched by ``patterns`` (shell-style: ``"FID-*"``), in table order.

    Raises ValueError for a pattern that matches no column, so a typo cannot silently
    turn a trained column into an exact one."""
    columns = [str(c) for c in columns]
    if not patterns:
        return []
    patterns = [patterns] if isinstance(patterns, str) else patterns
    for p in patterns:
        if not any(fnmatch.fnmatchcase(c, p) for c in columns):
            raise ValueError(f"trained column pattern {p!r} matches none of the columns {columns}")
    return [c for c in columns if any(fnmatch.fnmatchcase(c, p) for p in patterns)]


def _number(x: str) -> float | None:
    """A cell (read as text) as a float, or None for text; an empty cell reads as NaN."""
    try:
        return float(x) if x else math.nan
    except ValueError:
        return None


def shape_of(text) -> str:
    """A text cell with its numbers masked: ``"6.516 vs 6.578 (axial)"`` → ``"# vs # (axial)"``;
    ``True``/``False`` → ``<bool>``."""
    s = str(text)
    return "<bool>" if s in ("True", "False") else _NUMBER.sub("#", s)


def band(kernel_values: Sequence[float], seed_values: Sequence[float] = (),
         std: bool = False, log: bool = False) -> tuple[float, float]:
    """The interval a trained number may take on another machine. ``kernel_values``: the
    golden run's value and its kernel variants'; ``seed_values``: the golden's and the seed
    runs'. The range of all of them, widened on each side by ``max(WIDEN * the kernel values'
    range, the seed values' range, REL_FLOOR * max|value|)``. ``log``: the same on the
    logarithms (all values > 0; REL_FLOOR becomes a factor 1 + REL_FLOOR). A
    standard-deviation column (``std``): from 0 to ``STD_WIDEN`` such widths above the largest."""
    f = math.log if log else float
    k, s = [f(v) for v in kernel_values], [f(v) for v in seed_values]
    lo, hi = min(k + s), max(k + s)
    width = max(WIDEN * (max(k) - min(k)), max(s, default=0.0) - min(s, default=0.0),
                math.log1p(REL_FLOOR) if log else REL_FLOOR * max(abs(lo), abs(hi)))
    lo, hi = (0.0, hi + STD_WIDEN * width) if std else (lo - width, hi + width)
    return (math.exp(lo), math.exp(hi)) if log else (lo, hi)


def log_scale(column: str) -> bool:
    """Whether a trained column's band is built on log(value) (:data:`LOG_SCALE`)."""
    return not column.endswith(STD_SUFFIX) and any(fnmatch.fnmatchcase(column, p)
                                                   for p in LOG_SCALE)


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
    """The reference runs beside ``results/<profile>/tables``: ``../spread/{kernels-*,seed*}/``."""
    base = Path(ref_dir).parent / "spread"
    return sorted(p for p in base.glob("*")
                  if p.is_dir() and p.name.startswith((KERNEL_PREFIX, SEED_PREFIX)))


def record_references(ref_dir: Path) -> list[Path]:
    """The re-evaluations of a shipped record on other kernels: ``<profile>-other-cpu/tables``
    beside ``results/<profile>/tables``."""
    ref_dir = Path(ref_dir)
    other = ref_dir.parent.parent / f"{ref_dir.parent.name}-other-cpu" / "tables"
    return [other] if other.is_dir() else []


def compare_tables(new_dir: Path, ref_dir: Path, spread: Sequence[Path] | None = None,
                   same_weights: bool = False) -> list[str]:
    """Differences between a run's tables (``new_dir``) and the golden ones (``ref_dir``),
    one line each; empty when the run matches. ``spread``: the reference runs' table folders,
    named ``kernels-*`` or ``seed*`` (default :func:`spread_dirs`). ``same_weights``: the run
    re-evaluated a shipped record (see the module's docstring)."""
    new_dir, ref_dir = Path(new_dir), Path(ref_dir)
    if same_weights:
        spread = record_references(ref_dir) if spread is None else [Path(p) for p in spread]
        if not spread:
            return [f"{ref_dir}: no re-evaluation on other kernels to bound the trained cells "
                    f"(make reproduce-other-cpu)"]
    else:
        spread = spread_dirs(ref_dir) if spread is None else [Path(p) for p in spread]
    new = {p.name for p in new_dir.glob("*.csv")}
    ref = {p.name for p in ref_dir.glob("*.csv")}
    problems = [] if same_weights else [f"{n}: missing from the new run" for n in sorted(ref - new)]
    problems += [f"{n}: new table, not in {ref_dir}" for n in sorted(new - ref)]
    for name in sorted(new & ref):
        problems += _compare_one(name, _read(new_dir / name), _read(ref_dir / name),
                                 declared_trained(ref_dir, name), spread, same_weights)
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


def _compare_one(name: str, a, b, trained: list[str], spread: Sequence[Path],
                 same_weights: bool = False) -> list[str]:
    if list(a.columns) != list(b.columns):
        return [f"{name}: columns {list(a.columns)} != {list(b.columns)}"]
    if len(a) != len(b):
        return [f"{name}: {len(a)} rows != {len(b)} rows"]
    refs = {KERNEL_PREFIX: [], SEED_PREFIX: []}
    for d in spread if trained else ():
        if not (d / name).exists():
            return [f"{name}: has trained columns but no reference run in {d} (make spread)"]
        s = _read(d / name)
        if list(s.columns) != list(b.columns) or len(s) != len(b):
            return [f"{name}: the reference run in {d} has another shape than the golden "
                    "table (make spread after changing a table)"]
        kernel = same_weights or d.name.startswith(KERNEL_PREFIX)
        refs[KERNEL_PREFIX if kernel else SEED_PREFIX].append(s)
    missing = [k + "*" for k, v in refs.items() if trained and not v
               and not (same_weights and k == SEED_PREFIX)]
    if missing:
        return [f"{name}: has trained columns but no {' or '.join(missing)} "
                "reference runs to bound them (make spread)"]
    problems = []
    for col in a.columns:
        got, want = a[col].tolist(), b[col].tolist()
        if col in trained:
            problems += _check_trained(name, col, got,
                                       [want] + [s[col].tolist() for s in refs[KERNEL_PREFIX]],
                                       [s[col].tolist() for s in refs[SEED_PREFIX]])
        else:
            problems += [f"{name}: row {r}, column {col!r}: {x!r} != {y!r} (exact)"
                         for r, (x, y) in enumerate(zip(got, want)) if x != y]
    return problems


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _check_trained(name: str, col: str, got: list, kernels: list[list],
                   seeds: list[list]) -> list[str]:
    """``kernels[0]`` is the golden column, the rest its kernel variants'; ``seeds`` the seed
    runs' columns."""
    knum = [[_number(x) for x in run] for run in kernels]
    snum = [[_number(x) for x in run] for run in seeds]
    shapes = {shape_of(x) for run in kernels + seeds for x in run if _number(x) is None}
    std, on_logs = col.endswith(STD_SUFFIX), log_scale(col)
    problems = []
    for r, x in enumerate(got):
        where = f"{name}: row {r}, column {col!r}"
        gold, v = knum[0][r], _number(x)
        if gold is None:                                  # text: a claim, a verdict, a bool
            if v is not None or shape_of(x) not in shapes:
                problems.append(f"{where}: {x!r} has none of the shapes {sorted(shapes)} "
                                "(trained)")
            continue
        if v is None:
            problems.append(f"{where}: {x!r} is not a number (golden {kernels[0][r]!r})")
        elif math.isnan(gold) or math.isnan(v):
            if math.isnan(gold) != math.isnan(v):
                problems.append(f"{where}: {x!r} is {'empty' if math.isnan(v) else 'a number'}, "
                                f"golden {kernels[0][r]!r}")
        elif not math.isfinite(v):
            problems.append(f"{where}: {x!r} is not finite")
        else:
            kv = _finite(run[r] for run in knum)
            sv = _finite([gold] + [run[r] for run in snum])
            log = on_logs and min(kv + sv) > 0
            lo, hi = band(kv, sv, std=std, log=log)
            if not lo <= v <= hi:
                problems.append(f"{where}: {x} outside [{lo:.6g}, {hi:.6g}], the band of "
                                f"{len(kv)} kernel and {len(sv) - 1} seed runs"
                                f"{' (log scale)' if log else ''} (golden {kernels[0][r]}) "
                                "(trained)")
    return problems
