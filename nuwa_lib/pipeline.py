"""``nuwa-repro``: execute the notebooks in order with papermill.

    nuwa-repro --profile mini                 # every notebook, results/mini/
    nuwa-repro --profile smoke --only 00      # one notebook (name or number)
    nuwa-repro --profile smoke --from 03      # resume from a notebook on
    nuwa-repro --list                         # notebooks and profiles
    nuwa-repro --profile mini --retrain       # train every shipped model afresh, ship it
    nuwa-repro --profile mini --retrain t2i   # one stage (see --list)
    nuwa-repro --profile mini --park          # commit-ready copies of unfinished runs' states

Each notebook gets ``PROFILE``, the profile's parameters (``PARAMS``) and the
results folder (``RESULTS``) injected into its ``parameters`` cell. Executed
copies go to ``results/<profile>/notebooks/``; the notebooks themselves write
tables, figures and metrics through :class:`nuwa_lib.repro.Results`. The run
stops at the first failing cell, names it, and exits non-zero.

The bar shows the notebook, the cell being executed and the latest bar its kernel (or a
worker process it started) drew: which judge, tokenizer or NÜWA run is training, at which
step (``nuwa_lib.utils.progress``). ``--no-progress`` turns all of it off.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

from . import tablecheck
from .utils import machine, progress
from .utils.paths import NOTEBOOKS_DIR, REPO_ROOT, resolve, results_dir
from .utils.profiles import available_profiles, load_profile

KERNEL_NAME = "nuwa"  # registered into .venv by the Makefile


class PipelineError(Exception):
    """A one-line, user-facing failure (bad name, failing cell, table mismatch)."""


def notebook_order() -> list[str]:
    """Notebook names in reading order: ``notebooks/NN_name.ipynb`` sorted by NN."""
    return sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def resolve_notebook(name: str, order: Sequence[str]) -> str:
    """Accept a full name (``00_shapes_world``), its number (``00``/``0``) or the
    name without number (``shapes_world``)."""
    key = name.removesuffix(".ipynb")
    for nb in order:
        number, _, rest = nb.partition("_")
        if key in (nb, number, rest) or (key.isdigit() and int(key) == int(number)):
            return nb
    raise PipelineError(f"unknown notebook {name!r}; valid notebooks: {', '.join(order)}")


def select_notebooks(only: Sequence[str] | None = None, start: str | None = None,
                     skip: Sequence[str] | None = None) -> list[str]:
    order = notebook_order()
    if not order:
        raise PipelineError(f"no notebooks found in {NOTEBOOKS_DIR}")
    if only and start:
        raise PipelineError("use either --only or --from, not both")
    left_out = {resolve_notebook(n, order) for n in skip or ()}
    chosen = order
    if only:
        picked = {resolve_notebook(n, order) for n in only}
        chosen = [nb for nb in order if nb in picked]
    elif start:
        first = resolve_notebook(start, order)
        chosen = order[order.index(first):]
    return [nb for nb in chosen if nb not in left_out]


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL_NAME in KernelSpecManager().find_kernel_specs():
        return KERNEL_NAME
    print(f"note: Jupyter kernel {KERNEL_NAME!r} is not registered (make does that); "
          "using 'python3'", file=sys.stderr)
    return "python3"


class _Watch(logging.Handler):
    """What the pipeline's bar shows while a notebook runs: the cell papermill is executing
    (from its log, whose cell outputs are dropped here: they stay in the notebook) and the
    bars the kernel and its workers are drawing now (one per process)."""

    def __init__(self, bar, nb: str, cells: int, progress_file: str):
        super().__init__(logging.INFO)
        self.bar, self.nb, self.cells, self.file = bar, nb, cells, progress_file
        self.cell, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.log = logging.getLogger("papermill")

    def emit(self, record):
        m = re.match(r"Executing Cell (\d+)", record.getMessage())
        if m:
            self.cell = int(m.group(1))
            self.show()

    def show(self):
        inner = progress.running(self.file, 90)
        self.bar.set_postfix_str(f"{self.nb} · cell {self.cell}/{self.cells}"
                                 + (f" · {inner}" if inner else ""))

    def _poll(self):
        while not self._stop.wait(2.0):
            self.show()

    def __enter__(self):
        self._saved = self.log.level, self.log.propagate
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        self.log.addHandler(self)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.log.removeHandler(self)
        self.log.setLevel(self._saved[0])
        self.log.propagate = self._saved[1]


def _cells(nb: str) -> int:
    """Cells papermill executes: the notebook's and the injected parameters cell."""
    return len(json.loads((NOTEBOOKS_DIR / f"{nb}.ipynb").read_text())["cells"]) + 1


