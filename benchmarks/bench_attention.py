"""Benchmark 3D Nearby Attention (Sec. 3.2) against dense SDPA; writes results/bench/*.json.

CPU (always): forward + backward, B=1, H=4, D=64, fp32, e=(3,3,3), causal, grids s x 21 x 21
for s in {4, 10, 32}. Methods:

* ``masked_sdpa`` -- ``F.scaled_dot_product_attention`` with the dense nearby mask (same
  semantics as 3DNA, O(N^2) time and memory);
* ``causal_sdpa`` -- ``is_causal=True`` SDPA: dense *full* causal attention (a different,
  denser pattern; PyTorch's fastest dense CPU path, shown as the strong baseline);
* ``torch`` -- ``nearby_attention(..., backend="torch")``.

Numbers come from fresh subprocesses, so one case's allocations and caches cannot leak into
another's. Each worker uses ``--threads`` CPU threads (default 1: on a shared 2-core machine,
two OpenMP threads stall at every barrier whenever another process takes a core, which
penalises the method with more parallel regions instead of measuring it; ``--threads 0``
keeps torch's default).

* time: median wall time of ``--repeats`` fwd+bwd runs after one warm-up run; one process
  per s runs all methods with their repeats interleaved, so load changes hit them alike;
* memory: in another fresh process, the peak resident set size (``VmHWM`` of
  /proc/self/status, reset through /proc/self/clear_refs) during the first fwd+bwd run minus
  the resident set just before it. Inputs, and the method's cached setup (the dense mask of
  ``masked_sdpa``, the tile plan of ``torch``), are built before the baseline and reported
  separately as ``setup_mb``;
* correctness: before timing, each method's output and q/k/v gradients are compared with the
  dense float32 reference (``nuwa_lib.attention.reference``) run in query chunks, against the
  nearby mask (the full causal mask for ``causal_sdpa``).

Score efficiency (seconds, no timing): for the tile plans of the Triton kernels
(:mod:`nuwa_lib.attention.tiles`) and FlexAttention's block mask, the exact share of the
computed scores that lie inside a window, on the paper's image, video and cross grids.

The GPU run (Triton vs FlexAttention vs SDPA, autotuning, the paper's training step) is
benchmarks/gpu_run.py.

Usage: python benchmarks/bench_attention.py [--repeats 5] [--sizes 4 10 32]
       python benchmarks/bench_attention.py --score-efficiency-only
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nuwa_lib.attention import count_pairs, full_mask, nearby_attention, nearby_mask  # noqa: E402
from nuwa_lib.attention.reference import reference_attention  # noqa: E402
from nuwa_lib.attention.torch_nearby import plan_nearby  # noqa: E402
from nuwa_lib.utils.files import write_json  # noqa: E402

B, H, D = 1, 4, 64
FRAME = (21, 21)
EXTENT = (3, 3, 3)
METHODS = ("masked_sdpa", "causal_sdpa", "torch")
TARGETS = {
    "speedup_vs_masked_sdpa_s32_min": 5.0,
    "speedup_vs_causal_sdpa_s32_min": 2.0,
    "memory_ratio_vs_masked_sdpa_s32_min": 4.0,
    "speedup_vs_masked_sdpa_s10_min": 1.5,
    "time_ratio_s32_over_s4_max": 10.0,
}


# ------------------------------------------------------------------------- helpers
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _inputs(s: int, seed: int = 0, device="cpu", dtype=torch.float32, b=B, h=H):
    n = s * FRAME[0] * FRAME[1]
    g = torch.Generator().manual_seed(seed)
    q, k, v, do = (torch.randn(b, h, n, D, generator=g).to(device, dtype) for _ in range(4))
    return [x.requires_grad_(True) for x in (q, k, v)], do


def _runner(method: str, shape):
    if method == "masked_sdpa":
        mask = nearby_mask(shape, shape, EXTENT, causal=True)
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if method == "causal_sdpa":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if method == "torch":
        plan_nearby(shape, shape, EXTENT, True, "cpu")  # cached setup, as in training
        return lambda q, k, v: nearby_attention(q, k, v, shape, shape, EXTENT, causal=True,
                                                backend="torch")
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _fwd_bwd(fn, leaves, do):
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, do)
    return out, grads


def _chunked_reference(leaves, do, mask, chunk=512):
    """Dense float32 reference output and gradients, a chunk of query rows at a time."""
    q, k, v = (x.detach() for x in leaves)
    out, dq = torch.empty_like(q), torch.empty_like(q)
    dk, dv = torch.zeros_like(k), torch.zeros_like(v)
    for r0 in range(0, q.shape[2], chunk):
        r1 = min(q.shape[2], r0 + chunk)
        qc, kc, vc = q[:, :, r0:r1].clone().requires_grad_(), k.clone().requires_grad_(), \
            v.clone().requires_grad_()
        oc = reference_attention(qc, kc, vc, mask[r0:r1])
        gq, gk, gv = torch.autograd.grad(oc, (qc, kc, vc), do[:, :, r0:r1])
        out[:, :, r0:r1], dq[:, :, r0:r1] = oc.detach(), gq
        dk += gk
        dv += gv
    return out, (dq, dk, dv)


# -------------------------------------------------------------------- CPU workers
def worker_check(s: int) -> dict:
    shape = (s, *FRAME)
    leaves, do = _inputs(s)
    refs = {"nearby": _chunked_reference(leaves, do, nearby_mask(shape, shape, EXTENT, True)),
            "full_causal": _chunked_reference(leaves, do, full_mask(shape, shape, True))}
    result = {}
    for method in METHODS:
        ref_out, ref_grads = refs["full_causal" if method == "causal_sdpa" else "nearby"]
        out, grads = _fwd_bwd(_runner(method, shape), leaves, do)
        err_out = (out - ref_out).abs().max().item()
        err_grad = max((a - b).abs().max().item() for a, b in zip(grads, ref_grads))
        result[method] = {"reference": "full causal mask" if method == "causal_sdpa" else
                          "nearby mask", "max_abs_err_out": err_out,
                          "max_abs_err_grads": err_grad,
                          "ok": err_out < 1e-4 and err_grad < 1e-3}
    return result


def worker_time(s: int, repeats: int) -> dict:
    """All methods in one process, repeats interleaved (A B C A B C ...), so a change in the
    machine's load during the run affects every method alike."""
    shape = (s, *FRAME)
    leaves, do = _inputs(s)
    fns = {method: _runner(method, shape) for method in METHODS}
    times = {method: [] for method in METHODS}
    for fn in fns.values():
        _fwd_bwd(fn, leaves, do)  # warm-up
    for _ in range(repeats):
        for method, fn in fns.items():
            t0 = time.perf_counter()
            _fwd_bwd(fn, leaves, do)
            times[method].append(time.perf_counter() - t0)
    return {m: {"median_s": statistics.median(t), "times_s": t} for m, t in times.items()}


