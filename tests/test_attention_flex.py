"""3DNA through PyTorch's FlexAttention (nuwa_lib.attention.flex_nearby), the GPU benchmark's
baseline, against the dense reference backend on CPU (eager FlexAttention).

PyTorch's public ``flex_attention`` refuses CPU inputs that require grad (its CPU path has
no fused backward); its eager path does have one (the math backward it runs under autograd),
so the gradient tests lift only that device guard, keeping the other input checks, to check
the block mask and ``mask_mod`` in the backward pass too.
"""
import math

import pytest
import torch
from attention_helpers import outputs_and_grads, qkv

from nuwa_lib.attention import count_pairs, nearby_attention, nearby_mask
from nuwa_lib.attention import flex_nearby
from nuwa_lib.attention.flex_nearby import flex_block_counts, flex_block_mask, flex_nearby_attention

pytestmark = pytest.mark.usefixtures("one_thread")

fa = pytest.importorskip("torch.nn.attention.flex_attention")

# (q_shape, kv_shape, extent, causal, n_global)
CASES = {
    "video-causal-global": ((2, 4, 5), (2, 4, 5), (1, 1, 2), True, 1),
    "image": ((1, 7, 7), (1, 7, 7), (0, 2, 2), False, 0),
    "text-causal": ((9, 1, 1), (9, 1, 1), (None, 0, 0), True, 0),
    "cross-grids": ((2, 6, 6), (1, 3, 3), (0, 1, 1), False, 0),
}


@pytest.fixture
def cpu_backward(monkeypatch):
    """Let eager FlexAttention run its backward on CPU: only the requires_grad-on-CPU refusal
    of torch's input checks is lifted (the checks still run, on detached views)."""
    check = fa._validate_device
    monkeypatch.setattr(fa, "_validate_device",
                        lambda q, k, v: check(q.detach(), k.detach(), v.detach()))


def _reference(q_shape, kv_shape, extent, causal):
    return lambda q, k, v, g: nearby_attention(q, k, v, q_shape, kv_shape, extent, causal, g,
                                               backend="reference")


def _flex(q_shape, kv_shape, extent, causal, block_size=16):
    return lambda q, k, v, g: flex_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal,
                                                    g, block_size=block_size)


def _assert_close(got, want, atol, rtol=0.0):
    out, grads = got
    ref_out, ref_grads = want
    assert out.shape == ref_out.shape
    torch.testing.assert_close(out.float(), ref_out.float(), atol=atol[0], rtol=rtol)
    assert len(grads) == len(ref_grads)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g.float(), r.float(), atol=atol[1], rtol=rtol)


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_and_grads_match_reference(case, cpu_backward):
    q_shape, kv_shape, extent, causal, n_global = CASES[case]
    q, k, v, g = qkv(q_shape, kv_shape, G=n_global)
    got = outputs_and_grads(_flex(q_shape, kv_shape, extent, causal), q, k, v, g)
    want = outputs_and_grads(_reference(q_shape, kv_shape, extent, causal), q, k, v, g)
    _assert_close(got, want, atol=(1e-5, 1e-5), rtol=1e-5)
    assert len(got[1]) == 3 + 2 * (n_global > 0)  # q, k, v (and the global keys and values)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_against_fp32_reference(dtype, cpu_backward):
    """bf16/fp16 inputs, output in the input dtype, within atol 2e-2 (outputs) and 5e-2
    (gradients) of the fp32 reference on the same (rounded) inputs."""
    q_shape, kv_shape, extent, causal, n_global = CASES["video-causal-global"]
    q, k, v, g = qkv(q_shape, kv_shape, G=n_global, dtype=dtype)
    got = outputs_and_grads(_flex(q_shape, kv_shape, extent, causal), q, k, v, g)
    assert got[0].dtype == dtype and all(x.dtype == dtype for x in got[1])
    fp32 = [x.float() for x in (q, k, v)], tuple(x.float() for x in g)
    want = outputs_and_grads(_reference(q_shape, kv_shape, extent, causal), *fp32[0], fp32[1])
    _assert_close(got, want, atol=(2e-2, 5e-2))


def test_block_size_and_whole_axis_extent_do_not_change_the_result():
    q_shape = kv_shape = (3, 4, 4)
    q, k, v, g = qkv(q_shape, kv_shape, G=2)
    with torch.no_grad():
        a = flex_nearby_attention(q, k, v, q_shape, kv_shape, (None, 1, None), True, g)
        b = flex_nearby_attention(q, k, v, q_shape, kv_shape, (5, 1, 3), True, g, block_size=16)
        ref = nearby_attention(q, k, v, q_shape, kv_shape, (None, 1, None), True, g,
                               backend="reference")
    torch.testing.assert_close(a, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b, ref, atol=1e-5, rtol=1e-5)


