"""Progress bars: on a terminal a person watches, or into the file the pipeline watches.

Every long loop of the library (judges, tokenizers, NÜWA training, tokenizing data, sampling,
the study's arms) draws its bar with :func:`bar`. Where it goes:

* ``NUWA_PROGRESS_FILE`` set (``nuwa-repro`` sets it for the kernels and the worker processes
  it starts, unless run with ``--no-progress``): text bars appended to ``<that file>.<pid>``,
  one file per process, which the pipeline's own bar reads back (:func:`running`) to show the
  trainings running at once (one per worker) and their steps. Nothing reaches the notebook's
  outputs, so the checked cells stay clean;
* otherwise: on stderr when it is a terminal, never under CI.
"""
from __future__ import annotations

import atexit
import functools
import os
import sys
from pathlib import Path

ENV = "NUWA_PROGRESS_FILE"


def enabled(progress=True) -> bool:
    """Whether a bar asked for with ``progress`` is drawn anywhere."""
    if not progress:
        return False
    if os.environ.get(ENV):
        return True
    return not os.environ.get("CI") and sys.stderr.isatty()


def for_workers() -> bool:
    """The ``progress`` a worker process should pass: bars only into the pipeline's file (on
    a terminal, several processes' bars would overwrite each other and the caller's)."""
    return bool(os.environ.get(ENV))


@functools.lru_cache(maxsize=4)
def _open(path: str):
    """One append handle per file and process, closed when the process exits."""
    fh = open(path, "a", encoding="utf-8", buffering=1)
    atexit.register(fh.close)
    return fh


def bar(iterable=None, *, progress=True, **kwargs):
    """A plain-text ``tqdm`` bar (never a notebook widget) where :func:`enabled` says."""
    from tqdm import tqdm

    path = os.environ.get(ENV)
    stream = _open(f"{path}.{os.getpid()}") if path else sys.stderr
    kwargs.setdefault("mininterval", 1.0 if path else 0.1)
    return tqdm(iterable, file=stream, disable=not enabled(progress), **kwargs)


def latest(path, width: int = 72) -> str:
    """The last bar state written to ``path`` (its last line or carriage-return update),
    shortened to ``width`` characters; "" when there is none or the last bar cleared itself
    (``leave=False``: a blank update)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    parts = tail.replace("\r", "\n").split("\n")
    while parts and parts[-1] == "":
        parts.pop()
    last = parts[-1].strip() if parts else ""
    return last if len(last) <= width else last[: width - 1] + "…"


def files(path) -> list:
    """The per-process files of the progress file ``path``, the most recently written first."""
    found = []
    for p in Path(path).parent.glob(f"{Path(path).name}.*"):
        try:
            found.append((p.stat().st_mtime_ns, p))
        except OSError:          # finished and removed meanwhile
            pass
    return [p for _, p in sorted(found, reverse=True)]


def running(path, width: int = 72) -> str:
    """The bars drawing now, one per process (the most recent first), joined by " | " and
    shortened to ``width``: what runs at once, e.g. two tokenizers in two workers."""
    shown = [b for b in (latest(p, width) for p in files(path)) if b]
    text = " | ".join(shown)
    return text if len(text) <= width else text[: width - 1] + "…"
