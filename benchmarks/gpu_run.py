"""The one prepared GPU run of 3DNA (Sec. 3.2): checks, benchmark, autotuning, paper step.

On a CUDA machine, with the PyTorch and Triton already installed there (nothing is
installed), in at most ``--budget-s`` seconds (default 480), writing ``attention_gpu.json``
into ``--out`` after every measurement, so a run cut short keeps what it measured:

1. ``checks``    -- the Triton kernels compiled, fp32 and bf16, outputs and gradients against
   the dense fp32 reference on the representative cases of notebook 03;
2. ``benchmark`` -- the causal 10x21x21 video, e=(3,3,3), B=8, H=20, D=64, bf16: Triton vs
   compiled FlexAttention (same mask) vs SDPA with the dense nearby mask vs flash SDPA on
   dense full causal attention (a different, denser pattern: the speed of light for dense
   attention). Forward, backward, forward+backward (median ms of ``triton.testing.do_bench``),
   peak memory, and *useful* TFLOP/s: 4 D flops per attended (query, key) pair forward and
   8 D backward, counted exactly (``count_pairs``) for the 3DNA pattern, for every method.
   Each method is timed only after the very call that is timed matched the fp32 reference on
   its first (batch, head) slice;
3. ``choice``    -- the fastest correct backend (Triton only if it passed every check of
   part 1), which ``backend="auto"`` then uses on CUDA (:mod:`nuwa_lib.attention.gpu_choice`);
4. ``paper_step``-- the ``paper`` profile's model (24 + 24 layers, d = 1280, 20 heads, the
   Triton kernels) on a text-to-video step: 77 text tokens, a 10x21x21 target, bf16
   autocast, Adam: target tokens/s and peak memory per batch size, doubling the batch until
   it no longer fits (or the budget would be spent);
5. ``retrain_stage`` -- a slice of ``mini``'s Eq. 16 pretraining run (``make retrain``'s longest
   single run) on the GPU, bf16 autocast, against the CPU time per step of the shipped model's
   manifest entry: the speed-up and the stage's estimated time on this GPU;
6. ``autotune``  -- a few Triton block configurations (block_m, block_n, num_warps), each
   checked, timed forward+backward on the benchmark case; then ``choice`` again, with the
   fastest of them;
7. ``pytest``    -- the kernel test file compiled, with what time is left (when pytest and
   hypothesis are installed).

``--dry-run`` runs every part on the CPU with tiny shapes (Triton under the interpreter,
FlexAttention eager and forward only, a two-layer model), so the script is known to work
before a GPU is lent; the test suite runs it.

Usage: python benchmarks/gpu_run.py [--dry-run] [--out results/bench] [--budget-s 480]
(on a lent machine: PYTHONUNBUFFERED=1 benchmarks/gpu_run.sh --out "$OUT" --budget-s 420)
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOL = {"float32": (1e-4, 1e-3), "bfloat16": (2e-2, 5e-2)}  # (output, gradients), x max |ref|
FLOPS_PER_PAIR = {"fwd": 4, "bwd": 8, "fwd_bwd": 12}         # times D


class Run:
    """The record being written, its deadline, and the script's settings."""

    def __init__(self, args):
        import torch
        self.args, self.torch = args, torch
        self.dry = args.dry_run
        self.device = "cpu" if self.dry else "cuda"
        self.start = time.monotonic()
        self.path = Path(args.out) / "attention_gpu.json"
        self.record = {"benchmark": "3DNA on the GPU: one prepared run (benchmarks/gpu_run.py)",
                       "dry_run": self.dry, "device": self._device_name(),
                       "versions": {"torch": torch.__version__, "triton": _triton_version(),
                                    "python": sys.version.split()[0]},
                       "budget_s": args.budget_s, "parts": {}}

    def _device_name(self):
        if self.dry:
            return "cpu (dry run: Triton interpreter, tiny shapes)"
        return self.torch.cuda.get_device_name()

    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.start)

    def save(self):
        from nuwa_lib.utils.files import write_json
        self.record["elapsed_s"] = round(time.monotonic() - self.start, 1)
        write_json(self.path, self.record)

    def part(self, name, fn, needs_s: float):
        """Run one part, recording its result, its time, or why it did not run (a part run
        again replaces its entry)."""
        if self.left() < needs_s:
            left = max(0.0, self.left())
            self.record["parts"][name] = {
                "status": f"skipped: {left:.0f} s left of the budget, {needs_s:.0f} s needed"}
            self.save()
            return None
        t0 = time.monotonic()
        entry = self.record["parts"][name] = {"status": "running"}
        try:
            fn(entry)
            entry["status"] = "ok"
        except Exception as err:  # noqa: BLE001 - one failed part must not lose the others
            entry["status"] = f"failed: {type(err).__name__}: {err}"
            entry["traceback"] = traceback.format_exc()[-3000:]
        entry["seconds"] = round(time.monotonic() - t0, 1)
        self.save()
        return entry

    def sync(self):
        if not self.dry:
            self.torch.cuda.synchronize()

    def time_ms(self, fn) -> float:
        if self.dry:
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e3
        from triton.testing import do_bench
        return float(do_bench(fn, warmup=10, rep=50, return_mode="median"))


