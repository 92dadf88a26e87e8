"""Shapes World throughput on one CPU core (DESIGN §4: "thousands of samples per second").

Measures ``nuwa_lib.data.splits.sample`` end to end (RNG, scene, render, caption):
32x32 images (role "cc"), 64x64 images, and 8-frame 32x32 videos (role "vatex").
Each figure is the median of REPEATS runs over distinct indices; the first run of each
starts with the mask and texture caches cleared and is also reported ("cold").
Writes results/bench/world.json and prints a one-line summary.

    python benchmarks/bench_world.py [--repeats 5]
"""
import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from nuwa_lib.data import (
    splits,
    world,  # noqa: E402
)
from nuwa_lib.utils.files import atomic_write_bytes  # noqa: E402

TARGET_IMAGES_PER_S = 1000
TARGET_VIDEOS_PER_S = 150


def _rate(role, n, canvas=32, frames=8, repeats=5):
    """Samples/s of ``repeats`` runs over fresh index ranges; run 0 starts cold."""
    world._mask.cache_clear()
    world.texture.cache_clear()
    rates = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(r * n, (r + 1) * n):
            splits.sample(role, "train", i, canvas=canvas, frames=frames)
        rates.append(n / (time.perf_counter() - t0))
    return {"n_per_repeat": n, "repeats": repeats, "median_per_s": round(statistics.median(rates), 1),
            "cold_per_s": round(rates[0], 1), "all_per_s": [round(x, 1) for x in rates]}


def _provenance():
    try:
        from nuwa_lib.utils.provenance import provenance
        return provenance(profile=None, seed=0)
    except Exception as exc:  # repro.py missing or broken: keep the benchmark usable
        try:
            sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            sha = None
        return {"git_sha": sha, "python": platform.python_version(), "numpy": np.__version__,
                "platform": platform.platform(), "seed": 0, "fallback_reason": repr(exc),
                "utc_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "world.json"))
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):                # one core, as the target says
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    images = _rate("cc", 2000, repeats=args.repeats)
    images64 = _rate("cc", 2000, canvas=64, repeats=args.repeats)
    videos = _rate("vatex", 200, frames=8, repeats=args.repeats)
    result = {
        "benchmark": "world",
        "cores": 1,
        "images_32_per_s": images,
        "images_64_per_s": images64,
        "videos_32x8_per_s": videos,
        "target_images_per_s": TARGET_IMAGES_PER_S,
        "target_met": images["median_per_s"] >= TARGET_IMAGES_PER_S,
        "target_videos_per_s": TARGET_VIDEOS_PER_S,
        "video_target_met": videos["median_per_s"] >= TARGET_VIDEOS_PER_S,
        "provenance": _provenance(),
    }
    out = Path(args.out)
    atomic_write_bytes(out, (json.dumps(result, indent=2, default=str) + "\n").encode())
    print(f"world: {images['median_per_s']:.0f} images/s at 32x32 (cold {images['cold_per_s']:.0f}), "
          f"{images64['median_per_s']:.0f} images/s at 64x64, {videos['median_per_s']:.0f} "
          f"videos/s at 8x32x32 on 1 core; target {TARGET_IMAGES_PER_S} images/s "
          f"{'met' if result['target_met'] else 'NOT met'} -> {out}")
    return result


if __name__ == "__main__":
    main()
