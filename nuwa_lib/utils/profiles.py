"""Profiles: every size and step knob lives in ``profiles/<name>.yaml``.

``smoke`` exercises every code path in minutes (CI), ``mini`` is the toy-scale
reproduction, ``paper`` holds the paper's configuration (Sec. 4.1).
"""
from __future__ import annotations

from typing import Any

import yaml

from . import machine
from .paths import PROFILES_DIR


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str) -> dict[str, Any]:
    """The profile as a plain dict (``name`` always set to the profile's name), its sections'
    ``workers`` and ``threads`` fitted to this machine (:func:`nuwa_lib.utils.machine.fit`)."""
    valid = available_profiles()
    if name not in valid:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(valid)}")
    path = PROFILES_DIR / f"{name}.yaml"
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: a profile must be a mapping of parameters")
    if "seed" not in cfg:
        raise ValueError(f"{path}: missing required key 'seed'")
    cfg["name"] = name
    return machine.fit(cfg)