def execute_notebook(nb: str, profile: str, params: dict, out_root: Path,
                     results_arg: str | None, kernel: str, log_output: bool = False) -> Path:
    """Run one notebook; return the executed copy's path or raise PipelineError.
    ``log_output``: papermill logs each cell's start (what :class:`_Watch` reads)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    dest_dir = out_root / "notebooks"
    dest_dir.mkdir(parents=True, exist_ok=True)
    partial, failed = dest_dir / f".{nb}.running.ipynb", dest_dir / f"{nb}.failed.ipynb"
    try:
        pm.execute_notebook(
            str(NOTEBOOKS_DIR / f"{nb}.ipynb"), str(partial), kernel_name=kernel,
            cwd=str(NOTEBOOKS_DIR),
            parameters={"PROFILE": profile, "PARAMS": params, "RESULTS": results_arg},
            progress_bar=False, log_output=log_output, request_save_on_cell_execute=False,
        )
    except Exception as err:  # a failing cell; or the kernel died, bad JSON, ...
        if partial.exists():
            os.replace(partial, failed)
        if isinstance(err, PapermillExecutionError):
            shown = failed.relative_to(REPO_ROOT) if failed.is_relative_to(REPO_ROOT) else failed
            raise PipelineError(f"{nb} failed at cell {err.cell_index} (execution count "
                                f"{err.exec_count}): {err.ename}: {err.evalue}\n"
                                f"  executed copy: {shown}") from None
        raise PipelineError(f"{nb} could not be executed: {type(err).__name__}: {err}") from None
    dest = dest_dir / f"{nb}.ipynb"
    os.replace(partial, dest)
    failed.unlink(missing_ok=True)
    return dest


def _record_runtime(out_root: Path, profile: str, nb: str, seconds: float) -> None:
    """Add a notebook's time to ``metrics/runtimes.json`` (the summary reads it)."""
    from .utils.files import write_json
    from .utils.provenance import provenance

    path = out_root / "metrics" / "runtimes.json"
    try:
        times = json.loads(path.read_text())["metrics"]
    except (OSError, ValueError, KeyError):   # none yet, or unreadable: start afresh
        times = {}
    times[nb] = round(seconds, 1)
    order = set(notebook_order())    # a renamed or removed notebook's time goes with it
    write_json(path, {"metrics": {k: s for k, s in sorted(times.items()) if k in order},
                      "unit": "seconds of wall-clock time per notebook",
                      "provenance": provenance(profile, None)})


