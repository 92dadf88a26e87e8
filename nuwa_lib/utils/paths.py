"""Where things live: the repository root, results and artifact folders.

Notebooks find these through the library, never through the working directory,
so an executed copy re-runs from anywhere.
"""
from __future__ import annotations

import os
from pathlib import Path


def _find_repo_root() -> Path:
    env = os.environ.get("NUWA_REPO_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]      # nuwa_lib/utils/paths.py -> the repo
    if (here / "profiles").is_dir():
        return here
    for parent in [Path.cwd(), *Path.cwd().parents]:
        if (parent / "profiles").is_dir() and (parent / "nuwa_lib").is_dir():
            return parent
    raise RuntimeError("cannot find the repository root (a folder holding profiles/ and "
                       "nuwa_lib/); set NUWA_REPO_ROOT")


REPO_ROOT = _find_repo_root()
PROFILES_DIR = REPO_ROOT / "profiles"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
BENCH_DIR = REPO_ROOT / "results" / "bench"   # benchmarks/*.py write here, for every profile


def resolve(path: str | os.PathLike) -> Path:
    """A path relative to the repository root (absolute paths pass through)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def results_base(results: str | os.PathLike | None = None) -> Path:
    """The folder holding ``<profile>/`` result trees.

    ``NUWA_RESULTS_DIR`` wins (``make test`` uses it to keep the tree clean), then
    the ``results`` argument, then ``<repo>/results``.
    """
    env = os.environ.get("NUWA_RESULTS_DIR")
    if env:
        return resolve(env)
    return resolve(results) if results else REPO_ROOT / "results"


def results_dir(profile: str, results: str | os.PathLike | None = None) -> Path:
    return results_base(results) / profile


def artifacts_dir(profile: str) -> Path:
    """Cached models and judges (git-ignored), ``NUWA_ARTIFACTS_DIR`` overrides."""
    env = os.environ.get("NUWA_ARTIFACTS_DIR")
    base = resolve(env) if env else REPO_ROOT / "artifacts"
    return base / profile
