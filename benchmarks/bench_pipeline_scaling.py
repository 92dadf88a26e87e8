"""How a retrain stage scales with the cores: one stage of several runs retrained at 1 and 2
workers and at 1 and 2 threads per run; writes results/bench/pipeline_scaling.json.

Each setting runs ``nuwa-repro --profile <profile> --retrain <stage> --workers W --threads T``
in a fresh process, from an empty artifact cache, against a scratch copy of the shipped
weights (``NUWA_WEIGHTS_DIR``), so the stage's inputs (judges, tokenizers) come from the
shipped set, the stage's own models are trained from scratch (their token sets included) and
nothing in the repository changes. The settings run one after another on an otherwise idle
machine, each timed by its wall clock. Besides the times, the script checks what the
pipeline promises: the stage's shipped weights are the same tensors at 1 and 2 workers
(threads may round differently, so they are only reported).

From the 1- and 2-worker times it derives the stage's serial share f (Amdahl's law:
speed-up(n) = 1 / (f + (1 - f) / n)) and the speed-up it predicts for more workers: an
estimate beyond the cores measured, which the README applies to `make retrain`.

Usage: python benchmarks/bench_pipeline_scaling.py [--profile mini] [--stage s2i]
       [--settings 1x1 2x1 1x2 2x2]   (workers x threads)
       python benchmarks/bench_pipeline_scaling.py --derive   (recompute the derived numbers
       of the JSON from its measured settings)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nuwa_lib.utils import machine  # noqa: E402
from nuwa_lib.utils.files import write_json  # noqa: E402
from nuwa_lib.utils.provenance import provenance  # noqa: E402


def run_setting(profile: str, stage: str, workers: int, threads: int, scratch: Path) -> dict:
    """One retrain of ``stage`` at ``workers`` x ``threads``: wall seconds and the sha256 of
    each file it shipped."""
    weights_src = ROOT / "results" / profile / "weights"
    base = scratch / f"w{workers}t{threads}"
    shutil.copytree(weights_src, base / "results" / profile / "weights")
    env = dict(os.environ, NUWA_WEIGHTS_DIR=str(base / "results"),
               NUWA_ARTIFACTS_DIR=str(base / "artifacts"))
    for var in (machine.WORKERS_ENV, machine.THREADS_ENV):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "nuwa_lib.pipeline", "--profile", profile, "--retrain", stage,
           "--workers", str(workers), "--threads", str(threads), "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    root = base / "results" / profile / "weights"
    manifest = json.loads((root / "manifest.json").read_text())
    shipped = {f: _weights_hash(root / f) for f, e in manifest["files"].items()
               if e.get("stage") == stage}
    return {"workers": workers, "threads": threads, "seconds": round(seconds, 1),
            "weights": shipped}


def _weights_hash(path: Path) -> str:
    """sha256 of a shipped model's tensors (its header holds the training time, which
    differs from run to run)."""
    import hashlib

    import torch

    from nuwa_lib.utils.checkpoint import read_payload

    state = read_payload(path)["state_dict"]
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


ESTIMATE_CORES = (1, 2, 4, 8, 16)


def derive(rows: list) -> dict:
    """The serial share and the predicted speed-ups, from the 1x1 and 2x1 settings."""
    by = {(r["workers"], r["threads"]): r["seconds"] for r in rows}
    if (1, 1) not in by or (2, 1) not in by:
        return {}
    two = by[(1, 1)] / by[(2, 1)]
    f = min(1.0, max(0.0, 2.0 / two - 1.0))
    return {"serial_share": round(f, 3),
            "estimated_speedup": {str(n): round(1.0 / (f + (1.0 - f) / n), 2)
                                  for n in ESTIMATE_CORES},
            "estimate_note": "Amdahl's law with the serial share of the 1x1 and 2x1 runs; "
                             "beyond 2 workers an estimate, not a measurement"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--stage", default="s2i", help="a stage with several runs (default s2i)")
    ap.add_argument("--settings", nargs="+", default=["1x1", "2x1", "1x2", "2x2"],
                    help="workers x threads, e.g. 2x1")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "pipeline_scaling.json"))
    ap.add_argument("--derive", action="store_true",
                    help="only recompute the derived numbers of --out from its settings")
    args = ap.parse_args(argv)
    if args.derive:
        result = json.loads(Path(args.out).read_text())
        result.update(derive(result["settings"]))
        write_json(Path(args.out), result)
        print(json.dumps({k: result[k] for k in ("serial_share", "estimated_speedup")}))
        return 0
    settings = [tuple(int(v) for v in s.split("x")) for s in args.settings]
    rows = []
    with tempfile.TemporaryDirectory(prefix="nuwa-scaling-") as tmp:
        for workers, threads in settings:
            print(f"retrain {args.stage} at {workers} worker(s) x {threads} thread(s)…", flush=True)
            rows.append(run_setting(args.profile, args.stage, workers, threads, Path(tmp)))
            print(f"  {rows[-1]['seconds']:.0f} s", flush=True)
    base = next((r for r in rows if (r["workers"], r["threads"]) == (1, 1)), rows[0])
    for r in rows:
        r["speedup"] = round(base["seconds"] / r["seconds"], 3)
    same = [r for r in rows if r["threads"] == base["threads"]]
    result = {
        "benchmark": f"the {args.stage} retrain stage of {args.profile} at several workers and "
                     f"threads (benchmarks/bench_pipeline_scaling.py)",
        "cores": machine.cores(), "settings": rows,
        "identical_across_workers": all(r["weights"] == same[0]["weights"] for r in same),
        **derive(rows),
        "provenance": provenance(profile=args.profile, seed=None),
    }
    write_json(Path(args.out), result)
    print(json.dumps({f"{r['workers']}x{r['threads']}": r["speedup"] for r in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
