import json

import pandas as pd
import pytest
import torch

from nuwa_lib import repro
from nuwa_lib.utils.paths import results_dir


def test_same_seed_gives_same_random_numbers():
    repro.seed_everything(3)
    a = torch.rand(4), torch.randn(2)
    repro.seed_everything(3)
    b = torch.rand(4), torch.randn(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("bad", [-1, 1.5, "0", None, True])
def test_seed_must_be_a_non_negative_integer(bad):
    with pytest.raises(ValueError, match="seed"):
        repro.seed_everything(bad)


def test_provenance_names_commit_versions_profile_and_seed():
    p = repro.provenance("smoke", 7)
    for key in ("git_sha", "git_dirty", "python", "torch", "triton", "nuwa_lib", "utc_time"):
        assert key in p
    assert p["profile"] == "smoke" and p["seed"] == 7
    assert p["torch"].startswith("2.14.1")


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


def test_interrupted_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "t.json"
    repro.write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        repro.write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_start_seeds_and_honours_results_override(tmp_path, monkeypatch):
    monkeypatch.setenv("NUWA_RESULTS_DIR", str(tmp_path))
    cfg, out = repro.start("smoke", notebook="x")
    assert cfg["name"] == "smoke" and out.seed == cfg["seed"]
    assert out.root == tmp_path / "smoke" == results_dir("smoke")


def test_start_rejects_parameters_of_another_profile():
    with pytest.raises(ValueError, match="profile"):
        repro.start("smoke", params={"name": "mini", "seed": 0})


def test_written_results_are_readable_by_others(tmp_path):
    path = repro.write_json(tmp_path / "m.json", {"a": 1})
    assert path.stat().st_mode & 0o044 == 0o044
