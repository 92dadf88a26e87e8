"""Atomic files: every file the library writes goes to a temporary file beside its target and
is renamed over it, so a reader never sees half a file and an interrupted write (an
exception, a killed process) leaves the old file, or none, and no temporary one behind.

:func:`atomic_path` is the one way to do it (checkpoints write through it with
``torch.save``); :func:`atomic_write_bytes` and :func:`write_json` are its two common uses.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """A temporary path in ``path``'s folder (created, empty) to write to: renamed over
    ``path`` when the block ends, removed when it raises. The folder is created first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename, so a reader
    never sees half a file and an interrupted run leaves the old one intact."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def write_json(path: Path, obj: Any) -> Path:
    """``obj`` as indented JSON (NumPy scalars and arrays, paths allowed), written atomically."""
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
