"""3DNA as fused Triton kernels: forward and backward, online softmax (Eqs. 7-11).

Layout: q (B, H, Nq, D), k and v (B, H, Nk, D), made contiguous; token n of a grid
(s, h, w) is (n // hw, n // w % h, n % w) (time-major raster order).

* A *tile* is a small box of the grid: ``TF`` whole frames when a frame holds fewer than
  ``BLOCK_M`` tokens, otherwise a run of ``CH`` consecutive tokens of one frame (whole rows
  when a row fits). Each program owns one query tile (forward, dq) or one key tile (dk, dv).
* From the tile's bounding box the kernel derives the box of the other grid that can
  interact with it, Eq. (7) -- frames, rows and columns -- and visits only that box, as
  contiguous index ranges (one per frame, or one for all frames when whole frames are in
  the box), ``BLOCK_N`` (or ``BLOCK_M``) indices at a time. The exact mask is applied per
  element from coordinates, so any grid size works and loads past the ends are masked.
* Forward keeps a running max and sum (flash-attention style) and stores the log-sum-exp
  (base 2); the backward recomputes P from it: one kernel accumulates dq per query tile,
  one accumulates dk and dv per key tile by walking the inverse window (the queries whose
  windows contain the tile), and one handles the global keys, which every query sees.
* Inputs may be fp32, fp16 or bf16; accumulation is fp32 (fp32 dots use IEEE precision).
  Head dims up to 128 are padded to a power of two with masked loads.

Works compiled on CUDA and on CPU tensors under ``TRITON_INTERPRET=1`` (set before Triton
is imported), where it proves the logic but not the speed.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from .masks import resolve_extent

LOG2E = 1.4426950408889634


# ------------------------------------------------------------------ tile geometry
@triton.jit
def _tile_box(pid, S, H, W, TF, CH, NCH):
    """Bounding box of tile ``pid``: frames t0..t1, flat positions p0..p1, rows, columns."""
    HW = H * W
    t0 = (pid // NCH) * TF
    p0 = (pid % NCH) * CH
    t1 = tl.minimum(t0 + TF, S) - 1
    p1 = tl.minimum(p0 + CH, HW) - 1
    r0 = p0 // W
    r1 = p1 // W
    c0 = tl.where(r0 == r1, p0 % W, 0)
    c1 = tl.where(r0 == r1, p1 % W, W - 1)
    return t0, t1, p0, p1, r0, r1, c0, c1


@triton.jit
def _tile_tokens(t0, t1, p0, p1, TF, CH, HW, BLOCK: tl.constexpr):
    """Raster indices of the tile's tokens and which of the BLOCK lanes are real."""
    offs = tl.arange(0, BLOCK)
    frame = t0 + offs // CH
    pos = p0 + offs % CH
    valid = (offs < TF * CH) & (frame <= t1) & (pos <= p1)
    return frame * HW + pos, valid


