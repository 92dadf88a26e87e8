"""The machine a run uses: the cores this process may run on, and the worker processes and
torch threads that follow them.

A profile section's ``workers`` (runs trained at once, one process each) may be a number or
``auto``: as many workers as the cores allow at the section's ``threads`` each. ``threads``
(torch threads per run) stays the profile's number: a run's numbers do not depend on how many
runs share the machine, but they may round differently with another thread count, so the
record keeps one. ``NUWA_WORKERS`` and ``NUWA_THREADS`` (``nuwa-repro --workers`` /
``--threads`` set them, and the notebooks' kernels inherit them) override both everywhere.
:func:`device` says where NÜWA trains and samples (``device: auto`` in the profile, or
``NUWA_DEVICE`` / ``--device``): a CUDA GPU when there is one.
:func:`fit` applies all of it to a loaded profile (:func:`nuwa_lib.utils.profiles.load_profile`
calls it), so the notebooks, ``nuwa-repro`` and ``make retrain`` see plain numbers.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

WORKERS_ENV = "NUWA_WORKERS"
THREADS_ENV = "NUWA_THREADS"
DEVICE_ENV = "NUWA_DEVICE"
DEVICES = ("auto", "cpu", "cuda")


def cores() -> int:
    """The cores this process may run on (its CPU affinity, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def whole(where: str, value) -> int:
    """``value`` as a whole number >= 1 (digits in a string too); ValueError naming ``where``."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        auto = " or 'auto'" if "workers" in where.lower() else ""
        raise ValueError(f"{where} must be a whole number >= 1{auto}, got {value!r}")
    return value


def threads(value=None, where: str = "threads") -> int:
    """Torch threads per run: ``NUWA_THREADS`` when set, else ``value`` (default 1)."""
    env = os.environ.get(THREADS_ENV)
    if env:
        return whole(THREADS_ENV, env)
    return 1 if value is None else whole(where, value)


def workers(value="auto", per_run: int = 1, where: str = "workers") -> int:
    """Worker processes: ``NUWA_WORKERS`` when set, else ``value``; ``auto`` (or None) is the
    cores divided by the threads ``per_run``, at least 1."""
    env = os.environ.get(WORKERS_ENV)
    if env and env != "auto":
        return whole(WORKERS_ENV, env)
    if value is None or value == "auto" or env == "auto":
        return max(1, cores() // max(1, per_run))
    return whole(where, value)


def device(value=None) -> str:
    """Where NÜWA trains and samples: ``NUWA_DEVICE`` when set, else ``value`` (the profile's
    ``device``; default ``auto``): ``auto`` is ``cuda`` when PyTorch sees a GPU, else ``cpu``.
    Asking for ``cuda`` (or ``cuda:N``) without one is an error naming it."""
    want = os.environ.get(DEVICE_ENV) or value or "auto"
    if not isinstance(want, str) or not (want in DEVICES or want.startswith("cuda:")
                                         and want[5:].isdigit()):
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {want!r}")
    import torch

    if want == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {want!r} asked for ({DEVICE_ENV} or the profile's device), but "
                         f"this PyTorch sees no CUDA GPU; use device: auto or cpu")
    return want


def fit(cfg: Mapping[str, Any]) -> dict:
    """``cfg`` with every section's ``threads`` and ``workers`` resolved to numbers."""
    out = dict(cfg)
    for name, section in cfg.items():
        if not isinstance(section, Mapping) or not {"threads", "workers"} & set(section):
            continue
        section = dict(section)
        if "threads" in section:
            section["threads"] = threads(section["threads"], f"{name}.threads")
        if "workers" in section:
            section["workers"] = workers(section["workers"], section.get("threads") or 1,
                                         f"{name}.workers")
        out[name] = section
    return out
