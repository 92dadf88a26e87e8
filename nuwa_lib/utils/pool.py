"""The one worker pool: independent jobs in separate processes, results in the jobs' order.

Training runs, tokenizers and the compute study's arms are pure functions of their configs
whose result is an artifact in the cache, so several can be built at once, one process each,
without changing what is built -- only the wall time. Processes are started with "spawn"
(never "fork": a forked torch with threads or CUDA can hang), so ``fn`` and the jobs' arguments
must be picklable and ``fn`` importable (a module-level function).
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Optional, Sequence


def map_in_processes(fn: Callable, jobs: Sequence[tuple], workers: int, *,
                     done: Optional[Callable[[int, Any], None]] = None) -> list:
    """``[fn(*job) for job in jobs]``, computed in ``min(workers, len(jobs))`` spawned
    processes. ``done(index, result)`` is called here as each job finishes (in the order
    they finish: a progress bar's step); the first error a job raises is raised here."""
    jobs = list(jobs)
    if not jobs:
        return []
    results: list = [None] * len(jobs)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
        futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
        for f in as_completed(futures):
            i = futures[f]
            results[i] = f.result()
            if done is not None:
                done(i, results[i])
    return results