def _triton_version():
    try:
        import triton
        return triton.__version__
    except ImportError:
        return None


# ------------------------------------------------------------------------------ cases
def target_case(run: Run) -> dict:
    if run.dry:
        return dict(q_shape=(2, 4, 5), kv_shape=(2, 4, 5), extent=(1, 1, 1), causal=True,
                    B=1, H=2, D=16, dtype="bfloat16")
    return dict(q_shape=(10, 21, 21), kv_shape=(10, 21, 21), extent=(3, 3, 3), causal=True,
                B=8, H=20, D=64, dtype="bfloat16")


def methods(run: Run, case: dict, triton_options=None) -> dict:
    """name -> fn(q, k, v) for the methods compared (all with the case's semantics but the
    last, which is dense full causal attention)."""
    import torch.nn.functional as F

    from nuwa_lib.attention import nearby_mask
    from nuwa_lib.attention.flex_nearby import flex_nearby_attention
    from nuwa_lib.attention.triton_nearby import triton_nearby_attention
    shape, kv, ext, causal = case["q_shape"], case["kv_shape"], case["extent"], case["causal"]
    from nuwa_lib.attention.triton_nearby import DEFAULT_CUDA_BLOCKS
    mask = nearby_mask(shape, kv, ext, causal, device=run.device)
    default = {} if run.dry else dict(zip(("block_m", "block_n", "num_warps"), DEFAULT_CUDA_BLOCKS))
    opts = triton_options or default
    return {
        "triton": lambda q, k, v: triton_nearby_attention(q, k, v, shape, kv, ext, causal, **opts),
        "flex": lambda q, k, v: flex_nearby_attention(q, k, v, shape, kv, ext, causal,
                                                      block_size=16 if run.dry else 128),
        "masked_sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        "flash_sdpa_full_causal": lambda q, k, v: F.scaled_dot_product_attention(
            q, k, v, is_causal=True),
    }


def _inputs(run: Run, case: dict, b: int, h: int, dtype, seed: int = 0):
    torch = run.torch
    g = torch.Generator().manual_seed(seed)
    n, m = math.prod(case["q_shape"]), math.prod(case["kv_shape"])
    xs = [torch.randn(b, h, r, case["D"], generator=g) for r in (n, m, m, n)]
    xs = [x.to(run.device, dtype) for x in xs]
    return [x.requires_grad_() for x in xs[:3]], xs[3]


def check_method(run: Run, fn, leaves, do, dtype_name: str, reference_mask,
                 backward: bool = True) -> dict:
    """Output and q/k/v gradients of the call that is timed (the same inputs, so the same
    compiled kernels), on its first (batch, head) slice, against the dense fp32 reference
    (errors relative to the reference's largest magnitude)."""
    torch = run.torch
    from nuwa_lib.attention.reference import reference_attention
    ref_leaves = [x.detach()[:1, :1].float().requires_grad_() for x in leaves]
    ref = reference_attention(*ref_leaves, reference_mask)
    ref_grads = torch.autograd.grad(ref, ref_leaves, do[:1, :1].float())
    if backward:
        out = fn(*leaves)
        grads = [g[:1, :1] for g in torch.autograd.grad(out, leaves, do)]
    else:
        with torch.no_grad():
            out, grads = fn(*leaves), None
    tol_out, tol_grad = TOL[dtype_name]
    out, ref = out.detach()[:1, :1].float(), ref.detach()
    err_out = float((out - ref).abs().max() / ref.abs().max())
    result = {"rel_err_out": err_out, "ok": err_out <= tol_out}
    if grads is not None:
        err_grad = max(float((a.float() - r).abs().max() / r.abs().max().clamp_min(1e-12))
                       for a, r in zip(grads, ref_grads))
        result.update(rel_err_grads=err_grad, ok=result["ok"] and err_grad <= tol_grad)
    else:
        result["grads"] = "not checked: no backward for this method on the CPU"
    return result


