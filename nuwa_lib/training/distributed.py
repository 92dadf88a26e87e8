"""``torchrun``: :class:`Dist` and :func:`init_distributed`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch


# --------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class Dist:
    """Where this process runs: its rank among ``world_size`` and its device."""
    rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world_size > 1:
            torch.distributed.barrier()

    def main_first(self, build: Callable[[bool], Any]):
        """``build(True)`` on rank 0, then, after a barrier, ``build(False)`` on the others
        (which read what rank 0 has cached)."""
        out = build(True) if self.main else None
        self.barrier()
        return out if self.main else build(False)


def init_distributed(device: str | None = None) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT): nccl on CUDA, gloo on CPU. Without torchrun:
    a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    if world_size == 1:
        return Dist(0, 1, device or ("cuda" if cuda else "cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world_size, f"cuda:{local}" if cuda else "cpu")
