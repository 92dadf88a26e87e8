"""Checkpoints: written atomically, read back with a check of what they claim to hold.

Every trained thing of the project (judges, visual tokenizers, NÜWA models and their
training state) is a ``torch.save``'d dict with a ``format`` tag and the config it was
made with; the shipped weights hold the same dict as safetensors (:func:`save_safetensors`),
and :func:`load` reads either. :func:`save` writes to a temporary file and renames it, so
a reader never sees half a checkpoint and an interrupted write leaves nothing behind.
:func:`load` reads it back and raises :class:`CheckpointError` naming the file and what
does not match: an unreadable file, another format, or another config.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from .files import atomic_path


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: corrupt, of another kind, or for another config."""


def canonical(obj):
    """``obj`` as it reads back from JSON (tuples become lists): how configs are compared."""
    return json.loads(json.dumps(obj))


def save(path, payload: Mapping[str, Any]) -> Path:
    """``torch.save`` to a temp file in the same folder, then rename over ``path``
    (:func:`nuwa_lib.utils.files.atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return path


DTYPES = ("float32", "float16", "bfloat16")


def cast_floats(state: Mapping[str, torch.Tensor], dtype: str) -> dict:
    """``state`` with its floating tensors as ``dtype`` (one of :data:`DTYPES`)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    cast = getattr(torch, dtype)
    return {k: v.to(cast) if v.is_floating_point() else v for k, v in state.items()}


def save_safetensors(path, payload: Mapping[str, Any], dtype: str | None = None) -> Path:
    """A checkpoint payload as safetensors: ``payload["state_dict"]``'s tensors (floating
    ones cast to ``dtype`` when given), the rest as JSON under the header key ``payload``."""
    from safetensors.torch import save_file

    state = cast_floats(payload["state_dict"], dtype) if dtype else payload["state_dict"]
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    rest = {k: v for k, v in payload.items() if k != "state_dict"}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"payload": json.dumps(canonical(rest))})
    return Path(path)


def read_safetensors(path) -> dict:
    """The payload :func:`save_safetensors` wrote (tensors back under ``state_dict``)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    payload = json.loads(meta["payload"])
    if not isinstance(payload, dict):
        raise ValueError("the header's payload is not a JSON object")
    return {**payload, "state_dict": state}


def read_payload(path) -> dict:
    """The payload of a checkpoint file: safetensors (by suffix) or ``torch.load`` (tensors
    only, no arbitrary objects)."""
    if os.fspath(path).endswith(".safetensors"):
        return read_safetensors(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _describe(key, got, want) -> str:
    if isinstance(got, dict) and isinstance(want, dict):
        diffs = [f"{k}: file {got.get(k)!r} != wanted {want.get(k)!r}"
                 for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
        return f"{key}: " + ", ".join(diffs)
    return f"{key}: file {got!r} != wanted {want!r}"


def load(path, fmt: str, expect: Mapping[str, Any] | None = None, *, what: str = "checkpoint",
         hint: str = "", error: type = CheckpointError) -> dict:
    """The payload of the checkpoint at ``path``, after checking that it is readable, that
    its ``format`` is ``fmt`` and that each ``expect`` entry equals the stored one (compared
    in JSON form). A missing file raises ``FileNotFoundError``; anything else wrong raises
    :class:`CheckpointError` (or its subclass ``error``) naming the file, the mismatch and
    ``hint`` (what to do)."""
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no {what} there")
    try:
        payload = read_payload(path)
    except Exception as err:  # noqa: BLE001 - any unreadable file is "corrupt"
        raise error(f"{path}: cannot read the {what} ({type(err).__name__}: "
                              f"{err}){tail}") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise error(f"{path}: not a {what} (format {got!r}, wanted {fmt!r}){tail}")
    for key, want in (expect or {}).items():
        want = canonical(want)
        got = payload.get(key)
        if got != want:
            raise error(f"{path}: {what} does not match ({_describe(key, got, want)})"
                                  f"{tail}")
    return payload


def load_state(path, module: torch.nn.Module, state: Mapping, what: str,
               error: type = CheckpointError) -> torch.nn.Module:
    """``module.load_state_dict(state)``, with a mismatch reported as a
    :class:`CheckpointError` naming the file."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as err:
        raise error(f"{path}: weights do not fit the {what}: "
                              f"{str(err).splitlines()[0]}") from None
    return module
