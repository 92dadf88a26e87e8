"""3DNA as fused Triton kernels: forward and backward, online softmax (Eqs. 7-11).

Layout: q (B, H, Nq, D), k and v (B, H, Nk, D), any strides with a unit stride on D (no
copies); token n of a grid (s, h, w) is (n // hw, n // w % h, n % w) (time-major raster order).

* The kernels follow the tile plan of :mod:`.tiles`, made on the CPU once per configuration:
  each program owns one tile of query indices (forward, dq) or key indices (dk, dv) and
  walks its list of gathered blocks of the other side -- the tokens the tile's windows reach,
  Eq. (7). A block the plan marks *full* (every pair inside a window) is not masked; the
  others are masked per element from coordinates.
* Forward keeps a running max and sum (flash-attention style) and stores the log-sum-exp
  (base 2); the backward recomputes P from it: one kernel accumulates dq per query tile,
  one accumulates dk and dv per key tile over the queries whose windows contain it, and one
  handles the global keys, which every query sees.
* Inputs may be fp32, fp16 or bf16; accumulation is fp32. fp32 dots use TF32 on CUDA when
  the caller allows it (by default when ``torch.backends.cuda.matmul.allow_tf32`` is set),
  IEEE fp32 otherwise. Head dims up to 128 are padded to a power of two with masked loads.

Works compiled on CUDA and on CPU tensors under ``TRITON_INTERPRET=1`` (set before Triton
is imported), where it proves the logic but not the speed.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from .gpu_choice import measured_choice
from .masks import resolve_extent
from .tiles import tile_plan

LOG2E = 1.4426950408889634


# ------------------------------------------------------------------------ helpers
@triton.jit
def _visible(qi, ki, S, H, W, S2, H2, W2, ES, EH, EW, CAUSAL: tl.constexpr):
    """Eq. (7) for query indices ``qi`` and key indices ``ki`` broadcast to one block; an
    unused lane (index -1) sees nothing."""
    HW = H * W
    HW2 = H2 * W2
    vis = (qi >= 0) & (ki >= 0)
    vis = vis & (tl.abs(ki // HW2 - (qi // HW) * S2 // S) <= ES)
    vis = vis & (tl.abs(ki // W2 % H2 - (qi // W % H) * H2 // H) <= EH)
    vis = vis & (tl.abs(ki % W2 - (qi % W) * W2 // W) <= EW)
    if CAUSAL:
        vis = vis & (ki <= qi)
    return vis


@triton.jit
def _mm(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b with fp32 accumulation. UPCAST: only under the interpreter with bf16 inputs,
    whose tl.dot multiplies the raw bf16 bit patterns (seen with Triton 3.8)."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _rows(X, base, idx, stride, offs_d, ok, d_ok):
    """Rows ``idx`` of one (batch, head) slice of X (unused lanes read as 0)."""
    return tl.load(X + base + idx[:, None].to(tl.int64) * stride + offs_d[None, :],
                   mask=ok[:, None] & d_ok[None, :], other=0.0)


@triton.jit
def _kv_rows(K, V, k_base, v_base, idx, skn, svn, offs_d, ok, d_ok):
    """Rows ``idx`` of K and of V."""
    return (_rows(K, k_base, idx, skn, offs_d, ok, d_ok),
            _rows(V, v_base, idx, svn, offs_d, ok, d_ok))


@triton.jit
def _lanes(NH, D, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's (batch x head) row bh and its (b, h); the lane offsets of a query
    block, a key block and a head, and which head lanes are real dims."""
    bh = tl.program_id(1).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    return bh, bh // NH, bh % NH, tl.arange(0, BLOCK_M), tl.arange(0, BLOCK_N), offs_d, offs_d < D


