"""Parked training states (results/<profile>/weights/partial/): an unfinished run's state is
committed with its sha256, a run with no local state continues from it to the same weights as
an uninterrupted one, an altered parked state is an error naming it, and shipping the finished
model removes it."""
import os

import pytest
import torch

from nuwa_lib import pipeline
from nuwa_lib.tokenizers import vq_train, vqgan as V
from nuwa_lib.utils import cache, checkpoint, parked, weights

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = V.VQConfig(kind="vqvae", codebook=16, code_dim=8, width=8, steps=8, batch_size=4,
                    restart_every=2, train_size=64)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """Profile 'toy' with empty weights and cache folders, and the cache path of a state."""
    monkeypatch.setenv("NUWA_WEIGHTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.delenv(weights.RETRAIN_ENV, raising=False)
    return cache.artifact_path("toy", "vqgan", "vq", "h1", ".partial.pt")


def _interrupted(state):
    tr, finished = vq_train.train_tokenizer(CONFIG, state_path=state, checkpoint_every=3,
                                            stop_after=5, progress=False, hash_="h1")
    assert not finished and state.exists()


def test_a_parked_state_resumes_to_the_same_weights_elsewhere(toy):
    whole, _ = vq_train.train_tokenizer(CONFIG, progress=False)
    _interrupted(toy)
    assert parked.local_states("toy") == [toy]
    files = parked.park("toy")
    assert files == ["partial/vqgan/vq-h1.partial.pt"]
    entry = weights.manifest("toy")["partial"][files[0]]
    assert entry["step"] == 5 and entry["steps"] == 8 and entry["bytes"] > 0
    assert weights.verify("toy") == []
    toy.unlink()                                   # another machine: no local cache
    assert parked.unpark(toy, "toy") and toy.exists()
    assert not parked.unpark(toy, "toy")           # a local state wins
    resumed, finished = vq_train.train_tokenizer(CONFIG, state_path=toy, progress=False,
                                                 hash_="h1")
    assert finished and resumed.step == 8
    for k, v in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


def test_an_altered_parked_state_is_an_error_naming_it(toy):
    _interrupted(toy)
    (rel,) = parked.park("toy")
    path = weights.weights_dir("toy") / rel
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    toy.unlink()
    with pytest.raises(weights.WeightsError, match=r"vq-h1\.partial\.pt.*sha256"):
        parked.unpark(toy, "toy")
    assert not toy.exists()
    assert any("vq-h1.partial.pt" in p for p in weights.verify("toy"))


def test_shipping_the_finished_model_removes_its_parked_state(toy):
    _interrupted(toy)
    (rel,) = parked.park("toy")
    tr, _ = vq_train.train_tokenizer(CONFIG, state_path=toy, progress=False, hash_="h1")
    final = cache.artifact_path("toy", "vqgan", "vq", "h1")
    vq_train.save_tokenizer(final, CONFIG, "h1", tr.model, tr.history, {"steps": 8})
    weights.ship(weights.Spec("toy", "vqgan", "vq", "h1", slot="tokenizers/vq"), final,
                 stage="tokenizers", record={"steps": 8})
    assert not (weights.weights_dir("toy") / rel).exists()
    assert weights.manifest("toy")["partial"] == {}
    assert weights.verify("toy") == []


def test_park_on_the_command_line(toy, capsys):
    assert pipeline.main(["--profile", "smoke", "--park"]) == 0
    assert "nothing to park" in capsys.readouterr().out
    assert pipeline.main(["--profile", "nope", "--park"]) == 1
    assert "unknown profile" in capsys.readouterr().err
    assert pipeline.main(["--profile", "smoke", "--missing"]) == 1
    assert "--missing goes with --retrain" in capsys.readouterr().err


def test_a_retrains_finished_models_are_parked_and_found_elsewhere(toy):
    """A stage ships when all its runs are done; the runs it finished before the session ended
    travel as parked models, and the cache takes them instead of training again."""
    old = cache.artifact_path("toy", "vqgan", "old", "h0")
    checkpoint.save(old, {"format": "x"})             # before the retrain: not parked
    os.utime(old, (1, 1))
    parked.begin("toy", ["tokenizers"])
    tr, _ = vq_train.train_tokenizer(CONFIG, progress=False)
    final = cache.artifact_path("toy", "vqgan", "vq", "h1")
    vq_train.save_tokenizer(final, CONFIG, "h1", tr.model, tr.history, {"steps": 8})
    assert parked.local_finished("toy") == [final]
    (rel,) = parked.park("toy")
    assert rel == "partial/vqgan/vq-h1.pt"
    entry = weights.manifest("toy")["partial"][rel]
    assert entry["finished"] and entry["step"] == entry["steps"] == 8
    final.unlink()                                    # another machine
    spec = weights.Spec("toy", "vqgan", "vq", "h1", slot="tokenizers/vq")
    built = []
    model, loaded = cache.fetch(final, lambda p: vq_train.load_tokenizer(p, CONFIG, "h1")[0],
                                lambda: built.append(1), spec=spec)
    assert loaded and not built and cache.RESOLVED[-1][2] == "cached"
    weights.ship(spec, final, stage="tokenizers", record={"steps": 8})
    assert weights.manifest("toy")["partial"] == {} and weights.verify("toy") == []
    parked.end("toy")
    assert parked.local_finished("toy") == []         # no retrain running: nothing to carry
