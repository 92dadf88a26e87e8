"""Specifications of the visual tokenizers (Sec. 3.1, Eqs. 1-5): grids, gradients, the
codebook, checkpoints and resuming."""
import inspect

import numpy as np
import pytest
import torch

from nuwa_lib.data import splits, world
from nuwa_lib.evaluation import judge_nets
from nuwa_lib.tokenizers import losses as L, quantizer, vq_eval, vq_train, vqgan as V
from nuwa_lib.utils import checkpoint

TINY = dict(codebook=16, code_dim=8, width=8, steps=6, batch_size=4, restart_every=2,
            disc_width=8, disc_start=0.5, train_size=64)


def tiny(**over):
    return V.VQConfig(**{**TINY, **over})


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return judge_nets.WorldClassifier(width=4, feature_dim=8).eval().requires_grad_(False)


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(tmp_path))
    return tmp_path


def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- grids
@pytest.mark.parametrize("factor,grid", [(2, 16), (4, 8), (8, 4)])
def test_images_and_videos_become_token_grids_and_back(factor, grid):
    vq = V.VQModel(tiny(factor=factor)).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    videos = np.random.default_rng(1).integers(0, 256, (2, 5, 32, 32, 3), dtype=np.uint8)
    ti, tv = V.encode(vq, images), V.encode(vq, videos)
    assert ti.shape == (3, 1, grid, grid) and tv.shape == (2, 5, grid, grid)
    assert ti.dtype == torch.int64 and 0 <= int(tv.min()) and int(tv.max()) < 16
    assert V.decode(vq, ti).shape == (3, 1, 32, 32, 3)
    out = V.decode(vq, tv)
    assert out.shape == (2, 5, 32, 32, 3) and out.dtype == np.uint8
    # frames are encoded one by one with the same 2D model (Sec. 3.1)
    assert torch.equal(tv[1, 3], V.encode(vq, videos[1, 3][None])[0, 0])


def test_sketches_become_token_grids_and_class_maps():
    vq = V.VQModel(tiny(kind="seg")).eval()
    s = splits.sample("vspw", "test", 0, canvas=32, frames=4)
    assert V.encode(vq, s.seg[None]).shape == (1, 4, 8, 8)
    assert V.encode(vq, s.seg[:2]).shape == (2, 1, 8, 8)
    maps = V.decode(vq, V.encode(vq, s.seg[None]))
    assert maps.shape == (1, 4, 32, 32) and maps.max() < world.N_SEG_CLASSES


