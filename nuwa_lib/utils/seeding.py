"""One seeding function: Python, NumPy and PyTorch seeded together, torch asked for determinism."""
from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int) -> int:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) and ask torch for determinism.

    Returns the seed so a notebook can write ``SEED = seed_everything(...)``.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # the world and the pipeline work without torch
        return seed
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    # warn_only: a few CUDA kernels have no deterministic variant; on CPU all do.
    torch.use_deterministic_algorithms(True, warn_only=True)
    return seed
