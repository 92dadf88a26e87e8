"""Provenance: where a result came from -- the commit, the library versions, the CPU and the
kernel settings that decide its rounding, the profile, the seed and the time it was made."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .paths import REPO_ROOT


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
    version = getattr(mod, "__version__", None)
    return None if version is None else str(version)     # torch's is a str subclass


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


def training_record(threads: int | None = None, device: str = "cpu",
                    autocast: str | None = None) -> dict[str, Any]:
    """What a trained model's file keeps of how it was made (the weights' manifest lists it):
    the commit, the machine, the torch threads and device (and the autocast dtype when there
    was one), the library versions, the time."""
    torch = sys.modules.get("torch")
    info = provenance()
    keep = ("git_sha", "git_dirty", "cpu", "cpu_capability", "numerics_env", "torch", "utc_time")
    return {**{k: info[k] for k in keep},
            "threads": threads if threads is not None else (torch.get_num_threads() if torch
                                                            else None),
            "device": device, **({"autocast": autocast} if autocast else {})}
