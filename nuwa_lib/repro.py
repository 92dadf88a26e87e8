"""The one results writer, and :func:`start`, the first call of every notebook.

Every table, metric and figure a notebook produces goes through :class:`Results`,
so every number in ``results/`` can be traced to a commit, a profile and a seed
(:mod:`nuwa_lib.utils.provenance`; seeding: :mod:`nuwa_lib.utils.seeding`).
Tables stay diffable: the CSV holds only the data, its provenance sits beside it
in ``<name>.provenance.json``.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .tablecheck import trained_columns
from .utils.files import atomic_write_bytes, write_json
from .utils.paths import results_dir
from .utils.provenance import provenance
from .utils.seeding import seed_everything


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(f"result name must be a plain file stem like 'tab1_t2i', got {name!r}")
    return name


@dataclass
class Results:
    """The results writer of one notebook run: ``results/<profile>/{tables,metrics,figures}``."""

    profile: str
    seed: int
    root: Path
    notebook: str | None = None

    def provenance(self, **extra: Any) -> dict[str, Any]:
        return provenance(self.profile, self.seed, notebook=self.notebook, **extra)

    def table(self, name: str, df, float_format: str = "%.6g",
              trained: Sequence[str] | None = None) -> Path:
        """Write a pandas DataFrame as ``tables/<name>.csv`` (data only, fixed float
        format so reruns are byte-identical) and ``tables/<name>.provenance.json``.

        ``trained`` names the columns computed from trained models (shell patterns such
        as ``"FID-*"`` allowed): another CPU rounds those differently, so ``make test``
        bounds them by the band of the reference runs instead of comparing them exactly
        (:mod:`nuwa_lib.tablecheck`). Every other column must be reproducible anywhere."""
        name = _check_name(name)
        trained = trained_columns(df.columns, trained)
        path = self.root / "tables" / f"{name}.csv"
        csv = df.to_csv(index=False, float_format=float_format, lineterminator="\n")
        atomic_write_bytes(path, csv.encode())
        write_json(path.with_suffix(".provenance.json"),
                   self.provenance(table=path.name, rows=len(df),
                                   columns=[str(c) for c in df.columns],
                                   trained_columns=trained))
        return path

    def metrics(self, name: str, values: Mapping[str, Any]) -> Path:
        """Write ``metrics/<name>.json`` = ``{"metrics": values, "provenance": ...}``."""
        return write_json(self.root / "metrics" / f"{_check_name(name)}.json",
                          {"metrics": dict(values), "provenance": self.provenance()})

    def figure(self, name: str, fig, dpi: int = 110) -> None:
        """Save a matplotlib figure as ``figures/<name>.png`` (no timestamp metadata).

        Returns nothing, so a notebook cell ending with it shows only the figure (nbval
        does not honour a trailing ``;``)."""
        path = self.root / "figures" / f"{_check_name(name)}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight",
                    metadata={"Software": None})
        atomic_write_bytes(path, buf.getvalue())


def start(profile: str, params: Mapping[str, Any] | None = None,
          results: str | os.PathLike | None = None, notebook: str | None = None):
    """What the first code cell of every notebook calls.

    Loads the profile (or takes the parameters papermill injected), seeds
    everything with the profile's seed and returns ``(cfg, out)``: the profile as
    a dict and the :class:`Results` writer for ``results/<profile>/``.
    ``NUWA_RESULTS_DIR`` in the environment overrides where results go (used by
    ``make test`` so re-executing golden notebooks never touches the tree).
    """
    from .utils.profiles import load_profile

    cfg = dict(params) if params else load_profile(profile)
    if cfg.get("name", profile) != profile:
        raise ValueError(f"parameters are for profile {cfg.get('name')!r}, not {profile!r}")
    seed = seed_everything(int(cfg.get("seed", 0)))
    return cfg, Results(profile, seed, results_dir(profile, results), notebook)


def section(cfg: Mapping[str, Any], name: str) -> dict:
    """A notebook's section of the profile (``cfg[name]``), with torch's thread count set to
    the section's ``threads`` when it names one."""
    if name not in cfg:
        raise KeyError(f"the profile {cfg.get('name')!r} has no section {name!r}")
    S = cfg[name]
    if S.get("threads"):
        import torch     # (repro itself stays light: the pipeline imports it)

        torch.set_num_threads(int(S["threads"]))
    return S
