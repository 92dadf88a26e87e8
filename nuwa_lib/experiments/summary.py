"""The summary notebook's logic: every table the notebooks wrote beside the paper's numbers,
every claim's verdict with its spread, and the pipeline's recorded run times.

It reads only what the notebooks wrote into ``<results>/<profile>/`` (tables CSV,
``metrics/runtimes.json``): the summary never recomputes a number.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .claims import verdict

# (label, table, notebook): the paper's tables in the order the paper prints them.
PAPER_TABLES = (
    ("Table 1 · T2I (MSCOCO's role)", "tab1_t2i", "05_t2i"),
    ("Table 2 · T2V (Kinetics' role)", "tab2_t2v", "09_t2v"),
    ("Table 3 · V2V (BAIR's role)", "tab3_v2v", "10_v2v"),
    ("Table 4 · VQ-GAN", "tab4_vqgan", "02_vqgan"),
    ("Table 5 · multi-task pretraining for T2V (MSR-VTT's role)", "tab5_multitask", "13_multitask"),
    ("Table 6 · attention for S2V (VSPW's role)", "tab6_s2v", "11_s2v"),
)
# Tasks the paper shows only as figures: our tables have no paper column.
FIGURE_TABLES = (
    ("Fig. 6 · S2I", "s2i", "06_s2i"),
    ("Fig. 7 · I2I, zero-shot", "i2i", "07_i2i"),
    ("Fig. 8 · TI2I, zero-shot", "ti2i", "08_ti2i"),
    ("Fig. 12 · TV2V, zero-shot", "tv2v", "12_tv2v"),
)
CLAIM_TABLES = (
    ("Table 1", "tab1_t2i_claims"), ("Table 2", "tab2_t2v_claims"), ("Table 3", "tab3_v2v_claims"),
    ("Table 4", "tab4_claims"), ("Table 5", "tab5_multitask_claims"),
    ("Table 6", "tab6_s2v_claims"), ("Fig. 12", "tv2v_claims"),
)
BUDGET_SECONDS = {"smoke": 600, "mini": 1200}   # DESIGN §3 on 2 CPU cores: smoke trains, mini loads


def load_table(root, name):
    """The table ``name`` of a results folder (``<root>/tables/<name>.csv``), or None."""
    path = Path(root) / "tables" / f"{name}.csv"
    return pd.read_csv(path) if path.exists() else None


def _paper_column(df, c):
    return next((p for p in (f"paper {c}", f"paper: {c}") if p in df.columns), None)


def _label(r) -> str:
    for k in ("row", "name", "model"):
        v = r.get(k)
        if isinstance(v, str) and v:
            model = r.get("model")
            if k != "model" and isinstance(model, str) and model and model != v:
                return f"{model} [{v}]"
            return v
    return ""


def _fmt(v, s=np.nan) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    if isinstance(v, str):
        return v
    d = 4 if abs(v) < 1 else (3 if abs(v) < 10 else 2)
    return f"{v:.{d}f}" + ("" if s is None or np.isnan(s) else f" ± {s:.{d}f}")


def side_by_side_view(df):
    """A printable view of one table: a row label, and for each measured column that has
    the paper's number beside it, ours (mean ± std where several runs) and the paper's.
    Rows with neither ours nor the paper's numbers are dropped."""
    cols = [c for c in df.columns if _paper_column(df, c) and not c.startswith("paper")
            and not c.endswith(" std") and df[c].dtype.kind in "fi"]
    rows = []
    for _, r in df.iterrows():
        cells = {}
        for c in cols:
            s, p = r.get(f"{c} std", np.nan), r[_paper_column(df, c)]
            cells[c] = _fmt(float(r[c]), np.nan if isinstance(s, str) else float(s))
            cells[f"paper {c}"] = _fmt(np.nan if isinstance(p, str) else float(p))
        if any(v != "—" for v in cells.values()):
            rows.append({"row": _label(r), **cells})
    return pd.DataFrame(rows)


def plain_view(df, max_cols: int = 8):
    """A printable view of a table without paper numbers: label and its first numeric
    columns (std columns folded into ±)."""
    num = [c for c in df.columns if df[c].dtype.kind in "fi" and not c.endswith(" std")
           and c not in ("seeds", "runs", "n")][:max_cols]
    return pd.DataFrame([{"row": _label(r) or str(r.iloc[0]),
                          **{c: _fmt(float(r[c]), float(r.get(f"{c} std", np.nan))) for c in num}}
                         for _, r in df.iterrows()])


