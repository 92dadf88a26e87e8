"""Benchmark the ablations' attention patterns (Fig. 3): fused SDPA against the dense einsum
reference; writes results/bench/masked_attention_cpu.json.

Shapes: the mini model's decoder self-attention on a video target (B=16, H=4, D=32, an
8 x 8 x 8 token grid, causal) and its image target (1 x 8 x 8). For ``full`` and ``axial``:
``nuwa_lib.attention.masked_attention`` (one fused SDPA call: ``is_causal`` for full,
a cached additive mask for axial) against ``reference_attention`` with the same mask (what
the ablation rows ran before). 3DNA (``nearby_attention``, the torch backend, the mini
extents) is timed beside them for scale. Forward + backward, one thread, the median of
``--repeats`` runs after a warm-up, the methods interleaved so a change of load hits them
alike; outputs and gradients are compared with the reference before timing.

Usage: python benchmarks/bench_masked.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nuwa_lib.attention import attention_mask, masked_attention, nearby_attention  # noqa: E402
from nuwa_lib.attention.reference import reference_attention  # noqa: E402
from nuwa_lib.utils.files import write_json  # noqa: E402
from nuwa_lib.utils.provenance import provenance  # noqa: E402

B, H, D = 16, 4, 32
CASES = {"video": ((8, 8, 8), (2, 1, 1)), "image": ((1, 8, 8), (1, 1, 1))}


def _fwd_bwd(fn, leaves):
    for x in leaves:
        x.grad = None
    t0 = time.perf_counter()
    out = fn(*leaves)
    out.backward(torch.ones_like(out))
    return time.perf_counter() - t0, out.detach(), [x.grad.clone() for x in leaves]


def bench(repeats: int) -> dict:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    cases = {}
    for name, (shape, extent) in CASES.items():
        n = shape[0] * shape[1] * shape[2]
        leaves = [torch.randn(B, H, n, D, generator=g).requires_grad_(True) for _ in range(3)]
        methods = {"nearby (3DNA, torch)": lambda q, k, v: nearby_attention(
            q, k, v, shape, shape, extent, causal=True)}
        checks = {}
        for kind in ("full", "axial"):
            mask = attention_mask(kind, shape, shape, causal=True)
            ref = (lambda m: lambda q, k, v: reference_attention(q, k, v, m))(mask)
            fused = (lambda kd: lambda q, k, v: masked_attention(
                q, k, v, kd, shape, shape, causal=True))(kind)
            methods[f"{kind}, einsum reference"] = ref
            methods[f"{kind}, fused SDPA"] = fused
            _, o1, g1 = _fwd_bwd(ref, leaves)
            _, o2, g2 = _fwd_bwd(fused, leaves)
            checks[kind] = max(float((a - b).abs().max()) for a, b in zip([o1, *g1], [o2, *g2]))
        times = {m: [] for m in methods}
        for m, fn in methods.items():        # warm-up
            _fwd_bwd(fn, leaves)
        for _ in range(repeats):
            for m, fn in methods.items():
                times[m].append(_fwd_bwd(fn, leaves)[0])
        med = {m: statistics.median(t) for m, t in times.items()}
        cases[name] = {
            "grid": list(shape), "tokens": n, "extent_nearby": list(extent),
            "median_s": med, "times_s": times, "max_abs_diff_vs_reference": checks,
            "speedup_fused_vs_reference": {k: med[f"{k}, einsum reference"] / med[f"{k}, fused SDPA"]
                                           for k in ("full", "axial")}}
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "masked_attention_cpu.json"))
    args = ap.parse_args(argv)
    load = os.getloadavg()
    cases = bench(args.repeats)
    result = {"benchmark": "ablation attention patterns, fused SDPA vs einsum reference",
              "config": {"B": B, "H": H, "D": D, "dtype": "float32", "causal": True,
                         "torch_threads": 1, "repeats": args.repeats,
                         "load_average_before": list(load),
                         "load_average_after": list(os.getloadavg())},
              "cases": cases, "provenance": provenance(None, 0)}
    write_json(Path(args.out), result)
    for name, c in cases.items():
        print(name, {k: f"{v:.2f}x" for k, v in c["speedup_fused_vs_reference"].items()},
              {m: f"{s * 1e3:.1f} ms" for m, s in c["median_s"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
