"""nuwa-repro: names, errors, failing cells, the --seed override."""
import json

import nbformat
import pytest

from nuwa_lib import pipeline
from nuwa_lib.pipeline import PipelineError


def test_unknown_profile_is_one_line_listing_valid_profiles(capsys):
    assert pipeline.main(["--profile", "huge", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "huge" in err and "smoke" in err and "mini" in err and "paper" in err


def test_unknown_notebook_lists_valid_notebooks(capsys):
    assert pipeline.main(["--profile", "smoke", "--only", "99_nope", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "99_nope" in err and "00_shapes_world" in err


def test_notebooks_can_be_named_by_number_or_name():
    order = pipeline.notebook_order()
    assert order[0] == "00_shapes_world"
    for name in ("00", "0", "shapes_world", "00_shapes_world", "00_shapes_world.ipynb"):
        assert pipeline.resolve_notebook(name, order) == "00_shapes_world"
    assert pipeline.select_notebooks(start="00") == order
    assert pipeline.select_notebooks(skip=["14"]) == [nb for nb in order if nb[:2] != "14"]
    assert pipeline.select_notebooks(start="13", skip=["14"]) == \
        [nb for nb in order if nb[:2] >= "13" and nb[:2] != "14"]
    with pytest.raises(pipeline.PipelineError, match="unknown notebook"):
        pipeline.select_notebooks(skip=["99"])


def test_list_prints_notebooks_in_order(capsys):
    assert pipeline.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert out.index("00_shapes_world") < out.index("profiles:")


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('PROFILE = "mini"\nPARAMS = None\nRESULTS = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def fake_notebooks(tmp_path, monkeypatch):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", nbdir)
    # run() exports the results folder for its kernels; keep that out of other tests
    monkeypatch.setenv("NUWA_RESULTS_DIR", str(tmp_path / "unused"))
    return nbdir


def test_failing_cell_is_named_and_pipeline_stops(fake_notebooks, tmp_path):
    _notebook(fake_notebooks / "00_ok.ipynb", "print(PROFILE)")
    _notebook(fake_notebooks / "01_bad.ipynb", "x = 1", "1 / 0")
    _notebook(fake_notebooks / "02_never.ipynb", "print('should not run')")
    out = tmp_path / "res"
    with pytest.raises(PipelineError) as info:
        pipeline.run("smoke", out=str(out), show_progress=False)
    msg = str(info.value)
    assert "01_bad" in msg and "ZeroDivisionError" in msg and "cell 3" in msg
    nbs = out / "smoke" / "notebooks"
    assert (nbs / "00_ok.ipynb").exists() and (nbs / "01_bad.failed.ipynb").exists()
    assert not (nbs / "01_bad.ipynb").exists() and not (nbs / "02_never.ipynb").exists()
    executed = nbformat.read(nbs / "00_ok.ipynb", as_version=4)
    assert any("smoke" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    runtimes = json.loads((out / "smoke" / "metrics" / "runtimes.json").read_text())
    assert set(runtimes["metrics"]) == {"00_ok"}


def test_seed_override_reaches_the_notebooks(fake_notebooks, tmp_path):
    _notebook(fake_notebooks / "00_seed.ipynb", "print('seed', PARAMS['seed'])")
    out = tmp_path / "res"
    pipeline.run("smoke", out=str(out), show_progress=False, seed=7)
    executed = nbformat.read(out / "smoke" / "notebooks" / "00_seed.ipynb", as_version=4)
    assert any("seed 7" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    with pytest.raises(PipelineError, match="--seed"):
        pipeline.run("smoke", out=str(out), show_progress=False, seed=-1)


def test_runtimes_drop_notebooks_that_no_longer_exist(fake_notebooks, tmp_path):
    _notebook(fake_notebooks / "00_ok.ipynb", "x = 1")
    out = tmp_path / "res"
    metrics = out / "smoke" / "metrics"
    metrics.mkdir(parents=True)
    (metrics / "runtimes.json").write_text(json.dumps({"metrics": {"00_ok": 9.0, "14_old": 5.0}}))
    pipeline.run("smoke", out=str(out), show_progress=False)
    runtimes = json.loads((metrics / "runtimes.json").read_text())["metrics"]
    assert set(runtimes) == {"00_ok"} and runtimes["00_ok"] != 9.0
