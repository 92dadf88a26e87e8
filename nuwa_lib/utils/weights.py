"""The shipped weights: the trained models a profile's record evaluates, committed under
``results/<profile>/weights/`` with one ``manifest.json`` (DESIGN §3).

Each model is the same payload as its cache file (:mod:`nuwa_lib.utils.checkpoint`) in a
safetensors container: the tensors as tensors, everything else (format, config, hash,
training info and history) as JSON in the header, so nothing is unpickled. The compute
study's arms ship their measured curves as JSON. The manifest lists every file with its
sha256, size, kind, its place in the record (``slot``, e.g. ``t2i/scratch_full/seed0``), the
retrain stage that made it, the hash and the config it covers, and how it was trained.

:func:`find` is the first place the artifact cache looks (:func:`nuwa_lib.utils.cache.fetch`):
a file is used only when its hash is the one the caller asks for and its bytes are the ones
the manifest lists; a missing, truncated or altered file raises :class:`WeightsError` naming
it. :func:`mismatch` says when the record holds a model for the same place under another hash
(a changed profile): the cache raises that rather than train silently. ``nuwa-repro --retrain``
(``NUWA_RETRAIN``) sets stages aside, so their models are trained afresh and :func:`ship`
writes them back.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .checkpoint import CheckpointError, canonical, read_payload, save_safetensors
from .files import atomic_path, write_json
from .paths import REPO_ROOT, resolve

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "nuwa-weights-manifest"
MANIFEST_VERSION = 1
RETRAIN_ENV = "NUWA_RETRAIN"          # comma-separated stages being retrained, or "all"
MISSING_ENV = "NUWA_RETRAIN_MISSING"  # stages being completed: their shipped models kept
PARTIAL = "partial"                   # the folder of parked training (nuwa_lib.utils.parked)


class WeightsError(CheckpointError):
    """A shipped weight that cannot be used: missing, altered, or made for another config."""


def weights_dir(profile: str) -> Path:
    """``results/<profile>/weights/`` of the repository; ``NUWA_WEIGHTS_DIR`` replaces the
    ``results`` folder (tests; the shipped set is read from the repository, not from where a
    run writes its tables)."""
    env = os.environ.get("NUWA_WEIGHTS_DIR")
    base = resolve(env) if env else REPO_ROOT / "results"
    return base / profile / "weights"


@dataclass(frozen=True)
class Spec:
    """What the artifact cache asks the shipped set for: a model of ``kind`` (the cache's
    folder: judges, vqgan, nuwa, study) named ``name`` under ``hash``, whose hash covers
    ``key``; ``slot`` is its place in the record, when it has one."""
    profile: str
    kind: str
    name: str
    hash: str
    key: Mapping[str, Any] = field(default_factory=dict, compare=False)
    slot: str | None = None
    suffix: str = ".safetensors"

    @property
    def file(self) -> str:
        """The file's path inside the weights folder (as in the manifest)."""
        return f"{self.kind}/{self.name}-{self.hash}{self.suffix}"


# --------------------------------------------------------------------------- manifest
_MANIFESTS: dict = {}      # path -> (mtime_ns, manifest)
_VERIFIED: dict = {}       # path -> (size, mtime_ns) of files whose sha256 was checked


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(profile: str) -> dict:
    """The profile's manifest (``{"files": {}}`` when it ships none), read once per change."""
    path = weights_dir(profile) / MANIFEST
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "profile": profile,
                "files": {}}
    cached = _MANIFESTS.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise WeightsError(f"{path}: cannot read the weights manifest ({err})") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT \
            or not isinstance(data.get("files"), dict):
        raise WeightsError(f"{path}: not a weights manifest (format {data.get('format')!r}, "
                           f"wanted {MANIFEST_FORMAT!r})" if isinstance(data, dict) else
                           f"{path}: not a weights manifest")
    _MANIFESTS[path] = (stamp, data)
    return data


def retraining() -> frozenset:
    """The stages being retrained (``NUWA_RETRAIN``): their shipped models are set aside."""
    return frozenset(s.strip() for s in os.environ.get(RETRAIN_ENV, "").split(",") if s.strip())


def _set_aside(entry: Mapping) -> bool:
    stages = retraining()
    return "all" in stages or entry.get("stage") in stages


def _completing(entry: Mapping) -> bool:
    """Whether ``entry``'s stage is being completed (``--retrain --missing``): a model it
    ships under another hash is about to be replaced, not an error."""
    stages = {s.strip() for s in os.environ.get(MISSING_ENV, "").split(",") if s.strip()}
    return "all" in stages or entry.get("stage") in stages


def check_file(profile: str, file: str, entry: Mapping) -> Path:
    """The shipped ``file`` after checking its size and sha256 against the manifest's
    ``entry`` (once per process while the file is unchanged); :class:`WeightsError` names a
    missing, truncated or altered file."""
    path = weights_dir(profile) / file
    how = "restore it with `git checkout -- results/` or retrain it (`nuwa-repro --retrain " \
          f"{entry.get('stage', '<stage>')}`)"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise WeightsError(f"{path}: shipped weight listed in the manifest is missing; "
                           f"{how}") from None
    stamp = (st.st_size, st.st_mtime_ns)
    if _VERIFIED.get(path) == stamp:
        return path
    if st.st_size != entry.get("bytes"):
        raise WeightsError(f"{path}: shipped weight is {st.st_size} bytes, the manifest says "
                           f"{entry.get('bytes')} (truncated or replaced); {how}")
    got = sha256(path)
    if got != entry.get("sha256"):
        raise WeightsError(f"{path}: shipped weight's sha256 {got[:12]}… differs from the "
                           f"manifest's {str(entry.get('sha256'))[:12]}… (altered); {how}")
    _VERIFIED[path] = stamp
    return path