def gather_claims(root):
    """Every claim table of the results folder as one DataFrame: source, claim, ours,
    paper, holds, clear (NaN where the table decides no spread) and the verdict."""
    rows = []
    for source, name in CLAIM_TABLES:
        df = load_table(root, name)
        if df is None:
            continue
        for _, r in df.iterrows():
            holds = bool(r["holds"])
            clear = r.get("clear", np.nan)
            unmeasured = clear is None or (isinstance(clear, float) and np.isnan(clear))
            clear = np.nan if unmeasured else bool(clear)
            rows.append({"source": source, "claim": r["claim"],
                         "ours": r.get("ours", r.get("evidence", "")),
                         "paper": r["paper"] if isinstance(r.get("paper"), str) else "—",
                         "holds": holds, "clear": clear,
                         "verdict": verdict(holds, clear)})
    return pd.DataFrame(rows, columns=["source", "claim", "ours", "paper", "holds", "clear",
                                       "verdict"])


def runtimes(root, profile: str | None = None):
    """The pipeline's recorded run time per notebook (``metrics/runtimes.json``) as a
    DataFrame (notebook, seconds); None when nothing is recorded. ``profile`` is unused."""
    path = Path(root) / "metrics" / "runtimes.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return pd.DataFrame([{"notebook": k, "seconds": float(v)}
                         for k, v in sorted(data.get("metrics", {}).items())])


def other_cpu_root(root) -> Path:
    """Where the record of the same pipeline on another CPU lives: ``<root>-other-cpu``
    beside ``<root>`` (e.g. ``results/mini-other-cpu/``, from ``ATEN_CPU_CAPABILITY=default
    nuwa-repro --profile mini --out <tmp>`` with its ``mini/`` renamed)."""
    root = Path(root)
    return root.with_name(f"{root.name}-other-cpu")


def compare_verdicts(here, there):
    """Each claim's verdict in two records side by side (``gather_claims`` of both):
    source, claim, verdict here, verdict there, ``same``, and ``clear flips`` -- a verdict
    called clear in one record that is not the same in the other, which the decision rule
    must never allow. Claims only one record decided are listed with "—" for the other."""
    a, b = gather_claims(here), gather_claims(there)
    key = ["source", "claim"]
    m = a[key + ["verdict"]].merge(b[key + ["verdict"]], on=key, how="outer",
                                   suffixes=(" here", " there"), sort=False)
    m = m.fillna({"verdict here": "—", "verdict there": "—"})
    m["same"] = m["verdict here"] == m["verdict there"]
    clear = m["verdict here"].eq("holds, clearly") | m["verdict there"].eq("holds, clearly")
    m["clear flips"] = clear & ~m["same"]
    return m


# ------------------------------------------------------------------ did the models learn?
# Each target reads a value from a table and, for a ratio, divides it by the ceiling measured
# on the same prompts in the same table: (what, table, rows, column, ceiling row or None, scale,
# "≥" or "≤", bar). Rows are picked by {column: value, or a tuple of values}; rows None means
# every row the paper has a number for (NÜWA's rows, not the references), the worst counting.
# The bars are the learning targets a table must meet before it can decide a claim.
def _readout(task: str, pictures: str = "NÜWA samples") -> dict:
    return {"task": task, "pictures": pictures}