def run(profile: str, only: Sequence[str] | None = None, start: str | None = None,
        out: str | None = None, show_progress: bool = True,
        seed: int | None = None, skip: Sequence[str] | None = None) -> list[Path]:
    """Execute the selected notebooks in order; raise PipelineError at the first failure.

    ``seed`` replaces the profile's seed (the world's samples and every training
    run that derives its seed from it), e.g. to measure the spread between seeds."""
    from tqdm.auto import tqdm

    valid = available_profiles()
    if profile not in valid:
        raise PipelineError(f"unknown profile {profile!r}; valid profiles: {', '.join(valid)}")
    notebooks = select_notebooks(only, start, skip)
    params = load_profile(profile)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise PipelineError(f"--seed must be a non-negative integer, got {seed!r}")
        params["seed"] = seed
    if out:
        # --out beats NUWA_RESULTS_DIR; the kernels inherit it, so notebooks write
        # their tables beside their executed copies
        os.environ["NUWA_RESULTS_DIR"] = str(resolve(out))
    out_root = results_dir(profile)
    kernel = _kernel_name()
    done = []
    bar = tqdm(notebooks, desc=f"profile {profile}", unit="nb", disable=not show_progress,
               file=sys.stderr)
    saved_env, progress_file = os.environ.pop(progress.ENV, None), None
    if show_progress:   # the kernels and their workers draw their bars into this file
        fd, progress_file = tempfile.mkstemp(prefix="nuwa-progress-", suffix=".log")
        os.close(fd)
        os.environ[progress.ENV] = progress_file
    try:
        for nb in bar:
            bar.set_postfix_str(nb)
            t0 = time.perf_counter()
            watch = _Watch(bar, nb, _cells(nb), progress_file) if progress_file else nullcontext()
            with watch:
                done.append(execute_notebook(nb, profile, params, out_root, out, kernel,
                                             log_output=bool(progress_file)))
            _record_runtime(out_root, profile, nb, time.perf_counter() - t0)
    finally:
        bar.close()
        os.environ.pop(progress.ENV, None)
        if saved_env is not None:
            os.environ[progress.ENV] = saved_env
        if progress_file:
            for f in [Path(progress_file), *progress.files(progress_file)]:
                f.unlink(missing_ok=True)
    return done


# ---------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nuwa-repro", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default=os.environ.get("PROFILE", "mini"),
                   help="smoke | mini | paper (default: $PROFILE or mini)")
    p.add_argument("--only", nargs="+", metavar="NB", help="run only these notebooks")
    p.add_argument("--from", dest="start", metavar="NB", help="run from this notebook on")
    p.add_argument("--skip", nargs="+", metavar="NB", help="leave these notebooks out")
    p.add_argument("--list", action="store_true", help="list notebooks and profiles, then exit")
    p.add_argument("--out", metavar="DIR",
                   help="results folder instead of results/ (relative to the repository)")
    p.add_argument("--compare-to", metavar="DIR",
                   help="after the run, compare its tables with the golden CSVs in DIR: exact "
                        "where nothing is trained, within the band of the reference runs in "
                        "DIR/../spread where it is")
    p.add_argument("--same-weights", action="store_true",
                   help="with --compare-to: the run re-evaluated the shipped weights of the record "
                        "in DIR; compare only the tables it wrote, trained cells within the band of "
                        "the record and its re-evaluation on other kernels (<profile>-other-cpu)")
    p.add_argument("--identical-to", metavar="DIR",
                   help="after the run, require each of its tables to be byte-identical to the one "
                        "in DIR (same machine, same seed: the determinism check)")
    p.add_argument("--seed", type=int, metavar="N",
                   help="replace the profile's seed (default: the profile's own)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--retrain", nargs="*", metavar="STAGE",
                   help="instead of running the notebooks, train the profile's shipped models of "
                        "these stages afresh (all when none is named) and write them with the "
                        "manifest into results/<profile>/weights/; resumes an interrupted retrain")
    p.add_argument("--missing", action="store_true",
                   help="with --retrain: keep the shipped models that fit the profile, train and "
                        "ship only the others (new rows or seeds, changed configs)")
    p.add_argument("--workers", metavar="N",
                   help="runs trained at once, one process each (default: each section's "
                        "'workers', auto = the cores this process may use / its threads); sets "
                        "NUWA_WORKERS for the notebooks. Wall time only: the numbers are the same")
    p.add_argument("--threads", metavar="N",
                   help="torch threads per run (default: each section's 'threads'); sets "
                        "NUWA_THREADS for the notebooks")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                   help="where NÜWA trains and samples (default: the profile's device, auto = a "
                        "CUDA GPU when there is one); sets NUWA_DEVICE for the notebooks")
    p.add_argument("--park", action="store_true",
                   help="copy a running retrain's progress (the training states of its "
                        "unfinished runs, the models it finished but has not shipped) into "
                        "results/<profile>/weights/partial/ and list it in the manifest, so a "
                        "commit carries it to the next session, where the retrain continues")
    return p


