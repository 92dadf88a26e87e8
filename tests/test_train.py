"""Multi-task pretraining (Eq. 16, Sec. 4.1) on tokenized world data: token caches, the
task sampler, the schedule, checkpoints and resuming, the cached-model API and DDP."""
import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from nuwa_lib.data import tasks as T, text
from nuwa_lib.model.config import Condition, NuwaConfig
from nuwa_lib.model.nuwa import Nuwa
from nuwa_lib.tokenizers import token_sets as D, vqgan as V
from nuwa_lib.training import cli, schedule, runs as TR, task_data, trainer
from nuwa_lib.utils import checkpoint
from nuwa_lib.utils.paths import REPO_ROOT
from nuwa_lib.utils.profiles import load_profile

FRAMES = 4
WORLD = dict(seed=0, canvas=32, frames=FRAMES)
TEXT = text.TextConfig(vocab_size=512, length=32, captions_per_role=32, train_size=64)


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    return tmp_path / "artifacts"


def _vq(kind="vqgan", seed=0):
    torch.manual_seed(seed)
    return V.VQModel(V.VQConfig(kind=kind, codebook=16, code_dim=8, width=4)).eval()


@pytest.fixture(scope="module")
def toks():
    """Untrained tokenizers: the pipeline needs their shapes, not their quality."""
    return D.Tokenizers(text.TextTokenizer(text.train_bpe(TEXT), TEXT), _vq(), _vq("seg", 1))


MODEL = NuwaConfig(dim=16, heads=2, encoder_layers=1, decoder_layers=1, text_vocab=512,
                   text_length=32, codebook_size=16, sketch_codebook_size=16,
                   target_tokens=(FRAMES, 8, 8), sketch_tokens=(FRAMES, 8, 8),
                   image_extent=(1, 1, 1), video_extent=(1, 1, 1))
CONFIG = schedule.TrainConfig(steps=6, batch_size=4, lr=3e-3, data_size=12, checkpoint_every=2,
                        weights={"T2I": 1.0, "V2V": 1.0, "T2V": 2.0})


@pytest.fixture(scope="module")
def data(toks):
    return TR.build_data(T.PRETRAIN_TASKS, TR.roles_for(T.PRETRAIN_TASKS), toks, 12,
                         progress=False, **WORLD)


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- tokens
def test_world_tokens_are_grids_of_every_input(toks):
    wt = D.world_tokens("vatex", "train", 5, toks, progress=False, **WORLD)
    assert wt.visual.shape == (5, FRAMES, 8, 8) and wt.visual.dtype == torch.int16
    assert wt.text_ids.shape == wt.text_keep.shape == (5, 32) and wt.sketch is None
    back = toks.text.decode(wt.text_ids.long(), wt.text_keep)     # cut at 32 tokens
    assert all(c.startswith(b) and len(b) > 10 for b, c in zip(back, wt.captions))
    sk = D.world_tokens("cocostuff", "train", 3, toks, progress=False, **WORLD)
    assert sk.visual.shape == sk.sketch.shape == (3, 1, 8, 8) and sk.text_ids is None
    with pytest.raises(ValueError, match="role 'cc' is captioned: pass the text tokenizer"):
        D.world_tokens("cc", "train", 2, D.Tokenizers(visual=toks.visual), **WORLD)
    with pytest.raises(ValueError, match="role 'coco' is not one of"):
        D.world_tokens("coco", "train", 2, toks)


