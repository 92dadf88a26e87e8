"""Tables of the attention benchmarks' records, as notebook 03 and docs/reference.md show them.

``results/bench/attention_cpu.json`` holds the score efficiency of the tile plans
(``benchmarks/bench_attention.py``); ``results/bench/attention_gpu.json`` the one GPU run
(``benchmarks/gpu_run.py``). These functions only reshape what the records hold.
"""
from __future__ import annotations

PLANS_SHOWN = ("rows 64x64", "auto 64x64", "auto 32x32")


def efficiency_rows(record: dict, plans=PLANS_SHOWN) -> list[dict]:
    """Per case and plan: scores computed by the forward (and dq) plan and by the dk/dv plan,
    the share inside a window, and FlexAttention's block mask for comparison."""
    rows = []
    for case, c in record["score_efficiency"]["cases"].items():
        for name in plans:
            fwd, bwd = c["plans"][name]["queries"], c["plans"][name]["keys"]
            rows.append({"case": case, "plan": name,
                         "tiling (fwd / dk,dv)": f"{_tiling(fwd)} / {_tiling(bwd)}",
                         "computed fwd": fwd["computed_scores"],
                         "inside": fwd["inside_window"],
                         "efficiency fwd": fwd["score_efficiency"],
                         "efficiency dk,dv": bwd["score_efficiency"]})
        flex = c["flex_attention_128"]
        rows.append({"case": case, "plan": "FlexAttention 128x128", "tiling (fwd / dk,dv)": "-",
                     "computed fwd": flex["computed_scores"], "inside": flex["inside_window"],
                     "efficiency fwd": flex["score_efficiency"], "efficiency dk,dv": None})
    return rows


def _tiling(plan: dict) -> str:
    t = plan["tiling"]
    return t if isinstance(t, str) else "x".join(map(str, t))


def gpu_rows(record: dict) -> list[dict]:
    """Per method of the GPU benchmark: its check, times, useful TFLOP/s and peak memory."""
    rows = []
    for name, m in record["parts"].get("benchmark", {}).get("methods", {}).items():
        check = m.get("check", {})
        rows.append({"method": name, "status": m.get("status"), "check ok": check.get("ok"),
                     "fwd ms": m.get("fwd_ms"), "bwd ms": m.get("bwd_ms"),
                     "fwd+bwd ms": m.get("fwd_bwd_ms"),
                     "useful TFLOP/s fwd+bwd": m.get("useful_tflops", {}).get("fwd_bwd"),
                     "peak MB": m.get("peak_mb")})
    return rows