@triton.jit
def _project(idx, S, H, W, S2, H2, W2):
    """Raster index on (S, H, W) -> coordinates on (S2, H2, W2), Sec. 3.2 (floor rule)."""
    HW = H * W
    t = idx // HW
    i = (idx // W) % H
    j = idx % W
    return (t * S2) // S, (i * H2) // H, (j * W2) // W


@triton.jit
def _coords(idx, H, W):
    HW = H * W
    return idx // HW, (idx // W) % H, idx % W


@triton.jit
def _ceil_div(a, b):
    return (a + b - 1) // b


@triton.jit
def _mm(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b with fp32 accumulation. UPCAST: only under the interpreter with bf16 inputs,
    whose tl.dot multiplies the raw bf16 bit patterns (seen with Triton 3.8)."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=PRECISION)


# ------------------------------------------------------------------------ forward
@triton.jit
def _attend_block(acc, m_i, l_i, q, k_ptrs, v_ptrs, kmask, vis, qk_scale,
                  PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """One online-softmax step (base 2) over a block of keys, Eq. (11)."""
    k = tl.load(k_ptrs, mask=kmask, other=0.0)
    v = tl.load(v_ptrs, mask=kmask, other=0.0)
    qk = _mm(q, tl.trans(k), PRECISION, UPCAST) * qk_scale
    qk = tl.where(vis, qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(qk - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + _mm(p.to(v.dtype), v, PRECISION, UPCAST)
    return acc, m_new, l_i


@triton.jit
def _nearby_fwd_kernel(
        Q, K, V, KG, VG, O, LSE,
        S, H, W, S2, H2, W2, ES, EH, EW, G, D,
        TF, CH, NCH, qk_scale,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    HW, HW2 = H * W, H2 * W2
    NQ, NK = S * HW, S2 * HW2
    q_base, k_base, g_base = bh * NQ * D, bh * NK * D, bh * G * D

    t0, t1, p0, p1, r0, r1, c0, c1 = _tile_box(pid, S, H, W, TF, CH, NCH)
    q_idx, q_valid = _tile_tokens(t0, t1, p0, p1, TF, CH, HW, BLOCK_M)
    qs, qi, qj = _project(q_idx, S, H, W, S2, H2, W2)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    q = tl.load(Q + q_base + q_idx[:, None] * D + offs_d[None, :],
                mask=q_valid[:, None] & d_ok[None, :], other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    offs_n = tl.arange(0, BLOCK_N)

    # Global keys (e.g. <bos>): visible to every query.
    for g0 in range(0, G, BLOCK_N):
        g_idx = g0 + offs_n
        g_ok = g_idx < G
        ptr = g_base + g_idx[:, None] * D + offs_d[None, :]
        acc, m_i, l_i = _attend_block(acc, m_i, l_i, q, KG + ptr, VG + ptr,
                                      g_ok[:, None] & d_ok[None, :], g_ok[None, :],
                                      qk_scale, PRECISION, UPCAST)

    # Key box of the tile's windows, Eq. (7): frames, rows, columns of the key grid.
    f_lo = tl.maximum((t0 * S2) // S - ES, 0)
    f_hi = tl.minimum((t1 * S2) // S + ES, S2 - 1)
    r_lo = tl.maximum((r0 * H2) // H - EH, 0)
    r_hi = tl.minimum((r1 * H2) // H + EH, H2 - 1)
    c_lo = tl.maximum((c0 * W2) // W - EW, 0)
    c_hi = tl.minimum((c1 * W2) // W + EW, W2 - 1)
    whole = (r_lo == 0) & (r_hi == H2 - 1) & (c_lo == 0) & (c_hi == W2 - 1)
    n_ranges = tl.where(whole, 1, f_hi - f_lo + 1)
    frames_per_range = tl.where(whole, f_hi - f_lo + 1, 1)
    q_last = t1 * HW + p1
    for r in range(0, n_ranges):
        f = f_lo + r
        k_start = f * HW2 + r_lo * W2 + c_lo
        k_end = (f + frames_per_range - 1) * HW2 + r_hi * W2 + c_hi  # inclusive
        if CAUSAL:
            k_end = tl.minimum(k_end, q_last)
        for n0 in range(k_start, k_end + 1, BLOCK_N):
            k_idx = n0 + offs_n
            k_ok = k_idx <= k_end
            ks, ki, kj = _coords(k_idx, H2, W2)
            vis = k_ok[None, :] \
                & (tl.abs(ks[None, :] - qs[:, None]) <= ES) \
                & (tl.abs(ki[None, :] - qi[:, None]) <= EH) \
                & (tl.abs(kj[None, :] - qj[:, None]) <= EW)
            if CAUSAL:
                vis = vis & (k_idx[None, :] <= q_idx[:, None])
            ptr = k_base + k_idx[:, None] * D + offs_d[None, :]
            acc, m_i, l_i = _attend_block(acc, m_i, l_i, q, K + ptr, V + ptr,
                                          k_ok[:, None] & d_ok[None, :], vis,
                                          qk_scale, PRECISION, UPCAST)

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    tl.store(O + q_base + q_idx[:, None] * D + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=q_valid[:, None] & d_ok[None, :])
    tl.store(LSE + bh * NQ + q_idx, m_i + tl.log2(l_safe), mask=q_valid)


# ----------------------------------------------------------------------- backward
@triton.jit
def _dq_block(dq, q, do, lse, delta, k_ptrs, v_ptrs, kmask, vis, qk_scale,
              PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    k = tl.load(k_ptrs, mask=kmask, other=0.0)
    v = tl.load(v_ptrs, mask=kmask, other=0.0)
    qk = _mm(q, tl.trans(k), PRECISION, UPCAST) * qk_scale
    p = tl.where(vis, tl.exp2(qk - lse[:, None]), 0.0)
    dp = _mm(do, tl.trans(v), PRECISION, UPCAST)
    ds = p * (dp - delta[:, None])
    return dq + _mm(ds.to(k.dtype), k, PRECISION, UPCAST)


@triton.jit
def _nearby_bwd_dq_kernel(
        Q, K, V, KG, VG, DO, LSE, DELTA, DQ,
        S, H, W, S2, H2, W2, ES, EH, EW, G, D,
        TF, CH, NCH, qk_scale, sm_scale,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    HW, HW2 = H * W, H2 * W2
    NQ, NK = S * HW, S2 * HW2
    q_base, k_base, g_base = bh * NQ * D, bh * NK * D, bh * G * D

    t0, t1, p0, p1, r0, r1, c0, c1 = _tile_box(pid, S, H, W, TF, CH, NCH)
    q_idx, q_valid = _tile_tokens(t0, t1, p0, p1, TF, CH, HW, BLOCK_M)
    qs, qi, qj = _project(q_idx, S, H, W, S2, H2, W2)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    q_ptr = q_base + q_idx[:, None] * D + offs_d[None, :]
    q_mask = q_valid[:, None] & d_ok[None, :]
    q = tl.load(Q + q_ptr, mask=q_mask, other=0.0)
    do = tl.load(DO + q_ptr, mask=q_mask, other=0.0)
    lse = tl.load(LSE + bh * NQ + q_idx, mask=q_valid, other=0.0)
    delta = tl.load(DELTA + bh * NQ + q_idx, mask=q_valid, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    offs_n = tl.arange(0, BLOCK_N)

    for g0 in range(0, G, BLOCK_N):
        g_idx = g0 + offs_n
        g_ok = g_idx < G
        ptr = g_base + g_idx[:, None] * D + offs_d[None, :]
        dq = _dq_block(dq, q, do, lse, delta, KG + ptr, VG + ptr, g_ok[:, None] & d_ok[None, :],
                       q_valid[:, None] & g_ok[None, :], qk_scale, PRECISION, UPCAST)

    f_lo = tl.maximum((t0 * S2) // S - ES, 0)
    f_hi = tl.minimum((t1 * S2) // S + ES, S2 - 1)
    r_lo = tl.maximum((r0 * H2) // H - EH, 0)
    r_hi = tl.minimum((r1 * H2) // H + EH, H2 - 1)
    c_lo = tl.maximum((c0 * W2) // W - EW, 0)
    c_hi = tl.minimum((c1 * W2) // W + EW, W2 - 1)
    whole = (r_lo == 0) & (r_hi == H2 - 1) & (c_lo == 0) & (c_hi == W2 - 1)
    n_ranges = tl.where(whole, 1, f_hi - f_lo + 1)
    frames_per_range = tl.where(whole, f_hi - f_lo + 1, 1)
    q_last = t1 * HW + p1
    for r in range(0, n_ranges):
        f = f_lo + r
        k_start = f * HW2 + r_lo * W2 + c_lo
        k_end = (f + frames_per_range - 1) * HW2 + r_hi * W2 + c_hi
        if CAUSAL:
            k_end = tl.minimum(k_end, q_last)
        for n0 in range(k_start, k_end + 1, BLOCK_N):
            k_idx = n0 + offs_n
            k_ok = k_idx <= k_end
            ks, ki, kj = _coords(k_idx, H2, W2)
            vis = q_valid[:, None] & k_ok[None, :] \
                & (tl.abs(ks[None, :] - qs[:, None]) <= ES) \
                & (tl.abs(ki[None, :] - qi[:, None]) <= EH) \
                & (tl.abs(kj[None, :] - qj[:, None]) <= EW)
            if CAUSAL:
                vis = vis & (k_idx[None, :] <= q_idx[:, None])
            ptr = k_base + k_idx[:, None] * D + offs_d[None, :]
            dq = _dq_block(dq, q, do, lse, delta, K + ptr, V + ptr, k_ok[:, None] & d_ok[None, :],
                           vis, qk_scale, PRECISION, UPCAST)

    tl.store(DQ + q_ptr, (dq * sm_scale).to(DQ.dtype.element_ty), mask=q_mask)


@triton.jit
def _dkdv_block(dk, dv, k, v, q_ptrs, do_ptrs, qmask, lse_ptrs, delta_ptrs, q_ok, vis, qk_scale,
                PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """Contribution of a block of queries to a block of keys (all transposed: keys x queries)."""
    q = tl.load(q_ptrs, mask=qmask, other=0.0)
    do = tl.load(do_ptrs, mask=qmask, other=0.0)
    lse = tl.load(lse_ptrs, mask=q_ok, other=0.0)
    delta = tl.load(delta_ptrs, mask=q_ok, other=0.0)
    kq = _mm(k, tl.trans(q), PRECISION, UPCAST) * qk_scale
    p_t = tl.where(vis, tl.exp2(kq - lse[None, :]), 0.0)
    dv += _mm(p_t.to(do.dtype), do, PRECISION, UPCAST)
    dp_t = _mm(v, tl.trans(do), PRECISION, UPCAST)
    ds_t = p_t * (dp_t - delta[None, :])
    dk += _mm(ds_t.to(q.dtype), q, PRECISION, UPCAST)
    return dk, dv


@triton.jit
def _nearby_bwd_dkdv_kernel(
        Q, K, V, DO, LSE, DELTA, DK, DV,
        S, H, W, S2, H2, W2, ES, EH, EW, D,
        TF, CH, NCH, qk_scale, sm_scale,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    HW, HW2 = H * W, H2 * W2
    NQ, NK = S * HW, S2 * HW2
    q_base, k_base = bh * NQ * D, bh * NK * D

    # This program's key tile, on the key grid.
    f0, f1, p0, p1, r0, r1, c0, c1 = _tile_box(pid, S2, H2, W2, TF, CH, NCH)
    k_idx, k_valid = _tile_tokens(f0, f1, p0, p1, TF, CH, HW2, BLOCK_N)
    ks, ki, kj = _coords(k_idx, H2, W2)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    k_ptr = k_base + k_idx[:, None] * D + offs_d[None, :]
    k_mask = k_valid[:, None] & d_ok[None, :]
    k = tl.load(K + k_ptr, mask=k_mask, other=0.0)
    v = tl.load(V + k_ptr, mask=k_mask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    offs_m = tl.arange(0, BLOCK_M)

    # Inverse window: queries x with |floor(x n'/n) - y| <= e for some key coordinate y of
    # the tile, i.e. ceil((y_lo - e) n / n') <= x <= ceil((y_hi + e + 1) n / n') - 1.
    t_lo = _ceil_div(tl.maximum(f0 - ES, 0) * S, S2)
    t_hi = _ceil_div(tl.minimum(f1 + ES + 1, S2) * S, S2) - 1
    i_lo = _ceil_div(tl.maximum(r0 - EH, 0) * H, H2)
    i_hi = _ceil_div(tl.minimum(r1 + EH + 1, H2) * H, H2) - 1
    j_lo = _ceil_div(tl.maximum(c0 - EW, 0) * W, W2)
    j_hi = _ceil_div(tl.minimum(c1 + EW + 1, W2) * W, W2) - 1
    whole = (i_lo == 0) & (i_hi == H - 1) & (j_lo == 0) & (j_hi == W - 1)
    n_ranges = tl.where(t_hi >= t_lo, tl.where(whole, 1, t_hi - t_lo + 1), 0)
    frames_per_range = tl.where(whole, t_hi - t_lo + 1, 1)
    k_first = f0 * HW2 + p0
    for r in range(0, n_ranges):
        t = t_lo + r
        q_start = t * HW + i_lo * W + j_lo
        q_end = (t + frames_per_range - 1) * HW + i_hi * W + j_hi  # inclusive
        if CAUSAL:
            q_start = tl.maximum(q_start, k_first)  # causal: only queries at/after the keys
        for m0 in range(q_start, q_end + 1, BLOCK_M):
            q_idx = m0 + offs_m
            q_ok = q_idx <= q_end
            qs, qi, qj = _project(q_idx, S, H, W, S2, H2, W2)
            vis = k_valid[:, None] & q_ok[None, :] \
                & (tl.abs(ks[:, None] - qs[None, :]) <= ES) \
                & (tl.abs(ki[:, None] - qi[None, :]) <= EH) \
                & (tl.abs(kj[:, None] - qj[None, :]) <= EW)
            if CAUSAL:
                vis = vis & (k_idx[:, None] <= q_idx[None, :])
            q_ptr = q_base + q_idx[:, None] * D + offs_d[None, :]
            dk, dv = _dkdv_block(dk, dv, k, v, Q + q_ptr, DO + q_ptr, q_ok[:, None] & d_ok[None, :],
                                 LSE + bh * NQ + q_idx, DELTA + bh * NQ + q_idx, q_ok, vis,
                                 qk_scale, PRECISION, UPCAST)

    tl.store(DK + k_ptr, (dk * sm_scale).to(DK.dtype.element_ty), mask=k_mask)
    tl.store(DV + k_ptr, dv.to(DV.dtype.element_ty), mask=k_mask)


@triton.jit
def _global_bwd_dkdv_kernel(
        Q, KG, VG, DO, LSE, DELTA, DKG, DVG, NQ, G, D, qk_scale, sm_scale,
        PRECISION: tl.constexpr, UPCAST: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """dk, dv of the global keys: every query sees them."""
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    q_base, g_base = bh * NQ * D, bh * G * D
    g_idx = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    g_ok = g_idx < G
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    g_ptr = g_base + g_idx[:, None] * D + offs_d[None, :]
    g_mask = g_ok[:, None] & d_ok[None, :]
    k = tl.load(KG + g_ptr, mask=g_mask, other=0.0)
    v = tl.load(VG + g_ptr, mask=g_mask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    offs_m = tl.arange(0, BLOCK_M)
    for m0 in range(0, NQ, BLOCK_M):
        q_idx = m0 + offs_m
        q_ok = q_idx < NQ
        q_ptr = q_base + q_idx[:, None] * D + offs_d[None, :]
        dk, dv = _dkdv_block(dk, dv, k, v, Q + q_ptr, DO + q_ptr, q_ok[:, None] & d_ok[None, :],
                             LSE + bh * NQ + q_idx, DELTA + bh * NQ + q_idx, q_ok,
                             g_ok[:, None] & q_ok[None, :], qk_scale, PRECISION, UPCAST)
    tl.store(DKG + g_ptr, (dk * sm_scale).to(DKG.dtype.element_ty), mask=g_mask)
    tl.store(DVG + g_ptr, dv.to(DVG.dtype.element_ty), mask=g_mask)


# ------------------------------------------------------------------------ wrapper
def interpreted() -> bool:
    """Whether these kernels were built for the Triton interpreter (TRITON_INTERPRET=1)."""
    return type(_nearby_fwd_kernel).__name__ == "InterpretedFunction"


def _tiling(shape, block: int) -> Tuple[int, int, int, int]:
    """(TF, CH, NCH, n_tiles): whole frames per tile, or CH tokens (whole rows if they fit)."""
    s, h, w = shape
    hw = h * w
    if hw <= block:
        tf = max(1, block // hw)
        return tf, hw, 1, triton.cdiv(s, tf)
    ch = (block // w) * w if w <= block else block
    nch = triton.cdiv(hw, ch)
    return 1, ch, nch, s * nch


def _block_sizes(D: int, device: torch.device, block_m, block_n, num_warps):
    block_d = max(16, triton.next_power_of_2(D))
    if block_m is None:
        block_m = 64 if device.type == "cuda" else 16
    if block_n is None:
        block_n = (64 if block_d <= 64 else 32) if device.type == "cuda" else 16
    if num_warps is None:
        num_warps = 4
    return block_m, block_n, block_d, num_warps


class NearbyAttentionFunction(torch.autograd.Function):
    """Fused 3DNA: forward stores the log-sum-exp; backward recomputes P (flash style)."""

    @staticmethod
    def forward(ctx, q, k, v, kg, vg, q_shape, kv_shape, extent, causal, blocks):
        B, H, NQ, D = q.shape
        block_m, block_n, block_d, num_warps = blocks
        q, k, v, kg, vg = (x.contiguous() for x in (q, k, v, kg, vg))
        G = kg.shape[2]
        sm_scale = 1.0 / math.sqrt(D)
        precision = "ieee" if q.dtype == torch.float32 else "tf32"
        upcast = interpreted() and q.dtype == torch.bfloat16
        o = torch.empty_like(q)
        lse = torch.empty(B, H, NQ, device=q.device, dtype=torch.float32)
        tf, ch, nch, n_tiles = _tiling(q_shape, block_m)
        kg_arg, vg_arg = (kg, vg) if G > 0 else (q, q)  # never read when G == 0
        _nearby_fwd_kernel[(n_tiles, B * H)](
            q, k, v, kg_arg, vg_arg, o, lse, *q_shape, *kv_shape, *extent, G, D,
            tf, ch, nch, sm_scale * LOG2E,
            CAUSAL=causal, PRECISION=precision, UPCAST=upcast,
            BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=num_warps)
        ctx.save_for_backward(q, k, v, kg, vg, o, lse)
        ctx.args = (q_shape, kv_shape, extent, causal, blocks, sm_scale, precision, upcast)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, kg, vg, o, lse = ctx.saved_tensors
        q_shape, kv_shape, extent, causal, blocks, sm_scale, precision, upcast = ctx.args
        block_m, block_n, block_d, num_warps = blocks
        B, H, NQ, D = q.shape
        G = kg.shape[2]
        do = do.contiguous()
        delta = (do.float() * o.float()).sum(-1)  # D_i = rowsum(dO * O)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dkg, dvg = torch.empty_like(kg), torch.empty_like(vg)
        consts = dict(CAUSAL=causal, PRECISION=precision, UPCAST=upcast, BLOCK_M=block_m,
                      BLOCK_N=block_n, BLOCK_D=block_d, num_warps=num_warps)
        tf, ch, nch, n_tiles = _tiling(q_shape, block_m)
        kg_arg, vg_arg = (kg, vg) if G > 0 else (q, q)
        _nearby_bwd_dq_kernel[(n_tiles, B * H)](
            q, k, v, kg_arg, vg_arg, do, lse, delta, dq, *q_shape, *kv_shape, *extent, G, D,
            tf, ch, nch, sm_scale * LOG2E, sm_scale, **consts)
        tf, ch, nch, n_tiles = _tiling(kv_shape, block_n)
        _nearby_bwd_dkdv_kernel[(n_tiles, B * H)](
            q, k, v, do, lse, delta, dk, dv, *q_shape, *kv_shape, *extent, D,
            tf, ch, nch, sm_scale * LOG2E, sm_scale, **consts)
        if G > 0:
            _global_bwd_dkdv_kernel[(triton.cdiv(G, block_n), B * H)](
                q, kg, vg, do, lse, delta, dkg, dvg, NQ, G, D, sm_scale * LOG2E, sm_scale,
                PRECISION=precision, UPCAST=upcast, BLOCK_M=block_m, BLOCK_N=block_n,
                BLOCK_D=block_d, num_warps=num_warps)
        return dq, dk, dv, dkg, dvg, None, None, None, None, None


def triton_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal=False,
                            global_kv: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                            block_m: Optional[int] = None, block_n: Optional[int] = None,
                            num_warps: Optional[int] = None):
    """3DNA, Eqs. (7)-(11), with the fused kernels. Arguments as ``nearby_attention``
    (assumed validated); ``block_m``/``block_n`` (powers of two >= 16) override the tile sizes.
    """
    q_shape, kv_shape = tuple(q_shape), tuple(kv_shape)
    B, H, _, D = q.shape
    if not q.is_cuda and not interpreted():
        raise ValueError("backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before "
                         f"Triton is imported to run on the CPU; got q on {q.device}. "
                         "Use backend='torch' (or 'auto') for CPU tensors")
    if D > 128:
        raise ValueError(f"the triton backend supports head dims D up to 128, got D={D}")
    extent = resolve_extent(tuple(extent), kv_shape)
    if global_kv is None:
        kg = vg = q.new_zeros(B, H, 0, D)
    else:
        kg, vg = global_kv
    blocks = _block_sizes(D, q.device, block_m, block_n, num_warps)
    return NearbyAttentionFunction.apply(q, k, v, kg, vg, q_shape, kv_shape, extent,
                                         bool(causal), blocks)