def test_token_caches_are_keyed_by_data_and_tokenizer_contents(toks, artifacts):
    a = D.world_tokens("cc", "train", 6, toks, profile="unit", progress=False, **WORLD)
    b = D.world_tokens("cc", "train", 6, toks, profile="unit", progress=False, **WORLD)
    assert a.source == "built" and b.source == "loaded" and a.path == b.path
    assert a.path.parent == artifacts / "unit" / "tokens"
    assert torch.equal(a.visual, b.visual) and torch.equal(a.text_ids, b.text_ids)
    assert b.captions == a.captions and not list(a.path.parent.glob(".*.tmp"))
    other = replace(toks, visual=_vq(seed=5))                  # other weights, other file
    c = D.world_tokens("cc", "train", 6, other, profile="unit", progress=False, **WORLD)
    assert c.source == "built" and c.path != a.path
    assert D.world_tokens("cc", "train", 7, toks, profile="unit", progress=False,
                          **WORLD).path != a.path
    # a file that is not what its name promises: the file and the mismatch are named
    a.path.write_bytes(c.path.read_bytes())
    with pytest.raises(D.TokenCacheError, match=rf"{a.path.name}: token cache does not match "
                                                r"\(key: tokenizers: file .* != wanted"):
        D.world_tokens("cc", "train", 6, toks, profile="unit", **WORLD)
    a.path.write_bytes(b"garbage")
    with pytest.raises(D.TokenCacheError, match=rf"{a.path.name}: cannot read the token cache"):
        D.world_tokens("cc", "train", 6, toks, profile="unit", **WORLD)


def test_task_batches_feed_the_model(toks, data):
    none_ids, _ = toks.none_condition()
    assert toks.text.decode(none_ids) == ["none"]              # the word "None", lowercased
    for name, d in data.items():
        b = d.batch([0, 3, 5])
        t = T.get_task(name)
        assert b.target.dtype == torch.int64 and b.target.shape[1:] == t.target_grid((FRAMES, 8, 8))
        assert b.cond.kind == "text" and b.prime.shape == b.target.shape
        assert int(T.prime_length(b.prime)[0]) == (64 if name == "V2V" else 0)
        if name == "V2V":      # Eq. 16: the constant condition c, the same for every sample
            assert torch.equal(b.cond.tokens, none_ids.expand(3, -1)) and b.cond.keep is None
    s2v = task_data.task_data("S2V", split="train", n=4, tokenizers=toks, progress=False, **WORLD)
    b = s2v.batch([1, 2])
    assert b.cond.kind == "sketch" and b.cond.grid == (FRAMES, 8, 8)
    ti2i = task_data.task_data("TI2I", split="val", n=4, tokenizers=toks, progress=False, **WORLD)
    b = ti2i.batch([0, 1, 2, 3])
    assert torch.equal(T.prime_length(b.prime), ti2i.tokens.edit_rows.long() * 8)
    with pytest.raises(ValueError, match="task S2I reads sketches"):
        task_data.TaskData(T.get_task("S2I"), data["T2I"].tokens)
    with pytest.raises(ValueError, match="task T2I has image targets; role 'vatex' holds videos"):
        task_data.TaskData(T.get_task("T2I"), data["T2V"].tokens)


def test_cutting_text_padding_is_exact(toks, data):
    """Batches drop the padding columns that no caption of the batch uses: same logits."""
    torch.manual_seed(0)
    model = Nuwa(MODEL).double().eval()
    wt = data["T2V"].tokens
    idx = wt.text_keep.sum(1).argsort()[:3].tolist()          # the three shortest captions
    full = Condition.from_text(wt.text_ids[idx].long(), wt.text_keep[idx])
    cut = data["T2V"].batch(idx).cond
    assert cut.grid[0] < full.grid[0]
    target = wt.visual[idx].long()
    assert torch.allclose(model(full, target), model(cut, target), atol=1e-10)


# ----------------------------------------------------------------------------- config
def test_profiles_train_sections():
    smoke, mini = load_profile("smoke"), load_profile("mini")
    assert smoke["train"].keys() == mini["train"].keys()
    for cfg in (smoke, mini, load_profile("paper")):
        c = schedule.TrainConfig.from_profile(cfg)
        assert c.lr == 1e-3 and c.warmup == 0.05                    # Sec. 4.1
        assert set(c.weights) == set(T.PRETRAIN_TASKS)
    assert schedule.TrainConfig.from_profile(load_profile("paper")).batch_size == 128
    with pytest.raises(ValueError, match=r"train: unknown key\(s\) \['epochs'\]"):
        schedule.TrainConfig.from_profile({"train": {"epochs": 3}})
    with pytest.raises(ValueError, match="train.decay 'step' is not one of: cosine, linear"):
        schedule.TrainConfig(decay="step")
    with pytest.raises(ValueError, match="unknown task 'X2I'"):
        schedule.TrainConfig(weights={"X2I": 1.0})
    with pytest.raises(ValueError, match="exceeds the world's train split"):
        schedule.TrainConfig.from_profile(smoke, data_size=10 ** 6)


