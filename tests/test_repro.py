import json

import pandas as pd
import pytest

from nuwa_lib import repro
from nuwa_lib.utils.paths import results_dir


def test_tables_are_data_only_and_byte_identical_across_writes(tmp_path):
    out = repro.Results("smoke", 0, tmp_path, notebook="nb")
    df = pd.DataFrame({"row": ["a", "b"], "value": [1 / 3, 2.0]})
    path = out.table("demo", df)
    first = path.read_bytes()
    out.table("demo", df)
    assert path.read_bytes() == first
    assert first.decode().splitlines() == ["row,value", "a,0.333333", "b,2"]
    side = json.loads((tmp_path / "tables" / "demo.provenance.json").read_text())
    assert side["profile"] == "smoke" and side["rows"] == 2 and side["notebook"] == "nb"


def test_metrics_carry_provenance(tmp_path):
    out = repro.Results("smoke", 1, tmp_path)
    data = json.loads(out.metrics("m", {"x": 1.5}).read_text())
    assert data["metrics"] == {"x": 1.5} and data["provenance"]["seed"] == 1


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden"])
def test_result_names_must_be_plain_stems(tmp_path, bad):
    with pytest.raises(ValueError, match="result name"):
        repro.Results("smoke", 0, tmp_path).table(bad, pd.DataFrame({"a": [1]}))


def test_start_seeds_and_honours_results_override(tmp_path, monkeypatch):
    monkeypatch.setenv("NUWA_RESULTS_DIR", str(tmp_path))
    cfg, out = repro.start("smoke", notebook="x")
    assert cfg["name"] == "smoke" and out.seed == cfg["seed"]
    assert out.root == tmp_path / "smoke" == results_dir("smoke")


def test_start_rejects_parameters_of_another_profile():
    with pytest.raises(ValueError, match="profile"):
        repro.start("smoke", params={"name": "mini", "seed": 0})


def test_section_sets_the_threads_it_names():
    import torch

    from nuwa_lib import repro

    before = torch.get_num_threads()
    try:
        assert repro.section({"t2i": {"steps": 3, "threads": 1}}, "t2i")["steps"] == 3
        assert torch.get_num_threads() == 1
        with pytest.raises(KeyError, match="no section 'v2v'"):
            repro.section({"name": "smoke"}, "v2v")
    finally:
        torch.set_num_threads(before)