def worker_memory(method: str, s: int) -> dict:
    shape = (s, *FRAME)
    # Start thread pools and the autograd engine on a one-frame grid first, so their one-time
    # allocations are not charged to the measured run.
    small, small_do = _inputs(1)
    _fwd_bwd(_runner(method, (1, *FRAME)), small, small_do)
    del small, small_do
    leaves, do = _inputs(s)
    gc.collect()
    before_setup = _status_kb("VmRSS")
    fn = _runner(method, shape)
    gc.collect()
    baseline = _status_kb("VmRSS")
    reset = _reset_peak_rss()
    if not reset:
        baseline = max(baseline, _status_kb("VmHWM"))
    _fwd_bwd(fn, leaves, do)
    peak = _status_kb("VmHWM")
    return {"peak_mb": max(0, peak - baseline) / 1024, "setup_mb": (baseline - before_setup) / 1024,
            "peak_reset_ok": reset}


def _spawn(*args: str, threads: int = 0) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(threads),
           "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------- score efficiency
EFFICIENCY_CASES = {
    "image 1x21x21, e=(1,3,3)": ((1, 21, 21), (1, 21, 21), (1, 3, 3), False),
    "video 10x21x21, e=(3,3,3), causal": ((10, 21, 21), (10, 21, 21), (3, 3, 3), True),
    "video 10x21x21, e=(3,3,3)": ((10, 21, 21), (10, 21, 21), (3, 3, 3), False),
    "cross 10x21x21 -> 1x21x21, e=(1,3,3)": ((10, 21, 21), (1, 21, 21), (1, 3, 3), False),
}
ROW_BLOCKS = [(16, 16), (32, 32), (64, 32), (64, 64), (128, 64), (64, 128), (128, 128)]