def test_cpu_backward_is_refused_with_a_clear_error_and_no_grad_runs():
    q_shape, kv_shape, extent, causal, _ = CASES["image"]
    q, k, v, _ = qkv(q_shape, kv_shape)
    q.requires_grad_(True)
    with pytest.raises(NotImplementedError, match="no backward on CPU"):
        flex_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal)
    with torch.no_grad():  # leaves that require grad are fine when no graph is built
        out = flex_nearby_attention(q, k, v, q_shape, kv_shape, extent, causal)
    ref = nearby_attention(q.detach(), k, v, q_shape, kv_shape, extent, causal,
                           backend="reference")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_arguments_are_checked_through_nearby_attention():
    q, k, v, _ = qkv((1, 3, 3), (1, 3, 3))
    with pytest.raises(ValueError, match="extent"):
        nearby_attention(q, k, v, (1, 3, 3), (1, 3, 3), None, backend="flex")
    with pytest.raises(ValueError, match="Nq"):
        nearby_attention(q, k, v, (1, 3, 4), (1, 3, 3), (0, 1, 1), backend="flex")
    with pytest.raises(ValueError, match="causal"):
        nearby_attention(q, k, v, (1, 3, 3), (3, 3, 1), (0, 1, 1), causal=True, backend="flex")
    with pytest.raises(ValueError, match="block_size"):
        flex_nearby_attention(q, k, v, (1, 3, 3), (1, 3, 3), (0, 1, 1), block_size=0)


def _dense_block_classes(q_shape, kv_shape, extent, causal, bs):
    """(partial, full) per (query block, key block) from the dense nearby mask, with the
    padded tail of the last blocks counted as masked (as FlexAttention pads)."""
    m = nearby_mask(q_shape, kv_shape, extent, causal)
    nqb, nkb = -(-m.shape[0] // bs), -(-m.shape[1] // bs)
    padded = torch.zeros(nqb * bs, nkb * bs, dtype=torch.int64)
    padded[:m.shape[0], :m.shape[1]] = m
    sums = padded.view(nqb, bs, nkb, bs).sum(dim=(1, 3))
    return (sums > 0) & (sums < bs * bs), sums == bs * bs


@pytest.mark.parametrize("q_shape,kv_shape,extent,causal,bs", [
    ((4, 8, 8), (4, 8, 8), (1, 2, 2), True, 16),
    ((2, 6, 6), (1, 3, 3), (0, 1, 1), False, 16),
    ((2, 8, 8), (2, 8, 8), (None, None, None), False, 32),  # full attention: full blocks
])
def test_flex_block_counts(q_shape, kv_shape, extent, causal, bs):
    c = flex_block_counts(q_shape, kv_shape, extent, causal, block_size=bs)
    assert c["inside_window"] == count_pairs(q_shape, kv_shape, extent, causal)
    assert c["computed_scores"] == c["blocks_visited"] * bs * bs >= c["inside_window"]
    assert c["full_blocks"] + c["partial_blocks"] == c["blocks_visited"]
    partial, full = _dense_block_classes(q_shape, kv_shape, extent, causal, bs)
    assert (c["partial_blocks"], c["full_blocks"]) == (int(partial.sum()), int(full.sum()))
    bm = flex_block_mask(q_shape, kv_shape, extent, causal, block_size=bs)
    assert torch.equal(bm.to_dense()[0, 0].bool(), partial | full)


def test_full_blocks_are_found_when_blocks_align_with_the_window():
    """Whole-axis extents on a grid of whole blocks: every block is full, none partial."""
    c = flex_block_counts((2, 4, 8), (2, 4, 8), (None, None, None), False, block_size=16)
    assert c == {"blocks_visited": 16, "partial_blocks": 0, "full_blocks": 16,
                 "computed_scores": 16 * 256, "inside_window": 64 * 64}


def test_chunked_block_mask_equals_one_create_block_mask_call(monkeypatch):
    """The BlockMask is built over chunks of query blocks; it must equal the one-call mask."""
    q_shape = kv_shape = (3, 5, 6)
    extent, causal, n_global, bs = (1, 1, 2), True, 2, 16
    mask_mod = flex_nearby._nearby_mask_mod(q_shape, kv_shape, extent, causal, n_global)
    one = fa.create_block_mask(mask_mod, None, None, 90, 92, device="cpu", BLOCK_SIZE=bs)
    monkeypatch.setattr(flex_nearby, "_CHUNK_PAIRS", 1)  # one query block per chunk
    flex_nearby._block_mask.cache_clear()
    try:
        chunked = flex_block_mask(q_shape, kv_shape, extent, causal, n_global, block_size=bs)
    finally:
        flex_nearby._block_mask.cache_clear()
    assert chunked.seq_lengths == one.seq_lengths and chunked.BLOCK_SIZE == one.BLOCK_SIZE
    for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices",
                 "q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices"):
        assert torch.equal(getattr(chunked, name), getattr(one, name)), name


def test_block_mask_is_cached_and_none_extent_shares_the_entry():
    a = flex_block_mask((2, 3, 4), (2, 3, 4), (None, 1, 1), True, 1, block_size=16)
    b = flex_block_mask((2, 3, 4), (2, 3, 4), (2, 1, 1), True, 1, "cpu", 16)
    assert a is b
    assert a.shape[-2:] == (24, 25) and math.prod(a.BLOCK_SIZE) == 256
