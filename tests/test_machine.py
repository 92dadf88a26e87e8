"""Workers and threads follow the machine (nuwa_lib.utils.machine): ``auto`` workers are the
cores this process may use over its threads per run, NUWA_WORKERS / NUWA_THREADS (``nuwa-repro
--workers / --threads``) override every section, and bad values are named."""
import os

import pytest

from nuwa_lib import pipeline
from nuwa_lib.utils import machine
from nuwa_lib.utils.profiles import load_profile


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(machine.WORKERS_ENV, raising=False)
    monkeypatch.delenv(machine.THREADS_ENV, raising=False)


def test_cores_are_the_processes_affinity(monkeypatch):
    if hasattr(os, "sched_getaffinity"):
        assert machine.cores() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(machine, "cores", lambda: 16)
    assert machine.workers("auto") == 16 and machine.workers("auto", per_run=4) == 4
    assert machine.workers(None, per_run=32) == 1 and machine.workers(3) == 3


def test_the_environment_overrides_every_section(monkeypatch):
    monkeypatch.setattr(machine, "cores", lambda: 8)
    cfg = {"t2i": {"workers": "auto", "threads": 2}, "vqgan": {"workers": 3, "threads": 1},
           "train": {"threads": 1}, "seed": 0}
    assert machine.fit(cfg)["t2i"] == {"workers": 4, "threads": 2}
    assert machine.fit(cfg)["vqgan"] == {"workers": 3, "threads": 1}
    monkeypatch.setenv(machine.WORKERS_ENV, "1")
    monkeypatch.setenv(machine.THREADS_ENV, "2")
    fitted = machine.fit(cfg)
    assert fitted["t2i"]["workers"] == fitted["vqgan"]["workers"] == 1
    assert fitted["train"] == {"threads": 2} and cfg["train"] == {"threads": 1}   # a copy
    monkeypatch.setenv(machine.WORKERS_ENV, "auto")
    assert machine.fit(cfg)["vqgan"]["workers"] == 4                  # 8 cores / 2 threads


@pytest.mark.parametrize("value, match", [
    (0, "t2i.workers must be a whole number >= 1 or 'auto', got 0"),
    ("two", "t2i.workers must be"), (True, "t2i.workers must be"), (1.5, "t2i.workers must be")])
def test_bad_workers_are_named(value, match):
    with pytest.raises(ValueError, match=match):
        machine.fit({"t2i": {"workers": value, "threads": 1}})


def test_bad_threads_are_named(monkeypatch):
    with pytest.raises(ValueError, match=r"t2i.threads must be a whole number >= 1, got -1"):
        machine.fit({"t2i": {"threads": -1}})
    monkeypatch.setenv(machine.THREADS_ENV, "0")
    with pytest.raises(ValueError, match="NUWA_THREADS must be"):
        machine.threads(1)


def test_profiles_load_with_numbers(monkeypatch):
    monkeypatch.setattr(machine, "cores", lambda: 6)
    cfg = load_profile("mini")
    assert cfg["t2i"]["workers"] == 6 and cfg["vqgan"]["workers"] == 6
    assert all(isinstance(s.get("threads", 1), int) for s in cfg.values() if isinstance(s, dict))


def test_the_command_line_sets_the_environment(monkeypatch, capsys):
    monkeypatch.setenv(machine.WORKERS_ENV, "auto")     # restored after the test
    monkeypatch.setenv(machine.THREADS_ENV, "3")
    assert pipeline.main(["--workers", "0", "--list"]) == 1
    assert "--workers must be a whole number" in capsys.readouterr().err
    assert pipeline.main(["--workers", "1", "--threads", "1", "--list"]) == 0
    assert os.environ[machine.WORKERS_ENV] == "1" and os.environ[machine.THREADS_ENV] == "1"


