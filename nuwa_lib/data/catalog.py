"""A profile's ``data:`` section: which real datasets exist, where each lives (``NUWA_DATA_<NAME>``
or ``root:`` in an override file) and which dataset each task trains on.
"""
from __future__ import annotations

import copy
import inspect
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import tasks as T, world
from .media import _file
from .readers import READERS, Reader

DATA_DEFAULTS = {
    "frames": 10,            # Sec. 4.1: 10 frames ...
    "fps": 2.5,              # ... at 2.5 fps
    "size": None,            # pictures' side; None: the visual tokenizer's canvas
    "seg_classes": "modulo",
    "skip_bad": False,
    "max_samples": None,     # samples tokenized per dataset; None: all
    "tokenizers": None,      # None (the profile's), "untrained", or {visual: FILE, sketch: FILE}
    "tasks": dict(T.PRETRAIN_ROLES),
    "datasets": {},
}


def _merge(base, over):
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def apply_override(cfg: Mapping[str, Any], path) -> dict:
    """The profile with a YAML file merged over it (mappings key by key, anything else
    replaced): dataset roots, any size or step. The profile's name stays."""
    path = _file(Path(path).expanduser(), "override file")
    try:
        over = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if over is None:
        return dict(cfg)
    if not isinstance(over, Mapping):
        raise ValueError(f"{path}: an override must be a mapping of profile sections")
    out = _merge(cfg, {k: v for k, v in over.items() if k != "name"})
    out["name"] = cfg.get("name")
    return out


def data_config(cfg: Mapping[str, Any]) -> dict:
    """The profile's ``data:`` section over :data:`DATA_DEFAULTS`, checked."""
    section = cfg.get("data") or {}
    if not isinstance(section, Mapping):
        raise ValueError("data: must be a mapping")
    unknown = set(section) - set(DATA_DEFAULTS)
    if unknown:
        raise ValueError(f"data: unknown key(s) {sorted(unknown)}; allowed: "
                         f"{', '.join(sorted(DATA_DEFAULTS))}")
    d = {**copy.deepcopy(DATA_DEFAULTS), **copy.deepcopy(dict(section))}
    for name, entry in (d["datasets"] or {}).items():
        if not isinstance(entry, Mapping) or "reader" not in entry:
            raise ValueError(f"data.datasets.{name} must be a mapping with a 'reader' (one of "
                             f"{', '.join(READERS)})")
        world._check(f"data.datasets.{name}.reader", entry["reader"], tuple(READERS))
    return d


def root_variable(name: str) -> str:
    """The environment variable that holds a dataset's root: NUWA_DATA_<NAME>."""
    return "NUWA_DATA_" + "".join(c if c.isalnum() else "_" for c in name.upper())


def dataset_root(name: str, entry: Mapping) -> Path:
    """A dataset's root: ``root:`` of its entry, else its environment variable."""
    var = entry.get("env") or root_variable(name)
    value = entry.get("root") or os.environ.get(var)
    if not value:
        raise ValueError(f"dataset {name!r} has no root: set the environment variable {var} "
                         f"to its folder, or data.datasets.{name}.root in an --override file")
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        origin = f"data.datasets.{name}.root" if entry.get("root") else var
        raise FileNotFoundError(f"{path}: the root of dataset {name!r} (from {origin}) is not a "
                                f"folder")
    return path


def open_dataset(cfg: Mapping[str, Any], name: str, *, size: int | None = None) -> Reader:
    """The reader of dataset ``name`` of the profile's ``data.datasets``."""
    d = data_config(cfg)
    world._check("dataset", name, tuple(d["datasets"]) or ("(none: data.datasets is empty)",))
    entry = d["datasets"][name]
    cls = READERS[entry["reader"]]
    root = dataset_root(name, entry)
    options = {k: v for k, v in entry.items() if k not in ("reader", "root", "env")}
    allowed = (set(inspect.signature(cls.__init__).parameters) |
               set(inspect.signature(Reader.__init__).parameters)) - {"self", "root", "kw", "name"}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"data.datasets.{name}: unknown key(s) {sorted(unknown)} for reader "
                         f"{entry['reader']}; allowed: {', '.join(sorted(allowed))}")
    common = {"frames": d["frames"], "fps": d["fps"], "seg_classes": d["seg_classes"],
              "skip_bad": d["skip_bad"], "size": size or d["size"] or 336}
    return cls(root, name=name, **{**common, **options})


def task_datasets(cfg: Mapping[str, Any], tasks) -> dict:
    """{task: dataset name} from ``data.tasks``."""
    d = data_config(cfg)
    out = {}
    for t in T.task_names(tasks):
        if T.get_task(t).counterfactual:
            raise ValueError(f"task {t} is evaluated zero-shot against counterfactual ground "
                             f"truth that only the Shapes World has; it cannot train on real data")
        out[t] = (d["tasks"] or {}).get(t)
        if not out[t]:
            raise ValueError(f"task {t} has no dataset: set data.tasks.{t} to one of "
                             f"data.datasets ({', '.join(d['datasets']) or 'none defined'})")
    return out
