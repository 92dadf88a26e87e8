"""Benchmark KV-cached sampling against the full forward per token; writes
results/bench/sampling_cpu.json.

Model: the ``model:`` section of profiles/<profile>.yaml (mini: d=128, 4 heads, 2+2 layers,
256 codes, nearby attention with the profile's extents), with the target and sketch
positional vocabularies widened to (8, 16, 16) so 16 x 16 grids fit; random weights (speed
does not depend on them), float32, batch 1, CPU, ``--threads`` torch threads (default 1,
as benchmarks/bench_attention.py: on a shared 2-core machine a second thread mostly waits
at barriers). Condition: a text of the profile's length (32 BPE ids), the first 12 real
and the rest padding, as a world caption is.

Cases, both paths run through ``nuwa_lib.generation.sampling.sample`` (temperature 1, no top-k), their
repeats interleaved (cached, uncached, cached, ...) so load changes hit both alike:

* ``image``: a 1 x 16 x 16 target (256 tokens), every position, cached and uncached;
* ``video``: an 8 x 16 x 16 target (2048 tokens). Cached: every position. Uncached: the
  first ``--video-prefix`` positions only (the whole grid would take minutes): positions
  from the prefix on are passed as given (``prime_mask``), which the uncached path copies
  without a forward, so it runs exactly ``prefix`` full forwards over the 2048-token grid.
  Each of those costs the same whatever the position (the forward always covers the whole
  grid), so prefix / time is the uncached rate of the whole grid. The cached rate over the
  same prefix is read from the cached run's ``on_logits`` timestamps (from the call until
  slot ``prefix``'s logits are ready) and reported beside the whole-grid rate.

tokens/s = positions decoded / wall time of the ``sample`` call (median of the repeats),
condition encoding included (once for the cache, once per position without it); the same
from process CPU time is reported beside it, since other processes on a shared machine
inflate wall time but hardly CPU time. One warm-up run of each path and grid comes first,
so planning the decoding windows (once per grid) is excluded; ``Nuwa.start``'s cold and
warm times are reported as ``nuwa_start``. Before timing, the two paths' tokens are
compared under the same generator (identical draws expected).

    python benchmarks/bench_sampling.py [--repeats 5] [--video-repeats 3] [--video-prefix 256]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nuwa_lib.generation.sampling import sample  # noqa: E402
from nuwa_lib.model.config import Condition, NuwaConfig
from nuwa_lib.model.nuwa import Nuwa, count_parameters  # noqa: E402
from nuwa_lib.utils.files import write_json  # noqa: E402
from nuwa_lib.utils.profiles import load_profile  # noqa: E402
from nuwa_lib.utils.provenance import provenance  # noqa: E402

IMAGE, VIDEO = (1, 16, 16), (8, 16, 16)
REAL_TEXT_TOKENS = 12
TARGETS = {"speedup_image_256_min": 10.0}


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def build(profile: str, seed: int):
    cfg = load_profile(profile)
    config = NuwaConfig.from_profile(cfg, target_tokens=VIDEO, sketch_tokens=VIDEO)
    torch.manual_seed(seed)
    model = Nuwa(config).eval()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, config.text_vocab, (1, config.text_length), generator=g)
    keep = torch.arange(config.text_length)[None] < REAL_TEXT_TOKENS
    ids[~keep] = 0                                            # <pad>
    return cfg, config, model, Condition.from_text(ids, keep)


def suffix_given(grid, prefix: int):
    """(prime, prime_mask): every position from ``prefix`` on is given (placeholder 0)."""
    mask = torch.arange(math.prod(grid)).reshape(grid) >= prefix
    return torch.zeros(1, *grid, dtype=torch.long), mask


def timed(model, cond, grid, seed, use_cache, prefix=None, stamp=None):
    """(wall seconds, tokens, mark, CPU seconds) of one ``sample`` call; ``mark``: when slot
    ``stamp``'s logits were ready (wall seconds since the call), or None."""
    kw = {}
    if prefix is not None and prefix < math.prod(grid):
        prime, mask = suffix_given(grid, prefix)
        kw = {"prime": prime, "prime_mask": mask}
    marks = {}
    c0, t0 = time.process_time(), time.perf_counter()
    if stamp is not None:
        kw["on_logits"] = lambda t, _: marks.setdefault(t, time.perf_counter() - t0) \
            if t == stamp else None
    tokens = sample(model, cond, grid, generator=torch.Generator().manual_seed(seed),
                    use_cache=use_cache, **kw)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, tokens, marks.get(stamp), cpu