def retrain(profile: str, stages: Sequence[str], show_progress: bool = True,
            missing_only: bool = False) -> dict:
    """``--retrain``: :func:`nuwa_lib.experiments.record.retrain` on the profile."""
    from .experiments import record
    from .utils.profiles import load_profile

    valid = available_profiles()
    if profile not in valid:
        raise PipelineError(f"unknown profile {profile!r}; valid profiles: {', '.join(valid)}")
    try:
        stages = record.check_stages(stages)
    except ValueError as err:
        raise PipelineError(str(err)) from None
    return record.retrain(load_profile(profile), stages, progress=show_progress,
                          missing_only=missing_only)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for value, env, name in ((args.workers, machine.WORKERS_ENV, "--workers"),
                             (args.threads, machine.THREADS_ENV, "--threads")):
        if value is None:
            continue
        try:
            if not (name == "--workers" and value == "auto"):
                machine.whole(name, value)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        os.environ[env] = value          # the kernels and worker processes inherit it
    if args.device:
        try:
            machine.device(args.device)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        os.environ[machine.DEVICE_ENV] = args.device
    if args.list:
        from .experiments.record import STAGES

        print("notebooks (in order):", *(f"  {nb}" for nb in notebook_order()), sep="\n")
        print("profiles: " + ", ".join(available_profiles()))
        print("retrain stages: " + ", ".join(STAGES))
        return 0
    if args.park:
        if args.profile not in available_profiles():
            print(f"error: unknown profile {args.profile!r}; valid profiles: "
                  f"{', '.join(available_profiles())}", file=sys.stderr)
            return 1
        from .utils import parked, weights

        files = parked.park(args.profile)
        for f in files:
            e = weights.manifest(args.profile)["partial"][f]
            what = "finished" if e.get("finished") else f"step {e['step']} of {e['steps'] or '?'}"
            print(f"parked {f}: {what}, {e['bytes']:,} bytes")
        print(f"parked {len(files)} file(s) in {weights.weights_dir(args.profile) / parked.FOLDER}"
              if files else "nothing to park: no unfinished run, no unshipped model of a retrain")
        return 0
    if args.missing and args.retrain is None:
        print("error: --missing goes with --retrain", file=sys.stderr)
        return 1
    if args.retrain is not None:
        try:
            report = retrain(args.profile, args.retrain, show_progress=not args.no_progress,
                             missing_only=args.missing)
        except PipelineError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        total = sum(r["seconds"] for r in report.values())
        print(f"retrained {len(report)} stage(s) in {total:.0f} s; run `nuwa-repro --profile "
              f"{args.profile}` (make reproduce) to regenerate the record from them")
        return 0
    try:
        done = run(args.profile, args.only, args.start, args.out,
                   show_progress=not args.no_progress, seed=args.seed, skip=args.skip)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out_root = results_dir(args.profile)
    print(f"executed {len(done)} notebook(s); results in {out_root}")
    failed = False
    compare = (lambda new, ref: tablecheck.compare_tables(new, ref, same_weights=True)) \
        if args.same_weights else tablecheck.compare_tables
    for ref, check, verb in ((args.compare_to, compare, "match"),
                             (args.identical_to, tablecheck.identical, "are byte-identical to")):
        if not ref:
            continue
        problems = check(out_root / "tables", resolve(ref))
        if problems:
            print(f"tables differ from {ref}:", *(f"  {p}" for p in problems), sep="\n",
                  file=sys.stderr)
            failed = True
        else:
            print(f"tables {verb} {ref}")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
