"""Parked training states: a long run's resumable state, committed so the next session (or
another machine) continues it.

A run that has not finished keeps its full training state in the local cache,
``artifacts/<profile>/<kind>/<name>-<hash>.partial.pt`` (model, optimisers, step, history).
The cache is git-ignored, so a run longer than one working session would be lost with the
machine. :func:`park` copies every such state into the shipped set's
``results/<profile>/weights/partial/<kind>/`` and lists it under the manifest's ``partial``
(sha256, bytes, step); commit the folder and the manifest. :func:`unpark` is what a run calls
before it starts: when there is no local state, the parked one of the same name and hash
(checked against the manifest) is copied into the cache, and the run resumes from it to the
same weights as an uninterrupted run. When the finished model ships,
:func:`nuwa_lib.utils.weights.ship` removes its parked state.

``nuwa-repro --profile mini --park`` parks; nothing else writes here.
"""
from __future__ import annotations

from pathlib import Path

from .files import atomic_path
from .paths import artifacts_dir
from . import weights

FOLDER = "partial"
SUFFIX = ".partial.pt"


def _entries(profile: str) -> dict:
    return dict(weights.manifest(profile).get("partial") or {})


def _write(profile: str, entries: dict) -> None:
    data = weights.manifest(profile)
    weights.write_manifest(profile, {**data, "partial": dict(sorted(entries.items()))})


def _progress(path: Path) -> dict:
    """The step a state reached and the run's length, as far as its payload says."""
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload.get("state") or {}
    config = payload.get("config") or {}
    steps = config.get("steps") if isinstance(config, dict) else None
    steps = steps or (payload.get("train") or {}).get("steps") or payload.get("steps")
    return {"step": int(state.get("step", 0)), "steps": steps}


def local_states(profile: str) -> list[Path]:
    """The unfinished runs' states in this machine's cache."""
    root = artifacts_dir(profile)
    return sorted(root.glob(f"*/*{SUFFIX}")) if root.is_dir() else []


def park(profile: str) -> list[str]:
    """Copy every local training state of ``profile`` into the shipped set's ``partial/``
    folder and list it in the manifest; returns the parked files (relative to the weights
    folder). A state parked before whose run has since shipped is gone already
    (:func:`forget`); one whose local state is gone too is kept."""
    root = weights.weights_dir(profile)
    entries = _entries(profile)
    parked = []
    for src in local_states(profile):
        rel = f"{FOLDER}/{src.parent.name}/{src.name}"
        dest = root / rel
        with atomic_path(dest) as tmp:
            tmp.write_bytes(src.read_bytes())
        entries[rel] = {"kind": src.parent.name, "sha256": weights.sha256(dest),
                        "bytes": dest.stat().st_size, **_progress(dest)}
        parked.append(rel)
    if parked:
        _write(profile, entries)
    return parked


def unpark(state_path, profile: str) -> bool:
    """Before a run starts: when ``state_path`` (a ``.partial.pt`` in the cache) is missing
    and a state of the same name is parked, copy it there (after checking its size and
    sha256 against the manifest). Returns whether it did."""
    state_path = Path(state_path)
    if state_path.exists():
        return False
    rel = f"{FOLDER}/{state_path.parent.name}/{state_path.name}"
    entry = _entries(profile).get(rel)
    if entry is None:
        return False
    src = weights.check_file(profile, rel, entry)
    with atomic_path(state_path) as tmp:
        tmp.write_bytes(src.read_bytes())
    return True


def forget(profile: str, kind: str, stem: str) -> None:
    """Remove the parked state ``<kind>/<stem>.partial.pt`` (its run has finished)."""
    rel = f"{FOLDER}/{kind}/{stem}{SUFFIX}"
    entries = _entries(profile)
    if rel in entries:
        (weights.weights_dir(profile) / rel).unlink(missing_ok=True)
        del entries[rel]
        _write(profile, entries)
