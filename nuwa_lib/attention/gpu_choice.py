"""What ``backend="auto"`` runs on CUDA: the measured record decides, not an assumption.

``benchmarks/gpu_run.py`` times the Triton kernels and compiled FlexAttention on the causal
10x21x21 video (bf16, fwd+bwd, each checked against the fp32 reference first) and writes
``choice`` -- the fastest correct backend and the fastest correct Triton block
configuration -- into ``results/bench/attention_gpu.json``. Without that record (no GPU run
yet) ``auto`` uses the Triton kernels with their default blocks.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Optional

from ..utils.paths import BENCH_DIR

GPU_RECORD = BENCH_DIR / "attention_gpu.json"
CUDA_BACKENDS = ("triton", "flex")
DEFAULT = {"backend": "triton", "blocks": None,
           "source": "default: no GPU measurement (results/bench/attention_gpu.json) yet"}


def read_choice(path: Optional[Path] = None) -> dict:
    """The ``choice`` of a GPU record: {"backend", "blocks" (block_m, block_n, num_warps) or
    None, "source"}; :data:`DEFAULT` when the record is missing, is a dry run or holds no
    choice (a run cut short). A record that cannot be read, or a choice that is not valid,
    raises ``ValueError`` naming the file."""
    path = Path(path or GPU_RECORD)
    if not path.exists():
        return dict(DEFAULT)
    try:
        record = json.loads(path.read_text())
        if record.get("dry_run"):
            return dict(DEFAULT, source=f"default: {path.name} is a dry run, not a measurement")
        choice = record.get("choice")
        if choice is None:
            return dict(DEFAULT, source=f"default: {path.name} holds no choice (a run cut short)")
        backend, blocks = choice["backend"], choice.get("blocks")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} holds no valid 'choice' ({err!r}); rerun "
                         "benchmarks/gpu_run.py or delete the file") from err
    if backend not in CUDA_BACKENDS:
        raise ValueError(f"{path}: choice.backend must be one of {CUDA_BACKENDS}, got {backend!r}")
    if blocks is not None and not _valid_blocks(blocks):
        raise ValueError(f"{path}: choice.blocks must be [block_m, block_n, num_warps] (powers of "
                         f"two >= 16, and 1, 2, 4, 8 or 16 warps), got {blocks!r}")
    return {"backend": backend, "blocks": None if blocks is None else tuple(blocks),
            "source": f"measured: {path.name}"}


def _valid_blocks(blocks) -> bool:
    if not (isinstance(blocks, list) and len(blocks) == 3 and all(type(b) is int for b in blocks)):
        return False
    bm, bn, warps = blocks
    return all(b >= 16 and b & (b - 1) == 0 for b in (bm, bn)) and warps in (1, 2, 4, 8, 16)


@functools.lru_cache(maxsize=1)
def measured_choice() -> dict:
    """:func:`read_choice` of the repository's record, read once per process."""
    return read_choice()