def find(spec: Spec) -> Path | None:
    """The verified shipped file of ``spec`` (same kind, name and hash), or None when the
    profile ships none (or its stage is being retrained)."""
    entry = manifest(spec.profile)["files"].get(spec.file)
    if entry is None or _set_aside(entry):
        return None
    return check_file(spec.profile, spec.file, entry)


def _flat(obj, prefix="") -> dict:
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def differing_keys(shipped: Mapping, wanted: Mapping) -> list[str]:
    """``key: shipped -> wanted`` for each (dotted) config key whose values differ."""
    a, b = _flat(canonical(shipped)), _flat(canonical(wanted))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def mismatch(spec: Spec) -> str | None:
    """When the record ships a model for ``spec.slot`` under another hash: a message naming
    the file, the config keys that differ and how to retrain; else None."""
    if spec.slot is None:
        return None
    for file, entry in manifest(spec.profile)["files"].items():
        if entry.get("slot") == spec.slot and file != spec.file and not _set_aside(entry) \
                and not _completing(entry):
            keys = differing_keys(entry.get("key") or {}, spec.key) or ["(the code version)"]
            shown = len(keys) if len(keys) <= 8 else 8
            return (f"{weights_dir(spec.profile) / file}: the shipped {spec.slot} was made for "
                    f"another config (hash {entry.get('hash')}, wanted {spec.hash}); differing "
                    f"keys: {'; '.join(keys[:shown])}{' …' if len(keys) > shown else ''}. "
                    f"Retrain it with `nuwa-repro --profile {spec.profile} --retrain "
                    f"{entry.get('stage', '<stage>')}` (or `make retrain`), or restore the "
                    f"profile")
    return None


# --------------------------------------------------------------------------- shipping
def thin(history, every: int) -> list:
    """Every ``every``-th entry of a training history (the ``every``-th, ``2 every``-th, ...
    step) and the last: what a shipped file keeps of a long history."""
    history = list(history)
    return [h for i, h in enumerate(history) if (i + 1) % every == 0 or i == len(history) - 1]


def ship(spec: Spec, source, *, stage: str, record: Mapping[str, Any],
         dtype: str | None = None, history_every: int | None = None) -> dict:
    """Copy the cached artifact ``source`` into the shipped set as ``spec.file`` and list it
    in the manifest (written atomically, after the file). ``record`` holds how it was trained
    (steps, wall time, threads, machine, commit, losses); ``history_every`` keeps every n-th
    step of the file's training history (:func:`thin`; the weights are untouched). Returns
    the manifest entry."""
    root = weights_dir(spec.profile)
    dest = root / spec.file
    if spec.suffix == ".safetensors":
        payload = read_payload(source)
        if history_every and payload.get("history"):
            payload["history"] = thin(payload["history"], history_every)
        save_safetensors(dest, payload, dtype)
    else:
        with atomic_path(dest) as tmp:
            tmp.write_bytes(Path(source).read_bytes())
    entry = {"kind": spec.kind, "name": spec.name, "slot": spec.slot, "stage": stage,
             "hash": spec.hash, "sha256": sha256(dest), "bytes": dest.stat().st_size,
             "dtype": dtype or ("float32" if spec.suffix == ".safetensors" else None),
             **canonical(dict(record)), "key": canonical(dict(spec.key))}
    data = manifest(spec.profile)
    files = {f: e for f, e in data["files"].items()
             if f != spec.file and not (spec.slot and e.get("slot") == spec.slot)}
    for old in set(data["files"]) - set(files) - {spec.file}:
        (root / old).unlink(missing_ok=True)          # the file that slot held before
    files[spec.file] = entry
    # the model is shipped: what an unfinished retrain parked for it goes (utils.parked)
    parked = {f: e for f, e in (data.get("partial") or {}).items()
              if not f.startswith(f"{PARTIAL}/{spec.kind}/{spec.name}-{spec.hash}.")}
    for gone in set(data.get("partial") or {}) - set(parked):
        (root / gone).unlink(missing_ok=True)
    write_manifest(spec.profile, {**data, "files": dict(sorted(files.items())),
                                  **({"partial": parked} if "partial" in data else {})})
    return entry


def write_manifest(profile: str, data: Mapping[str, Any]) -> Path:
    path = weights_dir(profile) / MANIFEST
    data = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "profile": profile,
            **{k: v for k, v in data.items() if k not in ("format", "version", "profile")}}
    data["total_bytes"] = sum(int(e.get("bytes") or 0) for e in data["files"].values())
    write_json(path, data)
    _MANIFESTS.pop(path, None)
    return path


def drop(profile: str, files: Iterable[str]) -> None:
    """Remove shipped files (and their manifest entries)."""
    data = manifest(profile)
    gone = set(files)
    for f in gone:
        (weights_dir(profile) / f).unlink(missing_ok=True)
    write_manifest(profile, {**data, "files": {f: e for f, e in data["files"].items()
                                               if f not in gone}})


def verify(profile: str) -> list[str]:
    """Every problem of the profile's shipped set (its parked training states included):
    files listed but missing, truncated or altered; files in the folder the manifest does not
    list. Empty when all is well."""
    problems = []
    root = weights_dir(profile)
    data = manifest(profile)
    files = {**data["files"], **(data.get("partial") or {})}   # parked training states too
    for file, entry in files.items():
        try:
            check_file(profile, file, entry)
        except WeightsError as err:
            problems.append(str(err))
    if root.is_dir():
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and rel != MANIFEST and rel not in files:
                problems.append(f"{p}: in the weights folder but not in the manifest")
    return problems