def test_bad_inputs_are_named():
    vq = V.VQModel(tiny()).eval()
    with pytest.raises(ValueError, match="32x32"):
        V.encode(vq, np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        V.encode(vq, np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"images \(N, H, W, 3\) or videos"):
        V.encode(vq, np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="0..15"):
        V.decode(vq, torch.full((1, 1, 8, 8), 16))
    with pytest.raises(ValueError, match=r"\(N, s, h, w\)"):
        V.decode(vq, torch.zeros(1, 8, 8, dtype=torch.long))
    seg = V.VQModel(tiny(kind="seg")).eval()
    with pytest.raises(ValueError, match="0..8"):
        V.encode(seg, np.full((1, 32, 32), 9))
    with pytest.raises(ValueError, match="power of two"):
        tiny(factor=3)
    with pytest.raises(ValueError, match="'dalle' is not one of: vqvae, vqgan, seg"):
        tiny(kind="dalle")


# ----------------------------------------------------------------------------- quantizer
def test_straight_through_gradients_reach_the_encoder():
    vq = V.VQModel(tiny()).train()
    x, _ = V.training_batch(tiny(), 0)
    out, idx, commit, _ = vq(x, torch.Generator().manual_seed(0))
    torch.nn.functional.mse_loss(out, x).backward()     # the reconstruction term alone
    grads = [p.grad for p in vq.encoder.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert idx.shape == (4, 8, 8)


def test_ema_moves_used_codes_towards_their_features():
    q = quantizer.EMAQuantizer(4, 2, decay=0.5).train()
    q.initialised.fill_(True)
    q.codebook.copy_(torch.tensor([[0., 0.], [10., 10.], [-10., 10.], [10., -10.]]))
    q.embed_sum.copy_(q.codebook)
    z = torch.full((1, 2, 2, 2), 1.0)          # four features at (1, 1): all nearest code 0
    _, idx, _, counts = q(z)
    assert idx.unique().tolist() == [0] and counts.tolist() == [4, 0, 0, 0]
    assert 0 < q.codebook[0, 0] < 1            # pulled towards (1, 1)
    assert torch.allclose(q.codebook[1], torch.tensor([10., 10.]), atol=1e-3)   # unused: stays put
    assert q.cluster_size[1] < 1                                     # ... while its count decays


def test_l2_codes_live_on_the_unit_sphere_and_change_the_hash_only_when_set():
    tr, _ = vq_train.train_tokenizer(tiny(kind="vqvae", l2_codes=True, steps=4), progress=False)
    norms = tr.model.quantizer.codebook.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert "l2_codes" not in tiny().key()          # older models keep their hashes
    assert V.config_hash(tiny()) != V.config_hash(tiny(l2_codes=True))
    assert tiny(l2_codes=True).key()["l2_codes"] is True


def test_dead_code_restart_revives_unused_codes():
    torch.manual_seed(0)
    q = quantizer.EMAQuantizer(8, 4, decay=0.5).train()
    z = torch.randn(2, 4, 4, 4)
    q(z, torch.Generator().manual_seed(0))      # initialised from these features
    q.codebook[4:] = 100.0                      # four codes far from any feature
    q.embed_sum[4:] = 100.0
    q.hits.zero_()
    for _ in range(6):
        _, idx, _, counts = q(z)
    assert counts[4:].sum() == 0 and (q.hits[4:] == 0).all()
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    n = q.restart_dead(flat, 1, torch.Generator().manual_seed(1))
    assert n >= 4
    # each revived code now sits on an encoder output, so it is somebody's nearest code
    for code in q.codebook[4:]:
        assert (flat - code).abs().sum(1).min() < 1e-6
    _, _, _, counts = q(z)
    assert counts[4:].sum() > 0


# ----------------------------------------------------------------------------- training
def test_a_seg_map_round_trips_through_a_trained_toy_vqgan_seg():
    config = V.VQConfig(kind="seg", codebook=32, code_dim=8, width=8, factor=2, steps=300,
                        batch_size=8, lr=3e-3, train_size=256)
    tr, finished = vq_train.train_tokenizer(config, progress=False)
    assert finished
    maps = vq_eval.heldout_pictures(config, 16)
    back = V.reconstruct(tr.model, maps)
    assert back.shape == maps.shape
    assert (back == maps).mean() > 0.9


def test_the_commitment_term_pulls_the_encoder_towards_its_codes():
    """Eq. 3's beta * ||sg[z_q] - E(I)||^2 (restarts off). With its sign reversed a tokenizer
    still trains and reconstructs, and its tables stay within the seeds' spread, but the
    encoder runs away from the codebook: here the term grows about 25-fold instead of halving."""
    tr, _ = vq_train.train_tokenizer(tiny(kind="vqvae", steps=30, restart_every=1000),
                                     progress=False)
    assert tr.history[-1]["commit"] < 0.75 * tr.history[0]["commit"]


def test_each_kind_trains_with_the_terms_of_its_recipe(classifier):
    """The trainer composes losses.RECIPES: perceptual and GAN terms for the VQ-GAN only, a
    class cross-entropy for sketches; each term is a function of losses.py."""
    assert set(L.RECIPES) == set(V.KINDS)
    assert ".kind" not in inspect.getsource(vq_train.Trainer.train_step)   # the table decides
    logs = {}
    for kind in V.KINDS:
        tr = vq_train.Trainer(tiny(kind=kind, steps=2, disc_start=0.0), classifier)
        logs[kind] = tr.train_step()
        assert (tr.disc is not None) == L.RECIPES[kind].adversarial
        assert (tr.features is not None) == L.RECIPES[kind].perceptual
    assert {"perceptual", "gan_g", "gan_d"} <= set(logs["vqgan"])
    assert not {"perceptual", "gan_g", "gan_d"} & (set(logs["vqvae"]) | set(logs["seg"]))
    x, raw = V.training_batch(tiny(kind="seg"), 0)
    logits = torch.zeros(x.shape)
    logits.scatter_(1, torch.as_tensor(raw).long()[:, None], 50.0)   # certain and right
    assert float(L.class_reconstruction(logits, x, raw)) < 1e-6
    assert float(L.pixel_reconstruction(x, x)) == 0.0
    disc = L.PatchDiscriminator(3, 8, 32)
    real, fake = V.training_batch(tiny(), 0)[0], torch.zeros(4, 3, 32, 32, requires_grad=True)
    L.discriminator_loss(disc, real, fake).backward()
    assert fake.grad is None                      # D's step leaves the generator alone
    assert float(L.generator_loss(disc, fake).detach()) > 0


def test_training_batches_draw_the_same_pictures_as_the_world_samples():
    """training_batch renders only the picture it uses; it must be the sample's own."""
    for kind in ("vqgan", "seg"):
        c = tiny(kind=kind, batch_size=16, frame_fraction=0.5)
        _, raw = V.training_batch(c, 3)
        rng = np.random.default_rng([c.seed, V.VQ_STREAM, 3])
        roles = V.SEG_ROLES if kind == "seg" else V.IMAGE_ROLES
        for pic in raw:
            index, frame = int(rng.integers(c.train_size)), rng.random() < c.frame_fraction
            s = splits.sample(roles[frame], "train", index, c.seed, c.canvas)
            t = int(rng.integers(s.video.shape[0])) if frame else None
            assert np.array_equal(pic, V.sample_picture(c, s, t))


def test_vqgan_trains_all_its_losses(classifier):
    tr, _ = vq_train.train_tokenizer(tiny(kind="vqgan"), classifier, progress=False)
    first, last = tr.history[0], tr.history[-1]
    assert "perceptual" in first and "gan_g" not in first        # D starts after a delay
    assert {"perceptual", "gan_g", "gan_d", "gan_weight"} <= set(last)
    with pytest.raises(ValueError, match="classifier"):
        vq_train.Trainer(tiny(kind="vqgan"))


def test_training_is_deterministic_and_resumes_to_the_same_weights(tmp_path, classifier):
    config = tiny(kind="vqgan", steps=8)
    whole, _ = vq_train.train_tokenizer(config, classifier, progress=False)
    state = tmp_path / "run.partial.pt"
    part, finished = vq_train.train_tokenizer(config, classifier, state_path=state, checkpoint_every=3,
                                       stop_after=5, progress=False, hash_="h")
    assert not finished and part.step == 5 and state.exists()
    resumed, finished = vq_train.train_tokenizer(config, classifier, state_path=state,
                                          checkpoint_every=3, progress=False, hash_="h")
    assert finished and resumed.step == 8
    assert _states_equal(resumed.model.state_dict(), whole.model.state_dict())
    assert _states_equal(resumed.disc.state_dict(), whole.disc.state_dict())
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    # the state of another config is refused, naming the file and the mismatch
    with pytest.raises(V.VQCheckpointError, match=r"run\.partial\.pt.*steps: file 8 != wanted 9"):
        vq_train.train_tokenizer(tiny(kind="vqgan", steps=9), classifier, state_path=state,
                          progress=False, hash_="h")


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_gives_identical_tokens(tmp_path):
    config = tiny(kind="vqvae", steps=3)
    tr, _ = vq_train.train_tokenizer(config, progress=False)
    path = vq_train.save_tokenizer(tmp_path / "vq.pt", config, "abc", tr.model, tr.history, {})
    loaded, payload = vq_train.load_tokenizer(path, config, "abc")
    pics = vq_eval.heldout_pictures(config, 5)
    assert torch.equal(V.encode(loaded, pics), V.encode(tr.model, pics))
    assert len(payload["history"]) == 3
    again, _ = vq_train.load_tokenizer(path)          # rebuilt from the config stored in the file
    assert torch.equal(V.encode(again, pics), V.encode(tr.model, pics))
    assert not list(tmp_path.glob(".*.tmp"))   # nothing half-written left behind


def test_mismatched_or_corrupt_checkpoints_name_the_file_and_the_problem(tmp_path):
    config = tiny(kind="vqvae", steps=1)
    tr, _ = vq_train.train_tokenizer(config, progress=False)
    path = vq_train.save_tokenizer(tmp_path / "vq.pt", config, "abc", tr.model, [], {})
    with pytest.raises(V.VQCheckpointError, match=r"vq\.pt.*codebook: file 16 != wanted 32"):
        vq_train.load_tokenizer(path, tiny(kind="vqvae", steps=1, codebook=32))
    with pytest.raises(V.VQCheckpointError, match=r"vq\.pt.*hash: file 'abc' != wanted 'xyz'"):
        vq_train.load_tokenizer(path, config, "xyz")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match=r"bad\.pt: cannot read"):
        vq_train.load_tokenizer(bad)
    torch.save({"format": "nuwa-judge"}, tmp_path / "judge.pt")
    with pytest.raises(V.VQCheckpointError, match=r"judge\.pt: not a tokenizer checkpoint"):
        vq_train.load_tokenizer(tmp_path / "judge.pt")
    state = torch.load(path, weights_only=True)
    state["state_dict"].pop("decoder.out.weight")
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(V.VQCheckpointError, match=r"cut\.pt: weights do not fit"):
        vq_train.load_tokenizer(tmp_path / "cut.pt")


def test_get_tokenizer_trains_once_then_loads(artifacts):
    cfg = {"name": "smoke", "seed": 0, "world": {"canvas": 32, "split_sizes": {"train": 64}},
           "vqgan": {"common": {k: v for k, v in TINY.items() if k != "train_size"},
                     "models": {"sk": {"kind": "seg", "steps": 2}}}}
    vq, info = vq_train.get_tokenizer(cfg, "sk", progress=False)
    assert info["source"] == "trained" and len(info["history"]) == 2
    assert not list((artifacts / "smoke" / "vqgan").glob("*.partial.pt"))
    again, info2 = vq_train.get_tokenizer(cfg, "sk", progress=False)
    assert info2["source"] == "loaded" and info2["path"] == info["path"]
    assert _states_equal(vq.state_dict(), again.state_dict())
    with pytest.raises(ValueError, match="'nope' is not one of: sk"):
        vq_train.get_tokenizer(cfg, "nope")
    cfg["vqgan"]["models"]["sk"]["steps"] = 3        # another config: not found in the cache
    with pytest.raises(FileNotFoundError, match=r"sk-[0-9a-f]{12}\.pt"):
        vq_train.get_tokenizer(cfg, "sk", train_if_missing=False)


def test_tokenizers_trained_in_worker_processes_equal_those_trained_alone(artifacts, tmp_path,
                                                                          monkeypatch):
    common = {k: v for k, v in TINY.items() if k != "train_size"}
    cfg = {"name": "smoke", "seed": 0, "world": {"canvas": 32, "split_sizes": {"train": 64}},
           "vqgan": {"common": common, "workers": 2,
                     "models": {"a": {"kind": "seg", "steps": 3}, "b": {"kind": "vqvae", "steps": 2}}}}
    got = vq_train.get_tokenizers(cfg, progress=False)
    # trained in the workers just now: said so, as when trained in this process
    assert set(got) == {"a", "b"} and all(info["source"] == "trained" for _, info in got.values())
    again = vq_train.get_tokenizers(cfg, progress=False)
    assert all(info["source"] == "loaded" for _, info in again.values())
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(tmp_path / "alone"))
    for name in ("a", "b"):
        alone, info = vq_train.get_tokenizer(cfg, name, progress=False)
        assert info["source"] == "trained"
        assert _states_equal(alone.state_dict(), got[name][0].state_dict())
