"""The repository's promises about itself: install files agree, notebooks are clean."""
import json
import re
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


def test_torch_is_pinned_in_both_install_files():
    pyproject = (ROOT / "pyproject.toml").read_text()
    env = (ROOT / "environment.yml").read_text()
    for text in (pyproject, env):
        assert "torch==2.14.1" in text and "torchvision==0.29.1" in text


def test_readme_opens_with_the_two_commands():
    lines = [l.strip() for l in (ROOT / "README.md").read_text().splitlines()]
    first_code = [l for l in lines[: lines.index("```", lines.index("```") + 1)] if l.startswith("make")]
    assert first_code == ["make reproduce", "make test"]


@pytest.mark.parametrize("nb", notebook_order())
def test_notebook_sources_are_committed_without_outputs(nb):
    cells = json.loads((ROOT / "notebooks" / f"{nb}.ipynb").read_text())["cells"]
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
