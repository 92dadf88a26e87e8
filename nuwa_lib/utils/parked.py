"""Parked training: a long retrain's progress, committed so the next session (or another
machine) continues it.

A retrain keeps two kinds of progress in the local cache, which is git-ignored and so lost
with the machine: the full training state of every unfinished run,
``artifacts/<profile>/<kind>/<name>-<hash>.partial.pt`` (model, optimisers, step, history),
and the models it has finished but not shipped yet (a stage ships when all of its runs are
done). :func:`park` copies both into the shipped set's ``results/<profile>/weights/partial/``
and lists them under the manifest's ``partial`` (sha256, bytes, step); commit the folder and
the manifest. A finished model counts when it was written since the retrain began (its
marker, :func:`begin`) and the shipped set does not hold it.

:func:`unpark` is what a run calls before it trains: when the cache has no such file and a
parked one of the same name is listed, it is copied into the cache (after checking its size
and sha256), so a state resumes to the same weights as an uninterrupted run and a finished
model is simply found. When a model ships, :func:`nuwa_lib.utils.weights.ship` removes what
was parked for it.

``nuwa-repro --profile mini --park`` parks; nothing else writes here.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from . import weights
from .files import atomic_path, write_json
from .paths import artifacts_dir

FOLDER = weights.PARTIAL
SUFFIX = ".partial.pt"
MARKER = "retraining.json"      # in artifacts/<profile>/: since when a retrain has been running
FINISHED = (".pt", ".json")     # the cache's finished models (study arms are JSON)


def _entries(profile: str) -> dict:
    return dict(weights.manifest(profile).get("partial") or {})


def _write(profile: str, entries: dict) -> None:
    data = weights.manifest(profile)
    weights.write_manifest(profile, {**data, "partial": dict(sorted(entries.items()))})


def _progress(path: Path) -> dict:
    """The step a state reached (or a finished model's steps) and the run's length, as far
    as its payload says."""
    if path.suffix == ".json":
        info = json.loads(path.read_text()).get("info") or {}
        return {"step": info.get("steps"), "steps": info.get("steps"), "finished": True}
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
    steps = config.get("steps") or (payload.get("train") or {}).get("steps") \
        or payload.get("steps") or (payload.get("info") or {}).get("steps")
    if "state" not in payload:
        return {"step": steps, "steps": steps, "finished": True}
    return {"step": int(payload["state"].get("step", 0)), "steps": steps, "finished": False}


# --------------------------------------------------------------------------- the marker
def begin(profile: str, stages) -> None:
    """A retrain of ``stages`` starts (or resumes: the first start is kept)."""
    path = artifacts_dir(profile) / MARKER
    if not path.exists():
        write_json(path, {"stages": list(stages), "since": time.time()})


def end(profile: str) -> None:
    """The retrain finished: every model it made is shipped."""
    (artifacts_dir(profile) / MARKER).unlink(missing_ok=True)


def local_states(profile: str) -> list[Path]:
    """The unfinished runs' states in this machine's cache."""
    root = artifacts_dir(profile)
    return sorted(root.glob(f"*/*{SUFFIX}")) if root.is_dir() else []


def local_finished(profile: str) -> list[Path]:
    """The models the running retrain finished and the shipped set does not hold yet: cache
    files written since its marker (none without a retrain)."""
    root = artifacts_dir(profile)
    marker = root / MARKER
    if not marker.exists():
        return []
    since = json.loads(marker.read_text())["since"]
    shipped = {Path(f).with_suffix("").as_posix() for f in weights.manifest(profile)["files"]}
    return sorted(p for p in root.glob("*/*") if p.suffix in FINISHED
                  and not p.name.endswith(SUFFIX) and not p.name.startswith(".")
                  and p.stat().st_mtime >= since
                  and f"{p.parent.name}/{p.stem}" not in shipped)


# --------------------------------------------------------------------------- park / unpark
def park(profile: str) -> list[str]:
    """Copy the running retrain's progress (every local training state, every finished model
    not yet shipped) into the shipped set's ``partial/`` folder and list it in the manifest;
    returns the parked files (relative to the weights folder). What was parked before and
    has since shipped is gone already (:func:`nuwa_lib.utils.weights.ship`); the rest is
    kept."""
    root = weights.weights_dir(profile)
    entries = _entries(profile)
    parked = []
    for src in local_states(profile) + local_finished(profile):
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


def unpark(path, profile: str) -> bool:
    """Before a run trains: when the cache file ``path`` (a ``.partial.pt`` state or a
    finished model) is missing and one of the same name is parked, copy it there (after
    checking its size and sha256 against the manifest). Returns whether it did."""
    path = Path(path)
    if path.exists():
        return False
    rel = f"{FOLDER}/{path.parent.name}/{path.name}"
    entry = _entries(profile).get(rel)
    if entry is None:
        return False
    src = weights.check_file(profile, rel, entry)
    with atomic_path(path) as tmp:
        tmp.write_bytes(src.read_bytes())
    return True