_VQ_READOUT = "real, through the VQ-GAN"
LEARNING_TARGETS = (
    ("tokenizer: Acc after / before the VQ-GAN (counterfactual videos)", "tv2v",
     {"row": "counterfactual through the VQ-GAN"}, "all", {"row": "counterfactual (real)"},
     1.0, "≥", 0.9),
    ("tokenizer: shape preserved after the VQ-GAN", "tv2v",
     {"row": "counterfactual through the VQ-GAN"}, "preserved shape", None, 0.01, "≥", 0.85),
    ("pretraining readout: T2I Acc / ceiling", "pretraining_readout", _readout("T2I"),
     "Acc (all named)", _readout("T2I", _VQ_READOUT), 1.0, "≥", 0.5),
    ("pretraining readout: T2V Acc / ceiling", "pretraining_readout", _readout("T2V"),
     "Acc (all named)", _readout("T2V", _VQ_READOUT), 1.0, "≥", 0.4),
    ("pretraining readout: V2V motion read", "pretraining_readout", _readout("V2V"), "motion",
     None, 1.0, "≥", 0.6),
    ("Table 1: fine-tuned rows' Acc / ceiling (worst)", "tab1_t2i",
     {"row": ("finetune_cc", "finetune_multitask")}, "Acc", {"row": "ceiling_vq"}, 1.0, "≥", 0.5),
    ("Table 2: fine-tuned Acc / ceiling", "tab2_t2v", {"row": "finetune_multitask"}, "Acc",
     {"row": "real test videos through the VQ-GAN"}, 1.0, "≥", 0.5),
    ("Table 2: fine-tuned FID-vid / ceiling", "tab2_t2v", {"row": "finetune_multitask"},
     "FID-vid", {"row": "real test videos through the VQ-GAN"}, 1.0, "≤", 3.0),
    ("Table 3: fine-tuned FVD / ceiling (1 frame)", "tab3_v2v", {"row": "finetune_multitask"},
     "FVD", {"row": "real through the VQ-GAN"}, 1.0, "≤", 1.5),
    ("Table 5: every row's FID-vid / ceiling (worst)", "tab5_multitask", None, "FID-vid",
     {"row": "real through the VQ-GAN"}, 1.0, "≤", 4.0),
    ("Table 5: every row's CLIPSIM / ceiling (worst)", "tab5_multitask", None, "CLIPSIM",
     {"row": "real through the VQ-GAN"}, 1.0, "≥", 0.5),
    ("Table 6: every row's FID-vid / ceiling (worst)", "tab6_s2v", None, "FID-vid",
     {"row": "real through the VQ-GAN"}, 1.0, "≤", 5.0),
    ("Table 6: every row's Detected PA (worst)", "tab6_s2v", None, "Detected PA", None,
     1.0, "≥", 0.85),
    ("TV2V: the new motion is read", "tv2v", {"row": "NÜWA zero-shot (multi-task)"}, "motion",
     None, 0.01, "≥", 0.6),
)


def _values(df, rows, column: str) -> list:
    """``column`` in the rows ``rows`` picks (see :data:`LEARNING_TARGETS`)."""
    if rows is None:
        sel = df[df[f"paper {column}"].notna()]
    else:
        keep = np.ones(len(df), dtype=bool)
        for key, want in rows.items():
            keep &= df[key].isin(want if isinstance(want, tuple) else (want,)).to_numpy()
        sel = df[keep]
    if sel.empty:
        raise ValueError(f"no row {rows!r}")
    return [float(v) for v in sel[column]]


def learning_targets(root):
    """Did the models learn their tasks? One row per target of :data:`LEARNING_TARGETS` whose
    table the results folder holds: target, table, ours (the worst row where several count),
    bar, met, and a note where the value cannot be read (ours NaN, not met)."""
    tables = {name: load_table(root, name)                      # each table read once
              for name in dict.fromkeys(t[1] for t in LEARNING_TARGETS)}
    rows = []
    for what, name, picked, column, ceiling, scale, op, bar in LEARNING_TARGETS:
        df = tables[name]
        if df is None:
            continue
        note = ""
        try:
            values = _values(df, picked, column)
            if ceiling is not None:
                top = _values(df, ceiling, column)[0]
                values = [v / top if top else float("nan") for v in values]
                note = "" if top else "the ceiling is 0: no ratio"
        except KeyError as err:
            values, note = [float("nan")], f"no column {err} in {name}.csv"
        except ValueError as err:
            values, note = [float("nan")], f"{name}.csv: {err}"
        values = [v * scale for v in values]
        ours = min(values) if op == "≥" else max(values)
        met = bool(ours >= bar if op == "≥" else ours <= bar) if math.isfinite(ours) else False
        rows.append({"target": what, "table": name, "ours": ours, "bar": f"{op} {bar:g}",
                     "met": met, "note": note})
    return pd.DataFrame(rows, columns=["target", "table", "ours", "bar", "met", "note"])
