"""The fused Triton kernels of 3DNA (Eqs. 7-11) against the dense reference: outputs and
gradients. Without a GPU they run on the CPU under the Triton interpreter, which proves the
kernels' logic (indexing, masks, online softmax, backward), not their speed. Set
TRITON_INTERPRET=0 on a CUDA machine to test the compiled kernels instead."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before torch/triton are imported

import functools  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402

pytest.importorskip("triton", reason="Triton is not installed: the fused 3DNA kernels need it")

if "nuwa_lib.attention.triton_nearby" in sys.modules:  # built earlier without the interpreter
    importlib.reload(sys.modules["nuwa_lib.attention.triton_nearby"])

from attention_helpers import nearby_cases, outputs_and_grads, qkv  # noqa: E402

from nuwa_lib.attention import nearby_attention, nearby_mask  # noqa: E402
from nuwa_lib.attention.triton_nearby import interpreted, triton_nearby_attention  # noqa: E402

if interpreted():
    DEVICE = "cpu"
elif torch.cuda.is_available():
    DEVICE = "cuda"
else:
    pytest.skip("TRITON_INTERPRET is off and there is no CUDA device", allow_module_level=True)


qkv = functools.partial(qkv, B=1, D=16, device=DEVICE)


def assert_matches_reference(q_shape, kv_shape, extent, causal, q, k, v, gkv, atol=1e-5,
                             grad_atol=1e-4, **blocks):
    ref = outputs_and_grads(lambda q, k, v, g: nearby_attention(
        q.float(), k.float(), v.float(), q_shape, kv_shape, extent, causal,
        None if g is None else tuple(x.float() for x in g), backend="reference"), q, k, v, gkv)
    got = outputs_and_grads(lambda q, k, v, g: triton_nearby_attention(
        q, k, v, q_shape, kv_shape, extent, causal, g, **blocks), q, k, v, gkv)
    assert got[0].dtype == q.dtype
    torch.testing.assert_close(got[0].float(), ref[0], atol=atol, rtol=atol * 10)
    for a, b in zip(got[1], ref[1]):
        torch.testing.assert_close(a.float(), b.float(), atol=grad_atol, rtol=grad_atol * 10)


@settings(deadline=None, max_examples=40)
@given(nearby_cases(max_text=20, max_image_side=7, grid=st.integers(1, 4), max_extent=2),
       st.sampled_from([16, 24]), st.sampled_from([(16, 16), (16, 32), (32, 16)]))
def test_triton_kernels_match_reference_outputs_and_gradients(case, D, blocks):
    q_shape, kv_shape, extent, causal, G = case
    q, k, v, gkv = qkv(q_shape, kv_shape, D=D, G=G)
    assert_matches_reference(q_shape, kv_shape, extent, causal, q, k, v, gkv,
                             block_m=blocks[0], block_n=blocks[1])


@pytest.mark.parametrize("causal", [False, True])
def test_triton_kernels_match_reference_on_paper_sized_frames(causal):
    shape = (2, 21, 21)  # tiles of whole rows, windows clipped at every border
    q, k, v, gkv = qkv(shape, shape, H=1, G=1)
    assert_matches_reference(shape, shape, (3, 3, 3), causal, q, k, v, gkv, block_m=64, block_n=64)


@pytest.mark.parametrize("q_shape,kv_shape,extent", [
    ((2, 5, 3), (4, 3, 6), (1, 1, 2)),     # key grid larger on some axes, smaller on others
    ((6, 2, 2), (2, 4, 4), (0, 0, 1)),     # key frames seen by no query get zero gradient
])
def test_triton_cross_attention_between_grids_of_different_sizes(q_shape, kv_shape, extent):
    q, k, v, gkv = qkv(q_shape, kv_shape, D=32, G=1)
    assert_matches_reference(q_shape, kv_shape, extent, False, q, k, v, gkv)


@pytest.mark.parametrize("D", [40, 128])
def test_triton_head_dims_are_padded_to_a_power_of_two(D):
    q, k, v, _ = qkv((2, 3, 3), (2, 3, 3), H=1, D=D)
    assert_matches_reference((2, 3, 3), (2, 3, 3), (1, 1, 1), True, q, k, v, None)


HALF_TOLERANCE = {"output": 2e-2, "gradients": 5e-2}  # absolute (rtol 10x), vs fp32 on N(0,1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("q_shape,kv_shape,extent,causal", [
    ((2, 4, 4), (2, 4, 4), (1, 1, 1), True),
    ((2, 6, 6), (1, 3, 3), (0, 1, 1), False),
])
def test_triton_half_precision_inputs_accumulate_in_float32(dtype, q_shape, kv_shape, extent,
                                                            causal):
    """fp16 / bf16 inputs, fp32 accumulation: outputs and every gradient within
    HALF_TOLERANCE of the float32 reference on the same (rounded) values."""
    q, k, v, gkv = qkv(q_shape, kv_shape, D=16, G=1, dtype=dtype)
    assert_matches_reference(q_shape, kv_shape, extent, causal, q, k, v, gkv,
                             atol=HALF_TOLERANCE["output"], grad_atol=HALF_TOLERANCE["gradients"])


def test_triton_causal_output_ignores_future_tokens():
    shape = (3, 3, 4)
    q, k, v, gkv = qkv(shape, shape, G=1)
    run = lambda q, k, v: triton_nearby_attention(q, k, v, shape, shape, (1, 1, 1), True, gkv)  # noqa: E731
    base = run(q, k, v)
    t = 17
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for x in (q2, k2, v2):
        x[:, :, t + 1:] = torch.randn_like(x[:, :, t + 1:]) * 10
    torch.testing.assert_close(run(q2, k2, v2)[:, :, :t + 1], base[:, :, :t + 1], atol=1e-6, rtol=0)


def test_triton_gradient_of_a_query_is_zero_outside_its_window():
    shape, extent = (3, 5, 5), (1, 1, 2)
    q, k, v, _ = qkv(shape, shape, H=1)
    k.requires_grad_(True)
    v.requires_grad_(True)
    mask = nearby_mask(shape, shape, extent, True)
    query = 2 * 25 + 2 * 5 + 2
    out = triton_nearby_attention(q, k, v, shape, shape, extent, True)
    gk, gv = torch.autograd.grad(out[0, 0, query].sum(), (k, v))
    touched = (gk[0, 0].abs().sum(-1) > 0) | (gv[0, 0].abs().sum(-1) > 0)
    assert torch.equal(touched.cpu(), mask[query])


def test_triton_backend_is_reachable_through_nearby_attention():
    q, k, v, _ = qkv((2, 3, 3), (2, 3, 3))
    torch.testing.assert_close(
        nearby_attention(q, k, v, (2, 3, 3), (2, 3, 3), (1, 1, 1), backend="triton"),
        nearby_attention(q, k, v, (2, 3, 3), (2, 3, 3), (1, 1, 1), backend="reference"),
        atol=1e-5, rtol=1e-4)


def test_triton_rejects_head_dims_above_128():
    q, k, v, _ = qkv((1, 2, 2), (1, 2, 2), H=1, D=136)
    with pytest.raises(ValueError, match="head dim"):
        triton_nearby_attention(q, k, v, (1, 2, 2), (1, 2, 2), (1, 1, 1))


def test_triton_key_tiles_no_query_reaches_get_zero_gradient():
    # a key grid larger than the query grid: some key tiles lie in no query's window
    q_shape, kv_shape, extent = (2, 4, 16), (2, 9, 7), (2, 1, 9)
    q, k, v, _ = qkv(q_shape, kv_shape, H=1)
    assert_matches_reference(q_shape, kv_shape, extent, False, q, k, v, None, tiling="rows")


@pytest.mark.parametrize("tiling", ["rows", "boxes", (2, 2, 3)])
def test_triton_every_tiling_matches_the_reference(tiling):
    shape = (3, 5, 6)
    q, k, v, gkv = qkv(shape, shape, H=1, G=1)
    assert_matches_reference(shape, shape, (1, 1, 2), True, q, k, v, gkv, tiling=tiling)


def test_triton_reads_strided_inputs_without_copies():
    # (B, N, H, D) projections viewed as (B, H, N, D), as the model's layers pass them
    shape = (2, 3, 4)
    base = torch.randn(2, 24, 2, 16, generator=torch.Generator().manual_seed(3))
    q, k, v = (base.roll(i, 1).transpose(1, 2) for i in range(3))
    assert not q.is_contiguous()
    assert_matches_reference(shape, shape, (1, 1, 1), True, q, k, v, None)
