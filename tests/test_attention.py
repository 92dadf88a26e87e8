"""3D Nearby Attention (Sec. 3.2, Eqs. 6-11, Fig. 3): masks, pair counts, the reference
and the PyTorch backend, and argument validation. The Triton kernels have their own file
(test_attention_triton.py, run under the Triton interpreter)."""
import functools
import itertools
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from attention_helpers import nearby_cases, outputs_and_grads, qkv
from hypothesis import given, settings, strategies as st

from nuwa_lib.attention import (
    attention_mask,
    axial_mask,
    block_mask,
    count_pairs,
    full_mask,
    masked_attention,
    nearby_attention,
    nearby_mask,
    plan_nearby,
    project_coordinates,
)
from nuwa_lib.attention.reference import reference_attention
from nuwa_lib.attention.torch_nearby import (
    DEFAULT_TILING,
    MAX_TILES_PER_CALL,
    torch_nearby_attention,
)

PAPER_VIDEO = (10, 21, 21)  # Sec. 3.5: 21 x 21 tokens x 10 frames



def brute_force_nearby_mask(q_shape, kv_shape, extent, causal):
    """Eq. (7) read literally, one (query, key) pair at a time."""
    (s, h, w), (s2, h2, w2) = q_shape, kv_shape
    ext = [n if e is None else e for e, n in zip(extent, kv_shape)]
    mask = torch.zeros(s * h * w, s2 * h2 * w2, dtype=torch.bool)
    for (t, i, j) in itertools.product(range(s), range(h), range(w)):
        c = (t * s2 // s, i * h2 // h, j * w2 // w)
        for (a, b, d) in itertools.product(range(s2), range(h2), range(w2)):
            inside = all(abs(x - y) <= e for x, y, e in zip((a, b, d), c, ext))
            qi, ki = (t * h + i) * w + j, (a * h2 + b) * w2 + d
            mask[qi, ki] = inside and (not causal or ki <= qi)
    return mask


qkv = functools.partial(qkv, B=2, D=8)


# ---------------------------------------------------------------------------- masks
def test_query_coordinates_project_by_floor_of_grid_ratio():
    s, i, j = project_coordinates((4, 6, 5), (2, 3, 10))  # Sec. 3.2: floor(k s'/s) ...
    assert s.tolist() == [0, 0, 1, 1]
    assert i.tolist() == [0, 0, 1, 1, 2, 2]
    assert j.tolist() == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("q_shape,kv_shape,extent,causal", [
    ((2, 4, 4), (2, 4, 4), (1, 1, 1), False),
    ((2, 4, 4), (2, 4, 4), (1, 1, 1), True),
    ((3, 2, 5), (2, 4, 3), (0, 1, None), False),
    ((5, 1, 1), (5, 1, 1), (None, 0, 0), True),
    ((1, 3, 4), (1, 3, 4), (0, 0, 2), True),
])
def test_nearby_mask_is_equation_7_with_truncated_windows(q_shape, kv_shape, extent, causal):
    expected = brute_force_nearby_mask(q_shape, kv_shape, extent, causal)
    assert torch.equal(nearby_mask(q_shape, kv_shape, extent, causal), expected)


def test_none_extent_means_the_whole_axis():
    a = nearby_mask((4, 3, 5), (4, 3, 5), (None, 1, None))
    b = nearby_mask((4, 3, 5), (4, 3, 5), (4, 1, 5))
    assert torch.equal(a, b)
    assert nearby_mask((6, 1, 1), (6, 1, 1), (None, 0, 0)).all()


def test_paper_video_grid_attends_exactly_1057050_pairs_and_530730_causal():
    assert count_pairs(PAPER_VIDEO, PAPER_VIDEO, (3, 3, 3)) == 1_057_050
    assert count_pairs(PAPER_VIDEO, PAPER_VIDEO, (3, 3, 3), causal=True) == 530_730
    assert int(nearby_mask(PAPER_VIDEO, PAPER_VIDEO, (3, 3, 3)).sum()) == 1_057_050
    assert int(nearby_mask(PAPER_VIDEO, PAPER_VIDEO, (3, 3, 3), True).sum()) == 530_730


@settings(deadline=None, max_examples=40)
@given(nearby_cases())
def test_count_pairs_equals_mask_sum(case):
    q_shape, kv_shape, extent, causal, _ = case
    mask = nearby_mask(q_shape, kv_shape, extent, causal)
    assert count_pairs(q_shape, kv_shape, extent, causal) == int(mask.sum())


def test_every_query_sees_its_own_position_in_self_attention():
    for causal in (False, True):
        assert nearby_mask((3, 4, 5), (3, 4, 5), (0, 0, 0), causal).diagonal().all()


def test_causal_mask_is_the_bidirectional_mask_cut_at_the_query():
    bi = nearby_mask((3, 4, 4), (3, 4, 4), (1, 2, 1))
    assert torch.equal(nearby_mask((3, 4, 4), (3, 4, 4), (1, 2, 1), causal=True), torch.tril(bi))


def test_fig3_block_mask_splits_4x4x2_into_four_2x2x2_blocks():
    mask = block_mask((2, 4, 4), (2, 4, 4), (2, 2, 2))
    assert (mask.sum(1) == 8).all()  # every token sees its 2x2x2 block
    # (t=0, i=1, j=1) and (t=1, i=0, j=0) share the top-left block; (0, 0, 2) does not.
    assert mask[1 * 4 + 1, 16 + 0] and not mask[1 * 4 + 1, 2]
    assert torch.equal(block_mask((2, 4, 4), (2, 4, 4), (2, 2, 2), causal=True), torch.tril(mask))


def test_fig3_axial_mask_sees_the_three_lines_through_the_query():
    mask = axial_mask((2, 4, 4), (2, 4, 4))
    assert (mask.sum(1) == 4 + 4 + 2 - 2).all()  # row + column + time line, self counted once
    q = 1 * 16 + 2 * 4 + 3  # (t=1, i=2, j=3)
    seen = {(int(k) // 16, int(k) // 4 % 4, int(k) % 4) for k in mask[q].nonzero()}
    assert seen == {(1, 2, j) for j in range(4)} | {(1, i, 3) for i in range(4)} | {(0, 2, 3)}


def test_full_mask_and_attention_mask_dispatch():
    assert full_mask((2, 2, 2), (1, 3, 3)).all()
    assert torch.equal(attention_mask("full", (2, 2, 2), (2, 2, 2), causal=True),
                       torch.tril(torch.ones(8, 8, dtype=torch.bool)))
    assert torch.equal(attention_mask("nearby", (2, 3, 3), (2, 3, 3), extent=(1, 1, 1)),
                       nearby_mask((2, 3, 3), (2, 3, 3), (1, 1, 1)))
    with pytest.raises(ValueError, match="mask_kind"):
        attention_mask("diagonal", (1, 2, 2), (1, 2, 2))
    with pytest.raises(ValueError, match="block_size"):
        attention_mask("block", (1, 2, 2), (1, 2, 2))


def test_masks_and_plans_are_planned_once_per_configuration():
    assert nearby_mask((2, 3, 3), (2, 3, 3), (1, 1, 1)) is nearby_mask((2, 3, 3), (2, 3, 3), [1, 1, 1])
    a = plan_nearby((4, 5, 5), (4, 5, 5), (1, 1, 1), True, "cpu")
    assert a is plan_nearby((4, 5, 5), (4, 5, 5), (1, 1, 1), True, "cpu")


# ------------------------------------------------------------------------ reference
def test_reference_with_full_mask_is_scaled_dot_product_attention():
    q, k, v, _ = qkv((2, 3, 3), (2, 3, 3), D=16)
    out = masked_attention(q, k, v, "full", (2, 3, 3), (2, 3, 3), causal=True)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_reference_global_keys_are_an_always_visible_prefix():
    q, k, v, gkv = qkv((2, 2, 3), (2, 2, 3), G=2)
    mask = nearby_mask((2, 2, 3), (2, 2, 3), (0, 0, 1))
    dense = torch.cat([torch.ones(12, 2, dtype=torch.bool), mask], 1)
    expected = F.scaled_dot_product_attention(
        q, torch.cat([gkv[0], k], 2), torch.cat([gkv[1], v], 2), attn_mask=dense)
    out = nearby_attention(q, k, v, (2, 2, 3), (2, 2, 3), (0, 0, 1), global_kv=gkv, backend="reference")
    torch.testing.assert_close(out, expected)


def test_masked_attention_nearby_equals_nearby_attention():
    q, k, v, _ = qkv((3, 4, 4), (3, 4, 4))
    a = masked_attention(q, k, v, "nearby", (3, 4, 4), (3, 4, 4), extent=(1, 1, 1), causal=True)
    b = nearby_attention(q, k, v, (3, 4, 4), (3, 4, 4), (1, 1, 1), causal=True)
    torch.testing.assert_close(a, b)


# ------------------------------------------------------- fused SDPA for the ablations
@settings(deadline=None, max_examples=60)
@given(nearby_cases(), st.sampled_from(["full", "axial", "block", "nearby"]))
def test_masked_attention_matches_reference_outputs_and_gradients(case, kind):
    """Every pattern of Fig. 3 through fused SDPA equals the dense reference with that mask,
    outputs and gradients, with global keys, cross grids and causality."""
    q_shape, kv_shape, extent, causal, G = case
    block = (2, 2, 2) if kind == "block" else None
    q, k, v, gkv = qkv(q_shape, kv_shape, G=G)
    mask = attention_mask(kind, q_shape, kv_shape, extent=extent, block_size=block, causal=causal)
    fused = outputs_and_grads(lambda q, k, v, g: masked_attention(
        q, k, v, kind, q_shape, kv_shape, extent=extent, block_size=block, causal=causal,
        global_kv=g), q, k, v, gkv)
    dense = outputs_and_grads(lambda q, k, v, g: reference_attention(q, k, v, mask, g),
                              q, k, v, gkv)
    for a, b in zip((fused[0], *fused[1]), (dense[0], *dense[1])):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_masked_attention_uses_the_cheapest_sdpa_form():
    from nuwa_lib.attention.torch_masked import fused_mask
    full = fused_mask("full", (2, 3, 3), (2, 3, 3), None, None, False, "cpu", torch.float32, 0)
    causal = fused_mask("full", (2, 3, 3), (2, 3, 3), None, None, True, "cpu", torch.float32, 0)
    axial = fused_mask("axial", (2, 3, 3), (2, 3, 3), None, None, True, "cpu", torch.float32, 0)
    assert full.additive is None and not full.is_causal and full.dense_mask is None
    assert causal.additive is None and causal.is_causal
    assert axial.additive.dtype == torch.float32 and not axial.is_causal
    allowed = axial_mask((2, 3, 3), (2, 3, 3), causal=True)
    assert torch.equal(axial.additive == 0, allowed)
    assert axial is fused_mask("axial", (2, 3, 3), (2, 3, 3), None, None, True, "cpu",
                               torch.float32, 0)


def test_masked_attention_gives_zero_to_a_query_without_keys():
    """A pattern that leaves a query without keys (not one of Fig. 3's, built here by a causal
    cross-attention of a later grid) goes to the reference, which returns 0 for that row."""
    from nuwa_lib.attention import torch_masked
    q, k, v, _ = qkv((1, 2, 2), (1, 2, 2))
    empty = torch.tensor([[False] * 4, [True] * 4, [True] * 4, [True] * 4])
    original = torch_masked.attention_mask
    torch_masked.attention_mask = lambda *a, **kw: empty
    torch_masked.fused_mask.cache_clear()
    try:
        out = masked_attention(q, k, v, "axial", (1, 2, 2), (1, 2, 2))
    finally:
        torch_masked.attention_mask = original
        torch_masked.fused_mask.cache_clear()
    assert torch.equal(out[:, :, 0], torch.zeros_like(out[:, :, 0]))
    torch.testing.assert_close(out, reference_attention(q, k, v, empty))


def test_masked_attention_rejects_a_bad_block_size():
    q, k, v, _ = qkv((1, 2, 2), (1, 2, 2))
    with pytest.raises(ValueError, match="block_size"):
        masked_attention(q, k, v, "block", (1, 2, 2), (1, 2, 2), block_size=(1, 0, 2))
    with pytest.raises(ValueError, match="block_size is required"):
        masked_attention(q, k, v, "block", (1, 2, 2), (1, 2, 2))
    with pytest.raises(ValueError, match="extent is required"):
        masked_attention(q, k, v, "nearby", (1, 2, 2), (1, 2, 2))


# -------------------------------------------------------------------- torch backend
TILINGS = [DEFAULT_TILING, (4, 4, 4), (1, 1, 1), (6, 6, 3)]


@settings(deadline=None, max_examples=60)
@given(nearby_cases(), st.sampled_from(TILINGS), st.sampled_from([8, 16]))
def test_torch_backend_matches_reference_outputs_and_gradients(case, tiling, D):
    q_shape, kv_shape, extent, causal, G = case
    q, k, v, gkv = qkv(q_shape, kv_shape, D=D, G=G)
    ref = outputs_and_grads(lambda q, k, v, g: nearby_attention(
        q, k, v, q_shape, kv_shape, extent, causal, g, backend="reference"), q, k, v, gkv)
    got = outputs_and_grads(lambda q, k, v, g: torch_nearby_attention(
        q, k, v, q_shape, kv_shape, extent, causal, g, tiling=tiling), q, k, v, gkv)
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=1e-4)
    for a, b in zip(got[1], ref[1]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("causal", [False, True])
def test_torch_backend_matches_reference_on_paper_sized_frames(causal):
    shape = (4, 21, 21)  # bands of 7 rows, border and interior tiles
    q, k, v, _ = qkv(shape, shape, B=1, H=2, D=16)
    ref = outputs_and_grads(lambda q, k, v, g: nearby_attention(
        q, k, v, shape, shape, (3, 3, 3), causal, backend="reference"), q, k, v, None)
    got = outputs_and_grads(lambda q, k, v, g: nearby_attention(
        q, k, v, shape, shape, (3, 3, 3), causal, backend="torch"), q, k, v, None)
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=1e-4)
    for a, b in zip(got[1], ref[1]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_torch_backend_groups_irregular_cross_grid_tiles_by_copying_their_slices():
    q_shape, kv_shape, extent = (7, 3, 3), (3, 5, 4), (0, 1, 1)
    plan = plan_nearby(q_shape, kv_shape, extent, False, "cpu", (9, 9, 3))
    assert any(g.n_tiles > 1 and g.k_step == g.k_len for g in plan.groups)  # non-strided path
    q, k, v, gkv = qkv(q_shape, kv_shape, G=1)
    ref = outputs_and_grads(lambda q, k, v, g: nearby_attention(
        q, k, v, q_shape, kv_shape, extent, False, g, backend="reference"), q, k, v, gkv)
    got = outputs_and_grads(lambda q, k, v, g: torch_nearby_attention(
        q, k, v, q_shape, kv_shape, extent, False, g, tiling=(9, 9, 3)), q, k, v, gkv)
    for a, b in zip((got[0], *got[1]), (ref[0], *ref[1])):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_torch_backend_splits_long_tile_groups_into_several_calls(causal):
    shape, extent, tiling = (60, 1, 1), (2, 0, 0), (1, 1, 1)  # 1-token tiles: 56 interior
    plan = plan_nearby(shape, shape, extent, causal, "cpu", tiling)
    assert max(g.n_tiles for g in plan.groups) <= MAX_TILES_PER_CALL < 56
    q, k, v, gkv = qkv(shape, shape, G=1)
    ref = outputs_and_grads(lambda q, k, v, g: nearby_attention(
        q, k, v, shape, shape, extent, causal, g, backend="reference"), q, k, v, gkv)
    got = outputs_and_grads(lambda q, k, v, g: torch_nearby_attention(
        q, k, v, shape, shape, extent, causal, g, tiling=tiling), q, k, v, gkv)
    for a, b in zip((got[0], *got[1]), (ref[0], *ref[1])):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_torch_backend_work_is_proportional_to_the_window_not_the_sequence():
    # Interior tiles of a long video see a fixed number of keys: O(N * window), Sec. 4.3.
    plan = plan_nearby((32, 21, 21), (32, 21, 21), (3, 3, 3), True, "cpu")
    pairs = sum(g.n_tiles * g.q_len * g.k_len for g in plan.groups)  # scores computed
    n = 32 * 21 * 21
    assert pairs < 6.5 * count_pairs((32, 21, 21), (32, 21, 21), (3, 3, 3), True)
    assert pairs < (n * n / 2) / 8  # dense causal attention computes n^2 / 2
    assert max(g.k_len for g in plan.groups) <= 4 * 13 * 21  # 4 frames x 13 rows


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_torch_backend_runs_in_half_precision_close_to_reference(dtype):
    shape = (3, 5, 5)
    q, k, v, gkv = qkv(shape, shape, D=16, G=1)
    ref = nearby_attention(q, k, v, shape, shape, (1, 1, 1), True, gkv, backend="reference")
    low = [x.to(dtype) for x in (q, k, v)]
    out = nearby_attention(*low, shape, shape, (1, 1, 1), True, tuple(x.to(dtype) for x in gkv),
                           backend="torch")
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)


def test_auto_backend_on_cpu_is_the_torch_backend():
    q, k, v, _ = qkv((3, 4, 4), (3, 4, 4))
    torch.testing.assert_close(
        nearby_attention(q, k, v, (3, 4, 4), (3, 4, 4), (1, 1, 1), backend="auto"),
        torch_nearby_attention(q, k, v, (3, 4, 4), (3, 4, 4), (1, 1, 1)), atol=0, rtol=0)


def test_triton_backend_on_cpu_without_the_interpreter_asks_for_cuda():
    # a fresh interpreter: the Triton test module switches the interpreter on for this one
    code = (
        "import torch\n"
        "from nuwa_lib.attention import nearby_attention\n"
        "q = torch.randn(1, 1, 8, 16)\n"
        "try:\n"
        "    nearby_attention(q, q, q, (2, 2, 2), (2, 2, 2), (1, 1, 1), backend='triton')\n"
        "except ValueError as err:\n"
        "    print(err)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the triton backend runs compiled")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "backend='triton' needs CUDA" in done.stdout


# --------------------------------------------------------- causality and locality
@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("shape,extent,tiling", [
    ((4, 5, 6), (1, 2, 1), DEFAULT_TILING),
    ((3, 9, 7), (1, 2, 2), (4, 4, 14)),
    ((12, 1, 1), (None, 0, 0), (4, 4, 4)),
])
def test_causal_output_ignores_future_tokens(backend, shape, extent, tiling):
    q, k, v, _ = qkv(shape, shape, G=1)
    n = math.prod(shape)
    run = (lambda q, k, v: torch_nearby_attention(q, k, v, shape, shape, extent, True, tiling=tiling)) \
        if backend == "torch" else \
        (lambda q, k, v: nearby_attention(q, k, v, shape, shape, extent, True, backend=backend))
    base = run(q, k, v)
    for t in (0, n // 3, n - 2):
        q2, k2, v2 = q.clone(), k.clone(), v.clone()
        for x in (q2, k2, v2):
            x[:, :, t + 1:] = torch.randn_like(x[:, :, t + 1:]) * 10
        torch.testing.assert_close(run(q2, k2, v2)[:, :, :t + 1], base[:, :, :t + 1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("q_shape,kv_shape,extent,causal", [
    ((4, 6, 6), (4, 6, 6), (1, 1, 2), False),
    ((4, 6, 6), (4, 6, 6), (1, 2, 1), True),
    ((3, 4, 5), (5, 7, 3), (1, 1, 0), False),
])
def test_gradient_of_a_query_is_zero_outside_its_window(backend, q_shape, kv_shape, extent, causal):
    q, k, v, _ = qkv(q_shape, kv_shape, B=1, H=1)
    k.requires_grad_(True)
    v.requires_grad_(True)
    mask = brute_force_nearby_mask(q_shape, kv_shape, extent, causal)
    for query in (0, math.prod(q_shape) // 2, math.prod(q_shape) - 1):
        out = nearby_attention(q, k, v, q_shape, kv_shape, extent, causal, backend=backend)
        gk, gv = torch.autograd.grad(out[0, 0, query].sum(), (k, v))
        touched = (gk[0, 0].abs().sum(-1) > 0) | (gv[0, 0].abs().sum(-1) > 0)
        assert torch.equal(touched, mask[query])


# ------------------------------------------------------------------------ validation
def _bad_calls():
    q, k, v, gkv = qkv((2, 2, 2), (2, 2, 2), G=1)
    good = dict(q=q, k=k, v=v, q_shape=(2, 2, 2), kv_shape=(2, 2, 2), extent=(1, 1, 1))
    return [
        ("q", dict(good, q=q[0])),                                   # wrong rank
        ("k", dict(good, k=k[..., None])),                            # wrong rank
        ("q_shape", dict(good, q_shape=(2, 2, 3))),                   # Nq != prod(q_shape)
        ("kv_shape", dict(good, kv_shape=(1, 2, 2))),                 # Nk != prod(kv_shape)
        ("q_shape", dict(good, q_shape=(2, 2))),                      # not 3 axes
        ("q_shape", dict(good, q_shape=(2, 2.0, 2))),                 # non-integer
        ("kv_shape", dict(good, kv_shape=(2, 0, 4))),                 # non-positive
        ("extent", dict(good, extent=(1, -1, 1))),                    # negative extent
        ("extent", dict(good, extent=(1, 1))),                        # not 3 axes
        ("extent", dict(good, extent=(1, 1.5, 1))),                   # non-integer extent
        ("head dim D", dict(good, k=k[..., :4], v=v[..., :4])),       # mismatched D
        ("batch B", dict(good, k=k[:1], v=v[:1])),                    # mismatched B
        ("k and v", dict(good, v=v[:, :, :4])),                       # k, v lengths differ
        ("causal", dict(good, q=q[:, :, :4], q_shape=(1, 2, 2), causal=True)),  # cross + causal
        ("causal", dict(good, causal="yes")),
        ("backend", dict(good, backend="cuda")),                      # unknown backend
        ("global_kv", dict(good, global_kv=gkv[0])),                  # not a pair
        ("global_kv", dict(good, global_kv=(gkv[0][..., :4], gkv[1][..., :4]))),
        ("dtype", dict(good, k=k.double())),
    ]


@pytest.mark.parametrize("argument,kwargs", _bad_calls(), ids=[f"{i}-{a}" for i, (a, _) in enumerate(_bad_calls())])
def test_invalid_arguments_raise_value_error_naming_the_argument(argument, kwargs):
    with pytest.raises(ValueError) as err:
        nearby_attention(**kwargs)
    message = str(err.value)
    assert all(word in message for word in argument.split()), message