# --------------------------------------------------------------------------- device
def test_the_device_is_cuda_when_there_is_one(monkeypatch):
    import torch

    monkeypatch.delenv(machine.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert machine.device() == machine.device("auto") == "cpu" == machine.device("cpu")
    with pytest.raises(ValueError, match="'cuda' asked for .* sees no CUDA GPU"):
        machine.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert machine.device("auto") == "cuda" and machine.device("cuda:1") == "cuda:1"
    monkeypatch.setenv(machine.DEVICE_ENV, "cpu")
    assert machine.device("cuda") == "cpu"                    # the environment wins
    monkeypatch.delenv(machine.DEVICE_ENV)
    for bad in ("gpu", "cuda:x", 3):
        with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda"):
            machine.device(bad)


def test_a_run_plans_its_device_outside_its_hash(monkeypatch):
    from task_helpers import tiny_tokenizers

    from nuwa_lib.training import runs

    cfg = load_profile("smoke")
    toks = tiny_tokenizers()
    cfg["model"] = {**cfg["model"], "codebook_size": 16, "sketch_codebook_size": 16}
    monkeypatch.setenv(machine.DEVICE_ENV, "cpu")
    a = runs.plan(cfg, ("T2I",), tokenizers=toks, progress=False)
    monkeypatch.setattr(machine, "device", lambda value=None: "cuda")
    b = runs.plan(cfg, ("T2I",), tokenizers=toks, progress=False)
    assert (a.device, b.device) == ("cpu", "cuda") and a.hash == b.hash


def test_sampling_never_waits_for_the_device():
    """The decoding loop on the meta device: any host sync (.item(), bool(), .tolist() of a
    device tensor) would raise, so the loop that runs per token has none."""
    import torch
    from task_helpers import tiny_model

    from nuwa_lib.generation import sampling
    from nuwa_lib.model.config import Condition

    model = tiny_model().to("meta")
    ids = torch.ones(2, 5, dtype=torch.long, device="meta")
    out = sampling.sample(model, Condition.from_text(ids), (2, 8, 8), top_k=4,
                          guidance=2.0, uncond=Condition.from_text(ids[:, :2]))
    assert out.device.type == "meta" and out.shape == (2, 2, 8, 8)


def test_a_training_step_never_waits_for_the_device(monkeypatch):
    """Training steps on the meta device (no data behind any tensor): a host sync in the step
    would raise. The loss and gradient norm become numbers only when the history is read."""
    from task_helpers import WORLD, tiny_model, tiny_tokenizers

    from nuwa_lib.training import runs, schedule, trainer
    from nuwa_lib.training.distributed import Dist

    toks = tiny_tokenizers()
    data = runs.build_data(("T2I",), runs.roles_for(("T2I",)), toks, 8, progress=False, **WORLD)
    config = schedule.TrainConfig(steps=4, batch_size=4, data_size=8, weights={"T2I": 1.0},
                                  cond_dropout=0.5)
    tr = trainer.Trainer(tiny_model().config, config, data, dist=Dist(device="meta"))
    for _ in range(3):
        log = tr.train_step()
    assert log["loss"].device.type == "meta" and tr.step == 3
    with pytest.raises((NotImplementedError, RuntimeError)):   # reading it is the sync
        tr.history
    # ... which comes every READ_EVERY steps all the same, so unread tensors never pile up
    tr.history = []
    monkeypatch.setattr(trainer, "READ_EVERY", 2)
    tr.train_step()
    with pytest.raises((NotImplementedError, RuntimeError)):
        tr.train_step()


def test_on_the_cpu_the_history_holds_numbers_at_once():
    """Unread loss tensors held in the history cost megabytes each on the CPU's heap (2 GB per
    1000 steps of a mini T2I run): on the CPU every step's log is read as it is made."""
    from task_helpers import WORLD, tiny_model, tiny_tokenizers

    from nuwa_lib.training import runs, schedule, trainer

    toks = tiny_tokenizers()
    data = runs.build_data(("T2I",), runs.roles_for(("T2I",)), toks, 8, progress=False, **WORLD)
    config = schedule.TrainConfig(steps=3, batch_size=4, data_size=8, weights={"T2I": 1.0})
    tr = trainer.Trainer(tiny_model().config, config, data)
    tr.train_step()
    assert all(isinstance(tr._history[-1][k], float) for k in ("loss", "grad_norm"))


def test_bf16_auto_autocasts_on_cuda_only_and_keeps_the_hash_of_false():
    from dataclasses import replace

    from nuwa_lib.training import schedule

    off = schedule.TrainConfig()
    auto, on = replace(off, bf16="auto"), replace(off, bf16=True)
    assert auto.key() == off.key() and on.key() != off.key()
    assert [c.autocast("cuda") for c in (off, auto, on)] == [False, True, True]
    assert not any(c.autocast(d) for c in (off, auto, on) for d in ("cpu", "meta"))
    for profile in ("smoke", "mini"):      # the profiles follow the machine
        assert schedule.TrainConfig.from_profile(load_profile(profile)).bf16 == "auto"
    with pytest.raises(ValueError, match="train.bf16 must be true, false or 'auto'"):
        schedule.TrainConfig(bf16="yes")


def test_the_manifest_records_the_autocast_only_when_there_was_one():
    from nuwa_lib.utils.provenance import training_record

    assert "autocast" not in training_record(1, "cpu")
    assert training_record(1, "cuda:0", autocast="bfloat16")["autocast"] == "bfloat16"
