"""The artifact cache: "load it if it was built, else build it and save it", keyed by a hash.

Everything the project trains or encodes -- judges, visual tokenizers, the BPE, token sets,
NÜWA runs, the compute study's arms -- is an artifact at
``artifacts/<profile>/<kind>/<name>-<hash><suffix>`` (:func:`artifact_path`), where the hash
is :func:`key_hash` of everything that determines it (config, version, seed, the hashes of
what it was built from). A change to any of those gives another file, so a stale artifact is
never loaded, and a notebook that finds its inputs built only loads them (DESIGN §3).
:func:`fetch` is the one "load if built, else build and save".
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Tuple

from .paths import artifacts_dir


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
          build_if_missing: bool = True, missing: str = "", rebuild: bool = False
          ) -> Tuple[Any, bool]:
    """``(load(path), True)`` when the artifact at ``path`` was built; otherwise
    ``(build(), False)``, where ``build`` makes it and saves it at ``path`` (atomically:
    :mod:`nuwa_lib.utils.files`). With ``build_if_missing=False`` a missing artifact raises
    ``FileNotFoundError(missing)`` instead; ``rebuild=True`` builds even when it is there."""
    path = Path(path)
    if path.exists() and not rebuild:
        return load(path), True
    if not build_if_missing:
        raise FileNotFoundError(missing or f"nothing built at {path}")
    return build(), False