def test_warmup_then_decay():
    c = schedule.TrainConfig(steps=200, lr=1e-3, warmup=0.05)
    lrs = [schedule.lr_at(c, s) for s in range(200)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)   # 5% = 10 steps
    assert max(lrs) == pytest.approx(1e-3) and lrs[-1] < 1e-6
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))


def test_the_task_sampler_is_a_function_of_seed_and_step():
    s = schedule.TaskSampler(["T2V", "T2I", "V2V"], {"T2I": 1, "V2V": 1, "T2V": 2}, seed=0)
    again = schedule.TaskSampler(["T2I", "V2V", "T2V"], {"T2I": 1, "V2V": 1, "T2V": 2}, seed=0)
    draws = [s.task(i) for i in range(400)]
    assert draws == [again.task(i) for i in range(400)]
    assert 160 < draws.count("T2V") < 240 and s.counts(400)["T2V"] == draws.count("T2V")
    assert draws != [schedule.TaskSampler(s.tasks, {}, seed=1).task(i) for i in range(400)]
    # Table 5's ablations reuse it: only the named tasks, a zero weight never drawn
    assert {schedule.TaskSampler(["T2V", "V2V"], {}, 0).task(i) for i in range(50)} == {"T2V", "V2V"}
    assert "T2I" not in {schedule.TaskSampler(T.PRETRAIN_TASKS, {"T2I": 0}, 0).task(i) for i in range(50)}
    idx = s.indices(3, 100, 8)
    assert len(set(idx.tolist())) == 8 and (idx == s.indices(3, 100, 8)).all()


# ----------------------------------------------------------------------------- training
def test_training_lowers_every_tasks_loss(toks, data):
    tr = trainer.Trainer(MODEL, replace(CONFIG, steps=40, lr=1e-2), data)
    tr.run(progress=False)
    curves = trainer.per_task(tr.history)
    assert set(curves) == set(T.PRETRAIN_TASKS)
    for name, c in curves.items():
        assert c["loss"][-1] < c["loss"][0] - 0.3, name
    assert all(h["grad_norm"] > 0 for h in tr.history) and not tr.model.training
    assert not tr.model.sketch_embedding.weight.requires_grad       # no task reads sketches
    s2v = task_data.task_data("S2V", split="train", n=4, tokenizers=toks, progress=False, **WORLD)
    tr = trainer.Trainer(MODEL, replace(CONFIG, steps=2, weights={}), {"S2V": s2v}).run(progress=False)
    assert [h["task"] for h in tr.history] == ["S2V", "S2V"]        # fine-tuning on one task
    assert not tr.model.text_embedding.weight.requires_grad


def test_interrupted_runs_resume_to_the_same_weights(tmp_path, data):
    whole, finished = TR.train(MODEL, CONFIG, data, progress=False)
    assert finished and whole.step == 6
    state = tmp_path / "run.partial.pt"
    part, finished = TR.train(MODEL, CONFIG, data, state_path=state, stop_after=3, progress=False)
    assert not finished and part.step == 3 and state.exists()
    resumed, finished = TR.train(MODEL, CONFIG, data, state_path=state, progress=False)
    assert finished and resumed.step == 6
    assert _equal(resumed.model.state_dict(), whole.model.state_dict())
    assert resumed.history == whole.history
    assert resumed.sched.get_last_lr() == whole.sched.get_last_lr()
    # the state of another run is refused, naming the file and the mismatch
    with pytest.raises(schedule.TrainCheckpointError, match=r"run\.partial\.pt: training state does "
                                                      r"not match \(train: steps: file 6 != wanted 7\)"):
        TR.train(MODEL, replace(CONFIG, steps=7), data, state_path=state, progress=False)
    state.write_bytes(state.read_bytes()[:1000])
    with pytest.raises(checkpoint.CheckpointError, match=r"run\.partial\.pt: cannot read"):
        TR.train(MODEL, CONFIG, data, state_path=state, progress=False)