def score_efficiency() -> dict:
    """Exact counts of the scores each tile plan computes against the pairs inside the
    windows, for the Triton kernels' plans (nuwa_lib.attention.tiles) and FlexAttention's."""
    from nuwa_lib.attention.flex_nearby import flex_block_counts
    from nuwa_lib.attention.tiles import best_tiling, box_shape, tile_plan

    def plan(q, kv, e, c, bm, bn, tiling, side):
        tile, block = (bm, bn) if side == "queries" else (bn, bm)
        if tiling == "auto":
            tiling = best_tiling(q, kv, e, c, tile, block, side)
        summary = tile_plan(q, kv, e, c, tile, block, tiling, side).summary()
        return {"tiling": tiling if isinstance(tiling, str) else list(tiling), **summary}

    cases = {}
    for name, (q, kv, e, c) in EFFICIENCY_CASES.items():
        print(f"score efficiency: {name} ...", flush=True)
        n_q = math.prod(q)
        plans = {}
        for bm, bn in ROW_BLOCKS:
            plans[f"rows {bm}x{bn}"] = {side: plan(q, kv, e, c, bm, bn, "rows", side)
                                        for side in ("queries", "keys")}
        box = box_shape(q, 64)
        plans["boxes {}x{}x{} 64x64".format(*box)] = {
            side: plan(q, kv, e, c, 64, 64, "boxes", side) for side in ("queries", "keys")}
        for bm, bn in [(64, 64), (128, 64), (32, 32)]:
            plans[f"auto {bm}x{bn}"] = {side: plan(q, kv, e, c, bm, bn, "auto", side)
                                        for side in ("queries", "keys")}
        flex = flex_block_counts(q, kv, e, c, block_size=128)
        flex["score_efficiency"] = flex["inside_window"] / flex["computed_scores"]
        case = {"q_shape": list(q), "kv_shape": list(kv), "extent": list(e), "causal": c,
                "inside_window": plans["rows 64x64"]["queries"]["inside_window"],
                "plans": plans, "flex_attention_128": flex}
        if c:
            blocks = sum(min(i + 1, -(-n_q // 64)) for i in range(-(-n_q // 64)))
            case["dense_causal"] = {"pairs": n_q * (n_q + 1) // 2,
                                    "computed_scores_64x64": blocks * 64 * 64}
        cases[name] = case
    return {
        "method": "exact counts on the CPU from the tile plans the Triton kernels follow "
                  "(nuwa_lib.attention.tiles): computed = visited (tile, block) pairs x "
                  "block_m x block_n, every lane counted; inside = pairs inside a window "
                  "(= count_pairs); queries: the forward and dq plan (tiles of block_m "
                  "queries, blocks of block_n keys), keys: the dk/dv plan (tiles of block_n "
                  "keys, blocks of block_m queries). 'rows 64x64' is the tiling the kernels "
                  "used before the tile plan (it reproduces their visits on these grids); "
                  "'auto' is what the kernels use now: per side, the tiling of rows or boxes "
                  "with the fewest estimated scores (tiles.best_tiling). FlexAttention: its "
                  "block mask at its default 128x128 blocks (full + partial blocks visited)",
        "cases": cases,
        "provenance": _provenance(),
    }


# ----------------------------------------------------------------------------- main
def _provenance() -> dict:
    try:
        from nuwa_lib.utils.provenance import provenance
        return provenance(profile=None, seed=0)
    except Exception:  # noqa: BLE001 - the benchmark must still say where it came from
        try:
            sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip() or None
        except OSError:
            sha = None
        return {"git_sha": sha, "python": platform.python_version(), "torch": torch.__version__,
                "utc_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 10, 32])
    parser.add_argument("--out-dir", default=str(ROOT / "results" / "bench"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads in every worker (0: torch's default); 1 by "
                             "default, see the module docstring")
    parser.add_argument("--score-efficiency-only", action="store_true",
                        help="only recount the tile plans' score efficiency (seconds) and "
                             "update that section of attention_cpu.json, keeping the timings")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.worker:
        kind, *rest = args.worker
        if kind == "check":
            res = worker_check(int(rest[0]))
        elif kind == "time":
            res = worker_time(int(rest[0]), int(rest[1]))
        else:
            res = worker_memory(rest[0], int(rest[1]))
        print(json.dumps(res))
        return 0

    out_dir = Path(args.out_dir)
    if args.score_efficiency_only:
        path = out_dir / "attention_cpu.json"
        report = json.loads(path.read_text()) if path.exists() else {}
        report["score_efficiency"] = score_efficiency()
        write_json(path, report)
        return 0
    load_before = os.getloadavg()
    cases = {}
    for s in args.sizes:
        print(f"s={s}: checking against the reference ...", flush=True)
        check = _spawn("check", str(s), threads=args.threads)
        case = {"grid": [s, *FRAME], "tokens": s * FRAME[0] * FRAME[1],
                "attended_pairs": count_pairs((s, *FRAME), (s, *FRAME), EXTENT, causal=True)}
        for method in METHODS:
            if not check[method]["ok"]:
                raise SystemExit(f"{method} at s={s} does not match the reference: {check[method]}")
        case["load_average_1min_before"] = os.getloadavg()[0]
        timing = _spawn("time", str(s), str(args.repeats), threads=args.threads)
        for method in METHODS:
            memory = _spawn("memory", method, str(s), threads=args.threads)
            case[method] = {**timing[method], **memory, "check": check[method]}
            print(f"  {method:12s} {timing[method]['median_s'] * 1e3:9.1f} ms  "
                  f"peak {memory['peak_mb']:8.1f} MB", flush=True)
        cases[str(s)] = case

    def ratio(s, a, b, key):
        return cases[str(s)][a][key] / cases[str(s)][b][key] if str(s) in cases else None

    sizes = list(args.sizes)
    speed_masked = {str(s): ratio(s, "masked_sdpa", "torch", "median_s") for s in sizes}
    speed_causal = {str(s): ratio(s, "causal_sdpa", "torch", "median_s") for s in sizes}
    mem_ratio = {str(s): ratio(s, "masked_sdpa", "torch", "peak_mb") for s in sizes}
    t_ratio = (cases["32"]["torch"]["median_s"] / cases["4"]["torch"]["median_s"]
               if "32" in cases and "4" in cases else None)
    pair_ratio = (cases["32"]["attended_pairs"] / cases["4"]["attended_pairs"]
                  if "32" in cases and "4" in cases else None)
    met = {
        "speedup_vs_masked_sdpa_s32_min": speed_masked.get("32") is not None
        and speed_masked["32"] >= TARGETS["speedup_vs_masked_sdpa_s32_min"],
        "speedup_vs_causal_sdpa_s32_min": speed_causal.get("32") is not None
        and speed_causal["32"] >= TARGETS["speedup_vs_causal_sdpa_s32_min"],
        "memory_ratio_vs_masked_sdpa_s32_min": mem_ratio.get("32") is not None
        and mem_ratio["32"] >= TARGETS["memory_ratio_vs_masked_sdpa_s32_min"],
        "speedup_vs_masked_sdpa_s10_min": speed_masked.get("10") is not None
        and speed_masked["10"] >= TARGETS["speedup_vs_masked_sdpa_s10_min"],
        "time_ratio_s32_over_s4_max": t_ratio is not None
        and t_ratio <= TARGETS["time_ratio_s32_over_s4_max"],
    }
    report = {
        "benchmark": "3D nearby attention, CPU, forward+backward",
        "config": {"B": B, "H": H, "D": D, "dtype": "float32", "extent": list(EXTENT),
                   "causal": True, "frame": list(FRAME), "repeats": args.repeats,
                   "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                   "load_average_before": list(load_before),
                   "load_average_after": list(os.getloadavg())},
        "method": {
            "time": "median wall time of `repeats` fwd+bwd runs after one warm-up; one fresh "
                    "subprocess per s runs all methods with their repeats interleaved",
            "memory": "peak RSS (VmHWM, reset via /proc/self/clear_refs) during the first fwd+bwd "
                      "at this size minus RSS just before it, fresh subprocess per (method, s), "
                      "after one fwd+bwd on a 1-frame grid has started thread pools; inputs and "
                      "cached setup (dense mask / tile plan) excluded and reported as setup_mb",
            "correctness": "output and q/k/v gradients vs the dense fp32 reference before timing "
                           "(nearby mask; full causal mask for causal_sdpa)",
            "causal_sdpa": "is_causal=True dense full causal attention: a different, denser "
                           "pattern than 3DNA, included as the strongest dense CPU baseline",
            "threads": "torch_threads CPU threads per worker. On a shared 2-core machine one "
                       "thread is the default: with two, a thread descheduled by another "
                       "process stalls every OpenMP barrier, which penalises whichever method "
                       "launches more parallel regions rather than measuring the method",
            "contention": "the machine may be shared; load_average_1min_before (per case) and "
                          "times_s show how steady each measurement was",
        },
        "cases": cases,
        "speedup_vs_masked_sdpa": speed_masked,
        "speedup_vs_causal_sdpa": speed_causal,
        "memory_ratio_vs_masked_sdpa": mem_ratio,
        "time_ratio_s32_over_s4": t_ratio,
        "attended_pair_ratio_s32_over_s4": pair_ratio,
        "targets": TARGETS,
        "targets_met": met,
        "score_efficiency": score_efficiency(),
        "provenance": _provenance(),
    }
    write_json(out_dir / "attention_cpu.json", report)
    print(json.dumps({k: report[k] for k in ("speedup_vs_masked_sdpa", "speedup_vs_causal_sdpa",
                                             "memory_ratio_vs_masked_sdpa", "time_ratio_s32_over_s4",
                                             "targets_met")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
