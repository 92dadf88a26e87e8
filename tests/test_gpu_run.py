"""benchmarks/gpu_run.py, the one prepared GPU run, in its --dry-run: every part on the CPU
with tiny shapes (Triton interpreted), so the script is known to work before a GPU is lent."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("checks", "benchmark", "choice", "paper_step", "retrain_stage", "autotune", "pytest")


def _run(out: Path, *extra) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_run.py"), "--dry-run",
                           "--out", str(out), *extra], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "attention_gpu.json").read_text())


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("gpu_run"))


def test_dry_run_runs_every_part(record):
    assert record["dry_run"] is True
    assert {p: record["parts"][p]["status"] for p in PARTS} == {p: "ok" for p in PARTS}
    assert record["versions"]["torch"] and record["versions"]["triton"]
    assert "git_sha" in record["provenance"] or "error" in record["provenance"]


def test_dry_run_checks_the_kernels_in_both_precisions(record):
    checks = record["parts"]["checks"]
    for dtype in ("float32", "bfloat16"):
        assert checks[dtype]["ok"] and {r["backend"] for r in checks[dtype]["rows"]} == {"triton"}
    pytest_part = record["parts"]["pytest"]["result"]
    assert pytest_part == "not run: No module named 'hypothesis'" or pytest_part["returncode"] == 0


def test_dry_run_benchmark_gates_every_method_on_the_reference(record):
    bench = record["parts"]["benchmark"]
    assert set(bench["methods"]) == {"triton", "flex", "masked_sdpa", "flash_sdpa_full_causal"}
    for name, res in bench["methods"].items():
        assert res["status"] == "ok" and res["check"]["ok"], name
        assert res["fwd_ms"] > 0 and res["useful_tflops"]["fwd"] > 0
    assert "fwd_bwd_ms" not in bench["methods"]["flex"]  # no FlexAttention backward on CPU
    assert bench["case"]["attended_pairs_per_head"] < bench["case"]["dense_causal_pairs_per_head"]


def test_dry_run_choice_is_one_the_library_accepts(record, tmp_path):
    from nuwa_lib.attention.gpu_choice import read_choice
    tuned = record["parts"]["autotune"]["configs"]
    assert all(c["status"] == "ok" and c["fwd_bwd_ms"] > 0 for c in tuned)
    path = tmp_path / "attention_gpu.json"
    path.write_text(json.dumps(record))
    assert read_choice(path)["source"].startswith("default: ")  # a dry run measures nothing
    path.write_text(json.dumps({**record, "dry_run": False}))
    choice = read_choice(path)
    assert choice["backend"] in ("triton", "flex")
    if choice["backend"] == "triton":
        assert list(choice["blocks"]) in [c["blocks"] for c in tuned]


def test_dry_run_paper_step_reports_throughput_per_batch(record):
    step = record["parts"]["paper_step"]
    assert [r["batch"] for r in step["batches"]] == [1, 2]
    assert all(r["target_tokens_per_s"] > 0 for r in step["batches"])
    assert step["largest_batch_that_fits"] == 2


def test_a_spent_budget_skips_parts_and_still_writes_the_record(tmp_path):
    record = _run(tmp_path, "--budget-s", "0")
    for part in ("checks", "benchmark", "paper_step", "autotune", "pytest"):
        assert record["parts"][part]["status"].startswith("skipped: 0 s left of the budget"), part
    assert record["parts"]["choice"]["status"] == \
        "failed: RuntimeError: no correct, timed backend to choose from"
    assert "choice" not in record
    assert "choice" not in record


def test_dry_run_times_a_retrain_stage_step(record):
    part = record["parts"]["retrain_stage"]
    assert part["profile"] == "smoke" and sorted(part["tasks"]) == ["T2I", "T2V", "V2V"]
    assert part["device_step_s"] > 0 and part["cpu_step_s"] is None   # smoke ships nothing
