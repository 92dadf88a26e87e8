"""How many (query, key) pairs each kind of 3D attention computes (Sec. 4.3).

The paper compares nearby-sparse, O((hws)(e^h e^w e^s)), with axial-sparse,
O((hws)(h+w+s)): for long videos (large s) the nearby window stays fixed while the
axial line along time grows. These closed forms count the pairs exactly for
bidirectional self-attention on an (s, h, w) grid, without building any mask.
"""
from __future__ import annotations

import math

from .masks import check_shape, count_pairs

PAIR_KINDS = ("full", "block", "axial", "nearby")


def _block_axis(n: int, b: int) -> int:
    """Sum over the blocks of one axis of (block length)^2; the last block may be short."""
    return (n // b) * b * b + (n % b) ** 2


def self_attention_pairs(kind: str, shape, *, extent=None, block_size=None) -> int:
    """Exact pair count of bidirectional self-attention of ``kind`` on an (s, h, w) grid."""
    shape = check_shape("shape", shape)
    n = math.prod(shape)
    if kind == "full":
        return n * n
    if kind == "axial":
        s, h, w = shape
        return n * (s + h + w - 2)  # three lines through the query, the query counted once
    if kind == "block":
        if block_size is None:
            raise ValueError("block_size is required for kind='block': (b_s, b_h, b_w)")
        block_size = check_shape("block_size", block_size)
        return math.prod(_block_axis(a, b) for a, b in zip(shape, block_size))
    if kind == "nearby":
        if extent is None:
            raise ValueError("extent is required for kind='nearby': (e_s, e_h, e_w)")
        return count_pairs(shape, shape, extent, causal=False)
    raise ValueError(f"kind must be one of {PAIR_KINDS}, got {kind!r}")