def _cfg(steps=4):
    return {"name": "unit", "seed": 0,
            "world": {"canvas": 32, "frames": FRAMES, "split_sizes": {"train": 64}},
            "text": {"vocab_size": 512, "length": 32},
            "model": {"dim": 16, "heads": 2, "encoder_layers": 1, "decoder_layers": 1,
                      "codebook_size": 16, "sketch_codebook_size": 16,
                      "target_tokens": [FRAMES, 8, 8], "sketch_tokens": [FRAMES, 8, 8],
                      "extents": {"image": [1, 1, 1], "video": [1, 1, 1]}},
            "train": {"steps": steps, "batch_size": 4, "data_size": 8, "checkpoint_every": 2,
                      "weights": {"T2I": 1, "V2V": 1, "T2V": 1}}}


def test_get_pretrained_trains_once_then_loads(toks, artifacts):
    model, info = TR.get_pretrained(_cfg(), tokenizers=toks, progress=False)
    assert info["source"] == "trained" and len(info["history"]) == 4
    assert info["path"].endswith(f"T2I+T2V+V2V-{info['hash']}.pt")
    assert not list((artifacts / "unit" / "nuwa").glob("*.partial.pt"))
    again, info2 = TR.get_pretrained(_cfg(), tokenizers=toks, progress=False)
    assert info2["source"] == "loaded" and info2["history"] == info["history"]
    assert _equal(model.state_dict(), again.state_dict())
    # Table 5's rows and fine-tuning are other cache entries
    t2v, info3 = TR.get_pretrained(_cfg(), tasks=["T2V"], tokenizers=toks, progress=False,
                                   init=(model, info), train_overrides={"steps": 2})
    assert info3["path"] != info["path"] and {h["task"] for h in info3["history"]} == {"T2V"}
    with pytest.raises(FileNotFoundError, match=r"T2I\+T2V\+V2V-[0-9a-f]{12}\.pt"):
        TR.get_pretrained(_cfg(steps=5), tokenizers=toks, train_if_missing=False)
    # a model file of another run under this run's name is refused
    path = info["path"]
    torch.save(torch.load(info3["path"], weights_only=True), path)
    with pytest.raises(schedule.TrainCheckpointError, match=rf"{info['hash']}\.pt: NÜWA model file does "
                                                      r"not match \(train: steps: file 2 != wanted 4\)"):
        TR.get_pretrained(_cfg(), tokenizers=toks, progress=False)


def test_the_model_must_fit_the_tokenizers(toks):
    cfg = _cfg()
    cfg["model"]["codebook_size"] = 8
    with pytest.raises(ValueError, match="visual tokenizer has 16 codes but model.codebook_size is 8"):
        TR.plan(cfg, tokenizers=toks)


def test_bf16_is_a_cuda_only_switch(data):
    tr = trainer.Trainer(MODEL, replace(CONFIG, bf16=True), data)
    assert tr.bf16 is False and tr.device.type == "cpu"