# ------------------------------------------------------------------------------ parts
def part_checks(run: Run, entry: dict):
    from nuwa_lib.attention.check import backend_errors
    for dtype_name in ("float32", "bfloat16"):  # FlexAttention: checked in the benchmark part
        tol_out, tol_grad = TOL[dtype_name]
        try:
            rows = backend_errors(backends=("triton",), dtype=getattr(run.torch, dtype_name),
                                  device=run.device, dim=16 if run.dry else 64)
            entry[dtype_name] = {"rows": rows, "tolerance_abs": [tol_out * 10, tol_grad * 10],
                                 "ok": all(r["output_max_abs_error"] <= tol_out * 10
                                           and r["grad_max_abs_error"] <= tol_grad * 10
                                           for r in rows)}
        except Exception as err:  # noqa: BLE001 - keep the other precision's result
            entry[dtype_name] = {"ok": False, "error": f"{type(err).__name__}: {err}"[:2000]}
        run.save()
    if not all(entry[d]["ok"] for d in ("float32", "bfloat16")):
        raise RuntimeError("the Triton kernels failed a check against the reference")


def part_pytest(run: Run, entry: dict):
    """The kernel test file, compiled (interpreted in the dry run), with what time is left."""
    try:
        import hypothesis  # noqa: F401
        import pytest  # noqa: F401
    except ImportError as err:
        entry["result"] = f"not run: {err}"
        return
    env = dict(os.environ, TRITON_INTERPRET="1" if run.dry else "0")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           str(ROOT / "tests" / "test_attention_triton.py")]
    if run.dry:
        cmd += ["-k", "reachable"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=max(10, run.left() - 10))
        entry["result"] = {"returncode": proc.returncode, "tail": proc.stdout[-1500:]}
    except subprocess.TimeoutExpired as err:
        tail = (err.stdout or b"")[-1500:]
        entry["result"] = {"returncode": None, "timed_out_s": err.timeout,
                           "tail": tail.decode() if isinstance(tail, bytes) else tail}


