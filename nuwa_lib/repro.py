"""Reproducibility: one seeding function, provenance, and the one results writer.

Every table, metric and figure a notebook produces goes through :class:`Results`,
so every number in ``results/`` can be traced to a commit, a profile and a seed.
Tables stay diffable: the CSV holds only the data, its provenance sits beside it
in ``<name>.provenance.json``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import __version__
from .utils.paths import REPO_ROOT, results_dir
from .tablecheck import trained_columns


def seed_everything(seed: int) -> int:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) and ask torch for determinism.

    Returns the seed so a notebook can write ``SEED = seed_everything(...)``.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # the world and the pipeline work without torch
        return seed
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    # warn_only: a few CUDA kernels have no deterministic variant; on CPU all do.
    torch.use_deterministic_algorithms(True, warn_only=True)
    return seed


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return getattr(mod, "__version__", None)


# Settings that change which CPU kernels run, hence the last digits of trained numbers.
NUMERICS_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS",
                "MKL_NUM_THREADS")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _cpu_capability() -> str | None:
    torch = sys.modules.get("torch")      # never import torch just to describe the machine
    try:
        return torch.backends.cpu.get_cpu_capability() if torch else None
    except Exception:  # noqa: BLE001 - older torch without the query
        return None


def provenance(profile: str | None = None, seed: int | None = None,
               **extra: Any) -> dict[str, Any]:
    """Where a result came from: commit (and whether the tree was dirty), library
    versions, the CPU and the kernel settings that decide its rounding, profile, seed
    and the UTC time it was made."""
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    info = {
        "git_sha": sha,
        "git_dirty": None if status is None else bool(status),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "torch": _version("torch"),
        "triton": _version("triton"),
        "nuwa_lib": __version__,
        "cpu": _cpu_model(),
        "cpu_capability": _cpu_capability(),
        "numerics_env": {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ},
        "profile": profile,
        "seed": seed,
        "utc_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    info.update(extra)
    return info


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename, so a reader
    never sees half a file and an interrupted run leaves the old one intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic_write_bytes(Path(path), text.encode())
    return Path(path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


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

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

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
        path = self.tables_dir / f"{name}.csv"
        csv = df.to_csv(index=False, float_format=float_format, lineterminator="\n")
        atomic_write_bytes(path, csv.encode())
        write_json(self.tables_dir / f"{name}.provenance.json",
                   self.provenance(table=f"{name}.csv", rows=len(df),
                                   columns=[str(c) for c in df.columns],
                                   trained_columns=trained))
        return path

    def metrics(self, name: str, values: Mapping[str, Any]) -> Path:
        """Write ``metrics/<name>.json`` = ``{"metrics": values, "provenance": ...}``."""
        name = _check_name(name)
        return write_json(self.metrics_dir / f"{name}.json",
                          {"metrics": dict(values), "provenance": self.provenance()})

    def figure(self, name: str, fig, dpi: int = 110) -> None:
        """Save a matplotlib figure as ``figures/<name>.png`` (no timestamp metadata).

        Returns nothing, so a notebook cell ending with it shows only the figure (nbval
        does not honour a trailing ``;``)."""
        import io

        name = _check_name(name)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight",
                    metadata={"Software": None})
        atomic_write_bytes(self.figures_dir / f"{name}.png", buf.getvalue())


def start(profile: str, params: Mapping[str, Any] | None = None,
          results: str | os.PathLike | None = None, notebook: str | None = None):
    """What the first code cell of every notebook calls.

    Loads the profile (or takes the parameters papermill injected), seeds
    everything with the profile's seed and returns ``(cfg, out)``: the profile as
    a dict and the :class:`Results` writer for ``results/<profile>/``.
    ``NUWA_RESULTS_DIR`` in the environment overrides where results go (used by
    ``make test`` so re-executing golden notebooks never touches the tree).
    """
    from .profiles import load_profile

    cfg = dict(params) if params else load_profile(profile)
    if cfg.get("name", profile) != profile:
        raise ValueError(f"parameters are for profile {cfg.get('name')!r}, not {profile!r}")
    seed = seed_everything(int(cfg.get("seed", 0)))
    root = results_dir(profile, results)
    return cfg, Results(profile=profile, seed=seed, root=root, notebook=notebook)
