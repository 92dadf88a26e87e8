"""The artifact cache: "load it if it was built, else build it and save it", keyed by a hash.

Everything the project trains or encodes -- judges, visual tokenizers, the BPE, token sets,
NÜWA runs, the compute study's arms -- is an artifact at
``artifacts/<profile>/<kind>/<name>-<hash><suffix>`` (:func:`artifact_path`), where the hash
is :func:`key_hash` of everything that determines it (config, version, seed, the hashes of
what it was built from). A change to any of those gives another file, so a stale artifact is
never loaded, and a notebook that finds its inputs built only loads them (DESIGN §3).
:func:`fetch` is the one "load if built, else build and save"; for a trained model it looks
first in the shipped weights (:mod:`nuwa_lib.utils.weights`), so the resolution order is
shipped weights whose hash matches -> this cache (or a model an interrupted retrain parked,
:mod:`nuwa_lib.utils.parked`) -> train (where the caller allows it).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Tuple

from . import parked, weights
from .paths import artifacts_dir

# (spec, path, how) of every model resolved in this process, how = shipped | cached | trained:
# what `nuwa-repro --retrain` ships after each stage
RESOLVED: list = []


def key_hash(key: Any) -> str:
    """12 hex digits of the SHA-256 of ``key`` as JSON with sorted keys."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def artifact_path(profile: str, kind: str, name: str, hash_: str, suffix: str = ".pt") -> Path:
    """``artifacts/<profile>/<kind>/<name>-<hash><suffix>``."""
    return artifacts_dir(profile) / kind / f"{name}-{hash_}{suffix}"


def profile_of(cfg: Mapping[str, Any], profile: str | None = None) -> str:
    """The profile whose artifacts a call uses: ``profile``, else the profile's own name."""
    profile = profile or cfg.get("name")
    if not profile:
        raise ValueError("cfg has no 'name' (the profile); pass profile=...")
    return profile


def fetch(path, load: Callable[[Path], Any], build: Callable[[], Any], *,
          build_if_missing: bool = True, missing: str = "", rebuild: bool = False,
          spec: weights.Spec | None = None) -> Tuple[Any, bool]:
    """``(load(path), True)`` when the artifact at ``path`` was built; otherwise
    ``(build(), False)``, where ``build`` makes it and saves it at ``path`` (atomically:
    :mod:`nuwa_lib.utils.files`). With ``build_if_missing=False`` a missing artifact raises
    ``FileNotFoundError(missing)`` instead; ``rebuild=True`` builds even when it is there.

    With ``spec`` (a trained model) the shipped file of the same hash comes first
    (``load(shipped_path)``, checked against the manifest), and a shipped model for the same
    place in the record under another hash raises :class:`~nuwa_lib.utils.weights.WeightsError`
    instead of a silent build."""
    path = Path(path)
    if spec is not None and not rebuild:
        shipped = weights.find(spec)
        if shipped is not None:
            RESOLVED.append((spec, shipped, "shipped"))
            return load(shipped), True
    if not rebuild and (path.exists() or (spec is not None and parked.unpark(path, spec.profile))):
        RESOLVED.append((spec, path, "cached"))     # (unpark: a model an earlier session parked)
        return load(path), True
    if spec is not None and not rebuild:
        problem = weights.mismatch(spec)
        if problem:
            raise weights.WeightsError(problem)
    if not build_if_missing:
        raise FileNotFoundError(missing or f"nothing built at {path}")
    built = build()
    RESOLVED.append((spec, path, "trained"))
    return built, False


def source_of(path) -> str:
    """Where a loaded model came from: ``shipped`` (the record's weights) or ``loaded`` (this
    machine's cache)."""
    return "shipped" if Path(path).parent.parent.name == "weights" else "loaded"


def available(path, spec: weights.Spec | None = None) -> bool:
    """Whether :func:`fetch` would load rather than build (shipped or cached)."""
    return (spec is not None and weights.find(spec) is not None) or Path(path).exists()