def _time_method(run: Run, fn, leaves, do, backward: bool = True) -> dict:
    torch = run.torch

    def fwd():
        with torch.no_grad():
            fn(*leaves)

    timing = {"fwd_ms": run.time_ms(fwd)}
    if backward:
        out = fn(*leaves)
        timing["bwd_ms"] = run.time_ms(
            lambda: torch.autograd.grad(out, leaves, do, retain_graph=True))
        timing["fwd_bwd_ms"] = run.time_ms(lambda: torch.autograd.grad(fn(*leaves), leaves, do))
        del out
    if not run.dry:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        torch.autograd.grad(fn(*leaves), leaves, do)
        torch.cuda.synchronize()
        timing["peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    return timing


def _useful_tflops(case: dict, pairs: int, timing: dict) -> dict:
    work = pairs * case["B"] * case["H"] * case["D"]
    return {k: FLOPS_PER_PAIR[k] * work / (timing[f"{k}_ms"] * 1e-3) / 1e12
            for k in FLOPS_PER_PAIR if f"{k}_ms" in timing}


def part_benchmark(run: Run, entry: dict):
    from nuwa_lib.attention import count_pairs, full_mask, nearby_mask
    case = target_case(run)
    shape, kv, ext, causal = case["q_shape"], case["kv_shape"], case["extent"], case["causal"]
    pairs = count_pairs(shape, kv, ext, causal)
    entry["case"] = {**case, "attended_pairs_per_head": pairs,
                     "dense_causal_pairs_per_head": math.prod(shape) * (math.prod(shape) + 1) // 2}
    masks = {"nearby": nearby_mask(shape, kv, ext, causal, device=run.device),
             "full_causal": full_mask(shape, kv, True, device=run.device)}
    leaves, do = _inputs(run, case, case["B"], case["H"], getattr(run.torch, case["dtype"]))
    results = entry.setdefault("methods", {})
    for name, fn in methods(run, case).items():
        backward = not (run.dry and name == "flex")  # no FlexAttention backward on a CPU
        ref = masks["full_causal" if name == "flash_sdpa_full_causal" else "nearby"]
        res = results.setdefault(name, {})
        try:
            res["check"] = check_method(run, fn, leaves, do, case["dtype"], ref, backward)
            if not res["check"]["ok"]:
                res["status"] = "not timed: failed the check against the fp32 reference"
                continue
            res.update(_time_method(run, fn, leaves, do, backward))
            res["useful_tflops"] = _useful_tflops(case, pairs, res)
            res["status"] = "ok"
        except Exception as err:  # noqa: BLE001 - e.g. out of memory for the dense mask
            res["status"] = f"failed: {type(err).__name__}: {str(err)[:300]}"
        run.save()
    tri = results.get("triton", {})
    for other in ("flex", "masked_sdpa", "flash_sdpa_full_causal"):
        o = results.get(other, {})
        if "fwd_bwd_ms" in tri and "fwd_bwd_ms" in o:
            entry.setdefault("speedup_fwd_bwd", {})[f"triton_vs_{other}"] = \
                o["fwd_bwd_ms"] / tri["fwd_bwd_ms"]
    entry["targets"] = {"triton_vs_flex_min": 1.5, "triton_vs_masked_sdpa_min": 5.0}


def autotune_configs(run: Run) -> list:
    if run.dry:
        return [(16, 16, 4), (16, 32, 4)]
    return [(64, 64, 4), (64, 32, 4), (128, 64, 8), (64, 128, 4), (32, 32, 4), (128, 128, 8)]


def part_autotune(run: Run, entry: dict):
    from nuwa_lib.attention import nearby_mask
    case = target_case(run)
    ref = nearby_mask(case["q_shape"], case["kv_shape"], case["extent"], case["causal"],
                      device=run.device)
    leaves, do = _inputs(run, case, case["B"], case["H"], getattr(run.torch, case["dtype"]))
    configs = entry.setdefault("configs", [])
    for bm, bn, warps in autotune_configs(run):
        if run.left() < 20:
            configs.append({"blocks": [bm, bn, warps], "status": "skipped: budget"})
            break
        fn = methods(run, case, dict(block_m=bm, block_n=bn, num_warps=warps))["triton"]
        row = {"blocks": [bm, bn, warps]}
        try:
            row["check"] = check_method(run, fn, leaves, do, case["dtype"], ref)
            if row["check"]["ok"]:
                out = fn(*leaves)
                row["fwd_bwd_ms"] = run.time_ms(
                    lambda: run.torch.autograd.grad(fn(*leaves), leaves, do))
                del out
            row["status"] = "ok" if row["check"]["ok"] else "failed the check"
        except Exception as err:  # noqa: BLE001 - e.g. out of shared memory for big blocks
            row["status"] = f"failed: {type(err).__name__}: {str(err)[:300]}"
        configs.append(row)
        run.save()


def part_choice(run: Run, entry: dict):
    """The fastest correct backend on the benchmark case: Triton (at its best checked block
    configuration, only if the kernels passed every check of part 1) or FlexAttention."""
    parts = run.record["parts"]
    tuned = [c for c in parts.get("autotune", {}).get("configs", []) if "fwd_bwd_ms" in c]
    best = min(tuned, key=lambda c: c["fwd_bwd_ms"]) if tuned else None
    timed = parts.get("benchmark", {}).get("methods", {})
    candidates = {}
    if parts.get("checks", {}).get("status") == "ok":
        tri = timed.get("triton", {})
        if best:
            candidates["triton"] = best["fwd_bwd_ms"]
        elif "fwd_bwd_ms" in tri:
            candidates["triton"] = tri["fwd_bwd_ms"]
    else:
        entry["triton_excluded"] = "part 'checks' failed or did not run"
    if "fwd_bwd_ms" in timed.get("flex", {}):
        candidates["flex"] = timed["flex"]["fwd_bwd_ms"]
    if not candidates:
        raise RuntimeError("no correct, timed backend to choose from")
    backend = min(candidates, key=candidates.get)
    from nuwa_lib.attention.triton_nearby import DEFAULT_CUDA_BLOCKS
    triton_blocks = best["blocks"] if best else list(DEFAULT_CUDA_BLOCKS)
    entry.update(fwd_bwd_ms=candidates, case="parts.benchmark.case")
    run.record["choice"] = {"backend": backend,
                            "blocks": triton_blocks if backend == "triton" else None,
                            "triton_blocks": triton_blocks,
                            "rule": "fastest forward+backward on the benchmark case among the "
                                    "backends that passed their checks"}


def _use_triton(run: Run, entry: dict):
    """The paper step runs the Triton kernels (one compile per attention of the model; a
    FlexAttention model would compile each mask) at this run's best checked blocks."""
    import nuwa_lib.attention as attention
    import nuwa_lib.attention.triton_nearby as kernels
    blocks = (run.record.get("choice") or {}).get("triton_blocks")
    chosen = {"backend": "triton", "blocks": tuple(blocks) if blocks else None,
              "source": "this run" if blocks else "defaults"}
    attention.measured_choice = kernels.measured_choice = lambda: chosen
    entry["attention"] = {"backend": "triton",
                          "blocks": list(blocks) if blocks else list(kernels.DEFAULT_CUDA_BLOCKS)}


def part_paper_step(run: Run, entry: dict):
    torch = run.torch
    from nuwa_lib.model.config import Condition, NuwaConfig
    from nuwa_lib.model.nuwa import Nuwa
    from nuwa_lib.utils.profiles import load_profile
    if run.dry:
        config = NuwaConfig(dim=32, heads=2, encoder_layers=1, decoder_layers=1, text_length=8,
                            codebook_size=64, target_tokens=(2, 4, 4), sketch_tokens=(2, 4, 4))
        batches, steps = [1, 2], 1
    else:
        config = NuwaConfig.from_profile(load_profile("paper"))
        batches, steps = [1, 2, 4, 8, 16, 32, 64], 3
    grid, n_text = config.target_tokens, config.text_length
    entry["config"] = {"dim": config.dim, "heads": config.heads,
                       "layers": [config.encoder_layers, config.decoder_layers],
                       "target_tokens": list(grid), "text_tokens": n_text,
                       "autocast": "bfloat16" if not run.dry else "none (CPU)"}
    if not run.dry:
        _use_triton(run, entry)
    torch.manual_seed(0)
    model = Nuwa(config).to(run.device)
    entry["parameters"] = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    rows = entry.setdefault("batches", [])

    def step(b):
        text = torch.randint(0, config.text_vocab, (b, n_text), device=run.device)
        target = torch.randint(0, config.codebook_size, (b, *grid), device=run.device)
        cond = Condition("text", text, (n_text, 1, 1))
        ctx = (torch.autocast("cuda", dtype=torch.bfloat16) if not run.dry
               else torch.autocast("cpu", enabled=False))
        with ctx:
            loss = model.loss(cond, target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    for b in batches:
        last = rows[-1].get("step_s", 0.0) if rows else 0.0
        if run.left() < 30 + 2.5 * (steps + 1) * last:  # the next batch takes about twice as long
            rows.append({"batch": b, "status": "skipped: budget"})
            break
        try:
            if not run.dry:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            step(b)  # warm-up (kernel compilation, optimiser state)
            run.sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                loss = step(b)
            run.sync()
            dt = (time.perf_counter() - t0) / steps
            row = {"batch": b, "step_s": dt, "target_tokens_per_s": b * math.prod(grid) / dt,
                   "loss": loss, "status": "ok"}
            if not run.dry:
                row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            rows.append(row)
            run.save()
        except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
            if not isinstance(err, torch.cuda.OutOfMemoryError) and not any(
                    m in str(err) for m in ("out of memory", "ALLOC_FAILED")):
                raise
            opt.zero_grad(set_to_none=True)
            gc.collect()
            rows.append({"batch": b, "status": "out of memory"})
            break
    fits = [r["batch"] for r in rows if r.get("status") == "ok"]
    entry["largest_batch_that_fits"] = max(fits) if fits else None
    entry["largest_batch_note"] = ("largest power of two tried that ran; the next one ran out "
                                   "of memory" if rows and rows[-1]["status"] == "out of memory"
                                   else "largest tried (none ran out of memory)")


def part_retrain_stage(run: Run, entry: dict):
    """The ``mini`` Eq. 16 pretraining run (``make retrain``'s longest single run) for a slice
    of its steps on this device, bf16 autocast on CUDA, against the CPU time per step the
    shipped model's manifest entry records (same model, batch and data size). Untrained
    tokenizers give the tokens: a step's cost does not depend on their values."""
    torch = run.torch
    from dataclasses import replace

    from nuwa_lib.experiments import record
    from nuwa_lib.tokenizers.token_sets import profile_tokenizers
    from nuwa_lib.training import runs, trainer
    from nuwa_lib.training.distributed import Dist
    from nuwa_lib.utils import weights
    from nuwa_lib.utils.profiles import load_profile

    cfg = load_profile("smoke" if run.dry else "mini")
    steps, warm, size = (3, 1, 16) if run.dry else (200, 20, 1000)
    toks = profile_tokenizers(cfg, untrained=True, progress=False)
    r = record.pretraining_run(cfg)
    p = runs.plan(r.cfg, tokenizers=toks, progress=False)
    data = runs.build_data(p.tasks, p.roles, toks, size, progress=False, **p.run["world"])
    config = replace(p.config, bf16=not run.dry)
    tr = trainer.Trainer(p.model_config, config, data, dist=Dist(device=run.device))
    for _ in range(warm):
        tr.train_step()
    run.sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    run.sync()
    step_s = (time.perf_counter() - t0) / steps
    entry.update(profile=cfg["name"], tasks=list(p.tasks), batch=config.batch_size,
                 steps_timed=steps, device_step_s=step_s,
                 autocast="bfloat16" if config.bf16 else "none")
    shipped = next((e for e in weights.manifest(cfg["name"])["files"].values()
                    if e.get("slot") == r.slot), None)
    if shipped and shipped.get("steps") and shipped.get("train_seconds"):
        cpu_step = shipped["train_seconds"] / shipped["steps"]
        entry.update(cpu_step_s=cpu_step, cpu_trained_by=shipped.get("trained_by"),
                     speedup=cpu_step / step_s,
                     stage_estimate_s=step_s * shipped["steps"])
    else:
        entry["cpu_step_s"] = None        # smoke ships no model: nothing to compare with


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, tiny shapes, Triton interpreter: checks that every part runs")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench"))
    ap.add_argument("--budget-s", type=float, default=480.0)
    args = ap.parse_args(argv)
    started = time.monotonic()
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported
    sys.path.insert(0, str(ROOT))
    import torch
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("gpu_run: no CUDA device; use --dry-run on a CPU machine")
    run = Run(args)
    run.start = started
    try:
        from nuwa_lib.utils.provenance import provenance
        run.record["provenance"] = provenance(profile="paper", seed=0)
    except Exception as err:  # noqa: BLE001 - a copy without git still measures
        run.record["provenance"] = {"error": repr(err)}
    run.save()
    run.part("checks", lambda e: part_checks(run, e), needs_s=60)
    run.part("benchmark", lambda e: part_benchmark(run, e), needs_s=60)
    run.part("choice", lambda e: part_choice(run, e), needs_s=-math.inf)
    run.part("paper_step", lambda e: part_paper_step(run, e), needs_s=90)
    run.part("retrain_stage", lambda e: part_retrain_stage(run, e), needs_s=90)
    run.part("autotune", lambda e: part_autotune(run, e), needs_s=40)
    run.part("choice", lambda e: part_choice(run, e), needs_s=-math.inf)  # with the tuned blocks
    run.part("pytest", lambda e: part_pytest(run, e), needs_s=30)
    print(json.dumps({k: v.get("status") for k, v in run.record["parts"].items()}, indent=1))
    print(f"gpu_run: wrote {run.path} in {time.monotonic() - run.start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