@triton.jit
def _block_visible(FULL, blk, qi, ki, both_ok, S, H, W, S2, H2, W2, ES, EH, EW,
                   CAUSAL: tl.constexpr):
    """Which pairs of planned block ``blk`` are visible: Eq. (7) per element, or every used
    lane (``both_ok``) where the plan marks the block full."""
    if tl.load(FULL + blk) == 0:
        vis = _visible(qi, ki, S, H, W, S2, H2, W2, ES, EH, EW, CAUSAL)
    else:
        vis = both_ok
    return vis


@triton.jit
def _softmax_step(acc, m_i, l_i, qk, v, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """One online-softmax step (base 2) over a block of scores, Eq. (11)."""
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(qk - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + _mm(p.to(v.dtype), v, PRECISION, UPCAST)
    return acc, m_new, l_i


# ------------------------------------------------------------------------ forward
@triton.jit
def _nearby_fwd_kernel(
        Q, K, V, KG, VG, OUT, LSE, TILES, BLOCKS, STARTS, FULL,
        sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, NH,
        S, H, W, S2, H2, W2, ES, EH, EW, G, D, NQ, qk_scale,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    bh, b, h, offs_m, offs_n, offs_d, d_ok = _lanes(NH, D, BLOCK_M, BLOCK_N, BLOCK_D)
    q_idx = tl.load(TILES + pid * BLOCK_M + offs_m)
    q_ok = q_idx >= 0
    q = _rows(Q, b * sqb + h * sqh, q_idx, sqn, offs_d, q_ok, d_ok)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    # Global keys (e.g. <bos>): visible to every query.
    for g0 in range(0, G, BLOCK_N):
        g_idx = g0 + offs_n
        g_ok = g_idx < G
        k, v = _kv_rows(KG, VG, bh * G * D, bh * G * D, g_idx, D, D, offs_d, g_ok, d_ok)
        qk = tl.where(g_ok[None, :], _mm(q, tl.trans(k), PRECISION, UPCAST) * qk_scale,
                      float("-inf"))
        acc, m_i, l_i = _softmax_step(acc, m_i, l_i, qk, v, PRECISION, UPCAST)

    # The key blocks of the plan: the tokens this tile's windows reach, Eq. (7).
    for blk in range(tl.load(STARTS + pid), tl.load(STARTS + pid + 1)):
        k_idx = tl.load(BLOCKS + blk * BLOCK_N + offs_n)
        k_ok = k_idx >= 0
        k, v = _kv_rows(K, V, b * skb + h * skh, b * svb + h * svh, k_idx, skn, svn, offs_d, k_ok,
                        d_ok)
        qk = _mm(q, tl.trans(k), PRECISION, UPCAST) * qk_scale
        if tl.load(FULL + blk) == 0:
            vis = _visible(q_idx[:, None], k_idx[None, :], S, H, W, S2, H2, W2, ES, EH, EW,
                           CAUSAL)
            qk = tl.where(vis, qk, float("-inf"))
        acc, m_i, l_i = _softmax_step(acc, m_i, l_i, qk, v, PRECISION, UPCAST)

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    o_ptr = OUT + bh * NQ * D + q_idx[:, None].to(tl.int64) * D + offs_d[None, :]
    tl.store(o_ptr, out.to(OUT.dtype.element_ty), mask=q_ok[:, None] & d_ok[None, :])
    tl.store(LSE + bh * NQ + q_idx, m_i + tl.log2(l_safe), mask=q_ok)


# ----------------------------------------------------------------------- backward
@triton.jit
def _query_side(Q, DO, LSE, DELTA, q_base, do_base, bh, NQ, q_idx, q_ok, sqn, sdn, offs_d, d_ok):
    """The backward's inputs of a block of queries: q, dO, log-sum-exp, D_i = rowsum(dO * O)."""
    q = _rows(Q, q_base, q_idx, sqn, offs_d, q_ok, d_ok)
    do = _rows(DO, do_base, q_idx, sdn, offs_d, q_ok, d_ok)
    lse = tl.load(LSE + bh * NQ + q_idx, mask=q_ok, other=0.0)
    delta = tl.load(DELTA + bh * NQ + q_idx, mask=q_ok, other=0.0)
    return q, do, lse, delta


@triton.jit
def _dq_step(dq, q, do, lse, delta, k, v, vis, qk_scale, PRECISION: tl.constexpr,
             UPCAST: tl.constexpr):
    qk = _mm(q, tl.trans(k), PRECISION, UPCAST) * qk_scale
    p = tl.where(vis, tl.exp2(qk - lse[:, None]), 0.0)
    dp = _mm(do, tl.trans(v), PRECISION, UPCAST)
    ds = p * (dp - delta[:, None])
    return dq + _mm(ds.to(k.dtype), k, PRECISION, UPCAST)


@triton.jit
def _nearby_bwd_dq_kernel(
        Q, K, V, KG, VG, DO, LSE, DELTA, DQ, TILES, BLOCKS, STARTS, FULL,
        sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn, NH,
        S, H, W, S2, H2, W2, ES, EH, EW, G, D, NQ, qk_scale, sm_scale,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    bh, b, h, offs_m, offs_n, offs_d, d_ok = _lanes(NH, D, BLOCK_M, BLOCK_N, BLOCK_D)
    q_idx = tl.load(TILES + pid * BLOCK_M + offs_m)
    q_ok = q_idx >= 0
    q, do, lse, delta = _query_side(Q, DO, LSE, DELTA, b * sqb + h * sqh, b * sdb + h * sdh,
                                     bh, NQ, q_idx, q_ok, sqn, sdn, offs_d, d_ok)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    for g0 in range(0, G, BLOCK_N):
        g_idx = g0 + offs_n
        g_ok = g_idx < G
        k, v = _kv_rows(KG, VG, bh * G * D, bh * G * D, g_idx, D, D, offs_d, g_ok, d_ok)
        dq = _dq_step(dq, q, do, lse, delta, k, v, q_ok[:, None] & g_ok[None, :], qk_scale,
                      PRECISION, UPCAST)

    for blk in range(tl.load(STARTS + pid), tl.load(STARTS + pid + 1)):
        k_idx = tl.load(BLOCKS + blk * BLOCK_N + offs_n)
        k_ok = k_idx >= 0
        k, v = _kv_rows(K, V, b * skb + h * skh, b * svb + h * svh, k_idx, skn, svn, offs_d, k_ok,
                        d_ok)
        vis = _block_visible(FULL, blk, q_idx[:, None], k_idx[None, :],
                             q_ok[:, None] & k_ok[None, :], S, H, W, S2, H2, W2, ES, EH, EW, CAUSAL)
        dq = _dq_step(dq, q, do, lse, delta, k, v, vis, qk_scale, PRECISION, UPCAST)

    dq_ptr = DQ + bh * NQ * D + q_idx[:, None].to(tl.int64) * D + offs_d[None, :]
    tl.store(dq_ptr, (dq * sm_scale).to(DQ.dtype.element_ty), mask=q_ok[:, None] & d_ok[None, :])


@triton.jit
def _dkdv_step(dk, dv, k, v, q, do, lse, delta, vis, qk_scale, PRECISION: tl.constexpr,
               UPCAST: tl.constexpr):
    """Contribution of a block of queries to a tile of keys (all transposed: keys x queries)."""
    kq = _mm(k, tl.trans(q), PRECISION, UPCAST) * qk_scale
    p_t = tl.where(vis, tl.exp2(kq - lse[None, :]), 0.0)
    dv += _mm(p_t.to(do.dtype), do, PRECISION, UPCAST)
    dp_t = _mm(v, tl.trans(do), PRECISION, UPCAST)
    ds_t = p_t * (dp_t - delta[None, :])
    dk += _mm(ds_t.to(q.dtype), q, PRECISION, UPCAST)
    return dk, dv


@triton.jit
def _nearby_bwd_dkdv_kernel(
        Q, K, V, DO, LSE, DELTA, DK, DV, TILES, BLOCKS, STARTS, FULL,
        sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn, NH,
        S, H, W, S2, H2, W2, ES, EH, EW, D, NQ, NK, qk_scale, sm_scale,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    bh, b, h, offs_m, offs_n, offs_d, d_ok = _lanes(NH, D, BLOCK_M, BLOCK_N, BLOCK_D)
    # This program's key tile; its blocks are the queries whose windows reach it.
    k_idx = tl.load(TILES + pid * BLOCK_N + offs_n)
    k_ok = k_idx >= 0
    k, v = _kv_rows(K, V, b * skb + h * skh, b * svb + h * svh, k_idx, skn, svn, offs_d, k_ok, d_ok)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    for blk in range(tl.load(STARTS + pid), tl.load(STARTS + pid + 1)):
        q_idx = tl.load(BLOCKS + blk * BLOCK_M + offs_m)
        q_ok = q_idx >= 0
        q, do, lse, delta = _query_side(Q, DO, LSE, DELTA, b * sqb + h * sqh, b * sdb + h * sdh,
                                         bh, NQ, q_idx, q_ok, sqn, sdn, offs_d, d_ok)
        vis = _block_visible(FULL, blk, q_idx[None, :], k_idx[:, None],
                             k_ok[:, None] & q_ok[None, :], S, H, W, S2, H2, W2, ES, EH, EW, CAUSAL)
        dk, dv = _dkdv_step(dk, dv, k, v, q, do, lse, delta, vis, qk_scale, PRECISION, UPCAST)

    ptr = bh * NK * D + k_idx[:, None].to(tl.int64) * D + offs_d[None, :]
    k_mask = k_ok[:, None] & d_ok[None, :]
    tl.store(DK + ptr, (dk * sm_scale).to(DK.dtype.element_ty), mask=k_mask)
    tl.store(DV + ptr, dv.to(DV.dtype.element_ty), mask=k_mask)


@triton.jit
def _global_bwd_dkdv_kernel(
        Q, KG, VG, DO, LSE, DELTA, DKG, DVG, sqb, sqh, sqn, sdb, sdh, sdn, NH,
        NQ, G, D, qk_scale, sm_scale,
        PRECISION: tl.constexpr, UPCAST: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """dk, dv of the global keys: every query sees them."""
    bh, b, h, offs_m, offs_n, offs_d, d_ok = _lanes(NH, D, BLOCK_M, BLOCK_N, BLOCK_D)
    g_idx = tl.program_id(0) * BLOCK_N + offs_n
    g_ok = g_idx < G
    k, v = _kv_rows(KG, VG, bh * G * D, bh * G * D, g_idx, D, D, offs_d, g_ok, d_ok)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    for m0 in range(0, NQ, BLOCK_M):
        q_idx = m0 + offs_m
        q_ok = q_idx < NQ
        q, do, lse, delta = _query_side(Q, DO, LSE, DELTA, b * sqb + h * sqh, b * sdb + h * sdh,
                                         bh, NQ, q_idx, q_ok, sqn, sdn, offs_d, d_ok)
        dk, dv = _dkdv_step(dk, dv, k, v, q, do, lse, delta, g_ok[:, None] & q_ok[None, :],
                            qk_scale, PRECISION, UPCAST)
    ptr = bh * G * D + g_idx[:, None] * D + offs_d[None, :]
    g_mask = g_ok[:, None] & d_ok[None, :]
    tl.store(DKG + ptr, (dk * sm_scale).to(DKG.dtype.element_ty), mask=g_mask)
    tl.store(DVG + ptr, dv.to(DVG.dtype.element_ty), mask=g_mask)


# ------------------------------------------------------------------------ wrapper
def interpreted() -> bool:
    """Whether these kernels were built for the Triton interpreter (TRITON_INTERPRET=1)."""
    return type(_nearby_fwd_kernel).__name__ == "InterpretedFunction"


DEFAULT_CUDA_BLOCKS = (64, 64, 4)   # (block_m, block_n, num_warps) until a GPU run measured


def kernel_config(device_type: str, dtype: torch.dtype, D: int, block_m=None, block_n=None,
                  num_warps=None, tiling="auto", allow_tf32=None) -> dict:
    """The kernels' configuration: block sizes (the measured choice on CUDA, measured at
    D = 64 and so used up to that head dim; else defaults), tiling, pipeline stages that keep
    a K and V block per stage within 160 KiB of shared memory, and dot precision -- fp32 inputs
    use TF32 on CUDA when ``allow_tf32`` (None: as ``torch.backends.cuda.matmul.allow_tf32``),
    IEEE fp32 otherwise."""
    cuda = device_type == "cuda"
    block_d = max(16, triton.next_power_of_2(D))
    measured = measured_choice()["blocks"] if cuda and block_d <= 64 else None
    dm, dn, dw = (measured or DEFAULT_CUDA_BLOCKS) if cuda else (16, 16, 4)
    if allow_tf32 is None:
        allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    block_m, block_n = block_m or dm, block_n or dn
    per_stage = 2 * max(block_m, block_n) * block_d * dtype.itemsize
    return dict(block_m=block_m, block_n=block_n, num_warps=num_warps or dw, block_d=block_d,
                num_stages=next((s for s in (3, 2) if s * per_stage <= 160 * 1024), 1),
                tiling=tiling,
                precision="tf32" if dtype != torch.float32 or (cuda and allow_tf32) else "ieee",
                upcast=interpreted() and dtype == torch.bfloat16)


def _unit_stride(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _strides(x: torch.Tensor) -> Tuple[int, int, int]:
    return x.stride(0), x.stride(1), x.stride(2)


def _plans(q_shape, kv_shape, extent, causal, cfg, device, side):
    tile, block = ((cfg["block_m"], cfg["block_n"]) if side == "queries"
                   else (cfg["block_n"], cfg["block_m"]))
    plan = tile_plan(q_shape, kv_shape, extent, causal, tile, block, cfg["tiling"], side,
                     str(device))
    return plan, (plan.tiles, plan.blocks, plan.starts, plan.full)


class NearbyAttentionFunction(torch.autograd.Function):
    """Fused 3DNA: forward stores the log-sum-exp; backward recomputes P (flash style)."""

    @staticmethod
    def forward(ctx, q, k, v, kg, vg, q_shape, kv_shape, extent, causal, cfg):
        B, NH, NQ, D = q.shape
        q, k, v = (_unit_stride(x) for x in (q, k, v))
        kg, vg = kg.contiguous(), vg.contiguous()
        G = kg.shape[2]
        sm_scale = 1.0 / math.sqrt(D)
        o = torch.empty(B, NH, NQ, D, device=q.device, dtype=q.dtype)
        lse = torch.empty(B, NH, NQ, device=q.device, dtype=torch.float32)
        plan, tables = _plans(q_shape, kv_shape, extent, causal, cfg, q.device, "queries")
        kg_arg, vg_arg = (kg, vg) if G > 0 else (q, q)  # never read when G == 0
        _nearby_fwd_kernel[(plan.tiles.shape[0], B * NH)](
            q, k, v, kg_arg, vg_arg, o, lse, *tables, *_strides(q), *_strides(k), *_strides(v),
            NH, *q_shape, *kv_shape, *extent, G, D, NQ, sm_scale * LOG2E,
            CAUSAL=causal, PRECISION=cfg["precision"], UPCAST=cfg["upcast"],
            BLOCK_M=cfg["block_m"], BLOCK_N=cfg["block_n"], BLOCK_D=cfg["block_d"],
            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
        ctx.save_for_backward(q, k, v, kg, vg, o, lse)
        ctx.args = (q_shape, kv_shape, extent, causal, cfg, sm_scale)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, kg, vg, o, lse = ctx.saved_tensors
        q_shape, kv_shape, extent, causal, cfg, sm_scale = ctx.args
        B, NH, NQ, D = q.shape
        NK, G = k.shape[2], kg.shape[2]
        do = _unit_stride(do)
        delta = (do.float() * o.float()).sum(-1)  # D_i = rowsum(dO * O)
        dq = torch.empty(B, NH, NQ, D, device=q.device, dtype=q.dtype)
        dk = torch.empty(B, NH, NK, D, device=q.device, dtype=k.dtype)
        dv = torch.empty_like(dk)
        dkg, dvg = torch.empty_like(kg), torch.empty_like(vg)
        consts = dict(CAUSAL=causal, PRECISION=cfg["precision"], UPCAST=cfg["upcast"],
                      BLOCK_M=cfg["block_m"], BLOCK_N=cfg["block_n"], BLOCK_D=cfg["block_d"],
                      num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
        strides = (*_strides(q), *_strides(k), *_strides(v), *_strides(do), NH)
        grids = (*q_shape, *kv_shape, *extent)
        qk_scale = sm_scale * LOG2E
        plan, tables = _plans(q_shape, kv_shape, extent, causal, cfg, q.device, "queries")
        kg_arg, vg_arg = (kg, vg) if G > 0 else (q, q)
        _nearby_bwd_dq_kernel[(plan.tiles.shape[0], B * NH)](
            q, k, v, kg_arg, vg_arg, do, lse, delta, dq, *tables, *strides, *grids, G, D, NQ,
            qk_scale, sm_scale, **consts)
        plan, tables = _plans(q_shape, kv_shape, extent, causal, cfg, q.device, "keys")
        _nearby_bwd_dkdv_kernel[(plan.tiles.shape[0], B * NH)](
            q, k, v, do, lse, delta, dk, dv, *tables, *strides, *grids, D, NQ, NK,
            qk_scale, sm_scale, **consts)
        if G > 0:
            _global_bwd_dkdv_kernel[(triton.cdiv(G, cfg["block_n"]), B * NH)](
                q, kg, vg, do, lse, delta, dkg, dvg, *_strides(q), *_strides(do), NH, NQ, G, D,
                qk_scale, sm_scale, PRECISION=cfg["precision"], UPCAST=cfg["upcast"],
                BLOCK_M=cfg["block_m"], BLOCK_N=cfg["block_n"], BLOCK_D=cfg["block_d"],
                num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
        return dq, dk, dv, dkg, dvg, None, None, None, None, None


def triton_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal=False,
                            global_kv: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                            block_m: Optional[int] = None, block_n: Optional[int] = None,
                            num_warps: Optional[int] = None, tiling="auto",
                            allow_tf32: Optional[bool] = None):
    """3DNA, Eqs. (7)-(11), with the fused kernels. Arguments as ``nearby_attention``
    (assumed validated). ``block_m``/``block_n`` (powers of two >= 16), ``num_warps`` and
    ``tiling`` (see :mod:`.tiles`) override the kernel configuration; ``allow_tf32`` lets
    fp32 inputs use TF32 dots on CUDA (None: as ``torch.backends.cuda.matmul.allow_tf32``).
    """
    q_shape, kv_shape = tuple(q_shape), tuple(kv_shape)
    B, NH, _, D = q.shape
    if not q.is_cuda and not interpreted():
        raise ValueError("backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before "
                         f"Triton is imported to run on the CPU; got q on {q.device}. "
                         "Use backend='torch' (or 'auto') for CPU tensors")
    if D > 128:
        raise ValueError(f"the triton backend supports head dims D up to 128, got D={D}")
    if global_kv is None:
        kg = vg = q.new_zeros(B, NH, 0, D)
    else:
        kg, vg = global_kv
    cfg = kernel_config(q.device.type, q.dtype, D, block_m, block_n, num_warps, tiling, allow_tf32)
    extent = resolve_extent(tuple(extent), kv_shape)
    return NearbyAttentionFunction.apply(q, k, v, kg, vg, q_shape, kv_shape, extent,
                                         bool(causal), cfg)
