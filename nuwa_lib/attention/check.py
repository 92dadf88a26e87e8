"""Backend agreement on a few representative cases (the correctness cell of notebook 03).

The property tests in ``tests/`` sweep random grids; this is the short, readable version
a reader runs: every backend against the dense ``reference`` on a causal video, an image,
text, cross-attention between grids of different sizes, and global keys.
"""
from __future__ import annotations

import math

import torch

CASES = {
    "video 3x5x6, causal, e=(1,1,1)": dict(q_shape=(3, 5, 6), kv_shape=(3, 5, 6),
                                           extent=(1, 1, 1), causal=True),
    "image 1x7x7, e=(0,2,2)": dict(q_shape=(1, 7, 7), kv_shape=(1, 7, 7), extent=(0, 2, 2)),
    "text 9x1x1, e=(None,0,0)": dict(q_shape=(9, 1, 1), kv_shape=(9, 1, 1),
                                     extent=(None, 0, 0)),
    "cross 2x6x6 -> 1x3x3, e=(0,1,1)": dict(q_shape=(2, 6, 6), kv_shape=(1, 3, 3),
                                            extent=(0, 1, 1)),
    "video 2x4x5 + 1 global key, causal": dict(q_shape=(2, 4, 5), kv_shape=(2, 4, 5),
                                               extent=(1, 1, 2), causal=True, n_global=1),
}


def _inputs(case: dict, batch: int, heads: int, dim: int, generator, device):
    def t(n):
        return torch.randn(batch, heads, n, dim, generator=generator).to(device)

    q = t(math.prod(case["q_shape"]))
    k, v = t(math.prod(case["kv_shape"])), t(math.prod(case["kv_shape"]))
    g = case.get("n_global", 0)
    return q, k, v, ((t(g), t(g)) if g else None)


def backend_errors(backends=("torch", "triton"), cases=None, seed: int = 0, batch: int = 1,
                   heads: int = 2, dim: int = 16, dtype=torch.float32, device="cpu") -> list[dict]:
    """Max |output - reference| and max |gradient - reference gradient| (over q, k, v and
    the global keys) for each backend and case; the backends get inputs in ``dtype``, the
    dense reference runs in float32 on the same values."""
    from . import nearby_attention

    rows = []
    for name, case in (cases or CASES).items():
        gen = torch.Generator().manual_seed(seed)
        q, k, v, glob = _inputs(case, batch, heads, dim, gen, device)
        kw = {key: case[key] for key in ("q_shape", "kv_shape", "extent")}
        kw["causal"] = case.get("causal", False)
        grad_out = torch.randn(batch, heads, q.shape[2], dim, generator=gen).to(device)

        def run(backend, dtype):
            leaves = [x.to(dtype).requires_grad_() for x in (q, k, v, *(glob or ()))]
            out = nearby_attention(*leaves[:3], global_kv=tuple(leaves[3:]) or None,
                                   backend=backend, **kw)
            grads = torch.autograd.grad(out, leaves, grad_out.to(dtype))
            return out.detach().float(), [g.float() for g in grads]

        ref_out, ref_grads = run("reference", torch.float32)
        for backend in backends:
            out, grads = run(backend, dtype)
            rows.append({
                "case": name, "backend": backend,
                "output_max_abs_error": float((out - ref_out).abs().max()),
                "grad_max_abs_error": max(float((a - b).abs().max())
                                          for a, b in zip(grads, ref_grads)),
            })
    return rows