def kv_cache_mb(config: NuwaConfig, grid, cond_len: int, batch: int = 1) -> float:
    """Float32 self- and cross-attention keys/values of every decoder layer."""
    per_layer = 2 * batch * config.dim * (math.prod(grid) + cond_len)
    return config.decoder_layers * per_layer * 4 / 2**20


def run_case(model, cond, grid, repeats: int, seed: int, uncached_prefix: int) -> dict:
    n = math.prod(grid)
    stamp = uncached_prefix if uncached_prefix < n else None
    # correctness: the same generator gives the same draws with and without the cache
    cached_tokens = timed(model, cond, grid, seed, True)[1]
    full_tokens = timed(model, cond, grid, seed, False, prefix=uncached_prefix)[1]
    flat_c, flat_f = cached_tokens.reshape(-1), full_tokens.reshape(-1)
    same = bool(torch.equal(flat_c[:uncached_prefix], flat_f[:uncached_prefix]))
    cached, cached_prefix, uncached, cached_cpu, uncached_cpu = [], [], [], [], []
    for _ in range(repeats):
        s, _, mark, cpu = timed(model, cond, grid, seed, True, stamp=stamp)
        cached.append(s)
        cached_cpu.append(cpu)
        if mark is not None:
            cached_prefix.append(mark)
        s, _, _, cpu = timed(model, cond, grid, seed, False, prefix=uncached_prefix)
        uncached.append(s)
        uncached_cpu.append(cpu)
        print(f"  {grid}: cached {n / cached[-1]:8.1f} tok/s, uncached "
              f"{uncached_prefix / uncached[-1]:8.1f} tok/s ({uncached_prefix} positions)",
              flush=True)
    c_med, u_med = statistics.median(cached), statistics.median(uncached)
    c_cpu, u_cpu = statistics.median(cached_cpu), statistics.median(uncached_cpu)
    case = {
        "grid": list(grid), "tokens": n, "repeats": repeats,
        "cached": {"positions": n, "median_s": c_med, "times_s": cached,
                   "tokens_per_s": n / c_med, "cpu_times_s": cached_cpu,
                   "tokens_per_cpu_s": n / c_cpu},
        "uncached": {"positions": uncached_prefix, "median_s": u_med, "times_s": uncached,
                     "tokens_per_s": uncached_prefix / u_med, "cpu_times_s": uncached_cpu,
                     "tokens_per_cpu_s": uncached_prefix / u_cpu,
                     "whole_grid": uncached_prefix == n},
        "draws_identical_on_measured_positions": same,
        "speedup": (n / c_med) / (uncached_prefix / u_med),
        "speedup_cpu_time": (n / c_cpu) / (uncached_prefix / u_cpu),
    }
    if cached_prefix:
        p_med = statistics.median(cached_prefix)
        case["cached_on_uncached_prefix"] = {
            "positions": uncached_prefix, "median_s": p_med, "times_s": cached_prefix,
            "tokens_per_s": uncached_prefix / p_med,
            "measured": f"from the sample() call until slot {uncached_prefix}'s logits are "
                        f"ready (on_logits timestamp) in the whole-grid cached runs"}
        case["speedup_on_prefix"] = (uncached_prefix / p_med) / (uncached_prefix / u_med)
        case["estimated_uncached_whole_grid_s"] = u_med / uncached_prefix * n
    return case


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each path, image")
    parser.add_argument("--video-repeats", type=int, default=3, help="the same, video")
    parser.add_argument("--video-prefix", type=int, default=256,
                        help="positions of the video the uncached path decodes")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "sampling_cpu.json"))
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if not 1 <= args.video_prefix <= math.prod(VIDEO):
        parser.error(f"--video-prefix must be in [1, {math.prod(VIDEO)}]")

    wall0, load_before = time.perf_counter(), os.getloadavg()
    cfg, config, model, cond = build(args.profile, args.seed)
    start_s = {}
    for name, grid in (("image", IMAGE), ("video", VIDEO)):
        times = []
        for _ in range(2):      # cold: plans the decoding windows of the grid; then warm
            t0 = time.perf_counter()
            model.start(cond, grid)
            times.append(time.perf_counter() - t0)
        start_s[name] = {"cold_s": times[0], "warm_s": times[1]}
    for grid, prefix in ((IMAGE, 16), (VIDEO, 4)):               # warm-up runs
        timed(model, cond, grid, args.seed, True)
        timed(model, cond, grid, args.seed, False, prefix=prefix)

    cases = {}
    for name, grid, prefix, repeats in (("image", IMAGE, math.prod(IMAGE), args.repeats),
                                        ("video", VIDEO, args.video_prefix, args.video_repeats)):
        print(f"{name} {grid}:", flush=True)
        cases[name] = {"load_average_1min_before": os.getloadavg()[0],
                       **run_case(model, cond, grid, repeats, args.seed, prefix),
                       "kv_cache_mb": kv_cache_mb(config, grid, config.text_length),
                       "nuwa_start": start_s[name]}

    speedup = {name: case["speedup"] for name, case in cases.items()}
    speedup_cpu = {name: case["speedup_cpu_time"] for name, case in cases.items()}
    report = {
        "benchmark": "NÜWA sampling, CPU: KV-cached decoding vs the full forward per token",
        "config": {
            "profile": args.profile, "model_section": cfg.get("model"),
            "overrides": {"target_tokens": list(VIDEO), "sketch_tokens": list(VIDEO)},
            "parameters": count_parameters(config), "dtype": "float32", "batch": 1,
            "condition": f"text, {config.text_length} BPE ids ({REAL_TEXT_TOKENS} real, the "
                         f"rest padding)",
            "sampling": "temperature 1.0, top_k None, Gumbel-max draws from a seeded generator",
            "repeats": {"image": args.repeats, "video": args.video_repeats},
            "video_prefix": args.video_prefix,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "cpu_model": _cpu_model(), "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "wall_s": time.perf_counter() - wall0},
        "method": {
            "tokens_per_s": "positions decoded / wall time of one nuwa_lib.generation.sampling.sample call "
                            "(median of repeats; condition encoding included: once with the "
                            "cache, once per position without it); repeats of the two paths "
                            "interleaved",
            "cached": "use_cache=True: Nuwa.start once, then one Nuwa.step per position, "
                      "O(window) each; always the whole grid",
            "uncached": "use_cache=False: the full teacher-forced forward over the whole grid "
                        "for every position, its logits read off at that position. Image: "
                        "all 256 positions. Video: the first video_prefix positions; the "
                        "rest are passed as given (prime_mask), which the uncached path "
                        "copies without a forward. Each forward costs the same at every "
                        "position, so prefix / time is the whole-grid uncached rate",
            "speedup": "cached tokens/s (whole grid) / uncached tokens/s (measured positions), "
                       "from median wall times: the headline and the target's measure",
            "speedup_cpu_time": "the same from median process CPU times (time.process_time), "
                                "which time slices taken by other processes do not inflate",
            "speedup_on_prefix": "video only: cached tokens/s over the same prefix (on_logits "
                                 "timestamp in the cached runs) / uncached tokens/s",
            "warm_up": "one run of each path and grid before timing, so planning the "
                       "decoding windows (once per grid and process) is excluded; nuwa_start "
                       "gives Nuwa.start's cold (planning + encoding) and warm (encoding) "
                       "times",
            "kv_cache_mb": "float32 keys and values of every decoder layer, self-attention "
                           "over the target plus cross-attention over the condition, batch 1",
            "correctness": "before timing, cached and uncached draws with the same generator "
                           "are compared on the measured positions",
            "threads": "torch_threads threads; 1 by default on this shared 2-core machine (see "
                       "benchmarks/bench_attention.py)",
            "contention": "the machine may be shared: load averages and times_s show how "
                          "steady each measurement was",
        },
        "cases": cases,
        "speedup": speedup,
        "speedup_cpu_time": speedup_cpu,
        "targets": TARGETS,
        "targets_met": {"speedup_image_256_min":
                        speedup["image"] >= TARGETS["speedup_image_256_min"]},
        "provenance": provenance(profile=args.profile, seed=args.seed),
    }
    write_json(Path(args.out), report)
    print({"speedup": speedup, "speedup_cpu_time": speedup_cpu,
           "targets_met": report["targets_met"],
           "wall_s": round(report["config"]["wall_s"], 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
