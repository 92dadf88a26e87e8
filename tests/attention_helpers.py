"""Inputs and case generators shared by the 3DNA test files (torch and Triton backends)."""
import math

import torch
from hypothesis import strategies as st


def qkv(q_shape, kv_shape, B=2, H=2, D=8, G=0, dtype=torch.float32, seed=0, device="cpu"):
    """Seeded q, k, v (and G global keys/values, or None) for grids q_shape and kv_shape."""
    g = torch.Generator().manual_seed(seed)
    nq, nk = math.prod(q_shape), math.prod(kv_shape)

    def make(n):
        return torch.randn(B, H, n, D, generator=g).to(device, dtype)

    return make(nq), make(nk), make(nk), ((make(G), make(G)) if G else None)


def outputs_and_grads(fn, q, k, v, gkv, seed=1):
    """``fn(q, k, v, global_kv)`` and the gradients of q, k, v (and the global keys)."""
    leaves = [x.detach().clone().requires_grad_(True) for x in (q, k, v)]
    g_leaves = [x.detach().clone().requires_grad_(True) for x in gkv] if gkv else []
    out = fn(*leaves, tuple(g_leaves) if gkv else None)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out)
    return out, torch.autograd.grad(out, leaves + g_leaves, grad_out)


@st.composite
def nearby_cases(draw, max_text=24, max_image_side=9, grid=st.integers(1, 6), max_extent=3):
    """Text (L,1,1), images (1,h,w), videos (s,h,w) and cross grids of different sizes, extents
    0..max_extent or None. Returns (q_shape, kv_shape, extent, causal, n_global)."""
    ext = st.one_of(st.none(), st.integers(0, max_extent))
    kind = draw(st.sampled_from(["text", "image", "video", "cross"]))
    if kind == "text":
        q_shape = kv_shape = (draw(st.integers(1, max_text)), 1, 1)
        extent = (draw(ext), 0, 0)
    elif kind == "image":
        q_shape = kv_shape = (1, draw(st.integers(1, max_image_side)),
                              draw(st.integers(1, max_image_side)))
        extent = (0, draw(ext), draw(ext))
    else:
        q_shape = (draw(grid), draw(grid), draw(grid))
        kv_shape = q_shape if kind == "video" else (draw(grid), draw(grid), draw(grid))
        extent = (draw(ext), draw(ext), draw(ext))
    causal = kind != "cross" and draw(st.booleans())
    return q_shape, kv_shape, extent, causal, draw(st.integers(0, 2))
