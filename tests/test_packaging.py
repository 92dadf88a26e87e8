"""The repository's promises about itself: install files agree, notebooks are clean."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib
import yaml

from nuwa_lib.pipeline import notebook_order
from nuwa_lib.utils.profiles import available_profiles, load_profile

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r) for r in pip_section if not r.startswith("-")}
    assert listed == wanted


# What CI tests: the exact pins of constraints.txt (the CPU build, and the Triton it requires).
CI_PINS = {"torch": "2.14.1", "torchvision": "0.29.1", "triton": "3.8.0"}
# The version on the GPU machines the project may be lent; pyproject's range must hold it.
GPU_MACHINES = {"torch": "2.11.0", "torchvision": "0.26.0"}


def _pins(lines) -> dict:
    """name -> version of the ``name==version`` lines (comments and blank lines skipped)."""
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_name(name)] = version.strip()
    return pins


def _release(version: str) -> tuple:
    return tuple(int(part) for part in re.match(r"\d+(?:\.\d+)*", version).group().split("."))


def _contains(spec: str, version: str) -> bool:
    """Whether ``version`` satisfies the specifier ``spec`` (e.g. ">=2.11,<2.15")."""
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:     # the plain release comparisons pyproject.toml uses
        ops = {">=": tuple.__ge__, "<=": tuple.__le__, ">": tuple.__gt__, "<": tuple.__lt__,
               "==": tuple.__eq__, "!=": tuple.__ne__}
        for clause in filter(None, (c.strip() for c in spec.split(","))):
            op, bound = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*(\S+)", clause).groups()
            a, b = _release(version), _release(bound)
            n = max(len(a), len(b))
            if not ops[op](a + (0,) * (n - len(a)), b + (0,) * (n - len(b))):
                return False
        return True
    return SpecifierSet(spec).contains(version)


def test_ci_versions_are_pinned_in_constraints_txt_and_environment_yml():
    assert _pins((ROOT / "constraints.txt").read_text().splitlines()) == CI_PINS
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == CI_PINS


def test_pyproject_declares_ranges_that_hold_the_pinned_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {_name(r): r for r in project["dependencies"]}
    for name in ("torch", "torchvision"):
        spec = deps[name][len(name):].strip()
        assert "==" not in spec and "<" in spec, f"{name}: a bounded range, not a pin ({spec!r})"
        assert _contains(spec, CI_PINS[name]), (name, spec)
        assert _contains(spec, GPU_MACHINES[name]), (name, spec)
    assert _contains(">=2.11,<2.15", "2.14.1") and not _contains(">=2.11,<2.15", "2.15.0")


def test_make_installs_with_the_constraints_file(tmp_path):
    makefile = (ROOT / "Makefile").read_text()
    stamp = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.M).group(1).split()
    assert {"pyproject.toml", "constraints.txt"} <= set(stamp)
    if shutil.which("make") is None:
        assert "-c constraints.txt" in makefile
        return
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}

    def pip_lines(*args):
        out = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "venv",
                              f"VENV={tmp_path / 'venv'}", *args], env=env, check=True,
                             capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if "-m pip install" in line]

    default, gpu = pip_lines("GPU=0"), pip_lines("GPU=1")
    assert len(default) == 1 and "-c constraints.txt" in default[0]
    assert len(gpu) == 1 and "constraints.txt" not in gpu[0]   # keeps the installed torch


def test_readme_opens_with_the_two_commands():
    lines = [l.strip() for l in (ROOT / "README.md").read_text().splitlines()]
    start = next(i for i, l in enumerate(lines) if l.startswith("```"))
    block = lines[start + 1: lines.index("```", start + 1)]
    assert block == ["make reproduce", "make test"]


@pytest.mark.parametrize("nb", notebook_order())
def test_notebook_sources_have_cell_ids_and_no_outputs(nb):
    cells = json.loads((ROOT / "notebooks" / f"{nb}.ipynb").read_text())["cells"]
    ids = [c.get("id") for c in cells]     # nbformat 4.5: every cell has a unique id
    assert None not in ids and len(set(ids)) == len(ids)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters' (papermill injects after it)"
    assert "PROFILE = \"mini\"" in "".join(tagged[0]["source"])


def test_every_profile_loads_and_smoke_and_mini_share_their_keys():
    assert set(available_profiles()) >= {"smoke", "mini", "paper"}
    smoke, mini = load_profile("smoke"), load_profile("mini")
    assert smoke.keys() == mini.keys()
    for section in smoke:
        if isinstance(smoke[section], dict):
            assert smoke[section].keys() == mini[section].keys(), section