# ----------------------------------------------------------------------------- DDP
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_follow_the_single_process_run(tmp_path, monkeypatch):
    """torchrun, 2 CPU processes (gloo), each on half of every global batch: the replicas
    stay identical and equal the single-process run on the same batches. The tasks mix the
    word "None" (V2V) and sketches (S2I), so every step leaves one embedding unused."""
    art = tmp_path / "artifacts"
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(art))
    args = ["--profile", "smoke", "--tasks", "S2I,T2V,V2V", "--steps", "5", "--batch-size", "4",
            "--data-size", "8", "--untrained-tokenizers", "--threads", "1", "--no-progress",
            "--save-replicas"]
    assert cli.main(args + ["--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "NUWA_ARTIFACTS_DIR": str(art), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
         "-m", "nuwa_lib.training.cli", *args, "--out", str(tmp_path / "two")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "on 2 process(es)" in run.stdout
    r0, r1 = (torch.load(tmp_path / "two" / f"replica-{r}.pt", weights_only=True)
              for r in (0, 1))
    assert r0["step"] == r1["step"] == 5
    assert _equal(r0["state_dict"], r1["state_dict"])
    one = torch.load(tmp_path / "one" / "replica-0.pt", weights_only=True)["state_dict"]
    single, double = (torch.load(tmp_path / d / "model.pt", weights_only=True)["history"]
                      for d in ("one", "two"))
    assert [h["task"] for h in single] == [h["task"] for h in double] == \
        ["V2V", "S2I", "V2V", "V2V", "S2I"]
    assert [h["loss"] for h in single] == pytest.approx([h["loss"] for h in double], abs=1e-4)
    torch.manual_seed(schedule.model_seed(0))
    init = Nuwa(TR.config_from_dict(
        torch.load(tmp_path / "one" / "model.pt", weights_only=True)["model"])).state_dict()
    for k, v in one.items():
        assert torch.allclose(v, r0["state_dict"][k], atol=1e-5), k
    assert any(not torch.allclose(v, init[k]) for k, v in one.items())   # it did train


def test_get_many_trains_chains_in_workers_as_alone(toks, artifacts, tmp_path, monkeypatch):
    """Runs trained two at a time in spawned workers (fine-tunes after their shared start)
    are the models get_pretrained trains alone, in this process."""
    base = TR.Run(_cfg(steps=3), tasks=("T2I",))
    runs = {"a": TR.Run(_cfg(), tasks=("T2V",), init=base, train_overrides={"steps": 2}),
            "b": TR.Run({**_cfg(), "seed": 1}, tasks=("T2V",), init=base,
                        train_overrides={"steps": 2}),
            "base": base}
    got = TR.get_many(runs, workers=2, tokenizers=toks, progress=False)
    assert set(got) == {"a", "b", "base"}
    assert got["a"][1]["path"] != got["b"][1]["path"]
    assert [got[k][1]["source"] for k in ("base", "a", "b")] == ["trained"] * 3
    # alone, in this process, from an empty cache
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(tmp_path / "alone"))
    start = TR.get_pretrained(base.cfg, tasks=("T2I",), tokenizers=toks, progress=False)
    assert start[1]["source"] == "trained" and _equal(start[0].state_dict(), got["base"][0].state_dict())
    for key, seed in (("a", 0), ("b", 1)):
        alone, info = TR.get_pretrained({**_cfg(), "seed": seed}, tasks=("T2V",), init=start,
                                        tokenizers=toks, train_overrides={"steps": 2}, progress=False)
        assert info["source"] == "trained" and info["hash"] == got[key][1]["hash"]
        assert _equal(alone.state_dict(), got[key][0].state_dict())
    with pytest.raises(TypeError, match="run 'x' must be a train.Run"):
        TR.get_many({"x": {"tasks": ("T2I",)}})
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        TR.get_many(runs, workers=0)


def test_get_many_trains_a_fine_tune_beside_a_run_from_scratch(toks, artifacts, monkeypatch):
    """A fine-tune whose start is cached is ready at once: it trains together with a run from
    scratch (one batch of two), not after it."""
    base = TR.Run(_cfg(steps=2), tasks=("T2I",))
    TR.get_pretrained(base.cfg, tasks=("T2I",), tokenizers=toks, progress=False)
    runs = {"ft": TR.Run(_cfg(), tasks=("T2V",), init=base, train_overrides={"steps": 2}),
            "scratch": TR.Run({**_cfg(), "seed": 1}, tasks=("T2V",),
                              train_overrides={"steps": 2})}
    batches = []

    def in_turn(fn, args, workers, done=None):           # the workers, in this process
        batches.append(len(args))
        for i, a in enumerate(args):
            fn(*a)
            if done:
                done(i, None)

    monkeypatch.setattr(TR, "map_in_processes", in_turn)
    got = TR.get_many(runs, workers=2, tokenizers=toks, progress=False)
    assert batches == [2]
    assert [got[k][1]["source"] for k in ("ft", "scratch")] == ["trained"] * 2


def test_overrides_add_the_sections_threads():
    S = {"threads": 2, "scratch": {"steps": 5}, "finetune": {"steps": 7}}
    assert TR.overrides(S, "scratch") == {"steps": 5, "threads": 2}
    assert TR.overrides({"finetune": {"steps": 7}}, "finetune") == {"steps": 7}
