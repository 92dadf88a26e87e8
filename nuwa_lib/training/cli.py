"""The command line: ``python -m nuwa_lib.training.cli`` trains a profile's model (world or
real data, one process or ``torchrun``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from ..data import tasks as T
from ..tokenizers.token_sets import profile_tokenizers
from ..utils import checkpoint
from .distributed import init_distributed
from .runs import fit, plan
from .trainer import per_task


# --------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m nuwa_lib.training.cli",
        description="Train NÜWA on the profile's world (Eq. 16 by default), or with --real-data "
                    "on real datasets; under torchrun each process takes a slice of every batch "
                    "(DDP).")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--tasks", default=",".join(T.PRETRAIN_TASKS),
                    help="comma-separated task names (default: T2I,V2V,T2V)")
    ap.add_argument("--steps", type=int, help="override train.steps")
    ap.add_argument("--batch-size", type=int, help="override train.batch_size (the global batch)")
    ap.add_argument("--data-size", type=int, help="override train.data_size")
    ap.add_argument("--checkpoint-every", type=int, help="override train.checkpoint_every")
    ap.add_argument("--threads", type=int, help="torch threads per process (CPU)")
    ap.add_argument("--out", help="write state.pt (resumable) and model.pt here instead of the "
                                  "artifacts cache")
    ap.add_argument("--stop-after", type=int, help="stop at this step (the state is saved)")
    ap.add_argument("--untrained-tokenizers", action="store_true",
                    help="freshly initialised VQ models instead of the trained ones "
                         "(timing, tests)")
    ap.add_argument("--save-replicas", action="store_true",
                    help="every process writes its weights to OUT/replica-<rank>.pt (DDP checks)")
    ap.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--real-data", action="store_true",
                    help="train on the datasets of the profile's data: section "
                         "(nuwa_lib.data.readers; roots from NUWA_DATA_<NAME> or --override) "
                         "instead of the world")
    ap.add_argument("--override", metavar="FILE.yaml",
                    help="a YAML file merged over the profile (dataset roots, any size or step)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from ..utils.profiles import load_profile

    try:
        cfg = load_profile(args.profile)
        if args.override:
            from ..data.catalog import apply_override

            cfg = apply_override(cfg, args.override)
        over = {k: getattr(args, k) for k in ("steps", "batch_size", "data_size",
                                              "checkpoint_every", "threads")
                if getattr(args, k) is not None}
        tasks = [t for t in args.tasks.split(",") if t]
        dist = init_distributed(args.device)
        progress = not args.no_progress
        if args.threads:
            torch.set_num_threads(args.threads)
        tokenizers, data, data_key = None, None, None
        if args.real_data:
            from .task_data import prepare

            tokenizers, data, data_key = prepare(
                cfg, tasks, rank=dist.rank, world_size=dist.world_size, device=dist.device,
                untrained=args.untrained_tokenizers, max_samples=args.data_size,
                progress=progress and dist.main)
        else:
            sketch = any(T.get_task(t).reads_sketch for t in T.task_names(tasks))
            tokenizers = dist.main_first(lambda main: profile_tokenizers(
                cfg, untrained=args.untrained_tokenizers, progress=progress and main,
                sketch=sketch))
        p = plan(cfg, tasks, train_overrides=over, tokenizers=tokenizers, progress=progress,
                 data_key=data_key)
        if args.out:
            out = Path(args.out)
            state_path, model_path = out / "state.pt", out / "model.pt"
        else:
            model_path = p.path
            state_path = p.path.with_name(f"{p.label}-{p.hash}.partial.pt")
        tr, info, finished = fit(p, state_path=state_path, model_path=model_path,
                                 stop_after=args.stop_after, progress=progress, dist=dist,
                                 data=data)
        if args.save_replicas and args.out:
            checkpoint.save(Path(args.out) / f"replica-{dist.rank}.pt",
                            {"format": "nuwa-replica", "rank": dist.rank, "step": tr.step,
                             "state_dict": tr.model.state_dict()})
        if dist.main:
            last = per_task(tr.history)
            losses = ", ".join(f"{t} {v['loss'][-1]:.3f}" for t, v in last.items())
            print(f"{p.label}: step {tr.step}/{p.config.steps} on {dist.world_size} process(es), "
                  f"{info['train_seconds']} s; last losses: {losses}; "
                  f"{'model ' + str(model_path) if finished else 'state ' + str(state_path)}")
        if not args.out and finished and dist.main:
            state_path.unlink(missing_ok=True)
    except (ValueError, FileNotFoundError, checkpoint.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
